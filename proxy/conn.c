/* The relay: one captured connection, two halves, bytes both ways.
 *
 * Shape of relayd's relay.c and libevent's le-proxy.c: each half owns a
 * bufferevent; a half's read callback moves its input into the other half's
 * output; when that output passes the high watermark the reader stops and
 * the writer's write callback resumes it below half (backpressure).  EOF on
 * one side is passed on as shutdown(SHUT_WR) on the other once its output is
 * empty (half-close); the connection ends when both directions are done.
 * Every exit goes through weft_conn_close(), which first delivers what was
 * already read (no byte dropped) and then frees in conn_finish().
 *
 * Lifecycle (cn_state):
 *   NEW -> HOLD -> CONNECTING -> RELAY -> [DRAINING] -> CLOSED
 *              \______________/
 * HOLD re-decides every rc_hold_poll_ms until rc_hold_ms; a relay built from
 * two connected sockets (weft_conn_new_relay) starts in RELAY. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <linux/sockios.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "weft/balance.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/http1.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/policy.h"
#include "weft/tunnel.h"
#include "proxy/proxy-int.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT	24
#endif

enum weft_conn_state {
	WEFT_CONN_NEW = 0,
	WEFT_CONN_HOLD,		/* parked: no generation / unknown pod */
	WEFT_CONN_CONNECTING,	/* upstream connect in progress */
	WEFT_CONN_RELAY,	/* both sockets open, copying */
	WEFT_CONN_DRAINING,	/* closing: flushing what was read */
	WEFT_CONN_CLOSED,
};

/* A half's socket: reading ends with EOF (RD_EOF), writing with our
 * shutdown (WR_SHUT); both is DONE.  FAILED: error, nothing more to do. */
enum weft_half_state {
	WEFT_HALF_NONE = 0,	/* no socket yet (upstream before connect) */
	WEFT_HALF_CONNECTING,
	WEFT_HALF_OPEN,
	WEFT_HALF_RD_EOF,
	WEFT_HALF_WR_SHUT,
	WEFT_HALF_DONE,
	WEFT_HALF_FAILED,
};

struct weft_half {
	struct weft_conn *h_conn;		/* back pointer */
	struct weft_half *h_peer;		/* the other half */
	struct bufferevent *h_bev;		/* owned, owns the fd; NULL
						 * before connect / when freed */
	struct event	*h_rev;			/* owned: our reader on the fd
						 * (half_readcb), freed with h_bev */
	bool		 h_reading;		/* h_rev is added */
	enum weft_half_state h_state;
	const char	*h_name;		/* "downstream", "upstream" */
	bool		 h_paused;		/* reading stopped: peer's output
						 * above the high watermark */
	uint64_t	 h_bytes;		/* read here, queued to the peer */
};

struct weft_conn {
	TAILQ_ENTRY(weft_conn) cn_entry;	/* in cn_ctx->cx_conns */
	struct weft_conn_ctx *cn_ctx;		/* borrowed */
	char		 cn_id[32];		/* "w1-42" */
	enum weft_conn_dir cn_dir;
	enum weft_conn_state cn_state;
	enum weft_close_reason cn_reason;	/* set when closing starts */
	struct weft_half cn_down;		/* accepted socket */
	struct weft_half cn_up;			/* our connect */
	struct sockaddr_storage cn_src;		/* peer of the accepted socket */
	struct sockaddr_storage cn_dst;		/* original destination */
	struct sockaddr_storage cn_via;		/* upstream address */
	uint16_t	 cn_listen_port;
	char		 cn_route[160];		/* decision, for the log line */
	struct event	*cn_timer;		/* owned: hold poll, connect
						 * timeout, drain timeout */
	struct timespec	 cn_start;		/* CLOCK_MONOTONIC */
	struct timespec	 cn_hold_deadline;
	bool		 cn_held;		/* was parked at least once */
	bool		 cn_relayed;		/* reached RELAY */
	bool		 cn_drain_expired;	/* flush gave up: bytes lost */
	bool		 cn_hold_nocert;	/* held for a tunnel certificate */
	/* The destination's policy (same-node and inbound plaintext
	 * connections to a meshed pod): the flow it is decided on, and the
	 * HTTP/1.x filter when it is decided per request. */
	struct weft_flow *cn_flow;		/* owned; NULL: no policy */
	struct weft_h1	*cn_h1;			/* owned; NULL: bytes pass */
	char		*cn_policy;		/* owned: why it was let in */
	bool		 cn_sniff;		/* allowed at L4: follow HTTP if
						 * the client's first byte could
						 * start a request */
	int		 cn_close_req;		/* 1 + reason: close from the
						 * loop (cn_timer), not from
						 * inside a pump */
	/* Metrics (weft/metrics.h): [0] outbound, [1] inbound (a call to a
	 * pod of this node is both); owned, NULL when not observed. */
	struct weft_metrics_flow *cn_mflow[2];
	/* Whoever gave us the connection wants to know how its upstream
	 * fares (weft_conn_adopt_hooked; weft/conn.h): ready once, done
	 * once.  A service VIP balanced per connection gets a hook of the
	 * balancer's (conn_lb_*): the endpoint's outstanding count, its
	 * ejection when it refuses, and up to CONN_LB_TRIES choices. */
	struct weft_conn_hook cn_hook;
	bool		 cn_hook_ready;		/* hk_ready was called */
	unsigned	 cn_adopt;		/* WEFT_ADOPT_* */
	struct weft_lb_ep *cn_lb_ep;		/* acquired; NULL: none */
	int		 cn_lb_tries;
};

/* Endpoints of a service tried per connection before giving up: the
 * connection moves on only while no byte went upstream. */
#define CONN_LB_TRIES	3

/* The counters have one writer (the worker thread): a relaxed load and
 * store is enough and costs no locked instruction. */
#define STAT_ADD(field, n)						\
	atomic_store_explicit(&(field), atomic_load_explicit(&(field),	\
	    memory_order_relaxed) + (n), memory_order_relaxed)

static void	conn_writecb(struct bufferevent *, void *);
static void	conn_eventcb(struct bufferevent *, short, void *);
static void	conn_timercb(evutil_socket_t, short, void *);
static void	conn_decide(struct weft_conn *);
static void	conn_connect_failed(struct weft_conn *, enum weft_close_reason);
static void	conn_finish(struct weft_conn *);
static void	conn_half_eof(struct weft_half *);
static void	conn_half_fail(struct weft_half *, enum weft_close_reason);
static const struct weft_h1_ops conn_h1_ops;

static const char *const conn_reason_names[WEFT_CLOSE_NREASONS] = {
	[WEFT_CLOSE_EOF] = "eof",
	[WEFT_CLOSE_RESET] = "reset",
	[WEFT_CLOSE_UPSTREAM_REFUSED] = "upstream-refused",
	[WEFT_CLOSE_UPSTREAM_TIMEOUT] = "upstream-timeout",
	[WEFT_CLOSE_DENIED] = "denied",
	[WEFT_CLOSE_NO_ROUTE] = "no-route",
	[WEFT_CLOSE_SELF_CONNECT] = "self-connect",
	[WEFT_CLOSE_HELD_TIMEOUT] = "held-timeout",
	[WEFT_CLOSE_ERROR] = "error",
	[WEFT_CLOSE_SHUTDOWN] = "shutdown",
};

const char *
weft_close_reason_name(enum weft_close_reason r)
{
	if ((unsigned)r >= WEFT_CLOSE_NREASONS || conn_reason_names[r] == NULL)
		return "unknown";
	return conn_reason_names[r];
}

const char *
weft_conn_dir_name(enum weft_conn_dir d)
{
	switch (d) {
	case WEFT_DIR_OUTBOUND:
		return "outbound";
	case WEFT_DIR_INBOUND:
		return "inbound";
	case WEFT_DIR_RELAY:
		return "relay";
	case WEFT_DIR_TUNNEL:
		return "tunnel-in";
	}
	return "?";
}

