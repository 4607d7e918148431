/* Unit tests for the tunnel (proxy/tunnel.c, proxy/tls.c): a client and a
 * server worker context in one event_base on 127.0.0.x, certificates minted
 * in-process, the real certificate store.  No root needed.
 *
 *   app --tcp--> [client ctx, :outbound] ==mTLS h2==> [server ctx,
 *   127.0.0.3|4:tport] --tcp--> target 127.0.0.3|4:P
 *
 * Node view: the client context uses the published generation (node-a),
 * the server's tunnel a second one (node-b) through its test hook. */
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

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "weft/certstore.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "weft/snapshot.h"
#include "weft/tls.h"
#include "weft/tunnel.h"
#include "proxy/proxy-int.h"
#include "../../tap.h"

#define MiB		(1024 * 1024)
#define ID_FRONT	"spiffe://cluster.local/ns/default/sa/frontend"
#define ID_BACK		"spiffe://cluster.local/ns/default/sa/backend"
#define ID_DB		"spiffe://cluster.local/ns/default/sa/db"

static struct event_base *base;
static struct weft_conn_ctx cxc, cxs;		/* client, server */
static struct weft_tunnel *tnc, *tns;
static struct weft_listener lout, lt3, lt4;
static uint16_t out_port, tun_port, tgt_port;
static struct sockaddr_storage fake_dst, dial_override;
static EVP_PKEY *ca1key, *ca2key;
static X509 *ca1, *ca2;
static int tgt_accepts[2];			/* .3, .4 */

static bool	refused(const char *);

/* --- certificates --------------------------------------------------------- */

static X509 *
mint(EVP_PKEY *key, X509 *ca, EVP_PKEY *cakey, const char *san,
    long from, long to, bool is_ca)
{
	X509 *x = X509_new();
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	unsigned char serial[16];

	X509_set_version(x, 2);
	arc4random_buf(serial, sizeof(serial));
	serial[0] &= 0x7f;
	BN_free(NULL);
	{
		BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);

		BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
		BN_free(bn);
	}
	X509_gmtime_adj(X509_getm_notBefore(x), from);
	X509_gmtime_adj(X509_getm_notAfter(x), to);
	X509_set_pubkey(x, key);
	if (is_ca) {
		X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O",
		    MBSTRING_ASC, (const unsigned char *)san, -1, -1, 0);
		X509_set_issuer_name(x, X509_get_subject_name(x));
	} else
		X509_set_issuer_name(x, X509_get_subject_name(ca));
	X509V3_set_ctx(&v3, ca ? ca : x, x, NULL, NULL, 0);
#define EXT(n, v) do {							\
	ext = X509V3_EXT_conf(NULL, &v3, (n), (v));			\
	X509_add_ext(x, ext, -1);					\
	X509_EXTENSION_free(ext);					\
} while (0)
	if (is_ca) {
		EXT("basicConstraints", "critical,CA:TRUE");
		EXT("keyUsage", "critical,keyCertSign,cRLSign");
		EXT("subjectKeyIdentifier", "hash");
	} else {
		EXT("basicConstraints", "critical,CA:FALSE");
		EXT("keyUsage", "critical,digitalSignature");
		EXT("extendedKeyUsage", "serverAuth,clientAuth");
		EXT("subjectAltName", san);
	}
#undef EXT
	X509_sign(x, cakey ? cakey : key, EVP_sha256());
	return x;
}

/* Publish a leaf for id, from ca (ca1 or ca2), valid [from, to] seconds. */
static void
put_cert(const char *id, X509 *ca, EVP_PKEY *cakey, long from, long to)
{
	struct weft_cert *c = calloc(1, sizeof(*c));
	char san[600];

	snprintf(san, sizeof(san), "critical,URI:%s", id);
	c->spiffe_id = strdup(id);
	c->key = EVP_EC_gen("P-256");
	c->leaf = mint(c->key, ca, cakey, san, from, to, false);
	c->chain = sk_X509_new_null();
	c->not_before = time(NULL) + from;
	c->not_after = time(NULL) + to;
	weft_certstore_put(c);
}

static char *
pem_of(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *p, *s;
	long n;

	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &p);
	s = strndup(p, (size_t)n);
	BIO_free(b);
	return s;
}

/* --- generations ---------------------------------------------------------- */

