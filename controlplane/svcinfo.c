/* `weft ctl service` (weft/svcinfo.h): a Service's endpoints, its splits
 * and the share each backend received recently.
 *
 * Endpoints are resolved as the nodes resolve them (node/gen.c): pods of
 * the Service's namespace its selector matches, with an IP; targetPort by
 * number or by the name of a container port.  Shares come from the SMI
 * TrafficMetrics store the nodes push to (the `trafficsplits` resource, one
 * item per backend), so ctl and the metrics API agree. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include <json-c/json.h>

#include "weft/ip.h"
#include "weft/manifest.h"
#include "weft/smimetrics.h"
#include "weft/snapshot.h"
#include "weft/svcinfo.h"

static uint16_t
svi_target(const struct weft_snap_pod *pod, const struct weft_service_port *sp)
{
	size_t i;

	if (sp->target_port_name == NULL)
		return sp->target_port != 0 ? sp->target_port : sp->port;
	for (i = 0; i < pod->n_ports; i++)
		if (pod->ports[i].name != NULL &&
		    pod->ports[i].protocol == sp->protocol &&
		    strcmp(pod->ports[i].name, sp->target_port_name) == 0)
			return pod->ports[i].port;
	return 0;
}

static const struct weft_snap_service *
svi_service(const struct weft_model *m, const char *ns, const char *name)
{
	size_t i;

	for (i = 0; i < m->all.n_services; i++)
		if (strcmp(m->all.services[i].namespace, ns) == 0 &&
		    strcmp(m->all.services[i].name, name) == 0)
			return &m->all.services[i];
	return NULL;
}

/* Ready endpoints of svc (any port resolves). */
static int
svi_nendpoints(const struct weft_model *m, const struct weft_snap_service *svc)
{
	size_t i, j;
	int n = 0;

	if (svc == NULL || svc->selector.n == 0)
		return 0;
	for (i = 0; i < m->all.n_pods; i++) {
		const struct weft_snap_pod *p = &m->all.pods[i];

		if (p->ip.family == 0 || !p->ready ||
		    strcmp(p->namespace, svc->namespace) != 0 ||
		    !weft_labels_match(&svc->selector, &p->labels))
			continue;
		for (j = 0; j < svc->n_ports; j++)
			if (svi_target(p, &svc->ports[j]) != 0)
				break;
		if (j < svc->n_ports || svc->n_ports == 0)
			n++;
	}
	return n;
}

static const char *
svi_metric(struct json_object *item, const char *name)
{
	struct json_object *ms, *e, *v;
	size_t i;

	if (!json_object_object_get_ex(item, "metrics", &ms))
		return NULL;
	for (i = 0; i < json_object_array_length(ms); i++) {
		e = json_object_array_get_idx(ms, i);
		if (json_object_object_get_ex(e, "name", &v) &&
		    strcmp(json_object_get_string(v), name) == 0 &&
		    json_object_object_get_ex(e, "value", &v))
			return json_object_get_string(v);
	}
	return NULL;
}

/* Requests per backend of split sp in the window: from the TrafficMetrics
 * API's answer for it. */
static void
svi_counts(struct weft_smim *s, const struct weft_model *m,
    const struct weft_smi_split *sp, int window, int64_t now, time_t wall,
    uint64_t *succ, uint64_t *fail)
{
	struct json_object *o, *items, *it, *be, *nm;
	char path[600], query[32], wstr[24];
	const char *v;
	char *body = NULL;
	size_t i, b;

	if (s == NULL)
		return;
	snprintf(path, sizeof(path), WEFT_SMIM_PREFIX
	    "/namespaces/%s/trafficsplits/%s", sp->namespace, sp->name);
	weft_smim_format_duration(window, wstr, sizeof(wstr));
	snprintf(query, sizeof(query), "t=%s", wstr);
	if (weft_smim_serve(s, m, path, query, now, wall, &body) != 200 ||
	    body == NULL || (o = json_tokener_parse(body)) == NULL) {
		free(body);
		return;
	}
	free(body);
	if (json_object_object_get_ex(o, "items", &items))
		for (i = 0; i < json_object_array_length(items); i++) {
			it = json_object_array_get_idx(items, i);
			if (!json_object_object_get_ex(it, "backend", &be) ||
			    !json_object_object_get_ex(be, "name", &nm))
				continue;
			for (b = 0; b < sp->n_backends; b++) {
				if (strcmp(sp->backends[b].service,
				    json_object_get_string(nm)) != 0)
					continue;
				if ((v = svi_metric(it, "success_count")) != NULL)
					succ[b] = strtoull(v, NULL, 10);
				if ((v = svi_metric(it, "failure_count")) != NULL)
					fail[b] = strtoull(v, NULL, 10);
			}
		}
	json_object_put(o);
}

