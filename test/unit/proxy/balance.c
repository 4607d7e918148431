/* Unit tests for proxy/balance.c (weft/balance.h): TrafficSplit and the
 * endpoint balancer, on generations built the way a node builds them.
 *
 *  1. protocol of a service port (appProtocol, port name)
 *  2. weights of every split version, from YAML through the controller's
 *     model and the snapshot's wire format to a generation; a seeded
 *     statistical test: 100,000 draws within +-1 % of each expected share
 *  3. all weights zero, no ready endpoint, a backend without the port
 *  4. port eligibility by number, each backend with its own targetPort
 *  5. self-reference, no recursion
 *  6. `matches` gating and order; non-HTTP traffic
 *  7. power of two choices; ejected and excluded endpoints
 *  8. ejection timing (backoff), sweeping idle records */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "weft/balance.h"
#include "weft/gen.h"
#include "weft/manifest.h"
#include "weft/policy.h"
#include "weft/snapshot.h"
#include "../../tap.h"

#define DRAWS	100000

/* The cluster every case starts from: namespace shop, pods web-v1-{a,b}
 * (version v1), web-v2-a (v2), web-v3-a (v3), other-a; services web (the
 * root: ports 80 -> 8080 and 81 -> "alt"), web-v1 (80 -> 8080, 81 -> 9191),
 * web-v2 (80 only), web-v3 (port 8081 named like web's 81: "alt"),
 * web-empty (selects nothing), other (8080). */
static const char cluster_yaml[] =
"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: "
    "{weft.io/mesh: enabled}}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: web-v1-a, namespace: shop, "
    "labels: {app: web, version: v1}}\n"
"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: alt, "
    "containerPort: 9090}]}]}\n"
"status: {podIP: 10.244.1.10}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: web-v1-b, namespace: shop, "
    "labels: {app: web, version: v1}}\n"
"spec: {nodeName: node-2, containers: [{name: c, ports: [{name: alt, "
    "containerPort: 9090}]}]}\n"
"status: {podIP: 10.244.2.10}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: web-v2-a, namespace: shop, "
    "labels: {app: web, version: v2}}\n"
"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: alt, "
    "containerPort: 9090}]}]}\n"
"status: {podIP: 10.244.1.11}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: web-v3-a, namespace: shop, "
    "labels: {app: web, version: v3}}\n"
"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: alt, "
    "containerPort: 9090}]}]}\n"
"status: {podIP: 10.244.1.12}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: other-a, namespace: shop, "
    "labels: {app: other}}\n"
"spec: {nodeName: node-1}\n"
"status: {podIP: 10.244.1.13}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: [{name: http, "
    "port: 80, targetPort: 8080}, {name: alt, port: 81, targetPort: alt}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: web-v1, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.11, selector: {app: web, version: v1}, ports: "
    "[{name: http, port: 80, targetPort: 8080}, {name: alt, port: 81, "
    "targetPort: 9191}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: web-v2, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.12, selector: {app: web, version: v2}, ports: "
    "[{name: http, port: 80, targetPort: 8080}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: web-v3, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.13, selector: {app: web, version: v3}, ports: "
    "[{name: http, port: 80, targetPort: 8080}, {name: alt, port: 8081, "
    "targetPort: alt}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: web-empty, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.14, selector: {app: nobody}, ports: [{name: "
    "http, port: 80, targetPort: 8080}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: other, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.15, selector: {app: other}, ports: [{name: "
    "tcp-x, port: 8080}]}\n";

/* YAML -> model (controller) -> snapshot JSON -> snapshot -> generation:
 * what a node runs on. */
