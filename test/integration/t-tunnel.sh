#!/bin/bash
# Cross-node traffic between meshed pods goes through the mTLS tunnel
# (HTTP/2 CONNECT over TLS 1.3, port 15008), never in the clear, and the
# tunnel lets in only mesh identities:
#   (a) a capture on node-1's eth0 during a cross-node POST carrying a
#       marker shows TCP port 15008 and never the marker, nor port 8080;
#       the server pod got the body intact (SHA-256), and node-2 logs the
#       caller's verified identity (tunnel-in ... peer=spiffe://...);
#   (b) `openssl s_client` without a client certificate gets no tunnel
#       (alert), and with a mesh certificate it gets TLS 1.3 + ALPN h2;
#   (c) sslscan (with a client certificate) sees TLS 1.3 only, and only
#       the groups x25519 and P-256;
#   (d) plaintext and garbage to :15008 are refused and logged;
#   nothing of (b)-(d) reaches the pod.
#
#   tools/client 10.244.1.12 ─ node-1 ──eth0 10.250.0.11 ── br0 ── eth0 10.250.0.12── node-2 ─ shop/api-1 10.244.2.10
#                               (tcpdump here)                 controller 10.250.0.1:15010
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
for t in tcpdump openssl; do
	command -v "$t" >/dev/null || skip "needs $t"
done
no_weft && skip "needs weft (WEFT_LAB_NO_WEFT=1)"
lab_init tunnel
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

ID_CLIENT=spiffe://cluster.local/ns/tools/sa/client
ID_API=spiffe://cluster.local/ns/shop/sa/api
N1LOG=$(node_log_file node-1)
N2LOG=$(node_log_file node-2)
APILOG=$(pod_log_file shop/api-1)

# The tunnel needs certificates on both nodes (node identity manager).
wait_for -t 20 log_has "$N1LOG" "identity ${ID_CLIENT}: certificate issued"
wait_for -t 20 log_has "$N2LOG" "identity ${ID_API}: certificate issued"

# --- (a) a cross-node POST, captured on node-1's uplink ---------------------
marker="weft-tunnel-marker-$$-$RANDOM$RANDOM"
"$PY" - "$IT_TMP/body" "$marker" <<'EOF'
import sys
m = sys.argv[2].encode()
with open(sys.argv[1], "wb") as f:
    for i in range(4000):		# ~200 KiB: many TLS records
        f.write(m + b" %06d\n" % i)
EOF
want=$(sha256sum <"$IT_TMP/body" | cut -d' ' -f1)

pretty "(a) capture on node-1 eth0 during a POST tools/client -> api-1:8080"
# Bounded by -c and timeout; stopped by its PID: the lab script itself (not
# the lab function: no subshell) execs into timeout, which passes SIGTERM
# on to tcpdump (SIGINT is ignored by background jobs).
"$WEFT_LAB" --name "$LAB_NAME" exec node/node-1 -- timeout 30 tcpdump --immediate-mode -i eth0 -nn -U -s 0 -c 20000 \
	-w "$IT_TMP/cap.pcap" tcp 2>"$IT_TMP/tcpdump.err" &
tdpid=$!
wait_for -t 10 log_has "$IT_TMP/tcpdump.err" "listening on"
got=$(pod tools/client curl -sS --fail --max-time 20 --data-binary "@$IT_TMP/body" \
	"http://$IP_API1:8080/sha256") || fail "POST through the tunnel failed"
