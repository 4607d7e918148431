/* A connection the destination's policy refuses outright.  Clients - and
 * the SMI conformance suite - count HTTP statuses, not resets, so a client
 * that speaks HTTP gets a 403 for each request it sends (the connection
 * stays usable, as after a per-request denial); anything else gets a reset
 * (SPEC §3.2.10, A-5).  Nothing of it ever reaches a pod.
 *
 * The bytes are parsed by the HTTP/1.x filter with every request denied;
 * the first bytes decide: a method, or a reset.  A client that sends
 * nothing within DENY_SNIFF_MS (a server-first protocol) is reset too.
 * The connection ends after DENY_IDLE_MS without a request, after
 * DENY_MAX_REQUESTS answers, or when the client closes.
 *
 * Decisions change only with generations: a request that comes once a new
 * generation is in place is not answered here.  The connection goes back
 * to the relay (weft_conn_adopt) with that request's bytes, is decided
 * again from scratch and, if now allowed, reaches the pod on the same
 * client connection; a keep-alive client sees no stale 403. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/http1.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "proxy/proxy-int.h"

#define DENY_SNIFF_MS		1000
#define DENY_IDLE_MS		10000
#define DENY_MAX_REQUESTS	1000
#define DENY_IN_MAX		(64 * 1024)

#define STAT_ADD(field, n)						\
	atomic_store_explicit(&(field), atomic_load_explicit(&(field),	\
	    memory_order_relaxed) + (n), memory_order_relaxed)

struct weft_denier {
	TAILQ_ENTRY(weft_denier) dn_entry;	/* in dn_cx->cx_deniers */
	struct weft_conn_ctx *dn_cx;
	int		 dn_fd;
	struct event	*dn_rev;
	struct event	*dn_wev;
	struct event	*dn_timer;
	struct evbuffer	*dn_in;
	struct evbuffer	*dn_out;
	struct evbuffer	*dn_null;		/* to_server: stays empty */
	struct weft_h1	*dn_h1;
	char		 dn_id[32];
	enum weft_conn_dir dn_dir;
	char		*dn_line;		/* "SRC -> DST route=..." */
	struct timespec	 dn_start;
	uint64_t	 dn_received;		/* from the client */
	uint64_t	 dn_sent;		/* to the client */
	bool		 dn_rd_eof;
	bool		 dn_closing;		/* flush, then FIN */
	bool		 dn_any;		/* a byte came */
	bool		 dn_adopt;		/* decide again: back to conn.c */
	uint64_t	 dn_gen;		/* generation of the denial */
	bool		 dn_remote;		/* another node decided: ask it
						 * again for each later request */
	struct sockaddr_storage dn_src;
	struct sockaddr_storage dn_dst;
	uint16_t	 dn_listen_port;
	const char	*dn_token;		/* static: why, for metrics */
	struct weft_metrics_flow *dn_mflow;	/* owned; NULL: not recorded */
};

static uint64_t
deny_generation(void)
{
	struct weft_gen *g = weft_gen_current();
	uint64_t gen = g != NULL ? weft_gen_generation(g) : 0;

	weft_gen_unref(g);
	return gen;
}

static void	deny_finish(struct weft_denier *, bool rst);
static void	deny_adopt(struct weft_denier *);
static void	deny_free(struct weft_denier *);

static bool
deny_decide(void *arg, const struct weft_policy_http *req, char *why,
    size_t whylen)
{
	struct weft_denier *dn = arg;

	/* A new generation: this request and what follows go back to be
	 * decided again (their bytes land in dn_null). */
	if (dn->dn_adopt || deny_generation() != dn->dn_gen ||
	    (dn->dn_remote && weft_h1_requests(dn->dn_h1) > 1)) {
		dn->dn_adopt = true;
		return true;
	}
	log_debug("conn %s: %.*s %.*s: denied", dn->dn_id,
	    (int)req->method_len, req->method, (int)req->path_len, req->path);
	snprintf(why, whylen, "%s", dn->dn_token);
	return false;
}

