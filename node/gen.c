/* Runtime generations: a snapshot plus sorted indexes, published atomically.
 *
 * Lookups are binary searches over arrays built once per generation; the
 * published pointer is guarded by a mutex that is held only to copy it and
 * take a reference, never during a lookup. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/gen.h"
#include "weft/log.h"
#include "weft/policy.h"

struct gen_pod_ix {
	struct weft_ip	 ip;
	const struct weft_snap_pod *pod;
};

struct gen_vip_ix {
	struct weft_ip	 ip;
	uint16_t	 port;
	int		 protocol;
	const struct weft_snap_service *svc;
	const struct weft_service_port *sp;
};

/* A service by (namespace, name), with the pods its selector picks. */
struct gen_svc_ix {
	const struct weft_snap_service *svc;
	const struct weft_snap_pod **pods;	/* into g->svc_pods; ready,
						 * with an IP, snapshot order */
	size_t		 n_pods;
};

struct weft_gen {
	atomic_int	 refs;
	struct weft_snapshot *snap;		/* owned */
	const struct weft_snap_node *self;	/* into snap, may be NULL */
	struct gen_pod_ix *pods;		/* sorted by ip */
	size_t		 n_pods;
	struct gen_vip_ix *vips;		/* sorted by ip, port, protocol */
	size_t		 n_vips;
	struct gen_svc_ix *svcs;		/* owned; sorted by ns, name */
	size_t		 n_svcs;
	const struct weft_snap_pod **svc_pods;	/* owned; every svcs[].pods */
	/* TrafficSplits by root service: (ns, service), then the splits
	 * with matches in (created, name) order, then the catch-all. */
	const struct weft_smi_split **splits;	/* owned array */
	size_t		 n_splits;
	struct weft_policy *policy;		/* owned; borrows snap */
};

static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static struct weft_gen *gen_current;

static int
gen_ip_cmp(const struct weft_ip *a, const struct weft_ip *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->bytes, b->bytes, weft_ip_len(a));
}

static int
gen_pod_ix_cmp(const void *a, const void *b)
{
	return gen_ip_cmp(&((const struct gen_pod_ix *)a)->ip,
	    &((const struct gen_pod_ix *)b)->ip);
}

static int
gen_vip_ix_cmp(const void *a, const void *b)
{
	const struct gen_vip_ix *x = a, *y = b;
	int c;

	if ((c = gen_ip_cmp(&x->ip, &y->ip)) != 0)
		return c;
	if (x->port != y->port)
		return x->port < y->port ? -1 : 1;
	if (x->protocol != y->protocol)
		return x->protocol < y->protocol ? -1 : 1;
	return 0;
}

static int
gen_nsname_cmp(const char *ns1, const char *n1, const char *ns2,
    const char *n2)
{
	int c = strcmp(ns1 != NULL ? ns1 : "", ns2 != NULL ? ns2 : "");

	return c != 0 ? c : strcmp(n1 != NULL ? n1 : "", n2 != NULL ? n2 : "");
}

static int
gen_svc_ix_cmp(const void *a, const void *b)
{
	const struct gen_svc_ix *x = a, *y = b;

	return gen_nsname_cmp(x->svc->namespace, x->svc->name,
	    y->svc->namespace, y->svc->name);
}

static int
gen_split_cmp(const void *a, const void *b)
{
	const struct weft_smi_split *x = *(const struct weft_smi_split *
	    const *)a, *y = *(const struct weft_smi_split * const *)b;
	int c;

	if ((c = gen_nsname_cmp(x->namespace, x->service, y->namespace,
	    y->service)) != 0)
		return c;
	/* splits with matches first: they are tried before the catch-all */
	if ((x->n_match_groups == 0) != (y->n_match_groups == 0))
		return x->n_match_groups == 0 ? 1 : -1;
	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->name != NULL ? x->name : "",
	    y->name != NULL ? y->name : "");
}

static int
gen_pod_ns_cmp(const void *a, const void *b)
{
	const struct weft_snap_pod *x = *(const struct weft_snap_pod *
	    const *)a, *y = *(const struct weft_snap_pod * const *)b;
	int c = strcmp(x->namespace, y->namespace);

	/* snapshot order within a namespace: stable endpoint order */
	if (c != 0)
		return c;
	return x < y ? -1 : x > y;
}

/* The pods of every service, once per generation: a service's endpoints are
 * then found without scanning every pod of the cluster per request. */
