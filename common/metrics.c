/* The metrics registry (weft/metrics.h): per-thread shards of series, merged
 * when someone reads them.
 *
 * A shard belongs to one writer thread.  Its series live in a hash table
 * that only the owner reads or changes (lookups take no lock) and on a list
 * the readers walk.  The list changes only under the shard's mutex: the
 * owner takes it to link a new series or to unlink expired ones, a reader
 * takes it for as long as it looks at the series, so a reader never sees a
 * freed one.  Values have one writer and are updated with relaxed atomic
 * loads and stores (plain moves on x86, no locked instruction); a reader
 * may see a request counted whose histogram bucket is not yet, never a torn
 * value.  A label set appears once per shard (the table interns it: the
 * series owns one copy of its strings); readers merge equal label sets of
 * different shards by summing.  The flows (a proxied connection's labels
 * and the series it holds) of a shard with equal labels share one
 * refcounted copy of them in a second owner-only table.
 *
 * Kinds of series:
 *   REQ   weft_requests_total and weft_request_duration_seconds
 *   DENY  weft_policy_denials_total
 *   TCP   weft_tcp_connections_{opened,closed}_total,
 *         weft_tcp_{sent,received}_bytes_total
 *   EDGE  a pod-to-pod edge of the SMI TrafficMetrics API (success and
 *         failure counts, a fine latency histogram), pushed to the
 *         controller as deltas; never in the exposition. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "weft/log.h"
#include "weft/metrics.h"

enum met_kind {
	MET_REQ = 0,
	MET_DENY,
	MET_TCP,
	MET_EDGE,
};

/* The strings of a key, in this order. */
enum met_str {
	MS_SRC_NS = 0,
	MS_SRC_SA,
	MS_SRC_POD,
	MS_DST_NS,
	MS_DST_SA,
	MS_DST_POD,
	MS_SERVICE,
	MS_APEX,
	MS_REASON,
	MS_N
};

/* A flow's strings: all but the reason. */
#define MS_FLOW_N	MS_REASON

#define MET_NBUCKETS	16	/* weft_request_duration_seconds, +Inf apart */
#define MET_TAB_MIN	64

static const double met_bounds[MET_NBUCKETS] = {
	0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
	0.1, 0.25, 0.5, 1, 2.5, 5, 10
};

/* Append a string literal. */
#define MET_ADDS(b, lit)	evbuffer_add((b), (lit), sizeof(lit) - 1)

#define RD(x)		atomic_load_explicit(&(x), memory_order_relaxed)
/* One writer: a relaxed load and store, no read-modify-write. */
#define ADD(x, n)	atomic_store_explicit(&(x), RD(x) + (n),	\
			    memory_order_relaxed)

struct met_edge {
	_Atomic uint64_t e_success;
	_Atomic uint64_t e_failure;
	_Atomic uint64_t e_lat[WEFT_LAT_NBUCKETS];
	/* The pusher's, under the shard mutex: what the controller has
	 * (pushed) and what the last delta sent (pending). */
	uint64_t	 e_pushed[2 + WEFT_LAT_NBUCKETS];
	uint64_t	 e_pending[2 + WEFT_LAT_NBUCKETS];
};

struct met_series {
	struct met_series *s_hnext;		/* hash chain (owner only) */
	struct met_series *s_next, *s_prev;	/* the shard's list (mutex) */
	uint64_t	 s_hash;
	uint8_t		 s_kind;
	uint8_t		 s_side;
	int		 s_status;
	int		 s_refs;		/* TCP handles (owner only) */
	int64_t		 s_last;		/* last update, monotonic s
						 * (owner only) */
	const char	*s_str[MS_N];		/* into the same allocation */
	union {
		struct {
			_Atomic uint64_t count;
			_Atomic uint64_t sum_ns;
			_Atomic uint64_t bucket[MET_NBUCKETS + 1];
		} req;
		struct {
			_Atomic uint64_t count;
		} deny;
		struct {
			_Atomic uint64_t opened;
			_Atomic uint64_t closed;
			_Atomic uint64_t sent;
			_Atomic uint64_t received;
		} tcp;
	} s_v;
	struct met_edge	*s_edge;		/* EDGE: same allocation */
};

struct met_labels;

struct weft_metrics_shard {
	struct weft_metrics *sh_m;
	pthread_mutex_t	 sh_mu;
	struct met_series **sh_tab;		/* owned; owner only */
	size_t		 sh_tabsize;		/* power of two */
	size_t		 sh_n;
	struct met_series *sh_head;		/* the list (mutex) */
	struct event	*sh_timer;		/* owned; sweep */
	struct met_labels **sh_ltab;		/* the flows' label sets;
						 * owned; owner only */
	size_t		 sh_ltabsize;		/* power of two */
	struct weft_metrics_test sh_test;	/* sh_test.mt_label_sets:
						 * live sets */
};

struct weft_metrics {
	struct weft_metrics_config m_cfg;
	struct weft_metrics_shard *m_shards;	/* owned */
	int		 m_nshards;
};

/* A key as the writer sees it: borrowed strings. */
struct met_key {
	enum met_kind	 kind;
	int		 side;
	int		 status;
	const char	*str[MS_N];
};

void
weft_metrics_config_defaults(struct weft_metrics_config *mc)
{
	memset(mc, 0, sizeof(*mc));
	mc->expiry_s = 300;
	mc->sweep_ms = 5000;
}

static int64_t
met_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec;
}

