/* Unit tests for proxy/router.c: HTTP/1.x to a service VIP, routed per
 * request through conn.c's accept path, over loopback, in one event_base.
 *
 *   client C ==tcp== [conn.c -> router] =socketpair= [conn.c] ==tcp== pod
 *                                                      127.0.0.2 / .3 :P
 *
 * The "pods" are tiny HTTP servers of this file on 127.0.0.2 and 127.0.0.3
 * (the same port), with pod, service and split objects in a generation
 * published for the router.  No root needed.
 *
 *  1. one keep-alive client connection, split 1/0 then 0/1: exact, and the
 *     pool reuses one upstream per endpoint
 *  2. 75/25 over 400 requests favours the heavier backend
 *  3. weights all 0: 503, the connection stays usable
 *  4. an endpoint that refuses: ejected, the request moves on, none fails
 *  5. a request that was sent is never replayed: the upstream closes
 *     without answering -> 502, the other endpoint never sees it
 *  6. pipelined requests answered in order; a POST body byte-exact
 *  7. matches: a header sends a request to the canary
 *  8. a client that half-closes after its request still gets the answer
 *  9. sniffing: an undeclared port carrying HTTP is routed */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "weft/balance.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/proxy.h"
#include "weft/snapshot.h"
#include "proxy/proxy-int.h"
#include "../../tap.h"

static struct event_base *base;
static struct weft_conn_ctx cx;
static struct weft_metrics *reg;
static uint16_t pod_port;

/* --- the pods: tiny HTTP/1.1 servers ------------------------------------ */

enum srv_mode {
	SRV_ANSWER = 0,		/* 200 with "<name> <path> <body bytes>" */
	SRV_SWALLOW,		/* read the request, close without a word */
	SRV_GREET,		/* a server-first protocol: "hello from NAME" */
	SRV_EOF,		/* a response delimited by the close */
	SRV_DENY,		/* the mesh's 403 (x-weft-denied), as a
				 * destination's denier answers */
};

struct srv {
	const char	*name;
	const char	*ip;
	int		 lfd;
	struct event	*lev;
	enum srv_mode	 mode;
	unsigned	 accepted;
	unsigned	 requests;
};

struct srv_conn {
	LIST_ENTRY(srv_conn) link;
	struct srv	*s;
	struct bufferevent *bev;
};

static LIST_HEAD(, srv_conn) srv_conns = LIST_HEAD_INITIALIZER(srv_conns);

static struct srv srv1 = { "pod-1", "127.0.0.2", -1, NULL, 0, 0, 0 };
static struct srv srv2 = { "pod-2", "127.0.0.3", -1, NULL, 0, 0, 0 };

static void
srv_conn_free(struct srv_conn *sc)
{
	LIST_REMOVE(sc, link);
	bufferevent_free(sc->bev);
	free(sc);
}

static void	srv_flushcb(struct bufferevent *, void *);
static void	srv_eventcb(struct bufferevent *, short, void *);

static void
srv_readcb(struct bufferevent *bev, void *arg)
{
	struct srv_conn *sc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_ptr p;
	char *head, path[128], *cl;
	size_t hlen, blen;

	for (;;) {
		p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		if (p.pos < 0)
			return;
		hlen = (size_t)p.pos + 4;
		if ((head = calloc(1, hlen + 1)) == NULL)
			return;
		evbuffer_copyout(in, head, hlen);
		blen = 0;
		if ((cl = strcasestr(head, "content-length:")) != NULL)
			blen = strtoul(cl + 15, NULL, 10);
		if (evbuffer_get_length(in) < hlen + blen) {
			free(head);
			return;
		}
		if (sscanf(head, "%*s %127s", path) != 1)
			strcpy(path, "?");
		free(head);
		evbuffer_drain(in, hlen + blen);
		sc->s->requests++;
		if (sc->s->mode == SRV_SWALLOW) {
			srv_conn_free(sc);
			return;
		}
		if (sc->s->mode == SRV_DENY) {
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\n"
			    "x-weft-denied: no-traffic-target\r\n\r\ndenied\n");
			continue;
		}
		if (sc->s->mode == SRV_EOF) {
			evbuffer_add_printf(bufferevent_get_output(bev),
			    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
			    "%s until-eof", sc->s->name);
			bufferevent_setcb(bev, NULL, srv_flushcb, srv_eventcb,
			    sc);
			return;
		}
		{
			char body[256];
			int n = snprintf(body, sizeof(body), "%s %s %zu\n",
			    sc->s->name, path, blen);

			evbuffer_add_printf(bufferevent_get_output(bev),
			    "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n"
			    "X-Pod: %s\r\n\r\n%s", n, sc->s->name, body);
		}
	}
}

