/* SMI objects in the controller: every accepted version of every kind into
 * the normalised structs (SPEC §8), the decisions of SPEC §9, and every
 * validation message with its field path.
 *
 * Each case is a YAML manifest; the model's SMI objects are rendered to one
 * line each (every field of the struct) and compared with the expected
 * lines, as are the errors and warnings, exactly and in order. */
#include "config.h"

#include <json-c/json.h>

#include "weft/manifest.h"
#include "../../tap.h"

struct smi_case {
	const char	*what;
	bool		 strict;	/* --strict-target-namespace */
	const char	*yaml;
	const char	*objs[12];	/* rendered objects, model order */
	const char	*errs[12];
	const char	*warns[12];
};

/* --- rendering ------------------------------------------------------------- */

struct sbuf {
	char	 b[2048];
	size_t	 n;
};

static void __attribute__((format(printf, 2, 3)))
sb_add(struct sbuf *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (s->n < sizeof(s->b))
		s->n += (size_t)vsnprintf(s->b + s->n, sizeof(s->b) - s->n, fmt,
		    ap);
	va_end(ap);
}

static void
sb_strv(struct sbuf *s, char *const *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		sb_add(s, "%s%s", i ? "," : "", v[i]);
}

static const char *
rule_kind(enum weft_smi_rule_kind k)
{
	return k == WEFT_SMI_HTTP ? "HTTPRouteGroup" : k == WEFT_SMI_TCP ?
	    "TCPRoute" : k == WEFT_SMI_UDP ? "UDPRoute" : "?";
}

/* Every SMI object of m, one malloc'd line each, in model order. */
static size_t
render(const struct weft_model *m, char **out, size_t max)
{
	const struct weft_snapshot *a = &m->all;
	struct sbuf s;
	size_t i, j, k, n = 0;

	for (i = 0; i < a->n_targets && n < max; i++) {
		const struct weft_smi_target *t = &a->targets[i];

		memset(&s, 0, sizeof(s));
		sb_add(&s, "TrafficTarget %s/%s dst=%s/%s port=%u src=[",
		    t->namespace, t->name, t->destination.namespace,
		    t->destination.name, t->port);
		for (j = 0; j < t->n_sources; j++)
			sb_add(&s, "%s%s/%s", j ? "," : "",
			    t->sources[j].namespace, t->sources[j].name);
		sb_add(&s, "] rules=[");
		for (j = 0; j < t->n_rules; j++) {
			sb_add(&s, "%s%s:%s", j ? "," : "",
			    rule_kind(t->rules[j].kind), t->rules[j].name);
			if (t->rules[j].n_matches > 0) {
				sb_add(&s, "{");
				sb_strv(&s, t->rules[j].matches,
				    t->rules[j].n_matches);
				sb_add(&s, "}");
			}
		}
		sb_add(&s, "]");
		out[n++] = strdup(s.b);
	}
	for (i = 0; i < a->n_http_route_groups && n < max; i++) {
		const struct weft_smi_http_route_group *g =
		    &a->http_route_groups[i];

		memset(&s, 0, sizeof(s));
		sb_add(&s, "HTTPRouteGroup %s/%s [", g->namespace, g->name);
		for (j = 0; j < g->n_matches; j++) {
			const struct weft_smi_http_match *mt = &g->matches[j];

			sb_add(&s, "%s%s path=%s methods=", j ? " | " : "",
			    mt->name, mt->path_regex ? mt->path_regex : "-");
			sb_strv(&s, mt->methods, mt->n_methods);
			sb_add(&s, " headers=");
			for (k = 0; k < mt->n_headers; k++)
				sb_add(&s, "%s%s:%s", k ? "," : "",
				    mt->headers[k].name,
				    mt->headers[k].value_regex);
		}
		sb_add(&s, "]");
		out[n++] = strdup(s.b);
	}
	for (k = 0; k < 2; k++) {
		const struct weft_smi_l4_route *r = k ? a->udp_routes :
		    a->tcp_routes;
		size_t cnt = k ? a->n_udp_routes : a->n_tcp_routes;

		for (i = 0; i < cnt && n < max; i++) {
			memset(&s, 0, sizeof(s));
			sb_add(&s, "%s %s/%s ports=", k ? "UDPRoute" :
			    "TCPRoute", r[i].namespace, r[i].name);
			for (j = 0; j < r[i].n_ports; j++)
				sb_add(&s, "%s%u", j ? "," : "", r[i].ports[j]);
			out[n++] = strdup(s.b);
		}
	}
	for (i = 0; i < a->n_splits && n < max; i++) {
		const struct weft_smi_split *sp = &a->splits[i];

		memset(&s, 0, sizeof(s));
		sb_add(&s, "TrafficSplit %s/%s svc=%s created=%lld backends=",
		    sp->namespace, sp->name, sp->service,
		    (long long)sp->created);
		for (j = 0; j < sp->n_backends; j++)
			sb_add(&s, "%s%s:%llu", j ? "," : "",
			    sp->backends[j].service,
			    (unsigned long long)sp->backends[j].weight);
		sb_add(&s, " matches=");
		sb_strv(&s, sp->match_groups, sp->n_match_groups);
		out[n++] = strdup(s.b);
	}
	return n;
}

/* --- running a case ---------------------------------------------------------- */

static struct weft_model *
build(const char *yaml, bool strict, struct weft_errors *e)
{
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_model_opts opts = { strict };
	struct weft_model *m;

	if (weft_manifest_parse("smi.yaml", yaml, strlen(yaml), &d, e) == -1)
		diag("YAML syntax error in the test itself");
	m = weft_model_build_opts(&d, &opts, e);
	weft_manifest_docs_clear(&d);
	return m;
}

static void
lines_are(char *const *got, size_t ngot, const char *const *want,
    const char *what, const char *kind)
{
	size_t n = 0, i;

	while (n < 12 && want[n] != NULL)
		n++;
	is_int(ngot, n, "%s: %zu %s", what, n, kind);
	for (i = 0; i < n && i < ngot; i++)
		is_str(got[i], want[i], "%s: %s %zu", what, kind, i + 1);
	for (i = n; i < ngot; i++)
		diag("unexpected %s: %s", kind, got[i]);
}

static void
run_case(const struct smi_case *c)
{
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m;
	char *objs[16];
	size_t n, i;

	m = build(c->yaml, c->strict, &e);
	ok(m != NULL, "%s: model built", c->what);
	if (m == NULL)
		return;
	n = render(m, objs, 16);
	lines_are(objs, n, c->objs, c->what, "object");
	lines_are(e.msgs, e.n, c->errs, c->what, "error");
	lines_are(e.warnings, e.n_warnings, c->warns, c->what, "warning");
	for (i = 0; i < n; i++)
		free(objs[i]);
	weft_model_free(m);
	weft_errors_clear(&e);
}

