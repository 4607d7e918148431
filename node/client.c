/* The node's side of the control protocol (DESIGN §6): a long-poll for
 * GET /v1/nodes/<name>/snapshot?have=<gen>, reporting the generation the
 * node has applied with each request, and one-shot POSTs (certificate
 * signing).  Runs on the node's control loop.
 *
 * Every request gets a connection of its own and asks the server to close
 * it ("Connection: close").  libevent's evhttp would otherwise reconnect a
 * closed connection through the same bufferevent, and with TLS that means
 * reusing a finished SSL object, which fails.  A fresh connection per request
 * costs one handshake per long-poll period (about 30 s) and makes reconnects
 * after a controller restart the normal path rather than a special case.
 *
 * Results reach the callbacks from a zero-delay timer, not from inside
 * evhttp: by then the connection has been inspected (TLS errors) and freed,
 * so callbacks may start new requests or free the client. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "weft/log.h"
#include "node/client.h"

struct weft_client_req {
	TAILQ_ENTRY(weft_client_req) entry;
	struct weft_client *client;		/* borrowed */
	struct evhttp_connection *conn;		/* owned; NULL once done */
	struct event	*done;			/* owned: delivers the result */
	weft_client_req_cb cb;
	void		*arg;
	int		 code;			/* result, once done */
	char		*body;			/* owned, NUL-terminated */
	size_t		 len;
	char		 why[256];
};

struct weft_client {
	struct event_base *base;		/* borrowed */
	SSL_CTX		*ssl_ctx;		/* owned; NULL for http:// */
	struct event	*retry;			/* owned */
	struct weft_client_req *poll;		/* the long-poll in flight */
	TAILQ_HEAD(, weft_client_req) reqs;	/* owned: every request */
	char		*host;			/* without [] for IPv6 */
	bool		 host_is_ip;
	int		 port;
	char		*node_name;
	char		*auth;			/* "Bearer <token>": never log */
	char		*token_file;		/* re-read when it changes */
	struct timespec	 token_mtime;
	off_t		 token_size;
	int		 poll_timeout;		/* seconds the server may hold */
	uint64_t	 have;
	int		 backoff_ms;
	bool		 failing;		/* last attempt failed (logged) */
	weft_client_cb	 cb;
	void		*arg;
	void		(*reachable_cb)(void *);
	void		*reachable_arg;
};

#define CLIENT_BACKOFF_MIN_MS	250
#define CLIENT_BACKOFF_MAX_MS	10000

static void client_poll(struct weft_client *c);

static void
client_req_free(struct weft_client_req *r)
{
	if (r == NULL)
		return;
	TAILQ_REMOVE(&r->client->reqs, r, entry);
	if (r->conn != NULL)
		evhttp_connection_free(r->conn);	/* no callback */
	if (r->done != NULL)
		event_free(r->done);
	free(r->body);
	free(r);
}

void
weft_client_req_cancel(struct weft_client_req *r)
{
	if (r != NULL && r->client->poll == r)
		r->client->poll = NULL;
	client_req_free(r);
}

static void
client_req_done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_client_req *r = arg;

	/* The connection asked to close; nothing is pending on it. */
	if (r->conn != NULL) {
		evhttp_connection_free(r->conn);
		r->conn = NULL;
	}
	r->cb(r->code, r->body != NULL ? r->body : "", r->len,
	    r->why[0] != '\0' ? r->why : NULL, r->arg);
	client_req_free(r);
}

/* Why a request got no response: the TLS verification result and the
 * OpenSSL error queue say more than evhttp does. */
static void
client_req_why(struct weft_client_req *r)
{
	struct bufferevent *bev;
	unsigned long e;
	long vr;
	SSL *ssl;
	char buf[200];

	/* evhttp's errno is only telling for these; after a refused
	 * connect it holds ENOTCONN from its own shutdown(). */
	if (errno == ECONNREFUSED || errno == ECONNRESET ||
	    errno == ETIMEDOUT || errno == EHOSTUNREACH ||
	    errno == ENETUNREACH)
		snprintf(r->why, sizeof(r->why), "connection failed: %s",
		    strerror(errno));
	else
		snprintf(r->why, sizeof(r->why), "connection failed");
	if (r->client->ssl_ctx == NULL ||
	    (bev = evhttp_connection_get_bufferevent(r->conn)) == NULL ||
	    (ssl = bufferevent_openssl_get_ssl(bev)) == NULL)
		return;
	if ((vr = SSL_get_verify_result(ssl)) != X509_V_OK) {
		snprintf(r->why, sizeof(r->why),
		    "TLS: certificate verify failed: %s",
		    X509_verify_cert_error_string(vr));
		return;
	}
	/* bufferevent_get_openssl_error mixes SSL_get_error() codes (< 0x100)
	 * in with ERR codes; only the latter have a text. */
	while ((e = bufferevent_get_openssl_error(bev)) != 0) {
		if (ERR_GET_LIB(e) == 0)
			continue;
		ERR_error_string_n(e, buf, sizeof(buf));
		snprintf(r->why, sizeof(r->why), "TLS: %s", buf);
		return;
	}
}

