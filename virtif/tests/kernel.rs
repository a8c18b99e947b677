//! virtif against the real Linux stack: taps in throwaway network namespaces.
//! Needs root; see `common::can_run` for what happens without it.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{ArpOps, Netns};
use virtif::{Error, SendError, Tap, TapConfig};

const KERNEL_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
const OUR_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
const OUR_MAC: [u8; 6] = [0x02, 0x5e, 0x1a, 0xb0, 0x00, 0x02];

fn open_in(ns: &Netns, name: &str) -> Tap {
    Tap::open(&TapConfig {
        netns: Some(ns.name.clone()),
        ..TapConfig::new(name)
    })
    .unwrap_or_else(|e| panic!("open {name} in {}: {e}", ns.name))
}

/// Reads frames until `want` accepts one, answering the kernel's ARP requests for `OUR_IP` on
/// the way (it may ask before it answers us). Panics after five seconds.
fn wait_for<T>(tap: &mut Tap, what: &str, mut want: impl FnMut(&[u8]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 2048];
    let mut seen = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(n) = tap.recv(&mut buf, left).expect("recv") else {
            panic!("no {what} within 5 s ({seen} other frames seen)");
        };
        let frame = &buf[..n];
        if let Some(t) = want(frame) {
            return t;
        }
        seen += 1;
        if let Some(arp) = common::parse_arp(frame) {
            if common::is_request(arp.op) && arp.target_ip == OUR_IP {
                let reply = common::arp_frame(
                    ArpOps::Reply,
                    arp.sender_mac,
                    (OUR_MAC, OUR_IP),
                    (arp.sender_mac, arp.sender_ip),
                );
                tap.send(&reply).expect("send ARP reply");
            }
        }
    }
}

#[test]
fn kernel_answers_arp_and_ping_through_a_tap_in_a_netns() {
    if !shmlab_tests::prereq::kernel_net("kernel_answers_arp_and_ping_through_a_tap_in_a_netns") {
        return;
    }
    let ns = Netns::new("ping");
    let mut tap = open_in(&ns, "vtap0");
    assert_eq!(tap.netns(), Some(ns.name.as_str()));
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "vtap0"]);
    ns.ip(&["link", "set", "vtap0", "up"]);
    let kernel_mac = common::mac_of(&ns.link("vtap0"));
    assert_eq!(tap.mac(), kernel_mac, "Tap::mac is the kernel side's MAC");

    // The request goes out from another thread through a sender, as a stack thread would.
    let sender = tap.sender();
    let request = common::arp_frame(
        ArpOps::Request,
        common::BROADCAST,
        (OUR_MAC, OUR_IP),
        ([0; 6], KERNEL_IP),
    );
    std::thread::spawn(move || sender.send(&request))
        .join()
        .expect("sender thread")
        .expect("send ARP request");

    let reply = wait_for(&mut tap, "ARP reply", |f| {
        common::parse_arp(f).filter(|a| a.op == ArpOps::Reply)
    });
    assert_eq!(reply.sender_ip, KERNEL_IP);
    assert_eq!(reply.sender_mac, kernel_mac);
    assert_eq!(reply.eth_src, kernel_mac);
    assert_eq!((reply.target_mac, reply.target_ip), (OUR_MAC, OUR_IP));
    assert_eq!(reply.eth_dst, OUR_MAC);

    let payload: Vec<u8> = (0..56u8).collect();
    let ping = common::echo_request_frame(
        (kernel_mac, OUR_MAC),
        OUR_IP,
        KERNEL_IP,
        0x5e1a,
        7,
        &payload,
    );
    tap.send(&ping).expect("send echo request");
    let echo = wait_for(&mut tap, "ICMP echo reply", common::parse_echo_reply);
    assert_eq!((echo.src, echo.dst), (KERNEL_IP, OUR_IP));
    assert_eq!((echo.eth_src, echo.eth_dst), (kernel_mac, OUR_MAC));
    assert_eq!((echo.ident, echo.seq), (0x5e1a, 7));
    assert_eq!(echo.payload, payload);

    // The kernel learnt us from the ARP exchange.
    let neigh = ns.ip(&["neigh", "show", "dev", "vtap0"]);
    assert!(
        neigh.contains("10.99.0.2 lladdr 02:5e:1a:b0:00:02"),
        "{neigh}"
    );

    let stats = tap.stats();
    assert!(stats.sent >= 2, "{stats:?}");
    assert!(stats.sent_bytes >= 42 + 14 + 20 + 8 + 56, "{stats:?}");
    assert!(stats.received >= 2, "{stats:?}");
    assert_eq!(
        (stats.send_errors, stats.recv_errors, stats.runts),
        (0, 0, 0)
    );
}

