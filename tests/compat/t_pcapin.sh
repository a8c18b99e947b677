#!/bin/sh
# shmif_pcapin: a capture taken on one bus (shmif_dumpbus -p) written onto another bus
# arrives there frame for frame, and a node on that bus receives it (NetBSD's
# tests/net/if_shmif t_basic.sh "pcap" case, without rumphijack's tcpdump on the interface).
. "$(dirname "$0")/common.sh"

case_begin "usage and refusals"
check -s exit:1 -e 'inline:usage: shmif_pcapin pcap-file-path bus-path\n' shmif_pcapin
check -s exit:1 -e 'inline:usage: shmif_pcapin pcap-file-path bus-path\n' shmif_pcapin a b c
check -s exit:1 -e 'inline:shmif_pcapin: open bus: No such file or directory\n' \
	shmif_pcapin x.pcap nosuchbus
test ! -e nosuchbus || fail "shmif_pcapin created the bus"
head -c 4096 /dev/zero >notabus
check -s exit:1 -e 'inline:shmif_pcapin: notabus not a shmif bus\n' shmif_pcapin x.pcap notabus

case_begin "a capture from bus1"
start_server h1
start_server h2
for n in 1 2; do
	add_iface h$n shmif0 bus1
	check on h$n rump.ifconfig shmif0 inet 10.0.0.$n/24 up
done
check -o 'match:^3 packets transmitted, 3 packets received' on h1 rump.ping -n -c 3 -i 0.1 10.0.0.2
check -o ignore shmif_dumpbus -p in.pcap bus1
check -o 'match:ICMP echo request' -e ignore tcpdump -n -r in.pcap
# As NetBSD's, it prints the bus header before it opens the capture.
check -s exit:1 -o 'match:^bus version 3' -e 'match:^shmif_pcapin: cannot open pcap file: nosuch.pcap: ' \
	shmif_pcapin nosuch.pcap bus1

case_begin "written onto bus2, where h3 listens"
start_server h3
add_iface h3 shmif0 bus2
check on h3 rump.ifconfig shmif0 inet 10.0.0.3/24 up
before=$(on h3 rump.ifconfig -v shmif0 | sed -n 's/^[[:space:]]*input: \([0-9]*\) packets.*/\1/p')
check -o 'match:^bus version 3, lock: 0, generation: [0-9]+, firstoff: 0x[0-9a-f]{4,}, lastoff: 0x[0-9a-f]{4,}$' \
	shmif_pcapin in.pcap bus2
check -o ignore shmif_dumpbus -p out.pcap bus2
# The same frames in the same order (timestamps are the time of writing, as in NetBSD).
tcpdump -t -n -e -r in.pcap 2>/dev/null >in.txt
# Less what h3 sent itself.
MAC3=$(on h3 rump.ifconfig shmif0 | sed -n 's/^[[:space:]]*address: //p')
echo "$MAC3" | grep -Eq "^$MAC\$" || fail "no MAC address for h3: $MAC3"
tcpdump -t -n -e -r out.pcap 2>/dev/null | grep -v "^$MAC3 > " >out.txt
[ -s in.txt ] || fail "tcpdump read nothing from in.pcap"
check -o empty diff in.txt out.txt
after=$(on h3 rump.ifconfig -v shmif0 | sed -n 's/^[[:space:]]*input: \([0-9]*\) packets.*/\1/p')
# h3 takes the broadcasts (h1's ARP request) and drops what is addressed to h1 and h2.
[ "$after" -gt "$before" ] || fail "h3 received nothing from the capture ($before -> $after)"

case_begin "a capture that is not Ethernet is refused"
# A classic pcap header with linktype 101 (raw IP) and one 20-byte packet.
printf '\324\303\262\241\002\000\004\000\000\000\000\000\000\000\000\000\377\377\000\000\145\000\000\000' >raw.pcap
printf '\000\000\000\000\000\000\000\000\024\000\000\000\024\000\000\000' >>raw.pcap
head -c 20 /dev/zero >>raw.pcap
check -s exit:1 -o ignore -e 'match:raw\.pcap: packet 1: link type .*not Ethernet' \
	shmif_pcapin raw.pcap bus2

echo "t_pcapin: passed"
