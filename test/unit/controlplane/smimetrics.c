/* The SMI TrafficMetrics API (controlplane/smimetrics.c): durations and
 * quantities, the store's window, and the JSON shapes of every path kind,
 * fed the way the nodes feed it (a registry's edge delta). */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/manifest.h"
#include "weft/metrics.h"
#include "weft/smimetrics.h"
#include "../../tap.h"

static const char manifests[] =
"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n---\n"
"apiVersion: v1\nkind: Namespace\nmetadata: {name: tools}\n---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: tools, "
"labels: {app: client}}\nspec: {nodeName: n1, serviceAccountName: client}\n"
"status: {podIP: 10.0.0.1}\n---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: api-1, namespace: shop, "
"labels: {app: api, version: v1}}\nspec: {nodeName: n2, serviceAccountName: api}\n"
"status: {podIP: 10.0.0.2}\n---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: api-2, namespace: shop, "
"labels: {app: api, version: v2}}\nspec: {nodeName: n1, serviceAccountName: api}\n"
"status: {podIP: 10.0.0.3}\n---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: web-7f, namespace: shop, "
"labels: {tier: front}}\nspec: {nodeName: n1, serviceAccountName: web}\n"
"status: {podIP: 10.0.0.4}\n---\n"
"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: frontend, namespace: shop}\n"
"spec: {selector: {matchLabels: {tier: front}}}\n---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: shop}\n"
"spec: {selector: {app: api}, ports: [{port: 80, targetPort: 8080}]}\n---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: api-v1, namespace: shop}\n"
"spec: {selector: {app: api, version: v1}, ports: [{port: 80, targetPort: 8080}]}\n---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: api-v2, namespace: shop}\n"
"spec: {selector: {app: api, version: v2}, ports: [{port: 80, targetPort: 8080}]}\n---\n"
"apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
"metadata: {name: api-split, namespace: shop}\n"
"spec: {service: api, backends: [{service: api-v1, weight: 3}, "
"{service: api-v2, weight: 1}]}\n";

static struct weft_model *
model(void)
{
	struct weft_manifest_docs docs = { 0 };
	struct weft_errors errs = { 0 };
	struct weft_model *m;
	size_t i;

	weft_manifest_parse("test.yaml", manifests, sizeof(manifests) - 1,
	    &docs, &errs);
	m = weft_model_build(&docs, &errs);
	for (i = 0; i < errs.n; i++)
		diag("model: %s", errs.msgs[i]);
	ok(m != NULL && errs.n == 0, "model of the test manifests");
	weft_manifest_docs_clear(&docs);
	weft_errors_clear(&errs);
	return m;
}

static void
test_helpers(void)
{
	char buf[32];
	int s;

	ok(weft_smim_parse_duration("30s", &s) == 0 && s == 30, "30s");
	ok(weft_smim_parse_duration("5m", &s) == 0 && s == 300, "5m");
	ok(weft_smim_parse_duration("1m30s", &s) == 0 && s == 90, "1m30s");
	ok(weft_smim_parse_duration("1h", &s) == 0 && s == 3600, "1h");
	ok(weft_smim_parse_duration("1500ms", &s) == 0 && s == 2, "1500ms");
	ok(weft_smim_parse_duration("30", &s) == -1, "no unit: refused");
	ok(weft_smim_parse_duration("", &s) == -1, "empty: refused");
	ok(weft_smim_parse_duration("-5s", &s) == -1, "negative: refused");
	ok(weft_smim_parse_duration("0s", &s) == -1, "zero: refused");
	weft_smim_format_duration(30, buf, sizeof(buf));
	is_str(buf, "30s", "format 30s");
	weft_smim_format_duration(300, buf, sizeof(buf));
	is_str(buf, "5m0s", "format 5m0s (Go)");
	weft_smim_format_duration(3661, buf, sizeof(buf));
	is_str(buf, "1h1m1s", "format 1h1m1s");
	weft_smim_quantity(41, buf, sizeof(buf));
	is_str(buf, "41", "quantity 41");
	weft_smim_quantity(3.5, buf, sizeof(buf));
	is_str(buf, "3500m", "quantity 3500m");
	weft_smim_quantity(0.0123, buf, sizeof(buf));
	is_str(buf, "12m", "quantity rounds to milli-units");
	weft_smim_quantity(0, buf, sizeof(buf));
	is_str(buf, "0", "quantity 0");
}

