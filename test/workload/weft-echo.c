/* weft-echo: the lab's test workload.
 *
 *   weft-echo http --port P [--name NAME] [--addr A]
 *	HTTP/1.1 (keep-alive) server:
 *	  GET /          JSON {pod, namespace, local, peer, method, path, headers}
 *	                 ("local" is getsockname(): the destination the client
 *	                 reached, which the mesh must preserve)
 *	  GET /bytes/N   N bytes of weft_echo_pattern() (streamed)
 *	  POST /sha256   hex SHA-256 of the request body
 *	  GET /status/C  an empty response with status C
 *   weft-echo tcp --port P [--name NAME] [--addr A]
 *	per connection: "hello from NAME local=ip:port peer=ip:port\n", then
 *	echo; after the client's EOF, finish echoing, then close.
 *   weft-echo sink --port P [--addr A]
 *	read everything; on EOF answer the hex SHA-256 of it plus "\n", close.
 *   weft-echo udp --port P [--name NAME] [--addr A]
 *	UDP echo: answer each datagram with "NAME peer=ip:port: " and the
 *	datagram's bytes, from the address it was sent to.
 *   weft-echo udp-send --to HOST:PORT [--message M] [--timeout MS]
 *	    [--tries N] [--sport P]
 *	UDP client: send M (default "ping") up to N times (default 1), each
 *	time waiting up to MS/N milliseconds (default MS 1000) for an answer
 *	from HOST:PORT.  Prints the answer and exits 0; exits 1 when none came
 *	in time ("no answer" on stderr), 3 on an ICMP error (refused) or
 *	another socket error.  --sport sends from port P, so that successive
 *	runs belong to one conntrack flow.
 *
 * Every accepted connection and every request is logged on stderr (the lab
 * keeps it in logs/pod-NS-POD.log), so a test can tell whether the server saw
 * a connection at all.  NAME defaults to $POD_NAME, then the host name. */
#include "config.h"

#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/util.h>

#include <sys/queue.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#define ECHO_CHUNK	(64 * 1024)
#define ECHO_HIGH_WM	(1024 * 1024)	/* stop reading while the peer lags */

static const char *echo_name;
static const char *echo_namespace;
static unsigned long echo_conn_seq;

static void echo_log(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void
echo_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

/* "ip:port" (IPv6 as "[ip]:port") of a socket address; buf >= 64 bytes. */
static const char *
echo_addr_str(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const void *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
		snprintf(buf, len, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const void *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
		snprintf(buf, len, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else
		snprintf(buf, len, "?");
	return buf;
}

static void
echo_fd_addrs(evutil_socket_t fd, char *local, char *peer, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl;

	sl = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == -1)
		ss.ss_family = AF_UNSPEC;
	echo_addr_str(&ss, local, len);
	sl = sizeof ss;
	memset(&ss, 0, sizeof ss);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == -1)
		ss.ss_family = AF_UNSPEC;
	echo_addr_str(&ss, peer, len);
}

/* The byte at offset off of /bytes/N: a 64-character cycle, so a truncated
 * or shifted body is easy to spot by eye. */
static char
weft_echo_pattern(uint64_t off)
{
	static const char cyc[] =
	    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-\n";

	return cyc[off % 64];
}

static void
echo_hex(const unsigned char *md, unsigned int n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	unsigned int i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[md[i] >> 4];
		out[2 * i + 1] = hx[md[i] & 15];
	}
	out[2 * n] = '\0';
}

/* ---- http ---------------------------------------------------------------- */

struct echo_bytes {
	LIST_ENTRY(echo_bytes) link;
	struct evhttp_request *req;
	uint64_t	 sent, total;
};

/* Everything still allocated at exit is freed, so the lab's sanitizer
 * builds report no leak of ours. */
static LIST_HEAD(, echo_bytes) echo_all_bytes = LIST_HEAD_INITIALIZER(echo_all_bytes);

static void echo_bytes_more(struct evhttp_connection *, void *);

