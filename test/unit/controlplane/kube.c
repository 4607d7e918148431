/* The Kubernetes source's offline parts: version order, trimming,
 * kubeconfig and in-cluster configuration, EndpointSlice readiness in the
 * model, and the HTTP client against a canned server on loopback
 * (chunked watch bodies cut inside events, a Status answer, a connection
 * cut inside a chunk). */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <json-c/json.h>

#include "weft/kube.h"
#include "weft/manifest.h"
#include "../../tap.h"

static char tmpdir[] = "/tmp/weft-kube-test.XXXXXX";

static void
write_file(const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL)
		abort();
	fputs(text, f);
	fclose(f);
}

static void
test_versions(void)
{
	ok(weft_kube_version_cmp("v1", "v1beta2") > 0, "v1 > v1beta2");
	ok(weft_kube_version_cmp("v1beta2", "v1beta1") > 0, "v1beta2 > v1beta1");
	ok(weft_kube_version_cmp("v1beta1", "v1alpha4") > 0, "beta > alpha");
	ok(weft_kube_version_cmp("v1alpha4", "v1alpha3") > 0,
	    "v1alpha4 > v1alpha3");
	ok(weft_kube_version_cmp("v2alpha1", "v1alpha4") > 0,
	    "v2alpha1 > v1alpha4");
	ok(weft_kube_version_cmp("v1alpha1", "foo") > 0,
	    "any conforming version > a non-conforming name");
	is_int(weft_kube_version_cmp("v1alpha3", "v1alpha3"), 0, "equal");
	ok(weft_kube_version_cmp("v10", "v2") > 0, "numeric, not textual");
}

static const char pod_json[] = "{\"metadata\":{\"name\":\"web\","
    "\"namespace\":\"shop\",\"uid\":\"u1\",\"resourceVersion\":\"%d\","
    "\"labels\":{\"app\":\"web\"},\"annotations\":{"
    "\"kubectl.kubernetes.io/last-applied-configuration\":\"{...}\","
    "\"team\":\"a\"},\"managedFields\":[{\"manager\":\"kubelet\"}]},"
    "\"spec\":{\"nodeName\":\"n1\",\"serviceAccountName\":\"web\","
    "\"tolerations\":[{\"key\":\"x\"}],\"containers\":[{\"name\":\"app\","
    "\"image\":\"i\",\"env\":[],\"ports\":[{\"containerPort\":80}]}]},"
    "\"status\":{\"podIP\":\"10.0.0.1\",\"phase\":\"Running\","
    "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\","
    "\"lastTransitionTime\":\"%s\"}],\"containerStatuses\":[{}]}}";

static struct json_object *
pod(int rv, const char *t)
{
	char buf[2048];

	snprintf(buf, sizeof(buf), pod_json, rv, t);
	return json_tokener_parse(buf);
}