static char *
xs(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
add_pod(struct weft_snapshot *s, const char *name, const char *node,
    const char *ip, const char *sa)
{
	struct weft_snap_pod *p;

	s->pods = realloc(s->pods, (s->n_pods + 1) * sizeof(*s->pods));
	p = &s->pods[s->n_pods++];
	memset(p, 0, sizeof(*p));
	p->namespace = xs("default");
	p->name = xs(name);
	p->node = xs(node);
	p->service_account = xs(sa);
	p->meshed = true;
	p->ready = true;
	weft_ip_parse(ip, &p->ip);
}

/* The mode of namespace "default" in make_gen's generations. */
static enum weft_access_mode ns_mode = WEFT_ACCESS_PERMISSIVE;

static struct weft_gen *
make_gen(const char *self)
{
	struct weft_snapshot *s = calloc(1, sizeof(*s));
	struct weft_gen *g;
	char *err = NULL;

	s->generation = 1;
	s->node_name = xs(self);
	s->trust_domain = xs("cluster.local");
	s->trust_bundle = xs("(present)");
	s->nodes = calloc(2, sizeof(*s->nodes));
	s->n_nodes = 2;
	s->nodes[0].name = xs("node-a");
	s->nodes[0].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[0].n_pod_cidrs = 1;
	weft_cidr_parse("127.0.0.1/32", &s->nodes[0].pod_cidrs[0]);
	s->nodes[1].name = xs("node-b");
	s->nodes[1].pod_cidrs = calloc(1, sizeof(struct weft_cidr));
	s->nodes[1].n_pod_cidrs = 1;
	weft_cidr_parse("127.0.0.2/31", &s->nodes[1].pod_cidrs[0]);
	/* Namespace "default" is meshed and permissive: these tests are
	 * about relaying; enforcement has its own tests. */
	s->namespaces = calloc(1, sizeof(*s->namespaces));
	s->n_namespaces = 1;
	s->namespaces[0].name = xs("default");
	s->namespaces[0].meshed = true;
	s->namespaces[0].access_mode = ns_mode;
	add_pod(s, "front", "node-a", "127.0.0.1", "frontend");
	add_pod(s, "back", "node-b", "127.0.0.3", "backend");
	add_pod(s, "db", "node-b", "127.0.0.4", "db");
	if ((g = weft_gen_build(s, &err)) == NULL) {
		diag("weft_gen_build: %s", err ? err : "?");
		free(err);
	}
	return g;
}

/* --- plumbing ------------------------------------------------------------- */

static void
sa_of(const char *ip, uint16_t port, struct sockaddr_storage *ss)
{
	struct weft_ip a;
	socklen_t len;

	weft_ip_parse(ip, &a);
	weft_ip_to_sockaddr(&a, port, ss, &len);
}

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

/* Echo target: whatever comes in goes back; EOF -> shutdown once drained.
 * Its bufferevents are tracked so the teardown frees those whose peer never
 * finished (a connection the test left open or reset while reading was
 * paused). */
#define ECHO_MAX	512
static struct bufferevent *echo_bevs[ECHO_MAX];

static void
echo_free(struct bufferevent *b)
{
	int i;

	for (i = 0; i < ECHO_MAX; i++)
		if (echo_bevs[i] == b)
			echo_bevs[i] = NULL;
	bufferevent_free(b);
}
static void
echo_readcb(struct bufferevent *b, void *arg)
{
	(void)arg;
	evbuffer_add_buffer(bufferevent_get_output(b), bufferevent_get_input(b));
}

/* After the client's EOF and our last byte: pass the FIN on; both
 * directions are done, so the target's socket goes. */
static void
echo_writecb(struct bufferevent *b, void *arg)
{
	if (arg != NULL && evbuffer_get_length(bufferevent_get_output(b)) == 0) {
		shutdown(bufferevent_getfd(b), SHUT_WR);
		echo_free(b);
	}
}

static void
echo_eventcb(struct bufferevent *b, short what, void *arg)
{
	(void)arg;
	if (what & BEV_EVENT_EOF) {
		bufferevent_setcb(b, echo_readcb, echo_writecb, echo_eventcb,
		    (void *)1);
		if (evbuffer_get_length(bufferevent_get_output(b)) == 0)
			echo_writecb(b, (void *)1);
		return;
	}
	echo_free(b);
}

static void
echo_acceptcb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int len, void *arg)
{
	struct bufferevent *b;

	(void)l;
	(void)sa;
	(void)len;
	tgt_accepts[(intptr_t)arg]++;
	b = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	for (int i = 0; i < ECHO_MAX; i++)
		if (echo_bevs[i] == NULL) {
			echo_bevs[i] = b;
			break;
		}
	bufferevent_setcb(b, echo_readcb, NULL, echo_eventcb, NULL);
	bufferevent_setwatermark(b, EV_READ, 0, 256 * 1024);
	bufferevent_enable(b, EV_READ | EV_WRITE);
}

static int
app_connect(const char *dst_ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

	sa_of(dst_ip, tgt_port, &fake_dst);
	sin.sin_port = htons(out_port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == -1 &&
	    errno != EINPROGRESS) {
		close(fd);
		return -1;
	}
	spin(5);	/* let the listener take it with this fake_dst */
	return fd;
}

