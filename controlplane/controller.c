/* `weft controller`: sources -> model -> one snapshot per node, served by
 * long-poll over HTTP (DESIGN §6, §7).
 *
 * One event loop.  The generation counter continues from the state
 * directory (ctrl_generation_restore) and moves only when the snapshot
 * content changes: a reload whose model
 * encodes to the same bytes as the current one changes nothing.  Each
 * request's have=G is the node's report of what it applied (the node asks
 * for have=G only after applying G), which is what `weft ctl status/wait`
 * show.
 *
 * The transport is plain HTTP for now; everything TLS will touch is in
 * ctrl_http_open() (evhttp_set_bevcb will go there). */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "weft/controller.h"
#include "weft/log.h"
#include "weft/proxy.h"

#define CTRL_MAX_HELD		4096	/* parked long-polls, all nodes */

struct ctrl_token {
	char		*token;		/* owned */
	char		*node;		/* owned; NULL: admin */
};

struct ctrl_node {
	char		*name;		/* owned */
	uint64_t	 applied;	/* last have= reported; 0: nothing */
	time_t		 last_seen;	/* 0: never polled */
	bool		 known;		/* a Node object exists */
};

struct ctrl_held {
	TAILQ_ENTRY(ctrl_held) entry;
	struct controller *c;
	struct evhttp_request *req;	/* borrowed until replied/freed */
	struct evhttp_connection *evcon; /* only compared, never used */
	char		*node;		/* owned */
	struct event	*timer;		/* owned */
	struct event	*ev_eof;	/* owned; NULL if not watched */
};

struct controller_config {
	char		*source_dir;	/* owned */
	char		*listen_addr;	/* owned */
	uint16_t	 listen_port;
	int		 poll_timeout;	/* seconds */
	char		*trust_domain;	/* owned */
	char		*tokens_file;	/* owned */
	char		*state_dir;	/* owned */
};

struct controller {
	struct controller_config conf;
	struct event_base *base;	/* owned */
	struct evhttp	*http;		/* owned */
	struct weft_source_dir *src;	/* owned */
	struct weft_model *model;	/* owned; NULL before the first load */
	char		*model_enc;	/* owned: model encoded at gen 0 */
	uint64_t	 generation;
	struct weft_errors errors;	/* of the last load */
	struct ctrl_token *tokens;	/* owned */
	size_t		 n_tokens;
	struct timespec	 tokens_mtime;	/* of the file the tokens came from */
	off_t		 tokens_size;
	struct ctrl_node *nodes;	/* owned, sorted by name */
	size_t		 n_nodes;
	TAILQ_HEAD(, ctrl_held) held;
	size_t		 n_held;
};

/* --- tokens ---------------------------------------------------------------- */

static void
tokens_free(struct ctrl_token *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (t[i].token != NULL)
			explicit_bzero(t[i].token, strlen(t[i].token));
		free(t[i].token);
		free(t[i].node);
	}
	free(t);
}

/* Parse the tokens file: "<token> node/<name>" or "<token> admin" per line,
 * '#' comments.  Returns 0, or -1 with every problem in errs. */
static int
tokens_load(const char *path, struct ctrl_token **out, size_t *nout,
    struct weft_errors *errs)
{
	FILE *f;
	char *line = NULL, *tok, *who, *extra, *save;
	size_t cap = 0, n = 0, lineno = 0;
	struct ctrl_token *t = NULL, *nt;
	size_t before = errs->n;

