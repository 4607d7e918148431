/* The policy engine: SMI access control (SPEC §3.2, §3.4, §4.1; DESIGN §5),
 * compiled once per generation into an index by destination identity and
 * then evaluated with no lock and no allocation.
 *
 * Compilation resolves every rule reference in its TrafficTarget's
 * namespace and compiles every regular expression of the route groups that
 * some target references, once, however many targets share them.
 *
 * Decisions the spec leaves to us, beyond SPEC §9:
 *  - A rule whose route object is missing, or whose `matches` names are all
 *    unknown, grants nothing, but it still counts as a rule of its kind for
 *    a target with a missing TCPRoute and a good HTTPRouteGroup admits
 *    no port (rather than every port), and one with a good TCPRoute and a
 *    missing HTTPRouteGroup admits no raw TCP.  Dropping the broken rule
 *    would widen access, which fail-closed (§3.2.7) forbids.
 *  - A destination in a namespace that is not meshed is outside the mesh:
 *    every flow is allowed (the proxy passes such traffic through, DESIGN
 *    §3), with a reason saying so.  A namespace the snapshot does not know
 *    at all is denied.
 *  - A permissive namespace allows every flow, authenticated or not.
 *  - A flow with only one of src_ns/src_sa set is treated as
 *    unauthenticated.
 *  - destination.port of old TrafficTargets (§8.1) constrains every rule of
 *    its target, UDP included. */
#include "config.h"

#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "weft/policy.h"
#include "weft/regex.h"
#include "weft/snapshot.h"

#define POL_HAS_TCP	0x1		/* some TCPRoute rule, resolvable or not */
#define POL_HAS_HTTP	0x2		/* some HTTPRouteGroup rule */
#define POL_HAS_UDP	0x4		/* some UDPRoute rule */

/* How far a denied flow got; the deepest reason is the one reported. */
enum pol_level {
	POL_L_NONE = 0,			/* no target selects the destination */
	POL_L_SOURCE,			/* no selecting target lists the source */
	POL_L_RULES,			/* listed, but no rule admits the flow */
	POL_L_REQUEST,			/* listed, the request matched nothing */
};

struct pol_hdr {
	const char	*name;		/* borrowed from the snapshot */
	size_t		 name_len;
	struct weft_re	*value;		/* owned; NULL: any value */
};

/* One entry of an HTTPRouteGroup's spec.matches, compiled. */
struct pol_match {
	const struct weft_smi_http_match *m;	/* borrowed */
	struct weft_re	*path;		/* owned; NULL: any path */
	bool		 any_method;
	struct pol_hdr	*hdrs;		/* owned */
	size_t		 n_hdrs;
};

struct pol_group {
	const struct weft_smi_http_route_group *g;	/* borrowed */
	struct pol_match *matches;	/* owned; NULL until referenced */
	bool		 compiled;
};

/* One spec.rules[] entry of a target, resolved. */
struct pol_rule {
	const struct weft_smi_rule *r;		/* borrowed */
	const struct weft_smi_l4_route *l4;	/* TCP/UDP; NULL: missing */
	const struct pol_group *grp;		/* HTTP; NULL: missing */
	const struct pol_match **sel;		/* owned array: the entries
						 * the rule selects */
	size_t		 n_sel;
};

struct pol_target {
	const struct weft_smi_target *t;	/* borrowed */
	const char	*dst_ns;		/* A-6 resolved, borrowed */
	struct pol_rule	*rules;			/* owned */
	size_t		 n_rules;
	unsigned	 kinds;			/* POL_HAS_* */
};

struct pol_udp {
	const char	*src_ns;		/* borrowed */
	const char	*src_sa;
	uint16_t	 lo, hi;
};

/* Every target that selects one destination identity. */
struct pol_dest {
	const char	*ns;			/* borrowed */
	const char	*sa;
	const struct pol_target **targets;	/* owned array */
	size_t		 n_targets;
	struct pol_udp	*udp;			/* owned; merged, sorted */
	size_t		 n_udp;
};

struct weft_policy {
	const struct weft_snapshot *snap;	/* borrowed */
	const struct weft_snap_namespace **nss;	/* owned array, by name */
	size_t		 n_nss;
	struct pol_group *groups;		/* owned, by (ns, name) */
	size_t		 n_groups;
	const struct weft_smi_l4_route **tcp;	/* owned array, by (ns, name) */
	size_t		 n_tcp;
	const struct weft_smi_l4_route **udp;
	size_t		 n_udp;
	struct pol_target *targets;		/* owned */
	size_t		 n_targets;
	struct pol_dest	*dests;			/* owned, by (ns, sa) */
	size_t		 n_dests;
};

/* Why a flow was denied so far. */
struct pol_deny {
	enum pol_level	 level;
	char		 reason[sizeof(((struct weft_policy_why *)0)->reason)];
};

static const char *
pol_str(const char *s)
{
	return s != NULL ? s : "";
}

static int
pol_pair_cmp(const char *a1, const char *a2, const char *b1, const char *b2)
{
	int c;

	if ((c = strcmp(pol_str(a1), pol_str(b1))) != 0)
		return c;
	return strcmp(pol_str(a2), pol_str(b2));
}

