/* The SMI TrafficMetrics API (weft/smimetrics.h): a store of the edge deltas
 * the nodes push, and the answers computed from it on request.
 *
 * Why push, not pull: the nodes already hold an authenticated TLS channel
 * to the controller (bearer token, controller certificate checked), so the
 * metrics travel where the snapshots do, with no new listener on the nodes
 * to expose or to authenticate, and no need for the controller to reach
 * each node's address.  A query is then answered from memory, immediately,
 * whatever state the nodes are in; a node that is down only lacks its last
 * few seconds.  The cost is a small POST per node every few seconds, and
 * only edges that moved are in it. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "weft/manifest.h"
#include "weft/metrics.h"
#include "weft/smimetrics.h"

#define SMIM_TAB_MIN	64
#define SMIM_GROUP	"metrics.smi-spec.io"
#define SMIM_VERSION	"v1alpha1"
#define SMIM_GV		SMIM_GROUP "/" SMIM_VERSION

enum smim_str {
	SS_SRC_NS = 0, SS_SRC_SA, SS_SRC_POD, SS_DST_NS, SS_DST_SA,
	SS_DST_POD, SS_SERVICE, SS_APEX, SS_N
};

struct smim_lat {
	uint32_t	 b;
	uint64_t	 c;
};

struct smim_sample {
	int64_t		 t;			/* arrival, monotonic s */
	uint64_t	 success, failure;
	struct smim_lat	*lat;			/* owned, sorted by b */
	size_t		 nlat;
};

struct smim_edge {
	struct smim_edge *next;			/* hash chain */
	uint64_t	 hash;
	int		 server;		/* measured at the server */
	char		*str[SS_N];		/* into the same allocation */
	struct smim_sample *samples;		/* owned, oldest first */
	size_t		 n, cap;
	int64_t		 last;
};

struct weft_smim {
	struct smim_edge **tab;			/* owned */
	size_t		 tabsize, n;
};

/* --- small helpers -------------------------------------------------------- */

int
weft_smim_parse_duration(const char *s, int *out)
{
	double total = 0, v;
	const char *p = s;
	char *end;

	if (s == NULL || *s == '\0')
		return -1;
	while (*p != '\0') {
		if ((*p < '0' || *p > '9') && *p != '.')
			return -1;
		errno = 0;
		v = strtod(p, &end);
		if (errno != 0 || end == p)
			return -1;
		p = end;
		if (strncmp(p, "ms", 2) == 0) {
			v /= 1000;
			p += 2;
		} else if (*p == 'h') {
			v *= 3600;
			p++;
		} else if (*p == 'm') {
			v *= 60;
			p++;
		} else if (*p == 's')
			p++;
		else
			return -1;
		total += v;
	}
	if (total < 1 || total > 1e7)
		return -1;
	*out = (int)llround(total);
	return 0;
}

void
weft_smim_format_duration(int secs, char *buf, size_t len)
{
	if (secs < 60)
		snprintf(buf, len, "%ds", secs);
	else if (secs < 3600)
		snprintf(buf, len, "%dm%ds", secs / 60, secs % 60);
	else
		snprintf(buf, len, "%dh%dm%ds", secs / 3600, secs % 3600 / 60,
		    secs % 60);
}

void
weft_smim_quantity(double v, char *buf, size_t len)
{
	long long milli;

	if (!(v > 0))
		v = 0;
	milli = llround(v * 1000);
	if (milli % 1000 == 0)
		snprintf(buf, len, "%lld", milli / 1000);
	else
		snprintf(buf, len, "%lldm", milli);
}

static void
smim_rfc3339(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static uint64_t
smim_hash(int server, const char *const *str)
{
	uint64_t h = 1469598103934665603ULL;
	const unsigned char *p;
	size_t i;

	h = (h ^ (uint64_t)server) * 1099511628211ULL;
	for (i = 0; i < SS_N; i++) {
		for (p = (const unsigned char *)str[i]; *p; p++)
			h = (h ^ *p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;
	}
	return h;
}

/* --- the store ------------------------------------------------------------ */

struct weft_smim *
weft_smim_new(void)
{
	struct weft_smim *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((s->tab = calloc(SMIM_TAB_MIN, sizeof(*s->tab))) == NULL) {
		free(s);
		return NULL;
	}
	s->tabsize = SMIM_TAB_MIN;
	return s;
}

static void
smim_edge_free(struct smim_edge *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->samples[i].lat);
	free(e->samples);
	free(e);
}

void
weft_smim_free(struct weft_smim *s)
{
	struct smim_edge *e, *next;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->tabsize; i++)
		for (e = s->tab[i]; e != NULL; e = next) {
			next = e->next;
			smim_edge_free(e);
		}
	free(s->tab);
	free(s);
}

size_t
weft_smim_nedges(const struct weft_smim *s)
{
	return s->n;
}

static struct smim_edge *
smim_edge_get(struct weft_smim *s, int server, const char *const *str)
{
	struct smim_edge *e, **nt, *next;
	uint64_t h = smim_hash(server, str);
	size_t i, len[SS_N], total = 0;
	char *p;

	for (e = s->tab[h & (s->tabsize - 1)]; e != NULL; e = e->next) {
		if (e->hash != h || e->server != server)
			continue;
		for (i = 0; i < SS_N; i++)
			if (strcmp(e->str[i], str[i]) != 0)
				break;
		if (i == SS_N)
			return e;
	}
	for (i = 0; i < SS_N; i++)
		total += (len[i] = strlen(str[i]) + 1);
	if ((e = calloc(1, sizeof(*e) + total)) == NULL)
		return NULL;
	p = (char *)(e + 1);
	for (i = 0; i < SS_N; i++) {
		memcpy(p, str[i], len[i]);
		e->str[i] = p;
		p += len[i];
	}
	e->hash = h;
	e->server = server;
	if (s->n >= s->tabsize * 2 &&
	    (nt = calloc(s->tabsize * 2, sizeof(*nt))) != NULL) {
		for (i = 0; i < s->tabsize; i++)
			for (struct smim_edge *x = s->tab[i]; x != NULL;
			    x = next) {
				next = x->next;
				x->next = nt[x->hash & (s->tabsize * 2 - 1)];
				nt[x->hash & (s->tabsize * 2 - 1)] = x;
			}
		free(s->tab);
		s->tab = nt;
		s->tabsize *= 2;
	}
	e->next = s->tab[h & (s->tabsize - 1)];
	s->tab[h & (s->tabsize - 1)] = e;
	s->n++;
	return e;
}

/* Add counts to the edge's newest sample if it arrived in the same second,
 * else append one. */