static const char *
conn_state_name(enum weft_conn_state s)
{
	static const char *const names[] = { "new", "hold", "connecting",
	    "relay", "draining", "closed" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

static const char *
half_state_name(enum weft_half_state s)
{
	static const char *const names[] = { "none", "connecting", "open",
	    "rd-eof", "wr-shut", "done", "failed" };

	return (unsigned)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

void
weft_relay_config_defaults(struct weft_relay_config *rc)
{
	memset(rc, 0, sizeof(*rc));
	rc->rc_buffer_high = 256 * 1024;
	rc->rc_connect_timeout_ms = 5000;
	rc->rc_hold_ms = 1000;
	rc->rc_hold_poll_ms = 100;
	rc->rc_drain_timeout_ms = 1000;
	rc->rc_own_mark = 0;
	rc->rc_transparent = false;
}

void
weft_conn_stats_read(const struct weft_conn_stats *s,
    struct weft_conn_stats_view *out)
{
	size_t i;

	memset(out, 0, sizeof(*out));
	out->opened = atomic_load_explicit(&s->cs_opened, memory_order_relaxed);
	for (i = 0; i < WEFT_CLOSE_NREASONS; i++)
		out->closed[i] = atomic_load_explicit(&s->cs_closed[i],
		    memory_order_relaxed);
	out->bytes_sent = atomic_load_explicit(&s->cs_bytes_sent,
	    memory_order_relaxed);
	out->bytes_received = atomic_load_explicit(&s->cs_bytes_received,
	    memory_order_relaxed);
	out->held = atomic_load_explicit(&s->cs_held, memory_order_relaxed);
#define LD(f) atomic_load_explicit(&s->f, memory_order_relaxed)
	out->tun_dialed = LD(cs_tun_dialed);
	out->tun_accepted = LD(cs_tun_accepted);
	out->tun_resumed = LD(cs_tun_resumed);
	out->tun_streams = LD(cs_tun_streams);
	out->tun_refused_handshake = LD(cs_tun_refused_handshake);
	out->tun_refused_identity = LD(cs_tun_refused_identity);
	out->tun_refused_no_cert = LD(cs_tun_refused_no_cert);
	out->tun_denied_streams = LD(cs_tun_denied_streams);
#undef LD
}

void
weft_conn_ctx_init(struct weft_conn_ctx *cx, struct event_base *base,
    int index, const struct weft_relay_config *rc)
{
	memset(cx, 0, sizeof(*cx));
	cx->cx_base = base;
	cx->cx_index = index;
	cx->cx_cfg = *rc;
	if (cx->cx_cfg.rc_buffer_high == 0)
		cx->cx_cfg.rc_buffer_high = 256 * 1024;
	TAILQ_INIT(&cx->cx_conns);
	TAILQ_INIT(&cx->cx_deniers);
}

void
weft_conn_ctx_shutdown(struct weft_conn_ctx *cx)
{
	struct weft_conn *c;

	while ((c = TAILQ_FIRST(&cx->cx_conns)) != NULL)
		weft_conn_close(c, WEFT_CLOSE_SHUTDOWN);
	weft_deny_shutdown(cx);
	if (cx->cx_tunnel != NULL)
		weft_tunnel_shutdown(cx->cx_tunnel);
	/* Last: the hooks of the connections and streams above point into
	 * the router and the balancer. */
	weft_router_shutdown(cx);
	weft_lb_free(cx->cx_lb);
	cx->cx_lb = NULL;
}

const char *
weft_conn_id(const struct weft_conn *c)
{
	return c->cn_id;
}

void
weft_conn_buffered(const struct weft_conn *c, size_t *down_in,
    size_t *down_out, size_t *up_in, size_t *up_out)
{
	const struct weft_half *d = &c->cn_down, *u = &c->cn_up;

	*down_in = d->h_bev ? evbuffer_get_length(bufferevent_get_input(
	    d->h_bev)) : 0;
	*down_out = d->h_bev ? evbuffer_get_length(bufferevent_get_output(
	    d->h_bev)) : 0;
	*up_in = u->h_bev ? evbuffer_get_length(bufferevent_get_input(
	    u->h_bev)) : 0;
	*up_out = u->h_bev ? evbuffer_get_length(bufferevent_get_output(
	    u->h_bev)) : 0;
}

/* --- small helpers -------------------------------------------------------- */

static double
conn_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
conn_set_state(struct weft_conn *c, enum weft_conn_state s)
{
	if (c->cn_state == s)
		return;
	log_debug("conn %s: %s -> %s", c->cn_id, conn_state_name(c->cn_state),
	    conn_state_name(s));
	c->cn_state = s;
}

static void
half_set_state(struct weft_half *h, enum weft_half_state s)
{
	if (h->h_state == s)
		return;
	log_debug("conn %s: %s %s -> %s", h->h_conn->cn_id, h->h_name,
	    half_state_name(h->h_state), half_state_name(s));
	h->h_state = s;
}

static bool
half_rd_done(const struct weft_half *h)
{
	return h->h_state == WEFT_HALF_RD_EOF || h->h_state == WEFT_HALF_DONE ||
	    h->h_state == WEFT_HALF_FAILED;
}

static bool
half_wr_done(const struct weft_half *h)
{
	return h->h_state == WEFT_HALF_WR_SHUT ||
	    h->h_state == WEFT_HALF_DONE || h->h_state == WEFT_HALF_FAILED;
}

static void
half_rd_eof(struct weft_half *h)
{
	half_set_state(h, h->h_state == WEFT_HALF_WR_SHUT ? WEFT_HALF_DONE :
	    WEFT_HALF_RD_EOF);
}

static size_t
half_outlen(const struct weft_half *h)
{
	return h->h_bev ? evbuffer_get_length(bufferevent_get_output(h->h_bev))
	    : 0;
}

static void
conn_timer_arm(struct weft_conn *c, int ms)
{
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(c->cn_timer, &tv);
}

static bool
conn_reason_refuses(enum weft_close_reason r)
{
	switch (r) {
	case WEFT_CLOSE_UPSTREAM_REFUSED:
	case WEFT_CLOSE_UPSTREAM_TIMEOUT:
	case WEFT_CLOSE_DENIED:
	case WEFT_CLOSE_NO_ROUTE:
	case WEFT_CLOSE_SELF_CONNECT:
	case WEFT_CLOSE_HELD_TIMEOUT:
		return true;
	default:
		return false;
	}
}

static enum weft_close_reason
conn_connect_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
	case ECONNRESET:
		return WEFT_CLOSE_UPSTREAM_REFUSED;
	case ETIMEDOUT:
		return WEFT_CLOSE_UPSTREAM_TIMEOUT;
	case ENETUNREACH:
	case EHOSTUNREACH:
	case EADDRNOTAVAIL:
		return WEFT_CLOSE_NO_ROUTE;
	default:
		return WEFT_CLOSE_ERROR;
	}
}

/* --- hooks: whoever gave us the connection, and the balancer --------------- */

/* The endpoint's fault: it refused, did not answer, or cannot be reached. */
static bool
conn_reason_ejects(int r)
{
	return r == WEFT_CLOSE_UPSTREAM_REFUSED ||
	    r == WEFT_CLOSE_UPSTREAM_TIMEOUT || r == WEFT_CLOSE_NO_ROUTE;
}

static void
conn_hook_ready(struct weft_conn *c, int result)
{
	if (c->cn_hook_ready)
		return;
	c->cn_hook_ready = true;
	if (c->cn_lb_ep != NULL) {
		if (result == 0)
			weft_lb_ep_succeeded(c->cn_lb_ep);
		else if (conn_reason_ejects(result))
			weft_lb_ep_failed(c->cn_lb_ep, weft_lb_now_ms());
	}
	if (c->cn_hook.hk_ready != NULL)
		c->cn_hook.hk_ready(c->cn_hook.hk_arg, result);
}

/* The last word: the upstream's outcome if not said yet, then done. */
static void
conn_hook_done(struct weft_conn *c, int result)
{
	conn_hook_ready(c, result);
	if (c->cn_lb_ep != NULL) {
		weft_lb_ep_release(c->cn_lb_ep);
		c->cn_lb_ep = NULL;
	}
	if (c->cn_hook.hk_done != NULL)
		c->cn_hook.hk_done(c->cn_hook.hk_arg);
	memset(&c->cn_hook, 0, sizeof(c->cn_hook));
}

/*
 * Reading is ours, writing is the bufferevent's.  libevent 2.1's evbuffer_read
 * never reads more than 4 KiB per call (EVBUFFER_MAX_READ; configurable only
 * from 2.2), which capped a relayed stream at about 0.6 Gbit/s here.  Our
 * reader reads straight into the half's input buffer with readv, in chunks
 * sized to the room left below the high watermark, several per wakeup.
 */
#define HALF_READ_CHUNK		(64 * 1024)
#define HALF_READ_BUDGET	(512 * 1024)	/* per wakeup, then yield */
#define HALF_WRITE_MAX		(512 * 1024)	/* per bufferevent write */

static void half_readcb(evutil_socket_t fd, short what, void *arg);

static int
half_attach(struct weft_half *h, int fd)
{
	struct weft_conn_ctx *cx = h->h_conn->cn_ctx;

	if ((h->h_rev = event_new(cx->cx_base, fd, EV_READ | EV_PERSIST,
	    half_readcb, h)) == NULL)
		return -1;
	/* Deferred callbacks: no re-entry from inside libevent calls, and
	 * errno is saved for the event callback. */
	h->h_bev = bufferevent_socket_new(cx->cx_base, fd,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (h->h_bev == NULL) {
		event_free(h->h_rev);
		h->h_rev = NULL;
		return -1;
	}
	bufferevent_setcb(h->h_bev, NULL, conn_writecb, conn_eventcb, h);
	(void)bufferevent_set_max_single_write(h->h_bev, HALF_WRITE_MAX);
	return 0;
}

static void
half_read_enable(struct weft_half *h)
{
	if (h->h_rev != NULL && !h->h_reading) {
		event_add(h->h_rev, NULL);
		h->h_reading = true;
	}
}

static void
half_read_disable(struct weft_half *h)
{
	if (h->h_rev != NULL && h->h_reading) {
		event_del(h->h_rev);
		h->h_reading = false;
	}
}

/* Free the reader, then the bufferevent (which closes the fd). */
static void
half_free(struct weft_half *h)
{
	if (h->h_rev != NULL) {
		event_free(h->h_rev);
		h->h_rev = NULL;
		h->h_reading = false;
	}
	if (h->h_bev != NULL) {
		bufferevent_free(h->h_bev);
		h->h_bev = NULL;
	}
}

static struct weft_conn *
conn_alloc(struct weft_conn_ctx *cx, enum weft_conn_dir dir)
{
	struct weft_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	if ((c->cn_timer = evtimer_new(cx->cx_base, conn_timercb, c)) == NULL) {
		free(c);
		return NULL;
	}
	c->cn_ctx = cx;
	c->cn_dir = dir;
	c->cn_state = WEFT_CONN_NEW;
	c->cn_reason = WEFT_CLOSE_ERROR;
	snprintf(c->cn_id, sizeof(c->cn_id), "w%d-%llu", cx->cx_index,
	    (unsigned long long)++cx->cx_next_id);
	c->cn_down.h_conn = c;
	c->cn_down.h_peer = &c->cn_up;
	c->cn_down.h_name = "downstream";
	c->cn_up.h_conn = c;
	c->cn_up.h_peer = &c->cn_down;
	c->cn_up.h_name = "upstream";
	clock_gettime(CLOCK_MONOTONIC, &c->cn_start);
	TAILQ_INSERT_TAIL(&cx->cx_conns, c, cn_entry);
	cx->cx_nconns++;
	STAT_ADD(cx->cx_stats.cs_opened, 1);
	return c;
}

/* --- relay ---------------------------------------------------------------- */

static void
conn_pause(struct weft_half *h)
{
	struct weft_half *p = h->h_peer;
	size_t high = h->h_conn->cn_ctx->cx_cfg.rc_buffer_high;

	h->h_paused = true;
	half_read_disable(h);
	/* p's write callback fires once its output is down to high/2. */
	bufferevent_setwatermark(p->h_bev, EV_WRITE, high / 2, 0);
	log_debug("conn %s: %s paused (%zu bytes queued)", h->h_conn->cn_id,
	    h->h_name, half_outlen(p));
}

static void
conn_resume(struct weft_half *h)
{
	struct weft_half *p = h->h_peer;

	h->h_paused = false;
	if (p->h_bev != NULL)
		bufferevent_setwatermark(p->h_bev, EV_WRITE, 0, 0);
	if (h->h_bev != NULL && !half_rd_done(h) &&
	    h->h_conn->cn_state == WEFT_CONN_RELAY)
		half_read_enable(h);
	log_debug("conn %s: %s resumed", h->h_conn->cn_id, h->h_name);
}

/* Ask the loop to close c with reason r: pumps run inside callbacks whose
 * callers still use c after they return. */
static void
conn_close_later(struct weft_conn *c, enum weft_close_reason r)
{
	if (c->cn_close_req != 0)
		return;
	c->cn_close_req = 1 + (int)r;
	half_read_disable(&c->cn_down);
	half_read_disable(&c->cn_up);
	event_active(c->cn_timer, EV_TIMEOUT, 0);
}

static void	conn_pump(struct weft_half *);

/* conn_pump through the HTTP/1.x filter: requests from the client are
 * decided one by one, the server's responses are followed so that the
 * filter's own answers go out in turn (weft/http1.h). */
static void
conn_pump_http(struct weft_half *h)
{
	struct weft_conn *c = h->h_conn;
	struct weft_half *d = &c->cn_down, *u = &c->cn_up;
	struct weft_conn_stats *st = &c->cn_ctx->cx_stats;
	size_t high = c->cn_ctx->cx_cfg.rc_buffer_high, n0, n;
	struct evbuffer *in, *dout, *uout;
	enum weft_h1_result r;

	in = bufferevent_get_input(h->h_bev);
	dout = bufferevent_get_output(d->h_bev);
	uout = bufferevent_get_output(u->h_bev);
	if ((n0 = evbuffer_get_length(in)) == 0 || c->cn_close_req != 0)
		return;
	if (h == d) {
		if (half_wr_done(u)) {
			evbuffer_drain(in, n0);
			return;
		}
		r = weft_h1_from_client(c->cn_h1, in, uout, dout);
	} else
		r = weft_h1_from_server(c->cn_h1, in, dout);
	n = n0 - evbuffer_get_length(in);
	h->h_bytes += n;
	if (h == d)
		STAT_ADD(st->cs_bytes_sent, n);
	else
		STAT_ADD(st->cs_bytes_received, n);
	switch (r) {
	case WEFT_H1_OK:
		break;
	case WEFT_H1_CLOSE:
		/* Our last answer says close: flush it, then FIN. */
		log_info("conn %s: http: closing after the answer (%s)",
		    c->cn_id, weft_h1_error(c->cn_h1));
		conn_close_later(c, WEFT_CLOSE_EOF);
		return;
	case WEFT_H1_RESET:
		log_info("conn %s: http: %s; reset", c->cn_id,
		    weft_h1_error(c->cn_h1));
		conn_close_later(c, h == d ? WEFT_CLOSE_DENIED :
		    WEFT_CLOSE_ERROR);
		return;
	}
	/* A client that sends requests but reads no answers. */
	if (evbuffer_get_length(dout) > 4 * high) {
		log_info("conn %s: http: client reads no answers; reset",
		    c->cn_id);
		conn_close_later(c, WEFT_CLOSE_RESET);
		return;
	}
	if (h == u) {
		/* Responses free room in the filter's queue: requests that
		 * waited in the client's input may go now. */
		if (evbuffer_get_length(bufferevent_get_input(d->h_bev)) > 0)
			conn_pump_http(d);
		if (d->h_paused && evbuffer_get_length(uout) <= high / 2 &&
		    evbuffer_get_length(bufferevent_get_input(d->h_bev)) <
		    high)
			conn_resume(d);
	}
	if (!h->h_paused && evbuffer_get_length(h == d ? uout : dout) >= high)
		conn_pause(h);
}

/* Move what h has read to its peer's output; pause h above the watermark.
 * Before the relay starts the bytes wait in h's input. */
static void
conn_pump(struct weft_half *h)
{
	struct weft_half *p = h->h_peer;
	struct weft_conn *c = h->h_conn;
	struct weft_conn_stats *st = &c->cn_ctx->cx_stats;
	struct evbuffer *in, *out;
	size_t n;

	if (c->cn_state != WEFT_CONN_RELAY || h->h_bev == NULL ||
	    p->h_bev == NULL || p->h_state == WEFT_HALF_FAILED)
		return;
	/* Only bytes decide: a pump with nothing read (conn_connected's,
	 * before the client's first request arrived) must not end the
	 * sniffing, or a keep-alive connection let in at L4 would not be
	 * followed and a revoked permission would reset it. */
	if (c->cn_sniff && c->cn_h1 == NULL &&
	    evbuffer_get_length(bufferevent_get_input(h->h_bev)) > 0) {
		unsigned char b0;

		/* The first bytes decide: a method starts with an upper-case
		 * letter; a server that speaks first is not HTTP. */
		c->cn_sniff = false;
		if (h == &c->cn_down && evbuffer_copyout(
		    bufferevent_get_input(h->h_bev), &b0, 1) == 1 &&
		    b0 >= 'A' && b0 <= 'Z') {
			if ((c->cn_h1 = weft_h1_new(&conn_h1_ops, c)) == NULL) {
				conn_close_later(c, WEFT_CLOSE_ERROR);
				return;
			}
			weft_h1_set_sniff(c->cn_h1, true);
		}
	}
	if (c->cn_h1 != NULL) {
		conn_pump_http(h);
		return;
	}
	in = bufferevent_get_input(h->h_bev);
	if ((n = evbuffer_get_length(in)) == 0)
		return;
	if (half_wr_done(p)) {
		/* p's write side is shut only after h's EOF: no more input
		 * can exist.  Drop it loudly rather than loop. */
		log_warnx("conn %s: %zu bytes from %s after shutdown; dropped",
		    c->cn_id, n, h->h_name);
		evbuffer_drain(in, n);
		return;
	}
	out = bufferevent_get_output(p->h_bev);
	evbuffer_add_buffer(out, in);
	h->h_bytes += n;
	if (h == &c->cn_down)
		STAT_ADD(st->cs_bytes_sent, n);
	else
		STAT_ADD(st->cs_bytes_received, n);
	if (!h->h_paused && evbuffer_get_length(out) >=
	    c->cn_ctx->cx_cfg.rc_buffer_high)
		conn_pause(h);
}

/* p has written everything it was given and its source h is at EOF:
 * pass the half-close on. */
static void
conn_shut_write(struct weft_half *p)
{
	if (shutdown(bufferevent_getfd(p->h_bev), SHUT_WR) == -1)
		log_debug("conn %s: shutdown %s: %s", p->h_conn->cn_id,
		    p->h_name, strerror(errno));
	bufferevent_disable(p->h_bev, EV_WRITE);
	half_set_state(p, p->h_state == WEFT_HALF_RD_EOF ? WEFT_HALF_DONE :
	    WEFT_HALF_WR_SHUT);
}

/* Last call of any path that may end the connection: it may free c. */
static void
conn_check_done(struct weft_conn *c)
{
	if (c->cn_state == WEFT_CONN_RELAY &&
	    c->cn_down.h_state == WEFT_HALF_DONE &&
	    c->cn_up.h_state == WEFT_HALF_DONE)
		weft_conn_close(c, WEFT_CLOSE_EOF);
}

static bool
conn_drained(const struct weft_conn *c)
{
	return half_outlen(&c->cn_down) == 0 && half_outlen(&c->cn_up) == 0;
}

/* Room for reading: up to the high watermark of what waits for the peer
 * (its output while relaying, our own input before that). */
static size_t
half_read_room(const struct weft_half *h)
{
	size_t high = h->h_conn->cn_ctx->cx_cfg.rc_buffer_high, queued;

	queued = evbuffer_get_length(bufferevent_get_input(h->h_bev)) +
	    half_outlen(h->h_peer);
	return queued >= high ? 0 : high - queued;
}

static void
half_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_half *h = arg;
	struct weft_conn *c = h->h_conn;
	struct evbuffer *in = bufferevent_get_input(h->h_bev);
	struct evbuffer_iovec iov[2];
	size_t total = 0, room, want, left;
	ssize_t r;
	int n, i, err;

	(void)what;
	while (total < HALF_READ_BUDGET) {
		if ((room = half_read_room(h)) == 0) {
			/* Before the relay starts nothing drains the input:
			 * stop until conn_connected; while relaying, pause. */
			if (c->cn_state == WEFT_CONN_RELAY && !h->h_paused)
				conn_pause(h);
			else
				half_read_disable(h);
			return;
		}
		want = room < HALF_READ_CHUNK ? room : HALF_READ_CHUNK;
		/* A socket bufferevent keeps its input's end frozen for
		 * everyone but its own reader; we are that reader now. */
		evbuffer_unfreeze(in, 0);
		if ((n = evbuffer_reserve_space(in, (ev_ssize_t)want, iov,
		    2)) <= 0) {
			evbuffer_freeze(in, 0);
			conn_half_fail(h, WEFT_CLOSE_ERROR);
			return;
		}
		/* Reserved space may exceed want; read no more than want. */
		left = want;
		for (i = 0; i < n; i++) {
			if (iov[i].iov_len > left)
				iov[i].iov_len = left;
			left -= iov[i].iov_len;
		}
		do
			r = readv(fd, (struct iovec *)iov, n);
		while (r == -1 && errno == EINTR);
		if (r <= 0) {
			err = errno;
			evbuffer_commit_space(in, iov, 0);
			evbuffer_freeze(in, 0);
			if (r == -1 && (err == EAGAIN || err == EWOULDBLOCK))
				return;
			half_read_disable(h);
			if (r == 0) {
				conn_half_eof(h);	/* may free c */
				return;
			}
			log_debug("conn %s: %s: %s", c->cn_id, h->h_name,
			    strerror(err));
			conn_half_fail(h, (err == ECONNRESET || err == EPIPE) ?
			    WEFT_CLOSE_RESET : WEFT_CLOSE_ERROR);
			return;
		}
		left = (size_t)r;
		for (i = 0; i < n; i++) {
			if (iov[i].iov_len > left)
				iov[i].iov_len = left;
			left -= iov[i].iov_len;
		}
		evbuffer_commit_space(in, iov, n);
		evbuffer_freeze(in, 0);
		total += (size_t)r;
		conn_pump(h);
		if (!h->h_reading || (size_t)r < want)
			return;		/* paused, or the socket is empty */
	}
}

/* Runs when p's output fell to its low watermark (0, or high/2 while the
 * source is paused). */
static void
conn_writecb(struct bufferevent *bev, void *arg)
{
	struct weft_half *p = arg, *h = p->h_peer;
	struct weft_conn *c = p->h_conn;
	size_t left = evbuffer_get_length(bufferevent_get_output(bev));

	if (c->cn_state == WEFT_CONN_DRAINING) {
		if (conn_drained(c))
			conn_finish(c);
		return;
	}
	if (c->cn_state != WEFT_CONN_RELAY)
		return;
	if (h->h_paused && left <= c->cn_ctx->cx_cfg.rc_buffer_high / 2)
		conn_resume(h);
	if (left == 0 && half_rd_done(h) && !half_wr_done(p)) {
		conn_shut_write(p);
		conn_check_done(c);
	}
}

static void
conn_half_eof(struct weft_half *h)
{
	struct weft_half *p = h->h_peer;
	struct weft_conn *c = h->h_conn;

	conn_pump(h);		/* whatever came before the FIN */
	if (c->cn_h1 != NULL && h == &c->cn_up && p->h_bev != NULL)
		(void)weft_h1_server_eof(c->cn_h1,
		    bufferevent_get_output(p->h_bev));
	half_rd_eof(h);
	if (c->cn_state == WEFT_CONN_RELAY && p->h_bev != NULL &&
	    !half_wr_done(p) && half_outlen(p) == 0)
		conn_shut_write(p);
	/* Otherwise p's write callback shuts it once drained, or
	 * conn_connected does once the upstream exists. */
	conn_check_done(c);
}

static void
conn_half_fail(struct weft_half *h, enum weft_close_reason r)
{
	/* What this side sent before it failed is still delivered. */
	conn_pump(h);
	half_set_state(h, WEFT_HALF_FAILED);
	weft_conn_close(h->h_conn, r);
}

static void
conn_connected(struct weft_conn *c)
{
	struct weft_half *d = &c->cn_down, *u = &c->cn_up;

	evtimer_del(c->cn_timer);
	half_set_state(u, WEFT_HALF_OPEN);
	conn_set_state(c, WEFT_CONN_RELAY);
	c->cn_relayed = true;
	conn_hook_ready(c, 0);
	bufferevent_enable(u->h_bev, EV_WRITE);
	half_read_enable(u);
	/* Bytes the client sent while we decided and connected. */
	conn_pump(d);
	if (half_rd_done(d) && half_outlen(u) == 0)
		conn_shut_write(u);
	else if (!half_rd_done(d) && !d->h_paused)
		half_read_enable(d);
}

static void
conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct weft_half *h = arg;
	struct weft_conn *c = h->h_conn;
	int err = EVUTIL_SOCKET_ERROR();
	char via[WEFT_SOCKADDR_STRLEN];

	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		conn_connected(c);
		return;
	}
	if (h->h_state == WEFT_HALF_CONNECTING) {
		/* The upstream never opened; the client gets a reset, as it
		 * would have from the destination itself. */
		log_debug("conn %s: connect to %s: %s", c->cn_id,
		    weft_sockaddr_str((struct sockaddr *)&c->cn_via, via,
		    sizeof(via)), strerror(err));
		conn_connect_failed(c, (what & BEV_EVENT_TIMEOUT) ?
		    WEFT_CLOSE_UPSTREAM_TIMEOUT : conn_connect_reason(err));
		return;
	}
	if (what & BEV_EVENT_EOF) {
		conn_half_eof(h);
		return;
	}
	log_debug("conn %s: %s: %s", c->cn_id, h->h_name,
	    (what & BEV_EVENT_TIMEOUT) ? "timeout" : strerror(err));
	conn_half_fail(h, (err == ECONNRESET || err == EPIPE) ?
	    WEFT_CLOSE_RESET : WEFT_CLOSE_ERROR);
}

