/* `weft ctl`: the operator's view of a running mesh.
 *
 *   status        the controller's generation and every node's applied one
 *   wait          until every Node has applied the current generation
 *   certs         the identities each node holds, serials and expiry
 *   ca rotate     a new mesh CA root signs from now on
 *   check FILE... validate manifests offline, as the controller would
 *   explain       would a pod's node let a caller in, and why (GET
 *                 /v1/explain, weft/explain.h)
 *
 * The HTTP client is deliberately tiny and blocking (one request per
 * connection, Connection: close): ctl makes a handful of requests and
 * exits.  https:// URLs are verified against --ca-bundle (the controller's
 * STATE-DIR/ca-bundle.pem), host name or IP address included. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "weft/controller.h"
#include "weft/log.h"
#include "weft/smimetrics.h"
#include "weft/svcinfo.h"

#define CTL_IO_TIMEOUT_MS	10000
#define CTL_MAX_RESPONSE	(8u << 20)
#define CTL_WAIT_POLL_MS	200

struct ctl {
	char		*host;		/* owned */
	char		*port;		/* owned */
	char		*token;		/* owned; NULL: none */
	bool		 tls;		/* https:// */
	const char	*ca_bundle;	/* borrowed; --ca-bundle */
	SSL_CTX		*ssl_ctx;	/* owned; NULL until the first TLS use */
};

struct ctl_response {
	int		 status;
	char		*body;		/* owned, NUL-terminated */
	size_t		 body_len;
};

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* "http://host[:port][/]" into c.  Returns 0, or -1 with *err. */
static int
ctl_parse_url(struct ctl *c, const char *url, char **err)
{
	const char *h, *end, *colon;

	if (strncmp(url, "https://", 8) == 0) {
		c->tls = true;
		h = url + 8;
	} else if (strncmp(url, "http://", 7) == 0)
		h = url + 7;
	else {
		if (asprintf(err, "controller URL %s: expected http:// or "
		    "https://", url) == -1)
			*err = NULL;
		return -1;
	}
	end = h + strcspn(h, "/");
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));

		if (rb == NULL)
			goto bad;
		c->host = strndup(h + 1, (size_t)(rb - h - 1));
		colon = rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		c->host = strndup(h, (size_t)((colon ? colon : end) - h));
	}
	if (colon != NULL)
		c->port = strndup(colon + 1, (size_t)(end - colon - 1));
	else
		c->port = strdup(c->tls ? "443" : "80");
	if (c->host == NULL || c->port == NULL || c->host[0] == '\0' ||
	    c->port[0] == '\0')
		goto bad;
	return 0;
bad:
	if (asprintf(err, "controller URL %s: expected http[s]://HOST:PORT",
	    url) == -1)
		*err = NULL;
	return -1;
}

static int
ctl_read_token(struct ctl *c, const char *path, char **err)
{
	FILE *f;
	char *line = NULL, *tok, *save;
	size_t cap = 0;

	if ((f = fopen(path, "re")) == NULL) {
		if (asprintf(err, "%s: %s", path, strerror(errno)) == -1)
			*err = NULL;
		return -1;
	}
	while (getline(&line, &cap, f) != -1) {
		if (line[0] == '#')
			continue;
		if ((tok = strtok_r(line, " \t\r\n", &save)) != NULL) {
			c->token = strdup(tok);
			break;
		}
	}
	free(line);
	fclose(f);
	if (c->token == NULL) {
		if (asprintf(err, "%s: no token", path) == -1)
			*err = NULL;
		return -1;
	}
	return 0;
}

static int
ctl_connect(struct ctl *c, char **err)
{
	struct addrinfo hints, *res, *ai;
	struct pollfd pfd;
	socklen_t len;
	int fd = -1, r, soerr = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	if ((r = getaddrinfo(c->host, c->port, &hints, &res)) != 0) {
		if (asprintf(err, "%s:%s: %s", c->host, c->port,
		    gai_strerror(r)) == -1)
			*err = NULL;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC |
		    SOCK_NONBLOCK, ai->ai_protocol);
		if (fd == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			pfd.fd = fd;
			pfd.events = POLLOUT;
			len = sizeof(soerr);
			if (poll(&pfd, 1, CTL_IO_TIMEOUT_MS) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr,
			    &len) == 0 && soerr == 0)
				break;
			errno = soerr ? soerr : ETIMEDOUT;
		}
		soerr = errno;
		close(fd);
		fd = -1;
		errno = soerr;
	}
	freeaddrinfo(res);
	if (fd == -1 && asprintf(err, "connect to %s:%s: %s", c->host,
	    c->port, strerror(errno)) == -1)
		*err = NULL;
	return fd;
}

/* One connection: a socket, and its TLS session for https://. */
struct ctl_conn {
	int		 fd;
	SSL		*ssl;		/* owned; NULL: plain */
};

static void
ctl_ssl_err(struct ctl *c, const char *what, char **err)
{
	unsigned long e = ERR_get_error();
	char buf[256];

	if (e != 0)
		ERR_error_string_n(e, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s", errno ? strerror(errno) :
		    "connection closed");
	if (asprintf(err, "%s:%s: %s: %s", c->host, c->port, what, buf) == -1)
		*err = NULL;
	ERR_clear_error();
}

