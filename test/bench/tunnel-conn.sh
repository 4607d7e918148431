#!/bin/bash
# Benchmark: pod -> pod across nodes through the mTLS tunnel (HTTP/2 CONNECT
# streams on pooled TLS 1.3 connections), through the tunnel with pooling
# off (both daemons restarted with --tunnel-pool off: one TLS connection per
# app connection, sessions resumed), and the same path with the daemons
# stopped and their tables removed (plain routing), interleaved per round:
#   - new connections per second: wrk -t1 -c50 -H 'Connection: close'
#     (pooled, pool off, without weft)
#   - keep-alive requests per second: wrk -t1 -c50 (pooled, without weft)
#   - CPU per connection / request (utime+stime) of node-1 (A, client side)
#     and node-2 (B, server side), and A+B
#   - memory per idle connection through the tunnel: N idle TCP connections
#     from the client pod to api-1:9000, RSS delta of both daemons / N
# Pool off must show one TLS handshake per app connection on node-2 (its
# "tunnel ... accepted" and "tunnel-in" log lines), or the bench fails.
#
#   test/bench/tunnel-conn.sh BUILDDIR [SECONDS] [ROUNDS] [IDLE]     (root)
#
#   tools/client (node-1, wrk) ── node-1 ══ TLS :15008 ══ node-2 ── shop/api-1 :8080 (weft-echo)
#
# Prototype (shared/notes/h2-tunnel.md §3): 3,690 new conn/s at 293 µs A+B,
# 10,916 keep-alive req/s (-c50), 4.05 KiB per idle connection A+B.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILDDIR [SECONDS] [ROUNDS] [IDLE]" >&2; exit 2; }
export WEFT_BUILD_DIR=$(cd "$1" && pwd) WEFT_BIN=$(cd "$1" && pwd)/weft
secs=${2:-10} rounds=${3:-3} idle=${4:-2000}
source "$(dirname "$0")/../integration/lib.sh"
need_root
command -v wrk >/dev/null || skip "needs wrk (apt-get install wrk)"
lab_init tunconn
trap cleanup EXIT
it_tmp
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"
wait_for -t 20 log_has "$(node_log_file node-1)" "identity spiffe://cluster.local/ns/tools/sa/client: certificate issued"
wait_for -t 20 log_has "$(node_log_file node-2)" "identity spiffe://cluster.local/ns/shop/sa/api: certificate issued"
URL=http://$IP_API1:8080/
hz=$(getconf CLK_TCK)
# wrk -H 'Connection: close' cycles through tens of thousands of ports per
# run, and a reused 4-tuple meets a TIME_WAIT socket of an earlier phase:
#   - through weft, node-1's proxy socket for client:port -> api-1:8080
#     (TPROXY) closes first and stays in TIME_WAIT in node-1; once weft is
#     stopped, the client's SYN from that port is routed through node-1, early
#     demux hands it to that TIME_WAIT socket, and it answers with an ACK
#     instead of forwarding it (seen: "without weft" at 5-40 conn/s);
#   - through weft, node-2 connects to api-1 from the client's address with
#     ports of node-2's range (32768-60999), leaving TIME_WAITs in api-1.
# So the client takes ports from disjoint ranges: 10000-24999 through weft,
# 25000-32767 without (below node-2's range).  And wrk reuses its own
# TIME_WAIT ports (tcp_tw_reuse): without it, once a range is full of them,
# the client's connect() spends its time searching for a free port
# (__inet_hash_connect, tcp_twsk_unique: 46% of all CPU in a perf record -a),
# and the rate measured is the load generator's.
client_ports() { pod tools/client sysctl -qw net.ipv4.ip_local_port_range="$1"; }
client_ports "10000 24999"
pod tools/client sysctl -qw net.ipv4.tcp_tw_reuse=1