struct weft_metrics *
weft_metrics_new(const struct weft_metrics_config *mc, int nshards)
{
	struct weft_metrics *m;
	int i;

	if (nshards < 1)
		nshards = 1;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	if (mc != NULL)
		m->m_cfg = *mc;
	else
		weft_metrics_config_defaults(&m->m_cfg);
	if (m->m_cfg.expiry_s <= 0)
		m->m_cfg.expiry_s = 300;
	if (m->m_cfg.sweep_ms <= 0)
		m->m_cfg.sweep_ms = 5000;
	if ((m->m_shards = calloc((size_t)nshards,
	    sizeof(*m->m_shards))) == NULL) {
		free(m);
		return NULL;
	}
	m->m_nshards = nshards;
	for (i = 0; i < nshards; i++) {
		struct weft_metrics_shard *sh = &m->m_shards[i];

		sh->sh_m = m;
		pthread_mutex_init(&sh->sh_mu, NULL);
		if ((sh->sh_tab = calloc(MET_TAB_MIN,
		    sizeof(*sh->sh_tab))) == NULL) {
			weft_metrics_free(m);
			errno = ENOMEM;
			return NULL;
		}
		sh->sh_tabsize = MET_TAB_MIN;
		if ((sh->sh_ltab = calloc(MET_TAB_MIN,
		    sizeof(*sh->sh_ltab))) == NULL) {
			weft_metrics_free(m);
			errno = ENOMEM;
			return NULL;
		}
		sh->sh_ltabsize = MET_TAB_MIN;
	}
	return m;
}

static void	met_labels_free_all(struct weft_metrics_shard *);

void
weft_metrics_free(struct weft_metrics *m)
{
	struct met_series *s, *next;
	int i;

	if (m == NULL)
		return;
	for (i = 0; i < m->m_nshards; i++) {
		struct weft_metrics_shard *sh = &m->m_shards[i];

		weft_metrics_shard_detach(sh);
		for (s = sh->sh_head; s != NULL; s = next) {
			next = s->s_next;
			free(s);
		}
		sh->sh_head = NULL;
		free(sh->sh_tab);
		sh->sh_tab = NULL;
		met_labels_free_all(sh);
		pthread_mutex_destroy(&sh->sh_mu);
	}
	free(m->m_shards);
	free(m);
}

int
weft_metrics_nshards(const struct weft_metrics *m)
{
	return m != NULL ? m->m_nshards : 0;
}

struct weft_metrics_shard *
weft_metrics_shard(struct weft_metrics *m, int i)
{
	if (m == NULL || i < 0 || i >= m->m_nshards)
		return NULL;
	return &m->m_shards[i];
}

static void
met_sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	weft_metrics_sweep(arg, met_now());
}

int
weft_metrics_shard_attach(struct weft_metrics_shard *sh,
    struct event_base *base)
{
	struct timeval tv;
	int ms;

	if (sh == NULL)
		return 0;
	weft_metrics_shard_detach(sh);
	if ((sh->sh_timer = event_new(base, -1, EV_PERSIST, met_sweep_cb,
	    sh)) == NULL)
		return -1;
	ms = sh->sh_m->m_cfg.sweep_ms;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (event_add(sh->sh_timer, &tv) == -1) {
		event_free(sh->sh_timer);
		sh->sh_timer = NULL;
		return -1;
	}
	return 0;
}

void
weft_metrics_shard_detach(struct weft_metrics_shard *sh)
{
	if (sh != NULL && sh->sh_timer != NULL) {
		event_free(sh->sh_timer);
		sh->sh_timer = NULL;
	}
}

/* --- the owner's table ---------------------------------------------------- */

static const char *
met_s(const char *s)
{
	return s != NULL ? s : "";
}

static uint64_t
met_hash(const struct met_key *k)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	const unsigned char *p;
	size_t i;

	h = (h ^ (uint64_t)k->kind) * 1099511628211ULL;
	h = (h ^ (uint64_t)k->side) * 1099511628211ULL;
	h = (h ^ (uint64_t)(unsigned)k->status) * 1099511628211ULL;
	for (i = 0; i < MS_N; i++) {
		for (p = (const unsigned char *)met_s(k->str[i]); *p; p++)
			h = (h ^ *p) * 1099511628211ULL;
		h = (h ^ 0xff) * 1099511628211ULL;	/* separator */
	}
	return h;
}

static bool
met_same(const struct met_series *s, const struct met_key *k, uint64_t h)
{
	size_t i;

	if (s->s_hash != h || s->s_kind != k->kind || s->s_side != k->side ||
	    s->s_status != k->status)
		return false;
	for (i = 0; i < MS_N; i++)
		if (strcmp(s->s_str[i], met_s(k->str[i])) != 0)
			return false;
	return true;
}

static void
met_grow(struct weft_metrics_shard *sh)
{
	struct met_series **nt, *s, *next;
	size_t i, nsize = sh->sh_tabsize * 2;

	if ((nt = calloc(nsize, sizeof(*nt))) == NULL)
		return;		/* longer chains, still correct */
	for (i = 0; i < sh->sh_tabsize; i++) {
		for (s = sh->sh_tab[i]; s != NULL; s = next) {
			next = s->s_hnext;
			s->s_hnext = nt[s->s_hash & (nsize - 1)];
			nt[s->s_hash & (nsize - 1)] = s;
		}
	}
	free(sh->sh_tab);
	sh->sh_tab = nt;
	sh->sh_tabsize = nsize;
}

/* The series of k, created if new; NULL only when out of memory. */
static struct met_series *
met_get(struct weft_metrics_shard *sh, const struct met_key *k, int64_t now)
{
	struct met_series *s;
	uint64_t h = met_hash(k);
	size_t i, len[MS_N], total = 0, off;
	char *p;

	for (s = sh->sh_tab[h & (sh->sh_tabsize - 1)]; s != NULL;
	    s = s->s_hnext) {
		if (met_same(s, k, h)) {
			s->s_last = now;
			return s;
		}
	}
	for (i = 0; i < MS_N; i++) {
		len[i] = strlen(met_s(k->str[i])) + 1;
		total += len[i];
	}
	off = sizeof(*s);
	if (k->kind == MET_EDGE)
		off += sizeof(struct met_edge);
	if ((s = calloc(1, off + total)) == NULL)
		return NULL;
	if (k->kind == MET_EDGE)
		s->s_edge = (struct met_edge *)(void *)(s + 1);
	p = (char *)s + off;
	for (i = 0; i < MS_N; i++) {
		memcpy(p, met_s(k->str[i]), len[i]);
		s->s_str[i] = p;
		p += len[i];
	}
	s->s_hash = h;
	s->s_kind = (uint8_t)k->kind;
	s->s_side = (uint8_t)k->side;
	s->s_status = k->status;
	s->s_last = now;
	if (sh->sh_n >= sh->sh_tabsize * 2)
		met_grow(sh);
	s->s_hnext = sh->sh_tab[h & (sh->sh_tabsize - 1)];
	sh->sh_tab[h & (sh->sh_tabsize - 1)] = s;
	sh->sh_n++;
	pthread_mutex_lock(&sh->sh_mu);
	s->s_next = sh->sh_head;
	s->s_prev = NULL;
	if (sh->sh_head != NULL)
		sh->sh_head->s_prev = s;
	sh->sh_head = s;
	pthread_mutex_unlock(&sh->sh_mu);
	return s;
}

