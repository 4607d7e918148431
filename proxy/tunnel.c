/* The tunnel between nodes: HTTP/2 CONNECT streams over pooled mTLS 1.3.
 *
 * A tun_conn is one TLS connection (a socket, an SSL with our BIO, two
 * events) with its nghttp2 session; a tun_stream is one relayed
 * application connection: a plain socket (the app on the client side, the
 * pod on the server side) on one end, an h2 stream on the other.  Rules from shared/notes/h2-tunnel.md
 * (the prototype), by pitfall number:
 *
 * - nghttp2_session_send is never called from inside an nghttp2 callback:
 *   only after mem_recv and from the connection's deferred send event (4).
 * - Manual flow control: NO_AUTO_WINDOW_UPDATE, a stream's DATA is consumed
 *   when the plain socket took it (an evbuffer callback on its output), and
 *   also for DATA nobody will read (6).  256 KiB stream window, 16 MiB
 *   connection window.
 * - The data provider defers when it has nothing (3); the client's defers
 *   until the 200 (12), so a refused stream can be retried elsewhere.
 * - The plain side is read with our own readv (libevent 2.1 reads 4 KiB at
 *   a time, 14), into an evbuffer bounded at 64 KiB, and written from one
 *   with evbuffer_write_atmost: two events, no bufferevent, and the
 *   buffers exist only while they hold data, so an idle stream is small.
 * - The TLS side is not a bufferevent_openssl either (14-16): one read()
 *   of up to 64 KiB feeds several records to the SSL through our BIO, and
 *   frames are coalesced into full records, written with one writev per
 *   turn (see "TLS I/O").  No OpenSSL read-ahead needed.
 * - Error answers go without a body; the RST that follows is submitted once
 *   the HEADERS went out (7).  REFUSED_STREAM (GOAWAY, peer limit) is
 *   retried on another connection (8, 9).  Spent stream ids retire the
 *   connection (10).  nghttp2_session_del calls no on_stream_close: each
 *   connection keeps its stream list and resets them (11).
 * - Resets reach the app as resets (SO_LINGER 0), never as a clean end (20).
 *
 * Everything runs on the worker's thread; nothing is locked. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/queue.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/util.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "weft/certstore.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/http1.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/policy.h"
#include "weft/spiffe.h"
#include "weft/tls.h"
#include "weft/tunnel.h"
#include "proxy/proxy-int.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT	24
#endif

#define TUN_STREAM_WINDOW	(256 * 1024)
#define TUN_CONN_WINDOW		(16 * 1024 * 1024)
#define TUN_TLS_OUT_HIGH	(256 * 1024)	/* send_cb: WOULDBLOCK above */
#define TUN_TLS_OUT_LOW		(64 * 1024)	/* write cb: send again */
#define TUN_PLAIN_IN_HIGH	(64 * 1024)	/* plain input, per stream */
#define TUN_READ_CHUNK		(64 * 1024)	/* plain side, per read: at most */
#define TUN_READ_MIN		(4 * 1024)	/* and at first; it doubles
						 * while reads fill it */
#define TUN_WRITE_MAX		(512 * 1024)	/* plain side, per write */
#define TUN_TLS_READ		(64 * 1024)	/* TLS side, per read() */
#define TUN_TLS_READS		4		/* read()s per connection
						 * and turn */
#define TUN_TLS_PLAIN		(16 * 1024)	/* a record's plaintext */
#define TUN_TLS_WBUF		(64 * 1024)	/* frames coalesced per
						 * SSL_write: 4 full records */
#define TUN_SERVER_STREAMS	1000
#define TUN_RETRIES		3
#define TUN_GOAWAY_DELAY_MS	100	/* notice -> final GOAWAY: ~1 RTT
					 * and then some (pitfall 9) */

#define STAT_ADD(field, n)						\
	atomic_store_explicit(&(field), atomic_load_explicit(&(field),	\
	    memory_order_relaxed) + (n), memory_order_relaxed)

struct tun_conn;

/* An IPv4 or IPv6 socket address: 28 bytes where a sockaddr_storage is 128
 * (a stream keeps four). */
union tun_sa {
	struct sockaddr		sa;
	struct sockaddr_in	sin;
	struct sockaddr_in6	sin6;
};

struct tun_stream {
	TAILQ_ENTRY(tun_stream) ts_entry;	/* in ts_conn->tc_streams */
	TAILQ_ENTRY(tun_stream) ts_all;		/* in tn_streams */
	struct weft_tunnel *ts_tun;
	struct tun_conn	*ts_conn;		/* NULL once the h2 stream is
						 * closed (or before submit) */
	bool		 ts_server;
	int32_t		 ts_id;			/* h2 stream id; 0 = none */
	char		 ts_name[32];		/* "w1-42" */
	/* Plain side. */
	int		 ts_fd;			/* -1 before / after */
	struct event	*ts_rev;		/* our reader */
	struct event	*ts_wev;		/* writes ts_out; the server's
						 * connect.  Only while one of
						 * them waits (ts_wev_make):
						 * an idle stream has one event.
						 * With ts_rev: owns ts_fd */
	struct evbuffer	*ts_in;			/* read, not yet framed; NULL
						 * when empty */
	struct evbuffer	*ts_out;		/* DATA not yet written; NULL
						 * when empty */
	bool		 ts_reading;
	bool		 ts_connected;		/* plain socket is usable */
	bool		 ts_rd_eof;		/* plain FIN seen */
	bool		 ts_wr_shut;		/* we shut its write side */
	bool		 ts_plain_failed;
	size_t		 ts_unconsumed;		/* DATA not yet written out */
	uint32_t	 ts_rdsize;		/* next read: TUN_READ_MIN ..
						 * TUN_READ_CHUNK */
	/* h2 side. */
	bool		 ts_deferred;		/* provider returned DEFERRED */
	bool		 ts_item;		/* a DATA item is submitted: an
						 * item ends (EOF, maybe without
						 * END_STREAM) once ts_in is
						 * drained, so an idle stream
						 * holds none in nghttp2 */
	bool		 ts_item_wait;		/* the ended item's last frame
						 * is still queued: submit again
						 * after the next send */
	bool		 ts_eof_sent;		/* END_STREAM given to nghttp2 */
	bool		 ts_resp_ok;		/* 200 received / sent */
	bool		 ts_h2_rd_eof;		/* END_STREAM received */
	bool		 ts_rst_after_send;	/* server error answer */
	bool		 ts_retry;		/* REFUSED: queued for retry */
	int		 ts_retries;
	int		 ts_status;		/* client: :status */
	uint64_t	 ts_up;			/* plain -> h2 */
	uint64_t	 ts_down;		/* h2 -> plain */
	enum weft_close_reason ts_reason;
	bool		 ts_reason_set;
	/* For the log line and retries. */
	union tun_sa	 ts_src, ts_dst, ts_dial;
	union tun_sa	 ts_target;		/* client: the CONNECT target,
						 * the chosen endpoint (ts_dst
						 * may be a service VIP);
						 * server: the caller's
						 * x-weft-original-source, or
						 * AF_UNSPEC */
	socklen_t	 ts_dial_len;
	/* Interned strings (tun_atom_get), never NULL once set up
	 * (ts_set_strings): not WEFT_SPIFFE_MAX arrays nor copies, because
	 * an idle stream's whole cost is this struct plus its buffers, and
	 * thousands of streams share a few identities, nodes and routes. */
	char		*ts_src_id;
	char		*ts_dst_id;
	char		*ts_node;		/* client */
	char		*ts_route;		/* client */
	struct timespec	 ts_start;
	/* Server, when the destination's policy decides per request: the
	 * flow, the filter, and its two raw buffers (DATA not yet filtered,
	 * the pod's bytes not yet followed).  All NULL otherwise. */
	struct weft_flow *ts_flow;
	struct weft_h1	*ts_h1;
	struct evbuffer	*ts_rawin;
	struct evbuffer	*ts_rresp;
	bool		 ts_sniff;		/* server, allowed at L4: follow
						 * HTTP if the caller's first
						 * byte could start a request */
	bool		 ts_handed_off;		/* client: the app's socket went
						 * to a denier (403 answered as
						 * HTTP); no line of our own */
	struct weft_metrics_flow *ts_mflow;	/* owned; metrics, or NULL */
	/* Client: the connection's hook (weft/conn.h), taken over from
	 * conn.c: ready on the CONNECT's answer, done in ts_finish. */
	struct weft_conn_hook ts_hook;
	bool		 ts_hook_ready;
};

TAILQ_HEAD(tun_stream_list, tun_stream);

struct tun_conn {
	TAILQ_ENTRY(tun_conn) tc_entry;		/* in tn_conns */
	struct weft_tunnel *tc_tun;
	bool		 tc_server;
	char		 tc_name[32];		/* "t1-7" */
	/* TLS, driven by hand (no bufferevent_openssl): the SSL reads and
	 * writes through tun_bio, which reads the socket 64 KiB at a time
	 * into the worker's scratch buffer (several records per read()) and
	 * appends records to tc_out, written with one writev per turn. */
	int		 tc_fd;			/* owned; -1 before */
	SSL		*tc_ssl;		/* owned, with its BIO */
	struct event	*tc_rev;		/* persistent */
	struct event	*tc_wev;		/* added while tc_out holds
						 * bytes the socket refused */
	struct evbuffer	*tc_out;		/* ciphertext not yet written;
						 * no chains while empty */
	uint8_t		*tc_rleft;		/* read, not yet taken by the
						 * SSL (rare; see tun_bio_read) */
	size_t		 tc_rleftlen;
	int		 tc_rbudget;		/* read()s left this turn */
	int		 tc_errno;		/* of the last failed read or
						 * write */
	bool		 tc_rd_eof;		/* read() returned 0 */
	bool		 tc_hs_done;		/* SSL handshake finished */
	nghttp2_session	*tc_h2;
	struct event	*tc_send_ev;		/* deferred session_send */
	struct event	*tc_timer;		/* handshake, then idle */
	struct tun_stream_list tc_streams;
	size_t		 tc_nstreams;
	struct weft_tls_peer_check tc_check;
	char		 tc_local_id[WEFT_SPIFFE_MAX];	/* presented */
	char		 tc_peer_id[WEFT_SPIFFE_MAX];	/* verified */
	char		 tc_want[WEFT_SPIFFE_MAX];	/* client: server ID;
							 * server: trust domain */
	char		 tc_node[256];		/* client pool key part */
	struct sockaddr_storage tc_peer;
	bool		 tc_connected;		/* handshake done, h2 up */
	bool		 tc_got_settings;
	bool		 tc_goaway;		/* no new streams */
	bool		 tc_closing;		/* free once output drained */
	bool		 tc_dead;		/* free at the next safe point */
	bool		 tc_in_recv;		/* inside mem_recv */
	bool		 tc_item_wait;		/* a stream has ts_item_wait */
	/* Server: the request headers of the stream being received (a
	 * header block is never interleaved with another stream's), read
	 * in tun_server_request; streams keep only what they parse out. */
	char		 tc_h_method[16];
	char		 tc_h_authority[64];
	char		 tc_h_orig[64];
};

/* A refcounted string shared by the streams of one worker. */
struct tun_atom {
	struct tun_atom	*a_next;		/* hash chain */
	uint32_t	 a_hash;
	uint32_t	 a_refs;
	char		 a_s[];
};

#define TUN_ATOM_BUCKETS	64

struct tun_sess {
	TAILQ_ENTRY(tun_sess) se_entry;
	char		*se_key;		/* "src|dst|node" */
	SSL_SESSION	*se_sess;		/* owned (a copy) */
	uint64_t	 se_version;		/* certstore version then */
};

struct weft_tunnel {
	struct weft_conn_ctx *tn_cx;
	struct weft_tunnel_config tn_cfg;
	struct weft_tls_cache *tn_tls;
	TAILQ_HEAD(, tun_conn) tn_conns;
	size_t		 tn_nconns;
	struct tun_stream_list tn_streams;
	size_t		 tn_nstreams;
	struct tun_stream_list tn_retry;	/* REFUSED, to resubmit */
	struct event	*tn_retry_ev;
	TAILQ_HEAD(, tun_sess) tn_sessions;
	struct tun_atom	*tn_atoms[TUN_ATOM_BUCKETS];	/* count: tt_natoms */
	uint64_t	 tn_next_conn;
	nghttp2_session_callbacks *tn_cbs;
	nghttp2_option	*tn_opt;
	/* Graceful stop (weft_tunnel_drain). */
	bool		 tn_draining;
	bool		 tn_goaway_sent;	/* the final GOAWAYs */
	struct event	*tn_drain_ev;		/* timer */
	struct timespec	 tn_drain_start;
	void		(*tn_drain_done)(void *);
	void		*tn_drain_arg;
	struct weft_tunnel_test tn_test;
	/* The worker's TLS scratch buffers (one thread, one connection at a
	 * time), allocated with the tunnel: ciphertext read from a socket
	 * and not yet taken by its SSL (tn_rowner's), the plaintext of one
	 * record, and frames coalesced into full records during one
	 * nghttp2_session_send. */
	uint8_t		*tn_rbuf;
	size_t		 tn_rpos, tn_rlen;
	struct tun_conn	*tn_rowner;
	uint8_t		*tn_pbuf;
	uint8_t		*tn_wbuf;
	size_t		 tn_wlen;
};

static void	tc_schedule_send(struct tun_conn *);
static void	tc_fail(struct tun_conn *, const char *);
static void	tc_free(struct tun_conn *, enum weft_close_reason);
static void	tc_check_close(struct tun_conn *);
static void	tc_idle_check(struct tun_conn *);
static void	tc_goaway(struct tun_conn *, bool);
static int	tc_tls_put(struct tun_conn *);
static int	tc_write_out(struct tun_conn *);
static void	tun_draincb(evutil_socket_t, short, void *);
static void	ts_finish(struct tun_stream *);
static void	ts_plain_readcb(evutil_socket_t, short, void *);
static void	ts_resume(struct tun_stream *);
static void	ts_filter_in(struct tun_stream *);
static int	ts_submit(struct tun_stream *);
static void	ts_reset_plain(struct tun_stream *, enum weft_close_reason);
static ssize_t	tun_read_cb(nghttp2_session *, int32_t, uint8_t *, size_t,
		    uint32_t *, nghttp2_data_source *, void *);

/* --- small helpers -------------------------------------------------------- */

void
weft_tunnel_config_defaults(struct weft_tunnel_config *tc)
{
	memset(tc, 0, sizeof(*tc));
	tc->tu_port = 15008;
	tc->tu_max_streams = 100;
	tc->tu_idle_ms = 60000;
	tc->tu_handshake_ms = 10000;
	tc->tu_drain_ms = 2000;
	tc->tu_pool = true;
}

static double
tun_ms_since(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) * 1e3 +
	    (double)(now.tv_nsec - t0->tv_nsec) / 1e6;
}

static void
tun_timer_arm(struct event *ev, int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(ev, &tv);
}

static struct weft_gen *
tun_gen(struct weft_tunnel *tn)
{
	if (tn->tn_test.tt_gen != NULL)
		return weft_gen_ref(tn->tn_test.tt_gen);
	return weft_gen_current();
}

