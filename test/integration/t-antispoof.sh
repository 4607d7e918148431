#!/bin/bash
# Anti-spoofing (DESIGN §2): on its node, a pod is known by its source
# address, so a pod that sends from an address that is not its own is
# dropped -- whether it poses as another local pod, as an unknown address in
# the node's pod CIDR, or as a host outside the cluster.  Honest traffic from
# the same pod keeps flowing.
#
#   tools/client 10.244.1.12 (+ spoofed source addresses) ── wv veth ── node-1 ── … ── shop/api-1 10.244.2.10
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init spoof
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

spoofed() {	# ADDRESS WHAT: a connection from ADDRESS must not get through
	local addr=$1 what=$2 before after rc
	pod tools/client ip addr add "$addr/32" dev eth0
	before=$(nft_counter node-1 "spoofed")
	set +e
	pod tools/client curl -sS --max-time 2 --interface "$addr" "http://$IP_API1:8080/spoofed-$addr" >/dev/null 2>&1
	rc=$?
	set -e
	pod tools/client ip addr del "$addr/32" dev eth0
	(( rc != 0 )) || fail "$what: a connection from $addr got through"
	after=$(nft_counter node-1 "spoofed")
	assert_gt "$after" "$before" "$what: the anti-spoofing counter"
	! grep -q "spoofed-$addr" "$(pod_log_file shop/api-1)" || fail "$what: api-1 received the request"
	pretty "$what ($addr): dropped (curl exit $rc)"
}

http_get tools/client "http://$IP_API1:8080/honest" >/dev/null
spoofed "$IP_WEB" "posing as another local pod (shop/web)"
spoofed 10.244.1.77 "posing as an unknown address in the node's pod CIDR"
spoofed 10.244.2.77 "posing as an address of another node's pod CIDR"
spoofed 10.250.0.99 "posing as a host outside the pod CIDRs"
body=$(http_get tools/client "http://$IP_API1:8080/honest-again")
assert_eq "$(json peer <<<"$body" | cut -d: -f1)" "$IP_CLIENT" "honest traffic still flows, from the client's own address"
pretty "ok"
