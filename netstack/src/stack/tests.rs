//! Stack behaviour on virtual time: two stacks wired back to back through capturing links,
//! with `now` advanced by the test instead of a clock.

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::control::{Reply, Request};
use crate::link::LinkTx;
use crate::stats::DropReason;
use crate::wire::icmp::{self, Icmp};
use crate::wire::ipv4::{self, Emit, PROTO_ICMP, PROTO_UDP};
use crate::wire::{ether, Mac};

type Wire = Arc<Mutex<Vec<Vec<u8>>>>;

struct Capture(Wire);

impl LinkTx for Capture {
    fn send(&self, frame: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().push(frame.to_vec());
        Ok(())
    }
}

struct TestNode {
    stack: Stack,
    link: LinkId,
    mac: Mac,
    sent: Wire,
}

fn node(last: u8, addr: &str) -> TestNode {
    let mut stack = Stack::new(None);
    // IPv4 tests count frames: no DAD solicitations for the link-local address in between.
    stack.sysctl.dad_count = 0;
    stack.create_iface("shmif0").unwrap();
    let sent: Wire = Arc::default();
    let mac = Mac([0xb2, 0xa0, 0, 0, 0, last]);
    let link = stack
        .attach_custom("shmif0", mac, Box::new(Capture(sent.clone())))
        .unwrap();
    let (a, p) = addr.split_once('/').unwrap();
    stack
        .add_addr(
            "shmif0",
            IfAddr::new(a.parse().unwrap(), p.parse().unwrap()),
            false,
        )
        .unwrap();
    stack.set_up("shmif0", true).unwrap();
    TestNode {
        stack,
        link,
        mac,
        sent,
    }
}

fn take(w: &Wire) -> Vec<Vec<u8>> {
    std::mem::take(&mut *w.lock().unwrap())
}

/// Moves frames between the two nodes until both are quiet, then polls them at `now`.
fn exchange(a: &mut TestNode, b: &mut TestNode, now: Instant) {
    for _ in 0..20 {
        let (fa, fb) = (take(&a.sent), take(&b.sent));
        if fa.is_empty() && fb.is_empty() {
            break;
        }
        for f in fa {
            b.stack.handle_frame(now, b.link, &f);
        }
        for f in fb {
            a.stack.handle_frame(now, a.link, &f);
        }
        a.stack.poll(now);
        b.stack.poll(now);
    }
}

/// Starts a command; returns the channel its replies arrive on.
fn command(s: &mut Stack, now: Instant, argv: &str) -> crossbeam_channel::Receiver<Reply> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let req = Request {
        argv: argv.split_whitespace().map(str::to_string).collect(),
        stdin: None,
    };
    crate::cmd::run(
        s,
        now,
        &req,
        crate::cmd::Output::new(tx, Arc::new(AtomicBool::new(false))),
    );
    rx
}

fn text(rx: &crossbeam_channel::Receiver<Reply>) -> (String, Option<i32>) {
    let mut out = String::new();
    let mut code = None;
    for r in rx.try_iter() {
        match r {
            Reply::Out(l) | Reply::Err(l) => {
                out += &l;
                out.push('\n');
            }
            Reply::Exit(c) => code = Some(c),
        }
    }
    (out, code)
}

fn ip_frame(to: Mac, src: [u8; 4], dst: [u8; 4], proto: u8, ttl: u8, payload: &[u8]) -> Vec<u8> {
    let d = ipv4::emit(
        &Emit {
            tos: 0,
            id: 1,
            df: false,
            mf: false,
            frag_offset: 0,
            ttl,
            proto,
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
        },
        &[],
        payload,
    );
    ether::emit(to, Mac([0xb2, 0xa0, 9, 9, 9, 9]), ether::ETHERTYPE_IPV4, &d)
}

#[test]
fn ping_completes_on_virtual_time() {
    let t0 = Instant::now();
    let mut a = node(1, "10.0.0.1/24");
    let mut b = node(2, "10.0.0.2/24");
    let rx = command(&mut a.stack, t0, "ping -c 3 -i 1 10.0.0.2");
    for s in 0..4 {
        let now = t0 + Duration::from_secs(s);
        a.stack.poll(now);
        exchange(&mut a, &mut b, now);
    }
    let (out, code) = text(&rx);
    assert!(
        out.contains("3 packets transmitted, 3 packets received"),
        "{out}"
    );
    assert_eq!(code, Some(0));
    assert_eq!(
        a.stack.arp.lookup((1, Ipv4Addr::new(10, 0, 0, 2))),
        Some(b.mac)
    );
}

