#!/bin/bash
# The controller's Kubernetes source (DESIGN §7, issue 7) against
# test/fakeapi/fakeapi.py, a fake API server that speaks the real list/watch
# protocol over HTTPS: resourceVersion ordering, bookmarks, 410 Gone after
# compaction, watch timeouts, chunked bodies cut at random places,
# limit/continue, TokenReview, Lease.
#
#   fakeapi (127.0.0.1, HTTPS, bearer token)
#      ^ list/watch, TokenReview, Lease          ^ Lease
#   controller A (127.0.0.1:$PA) ---------- controller B (127.0.0.1:$PB)
#      ^ curl as node-1 / node-2 (projected tokens), as admin
#
#  1. first sync: objects of every kind; EndpointSlice readiness; SMI kinds
#     at the newest served version
#  2. watch: changes reach the snapshot
#  3. watch timeouts and bookmarks: watches end and resume from the
#     bookmark's resourceVersion, without a relist
#  4. a connection cut inside a chunk: resume from the last version, no
#     relist, nothing lost
#  5. 410 Gone after compaction: relist, nothing lost
#  6. 1,000 pod events converge to the right snapshot (time reported)
#  7. an expired continue token (410 on page 2): the list starts over
#  8. node bootstrap: TokenReview, binding to the pod's node; a token of
#     another node, audience, service account, or of a deleted pod is
#     refused; (root) a real `weft node` in a network namespace bootstraps
#     with its token file and keeps working when the token rotates
#  9. leader election: the follower answers 503; SIGKILL of the leader:
#     the follower takes over after the lease expires; SIGTERM: the lease
#     is released and taken over at once
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for t in openssl curl "$PY"; do
	command -v "$t" >/dev/null || skip "needs $t"
done
"$PY" -c 'import yaml' 2>/dev/null || skip "needs python3-yaml"
[[ -x $WEFT_BIN ]] || skip "no weft binary at $WEFT_BIN"
"$WEFT_BIN" controller --help 2>&1 | grep -q -- '--source kubernetes' ||
	skip "this weft has no kubernetes source"

LAB_STATE=	# no lab here: cleanup has nothing to dump
FAKE=$IT_TOP/test/fakeapi/fakeapi.py
CRDS=$IT_TOP/deploy/kubernetes/crds
it_tmp
D=$IT_TMP
PIDS=()
k8s_cleanup() {
	local rc=$? p
	set +e
	if (( rc != 0 && rc != 77 )); then
		# whole logs for a post-mortem, next to the test's own
		mkdir -p "$WEFT_BUILD_DIR/test/integration/t-k8s-source.logs" &&
			cp "$D"/*.log "$WEFT_BUILD_DIR/test/integration/t-k8s-source.logs/"
		for f in "$D"/*.log; do
			[[ -f $f ]] || continue
			echo "---- ${f##*/} (last 40 lines) ----" >&2
			tail -n 40 "$f" >&2
		done
	fi
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
	done
	for p in "${PIDS[@]}"; do
		wait "$p" 2>/dev/null
	done
	[[ -z ${NETNS:-} ]] || ip netns del "$NETNS" 2>/dev/null
	(exit $rc)
	cleanup
}
trap k8s_cleanup EXIT