/* --- access.smi-spec.io --------------------------------------------------------- */

static const struct smi_case target_cases[] = {
{ "TrafficTarget v1alpha3 (SPEC §3.3)", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: ledger-readers, namespace: bank}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: ledger, namespace: bank}\n"
"  rules:\n"
"  - {kind: TCPRoute, name: ledger-port}\n"
"  - {kind: HTTPRouteGroup, name: ledger-api, matches: [read, list]}\n"
"  - {kind: UDPRoute, name: dns}\n"
"  sources:\n"
"  - {kind: ServiceAccount, name: teller, namespace: bank}\n"
"  - {kind: ServiceAccount, name: auditor, namespace: audit}\n",
  { "TrafficTarget bank/ledger-readers dst=bank/ledger port=0 "
    "src=[bank/teller,audit/auditor] rules=[TCPRoute:ledger-port,"
    "HTTPRouteGroup:ledger-api{read,list},UDPRoute:dns]" },
  { NULL }, { NULL } },

{ "TrafficTarget v1alpha2: destination.port kept, A-6", false,
"apiVersion: access.smi-spec.io/v1alpha2\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: shop}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api, port: 8080}\n"
"  rules: [{kind: TCPRoute, name: all}]\n"
"  sources: [{kind: ServiceAccount, name: web, namespace: \"\"}]\n",
  { "TrafficTarget shop/t dst=shop/api port=8080 src=[shop/web] "
    "rules=[TCPRoute:all]" },
  { NULL }, { NULL } },

{ "TrafficTarget v1alpha1: no spec, specs, port kept", false,
"apiVersion: access.smi-spec.io/v1alpha1\n"
"kind: TrafficTarget\n"
"metadata: {name: old}\n"
"destination: {kind: ServiceAccount, name: api, namespace: prod, port: 9090}\n"
"specs:\n"
"- {kind: HTTPRouteGroup, name: routes, matches: [metrics]}\n"
"- {kind: TCPRoute, name: raw}\n"
"sources: [{kind: ServiceAccount, name: prometheus}]\n",
  { "TrafficTarget default/old dst=prod/api port=9090 "
    "src=[default/prometheus] rules=[HTTPRouteGroup:routes{metrics},"
    "TCPRoute:raw]" },
  { NULL }, { NULL } },

{ "TrafficTarget v1alpha2 without rules or sources (A-27)", false,
"apiVersion: access.smi-spec.io/v1alpha2\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n",
  { "TrafficTarget a/t dst=a/api port=0 src=[] rules=[]" },
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.rules: no rules: this "
    "target grants nothing (A-27)",
    "smi.yaml: document 1 (TrafficTarget a/t): spec.sources: no sources: "
    "this target grants nothing (A-27)" } },

{ "TrafficTarget v1alpha3 empty lists (A-27)", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n"
"  rules: []\n"
"  sources: []\n",
  { "TrafficTarget a/t dst=a/api port=0 src=[] rules=[]" },
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.rules: no rules: this "
    "target grants nothing (A-27)",
    "smi.yaml: document 1 (TrafficTarget a/t): spec.sources: no sources: "
    "this target grants nothing (A-27)" } },

{ "TrafficTarget wildcards are literal (A-8)", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources:\n"
"  - {kind: ServiceAccount, name: \"*\"}\n"
"  - {kind: ServiceAccount, name: x, namespace: \"*\"}\n",
  { "TrafficTarget a/t dst=a/api port=0 src=[a/*,*/x] rules=[TCPRoute:r]" },
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.sources[0].name: \"*\" "
    "is not a wildcard (A-8): it names a ServiceAccount called \"*\", "
    "which matches no workload",
    "smi.yaml: document 1 (TrafficTarget a/t): spec.sources[1].namespace: "
    "\"*\" is not a wildcard (A-8): it names a ServiceAccount called "
    "\"*\", which matches no workload" } },

{ "TrafficTarget other subject kinds (A-24)", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources:\n"
"  - {kind: Group, name: admins}\n"
"  - {kind: ServiceAccount, name: web}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: ib, namespace: a}\n"
"spec:\n"
"  destination: {kind: IdentityBinding, name: api}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources: [{kind: ServiceAccount, name: web}]\n",
  { "TrafficTarget a/t dst=a/api port=0 src=[a/web] rules=[TCPRoute:r]" },
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.sources[0].kind: kind "
    "\"Group\" is not supported, only ServiceAccount (A-24): this source "
    "is ignored",
    "smi.yaml: document 2 (TrafficTarget a/ib): spec.destination.kind: "
    "kind \"IdentityBinding\" is not supported, only ServiceAccount "
    "(A-24): the target grants nothing and is ignored" } },

{ "TrafficTarget matches on L4 rules are ignored (A-9)", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n"
"  rules:\n"
"  - {kind: TCPRoute, name: r, matches: [x]}\n"
"  - {kind: UDPRoute, name: u, matches: 7}\n"
"  sources: [{kind: ServiceAccount, name: web}]\n",
  { "TrafficTarget a/t dst=a/api port=0 src=[a/web] "
    "rules=[TCPRoute:r,UDPRoute:u]" },
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.rules[0].matches: "
    "ignored for TCPRoute rules (A-9)",
    "smi.yaml: document 1 (TrafficTarget a/t): spec.rules[1].matches: "
    "ignored for UDPRoute rules (A-9)" } },

{ "TrafficTarget namespaces (A-7 off): kept", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: self-grant, namespace: client}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: db, namespace: data}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources: [{kind: ServiceAccount, name: app}]\n",
  { "TrafficTarget client/self-grant dst=data/db port=0 src=[client/app] "
    "rules=[TCPRoute:r]" },
  { NULL }, { NULL } },

{ "TrafficTarget namespaces (A-7 on): left out", true,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: self-grant, namespace: client}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: db, namespace: data}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources: [{kind: ServiceAccount, name: app}]\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha1\n"
"kind: TrafficTarget\n"
"metadata: {name: old, namespace: client}\n"
"destination: {kind: ServiceAccount, name: db, namespace: data}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: own, namespace: data}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: db}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources: [{kind: ServiceAccount, name: app, namespace: client}]\n",
  { "TrafficTarget data/own dst=data/db port=0 src=[client/app] "
    "rules=[TCPRoute:r]" },
  { NULL },
  { "smi.yaml: document 2 (TrafficTarget client/old): specs: no rules: "
    "this target grants nothing (A-27)",
    "smi.yaml: document 2 (TrafficTarget client/old): sources: no sources: "
    "this target grants nothing (A-27)",
    "smi.yaml: document 1 (TrafficTarget client/self-grant): "
    "spec.destination.namespace: destination data/db is not in the "
    "target's namespace; ignored (--strict-target-namespace, A-7)",
    "smi.yaml: document 2 (TrafficTarget client/old): "
    "destination.namespace: destination data/db is not in the target's "
    "namespace; ignored (--strict-target-namespace, A-7)" } },

