#!/usr/bin/python3
"""A small Kubernetes API server for weft's tests (stdlib + python3-yaml).

It follows the parts of the real protocol that a list/watch client relies
on, as described in the Kubernetes "API concepts" documentation:

* one global, strictly increasing resourceVersion (a decimal string); every
  write bumps it; lists carry the collection's resourceVersion, objects
  their own;
* list with limit/continue: pages come from the snapshot taken by the first
  page; a continue token older than the compacted history is answered with
  410 Gone, reason Expired;
* watch (watch=1) from a resourceVersion: every change after it, in order,
  as {"type": ADDED|MODIFIED|DELETED, "object": ...} lines; without a
  resourceVersion (or "0"), synthetic ADDED events for the current objects
  first; allowWatchBookmarks=true adds BOOKMARK events carrying only
  metadata.resourceVersion; a resourceVersion older than the compacted
  history gets one ERROR event (a Status, code 410, reason Expired), then
  the stream ends; timeoutSeconds ends the stream cleanly;
* bodies of lists and watches use chunked transfer coding, cut at random
  places (inside JSON values, across events);
* bearer-token authentication (401 with a Status otherwise);
* discovery: /api, /api/v1, /apis, /apis/GROUP, /apis/GROUP/VERSION, with
  the SMI groups taken from the CustomResourceDefinition manifests given
  with --crds (only served versions appear); objects live in the storage
  version and are served in any served version (conversion "None": only
  apiVersion changes);
* create (POST, 409 AlreadyExists), update (PUT, 409 Conflict when
  metadata.resourceVersion is stale), get, delete, merge-patch;
* TokenReview (authentication.k8s.io/v1): tokens registered with
  /fake/tokens are bound to a pod; a review authenticates them while that
  pod exists with the same uid, with extra authentication.kubernetes.io/
  pod-name and pod-uid, and honours spec.audiences;
* Lease (coordination.k8s.io/v1) is an ordinary resource, so leader
  election meets the real optimistic concurrency.

Test hooks under /fake/ (same bearer token): compact (drop history), drop
(cut every open watch, optionally inside a chunk), expire-continue (the
next continue token is answered 410), bulk (apply many writes, one event
each), generate (pods / SMI objects for scale tests), tokens, log, stats.

  fakeapi.py serve --cert C --key K --token T [--crds DIR] [--port-file F]
  fakeapi.py ctl --url U --ca CA --token T VERB [ARGS]   (see ctl_main)
"""

import argparse
import base64
import copy
import datetime
import http.server
import json
import os
import random
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid

try:
    import yaml
except ImportError:  # only for --crds and ctl apply of YAML
    yaml = None


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def status(code, reason, message, details=None):
    s = {"kind": "Status", "apiVersion": "v1", "metadata": {},
         "status": "Failure", "message": message, "reason": reason,
         "code": code}
    if details:
        s["details"] = details
    return s


class ApiError(Exception):
    def __init__(self, code, reason, message):
        Exception.__init__(self, message)
        self.code, self.reason, self.message = code, reason, message


# --- resources ---------------------------------------------------------------


class Resource:
    """A kind: group, plural, kind, scope, served versions, storage one."""

    def __init__(self, group, plural, kind, namespaced, versions, storage,
                 verbs=None, short=None):
        self.group, self.plural, self.kind = group, plural, kind
        self.namespaced = namespaced
        self.versions = list(versions)       # served, any order
        self.storage = storage
        self.verbs = verbs or ["create", "delete", "get", "list", "patch",
                               "update", "watch"]
        self.short = short or []

    def api_version(self, version):
        return version if self.group == "" else self.group + "/" + version


CORE = [
    Resource("", "namespaces", "Namespace", False, ["v1"], "v1"),
    Resource("", "nodes", "Node", False, ["v1"], "v1"),
    Resource("", "pods", "Pod", True, ["v1"], "v1"),
    Resource("", "services", "Service", True, ["v1"], "v1"),
    Resource("", "serviceaccounts", "ServiceAccount", True, ["v1"], "v1"),
    Resource("discovery.k8s.io", "endpointslices", "EndpointSlice", True,
             ["v1"], "v1"),
    Resource("coordination.k8s.io", "leases", "Lease", True, ["v1"], "v1"),
    Resource("authentication.k8s.io", "tokenreviews", "TokenReview", False,
             ["v1"], "v1", verbs=["create"]),
]


