/* The snapshot wire format (DESIGN §6): plain structs <-> JSON.
 *
 * Encoding builds a json-c tree in a fixed field order and serialises it
 * without whitespace, so equal snapshots are equal bytes (the controller
 * compares encodings to decide whether anything changed).  Optional strings
 * and unset addresses are omitted rather than written as null.
 *
 * Decoding checks every field it reads and stops at the first problem,
 * reporting it with its JSON path; fields it does not know are ignored. */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/snapshot.h"

#define SNAP_MAX_DEPTH	32

/* --- free ------------------------------------------------------------------ */

void
weft_labels_clear(struct weft_labels *l)
{
	size_t i;

	for (i = 0; i < l->n; i++) {
		free(l->items[i].key);
		free(l->items[i].value);
	}
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

void
weft_snap_node_clear(struct weft_snap_node *n)
{
	free(n->name);
	free(n->pod_cidrs);
	memset(n, 0, sizeof(*n));
}

void
weft_snap_namespace_clear(struct weft_snap_namespace *ns)
{
	free(ns->name);
	weft_labels_clear(&ns->labels);
	memset(ns, 0, sizeof(*ns));
}

void
weft_snap_pod_clear(struct weft_snap_pod *p)
{
	size_t i;

	free(p->namespace);
	free(p->name);
	free(p->uid);
	free(p->node);
	free(p->service_account);
	weft_labels_clear(&p->labels);
	for (i = 0; i < p->n_ports; i++)
		free(p->ports[i].name);
	free(p->ports);
	memset(p, 0, sizeof(*p));
}

void
weft_snap_service_clear(struct weft_snap_service *s)
{
	size_t i;

	free(s->namespace);
	free(s->name);
	for (i = 0; i < s->n_ports; i++) {
		free(s->ports[i].name);
		free(s->ports[i].target_port_name);
		free(s->ports[i].app_protocol);
	}
	free(s->ports);
	weft_labels_clear(&s->selector);
	memset(s, 0, sizeof(*s));
}

static void
snap_strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void
weft_smi_target_clear(struct weft_smi_target *t)
{
	size_t i;

	free(t->namespace);
	free(t->name);
	free(t->destination.namespace);
	free(t->destination.name);
	for (i = 0; i < t->n_sources; i++) {
		free(t->sources[i].namespace);
		free(t->sources[i].name);
	}
	free(t->sources);
	for (i = 0; i < t->n_rules; i++) {
		free(t->rules[i].name);
		snap_strv_free(t->rules[i].matches, t->rules[i].n_matches);
	}
	free(t->rules);
	memset(t, 0, sizeof(*t));
}

void
weft_smi_http_route_group_clear(struct weft_smi_http_route_group *g)
{
	struct weft_smi_http_match *m;
	size_t i, j;

	free(g->namespace);
	free(g->name);
	for (i = 0; i < g->n_matches; i++) {
		m = &g->matches[i];
		free(m->name);
		free(m->path_regex);
		snap_strv_free(m->methods, m->n_methods);
		for (j = 0; j < m->n_headers; j++) {
			free(m->headers[j].name);
			free(m->headers[j].value_regex);
		}
		free(m->headers);
	}
	free(g->matches);
	memset(g, 0, sizeof(*g));
}

void
weft_smi_l4_route_clear(struct weft_smi_l4_route *r)
{
	free(r->namespace);
	free(r->name);
	free(r->ports);
	memset(r, 0, sizeof(*r));
}

void
weft_smi_split_clear(struct weft_smi_split *sp)
{
	size_t i;

	free(sp->namespace);
	free(sp->name);
	free(sp->service);
	for (i = 0; i < sp->n_backends; i++)
		free(sp->backends[i].service);
	free(sp->backends);
	snap_strv_free(sp->match_groups, sp->n_match_groups);
	memset(sp, 0, sizeof(*sp));
}

void
weft_snapshot_free(struct weft_snapshot *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n_nodes; i++)
		weft_snap_node_clear(&s->nodes[i]);
	free(s->nodes);
	for (i = 0; i < s->n_namespaces; i++)
		weft_snap_namespace_clear(&s->namespaces[i]);
	free(s->namespaces);
	for (i = 0; i < s->n_pods; i++)
		weft_snap_pod_clear(&s->pods[i]);
	free(s->pods);
	for (i = 0; i < s->n_services; i++)
		weft_snap_service_clear(&s->services[i]);
	free(s->services);
	for (i = 0; i < s->n_targets; i++)
		weft_smi_target_clear(&s->targets[i]);
	free(s->targets);
	for (i = 0; i < s->n_http_route_groups; i++)
		weft_smi_http_route_group_clear(&s->http_route_groups[i]);
	free(s->http_route_groups);
	for (i = 0; i < s->n_tcp_routes; i++)
		weft_smi_l4_route_clear(&s->tcp_routes[i]);
	free(s->tcp_routes);
	for (i = 0; i < s->n_udp_routes; i++)
		weft_smi_l4_route_clear(&s->udp_routes[i]);
	free(s->udp_routes);
	for (i = 0; i < s->n_splits; i++)
		weft_smi_split_clear(&s->splits[i]);
	free(s->splits);
	free(s->node_name);
	free(s->trust_domain);
	free(s->trust_bundle);
	free(s);
}

/* --- encode ---------------------------------------------------------------- */

static const char *
proto_name(int protocol)
{
	return protocol == IPPROTO_UDP ? "UDP" : "TCP";
}

/* Each enc_* returns 0, or -1 on allocation failure (the caller frees the
 * whole tree). */
static int
enc_add(struct json_object *o, const char *key, struct json_object *v)
{
	if (v == NULL)
		return -1;
	if (json_object_object_add(o, key, v) != 0) {
		json_object_put(v);
		return -1;
	}
	return 0;
}

static int
enc_str(struct json_object *o, const char *key, const char *s)
{
	if (s == NULL)
		return 0;
	return enc_add(o, key, json_object_new_string(s));
}

