//! The benchmark runner's plumbing, with real writer and reader processes on a real bus. These
//! check that rows run and that every frame is accounted for, never how fast anything is.

use std::process::Command;

use serde_json::Value;

const BENCH: &str = env!("CARGO_BIN_EXE_bench");

fn row(args: &[&str]) -> Value {
    let out = Command::new(BENCH)
        .arg("__bus-row")
        .args(["--millis", "200"])
        .args(args)
        .output()
        .expect("run bench __bus-row");
    assert!(
        out.status.success(),
        "bench __bus-row {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("row JSON")
}

fn assert_every_frame_accounted_for(row: &Value) {
    let sent = row["sent"].as_u64().unwrap();
    assert!(sent > 0, "{row}");
    assert_eq!(row["unaccounted"], 0, "{row}");
    for r in row["reader_results"].as_array().unwrap() {
        let got = r["received"].as_u64().unwrap() + r["lost"].as_u64().unwrap();
        assert_eq!(got, sent, "received + lost = sent for every reader: {row}");
        assert_eq!(r["corrupt"], 0, "{row}");
    }
}

#[test]
fn bus_row_with_several_writers_accounts_for_every_frame() {
    let row = row(&["--writers", "2", "--readers", "2", "--batch", "8"]);
    assert_eq!(row["writer_results"].as_array().unwrap().len(), 2);
    assert_eq!(row["reader_results"].as_array().unwrap().len(), 2);
    assert_every_frame_accounted_for(&row);
}

#[test]
fn paced_row_on_a_larger_bus_loses_nothing() {
    // 50 k frames/s is a small fraction of what a reader sustains, and an 8 MiB ring holds far
    // more than a scheduling hiccup's worth of them.
    let row = row(&["--rate", "50000", "--bus-mib", "8", "--frame-size", "1500"]);
    assert_every_frame_accounted_for(&row);
    assert_eq!(row["loss_pct"], 0.0, "{row}");
}

#[test]
fn passive_reader_row_accounts_for_every_frame() {
    assert_every_frame_accounted_for(&row(&["--passive", "--batch", "1"]));
}

#[test]
fn unknown_suite_is_refused_with_the_known_ones() {
    let out = Command::new(BENCH).arg("nosuch").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The list grows as suites are added; it must name them, starting with the bus.
    assert!(
        stderr.contains("unknown suite \"nosuch\" (known: bus"),
        "{stderr}"
    );
}