/* SRV_EOF: close once the response is out. */
static void
srv_flushcb(struct bufferevent *bev, void *arg)
{
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		srv_conn_free(arg);
}

static void
srv_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	srv_conn_free(arg);
}

static void
srv_acceptcb(evutil_socket_t fd, short what, void *arg)
{
	struct srv *s = arg;
	struct srv_conn *sc;
	int c;

	(void)fd;
	(void)what;
	while ((c = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK)) != -1) {
		s->accepted++;
		sc = calloc(1, sizeof(*sc));
		sc->s = s;
		LIST_INSERT_HEAD(&srv_conns, sc, link);
		sc->bev = bufferevent_socket_new(base, c, BEV_OPT_CLOSE_ON_FREE);
		bufferevent_setcb(sc->bev, srv_readcb, NULL, srv_eventcb, sc);
		bufferevent_enable(sc->bev, EV_READ | EV_WRITE);
		if (s->mode == SRV_GREET)
			evbuffer_add_printf(bufferevent_get_output(sc->bev),
			    "hello from %s\n", s->name);
	}
}

static int
srv_start(struct srv *s)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int one = 1;

	s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET, s->ip, &sin.sin_addr);
	sin.sin_port = htons(pod_port);
	if (bind(s->lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(s->lfd, 64) == -1) {
		diag("listen %s:%u: %s", s->ip, pod_port, strerror(errno));
		close(s->lfd);
		s->lfd = -1;
		return -1;
	}
	s->lev = event_new(base, s->lfd, EV_READ | EV_PERSIST, srv_acceptcb,
	    s);
	event_add(s->lev, NULL);
	return 0;
}

/* The pod dies: no listener, and its connections are closed. */
static void
srv_stop(struct srv *s)
{
	struct srv_conn *sc, *next;

	for (sc = LIST_FIRST(&srv_conns); sc != NULL; sc = next) {
		next = LIST_NEXT(sc, link);
		if (sc->s == s)
			srv_conn_free(sc);
	}
	if (s->lev != NULL)
		event_free(s->lev);
	s->lev = NULL;
	if (s->lfd != -1)
		close(s->lfd);
	s->lfd = -1;
}

/* --- the generation -------------------------------------------------------- */

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

static void
add_pod(struct weft_snapshot *s, const char *name, const char *ip,
    const char *version)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs("default");
	p->name = xs(name);
	p->node = xs("node-a");
	p->service_account = xs("default");
	p->meshed = true;
	p->ready = true;
	weft_ip_parse(ip, &p->ip);
	if (version != NULL) {
		add_label(&p->labels, "app", "web");
		add_label(&p->labels, "version", version);
	}
}

static void
add_service(struct weft_snapshot *s, const char *name, const char *vip,
    const char *version, const char *port_name)
{
	struct weft_snap_service *v;

	s->services = realloc(s->services,
	    (s->n_services + 1) * sizeof(*s->services));
	v = &s->services[s->n_services++];
	memset(v, 0, sizeof(*v));
	v->namespace = xs("default");
	v->name = xs(name);
	weft_ip_parse(vip, &v->cluster_ip);
	add_label(&v->selector, "app", "web");
	if (version != NULL)
		add_label(&v->selector, "version", version);
	v->ports = calloc(1, sizeof(*v->ports));
	v->n_ports = 1;
	v->ports[0].name = xs(port_name);
	v->ports[0].port = 80;
	v->ports[0].protocol = IPPROTO_TCP;
	v->ports[0].target_port = pod_port;
}

