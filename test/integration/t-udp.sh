#!/bin/bash
# UDPRoute (SPEC §4.3, DESIGN §2, docs/policy.md "UDP"): UDP to a meshed pod
# passes only from the identities and to the ports a TrafficTarget grants,
# enforced by the destination node's forward chain; same-node and
# cross-node; replies pass; the drop rule counts; deleting the TrafficTarget
# stops the granted flow as soon as the node applied the new generation.
#
#   node-1                                    node-2
#     games/srv    10.244.1.40 (srv)  UDP echo :7000 :7001
#     games/near   10.244.1.41 (player)          games/far  10.244.2.40 (player)
#     games/lurker 10.244.1.42 (spy)             games/spy  10.244.2.41 (spy)
#     plain/plain  10.244.1.43 (namespace outside the mesh)  UDP echo :7000
#
#   UDPRoute games/game: ports [7000]
#   TrafficTarget games/players: player -> srv, rules [UDPRoute game]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
no_weft && skip "needs weft (WEFT_LAB_NO_WEFT=1)"
[[ $("$WEFT_BUILD_DIR/weft-echo" udp-send 2>&1 || true) == *--to* ]] ||
	skip "this weft-echo has no udp-send"
lab_init udp
trap cleanup EXIT
it_tmp

cat >"$IT_TMP/games.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata: {name: games, labels: {weft.io/mesh: enabled}}
---
apiVersion: v1
kind: Namespace
metadata: {name: plain}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: srv, namespace: games}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: player, namespace: games}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: spy, namespace: games}
---
apiVersion: v1
kind: Pod
metadata:
  name: srv
  namespace: games
  annotations:
    lab.weft.io/run: "weft-echo udp --port 7000 --name srv7000 & exec weft-echo udp --port 7001 --name srv7001"
spec:
  nodeName: node-1
  serviceAccountName: srv
  containers:
  - name: srv
    image: weft-echo
    ports:
    - {name: game, containerPort: 7000, protocol: UDP}
    - {name: admin, containerPort: 7001, protocol: UDP}
status: {podIP: 10.244.1.40}
---
apiVersion: v1
kind: Pod
metadata: {name: near, namespace: games}
spec: {nodeName: node-1, serviceAccountName: player, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.41}
---
apiVersion: v1
kind: Pod
metadata: {name: lurker, namespace: games}
spec: {nodeName: node-1, serviceAccountName: spy, containers: [{name: c, image: x}]}
status: {podIP: 10.244.1.42}
---
apiVersion: v1
kind: Pod
metadata: {name: far, namespace: games}
spec: {nodeName: node-2, serviceAccountName: player, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.40}
---
apiVersion: v1
kind: Pod
metadata: {name: spy, namespace: games}
spec: {nodeName: node-2, serviceAccountName: spy, containers: [{name: c, image: x}]}
status: {podIP: 10.244.2.41}
---
apiVersion: v1
kind: Pod
metadata:
  name: plain
  namespace: plain
  annotations:
    lab.weft.io/run: "exec weft-echo udp --port 7000 --name plain7000"
spec:
  nodeName: node-1
  containers:
  - name: plain
    image: weft-echo
    ports:
    - {containerPort: 7000, protocol: UDP}
status: {podIP: 10.244.1.43}
---
apiVersion: specs.smi-spec.io/v1alpha4
kind: UDPRoute
metadata: {name: game, namespace: games}
spec:
  matches:
    ports: [7000]
EOF
cat >"$IT_TMP/target.yaml" <<'EOF'
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: {name: players, namespace: games}
spec:
  destination: {kind: ServiceAccount, name: srv, namespace: games}
  rules:
  - {kind: UDPRoute, name: game}
  sources:
  - {kind: ServiceAccount, name: player, namespace: games}
EOF
lab_up "$EXAMPLES/nodes.yaml" "$IT_TMP/games.yaml" "$IT_TMP/target.yaml"

