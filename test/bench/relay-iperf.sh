#!/bin/bash
# Benchmark: one cross-node TCP stream (iperf3) between two pods, through the
# weft node daemons vs. the same path with the daemons stopped and their
# tables removed (plain routing), measured in one run, interleaved.
#
#   test/bench/relay-iperf.sh BUILDDIR [SECONDS] [ROUNDS]     (root)
#
#   tools/client (node-1) ── node-1 ── br0 ── node-2 ── shop/api-1 (iperf3 -s)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS]" >&2; exit 2; }
export WEFT_BUILD_DIR=$(cd "$1" && pwd) WEFT_BIN=$(cd "$1" && pwd)/weft
secs=${2:-5} rounds=${3:-3}
source "$(dirname "$0")/../integration/lib.sh"
need_root
command -v iperf3 >/dev/null || skip "needs iperf3"
lab_init bench
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

spid=
start_server() {
	# -1: serve one test, then exit.
	ip netns exec "$LAB_NAME-pod-shop-api-1" iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
	spid=$!
	wait_for -t 5 pod shop/api-1 ss -Hltn 'sport = :5201'
}
stop_server() { wait "$spid" 2>/dev/null || true; }
# gbps: "GBIT/S BYTES" received by the server.
gbps() {
	pod tools/client iperf3 -c "$IP_API1" -p 5201 -t "$secs" -J |
		"$PY" -c 'import json,sys; e=json.load(sys.stdin)["end"]["sum_received"]; print("%.2f %d" % (e["bits_per_second"]/1e9, e["bytes"]))'
}
hz=$(getconf CLK_TCK)
# cpu_ticks PID: utime + stime of every thread.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# gbps_weft: "GBIT/S CPU-S-PER-GB" through weft (CPU: both daemons, A+B).
gbps_weft() {
	local p1 p2 c0 c1 g b
	p1=$(lab pid node/node-1) p2=$(lab pid node/node-2)
	c0=$(( $(cpu_ticks "$p1") + $(cpu_ticks "$p2") ))
	read -r g b < <(gbps)
	c1=$(( $(cpu_ticks "$p1") + $(cpu_ticks "$p2") ))
	echo "$g $(awk -v d=$((c1 - c0)) -v hz="$hz" -v b="$b" \
		'BEGIN { printf "%.2f", (b > 0 ? d / hz / (b / 1e9) : 0) }')"
}
weft_off() {
	local n
	for n in node-1 node-2; do
		local pid
		pid=$(lab pid node/$n)
		kill -TERM "$pid"
		wait_for -t 10 eval '! pid_alive '"$pid"
		node "$n" "$WEFT_BIN" node --cleanup >/dev/null 2>&1
	done
}
weft_on() { lab restart node/node-1 node/node-2 >/dev/null; }

declare -a with without cpu
for r in $(seq 1 "$rounds"); do
	start_server
	read -r g c < <(gbps_weft)
	with+=("$g") cpu+=("$c")
	stop_server
	weft_off
	start_server
	read -r g _ < <(gbps)
	without+=("$g")
	stop_server
	weft_on
	echo "round $r: through weft ${with[-1]} Gbit/s (${cpu[-1]} CPU-s/GB A+B), without weft ${without[-1]} Gbit/s"
done
# Check the "with" runs really went through weft.
grep -q "conn .* -> $IP_API1:5201" "$(node_log_file node-1)" || fail "iperf3 did not go through node-1's daemon"
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mw=$(med "${with[@]}") mo=$(med "${without[@]}")
echo "median: through weft $mw Gbit/s ($(med "${cpu[@]}") CPU-s/GB A+B), without weft $mo Gbit/s, ratio $(awk -v a="$mw" -v b="$mo" 'BEGIN{printf "%.2f", a/b}')"