void
weft_metrics_sweep(struct weft_metrics_shard *sh, int64_t now_s)
{
	struct met_series *s, **pp, *dead = NULL;
	int64_t expiry;
	size_t i, n = 0;

	if (sh == NULL)
		return;
	expiry = sh->sh_m->m_cfg.expiry_s;
	for (i = 0; i < sh->sh_tabsize; i++) {
		for (pp = &sh->sh_tab[i]; (s = *pp) != NULL; ) {
			if (s->s_refs > 0 || now_s - s->s_last <= expiry) {
				pp = &s->s_hnext;
				continue;
			}
			*pp = s->s_hnext;
			s->s_hnext = dead;
			dead = s;
			sh->sh_n--;
			n++;
		}
	}
	if (dead == NULL)
		return;
	pthread_mutex_lock(&sh->sh_mu);
	for (s = dead; s != NULL; s = s->s_hnext) {
		if (s->s_prev != NULL)
			s->s_prev->s_next = s->s_next;
		else
			sh->sh_head = s->s_next;
		if (s->s_next != NULL)
			s->s_next->s_prev = s->s_prev;
	}
	pthread_mutex_unlock(&sh->sh_mu);
	while ((s = dead) != NULL) {
		dead = s->s_hnext;
		free(s);
	}
	log_debug("metrics: %zu idle series expired", n);
}

/* --- recording ------------------------------------------------------------ */

static size_t
met_bucket(double s)
{
	size_t lo = 0, hi = MET_NBUCKETS, mid;

	/* the first bound >= s (Prometheus buckets are upper-inclusive) */
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (met_bounds[mid] < s)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;		/* MET_NBUCKETS: +Inf only */
}

static void
met_key_ids(struct met_key *k, const struct weft_metrics_peer *src,
    const struct weft_metrics_peer *dst, const char *svc)
{
	k->str[MS_SRC_NS] = src->ns;
	k->str[MS_SRC_SA] = src->sa;
	k->str[MS_DST_NS] = dst->ns;
	k->str[MS_DST_SA] = dst->sa;
	k->str[MS_SERVICE] = svc;
}

static int
met_status(int status)
{
	return status > 0 && status < 1000 ? status : 0;
}

/* A latency to record: status answered and a sane duration. */
static bool
met_lat(int status, double dur)
{
	return status > 0 && dur >= 0 && !isnan(dur);
}

static void
met_req_add(struct met_series *s, bool have_lat, double d)
{
	ADD(s->s_v.req.count, 1);
	if (have_lat) {
		ADD(s->s_v.req.bucket[met_bucket(d)], 1);
		ADD(s->s_v.req.sum_ns, (uint64_t)llround(d * 1e9));
	}
}

static void
met_edge_add(struct met_series *s, int status, bool have_lat, double d)
{
	/* failure = 5xx or no response. */
	if (status == 0 || status >= 500)
		ADD(s->s_edge->e_failure, 1);
	else
		ADD(s->s_edge->e_success, 1);
	if (have_lat)
		ADD(s->s_edge->e_lat[weft_lat_bucket(d)], 1);
}

void
weft_metrics_request(struct weft_metrics_shard *sh,
    const struct weft_metrics_req *r)
{
	struct met_key k;
	struct met_series *s;
	int64_t now;
	bool have_lat;
	double d;

	if (sh == NULL)
		return;
	now = met_now();
	have_lat = met_lat(r->status, r->duration_s);
	d = have_lat ? r->duration_s : 0;

	memset(&k, 0, sizeof(k));
	k.kind = MET_REQ;
	k.side = r->side;
	k.status = met_status(r->status);
	met_key_ids(&k, &r->src, &r->dst, r->dst_service);
	if ((s = met_get(sh, &k, now)) != NULL)
		met_req_add(s, have_lat, d);

	if (r->denied) {
		k.kind = MET_DENY;
		k.status = 0;
		k.str[MS_REASON] = r->reason != NULL && *r->reason ?
		    r->reason : "denied";
		if ((s = met_get(sh, &k, now)) != NULL)
			ADD(s->s_v.deny.count, 1);
		k.str[MS_REASON] = NULL;
	}

	k.kind = MET_EDGE;
	k.status = 0;
	k.str[MS_SRC_POD] = r->src.pod;
	k.str[MS_DST_POD] = r->dst.pod;
	k.str[MS_APEX] = r->split_apex;
	if ((s = met_get(sh, &k, now)) != NULL)
		met_edge_add(s, r->status, have_lat, d);
}

struct weft_metrics_tcp_series *
weft_metrics_tcp_open(struct weft_metrics_shard *sh,
    const struct weft_metrics_conn *c)
{
	struct met_key k;
	struct met_series *s;

	if (sh == NULL)
		return NULL;
	memset(&k, 0, sizeof(k));
	k.kind = MET_TCP;
	k.side = c->side;
	met_key_ids(&k, &c->src, &c->dst, c->dst_service);
	if ((s = met_get(sh, &k, met_now())) == NULL)
		return NULL;
	s->s_refs++;
	ADD(s->s_v.tcp.opened, 1);
	return (struct weft_metrics_tcp_series *)s;
}