static void
test_trim(void)
{
	struct json_object *a = pod(1, "2024-01-01T00:00:00Z");
	struct json_object *b = pod(2, "2024-01-02T00:00:00Z");
	struct json_object *ta = weft_kube_trim(a, "v1", "Pod");
	struct json_object *tb = weft_kube_trim(b, "v1", "Pod");
	struct json_object *m, *v, *c;

	ok(ta != NULL && tb != NULL, "trimmed");
	is_str(json_object_get_string(json_object_object_get(ta, "kind")),
	    "Pod", "kind set");
	is_str(json_object_get_string(json_object_object_get(ta,
	    "apiVersion")), "v1", "apiVersion set");
	m = json_object_object_get(ta, "metadata");
	ok(!json_object_object_get_ex(m, "managedFields", NULL),
	    "managedFields dropped");
	ok(!json_object_object_get_ex(m, "resourceVersion", NULL),
	    "resourceVersion dropped");
	v = json_object_object_get(m, "annotations");
	ok(v != NULL && !json_object_object_get_ex(v,
	    "kubectl.kubernetes.io/last-applied-configuration", NULL) &&
	    json_object_object_get_ex(v, "team", NULL),
	    "last-applied dropped, other annotations kept");
	v = json_object_object_get(ta, "spec");
	ok(!json_object_object_get_ex(v, "tolerations", NULL),
	    "spec.tolerations dropped");
	c = json_object_array_get_idx(json_object_object_get(v, "containers"),
	    0);
	ok(json_object_object_get_ex(c, "ports", NULL) &&
	    !json_object_object_get_ex(c, "image", NULL),
	    "containers keep name and ports only");
	v = json_object_object_get(ta, "status");
	ok(!json_object_object_get_ex(v, "containerStatuses", NULL),
	    "containerStatuses dropped");
	ok(json_object_equal(ta, tb),
	    "a new resourceVersion and probe time are no change");
	json_object_put(a);
	json_object_put(b);
	json_object_put(ta);
	json_object_put(tb);

	a = json_tokener_parse("{\"apiVersion\":\"split.smi-spec.io/v1alpha2\","
	    "\"kind\":\"TrafficSplit\",\"metadata\":{\"name\":\"s\"},"
	    "\"spec\":{\"service\":\"x\"},\"status\":{}}");
	ta = weft_kube_trim(a, "split.smi-spec.io/v1alpha4", "TrafficSplit");
	ok(json_object_object_get_ex(ta, "spec", NULL) &&
	    !json_object_object_get_ex(ta, "status", NULL),
	    "SMI objects keep spec, lose status");
	is_str(json_object_get_string(json_object_object_get(ta,
	    "apiVersion")), "split.smi-spec.io/v1alpha4",
	    "SMI object at the version watched");
	json_object_put(a);
	json_object_put(ta);
}

static void
test_kubeconfig(void)
{
	struct weft_kube_config cfg;
	char path[512], *err = NULL;

	write_file("kc", "apiVersion: v1\nkind: Config\n"
	    "current-context: one\n"
	    "contexts:\n"
	    "- name: one\n  context: {cluster: c1, user: u1, namespace: ns1}\n"
	    "- name: two\n  context: {cluster: c1, user: u2}\n"
	    "- name: three\n  context: {cluster: c1, user: u3}\n"
	    "clusters:\n"
	    "- name: c1\n  cluster:\n    server: https://10.0.0.1:6443\n"
	    "    certificate-authority-data: aGVsbG8K\n"
	    "    tls-server-name: api.example\n"
	    "users:\n"
	    "- name: u1\n  user: {token: abc}\n"
	    "- name: u2\n  user: {tokenFile: sub/tok}\n"
	    "- name: u3\n  user: {exec: {command: x}}\n");
	snprintf(path, sizeof(path), "%s/kc", tmpdir);
	is_int(weft_kube_config_load(path, NULL, &cfg, &err), 0,
	    "kubeconfig: current context");
	is_str(cfg.server, "https://10.0.0.1:6443", "server");
	is_str(cfg.ca_pem, "hello\n", "certificate-authority-data decoded");
	is_str(cfg.token, "abc", "token");
	is_str(cfg.namespace, "ns1", "namespace of the context");
	is_str(cfg.tls_server_name, "api.example", "tls-server-name");
	weft_kube_config_clear(&cfg);
	is_int(weft_kube_config_load(path, "two", &cfg, &err), 0,
	    "kubeconfig: --context two");
	ok(cfg.token_file != NULL && strcmp(cfg.token_file + strlen(tmpdir),
	    "/sub/tok") == 0, "tokenFile relative to the kubeconfig");
	weft_kube_config_clear(&cfg);
	is_int(weft_kube_config_load(path, "three", &cfg, &err), -1,
	    "kubeconfig: exec users refused");
	ok(err != NULL && strstr(err, "not supported") != NULL, "why: %s",
	    err ? err : "(none)");
	free(err);
	err = NULL;
	is_int(weft_kube_config_load(path, "four", &cfg, &err), -1,
	    "kubeconfig: no such context");
	ok(err != NULL && strstr(err, "no context \"four\"") != NULL,
	    "why: %s", err ? err : "(none)");
	free(err);
}

