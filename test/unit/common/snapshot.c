/* The snapshot wire format: round trip, decode errors with paths, labels. */
#include "config.h"

#include <arpa/inet.h>

#include "weft/snapshot.h"
#include "../../tap.h"

static char *
xstrdup(const char *s)
{
	char *d = strdup(s);

	if (d == NULL)
		abort();
	return d;
}

static void
labels_set(struct weft_labels *l, const char *k1, const char *v1,
    const char *k2, const char *v2)
{
	l->n = k2 ? 2 : 1;
	l->items = calloc(l->n, sizeof(*l->items));
	l->items[0].key = xstrdup(k1);
	l->items[0].value = xstrdup(v1);
	if (k2) {
		l->items[1].key = xstrdup(k2);
		l->items[1].value = xstrdup(v2);
	}
}

static struct weft_snapshot *
sample(void)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_snap_pod *p;
	struct weft_snap_service *v;

	s->generation = 42;
	s->node_name = xstrdup("node1");
	s->trust_domain = xstrdup("cluster.local");
	s->trust_bundle = xstrdup("-----BEGIN CERTIFICATE-----\nMIIB\n"
	    "-----END CERTIFICATE-----\n");

	s->n_nodes = 2;
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->nodes[0].name = xstrdup("node1");
	weft_ip_parse("192.168.0.1", &s->nodes[0].address);
	s->nodes[0].n_pod_cidrs = 2;
	s->nodes[0].pod_cidrs = calloc(2, sizeof(struct weft_cidr));
	weft_cidr_parse("10.244.1.0/24", &s->nodes[0].pod_cidrs[0]);
	weft_cidr_parse("fd00:1::/64", &s->nodes[0].pod_cidrs[1]);
	s->nodes[1].name = xstrdup("node2");

	s->n_namespaces = 1;
	s->namespaces = calloc(1, sizeof(*s->namespaces));
	s->namespaces[0].name = xstrdup("demo");
	s->namespaces[0].meshed = true;
	s->namespaces[0].access_mode = WEFT_ACCESS_PERMISSIVE;
	s->namespaces[0].unauthenticated = WEFT_UNAUTH_ALLOW;
	labels_set(&s->namespaces[0].labels, "weft.io/mesh", "enabled", NULL,
	    NULL);

	s->n_pods = 2;
	s->pods = calloc(2, sizeof(*s->pods));
	p = &s->pods[0];
	p->namespace = xstrdup("demo");
	p->name = xstrdup("web");
	p->uid = xstrdup("u-1");
	p->node = xstrdup("node1");
	p->service_account = xstrdup("web");
	weft_ip_parse("10.244.1.10", &p->ip);
	p->meshed = true;
	p->ready = true;
	labels_set(&p->labels, "app", "web", "tier", "front/end");
	p->n_ports = 2;
	p->ports = calloc(2, sizeof(*p->ports));
	p->ports[0].name = xstrdup("http");
	p->ports[0].port = 8080;
	p->ports[0].protocol = IPPROTO_TCP;
	p->ports[1].port = 5353;
	p->ports[1].protocol = IPPROTO_UDP;
	p = &s->pods[1];
	p->namespace = xstrdup("demo");
	p->name = xstrdup("v6");
	p->service_account = xstrdup("default");
	weft_ip_parse("fd00:1::5", &p->ip);

	s->n_services = 1;
	s->services = calloc(1, sizeof(*s->services));
	v = &s->services[0];
	v->namespace = xstrdup("demo");
	v->name = xstrdup("web");
	weft_ip_parse("10.96.0.10", &v->cluster_ip);
	labels_set(&v->selector, "app", "web", NULL, NULL);
	v->n_ports = 2;
	v->ports = calloc(2, sizeof(*v->ports));
	v->ports[0].name = xstrdup("http");
	v->ports[0].port = 80;
	v->ports[0].protocol = IPPROTO_TCP;
	v->ports[0].target_port_name = xstrdup("http");
	v->ports[0].app_protocol = xstrdup("http");
	v->ports[1].name = xstrdup("dns");
	v->ports[1].port = 53;
	v->ports[1].protocol = IPPROTO_UDP;
	v->ports[1].target_port = 5353;
	return s;
}