free_port() {
	"$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# pyq EXPR: evaluate EXPR with d = the JSON on stdin; print the result
pyq() {
	"$PY" -c 'import json, sys; d = json.load(sys.stdin); r = eval(sys.argv[1]); print(json.dumps(r) if isinstance(r, (dict, list, bool)) or r is None else r)' "$1"
}

pretty "0. certificates, the fake API server, the mesh CA"
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$D/api-ca.key" -out "$D/api-ca.crt" -days 2 -subj "/CN=fakeapi-ca" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$D/api.key" -out "$D/api.csr" -subj "/CN=fakeapi" 2>/dev/null
openssl x509 -req -in "$D/api.csr" -CA "$D/api-ca.crt" -CAkey "$D/api-ca.key" \
	-CAcreateserial -days 2 -out "$D/api.crt" -extfile <(printf '%s\n' \
	"subjectAltName=IP:127.0.0.1" "basicConstraints=CA:FALSE" \
	"extendedKeyUsage=serverAuth") 2>/dev/null
# one mesh CA for both controller replicas, as the Secret gives them
openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$D/mesh-ca.key" -out "$D/mesh-ca.crt" -days 2 \
	-subj "/O=cluster.local/CN=t-k8s mesh CA" \
	-addext "basicConstraints=critical,CA:TRUE" \
	-addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
chmod 600 "$D/mesh-ca.key"

ADMIN=api-admin-$$
cat >"$D/seed.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {weft.io/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: weft-system}
---
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
spec: {podCIDR: 10.244.2.0/24}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: web, namespace: shop}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: api, namespace: shop}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: db, namespace: shop}}
- {apiVersion: v1, kind: ServiceAccount, metadata: {name: weft-node, namespace: weft-system}}
- apiVersion: v1
  kind: Pod
  metadata: {name: web-1, namespace: shop, labels: {app: web}}
  spec: {nodeName: node-1, serviceAccountName: web, containers: [{name: app}]}
  status: {podIP: 10.244.1.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: api-1, namespace: shop, labels: {app: api}}
  spec: {nodeName: node-2, serviceAccountName: api, containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.244.2.10}
- apiVersion: v1
  kind: Pod
  metadata: {name: api-2, namespace: shop, labels: {app: api}}
  spec: {nodeName: node-1, serviceAccountName: api, containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]}
  status: {podIP: 10.244.1.11}
- apiVersion: v1
  kind: Pod
  metadata: {name: db-1, namespace: shop, labels: {app: db}}
  spec: {nodeName: node-2, serviceAccountName: db, containers: [{name: db}]}
  status: {podIP: 10.244.2.11}
- apiVersion: v1
  kind: Pod
  metadata: {name: weft-node-a, namespace: weft-system}
  spec: {nodeName: node-1, serviceAccountName: weft-node, hostNetwork: true, containers: [{name: weft}]}
  status: {podIP: 10.0.0.1}
- apiVersion: v1
  kind: Pod
  metadata: {name: weft-node-b, namespace: weft-system}
  spec: {nodeName: node-2, serviceAccountName: weft-node, hostNetwork: true, containers: [{name: weft}]}
  status: {podIP: 10.0.0.2}
- apiVersion: v1
  kind: Service
  metadata: {name: api, namespace: shop}
  spec: {clusterIP: 10.96.0.10, selector: {app: api}, ports: [{name: http, port: 80, targetPort: http}]}
- apiVersion: discovery.k8s.io/v1
  kind: EndpointSlice
  metadata: {name: api-x7k2p, namespace: shop, labels: {kubernetes.io/service-name: api}}
  addressType: IPv4
  ports: [{name: http, port: 8080, protocol: TCP}]
  endpoints:
  - addresses: [10.244.2.10]
    conditions: {ready: true}
    targetRef: {kind: Pod, name: api-1, namespace: shop}
  - addresses: [10.244.1.11]
    conditions: {ready: false}
    targetRef: {kind: Pod, name: api-2, namespace: shop}
- apiVersion: access.smi-spec.io/v1alpha3
  kind: TrafficTarget
  metadata: {name: web-to-api, namespace: shop}
  spec:
    destination: {kind: ServiceAccount, name: api, namespace: shop}
    rules: [{kind: HTTPRouteGroup, name: api-routes, matches: [reads]}]
    sources: [{kind: ServiceAccount, name: web, namespace: shop}]
- apiVersion: specs.smi-spec.io/v1alpha3
  kind: HTTPRouteGroup
  metadata: {name: api-routes, namespace: shop}
  spec:
    matches: [{name: reads, methods: [GET], pathRegex: /items}]
- apiVersion: specs.smi-spec.io/v1alpha4
  kind: TCPRoute
  metadata: {name: db-port, namespace: shop}
  spec: {matches: {ports: [5432]}}
- apiVersion: split.smi-spec.io/v1alpha2
  kind: TrafficSplit
  metadata: {name: api-split, namespace: shop}
  spec:
    service: api
    backends: [{service: api, weight: 1}]
EOF
"$PY" "$FAKE" serve --cert "$D/api.crt" --key "$D/api.key" --token "$ADMIN" \
	--crds "$CRDS" --seed-file "$D/seed.yaml" --port-file "$D/api.port" \
	--bookmark-interval 0.5 >"$D/fakeapi.log" 2>&1 &
