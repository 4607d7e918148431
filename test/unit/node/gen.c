/* Unit tests for node/gen.c: indexes, service endpoints, publication, and
 * the snapshot -> nft config derivation of node/node.c. */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "weft/gen.h"
#include "weft/nft.h"
#include "weft/node.h"
#include "weft/snapshot.h"
#include "../../tap.h"

static char *
xs(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
add_label(struct weft_labels *l, const char *k, const char *v)
{
	l->items = realloc(l->items, (l->n + 1) * sizeof(*l->items));
	l->items[l->n].key = xs(k);
	l->items[l->n].value = xs(v);
	l->n++;
}

static struct weft_snap_pod *
add_pod(struct weft_snapshot *s, const char *ns, const char *name,
    const char *node, const char *ip, bool meshed, const char *app)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs(ns);
	p->name = xs(name);
	p->node = xs(node);
	p->service_account = xs("default");
	p->meshed = meshed;
	p->ready = true;
	if (ip != NULL)
		weft_ip_parse(ip, &p->ip);
	if (app != NULL)
		add_label(&p->labels, "app", app);
	return p;
}

static void
add_port(struct weft_snap_pod *p, const char *name, uint16_t port)
{
	p->ports = realloc(p->ports, (p->n_ports + 1) * sizeof(*p->ports));
	p->ports[p->n_ports].name = xs(name);
	p->ports[p->n_ports].port = port;
	p->ports[p->n_ports].protocol = IPPROTO_TCP;
	p->n_ports++;
}

static struct weft_snapshot *
make_snapshot(void)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_snap_service *svc;
	struct weft_snap_pod *p;

	s->generation = 7;
	s->node_name = xs("node-1");
	s->trust_domain = xs("cluster.local");
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->n_nodes = 2;
	s->nodes[0].name = xs("node-1");
	s->nodes[0].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = 1;
	weft_cidr_parse("10.244.1.0/24", &s->nodes[0].pod_cidrs[0]);
	s->nodes[1].name = xs("node-2");

	p = add_pod(s, "shop", "api-1", "node-2", "10.244.2.10", true, "api");
	add_port(p, "http", 8080);
	p = add_pod(s, "shop", "api-2", "node-1", "10.244.1.11", true, "api");
	add_port(p, "http", 9090);
	p = add_pod(s, "shop", "web", "node-1", "10.244.1.10", true, "web");
	p = add_pod(s, "legacy", "db", "node-1", "10.244.1.20", false, "api");
	add_port(p, "http", 5432);
	add_pod(s, "shop", "pending", "node-1", NULL, true, "api");

	s->services = calloc(2, sizeof(*s->services));
	s->n_services = 2;
	svc = &s->services[0];
	svc->namespace = xs("shop");
	svc->name = xs("api");
	weft_ip_parse("10.96.0.10", &svc->cluster_ip);
	svc->ports = calloc(2, sizeof(*svc->ports));
	svc->n_ports = 2;
	svc->ports[0].port = 80;
	svc->ports[0].protocol = IPPROTO_TCP;
	svc->ports[0].target_port_name = xs("http");
	svc->ports[1].port = 81;
	svc->ports[1].protocol = IPPROTO_TCP;
	svc->ports[1].target_port = 7000;
	add_label(&svc->selector, "app", "api");
	svc = &s->services[1];
	svc->namespace = xs("shop");
	svc->name = xs("headless");
	svc->ports = calloc(1, sizeof(*svc->ports));
	svc->n_ports = 1;
	svc->ports[0].port = 80;
	svc->ports[0].protocol = IPPROTO_TCP;
	add_label(&svc->selector, "app", "web");
	return s;
}

static struct weft_ip
ip(const char *s)
{
	struct weft_ip a;

	weft_ip_parse(s, &a);
	return a;
}

