/* Unit tests for proxy/policy.c: SPEC §3.2, §3.3, §3.4, §4.1, §8.1 and the
 * A-decisions on access, as one big table over one fixture snapshot plus a
 * few focused tests (compile errors, UDP grants, empty snapshots). */
#include "config.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "weft/gen.h"
#include "weft/policy.h"
#include "weft/snapshot.h"
#include "../../tap.h"

#define TCP	IPPROTO_TCP
#define UDP	IPPROTO_UDP
#define D	WEFT_POLICY_DENY
#define A	WEFT_POLICY_ALLOW
#define H	WEFT_POLICY_HTTP

/* --- building snapshots by hand ------------------------------------------------ */

static char *
xs(const char *s)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		abort();
	return d;
}

static void *
grow(void *p, size_t n, size_t size)
{
	if ((p = realloc(p, (n + 1) * size)) == NULL)
		abort();
	memset((char *)p + n * size, 0, size);
	return p;
}

/* Split "a,b,c" into a malloc'd array of strings. */
static char **
split(const char *list, size_t *n)
{
	char **v = NULL, *copy, *tok, *save;

	*n = 0;
	if (list == NULL)
		return NULL;
	copy = xs(list);
	for (tok = strtok_r(copy, ",", &save); tok != NULL;
	    tok = strtok_r(NULL, ",", &save)) {
		v = grow(v, *n, sizeof(*v));
		v[(*n)++] = xs(tok);
	}
	free(copy);
	return v;
}

static void
add_ns(struct weft_snapshot *s, const char *name, bool meshed,
    enum weft_access_mode mode, enum weft_unauth_mode unauth)
{
	struct weft_snap_namespace *ns;

	s->namespaces = grow(s->namespaces, s->n_namespaces,
	    sizeof(*s->namespaces));
	ns = &s->namespaces[s->n_namespaces++];
	ns->name = xs(name);
	ns->meshed = meshed;
	ns->access_mode = mode;
	ns->unauthenticated = unauth;
}

static void
add_l4(struct weft_smi_l4_route **arr, size_t *n, const char *ns,
    const char *name, const uint16_t *ports, size_t n_ports)
{
	struct weft_smi_l4_route *r;

	*arr = grow(*arr, *n, sizeof(**arr));
	r = &(*arr)[(*n)++];
	r->namespace = xs(ns);
	r->name = xs(name);
	if (n_ports > 0) {
		r->ports = calloc(n_ports, sizeof(*r->ports));
		memcpy(r->ports, ports, n_ports * sizeof(*ports));
		r->n_ports = n_ports;
	}
}

#define TCPROUTE(s, ns, name, ...) do {					\
	static const uint16_t p_[] = { 0, ##__VA_ARGS__ };		\
	add_l4(&(s)->tcp_routes, &(s)->n_tcp_routes, ns, name, p_ + 1,	\
	    sizeof(p_) / sizeof(p_[0]) - 1);				\
} while (0)
#define UDPROUTE(s, ns, name, ...) do {					\
	static const uint16_t p_[] = { 0, ##__VA_ARGS__ };		\
	add_l4(&(s)->udp_routes, &(s)->n_udp_routes, ns, name, p_ + 1,	\
	    sizeof(p_) / sizeof(p_[0]) - 1);				\
} while (0)

static struct weft_smi_http_route_group *
add_group(struct weft_snapshot *s, const char *ns, const char *name)
{
	struct weft_smi_http_route_group *g;

	s->http_route_groups = grow(s->http_route_groups,
	    s->n_http_route_groups, sizeof(*s->http_route_groups));
	g = &s->http_route_groups[s->n_http_route_groups++];
	g->namespace = xs(ns);
	g->name = xs(name);
	return g;
}

/* headers: "name=regex;name=regex" (names as the controller gives them:
 * lower case). */
static void
add_match(struct weft_smi_http_route_group *g, const char *name,
    const char *path, const char *methods, const char *headers)
{
	struct weft_smi_http_match *m;
	char *copy, *tok, *save, *eq;

	g->matches = grow(g->matches, g->n_matches, sizeof(*g->matches));
	m = &g->matches[g->n_matches++];
	m->name = xs(name);
	m->path_regex = xs(path);
	m->methods = split(methods, &m->n_methods);
	if (headers == NULL)
		return;
	copy = xs(headers);
	for (tok = strtok_r(copy, ";", &save); tok != NULL;
	    tok = strtok_r(NULL, ";", &save)) {
		eq = strchr(tok, '=');
		*eq = '\0';
		m->headers = grow(m->headers, m->n_headers,
		    sizeof(*m->headers));
		m->headers[m->n_headers].name = xs(tok);
		m->headers[m->n_headers].value_regex = xs(eq + 1);
		m->n_headers++;
	}
	free(copy);
}

static struct weft_smi_target *
add_target(struct weft_snapshot *s, const char *ns, const char *name,
    const char *dst_ns, const char *dst_sa, uint16_t port)
{
	struct weft_smi_target *t;

	s->targets = grow(s->targets, s->n_targets, sizeof(*s->targets));
	t = &s->targets[s->n_targets++];
	t->namespace = xs(ns);
	t->name = xs(name);
	t->destination.namespace = xs(dst_ns);
	t->destination.name = xs(dst_sa);
	t->port = port;
	return t;
}

static void
add_source(struct weft_smi_target *t, const char *ns, const char *sa)
{
	t->sources = grow(t->sources, t->n_sources, sizeof(*t->sources));
	t->sources[t->n_sources].namespace = xs(ns);
	t->sources[t->n_sources].name = xs(sa);
	t->n_sources++;
}

static void
add_rule(struct weft_smi_target *t, enum weft_smi_rule_kind kind,
    const char *name, const char *matches)
{
	struct weft_smi_rule *r;

	t->rules = grow(t->rules, t->n_rules, sizeof(*t->rules));
	r = &t->rules[t->n_rules++];
	r->kind = kind;
	r->name = xs(name);
	r->matches = split(matches, &r->n_matches);
}

