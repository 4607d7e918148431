/* The service router: HTTP/1.x from a local pod to a service's virtual IP,
 * balanced and split per request (DESIGN §3; SPEC §5.2, A-14 ... A-18).
 *
 * conn.c hands over a connection decided ROUTE (weft_router_take).  Here
 * each request head is parsed (llhttp), the backend Service and an
 * endpoint are chosen on the current generation (weft/balance.h), and the
 * request goes to an upstream: an idle one from the worker's pool, keyed by
 * (client address, endpoint address and port), or a new one.  The response
 * comes back byte for byte; when both are complete and both sides keep the
 * connection alive, the upstream returns to the pool.  One request at a
 * time per client connection: pipelined requests wait in the input.
 *
 * An upstream is one end of a socketpair; the other end is given to conn.c
 * as if the client pod had connected to the endpoint itself
 * (weft_conn_adopt_hooked): conn.c decides it like any pod-to-pod
 * connection (same node: connect, destination policy in process; another
 * node: the mTLS tunnel, whose peer enforces policy; a denial comes back as
 * the 403 we relay, A-23).  Its hook says when the upstream is open (the
 * pod accepted, the CONNECT got its 200) or failed before any byte was sent
 * to it; only then is the request written.  So a request moves to another
 * endpoint only if none of it was sent (connect refused, 502 from the
 * tunnel, no route): the endpoint is ejected for a while (weft_lb_ep_failed)
 * and the choice is made again without it, at most RT_TRIES times.  A
 * request that was written is never sent again: if the upstream fails
 * before the response starts the client gets a 502, after that a reset.
 *
 * Protocol detection: a port declared HTTP (appProtocol, `http`/`http-*`
 * name) is parsed at once; an undeclared one is sniffed: a method and a
 * space within RT_SNIFF_MS make it HTTP, anything else (or silence: a
 * server-first protocol) goes back to conn.c to be balanced per connection
 * (WEFT_ADOPT_OPAQUE).  Upgrade and CONNECT requests, once answered 101 or
 * 2xx, turn the exchange into an opaque relay with that upstream.
 *
 * Our own answers: 503 when no backend or endpoint is eligible (every
 * weight 0, no ready endpoint, A-15), 502 when every endpoint tried failed
 * or the upstream broke before answering, 400/431/414 for requests llhttp
 * rejects (smuggling vectors included), then close.
 *
 * Everything runs on the worker's thread; nothing is locked. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <llhttp.h>

#include "weft/balance.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/policy.h"
#include "proxy/proxy-int.h"

#define RT_SNIFF_MS		250	/* undeclared protocol: wait this
					 * long for the client's first bytes */
#define RT_TRIES		3	/* endpoints tried per request */
#define RT_POOL_PER_KEY		16	/* idle upstreams per (client,
					 * endpoint) */
#define RT_POOL_MAX		1024	/* idle upstreams per worker */
#define RT_IDLE_MS		15000	/* an idle upstream is closed after */
#define RT_TIMER_MS		1000	/* pool sweep period */
#define RT_HEAD_MAX		(64 * 1024)
#define RT_URL_MAX		(8 * 1024)
#define RT_HEADERS_MAX		100

#define STAT_ADD(field, n)						\
	atomic_store_explicit(&(field), atomic_load_explicit(&(field),	\
	    memory_order_relaxed) + (n), memory_order_relaxed)

struct rt_conn;

enum rt_up_state {
	RT_UP_CONNECTING = 0,	/* adopted; the hook has not said */
	RT_UP_READY,		/* open: busy with a request, or pooled */
	RT_UP_FAILED,		/* the hook said it failed */
};

/* An upstream: our end of a socketpair whose other end conn.c relays to an
 * endpoint.  Freed when we are done with it (u_detached: our end closed)
 * and conn.c is done with its end (u_hook_done), whichever comes last. */
enum rt_up_list_id {
	RT_LIST_NONE = 0,	/* busy with a request (r_up of its conn) */
	RT_LIST_IDLE,		/* pooled */
	RT_LIST_PENDING,	/* its client left while it was connecting */
	RT_LIST_GONE,		/* detached; conn.c's end not done yet */
};

struct rt_up {
	TAILQ_ENTRY(rt_up) u_entry;		/* in the list u_list says */
	enum rt_up_list_id u_list;
	struct weft_router *u_rt;
	struct rt_conn	*u_conn;		/* busy: whose request */
	struct bufferevent *u_bev;		/* owned, owns the fd; NULL
						 * once detached */
	struct event	*u_ev;			/* owned: the hook's ready,
						 * handled from the loop */
	enum rt_up_state u_state;
	int		 u_result;		/* the hook's ready */
	bool		 u_ready_seen;
	bool		 u_hook_done;
	bool		 u_detached;
	struct weft_ip	 u_src;			/* pool key: the client pod, */
	struct weft_ip	 u_ip;			/* the endpoint */
	uint16_t	 u_port;
	struct weft_lb_ep *u_lb;		/* the endpoint's record */
	int64_t		 u_idle_since;
	uint64_t	 u_nreq;
	char		 u_id[40];
	llhttp_t	 u_resp;
	bool		 u_resp_head;		/* pause reasons */
	bool		 u_resp_done;
	/* The response's x-weft-denied header: a 403 the mesh answered
	 * (the destination's policy, A-23), counted as a denial here, on
	 * the caller's side.  u_hname: the header name being read. */
	char		 u_hname[16];
	size_t		 u_hname_len;		/* SIZE_MAX: name complete */
	bool		 u_in_denied;		/* reading its value */
	bool		 u_is_denied;		/* the header was there */
	char		 u_denied[32];		/* its value: the reason token */
	size_t		 u_denied_len;
};

TAILQ_HEAD(rt_up_list, rt_up);

struct rt_field {
	uint32_t	 off;
	uint32_t	 len;
};

struct rt_hdr {
	struct rt_field	 name;
	struct rt_field	 value;
};

/* A client connection to a service VIP. */
struct rt_conn {
	TAILQ_ENTRY(rt_conn) r_entry;
	struct weft_router *r_rt;
	char		 r_id[32];
	struct bufferevent *r_bev;		/* owned, owns the client fd */
	struct event	*r_ev;			/* owned: "pump (or close) from
						 * the loop" */
	struct event	*r_timer;		/* owned: sniff timeout */
	struct sockaddr_storage r_src;
	struct sockaddr_storage r_dst;		/* the VIP */
	uint16_t	 r_listen_port;
	struct timespec	 r_start;
	bool		 r_sniffing;
	/* The request parser and the head being parsed. */
	llhttp_t	 r_req;
	bool		 r_head_done;		/* pause reasons */
	bool		 r_msg_done;
	bool		 r_parse_upgrade;	/* HPE_PAUSED_UPGRADE seen */
	bool		 r_bad;			/* parse error: answered */
	int		 r_overflow;		/* 431 / 414 */
	struct evbuffer	*r_head;		/* head bytes, then body bytes
						 * until the upstream is open */
	char		*r_buf;			/* url and header fields */
	size_t		 r_buflen, r_bufcap;
	struct rt_field	 r_url;
	struct rt_hdr	*r_hdrs;
	size_t		 r_nhdr, r_hdrcap;
	bool		 r_in_name;
	/* The exchange in progress (r_busy). */
	bool		 r_busy;
	bool		 r_req_done;		/* request message complete */
	bool		 r_resp_done;		/* final response complete */
	bool		 r_local;		/* we answered it ourselves */
	bool		 r_sent;		/* a byte went to r_up */
	bool		 r_resp_started;	/* a byte went to the client */
	bool		 r_req_ka;		/* request allows keep-alive */
	bool		 r_resp_ka;
	bool		 r_upgrade;		/* an Upgrade / CONNECT request */
	bool		 r_expect;		/* Expect: (100-continue) */
	bool		 r_abort;		/* closing: reset, no flush */
	bool		 r_opaque;		/* upgraded: bytes both ways */
	bool		 r_close_after;		/* close once flushed */
	uint8_t		 r_method;		/* llhttp_method_t */
	int		 r_status;
	bool		 r_denied;		/* a 403 of the mesh (x-weft-denied) */
	char		 r_deny_reason[32];
	double		 r_latency;		/* A-19, seconds */
	struct timespec	 r_req_start;
	struct rt_up	*r_up;
	struct weft_gen	*r_gen;			/* the request's generation */
	struct weft_lb_choice r_choice;		/* into r_gen */
	struct weft_lb_ep *r_tried[RT_TRIES];
	size_t		 r_ntried;
	struct weft_lb_ep *r_acq;		/* acquired: outstanding */
	/* The connection. */
	bool		 r_rd_eof;		/* client FIN */
	bool		 r_up_eof;		/* opaque: upstream FIN */
	bool		 r_shut_up;		/* opaque: FIN passed on */
	bool		 r_shut_client;
	bool		 r_closing;		/* flush, then close */
	uint64_t	 r_nreq;
	uint64_t	 r_sent_bytes;		/* from the client */
	uint64_t	 r_recv_bytes;		/* to the client */
	char		 r_route[400];		/* last request's route */
	const char	*r_reason;
	/* The outbound side's TCP series of this connection (weft/metrics.h):
	 * opened at its first request, labelled with the endpoint chosen
	 * then and the root Service; owned, NULL when not observed. */
	struct weft_metrics_flow *r_mflow;
	bool		 r_observed;
};