static void
ts_set_reason(struct tun_stream *st, enum weft_close_reason r)
{
	if (!st->ts_reason_set) {
		st->ts_reason = r;
		st->ts_reason_set = true;
	}
}

/* The hook's owner learns how the stream's upstream fared: once. */
static void
ts_hook_ready(struct tun_stream *st, int result)
{
	if (st->ts_hook_ready)
		return;
	st->ts_hook_ready = true;
	if (st->ts_hook.hk_ready != NULL)
		st->ts_hook.hk_ready(st->ts_hook.hk_arg, result);
}

static void
tun_linger0(int fd)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	if (fd != -1)
		(void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
}

static void
tun_sa_set(union tun_sa *d, const struct sockaddr_storage *s)
{
	memset(d, 0, sizeof(*d));
	if (s->ss_family == AF_INET6)
		memcpy(&d->sin6, s, sizeof(d->sin6));
	else if (s->ss_family == AF_INET)
		memcpy(&d->sin, s, sizeof(d->sin));
	else
		d->sa.sa_family = s->ss_family;
}

static void
tun_sa_get(const union tun_sa *s, struct sockaddr_storage *d)
{
	memset(d, 0, sizeof(*d));
	memcpy(d, s, sizeof(*s));
}

/* "10.0.0.1:80" / "[fd00::1]:80" */
static void
tun_authority(const union tun_sa *ss, char *buf, size_t len)
{
	struct weft_ip ip;
	uint16_t port = 0;
	char a[WEFT_SOCKADDR_STRLEN];

	if (weft_ip_from_sockaddr(&ss->sa, &ip,
	    &port) == -1) {
		snprintf(buf, len, "?");
		return;
	}
	weft_ip_str(&ip, a, sizeof(a));
	if (ip.family == AF_INET6)
		snprintf(buf, len, "[%s]:%u", a, port);
	else
		snprintf(buf, len, "%s:%u", a, port);
}

/* --- streams: the plain side ---------------------------------------------- */

static struct tun_stream *
ts_new(struct weft_tunnel *tn, bool server)
{
	struct tun_stream *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	st->ts_tun = tn;
	st->ts_server = server;
	st->ts_fd = -1;
	st->ts_reason = WEFT_CLOSE_EOF;
	clock_gettime(CLOCK_MONOTONIC, &st->ts_start);
	TAILQ_INSERT_TAIL(&tn->tn_streams, st, ts_all);
	tn->tn_nstreams++;
	STAT_ADD(tn->tn_cx->cx_stats.cs_tun_streams, 1);
	return st;
}

#define TUN_STR(s)	((s) != NULL ? (s) : "-")

static uint32_t
tun_atom_hash(const char *s)
{
	uint32_t h = 2166136261u;	/* FNV-1a */

	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* s, interned: a reference to the worker's copy.  NULL: out of memory. */
static char *
tun_atom_get(struct weft_tunnel *tn, const char *s)
{
	uint32_t h = tun_atom_hash(s);
	struct tun_atom **ap = &tn->tn_atoms[h % TUN_ATOM_BUCKETS], *a;
	size_t len;

	for (a = *ap; a != NULL; a = a->a_next)
		if (a->a_hash == h && strcmp(a->a_s, s) == 0) {
			a->a_refs++;
			return a->a_s;
		}
	len = strlen(s) + 1;
	if ((a = malloc(sizeof(*a) + len)) == NULL)
		return NULL;
	a->a_hash = h;
	a->a_refs = 1;
	memcpy(a->a_s, s, len);
	a->a_next = *ap;
	*ap = a;
	tn->tn_test.tt_natoms++;
	return a->a_s;
}

/* Drop a reference from tun_atom_get (NULL: nothing). */
static void
tun_atom_put(struct weft_tunnel *tn, char *s)
{
	struct tun_atom *a, **ap;

	if (s == NULL)
		return;
	a = (struct tun_atom *)(void *)(s - offsetof(struct tun_atom, a_s));
	if (--a->a_refs > 0)
		return;
	for (ap = &tn->tn_atoms[a->a_hash % TUN_ATOM_BUCKETS]; *ap != a;
	    ap = &(*ap)->a_next)
		;
	*ap = a->a_next;
	tn->tn_test.tt_natoms--;
	free(a);
}

/* The stream's identities (and, client side, node and route), interned;
 * NULL node/route stay NULL.  Returns 0 or -1 (out of memory). */
static int
ts_set_strings(struct tun_stream *st, const char *src_id, const char *dst_id,
    const char *node, const char *route)
{
	struct weft_tunnel *tn = st->ts_tun;

	if ((st->ts_src_id = tun_atom_get(tn, src_id)) == NULL ||
	    (st->ts_dst_id = tun_atom_get(tn, dst_id)) == NULL ||
	    (node != NULL && (st->ts_node = tun_atom_get(tn, node)) ==
	    NULL) ||
	    (route != NULL && (st->ts_route = tun_atom_get(tn, route)) ==
	    NULL))
		return -1;
	return 0;
}

static void
ts_read_enable(struct tun_stream *st)
{
	if (st->ts_rev != NULL && !st->ts_reading && !st->ts_rd_eof &&
	    !st->ts_plain_failed && st->ts_connected) {
		event_add(st->ts_rev, NULL);
		st->ts_reading = true;
	}
}

static void
ts_read_disable(struct tun_stream *st)
{
	if (st->ts_rev != NULL && st->ts_reading) {
		event_del(st->ts_rev);
		st->ts_reading = false;
	}
}

/* The plain socket took n bytes: open the h2 windows by as much. */
static void
ts_consumed(struct tun_stream *st, size_t n)
{
	if (n > st->ts_unconsumed)
		n = st->ts_unconsumed;
	st->ts_unconsumed -= n;
	if (n > 0 && st->ts_conn != NULL && st->ts_id > 0) {
		nghttp2_session_consume(st->ts_conn->tc_h2, st->ts_id, n);
		tc_schedule_send(st->ts_conn);
	}
}

/* Everything written out: stop watching for writability (once connected),
 * give back the empty output buffer, pass END_STREAM on as a FIN; a
 * finished stream can go. */
static void
ts_plain_writecb(struct tun_stream *st)
{
	if (st->ts_out != NULL && evbuffer_get_length(st->ts_out) != 0)
		return;
	if (st->ts_out != NULL) {
		evbuffer_free(st->ts_out);
		st->ts_out = NULL;
	}
	if (st->ts_connected && st->ts_wev != NULL) {
		event_free(st->ts_wev);
		st->ts_wev = NULL;
	}
	if (st->ts_h2_rd_eof && !st->ts_wr_shut && st->ts_connected &&
	    (st->ts_rawin == NULL || evbuffer_get_length(st->ts_rawin) == 0)) {
		(void)shutdown(st->ts_fd, SHUT_WR);
		st->ts_wr_shut = true;
	}
	if (st->ts_conn == NULL && st->ts_id != 0)
		ts_finish(st);
}

/* Server: the pod accepted; answer 200 and start reading. */
static void
ts_plain_connected(struct tun_stream *st)
{
	static const nghttp2_nv ok[] = {
		{ (uint8_t *)":status", (uint8_t *)"200", 7, 3,
		    NGHTTP2_NV_FLAG_NONE },
	};
	st->ts_connected = true;
	if (st->ts_conn == NULL) {
		ts_finish(st);
		return;
	}
	/* The DATA items follow the pod's bytes (ts_resume). */
	if (nghttp2_submit_headers(st->ts_conn->tc_h2, NGHTTP2_FLAG_NONE,
	    st->ts_id, NULL, ok, 1, NULL) < 0) {
		nghttp2_submit_rst_stream(st->ts_conn->tc_h2,
		    NGHTTP2_FLAG_NONE, st->ts_id, NGHTTP2_INTERNAL_ERROR);
		ts_set_reason(st, WEFT_CLOSE_ERROR);
	} else
		st->ts_resp_ok = true;
	ts_read_enable(st);
	/* DATA that came before the connect may already carry the
	 * END_STREAM; with none queued, stop watching for writability. */
	ts_plain_writecb(st);
	tc_schedule_send(st->ts_conn);
}

/* The plain socket failed (err: errno): the server's connect to the pod
 * (502) or a write. */
static void
ts_plain_error(struct tun_stream *st, int err)
{
	if (st->ts_wev != NULL) {
		event_free(st->ts_wev);
		st->ts_wev = NULL;
	}
	if (!st->ts_connected && st->ts_server && st->ts_conn != NULL &&
	    !st->ts_resp_ok) {
		/* Target connect failed: 502, no body. */
		static const nghttp2_nv bad[] = {
			{ (uint8_t *)":status", (uint8_t *)"502", 7, 3,
			    NGHTTP2_NV_FLAG_NONE },
		};

		char dst[WEFT_SOCKADDR_STRLEN];

		log_debug("conn %s: connect to %s: %s", st->ts_name,
		    weft_sockaddr_str(&st->ts_dst.sa, dst, sizeof(dst)),
		    strerror(err));
		ts_set_reason(st, err == ECONNREFUSED ?
		    WEFT_CLOSE_UPSTREAM_REFUSED : WEFT_CLOSE_NO_ROUTE);
		st->ts_plain_failed = true;
		st->ts_rst_after_send = true;
		nghttp2_submit_response(st->ts_conn->tc_h2, st->ts_id, bad, 1,
		    NULL);
		tc_schedule_send(st->ts_conn);
		return;
	}
	/* A socket error: RST_STREAM(CONNECT_ERROR) (RFC 9113 §8.5). */
	ts_reset_plain(st, (err == ECONNRESET || err == EPIPE) ?
	    WEFT_CLOSE_RESET : WEFT_CLOSE_ERROR);
}

static void	ts_plain_wcb(evutil_socket_t, short, void *);

/* The writer event exists only while a write or the server's connect
 * waits: an idle stream has one event.  0 or -1. */
static int
ts_wev_make(struct tun_stream *st)
{
	struct weft_conn_ctx *cx = st->ts_tun->tn_cx;

	if (st->ts_wev == NULL && (st->ts_wev = event_new(cx->cx_base,
	    st->ts_fd, EV_WRITE | EV_PERSIST, ts_plain_wcb, st)) == NULL)
		return -1;
	return 0;
}

/* ts_out has bytes for the connected socket: write them this turn, from
 * the loop.  Only a socket that refuses some gets watched (epoll_ctl).
 * 0 or -1. */
static int
ts_want_write(struct tun_stream *st)
{
	if (ts_wev_make(st) == -1)
		return -1;
	if (!event_pending(st->ts_wev, EV_WRITE, NULL))
		event_active(st->ts_wev, EV_WRITE, 0);
	return 0;
}

/* Wait for the socket to be writable: the server's connect, or the rest
 * of ts_out.  0 or -1. */
static int
ts_wait_writable(struct tun_stream *st)
{
	if (ts_wev_make(st) == -1)
		return -1;
	if (!event_pending(st->ts_wev, EV_WRITE, NULL))
		return event_add(st->ts_wev, NULL);
	return 0;
}

/* ts_wev: the server's connect finished, or the socket takes more of
 * ts_out.  Runs from the loop only, never inside an nghttp2 callback. */
static void
ts_plain_wcb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_stream *st = arg;
	socklen_t len;
	int n, err;

	(void)what;
	if (!st->ts_connected) {
		len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err == EINPROGRESS || err == EINTR)
			return;
		if (err != 0)
			ts_plain_error(st, err);
		else
			ts_plain_connected(st);
		return;
	}
	if (st->ts_out != NULL && evbuffer_get_length(st->ts_out) > 0) {
		n = evbuffer_write_atmost(st->ts_out, fd, TUN_WRITE_MAX);
		if (n == -1) {
			err = errno;
			if (err == EAGAIN || err == EWOULDBLOCK ||
			    err == EINTR) {
				(void)ts_wait_writable(st);
				return;
			}
			ts_plain_error(st, err);
			return;
		}
		ts_consumed(st, (size_t)n);
		if (st->ts_h1 != NULL)
			ts_filter_in(st);	/* room in ts_out again */
		if (st->ts_out != NULL &&
		    evbuffer_get_length(st->ts_out) > 0) {
			(void)ts_wait_writable(st);
			return;
		}
	}
	ts_plain_writecb(st);
}

/* The plain socket: our reader (ts_rev) and, while it waits, a writer
 * (ts_wev); no bufferevent.  ts_in and ts_out exist only while they hold
 * data: an idle stream has neither, and one event. */
static int
ts_attach(struct tun_stream *st, int fd)
{
	struct weft_conn_ctx *cx = st->ts_tun->tn_cx;

	if ((st->ts_rev = event_new(cx->cx_base, fd, EV_READ | EV_PERSIST,
	    ts_plain_readcb, st)) == NULL)
		return -1;
	st->ts_fd = fd;
	return 0;
}

/* The plain socket failed or must go: reset the h2 stream too. */
static void
ts_reset_plain(struct tun_stream *st, enum weft_close_reason r)
{
	ts_set_reason(st, r);
	st->ts_plain_failed = true;
	ts_read_disable(st);
	if (st->ts_conn != NULL && st->ts_id > 0) {
		nghttp2_submit_rst_stream(st->ts_conn->tc_h2,
		    NGHTTP2_FLAG_NONE, st->ts_id, NGHTTP2_CONNECT_ERROR);
		tc_schedule_send(st->ts_conn);
		return;		/* on_stream_close finishes it */
	}
	ts_finish(st);
}

/* --- per-request policy on a server stream (weft/http1.h) ---------------- */

#define TUN_FILTER_OUT_HIGH	(256 * 1024)	/* filtered, not yet written */

static uint16_t
tun_sa_port(const union tun_sa *sa)
{
	return ntohs(sa->sa.sa_family == AF_INET6 ? sa->sin6.sin6_port :
	    sa->sin.sin_port);
}

/* The policy's view of a server stream: its caller's identity (the
 * connection's certificate), the pod's identity, the pod's port. */
static struct weft_flow *
ts_flow_make(const struct tun_stream *st)
{
	struct weft_spiffe_id sid, did;
	const char *why;

	if (st->ts_src_id == NULL || st->ts_dst_id == NULL ||
	    weft_spiffe_parse(st->ts_src_id, &sid, &why) == -1 ||
	    weft_spiffe_parse(st->ts_dst_id, &did, &why) == -1)
		return NULL;
	return weft_flow_new(sid.namespace, sid.service_account,
	    did.namespace, did.service_account, tun_sa_port(&st->ts_dst));
}

static bool
ts_h1_decide(void *arg, const struct weft_policy_http *req, char *why,
    size_t whylen)
{
	struct tun_stream *st = arg;
	const char *token = "denied";
	char text[160];

	if (weft_flow_check_http(st->ts_flow, req, text, sizeof(text),
	    &token))
		return true;
	log_info("conn %s: %.*s %.*s from %s denied: %s", st->ts_name,
	    (int)req->method_len, req->method, (int)req->path_len, req->path,
	    TUN_STR(st->ts_src_id), text);
	snprintf(why, whylen, "%s", token);
	return false;
}