static void
echo_bytes_send(struct echo_bytes *eb)
{
	struct evbuffer *buf;
	char	 chunk[ECHO_CHUNK];
	size_t	 n, i;

	if (eb->sent >= eb->total) {
		evhttp_send_reply_end(eb->req);
		LIST_REMOVE(eb, link);
		free(eb);
		return;
	}
	n = eb->total - eb->sent > sizeof chunk ? sizeof chunk :
	    (size_t)(eb->total - eb->sent);
	for (i = 0; i < n; i++)
		chunk[i] = weft_echo_pattern(eb->sent + i);
	eb->sent += n;
	buf = evbuffer_new();
	if (buf == NULL) {
		echo_log("evbuffer_new failed");
		exit(1);
	}
	evbuffer_add(buf, chunk, n);
	/* The callback fires once this chunk left our buffer: stream without
	 * holding the whole body in memory. */
	evhttp_send_reply_chunk_with_cb(eb->req, buf, echo_bytes_more, eb);
	evbuffer_free(buf);
}

static void
echo_bytes_more(struct evhttp_connection *evcon, void *arg)
{
	echo_bytes_send(arg);
}

static void
echo_http_cb(struct evhttp_request *req, void *arg)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct evkeyvalq *hdrs = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	struct evbuffer *out;
	const char *uri = evhttp_request_get_uri(req), *method;
	char	 local[96], peer[96], path[1024], *q;
	int	 cmd = evhttp_request_get_command(req);

	switch (cmd) {
	case EVHTTP_REQ_GET:	method = "GET"; break;
	case EVHTTP_REQ_POST:	method = "POST"; break;
	case EVHTTP_REQ_PUT:	method = "PUT"; break;
	case EVHTTP_REQ_HEAD:	method = "HEAD"; break;
	case EVHTTP_REQ_DELETE:	method = "DELETE"; break;
	case EVHTTP_REQ_PATCH:	method = "PATCH"; break;
	case EVHTTP_REQ_OPTIONS: method = "OPTIONS"; break;
	default:		method = "OTHER"; break;
	}
	echo_fd_addrs(bufferevent_getfd(bev), local, peer, sizeof local);
	snprintf(path, sizeof path, "%s", uri);
	if ((q = strchr(path, '?')) != NULL)
		*q = '\0';
	echo_log("http %s %s local=%s peer=%s", method, uri, local, peer);

	out = evhttp_request_get_output_buffer(req);
	if (strncmp(path, "/bytes/", 7) == 0 && cmd == EVHTTP_REQ_GET) {
		struct echo_bytes *eb;
		char	*end, len[32];
		unsigned long long n;

		errno = 0;
		n = strtoull(path + 7, &end, 10);
		if (errno != 0 || *end != '\0' || end == path + 7) {
			evhttp_send_error(req, HTTP_BADREQUEST, "bad length");
			return;
		}
		if ((eb = calloc(1, sizeof *eb)) == NULL) {
			evhttp_send_error(req, HTTP_INTERNAL, NULL);
			return;
		}
		eb->req = req;
		eb->total = n;
		LIST_INSERT_HEAD(&echo_all_bytes, eb, link);
		snprintf(len, sizeof len, "%llu", n);
		/* With Content-Length set, evhttp streams without chunking. */
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Length", len);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "application/octet-stream");
		evhttp_send_reply_start(req, HTTP_OK, "OK");
		echo_bytes_send(eb);
		return;
	}
	if (strcmp(path, "/sha256") == 0 && cmd == EVHTTP_REQ_POST) {
		struct evbuffer *in = evhttp_request_get_input_buffer(req);
		struct evbuffer_iovec vec[16];
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;
		char	 hex[2 * EVP_MAX_MD_SIZE + 1];
		EVP_MD_CTX *ctx = EVP_MD_CTX_new();
		int	 i, nv;

		EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
		while (evbuffer_get_length(in) > 0) {
			nv = evbuffer_peek(in, -1, NULL, vec, 16);
			if (nv > 16)
				nv = 16;
			for (i = 0; i < nv; i++) {
				EVP_DigestUpdate(ctx, vec[i].iov_base,
				    vec[i].iov_len);
				evbuffer_drain(in, vec[i].iov_len);
			}
		}
		EVP_DigestFinal_ex(ctx, md, &mdlen);
		EVP_MD_CTX_free(ctx);
		echo_hex(md, mdlen, hex);
		evbuffer_add_printf(out, "%s\n", hex);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "text/plain");
		evhttp_send_reply(req, HTTP_OK, "OK", out);
		return;
	}
	if (strncmp(path, "/status/", 8) == 0) {
		char	*end;
		long	 code = strtol(path + 8, &end, 10);

		if (*end != '\0' || code < 100 || code > 999) {
			evhttp_send_error(req, HTTP_BADREQUEST, "bad status");
			return;
		}
		/* 1xx, 204 and 304 carry no body (RFC 9110 §6.4.1). */
		if (code >= 200 && code != 204 && code != 304)
			evbuffer_add_printf(out, "status %ld\n", code);
		evhttp_send_reply(req, (int)code, "Status", out);
		return;
	}

	/* Anything else: describe the request. */
	{
		struct json_object *o = json_object_new_object(), *h;

		json_object_object_add(o, "pod", json_object_new_string(echo_name));
		json_object_object_add(o, "namespace",
		    json_object_new_string(echo_namespace));
		json_object_object_add(o, "local", json_object_new_string(local));
		json_object_object_add(o, "peer", json_object_new_string(peer));
		json_object_object_add(o, "method", json_object_new_string(method));
		json_object_object_add(o, "path", json_object_new_string(path));
		json_object_object_add(o, "uri", json_object_new_string(uri));
		h = json_object_new_object();
		for (kv = hdrs->tqh_first; kv != NULL; kv = kv->next.tqe_next)
			json_object_object_add(h, kv->key,
			    json_object_new_string(kv->value));
		json_object_object_add(o, "headers", h);
		evbuffer_add_printf(out, "%s\n", json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(o);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Content-Type", "application/json");
		evhttp_send_reply(req, HTTP_OK, "OK", out);
	}
}

