/* Unit tests for proxy/: the relay state machine (conn.c) driven over
 * loopback TCP pairs in one event_base, the routing decision (decide.c)
 * table-driven over a hand-built generation, the accept path with a fake
 * original destination, and a start/stop of the workers.  No root needed.
 *
 *   client C ==tcp== D [relay] U ==tcp== server S
 *
 * The test plays C and S with non-blocking sockets between turns of the
 * event loop (run_until). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/event.h>

#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/proxy.h"
#include "weft/snapshot.h"
#include "proxy/proxy-int.h"
#include "../../tap.h"

#define MiB		(1024 * 1024)
#define ONE_READ	16384	/* libevent's largest single read */

static struct event_base *base;
static struct weft_conn_ctx cx;
static struct weft_conn_summary last;
static char last_id[32];
static int nclosed;

/* --- plumbing ------------------------------------------------------------- */

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void
on_close(const struct weft_conn_summary *s, void *arg)
{
	(void)arg;
	last = *s;
	snprintf(last_id, sizeof(last_id), "%s", s->id);
	last.id = last_id;
	nclosed++;
}

static void
ctx_setup(size_t high, int hold_ms, int drain_ms)
{
	struct weft_relay_config rc;

	if (cx.cx_base != NULL) {
		/* Nothing may survive a test; close leftovers loudly. */
		if (cx.cx_nconns > 0)
			diag("%zu connections left over", cx.cx_nconns);
		weft_conn_ctx_shutdown(&cx);
	}
	weft_relay_config_defaults(&rc);
	if (high)
		rc.rc_buffer_high = high;
	if (hold_ms)
		rc.rc_hold_ms = hold_ms;
	if (drain_ms)
		rc.rc_drain_timeout_ms = drain_ms;
	rc.rc_transparent = false;	/* no root: no IP_TRANSPARENT */
	rc.rc_own_mark = 0;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_OUTBOUND;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_INBOUND;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_TUNNEL;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_ADMIN;
	weft_conn_ctx_init(&cx, base, 1, &rc);
	cx.cx_on_close = on_close;
	nclosed = 0;
	memset(&last, 0, sizeof(last));
}

static void
set_bufs(int fd, int sz)
{
	if (sz > 0) {
		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	}
}

static void
nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static int
listen_lo(uint16_t *port, int bufsz)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd, one = 1;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	set_bufs(fd, bufsz);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(fd, 16) == -1)
		return -1;
	getsockname(fd, (struct sockaddr *)&sin, &len);
	*port = ntohs(sin.sin_port);
	return fd;
}

static int
connect_lo(uint16_t port, int bufsz)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	set_bufs(fd, bufsz);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons(port);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A connected pair: *a connected, *b accepted; both non-blocking. */
static int
tcp_pair(int *a, int *b, int bufsz)
{
	uint16_t port;
	int l = listen_lo(&port, bufsz);

	if (l == -1 || (*a = connect_lo(port, bufsz)) == -1)
		return -1;
	*b = accept(l, NULL, NULL);
	close(l);
	if (*b == -1)
		return -1;
	nonblock(*a);
	nonblock(*b);
	return 0;
}

