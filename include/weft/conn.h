/* A relayed TCP connection: one accepted (downstream) socket, one upstream
 * socket, two bufferevents, bytes copied both ways with half-close and
 * backpressure.  Everything here runs on one worker thread: a connection
 * never changes thread, so nothing in it is locked (DESIGN §3).
 *
 * struct weft_conn_ctx is what a connection needs from its thread (the event
 * base, the configuration, the counters, the list of live connections); the
 * worker embeds one, and unit tests build their own around a private base.
 *
 * Return convention: 0 / -1 with errno, or a pointer / NULL. */
#ifndef WEFT_CONN_H
#define WEFT_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdatomic.h>
#include <sys/queue.h>
#include <sys/socket.h>

struct event_base;
struct weft_conn;
struct weft_lb;
struct weft_proxy;
struct weft_router;
struct weft_metrics_shard;

enum weft_conn_dir {
	WEFT_DIR_OUTBOUND = 0,		/* :15001, TCP from a local pod */
	WEFT_DIR_INBOUND,		/* :15006, plaintext TCP to a local pod */
	WEFT_DIR_RELAY,		/* two given sockets, no decision (tests) */
	WEFT_DIR_TUNNEL,		/* :15008, mTLS + HTTP/2 CONNECT from
					 * another node (proxy/tunnel.c) */
};

/* Why a connection ended; one per connection, in its log line and counters. */
enum weft_close_reason {
	WEFT_CLOSE_EOF = 0,		/* both sides closed cleanly */
	WEFT_CLOSE_RESET,		/* a peer reset its socket */
	WEFT_CLOSE_UPSTREAM_REFUSED,	/* connect: ECONNREFUSED */
	WEFT_CLOSE_UPSTREAM_TIMEOUT,	/* connect did not finish in time */
	WEFT_CLOSE_DENIED,		/* policy: not allowed */
	WEFT_CLOSE_NO_ROUTE,		/* nowhere to send it (no endpoint,
					 * unreachable upstream) */
	WEFT_CLOSE_SELF_CONNECT,	/* destination is one of our listeners */
	WEFT_CLOSE_HELD_TIMEOUT,	/* parked for an unknown pod / no
					 * generation, and nothing came */
	WEFT_CLOSE_ERROR,		/* anything else (allocation, socket) */
	WEFT_CLOSE_SHUTDOWN,		/* the proxy is stopping */
	WEFT_CLOSE_NREASONS
};

/* "eof", "reset", "upstream-refused", ...; never NULL. */
const char *weft_close_reason_name(enum weft_close_reason r);
/* "outbound", "inbound", "relay". */
const char *weft_conn_dir_name(enum weft_conn_dir d);

#define WEFT_GUARD_PORTS_MAX	8

/* Plain settings of the relay; weft_relay_config_defaults fills them. */
struct weft_relay_config {
	size_t		 rc_buffer_high;	/* per direction (256 KiB) */
	int		 rc_connect_timeout_ms;	/* 5000 */
	int		 rc_hold_ms;		/* 1000 */
	int		 rc_hold_poll_ms;	/* 100: re-decide a held conn */
	int		 rc_drain_timeout_ms;	/* 1000: flush after an error */
	uint32_t	 rc_own_mark;		/* SO_MARK on upstream sockets;
						 * 0 = none (tests) */
	bool		 rc_transparent;	/* bind upstream sockets to the
						 * original source (needs root) */
	/* Destination ports that are our own listeners: a captured
	 * connection to one of them would loop (feasibility §3). */
	uint16_t	 rc_guard_ports[WEFT_GUARD_PORTS_MAX];
	size_t		 rc_n_guard_ports;
	/* The mTLS tunnel (proxy/tunnel.c): port of the peers' tunnel
	 * listener; 0 = no tunnel, cross-node traffic stays plaintext. */
	uint16_t	 rc_tunnel_port;
};

void	weft_relay_config_defaults(struct weft_relay_config *rc);

/* Per-worker counters.  Written by the worker thread only, read by anyone
 * with weft_conn_stats_read(): relaxed atomics, so a reader sees each
 * counter torn-free but not a consistent set (good enough for metrics). */
struct weft_conn_stats {
	_Atomic uint64_t cs_opened;
	_Atomic uint64_t cs_closed[WEFT_CLOSE_NREASONS];
	_Atomic uint64_t cs_bytes_sent;		/* downstream -> upstream */
	_Atomic uint64_t cs_bytes_received;	/* upstream -> downstream */
	_Atomic uint64_t cs_held;		/* connections that were parked */
	/* The tunnel (proxy/tunnel.c). */
	_Atomic uint64_t cs_tun_dialed;		/* client TLS connections opened */
	_Atomic uint64_t cs_tun_accepted;	/* server handshakes completed */
	_Atomic uint64_t cs_tun_resumed;	/* handshakes that resumed */
	_Atomic uint64_t cs_tun_streams;	/* CONNECT streams, both sides */
	_Atomic uint64_t cs_tun_refused_handshake;	/* plaintext, garbage,
						 * another CA, expired, no
						 * client cert, no ALPN h2 */
	_Atomic uint64_t cs_tun_refused_identity;	/* peer SPIFFE ID wrong */
	_Atomic uint64_t cs_tun_refused_no_cert;	/* no local meshed pod or
						 * no certificate for it */
	_Atomic uint64_t cs_tun_denied_streams;	/* CONNECT answered != 200 */
};