/* ---- tcp / sink ---------------------------------------------------------- */

enum echo_mode { ECHO_HTTP, ECHO_TCP, ECHO_SINK, ECHO_UDP };

struct echo_conn {
	LIST_ENTRY(echo_conn) link;
	unsigned long	 id;
	enum echo_mode	 mode;
	struct bufferevent *bev;
	EVP_MD_CTX	*md;		/* sink only */
	uint64_t	 in_bytes;
	int		 closing;	/* client sent EOF; close once flushed */
};

static LIST_HEAD(, echo_conn) echo_all_conns = LIST_HEAD_INITIALIZER(echo_all_conns);

static void
echo_conn_free(struct echo_conn *c, const char *reason)
{
	LIST_REMOVE(c, link);
	echo_log("conn %lu closed in=%" PRIu64 " reason=%s", c->id,
	    c->in_bytes, reason);
	bufferevent_free(c->bev);
	EVP_MD_CTX_free(c->md);
	free(c);
}

static void
echo_conn_writecb(struct bufferevent *bev, void *arg)
{
	struct echo_conn *c = arg;

	if (c->closing) {
		/* Everything queued is in the kernel now. */
		echo_conn_free(c, "eof");
		return;
	}
	/* Drained below the watermark: read again (backpressure). */
	bufferevent_enable(bev, EV_READ);
}

static void
echo_conn_readcb(struct bufferevent *bev, void *arg)
{
	struct echo_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct evbuffer_iovec vec[16];
	int	 i, nv;

	c->in_bytes += evbuffer_get_length(in);
	if (c->mode == ECHO_TCP) {
		bufferevent_write_buffer(bev, in);
		if (evbuffer_get_length(bufferevent_get_output(bev)) >
		    ECHO_HIGH_WM)
			bufferevent_disable(bev, EV_READ);
		return;
	}
	while (evbuffer_get_length(in) > 0) {
		nv = evbuffer_peek(in, -1, NULL, vec, 16);
		if (nv > 16)
			nv = 16;
		for (i = 0; i < nv; i++) {
			EVP_DigestUpdate(c->md, vec[i].iov_base, vec[i].iov_len);
			evbuffer_drain(in, vec[i].iov_len);
		}
	}
}