{ "TrafficTarget validation errors", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: bad, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, port: 80}\n"
"  rules:\n"
"  - {kind: Pod, name: r}\n"
"  - {kind: HTTPRouteGroup, name: g, matches: [\"\", 3]}\n"
"  - {kind: TCPRoute, name: Bad_Name}\n"
"  - x\n"
"  sources:\n"
"  - {name: web}\n"
"  - {kind: ServiceAccount, name: web, namespace: Not.A.Label}\n",
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/bad): spec.destination.name: "
    "required",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.destination.port: not "
    "a field of access.smi-spec.io/v1alpha3 (put ports in a TCPRoute or "
    "UDPRoute and list it in rules)",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.rules[0].kind: "
    "expected HTTPRouteGroup, TCPRoute or UDPRoute, got \"Pod\"",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.rules[1].matches[0]: "
    "expected a match name, got \"\"",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.rules[1].matches[1]: "
    "expected a string, got 3",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.rules[2].name: "
    "expected a DNS-1123 subdomain (at most 253 lowercase letters, "
    "digits, '-' and '.', each part starting and ending with a letter or "
    "digit), got \"Bad_Name\"",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.rules[3]: expected "
    "an object, got \"x\"",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.sources[0].kind: "
    "required",
    "smi.yaml: document 1 (TrafficTarget a/bad): spec.sources[1].namespace: "
    "expected a DNS-1123 label (at most 63 lowercase letters, digits and "
    "'-', starting and ending with a letter or digit), got "
    "\"Not.A.Label\"" },
  { NULL } },

{ "TrafficTarget missing parts", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: empty, namespace: a}\n"
"spec: {}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: nospec, namespace: a}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha1\n"
"kind: TrafficTarget\n"
"metadata: {name: mixed, namespace: a}\n"
"spec: {destination: {kind: ServiceAccount, name: x}}\n"
"destination: {kind: ServiceAccount, name: x}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha2\n"
"kind: TrafficTarget\n"
"metadata: {name: udp, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: x, port: 0}\n"
"  rules: [{kind: UDPRoute, name: u}]\n"
"  sources: [{kind: ServiceAccount, name: y, namespace: Y}]\n",
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/empty): spec.destination: "
    "required",
    "smi.yaml: document 1 (TrafficTarget a/empty): spec.rules: required",
    "smi.yaml: document 1 (TrafficTarget a/empty): spec.sources: required",
    "smi.yaml: document 2 (TrafficTarget a/nospec): spec: required",
    "smi.yaml: document 3 (TrafficTarget a/mixed): spec: not a field of "
    "access.smi-spec.io/v1alpha1 (destination, specs and sources are "
    "top-level)",
    "smi.yaml: document 4 (TrafficTarget a/udp): spec.destination.port: "
    "expected 1-65535, got 0",
    "smi.yaml: document 4 (TrafficTarget a/udp): spec.rules[0].kind: "
    "expected HTTPRouteGroup, TCPRoute, got \"UDPRoute\" (UDPRoute needs "
    "access.smi-spec.io/v1alpha3)",
    "smi.yaml: document 4 (TrafficTarget a/udp): spec.sources[0].namespace: "
    "expected a DNS-1123 label (at most 63 lowercase letters, digits and "
    "'-', starting and ending with a letter or digit), got \"Y\"" },
  { NULL } },

{ "TrafficTarget rejected: its warnings are dropped", false,
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: t, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: api}\n"
"  rules: []\n"
"  sources: [{kind: Group, name: g}, {kind: ServiceAccount, name: \"*\"},"
" {kind: ServiceAccount}]\n",
  { NULL },
  { "smi.yaml: document 1 (TrafficTarget a/t): spec.sources[2].name: "
    "required" },
  { NULL } },

{ "TrafficTarget versions and duplicates", false,
"apiVersion: access.smi-spec.io/v1alpha4\n"
"kind: TrafficTarget\n"
"metadata: {name: new, namespace: a}\n"
"spec: {destination: {kind: IdentityBinding, name: x}}\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha1\n"
"kind: TrafficTarget\n"
"metadata: {name: twice, namespace: a}\n"
"destination: {kind: ServiceAccount, name: x}\n"
"specs: [{kind: TCPRoute, name: r}]\n"
"sources: [{kind: ServiceAccount, name: y}]\n"
"---\n"
"apiVersion: access.smi-spec.io/v1alpha3\n"
"kind: TrafficTarget\n"
"metadata: {name: twice, namespace: a}\n"
"spec:\n"
"  destination: {kind: ServiceAccount, name: z}\n"
"  rules: [{kind: TCPRoute, name: r}]\n"
"  sources: [{kind: ServiceAccount, name: y}]\n",
  { "TrafficTarget a/twice dst=a/x port=0 src=[a/y] rules=[TCPRoute:r]" },
  { "smi.yaml: document 1 (TrafficTarget a/new): apiVersion: expected "
    "access.smi-spec.io/v1alpha1, v1alpha2 or v1alpha3, got "
    "\"access.smi-spec.io/v1alpha4\"",
    "smi.yaml: document 3 (TrafficTarget a/twice): metadata.name: duplicate "
    "TrafficTarget a/twice, first defined in smi.yaml document 2; "
    "ignored" },
  { NULL } },
};

/* --- specs.smi-spec.io ----------------------------------------------------------- */

static const struct smi_case specs_cases[] = {
{ "HTTPRouteGroup v1alpha4 (SPEC §4.4), headers as a list", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: storefront, namespace: shop}\n"
"spec:\n"
"  matches:\n"
"  - name: catalog-read\n"
"    pathRegex: \"/catalog/\"\n"
"    methods: [GET]\n"
"  - name: beta-testers\n"
"    headers:\n"
"    - x-beta: \"yes|true\"\n"
"    - User-Agent: \".*Mobile.*\"\n"
"  - name: anything\n"
"    pathRegex: \".*\"\n"
"    methods: [\"*\"]\n",
  { "HTTPRouteGroup shop/storefront [catalog-read path=/catalog/ "
    "methods=GET headers= | beta-testers path=- methods= "
    "headers=user-agent:.*Mobile.*,x-beta:yes|true | anything path=.* "
    "methods=* headers=]" },
  { NULL }, { NULL } },