static struct json_object *
svi_error(const char *msg, int *status, int code)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "error", json_object_new_string(msg));
	*status = code;
	return o;
}

char *
weft_svcinfo_json(const struct weft_model *m, struct weft_smim *s,
    const char *ns, const char *name, int window, int64_t now, time_t wall,
    int *status)
{
	const struct weft_snap_service *svc;
	struct json_object *o, *a, *e, *tp, *sa, *ba, *be, *ma;
	char ip[WEFT_IP_STRLEN], wstr[24], msg[300];
	uint64_t *succ, *fail;
	const char *str;
	size_t i, j;
	char *out;

	*status = 200;
	if (m == NULL || (svc = svi_service(m, ns, name)) == NULL) {
		snprintf(msg, sizeof(msg), "service %s/%s not found", ns, name);
		o = svi_error(msg, status, 404);
		goto done;
	}
	o = json_object_new_object();
	json_object_object_add(o, "namespace", json_object_new_string(ns));
	json_object_object_add(o, "name", json_object_new_string(name));
	json_object_object_add(o, "clusterIP", json_object_new_string(
	    svc->cluster_ip.family != 0 ? weft_ip_str(&svc->cluster_ip, ip,
	    sizeof(ip)) : ""));
	weft_smim_format_duration(window, wstr, sizeof(wstr));
	json_object_object_add(o, "window", json_object_new_string(wstr));
	a = json_object_new_array();
	for (i = 0; i < svc->n_ports; i++) {
		const struct weft_service_port *sp = &svc->ports[i];

		e = json_object_new_object();
		json_object_object_add(e, "name", json_object_new_string(
		    sp->name ? sp->name : ""));
		json_object_object_add(e, "port", json_object_new_int(sp->port));
		json_object_object_add(e, "protocol", json_object_new_string(
		    sp->protocol == IPPROTO_UDP ? "UDP" : "TCP"));
		if (sp->target_port_name != NULL)
			json_object_object_add(e, "targetPort",
			    json_object_new_string(sp->target_port_name));
		else
			json_object_object_add(e, "targetPort",
			    json_object_new_int(sp->target_port ?
			    sp->target_port : sp->port));
		json_object_object_add(e, "appProtocol", json_object_new_string(
		    sp->app_protocol ? sp->app_protocol : ""));
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "ports", a);

	a = json_object_new_array();
	for (i = 0; svc->selector.n > 0 && i < m->all.n_pods; i++) {
		const struct weft_snap_pod *p = &m->all.pods[i];

		if (strcmp(p->namespace, ns) != 0 ||
		    !weft_labels_match(&svc->selector, &p->labels))
			continue;
		e = json_object_new_object();
		json_object_object_add(e, "pod", json_object_new_string(p->name));
		json_object_object_add(e, "node", json_object_new_string(
		    p->node ? p->node : ""));
		json_object_object_add(e, "ip", json_object_new_string(
		    p->ip.family ? weft_ip_str(&p->ip, ip, sizeof(ip)) : ""));
		json_object_object_add(e, "ready", json_object_new_boolean(
		    p->ready && p->ip.family != 0));
		tp = json_object_new_array();
		for (j = 0; j < svc->n_ports; j++)
			json_object_array_add(tp, json_object_new_int(
			    svi_target(p, &svc->ports[j])));
		json_object_object_add(e, "targetPorts", tp);
		json_object_array_add(a, e);
	}
	json_object_object_add(o, "endpoints", a);

	sa = json_object_new_array();
	a = json_object_new_array();
	for (i = 0; i < m->all.n_splits; i++) {
		const struct weft_smi_split *sp = &m->all.splits[i];

		if (strcmp(sp->namespace, ns) != 0)
			continue;
		for (j = 0; strcmp(sp->service, name) != 0 &&
		    j < sp->n_backends; j++)
			if (strcmp(sp->backends[j].service, name) == 0) {
				e = json_object_new_object();
				json_object_object_add(e, "split",
				    json_object_new_string(sp->name));
				json_object_object_add(e, "root",
				    json_object_new_string(sp->service));
				json_object_array_add(a, e);
				break;
			}
		if (strcmp(sp->service, name) != 0)
			continue;
		e = json_object_new_object();
		json_object_object_add(e, "name", json_object_new_string(
		    sp->name));
		json_object_object_add(e, "created", json_object_new_int64(
		    sp->created));
		json_object_object_add(e, "catchAll", json_object_new_boolean(
		    sp->n_match_groups == 0));
		ma = json_object_new_array();
		for (j = 0; j < sp->n_match_groups; j++)
			json_object_array_add(ma, json_object_new_string(
			    sp->match_groups[j]));
		json_object_object_add(e, "matches", ma);
		succ = calloc(sp->n_backends + 1, sizeof(*succ));
		fail = calloc(sp->n_backends + 1, sizeof(*fail));
		if (succ != NULL && fail != NULL)
			svi_counts(s, m, sp, window, now, wall, succ, fail);
		ba = json_object_new_array();
		for (j = 0; j < sp->n_backends; j++) {
			const struct weft_snap_service *bs = svi_service(m, ns,
			    sp->backends[j].service);

			be = json_object_new_object();
			json_object_object_add(be, "service",
			    json_object_new_string(sp->backends[j].service));
			json_object_object_add(be, "weight", json_object_new_int64(
			    (int64_t)sp->backends[j].weight));
			json_object_object_add(be, "exists",
			    json_object_new_boolean(bs != NULL));
			json_object_object_add(be, "endpoints",
			    json_object_new_int(svi_nendpoints(m, bs)));
			json_object_object_add(be, "success", json_object_new_int64(
			    succ ? (int64_t)succ[j] : 0));
			json_object_object_add(be, "failure", json_object_new_int64(
			    fail ? (int64_t)fail[j] : 0));
			json_object_object_add(be, "requests",
			    json_object_new_int64(succ && fail ?
			    (int64_t)(succ[j] + fail[j]) : 0));
			json_object_array_add(ba, be);
		}
		free(succ);
		free(fail);
		json_object_object_add(e, "backends", ba);
		json_object_array_add(sa, e);
	}
	json_object_object_add(o, "splits", sa);
	json_object_object_add(o, "backendOf", a);
done:
	str = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE);
	out = str != NULL ? strdup(str) : NULL;
	json_object_put(o);
	return out;
}