static void
test_round_trip(void)
{
	struct weft_snapshot *s = sample(), *d;
	char *a, *b, *err = NULL;
	char buf[WEFT_IP_STRLEN];

	a = weft_snapshot_encode(s);
	ok(a != NULL, "encode");
	ok(strncmp(a, "{\"version\":1,\"generation\":42,\"node\":\"node1\"",
	    43) == 0, "encoding starts with version, generation, node");
	d = weft_snapshot_decode(a, strlen(a), &err);
	ok(d != NULL, "decode what we encoded");
	is_str(err, NULL, "no error");
	if (d == NULL) {
		free(a);
		weft_snapshot_free(s);
		return;
	}
	b = weft_snapshot_encode(d);
	is_str(b, a, "encode -> decode -> encode is byte-identical");
	is_int(d->generation, 42, "generation");
	is_str(d->node_name, "node1", "node name");
	is_str(d->trust_bundle, s->trust_bundle, "trust bundle");
	is_int(d->n_pods, 2, "pods");
	is_str(weft_ip_str(&d->pods[1].ip, buf, sizeof(buf)), "fd00:1::5",
	    "v6 pod ip");
	is_int(d->pods[0].ports[1].protocol, IPPROTO_UDP, "udp port");
	is_str(d->pods[1].service_account, "default", "service account");
	is_int(d->services[0].ports[0].target_port, 0,
	    "named target port has no number");
	is_str(d->services[0].ports[0].target_port_name, "http",
	    "named target port");
	is_int(d->services[0].ports[1].target_port, 5353, "numeric target port");
	is_int(d->nodes[0].n_pod_cidrs, 2, "pod cidrs");
	is_int(d->nodes[1].address.family, 0, "node without address");
	ok(d->namespaces[0].access_mode == WEFT_ACCESS_PERMISSIVE &&
	    d->namespaces[0].unauthenticated == WEFT_UNAUTH_ALLOW &&
	    d->namespaces[0].meshed, "namespace modes");
	ok(weft_snapshot_node(d, "node2") == &d->nodes[1], "node lookup");
	ok(weft_snapshot_node(d, "node3") == NULL, "node lookup miss");
	ok(weft_snapshot_namespace(d, "demo") == &d->namespaces[0],
	    "namespace lookup");
	ok(weft_snapshot_namespace(d, "nope") == NULL,
	    "namespace lookup miss");
	free(a);
	free(b);
	weft_snapshot_free(d);
	weft_snapshot_free(s);
}

static void
decode_fails(const char *json, const char *want, const char *what)
{
	struct weft_snapshot *s;
	char *err = NULL;

	s = weft_snapshot_decode(json, strlen(json), &err);
	ok(s == NULL, "%s: rejected", what);
	is_str(err, want, "%s: error", what);
	weft_snapshot_free(s);
	free(err);
}