void
weft_metrics_tcp_close(struct weft_metrics_shard *sh,
    struct weft_metrics_tcp_series *ts, uint64_t sent, uint64_t received)
{
	struct met_series *s = (struct met_series *)ts;

	if (sh == NULL || s == NULL)
		return;
	ADD(s->s_v.tcp.closed, 1);
	ADD(s->s_v.tcp.sent, sent);
	ADD(s->s_v.tcp.received, received);
	s->s_last = met_now();
	if (s->s_refs > 0)
		s->s_refs--;
}

/* --- flows ---------------------------------------------------------------- */

#define FLOW_REQ_CACHE	4

/* A flow's labels: its side and strings, shared by every flow of the shard
 * with the same ones (thousands of connections between the same pods cost
 * one copy), immutable, freed with its last flow.  The set also holds the
 * two series that its labels alone decide (s_refs), for all its flows: the
 * connections' TCP series and the SMI edge (taken at the first request).
 * Owner only: the readers see series, never sets. */
struct met_labels {
	struct met_labels *l_next;		/* hash chain */
	struct weft_metrics_shard *l_sh;	/* its table's */
	uint64_t	 l_hash;		/* met_hash of its edge key */
	uint32_t	 l_refs;		/* flows */
	uint8_t		 l_side;
	struct met_series *l_tcp;		/* a reference; NULL when out
						 * of memory */
	struct met_series *l_edge;		/* a reference, or NULL */
	const char	*l_str[MS_FLOW_N];	/* into l_buf */
	char		 l_buf[];
};

/* The series a flow uses are held (s_refs) while it lives, so that its
 * requests need no lookup: its label set's (TCP, edge), and the request
 * series of its last few statuses, most recent first.  Nothing else: an
 * idle flow is these 40 bytes, the strings are the set's. */
struct weft_metrics_flow {
	struct met_labels *f_lab;		/* a reference */
	struct met_series *f_req[FLOW_REQ_CACHE]; /* references, or NULL */
};

static void
met_unref(struct met_series *s, int64_t now)
{
	if (s != NULL && s->s_refs > 0) {
		s->s_refs--;
		s->s_last = now;
	}
}

/* The key of kind k for the series of a flow with labels l. */
static void
met_labels_key(const struct met_labels *l, enum met_kind kind, int status,
    struct met_key *k)
{
	size_t i;

	memset(k, 0, sizeof(*k));
	k->kind = kind;
	k->side = l->l_side;
	k->status = status;
	for (i = 0; i < MS_FLOW_N; i++)
		k->str[i] = l->l_str[i];
	k->str[MS_REASON] = NULL;
	if (kind != MET_EDGE) {
		k->str[MS_SRC_POD] = NULL;
		k->str[MS_DST_POD] = NULL;
		k->str[MS_APEX] = NULL;
	}
}

static void
met_labels_grow(struct weft_metrics_shard *sh)
{
	struct met_labels **nt, *l, *next;
	size_t i, nsize = sh->sh_ltabsize * 2;

	if ((nt = calloc(nsize, sizeof(*nt))) == NULL)
		return;		/* longer chains, still correct */
	for (i = 0; i < sh->sh_ltabsize; i++) {
		for (l = sh->sh_ltab[i]; l != NULL; l = next) {
			next = l->l_next;
			l->l_next = nt[l->l_hash & (nsize - 1)];
			nt[l->l_hash & (nsize - 1)] = l;
		}
	}
	free(sh->sh_ltab);
	sh->sh_ltab = nt;
	sh->sh_ltabsize = nsize;
}

/* The label set of c with one more reference, made if new; NULL only when
 * out of memory.  Its TCP series is taken here (again, if it could not be
 * before). */
static struct met_labels *
met_labels_get(struct weft_metrics_shard *sh,
    const struct weft_metrics_conn *c)
{
	struct met_labels *l;
	struct met_key k;
	uint64_t h;
	size_t i, len[MS_FLOW_N], total = 0;
	char *p;

	/* The edge's key: side and every string of the flow. */
	memset(&k, 0, sizeof(k));
	k.kind = MET_EDGE;
	k.side = c->side;
	k.str[MS_SRC_NS] = c->src.ns;
	k.str[MS_SRC_SA] = c->src.sa;
	k.str[MS_SRC_POD] = c->src.pod;
	k.str[MS_DST_NS] = c->dst.ns;
	k.str[MS_DST_SA] = c->dst.sa;
	k.str[MS_DST_POD] = c->dst.pod;
	k.str[MS_SERVICE] = c->dst_service;
	k.str[MS_APEX] = c->split_apex;
	h = met_hash(&k);
	for (l = sh->sh_ltab[h & (sh->sh_ltabsize - 1)]; l != NULL;
	    l = l->l_next) {
		if (l->l_hash != h || l->l_side != (uint8_t)c->side)
			continue;
		for (i = 0; i < MS_FLOW_N; i++)
			if (strcmp(l->l_str[i], met_s(k.str[i])) != 0)
				break;
		if (i == MS_FLOW_N)
			break;
	}
	if (l == NULL) {
		for (i = 0; i < MS_FLOW_N; i++)
			total += (len[i] = strlen(met_s(k.str[i])) + 1);
		if ((l = calloc(1, sizeof(*l) + total)) == NULL)
			return NULL;
		p = l->l_buf;
		for (i = 0; i < MS_FLOW_N; i++) {
			memcpy(p, met_s(k.str[i]), len[i]);
			l->l_str[i] = p;
			p += len[i];
		}
		l->l_sh = sh;
		l->l_hash = h;
		l->l_side = (uint8_t)c->side;
		if (sh->sh_test.mt_label_sets >= sh->sh_ltabsize * 2)
			met_labels_grow(sh);
		l->l_next = sh->sh_ltab[h & (sh->sh_ltabsize - 1)];
		sh->sh_ltab[h & (sh->sh_ltabsize - 1)] = l;
		sh->sh_test.mt_label_sets++;
	}
	if (l->l_tcp == NULL) {
		met_labels_key(l, MET_TCP, 0, &k);
		if ((l->l_tcp = met_get(sh, &k, met_now())) != NULL)
			l->l_tcp->s_refs++;
	}
	l->l_refs++;
	return l;
}

