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

static char **
strv(size_t *n, const char *a, const char *b)
{
	char **v = calloc(2, sizeof(*v));

	v[0] = xstrdup(a);
	*n = 1;
	if (b != NULL) {
		v[1] = xstrdup(b);
		*n = 2;
	}
	return v;
}

/* One of each SMI kind, with every optional field both set and unset. */
static void
smi_sample(struct weft_snapshot *s)
{
	struct weft_smi_target *t;
	struct weft_smi_http_route_group *g;
	struct weft_smi_split *sp;

	s->n_targets = 2;
	s->targets = calloc(2, sizeof(*s->targets));
	t = &s->targets[0];
	t->namespace = xstrdup("bank");
	t->name = xstrdup("readers");
	t->destination.namespace = xstrdup("bank");
	t->destination.name = xstrdup("ledger");
	t->port = 8080;
	t->n_sources = 2;
	t->sources = calloc(2, sizeof(*t->sources));
	t->sources[0].namespace = xstrdup("bank");
	t->sources[0].name = xstrdup("teller");
	t->sources[1].namespace = xstrdup("audit");
	t->sources[1].name = xstrdup("auditor");
	t->n_rules = 3;
	t->rules = calloc(3, sizeof(*t->rules));
	t->rules[0].kind = WEFT_SMI_HTTP;
	t->rules[0].name = xstrdup("api");
	t->rules[0].matches = strv(&t->rules[0].n_matches, "read", "list");
	t->rules[1].kind = WEFT_SMI_TCP;
	t->rules[1].name = xstrdup("port");
	t->rules[2].kind = WEFT_SMI_UDP;
	t->rules[2].name = xstrdup("dns");
	t = &s->targets[1];
	t->namespace = xstrdup("bank");
	t->name = xstrdup("empty");
	t->destination.namespace = xstrdup("bank");
	t->destination.name = xstrdup("x");

	s->n_http_route_groups = 1;
	s->http_route_groups = calloc(1, sizeof(*s->http_route_groups));
	g = &s->http_route_groups[0];
	g->namespace = xstrdup("bank");
	g->name = xstrdup("api");
	g->n_matches = 2;
	g->matches = calloc(2, sizeof(*g->matches));
	g->matches[0].name = xstrdup("read");
	g->matches[0].path_regex = xstrdup("/v1/accounts(/.*)?$");
	g->matches[0].methods = strv(&g->matches[0].n_methods, "GET", "HEAD");
	g->matches[0].n_headers = 2;
	g->matches[0].headers = calloc(2, sizeof(*g->matches[0].headers));
	g->matches[0].headers[0].name = xstrdup("user-agent");
	g->matches[0].headers[0].value_regex = xstrdup(".*\\\"x\\\".*");
	g->matches[0].headers[1].name = xstrdup("x-beta");
	g->matches[0].headers[1].value_regex = xstrdup("yes|true");
	g->matches[1].name = xstrdup("any");

	s->n_tcp_routes = 1;
	s->tcp_routes = calloc(1, sizeof(*s->tcp_routes));
	s->tcp_routes[0].namespace = xstrdup("bank");
	s->tcp_routes[0].name = xstrdup("port");
	s->tcp_routes[0].n_ports = 2;
	s->tcp_routes[0].ports = calloc(2, sizeof(uint16_t));
	s->tcp_routes[0].ports[0] = 80;
	s->tcp_routes[0].ports[1] = 65535;
	s->n_udp_routes = 1;
	s->udp_routes = calloc(1, sizeof(*s->udp_routes));
	s->udp_routes[0].namespace = xstrdup("bank");
	s->udp_routes[0].name = xstrdup("dns");

	s->n_splits = 2;
	s->splits = calloc(2, sizeof(*s->splits));
	sp = &s->splits[0];
	sp->namespace = xstrdup("shop");
	sp->name = xstrdup("ab");
	sp->service = xstrdup("web");
	sp->created = 1714564830;
	sp->n_backends = 2;
	sp->backends = calloc(2, sizeof(*sp->backends));
	sp->backends[0].service = xstrdup("web-v1");
	sp->backends[0].weight = 0;
	sp->backends[1].service = xstrdup("web-v2");
	sp->backends[1].weight = 4294967295u;
	sp->match_groups = strv(&sp->n_match_groups, "ab-test", NULL);
	sp = &s->splits[1];
	sp->namespace = xstrdup("shop");
	sp->name = xstrdup("canary");
	sp->service = xstrdup("api");
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
	smi_sample(s);
	return s;
}