/* an empty subject namespace is the target's own.  The controller
 * resolves it already; this only guards against a snapshot that did not. */
static const char *
pol_subject_ns(const char *ns, const struct weft_smi_target *t)
{
	return ns != NULL && ns[0] != '\0' ? ns : pol_str(t->namespace);
}

/* --- lookups ------------------------------------------------------------- */

struct pol_key {
	const char	*a, *b;
};

static int
pol_ns_cmp(const void *a, const void *b)
{
	const struct weft_snap_namespace *x = *(const struct weft_snap_namespace
	    * const *)a, *y = *(const struct weft_snap_namespace * const *)b;

	return strcmp(pol_str(x->name), pol_str(y->name));
}

static int
pol_ns_key_cmp(const void *k, const void *e)
{
	const struct weft_snap_namespace *y = *(const struct weft_snap_namespace
	    * const *)e;

	return strcmp(k, pol_str(y->name));
}

static const struct weft_snap_namespace *
pol_namespace(const struct weft_policy *p, const char *name)
{
	const struct weft_snap_namespace **hit;

	if (p->n_nss == 0)
		return NULL;
	hit = bsearch(name, p->nss, p->n_nss, sizeof(*p->nss), pol_ns_key_cmp);
	return hit != NULL ? *hit : NULL;
}

static int
pol_group_cmp(const void *a, const void *b)
{
	const struct pol_group *x = a, *y = b;

	return pol_pair_cmp(x->g->namespace, x->g->name, y->g->namespace,
	    y->g->name);
}

static int
pol_group_key_cmp(const void *k, const void *e)
{
	const struct pol_key *key = k;
	const struct pol_group *y = e;

	return pol_pair_cmp(key->a, key->b, y->g->namespace, y->g->name);
}

static int
pol_l4_cmp(const void *a, const void *b)
{
	const struct weft_smi_l4_route *x = *(const struct weft_smi_l4_route
	    * const *)a, *y = *(const struct weft_smi_l4_route * const *)b;

	return pol_pair_cmp(x->namespace, x->name, y->namespace, y->name);
}

static int
pol_l4_key_cmp(const void *k, const void *e)
{
	const struct pol_key *key = k;
	const struct weft_smi_l4_route *y = *(const struct weft_smi_l4_route
	    * const *)e;

	return pol_pair_cmp(key->a, key->b, y->namespace, y->name);
}

static const struct weft_smi_l4_route *
pol_l4_lookup(const struct weft_smi_l4_route **ix, size_t n, const char *ns,
    const char *name)
{
	const struct weft_smi_l4_route **hit;
	struct pol_key key = { ns, name };

	if (n == 0)
		return NULL;
	hit = bsearch(&key, ix, n, sizeof(*ix), pol_l4_key_cmp);
	return hit != NULL ? *hit : NULL;
}

static int
pol_dest_key_cmp(const void *k, const void *e)
{
	const struct pol_key *key = k;
	const struct pol_dest *y = e;

	return pol_pair_cmp(key->a, key->b, y->ns, y->sa);
}

static const struct pol_dest *
pol_dest_find(const struct weft_policy *p, const char *ns, const char *sa)
{
	struct pol_key key = { ns, sa };

	if (p->n_dests == 0)
		return NULL;
	return bsearch(&key, p->dests, p->n_dests, sizeof(*p->dests),
	    pol_dest_key_cmp);
}

/* --- compilation ----------------------------------------------------------- */

static void
pol_group_clear(struct pol_group *pg)
{
	size_t i, j;

	if (pg->matches == NULL)
		return;
	for (i = 0; i < pg->g->n_matches; i++) {
		weft_re_free(pg->matches[i].path);
		for (j = 0; j < pg->matches[i].n_hdrs; j++)
			weft_re_free(pg->matches[i].hdrs[j].value);
		free(pg->matches[i].hdrs);
	}
	free(pg->matches);
	pg->matches = NULL;
}

static int __attribute__((format(printf, 2, 3)))
pol_fail(char **err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(err, fmt, ap) == -1)
		*err = NULL;
	va_end(ap);
	return -1;
}

