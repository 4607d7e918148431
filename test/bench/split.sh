#!/bin/bash
# Benchmark: what the service router costs.  Keep-alive HTTP GETs from
# tools/client (node-1), wrk with one and with eight connections, to
#   pod-v1:      shop/front-v1 directly (same node, 10.244.1.50:8080)
#   pod-v2:      shop/front-v2 directly (across nodes, the mTLS tunnel)
#   split-1/0:   the root service front:80 with a TrafficSplit 1/0: every
#                request routed to front-v1 by the node's router
#   split-1/1:   the same split 1/1: half to front-v1, half to front-v2
# interleaved in one run (pod-v1, pod-v2, split-1/0, split-1/1, ...).  The
# split rows go through the router (per-request choice, pooled upstreams);
# the pod rows only through the relay (and the tunnel for pod-v2).
#
#   test/bench/split.sh BUILDDIR [SECONDS] [ROUNDS]     (root)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS]" >&2; exit 2; }
export WEFT_BUILD_DIR=$(cd "$1" && pwd) WEFT_BIN=$(cd "$1" && pwd)/weft
secs=${2:-5} rounds=${3:-3}
source "$(dirname "$0")/../integration/lib.sh"
need_root
command -v wrk >/dev/null || skip "needs wrk (apt-get install wrk)"
lab_init splitbn
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" \
	"$IT_DIR/split.yaml"
wait_for -t 20 log_has "$(node_log_file node-1)" "identity spiffe://cluster.local/ns/tools/sa/client: certificate issued"
wait_for -t 20 log_has "$(node_log_file node-2)" "identity spiffe://cluster.local/ns/shop/sa/front: certificate issued"

split() {	# W1 W2
	cat >"$IT_TMP/split.yaml" <<EOF
apiVersion: split.smi-spec.io/v1alpha4
kind: TrafficSplit
metadata: {name: front, namespace: shop}
spec:
  service: front
  backends:
  - {service: front-v1, weight: $1}
  - {service: front-v2, weight: $2}
EOF
	lab apply "$IT_TMP/split.yaml" >/dev/null
}

to_us() {	# "123.45us" | "1.20ms" | "2.00s"
	"$PY" -c 'import sys,re
m = re.match(r"([\d.]+)(us|ms|s)$", sys.argv[1]); v = float(m.group(1))
print("%.1f" % (v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]))' "$1"
}
# measure URL CONNS: "p50 p99 req/s" of one wrk run.
measure() {
	local out
	out=$(pod tools/client wrk -t1 -c"$2" -d"${secs}s" --latency "$1")
	grep -q 'Non-2xx\|Socket errors' <<<"$out" && fail "$1: wrk saw errors: $out"
	echo "$(to_us "$(awk '$1 == "50%" { print $2 }' <<<"$out")")" \
	    "$(to_us "$(awk '$1 == "99%" { print $2 }' <<<"$out")")" \
	    "$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")"
}

targets="pod-v1 pod-v2 split-1/0 split-1/1"
declare -A url=([pod-v1]="http://10.244.1.50:8080/bench" [pod-v2]="http://10.244.2.50:8080/bench"
	[split-1/0]="http://front.shop/bench" [split-1/1]="http://front.shop/bench")
declare -A res
for r in $(seq 1 "$rounds"); do
	for t in $targets; do
		case $t in
		split-1/0) split 1 0 ;;
		split-1/1) split 1 1 ;;
		esac
		pod tools/client curl -sS --fail --max-time 5 "${url[$t]}" >/dev/null || fail "$t: no answer"
		for c in 1 8; do
			m=$(measure "${url[$t]}" "$c")
			res[$t,$c]+="$m"$'\n'
			printf 'round %d %-10s -c%d  p50 %8s us  p99 %8s us  %8s req/s\n' "$r" "$t" "$c" $m >&2
		done
	done
done

echo
echo "keep-alive HTTP GET, wrk -t1, ${secs}s x $rounds rounds each (median of rounds):"
for c in 1 8; do
	for t in $targets; do
		"$PY" - "$t" "$c" "${res[$t,$c]}" <<'EOF'
import statistics, sys
t, c, s = sys.argv[1], sys.argv[2], sys.argv[3]
col = lambda i: statistics.median(float(l.split()[i]) for l in s.strip().splitlines())
print("  -c%-2s %-10s p50 %7.1f us  p99 %7.1f us  %8.0f req/s" % (c, t, col(0), col(1), col(2)))
EOF
	done
done
