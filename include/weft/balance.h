/* Client-side load balancing and SMI TrafficSplit (SPEC §5, §8.3; A-14 ...
 * A-18; DESIGN §3): for a connection or an HTTP request to a service's
 * virtual IP and port, which backend Service and which endpoint.
 *
 * Two steps, both on the caller's generation:
 *
 *  1. weft_lb_backend: the split that applies (for an HTTP request, the
 *     first split with `matches` that the request matches, in
 *     (creationTimestamp, name) order; else the root's catch-all split;
 *     else none: the root's own endpoints), then a backend by weight among
 *     the eligible ones: weight > 0, the Service exists and exposes the
 *     requested port NUMBER, and has a ready endpoint.  A backend that is
 *     the root itself is the root's plain endpoints (no recursion, A-16);
 *     so is every backend: splits are never followed recursively.  All
 *     weights zero, or no eligible backend: no choice (the caller answers
 *     503, or refuses a TCP connection).
 *  2. weft_lb_endpoint: among the backend's ready endpoints, power of two
 *     choices on outstanding work (connections and requests in flight from
 *     this worker), skipping endpoints ejected after refusing a connection
 *     and any the caller already tried.
 *
 * State (struct weft_lb) is per worker thread: endpoint counters, ejection
 * deadlines and the random generator; nothing is locked and nothing is
 * shared.  Endpoint records are keyed by address and port, so they survive
 * generations; weft_lb_sweep drops idle ones.
 *
 * Return convention: 0 / -1, or a pointer / NULL. */
#ifndef WEFT_BALANCE_H
#define WEFT_BALANCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/gen.h"
#include "weft/ip.h"

struct weft_lb;
struct weft_lb_ep;
struct weft_policy_http;

/* Ejection of an endpoint that refused: EJECT_BASE_MS, doubled for each
 * further refusal without a success in between, at most EJECT_MAX_MS. */
#define WEFT_LB_EJECT_BASE_MS	5000
#define WEFT_LB_EJECT_MAX_MS	30000
/* Endpoint records idle (nothing outstanding, not ejected) this long are
 * dropped by weft_lb_sweep. */
#define WEFT_LB_IDLE_MS		300000

/* seed 0: from arc4random.  NULL on allocation failure. */
struct weft_lb *weft_lb_new(uint64_t seed);
/* Every endpoint record is freed: nobody may hold one any more. */
void	weft_lb_free(struct weft_lb *lb);
/* Restart the generator (tests: reproducible draws). */
void	weft_lb_seed(struct weft_lb *lb, uint64_t seed);
/* Uniform in [0, n), n > 0, without modulo bias.  lb NULL: arc4random. */
uint64_t weft_lb_below(struct weft_lb *lb, uint64_t n);

/* CLOCK_MONOTONIC milliseconds: the time base of every *_ms here. */
int64_t	weft_lb_now_ms(void);

/* The record of ip:port (port in host order), created on first use.
 * Borrowed from lb: valid until weft_lb_sweep drops it, which it never does
 * while something is outstanding on it.  NULL on allocation failure. */
struct weft_lb_ep *weft_lb_ep_get(struct weft_lb *lb, const struct weft_ip *ip,
	    uint16_t port);
/* One more / one less unit of outstanding work (a connection or request
 * in flight). */
void	weft_lb_ep_acquire(struct weft_lb_ep *e);
void	weft_lb_ep_release(struct weft_lb_ep *e);
unsigned weft_lb_ep_outstanding(const struct weft_lb_ep *e);
/* It refused a connection (or could not be reached): ejected until now +
 * the backoff.  A success ends the backoff. */
void	weft_lb_ep_failed(struct weft_lb_ep *e, int64_t now_ms);
void	weft_lb_ep_succeeded(struct weft_lb_ep *e);
bool	weft_lb_ep_ejected(const struct weft_lb_ep *e, int64_t now_ms);
/* Milliseconds left of its ejection (0: not ejected). */
int64_t	weft_lb_ep_ejected_for(const struct weft_lb_ep *e, int64_t now_ms);
/* Drop idle records; returns how many are left. */
size_t	weft_lb_sweep(struct weft_lb *lb, int64_t now_ms);

/* How a service port's traffic is recognised (DESIGN §3): appProtocol,
 * else the port name (`http`, `http-*`; `tcp`, `tcp-*`, and the names of
 * other protocols are opaque); UNKNOWN: sniff the first bytes. */
enum weft_lb_proto {
	WEFT_LB_PROTO_UNKNOWN = 0,
	WEFT_LB_PROTO_HTTP,		/* HTTP/1.x: routed per request */
	WEFT_LB_PROTO_TCP,		/* opaque: balanced per connection */
};

enum weft_lb_proto weft_lb_port_proto(const struct weft_service_port *sp);

enum weft_lb_status {
	WEFT_LB_OK = 0,
	WEFT_LB_NO_ENDPOINT,		/* no eligible backend has a ready
					 * endpoint (or none is left) */
	WEFT_LB_ALL_ZERO,		/* the split's weights are all 0 */
	WEFT_LB_NOMEM,
};

const char *weft_lb_status_name(enum weft_lb_status s);

/* One decision.  Every pointer is borrowed from the generation it was made
 * on (or from lb for state), so it lives as long as the caller's reference
 * to that generation. */
struct weft_lb_choice {
	enum weft_lb_status status;
	const struct weft_snap_service *root;
	const struct weft_service_port *root_port;
	const struct weft_smi_split *split;	/* NULL: the root's own endpoints */
	const struct weft_snap_service *backend;	/* the root when no split
						 * applies, or it names itself */
	const struct weft_service_port *port;	/* backend's port, same number */
	struct weft_endpoint ep;		/* after weft_lb_endpoint */
	struct weft_lb_ep *state;		/* ep's record; not acquired */
	char		 why[160];		/* status != OK: for the log and
						 * the 503's body */
};

/* Step 1 (see the top).  req: the request head when the traffic is HTTP,
 * NULL otherwise (only a catch-all split applies to non-HTTP traffic).
 * Fills c (status, root, split, backend, port) and returns c->status. */
enum weft_lb_status weft_lb_backend(struct weft_lb *lb,
	    const struct weft_gen *g, const struct weft_snap_service *root,
	    const struct weft_service_port *root_port,
	    const struct weft_policy_http *req, struct weft_lb_choice *c);

/* Step 2: an endpoint of c->backend (c from weft_lb_backend, status OK).
 * exclude: records already tried for this request (n_exclude of them).
 * Ejected endpoints are skipped while others are left; if every endpoint
 * not excluded is ejected, the least recently ejected one is tried anyway
 * (better a retry than a 503 for all).  Returns c->status (NO_ENDPOINT when
 * nothing is left). */
enum weft_lb_status weft_lb_endpoint(struct weft_lb *lb,
	    const struct weft_gen *g, struct weft_lb_choice *c,
	    struct weft_lb_ep *const *exclude, size_t n_exclude,
	    int64_t now_ms);

/* Power of two choices over n candidates with outstanding counts load[]:
 * the index chosen.  Exposed for tests. */
size_t	weft_lb_p2c(struct weft_lb *lb, const unsigned *load, size_t n);

#endif