assert_eq "$got" "$want" "SHA-256 of the body the server pod received"
wait_for -t 10 log_has "$N2LOG" "tunnel-in ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:8080 peer=${ID_CLIENT} "
wait_for -t 10 log_has "$N1LOG" "outbound ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:8080 via tunnel node-2 .* peer=${ID_API} "
sleep 0.3	# the last segments (FIN/ACK) into the capture
kill -TERM "$tdpid" 2>/dev/null || true
wait "$tdpid" 2>/dev/null || true
[[ -s $IT_TMP/cap.pcap ]] || fail "empty capture: $(cat "$IT_TMP/tcpdump.err")"
n15008=$(tcpdump -nn -r "$IT_TMP/cap.pcap" "tcp port 15008" 2>/dev/null | wc -l)
n8080=$(tcpdump -nn -r "$IT_TMP/cap.pcap" "tcp port 8080" 2>/dev/null | wc -l)
pretty "capture: $n15008 packets on port 15008, $n8080 on port 8080"
assert_gt "$n15008" 20 "packets to/from port 15008 in the capture"
assert_eq "$n8080" 0 "packets to/from port 8080 on node-1's uplink"
if grep -aqF "$marker" "$IT_TMP/cap.pcap"; then
	fail "the marker is in the capture: cross-node traffic went in the clear"
fi
# The marker would have been found, had it been sent in the clear.
grep -aqF "$marker" "$IT_TMP/body" || fail "test bug: no marker in the body"

# Nothing below may reach the pod: count its log lines from here on.
api_lines() { wc -l <"$APILOG"; }
api0=$(api_lines)
# handshake_fails: node-2's log lines for tunnel connections refused in the
# handshake (from node-1's address).
handshake_fails() {
	grep -cE "tunnel t[0-9]+-[0-9]+ from - \(10\.250\.0\.11:[0-9]+\): handshake failed: " "$N2LOG" || true
}

# --- (b) openssl s_client without a client certificate -----------------------
pretty "(b) openssl s_client without a client certificate"
f0=$(handshake_fails)
# In TLS 1.3 the client finishes its side of the handshake before the
# server has seen its (empty) Certificate: keep stdin open a moment so that
# s_client reads the server's alert instead of quitting first.
out=$(sleep 2 | node node-1 timeout 10 openssl s_client -connect "$IP_API1:15008" -alpn h2 \
	-CAfile "$LAB_STATE/controller/ca-bundle.pem" 2>&1) || true
echo "$out" | grep -E 'alert|Protocol|ALPN|Verif' >&2 || true
assert_match "$out" "alert certificate required|alert handshake failure|tlsv13 alert" \
	"s_client without a certificate gets an alert"
wait_for -t 5 eval '(( $(handshake_fails) > f0 ))'
grep -E "tunnel t[0-9]+-[0-9]+ from - \(10\.250\.0\.11" "$N2LOG" | tail -n1 >&2

# A mesh certificate for tools/client, requested like node-1's daemon does:
# a CSR, node-1's token, POST /v1/certificates on the controller.
pretty "a client certificate for $ID_CLIENT from the controller (node-1's token)"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	-keyout "$IT_TMP/client.key" -out "$IT_TMP/client.csr" -subj "/O=weft-test" \
	-addext "subjectAltName=critical,URI:$ID_CLIENT" 2>/dev/null ||
	fail "openssl req failed"
"$PY" - "$IT_TMP/client.csr" "$ID_CLIENT" >"$IT_TMP/req.json" <<'EOF'
import json, sys
print(json.dumps({"csr": open(sys.argv[1]).read(), "spiffeId": sys.argv[2]}))
EOF
node node-1 curl -sS --fail --max-time 10 --cacert "$LAB_STATE/controller/ca-bundle.pem" \
	-H "Authorization: Bearer $(cat "$LAB_STATE/node-node-1.token")" \
	-H 'Content-Type: application/json' --data-binary "@$IT_TMP/req.json" \
	https://10.250.0.1:15010/v1/certificates >"$IT_TMP/resp.json" ||
	fail "POST /v1/certificates failed: $(cat "$IT_TMP/resp.json" 2>/dev/null)"
"$PY" - "$IT_TMP/resp.json" "$IT_TMP/client.pem" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
open(sys.argv[2], "w").write(r["certificate"] + r.get("chain", ""))
EOF
openssl x509 -in "$IT_TMP/client.pem" -noout -ext subjectAltName 2>/dev/null | grep -qF "$ID_CLIENT" ||
	fail "the issued certificate does not name $ID_CLIENT"