#[test]
fn mtu_and_up_state_show_in_ip_link() {
    if !shmlab_tests::prereq::kernel_net("mtu_and_up_state_show_in_ip_link") {
        return;
    }
    let ns = Netns::new("mtu");
    let tap = Tap::open(&TapConfig {
        name: "vtap1",
        netns: Some(ns.name.clone()),
        mtu: Some(1400),
        up: false,
    })
    .expect("open vtap1");
    let link = ns.link("vtap1");
    assert_eq!(link["mtu"], 1400);
    assert!(!common::flags(&link).contains(&"UP".to_owned()), "{link}");
    assert_eq!(tap.mtu().unwrap(), 1400);
    assert!(!tap.is_up().unwrap());

    // Changed from another thread through a sender, as `ifconfig` on the stack thread would.
    let sender = tap.sender();
    std::thread::spawn(move || {
        sender.set_mtu(9000)?;
        sender.set_up(true)
    })
    .join()
    .expect("control thread")
    .expect("set mtu and up");
    let link = ns.link("vtap1");
    assert_eq!(link["mtu"], 9000);
    let flags = common::flags(&link);
    assert!(flags.contains(&"UP".to_owned()), "{link}");
    assert!(flags.contains(&"LOWER_UP".to_owned()), "{link}");
    assert!(tap.is_up().unwrap());

    // And changes made by others are read back.
    ns.ip(&["link", "set", "vtap1", "mtu", "1280"]);
    assert_eq!(tap.mtu().unwrap(), 1280);

    tap.set_up(false).unwrap();
    assert!(!common::flags(&ns.link("vtap1")).contains(&"UP".to_owned()));

    let err = tap.set_mtu(20).unwrap_err();
    assert!(matches!(err, Error::BadMtu { mtu: 20, .. }), "{err}");
    assert_eq!(
        ns.link("vtap1")["mtu"],
        1280,
        "a refused MTU changes nothing"
    );
}

#[test]
fn dropping_the_last_handle_removes_the_tap() {
    if !shmlab_tests::prereq::kernel_net("dropping_the_last_handle_removes_the_tap") {
        return;
    }
    let ns = Netns::new("drop");
    let tap = open_in(&ns, "vtap2");
    let sender = tap.sender();
    drop(tap);
    assert!(ns.has_link("vtap2"), "a sender still holds the tap open");
    drop(sender);
    assert!(!ns.has_link("vtap2"), "closing removed the tap we created");
}

#[test]
fn persistent_tap_is_attached_and_left_in_place() {
    if !shmlab_tests::prereq::kernel_net("persistent_tap_is_attached_and_left_in_place") {
        return;
    }
    let ns = Netns::new("persist");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", "ptap0"]);
    let mac = common::mac_of(&ns.link("ptap0"));
    let tap = open_in(&ns, "ptap0");
    assert_eq!(tap.mac(), mac);
    assert!(common::flags(&ns.link("ptap0")).contains(&"LOWER_UP".to_owned()));
    drop(tap);
    let link = ns.link("ptap0");
    assert!(
        !common::flags(&link).contains(&"LOWER_UP".to_owned()),
        "{link}"
    );
}

#[test]
fn second_open_of_an_attached_tap_is_busy() {
    if !shmlab_tests::prereq::kernel_net("second_open_of_an_attached_tap_is_busy") {
        return;
    }
    let ns = Netns::new("busy");
    let _tap = open_in(&ns, "vtap3");
    let err = Tap::open(&TapConfig {
        netns: Some(ns.name.clone()),
        ..TapConfig::new("vtap3")
    })
    .unwrap_err();
    assert!(matches!(err, Error::Busy { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.starts_with("vtap3: tap in network namespace"), "{msg}");
    assert!(msg.contains("already attached to another process"), "{msg}");
}

#[test]
fn existing_interface_that_is_not_a_tap_is_refused() {
    if !shmlab_tests::prereq::kernel_net("existing_interface_that_is_not_a_tap_is_refused") {
        return;
    }
    let ns = Netns::new("notap");
    ns.ip(&["tuntap", "add", "mode", "tun", "name", "ptun0"]);
    for name in ["lo", "ptun0"] {
        let err = Tap::open(&TapConfig {
            netns: Some(ns.name.clone()),
            ..TapConfig::new(name)
        })
        .unwrap_err();
        assert!(matches!(err, Error::NotATap { .. }), "{name}: {err}");
        assert!(err.to_string().ends_with("is not a tap device"), "{err}");
    }
}

#[test]
fn frames_longer_than_the_buffer_are_counted_and_dropped() {
    if !shmlab_tests::prereq::kernel_net("frames_longer_than_the_buffer_are_counted_and_dropped") {
        return;
    }
    let ns = Netns::new("trunc");
    let mut tap = open_in(&ns, "vtap4");
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "vtap4"]);
    let request = common::arp_frame(
        ArpOps::Request,
        common::BROADCAST,
        (OUR_MAC, OUR_IP),
        ([0; 6], KERNEL_IP),
    );
    tap.send(&request).unwrap();
    // The 42-byte reply (and any IPv6 chatter) cannot fit: nothing is delivered cut short.
    let mut small = [0u8; 20];
    let deadline = Instant::now() + Duration::from_secs(5);
    while tap.stats().truncated == 0 && Instant::now() < deadline {
        let got = tap.recv(&mut small, Duration::from_millis(200)).unwrap();
        assert_eq!(got, None, "a frame longer than the buffer was delivered");
    }
    let stats = tap.stats();
    assert!(stats.truncated >= 1, "{stats:?}");
    assert_eq!(stats.received, 0, "{stats:?}");
}