static int
gen_index_services(struct weft_gen *g)
{
	const struct weft_snapshot *s = g->snap;
	const struct weft_snap_pod **byns = NULL;
	size_t i, j, lo, n = 0, total = 0, cap = 0;
	int pass;

	if (s->n_services == 0)
		return 0;
	if ((g->svcs = calloc(s->n_services, sizeof(*g->svcs))) == NULL)
		return -1;
	g->n_svcs = s->n_services;
	for (i = 0; i < s->n_pods; i++)
		if (s->pods[i].ip.family != 0 && s->pods[i].ready &&
		    s->pods[i].namespace != NULL)
			n++;
	if (n > 0 && (byns = calloc(n, sizeof(*byns))) == NULL)
		return -1;
	for (i = 0, j = 0; i < s->n_pods; i++)
		if (s->pods[i].ip.family != 0 && s->pods[i].ready &&
		    s->pods[i].namespace != NULL)
			byns[j++] = &s->pods[i];
	if (n > 0)
		qsort(byns, n, sizeof(*byns), gen_pod_ns_cmp);
	/* two passes: count, then fill one array; a service's pods keep the
	 * snapshot's order (byns is by namespace, then by address) */
	for (pass = 0; pass < 2; pass++) {
		total = 0;
		for (i = 0; i < s->n_services; i++) {
			const struct weft_snap_service *svc = &s->services[i];
			size_t k = 0;

			if (pass == 1) {
				g->svcs[i].svc = svc;
				g->svcs[i].pods = g->svc_pods != NULL ?
				    g->svc_pods + total : NULL;
			}
			if (svc->selector.n == 0 || svc->namespace == NULL)
				continue;
			/* first pod of the namespace */
			for (lo = 0, j = n; lo < j;) {
				size_t mid = (lo + j) / 2;

				if (strcmp(byns[mid]->namespace,
				    svc->namespace) < 0)
					lo = mid + 1;
				else
					j = mid;
			}
			for (j = lo; j < n && strcmp(byns[j]->namespace,
			    svc->namespace) == 0; j++) {
				if (!weft_labels_match(&svc->selector,
				    &byns[j]->labels))
					continue;
				if (pass == 1)
					g->svc_pods[total + k] = byns[j];
				k++;
			}
			if (pass == 1)
				g->svcs[i].n_pods = k;
			total += k;
		}
		if (pass == 0) {
			cap = total;
			if (cap > 0 && (g->svc_pods = calloc(cap,
			    sizeof(*g->svc_pods))) == NULL) {
				free(byns);
				return -1;
			}
		}
	}
	free(byns);
	qsort(g->svcs, g->n_svcs, sizeof(*g->svcs), gen_svc_ix_cmp);

	if (s->n_splits == 0)
		return 0;
	if ((g->splits = calloc(s->n_splits, sizeof(*g->splits))) == NULL)
		return -1;
	for (i = 0; i < s->n_splits; i++)
		if (s->splits[i].namespace != NULL &&
		    s->splits[i].service != NULL)
			g->splits[g->n_splits++] = &s->splits[i];
	if (g->n_splits > 1)
		qsort(g->splits, g->n_splits, sizeof(*g->splits),
		    gen_split_cmp);
	return 0;
}

static void
gen_free(struct weft_gen *g)
{
	if (g == NULL)
		return;
	free(g->pods);
	free(g->vips);
	free(g->svcs);
	free(g->svc_pods);
	free(g->splits);
	/* before the snapshot it borrows from */
	weft_policy_free(g->policy);
	weft_snapshot_free(g->snap);
	free(g);
}

