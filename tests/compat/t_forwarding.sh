#!/bin/sh
# A router between two buses, IPv4 and IPv6: with forwarding off (the default) it drops what
# is not for it and nothing crosses; with net.inet.ip.forwarding=1 /
# net.inet6.ip6.forwarding=1 hosts on both sides reach each other through it (NetBSD's
# tests/net/net/t_forwarding.sh).
. "$(dirname "$0")/common.sh"

case_begin "h1 - bus1 - r - bus2 - h2"
for s in h1 r h2; do
	start_server $s -lrumpnet_netinet6
done
add_iface h1 shmif0 bus1
add_iface r shmif0 bus1
add_iface r shmif1 bus2
add_iface h2 shmif0 bus2
check on h1 rump.ifconfig shmif0 inet 10.0.1.2/24
check on h1 rump.ifconfig shmif0 inet6 fd00:1::2
check on r rump.ifconfig shmif0 inet 10.0.1.1/24
check on r rump.ifconfig shmif0 inet6 fd00:1::1
check on r rump.ifconfig shmif1 inet 10.0.2.1/24
check on r rump.ifconfig shmif1 inet6 fd00:2::1
check on h2 rump.ifconfig shmif0 inet 10.0.2.2/24
check on h2 rump.ifconfig shmif0 inet6 fd00:2::2
for s in h1 r h2; do
	check on $s rump.ifconfig shmif0 up
done
check on r rump.ifconfig shmif1 up
for s in h1 r h2; do
	check on $s rump.ifconfig -w 10
done
check -o 'inline:add net default: gateway 10.0.1.1\n' on h1 rump.route add default 10.0.1.1
check -o 'inline:add net default: gateway 10.0.2.1\n' on h2 rump.route add default 10.0.2.1
check -o 'inline:add net default: gateway fd00:1::1\n' \
	on h1 rump.route add -inet6 default fd00:1::1
check -o 'inline:add net default: gateway fd00:2::1\n' \
	on h2 rump.route add -inet6 default fd00:2::1

case_begin "forwarding off: the router answers, nothing crosses"
check -o 'inline:net.inet.ip.forwarding = 0\n' on r rump.sysctl net.inet.ip.forwarding
check -o 'inline:net.inet6.ip6.forwarding = 0\n' on r rump.sysctl net.inet6.ip6.forwarding
check -o 'inline:0\n' on r rump.sysctl -n net.inet.ip.forwarding
check -o 'match:^1 packets transmitted, 1 packets received' on h1 rump.ping -n -c 1 10.0.1.1
check -o 'match:^1 packets transmitted, 1 packets received' on h1 rump.ping6 -n -c 1 fd00:1::1
check -s exit:2 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping -n -w 2 -c 1 10.0.2.2
check -s exit:1 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping6 -n -c 1 -X 2 fd00:2::2
check -o 'match:10\.0\.1\.2 > 10\.0\.2\.2: ICMP echo request' \
	-o 'match:fd00:1::2 > fd00:2::2: ICMP6, echo request' dump_bus bus1
check -o 'not-match:ICMP echo request' -o 'not-match:ICMP6, echo request' dump_bus bus2

case_begin "IPv4 forwarding on"
check -o 'inline:net.inet.ip.forwarding: 0 -> 1\n' on r rump.sysctl -w net.inet.ip.forwarding=1
check -o 'inline:net.inet.ip.forwarding = 1\n' on r rump.sysctl net.inet.ip.forwarding
check -o 'match:^64 bytes from 10\.0\.2\.2: icmp_seq=0 ttl=63 ' \
	-o 'match:^1 packets transmitted, 1 packets received, 0\.0% packet loss$' \
	on h1 rump.ping -n -c 1 10.0.2.2
check -o 'match:10\.0\.1\.2 > 10\.0\.2\.2: ICMP echo request' \
	-o 'match:10\.0\.2\.2 > 10\.0\.1\.2: ICMP echo reply' dump_bus bus2
check -o 'match:^1 packets transmitted, 1 packets received' on h2 rump.ping -n -c 1 10.0.1.2
check -o 'match:^traceroute to 10\.0\.2\.2 \(10\.0\.2\.2\), 30 hops max, 40 byte packets$' \
	-o 'match:^ 1  10\.0\.1\.1  ' -o 'match:^ 2  10\.0\.2\.2  ' \
	on h1 rump.traceroute -n 10.0.2.2
# IPv6 is still not forwarded.
check -s exit:1 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping6 -n -c 1 -X 2 fd00:2::2

case_begin "IPv6 forwarding on"
check -o 'inline:net.inet6.ip6.forwarding: 0 -> 1\n' \
	on r rump.sysctl -w net.inet6.ip6.forwarding=1
check -o 'match:^64 bytes from fd00:2::2, icmp_seq=0 hlim=63 ' \
	-o 'match:^1 packets transmitted, 1 packets received, 0\.0% packet loss$' \
	on h1 rump.ping6 -n -c 1 fd00:2::2
check -o 'match:fd00:1::2 > fd00:2::2: ICMP6, echo request' \
	-o 'match:fd00:2::2 > fd00:1::2: ICMP6, echo reply' dump_bus bus2

case_begin "forwarding off again"
check -o 'inline:net.inet.ip.forwarding: 1 -> 0\n' on r rump.sysctl -w net.inet.ip.forwarding=0
check -o 'inline:net.inet6.ip6.forwarding: 1 -> 0\n' \
	on r rump.sysctl -w net.inet6.ip6.forwarding=0
check -s exit:2 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping -n -w 2 -c 1 10.0.2.2
check -s exit:1 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping6 -n -c 1 -X 2 fd00:2::2
# -q: set without a word.
check -o empty on r rump.sysctl -q -w net.inet.ip.forwarding=1
check -o 'inline:1\n' on r rump.sysctl -n net.inet.ip.forwarding

echo "t_forwarding: passed"
