/* Manifests: YAML/JSON loading, validation messages, the model and the
 * snapshot view; the directory source's last-good fallback. */
#include "config.h"

#include <json-c/json.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft/controller.h"
#include "weft/manifest.h"
#include "../../tap.h"

#ifndef TEST_DATADIR
#define TEST_DATADIR "test/unit/controlplane/data"
#endif

static const char *datadir;

static void
load(const char *name, struct weft_manifest_docs *d, struct weft_errors *e)
{
	char path[1024];

	snprintf(path, sizeof(path), "%s/%s", datadir, name);
	(void)weft_manifest_load_file(path, name, d, e);
}

static const struct weft_snap_pod *
pod(const struct weft_snapshot *s, const char *ns, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_pods; i++)
		if (strcmp(s->pods[i].namespace, ns) == 0 &&
		    strcmp(s->pods[i].name, name) == 0)
			return &s->pods[i];
	return NULL;
}

static const struct weft_snap_service *
service(const struct weft_snapshot *s, const char *ns, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_services; i++)
		if (strcmp(s->services[i].namespace, ns) == 0 &&
		    strcmp(s->services[i].name, name) == 0)
			return &s->services[i];
	return NULL;
}

/* Check errs against want (NULL-terminated), exactly and in order. */
static void
errors_are(const struct weft_errors *e, const char *const *want,
    const char *what)
{
	size_t n = 0;

	while (want[n] != NULL)
		n++;
	is_int(e->n, n, "%s: %zu error(s)", what, n);
	for (size_t i = 0; i < n && i < e->n; i++)
		is_str(e->msgs[i], want[i], "%s: error %zu", what, i + 1);
	for (size_t i = n; i < e->n; i++)
		diag("unexpected: %s", e->msgs[i]);
}