{ "HTTPRouteGroup v1alpha3, headers as a map (A-2)", false,
"apiVersion: specs.smi-spec.io/v1alpha3\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: g, namespace: shop}\n"
"spec:\n"
"  matches:\n"
"  - name: ff\n"
"    methods: [GET, HEAD, PUT, POST, DELETE, CONNECT, OPTIONS, TRACE, PATCH]\n"
"    headers: {X-Client: \"(?i)firefox.*\", accept: \"text/html\"}\n",
  { "HTTPRouteGroup shop/g [ff path=- "
    "methods=GET,HEAD,PUT,POST,DELETE,CONNECT,OPTIONS,TRACE,PATCH "
    "headers=accept:text/html,x-client:(?i)firefox.*]" },
  { NULL }, { NULL } },

{ "HTTPRouteGroup v1alpha1 and v1alpha2: top-level matches", false,
"apiVersion: specs.smi-spec.io/v1alpha1\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: v1, namespace: a}\n"
"matches:\n"
"- {name: metrics, pathRegex: /metrics, methods: [GET]}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha2\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: v2, namespace: a}\n"
"matches:\n"
"- name: h\n"
"  headers: [{x-a: \"1\"}]\n",
  { "HTTPRouteGroup a/v1 [metrics path=/metrics methods=GET headers=]",
    "HTTPRouteGroup a/v2 [h path=- methods= headers=x-a:1]" },
  { NULL }, { NULL } },

{ "HTTPRouteGroup misplaced matches (A-13)", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: ab, namespace: a}\n"
"matches:\n"
"- name: firefox-users\n"
"  headers:\n"
"  - user-agent: \".*Firefox.*\"\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha3\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: empty-spec, namespace: a}\n"
"spec: {}\n"
"matches: [{name: m, methods: [POST]}]\n",
  { "HTTPRouteGroup a/ab [firefox-users path=- methods= "
    "headers=user-agent:.*Firefox.*]",
    "HTTPRouteGroup a/empty-spec [m path=- methods=POST headers=]" },
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/ab): matches: belongs in "
    "spec.matches since specs.smi-spec.io/v1alpha3; read as spec.matches "
    "(A-13)",
    "smi.yaml: document 2 (HTTPRouteGroup a/empty-spec): matches: belongs "
    "in spec.matches since specs.smi-spec.io/v1alpha3; read as "
    "spec.matches (A-13)" } },

{ "HTTPRouteGroup entries that match everything (A-11)", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: g, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - name: all\n"
"  - {name: empty, methods: [], headers: []}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: none, namespace: a}\n"
"spec: {matches: []}\n",
  { "HTTPRouteGroup a/g [all path=- methods= headers= | empty path=- "
    "methods= headers=]",
    "HTTPRouteGroup a/none []" },
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[0]: no "
    "pathRegex, methods or headers: this entry matches every request",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[1]: no "
    "pathRegex, methods or headers: this entry matches every request",
    "smi.yaml: document 2 (HTTPRouteGroup a/none): spec.matches: no "
    "matches: this group matches no request" } },

{ "HTTPRouteGroup header rejections (A-2)", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: two-keys, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - name: m\n"
"    headers:\n"
"    - {x-a: \"1\", x-b: \"2\"}\n"
"    - {}\n"
"    - x\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: repeated, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - name: m\n"
"    headers:\n"
"    - x-a: \"1\"\n"
"    - X-A: \"2\"\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: map, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - name: m\n"
"    headers: {x-a: \"1\", X-A: \"2\", \"bad name\": x, x-n: 3}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: scalar, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - {name: m, headers: \"x-a: 1\"}\n",
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/two-keys): "
    "spec.matches[0].headers[0]: expected exactly one header per list "
    "element, got 2 (A-2)",
    "smi.yaml: document 1 (HTTPRouteGroup a/two-keys): "
    "spec.matches[0].headers[1]: expected exactly one header per list "
    "element, got 0 (A-2)",
    "smi.yaml: document 1 (HTTPRouteGroup a/two-keys): "
    "spec.matches[0].headers[2]: expected an object with one header, got "
    "\"x\"",
    "smi.yaml: document 2 (HTTPRouteGroup a/repeated): "
    "spec.matches[0].headers[1][\"X-A\"]: header \"x-a\" repeated in this "
    "match (A-2)",
    "smi.yaml: document 3 (HTTPRouteGroup a/map): "
    "spec.matches[0].headers[\"X-A\"]: header \"x-a\" repeated in this "
    "match (A-2)",
    "smi.yaml: document 3 (HTTPRouteGroup a/map): "
    "spec.matches[0].headers[\"bad name\"]: expected an HTTP header name "
    "(letters, digits and !#$%&'*+-.^_`|~)",
    "smi.yaml: document 3 (HTTPRouteGroup a/map): "
    "spec.matches[0].headers[\"x-n\"]: expected a regular expression "
    "string, got 3",
    "smi.yaml: document 4 (HTTPRouteGroup a/scalar): "
    "spec.matches[0].headers: expected a list of one-header objects or an "
    "object of headers, got \"x-a: 1\"" },
  { NULL } },

{ "HTTPRouteGroup v1alpha1 has no headers", false,
"apiVersion: specs.smi-spec.io/v1alpha1\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: old, namespace: a}\n"
"matches:\n"
"- {name: m, headers: [{x-a: \"1\"}]}\n",
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/old): matches[0].headers: not "
    "a field of specs.smi-spec.io/v1alpha1 (headers came in v1alpha2)" },
  { NULL } },

{ "HTTPRouteGroup names, methods, regexes (A-12, A-3)", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: g, namespace: a}\n"
"spec:\n"
"  matches:\n"
"  - {name: m, pathRegex: /a}\n"
"  - {name: m, pathRegex: /b}\n"
"  - {pathRegex: /c}\n"
"  - {name: \"\", pathRegex: /d}\n"
"  - {name: la, pathRegex: \"/(?=admin)\"}\n"
"  - {name: br, headers: {cookie: \"(a)\\\\1\"}}\n"
"  - {name: meth, methods: [get, 7]}\n"
"  - null\n",
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[1].name: "
    "duplicate match name \"m\" (also spec.matches[0]; A-12)",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[2].name: "
    "required",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[3].name: "
    "expected a match name, got \"\"",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[4].pathRegex: "
    "invalid regular expression: offset 1: look-ahead assertions are not "
    "RE2 syntax",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): "
    "spec.matches[5].headers[\"cookie\"]: invalid regular expression: "
    "offset 3: back-references are not RE2 syntax",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[6].methods[0]: "
    "expected *, GET, HEAD, PUT, POST, DELETE, CONNECT, OPTIONS, TRACE or "
    "PATCH, got \"get\"",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[6].methods[1]: "
    "expected *, GET, HEAD, PUT, POST, DELETE, CONNECT, OPTIONS, TRACE or "
    "PATCH, got 7",
    "smi.yaml: document 1 (HTTPRouteGroup a/g): spec.matches[7]: expected "
    "an object, got null" },
  { NULL } },

