/* Client-side load balancing and TrafficSplit (weft/balance.h).
 *
 * Weighted choice: a uniform draw in [0, sum of eligible weights), without
 * modulo bias (Lemire's multiply-and-reject), from a per-worker
 * xoshiro256** generator: reproducible under a fixed seed, which is what
 * the statistical unit test needs, and no lock or syscall per draw.
 *
 * Weights are what the controller normalised (SPEC §8.3: at most 2^32-1
 * each, so sums of many backends stay far below 2^64).  The balancer does
 * not reduce them further: a share is w / Σw over the eligible backends
 * per request or connection, per client. */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <netinet/in.h>

#include "weft/balance.h"
#include "weft/gen.h"
#include "weft/policy.h"
#include "weft/snapshot.h"

#define LB_BUCKETS		1024	/* endpoint records: a chained hash */
#define LB_STACK_EPS		64	/* endpoints looked at on the stack */
#define LB_STACK_BACKENDS	16

struct weft_lb_ep {
	struct weft_lb_ep *e_next;		/* hash chain */
	struct weft_ip	 e_ip;
	uint16_t	 e_port;
	unsigned	 e_outstanding;
	unsigned	 e_fails;		/* refusals since the last success */
	int64_t		 e_ejected_until;	/* ms; 0: never ejected */
	int64_t		 e_last_used;		/* ms */
};

struct weft_lb {
	uint64_t	 lb_s[4];		/* xoshiro256** state */
	struct weft_lb_ep *lb_buckets[LB_BUCKETS];
	size_t		 lb_n;
};

/* --- random numbers --------------------------------------------------------- */

static uint64_t
lb_splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t
lb_rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t
lb_next(struct weft_lb *lb)
{
	uint64_t *s = lb->lb_s, r = lb_rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = lb_rotl(s[3], 45);
	return r;
}

void
weft_lb_seed(struct weft_lb *lb, uint64_t seed)
{
	int i;

	for (i = 0; i < 4; i++)
		lb->lb_s[i] = lb_splitmix(&seed);
}

uint64_t
weft_lb_below(struct weft_lb *lb, uint64_t n)
{
	unsigned __int128 m;
	uint64_t x, lo, t;

	if (n <= 1)
		return 0;
	if (lb == NULL) {
		if (n <= UINT32_MAX)
			return arc4random_uniform((uint32_t)n);
		x = ((uint64_t)arc4random() << 32) | arc4random();
		return x % n;	/* n > 2^32 never happens for weights */
	}
	x = lb_next(lb);
	m = (unsigned __int128)x * n;
	lo = (uint64_t)m;
	if (lo < n) {
		t = -n % n;
		while (lo < t) {
			x = lb_next(lb);
			m = (unsigned __int128)x * n;
			lo = (uint64_t)m;
		}
	}
	return (uint64_t)(m >> 64);
}

int64_t
weft_lb_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- endpoint records --------------------------------------------------------- */

struct weft_lb *
weft_lb_new(uint64_t seed)
{
	struct weft_lb *lb;

	if ((lb = calloc(1, sizeof(*lb))) == NULL)
		return NULL;
	if (seed == 0)
		seed = ((uint64_t)arc4random() << 32) | arc4random();
	weft_lb_seed(lb, seed);
	return lb;
}

void
weft_lb_free(struct weft_lb *lb)
{
	struct weft_lb_ep *e, *next;
	size_t i;

	if (lb == NULL)
		return;
	for (i = 0; i < LB_BUCKETS; i++)
		for (e = lb->lb_buckets[i]; e != NULL; e = next) {
			next = e->e_next;
			free(e);
		}
	free(lb);
}

static size_t
lb_hash(const struct weft_ip *ip, uint16_t port)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i, n = weft_ip_len(ip);

	for (i = 0; i < n; i++)
		h = (h ^ ip->bytes[i]) * 0x100000001b3ULL;
	h = (h ^ port) * 0x100000001b3ULL;
	return (size_t)(h ^ (h >> 32)) % LB_BUCKETS;
}

static bool
lb_ip_eq(const struct weft_ip *a, const struct weft_ip *b)
{
	return a->family == b->family &&
	    memcmp(a->bytes, b->bytes, weft_ip_len(a)) == 0;
}