/* Record n requests of one kind in reg, on side, from client to pod. */
static void
calls(struct weft_metrics *reg, enum weft_metrics_side side, const char *pod,
    const char *svc, const char *apex, int status, double dur, int n)
{
	struct weft_metrics_req r;
	int i;

	memset(&r, 0, sizeof(r));
	r.side = side;
	r.src.ns = "tools";
	r.src.sa = "client";
	r.src.pod = "client";
	r.dst.ns = "shop";
	r.dst.sa = "api";
	r.dst.pod = pod;
	r.dst_service = svc;
	r.split_apex = apex;
	r.status = status;
	r.duration_s = dur;
	for (i = 0; i < n; i++)
		weft_metrics_request(weft_metrics_shard(reg, i % 2), &r);
}

static int
push(struct weft_smim *s, struct weft_metrics *reg, int64_t now)
{
	size_t n;
	char *json = weft_metrics_edges_delta(reg, "n1", &n), *err = NULL;
	int taken;

	taken = weft_smim_ingest(s, json, strlen(json), now, &err);
	if (taken == -1)
		diag("ingest: %s", err);
	free(err);
	free(json);
	weft_metrics_edges_commit(reg);
	return taken;
}

static struct json_object *
get(struct weft_smim *s, struct weft_model *m, const char *path,
    const char *query, int64_t now, int want)
{
	char *body = NULL;
	struct json_object *o;
	int code;

	code = weft_smim_serve(s, m, path, query, now, 1700000000, &body);
	is_int(code, want, "GET %s%s%s", path, *query ? "?" : "", query);
	if (code != want)
		diag("%s", body ? body : "(null)");
	o = body ? json_tokener_parse(body) : NULL;
	free(body);
	return o;
}

static const char *
str_at(struct json_object *o, const char *path)
{
	char buf[256], *p, *tok, *save = NULL;
	struct json_object *cur = o, *next;

	snprintf(buf, sizeof(buf), "%s", path);
	for (p = buf; (tok = strtok_r(p, ".", &save)) != NULL; p = NULL) {
		if (*tok >= '0' && *tok <= '9') {
			if (!json_object_is_type(cur, json_type_array) ||
			    (size_t)atoi(tok) >= json_object_array_length(cur))
				return NULL;
			cur = json_object_array_get_idx(cur, (size_t)atoi(tok));
		} else if (!json_object_object_get_ex(cur, tok, &next))
			return NULL;
		else
			cur = next;
	}
	if (cur == NULL)
		return "null";
	return json_object_get_string(cur);
}

static const char *
metric(struct json_object *tm, const char *name)
{
	struct json_object *arr, *e, *v;
	size_t i;

	if (!json_object_object_get_ex(tm, "metrics", &arr))
		return NULL;
	for (i = 0; i < json_object_array_length(arr); i++) {
		e = json_object_array_get_idx(arr, i);
		if (json_object_object_get_ex(e, "name", &v) &&
		    strcmp(json_object_get_string(v), name) == 0 &&
		    json_object_object_get_ex(e, "value", &v))
			return json_object_get_string(v);
	}
	return NULL;
}

static size_t
nitems(struct json_object *list)
{
	struct json_object *items;

	return json_object_object_get_ex(list, "items", &items) ?
	    json_object_array_length(items) : (size_t)-1;
}