{ "HTTPRouteGroup placement errors", false,
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: both, namespace: a}\n"
"matches: [{name: x}]\n"
"spec: {matches: [{name: y, pathRegex: /}]}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha2\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: wrapped, namespace: a}\n"
"spec: {matches: [{name: y, pathRegex: /}]}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: empty, namespace: a}\n"
"spec: {}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha5\n"
"kind: HTTPRouteGroup\n"
"metadata: {name: future, namespace: a}\n"
"spec: {routes: []}\n",
  { NULL },
  { "smi.yaml: document 1 (HTTPRouteGroup a/both): matches: given both "
    "here and in spec.matches; only spec.matches belongs in "
    "specs.smi-spec.io/v1alpha4",
    "smi.yaml: document 2 (HTTPRouteGroup a/wrapped): spec: not a field of "
    "specs.smi-spec.io/v1alpha2 HTTPRouteGroup (matches is top-level)",
    "smi.yaml: document 2 (HTTPRouteGroup a/wrapped): matches: required",
    "smi.yaml: document 3 (HTTPRouteGroup a/empty): spec.matches: required",
    "smi.yaml: document 4 (HTTPRouteGroup a/future): apiVersion: expected "
    "specs.smi-spec.io/v1alpha1, v1alpha2, v1alpha3 or v1alpha4, got "
    "\"specs.smi-spec.io/v1alpha5\"" },
  { NULL } },

{ "TCPRoute every version, UDPRoute v1alpha4", false,
"apiVersion: specs.smi-spec.io/v1alpha1\n"
"kind: TCPRoute\n"
"metadata: {name: t1, namespace: a}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha2\n"
"kind: TCPRoute\n"
"metadata: {name: t2, namespace: a}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha3\n"
"kind: TCPRoute\n"
"metadata: {name: t3, namespace: a}\n"
"spec: {}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: t4, namespace: a}\n"
"spec: {matches: {ports: [8443, 80, 8443, 1, 65535]}}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: all, namespace: a}\n"
"spec: {matches: {name: ignored, ports: []}}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: UDPRoute\n"
"metadata: {name: dns, namespace: a}\n"
"spec: {matches: {ports: [53]}}\n",
  { "TCPRoute a/all ports=", "TCPRoute a/t1 ports=", "TCPRoute a/t2 ports=",
    "TCPRoute a/t3 ports=", "TCPRoute a/t4 ports=1,80,8443,65535",
    "UDPRoute a/dns ports=53" },
  { NULL }, { NULL } },

{ "TCPRoute and UDPRoute errors", false,
"apiVersion: specs.smi-spec.io/v1alpha3\n"
"kind: TCPRoute\n"
"metadata: {name: early, namespace: a}\n"
"spec: {matches: {ports: [80]}}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: ports, namespace: a}\n"
"spec: {matches: {ports: [0, 65536, \"80\"]}}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: nomatches, namespace: a}\n"
"spec: {}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: noports, namespace: a}\n"
"spec: {matches: {}}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha4\n"
"kind: TCPRoute\n"
"metadata: {name: list, namespace: a}\n"
"spec: {matches: [{ports: [80]}]}\n"
"---\n"
"apiVersion: specs.smi-spec.io/v1alpha3\n"
"kind: UDPRoute\n"
"metadata: {name: u, namespace: a}\n",
  { NULL },
  { "smi.yaml: document 1 (TCPRoute a/early): spec.matches: not a field of "
    "specs.smi-spec.io/v1alpha3 TCPRoute (ports came in v1alpha4; without "
    "them a TCPRoute covers every port)",
    "smi.yaml: document 2 (TCPRoute a/ports): spec.matches.ports[0]: "
    "expected 1-65535, got 0",
    "smi.yaml: document 2 (TCPRoute a/ports): spec.matches.ports[1]: "
    "expected 1-65535, got 65536",
    "smi.yaml: document 2 (TCPRoute a/ports): spec.matches.ports[2]: "
    "expected 1-65535, got \"80\"",
    "smi.yaml: document 3 (TCPRoute a/nomatches): spec.matches: required",
    "smi.yaml: document 4 (TCPRoute a/noports): spec.matches.ports: "
    "required (an empty list means every port)",
    "smi.yaml: document 5 (TCPRoute a/list): spec.matches: expected an "
    "object, got an array",
    "smi.yaml: document 6 (UDPRoute a/u): apiVersion: expected "
    "specs.smi-spec.io/v1alpha4, got \"specs.smi-spec.io/v1alpha3\"" },
  { NULL } },
};

/* --- split.smi-spec.io ------------------------------------------------------------ */

static const struct smi_case split_cases[] = {
{ "TrafficSplit v1alpha1: Quantities reduced exactly (§8.3)", false,
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: q, namespace: shop}\n"
"spec:\n"
"  service: web\n"
"  backends:\n"
"  - {service: web-v1, weight: 1}\n"
"  - {service: web-v2, weight: 500m}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: r, namespace: shop}\n"
"spec:\n"
"  service: api\n"
"  backends:\n"
"  - {service: a, weight: 1500m}\n"
"  - {service: b, weight: \"1\"}\n"
"  - {service: c, weight: 0.5}\n"
"  - {service: d, weight: 0}\n"
"  - {service: e, weight: 1.5e3}\n"
"  - {service: f, weight: 1k}\n"
"  - {service: g, weight: 2Ki}\n"
"  - {service: h, weight: +250m}\n",
  { "TrafficSplit shop/q svc=web created=0 backends=web-v1:2,web-v2:1 "
    "matches=",
    "TrafficSplit shop/r svc=api created=0 backends=a:6,b:4,c:2,d:0,e:6000,"
    "f:4000,g:8192,h:1 matches=" },
  { NULL }, { NULL } },

{ "TrafficSplit: the same 3:1 shares written in every version (§8.3)", false,
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: a1, namespace: s}\n"
"spec: {service: web1, backends: [{service: v1, weight: 750m}, "
    "{service: v2, weight: 250m}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: a2, namespace: s}\n"
"spec: {service: web2, backends: [{service: v1, weight: \"6\"}, "
    "{service: v2, weight: 2000m}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: a3, namespace: s}\n"
"spec: {service: web3, backends: [{service: v1, weight: 0.3}, "
    "{service: v2, weight: 100m}, {service: v3, weight: 0m}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha2\n"
"kind: TrafficSplit\n"
"metadata: {name: b, namespace: s}\n"
"spec: {service: web4, backends: [{service: v1, weight: 6}, "
    "{service: v2, weight: 2}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha3\n"
"kind: TrafficSplit\n"
"metadata: {name: c, namespace: s}\n"
"spec: {service: web5, backends: [{service: v1, weight: 75}, "
    "{service: v2, weight: 25}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: d, namespace: s}\n"
