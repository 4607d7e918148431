/* Unit tests for node/udp.c: which (source pod, local pod, ports) elements
 * the policy's UDP grants become, with a stand-in for the policy (exact
 * control over the grants) and with the real one through
 * weft_node_nft_config (a TrafficTarget with a UDPRoute in the snapshot). */
#include "config.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "weft/gen.h"
#include "weft/nft.h"
#include "weft/node.h"
#include "weft/policy.h"
#include "weft/snapshot.h"
#include "../../tap.h"

static char *
xs(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
add_ns(struct weft_snapshot *s, const char *name, bool meshed)
{
	struct weft_snap_namespace *ns;

	s->namespaces = realloc(s->namespaces,
	    (s->n_namespaces + 1) * sizeof(*s->namespaces));
	ns = &s->namespaces[s->n_namespaces++];
	memset(ns, 0, sizeof(*ns));
	ns->name = xs(name);
	ns->meshed = meshed;
}

static void
add_pod(struct weft_snapshot *s, const char *ns, const char *name,
    const char *node, const char *sa, const char *ip, bool meshed)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs(ns);
	p->name = xs(name);
	p->node = xs(node);
	p->service_account = xs(sa);
	p->meshed = meshed;
	p->ready = ip != NULL;
	if (ip != NULL && weft_ip_parse(ip, &p->ip) == -1)
		abort();
}

/*   node-1 (10.244.1.0/24, fd00:1::/64; address 10.250.0.11):
 *     games/srv 10.244.1.40 (srv), games/srv6 fd00:1::40 (srv),
 *     games/near 10.244.1.41 (player), games/open 10.244.1.42 (open),
 *     games/pending (srv, no address yet)
 *   node-2 (address 10.250.0.12):
 *     games/far 10.244.2.40 (player), games/far6 fd00:2::40 (player),
 *     games/spy 10.244.2.41 (spy), games/hostnet 10.250.0.12 (player,
 *     host network), games/srv-2 10.244.2.43 (srv, not local),
 *     legacy/old 10.244.2.42 (default; namespace outside the mesh) */
static struct weft_snapshot *
make_snapshot(void)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));

	s->generation = 3;
	s->node_name = xs("node-1");
	s->trust_domain = xs("cluster.local");
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->n_nodes = 2;
	s->nodes[0].name = xs("node-1");
	weft_ip_parse("10.250.0.11", &s->nodes[0].address);
	s->nodes[0].pod_cidrs = calloc(2, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = 2;
	weft_cidr_parse("10.244.1.0/24", &s->nodes[0].pod_cidrs[0]);
	weft_cidr_parse("fd00:1::/64", &s->nodes[0].pod_cidrs[1]);
	s->nodes[1].name = xs("node-2");
	weft_ip_parse("10.250.0.12", &s->nodes[1].address);

	add_ns(s, "games", true);
	add_ns(s, "legacy", false);

	add_pod(s, "games", "far", "node-2", "player", "10.244.2.40", true);
	add_pod(s, "games", "far6", "node-2", "player", "fd00:2::40", true);
	add_pod(s, "games", "hostnet", "node-2", "player", "10.250.0.12", true);
	add_pod(s, "games", "near", "node-1", "player", "10.244.1.41", true);
	add_pod(s, "games", "open", "node-1", "open", "10.244.1.42", true);
	add_pod(s, "games", "pending", "node-1", "srv", NULL, true);
	add_pod(s, "games", "spy", "node-2", "spy", "10.244.2.41", true);
	add_pod(s, "games", "srv", "node-1", "srv", "10.244.1.40", true);
	add_pod(s, "games", "srv-2", "node-2", "srv", "10.244.2.43", true);
	add_pod(s, "games", "srv6", "node-1", "srv", "fd00:1::40", true);
	add_pod(s, "legacy", "old", "node-2", "default", "10.244.2.42", false);
	return s;
}

/* ---- with a stand-in policy ------------------------------------------- */

static int fake_tag;
static char fake_asked[16][64];
static int fake_n_asked;
static bool fake_wrong_policy;

/* games/srv: player 7000 and 7100-7200, legacy/default 7000 (not meshed:
 * no pod counts), games/nobody 1-2 (no pod), a backwards range (ignored);
 * games/open: everyone, every port. */