static void
test_cluster(void)
{
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m;
	struct weft_snapshot v;
	const struct weft_snap_namespace *ns;
	const struct weft_snap_pod *p;
	const struct weft_snap_service *s;
	char buf[WEFT_CIDR_STRLEN];
	static const char *const want[] = {
		"list.yaml: document 1 (Pod default/bad): items[1].spec.nodeName: "
		    "expected a string, got 42",
		NULL
	};

	load("multi.yaml", &d, &e);
	load("objects.json", &d, &e);
	load("list.yaml", &d, &e);
	is_int(e.n, 0, "files parse");
	is_int(d.n, 15, "documents: 12 YAML + 2 JSON + 1 List");
	is_int(d.docs[2].index, 4, "document index counts the empty one");
	m = weft_model_build(&d, &e);
	ok(m != NULL, "model built");
	errors_are(&e, want, "cluster");

	is_int(m->all.n_nodes, 2, "nodes");
	is_str(weft_ip_str(&m->all.nodes[0].address, buf, sizeof(buf)),
	    "192.168.0.1", "node1 InternalIP");
	is_str(weft_cidr_str(&m->all.nodes[0].pod_cidrs[0], buf, sizeof(buf)),
	    "10.244.1.0/24", "node1 podCIDR");
	is_int(m->all.nodes[1].n_pod_cidrs, 2, "node2 podCIDRs");
	is_str(weft_cidr_str(&m->all.nodes[1].pod_cidrs[1], buf, sizeof(buf)),
	    "fd00:2::/64", "node2 v6 podCIDR");

	ns = weft_snapshot_namespace(&m->all, "demo");
	ok(ns != NULL && ns->meshed && ns->access_mode == WEFT_ACCESS_PERMISSIVE
	    && ns->unauthenticated == WEFT_UNAUTH_ALLOW,
	    "demo: meshed, permissive, unauthenticated allowed");
	ns = weft_snapshot_namespace(&m->all, "plain");
	ok(ns != NULL && !ns->meshed && ns->access_mode == WEFT_ACCESS_ENFORCE
	    && ns->unauthenticated == WEFT_UNAUTH_DENY,
	    "plain: defaults, not meshed");
	ns = weft_snapshot_namespace(&m->all, "elsewhere");
	ok(ns != NULL && !ns->meshed, "undeclared namespace exists, unmeshed");
	ok(weft_snapshot_namespace(&m->all, "listed") != NULL,
	    "namespace of a List item");

	is_int(m->all.n_pods, 5, "pods in the model (with and without IP)");
	p = pod(&m->all, "demo", "web");
	ok(p != NULL, "demo/web");
	if (p != NULL) {
		ok(p->meshed && p->ready, "demo/web meshed and ready");
		is_str(p->service_account, "web", "serviceAccountName");
		is_str(p->node, "node1", "nodeName");
		is_str(p->uid, "1234", "quoted uid stays a string");
		is_str(weft_labels_get(&p->labels, "version"), "1",
		    "quoted label value");
		is_int(p->n_ports, 2, "container ports");
		is_str(p->ports[0].name, "http", "port name");
		is_int(p->ports[1].protocol, IPPROTO_UDP, "UDP container port");
	}
	p = pod(&m->all, "demo", "legacy");
	ok(p != NULL && !p->ready && p->ip.family == 0, "pod without IP");
	is_str(p ? p->service_account : NULL, "old-sa",
	    "deprecated serviceAccount");
	p = pod(&m->all, "elsewhere", "stray");
	ok(p != NULL && !p->meshed && p->ip.family == AF_INET,
	    "pod in undeclared namespace: podIPs, not meshed");
	is_str(p ? p->service_account : NULL, "default",
	    "serviceAccountName defaults to default");
	p = pod(&m->all, "json-ns", "p1");
	ok(p != NULL && p->meshed && p->ip.family == AF_INET6,
	    "JSON pod, meshed namespace, podIP first");

	s = service(&m->all, "demo", "web");
	ok(s != NULL, "service demo/web");
	if (s != NULL) {
		is_str(weft_ip_str(&s->cluster_ip, buf, sizeof(buf)),
		    "10.96.0.10", "clusterIP");
		is_int(s->n_ports, 3, "service ports");
		is_str(s->ports[0].target_port_name, "http", "named targetPort");
		is_int(s->ports[0].target_port, 0, "no number for a name");
		is_str(s->ports[0].app_protocol, "http", "appProtocol");
		is_int(s->ports[1].target_port, 5353, "numeric targetPort");
		is_int(s->ports[1].protocol, IPPROTO_UDP, "UDP service port");
		is_int(s->ports[2].target_port, 9000,
		    "targetPort defaults to port");
		is_str(weft_labels_get(&s->selector, "app"), "web", "selector");
	}
	s = service(&m->all, "demo", "headless");
	ok(s != NULL && s->cluster_ip.family == 0, "clusterIP None");
	ok(service(&m->all, "listed", "a") != NULL, "List item service");
	is_int(m->n_others, 1, "unknown kind kept aside");
	is_str(m->n_others ? m->others[0].kind : NULL, "Deployment",
	    "kept kind");
	is_int(m->n_sas, 1, "service accounts");

	weft_model_view(m, "node2", 9, "example.org", &v);
	is_int(v.n_pods, 4, "view: only pods with an IP");
	ok(pod(&v, "demo", "legacy") == NULL, "view: no IP, not sent");
	is_str(v.node_name, "node2", "view: node name");
	is_int(v.generation, 9, "view: generation");
	is_str(v.trust_domain, "example.org", "view: trust domain");
	ok(v.pods[0].namespace[0] <= v.pods[1].namespace[0],
	    "view: pods sorted");
	weft_model_free(m);
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
}

static void
test_file_errors(const char *file, const char *const *want,
    size_t n_pods, size_t n_services, size_t n_nodes, size_t n_ns)
{
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m;

	load(file, &d, &e);
	m = weft_model_build(&d, &e);
	errors_are(&e, want, file);
	is_int(m->all.n_pods, n_pods, "%s: valid pods kept", file);
	is_int(m->all.n_services, n_services, "%s: valid services kept", file);
	is_int(m->all.n_nodes, n_nodes, "%s: valid nodes kept", file);
	is_int(m->all.n_namespaces, n_ns, "%s: namespaces", file);
	weft_model_free(m);
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
}

