/* Telemetry of the node (DESIGN §8): a registry of Prometheus series and of
 * SMI TrafficMetrics edges, written by the worker threads without locks and
 * read by the admin server (/metrics) and the pusher that feeds the
 * controller's TrafficMetrics API.
 *
 * Contract for the data path (proxy/):
 *
 *  - Each worker thread owns one struct weft_metrics_shard and is its only
 *    writer; struct weft_conn_ctx carries it as cx_metrics.  A NULL shard
 *    means "metrics off" (weft node --no-metrics, unit tests): every record
 *    function accepts NULL and returns at once.
 *  - Record one HTTP exchange on the thread that owns the shard, once per
 *    request, when it ends: response head seen (status), the proxy
 *    answered it itself (403 denied, 400 bad), or the connection ended
 *    before a response (status 0); weft_h1_ops.h1_done is the place.
 *    Two ways:
 *      * the connection's flow, when its destination is fixed (conn.c's
 *        cn_mflow[], tunnel.c's ts_mflow, made by proxy/observe.c when
 *        the connection opens): weft_metrics_flow_request(cx->cx_metrics,
 *        flow, ex->status, ex->duration_s, ex->denied ? "reason" : NULL).
 *        About 30 ns: the flow holds its series, nothing is looked up.
 *      * weft_metrics_request() with a struct weft_metrics_req, when each
 *        request is routed on its own (a split, pooled upstreams).  Every
 *        string is borrowed for the call only (pointers into a generation
 *        the caller holds are fine).  About 200 ns: two hash lookups.
 *    NULL or "" means "unknown" and becomes the label value "unknown".  No
 *    allocation and no lock when the series exists already; the first
 *    request of a new label set allocates once and takes the shard's mutex
 *    briefly (the scraper holds it while it reads).
 *  - Record the client side (WEFT_METRICS_OUTBOUND: on the caller's node, the
 *    pod is ours and is the source) and the server side
 *    (WEFT_METRICS_INBOUND: on the callee's node) separately; a call between
 *    two pods of one node is recorded twice, once per side, like a call
 *    between nodes.
 *  - A request the proxy denied (HTTP 403 it generated itself) has denied =
 *    true, status 403 and a short machine reason from a fixed set
 *    ("no-traffic-target", "route-not-allowed", "unauthenticated"; never
 *    free text with names in it: it is a label, its values must stay few):
 *    it counts in weft_requests_total and in weft_policy_denials_total.
 *    Record a denial once per side: where the 403 is generated (and, if a
 *    router relays that 403 to the client, not again there as a denial).
 *    Success and failure for the SMI API follow SPEC A-19: failure = 5xx or
 *    no response (status 0); a 403 is an answer.
 *  - duration_s: first request byte to the end of the response head
 *    seconds; ignored when status is 0 (no latency without a
 *    response).
 *
 * TCP connections are recorded through the flows (weft_metrics_flow_new
 * counts one opened, weft_metrics_flow_close one closed with its bytes;
 * labels without status_code): one outbound flow per connection of a
 * client pod, one inbound flow per connection to a server pod.  Other node-wide values (certificates, generation, nftables
 * counters, tunnel handshake failures) are read at scrape time by the
 * daemon (node/admin.c), not recorded here.
 *
 * Series whose last update is older than the expiry (default 300 s; never
 * while a flow holds them) are removed by weft_metrics_sweep(),
 * which each shard's owner runs periodically (weft_metrics_shard_attach
 * arms a timer for it): pods and identities that left stop costing memory
 * and exposition lines.
 *
 * Return convention: 0 / -1 with errno, or a pointer / NULL. */
#ifndef WEFT_METRICS_H
#define WEFT_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct weft_metrics;
struct weft_metrics_shard;
struct weft_metrics_tcp_series;

/* The side of a call where it was measured: the DESIGN §8 `direction`
 * label, and the SMI edge's side (outbound = client, inbound = server). */
enum weft_metrics_side {
	WEFT_METRICS_OUTBOUND = 0,	/* "outbound": at the caller's node */
	WEFT_METRICS_INBOUND,		/* "inbound": at the callee's node */
};

/* One end of a call.  All borrowed; NULL or "" = unknown. */
struct weft_metrics_peer {
	const char	*ns;		/* namespace */
	const char	*sa;		/* service account */
	const char	*pod;		/* pod name (SMI edges) */
};

struct weft_metrics_req {
	enum weft_metrics_side side;
	struct weft_metrics_peer src;
	struct weft_metrics_peer dst;
	const char	*dst_service;	/* Service name (in dst.ns) the caller
					 * addressed, or the backend a split
					 * chose; NULL when it called a pod */
	const char	*split_apex;	/* root Service of the TrafficSplit
					 * that chose dst_service, or NULL */
	int		 status;	/* HTTP status; 0 = no response */
	double		 duration_s;	/* A-19 latency, seconds */
	bool		 denied;	/* the proxy answered 403 (policy) */
	const char	*reason;	/* denied: why, a short token */
};

