/* The node's side of the control protocol (DESIGN §6): a long-poll for
 * GET /v1/nodes/<name>/snapshot?have=<gen>, reporting the generation the
 * node has applied with each request.  Runs on the node's control loop. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "weft/log.h"
#include "node/client.h"

struct weft_client {
	struct event_base *base;		/* borrowed */
	struct evhttp_connection *conn;		/* owned */
	struct event	*retry;			/* owned */
	char		*host;
	int		 port;
	char		*node_name;
	char		*auth;			/* "Bearer <token>" */
	int		 poll_timeout;		/* seconds the server may hold */
	uint64_t	 have;
	int		 backoff_ms;
	bool		 in_flight;
	bool		 failing;		/* last attempt failed (logged) */
	weft_client_cb	 cb;
	void		*arg;
};

#define CLIENT_BACKOFF_MIN_MS	250
#define CLIENT_BACKOFF_MAX_MS	10000

static void client_request(struct weft_client *c);

static void
client_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	client_request(arg);
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
client_response_cb(struct evhttp_request *req, void *arg)
{
	struct weft_client *c = arg;
	struct evbuffer *body;
	char what[128], *text;
	size_t len;
	int code;

	c->in_flight = false;
	if (req == NULL) {
		client_fail(c, "connection failed");
		return;
	}
	code = evhttp_request_get_response_code(req);
	if (code == 0) {
		client_fail(c, "connection failed");
		return;
	}
	if (code == 304) {
		c->backoff_ms = 0;
		client_schedule(c, 0);
		return;
	}
	if (code != 200) {
		snprintf(what, sizeof(what), "HTTP %d %s", code,
		    evhttp_request_get_response_code_line(req) ?
		    evhttp_request_get_response_code_line(req) : "");
		client_fail(c, what);
		return;
	}
	body = evhttp_request_get_input_buffer(req);
	len = evbuffer_get_length(body);
	if ((text = malloc(len + 1)) == NULL) {
		client_fail(c, "out of memory");
		return;
	}
	evbuffer_remove(body, text, len);
	text[len] = '\0';
	if (c->failing)
		log_info("controller %s:%d reachable again", c->host, c->port);
	c->failing = false;
	c->backoff_ms = 0;
	/* The callback applies the snapshot and calls weft_client_set_have(). */
	if (c->cb(text, len, c->arg) == -1) {
		free(text);
		client_fail(c, "snapshot rejected");
		return;
	}
	free(text);
	client_schedule(c, 0);
}

static void
client_request(struct weft_client *c)
{
	struct evhttp_request *req;
	struct evkeyvalq *h;
	char uri[512];

	if (c->in_flight)
		return;
	if ((req = evhttp_request_new(client_response_cb, c)) == NULL) {
		client_fail(c, "out of memory");
		return;
	}
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", c->host);
	evhttp_add_header(h, "Authorization", c->auth);
	evhttp_add_header(h, "Accept", "application/json");
	snprintf(uri, sizeof(uri), "/v1/nodes/%s/snapshot?have=%llu",
	    c->node_name, (unsigned long long)c->have);
	c->in_flight = true;
	if (evhttp_make_request(c->conn, req, EVHTTP_REQ_GET, uri) == -1) {
		/* evhttp_make_request frees req on failure. */
		c->in_flight = false;
		client_fail(c, "cannot send request");
	}
}

struct weft_client *
weft_client_new(struct event_base *base, const char *url,
    const char *node_name, const char *token, int poll_timeout,
    weft_client_cb cb, void *arg, char **err)
{
	struct weft_client *c = NULL;
	struct evhttp_uri *u = NULL;
	const char *scheme, *host;

	*err = NULL;
	if ((u = evhttp_uri_parse(url)) == NULL ||
	    (scheme = evhttp_uri_get_scheme(u)) == NULL ||
	    (host = evhttp_uri_get_host(u)) == NULL) {
		if (asprintf(err, "controller URL %s: not a URL", url) == -1)
			*err = NULL;
		goto fail;
	}
	if (strcmp(scheme, "http") != 0) {
		if (asprintf(err, "controller URL %s: only http:// is "
		    "supported by this build", url) == -1)
			*err = NULL;
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto oom;
	c->base = base;
	c->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 15010;
	c->poll_timeout = poll_timeout;
	c->cb = cb;
	c->arg = arg;
	if ((c->host = strdup(host)) == NULL ||
	    (c->node_name = strdup(node_name)) == NULL ||
	    asprintf(&c->auth, "Bearer %s", token) == -1)
		goto oom;
	if ((c->conn = evhttp_connection_base_new(base, NULL, c->host,
	    (unsigned short)c->port)) == NULL ||
	    (c->retry = evtimer_new(base, client_retry_cb, c)) == NULL)
		goto oom;
	/* The server holds a poll for poll_timeout; allow for slack. */
	evhttp_connection_set_timeout(c->conn, poll_timeout + 15);
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
weft_client_set_have(struct weft_client *c, uint64_t have)
{
	c->have = have;
}

void
weft_client_free(struct weft_client *c)
{
	if (c == NULL)
		return;
	if (c->retry != NULL)
		event_free(c->retry);
	if (c->conn != NULL)
		evhttp_connection_free(c->conn);
	free(c->host);
	free(c->node_name);
	free(c->auth);
	free(c);
}
