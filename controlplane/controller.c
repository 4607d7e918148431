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
 * The transport is HTTPS (TLS 1.3) with a server certificate from the mesh
 * CA (controlplane/ca.c), re-issued before it expires and after a root
 * rotation; --plaintext keeps plain HTTP for debugging.  The CA signs
 * nodes' CSRs (POST /v1/certificates) for the identities of the pods
 * scheduled on them, and its trust bundle travels in every snapshot: a
 * bundle change moves the generation like any other change. */
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
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "weft/ca.h"
#include "weft/controller.h"
#include "weft/explain.h"
#include "weft/svcinfo.h"
#include "weft/ip.h"
#include "weft/kube.h"
#include "weft/log.h"
#include "weft/proxy.h"
#include "weft/smimetrics.h"

#define CTRL_MAX_HELD		4096	/* parked long-polls, all nodes */
#define CTRL_MAX_ISSUED		4096	/* identities remembered per node */
#define CTRL_MAX_SANS		32	/* --tls-san values */
/* The API's own certificate: valid two days, re-issued after one, so a
 * controller that was suspended for a while still has time to renew. */
#define CTRL_SERVER_CERT_TTL	(48 * 3600)
#define CTRL_SERVER_CERT_RENEW	(24 * 3600)
#define CTRL_TICK_MAX		3600	/* CA housekeeping at least hourly */

struct ctrl_token {
	char		*token;		/* owned */
	char		*node;		/* owned; NULL: admin */
};

/* The newest certificate issued to a node for one identity. */
struct ctrl_issued {
	char		*spiffe_id;	/* owned */
	char		 serial[80];
	time_t		 not_after;
};

struct ctrl_node {
	char		*name;		/* owned */
	struct ctrl_issued *issued;	/* owned, sorted by spiffe_id */
	size_t		 n_issued;
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

/* A request waiting for its token's TokenReview (kubernetes source). */
struct ctrl_authwait {
	TAILQ_ENTRY(ctrl_authwait) entry;
	struct controller *c;
	struct evhttp_request *req;	/* borrowed until dispatched/freed */
	struct evhttp_connection *evcon; /* only compared */
	struct weft_node_auth_wait *wait; /* owned by the node auth */
};

/* --source kubernetes settings. */
struct controller_kube_config {
	char		*kubeconfig;	/* owned; NULL: in-cluster */
	char		*context;	/* owned; NULL: current-context */
	char		*namespace;	/* owned: the controller's (Lease) */
	char		*identity;	/* owned: this replica, in the Lease */
	char		*lease_name;	/* owned */
	bool		 leader_elect;
	int64_t		 lease_duration, renew_deadline, retry_period;
	char		*node_sa;	/* owned: "NS/NAME" of weft node */
	char		*audience;	/* owned: of the nodes' tokens */
	int64_t		 watch_timeout;	/* seconds; 0: 5-10 minutes */
};

struct controller_config {
	char		*source_dir;	/* owned; "kubernetes" for that source */
	bool		 kubernetes;	/* --source kubernetes */
	struct controller_kube_config kube;
	char		*listen_addr;	/* owned */
	uint16_t	 listen_port;
	int		 poll_timeout;	/* seconds */
	char		*trust_domain;	/* owned */
	char		*tokens_file;	/* owned */
	char		*state_dir;	/* owned */
	bool		 plaintext;	/* --plaintext: no TLS */
	bool		 metrics_anonymous; /* --metrics-api-anonymous */
	struct weft_model_opts model_opts; /* --strict-target-namespace */
	char		*ca_cert;	/* owned; --ca-cert, or NULL */
	char		*ca_key;	/* owned; --ca-key, or NULL */
	int64_t		 cert_ttl;	/* seconds */
	int64_t		 ca_overlap;	/* seconds; 0: 2 x cert_ttl */
	char		*tls_sans[CTRL_MAX_SANS]; /* owned */
	size_t		 n_tls_sans;
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
	struct weft_ca	*ca;		/* owned */
	SSL_CTX		*ssl_ctx;	/* owned reference; new connections */
	time_t		 tls_renew_at;	/* re-issue the server certificate */
	struct event	*ca_timer;	/* owned: roots' retirement, renewal */
	/* --source kubernetes */
	struct weft_kube *kube;		/* owned: API client */
	struct weft_source_kube *ksrc;	/* owned */
	struct weft_lease *lease;	/* owned; NULL: no leader election */
	struct weft_node_auth *nodeauth; /* owned: TokenReview + binding */
	TAILQ_HEAD(, ctrl_authwait) authwaits;
	size_t		 n_authwaits;
	struct ctrl_token kube_caller;	/* the caller a review bound */
	char		 kube_node[256];	/* its node (kube_caller.node) */
	struct event	*ev_release;	/* owned: bounds the lease release */
	struct weft_smim *smim;		/* owned: SMI metrics the nodes push;
					 * NULL until the first use */
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

/* --- issued certificates ----------------------------------------------------- */

static void
issued_clear(struct ctrl_node *n)
{
	size_t i;

	for (i = 0; i < n->n_issued; i++)
		free(n->issued[i].spiffe_id);
	free(n->issued);
	n->issued = NULL;
	n->n_issued = 0;
}

/* Forget the identities the node may no longer hold (their pods left it),
 * which bounds the list by the service accounts scheduled there. */
static void
issued_prune(struct controller *c, struct ctrl_node *n)
{
	char why[512];
	size_t i, j;

	for (i = j = 0; i < n->n_issued; i++) {
		if (weft_ca_authorize(c->model, c->conf.trust_domain, n->name,
		    n->issued[i].spiffe_id, NULL, why, sizeof(why)) != 0) {
			log_debug("node %s: forgetting %s: %s", n->name,
			    n->issued[i].spiffe_id, why);
			free(n->issued[i].spiffe_id);
			continue;
		}
		n->issued[j++] = n->issued[i];
	}
	n->n_issued = j;
}

/* Remember the newest certificate of spiffe_id on n. */
static void
issued_record(struct ctrl_node *n, const char *spiffe_id,
    const struct weft_ca_leaf *leaf)
{
	struct ctrl_issued *ni;
	size_t i;
	int r = 1;

	for (i = 0; i < n->n_issued; i++)
		if ((r = strcmp(n->issued[i].spiffe_id, spiffe_id)) >= 0)
			break;
	if (r != 0) {
		if (n->n_issued >= CTRL_MAX_ISSUED ||
		    (ni = reallocarray(n->issued, n->n_issued + 1,
		    sizeof(*ni))) == NULL) {
			log_warnx("node %s: cannot remember %s", n->name,
			    spiffe_id);
			return;
		}
		n->issued = ni;
		memmove(&ni[i + 1], &ni[i], (n->n_issued - i) * sizeof(*ni));
		memset(&ni[i], 0, sizeof(*ni));
		if ((ni[i].spiffe_id = strdup(spiffe_id)) == NULL) {
			memmove(&ni[i], &ni[i + 1], (n->n_issued - i) *
			    sizeof(*ni));
			return;
		}
		n->n_issued++;
	}
	snprintf(n->issued[i].serial, sizeof(n->issued[i].serial), "%s",
	    leaf->serial);
	n->issued[i].not_after = leaf->not_after;
}

/* Node objects of the model are "known"; others stay listed only if they
 * ever polled or hold certificates. */
static void
nodes_sync(struct controller *c)
{
	size_t i, j;

	for (i = 0; i < c->n_nodes; i++) {
		c->nodes[i].known = false;
		issued_prune(c, &c->nodes[i]);
	}
	for (i = 0; i < c->model->all.n_nodes; i++) {
		struct ctrl_node *n = node_get(c, c->model->all.nodes[i].name,
		    true);

		if (n == NULL)
			log_warnx("%s: out of memory", __func__);
		else
			n->known = true;
	}
	for (i = j = 0; i < c->n_nodes; i++) {
		if (!c->nodes[i].known && c->nodes[i].last_seen == 0 &&
		    c->nodes[i].n_issued == 0) {
			free(c->nodes[i].name);
			issued_clear(&c->nodes[i]);
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
	/* borrowed from the CA, like the rest of the view from the model */
	view.trust_bundle = (char *)(uintptr_t)weft_ca_bundle(c->ca);
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
	SSL *ssl;
	ssize_t r;
	char b;

	/* Over TLS the bytes on the socket are records: a close_notify
	 * looks like data.  SSL_peek decrypts without consuming application
	 * data: > 0 is a pipelined request (left in the SSL's buffer; the
	 * poll timeout ends the wait as in plain HTTP), a clean or unclean
	 * EOF (SSL_OP_IGNORE_UNEXPECTED_EOF) or an error means gone. */
	ssl = bufferevent_openssl_get_ssl(evhttp_connection_get_bufferevent(
	    evcon));
	if (ssl != NULL) {
		int e;

		r = SSL_peek(ssl, &b, 1);
		e = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, (int)r);
		ERR_clear_error();
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ||
		    (e == SSL_ERROR_SYSCALL && (errno == EAGAIN ||
		    errno == EINTR))) {
			event_add(h->ev_eof, NULL);
			return;
		}
		if (r > 0)
			return;
		log_debug("node %s: long-poll TLS connection closed (%s)",
		    h->node, e == SSL_ERROR_ZERO_RETURN ? "EOF" : "error");
		evhttp_connection_set_closecb(evcon, NULL, NULL);
		held_free(h);
		evhttp_connection_free(evcon);
		return;
	}
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

static void	ctrl_request(struct evhttp_request *, void *);

static void
authwait_free(struct ctrl_authwait *w)
{
	TAILQ_REMOVE(&w->c->authwaits, w, entry);
	w->c->n_authwaits--;
	free(w);
}

/* The review is back: dispatch the request again; this time the answer
 * comes from the review cache. */
static void
authwait_done(void *arg)
{
	struct ctrl_authwait *w = arg;
	struct controller *c = w->c;
	struct evhttp_request *req = w->req;

	evhttp_connection_set_closecb(w->evcon, NULL, NULL);
	authwait_free(w);
	ctrl_request(req, c);
}

/* The client left while its token was reviewed (see held_closed). */
static void
authwait_closed(struct evhttp_connection *evcon, void *arg)
{
	struct controller *c = arg;
	struct ctrl_authwait *w, *next;

	for (w = TAILQ_FIRST(&c->authwaits); w != NULL; w = next) {
		next = TAILQ_NEXT(w, entry);
		if (w->evcon != evcon)
			continue;
		weft_node_auth_cancel(w->wait);
		evhttp_request_free(w->req);
		authwait_free(w);
	}
}

/* Kubernetes: a token not in the tokens file may be a node daemon's
 * projected service-account token.  Returns the caller bound to its
 * pod's node, or NULL after replying or parking the request until the
 * TokenReview is back. */
static const struct ctrl_token *
authenticate_kube(struct controller *c, struct evhttp_request *req,
    const char *token)
{
	struct ctrl_authwait *w;
	const char *node;
	char why[600];
	int code, r;

	if ((w = calloc(1, sizeof(*w))) == NULL) {
		reply_error(req, 503, "Service Unavailable", "out of memory");
		return NULL;
	}
	r = weft_node_auth_check(c->nodeauth, c->model, token, &node, &code,
	    why, sizeof(why), authwait_done, w, &w->wait);
	if (r == WEFT_NODE_AUTH_OK) {
		free(w);
		snprintf(c->kube_node, sizeof(c->kube_node), "%s", node);
		c->kube_caller.token = NULL;
		c->kube_caller.node = c->kube_node;
		return &c->kube_caller;
	}
	if (r == WEFT_NODE_AUTH_REFUSED) {
		free(w);
		if (code == 401)
			evhttp_add_header(evhttp_request_get_output_headers(req),
			    "WWW-Authenticate", "Bearer");
		reply_error(req, code, code == 401 ? "Unauthorized" :
		    code == 403 ? "Forbidden" : "Service Unavailable", why);
		return NULL;
	}
	w->c = c;
	w->req = req;
	w->evcon = evhttp_request_get_connection(req);
	TAILQ_INSERT_TAIL(&c->authwaits, w, entry);
	c->n_authwaits++;
	evhttp_connection_set_closecb(w->evcon, authwait_closed, c);
	return NULL;
}

/* The token's entry, or NULL after replying 401 (or, with the kubernetes
 * source, after parking the request for a TokenReview). */
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
	if ((t = token_find(c, h)) == NULL && c->nodeauth != NULL)
		return authenticate_kube(c, req, h);
	if (t == NULL) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "WWW-Authenticate", "Bearer");
		reply_error(req, 401, "Unauthorized", "unknown token");
		return NULL;
	}
	return t;
}