/* --- decision, hold, connect ---------------------------------------------- */

/* Source transparency: the destination sees the client's address.  Needs
 * CAP_NET_ADMIN and the `socket transparent 1 -> mark` capture rule for the
 * replies (feasibility §3); on failure we connect from our own address. */
static void
conn_bind_source(struct weft_conn *c, int fd, sa_family_t family)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct sockaddr_storage ss;
	socklen_t len;
	struct weft_ip ip;
	char src[WEFT_SOCKADDR_STRLEN];
	int one = 1;

	if (weft_ip_from_sockaddr((struct sockaddr *)&c->cn_src, &ip,
	    NULL) == -1 || ip.family != family)
		return;
	weft_ip_to_sockaddr(&ip, 0, &ss, &len);
	if (family == AF_INET6) {
		if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one,
		    sizeof(one)) == -1)
			goto fail;
	} else {
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one,
		    sizeof(one)) == -1)
			goto fail;
		/* Choose the port at connect(): the 4-tuple, not the
		 * 2-tuple, must be unique. */
		(void)setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == -1)
		goto fail;
	return;
fail:
	/* Once per worker at warning level: it fails for every connection
	 * when it fails at all. */
	if (!cx->cx_warned_transparent) {
		cx->cx_warned_transparent = true;
		log_warn("conn %s: source-transparent bind to %s failed, "
		    "connecting from the node's address (further failures "
		    "at debug level)", c->cn_id, weft_ip_str(&ip, src,
		    sizeof(src)));
	} else
		log_debug("conn %s: source-transparent bind failed: %s",
		    c->cn_id, strerror(errno));
}