/* Compile every entry of a referenced group, once. */
static int
pol_group_compile(struct pol_group *pg, char **err)
{
	const struct weft_smi_http_route_group *g = pg->g;
	char why[256];
	size_t i, j;

	if (pg->compiled)
		return 0;
	pg->compiled = true;
	if (g->n_matches == 0)
		return 0;
	if ((pg->matches = calloc(g->n_matches, sizeof(*pg->matches))) == NULL)
		goto oom;
	for (i = 0; i < g->n_matches; i++) {
		const struct weft_smi_http_match *m = &g->matches[i];
		struct pol_match *pm = &pg->matches[i];

		pm->m = m;
		if (m->path_regex != NULL && (pm->path = weft_re_compile(
		    m->path_regex, WEFT_RE_PREFIX, why, sizeof(why))) == NULL)
			return pol_fail(err, "HTTPRouteGroup %s/%s match %s: "
			    "pathRegex \"%s\": %s", pol_str(g->namespace),
			    pol_str(g->name), pol_str(m->name), m->path_regex,
			    why);
		pm->any_method = m->n_methods == 0;
		for (j = 0; j < m->n_methods; j++)
			if (m->methods[j] != NULL &&
			    strcmp(m->methods[j], "*") == 0)
				pm->any_method = true;
		if (m->n_headers == 0)
			continue;
		if ((pm->hdrs = calloc(m->n_headers, sizeof(*pm->hdrs))) ==
		    NULL)
			goto oom;
		pm->n_hdrs = m->n_headers;
		for (j = 0; j < m->n_headers; j++) {
			const struct weft_smi_header_match *h = &m->headers[j];

			pm->hdrs[j].name = h->name;
			pm->hdrs[j].name_len = h->name ? strlen(h->name) : 0;
			if (h->value_regex != NULL &&
			    (pm->hdrs[j].value = weft_re_compile(h->value_regex,
			    WEFT_RE_FULL, why, sizeof(why))) == NULL)
				return pol_fail(err, "HTTPRouteGroup %s/%s "
				    "match %s: header %s \"%s\": %s",
				    pol_str(g->namespace), pol_str(g->name),
				    pol_str(m->name), pol_str(h->name),
				    h->value_regex, why);
		}
	}
	return 0;
oom:
	*err = strdup("out of memory");
	return -1;
}

static int
pol_rule_resolve(struct weft_policy *p, struct pol_target *pt,
    struct pol_rule *pr, char **err)
{
	const struct weft_smi_rule *r = pr->r;
	const char *ns = pol_str(pt->t->namespace);
	struct pol_key key = { ns, r->name };
	struct pol_group *pg;
	size_t i, j;

	switch (r->kind) {
	case WEFT_SMI_TCP:
		pt->kinds |= POL_HAS_TCP;
		pr->l4 = pol_l4_lookup(p->tcp, p->n_tcp, ns, r->name);
		return 0;
	case WEFT_SMI_UDP:
		pt->kinds |= POL_HAS_UDP;
		pr->l4 = pol_l4_lookup(p->udp, p->n_udp, ns, r->name);
		return 0;
	case WEFT_SMI_HTTP:
		pt->kinds |= POL_HAS_HTTP;
		break;
	default:
		/* an unknown kind grants nothing and restricts nothing */
		return 0;
	}
	if (p->n_groups == 0 || (pg = bsearch(&key, p->groups, p->n_groups,
	    sizeof(*p->groups), pol_group_key_cmp)) == NULL)
		return 0;
	if (pol_group_compile(pg, err) == -1)
		return -1;
	pr->grp = pg;
	if (pg->g->n_matches == 0)
		return 0;
	if ((pr->sel = calloc(pg->g->n_matches, sizeof(*pr->sel))) == NULL) {
		*err = strdup("out of memory");
		return -1;
	}
	for (i = 0; i < pg->g->n_matches; i++) {
		const char *name = pol_str(pg->g->matches[i].name);
		bool take = r->n_matches == 0;

		for (j = 0; !take && j < r->n_matches; j++)
			take = r->matches[j] != NULL &&
			    strcmp(r->matches[j], name) == 0;
		if (take)
			pr->sel[pr->n_sel++] = &pg->matches[i];
	}
	return 0;
}

struct pol_dkey {
	const char	*ns, *sa;
	size_t		 ix;			/* into targets */
};

static int
pol_dkey_cmp(const void *a, const void *b)
{
	const struct pol_dkey *x = a, *y = b;

	return pol_pair_cmp(x->ns, x->sa, y->ns, y->sa);
}

/* Targets of one destination keep the snapshot's (ns, name) order. */
static int
pol_dkey_order(const void *a, const void *b)
{
	const struct pol_dkey *x = a, *y = b;
	int c;

	if ((c = pol_dkey_cmp(a, b)) != 0)
		return c;
	return x->ix < y->ix ? -1 : x->ix > y->ix;
}

