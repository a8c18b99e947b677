//! The `tcp` suite: bulk TCP throughput (iperf3, one stream) between Linux network namespaces,
//! over a veth pair and through a router namespace (the kernel baseline), and over shmif buses
//! as labctl's Linux nodes are joined to them: a tap in each namespace, copied to and from the
//! bus by `virtif-bridge`, on one bus and across a netstack router. The bus rows show what the
//! tap bridge and our forwarding cost against veth.
//!
//! Rows with a netstack node as a TCP endpoint come with netstack's transport layer; this suite
//! is where they go. Everything here needs root and iperf3; without them the suite says so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use serde_json::{json, Value};

use super::lab::{is_root, netstack_bins, run_ok, Bridge, LabDir, Netns, Node};
use super::{Context, SuiteReport};

const PORT: &str = "5201";

/// One measured path: iperf3 from `client` (a namespace) to `server_addr` in `server`.
struct Probe {
    name: &'static str,
    client: String,
    server: String,
    server_addr: &'static str,
    /// Bridges on the path, whose drop and loss counters belong to the row.
    bridges: Vec<usize>,
}

#[derive(Debug, Serialize)]
struct Run {
    gbit_s: f64,
    retransmits: u64,
}

#[derive(Debug, Serialize)]
struct Row {
    name: &'static str,
    runs: Vec<Run>,
    median_gbit_s: f64,
    min_gbit_s: f64,
    max_gbit_s: f64,
    retransmits: u64,
    /// Frames the path's bridges dropped (oversize, tap down, errors) and frames their bus
    /// ports missed because a writer lapped them; None for veth rows.
    bridge_dropped: Option<u64>,
    bus_lost: Option<u64>,
    /// Frames the kernel dropped at the taps' transmit queues (the bridge did not read them in
    /// time), from `ip -s link`; None for veth rows.
    tap_queue_dropped: Option<u64>,
}

