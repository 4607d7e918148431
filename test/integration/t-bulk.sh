#!/bin/bash
# 100 MiB from one pod to another across nodes arrive intact through both
# node daemons: the SHA-256 that `weft-echo sink` computes over what it
# received equals that of the file sent.  Also 32 MiB down over HTTP.
#
#   tools/client 10.244.1.12 ── node-1 ══ br0 ══ node-2 ── shop/api-1 10.244.2.10:9001 (sink)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init bulk
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"
it_tmp

MiB=$((1024 * 1024))
size=$((100 * MiB))
pretty "generating $((size / MiB)) MiB"
head -c "$size" /dev/urandom >"$IT_TMP/blob"
want=$(sha256sum "$IT_TMP/blob" | cut -d' ' -f1)

pretty "tools/client -> shop/api-1:9001 (sink), across nodes"
start=$SECONDS
got=$(pod tools/client timeout 120 nc -N "$IP_API1" 9001 <"$IT_TMP/blob")
pretty "sent in $((SECONDS - start))s"
assert_eq "$got" "$want" "SHA-256 of what the sink received"
assert_match "$(pod_log shop/api-1)" "sink sha256=$want bytes=$size" "sink's log"

pretty "tools/client <- shop/api-1 /bytes/N over HTTP, across nodes"
n=$((32 * MiB))
want=$("$PY" -c '
import hashlib, sys
n = int(sys.argv[1])
cyc = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n"
print(hashlib.sha256((cyc * (n // 64 + 1))[:n]).hexdigest())' "$n")
got=$(pod tools/client curl -sS --fail --max-time 120 "http://$IP_API1:8080/bytes/$n" | sha256sum | cut -d' ' -f1)
assert_eq "$got" "$want" "SHA-256 of /bytes/$n"

no_weft || wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:9001"
pretty "ok"
