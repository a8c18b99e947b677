//! `labctl test`: runs each `[[checks]]` entry against a running lab, reports pass/fail, and
//! writes JUnit XML.
//!
//! `expect_on_bus` watches a bus with a passive `shmif::Reader` on a thread of its own while the
//! check's traffic runs. [`frame_matches`] is the only code in labctl that looks inside a frame:
//! it compares the EtherType, the IP protocol and the addresses, nothing more.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::lab::LabState;
use crate::node::{self, Stream};
use crate::topology::{BusExpect, Check, CheckAction, Proto, Topology};

/// The outcome of one check.
#[derive(Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    /// Why it failed, or a short note on what was seen.
    pub detail: String,
    /// The check's command output, for the report.
    pub output: String,
    pub duration: Duration,
}

/// Runs every check in order.
pub fn run_all(topo: &Topology, state: &LabState) -> Vec<CheckResult> {
    topo.checks.iter().map(|c| run_one(c, state)).collect()
}

pub fn run_one(check: &Check, state: &LabState) -> CheckResult {
    let started = Instant::now();
    let mut output = String::new();
    let outcome = run_inner(check, state, &mut output);
    let (passed, detail) = match outcome {
        Ok(note) => (true, note),
        Err(e) => (false, format!("{e:#}")),
    };
    CheckResult {
        name: check.name.clone(),
        passed,
        detail,
        output,
        duration: started.elapsed(),
    }
}

fn run_inner(check: &Check, state: &LabState, output: &mut String) -> Result<String> {
    let watcher = match &check.expect_on_bus {
        Some(e) => Some(BusWatch::start(state, e)?),
        None => None,
    };
    let mut note = run_action(&check.action, state, output)?;
    if let (Some(w), Some(e)) = (watcher, &check.expect_on_bus) {
        // Frames of the last exchange may still be on their way through the bus.
        std::thread::sleep(Duration::from_millis(100));
        let (matched, seen) = w.stop();
        let what = describe_expect(e);
        match (e.present, matched) {
            (true, 0) => bail!(
                "expected {what} on bus {}, saw none of its {seen} frames",
                e.bus.value
            ),
            (false, n) if n > 0 => bail!("expected no {what} on bus {}, saw {n}", e.bus.value),
            _ => note.push_str(&format!(
                "; {matched} {what} frames of {seen} on {}",
                e.bus.value
            )),
        }
    }
    Ok(note)
}

fn describe_expect(e: &BusExpect) -> String {
    let mut s = e.proto.as_str().to_string();
    if let Some(src) = e.src {
        s.push_str(&format!(" from {src}"));
    }
    if let Some(dst) = e.dst {
        s.push_str(&format!(" to {dst}"));
    }
    s
}

/// Runs `argv` on `node` through its driver, appends `node$ argv` and its output to
/// `output` (stderr lines marked `! `), returns the exit status.
fn run_cmd(state: &LabState, node: &str, argv: &[String], output: &mut String) -> Result<i32> {
    let ns = state.node(node)?;
    if !ns.alive() {
        bail!("{}", ns.driver().not_running(&state.name, &ns.info));
    }
    let out = ns.driver().exec_collect(&ns.info, argv)?;
    output.push_str(&format!("{node}$ {}\n", node::show(argv)));
    for (s, l) in &out.lines {
        if *s == Stream::Err {
            output.push_str("! ");
        }
        output.push_str(l);
        output.push('\n');
    }
    Ok(out.status)
}