/* Drop a reference to l; its last one frees it and lets its series go. */
static void
met_labels_put(struct met_labels *l, int64_t now)
{
	struct weft_metrics_shard *sh = l->l_sh;
	struct met_labels **pp;

	if (--l->l_refs > 0)
		return;
	for (pp = &sh->sh_ltab[l->l_hash & (sh->sh_ltabsize - 1)]; *pp != l;
	    pp = &(*pp)->l_next)
		;
	*pp = l->l_next;
	sh->sh_test.mt_label_sets--;
	met_unref(l->l_tcp, now);
	met_unref(l->l_edge, now);
	free(l);
}

/* The registry goes (weft_metrics_free): sets some flow still holds. */
static void
met_labels_free_all(struct weft_metrics_shard *sh)
{
	struct met_labels *l, *next;
	size_t i;

	for (i = 0; sh->sh_ltab != NULL && i < sh->sh_ltabsize; i++) {
		for (l = sh->sh_ltab[i]; l != NULL; l = next) {
			next = l->l_next;
			free(l);
		}
	}
	free(sh->sh_ltab);
	sh->sh_ltab = NULL;
	sh->sh_test.mt_label_sets = 0;
}

struct weft_metrics_flow *
weft_metrics_flow_new(struct weft_metrics_shard *sh,
    const struct weft_metrics_conn *c)
{
	struct weft_metrics_flow *f;

	if (sh == NULL)
		return NULL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return NULL;
	if ((f->f_lab = met_labels_get(sh, c)) == NULL) {
		free(f);
		return NULL;
	}
	if (f->f_lab->l_tcp != NULL)
		ADD(f->f_lab->l_tcp->s_v.tcp.opened, 1);
	return f;
}

void
weft_metrics_flow_request(struct weft_metrics_shard *sh,
    struct weft_metrics_flow *f, int status, double duration_s,
    const char *deny_reason)
{
	struct met_labels *l;
	struct met_key k;
	struct met_series *s = NULL;
	int64_t now;
	bool have_lat;
	double d;
	size_t i;

	if (sh == NULL || f == NULL)
		return;
	l = f->f_lab;
	now = met_now();
	have_lat = met_lat(status, duration_s);
	d = have_lat ? duration_s : 0;
	status = met_status(status);
	for (i = 0; i < FLOW_REQ_CACHE && f->f_req[i] != NULL; i++)
		if (f->f_req[i]->s_status == status) {
			s = f->f_req[i];
			break;
		}
	if (s == NULL) {
		met_labels_key(l, MET_REQ, status, &k);
		if ((s = met_get(sh, &k, now)) != NULL) {
			s->s_refs++;
			i = FLOW_REQ_CACHE - 1;
			met_unref(f->f_req[i], now);
		}
	}
	if (s != NULL) {
		/* most recent first */
		for (; i > 0; i--)
			f->f_req[i] = f->f_req[i - 1];
		f->f_req[0] = s;
		s->s_last = now;
		met_req_add(s, have_lat, d);
	}
	if (deny_reason != NULL) {
		met_labels_key(l, MET_DENY, 0, &k);
		k.str[MS_REASON] = *deny_reason ? deny_reason : "denied";
		if ((s = met_get(sh, &k, now)) != NULL)
			ADD(s->s_v.deny.count, 1);
	}
	if (l->l_edge == NULL) {
		met_labels_key(l, MET_EDGE, 0, &k);
		if ((l->l_edge = met_get(sh, &k, now)) != NULL)
			l->l_edge->s_refs++;
	}
	if (l->l_edge != NULL) {
		l->l_edge->s_last = now;
		met_edge_add(l->l_edge, status, have_lat, d);
	}
}

void
weft_metrics_flow_close(struct weft_metrics_shard *sh,
    struct weft_metrics_flow *f, uint64_t sent, uint64_t received)
{
	struct met_series *t;
	int64_t now;
	size_t i;

	if (f == NULL)
		return;
	now = met_now();
	for (i = 0; i < FLOW_REQ_CACHE; i++)
		met_unref(f->f_req[i], now);
	if (sh != NULL && (t = f->f_lab->l_tcp) != NULL) {
		ADD(t->s_v.tcp.closed, 1);
		ADD(t->s_v.tcp.sent, sent);
		ADD(t->s_v.tcp.received, received);
	}
	met_labels_put(f->f_lab, now);
	free(f);
}

enum weft_metrics_side
weft_metrics_flow_side(const struct weft_metrics_flow *f)
{
	return (enum weft_metrics_side)f->f_lab->l_side;
}

const struct weft_metrics_test *
weft_metrics_test_hooks(struct weft_metrics_shard *sh)
{
	sh->sh_test.mt_flow_size = sizeof(struct weft_metrics_flow);
	sh->sh_test.mt_labels_size = sizeof(struct met_labels);
	return &sh->sh_test;
}

/* --- latency histograms --------------------------------------------------- */

#define LAT_BASE	50e-6		/* upper bound of bucket 0 / 2^(1/4) */
#define LAT_PER_OCTAVE	4

/* The finite upper bounds, computed once: a lookup is then a binary
 * search, no log2 on the data path. */
static double lat_upper[WEFT_LAT_NBUCKETS - 1];
static pthread_once_t lat_once = PTHREAD_ONCE_INIT;

static void
lat_init(void)
{
	size_t i;

	for (i = 0; i < WEFT_LAT_NBUCKETS - 1; i++)
		lat_upper[i] = LAT_BASE * exp2((double)(i + 1) / LAT_PER_OCTAVE);
}

double
weft_lat_bucket_upper(size_t i)
{
	if (i >= WEFT_LAT_NBUCKETS - 1)
		return INFINITY;
	pthread_once(&lat_once, lat_init);
	return lat_upper[i];
}

double
weft_lat_bucket_lower(size_t i)
{
	if (i == 0)
		return 0;
	if (i > WEFT_LAT_NBUCKETS - 1)
		i = WEFT_LAT_NBUCKETS - 1;
	return weft_lat_bucket_upper(i - 1);
}