"spec: {service: web6, backends: [{service: v1, weight: 3}, "
    "{service: v2, weight: 1}]}\n",
  /* v1alpha1: milli-units over their GCD; v1alpha2-4: as written (a
   * share is w / sum, A-15) */
  { "TrafficSplit s/a1 svc=web1 created=0 backends=v1:3,v2:1 matches=",
    "TrafficSplit s/a2 svc=web2 created=0 backends=v1:3,v2:1 matches=",
    "TrafficSplit s/a3 svc=web3 created=0 backends=v1:3,v2:1,v3:0 matches=",
    "TrafficSplit s/b svc=web4 created=0 backends=v1:6,v2:2 matches=",
    "TrafficSplit s/c svc=web5 created=0 backends=v1:75,v2:25 matches=",
    "TrafficSplit s/d svc=web6 created=0 backends=v1:3,v2:1 matches=" },
  { NULL }, { NULL } },

{ "TrafficSplit v1alpha1: Quantities that are not weights", false,
"apiVersion: split.smi-spec.io/v1alpha1\n"
"kind: TrafficSplit\n"
"metadata: {name: bad, namespace: a}\n"
"spec:\n"
"  service: web\n"
"  backends:\n"
"  - {service: a, weight: 1u}\n"
"  - {service: b, weight: -1}\n"
"  - {service: c, weight: abc}\n"
"  - {service: d, weight: 0.0001}\n"
"  - {service: e, weight: true}\n"
"  - {service: f}\n"
"  - {service: g, weight: 1e30}\n",
  { NULL },
  { "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[0].weight: "
    "finer than 1m: not a whole number of milli-units, got \"1u\"",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[1].weight: "
    "expected a weight >= 0 (A-15), got -1",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[2].weight: "
    "expected a Quantity (such as 1, 500m or 1.5), got \"abc\"",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[3].weight: "
    "finer than 1m: not a whole number of milli-units, got 0.0001",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[4].weight: "
    "expected a Quantity (such as 1, 500m or 1.5), got true",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[5].weight: "
    "required",
    "smi.yaml: document 1 (TrafficSplit a/bad): spec.backends[6].weight: "
    "weight too large, got 1e+30" },
  { NULL } },

{ "TrafficSplit v1alpha2-4: whole numbers (A-15)", false,
"apiVersion: split.smi-spec.io/v1alpha2\n"
"kind: TrafficSplit\n"
"metadata: {name: v2, namespace: a}\n"
"spec:\n"
"  service: web\n"
"  backends: [{service: a, weight: 1000}, {service: b, weight: 500}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha3\n"
"kind: TrafficSplit\n"
"metadata: {name: v3, namespace: a}\n"
"spec:\n"
"  service: api\n"
"  backends: [{service: a, weight: 3.0}, {service: b, weight: 0}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: bad, namespace: a}\n"
"spec:\n"
"  service: db\n"
"  backends:\n"
"  - {service: a, weight: 0.5}\n"
"  - {service: b, weight: -1}\n"
"  - {service: c, weight: 500m}\n"
"  - {service: d, weight: 4294967296}\n",
  { "TrafficSplit a/v2 svc=web created=0 backends=a:1000,b:500 matches=",
    "TrafficSplit a/v3 svc=api created=0 backends=a:3,b:0 matches=" },
  { "smi.yaml: document 3 (TrafficSplit a/bad): spec.backends[0].weight: "
    "expected a whole number 0-4294967295 (A-15), got 0.5",
    "smi.yaml: document 3 (TrafficSplit a/bad): spec.backends[1].weight: "
    "expected a whole number 0-4294967295 (A-15), got -1",
    "smi.yaml: document 3 (TrafficSplit a/bad): spec.backends[2].weight: "
    "expected a whole number 0-4294967295 (A-15); Quantities such as "
    "\"500m\" are split.smi-spec.io/v1alpha1 only, got \"500m\"",
    "smi.yaml: document 3 (TrafficSplit a/bad): spec.backends[3].weight: "
    "expected a whole number 0-4294967295 (A-15), got 4294967296" },
  { NULL } },

{ "TrafficSplit all weights zero (A-15), self-reference (A-16)", false,
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: zero, namespace: a}\n"
"spec:\n"
"  service: web\n"
"  backends: [{service: a, weight: 0}, {service: b, weight: 0}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: self, namespace: a}\n"
"spec:\n"
"  service: api.a.svc.cluster.local\n"
"  backends: [{service: api, weight: 9}, {service: api-v2, weight: 1}]\n",
  { "TrafficSplit a/self svc=api created=0 backends=api:9,api-v2:1 "
    "matches=",
    "TrafficSplit a/zero svc=web created=0 backends=a:0,b:0 matches=" },
  { NULL },
  { "smi.yaml: document 1 (TrafficSplit a/zero): spec.backends: every "
    "weight is 0: requests for the service get 503 (A-15)",
    "smi.yaml: document 2 (TrafficSplit a/self): spec.backends[0].weight: "
    "the root service is its own backend: it is used as a plain Service, "
    "without recursion (A-16)" } },

{ "TrafficSplit root service forms (A-14)", false,
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: s1, namespace: shop}\n"
"spec: {service: web.shop, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: s2, namespace: shop}\n"
"spec: {service: api.shop.svc, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: s3, namespace: shop}\n"
"spec: {service: db.shop.svc.example.org, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x1, namespace: shop}\n"
"spec: {service: web.other, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x2, namespace: shop}\n"
"spec: {service: web.shop.cluster, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x3, namespace: shop}\n"
"spec: {service: web.shop.svc., backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x4, namespace: shop}\n"
"spec: {service: Web, backends: [{service: b, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x5, namespace: shop}\n"
"spec: {service: web.shopping, backends: [{service: b, weight: 1}]}\n",
  { "TrafficSplit shop/s1 svc=web created=0 backends=b:1 matches=",
    "TrafficSplit shop/s2 svc=api created=0 backends=b:1 matches=",
    "TrafficSplit shop/s3 svc=db created=0 backends=b:1 matches=" },
  { "smi.yaml: document 4 (TrafficSplit shop/x1): spec.service: expected a "
    "Service of namespace shop: name, name.shop, name.shop.svc or "
    "name.shop.svc.<domain> (A-14), got \"web.other\"",
    "smi.yaml: document 5 (TrafficSplit shop/x2): spec.service: expected a "
    "Service of namespace shop: name, name.shop, name.shop.svc or "
    "name.shop.svc.<domain> (A-14), got \"web.shop.cluster\"",
    "smi.yaml: document 6 (TrafficSplit shop/x3): spec.service: expected a "
    "Service of namespace shop: name, name.shop, name.shop.svc or "
    "name.shop.svc.<domain> (A-14), got \"web.shop.svc.\"",
    "smi.yaml: document 7 (TrafficSplit shop/x4): spec.service: expected a "
    "Service of namespace shop: name, name.shop, name.shop.svc or "
    "name.shop.svc.<domain> (A-14), got \"Web\"",
    "smi.yaml: document 8 (TrafficSplit shop/x5): spec.service: expected a "
    "Service of namespace shop: name, name.shop, name.shop.svc or "
    "name.shop.svc.<domain> (A-14), got \"web.shopping\"" },
  { NULL } },

