#!/usr/bin/env python3
"""Writes seed inputs for the `frames` target: well-formed ARP, ICMP, UDP and fragmented IPv4,
and NDP, ICMPv6, extension headers and fragmented IPv6, to and through the fuzzed router
(10.0.0.1 and fd00::1 on interface 0, 10.0.1.1 and fd00:1::1 on interface 1), so the fuzzer
starts past the checksums. Run from fuzz/: python3 seeds/make_frames.py"""
import os
import struct

ROUTER0 = bytes.fromhex("b2a000000001")
PEER = bytes.fromhex("020000000005")
BCAST = b"\xff" * 6


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ip(src, dst, proto, payload, ttl=64, ident=1, flags_frag=0):
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, flags_frag, ttl, proto, 0,
                    bytes(src), bytes(dst))
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def icmp_echo(ident, seq, data):
    m = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + data
    return m[:2] + struct.pack("!H", csum(m)) + m[4:]


def eth(dst, ethertype, payload):
    return dst + PEER + struct.pack("!H", ethertype) + payload


def record(iface, frame):
    return bytes([iface]) + struct.pack("<H", len(frame)) + frame


arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, PEER, bytes([10, 0, 0, 5]), b"\0" * 6,
                  bytes([10, 0, 0, 1]))
echo = ip([10, 0, 0, 5], [10, 0, 0, 1], 1, icmp_echo(7, 1, bytes(range(56))))
through = ip([10, 0, 0, 5], [10, 0, 1, 9], 1, icmp_echo(7, 2, b"x" * 32))
expiring = ip([10, 0, 0, 5], [10, 0, 1, 9], 17, struct.pack("!HHHH", 4000, 33434, 8, 0), ttl=1)
udp_here = ip([10, 0, 0, 5], [10, 0, 0, 1], 17, struct.pack("!HHHH", 4000, 33434, 8, 0))
big = icmp_echo(7, 3, bytes(range(256)) * 8)
frag1 = ip([10, 0, 0, 5], [10, 0, 0, 1], 1, big[:1024], ident=9, flags_frag=0x2000)
frag2 = ip([10, 0, 0, 5], [10, 0, 0, 1], 1, big[1024:], ident=9, flags_frag=1024 // 8)

ROUTER_V6 = bytes.fromhex("fd000000000000000000000000000001")
PEER_V6 = bytes.fromhex("fd000000000000000000000000000005")
FAR_V6 = bytes.fromhex("fd000001000000000000000000000009")
SOLICITED = bytes.fromhex("ff0200000000000000000001ff000001")


def ip6(src, dst, nh, payload, hlim=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nh, hlim, src, dst) + payload


def icmp6(src, dst, ty, code, body):
    m = struct.pack("!BBH", ty, code, 0) + body
    pseudo = src + dst + struct.pack("!IxxxB", len(m), 58)
    return m[:2] + struct.pack("!H", csum(pseudo + m)) + m[4:]


ns = icmp6(PEER_V6, SOLICITED, 135, 0, b"\0" * 4 + ROUTER_V6 + bytes([1, 1]) + PEER)
echo6 = icmp6(PEER_V6, ROUTER_V6, 128, 0, struct.pack("!HH", 7, 1) + bytes(range(56)))
echo6_far = icmp6(PEER_V6, FAR_V6, 128, 0, struct.pack("!HH", 7, 2) + b"x" * 32)
big6 = icmp6(PEER_V6, ROUTER_V6, 128, 0, struct.pack("!HH", 7, 3) + bytes(range(256)) * 8)
frag6_1 = struct.pack("!BBHI", 58, 0, 0x0001, 99) + big6[:1024]
frag6_2 = struct.pack("!BBHI", 58, 0, 1024, 99) + big6[1024:]
# Hop-by-hop (PadN) then destination options (PadN) then ICMPv6.
hbh = bytes([60, 0, 1, 4, 0, 0, 0, 0])
dst_opts = bytes([58, 0, 1, 4, 0, 0, 0, 0])
mcast = bytes.fromhex("3333ff000001")

seeds = {
    "ndp_solicit": [record(0, eth(mcast, 0x86DD, ip6(PEER_V6, SOLICITED, 58, ns, hlim=255)))],
    "echo6": [
        record(0, eth(mcast, 0x86DD, ip6(PEER_V6, SOLICITED, 58, ns, hlim=255))),
        record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, ROUTER_V6, 58, echo6))),
    ],
    "forward6": [record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, FAR_V6, 58, echo6_far)))],
    "hop_limit6": [record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, FAR_V6, 58, echo6_far, hlim=1)))],
    "ext_headers6": [
        record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, ROUTER_V6, 0, hbh + dst_opts + echo6)))
    ],
    "fragments6": [
        record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, ROUTER_V6, 44, frag6_2))),
        record(0, eth(ROUTER0, 0x86DD, ip6(PEER_V6, ROUTER_V6, 44, frag6_1))),
    ],
    "arp_request": [record(0, eth(BCAST, 0x0806, arp))],
    "arp_then_echo": [record(0, eth(BCAST, 0x0806, arp)), record(0, eth(ROUTER0, 0x0800, echo))],
    "forward": [record(0, eth(ROUTER0, 0x0800, through))],
    "ttl_expires": [record(0, eth(ROUTER0, 0x0800, expiring))],
    "udp_unreachable": [record(0, eth(ROUTER0, 0x0800, udp_here))],
    "fragments": [record(0, eth(ROUTER0, 0x0800, frag2)), record(0, eth(ROUTER0, 0x0800, frag1))],
}
out = os.path.join(os.path.dirname(__file__), "frames")
os.makedirs(out, exist_ok=True)
for name, recs in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b"".join(recs))