pub fn run(ctx: &Context) -> anyhow::Result<SuiteReport> {
    if !is_root() {
        return Ok(skipped("not root (network namespaces and taps need root)"));
    }
    if Command::new("iperf3").arg("--version").output().is_err() {
        return Ok(skipped("iperf3 is not installed (apt-get install iperf3)"));
    }
    let secs = if ctx.row_time >= Duration::from_secs(1) {
        5
    } else {
        1
    };
    let (bin, ctl) = netstack_bins(ctx)?;
    let [bridge_bin] = ctx.build_bins(&["virtif"], ["virtif-bridge"])?;
    let lab = LabDir::new("tcp")?;
    let dir = &lab.0;
    let mut ns = Netns::default();
    let mut bridges: Vec<Bridge> = Vec::new();

    // Kernel baseline: a -- veth -- b, and h1 -- r -- h2 with r forwarding.
    let (a, b) = (ns.add("ta")?, ns.add("tb")?);
    ns.veth(
        (&a, "veth0", "10.199.20.1/24"),
        (&b, "veth0", "10.199.20.2/24"),
    )?;
    let (h1, r, h2) = (ns.add("th1")?, ns.add("tr")?, ns.add("th2")?);
    ns.veth(
        (&h1, "veth0", "10.199.24.2/24"),
        (&r, "veth1", "10.199.24.1/24"),
    )?;
    ns.veth(
        (&r, "veth2", "10.199.25.1/24"),
        (&h2, "veth0", "10.199.25.2/24"),
    )?;
    ns.exec(&r, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    ns.exec(
        &h1,
        &["ip", "route", "add", "default", "via", "10.199.24.1"],
    )?;
    ns.exec(
        &h2,
        &["ip", "route", "add", "default", "via", "10.199.25.1"],
    )?;

    // Two Linux nodes on one bus.
    let (la, lb) = (ns.add("la")?, ns.add("lb")?);
    let bus1 = dir.join("one.bus");
    for (n, addr) in [(&la, "10.199.21.1/24"), (&lb, "10.199.21.2/24")] {
        bridges.push(Bridge::start(&bridge_bin, &bus1, n, dir, n)?);
        ns.exec(n, &["ip", "addr", "add", addr, "dev", "eth0"])?;
    }
    // Two Linux nodes on two buses, routed by a netstack node.
    let (lc, ld) = (ns.add("lc")?, ns.add("ld")?);
    let (bus2, bus3) = (dir.join("left.bus"), dir.join("right.bus"));
    let router = Node::start(&bin, &ctl, dir, "router")?;
    router.iface("shmif0", &bus2, "10.199.22.1/24")?;
    router.iface("shmif1", &bus3, "10.199.23.1/24")?;
    router.cmd("sysctl -w net.inet.ip.forwarding=1")?;
    for (n, bus, addr, gw) in [
        (&lc, &bus2, "10.199.22.2/24", "10.199.22.1"),
        (&ld, &bus3, "10.199.23.2/24", "10.199.23.1"),
    ] {
        bridges.push(Bridge::start(&bridge_bin, bus, n, dir, n)?);
        ns.exec(n, &["ip", "addr", "add", addr, "dev", "eth0"])?;
        ns.exec(n, &["ip", "route", "add", "default", "via", gw])?;
    }

    let paths = [
        Probe {
            name: "veth pair",
            client: a,
            server: b,
            server_addr: "10.199.20.2",
            bridges: vec![],
        },
        Probe {
            name: "veth, router namespace",
            client: h1,
            server: h2,
            server_addr: "10.199.25.2",
            bridges: vec![],
        },
        Probe {
            name: "Linux nodes, one bus (two tap bridges)",
            client: la,
            server: lb,
            server_addr: "10.199.21.2",
            bridges: vec![0, 1],
        },
        Probe {
            name: "Linux nodes, netstack router between two buses",
            client: lc,
            server: ld,
            server_addr: "10.199.23.2",
            bridges: vec![2, 3],
        },
    ];
    for p in &paths {
        // Warm-up: ARP, and a path that works at all.
        ns.exec(
            &p.client,
            &["ping", "-c", "2", "-i", "0.2", "-W", "2", p.server_addr],
        )
        .with_context(|| format!("{}: no ping across", p.name))?;
    }
    let mut runs: Vec<Vec<Run>> = paths.iter().map(|_| Vec::new()).collect();
    for rep in 0..ctx.repeats {
        for (p, rs) in paths.iter().zip(runs.iter_mut()) {
            eprintln!(
                "bench tcp: {} ({secs} s, run {}/{})",
                p.name,
                rep + 1,
                ctx.repeats
            );
            rs.push(iperf(p, secs, dir).with_context(|| p.name.to_string())?);
        }
    }
    drop(router);
    let tap_drops: Vec<Option<u64>> = paths
        .iter()
        .map(|p| {
            if p.bridges.is_empty() {
                return None;
            }
            [&p.client, &p.server]
                .iter()
                .map(|n| tap_tx_dropped(n))
                .sum::<Option<u64>>()
        })
        .collect();
    // After the taps' counters: a tap goes away with its bridge.
    let counters: Vec<Option<Value>> = bridges.into_iter().map(Bridge::stop).collect();
    drop(ns);

    let rows: Vec<Row> = paths
        .iter()
        .zip(runs)
        .zip(tap_drops)
        .map(|((p, runs), tap_queue_dropped)| {
            let sum = |key: &str| -> Option<u64> {
                (!p.bridges.is_empty()).then(|| {
                    p.bridges
                        .iter()
                        .filter_map(|&i| counters[i].as_ref())
                        .filter_map(|c| c[key].as_u64())
                        .sum()
                })
            };
            let mut g: Vec<f64> = runs.iter().map(|r| r.gbit_s).collect();
            g.sort_by(f64::total_cmp);
            Row {
                name: p.name,
                median_gbit_s: g[g.len() / 2],
                min_gbit_s: g[0],
                max_gbit_s: g[g.len() - 1],
                retransmits: runs.iter().map(|r| r.retransmits).sum(),
                bridge_dropped: sum("dropped"),
                bus_lost: sum("bus_lost"),
                tap_queue_dropped,
                runs,
            }
        })
        .collect();
    Ok(SuiteReport {
        name: "tcp",
        markdown: markdown(ctx, secs, &rows),
        json: json!({ "seconds_per_run": secs, "runs": ctx.repeats, "rows": rows }),
    })
}

/// The kernel's transmit drops on tap `eth0` in namespace `ns`.
fn tap_tx_dropped(ns: &str) -> Option<u64> {
    let out =
        run_ok(Command::new("ip").args(["-n", ns, "-s", "-j", "link", "show", "eth0"])).ok()?;
    let v: Value = serde_json::from_str(&out).ok()?;
    v[0]["stats64"]["tx"]["dropped"].as_u64()
}

fn skipped(why: &str) -> SuiteReport {
    eprintln!("bench tcp: skipped: {why}");
    SuiteReport {
        name: "tcp",
        markdown: format!("Skipped: {why}.\n"),
        json: json!({ "skipped": why }),
    }
}

/// One iperf3 run of `secs` seconds from the path's client to its server; the server's output
/// goes to `iperf3-server.log` in `dir`.
fn iperf(p: &Probe, secs: u32, dir: &std::path::Path) -> anyhow::Result<Run> {
    let log = std::fs::File::create(dir.join("iperf3-server.log"))?;
    let mut server = Server(
        Command::new("ip")
            .args(["netns", "exec", &p.server, "iperf3", "-s", "-1", "-p", PORT])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting iperf3 -s")?,
    );
    // The server needs a moment to listen; retry the client while it is refused.
    let deadline = Instant::now() + Duration::from_secs(5);
    let run = loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &p.client])
            .args(["iperf3", "-c", p.server_addr, "-p", PORT, "-J"])
            .args(["-t", &secs.to_string()])
            .stdin(Stdio::null())
            .output()
            .context("running iperf3 -c")?;
        match parse_iperf(&String::from_utf8_lossy(&out.stdout)) {
            Err(e) if Instant::now() < deadline && format!("{e:#}").contains("refused") => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                let server_log = std::fs::read_to_string(dir.join("iperf3-server.log"));
                bail!(
                    "{e:#}; iperf3 server said: {}",
                    server_log.unwrap_or_default()
                );
            }
            Ok(run) => break run,
        }
    };
    // A one-off server exits after its test; one that lingers is killed (Server's drop).
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && matches!(server.0.try_wait(), Ok(None)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(run)
}

