#!/bin/bash
# SMI access control and traffic specs, enforced at the destination
# (SPEC §3, §4; DESIGN §3, §5): the SMI conformance flows for access and
# specs - denied by default; allowed after a TCPRoute TrafficTarget; denied
# again after deleting it, over the client's still-open keep-alive
# connection; a path rule, then a method rule - and header filters (AND
# within an entry, OR across entries), explicit TCP ports with raw TCP,
# TCPRoute mixed with HTTPRouteGroup (A-1), sources of another namespace,
# each flow both across nodes and on one node, and a policy change while a
# request loop runs: no request that starts after the node reports the new
# generation sees the old decision.
#
#   tools/client 10.244.1.12 ─┐ node-1               node-2
#   shop/web     10.244.1.10 ─┤                        shop/api-1 10.244.2.10
#   shop/api-2   10.244.1.11 ─┘ (same node)            (across nodes)
#
# Denials are HTTP 403s wherever the client speaks HTTP (also when node-2
# refuses the tunnel's CONNECT); raw TCP denials are a reset; nothing
# denied reaches a pod.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init access
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml"

# status POD URL [curl args]: the HTTP status; 000 when none came.
status() {
	local p=$1 u=$2
	shift 2
	pod "$p" curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$u" || true
}
# expect CODE POD URL WHAT [curl args]
expect() {
	local want=$1 p=$2 u=$3 what=$4 got
	shift 4
	got=$(status "$p" "$u" "$@")
	assert_eq "$got" "$want" "$what ($p -> $u)"
}
# Both api pods: api-1 across nodes, api-2 on the client's node.
API_PODS="$IP_API1 $IP_API2"
where() { [[ $1 == "$IP_API1" ]] && echo "across nodes" || echo "same node"; }

# raw POD IP PORT: the first line a TCP echo sends back ("" if none).
raw() {
	pod "$1" sh -c "printf 'ping\n' | timeout 8 nc -N -w 5 $2 $3" 2>/dev/null | head -n1 || true
}

# policy NAME: apply the YAML on stdin (waits for every node's ack).
policy() {
	cat >"$IT_TMP/$1.yaml"
	lab apply "$IT_TMP/$1.yaml" >/dev/null || fail "apply $1"
}
unpolicy() { lab delete "$IT_TMP/$1.yaml" >/dev/null || fail "delete $1"; }

target() {	# NAME SOURCES-YAML RULES-YAML: a TrafficTarget for shop/api
	cat <<EOF
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: $1, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: shop}
  sources:
$2
  rules:
$3
EOF
}
CLIENT_SRC="  - {kind: ServiceAccount, name: client, namespace: tools}"

# A keep-alive client in tools/client (tools/ka-client.py), one per pod IP.
ka_start() {	# VAR IP
	local -n _c=$1
	coproc KA_PROC { pod tools/client "$PY" "$IT_DIR/tools/ka-client.py" "$2" 8080; }
	_c="${KA_PROC[0]} ${KA_PROC[1]} $KA_PROC_PID"
}
ka() {	# "RFD WFD PID" REQUEST...: "STATUS LOCALPORT"
	local fds=($1) line
	shift
	echo "$*" >&"${fds[1]}"
	read -r -t 20 line <&"${fds[0]}" || fail "keep-alive client: no answer to $*"
	echo "$line"
}
ka_stop() {
	local fds=($1)
	echo quit >&"${fds[1]}" || true
	wait "${fds[2]}" 2>/dev/null || true
}

pod_saw() { grep -q -- "http $2 $3 " "$(pod_log_file "$1")"; }

pretty "1. deny by default: HTTP gets 403, raw TCP a reset, the pod sees nothing"
for ip in $API_PODS; do
	expect 403 tools/client "http://$ip:8080/denied-by-default" "$(where "$ip"): no TrafficTarget"
	[[ -z $(raw tools/client "$ip" 9000) ]] || fail "$(where "$ip"): raw TCP without a TrafficTarget got an answer"
done
expect 403 tools/client "http://$VIP_API/denied-by-default" "through the Service VIP"
! pod_saw shop/api-1 GET /denied-by-default || fail "api-1 saw a denied request"
! pod_saw shop/api-2 GET /denied-by-default || fail "api-2 saw a denied request"
wait_for -t 10 log_has "$(node_log_file node-2)" "CONNECT ${IP_API1//./\\.}:8080 denied"
wait_for -t 10 log_has "$(node_log_file node-1)" "reason=denied answered=http-403"