static const char *
svi_str(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, k, &v))
		return "";
	return json_object_get_string(v);
}

static int64_t
svi_int(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, k, &v))
		return 0;
	return json_object_get_int64(v);
}

static struct json_object *
svi_arr(struct json_object *o, const char *k)
{
	struct json_object *v;

	if (o == NULL || !json_object_object_get_ex(o, k, &v) ||
	    !json_object_is_type(v, json_type_array))
		return NULL;
	return v;
}

int
weft_svcinfo_print(const char *json, FILE *f)
{
	struct json_object *o, *a, *e, *tp, *sp, *ba, *be, *ma;
	size_t i, j, k, n;
	int64_t total, wsum;

	if ((o = json_tokener_parse(json)) == NULL ||
	    !json_object_is_type(o, json_type_object) ||
	    svi_arr(o, "endpoints") == NULL) {
		json_object_put(o);
		return -1;
	}
	fprintf(f, "Service %s/%s  %s\n", svi_str(o, "namespace"),
	    svi_str(o, "name"), *svi_str(o, "clusterIP") ?
	    svi_str(o, "clusterIP") : "(no cluster IP)");
	a = svi_arr(o, "ports");
	fprintf(f, "  ports:");
	for (i = 0; a != NULL && i < json_object_array_length(a); i++) {
		e = json_object_array_get_idx(a, i);
		fprintf(f, "%s %s%s%s->%s/%s", i ? "," : "", svi_str(e, "name"),
		    *svi_str(e, "name") ? " " : "", svi_str(e, "port"),
		    svi_str(e, "targetPort"), svi_str(e, "protocol"));
	}
	fprintf(f, "\n\nEndpoints:\n  %-24s %-22s %-12s %-9s %s\n", "POD",
	    "ADDRESS", "NODE", "READY", "TARGET PORTS");
	a = svi_arr(o, "endpoints");
	n = json_object_array_length(a);
	for (i = 0; i < n; i++) {
		char addr[80], ports[120];
		size_t off = 0;

		e = json_object_array_get_idx(a, i);
		tp = svi_arr(e, "targetPorts");
		ports[0] = '\0';
		for (j = 0; tp != NULL && j < json_object_array_length(tp) &&
		    off < sizeof(ports) - 8; j++)
			off += (size_t)snprintf(ports + off, sizeof(ports) - off,
			    "%s%s", j ? "," : "", json_object_get_string(
			    json_object_array_get_idx(tp, j)));
		snprintf(addr, sizeof(addr), "%s:%s", svi_str(e, "ip"),
		    tp != NULL && json_object_array_length(tp) > 0 ?
		    json_object_get_string(json_object_array_get_idx(tp, 0)) :
		    "-");
		fprintf(f, "  %-24s %-22s %-12s %-9s %s\n", svi_str(e, "pod"),
		    addr, svi_str(e, "node"), json_object_get_boolean(
		    json_object_object_get(e, "ready")) ? "ready" : "not-ready",
		    ports);
	}
	if (n == 0)
		fprintf(f, "  (none)\n");
	a = svi_arr(o, "splits");
	for (i = 0; a != NULL && i < json_object_array_length(a); i++) {
		sp = json_object_array_get_idx(a, i);
		ma = svi_arr(sp, "matches");
		fprintf(f, "\nTrafficSplit %s/%s", svi_str(o, "namespace"),
		    svi_str(sp, "name"));
		if (ma != NULL && json_object_array_length(ma) > 0) {
			fprintf(f, " (matches:");
			for (j = 0; j < json_object_array_length(ma); j++)
				fprintf(f, " HTTPRouteGroup %s",
				    json_object_get_string(
				    json_object_array_get_idx(ma, j)));
			fprintf(f, ")");
		} else
			fprintf(f, " (catch-all)");
		ba = svi_arr(sp, "backends");
		total = wsum = 0;
		for (k = 0; ba != NULL && k < json_object_array_length(ba);
		    k++) {
			be = json_object_array_get_idx(ba, k);
			total += svi_int(be, "requests");
			wsum += svi_int(be, "weight");
		}
		fprintf(f, ", requests in the last %s: %" PRId64 "\n",
		    svi_str(o, "window"), total);
		for (k = 0; ba != NULL && k < json_object_array_length(ba);
		    k++) {
			be = json_object_array_get_idx(ba, k);
			fprintf(f, "  %-24s weight %" PRId64 " (%.1f%%)  endpoints "
			    "%" PRId64 "%s  requests %" PRId64 " (%" PRId64
			    " failed)  share %.1f%%\n", svi_str(be, "service"),
			    svi_int(be, "weight"), wsum > 0 ? 100.0 *
			    (double)svi_int(be, "weight") / (double)wsum : 0.0,
			    svi_int(be, "endpoints"), json_object_get_boolean(
			    json_object_object_get(be, "exists")) ? "" :
			    " (no such service)", svi_int(be, "requests"),
			    svi_int(be, "failure"), total > 0 ? 100.0 *
			    (double)svi_int(be, "requests") / (double)total :
			    0.0);
		}
	}
	a = svi_arr(o, "backendOf");
	for (i = 0; a != NULL && i < json_object_array_length(a); i++) {
		e = json_object_array_get_idx(a, i);
		fprintf(f, "%sbackend of TrafficSplit %s/%s (root %s)\n",
		    i == 0 ? "\n" : "", svi_str(o, "namespace"),
		    svi_str(e, "split"), svi_str(e, "root"));
	}
	json_object_put(o);
	return 0;
}