static void
client_req_response_cb(struct evhttp_request *req, void *arg)
{
	struct weft_client_req *r = arg;
	struct evbuffer *in;
	int saved = errno;
	const struct timeval now = { 0, 0 };

	r->code = req != NULL ? evhttp_request_get_response_code(req) : 0;
	if (r->code == 0) {
		errno = saved;
		client_req_why(r);
	} else {
		in = evhttp_request_get_input_buffer(req);
		r->len = evbuffer_get_length(in);
		if ((r->body = malloc(r->len + 1)) == NULL) {
			r->code = 0;
			r->len = 0;
			snprintf(r->why, sizeof(r->why), "out of memory");
		} else {
			evbuffer_remove(in, r->body, r->len);
			r->body[r->len] = '\0';
		}
	}
	/* Deliver outside evhttp, which still uses the connection. */
	evtimer_add(r->done, &now);
}

/* A new connection for one request: plain, or TLS with a fresh SSL bound
 * to the controller's name or address. */
static struct evhttp_connection *
client_connect(struct weft_client *c)
{
	struct evhttp_connection *conn;
	struct bufferevent *bev;
	SSL *ssl;

	if (c->ssl_ctx == NULL)
		return evhttp_connection_base_new(c->base, NULL, c->host,
		    (unsigned short)c->port);
	if ((ssl = SSL_new(c->ssl_ctx)) == NULL)
		return NULL;
	if (c->host_is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
		    c->host) != 1) {
			SSL_free(ssl);
			return NULL;
		}
	} else if (SSL_set1_host(ssl, c->host) != 1 ||
	    SSL_set_tlsext_host_name(ssl, c->host) != 1) {
		SSL_free(ssl);
		return NULL;
	}
	/* On failure bufferevent_openssl_socket_new has freed ssl. */
	if ((bev = bufferevent_openssl_socket_new(c->base, -1, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL)
		return NULL;
	/* The controller may close without close_notify after the response
	 * (libevent never sends one either): that is the end of the body,
	 * not truncation, because evhttp reads by Content-Length. */
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	if ((conn = evhttp_connection_base_bufferevent_new(c->base, NULL, bev,
	    c->host, (unsigned short)c->port)) == NULL) {
		bufferevent_free(bev);
		return NULL;
	}
	return conn;
}

/* A projected service-account token is rewritten by the kubelet before
 * it expires: take the new one when the file changed.  If it cannot be
 * read, the token in hand stays. */
static void
client_token_refresh(struct weft_client *c)
{
	struct stat st;
	char *buf = NULL, *auth, *end;
	size_t cap = 0;
	ssize_t len;
	FILE *f;

	if (c->token_file == NULL || stat(c->token_file, &st) == -1 ||
	    (st.st_mtim.tv_sec == c->token_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == c->token_mtime.tv_nsec &&
	    st.st_size == c->token_size))
		return;
	if ((f = fopen(c->token_file, "re")) == NULL) {
		log_warn("token file %s", c->token_file);
		return;
	}
	len = getdelim(&buf, &cap, '\0', f);
	fclose(f);
	if (len <= 0) {
		free(buf);
		return;
	}
	for (end = buf + strlen(buf); end > buf && (end[-1] == '\n' ||
	    end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'); )
		*--end = '\0';
	if (*buf != '\0' && asprintf(&auth, "Bearer %s", buf) != -1) {
		explicit_bzero(c->auth, strlen(c->auth));
		free(c->auth);
		c->auth = auth;
		c->token_mtime = st.st_mtim;
		c->token_size = st.st_size;
		log_info("token file %s changed: using the new token",
		    c->token_file);
	}
	explicit_bzero(buf, cap);
	free(buf);
}

static struct weft_client_req *
client_send(struct weft_client *c, enum evhttp_cmd_type method,
    const char *uri, const char *content_type, const char *body, size_t len,
    int timeout, weft_client_req_cb cb, void *arg)
{
	struct weft_client_req *r;
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char host[300];

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->client = c;
	r->cb = cb;
	r->arg = arg;
	TAILQ_INSERT_TAIL(&c->reqs, r, entry);
	if ((r->done = evtimer_new(c->base, client_req_done_cb, r)) == NULL ||
	    (r->conn = client_connect(c)) == NULL ||
	    (req = evhttp_request_new(client_req_response_cb, r)) == NULL)
		goto fail;
	evhttp_connection_set_timeout(r->conn, timeout);
	h = evhttp_request_get_output_headers(req);
	if (strchr(c->host, ':') != NULL)
		snprintf(host, sizeof(host), "[%s]:%d", c->host, c->port);
	else
		snprintf(host, sizeof(host), "%s:%d", c->host, c->port);
	evhttp_add_header(h, "Host", host);
	client_token_refresh(c);
	evhttp_add_header(h, "Authorization", c->auth);
	evhttp_add_header(h, "Accept", "application/json");
	evhttp_add_header(h, "Connection", "close");
	if (body != NULL) {
		evhttp_add_header(h, "Content-Type", content_type);
		evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	}
	/* evhttp_make_request frees req on failure. */
	if (evhttp_make_request(r->conn, req, method, uri) == -1)
		goto fail;
	return r;
fail:
	client_req_free(r);
	return NULL;
}

struct weft_client_req *
weft_client_post(struct weft_client *c, const char *path,
    const char *content_type, const char *body, size_t len, int timeout,
    weft_client_req_cb cb, void *arg)
{
	return client_send(c, EVHTTP_REQ_POST, path, content_type, body, len,
	    timeout, cb, arg);
}

static void
client_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	client_poll(arg);
}

static void
client_schedule(struct weft_client *c, int delay_ms)
{
	struct timeval tv;

	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(c->retry, &tv);
}

static void
client_fail(struct weft_client *c, const char *what)
{
	int jitter;

	if (!c->failing || log_debug_enabled())
		log_warnx("controller %s:%d: %s; retrying with backoff",
		    c->host, c->port, what);
	c->failing = true;
	if (c->backoff_ms == 0)
		c->backoff_ms = CLIENT_BACKOFF_MIN_MS;
	else if ((c->backoff_ms *= 2) > CLIENT_BACKOFF_MAX_MS)
		c->backoff_ms = CLIENT_BACKOFF_MAX_MS;
	/* Up to 25% jitter so that nodes do not retry in lockstep. */
	jitter = (int)(random() % (c->backoff_ms / 4 + 1));
	client_schedule(c, c->backoff_ms + jitter);
}

static void
client_reachable(struct weft_client *c)
{
	bool was = c->failing;

	c->failing = false;
	c->backoff_ms = 0;
	if (!was)
		return;
	log_info("controller %s:%d reachable again", c->host, c->port);
	if (c->reachable_cb != NULL)
		c->reachable_cb(c->reachable_arg);
}

static void
client_poll_cb(int code, const char *body, size_t len, const char *why,
    void *arg)
{
	struct weft_client *c = arg;
	char what[300];

	c->poll = NULL;
	if (code == 0) {
		client_fail(c, why != NULL ? why : "connection failed");
		return;
	}
	if (code == 304) {
		client_reachable(c);
		client_schedule(c, 0);
		return;
	}
	if (code != 200) {
		snprintf(what, sizeof(what), "HTTP %d %.200s", code, body);
		/* One line: the controller's reason, not its layout. */
		what[strcspn(what, "\r\n")] = '\0';
		client_fail(c, what);
		return;
	}
	client_reachable(c);
	/* The callback applies the snapshot and calls weft_client_set_have(). */
	if (c->cb(body, len, c->arg) == -1) {
		client_fail(c, "snapshot rejected");
		return;
	}
	client_schedule(c, 0);
}

static void
client_poll(struct weft_client *c)
{
	char uri[512];

	if (c->poll != NULL)
		return;
	snprintf(uri, sizeof(uri), "/v1/nodes/%s/snapshot?have=%llu",
	    c->node_name, (unsigned long long)c->have);
	/* The server holds a poll for poll_timeout; allow for slack. */
	if ((c->poll = client_send(c, EVHTTP_REQ_GET, uri, NULL, NULL, 0,
	    c->poll_timeout + 15, client_poll_cb, c)) == NULL)
		client_fail(c, "cannot send request");
}

/* TLS for the control channel: TLS 1.2 at least (1.3 preferred), the
 * server's chain checked against the bootstrap bundle. */
static SSL_CTX *
client_ssl_ctx(const char *ca_file, char **err)
{
	SSL_CTX *ctx;
	unsigned long e;
	char buf[200];

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	/* OpenSSL 3 reports a peer that closes without close_notify as an
	 * error; libevent 2.1 never sends one (feasibility §4). */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION);
	if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1)
		goto fail;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
fail:
	e = ERR_get_error();
	ERR_clear_error();
	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "out of memory");
	if (asprintf(err, "--ca-bundle %s: %s", ca_file, buf) == -1)
		*err = NULL;
	SSL_CTX_free(ctx);
	return NULL;
}