{ "TrafficSplit matches (v1alpha3+), creationTimestamp", false,
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: ab, namespace: a, "
"creationTimestamp: \"2024-05-01T12:00:30Z\"}\n"
"spec:\n"
"  service: web\n"
"  matches: [{kind: HTTPRouteGroup, name: ab-test}, "
"{kind: HTTPRouteGroup, name: beta}]\n"
"  backends: [{service: web-v2, weight: 1}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha3\n"
"kind: TrafficSplit\n"
"metadata: {name: tz, namespace: a, "
"creationTimestamp: \"2024-05-01T14:00:30.5+02:00\"}\n"
"spec:\n"
"  service: web\n"
"  matches: [{kind: HTTPRouteGroup, name: other, apiGroup: "
"specs.smi-spec.io}]\n"
"  backends: [{service: web-v3, weight: 1}]\n",
  { "TrafficSplit a/ab svc=web created=1714564830 backends=web-v2:1 "
    "matches=ab-test,beta",
    "TrafficSplit a/tz svc=web created=1714564830 backends=web-v3:1 "
    "matches=other" },
  { NULL }, { NULL } },

{ "TrafficSplit errors", false,
"apiVersion: split.smi-spec.io/v1alpha2\n"
"kind: TrafficSplit\n"
"metadata: {name: early, namespace: a}\n"
"spec:\n"
"  service: web\n"
"  matches: [{kind: HTTPRouteGroup, name: g}]\n"
"  backends: [{service: b, weight: 1}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: kinds, namespace: a, creationTimestamp: yesterday}\n"
"spec:\n"
"  service: web\n"
"  matches: [{kind: TCPRoute, name: g}, {kind: HTTPRouteGroup}]\n"
"  backends: [{service: B, weight: 1}, {weight: 1}, 3]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: empty, namespace: a}\n"
"spec: {backends: []}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: nospec, namespace: a}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha5\n"
"kind: TrafficSplit\n"
"metadata: {name: future, namespace: a}\n",
  { NULL },
  { "smi.yaml: document 1 (TrafficSplit a/early): spec.matches: not a "
    "field of split.smi-spec.io/v1alpha2 (matches came in v1alpha3)",
    "smi.yaml: document 2 (TrafficSplit a/kinds): "
    "metadata.creationTimestamp: expected an RFC 3339 time (such as "
    "2024-05-01T12:00:30Z), got \"yesterday\"",
    "smi.yaml: document 2 (TrafficSplit a/kinds): spec.backends[0].service: "
    "expected a DNS-1123 label (at most 63 lowercase letters, digits and "
    "'-', starting and ending with a letter or digit), got \"B\"",
    "smi.yaml: document 2 (TrafficSplit a/kinds): spec.backends[1].service: "
    "required",
    "smi.yaml: document 2 (TrafficSplit a/kinds): spec.backends[2]: "
    "expected an object, got 3",
    "smi.yaml: document 2 (TrafficSplit a/kinds): spec.matches[0].kind: "
    "expected HTTPRouteGroup, got \"TCPRoute\"",
    "smi.yaml: document 2 (TrafficSplit a/kinds): spec.matches[1].name: "
    "required",
    "smi.yaml: document 3 (TrafficSplit a/empty): spec.service: required",
    "smi.yaml: document 3 (TrafficSplit a/empty): spec.backends: expected "
    "at least one backend",
    "smi.yaml: document 4 (TrafficSplit a/nospec): spec: required",
    "smi.yaml: document 5 (TrafficSplit a/future): apiVersion: expected "
    "split.smi-spec.io/v1alpha1, v1alpha2, v1alpha3 or v1alpha4, got "
    "\"split.smi-spec.io/v1alpha5\"" },
  { NULL } },
};

static const struct smi_case a17_cases[] = {
{ "TrafficSplit one catch-all per root service (A-17)", false,
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: a-late, namespace: n, "
"creationTimestamp: \"2024-06-01T00:00:00Z\"}\n"
"spec: {service: web, backends: [{service: v2, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: b-early, namespace: n, "
"creationTimestamp: \"2024-01-01T00:00:00Z\"}\n"
"spec: {service: web, backends: [{service: v1, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: c-matches, namespace: n, "
"creationTimestamp: \"2023-01-01T00:00:00Z\"}\n"
"spec:\n"
"  service: web\n"
"  matches: [{kind: HTTPRouteGroup, name: g}]\n"
"  backends: [{service: v3, weight: 1}]\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: y, namespace: n}\n"
"spec: {service: api, backends: [{service: v1, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: x, namespace: n}\n"
"spec: {service: api.n.svc, backends: [{service: v2, weight: 1}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\n"
"kind: TrafficSplit\n"
"metadata: {name: other-ns, namespace: m}\n"
"spec: {service: api, backends: [{service: v2, weight: 1}]}\n",
  { "TrafficSplit m/other-ns svc=api created=0 backends=v2:1 matches=",
    "TrafficSplit n/b-early svc=web created=1704067200 backends=v1:1 "
    "matches=",
    "TrafficSplit n/c-matches svc=web created=1672531200 backends=v3:1 "
    "matches=g",
    "TrafficSplit n/x svc=api created=0 backends=v2:1 matches=" },
  { "smi.yaml: document 1 (TrafficSplit n/a-late): spec.service: Service "
    "\"web\" already has a split without matches, TrafficSplit n/b-early "
    "(the earliest by creationTimestamp, then name, is kept); ignored "
    "(A-17)",
    "smi.yaml: document 4 (TrafficSplit n/y): spec.service: Service \"api\" "
    "already has a split without matches, TrafficSplit n/x (the earliest "
    "by creationTimestamp, then name, is kept); ignored (A-17)" },
  { NULL } },
};

static void
run_cases(const struct smi_case *c, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		run_case(&c[i]);
}

/* An invalid SMI object is left out and changes nothing else: the other
 * kinds and the valid SMI objects of the same files are all there. */
