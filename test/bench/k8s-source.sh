#!/bin/bash
# The kubernetes source at scale, against test/fakeapi/fakeapi.py:
#
#   test/bench/k8s-source.sh BUILDDIR [PODS [SMI [EVENTS]]]   (5000 1000 1000)
#
# Loads PODS pods (the size of real ones: managedFields, status, ...) in 50
# meshed namespaces on 10 nodes and SMI objects (TrafficTargets,
# HTTPRouteGroups, TCPRoutes, TrafficSplits), starts the controller,
# and reports:
#   sync     time from start to the first model, and its size
#   rss      the controller's VmRSS (and VmHWM, the peak) once synced
#   churn    EVENTS pod events (2/3 creates, 1/3 deletes of those) sent in
#            one burst: time until the model holds exactly the survivors
#            (from the controller's "generation" log line)
set -euo pipefail
build=$(cd "${1:?usage: $0 BUILDDIR [PODS [SMI [EVENTS]]]}" && pwd)
pods=${2:-5000} smi=${3:-1000} events=${4:-1000}
top=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
FAKE=$top/test/fakeapi/fakeapi.py
d=$(mktemp -d /tmp/weft-bench-k8s.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$d"
}
trap cleanup EXIT

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$d/ca.key" -out "$d/ca.crt" -days 1 -subj "/CN=bench" \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$d/api.key" -out "$d/api.csr" -subj "/CN=fakeapi" 2>/dev/null
openssl x509 -req -in "$d/api.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
	-days 1 -out "$d/api.crt" -extfile <(printf 'subjectAltName=IP:127.0.0.1\n') 2>/dev/null
{
	for i in $(seq 1 10); do
		printf -- '---\n{apiVersion: v1, kind: Node, metadata: {name: node-%d}, spec: {podCIDR: 10.%d.0.0/16}}\n' "$i" "$((100 + i))"
	done
} >"$d/seed.yaml"
"$PY" "$FAKE" serve --cert "$d/api.crt" --key "$d/api.key" --token bench \
	--crds "$top/deploy/kubernetes/crds" --seed-file "$d/seed.yaml" \
	--port-file "$d/port" >"$d/fake.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [[ -s $d/port ]] && break; sleep 0.1; done
url=https://127.0.0.1:$(<"$d/port")
api() { "$PY" "$FAKE" ctl --url "$url" --ca "$d/ca.crt" --token bench "$@"; }
nodes=$("$PY" -c 'import json; print(json.dumps(["node-%d" % i for i in range(1, 11)]))')
api generate "{\"pods\": $pods, \"namespaces\": 50, \"smi\": $smi, \"nodes\": $nodes}" >/dev/null
cat >"$d/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: b
contexts: [{name: b, context: {cluster: b, user: b}}]
clusters: [{name: b, cluster: {server: "$url", certificate-authority: $d/ca.crt}}]
users: [{name: b, user: {token: bench}}]
EOF
echo "adm admin" >"$d/tokens"
port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
t0=$(date +%s.%N)
"$build/weft" controller --source kubernetes --kubeconfig "$d/kubeconfig" \
	--tokens "$d/tokens" --listen "127.0.0.1:$port" --state-dir "$d/state" \
	--no-leader-elect >"$d/controller.log" 2>&1 &
cpid=$!
pids+=($cpid)
for _ in $(seq 600); do grep -q '^.* generation 1:' "$d/controller.log" && break; sleep 0.1; done
# the log line's timestamp: when the first model was built
ts() { "$PY" -c '
import datetime, re, sys
m = re.match(r"(\S+)Z ", sys.argv[1])
t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=datetime.timezone.utc)
print("%.3f" % t.timestamp())' "$1"; }
line=$(grep ' generation 1:' "$d/controller.log")
echo "sync: $("$PY" -c "print('%.2f' % ($(ts "$line") - $t0))")s to the first model: ${line#*generation 1: }"
sleep 2
echo "rss: $(awk '/VmRSS|VmHWM/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$cpid/status")" \
	"(${pods} pods, ${smi} SMI objects in the API)"

before=$(grep -c ' generation ' "$d/controller.log")
want=$((pods + (events * 2 + 2) / 3 - (events - (events * 2 + 2) / 3)))
# WEFT_BENCH_PERF=FILE: record the controller's profile during the churn
if [[ -n ${WEFT_BENCH_PERF:-} ]]; then
	perf record --call-graph dwarf -F 200 -p "$cpid" -o "$WEFT_BENCH_PERF" >/dev/null 2>&1 &
	pids+=($!)
	sleep 0.5
fi
t1=$(date +%s.%N)
api churn churn-ns node-1 "$events" >/dev/null
t2=$(date +%s.%N)
for _ in $(seq 600); do
	grep -q " generation .*, $want pod(s)" "$d/controller.log" && break
	sleep 0.1
done
line=$(grep " generation .*, $want pod(s)" "$d/controller.log" | head -n 1)
[[ -n $line ]] || { echo "churn: did not converge to $want pods"; tail "$d/controller.log"; exit 1; }
echo "churn: $events pod events sent in $("$PY" -c "print('%.2f' % ($t2 - $t1))")s;" \
	"model with exactly $want pods $("$PY" -c "print('%.2f' % ($(ts "$line") - $t2))")s" \
	"after the API server had them all ($(( $(grep -c ' generation ' "$d/controller.log") - before )) generation(s) on the way)"
sleep 3	# the controller trims its heap after 2 s of quiet
echo "rss after churn: $(awk '/VmRSS|VmHWM/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$cpid/status")"
