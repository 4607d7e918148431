#!/bin/bash
# `weft ctl explain` (docs/policy.md): the controller answers allow / deny /
# http for a caller and a destination pod with the policy that pod's node
# enforces, names the TrafficTarget and rule that decided or the reason, and
# follows `weft-lab apply` at once.  Exit status 0 allow, 1 deny, 2 error,
# 3 "per request".
#
#   tools/client 10.244.1.12 ── node-1 ── br0 (controller) ── node-2 ── shop/api-1 10.244.2.10 (sa api)
#   shop/web, shop/api-2 (sa api) on node-1                      legacy/old (not meshed)
#
#   shop/api-readers: tools/client -> sa shop/api, TCPRoute http-port (8080)
#                     AND HTTPRouteGroup api-routes match read (GET /v1/...)
#   shop/web-echo:    shop/web -> sa shop/api, TCPRoute echo-port (9000)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
no_weft && skip "needs weft (WEFT_LAB_NO_WEFT=1)"
"$WEFT_BIN" ctl explain --help >/dev/null 2>&1 ||
	skip "this weft has no 'ctl explain'"
lab_init ex
trap cleanup EXIT
it_tmp

cat >"$IT_TMP/policy.yaml" <<'EOF'
apiVersion: specs.smi-spec.io/v1alpha4
kind: HTTPRouteGroup
metadata: {name: api-routes, namespace: shop}
spec:
  matches:
  - name: read
    pathRegex: "/v1/"
    methods: [GET]
  - name: admin
    pathRegex: "/admin"
    headers:
    - x-role: "admin"
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: http-port, namespace: shop}
spec:
  matches:
    ports: [8080]
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: TCPRoute
metadata: {name: echo-port, namespace: shop}
spec:
  matches:
    ports: [9000]
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: api-readers, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: shop}
  rules:
  - {kind: TCPRoute, name: http-port}
  - {kind: HTTPRouteGroup, name: api-routes, matches: [read]}
  sources:
  - {kind: ServiceAccount, name: client, namespace: tools}
---
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: web-echo, namespace: shop}
spec:
  destination: {kind: ServiceAccount, name: api, namespace: shop}
  rules:
  - {kind: TCPRoute, name: echo-port}
  sources:
  - {kind: ServiceAccount, name: web, namespace: shop}
EOF

lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" \
	"$IT_TMP/policy.yaml"

# explain WANT-STATUS ARGS...: weft ctl explain ARGS; output in $OUT.
explain() {
	local want=$1 rc=0
	shift
	OUT=$(lab ctl explain "$@" 2>&1) || rc=$?
	printf '$ weft ctl explain %s\n%s\n' "$*" "$OUT" >&2
	(( rc == want )) || fail "explain $*: exit $rc, expected $want"
}
first_line() { head -n 1 <<<"$OUT"; }
has() { grep -qF -- "$1" <<<"$OUT" || fail "explain output lacks '$1'"; }

pretty "1. an HTTP request the rules admit: allow, with target and match"
explain 0 --from tools/client --to shop/api-1 --port 8080 --method GET --path /v1/accounts
assert_eq "$(first_line)" allow "decision"
has "TrafficTarget  shop/api-readers"
has "rule           HTTPRouteGroup shop/api-routes match read"
has "connection     http"
# the query string is not part of the tested path (A-3)
explain 0 --from tools/client --to shop/api-1 --port 8080 --path '/v1/x?next=/admin'
# the same identity on the other node: policy follows the ServiceAccount
explain 0 --from tools/client --to shop/api-2 --port 8080 --path /v1/x

pretty "2. requests the rules do not admit: deny, with the reason"
explain 1 --from tools/client --to shop/api-1 --port 8080 --method GET --path /admin
assert_eq "$(first_line)" deny "decision"
has "no HTTPRouteGroup match admits GET /admin"
explain 1 --from tools/client --to shop/api-1 --port 8080 --method POST --path /v1/x
has "no HTTPRouteGroup match admits POST /v1/x"
explain 1 --from tools/client --to shop/api-1 --port 8080 --path /admin --header x-role=admin
has "no HTTPRouteGroup match admits GET /admin"

pretty "3. no request given where HTTP rules apply: http, exit 3"
explain 3 --from tools/client --to shop/api-1 --port 8080
assert_eq "$(first_line)" http "decision"
has "each request is checked"

pretty "4. ports (A-1: TCPRoute AND HTTPRouteGroup), L4 grants, UDP"
explain 1 --from tools/client --to shop/api-1 --port 9000
has "port 9000 not in TCPRoute shop/http-port"
explain 1 --from tools/client --to shop/api-1 --port 9000 --path /v1/x
has "port 9000 not in TCPRoute shop/http-port"
explain 0 --from shop/web --to shop/api-1 --port 9000
has "TrafficTarget  shop/web-echo"
has "rule           TCPRoute shop/echo-port"
# a TCPRoute-only grant covers HTTP on its port as well
explain 0 --from shop/web --to shop/api-1 --port 9000 --method DELETE --path /x
explain 1 --from shop/web --to shop/api-1 --port 8080
has "port 8080 not in TCPRoute shop/echo-port"
explain 1 --from tools/client --to shop/api-1 --port 8080 --proto udp
has "has no UDPRoute rules"

pretty "5. who is not listed, nobody selected, unauthenticated, unmeshed"
explain 1 --from shop/api --to shop/api-1 --port 8080
has "source shop/api is not a source of any TrafficTarget for shop/api"
explain 1 --from tools/client --to shop/web --port 8080
has "no TrafficTarget selects shop/web"
explain 1 --from unauthenticated --to shop/api-1 --port 8080
has "unauthenticated caller"
explain 0 --from tools/client --to legacy/old --port 8080
has "not in the mesh"

pretty "6. errors: unknown pod, usage (exit 2)"
explain 2 --from tools/client --to shop/nope --port 8080
has "no pod shop/nope"
explain 2 --from tools/client --to shop/api-1
explain 2 --from client --to shop/api-1 --port 8080
has "from: expected NS/SA"
explain 2 --from tools/client --to shop/api-1 --port 53 --proto udp --path /
BUNDLE=$LAB_STATE/controller/ca-bundle.pem
code=$(lab exec net -- curl -sS --max-time 5 --cacert "$BUNDLE" -o /dev/null -w '%{http_code}' \
	"https://10.250.0.1:15010/v1/explain?from=tools/client&to=shop/api-1&port=8080") || true
assert_eq "$code" 401 "explain without a token"

pretty "7. explain follows the current policy (weft-lab apply)"
sed -e 's/matches: \[read\]/matches: [read, admin]/' \
	"$IT_TMP/policy.yaml" >"$IT_TMP/policy2.yaml"
lab apply "$IT_TMP/policy2.yaml" >&2
explain 0 --from tools/client --to shop/api-1 --port 8080 --path /admin --header X-Role=admin
has "rule           HTTPRouteGroup shop/api-routes match admin"
explain 1 --from tools/client --to shop/api-1 --port 8080 --path /admin --header x-role=user
# a missing route object grants nothing (SPEC §3.2.7)
sed -e 's/name: http-port}/name: no-such-port}/' \
	"$IT_TMP/policy2.yaml" >"$IT_TMP/policy3.yaml"
lab apply "$IT_TMP/policy3.yaml" >&2
explain 1 --from tools/client --to shop/api-1 --port 8080 --path /v1/x
has "TCPRoute shop/no-such-port does not exist"

pretty "explain: every answer as expected"