/* TLS over the connected (blocking) socket: TLS 1.2+, the controller's
 * certificate verified against the bundle and for the URL's host. */
static int
ctl_tls_start(struct ctl *c, struct ctl_conn *cn, char **err)
{
	X509_VERIFY_PARAM *vp;
	unsigned char ab[16];
	bool is_ip;
	long vr;

	if (c->ca_bundle == NULL || c->ca_bundle[0] == '\0') {
		if (asprintf(err, "https:// needs --ca-bundle FILE (or "
		    "WEFT_CA_BUNDLE): the controller's ca-bundle.pem") == -1)
			*err = NULL;
		return -1;
	}
	if (c->ssl_ctx == NULL) {
		if ((c->ssl_ctx = SSL_CTX_new(TLS_client_method())) == NULL ||
		    SSL_CTX_set_min_proto_version(c->ssl_ctx,
		    TLS1_2_VERSION) != 1) {
			ctl_ssl_err(c, "TLS", err);
			return -1;
		}
		if (SSL_CTX_load_verify_locations(c->ssl_ctx, c->ca_bundle,
		    NULL) != 1) {
			if (asprintf(err, "%s: cannot load the CA bundle",
			    c->ca_bundle) == -1)
				*err = NULL;
			ERR_clear_error();
			return -1;
		}
		SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_options(c->ssl_ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
	}
	if ((cn->ssl = SSL_new(c->ssl_ctx)) == NULL ||
	    SSL_set_fd(cn->ssl, cn->fd) != 1) {
		ctl_ssl_err(c, "TLS", err);
		return -1;
	}
	is_ip = inet_pton(AF_INET, c->host, ab) == 1 ||
	    inet_pton(AF_INET6, c->host, ab) == 1;
	vp = SSL_get0_param(cn->ssl);
	if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, c->host) :
	    X509_VERIFY_PARAM_set1_host(vp, c->host, 0)) != 1 ||
	    (!is_ip && SSL_set_tlsext_host_name(cn->ssl, c->host) != 1)) {
		ctl_ssl_err(c, "TLS", err);
		return -1;
	}
	errno = 0;
	if (SSL_connect(cn->ssl) != 1) {
		if ((vr = SSL_get_verify_result(cn->ssl)) != X509_V_OK) {
			if (asprintf(err, "%s:%s: TLS: controller certificate "
			    "not trusted: %s (CA bundle %s)", c->host, c->port,
			    X509_verify_cert_error_string(vr),
			    c->ca_bundle) == -1)
				*err = NULL;
			ERR_clear_error();
		} else
			ctl_ssl_err(c, "TLS handshake", err);
		return -1;
	}
	return 0;
}

static void
ctl_conn_close(struct ctl_conn *cn)
{
	if (cn->ssl != NULL) {
		(void)SSL_shutdown(cn->ssl);
		SSL_free(cn->ssl);
		cn->ssl = NULL;
	}
	if (cn->fd != -1)
		close(cn->fd);
	cn->fd = -1;
}

static int
ctl_write_all(struct ctl_conn *cn, const char *buf, size_t len)
{
	ssize_t r;

	while (len > 0) {
		if (cn->ssl != NULL) {
			int n = SSL_write(cn->ssl, buf, (int)len);

			if (n <= 0) {
				if (errno == 0)
					errno = EPROTO;
				return -1;
			}
			r = n;
		} else {
			r = send(cn->fd, buf, len, MSG_NOSIGNAL);
			if (r == -1 && errno == EINTR)
				continue;
			if (r == -1 && errno == EAGAIN)
				errno = ETIMEDOUT;
			if (r == -1)
				return -1;
		}
		buf += r;
		len -= (size_t)r;
	}
	return 0;
}