/* Snapshots and signatures come from the leader only, and only once the
 * source has been loaded.  Returns 0, or -1 after replying 503. */
static int
ctrl_serving(struct controller *c, struct evhttp_request *req)
{
	char msg[400];

	if (c->model == NULL) {
		reply_error(req, 503, "Service Unavailable",
		    "the source is not loaded yet");
		return -1;
	}
	if (c->lease != NULL && !weft_lease_leader(c->lease)) {
		snprintf(msg, sizeof(msg), "not the leader (the lease is held "
		    "by %.200s)", weft_lease_holder(c->lease) ?
		    weft_lease_holder(c->lease) : "nobody yet");
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", "1");
		reply_error(req, 503, "Service Unavailable", msg);
		return -1;
	}
	return 0;
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

	if (ctrl_serving(c, req) == -1)
		return;
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
	weft_ca_rfc3339(t, buf, len);
}

/* The request body as a JSON object (caller puts), or NULL after replying
 * 400. */
static struct json_object *
request_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct json_tokener *tok;
	struct json_object *o = NULL;
	size_t len = evbuffer_get_length(in);
	const char *body;

	body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : NULL;
	if (body != NULL && (tok = json_tokener_new()) != NULL) {
		o = json_tokener_parse_ex(tok, body, (int)len);
		if (json_tokener_get_error(tok) != json_tokener_success) {
			json_object_put(o);
			o = NULL;
		}
		json_tokener_free(tok);
	}
	if (!json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		reply_error(req, 400, "Bad Request",
		    "body: expected a JSON object");
		return NULL;
	}
	return o;
}

/* A string member of o: NULL when absent; "" (and *bad) when not a
 * string. */
static const char *
json_str(struct json_object *o, const char *key, bool *bad)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return NULL;
	if (!json_object_is_type(v, json_type_string)) {
		*bad = true;
		return NULL;
	}
	return json_object_get_string(v);
}

static const char *
status_reason(int code)
{
	switch (code) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	default:
		return "Error";
	}
}

/* POST /v1/certificates: {"csr","spiffeId"[,"node"]} -> the leaf, signed
 * only for an identity of a pod scheduled on the requesting node. */
