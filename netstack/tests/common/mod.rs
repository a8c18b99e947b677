//! Shared helpers for netstack integration tests: real `netstack` processes on real bus
//! files in a temporary directory, driven through `netstack-ctl`.
#![allow(dead_code)]

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NETSTACK: &str = env!("CARGO_BIN_EXE_netstack");
pub const CTL: &str = env!("CARGO_BIN_EXE_netstack-ctl");

/// What one command printed and returned.
#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A node process in the foreground, killed (after a polite `halt`) when dropped.
pub struct Node {
    pub name: String,
    pub sock: PathBuf,
    child: Child,
}

impl Node {
    /// Starts `netstack --foreground` and waits until its socket accepts connections.
    pub fn start(dir: &Path, name: &str) -> Node {
        Node::start_in(dir, name, None)
    }

    /// The same inside named network namespace `netns` (`ip netns exec` execs the node, so
    /// the child is the node itself).
    pub fn start_in(dir: &Path, name: &str, netns: Option<&str>) -> Node {
        let sock = dir.join(format!("{name}.sock"));
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, NETSTACK]);
                c
            }
            None => Command::new(NETSTACK),
        };
        let child = cmd
            .arg("--socket")
            .arg(&sock)
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning netstack");
        let mut node = Node {
            name: name.to_string(),
            sock,
            child,
        };
        node.wait_ready();
        node
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if UnixStream::connect(&self.sock).is_ok() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{}: netstack exited early: {st}", self.name);
            }
            assert!(
                Instant::now() < deadline,
                "{}: socket never came up",
                self.name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits for the process to exit (up to 10 s); its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Runs a command through `netstack-ctl`.
    pub fn run(&self, args: &[&str]) -> Out {
        let t0 = Instant::now();
        let o = Command::new(CTL)
            .arg(&self.sock)
            .args(args)
            .output()
            .expect("running netstack-ctl");
        if std::env::var_os("NETSTACK_TEST_TRACE").is_some() {
            eprintln!("{}: {args:?} took {:?}", self.name, t0.elapsed());
        }
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs a whitespace-separated command that must succeed; returns its stdout.
    pub fn ok(&self, cmd: &str) -> String {
        let args: Vec<&str> = cmd.split_whitespace().collect();
        let o = self.run(&args);
        assert_eq!(
            o.code, 0,
            "{}: `{cmd}` failed ({}):\n{}{}",
            self.name, o.code, o.stdout, o.stderr
        );
        o.stdout
    }

    /// Runs a command and parses its `--json` output.
    pub fn json(&self, cmd: &str) -> serde_json::Value {
        let out = self.ok(&format!("{cmd} --json"));
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{cmd}: bad JSON {out:?}: {e}"))
    }

    /// Creates `ifname` on `bus`, with `addr` (CIDR), up.
    pub fn iface(&self, ifname: &str, bus: &Path, addr: &str) {
        self.ok(&format!("ifconfig {ifname} create"));
        self.ok(&format!("ifconfig {ifname} linkstr {}", bus.display()));
        self.ok(&format!("ifconfig {ifname} inet {addr} up"));
    }

    pub fn mac(&self, ifname: &str) -> [u8; 6] {
        let v = self.json(&format!("ifconfig {ifname}"));
        let s = v["address"].as_str().expect("interface has a MAC");
        let mut m = [0u8; 6];
        for (i, p) in s.split(':').enumerate() {
            m[i] = u8::from_str_radix(p, 16).unwrap();
        }
        m
    }

    /// The count of drop reason `key` (see `netstat -s --json`).
    pub fn drops(&self, key: &str) -> u64 {
        let v = self.json("netstat -s");
        v["drops"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no drop counter {key}"))
    }

    pub fn counter(&self, key: &str) -> u64 {
        let v = self.json("netstat -s");
        v["counters"][key]
            .as_u64()
            .unwrap_or_else(|| panic!("no counter {key}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.alive() {
            let _ = Command::new(CTL)
                .arg(&self.sock)
                .arg("halt")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(3);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A MAC address as `ip` and our commands print it.
pub fn mac_text(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("netstack-test")
        .tempdir()
        .expect("creating a temporary directory")
}

/// h1 -- bus1 -- r1 -- bus2 -- r2 -- bus3 -- h2, routed both ways.
pub struct Chain {
    pub h1: Node,
    pub r1: Node,
    pub r2: Node,
    pub h2: Node,
    /// Last: fields drop in order, and the nodes must halt before their sockets vanish.
    pub dir: tempfile::TempDir,
}

pub fn chain() -> Chain {
    let dir = tempdir();
    let d = dir.path();
    let (b1, b2, b3) = (d.join("bus1"), d.join("bus2"), d.join("bus3"));
    let h1 = Node::start(d, "h1");
    let r1 = Node::start(d, "r1");
    let r2 = Node::start(d, "r2");
    let h2 = Node::start(d, "h2");
    h1.iface("shmif0", &b1, "10.0.1.2/24");
    r1.iface("shmif0", &b1, "10.0.1.1/24");
    r1.iface("shmif1", &b2, "10.0.2.1/24");
    r2.iface("shmif0", &b2, "10.0.2.2/24");
    r2.iface("shmif1", &b3, "10.0.3.1/24");
    h2.iface("shmif0", &b3, "10.0.3.2/24");
    h1.ok("route add default 10.0.1.1");
    h2.ok("route add default 10.0.3.1");
    r1.ok("route add -net 10.0.3.0/24 10.0.2.2");
    r2.ok("route add -net 10.0.1.0/24 10.0.2.1");
    r1.ok("sysctl -w net.inet.ip.forwarding=1");
    r2.ok("sysctl -w net.inet.ip.forwarding=1");
    Chain {
        dir,
        h1,
        r1,
        r2,
        h2,
    }
}

/// A named network namespace `shmlab-ns-test-<pid>-<tag>`, deleted on drop. Declare it before
/// the nodes inside it, so they are stopped first.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("shmlab-ns-test-{}-{tag}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Netns { name };
        ns.run(&["ip", "netns", "add", &ns.name]);
        ns
    }

    /// Runs `argv` (on the host) and returns its stdout; panics with its stderr on failure.
    pub fn run(&self, argv: &[&str]) -> String {
        let o = Command::new(argv[0])
            .args(&argv[1..])
            .output()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(
            o.status.success(),
            "{argv:?} failed: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `ip -n NS ARGS...`, which must succeed.
    pub fn ip(&self, args: &str) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend(args.split_whitespace());
        self.run(&argv)
    }

    /// The MAC address of interface `dev` in the namespace, as `ip` prints it.
    pub fn mac(&self, dev: &str) -> String {
        let link = self.ip(&format!("-j link show dev {dev}"));
        serde_json::from_str::<serde_json::Value>(&link).unwrap()[0]["address"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs a host command inside the namespace; its exit status and output.
    pub fn exec(&self, cmd: &str) -> Out {
        let o = Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd.split_whitespace())
            .output()
            .expect("ip netns exec");
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