pretty "2. a TCPRoute TrafficTarget allows; deleting it denies again on the open keep-alive connection"
{ echo "apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: any-port, namespace: shop}
spec:
  matches: {ports: []}
---"; target tcp-all "$CLIENT_SRC" "  - {kind: TCPRoute, name: any-port}"; } | policy tcp-all
for ip in $API_PODS; do
	expect 200 tools/client "http://$ip:8080/allowed" "$(where "$ip"): TCPRoute target"
	assert_match "$(raw tools/client "$ip" 9000)" "^hello from api-" "$(where "$ip"): raw TCP allowed"
done
ka_start KA1 "$IP_API1"
ka_start KA2 "$IP_API2"
r1=$(ka "$KA1" GET /ka-allowed)
r2=$(ka "$KA2" GET /ka-allowed)
assert_match "$r1" "^200 " "across nodes: keep-alive request allowed"
assert_match "$r2" "^200 " "same node: keep-alive request allowed"
# Also a raw TCP flow that stays open: it must be closed when revoked.
pod tools/client "$PY" -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9000), timeout=20)
s.sendall(b"ping\n"); s.recv(100)
print("open", flush=True)
try:
    while s.recv(100):
        pass
    print("closed")
except ConnectionResetError:
    print("reset")
except socket.timeout:
    print("still open")
' "$IP_API1" >"$IT_TMP/l4.out" 2>&1 &
l4pid=$!
wait_for -t 10 grep -q "^open" "$IT_TMP/l4.out"
unpolicy tcp-all
r1b=$(ka "$KA1" GET /ka-revoked)
r2b=$(ka "$KA2" GET /ka-revoked)
assert_eq "$r1b" "403 ${r1#* }" "across nodes: denied again, as a 403 on the same connection"
assert_eq "$r2b" "403 ${r2#* }" "same node: denied again, as a 403 on the same connection"
! pod_saw shop/api-1 GET /ka-revoked || fail "api-1 saw a revoked request"
wait "$l4pid" || true
assert_match "$(tail -n1 "$IT_TMP/l4.out")" "^(reset|closed)$" "an open raw TCP flow that lost its permission is closed"
ka_stop "$KA1"
ka_stop "$KA2"

pretty "3. a path rule, then a method rule (HTTPRouteGroup)"
routes='apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: api-routes, namespace: shop}
spec:
  matches:
  - name: status
    pathRegex: "/status/2[0-9]+"
  - name: post-echo
    pathRegex: "/echo$"
    methods: [POST]
---'
{ echo "$routes"; target http-path "$CLIENT_SRC" "  - {kind: HTTPRouteGroup, name: api-routes, matches: [status]}"; } | policy http-path
for ip in $API_PODS; do
	w=$(where "$ip")
	expect 200 tools/client "http://$ip:8080/status/200" "$w: path rule admits /status/200"
	expect 204 tools/client "http://$ip:8080/status/204?q=/other" "$w: tested without the query"
	expect 403 tools/client "http://$ip:8080/other" "$w: path rule denies /other"
	expect 403 tools/client "http://$ip:8080/x/status/200" "$w: the regex is anchored at the start"
	expect 403 tools/client "http://$ip:8080/echo" "$w: an entry the target does not select" -X POST -d x
	[[ -z $(raw tools/client "$ip" 9000) ]] || fail "$w: raw TCP under HTTP-only rules got an answer"
done
! pod_saw shop/api-1 GET /other || fail "api-1 saw a request the path rule denies"
! pod_saw shop/api-2 GET /other || fail "api-2 saw a request the path rule denies"
{ echo "$routes"; target http-path "$CLIENT_SRC" "  - {kind: HTTPRouteGroup, name: api-routes, matches: [post-echo]}"; } | policy http-path
for ip in $API_PODS; do
	w=$(where "$ip")
	expect 200 tools/client "http://$ip:8080/echo" "$w: method rule admits POST" -X POST -d x
	expect 403 tools/client "http://$ip:8080/echo" "$w: method rule denies GET"
	expect 403 tools/client "http://$ip:8080/status/200" "$w: the other entry is no longer selected"
