#!/bin/bash
# TCP and HTTP between pods, on one node and across nodes, go through the
# node daemons (TPROXY): the source node logs a `conn ... outbound SRC -> DST`
# line per closed connection (across nodes the connection rides the mTLS
# tunnel and the destination node logs a `tunnel-in` line naming the caller's
# SPIFFE ID), the capture rule's counter moves, and the server
# sees the original destination (its own pod IP:port) and the client pod's
# address as peer.  A request by service name (api.shop) reaches an api pod.
#
#   tools/client 10.244.1.12 ─┐ node-1 (weft node)      node-2 (weft node)
#   shop/web     10.244.1.10 ─┤ ──eth0 10.250.0.11 ── br0 ── eth0 10.250.0.12── shop/api-1 10.244.2.10
#   shop/api-2   10.244.1.11 ─┘                                               legacy/old 10.244.2.11
#   Service shop/api 10.96.0.10:80 -> api-1, api-2 :8080
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init relay
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

# The comment of node-1's rule that captures TCP leaving a local meshed pod.
OUT_RULE=${WEFT_IT_OUTBOUND_RULE:-}
if [[ -z $OUT_RULE ]]; then
	for c in "TCP from a local meshed pod" "outbound from a local pod" "from a local meshed pod" "outbound"; do
		if nft_counter node-1 "$c" >/dev/null 2>&1; then OUT_RULE=$c; break; fi
	done
fi
[[ -n $OUT_RULE ]] || fail "no counted outbound capture rule in node-1's table:
$(nft_table node-1)"
pretty "outbound capture rule: \"$OUT_RULE\""

# check_http SRC-POD SRC-IP DST-IP DST-POD DST-NODE WHAT
check_http() {
	local src=$1 sip=$2 dip=$3 dpod=$4 dnode=$5 what=$6 before after body
	before=$(nft_counter node-1 "$OUT_RULE")
	body=$(http_get "$src" "http://$dip:8080/relay-$what") || fail "$what: request failed"
	assert_eq "$(json pod <<<"$body")" "$dpod" "$what: answering pod"
	assert_eq "$(json local <<<"$body")" "$dip:8080" "$what: destination preserved"
	assert_match "$(json peer <<<"$body")" "^${sip//./\\.}:[0-9]+$" "$what: peer is the client pod"
	after=$(nft_counter node-1 "$OUT_RULE")
	assert_gt "$after" "$before" "$what: capture rule counter"
	# One line per closed connection, e.g.
	# conn w0-7 outbound 10.244.1.12:43512 -> 10.244.2.10:8080 ... reason=eof
	wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${sip//./\\.}:[0-9]+ -> ${dip//./\\.}:8080"
	# Across nodes it rides the tunnel: the destination's daemon takes the
	# stream in from the caller's identity.
	[[ $dnode == node-1 ]] ||
		wait_for -t 10 log_has "$(node_log_file "$dnode")" "conn .*tunnel-in ${sip//./\\.}:[0-9]+ -> ${dip//./\\.}:8080 .*peer=spiffe://cluster\\.local/ns/[a-z0-9-]+/sa/[a-z0-9.-]+"
}

pretty "HTTP, same node: tools/client -> shop/web"
check_http tools/client "$IP_CLIENT" "$IP_WEB" web node-1 same-node
pretty "HTTP, across nodes: tools/client -> shop/api-1"
check_http tools/client "$IP_CLIENT" "$IP_API1" api-1 node-2 cross-node

pretty "HTTP keep-alive: two requests on one client connection, across nodes"
out=$(pod tools/client curl -sS --fail --max-time 10 "http://$IP_API1:8080/ka1" "http://$IP_API1:8080/ka2")
(( $(wc -l <<<"$out") == 2 )) || fail "keep-alive: expected two answers, got: $out"
while read -r line; do
	assert_eq "$(json pod <<<"$line")" api-1 "keep-alive: answering pod"
	assert_match "$(json peer <<<"$line")" "^${IP_CLIENT//./\\.}:[0-9]+$" "keep-alive: peer"
done <<<"$out"

pretty "TCP, across nodes: tools/client -> shop/api-1:9000"
before=$(nft_counter node-1 "$OUT_RULE")
out=$(pod tools/client sh -c "printf 'ping\n' | nc -N -w 10 $IP_API1 9000")
assert_match "$(head -n1 <<<"$out")" "^hello from api-1 local=${IP_API1//./\\.}:9000 peer=${IP_CLIENT//./\\.}:[0-9]+$" "TCP greeting"
assert_eq "$(tail -n1 <<<"$out")" "ping" "TCP echo"
assert_gt "$(nft_counter node-1 "$OUT_RULE")" "$before" "TCP: capture rule counter"
wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:9000"
wait_for -t 10 log_has "$(node_log_file node-2)" "conn .*tunnel-in ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:9000"

pretty "TCP, same node: shop/web -> shop/api-2:9000"
out=$(pod shop/web sh -c "printf 'pong\n' | nc -N -w 10 $IP_API2 9000")
assert_match "$(head -n1 <<<"$out")" "^hello from api-2 local=${IP_API2//./\\.}:9000 peer=${IP_WEB//./\\.}:[0-9]+$" "TCP greeting"
assert_eq "$(tail -n1 <<<"$out")" "pong" "TCP echo"
wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${IP_WEB//./\\.}:[0-9]+ -> ${IP_API2//./\\.}:9000"

pretty "by service name: tools/client -> http://api.shop/"
declare -A seen=()
for i in 1 2 3 4 5 6 7 8; do
	body=$(http_get tools/client "http://api.shop/svc-$i") || fail "request to api.shop failed"
	p=$(json pod <<<"$body")
	case $p in
	api-1)	assert_eq "$(json local <<<"$body")" "$IP_API1:8080" "api.shop -> api-1: pod address" ;;
	api-2)	assert_eq "$(json local <<<"$body")" "$IP_API2:8080" "api.shop -> api-2: pod address" ;;
	*)	fail "api.shop answered by '$p', not an api pod" ;;
	esac
	assert_match "$(json peer <<<"$body")" "^${IP_CLIENT//./\\.}:[0-9]+$" "api.shop: peer is the client pod"
	seen[$p]=1
done
pretty "api.shop answered by: ${!seen[*]}"
pretty "ok"