/* One exchange ended: the destination's side of the metrics (a denial
 * made here is counted here: the caller's node saw only a 403). */
static void
ts_h1_done(void *arg, const struct weft_h1_exchange *ex)
{
	struct tun_stream *st = arg;

	weft_metrics_flow_request(st->ts_tun->tn_cx->cx_metrics, st->ts_mflow,
	    ex->status, ex->duration_s, ex->why);
}

static const struct weft_h1_ops ts_h1_ops = { ts_h1_decide, ts_h1_done };

/* The filter ended the exchange cleanly (its answer says close): once that
 * answer is out, END_STREAM; the pod gets a FIN. */
static void
ts_filter_close(struct tun_stream *st)
{
	ts_read_disable(st);
	st->ts_rd_eof = true;
	if (!st->ts_wr_shut && st->ts_connected && st->ts_fd != -1) {
		(void)shutdown(st->ts_fd, SHUT_WR);
		st->ts_wr_shut = true;
	}
	ts_resume(st);
}

static bool
ts_buf(struct evbuffer **b)
{
	return *b != NULL || (*b = evbuffer_new()) != NULL;
}

/* DATA from the caller through the filter: allowed requests to ts_out (for
 * the pod), our answers to ts_in (for the caller).  What the filter took is
 * consumed at once - it is in ts_out, bounded by TUN_FILTER_OUT_HIGH, or
 * dropped - so flow control still bounds what waits in ts_rawin. */
static void
ts_filter_in(struct tun_stream *st)
{
	enum weft_h1_result r;
	size_t before, taken;

	if (st->ts_rawin == NULL || (before = evbuffer_get_length(
	    st->ts_rawin)) == 0 || st->ts_plain_failed)
		return;
	if (st->ts_out != NULL &&
	    evbuffer_get_length(st->ts_out) >= TUN_FILTER_OUT_HIGH)
		return;
	if (!ts_buf(&st->ts_out) || !ts_buf(&st->ts_in)) {
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
		return;
	}
	r = weft_h1_from_client(st->ts_h1, st->ts_rawin, st->ts_out,
	    st->ts_in);
	taken = before - evbuffer_get_length(st->ts_rawin);
	if (taken > 0 && st->ts_conn != NULL && st->ts_id > 0) {
		nghttp2_session_consume(st->ts_conn->tc_h2, st->ts_id, taken);
		tc_schedule_send(st->ts_conn);
	}
	if (r == WEFT_H1_RESET) {
		log_info("conn %s: http: %s; reset", st->ts_name,
		    weft_h1_error(st->ts_h1));
		ts_reset_plain(st, WEFT_CLOSE_DENIED);
		return;
	}
	if (evbuffer_get_length(st->ts_out) > 0 && st->ts_connected &&
	    ts_want_write(st) == -1) {
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
		return;
	}
	if (evbuffer_get_length(st->ts_in) > 0)
		ts_resume(st);
	if (r == WEFT_H1_CLOSE)
		ts_filter_close(st);
}

/* The pod's bytes through the filter, into ts_in. */
static int
ts_filter_out(struct tun_stream *st)
{
	enum weft_h1_result r;

	if (!ts_buf(&st->ts_in))
		return -1;
	r = weft_h1_from_server(st->ts_h1, st->ts_rresp, st->ts_in);
	if (r == WEFT_H1_RESET) {
		log_info("conn %s: http: %s; reset", st->ts_name,
		    weft_h1_error(st->ts_h1));
		return -1;
	}
	/* Responses free the filter's queue: requests may have waited. */
	ts_filter_in(st);
	if (r == WEFT_H1_CLOSE)
		ts_filter_close(st);
	return 0;
}

static void
ts_plain_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_stream *st = arg;
	struct evbuffer_iovec iov[2];
	char small[TUN_READ_MIN];
	struct evbuffer **bp;
	size_t have, want, left;
	ssize_t r;
	int n, i;

	(void)what;
	/* Through the filter, the pod's bytes land in ts_rresp first. */
	bp = st->ts_h1 != NULL ? &st->ts_rresp : &st->ts_in;
	if (*bp == NULL && (*bp = evbuffer_new()) == NULL) {
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
		return;
	}
	have = evbuffer_get_length(*bp) + (st->ts_h1 != NULL &&
	    st->ts_in != NULL ? evbuffer_get_length(st->ts_in) : 0);
	if (have >= TUN_PLAIN_IN_HIGH) {
		ts_read_disable(st);
		return;
	}
	/* A 64 KiB reservation for a 60-byte greeting costs pages that stay
	 * with the process: start small, grow while reads fill it. */
	if (st->ts_rdsize == 0)
		st->ts_rdsize = TUN_READ_MIN;
	want = TUN_PLAIN_IN_HIGH - have;
	if (want > st->ts_rdsize)
		want = st->ts_rdsize;
	if (want <= TUN_READ_MIN) {
		/* Small reads (a new or chatty stream) go through the stack:
		 * a 60-byte greeting then holds a 1 KiB chain until it is
		 * framed, not a 4 KiB reservation, and a thousand streams
		 * greeting at once leave no 4 MiB of pages behind. */
		iov[0].iov_base = small;
		iov[0].iov_len = want;
		n = 1;
	} else if ((n = evbuffer_reserve_space(*bp, (ev_ssize_t)want, iov,
	    2)) <= 0) {
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
		return;
	}
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
		int err = errno;

		if (iov[0].iov_base != small)
			evbuffer_commit_space(*bp, iov, 0);
		if (evbuffer_get_length(*bp) == 0) {
			/* Not even the reserved chain stays with an idle
			 * stream. */
			evbuffer_free(*bp);
			*bp = NULL;
		}
		if (r == -1 && (err == EAGAIN || err == EWOULDBLOCK))
			return;
		ts_read_disable(st);
		if (r == 0) {
			st->ts_rd_eof = true;
			if (st->ts_h1 != NULL && ts_buf(&st->ts_in))
				(void)weft_h1_server_eof(st->ts_h1, st->ts_in);
			ts_resume(st);		/* the provider sends EOF */
			return;
		}
		log_debug("conn %s: plain read: %s", st->ts_name,
		    strerror(err));
		ts_reset_plain(st, (err == ECONNRESET || err == EPIPE) ?
		    WEFT_CLOSE_RESET : WEFT_CLOSE_ERROR);
		return;
	}
	st->ts_sniff = false;		/* the pod spoke first: not HTTP */
	if ((size_t)r == want && st->ts_rdsize < TUN_READ_CHUNK)
		st->ts_rdsize *= 2;
	else if ((size_t)r < st->ts_rdsize / 4 && st->ts_rdsize > TUN_READ_MIN)
		st->ts_rdsize /= 2;
	left = (size_t)r;
	for (i = 0; i < n; i++) {
		if (iov[i].iov_len > left)
			iov[i].iov_len = left;
		left -= iov[i].iov_len;
	}
	if (iov[0].iov_base == small) {
		if (evbuffer_add(*bp, small, (size_t)r) == -1) {
			ts_reset_plain(st, WEFT_CLOSE_ERROR);
			return;
		}
	} else
		evbuffer_commit_space(*bp, iov, n);
	if (st->ts_h1 != NULL && ts_filter_out(st) == -1) {
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
		return;
	}
	/* A full ts_in stops reading at the next call if the h2 side has
	 * not taken it by then: usually it has (this turn), and the reader
	 * stays on without two epoll_ctl per 64 KiB. */
	ts_resume(st);
}

/* The log line, the counters, the sockets, the memory.  The h2 stream must
 * be closed already (ts_conn == NULL) or never have existed. */
static void
ts_finish(struct tun_stream *st)
{
	struct weft_tunnel *tn = st->ts_tun;
	struct weft_conn_ctx *cx = tn->tn_cx;
	struct weft_conn_stats *stats = &cx->cx_stats;
	struct weft_conn_summary sum;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];
	char dial[WEFT_SOCKADDR_STRLEN];
	enum weft_close_reason r = st->ts_reason;

	if (st->ts_conn != NULL) {
		TAILQ_REMOVE(&st->ts_conn->tc_streams, st, ts_entry);
		st->ts_conn->tc_nstreams--;
		st->ts_conn = NULL;
	}
	if (st->ts_retry)
		TAILQ_REMOVE(&tn->tn_retry, st, ts_entry);
	/* Never answered 200: the reason is the upstream's outcome. */
	ts_hook_ready(st, st->ts_resp_ok ? 0 : (int)r);
	if (st->ts_hook.hk_done != NULL)
		st->ts_hook.hk_done(st->ts_hook.hk_arg);
	memset(&st->ts_hook, 0, sizeof(st->ts_hook));
	weft_sockaddr_str(&st->ts_src.sa, src, sizeof(src));
	weft_sockaddr_str(&st->ts_dst.sa, dst, sizeof(dst));
	if (st->ts_handed_off)
		goto quiet;	/* the denier writes the line and counts */
	if (st->ts_server && st->ts_target.sa.sa_family != AF_UNSPEC)
		tun_authority(&st->ts_target, src, sizeof(src));
	if (st->ts_server)
		log_info("conn %s tunnel-in %s -> %s peer=%s%s sent=%llu "
		    "received=%llu duration=%.1fms reason=%s", st->ts_name,
		    src, st->ts_dst.sa.sa_family != AF_UNSPEC ? dst : "-",
		    st->ts_src_id != NULL && st->ts_src_id[0] ? st->ts_src_id :
		    "-", st->ts_h1 != NULL && weft_h1_requests(st->ts_h1) > 0 ?
		    " http" : "",
		    (unsigned long long)st->ts_down,
		    (unsigned long long)st->ts_up, tun_ms_since(&st->ts_start),
		    weft_close_reason_name(r));
	else
		log_info("conn %s outbound %s -> %s via tunnel %s (%s) "
		    "route=\"%s\" peer=%s sent=%llu received=%llu "
		    "duration=%.1fms reason=%s", st->ts_name, src, dst,
		    TUN_STR(st->ts_node), weft_sockaddr_str(&st->ts_dial.sa,
		    dial, sizeof(dial)), TUN_STR(st->ts_route),
		    TUN_STR(st->ts_dst_id), (unsigned long long)st->ts_up,
		    (unsigned long long)st->ts_down,
		    tun_ms_since(&st->ts_start), weft_close_reason_name(r));
	STAT_ADD(stats->cs_closed[(unsigned)r < WEFT_CLOSE_NREASONS ? r :
	    WEFT_CLOSE_ERROR], 1);
	if (st->ts_server) {
		STAT_ADD(stats->cs_bytes_sent, st->ts_down);
		STAT_ADD(stats->cs_bytes_received, st->ts_up);
	} else {
		STAT_ADD(stats->cs_bytes_sent, st->ts_up);
		STAT_ADD(stats->cs_bytes_received, st->ts_down);
	}
	if (cx->cx_on_close != NULL) {
		sum.id = st->ts_name;
		sum.dir = st->ts_server ? WEFT_DIR_TUNNEL : WEFT_DIR_OUTBOUND;
		sum.reason = r;
		sum.sent = st->ts_server ? st->ts_down : st->ts_up;
		sum.received = st->ts_server ? st->ts_up : st->ts_down;
		sum.duration_ms = tun_ms_since(&st->ts_start);
		cx->cx_on_close(&sum, cx->cx_on_close_arg);
	}
quiet:
	weft_metrics_flow_close(cx->cx_metrics, st->ts_mflow, st->ts_server ?
	    st->ts_down : st->ts_up, st->ts_server ? st->ts_up : st->ts_down);
	st->ts_mflow = NULL;
	if (st->ts_rev != NULL)
		event_free(st->ts_rev);
	if (st->ts_wev != NULL) {
		event_free(st->ts_wev);
		if (r != WEFT_CLOSE_EOF)
			tun_linger0(st->ts_fd);
		close(st->ts_fd);
	} else if (st->ts_fd != -1) {
		tun_linger0(st->ts_fd);
		close(st->ts_fd);
	}
	if (st->ts_in != NULL)
		evbuffer_free(st->ts_in);
	if (st->ts_out != NULL)
		evbuffer_free(st->ts_out);
	if (st->ts_rawin != NULL)
		evbuffer_free(st->ts_rawin);
	if (st->ts_rresp != NULL)
		evbuffer_free(st->ts_rresp);
	weft_h1_free(st->ts_h1);
	weft_flow_free(st->ts_flow);
	tun_atom_put(tn, st->ts_src_id);
	tun_atom_put(tn, st->ts_dst_id);
	tun_atom_put(tn, st->ts_node);
	tun_atom_put(tn, st->ts_route);
	TAILQ_REMOVE(&tn->tn_streams, st, ts_all);
	tn->tn_nstreams--;
	free(st);
}

/* --- h2: data provider and callbacks -------------------------------------- */

/* Plain bytes (or the plain EOF) wait in ts_in: have nghttp2 frame them.
 * A DATA item lives only while there is something to send (tun_read_cb
 * ends it when ts_in runs dry), so a new one is submitted here. */
static void
ts_resume(struct tun_stream *st)
{
	struct tun_conn *tc = st->ts_conn;
	nghttp2_data_provider prd;
	int rv;

	if (tc == NULL || st->ts_id <= 0)
		return;
	if (st->ts_deferred) {
		st->ts_deferred = false;
		nghttp2_session_resume_data(tc->tc_h2, st->ts_id);
		tc_schedule_send(tc);
		return;
	}
	if (st->ts_item || st->ts_eof_sent || !st->ts_resp_ok ||
	    !st->ts_connected || st->ts_plain_failed)
		return;
	if ((st->ts_in == NULL || evbuffer_get_length(st->ts_in) == 0) &&
	    !st->ts_rd_eof)
		return;
	prd.source.ptr = st;
	prd.read_callback = tun_read_cb;
	rv = nghttp2_submit_data(tc->tc_h2, NGHTTP2_FLAG_END_STREAM,
	    st->ts_id, &prd);
	if (rv == NGHTTP2_ERR_DATA_EXIST) {
		/* The last item's final frame waits behind a full TLS
		 * output; nghttp2 lets it go once that frame is out. */
		st->ts_item_wait = true;
		tc->tc_item_wait = true;
		return;
	}
	if (rv != 0) {
		/* Closing: on_stream_close finishes the stream. */
		log_debug("conn %s: submit data: %s", st->ts_name,
		    nghttp2_strerror(rv));
		return;
	}
	st->ts_item = true;
	tc_schedule_send(tc);
}

/* After a send: streams whose new item found the old one still queued. */
static void
tc_item_retry(struct tun_conn *tc)
{
	struct tun_stream *st, *next;

	if (!tc->tc_item_wait)
		return;
	tc->tc_item_wait = false;
	for (st = TAILQ_FIRST(&tc->tc_streams); st != NULL; st = next) {
		next = TAILQ_NEXT(st, ts_entry);
		if (st->ts_item_wait) {
			st->ts_item_wait = false;
			ts_resume(st);
		}
	}
}