static void
test_in_cluster(void)
{
	struct weft_kube_config cfg;
	char dir[512], *err = NULL;

	snprintf(dir, sizeof(dir), "%s/sa", tmpdir);
	mkdir(dir, 0700);
	write_file("sa/token", "tok\n");
	write_file("sa/ca.crt", "x");
	write_file("sa/namespace", "weft-system\n");
	setenv("WEFT_SERVICEACCOUNT_DIR", dir, 1);
	unsetenv("KUBERNETES_SERVICE_HOST");
	is_int(weft_kube_config_in_cluster(&cfg, &err), -1,
	    "in-cluster without KUBERNETES_SERVICE_HOST");
	free(err);
	err = NULL;
	setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
	setenv("KUBERNETES_SERVICE_PORT", "443", 1);
	is_int(weft_kube_config_in_cluster(&cfg, &err), 0, "in-cluster");
	is_str(cfg.server, "https://[fd00::1]:443", "server (IPv6)");
	is_str(cfg.namespace, "weft-system", "namespace");
	ok(cfg.token_file != NULL && strstr(cfg.token_file, "/sa/token"),
	    "token file");
	weft_kube_config_clear(&cfg);
}

static const struct weft_snap_pod *
find_pod(const struct weft_model *m, const char *name)
{
	size_t i;

	for (i = 0; i < m->all.n_pods; i++)
		if (strcmp(m->all.pods[i].name, name) == 0)
			return &m->all.pods[i];
	return NULL;
}

static void
test_endpointslices(void)
{
	static const char y[] =
	    "apiVersion: v1\nkind: List\nitems:\n"
	    "- {apiVersion: v1, kind: Pod, metadata: {name: a, namespace: s},"
	    " status: {podIP: 10.0.0.1}}\n"
	    "- {apiVersion: v1, kind: Pod, metadata: {name: b, namespace: s},"
	    " status: {podIP: 10.0.0.2}}\n"
	    "- {apiVersion: v1, kind: Pod, metadata: {name: c, namespace: s},"
	    " status: {podIP: 10.0.0.3}}\n"
	    "- {apiVersion: v1, kind: Pod, metadata: {name: d, namespace: s},"
	    " status: {podIP: 10.0.0.4}}\n"
	    "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n"
	    "  metadata: {name: x-1, namespace: s}\n  addressType: IPv4\n"
	    "  endpoints:\n"
	    "  - {addresses: [10.0.0.1], conditions: {ready: false},"
	    " targetRef: {kind: Pod, name: a}}\n"
	    "  - {addresses: [10.0.0.2], conditions: {ready: true},"
	    " targetRef: {kind: Pod, name: b}}\n"
	    "  - {addresses: [10.0.0.4], targetRef: {kind: Pod, name: d}}\n"
	    "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n"
	    "  metadata: {name: y-1, namespace: s}\n  addressType: IPv4\n"
	    "  endpoints:\n"
	    "  - {addresses: [10.0.0.4], conditions: {ready: false},"
	    " targetRef: {kind: Pod, name: d, namespace: s}}\n"
	    "- apiVersion: discovery.k8s.io/v1\n  kind: EndpointSlice\n"
	    "  metadata: {name: bad, namespace: s}\n  addressType: IPv5\n"
	    "  endpoints:\n"
	    "  - {addresses: [10.0.0.3], conditions: {ready: false},"
	    " targetRef: {kind: Pod, name: c}}\n";
	struct weft_manifest_docs docs = { NULL, 0 };
	struct weft_errors errs = { NULL, 0, 0 };
	struct weft_model *m;
	const struct weft_snap_pod *p;

	is_int(weft_manifest_parse("s.yaml", y, strlen(y), &docs, &errs), 0,
	    "slices parse");
	m = weft_model_build(&docs, &errs);
	ok(m != NULL, "model built");
	if (m == NULL)
		return;
	p = find_pod(m, "a");
	ok(p != NULL && !p->ready, "a slice says not ready: not ready");
	p = find_pod(m, "b");
	ok(p != NULL && p->ready, "a slice says ready: ready");
	p = find_pod(m, "c");
	ok(p != NULL && p->ready, "only an invalid slice names c: ready");
	p = find_pod(m, "d");
	ok(p != NULL && !p->ready, "one of two slices says not ready");
	is_int(errs.n, 1, "one error (the invalid slice)");
	if (errs.n > 0)
		ok(strstr(errs.msgs[0], "addressType: expected IPv4, IPv6 or "
		    "FQDN") != NULL, "error: %s", errs.msgs[0]);
	weft_model_free(m);
	weft_manifest_docs_clear(&docs);
	weft_errors_clear(&errs);
}