/* Each 403 is a request the mesh denied, counted where it was answered
 * (weft/metrics.h). */
static void
deny_done(void *arg, const struct weft_h1_exchange *ex)
{
	struct weft_denier *dn = arg;

	if (!ex->denied)
		return;		/* adopted: the relay records it */
	weft_metrics_flow_request(dn->dn_cx->cx_metrics, dn->dn_mflow,
	    ex->status, ex->duration_s, dn->dn_token);
}

static const struct weft_h1_ops deny_ops = { deny_decide, deny_done };

static void
deny_timer(struct weft_denier *dn, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(dn->dn_timer, &tv);
}

/* Write what is queued; then end the connection if it is time. */
static void
deny_flush(struct weft_denier *dn)
{
	int n;

	while (evbuffer_get_length(dn->dn_out) > 0) {
		n = evbuffer_write(dn->dn_out, dn->dn_fd);
		if (n == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(dn->dn_wev, NULL);
				return;
			}
			if (errno == EINTR)
				continue;
			deny_finish(dn, true);
			return;
		}
		dn->dn_sent += (uint64_t)n;
	}
	event_del(dn->dn_wev);
	if (dn->dn_adopt) {
		deny_adopt(dn);
		return;
	}
	if (dn->dn_closing || dn->dn_rd_eof ||
	    weft_h1_requests(dn->dn_h1) >= DENY_MAX_REQUESTS)
		deny_finish(dn, false);
}

/* Parse what came; answer. */
static void
deny_process(struct weft_denier *dn)
{
	enum weft_h1_result r;

	if (evbuffer_get_length(dn->dn_in) == 0)
		return;
	r = weft_h1_from_client(dn->dn_h1, dn->dn_in, dn->dn_null,
	    dn->dn_out);
	if (dn->dn_adopt) {
		/* Our answers so far go out first; then the relay takes
		 * the rest (deny_flush -> deny_adopt). */
		event_del(dn->dn_rev);
		evtimer_del(dn->dn_timer);
		deny_flush(dn);
		return;
	}
	evbuffer_drain(dn->dn_null, evbuffer_get_length(dn->dn_null));
	if (r == WEFT_H1_RESET) {
		deny_finish(dn, true);
		return;
	}
	if (r == WEFT_H1_CLOSE)
		dn->dn_closing = true;
	deny_timer(dn, DENY_IDLE_MS);
	deny_flush(dn);
}

static void
deny_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_denier *dn = arg;
	int n;

	(void)what;
	n = evbuffer_read(dn->dn_in, fd, DENY_IN_MAX);
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		deny_finish(dn, true);
		return;
	}
	if (n == 0) {
		dn->dn_rd_eof = true;
		event_del(dn->dn_rev);
		if (!dn->dn_any) {
			/* Nothing was ever sent: nothing to answer. */
			deny_finish(dn, false);
			return;
		}
		deny_flush(dn);
		return;
	}
	dn->dn_any = true;
	dn->dn_received += (uint64_t)n;
	deny_process(dn);
}

static void
deny_writecb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	deny_flush(arg);
}

static void
deny_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_denier *dn = arg;

	(void)fd;
	(void)what;
	/* Silent from the start: not an HTTP client (reset); idle after
	 * answers: a clean end. */
	deny_finish(dn, !dn->dn_any);
}