static void
test_validation(void)
{
	static const char *const pods[] = {
		"pods.yaml: document 2 (Pod default/web): spec.nodeName: "
		    "expected a string, got 42",
		"pods.yaml: document 3 (Pod demo/badip): status.podIP: "
		    "expected an IP address, got \"10.0.0.300\"",
		"pods.yaml: document 4 (Pod default/Bad_Name): metadata.name: "
		    "expected a DNS-1123 subdomain (at most 253 lowercase "
		    "letters, digits, '-' and '.', each part starting and "
		    "ending with a letter or digit), got \"Bad_Name\"",
		"pods.yaml: document 5 (Pod default/badport): "
		    "spec.containers[0].ports[0].containerPort: expected "
		    "1-65535, got 70000",
		"pods.yaml: document 6 (Pod): metadata.name: required",
		"pods.yaml: document 7 (Pod default/future): apiVersion: "
		    "expected v1, got \"v2\"",
		"pods.yaml: document 8 (Pod): apiVersion: required",
		"pods.yaml: document 9: expected an object, got an array",
		NULL
	};
	static const char *const svcs[] = {
		"svc.yaml: document 1 (Service demo/api): spec.ports[0].port: "
		    "expected 1-65535, got 0",
		"svc.yaml: document 2 (Service demo/mixed): "
		    "spec.ports[1].protocol: SCTP is not supported; port ignored",
		"svc.yaml: document 3 (Service demo/named): "
		    "spec.ports[0].targetPort: expected 1-65535 or an IANA "
		    "service name (at most 15 lowercase letters, digits and "
		    "'-', with at least one letter), got \"8080\"",
		"svc.yaml: document 4 (Service demo/vip): spec.clusterIP: "
		    "expected an IP address or \"None\", got \"10.96.0.999\"",
		"svc.yaml: document 5 (Service demo/proto): "
		    "spec.ports[0].protocol: expected TCP, UDP or SCTP, got "
		    "\"ICMP\"",
		"svc.yaml: document 6 (Service demo/twoports): "
		    "spec.ports[0].name: required when the service has more "
		    "than one port",
		"svc.yaml: document 6 (Service demo/twoports): "
		    "spec.ports[1].name: required when the service has more "
		    "than one port",
		NULL
	};
	static const char *const nodes[] = {
		"nodes.yaml: document 1 (Node n1): spec.podCIDR: expected a "
		    "CIDR with zero host bits (such as 10.244.1.0/24), got "
		    "\"10.244.1.1/24\"",
		"nodes.yaml: document 2 (Node n2): status.addresses[0].address: "
		    "expected an IP address, got \"nope\"",
		NULL
	};
	static const char *const nss[] = {
		"ns.yaml: document 1 (Namespace strict): "
		    "metadata.labels[\"weft.io/access-mode\"]: expected enforce "
		    "or permissive, got \"strict\"",
		"ns.yaml: document 2 (Namespace open): "
		    "metadata.labels[\"weft.io/unauthenticated\"]: expected deny "
		    "or allow, got \"yes\"",
		"ns.yaml: document 3 (Namespace labels): "
		    "metadata.labels[\"enabled\"]: expected a string, got true",
		NULL
	};
	static const char *const dups[] = {
		"dup.yaml: document 2 (Pod default/twin): metadata.name: "
		    "duplicate Pod default/twin, first defined in dup.yaml "
		    "document 1; ignored",
		NULL
	};
	static const char *const syntax[] = {
		"syntax.yaml:10:13: syntax error: mapping values are not "
		    "allowed in this context",
		NULL
	};
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m;

	/* the one valid pod, namespaces default + demo (implicit) */
	test_file_errors("pods.yaml", pods, 1, 0, 0, 1);
	/* mixed keeps its TCP port */
	test_file_errors("svc.yaml", svcs, 0, 1, 0, 1);
	test_file_errors("nodes.yaml", nodes, 0, 0, 0, 0);
	test_file_errors("ns.yaml", nss, 0, 0, 0, 0);
	test_file_errors("dup.yaml", dups, 1, 1, 0, 1);
	test_file_errors("syntax.yaml", syntax, 0, 0, 0, 1);

	load("dup.yaml", &d, &e);
	m = weft_model_build(&d, &e);
	is_str(m->all.pods[0].node, "first", "duplicate: the first one stays");
	weft_model_free(m);
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	load("svc.yaml", &d, &e);
	m = weft_model_build(&d, &e);
	is_int(m->all.services[0].n_ports, 1, "SCTP port dropped, TCP kept");
	weft_model_free(m);
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	load("syntax.yaml", &d, &e);
	is_int(d.n, 1, "syntax error: documents before it are kept");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
}

