# Shared by the compat scripts (sourced): NetBSD tests/net style helpers for rump servers.
#
#   check [-s exit:N|not-exit:N|ignore] [-o SPEC]... [-e SPEC]... CMD [ARG...]
#       runs CMD and fails the script unless its status and output are as said, like
#       atf_check(1). SPEC: empty (the default for both), ignore, match:ERE, not-match:ERE,
#       inline:TEXT (printf %b escapes), save:FILE.
#   start_server SOCK [-lLIB...]   rump_server with $LIBS and the extra LIBs on unix://SOCK,
#                                  checking it prints nothing; halted when the script ends
#   add_iface SOCK IF BUS          rump.ifconfig IF create; rump.ifconfig IF linkstr BUS
#   on SOCK CMD [ARG...]           CMD with RUMP_SERVER=unix://SOCK
#   case_begin NAME                prints a header for one test case
#
# Every server started is halted (rump.halt) when the script exits, whatever the reason.
# The scripts run in $COMPAT_WORK (a fresh directory the cargo test gives them), else in a
# new temporary directory; socket and bus paths are relative to it.

set -u

NL='
'
LIBS="-lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif -lrumpdev"
LIBS6="$LIBS -lrumpnet_netinet6"

if [ -n "${COMPAT_WORK:-}" ]; then
	WORK=$COMPAT_WORK
else
	WORK=$(mktemp -d "${TMPDIR:-/tmp}/compat.XXXXXX")
fi
cd "$WORK" || exit 1
SERVERS=$WORK/.servers
: >"$SERVERS"

cleanup() {
	_status=$?
	trap - EXIT
	while IFS= read -r _s; do
		RUMP_SERVER=$_s rump.halt >/dev/null 2>&1 || true
	done <"$SERVERS"
	: >"$SERVERS"
	exit "$_status"
}
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

case_begin() {
	echo "--- $1"
}

# Remembers a server for cleanup, by absolute URL (the script may change directory).
remember() {
	case $1 in
	/*) echo "unix://$1" >>"$SERVERS" ;;
	*) echo "unix://$PWD/$1" >>"$SERVERS" ;;
	esac
}

_bad() {
	{
		echo "FAIL: $_cmd"
		echo "  $1"
		echo "  --- stdout:"
		sed 's/^/  | /' "$WORK/.out"
		echo "  --- stderr:"
		sed 's/^/  | /' "$WORK/.err"
	} >&2
	exit 1
}

_spec() {
	while IFS= read -r _s; do
		case $_s in
		'') ;;
		empty) [ ! -s "$2" ] || _bad "$3 is not empty" ;;
		ignore) ;;
		match:*) grep -Eq -- "${_s#match:}" "$2" || _bad "$3 does not match: ${_s#match:}" ;;
		not-match:*)
			! grep -Eq -- "${_s#not-match:}" "$2" || _bad "$3 matches: ${_s#not-match:}" ;;
		inline:*)
			printf '%b' "${_s#inline:}" | cmp -s - "$2" ||
				_bad "$3 is not exactly: ${_s#inline:}" ;;
		save:*) cp "$2" "${_s#save:}" ;;
		*) fail "check: bad output spec $_s" ;;
		esac
	done <<EOF_SPEC
$1
EOF_SPEC
}

check() {
	_st=exit:0 _out= _err= OPTIND=1
	while getopts s:o:e: _opt; do
		case $_opt in
		s) _st=$OPTARG ;;
		o) _out="$_out$OPTARG$NL" ;;
		e) _err="$_err$OPTARG$NL" ;;
		*) fail "check: bad option" ;;
		esac
	done
	shift $((OPTIND - 1))
	_cmd="$*"
	[ -n "$_out" ] || _out=empty
	[ -n "$_err" ] || _err=empty
	_rc=0
	"$@" >"$WORK/.out" 2>"$WORK/.err" || _rc=$?
	case $_st in
	exit:*) [ "$_rc" -eq "${_st#exit:}" ] || _bad "exit status $_rc, expected ${_st#exit:}" ;;
	not-exit:*) [ "$_rc" -ne "${_st#not-exit:}" ] || _bad "exit status $_rc" ;;
	ignore) ;;
	*) fail "check: bad status spec $_st" ;;
	esac
	_spec "$_out" "$WORK/.out" stdout
	_spec "$_err" "$WORK/.err" stderr
}

on() {
	_sock=$1
	shift
	RUMP_SERVER=unix://$_sock "$@"
}

start_server() {
	_sock=$1
	shift
	remember "$_sock"
	# shellcheck disable=SC2086 # $LIBS is a list of words
	check rump_server $LIBS "$@" "unix://$_sock"
}

add_iface() {
	check on "$1" rump.ifconfig "$2" create
	check on "$1" rump.ifconfig "$2" linkstr "$3"
}

# The frames on BUS as `tcpdump -n -e` shows them (for -o match: checks).
dump_bus() {
	shmif_dumpbus -p - "$1" 2>/dev/null | tcpdump -n -e -r - 2>/dev/null
}

# A MAC address as NetBSD prints it.
MAC='[0-9a-f]{2}(:[0-9a-f]{2}){5}'