size_t
weft_lat_bucket(double s)
{
	size_t lo = 0, hi = WEFT_LAT_NBUCKETS - 1, mid;

	if (!(s > 0))
		return 0;
	pthread_once(&lat_once, lat_init);
	/* the first bound >= s (upper-inclusive); none: the overflow */
	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (lat_upper[mid] < s)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

double
weft_lat_quantile(const struct weft_lat_hist *h, double q)
{
	uint64_t total = 0, cum = 0;
	double rank, lo, hi;
	size_t i;

	for (i = 0; i < WEFT_LAT_NBUCKETS; i++)
		total += h->lh_count[i];
	if (total == 0 || !(q > 0))
		return -1;
	if (q > 1)
		q = 1;
	rank = q * (double)total;
	for (i = 0; i < WEFT_LAT_NBUCKETS; i++) {
		uint64_t c = h->lh_count[i];

		if (c == 0 || (double)(cum + c) < rank) {
			cum += c;
			continue;
		}
		lo = weft_lat_bucket_lower(i);
		if (i == WEFT_LAT_NBUCKETS - 1)
			return lo;	/* overflow: no upper bound */
		hi = weft_lat_bucket_upper(i);
		return lo + (hi - lo) * ((rank - (double)cum) / (double)c);
	}
	return weft_lat_bucket_lower(WEFT_LAT_NBUCKETS - 1);
}

const double *
weft_metrics_buckets(size_t *n)
{
	*n = MET_NBUCKETS;
	return met_bounds;
}

/* --- exposition ----------------------------------------------------------- */

void
weft_metrics_escape(struct evbuffer *out, const char *v, bool help)
{
	const char *p, *run;

	for (run = p = v; *p != '\0'; p++) {
		const char *rep = NULL;

		if (*p == '\\')
			rep = "\\\\";
		else if (*p == '\n')
			rep = "\\n";
		else if (*p == '"' && !help)
			rep = "\\\"";
		if (rep == NULL)
			continue;
		evbuffer_add(out, run, (size_t)(p - run));
		evbuffer_add(out, rep, 2);
		run = p + 1;
	}
	evbuffer_add(out, run, (size_t)(p - run));
}

void
weft_metrics_put_value(struct evbuffer *out, double v)
{
	if (isnan(v))
		MET_ADDS(out, "NaN");
	else if (isinf(v))
		evbuffer_add_printf(out, "%cInf", v > 0 ? '+' : '-');
	else if (v == floor(v) && fabs(v) < 9007199254740992.0)
		evbuffer_add_printf(out, "%.0f", v);
	else
		evbuffer_add_printf(out, "%.17g", v);
}

void
weft_metrics_family(struct evbuffer *out, const char *name, const char *type,
    const char *help)
{
	evbuffer_add_printf(out, "# HELP %s ", name);
	weft_metrics_escape(out, help, true);
	evbuffer_add_printf(out, "\n# TYPE %s %s\n", name, type);
}

static const char *
met_side_name(int side)
{
	return side == WEFT_METRICS_INBOUND ? "inbound" : "outbound";
}

static const char *
met_lv(const char *s)
{
	return *s != '\0' ? s : "unknown";
}

/* {direction=...,...[,status_code|reason][,le] without the closing brace */
static void
met_labels(struct evbuffer *out, const struct met_series *s)
{
	static const struct {
		const char *name;
		enum met_str idx;
	} ids[] = {
		{ "source_namespace", MS_SRC_NS },
		{ "source_service_account", MS_SRC_SA },
		{ "destination_namespace", MS_DST_NS },
		{ "destination_service_account", MS_DST_SA },
		{ "destination_service", MS_SERVICE },
	};
	size_t i;

	evbuffer_add_printf(out, "{direction=\"%s\"", met_side_name(s->s_side));
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		evbuffer_add_printf(out, ",%s=\"", ids[i].name);
		weft_metrics_escape(out, met_lv(s->s_str[ids[i].idx]), false);
		MET_ADDS(out, "\"");
	}
	if (s->s_kind == MET_REQ)
		evbuffer_add_printf(out, ",status_code=\"%d\"", s->s_status);
	else if (s->s_kind == MET_DENY) {
		MET_ADDS(out, ",reason=\"");
		weft_metrics_escape(out, met_lv(s->s_str[MS_REASON]), false);
		MET_ADDS(out, "\"");
	}
}

static int
met_cmp(const void *a, const void *b)
{
	const struct met_series *x = *(const struct met_series *const *)a;
	const struct met_series *y = *(const struct met_series *const *)b;
	size_t i;
	int c;

	if (x->s_kind != y->s_kind)
		return x->s_kind < y->s_kind ? -1 : 1;
	if (x->s_side != y->s_side)
		return x->s_side < y->s_side ? -1 : 1;
	for (i = 0; i < MS_N; i++)
		if ((c = strcmp(x->s_str[i], y->s_str[i])) != 0)
			return c;
	if (x->s_status != y->s_status)
		return x->s_status < y->s_status ? -1 : 1;
	return 0;
}

/* Sums of one label set over the shards. */
struct met_sum {
	uint64_t	 v[4];
	uint64_t	 bucket[MET_NBUCKETS + 1];
};

static void
met_add(struct met_sum *t, const struct met_series *s)
{
	size_t i;

	switch (s->s_kind) {
	case MET_REQ:
		t->v[0] += RD(s->s_v.req.count);
		t->v[1] += RD(s->s_v.req.sum_ns);
		for (i = 0; i <= MET_NBUCKETS; i++)
			t->bucket[i] += RD(s->s_v.req.bucket[i]);
		break;
	case MET_DENY:
		t->v[0] += RD(s->s_v.deny.count);
		break;
	case MET_TCP:
		t->v[0] += RD(s->s_v.tcp.opened);
		t->v[1] += RD(s->s_v.tcp.closed);
		t->v[2] += RD(s->s_v.tcp.sent);
		t->v[3] += RD(s->s_v.tcp.received);
		break;
	}
}