	*out = NULL;
	*nout = 0;
	if ((f = fopen(path, "re")) == NULL) {
		weft_errors_add(errs, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (getline(&line, &cap, f) != -1) {
		lineno++;
		if ((tok = strchr(line, '#')) != NULL)
			*tok = '\0';
		if ((tok = strtok_r(line, " \t\r\n", &save)) == NULL)
			continue;
		who = strtok_r(NULL, " \t\r\n", &save);
		extra = strtok_r(NULL, " \t\r\n", &save);
		if (who == NULL || extra != NULL || (strcmp(who, "admin") != 0 &&
		    (strncmp(who, "node/", 5) != 0 ||
		    !weft_name_is_dns_subdomain(who + 5)))) {
			weft_errors_add(errs, "%s:%zu: expected \"<token> "
			    "node/<name>\" or \"<token> admin\"", path, lineno);
			continue;
		}
		if ((nt = reallocarray(t, n + 1, sizeof(*t))) == NULL)
			goto oom;
		t = nt;
		t[n].token = strdup(tok);
		t[n].node = strcmp(who, "admin") == 0 ? NULL : strdup(who + 5);
		n++;
		if (t[n - 1].token == NULL ||
		    (strcmp(who, "admin") != 0 && t[n - 1].node == NULL))
			goto oom;
	}
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	fclose(f);
	if (errs->n > before) {
		tokens_free(t, n);
		return -1;
	}
	if (n == 0) {
		weft_errors_add(errs, "%s: no tokens", path);
		return -1;
	}
	*out = t;
	*nout = n;
	return 0;
oom:
	free(line);
	fclose(f);
	tokens_free(t, n);
	weft_errors_add(errs, "%s: out of memory", path);
	return -1;
}

/* Compare without an early exit, so timing says nothing about a prefix. */
static bool
token_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i;
	unsigned char d = la != lb;

	for (i = 0; i < la && i < lb; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

/* Re-read the tokens file when it changed on disk, so that nodes can be
 * added or retired without a restart.  A file that no longer parses keeps the
 * tokens in force (and says why). */
static void
tokens_refresh(struct controller *c)
{
	struct weft_errors errs = { NULL, 0, 0 };
	struct ctrl_token *t;
	struct stat st;
	size_t n, i;

	if (c->conf.tokens_file == NULL || stat(c->conf.tokens_file, &st) == -1)
		return;
	if (st.st_mtim.tv_sec == c->tokens_mtime.tv_sec &&
	    st.st_mtim.tv_nsec == c->tokens_mtime.tv_nsec &&
	    st.st_size == c->tokens_size)
		return;
	c->tokens_mtime = st.st_mtim;
	c->tokens_size = st.st_size;
	if (tokens_load(c->conf.tokens_file, &t, &n, &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			log_warnx("%s; keeping the tokens in force", errs.msgs[i]);
		weft_errors_clear(&errs);
		return;
	}
	tokens_free(c->tokens, c->n_tokens);
	c->tokens = t;
	c->n_tokens = n;
	log_info("tokens reloaded from %s: %zu token(s)", c->conf.tokens_file, n);
}

static const struct ctrl_token *
token_find(struct controller *c, const char *token)
{
	const struct ctrl_token *found = NULL;
	size_t i;

	tokens_refresh(c);

	for (i = 0; i < c->n_tokens; i++)
		if (token_equal(c->tokens[i].token, token) && found == NULL)
			found = &c->tokens[i];
	return found;
}

/* --- nodes ------------------------------------------------------------------ */

static struct ctrl_node *
node_get(struct controller *c, const char *name, bool create)
{
	struct ctrl_node *n;
	size_t i;

	for (i = 0; i < c->n_nodes; i++) {
		int r = strcmp(c->nodes[i].name, name);

		if (r == 0)
			return &c->nodes[i];
		if (r > 0)
			break;
	}
	if (!create)
		return NULL;
	if ((n = reallocarray(c->nodes, c->n_nodes + 1, sizeof(*n))) == NULL)
		return NULL;
	c->nodes = n;
	memmove(&n[i + 1], &n[i], (c->n_nodes - i) * sizeof(*n));
	memset(&n[i], 0, sizeof(*n));
	if ((n[i].name = strdup(name)) == NULL) {
		memmove(&n[i], &n[i + 1], (c->n_nodes - i) * sizeof(*n));
		return NULL;
	}
	c->n_nodes++;
	return &n[i];
}

/* Node objects of the model are "known"; others stay listed only if they
 * ever polled. */
static void
nodes_sync(struct controller *c)
{
	size_t i, j;

	for (i = 0; i < c->n_nodes; i++)
		c->nodes[i].known = false;
	for (i = 0; i < c->model->all.n_nodes; i++) {
		struct ctrl_node *n = node_get(c, c->model->all.nodes[i].name,
		    true);

		if (n == NULL)
			log_warnx("%s: out of memory", __func__);
		else
			n->known = true;
	}
	for (i = j = 0; i < c->n_nodes; i++) {
		if (!c->nodes[i].known && c->nodes[i].last_seen == 0) {
			free(c->nodes[i].name);
			continue;
		}
		c->nodes[j++] = c->nodes[i];
	}
	c->n_nodes = j;
}

/* --- replies ----------------------------------------------------------------- */

static void
reply_json(struct evhttp_request *req, int code, const char *reason,
    const char *body)
{
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	if (b != NULL)
		evbuffer_add_printf(b, "%s\n", body);
	evhttp_send_reply(req, code, reason, b);
	if (b != NULL)
		evbuffer_free(b);
}

static void
reply_error(struct evhttp_request *req, int code, const char *reason,
    const char *msg)
{
	struct json_object *o = json_object_new_object();

	if (o != NULL)
		json_object_object_add(o, "error", json_object_new_string(msg));
	reply_json(req, code, reason, o != NULL ?
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE) : "{\"error\":\"?\"}");
	json_object_put(o);
}

static void
reply_snapshot(struct controller *c, struct evhttp_request *req,
    const char *node)
{
	struct weft_snapshot view;
	char gen[24], *json;

	weft_model_view(c->model, node, c->generation, c->conf.trust_domain,
	    &view);
	if ((json = weft_snapshot_encode(&view)) == NULL) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	snprintf(gen, sizeof(gen), "%" PRIu64, c->generation);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Weft-Generation", gen);
	reply_json(req, 200, "OK", json);
	log_debug("sent generation %" PRIu64 " to node %s", c->generation,
	    node);
	free(json);
}

/* --- long-poll ----------------------------------------------------------------- */

static void
held_free(struct ctrl_held *h)
{
	TAILQ_REMOVE(&h->c->held, h, entry);
	h->c->n_held--;
	event_free(h->timer);
	if (h->ev_eof != NULL)
		event_free(h->ev_eof);
	free(h->node);
	free(h);
}

static void
held_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct ctrl_held *h = arg;
	struct evhttp_request *req = h->req;
	char gen[24];

	snprintf(gen, sizeof(gen), "%" PRIu64, h->c->generation);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "X-Weft-Generation", gen);
	evhttp_connection_set_closecb(h->evcon, NULL, NULL);
	held_free(h);
	evhttp_send_reply(req, 304, "Not Modified", NULL);
}

/* The client went away while its request was parked.  libevent detaches a
 * request the user has not answered yet (req->evcon = NULL) instead of
 * freeing it, so it is ours to free. */
static void
held_closed(struct evhttp_connection *evcon, void *arg)
{
	struct controller *c = arg;
	struct ctrl_held *h, *next;

	for (h = TAILQ_FIRST(&c->held); h != NULL; h = next) {
		next = TAILQ_NEXT(h, entry);
		if (h->evcon != evcon)
			continue;
		log_debug("node %s: long-poll connection closed", h->node);
		evhttp_request_free(h->req);
		held_free(h);
	}
}

/* libevent 2.1 does not read from a connection while its request is
 * unanswered, so it never notices the client leaving; we watch the socket
 * ourselves.  EOF or an error: the client is gone, free the connection
 * (which frees the parked request).  Bytes (a pipelined request): leave
 * them to libevent and stop watching; the poll timeout ends the wait. */
static void
held_readable(evutil_socket_t fd, short what, void *arg)
{
	struct ctrl_held *h = arg;
	struct evhttp_connection *evcon = h->evcon;
	ssize_t r;
	char b;

	r = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (r == -1 && (errno == EAGAIN || errno == EINTR)) {
		event_add(h->ev_eof, NULL);
		return;
	}
	if (r > 0)
		return;
	log_debug("node %s: long-poll connection closed", h->node);
	evhttp_connection_set_closecb(evcon, NULL, NULL);
	held_free(h);
	evhttp_connection_free(evcon);
}

static void
held_wake_all(struct controller *c)
{
	struct ctrl_held *h;
	struct evhttp_request *req;
	char *node;

	while ((h = TAILQ_FIRST(&c->held)) != NULL) {
		req = h->req;
		node = h->node;
		h->node = NULL;
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		held_free(h);
		reply_snapshot(c, req, node);
		free(node);
	}
}

static int
held_add(struct controller *c, struct evhttp_request *req, const char *node)
{
	struct ctrl_held *h;
	struct timeval tv = { c->conf.poll_timeout, 0 };
	evutil_socket_t fd;

	if (c->n_held >= CTRL_MAX_HELD)
		return -1;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		return -1;
	h->c = c;
	h->req = req;
	h->evcon = evhttp_request_get_connection(req);
	if ((h->node = strdup(node)) == NULL ||
	    (h->timer = evtimer_new(c->base, held_timeout, h)) == NULL ||
	    evtimer_add(h->timer, &tv) == -1) {
		if (h->timer != NULL)
			event_free(h->timer);
		free(h->node);
		free(h);
		return -1;
	}
	TAILQ_INSERT_TAIL(&c->held, h, entry);
	c->n_held++;
	evhttp_connection_set_closecb(h->evcon, held_closed, c);
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(h->evcon));
	if (fd != -1 && (h->ev_eof = event_new(c->base, fd, EV_READ,
	    held_readable, h)) != NULL)
		event_add(h->ev_eof, NULL);
	return 0;
}