PIDS+=($!)
wait_for -t 20 test -s "$D/api.port"
API_PORT=$(<"$D/api.port")
URL=https://127.0.0.1:$API_PORT
api() { "$PY" "$FAKE" ctl --url "$URL" --ca "$D/api-ca.crt" --token "$ADMIN" "$@"; }
cat >"$D/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: test
contexts:
- name: test
  context: {cluster: fake, user: controller, namespace: weft-system}
clusters:
- name: fake
  cluster:
    server: $URL
    certificate-authority-data: $(base64 -w0 <"$D/api-ca.crt")
users:
- name: controller
  user: {tokenFile: controller.token}
EOF
echo "$ADMIN" >"$D/controller.token"
CTOK=weft-admin-$$
echo "$CTOK admin" >"$D/tokens"

# As root, a real node daemon joins in step 8 from a network namespace
# behind a veth (10.249.0.2 -> 10.249.0.1, the controllers' side).
NETNS= LISTEN=127.0.0.1
if [[ $(id -u) -eq 0 ]] && command -v ip >/dev/null && command -v nft >/dev/null; then
	NETNS=wk8s$$
	ip netns add "$NETNS"
	ip link add "wk${$}a" type veth peer name "wk${$}b" netns "$NETNS"
	ip addr add 10.249.0.1/30 dev "wk${$}a"
	ip link set "wk${$}a" up
	ip -n "$NETNS" addr add 10.249.0.2/30 dev "wk${$}b"
	ip -n "$NETNS" link set "wk${$}b" up
	ip -n "$NETNS" link set lo up
	LISTEN=0.0.0.0
fi

# start_controller NAME PORT: a replica with short lease timings
start_controller() {
	"$WEFT_BIN" controller --source kubernetes --kubeconfig "$D/kubeconfig" \
		--tokens "$D/tokens" --listen "$LISTEN:$2" --tls-san 10.249.0.1 \
		--state-dir "$D/state-$1" \
		--ca-cert "$D/mesh-ca.crt" --ca-key "$D/mesh-ca.key" \
		--identity "ctrl-$1" --lease-duration 3s --renew-deadline 2s \
		--retry-period 1s --watch-timeout 3s --log-level debug \
		>>"$D/controller-$1.log" 2>&1 &
	CPID=$!
	PIDS+=($CPID)
}
PA=$(free_port)
start_controller a "$PA"
PID_A=$CPID
BUNDLE=$D/state-a/ca-bundle.pem
ready() { curl -sf --max-time 2 --cacert "$BUNDLE" "https://127.0.0.1:$1/readyz" >/dev/null; }
# req PORT TOKEN PATH [curl args]: "<status> <body>"
req() {
	local port=$1 tok=$2 path=$3
	shift 3
	curl -sS --max-time 10 --cacert "$BUNDLE" -H "Authorization: Bearer $tok" \
		-o "$D/resp" -w '%{http_code}' "$@" "https://127.0.0.1:$port$path"
	echo " $(<"$D/resp")"
}
status() { curl -sSf --max-time 10 --cacert "$BUNDLE" -H "Authorization: Bearer $CTOK" "https://127.0.0.1:${1:-$PA}/v1/status"; }
# snap [NODE [PORT]]: a snapshot read as admin (pods are cluster-wide in
# every node's); by default for "observer", not a real node: a read with
# have=0 counts as that node's report of what it applied
snap() { curl -sSf --max-time 10 --cacert "$BUNDLE" -H "Authorization: Bearer $CTOK" "https://127.0.0.1:${2:-$PA}/v1/nodes/${1:-observer}/snapshot"; }
# res KIND FIELD: a counter of the source's resource KIND on controller A
res() { status | pyq "[r for r in d['kubernetes']['resources'] if r['kind'] == '$1'][0]['$2']"; }
pods_of() {	# NAMESPACE: pod names in the snapshot, sorted, comma-separated
	snap | pyq "','.join(sorted(p['name'] for p in d['pods'] if p['namespace'] == '$1'))"
}
has_pod() { [[ ,$(pods_of "$1"), == *,$2,* ]]; }
no_pod() { [[ ,$(pods_of "$1"), != *,$2,* ]]; }
pod_ready() {	# NS NAME: true/false
	snap | pyq "[p['ready'] for p in d['pods'] if p['namespace'] == '$1' and p['name'] == '$2'][0]"
}
is_ready() { [[ $(pod_ready "$1" "$2") == "$3" ]]; }
wait_for -t 20 ready "$PA"