static int
smim_edge_add(struct smim_edge *e, int64_t now, uint64_t success,
    uint64_t failure, const uint64_t *lat)
{
	struct smim_sample *sm;
	struct smim_lat *nl;
	size_t i, n = 0, k;

	if (e->n > 0 && e->samples[e->n - 1].t == now)
		sm = &e->samples[e->n - 1];
	else {
		if (e->n == e->cap) {
			size_t cap = e->cap ? e->cap * 2 : 8;
			struct smim_sample *ns;

			if ((ns = realloc(e->samples, cap * sizeof(*ns))) == NULL)
				return -1;
			e->samples = ns;
			e->cap = cap;
		}
		sm = &e->samples[e->n++];
		memset(sm, 0, sizeof(*sm));
		sm->t = now;
	}
	sm->success += success;
	sm->failure += failure;
	/* merge lat (dense) into the sparse list */
	for (i = 0; i < WEFT_LAT_NBUCKETS; i++)
		if (lat[i] != 0)
			n++;
	if (n > 0) {
		uint64_t dense[WEFT_LAT_NBUCKETS];

		memcpy(dense, lat, sizeof(dense));
		for (k = 0; k < sm->nlat; k++)
			dense[sm->lat[k].b] += sm->lat[k].c;
		for (i = n = 0; i < WEFT_LAT_NBUCKETS; i++)
			if (dense[i] != 0)
				n++;
		if ((nl = calloc(n, sizeof(*nl))) == NULL)
			return -1;
		for (i = k = 0; i < WEFT_LAT_NBUCKETS; i++)
			if (dense[i] != 0) {
				nl[k].b = (uint32_t)i;
				nl[k++].c = dense[i];
			}
		free(sm->lat);
		sm->lat = nl;
		sm->nlat = n;
	}
	e->last = now;
	return 0;
}

static const char *
smim_jstr(struct json_object *o, const char *k, bool *bad)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || v == NULL)
		return "";
	if (!json_object_is_type(v, json_type_string)) {
		*bad = true;
		return "";
	}
	return json_object_get_string(v);
}

static uint64_t
smim_juint(struct json_object *o, const char *k, bool *bad)
{
	struct json_object *v;
	int64_t n;

	if (!json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_int) ||
	    (n = json_object_get_int64(v)) < 0) {
		*bad = true;
		return 0;
	}
	return (uint64_t)n;
}

/* One edge of a push into str/side/counts/lat; false when malformed. */
static bool
smim_parse_edge(struct json_object *e, const char **str, int *server,
    uint64_t *succ, uint64_t *fail, uint64_t *lat)
{
	struct json_object *src, *dst, *l, *pair;
	const char *side;
	bool bad = false;
	size_t i;

	if (!json_object_is_type(e, json_type_object) ||
	    !json_object_object_get_ex(e, "src", &src) ||
	    !json_object_is_type(src, json_type_object) ||
	    !json_object_object_get_ex(e, "dst", &dst) ||
	    !json_object_is_type(dst, json_type_object))
		return false;
	side = smim_jstr(e, "side", &bad);
	if (strcmp(side, "client") == 0)
		*server = 0;
	else if (strcmp(side, "server") == 0)
		*server = 1;
	else
		return false;
	str[SS_SRC_NS] = smim_jstr(src, "namespace", &bad);
	str[SS_SRC_SA] = smim_jstr(src, "serviceAccount", &bad);
	str[SS_SRC_POD] = smim_jstr(src, "pod", &bad);
	str[SS_DST_NS] = smim_jstr(dst, "namespace", &bad);
	str[SS_DST_SA] = smim_jstr(dst, "serviceAccount", &bad);
	str[SS_DST_POD] = smim_jstr(dst, "pod", &bad);
	str[SS_SERVICE] = smim_jstr(e, "service", &bad);
	str[SS_APEX] = smim_jstr(e, "apex", &bad);
	*succ = smim_juint(e, "success", &bad);
	*fail = smim_juint(e, "failure", &bad);
	memset(lat, 0, WEFT_LAT_NBUCKETS * sizeof(*lat));
	if (json_object_object_get_ex(e, "latency", &l)) {
		if (!json_object_is_type(l, json_type_array))
			return false;
		for (i = 0; i < json_object_array_length(l); i++) {
			int64_t b, c;

			pair = json_object_array_get_idx(l, i);
			if (!json_object_is_type(pair, json_type_array) ||
			    json_object_array_length(pair) != 2)
				return false;
			b = json_object_get_int64(json_object_array_get_idx(pair,
			    0));
			c = json_object_get_int64(json_object_array_get_idx(pair,
			    1));
			if (b < 0 || b >= WEFT_LAT_NBUCKETS || c < 0)
				return false;
			lat[b] += (uint64_t)c;
		}
	}
	return !bad;
}

int
weft_smim_ingest(struct weft_smim *s, const char *json, size_t len,
    int64_t now, char **err)
{
	struct json_tokener *tok;
	struct json_object *root = NULL, *edges, *e;
	const char *str[SS_N];
	uint64_t succ, fail, lat[WEFT_LAT_NBUCKETS];
	struct smim_edge *se;
	size_t i, n;
	int server, taken = 0;

	*err = NULL;
	if ((tok = json_tokener_new()) == NULL)
		goto oom;
	root = json_tokener_parse_ex(tok, json, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success)
		root = NULL;
	json_tokener_free(tok);
	if (root == NULL || !json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "edges", &edges) ||
	    !json_object_is_type(edges, json_type_array)) {
		json_object_put(root);
		*err = strdup("expected {\"node\":..., \"edges\":[...]}");
		return -1;
	}
	n = json_object_array_length(edges);
	/* Check everything first: a bad push is taken not at all. */
	for (i = 0; i < n; i++) {
		if (!smim_parse_edge(json_object_array_get_idx(edges, i), str,
		    &server, &succ, &fail, lat)) {
			json_object_put(root);
			if (asprintf(err, "edges[%zu]: malformed edge", i) == -1)
				*err = NULL;
			return -1;
		}
	}
	for (i = 0; i < n; i++) {
		e = json_object_array_get_idx(edges, i);
		(void)smim_parse_edge(e, str, &server, &succ, &fail, lat);
		if ((se = smim_edge_get(s, server, str)) == NULL ||
		    smim_edge_add(se, now, succ, fail, lat) == -1) {
			json_object_put(root);
			goto oom;
		}
		taken++;
	}
	json_object_put(root);
	return taken;
oom:
	*err = strdup("out of memory");
	return -1;
}