/* --- handlers ------------------------------------------------------------------ */

/* The token's entry, or NULL after replying 401. */
static const struct ctrl_token *
authenticate(struct controller *c, struct evhttp_request *req)
{
	const char *h;
	const struct ctrl_token *t;

	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "missing bearer token");
		return NULL;
	}
	h += 7;
	while (*h == ' ')
		h++;
	if ((t = token_find(c, h)) == NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "unknown token");
		return NULL;
	}
	return t;
}

/* have=<gen> from the query: 0 when absent; -1 when malformed. */
static int
query_have(const struct evhttp_uri *uri, uint64_t *have)
{
	struct evkeyvalq q;
	const char *query = evhttp_uri_get_query(uri), *v;
	char *end;
	int rc = 0;

	*have = 0;
	if (query == NULL)
		return 0;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) == -1)
		return -1;
	if ((v = evhttp_find_header(&q, "have")) != NULL) {
		errno = 0;
		if (*v < '0' || *v > '9')
			rc = -1;
		else {
			unsigned long long n = strtoull(v, &end, 10);

			if (errno != 0 || *end != '\0')
				rc = -1;
			*have = n;
		}
	}
	evhttp_clear_headers(&q);
	return rc;
}

static void
handle_snapshot(struct controller *c, struct evhttp_request *req,
    const struct evhttp_uri *uri, const char *node)
{
	const struct ctrl_token *t;
	struct ctrl_node *n;
	uint64_t have;
	char msg[300];

	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL && strcmp(t->node, node) != 0) {
		snprintf(msg, sizeof(msg), "token of node/%s may not read "
		    "node/%s", t->node, node);
		reply_error(req, 403, "Forbidden", msg);
		return;
	}
	if (!weft_name_is_dns_subdomain(node)) {
		reply_error(req, 400, "Bad Request", "invalid node name");
		return;
	}
	if (query_have(uri, &have) == -1) {
		reply_error(req, 400, "Bad Request",
		    "have: expected a generation number");
		return;
	}
	if ((n = node_get(c, node, true)) != NULL) {
		if (n->applied != have || n->last_seen == 0)
			log_info("node %s: applied generation %" PRIu64
			    " (current %" PRIu64 ")", node, have,
			    c->generation);
		n->applied = have;
		n->last_seen = time(NULL);
	}
	/* have != generation, not have < generation: after a controller
	 * restart the counter starts again and a node may be ahead */
	if (have != c->generation) {
		reply_snapshot(c, req, node);
		return;
	}
	if (held_add(c, req, node) == -1)
		reply_error(req, 503, "Service Unavailable",
		    "too many pending requests");
}

