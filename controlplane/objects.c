/* Validation of the Kubernetes kinds weft understands, one handler per kind
 * (kind_handlers[] below), into the plain structs of the model.
 *
 * A handler reads only the fields it needs, checks each one the way the
 * Kubernetes API server would, and reports every problem it finds in the
 * document (not only the first) with the field's path.  A document with any
 * error is left out of the model as a whole, except for ports with a
 * protocol we cannot carry (SCTP), which are dropped with an error while
 * the rest of the object stays.
 *
 * Adding a kind: write a handler with the signature of kind_fn, add a row to
 * kind_handlers[] and, if the model must hold it, an array to struct
 * weft_model.  Kinds without a handler are kept aside as raw objects. */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/log.h"
#include "weft/manifest.h"

#include "model.h"

/* Report into errors (or, warn, into warnings) with the document's
 * context; struct vdoc is in model.h, shared with smi.c. */
static void
vreport(struct vdoc *v, bool warn, const char *path, const char *fmt,
    va_list ap)
{
	void (*add)(struct weft_errors *, const char *, ...) =
	    warn ? weft_errors_warn : weft_errors_add;
	char msg[512], where[400];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (v->what[0] != '\0')
		snprintf(where, sizeof(where), "%s: document %u (%s)", v->file,
		    v->doc, v->what);
	else
		snprintf(where, sizeof(where), "%s: document %u", v->file,
		    v->doc);
	if (v->prefix[0] == '\0' && path[0] == '\0')
		add(v->errs, "%s: %s", where, msg);
	else if (path[0] == '\0')
		add(v->errs, "%s: %.*s: %s", where,
		    (int)strlen(v->prefix) - 1, v->prefix, msg);
	else
		add(v->errs, "%s: %s%s: %s", where, v->prefix, path, msg);
	if (!warn)
		v->nerr++;
}

static void __attribute__((format(printf, 3, 4)))
verr(struct vdoc *v, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(v, false, path, fmt, ap);
	va_end(ap);
}

void
weft_vdoc_err(struct vdoc *v, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(v, false, path, fmt, ap);
	va_end(ap);
}

void
weft_vdoc_warn(struct vdoc *v, const char *path, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vreport(v, true, path, fmt, ap);
	va_end(ap);
}

/* How a value is shown after "got": JSON text for scalars (strings quoted,
 * long ones shortened), a word for containers. */
static const char *
vgot(struct json_object *o, char *buf, size_t len)
{
	const char *s;

	switch (json_object_get_type(o)) {
	case json_type_null:
		return "null";
	case json_type_object:
		return "an object";
	case json_type_array:
		return "an array";
	default:
		break;
	}
	s = json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (strlen(s) > 66)
		snprintf(buf, len, "%.60s...\"", s);
	else
		snprintf(buf, len, "%s", s);
	return buf;
}

const char *
weft_vdoc_got(struct json_object *o, char *buf, size_t len)
{
	return vgot(o, buf, len);
}

/* The value of key in o, or NULL when absent or null (Kubernetes treats an
 * explicit null like an absent field). */
struct json_object *
weft_vdoc_field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* Typed field getters: 1 present and of the right type, 0 absent, -1 wrong
 * type (reported). */
int
weft_vdoc_type(struct vdoc *v, struct json_object *val, const char *path,
    enum json_type t, const char *expected)
{
	char buf[80];

	if (val == NULL)
		return 0;
	if (!json_object_is_type(val, t)) {
		verr(v, path, "expected %s, got %s", expected,
		    vgot(val, buf, sizeof(buf)));
		return -1;
	}
	return 1;
}

int
weft_vdoc_str(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, const char **out)
{
	struct json_object *val = weft_vdoc_field(o, key);
	int r;

	*out = NULL;
	if ((r = weft_vdoc_type(v, val, path, json_type_string,
	    "a string")) == 1)
		*out = json_object_get_string(val);
	return r;
}

int
weft_vdoc_obj(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, struct json_object **out)
{
	struct json_object *val = weft_vdoc_field(o, key);
	int r;

	*out = NULL;
	if ((r = weft_vdoc_type(v, val, path, json_type_object,
	    "an object")) == 1)
		*out = val;
	return r;
}

int
weft_vdoc_arr(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, struct json_object **out, size_t *n)
{
	struct json_object *val = weft_vdoc_field(o, key);
	int r;

	*out = NULL;
	*n = 0;
	if ((r = weft_vdoc_type(v, val, path, json_type_array,
	    "an array")) == 1) {
		*out = val;
		*n = json_object_array_length(val);
	}
	return r;
}

