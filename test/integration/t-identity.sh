#!/bin/bash
# Identity (DESIGN §4): every node gets a certificate for each identity of
# its local meshed pods over the TLS control channel; the controller refuses
# a CSR for a service account with no pod on the requesting node (403 and a
# reason); with a 60 s TTL the nodes renew at half-life while a long-lived
# TCP connection and a request loop keep working, with no failure.
#
#   tools/client 10.244.1.12 ── node-1 ── br0 (controller 10.250.0.1:15010, HTTPS) ── node-2 ── shop/api-1 10.244.2.10
#                               (shop/web, shop/api-2)                                (legacy/old: not meshed)
#
#   node-1 wants spiffe://cluster.local/ns/shop/sa/{web,api}, .../ns/tools/sa/client
#   node-2 wants spiffe://cluster.local/ns/shop/sa/api only
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
no_weft && skip "needs weft (WEFT_LAB_NO_WEFT=1)"
for t in openssl curl; do
	command -v "$t" >/dev/null || skip "needs $t"
done
"$WEFT_BIN" controller --help 2>&1 | grep -q -- --cert-ttl ||
	skip "this weft's controller has no --cert-ttl (no mesh CA)"
lab_init id
trap cleanup EXIT
it_tmp
export WEFT_LAB_CONTROLLER_ARGS="--cert-ttl 60s"
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

TD=spiffe://cluster.local
ID_WEB=$TD/ns/shop/sa/web
ID_API=$TD/ns/shop/sa/api
ID_CLIENT=$TD/ns/tools/sa/client
BUNDLE=$LAB_STATE/controller/ca-bundle.pem
URL=https://10.250.0.1:15010

# issued NODE ID [FROM-BYTE]: the node logged a verified certificate for ID.
issued() {
	tail -c +"$((${3:-0} + 1))" "$(node_log_file "$1")" |
		grep -Eq "identity $2: certificate (issued|renewed), serial [0-9a-f]+, expires "
}
renewed() {
	tail -c +"$((${3:-0} + 1))" "$(node_log_file "$1")" |
		grep -Eq "identity $2: certificate renewed, serial [0-9a-f]+, expires "
}
# last_serial NODE ID: the serial the node logged last for ID.
last_serial() {
	sed -nE "s|.*identity $2: certificate (issued\|renewed), serial ([0-9a-f]+),.*|\\2|p" \
		"$(node_log_file "$1")" | tail -n 1
}
# ctl_serial NODE ID: the serial `weft ctl certs` shows (what the controller issued last).
ctl_serial() {
	lab ctl certs | awk -v n="$1" -v id="$2" '$1 == n && $2 == id { print $3 }'
}
same_serial() { [[ -n $(last_serial "$1" "$2") && $(ctl_serial "$1" "$2") == "$(last_serial "$1" "$2")" ]]; }

pretty "1. the control channel is HTTPS, verified with the bootstrap bundle"
[[ -s $BUNDLE ]] || fail "no $BUNDLE"
grep -q -- "--controller https://10.250.0.1:15010 --ca-bundle $BUNDLE" "$(node_log_file node-1)" ||
	fail "node-1 does not run with https and --ca-bundle"
lab exec net -- curl -sS --max-time 5 -o /dev/null "http://10.250.0.1:15010/v1/status" 2>/dev/null &&
	fail "the controller answered plain HTTP"

pretty "2. every node obtains certificates for its local meshed pods"
for want in "node-1 $ID_WEB" "node-1 $ID_API" "node-1 $ID_CLIENT" "node-2 $ID_API"; do
	read -r n id <<<"$want"
	wait_for -t 20 issued "$n" "$id"
done
wait_for -t 5 log_has "$(node_log_file node-1)" "trust bundle installed"
wait_for -t 5 log_has "$(node_log_file node-2)" "trust bundle installed"
for id in "$ID_WEB" "$ID_CLIENT" "$TD/ns/legacy/"; do
	! grep -q "identity $id" "$(node_log_file node-2)" ||
		fail "node-2 asked for $id, which no local meshed pod uses"
done
pretty "   weft ctl certs agrees with what the nodes verified"
lab ctl certs >&2
for want in "node-1 $ID_WEB" "node-1 $ID_API" "node-1 $ID_CLIENT" "node-2 $ID_API"; do
	read -r n id <<<"$want"
	wait_for -t 10 same_serial "$n" "$id"
done