static struct weft_gen *
gen_of(const char *extra)
{
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_snapshot v, *s;
	struct weft_model *m;
	struct weft_gen *g = NULL;
	char *yaml, *json, *err = NULL;
	size_t i;

	if (asprintf(&yaml, "%s---\n%s", cluster_yaml, extra ? extra : "") ==
	    -1)
		return NULL;
	if (weft_manifest_parse("t.yaml", yaml, strlen(yaml), &d, &e) == -1 ||
	    (m = weft_model_build(&d, &e)) == NULL) {
		diag("model failed");
		goto out;
	}
	for (i = 0; i < e.n; i++)
		diag("model error: %s", e.msgs[i]);
	weft_model_view(m, "node-1", 1, "cluster.local", &v);
	json = weft_snapshot_encode(&v);
	s = json ? weft_snapshot_decode(json, strlen(json), &err) : NULL;
	free(json);
	weft_model_free(m);
	if (s == NULL) {
		diag("snapshot: %s", err ? err : "?");
		free(err);
		goto out;
	}
	if ((g = weft_gen_build(s, &err)) == NULL) {
		diag("generation: %s", err ? err : "?");
		free(err);
	}
out:
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
	free(yaml);
	return g;
}

static const struct weft_snap_service *
svc(const struct weft_gen *g, const char *name,
    const struct weft_service_port **sp, uint16_t port)
{
	const struct weft_snap_service *s = weft_gen_service_by_name(g, "shop",
	    name);
	size_t i;

	*sp = NULL;
	for (i = 0; s != NULL && i < s->n_ports; i++)
		if (s->ports[i].port == port)
			*sp = &s->ports[i];
	return s;
}

/* --- 1 ------------------------------------------------------------------ */

static void
test_proto(void)
{
	static const struct {
		const char	*name, *app;
		int		 proto;
		enum weft_lb_proto want;
	} cases[] = {
		{ "http", NULL, IPPROTO_TCP, WEFT_LB_PROTO_HTTP },
		{ "http-web", NULL, IPPROTO_TCP, WEFT_LB_PROTO_HTTP },
		{ "HTTP", NULL, IPPROTO_TCP, WEFT_LB_PROTO_HTTP },
		{ "httpx", NULL, IPPROTO_TCP, WEFT_LB_PROTO_UNKNOWN },
		{ "tcp-echo", NULL, IPPROTO_TCP, WEFT_LB_PROTO_TCP },
		{ "tcp", NULL, IPPROTO_TCP, WEFT_LB_PROTO_TCP },
		{ "grpc-api", NULL, IPPROTO_TCP, WEFT_LB_PROTO_TCP },
		{ "web", NULL, IPPROTO_TCP, WEFT_LB_PROTO_UNKNOWN },
		{ NULL, NULL, IPPROTO_TCP, WEFT_LB_PROTO_UNKNOWN },
		{ "tcp-x", "http", IPPROTO_TCP, WEFT_LB_PROTO_HTTP },
		{ "http", "kubernetes.io/h2c", IPPROTO_TCP, WEFT_LB_PROTO_TCP },
		{ NULL, "kubernetes.io/http", IPPROTO_TCP, WEFT_LB_PROTO_HTTP },
		{ "http", NULL, IPPROTO_UDP, WEFT_LB_PROTO_TCP },
	};
	struct weft_service_port sp;
	size_t i;

	diag("1. protocol of a service port");
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(&sp, 0, sizeof(sp));
		sp.name = (char *)cases[i].name;
		sp.app_protocol = (char *)cases[i].app;
		sp.protocol = cases[i].proto;
		is_int(weft_lb_port_proto(&sp), cases[i].want,
		    "name %s appProtocol %s %s", cases[i].name ? cases[i].name :
		    "-", cases[i].app ? cases[i].app : "-",
		    cases[i].proto == IPPROTO_UDP ? "udp" : "tcp");
	}
}

/* --- 2 ------------------------------------------------------------------ */

struct share_case {
	const char	*what;
	const char	*split;		/* YAML of shop/s for root web */
	const char	*backends[3];
	double		 share[3];	/* expected */
};

/* Draw DRAWS backends for requests to web:80 and compare each share with
 * the expected one, +-1 percentage point. */