TAILQ_HEAD(rt_conn_list, rt_conn);

struct weft_router {
	struct weft_conn_ctx *rt_cx;
	struct rt_conn_list rt_conns;
	size_t		 rt_nconns;
	struct rt_up_list rt_idle;		/* pooled, most recent first */
	size_t		 rt_nidle;
	struct rt_up_list rt_pending;		/* connecting, client gone */
	struct rt_up_list rt_gone;		/* detached, conn.c not done */
	size_t		 rt_nups;		/* every rt_up alive */
	struct event	*rt_timer;
	uint64_t	 rt_next_up;
	struct weft_router_stats rt_stats;
};

static void	rt_pump(struct rt_conn *);
static void	rt_close(struct rt_conn *, const char *);
static void	rt_close_later(struct rt_conn *, const char *, bool);
static void	rt_timercb(evutil_socket_t, short, void *);
static void	rt_observe(struct rt_conn *, const struct weft_endpoint *);
static void	rt_up_detach(struct rt_up *);
static void	rt_route(struct rt_conn *);
static void	rt_try_endpoint(struct rt_conn *);
static void	rt_exchange_end(struct rt_conn *);
static void	rt_client_writecb(struct bufferevent *, void *);
static int	rt_on_message_begin(llhttp_t *);
static int	rt_on_url(llhttp_t *, const char *, size_t);
static int	rt_on_header_field(llhttp_t *, const char *, size_t);
static int	rt_on_header_value(llhttp_t *, const char *, size_t);
static int	rt_on_headers_complete(llhttp_t *);
static int	rt_on_message_complete(llhttp_t *);
static int	rt_on_resp_message_begin(llhttp_t *);
static int	rt_on_resp_header_field(llhttp_t *, const char *, size_t);
static int	rt_on_resp_header_value(llhttp_t *, const char *, size_t);
static int	rt_on_resp_headers_complete(llhttp_t *);
static int	rt_on_resp_message_complete(llhttp_t *);

static const llhttp_settings_t rt_req_settings = {
	.on_message_begin = rt_on_message_begin,
	.on_url = rt_on_url,
	.on_header_field = rt_on_header_field,
	.on_header_value = rt_on_header_value,
	.on_headers_complete = rt_on_headers_complete,
	.on_message_complete = rt_on_message_complete,
};

static const llhttp_settings_t rt_resp_settings = {
	.on_message_begin = rt_on_resp_message_begin,
	.on_header_field = rt_on_resp_header_field,
	.on_header_value = rt_on_resp_header_value,
	.on_headers_complete = rt_on_resp_headers_complete,
	.on_message_complete = rt_on_resp_message_complete,
};

/* --- helpers ----------------------------------------------------------------- */

static double
rt_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static size_t
rt_high(const struct weft_router *rt)
{
	return rt->rt_cx->cx_cfg.rc_buffer_high;
}

static struct weft_router *
rt_get(struct weft_conn_ctx *cx)
{
	struct weft_router *rt;
	struct timeval tv = { RT_TIMER_MS / 1000, (RT_TIMER_MS % 1000) * 1000 };

	if (cx->cx_router != NULL)
		return cx->cx_router;
	if ((rt = calloc(1, sizeof(*rt))) == NULL)
		return NULL;
	rt->rt_cx = cx;
	TAILQ_INIT(&rt->rt_conns);
	TAILQ_INIT(&rt->rt_idle);
	TAILQ_INIT(&rt->rt_pending);
	TAILQ_INIT(&rt->rt_gone);
	if ((rt->rt_timer = event_new(cx->cx_base, -1, EV_PERSIST,
	    rt_timercb, rt)) == NULL) {
		free(rt);
		return NULL;
	}
	event_add(rt->rt_timer, &tv);
	cx->cx_router = rt;
	return rt;
}

struct weft_lb *
weft_conn_ctx_lb(struct weft_conn_ctx *cx)
{
	if (cx->cx_lb == NULL)
		cx->cx_lb = weft_lb_new(0);
	return cx->cx_lb;
}

/* --- upstreams ---------------------------------------------------------------- */

static void
rt_up_unlist(struct rt_up *u)
{
	struct weft_router *rt = u->u_rt;

	switch (u->u_list) {
	case RT_LIST_NONE:
		return;
	case RT_LIST_IDLE:
		TAILQ_REMOVE(&rt->rt_idle, u, u_entry);
		rt->rt_nidle--;
		break;
	case RT_LIST_PENDING:
		TAILQ_REMOVE(&rt->rt_pending, u, u_entry);
		break;
	case RT_LIST_GONE:
		TAILQ_REMOVE(&rt->rt_gone, u, u_entry);
		break;
	}
	u->u_list = RT_LIST_NONE;
}

static void
rt_up_free_maybe(struct rt_up *u)
{
	struct weft_router *rt = u->u_rt;

	if (!u->u_detached || !u->u_hook_done)
		return;
	rt_up_unlist(u);
	if (u->u_ev != NULL)
		event_free(u->u_ev);
	rt->rt_nups--;
	free(u);
}

/* We are done with u: close our end (conn.c sees EOF and ends its
 * connection), forget it; it is freed once conn.c's hook is done too. */
static void
rt_up_detach(struct rt_up *u)
{
	struct weft_router *rt = u->u_rt;

	if (u->u_detached)
		return;
	rt_up_unlist(u);
	if (u->u_conn != NULL && u->u_conn->r_up == u)
		u->u_conn->r_up = NULL;
	u->u_conn = NULL;
	if (u->u_bev != NULL) {
		bufferevent_free(u->u_bev);
		u->u_bev = NULL;
	}
	u->u_detached = true;
	if (!u->u_hook_done) {
		TAILQ_INSERT_TAIL(&rt->rt_gone, u, u_entry);
		u->u_list = RT_LIST_GONE;
	}
	rt_up_free_maybe(u);
}

/* The hook (called from conn.c / tunnel.c: record, act from the loop). */
static void
rt_hook_ready(void *arg, int result)
{
	struct rt_up *u = arg;

	u->u_result = result;
	u->u_state = result == 0 ? RT_UP_READY : RT_UP_FAILED;
	event_active(u->u_ev, EV_TIMEOUT, 0);
}

static void
rt_hook_done(void *arg)
{
	struct rt_up *u = arg;

	u->u_hook_done = true;
	if (!u->u_ready_seen && u->u_state == RT_UP_CONNECTING) {
		/* Gone without a word: a failure before anything was sent. */
		u->u_state = RT_UP_FAILED;
		u->u_result = WEFT_CLOSE_ERROR;
		event_active(u->u_ev, EV_TIMEOUT, 0);
		return;
	}
	rt_up_free_maybe(u);
}

static void	rt_up_readcb(struct bufferevent *, void *);
static void	rt_up_writecb(struct bufferevent *, void *);
static void	rt_up_eventcb(struct bufferevent *, short, void *);
static void	rt_up_evcb(evutil_socket_t, short, void *);