static ssize_t
tun_read_cb(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct tun_stream *st = src->ptr;
	size_t avail, n;

	(void)s;
	(void)id;
	(void)ud;
	if (!st->ts_resp_ok || !st->ts_connected) {
		st->ts_deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	avail = st->ts_in != NULL ? evbuffer_get_length(st->ts_in) : 0;
	n = avail < len ? avail : len;
	if (n > 0) {
		evbuffer_remove(st->ts_in, buf, n);
		st->ts_up += n;
	}
	if (n == avail) {
		/* Drained: this item ends (ts_resume submits the next one);
		 * the stream too if the plain side has ended. */
		if (st->ts_in != NULL) {
			evbuffer_free(st->ts_in);
			st->ts_in = NULL;
		}
		st->ts_item = false;
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (st->ts_rd_eof)
			st->ts_eof_sent = true;
		else
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	}
	if (!st->ts_rd_eof && (st->ts_in == NULL ||
	    evbuffer_get_length(st->ts_in) < TUN_PLAIN_IN_HIGH))
		ts_read_enable(st);
	return (ssize_t)n;
}

static ssize_t
tun_send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags,
    void *ud)
{
	struct tun_conn *tc = ud;
	struct weft_tunnel *tn = tc->tc_tun;
	size_t left = len, n;

	(void)s;
	(void)flags;
	if (evbuffer_get_length(tc->tc_out) + tn->tn_wlen >= TUN_TLS_OUT_HIGH)
		return NGHTTP2_ERR_WOULDBLOCK;
	/* Frames are coalesced into full records (tc_flush puts the rest):
	 * a frame header is not a record, a record not a write (16). */
	while (left > 0) {
		n = TUN_TLS_WBUF - tn->tn_wlen;
		if (n > left)
			n = left;
		memcpy(tn->tn_wbuf + tn->tn_wlen, data, n);
		tn->tn_wlen += n;
		data += n;
		left -= n;
		if (tn->tn_wlen == TUN_TLS_WBUF && tc_tls_put(tc) == -1)
			return NGHTTP2_ERR_CALLBACK_FAILURE;
	}
	return (ssize_t)len;
}

static int
tun_on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct tun_conn *tc = ud;
	struct weft_tunnel *tn = tc->tc_tun;
	struct weft_conn_ctx *cx = tn->tn_cx;
	struct tun_stream *st;

	if (!tc->tc_server || f->hd.type != NGHTTP2_HEADERS ||
	    f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if ((st = ts_new(tn, true)) == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	st->ts_id = f->hd.stream_id;
	st->ts_conn = tc;
	tc->tc_h_method[0] = tc->tc_h_authority[0] = tc->tc_h_orig[0] = '\0';
	snprintf(st->ts_name, sizeof(st->ts_name), "w%d-%llu", cx->cx_index,
	    (unsigned long long)++cx->cx_next_id);
	tun_sa_set(&st->ts_src, &tc->tc_peer);
	if (ts_set_strings(st, tc->tc_peer_id, tc->tc_local_id, NULL,
	    NULL) == -1) {
		/* Not in the connection's list yet: just free it. */
		st->ts_conn = NULL;
		ts_set_reason(st, WEFT_CLOSE_ERROR);
		ts_finish(st);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	TAILQ_INSERT_TAIL(&tc->tc_streams, st, ts_entry);
	tc->tc_nstreams++;
	STAT_ADD(cx->cx_stats.cs_opened, 1);
	nghttp2_session_set_stream_user_data(s, st->ts_id, st);
	if (tc->tc_timer != NULL)
		evtimer_del(tc->tc_timer);
	return 0;
}

static void
tun_copy(char *dst, size_t dlen, const uint8_t *v, size_t vlen)
{
	if (vlen >= dlen)
		vlen = dlen - 1;
	memcpy(dst, v, vlen);
	dst[vlen] = '\0';
}

static int
tun_on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
    void *ud)
{
	struct tun_stream *st;

	(void)flags;
	if (f->hd.type != NGHTTP2_HEADERS ||
	    (st = nghttp2_session_get_stream_user_data(s,
	    f->hd.stream_id)) == NULL)
		return 0;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
	if (st->ts_server) {
		struct tun_conn *tc = ud;

		if (IS(":method"))
			tun_copy(tc->tc_h_method, sizeof(tc->tc_h_method),
			    value, valuelen);
		else if (IS(":authority"))
			tun_copy(tc->tc_h_authority,
			    sizeof(tc->tc_h_authority), value, valuelen);
		else if (IS("x-weft-original-source"))
			tun_copy(tc->tc_h_orig, sizeof(tc->tc_h_orig), value,
			    valuelen);
	} else if (IS(":status")) {
		char b[8];

		tun_copy(b, sizeof(b), value, valuelen);
		st->ts_status = atoi(b);
	}
#undef IS
	return 0;
}

static void
tun_respond_error(struct tun_stream *st, const char *status,
    enum weft_close_reason r)
{
	nghttp2_nv nv[] = {
		{ (uint8_t *)":status", (uint8_t *)status, 7, strlen(status),
		    NGHTTP2_NV_FLAG_NONE },
	};

	ts_set_reason(st, r);
	st->ts_rst_after_send = true;
	nghttp2_submit_response(st->ts_conn->tc_h2, st->ts_id, nv, 1, NULL);
}

/* Source-transparent bind of the pod-side socket to ip (the caller pod's
 * address), as conn.c does; quietly from the node's address on failure. */
static void
tun_bind_source(int fd, const struct weft_ip *ip)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int one = 1;

	weft_ip_to_sockaddr(ip, 0, &ss, &len);
	if (ip->family == AF_INET6) {
		if (setsockopt(fd, SOL_IPV6, IPV6_TRANSPARENT, &one,
		    sizeof(one)) == -1)
			return;
	} else {
		if (setsockopt(fd, SOL_IP, IP_TRANSPARENT, &one,
		    sizeof(one)) == -1)
			return;
		(void)setsockopt(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		    sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) == -1)
		log_debug("tunnel: transparent bind: %s", strerror(errno));
}

/* Server: a complete CONNECT request.  The target must be a local pod with
 * the identity this connection presented. */
static void
tun_server_request(struct tun_conn *tc, struct tun_stream *st)
{
	struct weft_tunnel *tn = tc->tc_tun;
	struct weft_conn_ctx *cx = tn->tn_cx;
	const struct weft_snapshot *snap;
	const struct weft_snap_pod *pod, *spod;
	struct weft_gen *g;
	struct weft_ip ip, sip;
	struct sockaddr_storage ss;
	struct sockaddr_storage dss;
	socklen_t sslen;
	char id[WEFT_SPIFFE_MAX], host[64], *colon;
	uint32_t mark = cx->cx_cfg.rc_own_mark;
	bool transparent = false;
	long port;
	int fd, one = 1;

	if (strcmp(tc->tc_h_method, "CONNECT") != 0) {
		log_info("conn %s: tunnel-in from %s: %s refused: not CONNECT",
		    st->ts_name, tc->tc_peer_id, tc->tc_h_method);
		tun_respond_error(st, "405", WEFT_CLOSE_DENIED);
		return;
	}
	/* "ip:port" or "[v6]:port" */
	snprintf(host, sizeof(host), "%s", tc->tc_h_authority);
	colon = strrchr(host, ':');
	if (colon == NULL || colon == host) {
		log_info("conn %s: tunnel-in from %s: CONNECT %s refused: "
		    "no port", st->ts_name, tc->tc_peer_id, tc->tc_h_authority);
		tun_respond_error(st, "400", WEFT_CLOSE_ERROR);
		return;
	}
	*colon = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (host[0] == '[' && colon[-1] == ']') {
		colon[-1] = '\0';
		memmove(host, host + 1, strlen(host));
	}
	if (port <= 0 || port > 65535 || weft_ip_parse(host, &ip) == -1) {
		log_info("conn %s: tunnel-in from %s: CONNECT %s refused: "
		    "not an address and port", st->ts_name, tc->tc_peer_id,
		    tc->tc_h_authority);
		tun_respond_error(st, "400", WEFT_CLOSE_ERROR);
		return;
	}
	weft_ip_to_sockaddr(&ip, (uint16_t)port, &dss, &sslen);
	tun_sa_set(&st->ts_dst, &dss);
	g = tun_gen(tn);
	pod = g != NULL ? weft_gen_pod_by_ip(g, &ip) : NULL;
	snap = g != NULL ? weft_gen_snapshot(g) : NULL;
	if (pod == NULL || !pod->meshed || !weft_gen_pod_is_local(g, pod) ||
	    snap->trust_domain == NULL ||
	    weft_spiffe_format(snap->trust_domain, pod->namespace,
	    pod->service_account, id, sizeof(id)) == NULL ||
	    strcmp(id, tc->tc_local_id) != 0) {
		log_info("conn %s: tunnel-in from %s: CONNECT %s denied: %s",
		    st->ts_name, tc->tc_peer_id, tc->tc_h_authority, pod == NULL ?
		    "not a pod" : !weft_gen_pod_is_local(g, pod) ?
		    "not a local pod" : "pod of another identity");
		weft_gen_unref(g);
		STAT_ADD(cx->cx_stats.cs_tun_denied_streams, 1);
		tun_respond_error(st, "403", WEFT_CLOSE_DENIED);
		return;
	}
	/* The destination's policy (SPEC §3.4); the caller is who its
	 * certificate says it is. */
	{
		struct weft_policy_why why;
		enum weft_policy_verdict v;
		struct weft_flow *fl;

		if ((fl = ts_flow_make(st)) == NULL) {
			weft_gen_unref(g);
			tun_respond_error(st, "500", WEFT_CLOSE_ERROR);
			return;
		}
		v = weft_flow_check(fl, g, &why);
		if (v == WEFT_POLICY_DENY) {
			log_info("conn %s: tunnel-in from %s: CONNECT %s "
			    "denied: %s", st->ts_name, tc->tc_peer_id,
			    tc->tc_h_authority, why.reason);
			weft_flow_free(fl);
			weft_gen_unref(g);
			STAT_ADD(cx->cx_stats.cs_tun_denied_streams, 1);
			tun_respond_error(st, "403", WEFT_CLOSE_DENIED);
			return;
		}
		/* HTTP is followed even when the policy lets the stream
		 * in at L4 (a permission withdrawn later is a 403 on the
		 * next request, A-5); other bytes then pass as they are,
		 * and the filter is made only when the caller's first byte
		 * could start a request (ts_sniff_start): an idle raw
		 * stream stays small. */
		if (v == WEFT_POLICY_ALLOW) {
			st->ts_sniff = true;
			weft_flow_free(fl);
		} else if ((st->ts_h1 = weft_h1_new(&ts_h1_ops, st)) ==
		    NULL) {
			weft_flow_free(fl);
			weft_gen_unref(g);
			tun_respond_error(st, "500", WEFT_CLOSE_ERROR);
			return;
		} else
			st->ts_flow = fl;
		st->ts_mflow = weft_observe_flow(cx, g, WEFT_METRICS_INBOUND,
		    NULL, tc->tc_h_orig, tc->tc_peer_id,
		    (struct sockaddr *)&dss, (struct sockaddr *)&dss);
	}
	/* The caller's own pod address, if it is one of its identity. */
	if (tc->tc_h_orig[0] != '\0') {
		char h2[64], *c2;
		long oport = -1;

		snprintf(h2, sizeof(h2), "%s", tc->tc_h_orig);
		if ((c2 = strrchr(h2, ':')) != NULL) {
			*c2 = '\0';
			oport = strtol(c2 + 1, NULL, 10);
			if (h2[0] == '[' && c2 > h2 && c2[-1] == ']') {
				c2[-1] = '\0';
				memmove(h2, h2 + 1, strlen(h2));
			}
		}
		if (weft_ip_parse(h2, &sip) == 0) {
			struct sockaddr_storage os;
			socklen_t oslen;

			/* For the line: the caller's own address. */
			weft_ip_to_sockaddr(&sip, oport > 0 && oport <= 65535 ?
			    (uint16_t)oport : 0, &os, &oslen);
			tun_sa_set(&st->ts_target, &os);
		} else
			sip.family = 0;
	}
	if (cx->cx_cfg.rc_transparent && st->ts_target.sa.sa_family !=
	    AF_UNSPEC) {
		if ((spod = weft_gen_pod_by_ip(g, &sip)) != NULL &&
		    sip.family == ip.family &&
		    weft_spiffe_format(snap->trust_domain, spod->namespace,
		    spod->service_account, id, sizeof(id)) != NULL &&
		    strcmp(id, tc->tc_peer_id) == 0)
			transparent = true;
	}
	weft_gen_unref(g);

	weft_ip_to_sockaddr(&ip, (uint16_t)port, &ss, &sslen);
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    0);
	if (fd == -1) {
		tun_respond_error(st, "502", WEFT_CLOSE_ERROR);
		return;
	}
	/* A response written in pieces must not wait for an ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark,
	    sizeof(mark)) == -1) {
		close(fd);
		tun_respond_error(st, "502", WEFT_CLOSE_ERROR);
		return;
	}
	if (transparent)
		tun_bind_source(fd, &sip);
	if (connect(fd, (struct sockaddr *)&ss, sslen) == -1 &&
	    errno != EINPROGRESS) {
		int err = errno;

		close(fd);
		tun_respond_error(st, "502", err == ECONNREFUSED ?
		    WEFT_CLOSE_UPSTREAM_REFUSED : WEFT_CLOSE_NO_ROUTE);
		return;
	}
	if (ts_attach(st, fd) == -1) {
		close(fd);
		tun_respond_error(st, "502", WEFT_CLOSE_ERROR);
		return;
	}
	/* Writable: the connect finished (ts_plain_wcb). */
	if (ts_wait_writable(st) == -1)
		ts_plain_error(st, ENOMEM);
}

/* Client: the destination refused the stream (403).  An app that speaks
 * HTTP must see a 403 too, not a reset (SPEC §3.2.10): its socket and what
 * it already sent go to a denier (proxy/deny.c), which answers HTTP with
 * 403s and anything else with a reset, and writes the line. */
static void
ts_to_denier(struct tun_stream *st)
{
	struct weft_tunnel *tn = st->ts_tun;
	char src[WEFT_SOCKADDR_STRLEN], dst[WEFT_SOCKADDR_STRLEN];
	char line[900];
	int fd = st->ts_fd;

	if (fd == -1 || st->ts_plain_failed)
		return;
	snprintf(line, sizeof(line), "%s -> %s via tunnel %s route=\"%s\" "
	    "peer=%s policy=\"refused by the destination\"",
	    weft_sockaddr_str(&st->ts_src.sa, src, sizeof(src)),
	    weft_sockaddr_str(&st->ts_dst.sa, dst, sizeof(dst)),
	    TUN_STR(st->ts_node), TUN_STR(st->ts_route),
	    TUN_STR(st->ts_dst_id));
	if (st->ts_rev != NULL)
		event_free(st->ts_rev);
	if (st->ts_wev != NULL)
		event_free(st->ts_wev);
	st->ts_rev = st->ts_wev = NULL;
	st->ts_reading = false;
	st->ts_connected = false;
	st->ts_fd = -1;
	st->ts_handed_off = true;
	{
		struct sockaddr_storage ssrc, sdst;

		tun_sa_get(&st->ts_src, &ssrc);
		tun_sa_get(&st->ts_dst, &sdst);
		weft_deny_take(tn->tn_cx, fd, st->ts_in, st->ts_rd_eof,
		    st->ts_name, WEFT_DIR_OUTBOUND, line, &st->ts_start, &ssrc,
		    &sdst, 0, "refused-by-destination", st->ts_mflow, true);
		st->ts_mflow = NULL;
	}
}

