//! Garbage on the bus: a test writer attached with shmif sends malformed frames of every kind;
//! nodes stay up, `netstat -s` counts each drop, and normal traffic still flows.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use common::{tempdir, Node};
use netstack::wire::icmp::{self, Icmp};
use netstack::wire::ipv4::{self, Emit, PROTO_ICMP, PROTO_UDP};

/// xorshift64*: reproducible noise without a rand dependency.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn frame(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&[0xb2, 0xa0, 0xde, 0xad, 0xbe, 0xef]);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    id: u16,
    mf: bool,
    off: usize,
    payload: &[u8],
) -> Vec<u8> {
    ipv4::emit(
        &Emit {
            tos: 0,
            id,
            df: false,
            mf,
            frag_offset: off,
            ttl: 64,
            proto,
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
        },
        &[],
        payload,
    )
}

/// Re-checksums a header after a deliberate edit, so only the intended fault remains.
fn fix_checksum(p: &mut [u8]) {
    let hl = ((p[0] & 0x0f) as usize * 4).clamp(20, p.len());
    p[10] = 0;
    p[11] = 0;
    let c = netstack::wire::internet_checksum(&p[..hl]);
    p[10..12].copy_from_slice(&c.to_be_bytes());
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn garbage_on_the_bus_is_counted_and_nodes_survive() {
    let dir = tempdir();
    let bus = dir.path().join("bus");
    let mut a = Node::start(dir.path(), "a");
    let mut b = Node::start(dir.path(), "b");
    a.iface("shmif0", &bus, "10.0.0.1/24");
    b.iface("shmif0", &bus, "10.0.0.2/24");
    b.ok("sysctl -w net.inet.ip.forwarding=1");
    a.ok("ping -c 1 10.0.0.2");
    let mac = a.mac("shmif0");

    let writer_bus = shmif::Bus::attach(&bus, &shmif::BusConfig::default()).unwrap();
    let port = writer_bus.port();
    let send = |f: &[u8]| port.send(f).unwrap();
    let (me, them) = ([10, 0, 0, 99], [10, 0, 0, 1]);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);

    // Random frames, to us and broadcast, with the ethertypes we parse and others.
    for i in 0..300 {
        let len = 14 + (noise.next() % 1500) as usize;
        let mut f = noise.bytes(len);
        let dst = if i % 2 == 0 { mac } else { [0xff; 6] };
        f[..6].copy_from_slice(&dst);
        let et: u16 = [0x0800, 0x0806, 0x86dd, noise.next() as u16 | 0x0600][i % 4];
        f[12..14].copy_from_slice(&et.to_be_bytes());
        send(&f);
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // A bare Ethernet header: the bus refuses anything shorter, so IP is what is truncated.
    send(&frame(mac, 0x0800, &[]));
    send(&frame(mac, 0x0800, &[0x45, 0, 0]));
    send(&frame(mac, 0x1234, &[0; 46]));
    send(&frame(mac, 0x0040, &[0; 46]));
    // ARP: truncated and with a wrong hardware type.
    send(&frame([0xff; 6], 0x0806, &[0, 1, 8, 0, 6]));
    let mut arp = [0u8; 28];
    arp[..8].copy_from_slice(&[0, 9, 8, 0, 6, 4, 0, 1]);
    send(&frame([0xff; 6], 0x0806, &arp));

    let good_echo = icmp::emit(&Icmp::EchoRequest {
        ident: 1,
        seq: 1,
        data: &[0; 32],
    });
    let base = ip(me, them, PROTO_ICMP, 1, false, 0, &good_echo);
    // Bad header checksum.
    let mut p = base.clone();
    p[10] ^= 0xff;
    send(&frame(mac, 0x0800, &p));
    // Total length beyond the frame, below the header, header length 16, version 6.
    let mut p = base.clone();
    p[2..4].copy_from_slice(&1400u16.to_be_bytes());
    fix_checksum(&mut p);
    send(&frame(mac, 0x0800, &p));
    let mut p = base.clone();
    p[2..4].copy_from_slice(&12u16.to_be_bytes());
    fix_checksum(&mut p);
    send(&frame(mac, 0x0800, &p));
    let mut p = base.clone();
    p[0] = 0x44;
    fix_checksum(&mut p);
    send(&frame(mac, 0x0800, &p));
    let mut p = base.clone();
    p[0] = 0x65;
    send(&frame(mac, 0x0800, &p));
    // Martian source.
    send(&frame(
        mac,
        0x0800,
        &ip([127, 0, 0, 1], them, PROTO_ICMP, 2, false, 0, &good_echo),
    ));
    // ICMP with a bad checksum, and one too short for a header.
    let mut e = good_echo.clone();
    e[9] ^= 0x55;
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_ICMP, 3, false, 0, &e),
    ));
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_ICMP, 4, false, 0, &[8, 0, 0]),
    ));
    // UDP with a length field past the datagram.
    send(&frame(
        mac,
        0x0800,
        &ip(
            me,
            them,
            PROTO_UDP,
            5,
            false,
            0,
            &[0, 1, 0, 2, 0x40, 0, 0, 0],
        ),
    ));
    // Unknown transport protocol.
    send(&frame(mac, 0x0800, &ip(me, them, 99, 6, false, 0, &[0; 8])));
    // Fragments: bad length, overlap, beyond 64 KiB, then a flood of distinct datagrams.
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_UDP, 7, true, 0, &[0; 13]),
    ));
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_UDP, 8, true, 0, &[0; 256]),
    ));
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_UDP, 8, true, 128, &[1; 256]),
    ));
    send(&frame(
        mac,
        0x0800,
        &ip(me, them, PROTO_UDP, 9, true, 65528, &[0; 64]),
    ));
    for id in 0..400u16 {
        send(&frame(
            mac,
            0x0800,
            &ip(me, them, PROTO_UDP, 1000 + id, true, 0, &[0; 256]),
        ));
        if id % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    let expect = [
        "ip_truncated",
        "ip_bad_checksum",
        "ip_bad_total_len",
        "ip_bad_header_len",
        "ip_bad_version",
        "ip_bad_address",
        "ip_unknown_protocol",
        "ether_unknown_type",
        "arp_truncated",
        "arp_bad_format",
        "icmp_bad_checksum",
        "icmp_truncated",
        "udp_bad_length",
        "frag_bad_length",
        "frag_overlap",
        "frag_too_big",
        "frag_memory",
    ];
    wait_for("the flood to be processed", || a.drops("frag_memory") > 0);
    let stats = a.json("netstat -s");
    for key in expect {
        assert!(
            stats["drops"][key].as_u64().unwrap() > 0,
            "node a should count {key}: {stats}"
        );
    }
    assert_eq!(stats["drops"]["internal_error"], 0, "{stats}");
    assert_eq!(b.drops("internal_error"), 0);
    // Broadcast garbage reached b as well.
    assert!(b.drops("arp_truncated") > 0);
    assert!(a
        .ok("netstat -s")
        .contains("bad header checksums (ip_bad_checksum)"));

    assert!(a.alive() && b.alive());
    let out = a.ok("ping -c 2 -i 0.1 10.0.0.2");
    assert!(out.contains("2 packets received"), "{out}");
    let out = b.ok("ping -c 1 -s 3000 10.0.0.1");
    assert!(out.contains("1 packets received"), "{out}");
}
