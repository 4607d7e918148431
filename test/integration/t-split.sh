#!/bin/bash
# Services and SMI TrafficSplit, applied by the client's node (SPEC §5, §8.3;
# A-14 ... A-18; DESIGN §3):
#   1. the SMI conformance split flow, 50 sequential requests per step over
#      ONE keep-alive connection: no split -> both backends; 1/0 -> 50/0;
#      0/1 -> 0/50; 75/25 and 25/75 favour the heavier; a v1alpha1 split
#      with Quantity weights; every weight 0 -> 503; the connection is the
#      same one throughout (weights change without dropping it);
#   2. a header-gated canary (`matches`), other requests to the catch-all;
#   3. a TCP (not HTTP) service split per connection; with only a split
#      that has `matches`, TCP goes to the root service;
#   4. ports whose name declares no protocol: HTTP is sniffed and split
#      per request, a server-first protocol is balanced per connection;
#   5. an endpoint killed during a request loop, on the client's node and
#      across nodes: no request fails once it is ejected, none that was
#      sent is replayed (every path reached a pod at most once), and the
#      endpoint serves again after it comes back;
#   6. `weft ctl service` shows endpoints, the split and recent shares.
#
#   tools/client 10.244.1.12 ─ node-1 ─ shop/front-v1 10.244.1.50 (same node)
#                                 └─ mTLS tunnel ─ node-2 ─ shop/front-v2 10.244.2.50
#   Service shop/front (http 80, tcp-echo 9000, 8000, 9100) -> front-v{1,2}
#   Services shop/front-v1, shop/front-v2: the split's backends
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
no_weft && skip "needs weft (WEFT_LAB_NO_WEFT=1)"
lab_init split
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" \
	"$EXAMPLES/policy.yaml" "$IT_DIR/split.yaml"

N1LOG=$(node_log_file node-1)
N2LOG=$(node_log_file node-2)
wait_for -t 20 log_has "$N1LOG" "identity spiffe://cluster.local/ns/tools/sa/client: certificate issued"
wait_for -t 20 log_has "$N2LOG" "identity spiffe://cluster.local/ns/shop/sa/front: certificate issued"

# jget JSON PATH...: a field of a JSON document ("" if absent).
jget() {
	"$PY" -c '
import json, sys
v = json.loads(sys.argv[1])
for k in sys.argv[2:]:
    v = v.get(k, {}) if isinstance(v, dict) else {}
print(v if v != {} else 0)' "$@"
}

# split NAME VERSION BACKEND:WEIGHT...: apply TrafficSplit shop/NAME for
# root front (waits for every node's ack: the next request sees it).
split() {
	local name=$1 ver=$2 b
	shift 2
	{
		echo "apiVersion: split.smi-spec.io/$ver"
		echo "kind: TrafficSplit"
		echo "metadata: {name: $name, namespace: shop}"
		echo "spec:"
		echo "  service: front"
		echo "  backends:"
		for b in "$@"; do
			echo "  - {service: ${b%%:*}, weight: ${b#*:}}"
		done
	} >"$IT_TMP/split-$name.yaml"
	lab apply "$IT_TMP/split-$name.yaml" >/dev/null || fail "apply split $name"
}
unsplit() { lab delete "$IT_TMP/split-$1.yaml" >/dev/null || fail "delete split $1"; }

# The keep-alive client (tools/split-client.py) in tools/client.
coproc SC { pod tools/client "$PY" "$IT_DIR/tools/split-client.py" front.shop 80; }
SC_IN=${SC[1]}
SC_OUT=${SC[0]}
# sc get N [Header:Value]: one JSON line.
sc() {
	local line
	echo "$*" >&"$SC_IN"
	read -r -t 120 line <&"$SC_OUT" || fail "split client: no answer to '$*'"
	echo "$line"
}
LPORT=
# step WHAT N WANT_V1 WANT_V2 [header]: N requests; WANT_* are exact counts,
# or "+" (at least one), or "<"/">" (v1 fewer/more than v2).  Every one must
# be a 200 on the same client connection.
step() {
	local what=$1 n=$2 w1=$3 w2=$4 r v1 v2 ok200 lport
	shift 4
	r=$(sc get "$n" "$@")
	v1=$(jget "$r" pods front-v1)
	v2=$(jget "$r" pods front-v2)
	ok200=$(jget "$r" status 200)
	lport=$(jget "$r" lport)
	pretty "$what: front-v1 $v1, front-v2 $v2 (of $n)"
	assert_eq "$ok200" "$n" "$what: every request answered 200 ($r)"
	assert_eq "$(jget "$r" reconnects)" 0 "$what: no new client connection"
	[[ -z $LPORT ]] || assert_eq "$lport" "$LPORT" "$what: the same keep-alive connection"
	LPORT=$lport
	case $w1 in
	+) (( v1 > 0 && v2 > 0 )) || fail "$what: both backends should serve ($v1/$v2)" ;;
	'<') (( v1 < v2 )) || fail "$what: front-v2 should get more ($v1/$v2)" ;;
	'>') (( v1 > v2 )) || fail "$what: front-v1 should get more ($v1/$v2)" ;;
	*) assert_eq "$v1/$v2" "$w1/$w2" "$what: front-v1/front-v2" ;;
	esac
}