static void
format_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
handle_status(struct controller *c, struct evhttp_request *req)
{
	struct json_object *root, *nodes, *errs, *o;
	const struct ctrl_token *t;
	char buf[32];
	size_t i;

	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL) {
		reply_error(req, 403, "Forbidden", "status needs an admin token");
		return;
	}
	root = json_object_new_object();
	nodes = json_object_new_array();
	errs = json_object_new_array();
	if (root == NULL || nodes == NULL || errs == NULL) {
		json_object_put(root);
		json_object_put(nodes);
		json_object_put(errs);
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	json_object_object_add(root, "generation",
	    json_object_new_int64((int64_t)c->generation));
	json_object_object_add(root, "nodes", nodes);
	json_object_object_add(root, "errors", errs);
	for (i = 0; i < c->n_nodes; i++) {
		struct ctrl_node *n = &c->nodes[i];

		if ((o = json_object_new_object()) == NULL)
			continue;
		json_object_object_add(o, "name",
		    json_object_new_string(n->name));
		json_object_object_add(o, "applied",
		    json_object_new_int64((int64_t)n->applied));
		if (n->last_seen != 0) {
			format_time(n->last_seen, buf, sizeof(buf));
			json_object_object_add(o, "last_seen",
			    json_object_new_string(buf));
		} else
			json_object_object_add(o, "last_seen", NULL);
		json_object_object_add(o, "known",
		    json_object_new_boolean(n->known));
		json_object_array_add(nodes, o);
	}
	for (i = 0; i < c->errors.n; i++)
		json_object_array_add(errs,
		    json_object_new_string(c->errors.msgs[i]));
	reply_json(req, 200, "OK", json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(root);
}

static void
ctrl_request(struct evhttp_request *req, void *arg)
{
	struct controller *c = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	char node[256];
	size_t len;

	if (path == NULL) {
		reply_error(req, 400, "Bad Request", "bad URI");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_error(req, 405, "Method Not Allowed", "only GET");
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		struct evbuffer *b = evbuffer_new();

		if (b != NULL)
			evbuffer_add_printf(b, "ok\n");
		evhttp_send_reply(req, 200, "OK", b);
		if (b != NULL)
			evbuffer_free(b);
		return;
	}
	if (strcmp(path, "/v1/status") == 0) {
		handle_status(c, req);
		return;
	}
	if (strncmp(path, "/v1/nodes/", 10) == 0 &&
	    (len = strcspn(path + 10, "/")) > 0 && len < sizeof(node) &&
	    strcmp(path + 10 + len, "/snapshot") == 0) {
		memcpy(node, path + 10, len);
		node[len] = '\0';
		handle_snapshot(c, req, uri, node);
		return;
	}
	reply_error(req, 404, "Not Found", "no such resource");
}

/* --- source --------------------------------------------------------------------- */

/* The generation survives restarts: a node that applied generation G of a
 * previous run must never be told "nothing new" by a controller whose own
 * count restarted and reached G again with other content.  The last value
 * is kept in the state directory; without one, counting starts from the
 * clock, which only moves forward across restarts. */
#define CTRL_GENERATION_FILE	"generation"

static uint64_t
ctrl_generation_restore(struct controller *c)
{
	char path[4096], buf[32];
	unsigned long long g = 0;
	FILE *f;

	if (c->conf.state_dir != NULL) {
		snprintf(path, sizeof(path), "%s/" CTRL_GENERATION_FILE,
		    c->conf.state_dir);
		if ((f = fopen(path, "re")) != NULL) {
			if (fgets(buf, sizeof(buf), f) != NULL)
				g = strtoull(buf, NULL, 10);
			fclose(f);
			if (g > 0)
				return g;
		} else if (errno == ENOENT)
			return 0;	/* a new state directory: count from 1 */
	}
	return (uint64_t)time(NULL);
}

static void
ctrl_generation_save(struct controller *c)
{
	char path[4096], tmp[4096 + 8];
	FILE *f;

	if (c->conf.state_dir == NULL)
		return;
	snprintf(path, sizeof(path), "%s/" CTRL_GENERATION_FILE,
	    c->conf.state_dir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "we")) == NULL) {
		log_warn("cannot save the generation in %s", c->conf.state_dir);
		return;
	}
	fprintf(f, "%" PRIu64 "\n", c->generation);
	if (fclose(f) != 0 || rename(tmp, path) == -1)
		log_warn("cannot save the generation in %s", c->conf.state_dir);
}