static void
handle_certificates(struct controller *c, struct evhttp_request *req)
{
	const struct ctrl_token *t;
	struct json_object *body, *out = NULL;
	struct weft_ca_leaf leaf;
	struct ctrl_node *n;
	const char *csr, *id, *node;
	char why[600], tbuf[32], *err = NULL;
	bool bad = false;
	int code;

	memset(&leaf, 0, sizeof(leaf));
	if (ctrl_serving(c, req) == -1)
		return;
	if ((t = authenticate(c, req)) == NULL)
		return;
	if ((body = request_json(req)) == NULL)
		return;
	csr = json_str(body, "csr", &bad);
	id = json_str(body, "spiffeId", &bad);
	node = json_str(body, "node", &bad);
	if (bad) {
		reply_error(req, 400, "Bad Request",
		    "csr, spiffeId, node: expected strings");
		goto done;
	}
	if (t->node != NULL && node != NULL && strcmp(node, t->node) != 0) {
		snprintf(why, sizeof(why), "token of node/%s may not request "
		    "certificates for node/%.256s", t->node, node);
		reply_error(req, 403, "Forbidden", why);
		goto done;
	}
	if (t->node == NULL && node == NULL) {
		reply_error(req, 400, "Bad Request",
		    "node: required with an admin token");
		goto done;
	}
	if (t->node != NULL)
		node = t->node;
	if (!weft_name_is_dns_subdomain(node)) {
		reply_error(req, 400, "Bad Request", "node: invalid node name");
		goto done;
	}
	if (csr == NULL) {
		reply_error(req, 400, "Bad Request", "csr: required");
		goto done;
	}
	if ((code = weft_ca_authorize(c->model, c->conf.trust_domain, node, id,
	    NULL, why, sizeof(why))) != 0) {
		log_info("node %s: certificate for %.256s refused: %s", node,
		    id ? id : "(none)", why);
		reply_error(req, code, status_reason(code), why);
		goto done;
	}
	if (weft_ca_sign_csr(c->ca, csr, strlen(csr), id, &leaf,
	    &err) == -1) {
		log_info("node %s: certificate for %s refused: %s", node, id,
		    err ? err : "out of memory");
		reply_error(req, 400, "Bad Request", err ? err :
		    "out of memory");
		goto done;
	}
	if ((n = node_get(c, node, true)) != NULL)
		issued_record(n, id, &leaf);
	format_time(leaf.not_after, tbuf, sizeof(tbuf));
	log_info("node %s: issued %s, serial %s, until %s", node, id,
	    leaf.serial, tbuf);
	if ((out = json_object_new_object()) == NULL) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		goto done;
	}
	json_object_object_add(out, "certificate",
	    json_object_new_string(leaf.cert_pem));
	json_object_object_add(out, "chain",
	    json_object_new_string(leaf.chain_pem));
	json_object_object_add(out, "trustBundle",
	    json_object_new_string(weft_ca_bundle(c->ca)));
	json_object_object_add(out, "serial",
	    json_object_new_string(leaf.serial));
	json_object_object_add(out, "notAfter", json_object_new_string(tbuf));
	reply_json(req, 200, "OK", json_object_to_json_string_ext(out,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
done:
	free(err);
	weft_ca_leaf_clear(&leaf);
	json_object_put(out);
	json_object_put(body);
}

/* "ca": {"signing": serial, "roots": [...]}, for status and rotate. */
static struct json_object *
ca_json(struct controller *c)
{
	struct weft_ca_root_info roots[16];
	struct json_object *o, *arr, *r;
	char buf[32];
	size_t i, n;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if ((arr = json_object_new_array()) == NULL) {
		json_object_put(o);
		return NULL;
	}
	n = weft_ca_roots(c->ca, roots, 16);
	for (i = 0; i < n; i++) {
		if (roots[i].signing)
			json_object_object_add(o, "signing",
			    json_object_new_string(roots[i].serial));
		if ((r = json_object_new_object()) == NULL)
			continue;
		json_object_object_add(r, "serial",
		    json_object_new_string(roots[i].serial));
		json_object_object_add(r, "subject",
		    json_object_new_string(roots[i].subject));
		format_time(roots[i].not_after, buf, sizeof(buf));
		json_object_object_add(r, "not_after",
		    json_object_new_string(buf));
		if (roots[i].retire_at != 0) {
			format_time(roots[i].retire_at, buf, sizeof(buf));
			json_object_object_add(r, "retire_at",
			    json_object_new_string(buf));
		} else
			json_object_object_add(r, "retire_at", NULL);
		json_object_object_add(r, "signing",
		    json_object_new_boolean(roots[i].signing));
		json_object_array_add(arr, r);
	}
	json_object_object_add(o, "roots", arr);
	return o;
}

static void	ctrl_bundle_changed(struct controller *, const char *);
static void	ctrl_ca_schedule(struct controller *);

/* POST /v1/ca/rotate (admin): a new root signs from now on. */
static void
handle_ca_rotate(struct controller *c, struct evhttp_request *req)
{
	const struct ctrl_token *t;
	struct json_object *o;
	char *err = NULL;
	time_t soon;

	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL) {
		reply_error(req, 403, "Forbidden",
		    "CA rotation needs an admin token");
		return;
	}
	if (weft_ca_rotate(c->ca, &err) == -1) {
		log_warnx("CA rotation failed: %s", err ? err : "out of memory");
		reply_error(req, 409, "Conflict", err ? err : "out of memory");
		free(err);
		return;
	}
	ctrl_bundle_changed(c, "CA rotated");
	/* the API's certificate moves to the new root half-way through the
	 * overlap (weft_ca_issue_server): nodes have learnt the new root by
	 * then, and the old one is still trusted by whoever has not */
	soon = time(NULL) + c->conf.ca_overlap / 2 + 1;
	if (c->tls_renew_at > soon)
		c->tls_renew_at = soon;
	ctrl_ca_schedule(c);
	if ((o = ca_json(c)) == NULL) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	reply_json(req, 200, "OK", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
}

/* GET /v1/explain?from=..&to=..&port=.. (admin): one policy decision as
 * the destination pod's node would make it (weft/explain.h). */
static void
handle_explain(struct controller *c, struct evhttp_request *req,
    const struct evhttp_uri *uri)
{
	const struct ctrl_token *t;
	const char *query = evhttp_uri_get_query(uri);
	char *body;
	int code;

	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL) {
		reply_error(req, 403, "Forbidden", "explain needs an admin token");
		return;
	}
	if (c->model == NULL) {
		reply_error(req, 503, "Service Unavailable", "no model loaded");
		return;
	}
	if ((body = weft_explain_model(c->model, c->generation,
	    c->conf.trust_domain, query != NULL ? query : "", &code)) == NULL) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	reply_json(req, code, code == 200 ? "OK" : code == 404 ? "Not Found" :
	    code == 400 ? "Bad Request" : "Internal Server Error", body);
	free(body);
}

/* --- SMI TrafficMetrics (controlplane/smimetrics.c) -------------------- */

static int64_t
ctrl_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec;
}

static struct weft_smim *
ctrl_smim(struct controller *c, struct evhttp_request *req)
{
	if (c->smim == NULL && (c->smim = weft_smim_new()) == NULL)
		reply_error(req, 500, "Internal Server Error", "out of memory");
	return c->smim;
}

/* POST /v1/nodes/<node>/metrics: the node's edge deltas (node/admin.c). */
static void
handle_metrics_push(struct controller *c, struct evhttp_request *req,
    const char *node)
{
	const struct ctrl_token *t;
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char msg[300], *err = NULL;
	int n;

	/* One store: the leader's (a follower's 503 makes the node keep
	 * the delta for its next push). */
	if (ctrl_serving(c, req) == -1)
		return;
	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL && strcmp(t->node, node) != 0) {
		snprintf(msg, sizeof(msg), "token of node/%s may not push for "
		    "node/%s", t->node, node);
		reply_error(req, 403, "Forbidden", msg);
		return;
	}
	if (ctrl_smim(c, req) == NULL)
		return;
	if ((n = weft_smim_ingest(c->smim, len > 0 ? (const char *)
	    evbuffer_pullup(in, -1) : "", len, ctrl_mono(), &err)) == -1) {
		reply_error(req, 400, "Bad Request", err ? err : "bad body");
		free(err);
		return;
	}
	weft_smim_prune(c->smim, ctrl_mono());
	snprintf(msg, sizeof(msg), "{\"edges\":%d}", n);
	reply_json(req, 200, "OK", msg);
}

