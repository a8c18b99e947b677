//! The `idle` suite: what idle nodes cost. A 100-node lab (release-built `netstack` processes,
//! each with one interface up on a bus it shares with one other node, no traffic) is left up
//! for 10 s: the CPU time all nodes used in those 10 s, their context switches per node per
//! second, and an idle node's memory (RssAnon, the node's private pages, and VmRSS).
//!
//! CPU time is read per thread from /proc/PID/task/TID/schedstat (nanoseconds on a CPU, and
//! the number of times the thread ran), summed over the nodes' threads at the start and the end
//! of the window; /proc/PID/stat's utime + stime (clock ticks, for the whole process) is shown
//! as a cross-check, though its resolution is 10 ms per process. Context switches are
//! voluntary + involuntary from each thread's /proc/PID/task/TID/status. Memory comes from
//! /proc/PID/status. As a yardstick from the same run, `sleep` (coreutils, a C program that does
//! nothing) shows the memory floor of a process linked against the same libc.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::json;

use super::lab::{netstack_bins, LabDir, Node, NETSTACK_DIR_ENV};
use super::ping::Memory;
use super::{Context, SuiteReport};

const NODES: usize = 100;
/// Targets from issue 10.
const CPU_TARGET_S: f64 = 0.1;
const RSS_ANON_TARGET_KIB: u64 = 1024;
const VM_RSS_TARGET_KIB: u64 = 4096;

/// Per-thread counters of one node, by thread id.
#[derive(Clone, Copy, Debug, Default)]
struct ThreadTimes {
    run_ns: u64,
    timeslices: u64,
    ctxt_switches: u64,
}

#[derive(Debug, Default)]
struct NodeTimes {
    threads: HashMap<u32, ThreadTimes>,
    /// utime + stime of the process, clock ticks.
    ticks: u64,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn node_times(pid: u32) -> anyhow::Result<NodeTimes> {
    let stat = read(&format!("/proc/{pid}/stat")).with_context(|| format!("node {pid} gone"))?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|w| w.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    let mut threads = HashMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let dir = format!("/proc/{pid}/task/{tid}");
        let Some(sched) = read(&format!("{dir}/schedstat")) else {
            continue;
        };
        let s: Vec<u64> = sched
            .split_whitespace()
            .map(|w| w.parse().unwrap_or(0))
            .collect();
        let status = read(&format!("{dir}/status")).unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        threads.insert(
            tid,
            ThreadTimes {
                run_ns: s.first().copied().unwrap_or(0),
                timeslices: s.get(2).copied().unwrap_or(0),
                ctxt_switches: field("voluntary_ctxt_switches:")
                    + field("nonvoluntary_ctxt_switches:"),
            },
        );
    }
    Ok(NodeTimes { threads, ticks })
}

/// What one node used between two readings. Threads present at only one reading count from
/// zero (new) or are left out (gone); the result says how many there were.
#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Used {
    run_ns: u64,
    timeslices: u64,
    ctxt_switches: u64,
    ticks: u64,
    threads_changed: u64,
}