pretty "3. a CSR for a service account with no pod on the node: 403 and a reason"
csr() {	# ID OUT: a fresh key and CSR for ID, as the request body
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$IT_TMP/k.pem" -out "$IT_TMP/csr.pem" -subj "/O=t-identity" \
		-addext "subjectAltName=critical,URI:$1" 2>/dev/null
	"$PY" -c 'import json, sys; print(json.dumps({"csr": open(sys.argv[1]).read(), "spiffeId": sys.argv[2]}))' \
		"$IT_TMP/csr.pem" "$1" >"$2"
}
post_csr() {	# NODE BODY: "<status> <body>"
	local tok
	tok=$(<"$LAB_STATE/node-$1.token")
	lab exec net -- curl -sS --max-time 10 --cacert "$BUNDLE" \
		-H "Authorization: Bearer $tok" -H "Content-Type: application/json" \
		--data-binary @"$2" -o "$IT_TMP/resp" -w '%{http_code}' "$URL/v1/certificates"
	echo " $(<"$IT_TMP/resp")"
}
csr "$ID_WEB" "$IT_TMP/web.json"
out=$(post_csr node-2 "$IT_TMP/web.json")
assert_match "$out" '^403 ' "node-2 asking for shop/sa/web (only on node-1)"
reason=$(json error <<<"${out#403 }")
assert_match "$reason" "." "the refusal carries a reason"
pretty "   refused: $reason"
out=$(post_csr node-1 "$IT_TMP/web.json")
assert_match "$out" '^200 ' "the same CSR from node-1 (which runs shop/web)"
csr "$TD/ns/tools/sa/client" "$IT_TMP/client.json"
out=$(post_csr node-2 "$IT_TMP/client.json")
assert_match "$out" '^403 ' "node-2 asking for tools/sa/client (only on node-1)"

pretty "4. rotation (TTL 60 s) under a long-lived connection and a request loop"
# A line every 0.5 s over one TCP connection through both nodes; every echo
# must come back, until the stop file appears.
long_conn='
import os, socket, sys, time
host, port, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rwb")
greeting = f.readline()
if not greeting.startswith(b"hello from"):
    sys.exit("bad greeting %r" % greeting)
n = 0
while not os.path.exists(stop):
    line = b"line %d %f\n" % (n, time.time())
    f.write(line); f.flush()
    got = f.readline()
    if got != line:
        sys.exit("exchange %d: sent %r, got %r" % (n, line, got))
    n += 1
    time.sleep(0.5)
s.close()
print("%d exchanges on one connection" % n)
'
# HTTP requests to the service (api-1 on node-2, api-2 on node-1) and to
# shop/web, each on a new connection, until the stop file appears.
req_loop='
import os, sys, time, urllib.request
stop, urls = sys.argv[1], sys.argv[2:]
n = fails = 0
while not os.path.exists(stop):
    for u in urls:
        try:
            with urllib.request.urlopen(u, timeout=5) as r:
                r.read()
                if r.status != 200:
                    raise Exception("status %d" % r.status)
        except Exception as e:
            fails += 1
            print("request %d to %s failed: %s" % (n, u, e), flush=True)
        n += 1
    time.sleep(0.1)
print("%d requests, %d failed" % (n, fails))
sys.exit(1 if fails else 0)
'
stop=$IT_TMP/stop
off1=$(stat -c %s "$(node_log_file node-1)")
off2=$(stat -c %s "$(node_log_file node-2)")
before=$(lab ctl certs)
pod tools/client "$PY" -c "$long_conn" "$IP_API1" 9000 "$stop" >"$IT_TMP/conn.out" 2>&1 &
conn_pid=$!
pod tools/client "$PY" -c "$req_loop" "$stop" "http://$VIP_API/" "http://$IP_WEB:8080/" \
	"http://$IP_API1:8080/" >"$IT_TMP/loop.out" 2>&1 &
loop_pid=$!
stop_loops() { touch "$stop"; wait "$conn_pid" "$loop_pid" 2>/dev/null || true; }
trap 'rc=$?; set +e; stop_loops; (exit $rc); cleanup' EXIT
# Certificates arrive with about 60 s left; renewal is at half-life +-5%.
for want in "node-1 $ID_WEB $off1" "node-1 $ID_API $off1" "node-1 $ID_CLIENT $off1" \
	"node-2 $ID_API $off2"; do
	read -r n id off <<<"$want"
	wait_for -t 50 renewed "$n" "$id" "$off"
	pid_alive "$conn_pid" || fail "the long-lived connection ended: $(<"$IT_TMP/conn.out")"
	pid_alive "$loop_pid" || fail "the request loop ended: $(<"$IT_TMP/loop.out")"
done
# A little more traffic on the new certificates, then stop and collect.
sleep 2
touch "$stop"
wait "$conn_pid" || fail "long-lived connection: $(<"$IT_TMP/conn.out")"
wait "$loop_pid" || fail "request loop: $(<"$IT_TMP/loop.out")"
trap cleanup EXIT
pretty "   $(<"$IT_TMP/conn.out"); $(tail -n 1 "$IT_TMP/loop.out")"
assert_match "$(<"$IT_TMP/conn.out")" "^[1-9][0-9]+ exchanges" "exchanges on the long-lived connection"
after=$(lab ctl certs)
echo "$after" >&2
for want in "node-1 $ID_WEB" "node-1 $ID_API" "node-1 $ID_CLIENT" "node-2 $ID_API"; do
	read -r n id <<<"$want"
	s0=$(awk -v n="$n" -v id="$id" '$1 == n && $2 == id { print $3 }' <<<"$before")
	s1=$(awk -v n="$n" -v id="$id" '$1 == n && $2 == id { print $3 }' <<<"$after")
	[[ -n $s0 && -n $s1 && $s0 != "$s1" ]] || fail "$n $id: serial did not change ($s0 -> $s1)"
done
for n in node-1 node-2; do
	! grep -E "certificate request failed|rejected the answer" "$(node_log_file "$n")" ||
		fail "$n: a certificate request failed"
done
pretty "ok"
