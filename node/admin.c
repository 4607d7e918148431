/* The node's admin server and metrics push (node/admin.h).
 *
 * Everything runs on the daemon's main loop, which also owns the nftables
 * socket: reading the rule counters at scrape time needs no lock.  The
 * registry is read under its shards' mutexes (common/metrics.c); the
 * tunnel counters are relaxed atomics of the workers. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "weft/certstore.h"
#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/log.h"
#include "weft/metrics.h"
#include "weft/nft.h"
#include "weft/snapshot.h"
#include "weft/spiffe.h"
#include "node/admin.h"
#include "node/client.h"

struct weft_admin {
	struct event_base *a_base;		/* borrowed */
	struct evhttp	*a_http;		/* owned */
	struct weft_admin_state a_st;
};

static void
admin_reply(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", ctype);
	evhttp_send_reply(req, code, reason, body);
}

static void
admin_text(struct evhttp_request *req, int code, const char *reason,
    const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b != NULL)
		evbuffer_add_printf(b, "%s\n", text);
	admin_reply(req, code, reason, "text/plain; charset=utf-8", b);
	if (b != NULL)
		evbuffer_free(b);
}

/* --- /metrics: node-wide families --------------------------------------- */

struct admin_rule {
	char		*chain;
	char		*comment;
	uint64_t	 packets;
	uint64_t	 bytes;
};

struct admin_rules {
	struct admin_rule *v;
	size_t		 n, cap;
	bool		 failed;
};

static void
admin_rule_cb(const char *chain, const char *comment, uint64_t packets,
    uint64_t bytes, void *arg)
{
	struct admin_rules *r = arg;
	struct admin_rule *e;

	if (r->failed)
		return;
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 32;

		if ((e = realloc(r->v, cap * sizeof(*e))) == NULL) {
			r->failed = true;
			return;
		}
		r->v = e;
		r->cap = cap;
	}
	e = &r->v[r->n];
	e->chain = strdup(chain != NULL ? chain : "");
	e->comment = strdup(comment != NULL && *comment ? comment : "");
	e->packets = packets;
	e->bytes = bytes;
	if (e->chain == NULL || e->comment == NULL) {
		free(e->chain);
		free(e->comment);
		r->failed = true;
		return;
	}
	r->n++;
}

static int
admin_rule_cmp(const void *a, const void *b)
{
	const struct admin_rule *x = a, *y = b;
	int c;

	if ((c = strcmp(x->chain, y->chain)) != 0)
		return c;
	return strcmp(x->comment, y->comment);
}

/* Rules with the same chain and comment (the v4 and v6 twins of a rule)
 * are one series: their sum. */
static void
admin_nft(struct weft_admin *a, struct evbuffer *out)
{
	struct admin_rules r = { 0 };
	char *err = NULL;
	size_t i, j, f;
	static const char *const names[2] = { "weft_nft_rule_packets_total",
	    "weft_nft_rule_bytes_total" };
	static const char *const help[2] = {
		"Packets counted by the rules of table inet weft, by chain "
		"and rule comment (IPv4 and IPv6 twins summed).",
		"Bytes counted by the rules of table inet weft.",
	};

	if (a->a_st.nft != NULL &&
	    weft_nft_read_counters(a->a_st.nft, admin_rule_cb, &r, &err) == -1) {
		log_debug("metrics: nftables counters: %s", err ? err : "?");
		free(err);
		r.failed = true;
	}
	if (r.n > 1)
		qsort(r.v, r.n, sizeof(*r.v), admin_rule_cmp);
	for (f = 0; f < 2; f++) {
		weft_metrics_family(out, names[f], "counter", help[f]);
		for (i = 0; !r.failed && i < r.n; i = j) {
			uint64_t sum = 0;

			for (j = i; j < r.n && admin_rule_cmp(&r.v[i],
			    &r.v[j]) == 0; j++)
				sum += f == 0 ? r.v[j].packets : r.v[j].bytes;
			evbuffer_add_printf(out, "%s{chain=\"", names[f]);
			weft_metrics_escape(out, r.v[i].chain, false);
			evbuffer_add_printf(out, "\",rule=\"");
			weft_metrics_escape(out, r.v[i].comment, false);
			evbuffer_add_printf(out, "\"} %" PRIu64 "\n", sum);
		}
	}
	for (i = 0; i < r.n; i++) {
		free(r.v[i].chain);
		free(r.v[i].comment);
	}
	free(r.v);
}

