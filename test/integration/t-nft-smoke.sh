#!/bin/bash
# Root smoke test of netfilter/: the table, set updates, counters, monitor,
# policy routing, and TPROXY capture on routed veths -- including fail
# closed: with no listener, captured connections are refused (RST), never
# routed to their destination in clear -- and the UDP policy of the forward
# chain (UDPRoute grants as set elements, updated without touching rules).
#
#   ext (192.168.77.2) --- ext0 [ node ] wvweb --- web 10.244.1.10 (meshed demo/web)
#                        192.168.77.1    wvdb  --- db  10.244.1.20 (exempt plain/db)
#   node: table inet weft, fwmark 0x53a -> table 15001 (local default dev lo),
#         169.254.1.1/32 on every pod veth (the pods' gateway), /32 host routes.
#
# Usage: t-nft-smoke.sh [BUILDDIR]    (needs root; everything lives in network
# namespaces named nfh-$$-*, removed on exit).
set -e
B=${1:-${WEFT_BUILD_DIR:-.}}
D=$B/test/unit/netfilter/nft-driver
[[ $(id -u) == 0 ]] || { echo "skip: needs root"; exit 77; }
[[ -x $D ]] || { echo "skip: build $D first"; exit 77; }
command -v nft >/dev/null && command -v /usr/bin/python3 >/dev/null ||
	{ echo "skip: needs nft (for listing) and python3"; exit 77; }

