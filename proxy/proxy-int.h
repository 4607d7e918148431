/* Declarations shared inside proxy/: the routing decision and listeners.
 * The relay itself is in include/weft/conn.h. */
#ifndef WEFT_PROXY_INT_H
#define WEFT_PROXY_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/policy.h"
#include "weft/spiffe.h"

/* --- flow.c -------------------------------------------------------------- */

/* A connection as the destination's policy sees it; one allocation.  An
 * empty source means unauthenticated. */
struct weft_flow {
	const char	*fl_src_ns;
	const char	*fl_src_sa;
	const char	*fl_dst_ns;
	const char	*fl_dst_sa;
	uint16_t	 fl_port;		/* the pod's port */
	char		 fl_buf[];
};

/* src_ns/src_sa NULL: unauthenticated.  NULL on allocation failure. */
struct weft_flow *weft_flow_new(const char *src_ns, const char *src_sa,
	    const char *dst_ns, const char *dst_sa, uint16_t port);
void	weft_flow_free(struct weft_flow *fl);
/* The connection's answer on generation g (NULL: deny). */
enum weft_policy_verdict weft_flow_check(const struct weft_flow *fl,
	    const struct weft_gen *g, struct weft_policy_why *why);
/* One request, on the current generation: true to let it through; else
 * the reason in why and a short token for metrics in *token. */
bool	weft_flow_check_http(const struct weft_flow *fl,
	    const struct weft_policy_http *req, char *why, size_t whylen,
	    const char **token);
/* A denial's reason as a fixed token ("no-traffic-target", ...). */
const char *weft_flow_deny_token(const struct weft_policy_why *w);
/* "ns/sa" or "unauthenticated", into buf. */
const char *weft_flow_src(const struct weft_flow *fl, char *buf, size_t len);

/* --- decide.c ------------------------------------------------------------ */

enum weft_verdict {
	WEFT_VERDICT_CONNECT = 0,	/* connect to d_upstream */
	WEFT_VERDICT_HOLD,		/* park; ask again later */
	WEFT_VERDICT_REFUSE,		/* reset, with d_reason */
	WEFT_VERDICT_TUNNEL,		/* CONNECT stream to d_upstream over
					 * mTLS to d_tunnel (tunnel.c) */
	WEFT_VERDICT_ROUTE,		/* HTTP (or maybe HTTP: d_sniff) to a
					 * service VIP: the router decides
					 * per request (router.c) */
};

const char *weft_verdict_name(enum weft_verdict v);

struct weft_decision {
	enum weft_verdict d_verdict;
	enum weft_close_reason d_reason;	/* REFUSE (and HOLD's timeout) */
	struct sockaddr_storage d_upstream;	/* CONNECT */
	socklen_t	 d_upstream_len;
	bool		 d_transparent;		/* bind upstream to the source */
	char		 d_route[160];		/* for logs: "svc default/web ->
						 * pod default/web-1", "pod ...",
						 * "passthrough", "hold: ..." */
	/* TUNNEL: identities, the destination's node, where to dial. */
	char		 d_src_id[WEFT_SPIFFE_MAX];
	char		 d_dst_id[WEFT_SPIFFE_MAX];
	char		 d_node[256];
	struct sockaddr_storage d_tunnel;	/* <dst pod ip>:rc_tunnel_port */
	socklen_t	 d_tunnel_len;
	/* CONNECT to a local meshed pod: the destination's policy (same-node
	 * traffic is authorised in process, inbound plaintext is
	 * unauthenticated).  d_flow is owned by the decision until the caller
	 * takes it (weft_decision_clear frees what is left). */
	struct weft_flow *d_flow;		/* NULL: no policy applies */
	int		 d_policy;		/* enum weft_policy_verdict */
	char		 d_why[160];		/* its reason, for the log */
	const char	*d_token;		/* a denial's reason token, for
						 * metrics (static) */
	/* A service VIP balanced per connection: the chosen endpoint's
	 * record in the balancer given to weft_decide_lb (borrowed, not
	 * acquired: the caller counts the connection on it); NULL
	 * otherwise. */
	struct weft_lb_ep *d_lb_ep;
	/* ROUTE: the port's protocol is not declared; the router sniffs the
	 * first bytes (opaque traffic comes back, WEFT_DECIDE_OPAQUE). */
	bool		 d_sniff;
};

void	weft_decision_clear(struct weft_decision *d);

/* Decide where a captured connection goes.  g may be NULL (no generation
 * yet: hold); it is borrowed for the call only, nothing in *d points into
 * it.  src and dst are the peer and the original destination of the
 * accepted socket; listen_port the listener that took it.  Never fails. */