static void
draw_shares(const struct share_case *c, uint64_t seed)
{
	const struct weft_snap_service *root;
	const struct weft_service_port *sp;
	struct weft_lb_choice ch;
	struct weft_lb *lb;
	struct weft_gen *g;
	unsigned n[3] = { 0, 0, 0 }, other = 0, fail = 0;
	size_t i, k;
	double got;

	if ((g = gen_of(c->split)) == NULL || (lb = weft_lb_new(seed)) ==
	    NULL) {
		ok(0, "%s: generation", c->what);
		weft_gen_unref(g);
		return;
	}
	root = svc(g, "web", &sp, 80);
	for (i = 0; i < DRAWS; i++) {
		if (weft_lb_backend(lb, g, root, sp, NULL, &ch) != WEFT_LB_OK) {
			fail++;
			continue;
		}
		for (k = 0; k < 3 && c->backends[k] != NULL; k++)
			if (strcmp(ch.backend->name, c->backends[k]) == 0)
				break;
		if (k < 3 && c->backends[k] != NULL)
			n[k]++;
		else
			other++;
	}
	is_int(fail + other, 0, "%s: every draw a listed backend", c->what);
	for (k = 0; k < 3 && c->backends[k] != NULL; k++) {
		got = (double)n[k] / DRAWS;
		ok(got >= c->share[k] - 0.01 && got <= c->share[k] + 0.01,
		    "%s: %s %.4f (want %.4f +- 0.01)", c->what, c->backends[k],
		    got, c->share[k]);
		if (c->share[k] == 0)
			is_int(n[k], 0, "%s: %s weight 0: never", c->what,
			    c->backends[k]);
	}
	weft_lb_free(lb);
	weft_gen_unref(g);
}

#define SPLIT(ver, b1, w1, b2, w2)					\
	"apiVersion: split.smi-spec.io/" ver "\nkind: TrafficSplit\n"	\
	"metadata: {name: s, namespace: shop}\n"			\
	"spec:\n  service: web\n  backends:\n"				\
	"  - {service: " b1 ", weight: " w1 "}\n"			\
	"  - {service: " b2 ", weight: " w2 "}\n"

static void
test_shares(void)
{
	static const struct share_case cases[] = {
		{ "v1alpha1 Quantities 750m/250m",
		  SPLIT("v1alpha1", "web-v1", "750m", "web-v2", "250m"),
		  { "web-v1", "web-v2" }, { 0.75, 0.25 } },
		{ "v1alpha1 mixed units 1/500m (= 2:1, not 1:500)",
		  SPLIT("v1alpha1", "web-v1", "1", "web-v2", "500m"),
		  { "web-v1", "web-v2" }, { 2.0 / 3, 1.0 / 3 } },
		{ "v1alpha1 1.5/\"1\"",
		  SPLIT("v1alpha1", "web-v1", "1.5", "web-v2", "\"1\""),
		  { "web-v1", "web-v2" }, { 0.6, 0.4 } },
		{ "v1alpha2 1000/500",
		  SPLIT("v1alpha2", "web-v1", "1000", "web-v2", "500"),
		  { "web-v1", "web-v2" }, { 2.0 / 3, 1.0 / 3 } },
		{ "v1alpha3 25/75",
		  SPLIT("v1alpha3", "web-v1", "25", "web-v2", "75"),
		  { "web-v1", "web-v2" }, { 0.25, 0.75 } },
		{ "v1alpha4 1/1",
		  SPLIT("v1alpha4", "web-v1", "1", "web-v2", "1"),
		  { "web-v1", "web-v2" }, { 0.5, 0.5 } },
		{ "v1alpha4 1/0: exactly 100/0",
		  SPLIT("v1alpha4", "web-v1", "1", "web-v2", "0"),
		  { "web-v1", "web-v2" }, { 1.0, 0.0 } },
		{ "v1alpha4 0/1: exactly 0/100",
		  SPLIT("v1alpha4", "web-v1", "0", "web-v2", "1"),
		  { "web-v1", "web-v2" }, { 0.0, 1.0 } },
		{ "v1alpha4 three backends 1/2/7",
		  "apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
		  "metadata: {name: s, namespace: shop}\n"
		  "spec: {service: web, backends: [{service: web-v1, weight: 1},"
		  " {service: web-v2, weight: 2}, {service: web-v3, weight: 7}]}\n",
		  { "web-v1", "web-v2", "web-v3" }, { 0.1, 0.2, 0.7 } },
		{ "v1alpha4 large weights 4294967295/1",
		  SPLIT("v1alpha4", "web-v1", "4294967295", "web-v2", "1"),
		  { "web-v1", "web-v2" }, { 1.0, 0.0 } },
	};
	size_t i;

	diag("2. weights of every version: %d seeded draws each", DRAWS);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		draw_shares(&cases[i], 0x5eed0000 + i);
}