/* A TCP connection's labels (weft_tcp_*; the pods and the apex are for the
 * requests of a flow, below). */
struct weft_metrics_conn {
	enum weft_metrics_side side;
	struct weft_metrics_peer src;
	struct weft_metrics_peer dst;
	const char	*dst_service;
	const char	*split_apex;
};

/* --- registry (the daemon's main thread) --------------------------------- */

struct weft_metrics_config {
	int		 expiry_s;	/* idle series live this long (300) */
	int		 sweep_ms;	/* sweep period of each shard (5000) */
};

void	weft_metrics_config_defaults(struct weft_metrics_config *mc);

/* A registry with nshards writer shards (one per worker thread; the
 * daemon's own thread may take one too).  Returns NULL (ENOMEM). */
struct weft_metrics *weft_metrics_new(const struct weft_metrics_config *mc,
	    int nshards);
/* Frees the registry and its shards; no writer may run any more.  NULL is
 * fine. */
void	weft_metrics_free(struct weft_metrics *m);
int	weft_metrics_nshards(const struct weft_metrics *m);
/* Shard i (0 <= i < nshards), owned by the registry; NULL if out of range
 * or m is NULL. */
struct weft_metrics_shard *weft_metrics_shard(struct weft_metrics *m, int i);

/* --- writers (the shard's owner thread only) ----------------------------- */

/* Arm the shard's sweep timer on base (the owner's loop).  The timer is
 * freed with the registry, or by weft_metrics_shard_detach (call it before
 * base is freed).  Returns 0 or -1. */
int	weft_metrics_shard_attach(struct weft_metrics_shard *sh,
	    struct event_base *base);
void	weft_metrics_shard_detach(struct weft_metrics_shard *sh);

/* One HTTP exchange (see the contract above).  sh may be NULL. */
void	weft_metrics_request(struct weft_metrics_shard *sh,
	    const struct weft_metrics_req *r);

/* A TCP connection opened: counts weft_tcp_connections_opened_total and
 * returns a handle that keeps its series alive until
 * weft_metrics_tcp_close, which counts the close and the bytes (sent =
 * from the connection's client, received = to it).  NULL when sh is NULL
 * or out of memory; close accepts NULL. */
struct weft_metrics_tcp_series *weft_metrics_tcp_open(
	    struct weft_metrics_shard *sh, const struct weft_metrics_conn *c);
void	weft_metrics_tcp_close(struct weft_metrics_shard *sh,
	    struct weft_metrics_tcp_series *s, uint64_t sent,
	    uint64_t received);

/* A flow: one proxied connection's labels, looked up once when it opens,
 * and its TCP series.  Requests on it are recorded without looking anything
 * up again (weft_metrics_flow_request), which is what a connection whose
 * destination is fixed wants; per-request routing fills a
 * struct weft_metrics_req instead.  new counts the connection opened and
 * returns a flow owned by the caller (NULL when sh is NULL or out of
 * memory; every flow function accepts NULL); close counts it closed with
 * its bytes and frees it.  Flows of a shard with the same labels share one
 * copy of them, which the shard owns: a flow is made, used and closed on
 * its shard's thread only, and pass that shard (sh) to each call. */
struct weft_metrics_flow;

struct weft_metrics_flow *weft_metrics_flow_new(struct weft_metrics_shard *sh,
	    const struct weft_metrics_conn *c);
/* One request on the flow: status (0: no response), duration,
 * deny_reason NULL, or the reason the proxy answered 403 itself. */
void	weft_metrics_flow_request(struct weft_metrics_shard *sh,
	    struct weft_metrics_flow *f, int status, double duration_s,
	    const char *deny_reason);
void	weft_metrics_flow_close(struct weft_metrics_shard *sh,
	    struct weft_metrics_flow *f, uint64_t sent, uint64_t received);
/* The flow's side and labels (borrowed from f). */
enum weft_metrics_side weft_metrics_flow_side(const struct weft_metrics_flow *f);

/* Tests only: the shard's live flow label sets (one per distinct side and
 * labels among its open flows), and the sizes of a flow and of a label set
 * without its strings. */
struct weft_metrics_test {
	size_t		 mt_label_sets;
	size_t		 mt_flow_size;
	size_t		 mt_labels_size;
};
const struct weft_metrics_test *weft_metrics_test_hooks(
	    struct weft_metrics_shard *sh);

/* Remove series idle longer than the expiry (as of now_s, a
 * CLOCK_MONOTONIC second).  The timer calls it; tests call it directly. */