/* Read into buf; 0 at EOF, -1 with errno. */
static ssize_t
ctl_read(struct ctl_conn *cn, char *buf, size_t len)
{
	ssize_t r;
	int n, e;

	if (cn->ssl == NULL) {
		do
			r = recv(cn->fd, buf, len, 0);
		while (r == -1 && errno == EINTR);
		if (r == -1 && errno == EAGAIN)
			errno = ETIMEDOUT;
		return r;
	}
	errno = 0;
	if ((n = SSL_read(cn->ssl, buf, (int)len)) > 0)
		return n;
	e = SSL_get_error(cn->ssl, n);
	ERR_clear_error();
	if (e == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (errno == EAGAIN || errno == 0)
		errno = e == SSL_ERROR_SYSCALL && errno == 0 ? EPROTO :
		    ETIMEDOUT;
	return -1;
}

/* method path [body]; the whole response read until the server closes. */
static int
ctl_request(struct ctl *c, const char *method, const char *path,
    const char *body, struct ctl_response *resp, char **err)
{
	struct ctl_conn cn = { -1, NULL };
	struct timeval tv = { CTL_IO_TIMEOUT_MS / 1000, 0 };
	char *req = NULL, *buf = NULL, *nb, *hdr_end, *p, clen[96];
	size_t len = 0, cap = 0;
	ssize_t r;
	int n, fl;

	memset(resp, 0, sizeof(*resp));
	*err = NULL;
	if ((cn.fd = ctl_connect(c, err)) == -1)
		return -1;
	/* blocking from here, bounded by socket timeouts: simpler with TLS */
	if ((fl = fcntl(cn.fd, F_GETFL)) == -1 ||
	    fcntl(cn.fd, F_SETFL, fl & ~O_NONBLOCK) == -1 ||
	    setsockopt(cn.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(cn.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		goto syserr;
	if (c->tls && ctl_tls_start(c, &cn, err) == -1) {
		ctl_conn_close(&cn);
		return -1;
	}
	if (body != NULL)
		snprintf(clen, sizeof(clen), "Content-Type: application/json\r\n"
		    "Content-Length: %zu\r\n", strlen(body));
	else
		clen[0] = '\0';
	n = asprintf(&req, "%s %s HTTP/1.1\r\nHost: %s:%s\r\n"
	    "User-Agent: weft-ctl/%s\r\n%s%s%s%sConnection: close\r\n\r\n%s",
	    method, path, c->host, c->port, PACKAGE_VERSION,
	    c->token ? "Authorization: Bearer " : "", c->token ? c->token : "",
	    c->token ? "\r\n" : "", clen, body ? body : "");
	if (n == -1) {
		req = NULL;
		errno = ENOMEM;
		goto syserr;
	}
	if (ctl_write_all(&cn, req, (size_t)n) == -1)
		goto syserr;
	for (;;) {
		if (cap - len < 4096) {
			if (cap >= CTL_MAX_RESPONSE) {
				errno = EFBIG;
				goto syserr;
			}
			cap = cap ? cap * 2 : 16384;
			if ((nb = realloc(buf, cap + 1)) == NULL)
				goto syserr;
			buf = nb;
		}
		if ((r = ctl_read(&cn, buf + len, cap - len)) == -1)
			goto syserr;
		if (r == 0)
			break;
		len += (size_t)r;
	}
	ctl_conn_close(&cn);
	free(req);
	if (buf == NULL)
		goto bad;
	buf[len] = '\0';
	if (sscanf(buf, "HTTP/1.%*c %d", &resp->status) != 1 ||
	    (hdr_end = strstr(buf, "\r\n\r\n")) == NULL)
		goto bad;
	/* Content-Length bounds the body when present (no chunked: we
	 * speak Connection: close and evhttp then sends a length) */
	p = hdr_end + 4;
	resp->body_len = len - (size_t)(p - buf);
	memmove(buf, p, resp->body_len);
	buf[resp->body_len] = '\0';
	resp->body = buf;
	return 0;
bad:
	free(buf);
	if (asprintf(err, "%s:%s: malformed HTTP response%s", c->host,
	    c->port, c->tls ? "" : " (an https:// controller?)") == -1)
		*err = NULL;
	return -1;
syserr:
	if (asprintf(err, "%s:%s: %s", c->host, c->port,
	    strerror(errno)) == -1)
		*err = NULL;
	free(req);
	free(buf);
	ctl_conn_close(&cn);
	return -1;
}

static int
ctl_get(struct ctl *c, const char *path, struct ctl_response *resp,
    char **err)
{
	return ctl_request(c, "GET", path, NULL, resp, err);
}

/* GET /v1/status parsed.  Returns the root (caller puts) or NULL with *err. */
static struct json_object *
ctl_status_get(struct ctl *c, char **err)
{
	struct ctl_response resp;
	struct json_object *root, *v;

	if (ctl_get(c, "/v1/status", &resp, err) == -1)
		return NULL;
	if (resp.status != 200) {
		struct json_object *e = json_tokener_parse(resp.body);

		if (asprintf(err, "controller answered %d: %s", resp.status,
		    e != NULL && json_object_object_get_ex(e, "error", &v) ?
		    json_object_get_string(v) : resp.body) == -1)
			*err = NULL;
		json_object_put(e);
		free(resp.body);
		return NULL;
	}
	root = json_tokener_parse(resp.body);
	free(resp.body);
	if (!json_object_is_type(root, json_type_object) ||
	    !json_object_object_get_ex(root, "generation", NULL) ||
	    !json_object_object_get_ex(root, "nodes", &v) ||
	    !json_object_is_type(v, json_type_array)) {
		json_object_put(root);
		if (asprintf(err, "controller sent a malformed status") == -1)
			*err = NULL;
		return NULL;
	}
	return root;
}

static const char *
jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static int64_t
jint(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v))
		return 0;
	return json_object_get_int64(v);
}

static const char *
node_state(int64_t applied, int64_t gen)
{
	if (applied == 0)
		return "never";
	return applied == gen ? "current" : "behind";
}

static int
ctl_status(struct ctl *c, int argc, char **argv)
{
	struct json_object *root, *nodes, *errs, *n;
	size_t i, cnt, w = 4;
	int64_t gen;
	char *err;

	if (argc > 1) {
		fprintf(stderr, "usage: weft ctl status\n");
		return 2;
	}
	if ((root = ctl_status_get(c, &err)) == NULL) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		free(err);
		return 1;
	}
	gen = jint(root, "generation");
	json_object_object_get_ex(root, "nodes", &nodes);
	cnt = json_object_array_length(nodes);
	for (i = 0; i < cnt; i++) {
		const char *name = jstr(json_object_array_get_idx(nodes, i),
		    "name");

		if (name != NULL && strlen(name) > w)
			w = strlen(name);
	}
	printf("generation %" PRId64 "\n\n", gen);
	printf("%-*s  %-7s  %-7s  %s\n", (int)w, "NODE", "APPLIED", "STATE",
	    "LAST-SEEN");
	for (i = 0; i < cnt; i++) {
		const char *name, *seen;
		int64_t applied;
		char ap[24];

		n = json_object_array_get_idx(nodes, i);
		name = jstr(n, "name");
		seen = jstr(n, "last_seen");
		applied = jint(n, "applied");
		if (applied > 0)
			snprintf(ap, sizeof(ap), "%" PRId64, applied);
		else
			snprintf(ap, sizeof(ap), "-");
		printf("%-*s  %-7s  %-7s  %s\n", (int)w, name ? name : "?", ap,
		    node_state(applied, gen), seen ? seen : "-");
	}
	if (cnt == 0)
		printf("(no nodes)\n");
	if (json_object_object_get_ex(root, "errors", &errs) &&
	    json_object_is_type(errs, json_type_array) &&
	    json_object_array_length(errs) > 0) {
		printf("\nmanifest errors:\n");
		for (i = 0; i < json_object_array_length(errs); i++)
			printf("  %s\n", json_object_get_string(
			    json_object_array_get_idx(errs, i)));
	}
	json_object_put(root);
	return 0;
}

/* Who is behind, "" if nobody: "node2 (applied 3), node3 (never)". */
static int
ctl_behind(struct json_object *root, char *buf, size_t len)
{
	struct json_object *nodes, *n, *known;
	int64_t gen = jint(root, "generation"), applied;
	size_t i, off = 0;
	int behind = 0;

	buf[0] = '\0';
	json_object_object_get_ex(root, "nodes", &nodes);
	for (i = 0; i < json_object_array_length(nodes); i++) {
		n = json_object_array_get_idx(nodes, i);
		if (!json_object_object_get_ex(n, "known", &known) ||
		    !json_object_get_boolean(known))
			continue;
		applied = jint(n, "applied");
		if (applied == gen)
			continue;
		behind++;
		if (off < len) {
			int r;

			if (applied == 0)
				r = snprintf(buf + off, len - off, "%s%s (never)",
				    off ? ", " : "", jstr(n, "name"));
			else
				r = snprintf(buf + off, len - off,
				    "%s%s (applied %" PRId64 ")", off ? ", " : "",
				    jstr(n, "name"), applied);
			if (r > 0)
				off += (size_t)r;
		}
	}
	return behind;
}

static int
ctl_wait(struct ctl *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "timeout",	required_argument, NULL, 't' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct json_object *root = NULL;
	char behind[1024], *err = NULL, *end;
	int64_t deadline, gen = 0;
	double timeout = 60;
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 't':
			timeout = strtod(optarg, &end);
			if (*end != '\0' || timeout <= 0) {
				fprintf(stderr, "weft ctl wait: --timeout %s: "
				    "expected seconds\n", optarg);
				return 2;
			}
			break;
		case 'h':
			printf("usage: weft ctl wait [--timeout SECONDS]\n\n"
			    "Wait until every Node has applied the controller's "
			    "current generation (default timeout 60s).\n");
			return 0;
		default:
			fprintf(stderr, "usage: weft ctl wait [--timeout "
			    "SECONDS]\n");
			return 2;
		}
	}
	deadline = now_ms() + (int64_t)(timeout * 1000);
	snprintf(behind, sizeof(behind), "no answer yet");
	for (;;) {
		free(err);
		err = NULL;
		json_object_put(root);
		if ((root = ctl_status_get(c, &err)) != NULL) {
			gen = jint(root, "generation");
			if (ctl_behind(root, behind, sizeof(behind)) == 0) {
				printf("generation %" PRId64 " applied by every "
				    "node\n", gen);
				json_object_put(root);
				return 0;
			}
		}
		if (now_ms() >= deadline)
			break;
		usleep(CTL_WAIT_POLL_MS * 1000);
	}
	if (root == NULL)
		fprintf(stderr, "weft ctl wait: timed out after %gs: %s\n",
		    timeout, err ? err : "no status");
	else
		fprintf(stderr, "weft ctl wait: timed out after %gs: generation "
		    "%" PRId64 " not applied by %s\n", timeout, gen, behind);
	free(err);
	json_object_put(root);
	return 1;
}

