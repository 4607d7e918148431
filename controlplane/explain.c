/* `weft ctl explain` on the controller side (weft/explain.h): compile the
 * destination node's snapshot with weft_policy_compile and ask
 * weft_policy_check_conn, then weft_policy_check_http, exactly as the node
 * does, so the answer cannot drift from what is enforced. */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <json-c/json.h>

#include "weft/explain.h"
#include "weft/manifest.h"
#include "weft/policy.h"
#include "weft/snapshot.h"

#define EXPLAIN_MAX_HEADERS	64

void
weft_explain_query_clear(struct weft_explain_query *q)
{
	size_t i;

	free(q->src_ns);
	free(q->src_sa);
	free(q->dst_ns);
	free(q->dst_pod);
	free(q->method);
	free(q->path);
	for (i = 0; i < q->n_headers; i++) {
		free(q->headers[i].name);
		free(q->headers[i].value);
	}
	free(q->headers);
	memset(q, 0, sizeof(*q));
}

/* "a/b" into two owned strings, both non-empty, no second '/'. */
static int
explain_pair(const char *s, char **a, char **b)
{
	const char *slash = strchr(s, '/');

	if (slash == NULL || slash == s || slash[1] == '\0' ||
	    strchr(slash + 1, '/') != NULL)
		return -1;
	if ((*a = strndup(s, (size_t)(slash - s))) == NULL ||
	    (*b = strdup(slash + 1)) == NULL)
		return -1;
	return 0;
}

static int
explain_bad(struct weft_explain_query *q, char **err, const char *msg)
{
	weft_explain_query_clear(q);
	*err = strdup(msg);
	return -1;
}

int
weft_explain_parse(const char *query, struct weft_explain_query *q,
    char **err)
{
	struct evkeyvalq kv;
	struct evkeyval *e;
	const char *v;
	char *end;
	unsigned long n;
	int rc = -1;

	memset(q, 0, sizeof(*q));
	*err = NULL;
	TAILQ_INIT(&kv);
	if (query == NULL || evhttp_parse_query_str(query, &kv) == -1)
		return explain_bad(q, err, "malformed query string");
	q->proto = IPPROTO_TCP;
	if ((v = evhttp_find_header(&kv, "from")) == NULL) {
		explain_bad(q, err, "from: required (NS/SA or "
		    "unauthenticated)");
		goto done;
	}
	if (strcmp(v, "unauthenticated") != 0 &&
	    explain_pair(v, &q->src_ns, &q->src_sa) == -1) {
		explain_bad(q, err, "from: expected NS/SA or unauthenticated");
		goto done;
	}
	if ((v = evhttp_find_header(&kv, "to")) == NULL ||
	    explain_pair(v, &q->dst_ns, &q->dst_pod) == -1) {
		explain_bad(q, err, "to: expected NS/POD");
		goto done;
	}
	if ((v = evhttp_find_header(&kv, "port")) == NULL) {
		explain_bad(q, err, "port: required");
		goto done;
	}
	errno = 0;
	n = strtoul(v, &end, 10);
	if (*v < '0' || *v > '9' || *end != '\0' || errno != 0 || n < 1 ||
	    n > 65535) {
		explain_bad(q, err, "port: expected 1-65535");
		goto done;
	}
	q->port = (uint16_t)n;
	if ((v = evhttp_find_header(&kv, "proto")) != NULL) {
		if (strcasecmp(v, "tcp") == 0)
			q->proto = IPPROTO_TCP;
		else if (strcasecmp(v, "udp") == 0)
			q->proto = IPPROTO_UDP;
		else {
			explain_bad(q, err, "proto: expected tcp or udp");
			goto done;
		}
	}
	if ((v = evhttp_find_header(&kv, "method")) != NULL) {
		if (v[0] == '\0' || strpbrk(v, " \t\r\n") != NULL) {
			explain_bad(q, err, "method: expected a method token");
			goto done;
		}
		q->http = true;
		if ((q->method = strdup(v)) == NULL)
			goto oom;
	}
	if ((v = evhttp_find_header(&kv, "path")) != NULL) {
		if (v[0] != '/') {
			explain_bad(q, err, "path: expected /...");
			goto done;
		}
		q->http = true;
		if ((q->path = strdup(v)) == NULL)
			goto oom;
	}
	TAILQ_FOREACH(e, &kv, next) {
		const char *eq;
		struct weft_explain_header *nh;

		if (strcmp(e->key, "header") != 0)
			continue;
		if ((eq = strchr(e->value, '=')) == NULL || eq == e->value) {
			explain_bad(q, err, "header: expected NAME=VALUE");
			goto done;
		}
		if (q->n_headers == EXPLAIN_MAX_HEADERS) {
			explain_bad(q, err, "header: too many");
			goto done;
		}
		if ((nh = reallocarray(q->headers, q->n_headers + 1,
		    sizeof(*nh))) == NULL)
			goto oom;
		q->headers = nh;
		nh = &q->headers[q->n_headers];
		nh->name = strndup(e->value, (size_t)(eq - e->value));
		nh->value = strdup(eq + 1);
		q->n_headers++;
		if (nh->name == NULL || nh->value == NULL)
			goto oom;
		q->http = true;
	}
	if (q->http && q->proto != IPPROTO_TCP) {
		explain_bad(q, err, "method, path and header need proto tcp");
		goto done;
	}
	if (q->http && ((q->method == NULL && (q->method = strdup("GET")) ==
	    NULL) || (q->path == NULL && (q->path = strdup("/")) == NULL)))
		goto oom;
	rc = 0;
	goto done;
oom:
	weft_explain_query_clear(q);
	*err = NULL;
done:
	evhttp_clear_headers(&kv);
	return rc;
}