void
weft_smim_prune(struct weft_smim *s, int64_t now)
{
	struct smim_edge *e, **pp;
	size_t i, k, drop;

	for (i = 0; i < s->tabsize; i++) {
		for (pp = &s->tab[i]; (e = *pp) != NULL; ) {
			if (now - e->last > WEFT_SMIM_HISTORY) {
				*pp = e->next;
				smim_edge_free(e);
				s->n--;
				continue;
			}
			for (drop = 0; drop < e->n &&
			    now - e->samples[drop].t > WEFT_SMIM_HISTORY; drop++)
				free(e->samples[drop].lat);
			if (drop > 0) {
				for (k = drop; k < e->n; k++)
					e->samples[k - drop] = e->samples[k];
				e->n -= drop;
			}
			pp = &e->next;
		}
	}
}

/* --- windows -------------------------------------------------------------- */

struct smim_agg {
	const struct smim_edge *e;
	uint64_t	 success, failure;
	struct weft_lat_hist h;
};

/* Every edge with a delta in (now - window, now], summed. */
static int
smim_window(struct weft_smim *s, int window, int64_t now,
    struct smim_agg **out, size_t *nout)
{
	struct smim_agg *v = NULL, *a;
	struct smim_edge *e;
	size_t i, k, l, n = 0, cap = 0;

	*out = NULL;
	*nout = 0;
	for (i = 0; i < s->tabsize; i++) {
		for (e = s->tab[i]; e != NULL; e = e->next) {
			a = NULL;
			for (k = e->n; k > 0; k--) {
				const struct smim_sample *sm = &e->samples[k - 1];

				if (now - sm->t >= window)
					break;
				if (a == NULL) {
					if (n == cap) {
						struct smim_agg *nv;

						cap = cap ? cap * 2 : 32;
						if ((nv = realloc(v, cap *
						    sizeof(*nv))) == NULL) {
							free(v);
							return -1;
						}
						v = nv;
					}
					a = &v[n++];
					memset(a, 0, sizeof(*a));
					a->e = e;
				}
				a->success += sm->success;
				a->failure += sm->failure;
				for (l = 0; l < sm->nlat; l++)
					a->h.lh_count[sm->lat[l].b] += sm->lat[l].c;
			}
		}
	}
	*out = v;
	*nout = n;
	return 0;
}

struct smim_acc {
	uint64_t	 success, failure;
	struct weft_lat_hist h;
};

static void
smim_acc_add(struct smim_acc *t, const struct smim_agg *a)
{
	size_t i;

	t->success += a->success;
	t->failure += a->failure;
	for (i = 0; i < WEFT_LAT_NBUCKETS; i++)
		t->h.lh_count[i] += a->h.lh_count[i];
}

/* --- resources ------------------------------------------------------------ */

enum smim_kind { K_NAMESPACE, K_POD, K_DEPLOYMENT, K_TRAFFICSPLIT };

static const struct {
	const char	*plural;
	const char	*kind;
	bool		 namespaced;
} smim_kinds[] = {
	[K_NAMESPACE] = { "namespaces", "Namespace", false },
	[K_POD] = { "pods", "Pod", true },
	[K_DEPLOYMENT] = { "deployments", "Deployment", true },
	[K_TRAFFICSPLIT] = { "trafficsplits", "TrafficSplit", true },
};

/* A resource: kind, namespace ("" for namespaces), name. */
struct smim_res {
	const char	*ns;
	const char	*name;
};

struct smim_q {
	struct weft_smim *s;
	const struct weft_model *m;
	int64_t		 now;
	int		 window;
	char		 window_str[24];
	char		 stamp[32];
	struct smim_agg	*aggs;
	size_t		 naggs;
};

static const struct weft_snap_pod *
smim_pod(const struct weft_model *m, const char *ns, const char *name)
{
	size_t lo = 0, hi, mid;
	int c;

	if (m == NULL)
		return NULL;
	hi = m->all.n_pods;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		c = strcmp(m->all.pods[mid].namespace, ns);
		if (c == 0)
			c = strcmp(m->all.pods[mid].name, name);
		if (c == 0)
			return &m->all.pods[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	/* not sorted as expected: look at every pod */
	for (mid = 0; mid < m->all.n_pods; mid++)
		if (strcmp(m->all.pods[mid].namespace, ns) == 0 &&
		    strcmp(m->all.pods[mid].name, name) == 0)
			return &m->all.pods[mid];
	return NULL;
}

static const char *
smim_label(const struct weft_labels *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->items[i].key, key) == 0)
			return l->items[i].value;
	return NULL;
}

/* The Deployment of a pod: a Deployment object (apps/v1) in its namespace
 * whose spec.selector.matchLabels the pod's labels satisfy, else its
 * app.kubernetes.io/name or app label.  NULL if none. */
static const char *
smim_pod_deployment(const struct weft_model *m, const struct weft_snap_pod *p)
{
	struct json_object *spec, *sel, *ml;
	const char *v;
	size_t i;

	for (i = 0; m != NULL && i < m->n_others; i++) {
		const struct weft_model_other *o = &m->others[i];
		bool match = true, any = false;

		if (o->kind == NULL || strcmp(o->kind, "Deployment") != 0 ||
		    o->name == NULL || o->namespace == NULL ||
		    strcmp(o->namespace, p->namespace) != 0 ||
		    !json_object_object_get_ex(o->obj, "spec", &spec) ||
		    !json_object_object_get_ex(spec, "selector", &sel) ||
		    !json_object_object_get_ex(sel, "matchLabels", &ml) ||
		    !json_object_is_type(ml, json_type_object))
			continue;
		json_object_object_foreach(ml, key, val) {
			any = true;
			if ((v = smim_label(&p->labels, key)) == NULL ||
			    !json_object_is_type(val, json_type_string) ||
			    strcmp(v, json_object_get_string(val)) != 0)
				match = false;
		}
		if (any && match)
			return o->name;
	}
	if ((v = smim_label(&p->labels, "app.kubernetes.io/name")) != NULL ||
	    (v = smim_label(&p->labels, "app")) != NULL)
		return v;
	return NULL;
}

/* The resource of kind k that the pod (ns, pod) of an edge belongs to. */
static bool
smim_res_of(const struct smim_q *q, enum smim_kind k, const char *ns,
    const char *pod, struct smim_res *r)
{
	const struct weft_snap_pod *p;

	r->ns = "";
	r->name = NULL;
	switch (k) {
	case K_NAMESPACE:
		r->name = ns;
		break;
	case K_POD:
		r->ns = ns;
		r->name = pod;
		break;
	case K_DEPLOYMENT:
		if (*ns == '\0' || *pod == '\0' ||
		    (p = smim_pod(q->m, ns, pod)) == NULL)
			return false;
		r->ns = ns;
		r->name = smim_pod_deployment(q->m, p);
		break;
	case K_TRAFFICSPLIT:
		return false;
	}
	return r->name != NULL && *r->name != '\0' &&
	    (!smim_kinds[k].namespaced || *r->ns != '\0');
}