/// Kills a leftover iperf3 server when a run fails.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn parse_iperf(out: &str) -> anyhow::Result<Run> {
    let v: Value = serde_json::from_str(out).context("iperf3 -J output is not JSON")?;
    if let Some(e) = v["error"].as_str() {
        bail!("iperf3: {e}");
    }
    let bps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 -J: no end.sum_received.bits_per_second")?;
    Ok(Run {
        gbit_s: bps / 1e9,
        retransmits: v["end"]["sum_sent"]["retransmits"].as_u64().unwrap_or(0),
    })
}

fn markdown(ctx: &Context, secs: u32, rows: &[Row]) -> String {
    let mut s = format!(
        "One TCP stream (iperf3, {secs} s per run, {} run(s) per row interleaved row by row), \
         received throughput. Every endpoint is the Linux kernel in a network namespace; the \
         veth rows are the baseline. The bus rows join each namespace to a bus through a tap and \
         `virtif-bridge` (labctl's `kind = \"linux\"` nodes), on one bus, and on two buses with a \
         release-built netstack node forwarding between them. *Bridge drops* and *bus lost* are \
         the bridges' counters over the whole suite (frames dropped, frames a bridge's port \
         missed because writers lapped it); *tap queue drops* are the kernel's transmit drops on \
         the row's taps (`ip -s link`: frames the sender's kernel queued faster than its bridge \
         read them, over the 1000-frame queue). TCP recovers all of these as retransmits. Rows \
         with netstack as a TCP endpoint come with netstack's transport layer.\n\n",
        ctx.repeats
    );
    let veth = rows
        .iter()
        .find(|r| r.name == "veth pair")
        .map(|r| r.median_gbit_s);
    s += "| Path | Median Gbit/s | Min | Max | ÷ veth | Retransmits | Bridge drops | Bus lost | Tap queue drops |\n";
    s += "|:---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    let opt = |v: Option<u64>| v.map_or_else(|| "–".to_string(), |n| n.to_string());
    for r in rows {
        s += &format!(
            "| {} | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} | {} |\n",
            r.name,
            r.median_gbit_s,
            r.min_gbit_s,
            r.max_gbit_s,
            veth.map_or_else(|| "–".into(), |v| format!("{:.3}×", r.median_gbit_s / v)),
            r.retransmits,
            opt(r.bridge_dropped),
            opt(r.bus_lost),
            opt(r.tap_queue_dropped),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iperf_json_gives_throughput_and_retransmits() {
        let out = r#"{"start":{},"end":{"sum_sent":{"bits_per_second":2.1e9,"retransmits":7},
            "sum_received":{"bits_per_second":2.0e9}}}"#;
        let r = parse_iperf(out).unwrap();
        assert_eq!(r.retransmits, 7);
        assert!((r.gbit_s - 2.0).abs() < 1e-9);
        let e = parse_iperf(r#"{"start":{},"end":{},"error":"unable to connect"}"#).unwrap_err();
        assert!(format!("{e}").contains("unable to connect"));
    }
}