def load_crds(paths):
    out = []
    for p in paths:
        files = [p]
        if os.path.isdir(p):
            files = sorted(os.path.join(p, f) for f in os.listdir(p)
                           if f.endswith((".yaml", ".yml", ".json")))
        for f in files:
            with open(f) as fh:
                docs = list(yaml.safe_load_all(fh))
            for d in docs:
                if not d or d.get("kind") != "CustomResourceDefinition":
                    continue
                spec = d["spec"]
                served = [v["name"] for v in spec["versions"]
                          if v.get("served")]
                storage = [v["name"] for v in spec["versions"]
                           if v.get("storage")]
                if not served:
                    continue
                out.append(Resource(spec["group"], spec["names"]["plural"],
                                    spec["names"]["kind"],
                                    spec.get("scope") == "Namespaced",
                                    served, storage[0],
                                    short=spec["names"].get("shortNames")))
    return out


# --- the store -----------------------------------------------------------------


class Store:
    def __init__(self, resources, history_max):
        self.lock = threading.Condition()
        self.resources = resources
        self.rv = 100
        self.objects = {}        # (group, plural) -> {(ns, name): obj}
        self.history = []        # (rv, (group, plural), type, obj)
        self.compacted = 0       # new watches/lists from below: 410
        self.trimmed = 0         # history dropped up to here (memory)
        self.history_max = history_max
        self.snapshots = {}      # continue id -> (rv, [items])
        self.expire_next_continue = False
        self.tokens = {}         # token -> {namespace, sa, pod, audiences}
        self.drop_gen = 0        # bumped to cut the open watches
        self.drop_mode = "close"
        for r in resources:
            self.objects[(r.group, r.plural)] = {}

    def find(self, group, version, plural):
        for r in self.resources:
            if r.group == group and r.plural == plural and \
                    version in r.versions:
                return r
        return None

    def _record(self, res, typ, obj):
        self.history.append((self.rv, (res.group, res.plural), typ,
                             copy.deepcopy(obj)))
        if len(self.history) > self.history_max:
            drop = len(self.history) - self.history_max
            self.trimmed = self.history[drop - 1][0]
            self.compacted = max(self.compacted, self.trimmed)
            del self.history[:drop]
        self.lock.notify_all()

    def compact(self):
        """Like etcd compaction: nothing before now can be watched from or
        listed at any more; established watches go on (the watch cache
        serves them)."""
        with self.lock:
            self.compacted = self.rv
            self.snapshots = {}

    # writes; callers hold the lock
    def create(self, res, ns, obj):
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
            meta["name"] = name
        if not name:
            raise ApiError(422, "Invalid", "metadata.name: Required value")
        if res.namespaced:
            ns = ns or meta.get("namespace") or "default"
            meta["namespace"] = ns
        else:
            ns = ""
            meta.pop("namespace", None)
        objs = self.objects[(res.group, res.plural)]
        if (ns, name) in objs:
            raise ApiError(409, "AlreadyExists", '%s "%s" already exists'
                           % (res.plural, name))
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        obj["apiVersion"] = res.api_version(res.storage)
        obj["kind"] = res.kind
        objs[(ns, name)] = obj
        self._record(res, "ADDED", obj)
        return obj

    def update(self, res, ns, name, obj):
        objs = self.objects[(res.group, res.plural)]
        ns = ns if res.namespaced else ""
        old = objs.get((ns, name))
        if old is None:
            raise ApiError(404, "NotFound", '%s "%s" not found'
                           % (res.plural, name))
        meta = obj.setdefault("metadata", {})
        want = meta.get("resourceVersion")
        if want and want != old["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", 'Operation cannot be fulfilled '
                           'on %s "%s": the object has been modified; please '
                           'apply your changes to the latest version and '
                           'try again' % (res.plural, name))
        self.rv += 1
        meta["name"] = name
        if res.namespaced:
            meta["namespace"] = ns
        meta["uid"] = old["metadata"]["uid"]
        meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
        meta["resourceVersion"] = str(self.rv)
        obj["apiVersion"] = res.api_version(res.storage)
        obj["kind"] = res.kind
        objs[(ns, name)] = obj
        self._record(res, "MODIFIED", obj)
        return obj

    def delete(self, res, ns, name):
        objs = self.objects[(res.group, res.plural)]
        ns = ns if res.namespaced else ""
        old = objs.pop((ns, name), None)
        if old is None:
            raise ApiError(404, "NotFound", '%s "%s" not found'
                           % (res.plural, name))
        self.rv += 1
        old = copy.deepcopy(old)
        old["metadata"]["resourceVersion"] = str(self.rv)
        self._record(res, "DELETED", old)
        return old


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = merge_patch(target.get(k), v)
    return target


def in_version(obj, res, version):
    o = dict(obj)
    o["apiVersion"] = res.api_version(version)
    return o


# --- generated objects (scale tests) ---------------------------------------------


