/* Unit tests for controlplane/svcinfo.c (`weft ctl service`): endpoints
 * resolved like the nodes do, the splits of a root service, each backend's
 * share from pushed metrics, and the printed table. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/manifest.h"
#include "weft/metrics.h"
#include "weft/smimetrics.h"
#include "weft/svcinfo.h"
#include "../../tap.h"

static const char yaml[] =
"apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: "
    "{weft.io/mesh: enabled}}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: front-v1, namespace: shop, "
    "labels: {app: front, version: v1}}\n"
"spec: {nodeName: node-1, containers: [{name: c, ports: [{name: http, "
    "containerPort: 8080}]}]}\n"
"status: {podIP: 10.244.1.50}\n"
"---\n"
"apiVersion: v1\nkind: Pod\nmetadata: {name: front-v2, namespace: shop, "
    "labels: {app: front, version: v2}}\n"
"spec: {nodeName: node-2, containers: [{name: c, ports: [{name: http, "
    "containerPort: 8081}]}]}\n"
"status: {podIP: 10.244.2.50}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: front, namespace: shop}\n"
"spec: {clusterIP: 10.96.0.30, selector: {app: front}, ports: [{name: http, "
    "port: 80, targetPort: http}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: front-v1, namespace: shop}\n"
"spec: {selector: {app: front, version: v1}, ports: [{port: 80, "
    "targetPort: http}]}\n"
"---\n"
"apiVersion: v1\nkind: Service\nmetadata: {name: front-v2, namespace: shop}\n"
"spec: {selector: {app: front, version: v2}, ports: [{port: 80, "
    "targetPort: http}]}\n"
"---\n"
"apiVersion: split.smi-spec.io/v1alpha4\nkind: TrafficSplit\n"
"metadata: {name: front-split, namespace: shop}\n"
"spec: {service: front, backends: [{service: front-v1, weight: 3}, "
    "{service: front-v2, weight: 1}, {service: gone, weight: 1}]}\n";

static struct weft_model *
model(void)
{
	struct weft_manifest_docs d = { NULL, 0 };
	struct weft_errors e = { NULL, 0, 0 };
	struct weft_model *m = NULL;
	size_t i;

	if (weft_manifest_parse("t.yaml", yaml, strlen(yaml), &d, &e) == 0)
		m = weft_model_build(&d, &e);
	for (i = 0; i < e.n; i++)
		diag("model: %s", e.msgs[i]);
	weft_manifest_docs_clear(&d);
	weft_errors_clear(&e);
	return m;
}

static void
calls(struct weft_metrics *reg, const char *pod, const char *svc,
    int status, int n)
{
	struct weft_metrics_req r;
	int i;

	memset(&r, 0, sizeof(r));
	r.side = WEFT_METRICS_OUTBOUND;
	r.src.ns = "tools";
	r.src.sa = "client";
	r.src.pod = "client";
	r.dst.ns = "shop";
	r.dst.sa = "front";
	r.dst.pod = pod;
	r.dst_service = svc;
	r.split_apex = "front";
	r.status = status;
	r.duration_s = 0.002;
	for (i = 0; i < n; i++)
		weft_metrics_request(weft_metrics_shard(reg, 0), &r);
}

int
main(void)
{
	struct weft_metrics_config mc;
	struct weft_metrics *reg;
	struct weft_model *m;
	struct weft_smim *s;
	struct json_object *o, *sp, *be, *ep;
	char *json, *push, *err = NULL, *out = NULL;
	size_t n, outlen = 0;
	FILE *f;
	int status;

	m = model();
	ok(m != NULL, "model");
	weft_metrics_config_defaults(&mc);
	reg = weft_metrics_new(&mc, 1);
	s = weft_smim_new();
	calls(reg, "front-v1", "front-v1", 200, 30);
	calls(reg, "front-v2", "front-v2", 200, 9);
	calls(reg, "front-v2", "front-v2", 503, 1);
	push = weft_metrics_edges_delta(reg, "node-1", &n);
	ok(push != NULL && weft_smim_ingest(s, push, strlen(push), 1000,
	    &err) > 0, "metrics pushed (%s)", err ? err : "ok");
	free(push);
	free(err);

	json = weft_svcinfo_json(m, s, "shop", "front", 30, 1001, 0, &status);
	is_int(status, 200, "shop/front found");
	o = json ? json_tokener_parse(json) : NULL;
	ok(o != NULL, "JSON");
	ep = json_object_array_get_idx(json_object_object_get(o, "endpoints"),
	    1);
	is_str(json_object_get_string(json_object_object_get(ep, "pod")),
	    "front-v2", "endpoint front-v2");
	is_str(json_object_get_string(json_object_array_get_idx(
	    json_object_object_get(ep, "targetPorts"), 0)), "8081",
	    "  targetPort by name, per pod (8081)");
	sp = json_object_array_get_idx(json_object_object_get(o, "splits"), 0);
	is_str(json_object_get_string(json_object_object_get(sp, "name")),
	    "front-split", "its split");
	be = json_object_array_get_idx(json_object_object_get(sp, "backends"),
	    0);
	is_int(json_object_get_int(json_object_object_get(be, "requests")), 30,
	    "front-v1: 30 requests");
	be = json_object_array_get_idx(json_object_object_get(sp, "backends"),
	    1);
	is_int(json_object_get_int(json_object_object_get(be, "requests")), 10,
	    "front-v2: 10 requests");
	is_int(json_object_get_int(json_object_object_get(be, "failure")), 1,
	    "  1 failed (5xx, A-19)");
	be = json_object_array_get_idx(json_object_object_get(sp, "backends"),
	    2);
	ok(!json_object_get_boolean(json_object_object_get(be, "exists")),
	    "a backend that does not exist is shown as such");
	json_object_put(o);

	f = open_memstream(&out, &outlen);
	is_int(weft_svcinfo_print(json, f), 0, "printed");
	fclose(f);
	diag("%s", out);
	ok(strstr(out, "front-v1                 10.244.1.50:8080") != NULL,
	    "table: endpoint front-v1 with its address");
	ok(strstr(out, "node-2       ready") != NULL, "table: node, ready");
	ok(strstr(out, "front-v1                 weight 3 (60.0%)") != NULL,
	    "table: weight and its share of the weights");
	ok(strstr(out, "share 75.0%") != NULL && strstr(out, "share 25.0%"),
	    "table: shares of the recent requests (30/40, 10/40)");
	ok(strstr(out, "(no such service)") != NULL, "table: missing backend");
	free(out);
	free(json);

	json = weft_svcinfo_json(m, s, "shop", "front-v1", 30, 1001, 0,
	    &status);
	ok(status == 200 && strstr(json, "\"backendOf\":[{\"split\":"
	    "\"front-split\",\"root\":\"front\"}]") != NULL,
	    "a backend names the split it serves");
	free(json);
	json = weft_svcinfo_json(m, s, "shop", "nope", 30, 1001, 0, &status);
	is_int(status, 404, "unknown service: 404");
	free(json);

	weft_smim_free(s);
	weft_metrics_free(reg);
	weft_model_free(m);
	return tap_done();
}