static void
echo_conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct echo_conn *c = arg;

	if (what & BEV_EVENT_EOF) {
		/* Take whatever arrived with the FIN. */
		echo_conn_readcb(bev, c);
		if (c->mode == ECHO_SINK) {
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int mdlen = 0;
			char	 hex[2 * EVP_MAX_MD_SIZE + 1];

			EVP_DigestFinal_ex(c->md, md, &mdlen);
			echo_hex(md, mdlen, hex);
			echo_log("conn %lu sink sha256=%s bytes=%" PRIu64,
			    c->id, hex, c->in_bytes);
			evbuffer_add_printf(bufferevent_get_output(bev), "%s\n",
			    hex);
		}
		c->closing = 1;
		bufferevent_disable(bev, EV_READ);
		bufferevent_setwatermark(bev, EV_WRITE, 0, 0);
		if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
			echo_conn_free(c, "eof");
		else
			bufferevent_enable(bev, EV_WRITE);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		echo_conn_free(c, evutil_socket_error_to_string(
		    EVUTIL_SOCKET_ERROR()));
		return;
	}
}

static void
echo_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	enum echo_mode mode = *(enum echo_mode *)arg;
	struct event_base *base = evconnlistener_get_base(l);
	struct echo_conn *c;
	char	 local[96], peer[96];

	echo_fd_addrs(fd, local, peer, sizeof local);
	if ((c = calloc(1, sizeof *c)) == NULL) {
		evutil_closesocket(fd);
		return;
	}
	c->id = ++echo_conn_seq;
	c->mode = mode;
	LIST_INSERT_HEAD(&echo_all_conns, c, link);
	echo_log("conn %lu accepted local=%s peer=%s", c->id, local, peer);
	c->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL) {
		evutil_closesocket(fd);
		LIST_REMOVE(c, link);
		free(c);
		return;
	}
	if (mode == ECHO_SINK) {
		c->md = EVP_MD_CTX_new();
		EVP_DigestInit_ex(c->md, EVP_sha256(), NULL);
	}
	bufferevent_setcb(c->bev, echo_conn_readcb, echo_conn_writecb,
	    echo_conn_eventcb, c);
	/* Write callback fires when output drops to ECHO_CHUNK: resume. */
	bufferevent_setwatermark(c->bev, EV_WRITE, ECHO_CHUNK, 0);
	if (mode == ECHO_TCP)
		evbuffer_add_printf(bufferevent_get_output(c->bev),
		    "hello from %s local=%s peer=%s\n", echo_name, local, peer);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/* ---- udp ----------------------------------------------------------------- */

static void usage(void) __attribute__((noreturn));

static void
echo_udp_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	char	 in[65536], out[65536 + 256], peer[96];
	ssize_t	 n;
	int	 hl;

	for (;;) {
		sl = sizeof ss;
		n = recvfrom(fd, in, sizeof in, MSG_DONTWAIT,
		    (struct sockaddr *)&ss, &sl);
		if (n == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR)
				echo_log("udp recvfrom: %s", strerror(errno));
			return;
		}
		echo_addr_str(&ss, peer, sizeof peer);
		echo_log("udp datagram len=%zd peer=%s", n, peer);
		hl = snprintf(out, sizeof out, "%s peer=%s: ", echo_name, peer);
		if (hl < 0 || (size_t)hl + (size_t)n > sizeof out)
			continue;
		memcpy(out + hl, in, (size_t)n);
		/* A socket bound to the wildcard answers from the address
		 * the routing picks: the pod's only address. */
		if (sendto(fd, out, (size_t)hl + (size_t)n, 0,
		    (struct sockaddr *)&ss, sl) == -1)
			echo_log("udp sendto %s: %s", peer, strerror(errno));
	}
}