int
main(void)
{
	struct weft_gen *g, *cur;
	const struct weft_snap_pod *p;
	const struct weft_snap_service *svc;
	const struct weft_service_port *sp = NULL;
	struct weft_endpoint eps[8];
	struct weft_nft_config cfg;
	struct weft_snapshot *dup;
	struct weft_ip a;
	char *err = NULL;
	size_t n;

	g = weft_gen_build(make_snapshot(), &err);
	ok(g != NULL && err == NULL, "a consistent snapshot builds");
	is_int(weft_gen_generation(g), 7, "generation is the snapshot's");
	ok(weft_gen_self(g) != NULL &&
	    strcmp(weft_gen_self(g)->name, "node-1") == 0, "self is node-1");

	a = ip("10.244.2.10");
	p = weft_gen_pod_by_ip(g, &a);
	ok(p != NULL && strcmp(p->name, "api-1") == 0, "pod by IP, other node");
	ok(p != NULL && !weft_gen_pod_is_local(g, p), "api-1 is not local");
	a = ip("10.244.1.10");
	p = weft_gen_pod_by_ip(g, &a);
	ok(p != NULL && weft_gen_pod_is_local(g, p), "web is local");
	a = ip("10.244.1.99");
	ok(weft_gen_pod_by_ip(g, &a) == NULL, "unknown IP: no pod");
	ok(weft_gen_in_local_cidrs(g, &a), "10.244.1.99 in local CIDR");
	a = ip("10.244.2.99");
	ok(!weft_gen_in_local_cidrs(g, &a), "10.244.2.99 not local");
	a = ip("fd00::1");
	ok(weft_gen_pod_by_ip(g, &a) == NULL, "v6 lookup in a v4 index");

	a = ip("10.96.0.10");
	svc = weft_gen_service_by_vip(g, &a, 80, IPPROTO_TCP, &sp);
	ok(svc != NULL && strcmp(svc->name, "api") == 0 && sp != NULL &&
	    sp->port == 80, "service by VIP and port");
	ok(weft_gen_service_by_vip(g, &a, 80, IPPROTO_UDP, NULL) == NULL,
	    "VIP with another protocol: none");
	ok(weft_gen_service_by_vip(g, &a, 82, IPPROTO_TCP, NULL) == NULL,
	    "VIP with another port: none");

	n = weft_gen_service_endpoints(g, svc, sp, eps, 8);
	is_int(n, 2, "named targetPort: two endpoints (not the other "
	    "namespace's, not the pod without IP)");
	ok(n == 2 && strcmp(eps[0].pod->name, "api-1") == 0 &&
	    eps[0].port == 8080, "api-1 resolves http to 8080");
	ok(n == 2 && strcmp(eps[1].pod->name, "api-2") == 0 &&
	    eps[1].port == 9090, "api-2 resolves http to 9090");
	svc = weft_gen_service_by_vip(g, &a, 81, IPPROTO_TCP, &sp);
	n = weft_gen_service_endpoints(g, svc, sp, eps, 1);
	is_int(n, 2, "count is the total even when max is smaller");
	is_int(eps[0].port, 7000, "numeric targetPort");

	ok(weft_gen_current() == NULL, "nothing published yet");
	weft_gen_publish(weft_gen_ref(g));
	cur = weft_gen_current();
	ok(cur == g, "published generation is current");
	weft_gen_unref(cur);

	is_int(weft_node_nft_config(g, "wv", &cfg), 0, "nft config derived");
	is_int(cfg.n_pod_cidrs, 1, "one pod CIDR");
	is_int(cfg.n_meshed, 2, "two local meshed pods with IPs");
	is_int(cfg.n_exempt, 1, "one local exempt pod");
	is_str(cfg.n_meshed == 2 ? cfg.meshed[0].comment : NULL, "shop/web",
	    "sorted by address: 10.244.1.10 first");
	is_str(cfg.n_meshed == 2 ? cfg.meshed[1].comment : NULL, "shop/api-2",
	    "then 10.244.1.11");
	is_str(cfg.n_exempt == 1 ? cfg.exempt[0].comment : NULL, "legacy/db",
	    "exempt pod commented ns/pod");
	is_int(cfg.outbound_port, 15001, "outbound port");
	weft_node_nft_config_free(&cfg);

	weft_gen_publish(NULL);
	weft_gen_unref(g);

	/* Two pods with one address: refused, and the snapshot is freed. */
	dup = make_snapshot();
	weft_ip_parse("10.244.2.10", &dup->pods[1].ip);
	g = weft_gen_build(dup, &err);
	ok(g == NULL && err != NULL && strstr(err, "same IP") != NULL,
	    "duplicate pod IPs are rejected: %s", err ? err : "(no error)");
	free(err);
	return tap_done();
}