/* w1, w2 < 0: no split.  canary: a split with matches (header x-canary:
 * yes) to web-v2, created before the catch-all.  port_name: of web's port
 * ("http", or NULL: undeclared, sniffed). */
static void
publish(uint64_t gen, int w1, int w2, bool canary, const char *port_name)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_smi_split *sp;
	struct weft_gen *g;
	char *err = NULL;

	s->generation = gen;
	s->node_name = xs("node-a");
	s->trust_domain = xs("cluster.local");
	s->nodes = calloc(1, sizeof(*s->nodes));
	s->n_nodes = 1;
	s->nodes[0].name = xs("node-a");
	s->nodes[0].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = 1;
	weft_cidr_parse("127.0.0.0/8", &s->nodes[0].pod_cidrs[0]);
	s->namespaces = calloc(1, sizeof(*s->namespaces));
	s->n_namespaces = 1;
	s->namespaces[0].name = xs("default");
	s->namespaces[0].meshed = true;
	s->namespaces[0].access_mode = WEFT_ACCESS_PERMISSIVE;
	add_pod(s, "client", "127.0.0.1", NULL);
	add_pod(s, "pod-1", "127.0.0.2", "v1");
	add_pod(s, "pod-2", "127.0.0.3", "v2");
	add_service(s, "web", "10.96.0.20", NULL, port_name);
	add_service(s, "web-v1", "10.96.0.21", "v1", "http");
	add_service(s, "web-v2", "10.96.0.22", "v2", "http");
	if (w1 >= 0 || canary) {
		s->splits = calloc(2, sizeof(*s->splits));
	}
	if (w1 >= 0) {
		sp = &s->splits[s->n_splits++];
		sp->namespace = xs("default");
		sp->name = xs("web-split");
		sp->service = xs("web");
		sp->created = 200;
		sp->backends = calloc(2, sizeof(*sp->backends));
		sp->n_backends = 2;
		sp->backends[0].service = xs("web-v1");
		sp->backends[0].weight = (uint64_t)w1;
		sp->backends[1].service = xs("web-v2");
		sp->backends[1].weight = (uint64_t)w2;
	}
	if (canary) {
		struct weft_smi_http_route_group *rg;

		sp = &s->splits[s->n_splits++];
		sp->namespace = xs("default");
		sp->name = xs("canary");
		sp->service = xs("web");
		sp->created = 100;
		sp->backends = calloc(1, sizeof(*sp->backends));
		sp->n_backends = 1;
		sp->backends[0].service = xs("web-v2");
		sp->backends[0].weight = 1;
		sp->match_groups = calloc(1, sizeof(char *));
		sp->match_groups[0] = xs("testers");
		sp->n_match_groups = 1;
		s->http_route_groups = calloc(1, sizeof(*rg));
		s->n_http_route_groups = 1;
		rg = &s->http_route_groups[0];
		rg->namespace = xs("default");
		rg->name = xs("testers");
		rg->matches = calloc(1, sizeof(*rg->matches));
		rg->n_matches = 1;
		rg->matches[0].name = xs("header");
		rg->matches[0].headers = calloc(1,
		    sizeof(*rg->matches[0].headers));
		rg->matches[0].n_headers = 1;
		rg->matches[0].headers[0].name = xs("x-canary");
		rg->matches[0].headers[0].value_regex = xs("yes");
	}
	if ((g = weft_gen_build(s, &err)) == NULL) {
		diag("weft_gen_build: %s", err ? err : "?");
		free(err);
		return;
	}
	weft_gen_publish(g);
}

/* --- the client ------------------------------------------------------------ */