/* --- 3, 4, 5 ----------------------------------------------------------- */

static enum weft_lb_status
choose(const struct weft_gen *g, const char *root, uint16_t port,
    const struct weft_policy_http *req, struct weft_lb *lb,
    struct weft_lb_choice *c)
{
	const struct weft_snap_service *s;
	const struct weft_service_port *sp;

	s = svc(g, root, &sp, port);
	if (s == NULL || sp == NULL) {
		memset(c, 0, sizeof(*c));
		c->status = WEFT_LB_NOMEM;
		return c->status;
	}
	if (weft_lb_backend(lb, g, s, sp, req, c) != WEFT_LB_OK)
		return c->status;
	return weft_lb_endpoint(lb, g, c, NULL, 0, weft_lb_now_ms());
}

static void
test_eligibility(void)
{
	struct weft_lb *lb = weft_lb_new(7);
	struct weft_lb_choice c;
	struct weft_gen *g;
	unsigned seen[4] = { 0 };
	int i;

	diag("3. 503 cases; 4. port eligibility; 5. self-reference");
	g = gen_of(SPLIT("v1alpha4", "web-v1", "0", "web-v2", "0"));
	is_int(choose(g, "web", 80, NULL, lb, &c), WEFT_LB_ALL_ZERO,
	    "every weight 0: no choice (%s)", c.why);
	weft_gen_unref(g);

	g = gen_of(SPLIT("v1alpha4", "web-empty", "1", "web-v2", "0"));
	is_int(choose(g, "web", 80, NULL, lb, &c), WEFT_LB_NO_ENDPOINT,
	    "the only weighted backend has no ready endpoint (%s)", c.why);
	weft_gen_unref(g);

	g = gen_of(SPLIT("v1alpha4", "web-empty", "5", "web-v2", "1"));
	for (i = 0; i < 200; i++)
		if (choose(g, "web", 80, NULL, lb, &c) == WEFT_LB_OK)
			seen[strcmp(c.backend->name, "web-v2") == 0]++;
	is_int(seen[1], 200, "a backend without endpoints is left out: "
	    "web-v2 takes everything");
	weft_gen_unref(g);

	g = gen_of(SPLIT("v1alpha4", "nosuch", "5", "web-v2", "1"));
	is_int(choose(g, "web", 80, NULL, lb, &c), WEFT_LB_OK,
	    "a backend Service that does not exist is left out");
	is_str(c.backend ? c.backend->name : NULL, "web-v2", "  -> web-v2");
	weft_gen_unref(g);

	/* Port 81: web-v1 exposes 81 (-> 9191), web-v2 does not, web-v3
	 * has the same port NAME on 8081: only web-v1 is eligible. */
	g = gen_of("apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
	    "metadata: {name: s, namespace: shop}\n"
	    "spec: {service: web, backends: [{service: web-v1, weight: 1},"
	    " {service: web-v2, weight: 1}, {service: web-v3, weight: 1}]}\n");
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 300; i++) {
		if (choose(g, "web", 81, NULL, lb, &c) != WEFT_LB_OK)
			continue;
		seen[0] += strcmp(c.backend->name, "web-v1") == 0;
		seen[1] += c.ep.port == 9191;
	}
	is_int(seen[0], 300, "port 81: only web-v1 exposes that number");
	is_int(seen[1], 300, "  with web-v1's own targetPort 9191");
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 600; i++) {
		if (choose(g, "web", 80, NULL, lb, &c) != WEFT_LB_OK)
			continue;
		seen[0] += strcmp(c.backend->name, "web-v1") == 0;
		seen[1] += strcmp(c.backend->name, "web-v2") == 0;
		seen[2] += strcmp(c.backend->name, "web-v3") == 0;
		seen[3] += c.ep.port == 8080;
	}
	ok(seen[0] > 100 && seen[1] > 100 && seen[2] > 100,
	    "port 80: all three eligible (%u/%u/%u)", seen[0], seen[1],
	    seen[2]);
	is_int(seen[3], 600, "  targetPort 8080 for each");
	weft_gen_unref(g);

	/* no split: the root's endpoints, targetPort by name */
	g = gen_of(NULL);
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 100; i++)
		if (choose(g, "web", 81, NULL, lb, &c) == WEFT_LB_OK) {
			seen[0] += c.split == NULL &&
			    strcmp(c.backend->name, "web") == 0;
			seen[1] += c.ep.port == 9090;
		}
	is_int(seen[0], 100, "no split: the root service itself");
	is_int(seen[1], 100, "  targetPort by name (alt -> 9090)");
	is_int(choose(g, "web-empty", 80, NULL, lb, &c), WEFT_LB_NO_ENDPOINT,
	    "a service without ready endpoints (%s)", c.why);
	weft_gen_unref(g);

	/* the root as its own backend is its plain endpoints */
	g = gen_of(SPLIT("v1alpha4", "web", "1", "web-v2", "0"));
	memset(seen, 0, sizeof(seen));
	for (i = 0; i < 400; i++)
		if (choose(g, "web", 80, NULL, lb, &c) == WEFT_LB_OK) {
			seen[0] += c.split != NULL &&
			    strcmp(c.backend->name, "web") == 0;
			seen[1] += strncmp(c.ep.pod->name, "web-v1", 6) == 0;
			seen[2] += strcmp(c.ep.pod->name, "web-v2-a") == 0;
			seen[3] += strcmp(c.ep.pod->name, "web-v3-a") == 0;
		}
	is_int(seen[0], 400, "self-reference: the root, once (no recursion)");
	ok(seen[1] > 0 && seen[2] > 0 && seen[3] > 0, "  over all of the "
	    "root's pods (%u/%u/%u)", seen[1], seen[2], seen[3]);
	weft_gen_unref(g);
	weft_lb_free(lb);
}

