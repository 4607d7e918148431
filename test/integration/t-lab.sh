#!/bin/bash
# The lab itself: up, status, exec, errors, down leaves nothing behind.
#
#                  wt<lab>-net: br0 10.250.0.1/24, weft controller :15010
#                 /                                  \
#   node-1 eth0 10.250.0.11 (weft node)      node-2 eth0 10.250.0.12 (weft node)
#   10.244.1.0/24, routed veths wv1x*        10.244.2.0/24, routed veths wv2x*
#     shop/web     10.244.1.10                 shop/api-1  10.244.2.10
#     shop/api-2   10.244.1.11                 legacy/old  10.244.2.11
#     tools/client 10.244.1.12
#   Service shop/api 10.96.0.10:80 -> {api-1, api-2}:http(8080)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init lab
trap cleanup EXIT

lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml"
assert_match "$LAB_UP_OUT" "up in [0-9]+\.[0-9]+s" "up prints how long it took"

pretty "status"
st=$(lab status)
running="[0-9]+ running"
# WEFT_LAB_NO_WEFT=1 (topology only, for developing the lab): no daemons.
no_weft && running="-"
for want in "node-1 +$LAB_NAME-node-node-1 +10.250.0.11 +10.244.1.0/24 +$running" \
	    "node-2 +$LAB_NAME-node-node-2 +10.250.0.12 +10.244.2.0/24 +$running" \
	    "shop/web +node-1 +$IP_WEB " "shop/api-1 +node-2 +$IP_API1 " \
	    "shop/api-2 +node-1 +$IP_API2 " "tools/client +node-1 +$IP_CLIENT " \
	    "legacy/old +node-2 +$IP_OLD " "shop/api +$VIP_API +http:80->http/TCP" \
	    "controller .*$running"; do
	[[ $st =~ $want ]] || fail "status lacks /$want/:
$st"
done

pretty "exec in pods and nodes"
# shellcheck disable=SC2016 # expanded in the pod
assert_eq "$(pod tools/client sh -c 'echo $POD_NAMESPACE/$POD_NAME')" tools/client "pod env"
assert_match "$(pod tools/client ip -4 -o addr show dev eth0)" "inet $IP_CLIENT/32" "pod address"
assert_match "$(pod tools/client ip route show default)" "default via 169.254.1.1 dev eth0" "pod route"
hosts=$(pod tools/client cat /etc/hosts)
assert_match "$hosts" "${VIP_API}[[:space:]]+api\.shop .*api\.shop\.svc\.cluster\.local" "client's /etc/hosts"
[[ ! $hosts =~ [[:space:]]api[[:space:]] ]] || fail "short name api leaked into namespace tools"
assert_match "$(pod shop/web cat /etc/hosts)" "${VIP_API}[[:space:]]+api api\.shop" "web's /etc/hosts"
assert_match "$(node node-1 ip route)" "10\.244\.2\.0/24 via 10\.250\.0\.12 dev eth0" "node-1 route to node-2's pods"
assert_match "$(node node-1 ip route)" "$IP_WEB dev wv1x1 scope link" "node-1 host route to web"
assert_match "$(node node-1 ip -o link)" "wv1x1@" "host-side veths start with wv"
no_weft || assert_match "$(node node-1 nft list tables)" "table inet weft" "node-1 has the weft table"
pod shop/web ping -c1 -W2 10.250.0.12 >/dev/null || fail "pod cannot reach node-2"

pretty "errors are clear"
out=$(lab exec shop/nope -- true 2>&1) && fail "exec in an unknown pod succeeded"
assert_match "$out" "no pod 'shop/nope'" "unknown pod"
out=$(lab up "$EXAMPLES/nodes.yaml" 2>&1) && fail "a second up succeeded"
assert_match "$out" "already up.*down" "up twice"
it_tmp
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: lost, namespace: shop}\nspec: {nodeName: node-9}\n' >"$IT_TMP/bad.yaml"
out=$(lab apply "$IT_TMP/bad.yaml" 2>&1) && fail "a pod on a missing node was applied"
assert_match "$out" "node-9.* is not a Node" "pod on an unknown node"
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: twin, namespace: shop}\nspec: {nodeName: node-1}\nstatus: {podIP: %s}\n' "$IP_WEB" >"$IT_TMP/dup.yaml"
out=$(lab apply "$IT_TMP/dup.yaml" 2>&1) && fail "an overlapping podIP was applied"
assert_match "$out" "overlapping podIPs" "overlapping podIPs"
kc=$(lab kubeconfig) || fail "weft-lab kubeconfig failed"
[[ -s $kc ]] || fail "kubeconfig $kc is missing or empty"
grep -Eq "\"server\": \"https://" "$kc" || fail "kubeconfig $kc names no https server"

pretty "apply and delete a pod"
cat >"$IT_TMP/extra.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: extra
  namespace: shop
  labels: {app: extra}
  annotations: {lab.weft.io/run: "exec weft-echo http --port 8080"}
spec:
  nodeName: node-2
  containers: [{name: extra, ports: [{name: http, containerPort: 8080}]}]
YAML
lab apply "$IT_TMP/extra.yaml" >/dev/null
assert_match "$(lab status)" "shop/extra +node-2 +10\.244\.2\.12 " "applied pod"
lab delete "$IT_TMP/extra.yaml" >/dev/null
[[ ! $(ip netns list) =~ $LAB_NAME-pod-shop-extra ]] || fail "deleted pod's namespace remains"
[[ ! -e /etc/netns/$LAB_NAME-pod-shop-extra ]] || fail "deleted pod's /etc/netns remains"

pretty "down leaves nothing behind"
pids=$(awk '{ print $2 }' "$LAB_STATE/pids")
[[ -n $pids ]] || fail "no recorded PIDs"
lab down --check-logs
left=$(ip netns list | awk '{print $1}' | grep -E "^$LAB_NAME-(net|node-|pod-)" || true)
[[ -z $left ]] || fail "namespaces left: $left"
for p in $pids; do ! pid_alive "$p" || fail "process $p survived down"; done
[[ ! -e $LAB_STATE ]] || fail "$LAB_STATE remains"
! compgen -G "/etc/netns/$LAB_NAME-*" >/dev/null || fail "/etc/netns/$LAB_NAME-* remains"
lab down >/dev/null || fail "a second down failed"
pretty "ok"