static void
test_decode_errors(void)
{
	struct weft_snapshot *s;
	const char *j;
	char *err = NULL;

	decode_fails("{\"version\":1,\"generation\":1,\"pods\":[{\"namespace\":"
	    "\"a\",\"name\":\"b\"},{\"namespace\":\"a\",\"name\":\"c\","
	    "\"ip\":\"10.0.0.300\"}]}", "pods[1].ip: not an IP address",
	    "bad pod IP");
	decode_fails("{\"version\":1,\"generation\":1,\"nodes\":[{\"name\":7}]}",
	    "nodes[0].name: expected a string, got an integer", "wrong type");
	decode_fails("{\"version\":2,\"generation\":1}",
	    "version: unsupported version 2 (expected 1)", "wrong version");
	decode_fails("{\"generation\":1}", "version: required",
	    "missing version");
	decode_fails("{\"version\":1,\"generation\":-1}",
	    "generation: expected 0-9223372036854775807, got -1",
	    "negative generation");
	decode_fails("{\"version\":1,\"generation\":1,\"services\":[{"
	    "\"namespace\":\"a\",\"name\":\"s\",\"ports\":[{\"port\":80,"
	    "\"protocol\":\"SCTP\"}]}]}",
	    "services[0].ports[0].protocol: expected TCP or UDP",
	    "bad protocol");
	decode_fails("{\"version\":1,\"generation\":1,\"services\":[{"
	    "\"namespace\":\"a\",\"name\":\"s\",\"ports\":[{\"port\":0}]}]}",
	    "services[0].ports[0].port: expected 1-65535, got 0", "bad port");
	decode_fails("{\"version\":1,\"generation\":1,\"nodes\":[{\"name\":"
	    "\"n\",\"pod_cidrs\":[\"10.0.0.1/8\"]}]}",
	    "nodes[0].pod_cidrs[0]: not a CIDR", "bad CIDR");
	decode_fails("{\"version\":1,\"generation\":1,\"pods\":{}}",
	    "pods: expected an array, got an object", "pods not an array");
	decode_fails("{\"version\":1,\"generation\":1,\"namespaces\":[{\"name\":"
	    "\"x\",\"labels\":{\"a\":1}}]}",
	    "namespaces[0].labels[\"a\"]: expected a string, got an integer",
	    "label value type");
	decode_fails("[1]", "(root): expected an object, got an array",
	    "not an object");
	decode_fails("{\"version\":1,", "(root): truncated JSON", "truncated");
	decode_fails("{\"version\":1} x",
	    "(root): invalid JSON at offset 14: unexpected character",
	    "trailing garbage");

	j = "{\"version\":1,\"generation\":3,\"future\":{\"x\":[1,2]},"
	    "\"pods\":[{\"namespace\":\"a\",\"name\":\"b\",\"new\":true}]}";
	s = weft_snapshot_decode(j, strlen(j), &err);
	ok(s != NULL && err == NULL, "unknown fields are ignored");
	if (s != NULL) {
		is_str(s->trust_domain, "cluster.local", "default trust domain");
		is_int(s->n_pods, 1, "pod decoded");
		is_str(s->trust_bundle, NULL, "no trust bundle: NULL");
	}
	weft_snapshot_free(s);
	free(err);
}

static void
test_labels(void)
{
	struct weft_labels sel = { NULL, 0 }, labels = { NULL, 0 };
	struct weft_labels other = { NULL, 0 };

	labels_set(&labels, "app", "web", "tier", "front");
	ok(!weft_labels_match(&sel, &labels), "empty selector matches nothing");
	labels_set(&sel, "app", "web", NULL, NULL);
	ok(weft_labels_match(&sel, &labels), "subset selector matches");
	labels_set(&other, "app", "web", "tier", "back");
	ok(!weft_labels_match(&other, &labels), "differing value");
	ok(weft_labels_match(&sel, &other), "one selector, two pods");
	ok(!weft_labels_match(&labels, &sel), "missing key");
	is_str(weft_labels_get(&labels, "tier"), "front", "get");
	is_str(weft_labels_get(&labels, "nope"), NULL, "get missing");
	for (size_t i = 0; i < 2; i++) {
		free(labels.items[i].key);
		free(labels.items[i].value);
		free(other.items[i].key);
		free(other.items[i].value);
	}
	free(labels.items);
	free(other.items);
	free(sel.items[0].key);
	free(sel.items[0].value);
	free(sel.items);
}

int
main(void)
{
	test_round_trip();
	test_decode_errors();
	test_labels();
	weft_snapshot_free(NULL);
	return tap_done();
}