static void
fake_grants(const struct weft_policy *p, const char *dst_ns,
    const char *dst_sa, weft_policy_udp_fn fn, void *arg)
{
	if (p != (const struct weft_policy *)&fake_tag)
		fake_wrong_policy = true;
	if (fake_n_asked < 16)
		snprintf(fake_asked[fake_n_asked++], 64, "%s/%s", dst_ns,
		    dst_sa);
	if (strcmp(dst_ns, "games") == 0 && strcmp(dst_sa, "srv") == 0) {
		fn("games", "player", 7000, 7000, arg);
		fn("games", "player", 7100, 7200, arg);
		fn("legacy", "default", 7000, 7000, arg);
		fn("games", "nobody", 1, 2, arg);
		fn("games", "player", 9, 8, arg);
	} else if (strcmp(dst_ns, "games") == 0 && strcmp(dst_sa, "open") == 0)
		fn(NULL, NULL, 0, 65535, arg);
}

static const struct weft_nft_udp *
find(const struct weft_nft_udp *u, size_t n, const char *src,
    const char *dst, uint16_t lo, uint16_t hi)
{
	struct weft_ip s, d;
	size_t i;

	memset(&s, 0, sizeof(s));
	if (src != NULL && weft_ip_parse(src, &s) == -1)
		abort();
	if (weft_ip_parse(dst, &d) == -1)
		abort();
	for (i = 0; i < n; i++)
		if (u[i].any_src == (src == NULL) &&
		    (src == NULL || weft_ip_equal(&u[i].src, &s)) &&
		    weft_ip_equal(&u[i].dst, &d) && u[i].port_lo == lo &&
		    u[i].port_hi == hi)
			return &u[i];
	return NULL;
}

static bool
asked(const char *who)
{
	int i;

	for (i = 0; i < fake_n_asked; i++)
		if (strcmp(fake_asked[i], who) == 0)
			return true;
	return false;
}

static void
test_fake(void)
{
	struct weft_gen *g;
	struct weft_nft_udp *u;
	const struct weft_nft_udp *e;
	char *err = NULL;
	size_t n;

	g = weft_gen_build(make_snapshot(), &err);
	ok(g != NULL, "generation built (%s)", err ? err : "ok");
	if (g == NULL)
		return;
	is_int(weft_node_udp_grants(g, (const struct weft_policy *)&fake_tag,
	    fake_grants, &u, &n), 0, "grants computed");
	ok(!fake_wrong_policy, "the policy is passed through");

	/* Asked for each meshed local pod with an address, by its identity. */
	is_int(fake_n_asked, 4, "asked once per local meshed pod with an IP");
	ok(asked("games/srv") && asked("games/player") && asked("games/open"),
	    "asked for srv, srv6, near and open");

	is_int(n, 7, "7 elements");
	e = find(u, n, "10.244.1.41", "10.244.1.40", 7000, 7000);
	ok(e != NULL, "same-node source pod of the identity -> srv:7000");
	is_str(e ? e->comment : NULL, "games/player -> games/srv",
	    "comment: source identity -> local pod");
	ok(find(u, n, "10.244.2.40", "10.244.1.40", 7000, 7000),
	    "other node's pod of the identity -> srv:7000");
	ok(find(u, n, "10.244.1.41", "10.244.1.40", 7100, 7200) &&
	    find(u, n, "10.244.2.40", "10.244.1.40", 7100, 7200),
	    "port range granted to both");
	ok(find(u, n, "fd00:2::40", "fd00:1::40", 7000, 7000) &&
	    find(u, n, "fd00:2::40", "fd00:1::40", 7100, 7200),
	    "v6 source pod -> v6 local pod (srv6)");
	ok(find(u, n, "fd00:2::40", "10.244.1.40", 7000, 7000) == NULL &&
	    find(u, n, "10.244.2.40", "fd00:1::40", 7000, 7000) == NULL,
	    "no element across families");
	ok(find(u, n, "10.250.0.12", "10.244.1.40", 7000, 7000) == NULL,
	    "host-network pod (node's address) is no source");
	ok(find(u, n, "10.244.2.42", "10.244.1.40", 7000, 7000) == NULL,
	    "pod outside the mesh is no source");
	ok(find(u, n, "10.244.2.41", "10.244.1.40", 7000, 7000) == NULL,
	    "pod of another identity is no source");
	e = find(u, n, NULL, "10.244.1.42", 0, 65535);
	ok(e != NULL && strcmp(e->comment, "any source -> games/open") == 0,
	    "grant to everyone: one element without source");
	ok(find(u, n, "10.244.1.41", "10.244.2.43", 7000, 7000) == NULL,
	    "a pod of another node is no destination");
	free(u);
	weft_gen_unref(g);
}