static struct json_object *
item(struct json_object *list, size_t i)
{
	struct json_object *items;

	json_object_object_get_ex(list, "items", &items);
	return json_object_array_get_idx(items, i);
}

#define PFX	WEFT_SMIM_PREFIX

static void
test_api(void)
{
	struct weft_model *m = model();
	struct weft_smim *s = weft_smim_new();
	struct weft_metrics *reg = weft_metrics_new(NULL, 2);
	struct json_object *o, *it;
	char *top;
	int64_t t0 = 1000;

	/* client -> api (split to api-v1 on api-1, api-v2 on api-2), both
	 * sides; 4xx is a success, 5xx and resets failures */
	calls(reg, WEFT_METRICS_OUTBOUND, "api-1", "api-v1", "api", 200, 0.004, 6);
	calls(reg, WEFT_METRICS_OUTBOUND, "api-1", "api-v1", "api", 503, 0.004, 2);
	calls(reg, WEFT_METRICS_OUTBOUND, "api-2", "api-v2", "api", 200, 0.002, 3);
	calls(reg, WEFT_METRICS_OUTBOUND, "api-2", "api-v2", "api", 0, 0, 1);
	calls(reg, WEFT_METRICS_INBOUND, "api-1", NULL, NULL, 200, 0.003, 6);
	calls(reg, WEFT_METRICS_INBOUND, "api-1", NULL, NULL, 503, 0.003, 2);
	calls(reg, WEFT_METRICS_INBOUND, "api-2", NULL, NULL, 404, 0.001, 3);
	is_int(push(s, reg, t0), 8, "every edge of both shards taken");
	ok(weft_smim_nedges(s) == 4, "4 edges stored (side x destination)");

	/* discovery */
	o = get(s, m, PFX, "", t0, 200);
	is_str(str_at(o, "kind"), "APIResourceList", "resource list");
	is_str(str_at(o, "groupVersion"), "metrics.smi-spec.io/v1alpha1",
	    "group version");
	json_object_put(o);
	o = get(s, m, "/apis/metrics.smi-spec.io", "", t0, 200);
	is_str(str_at(o, "kind"), "APIGroup", "group");
	is_str(str_at(o, "preferredVersion.version"), "v1alpha1", "version");
	json_object_put(o);

	/* one pod: what it served, server side */
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "", t0 + 1, 200);
	is_str(str_at(o, "kind"), "TrafficMetrics", "kind");
	is_str(str_at(o, "apiVersion"), "metrics.smi-spec.io/v1alpha1",
	    "apiVersion");
	is_str(str_at(o, "metadata.name"), "api-1", "metadata.name");
	is_str(str_at(o, "metadata.namespace"), "shop", "metadata.namespace");
	is_str(str_at(o, "metadata.selfLink"), PFX "/namespaces/shop/pods/api-1",
	    "selfLink");
	is_str(str_at(o, "timestamp"), "2023-11-14T22:13:20Z", "timestamp");
	is_str(str_at(o, "window"), "30s", "default window 30s");
	is_str(str_at(o, "resource.kind"), "Pod", "resource.kind");
	is_str(str_at(o, "resource.name"), "api-1", "resource.name");
	is_str(str_at(o, "edge"), "null", "no edge");
	is_str(metric(o, "success_count"), "6", "api-1 success");
	is_str(metric(o, "failure_count"), "2", "api-1 failure (503)");
	ok(metric(o, "p99_response_latency") != NULL &&
	    metric(o, "p50_response_latency") != NULL, "latency percentiles");
	is_str(str_at(o, "metrics.0.unit"), "ms", "latency unit ms (A-20)");
	json_object_put(o);

	/* the pod's edges: client-side "to" edges for the caller */
	o = get(s, m, PFX "/namespaces/tools/pods/client/edges", "", t0 + 1, 200);
	is_str(str_at(o, "kind"), "TrafficMetricsList", "edges: a list");
	is_str(str_at(o, "resource.name"), "client", "list resource");
	is_int(nitems(o), 2, "client has two edges");
	it = item(o, 0);
	is_str(str_at(it, "edge.direction"), "to", "direction to");
	is_str(str_at(it, "edge.side"), "client", "side client");
	is_str(str_at(it, "edge.resource.kind"), "Pod", "peer kind");
	is_str(str_at(it, "edge.resource.name"), "api-1", "peer api-1");
	is_str(metric(it, "success_count"), "6", "client->api-1 success");
	is_str(metric(it, "failure_count"), "2", "client->api-1 failure");
	it = item(o, 1);
	is_str(str_at(it, "edge.resource.name"), "api-2", "peer api-2");
	is_str(metric(it, "success_count"), "3", "client->api-2 success");
	is_str(metric(it, "failure_count"), "1", "reset: a failure");
	json_object_put(o);

	/* and server-side "from" edges for the callee */
	o = get(s, m, PFX "/namespaces/shop/pods/api-2/edges", "", t0 + 1, 200);
	is_int(nitems(o), 1, "api-2: one edge");
	it = item(o, 0);
	is_str(str_at(it, "edge.direction"), "from", "direction from");
	is_str(str_at(it, "edge.side"), "server", "side server");
	is_str(str_at(it, "edge.resource.namespace"), "tools", "peer ns");
	is_str(str_at(it, "edge.resource.name"), "client", "peer client");
	is_str(metric(it, "success_count"), "3", "404s are successes");
	json_object_put(o);

	/* lists */
	o = get(s, m, PFX "/namespaces/shop/pods", "", t0 + 1, 200);
	is_int(nitems(o), 3, "shop has three pods");
	is_str(str_at(o, "resource.kind"), "Pod", "list of pods");
	json_object_put(o);
	o = get(s, m, PFX "/pods", "", t0 + 1, 200);
	is_int(nitems(o), 4, "all pods");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces", "", t0 + 1, 200);
	is_int(nitems(o), 2, "two namespaces");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop", "", t0 + 1, 200);
	is_str(str_at(o, "resource.kind"), "Namespace", "namespace kind");
	is_str(str_at(o, "metadata.namespace"), NULL, "cluster-scoped");
	is_str(metric(o, "success_count"), "9", "shop served 9");
	is_str(metric(o, "failure_count"), "2", "shop failed 2");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop/edges", "", t0 + 1, 200);
	is_int(nitems(o), 1, "shop: one edge (from tools)");
	is_str(str_at(item(o, 0), "edge.resource.name"), "tools", "from tools");
	is_str(str_at(item(o, 0), "edge.resource.kind"), "Namespace",
	    "namespace edges join namespaces (A-32)");
	json_object_put(o);

	/* deployments: app label, or a Deployment's selector */
	o = get(s, m, PFX "/namespaces/shop/deployments", "", t0 + 1, 200);
	is_int(nitems(o), 2, "deployments api and frontend");
	is_str(str_at(item(o, 0), "resource.name"), "api", "api (app label)");
	is_str(str_at(item(o, 1), "resource.name"), "frontend",
	    "frontend (Deployment selector)");
	is_str(metric(item(o, 0), "success_count"), "9", "api = both pods");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/tools/deployments/client/edges", "",
	    t0 + 1, 200);
	is_int(nitems(o), 1, "client -> api: one deployment edge");
	is_str(str_at(item(o, 0), "edge.resource.kind"), "Deployment",
	    "peer is a Deployment");
	is_str(metric(item(o, 0), "success_count"), "9", "6 + 3");
	is_str(metric(item(o, 0), "failure_count"), "3", "2 + 1");
	json_object_put(o);

	/* trafficsplits: one item per backend */
	o = get(s, m, PFX "/namespaces/shop/trafficsplits/api-split", "",
	    t0 + 1, 200);
	is_int(nitems(o), 2, "one item per backend");
	it = item(o, 0);
	is_str(str_at(it, "backend.apex"), "api", "apex");
	is_str(str_at(it, "backend.name"), "api-v1", "backend name");
	is_str(str_at(it, "backend.weight"), "3", "backend weight");
	is_str(str_at(it, "edge.direction"), "from", "split edge from");
	is_str(str_at(it, "edge.side"), "client", "split edge client");
	is_str(str_at(it, "resource.kind"), "TrafficSplit", "kind");
	is_str(metric(it, "success_count"), "6", "api-v1 success");
	is_str(metric(it, "failure_count"), "2", "api-v1 failure");
	is_str(metric(item(o, 1), "success_count"), "3", "api-v2 success");
	json_object_put(o);

	/* errors */
	o = get(s, m, PFX "/namespaces/shop/pods/nope", "", t0, 404);
	is_str(str_at(o, "kind"), "Status", "404 is a Status");
	is_str(str_at(o, "reason"), "NotFound", "NotFound");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop/daemonsets", "", t0, 404);
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "t=forever", t0, 400);
	is_str(str_at(o, "reason"), "BadRequest", "bad window");
	json_object_put(o);

	/* the window: 30 s later the pushes are out of it; ?t=5m has them */
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "", t0 + 30, 200);
	is_str(metric(o, "success_count"), "0", "out of the default window");
	ok(metric(o, "p50_response_latency") == NULL,
	    "no latency without requests");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "t=5m", t0 + 30, 200);
	is_str(str_at(o, "window"), "5m0s", "window 5m0s");
	is_str(metric(o, "success_count"), "6", "in a 5 minute window");
	json_object_put(o);

	/* a second push adds up */
	calls(reg, WEFT_METRICS_INBOUND, "api-1", NULL, NULL, 200, 0.003, 4);
	is_int(push(s, reg, t0 + 10), 2, "second push: only what moved");
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "", t0 + 11, 200);
	is_str(metric(o, "success_count"), "10", "6 + 4");
	json_object_put(o);
	o = get(s, m, PFX "/namespaces/shop/pods/api-1", "t=5s", t0 + 11, 200);
	is_str(metric(o, "success_count"), "4", "only the second push in 5s");
	json_object_put(o);

	/* top */
	top = weft_smim_top(s, "shop", 30, t0 + 11);
	o = top ? json_tokener_parse(top) : NULL;
	free(top);
	ok(o != NULL, "top JSON");
	is_str(str_at(o, "window"), "30s", "top window");
	is_str(str_at(o, "edges.0.source.pod"), "client", "top source");
	is_str(str_at(o, "edges.0.destination.pod"), "api-1", "top destination");
	ok(str_at(o, "edges.0.p99_ms") != NULL, "top p99");
	json_object_put(o);

	/* malformed pushes are refused whole */
	{
		char *err = NULL;
		const char *bad = "{\"edges\":[{\"side\":\"client\",\"src\":{},"
		    "\"dst\":{},\"success\":1,\"failure\":0},{\"side\":\"x\"}]}";
		size_t before = weft_smim_nedges(s);

		ok(weft_smim_ingest(s, bad, strlen(bad), t0, &err) == -1 &&
		    err != NULL, "malformed edge refused: %s", err ? err : "");
		ok(weft_smim_nedges(s) == before, "nothing taken");
		free(err);
		err = NULL;
		ok(weft_smim_ingest(s, "[]", 2, t0, &err) == -1, "not an object");
		free(err);
	}

	/* prune: edges idle longer than the history go */
	weft_smim_prune(s, t0 + WEFT_SMIM_HISTORY + 20);
	is_int(weft_smim_nedges(s), 0, "idle edges pruned");

	weft_metrics_free(reg);
	weft_smim_free(s);
	weft_model_free(m);
}

int
main(void)
{
	test_helpers();
	test_api();
	return tap_done();
}
