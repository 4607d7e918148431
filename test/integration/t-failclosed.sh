#!/bin/bash
# Fail closed (DESIGN §2): when node-1's daemon dies (SIGKILL) its table
# stays, and a new connection from a meshed pod is refused or reset, never
# passed in clear: the server sees nothing.  Restarting the daemon rebuilds
# the table and traffic flows again.
#
#   tools/client 10.244.1.12 ── node-1 (weft node: killed, restarted) ── br0 ── node-2 ── shop/api-1 10.244.2.10:8080
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init fail
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

pretty "traffic flows through node-1"
body=$(http_get tools/client "http://$IP_API1:8080/before-kill")
assert_eq "$(json pod <<<"$body")" api-1 "before the kill"

pid=$(lab pid node/node-1)
pretty "SIGKILL node-1's daemon (pid $pid)"
kill -KILL "$pid"
wait_for -t 10 eval '! pid_alive '"$pid"
[[ $(lab status) =~ node-1\ .*\ $pid\ DEAD ]] || fail "status does not show node-1's daemon dead"

pretty "the table stays"
nft_table node-1 >/dev/null || fail "table inet weft vanished with the daemon"

pretty "a new connection is refused, and the server sees nothing"
FC_RULE=${WEFT_IT_FAILCLOSED_RULE:-fail closed}
fc_before=$(nft_counter node-1 "$FC_RULE")
set +e
pod tools/client curl -sS --max-time 5 "http://$IP_API1:8080/while-dead" >/dev/null 2>&1
rc=$?
set -e
(( rc != 0 )) || fail "a request succeeded while node-1's daemon was dead"
(( rc == 7 || rc == 56 || rc == 52 )) || fail "curl exit $rc: expected connection refused (7) or reset (56, 52)"
pretty "curl exit $rc"
set +e
out=$(pod tools/client sh -c "printf 'x\n' | nc -N -w 5 $IP_API1 9000" 2>&1)
set -e
[[ ! $out =~ hello ]] || fail "TCP passed through while node-1's daemon was dead: $out"
assert_gt "$(nft_counter node-1 "$FC_RULE")" "$fc_before" "the fail-closed rule's counter"
! grep -q "while-dead" "$(pod_log_file shop/api-1)" || fail "api-1 received the request in clear"
! grep -q "accepted local=$IP_API1:9000 peer=$IP_CLIENT" "$(pod_log_file shop/api-1)" ||
	fail "api-1 accepted a TCP connection from the client while node-1 was down"

pretty "weft-lab restart node/node-1"
lab restart node/node-1
npid=$(lab pid node/node-1)
[[ $npid != "$pid" ]] || fail "restart kept the old pid"
nft_table node-1 >/dev/null || fail "no table after restart"

pretty "traffic flows again"
wait_for -t 10 http_get tools/client "http://$IP_API1:8080/after-restart-probe"
body=$(http_get tools/client "http://$IP_API1:8080/after-restart")
assert_eq "$(json pod <<<"$body")" api-1 "after the restart"
assert_eq "$(json local <<<"$body")" "$IP_API1:8080" "destination preserved after restart"
wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:8080"
pretty "ok"