#[test]
fn failed_resolution_retries_then_reports_host_unreachable_to_ping() {
    let t0 = Instant::now();
    let mut a = node(1, "10.0.0.1/24");
    let rx = command(&mut a.stack, t0, "ping -c 1 -W 10 10.0.0.9");
    a.stack.poll(t0);
    for s in 1..=4 {
        a.stack.poll(t0 + Duration::from_secs(s));
    }
    let requests = take(&a.sent)
        .iter()
        .filter(|f| ether::parse(f).unwrap().ethertype == ether::ETHERTYPE_ARP)
        .count();
    // One gratuitous announcement at `up` plus three requests.
    assert_eq!(requests, 1 + neighbor::MAX_MULTICAST_SOLICIT as usize);
    a.stack.poll(t0 + Duration::from_secs(11));
    let (out, code) = text(&rx);
    assert!(out.contains("Destination Host Unreachable"), "{out}");
    assert_eq!(code, Some(2));
    assert_eq!(a.stack.stats.drops_of(DropReason::ArpResolveFailed), 1);
}

#[test]
fn icmp_errors_are_rate_limited() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    r.stack.sysctl.forwarding = true;
    let probe = ip_frame(r.mac, [10, 0, 0, 5], [192, 0, 2, 1], PROTO_UDP, 64, &[0; 8]);
    for _ in 0..500 {
        r.stack.handle_frame(t0, r.link, &probe);
    }
    let c = &r.stack.stats.counters;
    assert_eq!(c.icmp_errors_out, 100);
    assert_eq!(c.icmp_rate_limited, 400);
    assert_eq!(r.stack.stats.drops_of(DropReason::IpNoRoute), 500);
    // Half a second refills half the bucket.
    for _ in 0..100 {
        r.stack
            .handle_frame(t0 + Duration::from_millis(500), r.link, &probe);
    }
    assert_eq!(r.stack.stats.counters.icmp_errors_out, 150);
}

#[test]
fn no_icmp_error_about_an_icmp_error_or_a_broadcast() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    r.stack.sysctl.forwarding = true;
    take(&r.sent);
    let err = icmp::emit(&Icmp::Unreachable {
        code: 1,
        mtu: 0,
        quoted: &[0; 28],
    });
    let f = ip_frame(r.mac, [10, 0, 0, 5], [192, 0, 2, 1], PROTO_ICMP, 1, &err);
    r.stack.handle_frame(t0, r.link, &f);
    assert_eq!(r.stack.stats.drops_of(DropReason::IpTtlExpired), 1);
    assert_eq!(r.stack.stats.counters.icmp_error_about_error, 1);
    assert_eq!(r.stack.stats.counters.icmp_errors_out, 0);
    // UDP to the subnet broadcast: no port-unreachable.
    let f = ip_frame(
        Mac::BROADCAST,
        [10, 0, 0, 5],
        [10, 0, 0, 255],
        PROTO_UDP,
        64,
        &[0, 1, 0, 2, 0, 8, 0, 0],
    );
    r.stack.handle_frame(t0, r.link, &f);
    assert_eq!(r.stack.stats.drops_of(DropReason::UdpNoPort), 1);
    assert_eq!(r.stack.stats.counters.icmp_errors_out, 0);
    assert!(take(&r.sent)
        .iter()
        .all(|f| ether::parse(f).unwrap().ethertype == ether::ETHERTYPE_ARP));
}

#[test]
fn frames_for_other_stations_are_dropped_by_name() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    let f = ip_frame(
        Mac([0xb2, 0xa0, 7, 7, 7, 7]),
        [10, 0, 0, 5],
        [10, 0, 0, 1],
        PROTO_UDP,
        64,
        &[0; 8],
    );
    r.stack.handle_frame(t0, r.link, &f);
    assert_eq!(r.stack.stats.drops_of(DropReason::EtherNotForUs), 1);
}

#[test]
fn udp_to_a_closed_port_gets_port_unreachable() {
    let t0 = Instant::now();
    let mut a = node(1, "10.0.0.1/24");
    let mut b = node(2, "10.0.0.2/24");
    let rx = command(&mut a.stack, t0, "traceroute -n -q 1 10.0.0.2");
    a.stack.poll(t0);
    exchange(&mut a, &mut b, t0);
    a.stack.poll(t0);
    let (out, code) = text(&rx);
    assert!(out.contains(" 1  10.0.0.2  "), "{out}");
    assert_eq!(code, Some(0));
    assert_eq!(b.stack.stats.drops_of(DropReason::UdpNoPort), 1);
}