/* A port number value: 1-65535.  Returns 0 or -1 (reported). */
static int
v_port(struct vdoc *v, struct json_object *val, const char *path,
    uint16_t *out)
{
	char buf[80];
	int64_t n;

	*out = 0;
	if (!json_object_is_type(val, json_type_int)) {
		verr(v, path, "expected an integer, got %s",
		    vgot(val, buf, sizeof(buf)));
		return -1;
	}
	n = json_object_get_int64(val);
	if (n < 1 || n > 65535) {
		verr(v, path, "expected 1-65535, got %s",
		    vgot(val, buf, sizeof(buf)));
		return -1;
	}
	*out = (uint16_t)n;
	return 0;
}

/* Protocol field of a port object: 1 usable (TCP/UDP, default TCP), 0 SCTP
 * (reported: the port is dropped), -1 invalid (reported). */
static int
v_protocol(struct vdoc *v, struct json_object *o, const char *path,
    int *protocol)
{
	const char *s;
	char p[256], buf[80];
	int r;

	*protocol = IPPROTO_TCP;
	snprintf(p, sizeof(p), "%s.protocol", path);
	if ((r = weft_vdoc_str(v, o, "protocol", p, &s)) <= 0)
		return r == 0 ? 1 : -1;
	if (strcmp(s, "TCP") == 0)
		return 1;
	if (strcmp(s, "UDP") == 0) {
		*protocol = IPPROTO_UDP;
		return 1;
	}
	if (strcmp(s, "SCTP") == 0) {
		verr(v, p, "SCTP is not supported; port ignored");
		v->nsoft++;
		return 0;
	}
	verr(v, p, "expected TCP, UDP or SCTP, got %s",
	    vgot(weft_vdoc_field(o, "protocol"), buf, sizeof(buf)));
	return -1;
}

/* --- names and labels ------------------------------------------------------- */

static bool
is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool
dns_label_n(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) ||
	    !is_lower_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool
weft_name_is_dns_label(const char *s)
{
	return dns_label_n(s, strlen(s));
}

bool
weft_name_is_dns_subdomain(const char *s)
{
	size_t n = strlen(s);
	const char *dot;

	if (n == 0 || n > 253)
		return false;
	while ((dot = strchr(s, '.')) != NULL) {
		if (!dns_label_n(s, (size_t)(dot - s)))
			return false;
		s = dot + 1;
	}
	return dns_label_n(s, strlen(s));
}

bool
weft_name_is_iana_svc(const char *s)
{
	size_t n = strlen(s), i;
	bool letter = false;

	if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' ||
	    strstr(s, "--") != NULL)
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = true;
		else if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	}
	return letter;
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], at most 63 characters. */
static bool
label_name_n(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' &&
		    s[i] != '.')
			return false;
	return true;
}

static bool
label_key_ok(const char *k)
{
	const char *slash = strchr(k, '/');
	char prefix[254];

	if (slash == NULL)
		return label_name_n(k, strlen(k));
	if ((size_t)(slash - k) >= sizeof(prefix))
		return false;
	memcpy(prefix, k, (size_t)(slash - k));
	prefix[slash - k] = '\0';
	return weft_name_is_dns_subdomain(prefix) &&
	    label_name_n(slash + 1, strlen(slash + 1));
}

static bool
label_value_ok(const char *s)
{
	return s[0] == '\0' || label_name_n(s, strlen(s));
}

static int
label_cmp(const void *a, const void *b)
{
	return strcmp(((const struct weft_label *)a)->key,
	    ((const struct weft_label *)b)->key);
}

/* A map of labels (or a selector) at o.key into *out, sorted by key.
 * Returns 0, or -1 on allocation failure; problems are reported. */
static int
v_labels(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, struct weft_labels *out)
{
	struct json_object *m;
	char p[400], buf[80];
	size_t cap;

	memset(out, 0, sizeof(*out));
	if (weft_vdoc_obj(v, o, key, path, &m) <= 0)
		return 0;
	if ((cap = (size_t)json_object_object_length(m)) == 0)
		return 0;
	if ((out->items = calloc(cap, sizeof(*out->items))) == NULL)
		return -1;
	json_object_object_foreach(m, k, val) {
		snprintf(p, sizeof(p), "%s[\"%s\"]", path, k);
		if (!label_key_ok(k)) {
			verr(v, p, "invalid label key (expected [prefix/]name, "
			    "name at most 63 letters, digits, '-', '_' or '.', "
			    "starting and ending with a letter or digit)");
			continue;
		}
		if (val == NULL || !json_object_is_type(val, json_type_string)) {
			verr(v, p, "expected a string, got %s",
			    vgot(val, buf, sizeof(buf)));
			continue;
		}
		if (!label_value_ok(json_object_get_string(val))) {
			verr(v, p, "expected a label value (at most 63 "
			    "letters, digits, '-', '_' or '.', starting and "
			    "ending with a letter or digit), got %s",
			    vgot(val, buf, sizeof(buf)));
			continue;
		}
		out->items[out->n].key = strdup(k);
		out->items[out->n].value = strdup(json_object_get_string(val));
		out->n++;
		if (out->items[out->n - 1].key == NULL ||
		    out->items[out->n - 1].value == NULL)
			return -1;
	}
	if (out->n > 1)
		qsort(out->items, out->n, sizeof(*out->items), label_cmp);
	return 0;
}