/* A new upstream to the chosen endpoint for r. */
static struct rt_up *
rt_up_new(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct weft_conn_ctx *cx = rt->rt_cx;
	const struct weft_lb_choice *c = &r->r_choice;
	struct weft_conn_hook hook;
	struct sockaddr_storage dst;
	socklen_t dlen;
	struct rt_up *u;
	int sv[2];

	if ((u = calloc(1, sizeof(*u))) == NULL)
		return NULL;
	u->u_rt = rt;
	if ((u->u_ev = event_new(cx->cx_base, -1, 0, rt_up_evcb, u)) == NULL) {
		free(u);
		return NULL;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
	    sv) == -1) {
		log_warn("conn %s: socketpair", r->r_id);
		event_free(u->u_ev);
		free(u);
		return NULL;
	}
	if ((u->u_bev = bufferevent_socket_new(cx->cx_base, sv[0],
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL) {
		close(sv[0]);
		close(sv[1]);
		event_free(u->u_ev);
		free(u);
		return NULL;
	}
	rt->rt_nups++;
	bufferevent_setcb(u->u_bev, rt_up_readcb, rt_up_writecb,
	    rt_up_eventcb, u);
	bufferevent_setwatermark(u->u_bev, EV_WRITE, rt_high(rt) / 2, 0);
	bufferevent_enable(u->u_bev, EV_READ | EV_WRITE);
	(void)weft_ip_from_sockaddr((struct sockaddr *)&r->r_src, &u->u_src,
	    NULL);
	u->u_ip = c->ep.pod->ip;
	u->u_port = c->ep.port;
	u->u_lb = c->state;
	u->u_conn = r;
	u->u_state = RT_UP_CONNECTING;
	snprintf(u->u_id, sizeof(u->u_id), "%s.u%llu", r->r_id,
	    (unsigned long long)++rt->rt_next_up);
	weft_ip_to_sockaddr(&u->u_ip, u->u_port, &dst, &dlen);
	memset(&hook, 0, sizeof(hook));
	hook.hk_ready = rt_hook_ready;
	hook.hk_done = rt_hook_done;
	hook.hk_arg = u;
	STAT_ADD(rt->rt_stats.rs_upstreams, 1);
	/* May call the hook before it returns (a refusal decided at once). */
	weft_conn_adopt_hooked(cx, sv[1], WEFT_DIR_OUTBOUND, r->r_listen_port,
	    &r->r_src, &dst, NULL, u->u_id, &r->r_start, &hook,
	    WEFT_ADOPT_UPSTREAM);
	return u;
}

/* An idle upstream from the pool for r's choice, or NULL. */
static struct rt_up *
rt_pool_get(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct weft_ip src;
	struct rt_up *u, *next;
	char b;

	if (weft_ip_from_sockaddr((struct sockaddr *)&r->r_src, &src,
	    NULL) == -1)
		return NULL;
	for (u = TAILQ_FIRST(&rt->rt_idle); u != NULL; u = next) {
		next = TAILQ_NEXT(u, u_entry);
		if (u->u_port != r->r_choice.ep.port ||
		    !weft_ip_equal(&u->u_ip, &r->r_choice.ep.pod->ip) ||
		    !weft_ip_equal(&u->u_src, &src))
			continue;
		/* An EOF (or stray bytes) the loop has not shown us yet:
		 * a request written now could not be taken back. */
		if (u->u_bev != NULL && recv(bufferevent_getfd(u->u_bev), &b, 1,
		    MSG_PEEK | MSG_DONTWAIT) == -1 &&
		    (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		rt_up_detach(u);
	}
	if (u == NULL)
		return NULL;
	rt_up_unlist(u);
	u->u_conn = r;
	u->u_lb = r->r_choice.state;
	STAT_ADD(rt->rt_stats.rs_pool_hits, 1);
	return u;
}

/* Drop every idle upstream to ip:port (whatever its client). */
static void
rt_pool_drop(struct weft_router *rt, const struct weft_ip *ip, uint16_t port)
{
	struct rt_up *u, *next;

	for (u = TAILQ_FIRST(&rt->rt_idle); u != NULL; u = next) {
		next = TAILQ_NEXT(u, u_entry);
		if (u->u_port == port && weft_ip_equal(&u->u_ip, ip))
			rt_up_detach(u);
	}
}

/* u finished an exchange cleanly: back to the pool, within bounds. */
static void
rt_pool_put(struct rt_up *u)
{
	struct weft_router *rt = u->u_rt;
	struct rt_up *o, *oldest = NULL;
	size_t same = 0;

	u->u_conn = NULL;
	rt_up_unlist(u);
	if (u->u_bev == NULL || u->u_hook_done ||
	    evbuffer_get_length(bufferevent_get_input(u->u_bev)) > 0) {
		rt_up_detach(u);
		return;
	}
	TAILQ_FOREACH(o, &rt->rt_idle, u_entry)
		if (o->u_port == u->u_port && weft_ip_equal(&o->u_ip,
		    &u->u_ip) && weft_ip_equal(&o->u_src, &u->u_src)) {
			same++;
			oldest = o;
		}
	if (same >= RT_POOL_PER_KEY && oldest != NULL)
		rt_up_detach(oldest);
	if (rt->rt_nidle >= RT_POOL_MAX)
		rt_up_detach(TAILQ_LAST(&rt->rt_idle, rt_up_list));
	u->u_idle_since = weft_lb_now_ms();
	TAILQ_INSERT_HEAD(&rt->rt_idle, u, u_entry);
	u->u_list = RT_LIST_IDLE;
	rt->rt_nidle++;
	bufferevent_enable(u->u_bev, EV_READ);
}

/* Every RT_TIMER_MS: idle upstreams past RT_IDLE_MS, or to addresses that
 * are no ready pod any more, are closed; the balancer forgets idle
 * endpoint records. */
static void
rt_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_router *rt = arg;
	struct weft_gen *g = weft_gen_current();
	const struct weft_snap_pod *pod;
	struct rt_up *u, *next;
	int64_t now = weft_lb_now_ms();

	(void)fd;
	(void)what;
	for (u = TAILQ_FIRST(&rt->rt_idle); u != NULL; u = next) {
		next = TAILQ_NEXT(u, u_entry);
		if (now - u->u_idle_since > RT_IDLE_MS || (g != NULL &&
		    ((pod = weft_gen_pod_by_ip(g, &u->u_ip)) == NULL ||
		    !pod->ready)))
			rt_up_detach(u);
	}
	weft_gen_unref(g);
	if (rt->rt_cx->cx_lb != NULL)
		(void)weft_lb_sweep(rt->rt_cx->cx_lb, now);
}

/* --- answers of our own ---------------------------------------------------------- */

static const char *
rt_status_text(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 414:
		return "URI Too Long";
	case 431:
		return "Request Header Fields Too Large";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	}
	return "Error";
}

/* Answer the current request ourselves; its body (if any) is dropped as
 * it comes.  close: end the connection after this answer. */
static void
rt_answer(struct rt_conn *r, int status, const char *why, bool close)
{
	struct evbuffer *out = bufferevent_get_output(r->r_bev);
	char body[256];
	int n, k;

	n = snprintf(body, sizeof(body), "%d %s: %s\n", status,
	    rt_status_text(status), why);
	if (n < 0 || (size_t)n >= sizeof(body))
		n = (int)strlen(body);
	if (!r->r_req_ka || r->r_bad || r->r_upgrade)
		close = true;
	rt_observe(r, NULL);
	if (r->r_expect)
		close = true;
	k = evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\n"
	    "content-type: text/plain\r\ncontent-length: %d\r\n"
	    "x-weft-error: %s\r\n%s\r\n%s", status, rt_status_text(status), n,
	    status == 503 ? "no-endpoint" : status == 502 ? "upstream-failed" :
	    "bad-request", close ? "connection: close\r\n" : "", body);
	if (k > 0)
		r->r_recv_bytes += (uint64_t)k;
	r->r_local = true;
	r->r_resp_done = true;
	r->r_resp_ka = !close;
	r->r_status = status;
	r->r_latency = rt_since(&r->r_req_start);
	r->r_resp_started = true;
	if (close)
		r->r_close_after = true;
	if (r->r_head != NULL)
		evbuffer_drain(r->r_head, evbuffer_get_length(r->r_head));
	if (status == 503)
		STAT_ADD(r->r_rt->rt_stats.rs_503, 1);
	else if (status == 502)
		STAT_ADD(r->r_rt->rt_stats.rs_502, 1);
	log_info("conn %s: %s %d: %s", r->r_id,
	    llhttp_method_name((llhttp_method_t)r->r_method), status, why);
	rt_exchange_end(r);
}

/* --- the client's requests -------------------------------------------------------- */

static int
rt_append(struct rt_conn *r, struct rt_field *fl, const char *at, size_t len)
{
	size_t cap;
	char *nb;

	if (r->r_buflen + len > RT_HEAD_MAX) {
		r->r_overflow = 431;
		return -1;
	}
	if (r->r_buflen + len > r->r_bufcap) {
		cap = r->r_bufcap == 0 ? 512 : r->r_bufcap;
		while (cap < r->r_buflen + len)
			cap *= 2;
		if ((nb = realloc(r->r_buf, cap)) == NULL)
			return -1;
		r->r_buf = nb;
		r->r_bufcap = cap;
	}
	if (fl->len == 0)
		fl->off = (uint32_t)r->r_buflen;
	memcpy(r->r_buf + r->r_buflen, at, len);
	r->r_buflen += len;
	fl->len += (uint32_t)len;
	return 0;
}

static int
rt_on_message_begin(llhttp_t *p)
{
	struct rt_conn *r = p->data;

	clock_gettime(CLOCK_MONOTONIC, &r->r_req_start);
	r->r_buflen = 0;
	memset(&r->r_url, 0, sizeof(r->r_url));
	r->r_nhdr = 0;
	r->r_in_name = false;
	return 0;
}