static int
enc_int(struct json_object *o, const char *key, int64_t v)
{
	return enc_add(o, key, json_object_new_int64(v));
}

static int
enc_bool(struct json_object *o, const char *key, bool v)
{
	return enc_add(o, key, json_object_new_boolean(v));
}

static int
enc_ip(struct json_object *o, const char *key, const struct weft_ip *ip)
{
	char buf[WEFT_IP_STRLEN];

	if (ip->family == 0)
		return 0;
	return enc_str(o, key, weft_ip_str(ip, buf, sizeof(buf)));
}

static int
enc_labels(struct json_object *o, const char *key, const struct weft_labels *l)
{
	struct json_object *m;
	size_t i;

	if ((m = json_object_new_object()) == NULL)
		return -1;
	for (i = 0; i < l->n; i++) {
		if (enc_str(m, l->items[i].key, l->items[i].value) == -1) {
			json_object_put(m);
			return -1;
		}
	}
	return enc_add(o, key, m);
}

/* A new object appended to array a, or NULL. */
static struct json_object *
enc_append_object(struct json_object *a)
{
	struct json_object *o;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	if (json_object_array_add(a, o) != 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static struct json_object *
enc_new_array(struct json_object *o, const char *key)
{
	struct json_object *a;

	if ((a = json_object_new_array()) == NULL)
		return NULL;
	if (enc_add(o, key, a) == -1)
		return NULL;
	return a;
}

static int
enc_node(struct json_object *a, const struct weft_snap_node *n)
{
	struct json_object *o, *cidrs;
	char buf[WEFT_CIDR_STRLEN];
	size_t i;

	if ((o = enc_append_object(a)) == NULL)
		return -1;
	if (enc_str(o, "name", n->name) == -1 ||
	    enc_ip(o, "address", &n->address) == -1 ||
	    (cidrs = enc_new_array(o, "pod_cidrs")) == NULL)
		return -1;
	for (i = 0; i < n->n_pod_cidrs; i++) {
		struct json_object *s;

		s = json_object_new_string(weft_cidr_str(&n->pod_cidrs[i], buf,
		    sizeof(buf)));
		if (s == NULL || json_object_array_add(cidrs, s) != 0) {
			json_object_put(s);
			return -1;
		}
	}
	return 0;
}

static int
enc_namespace(struct json_object *a, const struct weft_snap_namespace *ns)
{
	struct json_object *o;

	if ((o = enc_append_object(a)) == NULL)
		return -1;
	if (enc_str(o, "name", ns->name) == -1 ||
	    enc_bool(o, "meshed", ns->meshed) == -1 ||
	    enc_str(o, "access_mode", ns->access_mode == WEFT_ACCESS_PERMISSIVE ?
	    "permissive" : "enforce") == -1 ||
	    enc_str(o, "unauthenticated", ns->unauthenticated ==
	    WEFT_UNAUTH_ALLOW ? "allow" : "deny") == -1 ||
	    enc_labels(o, "labels", &ns->labels) == -1)
		return -1;
	return 0;
}

static int
enc_pod(struct json_object *a, const struct weft_snap_pod *p)
{
	struct json_object *o, *ports, *po;
	size_t i;

	if ((o = enc_append_object(a)) == NULL)
		return -1;
	if (enc_str(o, "namespace", p->namespace) == -1 ||
	    enc_str(o, "name", p->name) == -1 ||
	    enc_str(o, "uid", p->uid) == -1 ||
	    enc_str(o, "node", p->node) == -1 ||
	    enc_str(o, "service_account", p->service_account) == -1 ||
	    enc_ip(o, "ip", &p->ip) == -1 ||
	    enc_bool(o, "meshed", p->meshed) == -1 ||
	    enc_bool(o, "ready", p->ready) == -1 ||
	    enc_labels(o, "labels", &p->labels) == -1 ||
	    (ports = enc_new_array(o, "ports")) == NULL)
		return -1;
	for (i = 0; i < p->n_ports; i++) {
		const struct weft_container_port *cp = &p->ports[i];

		if ((po = enc_append_object(ports)) == NULL ||
		    enc_str(po, "name", cp->name) == -1 ||
		    enc_int(po, "port", cp->port) == -1 ||
		    enc_str(po, "protocol", proto_name(cp->protocol)) == -1)
			return -1;
	}
	return 0;
}

static int
enc_service(struct json_object *a, const struct weft_snap_service *v)
{
	struct json_object *o, *ports, *po;
	size_t i;

	if ((o = enc_append_object(a)) == NULL)
		return -1;
	if (enc_str(o, "namespace", v->namespace) == -1 ||
	    enc_str(o, "name", v->name) == -1 ||
	    enc_ip(o, "cluster_ip", &v->cluster_ip) == -1 ||
	    (ports = enc_new_array(o, "ports")) == NULL)
		return -1;
	for (i = 0; i < v->n_ports; i++) {
		const struct weft_service_port *sp = &v->ports[i];

		if ((po = enc_append_object(ports)) == NULL ||
		    enc_str(po, "name", sp->name) == -1 ||
		    enc_int(po, "port", sp->port) == -1 ||
		    enc_str(po, "protocol", proto_name(sp->protocol)) == -1 ||
		    (sp->target_port != 0 &&
		    enc_int(po, "target_port", sp->target_port) == -1) ||
		    enc_str(po, "target_port_name", sp->target_port_name) == -1 ||
		    enc_str(po, "app_protocol", sp->app_protocol) == -1)
			return -1;
	}
	return enc_labels(o, "selector", &v->selector);
}

static int
enc_strv(struct json_object *o, const char *key, char *const *v, size_t n)
{
	struct json_object *a, *e;
	size_t i;

	if ((a = enc_new_array(o, key)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		e = json_object_new_string(v[i]);
		if (e == NULL || json_object_array_add(a, e) != 0) {
			json_object_put(e);
			return -1;
		}
	}
	return 0;
}

static int
enc_subject(struct json_object *o, const struct weft_smi_subject *sub)
{
	return enc_str(o, "namespace", sub->namespace) == -1 ||
	    enc_str(o, "name", sub->name) == -1 ? -1 : 0;
}

static const char *
smi_rule_kind_name(enum weft_smi_rule_kind k)
{
	switch (k) {
	case WEFT_SMI_HTTP:
		return "HTTPRouteGroup";
	case WEFT_SMI_TCP:
		return "TCPRoute";
	case WEFT_SMI_UDP:
		return "UDPRoute";
	}
	return "?";
}

static int
enc_target(struct json_object *a, const struct weft_smi_target *t)
{
	struct json_object *o, *d, *arr, *e;
	size_t i;

	if ((o = enc_append_object(a)) == NULL ||
	    enc_str(o, "namespace", t->namespace) == -1 ||
	    enc_str(o, "name", t->name) == -1 ||
	    (d = json_object_new_object()) == NULL ||
	    enc_add(o, "destination", d) == -1 ||
	    enc_subject(d, &t->destination) == -1 ||
	    (t->port != 0 && enc_int(o, "port", t->port) == -1) ||
	    (arr = enc_new_array(o, "sources")) == NULL)
		return -1;
	for (i = 0; i < t->n_sources; i++)
		if ((e = enc_append_object(arr)) == NULL ||
		    enc_subject(e, &t->sources[i]) == -1)
			return -1;
	if ((arr = enc_new_array(o, "rules")) == NULL)
		return -1;
	for (i = 0; i < t->n_rules; i++)
		if ((e = enc_append_object(arr)) == NULL ||
		    enc_str(e, "kind", smi_rule_kind_name(t->rules[i].kind)) ==
		    -1 || enc_str(e, "name", t->rules[i].name) == -1 ||
		    enc_strv(e, "matches", t->rules[i].matches,
		    t->rules[i].n_matches) == -1)
			return -1;
	return 0;
}

static int
enc_http_route_group(struct json_object *a,
    const struct weft_smi_http_route_group *g)
{
	const struct weft_smi_http_match *m;
	struct json_object *o, *ms, *mo, *hs, *h;
	size_t i, j;

	if ((o = enc_append_object(a)) == NULL ||
	    enc_str(o, "namespace", g->namespace) == -1 ||
	    enc_str(o, "name", g->name) == -1 ||
	    (ms = enc_new_array(o, "matches")) == NULL)
		return -1;
	for (i = 0; i < g->n_matches; i++) {
		m = &g->matches[i];
		if ((mo = enc_append_object(ms)) == NULL ||
		    enc_str(mo, "name", m->name) == -1 ||
		    enc_str(mo, "path_regex", m->path_regex) == -1 ||
		    enc_strv(mo, "methods", m->methods, m->n_methods) == -1 ||
		    (hs = enc_new_array(mo, "headers")) == NULL)
			return -1;
		for (j = 0; j < m->n_headers; j++)
			if ((h = enc_append_object(hs)) == NULL ||
			    enc_str(h, "name", m->headers[j].name) == -1 ||
			    enc_str(h, "value_regex",
			    m->headers[j].value_regex) == -1)
				return -1;
	}
	return 0;
}

static int
enc_l4_route(struct json_object *a, const struct weft_smi_l4_route *r)
{
	struct json_object *o, *ports, *p;
	size_t i;

	if ((o = enc_append_object(a)) == NULL ||
	    enc_str(o, "namespace", r->namespace) == -1 ||
	    enc_str(o, "name", r->name) == -1 ||
	    (ports = enc_new_array(o, "ports")) == NULL)
		return -1;
	for (i = 0; i < r->n_ports; i++) {
		p = json_object_new_int64(r->ports[i]);
		if (p == NULL || json_object_array_add(ports, p) != 0) {
			json_object_put(p);
			return -1;
		}
	}
	return 0;
}

static int
enc_split(struct json_object *a, const struct weft_smi_split *sp)
{
	struct json_object *o, *bs, *b;
	size_t i;

	if ((o = enc_append_object(a)) == NULL ||
	    enc_str(o, "namespace", sp->namespace) == -1 ||
	    enc_str(o, "name", sp->name) == -1 ||
	    enc_str(o, "service", sp->service) == -1 ||
	    (sp->created != 0 && enc_int(o, "created", sp->created) == -1) ||
	    (bs = enc_new_array(o, "backends")) == NULL)
		return -1;
	for (i = 0; i < sp->n_backends; i++)
		if ((b = enc_append_object(bs)) == NULL ||
		    enc_str(b, "service", sp->backends[i].service) == -1 ||
		    enc_int(b, "weight", (int64_t)sp->backends[i].weight) == -1)
			return -1;
	return enc_strv(o, "match_groups", sp->match_groups,
	    sp->n_match_groups);
}

char *
weft_snapshot_encode(const struct weft_snapshot *s)
{
	struct json_object *root, *a;
	const char *text;
	char *out = NULL;
	size_t i;

	if ((root = json_object_new_object()) == NULL)
		return NULL;
	if (enc_int(root, "version", WEFT_SNAPSHOT_VERSION) == -1 ||
	    enc_int(root, "generation", (int64_t)s->generation) == -1 ||
	    enc_str(root, "node", s->node_name) == -1 ||
	    enc_str(root, "trust_domain", s->trust_domain) == -1 ||
	    enc_str(root, "trustBundle", s->trust_bundle) == -1)
		goto done;
	if ((a = enc_new_array(root, "nodes")) == NULL)
		goto done;
	for (i = 0; i < s->n_nodes; i++)
		if (enc_node(a, &s->nodes[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "namespaces")) == NULL)
		goto done;
	for (i = 0; i < s->n_namespaces; i++)
		if (enc_namespace(a, &s->namespaces[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "pods")) == NULL)
		goto done;
	for (i = 0; i < s->n_pods; i++)
		if (enc_pod(a, &s->pods[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "services")) == NULL)
		goto done;
	for (i = 0; i < s->n_services; i++)
		if (enc_service(a, &s->services[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "traffic_targets")) == NULL)
		goto done;
	for (i = 0; i < s->n_targets; i++)
		if (enc_target(a, &s->targets[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "http_route_groups")) == NULL)
		goto done;
	for (i = 0; i < s->n_http_route_groups; i++)
		if (enc_http_route_group(a, &s->http_route_groups[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "tcp_routes")) == NULL)
		goto done;
	for (i = 0; i < s->n_tcp_routes; i++)
		if (enc_l4_route(a, &s->tcp_routes[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "udp_routes")) == NULL)
		goto done;
	for (i = 0; i < s->n_udp_routes; i++)
		if (enc_l4_route(a, &s->udp_routes[i]) == -1)
			goto done;
	if ((a = enc_new_array(root, "traffic_splits")) == NULL)
		goto done;
	for (i = 0; i < s->n_splits; i++)
		if (enc_split(a, &s->splits[i]) == -1)
			goto done;
	text = json_object_to_json_string_ext(root,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text != NULL)
		out = strdup(text);
done:
	json_object_put(root);
	return out;
}

/* --- decode ---------------------------------------------------------------- */

struct dec {
	char	*err;		/* first error, "path: reason" */
};

static int __attribute__((format(printf, 3, 4)))
dec_fail(struct dec *d, const char *path, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (d->err != NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (asprintf(&d->err, "%s: %s", path[0] != '\0' ? path : "(root)",
	    msg) == -1)
		d->err = NULL;
	if (d->err == NULL)
		d->err = strdup("out of memory");
	return -1;
}

static const char *
dec_type(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return "null";
	case json_type_boolean:
		return "a boolean";
	case json_type_double:
		return "a number";
	case json_type_int:
		return "an integer";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	case json_type_string:
		return "a string";
	}
	return "?";
}

static void
dec_path(char *buf, size_t len, const char *parent, const char *key)
{
	if (parent[0] == '\0')
		snprintf(buf, len, "%s", key);
	else
		snprintf(buf, len, "%s.%s", parent, key);
}

/* Field key of object o.  Returns 1 and sets *v if present and not null,
 * 0 if absent, -1 if required and absent (error recorded). */
static int
dec_field(struct dec *d, struct json_object *o, const char *parent,
    const char *key, bool required, struct json_object **v)
{
	char path[256];

	*v = NULL;
	if (json_object_object_get_ex(o, key, v) && *v != NULL)
		return 1;
	*v = NULL;
	if (!required)
		return 0;
	dec_path(path, sizeof(path), parent, key);
	return dec_fail(d, path, "required");
}

static int
dec_str(struct dec *d, struct json_object *o, const char *parent,
    const char *key, bool required, char **out)
{
	struct json_object *v;
	char path[256];
	int r;

	*out = NULL;
	if ((r = dec_field(d, o, parent, key, required, &v)) <= 0)
		return r;
	if (!json_object_is_type(v, json_type_string)) {
		dec_path(path, sizeof(path), parent, key);
		return dec_fail(d, path, "expected a string, got %s",
		    dec_type(v));
	}
	if ((*out = strdup(json_object_get_string(v))) == NULL)
		return dec_fail(d, "", "out of memory");
	return 1;
}

static int
dec_int(struct dec *d, struct json_object *o, const char *parent,
    const char *key, bool required, int64_t min, int64_t max, int64_t *out)
{
	struct json_object *v;
	char path[256];
	int64_t n;
	int r;

	*out = 0;
	if ((r = dec_field(d, o, parent, key, required, &v)) <= 0)
		return r;
	dec_path(path, sizeof(path), parent, key);
	if (!json_object_is_type(v, json_type_int))
		return dec_fail(d, path, "expected an integer, got %s",
		    dec_type(v));
	errno = 0;
	n = json_object_get_int64(v);
	if (errno != 0 || n < min || n > max)
		return dec_fail(d, path, "expected %" PRId64 "-%" PRId64
		    ", got %s", min, max, json_object_to_json_string(v));
	*out = n;
	return 1;
}

static int
dec_bool(struct dec *d, struct json_object *o, const char *parent,
    const char *key, bool *out)
{
	struct json_object *v;
	char path[256];
	int r;

	*out = false;
	if ((r = dec_field(d, o, parent, key, false, &v)) <= 0)
		return r;
	if (!json_object_is_type(v, json_type_boolean)) {
		dec_path(path, sizeof(path), parent, key);
		return dec_fail(d, path, "expected a boolean, got %s",
		    dec_type(v));
	}
	*out = json_object_get_boolean(v);
	return 1;
}

static int
dec_ip(struct dec *d, struct json_object *o, const char *parent,
    const char *key, struct weft_ip *ip)
{
	char path[256], *s;
	int r;

	memset(ip, 0, sizeof(*ip));
	if ((r = dec_str(d, o, parent, key, false, &s)) <= 0)
		return r;
	r = weft_ip_parse(s, ip);
	free(s);
	if (r == -1) {
		dec_path(path, sizeof(path), parent, key);
		return dec_fail(d, path, "not an IP address");
	}
	return 1;
}

static int
dec_protocol(struct dec *d, struct json_object *o, const char *parent,
    int *protocol)
{
	char path[256], *s;
	int r;

	*protocol = IPPROTO_TCP;
	if ((r = dec_str(d, o, parent, "protocol", false, &s)) <= 0)
		return r;
	if (strcmp(s, "TCP") == 0)
		*protocol = IPPROTO_TCP;
	else if (strcmp(s, "UDP") == 0)
		*protocol = IPPROTO_UDP;
	else {
		free(s);
		dec_path(path, sizeof(path), parent, "protocol");
		return dec_fail(d, path, "expected TCP or UDP");
	}
	free(s);
	return 1;
}

/* Field key of o as an array: sets *a (NULL when absent) and *n. */
static int
dec_array(struct dec *d, struct json_object *o, const char *parent,
    const char *key, struct json_object **a, size_t *n)
{
	char path[256];
	int r;

	*n = 0;
	if ((r = dec_field(d, o, parent, key, false, a)) <= 0)
		return r;
	if (!json_object_is_type(*a, json_type_array)) {
		dec_path(path, sizeof(path), parent, key);
		return dec_fail(d, path, "expected an array, got %s",
		    dec_type(*a));
	}
	*n = json_object_array_length(*a);
	return 1;
}

static int
dec_element(struct dec *d, struct json_object *a, size_t i, const char *path,
    struct json_object **o)
{
	*o = json_object_array_get_idx(a, i);
	if (!json_object_is_type(*o, json_type_object))
		return dec_fail(d, path, "expected an object, got %s",
		    dec_type(*o));
	return 0;
}

static int
dec_labels(struct dec *d, struct json_object *o, const char *parent,
    const char *key, struct weft_labels *l)
{
	struct json_object *m;
	char path[256];
	size_t i = 0;
	int r;

	memset(l, 0, sizeof(*l));
	if ((r = dec_field(d, o, parent, key, false, &m)) <= 0)
		return r;
	dec_path(path, sizeof(path), parent, key);
	if (!json_object_is_type(m, json_type_object))
		return dec_fail(d, path, "expected an object, got %s",
		    dec_type(m));
	if (json_object_object_length(m) == 0)
		return 1;
	l->items = calloc((size_t)json_object_object_length(m),
	    sizeof(*l->items));
	if (l->items == NULL)
		return dec_fail(d, "", "out of memory");
	json_object_object_foreach(m, k, v) {
		if (!json_object_is_type(v, json_type_string)) {
			char p2[300];

			snprintf(p2, sizeof(p2), "%s[\"%s\"]", path, k);
			return dec_fail(d, p2, "expected a string, got %s",
			    dec_type(v));
		}
		l->items[i].key = strdup(k);
		l->items[i].value = strdup(json_object_get_string(v));
		l->n = ++i;
		if (l->items[i - 1].key == NULL ||
		    l->items[i - 1].value == NULL)
			return dec_fail(d, "", "out of memory");
	}
	return 1;
}

static int
dec_node(struct dec *d, struct json_object *o, const char *path,
    struct weft_snap_node *n)
{
	struct json_object *a, *e;
	char p2[256];
	size_t i, cnt;
	const char *s;

	if (dec_str(d, o, path, "name", true, &n->name) == -1 ||
	    dec_ip(d, o, path, "address", &n->address) == -1 ||
	    dec_array(d, o, path, "pod_cidrs", &a, &cnt) == -1)
		return -1;
	if (cnt == 0)
		return 0;
	if ((n->pod_cidrs = calloc(cnt, sizeof(*n->pod_cidrs))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(p2, sizeof(p2), "%s.pod_cidrs[%zu]", path, i);
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_string))
			return dec_fail(d, p2, "expected a string, got %s",
			    dec_type(e));
		s = json_object_get_string(e);
		if (weft_cidr_parse(s, &n->pod_cidrs[i]) == -1)
			return dec_fail(d, p2, "not a CIDR");
		n->n_pod_cidrs = i + 1;
	}
	return 0;
}

static int
dec_namespace(struct dec *d, struct json_object *o, const char *path,
    struct weft_snap_namespace *ns)
{
	char p2[256], *s;
	int r;

	if (dec_str(d, o, path, "name", true, &ns->name) == -1 ||
	    dec_bool(d, o, path, "meshed", &ns->meshed) == -1 ||
	    dec_labels(d, o, path, "labels", &ns->labels) == -1)
		return -1;
	if ((r = dec_str(d, o, path, "access_mode", false, &s)) == -1)
		return -1;
	if (r == 1) {
		if (strcmp(s, "enforce") == 0)
			ns->access_mode = WEFT_ACCESS_ENFORCE;
		else if (strcmp(s, "permissive") == 0)
			ns->access_mode = WEFT_ACCESS_PERMISSIVE;
		else
			r = -1;
		free(s);
		if (r == -1) {
			dec_path(p2, sizeof(p2), path, "access_mode");
			return dec_fail(d, p2, "expected enforce or permissive");
		}
	}
	if ((r = dec_str(d, o, path, "unauthenticated", false, &s)) == -1)
		return -1;
	if (r == 1) {
		if (strcmp(s, "deny") == 0)
			ns->unauthenticated = WEFT_UNAUTH_DENY;
		else if (strcmp(s, "allow") == 0)
			ns->unauthenticated = WEFT_UNAUTH_ALLOW;
		else
			r = -1;
		free(s);
		if (r == -1) {
			dec_path(p2, sizeof(p2), path, "unauthenticated");
			return dec_fail(d, p2, "expected deny or allow");
		}
	}
	return 0;
}

static int
dec_pod(struct dec *d, struct json_object *o, const char *path,
    struct weft_snap_pod *p)
{
	struct json_object *a, *e;
	char p2[256];
	size_t i, cnt;
	int64_t n;

	if (dec_str(d, o, path, "namespace", true, &p->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &p->name) == -1 ||
	    dec_str(d, o, path, "uid", false, &p->uid) == -1 ||
	    dec_str(d, o, path, "node", false, &p->node) == -1 ||
	    dec_str(d, o, path, "service_account", false,
	    &p->service_account) == -1 ||
	    dec_ip(d, o, path, "ip", &p->ip) == -1 ||
	    dec_bool(d, o, path, "meshed", &p->meshed) == -1 ||
	    dec_bool(d, o, path, "ready", &p->ready) == -1 ||
	    dec_labels(d, o, path, "labels", &p->labels) == -1 ||
	    dec_array(d, o, path, "ports", &a, &cnt) == -1)
		return -1;
	if (p->service_account == NULL &&
	    (p->service_account = strdup("default")) == NULL)
		return dec_fail(d, "", "out of memory");
	if (cnt == 0)
		return 0;
	if ((p->ports = calloc(cnt, sizeof(*p->ports))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		struct weft_container_port *cp = &p->ports[i];

		snprintf(p2, sizeof(p2), "%s.ports[%zu]", path, i);
		p->n_ports = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_str(d, e, p2, "name", false, &cp->name) == -1 ||
		    dec_int(d, e, p2, "port", true, 1, 65535, &n) == -1 ||
		    dec_protocol(d, e, p2, &cp->protocol) == -1)
			return -1;
		cp->port = (uint16_t)n;
	}
	return 0;
}

static int
dec_service(struct dec *d, struct json_object *o, const char *path,
    struct weft_snap_service *v)
{
	struct json_object *a, *e;
	char p2[256];
	size_t i, cnt;
	int64_t n;

	if (dec_str(d, o, path, "namespace", true, &v->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &v->name) == -1 ||
	    dec_ip(d, o, path, "cluster_ip", &v->cluster_ip) == -1 ||
	    dec_labels(d, o, path, "selector", &v->selector) == -1 ||
	    dec_array(d, o, path, "ports", &a, &cnt) == -1)
		return -1;
	if (cnt == 0)
		return 0;
	if ((v->ports = calloc(cnt, sizeof(*v->ports))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		struct weft_service_port *sp = &v->ports[i];

		snprintf(p2, sizeof(p2), "%s.ports[%zu]", path, i);
		v->n_ports = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_str(d, e, p2, "name", false, &sp->name) == -1 ||
		    dec_int(d, e, p2, "port", true, 1, 65535, &n) == -1)
			return -1;
		sp->port = (uint16_t)n;
		if (dec_protocol(d, e, p2, &sp->protocol) == -1 ||
		    dec_int(d, e, p2, "target_port", false, 1, 65535,
		    &n) == -1)
			return -1;
		sp->target_port = (uint16_t)n;
		if (dec_str(d, e, p2, "target_port_name", false,
		    &sp->target_port_name) == -1 ||
		    dec_str(d, e, p2, "app_protocol", false,
		    &sp->app_protocol) == -1)
			return -1;
		if (sp->target_port == 0 && sp->target_port_name == NULL)
			sp->target_port = sp->port;
	}
	return 0;
}

/* Decode array key of root into *items (elements of size sz) with fn. */
static int
dec_list(struct dec *d, struct json_object *root, const char *key,
    void **items, size_t *n, size_t sz,
    int (*fn)(struct dec *, struct json_object *, const char *, void *))
{
	struct json_object *a, *e;
	char path[64];
	size_t i, cnt;

	*items = NULL;
	*n = 0;
	if (dec_array(d, root, "", key, &a, &cnt) == -1)
		return -1;
	if (cnt == 0)
		return 0;
	if ((*items = calloc(cnt, sz)) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(path, sizeof(path), "%s[%zu]", key, i);
		/* count first, so a failure frees what was partly filled */
		*n = i + 1;
		if (dec_element(d, a, i, path, &e) == -1 ||
		    fn(d, e, path, (char *)*items + i * sz) == -1)
			return -1;
	}
	return 0;
}

static int
dec_node_cb(struct dec *d, struct json_object *o, const char *path, void *p)
{
	return dec_node(d, o, path, p);
}

static int
dec_namespace_cb(struct dec *d, struct json_object *o, const char *path,
    void *p)
{
	return dec_namespace(d, o, path, p);
}

static int
dec_pod_cb(struct dec *d, struct json_object *o, const char *path, void *p)
{
	return dec_pod(d, o, path, p);
}

static int
dec_service_cb(struct dec *d, struct json_object *o, const char *path,
    void *p)
{
	return dec_service(d, o, path, p);
}

/* An array of strings at o.key into *v (absent: empty). */
static int
dec_strv(struct dec *d, struct json_object *o, const char *parent,
    const char *key, char ***v, size_t *n)
{
	struct json_object *a, *e;
	char path[300];
	size_t i, cnt;

	*v = NULL;
	*n = 0;
	if (dec_array(d, o, parent, key, &a, &cnt) == -1)
		return -1;
	if (cnt == 0)
		return 0;
	if ((*v = calloc(cnt, sizeof(**v))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(path, sizeof(path), "%s.%s[%zu]", parent, key, i);
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_string))
			return dec_fail(d, path, "expected a string, got %s",
			    dec_type(e));
		if (((*v)[i] = strdup(json_object_get_string(e))) == NULL)
			return dec_fail(d, "", "out of memory");
		*n = i + 1;
	}
	return 0;
}

static int
dec_subject(struct dec *d, struct json_object *o, const char *path,
    struct weft_smi_subject *sub)
{
	if (dec_str(d, o, path, "namespace", true, &sub->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &sub->name) == -1)
		return -1;
	return 0;
}

static int
dec_target(struct dec *d, struct json_object *o, const char *path,
    struct weft_smi_target *t)
{
	struct json_object *a, *e, *dst;
	char p2[256], *kind;
	size_t i, cnt;
	int64_t n;

	if (dec_str(d, o, path, "namespace", true, &t->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &t->name) == -1 ||
	    dec_field(d, o, path, "destination", true, &dst) == -1)
		return -1;
	dec_path(p2, sizeof(p2), path, "destination");
	if (!json_object_is_type(dst, json_type_object))
		return dec_fail(d, p2, "expected an object, got %s",
		    dec_type(dst));
	if (dec_subject(d, dst, p2, &t->destination) == -1 ||
	    dec_int(d, o, path, "port", false, 0, 65535, &n) == -1)
		return -1;
	t->port = (uint16_t)n;
	if (dec_array(d, o, path, "sources", &a, &cnt) == -1)
		return -1;
	if (cnt > 0 && (t->sources = calloc(cnt, sizeof(*t->sources))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(p2, sizeof(p2), "%s.sources[%zu]", path, i);
		t->n_sources = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_subject(d, e, p2, &t->sources[i]) == -1)
			return -1;
	}
	if (dec_array(d, o, path, "rules", &a, &cnt) == -1)
		return -1;
	if (cnt > 0 && (t->rules = calloc(cnt, sizeof(*t->rules))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		struct weft_smi_rule *r = &t->rules[i];

		snprintf(p2, sizeof(p2), "%s.rules[%zu]", path, i);
		t->n_rules = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_str(d, e, p2, "kind", true, &kind) == -1)
			return -1;
		if (strcmp(kind, "HTTPRouteGroup") == 0)
			r->kind = WEFT_SMI_HTTP;
		else if (strcmp(kind, "TCPRoute") == 0)
			r->kind = WEFT_SMI_TCP;
		else if (strcmp(kind, "UDPRoute") == 0)
			r->kind = WEFT_SMI_UDP;
		free(kind);
		if (r->kind == 0) {
			char p3[300];

			dec_path(p3, sizeof(p3), p2, "kind");
			return dec_fail(d, p3, "expected HTTPRouteGroup, "
			    "TCPRoute or UDPRoute");
		}
		if (dec_str(d, e, p2, "name", true, &r->name) == -1 ||
		    dec_strv(d, e, p2, "matches", &r->matches,
		    &r->n_matches) == -1)
			return -1;
	}
	return 0;
}

static int
dec_http_route_group(struct dec *d, struct json_object *o, const char *path,
    struct weft_smi_http_route_group *g)
{
	struct json_object *a, *e, *ha, *he;
	char p2[256], p3[300];
	size_t i, j, cnt, hcnt;

	if (dec_str(d, o, path, "namespace", true, &g->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &g->name) == -1 ||
	    dec_array(d, o, path, "matches", &a, &cnt) == -1)
		return -1;
	if (cnt > 0 && (g->matches = calloc(cnt, sizeof(*g->matches))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		struct weft_smi_http_match *m = &g->matches[i];

		snprintf(p2, sizeof(p2), "%s.matches[%zu]", path, i);
		g->n_matches = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_str(d, e, p2, "name", true, &m->name) == -1 ||
		    dec_str(d, e, p2, "path_regex", false,
		    &m->path_regex) == -1 ||
		    dec_strv(d, e, p2, "methods", &m->methods,
		    &m->n_methods) == -1 ||
		    dec_array(d, e, p2, "headers", &ha, &hcnt) == -1)
			return -1;
		if (hcnt > 0 && (m->headers = calloc(hcnt,
		    sizeof(*m->headers))) == NULL)
			return dec_fail(d, "", "out of memory");
		for (j = 0; j < hcnt; j++) {
			snprintf(p3, sizeof(p3), "%s.headers[%zu]", p2, j);
			m->n_headers = j + 1;
			if (dec_element(d, ha, j, p3, &he) == -1 ||
			    dec_str(d, he, p3, "name", true,
			    &m->headers[j].name) == -1 ||
			    dec_str(d, he, p3, "value_regex", true,
			    &m->headers[j].value_regex) == -1)
				return -1;
		}
	}
	return 0;
}

static int
dec_l4_route(struct dec *d, struct json_object *o, const char *path,
    struct weft_smi_l4_route *r)
{
	struct json_object *a, *e;
	char p2[256];
	size_t i, cnt;
	int64_t n;

	if (dec_str(d, o, path, "namespace", true, &r->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &r->name) == -1 ||
	    dec_array(d, o, path, "ports", &a, &cnt) == -1)
		return -1;
	if (cnt > 0 && (r->ports = calloc(cnt, sizeof(*r->ports))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(p2, sizeof(p2), "%s.ports[%zu]", path, i);
		e = json_object_array_get_idx(a, i);
		if (!json_object_is_type(e, json_type_int))
			return dec_fail(d, p2, "expected an integer, got %s",
			    dec_type(e));
		n = json_object_get_int64(e);
		if (n < 1 || n > 65535)
			return dec_fail(d, p2, "expected 1-65535, got %" PRId64,
			    n);
		r->ports[i] = (uint16_t)n;
		r->n_ports = i + 1;
	}
	return 0;
}

static int
dec_split(struct dec *d, struct json_object *o, const char *path,
    struct weft_smi_split *sp)
{
	struct json_object *a, *e;
	char p2[256];
	size_t i, cnt;
	int64_t n;

	if (dec_str(d, o, path, "namespace", true, &sp->namespace) == -1 ||
	    dec_str(d, o, path, "name", true, &sp->name) == -1 ||
	    dec_str(d, o, path, "service", true, &sp->service) == -1 ||
	    dec_int(d, o, path, "created", false, INT64_MIN, INT64_MAX,
	    &sp->created) == -1 ||
	    dec_strv(d, o, path, "match_groups", &sp->match_groups,
	    &sp->n_match_groups) == -1 ||
	    dec_array(d, o, path, "backends", &a, &cnt) == -1)
		return -1;
	if (cnt > 0 && (sp->backends = calloc(cnt,
	    sizeof(*sp->backends))) == NULL)
		return dec_fail(d, "", "out of memory");
	for (i = 0; i < cnt; i++) {
		snprintf(p2, sizeof(p2), "%s.backends[%zu]", path, i);
		sp->n_backends = i + 1;
		if (dec_element(d, a, i, p2, &e) == -1 ||
		    dec_str(d, e, p2, "service", true,
		    &sp->backends[i].service) == -1 ||
		    dec_int(d, e, p2, "weight", true, 0, INT64_MAX, &n) == -1)
			return -1;
		sp->backends[i].weight = (uint64_t)n;
	}
	return 0;
}

static int
dec_target_cb(struct dec *d, struct json_object *o, const char *path,
    void *p)
{
	return dec_target(d, o, path, p);
}

static int
dec_http_route_group_cb(struct dec *d, struct json_object *o,
    const char *path, void *p)
{
	return dec_http_route_group(d, o, path, p);
}

static int
dec_l4_route_cb(struct dec *d, struct json_object *o, const char *path,
    void *p)
{
	return dec_l4_route(d, o, path, p);
}

static int
dec_split_cb(struct dec *d, struct json_object *o, const char *path, void *p)
{
	return dec_split(d, o, path, p);
}

struct weft_snapshot *
weft_snapshot_decode(const char *json, size_t len, char **err)
{
	struct json_tokener *tok;
	struct json_object *root = NULL;
	struct weft_snapshot *s = NULL;
	struct dec d = { NULL };
	enum json_tokener_error jerr;
	int64_t n;
	void *items;

	*err = NULL;
	if ((tok = json_tokener_new_ex(SNAP_MAX_DEPTH)) == NULL) {
		*err = strdup("out of memory");
		return NULL;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
	root = json_tokener_parse_ex(tok, json, (int)len);
	jerr = json_tokener_get_error(tok);
	if (jerr == json_tokener_continue)
		dec_fail(&d, "", "truncated JSON");
	else if (jerr != json_tokener_success)
		dec_fail(&d, "", "invalid JSON at offset %zu: %s",
		    json_tokener_get_parse_end(tok),
		    json_tokener_error_desc(jerr));
	else if (json_tokener_get_parse_end(tok) < len &&
	    strspn(json + json_tokener_get_parse_end(tok), " \t\r\n") <
	    len - json_tokener_get_parse_end(tok))
		dec_fail(&d, "", "trailing data after the JSON object");
	json_tokener_free(tok);
	if (d.err != NULL)
		goto fail;
	if (!json_object_is_type(root, json_type_object)) {
		dec_fail(&d, "", "expected an object, got %s", dec_type(root));
		goto fail;
	}
	if (dec_int(&d, root, "", "version", true, INT64_MIN, INT64_MAX,
	    &n) == -1)
		goto fail;
	if (n != WEFT_SNAPSHOT_VERSION) {
		dec_fail(&d, "version", "unsupported version %" PRId64
		    " (expected %d)", n, WEFT_SNAPSHOT_VERSION);
		goto fail;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		dec_fail(&d, "", "out of memory");
		goto fail;
	}
	if (dec_int(&d, root, "", "generation", true, 0, INT64_MAX, &n) == -1)
		goto fail;
	s->generation = (uint64_t)n;
	if (dec_str(&d, root, "", "node", false, &s->node_name) == -1 ||
	    dec_str(&d, root, "", "trust_domain", false,
	    &s->trust_domain) == -1 ||
	    dec_str(&d, root, "", "trustBundle", false,
	    &s->trust_bundle) == -1)
		goto fail;
	if (s->trust_domain == NULL &&
	    (s->trust_domain = strdup("cluster.local")) == NULL) {
		dec_fail(&d, "", "out of memory");
		goto fail;
	}
	if (dec_list(&d, root, "nodes", &items, &s->n_nodes,
	    sizeof(*s->nodes), dec_node_cb) == -1) {
		s->nodes = items;
		goto fail;
	}
	s->nodes = items;
	if (dec_list(&d, root, "namespaces", &items, &s->n_namespaces,
	    sizeof(*s->namespaces), dec_namespace_cb) == -1) {
		s->namespaces = items;
		goto fail;
	}
	s->namespaces = items;
	if (dec_list(&d, root, "pods", &items, &s->n_pods,
	    sizeof(*s->pods), dec_pod_cb) == -1) {
		s->pods = items;
		goto fail;
	}
	s->pods = items;
	if (dec_list(&d, root, "services", &items, &s->n_services,
	    sizeof(*s->services), dec_service_cb) == -1) {
		s->services = items;
		goto fail;
	}
	s->services = items;
	/* SMI objects: absent arrays are empty (snapshots of older
	 * controllers) */
	if (dec_list(&d, root, "traffic_targets", &items, &s->n_targets,
	    sizeof(*s->targets), dec_target_cb) == -1) {
		s->targets = items;
		goto fail;
	}
	s->targets = items;
	if (dec_list(&d, root, "http_route_groups", &items,
	    &s->n_http_route_groups, sizeof(*s->http_route_groups),
	    dec_http_route_group_cb) == -1) {
		s->http_route_groups = items;
		goto fail;
	}
	s->http_route_groups = items;
	if (dec_list(&d, root, "tcp_routes", &items, &s->n_tcp_routes,
	    sizeof(*s->tcp_routes), dec_l4_route_cb) == -1) {
		s->tcp_routes = items;
		goto fail;
	}
	s->tcp_routes = items;
	if (dec_list(&d, root, "udp_routes", &items, &s->n_udp_routes,
	    sizeof(*s->udp_routes), dec_l4_route_cb) == -1) {
		s->udp_routes = items;
		goto fail;
	}
	s->udp_routes = items;
	if (dec_list(&d, root, "traffic_splits", &items, &s->n_splits,
	    sizeof(*s->splits), dec_split_cb) == -1) {
		s->splits = items;
		goto fail;
	}
	s->splits = items;
	json_object_put(root);
	return s;
fail:
	json_object_put(root);
	weft_snapshot_free(s);
	*err = d.err;
	return NULL;
}

/* --- lookups --------------------------------------------------------------- */

const struct weft_snap_node *
weft_snapshot_node(const struct weft_snapshot *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_nodes; i++)
		if (strcmp(s->nodes[i].name, name) == 0)
			return &s->nodes[i];
	return NULL;
}

const struct weft_snap_namespace *
weft_snapshot_namespace(const struct weft_snapshot *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_namespaces; i++)
		if (strcmp(s->namespaces[i].name, name) == 0)
			return &s->namespaces[i];
	return NULL;
}

const char *
weft_labels_get(const struct weft_labels *l, const char *key)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (strcmp(l->items[i].key, key) == 0)
			return l->items[i].value;
	return NULL;
}

bool
weft_labels_match(const struct weft_labels *selector,
    const struct weft_labels *labels)
{
	const char *v;
	size_t i;

	if (selector->n == 0)
		return false;
	for (i = 0; i < selector->n; i++) {
		v = weft_labels_get(labels, selector->items[i].key);
		if (v == NULL || strcmp(v, selector->items[i].value) != 0)
			return false;
	}
	return true;
}