/* GET /apis/metrics.smi-spec.io/...: the TrafficMetrics API (SPEC §6);
 * GET /v1/top?namespace=NS&t=30s: every edge, for `weft ctl top`. */
static void
handle_smi_metrics(struct controller *c, struct evhttp_request *req,
    const struct evhttp_uri *uri, const char *path)
{
	const struct ctrl_token *t;
	const char *query = evhttp_uri_get_query(uri);
	struct evkeyvalq q;
	const char *ns = NULL, *w = NULL;
	char *body = NULL;
	int code = 200, window = WEFT_SMIM_WINDOW;

	if (ctrl_serving(c, req) == -1)
		return;
	/* The SMI API is read-only; behind an APIService the Kubernetes API
	 * server has authorised the caller already. */
	if (!c->conf.metrics_anonymous || strncmp(path, "/apis", 5) != 0) {
		if ((t = authenticate(c, req)) == NULL)
			return;
		if (t->node != NULL) {
			reply_error(req, 403, "Forbidden",
			    "metrics need an admin token");
			return;
		}
	}
	if (ctrl_smim(c, req) == NULL)
		return;
	if (strcmp(path, "/v1/top") != 0) {
		code = weft_smim_serve(c->smim, c->model, path, query ? query :
		    "", ctrl_mono(), time(NULL), &body);
		reply_json(req, code, code == 200 ? "OK" : code == 404 ?
		    "Not Found" : code == 400 ? "Bad Request" :
		    "Internal Server Error", body ? body : "{}");
		free(body);
		return;
	}
	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		reply_error(req, 400, "Bad Request", "bad query");
		return;
	}
	ns = evhttp_find_header(&q, "namespace");
	if ((w = evhttp_find_header(&q, "t")) != NULL &&
	    (weft_smim_parse_duration(w, &window) == -1 ||
	    window > WEFT_SMIM_HISTORY))
		code = 400;
	else if ((body = weft_smim_top(c->smim, ns, window,
	    ctrl_mono())) == NULL)
		code = 500;
	evhttp_clear_headers(&q);
	if (code == 400)
		reply_error(req, 400, "Bad Request", "t: expected a duration "
		    "between 1s and 10m");
	else if (code == 500)
		reply_error(req, 500, "Internal Server Error", "out of memory");
	else
		reply_json(req, 200, "OK", body);
	free(body);
}

/* GET /v1/services/NS/NAME?t=30s (admin): `weft ctl service`
 * (weft/svcinfo.h). */