static int
rt_on_url(llhttp_t *p, const char *at, size_t len)
{
	struct rt_conn *r = p->data;

	if (r->r_url.len + len > RT_URL_MAX) {
		r->r_overflow = 414;
		return -1;
	}
	return rt_append(r, &r->r_url, at, len);
}

static int
rt_on_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct rt_conn *r = p->data;

	if (!r->r_in_name) {
		if (r->r_nhdr == RT_HEADERS_MAX) {
			r->r_overflow = 431;
			return -1;
		}
		if (r->r_nhdr == r->r_hdrcap) {
			size_t cap = r->r_hdrcap == 0 ? 16 : r->r_hdrcap * 2;
			struct rt_hdr *h;

			if ((h = reallocarray(r->r_hdrs, cap,
			    sizeof(*h))) == NULL)
				return -1;
			r->r_hdrs = h;
			r->r_hdrcap = cap;
		}
		memset(&r->r_hdrs[r->r_nhdr++], 0, sizeof(r->r_hdrs[0]));
		r->r_in_name = true;
	}
	return rt_append(r, &r->r_hdrs[r->r_nhdr - 1].name, at, len);
}

static int
rt_on_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct rt_conn *r = p->data;

	r->r_in_name = false;
	if (r->r_nhdr == 0)
		return 0;
	return rt_append(r, &r->r_hdrs[r->r_nhdr - 1].value, at, len);
}

static int
rt_on_headers_complete(llhttp_t *p)
{
	struct rt_conn *r = p->data;

	r->r_head_done = true;
	return HPE_PAUSED;
}

static int
rt_on_message_complete(llhttp_t *p)
{
	struct rt_conn *r = p->data;

	r->r_msg_done = true;
	return HPE_PAUSED;
}

/* The path a split's `matches` see: no query, no fragment, no
 * scheme and authority of an absolute-form target. */
static void
rt_path(const char *url, size_t len, const char **path, size_t *plen)
{
	const char *s = url, *end = url + len, *q, *sep;

	if (len > 0 && url[0] != '/' && (sep = memchr(url, ':', len)) != NULL &&
	    sep + 2 < end && sep[1] == '/' && sep[2] == '/') {
		s = memchr(sep + 3, '/', (size_t)(end - (sep + 3)));
		if (s == NULL)
			s = end;
	}
	for (q = s; q < end && *q != '?' && *q != '#'; q++)
		;
	if (q == s) {
		*path = "/";
		*plen = 1;
		return;
	}
	*path = s;
	*plen = (size_t)(q - s);
}

/* Bytes of the current request, as the parser took them: to the upstream
 * once it is open, into r_head before that, nowhere after our own answer. */
static void
rt_take(struct rt_conn *r, struct evbuffer *in, size_t n, bool head)
{
	if (n == 0)
		return;
	r->r_sent_bytes += n;
	if (r->r_local)
		evbuffer_drain(in, n);
	else if (!head && r->r_up != NULL && r->r_sent && r->r_up->u_bev != NULL)
		evbuffer_remove_buffer(in, bufferevent_get_output(
		    r->r_up->u_bev), n);
	else
		evbuffer_remove_buffer(in, r->r_head, n);
}

/* A parse error: 400 (or 431/414) if no exchange is open, else close. */
static void
rt_bad_request(struct rt_conn *r, llhttp_errno_t e)
{
	char why[160];

	snprintf(why, sizeof(why), "%s", r->r_overflow ? "request too large" :
	    llhttp_get_error_reason(&r->r_req) != NULL ?
	    llhttp_get_error_reason(&r->r_req) : llhttp_errno_name(e));
	r->r_bad = true;
	evbuffer_drain(bufferevent_get_input(r->r_bev),
	    evbuffer_get_length(bufferevent_get_input(r->r_bev)));
	if (r->r_busy && (r->r_sent || r->r_resp_started)) {
		/* The upstream has a part of it: nothing sane to add. */
		rt_close_later(r, "bad-request", true);
		return;
	}
	if (!r->r_busy) {
		r->r_busy = true;
		r->r_method = (uint8_t)llhttp_get_method(&r->r_req);
		clock_gettime(CLOCK_MONOTONIC, &r->r_req_start);
	}
	if (r->r_up != NULL)
		rt_up_detach(r->r_up);
	r->r_req_done = true;
	rt_answer(r, r->r_overflow ? r->r_overflow : 400, why, true);
}

/* Parse what the client sent, one segment (a head, a piece of body) per
 * llhttp_execute, as far as the exchange allows. */
static void
rt_parse(struct rt_conn *r)
{
	struct evbuffer *in = bufferevent_get_input(r->r_bev);
	struct evbuffer_iovec v;
	llhttp_errno_t e;
	size_t used;
	bool head, step = false;

	while (!r->r_closing && (evbuffer_get_length(in) > 0 || step)) {
		if (r->r_opaque) {
			if (r->r_up != NULL && r->r_up->u_bev != NULL) {
				r->r_sent_bytes += evbuffer_get_length(in);
				evbuffer_add_buffer(bufferevent_get_output(
				    r->r_up->u_bev), in);
			}
			return;
		}
		/* One request at a time: the next waits for this response. */
		if (r->r_busy && r->r_req_done)
			return;
		/* Body bytes wait while the upstream is not open, bounded. */
		if (r->r_busy && !r->r_sent && !r->r_local &&
		    evbuffer_get_length(r->r_head) >= rt_high(r->r_rt))
			return;
		if (r->r_parse_upgrade) {
			/* after an Upgrade / CONNECT head: the protocol's
			 * bytes, for the upstream if it switches */
			if (r->r_local) {
				evbuffer_drain(in, evbuffer_get_length(in));
				return;
			}
			if (!r->r_sent)
				return;
			r->r_sent_bytes += evbuffer_get_length(in);
			evbuffer_add_buffer(bufferevent_get_output(
			    r->r_up->u_bev), in);
			return;
		}
		if (evbuffer_get_length(in) == 0) {
			v.iov_base = (void *)"";
			v.iov_len = 0;
		} else if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			return;
		step = false;
		head = !r->r_busy;
		r->r_head_done = r->r_msg_done = false;
		e = llhttp_execute(&r->r_req, v.iov_base, v.iov_len);
		if (e == HPE_OK)
			used = v.iov_len;
		else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
			used = (size_t)(llhttp_get_error_pos(&r->r_req) -
			    (const char *)v.iov_base);
		else {
			rt_bad_request(r, e);
			return;
		}
		rt_take(r, in, used, head);
		if (head && !r->r_head_done &&
		    evbuffer_get_length(r->r_head) > RT_HEAD_MAX) {
			r->r_overflow = 431;
			rt_bad_request(r, HPE_USER);
			return;
		}
		if (r->r_head_done) {
			r->r_busy = true;
			r->r_nreq++;
			r->r_method = (uint8_t)llhttp_get_method(&r->r_req);
			r->r_req_ka = llhttp_should_keep_alive(&r->r_req) != 0;
			r->r_upgrade = llhttp_get_upgrade(&r->r_req) != 0 ||
			    r->r_method == HTTP_CONNECT;
			step = true;
			if (e == HPE_PAUSED)
				llhttp_resume(&r->r_req);
			rt_route(r);	/* may answer, may close */
			if (r->r_closing || r->r_bev == NULL)
				return;
			continue;
		}
		if (r->r_msg_done)
			r->r_req_done = true;
		if (e == HPE_PAUSED)
			llhttp_resume(&r->r_req);
		else if (e == HPE_PAUSED_UPGRADE) {
			r->r_req_done = true;
			r->r_parse_upgrade = true;
		}
		if (r->r_req_done && r->r_busy && r->r_resp_done) {
			/* answered before the request ended (our own
			 * answer, or an early response) */
			rt_exchange_end(r);
			if (r->r_closing)
				return;
		}
	}
}

/* --- choosing, connecting --------------------------------------------------------- */

static void
rt_release(struct rt_conn *r)
{
	if (r->r_acq != NULL) {
		weft_lb_ep_release(r->r_acq);
		r->r_acq = NULL;
	}
}

/* The connection's outbound TCP series, once: labelled by the endpoint of
 * its first request (NULL: none could be chosen) and the root Service. */
static void
rt_observe(struct rt_conn *r, const struct weft_endpoint *ep)
{
	struct sockaddr_storage up;
	socklen_t len;

	if (r->r_observed)
		return;
	r->r_observed = true;
	if (ep != NULL && ep->pod != NULL)
		weft_ip_to_sockaddr(&ep->pod->ip, ep->port, &up, &len);
	r->r_mflow = weft_observe_flow(r->r_rt->rt_cx, r->r_gen,
	    WEFT_METRICS_OUTBOUND, (struct sockaddr *)&r->r_src, NULL, NULL,
	    (struct sockaddr *)&r->r_dst, ep != NULL && ep->pod != NULL ?
	    (struct sockaddr *)&up : NULL);
}