P=nfh-$$
NODE=$P-node WEB=$P-web DB=$P-db EXT=$P-ext
T=$(mktemp -d /tmp/$P.XXXXXX)
PIDS=()
cleanup() {
	set +e
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for n in $NODE $WEB $DB $EXT; do ip netns del $n 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT
n() { ip netns exec "$@"; }
fails=0
check() {	# check NAME CONDITION...
	local name=$1; shift
	if "$@"; then echo "ok - $name"; else echo "NOT OK - $name"; fails=$((fails+1)); fi
}

cat > $T/h.py <<'EOF'
import socket, sys, errno
IP_TRANSPARENT = 19
mode = sys.argv[1]
if mode in ("tproxy-listen", "listen"):
    port, text = int(sys.argv[2]), (sys.argv[3] if len(sys.argv) > 3 else "")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if mode == "tproxy-listen":
        s.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    s.bind(("0.0.0.0", port)); s.listen(16)
    print("listening", flush=True)
    while True:
        c, peer = s.accept()
        if mode == "tproxy-listen":
            h, p = c.getsockname()
            msg = "captured %s:%d from %s" % (h, p, peer[0])
        else:
            msg = "%s from %s" % (text, peer[0])
        print(msg, flush=True)
        c.sendall((msg + "\n").encode()); c.close()
elif mode == "udp-echo":   # udp-echo PORT TEXT
    port, text = int(sys.argv[2]), sys.argv[3]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("listening", flush=True)
    while True:
        d, peer = s.recvfrom(2048)
        print("udp from %s" % peer[0], flush=True)
        s.sendto(("%s from %s" % (text, peer[0])).encode(), peer)
elif mode == "udp":     # udp HOST PORT: one datagram, the answer or timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.5)
    try:
        s.connect((sys.argv[2], int(sys.argv[3]))); s.send(b"ping")
        print(s.recv(200).decode().strip() or "empty")
    except socket.timeout:
        print("timeout")
    except ConnectionRefusedError:
        print("refused")
else:   # connect HOST PORT [SRC]
    s = socket.socket(); s.settimeout(3)
    if len(sys.argv) > 4:
        s.bind((sys.argv[4], 0))
    try:
        s.connect((sys.argv[2], int(sys.argv[3])))
        print(s.recv(200).decode().strip() or "empty")
    except ConnectionRefusedError:
        print("refused")
    except ConnectionResetError:
        print("reset")
    except socket.timeout:
        print("timeout")
    except OSError as e:
        print("error", errno.errorcode.get(e.errno, e.errno))
EOF
h() { /usr/bin/python3 $T/h.py "$@"; }
wait_listening() { for _ in $(seq 50); do grep -q listening "$1" 2>/dev/null && return; sleep 0.1; done; }
bg() {	# bg NS LOG ARGS...: a helper listener in NS, pid in PIDS
	local ns=$1 log=$2; shift 2
	ip netns exec $ns /usr/bin/python3 $T/h.py "$@" > "$log" 2>&1 &
	PIDS+=($!)
	wait_listening "$log"
}

# --- topology -----------------------------------------------------------
for ns in $NODE $WEB $DB $EXT; do ip netns add $ns; n $ns ip link set lo up; done
n $NODE sysctl -qw net.ipv4.ip_forward=1
pod() {	# pod NS IFACE IP
	ip link add $2 netns $NODE type veth peer name eth0 netns $1
	ip -n $NODE link set $2 up
	ip -n $NODE addr add 169.254.1.1/32 dev $2 noprefixroute
	ip -n $NODE route add $3/32 dev $2 scope link
	ip -n $1 addr add $3/32 dev eth0
	ip -n $1 link set eth0 up
	ip -n $1 route add 169.254.1.1 dev eth0 scope link
	ip -n $1 route add default via 169.254.1.1 dev eth0
}
pod $WEB wvweb 10.244.1.10
pod $DB wvdb 10.244.1.20
ip link add ext0 netns $NODE type veth peer name eth0 netns $EXT
ip -n $NODE addr add 192.168.77.1/24 dev ext0; ip -n $NODE link set ext0 up
ip -n $EXT addr add 192.168.77.2/24 dev eth0; ip -n $EXT link set eth0 up
ip -n $EXT route add 10.244.1.0/24 via 192.168.77.1

SPEC="cidr=10.244.1.0/24 meshed=10.244.1.10/demo/web exempt=10.244.1.20/plain/db prefix=wv"

# --- table, idempotence, routes -------------------------------------------
check "table absent before" [ "$(n $NODE $D exists)" = absent ]
n $NODE $D apply $SPEC
n $NODE $D apply $SPEC
check "table exists after apply" [ "$(n $NODE $D exists)" = exists ]
check "re-apply replaces, no duplicate rules" \
	[ "$(n $NODE nft -a list chain inet weft filter-prerouting | grep -c 'comment "weft')" = 1 ]
n $NODE nft list table inet weft > $T/listing
check "every rule has a counter and a comment" \
	[ "$(grep -c ' accept comment\| drop comment\| return comment\| reset comment' $T/listing)" = \
	  "$(grep -c 'counter packets .* comment "' $T/listing)" ]
check "elements commented ns/pod" grep -q '10.244.1.10 comment "demo/web"' $T/listing
n $NODE $D route-install; n $NODE $D route-install
check "ip rule fwmark 0x53a lookup 15001" \
	[ "$(n $NODE ip rule | grep -c 'fwmark 0x53a lookup 15001')" = 1 ]
has() { local re=$1; shift; "$@" | grep -q -- "$re"; }
check "local default route in table 15001" \
	has '^local default dev lo' n $NODE ip route show table 15001

# --- behaviour ------------------------------------------------------------
bg $EXT $T/ext.log listen 8080 direct
bg $WEB $T/web.log listen 80 web
bg $DB $T/db.log listen 80 db

# fail closed: nothing listens on :15001 / :15006
r=$(n $WEB /usr/bin/python3 $T/h.py connect 192.168.77.2 8080)
check "weft down: meshed pod's outbound refused ($r)" [ "$r" = refused ]
r=$(n $EXT /usr/bin/python3 $T/h.py connect 10.244.1.10 80)
check "weft down: inbound to meshed pod refused ($r)" [ "$r" = refused ]
check "weft down: nothing reached the destination in clear" \
	[ "$(grep -c "from 10.244.1.10\|from 192.168.77.2" $T/ext.log $T/web.log | grep -c ':0$')" = 2 ]
r=$(n $DB /usr/bin/python3 $T/h.py connect 192.168.77.2 8080)
check "exempt pod not captured ($r)" [ "$r" = "direct from 10.244.1.20" ]
r=$(n $NODE /usr/bin/python3 $T/h.py connect 10.244.1.10 80)
check "node itself to a pod: direct, replies not hijacked ($r)" [ "${r%% from*}" = web ]

# weft up: transparent listeners
bg $NODE $T/out.log tproxy-listen 15001
bg $NODE $T/in.log tproxy-listen 15006
r=$(n $WEB /usr/bin/python3 $T/h.py connect 192.168.77.2 8080)
check "outbound captured with original destination ($r)" \
	[ "$r" = "captured 192.168.77.2:8080 from 10.244.1.10" ]
r=$(n $WEB /usr/bin/python3 $T/h.py connect 10.244.1.20 80)
check "meshed pod to exempt local pod: outbound capture ($r)" \
	[ "$r" = "captured 10.244.1.20:80 from 10.244.1.10" ]
r=$(n $EXT /usr/bin/python3 $T/h.py connect 10.244.1.10 80)
check "inbound plaintext captured ($r)" \
	[ "$r" = "captured 10.244.1.10:80 from 192.168.77.2" ]
r=$(n $EXT /usr/bin/python3 $T/h.py connect 10.244.1.99 80)
check "unknown pod in the CIDR captured too, boot safety ($r)" \
	[ "$r" = "captured 10.244.1.99:80 from 192.168.77.2" ]
r=$(n $EXT /usr/bin/python3 $T/h.py connect 10.244.1.20 80)
check "inbound to exempt pod not captured ($r)" [ "$r" = "db from 192.168.77.2" ]
r=$(n $NODE /usr/bin/python3 $T/h.py connect 10.244.1.10 80)
check "node to pod with weft up: direct ($r)" [ "${r%% from*}" = web ]
# NodePort-style DNAT (after our mangle hook): the pod's replies are
# reply-direction and must not be hijacked into :15001
n $NODE nft -f - <<'EOF'
table ip nfh-nat {
	chain pre {
		type nat hook prerouting priority dstnat;
		tcp dport 30080 dnat to 10.244.1.10:80
	}
}
EOF
r=$(n $EXT /usr/bin/python3 $T/h.py connect 192.168.77.1 30080)
check "DNAT'd connection to a meshed pod: replies pass ($r)" [ "$r" = "web from 192.168.77.2" ]
# the transparent listener itself is not reachable as a wildcard socket
r=$(n $EXT /usr/bin/python3 $T/h.py connect 10.244.1.20 15001)
check "forwarded SYN to an exempt pod's :15001 not taken by the listener ($r)" [ "$r" = refused ]

# anti-spoofing: web sends from a neighbour's address
n $WEB ip addr add 10.244.1.20/32 dev eth0
r=$(n $WEB /usr/bin/python3 $T/h.py connect 192.168.77.2 8080 10.244.1.20)
check "spoofed source dropped ($r)" [ "$r" = timeout ]
n $WEB ip addr del 10.244.1.20/32 dev eth0

# --- counters, updates, cleanup --------------------------------------------
n $NODE $D counters > $T/ctr
check "counters: outbound capture counted" \
	awk -F'\t' '$4=="TCP from a local meshed pod" && $2>0 {f=1} END {exit !f}' $T/ctr
check "counters: fail-closed reject counted" \
	awk -F'\t' '$4 ~ /fail closed/ && $2>0 {f=1} END {exit !f}' $T/ctr
check "counters: spoofing drop counted" \
	awk -F'\t' '$4 ~ /spoofed source address from a pod/ && $2>0 {f=1} END {exit !f}' $T/ctr
check "counters: DNAT reply counted" \
	awk -F'\t' '$4 ~ /replies of connections/ && $2>0 {f=1} END {exit !f}' $T/ctr

# --- UDP policy (forward chain) --------------------------------------------
# web (meshed) answers UDP on 7000-7002, db (exempt) on 7000, ext on 7000.
# Grants: ext -> web:7000, every source -> web:7002.
bg $WEB $T/wudp.log udp-echo 7000 web7000
bg $WEB $T/wudp1.log udp-echo 7001 web7001
bg $WEB $T/wudp2.log udp-echo 7002 web7002
bg $DB $T/dudp.log udp-echo 7000 db7000
bg $EXT $T/eudp.log udp-echo 7000 ext7000
U1="udp=192.168.77.2,10.244.1.10,7000,ext/client -> demo/web"
UANY="udp=*,10.244.1.10,7002,any source -> demo/web"
n $NODE $D apply $SPEC "$U1" "$UANY"
udp() { n "$1" /usr/bin/python3 $T/h.py udp "$2" "$3"; }
udp_drops() { n $NODE $D counters | awk -F'\t' '$4 ~ /no TrafficTarget grants/ {s+=$2} END {print s+0}'; }
check "udp: granted source and port answered ($(udp $EXT 10.244.1.10 7000))" \
	[ "$(udp $EXT 10.244.1.10 7000)" = "web7000 from 192.168.77.2" ]
d0=$(udp_drops)
r=$(udp $EXT 10.244.1.10 7001)
check "udp: granted source, other port dropped ($r)" [ "$r" = timeout ]
r=$(udp $DB 10.244.1.10 7000)
check "udp: local pod without a grant dropped ($r)" [ "$r" = timeout ]
check "udp: drop rule counted both ($d0 -> $(udp_drops))" [ "$(udp_drops)" -ge $((d0 + 2)) ]
r=$(udp $DB 10.244.1.10 7002)
check "udp: port granted to every source answered ($r)" [ "$r" = "web7002 from 10.244.1.20" ]
r=$(udp $EXT 10.244.1.20 7000)
check "udp: exempt destination untouched ($r)" [ "$r" = "db7000 from 192.168.77.2" ]
r=$(udp $NODE 10.244.1.10 7001)
check "udp: the node itself to a meshed pod untouched ($r)" [ "${r%% from*}" = web7001 ]
r=$(udp $WEB 192.168.77.2 7000)
check "udp: replies to a flow the meshed pod began pass ($r)" [ "$r" = "ext7000 from 10.244.1.10" ]
r=$(udp $EXT 10.244.1.99 7000)
check "udp: unknown pod in the CIDR dropped, boot safety ($r)" [ "$r" = timeout ]
HF=$(n $NODE nft -a list chain inet weft filter-forward | grep -o 'handle [0-9]*' | tr '\n' ' ')
# Revoke ext's grant, grant db 7000-7001, widen the open port to 7002-7003:
# deletions and additions (overlapping ranges included) in one batch.
n $NODE $D update $SPEC "$U1" "$UANY" -- $SPEC \
	"udp=10.244.1.20,10.244.1.10,7000-7001,plain/db -> demo/web" \
	"udp=*,10.244.1.10,7002-7003,any source -> demo/web"
check "udp update: rules untouched" \
	[ "$(n $NODE nft -a list chain inet weft filter-forward | grep -o 'handle [0-9]*' | tr '\n' ' ')" = "$HF" ]
check "udp update: grant element listed with its comment" \
	has '10.244.1.20 . 10.244.1.10 . 7000-7001 comment "plain/db -> demo/web"' \
	n $NODE nft list set inet weft udp-allow-v4
r=$(udp $EXT 10.244.1.10 7000)
check "udp update: revoked grant dropped ($r)" [ "$r" = timeout ]
r=$(udp $DB 10.244.1.10 7001)
check "udp update: new grant answered ($r)" [ "$r" = "web7001 from 10.244.1.20" ]
r=$(udp $EXT 10.244.1.10 7002)
check "udp update: widened open range still answered ($r)" [ "$r" = "web7002 from 192.168.77.2" ]
n $NODE $D apply $SPEC

H1=$(n $NODE nft -a list chain inet weft filter-prerouting | grep -o 'handle [0-9]*' | head -1)
n $NODE $D update $SPEC -- cidr=10.244.1.0/24 meshed=10.244.1.10/demo/web \
	meshed=10.244.1.11/demo/api exempt=10.244.1.21/plain/cache prefix=wv
check "update: element added" \
	has '10.244.1.11 comment "demo/api"' n $NODE nft list set inet weft meshed-pods-v4
check "update: exempt element replaced" \
	has '10.244.1.21 comment "plain/cache"' n $NODE nft list set inet weft exempt-pods-v4
check "update: rules untouched" [ "$(n $NODE nft -a list chain inet weft filter-prerouting | grep -o 'handle [0-9]*' | head -1)" = "$H1" ]
if n $NODE $D update meshed=10.244.1.77/x/ghost -- 2> $T/err; then r=0; else r=1; fi
check "update of a missing element fails, names it: $(cat $T/err)" \
	grep -q "delete 10.244.1.77 (x/ghost): No such file or directory" $T/err
n $NODE $D monitor-own 3 $SPEC > $T/mon &
MP=$!
sleep 0.5
n $NODE nft flush chain inet weft filter-prerouting
wait $MP || true
check "monitor: own apply quiet, foreign flush seen" \
	[ "$(tr '\n' ' ' < $T/mon)" = "own: quiet foreign: changed " ]
n $NODE $D delete; n $NODE $D delete
check "delete twice: table gone" [ "$(n $NODE $D exists)" = absent ]
n $NODE $D route-remove; n $NODE $D route-remove
check "routes removed" [ -z "$(n $NODE ip rule | grep 0x53a)$(n $NODE ip route show table 15001 2>/dev/null)" ]

echo "# listing:"; sed 's/^/# /' $T/listing
((fails == 0)) && echo "all ok" || { echo "$fails failed"; exit 1; }