static uint64_t
fnv(uint64_t h, const unsigned char *p, size_t n)
{
	while (n--) {
		h ^= *p++;
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Send n bytes of a pattern, half-close, read to EOF.  Returns bytes read,
 * -1 on error (reset); *sum of what came back. */
static long
exchange(int fd, size_t n, uint64_t *sent_sum, uint64_t *got_sum, int ms)
{
	static unsigned char buf[65536], in[65536];
	size_t off = 0, i;
	long got = 0;
	bool shut = false;
	struct timespec t0, t;
	ssize_t r;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	*sent_sum = *got_sum = 0xcbf29ce484222325ULL;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (off < n) {
			size_t k = n - off < sizeof(buf) ? n - off :
			    sizeof(buf) - (off % sizeof(buf));

			r = write(fd, buf + (off % sizeof(buf)), k);
			if (r > 0) {
				*sent_sum = fnv(*sent_sum, buf +
				    (off % sizeof(buf)), (size_t)r);
				off += (size_t)r;
			}
		} else if (!shut) {
			shutdown(fd, SHUT_WR);
			shut = true;
		}
		r = read(fd, in, sizeof(in));
		if (r == 0)
			return got;
		if (r > 0) {
			*got_sum = fnv(*got_sum, in, (size_t)r);
			got += r;
		} else if (errno != EAGAIN)
			return -1;
		event_base_loop(base, EVLOOP_NONBLOCK);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return -2;
	}
}

static void
ctx_make(struct weft_conn_ctx *cx, int index, struct weft_tunnel **tn)
{
	struct weft_relay_config rc;
	struct weft_tunnel_config tc;

	weft_relay_config_defaults(&rc);
	rc.rc_tunnel_port = tun_port;
	rc.rc_hold_ms = 300;
	weft_conn_ctx_init(cx, base, index, &rc);
	weft_tunnel_config_defaults(&tc);
	tc.tu_port = tun_port;
	tc.tu_drain_ms = 600;
	*tn = weft_tunnel_new(cx, &tc);
}

static int
listen_on(struct weft_listener *l, struct weft_conn_ctx *cx,
    enum weft_conn_dir dir, const char *ip, uint16_t port)
{
	struct sockaddr_storage ss;

	sa_of(ip, port, &ss);
	return weft_listener_open(l, cx, dir, (struct sockaddr *)&ss,
	    sizeof(struct sockaddr_in), false);
}

static uint16_t
port_of(struct weft_listener *l)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	getsockname(evconnlistener_get_fd(l->l_lev), (struct sockaddr *)&sin,
	    &len);
	return ntohs(sin.sin_port);
}

static struct weft_conn_stats_view
stats(struct weft_conn_ctx *cx)
{
	struct weft_conn_stats_view v;

	weft_conn_stats_read(&cx->cx_stats, &v);
	return v;
}

/* --- tests ---------------------------------------------------------------- */

static void
test_peer_id(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x;
	char buf[WEFT_SPIFFE_MAX];
	const char *why = NULL;

	diag("1. peer identity");
	x = mint(k, ca1, ca1key, "critical,URI:" ID_BACK, 0, 3600, false);
	is_int(weft_tls_peer_id(x, buf, sizeof(buf), NULL, &why), 0,
	    "one spiffe URI SAN");
	is_str(buf, ID_BACK, "the ID");
	is_int(weft_tls_check_peer(x, ID_BACK, NULL, buf, sizeof(buf), &why),
	    0, "client check: expected ID");
	is_int(weft_tls_check_peer(x, ID_DB, NULL, buf, sizeof(buf), &why),
	    -1, "client check: another ID refused");
	is_int(weft_tls_check_peer(x, NULL, "cluster.local", buf, sizeof(buf),
	    &why), 0, "server check: trust domain");
	is_int(weft_tls_check_peer(x, NULL, "evil.example", buf, sizeof(buf),
	    &why), -1, "server check: another trust domain refused");
	X509_free(x);
	x = mint(k, ca1, ca1key, "critical,URI:" ID_BACK ",URI:" ID_DB, 0,
	    3600, false);
	is_int(weft_tls_peer_id(x, buf, sizeof(buf), NULL, &why), -1,
	    "two URI SANs refused (%s)", why);
	X509_free(x);
	x = mint(k, ca1, ca1key, "DNS:backend.default.svc", 0, 3600, false);
	is_int(weft_tls_peer_id(x, buf, sizeof(buf), NULL, &why), -1,
	    "no URI SAN refused (%s)", why);
	X509_free(x);
	x = mint(k, ca1, ca1key, "critical,URI:https://cluster.local/ns/a/sa/b",
	    0, 3600, false);
	is_int(weft_tls_peer_id(x, buf, sizeof(buf), NULL, &why), -1,
	    "non-spiffe URI refused (%s)", why);
	X509_free(x);
	EVP_PKEY_free(k);
}