static bool
smim_res_eq(const struct smim_res *a, const struct smim_res *b)
{
	return strcmp(a->ns, b->ns) == 0 && strcmp(a->name, b->name) == 0;
}

/* --- JSON ----------------------------------------------------------------- */

static struct json_object *
smim_ref(enum smim_kind k, const struct smim_res *r)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "kind",
	    json_object_new_string(smim_kinds[k].kind));
	if (smim_kinds[k].namespaced)
		json_object_object_add(o, "namespace",
		    json_object_new_string(r->ns));
	json_object_object_add(o, "name", json_object_new_string(r->name));
	return o;
}

static void
smim_metric(struct json_object *arr, const char *name, const char *unit,
    const char *value)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", json_object_new_string(name));
	if (unit != NULL)
		json_object_object_add(o, "unit", json_object_new_string(unit));
	json_object_object_add(o, "value", json_object_new_string(value));
	json_object_array_add(arr, o);
}

static struct json_object *
smim_metrics(const struct smim_acc *a)
{
	struct json_object *arr = json_object_new_array();
	static const struct { const char *name; double q; } pct[] = {
		{ "p99_response_latency", 0.99 },
		{ "p90_response_latency", 0.90 },
		{ "p50_response_latency", 0.50 },
	};
	char buf[48];
	double v;
	size_t i;

	for (i = 0; i < sizeof(pct) / sizeof(pct[0]); i++) {
		if ((v = weft_lat_quantile(&a->h, pct[i].q)) < 0)
			continue;
		weft_smim_quantity(v * 1000, buf, sizeof(buf));
		smim_metric(arr, pct[i].name, "ms", buf);
	}
	snprintf(buf, sizeof(buf), "%" PRIu64, a->success);
	smim_metric(arr, "success_count", NULL, buf);
	snprintf(buf, sizeof(buf), "%" PRIu64, a->failure);
	smim_metric(arr, "failure_count", NULL, buf);
	return arr;
}

static void
smim_selflink(char *buf, size_t len, enum smim_kind k, const struct smim_res *r,
    bool edges)
{
	if (smim_kinds[k].namespaced)
		snprintf(buf, len, WEFT_SMIM_PREFIX "/namespaces/%s/%s/%s%s",
		    r->ns, smim_kinds[k].plural, r->name, edges ? "/edges" : "");
	else
		snprintf(buf, len, WEFT_SMIM_PREFIX "/%s/%s%s",
		    smim_kinds[k].plural, r->name, edges ? "/edges" : "");
}

/* One TrafficMetrics.  edge: NULL, or the edge object (taken). */
static struct json_object *
smim_tm(const struct smim_q *q, enum smim_kind k, const struct smim_res *r,
    const char *selflink, struct json_object *edge, const struct smim_acc *a)
{
	struct json_object *o = json_object_new_object(), *md;

	json_object_object_add(o, "kind", json_object_new_string(
	    "TrafficMetrics"));
	json_object_object_add(o, "apiVersion", json_object_new_string(
	    SMIM_GV));
	md = json_object_new_object();
	json_object_object_add(md, "name", json_object_new_string(r->name));
	if (smim_kinds[k].namespaced)
		json_object_object_add(md, "namespace",
		    json_object_new_string(r->ns));
	json_object_object_add(md, "selfLink", json_object_new_string(
	    selflink));
	json_object_object_add(md, "creationTimestamp",
	    json_object_new_string(q->stamp));
	json_object_object_add(o, "metadata", md);
	json_object_object_add(o, "timestamp", json_object_new_string(
	    q->stamp));
	json_object_object_add(o, "window", json_object_new_string(
	    q->window_str));
	json_object_object_add(o, "resource", smim_ref(k, r));
	json_object_object_add(o, "edge", edge);
	json_object_object_add(o, "metrics", smim_metrics(a));
	return o;
}

static struct json_object *
smim_list(const char *selflink, struct json_object *resource)
{
	struct json_object *o = json_object_new_object(), *md;

	json_object_object_add(o, "kind", json_object_new_string(
	    "TrafficMetricsList"));
	json_object_object_add(o, "apiVersion", json_object_new_string(
	    SMIM_GV));
	md = json_object_new_object();
	json_object_object_add(md, "selfLink", json_object_new_string(
	    selflink));
	json_object_object_add(o, "metadata", md);
	json_object_object_add(o, "resource", resource);
	json_object_object_add(o, "items", json_object_new_array());
	return o;
}

static void
smim_list_add(struct json_object *list, struct json_object *item)
{
	struct json_object *items;

	json_object_object_get_ex(list, "items", &items);
	json_object_array_add(items, item);
}

/* The requests resource r served in the window (server side). */
static void
smim_served(const struct smim_q *q, enum smim_kind k, const struct smim_res *r,
    struct smim_acc *acc)
{
	struct smim_res d;
	size_t i;

	memset(acc, 0, sizeof(*acc));
	for (i = 0; i < q->naggs; i++) {
		const struct smim_edge *e = q->aggs[i].e;

		if (e->server && smim_res_of(q, k, e->str[SS_DST_NS],
		    e->str[SS_DST_POD], &d) && smim_res_eq(&d, r))
			smim_acc_add(acc, &q->aggs[i]);
	}
}

struct smim_peer {
	int		 to;			/* 1: "to" (client side) */
	struct smim_res	 r;
	struct smim_acc	 acc;
};

static int
smim_peer_cmp(const void *a, const void *b)
{
	const struct smim_peer *x = a, *y = b;
	int c;

	if (x->to != y->to)
		return x->to < y->to ? -1 : 1;
	if ((c = strcmp(x->r.ns, y->r.ns)) != 0)
		return c;
	return strcmp(x->r.name, y->r.name);
}

