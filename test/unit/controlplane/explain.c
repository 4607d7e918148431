/* Unit tests for controlplane/explain.c: the query of GET /v1/explain and
 * the decision it reports, on a snapshot built by hand (static data: the
 * policy only borrows it). */
#include "config.h"

#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/explain.h"
#include "weft/snapshot.h"
#include "../../tap.h"

#define S(x)	((char *)(uintptr_t)(x))

static struct weft_snap_namespace nss[] = {
	{ S("legacy"), false, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY, { 0 } },
	{ S("shop"), true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY, { 0 } },
	{ S("tools"), true, WEFT_ACCESS_ENFORCE, WEFT_UNAUTH_DENY, { 0 } },
};

static struct weft_snap_pod pods[] = {
	{ .namespace = S("legacy"), .name = S("old-1"), .node = S("node-2"),
	  .service_account = S("default") },
	{ .namespace = S("shop"), .name = S("api-1"), .node = S("node-1"),
	  .service_account = S("api") },
	{ .namespace = S("shop"), .name = S("db-1"), .node = S("node-2"),
	  .service_account = S("db") },
};

static char *read_methods[] = { S("GET") };
static struct weft_smi_header_match hdr[] = { { S("x-role"), S("admin") } };
static struct weft_smi_http_match api_matches[] = {
	{ S("read"), S("/v1/"), read_methods, 1, NULL, 0 },
	{ S("admin"), S("/admin"), NULL, 0, hdr, 1 },
};
static struct weft_smi_http_route_group groups[] = {
	{ S("shop"), S("api-routes"), api_matches, 2 },
};
static uint16_t pg_ports[] = { 5432 };
static struct weft_smi_l4_route tcp_routes[] = {
	{ S("shop"), S("pg"), pg_ports, 1 },
};
static struct weft_smi_subject api_sources[] = { { S("tools"), S("client") } };
static struct weft_smi_subject db_sources[] = { { S("shop"), S("api") } };
static struct weft_smi_rule api_rules[] = {
	{ WEFT_SMI_HTTP, S("api-routes"), NULL, 0 },
};
static struct weft_smi_rule db_rules[] = {
	{ WEFT_SMI_TCP, S("pg"), NULL, 0 },
};
static struct weft_smi_target targets[] = {
	{ S("shop"), S("api-clients"), { S("shop"), S("api") }, api_sources, 1,
	  api_rules, 1, 0 },
	{ S("shop"), S("db-clients"), { S("shop"), S("db") }, db_sources, 1,
	  db_rules, 1, 0 },
};

static struct weft_snapshot snap = {
	.generation = 42,
	.node_name = S("node-1"),
	.namespaces = nss, .n_namespaces = 3,
	.pods = pods, .n_pods = 3,
	.targets = targets, .n_targets = 2,
	.http_route_groups = groups, .n_http_route_groups = 1,
	.tcp_routes = tcp_routes, .n_tcp_routes = 1,
};