/* Write what waits for the upstream, now open. */
static void
rt_send(struct rt_conn *r)
{
	struct rt_up *u = r->r_up;

	r->r_sent = true;
	u->u_nreq++;
	llhttp_init(&u->u_resp, HTTP_RESPONSE, &rt_resp_settings);
	u->u_resp.data = u;
	u->u_resp_done = false;
	evbuffer_add_buffer(bufferevent_get_output(u->u_bev), r->r_head);
	bufferevent_enable(u->u_bev, EV_READ | EV_WRITE);
	/* Body bytes that waited in the client's input: from the loop (we
	 * may be inside rt_parse). */
	event_active(r->r_ev, EV_TIMEOUT, 0);
}

/* The endpoint for this request (again, after a failure), then an
 * upstream to it. */
static void
rt_try_endpoint(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct weft_conn_ctx *cx = rt->rt_cx;
	struct weft_lb_choice *c = &r->r_choice;
	char why[200];
	struct rt_up *u;

	rt_release(r);
	if (r->r_ntried == RT_TRIES || weft_lb_endpoint(weft_conn_ctx_lb(cx),
	    r->r_gen, c, r->r_tried, r->r_ntried, weft_lb_now_ms()) !=
	    WEFT_LB_OK) {
		if (r->r_ntried > 0) {
			snprintf(why, sizeof(why), "every endpoint tried "
			    "failed (%zu)", r->r_ntried);
			rt_answer(r, 502, why, false);
		} else
			rt_answer(r, 503, c->why, false);
		return;
	}
	rt_observe(r, &c->ep);
	if (c->state != NULL) {
		weft_lb_ep_acquire(c->state);
		r->r_acq = c->state;
		r->r_tried[r->r_ntried++] = c->state;
	} else
		r->r_tried[r->r_ntried++] = NULL;
	if (c->split != NULL)
		snprintf(r->r_route, sizeof(r->r_route), "svc %.60s/%.60s split "
		    "%.60s -> svc %.60s -> pod %.60s", c->root->namespace,
		    c->root->name, c->split->name, c->backend->name,
		    c->ep.pod->name);
	else
		snprintf(r->r_route, sizeof(r->r_route), "svc %.60s/%.60s -> "
		    "pod %.60s", c->root->namespace, c->root->name,
		    c->ep.pod->name);
	if ((u = rt_pool_get(r)) != NULL) {
		r->r_up = u;
		rt_send(r);
		return;
	}
	STAT_ADD(rt->rt_stats.rs_pool_misses, 1);
	if ((u = rt_up_new(r)) == NULL) {
		rt_answer(r, 502, "out of memory", true);
		return;
	}
	r->r_up = u;
	/* rt_up_evcb goes on when the hook has said. */
}

/* A complete request head: where does it go? */
static void
rt_route(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct weft_http_header hdrs[RT_HEADERS_MAX];
	struct weft_policy_http req;
	const struct weft_snap_service *root;
	const struct weft_service_port *sp = NULL;
	struct weft_ip vip;
	uint16_t vport;
	size_t i;

	STAT_ADD(rt->rt_stats.rs_requests, 1);
	r->r_req_done = false;
	r->r_resp_done = false;
	r->r_local = false;
	r->r_sent = false;
	r->r_resp_started = false;
	r->r_status = 0;
	r->r_denied = false;
	r->r_ntried = 0;
	weft_gen_unref(r->r_gen);
	r->r_gen = weft_gen_current();
	memset(&req, 0, sizeof(req));
	req.method = llhttp_method_name((llhttp_method_t)r->r_method);
	req.method_len = strlen(req.method);
	rt_path(r->r_buf != NULL ? r->r_buf + r->r_url.off : "", r->r_url.len,
	    &req.path, &req.path_len);
	for (i = 0; i < r->r_nhdr; i++) {
		hdrs[i].name = r->r_buf + r->r_hdrs[i].name.off;
		hdrs[i].name_len = r->r_hdrs[i].name.len;
		hdrs[i].value = r->r_hdrs[i].value.len > 0 ?
		    r->r_buf + r->r_hdrs[i].value.off : "";
		hdrs[i].value_len = r->r_hdrs[i].value.len;
		while (hdrs[i].value_len > 0 &&
		    (hdrs[i].value[hdrs[i].value_len - 1] == ' ' ||
		    hdrs[i].value[hdrs[i].value_len - 1] == '\t'))
			hdrs[i].value_len--;
	}
	req.headers = hdrs;
	req.n_headers = r->r_nhdr;
	r->r_expect = false;
	for (i = 0; i < r->r_nhdr; i++)
		if (hdrs[i].name_len == 6 &&
		    strncasecmp(hdrs[i].name, "expect", 6) == 0)
			r->r_expect = true;
	if (r->r_gen == NULL ||
	    weft_ip_from_sockaddr((struct sockaddr *)&r->r_dst, &vip,
	    &vport) == -1 ||
	    (root = weft_gen_service_by_vip(r->r_gen, &vip, vport,
	    IPPROTO_TCP, &sp)) == NULL) {
		rt_answer(r, 503, "the service is gone", true);
		return;
	}
	if (weft_lb_backend(weft_conn_ctx_lb(rt->rt_cx), r->r_gen, root, sp,
	    &req, &r->r_choice) != WEFT_LB_OK) {
		rt_answer(r, 503, r->r_choice.why, false);
		return;
	}
	rt_try_endpoint(r);
}

/* The hook said (from the loop). */
static void
rt_up_evcb(evutil_socket_t fd, short what, void *arg)
{
	struct rt_up *u = arg;
	struct rt_conn *r = u->u_conn;
	struct weft_router *rt = u->u_rt;
	char ep[WEFT_SOCKADDR_STRLEN];
	struct sockaddr_storage ss;
	socklen_t len;
	int64_t now = weft_lb_now_ms();

	(void)fd;
	(void)what;
	if (u->u_ready_seen || u->u_detached) {
		u->u_ready_seen = true;
		rt_up_free_maybe(u);
		return;
	}
	u->u_ready_seen = true;
	rt_up_unlist(u);	/* from rt_pending, if its client left */
	if (u->u_state == RT_UP_READY) {
		if (u->u_lb != NULL)
			weft_lb_ep_succeeded(u->u_lb);
		if (r == NULL)
			rt_pool_put(u);		/* its client went away */
		else
			rt_send(r);	/* if conn.c's end is gone already,
					 * the write fails: 502, not a retry */
		return;
	}
	/* Failed before any byte was sent: eject the endpoint (for a
	 * refusal, not for our own trouble) and try another. */
	weft_ip_to_sockaddr(&u->u_ip, u->u_port, &ss, &len);
	weft_sockaddr_str((struct sockaddr *)&ss, ep, sizeof(ep));
	if (u->u_lb != NULL && (u->u_result == WEFT_CLOSE_UPSTREAM_REFUSED ||
	    u->u_result == WEFT_CLOSE_UPSTREAM_TIMEOUT ||
	    u->u_result == WEFT_CLOSE_NO_ROUTE)) {
		weft_lb_ep_failed(u->u_lb, now);
		STAT_ADD(rt->rt_stats.rs_ejections, 1);
		log_info("conn %s: endpoint %s failed (%s): ejected for %llds",
		    u->u_id, ep, weft_close_reason_name(
		    (enum weft_close_reason)u->u_result),
		    (long long)(weft_lb_ep_ejected_for(u->u_lb, now) / 1000));
	}
	rt_up_detach(u);	/* may free u */
	if (r == NULL || r->r_closing || r->r_sent)
		return;
	STAT_ADD(rt->rt_stats.rs_retries, 1);
	rt_try_endpoint(r);
}

/* --- responses ------------------------------------------------------------------ */

static int
rt_on_resp_message_begin(llhttp_t *p)
{
	struct rt_up *u = p->data;

	u->u_hname_len = 0;
	u->u_in_denied = false;
	u->u_is_denied = false;
	u->u_denied[0] = '\0';
	u->u_denied_len = 0;
	return 0;
}

static int
rt_on_resp_header_field(llhttp_t *p, const char *at, size_t len)
{
	struct rt_up *u = p->data;

	if (u->u_in_denied || u->u_hname_len == SIZE_MAX) {
		/* a value was read: this is a new name */
		u->u_in_denied = false;
		u->u_hname_len = 0;
	}
	if (u->u_hname_len + len <= sizeof(u->u_hname))
		memcpy(u->u_hname + u->u_hname_len, at, len);
	u->u_hname_len += len;
	return 0;
}