SRV=10.244.1.40
PLAIN=10.244.1.43
ECHO=$WEFT_BUILD_DIR/weft-echo	# by path: node namespaces have no workload PATH
# answered FROM HOST:PORT [ARGS]: an answer came back (3 tries within
# 3 s); prints it.  dropped FROM HOST:PORT [ARGS]: none within 1 s (2 tries).
answered() {
	local from=$1 to=$2; shift 2
	lab exec "$from" -- "$ECHO" udp-send --to "$to" --message "from $from" \
		--timeout 3000 --tries 3 "$@"
}
dropped() {
	local from=$1 to=$2; shift 2
	! lab exec "$from" -- "$ECHO" udp-send --to "$to" --message "from $from" \
		--timeout 1000 --tries 2 "$@" >/dev/null 2>&1
}
drops() { nft_counter node-1 "no TrafficTarget grants"; }
generation() { lab ctl status | awk '$1 == "generation" { print $2; exit }'; }
node_applied() {	# node_applied NODE GEN: the node reports GEN (or later)
	local a
	a=$(lab ctl status | awk -v n="$1" '$1 == n { print $2 }')
	[[ $a =~ ^[0-9]+$ ]] && (( a >= $2 ))
}

pretty "0. the echo servers answer the node itself (UDP the node sends is not policed)"
wait_for node node-1 "$ECHO" udp-send --to $SRV:7000 --timeout 500
wait_for node node-1 "$ECHO" udp-send --to $SRV:7001 --timeout 500
wait_for node node-1 "$ECHO" udp-send --to $PLAIN:7000 --timeout 500

pretty "1. the table: grants as elements, commented source identity -> pod"
set_v4=$(node node-1 nft list set inet weft udp-allow-v4)
echo "$set_v4" >&2
assert_match "$set_v4" '10\.244\.1\.41 \. 10\.244\.1\.40 \. 7000 comment "games/player -> games/srv"' \
	"same-node grant element"
assert_match "$set_v4" '10\.244\.2\.40 \. 10\.244\.1\.40 \. 7000 comment "games/player -> games/srv"' \
	"cross-node grant element"
[[ $set_v4 != *10.244.2.41* && $set_v4 != *10.244.1.42* ]] ||
	fail "a spy address is in udp-allow-v4"

pretty "2. granted identity, granted port: answered, same-node and cross-node"
d0=$(drops)
r=$(answered games/near $SRV:7000) || fail "near -> srv:7000 not answered"
assert_match "$r" "^srv7000 peer=10\.244\.1\.41:[0-9]+: from games/near$" "same-node answer"
r=$(answered games/far $SRV:7000 --sport 40000) || fail "far -> srv:7000 not answered"
assert_match "$r" "^srv7000 peer=10\.244\.2\.40:40000: from games/far$" "cross-node answer"

pretty "3. granted identity, other port: dropped"
dropped games/near $SRV:7001 || fail "near -> srv:7001 answered"
dropped games/far $SRV:7001 || fail "far -> srv:7001 answered"

pretty "4. other identity, granted port: dropped"
dropped games/lurker $SRV:7000 || fail "lurker (same node) -> srv:7000 answered"
dropped games/spy $SRV:7000 || fail "spy (other node) -> srv:7000 answered"

pretty "5. the drop rule counted them"
d1=$(drops)
(( d1 >= d0 + 4 )) || fail "drop counter went from $d0 to $d1, expected at least +4"
! grep -q "peer=10.244.2.41" "$(pod_log_file games/srv)" ||
	fail "srv's log shows a datagram from spy"

pretty "6. a destination outside the mesh is not policed"
r=$(answered games/spy $PLAIN:7000) || fail "spy -> plain:7000 not answered"
assert_match "$r" "^plain7000 " "plain's answer"

pretty "7. deleting the TrafficTarget stops the granted flow"
g0=$(generation)
lab delete "$IT_TMP/target.yaml" >&2
g1=$(generation)
(( g1 > g0 )) || fail "generation did not move ($g0 -> $g1)"
wait_for -t 30 node_applied node-1 "$g1"
wait_for -t 30 node_applied node-2 "$g1"
set_v4=$(node node-1 nft list set inet weft udp-allow-v4)
[[ $set_v4 != *10.244.1.40* ]] || fail "grant still in udp-allow-v4: $set_v4"
dropped games/near $SRV:7000 || fail "near -> srv:7000 still answered after the delete"
# The same 5-tuple as in step 2: conntrack still knows the flow, yet every
# packet of the original direction is checked again.
dropped games/far $SRV:7000 --sport 40000 ||
	fail "far:40000 -> srv:7000 (an established flow) still answered after the delete"
d2=$(drops)
(( d2 >= d1 + 2 )) || fail "drop counter went from $d1 to $d2, expected at least +2"

pretty "8. and applying it again restores it"
lab apply "$IT_TMP/target.yaml" >&2
answered games/far $SRV:7000 >/dev/null || fail "far -> srv:7000 not answered after re-apply"
pretty "ok"