pretty "1. first sync: every kind, EndpointSlice readiness, SMI at the newest served version"
assert_eq "$(pods_of shop)" "api-1,api-2,db-1,web-1" "pods in shop"
assert_eq "$(pod_ready shop api-1)" true "api-1 ready (slice)"
assert_eq "$(pod_ready shop api-2)" false "api-2 not ready (slice says so)"
assert_eq "$(pod_ready shop web-1)" true "web-1 ready (no slice names it)"
assert_eq "$(snap | pyq "len(d['nodes'])")" 2 "nodes"
assert_eq "$(snap | pyq "[s['name'] for s in d['services']]")" '["api"]' "services"
assert_eq "$(snap | pyq "[t['name'] for t in d['traffic_targets']]")" '["web-to-api"]' "TrafficTargets"
assert_eq "$(snap | pyq "[g['name'] for g in d['http_route_groups']]")" '["api-routes"]' "HTTPRouteGroups"
assert_eq "$(snap | pyq "[r['name'] for r in d['tcp_routes']]")" '["db-port"]' "TCPRoutes"
assert_eq "$(snap | pyq "[s['name'] for s in d['traffic_splits']]")" '["api-split"]' "TrafficSplits"
assert_eq "$(res HTTPRouteGroup apiVersion)" specs.smi-spec.io/v1alpha4 "HTTPRouteGroup watched at"
assert_eq "$(res TrafficSplit apiVersion)" split.smi-spec.io/v1alpha4 "TrafficSplit watched at"
assert_eq "$(res Pod lists)" 1 "pod lists after the first sync"
grep -q "HTTPRouteGroup: watching specs.smi-spec.io/v1alpha4 (served: v1alpha4, v1alpha3)" \
	"$D/controller-a.log" || fail "discovery did not report the served versions"

pretty "2. watch: changes reach the snapshot"
gen0=$(status | pyq "d['generation']")
api apply - <<'EOF' >/dev/null
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-x7k2p, namespace: shop, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
endpoints:
- addresses: [10.244.2.10]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: api-1, namespace: shop}
- addresses: [10.244.1.11]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: api-2, namespace: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: shop, labels: {app: web}}
spec: {nodeName: node-1, serviceAccountName: web, containers: [{name: app}]}
status: {podIP: 10.244.1.12}
EOF
wait_for -t 10 is_ready shop api-2 true
wait_for -t 10 has_pod shop web-2
api delete - <<'EOF' >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop}
EOF
wait_for -t 10 no_pod shop web-1
assert_gt "$(status | pyq "d['generation']")" "$gen0" "generation after changes"

pretty "3. watch timeouts and bookmarks: resume from the bookmark, no relist"
# --watch-timeout 3s: each watch asks for 2-3 s; the fake sends a
# bookmark every 0.5 s carrying the newest resourceVersion
resumed_from_bookmark() {
	api log | pyq "(lambda bm, w: len(w) >= 3 and any(rv in bm for rv in w[1:]))(
	    set(str(rv) for (r, rv) in d['bookmarks'] if r == 'pods'),
	    [q['rv'] for q in d['requests'] if q.get('watch') and q.get('resource') == 'pods'])" |
		grep -qx true
}
wait_for -t 20 resumed_from_bookmark
assert_eq "$(res Pod lists)" 1 "pod lists (watches resumed without a relist)"
assert_gt "$(res Pod watches)" 2 "pod watches"
assert_gt "$(res Pod bookmarks)" 0 "pod bookmarks seen"

pretty "4. a connection cut inside a chunk: resume from the last version, nothing lost"
w0=$(res Pod watches)
api drop '{"mode": "midchunk", "ops": [{"op": "create", "object":
	{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-3", "namespace": "shop", "labels": {"app": "web"}},
	 "spec": {"nodeName": "node-2", "serviceAccountName": "web", "containers": [{"name": "app"}]},
	 "status": {"podIP": "10.244.2.12"}}}]}' >/dev/null