void	weft_metrics_sweep(struct weft_metrics_shard *sh, int64_t now_s);

/* --- the data path's helpers (proxy/observe.c) --------------------------- */

struct sockaddr;
struct weft_conn_ctx;
struct weft_gen;

/* The flow of a connection cx's worker proxies, labelled from generation
 * g (borrowed; NULL: the current one): the source pod by address (src, or
 * src_str "ip:port", either may be NULL) with src_id (a SPIFFE ID, may be
 * NULL) for the identity when the address is no pod; the destination pod
 * by upstream; the Service by orig_dst when it is a service VIP.  NULL
 * when cx has no metrics shard. */
struct weft_metrics_flow *weft_observe_flow(struct weft_conn_ctx *cx,
	    const struct weft_gen *g, enum weft_metrics_side side,
	    const struct sockaddr *src, const char *src_str, const char *src_id,
	    const struct sockaddr *orig_dst, const struct sockaddr *upstream);
/* A relayed connection of conn.c (accepted on the outbound or inbound
 * listener, connected to upstream): out[0] its outbound flow, out[1] its
 * inbound flow when the destination is a meshed pod of this node (a call
 * between two pods of one node is observed on both sides).  Unused slots
 * are NULL. */
void	weft_observe_conn(struct weft_conn_ctx *cx, const struct weft_gen *g,
	    int dir, const struct sockaddr *src, const struct sockaddr *orig_dst,
	    const struct sockaddr *upstream, struct weft_metrics_flow *out[2]);
/* Close both (weft_metrics_flow_close): sent = from the client. */
void	weft_observe_conn_close(struct weft_conn_ctx *cx,
	    struct weft_metrics_flow *f[2], uint64_t sent, uint64_t received);

/* --- readers (any thread) ------------------------------------------------ */

/* Append the Prometheus text exposition (version 0.0.4) of every series,
 * merged over the shards, to out.  Families without series are still
 * described (HELP/TYPE).  Returns 0 or -1 (ENOMEM). */
int	weft_metrics_write_prometheus(struct weft_metrics *m,
	    struct evbuffer *out);

/* The SMI edges as JSON deltas for the controller (see
 * controlplane/smimetrics.c for the format): what was recorded since the
 * last call that was acknowledged with weft_metrics_edges_commit, at most
 * WEFT_METRICS_PUSH_MAX edges (the rest waits for the next call; the
 * controller takes bodies up to 1 MiB).  Returns
 * a malloc'd NUL-terminated string and *nedges (0: nothing new), or NULL
 * (ENOMEM).  One caller at a time (the pusher). */
#define WEFT_METRICS_PUSH_MAX	500

char	*weft_metrics_edges_delta(struct weft_metrics *m, const char *node,
	    size_t *nedges);
/* The delta returned last was delivered: the next one starts after it.
 * Without commit, the next delta includes it again. */
void	weft_metrics_edges_commit(struct weft_metrics *m);

/* --- exposition helpers (exported for tests and node/admin.c) ----------- */

/* Append value escaped for a label value (backslash, double quote,
 * newline), or for HELP text when help is true (backslash, newline). */
void	weft_metrics_escape(struct evbuffer *out, const char *value, bool help);
/* Append a sample value as Prometheus prints it: integers exactly, others
 * with %.17g, and +Inf, -Inf, NaN. */
void	weft_metrics_put_value(struct evbuffer *out, double v);
/* Append the "# HELP" and "# TYPE" lines of a family (type: "counter",
 * "gauge", "histogram"). */
void	weft_metrics_family(struct evbuffer *out, const char *name,
	    const char *type, const char *help);

/* The bucket bounds of weft_request_duration_seconds, 100 µs to 10 s,
 * ascending; *n set to their number (+Inf not included). */
const double *weft_metrics_buckets(size_t *n);

/* --- windows and percentiles (node edges and the controller) ------------- */

/* A latency histogram with log-spaced buckets (4 per octave from 50 µs to
 * about 105 s, plus an overflow bucket): fine enough for p50/p90/p99 within
 * about 10 %.  Counts are plain integers; the shard's copy is written by
 * its owner only and read with relaxed loads. */
#define WEFT_LAT_NBUCKETS	86
struct weft_lat_hist {
	uint64_t	 lh_count[WEFT_LAT_NBUCKETS];
};

/* The bucket of a latency (seconds). */
size_t	weft_lat_bucket(double s);
/* Upper and lower bounds of bucket i, seconds. */
double	weft_lat_bucket_upper(size_t i);
double	weft_lat_bucket_lower(size_t i);
/* The q-quantile (0 < q <= 1) of the histogram, seconds, interpolated
 * linearly inside the bucket where the rank falls; -1 when it is empty. */
double	weft_lat_quantile(const struct weft_lat_hist *h, double q);

#endif
