#!/bin/sh
# Two hosts on one bus: ping and ping6 each other, and the bus shows the echo requests and
# replies (shmif_dumpbus -p - | tcpdump), as NetBSD's tests/net/icmp and if_shmif tests check.
. "$(dirname "$0")/common.sh"

case_begin "two hosts on a bus"
start_server h1 -lrumpnet_netinet6
start_server h2 -lrumpnet_netinet6
for n in 1 2; do
	add_iface h$n shmif0 bus1
	check on h$n rump.ifconfig shmif0 inet 10.0.0.$n/24
	check on h$n rump.ifconfig shmif0 inet6 fd00::$n
	check on h$n rump.ifconfig shmif0 up
	check on h$n rump.ifconfig -w 10
done
test -f bus1 || fail "bus1 is not in the directory the servers were started in"
check -o 'match:^shmif0: flags=0x[0-9a-f]+<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500$' \
	-o 'match:^[[:space:]]+linkstr: bus1$' -o 'match:^[[:space:]]+inet 10\.0\.0\.1/24 broadcast 10\.0\.0\.255' \
	-o 'match:^[[:space:]]+inet6 fd00::1/64' -o 'match:^[[:space:]]+inet6 fe80::[0-9a-f:]+%shmif0/64' \
	on h1 rump.ifconfig shmif0

case_begin "ping"
check -o 'match:^64 bytes from 10\.0\.0\.2: icmp_seq=0 ttl=64 time=' \
	-o 'match:^1 packets transmitted, 1 packets received, 0\.0% packet loss$' \
	on h1 rump.ping -n -c 1 10.0.0.2
check -o 'match:ICMP echo request' -o 'match:ICMP echo reply' \
	-o 'match:10\.0\.0\.1 > 10\.0\.0\.2: ICMP echo request' \
	-o 'match:10\.0\.0\.2 > 10\.0\.0\.1: ICMP echo reply' \
	-o "match:ethertype ARP \(0x0806\), length 42: Request who-has 10\.0\.0\.2 tell 10\.0\.0\.1" \
	dump_bus bus1
check -o 'match:^3 packets transmitted, 3 packets received' \
	on h2 rump.ping -n -c 3 -i 0.1 10.0.0.1
check -o 'match:^1 packets transmitted, 1 packets received' \
	on h1 rump.ping -n -c 1 -T 7 10.0.0.2
# The request went out with TTL 7 (the ttl= printed is the reply's).
check -o 'match:ttl 7,.*proto ICMP' sh -c 'shmif_dumpbus -p - bus1 2>/dev/null | tcpdump -n -v -r - 2>/dev/null'
check -o 'match:^1 packets transmitted, 1 packets received' -o 'match:^1008 bytes from' \
	on h1 rump.ping -n -c 1 -s 1000 10.0.0.2
check -o 'match:^1 packets transmitted, 1 packets received' -o 'not-match:bytes from' \
	on h1 rump.ping -n -q -c 1 10.0.0.2

case_begin "ping to nobody: 0 packets received, status 2"
check -s exit:2 -o 'match:^1 packets transmitted, 0 packets received, 100\.0% packet loss$' \
	on h1 rump.ping -n -w 3 -c 1 10.0.0.9

case_begin "ping6"
check -o 'match:^PING6\(104=40\+8\+56 bytes\) fd00::1 --> fd00::2$' \
	-o 'match:^64 bytes from fd00::2, icmp_seq=0 hlim=64 time=' \
	-o 'match:^1 packets transmitted, 1 packets received, 0\.0% packet loss$' \
	on h1 rump.ping6 -n -c 1 fd00::2
check -o 'match:fd00::1 > fd00::2: ICMP6, echo request' \
	-o 'match:fd00::2 > fd00::1: ICMP6, echo reply' \
	-o 'match:ICMP6, neighbor solicitation, who has fd00::2' dump_bus bus1
# All nodes on the link answer (h2; NetBSD's own loopback answer is not there: no lo0).
check -o 'match:^64 bytes from fe80::[0-9a-f:]+%shmif0, icmp_seq=0' \
	on h1 rump.ping6 -n -c 1 -I shmif0 ff02::1
check -s exit:1 -o 'match:^1 packets transmitted, 0 packets received' \
	on h1 rump.ping6 -n -c 1 -X 2 fd00::9

case_begin "the counters moved"
check -o 'match:^[[:space:]]+input: [1-9][0-9]* packets, [0-9]+ bytes' \
	-o 'match:^[[:space:]]+output: [1-9][0-9]* packets' on h1 rump.ifconfig -v shmif0

case_begin "-linkstr takes the interface off the bus; linkstr puts it back"
check on h1 rump.ifconfig shmif0 -linkstr
check -o 'not-match:linkstr' -o 'not-match:RUNNING' on h1 rump.ifconfig shmif0
check -s exit:2 -o 'match:^1 packets transmitted, 0 packets received' -e ignore \
	on h1 rump.ping -n -w 2 -c 1 10.0.0.2
check on h1 rump.ifconfig shmif0 linkstr bus1
check -o 'match:^1 packets transmitted, 1 packets received' on h1 rump.ping -n -c 1 10.0.0.2

case_begin "halt"
check on h1 rump.halt
check on h2 rump.halt
test ! -e h1 && test ! -e h2 || fail "halt left a socket"
check -s exit:1 -e 'match:^rump.ifconfig: init failed: No such file or directory' \
	on h1 rump.ifconfig -a

echo "t_ping: passed"
