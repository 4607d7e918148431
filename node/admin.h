/* Internal to node/: the node's admin HTTP server (DESIGN §1, §8) on the
 * daemon's main loop, and the push of SMI edge metrics to the controller.
 *
 *   GET /metrics        Prometheus text: the registry (weft/metrics.h) and
 *                       node-wide values read at scrape time: tunnel
 *                       handshake failures, certificate expiry, config
 *                       generation, nftables rule counters
 *   GET /healthz        200 while the main loop runs
 *   GET /readyz         200 once the table is installed, a snapshot is
 *                       applied and every local meshed identity has its
 *                       certificate; else 503 and why
 *   GET /debug/config   the applied generation's snapshot (JSON) */
#ifndef WEFT_NODE_ADMIN_H
#define WEFT_NODE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct weft_admin;
struct weft_client;
struct weft_metrics;
struct weft_metrics_push;
struct weft_nft;
struct weft_proxy;

/* What the server reads; every pointer is borrowed and must outlive it
 * (fields may be set, or change, after weft_admin_new: they are read at
 * each request). */
struct weft_admin_state {
	struct weft_nft	*nft;			/* NULL: no rule counters */
	struct weft_proxy *proxy;		/* NULL: no tunnel counters */
	struct weft_metrics *metrics;		/* NULL: metrics off */
	const bool	*table_installed;	/* the node's "have_applied" */
};

/* Listen on addr ("ADDR:PORT", "[v6]:PORT") on base.  Returns the server, or
 * NULL with *err (malloc'd). */
struct weft_admin *weft_admin_new(struct event_base *base, const char *addr,
	    const struct weft_admin_state *st, char **err);
struct weft_admin_state *weft_admin_state(struct weft_admin *a);
void	weft_admin_free(struct weft_admin *a);

/* Whether the node is ready; why (at most len) says what is missing. */
bool	weft_admin_ready(const struct weft_admin_state *st, char *why,
	    size_t len);

/* Push the registry's SMI edges (weft_metrics_edges_delta) to the
 * controller every interval_ms with POST /v1/nodes/<node>/metrics; a
 * failed push is included in the next one.  All borrowed.  NULL on
 * allocation failure. */
struct weft_metrics_push *weft_metrics_push_new(struct event_base *base,
	    struct weft_client *client, struct weft_metrics *m,
	    const char *node, int interval_ms);
void	weft_metrics_push_free(struct weft_metrics_push *p);

#endif