static void
test_parse(void)
{
	static const struct {
		const char	*query;
		const char	*err;		/* substring; NULL: parses */
	} cases[] = {
		{ "from=tools/client&to=shop/api-1&port=80", NULL },
		{ "from=unauthenticated&to=shop/api-1&port=80", NULL },
		{ "to=shop/api-1&port=80", "from: required" },
		{ "from=client&to=shop/api-1&port=80", "from: expected NS/SA" },
		{ "from=/client&to=shop/api-1&port=80", "from: expected" },
		{ "from=tools/&to=shop/api-1&port=80", "from: expected" },
		{ "from=a/b/c&to=shop/api-1&port=80", "from: expected" },
		{ "from=tools/client&port=80", "to: expected NS/POD" },
		{ "from=tools/client&to=api-1&port=80", "to: expected NS/POD" },
		{ "from=tools/client&to=shop/api-1", "port: required" },
		{ "from=tools/client&to=shop/api-1&port=0", "port: expected" },
		{ "from=tools/client&to=shop/api-1&port=65536", "port: expected" },
		{ "from=tools/client&to=shop/api-1&port=8o", "port: expected" },
		{ "from=tools/client&to=shop/api-1&port=-1", "port: expected" },
		{ "from=tools/client&to=shop/api-1&port=80&proto=sctp",
		    "proto: expected tcp or udp" },
		{ "from=tools/client&to=shop/api-1&port=80&proto=UDP", NULL },
		{ "from=tools/client&to=shop/api-1&port=80&path=v1",
		    "path: expected /" },
		{ "from=tools/client&to=shop/api-1&port=80&method=",
		    "method: expected" },
		{ "from=tools/client&to=shop/api-1&port=80&header=x",
		    "header: expected NAME=VALUE" },
		{ "from=tools/client&to=shop/api-1&port=80&header==v",
		    "header: expected NAME=VALUE" },
		{ "from=tools/client&to=shop/api-1&port=53&proto=udp&method=GET",
		    "need proto tcp" },
	};
	struct weft_explain_query q;
	char *err;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rc = weft_explain_parse(cases[i].query, &q, &err);
		if (cases[i].err == NULL)
			ok(rc == 0 && err == NULL, "parses: %s", cases[i].query);
		else
			ok(rc == -1 && err != NULL &&
			    strstr(err, cases[i].err) != NULL,
			    "rejects %s: %s", cases[i].query, err ? err : "-");
		free(err);
		weft_explain_query_clear(&q);
	}

	rc = weft_explain_parse("from=unauthenticated&to=shop/api-1&port=80",
	    &q, &err);
	ok(rc == 0 && q.src_ns == NULL && q.src_sa == NULL && !q.http &&
	    q.proto == IPPROTO_TCP && q.port == 80,
	    "unauthenticated: no identity, TCP, no request");
	weft_explain_query_clear(&q);
	rc = weft_explain_parse("from=tools/client&to=shop/api-1&port=80&"
	    "path=%2Fv1%2Fa%3Fb%3D1&header=X-Role%3Dad%3Dmin&header=a=b",
	    &q, &err);
	ok(rc == 0 && q.http && strcmp(q.method, "GET") == 0 &&
	    strcmp(q.path, "/v1/a?b=1") == 0 && q.n_headers == 2 &&
	    strcmp(q.headers[0].name, "X-Role") == 0 &&
	    strcmp(q.headers[0].value, "ad=min") == 0 &&
	    strcmp(q.headers[1].name, "a") == 0,
	    "percent-decoding, default method, headers split at the first =");
	weft_explain_query_clear(&q);
	rc = weft_explain_parse("from=tools/client&to=shop/api-1&port=80&"
	    "method=DELETE", &q, &err);
	ok(rc == 0 && q.http && strcmp(q.path, "/") == 0 &&
	    strcmp(q.method, "DELETE") == 0, "method alone: path /");
	weft_explain_query_clear(&q);
}

struct ecase {
	const char	*query;
	int		 status;
	const char	*decision;
	const char	*target;	/* exact, or NULL */
	const char	*rule;		/* exact, or NULL */
	const char	*reason;	/* substring, or NULL */
	const char	*conn;		/* connection verdict, or NULL */
};

static const struct ecase ecases[] = {
	{ "from=tools/client&to=shop/api-1&port=8080", 200, "http",
	    "shop/api-clients", "HTTPRouteGroup shop/api-routes",
	    "each request is checked", "http" },
	{ "from=tools/client&to=shop/api-1&port=8080&method=GET&path=/v1/x",
	    200, "allow", "shop/api-clients",
	    "HTTPRouteGroup shop/api-routes match read", NULL, "http" },
	{ "from=tools/client&to=shop/api-1&port=8080&path=/v1/x%3Fq=/admin",
	    200, "allow", NULL, "HTTPRouteGroup shop/api-routes match read",
	    NULL, "http" },
	{ "from=tools/client&to=shop/api-1&port=8080&method=POST&path=/v1/x",
	    200, "deny", "", "", "no HTTPRouteGroup match admits POST /v1/x",
	    "http" },
	{ "from=tools/client&to=shop/api-1&port=8080&path=/admin", 200, "deny",
	    NULL, NULL, "no HTTPRouteGroup match admits GET /admin", "http" },
	{ "from=tools/client&to=shop/api-1&port=8080&path=/admin&"
	    "header=X-Role=admin", 200, "allow", NULL,
	    "HTTPRouteGroup shop/api-routes match admin", NULL, "http" },
	{ "from=shop/api&to=shop/db-1&port=5432", 200, "allow",
	    "shop/db-clients", "TCPRoute shop/pg", NULL, "allow" },
	{ "from=shop/api&to=shop/db-1&port=5432&method=GET", 200, "allow",
	    "shop/db-clients", "TCPRoute shop/pg", NULL, "allow" },
	{ "from=shop/api&to=shop/db-1&port=8080", 200, "deny", "", NULL,
	    "port 8080 not in TCPRoute shop/pg", "deny" },
	{ "from=shop/api&to=shop/db-1&port=5432&proto=udp", 200, "deny", NULL,
	    NULL, "has no UDPRoute rules", "deny" },
	{ "from=tools/other&to=shop/db-1&port=5432", 200, "deny", NULL, NULL,
	    "source tools/other is not a source of any TrafficTarget for "
	    "shop/db", "deny" },
	{ "from=tools/other&to=shop/db-1&port=5432&path=/", 200, "deny", NULL,
	    NULL, "not a source", "deny" },
	{ "from=unauthenticated&to=shop/db-1&port=5432", 200, "deny", NULL,
	    "unauthenticated=deny", "unauthenticated caller", "deny" },
	{ "from=unauthenticated&to=legacy/old-1&port=1", 200, "allow", NULL,
	    NULL, "not in the mesh", "allow" },
	{ "from=tools/client&to=shop/nope&port=80", 404, NULL, NULL, NULL,
	    NULL, NULL },
};