static struct json_object *
key(struct json_object *o, const char *k)
{
	struct json_object *v = NULL;

	json_object_object_get_ex(o, k, &v);
	return v;
}

static void
test_scalars(void)
{
	static const char y[] =
	    "a: 42\nb: \"42\"\nc: '42'\nd: yes\ne: true\nf: ~\ng: 0x1F\n"
	    "h: 1e3\ni: -7\nj: 0o17\nk: 1.5.3\nl: |\n  block\nm: null\n"
	    "n: 99999999999999999999\no: FALSE\np: 010\n";
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct json_object *o;

	is_int(weft_manifest_parse("s.yaml", y, strlen(y), &d, &e), 0,
	    "scalars parse");
	is_int(d.n, 1, "one document");
	o = d.n ? d.docs[0].obj : NULL;
	ok(json_object_is_type(key(o, "a"), json_type_int) &&
	    json_object_get_int(key(o, "a")) == 42, "plain 42 is an int");
	ok(json_object_is_type(key(o, "b"), json_type_string), "\"42\" string");
	ok(json_object_is_type(key(o, "c"), json_type_string), "'42' string");
	ok(json_object_is_type(key(o, "d"), json_type_string),
	    "yes is a string (YAML 1.2)");
	ok(json_object_is_type(key(o, "e"), json_type_boolean), "true bool");
	ok(json_object_object_get_ex(o, "f", NULL) && key(o, "f") == NULL,
	    "~ is null");
	is_int(json_object_get_int(key(o, "g")), 31, "hex int");
	ok(json_object_is_type(key(o, "h"), json_type_double), "1e3 float");
	is_int(json_object_get_int(key(o, "i")), -7, "negative int");
	is_int(json_object_get_int(key(o, "j")), 15, "octal 0o17");
	ok(json_object_is_type(key(o, "k"), json_type_string), "1.5.3 string");
	is_str(json_object_get_string(key(o, "l")), "block\n", "block scalar");
	ok(key(o, "m") == NULL, "null");
	ok(json_object_is_type(key(o, "n"), json_type_double),
	    "int64 overflow becomes a float");
	ok(json_object_is_type(key(o, "o"), json_type_boolean), "FALSE bool");
	is_int(json_object_get_int(key(o, "p")), 10, "010 is decimal 10");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
}

static void
test_parse_errors(void)
{
	static const char alias[] =
	    "a: &x {b: 1}\nc: *x\n---\nkind: Second\n";
	static const char dupkey[] = "a: 1\na: 2\n---\nkind: Next\n";
	static const char json[] = "{\"kind\": \"A\"}\n{\"kind\": \"B\",\n"
	    "  \"x\": [1, 2,, 3]}\n";
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };

	is_int(weft_manifest_parse("alias.yaml", alias, strlen(alias), &d, &e),
	    0, "alias: not a stream error");
	is_int(e.n, 1, "alias reported");
	is_str(e.n ? e.msgs[0] : NULL,
	    "alias.yaml:2:4: aliases are not supported", "alias message");
	is_int(d.n, 1, "alias: the next document still loads");
	is_int(d.n ? d.docs[0].index : 0, 2, "alias: it is document 2");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	weft_manifest_parse("dup.yaml", dupkey, strlen(dupkey), &d, &e);
	is_str(e.n ? e.msgs[0] : NULL, "dup.yaml:2:1: duplicate key \"a\"",
	    "duplicate key");
	is_int(d.n, 1, "duplicate key: next document loads");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	is_int(weft_manifest_parse("x.json", json, strlen(json), &d, &e), -1,
	    "JSON syntax error");
	is_str(e.n ? e.msgs[0] : NULL,
	    "x.json:3:14: syntax error: unexpected character",
	    "JSON error names line and column");
	is_int(d.n, 1, "JSON: documents before the error kept");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	is_int(weft_manifest_load_file("/nonexistent/x.yaml", "x.yaml", &d,
	    &e), -1, "missing file");
	is_str(e.n ? e.msgs[0] : NULL, "x.yaml: No such file or directory",
	    "missing file message");
	weft_errors_clear(&e);
}