static double
deny_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
deny_finish(struct weft_denier *dn, bool rst)
{
	struct weft_conn_ctx *cx = dn->dn_cx;
	struct weft_conn_summary sum;
	uint64_t nreq = weft_h1_requests(dn->dn_h1);

	log_info("conn %s %s %s sent=%llu received=%llu duration=%.1fms "
	    "reason=denied answered=%s", dn->dn_id,
	    weft_conn_dir_name(dn->dn_dir), dn->dn_line != NULL ?
	    dn->dn_line : "", (unsigned long long)dn->dn_received,
	    (unsigned long long)dn->dn_sent, deny_ms_since(&dn->dn_start),
	    rst ? "reset" : nreq == 1 ? "http-403" : "http-403s");
	STAT_ADD(cx->cx_stats.cs_closed[WEFT_CLOSE_DENIED], 1);
	if (cx->cx_on_close != NULL) {
		memset(&sum, 0, sizeof(sum));
		sum.id = dn->dn_id;
		sum.dir = dn->dn_dir;
		sum.reason = WEFT_CLOSE_DENIED;
		sum.sent = dn->dn_received;
		sum.received = dn->dn_sent;
		sum.duration_ms = deny_ms_since(&dn->dn_start);
		cx->cx_on_close(&sum, cx->cx_on_close_arg);
	}
	if (rst) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		(void)setsockopt(dn->dn_fd, SOL_SOCKET, SO_LINGER, &lg,
		    sizeof(lg));
	}
	close(dn->dn_fd);
	deny_free(dn);
}

/* Free everything but the socket. */
static void
deny_free(struct weft_denier *dn)
{
	weft_metrics_flow_close(dn->dn_cx->cx_metrics, dn->dn_mflow,
	    dn->dn_received, dn->dn_sent);
	dn->dn_mflow = NULL;
	TAILQ_REMOVE(&dn->dn_cx->cx_deniers, dn, dn_entry);
	event_free(dn->dn_rev);
	event_free(dn->dn_wev);
	event_free(dn->dn_timer);
	evbuffer_free(dn->dn_in);
	evbuffer_free(dn->dn_out);
	evbuffer_free(dn->dn_null);
	weft_h1_free(dn->dn_h1);
	free(dn->dn_line);
	free(dn);
}

/* A new generation: give the connection back to the relay with the bytes
 * of the request that found it, and everything after them. */
static void
deny_adopt(struct weft_denier *dn)
{
	struct weft_conn_ctx *cx = dn->dn_cx;
	struct sockaddr_storage src = dn->dn_src, dst = dn->dn_dst;
	struct timespec start = dn->dn_start;
	struct evbuffer *pending = dn->dn_null;
	enum weft_conn_dir dir = dn->dn_dir;
	uint16_t lport = dn->dn_listen_port;
	char id[32];
	int fd = dn->dn_fd;

	snprintf(id, sizeof(id), "%s", dn->dn_id);
	log_info("conn %s: the policy changed (generation %llu -> %llu); "
	    "deciding again", id, (unsigned long long)dn->dn_gen,
	    (unsigned long long)deny_generation());
	evbuffer_add_buffer(pending, dn->dn_in);
	dn->dn_null = NULL;
	if ((dn->dn_null = evbuffer_new()) == NULL) {
		/* deny_free needs something to free */
		dn->dn_null = pending;
		deny_finish(dn, true);
		return;
	}
	deny_free(dn);
	weft_conn_adopt(cx, fd, dir, lport, &src, &dst, pending, id, &start);
	evbuffer_free(pending);
}