static int
rt_on_resp_header_value(llhttp_t *p, const char *at, size_t len)
{
	struct rt_up *u = p->data;
	size_t n;

	if (u->u_hname_len != SIZE_MAX) {
		u->u_in_denied = u->u_hname_len == 13 &&
		    strncasecmp(u->u_hname, "x-weft-denied", 13) == 0;
		u->u_hname_len = SIZE_MAX;	/* the name is complete */
		if (u->u_in_denied) {
			u->u_is_denied = true;
			u->u_denied_len = 0;
			u->u_denied[0] = '\0';
		}
	}
	if (!u->u_in_denied)
		return 0;
	n = sizeof(u->u_denied) - 1 - u->u_denied_len;
	if (len < n)
		n = len;
	memcpy(u->u_denied + u->u_denied_len, at, n);
	u->u_denied_len += n;
	u->u_denied[u->u_denied_len] = '\0';
	return 0;
}

static int
rt_on_resp_headers_complete(llhttp_t *p)
{
	struct rt_up *u = p->data;
	struct rt_conn *r = u->u_conn;
	int status = llhttp_get_status_code(p);

	u->u_resp_head = true;
	if (r == NULL || (status < 200 && status != 101))
		return 0;
	r->r_status = status;
	r->r_latency = rt_since(&r->r_req_start);
	r->r_denied = status == 403 && u->u_is_denied;
	if (r->r_denied) {
		size_t n = u->u_denied_len;

		while (n > 0 && (u->u_denied[n - 1] == ' ' ||
		    u->u_denied[n - 1] == '\t'))
			n--;
		snprintf(r->r_deny_reason, sizeof(r->r_deny_reason), "%.*s",
		    (int)n, u->u_denied);
	}
	if (r->r_method == HTTP_HEAD)
		return 1;
	if (r->r_method == HTTP_CONNECT && status >= 200 && status < 300)
		return 2;
	return 0;
}

static int
rt_on_resp_message_complete(llhttp_t *p)
{
	struct rt_up *u = p->data;

	u->u_resp_done = true;
	return HPE_PAUSED;
}

/* The exchange is over (response complete, request complete): the
 * upstream goes back to the pool or away, the next request may come. */
static void
rt_exchange_end(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct weft_conn_ctx *cx = rt->rt_cx;
	const struct weft_lb_choice *c = &r->r_choice;
	struct weft_metrics_req m;
	const struct weft_snap_pod *sp;
	struct weft_ip sip;
	struct rt_up *u = r->r_up;
	bool reuse;

	if (!r->r_resp_done)
		return;
	if (!r->r_req_done) {
		/* Answered before the request ended: its remaining bytes
		 * are dropped (our answer) or the upstream had them all
		 * (an early response); the exchange ends with the
		 * request, unless the client is told to go. */
		if (r->r_local && !r->r_close_after)
			return;
		if (u != NULL && !r->r_local) {
			/* what is left of the body cannot follow: the
			 * upstream is not reusable, nor this connection */
			r->r_close_after = true;
		}
	}
	if (cx->cx_metrics != NULL && r->r_gen != NULL) {
		memset(&m, 0, sizeof(m));
		m.side = WEFT_METRICS_OUTBOUND;
		if (weft_ip_from_sockaddr((struct sockaddr *)&r->r_src, &sip,
		    NULL) == 0 && (sp = weft_gen_pod_by_ip(r->r_gen,
		    &sip)) != NULL) {
			m.src.ns = sp->namespace;
			m.src.sa = sp->service_account;
			m.src.pod = sp->name;
		}
		if (!r->r_local && c->ep.pod != NULL) {
			m.dst.ns = c->ep.pod->namespace;
			m.dst.sa = c->ep.pod->service_account;
			m.dst.pod = c->ep.pod->name;
		} else if (c->root != NULL)
			m.dst.ns = c->root->namespace;
		if (c->backend != NULL)
			m.dst_service = c->backend->name;
		if (c->split != NULL)
			m.split_apex = c->root->name;
		m.status = r->r_status;
		m.duration_s = r->r_latency;
		if (r->r_denied) {
			/* the destination denied it: counted here, on
			 * the caller's side; the callee's node does not */
			m.denied = true;
			m.reason = r->r_deny_reason[0] != '\0' ?
			    r->r_deny_reason : "policy";
		}
		weft_metrics_request(cx->cx_metrics, &m);
	}
	log_debug("conn %s: %s -> %d (%s)", r->r_id,
	    llhttp_method_name((llhttp_method_t)r->r_method), r->r_status,
	    r->r_route);
	rt_release(r);
	reuse = u != NULL && !r->r_local && r->r_req_done && u->u_resp_done &&
	    r->r_req_ka && r->r_resp_ka && !r->r_opaque && !r->r_upgrade;
	if (u != NULL) {
		r->r_up = NULL;
		if (reuse)
			rt_pool_put(u);
		else
			rt_up_detach(u);
	}
	weft_gen_unref(r->r_gen);
	r->r_gen = NULL;
	memset(&r->r_choice, 0, sizeof(r->r_choice));
	if (!r->r_req_ka || !r->r_resp_ka)
		r->r_close_after = true;
	r->r_busy = false;
	r->r_sent = false;
	r->r_local = false;
	if (r->r_head != NULL)
		evbuffer_drain(r->r_head, evbuffer_get_length(r->r_head));
	if (r->r_close_after || r->r_upgrade || (r->r_rd_eof &&
	    evbuffer_get_length(bufferevent_get_input(r->r_bev)) == 0)) {
		rt_close_later(r, "eof", false);
		return;
	}
	/* Pipelined requests: from the loop, not from inside this one. */
	event_active(r->r_ev, EV_TIMEOUT, 0);
}

static void
rt_opaque_shut(struct rt_conn *r)
{
	/* Half-close passes through once the other side's bytes are out. */
	if (r->r_rd_eof && !r->r_shut_up && r->r_up != NULL &&
	    r->r_up->u_bev != NULL && evbuffer_get_length(
	    bufferevent_get_output(r->r_up->u_bev)) == 0) {
		(void)shutdown(bufferevent_getfd(r->r_up->u_bev), SHUT_WR);
		r->r_shut_up = true;
	}
	if (r->r_up_eof && !r->r_shut_client && evbuffer_get_length(
	    bufferevent_get_output(r->r_bev)) == 0) {
		(void)shutdown(bufferevent_getfd(r->r_bev), SHUT_WR);
		r->r_shut_client = true;
	}
	if (r->r_shut_up && r->r_shut_client)
		rt_close_later(r, "eof", false);
}

static void
rt_up_readcb(struct bufferevent *bev, void *arg)
{
	struct rt_up *u = arg;
	struct rt_conn *r = u->u_conn;
	struct evbuffer *in = bufferevent_get_input(bev), *out;
	struct evbuffer_iovec v;
	llhttp_errno_t e;
	size_t used;

	if (r == NULL || !r->r_sent) {
		/* An idle upstream talks: nothing may come between
		 * exchanges; it cannot be reused. */
		rt_up_detach(u);
		return;
	}
	out = bufferevent_get_output(r->r_bev);
	while (evbuffer_get_length(in) > 0) {
		if (r->r_opaque) {
			r->r_recv_bytes += evbuffer_get_length(in);
			evbuffer_add_buffer(out, in);
			break;
		}
		if (u->u_resp_done) {
			/* bytes after the response: not HTTP any more */
			log_info("conn %s: %zu bytes after the response; "
			    "closing", u->u_id, evbuffer_get_length(in));
			rt_close_later(r, "upstream-protocol", true);
			return;
		}
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		u->u_resp_head = false;
		e = llhttp_execute(&u->u_resp, v.iov_base, v.iov_len);
		if (e == HPE_OK)
			used = v.iov_len;
		else if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
			used = (size_t)(llhttp_get_error_pos(&u->u_resp) -
			    (const char *)v.iov_base);
		else {
			log_info("conn %s: response: %s: %s", u->u_id,
			    llhttp_errno_name(e),
			    llhttp_get_error_reason(&u->u_resp) != NULL ?
			    llhttp_get_error_reason(&u->u_resp) : "");
			if (!r->r_resp_started) {
				rt_up_detach(u);
				r->r_resp_done = false;
				rt_answer(r, 502, "the upstream's response "
				    "is not HTTP", true);
			} else
				rt_close_later(r, "upstream-protocol", true);
			return;
		}
		if (used > 0) {
			r->r_resp_started = true;
			r->r_recv_bytes += used;
			evbuffer_remove_buffer(in, out, used);
		}
		if (u->u_resp_done) {
			int st = llhttp_get_status_code(&u->u_resp);

			if (st >= 100 && st < 200 && st != 101) {
				/* interim: the final response follows */
				u->u_resp_done = false;
				if (e == HPE_PAUSED)
					llhttp_resume(&u->u_resp);
				continue;
			}
			r->r_resp_ka = llhttp_should_keep_alive(
			    &u->u_resp) != 0;
			if (r->r_upgrade && (st == 101 ||
			    (r->r_method == HTTP_CONNECT && st >= 200 &&
			    st < 300))) {
				/* switched: both ways, as they are */
				r->r_opaque = true;
				r->r_recv_bytes += evbuffer_get_length(in);
				evbuffer_add_buffer(out, in);
				rt_pump(r);
				break;
			}
			r->r_resp_done = true;
			if (evbuffer_get_length(in) > 0)
				r->r_close_after = true;
			rt_exchange_end(r);
			return;
		}
		if (e == HPE_PAUSED)
			llhttp_resume(&u->u_resp);
		else if (e == HPE_PAUSED_UPGRADE && r->r_upgrade) {
			r->r_opaque = true;
			r->r_recv_bytes += evbuffer_get_length(in);
			evbuffer_add_buffer(out, in);
			rt_pump(r);
			break;
		}
	}
	/* Backpressure: the client reads slowly. */
	if (evbuffer_get_length(out) >= rt_high(r->r_rt))
		bufferevent_disable(bev, EV_READ);
}