struct weft_lb_ep *
weft_lb_ep_get(struct weft_lb *lb, const struct weft_ip *ip, uint16_t port)
{
	struct weft_lb_ep *e;
	size_t h = lb_hash(ip, port);

	for (e = lb->lb_buckets[h]; e != NULL; e = e->e_next)
		if (e->e_port == port && lb_ip_eq(&e->e_ip, ip))
			return e;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	e->e_ip = *ip;
	e->e_port = port;
	e->e_next = lb->lb_buckets[h];
	lb->lb_buckets[h] = e;
	lb->lb_n++;
	return e;
}

void
weft_lb_ep_acquire(struct weft_lb_ep *e)
{
	e->e_outstanding++;
}

void
weft_lb_ep_release(struct weft_lb_ep *e)
{
	if (e->e_outstanding > 0)
		e->e_outstanding--;
	e->e_last_used = weft_lb_now_ms();
}

unsigned
weft_lb_ep_outstanding(const struct weft_lb_ep *e)
{
	return e->e_outstanding;
}

void
weft_lb_ep_failed(struct weft_lb_ep *e, int64_t now_ms)
{
	int64_t ms = WEFT_LB_EJECT_BASE_MS;
	unsigned i;

	for (i = 0; i < e->e_fails && ms < WEFT_LB_EJECT_MAX_MS; i++)
		ms *= 2;
	if (ms > WEFT_LB_EJECT_MAX_MS)
		ms = WEFT_LB_EJECT_MAX_MS;
	e->e_fails++;
	e->e_ejected_until = now_ms + ms;
	e->e_last_used = now_ms;
}

void
weft_lb_ep_succeeded(struct weft_lb_ep *e)
{
	e->e_fails = 0;
	e->e_ejected_until = 0;
}

bool
weft_lb_ep_ejected(const struct weft_lb_ep *e, int64_t now_ms)
{
	return e->e_ejected_until > now_ms;
}

int64_t
weft_lb_ep_ejected_for(const struct weft_lb_ep *e, int64_t now_ms)
{
	return e->e_ejected_until > now_ms ? e->e_ejected_until - now_ms : 0;
}

size_t
weft_lb_sweep(struct weft_lb *lb, int64_t now_ms)
{
	struct weft_lb_ep **pe, *e;
	size_t i;

	for (i = 0; i < LB_BUCKETS; i++) {
		pe = &lb->lb_buckets[i];
		while ((e = *pe) != NULL) {
			if (e->e_outstanding == 0 &&
			    e->e_ejected_until <= now_ms &&
			    now_ms - e->e_last_used > WEFT_LB_IDLE_MS) {
				*pe = e->e_next;
				free(e);
				lb->lb_n--;
				continue;
			}
			pe = &e->e_next;
		}
	}
	return lb->lb_n;
}

/* --- protocol of a port ------------------------------------------------------- */

static bool
lb_is_name(const char *s, const char *proto)
{
	size_t n = strlen(proto);

	return s != NULL && strncasecmp(s, proto, n) == 0 &&
	    (s[n] == '\0' || s[n] == '-');
}

enum weft_lb_proto
weft_lb_port_proto(const struct weft_service_port *sp)
{
	static const char *const opaque[] = { "tcp", "tls", "https", "grpc",
	    "http2", "h2c", "mysql", "mongo", "redis", "postgres" };
	const char *ap = sp->app_protocol;
	size_t i;

	if (sp->protocol != IPPROTO_TCP)
		return WEFT_LB_PROTO_TCP;
	if (ap != NULL && *ap != '\0') {
		/* "http", and the Kubernetes name for HTTP/1.1 */
		if (strcasecmp(ap, "http") == 0 ||
		    strcasecmp(ap, "kubernetes.io/http") == 0)
			return WEFT_LB_PROTO_HTTP;
		return WEFT_LB_PROTO_TCP;
	}
	if (lb_is_name(sp->name, "http"))
		return WEFT_LB_PROTO_HTTP;
	for (i = 0; i < sizeof(opaque) / sizeof(opaque[0]); i++)
		if (lb_is_name(sp->name, opaque[i]))
			return WEFT_LB_PROTO_TCP;
	return WEFT_LB_PROTO_UNKNOWN;
}

const char *
weft_lb_status_name(enum weft_lb_status s)
{
	switch (s) {
	case WEFT_LB_OK:
		return "ok";
	case WEFT_LB_NO_ENDPOINT:
		return "no-endpoint";
	case WEFT_LB_ALL_ZERO:
		return "all-weights-zero";
	case WEFT_LB_NOMEM:
		return "out-of-memory";
	}
	return "?";
}