done
unpolicy http-path

pretty "4. header filters: AND within an entry, OR across entries, values matched whole"
{ echo 'apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: api-headers, namespace: shop}
spec:
  matches:
  - name: beta-mobile
    headers:
    - x-beta: "yes|true"
    - user-agent: ".*Mobile.*"
  - name: admin
    headers:
      X-Role: admin
---'; target http-headers "$CLIENT_SRC" "  - {kind: HTTPRouteGroup, name: api-headers}"; } | policy http-headers
for ip in $API_PODS; do
	w=$(where "$ip")
	expect 200 tools/client "http://$ip:8080/h" "$w: both headers of one entry" -H "X-Beta: yes" -A "Foo Mobile Bar"
	expect 403 tools/client "http://$ip:8080/h" "$w: one header of two (AND)" -H "X-Beta: yes" -A curl
	expect 403 tools/client "http://$ip:8080/h" "$w: the other header alone" -A "Mobile"
	expect 200 tools/client "http://$ip:8080/h" "$w: another entry (OR), names case-insensitive" -H "x-role: admin"
	expect 403 tools/client "http://$ip:8080/h" "$w: a value matches whole, not in part" -H "X-Role: administrator"
	expect 403 tools/client "http://$ip:8080/h" "$w: no header" 
done
unpolicy http-headers

pretty "5. explicit TCP ports, raw TCP"
{ echo 'apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: echo-port, namespace: shop}
spec:
  matches: {ports: [9000]}
---'; target tcp-9000 "$CLIENT_SRC" "  - {kind: TCPRoute, name: echo-port}"; } | policy tcp-9000
for ip in $API_PODS; do
	w=$(where "$ip")
	assert_match "$(raw tools/client "$ip" 9000)" "^hello from api-" "$w: raw TCP to the listed port"
	out=$(pod tools/client sh -c "printf 'data' | timeout 8 nc -N -w 5 $ip 9001" 2>&1 || true)
	[[ -z $out ]] || fail "$w: the sink port 9001 is not listed, yet answered: $out"
	expect 403 tools/client "http://$ip:8080/h" "$w: HTTP to an unlisted port"
done
unpolicy tcp-9000

pretty "6. TCPRoute and HTTPRouteGroup in one target are ANDed (A-1)"
{ echo 'apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: http-port, namespace: shop}
spec:
  matches: {ports: [8080]}
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: status-only, namespace: shop}
spec:
  matches:
  - {name: status, pathRegex: "/status/", methods: [GET]}
---'; target mixed "$CLIENT_SRC" "  - {kind: TCPRoute, name: http-port}
  - {kind: HTTPRouteGroup, name: status-only}"; } | policy mixed
for ip in $API_PODS; do
	w=$(where "$ip")
	expect 200 tools/client "http://$ip:8080/status/200" "$w: port and request match"
	expect 403 tools/client "http://$ip:8080/other" "$w: the port alone is not enough"
	[[ -z $(raw tools/client "$ip" 9000) ]] || fail "$w: raw TCP admitted by a mixed target"
done

pretty "7. sources: another namespace is named; one that is not listed is denied"
expect 403 shop/web "http://$IP_API1:8080/status/200" "shop/web is not a source (across nodes)"
expect 403 shop/web "http://$IP_API2:8080/status/200" "shop/web is not a source (same node)"
target mixed "$CLIENT_SRC
  - {kind: ServiceAccount, name: web}" "  - {kind: TCPRoute, name: http-port}
  - {kind: HTTPRouteGroup, name: status-only}" | policy mixed-web
expect 200 shop/web "http://$IP_API1:8080/status/200" "a source without namespace is the target's (A-6)"
unpolicy mixed-web
unpolicy mixed

pretty "8. namespace modes: unauthenticated callers (A-4), permissive (A-28)"
# legacy/old (node-2) is outside the mesh: it has no identity.
for ip in $API_PODS; do
	expect 403 legacy/old "http://$ip:8080/unauth" "unauthenticated (legacy/old, node-2) to $ip: denied by default"
done
ns_shop() {	# LABEL=VALUE...: namespace shop with these labels besides the mesh one
	{
		echo "apiVersion: v1
kind: Namespace
metadata:
  name: shop
  labels:
    weft.io/mesh: enabled"
		local kv
		for kv in "$@"; do echo "    ${kv%%=*}: ${kv#*=}"; done
	} | policy ns-shop
}
ns_shop weft.io/unauthenticated=allow
for ip in $API_PODS; do
	expect 200 legacy/old "http://$ip:8080/unauth" "unauthenticated=allow admits a caller without identity"
done
expect 403 tools/client "http://$IP_API1:8080/unauth" "but no meshed caller without a TrafficTarget"
ns_shop weft.io/access-mode=permissive
for ip in $API_PODS; do
	expect 200 tools/client "http://$ip:8080/permissive" "$(where "$ip"): permissive admits a meshed caller"
	assert_match "$(raw tools/client "$ip" 9000)" "^hello from api-" "$(where "$ip"): permissive admits raw TCP"
	expect 200 legacy/old "http://$ip:8080/permissive" "permissive admits a caller without identity"
done
ns_shop
expect 403 tools/client "http://$IP_API1:8080/enforce-again" "enforce again"

pretty "9. a policy change while a request loop runs"
{ echo 'apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: any-port, namespace: shop}
spec:
  matches: {ports: []}
---'; target loop "$CLIENT_SRC" "  - {kind: TCPRoute, name: any-port}"; } >"$IT_TMP/loop.yaml"
cp "$IT_TMP/loop.yaml" "$IT_TMP/loop-deny.yaml"
stop=$IT_TMP/stop
pod tools/client "$PY" -c '
import http.client, os, sys, time
stop, hosts = sys.argv[1], sys.argv[2:]
conns = {h: http.client.HTTPConnection(h, 8080, timeout=10) for h in hosts}
while not os.path.exists(stop):
    for h, c in conns.items():
        t0 = time.time()
        try:
            c.request("GET", "/loop"); r = c.getresponse(); r.read(); st = r.status
        except Exception as e:
            st = "ERR-" + type(e).__name__
            c.close()
        print("%.6f %.6f %s %s" % (t0, time.time(), h, st), flush=True)
' "$stop" $API_PODS >"$IT_TMP/loop.out" 2>&1 &
looppid=$!
marks=()
# Each change is marked by when it began and when `weft-lab apply` returned
# (every node reported the new generation).  A request that starts in
# between may see either decision; one that starts after must see the new.
for round in 1 2 3; do
	t0=$(date +%s.%N)
	lab apply "$IT_TMP/loop.yaml" >/dev/null || fail "apply"
	marks+=("$t0 $(date +%s.%N) 200")
	sleep 0.5
	t0=$(date +%s.%N)
	lab delete "$IT_TMP/loop-deny.yaml" >/dev/null || fail "delete"
	marks+=("$t0 $(date +%s.%N) 403")
	sleep 0.5
done
touch "$stop"
wait "$looppid" || true
printf '%s\n' "${marks[@]}" >"$IT_TMP/marks"
"$PY" - "$IT_TMP/loop.out" "$IT_TMP/marks" <<'EOF' || fail "stale decisions in the request loop (see above)"
import sys
reqs = [l.split() for l in open(sys.argv[1]) if l.strip()]
marks = [(float(a), float(b), c) for a, b, c in
         (l.split() for l in open(sys.argv[2]) if l.strip())]
bad, checked, either = [], 0, 0
for t0, t1, host, st in reqs:
    t0 = float(t0)
    want = None
    for began, done, code in marks:
        if t0 >= done:
            want = code             # in force: every node has it
        elif t0 >= began:
            want = "either"         # changing while the request started
    if want is None:
        continue
    if want == "either":
        either += 1
        continue
    checked += 1
    if st != want:
        bad.append((t0, host, st, want))
print("requests checked: %d (and %d during a change); stale: %d" % (
    checked, either, len(bad)), file=sys.stderr)
for b in bad[:10]:
    print("  request at %.6f to %s got %s, policy said %s" % b, file=sys.stderr)
sys.exit(1 if bad or checked < 20 else 0)
EOF
grep -q "ERR" "$IT_TMP/loop.out" && fail "a request of the loop failed: $(grep ERR "$IT_TMP/loop.out" | head -3)"
pretty "access control: all flows as specified"
