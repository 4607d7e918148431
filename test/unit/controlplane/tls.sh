#!/bin/bash
# The controller's API over TLS, end to end on 127.0.0.1 (TAP):
# the bundle verifies the server; a CSR for a service account with a pod
# on the node is signed (openssl verify accepts it), one without is 403;
# a long-poll is held, answers 304 after the timeout, 200 on a change, and
# a client leaving a held long-poll is noticed (status "held" drops to 0).
set -u
weft=${WEFT_BIN:-./weft}
for t in curl openssl python3; do
	command -v $t >/dev/null || { echo "1..0 # SKIP $t not installed"; exit 0; }
done
[[ -x $weft ]] || { echo "1..0 # SKIP no $weft"; exit 0; }
d=$(mktemp -d /tmp/weft-tls-test.XXXXXX)
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
n=0 failed=0
ok() { n=$((n + 1)); if [[ $1 == 0 ]]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=1; fi; }

mkdir "$d/m"
cat >"$d/m/c.yaml" <<'Y'
apiVersion: v1
kind: Node
metadata: {name: node-1}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: shop}
spec: {nodeName: node-1, serviceAccountName: api}
---
apiVersion: v1
kind: Pod
metadata: {name: db-1, namespace: shop}
spec: {nodeName: node-2, serviceAccountName: db}
Y
printf 'adm admin\nn1 node/node-1\n' >"$d/tokens"
for try in 1 2 3 4 5; do
	port=$((20000 + RANDOM % 20000))
	"$weft" controller --source "dir:$d/m" --listen "127.0.0.1:$port" \
	    --tokens "$d/tokens" --state-dir "$d/state" --poll-timeout 2 \
	    >"$d/log" 2>&1 &
	pid=$!
	for i in $(seq 50); do
		grep -q 'controller started' "$d/log" && break
		kill -0 $pid 2>/dev/null || break
		sleep 0.1
	done
	grep -q 'controller started' "$d/log" && break
	wait $pid 2>/dev/null; pid=
done
[[ -n $pid ]] || { echo "1..0 # SKIP controller did not start: $(tail -1 "$d/log")"; exit 0; }
u=https://127.0.0.1:$port
c() { curl -sS --cacert "$d/state/ca-bundle.pem" "$@"; }

code=$(c -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer adm' $u/v1/status)
[[ $code == 200 ]]; ok $? "status over TLS verified with ca-bundle.pem ($code)"
curl -sS -o /dev/null $u/healthz 2>/dev/null; [[ $? != 0 ]]; ok $? "unverified without the bundle"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj / \
    -keyout "$d/k" -out "$d/csr" 2>/dev/null
body() { python3 -c 'import json,sys;print(json.dumps({"csr":open(sys.argv[1]).read(),"spiffeId":sys.argv[2]}))' "$d/csr" "$1"; }
body spiffe://cluster.local/ns/shop/sa/api >"$d/ok.json"
body spiffe://cluster.local/ns/shop/sa/db >"$d/no.json"
code=$(c -o "$d/resp" -w '%{http_code}' -H 'Authorization: Bearer n1' --data-binary @"$d/ok.json" $u/v1/certificates)
[[ $code == 200 ]]; ok $? "CSR for shop/api on node-1 signed ($code)"
python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["certificate"],end="")' "$d/resp" >"$d/leaf" 2>/dev/null
openssl verify -CAfile "$d/state/ca-bundle.pem" "$d/leaf" >/dev/null 2>&1; ok $? "openssl verify accepts the leaf"
openssl x509 -in "$d/leaf" -noout -ext subjectAltName 2>/dev/null | grep -q 'URI:spiffe://cluster.local/ns/shop/sa/api'
ok $? "leaf SAN is the SPIFFE ID"
code=$(c -o "$d/resp" -w '%{http_code}' -H 'Authorization: Bearer n1' --data-binary @"$d/no.json" $u/v1/certificates)
[[ $code == 403 ]] && grep -q 'no pod with service account shop/db is scheduled on node node-1' "$d/resp"
ok $? "CSR for shop/db (no pod on node-1) refused: $code $(cat "$d/resp")"

gen=$(c -H 'Authorization: Bearer n1' "$u/v1/nodes/node-1/snapshot" | python3 -c 'import json,sys;d=json.load(sys.stdin);print(d["generation"]) if "BEGIN CERTIFICATE" in d["trustBundle"] else print(0)')
[[ $gen -gt 0 ]]; ok $? "snapshot carries the trust bundle (generation $gen)"
out=$(c -o /dev/null -w '%{http_code} %{time_total}' -H 'Authorization: Bearer n1' "$u/v1/nodes/node-1/snapshot?have=$gen")
[[ $out == 304\ 2* ]]; ok $? "long-poll held, 304 after the timeout ($out)"
c -o /dev/null --max-time 0.5 -H 'Authorization: Bearer n1' "$u/v1/nodes/node-1/snapshot?have=$gen" 2>/dev/null
sleep 0.3
held=$(c -H 'Authorization: Bearer adm' $u/v1/status | python3 -c 'import json,sys;print(json.load(sys.stdin)["held"])')
[[ $held == 0 ]]; ok $? "a client leaving a held long-poll is noticed over TLS (held $held)"
(sleep 0.5; c -o /dev/null -X POST -H 'Authorization: Bearer adm' $u/v1/ca/rotate) &
out=$(c -o "$d/snap" -w '%{http_code}' -H 'Authorization: Bearer n1' "$u/v1/nodes/node-1/snapshot?have=$gen")
wait $!
[[ $out == 200 ]] && [[ $(grep -o 'BEGIN CERTIFICATE' "$d/snap" | wc -l) == 2 ]]
ok $? "CA rotation answers the long-poll: 200, two roots in the bundle ($out)"
echo "1..$n"
exit $failed