static void
spin(int ms)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		event_base_loop(base, EVLOOP_NONBLOCK);
		usleep(200);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 +
	    (t.tv_nsec - t0.tv_nsec) / 1000000 < ms);
}

/* A client connection to the VIP, through weft_conn_accept. */
static int
client_open(void)
{
	static struct sockaddr_storage vip;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	struct weft_ip ip;
	socklen_t vlen;
	int l, c, fd, one = 1;

	weft_ip_parse("10.96.0.20", &ip);
	weft_ip_to_sockaddr(&ip, 80, &vip, &vlen);
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(l, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(l, 4) == -1 ||
	    getsockname(l, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&sin, sizeof(sin)) == -1)
		return -1;
	fd = accept(l, NULL, NULL);
	close(l);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
	cx.cx_fake_dst = &vip;
	weft_conn_accept(&cx, fd, WEFT_DIR_OUTBOUND, ntohs(sin.sin_port));
	return c;
}

struct resp {
	int		 status;
	char		 body[256];
	char		 err[64];	/* x-weft-error */
	bool		 closed;	/* the connection ended */
};

/* Read one response from c (loop running), within 3 s.  Returns 0, or
 * -1 (nothing complete; r->closed when the connection ended). */
static int
client_read(int c, struct evbuffer *acc, struct resp *r)
{
	struct timespec t0, t;
	struct evbuffer_ptr p;
	char buf[4096], *head, *cl, *xe;
	size_t hlen, blen;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		p = evbuffer_search(acc, "\r\n\r\n", 4, NULL);
		if (p.pos >= 0) {
			hlen = (size_t)p.pos + 4;
			head = calloc(1, hlen + 1);
			evbuffer_copyout(acc, head, hlen);
			blen = (cl = strcasestr(head, "content-length:")) ?
			    strtoul(cl + 15, NULL, 10) : 0;
			if (evbuffer_get_length(acc) >= hlen + blen &&
			    blen < sizeof(r->body)) {
				sscanf(head, "HTTP/1.1 %d", &r->status);
				if ((xe = strcasestr(head, "x-weft-error: ")) !=
				    NULL)
					sscanf(xe + 14, "%63s", r->err);
				free(head);
				evbuffer_drain(acc, hlen);
				evbuffer_remove(acc, r->body, blen);
				r->body[blen] = '\0';
				return 0;
			}
			free(head);
		}
		event_base_loop(base, EVLOOP_NONBLOCK);
		n = read(c, buf, sizeof(buf));
		if (n > 0)
			evbuffer_add(acc, buf, (size_t)n);
		else if (n == 0 || (n == -1 && errno != EAGAIN)) {
			r->closed = true;
			return -1;
		} else
			usleep(100);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000 > 3000)
			return -1;
	}
}

static int
client_send(int c, const char *raw)
{
	size_t off = 0, len = strlen(raw);
	ssize_t n;

	while (off < len) {
		n = write(c, raw + off, len - off);
		if (n > 0)
			off += (size_t)n;
		else if (n == -1 && errno != EAGAIN)
			return -1;
		event_base_loop(base, EVLOOP_NONBLOCK);
	}
	return 0;
}

static int
get(int c, struct evbuffer *acc, const char *path, const char *extra,
    struct resp *r)
{
	char req[512];

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: web\r\n%s\r\n",
	    path, extra ? extra : "");
	if (client_send(c, req) == -1)
		return -1;
	return client_read(c, acc, r);
}

/* n GETs on c; counts answers by pod-1 and pod-2, and failures. */
static void
loop_gets(int c, struct evbuffer *acc, int n, const char *extra,
    unsigned *n1, unsigned *n2, unsigned *nfail)
{
	struct resp r;
	char path[32];
	int i;

	*n1 = *n2 = *nfail = 0;
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/r%d", i);
		if (get(c, acc, path, extra, &r) == -1 || r.status != 200) {
			(*nfail)++;
			continue;
		}
		*n1 += strncmp(r.body, "pod-1 ", 6) == 0;
		*n2 += strncmp(r.body, "pod-2 ", 6) == 0;
	}
}

