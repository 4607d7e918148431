#!/usr/bin/python3
"""deploy/kubernetes, offline (TAP; `make check`):

  * `kubectl kustomize deploy/kubernetes` (and .../uninstall) renders;
  * our CRDs: one storage version each, served, structural schemas; every
    field (path and type) of every version of the upstream SMI CRDs in
    ../shared/smi/upstream-crds (or $WEFT_UPSTREAM_CRDS) is in ours, for
    the same version;
  * the DaemonSet is not privileged and has what issue 7 asks (host
    network, NET_ADMIN + NET_RAW only, probes on /readyz, requests,
    tolerations, maxUnavailable 1); controller and RBAC least privilege.

  manifests.py                      all of it (the repository from __file__)
  manifests.py crds RENDERED [DIR]  one part, on a rendered file
  manifests.py workloads RENDERED
"""
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    print("1..0 # SKIP python3-yaml not installed")
    sys.exit(0)

n = 0
failed = False


def ok(cond, what, diag=None):
    global n, failed
    n += 1
    print("%sok %d - %s" % ("" if cond else "not ", n, what))
    if not cond:
        failed = True
        for line in (diag or []):
            print("#   " + line)


def skip(what, why):
    global n
    n += 1
    print("ok %d - %s # SKIP %s" % (n, what, why))


def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


# --- CRDs -------------------------------------------------------------------------


def fields(schema, prefix=""):
    """{path: node} of every field under schema ("a.b", "a[]", "a[].*")."""
    out = {}
    props = schema.get("properties") or {}
    for name, sub in props.items():
        p = prefix + "." + name if prefix else name
        out[p] = sub
        out.update(fields(sub, p))
    if "items" in schema:
        p = prefix + "[]"
        out[p] = schema["items"]
        out.update(fields(schema["items"], p))
    ap = schema.get("additionalProperties")
    if isinstance(ap, dict):
        p = prefix + ".*"
        out[p] = ap
        out.update(fields(ap, p))
    return out


def type_of(node):
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return node.get("type")


def type_covers(ours, theirs):
    """Whether our type accepts what theirs describes."""
    if theirs is None or ours == theirs:
        return True
    if ours == "int-or-string" and theirs in ("integer", "number", "string"):
        return True
    # SMI A-15 and port fields: whole numbers where the CRD said number
    return ours == "integer" and theirs == "number"


def covered(path, ours):
    """The path itself, or an ancestor that keeps unknown fields."""
    if path in ours:
        return ours[path]
    parts = path
    while parts:
        cut = max(parts.rfind("."), parts.rfind("["))
        if cut <= 0:
            break
        parts = parts[:cut]
        node = ours.get(parts)
        if node is not None and node.get("x-kubernetes-preserve-unknown-fields"):
            return {"x-kubernetes-preserve-unknown-fields": True}
    return None


def structural(schema, path="(root)"):
    """Problems that make a schema non-structural (every node typed)."""
    probs = []
    if not (schema.get("type") or schema.get("x-kubernetes-int-or-string") or
            schema.get("x-kubernetes-preserve-unknown-fields")):
        probs.append("%s: no type" % path)
    for name, sub in (schema.get("properties") or {}).items():
        probs += structural(sub, path + "." + name)
    if "items" in schema:
        probs += structural(schema["items"], path + "[]")
    if isinstance(schema.get("additionalProperties"), dict):
        if schema.get("properties"):
            probs.append("%s: properties and additionalProperties" % path)
        probs += structural(schema["additionalProperties"], path + ".*")
    return probs


# The upstream CRDs' fields (name, version, path, type), derived from
# ../shared/smi/upstream-crds and committed, so that the comparison runs
# where those files are not (a fresh clone in CI): facts about the upstream
# schemas, not copies of them.
FIELDS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "upstream-crd-fields.txt")


def upstream_fields(upstream_dir):
    """{crd name: {version: {path: type or None}}} from the upstream files."""
    out = {}
    for root, _, names in os.walk(upstream_dir):
        for f in sorted(names):
            if not f.endswith(".yaml"):
                continue
            for crd in docs(os.path.join(root, f)):
                if crd.get("kind") != "CustomResourceDefinition":
                    continue
                vers = out.setdefault(crd["metadata"]["name"], {})
                for v in crd["spec"].get("versions") or []:
                    vers.setdefault(v["name"], {})
                for ver, schema in upstream_versions(crd):
                    vers.setdefault(ver, {}).update(
                        {p: type_of(nd) for p, nd in fields(schema).items()})
    return out


def read_fields(path):
    out = {}
    with open(path) as f:
        for line in f:
            if not line.strip() or line.startswith("#"):
                continue
            w = line.split()
            vers = out.setdefault(w[0], {}).setdefault(w[1], {})
            if len(w) == 4:
                vers[w[2]] = None if w[3] == "-" else w[3]
    return out


def dump_fields(up):
    print("# SMI upstream CRD fields: crd version path type "
          "(test/unit/deploy/manifests.py dump-upstream)")
    for name in sorted(up):
        for ver in sorted(up[name]):
            if not up[name][ver]:
                print("%s %s" % (name, ver))
            for path, typ in sorted(up[name][ver].items()):
                print("%s %s %s %s" % (name, ver, path, typ or "-"))