/* A name field checked with fn; 1 valid, 0 absent, -1 invalid (reported). */
static int
v_name(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, bool (*fn)(const char *), const char **out)
{
	char buf[80];
	int r;

	if ((r = weft_vdoc_str(v, o, key, path, out)) <= 0)
		return r;
	if (fn(*out))
		return 1;
	if (fn == weft_name_is_dns_label)
		verr(v, path, "expected a DNS-1123 label (at most 63 lowercase "
		    "letters, digits and '-', starting and ending with a letter "
		    "or digit), got %s", vgot(weft_vdoc_field(o, key), buf,
		    sizeof(buf)));
	else
		verr(v, path, "expected a DNS-1123 subdomain (at most 253 "
		    "lowercase letters, digits, '-' and '.', each part starting "
		    "and ending with a letter or digit), got %s",
		    vgot(weft_vdoc_field(o, key), buf, sizeof(buf)));
	*out = NULL;
	return -1;
}

static int
v_ip(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, struct weft_ip *ip)
{
	const char *s;
	char buf[80];
	int r;

	memset(ip, 0, sizeof(*ip));
	if ((r = weft_vdoc_str(v, o, key, path, &s)) <= 0)
		return r;
	if (weft_ip_parse(s, ip) == -1) {
		verr(v, path, "expected an IP address, got %s",
		    vgot(weft_vdoc_field(o, key), buf, sizeof(buf)));
		return -1;
	}
	return 1;
}

static int
v_cidr(struct vdoc *v, struct json_object *val, const char *path,
    struct weft_cidr *c)
{
	char buf[80];

	if (weft_vdoc_type(v, val, path, json_type_string, "a string") != 1)
		return -1;
	if (weft_cidr_parse(json_object_get_string(val), c) == -1) {
		verr(v, path, "expected a CIDR with zero host bits (such as "
		    "10.244.1.0/24), got %s", vgot(val, buf, sizeof(buf)));
		return -1;
	}
	return 0;
}

char *
weft_vdoc_strdup(const char *s, bool *oom)
{
	char *d;

	if (s == NULL)
		return NULL;
	if ((d = strdup(s)) == NULL)
		*oom = true;
	return d;
}

/* Report a duplicate.  Returns 1 if new, 0 if duplicate, -1 on OOM. */
static int
v_unique(struct weft_builder *b, struct vdoc *v, const char *kind,
    const char *ns, const char *name)
{
	const struct weft_seen *first;
	int r;

	r = weft_builder_seen(b, kind, ns ? ns : "", name, v->file, v->doc,
	    &first);
	if (r == 0)
		verr(v, "metadata.name", "duplicate %s, first defined in %s "
		    "document %u; ignored", v->what, first->file, first->doc);
	return r;
}

/* --- kinds ------------------------------------------------------------------- */

typedef int (*kind_fn)(struct weft_builder *, struct vdoc *,
    struct json_object *, const char *, const char *);