void
weft_deny_take(struct weft_conn_ctx *cx, int fd, struct evbuffer *pending,
    bool rd_eof, const char *id, enum weft_conn_dir dir, const char *line,
    const struct timespec *start, const struct sockaddr_storage *src,
    const struct sockaddr_storage *dst, uint16_t listen_port,
    const char *token, struct weft_metrics_flow *mflow, bool remote)
{
	struct weft_denier *dn;
	struct sockaddr_storage self;
	socklen_t len = sizeof(self);

	if ((dn = calloc(1, sizeof(*dn))) == NULL) {
		weft_metrics_flow_close(cx->cx_metrics, mflow, 0, 0);
		goto fail;
	}
	dn->dn_token = token != NULL ? token : "denied";
	dn->dn_remote = remote;
	/* A router's upstream (one end of a socketpair) relays our 403s and
	 * records them itself. */
	if (mflow != NULL)
		dn->dn_mflow = mflow;
	else if (getsockname(fd, (struct sockaddr *)&self, &len) == 0 &&
	    self.ss_family != AF_UNIX)
		dn->dn_mflow = weft_observe_flow(cx, NULL,
		    dir == WEFT_DIR_INBOUND ? WEFT_METRICS_INBOUND :
		    WEFT_METRICS_OUTBOUND, (const struct sockaddr *)src, NULL,
		    NULL, (const struct sockaddr *)dst,
		    (const struct sockaddr *)dst);
	dn->dn_cx = cx;
	dn->dn_fd = fd;
	dn->dn_dir = dir;
	dn->dn_src = *src;
	dn->dn_dst = *dst;
	dn->dn_listen_port = listen_port;
	dn->dn_gen = deny_generation();
	snprintf(dn->dn_id, sizeof(dn->dn_id), "%s", id);
	dn->dn_line = line != NULL ? strdup(line) : NULL;
	dn->dn_start = *start;
	dn->dn_rd_eof = rd_eof;
	if ((dn->dn_in = evbuffer_new()) == NULL ||
	    (dn->dn_out = evbuffer_new()) == NULL ||
	    (dn->dn_null = evbuffer_new()) == NULL ||
	    (dn->dn_h1 = weft_h1_new(&deny_ops, dn)) == NULL ||
	    (dn->dn_rev = event_new(cx->cx_base, fd, EV_READ | EV_PERSIST,
	    deny_readcb, dn)) == NULL ||
	    (dn->dn_wev = event_new(cx->cx_base, fd, EV_WRITE | EV_PERSIST,
	    deny_writecb, dn)) == NULL ||
	    (dn->dn_timer = evtimer_new(cx->cx_base, deny_timercb,
	    dn)) == NULL) {
		if (dn->dn_rev != NULL)
			event_free(dn->dn_rev);
		if (dn->dn_wev != NULL)
			event_free(dn->dn_wev);
		if (dn->dn_in != NULL)
			evbuffer_free(dn->dn_in);
		if (dn->dn_out != NULL)
			evbuffer_free(dn->dn_out);
		if (dn->dn_null != NULL)
			evbuffer_free(dn->dn_null);
		weft_h1_free(dn->dn_h1);
		weft_metrics_flow_close(cx->cx_metrics, dn->dn_mflow, 0, 0);
		free(dn->dn_line);
		free(dn);
		goto fail;
	}
	TAILQ_INSERT_TAIL(&cx->cx_deniers, dn, dn_entry);
	if (pending != NULL && evbuffer_get_length(pending) > 0) {
		dn->dn_any = true;
		dn->dn_received = evbuffer_get_length(pending);
		evbuffer_add_buffer(dn->dn_in, pending);
	}
	if (!rd_eof)
		event_add(dn->dn_rev, NULL);
	deny_timer(dn, dn->dn_any ? DENY_IDLE_MS : DENY_SNIFF_MS);
	if (dn->dn_any)
		deny_process(dn);	/* may free dn */
	else if (rd_eof)
		deny_finish(dn, false);
	return;
fail:
	{
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		log_warn("conn %s: denied; reset (out of memory)", id);
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(fd);
		STAT_ADD(cx->cx_stats.cs_closed[WEFT_CLOSE_DENIED], 1);
	}
}

void
weft_deny_shutdown(struct weft_conn_ctx *cx)
{
	struct weft_denier *dn;

	while ((dn = TAILQ_FIRST(&cx->cx_deniers)) != NULL)
		deny_finish(dn, true);
}

size_t
weft_deny_count(const struct weft_conn_ctx *cx)
{
	const struct weft_denier *dn;
	size_t n = 0;

	TAILQ_FOREACH(dn, &cx->cx_deniers, dn_entry)
		n++;
	return n;
}
