//! The journal: how `down` finds every process of a lab, whatever moment labctl died at.
//!
//! Every process labctl starts for a lab (a netstack node, a namespace holder, a bridge, a
//! lifetime capture) is first written to `state.json` as an *intent*, a [`ProcRecord`] with a
//! marker and no pid, and the file is saved (fsync'd, then renamed over the old one) before
//! the process is spawned. The process gets the marker in its environment (`SHMLAB_PROC`),
//! which survives the `exec`s of wrappers (`nsenter`, `unshare`, shell scripts) and is
//! inherited by anything it starts. Right after the spawn the record gets the pid and start
//! time and the file is saved again.
//!
//! So after a `kill -9` of labctl a record has a pid, or it is an intent whose process (if it
//! was spawned at all) is found by its marker in `/proc/*/environ`; and a sweep for every
//! marker under the lab dir finds whatever the records missed, even with no readable state.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::lab::{LabState, Proc};

/// The environment variable that marks a lab's processes: `LABDIR/ID`.
pub const MARKER_ENV: &str = "SHMLAB_PROC";

/// One process of the lab: its marker from before it is spawned, its pid once it is.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcRecord {
    /// `SHMLAB_PROC` in its environment: the lab dir, `/`, and an id such as `node:h1` or
    /// `bridge:l1:eth0` (`:` is never in a node, interface or bus name, so ids are unique).
    pub marker: String,
    /// Pid and start time, recorded right after the spawn; none in an intent.
    #[serde(flatten)]
    pub proc: Option<Proc>,
}

impl ProcRecord {
    /// An intent for process `id` of the lab in `dir` (the canonical lab dir).
    pub fn intent(dir: &Path, id: &str) -> ProcRecord {
        ProcRecord {
            marker: format!("{}/{id}", dir.display()),
            proc: None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.pid)
    }

    /// Running, and the process that was recorded.
    pub fn alive(&self) -> bool {
        self.proc.as_ref().is_some_and(Proc::alive)
    }

    /// For an intent, the process that carries its marker, if one runs (the oldest, should a
    /// wrapper have started children that inherited it). Returns whether it found one.
    pub fn resolve(&mut self, marked: &[Marked]) -> bool {
        if self.proc.is_some() {
            return false;
        }
        self.proc = marked
            .iter()
            .filter(|m| m.marker == self.marker)
            .min_by_key(|m| m.proc.start_time)
            .map(|m| m.proc.clone());
        self.proc.is_some()
    }
}

/// A live process found carrying a marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marked {
    pub proc: Proc,
    pub marker: String,
}

/// The marker prefix of every process of the lab in `dir`: `DIR/`, so lab `a` never matches
/// lab `ab`.
pub fn lab_prefix(dir: &Path) -> String {
    format!("{}/", dir.display())
}

/// Every live process (zombies have no environment left) whose `SHMLAB_PROC` starts with
/// `prefix`, labctl itself excepted. Processes whose environment we may not read belong to
/// someone else and are not ours to find.
pub fn marked_processes(prefix: &str) -> Vec<Marked> {
    let me = std::process::id();
    let key = format!("{MARKER_ENV}=");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let Some(marker) = env
            .split(|&b| b == 0)
            .find_map(|v| v.strip_prefix(key.as_bytes()))
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|m| m.starts_with(prefix))
        else {
            continue;
        };
        if let Some(proc) = Proc::from_pid(pid).filter(Proc::alive) {
            found.push(Marked {
                proc,
                marker: marker.to_string(),
            });
        }
    }
    found
}

/// What salvage finds in a state file that does not load as [`LabState`]: every object with a
/// `pid` and `start_time` is a process, every `marker` without them an intent, every
/// `"named": NAME` a namespace.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Salvage {
    pub procs: Vec<Proc>,
    pub intents: Vec<String>,
    pub namespaces: Vec<String>,
}