/* Load the source into a new model; swap it in and bump the generation when
 * its content differs from the current one.  Returns 0, or -1 when nothing
 * could be loaded (the current state stays). */
static int
ctrl_load(struct controller *c)
{
	struct weft_manifest_docs docs = { NULL, 0 };
	struct weft_errors errs = { NULL, 0, 0 };
	struct weft_snapshot view;
	struct weft_model *m;
	char *enc;
	size_t i;

	if (weft_source_dir_load(c->src, &docs, &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			log_warnx("%s", errs.msgs[i]);
		weft_errors_clear(&errs);
		return -1;
	}
	m = weft_model_build(&docs, &errs);
	weft_manifest_docs_clear(&docs);
	if (m == NULL) {
		log_warnx("%s: out of memory; keeping generation %" PRIu64,
		    __func__, c->generation);
		weft_errors_clear(&errs);
		return -1;
	}
	weft_model_view(m, "", 0, c->conf.trust_domain, &view);
	if ((enc = weft_snapshot_encode(&view)) == NULL) {
		log_warnx("%s: out of memory; keeping generation %" PRIu64,
		    __func__, c->generation);
		weft_model_free(m);
		weft_errors_clear(&errs);
		return -1;
	}
	for (i = 0; i < errs.n; i++)
		log_warnx("%s", errs.msgs[i]);
	weft_errors_clear(&c->errors);
	c->errors = errs;
	if (c->model_enc != NULL && strcmp(enc, c->model_enc) == 0) {
		log_info("source %s reloaded: no change (generation %" PRIu64
		    ", %zu error(s))", c->conf.source_dir, c->generation,
		    c->errors.n);
		free(enc);
		weft_model_free(m);
		return 0;
	}
	weft_model_free(c->model);
	free(c->model_enc);
	c->model = m;
	c->model_enc = enc;
	c->generation++;
	ctrl_generation_save(c);
	nodes_sync(c);
	log_info("generation %" PRIu64 ": %zu node(s), %zu namespace(s), "
	    "%zu pod(s), %zu service(s), %zu other object(s), %zu error(s)",
	    c->generation, m->all.n_nodes, m->all.n_namespaces, m->all.n_pods,
	    m->all.n_services, m->n_others, c->errors.n);
	held_wake_all(c);
	return 0;
}

static void
ctrl_source_changed(void *arg)
{
	(void)ctrl_load(arg);
}

/* --- lifecycle ------------------------------------------------------------------- */

/* The listening side of the transport (plain HTTP today). */
static int
ctrl_http_open(struct controller *c)
{
	if ((c->http = evhttp_new(c->base)) == NULL)
		return -1;
	evhttp_set_allowed_methods(c->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_max_headers_size(c->http, 16384);
	evhttp_set_max_body_size(c->http, 1 << 20);
	/* longer than a long-poll, or libevent drops parked requests */
	evhttp_set_timeout(c->http, c->conf.poll_timeout + 30);
	evhttp_set_gencb(c->http, ctrl_request, c);
	if (evhttp_bind_socket_with_handle(c->http, c->conf.listen_addr,
	    c->conf.listen_port) == NULL) {
		log_warn("listen on %s:%u", c->conf.listen_addr,
		    c->conf.listen_port);
		return -1;
	}
	log_info("listening on %s:%u (plain HTTP)", c->conf.listen_addr,
	    c->conf.listen_port);
	return 0;
}

static void
ctrl_signal(evutil_socket_t sig, short what, void *arg)
{
	struct controller *c = arg;

	log_info("signal %d: exiting", (int)sig);
	event_base_loopbreak(c->base);
}

static void
ctrl_free(struct controller *c)
{
	struct ctrl_held *h;
	size_t i;

	while ((h = TAILQ_FIRST(&c->held)) != NULL) {
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		held_free(h);
	}
	if (c->http != NULL)
		evhttp_free(c->http);
	weft_source_dir_free(c->src);
	weft_model_free(c->model);
	free(c->model_enc);
	weft_errors_clear(&c->errors);
	tokens_free(c->tokens, c->n_tokens);
	for (i = 0; i < c->n_nodes; i++)
		free(c->nodes[i].name);
	free(c->nodes);
	if (c->base != NULL)
		event_base_free(c->base);
	free(c->conf.source_dir);
	free(c->conf.listen_addr);
	free(c->conf.trust_domain);
	free(c->conf.tokens_file);
	free(c->conf.state_dir);
}

static void
ctrl_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft controller --source dir:PATH --tokens FILE [options]\n"
	    "\n"
	    "  --source dir:PATH      Kubernetes manifests (*.yaml, *.yml, *.json)\n"
	    "                         in PATH, re-read on change\n"
	    "  --listen ADDR:PORT     listen address (default 0.0.0.0:%d)\n"
	    "  --tokens FILE          bearer tokens: \"<token> node/<name>\" or\n"
	    "                         \"<token> admin\" per line, # comments\n"
	    "  --state-dir DIR        keeps the generation across restarts\n"
	    "                         (default /var/lib/weft/controller)\n"
	    "  --poll-timeout SECS    long-poll hold time (default %d)\n"
	    "  --trust-domain NAME    SPIFFE trust domain (default cluster.local)\n"
	    "  --log-level LEVEL      debug, info or warn (default info)\n"
	    "  -n, --check            load the source, print every error, and\n"
	    "                         print \"configuration OK\" or exit 1\n"
	    "  -h, --help             this text\n",
	    WEFT_PORT_CONTROLLER, WEFT_CONTROLLER_POLL_TIMEOUT);
}