struct weft_gen *
weft_gen_build(struct weft_snapshot *snap, char **err)
{
	struct weft_gen *g;
	size_t i, j, n;
	char ipbuf[WEFT_IP_STRLEN], *perr = NULL;

	*err = NULL;
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		weft_snapshot_free(snap);
		*err = strdup("out of memory");
		return NULL;
	}
	atomic_init(&g->refs, 1);
	g->snap = snap;
	if (snap->node_name != NULL)
		g->self = weft_snapshot_node(snap, snap->node_name);

	if (snap->n_pods > 0 &&
	    (g->pods = calloc(snap->n_pods, sizeof(*g->pods))) == NULL)
		goto oom;
	for (i = 0, n = 0; i < snap->n_pods; i++) {
		if (snap->pods[i].ip.family == 0)
			continue;
		g->pods[n].ip = snap->pods[i].ip;
		g->pods[n].pod = &snap->pods[i];
		n++;
	}
	g->n_pods = n;
	/* qsort and bsearch take no NULL base, even for zero elements. */
	if (g->n_pods > 0)
		qsort(g->pods, g->n_pods, sizeof(*g->pods), gen_pod_ix_cmp);
	for (i = 1; i < g->n_pods; i++) {
		if (gen_pod_ix_cmp(&g->pods[i - 1], &g->pods[i]) == 0) {
			/* Two pods claim one address: the snapshot is
			 * inconsistent and no decision could be trusted. */
			if (asprintf(err, "pods %s/%s and %s/%s have the "
			    "same IP", g->pods[i - 1].pod->namespace,
			    g->pods[i - 1].pod->name, g->pods[i].pod->namespace,
			    g->pods[i].pod->name) == -1)
				*err = NULL;
			gen_free(g);
			return NULL;
		}
	}

	for (i = 0, n = 0; i < snap->n_services; i++)
		if (snap->services[i].cluster_ip.family != 0)
			n += snap->services[i].n_ports;
	if (n > 0 && (g->vips = calloc(n, sizeof(*g->vips))) == NULL)
		goto oom;
	for (i = 0, n = 0; i < snap->n_services; i++) {
		const struct weft_snap_service *svc = &snap->services[i];

		if (svc->cluster_ip.family == 0)
			continue;
		for (j = 0; j < svc->n_ports; j++) {
			g->vips[n].ip = svc->cluster_ip;
			g->vips[n].port = svc->ports[j].port;
			g->vips[n].protocol = svc->ports[j].protocol;
			g->vips[n].svc = svc;
			g->vips[n].sp = &svc->ports[j];
			n++;
		}
	}
	g->n_vips = n;
	if (g->n_vips > 0)
		qsort(g->vips, g->n_vips, sizeof(*g->vips), gen_vip_ix_cmp);
	for (i = 1; i < g->n_vips; i++) {
		if (gen_vip_ix_cmp(&g->vips[i - 1], &g->vips[i]) == 0)
			log_warnx("services %s/%s and %s/%s share %s port %u; "
			    "using the first", g->vips[i - 1].svc->namespace,
			    g->vips[i - 1].svc->name, g->vips[i].svc->namespace,
			    g->vips[i].svc->name,
			    weft_ip_str(&g->vips[i].ip, ipbuf, sizeof(ipbuf)),
			    g->vips[i].port);
	}
	if (gen_index_services(g) == -1)
		goto oom;
	/* A policy that does not compile fails the generation: the node
	 * keeps enforcing the previous one rather than none. */
	if ((g->policy = weft_policy_compile(snap, &perr)) == NULL) {
		if (perr == NULL || asprintf(err, "policy: %s", perr) == -1)
			*err = NULL;
		free(perr);
		gen_free(g);
		if (*err == NULL)
			*err = strdup("out of memory");
		return NULL;
	}
	return g;
oom:
	gen_free(g);
	*err = strdup("out of memory");
	return NULL;
}