/// Reads what it can of `dir/state.json` (see [`Salvage`]); nothing if it is not JSON at all.
pub fn salvage(dir: &Path) -> Salvage {
    fn walk(v: &serde_json::Value, s: &mut Salvage) {
        match v {
            serde_json::Value::Object(m) => {
                let pid = m.get("pid").and_then(|p| p.as_u64());
                let start = m.get("start_time").and_then(|p| p.as_u64());
                match (pid, start) {
                    (Some(pid), Some(start_time)) => s.procs.push(Proc {
                        pid: pid as u32,
                        start_time,
                    }),
                    _ => {
                        if let Some(marker) = m.get("marker").and_then(|m| m.as_str()) {
                            s.intents.push(marker.to_string());
                        }
                    }
                }
                if let Some(n) = m.get("named").and_then(|n| n.as_str()) {
                    s.namespaces.push(n.to_string());
                }
                m.values().for_each(|v| walk(v, s));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, s)),
            _ => {}
        }
    }
    let mut s = Salvage::default();
    if let Some(v) = std::fs::read_to_string(dir.join(crate::lab::STATE_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    {
        walk(&v, &mut s);
    }
    s
}

/// The lab state being built by `up`, and the children it spawned (reaped when `up` gives
/// up, so they do not stay zombies of a labctl that lives on, as in `labctl test`).
pub struct Journal {
    pub state: LabState,
    children: Vec<Child>,
    /// Markers of the records in the state last saved: their intents are on disk.
    durable: HashSet<String>,
    /// When the state was last saved.
    saved: Instant,
}

/// How stale the pids on disk may get while `up` starts processes (see [`Journal::checkpoint`]).
pub const CHECKPOINT: Duration = Duration::from_millis(100);

impl Journal {
    pub fn new(state: LabState) -> Journal {
        Journal {
            state,
            children: Vec::new(),
            durable: HashSet::new(),
            saved: Instant::now(),
        }
    }

    /// Makes the state durable (see [`LabState::save`]).
    pub fn save(&mut self) -> Result<()> {
        self.state.save()?;
        self.durable = self
            .state
            .procs()
            .into_iter()
            .map(|r| r.marker.clone())
            .collect();
        self.saved = Instant::now();
        Ok(())
    }

    /// Saves if the last save is older than [`CHECKPOINT`]. Every intent is on disk before
    /// its process is spawned (see [`Journal::spawn`]); what a checkpoint adds is the pids,
    /// which `down` would otherwise find by marker. Saving after every spawn instead costs a
    /// whole-state write per process, quadratic in the lab's size.
    pub fn checkpoint(&mut self) -> Result<()> {
        if self.saved.elapsed() >= CHECKPOINT {
            self.save()?;
        }
        Ok(())
    }

    /// Spawns `cmd` for the record with `marker`, which must be in the state: saves first
    /// unless that record is on disk already (the intent is durable before the process
    /// exists), then spawns the process with the marker in its environment. The caller puts
    /// the returned [`Proc`] in the record.
    pub fn spawn(&mut self, marker: &str, cmd: &mut Command) -> Result<(Proc, Child)> {
        if !self.durable.contains(marker) {
            if !self.state.procs().iter().any(|r| r.marker == marker) {
                anyhow::bail!("internal error: {marker} is spawned without a journal record");
            }
            self.save()?;
        }
        let child = cmd
            .env(MARKER_ENV, marker)
            .spawn()
            .with_context(|| format!("starting {}", cmd.get_program().to_string_lossy()))?;
        Ok((Proc::of(&child), child))
    }

    /// Keeps a child to reap later.
    pub fn adopt(&mut self, child: Child) {
        self.children.push(child);
    }

    /// Collects the exit status of children that have ended.
    pub fn reap(&mut self) {
        for c in &mut self.children {
            let _ = c.try_wait();
        }
    }
}

/// The distinct processes of `procs`, first occurrence kept.
pub fn dedup(procs: impl IntoIterator<Item = Proc>) -> Vec<Proc> {
    let mut seen = HashSet::new();
    procs
        .into_iter()
        .filter(|p| seen.insert((p.pid, p.start_time)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{LinuxNode, NetstackNode};
    use crate::lab::{BusState, CaptureState, IfState, KindState, NodeInfo, NodeState};
    use crate::linux::{BridgeState, Netns};
    use std::path::PathBuf;

    fn info(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            log: PathBuf::from(format!("/lab/{name}.log")),
            interfaces: vec![IfState {
                name: "eth0".into(),
                bus: "lan".into(),
                tap: None,
                addrs: vec!["10.0.0.1/24".into()],
            }],
        }
    }

    fn record(id: &str, pid: Option<u32>) -> ProcRecord {
        ProcRecord {
            proc: pid.map(|pid| Proc {
                pid,
                start_time: 1000 + u64::from(pid),
            }),
            ..ProcRecord::intent(Path::new("/lab"), id)
        }
    }

    fn bridge(node: &str, tap: &str, pid: Option<u32>) -> BridgeState {
        BridgeState {
            proc: record(&format!("bridge:{node}:{tap}"), pid),
            tap: tap.into(),
            bus: "/lab/lan.bus".into(),
            mac: String::new(),
            stats: format!("/lab/{node}.{tap}.bridge.json").into(),
            log: format!("/lab/{node}.{tap}.bridge.log").into(),
        }
    }

    /// A lab of every kind and shape of record: started, intents, named and holder namespaces.
    fn lab(dir: &Path) -> LabState {
        let node = |name: &str, kind| NodeState {
            info: info(name),
            kind,
        };
        LabState {
            nodes: vec![
                node(
                    "h1",
                    KindState::Netstack(NetstackNode {
                        socket: "/lab/h1.sock".into(),
                        daemon: record("node:h1", Some(41)),
                    }),
                ),
                node(
                    "h2",
                    KindState::Netstack(NetstackNode {
                        socket: "/lab/h2.sock".into(),
                        daemon: record("node:h2", None),
                    }),
                ),
                node(
                    "l1",
                    KindState::Linux(LinuxNode {
                        netns: Netns::Named("shmlab-lab-l1".into()),
                        bridges: vec![bridge("l1", "eth0", Some(43)), bridge("l1", "eth1", None)],
                    }),
                ),
                node(
                    "l2",
                    KindState::Linux(LinuxNode {
                        netns: Netns::Holder(record("holder:l2", None)),
                        bridges: Vec::new(),
                    }),
                ),
            ],
            buses: vec![BusState {
                name: "lan".into(),
                path: "/lab/lan.bus".into(),
                pcap: Some("/lab/lan.pcap".into()),
            }],
            captures: vec![CaptureState {
                bus: "lan".into(),
                proc: record("capture:lan", Some(44)),
            }],
            ..LabState::empty("lab", dir)
        }
    }

    #[test]
    fn state_of_every_kind_round_trips_with_intents_and_pids() {
        let dir = tempfile::tempdir().unwrap();
        let state = lab(dir.path());
        state.save().unwrap();
        let back = LabState::load(dir.path()).unwrap();
        assert_eq!(back, state);
        assert!(!dir.path().join(".state.json.tmp").exists());

        // The tagged shape: kind beside the common fields, a netstack node's process flat in
        // it, an intent with a marker and no pid.
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("state.json")).unwrap())
                .unwrap();
        let h1 = &v["nodes"][0];
        assert_eq!(h1["kind"], "netstack");
        assert_eq!(h1["pid"], 41);
        assert_eq!(h1["marker"], "/lab/node:h1");
        let h2 = v["nodes"][1].as_object().unwrap();
        assert_eq!(h2["marker"], "/lab/node:h2");
        assert!(!h2.contains_key("pid") && !h2.contains_key("start_time"));
        assert_eq!(v["nodes"][2]["kind"], "linux");
        assert_eq!(v["nodes"][2]["netns"]["named"], "shmlab-lab-l1");
        assert_eq!(v["nodes"][2]["bridges"][0]["pid"], 43);
        assert_eq!(v["nodes"][3]["netns"]["holder"]["marker"], "/lab/holder:l2");

        // Every record, in order, intents included.
        let markers: Vec<&str> = back.procs().iter().map(|r| r.marker.as_str()).collect();
        assert_eq!(
            markers,
            [
                "/lab/node:h1",
                "/lab/node:h2",
                "/lab/bridge:l1:eth0",
                "/lab/bridge:l1:eth1",
                "/lab/holder:l2",
                "/lab/capture:lan",
            ]
        );
        assert_eq!(back.host_names(), ["shmlab-lab-l1"]);
    }

    #[test]
    fn a_state_that_does_not_load_names_file_line_and_field_and_is_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(lab(dir.path())).unwrap();
        v["nodes"][3]["kind"] = "rump".into();
        let text = serde_json::to_string_pretty(&v).unwrap();
        std::fs::write(dir.path().join("state.json"), &text).unwrap();
        let e = format!("{:#}", LabState::load(dir.path()).unwrap_err());
        let file = dir.path().join("state.json").display().to_string();
        assert!(e.starts_with(&format!("{file}:")), "{e}");
        assert!(e.contains("malformed lab state"), "{e}");
        assert!(e.contains("unknown variant `rump`"), "{e}");
        // line:column point into the file.
        let line: usize = e[file.len() + 1..]
            .split(':')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(line > 1 && line <= text.lines().count(), "{e}");

        // (In no particular order: JSON objects are walked in key order.)
        let mut s = salvage(dir.path());
        let mut pids: Vec<u32> = s.procs.iter().map(|p| p.pid).collect();
        pids.sort();
        assert_eq!(pids, [41, 43, 44]);
        s.intents.sort();
        assert_eq!(
            s.intents,
            ["/lab/bridge:l1:eth1", "/lab/holder:l2", "/lab/node:h2"]
        );
        assert_eq!(s.namespaces, ["shmlab-lab-l1"]);

        std::fs::write(dir.path().join("state.json"), "{ not json").unwrap();
        assert!(format!("{:#}", LabState::load(dir.path()).unwrap_err()).contains(":1:"));
        assert_eq!(salvage(dir.path()), Salvage::default());
    }

    #[test]
    fn an_intent_is_on_disk_before_its_process_and_is_found_by_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(dir.path()).unwrap();
        let mut journal = Journal::new(LabState::empty("lab", &dir));
        let intent = ProcRecord::intent(&dir, "capture:lan");
        journal.state.captures.push(CaptureState {
            bus: "lan".into(),
            proc: intent.clone(),
        });
        // A shell that reports what the state file said when it ran, then waits.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "cat '{}' > '{}'; exec sleep 30",
                dir.join("state.json").display(),
                dir.join("seen.json").display()
            ))
            .stdin(std::process::Stdio::null());
        let (proc, mut child) = journal.spawn(&intent.marker, &mut cmd).unwrap();
        assert_eq!(proc.pid, child.id());
        let seen = dir.join("seen.json");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let seen_state = loop {
            if let Ok(s) = LabState::load_file(&seen) {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "the child never ran");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(
            seen_state.captures[0].proc, intent,
            "the intent, without a pid"
        );

        // labctl "died" here: the record still has no pid. The marker finds the process, in
        // this lab only (a lab dir that merely starts the same is another lab).
        let marked = marked_processes(&lab_prefix(&dir));
        assert_eq!(marked.len(), 1, "{marked:?}");
        let mut record = journal.state.captures[0].proc.clone();
        assert!(record.resolve(&marked));
        assert_eq!(record.pid(), Some(child.id()));
        assert!(record.alive());
        let other = format!("{}x/", dir.display());
        assert!(marked_processes(&other).is_empty());

        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!record.alive());
        assert!(marked_processes(&lab_prefix(&dir)).is_empty());
    }
}