def fat_pod(ns, name, node, sa, ip, labels):
    """A pod the size of a real one: managedFields, status, annotations."""
    t = now_rfc3339()
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns, "labels": labels,
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration":
                    json.dumps({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {"name": name, "labels": labels},
                                "spec": {"containers": [{"name": "app",
                                                         "image": "x"}]}}),
                "prometheus.io/scrape": "true"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": name[:-6] if len(name) > 6 else name,
                                 "uid": str(uuid.uuid4()),
                                 "controller": True,
                                 "blockOwnerDeletion": True}],
            "managedFields": [{
                "manager": "kube-controller-manager", "operation": "Update",
                "apiVersion": "v1", "time": t, "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:labels": {
                    "f:" + k: {} for k in labels}, "f:ownerReferences": {}},
                    "f:spec": {"f:containers": {'k:{"name":"app"}': {
                        ".": {}, "f:image": {}, "f:name": {},
                        "f:ports": {'k:{"containerPort":8080,"protocol":"TCP"}':
                                    {".": {}, "f:containerPort": {},
                                     "f:name": {}, "f:protocol": {}}},
                        "f:resources": {}, "f:terminationMessagePath": {}}}}}},
                {"manager": "kubelet", "operation": "Update",
                 "apiVersion": "v1", "time": t, "fieldsType": "FieldsV1",
                 "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {}, "f:podIP": {},
                                           "f:podIPs": {}, "f:phase": {},
                                           "f:containerStatuses": {}}}}]},
        "spec": {
            "nodeName": node, "serviceAccountName": sa,
            "serviceAccount": sa, "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable",
                 "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access", "projected": {
                "sources": [{"serviceAccountToken": {
                    "expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [
                        {"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "containers": [{
                "name": "app", "image": "registry.example/app:1.2.3",
                "imagePullPolicy": "IfNotPresent",
                "ports": [{"name": "http", "containerPort": 8080,
                           "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {
                    "fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "kube-api-access",
                                  "mountPath":
                                  "/var/run/secrets/kubernetes.io/serviceaccount",
                                  "readOnly": True}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"}]},
        "status": {
            "phase": "Running", "hostIP": "10.0.0.1", "podIP": ip,
            "podIPs": [{"ip": ip}], "startTime": t, "qosClass": "Burstable",
            "conditions": [
                {"type": c, "status": "True", "lastProbeTime": None,
                 "lastTransitionTime": t}
                for c in ("Initialized", "Ready", "ContainersReady",
                          "PodScheduled")],
            "containerStatuses": [{
                "name": "app", "ready": True, "restartCount": 0,
                "started": True, "image": "registry.example/app:1.2.3",
                "imageID": "registry.example/app@sha256:" + "0" * 64,
                "containerID": "containerd://" + uuid.uuid4().hex * 2,
                "state": {"running": {"startedAt": t}},
                "lastState": {}}]}}


def smi_objects(ns, i, versions):
    """A TrafficTarget, HTTPRouteGroup, TCPRoute and TrafficSplit set."""
    out = []
    if "traffictargets" in versions:
        out.append({"apiVersion": "access.smi-spec.io/" +
                    versions["traffictargets"], "kind": "TrafficTarget",
                    "metadata": {"name": "tt-%d" % i, "namespace": ns},
                    "spec": {"destination": {"kind": "ServiceAccount",
                                             "name": "sa-%d" % (i % 50),
                                             "namespace": ns},
                             "rules": [{"kind": "HTTPRouteGroup",
                                        "name": "routes-%d" % i,
                                        "matches": ["get"]}],
                             "sources": [{"kind": "ServiceAccount",
                                          "name": "sa-%d" % ((i + 1) % 50),
                                          "namespace": ns}]}})
    if "httproutegroups" in versions:
        out.append({"apiVersion": "specs.smi-spec.io/" +
                    versions["httproutegroups"], "kind": "HTTPRouteGroup",
                    "metadata": {"name": "routes-%d" % i, "namespace": ns},
                    "spec": {"matches": [{"name": "get", "methods": ["GET"],
                                          "pathRegex": "/api/v%d/.*" % i}]}})
    if "tcproutes" in versions:
        out.append({"apiVersion": "specs.smi-spec.io/" +
                    versions["tcproutes"], "kind": "TCPRoute",
                    "metadata": {"name": "tcp-%d" % i, "namespace": ns},
                    "spec": {"matches": {"ports": [8080 + i % 100]}}})
    if "trafficsplits" in versions:
        out.append({"apiVersion": "split.smi-spec.io/" +
                    versions["trafficsplits"], "kind": "TrafficSplit",
                    "metadata": {"name": "split-%d" % i, "namespace": ns},
                    "spec": {"service": "svc-%d" % i,
                             "backends": [{"service": "svc-%d-v1" % i,
                                           "weight": 90},
                                          {"service": "svc-%d-v2" % i,
                                           "weight": 10}]}})
    return out


# --- HTTP ------------------------------------------------------------------------


class ChunkedWriter:
    """Chunked transfer coding, with chunk boundaries at random places."""

    def __init__(self, wfile, rnd, maxchunk):
        self.wfile, self.rnd, self.maxchunk = wfile, rnd, maxchunk

    def write(self, data):
        while data:
            n = min(len(data), self.rnd.randint(1, self.maxchunk))
            self.wfile.write(b"%x\r\n" % n + data[:n] + b"\r\n")
            data = data[n:]
        self.wfile.flush()

    def end(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fakeapi"

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("fakeapi: " + fmt % args + "\n")

    def setup(self):
        http.server.BaseHTTPRequestHandler.setup(self)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError):
                self.close_connection = True
                raise

    # -- helpers
    @property
    def store(self):
        return self.server.store

    def note(self, code, extra=None):
        e = {"t": time.time(), "method": self.command, "path": self.upath,
             "query": self.q, "code": code}
        if extra:
            e.update(extra)
        with self.server.log_lock:
            self.server.log.append(e)

    def reply(self, code, body, chunked=False):
        data = json.dumps(body).encode()
        self.note(code)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.close_connection = True
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            w = ChunkedWriter(self.wfile, self.server.rnd(), 8192)
            w.write(data)
            w.end()
        else:
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def error(self, e):
        self.reply(e.code, status(e.code, e.reason, e.message))

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON")

    def authorised(self):
        h = self.headers.get("Authorization", "")
        if h.startswith("Bearer ") and h[7:].strip() in self.server.tokens:
            return True
        self.reply(401, status(401, "Unauthorized", "Unauthorized"))
        return False

    # -- dispatch
    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        self.upath = u.path
        self.q = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        if not self.authorised():
            return
        try:
            if self.upath.startswith("/fake/"):
                return self.fake()
            return self.api()
        except ApiError as e:
            self.error(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = handle_any

    # -- discovery and REST
    def api(self):
        parts = [p for p in self.upath.split("/") if p]
        s = self.store
        if self.upath == "/version":
            return self.reply(200, {"major": "1", "minor": "30",
                                    "gitVersion": "v1.30.0-fakeapi"})
        if parts == ["api"]:
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"],
                                    "serverAddressByClientCIDRs": []})
        if parts == ["apis"]:
            return self.reply(200, self.group_list())
        if len(parts) == 2 and parts[0] == "apis":
            g = [x for x in self.group_list()["groups"]
                 if x["name"] == parts[1]]
            if not g:
                raise ApiError(404, "NotFound", "the server could not find "
                               "the requested resource")
            return self.reply(200, dict(g[0], kind="APIGroup",
                                        apiVersion="v1"))
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the "
                           "requested resource")
        if not rest:
            return self.reply(200, self.resource_list(group, version))
        ns = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        res = s.find(group, version, rest[0])
        if res is None or (ns is not None and not res.namespaced) or \
                len(rest) > 2:
            raise ApiError(404, "NotFound", "the server could not find the "
                           "requested resource")
        name = rest[1] if len(rest) == 2 else None
        if res.plural == "tokenreviews":
            if self.command != "POST" or name:
                raise ApiError(405, "MethodNotAllowed", "create only")
            return self.token_review(self.body())
        if self.command == "GET" and name is None:
            if self.q.get("watch") in ("1", "true"):
                return self.watch(res, version, ns)
            return self.list(res, version, ns)
        if self.command == "GET":
            with s.lock:
                o = s.objects[(res.group, res.plural)].get(
                    (ns or "" if res.namespaced else "", name))
            if o is None:
                raise ApiError(404, "NotFound", '%s "%s" not found'
                               % (res.plural, name))
            return self.reply(200, in_version(o, res, version))
        if self.command == "POST" and name is None:
            obj = self.body()
            if not isinstance(obj, dict):
                raise ApiError(400, "BadRequest", "expected an object")
            with s.lock:
                o = s.create(res, ns, obj)
            return self.reply(201, in_version(o, res, version))
        if self.command == "PUT" and name:
            obj = self.body()
            with s.lock:
                o = s.update(res, ns or "", name, obj)
            return self.reply(200, in_version(o, res, version))
        if self.command == "PATCH" and name:
            patch = self.body()
            with s.lock:
                cur = s.objects[(res.group, res.plural)].get(
                    (ns or "" if res.namespaced else "", name))
                if cur is None:
                    raise ApiError(404, "NotFound", '%s "%s" not found'
                                   % (res.plural, name))
                o = merge_patch(copy.deepcopy(cur), patch)
                o["metadata"].pop("resourceVersion", None)
                o = s.update(res, ns or "", name, o)
            return self.reply(200, in_version(o, res, version))
        if self.command == "DELETE" and name:
            with s.lock:
                o = s.delete(res, ns or "", name)
            return self.reply(200, in_version(o, res, version))
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def group_list(self):
        groups = {}
        for r in self.store.resources:
            if r.group == "":
                continue
            g = groups.setdefault(r.group, [])
            for v in r.versions:
                if v not in g:
                    g.append(v)
        out = []
        for name, vs in sorted(groups.items()):
            vs = sorted(vs, key=version_key, reverse=True)
            out.append({"name": name, "versions": [
                {"groupVersion": name + "/" + v, "version": v} for v in vs],
                "preferredVersion": {"groupVersion": name + "/" + vs[0],
                                     "version": vs[0]}})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": out}

    def resource_list(self, group, version):
        rs = [r for r in self.store.resources
              if r.group == group and version in r.versions]
        if not rs:
            raise ApiError(404, "NotFound", "the server could not find the "
                           "requested resource")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": (group + "/" if group else "") + version,
                "resources": [{"name": r.plural, "singularName": "",
                               "namespaced": r.namespaced, "kind": r.kind,
                               "verbs": r.verbs, "shortNames": r.short}
                              for r in rs]}

    def list(self, res, version, ns):
        s = self.store
        limit = int(self.q.get("limit") or 0)
        cont = self.q.get("continue")
        with s.lock:
            if cont:
                try:
                    cid = json.loads(base64.b64decode(cont))["id"]
                except (ValueError, KeyError, TypeError):
                    raise ApiError(400, "BadRequest", "invalid continue "
                                   "token")
                snap = s.snapshots.get(cid)
                if s.expire_next_continue or snap is None:
                    s.expire_next_continue = False
                    s.snapshots.pop(cid, None)
                    raise ApiError(410, "Expired", "The provided continue "
                                   "parameter is too old to display a "
                                   "consistent list result. You can start "
                                   "a new list without the continue "
                                   "parameter.")
                rv, items = snap
                s.snapshots.pop(cid, None)
            else:
                want = self.q.get("resourceVersion")
                if want and want != "0" and int(want) < s.compacted:
                    raise ApiError(410, "Expired", "too old resource "
                                   "version: %s (%d)" % (want, s.compacted))
                rv = s.rv
                objs = s.objects[(res.group, res.plural)]
                items = [in_version(objs[k], res, version)
                         for k in sorted(objs)
                         if ns is None or k[0] == ns]
            page, rest = (items[:limit], items[limit:]) if limit else \
                (items, [])
            meta = {"resourceVersion": str(rv)}
            if rest:
                cid = uuid.uuid4().hex
                s.snapshots[cid] = (rv, rest)
                meta["continue"] = base64.b64encode(json.dumps(
                    {"id": cid, "rv": rv}).encode()).decode()
                meta["remainingItemCount"] = len(rest)
        # list items carry neither apiVersion nor kind, as in the real
        # server's JSON
        page = [{k: v for k, v in o.items() if k not in ("apiVersion",
                                                          "kind")}
                for o in page]
        self.reply(200, {"kind": res.kind + "List",
                         "apiVersion": res.api_version(version),
                         "metadata": meta, "items": page}, chunked=True)

    def watch(self, res, version, ns):
        s = self.store
        q = self.q
        rv = q.get("resourceVersion", "")
        bookmarks = q.get("allowWatchBookmarks") in ("true", "1")
        timeout = int(q.get("timeoutSeconds") or
                      random.randint(1800, 3600))
        deadline = time.time() + timeout
        self.note(200, {"watch": True, "rv": rv, "resource": res.plural})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        w = ChunkedWriter(self.wfile, self.server.rnd(), 512)
        key = (res.group, res.plural)
        with s.lock:
            drop_gen = s.drop_gen
            if rv in ("", "0"):
                start = s.rv
                initial = [("ADDED", o) for k, o in
                           sorted(s.objects[key].items())
                           if ns is None or k[0] == ns]
            elif int(rv) < s.compacted:
                initial, start = None, None
            else:
                start, initial = int(rv), []
        if initial is None:
            st = status(410, "Expired", "too old resource version: %s (%d)"
                        % (rv, s.compacted))
            w.write(json.dumps({"type": "ERROR", "object": st}).encode() +
                    b"\n")
            w.end()
            return
        for typ, o in initial:
            w.write(json.dumps({"type": typ, "object": in_version(
                o, res, version)}).encode() + b"\n")
        last = start
        next_bookmark = time.time() + self.server.bookmark_interval
        while True:
            out = []
            with s.lock:
                while True:
                    if s.drop_gen != drop_gen:
                        break
                    if s.history and s.history[-1][0] > last:
                        break
                    t = min(deadline, next_bookmark) - time.time()
                    if t <= 0:
                        break
                    s.lock.wait(t)
                if s.drop_gen != drop_gen:
                    mode = s.drop_mode
                    drop = True
                else:
                    drop = False
                    if last < s.trimmed:
                        # history this watcher still needed is gone
                        out.append(("ERROR", status(
                            410, "Expired", "too old resource version: "
                            "%d (%d)" % (last, s.compacted))))
                        last = None
                    else:
                        for erv, ekey, typ, o in s.history:
                            if erv > last and ekey == key and (
                                    ns is None or
                                    o["metadata"].get("namespace") == ns):
                                out.append((typ, in_version(o, res,
                                                            version)))
                        if s.history:
                            last = max(last, s.history[-1][0])
                    cur = s.rv
            if drop:
                if mode == "midchunk":
                    ev = json.dumps({"type": "MODIFIED", "object": {}})
                    self.wfile.write(b"%x\r\n" % 200 + ev[:15].encode())
                    self.wfile.flush()
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            for typ, o in out:
                w.write(json.dumps({"type": typ, "object": o}).encode() +
                        b"\n")
            if last is None:
                w.end()
                return
            if bookmarks and time.time() >= next_bookmark:
                w.write(json.dumps({"type": "BOOKMARK", "object": {
                    "kind": res.kind, "apiVersion": res.api_version(version),
                    "metadata": {"resourceVersion": str(cur)}}}).encode() +
                    b"\n")
                with self.server.log_lock:
                    self.server.bookmarks.append((res.plural, cur))
            if time.time() >= next_bookmark:
                next_bookmark = time.time() + self.server.bookmark_interval
            if time.time() >= deadline:
                w.end()
                return

    def token_review(self, tr):
        s = self.store
        spec = (tr or {}).get("spec") or {}
        token = spec.get("token", "")
        auds = spec.get("audiences") or ["https://kubernetes.default.svc"]
        st = {"authenticated": False}
        with s.lock:
            t = s.tokens.get(token)
            pod = None
            if t:
                pod = s.objects[("", "pods")].get((t["namespace"], t["pod"]))
            if t is None:
                st["error"] = "invalid bearer token"
            elif pod is None or pod["metadata"]["uid"] != t["uid"]:
                st["error"] = "pod %s/%s (uid %s) no longer exists" % (
                    t["namespace"], t["pod"], t["uid"])
            elif not set(auds) & set(t["audiences"]):
                st["error"] = "token audiences %s is invalid for the " \
                    "target audiences %s" % (t["audiences"], auds)
            else:
                st = {"authenticated": True,
                      "audiences": sorted(set(auds) & set(t["audiences"])),
                      "user": {
                          "username": "system:serviceaccount:%s:%s" % (
                              t["namespace"], t["sa"]),
                          "uid": t["sa_uid"],
                          "groups": ["system:serviceaccounts",
                                     "system:serviceaccounts:" +
                                     t["namespace"],
                                     "system:authenticated"],
                          "extra": {
                              "authentication.kubernetes.io/pod-name":
                                  [t["pod"]],
                              "authentication.kubernetes.io/pod-uid":
                                  [t["uid"]]}}}
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None},
               "spec": spec, "status": st}
        out["spec"] = dict(spec, token="")  # never echo the token
        self.reply(201, out)

    # -- test hooks
    def fake(self):
        s = self.store
        what = self.upath[len("/fake/"):]
        if what == "log":
            with self.server.log_lock:
                out = {"requests": list(self.server.log),
                       "bookmarks": list(self.server.bookmarks)}
            return self.reply(200, out)
        if what == "stats":
            with s.lock:
                out = {"resourceVersion": s.rv, "compacted": s.compacted,
                       "history": len(s.history),
                       "objects": {"%s/%s" % k: len(v)
                                   for k, v in s.objects.items()}}
            return self.reply(200, out)
        if self.command != "POST":
            raise ApiError(405, "MethodNotAllowed", "POST")
        body = self.body() or {}
        if what == "compact":
            s.compact()
            return self.reply(200, {"compacted": s.compacted})
        if what == "drop":
            # {"mode": "close"|"midchunk", "ops": [...], "compact": bool}:
            # the writes happen after the open watches last looked, so
            # they see none of them; with compact, resuming from where they
            # were is no longer possible (410)
            with s.lock:
                s.drop_mode = body.get("mode", "close")
                s.drop_gen += 1
                self.apply_ops(body.get("ops") or [])
                if body.get("compact"):
                    s.compacted = s.rv
                    s.snapshots = {}
                s.lock.notify_all()
            return self.reply(200, {"resourceVersion": s.rv})
        if what == "expire-continue":
            with s.lock:
                s.expire_next_continue = True
            return self.reply(200, {})
        if what == "tokens":
            # {"token", "namespace", "serviceAccount", "pod", "audiences"},
            # or {"token", "delete": true} (revoked)
            if body.get("delete"):
                with s.lock:
                    s.tokens.pop(body["token"], None)
                return self.reply(200, {})
            with s.lock:
                pod = s.objects[("", "pods")].get((body["namespace"],
                                                    body["pod"]))
                if pod is None:
                    raise ApiError(404, "NotFound", "no such pod")
                sa = s.objects[("", "serviceaccounts")].get(
                    (body["namespace"], body["serviceAccount"]))
                s.tokens[body["token"]] = {
                    "namespace": body["namespace"], "pod": body["pod"],
                    "sa": body["serviceAccount"],
                    "sa_uid": sa["metadata"]["uid"] if sa else "",
                    "uid": pod["metadata"]["uid"],
                    "audiences": body.get("audiences") or
                    ["https://kubernetes.default.svc"]}
            return self.reply(200, {})
        if what == "bulk":
            return self.bulk(body)
        if what == "generate":
            return self.generate(body)
        raise ApiError(404, "NotFound", "no such hook")

    def resource_of(self, obj):
        av = obj.get("apiVersion", "")
        group, _, version = av.rpartition("/")
        for r in self.store.resources:
            if r.group == group and r.kind == obj.get("kind") and \
                    version in r.versions:
                return r
        raise ApiError(404, "NotFound", "no resource for %s %s" % (
            av, obj.get("kind")))

    def bulk(self, ops):
        """[{"op": "create"|"update"|"delete"|"apply", "object": {...}}]:
        one write (one event) each, as separate API calls would be."""
        s = self.store
        with s.lock:
            done = self.apply_ops(ops)
        return self.reply(200, {"applied": done, "resourceVersion": s.rv})

    def apply_ops(self, ops):
        """The writes of ops, in order; the caller holds the lock."""
        s = self.store
        done = 0
        for op in ops:
            obj = copy.deepcopy(op["object"])
            res = self.resource_of(obj)
            meta = obj.get("metadata", {})
            ns = meta.get("namespace", "default") if res.namespaced \
                else ""
            if op["op"] == "create":
                s.create(res, ns, obj)
            elif op["op"] == "update":
                s.update(res, ns, meta["name"], obj)
            elif op["op"] == "apply":
                if (ns, meta["name"]) in s.objects[(res.group,
                                                    res.plural)]:
                    meta.pop("resourceVersion", None)
                    s.update(res, ns, meta["name"], obj)
                else:
                    s.create(res, ns, obj)
            elif op["op"] == "delete":
                s.delete(res, ns, meta["name"])
            done += 1
        return done

    def generate(self, spec):
        """{"pods": N, "namespaces": K, "nodes": [..], "smi": M}"""
        s = self.store
        n = int(spec.get("pods", 0))
        nss = int(spec.get("namespaces", 1))
        nodes = spec.get("nodes") or ["node-1"]
        smi = int(spec.get("smi", 0))
        prefix = spec.get("prefix", "gen")
        with s.lock:
            for k in range(nss):
                ns = "%s-%d" % (prefix, k)
                nsres = s.find("", "v1", "namespaces")
                if ("", ns) not in s.objects[("", "namespaces")]:
                    s.create(nsres, "", {"metadata": {"name": ns, "labels": {
                        "weft.io/mesh": "enabled"}}})
            podres = s.find("", "v1", "pods")
            for i in range(n):
                ns = "%s-%d" % (prefix, i % nss)
                ip = "10.%d.%d.%d" % (64 + i // 65000, (i // 250) % 256,
                                      i % 250 + 2)
                s.create(podres, ns, fat_pod(
                    ns, "%s-pod-%d-abcde" % (prefix, i),
                    nodes[i % len(nodes)], "sa-%d" % (i % 50), ip,
                    {"app": "app-%d" % (i % 100), "pod-template-hash":
                     "5d8f7c9b4"}))
            versions = {}
            for r in s.resources:
                if r.group.endswith("smi-spec.io"):
                    versions[r.plural] = sorted(r.versions, key=version_key)[-1]
            made = 0
            i = 0
            while made < smi:
                ns = "%s-%d" % (prefix, i % nss)
                for o in smi_objects(ns, i, versions):
                    if made >= smi:
                        break
                    s.create(self.resource_of(o), ns, o)
                    made += 1
                i += 1
        return self.reply(200, {"resourceVersion": s.rv})


def version_key(v):
    import re
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (0, 0, 0, v)
    lvl = {"alpha": 1, "beta": 2, None: 3}[m.group(2)]
    return (1, lvl, int(m.group(1)), int(m.group(3) or 0))


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def rnd(self):
        with self.log_lock:
            return random.Random(self.seed_rng.random())


def serve(args):
    resources = list(CORE)
    if args.crds:
        resources += load_crds(args.crds)
    host, _, port = args.listen.rpartition(":")
    httpd = Server((host, int(port)), Handler)
    httpd.store = Store(resources, args.history)
    httpd.tokens = set(args.token)
    httpd.verbose = args.verbose
    httpd.bookmark_interval = args.bookmark_interval
    httpd.log = []
    httpd.bookmarks = []
    httpd.log_lock = threading.RLock()
    httpd.seed_rng = random.Random(args.seed)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                   do_handshake_on_connect=False)
    for f in args.seed_file or []:
        with open(f) as fh:
            docs = list(yaml.safe_load_all(fh)) if not f.endswith(".json") \
                else [json.load(fh)]
        h = Handler.__new__(Handler)
        h.server = httpd
        with httpd.store.lock:
            for d in docs:
                if not d:
                    continue
                for o in (d["items"] if d.get("kind") == "List" else [d]):
                    r = h.resource_of(o)
                    httpd.store.create(r, o.get("metadata", {}).get(
                        "namespace", "default") if r.namespaced else "", o)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as fh:
            fh.write("%d\n" % httpd.server_address[1])
        os.rename(tmp, args.port_file)
    sys.stderr.write("fakeapi: serving https://%s:%d\n" %
                     httpd.server_address[:2])
    try:
        httpd.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