/* --- the tests -------------------------------------------------------------- */

static void
test_split_flow(void)
{
	struct evbuffer *acc = evbuffer_new();
	struct weft_router_stats_view st;
	unsigned n1, n2, nf;
	struct resp r;
	int c;

	diag("1. the conformance split flow over one keep-alive connection");
	publish(1, -1, -1, false, "http");
	c = client_open();
	loop_gets(c, acc, 50, NULL, &n1, &n2, &nf);
	ok(nf == 0 && n1 > 0 && n2 > 0, "no split: both endpoints served "
	    "(%u/%u, %u failed)", n1, n2, nf);
	publish(2, 1, 0, false, "http");
	srv1.accepted = srv2.accepted = 0;
	loop_gets(c, acc, 50, NULL, &n1, &n2, &nf);
	ok(n1 == 50 && n2 == 0 && nf == 0, "weights 1/0: exactly 50/0 (%u/%u, "
	    "%u failed), same client connection", n1, n2, nf);
	ok(srv1.accepted <= 1, "  pooled: pod-1 accepted %u new connection(s) "
	    "for 50 requests", srv1.accepted);
	publish(3, 0, 1, false, "http");
	loop_gets(c, acc, 50, NULL, &n1, &n2, &nf);
	ok(n1 == 0 && n2 == 50 && nf == 0, "weights 0/1: exactly 0/50 (%u/%u, "
	    "%u failed)", n1, n2, nf);

	diag("2. 75/25 and 25/75");
	publish(4, 75, 25, false, "http");
	loop_gets(c, acc, 400, NULL, &n1, &n2, &nf);
	ok(nf == 0 && n1 > 240 && n1 < 360, "75/25: pod-1 %u of 400", n1);
	publish(5, 25, 75, false, "http");
	loop_gets(c, acc, 400, NULL, &n1, &n2, &nf);
	ok(nf == 0 && n2 > 240 && n2 < 360, "25/75: pod-2 %u of 400", n2);

	diag("3. every weight 0: 503, and the connection lives on");
	publish(6, 0, 0, false, "http");
	ok(get(c, acc, "/zero", NULL, &r) == 0 && r.status == 503,
	    "503 (%d, %s)", r.status, r.err);
	is_str(r.err, "no-endpoint", "  x-weft-error");
	publish(7, 1, 1, false, "http");
	ok(get(c, acc, "/after", NULL, &r) == 0 && r.status == 200,
	    "next request on the same connection: 200 (%d)", r.status);
	weft_router_stats(&cx, &st);
	is_int(st.conns, 1, "one client connection routed");
	ok(st.pool_hits > 500, "pool hits %llu, upstreams %llu",
	    (unsigned long long)st.pool_hits,
	    (unsigned long long)st.upstreams);
	close(c);
	spin(50);
	evbuffer_free(acc);
}

static void
test_refused(void)
{
	struct evbuffer *acc = evbuffer_new();
	struct weft_router_stats_view st0, st;
	unsigned n1, n2, nf;
	int c;

	diag("4. an endpoint that refuses: ejected, requests move on");
	publish(10, -1, -1, false, "http");
	srv_stop(&srv1);		/* pod-1 refuses from now on */
	spin(20);			/* its FINs reach the pool */
	weft_router_stats(&cx, &st0);
	c = client_open();
	loop_gets(c, acc, 40, NULL, &n1, &n2, &nf);
	is_int(nf, 0, "no request failed");
	ok(n2 == 40, "pod-2 answered all of them (%u)", n2);
	weft_router_stats(&cx, &st);
	ok(st.ejections - st0.ejections >= 1 && st.ejections - st0.ejections
	    <= 2, "pod-1 ejected (%llu), not again while ejected",
	    (unsigned long long)(st.ejections - st0.ejections));
	ok(st.retries - st0.retries == st.ejections - st0.ejections,
	    "  each refusal moved its request (%llu)",
	    (unsigned long long)(st.retries - st0.retries));
	close(c);
	spin(50);
	srv_start(&srv1);
	evbuffer_free(acc);
}