static void
write_file(const char *dir, const char *name, const char *text)
{
	char path[1024];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

static void
test_source_dir(void)
{
	char dir[] = "/tmp/weft-test-src-XXXXXX", path[1024];
	struct weft_source_dir *src;
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	static const char ns[] = "apiVersion: v1\nkind: Namespace\n"
	    "metadata:\n  name: a\n";

	if (mkdtemp(dir) == NULL)
		abort();
	write_file(dir, "b.yml", ns);
	write_file(dir, "a.json", "{\"apiVersion\":\"v1\",\"kind\":\"Node\","
	    "\"metadata\":{\"name\":\"n\"}}");
	write_file(dir, ".hidden.yaml", "{{{");
	write_file(dir, "notes.txt", "{{{");
	src = weft_source_dir_new(dir);
	is_int(weft_source_dir_load(src, &d, &e), 0, "dir loads");
	is_int(e.n, 0, "dotfiles and other names ignored");
	is_int(d.n, 2, "two documents");
	is_str(d.n ? d.docs[0].file : NULL, "a.json", "sorted by name");
	weft_manifest_docs_clear(&d);

	write_file(dir, "b.yml", "apiVersion: v1\nkind: [\n");
	is_int(weft_source_dir_load(src, &d, &e), 0, "dir loads again");
	is_int(d.n, 2, "broken file: its last good documents stay");
	is_int(e.n, 2, "broken file: syntax error + fallback note");
	is_str(e.n > 1 ? e.msgs[1] : NULL, "b.yml: keeping the 1 document(s) "
	    "of its last good version", "fallback note");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	snprintf(path, sizeof(path), "%s/b.yml", dir);
	unlink(path);
	is_int(weft_source_dir_load(src, &d, &e), 0, "after delete");
	is_int(d.n, 1, "deleted file's documents are gone");
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);

	snprintf(path, sizeof(path), "%s/a.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.hidden.yaml", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	unlink(path);
	rmdir(dir);
	is_int(weft_source_dir_load(src, &d, &e), -1, "missing dir fails");
	weft_errors_clear(&e);
	weft_source_dir_free(src);
}

static void
test_names(void)
{
	ok(weft_name_is_dns_label("web-1"), "label");
	ok(!weft_name_is_dns_label("a.b"), "label: no dot");
	ok(!weft_name_is_dns_label("-a"), "label: no leading dash");
	ok(!weft_name_is_dns_label("A"), "label: lowercase");
	ok(weft_name_is_dns_subdomain("a.b-c.d"), "subdomain");
	ok(!weft_name_is_dns_subdomain("a..b"), "subdomain: empty part");
	ok(weft_name_is_iana_svc("http"), "IANA name");
	ok(!weft_name_is_iana_svc("8080"), "IANA: needs a letter");
	ok(!weft_name_is_iana_svc("a--b"), "IANA: no double dash");
	ok(!weft_name_is_iana_svc("abcdefghijklmnop"), "IANA: at most 15");
}

int
main(void)
{
	datadir = getenv("TEST_DATADIR");
	if (datadir == NULL)
		datadir = TEST_DATADIR;
	test_cluster();
	test_validation();
	test_scalars();
	test_parse_errors();
	test_source_dir();
	test_names();
	return tap_done();
}