static void
admin_tunnel(struct weft_admin *a, struct evbuffer *out)
{
	struct weft_conn_stats_view v;
	uint64_t hs = 0, id = 0, nocert = 0;
	uint64_t dialed = 0, accepted = 0, resumed = 0, streams = 0;
	int i, n;

	if (a->a_st.proxy != NULL) {
		n = weft_proxy_nworkers(a->a_st.proxy);
		for (i = 0; i < n; i++) {
			weft_proxy_worker_stats(a->a_st.proxy, i, &v);
			hs += v.tun_refused_handshake;
			id += v.tun_refused_identity;
			nocert += v.tun_refused_no_cert;
			dialed += v.tun_dialed;
			accepted += v.tun_accepted;
			resumed += v.tun_resumed;
			streams += v.tun_streams;
		}
	}
	weft_metrics_family(out, "weft_tunnel_connections_total", "counter",
	    "mTLS tunnel (TLS) connections: dialed to other nodes (side "
	    "client), accepted on :15008 with a completed handshake (side "
	    "server).  Pooled, thousands of application connections share a "
	    "few.");
	evbuffer_add_printf(out, "weft_tunnel_connections_total{side="
	    "\"client\"} %" PRIu64 "\n", dialed);
	evbuffer_add_printf(out, "weft_tunnel_connections_total{side="
	    "\"server\"} %" PRIu64 "\n", accepted);
	weft_metrics_family(out, "weft_tunnel_resumed_handshakes_total",
	    "counter", "mTLS tunnel handshakes that resumed a TLS session, "
	    "both sides.");
	evbuffer_add_printf(out, "weft_tunnel_resumed_handshakes_total %"
	    PRIu64 "\n", resumed);
	weft_metrics_family(out, "weft_tunnel_streams_total", "counter",
	    "HTTP/2 CONNECT streams (one per tunnelled application "
	    "connection), both sides.");
	evbuffer_add_printf(out, "weft_tunnel_streams_total %" PRIu64 "\n",
	    streams);
	weft_metrics_family(out, "weft_tls_handshake_failures_total", "counter",
	    "mTLS tunnel connections refused: failed handshakes (plaintext, "
	    "another CA, expired, no client certificate), a peer with the "
	    "wrong identity, no certificate for the local pod.");
	evbuffer_add_printf(out, "weft_tls_handshake_failures_total{reason="
	    "\"handshake\"} %" PRIu64 "\n", hs);
	evbuffer_add_printf(out, "weft_tls_handshake_failures_total{reason="
	    "\"identity\"} %" PRIu64 "\n", id);
	evbuffer_add_printf(out, "weft_tls_handshake_failures_total{reason="
	    "\"no-certificate\"} %" PRIu64 "\n", nocert);
}

static void
admin_cert_cb(const struct weft_cert *c, void *arg)
{
	struct evbuffer *out = arg;
	struct weft_spiffe_id id;
	const char *why;

	if (weft_spiffe_parse(c->spiffe_id, &id, &why) == -1)
		return;
	evbuffer_add_printf(out, "weft_certificate_expiry_timestamp_seconds{"
	    "namespace=\"");
	weft_metrics_escape(out, id.namespace, false);
	evbuffer_add_printf(out, "\",service_account=\"");
	weft_metrics_escape(out, id.service_account, false);
	evbuffer_add_printf(out, "\"} %lld\n", (long long)c->not_after);
}