static void
rt_up_writecb(struct bufferevent *bev, void *arg)
{
	struct rt_up *u = arg;
	struct rt_conn *r = u->u_conn;

	(void)bev;
	if (r == NULL)
		return;
	if (r->r_opaque)
		rt_opaque_shut(r);
	if (r->r_bev != NULL && !r->r_rd_eof && !r->r_closing)
		bufferevent_enable(r->r_bev, EV_READ);
	rt_pump(r);
}

/* The upstream ended (EOF) or broke. */
static void
rt_up_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct rt_up *u = arg;
	struct rt_conn *r = u->u_conn;

	(void)bev;
	if (!u->u_ready_seen) {
		/* Still connecting as far as we know: the hook says how
		 * it ended (reading again later sees the EOF again). */
		bufferevent_disable(bev, EV_READ);
		return;
	}
	if (r == NULL || !r->r_sent) {
		/* idle in the pool: just gone */
		rt_up_detach(u);
		return;
	}
	if (r->r_opaque) {
		if (what & BEV_EVENT_EOF) {
			r->r_up_eof = true;
			rt_opaque_shut(r);
		} else
			rt_close_later(r, "upstream-reset", true);
		return;
	}
	if ((what & BEV_EVENT_EOF) && r->r_resp_started && !u->u_resp_done) {
		/* A response delimited by the close ends here. */
		llhttp_errno_t fe;

		u->u_resp_done = false;
		fe = llhttp_finish(&u->u_resp);
		if ((fe == HPE_OK || fe == HPE_PAUSED) && u->u_resp_done) {
			r->r_resp_ka = false;
			r->r_resp_done = true;
			rt_up_detach(u);
			r->r_up = NULL;
			rt_exchange_end(r);
			return;
		}
	}
	if (!r->r_resp_started) {
		/* Sent, and no answer: never again (not replayed).  The
		 * pod may be gone: its other idle upstreams would fail the
		 * same way, after the next requests were written to them;
		 * drop them, so that the next request connects afresh (and a
		 * refusal then moves it elsewhere before anything is sent). */
		rt_pool_drop(r->r_rt, &u->u_ip, u->u_port);
		rt_up_detach(u);
		rt_answer(r, 502, "the upstream closed before answering",
		    !r->r_req_done);
		return;
	}
	rt_close_later(r, (what & BEV_EVENT_EOF) ? "upstream-eof" :
	    "upstream-reset", true);
}

/* --- the client connection ---------------------------------------------------- */

static void
rt_pump(struct rt_conn *r)
{
	struct evbuffer *in;

	if (r->r_bev == NULL || r->r_closing)
		return;
	rt_parse(r);
	if (r->r_bev == NULL || r->r_closing)
		return;
	in = bufferevent_get_input(r->r_bev);
	/* Backpressure: bytes that cannot move stay in the kernel. */
	if (evbuffer_get_length(in) >= rt_high(r->r_rt) ||
	    (r->r_up != NULL && r->r_sent && r->r_up->u_bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(r->r_up->u_bev)) >=
	    rt_high(r->r_rt)))
		bufferevent_disable(r->r_bev, EV_READ);
	else if (!r->r_rd_eof)
		bufferevent_enable(r->r_bev, EV_READ);
	if (r->r_opaque)
		rt_opaque_shut(r);
	else if (r->r_rd_eof && !r->r_busy && evbuffer_get_length(in) == 0)
		/* The client is done and nothing is in progress. */
		rt_close_later(r, "eof", false);
}

static bool
rt_sniff_http(const unsigned char *p, size_t n, bool *more)
{
	static const char *const methods[] = { "GET ", "HEAD ", "POST ",
	    "PUT ", "DELETE ", "CONNECT ", "OPTIONS ", "TRACE ", "PATCH " };
	size_t i, len;

	*more = false;
	for (i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		len = strlen(methods[i]);
		if (memcmp(p, methods[i], n < len ? n : len) != 0)
			continue;
		if (n >= len)
			return true;
		*more = true;
	}
	return false;
}

/* Not HTTP: back to conn.c, balanced per connection. */
static void
rt_give_back(struct rt_conn *r)
{
	struct weft_router *rt = r->r_rt;
	struct evbuffer *pending;
	char id[32];
	int fd;

	STAT_ADD(rt->rt_stats.rs_opaque, 1);
	if ((pending = evbuffer_new()) == NULL) {
		rt_close(r, "error");
		return;
	}
	evbuffer_add_buffer(pending, bufferevent_get_input(r->r_bev));
	fd = bufferevent_getfd(r->r_bev);
	bufferevent_setfd(r->r_bev, -1);
	bufferevent_free(r->r_bev);
	r->r_bev = NULL;
	snprintf(id, sizeof(id), "%s", r->r_id);
	log_debug("conn %s: not HTTP; balanced per connection", id);
	weft_conn_adopt_hooked(rt->rt_cx, fd, WEFT_DIR_OUTBOUND,
	    r->r_listen_port, &r->r_src, &r->r_dst, pending, id, &r->r_start,
	    NULL, WEFT_ADOPT_OPAQUE);
	evbuffer_free(pending);
	r->r_reason = NULL;	/* the relay writes its line */
	rt_close(r, NULL);
}

static void
rt_sniff(struct rt_conn *r, bool timeout)
{
	struct evbuffer *in = bufferevent_get_input(r->r_bev);
	unsigned char b[8];
	size_t n;
	bool more;

	n = (size_t)evbuffer_copyout(in, b, sizeof(b));
	if (n > 0 && rt_sniff_http(b, n, &more)) {
		r->r_sniffing = false;
		evtimer_del(r->r_timer);
		rt_pump(r);
		return;
	}
	if (!timeout && !r->r_rd_eof && (n == 0 || more))
		return;		/* wait for more, or for the timer */
	evtimer_del(r->r_timer);
	rt_give_back(r);
}

/* Close r from the loop: nothing up the stack may still use it. */
static void
rt_close_later(struct rt_conn *r, const char *reason, bool abort)
{
	if (r->r_reason == NULL || (abort && !r->r_abort))
		r->r_reason = reason;
	if (abort)
		r->r_abort = true;
	r->r_closing = true;
	if (r->r_bev != NULL)
		bufferevent_disable(r->r_bev, EV_READ);
	event_active(r->r_ev, EV_TIMEOUT, 0);
}

static void
rt_evcb(evutil_socket_t fd, short what, void *arg)
{
	struct rt_conn *r = arg;

	(void)fd;
	(void)what;
	if (r->r_closing) {
		/* after a flush, or at once for a reset; else the write
		 * callback closes once the output is out */
		if (r->r_abort || r->r_bev == NULL || evbuffer_get_length(
		    bufferevent_get_output(r->r_bev)) == 0)
			rt_close(r, r->r_reason != NULL ? r->r_reason : "eof");
		return;
	}
	if (r->r_sniffing) {
		rt_sniff(r, false);
		return;
	}
	rt_pump(r);
}

static void
rt_sniff_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct rt_conn *r = arg;

	(void)fd;
	(void)what;
	if (r->r_sniffing && !r->r_closing)
		rt_sniff(r, true);
}

static void
rt_client_readcb(struct bufferevent *bev, void *arg)
{
	struct rt_conn *r = arg;

	(void)bev;
	if (r->r_sniffing) {
		rt_sniff(r, false);
		return;
	}
	rt_pump(r);
}

