#!/bin/bash
# Benchmark: pod -> pod across nodes through the mTLS tunnel (HTTP/2 CONNECT
# streams on pooled TLS 1.3 connections) vs. the same path with the daemons
# stopped and their tables removed (plain routing), interleaved in one run:
#   - new connections per second: wrk -t1 -c50 -H 'Connection: close'
#   - keep-alive requests per second: wrk -t1 -c50
#   - CPU of both daemons per connection / request (utime+stime, A+B)
#   - memory per idle connection through the tunnel: N idle TCP connections
#     from the client pod to api-1:9000, RSS delta of both daemons / N
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
# wrk -H 'Connection: close' leaves ~30,000 TIME_WAIT sockets in api-1 per
# run.  Through weft, node-2 connects to api-1 (from the client's address,
# ports from node-2's range); without weft the client pod does.  Disjoint
# ephemeral ranges keep one phase's TIME_WAITs from colliding with the next
# phase's SYNs (seen: "without weft" at 2 conn/s, SYNs answered by stale
# TIME_WAIT ACKs).
pod tools/client sysctl -qw net.ipv4.ip_local_port_range="10000 32000"

weft_off() {
	local n pid
	for n in node-1 node-2; do
		pid=$(lab pid node/$n)
		kill -TERM "$pid"
		wait_for -t 10 eval '! pid_alive '"$pid"
		node "$n" "$WEFT_BIN" node --cleanup >/dev/null 2>&1
	done
}
weft_on() {
	lab restart node/node-1 node/node-2 >/dev/null
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
# measure WHAT ARGS...: "REQ/S CPU-µs-per-request(A+B)" through weft.
measure() {
	local p1 p2 c0 c1 r
	p1=$(lab pid node/node-1) p2=$(lab pid node/node-2)
	c0=$(( $(cpu_ticks "$p1") + $(cpu_ticks "$p2") ))
	r=$(run_wrk "$@")
	c1=$(( $(cpu_ticks "$p1") + $(cpu_ticks "$p2") ))
	echo "$r $(awk -v d=$((c1 - c0)) -v hz="$hz" -v r="$r" -v s="$secs" \
		'BEGIN { printf "%.0f", (r > 0 ? d / hz * 1e6 / (r * s) : 0) }')"
}

declare -a conn_w conn_o ka_w ka_o cpu_conn cpu_ka
for r in $(seq 1 "$rounds"); do
	read -r c cc < <(measure -H 'Connection: close')
	read -r k kc < <(measure)
	conn_w+=("$c") cpu_conn+=("$cc") ka_w+=("$k") cpu_ka+=("$kc")
	weft_off
	conn_o+=("$(run_wrk -H 'Connection: close')")
	ka_o+=("$(run_wrk)")
	weft_on
	echo "round $r: new conn/s through weft $c (${cc} µs A+B), without ${conn_o[-1]};" \
		"keep-alive req/s through weft $k (${kc} µs A+B), without ${ka_o[-1]}"
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
echo "median of $rounds rounds, ${secs}s each, wrk -t1 -c50:"
echo "  new conn/s:     through weft $(med "${conn_w[@]}") ($(med "${cpu_conn[@]}") µs CPU A+B per connection), without weft $(med "${conn_o[@]}")   [prototype: 3,690 at 293 µs; direct 7,705]"
echo "  keep-alive req/s: through weft $(med "${ka_w[@]}") ($(med "${cpu_ka[@]}") µs CPU A+B per request), without weft $(med "${ka_o[@]}")   [prototype: 10,916 at 105 µs; direct 23,762]"
awk -v n="$idle" -v a="$((a1 - m1))" -v b="$((a2 - m2))" 'BEGIN {
	printf "  idle connections: %d, RSS +%d KiB node-1, +%d KiB node-2: %.2f + %.2f = %.2f KiB per connection A+B   [prototype: 4.05]\n",
	    n, a, b, a / n, b / n, (a + b) / n }'