pretty "1. the conformance split flow, one keep-alive connection"
step "no split" 50 + +
split front v1alpha4 front-v1:1 front-v2:0
step "weights 1/0" 50 50 0
split front v1alpha4 front-v1:0 front-v2:1
step "weights 0/1" 50 0 50
split front v1alpha4 front-v1:75 front-v2:25
step "weights 75/25" 50 '>' ''
split front v1alpha4 front-v1:25 front-v2:75
step "weights 25/75" 50 '<' ''
split front v1alpha1 front-v1:1500m 'front-v2:"0"'
step "v1alpha1 Quantities 1500m/\"0\"" 50 50 0
split front v1alpha2 front-v1:0 front-v2:3
step "v1alpha2 0/3" 50 0 50
split front v1alpha4 front-v1:0 front-v2:0
r=$(sc get 5)
assert_eq "$(jget "$r" status 503)" 5 "every weight 0: 503 ($r)"
assert_eq "$(jget "$r" lport)" "$LPORT" "after the 503s: the same connection"
wait_for -t 5 log_has "$N1LOG" "GET 503: every weight of TrafficSplit shop/front is 0"
split front v1alpha4 front-v1:1 front-v2:0
step "weights 1/0 again, after the 503s" 50 50 0

pretty "2. a header-gated canary (matches), the rest to the catch-all split"
cat >"$IT_TMP/canary.yaml" <<'EOF'
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: canary-testers, namespace: shop}
spec:
  matches:
  - name: testers
    headers:
    - x-canary: "yes"
---
apiVersion: split.smi-spec.io/v1alpha3
kind: TrafficSplit
metadata: {name: front-canary, namespace: shop}
spec:
  service: front
  matches:
  - {kind: HTTPRouteGroup, name: canary-testers}
  backends:
  - {service: front-v2, weight: 1}
EOF
lab apply "$IT_TMP/canary.yaml" >/dev/null || fail "apply canary"
step "x-canary: yes" 30 0 30 "x-canary:yes"
step "no header" 30 30 0
step "x-canary: no" 30 30 0 "x-canary:no"
echo quit >&"$SC_IN"
wait "$SC_PID" 2>/dev/null || true

pretty "3. TCP (weft-echo tcp) split per connection"
tcpsplit() {	# WHAT N WANT_V1 WANT_V2 [PORT]
	local r v1 v2
	r=$(pod tools/client "$PY" "$IT_DIR/tools/split-client.py" --tcp front.shop "${5:-9000}" "$2")
	v1=$(jget "$r" pods front-v1)
	v2=$(jget "$r" pods front-v2)
	pretty "$1: front-v1 $v1, front-v2 $v2 (of $2 connections)"
	assert_eq "$(jget "$r" errors)" 0 "$1: every connection greeted ($r)"
	if [[ $3 == + ]]; then
		(( v1 > 0 && v2 > 0 )) || fail "$1: both backends should serve ($v1/$v2)"
	else
		assert_eq "$v1/$v2" "$3/$4" "$1: front-v1/front-v2"
	fi
}
tcpsplit "TCP, catch-all 1/0" 20 20 0
split front v1alpha4 front-v1:0 front-v2:1
tcpsplit "TCP, catch-all 0/1" 20 0 20
split front v1alpha4 front-v1:1 front-v2:1
tcpsplit "TCP, catch-all 1/1" 40 + +
unsplit front
tcpsplit "TCP, only a split with matches: the root service" 40 + +

pretty "4. ports of no declared protocol: sniffed"
split front v1alpha4 front-v1:0 front-v2:1
coproc SN { pod tools/client "$PY" "$IT_DIR/tools/split-client.py" front.shop 8000; }
echo "get 30" >&"${SN[1]}"
read -r -t 60 r <&"${SN[0]}" || fail "sniffed port: no answer"
echo quit >&"${SN[1]}"
wait "$SN_PID" 2>/dev/null || true
assert_eq "$(jget "$r" pods front-v2)/$(jget "$r" reconnects)" "30/0" \
	"HTTP on an undeclared port: split per request, one connection ($r)"
tcpsplit "server-first TCP on an undeclared port (catch-all 0/1)" 10 0 10 9100
unsplit front
lab delete "$IT_TMP/canary.yaml" >/dev/null || fail "delete canary"