/* "1d2h", "23h59m", "4m10s"; negative: "expired". */
static void
ctl_left(int64_t secs, char *buf, size_t len)
{
	if (secs <= 0)
		snprintf(buf, len, "expired");
	else if (secs >= 86400)
		snprintf(buf, len, "%" PRId64 "d%" PRId64 "h", secs / 86400,
		    secs % 86400 / 3600);
	else if (secs >= 3600)
		snprintf(buf, len, "%" PRId64 "h%02" PRId64 "m", secs / 3600,
		    secs % 3600 / 60);
	else
		snprintf(buf, len, "%" PRId64 "m%02" PRId64 "s", secs / 60,
		    secs % 60);
}

static time_t
ctl_parse_time(const char *s)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || (end = strptime(s, "%Y-%m-%dT%H:%M:%SZ",
	    &tm)) == NULL || *end != '\0')
		return 0;
	return timegm(&tm);
}

static int
ctl_certs(struct ctl *c, int argc, char **argv)
{
	struct json_object *root, *nodes, *n, *certs, *e, *ca, *roots, *r;
	size_t i, k, rows = 0, wn = 4, wi = 8;
	time_t now = time(NULL);
	char left[32], *err;

	if (argc > 1) {
		fprintf(stderr, "usage: weft ctl certs\n");
		return 2;
	}
	if ((root = ctl_status_get(c, &err)) == NULL) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		free(err);
		return 1;
	}
	json_object_object_get_ex(root, "nodes", &nodes);
	for (i = 0; i < json_object_array_length(nodes); i++) {
		n = json_object_array_get_idx(nodes, i);
		if (!json_object_object_get_ex(n, "certificates", &certs) ||
		    !json_object_is_type(certs, json_type_array))
			continue;
		for (k = 0; k < json_object_array_length(certs); k++) {
			const char *id = jstr(json_object_array_get_idx(certs,
			    k), "spiffe_id");

			if (jstr(n, "name") && strlen(jstr(n, "name")) > wn)
				wn = strlen(jstr(n, "name"));
			if (id != NULL && strlen(id) > wi)
				wi = strlen(id);
		}
	}
	printf("%-*s  %-*s  %-32s  %s\n", (int)wn, "NODE", (int)wi, "IDENTITY",
	    "SERIAL", "EXPIRES");
	for (i = 0; i < json_object_array_length(nodes); i++) {
		n = json_object_array_get_idx(nodes, i);
		if (!json_object_object_get_ex(n, "certificates", &certs) ||
		    !json_object_is_type(certs, json_type_array))
			continue;
		for (k = 0; k < json_object_array_length(certs); k++) {
			const char *na;

			e = json_object_array_get_idx(certs, k);
			na = jstr(e, "not_after");
			ctl_left((int64_t)(ctl_parse_time(na) - now), left,
			    sizeof(left));
			printf("%-*s  %-*s  %-32s  %s (%s)\n", (int)wn,
			    jstr(n, "name") ? jstr(n, "name") : "?", (int)wi,
			    jstr(e, "spiffe_id") ? jstr(e, "spiffe_id") : "?",
			    jstr(e, "serial") ? jstr(e, "serial") : "?",
			    na ? na : "?", left);
			rows++;
		}
	}
	if (rows == 0)
		printf("(no certificates issued)\n");
	if (json_object_object_get_ex(root, "ca", &ca) &&
	    json_object_object_get_ex(ca, "roots", &roots) &&
	    json_object_is_type(roots, json_type_array)) {
		printf("\nCA roots (trust bundle):\n");
		for (i = 0; i < json_object_array_length(roots); i++) {
			struct json_object *sg;

			r = json_object_array_get_idx(roots, i);
			printf("  %s  %s  until %s%s%s\n",
			    jstr(r, "serial") ? jstr(r, "serial") : "?",
			    jstr(r, "subject") ? jstr(r, "subject") : "?",
			    jstr(r, "not_after") ? jstr(r, "not_after") : "?",
			    json_object_object_get_ex(r, "signing", &sg) &&
			    json_object_get_boolean(sg) ? "  (signing)" : "",
			    jstr(r, "retire_at") ? "  retiring" : "");
			if (jstr(r, "retire_at") != NULL) {
				ctl_left((int64_t)(ctl_parse_time(jstr(r,
				    "retire_at")) - now), left, sizeof(left));
				printf("      leaves the bundle at %s (in %s)\n",
				    jstr(r, "retire_at"), left);
			}
		}
	}
	json_object_put(root);
	return 0;
}