out=$(sleep 1 | node node-1 timeout 10 openssl s_client -connect "$IP_API1:15008" -alpn h2 \
	-CAfile "$LAB_STATE/controller/ca-bundle.pem" -cert "$IT_TMP/client.pem" \
	-key "$IT_TMP/client.key" 2>&1) || true
[[ $out != *alert* ]] || fail "s_client with a mesh certificate got an alert: $(grep alert <<<"$out")"
assert_match "$out" "ALPN protocol: h2" "s_client with a mesh certificate: ALPN h2"
assert_match "$out" "Protocol *: TLSv1\.3" "s_client with a mesh certificate: TLS 1.3"
assert_match "$out" "Verify return code: 0 " "the server's chain verifies against the mesh CA"
openssl x509 -noout -ext subjectAltName <<<"$out" 2>/dev/null | grep -qF "URI:$ID_API" ||
	fail "the server does not present api-1's identity $ID_API"
wait_for -t 5 log_has "$N2LOG" "tunnel t[0-9]+-[0-9]+ accepted from 10\.250\.0\.11:[0-9]+ peer=$ID_CLIENT as $ID_API"

# --- (c) sslscan with a client certificate -----------------------------------
if command -v sslscan >/dev/null; then
	pretty "(c) sslscan $IP_API1:15008 (with a client certificate)"
	node node-1 timeout 120 sslscan --no-colour --certs="$IT_TMP/client.pem" \
		--pk="$IT_TMP/client.key" "$IP_API1:15008" >"$IT_TMP/sslscan.out" 2>&1 || true
	sed -n '/SSL\/TLS Protocols/,/^$/p;/Key Exchange Group/,/^$/p' "$IT_TMP/sslscan.out" >&2
	protos=$(awk '/SSL\/TLS Protocols/{p=1;next} p&&/^$/{p=0} p' "$IT_TMP/sslscan.out")
	assert_match "$protos" "TLSv1\.3 +enabled" "sslscan: TLSv1.3 enabled"
	en=$(grep -E '^(SSLv|TLSv)[0-9.]+ +enabled' <<<"$protos" | awk '{print $1}' | tr '\n' ' ')
	assert_eq "$en" "TLSv1.3 " "sslscan: the only protocol enabled"
	groups=$(awk '/Key Exchange Group/{p=1;next} p&&/^$/{p=0} p' "$IT_TMP/sslscan.out")
	[[ -n $groups ]] || fail "sslscan listed no key exchange group:
$(cat "$IT_TMP/sslscan.out")"
	while read -r line; do
		[[ -z $line ]] && continue
		[[ $line =~ (x25519|secp256r1) ]] ||
			fail "sslscan: unexpected key exchange group: $line"
	done <<<"$groups"
	# Accepted ciphers: TLS 1.3 suites only.
	if grep -E '^(Preferred|Accepted) ' "$IT_TMP/sslscan.out" | grep -vE 'TLSv1\.3' >&2; then
		fail "sslscan: a cipher below TLS 1.3 was accepted"
	fi
else
	pretty "(c) skipped: no sslscan (deploy/local/install-deps installs it)"
fi