void	weft_decide(const struct weft_gen *g, enum weft_conn_dir dir,
	    const struct sockaddr *src, const struct sockaddr *dst,
	    uint16_t listen_port, const struct weft_relay_config *rc,
	    struct weft_decision *d);

/* weft_decide with the worker's balancer (weft/balance.h; NULL: no state,
 * random choices) and flags: WEFT_DECIDE_ROUTE lets HTTP, and ports whose
 * protocol must be sniffed, go to the router (ROUTE) instead of being
 * balanced per connection; WEFT_DECIDE_OPAQUE says the router already
 * sniffed: not HTTP. */
#define WEFT_DECIDE_ROUTE	0x1
#define WEFT_DECIDE_OPAQUE	0x2
struct weft_lb;
void	weft_decide_lb(const struct weft_gen *g, enum weft_conn_dir dir,
	    const struct sockaddr *src, const struct sockaddr *dst,
	    uint16_t listen_port, const struct weft_relay_config *rc,
	    struct weft_lb *lb, unsigned flags, struct weft_decision *d);

/* --- tunnel.c ------------------------------------------------------------ */

struct evbuffer;
struct timespec;
struct weft_tunnel;

/* Client side: take over an outbound connection decided TUNNEL (fd taken,
 * closed on failure; pending: bytes already read from it, drained; rd_eof:
 * the app already sent FIN).  id, src, dst, start: the connection's, for
 * its log line.  The stream counts its own close in cx's counters. */
void	weft_tunnel_outbound(struct weft_tunnel *tn, int fd,
	    struct evbuffer *pending, bool rd_eof, const char *id,
	    const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, const struct weft_decision *d,
	    const struct timespec *start);
/* The same with the connection's hook (weft/conn.h), which the stream
 * takes over: ready on the CONNECT's answer (200, or 403 handed to a
 * denier: 0; another status or a stream that failed: its reason), done
 * when the stream ends.  quiet: the hook's owner records the outbound
 * side's metrics (no outbound flow here). */
void	weft_tunnel_outbound_hooked(struct weft_tunnel *tn, int fd,
	    struct evbuffer *pending, bool rd_eof, const char *id,
	    const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, const struct weft_decision *d,
	    const struct timespec *start, const struct weft_conn_hook *hook,
	    bool quiet);

/* --- conn.c, tunnel.c: the generation changed ---------------------------- */

/* Close the connections (streams) let in at L4 that g no longer lets in. */
void	weft_conn_recheck(struct weft_conn_ctx *cx, const struct weft_gen *g);
void	weft_tunnel_recheck(struct weft_tunnel *tn, const struct weft_gen *g);

/* --- deny.c -------------------------------------------------------------- */

struct weft_metrics_flow;

/* Take over a connection the destination's policy refuses (fd taken; pending:
 * bytes already read from it, drained; rd_eof: the client already sent FIN):
 * HTTP requests get 403s, anything else a reset.  id, dir, line ("SRC -> DST
 * route=...") and start are for its log line, which it writes and counts
 * (reason denied) when it ends.  token: the denial's reason for metrics;
 * mflow: the connection's metrics flow, taken (NULL: the denier makes one,
 * unless its client is a router's upstream, which records for itself).
 * remote: another node decided (it refused the tunnel's CONNECT) on its own
 * generation, which this node cannot watch: only the request that met the
 * refusal is answered here, every later one is decided again from scratch
 * (a new CONNECT), so a permission granted meanwhile is seen. */
void	weft_deny_take(struct weft_conn_ctx *cx, int fd,
	    struct evbuffer *pending, bool rd_eof, const char *id,
	    enum weft_conn_dir dir, const char *line,
	    const struct timespec *start, const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, uint16_t listen_port,
	    const char *token, struct weft_metrics_flow *mflow, bool remote);
/* The other way (conn.c): a connection a denier gives back once the
 * generation changed, with the bytes not yet decided (pending, drained);
 * it is decided again as if just accepted. */
void	weft_conn_adopt(struct weft_conn_ctx *cx, int fd, enum weft_conn_dir dir,
	    uint16_t listen_port, const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, struct evbuffer *pending,
	    const char *id, const struct timespec *start);
/* weft_conn_adopt with a hook (weft/conn.h; NULL: none, copied) and flags:
 * WEFT_ADOPT_OPAQUE: the router sniffed it, it is not HTTP: balance it per
 * connection (never ROUTE again); WEFT_ADOPT_UPSTREAM: one of the router's
 * upstreams (the router records its outbound requests itself).  pending
 * may be NULL.  The hook may be called before this returns. */