static void
test_cert_choice(void)
{
	struct weft_tls_cache *c = weft_tls_cache_new();
	SSL_CTX *ctx;
	char buf[WEFT_SPIFFE_MAX];
	const char *why;

	diag("2. certificate choice");
	ctx = weft_tls_server_ctx(c, ID_BACK);
	ok(ctx != NULL, "server context for backend");
	weft_tls_peer_id(ctx ? SSL_CTX_get0_certificate(ctx) : NULL, buf,
	    sizeof(buf), NULL, &why);
	is_str(buf, ID_BACK, "presents backend's certificate");
	ctx = weft_tls_server_ctx(c, ID_DB);
	weft_tls_peer_id(ctx ? SSL_CTX_get0_certificate(ctx) : NULL, buf,
	    sizeof(buf), NULL, &why);
	is_str(buf, ID_DB, "presents db's certificate");
	ok(weft_tls_client_ctx(c, "spiffe://cluster.local/ns/x/sa/none") ==
	    NULL, "no certificate, no context");
	weft_tls_cache_free(c);
}

static void
test_relay(void)
{
	uint64_t a, b;
	long got;
	int fd;
	struct weft_conn_stats_view v0 = stats(&cxs), v1;

	diag("3. relayed exchange: 10 MiB each way, half-close");
	fd = app_connect("127.0.0.3");
	got = exchange(fd, 10 * MiB, &a, &b, 20000);
	is_int(got, 10 * MiB, "10 MiB came back through the tunnel");
	ok(a == b, "checksums match");
	close(fd);
	spin(50);
	v1 = stats(&cxs);
	is_int(v1.tun_accepted - v0.tun_accepted, 1, "server: one handshake");
	is_int(v1.closed[WEFT_CLOSE_EOF] - v0.closed[WEFT_CLOSE_EOF], 1,
	    "server: stream closed with eof");
	ok(weft_tunnel_nstreams(tnc) == 0 && weft_tunnel_nstreams(tns) == 0,
	    "no stream left");
	ok(weft_tunnel_nconns(tnc) == 1, "client keeps the TLS connection");
}

static void
test_pool_resume(void)
{
	int fds[10], i, okn = 0;
	uint64_t a, b;
	struct weft_conn_stats_view v0 = stats(&cxc), v1, s0 = stats(&cxs);

	diag("4. pooling and resumption");
	for (i = 0; i < 10; i++)
		fds[i] = app_connect("127.0.0.3");
	for (i = 0; i < 100 && weft_tunnel_nstreams(tns) < 10; i++)
		spin(5);
	is_int(weft_tunnel_nstreams(tns), 10, "10 streams open at once");
	/* A stream's identities, node and route are shared, not copied. */
	ok(weft_tunnel_test_hooks(tnc)->tt_natoms <= 4,
	    "client: at most 4 strings for 10 streams (%zu)",
	    weft_tunnel_test_hooks(tnc)->tt_natoms);
	ok(weft_tunnel_test_hooks(tns)->tt_natoms <= 2,
	    "server: at most 2 strings for 10 streams (%zu)",
	    weft_tunnel_test_hooks(tns)->tt_natoms);
	for (i = 0; i < 10; i++) {
		if (exchange(fds[i], 1000 + i, &a, &b, 5000) == 1000 + i &&
		    a == b)
			okn++;
		close(fds[i]);
	}
	is_int(okn, 10, "10 app connections through the tunnel");
	for (i = 0; i < 100 && weft_tunnel_nstreams(tns) +
	    weft_tunnel_nstreams(tnc) > 0; i++)
		spin(5);
	ok(weft_tunnel_test_hooks(tnc)->tt_natoms == 0 &&
	    weft_tunnel_test_hooks(tns)->tt_natoms == 0,
	    "their strings went with them");
	v1 = stats(&cxc);
	is_int(v1.tun_dialed - v0.tun_dialed, 0, "... on the pooled "
	    "connection (no new handshake)");
	/* Drop the pool; the next connection dials again and resumes. */
	weft_tunnel_shutdown(tnc);
	spin(20);
	weft_tunnel_test_hooks(tnc)->tt_last_resumed = false;
	fds[0] = app_connect("127.0.0.3");
	ok(exchange(fds[0], 100, &a, &b, 5000) == 100 && a == b,
	    "new TLS connection works");
	close(fds[0]);
	v1 = stats(&cxc);
	is_int(v1.tun_dialed - v0.tun_dialed, 1, "one new handshake");
	/* Regression: the client kept the session that SSL_free() later
	 * marked not_resumable (libevent frees without close_notify), so
	 * it offered no PSK and every dial was a full handshake. */
	ok(weft_tunnel_test_hooks(tnc)->tt_last_resumed, "it resumed the "
	    "previous session (client)");
	is_int(v1.tun_resumed - v0.tun_resumed, 1, "client counted it");
	is_int(stats(&cxs).tun_resumed - s0.tun_resumed, 1,
	    "server resumed it too");
	/* Again, from a session that came from a resumed handshake. */
	weft_tunnel_shutdown(tnc);
	spin(20);
	weft_tunnel_test_hooks(tnc)->tt_last_resumed = false;
	fds[0] = app_connect("127.0.0.3");
	ok(exchange(fds[0], 100, &a, &b, 5000) == 100 && a == b &&
	    weft_tunnel_test_hooks(tnc)->tt_last_resumed,
	    "resumed again from the renewed ticket");
	close(fds[0]);
	spin(20);
}

