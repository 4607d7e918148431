/* HTTP/1.x between a client and a server, one request at a time: the
 * per-request policy point of the data path (DESIGN §3, SPEC §3.2).
 *
 * A filter sits on one relayed connection and sees both byte streams.  It
 * parses requests (llhttp) as they come from the client; at the end of each
 * request head it asks its owner whether the request may pass.  An allowed
 * request's bytes go to the server unchanged; a denied one's never do, and
 * the filter answers it itself (403, a short body), in its turn: it parses
 * the server's responses too, so that its answer goes out after the
 * responses to the requests before it, even with pipelining.  The
 * connection stays usable after a denial.
 *
 * Byte-exact: what the filter forwards is exactly the bytes it was given,
 * cut at message boundaries; nothing is re-serialised.  Smuggling vectors
 * llhttp refuses (Content-Length with Transfer-Encoding, a repeated
 * Content-Length, bad chunk sizes) end the connection with a 400.  After an
 * allowed CONNECT or Upgrade, both directions become opaque.
 *
 * The filter owns no socket and no event: its owner moves bytes in and out
 * of evbuffers (conn.c, tunnel.c, deny.c).  Not thread-safe; one thread. */
#ifndef WEFT_HTTP1_H
#define WEFT_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;
struct weft_policy_http;
struct weft_h1;

/* One finished exchange, for logs and metrics. */
struct weft_h1_exchange {
	const char	*method;		/* "GET" */
	int		 status;		/* response status; 0: none came
						 * (the server closed or reset) */
	bool		 denied;		/* answered by the filter (403) */
	bool		 bad;			/* answered by the filter (400) */
	const char	*why;			/* denied: what h1_decide wrote
						 * in why (a short token for
						 * metrics); NULL otherwise */
	double		 duration_s;		/* first request byte to the end
						 * of the response head */
};

struct weft_h1_ops {
	/* A complete request head: true to forward it.  On false, why
	 * (NUL-terminated, at most whylen) gets a short reason token that
	 * comes back in the exchange (weft_h1_exchange.why, at most 31
	 * characters kept).  NULL: every request passes (observe only). */
	bool	(*h1_decide)(void *arg, const struct weft_policy_http *req,
		    char *why, size_t whylen);
	/* An exchange ended; optional. */
	void	(*h1_done)(void *arg, const struct weft_h1_exchange *ex);
};

enum weft_h1_result {
	WEFT_H1_OK = 0,
	WEFT_H1_CLOSE,		/* once to_client is flushed, end the
				 * connection cleanly (a denied request
				 * without keep-alive, a 400) */
	WEFT_H1_RESET,		/* end it now with a reset: not HTTP at
				 * all, or the server broke the protocol */
};

/* ops is borrowed (static), arg is passed back. */
struct weft_h1 *weft_h1_new(const struct weft_h1_ops *ops, void *arg);
/* Exchanges still open are reported done with status 0. */
void	weft_h1_free(struct weft_h1 *f);

/* Sniffing: when the client's first bytes are not an HTTP request, or the
 * server speaks first, pass both directions as they are (weft_h1_is_opaque
 * turns true) instead of a reset.  For connections the policy lets in at
 * L4 anyway: their HTTP requests are still decided one by one, so a
 * permission withdrawn later is a 403 on the next request. */
void	weft_h1_set_sniff(struct weft_h1 *f, bool on);

/* Client -> server: take what may be taken from in; forwardable bytes are
 * appended to to_server, the filter's own answers to to_client.  Bytes stay
 * in in when too many requests wait for their responses (call again after
 * weft_h1_from_server).  Returns what the owner must do now. */
enum weft_h1_result weft_h1_from_client(struct weft_h1 *f,
	    struct evbuffer *in, struct evbuffer *to_server,
	    struct evbuffer *to_client);

/* Server -> client: every byte of in goes to to_client, with the filter's
 * answers to later requests inserted where their turn comes. */
enum weft_h1_result weft_h1_from_server(struct weft_h1 *f,
	    struct evbuffer *in, struct evbuffer *to_client);

/* The server closed its side (FIN): a response delimited by the close
 * ends here; requests left without a response are done with status 0. */
enum weft_h1_result weft_h1_server_eof(struct weft_h1 *f,
	    struct evbuffer *to_client);

/* True once both directions are opaque (an allowed CONNECT or Upgrade was
 * answered 101/2xx): the owner may stop calling the filter. */
bool	weft_h1_is_opaque(const struct weft_h1 *f);
/* Requests waiting for a response, and requests seen in all. */
size_t	weft_h1_pending(const struct weft_h1 *f);
uint64_t weft_h1_requests(const struct weft_h1 *f);
/* What went wrong, after WEFT_H1_CLOSE (400) or WEFT_H1_RESET. */
const char *weft_h1_error(const struct weft_h1 *f);

/* The answer to a denied request; keep_alive false adds "connection:
 * close".  Its header x-weft-denied carries token (the reason token of
 * weft_flow_deny_token, [a-z0-9-]; NULL: "policy"), so a proxy that relays
 * it (the source node's router) can count the denial. */
void	weft_h1_add_denial(struct evbuffer *out, bool keep_alive,
	    const char *token);

#endif