/* The upstream connect failed: a service endpoint chosen for this
 * connection is ejected and, since no byte went to it (the client's wait
 * in its input), another is chosen, at most CONN_LB_TRIES in all; anything
 * else closes the connection (the client sees a reset). */
static void
conn_connect_failed(struct weft_conn *c, enum weft_close_reason r)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	char via[WEFT_SOCKADDR_STRLEN];

	if (c->cn_lb_ep == NULL || c->cn_lb_tries >= CONN_LB_TRIES ||
	    !conn_reason_ejects(r) || c->cn_hook.hk_ready != NULL ||
	    c->cn_hook.hk_done != NULL) {
		weft_conn_close(c, r);
		return;
	}
	weft_lb_ep_failed(c->cn_lb_ep, weft_lb_now_ms());
	weft_lb_ep_release(c->cn_lb_ep);
	log_info("conn %s: endpoint %s failed (%s): ejected for %llds; "
	    "choosing again", c->cn_id, weft_sockaddr_str((struct sockaddr *)
	    &c->cn_via, via, sizeof(via)), weft_close_reason_name(r),
	    (long long)(weft_lb_ep_ejected_for(c->cn_lb_ep,
	    weft_lb_now_ms()) / 1000));
	c->cn_lb_ep = NULL;
	evtimer_del(c->cn_timer);
	half_free(&c->cn_up);
	half_set_state(&c->cn_up, WEFT_HALF_NONE);
	/* the failed attempt's metrics: a connection that carried nothing */
	weft_observe_conn_close(cx, c->cn_mflow, 0, 0);
	memset(&c->cn_via, 0, sizeof(c->cn_via));
	conn_set_state(c, WEFT_CONN_NEW);
	conn_decide(c);
}

