#!/bin/sh
# ARP and NDP caches: entries learnt by pinging, listed, deleted one by one and all at once
# (rump.arp -d -a, rump.ndp -c), static entries (NetBSD's tests/net/arp and net/ndp).
. "$(dirname "$0")/common.sh"

case_begin "two hosts"
start_server h1 -lrumpnet_netinet6
start_server h2 -lrumpnet_netinet6
for n in 1 2; do
	add_iface h$n shmif0 bus1
	check on h$n rump.ifconfig shmif0 inet 10.0.0.$n/24
	check on h$n rump.ifconfig shmif0 inet6 fd00::$n
	check on h$n rump.ifconfig shmif0 up
	check on h$n rump.ifconfig -w 10
done
MAC2=$(on h2 rump.ifconfig shmif0 | sed -n 's/^[[:space:]]*address: //p')
echo "$MAC2" | grep -Eq "^$MAC\$" || fail "no MAC address for h2: $MAC2"

case_begin "ARP: learn, list, delete"
check -o empty on h1 rump.arp -a
check -o ignore on h1 rump.ping -n -c 1 10.0.0.2
check -o "inline:? (10.0.0.2) at $MAC2 on shmif0\\n" on h1 rump.arp -n -a
check -o "inline:? (10.0.0.2) at $MAC2 on shmif0\\n" on h1 rump.arp -n 10.0.0.2
# The peer learnt us from our request.
check -o 'match:^\? \(10\.0\.0\.1\) at ' on h2 rump.arp -n -a
check -o empty on h1 rump.arp -d 10.0.0.2
check -o empty on h1 rump.arp -n -a
check -s exit:1 -o ignore -e ignore on h1 rump.arp -n 10.0.0.2

case_begin "ARP: static entries, delete all"
check -o ignore on h1 rump.ping -n -c 1 10.0.0.2
check on h1 rump.arp -s 10.0.0.7 b2:a0:00:00:00:07
check -o 'match:^\? \(10\.0\.0\.7\) at b2:a0:00:00:00:07 on shmif0 permanent$' \
	-o "match:^\\? \\(10\\.0\\.0\\.2\\) at $MAC2 on shmif0\$" on h1 rump.arp -n -a
check on h1 rump.arp -d -a
check -o empty on h1 rump.arp -n -a
# Deleted means asked again: the next ping sends a new request.
check -o ignore on h1 rump.ping -n -c 1 10.0.0.2
check -o "inline:? (10.0.0.2) at $MAC2 on shmif0\\n" on h1 rump.arp -n -a

case_begin "NDP: learn, list, delete"
check -o ignore on h1 rump.ping6 -n -c 1 fd00::2
check -o 'match:^Neighbor +Linklayer Address +Netif +Expire +S +Fl' \
	-o "match:^fd00::2 +$MAC2 +shmif0 " on h1 rump.ndp -n -a
check -o 'inline:fd00::2 (fd00::2) deleted\n' on h1 rump.ndp -d fd00::2
check -o 'not-match:^fd00::2 ' on h1 rump.ndp -n -a

case_begin "NDP: flush (ndp -c) keeps static entries"
check -o ignore on h1 rump.ping6 -n -c 1 fd00::2
check on h1 rump.ndp -s fd00::7 b2:a0:00:00:00:07
check -o "match:^fd00::2 +$MAC2 +shmif0 " -o 'match:^fd00::7 +b2:a0:00:00:00:07 +shmif0 +permanent' \
	on h1 rump.ndp -n -a
check -o 'match:^fd00::2 \(fd00::2\) deleted$' -o 'not-match:fd00::7' on h1 rump.ndp -c
check -o 'not-match:^fd00::2 ' -o 'match:^fd00::7 ' on h1 rump.ndp -n -a
check -o 'inline:fd00::7 (fd00::7) deleted\n' on h1 rump.ndp -d fd00::7
check -o 'not-match:^fd00::7 ' on h1 rump.ndp -n -a
check -o ignore on h1 rump.ping6 -n -c 1 fd00::2
check -o "match:^fd00::2 +$MAC2 +shmif0 " on h1 rump.ndp -n -a

echo "t_arp_ndp: passed"
