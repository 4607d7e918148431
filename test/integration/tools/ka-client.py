#!/usr/bin/python3
"""One keep-alive HTTP/1.1 connection, driven line by line from stdin.

    ka-client.py HOST PORT

Each input line is `METHOD PATH [Name:Value ...]`; for each the client sends
one request on the same connection and prints `STATUS LOCALPORT` (the local
port shows whether the connection was reused), or `ERR what` if the
connection failed (the next line opens a new one).  `quit` ends it."""
import http.client
import sys

host, port = sys.argv[1], int(sys.argv[2])
conn = None
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    if words[0] == "quit":
        break
    method, path = words[0], words[1]
    headers = dict(w.split(":", 1) for w in words[2:])
    try:
        if conn is None:
            conn = http.client.HTTPConnection(host, port, timeout=10)
            conn.connect()
        lport = conn.sock.getsockname()[1]
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        resp.read()
        print(resp.status, lport, flush=True)
        if resp.will_close:
            conn.close()
            conn = None
    except Exception as e:  # the connection is gone: say so, start over
        print("ERR", type(e).__name__, flush=True)
        try:
            conn.close()
        except Exception:
            pass
        conn = None
