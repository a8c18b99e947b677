#!/bin/sh
# rump_server, rump_allserver and the rump.* clients themselves: options, URLs, the working
# directory, -l components and what a server without one refuses, RUMP_SERVER handling.
. "$(dirname "$0")/common.sh"

USAGE='^usage: rump_server \[-s\] \[-c ncpu\] \[-d drivespec\] \[-l libs\] \[-m modules\] bindurl$'

case_begin "usage"
check -s exit:1 -e "match:$USAGE" rump_server
check -s exit:1 -e "match:$USAGE" rump_server unix://a unix://b
check -s exit:1 -e 'match:^rump_server: unknown option -- x$' -e "match:$USAGE" \
	rump_server -x unix://a
check -s exit:1 -e 'match:^rump_server: option requires an argument -- l$' rump_server -l

case_begin "a server starts silently and serves its socket"
start_server s1
test -S s1 || fail "no socket s1"
check -o empty on s1 rump.ifconfig -a
add_iface s1 shmif0 bus1
test -f bus1 || fail "bus1 was not created in the server's directory"
check -o 'match:^shmif0: flags=' -o 'match:linkstr: bus1' on s1 rump.ifconfig shmif0

case_begin "a socket in use, a file in the way, a missing directory"
check -s exit:1 -e 'match:^rump server init failed: .*another node is already listening' \
	rump_server $LIBS unix://s1
echo data >plainfile
check -s exit:1 -e 'match:^rump server init failed: .*exists and is not a socket' \
	rump_server $LIBS unix://plainfile
check -s exit:1 -e 'match:^rump server init failed: .*cannot listen' \
	rump_server $LIBS unix://nodir/s

case_begin "URLs"
check -s exit:1 -e "match:^rump_sp: invalid locator \`\`s''$" \
	-e 'match:^rump server init failed: Invalid argument$' rump_server $LIBS s
check -s exit:1 -e "match:^rump_sp: invalid identifier" rump_server $LIBS udp://x
check -s exit:1 -e 'match:^rump server init failed: Operation not supported$' \
	rump_server $LIBS tcp://127.0.0.1:12345
start_server "$WORK/abs"
test -S "$WORK/abs" || fail "no socket at the absolute path"
check on "$WORK/abs" rump.halt
test ! -e "$WORK/abs" || fail "halt left the socket"

case_begin "relative paths are the server's working directory's"
mkdir sub
(cd sub && start_server s2) || exit 1
test -S sub/s2 || fail "no socket sub/s2"
# The client resolves the URL against its own directory; the bus path is the node's.
add_iface sub/s2 shmif0 bus2
test -f sub/bus2 || fail "the bus is not in the server's directory"
test ! -e bus2 || fail "the bus is in the client's directory"
(cd sub && check -o 'match:linkstr: bus2' on s2 rump.ifconfig shmif0) || exit 1

case_begin "RUMP_SERVER"
check -s exit:1 -e 'match:^error: RUMP_SERVER not set$' \
	-e 'match:^rump.ifconfig: init failed: No such file or directory$' \
	env -u RUMP_SERVER rump.ifconfig -a
check -s exit:1 -e "match:^rump_sp: invalid locator \`\`s1''$" \
	-e 'match:^rump.ping: init failed: Invalid argument$' env RUMP_SERVER=s1 rump.ping 10.0.0.1
check -s exit:1 -e 'match:^rump.halt: init failed: No such file or directory' \
	env RUMP_SERVER=unix://nosuch rump.halt
check -s exit:1 -e 'match:^rump.halt: init failed: Connection refused' \
	env RUMP_SERVER=unix://plainfile rump.halt
# rumphijack's variables, which NetBSD scripts export around these commands, change nothing.
# A dynamically linked build makes the loader complain about the missing library on stderr
# (the installed, static binaries do not): that line alone is allowed.
check -o 'match:^shmif0: flags=' -e save:hijack.err \
	env LD_PRELOAD=/usr/lib/librumphijack.so \
	RUMPHIJACK=path=/rump,socket=all:nolocal,sysctl=yes RUMP_SERVER=unix://s1 \
	rump.ifconfig shmif0
check -s ignore -o empty grep -v "^ERROR: ld.so: object '/usr/lib/librumphijack.so'" hijack.err
# Error lines carry the rump.* name, as NetBSD's err(3) prints them.
check -s exit:1 -e 'match:^rump.ifconfig: shmif9: no such interface' on s1 rump.ifconfig shmif9 up

case_begin "components: -l forms, unknown components, dependencies"
start_server s3 -l librumpnet_netinet6.so -l /usr/lib/librumpvfs.so.0
check on s3 rump.ifconfig shmif0 create inet6 fd00::3
check -o 'match:inet6 fd00::3/64' on s3 rump.ifconfig shmif0
check -s exit:1 -e 'match:^failed to load -libraries, last error from "rumpnet_npf":$' \
	-e 'match:^  librumpnet_npf.so: no such component in shmlab' \
	rump_server $LIBS -lrumpnet_npf unix://npf