static struct json_object *
smim_edges(const struct smim_q *q, enum smim_kind k, const struct smim_res *r)
{
	struct smim_peer *peers = NULL, *p;
	struct json_object *list, *edge;
	struct smim_res self, other;
	char link[1024];
	size_t i, j, n = 0, cap = 0;
	int to;

	smim_selflink(link, sizeof(link), k, r, true);
	list = smim_list(link, smim_ref(k, r));
	for (i = 0; i < q->naggs; i++) {
		const struct smim_edge *e = q->aggs[i].e;

		/* to: r called other (client side); from: other called r
		 * (server side) */
		to = !e->server;
		if (!smim_res_of(q, k, e->str[to ? SS_SRC_NS : SS_DST_NS],
		    e->str[to ? SS_SRC_POD : SS_DST_POD], &self) ||
		    !smim_res_eq(&self, r) ||
		    !smim_res_of(q, k, e->str[to ? SS_DST_NS : SS_SRC_NS],
		    e->str[to ? SS_DST_POD : SS_SRC_POD], &other))
			continue;
		for (j = 0; j < n; j++)
			if (peers[j].to == to && smim_res_eq(&peers[j].r, &other))
				break;
		if (j == n) {
			if (n == cap) {
				cap = cap ? cap * 2 : 8;
				if ((p = realloc(peers, cap * sizeof(*p))) ==
				    NULL) {
					free(peers);
					json_object_put(list);
					return NULL;
				}
				peers = p;
			}
			memset(&peers[n], 0, sizeof(peers[n]));
			peers[n].to = to;
			peers[n].r = other;
			n++;
		}
		smim_acc_add(&peers[j].acc, &q->aggs[i]);
	}
	if (n > 1)
		qsort(peers, n, sizeof(*peers), smim_peer_cmp);
	for (j = 0; j < n; j++) {
		edge = json_object_new_object();
		json_object_object_add(edge, "direction",
		    json_object_new_string(peers[j].to ? "to" : "from"));
		json_object_object_add(edge, "side",
		    json_object_new_string(peers[j].to ? "client" : "server"));
		json_object_object_add(edge, "resource",
		    smim_ref(k, &peers[j].r));
		smim_list_add(list, smim_tm(q, k, r, link, edge, &peers[j].acc));
	}
	free(peers);
	return list;
}

static struct json_object *
smim_one(const struct smim_q *q, enum smim_kind k, const struct smim_res *r)
{
	struct smim_acc acc;
	char link[1024];

	smim_served(q, k, r, &acc);
	smim_selflink(link, sizeof(link), k, r, false);
	return smim_tm(q, k, r, link, NULL, &acc);
}

/* The resources of kind k (in ns, or all when ns is NULL), sorted, unique:
 * from the model, plus whatever the window's edges name. */
static int
smim_res_cmp(const void *a, const void *b)
{
	const struct smim_res *x = a, *y = b;
	int c;

	if ((c = strcmp(x->ns, y->ns)) != 0)
		return c;
	return strcmp(x->name, y->name);
}

static int
smim_res_push(struct smim_res **v, size_t *n, size_t *cap,
    const struct smim_res *r)
{
	struct smim_res *nv;

	if (*n == *cap) {
		*cap = *cap ? *cap * 2 : 32;
		if ((nv = realloc(*v, *cap * sizeof(*nv))) == NULL)
			return -1;
		*v = nv;
	}
	(*v)[(*n)++] = *r;
	return 0;
}

static int
smim_resources(const struct smim_q *q, enum smim_kind k, const char *ns,
    struct smim_res **out, size_t *nout)
{
	struct smim_res *v = NULL, r;
	size_t n = 0, cap = 0, i, j;
	const struct weft_model *m = q->m;

	for (i = 0; m != NULL && k == K_NAMESPACE &&
	    i < m->all.n_namespaces; i++) {
		r.ns = "";
		r.name = m->all.namespaces[i].name;
		if (smim_res_push(&v, &n, &cap, &r) == -1)
			goto fail;
	}
	for (i = 0; m != NULL && (k == K_POD || k == K_DEPLOYMENT) &&
	    i < m->all.n_pods; i++) {
		const struct weft_snap_pod *p = &m->all.pods[i];

		if (ns != NULL && strcmp(p->namespace, ns) != 0)
			continue;
		if (!smim_res_of(q, k, p->namespace, p->name, &r))
			continue;
		if (smim_res_push(&v, &n, &cap, &r) == -1)
			goto fail;
	}
	for (i = 0; m != NULL && k == K_DEPLOYMENT && i < m->n_others; i++) {
		const struct weft_model_other *o = &m->others[i];

		if (o->kind == NULL || strcmp(o->kind, "Deployment") != 0 ||
		    o->name == NULL || o->namespace == NULL ||
		    (ns != NULL && strcmp(o->namespace, ns) != 0))
			continue;
		r.ns = o->namespace;
		r.name = o->name;
		if (smim_res_push(&v, &n, &cap, &r) == -1)
			goto fail;
	}
	/* pods that left the model but still have traffic in the window */
	for (i = 0; k != K_DEPLOYMENT && i < q->naggs; i++) {
		const struct smim_edge *e = q->aggs[i].e;

		for (j = 0; j < 2; j++) {
			if (!smim_res_of(q, k, e->str[j ? SS_DST_NS : SS_SRC_NS],
			    e->str[j ? SS_DST_POD : SS_SRC_POD], &r))
				continue;
			if (ns != NULL && smim_kinds[k].namespaced &&
			    strcmp(r.ns, ns) != 0)
				continue;
			if (smim_res_push(&v, &n, &cap, &r) == -1)
				goto fail;
		}
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), smim_res_cmp);
	for (i = j = 0; i < n; i++)
		if (j == 0 || smim_res_cmp(&v[j - 1], &v[i]) != 0)
			v[j++] = v[i];
	*out = v;
	*nout = j;
	return 0;
fail:
	free(v);
	return -1;
}

static bool
smim_exists(const struct smim_q *q, enum smim_kind k, const struct smim_res *r)
{
	struct smim_res *v = NULL;
	size_t n, i;
	bool found = false;

	if (smim_resources(q, k, smim_kinds[k].namespaced ? r->ns : NULL, &v,
	    &n) == -1)
		return true;	/* out of memory: answer with zeros */
	for (i = 0; i < n && !found; i++)
		found = smim_res_eq(&v[i], r);
	free(v);
	return found;
}

/* The items of one TrafficSplit: one per backend. */
static void
smim_split_items(const struct smim_q *q, const struct weft_smi_split *sp,
    struct json_object *list)
{
	struct smim_res r = { sp->namespace, sp->name };
	struct json_object *o, *edge, *be;
	struct smim_acc acc;
	char link[1024];
	size_t b, i;