def upstream_versions(crd):
    """[(version, schema)] an upstream CRD describes.  apiextensions/v1:
    each version's schema.  v1beta1: the one top-level validation schema,
    for spec.version (the only version those CRDs served)."""
    spec = crd["spec"]
    out = []
    if crd["apiVersion"].endswith("/v1"):
        for v in spec["versions"]:
            s = (v.get("schema") or {}).get("openAPIV3Schema")
            if s:
                out.append((v["name"], s))
    else:
        s = (spec.get("validation") or {}).get("openAPIV3Schema")
        if s:
            out.append((spec.get("version") or spec["versions"][0]["name"], s))
    return out


def check_crds(rendered, upstream_dir):
    ours = {d["metadata"]["name"]: d for d in docs(rendered)
            if d.get("kind") == "CustomResourceDefinition"}
    ok(len(ours) == 5, "five SMI CRDs (%s)" % ", ".join(sorted(ours)))
    for name, crd in sorted(ours.items()):
        vs = crd["spec"]["versions"]
        storage = [v["name"] for v in vs if v.get("storage")]
        ok(len(storage) == 1, "%s: one storage version (%s)" % (name, storage))
        ok(all(v.get("served") for v in vs if v.get("storage")),
           "%s: the storage version is served" % name)
        probs = []
        for v in vs:
            probs += ["%s: %s" % (v["name"], p) for p in structural(
                v["schema"]["openAPIV3Schema"])]
        ok(not probs, "%s: structural schemas" % name, probs)
    upstream = None
    if upstream_dir is not None and os.path.isdir(upstream_dir):
        upstream = upstream_fields(upstream_dir)
        # The committed list must be what the upstream CRDs say today.
        if os.path.exists(FIELDS_FILE):
            listed = read_fields(FIELDS_FILE)
            ok(listed == upstream, "%s matches %s" % (
                os.path.basename(FIELDS_FILE), upstream_dir),
               ["regenerate: manifests.py dump-upstream %s > %s" % (
                   upstream_dir, FIELDS_FILE)])
    elif os.path.exists(FIELDS_FILE):
        upstream = read_fields(FIELDS_FILE)
    if upstream is None:
        skip("upstream CRD field coverage", "no %s, no %s" % (
            upstream_dir, FIELDS_FILE))
        return
    compared = 0
    for name in sorted(upstream):
        mine = ours.get(name)
        ok(mine is not None, "%s is ours too" % name)
        if mine is None:
            continue
        our_versions = {v["name"]: v for v in mine["spec"]["versions"]}
        listed = sorted(upstream[name])
        missing = [v for v in listed if v not in our_versions]
        ok(not missing, "%s lists every upstream version (%s)" % (
            name, ", ".join(listed)), ["missing %s" % m for m in missing])
        for ver in listed:
            mv = our_versions.get(ver)
            theirs = upstream[name][ver]
            mf = fields(mv["schema"]["openAPIV3Schema"]) if mv else {}
            probs = []
            for path, typ in sorted(theirs.items()):
                got = covered(path, mf)
                if got is None:
                    probs.append("missing %s" % path)
                elif not got.get("x-kubernetes-preserve-unknown-fields") \
                        and not type_covers(type_of(got), typ):
                    probs.append("%s: ours %s, upstream %s" % (
                        path, type_of(got), typ))
            compared += len(theirs)
            ok(mv is not None and not probs,
               "%s %s: all %d upstream fields covered" % (
                   name, ver, len(theirs)), probs)
    ok(compared > 100, "compared %d upstream fields in all" % compared)


# --- workloads ----------------------------------------------------------------------


def find(objs, kind, name):
    for o in objs:
        if o.get("kind") == kind and o["metadata"]["name"] == name:
            return o
    return None