/* ---- with the real policy -------------------------------------------- */

static void
add_udp_target(struct weft_snapshot *s)
{
	struct weft_smi_target *t;
	struct weft_smi_l4_route *r;

	s->udp_routes = calloc(1, sizeof(*s->udp_routes));
	s->n_udp_routes = 1;
	r = &s->udp_routes[0];
	r->namespace = xs("games");
	r->name = xs("game");
	r->ports = calloc(2, sizeof(*r->ports));
	r->ports[0] = 7000;
	r->ports[1] = 7001;
	r->n_ports = 2;

	s->targets = calloc(1, sizeof(*s->targets));
	s->n_targets = 1;
	t = &s->targets[0];
	t->namespace = xs("games");
	t->name = xs("players");
	t->destination.namespace = xs("games");
	t->destination.name = xs("srv");
	t->sources = calloc(1, sizeof(*t->sources));
	t->n_sources = 1;
	t->sources[0].namespace = xs("games");
	t->sources[0].name = xs("player");
	t->rules = calloc(1, sizeof(*t->rules));
	t->n_rules = 1;
	t->rules[0].kind = WEFT_SMI_UDP;
	t->rules[0].name = xs("game");
}

static void
test_policy(void)
{
	struct weft_snapshot *s = make_snapshot();
	struct weft_nft_config cfg;
	struct weft_gen *g;
	const struct weft_nft_udp *e;
	char *err = NULL;

	add_udp_target(s);
	g = weft_gen_build(s, &err);
	ok(g != NULL, "generation with a UDP TrafficTarget (%s)",
	    err ? err : "ok");
	if (g == NULL)
		return;
	is_int(weft_node_nft_config(g, "wv", &cfg), 0, "nft config derived");
	/* near and far (v4) and far6 (v6) to srv and srv6, ports 7000-7001
	 * (merged by the policy into one range or kept as two: either). */
	e = find(cfg.udp, cfg.n_udp, "10.244.1.41", "10.244.1.40", 7000, 7001);
	if (e == NULL)
		e = find(cfg.udp, cfg.n_udp, "10.244.1.41", "10.244.1.40", 7000,
		    7000);
	ok(e != NULL, "same-node player -> srv:7000 granted");
	ok(find(cfg.udp, cfg.n_udp, "10.244.2.40", "10.244.1.40", 7000, 7001) ||
	    find(cfg.udp, cfg.n_udp, "10.244.2.40", "10.244.1.40", 7000, 7000),
	    "other node's player -> srv:7000 granted");
	ok(find(cfg.udp, cfg.n_udp, "fd00:2::40", "fd00:1::40", 7000, 7001) ||
	    find(cfg.udp, cfg.n_udp, "fd00:2::40", "fd00:1::40", 7000, 7000),
	    "v6 player -> srv6 granted");
	{
		size_t i;
		bool only = true;

		for (i = 0; i < cfg.n_udp; i++) {
			char d[WEFT_IP_STRLEN];

			weft_ip_str(&cfg.udp[i].dst, d, sizeof(d));
			if (cfg.udp[i].any_src ||
			    (strcmp(d, "10.244.1.40") != 0 &&
			    strcmp(d, "fd00:1::40") != 0) ||
			    cfg.udp[i].port_lo < 7000 ||
			    cfg.udp[i].port_hi > 7001)
				only = false;
		}
		ok(only && cfg.n_udp >= 3, "only srv's grants, ports 7000-7001 "
		    "(%zu elements)", cfg.n_udp);
	}
	ok(find(cfg.udp, cfg.n_udp, "10.244.2.41", "10.244.1.40", 7000, 7000) ==
	    NULL, "spy has no grant");
	weft_node_nft_config_free(&cfg);
	weft_gen_unref(g);

	/* No target: no element (deny by default is the table's drop). */
	g = weft_gen_build(make_snapshot(), &err);
	if (g != NULL && weft_node_nft_config(g, "wv", &cfg) == 0) {
		is_int(cfg.n_udp, 0, "no TrafficTarget: no UDP element");
		weft_node_nft_config_free(&cfg);
	} else
		ok(0, "generation without targets");
	weft_gen_unref(g);
}

int
main(void)
{
	test_fake();
	test_policy();
	return tap_done();
}
