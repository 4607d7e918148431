#!/bin/bash
# Half-close passes through the mesh: a client that shuts its write side
# (FIN) still gets the whole reply from `weft-echo tcp` (greeting + echo of
# everything it sent), same node and across nodes (DESIGN §3).
#
#   tools/client 10.244.1.12 ── node-1 ── br0 ── node-2 ── shop/api-1 10.244.2.10:9000
#        └─────────────────── node-1 ── shop/api-2 10.244.1.11:9000
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_root
lab_init half
trap cleanup EXIT
lab_up "$EXAMPLES/nodes.yaml" "$EXAMPLES/shop.yaml" "$EXAMPLES/tools.yaml" "$EXAMPLES/policy.yaml"

# Send N bytes, shutdown(SHUT_WR), read to EOF; print "greeting|bytes|ok".
client='
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes((i * 7 + 3) % 256 for i in range(n))
s = socket.create_connection((host, port), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
buf = bytearray()
while True:
    c = s.recv(1 << 16)
    if not c:
        break
    buf += c
s.close()
nl = buf.find(b"\n")
greeting, body = bytes(buf[:nl]).decode(), bytes(buf[nl + 1:])
print("%s|%d|%s" % (greeting, len(body), "ok" if body == data else "MISMATCH"))
'

for target in "$IP_API1 api-1 cross-node" "$IP_API2 api-2 same-node"; do
	read -r dip dpod what <<<"$target"
	for n in 0 1 65536 3000000; do
		pretty "$what: $n bytes, then SHUT_WR, to $dpod"
		out=$(pod tools/client "$PY" -c "$client" "$dip" 9000 "$n")
		IFS='|' read -r greeting len ok <<<"$out"
		assert_match "$greeting" "^hello from $dpod local=${dip//./\\.}:9000 peer=${IP_CLIENT//./\\.}:[0-9]+$" "$what: greeting"
		assert_eq "$len" "$n" "$what: bytes echoed after the client's FIN"
		assert_eq "$ok" ok "$what: echoed bytes"
	done
done

pretty "nc -N (shutdown after stdin EOF), across nodes"
out=$(pod tools/client sh -c "printf 'one\ntwo\n' | nc -N -w 10 $IP_API1 9000")
assert_eq "$(tail -n +2 <<<"$out")" "$(printf 'one\ntwo')" "nc -N reply"

pretty "the node saw the connections close by EOF"
no_weft || wait_for -t 10 log_has "$(node_log_file node-1)" "conn .*outbound ${IP_CLIENT//./\\.}:[0-9]+ -> ${IP_API1//./\\.}:9000"
pretty "ok"
