#!/bin/bash
# Telemetry (DESIGN §8, SPEC §6): a known pattern of HTTP requests, then
# what a real Prometheus scraped from every node and what the SMI
# TrafficMetrics API answers `kubectl get --raw` with must count exactly it.
#
#   tools/client   10.244.1.12 ─┐ node-1 ─── br0 ─── node-2 ── shop/api-1
#   tools/intruder 10.244.1.13 ─┤   :15020   10.250.0.1  :15020   (across)
#   shop/api-2     10.244.1.11 ─┘ (same node)  prometheus
#
# Through the Services api-v1 (only api-1) and api-v2 (only api-2):
#   client   -> api-v1: 7 x 200, 2 x 404, 3 x 503   (one keep-alive connection)
#   client   -> api-v2: 5 x 200, 2 x 500            (one keep-alive connection)
#   intruder -> api-v1: 4 x 403, -> api-v2: 2 x 403 (no TrafficTarget)
#
# Allowed = 14 (2xx and 4xx but the proxy's 403s), failed = 5 (5xx, A-19),
# denied = 6, each counted on the caller's node (direction="outbound") and,
# for what reached a pod, on the callee's (direction="inbound").  Also:
# `promtool check metrics` on every node's /metrics, /healthz, /readyz,
# /debug/config, the TCP connection counters, and the SMI edges of pods,
# namespaces and deployments.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
for t in prometheus promtool curl kubectl; do
	command -v "$t" >/dev/null || skip "needs $t (apt-get install prometheus curl)"
done
lab_init metrics
PROM_PID=
prom_stop() {
	[[ -n $PROM_PID ]] || return 0
	kill -TERM "$PROM_PID" 2>/dev/null || true
	local i
	for ((i = 0; i < 100; i++)); do
		pid_alive "$PROM_PID" || break
		sleep 0.1
	done
	pid_alive "$PROM_PID" && kill -KILL "$PROM_PID" 2>/dev/null
	wait "$PROM_PID" 2>/dev/null || true
	PROM_PID=
}
metrics_cleanup() {
	local rc=$?
	set +e
	prom_stop
	(exit $rc)
	cleanup
}
trap metrics_cleanup EXIT
# The count checks below go on after a mismatch, so that one run shows
# every count that is wrong; the test fails at the end if any was.
FAILS=()
soft_fail() {
	printf '\e[1;31m[FAIL]\e[0m %s\n' "$*" >&2
	FAILS+=("$*")
}
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" \
	"$IT_DIR/metrics.yaml"

# lab_ip KIND NAME [FIELD]: a node's eth0, a pod's address or a service's
# VIP, from the lab's state.
lab_ip() {
	"$PY" -c 'import json,sys
st = json.load(open(sys.argv[1]))
print(st[sys.argv[2]][sys.argv[3]][sys.argv[4]])' "$LAB_STATE/lab.json" "$1" "$2" "${3:-ip}"
}
N1=$(lab_ip nodes node-1)
N2=$(lab_ip nodes node-2)
IP_INTRUDER=$(lab_ip pods tools/intruder)
API1=$(lab_ip services shop/api-v1 vip)
API2=$(lab_ip services shop/api-v2 vip)
[[ $API1 =~ ^10\.96\. && $API2 =~ ^10\.96\. ]] || fail "service VIPs: '$API1' '$API2'"