weft_off() {
	local n pid
	for n in node-1 node-2; do
		pid=$(lab pid node/$n)
		kill -TERM "$pid"
		wait_for -t 10 eval '! pid_alive '"$pid"
		node "$n" "$WEFT_BIN" node --cleanup >/dev/null 2>&1
	done
}
# weft_on [pool|nopool]: (re)start both daemons, pooled (the lab's node
# arguments) or with --tunnel-pool off added for this start.
weft_on() {
	if [[ ${1:-pool} == nopool ]]; then
		WEFT_LAB_NODE_ARGS="${WEFT_LAB_NODE_ARGS:-} --tunnel-pool off" \
			lab restart node/node-1 node/node-2 >/dev/null
	else
		lab restart node/node-1 node/node-2 >/dev/null
	fi
	wait_for -t 20 eval "pod tools/client curl -sS --fail --max-time 2 $URL"
}
# cpu_ticks PID: utime + stime of every thread.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
# run_wrk ARGS...: "REQ/S" (and the wrk output in $IT_TMP/wrk.out).
run_wrk() {
	pod tools/client wrk -t1 -c50 -d"${secs}s" "$@" "$URL" >"$IT_TMP/wrk.out" 2>&1 ||
		fail "wrk failed: $(cat "$IT_TMP/wrk.out")"
	grep -q 'Non-2xx\|Socket errors' "$IT_TMP/wrk.out" && cat "$IT_TMP/wrk.out" >&2
	awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$IT_TMP/wrk.out"
}
# measure ARGS...: "REQ/S A B A+B" through weft, the last three CPU µs per
# request of node-1 (A), node-2 (B) and both.
measure() {
	local p1 p2 a0 b0 a1 b1 r
	p1=$(lab pid node/node-1) p2=$(lab pid node/node-2)
	a0=$(cpu_ticks "$p1") b0=$(cpu_ticks "$p2")
	r=$(run_wrk "$@")
	a1=$(cpu_ticks "$p1") b1=$(cpu_ticks "$p2")
	awk -v a=$((a1 - a0)) -v b=$((b1 - b0)) -v hz="$hz" -v r="$r" \
	    -v s="$secs" 'BEGIN { n = r * s; if (n <= 0) n = 1e300
		printf "%d %.0f %.0f %.0f\n", r, a / hz * 1e6 / n,
		    b / hz * 1e6 / n, (a + b) / hz * 1e6 / n }'
}
# node-2's log lines from line FROM on: "HANDSHAKES RESUMED STREAMS" (the
# client pod's TLS connections accepted, how many resumed, and its tunnel
# streams to api-1).
N2LOG=$(node_log_file node-2)
ID_CLIENT=spiffe://cluster.local/ns/tools/sa/client
tls_count() {
	tail -n +"$1" "$N2LOG" | awk -v id="$ID_CLIENT" -v dst="-> $IP_API1:8080 " '
		/ tunnel t[0-9]+-[0-9]+ accepted from / && index($0, "peer=" id " ") {
			h++; if (index($0, "(resumed)")) res++ }
		/ tunnel-in / && index($0, dst) { st++ }
		END { printf "%d %d %d\n", h, res, st }'
}

declare -a conn_w conn_p conn_o ka_w ka_o
declare -a ca_w cb_w cab_w ca_p cb_p cab_p ka_a ka_b ka_ab
for r in $(seq 1 "$rounds"); do
	# Pooled.
	sleep 0.3	# the readiness probe's log lines
	l0=$(( $(wc -l <"$N2LOG") + 1 ))
	read -r c ca cb cab < <(measure -H 'Connection: close')
	sleep 0.5	# the last streams' log lines
	read -r hs_w _ st_w < <(tls_count "$l0")
	read -r k ka kb kab < <(measure)
	conn_w+=("$c") ca_w+=("$ca") cb_w+=("$cb") cab_w+=("$cab")
	ka_w+=("$k") ka_a+=("$ka") ka_b+=("$kb") ka_ab+=("$kab")
	# Pool off: one TLS connection per app connection.
	n1=$(( $(wc -l <"$(node_log_file node-1)") + 1 ))
	weft_on nopool
	tail -n +"$n1" "$(node_log_file node-1)" | grep -q "tunnel: pooling off" ||
		fail "node-1 did not start with --tunnel-pool off"
	sleep 0.3
	l0=$(( $(wc -l <"$N2LOG") + 1 ))
	read -r p pa pb pab < <(measure -H 'Connection: close')
	sleep 0.5
	read -r hs_p res_p st_p < <(tls_count "$l0")
	conn_p+=("$p") ca_p+=("$pa") cb_p+=("$pb") cab_p+=("$pab")
	# Every stream on a handshake of its own (pooled: a handful for
	# thousands).  Slack: up to -c50 more handshakes (app connections wrk
	# cut before their CONNECT went out), 2 fewer (a probe's late line).
	(( st_p >= 100 && hs_p + 2 >= st_p && hs_p <= st_p + 60 )) ||
		fail "pool off: $hs_p TLS connections for $st_p streams on node-2"
	# Without weft.
	weft_off
	client_ports "25000 32767"
	conn_o+=("$(run_wrk -H 'Connection: close')")
	ka_o+=("$(run_wrk)")
	client_ports "10000 24999"
	weft_on pool
	echo "round $r: new conn/s through weft $c (A $ca + B $cb = $cab µs; $hs_w TLS" \
		"connections for $st_w streams), pool off $p (A $pa + B $pb = $pab µs;" \
		"$hs_p TLS connections, $res_p resumed, for $st_p streams), without ${conn_o[-1]};" \
		"keep-alive req/s through weft $k (A $ka + B $kb = $kab µs), without ${ka_o[-1]}"