struct weft_client *
weft_client_new(struct event_base *base, const char *url, const char *ca_file,
    const char *node_name, const char *token, int poll_timeout,
    weft_client_cb cb, void *arg, char **err)
{
	struct weft_client *c = NULL;
	struct evhttp_uri *u = NULL;
	const char *scheme, *host;
	struct in6_addr a6;
	struct in_addr a4;
	size_t hl;
	bool tls;

	*err = NULL;
	if ((u = evhttp_uri_parse(url)) == NULL ||
	    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL || *host == '\0') {
		if (asprintf(err, "controller URL %s: not a URL", url) == -1)
			*err = NULL;
		goto fail;
	}
	if (strcmp(scheme, "https") == 0)
		tls = true;
	else if (strcmp(scheme, "http") == 0)
		tls = false;
	else {
		if (asprintf(err, "controller URL %s: expected http:// or "
		    "https://", url) == -1)
			*err = NULL;
		goto fail;
	}
	if (tls && ca_file == NULL) {
		if (asprintf(err, "controller URL %s: https needs --ca-bundle "
		    "FILE (the CA that signed the controller's certificate)",
		    url) == -1)
			*err = NULL;
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto oom;
	TAILQ_INIT(&c->reqs);
	c->base = base;
	c->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 15010;
	c->poll_timeout = poll_timeout;
	c->cb = cb;
	c->arg = arg;
	hl = strlen(host);
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']')
		c->host = strndup(host + 1, hl - 2);
	else
		c->host = strdup(host);
	if (c->host == NULL || (c->node_name = strdup(node_name)) == NULL ||
	    asprintf(&c->auth, "Bearer %s", token) == -1) {
		c->auth = NULL;
		goto oom;
	}
	c->host_is_ip = inet_pton(AF_INET, c->host, &a4) == 1 ||
	    inet_pton(AF_INET6, c->host, &a6) == 1;
	if (tls && (c->ssl_ctx = client_ssl_ctx(ca_file, err)) == NULL)
		goto fail;
	if ((c->retry = evtimer_new(base, client_retry_cb, c)) == NULL)
		goto oom;
	evhttp_uri_free(u);
	return c;
oom:
	if (*err == NULL)
		*err = strdup("out of memory");
fail:
	if (u != NULL)
		evhttp_uri_free(u);
	weft_client_free(c);
	return NULL;
}

void
weft_client_start(struct weft_client *c)
{
	client_schedule(c, 0);
}

void
weft_client_on_reachable(struct weft_client *c, void (*cb)(void *), void *arg)
{
	c->reachable_cb = cb;
	c->reachable_arg = arg;
}

int
weft_client_set_token_file(struct weft_client *c, const char *path)
{
	struct stat st;

	free(c->token_file);
	if ((c->token_file = strdup(path)) == NULL)
		return -1;
	if (stat(path, &st) == 0) {
		c->token_mtime = st.st_mtim;
		c->token_size = st.st_size;
	}
	return 0;
}

void
weft_client_set_have(struct weft_client *c, uint64_t have)
{
	c->have = have;
}

void
weft_client_free(struct weft_client *c)
{
	if (c == NULL)
		return;
	while (!TAILQ_EMPTY(&c->reqs))
		client_req_free(TAILQ_FIRST(&c->reqs));
	c->poll = NULL;
	if (c->retry != NULL)
		event_free(c->retry);
	SSL_CTX_free(c->ssl_ctx);
	free(c->host);
	free(c->node_name);
	if (c->auth != NULL)
		explicit_bzero(c->auth, strlen(c->auth));
	free(c->auth);
	free(c->token_file);
	free(c);
}