static int
pol_udp_cmp(const void *a, const void *b)
{
	const struct pol_udp *x = a, *y = b;
	int c;

	if ((c = pol_pair_cmp(x->src_ns, x->src_sa, y->src_ns, y->src_sa)) != 0)
		return c;
	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

static bool
pol_l4_admits(const struct weft_smi_l4_route *r, uint16_t port)
{
	size_t i;

	if (r->n_ports == 0)
		return true;
	for (i = 0; i < r->n_ports; i++)
		if (r->ports[i] == port)
			return true;
	return false;
}

/* The UDP grants of one destination: (source, port range) from every target
 * with UDPRoute rules, sorted and merged so that each source's ranges are
 * disjoint and not adjacent. */
static int
pol_dest_udp(struct pol_dest *d)
{
	struct pol_udp *u = NULL, *nu;
	size_t n = 0, cap = 0, i, k, s, m;

	for (i = 0; i < d->n_targets; i++) {
		const struct pol_target *pt = d->targets[i];
		const struct weft_smi_target *t = pt->t;

		if (!(pt->kinds & POL_HAS_UDP))
			continue;
		for (s = 0; s < t->n_sources; s++) {
			for (k = 0; k < pt->n_rules; k++) {
				const struct pol_rule *pr = &pt->rules[k];
				size_t np, q;

				if (pr->r->kind != WEFT_SMI_UDP || pr->l4 == NULL)
					continue;
				if (t->port != 0)
					np = pol_l4_admits(pr->l4, t->port);
				else
					np = pr->l4->n_ports == 0 ? 1 :
					    pr->l4->n_ports;
				if (n + np > cap) {
					cap = (n + np) * 2;
					if ((nu = reallocarray(u, cap,
					    sizeof(*u))) == NULL) {
						free(u);
						return -1;
					}
					u = nu;
				}
				for (q = 0; q < np; q++) {
					u[n].src_ns = pol_subject_ns(
					    t->sources[s].namespace, t);
					u[n].src_sa = pol_str(t->sources[s].name);
					if (t->port != 0)
						u[n].lo = u[n].hi = t->port;
					else if (pr->l4->n_ports == 0) {
						u[n].lo = 0;
						u[n].hi = 65535;
					} else
						u[n].lo = u[n].hi =
						    pr->l4->ports[q];
					n++;
				}
			}
		}
	}
	if (n == 0) {
		free(u);
		return 0;
	}
	qsort(u, n, sizeof(*u), pol_udp_cmp);
	for (i = 1, m = 0; i < n; i++) {
		if (pol_pair_cmp(u[m].src_ns, u[m].src_sa, u[i].src_ns,
		    u[i].src_sa) == 0 && (uint32_t)u[i].lo <=
		    (uint32_t)u[m].hi + 1) {
			if (u[i].hi > u[m].hi)
				u[m].hi = u[i].hi;
		} else
			u[++m] = u[i];
	}
	d->udp = u;
	d->n_udp = m + 1;
	return 0;
}

static int
pol_build_dests(struct weft_policy *p)
{
	struct pol_dkey *keys;
	size_t i, j, n;

	if (p->n_targets == 0)
		return 0;
	if ((keys = calloc(p->n_targets, sizeof(*keys))) == NULL)
		return -1;
	for (i = 0; i < p->n_targets; i++) {
		keys[i].ns = p->targets[i].dst_ns;
		keys[i].sa = pol_str(p->targets[i].t->destination.name);
		keys[i].ix = i;
	}
	qsort(keys, p->n_targets, sizeof(*keys), pol_dkey_order);
	for (i = 0, n = 0; i < p->n_targets; i++)
		if (i == 0 || pol_dkey_cmp(&keys[i - 1], &keys[i]) != 0)
			n++;
	if ((p->dests = calloc(n, sizeof(*p->dests))) == NULL)
		goto fail;
	for (i = 0; i < p->n_targets; i = j) {
		struct pol_dest *d = &p->dests[p->n_dests++];
		size_t k;

		for (j = i; j < p->n_targets &&
		    pol_dkey_cmp(&keys[i], &keys[j]) == 0; j++)
			;
		d->ns = keys[i].ns;
		d->sa = keys[i].sa;
		if ((d->targets = calloc(j - i, sizeof(*d->targets))) == NULL)
			goto fail;
		for (k = i; k < j; k++)
			d->targets[d->n_targets++] = &p->targets[keys[k].ix];
		if (pol_dest_udp(d) == -1)
			goto fail;
	}
	free(keys);
	return 0;
fail:
	free(keys);
	return -1;
}

struct weft_policy *
weft_policy_compile(const struct weft_snapshot *s, char **err)
{
	struct weft_policy *p;
	size_t i, k;

	*err = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		goto oom;
	p->snap = s;
	if (s->n_namespaces > 0) {
		if ((p->nss = calloc(s->n_namespaces, sizeof(*p->nss))) == NULL)
			goto oom;
		for (i = 0; i < s->n_namespaces; i++)
			p->nss[i] = &s->namespaces[i];
		p->n_nss = s->n_namespaces;
		qsort(p->nss, p->n_nss, sizeof(*p->nss), pol_ns_cmp);
	}
	if (s->n_http_route_groups > 0) {
		if ((p->groups = calloc(s->n_http_route_groups,
		    sizeof(*p->groups))) == NULL)
			goto oom;
		for (i = 0; i < s->n_http_route_groups; i++)
			p->groups[i].g = &s->http_route_groups[i];
		p->n_groups = s->n_http_route_groups;
		qsort(p->groups, p->n_groups, sizeof(*p->groups),
		    pol_group_cmp);
	}
	if (s->n_tcp_routes > 0) {
		if ((p->tcp = calloc(s->n_tcp_routes, sizeof(*p->tcp))) == NULL)
			goto oom;
		for (i = 0; i < s->n_tcp_routes; i++)
			p->tcp[i] = &s->tcp_routes[i];
		p->n_tcp = s->n_tcp_routes;
		qsort(p->tcp, p->n_tcp, sizeof(*p->tcp), pol_l4_cmp);
	}
	if (s->n_udp_routes > 0) {
		if ((p->udp = calloc(s->n_udp_routes, sizeof(*p->udp))) == NULL)
			goto oom;
		for (i = 0; i < s->n_udp_routes; i++)
			p->udp[i] = &s->udp_routes[i];
		p->n_udp = s->n_udp_routes;
		qsort(p->udp, p->n_udp, sizeof(*p->udp), pol_l4_cmp);
	}
	if (s->n_targets > 0 && (p->targets = calloc(s->n_targets,
	    sizeof(*p->targets))) == NULL)
		goto oom;
	for (i = 0; i < s->n_targets; i++) {
		struct pol_target *pt = &p->targets[p->n_targets++];

		pt->t = &s->targets[i];
		pt->dst_ns = pol_subject_ns(pt->t->destination.namespace, pt->t);
		if (pt->t->n_rules == 0)
			continue;
		if ((pt->rules = calloc(pt->t->n_rules, sizeof(*pt->rules))) ==
		    NULL)
			goto oom;
		pt->n_rules = pt->t->n_rules;
		for (k = 0; k < pt->n_rules; k++) {
			pt->rules[k].r = &pt->t->rules[k];
			if (pol_rule_resolve(p, pt, &pt->rules[k], err) == -1)
				goto fail;
		}
	}
	/* The groups TrafficSplits name in `matches` (split gating,
	 * weft_policy_match_groups), compiled now like the targets' ones:
	 * evaluation allocates nothing. */
	for (i = 0; i < s->n_splits; i++) {
		const struct weft_smi_split *sp = &s->splits[i];

		for (k = 0; k < sp->n_match_groups; k++) {
			struct pol_key key = { pol_str(sp->namespace),
			    pol_str(sp->match_groups[k]) };
			struct pol_group *pg;

			if (p->n_groups == 0 || (pg = bsearch(&key, p->groups,
			    p->n_groups, sizeof(*p->groups),
			    pol_group_key_cmp)) == NULL)
				continue;
			if (pol_group_compile(pg, err) == -1)
				goto fail;
		}
	}
	if (pol_build_dests(p) == -1)
		goto oom;
	return p;
oom:
	free(*err);
	*err = strdup("out of memory");
fail:
	weft_policy_free(p);
	return NULL;
}

void
weft_policy_free(struct weft_policy *p)
{
	size_t i, k;

	if (p == NULL)
		return;
	for (i = 0; i < p->n_dests; i++) {
		free(p->dests[i].targets);
		free(p->dests[i].udp);
	}
	free(p->dests);
	for (i = 0; i < p->n_targets; i++) {
		for (k = 0; k < p->targets[i].n_rules; k++)
			free(p->targets[i].rules[k].sel);
		free(p->targets[i].rules);
	}
	free(p->targets);
	for (i = 0; i < p->n_groups; i++)
		pol_group_clear(&p->groups[i]);
	free(p->groups);
	free(p->tcp);
	free(p->udp);
	free(p->nss);
	free(p);
}

/* --- evaluation: no lock, no allocation ------------------------------------- */

static void
pol_why_clear(struct weft_policy_why *why)
{
	why->target[0] = why->rule[0] = why->reason[0] = '\0';
}

static void __attribute__((format(printf, 3, 4)))
pol_deny(struct pol_deny *d, enum pol_level level, const char *fmt, ...)
{
	va_list ap;

	if (level <= d->level)
		return;
	d->level = level;
	va_start(ap, fmt);
	vsnprintf(d->reason, sizeof(d->reason), fmt, ap);
	va_end(ap);
}

static enum weft_policy_verdict
pol_answer(struct weft_policy_why *why, enum weft_policy_verdict v,
    const struct pol_target *pt, const struct pol_rule *pr,
    const struct pol_match *pm)
{
	static const char *kinds[] = { "?", "HTTPRouteGroup", "TCPRoute",
	    "UDPRoute" };
	const struct weft_smi_target *t = pt->t;
	unsigned kind = pr != NULL && pr->r->kind >= WEFT_SMI_HTTP &&
	    pr->r->kind <= WEFT_SMI_UDP ? pr->r->kind : 0;

	snprintf(why->target, sizeof(why->target), "%s/%s",
	    pol_str(t->namespace), pol_str(t->name));
	if (pr != NULL)
		snprintf(why->rule, sizeof(why->rule), "%s %s/%s%s%s",
		    kinds[kind], pol_str(t->namespace), pol_str(pr->r->name),
		    pm != NULL ? " match " : "",
		    pm != NULL ? pol_str(pm->m->name) : "");
	if (v == WEFT_POLICY_HTTP)
		snprintf(why->reason, sizeof(why->reason), "HTTP rules of "
		    "TrafficTarget %s/%s apply: each request is checked",
		    pol_str(t->namespace), pol_str(t->name));
	return v;
}

static enum weft_policy_verdict
pol_denied(struct weft_policy_why *why, const char *rule, const char *reason)
{
	snprintf(why->rule, sizeof(why->rule), "%s", rule);
	snprintf(why->reason, sizeof(why->reason), "%s", reason);
	return WEFT_POLICY_DENY;
}

static bool
pol_unauthenticated(const struct weft_policy_flow *f)
{
	return f->src_ns == NULL || f->src_sa == NULL;
}

/* Namespace modes and meshed-ness, before any target.  Returns true when
 * they decide the flow (*v and why set). */
static bool
pol_modes(const struct weft_policy *p, const struct weft_policy_flow *f,
    enum weft_policy_verdict *v, struct weft_policy_why *why)
{
	const struct weft_snap_namespace *ns;
	const char *dns = pol_str(f->dst_ns);

	if (f->dst_ns == NULL || f->dst_sa == NULL) {
		*v = pol_denied(why, "", "destination identity unknown");
		return true;
	}
	if ((ns = pol_namespace(p, dns)) == NULL) {
		snprintf(why->reason, sizeof(why->reason), "destination "
		    "namespace %s is unknown", dns);
		*v = WEFT_POLICY_DENY;
		return true;
	}
	if (!ns->meshed) {
		snprintf(why->reason, sizeof(why->reason), "namespace %s is "
		    "not in the mesh: weft enforces no access there", dns);
		*v = WEFT_POLICY_ALLOW;
		return true;
	}
	if (ns->access_mode == WEFT_ACCESS_PERMISSIVE) {
		snprintf(why->rule, sizeof(why->rule), "access-mode=permissive");
		snprintf(why->reason, sizeof(why->reason), "namespace %s is "
		    "permissive", dns);
		*v = WEFT_POLICY_ALLOW;
		return true;
	}
	if (!pol_unauthenticated(f))
		return false;
	if (ns->unauthenticated == WEFT_UNAUTH_ALLOW) {
		snprintf(why->rule, sizeof(why->rule), "unauthenticated=allow");
		snprintf(why->reason, sizeof(why->reason), "namespace %s allows "
		    "unauthenticated callers", dns);
		*v = WEFT_POLICY_ALLOW;
	} else {
		snprintf(why->rule, sizeof(why->rule), "unauthenticated=deny");
		snprintf(why->reason, sizeof(why->reason), "unauthenticated "
		    "caller: namespace %s denies callers without a mesh "
		    "identity", dns);
		*v = WEFT_POLICY_DENY;
	}
	return true;
}

static bool
pol_listed(const struct pol_target *pt, const struct weft_policy_flow *f)
{
	const struct weft_smi_target *t = pt->t;
	size_t i;

	for (i = 0; i < t->n_sources; i++)
		if (t->sources[i].name != NULL &&
		    strcmp(t->sources[i].name, f->src_sa) == 0 &&
		    strcmp(pol_subject_ns(t->sources[i].namespace, t),
		    f->src_ns) == 0)
			return true;
	return false;
}

/* The first rule of kind (TCP or UDP) whose route admits port; NULL with a
 * reason in d otherwise. */
static const struct pol_rule *
pol_l4_find(const struct pol_target *pt, enum weft_smi_rule_kind kind,
    uint16_t port, struct pol_deny *d)
{
	const char *kname = kind == WEFT_SMI_TCP ? "TCPRoute" : "UDPRoute";
	const struct pol_rule *last = NULL;
	size_t i, n = 0;

	for (i = 0; i < pt->n_rules; i++) {
		const struct pol_rule *pr = &pt->rules[i];

		if (pr->r->kind != kind)
			continue;
		if (pr->l4 != NULL && pol_l4_admits(pr->l4, port))
			return pr;
		last = pr;
		n++;
	}
	if (n == 1 && last->l4 == NULL)
		pol_deny(d, POL_L_RULES, "%s %s/%s does not exist", kname,
		    pol_str(pt->t->namespace), pol_str(last->r->name));
	else if (n == 1)
		pol_deny(d, POL_L_RULES, "port %u not in %s %s/%s", port,
		    kname, pol_str(pt->t->namespace), pol_str(last->r->name));
	else
		pol_deny(d, POL_L_RULES, "port %u not in any %s of "
		    "TrafficTarget %s/%s", port, kname,
		    pol_str(pt->t->namespace), pol_str(pt->t->name));
	return NULL;
}

/* What every TCP/UDP decision checks on a target that lists the source
 * before the rules proper: destination.port and A-27.  False with a reason
 * in d when the target cannot admit the flow. */
static bool
pol_target_usable(const struct pol_target *pt,
    const struct weft_policy_flow *f, struct pol_deny *d)
{
	const struct weft_smi_target *t = pt->t;

	if (t->port != 0 && f->dst_port != t->port) {
		pol_deny(d, POL_L_RULES, "port %u is not destination.port %u "
		    "of TrafficTarget %s/%s", f->dst_port, t->port,
		    pol_str(t->namespace), pol_str(t->name));
		return false;
	}
	if (pt->n_rules == 0) {
		pol_deny(d, POL_L_RULES, "TrafficTarget %s/%s has no rules",
		    pol_str(t->namespace), pol_str(t->name));
		return false;
	}
	if (f->proto == IPPROTO_UDP && !(pt->kinds & POL_HAS_UDP)) {
		pol_deny(d, POL_L_RULES, "TrafficTarget %s/%s has no UDPRoute "
		    "rules", pol_str(t->namespace), pol_str(t->name));
		return false;
	}
	if (f->proto == IPPROTO_TCP &&
	    !(pt->kinds & (POL_HAS_TCP | POL_HAS_HTTP))) {
		pol_deny(d, POL_L_RULES, "TrafficTarget %s/%s has no TCPRoute "
		    "or HTTPRouteGroup rules", pol_str(t->namespace),
		    pol_str(t->name));
		return false;
	}
	return true;
}

/* Common start of both checks: modes, then the destination's targets.
 * Returns the destination, or NULL when decided (*v, why set). */
static const struct pol_dest *
pol_begin(const struct weft_policy *p, const struct weft_policy_flow *f,
    enum weft_policy_verdict *v, struct weft_policy_why *why,
    struct pol_deny *d)
{
	const struct pol_dest *dest;

	pol_why_clear(why);
	if (p == NULL) {
		*v = pol_denied(why, "", "no policy");
		return NULL;
	}
	if (pol_modes(p, f, v, why))
		return NULL;
	if (f->proto != IPPROTO_TCP && f->proto != IPPROTO_UDP) {
		snprintf(why->reason, sizeof(why->reason), "protocol %d is "
		    "neither TCP nor UDP", f->proto);
		*v = WEFT_POLICY_DENY;
		return NULL;
	}
	if ((dest = pol_dest_find(p, f->dst_ns, f->dst_sa)) == NULL) {
		snprintf(why->reason, sizeof(why->reason), "no TrafficTarget "
		    "selects %s/%s", f->dst_ns, f->dst_sa);
		*v = WEFT_POLICY_DENY;
		return NULL;
	}
	d->level = POL_L_SOURCE;
	snprintf(d->reason, sizeof(d->reason), "source %s/%s is not a source "
	    "of any TrafficTarget for %s/%s", f->src_ns, f->src_sa, f->dst_ns,
	    f->dst_sa);
	return dest;
}

enum weft_policy_verdict
weft_policy_check_conn(const struct weft_policy *p,
    const struct weft_policy_flow *f, struct weft_policy_why *why)
{
	struct weft_policy_why scratch;
	struct pol_deny d;
	const struct pol_dest *dest;
	const struct pol_target *http_t = NULL;
	const struct pol_rule *pr, *http_r = NULL;
	enum weft_policy_verdict v;
	size_t i, k;

	if (why == NULL)
		why = &scratch;
	if ((dest = pol_begin(p, f, &v, why, &d)) == NULL)
		return v;
	for (i = 0; i < dest->n_targets; i++) {
		const struct pol_target *pt = dest->targets[i];

		if (!pol_listed(pt, f) || !pol_target_usable(pt, f, &d))
			continue;
		if (f->proto == IPPROTO_UDP) {
			if ((pr = pol_l4_find(pt, WEFT_SMI_UDP, f->dst_port,
			    &d)) != NULL)
				return pol_answer(why, WEFT_POLICY_ALLOW, pt,
				    pr, NULL);
			continue;
		}
		if (pt->kinds & POL_HAS_TCP) {
			if ((pr = pol_l4_find(pt, WEFT_SMI_TCP, f->dst_port,
			    &d)) == NULL)
				continue;
			if (!(pt->kinds & POL_HAS_HTTP))
				return pol_answer(why, WEFT_POLICY_ALLOW, pt,
				    pr, NULL);
		}
		/* HTTP rules (with the port admitted, if TCPRoutes too):
		 * remember the first; an L4 grant of a later target wins */
		if (http_t == NULL) {
			http_t = pt;
			for (k = 0; k < pt->n_rules; k++)
				if (pt->rules[k].r->kind == WEFT_SMI_HTTP) {
					http_r = &pt->rules[k];
					break;
				}
		}
	}
	if (http_t != NULL)
		return pol_answer(why, WEFT_POLICY_HTTP, http_t, http_r, NULL);
	snprintf(why->reason, sizeof(why->reason), "%s", d.reason);
	return WEFT_POLICY_DENY;
}

static bool
pol_match_request(const struct pol_match *pm, const struct weft_policy_http
    *req, const char *path, size_t path_len)
{
	const struct weft_smi_http_match *m = pm->m;
	size_t i, j;

	if (!pm->any_method) {
		for (i = 0; i < m->n_methods; i++)
			if (m->methods[i] != NULL &&
			    strlen(m->methods[i]) == req->method_len &&
			    memcmp(m->methods[i], req->method,
			    req->method_len) == 0)
				break;
		if (i == m->n_methods)
			return false;
	}
	if (pm->path != NULL && weft_re_match(pm->path, path, path_len) != 1)
		return false;
	for (i = 0; i < pm->n_hdrs; i++) {
		const struct pol_hdr *h = &pm->hdrs[i];

		if (h->name == NULL)
			return false;
		for (j = 0; j < req->n_headers; j++) {
			const struct weft_http_header *rh = &req->headers[j];

			if (rh->name_len != h->name_len ||
			    strncasecmp(rh->name, h->name, h->name_len) != 0)
				continue;
			if (h->value == NULL || weft_re_match(h->value,
			    rh->value != NULL ? rh->value : "",
			    rh->value != NULL ? rh->value_len : 0) == 1)
				break;
		}
		if (j == req->n_headers)
			return false;
	}
	return true;
}

/* Printable copy of at most len bytes of s for a reason. */
static void
pol_printable(char *dst, size_t dstlen, const char *s, size_t len)
{
	size_t i, n = len < dstlen - 1 ? len : dstlen - 1;

	for (i = 0; i < n; i++)
		dst[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
	dst[n] = '\0';
}

enum weft_policy_verdict
weft_policy_check_http(const struct weft_policy *p,
    const struct weft_policy_flow *f, const struct weft_policy_http *req,
    struct weft_policy_why *why)
{
	struct weft_policy_why scratch;
	struct pol_deny d;
	const struct pol_dest *dest;
	const struct pol_rule *pr;
	enum weft_policy_verdict v;
	const char *path, *q;
	char mbuf[24], pbuf[80];
	size_t i, k, s, path_len;

	if (why == NULL)
		why = &scratch;
	if ((dest = pol_begin(p, f, &v, why, &d)) == NULL)
		return v;
	if (f->proto != IPPROTO_TCP || req == NULL)
		return pol_denied(why, "", "not an HTTP request over TCP");
	/* The caller strips the query; make sure. */
	path = req->path != NULL ? req->path : "";
	path_len = req->path != NULL ? req->path_len : 0;
	if ((q = memchr(path, '?', path_len)) != NULL)
		path_len = (size_t)(q - path);
	for (i = 0; i < dest->n_targets; i++) {
		const struct pol_target *pt = dest->targets[i];
		size_t tried = 0;

		if (!pol_listed(pt, f) || !pol_target_usable(pt, f, &d))
			continue;
		if (pt->kinds & POL_HAS_TCP) {
			if ((pr = pol_l4_find(pt, WEFT_SMI_TCP, f->dst_port,
			    &d)) == NULL)
				continue;
			/* a TCPRoute-only target admits the whole
			 * connection, HTTP or not */
			if (!(pt->kinds & POL_HAS_HTTP))
				return pol_answer(why, WEFT_POLICY_ALLOW, pt,
				    pr, NULL);
		}
		for (k = 0; k < pt->n_rules; k++) {
			pr = &pt->rules[k];
			if (pr->r->kind != WEFT_SMI_HTTP)
				continue;
			if (pr->grp == NULL) {
				pol_deny(&d, POL_L_RULES, "HTTPRouteGroup %s/%s "
				    "does not exist", pol_str(pt->t->namespace),
				    pol_str(pr->r->name));
				continue;
			}
			if (pr->n_sel == 0) {
				pol_deny(&d, POL_L_RULES, "TrafficTarget %s/%s "
				    "selects no match of HTTPRouteGroup %s/%s",
				    pol_str(pt->t->namespace),
				    pol_str(pt->t->name),
				    pol_str(pt->t->namespace),
				    pol_str(pr->r->name));
				continue;
			}
			for (s = 0; s < pr->n_sel; s++, tried++)
				if (pol_match_request(pr->sel[s], req, path,
				    path_len))
					return pol_answer(why,
					    WEFT_POLICY_ALLOW, pt, pr,
					    pr->sel[s]);
		}
		if (tried > 0) {
			pol_printable(mbuf, sizeof(mbuf), req->method != NULL ?
			    req->method : "", req->method != NULL ?
			    req->method_len : 0);
			pol_printable(pbuf, sizeof(pbuf), path, path_len);
			pol_deny(&d, POL_L_REQUEST, "no HTTPRouteGroup match "
			    "admits %s %s%s", mbuf, pbuf,
			    path_len >= sizeof(pbuf) ? "..." : "");
		}
	}
	snprintf(why->reason, sizeof(why->reason), "%s", d.reason);
	return WEFT_POLICY_DENY;
}

bool
weft_policy_match_groups(const struct weft_policy *p, const char *ns,
    char *const *groups, size_t n, const struct weft_policy_http *req)
{
	const struct pol_group *pg;
	const char *path, *q;
	size_t i, k, path_len;

	if (p == NULL || ns == NULL || req == NULL || p->n_groups == 0)
		return false;
	path = req->path != NULL ? req->path : "";
	path_len = req->path != NULL ? req->path_len : 0;
	if ((q = memchr(path, '?', path_len)) != NULL)
		path_len = (size_t)(q - path);
	for (i = 0; i < n; i++) {
		struct pol_key key = { ns, groups[i] };

		if (groups[i] == NULL || (pg = bsearch(&key, p->groups,
		    p->n_groups, sizeof(*p->groups),
		    pol_group_key_cmp)) == NULL || pg->matches == NULL)
			continue;
		for (k = 0; k < pg->g->n_matches; k++)
			if (pol_match_request(&pg->matches[k], req, path,
			    path_len))
				return true;
	}
	return false;
}

void
weft_policy_udp_grants(const struct weft_policy *p, const char *dst_ns,
    const char *dst_sa, weft_policy_udp_fn fn, void *arg)
{
	const struct weft_snap_namespace *ns;
	const struct pol_dest *dest;
	size_t i;

	if (p == NULL || dst_ns == NULL || dst_sa == NULL ||
	    (ns = pol_namespace(p, dst_ns)) == NULL)
		return;
	/* the same answers as check_conn gives before looking at targets */
	if (!ns->meshed || ns->access_mode == WEFT_ACCESS_PERMISSIVE ||
	    ns->unauthenticated == WEFT_UNAUTH_ALLOW) {
		fn(NULL, NULL, 0, 65535, arg);
		return;
	}
	if ((dest = pol_dest_find(p, dst_ns, dst_sa)) == NULL)
		return;
	for (i = 0; i < dest->n_udp; i++)
		fn(dest->udp[i].src_ns, dest->udp[i].src_sa, dest->udp[i].lo,
		    dest->udp[i].hi, arg);
}