done
grep -q "outbound .* -> $IP_API1:8080 via tunnel" "$(node_log_file node-1)" ||
	fail "wrk did not go through the tunnel"

# Memory per idle connection through the tunnel.
idle_py='
import os, resource, socket, sys, time
host, port, n, ready, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
resource.setrlimit(resource.RLIMIT_NOFILE, (n + 64, n + 64))
socks = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    socks.append(s)
for i, s in enumerate(socks):	# the greeting: the stream is up end to end
    got = b""
    while b"\n" not in got:	# a byte stream: it may come in pieces
        b = s.recv(128)
        if not b:
            break
        got += b
    if not got.startswith(b"hello from"):
        sys.exit("bad greeting on connection %d of %d (%s): %r" % (
            i, n, s.getsockname(), got))
open(ready, "w").close()
for i in range(600):
    if os.path.exists(stop):
        break
    time.sleep(0.1)
'
p1=$(lab pid node/node-1) p2=$(lab pid node/node-2)
sleep 1
m1=$(rss_kib "$p1") m2=$(rss_kib "$p2")
pod tools/client "$PY" -c "$idle_py" "$IP_API1" 9000 "$idle" "$IT_TMP/ready" "$IT_TMP/stop" &
ipid=$!
wait_for -t 60 test -e "$IT_TMP/ready"
sleep 1
a1=$(rss_kib "$p1") a2=$(rss_kib "$p2")
touch "$IT_TMP/stop"
wait "$ipid" || true

med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
th() { sed ':a; s/\B[0-9]\{3\}\>/,&/; ta' <<<"$1"; }	# 12345 -> 12,345
cpu() {	# A-ARRAY B-ARRAY A+B-ARRAY (names): "A x µs + B y µs, A+B z µs"
	local -n xa=$1 xb=$2 xab=$3
	echo "A $(med "${xa[@]}") µs + B $(med "${xb[@]}") µs, A+B $(med "${xab[@]}") µs"
}
echo "median of $rounds rounds, ${secs}s each, wrk -t1 -c50; CPU per connection or request of"
echo "node-1 (A, client side) and node-2 (B, server side), each the median of its own:"
echo "  new conn/s: through weft $(th "$(med "${conn_w[@]}")") ($(cpu ca_w cb_w cab_w))," \
	"pool off $(th "$(med "${conn_p[@]}")") ($(cpu ca_p cb_p cab_p))," \
	"without weft $(th "$(med "${conn_o[@]}")")   [prototype: 3,690 at 293 µs A+B; direct 7,705]"
echo "  keep-alive req/s: through weft $(th "$(med "${ka_w[@]}")") ($(cpu ka_a ka_b ka_ab))," \
	"without weft $(th "$(med "${ka_o[@]}")")   [prototype: 10,916 at 105 µs A+B; direct 23,762]"
awk -v n="$idle" -v a="$((a1 - m1))" -v b="$((a2 - m2))" 'BEGIN {
	printf "  idle connections: %d, RSS +%d KiB node-1, +%d KiB node-2: %.2f + %.2f = %.2f KiB per connection A+B   [prototype: 4.05]\n",
	    n, a, b, a / n, b / n, (a + b) / n }'