static void
test_no_replay(void)
{
	struct evbuffer *acc = evbuffer_new();
	struct resp r;
	unsigned req2;
	int c;

	diag("5. a request that was sent is never replayed");
	publish(11, 1, 0, false, "http");
	srv1.mode = SRV_SWALLOW;
	srv1.requests = 0;
	req2 = srv2.requests;
	c = client_open();
	ok(get(c, acc, "/once", NULL, &r) == 0 && r.status == 502,
	    "the upstream closed without answering: 502 (%d %s)", r.status,
	    r.err);
	is_int(srv1.requests, 1, "pod-1 saw the request once");
	is_int(srv2.requests - req2, 0, "pod-2 never saw it");
	srv1.mode = SRV_ANSWER;
	ok(get(c, acc, "/next", NULL, &r) == 0 && r.status == 200,
	    "the client connection is still usable (%d)", r.status);
	close(c);
	spin(50);
	evbuffer_free(acc);
}

static void
test_pipeline(void)
{
	struct evbuffer *acc = evbuffer_new();
	struct resp r1, r2, r3;
	int c;

	diag("6. pipelining, a body");
	publish(12, 1, 0, false, "http");
	c = client_open();
	client_send(c, "GET /p1 HTTP/1.1\r\nHost: web\r\n\r\n"
	    "POST /p2 HTTP/1.1\r\nHost: web\r\nContent-Length: 11\r\n\r\n"
	    "hello world"
	    "GET /p3 HTTP/1.1\r\nHost: web\r\n\r\n");
	ok(client_read(c, acc, &r1) == 0 && client_read(c, acc, &r2) == 0 &&
	    client_read(c, acc, &r3) == 0, "three pipelined answers");
	is_str(r1.body, "pod-1 /p1 0\n", "  first");
	is_str(r2.body, "pod-1 /p2 11\n", "  second, with its 11-byte body");
	is_str(r3.body, "pod-1 /p3 0\n", "  third");
	close(c);
	spin(50);
	evbuffer_free(acc);
}

static void
test_canary(void)
{
	struct evbuffer *acc = evbuffer_new();
	unsigned n1, n2, nf;
	int c;

	diag("7. matches: a header-gated canary");
	publish(13, 1, 0, true, "http");
	c = client_open();
	loop_gets(c, acc, 20, "x-canary: yes\r\n", &n1, &n2, &nf);
	ok(n2 == 20 && nf == 0, "x-canary: yes -> the canary (%u/%u)", n1, n2);
	loop_gets(c, acc, 20, "x-canary: no\r\n", &n1, &n2, &nf);
	ok(n1 == 20 && nf == 0, "other requests -> the catch-all 1/0 (%u/%u)",
	    n1, n2);
	close(c);
	spin(50);
	evbuffer_free(acc);
}