/* Resumption never crosses an identity, a rotation or a certificate's
 * end. */
static void
test_resume_limits(void)
{
	struct weft_tunnel_test *th = weft_tunnel_test_hooks(tnc);
	struct weft_conn_stats_view s0, s1;
	uint64_t a, b;
	int fd;

	diag("4b. resumption limits");
	/* A backend ticket offered at db's address: db's context has
	 * another session id context, so a full handshake, which presents
	 * db's certificate, which the client (expecting backend) refuses. */
	weft_tunnel_shutdown(tnc);
	s0 = stats(&cxs);
	sa_of("127.0.0.4", tun_port, &dial_override);
	th->tt_dial = &dial_override;
	th->tt_expect = ID_BACK;
	ok(refused("127.0.0.3"), "backend's ticket at db's listener: no "
	    "tunnel");
	s1 = stats(&cxs);
	is_int(s1.tun_resumed - s0.tun_resumed, 0, "... and not resumed");
	th->tt_dial = NULL;
	th->tt_expect = NULL;
	weft_tunnel_shutdown(tnc);

	/* A client certificate about to end: the first connection is a full
	 * handshake; once the certificate has expired its ticket must not
	 * resume (it would let a never-renewed identity in for good). */
	put_cert(ID_FRONT, ca1, ca1key, -60, 2);
	fd = app_connect("127.0.0.3");
	ok(exchange(fd, 100, &a, &b, 5000) == 100 && a == b,
	    "short-lived client certificate works");
	close(fd);
	spin(20);
	weft_tunnel_shutdown(tnc);
	spin(2300);
	s0 = stats(&cxs);
	ok(refused("127.0.0.3"), "its ticket after it expired: no tunnel");
	s1 = stats(&cxs);
	is_int(s1.tun_resumed - s0.tun_resumed, 0, "... not resumed");
	is_int(s1.tun_refused_handshake - s0.tun_refused_handshake, 1,
	    "... the full handshake failed");
	weft_tunnel_shutdown(tnc);
	put_cert(ID_FRONT, ca1, ca1key, -60, 3600);
}

/* An app connection that must fail: reset or closed without data. */
static bool
refused(const char *dst_ip)
{
	uint64_t a, b;
	int fd = app_connect(dst_ip);
	long got = exchange(fd, 100, &a, &b, 3000);

	close(fd);
	spin(20);
	return got <= 0;
}

