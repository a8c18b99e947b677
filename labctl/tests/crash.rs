//! labctl dying at the worst moments: `kill -9` of `up` at random points of a 150-node lab,
//! and a state file that no longer reads. Each time `down` must stop every process of the
//! lab, say truly how many, and leave no file behind. Real `netstack` nodes on real buses.
//!
//! The kill moments come from a seeded generator; the seed is printed, and
//! `SHMLAB_CRASH_SEED=N` replays a run (`SHMLAB_CRASH_RUNS=N` for more runs).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const NODES: usize = 150;
const BUSES: usize = 5;

/// `NODES` hosts spread over `BUSES` buses.
fn big_lab(name: &str) -> String {
    let mut s = format!("name = \"{name}\"\n");
    for i in 0..NODES {
        let (bus, host) = (i % BUSES, i / BUSES + 1);
        s.push_str(&format!(
            "[nodes.h{i}]\ninterfaces = [{{ bus = \"lan{bus}\", addrs = [\"10.0.{bus}.{host}/24\"] }}]\n"
        ));
    }
    s
}

/// splitmix64: a small, well-mixed generator, so a seed replays the same moments.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Live processes (zombies are not) with `base` on their command line: every node of a lab
/// under `base` has its socket path there.
fn running_under(base: &Path) -> Vec<u32> {
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(base)
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| alive(p))
        .collect()
}

/// N in `lab NAME is down: N processes stopped`.
fn stopped(out: &str) -> usize {
    out.split(": ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {out:?}"))
}

#[test]
fn kill_9_of_up_at_random_moments_is_always_followed_by_a_clean_down() {
    let Some(env) = Env::real() else { return };
    if !have_tool("pgrep") {
        return;
    }
    let seed = env_u64("SHMLAB_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let runs = env_u64("SHMLAB_CRASH_RUNS").unwrap_or(5);
    eprintln!("kill -9 moments from seed {seed} (replay: SHMLAB_CRASH_SEED={seed})");
    let mut rng = SplitMix(seed);
    let base = env.base.path();
    let topo = env.topo("big.toml", &big_lab("crash"));

    // One whole `up` first: how long it takes here is the span the kills are spread over
    // (and a bit past it, so some land in configuration or after `up` is done).
    let t = Instant::now();
    env.ok(&["up", &topo]);
    let full = t.elapsed();
    assert_eq!(running_under(base).len(), NODES);
    let out = env.ok(&["down", "crash"]);
    assert_eq!(stopped(&out), NODES, "{out}");

    for run in 0..runs {
        let span = full.as_micros() as u64 * 11 / 10;
        let at = Duration::from_micros(rng.next() % span.max(1));
        let mut up = env
            .labctl()
            .args(["up", &topo])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting labctl up");
        std::thread::sleep(at);
        up.kill().expect("kill -9 of labctl up");
        up.wait().expect("reaping labctl up");
        let running = running_under(base);
        let summary = format!(
            "run {run}: killed at {:.3}s of {:.3}s with {} nodes running",
            at.as_secs_f64(),
            full.as_secs_f64(),
            running.len()
        );
        eprintln!("{summary}");
        if env.lab_dir("crash").symlink_metadata().is_err() {
            // Killed before it made the lab dir: nothing to find, and nothing may run.
            assert!(running.is_empty(), "{summary}: {running:?}");
            continue;
        }
        let out = env.run(&["down", "crash"]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{summary}: down failed: {stderr}");
        assert_eq!(
            stopped(&stdout),
            running.len(),
            "{summary}: down reports {stdout}"
        );
        assert!(all_gone(&running), "{summary}: {stdout}");
        assert!(
            running_under(base).is_empty(),
            "{summary}: processes left after down"
        );
        let left: Vec<_> = std::fs::read_dir(base)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{summary}: files left: {left:?}");
    }
}

#[test]
fn a_state_file_that_does_not_read_is_named_and_down_still_stops_everything() {
    let Some(env) = Env::real() else { return };
    let topo = env.topo("t.toml", &hosts_on_a_bus("garbled", 3));
    env.ok(&["up", &topo]);
    let pids = env.pids("garbled");
    assert_eq!(pids.len(), 3);
    let state = env.lab_dir("garbled").join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    // Valid JSON no longer a lab state (a kind this labctl does not know), then not JSON.
    std::fs::write(&state, text.replacen("\"netstack\"", "\"mystery\"", 1)).unwrap();
    let err = env.fails(&["exec", "garbled", "h1", "--", "ifconfig"]);
    assert!(
        err.contains(&format!("{}:1:", state.display()))
            && err.contains("malformed lab state")
            && err.contains("unknown variant `mystery`"),
        "{err}"
    );
    std::fs::write(&state, &text[..text.len() / 2]).unwrap();
    let err = env.fails(&["status", "garbled"]);
    assert!(err.contains("malformed lab state"), "{err}");

    // Half a file names some pids; the markers find every process.
    let out = env.run(&["down", "garbled"]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("malformed lab state"), "{stderr}");
    assert_eq!(stopped(&stdout), 3, "{stdout}");
    assert!(all_gone(&pids));
    assert!(!env.lab_dir("garbled").exists());
    assert!(no_process_mentions(env.base.path()));
}
