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

struct weft_gen {
	atomic_int	 refs;
	struct weft_snapshot *snap;		/* owned */
	const struct weft_snap_node *self;	/* into snap, may be NULL */
	struct gen_pod_ix *pods;		/* sorted by ip */
	size_t		 n_pods;
	struct gen_vip_ix *vips;		/* sorted by ip, port, protocol */
	size_t		 n_vips;
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

static void
gen_free(struct weft_gen *g)
{
	if (g == NULL)
		return;
	free(g->pods);
	free(g->vips);
	weft_snapshot_free(g->snap);
	free(g);
}

struct weft_gen *
weft_gen_build(struct weft_snapshot *snap, char **err)
{
	struct weft_gen *g;
	size_t i, j, n;
	char ipbuf[WEFT_IP_STRLEN];

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

size_t
weft_gen_service_endpoints(const struct weft_gen *g,
    const struct weft_snap_service *svc, const struct weft_service_port *sp,
    struct weft_endpoint *out, size_t max)
{
	const struct weft_snapshot *s = g->snap;
	size_t i, n = 0;
	uint16_t port;

	if (svc->selector.n == 0)
		return 0;
	for (i = 0; i < s->n_pods; i++) {
		const struct weft_snap_pod *pod = &s->pods[i];

		if (pod->ip.family == 0 || !pod->ready ||
		    strcmp(pod->namespace, svc->namespace) != 0 ||
		    !weft_labels_match(&svc->selector, &pod->labels))
			continue;
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
