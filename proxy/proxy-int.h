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
#include "weft/spiffe.h"

/* --- decide.c ------------------------------------------------------------ */

enum weft_verdict {
	WEFT_VERDICT_CONNECT = 0,	/* connect to d_upstream */
	WEFT_VERDICT_HOLD,		/* park; ask again later */
	WEFT_VERDICT_REFUSE,		/* reset, with d_reason */
	WEFT_VERDICT_TUNNEL,		/* CONNECT stream to d_upstream over
					 * mTLS to d_tunnel (tunnel.c) */
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
};

/* Decide where a captured connection goes.  g may be NULL (no generation
 * yet: hold); it is borrowed for the call only, nothing in *d points into
 * it.  src and dst are the peer and the original destination of the
 * accepted socket; listen_port the listener that took it.  Never fails. */
void	weft_decide(const struct weft_gen *g, enum weft_conn_dir dir,
	    const struct sockaddr *src, const struct sockaddr *dst,
	    uint16_t listen_port, const struct weft_relay_config *rc,
	    struct weft_decision *d);

/* The load-balancing choice among n > 0 endpoints: an index < n.  Random
 * for now; the balancer replaces this one function. */
size_t	weft_decide_pick_endpoint(const struct weft_endpoint *eps, size_t n);

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
