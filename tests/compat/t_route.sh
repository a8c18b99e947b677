#!/bin/sh
# route add, get, delete, show and flush, IPv4 and IPv6, with netstat -rn (NetBSD's
# tests/net/route).
. "$(dirname "$0")/common.sh"

case_begin "a host with a gateway on its bus"
start_server h -lrumpnet_netinet6
start_server gw -lrumpnet_netinet6
add_iface h shmif0 bus1
add_iface gw shmif0 bus1
check on h rump.ifconfig shmif0 inet 10.0.0.1/24
check on h rump.ifconfig shmif0 inet6 fd00::1
check on h rump.ifconfig shmif0 up
check on gw rump.ifconfig shmif0 inet 10.0.0.2/24
check on gw rump.ifconfig shmif0 inet6 fd00::2
check on gw rump.ifconfig shmif0 up
check on h rump.ifconfig -w 10
check on gw rump.ifconfig -w 10

case_begin "IPv4: add, get, show, delete"
check -o 'inline:add net 10.9.0.0/24: gateway 10.0.0.2\n' \
	on h rump.route add -net 10.9.0.0/24 10.0.0.2
check -o 'match:^ +route to: 10\.9\.0\.5$' -o 'match:^destination: 10\.9\.0\.0$' \
	-o 'match:^ +mask: 255\.255\.255\.0$' -o 'match:^ +gateway: 10\.0\.0\.2$' \
	-o 'match:^ +interface: shmif0$' -o 'match:^ +flags: <.*UP.*GATEWAY.*STATIC' \
	on h rump.route -n get 10.9.0.5
check -o 'inline:add host 10.9.9.9: gateway 10.0.0.2\n' \
	on h rump.route add -host 10.9.9.9 10.0.0.2
check -o 'match:^destination: 10\.9\.9\.9$' -o 'match:flags: <.*HOST' \
	on h rump.route -n get 10.9.9.9
check -o 'inline:add net default: gateway 10.0.0.2\n' on h rump.route add default 10.0.0.2
check -o 'match:^destination: default$' -o 'match:^ +gateway: 10\.0\.0\.2$' \
	on h rump.route -n get 192.0.2.1
check -o 'match:^Routing tables$' -o 'match:^Internet:$' \
	-o 'match:^Destination +Gateway +Flags' \
	-o 'match:^default +10\.0\.0\.2 +UGS ' -o 'match:^10\.0\.0/24 +link#1 +U' \
	-o 'match:^10\.9\.0/24 +10\.0\.0\.2 +UGS ' -o 'match:^10\.9\.9\.9 +10\.0\.0\.2 +UGHS ' \
	on h rump.netstat -rn -f inet
check -o 'match:^default +10\.0\.0\.2 +UGS ' on h rump.route -n show
check -o 'match:^1 packets transmitted, 1 packets received' on h rump.ping -n -c 1 10.0.0.2
check -o 'inline:delete net 10.9.0.0/24: gateway 10.0.0.2\n' \
	on h rump.route delete -net 10.9.0.0/24 10.0.0.2
check -o 'inline:delete host 10.9.9.9: gateway 10.0.0.2\n' \
	on h rump.route delete -host 10.9.9.9 10.0.0.2
# Now the default route answers for it.
check -o 'match:^destination: default$' on h rump.route -n get 10.9.0.5
check -o 'not-match:^10\.9\.' on h rump.netstat -rn -f inet
check -o 'inline:delete net default: gateway 10.0.0.2\n' on h rump.route delete default 10.0.0.2
check -s exit:1 -e ignore on h rump.route -n get 10.9.0.5
check -s not-exit:0 -e 'match:^rump.route: ' on h rump.route delete -net 10.9.0.0/24 10.0.0.2
check -s not-exit:0 -e 'match:Network is unreachable' \
	on h rump.route add -net 10.8.0.0/24 192.168.1.1

case_begin "IPv6: add, get, show, delete"
check -o 'inline:add net fd00:9::/64: gateway fd00::2\n' \
	on h rump.route add -inet6 fd00:9::/64 fd00::2
check -o 'match:^destination: fd00:9::$' -o 'match:^ +gateway: fd00::2$' \
	-o 'match:^ +interface: shmif0$' on h rump.route -n get -inet6 fd00:9::1
# NetBSD echoes the destination word as given (fd00:8::); netstack adds the /48.
check -o 'match:^add net fd00:8::(/48)?: gateway fd00::2$' \
	on h rump.route add -inet6 -net fd00:8:: -prefixlen 48 fd00::2
check -o 'match:^ +mask: ffff:ffff:ffff::$' on h rump.route -n get -inet6 fd00:8:0:1::1
check -o 'match:^Internet6:$' -o 'match:^fd00:9::/64 +fd00::2 +UGS ' \
	-o 'match:^fd00:8::/48 +fd00::2 +UGS ' -o 'match:^fd00::/64 ' \
	on h rump.netstat -rn -f inet6
check -o 'match:^Internet:$' -o 'match:^Internet6:$' on h rump.netstat -rn
check -o 'match:^1 packets transmitted, 1 packets received' on h rump.ping6 -n -c 1 fd00::2
check -o 'inline:delete net fd00:9::/64: gateway fd00::2\n' \
	on h rump.route delete -inet6 fd00:9::/64 fd00::2
check -o 'not-match:^fd00:9::' on h rump.netstat -rn -f inet6
check -s exit:1 -e ignore on h rump.route -n get -inet6 fd00:9::1
LL=$(on gw rump.ifconfig shmif0 | sed -n 's/^[[:space:]]*inet6 \(fe80::[0-9a-f:]*\)%shmif0.*/\1/p')
[ -n "$LL" ] || fail "no link-local address on gw"
check -o "inline:add net default: gateway $LL%shmif0\\n" \
	on h rump.route add -inet6 default "$LL%shmif0"
check -o "match:^ +gateway: $LL%shmif0\$" on h rump.route -n get -inet6 fd00:77::1

case_begin "flush"
check -o 'inline:add net default: gateway 10.0.0.2\n' on h rump.route add default 10.0.0.2
check -o 'match:^default +10\.0\.0\.2 +done$' on h rump.route flush -inet
check -o 'not-match:^default' on h rump.netstat -rn -f inet
check -o 'match:^10\.0\.0/24 ' on h rump.netstat -rn -f inet
check -o ignore on h rump.route flush -inet6
check -o 'not-match:^fd00:8::' -o 'not-match:^default' on h rump.netstat -rn -f inet6

echo "t_route: passed"
