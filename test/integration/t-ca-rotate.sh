#!/bin/bash
# Rotating the mesh CA root keeps old and new trusted during the overlap
# (DESIGN §4): after `weft ctl ca rotate` the bundle holds both roots, every
# node takes it, pods keep talking with certificates of the old root, a pod
# scheduled afterwards gets a certificate of the new root, and the two talk
# to each other across nodes through the mTLS tunnel.
#
#   tools/client 10.244.1.12 (old root) ── node-1 ══ mTLS ══ node-2 ── shop/fresh 10.244.2.20 (new root)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
command -v openssl >/dev/null || skip "needs openssl"
lab_init rot
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

CA=$LAB_STATE/controller/ca
BUNDLE=$LAB_STATE/controller/ca-bundle.pem
idfile() {	# NODE NS SA: the node's kept key + certificate for that identity
	echo "$LAB_STATE/node-$1/identities/cluster.local_ns_$2_sa_$3.pem"
}
leaf_of() { openssl x509 -in "$1" >"$IT_TMP/leaf.pem" && echo "$IT_TMP/leaf.pem"; }
verifies() {	# ROOT-CERT PEM: the leaf in PEM chains to exactly that root
	openssl verify -no-CApath -no-CAstore -CAfile "$1" "$(leaf_of "$2")" >/dev/null 2>&1
}
roots() { grep -c 'BEGIN CERTIFICATE' "$BUNDLE"; }

pretty "before: one root, the client's certificate is from it"
assert_eq "$(roots)" 1 "roots in the bundle"
root1=$(ls "$CA"/root-*.crt | head -n 1)
wait_for -t 15 test -s "$(idfile node-1 tools client)"
verifies "$root1" "$(idfile node-1 tools client)" || fail "the client's certificate does not chain to $root1"
http_get tools/client "http://$IP_API1:8080/before" >/dev/null

pretty "weft ctl ca rotate"
lab ctl ca rotate
lab ctl wait --timeout 30 >/dev/null || fail "nodes did not take the new bundle"
assert_eq "$(roots)" 2 "roots in the bundle during the overlap"
root2=$(ls -t "$CA"/root-*.crt | head -n 1)
[[ $root2 != "$root1" ]] || fail "no new root file in $CA"
wait_for -t 10 log_has "$(node_log_file node-2)" "trust bundle updated"

pretty "old-root certificates keep working"
body=$(http_get tools/client "http://$IP_API1:8080/after-rotate")
assert_eq "$(json pod <<<"$body")" api-1 "cross-node after the rotation"

pretty "a new pod gets a certificate of the new root"
cat >"$IT_TMP/fresh.yaml" <<'YAML'
apiVersion: v1
kind: ServiceAccount
metadata: { name: fresh, namespace: shop }
---
apiVersion: v1
kind: Pod
metadata:
  name: fresh
  namespace: shop
  annotations:
    lab.weft.io/run: "exec weft-echo http --port 8080"
spec:
  nodeName: node-2
  serviceAccountName: fresh
  containers:
  - name: app
    ports: [ { name: http, containerPort: 8080 } ]
status: { podIP: 10.244.2.20 }
---
# SMI access control is deny by default: let the client call it.
apiVersion: access.smi-spec.io/v1alpha3
kind: TrafficTarget
metadata: { name: fresh-callers, namespace: shop }
spec:
  destination: { kind: ServiceAccount, name: fresh, namespace: shop }
  rules: [ { kind: TCPRoute, name: any-port } ]
  sources: [ { kind: ServiceAccount, name: client, namespace: tools } ]
YAML
lab apply "$IT_TMP/fresh.yaml" >/dev/null
wait_for -t 15 test -s "$(idfile node-2 shop fresh)"
verifies "$root2" "$(idfile node-2 shop fresh)" || fail "the new certificate does not chain to the new root"
! verifies "$root1" "$(idfile node-2 shop fresh)" || fail "the new certificate chains to the old root"

pretty "old root (client) -> new root (fresh), across nodes"
body=$(http_get tools/client "http://10.244.2.20:8080/mixed")
assert_eq "$(json pod <<<"$body")" fresh "old-root client to new-root server"
wait_for -t 10 log_has "$(node_log_file node-2)" "conn .*tunnel-in 10\.244\.1\.12:[0-9]+ -> 10\.244\.2\.20:8080 .*peer=spiffe://cluster\.local/ns/tools/sa/client"
pretty "ok"