static int
echo_udp_send(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "to", required_argument, NULL, 't' },
		{ "message", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'w' },
		{ "tries", required_argument, NULL, 'r' },
		{ "sport", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	struct sockaddr_storage ss, src;
	struct pollfd pfd;
	const char *to = NULL, *msg = "ping";
	char	 buf[65536];
	int	 sslen = sizeof ss, ch, fd, timeout = 1000, tries = 1, i;
	int	 sport = 0, one = 1;
	ssize_t	 n;

	optind = 2;
	while ((ch = getopt_long(argc, argv, "t:m:w:r:s:", opts, NULL)) != -1) {
		switch (ch) {
		case 't':
			to = optarg;
			break;
		case 'm':
			msg = optarg;
			break;
		case 'w':
			timeout = atoi(optarg);
			break;
		case 'r':
			tries = atoi(optarg);
			break;
		case 's':
			sport = atoi(optarg);
			break;
		default:
			usage();
		}
	}
	if (to == NULL || timeout <= 0 || tries <= 0 || tries > 1000 ||
	    sport < 0 || sport > 65535)
		usage();
	memset(&ss, 0, sizeof ss);
	if (evutil_parse_sockaddr_port(to, (struct sockaddr *)&ss, &sslen) != 0) {
		fprintf(stderr, "weft-echo: bad address %s\n", to);
		return 2;
	}
	/* Connected: only the server's answer is read, and an ICMP error
	 * comes back as ECONNREFUSED. */
	memset(&src, 0, sizeof src);
	src.ss_family = ss.ss_family;
	if (ss.ss_family == AF_INET)
		((struct sockaddr_in *)&src)->sin_port = htons((uint16_t)sport);
	else
		((struct sockaddr_in6 *)&src)->sin6_port =
		    htons((uint16_t)sport);
	if ((fd = socket(ss.ss_family, SOCK_DGRAM, 0)) == -1 ||
	    (sport != 0 && (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof one) == -1 || bind(fd, (struct sockaddr *)&src,
	    ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) :
	    sizeof(struct sockaddr_in6)) == -1)) ||
	    connect(fd, (struct sockaddr *)&ss, (socklen_t)sslen) == -1) {
		fprintf(stderr, "weft-echo: %s: %s\n", to, strerror(errno));
		return 3;
	}
	pfd.fd = fd;
	pfd.events = POLLIN;
	for (i = 0; i < tries; i++) {
		struct timespec t0, t1;
		int left = timeout / tries, r;

		if (send(fd, msg, strlen(msg), 0) == -1) {
			fprintf(stderr, "weft-echo: send to %s: %s\n", to,
			    strerror(errno));
			close(fd);
			return 3;
		}
		clock_gettime(CLOCK_MONOTONIC, &t0);
		while (left > 0) {
			r = poll(&pfd, 1, left);
			if (r == -1 && errno != EINTR)
				break;
			if (r > 0) {
				n = recv(fd, buf, sizeof buf - 1, 0);
				if (n == -1) {
					fprintf(stderr, "weft-echo: %s: %s\n",
					    to, strerror(errno));
					close(fd);
					return 3;
				}
				buf[n] = '\0';
				printf("%s\n", buf);
				close(fd);
				return 0;
			}
			clock_gettime(CLOCK_MONOTONIC, &t1);
			left = timeout / tries - (int)((t1.tv_sec - t0.tv_sec) *
			    1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000);
		}
	}
	fprintf(stderr, "weft-echo: no answer from %s within %d ms\n", to,
	    timeout);
	close(fd);
	return 1;
}