/* --- 6 ------------------------------------------------------------------ */

static const char canary_yaml[] =
"apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\n"
"metadata: {name: canary, namespace: shop}\n"
"spec: {matches: [{name: tester, headers: [{x-canary: \"yes\"}]}]}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\n"
"metadata: {name: api-paths, namespace: shop}\n"
"spec: {matches: [{name: api, pathRegex: \"/api\", methods: [GET]}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
"metadata: {name: b-canary, namespace: shop, creationTimestamp: "
    "\"2024-05-01T00:00:00Z\"}\n"
"spec: {service: web, matches: [{kind: HTTPRouteGroup, name: canary}], "
    "backends: [{service: web-v2, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
"metadata: {name: a-paths, namespace: shop, creationTimestamp: "
    "\"2024-05-02T00:00:00Z\"}\n"
"spec: {service: web, matches: [{kind: HTTPRouteGroup, name: api-paths}, "
    "{kind: HTTPRouteGroup, name: canary}], backends: [{service: web-v3, "
    "weight: 1}]}\n";

static void
req_init(struct weft_policy_http *r, struct weft_http_header *h,
    const char *method, const char *path, const char *hname,
    const char *hvalue)
{
	memset(r, 0, sizeof(*r));
	r->method = method;
	r->method_len = strlen(method);
	r->path = path;
	r->path_len = strlen(path);
	if (hname != NULL) {
		h->name = hname;
		h->name_len = strlen(hname);
		h->value = hvalue;
		h->value_len = strlen(hvalue);
		r->headers = h;
		r->n_headers = 1;
	}
}

