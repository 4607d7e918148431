#!/bin/bash
# Benchmark: keep-alive HTTP requests per second through a node pair with
# metrics recording on (the default) and off (weft node --no-metrics),
# interleaved in one run so that both see the same machine.
#
#   test/bench/metrics-onoff.sh BUILDDIR [SECONDS] [ROUNDS] [CONNECTIONS]  (root)
#
#   tools/client (node-1) ── wrk ── node-1 ══ mTLS tunnel ══ node-2 ── shop/api-1
#
# wrk calls the Service shop/api-v1 (test/integration/metrics.yaml: only
# api-1), so each request is routed, and observed, on both nodes.  Each
# round restarts both node daemons in the mode it measures, then runs wrk
# (one thread, CONNECTIONS keep-alive connections, SECONDS) against
# weft-echo's GET /.  Prints each round, what the nodes counted, and the
# medians.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS] [CONNECTIONS]" >&2; exit 2; }
export WEFT_BUILD_DIR=$(cd "$1" && pwd) WEFT_BIN=$(cd "$1" && pwd)/weft
secs=${2:-5} rounds=${3:-3} conns=${4:-16}
source "$(dirname "$0")/../integration/lib.sh"
need_root
command -v wrk >/dev/null || skip "needs wrk"
lab_init mbench
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" \
	"$IT_DIR/metrics.yaml"
VIP=$("$PY" -c 'import json,sys
print(json.load(open(sys.argv[1]))["services"]["shop/api-v1"]["vip"])' "$LAB_STATE/lab.json")

mode() {	# on|off: restart both daemons in that mode
	if [[ $1 == on ]]; then
		WEFT_LAB_NODE_ARGS= lab restart node/node-1 node/node-2 >/dev/null
	else
		WEFT_LAB_NODE_ARGS=--no-metrics lab restart node/node-1 node/node-2 >/dev/null
	fi
	http_get tools/client "http://$VIP/" >/dev/null ||
		fail "no answer through the restarted daemons"
}
rps() {
	pod tools/client wrk -t1 -c"$conns" -d"${secs}s" "http://$VIP/" |
		awk '/^Requests\/sec:/ { printf "%.0f", $2 }'
}
requests_seen() {	# NODE DIRECTION: requests it counted
	node "$1" curl -s http://127.0.0.1:15020/metrics |
		awk -v d="$2" 'index($0, "weft_requests_total{direction=\"" d "\"") == 1 { s += $2 } END { print s + 0 }'
}

declare -a on off
for r in $(seq 1 "$rounds"); do
	mode on
	on+=("$(rps)")
	seen="node-1 outbound $(requests_seen node-1 outbound), node-2 inbound $(requests_seen node-2 inbound)"
	mode off
	off+=("$(rps)")
	echo "round $r: metrics on ${on[-1]} req/s (counted: $seen), off ${off[-1]} req/s"
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mon=$(med "${on[@]}") moff=$(med "${off[@]}")
echo "median: metrics on $mon req/s, off $moff req/s, on/off $(awk -v a="$mon" -v b="$moff" 'BEGIN{printf "%.3f", a/b}')"