/* --- the HTTP client against a canned server ------------------------------------ */

struct canned {
	struct event_base *base;
	char		*wire;		/* owned: the whole response */
	size_t		 len, off;
	size_t		 step;		/* bytes written per tick */
	struct bufferevent *bev;
	struct event	*tick;
};

struct result {
	struct event_base *base;
	int		 events;
	char		 names[256];
	int		 status;
	char		 error[256];
	char		 message[256];
	bool		 done;
};

static void
canned_tick(evutil_socket_t fd, short what, void *arg)
{
	struct canned *c = arg;
	struct timeval tv = { 0, 2000 };
	size_t n;

	if (c->off < c->len) {
		n = c->len - c->off < c->step ? c->len - c->off : c->step;
		bufferevent_write(c->bev, c->wire + c->off, n);
		c->off += n;
		evtimer_add(c->tick, &tv);
		return;
	}
	/* everything written: close our side once it has gone out */
	if (evbuffer_get_length(bufferevent_get_output(c->bev)) > 0) {
		evtimer_add(c->tick, &tv);
		return;
	}
	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
}

static void
canned_read(struct bufferevent *bev, void *arg)
{
	struct canned *c = arg;
	struct timeval tv = { 0, 0 };
	struct evbuffer *in = bufferevent_get_input(bev);

	if (evbuffer_search(in, "\r\n\r\n", 4, NULL).pos == -1)
		return;
	evbuffer_drain(in, evbuffer_get_length(in));
	evtimer_add(c->tick, &tv);
}

