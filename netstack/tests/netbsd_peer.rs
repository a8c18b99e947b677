//! A netstack node and a stand-in NetBSD rump kernel (`netbsd-peer`, which drives the bus with
//! `shmif::netbsd_emu`, written from NetBSD's if_shmem.c) on one 1 MiB bus, in both attach
//! orders; and a node that must not answer a NetBSD-style record it cannot trust.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use common::{tempdir, Node};

/// A binary of another workspace package, built on demand into this test's target dir.
fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let path = profile_dir.join(bin);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin, "--target-dir"])
        .arg(profile_dir.parent().unwrap())
        .current_dir(root)
        .status()
        .unwrap();
    assert!(status.success() && path.is_file(), "building {bin}");
    path
}

struct Rump {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Rump {
    fn start(bus: &Path, ip: &str) -> Rump {
        let mut child = Command::new(workspace_bin("shmlab-tests", "netbsd-peer"))
            .args(["--bus", bus.to_str().unwrap(), "--ip", ip])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready "), "{line:?}");
        Rump {
            child,
            stdin,
            stdout,
        }
    }

    fn say(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
    }

    /// Lines until one starts with `prefix`, which is returned.
    fn until(&mut self, prefix: &str) -> String {
        loop {
            let mut line = String::new();
            assert!(self.stdout.read_line(&mut line).unwrap() > 0, "peer exited");
            if line.starts_with(prefix) {
                return line.trim().to_string();
            }
        }
    }
}

impl Drop for Rump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every frame a passive reader has seen since it rewound to the oldest record.
fn captured(reader: &mut shmif::Reader) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    let mut frames = Vec::new();
    while let Some(r) = reader.try_recv(&mut buf) {
        frames.push(buf[..r.len].to_vec());
        assert!(frames.len() < 10_000, "a reader that never ends");
    }
    frames
}

fn exchange(node_first: bool) {
    let dir = tempdir();
    let bus = dir.path().join("lan.bus");
    let node = Node::start(dir.path(), "n1");
    let mut rump;
    if node_first {
        // A bus meant for a later rump kernel: asked for with the `netbsd` keyword.
        node.ok("ifconfig shmif0 create");
        node.ok(&format!("ifconfig shmif0 linkstr {} netbsd", bus.display()));
        node.ok("ifconfig shmif0 inet 10.0.0.1/24 up");
        rump = Rump::start(&bus, "10.0.0.9/24");
    } else {
        // The rump kernel made the bus; the node attaches with NetBSD's own syntax.
        rump = Rump::start(&bus, "10.0.0.9/24");
        node.iface("shmif0", &bus, "10.0.0.1/24");
    }
    assert_eq!(std::fs::metadata(&bus).unwrap().len(), 1 << 20);
    let out = node.ok("ping -c 3 -i 0.1 10.0.0.9");
    assert!(
        out.contains("3 packets transmitted, 3 packets received"),
        "{out}"
    );
    rump.say("ping 10.0.0.1 3");
    assert_eq!(rump.until("ping-done"), "ping-done 3 3");
    let arp = node.ok("arp -an");
    assert!(arp.contains("10.0.0.9"), "{arp}");
    assert!(node.ok("ifconfig shmif0").contains("bus mode: netbsd"));

    // A passive reader and our shmif_dumpbus see the same frames, each once: first let the
    // node's link-local DAD end, whose advertisement would otherwise land between the two.
    node.ok("ifconfig -w 5");
    let attached = shmif::Bus::attach(&bus, &shmif::BusConfig::default()).unwrap();
    assert!(attached.netbsd_mode());
    let mut reader = attached.reader();
    reader.rewind_to_oldest();
    let frames = captured(&mut reader);
    // ARP both ways, 3 + 3 echoes and their replies, perhaps an ARP refresh.
    assert!(frames.len() >= 14, "{}", frames.len());
    let s = reader.stats();
    assert_eq!((s.lost, s.corrupt, s.foreign), (0, 0, 0), "{s:?}");
    let dumpbus = workspace_bin("shmlab-tools", "shmif_dumpbus");
    let o = Command::new(&dumpbus).arg(&bus).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("bus version 3, lock: 0, generation: 0, firstoff: 0xfffe0, lastoff: 0x"),
        "{header}"
    );
    assert_eq!(
        lines.filter(|l| l.starts_with("packet ")).count(),
        frames.len()
    );
    let o = Command::new(&dumpbus)
        .args(["-p", "-"])
        .arg(&bus)
        .output()
        .unwrap();
    assert!(o.status.success());
    // The pcap holds the same frames in the same order: 24-byte file header, then records.
    let pcap = o.stdout;
    let (mut at, mut from_pcap) = (24, Vec::new());
    while at < pcap.len() {
        let caplen = u32::from_ne_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        from_pcap.push(pcap[at + 16..at + 16 + caplen].to_vec());
        at += 16 + caplen;
    }
    assert_eq!(from_pcap, frames);
}

#[test]
fn node_and_rump_kernel_ping_both_ways_when_the_rump_kernel_made_the_bus() {
    exchange(false);
}

#[test]
fn node_and_rump_kernel_ping_both_ways_on_a_bus_the_node_made_for_netbsd() {
    exchange(true);
}

#[test]
fn a_node_answers_one_arp_request_once_with_a_netbsd_style_record_behind_it() {
    // The reproduction: on a default (8 MiB) bus, one ARP request then one record written the
    // NetBSD way made a node answer ~94,000 times in a second.
    let dir = tempdir();
    let bus_path = dir.path().join("lan.bus");
    let node = Node::start(dir.path(), "n1");
    node.iface("shmif0", &bus_path, "10.0.0.1/24");
    let bus = shmif::Bus::attach(&bus_path, &shmif::BusConfig::default()).unwrap();
    let port = bus.port();
    let mac = port.mac();
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&mac);
    arp.extend_from_slice(&[10, 0, 0, 2]);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&[10, 0, 0, 1]);
    port.send(&arp).unwrap();
    let mut nbsd = shmif::netbsd_emu::NetbsdIf::attach_any_size(&bus_path).unwrap();
    let mut junk = vec![0xffu8; 6];
    junk.extend_from_slice(&nbsd.mac());
    junk.extend_from_slice(&[0x88, 0xb5]);
    junk.resize(60, 0x5a);
    nbsd.send(&[&junk]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(node.counter("arp_requests_in"), 1);
    assert_eq!(node.counter("arp_replies_out"), 1);
    let v = node.json("ifconfig -v shmif0");
    assert_eq!(v["bus"]["foreign"], 1, "{v}");
    assert_eq!(v["bus_mode"], "shmlab", "{v}");
}
