/* The tunnel between nodes (DESIGN §3, HBONE-like): each captured
 * connection from a local meshed pod to a meshed pod on another node is one
 * HTTP/2 CONNECT stream over a pooled TLS 1.3 connection to port 15008 of
 * the destination pod, presenting the source pod's certificate (with
 * tu_pool off: a TLS connection of its own, closed when the stream ends).  The peer
 * node's :15008 listener (WEFT_DIR_TUNNEL) is the server side.
 *
 * One struct weft_tunnel per worker thread, next to its weft_conn_ctx (which
 * points to it, cx_tunnel); nothing in it is locked.  Design and pitfalls:
 * shared/notes/h2-tunnel.md. */
#ifndef WEFT_TUNNEL_H
#define WEFT_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct weft_conn_ctx;
struct weft_gen;
struct weft_tunnel;

struct weft_tunnel_config {
	uint16_t	 tu_port;		/* peers' tunnel port (15008) */
	uint32_t	 tu_max_streams;	/* per client connection: 100,
						 * lowered to the peer's limit */
	int		 tu_idle_ms;		/* close a client connection
						 * with no stream: 60000 */
	int		 tu_handshake_ms;	/* 10000 */
	int		 tu_drain_ms;		/* graceful stop: how long open
						 * streams may take: 2000 */
	bool		 tu_pool;		/* client connections carry many
						 * streams: true.  false: one
						 * stream per TLS connection,
						 * closed (GOAWAY, close_notify)
						 * when it ends; sessions still
						 * resume */
};

void	weft_tunnel_config_defaults(struct weft_tunnel_config *tc);

/* A tunnel for cx's thread (cx->cx_tunnel is set).  NULL on failure. */
struct weft_tunnel *weft_tunnel_new(struct weft_conn_ctx *cx,
	    const struct weft_tunnel_config *cfg);
/* Graceful stop: no new stream on any connection, the open ones may
 * finish.  Server connections get a shutdown notice (GOAWAY 2^31-1) now
 * and the final GOAWAY (last processed stream) ~100 ms later; client
 * connections take no new stream and say GOAWAY once idle.  A connection
 * closes (close_notify) when its last stream ends.  done(arg) runs once,
 * from the loop, when no connection is left or after tu_drain_ms; what is
 * left then is the caller's to end (weft_tunnel_shutdown).  The tunnel
 * is usable again after done. */
void	weft_tunnel_drain(struct weft_tunnel *tn, void (*done)(void *),
	    void *arg);
/* Close every TLS connection and stream (the loop is going away); the
 * tunnel stays usable. */
void	weft_tunnel_shutdown(struct weft_tunnel *tn);
/* Shut down and free; clears cx->cx_tunnel. */
void	weft_tunnel_free(struct weft_tunnel *tn);

/* Server side: an accepted socket of the :15008 listener (taken). */
int	weft_tunnel_accept(struct weft_tunnel *tn, int fd);

/* True if the client side can dial as identity id now (certificate and
 * trust bundle in the store). */
bool	weft_tunnel_can_dial(struct weft_tunnel *tn, const char *id);

/* Live TLS connections (client + server) and streams, for tests and
 * /debug. */
size_t	weft_tunnel_nconns(const struct weft_tunnel *tn);
size_t	weft_tunnel_nstreams(const struct weft_tunnel *tn);

/* Tests only.  dial: connect here instead of <pod ip>:tu_port; expect:
 * expect this server identity instead of the destination pod's; gen: use
 * this generation on the server side instead of weft_gen_current() (a test
 * runs both nodes in one process).  All borrowed; NULL = normal. */
struct weft_tunnel_test {
	const struct sockaddr_storage *tt_dial;
	const char	*tt_expect;
	struct weft_gen	*tt_gen;
	bool		 tt_last_resumed;	/* out: last client handshake */
	size_t		 tt_natoms;		/* out: interned strings */
};
struct weft_tunnel_test *weft_tunnel_test_hooks(struct weft_tunnel *tn);

#endif