# --- (d) plaintext and garbage -------------------------------------------------
pretty "(d) plaintext HTTP and garbage to :15008"
f0=$(handshake_fails)
out=$(node node-1 sh -c "printf 'GET / HTTP/1.1\r\nHost: api\r\n\r\n' | timeout 10 nc -w 5 $IP_API1 15008" | tr -d '\0' | head -c 200 || true)
[[ $out != *HTTP/* ]] || fail "plaintext HTTP got an HTTP answer: $out"
wait_for -t 5 eval '(( $(handshake_fails) >= f0 + 1 ))'
head -c 2048 /dev/urandom >"$IT_TMP/garbage"
node node-1 sh -c "timeout 10 nc -w 5 $IP_API1 15008 <'$IT_TMP/garbage' >/dev/null" || true
# TLS-looking garbage too: a record header, then noise.
{ printf '\x16\x03\x01\x00\x40'; head -c 64 /dev/urandom; } >"$IT_TMP/garbage2"
node node-1 sh -c "timeout 10 nc -w 5 $IP_API1 15008 <'$IT_TMP/garbage2' >/dev/null" || true
wait_for -t 5 eval '(( $(handshake_fails) >= f0 + 3 ))'
grep -E "tunnel t[0-9]+-[0-9]+ from - \(10\.250\.0\.11" "$N2LOG" | tail -n3 >&2

assert_eq "$(api_lines)" "$api0" "api-1 saw nothing of (b)-(d) (its log lines)"

# And the tunnel still carries the mesh's traffic.
got=$(pod tools/client curl -sS --fail --max-time 10 --data-binary "@$IT_TMP/body" \
	"http://$IP_API1:8080/sha256") || fail "POST after the probes failed"
assert_eq "$got" "$want" "SHA-256 after the probes"
pretty "(e) a client reusing its source port at once (the proxy's socket of the first connection is in TIME_WAIT)"
# The first connection is read to EOF before the client closes, so node-1's
# proxy socket closes first and stays in TIME_WAIT for that 4-tuple.  The
# second SYN from the same port must reach the proxy's listener (tproxy
# retires the TIME_WAIT socket), not that socket, which would answer with an
# ACK: a reset, and a SYN retransmitted a second later, counted in the
# client's RetransSegs.  The "packets of connections weft proxies" rule
# leaves it alone because `socket wildcard` does not match a TIME_WAIT
# socket (not a full socket).
reuse_out=$(pod tools/client "$PY" - "$IP_API1" 8080 <<'EOF'
import errno, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def retrans():
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Tcp:")]
    return int(rows[1][rows[0].index("RetransSegs")])
lport = None
for i in range(2):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", lport or 0))
    lport = s.getsockname()[1]
    if i == 1:
        r0, t0 = retrans(), time.monotonic()
    for _ in range(100):	# the client's own socket may still be in LAST_ACK
        try:
            s.connect((host, port))
            break
        except OSError as e:
            if e.errno != errno.EADDRNOTAVAIL:
                raise
            time.sleep(0.01)
    s.sendall(b"GET / HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    if not data.startswith(b"HTTP/1.1 200"):
        sys.exit("connection %d from port %d: %r" % (i + 1, lport, data[:80]))
print(lport, retrans() - r0, "%.3f" % (time.monotonic() - t0))
EOF
) || fail "port reuse: $reuse_out"
read -r rport rretrans rsecs <<<"$reuse_out"
pretty "second connection from port $rport: ${rsecs}s, $rretrans TCP segments retransmitted"
assert_eq "$rretrans" 0 "no SYN retransmitted for the reused port"

pretty "(f) pooling, as /metrics tells it: 5 more connections, 5 more streams, no new TLS connection"
tmetric() {	# NODE NAME-AND-LABELS: the value in the node's /metrics
	node "$1" curl -sf http://127.0.0.1:15020/metrics |
		awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print "missing" }'
}
c0=$(tmetric node-1 'weft_tunnel_connections_total{side="client"}')
s0=$(tmetric node-1 weft_tunnel_streams_total)
srv=$(tmetric node-2 'weft_tunnel_connections_total{side="server"}')
[[ $c0 =~ ^[0-9]+$ && $s0 =~ ^[0-9]+$ && $srv =~ ^[0-9]+$ ]] ||
	fail "tunnel counters missing: client=$c0 streams=$s0 server=$srv"
(( c0 >= 1 && srv >= 1 )) || fail "no tunnel connection counted: client=$c0 server=$srv"
for i in 1 2 3 4 5; do
	pod tools/client curl -sS --fail --max-time 10 -o /dev/null "http://$IP_API1:8080/" ||
		fail "request $i after the probes failed"
done
wait_for -t 5 eval '(( $(tmetric node-1 weft_tunnel_streams_total) >= s0 + 5 ))'
assert_eq "$(tmetric node-1 'weft_tunnel_connections_total{side="client"}')" "$c0" \
	"node-1 dialed no new TLS connection for them"

pretty "tunnel: OK"