static int
ctl_ca(struct ctl *c, int argc, char **argv)
{
	struct ctl_response resp;
	struct json_object *o, *v;
	char *err = NULL;
	int rc = 1;

	if (argc != 2 || strcmp(argv[1], "rotate") != 0) {
		fprintf(stderr, "usage: weft ctl ca rotate\n");
		return 2;
	}
	if (ctl_request(c, "POST", "/v1/ca/rotate", "{}", &resp,
	    &err) == -1) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		free(err);
		return 1;
	}
	o = json_tokener_parse(resp.body);
	if (resp.status != 200)
		fprintf(stderr, "weft ctl: controller answered %d: %s\n",
		    resp.status, o != NULL && json_object_object_get_ex(o,
		    "error", &v) ? json_object_get_string(v) : resp.body);
	else {
		printf("CA rotated: root %s signs from now on\n",
		    o != NULL && jstr(o, "signing") ? jstr(o, "signing") : "?");
		if (o != NULL && json_object_object_get_ex(o, "roots", &v))
			printf("trust bundle: %zu root(s); `weft ctl certs` "
			    "shows when the old one leaves\n",
			    json_object_array_length(v));
		rc = 0;
	}
	json_object_put(o);
	free(resp.body);
	return rc;
}

/* Append key=value to *q, percent-encoding everything but RFC 3986
 * unreserved characters.  Returns 0 or -1 (ENOMEM). */