static int
ns_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns_unused, const char *name)
{
	struct weft_snap_namespace ns;
	struct json_object *meta = weft_vdoc_field(o, "metadata");
	const char *s;
	char buf[80];
	bool oom = false;
	int r;

	memset(&ns, 0, sizeof(ns));
	if (v_labels(v, meta, "labels", "metadata.labels", &ns.labels) == -1)
		goto oom;
	if ((s = weft_labels_get(&ns.labels, "weft.io/mesh")) != NULL) {
		if (strcmp(s, "enabled") == 0)
			ns.meshed = true;
		else if (strcmp(s, "disabled") != 0)
			verr(v, "metadata.labels[\"weft.io/mesh\"]",
			    "expected enabled or disabled, got \"%s\"", s);
	}
	if ((s = weft_labels_get(&ns.labels, "weft.io/access-mode")) != NULL) {
		if (strcmp(s, "permissive") == 0)
			ns.access_mode = WEFT_ACCESS_PERMISSIVE;
		else if (strcmp(s, "enforce") != 0)
			verr(v, "metadata.labels[\"weft.io/access-mode\"]",
			    "expected enforce or permissive, got \"%s\"", s);
	}
	if ((s = weft_labels_get(&ns.labels,
	    "weft.io/unauthenticated")) != NULL) {
		if (strcmp(s, "allow") == 0)
			ns.unauthenticated = WEFT_UNAUTH_ALLOW;
		else if (strcmp(s, "deny") != 0)
			verr(v, "metadata.labels[\"weft.io/unauthenticated\"]",
			    "expected deny or allow, got \"%s\"", s);
	}
	(void)buf;
	if (VBAD(v))
		goto skip;
	if ((r = v_unique(b, v, "Namespace", NULL, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	ns.name = weft_vdoc_strdup(name, &oom);
	if (oom)
		goto oom;
	return weft_builder_add_namespace(b, &ns);
skip:
	weft_snap_namespace_clear(&ns);
	return 0;
oom:
	weft_snap_namespace_clear(&ns);
	return -1;
}

static int
sa_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns, const char *name)
{
	struct weft_model_sa sa;
	int r;

	if (VBAD(v))
		return 0;
	if ((r = v_unique(b, v, "ServiceAccount", ns, name)) <= 0)
		return r;
	sa.namespace = strdup(ns);
	sa.name = strdup(name);
	if (sa.namespace == NULL || sa.name == NULL) {
		free(sa.namespace);
		free(sa.name);
		return -1;
	}
	return weft_builder_add_sa(b, &sa);
}

static int
node_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns_unused, const char *name)
{
	struct weft_snap_node n;
	struct json_object *spec, *status, *a, *e;
	char p[256];
	const char *type;
	size_t i, cnt;
	int r;

	memset(&n, 0, sizeof(n));
	if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 1) {
		if (weft_vdoc_arr(v, spec, "podCIDRs", "spec.podCIDRs", &a,
		    &cnt) == 1 &&
		    cnt > 0) {
			if ((n.pod_cidrs = calloc(cnt, sizeof(*n.pod_cidrs))) ==
			    NULL)
				return -1;
			for (i = 0; i < cnt; i++) {
				snprintf(p, sizeof(p), "spec.podCIDRs[%zu]", i);
				if (v_cidr(v, json_object_array_get_idx(a, i), p,
				    &n.pod_cidrs[n.n_pod_cidrs]) == 0)
					n.n_pod_cidrs++;
			}
		} else if ((e = weft_vdoc_field(spec, "podCIDR")) != NULL) {
			if ((n.pod_cidrs = calloc(1, sizeof(*n.pod_cidrs))) ==
			    NULL)
				return -1;
			if (v_cidr(v, e, "spec.podCIDR", &n.pod_cidrs[0]) == 0)
				n.n_pod_cidrs = 1;
		}
	}
	if (weft_vdoc_obj(v, o, "status", "status", &status) == 1 &&
	    weft_vdoc_arr(v, status, "addresses", "status.addresses", &a,
	    &cnt) == 1) {
		for (i = 0; i < cnt; i++) {
			struct weft_ip ip;

			snprintf(p, sizeof(p), "status.addresses[%zu]", i);
			e = json_object_array_get_idx(a, i);
			if (weft_vdoc_type(v, e, p, json_type_object,
			    "an object") != 1)
				continue;
			snprintf(p, sizeof(p), "status.addresses[%zu].type", i);
			if (weft_vdoc_str(v, e, "type", p, &type) != 1 ||
			    strcmp(type, "InternalIP") != 0)
				continue;
			snprintf(p, sizeof(p), "status.addresses[%zu].address",
			    i);
			if (v_ip(v, e, "address", p, &ip) == 0)
				verr(v, p, "required");
			else if (ip.family != 0 && n.address.family == 0)
				n.address = ip;
		}
	}
	if (VBAD(v))
		goto skip;
	if ((r = v_unique(b, v, "Node", NULL, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	if ((n.name = strdup(name)) == NULL)
		goto oom;
	return weft_builder_add_node(b, &n);
skip:
	weft_snap_node_clear(&n);
	return 0;
oom:
	weft_snap_node_clear(&n);
	return -1;
}

/* spec.containers[].ports[] of a pod, appended to p->ports. */
static int
pod_ports(struct vdoc *v, struct json_object *spec, struct weft_snap_pod *p)
{
	struct json_object *cs, *c, *ps, *e;
	struct weft_container_port *np;
	char path[256], pp[300];
	const char *name;
	size_t i, j, nc, nport;
	int r;

	if (weft_vdoc_arr(v, spec, "containers", "spec.containers", &cs,
	    &nc) != 1)
		return 0;
	for (i = 0; i < nc; i++) {
		snprintf(path, sizeof(path), "spec.containers[%zu]", i);
		c = json_object_array_get_idx(cs, i);
		if (weft_vdoc_type(v, c, path, json_type_object,
		    "an object") != 1)
			continue;
		snprintf(path, sizeof(path), "spec.containers[%zu].ports", i);
		if (weft_vdoc_arr(v, c, "ports", path, &ps, &nport) != 1)
			continue;
		for (j = 0; j < nport; j++) {
			struct weft_container_port cp;

			memset(&cp, 0, sizeof(cp));
			snprintf(path, sizeof(path),
			    "spec.containers[%zu].ports[%zu]", i, j);
			e = json_object_array_get_idx(ps, j);
			if (weft_vdoc_type(v, e, path, json_type_object,
			    "an object") != 1)
				continue;
			snprintf(pp, sizeof(pp), "%s.containerPort", path);
			if (weft_vdoc_field(e, "containerPort") == NULL) {
				verr(v, pp, "required");
				continue;
			}
			if (v_port(v, weft_vdoc_field(e, "containerPort"), pp,
			    &cp.port) == -1)
				continue;
			snprintf(pp, sizeof(pp), "%s.name", path);
			if (weft_vdoc_str(v, e, "name", pp, &name) == 1 &&
			    !weft_name_is_iana_svc(name)) {
				char buf[80];

				verr(v, pp, "expected an IANA service name (at "
				    "most 15 lowercase letters, digits and '-', "
				    "with at least one letter), got %s",
				    vgot(weft_vdoc_field(e, "name"), buf,
				    sizeof(buf)));
				continue;
			}
			if ((r = v_protocol(v, e, path, &cp.protocol)) != 1)
				continue;
			np = reallocarray(p->ports, p->n_ports + 1,
			    sizeof(*np));
			if (np == NULL)
				return -1;
			p->ports = np;
			if (name != NULL && (cp.name = strdup(name)) == NULL)
				return -1;
			p->ports[p->n_ports++] = cp;
		}
	}
	return 0;
}

static int
pod_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns, const char *name)
{
	struct weft_snap_pod p;
	struct json_object *meta = weft_vdoc_field(o, "metadata"), *spec,
	    *status;
	struct json_object *a, *e;
	const char *uid, *node = NULL, *sa = NULL;
	char path[256];
	bool oom = false, terminating;
	size_t i, cnt;
	int r;

	memset(&p, 0, sizeof(p));
	(void)weft_vdoc_str(v, meta, "uid", "metadata.uid", &uid);
	terminating = weft_vdoc_field(meta, "deletionTimestamp") != NULL;
	if (v_labels(v, meta, "labels", "metadata.labels", &p.labels) == -1)
		goto oom;
	if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 1) {
		(void)v_name(v, spec, "nodeName", "spec.nodeName",
		    weft_name_is_dns_subdomain, &node);
		if ((r = v_name(v, spec, "serviceAccountName",
		    "spec.serviceAccountName", weft_name_is_dns_subdomain,
		    &sa)) == 0)
			(void)v_name(v, spec, "serviceAccount",
			    "spec.serviceAccount", weft_name_is_dns_subdomain,
			    &sa);
		if (pod_ports(v, spec, &p) == -1)
			goto oom;
	}
	if (weft_vdoc_obj(v, o, "status", "status", &status) == 1) {
		(void)v_ip(v, status, "podIP", "status.podIP", &p.ip);
		if (weft_vdoc_arr(v, status, "podIPs", "status.podIPs", &a,
		    &cnt) == 1) {
			for (i = 0; i < cnt; i++) {
				struct weft_ip ip;

				snprintf(path, sizeof(path), "status.podIPs[%zu]",
				    i);
				e = json_object_array_get_idx(a, i);
				if (weft_vdoc_type(v, e, path, json_type_object,
				    "an object") != 1)
					continue;
				snprintf(path, sizeof(path),
				    "status.podIPs[%zu].ip", i);
				if (v_ip(v, e, "ip", path, &ip) == 0)
					verr(v, path, "required");
				else if (ip.family != 0 && p.ip.family == 0)
					p.ip = ip;
			}
		}
	}
	if (VBAD(v))
		goto skip;
	if ((r = v_unique(b, v, "Pod", ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	p.namespace = weft_vdoc_strdup(ns, &oom);
	p.name = weft_vdoc_strdup(name, &oom);
	p.uid = weft_vdoc_strdup(uid, &oom);
	p.node = weft_vdoc_strdup(node, &oom);
	p.service_account = weft_vdoc_strdup(sa != NULL ? sa : "default", &oom);
	p.ready = p.ip.family != 0 && !terminating;
	if (oom)
		goto oom;
	return weft_builder_add_pod(b, &p);
skip:
	weft_snap_pod_clear(&p);
	return 0;
oom:
	weft_snap_pod_clear(&p);
	return -1;
}

/* One entry of a Service's spec.ports.  Returns 1 to keep sp, 0 to drop
 * it (reported), -1 on allocation failure. */
static int
svc_port(struct vdoc *v, struct json_object *e, const char *path,
    struct weft_service_port *sp)
{
	struct json_object *tp;
	const char *s;
	char p[300], buf[80];
	bool oom = false;
	int r, keep = 1;

	memset(sp, 0, sizeof(*sp));
	if (weft_vdoc_type(v, e, path, json_type_object, "an object") != 1)
		return 0;
	snprintf(p, sizeof(p), "%s.port", path);
	if (weft_vdoc_field(e, "port") == NULL) {
		verr(v, p, "required");
		keep = 0;
	} else if (v_port(v, weft_vdoc_field(e, "port"), p, &sp->port) == -1)
		keep = 0;
	snprintf(p, sizeof(p), "%s.name", path);
	if (v_name(v, e, "name", p, weft_name_is_dns_label, &s) == 1)
		sp->name = weft_vdoc_strdup(s, &oom);
	else
		s = NULL;
	if ((r = v_protocol(v, e, path, &sp->protocol)) != 1)
		keep = 0;
	snprintf(p, sizeof(p), "%s.targetPort", path);
	if ((tp = weft_vdoc_field(e, "targetPort")) == NULL)
		sp->target_port = sp->port;
	else if (json_object_is_type(tp, json_type_int))
		(void)v_port(v, tp, p, &sp->target_port);
	else if (json_object_is_type(tp, json_type_string) &&
	    weft_name_is_iana_svc(json_object_get_string(tp)))
		sp->target_port_name = weft_vdoc_strdup(
		    json_object_get_string(tp), &oom);
	else
		verr(v, p, "expected 1-65535 or an IANA service name (at most "
		    "15 lowercase letters, digits and '-', with at least one "
		    "letter), got %s", vgot(tp, buf, sizeof(buf)));
	snprintf(p, sizeof(p), "%s.appProtocol", path);
	if (weft_vdoc_str(v, e, "appProtocol", p, &s) == 1)
		sp->app_protocol = weft_vdoc_strdup(s, &oom);
	if (oom)
		return -1;
	return keep;
}

static int
svc_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns, const char *name)
{
	struct weft_snap_service s;
	struct json_object *spec, *a;
	struct weft_service_port sp;
	const char *cip;
	char path[256], buf[80];
	size_t i, j, cnt;
	bool oom = false;
	int r;

	memset(&s, 0, sizeof(s));
	if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 1) {
		if (weft_vdoc_str(v, spec, "clusterIP", "spec.clusterIP",
		    &cip) == 1 &&
		    strcmp(cip, "None") != 0 && cip[0] != '\0' &&
		    weft_ip_parse(cip, &s.cluster_ip) == -1)
			verr(v, "spec.clusterIP", "expected an IP address or "
			    "\"None\", got %s",
			    vgot(weft_vdoc_field(spec, "clusterIP"), buf,
			    sizeof(buf)));
		if (v_labels(v, spec, "selector", "spec.selector",
		    &s.selector) == -1)
			goto oom;
		if (weft_vdoc_arr(v, spec, "ports", "spec.ports", &a,
		    &cnt) == 1 &&
		    cnt > 0) {
			if ((s.ports = calloc(cnt, sizeof(*s.ports))) == NULL)
				goto oom;
			for (i = 0; i < cnt; i++) {
				snprintf(path, sizeof(path), "spec.ports[%zu]",
				    i);
				r = svc_port(v, json_object_array_get_idx(a, i),
				    path, &sp);
				if (r == -1) {
					s.ports[s.n_ports++] = sp;
					goto oom;
				}
				if (r == 1) {
					s.ports[s.n_ports++] = sp;
					continue;
				}
				free(sp.name);
				free(sp.target_port_name);
				free(sp.app_protocol);
			}
			/* Kubernetes: names required with several ports, and
			 * unique */
			for (i = 0; cnt > 1 && i < s.n_ports; i++) {
				if (s.ports[i].name == NULL) {
					snprintf(path, sizeof(path),
					    "spec.ports[%zu].name", i);
					verr(v, path, "required when the service "
					    "has more than one port");
					continue;
				}
				for (j = 0; j < i; j++)
					if (s.ports[j].name != NULL &&
					    strcmp(s.ports[j].name,
					    s.ports[i].name) == 0) {
						snprintf(path, sizeof(path),
						    "spec.ports[%zu].name", i);
						verr(v, path, "duplicate port "
						    "name \"%s\"",
						    s.ports[i].name);
					}
			}
		}
	}
	if (VBAD(v))
		goto skip;
	if ((r = v_unique(b, v, "Service", ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	s.namespace = weft_vdoc_strdup(ns, &oom);
	s.name = weft_vdoc_strdup(name, &oom);
	if (oom)
		goto oom;
	return weft_builder_add_service(b, &s);
skip:
	weft_snap_service_clear(&s);
	return 0;
oom:
	weft_snap_service_clear(&s);
	return -1;
}

struct kind_handler {
	const char	*group;		/* "" = core API group */
	const char	*kind;
	const char	*version;	/* the version accepted; NULL: the
					 * handler checks it */
	bool		 namespaced;
	bool		 name_is_label;	/* else a DNS-1123 subdomain */
	kind_fn		 add;
};

static const struct kind_handler kind_handlers[] = {
	{ "", "Namespace",	"v1", false, true,  ns_add },
	{ "", "ServiceAccount",	"v1", true,  false, sa_add },
	{ "", "Node",		"v1", false, false, node_add },
	{ "", "Pod",		"v1", true,  false, pod_add },
	{ "", "Service",	"v1", true,  true,  svc_add },
	/* readiness of pods (endpointslice.c) */
	{ "discovery.k8s.io", "EndpointSlice", "v1", true, false,
	    weft_endpointslice_add },
	/* SMI (smi.c): several versions each, checked by the handler */
	{ "access.smi-spec.io", "TrafficTarget", NULL, true, false,
	    weft_smi_target_add },
	{ "specs.smi-spec.io", "HTTPRouteGroup", NULL, true, false,
	    weft_smi_http_route_group_add },
	{ "specs.smi-spec.io", "TCPRoute", NULL, true, false,
	    weft_smi_tcp_route_add },
	{ "specs.smi-spec.io", "UDPRoute", NULL, true, false,
	    weft_smi_udp_route_add },
	{ "split.smi-spec.io", "TrafficSplit", NULL, true, false,
	    weft_smi_split_add },
};

static const struct kind_handler *
kind_lookup(const char *api_version, const char *kind)
{
	const char *slash = strchr(api_version, '/');
	size_t glen = slash ? (size_t)(slash - api_version) : 0;
	size_t i;

	for (i = 0; i < sizeof(kind_handlers) / sizeof(kind_handlers[0]); i++) {
		const struct kind_handler *h = &kind_handlers[i];

		if (strcmp(h->kind, kind) == 0 && strlen(h->group) == glen &&
		    strncmp(h->group, api_version, glen) == 0)
			return h;
	}
	return NULL;
}

static int
other_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *api_version, const char *kind, const char *ns,
    const char *name)
{
	struct weft_model_other x;
	bool oom = false;

	log_debug("%s: document %u: %s%s (%s) is not a kind weft handles; "
	    "kept aside", v->file, v->doc, v->prefix, v->what, api_version);
	memset(&x, 0, sizeof(x));
	x.api_version = weft_vdoc_strdup(api_version, &oom);
	x.kind = weft_vdoc_strdup(kind, &oom);
	x.namespace = weft_vdoc_strdup(ns, &oom);
	x.name = weft_vdoc_strdup(name, &oom);
	x.file = weft_vdoc_strdup(v->file, &oom);
	x.doc = v->doc;
	if (oom) {
		free(x.api_version);
		free(x.kind);
		free(x.namespace);
		free(x.name);
		free(x.file);
		return -1;
	}
	x.obj = json_object_get(o);
	return weft_builder_add_other(b, &x);
}

/* "Kind ns/name", "Kind name" or, without a name, "Kind". */
static void
what_set(struct vdoc *v, const char *kind, const char *ns, const char *name)
{
	if (name == NULL)
		snprintf(v->what, sizeof(v->what), "%s", kind);
	else if (ns == NULL)
		snprintf(v->what, sizeof(v->what), "%s %s", kind, name);
	else
		snprintf(v->what, sizeof(v->what), "%s %s/%s", kind, ns, name);
}

/* One object (a document, or an item of a List). */
static int
add_object(struct weft_builder *b, struct vdoc *v, struct json_object *o)
{
	const struct kind_handler *h;
	struct json_object *meta = NULL;
	const char *kind, *apiv, *name = NULL, *ns = NULL, *version;
	char buf[80];

	if (!json_object_is_type(o, json_type_object)) {
		verr(v, "", "expected an object, got %s",
		    vgot(o, buf, sizeof(buf)));
		return 0;
	}
	if (weft_vdoc_str(v, o, "kind", "kind", &kind) == 0)
		verr(v, "kind", "required");
	if (kind != NULL)
		snprintf(v->what, sizeof(v->what), "%s", kind);
	if (weft_vdoc_str(v, o, "apiVersion", "apiVersion", &apiv) == 0)
		verr(v, "apiVersion", "required");
	if (kind == NULL || apiv == NULL)
		return 0;
	h = kind_lookup(apiv, kind);
	if (weft_vdoc_obj(v, o, "metadata", "metadata", &meta) == 1) {
		/* raw values first, for the "(Kind ns/name)" context */
		if (json_object_is_type(weft_vdoc_field(meta, "name"),
		    json_type_string))
			name = json_object_get_string(weft_vdoc_field(meta,
			    "name"));
		if (json_object_is_type(weft_vdoc_field(meta, "namespace"),
		    json_type_string))
			ns = json_object_get_string(weft_vdoc_field(meta,
			    "namespace"));
	}
	if (h == NULL) {
		what_set(v, kind, ns, name);
		if (v->nerr > 0)
			return 0;
		return other_add(b, v, o, apiv, kind, ns, name);
	}
	if (h->namespaced && ns == NULL)
		ns = "default";
	if (!h->namespaced)
		ns = NULL;
	what_set(v, kind, ns, name);
	version = strchr(apiv, '/') ? strchr(apiv, '/') + 1 : apiv;
	if (h->version != NULL && strcmp(version, h->version) != 0)
		verr(v, "apiVersion", "expected %s%s%s, got \"%s\"", h->group,
		    h->group[0] ? "/" : "", h->version, apiv);
	if (meta == NULL) {
		if (weft_vdoc_field(o, "metadata") == NULL)
			verr(v, "metadata", "required");
		name = NULL;
	} else if (v_name(v, meta, "name", "metadata.name", h->name_is_label ?
	    weft_name_is_dns_label : weft_name_is_dns_subdomain, &name) == 0)
		verr(v, "metadata.name", "required");
	if (h->namespaced && meta != NULL &&
	    weft_vdoc_field(meta, "namespace") != NULL &&
	    v_name(v, meta, "namespace", "metadata.namespace",
	    weft_name_is_dns_label, &ns) != 1)
		ns = NULL;
	/* run the handler even after header errors so that every problem
	 * of the document is reported at once; it adds nothing then */
	return h->add(b, v, o, ns ? ns : "", name ? name : "");
}

int
weft_objects_add_doc(struct weft_builder *b,
    const struct weft_manifest_doc *doc, struct weft_errors *errs)
{
	struct json_object *o = doc->obj, *items, *kind, *apiv;
	struct vdoc v;
	size_t i, n;
	char buf[80];

	memset(&v, 0, sizeof(v));
	v.errs = errs;
	v.file = doc->file;
	v.doc = doc->index;
	kind = weft_vdoc_field(o, "kind");
	apiv = weft_vdoc_field(o, "apiVersion");
	if (!json_object_is_type(o, json_type_object) ||
	    !json_object_is_type(kind, json_type_string) ||
	    strcmp(json_object_get_string(kind), "List") != 0 ||
	    !json_object_is_type(apiv, json_type_string) ||
	    strcmp(json_object_get_string(apiv), "v1") != 0)
		return add_object(b, &v, o);
	snprintf(v.what, sizeof(v.what), "List");
	items = weft_vdoc_field(o, "items");
	if (items == NULL) {
		verr(&v, "items", "required");
		return 0;
	}
	if (!json_object_is_type(items, json_type_array)) {
		verr(&v, "items", "expected an array, got %s",
		    vgot(items, buf, sizeof(buf)));
		return 0;
	}
	n = json_object_array_length(items);
	for (i = 0; i < n; i++) {
		memset(&v, 0, sizeof(v));
		v.errs = errs;
		v.file = doc->file;
		v.doc = doc->index;
		snprintf(v.prefix, sizeof(v.prefix), "items[%zu].", i);
		if (add_object(b, &v, json_object_array_get_idx(items, i)) == -1)
			return -1;
	}
	return 0;
}