static void
admin_metrics(struct weft_admin *a, struct evhttp_request *req)
{
	struct evbuffer *out = evbuffer_new();
	struct weft_gen *g;

	if (out == NULL || weft_metrics_write_prometheus(a->a_st.metrics,
	    out) == -1) {
		if (out != NULL)
			evbuffer_free(out);
		admin_text(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	admin_tunnel(a, out);
	weft_metrics_family(out, "weft_certificate_expiry_timestamp_seconds",
	    "gauge", "When the certificate of a local identity expires "
	    "(Unix time).");
	weft_certstore_foreach(admin_cert_cb, out);
	weft_metrics_family(out, "weft_config_generation", "gauge",
	    "Generation of the snapshot the node applied (0: none yet).");
	g = weft_gen_current();
	evbuffer_add_printf(out, "weft_config_generation %" PRIu64 "\n",
	    g != NULL ? weft_gen_generation(g) : 0);
	weft_gen_unref(g);
	admin_nft(a, out);
	admin_reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8",
	    out);
	evbuffer_free(out);
}

/* --- readiness, config ------------------------------------------------- */

bool
weft_admin_ready(const struct weft_admin_state *st, char *why, size_t len)
{
	const struct weft_snapshot *s;
	struct weft_gen *g;
	struct weft_cert *c;
	char id[WEFT_SPIFFE_MAX];
	size_t i;
	bool ok = true;

	if (st->table_installed == NULL || !*st->table_installed) {
		snprintf(why, len, "table inet weft not installed");
		return false;
	}
	if ((g = weft_gen_current()) == NULL) {
		snprintf(why, len, "no snapshot applied yet");
		return false;
	}
	s = weft_gen_snapshot(g);
	if (s->trust_bundle != NULL && s->trust_domain != NULL) {
		for (i = 0; ok && i < s->n_pods; i++) {
			const struct weft_snap_pod *p = &s->pods[i];

			if (!p->meshed || !weft_gen_pod_is_local(g, p) ||
			    weft_spiffe_format(s->trust_domain, p->namespace,
			    p->service_account, id, sizeof(id)) == NULL)
				continue;
			if ((c = weft_certstore_get(id)) == NULL) {
				snprintf(why, len, "no certificate yet for %s "
				    "(pod %s/%s)", id, p->namespace, p->name);
				ok = false;
			}
			weft_cert_unref(c);
		}
	}
	if (ok)
		snprintf(why, len, "ready: generation %" PRIu64,
		    weft_gen_generation(g));
	weft_gen_unref(g);
	return ok;
}

static void
admin_config(struct evhttp_request *req)
{
	struct weft_gen *g = weft_gen_current();
	struct evbuffer *b;
	char *json;

	if (g == NULL) {
		admin_text(req, 503, "Service Unavailable",
		    "no snapshot applied yet");
		return;
	}
	json = weft_snapshot_encode(weft_gen_snapshot(g));
	weft_gen_unref(g);
	if (json == NULL || (b = evbuffer_new()) == NULL) {
		free(json);
		admin_text(req, 500, "Internal Server Error", "out of memory");
		return;
	}
	evbuffer_add_printf(b, "%s\n", json);
	free(json);
	admin_reply(req, 200, "OK", "application/json", b);
	evbuffer_free(b);
}

static void
admin_request(struct evhttp_request *req, void *arg)
{
	struct weft_admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	char why[512];

	if (path == NULL) {
		admin_text(req, 400, "Bad Request", "bad URI");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET &&
	    evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Allow", "GET, HEAD");
		admin_text(req, 405, "Method Not Allowed", "only GET");
		return;
	}
	if (strcmp(path, "/metrics") == 0)
		admin_metrics(a, req);
	else if (strcmp(path, "/healthz") == 0)
		admin_text(req, 200, "OK", "ok");
	else if (strcmp(path, "/readyz") == 0) {
		if (weft_admin_ready(&a->a_st, why, sizeof(why)))
			admin_text(req, 200, "OK", why);
		else
			admin_text(req, 503, "Service Unavailable", why);
	} else if (strcmp(path, "/debug/config") == 0)
		admin_config(req);
	else
		admin_text(req, 404, "Not Found",
		    "not found: /metrics, /healthz, /readyz, /debug/config");
}

/* "ADDR:PORT" or "[ADDR]:PORT" into host (at most len) and port. */
static int
admin_split(const char *s, char *host, size_t len, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long p;

	if (*s == '[') {
		if ((colon = strstr(s, "]:")) == NULL)
			return -1;
		h = s + 1;
		hl = (size_t)(colon - h);
		colon++;
	} else {
		if ((colon = strrchr(s, ':')) == NULL)
			return -1;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= len)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || colon[1] == '\0' || p > 65535)
		return -1;
	*port = (uint16_t)p;
	return 0;
}