fn run_action(action: &CheckAction, state: &LabState, output: &mut String) -> Result<String> {
    match action {
        CheckAction::Ping {
            from,
            to,
            count,
            expect_success,
        } => {
            let argv = state.node(&from.value)?.driver().ping_argv(*to, *count);
            let status = run_cmd(state, &from.value, &argv, output)?;
            match (status == 0, *expect_success) {
                (true, true) => Ok(format!("{} reaches {to}", from.value)),
                (false, false) => Ok(format!("{} does not reach {to}, as expected", from.value)),
                (false, true) => bail!("ping from {} to {to} failed (status {status})", from.value),
                (true, false) => bail!(
                    "ping from {} to {to} succeeded but was expected to fail",
                    from.value
                ),
            }
        }
        CheckAction::Traceroute { from, to, hops } => {
            let argv = state.node(&from.value)?.driver().traceroute_argv(*to);
            let before = output.len();
            let status = run_cmd(state, &from.value, &argv, output)?;
            let got = traceroute_hops(&output[before..]);
            let want: Vec<String> = hops.iter().map(|h| h.to_string()).collect();
            if got != want {
                bail!(
                    "traceroute from {} to {to}: hops [{}], expected [{}] (status {status})",
                    from.value,
                    got.join(", "),
                    want.join(", ")
                );
            }
            Ok(format!("hops {}", got.join(" ")))
        }
        CheckAction::Exec {
            node,
            argv,
            status,
            output: pattern,
        } => {
            let before = output.len();
            let got = run_cmd(state, &node.value, argv, output)?;
            if got != *status {
                bail!(
                    "`{}` on {} exited with {got}, expected {status}",
                    node::show(argv),
                    node.value
                );
            }
            if let Some(p) = pattern {
                let re = regex::Regex::new(p).context("output regex")?;
                // Match against the command's own lines, not the echoed command.
                let text: String = output[before..]
                    .lines()
                    .skip(1)
                    .map(|l| l.strip_prefix("! ").unwrap_or(l))
                    .collect::<Vec<_>>()
                    .join("\n");
                if !re.is_match(&text) {
                    bail!(
                        "output of `{}` on {} does not match /{p}/",
                        node::show(argv),
                        node.value
                    );
                }
            }
            Ok(format!("exit {got}"))
        }
    }
}

/// Hop addresses from `traceroute -n` output: for each line that starts with a hop number, the
/// first address on it, or `*` when no probe of that hop was answered.
pub fn traceroute_hops(text: &str) -> Vec<String> {
    let mut hops = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else { continue };
        if first.parse::<u32>().is_err() {
            continue;
        }
        let addr = words
            .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
            .find(|w| w.parse::<IpAddr>().is_ok())
            .map(str::to_string)
            .unwrap_or_else(|| "*".to_string());
        hops.push(addr);
    }
    hops
}

/// A thread that counts frames matching an expectation on one bus until stopped.
struct BusWatch {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64)>>,
}

impl BusWatch {
    fn start(state: &LabState, e: &BusExpect) -> Result<BusWatch> {
        let path = state.bus_path(&e.bus.value)?;
        if !path.is_file() {
            bail!("bus file {} is gone", path.display());
        }
        let bus = shmif::Bus::attach(&path, &shmif::BusConfig::default())
            .with_context(|| format!("watching bus {}", e.bus.value))?;
        // Created here, before the traffic starts, so no frame of it is missed.
        let mut reader = bus.reader();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let e = e.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 2048];
            let (mut matched, mut seen) = (0u64, 0u64);
            loop {
                let stopping = flag.load(Ordering::Acquire);
                match reader.recv(&mut buf, Duration::from_millis(20)) {
                    Some(got) => {
                        seen += 1;
                        if frame_matches(&buf[..got.len], &e) {
                            matched += 1;
                        }
                    }
                    None if stopping => break,
                    None => {}
                }
            }
            (matched, seen)
        });
        Ok(BusWatch {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops watching and returns (matching frames, all frames) seen.
    fn stop(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Release);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or((0, 0))
    }
}