wait_for -t 15 has_pod shop web-3
assert_eq "$(res Pod lists)" 1 "pod lists after a cut watch (resumed, not relisted)"
assert_gt "$(res Pod watches)" "$w0" "pod watches after the cut"
grep -Eq "watch /api/v1/pods: (watch stream ended inside an event|connection closed|bad HTTP response)" \
	"$D/controller-a.log" || fail "the cut watch was not noticed as such"

pretty "5. 410 Gone after compaction: relist, nothing lost"
g0=$(res Pod gone)
api drop '{"mode": "close", "compact": true, "ops": [{"op": "create", "object":
	{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-4", "namespace": "shop", "labels": {"app": "web"}},
	 "spec": {"nodeName": "node-2", "serviceAccountName": "web", "containers": [{"name": "app"}]},
	 "status": {"podIP": "10.244.2.13"}}},
	{"op": "delete", "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-2", "namespace": "shop"}}}]}' >/dev/null
wait_for -t 15 has_pod shop web-4
wait_for -t 15 no_pod shop web-2
assert_gt "$(res Pod gone)" "$g0" "410s seen on pod watches"
assert_eq "$(res Pod lists)" 2 "pod lists (one relist after 410)"
grep -q "watch /api/v1/pods: HTTP 410: too old resource version" "$D/controller-a.log" ||
	fail "no 410 relist in the log"