static void
free_strv(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Everything the helpers above allocate (the snapshot's own free function
 * is another engineer's and may not know the SMI arrays yet). */
static void
free_snapshot(struct weft_snapshot *s)
{
	size_t i, j, k;

	for (i = 0; i < s->n_namespaces; i++)
		free(s->namespaces[i].name);
	free(s->namespaces);
	for (i = 0; i < s->n_targets; i++) {
		struct weft_smi_target *t = &s->targets[i];

		free(t->namespace);
		free(t->name);
		free(t->destination.namespace);
		free(t->destination.name);
		for (j = 0; j < t->n_sources; j++) {
			free(t->sources[j].namespace);
			free(t->sources[j].name);
		}
		free(t->sources);
		for (j = 0; j < t->n_rules; j++) {
			free(t->rules[j].name);
			free_strv(t->rules[j].matches, t->rules[j].n_matches);
		}
		free(t->rules);
	}
	free(s->targets);
	for (i = 0; i < s->n_http_route_groups; i++) {
		struct weft_smi_http_route_group *g = &s->http_route_groups[i];

		free(g->namespace);
		free(g->name);
		for (j = 0; j < g->n_matches; j++) {
			struct weft_smi_http_match *m = &g->matches[j];

			free(m->name);
			free(m->path_regex);
			free_strv(m->methods, m->n_methods);
			for (k = 0; k < m->n_headers; k++) {
				free(m->headers[k].name);
				free(m->headers[k].value_regex);
			}
			free(m->headers);
		}
		free(g->matches);
	}
	free(s->http_route_groups);
	for (i = 0; i < s->n_tcp_routes; i++) {
		free(s->tcp_routes[i].namespace);
		free(s->tcp_routes[i].name);
		free(s->tcp_routes[i].ports);
	}
	free(s->tcp_routes);
	for (i = 0; i < s->n_udp_routes; i++) {
		free(s->udp_routes[i].namespace);
		free(s->udp_routes[i].name);
		free(s->udp_routes[i].ports);
	}
	free(s->udp_routes);
	free(s);
}

/* --- the fixture ---------------------------------------------------------------- */

static struct weft_snapshot *
fixture(void)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_smi_http_route_group *g;
	struct weft_smi_target *t;

	add_ns(s, "audit", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	add_ns(s, "bank", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	add_ns(s, "legacy", false, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	add_ns(s, "open", true, WEFT_ACCESS_PERMISSIVE, WEFT_UNAUTH_DENY);
	add_ns(s, "public", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_ALLOW);
	add_ns(s, "shop", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	add_ns(s, "tools", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);

	/* SPEC §3.3, verbatim */
	g = add_group(s, "bank", "ledger-api");
	add_match(g, "read", "/v1/accounts", "GET,HEAD", NULL);
	add_match(g, "health", "/healthz$", NULL, NULL);
	TCPROUTE(s, "bank", "ledger-port", 7070);
	t = add_target(s, "bank", "ledger-readers", "bank", "ledger", 0);
	add_rule(t, WEFT_SMI_TCP, "ledger-port", NULL);
	add_rule(t, WEFT_SMI_HTTP, "ledger-api", "read");
	add_source(t, "bank", "teller");
	add_source(t, "audit", "auditor");

	/* a second target for the same destination selects "health" */
	t = add_target(s, "bank", "ledger-health", "bank", "ledger", 0);
	add_rule(t, WEFT_SMI_TCP, "ledger-port", NULL);
	add_rule(t, WEFT_SMI_HTTP, "ledger-api", "health");
	add_source(t, "bank", "monitor");

	/* SPEC §4.4 */
	g = add_group(s, "shop", "storefront");
	add_match(g, "catalog-read", "/catalog/", "GET", NULL);
	add_match(g, "beta-testers", NULL, NULL,
	    "x-beta=yes|true;user-agent=.*Mobile.*");
	add_match(g, "anything", ".*", "*", NULL);
	TCPROUTE(s, "shop", "pg", 5432);
	UDPROUTE(s, "shop", "all-udp");
	/* §4.1 details */
	g = add_group(s, "shop", "details");
	add_match(g, "metrics", "/metrics", NULL, NULL);
	add_match(g, "empty", NULL, NULL, NULL);	/* matches everything */
	add_match(g, "post-only", NULL, "POST", NULL);
	add_match(g, "rx", "/api/v[0-9]+/items$", "GET", NULL);
	add_match(g, "hdr", "/h", NULL, "x-token=abc");
	add_match(g, "lazy", "/c", NULL, "cookie=.*?session=[a-z]+.*?");

	/* TCP-only (A-1 case 1) */
	t = add_target(s, "shop", "db-access", "shop", "db", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);
	add_source(t, "shop", "api");
	/* HTTP-only (A-1 case 2) */
	t = add_target(s, "shop", "web-http", "shop", "web", 0);
	add_rule(t, WEFT_SMI_HTTP, "storefront", "catalog-read,beta-testers");
	add_source(t, "shop", "frontend");
	t = add_target(s, "shop", "web-anything", "shop", "web2", 0);
	add_rule(t, WEFT_SMI_HTTP, "storefront", "anything");
	add_source(t, "shop", "frontend");
	/* §4.1 detail target, every entry (no matches = all) */
	t = add_target(s, "shop", "details-all", "shop", "detail", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", NULL);
	add_source(t, "shop", "all");
	/* the same group, one entry at a time */
	t = add_target(s, "shop", "details-metrics", "shop", "detail", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "metrics");
	add_source(t, "shop", "metrics-only");
	t = add_target(s, "shop", "details-post", "shop", "detail", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "post-only");
	add_source(t, "shop", "poster");
	t = add_target(s, "shop", "details-rx", "shop", "detail", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "rx");
	add_source(t, "shop", "rx");
	t = add_target(s, "shop", "details-hdr", "shop", "detail", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "hdr,lazy");
	add_source(t, "shop", "hdr");

	/* SPEC §3.2.6's L4 example: TCP 8300-8302, UDP 8301-8302 */
	TCPROUTE(s, "shop", "consul-tcp", 8300, 8301, 8302);
	UDPROUTE(s, "shop", "consul-udp", 8301, 8302);
	t = add_target(s, "shop", "consul", "shop", "consul", 0);
	add_rule(t, WEFT_SMI_TCP, "consul-tcp", NULL);
	add_rule(t, WEFT_SMI_UDP, "consul-udp", NULL);
	add_source(t, "shop", "agent");
	/* UDP only; an every-port UDPRoute */
	t = add_target(s, "shop", "dns", "shop", "dns", 0);
	add_rule(t, WEFT_SMI_UDP, "all-udp", NULL);
	add_source(t, "shop", "resolver");

	/* empty lists grant nothing */
	t = add_target(s, "shop", "no-rules", "shop", "empty", 0);
	add_source(t, "shop", "api");
	t = add_target(s, "shop", "no-sources", "shop", "empty", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);

	/* §3.2.7: unresolvable references */
	t = add_target(s, "shop", "missing-tcp", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_TCP, "nope", NULL);
	add_rule(t, WEFT_SMI_HTTP, "storefront", NULL);
	add_source(t, "shop", "a");
	t = add_target(s, "shop", "missing-http", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);
	add_rule(t, WEFT_SMI_HTTP, "nope", NULL);
	add_source(t, "shop", "b");
	t = add_target(s, "shop", "unknown-names", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_HTTP, "storefront", "nosuch,alsonot");
	add_source(t, "shop", "c");
	t = add_target(s, "shop", "some-unknown", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_HTTP, "storefront", "nosuch,catalog-read");
	add_source(t, "shop", "d");
	t = add_target(s, "shop", "only-missing-tcp", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_TCP, "nope", NULL);
	add_source(t, "shop", "e");
	/* a rule naming a route of another namespace: looked up in the
	 * target's own (tools has no TCPRoute pg) */
	t = add_target(s, "tools", "cross", "shop", "broken", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);
	add_source(t, "tools", "client");
	/* matches on a TCPRoute rule are ignored */
	t = add_target(s, "shop", "tcp-with-matches", "shop", "db", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", "whatever");
	add_source(t, "shop", "matcher");

	/* a target in the caller's namespace; rules resolve there */
	TCPROUTE(s, "tools", "any");
	t = add_target(s, "tools", "self-grant", "shop", "selfg", 0);
	add_rule(t, WEFT_SMI_TCP, "any", NULL);
	add_source(t, "tools", "client");

	/* §8.1: destination.port of old versions */
	TCPROUTE(s, "shop", "old-any");		/* old TCPRoute: no ports */
	t = add_target(s, "shop", "old-tcp", "shop", "legacyapp", 8080);
	add_rule(t, WEFT_SMI_TCP, "old-any", NULL);
	add_source(t, "shop", "old");
	t = add_target(s, "shop", "old-http", "shop", "legacyweb", 8080);
	add_rule(t, WEFT_SMI_HTTP, "details", "metrics");
	add_source(t, "shop", "old");
	t = add_target(s, "shop", "old-pg", "shop", "legacydb", 9999);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);		/* 5432 != 9999 */
	add_source(t, "shop", "old");
	t = add_target(s, "shop", "old-udp", "shop", "legacyudp", 53);
	add_rule(t, WEFT_SMI_UDP, "all-udp", NULL);
	add_source(t, "shop", "old");

	/* union: two targets, one destination; never crossed */
	TCPROUTE(s, "shop", "p1000", 1000);
	TCPROUTE(s, "shop", "p2000", 2000);
	t = add_target(s, "shop", "pay-a", "shop", "pay", 0);
	add_rule(t, WEFT_SMI_TCP, "p1000", NULL);
	add_source(t, "shop", "a");
	t = add_target(s, "shop", "pay-b", "shop", "pay", 0);
	add_rule(t, WEFT_SMI_TCP, "p2000", NULL);
	add_source(t, "shop", "b");
	/* union of an HTTP target and an L4 target for one source */
	TCPROUTE(s, "shop", "p9000", 9000);
	t = add_target(s, "shop", "mixed-http", "shop", "mixed", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "metrics");
	add_source(t, "shop", "a");
	t = add_target(s, "shop", "mixed-tcp", "shop", "mixed", 0);
	add_rule(t, WEFT_SMI_TCP, "p9000", NULL);
	add_source(t, "shop", "a");
	/* several rules of one kind: OR */
	t = add_target(s, "shop", "two-tcp", "shop", "twotcp", 0);
	add_rule(t, WEFT_SMI_TCP, "p1000", NULL);
	add_rule(t, WEFT_SMI_TCP, "p2000", NULL);
	add_source(t, "shop", "a");
	add_source(t, "tools", "client");
	t = add_target(s, "shop", "two-groups", "shop", "twogroups", 0);
	add_rule(t, WEFT_SMI_HTTP, "details", "metrics");
	add_rule(t, WEFT_SMI_HTTP, "storefront", "catalog-read");
	add_source(t, "shop", "a");

	/* '*' is a literal name */
	t = add_target(s, "shop", "star", "shop", "star", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);
	add_source(t, "*", "*");
	/* empty namespaces (as a snapshot should never carry them) */
	t = add_target(s, "shop", "implicit-ns", "", "implicit", 0);
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);
	add_source(t, "", "api");

	/* modes */
	t = add_target(s, "public", "pub", "public", "site", 0);
	add_rule(t, WEFT_SMI_TCP, "p80", NULL);
	TCPROUTE(s, "public", "p80", 80);
	add_source(t, "shop", "api");
	return s;
}

/* --- the table -------------------------------------------------------------------- */

struct tcase {
	const char	*name;
	const char	*src;		/* "ns/sa"; NULL: unauthenticated */
	const char	*dst;		/* "ns/sa" */
	int		 proto;
	uint16_t	 port;
	const char	*method;	/* non-NULL: check_http */
	const char	*path;
	const char	*headers;	/* "Name: value\n..." */
	enum weft_policy_verdict want;
	const char	*target;	/* exact, or NULL: not checked */
	const char	*rule;		/* exact, or NULL */
	const char	*reason;	/* substring, or NULL */
};

static const struct tcase cases[] = {
	/* --- §3.3 example ------------------------------------------------------- */
	{ "3.3 teller GET /v1/accounts on 7070", "bank/teller", "bank/ledger",
	    TCP, 7070, "GET", "/v1/accounts", NULL, A, "bank/ledger-readers",
	    "HTTPRouteGroup bank/ledger-api match read", NULL },
	{ "3.3 auditor HEAD /v1/accounts/42", "audit/auditor", "bank/ledger",
	    TCP, 7070, "HEAD", "/v1/accounts/42", NULL, A,
	    "bank/ledger-readers", NULL, NULL },
	{ "3.3 connection on 7070 is HTTP", "bank/teller", "bank/ledger", TCP,
	    7070, NULL, NULL, NULL, H, "bank/ledger-readers",
	    "HTTPRouteGroup bank/ledger-api", "each request is checked" },
	{ "3.3 connection on 7071 denied", "bank/teller", "bank/ledger", TCP,
	    7071, NULL, NULL, NULL, D, "", NULL,
	    "port 7071 not in TCPRoute bank/ledger-port" },
	{ "3.3 GET on 7071 denied", "bank/teller", "bank/ledger", TCP, 7071,
	    "GET", "/v1/accounts", NULL, D, "", NULL,
	    "port 7071 not in TCPRoute bank/ledger-port" },
	{ "3.3 /healthz not selected", "bank/teller", "bank/ledger", TCP, 7070,
	    "GET", "/healthz", NULL, D, "", "",
	    "no HTTPRouteGroup match admits GET /healthz" },
	{ "3.3 POST not allowed", "bank/teller", "bank/ledger", TCP, 7070,
	    "POST", "/v1/accounts", NULL, D, NULL, NULL,
	    "no HTTPRouteGroup match admits POST /v1/accounts" },
	{ "3.3 other identity denied", "bank/clerk", "bank/ledger", TCP, 7070,
	    NULL, NULL, NULL, D, "", NULL,
	    "source bank/clerk is not a source of any TrafficTarget for "
	    "bank/ledger" },
	{ "3.3 other identity, request denied", "bank/clerk", "bank/ledger",
	    TCP, 7070, "GET", "/v1/accounts", NULL, D, NULL, NULL,
	    "is not a source" },
	{ "3.3 auditor from wrong namespace", "bank/auditor", "bank/ledger",
	    TCP, 7070, NULL, NULL, NULL, D, NULL, NULL, "is not a source" },
	{ "3.3 UDP to 7070 denied", "bank/teller", "bank/ledger", UDP, 7070,
	    NULL, NULL, NULL, D, NULL, NULL,
	    "TrafficTarget bank/ledger-readers has no UDPRoute rules" },
	{ "3.3 ledger itself not selected as source", "bank/ledger",
	    "bank/ledger", TCP, 7070, NULL, NULL, NULL, D, NULL, NULL,
	    "not a source" },

	/* --- §3.2.1 deny by default, §3.2.2 selection ------------------------- */
	{ "no target selects", "shop/api", "shop/nobody", TCP, 80, NULL, NULL,
	    NULL, D, "", "", "no TrafficTarget selects shop/nobody" },
	{ "no target selects (HTTP)", "shop/api", "shop/nobody", TCP, 80,
	    "GET", "/", NULL, D, "", "",
	    "no TrafficTarget selects shop/nobody" },
	{ "no target selects (UDP)", "shop/api", "shop/nobody", UDP, 53, NULL,
	    NULL, NULL, D, NULL, NULL, "no TrafficTarget selects shop/nobody" },
	{ "destination SA compared exactly", "shop/api", "shop/DB", TCP, 5432,
	    NULL, NULL, NULL, D, NULL, NULL, "no TrafficTarget selects shop/DB" },
	{ "destination namespace matters", "shop/api", "tools/db", TCP, 5432,
	    NULL, NULL, NULL, D, NULL, NULL,
	    "no TrafficTarget selects tools/db" },

	/* --- A-1 case 1: TCPRoute only ----------------------------------------- */
	{ "A-1 tcp-only: port ok", "shop/api", "shop/db", TCP, 5432, NULL,
	    NULL, NULL, A, "shop/db-access", "TCPRoute shop/pg", NULL },
	{ "A-1 tcp-only: other port", "shop/api", "shop/db", TCP, 5433, NULL,
	    NULL, NULL, D, "", "", "port 5433 not in TCPRoute shop/pg" },
	{ "A-1 tcp-only: HTTP request on the port", "shop/api", "shop/db", TCP,
	    5432, "DELETE", "/anything", NULL, A, "shop/db-access",
	    "TCPRoute shop/pg", NULL },
	{ "A-1 tcp-only: HTTP request, other port", "shop/api", "shop/db", TCP,
	    80, "GET", "/", NULL, D, NULL, NULL, "port 80 not in TCPRoute "
	    "shop/pg" },
	{ "A-1 tcp-only: UDP on the port", "shop/api", "shop/db", UDP, 5432,
	    NULL, NULL, NULL, D, NULL, NULL, "has no UDPRoute rules" },
	{ "A-1 TCPRoute with every port", "tools/client", "shop/selfg", TCP,
	    1, NULL, NULL, NULL, A, "tools/self-grant", "TCPRoute tools/any",
	    NULL },
	{ "A-1 TCPRoute with every port, 65535", "tools/client", "shop/selfg",
	    TCP, 65535, NULL, NULL, NULL, A, NULL, NULL, NULL },

	/* --- A-1 case 2: HTTPRouteGroup only ----------------------------------- */
	{ "A-1 http-only: any port is HTTP", "shop/frontend", "shop/web", TCP,
	    12345, NULL, NULL, NULL, H, "shop/web-http",
	    "HTTPRouteGroup shop/storefront", NULL },
	{ "A-1 http-only: GET /catalog/x", "shop/frontend", "shop/web", TCP,
	    8080, "GET", "/catalog/x", NULL, A, "shop/web-http",
	    "HTTPRouteGroup shop/storefront match catalog-read", NULL },
	{ "A-1 http-only: same on another port", "shop/frontend", "shop/web",
	    TCP, 1, "GET", "/catalog/x", NULL, A, NULL, NULL, NULL },
	{ "A-1 http-only: unselected entry 'anything'", "shop/frontend",
	    "shop/web", TCP, 80, "PUT", "/other", NULL, D, "", "",
	    "no HTTPRouteGroup match admits PUT /other" },
	{ "A-1 http-only: UDP denied", "shop/frontend", "shop/web", UDP, 80,
	    NULL, NULL, NULL, D, NULL, NULL, "has no UDPRoute rules" },

	/* --- A-1 case 3: both (the §3.3 cases above) plus unresolved ------------ */
	{ "A-1 both: raw TCP never ALLOW", "bank/teller", "bank/ledger", TCP,
	    7070, NULL, NULL, NULL, H, NULL, NULL, NULL },

	/* --- A-1 case 4: UDP independent (§3.2.6 L4 example) -------------------- */
	{ "A-1 L4 example: TCP 8300", "shop/agent", "shop/consul", TCP, 8300,
	    NULL, NULL, NULL, A, "shop/consul", "TCPRoute shop/consul-tcp",
	    NULL },
	{ "A-1 L4 example: TCP 8302", "shop/agent", "shop/consul", TCP, 8302,
	    NULL, NULL, NULL, A, NULL, NULL, NULL },
	{ "A-1 L4 example: UDP 8300 blocked", "shop/agent", "shop/consul",
	    UDP, 8300, NULL, NULL, NULL, D, "", "",
	    "port 8300 not in UDPRoute shop/consul-udp" },
	{ "A-1 L4 example: UDP 8301", "shop/agent", "shop/consul", UDP, 8301,
	    NULL, NULL, NULL, A, "shop/consul", "UDPRoute shop/consul-udp",
	    NULL },
	{ "A-1 L4 example: UDP 8302", "shop/agent", "shop/consul", UDP, 8302,
	    NULL, NULL, NULL, A, NULL, NULL, NULL },
	{ "A-1 L4 example: TCP 8303", "shop/agent", "shop/consul", TCP, 8303,
	    NULL, NULL, NULL, D, NULL, NULL,
	    "port 8303 not in TCPRoute shop/consul-tcp" },
	{ "A-1 UDP-only target: UDP any port", "shop/resolver", "shop/dns",
	    UDP, 53, NULL, NULL, NULL, A, "shop/dns", "UDPRoute shop/all-udp",
	    NULL },
	{ "A-1 UDP-only target: TCP denied", "shop/resolver", "shop/dns", TCP,
	    53, NULL, NULL, NULL, D, NULL, NULL,
	    "TrafficTarget shop/dns has no TCPRoute or HTTPRouteGroup rules" },
	{ "A-1 UDP-only target: HTTP denied", "shop/resolver", "shop/dns", TCP,
	    53, "GET", "/", NULL, D, NULL, NULL,
	    "has no TCPRoute or HTTPRouteGroup rules" },
	{ "UDP never carries HTTP", "shop/frontend", "shop/web", UDP, 80, "GET",
	    "/catalog/", NULL, D, NULL, NULL, "not an HTTP request over TCP" },

	/* --- §4.1 path ----------------------------------------------------------- */
	{ "path: /metrics", "shop/metrics-only", "shop/detail", TCP, 80, "GET",
	    "/metrics", NULL, A, "shop/details-metrics",
	    "HTTPRouteGroup shop/details match metrics", NULL },
	{ "path: /metrics/x (prefix)", "shop/metrics-only", "shop/detail", TCP,
	    80, "GET", "/metrics/x", NULL, A, NULL, NULL, NULL },
	{ "path: /metricsfoo (no end anchor)", "shop/metrics-only",
	    "shop/detail", TCP, 80, "GET", "/metricsfoo", NULL, A, NULL, NULL,
	    NULL },
	{ "path: /x/metrics (start anchor)", "shop/metrics-only", "shop/detail",
	    TCP, 80, "GET", "/x/metrics", NULL, D, NULL, NULL,
	    "no HTTPRouteGroup match admits GET /x/metrics" },
	{ "path: /metric (too short)", "shop/metrics-only", "shop/detail", TCP,
	    80, "GET", "/metric", NULL, D, NULL, NULL, NULL },
	{ "path: case sensitive", "shop/metrics-only", "shop/detail", TCP, 80,
	    "GET", "/METRICS", NULL, D, NULL, NULL, NULL },
	{ "path: query stripped (A-3)", "shop/metrics-only", "shop/detail",
	    TCP, 80, "GET", "/metrics?x=1", NULL, A, NULL, NULL, NULL },
	{ "path: query not tested", "shop/rx", "shop/detail", TCP, 80, "GET",
	    "/api/v1/items?page=2", NULL, A, "shop/details-rx",
	    "HTTPRouteGroup shop/details match rx", NULL },
	{ "path: $ anchors the end", "shop/rx", "shop/detail", TCP, 80, "GET",
	    "/api/v1/items/3", NULL, D, NULL, NULL, NULL },
	{ "path: regex class", "shop/rx", "shop/detail", TCP, 80, "GET",
	    "/api/v42/items", NULL, A, NULL, NULL, NULL },
	{ "path: regex class fails", "shop/rx", "shop/detail", TCP, 80, "GET",
	    "/api/vx/items", NULL, D, NULL, NULL, NULL },
	{ "path: 3.3 /healthz$", "bank/monitor", "bank/ledger", TCP, 7070,
	    "GET", "/healthz", NULL, A, "bank/ledger-health",
	    "HTTPRouteGroup bank/ledger-api match health", NULL },
	{ "path: 3.3 /healthz$ with a query", "bank/monitor", "bank/ledger",
	    TCP, 7070, "GET", "/healthz?verbose=1", NULL, A, NULL, NULL, NULL },
	{ "path: 3.3 /healthz$ rejects /healthz/x", "bank/monitor",
	    "bank/ledger", TCP, 7070, "GET", "/healthz/x", NULL, D, NULL, NULL,
	    NULL },
	{ "path: 3.3 /healthz$ rejects /a/healthz", "bank/monitor",
	    "bank/ledger", TCP, 7070, "GET", "/a/healthz", NULL, D, NULL, NULL,
	    NULL },
	{ "path: 3.3 health entry not /v1/accounts", "bank/monitor",
	    "bank/ledger", TCP, 7070, "GET", "/v1/accounts", NULL, D, NULL,
	    NULL, NULL },
	{ "path: '.*' matches everything", "shop/frontend", "shop/web", TCP,
	    80, "GET", "/catalog/", NULL, A, NULL, NULL, NULL },
	{ "path: /catalog without slash", "shop/frontend", "shop/web", TCP, 80,
	    "GET", "/catalog", NULL, D, NULL, NULL, NULL },
	{ "path: empty path", "shop/metrics-only", "shop/detail", TCP, 80,
	    "GET", "", NULL, D, NULL, NULL, NULL },

	/* --- §4.1 methods -------------------------------------------------------- */
	{ "method: GET listed", "shop/rx", "shop/detail", TCP, 80, "GET",
	    "/api/v1/items", NULL, A, NULL, NULL, NULL },
	{ "method: POST not listed", "shop/rx", "shop/detail", TCP, 80, "POST",
	    "/api/v1/items", NULL, D, NULL, NULL,
	    "no HTTPRouteGroup match admits POST /api/v1/items" },
	{ "method: lower-case get is not GET", "shop/rx", "shop/detail", TCP,
	    80, "get", "/api/v1/items", NULL, D, NULL, NULL, NULL },
	{ "method: GETX is not GET", "shop/rx", "shop/detail", TCP, 80, "GETX",
	    "/api/v1/items", NULL, D, NULL, NULL, NULL },
	{ "method: GE is not GET", "shop/rx", "shop/detail", TCP, 80, "GE",
	    "/api/v1/items", NULL, D, NULL, NULL, NULL },
	{ "method: absent = any (path only)", "shop/metrics-only",
	    "shop/detail", TCP, 80, "PATCH", "/metrics", NULL, A, NULL, NULL,
	    NULL },
	{ "method: only the selected entry's GET", "shop/frontend", "shop/web",
	    TCP, 80, "DELETE", "/catalog/1", NULL, D, NULL, NULL, NULL },
	{ "method: '*' = any (DELETE)", "shop/frontend", "shop/web2", TCP, 80,
	    "DELETE", "/catalog/1", NULL, A, "shop/web-anything",
	    "HTTPRouteGroup shop/storefront match anything", NULL },
	{ "method: '*' = any (unknown token)", "shop/frontend", "shop/web2",
	    TCP, 80, "PURGE", "/", NULL, A, NULL, NULL, NULL },
	{ "method: POST-only, any path", "shop/poster", "shop/detail", TCP,
	    80, "POST", "/whatever/at/all", NULL, A, "shop/details-post",
	    "HTTPRouteGroup shop/details match post-only", NULL },
	{ "method: POST-only rejects GET", "shop/poster", "shop/detail", TCP,
	    80, "GET", "/whatever", NULL, D, NULL, NULL, NULL },
	{ "method: CONNECT with post-only", "shop/poster", "shop/detail", TCP,
	    80, "CONNECT", "/", NULL, D, NULL, NULL, NULL },

	/* --- §4.1 headers (A-3) -------------------------------------------------- */
	{ "hdr: exact value", "shop/hdr", "shop/detail", TCP, 80, "GET", "/h",
	    "X-Token: abc", A, "shop/details-hdr",
	    "HTTPRouteGroup shop/details match hdr", NULL },
	{ "hdr: name case-insensitive", "shop/hdr", "shop/detail", TCP, 80,
	    "GET", "/h", "x-TOKEN: abc", A, NULL, NULL, NULL },
	{ "hdr: value full match, not prefix", "shop/hdr", "shop/detail", TCP,
	    80, "GET", "/h", "x-token: abcd", D, NULL, NULL,
	    "no HTTPRouteGroup match admits GET /h" },
	{ "hdr: value full match, not suffix", "shop/hdr", "shop/detail", TCP,
	    80, "GET", "/h", "x-token: zabc", D, NULL, NULL, NULL },
	{ "hdr: value case-sensitive", "shop/hdr", "shop/detail", TCP, 80,
	    "GET", "/h", "x-token: ABC", D, NULL, NULL, NULL },
	{ "hdr: absent header never matches", "shop/hdr", "shop/detail", TCP,
	    80, "GET", "/h", NULL, D, NULL, NULL, NULL },
	{ "hdr: other header only", "shop/hdr", "shop/detail", TCP, 80, "GET",
	    "/h", "x-tokens: abc", D, NULL, NULL, NULL },
	{ "hdr: repeated, second matches", "shop/hdr", "shop/detail", TCP, 80,
	    "GET", "/h", "x-token: nope\nx-token: abc", A, NULL, NULL, NULL },
	{ "hdr: repeated, first matches", "shop/hdr", "shop/detail", TCP, 80,
	    "GET", "/h", "x-token: abc\nx-token: nope", A, NULL, NULL, NULL },
	{ "hdr: repeated, none matches", "shop/hdr", "shop/detail", TCP, 80,
	    "GET", "/h", "x-token: a\nx-token: bc", D, NULL, NULL, NULL },
	{ "hdr: path still applies", "shop/hdr", "shop/detail", TCP, 80, "GET",
	    "/x", "x-token: abc", D, NULL, NULL, NULL },
	{ "hdr: lazy quantifier (spec cookie example)", "shop/hdr",
	    "shop/detail", TCP, 80, "GET", "/c",
	    "Cookie: a=1; session=abc; b=2", A, NULL,
	    "HTTPRouteGroup shop/details match lazy", NULL },
	{ "hdr: lazy quantifier, no session", "shop/hdr", "shop/detail", TCP,
	    80, "GET", "/c", "Cookie: a=1", D, NULL, NULL, NULL },
	{ "hdr: two filters ANDed, both", "shop/frontend", "shop/web", TCP, 80,
	    "PUT", "/any", "X-Beta: yes\nUser-Agent: Foo Mobile Bar", A, NULL,
	    "HTTPRouteGroup shop/storefront match beta-testers", NULL },
	{ "hdr: two filters ANDed, one missing", "shop/frontend", "shop/web",
	    TCP, 80, "PUT", "/any", "X-Beta: yes", D, NULL, NULL, NULL },
	{ "hdr: alternation full match 'true'", "shop/frontend", "shop/web",
	    TCP, 80, "GET", "/", "x-beta: true\nuser-agent: Mobile", A, NULL,
	    NULL, NULL },
	{ "hdr: alternation is anchored as a whole", "shop/frontend",
	    "shop/web", TCP, 80, "GET", "/", "x-beta: yesno\nuser-agent: "
	    "Mobile", D, NULL, NULL, NULL },
	{ "hdr: headers-only entry, any method and path", "shop/frontend",
	    "shop/web", TCP, 80, "OPTIONS", "/zzz",
	    "user-agent: x Mobile\nx-beta: yes", A, NULL, NULL, NULL },
	{ "hdr: empty value does not match", "shop/hdr", "shop/detail", TCP,
	    80, "GET", "/h", "x-token: ", D, NULL, NULL, NULL },

	/* --- §4.1 entries OR, empty entry (A-11) ------------------------------- */
	{ "empty entry matches anything", "shop/all", "shop/detail", TCP, 80,
	    "BREW", "/coffee", NULL, A, "shop/details-all", NULL, NULL },
	{ "every entry when matches omitted", "shop/all", "shop/detail", TCP,
	    80, "GET", "/metrics", NULL, A, "shop/details-all",
	    "HTTPRouteGroup shop/details match metrics", NULL },
	{ "entries OR: second entry", "shop/hdr", "shop/detail", TCP, 80, "GET",
	    "/c", "cookie: session=x", A, NULL,
	    "HTTPRouteGroup shop/details match lazy", NULL },
	{ "groups OR: first group", "shop/a", "shop/twogroups", TCP, 80, "GET",
	    "/metrics", NULL, A, "shop/two-groups",
	    "HTTPRouteGroup shop/details match metrics", NULL },
	{ "groups OR: second group", "shop/a", "shop/twogroups", TCP, 80, "GET",
	    "/catalog/1", NULL, A, "shop/two-groups",
	    "HTTPRouteGroup shop/storefront match catalog-read", NULL },
	{ "groups OR: neither", "shop/a", "shop/twogroups", TCP, 80, "GET",
	    "/other", NULL, D, NULL, NULL,
	    "no HTTPRouteGroup match admits GET /other" },
	{ "TCPRoutes OR: first", "shop/a", "shop/twotcp", TCP, 1000, NULL, NULL,
	    NULL, A, "shop/two-tcp", "TCPRoute shop/p1000", NULL },
	{ "TCPRoutes OR: second", "shop/a", "shop/twotcp", TCP, 2000, NULL,
	    NULL, NULL, A, "shop/two-tcp", "TCPRoute shop/p2000", NULL },
	{ "TCPRoutes OR: neither", "shop/a", "shop/twotcp", TCP, 3000, NULL,
	    NULL, NULL, D, NULL, NULL,
	    "port 3000 not in any TCPRoute of TrafficTarget shop/two-tcp" },
	{ "sources OR: second source", "tools/client", "shop/twotcp", TCP,
	    2000, NULL, NULL, NULL, A, "shop/two-tcp", NULL, NULL },

	/* --- §3.2.5 union, never crossed ----------------------------------------- */
	{ "union: a via pay-a", "shop/a", "shop/pay", TCP, 1000, NULL, NULL,
	    NULL, A, "shop/pay-a", "TCPRoute shop/p1000", NULL },
	{ "union: b via pay-b", "shop/b", "shop/pay", TCP, 2000, NULL, NULL,
	    NULL, A, "shop/pay-b", "TCPRoute shop/p2000", NULL },
	{ "union: a may not use pay-b's rules", "shop/a", "shop/pay", TCP, 2000,
	    NULL, NULL, NULL, D, "", "", "port 2000 not in TCPRoute shop/p1000" },
	{ "union: b may not use pay-a's rules", "shop/b", "shop/pay", TCP, 1000,
	    NULL, NULL, NULL, D, NULL, NULL,
	    "port 1000 not in TCPRoute shop/p2000" },
	{ "union: L4 grant of one target beats HTTP of another", "shop/a",
	    "shop/mixed", TCP, 9000, NULL, NULL, NULL, A, "shop/mixed-tcp",
	    "TCPRoute shop/p9000", NULL },
	{ "union: elsewhere the HTTP target applies", "shop/a", "shop/mixed",
	    TCP, 80, NULL, NULL, NULL, H, "shop/mixed-http", NULL, NULL },
	{ "union: request via HTTP target", "shop/a", "shop/mixed", TCP, 80,
	    "GET", "/metrics", NULL, A, "shop/mixed-http", NULL, NULL },
	{ "union: request via L4 target", "shop/a", "shop/mixed", TCP, 9000,
	    "GET", "/nope", NULL, A, "shop/mixed-tcp", "TCPRoute shop/p9000",
	    NULL },
	{ "union: request denied by both", "shop/a", "shop/mixed", TCP, 80,
	    "GET", "/nope", NULL, D, NULL, NULL,
	    "no HTTPRouteGroup match admits GET /nope" },
	{ "A-9: matches on a TCPRoute rule ignored", "shop/matcher",
	    "shop/db", TCP, 5432, NULL, NULL, NULL, A, "shop/tcp-with-matches",
	    "TCPRoute shop/pg", NULL },

	/* --- A-27 ------------------------------------------------------------------ */
	{ "A-27 no rules", "shop/api", "shop/empty", TCP, 5432, NULL, NULL,
	    NULL, D, NULL, NULL, "TrafficTarget shop/no-rules has no rules" },
	{ "A-27 no rules, UDP", "shop/api", "shop/empty", UDP, 5432, NULL,
	    NULL, NULL, D, NULL, NULL, "has no rules" },
	{ "A-27 no rules, HTTP", "shop/api", "shop/empty", TCP, 80, "GET", "/",
	    NULL, D, NULL, NULL, "has no rules" },
	{ "A-27 no sources", "shop/other", "shop/empty", TCP, 5432, NULL, NULL,
	    NULL, D, NULL, NULL, "not a source of any TrafficTarget" },

	/* --- §3.2.7 unresolvable references --------------------------------------- */
	{ "missing TCPRoute admits no port for HTTP", "shop/a", "shop/broken",
	    TCP, 80, NULL, NULL, NULL, D, NULL, NULL,
	    "TCPRoute shop/nope does not exist" },
	{ "missing TCPRoute: request denied", "shop/a", "shop/broken", TCP, 80,
	    "GET", "/catalog/", NULL, D, NULL, NULL,
	    "TCPRoute shop/nope does not exist" },
	{ "missing TCPRoute alone", "shop/e", "shop/broken", TCP, 80, NULL,
	    NULL, NULL, D, NULL, NULL, "TCPRoute shop/nope does not exist" },
	{ "missing group: connection still HTTP", "shop/b", "shop/broken", TCP,
	    5432, NULL, NULL, NULL, H, "shop/missing-http", NULL, NULL },
	{ "missing group: no raw TCP on the port", "shop/b", "shop/broken",
	    TCP, 5433, NULL, NULL, NULL, D, NULL, NULL,
	    "port 5433 not in TCPRoute shop/pg" },
	{ "missing group: request denied", "shop/b", "shop/broken", TCP, 5432,
	    "GET", "/", NULL, D, NULL, NULL,
	    "HTTPRouteGroup shop/nope does not exist" },
	{ "unknown match names grant nothing", "shop/c", "shop/broken", TCP, 80,
	    "GET", "/catalog/1", NULL, D, NULL, NULL,
	    "TrafficTarget shop/unknown-names selects no match of "
	    "HTTPRouteGroup shop/storefront" },
	{ "unknown names: 'anything' not implied", "shop/c", "shop/broken",
	    TCP, 80, "GET", "/", NULL, D, NULL, NULL, NULL },
	{ "some unknown names: known one works", "shop/d", "shop/broken", TCP,
	    80, "GET", "/catalog/1", NULL, A, "shop/some-unknown",
	    "HTTPRouteGroup shop/storefront match catalog-read", NULL },
	{ "some unknown names: others denied", "shop/d", "shop/broken", TCP, 80,
	    "PUT", "/x", NULL, D, NULL, NULL, "no HTTPRouteGroup match" },
	{ "rules resolve in the target's namespace", "tools/client",
	    "shop/broken", TCP, 5432, NULL, NULL, NULL, D, NULL, NULL,
	    "TCPRoute tools/pg does not exist" },
	{ "A-7 target in the caller's namespace", "tools/client", "shop/selfg",
	    TCP, 443, NULL, NULL, NULL, A, "tools/self-grant", NULL, NULL },

	/* --- §8.1 destination.port ------------------------------------------------ */
	{ "8.1 old TCPRoute, port = destination.port", "shop/old",
	    "shop/legacyapp", TCP, 8080, NULL, NULL, NULL, A, "shop/old-tcp",
	    "TCPRoute shop/old-any", NULL },
	{ "8.1 old TCPRoute, other port", "shop/old", "shop/legacyapp", TCP,
	    8081, NULL, NULL, NULL, D, NULL, NULL,
	    "port 8081 is not destination.port 8080 of TrafficTarget "
	    "shop/old-tcp" },
	{ "8.1 HTTP rules on the port", "shop/old", "shop/legacyweb", TCP,
	    8080, "GET", "/metrics", NULL, A, "shop/old-http", NULL, NULL },
	{ "8.1 HTTP rules: connection elsewhere", "shop/old", "shop/legacyweb",
	    TCP, 80, NULL, NULL, NULL, D, NULL, NULL,
	    "is not destination.port 8080" },
	{ "8.1 HTTP rules: request elsewhere", "shop/old", "shop/legacyweb",
	    TCP, 80, "GET", "/metrics", NULL, D, NULL, NULL,
	    "is not destination.port 8080" },
	{ "8.1 port AND TCPRoute ports: both needed", "shop/old",
	    "shop/legacydb", TCP, 9999, NULL, NULL, NULL, D, NULL, NULL,
	    "port 9999 not in TCPRoute shop/pg" },
	{ "8.1 port AND TCPRoute ports: 5432", "shop/old", "shop/legacydb", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL,
	    "is not destination.port 9999" },
	{ "8.1 UDP constrained too", "shop/old", "shop/legacyudp", UDP, 53,
	    NULL, NULL, NULL, A, "shop/old-udp", NULL, NULL },
	{ "8.1 UDP other port", "shop/old", "shop/legacyudp", UDP, 54, NULL,
	    NULL, NULL, D, NULL, NULL, "is not destination.port 53" },

	/* --- A-8, A-6 ---------------------------------------------------------------- */
	{ "A-8 '*' source is no wildcard", "shop/api", "shop/star", TCP, 5432,
	    NULL, NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-8 literal '*' identity matches", "*/*", "shop/star", TCP, 5432,
	    NULL, NULL, NULL, A, "shop/star", NULL, NULL },
	{ "A-6 source namespace exact (case)", "Shop/api", "shop/db", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-6 source namespace exact (prefix)", "sho/api", "shop/db", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-6 source namespace exact (longer)", "shop2/api", "shop/db", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-6 source name exact", "shop/api2", "shop/db", TCP, 5432, NULL,
	    NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-6 other namespace, same SA name", "tools/api", "shop/db", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL, "not a source" },
	{ "A-6 empty namespaces mean the target's", "shop/api",
	    "shop/implicit", TCP, 5432, NULL, NULL, NULL, A,
	    "shop/implicit-ns", NULL, NULL },
	{ "A-6 ... and not another one", "tools/api", "shop/implicit", TCP,
	    5432, NULL, NULL, NULL, D, NULL, NULL, "not a source" },

	/* --- meshed-ness --------------------------------------------------- */
	{ "A-4 unauthenticated denied", NULL, "shop/db", TCP, 5432, NULL, NULL,
	    NULL, D, "", "unauthenticated=deny",
	    "unauthenticated caller: namespace shop denies" },
	{ "A-4 unauthenticated denied (HTTP)", NULL, "shop/web", TCP, 80,
	    "GET", "/catalog/", NULL, D, NULL, "unauthenticated=deny", NULL },
	{ "A-4 unauthenticated denied (UDP)", NULL, "shop/dns", UDP, 53, NULL,
	    NULL, NULL, D, NULL, NULL, "unauthenticated caller" },
	{ "A-4 unauthenticated allowed", NULL, "public/site", TCP, 1234, NULL,
	    NULL, NULL, A, "", "unauthenticated=allow",
	    "namespace public allows unauthenticated callers" },
	{ "A-4 unauthenticated allowed (HTTP)", NULL, "public/site", TCP, 80,
	    "POST", "/x", NULL, A, NULL, "unauthenticated=allow", NULL },
	{ "A-4 unauthenticated allowed (UDP)", NULL, "public/site", UDP, 53,
	    NULL, NULL, NULL, A, NULL, NULL, NULL },
	{ "A-4 authenticated still needs a target", "tools/client",
	    "public/site", TCP, 80, NULL, NULL, NULL, D, NULL, NULL,
	    "not a source" },
	{ "A-4 authenticated with a target", "shop/api", "public/site", TCP, 80,
	    NULL, NULL, NULL, A, "public/pub", NULL, NULL },
	{ "A-28 permissive: no target needed", "tools/client", "open/x", TCP,
	    1, NULL, NULL, NULL, A, "", "access-mode=permissive",
	    "namespace open is permissive" },
	{ "A-28 permissive: HTTP", "tools/client", "open/x", TCP, 1, "DELETE",
	    "/", NULL, A, NULL, "access-mode=permissive", NULL },
	{ "A-28 permissive: UDP", "tools/client", "open/x", UDP, 1, NULL, NULL,
	    NULL, A, NULL, NULL, NULL },
	{ "A-28 permissive: unauthenticated", NULL, "open/x", TCP, 1, NULL,
	    NULL, NULL, A, NULL, "access-mode=permissive", NULL },
	{ "unmeshed destination: not ours", "tools/client", "legacy/x", TCP, 1,
	    NULL, NULL, NULL, A, "", "",
	    "namespace legacy is not in the mesh" },
	{ "unmeshed destination: unauthenticated", NULL, "legacy/x", TCP, 1,
	    "GET", "/", NULL, A, NULL, NULL, "not in the mesh" },
	{ "unknown namespace denied", "tools/client", "ghost/x", TCP, 1, NULL,
	    NULL, NULL, D, NULL, NULL, "destination namespace ghost is unknown" },
	{ "other protocol denied", "shop/api", "shop/db", 132 /* SCTP */, 5432,
	    NULL, NULL, NULL, D, NULL, NULL, "protocol 132 is neither" },
};

static void
parse_id(const char *id, char *ns, char *sa, size_t len)
{
	const char *slash = strchr(id, '/');

	snprintf(ns, len, "%.*s", (int)(slash - id), id);
	snprintf(sa, len, "%s", slash + 1);
}

#define MAX_HDRS	8

static enum weft_policy_verdict
run_case(const struct weft_policy *p, const struct tcase *c,
    struct weft_policy_why *why)
{
	struct weft_policy_flow f;
	struct weft_policy_http req;
	struct weft_http_header hdrs[MAX_HDRS];
	char sns[64], ssa[64], dns[64], dsa[64], hcopy[512], *line, *save;
	size_t n = 0;

	memset(&f, 0, sizeof(f));
	if (c->src != NULL) {
		parse_id(c->src, sns, ssa, sizeof(sns));
		f.src_ns = sns;
		f.src_sa = ssa;
	}
	parse_id(c->dst, dns, dsa, sizeof(dns));
	f.dst_ns = dns;
	f.dst_sa = dsa;
	f.proto = c->proto;
	f.dst_port = c->port;
	if (c->method == NULL)
		return weft_policy_check_conn(p, &f, why);
	memset(&req, 0, sizeof(req));
	req.method = c->method;
	req.method_len = strlen(c->method);
	req.path = c->path;
	req.path_len = strlen(c->path);
	if (c->headers != NULL) {
		snprintf(hcopy, sizeof(hcopy), "%s", c->headers);
		for (line = strtok_r(hcopy, "\n", &save); line != NULL &&
		    n < MAX_HDRS; line = strtok_r(NULL, "\n", &save)) {
			char *colon = strchr(line, ':');

			hdrs[n].name = line;
			hdrs[n].name_len = (size_t)(colon - line);
			hdrs[n].value = colon + 1 + strspn(colon + 1, " ");
			hdrs[n].value_len = strlen(hdrs[n].value);
			n++;
		}
	}
	req.headers = hdrs;
	req.n_headers = n;
	return weft_policy_check_http(p, &f, &req, why);
}

static const char *
vname(enum weft_policy_verdict v)
{
	return v == A ? "ALLOW" : v == H ? "HTTP" : "DENY";
}

static void
test_table(void)
{
	struct weft_snapshot *s = fixture();
	struct weft_policy *p;
	struct weft_policy_why why;
	enum weft_policy_verdict v;
	char *err = NULL;
	size_t i;

	p = weft_policy_compile(s, &err);
	ok(p != NULL && err == NULL, "fixture compiles (%s)",
	    err ? err : "no error");
	if (p == NULL)
		abort();
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct tcase *c = &cases[i];
		bool good;

		memset(&why, 'Z', sizeof(why));	/* must be overwritten */
		why.target[sizeof(why.target) - 1] = '\0';
		why.rule[sizeof(why.rule) - 1] = '\0';
		why.reason[sizeof(why.reason) - 1] = '\0';
		v = run_case(p, c, &why);
		good = v == c->want &&
		    (c->target == NULL || strcmp(why.target, c->target) == 0) &&
		    (c->rule == NULL || strcmp(why.rule, c->rule) == 0) &&
		    (c->reason == NULL || strstr(why.reason, c->reason) != NULL) &&
		    strchr(why.target, 'Z') == NULL &&
		    strchr(why.rule, 'Z') == NULL &&
		    (v != D || why.reason[0] != '\0');
		ok(good, "%s: %s", c->name, vname(c->want));
		if (!good)
			diag("got %s target \"%s\" rule \"%s\" reason \"%s\"",
			    vname(v), why.target, why.rule, why.reason);
	}
	weft_policy_free(p);
	free_snapshot(s);
}

/* --- focused tests ------------------------------------------------------------------ */

/* why may be NULL; a NULL policy denies. */
static void
test_null_why(void)
{
	struct weft_snapshot *s = fixture();
	struct weft_policy *p;
	struct weft_policy_flow f = { "shop", "api", "shop", "db", TCP, 5432 };
	struct weft_policy_http req = { "GET", 3, "/", 1, NULL, 0 };
	struct weft_policy_why why;
	char *err = NULL;

	p = weft_policy_compile(s, &err);
	is_int(weft_policy_check_conn(p, &f, NULL), A, "why NULL: conn");
	is_int(weft_policy_check_http(p, &f, &req, NULL), A, "why NULL: http");
	is_int(weft_policy_check_conn(NULL, &f, &why), D, "no policy denies");
	is_str(why.reason, "no policy", "no policy: reason");
	f.src_sa = NULL;
	is_int(weft_policy_check_conn(p, &f, &why), D,
	    "half an identity is unauthenticated");
	is_str(why.rule, "unauthenticated=deny", "... and says so");
	weft_policy_free(p);
	free_snapshot(s);
}

/* A path given with its query, and a path whose only difference is after
 * '?', and raw bytes in the reason. */
static void
test_request_edges(void)
{
	struct weft_snapshot *s = fixture();
	struct weft_policy *p;
	struct weft_policy_flow f = { "shop", "rx", "shop", "detail", TCP, 80 };
	struct weft_policy_http req;
	struct weft_policy_why why;
	char *err = NULL;
	static const char path[] = "/api/v1/items?x=/api/v1/items/9";
	static const char bin[] = "GET\x01";

	p = weft_policy_compile(s, &err);
	memset(&req, 0, sizeof(req));
	req.method = "GET";
	req.method_len = 3;
	req.path = path;
	req.path_len = strlen(path);
	is_int(weft_policy_check_http(p, &f, &req, &why), A,
	    "query ignored for the end anchor");
	/* path_len bounds the path: no NUL needed */
	req.path = "/api/v1/itemsXXXX";
	req.path_len = 13;
	is_int(weft_policy_check_http(p, &f, &req, &why), A,
	    "path_len is honoured (no NUL at the end)");
	req.method = bin;
	req.method_len = 4;
	is_int(weft_policy_check_http(p, &f, &req, &why), D,
	    "binary method denied");
	ok(strstr(why.reason, "GET? /api/v1/items") != NULL,
	    "reason shows non-printables as '?': %s", why.reason);
	req.method = "GET";
	req.method_len = 3;
	req.path = NULL;
	req.path_len = 0;
	is_int(weft_policy_check_http(p, &f, &req, &why), D,
	    "NULL path is the empty path");
	is_int(weft_policy_check_http(p, &f, NULL, &why), D,
	    "NULL request denied");
	weft_policy_free(p);
	free_snapshot(s);
}

struct grant {
	char		 src[64];
	unsigned	 lo, hi;
};

struct grants {
	struct grant	 g[16];
	size_t		 n;
};

static void
collect(const char *ns, const char *sa, uint16_t lo, uint16_t hi, void *arg)
{
	struct grants *gs = arg;

	if (gs->n >= 16)
		return;
	if (ns == NULL)
		snprintf(gs->g[gs->n].src, sizeof(gs->g[gs->n].src), "*");
	else
		snprintf(gs->g[gs->n].src, sizeof(gs->g[gs->n].src), "%s/%s",
		    ns, sa);
	gs->g[gs->n].lo = lo;
	gs->g[gs->n].hi = hi;
	gs->n++;
}

static void
test_udp_grants(void)
{
	struct weft_snapshot *s = fixture();
	struct weft_smi_target *t;
	struct weft_policy *p;
	struct grants gs;
	char *err = NULL;

	/* more grants to one destination: overlapping and adjacent ranges of
	 * one source are merged */
	UDPROUTE(s, "shop", "u8303", 8303);
	UDPROUTE(s, "shop", "u8301", 8301, 9000);
	t = add_target(s, "shop", "consul-more", "shop", "consul", 0);
	add_rule(t, WEFT_SMI_UDP, "u8303", NULL);
	add_rule(t, WEFT_SMI_UDP, "u8301", NULL);
	add_rule(t, WEFT_SMI_UDP, "nope", NULL);	/* missing: nothing */
	add_rule(t, WEFT_SMI_TCP, "pg", NULL);		/* not UDP */
	add_source(t, "shop", "agent");
	add_source(t, "tools", "client");
	p = weft_policy_compile(s, &err);
	ok(p != NULL, "compiles");

	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "shop", "consul", collect, &gs);
	is_int(gs.n, 5, "consul: 5 grants");
	is_str(gs.g[0].src, "shop/agent", "consul[0] source");
	ok(gs.g[0].lo == 8301 && gs.g[0].hi == 8303,
	    "consul[0] 8301-8303 merged (got %u-%u)", gs.g[0].lo, gs.g[0].hi);
	ok(gs.n > 1 && strcmp(gs.g[1].src, "shop/agent") == 0 &&
	    gs.g[1].lo == 9000 && gs.g[1].hi == 9000, "consul[1] agent 9000");
	ok(gs.n > 4 && strcmp(gs.g[2].src, "tools/client") == 0 &&
	    gs.g[2].lo == 8301 && gs.g[2].hi == 8301 &&
	    gs.g[3].lo == 8303 && gs.g[3].hi == 8303 &&
	    gs.g[4].lo == 9000 && gs.g[4].hi == 9000,
	    "consul[2..4] tools/client 8301, 8303, 9000: not merged over "
	    "8302, which only the other target grants to another source");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "shop", "dns", collect, &gs);
	ok(gs.n == 1 && strcmp(gs.g[0].src, "shop/resolver") == 0 &&
	    gs.g[0].lo == 0 && gs.g[0].hi == 65535,
	    "every-port UDPRoute: 0-65535");

	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "shop", "legacyudp", collect, &gs);
	ok(gs.n == 1 && gs.g[0].lo == 53 && gs.g[0].hi == 53,
	    "destination.port narrows an every-port UDPRoute to 53");

	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "shop", "db", collect, &gs);
	is_int(gs.n, 0, "TCP-only destination: no UDP grants");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "bank", "ledger", collect, &gs);
	is_int(gs.n, 0, "TCP+HTTP destination: no UDP grants");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "shop", "nobody", collect, &gs);
	is_int(gs.n, 0, "no target: no grants");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "ghost", "x", collect, &gs);
	is_int(gs.n, 0, "unknown namespace: no grants");

	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "open", "x", collect, &gs);
	ok(gs.n == 1 && strcmp(gs.g[0].src, "*") == 0 && gs.g[0].lo == 0 &&
	    gs.g[0].hi == 65535, "permissive: every source, every port");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "public", "site", collect, &gs);
	ok(gs.n == 1 && strcmp(gs.g[0].src, "*") == 0,
	    "unauthenticated=allow: every source");
	memset(&gs, 0, sizeof(gs));
	weft_policy_udp_grants(p, "legacy", "x", collect, &gs);
	ok(gs.n == 1 && strcmp(gs.g[0].src, "*") == 0,
	    "unmeshed: every source (not ours to restrict)");
	weft_policy_free(p);
	free_snapshot(s);
}