impl Drop for BusWatch {
    /// A check that fails early must not leave its watcher running.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const ETH_HLEN: usize = 14;

/// Does an Ethernet frame carry `e.proto` between `e.src` and `e.dst` (when given)?
pub fn frame_matches(frame: &[u8], e: &BusExpect) -> bool {
    let Some(ethertype) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return false;
    };
    let l3 = &frame[ETH_HLEN.min(frame.len())..];
    // The ICMPv6 type, when the next header right after the fixed header is ICMPv6.
    let icmp6_type = (ethertype == 0x86dd && l3.get(6) == Some(&58))
        .then(|| l3.get(40).copied())
        .flatten();
    let (proto, src, dst): (Option<u8>, Option<IpAddr>, Option<IpAddr>) = match ethertype {
        0x0800 if l3.len() >= 20 => {
            let a = |o: usize| IpAddr::from([l3[o], l3[o + 1], l3[o + 2], l3[o + 3]]);
            (Some(l3[9]), Some(a(12)), Some(a(16)))
        }
        0x86dd if l3.len() >= 40 => {
            let a = |o: usize| {
                let b: [u8; 16] = l3[o..o + 16].try_into().unwrap_or([0; 16]);
                IpAddr::from(b)
            };
            (Some(l3[6]), Some(a(8)), Some(a(24)))
        }
        0x0806 if l3.len() >= 28 => {
            let a = |o: usize| IpAddr::from([l3[o], l3[o + 1], l3[o + 2], l3[o + 3]]);
            (None, Some(a(14)), Some(a(24)))
        }
        _ => (None, None, None),
    };
    let kind_ok = match e.proto {
        Proto::Arp => ethertype == 0x0806,
        Proto::Ipv4 => ethertype == 0x0800,
        Proto::Ipv6 => ethertype == 0x86dd,
        Proto::Icmp => proto == Some(if ethertype == 0x86dd { 58 } else { 1 }),
        Proto::Icmp6 => ethertype == 0x86dd && proto == Some(58),
        Proto::Ndp => icmp6_type.is_some_and(|t| (133..=137).contains(&t)),
        Proto::Tcp => proto == Some(6),
        Proto::Udp => proto == Some(17),
        Proto::Esp => proto == Some(50),
    };
    kind_ok && e.src.is_none_or(|s| src == Some(s)) && e.dst.is_none_or(|d| dst == Some(d))
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML for a lab's check results.
pub fn junit(lab: &str, results: &[CheckResult]) -> String {
    let failures = results.iter().filter(|r| !r.passed).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&format!(
        "<testsuites>\n  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">\n",
        xml_escape(lab),
        results.len()
    ));
    for r in results {
        s.push_str(&format!(
            "    <testcase classname=\"labctl.{}\" name=\"{}\" time=\"{:.3}\"",
            xml_escape(lab),
            xml_escape(&r.name),
            r.duration.as_secs_f64()
        ));
        if r.passed {
            s.push_str(">\n");
        } else {
            s.push_str(&format!(
                ">\n      <failure message=\"{}\">{}</failure>\n",
                xml_escape(&r.detail),
                xml_escape(&r.output)
            ));
        }
        if !r.output.is_empty() {
            s.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                xml_escape(&r.output)
            ));
        }
        s.push_str("    </testcase>\n");
    }
    s.push_str("  </testsuite>\n</testsuites>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::{At, Loc};

    fn expect(proto: Proto, src: Option<&str>, dst: Option<&str>) -> BusExpect {
        BusExpect {
            bus: At {
                value: "lan".into(),
                loc: Loc::default(),
            },
            proto,
            src: src.map(|s| s.parse().unwrap()),
            dst: dst.map(|s| s.parse().unwrap()),
            present: true,
        }
    }

    fn ipv4_frame(proto: u8, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0xff; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![0x45, 0, 0, 20, 0, 0, 0, 0, 64, proto, 0, 0];
        ip.extend_from_slice(&src);
        ip.extend_from_slice(&dst);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn esp_frame_matches_esp_and_addresses_only() {
        let f = ipv4_frame(50, [10, 0, 0, 1], [10, 0, 0, 2]);
        assert!(frame_matches(&f, &expect(Proto::Esp, None, None)));
        assert!(frame_matches(
            &f,
            &expect(Proto::Ipv4, Some("10.0.0.1"), Some("10.0.0.2"))
        ));
        assert!(!frame_matches(&f, &expect(Proto::Icmp, None, None)));
        assert!(!frame_matches(
            &f,
            &expect(Proto::Esp, Some("10.0.0.2"), None)
        ));
    }

    #[test]
    fn truncated_frames_never_match() {
        let f = ipv4_frame(1, [10, 0, 0, 1], [10, 0, 0, 2]);
        for n in 0..f.len() {
            assert!(
                !frame_matches(&f[..n], &expect(Proto::Icmp, None, None)),
                "len {n}"
            );
        }
    }

    #[test]
    fn traceroute_hops_reads_numbered_lines_and_stars() {
        let out = "traceroute to 10.0.2.2 (10.0.2.2), 30 hops max, 40 byte packets\n \
                   1  10.0.1.1  0.210 ms  0.120 ms  0.110 ms\n \
                   2  * * *\n \
                   3  10.0.2.2  0.300 ms  0.250 ms  0.240 ms\n";
        assert_eq!(traceroute_hops(out), ["10.0.1.1", "*", "10.0.2.2"]);
    }

    #[test]
    fn junit_escapes_and_counts_failures() {
        let r = |name: &str, passed| CheckResult {
            name: name.into(),
            passed,
            detail: "a < b".into(),
            output: "x & y".into(),
            duration: Duration::from_millis(5),
        };
        let x = junit("lab", &[r("ok", true), r("bad \"one\"", false)]);
        assert!(x.contains("tests=\"2\" failures=\"1\""), "{x}");
        assert!(x.contains("name=\"bad &quot;one&quot;\""), "{x}");
        assert!(
            x.contains("<failure message=\"a &lt; b\">x &amp; y</failure>"),
            "{x}"
        );
    }
}