static const char *
explain_verdict(enum weft_policy_verdict v)
{
	switch (v) {
	case WEFT_POLICY_ALLOW:
		return "allow";
	case WEFT_POLICY_HTTP:
		return "http";
	case WEFT_POLICY_DENY:
		break;
	}
	return "deny";
}

static char *
explain_error(int code, int *status, const char *msg)
{
	struct json_object *o = json_object_new_object();
	char *s = NULL;

	*status = code;
	if (o != NULL && json_object_object_add(o, "error",
	    json_object_new_string(msg)) == 0)
		s = strdup(json_object_to_json_string_ext(o,
		    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	if (s == NULL)
		*status = 500;
	return s;
}

static struct json_object *
explain_why(const char *verdict, const struct weft_policy_why *why)
{
	struct json_object *o = json_object_new_object();

	if (o == NULL)
		return NULL;
	json_object_object_add(o, "verdict", json_object_new_string(verdict));
	json_object_object_add(o, "target", json_object_new_string(why->target));
	json_object_object_add(o, "rule", json_object_new_string(why->rule));
	json_object_object_add(o, "reason", json_object_new_string(why->reason));
	return o;
}

static const struct weft_snap_pod *
explain_pod(const struct weft_snap_pod *pods, size_t n, const char *ns,
    const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (strcmp(pods[i].namespace, ns) == 0 &&
		    strcmp(pods[i].name, name) == 0)
			return &pods[i];
	return NULL;
}

char *
weft_explain_eval(const struct weft_snapshot *s,
    const struct weft_explain_query *q, int *status)
{
	const struct weft_snap_pod *pod;
	struct weft_policy *p;
	struct weft_policy_flow f;
	struct weft_policy_http req;
	struct weft_http_header hdrs[EXPLAIN_MAX_HEADERS];
	struct weft_policy_why cwhy, rwhy;
	const struct weft_policy_why *final;
	enum weft_policy_verdict cv, v;
	struct json_object *o, *to, *r;
	char *err = NULL, *out = NULL, buf[600];
	size_t i;

	if ((pod = explain_pod(s->pods, s->n_pods, q->dst_ns,
	    q->dst_pod)) == NULL) {
		snprintf(buf, sizeof(buf), "no pod %s/%s with an IP address",
		    q->dst_ns, q->dst_pod);
		return explain_error(404, status, buf);
	}
	if ((p = weft_policy_compile(s, &err)) == NULL) {
		snprintf(buf, sizeof(buf), "policy: %s",
		    err ? err : "out of memory");
		free(err);
		return explain_error(500, status, buf);
	}
	memset(&f, 0, sizeof(f));
	f.src_ns = q->src_ns;
	f.src_sa = q->src_sa;
	f.dst_ns = pod->namespace;
	f.dst_sa = pod->service_account ? pod->service_account : "default";
	f.proto = q->proto;
	f.dst_port = q->port;
	v = cv = weft_policy_check_conn(p, &f, &cwhy);
	final = &cwhy;
	if (cv == WEFT_POLICY_HTTP && q->http) {
		memset(&req, 0, sizeof(req));
		req.method = q->method;
		req.method_len = strlen(q->method);
		req.path = q->path;
		/* the node strips the query before asking */
		req.path_len = strcspn(q->path, "?");
		for (i = 0; i < q->n_headers && i < EXPLAIN_MAX_HEADERS; i++) {
			hdrs[i].name = q->headers[i].name;
			hdrs[i].name_len = strlen(q->headers[i].name);
			hdrs[i].value = q->headers[i].value;
			hdrs[i].value_len = strlen(q->headers[i].value);
		}
		req.headers = hdrs;
		req.n_headers = i;
		v = weft_policy_check_http(p, &f, &req, &rwhy);
		final = &rwhy;
	}

	if ((o = json_object_new_object()) == NULL)
		goto oom;
	json_object_object_add(o, "decision",
	    json_object_new_string(explain_verdict(v)));
	json_object_object_add(o, "target",
	    json_object_new_string(final->target));
	json_object_object_add(o, "rule", json_object_new_string(final->rule));
	json_object_object_add(o, "reason",
	    json_object_new_string(final->reason));
	if (q->src_ns != NULL)
		snprintf(buf, sizeof(buf), "%s/%s", q->src_ns, q->src_sa);
	else
		snprintf(buf, sizeof(buf), "unauthenticated");
	json_object_object_add(o, "from", json_object_new_string(buf));
	if ((to = json_object_new_object()) != NULL) {
		snprintf(buf, sizeof(buf), "%s/%s", pod->namespace, pod->name);
		json_object_object_add(to, "pod", json_object_new_string(buf));
		json_object_object_add(to, "namespace",
		    json_object_new_string(pod->namespace));
		json_object_object_add(to, "serviceAccount",
		    json_object_new_string(f.dst_sa));
		json_object_object_add(to, "node", pod->node ?
		    json_object_new_string(pod->node) : NULL);
		json_object_object_add(o, "to", to);
	}
	json_object_object_add(o, "port", json_object_new_int(q->port));
	json_object_object_add(o, "protocol", json_object_new_string(
	    q->proto == IPPROTO_UDP ? "udp" : "tcp"));
	json_object_object_add(o, "generation",
	    json_object_new_int64((int64_t)s->generation));
	json_object_object_add(o, "connection",
	    explain_why(explain_verdict(cv), &cwhy));
	if (final == &rwhy && (r = explain_why(explain_verdict(v),
	    &rwhy)) != NULL) {
		json_object_object_add(r, "method",
		    json_object_new_string(q->method));
		json_object_object_add(r, "path",
		    json_object_new_string(q->path));
		json_object_object_add(o, "request", r);
	}
	out = strdup(json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	if (out == NULL)
		goto oom;
	weft_policy_free(p);
	*status = 200;
	return out;
oom:
	weft_policy_free(p);
	return explain_error(500, status, "out of memory");
}

char *
weft_explain_model(const struct weft_model *m, uint64_t gen,
    const char *trust_domain, const char *query, int *status)
{
	struct weft_explain_query q;
	struct weft_snapshot view;
	const struct weft_snap_pod *pod;
	char *err = NULL, *out, buf[600];

	if (weft_explain_parse(query, &q, &err) == -1) {
		out = explain_error(err != NULL ? 400 : 500, status,
		    err != NULL ? err : "out of memory");
		free(err);
		return out;
	}
	/* every pod, with an IP or not, to tell "unknown" from "no IP" */
	if ((pod = explain_pod(m->all.pods, m->all.n_pods, q.dst_ns,
	    q.dst_pod)) == NULL) {
		snprintf(buf, sizeof(buf), "no pod %s/%s", q.dst_ns, q.dst_pod);
		weft_explain_query_clear(&q);
		return explain_error(404, status, buf);
	}
	weft_model_view(m, pod->node != NULL ? pod->node : "", gen,
	    trust_domain, &view);
	out = weft_explain_eval(&view, &q, status);
	weft_explain_query_clear(&q);
	return out;
}
