# Helpers for the integration tests (sourced by t-*.sh).  Each test runs its
# own lab (deploy/local/weft-lab) named after the test and its PID, and tears
# it down in its EXIT trap.  Poll, don't sleep: wait_for retries a command
# until it succeeds or a timeout passes.
#
# Environment (test/integration/run sets it):
#   WEFT_BIN        the weft binary (default: <build>/weft)
#   WEFT_BUILD_DIR  build directory (weft, weft-echo)
#   WEFT_LAB        the lab script (default: <repo>/deploy/local/weft-lab)
#   WEFT_IT_LABS    file the runner reads to check each lab left nothing behind
#   WEFT_IT_KEEP=1  on failure, keep the lab for inspection (no down)

IT_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
IT_DIR=$IT_TOP/test/integration
EXAMPLES=$IT_TOP/deploy/local/examples
WEFT_LAB=${WEFT_LAB:-$IT_TOP/deploy/local/weft-lab}
WEFT_BUILD_DIR=${WEFT_BUILD_DIR:-$IT_TOP}
WEFT_BIN=${WEFT_BIN:-$WEFT_BUILD_DIR/weft}
PY=/usr/bin/python3
export WEFT_BIN WEFT_BUILD_DIR

# The example cluster's addresses (the lab allocates in file order: node i
# gets 10.244.i.0/24, pods .10, .11, ... in order; services from 10.96.0.10).
IP_WEB=10.244.1.10		# shop/web     node-1
IP_API1=10.244.2.10		# shop/api-1   node-2
IP_API2=10.244.1.11		# shop/api-2   node-1
IP_CLIENT=10.244.1.12		# tools/client node-1
IP_OLD=10.244.2.11		# legacy/old   node-2
VIP_API=10.96.0.10		# shop/api

# The lab runs without weft (WEFT_LAB_NO_WEFT=1): only for developing the lab.
no_weft() { [[ ${WEFT_LAB_NO_WEFT:-0} == 1 ]]; }

pretty() { printf '\e[1;32m[+]\e[0m %s\n' "$*" >&2; }
skip() { echo "SKIP: $*" >&2; exit 77; }
fail() {
	printf '\e[1;31m[FAIL]\e[0m %s\n' "$*" >&2
	exit 1
}

need_root() {
	[[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces, nftables)"
	local t
	for t in ip nft "$PY"; do
		command -v "$t" >/dev/null || skip "needs $t"
	done
	"$PY" -c 'import yaml' 2>/dev/null || skip "needs python3-yaml for $PY"
	[[ -x $WEFT_BIN ]] || skip "no weft binary at $WEFT_BIN (set WEFT_BIN)"
	[[ -x $WEFT_BUILD_DIR/weft-echo ]] || skip "no weft-echo in $WEFT_BUILD_DIR (make weft-echo)"
}

# lab_init SHORTNAME: pick this test's lab name, unique per process.
lab_init() {
	LAB_NAME="wt${1}$$"
	LAB_NAME=${LAB_NAME:0:32}
	export WEFT_LAB_NAME=$LAB_NAME
	[[ -z ${WEFT_IT_LABS:-} ]] || echo "$LAB_NAME" >>"$WEFT_IT_LABS"
	LAB_STATE=/run/weft-lab/$LAB_NAME
}

lab() { "$WEFT_LAB" --name "$LAB_NAME" "$@"; }

# lab_up FILE...: bring the lab up; its output lands in $LAB_UP_OUT.
lab_up() {
	pretty "weft-lab up $*"
	LAB_UP_OUT=$(lab up "$@") || fail "weft-lab up failed"
	echo "$LAB_UP_OUT" >&2
}

# Shown when a test fails, before the lab goes away.
lab_dump() {
	[[ -d $LAB_STATE ]] || return 0
	echo "---- weft-lab status ($LAB_NAME) ----" >&2
	lab status >&2 2>&1 || true
	local f
	for f in "$LAB_STATE"/logs/*.log; do
		[[ -f $f ]] || continue
		echo "---- ${f##*/} (last 40 lines) ----" >&2
		tail -n 40 "$f" >&2
	done
}