static int
ctl_query_add(char **q, size_t *len, size_t *cap, const char *key,
    const char *value)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *parts[2] = { key, value };
	size_t need = strlen(key) + 3 * strlen(value) + 3, k;
	const unsigned char *p;
	char *nq;

	if (*len + need >= *cap) {
		*cap = (*len + need) * 2;
		if ((nq = realloc(*q, *cap)) == NULL)
			return -1;
		*q = nq;
	}
	if (*len > 0)
		(*q)[(*len)++] = '&';
	for (k = 0; k < 2; k++) {
		if (k == 1)
			(*q)[(*len)++] = '=';
		for (p = (const unsigned char *)parts[k]; *p != '\0'; p++) {
			if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
			    *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			    *p == '-' || *p == '.' || *p == '_' || *p == '~')
				(*q)[(*len)++] = (char)*p;
			else {
				(*q)[(*len)++] = '%';
				(*q)[(*len)++] = hex[*p >> 4];
				(*q)[(*len)++] = hex[*p & 15];
			}
		}
	}
	(*q)[*len] = '\0';
	return 0;
}

static void
ctl_explain_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft ctl explain --from NS/SA|unauthenticated --to NS/POD\n"
	    "           --port PORT [--proto tcp|udp]\n"
	    "           [--method METHOD] [--path PATH] [--header NAME=VALUE]...\n"
	    "\n"
	    "Ask the controller whether the destination pod's node would let the\n"
	    "caller in, with the policy it enforces now.  Prints allow, deny or\n"
	    "http, then the TrafficTarget and rule that decided, or the reason.\n"
	    "With --method, --path or --header (method GET and path / by\n"
	    "default), an HTTP request is checked when HTTP rules apply.\n"
	    "\n"
	    "exit status: 0 allow, 1 deny, 2 usage or error, 3 http (the\n"
	    "connection is accepted and each request is checked; raw TCP is not\n"
	    "allowed): give a request to know more\n");
}

static int
ctl_explain(struct ctl *c, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "from",	required_argument, NULL, 'f' },
		{ "to",		required_argument, NULL, 't' },
		{ "port",	required_argument, NULL, 'p' },
		{ "proto",	required_argument, NULL, 'P' },
		{ "method",	required_argument, NULL, 'm' },
		{ "path",	required_argument, NULL, 'a' },
		{ "header",	required_argument, NULL, 'H' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ctl_response resp;
	struct json_object *o = NULL, *v, *conn;
	const char *from = NULL, *to = NULL, *port = NULL, *decision, *s;
	char *q = NULL, *path = NULL, *err = NULL;
	size_t len = 0, cap = 0;
	int ch, rc = 2;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'f':
			from = optarg;
			break;
		case 't':
			to = optarg;
			break;
		case 'p':
			port = optarg;
			break;
		case 'P':
		case 'm':
		case 'a':
		case 'H':
			if (ctl_query_add(&q, &len, &cap, ch == 'P' ? "proto" :
			    ch == 'm' ? "method" : ch == 'a' ? "path" : "header",
			    optarg) == -1)
				goto oom;
			break;
		case 'h':
			ctl_explain_usage(stdout);
			free(q);
			return 0;
		default:
			ctl_explain_usage(stderr);
			free(q);
			return 2;
		}
	}
	if (from == NULL || to == NULL || port == NULL || optind != argc) {
		ctl_explain_usage(stderr);
		free(q);
		return 2;
	}
	if (ctl_query_add(&q, &len, &cap, "from", from) == -1 ||
	    ctl_query_add(&q, &len, &cap, "to", to) == -1 ||
	    ctl_query_add(&q, &len, &cap, "port", port) == -1 ||
	    asprintf(&path, "/v1/explain?%s", q) == -1)
		goto oom;
	if (ctl_get(c, path, &resp, &err) == -1) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		free(err);
		goto done;
	}
	o = json_tokener_parse(resp.body);
	if (resp.status != 200 || o == NULL ||
	    (decision = jstr(o, "decision")) == NULL) {
		fprintf(stderr, "weft ctl explain: controller answered %d: %s\n",
		    resp.status, o != NULL && json_object_object_get_ex(o,
		    "error", &v) ? json_object_get_string(v) : resp.body);
		free(resp.body);
		goto done;
	}
	free(resp.body);
	printf("%s\n", decision);
	if ((s = jstr(o, "target")) != NULL && s[0] != '\0')
		printf("  TrafficTarget  %s\n", s);
	if ((s = jstr(o, "rule")) != NULL && s[0] != '\0')
		printf("  rule           %s\n", s);
	if ((s = jstr(o, "reason")) != NULL && s[0] != '\0')
		printf("  reason         %s\n", s);
	if (json_object_object_get_ex(o, "request", NULL) &&
	    json_object_object_get_ex(o, "connection", &conn))
		printf("  connection     %s: %s\n", jstr(conn, "verdict") ?
		    jstr(conn, "verdict") : "?", jstr(conn, "reason") ?
		    jstr(conn, "reason") : "");
	if (strcmp(decision, "http") == 0)
		printf("  (give --method/--path/--header to check a request)\n");
	rc = strcmp(decision, "allow") == 0 ? 0 :
	    strcmp(decision, "http") == 0 ? 3 : 1;
	goto done;