static int
tun_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct tun_conn *tc = ud;
	struct tun_stream *st;

	switch (f->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
			tc->tc_got_settings = true;
		return 0;
	case NGHTTP2_GOAWAY:
		/* Client: no new stream here; an idle one goes now. */
		tc->tc_goaway = true;
		if (!tc->tc_server)
			tc_idle_check(tc);
		return 0;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		break;
	default:
		return 0;
	}
	if ((st = nghttp2_session_get_stream_user_data(s,
	    f->hd.stream_id)) == NULL)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS) {
		if (tc->tc_server && f->headers.cat == NGHTTP2_HCAT_REQUEST)
			tun_server_request(tc, st);
		else if (!tc->tc_server && f->headers.cat ==
		    NGHTTP2_HCAT_RESPONSE) {
			if (st->ts_status == 200) {
				st->ts_resp_ok = true;
				ts_hook_ready(st, 0);
				ts_read_enable(st);
				ts_resume(st);
			} else {
				log_info("conn %s: tunnel %s answered %d",
				    st->ts_name, tc->tc_name, st->ts_status);
				STAT_ADD(tc->tc_tun->tn_cx->cx_stats.
				    cs_tun_denied_streams, 1);
				if (st->ts_status == 403)
					ts_to_denier(st);
				ts_set_reason(st, st->ts_status == 403 ?
				    WEFT_CLOSE_DENIED : st->ts_status == 502 ?
				    WEFT_CLOSE_UPSTREAM_REFUSED :
				    WEFT_CLOSE_ERROR);
				/* a denier answers the app (403s): open as far
				 * as the hook's owner is concerned */
				ts_hook_ready(st, st->ts_handed_off ? 0 :
				    (int)st->ts_reason);
				st->ts_plain_failed = true;
				nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE,
				    st->ts_id, NGHTTP2_CANCEL);
			}
		}
	}
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		st->ts_h2_rd_eof = true;
		if (st->ts_rev != NULL)
			ts_plain_writecb(st);
	}
	return 0;
}

static int
tun_on_data_chunk(nghttp2_session *s, uint8_t flags, int32_t id,
    const uint8_t *data, size_t len, void *ud)
{
	struct tun_stream *st;

	(void)flags;
	(void)ud;
	st = nghttp2_session_get_stream_user_data(s, id);
	if (st == NULL || st->ts_rev == NULL || st->ts_plain_failed ||
	    st->ts_wr_shut) {
		/* Nobody will read it: open the windows anyway (6). */
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	if (st->ts_sniff && st->ts_h1 == NULL) {
		/* The caller speaks first: an upper-case letter may start
		 * an HTTP request; anything else is not HTTP. */
		st->ts_sniff = false;
		if (len > 0 && data[0] >= 'A' && data[0] <= 'Z' &&
		    (st->ts_flow = ts_flow_make(st)) != NULL &&
		    (st->ts_h1 = weft_h1_new(&ts_h1_ops, st)) != NULL)
			weft_h1_set_sniff(st->ts_h1, true);
	}
	if (st->ts_h1 != NULL) {
		/* Through the filter; consumed as it takes the bytes. */
		if (!ts_buf(&st->ts_rawin) ||
		    evbuffer_add(st->ts_rawin, data, len) == -1) {
			nghttp2_session_consume(s, id, len);
			return 0;
		}
		st->ts_down += len;
		ts_filter_in(st);
		return 0;
	}
	if (st->ts_connected && st->ts_out == NULL) {
		/* Nothing queued: straight to the socket, without a copy or
		 * a round through epoll for writability (two epoll_ctl and a
		 * wakeup per response); only what it does not take waits.
		 * An error is left for the writer to meet (ts_plain_wcb). */
		ssize_t w;

		do
			w = send(st->ts_fd, data, len, MSG_NOSIGNAL);
		while (w == -1 && errno == EINTR);
		if (w > 0) {
			st->ts_down += (size_t)w;
			nghttp2_session_consume(s, id, (size_t)w);
			data += w;
			len -= (size_t)w;
			if (len == 0)
				return 0;
		}
	}
	if ((st->ts_out == NULL && (st->ts_out = evbuffer_new()) == NULL) ||
	    evbuffer_add(st->ts_out, data, len) == -1) {
		nghttp2_session_consume(s, id, len);
		return 0;
	}
	st->ts_unconsumed += len;
	st->ts_down += len;
	/* Written from the loop (ts_plain_wcb); before the server's connect
	 * completes, ts_wev is already waiting. */
	if (st->ts_connected && ts_want_write(st) == -1)
		ts_reset_plain(st, WEFT_CLOSE_ERROR);
	return 0;
}

static int
tun_on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct tun_stream *st;

	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS ||
	    !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
	    (st = nghttp2_session_get_stream_user_data(s,
	    f->hd.stream_id)) == NULL || !st->ts_rst_after_send)
		return 0;
	/* The error answer is out; now end the request side (7). */
	nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id,
	    NGHTTP2_NO_ERROR);
	return 0;
}

static int
tun_on_stream_close(nghttp2_session *s, int32_t id, uint32_t err, void *ud)
{
	struct tun_conn *tc = ud;
	struct weft_tunnel *tn = tc->tc_tun;
	struct tun_stream *st;

	if ((st = nghttp2_session_get_stream_user_data(s, id)) == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(s, id, NULL);
	/* Bytes still on their way to the plain socket: the connection
	 * window must not leak (6). */
	if (st->ts_unconsumed > 0) {
		nghttp2_session_consume(s, id, st->ts_unconsumed);
		st->ts_unconsumed = 0;
	}
	TAILQ_REMOVE(&tc->tc_streams, st, ts_entry);
	tc->tc_nstreams--;
	st->ts_conn = NULL;
	st->ts_deferred = false;
	st->ts_item = st->ts_item_wait = false;
	/* Refused before it carried anything (GOAWAY, peer limit): again,
	 * on another connection (8, 9, 12). */
	if (!st->ts_server && !st->ts_resp_ok && err == NGHTTP2_REFUSED_STREAM &&
	    st->ts_up == 0 && st->ts_retries < TUN_RETRIES &&
	    !st->ts_plain_failed) {
		st->ts_retries++;
		st->ts_id = 0;
		st->ts_retry = true;
		TAILQ_INSERT_TAIL(&tn->tn_retry, st, ts_entry);
		event_active(tn->tn_retry_ev, EV_TIMEOUT, 0);
		tc_idle_check(tc);
		return 0;
	}
	if (err != NGHTTP2_NO_ERROR || (!st->ts_server && !st->ts_resp_ok) ||
	    (st->ts_server && !st->ts_resp_ok)) {
		if (err == NGHTTP2_REFUSED_STREAM)
			ts_set_reason(st, WEFT_CLOSE_NO_ROUTE);
		else if (!st->ts_resp_ok && st->ts_status == 0 && !st->ts_server)
			ts_set_reason(st, WEFT_CLOSE_ERROR);
		ts_set_reason(st, WEFT_CLOSE_RESET);
		st->ts_plain_failed = true;
		ts_finish(st);
	} else if (st->ts_rev == NULL || st->ts_out == NULL ||
	    evbuffer_get_length(st->ts_out) == 0)
		ts_finish(st);
	else
		ts_read_disable(st);	/* the write callback finishes it */
	tc_idle_check(tc);
	return 0;
}

static int
tun_on_error(nghttp2_session *s, int code, const char *msg, size_t len,
    void *ud)
{
	struct tun_conn *tc = ud;

	(void)s;
	(void)code;
	log_debug("tunnel %s: h2: %.*s", tc->tc_name, (int)len, msg);
	return 0;
}

/* --- connections ---------------------------------------------------------- */

static void
tc_schedule_send(struct tun_conn *tc)
{
	if (tc->tc_connected && !event_pending(tc->tc_send_ev, EV_TIMEOUT,
	    NULL))
		event_active(tc->tc_send_ev, EV_TIMEOUT, 0);
}

/* Send what nghttp2 has; close when the session is done. */
static void
tc_flush(struct tun_conn *tc)
{
	int rv;

	if (!tc->tc_connected || tc->tc_dead)
		return;
	rv = nghttp2_session_send(tc->tc_h2);
	if (rv == 0 && tc->tc_item_wait) {
		/* Items that found their predecessor's last frame queued:
		 * it is out now. */
		tc_item_retry(tc);
		rv = nghttp2_session_send(tc->tc_h2);
	}
	/* Always: the coalescing buffer is the worker's. */
	if (tc_tls_put(tc) == -1) {
		tc_fail(tc, "TLS write failed");
		return;
	}
	if (rv != 0) {
		tc_fail(tc, nghttp2_strerror(rv));
		return;
	}
	if (tc_write_out(tc) == -1) {
		tc_fail(tc, strerror(tc->tc_errno));
		return;
	}
	if (!nghttp2_session_want_read(tc->tc_h2) &&
	    !nghttp2_session_want_write(tc->tc_h2))
		tc->tc_closing = true;
	tc_check_close(tc);
}

static void
tc_sendcb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_conn *tc = arg;

	(void)fd;
	(void)what;
	tc_flush(tc);
	if (tc->tc_dead)
		tc_free(tc, WEFT_CLOSE_RESET);
}

static void
tc_check_close(struct tun_conn *tc)
{
	if (tc->tc_closing && evbuffer_get_length(tc->tc_out) == 0)
		tc->tc_dead = true;
}

/* Unrecoverable: mark it; freed at the next safe point. */
static void
tc_fail(struct tun_conn *tc, const char *why)
{
	char a[WEFT_SOCKADDR_STRLEN];

	if (!tc->tc_dead)
		log_info("tunnel %s %s %s (%s): %s", tc->tc_name,
		    tc->tc_server ? "from" : "to", tc->tc_server ?
		    (tc->tc_peer_id[0] ? tc->tc_peer_id : "-") : tc->tc_want,
		    weft_sockaddr_str((struct sockaddr *)&tc->tc_peer, a,
		    sizeof(a)), why);
	tc->tc_dead = true;
}

/* Client: no stream left.  Spent or GOAWAYed connections go at once, the
 * others after tu_idle_ms. */
static void
tc_idle_check(struct tun_conn *tc)
{
	if (tc->tc_nstreams > 0 || tc->tc_timer == NULL || !tc->tc_connected)
		return;
	if (!tc->tc_server && (tc->tc_goaway ||
	    !nghttp2_session_check_request_allowed(tc->tc_h2))) {
		nghttp2_session_terminate_session(tc->tc_h2, NGHTTP2_NO_ERROR);
		tc_schedule_send(tc);
		return;
	}
	tun_timer_arm(tc->tc_timer, tc->tc_server ?
	    2 * tc->tc_tun->tn_cfg.tu_idle_ms : tc->tc_tun->tn_cfg.tu_idle_ms);
}

static void
tc_timercb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_conn *tc = arg;

	(void)fd;
	(void)what;
	if (!tc->tc_connected) {
		STAT_ADD(tc->tc_tun->tn_cx->cx_stats.cs_tun_refused_handshake,
		    1);
		tc_fail(tc, "handshake timed out");
		tc_free(tc, WEFT_CLOSE_UPSTREAM_TIMEOUT);
		return;
	}
	if (tc->tc_nstreams == 0) {
		log_debug("tunnel %s: idle, closing", tc->tc_name);
		tc->tc_goaway = true;
		nghttp2_session_terminate_session(tc->tc_h2, NGHTTP2_NO_ERROR);
		tc_flush(tc);
		tc->tc_closing = true;
		tc_check_close(tc);
		if (tc->tc_dead)
			tc_free(tc, WEFT_CLOSE_EOF);
	}
}

/* --- TLS I/O ---------------------------------------------------------------
 *
 * libevent 2.1's bufferevent_openssl reads 4 KiB per readv and OpenSSL
 * without read-ahead reads each record with two read()s (header, body);
 * read-ahead stalls it (pitfalls 14, 15).  It also turns every evbuffer
 * chain into its own SSL_write, record and write() (16).  So the SSL of a
 * tunnel connection has our BIO: reads come from the worker's 64 KiB
 * scratch buffer, refilled with one read() when empty, and records go to
 * tc_out, written once the turn's work is done.  We call SSL_read until it
 * wants more than the socket has, so no record waits in OpenSSL unseen. */

static int
tun_bio_write(BIO *b, const char *data, int len)
{
	struct tun_conn *tc = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (evbuffer_add(tc->tc_out, data, (size_t)len) == -1)
		return -1;
	return len;
}

/* The scratch buffer holds another connection's bytes (it stopped with
 * ciphertext left, which tun_tls_read avoids): keep them with it. */
static void
tun_rstash(struct weft_tunnel *tn)
{
	struct tun_conn *o = tn->tn_rowner;
	size_t n = tn->tn_rlen - tn->tn_rpos;
	uint8_t *p;

	tn->tn_rowner = NULL;
	if (o == NULL || n == 0)
		return;
	if ((p = realloc(o->tc_rleft, o->tc_rleftlen + n)) == NULL) {
		tc_fail(o, "out of memory");
		event_active(o->tc_rev, EV_READ, 0);
		return;
	}
	memcpy(p + o->tc_rleftlen, tn->tn_rbuf + tn->tn_rpos, n);
	o->tc_rleft = p;
	o->tc_rleftlen += n;
	tn->tn_rpos = tn->tn_rlen = 0;
	event_active(o->tc_rev, EV_READ, 0);	/* nothing on the socket
						 * may wake it */
}

static int
tun_bio_read(BIO *b, char *out, int len)
{
	struct tun_conn *tc = BIO_get_data(b);
	struct weft_tunnel *tn = tc->tc_tun;
	size_t n;
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (tc->tc_rleftlen > 0) {
		n = (size_t)len < tc->tc_rleftlen ? (size_t)len :
		    tc->tc_rleftlen;
		memcpy(out, tc->tc_rleft, n);
		tc->tc_rleftlen -= n;
		if (tc->tc_rleftlen == 0) {
			free(tc->tc_rleft);
			tc->tc_rleft = NULL;
		} else
			memmove(tc->tc_rleft, tc->tc_rleft + n,
			    tc->tc_rleftlen);
		return (int)n;
	}
	if (tn->tn_rowner != tc) {
		if (tn->tn_rowner != NULL)
			tun_rstash(tn);
		if (tc->tc_rbudget <= 0) {
			BIO_set_retry_read(b);	/* more next turn */
			return -1;
		}
		tc->tc_rbudget--;
		do
			r = read(tc->tc_fd, tn->tn_rbuf, TUN_TLS_READ);
		while (r == -1 && errno == EINTR);
		if (r == 0) {
			tc->tc_rd_eof = true;
			return 0;
		}
		if (r == -1) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				BIO_set_retry_read(b);
			else if (tc->tc_errno == 0)
				tc->tc_errno = errno;
			return -1;
		}
		/* Short: the socket is empty, most likely; the next read()
		 * would say EAGAIN.  Epoll tells if more came. */
		if ((size_t)r < TUN_TLS_READ)
			tc->tc_rbudget = 0;
		tn->tn_rowner = tc;
		tn->tn_rpos = 0;
		tn->tn_rlen = (size_t)r;
	}
	n = tn->tn_rlen - tn->tn_rpos;
	if (n > (size_t)len)
		n = (size_t)len;
	memcpy(out, tn->tn_rbuf + tn->tn_rpos, n);
	tn->tn_rpos += n;
	if (tn->tn_rpos == tn->tn_rlen) {
		tn->tn_rowner = NULL;
		tn->tn_rpos = tn->tn_rlen = 0;
	}
	return (int)n;
}