static void
conn_connect(struct weft_conn *c, const struct weft_decision *d)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	uint32_t mark = cx->cx_cfg.rc_own_mark;
	int fd, err;

	evtimer_del(c->cn_timer);
	memcpy(&c->cn_via, &d->d_upstream, sizeof(c->cn_via));
	/* A router's upstream: the router records the outbound side per
	 * request; only the destination's side is observed here. */
	if (c->cn_mflow[0] == NULL && c->cn_mflow[1] == NULL)
		weft_observe_conn(cx, NULL, (c->cn_adopt & WEFT_ADOPT_UPSTREAM) ?
		    WEFT_DIR_RELAY : c->cn_dir,
		    (struct sockaddr *)&c->cn_src, (struct sockaddr *)&c->cn_dst,
		    (const struct sockaddr *)&d->d_upstream, c->cn_mflow);
	fd = socket(d->d_upstream.ss_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		log_warn("conn %s: socket", c->cn_id);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	{
		int one = 1;

		/* Small writes (an HTTP response in pieces) go at once. */
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	}
	/* Unmarked, our own connect would be captured again (loop). */
	if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark,
	    sizeof(mark)) == -1) {
		log_warn("conn %s: SO_MARK 0x%x", c->cn_id, mark);
		close(fd);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	if (d->d_transparent)
		conn_bind_source(c, fd, d->d_upstream.ss_family);
	/* connect() ourselves: an immediate failure is then ours to handle
	 * here instead of a callback re-entering from libevent. */
	if (connect(fd, (const struct sockaddr *)&d->d_upstream,
	    d->d_upstream_len) == -1 && errno != EINPROGRESS) {
		err = errno;
		log_debug("conn %s: connect: %s", c->cn_id, strerror(err));
		close(fd);
		conn_connect_failed(c, conn_connect_reason(err));
		return;
	}
	if (half_attach(&c->cn_up, fd) == -1) {
		log_warn("conn %s: upstream bufferevent", c->cn_id);
		close(fd);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	half_set_state(&c->cn_up, WEFT_HALF_CONNECTING);
	conn_set_state(c, WEFT_CONN_CONNECTING);
	conn_timer_arm(c, cx->cx_cfg.rc_connect_timeout_ms);
	/* sa == NULL: the socket is already connecting; libevent waits for
	 * writability and reads SO_ERROR.  Failures arrive (deferred) in
	 * conn_eventcb, so the return value needs no handling here. */
	(void)bufferevent_socket_connect(c->cn_up.h_bev, NULL, 0);
}

static void
conn_hold(struct weft_conn *c, const char *why)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct timespec now;
	long left;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (!c->cn_held) {
		c->cn_held = true;
		c->cn_hold_deadline = now;
		c->cn_hold_deadline.tv_sec += cx->cx_cfg.rc_hold_ms / 1000;
		c->cn_hold_deadline.tv_nsec +=
		    (long)(cx->cx_cfg.rc_hold_ms % 1000) * 1000000L;
		if (c->cn_hold_deadline.tv_nsec >= 1000000000L) {
			c->cn_hold_deadline.tv_sec++;
			c->cn_hold_deadline.tv_nsec -= 1000000000L;
		}
		STAT_ADD(cx->cx_stats.cs_held, 1);
		conn_set_state(c, WEFT_CONN_HOLD);
		log_debug("conn %s: held (%s)", c->cn_id, why);
	}
	left = (long)(c->cn_hold_deadline.tv_sec - now.tv_sec) * 1000L +
	    (c->cn_hold_deadline.tv_nsec - now.tv_nsec) / 1000000L;
	if (left <= 0) {
		if (c->cn_hold_nocert)
			STAT_ADD(cx->cx_stats.cs_tun_refused_no_cert, 1);
		weft_conn_close(c, WEFT_CLOSE_HELD_TIMEOUT);
		return;
	}
	conn_timer_arm(c, left < cx->cx_cfg.rc_hold_poll_ms ? (int)left :
	    cx->cx_cfg.rc_hold_poll_ms);
}

/* A balanced connection that goes through the tunnel: the stream takes
 * the connection's hook; this one wraps it with the endpoint's record. */
struct conn_ticket {
	struct weft_lb_ep *t_ep;		/* acquired */
	struct weft_conn_hook t_inner;
};

static void
conn_ticket_ready(void *arg, int result)
{
	struct conn_ticket *t = arg;

	if (result == 0)
		weft_lb_ep_succeeded(t->t_ep);
	else if (conn_reason_ejects(result))
		weft_lb_ep_failed(t->t_ep, weft_lb_now_ms());
	if (t->t_inner.hk_ready != NULL)
		t->t_inner.hk_ready(t->t_inner.hk_arg, result);
}

static void
conn_ticket_done(void *arg)
{
	struct conn_ticket *t = arg;

	weft_lb_ep_release(t->t_ep);
	if (t->t_inner.hk_done != NULL)
		t->t_inner.hk_done(t->t_inner.hk_arg);
	free(t);
}