/* A plain copy of the counters. */
struct weft_conn_stats_view {
	uint64_t	 opened;
	uint64_t	 closed[WEFT_CLOSE_NREASONS];
	uint64_t	 bytes_sent;
	uint64_t	 bytes_received;
	uint64_t	 held;
	uint64_t	 tun_dialed;
	uint64_t	 tun_accepted;
	uint64_t	 tun_resumed;
	uint64_t	 tun_streams;
	uint64_t	 tun_refused_handshake;
	uint64_t	 tun_refused_identity;
	uint64_t	 tun_refused_no_cert;
	uint64_t	 tun_denied_streams;
};

void	weft_conn_stats_read(const struct weft_conn_stats *s,
	    struct weft_conn_stats_view *out);

/* What the close hook sees; valid only during the call. */
struct weft_conn_summary {
	const char	*id;			/* "w1-42" */
	enum weft_conn_dir dir;
	enum weft_close_reason reason;
	uint64_t	 sent;			/* downstream -> upstream */
	uint64_t	 received;		/* upstream -> downstream */
	double		 duration_ms;
};

/* How an upstream fared, for whoever gave the connection to conn.c
 * (weft_conn_adopt_hooked: the service router, the balancer).  hk_ready
 * is called once: 0 when the upstream opened (the pod accepted, the
 * tunnel's CONNECT was answered 200, or a denier answers the client's
 * requests with 403s), or a weft_close_reason when it failed before any
 * byte was sent to it.  hk_done is called once, last, when the connection
 * (or the tunnel stream it became) is gone.  Both are called from inside
 * conn.c and tunnel.c: they must not call into them (activating an event
 * is fine).  NULL functions are skipped. */
struct weft_conn_hook {
	void		(*hk_ready)(void *arg, int result);
	void		(*hk_done)(void *arg);
	void		*hk_arg;
};

TAILQ_HEAD(weft_conn_list, weft_conn);
struct weft_denier;
TAILQ_HEAD(weft_denier_list, weft_denier);

struct weft_conn_ctx {
	struct event_base *cx_base;		/* borrowed */
	int		 cx_index;		/* worker index, for ids */
	uint64_t	 cx_next_id;
	struct weft_relay_config cx_cfg;
	struct weft_conn_stats cx_stats;
	struct weft_conn_list cx_conns;		/* live connections (owned) */
	size_t		 cx_nconns;
	struct weft_denier_list cx_deniers;	/* refused connections being
						 * answered (proxy/deny.c) */
	uint64_t	 cx_policy_gen;		/* generation the open flows
						 * were last checked against */
	/* Called once per connection as it closes, after the log line;
	 * optional (tests and, later, metrics with labels). */
	void		(*cx_on_close)(const struct weft_conn_summary *,
			    void *);
	void		*cx_on_close_arg;
	/* Tests only: use this as the original destination instead of
	 * getsockname() (no TPROXY without root).  Borrowed; NULL normally. */
	const struct sockaddr_storage *cx_fake_dst;
	bool		 cx_warned_transparent;	/* logged the first failure */
	/* The worker's tunnel (client pool and :15008 server), or NULL:
	 * then WEFT_DIR_TUNNEL is refused and nothing is tunnelled. */
	struct weft_tunnel *cx_tunnel;
	/* The worker's metrics shard (weft/metrics.h), borrowed from the
	 * registry; NULL = metrics off.  Only this thread writes it. */
	struct weft_metrics_shard *cx_metrics;
	/* The service balancer's state (weft/balance.h) and the HTTP
	 * router (proxy/router.c): owned, made on first use, freed by
	 * weft_conn_ctx_shutdown. */
	struct weft_lb	*cx_lb;
	struct weft_router *cx_router;
};

/* Initialise a context on base (borrowed) with a copy of rc. */
void	weft_conn_ctx_init(struct weft_conn_ctx *cx, struct event_base *base,
	    int index, const struct weft_relay_config *rc);
/* Close every live connection with reason shutdown (no flush: the loop is
 * going away). */
void	weft_conn_ctx_shutdown(struct weft_conn_ctx *cx);

/* Take an accepted, non-blocking socket (always: it is closed on failure),
 * recover its original destination, decide and connect or park it.
 * listen_port is the port of the listener that accepted it (self-connect
 * guard).  Returns 0, or -1 if it could not even be set up (logged). */
int	weft_conn_accept(struct weft_conn_ctx *cx, int fd,
	    enum weft_conn_dir dir, uint16_t listen_port);

/* Relay between two already connected sockets (taken, closed on failure)
 * with no decision: the state machine of weft_conn_accept after connect.
 * Returns the connection (owned by cx, freed when it closes) or NULL. */
struct weft_conn *weft_conn_new_relay(struct weft_conn_ctx *cx, int fd_down,
	    int fd_up);

/* The one exit: log the connection's line, count it, free it.  Reasons
 * eof/reset/error first flush what was already read to the surviving side
 * (bounded by rc_drain_timeout_ms); refusals (denied, no-route,
 * self-connect, held-timeout, upstream-*) reset the downstream socket
 * (SO_LINGER 0) so the client sees a reset, never a clean end.  The
 * connection may be freed before this returns: do not touch it after. */
void	weft_conn_close(struct weft_conn *c, enum weft_close_reason r);

const char *weft_conn_id(const struct weft_conn *c);
/* Bytes queued in each bufferevent; a side that has no socket reads 0. */
void	weft_conn_buffered(const struct weft_conn *c, size_t *down_in,
	    size_t *down_out, size_t *up_in, size_t *up_out);

/* Counters of a running proxy: how many workers, and a copy of one's. */
int	weft_proxy_nworkers(const struct weft_proxy *p);
void	weft_proxy_worker_stats(const struct weft_proxy *p, int i,
	    struct weft_conn_stats_view *out);

#endif