static void
met_lock_all(struct weft_metrics *m)
{
	int i;

	for (i = 0; i < m->m_nshards; i++)
		pthread_mutex_lock(&m->m_shards[i].sh_mu);
}

static void
met_unlock_all(struct weft_metrics *m)
{
	int i;

	for (i = m->m_nshards - 1; i >= 0; i--)
		pthread_mutex_unlock(&m->m_shards[i].sh_mu);
}

/* Every series of kind (all shards; the caller holds every mutex), sorted
 * so that equal label sets are adjacent.  *out NULL when there is none. */
static int
met_collect(struct weft_metrics *m, enum met_kind kind,
    struct met_series ***out, size_t *nout)
{
	struct met_series *s, **v = NULL;
	size_t n = 0, cap = 0;
	int i;

	*out = NULL;
	*nout = 0;
	for (i = 0; i < m->m_nshards; i++) {
		for (s = m->m_shards[i].sh_head; s != NULL; s = s->s_next) {
			if (s->s_kind != kind)
				continue;
			if (n == cap) {
				struct met_series **nv;

				cap = cap ? cap * 2 : 64;
				if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
					free(v);
					return -1;
				}
				v = nv;
			}
			v[n++] = s;
		}
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), met_cmp);
	*out = v;
	*nout = n;
	return 0;
}

static void
met_write_counter(struct evbuffer *out, const char *name,
    const struct met_series *s, uint64_t v)
{
	evbuffer_add_printf(out, "%s", name);
	met_labels(out, s);
	evbuffer_add_printf(out, "} %" PRIu64 "\n", v);
}

static void
met_write_histogram(struct evbuffer *out, const struct met_series *s,
    const struct met_sum *t)
{
	static const char name[] = "weft_request_duration_seconds";
	uint64_t cum = 0;
	size_t i;

	for (i = 0; i <= MET_NBUCKETS; i++) {
		cum += t->bucket[i];
		evbuffer_add_printf(out, "%s_bucket", name);
		met_labels(out, s);
		if (i < MET_NBUCKETS)
			evbuffer_add_printf(out, ",le=\"%g\"} %" PRIu64 "\n",
			    met_bounds[i], cum);
		else
			evbuffer_add_printf(out, ",le=\"+Inf\"} %" PRIu64 "\n",
			    cum);
	}
	evbuffer_add_printf(out, "%s_sum", name);
	met_labels(out, s);
	MET_ADDS(out, "} ");
	weft_metrics_put_value(out, (double)t->v[1] / 1e9);
	/* _count is the +Inf bucket, so that the two always agree */
	evbuffer_add_printf(out, "\n%s_count", name);
	met_labels(out, s);
	evbuffer_add_printf(out, "} %" PRIu64 "\n", cum);
}

int
weft_metrics_write_prometheus(struct weft_metrics *m, struct evbuffer *out)
{
	static const char *const tcp_names[4] = {
		"weft_tcp_connections_opened_total",
		"weft_tcp_connections_closed_total",
		"weft_tcp_sent_bytes_total",
		"weft_tcp_received_bytes_total",
	};
	static const char *const tcp_help[4] = {
		"TCP connections opened, by the side that proxied them (direction).",
		"TCP connections closed, by the side that proxied them (direction).",
		"Bytes from the connection's client to its server.",
		"Bytes from the connection's server to its client.",
	};
	struct met_series **req = NULL, **deny = NULL, **tcp = NULL;
	size_t nreq = 0, ndeny = 0, ntcp = 0, i, j, k;
	struct met_sum *sums = NULL;
	int rc = -1;

	if (m != NULL) {
		met_lock_all(m);
		if (met_collect(m, MET_REQ, &req, &nreq) == -1 ||
		    met_collect(m, MET_DENY, &deny, &ndeny) == -1 ||
		    met_collect(m, MET_TCP, &tcp, &ntcp) == -1)
			goto out;
		k = nreq > ntcp ? nreq : ntcp;
		if (ndeny > k)
			k = ndeny;
		if (k > 0 && (sums = calloc(k, sizeof(*sums))) == NULL)
			goto out;
	}

	/* Requests: counts, then the histograms of the same label sets.
	 * sums[k] holds the k-th distinct label set. */
	weft_metrics_family(out, "weft_requests_total", "counter",
	    "HTTP requests, by the side that measured them (direction: "
	    "outbound at the caller's node, inbound at the callee's) and "
	    "response status (0: no response).");
	for (i = k = 0; i < nreq; i = j, k++) {
		for (j = i; j < nreq && met_cmp(&req[i], &req[j]) == 0; j++)
			met_add(&sums[k], req[j]);
		met_write_counter(out, "weft_requests_total", req[i],
		    sums[k].v[0]);
	}
	weft_metrics_family(out, "weft_request_duration_seconds", "histogram",
	    "HTTP request latency: first request byte to the end of the "
	    "response head (SMI A-19).");
	for (i = k = 0; i < nreq; i = j, k++) {
		for (j = i; j < nreq && met_cmp(&req[i], &req[j]) == 0; j++)
			;
		if (req[i]->s_status != 0)
			met_write_histogram(out, req[i], &sums[k]);
	}

	weft_metrics_family(out, "weft_policy_denials_total", "counter",
	    "Requests and connections the proxy denied by policy (SMI "
	    "access control), by reason.");
	if (ndeny > 0)
		memset(sums, 0, ndeny * sizeof(*sums));
	for (i = k = 0; i < ndeny; i = j, k++) {
		for (j = i; j < ndeny && met_cmp(&deny[i], &deny[j]) == 0; j++)
			met_add(&sums[k], deny[j]);
		met_write_counter(out, "weft_policy_denials_total", deny[i],
		    sums[k].v[0]);
	}

	if (ntcp > 0)
		memset(sums, 0, ntcp * sizeof(*sums));
	for (i = k = 0; i < ntcp; i = j, k++)
		for (j = i; j < ntcp && met_cmp(&tcp[i], &tcp[j]) == 0; j++)
			met_add(&sums[k], tcp[j]);
	for (size_t f = 0; f < 4; f++) {
		weft_metrics_family(out, tcp_names[f], "counter", tcp_help[f]);
		for (i = k = 0; i < ntcp; i = j, k++) {
			for (j = i; j < ntcp &&
			    met_cmp(&tcp[i], &tcp[j]) == 0; j++)
				;
			met_write_counter(out, tcp_names[f], tcp[i],
			    sums[k].v[f]);
		}
	}
	rc = 0;
out:
	if (m != NULL)
		met_unlock_all(m);
	free(req);
	free(deny);
	free(tcp);
	free(sums);
	if (rc == -1)
		errno = ENOMEM;
	return rc;
}

