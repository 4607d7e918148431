#!/bin/bash
# Trustworthy under failure:
#  1. someone deletes node-1's table: the daemon notices (nftables monitor)
#     and restores it; traffic keeps flowing through weft;
#  2. the controller goes away and node-1's daemon restarts meanwhile: it
#     serves from its persisted snapshot and kept identities (never open),
#     and cross-node traffic keeps flowing through the mTLS tunnel;
#  3. the controller comes back: its generation continues where it was, and
#     every node acknowledges it;
#  4. an invalid manifest is reported with file, document, path and reason
#     and skipped, and everything else keeps working.
#
#   tools/client 10.244.1.12 ── node-1 ── br0 (controller 10.250.0.1) ── node-2 ── shop/api-1 10.244.2.10
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init res
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

ctl() { lab ctl "$@"; }	# URL, token and CA bundle of the lab
generation() { ctl status | sed -nE 's/.*generation ([0-9]+).*/\1/p' | head -n 1; }
through_weft() {	# the request reaches api-1 and node-1 logged it
	local tag=$1 body
	body=$(http_get tools/client "http://$IP_API1:8080/$tag") || return 1
	[[ $(json pod <<<"$body") == api-1 ]] || return 1
	wait_for -t 5 log_has "$(node_log_file node-1)" "conn .*outbound .* -> ${IP_API1//./\\.}:8080"
}

pretty "1. delete table inet weft behind the daemon's back"
through_weft before-delete
node node-1 nft delete table inet weft
wait_for -t 10 node node-1 nft list table inet weft
wait_for -t 5 log_has "$(node_log_file node-1)" "table inet weft was (deleted|changed) by someone else; restoring it"
listing=$(nft_table node-1)
[[ $listing =~ "TCP from a local meshed pod" && $listing =~ "shop/web" ]] ||
	fail "the restored table is not the full table: $listing"
through_weft after-restore
pretty "   flushing the chain is repaired too"
node node-1 nft flush chain inet weft filter-prerouting
wait_for -t 10 eval "nft_table node-1 | grep -q 'fail closed'"
through_weft after-flush

gen_before=$(generation)
[[ -n $gen_before ]] || fail "no generation in weft ctl status"
pretty "2. stop the controller (generation $gen_before), restart node-1's daemon"
cpid=$(lab pid controller)
kill -TERM "$cpid"
wait_for -t 10 eval '! pid_alive '"$cpid"
lab restart node/node-1
wait_for -t 10 log_has "$(node_log_file node-1)" "restoring last snapshot from"
wait_for -t 10 log_has "$(node_log_file node-1)" "applied generation $gen_before"
# Its pods keep their identities: the certificates it kept, verified again.
wait_for -t 10 log_has "$(node_log_file node-1)" "identity spiffe://cluster.local/ns/tools/sa/client: certificate serial [0-9a-f]+ restored from"
http_get tools/client "http://$VIP_API/" >/dev/null || fail "service traffic failed while the controller is down"
through_weft controller-down

pretty "3. the controller comes back"
lab restart controller
ctl wait --timeout 30 >/dev/null ||
	fail "nodes did not acknowledge the restarted controller"
gen_after=$(generation)
(( gen_after >= gen_before )) || fail "generation went backwards: $gen_before -> $gen_after"

pretty "4. an invalid manifest changes nothing else"
cat >"$IT_TMP/bad.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata: { name: broken, namespace: shop }
spec:
  nodeName: node-1
  containers:
  - name: app
    ports:
    - containerPort: 0
YAML
out=$(lab exec net -- "$WEFT_BIN" ctl check "$IT_TMP/bad.yaml" 2>&1) && fail "ctl check accepted an invalid pod"
assert_match "$out" "bad.yaml: document 1 \(Pod shop/broken\): spec.containers\[0\].ports\[0\].containerPort: " "the error names file, document, object and field"
through_weft after-bad-manifest
pretty "ok"