pretty "6. 1,000 pod events converge to the right snapshot"
want=$(api churn shop node-2 1000)
echo "$want" >&2
expected=$("$PY" -c 'import sys
n = int(sys.argv[1]); c = (n * 2 + 2) // 3
dead = set(range(0, c, 2)[: n - c])
print(",".join(sorted("churn-%d" % i for i in range(c) if i not in dead)))' 1000)
t0=$(date +%s.%N)
churned() {
	[[ $(snap | pyq "','.join(sorted(p['name'] for p in d['pods'] if p['name'].startswith('churn-')))") == "$expected" ]]
}
wait_for -t 60 churned
t1=$(date +%s.%N)
conv=$("$PY" -c "print('%.3f' % ($t1 - $t0))")
echo "CONVERGENCE: 1000 pod events -> snapshot in ${conv}s (after the API server took them)" >&2
assert_eq "$(echo "$want" | pyq "d['events']")" 1000 "events sent"
assert_eq "$(res Pod lists)" 2 "pod lists after churn (no relist)"

pretty "7. an expired continue token: the list starts over from page 1"
api generate '{"pods": 600, "namespaces": 2, "prefix": "bulk", "nodes": ["node-1", "node-2"]}' >/dev/null
bulk_pods() { [[ $(snap | pyq "sum(1 for p in d['pods'] if p['namespace'].startswith('bulk-'))") == 600 ]]; }
wait_for -t 30 bulk_pods
e0=$(res Pod expired)
l0=$(res Pod lists)
api expire-continue >/dev/null
api drop '{"mode": "close", "compact": true, "ops": [{"op": "create", "object":
	{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-5", "namespace": "shop"},
	 "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]}, "status": {"podIP": "10.244.1.13"}}}]}' >/dev/null
expired() { (( $(res Pod expired) > e0 )); }
wait_for -t 30 expired
# the relist, then its restart from page 1
relisted() { (( $(res Pod lists) >= l0 + 2 )) && [[ $(res Pod listing) == false ]]; }
wait_for -t 30 relisted
wait_for -t 10 has_pod shop web-5
bulk_pods || fail "bulk pods lost by the relist"
churned || fail "churned pods lost by the relist"
api log | pyq "[q['code'] for q in d['requests'] if q['path'] == '/api/v1/pods' and q['query'].get('continue')]" |
	grep -q 410 || fail "no page 2 answered 410"

pretty "8. node bootstrap: TokenReview, bound to the pod's node"
api tokens '{"token": "tok-a", "namespace": "weft-system", "serviceAccount": "weft-node", "pod": "weft-node-a", "audiences": ["weft"]}' >/dev/null
api tokens '{"token": "tok-b", "namespace": "weft-system", "serviceAccount": "weft-node", "pod": "weft-node-b", "audiences": ["weft"]}' >/dev/null
api tokens '{"token": "tok-aud", "namespace": "weft-system", "serviceAccount": "weft-node", "pod": "weft-node-a", "audiences": ["other"]}' >/dev/null
api tokens '{"token": "tok-web", "namespace": "shop", "serviceAccount": "web", "pod": "web-3", "audiences": ["weft"]}' >/dev/null
out=$(req "$PA" tok-a "/v1/nodes/node-1/snapshot")
assert_match "$out" '^200 ' "node-1's token reads node-1"
out=$(req "$PA" tok-a "/v1/nodes/node-2/snapshot")
assert_match "$out" '^403 .*token of node/node-1 may not read node/node-2' "node-1's token reads node-2"
reviews=$(status | pyq "d['kubernetes']['tokenReviews']")
for i in 1 2 3; do req "$PA" tok-a "/v1/nodes/node-1/snapshot" >/dev/null; done
assert_eq "$(status | pyq "d['kubernetes']['tokenReviews']")" "$reviews" "reviews (cached)"
out=$(req "$PA" tok-aud "/v1/nodes/node-1/snapshot")
assert_match "$out" '^401 .*audience' "token for another audience"
out=$(req "$PA" tok-web "/v1/nodes/node-1/snapshot")
assert_match "$out" "^403 .*system:serviceaccount:shop:web is not the node daemon's service account" \
	"token of an application's service account"
out=$(req "$PA" no-such-token "/v1/nodes/node-1/snapshot")
assert_match "$out" '^401 ' "unknown token"
csr() {	# ID OUT: a fresh key and CSR for ID, as the request body
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$D/k.pem" -out "$D/csr.pem" -subj "/O=t-k8s" \
		-addext "subjectAltName=critical,URI:$1" 2>/dev/null
	"$PY" -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read(), "spiffeId": sys.argv[2]}))' \
		"$D/csr.pem" "$1" >"$2"
}
csr spiffe://cluster.local/ns/shop/sa/db "$D/db.json"
out=$(req "$PA" tok-a /v1/certificates -H "Content-Type: application/json" --data-binary @"$D/db.json")
assert_match "$out" '^403 ' "node-1 asks for db (pods on node-2 only)"
out=$(req "$PA" tok-b /v1/certificates -H "Content-Type: application/json" --data-binary @"$D/db.json")
assert_match "$out" '^200 .*BEGIN CERTIFICATE' "node-2 asks for db"
api delete - <<'EOF' >/dev/null
apiVersion: v1
kind: Pod
metadata: {name: weft-node-b, namespace: weft-system}
EOF
no_node_b() { no_pod weft-system weft-node-b; }
wait_for -t 10 no_node_b
out=$(req "$PA" tok-b "/v1/nodes/node-2/snapshot")
assert_match "$out" '^(401|403) .*weft-node-b' "token of a deleted pod"

TOK1=tok-a	# node-1's token (8b rotates it)
if [[ -n $NETNS ]]; then
	pretty "8b. a real weft node bootstraps with its projected token, which rotates"
	echo tok-a >"$D/node.token.tmp" && mv "$D/node.token.tmp" "$D/node.token"
	ip netns exec "$NETNS" "$WEFT_BIN" node --node-name node-1 \
		--controller "https://10.249.0.1:$PA" --ca-bundle "$D/mesh-ca.crt" \
		--token-file "$D/node.token" --state-dir "$D/node-state" \
		--admin-listen 127.0.0.1:15020 >"$D/node.log" 2>&1 &
	PID_NODE=$!
	PIDS+=($PID_NODE)
	node_applied() {	# the node applied the controller's current generation
		local g
		g=$(status | pyq "d['generation']")
		[[ $(status | pyq "[n['applied'] for n in d['nodes'] if n['name'] == 'node-1'][0]") == "$g" ]]
	}
	wait_for -t 30 node_applied
	grep -q "applied generation" "$D/node.log" || fail "the node applied nothing"
	r0=$(status | pyq "d['kubernetes']['tokenReviews']")
	# the kubelet writes a new token; the old one stops working
	api tokens '{"token": "tok-a2", "namespace": "weft-system", "serviceAccount": "weft-node", "pod": "weft-node-a", "audiences": ["weft"]}' >/dev/null
	echo tok-a2 >"$D/node.token.tmp" && mv "$D/node.token.tmp" "$D/node.token"
	api tokens '{"token": "tok-a", "delete": true}' >/dev/null
	TOK1=tok-a2
	api apply - >/dev/null <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: web-6, namespace: shop}