/* --- edges for the controller -------------------------------------------- */

static void
met_json_str(struct evbuffer *out, const char *s)
{
	const unsigned char *p;

	MET_ADDS(out, "\"");
	for (p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(out, "\\%c", *p);
		else if (*p < 0x20)
			evbuffer_add_printf(out, "\\u%04x", *p);
		else
			evbuffer_add(out, p, 1);
	}
	MET_ADDS(out, "\"");
}

/*
 * {"node":"n1","edges":[{"side":"client"|"server",
 *   "src":{"namespace","serviceAccount","pod"},
 *   "dst":{"namespace","serviceAccount","pod"},
 *   "service":"", "apex":"", "success":N, "failure":N,
 *   "latency":[[bucket,count],...]}, ...]}
 * Unknown strings are "".  Buckets are weft_lat_bucket()'s.
 */
char *
weft_metrics_edges_delta(struct weft_metrics *m, const char *node,
    size_t *nedges)
{
	struct evbuffer *out;
	struct met_series *s;
	uint64_t cur[2 + WEFT_LAT_NBUCKETS];
	size_t n = 0, len, b;
	char *json = NULL;
	int i;
	bool first;

	*nedges = 0;
	if ((out = evbuffer_new()) == NULL)
		return NULL;
	MET_ADDS(out, "{\"node\":");
	met_json_str(out, node != NULL ? node : "");
	MET_ADDS(out, ",\"edges\":[");
	for (i = 0; m != NULL && i < m->m_nshards; i++) {
		struct weft_metrics_shard *sh = &m->m_shards[i];

		pthread_mutex_lock(&sh->sh_mu);
		for (s = sh->sh_head; s != NULL; s = s->s_next) {
			struct met_edge *e = s->s_edge;
			bool any = false;

			if (s->s_kind != MET_EDGE)
				continue;
			if (n == WEFT_METRICS_PUSH_MAX) {
				/* the rest goes with the next push */
				memcpy(e->e_pending, e->e_pushed,
				    sizeof(e->e_pending));
				continue;
			}
			cur[0] = RD(e->e_success);
			cur[1] = RD(e->e_failure);
			for (b = 0; b < WEFT_LAT_NBUCKETS; b++)
				cur[2 + b] = RD(e->e_lat[b]);
			for (b = 0; b < 2 + WEFT_LAT_NBUCKETS; b++) {
				e->e_pending[b] = cur[b];
				if (cur[b] != e->e_pushed[b])
					any = true;
			}
			if (!any)
				continue;
			if (n++ > 0)
				MET_ADDS(out, ",");
			evbuffer_add_printf(out, "{\"side\":\"%s\",\"src\":"
			    "{\"namespace\":", s->s_side ==
			    WEFT_METRICS_INBOUND ? "server" : "client");
			met_json_str(out, s->s_str[MS_SRC_NS]);
			MET_ADDS(out, ",\"serviceAccount\":");
			met_json_str(out, s->s_str[MS_SRC_SA]);
			MET_ADDS(out, ",\"pod\":");
			met_json_str(out, s->s_str[MS_SRC_POD]);
			MET_ADDS(out, "},\"dst\":{\"namespace\":");
			met_json_str(out, s->s_str[MS_DST_NS]);
			MET_ADDS(out, ",\"serviceAccount\":");
			met_json_str(out, s->s_str[MS_DST_SA]);
			MET_ADDS(out, ",\"pod\":");
			met_json_str(out, s->s_str[MS_DST_POD]);
			MET_ADDS(out, "},\"service\":");
			met_json_str(out, s->s_str[MS_SERVICE]);
			MET_ADDS(out, ",\"apex\":");
			met_json_str(out, s->s_str[MS_APEX]);
			evbuffer_add_printf(out, ",\"success\":%" PRIu64
			    ",\"failure\":%" PRIu64 ",\"latency\":[",
			    cur[0] - e->e_pushed[0], cur[1] - e->e_pushed[1]);
			first = true;
			for (b = 0; b < WEFT_LAT_NBUCKETS; b++) {
				uint64_t d = cur[2 + b] - e->e_pushed[2 + b];

				if (d == 0)
					continue;
				evbuffer_add_printf(out, "%s[%zu,%" PRIu64 "]",
				    first ? "" : ",", b, d);
				first = false;
			}
			MET_ADDS(out, "]}");
		}
		pthread_mutex_unlock(&sh->sh_mu);
	}
	MET_ADDS(out, "]}");
	len = evbuffer_get_length(out);
	if ((json = malloc(len + 1)) != NULL) {
		evbuffer_remove(out, json, len);
		json[len] = '\0';
		*nedges = n;
	}
	evbuffer_free(out);
	return json;
}

void
weft_metrics_edges_commit(struct weft_metrics *m)
{
	struct met_series *s;
	int i;

	for (i = 0; m != NULL && i < m->m_nshards; i++) {
		struct weft_metrics_shard *sh = &m->m_shards[i];

		pthread_mutex_lock(&sh->sh_mu);
		for (s = sh->sh_head; s != NULL; s = s->s_next)
			if (s->s_kind == MET_EDGE)
				memcpy(s->s_edge->e_pushed, s->s_edge->e_pending,
				    sizeof(s->s_edge->e_pushed));
		pthread_mutex_unlock(&sh->sh_mu);
	}
}