/* "ADDR:PORT", "[v6]:PORT" or ":PORT" into an address and port. */
static int
parse_listen(const char *s, char **addr, uint16_t *port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long p;
	size_t alen;

	if (colon == NULL)
		return -1;
	p = strtoul(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || p == 0 || p > 65535)
		return -1;
	alen = (size_t)(colon - s);
	if (alen >= 2 && s[0] == '[' && s[alen - 1] == ']') {
		s++;
		alen -= 2;
	}
	*addr = alen == 0 ? strdup("0.0.0.0") : strndup(s, alen);
	*port = (uint16_t)p;
	return *addr == NULL ? -1 : 0;
}

static int
mkdir_p(const char *path)
{
	char buf[4096], *p;

	if (strlen(path) >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(buf, path);
	for (p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) == -1 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) == -1 && errno != EEXIST)
		return -1;
	return 0;
}

int
weft_controller_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "source",		required_argument, NULL, 's' },
		{ "listen",		required_argument, NULL, 'l' },
		{ "tokens",		required_argument, NULL, 't' },
		{ "state-dir",		required_argument, NULL, 'S' },
		{ "poll-timeout",	required_argument, NULL, 'p' },
		{ "trust-domain",	required_argument, NULL, 'd' },
		{ "log-level",		required_argument, NULL, 'L' },
		{ "check",		no_argument,	   NULL, 'n' },
		{ "help",		no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	struct controller c;
	struct weft_errors errs = { NULL, 0, 0 };
	struct event *sigint = NULL, *sigterm = NULL;
	enum weft_log_level level = WEFT_LOG_INFO;
	const char *source = NULL;
	bool check = false;
	char *end;
	long l;
	size_t i;
	int ch, rc = 1;

	memset(&c, 0, sizeof(c));
	TAILQ_INIT(&c.held);
	c.conf.poll_timeout = WEFT_CONTROLLER_POLL_TIMEOUT;
	c.conf.listen_port = WEFT_PORT_CONTROLLER;
	weft_log_init("weft-controller", level);
	optind = 1;
	while ((ch = getopt_long(argc, argv, "nh", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			source = optarg;
			break;
		case 'l':
			free(c.conf.listen_addr);
			c.conf.listen_addr = NULL;
			if (parse_listen(optarg, &c.conf.listen_addr,
			    &c.conf.listen_port) == -1) {
				fprintf(stderr, "weft controller: --listen %s: "
				    "expected ADDR:PORT\n", optarg);
				goto done;
			}
			break;
		case 't':
			free(c.conf.tokens_file);
			c.conf.tokens_file = strdup(optarg);
			break;
		case 'S':
			free(c.conf.state_dir);
			c.conf.state_dir = strdup(optarg);
			break;
		case 'p':
			errno = 0;
			l = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || l < 1 || l > 3600) {
				fprintf(stderr, "weft controller: --poll-timeout "
				    "%s: expected 1-3600 seconds\n", optarg);
				goto done;
			}
			c.conf.poll_timeout = (int)l;
			break;
		case 'd':
			if (!weft_name_is_dns_subdomain(optarg)) {
				fprintf(stderr, "weft controller: --trust-domain "
				    "%s: expected a DNS name\n", optarg);
				goto done;
			}
			free(c.conf.trust_domain);
			c.conf.trust_domain = strdup(optarg);
			break;
		case 'L':
			if (strcmp(optarg, "debug") == 0)
				level = WEFT_LOG_DEBUG;
			else if (strcmp(optarg, "info") == 0)
				level = WEFT_LOG_INFO;
			else if (strcmp(optarg, "warn") == 0)
				level = WEFT_LOG_WARN;
			else {
				fprintf(stderr, "weft controller: --log-level "
				    "%s: expected debug, info or warn\n", optarg);
				goto done;
			}
			weft_log_set_level(level);
			break;
		case 'n':
			check = true;
			break;
		case 'h':
			ctrl_usage(stdout);
			rc = 0;
			goto done;
		default:
			ctrl_usage(stderr);
			goto done;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "weft controller: unexpected argument '%s'\n",
		    argv[optind]);
		goto done;
	}
	if (source == NULL) {
		fprintf(stderr, "weft controller: --source is required\n");
		goto done;
	}
	if (strncmp(source, "dir:", 4) != 0 || source[4] == '\0') {
		fprintf(stderr, "weft controller: --source %s: unsupported "
		    "source (supported: dir:PATH)\n", source);
		goto done;
	}
	if (c.conf.listen_addr == NULL)
		c.conf.listen_addr = strdup("0.0.0.0");
	if (c.conf.trust_domain == NULL)
		c.conf.trust_domain = strdup("cluster.local");
	c.conf.source_dir = strdup(source + 4);
	if (c.conf.listen_addr == NULL || c.conf.trust_domain == NULL ||
	    c.conf.source_dir == NULL ||
	    (c.src = weft_source_dir_new(c.conf.source_dir)) == NULL) {
		fprintf(stderr, "weft controller: out of memory\n");
		goto done;
	}

	if (check) {
		struct weft_manifest_docs docs = { NULL, 0 };
		struct weft_model *m;

		if (c.conf.tokens_file != NULL)
			(void)tokens_load(c.conf.tokens_file, &c.tokens,
			    &c.n_tokens, &errs);
		if (weft_source_dir_load(c.src, &docs, &errs) == 0) {
			m = weft_model_build(&docs, &errs);
			if (m == NULL)
				weft_errors_add(&errs, "out of memory");
			weft_model_free(m);
		}
		weft_manifest_docs_clear(&docs);
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		if (errs.n == 0) {
			printf("configuration OK\n");
			rc = 0;
		}
		goto done;
	}

	if (c.conf.tokens_file == NULL) {
		fprintf(stderr, "weft controller: --tokens is required\n");
		goto done;
	}
	if (tokens_load(c.conf.tokens_file, &c.tokens, &c.n_tokens,
	    &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "weft controller: %s\n", errs.msgs[i]);
		goto done;
	}
	{
		struct stat st;

		if (stat(c.conf.tokens_file, &st) == 0) {
			c.tokens_mtime = st.st_mtim;
			c.tokens_size = st.st_size;
		}
	}
	if (c.conf.state_dir == NULL &&
	    (c.conf.state_dir = strdup("/var/lib/weft/controller")) == NULL)
		goto done;
	if (mkdir_p(c.conf.state_dir) == -1) {
		log_warn("state directory %s", c.conf.state_dir);
		goto done;
	}
	c.generation = ctrl_generation_restore(&c);
	if ((c.base = event_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		goto done;
	}
	if (ctrl_load(&c) == -1) {
		log_warnx("source %s: cannot be loaded", c.conf.source_dir);
		goto done;
	}
	if (weft_source_dir_watch(c.src, c.base, ctrl_source_changed,
	    &c) == -1) {
		log_warn("source %s: inotify", c.conf.source_dir);
		goto done;
	}
	if (ctrl_http_open(&c) == -1)
		goto done;
	sigint = evsignal_new(c.base, SIGINT, ctrl_signal, &c);
	sigterm = evsignal_new(c.base, SIGTERM, ctrl_signal, &c);
	if (sigint == NULL || sigterm == NULL || evsignal_add(sigint,
	    NULL) == -1 || evsignal_add(sigterm, NULL) == -1) {
		log_warnx("cannot install signal handlers");
		goto done;
	}
	signal(SIGPIPE, SIG_IGN);
	log_info("controller started: source %s, generation %" PRIu64
	    ", poll timeout %ds", c.conf.source_dir, c.generation,
	    c.conf.poll_timeout);
	event_base_dispatch(c.base);
	rc = 0;
done:
	if (sigint != NULL)
		event_free(sigint);
	if (sigterm != NULL)
		event_free(sigterm);
	weft_errors_clear(&errs);
	ctrl_free(&c);
	return rc;
}