/* The hand-offs (tunnel, router, denier): the accepted socket leaves c,
 * open, with its reader and bufferevent gone; returns its fd. */
static int
conn_release_down(struct weft_conn *c)
{
	struct weft_half *h = &c->cn_down;
	int fd = bufferevent_getfd(h->h_bev);

	if (h->h_rev != NULL) {
		event_free(h->h_rev);
		h->h_rev = NULL;
		h->h_reading = false;
	}
	/* Keep the fd open through the free. */
	bufferevent_setfd(h->h_bev, -1);
	bufferevent_free(h->h_bev);
	h->h_bev = NULL;
	evtimer_del(c->cn_timer);
	return fd;
}

/* Free c after a hand-off: whoever took its socket writes its line. */
static void
conn_forget(struct weft_conn *c)
{
	struct weft_conn_ctx *cx = c->cn_ctx;

	event_free(c->cn_timer);
	TAILQ_REMOVE(&cx->cx_conns, c, cn_entry);
	cx->cx_nconns--;
	free(c->cn_policy);
	free(c);
}

/* Hand the accepted socket to the tunnel (which logs and counts its close)
 * and free c without a line of its own. */
static void
conn_to_tunnel(struct weft_conn *c, const struct weft_decision *d)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct weft_half *h = &c->cn_down;
	struct weft_conn_hook hook = c->cn_hook;
	struct conn_ticket *t;
	struct evbuffer *pending;
	bool rd_eof;
	int fd;

	if ((pending = evbuffer_new()) == NULL) {
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	if (c->cn_lb_ep != NULL) {
		if ((t = calloc(1, sizeof(*t))) != NULL) {
			t->t_ep = c->cn_lb_ep;
			t->t_inner = c->cn_hook;
			hook.hk_ready = conn_ticket_ready;
			hook.hk_done = conn_ticket_done;
			hook.hk_arg = t;
		} else
			weft_lb_ep_release(c->cn_lb_ep);
		c->cn_lb_ep = NULL;
	}
	memset(&c->cn_hook, 0, sizeof(c->cn_hook));
	evbuffer_add_buffer(pending, bufferevent_get_input(h->h_bev));
	rd_eof = half_rd_done(h);
	fd = conn_release_down(c);
	weft_tunnel_outbound_hooked(cx->cx_tunnel, fd, pending, rd_eof,
	    c->cn_id, &c->cn_src, &c->cn_dst, d, &c->cn_start, &hook,
	    (c->cn_adopt & WEFT_ADOPT_UPSTREAM) != 0);
	evbuffer_free(pending);
	conn_forget(c);
}

/* HTTP (or perhaps HTTP) to a service VIP: the router decides each request
 * (proxy/router.c) and writes the connection's line; free c quietly. */
static void
conn_to_router(struct weft_conn *c, const struct weft_decision *d)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct weft_half *h = &c->cn_down;
	struct evbuffer *pending;
	int fd;

	if ((pending = evbuffer_new()) == NULL) {
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	conn_hook_done(c, 0);
	evbuffer_add_buffer(pending, bufferevent_get_input(h->h_bev));
	fd = conn_release_down(c);
	/* A FIN already read is read again by the router: EOF stays. */
	weft_router_take(cx, fd, pending, d->d_sniff, c->cn_id, &c->cn_src,
	    &c->cn_dst, c->cn_listen_port, &c->cn_start);
	evbuffer_free(pending);
	conn_forget(c);
}

/* The destination's policy refuses the connection outright: hand the
 * socket to a denier (proxy/deny.c: 403s for HTTP, else a reset) and free c
 * without a line of its own; the denier writes it. */
static void
conn_to_denier(struct weft_conn *c, const struct weft_decision *d)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct weft_half *h = &c->cn_down;
	struct evbuffer *pending;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];
	char who[300], line[800];
	bool rd_eof;
	int fd;

	if ((pending = evbuffer_new()) == NULL) {
		weft_conn_close(c, WEFT_CLOSE_DENIED);
		return;
	}
	/* Open, as far as the hook's owner is concerned: the denier answers
	 * the requests written to it (403s, A-23). */
	conn_hook_done(c, 0);
	evbuffer_add_buffer(pending, bufferevent_get_input(h->h_bev));
	rd_eof = half_rd_done(h);
	snprintf(line, sizeof(line), "%s -> %s route=\"%s\" source=%s "
	    "policy=\"%s\"", weft_sockaddr_str((struct sockaddr *)&c->cn_src,
	    src, sizeof(src)), weft_sockaddr_str((struct sockaddr *)&c->cn_dst,
	    dst, sizeof(dst)), c->cn_route, weft_flow_src(d->d_flow, who,
	    sizeof(who)), d->d_why);
	fd = conn_release_down(c);
	weft_deny_take(cx, fd, pending, rd_eof, c->cn_id, c->cn_dir, line,
	    &c->cn_start, &c->cn_src, &c->cn_dst, c->cn_listen_port,
	    d->d_token, NULL, false);
	evbuffer_free(pending);
	conn_forget(c);
}

static bool
conn_h1_decide(void *arg, const struct weft_policy_http *req, char *why,
    size_t whylen)
{
	struct weft_conn *c = arg;
	const char *token = "denied";
	char text[160];

	if (weft_flow_check_http(c->cn_flow, req, text, sizeof(text), &token))
		return true;
	log_info("conn %s: %.*s %.*s denied: %s", c->cn_id,
	    (int)req->method_len, req->method, (int)req->path_len, req->path,
	    text);
	snprintf(why, whylen, "%s", token);
	return false;
}

/* One exchange ended: metrics.  A same-node call is recorded on both
 * sides; what the proxy answered itself (403, 400) reached no pod and is
 * counted once, on the caller's side when there is one (weft/metrics.h). */
static void
conn_h1_done(void *arg, const struct weft_h1_exchange *ex)
{
	struct weft_conn *c = arg;
	struct weft_metrics_shard *sh = c->cn_ctx->cx_metrics;

	if (sh == NULL)
		return;
	if (ex->denied || ex->bad) {
		/* A router's upstream: the router relays the 403 and counts
		 * it on the caller's side (proxy/router.c). */
		if (c->cn_adopt & WEFT_ADOPT_UPSTREAM)
			return;
		weft_metrics_flow_request(sh, c->cn_mflow[0] != NULL ?
		    c->cn_mflow[0] : c->cn_mflow[1], ex->status,
		    ex->duration_s, ex->why);
		return;
	}
	weft_metrics_flow_request(sh, c->cn_mflow[0], ex->status,
	    ex->duration_s, NULL);
	weft_metrics_flow_request(sh, c->cn_mflow[1], ex->status,
	    ex->duration_s, NULL);
}

static const struct weft_h1_ops conn_h1_ops = { conn_h1_decide,
    conn_h1_done };

/* Keep what the policy said about a connection it lets in: the flow (to
 * check again when the generation changes) and, for HTTP, the filter. */
static int
conn_take_policy(struct weft_conn *c, struct weft_decision *d)
{
	/* A connection choosing again (its endpoint refused, nothing was
	 * sent) drops what the last choice kept. */
	weft_h1_free(c->cn_h1);
	c->cn_h1 = NULL;
	weft_flow_free(c->cn_flow);
	c->cn_flow = NULL;
	c->cn_sniff = false;
	if (d->d_flow == NULL)
		return 0;
	/* HTTP is followed even when the policy lets the connection in at
	 * L4: a permission withdrawn later must be a 403 on the next request,
	 * not a reset.  Bytes that are not HTTP pass as they are then
	 * (sniffing, with the filter made only when the first byte could
	 * start a request: conn_pump); under HTTP-only rules they are a reset
	 * (A-1). */
	if (d->d_policy == WEFT_POLICY_ALLOW)
		c->cn_sniff = true;
	else if ((c->cn_h1 = weft_h1_new(&conn_h1_ops, c)) == NULL)
		return -1;
	c->cn_flow = d->d_flow;
	d->d_flow = NULL;
	free(c->cn_policy);
	c->cn_policy = strdup(d->d_policy == WEFT_POLICY_HTTP ?
	    "per request" : d->d_why);
	return 0;
}

/* A service endpoint was chosen for the whole connection: count it there
 * until the connection ends. */
static void
conn_lb_take(struct weft_conn *c, const struct weft_decision *d)
{
	if (d->d_lb_ep == NULL || c->cn_lb_ep != NULL)
		return;
	weft_lb_ep_acquire(d->d_lb_ep);
	c->cn_lb_ep = d->d_lb_ep;
	c->cn_lb_tries++;
}