static void
test_compile_errors(void)
{
	struct weft_snapshot *s;
	struct weft_smi_http_route_group *g;
	struct weft_smi_target *t;
	struct weft_policy *p;
	char *err = NULL;

	/* an empty snapshot compiles and denies nothing it cannot know */
	s = calloc(1, sizeof(*s));
	p = weft_policy_compile(s, &err);
	ok(p != NULL && err == NULL, "empty snapshot compiles");
	weft_policy_free(p);
	weft_policy_free(NULL);
	free_snapshot(s);

	/* a bad path regex in a referenced group fails the compile */
	s = calloc(1, sizeof(*s));
	add_ns(s, "shop", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	g = add_group(s, "shop", "bad");
	add_match(g, "ok", "/fine", NULL, NULL);
	add_match(g, "backref", "(a)\\1", NULL, NULL);
	t = add_target(s, "shop", "t", "shop", "api", 0);
	add_rule(t, WEFT_SMI_HTTP, "bad", "ok");
	add_source(t, "shop", "c");
	p = weft_policy_compile(s, &err);
	ok(p == NULL && err != NULL, "bad pathRegex fails the compile");
	ok(err != NULL && strstr(err, "HTTPRouteGroup shop/bad match backref: "
	    "pathRegex") != NULL, "error names the group and entry: %s",
	    err ? err : "(null)");
	free(err);
	err = NULL;
	free_snapshot(s);

	/* ... and in a header value */
	s = calloc(1, sizeof(*s));
	add_ns(s, "shop", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	g = add_group(s, "shop", "bad");
	add_match(g, "h", NULL, NULL, "x-a=(?=look)");
	t = add_target(s, "shop", "t", "shop", "api", 0);
	add_rule(t, WEFT_SMI_HTTP, "bad", NULL);
	add_source(t, "shop", "c");
	p = weft_policy_compile(s, &err);
	ok(p == NULL && err != NULL && strstr(err, "header x-a") != NULL,
	    "bad header regex fails the compile: %s", err ? err : "(null)");
	free(err);
	err = NULL;
	free_snapshot(s);

	/* a group no target references is not compiled */
	s = calloc(1, sizeof(*s));
	add_ns(s, "shop", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	g = add_group(s, "shop", "unused");
	add_match(g, "backref", "(a)\\1", NULL, NULL);
	p = weft_policy_compile(s, &err);
	ok(p != NULL && err == NULL, "unreferenced bad group is not compiled");
	weft_policy_free(p);
	free_snapshot(s);
}

/* One group referenced by many targets is compiled once and each target
 * still selects its own entries. */
static void
test_shared_group(void)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_smi_http_route_group *g;
	struct weft_smi_target *t;
	struct weft_policy *p;
	struct weft_policy_flow f = { "shop", "x", "shop", "api", TCP, 80 };
	struct weft_policy_http req = { "GET", 3, "/b", 2, NULL, 0 };
	struct weft_policy_why why;
	char *err = NULL, name[32];
	int i;

	add_ns(s, "shop", true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY);
	g = add_group(s, "shop", "g");
	add_match(g, "a", "/a", NULL, NULL);
	add_match(g, "b", "/b", NULL, NULL);
	for (i = 0; i < 50; i++) {
		snprintf(name, sizeof(name), "t%02d", i);
		t = add_target(s, "shop", name, "shop", "api", 0);
		add_rule(t, WEFT_SMI_HTTP, "g", "a");
		add_source(t, "shop", "x");
	}
	t = add_target(s, "shop", "zz-last", "shop", "api", 0);
	add_rule(t, WEFT_SMI_HTTP, "g", "b");
	add_source(t, "shop", "x");
	p = weft_policy_compile(s, &err);
	is_int(weft_policy_check_http(p, &f, &req, &why), A,
	    "51st target's entry admits /b");
	is_str(why.target, "shop/zz-last", "... through that target");
	req.path = "/c";
	is_int(weft_policy_check_http(p, &f, &req, &why), D, "/c denied");
	weft_policy_free(p);
	free_snapshot(s);
}

/* node/gen.c builds the policy with each generation; one that does not
 * compile fails the generation (the node keeps its previous one). */
static void
test_generation(void)
{
	struct weft_snapshot *s = fixture();
	struct weft_smi_http_route_group *g;
	struct weft_smi_target *t;
	struct weft_gen *gen;
	struct weft_policy_flow f = { "shop", "api", "shop", "db", TCP, 5432 };
	struct weft_policy_why why;
	char *err = NULL;

	s->node_name = xs("node-1");
	gen = weft_gen_build(s, &err);	/* takes s */
	ok(gen != NULL && err == NULL && weft_gen_policy(gen) != NULL,
	    "a generation carries its policy");
	if (gen != NULL)
		is_int(weft_policy_check_conn(weft_gen_policy(gen), &f, &why),
		    A, "... which decides from the generation's snapshot");
	weft_gen_unref(gen);
	free(err);
	err = NULL;

	s = fixture();
	g = add_group(s, "shop", "bad");
	add_match(g, "look", "(?<=x)y", NULL, NULL);
	t = add_target(s, "shop", "uses-bad", "shop", "api", 0);
	add_rule(t, WEFT_SMI_HTTP, "bad", NULL);
	add_source(t, "shop", "c");
	gen = weft_gen_build(s, &err);
	ok(gen == NULL && err != NULL &&
	    strncmp(err, "policy: HTTPRouteGroup shop/bad match look", 42) == 0,
	    "a policy that does not compile fails the generation: %s",
	    err ? err : "(null)");
	weft_gen_unref(gen);
	free(err);
}

int
main(void)
{
	test_table();
	test_null_why();
	test_request_edges();
	test_udp_grants();
	test_compile_errors();
	test_shared_group();
	test_generation();
	return tap_done();
}