static void
test_refusals(void)
{
	struct weft_tunnel_test *th = weft_tunnel_test_hooks(tnc);
	struct weft_conn_stats_view c0, c1, s0, s1;
	struct sockaddr_in sin = { .sin_family = AF_INET };
	char buf[64];
	int fd, i;
	ssize_t r;

	diag("5. refusals");
	weft_tunnel_shutdown(tnc);
	/* Wrong server identity. */
	c0 = stats(&cxc);
	th->tt_expect = ID_DB;
	ok(refused("127.0.0.3"), "server with another identity: app reset");
	c1 = stats(&cxc);
	is_int(c1.tun_refused_identity - c0.tun_refused_identity, 1,
	    "client counted a wrong identity");
	th->tt_expect = NULL;
	weft_tunnel_shutdown(tnc);

	/* A stream for a pod of another identity: 403, nothing reaches it. */
	s0 = stats(&cxs);
	sa_of("127.0.0.3", tun_port, &dial_override);
	th->tt_dial = &dial_override;
	th->tt_expect = ID_BACK;
	tgt_accepts[1] = 0;
	ok(refused("127.0.0.4"), "CONNECT to db over backend's connection: "
	    "app reset");
	s1 = stats(&cxs);
	is_int(s1.tun_denied_streams - s0.tun_denied_streams, 1,
	    "server counted a denied stream");
	is_int(tgt_accepts[1], 0, "nothing reached the db pod");
	th->tt_dial = NULL;
	th->tt_expect = NULL;
	weft_tunnel_shutdown(tnc);

	/* Client certificate from another CA. */
	s0 = stats(&cxs);
	put_cert(ID_FRONT, ca2, ca2key, -60, 3600);
	ok(refused("127.0.0.3"), "client cert of another CA: app reset");
	s1 = stats(&cxs);
	is_int(s1.tun_refused_handshake - s0.tun_refused_handshake, 1,
	    "server counted a failed handshake");
	weft_tunnel_shutdown(tnc);

	/* Expired client certificate. */
	s0 = stats(&cxs);
	put_cert(ID_FRONT, ca1, ca1key, -7200, -3600);
	ok(refused("127.0.0.3"), "expired client cert: app reset");
	s1 = stats(&cxs);
	is_int(s1.tun_refused_handshake - s0.tun_refused_handshake, 1,
	    "server counted a failed handshake");
	weft_tunnel_shutdown(tnc);

	/* No certificate for the source: held, then refused; never in the
	 * clear. */
	c0 = stats(&cxc);
	weft_certstore_remove(ID_FRONT);
	tgt_accepts[0] = 0;
	ok(refused("127.0.0.3"), "no client certificate: refused");
	spin(400);
	c1 = stats(&cxc);
	is_int(c1.tun_refused_no_cert - c0.tun_refused_no_cert, 1,
	    "client counted no certificate");
	is_int(tgt_accepts[0], 0, "nothing went in the clear");
	put_cert(ID_FRONT, ca1, ca1key, -60, 3600);

	/* Plaintext and garbage to :15008. */
	for (i = 0; i < 2; i++) {
		s0 = stats(&cxs);
		fd = socket(AF_INET, SOCK_STREAM, 0);
		sin.sin_port = htons(tun_port);
		inet_pton(AF_INET, "127.0.0.3", &sin.sin_addr);
		connect(fd, (struct sockaddr *)&sin, sizeof(sin));
		fcntl(fd, F_SETFL, O_NONBLOCK);
		if (i == 0)
			r = write(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
		else
			r = write(fd, "\x16\x03\x01\x00\x05garbagegarbage", 19);
		(void)r;
		spin(100);
		r = read(fd, buf, sizeof(buf));
		while (r > 0)
			r = read(fd, buf, sizeof(buf));
		ok(r == 0 || (r == -1 && errno != EAGAIN), "%s: closed",
		    i == 0 ? "plaintext HTTP" : "garbage");
		close(fd);
		s1 = stats(&cxs);
		is_int(s1.tun_refused_handshake - s0.tun_refused_handshake, 1,
		    "%s: counted", i == 0 ? "plaintext" : "garbage");
	}
	ok(tgt_accepts[0] == 0, "nothing reached the pod");

	/* After all that, a good one still works. */
	{
		uint64_t a, b;

		fd = app_connect("127.0.0.3");
		ok(exchange(fd, 5000, &a, &b, 5000) == 5000 && a == b,
		    "a valid client still gets through");
		close(fd);
	}
}

/* Write n bytes, read the echo back.  True if all came back. */
static bool
roundtrip(int fd, size_t n, int ms)
{
	static char out[4096], in[4096];
	size_t got = 0;
	struct timespec t0, t;
	ssize_t r;

	memset(out, 'x', sizeof(out));
	if (n > sizeof(out) || write(fd, out, n) != (ssize_t)n)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < n) {
		r = read(fd, in, sizeof(in));
		if (r == 0 || (r == -1 && errno != EAGAIN))
			return false;
		if (r > 0)
			got += (size_t)r;
		event_base_loop(base, EVLOOP_NONBLOCK);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 +
		    (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return false;
	}
	return got == n;
}

static int drained;

static void
drain_done(void *arg)
{
	(void)arg;
	drained++;
}

static void
test_drain(void)
{
	struct weft_conn_stats_view s0, s1;
	uint64_t a, b;
	int fd, i;
	char c;

	diag("6. graceful stop: GOAWAY, open streams finish, then close");
	weft_tunnel_shutdown(tnc);
	s0 = stats(&cxs);
	fd = app_connect("127.0.0.3");
	ok(roundtrip(fd, 1000, 3000), "a stream is open");
	drained = 0;
	weft_tunnel_drain(tns, drain_done, NULL);
	spin(200);	/* notice, then the final GOAWAY (100 ms) */
	ok(drained == 0, "drain waits for the open stream");
	ok(roundtrip(fd, 3000, 3000), "the stream still works after GOAWAY");
	/* The app ends it: half-close, EOF back. */
	shutdown(fd, SHUT_WR);
	for (i = 0; i < 200 && read(fd, &c, 1) != 0; i++)
		spin(5);
	close(fd);
	for (i = 0; i < 100 && drained == 0; i++)
		spin(5);
	s1 = stats(&cxs);
	is_int(drained, 1, "done once the last stream ended");
	is_int(s1.closed[WEFT_CLOSE_EOF] - s0.closed[WEFT_CLOSE_EOF], 1,
	    "the stream ended cleanly (eof)");
	ok(weft_tunnel_nconns(tns) == 0, "server closed its connection");
	for (i = 0; i < 100 && weft_tunnel_nconns(tnc) > 0; i++)
		spin(5);
	ok(weft_tunnel_nconns(tnc) == 0, "client closed its connection too");

	/* The bound: a stream that never ends is cut after tu_drain_ms. */
	fd = app_connect("127.0.0.3");
	ok(roundtrip(fd, 100, 3000), "another stream");
	drained = 0;
	weft_tunnel_drain(tns, drain_done, NULL);
	for (i = 0; i < 400 && drained == 0; i++)
		spin(5);
	ok(drained == 1 && weft_tunnel_nstreams(tns) == 1,
	    "done after the bound, the stream still there");
	weft_tunnel_shutdown(tns);
	ok(exchange(fd, 10, &a, &b, 2000) < 0, "the app sees a reset");
	close(fd);
	spin(20);
	/* Usable again. */
	weft_tunnel_shutdown(tnc);
	fd = app_connect("127.0.0.3");
	ok(exchange(fd, 100, &a, &b, 5000) == 100 && a == b,
	    "the tunnel works again after a drain");
	close(fd);
	spin(20);
}

/* End an app connection cleanly: half-close, read to EOF, close. */
static void
app_end(int fd)
{
	char c;
	int i;

	shutdown(fd, SHUT_WR);
	for (i = 0; i < 200 && read(fd, &c, 1) != 0; i++)
		spin(5);
	close(fd);
}

/* Wait (up to 1 s) until the client and the server have n TLS connections
 * each. */
static bool
nconns_become(size_t n)
{
	int i;

	for (i = 0; i < 200 && (weft_tunnel_nconns(tnc) != n ||
	    weft_tunnel_nconns(tns) != n); i++)
		spin(5);
	return weft_tunnel_nconns(tnc) == n && weft_tunnel_nconns(tns) == n;
}

/* A new client tunnel on cxc, pooling on or off. */
static void
client_remake(bool pool)
{
	struct weft_tunnel_config tc;

	weft_tunnel_free(tnc);
	weft_tunnel_config_defaults(&tc);
	tc.tu_port = tun_port;
	tc.tu_drain_ms = 600;
	tc.tu_pool = pool;
	tnc = weft_tunnel_new(&cxc, &tc);
}

static void
test_pool_off(void)
{
	struct weft_tunnel_config tc;
	struct weft_conn_stats_view c0, c1, s0, s1;
	struct weft_tunnel_test *th;
	uint64_t a, b;
	int fds[2], i;

	diag("7. pooling off: a TLS connection per stream, closed when it ends");
	weft_tunnel_config_defaults(&tc);
	ok(tc.tu_pool, "pooling is on by default");
	client_remake(false);
	ok(tnc != NULL, "client tunnel with pooling off");
	if (tnc == NULL)
		return;
	th = weft_tunnel_test_hooks(tnc);
	ok(nconns_become(0), "no TLS connection to start with");

	/* Two at once. */
	c0 = stats(&cxc);
	s0 = stats(&cxs);
	fds[0] = app_connect("127.0.0.3");
	fds[1] = app_connect("127.0.0.3");
	ok(roundtrip(fds[0], 100, 3000) && roundtrip(fds[1], 200, 3000),
	    "two concurrent streams work");
	c1 = stats(&cxc);
	is_int(c1.tun_dialed - c0.tun_dialed, 2, "... on two TLS connections "
	    "(client dialed two)");
	is_int(weft_tunnel_nconns(tnc), 2, "client has two connections");
	is_int(weft_tunnel_nstreams(tnc), 2, "... and two streams");
	app_end(fds[0]);
	ok(nconns_become(1), "the first stream ended: its connection is "
	    "closed on both sides, the other one stays");
	ok(roundtrip(fds[1], 300, 3000), "the other stream still works");
	app_end(fds[1]);
	ok(nconns_become(0), "the second stream ended: no connection left");
	s1 = stats(&cxs);
	is_int(s1.tun_accepted - s0.tun_accepted, 2, "server: two handshakes");
	is_int(s1.closed[WEFT_CLOSE_EOF] - s0.closed[WEFT_CLOSE_EOF], 2,
	    "server: both streams ended cleanly (eof)");

	/* One after the other: never the previous stream's connection. */
	c0 = stats(&cxc);
	for (i = 0; i < 2; i++) {
		th->tt_last_resumed = false;
		fds[0] = app_connect("127.0.0.3");
		ok(exchange(fds[0], 1000 + i, &a, &b, 5000) == 1000 + i &&
		    a == b, "sequential stream %d works", i + 1);
		close(fds[0]);
		ok(th->tt_last_resumed, "... its handshake resumed");
		ok(nconns_become(0), "... its connection closed when it "
		    "ended");
	}
	c1 = stats(&cxc);
	is_int(c1.tun_dialed - c0.tun_dialed, 2, "two sequential streams: "
	    "two TLS connections");
	is_int(weft_tunnel_nstreams(tnc) + weft_tunnel_nstreams(tns), 0,
	    "no stream left");

	/* Pooling on again: one connection for both, kept when idle. */
	client_remake(true);
	ok(tnc != NULL, "client tunnel with pooling on");
	if (tnc == NULL)
		return;
	c0 = stats(&cxc);
	fds[0] = app_connect("127.0.0.3");
	fds[1] = app_connect("127.0.0.3");
	ok(roundtrip(fds[0], 100, 3000) && roundtrip(fds[1], 200, 3000),
	    "pooling on: two concurrent streams work");
	is_int(weft_tunnel_nconns(tnc), 1, "... on one TLS connection");
	app_end(fds[0]);
	app_end(fds[1]);
	fds[0] = app_connect("127.0.0.3");
	ok(exchange(fds[0], 100, &a, &b, 5000) == 100 && a == b,
	    "then a sequential one");
	close(fds[0]);
	spin(50);
	c1 = stats(&cxc);
	is_int(c1.tun_dialed - c0.tun_dialed, 1, "... on the same connection "
	    "(one dial for all three)");
	ok(weft_tunnel_nconns(tnc) == 1 && weft_tunnel_nstreams(tnc) == 0,
	    "the idle connection is kept");
}

int
main(void)
{
	struct weft_gen *ga, *gb;
	struct evconnlistener *e3, *e4;
	struct sockaddr_storage ss;
	char *pem, *err = NULL;
	int i;

	signal(SIGPIPE, SIG_IGN);
	weft_log_init("test-tunnel", getenv("WEFT_DEBUG") != NULL ?
	    WEFT_LOG_DEBUG : WEFT_LOG_INFO);
	base = event_base_new();

	ca1key = EVP_EC_gen("P-256");
	ca1 = mint(ca1key, NULL, NULL, "weft test CA 1", -3600, 86400, true);
	ca2key = EVP_EC_gen("P-256");
	ca2 = mint(ca2key, NULL, NULL, "weft test CA 2", -3600, 86400, true);
	pem = pem_of(ca1);
	if (weft_certstore_set_bundle(pem, &err) == -1)
		diag("bundle: %s", err);
	free(pem);
	put_cert(ID_FRONT, ca1, ca1key, -60, 3600);
	put_cert(ID_BACK, ca1, ca1key, -60, 3600);
	put_cert(ID_DB, ca1, ca1key, -60, 3600);

	ga = make_gen("node-a");
	gb = make_gen("node-b");
	weft_gen_publish(ga);

	/* Ports: the tunnel listens on .3 and .4 at the same port. */
	for (i = 0; i < 20; i++) {
		tun_port = (uint16_t)(20000 + (getpid() + i * 7) % 30000);
		ctx_make(&cxc, 0, &tnc);
		ctx_make(&cxs, 1, &tns);
		weft_tunnel_test_hooks(tns)->tt_gen = gb;
		if (listen_on(&lt3, &cxs, WEFT_DIR_TUNNEL, "127.0.0.3",
		    tun_port) == 0 && listen_on(&lt4, &cxs, WEFT_DIR_TUNNEL,
		    "127.0.0.4", tun_port) == 0)
			break;
		weft_listener_close(&lt3);
		weft_tunnel_free(tnc);
		weft_tunnel_free(tns);
	}
	listen_on(&lout, &cxc, WEFT_DIR_OUTBOUND, "127.0.0.1", 0);
	out_port = port_of(&lout);
	cxc.cx_fake_dst = &fake_dst;
	sa_of("127.0.0.3", 0, &ss);
	e3 = evconnlistener_new_bind(base, echo_acceptcb, (void *)0,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&ss, sizeof(struct sockaddr_in));
	{
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		getsockname(evconnlistener_get_fd(e3), (struct sockaddr *)&sin,
		    &len);
		tgt_port = ntohs(sin.sin_port);
	}
	sa_of("127.0.0.4", tgt_port, &ss);
	e4 = evconnlistener_new_bind(base, echo_acceptcb, (void *)1,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 64,
	    (struct sockaddr *)&ss, sizeof(struct sockaddr_in));
	diag("tunnel :%u, outbound :%u, targets :%u", tun_port, out_port,
	    tgt_port);
	ok(tnc != NULL && tns != NULL && e3 != NULL && e4 != NULL,
	    "setup");

	test_peer_id();
	test_cert_choice();
	test_relay();
	test_pool_resume();
	test_resume_limits();
	test_refusals();
	test_drain();
	test_pool_off();

	weft_conn_ctx_shutdown(&cxc);
	weft_conn_ctx_shutdown(&cxs);
	ok(weft_tunnel_nconns(tnc) == 0 && weft_tunnel_nstreams(tnc) == 0 &&
	    weft_tunnel_nconns(tns) == 0 && weft_tunnel_nstreams(tns) == 0,
	    "shutdown leaves nothing");
	weft_listener_close(&lout);
	weft_listener_close(&lt3);
	weft_listener_close(&lt4);
	evconnlistener_free(e3);
	evconnlistener_free(e4);
	weft_tunnel_free(tnc);
	weft_tunnel_free(tns);
	weft_gen_publish(NULL);
	weft_gen_unref(gb);
	X509_free(ca1);
	X509_free(ca2);
	EVP_PKEY_free(ca1key);
	EVP_PKEY_free(ca2key);
	for (i = 0; i < ECHO_MAX; i++)
		if (echo_bevs[i] != NULL)
			echo_free(echo_bevs[i]);
	/* bufferevent_free() with deferred callbacks finishes in the loop:
	 * let it, so LeakSanitizer sees only real leaks. */
	for (i = 0; i < 10; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
	event_base_free(base);
	return tap_done();
}