static void
conn_decide(struct weft_conn *c)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct weft_decision d;
	struct weft_gen *g;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];

	g = weft_gen_current();
	weft_decide_lb(g, c->cn_dir, (struct sockaddr *)&c->cn_src,
	    (struct sockaddr *)&c->cn_dst, c->cn_listen_port, &cx->cx_cfg,
	    weft_conn_ctx_lb(cx), (c->cn_adopt & WEFT_ADOPT_OPAQUE) ?
	    WEFT_DECIDE_OPAQUE : WEFT_DECIDE_ROUTE, &d);
	weft_gen_unref(g);
	snprintf(c->cn_route, sizeof(c->cn_route), "%s", d.d_route);
	if (d.d_verdict != WEFT_VERDICT_CONNECT)
		weft_decision_clear(&d);	/* only CONNECT carries a flow */

	switch (d.d_verdict) {
	case WEFT_VERDICT_REFUSE:
		if (d.d_reason == WEFT_CLOSE_SELF_CONNECT)
			log_warnx("conn %s: %s -> %s targets a weft port; "
			    "refused to avoid a loop", c->cn_id,
			    weft_sockaddr_str((struct sockaddr *)&c->cn_src,
			    src, sizeof(src)),
			    weft_sockaddr_str((struct sockaddr *)&c->cn_dst,
			    dst, sizeof(dst)));
		weft_conn_close(c, d.d_reason);
		return;
	case WEFT_VERDICT_HOLD:
		half_read_enable(&c->cn_down);
		conn_hold(c, d.d_route);
		return;
	case WEFT_VERDICT_CONNECT:
		if (d.d_flow != NULL && d.d_policy == WEFT_POLICY_DENY) {
			conn_to_denier(c, &d);
			weft_decision_clear(&d);
			return;
		}
		if (conn_take_policy(c, &d) == -1) {
			weft_decision_clear(&d);
			weft_conn_close(c, WEFT_CLOSE_ERROR);
			return;
		}
		weft_decision_clear(&d);
		conn_lb_take(c, &d);
		half_read_enable(&c->cn_down);
		conn_connect(c, &d);
		return;
	case WEFT_VERDICT_ROUTE:
		conn_to_router(c, &d);
		return;
	case WEFT_VERDICT_TUNNEL:
		if (cx->cx_tunnel == NULL) {
			weft_conn_close(c, WEFT_CLOSE_ERROR);
			return;
		}
		if (!weft_tunnel_can_dial(cx->cx_tunnel, d.d_src_id)) {
			/* Never in the clear: wait for the certificate. */
			c->cn_hold_nocert = true;
			snprintf(c->cn_route, sizeof(c->cn_route),
			    "hold: no certificate for %.120s", d.d_src_id);
			half_read_enable(&c->cn_down);
			conn_hold(c, c->cn_route);
			return;
		}
		conn_lb_take(c, &d);
		conn_to_tunnel(c, &d);
		return;
	}
}

static void
conn_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->cn_close_req != 0 && c->cn_state != WEFT_CONN_DRAINING) {
		weft_conn_close(c, (enum weft_close_reason)(c->cn_close_req -
		    1));
		return;
	}
	switch (c->cn_state) {
	case WEFT_CONN_HOLD:
		conn_decide(c);
		break;
	case WEFT_CONN_CONNECTING:
		conn_connect_failed(c, WEFT_CLOSE_UPSTREAM_TIMEOUT);
		break;
	case WEFT_CONN_DRAINING:
		c->cn_drain_expired = true;
		log_debug("conn %s: flush timed out with %zu + %zu bytes queued",
		    c->cn_id, half_outlen(&c->cn_down), half_outlen(&c->cn_up));
		conn_finish(c);
		break;
	default:
		break;
	}
}

int
weft_conn_accept(struct weft_conn_ctx *cx, int fd, enum weft_conn_dir dir,
    uint16_t listen_port)
{
	struct weft_conn *c;
	socklen_t len;

	if (dir == WEFT_DIR_TUNNEL) {
		if (cx->cx_tunnel == NULL) {
			close(fd);
			return -1;
		}
		return weft_tunnel_accept(cx->cx_tunnel, fd);
	}
	if ((c = conn_alloc(cx, dir)) == NULL) {
		log_warn("%s: connection", __func__);
		close(fd);
		return -1;
	}
	c->cn_listen_port = listen_port;
	if (half_attach(&c->cn_down, fd) == -1) {
		log_warn("conn %s: bufferevent", c->cn_id);
		close(fd);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return -1;
	}
	half_set_state(&c->cn_down, WEFT_HALF_OPEN);
	len = sizeof(c->cn_src);
	if (getpeername(fd, (struct sockaddr *)&c->cn_src, &len) == -1) {
		/* The client is already gone. */
		log_debug("conn %s: getpeername: %s", c->cn_id,
		    strerror(errno));
		weft_conn_close(c, errno == ENOTCONN ? WEFT_CLOSE_RESET :
		    WEFT_CLOSE_ERROR);
		return 0;
	}
	/* TPROXY keeps the original destination as the local address. */
	len = sizeof(c->cn_dst);
	if (cx->cx_fake_dst != NULL)
		memcpy(&c->cn_dst, cx->cx_fake_dst, sizeof(c->cn_dst));
	else if (getsockname(fd, (struct sockaddr *)&c->cn_dst, &len) == -1) {
		log_warn("conn %s: getsockname", c->cn_id);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return 0;
	}
	/* The decision is immediate: a socket handed to the tunnel, the
	 * router or a denier is never watched here (its epoll add and
	 * delete were two of a tunnelled connection's syscalls); one that
	 * stays reads (bounded by the watermark) while it waits or
	 * connects, so the client's EOF or reset is seen. */
	conn_decide(c);
	return 0;
}

void
weft_conn_adopt(struct weft_conn_ctx *cx, int fd, enum weft_conn_dir dir,
    uint16_t listen_port, const struct sockaddr_storage *src,
    const struct sockaddr_storage *dst, struct evbuffer *pending,
    const char *id, const struct timespec *start)
{
	weft_conn_adopt_hooked(cx, fd, dir, listen_port, src, dst, pending, id,
	    start, NULL, 0);
}

void
weft_conn_adopt_hooked(struct weft_conn_ctx *cx, int fd,
    enum weft_conn_dir dir, uint16_t listen_port,
    const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
    struct evbuffer *pending, const char *id, const struct timespec *start,
    const struct weft_conn_hook *hook, unsigned flags)
{
	struct weft_conn *c;
	struct evbuffer *in;

	if ((c = conn_alloc(cx, dir)) == NULL) {
		log_warn("%s: connection", __func__);
		close(fd);
		if (hook != NULL && hook->hk_ready != NULL)
			hook->hk_ready(hook->hk_arg, WEFT_CLOSE_ERROR);
		if (hook != NULL && hook->hk_done != NULL)
			hook->hk_done(hook->hk_arg);
		return;
	}
	if (hook != NULL)
		c->cn_hook = *hook;
	c->cn_adopt = flags;
	/* The router's give-back is the connection it took from us, which
	 * was counted as opened then. */
	if (flags & WEFT_ADOPT_OPAQUE)
		atomic_fetch_sub_explicit(&cx->cx_stats.cs_opened, 1,
		    memory_order_relaxed);
	snprintf(c->cn_id, sizeof(c->cn_id), "%s", id);
	c->cn_start = *start;
	c->cn_listen_port = listen_port;
	memcpy(&c->cn_src, src, sizeof(c->cn_src));
	memcpy(&c->cn_dst, dst, sizeof(c->cn_dst));
	if (half_attach(&c->cn_down, fd) == -1) {
		log_warn("conn %s: bufferevent", c->cn_id);
		close(fd);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return;
	}
	half_set_state(&c->cn_down, WEFT_HALF_OPEN);
	in = bufferevent_get_input(c->cn_down.h_bev);
	if (pending != NULL) {
		evbuffer_unfreeze(in, 0);
		evbuffer_add_buffer(in, pending);
		evbuffer_freeze(in, 0);
	}
	half_read_enable(&c->cn_down);
	conn_decide(c);
}