static void
test_matches(void)
{
	struct weft_lb *lb = weft_lb_new(11);
	struct weft_policy_http req;
	struct weft_http_header h;
	struct weft_lb_choice c;
	struct weft_gen *g;
	char *y;

	diag("6. matches: gating and order");
	g = gen_of(canary_yaml);
	req_init(&req, &h, "GET", "/", "X-Canary", "yes");
	choose(g, "web", 80, &req, lb, &c);
	is_str(c.split ? c.split->name : "-", "b-canary", "header matches "
	    "both splits: the earlier creationTimestamp wins (A-17)");
	is_str(c.backend ? c.backend->name : NULL, "web-v2", "  -> web-v2");
	req_init(&req, &h, "GET", "/api/x?q=1", NULL, NULL);
	choose(g, "web", 80, &req, lb, &c);
	is_str(c.split ? c.split->name : "-", "a-paths", "path /api: the split "
	    "whose group matches");
	req_init(&req, &h, "POST", "/api/x", NULL, NULL);
	choose(g, "web", 80, &req, lb, &c);
	ok(c.status == WEFT_LB_OK && c.split == NULL &&
	    strcmp(c.backend->name, "web") == 0, "POST /api matches nothing: "
	    "the root service (A-18)");
	req_init(&req, &h, "GET", "/", "x-canary", "no");
	choose(g, "web", 80, &req, lb, &c);
	ok(c.split == NULL, "x-canary: no -> root (header value full match)");
	choose(g, "web", 80, NULL, lb, &c);
	ok(c.status == WEFT_LB_OK && c.split == NULL, "not HTTP: splits with "
	    "matches never apply");
	weft_gen_unref(g);

	/* With a catch-all split too: unmatched requests take it. */
	if (asprintf(&y, "%s---\n%s", canary_yaml, SPLIT("v1alpha4", "web-v1",
	    "1", "web-v2", "0")) == -1)
		return;
	g = gen_of(y);
	free(y);
	req_init(&req, &h, "GET", "/", NULL, NULL);
	choose(g, "web", 80, &req, lb, &c);
	is_str(c.split ? c.split->name : "-", "s", "unmatched request: the "
	    "catch-all split");
	is_str(c.backend ? c.backend->name : NULL, "web-v1", "  -> web-v1");
	choose(g, "web", 80, NULL, lb, &c);
	is_str(c.split ? c.split->name : "-", "s", "not HTTP: the catch-all "
	    "split");
	req_init(&req, &h, "GET", "/", "x-canary", "yes");
	choose(g, "web", 80, &req, lb, &c);
	is_str(c.split ? c.split->name : "-", "b-canary", "matched request: "
	    "its split, not the catch-all");
	weft_gen_unref(g);

	/* Same timestamp: by name. */
	g = gen_of("apiVersion: specs.smi-spec.io/v1alpha4\nkind: HTTPRouteGroup\n"
	    "metadata: {name: all, namespace: shop}\n"
	    "spec: {matches: [{name: any}]}\n---\n"
	    "apiVersion: split.smi-spec.io/v1alpha3\nkind: TrafficSplit\n"
	    "metadata: {name: zz, namespace: shop}\n"
	    "spec: {service: web, matches: [{kind: HTTPRouteGroup, name: all}],"
	    " backends: [{service: web-v2, weight: 1}]}\n---\n"
	    "apiVersion: split.smi-spec.io/v1alpha3\nkind: TrafficSplit\n"
	    "metadata: {name: aa, namespace: shop}\n"
	    "spec: {service: web, matches: [{kind: HTTPRouteGroup, name: all}],"
	    " backends: [{service: web-v3, weight: 1}]}\n---\n"
	    "apiVersion: split.smi-spec.io/v1alpha3\nkind: TrafficSplit\n"
	    "metadata: {name: mm, namespace: shop}\n"
	    "spec: {service: web, matches: [{kind: HTTPRouteGroup, name: "
	    "missing}], backends: [{service: web-v1, weight: 1}]}\n");
	req_init(&req, &h, "DELETE", "/x", NULL, NULL);
	choose(g, "web", 80, &req, lb, &c);
	is_str(c.split ? c.split->name : "-", "aa", "same creationTimestamp: "
	    "by name");
	weft_gen_unref(g);
	weft_lb_free(lb);
}

/* --- 7, 8 ---------------------------------------------------------------- */