/* --- step 1: the backend ------------------------------------------------------ */

static const struct weft_service_port *
lb_port_by_number(const struct weft_snap_service *svc, uint16_t port,
    int protocol)
{
	size_t i;

	for (i = 0; i < svc->n_ports; i++)
		if (svc->ports[i].port == port &&
		    svc->ports[i].protocol == protocol)
			return &svc->ports[i];
	return NULL;
}

static enum weft_lb_status __attribute__((format(printf, 3, 4)))
lb_fail(struct weft_lb_choice *c, enum weft_lb_status st, const char *fmt,
    ...)
{
	va_list ap;

	c->status = st;
	va_start(ap, fmt);
	vsnprintf(c->why, sizeof(c->why), fmt, ap);
	va_end(ap);
	return st;
}

/* The split for this request or connection, or NULL. */
static const struct weft_smi_split *
lb_split_for(const struct weft_gen *g, const struct weft_snap_service *root,
    const struct weft_policy_http *req)
{
	const struct weft_smi_split *const *sp, *all = NULL;
	size_t i, n;

	n = weft_gen_splits(g, root->namespace, root->name, &sp);
	for (i = 0; i < n; i++) {
		if (sp[i]->n_match_groups == 0) {
			if (all == NULL)
				all = sp[i];
			continue;
		}
		/* matches: HTTP requests only, the first match wins */
		if (req != NULL && weft_policy_match_groups(weft_gen_policy(g),
		    sp[i]->namespace, sp[i]->match_groups,
		    sp[i]->n_match_groups, req))
			return sp[i];
	}
	return all;
}

enum weft_lb_status
weft_lb_backend(struct weft_lb *lb, const struct weft_gen *g,
    const struct weft_snap_service *root,
    const struct weft_service_port *root_port,
    const struct weft_policy_http *req, struct weft_lb_choice *c)
{
	const struct weft_snap_service *stack_svc[LB_STACK_BACKENDS], **svcs;
	const struct weft_service_port *stack_port[LB_STACK_BACKENDS], **ports;
	uint64_t stack_w[LB_STACK_BACKENDS], *w, sum = 0, zsum = 0, r;
	const struct weft_smi_split *split;
	size_t i, n, k = 0;

	memset(c, 0, sizeof(*c));
	c->root = root;
	c->root_port = root_port;
	c->backend = root;
	c->port = root_port;
	if ((split = lb_split_for(g, root, req)) == NULL) {
		if (weft_gen_service_endpoints(g, root, root_port, NULL, 0) == 0)
			return lb_fail(c, WEFT_LB_NO_ENDPOINT,
			    "service %s/%s has no ready endpoint",
			    root->namespace, root->name);
		return c->status = WEFT_LB_OK;
	}
	c->split = split;
	n = split->n_backends;
	svcs = stack_svc;
	ports = stack_port;
	w = stack_w;
	if (n > LB_STACK_BACKENDS) {
		svcs = calloc(n, sizeof(*svcs));
		ports = calloc(n, sizeof(*ports));
		w = calloc(n, sizeof(*w));
		if (svcs == NULL || ports == NULL || w == NULL) {
			free(svcs);
			free(ports);
			free(w);
			return lb_fail(c, WEFT_LB_NOMEM, "out of memory");
		}
	}
	for (i = 0; i < n; i++) {
		const struct weft_smi_split_backend *b = &split->backends[i];
		const struct weft_snap_service *svc;
		const struct weft_service_port *p;

		zsum += b->weight;
		if (b->weight == 0 || b->service == NULL)
			continue;
		/* the root as its own backend is a plain Service */
		if (strcmp(b->service, root->name) == 0)
			svc = root;
		else if ((svc = weft_gen_service_by_name(g, split->namespace,
		    b->service)) == NULL)
			continue;
		/* §5.2: the same port NUMBER, each with its own targetPort */
		if ((p = lb_port_by_number(svc, root_port->port,
		    root_port->protocol)) == NULL)
			continue;
		if (weft_gen_service_endpoints(g, svc, p, NULL, 0) == 0)
			continue;
		svcs[k] = svc;
		ports[k] = p;
		w[k] = b->weight;
		sum += b->weight;
		k++;
	}
	if (zsum == 0)
		lb_fail(c, WEFT_LB_ALL_ZERO, "every weight of TrafficSplit %s/%s "
		    "is 0", split->namespace, split->name);
	else if (k == 0)
		lb_fail(c, WEFT_LB_NO_ENDPOINT, "no backend of TrafficSplit "
		    "%s/%s has a ready endpoint on this port", split->namespace,
		    split->name);
	else {
		r = weft_lb_below(lb, sum);
		for (i = 0; i + 1 < k && r >= w[i]; i++)
			r -= w[i];
		c->backend = svcs[i];
		c->port = ports[i];
		c->status = WEFT_LB_OK;
	}
	if (svcs != stack_svc) {
		free(svcs);
		free(ports);
		free(w);
	}
	return c->status;
}