static void
handle_service(struct controller *c, struct evhttp_request *req,
    const struct evhttp_uri *uri, const char *ref)
{
	const struct ctrl_token *t;
	const char *query = evhttp_uri_get_query(uri), *w;
	struct evkeyvalq q;
	char ns[256], *name, *body;
	int code, window = WEFT_SMIM_WINDOW;

	if ((t = authenticate(c, req)) == NULL)
		return;
	if (t->node != NULL) {
		reply_error(req, 403, "Forbidden", "services need an admin token");
		return;
	}
	if (snprintf(ns, sizeof(ns), "%s", ref) >= (int)sizeof(ns) ||
	    (name = strchr(ns, '/')) == NULL || name == ns ||
	    name[1] == '\0' || strchr(name + 1, '/') != NULL) {
		reply_error(req, 404, "Not Found", "expected "
		    "/v1/services/NAMESPACE/NAME");
		return;
	}
	*name++ = '\0';
	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == -1) {
		reply_error(req, 400, "Bad Request", "bad query");
		return;
	}
	if ((w = evhttp_find_header(&q, "t")) != NULL &&
	    (weft_smim_parse_duration(w, &window) == -1 ||
	    window > WEFT_SMIM_HISTORY)) {
		evhttp_clear_headers(&q);
		reply_error(req, 400, "Bad Request", "t: expected a duration "
		    "between 1s and 10m");
		return;
	}
	evhttp_clear_headers(&q);
	if (c->model == NULL) {
		reply_error(req, 503, "Service Unavailable", "no model loaded");
		return;
	}
	if ((body = weft_svcinfo_json(c->model, c->smim, ns, name, window,
	    ctrl_mono(), time(NULL), &code)) == NULL) {
		reply_error(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	reply_json(req, code, code == 200 ? "OK" : "Not Found", body);
	free(body);
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
	json_object_object_add(root, "held", json_object_new_int64(
	    (int64_t)c->n_held));
	json_object_object_add(root, "tls",
	    json_object_new_boolean(!c->conf.plaintext));
	json_object_object_add(root, "ca", ca_json(c));
	if (c->ksrc != NULL) {
		struct json_object *k = weft_source_kube_status(c->ksrc), *le;

		if (k != NULL && c->nodeauth != NULL)
			json_object_object_add(k, "tokenReviews",
			    json_object_new_int64((int64_t)
			    weft_node_auth_reviews(c->nodeauth)));
		json_object_object_add(root, "kubernetes", k);
		if ((le = json_object_new_object()) != NULL) {
			json_object_object_add(le, "enabled",
			    json_object_new_boolean(c->lease != NULL));
			json_object_object_add(le, "identity",
			    json_object_new_string(c->conf.kube.identity));
			json_object_object_add(le, "leader",
			    json_object_new_boolean(c->lease == NULL ||
			    weft_lease_leader(c->lease)));
			json_object_object_add(le, "holder",
			    weft_lease_holder(c->lease) ? json_object_new_string(
			    weft_lease_holder(c->lease)) : NULL);
			json_object_object_add(root, "leaderElection", le);
		}
	}
	for (i = 0; i < c->n_nodes; i++) {
		struct ctrl_node *n = &c->nodes[i];
		struct json_object *certs, *co;
		size_t k;

		if ((o = json_object_new_object()) == NULL)
			continue;
		if ((certs = json_object_new_array()) != NULL) {
			for (k = 0; k < n->n_issued; k++) {
				if ((co = json_object_new_object()) == NULL)
					continue;
				json_object_object_add(co, "spiffe_id",
				    json_object_new_string(
				    n->issued[k].spiffe_id));
				json_object_object_add(co, "serial",
				    json_object_new_string(
				    n->issued[k].serial));
				format_time(n->issued[k].not_after, buf,
				    sizeof(buf));
				json_object_object_add(co, "not_after",
				    json_object_new_string(buf));
				json_object_array_add(certs, co);
			}
			json_object_object_add(o, "certificates", certs);
		}
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
	if (strncmp(path, "/v1/nodes/", 10) == 0 &&
	    (len = strcspn(path + 10, "/")) > 0 && len < sizeof(node) &&
	    strcmp(path + 10 + len, "/metrics") == 0) {
		memcpy(node, path + 10, len);
		node[len] = '\0';
		if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
			evhttp_add_header(evhttp_request_get_output_headers(req),
			    "Allow", "POST");
			reply_error(req, 405, "Method Not Allowed", "only POST");
		} else
			handle_metrics_push(c, req, node);
		return;
	}
	if (strcmp(path, "/v1/certificates") == 0 ||
	    strcmp(path, "/v1/ca/rotate") == 0) {
		if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
			evhttp_add_header(evhttp_request_get_output_headers(req),
			    "Allow", "POST");
			reply_error(req, 405, "Method Not Allowed", "only POST");
		} else if (strcmp(path, "/v1/certificates") == 0)
			handle_certificates(c, req);
		else
			handle_ca_rotate(c, req);
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		reply_error(req, 405, "Method Not Allowed", "only GET");
		return;
	}
	if (strcmp(path, "/readyz") == 0) {
		/* ready once the source is loaded (followers too: they are
		 * ready to take over) */
		if (c->model == NULL) {
			reply_error(req, 503, "Service Unavailable",
			    "the source is not loaded yet");
			return;
		}
		path = "/healthz";
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
	if (strcmp(path, "/v1/explain") == 0) {
		handle_explain(c, req, uri);
		return;
	}
	if (strncmp(path, "/v1/services/", 13) == 0) {
		handle_service(c, req, uri, path + 13);
		return;
	}
	if (strcmp(path, "/v1/top") == 0 || strcmp(path, "/apis") == 0 ||
	    strncmp(path, "/apis/", 6) == 0) {
		handle_smi_metrics(c, req, uri, path);
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
	struct timespec t0, t1;
	char *enc;
	size_t i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (c->ksrc != NULL ? weft_source_kube_docs(c->ksrc, &docs,
	    &errs) == -1 : weft_source_dir_load(c->src, &docs, &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			log_warnx("%s", errs.msgs[i]);
		weft_errors_clear(&errs);
		return -1;
	}
	m = weft_model_build_opts(&docs, &c->conf.model_opts, &errs);
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
	for (i = 0; i < errs.n_warnings; i++)
		log_warnx("warning: %s", errs.warnings[i]);
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
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("generation %" PRIu64 ": %zu node(s), %zu namespace(s), "
	    "%zu pod(s), %zu service(s), %zu other object(s), %zu error(s); "
	    "built in %ld ms", c->generation, m->all.n_nodes,
	    m->all.n_namespaces, m->all.n_pods, m->all.n_services, m->n_others,
	    c->errors.n, (long)((t1.tv_sec - t0.tv_sec) * 1000 +
	    (t1.tv_nsec - t0.tv_nsec) / 1000000));
	held_wake_all(c);
	return 0;
}

static void
ctrl_source_changed(void *arg)
{
	(void)ctrl_load(arg);
}

/* The trust bundle is part of every snapshot: a change is a generation. */
static void
ctrl_bundle_changed(struct controller *c, const char *why)
{
	c->generation++;
	ctrl_generation_save(c);
	log_info("generation %" PRIu64 ": trust bundle changed (%s)",
	    c->generation, why);
	held_wake_all(c);
}

/* --- TLS ------------------------------------------------------------------------- */

static bool
ctrl_san_listed(const char **sans, size_t n, const char *s)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(sans[i], s) == 0)
			return true;
	return false;
}

/* A new SSL_CTX with a fresh server certificate from the mesh CA: SANs
 * --tls-san..., the listen address unless a wildcard, localhost and
 * 127.0.0.1.  Returns NULL with *err. */
static SSL_CTX *
ctrl_tls_ctx(struct controller *c, time_t *not_after, char **err)
{
	const char *sans[CTRL_MAX_SANS + 4];
	const char *la = c->conf.listen_addr;
	SSL_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	size_t n = 0, i;

	*err = NULL;
	for (i = 0; i < c->conf.n_tls_sans; i++)
		sans[n++] = c->conf.tls_sans[i];
	if (strcmp(la, "0.0.0.0") != 0 && strcmp(la, "::") != 0 &&
	    !ctrl_san_listed(sans, n, la))
		sans[n++] = la;
	if (!ctrl_san_listed(sans, n, "localhost"))
		sans[n++] = "localhost";
	if (!ctrl_san_listed(sans, n, "127.0.0.1"))
		sans[n++] = "127.0.0.1";
	if (weft_ca_issue_server(c->ca, sans, n, CTRL_SERVER_CERT_TTL, &key,
	    &cert, err) == -1)
		return NULL;
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL ||
	    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_use_certificate(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		unsigned long e = ERR_get_error();

		if (asprintf(err, "TLS context: %s", e ?
		    ERR_reason_error_string(e) : "out of memory") == -1)
			*err = NULL;
		ERR_clear_error();
		SSL_CTX_free(ctx);
		ctx = NULL;
		goto done;
	}
	/* libevent 2.1 never sends close_notify, nor do many clients: an
	 * EOF is an EOF, not an error (notes/feasibility.md §4) */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	{
		char serial[80], until[32], issuer[256];

		X509_NAME_oneline(X509_get_issuer_name(cert), issuer,
		    sizeof(issuer));
		weft_ca_serial_hex(cert, serial, sizeof(serial));
		*not_after = weft_ca_asn1_time(X509_get0_notAfter(cert));
		format_time(*not_after, until, sizeof(until));
		log_info("TLS: server certificate %s from %s, until %s",
		    serial, issuer, until);
	}
done:
	EVP_PKEY_free(key);
	X509_free(cert);
	return ctx;
}

/* Renew at half-life (the certificate may be short when its root
 * retires soon), at least daily. */
static void
ctrl_tls_renew_at(struct controller *c, time_t not_after)
{
	time_t now = time(NULL);

	c->tls_renew_at = now + CTRL_SERVER_CERT_RENEW;
	if (not_after > now && now + (not_after - now) / 2 < c->tls_renew_at)
		c->tls_renew_at = now + (not_after - now) / 2;
}

/* Re-issue the server certificate; connections in progress keep the old
 * context (each SSL holds a reference), new ones get the new one. */
static void
ctrl_tls_renew(struct controller *c)
{
	SSL_CTX *ctx;
	char *err = NULL;
	time_t not_after = 0;

	if ((ctx = ctrl_tls_ctx(c, &not_after, &err)) == NULL) {
		log_warnx("TLS: cannot renew the server certificate: %s; "
		    "retrying in a minute", err ? err : "out of memory");
		free(err);
		c->tls_renew_at = time(NULL) + 60;
		return;
	}
	SSL_CTX_free(c->ssl_ctx);
	c->ssl_ctx = ctx;
	ctrl_tls_renew_at(c, not_after);
}

/* evhttp's bufferevent factory: every accepted connection speaks TLS.
 * (libevent falls back to a plain bufferevent when this returns NULL;
 * the client's handshake then fails, nothing is served in clear.) */
static struct bufferevent *
ctrl_bevcb(struct event_base *base, void *arg)
{
	struct controller *c = arg;
	SSL *ssl;

	if ((ssl = SSL_new(c->ssl_ctx)) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	/* on failure libevent has freed ssl already */
	return bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

/* CA housekeeping: drop roots whose overlap ended, renew the server
 * certificate; then sleep until the next of those is due. */
static void
ctrl_ca_tick(evutil_socket_t fd, short what, void *arg)
{
	struct controller *c = arg;

	if (weft_ca_expire(c->ca) == 1)
		ctrl_bundle_changed(c, "a retired root left the bundle");
	if (!c->conf.plaintext && time(NULL) >= c->tls_renew_at)
		ctrl_tls_renew(c);
	ctrl_ca_schedule(c);
}

static void
ctrl_ca_schedule(struct controller *c)
{
	time_t now = time(NULL), next = now + CTRL_TICK_MAX, t;
	struct timeval tv = { 0, 0 };

	if ((t = weft_ca_next_retirement(c->ca)) != 0 && t < next)
		next = t;
	if (!c->conf.plaintext && c->tls_renew_at < next)
		next = c->tls_renew_at;
	tv.tv_sec = next > now ? next - now : 1;
	if (c->ca_timer != NULL)
		evtimer_add(c->ca_timer, &tv);
}

/* --- lifecycle ------------------------------------------------------------------- */

/* The listening side of the transport: TLS unless --plaintext. */
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
	if (!c->conf.plaintext) {
		char *err = NULL;
		time_t not_after = 0;

		if ((c->ssl_ctx = ctrl_tls_ctx(c, &not_after, &err)) == NULL) {
			log_warnx("%s", err ? err : "TLS: out of memory");
			free(err);
			return -1;
		}
		ctrl_tls_renew_at(c, not_after);
		evhttp_set_bevcb(c->http, ctrl_bevcb, c);
	}
	if (evhttp_bind_socket_with_handle(c->http, c->conf.listen_addr,
	    c->conf.listen_port) == NULL) {
		log_warn("listen on %s:%u", c->conf.listen_addr,
		    c->conf.listen_port);
		return -1;
	}
	log_info("listening on %s:%u (%s)", c->conf.listen_addr,
	    c->conf.listen_port, c->conf.plaintext ? "plain HTTP, "
	    "--plaintext" : "HTTPS");
	return 0;
}

static void
ctrl_released(void *arg)
{
	struct controller *c = arg;

	event_base_loopbreak(c->base);
}

static void
ctrl_release_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct controller *c = arg;

	log_warnx("lease: no answer to the release; exiting anyway");
	event_base_loopbreak(c->base);
}

static void
ctrl_signal(evutil_socket_t sig, short what, void *arg)
{
	struct controller *c = arg;
	struct timeval tv = { 2, 0 };

	log_info("signal %d: exiting", (int)sig);
	/* a leader gives the lease up, so that a successor need not wait
	 * for it to expire; a second signal does not wait for that */
	if (c->lease != NULL && c->ev_release == NULL &&
	    (c->ev_release = evtimer_new(c->base, ctrl_release_timeout,
	    c)) != NULL) {
		evtimer_add(c->ev_release, &tv);
		weft_lease_release(c->lease, ctrl_released, c);
		return;
	}
	event_base_loopbreak(c->base);
}

/* A replica that lost the lease answers its parked long-polls at once:
 * the nodes then find the new leader. */
static void
ctrl_leader_changed(bool leader, void *arg)
{
	struct controller *c = arg;
	struct ctrl_held *h;
	struct evhttp_request *req;

	if (leader)
		return;
	while ((h = TAILQ_FIRST(&c->held)) != NULL) {
		req = h->req;
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		held_free(h);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", "1");
		reply_error(req, 503, "Service Unavailable",
		    "no longer the leader");
	}
}

static void
ctrl_kube_config_clear(struct controller_kube_config *k)
{
	free(k->kubeconfig);
	free(k->context);
	free(k->namespace);
	free(k->identity);
	free(k->lease_name);
	free(k->node_sa);
	free(k->audience);
}

static void
ctrl_free(struct controller *c)
{
	struct ctrl_held *h;
	struct ctrl_authwait *w;
	size_t i;

	while ((h = TAILQ_FIRST(&c->held)) != NULL) {
		evhttp_connection_set_closecb(h->evcon, NULL, NULL);
		held_free(h);
	}
	while ((w = TAILQ_FIRST(&c->authwaits)) != NULL) {
		evhttp_connection_set_closecb(w->evcon, NULL, NULL);
		weft_node_auth_cancel(w->wait);
		authwait_free(w);
	}
	if (c->http != NULL)
		evhttp_free(c->http);
	weft_node_auth_free(c->nodeauth);
	weft_lease_free(c->lease);
	weft_source_kube_free(c->ksrc);
	weft_kube_free(c->kube);
	if (c->ev_release != NULL)
		event_free(c->ev_release);
	ctrl_kube_config_clear(&c->conf.kube);
	if (c->ca_timer != NULL)
		event_free(c->ca_timer);
	SSL_CTX_free(c->ssl_ctx);
	weft_ca_free(c->ca);
	weft_smim_free(c->smim);
	weft_source_dir_free(c->src);
	weft_model_free(c->model);
	free(c->model_enc);
	weft_errors_clear(&c->errors);
	tokens_free(c->tokens, c->n_tokens);
	for (i = 0; i < c->n_nodes; i++) {
		free(c->nodes[i].name);
		issued_clear(&c->nodes[i]);
	}
	free(c->nodes);
	if (c->base != NULL) {
		/* A bufferevent freed while one of its deferred callbacks was
		 * queued (a Kubernetes API request in flight at exit, BEV_OPT_
		 * DEFER_CALLBACKS) is released only when that callback runs:
		 * let the loop run what is queued once, now that nothing of
		 * ours is left in it, or its TLS connection leaks. */
		(void)event_base_loop(c->base, EVLOOP_NONBLOCK);
		event_base_free(c->base);
	}
	free(c->conf.source_dir);
	free(c->conf.listen_addr);
	free(c->conf.trust_domain);
	free(c->conf.tokens_file);
	free(c->conf.state_dir);
	free(c->conf.ca_cert);
	free(c->conf.ca_key);
	for (i = 0; i < c->conf.n_tls_sans; i++)
		free(c->conf.tls_sans[i]);
}

static void
ctrl_usage(FILE *f)
{
	fprintf(f,
	    "usage: weft controller --source dir:PATH --tokens FILE [options]\n"
	    "       weft controller --source kubernetes [--kubeconfig FILE] [options]\n"
	    "\n"
	    "  --source dir:PATH      Kubernetes manifests (*.yaml, *.yml, *.json)\n"
	    "                         in PATH, re-read on change\n"
	    "  --source kubernetes    list and watch the cluster's API server (the\n"
	    "                         pod's service account, or --kubeconfig);\n"
	    "                         nodes authenticate with projected service\n"
	    "                         account tokens (TokenReview); --tokens is\n"
	    "                         then optional (admin tokens)\n"
	    "  --listen ADDR:PORT     listen address (default 0.0.0.0:%d)\n"
	    "  --tokens FILE          bearer tokens: \"<token> node/<name>\" or\n"
	    "                         \"<token> admin\" per line, # comments\n"
	    "  --state-dir DIR        keeps the generation across restarts\n"
	    "                         (default /var/lib/weft/controller)\n"
	    "  --poll-timeout SECS    long-poll hold time (default %d)\n"
	    "  --trust-domain NAME    SPIFFE trust domain (default cluster.local)\n"
	    "  --plaintext            serve plain HTTP instead of HTTPS (debugging\n"
	    "                         only)\n"
	    "  --metrics-api-anonymous  serve GET /apis/metrics.smi-spec.io/...\n"
	    "                         without a token (behind the Kubernetes API\n"
	    "                         server's APIService, which authorises)\n"
	    "  --tls-san NAME|IP      a name of the API's certificate, repeatable\n"
	    "                         (the listen address, localhost and\n"
	    "                         127.0.0.1 are always included)\n"
	    "  --ca-cert FILE         mesh CA root certificate (PEM), with\n"
	    "  --ca-key FILE          its key; default: generated on first start\n"
	    "                         and kept in STATE-DIR/ca; the trust bundle\n"
	    "                         is written to STATE-DIR/" WEFT_CA_BUNDLE_FILE "\n"
	    "  --cert-ttl DURATION    lifetime of issued certificates (default\n"
	    "                         24h; 60s, 15m, 24h, 2d)\n"
	    "  --ca-overlap DURATION  how long a rotated-out root stays trusted\n"
	    "                         (default 2 x --cert-ttl)\n"
	    "  --log-level LEVEL      debug, info or warn (default info)\n"
	    "  --strict-target-namespace\n"
	    "                         ignore TrafficTargets whose namespace is\n"
	    "                         not their destination's (SMI A-7)\n"
	    "kubernetes source:\n"
	    "  --kubeconfig FILE      API server and credentials (default: the\n"
	    "                         in-cluster service account)\n"
	    "  --context NAME         kubeconfig context (default: current)\n"
	    "  --namespace NS         the controller's namespace, where its Lease\n"
	    "                         lives (default: the pod's, else weft-system)\n"
	    "  --identity NAME        this replica in the Lease (default $POD_NAME,\n"
	    "                         else HOST_PID)\n"
	    "  --lease-name NAME      the Lease (default weft-controller)\n"
	    "  --no-leader-elect      no Lease: this replica serves and signs (run\n"
	    "                         one replica only)\n"
	    "  --lease-duration D     leader election timing, client-go's defaults:\n"
	    "  --renew-deadline D     15s, 10s and 2s; only the leader serves\n"
	    "  --retry-period D       snapshots and signs (others answer 503)\n"
	    "  --node-service-account NS/NAME\n"
	    "                         the node daemons' service account (default\n"
	    "                         NS/weft-node)\n"
	    "  --token-audience AUD   audience of the nodes' tokens (default weft)\n"
	    "  --watch-timeout D      longest watch request (default 10m)\n"
	    "\n"
	    "  -n, --check            load the source, print every error, and\n"
	    "                         print \"configuration OK\" or exit 1\n"
	    "  -h, --help             this text\n",
	    WEFT_PORT_CONTROLLER, WEFT_CONTROLLER_POLL_TIMEOUT);
}

/* --source kubernetes options (long only). */
enum {
	OPT_KUBECONFIG = 1000,
	OPT_CONTEXT,
	OPT_NAMESPACE,
	OPT_IDENTITY,
	OPT_LEASE_NAME,
	OPT_NO_ELECT,
	OPT_LEASE_DUR,
	OPT_RENEW,
	OPT_RETRY,
	OPT_NODE_SA,
	OPT_AUDIENCE,
	OPT_WATCH,
	OPT_KUBE_LAST = OPT_WATCH
};

static int
ctrl_kube_option(struct controller_kube_config *k, int ch, const char *arg)
{
	char **str = NULL;
	int64_t *dur = NULL;
	const char *name = "";

	switch (ch) {
	case OPT_KUBECONFIG:
		str = &k->kubeconfig;
		break;
	case OPT_CONTEXT:
		str = &k->context;
		break;
	case OPT_NAMESPACE:
		if (!weft_name_is_dns_label(arg)) {
			fprintf(stderr, "weft controller: --namespace %s: "
			    "expected a namespace name\n", arg);
			return -1;
		}
		str = &k->namespace;
		break;
	case OPT_IDENTITY:
		str = &k->identity;
		break;
	case OPT_LEASE_NAME:
		if (!weft_name_is_dns_subdomain(arg)) {
			fprintf(stderr, "weft controller: --lease-name %s: "
			    "expected a DNS name\n", arg);
			return -1;
		}
		str = &k->lease_name;
		break;
	case OPT_NO_ELECT:
		k->leader_elect = false;
		return 0;
	case OPT_LEASE_DUR:
		dur = &k->lease_duration;
		name = "lease-duration";
		break;
	case OPT_RENEW:
		dur = &k->renew_deadline;
		name = "renew-deadline";
		break;
	case OPT_RETRY:
		dur = &k->retry_period;
		name = "retry-period";
		break;
	case OPT_WATCH:
		dur = &k->watch_timeout;
		name = "watch-timeout";
		break;
	case OPT_NODE_SA:
		str = &k->node_sa;
		break;
	case OPT_AUDIENCE:
		str = &k->audience;
		break;
	default:
		return -1;
	}
	if (dur != NULL) {
		if (weft_ca_parse_duration(arg, dur) == -1 || *dur < 1 ||
		    *dur > 24 * 3600) {
			fprintf(stderr, "weft controller: --%s %s: expected a "
			    "duration (2s, 15s, 10m)\n", name, arg);
			return -1;
		}
		return 0;
	}
	free(*str);
	if ((*str = strdup(arg)) == NULL)
		return -1;
	return 0;
}

/* Defaults and consistency of the kubernetes options. */
static int
ctrl_kube_check(struct controller_kube_config *k)
{
	if (k->leader_elect && !(k->retry_period < k->renew_deadline &&
	    k->renew_deadline < k->lease_duration)) {
		fprintf(stderr, "weft controller: expected --retry-period < "
		    "--renew-deadline < --lease-duration\n");
		return -1;
	}
	if (k->node_sa != NULL) {
		const char *slash = strchr(k->node_sa, '/');

		if (slash == NULL || slash == k->node_sa || slash[1] == '\0') {
			fprintf(stderr, "weft controller: "
			    "--node-service-account %s: expected NS/NAME\n",
			    k->node_sa);
			return -1;
		}
	}
	if (k->lease_name == NULL && (k->lease_name =
	    strdup("weft-controller")) == NULL)
		return -1;
	if (k->audience == NULL && (k->audience = strdup("weft")) == NULL)
		return -1;
	if (k->identity == NULL) {
		const char *pod = getenv("POD_NAME");
		char host[256];

		if (pod != NULL && *pod != '\0')
			k->identity = strdup(pod);
		else {
			if (gethostname(host, sizeof(host)) == -1)
				snprintf(host, sizeof(host), "weft");
			host[sizeof(host) - 1] = '\0';
			if (asprintf(&k->identity, "%s_%ld", host,
			    (long)getpid()) == -1)
				k->identity = NULL;
		}
		if (k->identity == NULL)
			return -1;
	}
	return 0;
}

/* Connect the kubernetes source, node authentication and the Lease. */
static int
ctrl_kube_start(struct controller *c)
{
	struct controller_kube_config *kc = &c->conf.kube;
	struct weft_kube_config cfg;
	struct weft_lease_config lc;
	char *err = NULL, *sa_ns = NULL;
	const char *sa_name;
	int r;

	if (kc->kubeconfig != NULL)
		r = weft_kube_config_load(kc->kubeconfig, kc->context, &cfg,
		    &err);
	else
		r = weft_kube_config_in_cluster(&cfg, &err);
	if (r == -1) {
		log_warnx("kubernetes: %s", err ? err : "out of memory");
		free(err);
		return -1;
	}
	c->kube = weft_kube_new(c->base, &cfg, &err);
	weft_kube_config_clear(&cfg);
	if (c->kube == NULL) {
		log_warnx("kubernetes: %s", err ? err : "out of memory");
		free(err);
		return -1;
	}
	if (kc->namespace == NULL && (kc->namespace = strdup(
	    weft_kube_namespace(c->kube) ? weft_kube_namespace(c->kube) :
	    "weft-system")) == NULL)
		return -1;
	if (kc->node_sa != NULL) {
		sa_ns = strndup(kc->node_sa, strcspn(kc->node_sa, "/"));
		sa_name = strchr(kc->node_sa, '/') + 1;
	} else {
		sa_ns = strdup(kc->namespace);
		sa_name = "weft-node";
	}
	if (sa_ns == NULL)
		return -1;
	c->nodeauth = weft_node_auth_new(c->kube, sa_ns, sa_name,
	    kc->audience);
	free(sa_ns);
	if (c->nodeauth == NULL ||
	    (c->ksrc = weft_source_kube_new(c->kube, c->base,
	    ctrl_source_changed, c)) == NULL) {
		log_warnx("kubernetes: out of memory");
		return -1;
	}
	if (kc->watch_timeout > 0)
		weft_source_kube_set_watch_timeout(c->ksrc,
		    (int)kc->watch_timeout);
	log_info("kubernetes: API server %s, namespace %s, replica %s",
	    weft_kube_server(c->kube), kc->namespace, kc->identity);
	weft_source_kube_start(c->ksrc);
	if (!kc->leader_elect) {
		log_info("kubernetes: no leader election (--no-leader-elect)");
		return 0;
	}
	memset(&lc, 0, sizeof(lc));
	lc.namespace = kc->namespace;
	lc.name = kc->lease_name;
	lc.identity = kc->identity;
	lc.duration = (int)kc->lease_duration;
	lc.renew_deadline = (int)kc->renew_deadline;
	lc.retry_period = (int)kc->retry_period;
	if ((c->lease = weft_lease_new(c->kube, c->base, &lc,
	    ctrl_leader_changed, c)) == NULL) {
		log_warnx("kubernetes: out of memory");
		return -1;
	}
	weft_lease_start(c->lease);
	return 0;
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
		{ "plaintext",		no_argument,	   NULL, 'P' },
		{ "tls-san",		required_argument, NULL, 'N' },
		{ "ca-cert",		required_argument, NULL, 'C' },
		{ "ca-key",		required_argument, NULL, 'K' },
		{ "cert-ttl",		required_argument, NULL, 'T' },
		{ "ca-overlap",		required_argument, NULL, 'O' },
		{ "check",		no_argument,	   NULL, 'n' },
		{ "strict-target-namespace", no_argument,  NULL, 'A' },
		{ "metrics-api-anonymous", no_argument,	   NULL, 'M' },
		{ "kubeconfig",		required_argument, NULL, OPT_KUBECONFIG },
		{ "context",		required_argument, NULL, OPT_CONTEXT },
		{ "namespace",		required_argument, NULL, OPT_NAMESPACE },
		{ "identity",		required_argument, NULL, OPT_IDENTITY },
		{ "lease-name",		required_argument, NULL, OPT_LEASE_NAME },
		{ "no-leader-elect",	no_argument,	   NULL, OPT_NO_ELECT },
		{ "lease-duration",	required_argument, NULL, OPT_LEASE_DUR },
		{ "renew-deadline",	required_argument, NULL, OPT_RENEW },
		{ "retry-period",	required_argument, NULL, OPT_RETRY },
		{ "node-service-account", required_argument, NULL, OPT_NODE_SA },
		{ "token-audience",	required_argument, NULL, OPT_AUDIENCE },
		{ "watch-timeout",	required_argument, NULL, OPT_WATCH },
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
	TAILQ_INIT(&c.authwaits);
	c.conf.kube.leader_elect = true;
	c.conf.kube.lease_duration = 15;
	c.conf.kube.renew_deadline = 10;
	c.conf.kube.retry_period = 2;
	c.conf.poll_timeout = WEFT_CONTROLLER_POLL_TIMEOUT;
	c.conf.listen_port = WEFT_PORT_CONTROLLER;
	c.conf.cert_ttl = WEFT_CA_CERT_TTL;
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
		case 'P':
			c.conf.plaintext = true;
			break;
		case 'N':
			if (c.conf.n_tls_sans >= CTRL_MAX_SANS) {
				fprintf(stderr, "weft controller: at most %d "
				    "--tls-san\n", CTRL_MAX_SANS);
				goto done;
			}
			if ((c.conf.tls_sans[c.conf.n_tls_sans] =
			    strdup(optarg)) == NULL)
				goto done;
			c.conf.n_tls_sans++;
			break;
		case 'C':
			free(c.conf.ca_cert);
			c.conf.ca_cert = strdup(optarg);
			break;
		case 'K':
			free(c.conf.ca_key);
			c.conf.ca_key = strdup(optarg);
			break;
		case 'T':
		case 'O':
			if (weft_ca_parse_duration(optarg, ch == 'T' ?
			    &c.conf.cert_ttl : &c.conf.ca_overlap) == -1) {
				fprintf(stderr, "weft controller: --%s %s: "
				    "expected a duration (60s, 15m, 24h, 2d)\n",
				    ch == 'T' ? "cert-ttl" : "ca-overlap",
				    optarg);
				goto done;
			}
			break;
		case 'n':
			check = true;
			break;
		case OPT_KUBECONFIG ... OPT_KUBE_LAST:
			if (ctrl_kube_option(&c.conf.kube, ch, optarg) == -1)
				goto done;
			break;
		case 'A':
			c.conf.model_opts.strict_target_namespace = true;
			break;
		case 'M':
			c.conf.metrics_anonymous = true;
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
	if (strcmp(source, "kubernetes") == 0)
		c.conf.kubernetes = true;
	else if (strncmp(source, "dir:", 4) != 0 || source[4] == '\0') {
		fprintf(stderr, "weft controller: --source %s: unsupported "
		    "source (supported: dir:PATH, kubernetes)\n", source);
		goto done;
	}
	if (c.conf.kubernetes && check) {
		fprintf(stderr, "weft controller: --check reads dir: sources "
		    "only\n");
		goto done;
	}
	if (c.conf.kubernetes && ctrl_kube_check(&c.conf.kube) == -1)
		goto done;
	if ((c.conf.ca_cert == NULL) != (c.conf.ca_key == NULL)) {
		fprintf(stderr, "weft controller: --ca-cert and --ca-key go "
		    "together\n");
		goto done;
	}
	if (c.conf.ca_overlap == 0)
		c.conf.ca_overlap = 2 * c.conf.cert_ttl;
	for (i = 0; i < c.conf.n_tls_sans; i++) {
		struct weft_ip ip;

		if (weft_ip_parse(c.conf.tls_sans[i], &ip) == -1 &&
		    !weft_name_is_dns_subdomain(c.conf.tls_sans[i])) {
			fprintf(stderr, "weft controller: --tls-san %s: "
			    "expected an IP address or a DNS name\n",
			    c.conf.tls_sans[i]);
			goto done;
		}
	}
	if (c.conf.listen_addr == NULL)
		c.conf.listen_addr = strdup("0.0.0.0");
	if (c.conf.trust_domain == NULL)
		c.conf.trust_domain = strdup("cluster.local");
	c.conf.source_dir = strdup(c.conf.kubernetes ? source : source + 4);
	if (c.conf.listen_addr == NULL || c.conf.trust_domain == NULL ||
	    c.conf.source_dir == NULL || (!c.conf.kubernetes &&
	    (c.src = weft_source_dir_new(c.conf.source_dir)) == NULL)) {
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
			m = weft_model_build_opts(&docs, &c.conf.model_opts,
			    &errs);
			if (m == NULL)
				weft_errors_add(&errs, "out of memory");
			weft_model_free(m);
		}
		weft_manifest_docs_clear(&docs);
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "%s\n", errs.msgs[i]);
		for (i = 0; i < errs.n_warnings; i++)
			fprintf(stderr, "warning: %s\n", errs.warnings[i]);
		if (errs.n == 0) {
			printf("configuration OK\n");
			rc = 0;
		}
		goto done;
	}

	if (c.conf.tokens_file == NULL && !c.conf.kubernetes) {
		fprintf(stderr, "weft controller: --tokens is required\n");
		goto done;
	}
	if (c.conf.tokens_file != NULL && tokens_load(c.conf.tokens_file,
	    &c.tokens, &c.n_tokens, &errs) == -1) {
		for (i = 0; i < errs.n; i++)
			fprintf(stderr, "weft controller: %s\n", errs.msgs[i]);
		goto done;
	}
	{
		struct stat st;

		if (c.conf.tokens_file != NULL &&
		    stat(c.conf.tokens_file, &st) == 0) {
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
	{
		struct weft_ca_config cc;
		char *err = NULL;

		memset(&cc, 0, sizeof(cc));
		cc.state_dir = c.conf.state_dir;
		cc.trust_domain = c.conf.trust_domain;
		cc.cert_file = c.conf.ca_cert;
		cc.key_file = c.conf.ca_key;
		cc.cert_ttl = c.conf.cert_ttl;
		cc.overlap = c.conf.ca_overlap;
		if ((c.ca = weft_ca_open(&cc, &err)) == NULL) {
			log_warnx("CA: %s", err ? err : "out of memory");
			free(err);
			goto done;
		}
	}
	c.generation = ctrl_generation_restore(&c);
	if ((c.base = event_base_new()) == NULL) {
		log_warnx("event_base_new failed");
		goto done;
	}
	if (c.conf.kubernetes) {
		/* the first model comes once every kind has been listed */
		if (ctrl_kube_start(&c) == -1)
			goto done;
	} else if (ctrl_load(&c) == -1) {
		log_warnx("source %s: cannot be loaded", c.conf.source_dir);
		goto done;
	}
	if (!c.conf.kubernetes && weft_source_dir_watch(c.src, c.base,
	    ctrl_source_changed, &c) == -1) {
		log_warn("source %s: inotify", c.conf.source_dir);
		goto done;
	}
	if (ctrl_http_open(&c) == -1)
		goto done;
	if ((c.ca_timer = evtimer_new(c.base, ctrl_ca_tick, &c)) == NULL) {
		log_warnx("cannot create the CA timer");
		goto done;
	}
	ctrl_ca_schedule(&c);
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