	smim_selflink(link, sizeof(link), K_TRAFFICSPLIT, &r, false);
	for (b = 0; b < sp->n_backends; b++) {
		memset(&acc, 0, sizeof(acc));
		for (i = 0; i < q->naggs; i++) {
			const struct smim_edge *e = q->aggs[i].e;

			if (!e->server &&
			    strcmp(e->str[SS_DST_NS], sp->namespace) == 0 &&
			    strcmp(e->str[SS_APEX], sp->service) == 0 &&
			    strcmp(e->str[SS_SERVICE],
			    sp->backends[b].service) == 0)
				smim_acc_add(&acc, &q->aggs[i]);
		}
		edge = json_object_new_object();
		json_object_object_add(edge, "direction",
		    json_object_new_string("from"));
		json_object_object_add(edge, "side",
		    json_object_new_string("client"));
		json_object_object_add(edge, "resource",
		    json_object_new_object());
		o = smim_tm(q, K_TRAFFICSPLIT, &r, link, edge, &acc);
		be = json_object_new_object();
		json_object_object_add(be, "apex",
		    json_object_new_string(sp->service));
		json_object_object_add(be, "name",
		    json_object_new_string(sp->backends[b].service));
		json_object_object_add(be, "weight",
		    json_object_new_int64((int64_t)sp->backends[b].weight));
		json_object_object_add(o, "backend", be);
		smim_list_add(list, o);
	}
}

static struct json_object *
smim_status(int code, const char *reason, const char *msg)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "kind", json_object_new_string("Status"));
	json_object_object_add(o, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(o, "metadata", json_object_new_object());
	json_object_object_add(o, "status", json_object_new_string("Failure"));
	json_object_object_add(o, "message", json_object_new_string(msg));
	json_object_object_add(o, "reason", json_object_new_string(reason));
	json_object_object_add(o, "code", json_object_new_int(code));
	return o;
}

static struct json_object *
smim_discovery(const char *path)
{
	struct json_object *o = json_object_new_object(), *arr, *r, *verbs, *gv;
	static const struct {
		const char *name;
		bool namespaced;
		bool list;
	} res[] = {
		{ "namespaces", false, true },
		{ "namespaces/edges", false, false },
		{ "pods", true, true },
		{ "pods/edges", true, false },
		{ "deployments", true, true },
		{ "deployments/edges", true, false },
		{ "trafficsplits", true, true },
	};
	size_t i;

	if (strcmp(path, "/apis") == 0 || strcmp(path, "/apis/") == 0 ||
	    strcmp(path, "/apis/" SMIM_GROUP) == 0 ||
	    strcmp(path, "/apis/" SMIM_GROUP "/") == 0) {
		struct json_object *g = json_object_new_object(), *vs;

		gv = json_object_new_object();
		json_object_object_add(gv, "groupVersion",
		    json_object_new_string(SMIM_GV));
		json_object_object_add(gv, "version",
		    json_object_new_string(SMIM_VERSION));
		json_object_object_add(g, "kind", json_object_new_string(
		    "APIGroup"));
		json_object_object_add(g, "apiVersion",
		    json_object_new_string("v1"));
		json_object_object_add(g, "name", json_object_new_string(
		    SMIM_GROUP));
		vs = json_object_new_array();
		json_object_array_add(vs, json_object_get(gv));
		json_object_object_add(g, "versions", vs);
		json_object_object_add(g, "preferredVersion", gv);
		if (strncmp(path, "/apis/" SMIM_GROUP,
		    strlen("/apis/" SMIM_GROUP)) == 0) {
			json_object_put(o);
			return g;
		}
		json_object_object_del(g, "kind");
		json_object_object_del(g, "apiVersion");
		json_object_object_add(o, "kind", json_object_new_string(
		    "APIGroupList"));
		json_object_object_add(o, "apiVersion",
		    json_object_new_string("v1"));
		arr = json_object_new_array();
		json_object_array_add(arr, g);
		json_object_object_add(o, "groups", arr);
		return o;
	}
	json_object_object_add(o, "kind", json_object_new_string(
	    "APIResourceList"));
	json_object_object_add(o, "apiVersion", json_object_new_string("v1"));
	json_object_object_add(o, "groupVersion", json_object_new_string(
	    SMIM_GV));
	arr = json_object_new_array();
	for (i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
		r = json_object_new_object();
		json_object_object_add(r, "name",
		    json_object_new_string(res[i].name));
		json_object_object_add(r, "singularName",
		    json_object_new_string(""));
		json_object_object_add(r, "namespaced",
		    json_object_new_boolean(res[i].namespaced));
		json_object_object_add(r, "kind",
		    json_object_new_string("TrafficMetrics"));
		verbs = json_object_new_array();
		json_object_array_add(verbs, json_object_new_string("get"));
		if (res[i].list)
			json_object_array_add(verbs,
			    json_object_new_string("list"));
		json_object_object_add(r, "verbs", verbs);
		json_object_array_add(arr, r);
	}
	json_object_object_add(o, "resources", arr);
	return o;
}

static int
smim_kind_of(const char *plural, enum smim_kind *k)
{
	size_t i;

	for (i = 0; i < sizeof(smim_kinds) / sizeof(smim_kinds[0]); i++)
		if (strcmp(smim_kinds[i].plural, plural) == 0) {
			*k = (enum smim_kind)i;
			return 0;
		}
	return -1;
}

/* t=<duration> from the query: WEFT_SMIM_WINDOW when absent. */
static int
smim_query_window(const char *query, int *w)
{
	const char *p = query;
	char val[64];
	size_t n;

	*w = WEFT_SMIM_WINDOW;
	while (p != NULL && *p != '\0') {
		n = strcspn(p, "&");
		if (strncmp(p, "t=", 2) == 0) {
			if (n - 2 >= sizeof(val))
				return -1;
			memcpy(val, p + 2, n - 2);
			val[n - 2] = '\0';
			if (weft_smim_parse_duration(val, w) == -1 ||
			    *w > WEFT_SMIM_HISTORY)
				return -1;
		}
		p += n;
		if (*p == '&')
			p++;
	}
	return 0;
}

#define SMIM_MAX_SEGS	6