/* --- step 2: the endpoint ----------------------------------------------------- */

size_t
weft_lb_p2c(struct weft_lb *lb, const unsigned *load, size_t n)
{
	size_t i, j;

	if (n <= 1)
		return 0;
	i = (size_t)weft_lb_below(lb, n);
	j = (size_t)weft_lb_below(lb, n - 1);
	if (j >= i)
		j++;
	/* the less loaded; a tie keeps the first draw, itself random */
	return load[j] < load[i] ? j : i;
}

enum weft_lb_status
weft_lb_endpoint(struct weft_lb *lb, const struct weft_gen *g,
    struct weft_lb_choice *c, struct weft_lb_ep *const *exclude,
    size_t n_exclude, int64_t now_ms)
{
	struct weft_endpoint stack_eps[LB_STACK_EPS], *eps = stack_eps;
	struct weft_lb_ep *stack_st[LB_STACK_EPS], **st = stack_st;
	unsigned stack_load[LB_STACK_EPS], *load = stack_load;
	size_t stack_ix[LB_STACK_EPS], *ix = stack_ix;
	struct weft_lb_ep *e, *oldest = NULL;
	size_t i, j, n, k = 0, oldest_i = 0;
	bool excluded;

	n = weft_gen_service_endpoints(g, c->backend, c->port, stack_eps,
	    LB_STACK_EPS);
	if (n > LB_STACK_EPS) {
		eps = calloc(n, sizeof(*eps));
		st = calloc(n, sizeof(*st));
		load = calloc(n, sizeof(*load));
		ix = calloc(n, sizeof(*ix));
		if (eps == NULL || st == NULL || load == NULL || ix == NULL) {
			free(eps);
			free(st);
			free(load);
			free(ix);
			return lb_fail(c, WEFT_LB_NOMEM, "out of memory");
		}
		n = weft_gen_service_endpoints(g, c->backend, c->port, eps, n);
	}
	for (i = 0; i < n; i++) {
		if (lb == NULL) {
			st[i] = NULL;
			ix[k] = i;
			load[k++] = 0;
			continue;
		}
		if ((e = weft_lb_ep_get(lb, &eps[i].pod->ip,
		    eps[i].port)) == NULL) {
			st[i] = NULL;
			continue;
		}
		st[i] = e;
		for (j = 0, excluded = false; j < n_exclude && !excluded; j++)
			excluded = exclude[j] == e;
		if (excluded)
			continue;
		if (weft_lb_ep_ejected(e, now_ms)) {
			if (oldest == NULL ||
			    e->e_ejected_until < oldest->e_ejected_until) {
				oldest = e;
				oldest_i = i;
			}
			continue;
		}
		ix[k] = i;
		load[k++] = e->e_outstanding;
	}
	if (k > 0) {
		i = ix[weft_lb_p2c(lb, load, k)];
		c->ep = eps[i];
		c->state = st[i];
		c->status = WEFT_LB_OK;
	} else if (oldest != NULL) {
		/* every candidate is ejected: try the one ejected longest
		 * ago rather than answer 503 for all of them */
		c->ep = eps[oldest_i];
		c->state = oldest;
		c->status = WEFT_LB_OK;
	} else if (n == 0)
		lb_fail(c, WEFT_LB_NO_ENDPOINT, "service %s/%s has no ready "
		    "endpoint", c->backend->namespace, c->backend->name);
	else
		lb_fail(c, WEFT_LB_NO_ENDPOINT, "every endpoint of service "
		    "%s/%s was tried", c->backend->namespace, c->backend->name);
	if (eps != stack_eps) {
		free(eps);
		free(st);
		free(load);
		free(ix);
	}
	if (c->status == WEFT_LB_OK && c->state != NULL)
		c->state->e_last_used = now_ms;
	return c->status;
}