static const char *
jget(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, k, &v))
		return NULL;
	return json_object_get_string(v);
}

static void
test_eval(void)
{
	struct weft_explain_query q;
	struct json_object *o, *c, *to;
	char *err, *out;
	size_t i;
	int status;

	for (i = 0; i < sizeof(ecases) / sizeof(ecases[0]); i++) {
		const struct ecase *e = &ecases[i];
		bool good;

		if (weft_explain_parse(e->query, &q, &err) == -1) {
			ok(0, "%s: parse: %s", e->query, err ? err : "?");
			free(err);
			continue;
		}
		out = weft_explain_eval(&snap, &q, &status);
		o = out != NULL ? json_tokener_parse(out) : NULL;
		c = NULL;
		if (o != NULL)
			json_object_object_get_ex(o, "connection", &c);
		good = out != NULL && o != NULL && status == e->status;
		if (e->status != 200)
			good = good && jget(o, "error") != NULL;
		else
			good = good && jget(o, "decision") != NULL &&
			    strcmp(jget(o, "decision"), e->decision) == 0 &&
			    (e->target == NULL || strcmp(jget(o, "target"),
			    e->target) == 0) &&
			    (e->rule == NULL || strcmp(jget(o, "rule"),
			    e->rule) == 0) &&
			    (e->reason == NULL || strstr(jget(o, "reason"),
			    e->reason) != NULL) &&
			    (e->conn == NULL || (jget(c, "verdict") != NULL &&
			    strcmp(jget(c, "verdict"), e->conn) == 0));
		ok(good, "%s -> %d %s", e->query, e->status,
		    e->decision ? e->decision : "");
		if (!good)
			diag("got %d %s", status, out ? out : "(null)");
		json_object_put(o);
		free(out);
		weft_explain_query_clear(&q);
	}

	/* the whole answer for one request */
	weft_explain_parse("from=tools/client&to=shop/api-1&port=8080&"
	    "path=/v1/x", &q, &err);
	out = weft_explain_eval(&snap, &q, &status);
	o = json_tokener_parse(out);
	to = NULL;
	json_object_object_get_ex(o, "to", &to);
	c = NULL;
	json_object_object_get_ex(o, "request", &c);
	ok(jget(o, "from") && strcmp(jget(o, "from"), "tools/client") == 0 &&
	    jget(to, "pod") && strcmp(jget(to, "pod"), "shop/api-1") == 0 &&
	    jget(to, "serviceAccount") &&
	    strcmp(jget(to, "serviceAccount"), "api") == 0 &&
	    jget(to, "node") && strcmp(jget(to, "node"), "node-1") == 0 &&
	    jget(o, "protocol") && strcmp(jget(o, "protocol"), "tcp") == 0 &&
	    jget(o, "generation") && strcmp(jget(o, "generation"), "42") == 0 &&
	    jget(c, "method") && strcmp(jget(c, "method"), "GET") == 0 &&
	    jget(c, "path") && strcmp(jget(c, "path"), "/v1/x") == 0 &&
	    jget(c, "verdict") && strcmp(jget(c, "verdict"), "allow") == 0,
	    "full answer: %s", out);
	json_object_put(o);
	free(out);
	weft_explain_query_clear(&q);

	/* no request object when the connection decides */
	weft_explain_parse("from=shop/api&to=shop/db-1&port=5432&path=/", &q,
	    &err);
	out = weft_explain_eval(&snap, &q, &status);
	o = json_tokener_parse(out);
	ok(o != NULL && !json_object_object_get_ex(o, "request", NULL),
	    "an L4 grant needs no request check");
	json_object_put(o);
	free(out);
	weft_explain_query_clear(&q);
}

int
main(void)
{
	test_parse();
	test_eval();
	return tap_done();
}