static void
test_isolation(void)
{
	static const char yaml[] =
	    "apiVersion: v1\n"
	    "kind: Namespace\n"
	    "metadata: {name: shop, labels: {weft.io/mesh: enabled}}\n"
	    "---\n"
	    "apiVersion: v1\n"
	    "kind: Pod\n"
	    "metadata: {name: web, namespace: shop}\n"
	    "spec: {nodeName: node1, serviceAccountName: web}\n"
	    "status: {podIP: 10.244.1.10}\n"
	    "---\n"
	    "apiVersion: v1\n"
	    "kind: Service\n"
	    "metadata: {name: web, namespace: shop}\n"
	    "spec: {clusterIP: 10.96.0.10, ports: [{port: 80}]}\n"
	    "---\n"
	    "apiVersion: access.smi-spec.io/v1alpha3\n"
	    "kind: TrafficTarget\n"
	    "metadata: {name: broken, namespace: shop}\n"
	    "spec: {destination: {kind: ServiceAccount}}\n"
	    "---\n"
	    "apiVersion: v1\n"
	    "kind: List\n"
	    "items:\n"
	    "- apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "  kind: HTTPRouteGroup\n"
	    "  metadata: {name: ok, namespace: shop}\n"
	    "  spec: {matches: [{name: m, pathRegex: /}]}\n"
	    "- apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "  kind: HTTPRouteGroup\n"
	    "  metadata: {name: bad, namespace: shop}\n"
	    "  spec: {matches: [{name: m, pathRegex: \"(?<=x)\"}]}\n"
	    "---\n"
	    "apiVersion: access.smi-spec.io/v1alpha3\n"
	    "kind: TrafficTarget\n"
	    "metadata: {name: good, namespace: shop}\n"
	    "spec:\n"
	    "  destination: {kind: ServiceAccount, name: web}\n"
	    "  rules: [{kind: HTTPRouteGroup, name: ok}]\n"
	    "  sources: [{kind: ServiceAccount, name: client}]\n"
	    "---\n"
	    "apiVersion: metrics.smi-spec.io/v1alpha1\n"
	    "kind: TrafficMetrics\n"
	    "metadata: {name: m, namespace: shop}\n";
	static const char *const want_errs[] = {
		"smi.yaml: document 4 (TrafficTarget shop/broken): "
		    "spec.destination.name: required",
		"smi.yaml: document 4 (TrafficTarget shop/broken): spec.rules: "
		    "required",
		"smi.yaml: document 4 (TrafficTarget shop/broken): spec.sources: "
		    "required",
		"smi.yaml: document 5 (HTTPRouteGroup shop/bad): "
		    "items[1].spec.matches[0].pathRegex: invalid regular "
		    "expression: offset 0: look-behind assertions are not RE2 "
		    "syntax",
		NULL
	};
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_snapshot v;
	struct weft_model *m;
	size_t i;

	m = build(yaml, false, &e);
	ok(m != NULL, "isolation: model built");
	if (m == NULL)
		return;
	for (i = 0; want_errs[i] != NULL; i++)
		is_str(i < e.n ? e.msgs[i] : NULL, want_errs[i],
		    "isolation: error %zu", i + 1);
	is_int(e.n, i, "isolation: %zu errors", i);
	is_int(e.n_warnings, 0, "isolation: no warnings");
	is_int(m->all.n_namespaces, 1, "isolation: namespace kept");
	is_int(m->all.n_pods, 1, "isolation: pod kept");
	is_int(m->all.n_services, 1, "isolation: service kept");
	is_int(m->all.n_targets, 1, "isolation: the valid target only");
	is_str(m->all.n_targets ? m->all.targets[0].name : NULL, "good",
	    "isolation: target shop/good");
	is_int(m->all.n_http_route_groups, 1, "isolation: the valid group");
	is_str(m->all.n_http_route_groups ? m->all.http_route_groups[0].name :
	    NULL, "ok", "isolation: group shop/ok from the List");
	is_int(m->n_others, 1, "isolation: TrafficMetrics kept aside");

	/* the view carries them, borrowed */
	weft_model_view(m, "node1", 5, "cluster.local", &v);
	ok(v.targets == m->all.targets && v.n_targets == 1,
	    "view: targets borrowed from the model");
	ok(v.http_route_groups == m->all.http_route_groups &&
	    v.n_http_route_groups == 1, "view: route groups borrowed");
	ok(v.splits == m->all.splits && v.n_splits == 0 &&
	    v.tcp_routes == m->all.tcp_routes &&
	    v.udp_routes == m->all.udp_routes, "view: splits and L4 routes");
	weft_model_free(m);
	weft_errors_clear(&e);
}

/* Objects are sorted by (namespace, name) whatever the document order,
 * and encode to the same snapshot bytes. */
static void
test_order(void)
{
	static const char a[] =
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: z, namespace: a}\n"
	    "spec: {matches: {ports: [1]}}\n"
	    "---\n"
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: b, namespace: b}\n"
	    "spec: {matches: {ports: [2]}}\n"
	    "---\n"
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: a, namespace: a}\n"
	    "spec: {matches: {ports: [3]}}\n";
	static const char b[] =
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: a, namespace: a}\n"
	    "spec: {matches: {ports: [3]}}\n"
	    "---\n"
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: b, namespace: b}\n"
	    "spec: {matches: {ports: [2]}}\n"
	    "---\n"
	    "apiVersion: specs.smi-spec.io/v1alpha4\n"
	    "kind: TCPRoute\n"
	    "metadata: {name: z, namespace: a}\n"
	    "spec: {matches: {ports: [1]}}\n";
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m1, *m2;
	struct weft_snapshot v1, v2;
	char *e1, *e2;

	m1 = build(a, false, &e);
	m2 = build(b, false, &e);
	if (m1 == NULL || m2 == NULL) {
		ok(0, "order: models built");
		return;
	}
	ok(m1->all.n_tcp_routes == 3 &&
	    strcmp(m1->all.tcp_routes[0].name, "a") == 0 &&
	    strcmp(m1->all.tcp_routes[1].name, "z") == 0 &&
	    strcmp(m1->all.tcp_routes[2].namespace, "b") == 0,
	    "order: sorted by namespace, then name");
	weft_model_view(m1, "n", 1, "cluster.local", &v1);
	weft_model_view(m2, "n", 1, "cluster.local", &v2);
	e1 = weft_snapshot_encode(&v1);
	e2 = weft_snapshot_encode(&v2);
	ok(e1 != NULL && e2 != NULL && strcmp(e1, e2) == 0,
	    "order: same snapshot bytes for any document order");
	free(e1);
	free(e2);
	weft_model_free(m1);
	weft_model_free(m2);
	weft_errors_clear(&e);
}

int
main(void)
{
	run_cases(target_cases, sizeof(target_cases) / sizeof(target_cases[0]));
	run_cases(specs_cases, sizeof(specs_cases) / sizeof(specs_cases[0]));
	run_cases(split_cases, sizeof(split_cases) / sizeof(split_cases[0]));
	run_cases(a17_cases, sizeof(a17_cases) / sizeof(a17_cases[0]));
	test_isolation();
	test_order();
	return tap_done();
}