oom:
	fprintf(stderr, "weft ctl: out of memory\n");
done:
	json_object_put(o);
	free(q);
	free(path);
	return rc;
}

/* weft ctl top: per-edge rate, success ratio and latency percentiles from
 * the controller's SMI metrics store (GET /v1/top). */
static int
ctl_top(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "namespace",	required_argument, NULL, 'n' },
		{ "window",	required_argument, NULL, 'w' },
		{ "side",	required_argument, NULL, 's' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	static const char usage[] = "usage: weft ctl top [--namespace NS] "
	    "[--window 30s] [--side client|server|all]\n";
	struct ctl_response resp;
	const char *ns = NULL, *window = "30s", *side = "client";
	char *q = NULL, *path = NULL, *err = NULL;
	size_t qlen = 0, qcap = 0;
	int ch, secs, rc = 1;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "n:w:s:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			ns = optarg;
			break;
		case 'w':
			window = optarg;
			break;
		case 's':
			side = optarg;
			break;
		case 'h':
			printf("%s", usage);
			return 0;
		default:
			fprintf(stderr, "%s", usage);
			return 2;
		}
	}
	if (optind != argc || weft_smim_parse_duration(window, &secs) == -1 ||
	    (strcmp(side, "client") != 0 && strcmp(side, "server") != 0 &&
	    strcmp(side, "all") != 0)) {
		fprintf(stderr, "%s", usage);
		return 2;
	}
	if (ctl_query_add(&q, &qlen, &qcap, "t", window) == -1 ||
	    (ns != NULL && ctl_query_add(&q, &qlen, &qcap, "namespace",
	    ns) == -1) || asprintf(&path, "/v1/top?%s", q) == -1) {
		path = NULL;
		fprintf(stderr, "weft ctl: out of memory\n");
		goto done;
	}
	if (ctl_get(c, path, &resp, &err) == -1) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		goto done;
	}
	if (resp.status != 200)
		fprintf(stderr, "weft ctl: controller answered %d: %s\n",
		    resp.status, resp.body);
	else if (weft_smim_top_print(resp.body, side, stdout) == -1)
		fprintf(stderr, "weft ctl: controller sent a malformed answer\n");
	else
		rc = 0;
	free(resp.body);
done:
	free(err);
	free(q);
	free(path);
	return rc;
}

/* `weft ctl service NS/NAME [--window 30s]` (weft/svcinfo.h). */
static int
ctl_service(struct ctl *c, int argc, char **argv)
{
	static const char usage[] = "usage: weft ctl service NS/NAME "
	    "[--window 30s]\n";
	struct ctl_response resp;
	const char *window = "30s", *ref = NULL;
	char *path = NULL, *err = NULL;
	int i, secs, rc = 1;

	for (i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--window") == 0 ||
		    strcmp(argv[i], "-w") == 0) && i + 1 < argc)
			window = argv[++i];
		else if (strcmp(argv[i], "--help") == 0 ||
		    strcmp(argv[i], "-h") == 0) {
			printf("%s", usage);
			return 0;
		} else if (ref == NULL && argv[i][0] != '-')
			ref = argv[i];
		else {
			fprintf(stderr, "%s", usage);
			return 2;
		}
	}
	if (ref == NULL || strchr(ref, '/') == NULL ||
	    strchr(ref, '?') != NULL || strchr(ref, '%') != NULL ||
	    weft_smim_parse_duration(window, &secs) == -1) {
		fprintf(stderr, "%s", usage);
		return 2;
	}
	if (asprintf(&path, "/v1/services/%s?t=%s", ref, window) == -1) {
		path = NULL;
		fprintf(stderr, "weft ctl: out of memory\n");
		return 1;
	}
	if (ctl_get(c, path, &resp, &err) == -1) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		goto done;
	}
	if (resp.status != 200)
		fprintf(stderr, "weft ctl: controller answered %d: %s\n",
		    resp.status, resp.body);
	else if (weft_svcinfo_print(resp.body, stdout) == -1)
		fprintf(stderr, "weft ctl: controller sent a malformed answer\n");
	else
		rc = 0;
	free(resp.body);
done:
	free(err);
	free(path);
	return rc;
}

static int
ctl_check(int argc, char **argv)
{
	struct weft_manifest_docs docs = { NULL, 0 };
	struct weft_errors errs = { NULL, 0, 0 };
	struct weft_model *m;
	size_t i;
	int a, rc;

	if (argc < 2) {
		fprintf(stderr, "usage: weft ctl check FILE...\n");
		return 2;
	}
	for (a = 1; a < argc; a++)
		(void)weft_manifest_load_file(argv[a], argv[a], &docs, &errs);
	if ((m = weft_model_build(&docs, &errs)) == NULL)
		weft_errors_add(&errs, "out of memory");
	for (i = 0; i < errs.n; i++)
		fprintf(stderr, "%s\n", errs.msgs[i]);
	rc = errs.n == 0 ? 0 : 1;
	if (rc == 0)
		printf("configuration OK\n");
	weft_model_free(m);
	weft_manifest_docs_clear(&docs);
	weft_errors_clear(&errs);
	return rc;
}