static struct json_object *
smim_route(struct smim_q *q, char **seg, size_t nseg, int *code)
{
	enum smim_kind k;
	struct smim_res r, *v = NULL;
	struct json_object *list, *ref;
	const char *ns = NULL;
	char msg[512], link[1024];
	size_t i, n, rest = 0;

	*code = 200;
	/* namespaces[/NAME[/edges]] */
	if (nseg >= 1 && strcmp(seg[0], "namespaces") == 0 && (nseg <= 2 ||
	    (nseg == 3 && strcmp(seg[2], "edges") == 0))) {
		k = K_NAMESPACE;
		if (nseg == 1)
			goto list;
		r.ns = "";
		r.name = seg[1];
		goto named;
	}
	if (nseg >= 3 && strcmp(seg[0], "namespaces") == 0) {
		ns = seg[1];
		rest = 2;
	} else
		rest = 0;
	if (nseg - rest < 1 || nseg - rest > 3 ||
	    (nseg - rest == 3 && strcmp(seg[rest + 2], "edges") != 0)) {
		*code = 404;
		return smim_status(404, "NotFound", "no such path");
	}
	if (smim_kind_of(seg[rest], &k) == -1 || k == K_NAMESPACE) {
		snprintf(msg, sizeof(msg), "the server could not find the "
		    "requested resource: %s is not served (namespaces, pods, "
		    "deployments, trafficsplits are)", seg[rest]);
		*code = 404;
		return smim_status(404, "NotFound", msg);
	}
	if (nseg - rest == 1)
		goto list;
	if (ns == NULL) {
		*code = 404;
		return smim_status(404, "NotFound", "a named resource needs "
		    "its namespace: /namespaces/NS/KIND/NAME");
	}
	r.ns = ns;
	r.name = seg[rest + 1];
named:
	if (k == K_TRAFFICSPLIT) {
		for (i = 0; q->m != NULL && i < q->m->all.n_splits; i++) {
			const struct weft_smi_split *sp = &q->m->all.splits[i];

			if (strcmp(sp->namespace, r.ns) != 0 ||
			    strcmp(sp->name, r.name) != 0)
				continue;
			if (nseg - rest == 3) {
				*code = 404;
				return smim_status(404, "NotFound",
				    "trafficsplits have no edges");
			}
			smim_selflink(link, sizeof(link), k, &r, false);
			ref = smim_ref(k, &r);
			list = smim_list(link, ref);
			smim_split_items(q, sp, list);
			return list;
		}
		snprintf(msg, sizeof(msg), "trafficsplits \"%s\" not found",
		    r.name);
		*code = 404;
		return smim_status(404, "NotFound", msg);
	}
	if (!smim_exists(q, k, &r)) {
		snprintf(msg, sizeof(msg), "%s \"%s\" not found",
		    smim_kinds[k].plural, r.name);
		*code = 404;
		return smim_status(404, "NotFound", msg);
	}
	if ((k == K_NAMESPACE && nseg == 3) || (k != K_NAMESPACE &&
	    nseg - rest == 3))
		return smim_edges(q, k, &r);
	return smim_one(q, k, &r);
list:
	if (ns != NULL)
		snprintf(link, sizeof(link), WEFT_SMIM_PREFIX
		    "/namespaces/%s/%s", ns, smim_kinds[k].plural);
	else
		snprintf(link, sizeof(link), WEFT_SMIM_PREFIX "/%s",
		    smim_kinds[k].plural);
	ref = json_object_new_object();
	json_object_object_add(ref, "kind",
	    json_object_new_string(smim_kinds[k].kind));
	if (ns != NULL)
		json_object_object_add(ref, "namespace",
		    json_object_new_string(ns));
	json_object_object_add(ref, "apiVersion", json_object_new_string(
	    k == K_DEPLOYMENT ? "apps/v1" : k == K_TRAFFICSPLIT ?
	    "split.smi-spec.io/v1alpha4" : "v1"));
	list = smim_list(link, ref);
	if (k == K_TRAFFICSPLIT) {
		for (i = 0; q->m != NULL && i < q->m->all.n_splits; i++)
			if (ns == NULL || strcmp(q->m->all.splits[i].namespace,
			    ns) == 0)
				smim_split_items(q, &q->m->all.splits[i], list);
		return list;
	}
	if (smim_resources(q, k, ns, &v, &n) == -1) {
		json_object_put(list);
		*code = 500;
		return smim_status(500, "InternalError", "out of memory");
	}
	for (i = 0; i < n; i++)
		smim_list_add(list, smim_one(q, k, &v[i]));
	free(v);
	return list;
}

int
weft_smim_serve(struct weft_smim *s, const struct weft_model *model,
    const char *path, const char *query, int64_t now, time_t wall,
    char **body)
{
	struct smim_q q;
	struct json_object *o;
	char *copy = NULL, *seg[SMIM_MAX_SEGS + 1], *p, *tok;
	size_t nseg = 0, plen = strlen(WEFT_SMIM_PREFIX);
	int code = 200;

	*body = NULL;
	memset(&q, 0, sizeof(q));
	q.s = s;
	q.m = model;
	q.now = now;
	if (strncmp(path, WEFT_SMIM_PREFIX, plen) != 0 ||
	    (path[plen] != '\0' && path[plen] != '/') ||
	    path[plen] == '\0' || strcmp(path + plen, "/") == 0) {
		if (strncmp(path, WEFT_SMIM_PREFIX, plen) == 0 ||
		    strcmp(path, "/apis") == 0 || strcmp(path, "/apis/") == 0 ||
		    strcmp(path, "/apis/" SMIM_GROUP) == 0 ||
		    strcmp(path, "/apis/" SMIM_GROUP "/") == 0)
			o = smim_discovery(path);
		else {
			code = 404;
			o = smim_status(404, "NotFound", "no such path");
		}
		goto out;
	}
	if (smim_query_window(query, &q.window) == -1) {
		code = 400;
		o = smim_status(400, "BadRequest", "t: expected a duration "
		    "between 1s and 10m (\"30s\", \"5m\")");
		goto out;
	}
	weft_smim_format_duration(q.window, q.window_str, sizeof(q.window_str));
	smim_rfc3339(wall, q.stamp, sizeof(q.stamp));
	if ((copy = strdup(path + plen + 1)) == NULL)
		return 500;
	for (p = copy; (tok = strsep(&p, "/")) != NULL; ) {
		if (*tok == '\0')
			continue;
		if (nseg == SMIM_MAX_SEGS) {
			nseg++;
			break;
		}
		seg[nseg++] = tok;
	}
	if (nseg == 0 || nseg > SMIM_MAX_SEGS) {
		code = 404;
		o = smim_status(404, "NotFound", "no such path");
		goto out;
	}
	if (smim_window(s, q.window, now, &q.aggs, &q.naggs) == -1) {
		code = 500;
		o = smim_status(500, "InternalError", "out of memory");
		goto out;
	}
	o = smim_route(&q, seg, nseg, &code);
out:
	if (o != NULL)
		*body = strdup(json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	free(q.aggs);
	free(copy);
	if (*body == NULL)
		return 500;
	return code;
}

/* --- weft ctl top --------------------------------------------------------- */

static int
smim_agg_cmp(const void *a, const void *b)
{
	const struct smim_agg *x = a, *y = b;
	static const int order[] = { SS_SRC_NS, SS_SRC_POD, SS_DST_NS,
	    SS_DST_POD, SS_SERVICE, SS_SRC_SA, SS_DST_SA, SS_APEX };
	size_t i;
	int c;

	for (i = 0; i < sizeof(order) / sizeof(order[0]); i++)
		if ((c = strcmp(x->e->str[order[i]], y->e->str[order[i]])) != 0)
			return c;
	return x->e->server - y->e->server;
}

static struct json_object *
smim_end(const struct smim_edge *e, bool dst)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "namespace", json_object_new_string(
	    e->str[dst ? SS_DST_NS : SS_SRC_NS]));
	json_object_object_add(o, "pod", json_object_new_string(
	    e->str[dst ? SS_DST_POD : SS_SRC_POD]));
	json_object_object_add(o, "serviceAccount", json_object_new_string(
	    e->str[dst ? SS_DST_SA : SS_SRC_SA]));
	return o;
}