static long
tun_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct tun_conn *tc = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_EOF:		/* an EOF, not an error (OpenSSL's
					 * IGNORE_UNEXPECTED_EOF asks) */
		return tc != NULL && tc->tc_rd_eof && tc->tc_rleftlen == 0;
	case BIO_CTRL_PENDING:
		return tc == NULL ? 0 : (long)tc->tc_rleftlen;
	case BIO_CTRL_WPENDING:
		return tc == NULL ? 0 : (long)evbuffer_get_length(tc->tc_out);
	default:
		return 0;
	}
}

static int
tun_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *tun_bio_method;

/* tc_fd, tc_out and the SSL exist: give the SSL our BIO. */
static int
tc_tls_attach(struct tun_conn *tc)
{
	BIO *b;

	if (tun_bio_method == NULL) {
		BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() |
		    BIO_TYPE_SOURCE_SINK, "weft tunnel");

		if (m == NULL || !BIO_meth_set_write(m, tun_bio_write) ||
		    !BIO_meth_set_read(m, tun_bio_read) ||
		    !BIO_meth_set_ctrl(m, tun_bio_ctrl) ||
		    !BIO_meth_set_create(m, tun_bio_create)) {
			BIO_meth_free(m);
			return -1;
		}
		tun_bio_method = m;
	}
	if ((b = BIO_new(tun_bio_method)) == NULL)
		return -1;
	BIO_set_data(b, tc);
	SSL_set_bio(tc->tc_ssl, b, b);
	return 0;
}

/* The OpenSSL error of a failed call: the last with a library, as
 * "reason" text; else the errno of the socket, else what r says. */
static void
tc_tls_error(struct tun_conn *tc, int sslerr, char *buf, size_t len)
{
	unsigned long e;
	char *c;

	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) != 0) {
			ERR_error_string_n(e, buf, len);
			if ((c = strrchr(buf, ':')) != NULL)
				memmove(buf, c + 1, strlen(c + 1) + 1);
		}
	if (buf[0] == '\0' && tc->tc_errno != 0)
		snprintf(buf, len, "%s", strerror(tc->tc_errno));
	else if (buf[0] == '\0' && (sslerr == SSL_ERROR_ZERO_RETURN ||
	    tc->tc_rd_eof))
		snprintf(buf, len, "closed by the peer");
	else if (buf[0] == '\0')
		snprintf(buf, len, "TLS error %d", sslerr);
}

/* Write what tc_out holds; watch for writability while the socket refuses
 * some.  -1: the socket failed (tc_errno). */
static int
tc_write_out(struct tun_conn *tc)
{
	int n;

	if (evbuffer_get_length(tc->tc_out) > 0) {
		do
			n = evbuffer_write(tc->tc_out, tc->tc_fd);
		while (n == -1 && errno == EINTR);
		if (n == -1 && errno != EAGAIN && errno != EWOULDBLOCK) {
			if (tc->tc_errno == 0)	/* the first says why */
				tc->tc_errno = errno;
			return -1;
		}
	}
	if (evbuffer_get_length(tc->tc_out) > 0) {
		if (!event_pending(tc->tc_wev, EV_WRITE, NULL))
			event_add(tc->tc_wev, NULL);
	} else if (event_pending(tc->tc_wev, EV_WRITE, NULL))
		event_del(tc->tc_wev);
	return 0;
}

/* The coalesced frames become records in tc_out. */
static int
tc_tls_put(struct tun_conn *tc)
{
	struct weft_tunnel *tn = tc->tc_tun;
	int n;

	if (tn->tn_wlen == 0)
		return 0;
	ERR_clear_error();
	n = SSL_write(tc->tc_ssl, tn->tn_wbuf, (int)tn->tn_wlen);
	tn->tn_wlen = 0;
	return n > 0 ? 0 : -1;
}

/* Failed socket or TLS (before or after the handshake): say why, free. */
static void
tc_tls_failed(struct tun_conn *tc, int sslerr)
{
	struct weft_conn_stats *stats = &tc->tc_tun->tn_cx->cx_stats;
	char err[768];
	bool eof;

	tc_tls_error(tc, sslerr, err, sizeof(err));
	eof = tc->tc_errno == 0 && (sslerr == SSL_ERROR_ZERO_RETURN ||
	    tc->tc_rd_eof);
	if (!tc->tc_connected) {
		if (tc->tc_check.pc_rejected) {
			STAT_ADD(stats->cs_tun_refused_identity, 1);
			snprintf(err, sizeof(err), "peer identity %s rejected: "
			    "%s", tc->tc_check.pc_got, tc->tc_check.pc_why);
			tc_fail(tc, err);
		} else {
			char why[sizeof(err) + 32];

			STAT_ADD(stats->cs_tun_refused_handshake, 1);
			snprintf(why, sizeof(why), "handshake failed: %s",
			    err);
			tc_fail(tc, why);
		}
	} else if (eof) {
		if (tc->tc_nstreams > 0)
			tc_fail(tc, "closed by the peer");
		tc->tc_dead = true;
	} else
		tc_fail(tc, err);
	tc_free(tc, WEFT_CLOSE_RESET);
}

static void	tc_handshake_done(struct tun_conn *);

/* Read what the socket has (up to TUN_TLS_READS reads), one record at a
 * time into nghttp2; then send what that asked for. */
static void
tc_tls_read(struct tun_conn *tc)
{
	struct weft_tunnel *tn = tc->tc_tun;
	ssize_t r;
	int n, err = SSL_ERROR_NONE;

	tc->tc_in_recv = true;
	tc->tc_rbudget = TUN_TLS_READS;
	ERR_clear_error();
	while (!tc->tc_dead) {
		n = SSL_read(tc->tc_ssl, tn->tn_pbuf, TUN_TLS_PLAIN);
		if (n <= 0) {
			err = SSL_get_error(tc->tc_ssl, n);
			break;
		}
		r = nghttp2_session_mem_recv(tc->tc_h2, tn->tn_pbuf,
		    (size_t)n);
		if (r < 0)
			tc_fail(tc, nghttp2_strerror((int)r));
	}
	tc->tc_in_recv = false;
	if (tn->tn_rowner == tc && tc->tc_dead) {
		tn->tn_rowner = NULL;
		tn->tn_rpos = tn->tn_rlen = 0;
	} else if (tn->tn_rowner == tc)
		tun_rstash(tn);		/* not expected: SSL left bytes */
	if (tc->tc_dead) {
		tc_free(tc, WEFT_CLOSE_RESET);
		return;
	}
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
		/* EOF or error: what was received is handled; what we
		 * still have to send cannot matter any more. */
		tc_tls_failed(tc, err);
		return;
	}
	tc_flush(tc);
	if (tc->tc_dead)
		tc_free(tc, WEFT_CLOSE_RESET);
}

/* The handshake's next step; once done, what came with it is read. */
static void
tc_tls_handshake(struct tun_conn *tc)
{
	int n, err, wr;

	tc->tc_rbudget = TUN_TLS_READS;
	ERR_clear_error();
	n = SSL_do_handshake(tc->tc_ssl);
	err = n == 1 ? SSL_ERROR_NONE : SSL_get_error(tc->tc_ssl, n);
	wr = tc_write_out(tc);		/* our flight, or an alert */
	if (n != 1 && err != SSL_ERROR_WANT_READ &&
	    err != SSL_ERROR_WANT_WRITE) {
		tc_tls_failed(tc, err);
		return;
	}
	if (wr == -1) {
		tc_tls_failed(tc, SSL_ERROR_SYSCALL);
		return;
	}
	if (n == 1) {
		tc->tc_hs_done = true;
		tc_handshake_done(tc);
		if (tc->tc_dead) {
			tc_free(tc, WEFT_CLOSE_ERROR);
			return;
		}
		tc_tls_read(tc);	/* may free tc */
	}
}

static void
tc_tls_readcb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_conn *tc = arg;

	(void)fd;
	(void)what;
	if (!tc->tc_hs_done)
		tc_tls_handshake(tc);
	else
		tc_tls_read(tc);
}

/* The socket takes more of tc_out. */
static void
tc_tls_writecb(evutil_socket_t fd, short what, void *arg)
{
	struct tun_conn *tc = arg;

	(void)fd;
	(void)what;
	if (!tc->tc_hs_done) {
		tc_tls_handshake(tc);	/* the client starts once connected */
		return;
	}
	if (tc_write_out(tc) == -1) {
		tc_tls_failed(tc, SSL_ERROR_SYSCALL);
		return;
	}
	if (tc->tc_closing) {
		tc_check_close(tc);
		if (tc->tc_dead) {
			tc_free(tc, WEFT_CLOSE_EOF);
			return;
		}
	}
	if (evbuffer_get_length(tc->tc_out) <= TUN_TLS_OUT_LOW)
		tc_schedule_send(tc);
}

/* The socket, the SSL (connect or accept state), the events. */
static int
tc_tls_setup(struct tun_conn *tc, int fd, SSL *ssl)
{
	struct event_base *base = tc->tc_tun->tn_cx->cx_base;

	tc->tc_fd = fd;
	tc->tc_ssl = ssl;
	if ((tc->tc_out = evbuffer_new()) == NULL ||
	    (tc->tc_rev = event_new(base, fd, EV_READ | EV_PERSIST,
	    tc_tls_readcb, tc)) == NULL ||
	    (tc->tc_wev = event_new(base, fd, EV_WRITE | EV_PERSIST,
	    tc_tls_writecb, tc)) == NULL || tc_tls_attach(tc) == -1)
		return -1;
	event_add(tc->tc_rev, NULL);
	return 0;
}

static int
tc_session_new(struct tun_conn *tc)
{
	struct weft_tunnel *tn = tc->tc_tun;
	nghttp2_settings_entry iv[3];
	size_t n = 0;
	int rv;

	rv = tc->tc_server ?
	    nghttp2_session_server_new2(&tc->tc_h2, tn->tn_cbs, tc,
	    tn->tn_opt) :
	    nghttp2_session_client_new2(&tc->tc_h2, tn->tn_cbs, tc,
	    tn->tn_opt);
	if (rv != 0)
		return -1;
	iv[n].settings_id = NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS;
	iv[n++].value = tc->tc_server ? TUN_SERVER_STREAMS :
	    tn->tn_cfg.tu_max_streams;
	iv[n].settings_id = NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE;
	iv[n++].value = TUN_STREAM_WINDOW;
	if (!tc->tc_server) {
		iv[n].settings_id = NGHTTP2_SETTINGS_ENABLE_PUSH;
		iv[n++].value = 0;
	}
	if (nghttp2_submit_settings(tc->tc_h2, NGHTTP2_FLAG_NONE, iv, n) != 0 ||
	    nghttp2_session_set_local_window_size(tc->tc_h2, NGHTTP2_FLAG_NONE,
	    0, TUN_CONN_WINDOW) != 0)
		return -1;
	return 0;
}

static void
tc_handshake_done(struct tun_conn *tc)
{
	struct weft_conn_stats *stats = &tc->tc_tun->tn_cx->cx_stats;
	SSL *ssl = tc->tc_ssl;
	const unsigned char *alpn = NULL;
	unsigned int alpnlen = 0;
	const char *why = NULL;
	char peer[WEFT_SOCKADDR_STRLEN];
	bool resumed = SSL_session_reused(ssl) == 1;

	SSL_get0_alpn_selected(ssl, &alpn, &alpnlen);
	if (alpnlen != 2 || memcmp(alpn, "h2", 2) != 0) {
		STAT_ADD(stats->cs_tun_refused_handshake, 1);
		tc_fail(tc, "no ALPN h2");
		return;
	}
	/* Verified in the handshake; a resumed one has it in its session. */
	if (weft_tls_check_peer(SSL_get0_peer_certificate(ssl),
	    tc->tc_server ? NULL : tc->tc_want,
	    tc->tc_server ? tc->tc_want : NULL, tc->tc_peer_id,
	    sizeof(tc->tc_peer_id), &why) == -1) {
		STAT_ADD(stats->cs_tun_refused_identity, 1);
		tc_fail(tc, why);
		return;
	}
	/* The client made its session at dial time (requests may wait in
	 * it); the server makes it now. */
	if (tc->tc_h2 == NULL && tc_session_new(tc) == -1) {
		tc_fail(tc, "nghttp2 session");
		return;
	}
	tc->tc_connected = true;
	if (resumed)
		STAT_ADD(stats->cs_tun_resumed, 1);
	if (!tc->tc_server)
		tc->tc_tun->tn_test.tt_last_resumed = resumed;
	if (tc->tc_server) {
		STAT_ADD(stats->cs_tun_accepted, 1);
		log_info("tunnel %s accepted from %s peer=%s as %s%s",
		    tc->tc_name, weft_sockaddr_str((struct sockaddr *)
		    &tc->tc_peer, peer, sizeof(peer)), tc->tc_peer_id,
		    tc->tc_local_id, resumed ? " (resumed)" : "");
	} else
		log_debug("tunnel %s to %s (%s) peer=%s%s", tc->tc_name,
		    tc->tc_node, weft_sockaddr_str((struct sockaddr *)
		    &tc->tc_peer, peer, sizeof(peer)), tc->tc_peer_id,
		    resumed ? " (resumed)" : "");
	evtimer_del(tc->tc_timer);
	if (tc->tc_tun->tn_draining)
		tc_goaway(tc, tc->tc_tun->tn_goaway_sent);
	tc_idle_check(tc);
	tc_flush(tc);
}

static struct tun_conn *
tc_alloc(struct weft_tunnel *tn, bool server)
{
	struct weft_conn_ctx *cx = tn->tn_cx;
	struct tun_conn *tc;

	if ((tc = calloc(1, sizeof(*tc))) == NULL)
		return NULL;
	tc->tc_tun = tn;
	tc->tc_server = server;
	tc->tc_fd = -1;
	TAILQ_INIT(&tc->tc_streams);
	snprintf(tc->tc_name, sizeof(tc->tc_name), "t%d-%llu", cx->cx_index,
	    (unsigned long long)++tn->tn_next_conn);
	if ((tc->tc_send_ev = event_new(cx->cx_base, -1, 0, tc_sendcb,
	    tc)) == NULL || (tc->tc_timer = evtimer_new(cx->cx_base,
	    tc_timercb, tc)) == NULL) {
		if (tc->tc_send_ev != NULL)
			event_free(tc->tc_send_ev);
		free(tc);
		return NULL;
	}
	TAILQ_INSERT_TAIL(&tn->tn_conns, tc, tc_entry);
	tn->tn_nconns++;
	return tc;
}