struct weft_conn *
weft_conn_new_relay(struct weft_conn_ctx *cx, int fd_down, int fd_up)
{
	struct weft_conn *c;
	socklen_t len;

	if ((c = conn_alloc(cx, WEFT_DIR_RELAY)) == NULL) {
		log_warn("%s: connection", __func__);
		close(fd_down);
		close(fd_up);
		return NULL;
	}
	snprintf(c->cn_route, sizeof(c->cn_route), "relay");
	len = sizeof(c->cn_src);
	(void)getpeername(fd_down, (struct sockaddr *)&c->cn_src, &len);
	len = sizeof(c->cn_dst);
	(void)getsockname(fd_down, (struct sockaddr *)&c->cn_dst, &len);
	len = sizeof(c->cn_via);
	(void)getpeername(fd_up, (struct sockaddr *)&c->cn_via, &len);
	if (evutil_make_socket_nonblocking(fd_down) == -1 ||
	    evutil_make_socket_nonblocking(fd_up) == -1 ||
	    half_attach(&c->cn_down, fd_down) == -1) {
		log_warn("conn %s: setup", c->cn_id);
		close(fd_down);
		close(fd_up);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return NULL;
	}
	if (half_attach(&c->cn_up, fd_up) == -1) {
		log_warn("conn %s: setup", c->cn_id);
		close(fd_up);
		weft_conn_close(c, WEFT_CLOSE_ERROR);
		return NULL;
	}
	half_set_state(&c->cn_down, WEFT_HALF_OPEN);
	half_set_state(&c->cn_up, WEFT_HALF_OPEN);
	conn_set_state(c, WEFT_CONN_RELAY);
	c->cn_relayed = true;
	bufferevent_enable(c->cn_down.h_bev, EV_WRITE);
	bufferevent_enable(c->cn_up.h_bev, EV_WRITE);
	half_read_enable(&c->cn_down);
	half_read_enable(&c->cn_up);
	return c;
}

/* --- the exit ------------------------------------------------------------- */

void
weft_conn_close(struct weft_conn *c, enum weft_close_reason r)
{
	struct weft_half *halves[2] = { &c->cn_down, &c->cn_up };
	size_t i;

	if (c->cn_state == WEFT_CONN_CLOSED)
		return;
	if (c->cn_state == WEFT_CONN_DRAINING) {
		/* Already on its way out with its first reason; anything
		 * more (shutdown, the other side failing) ends the flush. */
		conn_finish(c);
		return;
	}
	c->cn_reason = r;
	evtimer_del(c->cn_timer);
	if (!c->cn_relayed || conn_reason_refuses(r) ||
	    r == WEFT_CLOSE_SHUTDOWN) {
		conn_finish(c);
		return;
	}
	/* eof, reset, error: read nothing more, deliver what was read. */
	for (i = 0; i < 2; i++) {
		struct weft_half *h = halves[i];

		if (h->h_bev == NULL)
			continue;
		if (h->h_state == WEFT_HALF_FAILED) {
			half_free(h);
			continue;
		}
		half_read_disable(h);
		/* The write callback must fire when everything is out. */
		bufferevent_setwatermark(h->h_bev, EV_WRITE, 0, 0);
	}
	if (conn_drained(c)) {
		conn_finish(c);
		return;
	}
	conn_set_state(c, WEFT_CONN_DRAINING);
	conn_timer_arm(c, c->cn_ctx->cx_cfg.rc_drain_timeout_ms);
}

/* Close a socket with RST instead of FIN. */
static void
conn_linger0(struct bufferevent *bev)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int fd = bufferevent_getfd(bev);

	if (fd != -1)
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

/* Whether h's socket should end with a reset: refusals reset the client;
 * after a reset or error the survivor is reset too, but only once the kernel
 * has nothing of ours left to send (SIOCOUTQ), or if the flush gave up. */
static bool
conn_want_rst(const struct weft_conn *c, const struct weft_half *h)
{
	int fd, outq = 0;

	if (!c->cn_relayed)
		return h == &c->cn_down;
	if (conn_reason_refuses(c->cn_reason))
		return h == &c->cn_down;
	if (c->cn_reason != WEFT_CLOSE_RESET && c->cn_reason != WEFT_CLOSE_ERROR)
		return false;
	if (c->cn_drain_expired)
		return true;
	fd = bufferevent_getfd(h->h_bev);
	return fd != -1 && ioctl(fd, SIOCOUTQ, &outq) == 0 && outq == 0;
}

static void
conn_finish(struct weft_conn *c)
{
	struct weft_conn_ctx *cx = c->cn_ctx;
	struct weft_half *halves[2] = { &c->cn_down, &c->cn_up };
	struct weft_conn_summary sum;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];
	char via[WEFT_SOCKADDR_STRLEN + 8];
	size_t i;

	sum.id = c->cn_id;
	sum.dir = c->cn_dir;
	sum.reason = c->cn_reason;
	sum.sent = c->cn_down.h_bytes;
	sum.received = c->cn_up.h_bytes;
	sum.duration_ms = conn_ms_since(&c->cn_start);

	weft_sockaddr_str((struct sockaddr *)&c->cn_src, src, sizeof(src));
	weft_sockaddr_str((struct sockaddr *)&c->cn_dst, dst, sizeof(dst));
	via[0] = '\0';
	if (c->cn_via.ss_family != 0) {
		char v[WEFT_SOCKADDR_STRLEN];

		weft_sockaddr_str((struct sockaddr *)&c->cn_via, v, sizeof(v));
		if (strcmp(v, dst) != 0)
			snprintf(via, sizeof(via), " via %s", v);
	}
	if (c->cn_flow != NULL) {
		char who[300];

		log_info("conn %s %s %s -> %s%s route=\"%s\" source=%s "
		    "policy=\"%s\"%s sent=%llu received=%llu "
		    "duration=%.1fms reason=%s", c->cn_id,
		    weft_conn_dir_name(c->cn_dir), src, dst, via, c->cn_route,
		    weft_flow_src(c->cn_flow, who, sizeof(who)),
		    c->cn_policy != NULL ? c->cn_policy : "",
		    c->cn_h1 != NULL && weft_h1_requests(c->cn_h1) > 0 ?
		    " http" : "",
		    (unsigned long long)sum.sent,
		    (unsigned long long)sum.received, sum.duration_ms,
		    weft_close_reason_name(c->cn_reason));
	} else
		log_info("conn %s %s %s -> %s%s route=\"%s\" sent=%llu "
		    "received=%llu duration=%.1fms reason=%s", c->cn_id,
		    weft_conn_dir_name(c->cn_dir), src, dst, via, c->cn_route,
		    (unsigned long long)sum.sent,
		    (unsigned long long)sum.received, sum.duration_ms,
		    weft_close_reason_name(c->cn_reason));

	STAT_ADD(cx->cx_stats.cs_closed[(unsigned)c->cn_reason <
	    WEFT_CLOSE_NREASONS ? c->cn_reason : WEFT_CLOSE_ERROR], 1);
	/* Never opened: the reason is the upstream's outcome. */
	conn_hook_done(c, c->cn_relayed ? 0 : (int)c->cn_reason);
	if (cx->cx_on_close != NULL)
		cx->cx_on_close(&sum, cx->cx_on_close_arg);
	weft_observe_conn_close(cx, c->cn_mflow, sum.sent, sum.received);

	conn_set_state(c, WEFT_CONN_CLOSED);
	for (i = 0; i < 2; i++) {
		struct weft_half *h = halves[i];

		if (h->h_bev == NULL)
			continue;
		if (conn_want_rst(c, h))
			conn_linger0(h->h_bev);
		half_free(h);
	}
	event_free(c->cn_timer);
	c->cn_timer = NULL;
	TAILQ_REMOVE(&cx->cx_conns, c, cn_entry);
	cx->cx_nconns--;
	weft_h1_free(c->cn_h1);
	weft_flow_free(c->cn_flow);
	free(c->cn_policy);
	free(c);
}

/* The generation changed: a connection let in at L4 that the policy no
 * longer lets in is closed; one decided per request needs nothing,
 * its next request is decided on the new generation. */
void
weft_conn_recheck(struct weft_conn_ctx *cx, const struct weft_gen *g)
{
	struct weft_conn *c, *next;
	struct weft_policy_why why;

	for (c = TAILQ_FIRST(&cx->cx_conns); c != NULL; c = next) {
		next = TAILQ_NEXT(c, cn_entry);
		/* HTTP that is followed is decided per request. */
		if (c->cn_flow == NULL || (c->cn_h1 != NULL &&
		    !weft_h1_is_opaque(c->cn_h1)) ||
		    c->cn_close_req != 0 || (c->cn_state != WEFT_CONN_RELAY &&
		    c->cn_state != WEFT_CONN_CONNECTING))
			continue;
		if (weft_flow_check(c->cn_flow, g, &why) == WEFT_POLICY_ALLOW)
			continue;
		log_info("conn %s: no longer allowed (%s); closing", c->cn_id,
		    why.reason);
		free(c->cn_policy);
		c->cn_policy = strdup(why.reason);
		weft_conn_close(c, WEFT_CLOSE_DENIED);
	}
}