# --- a client for the tests -------------------------------------------------------


def ctl_main(args):
    ctx = ssl.create_default_context(cafile=args.ca)

    def call(method, path, body=None, ok=(200, 201)):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(args.url + path, data=data,
                                     method=method)
        req.add_header("Authorization", "Bearer " + args.token)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            b = json.loads(e.read() or b"null")
            if e.code in ok:
                return e.code, b
            sys.exit("fakeapi ctl: %s %s: %d %s" % (
                method, path, e.code, (b or {}).get("message")))

    def docs_of(files):
        out = []
        for f in files:
            with (sys.stdin if f == "-" else open(f)) as fh:
                for d in yaml.safe_load_all(fh):
                    if d:
                        out += d["items"] if d.get("kind") == "List" \
                            else [d]
        return out

    v, rest = args.verb, args.args
    if v in ("apply", "delete"):
        ops = [{"op": "apply" if v == "apply" else "delete", "object": o}
               for o in docs_of(rest)]
        _, b = call("POST", "/fake/bulk", ops)
    elif v == "bulk":
        _, b = call("POST", "/fake/bulk", json.load(
            sys.stdin if rest[0] == "-" else open(rest[0])))
    elif v in ("get", "post", "put", "delete-path"):
        m = {"get": "GET", "post": "POST", "put": "PUT",
             "delete-path": "DELETE"}[v]
        body = json.loads(rest[1]) if len(rest) > 1 else None
        _, b = call(m, rest[0], body, ok=(200, 201, 404, 409, 410))
    elif v == "churn":
        # churn NS NODE N: N pod events (creates, then deletes of every
        # other one) in one burst; prints the pods that remain
        ns, node, n = rest[0], rest[1], int(rest[2])
        ops, alive = [], []
        creates = (n * 2 + 2) // 3
        for i in range(creates):
            p = fat_pod(ns, "churn-%d" % i, node, "default",
                        "10.99.%d.%d" % (i // 250, i % 250 + 2),
                        {"app": "churn"})
            ops.append({"op": "create", "object": p})
            alive.append(p["metadata"]["name"])
        for i in range(0, creates, 2):
            if len(ops) >= n:
                break
            ops.append({"op": "delete", "object": {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "churn-%d" % i, "namespace": ns}}})
            alive.remove("churn-%d" % i)
        _, b = call("POST", "/fake/bulk", ops)
        b = {"events": len(ops), "remaining": len(alive),
             "resourceVersion": b["resourceVersion"]}
    else:
        path = {"compact": "/fake/compact", "drop": "/fake/drop",
                "expire-continue": "/fake/expire-continue",
                "tokens": "/fake/tokens", "generate": "/fake/generate",
                "log": "/fake/log", "stats": "/fake/stats"}.get(v)
        if path is None:
            sys.exit("fakeapi ctl: unknown verb " + v)
        body = json.loads(rest[0]) if rest else {}
        _, b = call("GET" if v in ("log", "stats") else "POST", path,
                    None if v in ("log", "stats") else body)
    json.dump(b, sys.stdout)
    sys.stdout.write("\n")


def main():
    ap = argparse.ArgumentParser(prog="fakeapi")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--listen", default="127.0.0.1:0")
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    s.add_argument("--token", action="append", required=True)
    s.add_argument("--crds", action="append")
    s.add_argument("--seed-file", action="append")
    s.add_argument("--port-file")
    s.add_argument("--history", type=int, default=100000,
                   help="events kept before the oldest are compacted")
    s.add_argument("--bookmark-interval", type=float, default=60.0)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--verbose", action="store_true")
    c = sub.add_parser("ctl")
    c.add_argument("--url", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--token", required=True)
    c.add_argument("verb")
    c.add_argument("args", nargs="*")
    args = ap.parse_args()
    if args.cmd == "serve":
        serve(args)
    else:
        ctl_main(args)


if __name__ == "__main__":
    main()