/* Free a connection: every stream still on it is reset (11, 20). */
static void
tc_free(struct tun_conn *tc, enum weft_close_reason r)
{
	struct weft_tunnel *tn = tc->tc_tun;
	struct tun_stream *st;

	if (tc->tc_in_recv) {
		tc->tc_dead = true;
		return;
	}
	while ((st = TAILQ_FIRST(&tc->tc_streams)) != NULL) {
		TAILQ_REMOVE(&tc->tc_streams, st, ts_entry);
		tc->tc_nstreams--;
		st->ts_conn = NULL;
		if (st->ts_unconsumed == 0 && st->ts_resp_ok &&
		    st->ts_h2_rd_eof && st->ts_rd_eof && r == WEFT_CLOSE_EOF) {
			ts_finish(st);
			continue;
		}
		ts_set_reason(st, r == WEFT_CLOSE_EOF ? WEFT_CLOSE_RESET : r);
		st->ts_plain_failed = true;
		ts_finish(st);
	}
	if (tc->tc_h2 != NULL)
		nghttp2_session_del(tc->tc_h2);
	if (tn->tn_rowner == tc) {
		tn->tn_rowner = NULL;
		tn->tn_rpos = tn->tn_rlen = 0;
	}
	if (tc->tc_ssl != NULL) {
		/* An orderly end (idle, after GOAWAY, shutdown) is said in
		 * TLS too, once everything before it is written: one try,
		 * the socket is closed right after. */
		if (tc->tc_connected && tc->tc_out != NULL &&
		    (r == WEFT_CLOSE_EOF || r == WEFT_CLOSE_SHUTDOWN) &&
		    evbuffer_get_length(tc->tc_out) == 0) {
			(void)SSL_shutdown(tc->tc_ssl);
			ERR_clear_error();
			(void)evbuffer_write(tc->tc_out, tc->tc_fd);
		}
		SSL_free(tc->tc_ssl);		/* and its BIO */
	}
	if (tc->tc_rev != NULL)
		event_free(tc->tc_rev);
	if (tc->tc_wev != NULL)
		event_free(tc->tc_wev);
	if (tc->tc_out != NULL)
		evbuffer_free(tc->tc_out);
	if (tc->tc_fd != -1)
		close(tc->tc_fd);
	free(tc->tc_rleft);
	event_free(tc->tc_send_ev);
	event_free(tc->tc_timer);
	TAILQ_REMOVE(&tn->tn_conns, tc, tc_entry);
	tn->tn_nconns--;
	free(tc);
	if (tn->tn_draining && tn->tn_nconns == 0)
		event_active(tn->tn_drain_ev, EV_TIMEOUT, 0);
}

/* --- client --------------------------------------------------------------- */

/* The pool key of a client connection: the same for the session kept from
 * it and the one offered when dialing again. */
static void
tun_sess_key(const struct tun_conn *tc, char *buf, size_t len)
{
	snprintf(buf, len, "%s|%s|%s", tc->tc_local_id, tc->tc_want,
	    tc->tc_node);
}

static struct tun_sess *
tun_sess_find(struct weft_tunnel *tn, const char *key)
{
	struct tun_sess *se;

	TAILQ_FOREACH(se, &tn->tn_sessions, se_entry)
		if (strcmp(se->se_key, key) == 0)
			return se;
	return NULL;
}

static int	tun_sess_exidx = -1;

/* OpenSSL hands us a new session (TLS 1.3: after the handshake, from the
 * NewSessionTicket): keep a copy, the last one per pool key.
 *
 * A copy, not the session itself: in TLS 1.3 the session passed here is
 * the SSL's current one, and SSL_free() on a connection that never sent
 * close_notify (libevent frees without SSL_shutdown; any abortive close)
 * goes through ssl_clear_bad_session(), which marks exactly that session
 * not_resumable.  SSL_set_session() still accepts it later, and the
 * ClientHello quietly carries no PSK: a full handshake every time (the bug
 * this replaced).  Returns 0: OpenSSL keeps its own reference. */
static int
tun_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct tun_conn *tc = SSL_get_ex_data(ssl, tun_sess_exidx);
	struct weft_tunnel *tn;
	struct tun_sess *se;
	SSL_SESSION *copy;
	char key[3 * WEFT_SPIFFE_MAX];

	if (tc == NULL || tc->tc_server || !SSL_SESSION_is_resumable(sess))
		return 0;
	tn = tc->tc_tun;
	tun_sess_key(tc, key, sizeof(key));
	if ((copy = SSL_SESSION_dup(sess)) == NULL)
		return 0;
	if ((se = tun_sess_find(tn, key)) == NULL) {
		if ((se = calloc(1, sizeof(*se))) == NULL ||
		    (se->se_key = strdup(key)) == NULL) {
			free(se);
			SSL_SESSION_free(copy);
			return 0;
		}
		TAILQ_INSERT_TAIL(&tn->tn_sessions, se, se_entry);
	} else if (se->se_sess != NULL)
		SSL_SESSION_free(se->se_sess);
	se->se_sess = copy;
	/* Made with this store's certificate and bundle; a rotation on our
	 * side drops it (tc_dial). */
	se->se_version = weft_certstore_version();
	log_debug("tunnel %s: session kept for %s", tc->tc_name, key);
	return 0;
}

static struct tun_conn *
tc_dial(struct weft_tunnel *tn, struct tun_stream *st)
{
	struct weft_conn_ctx *cx = tn->tn_cx;
	struct tun_conn *tc;
	struct tun_sess *se;
	SSL_CTX *ctx;
	SSL *ssl;
	uint32_t mark = cx->cx_cfg.rc_own_mark;
	char key[3 * WEFT_SPIFFE_MAX], err[256];
	int fd, one = 1;

	if ((ctx = weft_tls_client_ctx(tn->tn_tls, st->ts_src_id)) == NULL) {
		STAT_ADD(cx->cx_stats.cs_tun_refused_no_cert, 1);
		return NULL;
	}
	SSL_CTX_sess_set_new_cb(ctx, tun_new_session_cb);
	if ((tc = tc_alloc(tn, false)) == NULL)
		return NULL;
	snprintf(tc->tc_local_id, sizeof(tc->tc_local_id), "%s",
	    st->ts_src_id);
	snprintf(tc->tc_want, sizeof(tc->tc_want), "%s",
	    tn->tn_test.tt_expect != NULL ? tn->tn_test.tt_expect :
	    st->ts_dst_id);
	snprintf(tc->tc_node, sizeof(tc->tc_node), "%s", st->ts_node);
	tun_sa_get(&st->ts_dial, &tc->tc_peer);
	tc->tc_check.pc_want_id = tc->tc_want;

	fd = socket(st->ts_dial.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1)
		goto fail;
	if (mark != 0 && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark,
	    sizeof(mark)) == -1) {
		close(fd);
		goto fail;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, &st->ts_dial.sa, st->ts_dial_len) ==
	    -1 && errno != EINPROGRESS) {
		log_info("tunnel %s: connect to %s: %s", tc->tc_name,
		    st->ts_node, strerror(errno));
		close(fd);
		goto fail;
	}
	if ((ssl = SSL_new(ctx)) == NULL) {
		close(fd);
		goto fail;
	}
	weft_tls_set_peer_check(ssl, &tc->tc_check);
	SSL_set_ex_data(ssl, tun_sess_exidx, tc);
	tun_sess_key(tc, key, sizeof(key));
	if ((se = tun_sess_find(tn, key)) != NULL && se->se_sess != NULL) {
		X509 *peer = SSL_SESSION_get0_peer(se->se_sess);

		/* Not across a rotation on our side, nor past the server
		 * certificate's end (it was verified in the full handshake
		 * only). */
		if (se->se_version != weft_certstore_version() ||
		    !SSL_SESSION_is_resumable(se->se_sess) || peer == NULL ||
		    X509_cmp_current_time(X509_get0_notAfter(peer)) <= 0) {
			SSL_SESSION_free(se->se_sess);
			se->se_sess = NULL;
		} else if (SSL_set_session(ssl, se->se_sess) != 1)
			log_debug("tunnel %s: cannot resume", tc->tc_name);
	}
	/* The socket is already connecting: the handshake starts once it
	 * is writable (tc_tls_writecb). */
	SSL_set_connect_state(ssl);
	if (tc_tls_setup(tc, fd, ssl) == -1)
		goto fail;
	event_add(tc->tc_wev, NULL);
	/* nghttp2 exists before the handshake ends so that requests can be
	 * submitted; nothing is sent until then (tc_connected). */
	if (tc_session_new(tc) == -1)
		goto fail;
	tun_timer_arm(tc->tc_timer, tn->tn_cfg.tu_handshake_ms);
	STAT_ADD(cx->cx_stats.cs_tun_dialed, 1);
	return tc;
fail:
	log_info("tunnel %s: cannot dial %s: %s", tc->tc_name, st->ts_node,
	    weft_tls_error(err, sizeof(err)));
	tc_free(tc, WEFT_CLOSE_ERROR);
	return NULL;
}

/* A pooled connection with room for one more stream, or a new one (always,
 * with pooling off). */
static struct tun_conn *
tc_pool_get(struct weft_tunnel *tn, struct tun_stream *st)
{
	struct tun_conn *tc;
	uint32_t lim, peer;

	if (!tn->tn_cfg.tu_pool)
		return tc_dial(tn, st);
	TAILQ_FOREACH(tc, &tn->tn_conns, tc_entry) {
		if (tc->tc_server || tc->tc_goaway || tc->tc_closing ||
		    tc->tc_dead)
			continue;
		if (strcmp(tc->tc_local_id, st->ts_src_id) != 0 ||
		    strcmp(tc->tc_node, st->ts_node) != 0 ||
		    strcmp(tc->tc_want, tn->tn_test.tt_expect != NULL ?
		    tn->tn_test.tt_expect : st->ts_dst_id) != 0)
			continue;
		if (!nghttp2_session_check_request_allowed(tc->tc_h2)) {
			/* Ids spent or GOAWAY: retire it (10). */
			tc->tc_goaway = true;
			tc_idle_check(tc);
			continue;
		}
		lim = tn->tn_cfg.tu_max_streams;
		if (tc->tc_got_settings) {
			peer = nghttp2_session_get_remote_settings(tc->tc_h2,
			    NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
			if (peer < lim)
				lim = peer;
		}
		if (tc->tc_nstreams < lim)
			return tc;
	}
	return tc_dial(tn, st);
}

static int
ts_submit(struct tun_stream *st)
{
	struct weft_tunnel *tn = st->ts_tun;
	struct tun_conn *tc;
	char auth[64], orig[64];
	int32_t id;
	nghttp2_nv nv[4];

	if ((tc = tc_pool_get(tn, st)) == NULL)
		return -1;
	tun_authority(&st->ts_target, auth, sizeof(auth));
	tun_authority(&st->ts_src, orig, sizeof(orig));
#define NV(n, v) (nghttp2_nv){ (uint8_t *)(n), (uint8_t *)(v), strlen(n), \
	strlen(v), NGHTTP2_NV_FLAG_NONE }
	/* Pseudo-headers first, no :scheme / :path (pitfall 1). */
	nv[0] = NV(":method", "CONNECT");
	nv[1] = NV(":authority", auth);
	nv[2] = NV("x-weft-request-id", st->ts_name);
	nv[3] = NV("x-weft-original-source", orig);
#undef NV
	/* No DATA item yet: ts_resume submits one once the 200 is in and
	 * the app has sent something. */
	if ((id = nghttp2_submit_headers(tc->tc_h2, NGHTTP2_FLAG_NONE, -1,
	    NULL, nv, 4, st)) < 0) {
		log_info("conn %s: submit on %s: %s", st->ts_name, tc->tc_name,
		    nghttp2_strerror(id));
		tc->tc_goaway = true;
		tc_idle_check(tc);
		return -1;
	}
	st->ts_id = id;
	st->ts_conn = tc;
	TAILQ_INSERT_TAIL(&tc->tc_streams, st, ts_entry);
	tc->tc_nstreams++;
	/* Pooling off: this stream is the connection's only one; when it
	 * ends, tc_idle_check says GOAWAY and the connection closes, as a
	 * retired pooled one does. */
	if (!tn->tn_cfg.tu_pool)
		tc->tc_goaway = true;
	evtimer_del(tc->tc_timer);
	if (!tc->tc_connected)
		tun_timer_arm(tc->tc_timer, tn->tn_cfg.tu_handshake_ms);
	tc_schedule_send(tc);
	return 0;
}

static void
tun_retrycb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_tunnel *tn = arg;
	struct tun_stream *st;

	(void)fd;
	(void)what;
	while ((st = TAILQ_FIRST(&tn->tn_retry)) != NULL) {
		TAILQ_REMOVE(&tn->tn_retry, st, ts_entry);
		st->ts_retry = false;
		log_debug("conn %s: refused stream, retry %d", st->ts_name,
		    st->ts_retries);
		if (ts_submit(st) == -1) {
			ts_set_reason(st, WEFT_CLOSE_NO_ROUTE);
			ts_finish(st);
		}
	}
}

void
weft_tunnel_outbound(struct weft_tunnel *tn, int fd, struct evbuffer *pending,
    bool rd_eof, const char *id, const struct sockaddr_storage *src,
    const struct sockaddr_storage *dst, const struct weft_decision *d,
    const struct timespec *start)
{
	weft_tunnel_outbound_hooked(tn, fd, pending, rd_eof, id, src, dst, d,
	    start, NULL, false);
}