static void
test_p2c(void)
{
	struct weft_lb *lb = weft_lb_new(99);
	unsigned load2[2] = { 5, 0 }, load3[3] = { 0, 10, 10 };
	unsigned load4[4] = { 3, 3, 3, 3 }, n[4] = { 0 };
	struct weft_lb_choice c;
	struct weft_lb_ep *e1, *e2, *ex[1];
	struct weft_ip ip;
	struct weft_gen *g;
	int64_t now;
	size_t i;
	double f;

	diag("7. power of two choices; ejection and exclusion");
	for (i = 0; i < 1000; i++)
		n[weft_lb_p2c(lb, load2, 2)]++;
	is_int(n[1], 1000, "two candidates: always the less loaded");
	memset(n, 0, sizeof(n));
	for (i = 0; i < 30000; i++)
		n[weft_lb_p2c(lb, load3, 3)]++;
	f = (double)n[0] / 30000;
	ok(f > 0.65 && f < 0.683, "three, one idle: idle one chosen whenever "
	    "drawn, 2/3 of the time (%.3f)", f);
	memset(n, 0, sizeof(n));
	for (i = 0; i < 40000; i++)
		n[weft_lb_p2c(lb, load4, 4)]++;
	ok(n[0] > 9500 && n[1] > 9500 && n[2] > 9500 && n[3] > 9500,
	    "equal loads: uniform (%u %u %u %u)", n[0], n[1], n[2], n[3]);

	/* web-v1 has two endpoints: load one, eject, exclude. */
	g = gen_of(NULL);
	weft_ip_parse("10.244.1.10", &ip);
	e1 = weft_lb_ep_get(lb, &ip, 8080);
	weft_ip_parse("10.244.2.10", &ip);
	e2 = weft_lb_ep_get(lb, &ip, 8080);
	ok(e1 != NULL && e2 != NULL && e1 != e2 &&
	    weft_lb_ep_get(lb, &ip, 8080) == e2, "records by address and port");
	for (i = 0; i < 3; i++)
		weft_lb_ep_acquire(e1);
	memset(n, 0, sizeof(n));
	for (i = 0; i < 200; i++)
		if (choose(g, "web-v1", 80, NULL, lb, &c) == WEFT_LB_OK)
			n[c.state == e2]++;
	is_int(n[1], 200, "busy endpoint avoided (3 outstanding vs 0)");
	for (i = 0; i < 3; i++)
		weft_lb_ep_release(e1);
	is_int(weft_lb_ep_outstanding(e1), 0, "released");
	now = weft_lb_now_ms();
	weft_lb_ep_failed(e2, now);
	memset(n, 0, sizeof(n));
	for (i = 0; i < 200; i++)
		if (choose(g, "web-v1", 80, NULL, lb, &c) == WEFT_LB_OK)
			n[c.state == e1]++;
	is_int(n[1], 200, "ejected endpoint skipped");
	ex[0] = e1;
	(void)weft_lb_backend(lb, g, svc(g, "web-v1", &c.port, 80), c.port,
	    NULL, &c);
	is_int(weft_lb_endpoint(lb, g, &c, ex, 1, now), WEFT_LB_OK,
	    "only the ejected one is left: still tried");
	ok(c.state == e2, "  it is the ejected one");
	weft_lb_ep_failed(e1, now + 1);
	(void)weft_lb_backend(lb, g, svc(g, "web-v1", &c.port, 80), c.port,
	    NULL, &c);
	is_int(weft_lb_endpoint(lb, g, &c, NULL, 0, now + 2), WEFT_LB_OK,
	    "both ejected: one is tried anyway");
	ok(c.state == e2, "  the one ejected first");
	ex[0] = e2;
	(void)weft_lb_backend(lb, g, svc(g, "web-v1", &c.port, 80), c.port,
	    NULL, &c);
	{
		struct weft_lb_ep *both[2] = { e1, e2 };

		is_int(weft_lb_endpoint(lb, g, &c, both, 2, now + 2),
		    WEFT_LB_NO_ENDPOINT, "both excluded: none left (%s)",
		    c.why);
	}
	weft_lb_ep_succeeded(e1);
	weft_lb_ep_succeeded(e2);
	weft_gen_unref(g);
	weft_lb_free(lb);
}

