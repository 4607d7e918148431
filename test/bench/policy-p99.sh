#!/bin/bash
# Benchmark: what per-request policy costs.  Keep-alive HTTP requests from
# tools/client to shop/api through a destination that enforces
#   L4:  one TrafficTarget with a single TCPRoute rule (any port), vs.
#   L7:  one TrafficTarget with an HTTPRouteGroup of 20 matches (path regex,
#        method, a header regex each), where only the 20th admits the
#        request, so every request is tested against all 20,
# interleaved in one run (L4, L7, L4, L7, ...), across nodes (api-1, through
# the tunnel) and on one node (api-2).  wrk -t1 -c1 --latency: one
# connection, one request at a time, so p99 is a request's own latency.
#
#   test/bench/policy-p99.sh BUILDDIR [SECONDS] [ROUNDS]     (root)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS]" >&2; exit 2; }
export WEFT_BUILD_DIR=$(cd "$1" && pwd) WEFT_BIN=$(cd "$1" && pwd)/weft
secs=${2:-5} rounds=${3:-3}
source "$(dirname "$0")/../integration/lib.sh"
need_root
command -v wrk >/dev/null || skip "needs wrk (apt-get install wrk)"
lab_init polp99
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml"

cat >"$IT_TMP/l4.yaml" <<'EOF'
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: bench-port, namespace: shop}
spec:
  matches: {ports: []}
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: bench, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: shop}
  rules:
  - {kind: TCPRoute, name: bench-port}
  sources:
  - {kind: ServiceAccount, name: client, namespace: tools}
EOF
{
	echo 'apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: bench-routes, namespace: shop}
spec:
  matches:'
	for i in $(seq 1 19); do
		printf '  - name: r%d\n    pathRegex: "/v1/item-%d/[a-z]+"\n    methods: [GET, POST]\n    headers:\n    - x-tenant: "tenant-%d|t%d"\n' "$i" "$i" "$i" "$i"
	done
	cat <<'EOF'
  - name: r20
    pathRegex: "/bench"
    methods: [GET]
    headers:
    - host: '10\.244\..*'
EOF
	echo '---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: bench, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: shop}
  rules:
  - {kind: HTTPRouteGroup, name: bench-routes}
  sources:
  - {kind: ServiceAccount, name: client, namespace: tools}'
} >"$IT_TMP/l7.yaml"
wait_for -t 20 log_has "$(node_log_file node-1)" "identity spiffe://cluster.local/ns/tools/sa/client: certificate issued"

# to_us "123.45us" | "1.20ms" | "2.00s"
to_us() {
	"$PY" -c 'import sys,re
m = re.match(r"([\d.]+)(us|ms|s)$", sys.argv[1]); v = float(m.group(1))
print("%.1f" % (v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]))' "$1"
}
# measure MODE IP: "p50 p99 req/s" of one wrk run.
measure() {
	local out p50 p99 rps
	pod tools/client curl -sS --fail --max-time 5 "http://$2:8080/bench" >/dev/null ||
		fail "$1: /bench is not allowed"
	pod tools/client curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://$2:8080/other" >"$IT_TMP/code" || true
	if [[ $1 == L7 ]]; then
		assert_eq "$(cat "$IT_TMP/code")" 403 "L7: /other is denied (the rules are in force)"
	fi
	out=$(pod tools/client wrk -t1 -c1 -d"${secs}s" --latency "http://$2:8080/bench")
	grep -q 'Non-2xx\|Socket errors' <<<"$out" && fail "$1: wrk saw errors: $out"
	p50=$(awk '$1 == "50%" { print $2 }' <<<"$out")
	p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
	rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
	echo "$(to_us "$p50") $(to_us "$p99") $rps"
}

declare -A res
for r in $(seq 1 "$rounds"); do
	for mode in L4 L7; do
		if [[ $mode == L4 ]]; then
			lab delete "$IT_TMP/l7.yaml" >/dev/null 2>&1 || true
			lab apply "$IT_TMP/l4.yaml" >/dev/null
		else
			lab delete "$IT_TMP/l4.yaml" >/dev/null 2>&1 || true
			lab apply "$IT_TMP/l7.yaml" >/dev/null
		fi
		for ip in "$IP_API1" "$IP_API2"; do
			m=$(measure "$mode" "$ip")
			res[$mode,$ip]+="$m"$'\n'
			printf 'round %d %s %-12s p50 %8s us  p99 %8s us  %8s req/s\n' "$r" "$mode" "$ip" $m >&2
		done
	done
done

echo
echo "keep-alive HTTP, one connection, ${secs}s x $rounds rounds each (median of rounds):"
for ip in "$IP_API1" "$IP_API2"; do
	where=$([[ $ip == "$IP_API1" ]] && echo "across nodes" || echo "same node")
	"$PY" - "$where" "${res[L4,$ip]}" "${res[L7,$ip]}" <<'EOF'
import statistics, sys
where, a, b = sys.argv[1], sys.argv[2], sys.argv[3]
def col(s, i):
    return statistics.median(float(l.split()[i]) for l in s.strip().splitlines())
l4p50, l4p99, l4r = col(a, 0), col(a, 1), col(a, 2)
l7p50, l7p99, l7r = col(b, 0), col(b, 1), col(b, 2)
print("  %-12s 1 TCPRoute:        p50 %7.1f us  p99 %7.1f us  %8.0f req/s" % (where, l4p50, l4p99, l4r))
print("  %-12s 20 HTTP matches:   p50 %7.1f us  p99 %7.1f us  %8.0f req/s" % (where, l7p50, l7p99, l7r))
print("  %-12s added p99: %+.1f us (p50 %+.1f us)" % (where, l7p99 - l4p99, l7p50 - l4p50))
EOF
done