static void
test_half_close(void)
{
	struct evbuffer *acc = evbuffer_new();
	struct resp r;
	int c;

	diag("8. half-close after the request; 9. sniffing");
	publish(14, 1, 0, false, "http");
	c = client_open();
	client_send(c, "GET /hc HTTP/1.1\r\nHost: web\r\n\r\n");
	shutdown(c, SHUT_WR);
	ok(client_read(c, acc, &r) == 0 && r.status == 200 &&
	    strcmp(r.body, "pod-1 /hc 0\n") == 0, "answered after the "
	    "client's FIN (%d)", r.status);
	ok(client_read(c, acc, &r) == -1 && r.closed, "then closed");
	close(c);

	publish(15, 0, 1, false, NULL);
	c = client_open();
	ok(get(c, acc, "/sniffed", NULL, &r) == 0 && r.status == 200 &&
	    strncmp(r.body, "pod-2 ", 6) == 0, "undeclared port, HTTP bytes: "
	    "routed and split (%d %s)", r.status, r.body);
	close(c);

	/* A server-first protocol: the client waits, the sniff times out,
	 * the connection is balanced as TCP (the catch-all split: pod-2). */
	srv2.mode = SRV_GREET;
	c = client_open();
	{
		char buf[64];
		ssize_t n = 0;
		int i;

		for (i = 0; i < 2000 && n <= 0; i++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			n = read(c, buf, sizeof(buf) - 1);
			usleep(1000);
		}
		buf[n > 0 ? n : 0] = '\0';
		is_str(buf, "hello from pod-2\n", "server-first protocol on an "
		    "undeclared port: relayed after the sniff timeout");
	}
	srv2.mode = SRV_ANSWER;
	close(c);

	diag("10. a response delimited by the server's close");
	publish(16, 1, 0, false, "http");
	srv1.mode = SRV_EOF;
	evbuffer_drain(acc, evbuffer_get_length(acc));
	c = client_open();
	ok(get(c, acc, "/eof", NULL, &r) == 0 && r.status == 200,
	    "200 (%d)", r.status);
	ok(client_read(c, acc, &r) == -1 && r.closed, "then the connection "
	    "closes, cleanly");
	{
		char all[128];
		size_t n = evbuffer_remove(acc, all, sizeof(all) - 1);

		all[n] = '\0';
		is_str(all, "pod-1 until-eof", "the whole body, up to the close");
	}
	srv1.mode = SRV_ANSWER;
	close(c);
	spin(50);
	evbuffer_free(acc);
}

/* The value of the sample of family with both labels (0 if none). */
static double
sample(const char *family, const char *l1, const char *l2)
{
	struct evbuffer *out = evbuffer_new();
	const char *text, *p, *eol;
	char line[1024];
	double v = 0;
	size_t n;

	weft_metrics_write_prometheus(reg, out);
	evbuffer_add(out, "", 1);
	p = text = (const char *)evbuffer_pullup(out, -1);
	while ((p = strstr(p, family)) != NULL) {
		eol = strchr(p, '\n');
		n = eol ? (size_t)(eol - p) : strlen(p);
		snprintf(line, sizeof(line), "%.*s", (int)n, p);
		p += n;
		if (line[strlen(family)] != '{' || strstr(line, l1) == NULL ||
		    (l2 != NULL && strstr(line, l2) == NULL))
			continue;
		v += strtod(strrchr(line, ' ') + 1, NULL);
	}
	evbuffer_free(out);
	return v;
}

static void
test_metrics(void)
{
	struct evbuffer *acc = evbuffer_new();
	const char *den = "weft_policy_denials_total", *req =
	    "weft_requests_total", *tcp = "weft_tcp_connections_opened_total";
	const char *ob = "direction=\"outbound\"";
	double d0, r0, t0;
	struct resp r;
	int c;

	diag("11. metrics: the caller's side, denials relayed from the "
	    "destination");
	publish(17, 1, 0, false, "http");
	d0 = sample(den, ob, "reason=\"no-traffic-target\"");
	r0 = sample(req, ob, "destination_service=\"web-v1\",status_code="
	    "\"200\"");
	t0 = sample(tcp, ob, "destination_service=\"web\"");
	srv1.mode = SRV_DENY;
	c = client_open();
	ok(get(c, acc, "/d1", NULL, &r) == 0 && r.status == 403 &&
	    get(c, acc, "/d2", NULL, &r) == 0 && r.status == 403,
	    "the destination's 403s relayed, the connection kept");
	srv1.mode = SRV_ANSWER;
	ok(get(c, acc, "/ok", NULL, &r) == 0 && r.status == 200, "then a 200");
	close(c);
	spin(50);
	is_int(sample(den, ob, "reason=\"no-traffic-target\"") - d0, 2,
	    "2 denials counted outbound with the destination's reason");
	is_int(sample(req, ob, "destination_service=\"web-v1\",status_code="
	    "\"200\"") - r0, 1, "the 200 counted, destination_service = the "
	    "split's backend");
	is_int(sample(tcp, ob, "destination_service=\"web\"") - t0, 1,
	    "one outbound TCP connection: the client's, to the root service");
	evbuffer_free(acc);
}