struct weft_admin *
weft_admin_new(struct event_base *base, const char *addr,
    const struct weft_admin_state *st, char **err)
{
	struct weft_admin *a;
	char host[256];
	uint16_t port;

	*err = NULL;
	if (admin_split(addr, host, sizeof(host), &port) == -1) {
		if (asprintf(err, "admin address %s: expected ADDR:PORT", addr)
		    == -1)
			*err = NULL;
		return NULL;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (a->a_http = evhttp_new(base)) == NULL) {
		free(a);
		*err = strdup("admin server: out of memory");
		return NULL;
	}
	a->a_base = base;
	a->a_st = *st;
	evhttp_set_allowed_methods(a->a_http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
	evhttp_set_max_headers_size(a->a_http, 16384);
	evhttp_set_max_body_size(a->a_http, 4096);
	evhttp_set_timeout(a->a_http, 30);
	evhttp_set_gencb(a->a_http, admin_request, a);
	if (evhttp_bind_socket_with_handle(a->a_http, host, port) == NULL) {
		if (asprintf(err, "admin server: cannot listen on %s: %s", addr,
		    strerror(errno)) == -1)
			*err = NULL;
		evhttp_free(a->a_http);
		free(a);
		return NULL;
	}
	log_info("admin server on %s: /metrics /healthz /readyz /debug/config",
	    addr);
	return a;
}

struct weft_admin_state *
weft_admin_state(struct weft_admin *a)
{
	return &a->a_st;
}

void
weft_admin_free(struct weft_admin *a)
{
	if (a == NULL)
		return;
	evhttp_free(a->a_http);
	free(a);
}

/* --- push to the controller ---------------------------------------------- */

struct weft_metrics_push {
	struct weft_client *p_client;		/* borrowed */
	struct weft_metrics *p_metrics;		/* borrowed */
	const char	*p_node;		/* borrowed */
	struct event	*p_timer;		/* owned */
	struct weft_client_req *p_req;		/* in flight, or NULL */
	char		 p_path[300];
	int		 p_interval_ms;
	bool		 p_failing;		/* logged the current outage */
};

static void
push_arm(struct weft_metrics_push *p)
{
	struct timeval tv;

	tv.tv_sec = p->p_interval_ms / 1000;
	tv.tv_usec = (p->p_interval_ms % 1000) * 1000;
	evtimer_add(p->p_timer, &tv);
}

static void
push_done(int code, const char *body, size_t len, const char *why, void *arg)
{
	struct weft_metrics_push *p = arg;

	p->p_req = NULL;
	if (code == 200 || code == 204) {
		weft_metrics_edges_commit(p->p_metrics);
		if (p->p_failing)
			log_info("metrics: push to the controller works again");
		p->p_failing = false;
	} else if (!p->p_failing) {
		/* Once per outage; the edges go with the next push. */
		log_warnx("metrics: push to the controller failed: %s",
		    code != 0 ? (body != NULL && len > 0 ? body : "?") :
		    (why != NULL ? why : "?"));
		p->p_failing = true;
	}
	push_arm(p);
}

static void
push_tick(evutil_socket_t fd, short what, void *arg)
{
	struct weft_metrics_push *p = arg;
	size_t n;
	char *json;

	if (p->p_req != NULL)
		return;		/* push_done re-arms */
	if ((json = weft_metrics_edges_delta(p->p_metrics, p->p_node,
	    &n)) == NULL || n == 0) {
		free(json);
		push_arm(p);
		return;
	}
	p->p_req = weft_client_post(p->p_client, p->p_path, "application/json",
	    json, strlen(json), 10, push_done, p);
	free(json);
	if (p->p_req == NULL)
		push_arm(p);
}

struct weft_metrics_push *
weft_metrics_push_new(struct event_base *base, struct weft_client *client,
    struct weft_metrics *m, const char *node, int interval_ms)
{
	struct weft_metrics_push *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->p_client = client;
	p->p_metrics = m;
	p->p_node = node;
	p->p_interval_ms = interval_ms > 0 ? interval_ms : 5000;
	snprintf(p->p_path, sizeof(p->p_path), "/v1/nodes/%s/metrics", node);
	if ((p->p_timer = evtimer_new(base, push_tick, p)) == NULL) {
		free(p);
		return NULL;
	}
	push_arm(p);
	return p;
}

void
weft_metrics_push_free(struct weft_metrics_push *p)
{
	if (p == NULL)
		return;
	if (p->p_req != NULL)
		weft_client_req_cancel(p->p_req);
	event_free(p->p_timer);
	free(p);
}