static void
echo_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	echo_log("signal %d, exiting", (int)sig);
	event_base_loopexit(arg, NULL);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: weft-echo http|tcp|sink|udp --port PORT [--name NAME] "
	    "[--addr ADDR]\n"
	    "       weft-echo udp-send --to HOST:PORT [--message M] "
	    "[--timeout MS] [--tries N] [--sport P]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "port", required_argument, NULL, 'p' },
		{ "name", required_argument, NULL, 'n' },
		{ "addr", required_argument, NULL, 'a' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	static enum echo_mode mode;
	struct event_base *base;
	struct event *sigint, *sigterm;
	struct evhttp *http = NULL;
	struct evconnlistener *l = NULL;
	struct event *udp_ev = NULL;
	evutil_socket_t udp_fd = -1;
	struct sockaddr_storage ss;
	int	 sslen = sizeof ss, ch, port = -1;
	const char *addr = "0.0.0.0", *modestr;
	char	 host[256], addrport[300];

	if (argc < 2)
		usage();
	modestr = argv[1];
	if (strcmp(modestr, "http") == 0)
		mode = ECHO_HTTP;
	else if (strcmp(modestr, "tcp") == 0)
		mode = ECHO_TCP;
	else if (strcmp(modestr, "sink") == 0)
		mode = ECHO_SINK;
	else if (strcmp(modestr, "udp") == 0)
		mode = ECHO_UDP;
	else if (strcmp(modestr, "udp-send") == 0)
		return echo_udp_send(argc, argv);
	else
		usage();
	echo_name = getenv("POD_NAME");
	echo_namespace = getenv("POD_NAMESPACE");
	optind = 2;
	while ((ch = getopt_long(argc, argv, "p:n:a:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'p':
			port = atoi(optarg);
			break;
		case 'n':
			echo_name = optarg;
			break;
		case 'a':
			addr = optarg;
			break;
		default:
			usage();
		}
	}
	if (port <= 0 || port > 65535)
		usage();
	if (echo_name == NULL || *echo_name == '\0') {
		if (gethostname(host, sizeof host) == -1)
			snprintf(host, sizeof host, "unknown");
		host[sizeof host - 1] = '\0';
		echo_name = host;
	}
	if (echo_namespace == NULL)
		echo_namespace = "";

	signal(SIGPIPE, SIG_IGN);
	if ((base = event_base_new()) == NULL) {
		echo_log("event_base_new failed");
		return 1;
	}
	sigint = evsignal_new(base, SIGINT, echo_signal_cb, base);
	sigterm = evsignal_new(base, SIGTERM, echo_signal_cb, base);
	event_add(sigint, NULL);
	event_add(sigterm, NULL);

	if (mode == ECHO_HTTP) {
		http = evhttp_new(base);
		evhttp_set_allowed_methods(http, EVHTTP_REQ_GET |
		    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_HEAD |
		    EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS);
		evhttp_set_max_body_size(http, (ev_ssize_t)1 << 32);
		evhttp_set_timeout(http, 600);
		evhttp_set_gencb(http, echo_http_cb, NULL);
		if (evhttp_bind_socket(http, addr, (ev_uint16_t)port) != 0) {
			echo_log("cannot listen on %s:%d: %s", addr, port,
			    strerror(errno));
			return 1;
		}
	} else {
		snprintf(addrport, sizeof addrport,
		    strchr(addr, ':') ? "[%s]:%d" : "%s:%d", addr, port);
		if (evutil_parse_sockaddr_port(addrport, (struct sockaddr *)&ss,
		    &sslen) != 0) {
			echo_log("bad address %s", addrport);
			return 2;
		}
		if (mode == ECHO_UDP) {
			udp_fd = socket(ss.ss_family, SOCK_DGRAM, 0);
			if (udp_fd == -1 ||
			    evutil_make_socket_nonblocking(udp_fd) == -1 ||
			    bind(udp_fd, (struct sockaddr *)&ss,
			    (socklen_t)sslen) == -1) {
				echo_log("cannot bind udp %s: %s", addrport,
				    strerror(errno));
				return 1;
			}
			udp_ev = event_new(base, udp_fd, EV_READ | EV_PERSIST,
			    echo_udp_cb, NULL);
			event_add(udp_ev, NULL);
		} else {
			l = evconnlistener_new_bind(base, echo_accept_cb, &mode,
			    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
			    (struct sockaddr *)&ss, sslen);
			if (l == NULL) {
				echo_log("cannot listen on %s: %s", addrport,
				    strerror(errno));
				return 1;
			}
		}
	}
	echo_log("weft-echo %s listening on %s:%d as %s", modestr, addr, port,
	    echo_name);
	event_base_dispatch(base);
	while (!LIST_EMPTY(&echo_all_conns))
		echo_conn_free(LIST_FIRST(&echo_all_conns), "exit");
	if (http != NULL)
		evhttp_free(http);	/* frees its connections and requests */
	while (!LIST_EMPTY(&echo_all_bytes)) {
		struct echo_bytes *eb = LIST_FIRST(&echo_all_bytes);

		LIST_REMOVE(eb, link);
		free(eb);
	}
	if (l != NULL)
		evconnlistener_free(l);
	if (udp_ev != NULL)
		event_free(udp_ev);
	if (udp_fd != -1)
		evutil_closesocket(udp_fd);
	event_free(sigint);
	event_free(sigterm);
	event_base_free(base);
	return 0;
}