#[test]
fn reassembly_timeout_drops_fragments_and_sends_time_exceeded() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    let peer = Mac([0xb2, 0xa0, 9, 9, 9, 9]);
    r.stack
        .arp
        .set_static((1, Ipv4Addr::new(10, 0, 0, 5)), peer);
    take(&r.sent);
    let d = ipv4::emit(
        &Emit {
            tos: 0,
            id: 77,
            df: false,
            mf: true,
            frag_offset: 0,
            ttl: 64,
            proto: PROTO_UDP,
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(10, 0, 0, 1),
        },
        &[],
        &[0; 64],
    );
    let f = ether::emit(r.mac, peer, ether::ETHERTYPE_IPV4, &d);
    r.stack.handle_frame(t0, r.link, &f);
    r.stack.poll(t0 + reasm::TIMEOUT / 2);
    assert!(take(&r.sent).is_empty());
    r.stack.poll(t0 + reasm::TIMEOUT);
    assert_eq!(r.stack.stats.drops_of(DropReason::FragTimeout), 1);
    let sent = take(&r.sent);
    assert_eq!(sent.len(), 1);
    let e = ether::parse(&sent[0]).unwrap();
    assert_eq!(e.dst, peer);
    let ip = ipv4::parse(e.payload).unwrap();
    match icmp::parse(ip.payload).unwrap() {
        Icmp::TimeExceeded { code, quoted } => {
            assert_eq!(code, icmp::EXCEEDED_REASSEMBLY);
            assert_eq!(ipv4::parse_quoted(quoted).unwrap().id, 77);
        }
        other => panic!("expected time exceeded, got {other:?}"),
    }
}

/// xorshift64*: reproducible noise.
fn noise(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

#[test]
fn random_and_mutated_frames_never_panic() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    r.stack.sysctl.forwarding = true;
    let mut s = 0x1234_5678_9abc_def0u64;
    let echo = icmp::emit(&Icmp::EchoRequest {
        ident: 1,
        seq: 1,
        data: &[7; 40],
    });
    let seeds = [
        ip_frame(r.mac, [10, 0, 0, 5], [10, 0, 0, 1], PROTO_ICMP, 64, &echo),
        ip_frame(
            r.mac,
            [10, 0, 0, 5],
            [10, 0, 0, 1],
            PROTO_UDP,
            64,
            &[0, 1, 0, 2, 0, 12, 0, 0, 1, 2, 3, 4],
        ),
        ip_frame(r.mac, [10, 0, 0, 5], [192, 0, 2, 1], PROTO_ICMP, 1, &echo),
        ether::emit(
            Mac::BROADCAST,
            Mac([0xb2, 0xa0, 9, 9, 9, 9]),
            ether::ETHERTYPE_ARP,
            &crate::wire::arp::emit(&crate::wire::arp::Arp {
                op: 1,
                sha: Mac([0xb2, 0xa0, 9, 9, 9, 9]),
                spa: Ipv4Addr::new(10, 0, 0, 5),
                tha: Mac::ZERO,
                tpa: Ipv4Addr::new(10, 0, 0, 1),
            }),
        ),
    ];
    for i in 0..20_000u32 {
        let mut f = seeds[i as usize % seeds.len()].clone();
        // Flip a few bytes past the destination MAC, sometimes truncate or extend.
        for _ in 0..(noise(&mut s) % 4) {
            let at = 6 + (noise(&mut s) as usize % (f.len() - 6));
            f[at] = noise(&mut s) as u8;
        }
        match noise(&mut s) % 8 {
            0 => f.truncate(14 + noise(&mut s) as usize % (f.len() - 13)),
            1 => f.extend((0..noise(&mut s) % 64).map(|_| noise(&mut s) as u8)),
            _ => {}
        }
        let now = t0 + Duration::from_millis(i as u64);
        r.stack.handle_frame(now, r.link, &f);
        r.stack.poll(now);
        take(&r.sent);
    }
    assert_eq!(r.stack.stats.drops_of(DropReason::InternalError), 0);
}

#[test]
fn echo_requests_with_ip_options_are_answered() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    let peer = Mac([0xb2, 0xa0, 9, 9, 9, 9]);
    r.stack
        .arp
        .set_static((1, Ipv4Addr::new(10, 0, 0, 5)), peer);
    take(&r.sent);
    let echo = icmp::emit(&Icmp::EchoRequest {
        ident: 9,
        seq: 3,
        data: &[1, 2, 3],
    });
    // NOP, then record route with room for one address.
    let options = [1, 7, 7, 4, 0, 0, 0, 0];
    let d = ipv4::emit(
        &Emit {
            tos: 0,
            id: 5,
            df: false,
            mf: false,
            frag_offset: 0,
            ttl: 64,
            proto: PROTO_ICMP,
            src: Ipv4Addr::new(10, 0, 0, 5),
            dst: Ipv4Addr::new(10, 0, 0, 1),
        },
        &options,
        &echo,
    );
    r.stack.handle_frame(
        t0,
        r.link,
        &ether::emit(r.mac, peer, ether::ETHERTYPE_IPV4, &d),
    );
    let sent = take(&r.sent);
    assert_eq!(sent.len(), 1);
    let ip = ipv4::parse(ether::parse(&sent[0]).unwrap().payload).unwrap();
    assert_eq!(ip.header.dst, Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(
        icmp::parse(ip.payload).unwrap(),
        Icmp::EchoReply {
            ident: 9,
            seq: 3,
            data: &[1, 2, 3]
        }
    );
}