char *
weft_smim_top(struct weft_smim *s, const char *ns, int window, int64_t now)
{
	struct smim_agg *aggs;
	struct json_object *root, *arr, *o;
	char buf[24], *out;
	size_t n, i;
	uint64_t total;
	double v;

	if (window < 1)
		window = WEFT_SMIM_WINDOW;
	if (smim_window(s, window, now, &aggs, &n) == -1)
		return NULL;
	if (n > 1)
		qsort(aggs, n, sizeof(*aggs), smim_agg_cmp);
	root = json_object_new_object();
	weft_smim_format_duration(window, buf, sizeof(buf));
	json_object_object_add(root, "window", json_object_new_string(buf));
	arr = json_object_new_array();
	for (i = 0; i < n; i++) {
		const struct smim_edge *e = aggs[i].e;

		if (ns != NULL && strcmp(e->str[SS_SRC_NS], ns) != 0 &&
		    strcmp(e->str[SS_DST_NS], ns) != 0)
			continue;
		total = aggs[i].success + aggs[i].failure;
		o = json_object_new_object();
		json_object_object_add(o, "side", json_object_new_string(
		    e->server ? "server" : "client"));
		json_object_object_add(o, "source", smim_end(e, false));
		json_object_object_add(o, "destination", smim_end(e, true));
		json_object_object_add(o, "service", json_object_new_string(
		    e->str[SS_SERVICE]));
		json_object_object_add(o, "requests",
		    json_object_new_int64((int64_t)total));
		json_object_object_add(o, "success",
		    json_object_new_int64((int64_t)aggs[i].success));
		json_object_object_add(o, "failure",
		    json_object_new_int64((int64_t)aggs[i].failure));
		json_object_object_add(o, "rps", json_object_new_double(
		    (double)total / window));
		if ((v = weft_lat_quantile(&aggs[i].h, 0.5)) >= 0) {
			json_object_object_add(o, "p50_ms",
			    json_object_new_double(v * 1000));
			json_object_object_add(o, "p90_ms",
			    json_object_new_double(weft_lat_quantile(
			    &aggs[i].h, 0.9) * 1000));
			json_object_object_add(o, "p99_ms",
			    json_object_new_double(weft_lat_quantile(
			    &aggs[i].h, 0.99) * 1000));
		}
		json_object_array_add(arr, o);
	}
	json_object_object_add(root, "edges", arr);
	out = strdup(json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
	free(aggs);
	return out;
}

static void
smim_ms(char *buf, size_t len, struct json_object *o, const char *key)
{
	struct json_object *v;
	double ms;

	if (!json_object_object_get_ex(o, key, &v)) {
		snprintf(buf, len, "-");
		return;
	}
	ms = json_object_get_double(v);
	if (ms < 1)
		snprintf(buf, len, "%.0fus", ms * 1000);
	else if (ms < 100)
		snprintf(buf, len, "%.1fms", ms);
	else
		snprintf(buf, len, "%.0fms", ms);
}

static const char *
smim_top_str(struct json_object *o, const char *a, const char *b)
{
	struct json_object *v, *w;

	if (!json_object_object_get_ex(o, a, &v))
		return "";
	if (b != NULL) {
		if (!json_object_object_get_ex(v, b, &w))
			return "";
		v = w;
	}
	return json_object_is_type(v, json_type_string) ?
	    json_object_get_string(v) : "";
}

int
weft_smim_top_print(const char *json, const char *side, FILE *f)
{
	struct json_object *root, *edges, *e, *v;
	char src[300], dst[300], p50[16], p90[16], p99[16], ratio[16];
	size_t i, n = 0;
	int64_t req, succ;

	if ((root = json_tokener_parse(json)) == NULL ||
	    !json_object_object_get_ex(root, "edges", &edges) ||
	    !json_object_is_type(edges, json_type_array)) {
		json_object_put(root);
		return -1;
	}
	fprintf(f, "%-28s %-28s %-12s %-6s %8s %8s %8s %8s %8s\n", "SOURCE",
	    "DESTINATION", "SERVICE", "SIDE", "RPS", "SUCCESS", "P50", "P90",
	    "P99");
	for (i = 0; i < json_object_array_length(edges); i++) {
		e = json_object_array_get_idx(edges, i);
		if (strcmp(side, "all") != 0 &&
		    strcmp(smim_top_str(e, "side", NULL), side) != 0)
			continue;
		snprintf(src, sizeof(src), "%s/%s",
		    smim_top_str(e, "source", "namespace"),
		    *smim_top_str(e, "source", "pod") ?
		    smim_top_str(e, "source", "pod") : "(unknown)");
		snprintf(dst, sizeof(dst), "%s/%s",
		    smim_top_str(e, "destination", "namespace"),
		    *smim_top_str(e, "destination", "pod") ?
		    smim_top_str(e, "destination", "pod") : "(unknown)");
		req = json_object_object_get_ex(e, "requests", &v) ?
		    json_object_get_int64(v) : 0;
		succ = json_object_object_get_ex(e, "success", &v) ?
		    json_object_get_int64(v) : 0;
		if (req > 0)
			snprintf(ratio, sizeof(ratio), "%.2f%%",
			    100.0 * (double)succ / (double)req);
		else
			snprintf(ratio, sizeof(ratio), "-");
		smim_ms(p50, sizeof(p50), e, "p50_ms");
		smim_ms(p90, sizeof(p90), e, "p90_ms");
		smim_ms(p99, sizeof(p99), e, "p99_ms");
		fprintf(f, "%-28s %-28s %-12s %-6s %8.2f %8s %8s %8s %8s\n", src,
		    dst, *smim_top_str(e, "service", NULL) ?
		    smim_top_str(e, "service", NULL) : "-",
		    smim_top_str(e, "side", NULL),
		    json_object_object_get_ex(e, "rps", &v) ?
		    json_object_get_double(v) : 0.0, ratio, p50, p90, p99);
		n++;
	}
	if (n == 0)
		fprintf(f, "(no requests in the last %s)\n",
		    smim_top_str(root, "window", NULL));
	json_object_put(root);
	return 0;
}