static void
canned_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int len, void *arg)
{
	struct canned *c = arg;

	c->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(c->bev, canned_read, NULL, NULL, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

static void
on_event(struct json_object *ev, void *arg)
{
	struct result *r = arg;
	struct json_object *o, *m, *n;

	r->events++;
	if (json_object_object_get_ex(ev, "object", &o) &&
	    json_object_object_get_ex(o, "metadata", &m) &&
	    json_object_object_get_ex(m, "name", &n))
		snprintf(r->names + strlen(r->names), sizeof(r->names) -
		    strlen(r->names), "%s,", json_object_get_string(n));
}

static void
on_done(const struct weft_kube_resp *resp, void *arg)
{
	struct result *r = arg;
	char buf[256];

	r->done = true;
	r->status = resp->status;
	if (resp->error != NULL)
		snprintf(r->error, sizeof(r->error), "%s", resp->error);
	snprintf(r->message, sizeof(r->message), "%s",
	    weft_kube_resp_why(resp, buf, sizeof(buf)));
	event_base_loopbreak(r->base);
}

/* The wire form of a chunked response carrying body in chunks cut at
 * cuts[] (offsets into body); with last false, the terminating chunk is
 * left out and the body stops inside the chunk at the final cut. */
static char *
chunked(const char *body, const size_t *cuts, size_t ncuts, bool last)
{
	struct evbuffer *b = evbuffer_new();
	size_t prev = 0, i, len;
	char *out;

	evbuffer_add_printf(b, "HTTP/1.1 200 OK\r\nContent-Type: "
	    "application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
	for (i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : strlen(body);

		if (!last && i == ncuts) {
			/* announce the rest, send half of it */
			evbuffer_add_printf(b, "%zx\r\n", end - prev);
			evbuffer_add(b, body + prev, (end - prev) / 2);
			break;
		}
		evbuffer_add_printf(b, "%zx\r\n", end - prev);
		evbuffer_add(b, body + prev, end - prev);
		evbuffer_add(b, "\r\n", 2);
		prev = end;
	}
	if (last)
		evbuffer_add_printf(b, "0\r\n\r\n");
	len = evbuffer_get_length(b);
	out = malloc(len + 1);
	evbuffer_remove(b, out, len);
	out[len] = '\0';
	evbuffer_free(b);
	return out;
}

/* Serve wire (step bytes per 2 ms) to one request. */
static struct result
run_canned(char *wire, size_t step, bool stream)
{
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct canned c;
	struct result r;
	struct evconnlistener *l;
	struct weft_kube_config cfg;
	struct weft_kube *k;
	char server[64], *err = NULL;
	struct timeval limit = { 10, 0 };

	memset(&c, 0, sizeof(c));
	memset(&r, 0, sizeof(r));
	memset(&sin, 0, sizeof(sin));
	c.base = r.base = event_base_new();
	c.wire = wire;
	c.len = strlen(wire);
	c.step = step;
	c.tick = evtimer_new(c.base, canned_tick, &c);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l = evconnlistener_new_bind(c.base, canned_accept, &c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 8,
	    (struct sockaddr *)&sin, sizeof(sin));
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin, &slen);
	snprintf(server, sizeof(server), "http://127.0.0.1:%u",
	    ntohs(sin.sin_port));
	memset(&cfg, 0, sizeof(cfg));
	cfg.server = server;
	cfg.token = (char *)"t";
	if ((k = weft_kube_new(c.base, &cfg, &err)) == NULL)
		diag("weft_kube_new: %s", err);
	else if (weft_kube_request(k, "GET", "/api/v1/pods?watch=1", NULL,
	    NULL, 5, stream ? on_event : NULL, on_done, &r) == NULL)
		diag("weft_kube_request failed");
	else {
		event_base_loopexit(c.base, &limit);
		event_base_dispatch(c.base);
	}
	ok(r.done, "the request ended (%s)", server);
	weft_kube_free(k);
	if (c.bev != NULL)
		bufferevent_free(c.bev);
	event_free(c.tick);
	evconnlistener_free(l);
	event_base_free(c.base);
	free(wire);
	return r;
}

static void
test_client(void)
{
	static const char events[] =
	    "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
	    "{\"type\":\"MODIFIED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}"
	    "\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":"
	    "{\"resourceVersion\":\"7\"}}}\n";
	/* inside the first event, between events, inside the third */
	static const size_t cuts[] = { 20, 51, 60, 130 };
	static const char status410[] = "{\"kind\":\"Status\",\"code\":410,"
	    "\"reason\":\"Expired\",\"message\":\"too old\"}";
	struct result r;
	char *wire;
	size_t step;

	for (step = 1; step <= 4096; step *= 64) {
		r = run_canned(chunked(events, cuts, 4, true), step, true);
		is_int(r.events, 3, "watch (%zu-byte writes): three events "
		    "across chunks", step);
		is_str(r.names, "a,b,", "watch: in order, split ones whole");
		is_int(r.status, 200, "watch: ended cleanly %s", r.error);
	}

	if (asprintf(&wire, "HTTP/1.1 410 Gone\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\n\r\n%s",
	    strlen(status410), status410) == -1)
		abort();
	r = run_canned(wire, 7, true);
	is_int(r.status, 410, "410 answer: status");
	is_str(r.message, "HTTP 410: too old", "410 answer: Status message");
	is_int(r.events, 0, "410 answer: no events streamed");

	r = run_canned(chunked(events, cuts, 2, false), 5, true);
	is_int(r.status, 0, "cut inside a chunk: no complete response");
	ok(r.error[0] != '\0', "cut inside a chunk: %s", r.error);
	/* the last chunk stops inside the third event */
	is_int(r.events, 2, "cut inside a chunk: the whole events before it");
}

int
main(void)
{
	char cmd[600];

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	test_versions();
	test_trim();
	test_kubeconfig();
	test_in_cluster();
	test_endpointslices();
	test_client();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return tap_done();
}