def check_workloads(rendered):
    objs = docs(rendered)
    ds = find(objs, "DaemonSet", "weft-node")
    ok(ds is not None, "DaemonSet weft-node")
    if ds is None:
        return
    pod = ds["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c.get("securityContext") or {}
    caps = sc.get("capabilities") or {}
    ok(sc.get("privileged") in (None, False), "node: not privileged")
    ok(sc.get("allowPrivilegeEscalation") is False,
       "node: no privilege escalation")
    ok(sorted(caps.get("add") or []) == ["NET_ADMIN", "NET_RAW"],
       "node: adds NET_ADMIN and NET_RAW only (%s)" % caps.get("add"))
    ok(caps.get("drop") == ["ALL"], "node: drops every other capability")
    ok(pod.get("hostNetwork") is True, "node: host network")
    ok(not pod.get("hostPID") and not pod.get("hostIPC"),
       "node: no host PID or IPC namespace")
    ok(all(v.get("hostPath") is None or v["hostPath"]["path"] == "/var/lib/weft"
           for v in pod.get("volumes") or []),
       "node: no host path but its state directory")
    ok(pod.get("automountServiceAccountToken") is False,
       "node: no API token mounted")
    tok = [s["serviceAccountToken"] for v in pod.get("volumes") or []
           for s in (v.get("projected") or {}).get("sources") or []
           if "serviceAccountToken" in s]
    ok(len(tok) == 1 and tok[0].get("audience") == "weft",
       "node: a projected token for audience weft")
    ok((c.get("readinessProbe") or {}).get("httpGet", {}).get("path") ==
       "/readyz", "node: readiness probe on /readyz")
    ok((c.get("livenessProbe") or {}).get("httpGet", {}).get("path") ==
       "/healthz", "node: liveness probe on /healthz")
    req = (c.get("resources") or {}).get("requests") or {}
    ok("cpu" in req and "memory" in req, "node: resource requests")
    ok({"operator": "Exists"} in (pod.get("tolerations") or []),
       "node: tolerates every taint")
    us = ds["spec"].get("updateStrategy") or {}
    ok(us.get("type") == "RollingUpdate" and
       us.get("rollingUpdate", {}).get("maxUnavailable") == 1,
       "node: rolling update, maxUnavailable 1")
    ca = [v for v in pod.get("volumes") or [] if "secret" in v]
    ok(len(ca) == 1 and [i["key"] for i in ca[0]["secret"].get("items", [])]
       == ["tls.crt"], "node: mounts the CA certificate, not its key")

    dep = find(objs, "Deployment", "weft-controller")
    ok(dep is not None, "Deployment weft-controller")
    if dep is not None:
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        sc = c.get("securityContext") or {}
        ok(pod.get("securityContext", {}).get("runAsNonRoot") is True and
           sc.get("capabilities", {}).get("drop") == ["ALL"] and
           not sc.get("capabilities", {}).get("add") and
           sc.get("allowPrivilegeEscalation") is False,
           "controller: non-root, no capabilities")
        ok((c.get("readinessProbe") or {}).get("httpGet", {}).get("path") ==
           "/readyz", "controller: readiness probe on /readyz")
        ok("--source=kubernetes" in c.get("args", []),
           "controller: --source=kubernetes")
    svc = find(objs, "Service", "weft-controller")
    ok(svc is not None and svc["spec"]["ports"][0]["port"] == 15010,
       "Service weft-controller on 15010")

    roles = [o for o in objs if o.get("kind") in ("ClusterRole", "Role")]
    probs = []
    for r in roles:
        for rule in r.get("rules") or []:
            for k in ("verbs", "resources", "apiGroups"):
                if "*" in rule.get(k, []):
                    probs.append("%s: * in %s" % (r["metadata"]["name"], k))
            if "secrets" in rule.get("resources", []):
                probs.append("%s: reads secrets" % r["metadata"]["name"])
            bad = set(rule.get("verbs", [])) - {"get", "list", "watch",
                                                "create", "update"}
            if bad:
                probs.append("%s: verbs %s" % (r["metadata"]["name"],
                                               sorted(bad)))
    ok(roles and not probs, "RBAC: no wildcards, no secrets, no deletes",
       probs)
    binds = [o for o in objs if o.get("kind") in ("ClusterRoleBinding",
                                                  "RoleBinding")]
    ok(not [b for b in binds for s in b.get("subjects") or []
            if s.get("name") == "weft-node"],
       "RBAC: weft-node is granted nothing")
    ok(find(objs, "Namespace", "weft-system") is not None,
       "Namespace weft-system")


def render(kubectl, d, out):
    r = subprocess.run([kubectl, "kustomize", d], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    with open(out, "w") as f:
        f.write(r.stdout)
    return r


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    if what == "dump-upstream":
        dump_fields(upstream_fields(sys.argv[2]))
        return 0
    if what == "crds":
        check_crds(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    elif what == "workloads":
        check_workloads(sys.argv[2])
    else:
        top = os.path.abspath(os.path.join(os.path.dirname(__file__),
                                           "..", "..", ".."))
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            print("1..0 # SKIP kubectl not installed (kubectl kustomize)")
            return 0
        upstream = os.environ.get("WEFT_UPSTREAM_CRDS") or os.path.join(
            top, "..", "shared", "smi", "upstream-crds")
        tmp = tempfile.mkdtemp(prefix="weft-manifests.")
        try:
            out = os.path.join(tmp, "weft.yaml")
            r = render(kubectl, os.path.join(top, "deploy", "kubernetes"),
                       out)
            ok(r.returncode == 0 and "kind: DaemonSet" in r.stdout,
               "kubectl kustomize deploy/kubernetes renders",
               r.stderr.splitlines())
            r2 = render(kubectl, os.path.join(top, "deploy", "kubernetes",
                                              "uninstall"),
                        os.path.join(tmp, "uninstall.yaml"))
            ok(r2.returncode == 0 and "weft-cleanup" in r2.stdout and
               "--cleanup" in r2.stdout,
               "kubectl kustomize deploy/kubernetes/uninstall renders "
               "(weft node --cleanup)", r2.stderr.splitlines())
            if r.returncode == 0:
                check_crds(out, upstream)
                check_workloads(out)
        finally:
            shutil.rmtree(tmp)
    print("1..%d" % n)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