check -s exit:1 -e 'match:^failed to load -libraries, last error from "rumpnet_netinet":$' \
	-e 'match:needs librumpnet_net.so: add -lrumpnet_net$' \
	rump_server -lrumpnet -lrumpnet_netinet unix://deps
test ! -e npf && test ! -e deps || fail "a server that failed to start left a socket"

case_begin "no -lrumpnet_netinet6: no IPv6"
start_server v4
add_iface v4 shmif0 bus4
NO6='socket: Address family not supported by protocol family \(the rump server was started without -lrumpnet_netinet6\)$'
check on v4 rump.ifconfig shmif0 inet 10.0.4.1/24 up
check -s exit:1 -e "match:^rump.ifconfig: $NO6" on v4 rump.ifconfig shmif0 inet6 fd00::1
check -s exit:1 -e "match:^rump.ping6: $NO6" on v4 rump.ping6 -c 1 fd00::2
check -s exit:1 -e "match:^rump.ndp: $NO6" on v4 rump.ndp -a
check -s exit:1 -e "match:^rump.route: $NO6" on v4 rump.route add -inet6 default fd00::2
check -s exit:1 -e "match:^rump.netstat: $NO6" on v4 rump.netstat -rn -f inet6
check -s exit:1 -e "match:^rump.sysctl: second level name 'inet6' in 'net.inet6.ip6.forwarding' is invalid" \
	on v4 rump.sysctl net.inet6.ip6.forwarding
check -o 'inline:net.inet.ip.forwarding = 0\n' on v4 rump.sysctl net.inet.ip.forwarding
check -o 'match:^Internet:' on v4 rump.netstat -rn -f inet

case_begin "no -lrumpnet_shmif: no shmif interfaces; no -lrumpnet_netinet: no IPv4"
remember noshmif
check rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet unix://noshmif
check -s exit:1 -e 'match:^rump.ifconfig: SIOCIFCREATE: Invalid argument \(the rump server was started without -lrumpnet_shmif\)$' \
	on noshmif rump.ifconfig shmif0 create
remember noinet
check rump_server -lrumpnet -lrumpnet_net -lrumpnet_shmif unix://noinet
check on noinet rump.ifconfig shmif0 create
NO4='socket: Address family not supported by protocol family \(the rump server was started without -lrumpnet_netinet\)$'
check -s exit:1 -e "match:^rump.ifconfig: $NO4" on noinet rump.ifconfig shmif0 10.0.0.1/24
check -s exit:1 -e "match:^rump.ping: $NO4" on noinet rump.ping -c 1 10.0.0.1
check -s exit:1 -e "match:^rump.arp: $NO4" on noinet rump.arp -a
check -s exit:1 -e "match:^rump.route: $NO4" on noinet rump.route add default 10.0.0.1
check -s exit:1 -e "match:^rump.traceroute: $NO4" on noinet rump.traceroute 10.0.0.1

case_begin "a bare rump_server has no networking; rump_allserver has everything"
remember bare
check rump_server unix://bare
check -s exit:1 -e 'match:^rump.ifconfig: socket: Protocol not supported \(the rump server was started without -lrumpnet\)$' \
	on bare rump.ifconfig -a
check on bare rump.halt
remember all
check rump_allserver unix://all
check on all rump.ifconfig shmif0 create
check on all rump.ifconfig shmif0 inet6 fd00::9
check on all rump.ifconfig shmif0 inet 10.0.9.1/24
check -o 'match:^Neighbor' on all rump.ndp -n -a
check -o ignore on all rump.sysctl -w net.inet6.ip6.forwarding=1

case_begin "-s stays in the foreground until halted; -v logs to stderr"
remember fg
rump_server -s $LIBS unix://fg >fg.out 2>fg.err &
fg=$!
i=0
while [ ! -S fg ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || fail "rump_server -s did not listen within 10 s"
	sleep 0.1
done
kill -0 $fg 2>/dev/null || fail "rump_server -s is not running"
check on fg rump.halt
wait $fg || fail "rump_server -s exited with status $?"
test ! -s fg.out && test ! -s fg.err || fail "rump_server -s printed something: $(cat fg.out fg.err)"
remember verbose
# The node keeps writing to this stderr for its whole life: a file of its own.
rump_server -v $LIBS unix://verbose 2>verbose.err || fail "rump_server -v failed: $(cat verbose.err)"
check -o 'match:listening on verbose' cat verbose.err

case_begin "-c and -r are accepted; -d and -m are refused"
start_server opts -c 2 -r 64m
check -s exit:1 -e 'match:^rump init failed: Invalid argument' rump_server -c 0 $LIBS unix://c0
check -s exit:1 -e 'match:^incomplete drivespec$' -e "match:$USAGE" \
	rump_server -d key=/dk $LIBS unix://d
check -s exit:1 -e 'match:^etfs register failed: Operation not supported' \
	rump_server -d key=/dk,hostpath=img,size=1m $LIBS unix://d
check -s exit:1 -e 'match:^module load failed: Operation not supported' \
	rump_server -m /stand/amd64/10.0/modules/npf/npf.kmod $LIBS unix://m

echo "t_rump_server: passed"
