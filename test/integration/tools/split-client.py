#!/usr/bin/python3
"""HTTP and TCP clients for t-split.sh, run inside a pod.

    split-client.py HOST PORT
        One keep-alive HTTP/1.1 connection, driven from stdin, one command
        a line:
          get N [Name:Value ...]  N sequential GET /split-<k> requests; prints
                                  one JSON line: {"pods": {pod: n},
                                  "status": {code: n}, "lport": local port of
                                  the connection, "reconnects": n}
          quit
        weft-echo answers GET with JSON carrying "pod".

    split-client.py --tcp HOST PORT N
        N TCP connections, each reading the first line ("hello from POD
        ..."); prints {"pods": {pod: n}, "errors": n}.

    split-client.py --loop HOST PORT PREFIX STOPFILE
        GET /PREFIX-<i> sequentially on one keep-alive connection until
        STOPFILE exists; prints "i status pod" for each (status 0: the
        connection failed; a new one is opened for the next request)."""
import http.client
import json
import os
import socket
import sys


def http_get(state, path, headers):
    """One GET on the shared connection; (status, pod)."""
    host, port = state["addr"]
    try:
        if state["conn"] is None:
            state["conn"] = http.client.HTTPConnection(host, port, timeout=10)
            state["conn"].connect()
            state["opens"] += 1
        c = state["conn"]
        state["lport"] = c.sock.getsockname()[1]
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        body = r.read()
        pod = "-"
        if r.status == 200:
            try:
                pod = json.loads(body).get("pod", "-")
            except ValueError:
                pod = "?"
        if r.will_close:
            c.close()
            state["conn"] = None
        return r.status, pod
    except Exception:
        try:
            state["conn"].close()
        except Exception:
            pass
        state["conn"] = None
        return 0, "-"


def interactive(host, port):
    state = {"addr": (host, port), "conn": None, "opens": 0, "lport": 0}
    k = 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "quit":
            break
        n = int(words[1])
        headers = dict(w.split(":", 1) for w in words[2:])
        pods, status = {}, {}
        opens0 = state["opens"]
        for _ in range(n):
            k += 1
            st, pod = http_get(state, "/split-%d" % k, headers)
            status[str(st)] = status.get(str(st), 0) + 1
            if st == 200:
                pods[pod] = pods.get(pod, 0) + 1
        # the very first connection is no reconnect
        again = state["opens"] - max(opens0, 1)
        print(json.dumps({"pods": pods, "status": status,
                          "lport": state["lport"],
                          "reconnects": max(again, 0)}), flush=True)


def tcp(host, port, n):
    pods, errors = {}, 0
    for _ in range(n):
        try:
            s = socket.create_connection((host, port), timeout=5)
            f = s.makefile("rb")
            line = f.readline().decode(errors="replace")
            s.close()
            w = line.split()
            if len(w) >= 3 and w[0] == "hello" and w[1] == "from":
                pods[w[2]] = pods.get(w[2], 0) + 1
            else:
                errors += 1
        except OSError:
            errors += 1
    print(json.dumps({"pods": pods, "errors": errors}), flush=True)


def loop(host, port, prefix, stop):
    state = {"addr": (host, port), "conn": None, "opens": 0, "lport": 0}
    i = 0
    while not os.path.exists(stop) and i < 100000:
        i += 1
        st, pod = http_get(state, "/%s-%d" % (prefix, i), {})
        print(i, st, pod, flush=True)


if sys.argv[1] == "--tcp":
    tcp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
elif sys.argv[1] == "--loop":
    loop(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
else:
    interactive(sys.argv[1], int(sys.argv[2]))