cleanup() {
	local rc=$?
	set +e
	if (( rc != 0 && rc != 77 )); then
		lab_dump
		if [[ ${WEFT_IT_KEEP:-0} == 1 ]]; then
			echo "keeping lab $LAB_NAME (WEFT_IT_KEEP=1): weft-lab --name $LAB_NAME down" >&2
			exit $rc
		fi
	fi
	if [[ -n ${LAB_NAME:-} ]]; then
		# --check-logs: a sanitizer report from a daemon (at exit, so
		# only down sees it) fails the test.
		lab down --check-logs >/dev/null
		local drc=$?
		if (( drc == 3 && (rc == 0 || rc == 77) )); then
			echo "FAIL: sanitizer reports in the lab's logs" >&2
			rc=1
		fi
	fi
	[[ -z ${IT_TMP:-} ]] || rm -rf "$IT_TMP"
	exit $rc
}

# A scratch directory removed by cleanup.
it_tmp() { IT_TMP=$(mktemp -d /tmp/weft-it.XXXXXX); }

pod() { local p=$1; shift; lab exec "$p" -- "$@"; }
node() { local n=$1; shift; lab exec "node/$n" -- "$@"; }

# wait_for [-t SECONDS] CMD...: run CMD every 0.1 s until it succeeds.
wait_for() {
	local t=10
	if [[ $1 == -t ]]; then t=$2; shift 2; fi
	local deadline=$((SECONDS + t))
	until "$@" >/dev/null 2>&1; do
		(( SECONDS < deadline )) || fail "timed out after ${t}s waiting for: $*"
		sleep 0.1
	done
}

assert_eq() {	# ACTUAL EXPECTED WHAT
	[[ $1 == "$2" ]] || fail "$3: expected '$2', got '$1'"
}
assert_match() {	# STRING ERE WHAT
	[[ $1 =~ $2 ]] || fail "$3: '$1' does not match /$2/"
}
assert_gt() {	# A B WHAT
	(( $1 > $2 )) || fail "$3: expected $1 > $2"
}

# json FIELD: a top-level field of the JSON object on stdin.
json() {
	"$PY" -c 'import json,sys; v=json.load(sys.stdin).get(sys.argv[1]); print("" if v is None else v)' "$1"
}

# http_get POD URL [curl args]: the body; fails unless the status is 2xx.
http_get() {
	local p=$1 u=$2; shift 2
	pod "$p" curl -sS --fail --max-time 10 "$@" "$u"
}

# nft_table NODE: the node's table as nft lists it.
nft_table() { node "$1" nft list table inet weft; }

# nft_counter NODE PATTERN: sum of the packet counters of the rules whose
# comment contains PATTERN (case-insensitive); fails if there is none.
nft_counter() {
	nft_table "$1" | "$PY" -c '
import re, sys
pat = sys.argv[1].lower()
tot, n = 0, 0
for line in sys.stdin:
    m = re.search(r"comment \"([^\"]*)\"", line)
    if not m or pat not in m.group(1).lower():
        continue
    c = re.search(r"counter packets (\d+)", line)
    if c:
        tot += int(c.group(1)); n += 1
if n == 0:
    sys.exit("no counted rule with a comment containing %r" % sys.argv[1])
print(tot)' "$2"
}

# nft_normalise: counters zeroed, handles stripped (golden files).
nft_normalise() {
	sed -E -e 's/counter packets [0-9]+ bytes [0-9]+/counter packets 0 bytes 0/g' \
	    -e 's/ *# handle [0-9]+//' -e 's/[[:space:]]+$//'
}

# node_log NODE / pod_log NS/POD: the component's log file.
node_log() { cat "$LAB_STATE/logs/node-$1.log"; }
pod_log() { cat "$LAB_STATE/logs/pod-${1//\//-}.log"; }

# log_has FILE ERE: for wait_for.
log_has() { grep -Eq -- "$2" "$1"; }
node_log_file() { echo "$LAB_STATE/logs/node-$1.log"; }
pod_log_file() { echo "$LAB_STATE/logs/pod-${1//\//-}.log"; }

# pid_alive PID: a running (not zombie) process.
pid_alive() {
	local s
	s=$(awk '{ sub(/.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $s && $s != Z ]]
}