/* Opaque TCP is balanced per connection by the relay (decide.c, conn.c):
 * a pod that refuses is ejected and the connection moves on, since
 * nothing was sent to it. */
static void
test_tcp_retry(void)
{
	struct weft_lb_ep *e1, *e2;
	struct weft_ip ip;
	char buf[64];
	ssize_t n;
	int c, i, k, got2 = 0, fails = 0;

	diag("12. TCP per connection: a refusing pod is ejected, the "
	    "connection moves on");
	publish(18, -1, -1, false, "tcp-echo");
	srv_stop(&srv1);
	spin(20);
	srv2.mode = SRV_GREET;
	/* pod-2 looks busy: the first choice is pod-1, which refuses */
	weft_ip_parse("127.0.0.2", &ip);
	e1 = weft_lb_ep_get(weft_conn_ctx_lb(&cx), &ip, pod_port);
	weft_ip_parse("127.0.0.3", &ip);
	e2 = weft_lb_ep_get(weft_conn_ctx_lb(&cx), &ip, pod_port);
	weft_lb_ep_succeeded(e1);
	weft_lb_ep_acquire(e2);
	for (k = 0; k < 10; k++) {
		c = client_open();
		n = 0;
		for (i = 0; i < 2000 && n <= 0; i++) {
			event_base_loop(base, EVLOOP_NONBLOCK);
			n = read(c, buf, sizeof(buf) - 1);
			if (n == 0 || (n == -1 && errno != EAGAIN))
				break;
			usleep(500);
		}
		buf[n > 0 ? n : 0] = '\0';
		if (strcmp(buf, "hello from pod-2\n") == 0)
			got2++;
		else
			fails++;
		close(c);
		spin(5);
	}
	weft_lb_ep_release(e2);
	is_int(fails, 0, "no connection failed");
	is_int(got2, 10, "every one reached pod-2");
	ok(weft_lb_ep_ejected(e1, weft_lb_now_ms()), "pod-1 was tried first, "
	    "refused, and is ejected");
	srv2.mode = SRV_ANSWER;
	srv_start(&srv1);
}

int
main(void)
{
	struct weft_relay_config rc;

	signal(SIGPIPE, SIG_IGN);
	weft_log_init("test-router", getenv("WEFT_DEBUG") != NULL ?
	    WEFT_LOG_DEBUG : WEFT_LOG_WARN);
	base = event_base_new();
	weft_relay_config_defaults(&rc);
	rc.rc_transparent = false;
	rc.rc_guard_ports[rc.rc_n_guard_ports++] = WEFT_PORT_OUTBOUND;
	weft_conn_ctx_init(&cx, base, 1, &rc);
	{
		struct weft_metrics_config mc;

		weft_metrics_config_defaults(&mc);
		reg = weft_metrics_new(&mc, 1);
		cx.cx_metrics = weft_metrics_shard(reg, 0);
	}
	pod_port = (uint16_t)(30000 + getpid() % 20000);
	if (srv_start(&srv1) == -1 || srv_start(&srv2) == -1) {
		diag("cannot listen on 127.0.0.2/3 (port %u)", pod_port);
		return tap_done();
	}
	test_split_flow();
	test_refused();
	test_no_replay();
	test_pipeline();
	test_canary();
	test_half_close();
	test_metrics();
	test_tcp_retry();
	weft_conn_ctx_shutdown(&cx);
	ok(cx.cx_router == NULL && cx.cx_lb == NULL && cx.cx_nconns == 0,
	    "shutdown: router and balancer gone");
	srv_stop(&srv1);
	srv_stop(&srv2);
	weft_gen_publish(NULL);
	event_base_free(base);
	weft_metrics_free(reg);
	return tap_done();
}