static void
rst_close(int fd)
{
	struct linger lg = { 1, 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static uint64_t
fnv(uint64_t h, const uint8_t *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define FNV0	0xcbf29ce484222325ULL

static uint8_t *
pattern(size_t n, uint32_t seed)
{
	uint8_t *b = malloc(n);
	size_t i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		b[i] = (uint8_t)(seed >> 16);
	}
	return b;
}

/* One test-side endpoint. */
struct peer {
	int		 fd;
	const uint8_t	*tx;		/* what to send */
	size_t		 tx_len, tx_off;
	bool		 tx_shut;	/* shutdown(SHUT_WR) after tx */
	bool		 tx_done;
	bool		 tx_blocked;	/* saw EAGAIN */
	bool		 rx_on;		/* reading */
	uint64_t	 rx;
	uint64_t	 rx_hash;
	bool		 rx_eof;
	int		 rx_err;
};

static void
peer_init(struct peer *p, int fd)
{
	memset(p, 0, sizeof(*p));
	p->fd = fd;
	p->rx_hash = FNV0;
	p->rx_on = true;
}

static bool
peer_step(struct peer *p)
{
	uint8_t buf[65536];
	bool progress = false;
	ssize_t n;

	if (p->fd == -1)
		return false;
	if (p->tx != NULL && p->tx_off < p->tx_len) {
		size_t want = p->tx_len - p->tx_off;

		if (want > sizeof(buf))
			want = sizeof(buf);
		n = send(p->fd, p->tx + p->tx_off, want, MSG_NOSIGNAL);
		if (n > 0) {
			p->tx_off += (size_t)n;
			progress = true;
		} else if (n == -1 && errno == EAGAIN)
			p->tx_blocked = true;
	}
	if (p->tx != NULL && p->tx_off == p->tx_len && p->tx_shut &&
	    !p->tx_done) {
		shutdown(p->fd, SHUT_WR);
		p->tx_done = true;
		progress = true;
	}
	while (p->rx_on && !p->rx_eof && p->rx_err == 0) {
		n = recv(p->fd, buf, sizeof(buf), 0);
		if (n > 0) {
			p->rx += (uint64_t)n;
			p->rx_hash = fnv(p->rx_hash, buf, (size_t)n);
			progress = true;
		} else if (n == 0) {
			p->rx_eof = true;
			progress = true;
		} else {
			if (errno != EAGAIN)
				p->rx_err = errno;
			break;
		}
	}
	return progress;
}

typedef bool (*cond_fn)(void *);

/* Turn the loop and the two peers until cond or timeout_ms; returns cond. */
static bool
run_until(struct peer *a, struct peer *b, cond_fn cond, void *arg,
    double timeout_ms)
{
	double end = now_ms() + timeout_ms;
	bool progress;

	while (!cond(arg)) {
		if (now_ms() > end)
			return false;
		event_base_loop(base, EVLOOP_NONBLOCK);
		progress = false;
		if (a != NULL)
			progress |= peer_step(a);
		if (b != NULL)
			progress |= peer_step(b);
		if (!progress)
			usleep(200);
	}
	return true;
}

struct two {
	struct peer *a, *b;
	int closed;
};

static bool
cond_both_eof_closed(void *arg)
{
	struct two *t = arg;

	return t->a->rx_eof && t->b->rx_eof && nclosed >= t->closed;
}

/* --- 1. data both ways ---------------------------------------------------- */

static void
test_bulk(void)
{
	struct peer c, s;
	struct two t = { &c, &s, 1 };
	uint8_t *up = pattern(10 * MiB, 1), *down = pattern(10 * MiB, 2);
	int fc, fd, fu, fs;
	struct weft_conn *conn;

	diag("1. 10 MiB both ways, intact");
	ctx_setup(0, 0, 0);
	if (tcp_pair(&fc, &fd, 0) == -1 || tcp_pair(&fu, &fs, 0) == -1) {
		ok(0, "socket pairs");
		return;
	}
	conn = weft_conn_new_relay(&cx, fd, fu);
	ok(conn != NULL, "relay created");
	is_str(conn ? weft_conn_id(conn) : NULL, "w1-1", "connection id");
	peer_init(&c, fc);
	peer_init(&s, fs);
	c.tx = up;
	c.tx_len = 10 * MiB;
	c.tx_shut = true;
	s.tx = down;
	s.tx_len = 10 * MiB;
	s.tx_shut = true;
	ok(run_until(&c, &s, cond_both_eof_closed, &t, 30000),
	    "both sides saw EOF and the relay closed");
	is_int(s.rx, 10 * MiB, "server received 10 MiB");
	ok(s.rx_hash == fnv(FNV0, up, 10 * MiB), "server checksum matches");
	is_int(c.rx, 10 * MiB, "client received 10 MiB");
	ok(c.rx_hash == fnv(FNV0, down, 10 * MiB), "client checksum matches");
	is_str(weft_close_reason_name(last.reason), "eof", "reason eof");
	is_int(last.sent, 10 * MiB, "sent counted");
	is_int(last.received, 10 * MiB, "received counted");
	close(fc);
	close(fs);
	free(up);
	free(down);
}

/* --- 2. half-close -------------------------------------------------------- */

static bool
cond_rx_eof(void *arg)
{
	return ((struct peer *)arg)->rx_eof;
}

static void
test_half_close(void)
{
	struct peer c, s;
	struct two t = { &c, &s, 1 };
	static const char req[] = "GET / HTTP/1.0\r\n\r\n";
	uint8_t *reply = pattern(1 * MiB, 3);
	int fc, fd, fu, fs;

	diag("2. half-close: client shuts its write side, server replies");
	ctx_setup(0, 0, 0);
	if (tcp_pair(&fc, &fd, 0) == -1 || tcp_pair(&fu, &fs, 0) == -1) {
		ok(0, "socket pairs");
		return;
	}
	ok(weft_conn_new_relay(&cx, fd, fu) != NULL, "relay created");
	peer_init(&c, fc);
	peer_init(&s, fs);
	c.tx = (const uint8_t *)req;
	c.tx_len = sizeof(req) - 1;
	c.tx_shut = true;
	ok(run_until(&c, &s, cond_rx_eof, &s, 5000),
	    "server sees the client's EOF");
	is_int(s.rx, sizeof(req) - 1, "server got the whole request first");
	is_int(nclosed, 0, "connection still open after one direction ended");
	s.tx = reply;
	s.tx_len = 1 * MiB;
	s.tx_shut = true;
	ok(run_until(&c, &s, cond_both_eof_closed, &t, 10000),
	    "client gets the reply and EOF");
	is_int(c.rx, 1 * MiB, "client received the full reply");
	ok(c.rx_hash == fnv(FNV0, reply, 1 * MiB), "reply checksum matches");
	is_str(weft_close_reason_name(last.reason), "eof", "reason eof");
	close(fc);
	close(fs);
	free(reply);
}

/* --- 3. backpressure ------------------------------------------------------ */

struct bp {
	struct weft_conn *conn;
	struct peer *c;
	size_t max_up_out, max_down_in, max_up_in;
	double stalled_since;
	size_t last_off;
};

static bool
cond_bp_stalled(void *arg)
{
	struct bp *b = arg;
	size_t di, dout, ui, uo;

	weft_conn_buffered(b->conn, &di, &dout, &ui, &uo);
	if (uo > b->max_up_out)
		b->max_up_out = uo;
	if (di > b->max_down_in)
		b->max_down_in = di;
	if (ui > b->max_up_in)
		b->max_up_in = ui;
	if (b->c->tx_off != b->last_off) {
		b->last_off = b->c->tx_off;
		b->stalled_since = now_ms();
		return false;
	}
	/* The sender made no progress for 300 ms: it is blocked. */
	return b->c->tx_blocked && now_ms() - b->stalled_since > 300;
}

static bool
cond_rx_all(void *arg)
{
	struct peer *p = arg;

	return p->rx >= p->tx_len;	/* tx_len of the *other* side, below */
}

static void
test_backpressure(void)
{
	struct peer c, s;
	struct two t = { &c, &s, 1 };
	struct bp b;
	const size_t high = 64 * 1024, total = 8 * MiB;
	uint8_t *data = pattern(total, 4);
	int fc, fd, fu, fs;

	diag("3. backpressure: a receiver that does not read");
	ctx_setup(high, 0, 0);
	if (tcp_pair(&fc, &fd, 32768) == -1 ||
	    tcp_pair(&fu, &fs, 32768) == -1) {
		ok(0, "socket pairs");
		return;
	}
	memset(&b, 0, sizeof(b));
	b.conn = weft_conn_new_relay(&cx, fd, fu);
	ok(b.conn != NULL, "relay created");
	peer_init(&c, fc);
	peer_init(&s, fs);
	s.rx_on = false;		/* the server does not read */
	c.tx = data;
	c.tx_len = total;
	b.c = &c;
	b.stalled_since = now_ms();
	ok(run_until(&c, &s, cond_bp_stalled, &b, 10000),
	    "the sender's writes block");
	diag("sender wrote %zu of %zu bytes before blocking; relay held "
	    "up to %zu (upstream output), %zu (downstream input)",
	    c.tx_off, total, b.max_up_out, b.max_down_in);
	ok(c.tx_off < total, "not everything could be written");
	ok(b.max_up_out <= high + ONE_READ,
	    "upstream output stayed <= high watermark + one read (%zu)",
	    b.max_up_out);
	ok(b.max_down_in <= high, "downstream input stayed <= high (%zu)",
	    b.max_down_in);
	/* Now read: everything arrives. */
	s.rx_on = true;
	s.tx_len = total;		/* for cond_rx_all */
	ok(run_until(&c, &s, cond_rx_all, &s, 20000), "reading resumes");
	is_int(s.rx, total, "server received everything");
	ok(s.rx_hash == fnv(FNV0, data, total), "checksum matches");
	s.tx = (const uint8_t *)"";
	s.tx_len = 0;
	s.tx_shut = true;
	c.tx_shut = true;
	ok(run_until(&c, &s, cond_both_eof_closed, &t, 5000), "clean close");
	is_str(weft_close_reason_name(last.reason), "eof", "reason eof");
	close(fc);
	close(fs);
	free(data);
}

/* --- 4. reset ------------------------------------------------------------- */

static bool
cond_closed_and_c_done(void *arg)
{
	struct peer *c = arg;

	return nclosed >= 1 && (c->rx_eof || c->rx_err != 0);
}

static bool
cond_rx_ge4(void *arg)
{
	return ((struct peer *)arg)->rx >= 4;
}

static void
test_reset(void)
{
	struct peer c, s;
	const size_t n = 100 * 1024;
	uint8_t *data = pattern(n, 5);
	int fc, fd, fu, fs;
	double t0;

	diag("4a. server resets after sending: client still gets every byte");
	ctx_setup(0, 0, 3000);
	if (tcp_pair(&fc, &fd, 32768) == -1 ||
	    tcp_pair(&fu, &fs, 32768) == -1) {
		ok(0, "socket pairs");
		return;
	}
	ok(weft_conn_new_relay(&cx, fd, fu) != NULL, "relay created");
	peer_init(&c, fc);
	peer_init(&s, fs);
	c.rx_on = false;	/* the client reads only after the reset */
	s.tx = data;
	s.tx_len = n;
	t0 = now_ms();
	while (now_ms() - t0 < 200) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		peer_step(&s);
		usleep(200);
	}
	is_int(s.tx_off, n, "server wrote everything");
	rst_close(fs);
	s.fd = -1;
	c.rx_on = true;
	ok(run_until(&c, &s, cond_closed_and_c_done, &c, 5000),
	    "relay closed and client sees the end");
	is_str(weft_close_reason_name(last.reason), "reset", "reason reset");
	is_int(c.rx, n, "client received all bytes sent before the reset");
	ok(c.rx_hash == fnv(FNV0, data, n), "checksum matches");
	ok(c.rx_eof || c.rx_err == ECONNRESET, "client side closed (%s)",
	    c.rx_eof ? "eof" : strerror(c.rx_err));
	close(fc);

	diag("4b. client resets: server side is closed");
	ctx_setup(0, 0, 0);
	if (tcp_pair(&fc, &fd, 0) == -1 || tcp_pair(&fu, &fs, 0) == -1) {
		ok(0, "socket pairs");
		return;
	}
	ok(weft_conn_new_relay(&cx, fd, fu) != NULL, "relay created");
	peer_init(&c, fc);
	peer_init(&s, fs);
	c.tx = (const uint8_t *)"ping";
	c.tx_len = 4;
	ok(run_until(&c, &s, cond_rx_ge4, &s, 5000),
	    "server got the first bytes");
	rst_close(fc);
	c.fd = -1;
	ok(run_until(NULL, &s, cond_closed_and_c_done, &s, 5000),
	    "relay closed, server sees the end");
	is_str(weft_close_reason_name(last.reason), "reset", "reason reset");
	ok(s.rx_eof || s.rx_err == ECONNRESET, "server side closed (%s)",
	    s.rx_eof ? "eof" : strerror(s.rx_err));
	close(fs);
	free(data);
}

/* --- 5. close reason names ------------------------------------------------ */

static void
test_names(void)
{
	static const char *const want[WEFT_CLOSE_NREASONS] = {
		"eof", "reset", "upstream-refused", "upstream-timeout",
		"denied", "no-route", "self-connect", "held-timeout", "error",
		"shutdown",
	};
	int i;

	diag("5. close reason names");
	for (i = 0; i < WEFT_CLOSE_NREASONS; i++)
		is_str(weft_close_reason_name((enum weft_close_reason)i),
		    want[i], "reason %d name", i);
	is_str(weft_close_reason_name(WEFT_CLOSE_NREASONS), "unknown",
	    "out of range");
	is_str(weft_conn_dir_name(WEFT_DIR_OUTBOUND), "outbound", "dir name");
}

/* --- 6. decisions --------------------------------------------------------- */

static char *
xs(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
add_label(struct weft_labels *l, const char *k, const char *v)
{
	l->items = realloc(l->items, (l->n + 1) * sizeof(*l->items));
	l->items[l->n].key = xs(k);
	l->items[l->n].value = xs(v);
	l->n++;
}

static struct weft_snap_pod *
add_pod(struct weft_snapshot *s, const char *name, const char *node,
    const char *ip, const char *app, const char *port_name, uint16_t port)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs("default");
	p->name = xs(name);
	p->node = xs(node);
	p->service_account = xs("default");
	p->meshed = true;
	p->ready = true;
	weft_ip_parse(ip, &p->ip);
	if (app != NULL)
		add_label(&p->labels, "app", app);
	if (port_name != NULL) {
		p->ports = calloc(1, sizeof(*p->ports));
		p->n_ports = 1;
		p->ports[0].name = xs(port_name);
		p->ports[0].port = port;
		p->ports[0].protocol = IPPROTO_TCP;
	}
	return p;
}

static struct weft_snap_service *
add_service(struct weft_snapshot *s, const char *name, const char *vip,
    const char *app)
{
	struct weft_snap_service *v;

	s->services = realloc(s->services,
	    (s->n_services + 1) * sizeof(*s->services));
	v = &s->services[s->n_services++];
	memset(v, 0, sizeof(*v));
	v->namespace = xs("default");
	v->name = xs(name);
	weft_ip_parse(vip, &v->cluster_ip);
	add_label(&v->selector, "app", app);
	return v;
}

static void
add_svc_port(struct weft_snap_service *v, uint16_t port, uint16_t target,
    const char *target_name)
{
	struct weft_service_port *sp;

	v->ports = realloc(v->ports, (v->n_ports + 1) * sizeof(*v->ports));
	sp = &v->ports[v->n_ports++];
	memset(sp, 0, sizeof(*sp));
	sp->port = port;
	sp->protocol = IPPROTO_TCP;
	sp->target_port = target;
	sp->target_port_name = xs(target_name);
}

/* node-a (us): 10.244.1.0/24 [+ 127.0.0.0/8]; node-b: 10.244.2.0/24.
 * lo_port != 0 adds pod "lo" at 127.0.0.1 (port "http" = lo_port) and
 * service lo-svc 10.96.0.20:80 -> "http". */
/* The mode of namespace "default" in make_gen's generations. */
static enum weft_access_mode ns_mode = WEFT_ACCESS_PERMISSIVE;

static struct weft_gen *
make_gen(uint64_t generation, bool lo_cidr, uint16_t lo_port)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_snap_service *v;
	struct weft_gen *g;
	char *err = NULL;

	s->generation = generation;
	s->node_name = xs("node-a");
	s->trust_domain = xs("cluster.local");
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->n_nodes = 2;
	s->nodes[0].name = xs("node-a");
	s->nodes[0].pod_cidrs = calloc(2, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = lo_cidr ? 2 : 1;
	weft_cidr_parse("10.244.1.0/24", &s->nodes[0].pod_cidrs[0]);
	weft_cidr_parse("127.0.0.0/8", &s->nodes[0].pod_cidrs[1]);
	s->nodes[1].name = xs("node-b");
	s->nodes[1].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[1].n_pod_cidrs = 1;
	weft_cidr_parse("10.244.2.0/24", &s->nodes[1].pod_cidrs[0]);

	/* Namespace "default" is meshed and permissive: these tests are
	 * about relaying; enforcement has its own tests. */
	s->namespaces = calloc(1, sizeof(*s->namespaces));
	s->n_namespaces = 1;
	s->namespaces[0].name = xs("default");
	s->namespaces[0].meshed = true;
	s->namespaces[0].access_mode = ns_mode;
	add_pod(s, "web-1", "node-a", "10.244.1.10", "web", "http", 9090);
	add_pod(s, "web-2", "node-b", "10.244.2.10", "web", "http", 9090);
	add_pod(s, "client", "node-a", "10.244.1.5", "client", NULL, 0);
	if (lo_port != 0)
		add_pod(s, "lo", "node-a", "127.0.0.1", "lo", "http", lo_port);

	v = add_service(s, "web", "10.96.0.10", "web");
	add_svc_port(v, 80, 8080, NULL);
	add_svc_port(v, 81, 0, "http");
	v = add_service(s, "empty", "10.96.0.11", "nobody");
	add_svc_port(v, 80, 8080, NULL);
	if (lo_port != 0) {
		v = add_service(s, "lo-svc", "10.96.0.20", "lo");
		add_svc_port(v, 80, 0, "http");
	}
	g = weft_gen_build(s, &err);
	if (g == NULL) {
		diag("weft_gen_build: %s", err ? err : "?");
		free(err);
	}
	return g;
}

static void
sa_of(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct weft_ip a;
	socklen_t len;

	weft_ip_parse(ip, &a);
	weft_ip_to_sockaddr(&a, port, ss, &len);
}

struct decide_case {
	enum weft_conn_dir dir;
	const char	*dst;
	uint16_t	 dport;
	enum weft_verdict verdict;
	enum weft_close_reason reason;	/* REFUSE */
	const char	*up;		/* CONNECT: "ip:port" or NULL */
	const char	*up_alt;	/* or this one */
	const char	*what;
};

static void
test_decide(void)
{
	static const struct decide_case cases[] = {
		{ WEFT_DIR_OUTBOUND, "10.96.0.10", 80, WEFT_VERDICT_CONNECT, 0,
		  "10.244.1.10:8080", "10.244.2.10:8080",
		  "service VIP -> endpoint, targetPort by number" },
		{ WEFT_DIR_OUTBOUND, "10.96.0.10", 81, WEFT_VERDICT_CONNECT, 0,
		  "10.244.1.10:9090", "10.244.2.10:9090",
		  "service VIP -> endpoint, targetPort by name" },
		{ WEFT_DIR_OUTBOUND, "10.96.0.11", 80, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_NO_ROUTE, NULL, NULL,
		  "service without endpoints -> no-route" },
		{ WEFT_DIR_OUTBOUND, "10.244.2.10", 8080, WEFT_VERDICT_CONNECT,
		  0, "10.244.2.10:8080", NULL, "known pod on another node" },
		{ WEFT_DIR_OUTBOUND, "10.244.1.10", 8080, WEFT_VERDICT_CONNECT,
		  0, "10.244.1.10:8080", NULL, "known pod on this node" },
		{ WEFT_DIR_OUTBOUND, "10.244.1.99", 80, WEFT_VERDICT_HOLD,
		  WEFT_CLOSE_HELD_TIMEOUT, NULL, NULL,
		  "unknown address in local pod CIDR -> hold" },
		{ WEFT_DIR_OUTBOUND, "93.184.216.34", 443, WEFT_VERDICT_CONNECT,
		  0, "93.184.216.34:443", NULL, "outside the mesh -> passthrough" },
		{ WEFT_DIR_OUTBOUND, "10.244.2.99", 80, WEFT_VERDICT_CONNECT,
		  0, "10.244.2.99:80", NULL,
		  "unknown address in another node's CIDR -> passthrough" },
		{ WEFT_DIR_OUTBOUND, "10.96.0.10", 82, WEFT_VERDICT_CONNECT,
		  0, "10.96.0.10:82", NULL, "VIP, unknown port -> passthrough" },
		{ WEFT_DIR_INBOUND, "10.244.1.10", 8080, WEFT_VERDICT_CONNECT,
		  0, "10.244.1.10:8080", NULL, "inbound to a local pod" },
		{ WEFT_DIR_INBOUND, "10.244.2.10", 8080, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_DENIED, NULL, NULL,
		  "inbound to another node's pod -> denied" },
		{ WEFT_DIR_INBOUND, "10.244.1.99", 80, WEFT_VERDICT_HOLD,
		  WEFT_CLOSE_HELD_TIMEOUT, NULL, NULL,
		  "inbound to unknown local-CIDR address -> hold" },
		{ WEFT_DIR_INBOUND, "192.0.2.1", 80, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_DENIED, NULL, NULL,
		  "inbound outside the mesh -> denied" },
		{ WEFT_DIR_OUTBOUND, "10.244.2.10", 15001, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_SELF_CONNECT, NULL, NULL,
		  "destination port 15001 -> self-connect" },
		{ WEFT_DIR_OUTBOUND, "10.0.0.1", 15006, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_SELF_CONNECT, NULL, NULL, "port 15006" },
		{ WEFT_DIR_INBOUND, "10.244.1.10", 15008, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_SELF_CONNECT, NULL, NULL, "port 15008" },
		{ WEFT_DIR_OUTBOUND, "127.0.0.1", 15020, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_SELF_CONNECT, NULL, NULL, "port 15020" },
		{ WEFT_DIR_OUTBOUND, "8.8.8.8", 4444, WEFT_VERDICT_REFUSE,
		  WEFT_CLOSE_SELF_CONNECT, NULL, NULL,
		  "port of the accepting listener (4444)" },
	};
	struct weft_relay_config rc;
	struct weft_decision d;
	struct sockaddr_storage src, dst;
	struct weft_gen *g;
	char up[WEFT_SOCKADDR_STRLEN];
	size_t i;
	int seen1 = 0, seen2 = 0, k;

	diag("6. decisions");
	ctx_setup(0, 0, 0);
	rc = cx.cx_cfg;
	rc.rc_transparent = true;
	g = make_gen(1, false, 0);
	ok(g != NULL, "generation built");
	if (g == NULL)
		return;
	sa_of("10.244.1.5", 40000, &src);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct decide_case *t = &cases[i];

		sa_of(t->dst, t->dport, &dst);
		weft_decide(g, t->dir, (struct sockaddr *)&src,
		    (struct sockaddr *)&dst, 4444, &rc, &d);
		weft_decision_clear(&d);
		weft_sockaddr_str((struct sockaddr *)&d.d_upstream, up,
		    sizeof(up));
		is_str(weft_verdict_name(d.d_verdict),
		    weft_verdict_name(t->verdict), "%s %s:%u: %s [%s]",
		    weft_conn_dir_name(t->dir), t->dst, t->dport, t->what,
		    d.d_route);
		if (t->verdict == WEFT_VERDICT_REFUSE)
			is_str(weft_close_reason_name(d.d_reason),
			    weft_close_reason_name(t->reason), "  reason");
		if (t->up != NULL) {
			ok(strcmp(up, t->up) == 0 || (t->up_alt != NULL &&
			    strcmp(up, t->up_alt) == 0), "  upstream %s", up);
			ok(d.d_transparent, "  source-transparent");
		}
	}

	/* The choice among endpoints is spread (random for now). */
	sa_of("10.96.0.10", 80, &dst);
	for (k = 0; k < 64; k++) {
		weft_decide(g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
		    (struct sockaddr *)&dst, 4444, &rc, &d);
		weft_decision_clear(&d);
		weft_sockaddr_str((struct sockaddr *)&d.d_upstream, up,
		    sizeof(up));
		seen1 += strcmp(up, "10.244.1.10:8080") == 0;
		seen2 += strcmp(up, "10.244.2.10:8080") == 0;
	}
	ok(seen1 > 0 && seen2 > 0 && seen1 + seen2 == 64,
	    "both endpoints chosen (%d/%d)", seen1, seen2);

	/* Transparency is a flag of the decision, off when disabled. */
	rc.rc_transparent = false;
	sa_of("10.244.2.10", 8080, &dst);
	weft_decide(g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	weft_decision_clear(&d);
	ok(!d.d_transparent, "transparency off when configured off");

	weft_decide(NULL, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	weft_decision_clear(&d);
	is_str(weft_verdict_name(d.d_verdict), "hold",
	    "no generation yet -> hold");
	sa_of("10.244.2.10", 15001, &dst);
	weft_decide(NULL, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	weft_decision_clear(&d);
	is_str(weft_verdict_name(d.d_verdict), "refuse",
	    "self-connect is refused even without a generation");
	weft_gen_unref(g);

	/* The destination's policy, decided in process for local pods. */
	ns_mode = WEFT_ACCESS_ENFORCE;
	g = make_gen(1, false, 0);
	rc.rc_tunnel_port = 0;
	sa_of("10.244.1.10", 8080, &dst);
	weft_decide(g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	ok(d.d_verdict == WEFT_VERDICT_CONNECT && d.d_flow != NULL,
	    "same node: connect, with a flow for the policy");
	if (d.d_flow != NULL) {
		is_str(d.d_flow->fl_src_sa, "default", "  source: the pod's "
		    "service account");
		is_int(d.d_flow->fl_port, 8080, "  the pod's port");
	}
	is_int(d.d_policy, WEFT_POLICY_DENY, "  no TrafficTarget: denied (%s)",
	    d.d_why);
	weft_decision_clear(&d);
	ok(d.d_flow == NULL, "  weft_decision_clear frees the flow");
	sa_of("10.244.1.7", 40000, &src);
	weft_decide(g, WEFT_DIR_INBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	ok(d.d_flow != NULL && d.d_flow->fl_src_sa[0] == '\0',
	    "inbound plaintext: unauthenticated");
	is_int(d.d_policy, WEFT_POLICY_DENY, "  denied by default (%s)",
	    d.d_why);
	weft_decision_clear(&d);
	sa_of("10.244.1.5", 40000, &src);
	sa_of("10.244.2.10", 8080, &dst);
	weft_decide(g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	ok(d.d_flow == NULL, "another node's pod: its node decides");
	weft_decision_clear(&d);
	weft_gen_unref(g);
	ns_mode = WEFT_ACCESS_PERMISSIVE;
	g = make_gen(1, false, 0);
	sa_of("10.244.1.10", 8080, &dst);
	weft_decide(g, WEFT_DIR_OUTBOUND, (struct sockaddr *)&src,
	    (struct sockaddr *)&dst, 4444, &rc, &d);
	is_int(d.d_policy, WEFT_POLICY_ALLOW, "permissive namespace: allowed "
	    "(%s)", d.d_why);
	weft_decision_clear(&d);
	weft_gen_unref(g);
}

/* --- 7. the accept path (decide, hold, connect) with a fake destination --- */

struct acc {
	int		 lfd;		/* the server's listener */
	struct peer	*s;
	struct peer	*c;
	bool		 c_reply_sent;
};

/* Accept the relay's upstream connection; once the server saw the
 * client's EOF, reply and shut. */
static bool
cond_exchange(void *arg)
{
	struct acc *a = arg;

	if (a->s->fd == -1 && a->lfd != -1) {
		int fd = accept(a->lfd, NULL, NULL);

		if (fd != -1) {
			nonblock(fd);
			a->s->fd = fd;
		}
	}
	if (a->s->rx_eof && !a->c_reply_sent) {
		a->s->tx = (const uint8_t *)"world!";
		a->s->tx_len = 6;
		a->s->tx_shut = true;
		a->c_reply_sent = true;
	}
	return a->c->rx_eof && nclosed >= 1;
}

/* Connect a client to a fresh listener, hand the accepted socket to
 * weft_conn_accept as if TPROXY had captured it for *dst. */
static int
accept_through(enum weft_conn_dir dir, const struct sockaddr_storage *dst,
    uint16_t *lport_out)
{
	uint16_t lport;
	int l = listen_lo(&lport, 0), c, fd;

	if (l == -1 || (c = connect_lo(lport, 0)) == -1)
		return -1;
	fd = accept(l, NULL, NULL);
	close(l);
	nonblock(c);
	nonblock(fd);
	cx.cx_fake_dst = dst;
	weft_conn_accept(&cx, fd, dir, lport);
	if (lport_out != NULL)
		*lport_out = lport;
	return c;
}

static void
expect_refused(int c, const char *reason, const char *what)
{
	struct peer p;
	int one = 1;

	peer_init(&p, c);
	ok(run_until(&p, NULL, cond_closed_and_c_done, &p, 5000),
	    "%s: closed", what);
	is_str(weft_close_reason_name(last.reason), reason, "%s: close reason",
	    what);
	is_int(p.rx_err, ECONNRESET, "%s: client sees a reset", what);
	(void)one;
	close(c);
}

static void
test_accept(void)
{
	struct sockaddr_storage dst;
	struct peer c, s;
	struct acc a;
	struct weft_conn_stats_view st;
	uint16_t sport, lport, closed_port;
	int fc, tmp;
	double t0;

	diag("7. accept path");
	ctx_setup(0, 300, 0);

	/* a. No generation: held, then refused. */
	weft_gen_publish(NULL);
	sa_of("10.244.1.99", 80, &dst);
	t0 = now_ms();
	fc = accept_through(WEFT_DIR_OUTBOUND, &dst, NULL);
	expect_refused(fc, "held-timeout", "no generation");
	ok(now_ms() - t0 >= 290 && last.duration_ms >= 290,
	    "held for hold_ms (%.0f ms)", last.duration_ms);

	/* b. Unknown pod in a local CIDR: held until a generation knows it. */
	ctx_setup(0, 2000, 0);
	a.lfd = listen_lo(&sport, 0);
	nonblock(a.lfd);
	weft_gen_publish(make_gen(2, true, 0));
	sa_of("127.0.0.1", sport, &dst);
	fc = accept_through(WEFT_DIR_OUTBOUND, &dst, NULL);
	peer_init(&c, fc);
	peer_init(&s, -1);
	c.tx = (const uint8_t *)"hello";
	c.tx_len = 5;
	c.tx_shut = true;
	a.s = &s;
	a.c = &c;
	a.c_reply_sent = false;
	t0 = now_ms();
	while (now_ms() - t0 < 250) {
		event_base_loop(base, EVLOOP_NONBLOCK);
		peer_step(&c);
		usleep(500);
	}
	tmp = accept(a.lfd, NULL, NULL);
	ok(tmp == -1 && nclosed == 0, "still held after 250 ms, no upstream");
	weft_gen_publish(make_gen(3, true, sport));
	ok(run_until(&c, &s, cond_exchange, &a, 5000),
	    "released by the new generation, exchange completes");
	is_int(s.rx, 5, "server got the request (sent while held)");
	is_int(c.rx, 6, "client got the reply");
	is_str(weft_close_reason_name(last.reason), "eof", "reason eof");
	weft_conn_stats_read(&cx.cx_stats, &st);
	is_int(st.held, 1, "counted as held");
	close(fc);
	close(s.fd);

	/* c. Service VIP -> endpoint with a named targetPort. */
	ctx_setup(0, 0, 0);
	sa_of("10.96.0.20", 80, &dst);
	fc = accept_through(WEFT_DIR_OUTBOUND, &dst, NULL);
	peer_init(&c, fc);
	peer_init(&s, -1);
	c.tx = (const uint8_t *)"hello";
	c.tx_len = 5;
	c.tx_shut = true;
	a.c_reply_sent = false;
	ok(run_until(&c, &s, cond_exchange, &a, 5000),
	    "service VIP relayed to the endpoint");
	is_int(c.rx, 6, "client got the reply");
	is_int(last.sent, 5, "summary: sent");
	is_int(last.received, 6, "summary: received");
	close(fc);
	close(s.fd);
	close(a.lfd);

	/* d. Upstream refuses. */
	tmp = listen_lo(&closed_port, 0);
	close(tmp);
	sa_of("127.0.0.1", closed_port, &dst);
	fc = accept_through(WEFT_DIR_OUTBOUND, &dst, NULL);
	expect_refused(fc, "upstream-refused", "closed port");

	/* e. Self-connect: the original destination is our listener. */
	fc = accept_through(WEFT_DIR_OUTBOUND, NULL, &lport);
	expect_refused(fc, "self-connect", "destination is the listener");
	sa_of("10.244.1.10", WEFT_PORT_OUTBOUND, &dst);
	fc = accept_through(WEFT_DIR_OUTBOUND, &dst, NULL);
	expect_refused(fc, "self-connect", "destination port 15001");

	/* f. Inbound to a pod of another node. */
	sa_of("10.244.2.10", 8080, &dst);
	fc = accept_through(WEFT_DIR_INBOUND, &dst, NULL);
	expect_refused(fc, "denied", "inbound to another node's pod");

	cx.cx_fake_dst = NULL;
	weft_conn_stats_read(&cx.cx_stats, &st);
	is_int(st.closed[WEFT_CLOSE_SELF_CONNECT], 2, "stats: self-connect");
	is_int(st.opened, 5, "stats: opened");
	weft_gen_publish(NULL);
}

/* --- 8. workers: start, refuse a loop, stop ------------------------------- */

static void
test_workers(void)
{
	struct weft_proxy_config cfg = { 0 };
	struct weft_proxy_options opts = {
		.po_transparent = false,
		.po_ipv6 = false,
		.po_listen_v4 = "127.0.0.1",
	};
	struct weft_proxy *p = NULL;
	struct weft_conn_stats_view st;
	uint16_t port = (uint16_t)(20000 + getpid() % 20000);
	char buf[16];
	double t0;
	int fd, i, n = 0;
	ssize_t r;

	diag("8. workers on 127.0.0.1:%u/%u", port, port + 1);
	cfg.workers = 2;
	cfg.outbound_port = port;
	cfg.inbound_port = (uint16_t)(port + 1);
	cfg.tunnel_port = (uint16_t)(port + 2);
	if (weft_proxy_start_opts(&cfg, &opts, &p) == -1) {
		ok(1, "# SKIP ports %u/%u busy", port, port + 1);
		return;
	}
	is_int(weft_proxy_nworkers(p), 2, "two workers");
	fd = connect_lo(port, 0);
	ok(fd != -1, "connect to the outbound listener");
	r = recv(fd, buf, sizeof(buf), 0);
	ok(r == -1 && errno == ECONNRESET,
	    "a connection to our own port is reset (self-connect)");
	close(fd);
	t0 = now_ms();
	while (n == 0 && now_ms() - t0 < 2000) {
		for (i = 0, n = 0; i < 2; i++) {
			weft_proxy_worker_stats(p, i, &st);
			n += (int)st.closed[WEFT_CLOSE_SELF_CONNECT];
		}
		usleep(1000);
	}
	is_int(n, 1, "counted by one worker");
	weft_proxy_stop(p);
	fd = connect_lo(port, 0);
	ok(fd == -1, "listeners closed after stop");
	if (fd != -1)
		close(fd);
}

int
main(void)
{
	signal(SIGPIPE, SIG_IGN);
	weft_log_init("test-proxy", getenv("WEFT_DEBUG") != NULL ?
	    WEFT_LOG_DEBUG : WEFT_LOG_INFO);
	if ((base = event_base_new()) == NULL) {
		ok(0, "event_base_new");
		return tap_done();
	}
	test_names();
	test_decide();
	test_bulk();
	test_half_close();
	test_backpressure();
	test_reset();
	test_accept();
	test_workers();
	if (cx.cx_base != NULL)
		weft_conn_ctx_shutdown(&cx);
	weft_gen_publish(NULL);
	event_base_free(base);
	return tap_done();
}