static void
rt_client_writecb(struct bufferevent *bev, void *arg)
{
	struct rt_conn *r = arg;

	(void)bev;
	if (r->r_closing && evbuffer_get_length(bufferevent_get_output(
	    r->r_bev)) == 0) {
		rt_close(r, r->r_reason != NULL ? r->r_reason : "eof");
		return;
	}
	if (r->r_opaque)
		rt_opaque_shut(r);
	if (r->r_up != NULL && r->r_up->u_bev != NULL)
		bufferevent_enable(r->r_up->u_bev, EV_READ);
}

static void
rt_client_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct rt_conn *r = arg;

	(void)bev;
	if (what & BEV_EVENT_EOF) {
		r->r_rd_eof = true;
		if (r->r_sniffing) {
			rt_sniff(r, true);
			return;
		}
		if (r->r_opaque) {
			rt_pump(r);
			return;
		}
		if (r->r_busy && !r->r_req_done && !r->r_local) {
			/* The request is cut short: it cannot complete. */
			rt_close(r, "client-eof");
			return;
		}
		/* A complete request still gets its answer; then close. */
		rt_pump(r);
		return;
	}
	rt_close(r, "client-reset");
}

/* The one exit of a client connection: its log line, then free. */
static void
rt_close(struct rt_conn *r, const char *reason)
{
	struct weft_router *rt = r->r_rt;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];

	if (reason != NULL) {
		/* The connection conn.c counted as opened ends here. */
		enum weft_close_reason cr = WEFT_CLOSE_ERROR;

		if (strcmp(reason, "eof") == 0)
			cr = WEFT_CLOSE_EOF;
		else if (strcmp(reason, "client-reset") == 0 ||
		    strcmp(reason, "client-eof") == 0 ||
		    strncmp(reason, "upstream-", 9) == 0)
			cr = WEFT_CLOSE_RESET;
		else if (strcmp(reason, "shutdown") == 0)
			cr = WEFT_CLOSE_SHUTDOWN;
		STAT_ADD(rt->rt_cx->cx_stats.cs_closed[cr], 1);
	}
	if (reason != NULL)
		log_info("conn %s outbound %s -> %s route=\"%s\" http "
		    "requests=%llu sent=%llu received=%llu duration=%.1fms "
		    "reason=%s", r->r_id, weft_sockaddr_str((struct sockaddr *)
		    &r->r_src, src, sizeof(src)), weft_sockaddr_str(
		    (struct sockaddr *)&r->r_dst, dst, sizeof(dst)),
		    r->r_route[0] ? r->r_route : "-",
		    (unsigned long long)r->r_nreq,
		    (unsigned long long)r->r_sent_bytes,
		    (unsigned long long)r->r_recv_bytes,
		    rt_since(&r->r_start) * 1e3, reason);
	rt_release(r);
	weft_metrics_flow_close(rt->rt_cx->cx_metrics, r->r_mflow,
	    r->r_sent_bytes, r->r_recv_bytes);
	r->r_mflow = NULL;
	if (r->r_up != NULL) {
		struct rt_up *u = r->r_up;

		r->r_up = NULL;
		u->u_conn = NULL;
		/* connecting still: it may join the pool if it opens */
		if (!u->u_ready_seen && !u->u_detached && !r->r_sent) {
			TAILQ_INSERT_TAIL(&rt->rt_pending, u, u_entry);
			u->u_list = RT_LIST_PENDING;
		} else
			rt_up_detach(u);
	}
	weft_gen_unref(r->r_gen);
	r->r_gen = NULL;
	if (r->r_bev != NULL) {
		if (r->r_abort || (reason != NULL &&
		    strcmp(reason, "client-reset") == 0)) {
			struct linger lg = { 1, 0 };

			(void)setsockopt(bufferevent_getfd(r->r_bev), SOL_SOCKET,
			    SO_LINGER, &lg, sizeof(lg));
		}
		bufferevent_free(r->r_bev);
		r->r_bev = NULL;
	}
	if (r->r_ev != NULL)
		event_free(r->r_ev);
	if (r->r_timer != NULL)
		event_free(r->r_timer);
	if (r->r_head != NULL)
		evbuffer_free(r->r_head);
	free(r->r_buf);
	free(r->r_hdrs);
	TAILQ_REMOVE(&rt->rt_conns, r, r_entry);
	rt->rt_nconns--;
	free(r);
}

void
weft_router_take(struct weft_conn_ctx *cx, int fd, struct evbuffer *pending,
    bool sniff, const char *id, const struct sockaddr_storage *src,
    const struct sockaddr_storage *dst, uint16_t listen_port,
    const struct timespec *start)
{
	struct weft_router *rt;
	struct rt_conn *r;
	struct evbuffer *in;

	if ((rt = rt_get(cx)) == NULL || (r = calloc(1, sizeof(*r))) == NULL) {
		log_warn("conn %s: router", id);
		close(fd);
		return;
	}
	r->r_rt = rt;
	snprintf(r->r_id, sizeof(r->r_id), "%s", id);
	r->r_src = *src;
	r->r_dst = *dst;
	r->r_listen_port = listen_port;
	r->r_start = *start;
	r->r_sniffing = sniff;
	TAILQ_INSERT_TAIL(&rt->rt_conns, r, r_entry);
	rt->rt_nconns++;
	STAT_ADD(rt->rt_stats.rs_conns, 1);
	llhttp_init(&r->r_req, HTTP_REQUEST, &rt_req_settings);
	r->r_req.data = r;
	if ((r->r_head = evbuffer_new()) == NULL ||
	    (r->r_ev = event_new(cx->cx_base, -1, 0, rt_evcb, r)) == NULL ||
	    (r->r_timer = evtimer_new(cx->cx_base, rt_sniff_timercb,
	    r)) == NULL ||
	    (r->r_bev = bufferevent_socket_new(cx->cx_base, fd,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL) {
		log_warn("conn %s: router", id);
		if (r->r_bev == NULL)
			close(fd);
		rt_close(r, "error");
		return;
	}
	bufferevent_setcb(r->r_bev, rt_client_readcb, rt_client_writecb,
	    rt_client_eventcb, r);
	bufferevent_setwatermark(r->r_bev, EV_WRITE, rt_high(rt) / 2, 0);
	if (pending != NULL && evbuffer_get_length(pending) > 0) {
		in = bufferevent_get_input(r->r_bev);
		evbuffer_unfreeze(in, 0);
		evbuffer_add_buffer(in, pending);
		evbuffer_freeze(in, 0);
	}
	bufferevent_enable(r->r_bev, EV_READ | EV_WRITE);
	if (sniff) {
		struct timeval tv = { 0, RT_SNIFF_MS * 1000 };

		evtimer_add(r->r_timer, &tv);
	}
	/* Bytes that came with it are looked at from the loop. */
	event_active(r->r_ev, EV_TIMEOUT, 0);
}

void
weft_router_shutdown(struct weft_conn_ctx *cx)
{
	struct weft_router *rt = cx->cx_router;
	struct rt_conn *r;
	struct rt_up *u;

	if (rt == NULL)
		return;
	while ((r = TAILQ_FIRST(&rt->rt_conns)) != NULL)
		rt_close(r, "shutdown");
	while ((u = TAILQ_FIRST(&rt->rt_idle)) != NULL)
		rt_up_detach(u);
	while ((u = TAILQ_FIRST(&rt->rt_pending)) != NULL)
		rt_up_detach(u);
	/* conn.c and the tunnel are gone by now (weft_conn_ctx_shutdown
	 * closes them first): their hooks have said done, or never will. */
	while ((u = TAILQ_FIRST(&rt->rt_gone)) != NULL) {
		u->u_hook_done = true;
		rt_up_free_maybe(u);
	}
	event_free(rt->rt_timer);
	free(rt);
	cx->cx_router = NULL;
}

void
weft_router_stats(const struct weft_conn_ctx *cx,
    struct weft_router_stats_view *out)
{
	const struct weft_router *rt = cx->cx_router;

	memset(out, 0, sizeof(*out));
	if (rt == NULL)
		return;
#define LD(f) atomic_load_explicit(&rt->rt_stats.f, memory_order_relaxed)
	out->conns = LD(rs_conns);
	out->requests = LD(rs_requests);
	out->upstreams = LD(rs_upstreams);
	out->pool_hits = LD(rs_pool_hits);
	out->pool_misses = LD(rs_pool_misses);
	out->retries = LD(rs_retries);
	out->ejections = LD(rs_ejections);
	out->answered_503 = LD(rs_503);
	out->answered_502 = LD(rs_502);
	out->opaque = LD(rs_opaque);
#undef LD
	out->open_conns = rt->rt_nconns;
	out->idle_upstreams = rt->rt_nidle;
	out->upstreams_alive = rt->rt_nups;
}