spec: {nodeName: node-1, serviceAccountName: web, containers: [{name: app}]}
status: {podIP: 10.244.1.14}
YAML
	wait_for -t 30 has_pod shop web-6
	wait_for -t 30 node_applied
	wait_for -t 10 log_has "$D/node.log" "token file .* changed: using the new token"
	assert_gt "$(status | pyq "d['kubernetes']['tokenReviews']")" "$r0" "reviews after the rotation"
	kill -TERM "$PID_NODE"
	wait "$PID_NODE" 2>/dev/null || true
fi

pretty "9. leader election: follower 503, takeover after SIGKILL, release on SIGTERM"
assert_eq "$(status | pyq "d['leaderElection']['leader']")" true "A leads"
PB=$(free_port)
start_controller b "$PB"
PID_B=$CPID
wait_for -t 20 ready "$PB"
assert_eq "$(status "$PB" | pyq "d['leaderElection']['leader']")" false "B follows"
b_sees_a() { [[ $(status "$PB" | pyq "d['leaderElection']['holder']") == ctrl-a ]]; }
wait_for -t 10 b_sees_a
out=$(req "$PB" "$TOK1" /v1/certificates -H "Content-Type: application/json" --data-binary @"$D/db.json")
assert_match "$out" '^503 .*not the leader \(the lease is held by ctrl-a\)' "B signs"
out=$(req "$PB" "$TOK1" "/v1/nodes/node-1/snapshot")
assert_match "$out" '^503 .*not the leader' "B serves snapshots"
kill -KILL "$PID_A"
wait "$PID_A" 2>/dev/null || true
t0=$(date +%s.%N)
b_leads() { [[ $(status "$PB" | pyq "d['leaderElection']['leader']") == true ]]; }
wait_for -t 15 b_leads
t1=$(date +%s.%N)
echo "TAKEOVER after SIGKILL: $("$PY" -c "print('%.1f' % ($t1 - $t0))")s (lease 3s)" >&2
csr spiffe://cluster.local/ns/shop/sa/api "$D/api.json"
out=$(req "$PB" "$TOK1" /v1/certificates -H "Content-Type: application/json" --data-binary @"$D/api.json")
assert_match "$out" '^200 .*BEGIN CERTIFICATE' "B signs once it leads"
start_controller a2 "$PA"
PID_A2=$CPID
wait_for -t 20 ready "$PA"
assert_eq "$(status | pyq "d['leaderElection']['leader']")" false "the new A follows"
kill -TERM "$PID_B"
t0=$(date +%s.%N)
a_leads() { [[ $(status | pyq "d['leaderElection']['leader']") == true ]]; }
wait_for -t 10 a_leads
t1=$(date +%s.%N)
took=$("$PY" -c "print('%.1f' % ($t1 - $t0))")
echo "TAKEOVER after SIGTERM (released): ${took}s" >&2
"$PY" -c "import sys; sys.exit(0 if $took < 3.0 else 1)" ||
	fail "takeover after a release took ${took}s, not less than the lease duration"
wait "$PID_B" 2>/dev/null || true
grep -q "lease weft-system/weft-controller: released" "$D/controller-b.log" ||
	fail "B did not release the lease"
kill -TERM "$PID_A2"
wait "$PID_A2" 2>/dev/null || true
# built with --enable-sanitizers, the controllers report at exit
if grep -El "ERROR: (Address|Leak)Sanitizer|runtime error:" "$D"/*.log; then
	for f in "$D"/*.log; do
		grep -q "Sanitizer\|runtime error:" "$f" || continue
		echo "---- the report in ${f##*/} ----" >&2
		sed -n '/ERROR: \(Address\|Leak\)Sanitizer\|runtime error:/,$p' "$f" | head -n 120 >&2
	done
	fail "sanitizer reports in the controllers' logs"
fi
pretty "all good"