#[test]
fn unicast_datagrams_in_link_broadcasts_are_neither_forwarded_nor_answered() {
    let t0 = Instant::now();
    let mut r = node(1, "10.0.0.1/24");
    r.stack.sysctl.forwarding = true;
    take(&r.sent);
    let f = ip_frame(
        Mac::BROADCAST,
        [10, 0, 0, 5],
        [192, 0, 2, 1],
        PROTO_UDP,
        64,
        &[0; 8],
    );
    r.stack.handle_frame(t0, r.link, &f);
    assert_eq!(r.stack.stats.drops_of(DropReason::IpLinkBroadcast), 1);
    assert_eq!(r.stack.stats.counters.ip_forwarded, 0);
    assert!(take(&r.sent).is_empty());
}

fn node6(last: u8, addr: &str) -> TestNode {
    let mut n = node(last, "10.0.0.1/24");
    n.stack.sysctl.dad_count = 1;
    let (a, p) = addr.split_once('/').unwrap();
    n.stack
        .add_addr(
            "shmif0",
            IfAddr::new(a.parse().unwrap(), p.parse().unwrap()),
            true,
        )
        .unwrap();
    n
}

fn echo6(n: &mut TestNode, now: Instant, dst: &str) -> Result<(), SendError> {
    let mut msg = crate::wire::PacketBuf::new();
    crate::wire::icmpv6::emit(
        std::net::Ipv6Addr::UNSPECIFIED,
        std::net::Ipv6Addr::UNSPECIFIED,
        &crate::wire::icmpv6::Icmpv6::EchoRequest {
            ident: 9,
            seq: 1,
            data: b"abc",
        },
        &mut msg,
    );
    n.stack.ip_output(
        now,
        OutIp {
            src: None,
            dst: dst.parse().unwrap(),
            proto: crate::wire::ipv6::ICMPV6,
            ttl: None,
            df: false,
            scope: None,
            payload: msg,
        },
    )
}

#[test]
fn ipv6_addresses_pass_dad_then_ndp_resolves_and_echo_is_answered() {
    let t0 = Instant::now();
    let mut a = node6(1, "fd00::1/64");
    let mut b = node6(2, "fd00::2/64");
    assert!(a.stack.dad_in_progress());
    // Tentative: not usable as a source yet.
    assert_eq!(echo6(&mut a, t0, "fd00::2"), Err(SendError::NoRoute));
    for s in 0..3 {
        let now = t0 + Duration::from_secs(s);
        a.stack.poll(now);
        b.stack.poll(now);
        exchange(&mut a, &mut b, now);
    }
    assert!(!a.stack.dad_in_progress() && !b.stack.dad_in_progress());
    let ll = a.stack.ifaces[0]
        .addrs
        .iter()
        .find(|x| x.flags.autoconf)
        .unwrap();
    assert_eq!(ll.addr.to_string(), "fe80::b0a0:ff:fe00:1");
    let now = t0 + Duration::from_secs(3);
    echo6(&mut a, now, "fd00::2").unwrap();
    exchange(&mut a, &mut b, now);
    assert_eq!(b.stack.stats.counters.icmp6_echo_reply_out, 1);
    // Nobody on a waits for the reply.
    assert_eq!(a.stack.stats.drops_of(DropReason::Icmp6NoListener), 1);
    let key = (1, "fd00::2".parse().unwrap());
    assert_eq!(a.stack.nd.lookup(key), Some(b.mac));
    assert_eq!(a.stack.nd.entries[&key].name(), "reachable");
}

#[test]
fn dad_conflict_leaves_the_second_claimant_duplicated() {
    let t0 = Instant::now();
    let mut a = node6(1, "fd00::5/64");
    for s in 0..3 {
        a.stack.poll(t0 + Duration::from_secs(s));
    }
    take(&a.sent);
    let mut b = node6(2, "fd00::5/64");
    for s in 3..6 {
        let now = t0 + Duration::from_secs(s);
        b.stack.poll(now);
        exchange(&mut a, &mut b, now);
    }
    let dup = |n: &TestNode| {
        n.stack.ifaces[0]
            .addrs
            .iter()
            .find(|x| x.addr.to_string() == "fd00::5")
            .unwrap()
            .flags
    };
    assert!(dup(&b).duplicated);
    assert!(!dup(&a).duplicated && !dup(&a).tentative);
    assert_eq!(b.stack.stats.drops_of(DropReason::NdDadDuplicate), 1);
}