/* Every field of smi_sample() after a round trip. */
static void
smi_check(const struct weft_snapshot *d)
{
	const struct weft_smi_target *t;
	const struct weft_smi_http_match *m;
	const struct weft_smi_split *sp;

	is_int(d->n_targets, 2, "smi: targets");
	is_int(d->n_http_route_groups, 1, "smi: route groups");
	is_int(d->n_tcp_routes, 1, "smi: tcp routes");
	is_int(d->n_udp_routes, 1, "smi: udp routes");
	is_int(d->n_splits, 2, "smi: splits");
	if (d->n_targets != 2 || d->n_http_route_groups != 1 ||
	    d->n_tcp_routes != 1 || d->n_udp_routes != 1 || d->n_splits != 2)
		return;
	t = &d->targets[0];
	is_str(t->namespace, "bank", "target namespace");
	is_str(t->name, "readers", "target name");
	is_str(t->destination.namespace, "bank", "destination namespace");
	is_str(t->destination.name, "ledger", "destination name");
	is_int(t->port, 8080, "destination port (access v1alpha1/2)");
	is_int(t->n_sources, 2, "sources");
	is_str(t->sources[1].namespace, "audit", "source namespace");
	is_str(t->sources[1].name, "auditor", "source name");
	is_int(t->n_rules, 3, "rules");
	is_int(t->rules[0].kind, WEFT_SMI_HTTP, "rule kind HTTP");
	is_int(t->rules[1].kind, WEFT_SMI_TCP, "rule kind TCP");
	is_int(t->rules[2].kind, WEFT_SMI_UDP, "rule kind UDP");
	is_str(t->rules[0].name, "api", "rule name");
	is_int(t->rules[0].n_matches, 2, "rule matches");
	is_str(t->rules[0].matches[1], "list", "rule match name");
	is_int(t->rules[1].n_matches, 0, "L4 rule without matches");
	t = &d->targets[1];
	ok(t->port == 0 && t->n_sources == 0 && t->n_rules == 0 &&
	    t->sources == NULL && t->rules == NULL,
	    "empty target: no port, sources or rules");
	m = &d->http_route_groups[0].matches[0];
	is_str(d->http_route_groups[0].name, "api", "group name");
	is_int(d->http_route_groups[0].n_matches, 2, "group matches");
	is_str(m->name, "read", "match name");
	is_str(m->path_regex, "/v1/accounts(/.*)?$", "path regex");
	is_int(m->n_methods, 2, "methods");
	is_str(m->methods[1], "HEAD", "method");
	is_int(m->n_headers, 2, "headers");
	is_str(m->headers[0].name, "user-agent", "header name");
	is_str(m->headers[0].value_regex, ".*\\\"x\\\".*",
	    "header regex with escapes");
	m = &d->http_route_groups[0].matches[1];
	ok(m->path_regex == NULL && m->n_methods == 0 && m->n_headers == 0,
	    "match without filters stays without");
	is_int(d->tcp_routes[0].n_ports, 2, "tcp ports");
	is_int(d->tcp_routes[0].ports[1], 65535, "tcp port");
	is_int(d->udp_routes[0].n_ports, 0, "udp: every port");
	sp = &d->splits[0];
	is_str(sp->service, "web", "split service");
	is_int(sp->created, 1714564830, "split created");
	is_int(sp->n_backends, 2, "backends");
	is_str(sp->backends[1].service, "web-v2", "backend service");
	is_int(sp->backends[0].weight, 0, "weight 0");
	is_int(sp->backends[1].weight, 4294967295u, "largest weight");
	is_int(sp->n_match_groups, 1, "match groups");
	is_str(sp->match_groups[0], "ab-test", "match group");
	sp = &d->splits[1];
	ok(sp->created == 0 && sp->n_backends == 0 &&
	    sp->n_match_groups == 0, "bare split");
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
	smi_check(d);
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
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_targets\":[{"
	    "\"namespace\":\"a\",\"name\":\"t\",\"destination\":{\"namespace\":"
	    "\"a\",\"name\":\"d\"},\"rules\":[{\"kind\":\"Pod\",\"name\":"
	    "\"r\"}]}]}", "traffic_targets[0].rules[0].kind: expected "
	    "HTTPRouteGroup, TCPRoute or UDPRoute", "bad rule kind");
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_targets\":[{"
	    "\"namespace\":\"a\",\"name\":\"t\"}]}",
	    "traffic_targets[0].destination: required", "no destination");
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_targets\":[{"
	    "\"namespace\":\"a\",\"name\":\"t\",\"destination\":{\"namespace\":"
	    "\"a\",\"name\":\"d\"},\"sources\":[{\"namespace\":\"a\"}]}]}",
	    "traffic_targets[0].sources[0].name: required", "source name");
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_targets\":[{"
	    "\"namespace\":\"a\",\"name\":\"t\",\"destination\":{\"namespace\":"
	    "\"a\",\"name\":\"d\"},\"port\":70000}]}",
	    "traffic_targets[0].port: expected 0-65535, got 70000",
	    "target port");
	decode_fails("{\"version\":1,\"generation\":1,\"http_route_groups\":[{"
	    "\"namespace\":\"a\",\"name\":\"g\",\"matches\":[{\"name\":\"m\","
	    "\"headers\":[{\"value_regex\":\"x\"}]}]}]}",
	    "http_route_groups[0].matches[0].headers[0].name: required",
	    "header without name");
	decode_fails("{\"version\":1,\"generation\":1,\"http_route_groups\":[{"
	    "\"namespace\":\"a\",\"name\":\"g\",\"matches\":[{\"name\":\"m\","
	    "\"methods\":[\"GET\",1]}]}]}",
	    "http_route_groups[0].matches[0].methods[1]: expected a string, "
	    "got an integer", "method type");
	decode_fails("{\"version\":1,\"generation\":1,\"tcp_routes\":[{"
	    "\"namespace\":\"a\",\"name\":\"r\",\"ports\":[80,0]}]}",
	    "tcp_routes[0].ports[1]: expected 1-65535, got 0", "route port");
	decode_fails("{\"version\":1,\"generation\":1,\"udp_routes\":[{"
	    "\"namespace\":\"a\",\"name\":\"r\",\"ports\":[\"53\"]}]}",
	    "udp_routes[0].ports[0]: expected an integer, got a string",
	    "udp port type");
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_splits\":[{"
	    "\"namespace\":\"a\",\"name\":\"s\",\"service\":\"w\","
	    "\"backends\":[{\"service\":\"b\",\"weight\":-1}]}]}",
	    "traffic_splits[0].backends[0].weight: expected "
	    "0-9223372036854775807, got -1", "negative weight");
	decode_fails("{\"version\":1,\"generation\":1,\"traffic_splits\":[{"
	    "\"namespace\":\"a\",\"name\":\"s\"}]}",
	    "traffic_splits[0].service: required", "split without service");
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
		ok(s->n_targets == 0 && s->n_http_route_groups == 0 &&
		    s->n_tcp_routes == 0 && s->n_udp_routes == 0 &&
		    s->n_splits == 0, "no SMI arrays: none (older controller)");
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