static void
ctl_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft ctl [--controller URL] [--token-file FILE] COMMAND\n"
	    "\n"
	    "  --controller URL   controller address (default %s,\n"
	    "                     env WEFT_CONTROLLER)\n"
	    "  --token-file FILE  file holding an admin token (env\n"
	    "                     WEFT_TOKEN_FILE)\n"
	    "  --ca-bundle FILE   CA bundle verifying an https:// controller\n"
	    "                     (its STATE-DIR/ca-bundle.pem; env\n"
	    "                     WEFT_CA_BUNDLE)\n"
	    "\n"
	    "commands:\n"
	    "  status                     generation and each node's applied one\n"
	    "  wait [--timeout SECONDS]   until every node applied the current\n"
	    "                             generation (exit 1 on timeout)\n"
	    "  certs                      identities each node holds: serials,\n"
	    "                             expiry; and the CA roots\n"
	    "  ca rotate                  a new CA root signs from now on; the\n"
	    "                             old one stays trusted for the overlap\n"
	    "  check FILE...              validate manifests offline\n"
	    "  explain --from NS/SA --to NS/POD --port P [--proto tcp|udp]\n"
	    "          [--method M] [--path P] [--header K=V]...\n"
	    "                             would the pod's node allow it, and why\n"
	    "                             (exit 0 allow, 1 deny, 3 per request)\n"
	    "  top [--namespace NS] [--window 30s] [--side client|server|all]\n"
	    "                             requests/s, success ratio, p50/p90/p99\n"
	    "                             of each pod-to-pod edge (SMI metrics)\n"
	    "  service NS/NAME [--window 30s]\n"
	    "                             a Service's endpoints, its TrafficSplits\n"
	    "                             and each backend's recent share\n",
	    WEFT_CONTROLLER_URL);
}

int
weft_ctl_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "controller",	required_argument, NULL, 'c' },
		{ "token-file",	required_argument, NULL, 't' },
		{ "ca-bundle",	required_argument, NULL, 'b' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct ctl c;
	const char *url, *token_file, *cmd;
	char *err = NULL;
	int ch, rc = 2;

	memset(&c, 0, sizeof(c));
	weft_log_init("weft-ctl", WEFT_LOG_WARN);
	url = getenv("WEFT_CONTROLLER");
	token_file = getenv("WEFT_TOKEN_FILE");
	c.ca_bundle = getenv("WEFT_CA_BUNDLE");
	if (url == NULL || url[0] == '\0')
		url = WEFT_CONTROLLER_URL;
	optind = 1;
	/* '+': stop at the subcommand, whose options are its own */
	while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			url = optarg;
			break;
		case 't':
			token_file = optarg;
			break;
		case 'b':
			c.ca_bundle = optarg;
			break;
		case 'h':
			ctl_usage(stdout);
			return 0;
		default:
			ctl_usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		ctl_usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	argc -= optind;
	argv += optind;
	if (strcmp(cmd, "check") == 0)
		return ctl_check(argc, argv);
	if (strcmp(cmd, "status") != 0 && strcmp(cmd, "wait") != 0 &&
	    strcmp(cmd, "certs") != 0 && strcmp(cmd, "ca") != 0 &&
	    strcmp(cmd, "explain") != 0 && strcmp(cmd, "top") != 0 &&
	    strcmp(cmd, "service") != 0) {
		fprintf(stderr, "weft ctl: unknown command '%s'\n\n", cmd);
		ctl_usage(stderr);
		return 2;
	}
	if (ctl_parse_url(&c, url, &err) == -1 || (token_file != NULL &&
	    token_file[0] != '\0' && ctl_read_token(&c, token_file,
	    &err) == -1)) {
		fprintf(stderr, "weft ctl: %s\n", err ? err : "out of memory");
		/* explain keeps 1 for "deny" */
		rc = strcmp(cmd, "explain") == 0 ? 2 : 1;
		goto done;
	}
	if (strcmp(cmd, "status") == 0)
		rc = ctl_status(&c, argc, argv);
	else if (strcmp(cmd, "certs") == 0)
		rc = ctl_certs(&c, argc, argv);
	else if (strcmp(cmd, "ca") == 0)
		rc = ctl_ca(&c, argc, argv);
	else if (strcmp(cmd, "explain") == 0)
		rc = ctl_explain(&c, argc, argv);
	else if (strcmp(cmd, "top") == 0)
		rc = ctl_top(&c, argc, argv);
	else if (strcmp(cmd, "service") == 0)
		rc = ctl_service(&c, argc, argv);
	else
		rc = ctl_wait(&c, argc, argv);
done:
	free(err);
	free(c.host);
	free(c.port);
	if (c.token != NULL)
		explicit_bzero(c.token, strlen(c.token));
	free(c.token);
	SSL_CTX_free(c.ssl_ctx);
	return rc;
}