pretty "5. an endpoint killed during a request loop"
lines_ge() { (( $(wc -l <"$1") >= $2 )); }	# FILE N, for wait_for
# killrun POD NODE: loop on one keep-alive connection; kill POD's HTTP
# server mid-loop (SIGKILL), go on, bring it back, go on until it serves
# again.  Checks: failures only at the kill, none after; no path reached a
# pod twice; every 200 reached a pod exactly once.
killrun() {
	local victim=$1 other=$2 out=$IT_TMP/loop-$1.out stop=$IT_TMP/stop-$1 pid at
	rm -f "$stop"
	pod tools/client "$PY" "$IT_DIR/tools/split-client.py" --loop front.shop 80 "kill-$victim" "$stop" >"$out" &
	local lpid=$!
	wait_for -t 30 lines_ge "$out" 100
	pid=$(lab pid "shop/$victim")
	local before
	before=$(wc -l <"$out")
	kill -9 "$pid"
	while pid_alive "$pid"; do sleep 0.01; done
	at=$(wc -l <"$out")
	pretty "killed shop/$victim (pid $pid) between requests $before and $((at + 1))"
	wait_for -t 30 lines_ge "$out" $((at + 300))
	lab restart "shop/$victim" >/dev/null || fail "restart $victim"
	local back
	back=$(wc -l <"$out")
	# back in service once its ejection ends (at most 30 s)
	wait_for -t 45 "$PY" -c '
import sys
back, victim = int(sys.argv[2]), sys.argv[3]
for line in open(sys.argv[1]):
    w = line.split()
    if len(w) == 3 and int(w[0]) > back and w[2] == victim:
        sys.exit(0)
sys.exit(1)' "$out" "$back" "$victim"
	touch "$stop"
	wait "$lpid" || true
	"$PY" - "$out" "$before" "$at" "$(pod_log_file "shop/$victim")" \
	    "$(pod_log_file "shop/$other")" "kill-$victim" <<'EOF' || fail "$victim: see above"
import collections, re, sys
out, before, at, logs, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:6], sys.argv[6]
reqs = [l.split() for l in open(out) if len(l.split()) == 3]
seen = collections.Counter()
pat = re.compile(r"http GET /(%s-\d+) " % re.escape(prefix))
for f in logs:
    for line in open(f, errors="replace"):
        m = pat.search(line)
        if m:
            seen[m.group(1)] += 1
bad = []
fails = [(int(i), s) for i, s, p in reqs if s != "200"]
for i, s in fails:
    # only a request in flight when the pod died may fail
    if not (before <= i <= at + 1):
        bad.append("request %d failed (%s) outside the kill window %d..%d" % (i, s, before, at + 1))
# Requests the dying pod had already taken (in flight, or accepted in the
# instant before the kernel tore its sockets down) fail with a 502 and are
# never replayed; the endpoint is ejected at its first refusal.  A few of
# them, never more than the kill window holds.
if len(fails) > 3:
    bad.append("%d requests failed at the kill (at most 3): %s" % (len(fails), fails))
for i, s, p in reqs:
    n = seen["%s-%s" % (prefix, i)]
    if n > 1:
        bad.append("request %s reached a pod %d times (replayed)" % (i, n))
    if s == "200" and n != 1:
        bad.append("request %s answered 200 but pods logged it %d times" % (i, n))
print("%d requests, %d failed %s, %d logged by the pods" % (len(reqs), len(fails), fails, sum(seen.values())))
for b in bad[:20]:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
EOF
}
killrun front-v1 front-v2
wait_for -t 5 log_has "$N1LOG" "endpoint 10\\.244\\.1\\.50:8080 failed \\(upstream-refused\\): ejected"
killrun front-v2 front-v1
wait_for -t 5 log_has "$N1LOG" "endpoint 10\\.244\\.2\\.50:8080 failed \\(upstream-refused\\): ejected"

pretty "6. weft ctl service"
split front v1alpha4 front-v1:3 front-v2:1
pod tools/client "$PY" - <<'EOF' || fail "requests for the shares"
import http.client
c = http.client.HTTPConnection("front.shop", 80, timeout=10)
for i in range(200):
    c.request("GET", "/share-%d" % i)
    c.getresponse().read()
EOF
# The nodes push every second.  A 10 s window holds these 200 requests and
# none of section 1's (the loops of section 5 ran without a split).
wait_for -t 20 sh -c "'$WEFT_LAB' --name '$LAB_NAME' ctl service shop/front --window 10s | grep -q 'requests in the last 10s: 200\$'"
out=$(lab ctl service shop/front --window 10s)
echo "$out" >&2
assert_match "$out" "front-v1 +10\\.244\\.1\\.50:8080 +node-1 +ready" "ctl: endpoint front-v1"
assert_match "$out" "front-v2 +10\\.244\\.2\\.50:8080 +node-2 +ready" "ctl: endpoint front-v2"
assert_match "$out" "TrafficSplit shop/front" "ctl: the split"
"$PY" - "$out" <<'EOF' || fail "ctl: shares"
import re, sys
sh = dict(re.findall(r"(front-v[12]) +weight \d+ .*share ([0-9.]+)%", sys.argv[1]))
v1, v2 = float(sh.get("front-v1", 0)), float(sh.get("front-v2", 0))
print("shares: front-v1 %.1f%%, front-v2 %.1f%%" % (v1, v2))
sys.exit(0 if 60 <= v1 <= 90 and abs(v1 + v2 - 100) < 0.5 else 1)
EOF
unsplit front
pretty "t-split: ok"