struct weft_gen *
weft_gen_ref(struct weft_gen *g)
{
	if (g != NULL)
		atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void
weft_gen_unref(struct weft_gen *g)
{
	if (g == NULL)
		return;
	if (atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1)
		gen_free(g);
}

void
weft_gen_publish(struct weft_gen *g)
{
	struct weft_gen *old;

	pthread_mutex_lock(&gen_lock);
	old = gen_current;
	gen_current = g;
	pthread_mutex_unlock(&gen_lock);
	weft_gen_unref(old);
}

struct weft_gen *
weft_gen_current(void)
{
	struct weft_gen *g;

	pthread_mutex_lock(&gen_lock);
	g = weft_gen_ref(gen_current);
	pthread_mutex_unlock(&gen_lock);
	return g;
}

const struct weft_snapshot *
weft_gen_snapshot(const struct weft_gen *g)
{
	return g->snap;
}

uint64_t
weft_gen_generation(const struct weft_gen *g)
{
	return g->snap->generation;
}

const struct weft_policy *
weft_gen_policy(const struct weft_gen *g)
{
	return g->policy;
}

const struct weft_snap_node *
weft_gen_self(const struct weft_gen *g)
{
	return g->self;
}

const struct weft_snap_pod *
weft_gen_pod_by_ip(const struct weft_gen *g, const struct weft_ip *ip)
{
	struct gen_pod_ix key, *hit;

	if (g->n_pods == 0)
		return NULL;
	key.ip = *ip;
	hit = bsearch(&key, g->pods, g->n_pods, sizeof(*g->pods),
	    gen_pod_ix_cmp);
	return hit != NULL ? hit->pod : NULL;
}

bool
weft_gen_in_local_cidrs(const struct weft_gen *g, const struct weft_ip *ip)
{
	size_t i;

	if (g->self == NULL)
		return false;
	for (i = 0; i < g->self->n_pod_cidrs; i++)
		if (weft_cidr_contains(&g->self->pod_cidrs[i], ip))
			return true;
	return false;
}

bool
weft_gen_pod_is_local(const struct weft_gen *g,
    const struct weft_snap_pod *pod)
{
	return pod->node != NULL && g->snap->node_name != NULL &&
	    strcmp(pod->node, g->snap->node_name) == 0;
}

const struct weft_snap_service *
weft_gen_service_by_vip(const struct weft_gen *g, const struct weft_ip *ip,
    uint16_t port, int protocol, const struct weft_service_port **sp)
{
	struct gen_vip_ix key, *hit;

	if (g->n_vips == 0)
		return NULL;
	memset(&key, 0, sizeof(key));
	key.ip = *ip;
	key.port = port;
	key.protocol = protocol;
	hit = bsearch(&key, g->vips, g->n_vips, sizeof(*g->vips),
	    gen_vip_ix_cmp);
	if (hit == NULL)
		return NULL;
	/* bsearch may land on any duplicate; take the first. */
	while (hit > g->vips && gen_vip_ix_cmp(hit - 1, &key) == 0)
		hit--;
	if (sp != NULL)
		*sp = hit->sp;
	return hit->svc;
}

static uint16_t
gen_resolve_target(const struct weft_snap_pod *pod,
    const struct weft_service_port *sp)
{
	size_t i;

	if (sp->target_port_name == NULL)
		return sp->target_port != 0 ? sp->target_port : sp->port;
	for (i = 0; i < pod->n_ports; i++) {
		const struct weft_container_port *cp = &pod->ports[i];

		if (cp->name != NULL && cp->protocol == sp->protocol &&
		    strcmp(cp->name, sp->target_port_name) == 0)
			return cp->port;
	}
	return 0;
}

static const struct gen_svc_ix *
gen_svc_find(const struct weft_gen *g, const char *ns, const char *name)
{
	size_t lo = 0, hi = g->n_svcs, mid;
	int c;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		c = gen_nsname_cmp(ns, name, g->svcs[mid].svc->namespace,
		    g->svcs[mid].svc->name);
		if (c == 0)
			return &g->svcs[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

const struct weft_snap_service *
weft_gen_service_by_name(const struct weft_gen *g, const char *ns,
    const char *name)
{
	const struct gen_svc_ix *ix;

	if (ns == NULL || name == NULL)
		return NULL;
	ix = gen_svc_find(g, ns, name);
	return ix != NULL ? ix->svc : NULL;
}

size_t
weft_gen_splits(const struct weft_gen *g, const char *ns, const char *service,
    const struct weft_smi_split *const **out)
{
	size_t lo = 0, hi = g->n_splits, mid, end;

	*out = NULL;
	if (ns == NULL || service == NULL)
		return 0;
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (gen_nsname_cmp(g->splits[mid]->namespace,
		    g->splits[mid]->service, ns, service) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (end = lo; end < g->n_splits && gen_nsname_cmp(
	    g->splits[end]->namespace, g->splits[end]->service, ns,
	    service) == 0; end++)
		;
	if (end == lo)
		return 0;
	*out = &g->splits[lo];
	return end - lo;
}

size_t
weft_gen_service_endpoints(const struct weft_gen *g,
    const struct weft_snap_service *svc, const struct weft_service_port *sp,
    struct weft_endpoint *out, size_t max)
{
	const struct gen_svc_ix *ix;
	size_t i, n = 0;
	uint16_t port;

	if (svc->selector.n == 0 ||
	    (ix = gen_svc_find(g, svc->namespace, svc->name)) == NULL ||
	    ix->svc != svc)
		return 0;
	for (i = 0; i < ix->n_pods; i++) {
		const struct weft_snap_pod *pod = ix->pods[i];

		if ((port = gen_resolve_target(pod, sp)) == 0)
			continue;
		if (n < max) {
			out[n].pod = pod;
			out[n].port = port;
		}
		n++;
	}
	return n;
}