#define WEFT_ADOPT_OPAQUE	0x1
#define WEFT_ADOPT_UPSTREAM	0x2
void	weft_conn_adopt_hooked(struct weft_conn_ctx *cx, int fd,
	    enum weft_conn_dir dir, uint16_t listen_port,
	    const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, struct evbuffer *pending,
	    const char *id, const struct timespec *start,
	    const struct weft_conn_hook *hook, unsigned flags);
/* Reset every one of them (the loop is going away). */
void	weft_deny_shutdown(struct weft_conn_ctx *cx);
size_t	weft_deny_count(const struct weft_conn_ctx *cx);

/* --- router.c ------------------------------------------------------------ */

/* Take over a connection decided ROUTE (fd taken, closed on failure;
 * pending: bytes already read from it, drained, may be NULL; sniff: the
 * port's protocol is not declared).  src: the client pod, dst: the VIP,
 * listen_port, id and start: the connection's.  The router writes its own
 * line when the connection ends, or gives it back to conn.c (not HTTP). */
void	weft_router_take(struct weft_conn_ctx *cx, int fd,
	    struct evbuffer *pending, bool sniff, const char *id,
	    const struct sockaddr_storage *src,
	    const struct sockaddr_storage *dst, uint16_t listen_port,
	    const struct timespec *start);
/* Close every client connection and pooled upstream and free the router
 * (cx_router NULL again).  Call after conn.c's connections and the
 * tunnel's streams are closed: their hooks point into the router. */
void	weft_router_shutdown(struct weft_conn_ctx *cx);
/* The worker's balancer, made on first use (NULL on allocation failure:
 * choices are then random and nothing is ejected). */
struct weft_lb *weft_conn_ctx_lb(struct weft_conn_ctx *cx);

/* The router's counters: one writer (the worker), relaxed reads. */
struct weft_router_stats {
	_Atomic uint64_t rs_conns;		/* client connections taken */
	_Atomic uint64_t rs_requests;		/* request heads routed */
	_Atomic uint64_t rs_upstreams;		/* upstreams opened */
	_Atomic uint64_t rs_pool_hits;		/* requests on a pooled one */
	_Atomic uint64_t rs_pool_misses;
	_Atomic uint64_t rs_retries;		/* moved to another endpoint
						 * before any byte was sent */
	_Atomic uint64_t rs_ejections;
	_Atomic uint64_t rs_503;
	_Atomic uint64_t rs_502;
	_Atomic uint64_t rs_opaque;		/* sniffed, not HTTP */
};

struct weft_router_stats_view {
	uint64_t	 conns, requests, upstreams, pool_hits, pool_misses;
	uint64_t	 retries, ejections, answered_503, answered_502, opaque;
	size_t		 open_conns, idle_upstreams, upstreams_alive;
};

/* A copy of cx's router counters (zeros before the first use). */
void	weft_router_stats(const struct weft_conn_ctx *cx,
	    struct weft_router_stats_view *out);

/* --- listener.c ---------------------------------------------------------- */

struct evconnlistener;
struct weft_proxy_config;
struct event;

struct weft_listener {
	struct evconnlistener *l_lev;		/* owned; owns the fd */
	struct event	*l_retry;		/* owned; re-enable after EMFILE */
	struct weft_conn_ctx *l_ctx;		/* borrowed (the worker's) */
	enum weft_conn_dir l_dir;
	uint16_t	 l_port;
	char		 l_name[WEFT_SOCKADDR_STRLEN];
};

/* Open a TCP listener on sa (SO_REUSEADDR, SO_REUSEPORT, IP_TRANSPARENT if
 * transparent, IPV6_V6ONLY for v6) on cx's base; accepted connections go to
 * weft_conn_accept(cx, fd, dir, port).  Returns 0, or -1 with errno set and
 * nothing open (the caller logs: it knows whether this one is optional). */
int	weft_listener_open(struct weft_listener *l, struct weft_conn_ctx *cx,
	    enum weft_conn_dir dir, const struct sockaddr *sa, socklen_t salen,
	    bool transparent);
/* Close it (NULL fields are fine); l may be reused. */
void	weft_listener_close(struct weft_listener *l);

/* --- worker.c ------------------------------------------------------------ */

/* Internal knobs of weft_proxy_start that the public config does not carry
 * (tests and the lab driver). */
struct weft_proxy_options {
	bool		 po_transparent;	/* IP_TRANSPARENT listeners and
						 * source-transparent upstreams */
	bool		 po_ipv6;		/* also listen on [::] */
	const char	*po_listen_v4;		/* "0.0.0.0" */
};

int	weft_proxy_start_opts(const struct weft_proxy_config *cfg,
	    const struct weft_proxy_options *opts, struct weft_proxy **out);

#endif