fn used(before: &NodeTimes, after: &NodeTimes) -> Used {
    let mut u = Used {
        ticks: after.ticks.saturating_sub(before.ticks),
        ..Used::default()
    };
    for (tid, a) in &after.threads {
        let b = before.threads.get(tid).copied().unwrap_or_else(|| {
            u.threads_changed += 1;
            ThreadTimes::default()
        });
        u.run_ns += a.run_ns.saturating_sub(b.run_ns);
        u.timeslices += a.timeslices.saturating_sub(b.timeslices);
        u.ctxt_switches += a.ctxt_switches.saturating_sub(b.ctxt_switches);
    }
    u.threads_changed += before
        .threads
        .keys()
        .filter(|t| !after.threads.contains_key(t))
        .count() as u64;
    u
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

pub fn run(ctx: &Context) -> anyhow::Result<SuiteReport> {
    // 10 s for a full run, 2 s for --quick.
    let window = if ctx.row_time >= Duration::from_secs(1) {
        Duration::from_secs(10)
    } else {
        Duration::from_secs(2)
    };
    let settle = Duration::from_secs(2);
    let (bin, ctl) = netstack_bins(ctx)?;
    let lab = LabDir::new("idle")?;
    let dir = &lab.0;
    eprintln!("bench idle: starting {NODES} nodes");
    let started = Instant::now();
    let mut nodes = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let node = Node::start(&bin, &ctl, dir, &format!("n{i}"))?;
        let bus = dir.join(format!("l{}.bus", i / 2));
        let addr = format!("10.{}.{}.{}/24", 100 + i / 2 / 250, i / 2 % 250, 1 + i % 2);
        node.iface("shmif0", &bus, &addr)?;
        nodes.push(node);
    }
    let setup_s = started.elapsed().as_secs_f64();
    // Whatever the nodes do once after attaching (gratuitous ARP, first timers) is over.
    std::thread::sleep(settle);
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.id()).collect();
    eprintln!("bench idle: {NODES} nodes up in {setup_s:.1} s; measuring {window:?}");
    let before: Vec<NodeTimes> = pids
        .iter()
        .map(|&p| node_times(p))
        .collect::<anyhow::Result<_>>()?;
    let t0 = Instant::now();
    std::thread::sleep(window);
    let after: Vec<NodeTimes> = pids
        .iter()
        .map(|&p| node_times(p))
        .collect::<anyhow::Result<_>>()?;
    let secs = t0.elapsed().as_secs_f64();
    let mems: Vec<Memory> = pids
        .iter()
        .map(|&p| Memory::of(p))
        .collect::<anyhow::Result<_>>()?;
    let per_node: Vec<Used> = before.iter().zip(&after).map(|(b, a)| used(b, a)).collect();
    drop(nodes);

    // The yardstick: a process that does nothing, with the same libc.
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .context("starting sleep")?;
    std::thread::sleep(Duration::from_millis(200));
    let sleep_mem = Memory::of(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();

    let total_ns: u64 = per_node.iter().map(|u| u.run_ns).sum();
    let total_ticks: u64 = per_node.iter().map(|u| u.ticks).sum();
    let total_ctxt: u64 = per_node.iter().map(|u| u.ctxt_switches).sum();
    let total_slices: u64 = per_node.iter().map(|u| u.timeslices).sum();
    let changed: u64 = per_node.iter().map(|u| u.threads_changed).sum();
    let busiest = per_node
        .iter()
        .enumerate()
        .max_by_key(|(_, u)| u.run_ns)
        .map(|(i, u)| (i, *u))
        .unwrap_or_default();
    let tck = 100.0; // USER_HZ on Linux
    let cpu_s = total_ns as f64 / 1e9;
    let one = mems[0];
    let med_anon = median(mems.iter().map(|m| m.rss_anon).collect());
    let med_rss = median(mems.iter().map(|m| m.vm_rss).collect());
    let max_anon = mems.iter().map(|m| m.rss_anon).max().unwrap_or(0);
    let max_rss = mems.iter().map(|m| m.vm_rss).max().unwrap_or(0);
    let threads = median(mems.iter().map(|m| m.threads).collect());
    let met = |ok: bool| if ok { "met" } else { "**not met**" };

    let mut md = format!(
        "{NODES} release-built netstack nodes, each with `shmif0` up on a bus it shares with one \
         other node ({} buses of the default size in /dev/shm), no traffic; started and \
         configured one by one with `netstack-ctl` in {setup_s:.1} s, then left alone for \
         {:.0} s before a {:.1} s window. *CPU* sums each node thread's time on a CPU from \
         /proc/PID/task/TID/schedstat (ns) over the window; *ticks* is the same from \
         /proc/PID/stat utime + stime (10 ms resolution per process, a cross-check). *Context \
         switches* are each thread's voluntary + involuntary switches from its status file; \
         *runs* is how many times the threads got a CPU (schedstat). Targets (issue 10): under \
         {CPU_TARGET_S} s CPU for all nodes, no wakeups when idle; an idle node with one bus \
         RssAnon ≤ 1 MiB, VmRSS ≤ 4 MiB.\n\n",
        NODES.div_ceil(2),
        settle.as_secs_f64(),
        secs
    );
    if let Some(d) = std::env::var_os(NETSTACK_DIR_ENV) {
        md += &format!(
            "netstack binaries from `{}` ({NETSTACK_DIR_ENV}), not built from this source.\n\n",
            Path::new(&d).display()
        );
    }
    md += "| Measure | All nodes | Per node per second | Busiest node (by CPU) | Target |\n";
    md += "|:---|---:|---:|---:|:---|\n";
    let per_node_s = |v: f64| v / NODES as f64 / secs;
    // The busiest node's number, or a dash when no node ran at all.
    let busiest_cell = |value: String| -> String {
        if busiest.1.run_ns == 0 {
            "– (none ran)".into()
        } else {
            format!("n{} {value}", busiest.0)
        }
    };
    md += &format!(
        "| CPU (schedstat) | {cpu_s:.6} s | {:.1} µs | {} | < {CPU_TARGET_S} s total: {} |\n",
        per_node_s(total_ns as f64) / 1e3,
        busiest_cell(format!("{:.6} s", busiest.1.run_ns as f64 / 1e9)),
        met(cpu_s < CPU_TARGET_S)
    );
    md += &format!(
        "| CPU (stat ticks) | {:.2} s | – | – | – |\n",
        total_ticks as f64 / tck
    );
    md += &format!(
        "| Context switches | {total_ctxt} | {:.2} | {} | 0 when idle: {} |\n",
        per_node_s(total_ctxt as f64),
        busiest_cell(busiest.1.ctxt_switches.to_string()),
        met(total_ctxt == 0)
    );
    md += &format!(
        "| Runs (schedstat) | {total_slices} | {:.2} | {} | – |\n",
        per_node_s(total_slices as f64),
        busiest_cell(busiest.1.timeslices.to_string()),
    );
    if changed > 0 {
        md += &format!(
            "\n{changed} node thread(s) started or ended during the window (counted from zero, or \
             left out).\n"
        );
    }
    md += "\n### Idle node memory\n\nFrom /proc/PID/status (KiB) at the end of the window. \
           RssAnon is the node's private memory; RssFile is the executable and libc pages, \
           shared by every node; RssShmem is bus pages the node touched (a shared file \
           mapping).\n\n";
    md += "| Process | VmRSS | RssAnon | RssFile | RssShmem | Threads | RssAnon ≤ 1 MiB | VmRSS ≤ 4 MiB |\n";
    md += "|:---|---:|---:|---:|---:|---:|:---|:---|\n";
    md += &format!(
        "| one idle node, one bus (n0) | {} | {} | {} | {} | {} | {} | {} |\n",
        one.vm_rss,
        one.rss_anon,
        one.rss_file,
        one.rss_shmem,
        one.threads,
        met(one.rss_anon <= RSS_ANON_TARGET_KIB),
        met(one.vm_rss <= VM_RSS_TARGET_KIB)
    );
    md += &format!(
        "| median of the {NODES} nodes | {med_rss} | {med_anon} | – | – | {threads} | {} | {} |\n",
        met(med_anon <= RSS_ANON_TARGET_KIB),
        met(med_rss <= VM_RSS_TARGET_KIB)
    );
    md += &format!(
        "| largest of the {NODES} nodes | {max_rss} | {max_anon} | – | – | – | {} | {} |\n",
        met(max_anon <= RSS_ANON_TARGET_KIB),
        met(max_rss <= VM_RSS_TARGET_KIB)
    );
    if let Ok(m) = &sleep_mem {
        md += &format!(
            "| yardstick: `sleep` (coreutils) | {} | {} | {} | {} | {} | – | – |\n",
            m.vm_rss, m.rss_anon, m.rss_file, m.rss_shmem, m.threads
        );
    }
    Ok(SuiteReport {
        name: "idle",
        markdown: md,
        json: json!({
            "nodes": NODES,
            "setup_s": setup_s,
            "settle_s": settle.as_secs_f64(),
            "window_s": secs,
            "cpu_s": cpu_s,
            "cpu_ticks_s": total_ticks as f64 / tck,
            "context_switches": total_ctxt,
            "context_switches_per_node_per_s": per_node_s(total_ctxt as f64),
            "runs": total_slices,
            "threads_changed": changed,
            "per_node": per_node,
            "memory_kib": mems,
            "sleep_memory_kib": sleep_mem.ok(),
            "targets": {
                "cpu_s": CPU_TARGET_S,
                "rss_anon_kib": RSS_ANON_TARGET_KIB,
                "vm_rss_kib": VM_RSS_TARGET_KIB,
            },
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_new_threads_from_zero_and_notes_gone_ones() {
        let t = |run_ns, timeslices, ctxt_switches| ThreadTimes {
            run_ns,
            timeslices,
            ctxt_switches,
        };
        let before = NodeTimes {
            threads: [(1, t(100, 5, 7)), (2, t(50, 1, 1))].into(),
            ticks: 3,
        };
        let after = NodeTimes {
            threads: [(1, t(150, 6, 9)), (3, t(10, 1, 1))].into(),
            ticks: 4,
        };
        let u = used(&before, &after);
        assert_eq!(
            (u.run_ns, u.timeslices, u.ctxt_switches, u.ticks),
            (60, 2, 3, 1)
        );
        assert_eq!(u.threads_changed, 2);
    }

    #[test]
    fn this_process_can_be_read() {
        let t = node_times(std::process::id()).unwrap();
        assert!(!t.threads.is_empty());
        assert!(t.threads.values().any(|th| th.run_ns > 0));
        let m = Memory::of(std::process::id()).unwrap();
        assert!(m.vm_rss > 0 && m.threads >= 1);
    }
}