# --- the admin endpoints --------------------------------------------------
pretty "admin endpoints"
for n in node-1 node-2; do
	wait_for -t 20 node "$n" curl -sf http://127.0.0.1:15020/readyz
	body=$(node "$n" curl -s http://127.0.0.1:15020/readyz)
	assert_match "$body" '^ready: generation [0-9]+' "$n /readyz"
	assert_eq "$(node "$n" curl -s http://127.0.0.1:15020/healthz)" ok "$n /healthz"
	gen=$(node "$n" curl -sf http://127.0.0.1:15020/debug/config | json generation)
	assert_match "$gen" '^[0-9]+$' "$n /debug/config generation"
	cur=$(node "$n" curl -s http://127.0.0.1:15020/metrics |
		awk '$1 == "weft_config_generation" { print $2 }')
	assert_eq "$cur" "$gen" "$n weft_config_generation = /debug/config"
	code=$(node "$n" curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:15020/nope)
	assert_eq "$code" 404 "$n unknown admin path"
done

# --- Prometheus, on the lab's switch, scraping both nodes ------------------
pretty "prometheus on 10.250.0.1:19090 scraping $N1 and $N2"
mkdir -p "$IT_TMP/prom"
cat >"$IT_TMP/prom.yml" <<EOF
global: { scrape_interval: 1s, evaluation_interval: 1s }
scrape_configs:
  - job_name: weft
    static_configs: [ { targets: ['$N1:15020', '$N2:15020'] } ]
EOF
promtool check config "$IT_TMP/prom.yml" >/dev/null || fail "promtool check config"
ip netns exec "$LAB_NAME-net" prometheus --config.file="$IT_TMP/prom.yml" \
	--storage.tsdb.path="$IT_TMP/prom" --web.listen-address=10.250.0.1:19090 \
	--log.level=warn >"$IT_TMP/prom.log" 2>&1 &
PROM_PID=$!

# promql QUERY: the value of a scalar-valued query ("none" when empty).
promql() {
	ip netns exec "$LAB_NAME-net" curl -s --max-time 5 \
		--data-urlencode "query=$1" http://10.250.0.1:19090/api/v1/query |
		"$PY" -c 'import json,sys
d = json.load(sys.stdin)
r = d["data"]["result"] if d.get("status") == "success" else []
print("none" if not r else r[0]["value"][1])'
}
prom_is() {	# QUERY WANT
	[[ $(promql "$1" 2>/dev/null) == "$2" ]]
}
# Prometheus needs ~6 s to discover its targets (feasibility §7).
wait_for -t 30 prom_is 'count(up{job="weft"} == 1)' 2

# --- the traffic --------------------------------------------------------------
# calls POD EXPECTED-CODES URL...: one curl, one keep-alive connection.
calls() {
	local p=$1 want=$2 args=() u got
	shift 2
	for u in "$@"; do
		args+=(-o /dev/null "$u")
	done
	got=$(pod "$p" curl -s --max-time 20 -w '%{http_code} ' "${args[@]}" || true)
	assert_eq "${got% }" "$want" "status codes of $p -> ${1%/*}"
}
rep() {	# N WORD: WORD N times, space-separated
	local i out=()
	for ((i = 0; i < $1; i++)); do out+=("$2"); done
	echo "${out[*]}"
}
pretty "traffic: client -> api-v1 (api-1, across nodes), -> api-v2 (api-2, same node)"
urls1=() urls2=()
for i in 1 2 3 4 5 6 7; do urls1+=("http://$API1/"); done
urls1+=("http://$API1/status/404" "http://$API1/status/404")
for i in 1 2 3; do urls1+=("http://$API1/status/503"); done
calls tools/client "$(rep 7 200) 404 404 503 503 503" "${urls1[@]}"
for i in 1 2 3 4 5; do urls2+=("http://$API2/"); done
urls2+=("http://$API2/status/500" "http://$API2/status/500")
calls tools/client "$(rep 5 200) 500 500" "${urls2[@]}"
pretty "traffic: intruder -> api-v1, api-v2 (denied)"
calls tools/intruder "403 403 403 403" http://$API1/{a,b,c,d}
calls tools/intruder "403 403" http://$API2/{a,b}
T_END=$(date +%s)
# Nothing denied reached a pod.
if grep -q "peer=$IP_INTRUDER" "$(pod_log_file shop/api-1)" "$(pod_log_file shop/api-2)"; then
	fail "a denied request reached a pod"
fi

# --- promtool on every node ---------------------------------------------------
pretty "promtool check metrics"
for n in node-1 node-2; do
	node "$n" curl -sf http://127.0.0.1:15020/metrics >"$IT_TMP/$n.prom" ||
		fail "$n: GET /metrics"
	promtool check metrics <"$IT_TMP/$n.prom" >"$IT_TMP/$n.promtool" 2>&1 ||
		fail "$n: promtool check metrics: $(cat "$IT_TMP/$n.promtool")"
	# Histograms: cumulative buckets, +Inf = _count.
	"$PY" - "$IT_TMP/$n.prom" <<'EOF' || fail "$n: histogram buckets"
import re, sys
series = {}
for line in open(sys.argv[1]):
    m = re.match(r'weft_request_duration_seconds_(bucket|count)\{(.*)\} (\S+)$', line)
    if not m:
        continue
    labels = re.sub(r',?le="[^"]*"', '', m.group(2))
    le = re.search(r'le="([^"]*)"', m.group(2))
    series.setdefault(labels, {"b": [], "count": None})
    if m.group(1) == "bucket":
        series[labels]["b"].append((le.group(1), float(m.group(3))))
    else:
        series[labels]["count"] = float(m.group(3))
for k, s in series.items():
    vals = [v for _, v in s["b"]]
    assert vals == sorted(vals), ("not cumulative", k)
    assert s["b"][-1][0] == "+Inf" and s["b"][-1][1] == s["count"], ("+Inf != count", k)
    assert float(s["b"][0][0]) == 0.0001 and s["b"][-2][0] == "10", ("bounds", k)
EOF
done

# --- Prometheus: exactly the pattern ------------------------------------------
pretty "prometheus: the requests, by side and status"
# Both nodes scraped since the traffic ended (2 s: the last requests are
# recorded when their responses pass, before curl returns).
prom_settled() {
	local t
	t=$(promql 'min(timestamp(up{job="weft"}))') || return 1
	[[ $t != none ]] && (( ${t%.*} >= T_END + 2 ))
}
wait_for -t 20 prom_settled
# expect_prom QUERY WANT WHAT: equal (polled briefly).
expect_prom() {
	local deadline=$((SECONDS + 3)) got
	while :; do
		got=$(promql "$1" 2>/dev/null || echo error)
		[[ $got == "$2" ]] && return 0
		if (( SECONDS >= deadline )); then
			soft_fail "$3: $1 = $got, expected $2"
			return 0
		fi
		sleep 0.5
	done
}
C='source_namespace="tools",source_service_account="client",destination_namespace="shop",destination_service_account="api"'
I='source_namespace="tools",source_service_account="intruder"'
for dir in outbound inbound; do
	expect_prom "sum(weft_requests_total{direction=\"$dir\",$C,status_code=~\"2..\"})" 12 "$dir 200s"
	expect_prom "sum(weft_requests_total{direction=\"$dir\",$C,status_code=\"404\"})" 2 "$dir 404s"
	expect_prom "sum(weft_requests_total{direction=\"$dir\",$C,status_code=~\"5..\"})" 5 "$dir 5xx (failed)"
	expect_prom "sum(weft_requests_total{direction=\"$dir\",$C})" 19 "$dir all of client's"
	expect_prom "sum(weft_request_duration_seconds_count{direction=\"$dir\",$C})" 19 "$dir latencies"
done
# allowed (no 5xx, no proxy 403), failed, denied
expect_prom "sum(weft_requests_total{direction=\"outbound\",$C,status_code!~\"5..|0\"})" 14 "allowed"
expect_prom "sum(weft_requests_total{direction=\"outbound\",$I,status_code=\"403\"})" 6 "intruder's 403s"
expect_prom "sum(weft_policy_denials_total{direction=\"outbound\",$I})" 6 "denied"
expect_prom "sum(weft_requests_total{direction=\"inbound\",$I}) or vector(0)" 0 "nothing denied reached the callee's node"
expect_prom "sum(weft_policy_denials_total{$C}) or vector(0)" 0 "client never denied"
# per node: api-1's requests on node-2, api-2's on node-1
expect_prom "sum(weft_requests_total{direction=\"inbound\",$C,instance=\"$N2:15020\"})" 12 "node-2 served api-1's 12"
expect_prom "sum(weft_requests_total{direction=\"inbound\",$C,instance=\"$N1:15020\"})" 7 "node-1 served api-2's 7"
# one keep-alive connection per curl
expect_prom "sum(weft_tcp_connections_opened_total{direction=\"outbound\",$C})" 2 "client's connections"
expect_prom "sum(weft_tcp_connections_closed_total{direction=\"outbound\",$C})" 2 "closed"
expect_prom "sum(weft_tcp_connections_opened_total{direction=\"inbound\",$C})" 2 "connections at the pods' side"
expect_prom "sum(weft_tcp_sent_bytes_total{direction=\"outbound\",$C}) > 1000" \
	"$(promql "sum(weft_tcp_sent_bytes_total{direction=\"outbound\",$C})")" "bytes counted"
expect_prom "count(weft_certificate_expiry_timestamp_seconds{namespace=\"shop\",service_account=\"api\"} > time())" 2 \
	"api's certificate on both nodes, not expired"
expect_prom "sum(weft_nft_rule_packets_total{rule=\"mTLS tunnel to a local pod\"}) > 0" \
	"$(promql 'sum(weft_nft_rule_packets_total{rule="mTLS tunnel to a local pod"})')" "nft rule counters"

# --- the SMI TrafficMetrics API, with kubectl -----------------------------------
pretty "SMI TrafficMetrics API: kubectl get --raw from node-1"
KC=$(lab kubeconfig)
[[ -f $KC ]] || fail "weft-lab kubeconfig printed '$KC'"
smi() {	# PATH: the answer (10 minutes' window, the longest: the pattern
	# may be older than 30 s by the time a slow machine asks)
	node node-1 kubectl --kubeconfig "$KC" --cache-dir "$IT_TMP/kcache" \
		get --raw "/apis/metrics.smi-spec.io/v1alpha1$1"
}
# summary: one line per TrafficMetrics of a (list) answer:
#   KIND/NS/NAME [DIRECTION SIDE PEERKIND/PEERNS/PEERNAME] SUCCESS FAILURE
summary() {
	"$PY" -c '
import json, sys
d = json.load(sys.stdin)
items = d["items"] if d.get("kind") == "TrafficMetricsList" else [d]
out = []
for it in items:
    r = it["resource"]
    s = "%s/%s/%s" % (r["kind"], r.get("namespace", ""), r["name"])
    e = it.get("edge")
    if e:
        p = e["resource"]
        s += " %s %s %s/%s/%s" % (e["direction"], e["side"], p.get("kind", ""),
                                  p.get("namespace", ""), p.get("name", ""))
    m = {x["name"]: x for x in it["metrics"]}
    assert all(m[k]["unit"] == "ms" for k in m if k.endswith("latency")), m
    s += " %s %s" % (m["success_count"]["value"], m["failure_count"]["value"])
    out.append(s)
print("\n".join(sorted(out)))'
}
smi_is() {	# PATH WANT
	[[ $(smi "$1?t=10m" 2>/dev/null | summary 2>/dev/null) == "$2" ]]
}
expect_smi() {	# PATH WANT WHAT
	local deadline=$((SECONDS + 5)) got
	while ! smi_is "$1" "$2"; do
		if (( SECONDS >= deadline )); then
			got=$(smi "$1?t=10m" 2>&1 | summary 2>&1 || true)
			soft_fail "$3: GET $1 gave
$got
expected
$2"
			return 0
		fi
		sleep 0.5
	done
}
expect_smi /namespaces/tools/pods/client/edges \
"Pod/tools/client to client Pod/shop/api-1 9 3
Pod/tools/client to client Pod/shop/api-2 5 2" "client's edges (client side)"
expect_smi /namespaces/shop/pods/api-1/edges \
	"Pod/shop/api-1 from server Pod/tools/client 9 3" "api-1's edges (server side)"
expect_smi /namespaces/shop/pods/api-2/edges \
	"Pod/shop/api-2 from server Pod/tools/client 5 2" "api-2's edges (same node)"
expect_smi /namespaces/tools/pods/intruder/edges \
"Pod/tools/intruder to client Pod/shop/api-1 4 0
Pod/tools/intruder to client Pod/shop/api-2 2 0" "intruder's 403s (answers: successes, A-19)"
expect_smi /namespaces/shop/pods/api-1 "Pod/shop/api-1 9 3" "what api-1 served"
expect_smi /namespaces/shop/deployments/api "Deployment/shop/api 14 5" "deployment api (app label)"
expect_smi /namespaces/tools/deployments/client/edges \
	"Deployment/tools/client to client Deployment/shop/api 14 5" "deployment edges"
expect_smi /namespaces/shop "Namespace//shop 14 5" "namespace shop"
expect_smi /namespaces/shop/edges \
	"Namespace//shop from server Namespace//tools 14 5" "namespace edges"

# Shape details: default window, latency percentiles, kinds.
out=$(smi /namespaces/shop/pods/api-1)
"$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
assert d["kind"] == "TrafficMetrics" and d["apiVersion"] == "metrics.smi-spec.io/v1alpha1", d
assert d["window"] == "30s", d["window"]
assert d["edge"] is None
assert d["metadata"]["selfLink"] == "/apis/metrics.smi-spec.io/v1alpha1/namespaces/shop/pods/api-1"
' "$out" || fail "TrafficMetrics shape: $out"
out=$(smi "/namespaces/tools/pods/client/edges?t=10m")
"$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
for it in d["items"]:
    m = {x["name"]: x for x in it["metrics"]}
    for p in ("p50", "p90", "p99"):
        assert m[p + "_response_latency"]["unit"] == "ms", m
    q = lambda v: float(v[:-1]) / 1000 if v.endswith("m") else float(v)
    p50, p90, p99 = (q(m[p + "_response_latency"]["value"]) for p in ("p50", "p90", "p99"))
    assert 0 < p50 <= p90 <= p99 < 10000, (p50, p90, p99)
' "$out" || soft_fail "latency percentiles: $out"
code=$(node node-1 kubectl --kubeconfig "$KC" --cache-dir "$IT_TMP/kcache" \
	get --raw /apis/metrics.smi-spec.io/v1alpha1/namespaces/shop/pods/nope 2>&1 || true)
assert_match "$code" 'NotFound|not found' "unknown pod: 404"

# --- weft ctl top -------------------------------------------------------------
pretty "weft ctl top"
top=$(lab ctl top --window 10m --namespace shop)
echo "$top" >&2
[[ $top =~ tools/client\ +shop/api-1\ .*\ client\ .*\ 75\.00% ]] ||
	soft_fail "top: client -> api-1, 9 of 12 succeeded"
[[ $top =~ tools/client\ +shop/api-2\ .*\ client\ .*\ 71\.43% ]] ||
	soft_fail "top: client -> api-2, 5 of 7 succeeded"
top=$(lab ctl top --window 10m --side server)
echo "$top" >&2
[[ $top =~ tools/client\ +shop/api-1\ .*\ server\ .*\ 75\.00% ]] ||
	soft_fail "top --side server: api-1 served 9 of 12"

if (( ${#FAILS[@]} > 0 )); then
	printf '%s\n' "${FAILS[@]}" >&2
	fail "${#FAILS[@]} telemetry checks failed (listed above)"
fi
pretty "metrics: all counts exact"