static void
test_ejection(void)
{
	struct weft_lb *lb = weft_lb_new(1);
	struct weft_lb_ep *e;
	struct weft_ip ip;
	int64_t t = 1000000;

	diag("8. ejection timing, sweeping");
	weft_ip_parse("10.0.0.1", &ip);
	e = weft_lb_ep_get(lb, &ip, 80);
	ok(!weft_lb_ep_ejected(e, t), "new: not ejected");
	weft_lb_ep_failed(e, t);
	ok(weft_lb_ep_ejected(e, t + WEFT_LB_EJECT_BASE_MS - 1),
	    "first refusal: ejected for %d ms", WEFT_LB_EJECT_BASE_MS);
	ok(!weft_lb_ep_ejected(e, t + WEFT_LB_EJECT_BASE_MS), "  and back "
	    "after it");
	t += WEFT_LB_EJECT_BASE_MS;
	weft_lb_ep_failed(e, t);
	is_int(weft_lb_ep_ejected_for(e, t), 2 * WEFT_LB_EJECT_BASE_MS,
	    "second refusal in a row: doubled");
	weft_lb_ep_failed(e, t);
	is_int(weft_lb_ep_ejected_for(e, t), 4 * WEFT_LB_EJECT_BASE_MS,
	    "third: doubled again");
	weft_lb_ep_failed(e, t);
	is_int(weft_lb_ep_ejected_for(e, t), WEFT_LB_EJECT_MAX_MS,
	    "fourth: capped at %d ms", WEFT_LB_EJECT_MAX_MS);
	weft_lb_ep_failed(e, t);
	is_int(weft_lb_ep_ejected_for(e, t), WEFT_LB_EJECT_MAX_MS,
	    "fifth: still capped");
	weft_lb_ep_succeeded(e);
	ok(!weft_lb_ep_ejected(e, t), "a success ends the ejection");
	weft_lb_ep_failed(e, t);
	is_int(weft_lb_ep_ejected_for(e, t), WEFT_LB_EJECT_BASE_MS,
	    "  and resets the backoff");
	weft_lb_ep_succeeded(e);

	/* sweep: idle records go, busy or ejected ones stay */
	weft_lb_ep_acquire(e);
	weft_ip_parse("10.0.0.2", &ip);
	(void)weft_lb_ep_get(lb, &ip, 80);
	weft_ip_parse("10.0.0.3", &ip);
	weft_lb_ep_failed(weft_lb_ep_get(lb, &ip, 80), weft_lb_now_ms() +
	    WEFT_LB_IDLE_MS);
	is_int(weft_lb_sweep(lb, weft_lb_now_ms() + WEFT_LB_IDLE_MS + 1), 2,
	    "sweep: the idle record is dropped, busy and ejected kept");
	weft_lb_ep_release(e);
	is_int(weft_lb_sweep(lb, weft_lb_now_ms() + 3 * WEFT_LB_IDLE_MS), 0,
	    "  then the others, once idle");
	weft_lb_free(lb);

	/* uniform draws without bias, reproducible by seed */
	{
		struct weft_lb *a = weft_lb_new(42), *b = weft_lb_new(42);
		unsigned cnt[3] = { 0, 0, 0 };
		bool same = true;
		int i;

		for (i = 0; i < 30000; i++) {
			uint64_t x = weft_lb_below(a, 3);

			same = same && x == weft_lb_below(b, 3);
			if (x < 3)
				cnt[x]++;
		}
		ok(same, "same seed, same draws");
		ok(cnt[0] > 9600 && cnt[1] > 9600 && cnt[2] > 9600 &&
		    cnt[0] + cnt[1] + cnt[2] == 30000, "below(3) uniform "
		    "(%u %u %u)", cnt[0], cnt[1], cnt[2]);
		is_int(weft_lb_below(a, 1), 0, "below(1) is 0");
		weft_lb_free(a);
		weft_lb_free(b);
	}
}

int
main(void)
{
	test_proto();
	test_shares();
	test_eligibility();
	test_matches();
	test_p2c();
	test_ejection();
	return tap_done();
}