#[test]
fn runts_and_frames_for_a_down_tap_are_refused_and_counted() {
    if !shmlab_tests::prereq::kernel_net("runts_and_frames_for_a_down_tap_are_refused_and_counted")
    {
        return;
    }
    let ns = Netns::new("refuse");
    let tap = open_in(&ns, "vtap5");
    let err = tap.send(&[0u8; 13]).unwrap_err();
    assert!(matches!(err, SendError::Runt { len: 13, .. }), "{err}");
    tap.set_up(false).unwrap();
    let frame = common::arp_frame(
        ArpOps::Request,
        common::BROADCAST,
        (OUR_MAC, OUR_IP),
        ([0; 6], KERNEL_IP),
    );
    let err = tap.send(&frame).unwrap_err();
    assert!(matches!(err, SendError::Down { .. }), "{err}");
    assert!(
        err.to_string().starts_with("vtap5: the interface is down"),
        "{err}"
    );
    tap.set_up(true).unwrap();
    tap.send(&frame).expect("accepted once up again");
    let stats = tap.stats();
    assert_eq!((stats.runts, stats.send_errors, stats.sent), (1, 1, 1));
}

#[test]
fn recv_on_a_quiet_tap_times_out_with_none() {
    if !shmlab_tests::prereq::kernel_net("recv_on_a_quiet_tap_times_out_with_none") {
        return;
    }
    let ns = Netns::new("quiet");
    // Down, so the kernel sends nothing (no IPv6 router solicitations).
    let mut tap = Tap::open(&TapConfig {
        up: false,
        netns: Some(ns.name.clone()),
        ..TapConfig::new("vtap6")
    })
    .unwrap();
    let mut buf = [0u8; 1514];
    let t0 = Instant::now();
    assert_eq!(
        tap.recv(&mut buf, Duration::from_millis(100)).unwrap(),
        None
    );
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_millis(100), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    assert_eq!(tap.try_recv(&mut buf).unwrap(), None);
}

#[test]
fn tap_in_the_callers_own_namespace() {
    if !shmlab_tests::prereq::kernel_net("tap_in_the_callers_own_namespace") {
        return;
    }
    // `ifconfig virt0 create` on a node opens a host tap with no namespace: check that path in
    // the test's own namespace, under a name unique to this run, and that nothing stays behind.
    let name = format!("svt{}", std::process::id() % 100_000);
    let tap = Tap::open(&TapConfig::new(&name)).expect("open in the host namespace");
    assert_eq!(tap.netns(), None);
    assert_eq!(tap.name(), name);
    let shown =
        common::run(std::process::Command::new("ip").args(["-j", "link", "show", "dev", &name]));
    assert!(shown.contains(&name));
    drop(tap);
    let gone = std::process::Command::new("ip")
        .args(["link", "show", "dev", &name])
        .output()
        .unwrap();
    assert!(
        !gone.status.success(),
        "tap {name} left behind in the host namespace"
    );
}

#[test]
fn rx_thread_blocked_in_recv_wakes_for_the_reply_to_a_frame_sent_elsewhere() {
    if !shmlab_tests::prereq::kernel_net(
        "rx_thread_blocked_in_recv_wakes_for_the_reply_to_a_frame_sent_elsewhere",
    ) {
        return;
    }
    let ns = Netns::new("rx");
    let mut tap = open_in(&ns, "vtap7");
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "vtap7"]);
    let sender = tap.sender();
    // The node's shape: an rx thread owns the Tap and blocks in recv; another thread sends.
    let rx = std::thread::spawn(move || {
        let mut buf = [0u8; 1514];
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Some(n) = tap
            .recv(&mut buf, deadline.saturating_duration_since(Instant::now()))
            .expect("recv")
        {
            if let Some(arp) = common::parse_arp(&buf[..n]).filter(|a| a.op == ArpOps::Reply) {
                return Some(arp);
            }
        }
        None
    });
    std::thread::sleep(Duration::from_millis(50));
    let request = common::arp_frame(
        ArpOps::Request,
        common::BROADCAST,
        (OUR_MAC, OUR_IP),
        ([0; 6], KERNEL_IP),
    );
    sender.send(&request).expect("send");
    let reply = rx.join().expect("rx thread").expect("ARP reply within 5 s");
    assert_eq!(reply.sender_ip, KERNEL_IP);
    assert_eq!(reply.sender_mac, sender.mac());
    assert_eq!(sender.stats().sent, 1);
}