void
weft_tunnel_outbound_hooked(struct weft_tunnel *tn, int fd,
    struct evbuffer *pending, bool rd_eof, const char *id,
    const struct sockaddr_storage *src, const struct sockaddr_storage *dst,
    const struct weft_decision *d, const struct timespec *start,
    const struct weft_conn_hook *hook, bool quiet)
{
	struct tun_stream *st;
	int one = 1;

	if ((st = ts_new(tn, false)) == NULL) {
		log_warn("conn %s: tunnel stream", id);
		tun_linger0(fd);
		close(fd);
		STAT_ADD(tn->tn_cx->cx_stats.cs_closed[WEFT_CLOSE_ERROR], 1);
		if (hook != NULL && hook->hk_ready != NULL)
			hook->hk_ready(hook->hk_arg, WEFT_CLOSE_ERROR);
		if (hook != NULL && hook->hk_done != NULL)
			hook->hk_done(hook->hk_arg);
		return;
	}
	if (hook != NULL)
		st->ts_hook = *hook;
	snprintf(st->ts_name, sizeof(st->ts_name), "%s", id);
	tun_sa_set(&st->ts_src, src);
	tun_sa_set(&st->ts_dst, dst);
	/* The pod the decision chose, not the original destination: for a
	 * service that is its VIP, which the peer node cannot connect to. */
	if (d->d_upstream_len > 0)
		tun_sa_set(&st->ts_target, &d->d_upstream);
	else
		tun_sa_set(&st->ts_target, dst);
	if (tn->tn_test.tt_dial != NULL) {
		tun_sa_set(&st->ts_dial, tn->tn_test.tt_dial);
		st->ts_dial_len = st->ts_dial.sa.sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
	} else {
		tun_sa_set(&st->ts_dial, &d->d_tunnel);
		st->ts_dial_len = d->d_tunnel_len;
	}
	if (ts_set_strings(st, d->d_src_id, d->d_dst_id, d->d_node,
	    d->d_route) == -1) {
		log_warn("conn %s: tunnel stream", id);
		tun_linger0(fd);
		close(fd);
		ts_set_reason(st, WEFT_CLOSE_ERROR);
		ts_finish(st);
		return;
	}
	st->ts_start = *start;
	/* quiet: the router records this side per request */
	if (!quiet)
		st->ts_mflow = weft_observe_flow(tn->tn_cx, NULL,
		    WEFT_METRICS_OUTBOUND, (const struct sockaddr *)src, NULL,
		    NULL, (const struct sockaddr *)dst,
		    (const struct sockaddr *)&d->d_upstream);
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (ts_attach(st, fd) == -1) {
		close(fd);
		ts_set_reason(st, WEFT_CLOSE_ERROR);
		ts_finish(st);
		return;
	}
	st->ts_connected = true;
	if (evbuffer_get_length(pending) > 0) {
		if ((st->ts_in = evbuffer_new()) == NULL) {
			ts_set_reason(st, WEFT_CLOSE_ERROR);
			ts_finish(st);
			return;
		}
		evbuffer_add_buffer(st->ts_in, pending);
	}
	st->ts_rd_eof = rd_eof;
	if (ts_submit(st) == -1) {
		ts_set_reason(st, WEFT_CLOSE_NO_ROUTE);
		ts_finish(st);
		return;
	}
	/* Reading before the 200 only fills ts_in (bounded); it lets us see
	 * the app's FIN or reset early. */
	ts_read_enable(st);
}

/* --- server --------------------------------------------------------------- */

int
weft_tunnel_accept(struct weft_tunnel *tn, int fd)
{
	struct weft_conn_ctx *cx = tn->tn_cx;
	const struct weft_snapshot *snap;
	const struct weft_snap_pod *pod;
	struct sockaddr_storage local;
	struct tun_conn *tc;
	struct weft_gen *g;
	struct weft_ip ip;
	socklen_t len;
	SSL_CTX *ctx;
	SSL *ssl;
	char a[WEFT_SOCKADDR_STRLEN];
	const char *why = NULL;

	if ((tc = tc_alloc(tn, true)) == NULL) {
		close(fd);
		return -1;
	}
	{
		int one = 1;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one,
		    sizeof(one));
	}
	len = sizeof(tc->tc_peer);
	(void)getpeername(fd, (struct sockaddr *)&tc->tc_peer, &len);
	/* TPROXY: the original destination is our local address. */
	len = sizeof(local);
	if (getsockname(fd, (struct sockaddr *)&local, &len) == -1 ||
	    weft_ip_from_sockaddr((struct sockaddr *)&local, &ip, NULL) == -1) {
		close(fd);
		tc_free(tc, WEFT_CLOSE_ERROR);
		return 0;
	}
	g = tun_gen(tn);
	snap = g != NULL ? weft_gen_snapshot(g) : NULL;
	pod = g != NULL ? weft_gen_pod_by_ip(g, &ip) : NULL;
	if (pod == NULL)
		why = "not a pod";
	else if (!pod->meshed || !weft_gen_pod_is_local(g, pod))
		why = "not a local meshed pod";
	else if (snap->trust_domain == NULL || weft_spiffe_format(
	    snap->trust_domain, pod->namespace, pod->service_account,
	    tc->tc_local_id, sizeof(tc->tc_local_id)) == NULL)
		why = "no identity";
	if (why == NULL)
		snprintf(tc->tc_want, sizeof(tc->tc_want), "%s",
		    snap->trust_domain);
	weft_gen_unref(g);
	if (why == NULL && (ctx = weft_tls_server_ctx(tn->tn_tls,
	    tc->tc_local_id)) == NULL)
		why = "no certificate";
	if (why != NULL) {
		STAT_ADD(cx->cx_stats.cs_tun_refused_no_cert, 1);
		log_info("tunnel %s from %s to %s refused: %s", tc->tc_name,
		    weft_sockaddr_str((struct sockaddr *)&tc->tc_peer, a,
		    sizeof(a)), weft_ip_str(&ip, a, sizeof(a)), why);
		tun_linger0(fd);
		close(fd);
		tc_free(tc, WEFT_CLOSE_DENIED);
		return 0;
	}
	tc->tc_check.pc_want_td = tc->tc_want;
	if ((ssl = SSL_new(ctx)) == NULL) {
		close(fd);
		tc_free(tc, WEFT_CLOSE_ERROR);
		return 0;
	}
	weft_tls_set_peer_check(ssl, &tc->tc_check);
	SSL_set_accept_state(ssl);
	if (tc_tls_setup(tc, fd, ssl) == -1) {
		tc_free(tc, WEFT_CLOSE_ERROR);
		return 0;
	}
	tun_timer_arm(tc->tc_timer, tn->tn_cfg.tu_handshake_ms);
	return 0;
}

/* --- the tunnel ----------------------------------------------------------- */

struct weft_tunnel *
weft_tunnel_new(struct weft_conn_ctx *cx, const struct weft_tunnel_config *cfg)
{
	struct weft_tunnel *tn;
	nghttp2_session_callbacks *cbs;

	if (tun_sess_exidx == -1)
		tun_sess_exidx = SSL_get_ex_new_index(0,
		    (void *)"weft tunnel conn", NULL, NULL, NULL);
	if ((tn = calloc(1, sizeof(*tn))) == NULL)
		return NULL;
	tn->tn_cx = cx;
	tn->tn_cfg = *cfg;
	if (tn->tn_cfg.tu_max_streams == 0)
		tn->tn_cfg.tu_max_streams = 100;
	if (tn->tn_cfg.tu_idle_ms <= 0)
		tn->tn_cfg.tu_idle_ms = 60000;
	if (tn->tn_cfg.tu_handshake_ms <= 0)
		tn->tn_cfg.tu_handshake_ms = 10000;
	if (tn->tn_cfg.tu_drain_ms <= 0)
		tn->tn_cfg.tu_drain_ms = 2000;
	TAILQ_INIT(&tn->tn_conns);
	TAILQ_INIT(&tn->tn_streams);
	TAILQ_INIT(&tn->tn_retry);
	TAILQ_INIT(&tn->tn_sessions);
	if ((tn->tn_rbuf = malloc(TUN_TLS_READ)) == NULL ||
	    (tn->tn_pbuf = malloc(TUN_TLS_PLAIN)) == NULL ||
	    (tn->tn_wbuf = malloc(TUN_TLS_WBUF)) == NULL ||
	    (tn->tn_tls = weft_tls_cache_new()) == NULL ||
	    (tn->tn_retry_ev = event_new(cx->cx_base, -1, 0, tun_retrycb,
	    tn)) == NULL || (tn->tn_drain_ev = evtimer_new(cx->cx_base,
	    tun_draincb, tn)) == NULL ||
	    nghttp2_session_callbacks_new(&cbs) != 0)
		goto fail;
	tn->tn_cbs = cbs;
	nghttp2_session_callbacks_set_send_callback(cbs, tun_send_cb);
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs,
	    tun_on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, tun_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs,
	    tun_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs,
	    tun_on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs,
	    tun_on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs,
	    tun_on_stream_close);
	nghttp2_session_callbacks_set_error_callback2(cbs, tun_on_error);
	if (nghttp2_option_new(&tn->tn_opt) != 0)
		goto fail;
	nghttp2_option_set_no_auto_window_update(tn->tn_opt, 1);
	cx->cx_tunnel = tn;
	return tn;
fail:
	weft_tunnel_free(tn);
	return NULL;
}

/* Server: a shutdown notice first, then (final) the real GOAWAY with the
 * last stream we processed, so that streams the client sent meanwhile are
 * still served (pitfall 9).  Client: no new stream; GOAWAY once idle. */
static void
tc_goaway(struct tun_conn *tc, bool final)
{
	if (!tc->tc_connected || tc->tc_dead || tc->tc_closing)
		return;
	if (!tc->tc_server) {
		tc->tc_goaway = true;
		tc_idle_check(tc);
		return;
	}
	if (final)
		(void)nghttp2_submit_goaway(tc->tc_h2, NGHTTP2_FLAG_NONE,
		    nghttp2_session_get_last_proc_stream_id(tc->tc_h2),
		    NGHTTP2_NO_ERROR, NULL, 0);
	else
		(void)nghttp2_submit_shutdown_notice(tc->tc_h2);
	tc_schedule_send(tc);
}

static void
tun_draincb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_tunnel *tn = arg;
	struct tun_conn *tc, *next;
	void (*done)(void *);
	double ms = tun_ms_since(&tn->tn_drain_start);
	int left;

	(void)fd;
	(void)what;
	if (!tn->tn_draining)
		return;
	if (tn->tn_nconns == 0 || ms >= tn->tn_cfg.tu_drain_ms) {
		if (tn->tn_nconns > 0)
			log_info("tunnel: %zu connections, %zu streams still "
			    "open after %.0f ms", tn->tn_nconns,
			    tn->tn_nstreams, ms);
		else
			log_debug("tunnel: drained in %.0f ms", ms);
		tn->tn_draining = false;
		done = tn->tn_drain_done;
		tn->tn_drain_done = NULL;
		if (done != NULL)
			done(tn->tn_drain_arg);
		return;
	}
	if (!tn->tn_goaway_sent && ms >= TUN_GOAWAY_DELAY_MS) {
		tn->tn_goaway_sent = true;
		for (tc = TAILQ_FIRST(&tn->tn_conns); tc != NULL; tc = next) {
			next = TAILQ_NEXT(tc, tc_entry);
			if (tc->tc_server)
				tc_goaway(tc, true);
		}
	}
	left = tn->tn_goaway_sent ? tn->tn_cfg.tu_drain_ms - (int)ms :
	    TUN_GOAWAY_DELAY_MS - (int)ms;
	tun_timer_arm(tn->tn_drain_ev, left > 1 ? left : 1);
}

void
weft_tunnel_drain(struct weft_tunnel *tn, void (*done)(void *), void *arg)
{
	struct tun_conn *tc, *next;

	tn->tn_draining = true;
	tn->tn_goaway_sent = false;
	tn->tn_drain_done = done;
	tn->tn_drain_arg = arg;
	clock_gettime(CLOCK_MONOTONIC, &tn->tn_drain_start);
	if (tn->tn_nconns > 0)
		log_info("tunnel: draining %zu connections, %zu streams",
		    tn->tn_nconns, tn->tn_nstreams);
	/* tc_goaway may free nothing here (sends are deferred), but walk
	 * safely anyway. */
	for (tc = TAILQ_FIRST(&tn->tn_conns); tc != NULL; tc = next) {
		next = TAILQ_NEXT(tc, tc_entry);
		tc_goaway(tc, false);
	}
	if (tn->tn_nconns == 0)
		event_active(tn->tn_drain_ev, EV_TIMEOUT, 0);
	else
		tun_timer_arm(tn->tn_drain_ev, TUN_GOAWAY_DELAY_MS);
}

void
weft_tunnel_shutdown(struct weft_tunnel *tn)
{
	struct tun_conn *tc;
	struct tun_stream *st;

	/* A drain in progress ends here, without its done callback. */
	tn->tn_draining = false;
	tn->tn_drain_done = NULL;
	if (tn->tn_drain_ev != NULL)
		evtimer_del(tn->tn_drain_ev);
	while ((tc = TAILQ_FIRST(&tn->tn_conns)) != NULL) {
		tc->tc_in_recv = false;
		tc_free(tc, WEFT_CLOSE_SHUTDOWN);
	}
	while ((st = TAILQ_FIRST(&tn->tn_streams)) != NULL) {
		ts_set_reason(st, WEFT_CLOSE_SHUTDOWN);
		ts_finish(st);
	}
}

void
weft_tunnel_free(struct weft_tunnel *tn)
{
	struct tun_sess *se;

	if (tn == NULL)
		return;
	weft_tunnel_shutdown(tn);
	while ((se = TAILQ_FIRST(&tn->tn_sessions)) != NULL) {
		TAILQ_REMOVE(&tn->tn_sessions, se, se_entry);
		SSL_SESSION_free(se->se_sess);
		free(se->se_key);
		free(se);
	}
	if (tn->tn_retry_ev != NULL)
		event_free(tn->tn_retry_ev);
	if (tn->tn_drain_ev != NULL)
		event_free(tn->tn_drain_ev);
	if (tn->tn_cbs != NULL)
		nghttp2_session_callbacks_del(tn->tn_cbs);
	if (tn->tn_opt != NULL)
		nghttp2_option_del(tn->tn_opt);
	weft_tls_cache_free(tn->tn_tls);
	free(tn->tn_rbuf);
	free(tn->tn_pbuf);
	free(tn->tn_wbuf);
	if (tn->tn_cx != NULL && tn->tn_cx->cx_tunnel == tn)
		tn->tn_cx->cx_tunnel = NULL;
	free(tn);
}

bool
weft_tunnel_can_dial(struct weft_tunnel *tn, const char *id)
{
	return weft_tls_client_ctx(tn->tn_tls, id) != NULL;
}

size_t
weft_tunnel_nconns(const struct weft_tunnel *tn)
{
	return tn->tn_nconns;
}

size_t
weft_tunnel_nstreams(const struct weft_tunnel *tn)
{
	return tn->tn_nstreams;
}

struct weft_tunnel_test *
weft_tunnel_test_hooks(struct weft_tunnel *tn)
{
	return &tn->tn_test;
}

/* The generation changed: server streams let in at L4 that g no longer
 * lets in are reset; streams decided per request need nothing. */
void
weft_tunnel_recheck(struct weft_tunnel *tn, const struct weft_gen *g)
{
	struct tun_stream *st, *next;
	struct weft_policy_why why;
	struct weft_flow *fl;
	enum weft_policy_verdict v;

	for (st = TAILQ_FIRST(&tn->tn_streams); st != NULL; st = next) {
		next = TAILQ_NEXT(st, ts_all);
		if (!st->ts_server || (st->ts_h1 != NULL &&
		    !weft_h1_is_opaque(st->ts_h1)) || !st->ts_resp_ok ||
		    st->ts_plain_failed || st->ts_conn == NULL)
			continue;
		if ((fl = st->ts_flow) == NULL && (fl = ts_flow_make(st)) == NULL)
			continue;
		v = weft_flow_check(fl, g, &why);
		if (fl != st->ts_flow)
			weft_flow_free(fl);
		if (v == WEFT_POLICY_ALLOW)
			continue;
		log_info("conn %s: no longer allowed (%s); closing",
		    st->ts_name, why.reason);
		/* ts_conn is set: this only submits RST_STREAM; the stream
		 * goes in on_stream_close, so next stays valid. */
		ts_reset_plain(st, WEFT_CLOSE_DENIED);
	}
}
