/* The SMI kinds (SPEC §3-5, §8, §9): TrafficTarget (access v1alpha1-3),
 * HTTPRouteGroup and TCPRoute (specs v1alpha1-4), UDPRoute (specs v1alpha4)
 * and TrafficSplit (split v1alpha1-4), validated and converted without loss
 * into the normalised structs of weft/snapshot.h.
 *
 * Every version is read in its own shape (access v1alpha1 has no spec
 * wrapper, specs v1alpha1/2 keep matches at the top level), so paths in
 * messages are those of the document as written.  Where a version lacks a
 * field that a later one has (destination.port after access v1alpha2,
 * headers before specs v1alpha2, TCPRoute ports before v1alpha4, split
 * matches before v1alpha3), a document that uses it anyway is rejected
 * rather than pruned as an API server would: pruning would widen access or
 * a split's reach without a word.
 *
 * Decisions of SPEC §9 that accept something odd (A-6, A-8, A-9, A-13,
 * ) are warnings; the ones that refuse (A-2, A-12,
 * ) are errors and leave the object out.  Checks across
 * objects run in weft_smi_finish(), after every document. */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>

#include "weft/manifest.h"
#include "weft/regex.h"

#include "model.h"

#define SMI_ACCESS	"access.smi-spec.io"
#define SMI_SPECS	"specs.smi-spec.io"
#define SMI_SPLIT	"split.smi-spec.io"

/* Largest split weight kept: sums of a few thousand backends stay far from
 * overflowing 64 bits in the node's weighted choice. */
#define SMI_MAX_WEIGHT	UINT32_MAX

static const char *const smi_methods[] = {
	"*", "GET", "HEAD", "PUT", "POST", "DELETE", "CONNECT", "OPTIONS",
	"TRACE", "PATCH",
};

/* --- field access (weft_vdoc_* getters, model.h) --------------------------- */

/* A required string: 1, or -1 when absent or not a string (reported). */
static int
s_req_str(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, const char **out)
{
	int r;

	if ((r = weft_vdoc_str(v, o, key, path, out)) == 0)
		weft_vdoc_err(v, path, "required");
	return r == 1 ? 1 : -1;
}

/* A required name checked with fn (what names the expected form): 1 or -1
 * (reported). */
static int
s_req_name(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, bool (*fn)(const char *), const char **out)
{
	char buf[80];

	if (s_req_str(v, o, key, path, out) == -1)
		return -1;
	if (fn(*out))
		return 1;
	if (fn == weft_name_is_dns_label)
		weft_vdoc_err(v, path, "expected a DNS-1123 label (at most 63 "
		    "lowercase letters, digits and '-', starting and ending "
		    "with a letter or digit), got %s",
		    weft_vdoc_got(weft_vdoc_field(o, key), buf, sizeof(buf)));
	else
		weft_vdoc_err(v, path, "expected a DNS-1123 subdomain (at most "
		    "253 lowercase letters, digits, '-' and '.', each part "
		    "starting and ending with a letter or digit), got %s",
		    weft_vdoc_got(weft_vdoc_field(o, key), buf, sizeof(buf)));
	*out = NULL;
	return -1;
}

static int
strv_push(char ***v, size_t *n, const char *s)
{
	char **nv, *d;

	if ((d = strdup(s)) == NULL)
		return -1;
	if ((nv = reallocarray(*v, *n + 1, sizeof(*nv))) == NULL) {
		free(d);
		return -1;
	}
	*v = nv;
	nv[(*n)++] = d;
	return 0;
}

static void
strv_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Forget the warnings a document added since there were n: once it is
 * rejected, only its errors matter. */
static void
smi_warnings_drop(struct vdoc *v, size_t n)
{
	struct weft_errors *e = v->errs;

	while (e->n_warnings > n) {
		free(e->warnings[--e->n_warnings]);
		e->warnings[e->n_warnings] = NULL;
	}
}

/* Kind names for weft_builder_seen(), which compares them by address. */
static const char smi_kind_target[] = "TrafficTarget";
static const char smi_kind_group[] = "HTTPRouteGroup";
static const char smi_kind_tcp[] = "TCPRoute";
static const char smi_kind_udp[] = "UDPRoute";
static const char smi_kind_split[] = "TrafficSplit";

/* Report a duplicate (same kind, namespace and name as an earlier
 * document, which is kept).  Returns 1 if new, 0 if duplicate, -1 on
 * allocation failure. */
static int
smi_unique(struct weft_builder *b, struct vdoc *v, const char *kind,
    const char *ns, const char *name)
{
	const struct weft_seen *first;
	int r;

	r = weft_builder_seen(b, kind, ns, name, v->file, v->doc, &first);
	if (r == 0)
		weft_vdoc_err(v, "metadata.name", "duplicate %s, first defined "
		    "in %s document %u; ignored", v->what, first->file,
		    first->doc);
	return r;
}

/* Which version of group apiVersion names, among "v1alpha<first..last>":
 * that number, or -1 (reported with the supported list). */
static int
smi_version(struct vdoc *v, struct json_object *o, const char *group,
    int first, int last)
{
	const char *apiv = json_object_get_string(weft_vdoc_field(o,
	    "apiVersion"));
	const char *ver = strchr(apiv, '/') + 1;
	char list[128];
	size_t len = 0;
	int i;

	for (i = first; i <= last; i++)
		if (strncmp(ver, "v1alpha", 7) == 0 && ver[7] == '0' + i &&
		    ver[8] == '\0')
			return i;
	for (i = first; i <= last; i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len,
		    "%s%sv1alpha%d", i == first ? group : "",
		    i == first ? "/" : i == last ? " or " : ", ", i);
	weft_vdoc_err(v, "apiVersion", "expected %s, got \"%s\"", list, apiv);
	return -1;
}

/* --- TrafficTarget ------------------------------------------------------------- */

/* names are literal; "*" can only be a (non-existent) ServiceAccount
 * called "*".  Returns 1 for a usable name, -1 (reported) otherwise. */
static int
smi_subject_name(struct vdoc *v, struct json_object *e, const char *key,
    const char *path, bool (*fn)(const char *), const char **out)
{
	const char *s;

	if (weft_vdoc_str(v, e, key, path, &s) == 1 && strcmp(s, "*") == 0) {
		weft_vdoc_warn(v, path, "\"*\" is not a wildcard (A-8): it "
		    "names a ServiceAccount called \"*\", which matches no "
		    "workload");
		*out = s;
		return 1;
	}
	if (s == NULL && weft_vdoc_field(e, key) != NULL)
		return -1;	/* wrong type, reported */
	return s_req_name(v, e, key, path, fn, out);
}

/* A destination or sources[] entry at path.  Returns 1 with *out filled
 * (namespace defaulted to ns, A-6), 0 when its kind is not ServiceAccount
 * (warned, A-24), -1 when invalid (reported) or out of memory (*oom). */
static int
smi_subject(struct vdoc *v, struct json_object *e, const char *path,
    const char *ns, bool destination, struct weft_smi_subject *out,
    bool *oom)
{
	const char *kind, *name, *sns = NULL;
	char p[320];
	int bad = 0;

	memset(out, 0, sizeof(*out));
	if (weft_vdoc_type(v, e, path, json_type_object, "an object") != 1)
		return -1;
	snprintf(p, sizeof(p), "%s.kind", path);
	if (s_req_str(v, e, "kind", p, &kind) == -1)
		bad = 1;
	else if (strcmp(kind, "ServiceAccount") != 0) {
		if (destination)
			weft_vdoc_warn(v, p, "kind \"%s\" is not supported, "
			    "only ServiceAccount (A-24): the target grants "
			    "nothing and is ignored", kind);
		else
			weft_vdoc_warn(v, p, "kind \"%s\" is not supported, "
			    "only ServiceAccount (A-24): this source is "
			    "ignored", kind);
		return 0;
	}
	snprintf(p, sizeof(p), "%s.name", path);
	if (smi_subject_name(v, e, "name", p, weft_name_is_dns_subdomain,
	    &name) == -1)
		bad = 1;
	snprintf(p, sizeof(p), "%s.namespace", path);
	if (weft_vdoc_field(e, "namespace") != NULL) {
		if (weft_vdoc_str(v, e, "namespace", p, &sns) == -1)
			bad = 1;
		else if (sns[0] == '\0')
			sns = NULL;
		else if (smi_subject_name(v, e, "namespace", p,
		    weft_name_is_dns_label, &sns) == -1)
			bad = 1;
	}
	if (bad)
		return -1;
	out->namespace = weft_vdoc_strdup(sns != NULL ? sns : ns, oom);
	out->name = weft_vdoc_strdup(name, oom);
	return *oom ? -1 : 1;
}

/* rules[i] (specs[i] in v1alpha1) into *r.  Returns 0 (kept), 1 (invalid,
 * reported) or -1 (out of memory). */
static int
smi_rule(struct vdoc *v, struct json_object *e, const char *path, int ver,
    struct weft_smi_rule *r)
{
	struct json_object *a, *m;
	const char *kind, *name;
	char p[320], buf[80];
	size_t i, n;
	int bad = 0;

	memset(r, 0, sizeof(*r));
	if (weft_vdoc_type(v, e, path, json_type_object, "an object") != 1)
		return 1;
	snprintf(p, sizeof(p), "%s.kind", path);
	if (s_req_str(v, e, "kind", p, &kind) == -1)
		bad = 1;
	else if (strcmp(kind, "HTTPRouteGroup") == 0)
		r->kind = WEFT_SMI_HTTP;
	else if (strcmp(kind, "TCPRoute") == 0)
		r->kind = WEFT_SMI_TCP;
	else if (strcmp(kind, "UDPRoute") == 0 && ver >= 3)
		r->kind = WEFT_SMI_UDP;
	else {
		weft_vdoc_err(v, p, "expected HTTPRouteGroup, TCPRoute%s, got "
		    "%s%s", ver >= 3 ? " or UDPRoute" : "",
		    weft_vdoc_got(weft_vdoc_field(e, "kind"), buf, sizeof(buf)),
		    strcmp(kind, "UDPRoute") == 0 ? " (UDPRoute needs "
		    SMI_ACCESS "/v1alpha3)" : "");
		bad = 1;
	}
	snprintf(p, sizeof(p), "%s.name", path);
	if (s_req_name(v, e, "name", p, weft_name_is_dns_subdomain,
	    &name) == -1)
		bad = 1;
	snprintf(p, sizeof(p), "%s.matches", path);
	if (weft_vdoc_field(e, "matches") != NULL && r->kind != 0 &&
	    r->kind != WEFT_SMI_HTTP) {
		/* no defined meaning for L4 routes */
		weft_vdoc_warn(v, p, "ignored for %s rules (A-9)", kind);
	} else if (weft_vdoc_arr(v, e, "matches", p, &a, &n) == -1)
		bad = 1;
	else {
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "%s.matches[%zu]", path, i);
			m = json_object_array_get_idx(a, i);
			if (weft_vdoc_type(v, m, p, json_type_string,
			    "a string") != 1) {
				if (m == NULL)
					weft_vdoc_err(v, p, "expected a "
					    "string, got null");
				bad = 1;
				continue;
			}
			if (json_object_get_string_len(m) == 0) {
				weft_vdoc_err(v, p, "expected a match name, "
				    "got \"\"");
				bad = 1;
				continue;
			}
			if (strv_push(&r->matches, &r->n_matches,
			    json_object_get_string(m)) == -1)
				return -1;
		}
	}
	if (!bad && (r->name = strdup(name)) == NULL)
		return -1;
	return bad;
}

/* Grow the parallel arrays of one SMI kind to hold n + 1. */
static int
smi_grow(void **arr, struct weft_smi_origin **orig, size_t *cap, size_t n,
    size_t sz)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	if ((p = reallocarray(*arr, ncap, sz)) == NULL)
		return -1;
	*arr = p;
	if (orig != NULL) {
		if ((p = reallocarray(*orig, ncap, sizeof(**orig))) == NULL)
			return -1;
		*orig = p;
	}
	*cap = ncap;
	return 0;
}

static int
smi_origin(struct vdoc *v, const char *spec, struct weft_smi_origin *o)
{
	memset(o, 0, sizeof(*o));
	if ((o->file = strdup(v->file)) == NULL)
		return -1;
	o->doc = v->doc;
	snprintf(o->prefix, sizeof(o->prefix), "%s", v->prefix);
	o->spec = spec;
	return 0;
}

int
weft_smi_target_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	struct weft_snapshot *all = &b->m->all;
	struct weft_smi_target t;
	struct weft_smi_subject sub;
	struct weft_smi_rule rule;
	struct weft_smi_origin org;
	struct json_object *root, *dst = NULL, *a, *pv;
	const char *spec, *rkey;
	char p[256], buf[80];
	size_t i, n;
	bool oom = false, drop = false;
	size_t nw;
	int ver, r;
	int64_t port;

	memset(&t, 0, sizeof(t));
	nw = v->errs->n_warnings;
	if ((ver = smi_version(v, o, SMI_ACCESS, 1, 3)) == -1)
		return 0;
	/* §8.1: v1alpha1 has no spec wrapper and says specs for rules */
	if (ver == 1) {
		root = o;
		spec = "";
		rkey = "specs";
		if (weft_vdoc_field(o, "spec") != NULL)
			weft_vdoc_err(v, "spec", "not a field of " SMI_ACCESS
			    "/v1alpha1 (destination, specs and sources are "
			    "top-level)");
	} else {
		spec = "spec.";
		rkey = "rules";
		if (weft_vdoc_obj(v, o, "spec", "spec", &root) == 0)
			weft_vdoc_err(v, "spec", "required");
	}
	if (root == NULL)
		goto skip;

	snprintf(p, sizeof(p), "%sdestination", spec);
	if (weft_vdoc_obj(v, root, "destination", p, &dst) == 0)
		weft_vdoc_err(v, p, "required");
	if (dst != NULL) {
		r = smi_subject(v, dst, p, ns, true, &t.destination, &oom);
		if (oom)
			goto oom;
		if (r == 0)
			drop = true;
		snprintf(p, sizeof(p), "%sdestination.port", spec);
		if ((pv = weft_vdoc_field(dst, "port")) == NULL)
			;
		else if (ver >= 3)
			/* pruning it would widen access (§8.1) */
			weft_vdoc_err(v, p, "not a field of " SMI_ACCESS
			    "/v1alpha3 (put ports in a TCPRoute or UDPRoute "
			    "and list it in rules)");
		else if (!json_object_is_type(pv, json_type_int) ||
		    (port = json_object_get_int64(pv)) < 1 || port > 65535)
			weft_vdoc_err(v, p, "expected 1-65535, got %s",
			    weft_vdoc_got(pv, buf, sizeof(buf)));
		else
			t.port = (uint16_t)port;	/* §8.1: never dropped */
	}

	snprintf(p, sizeof(p), "%s%s", spec, rkey);
	if ((r = weft_vdoc_arr(v, root, rkey, p, &a, &n)) == 0 && ver >= 3)
		weft_vdoc_err(v, p, "required");
	else if (r >= 0 && n == 0)
		weft_vdoc_warn(v, p, "no rules: this target grants nothing "
		    "(A-27)");
	if (n > 0 && (t.rules = calloc(n, sizeof(*t.rules))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s%s[%zu]", spec, rkey, i);
		r = smi_rule(v, json_object_array_get_idx(a, i), p, ver, &rule);
		if (r == 0) {
			t.rules[t.n_rules++] = rule;
			continue;
		}
		strv_free(rule.matches, rule.n_matches);
		if (r == -1)
			goto oom;
	}

	snprintf(p, sizeof(p), "%ssources", spec);
	if ((r = weft_vdoc_arr(v, root, "sources", p, &a, &n)) == 0 && ver >= 3)
		weft_vdoc_err(v, p, "required");
	else if (r >= 0 && n == 0)
		weft_vdoc_warn(v, p, "no sources: this target grants nothing "
		    "(A-27)");
	if (n > 0 && (t.sources = calloc(n, sizeof(*t.sources))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%ssources[%zu]", spec, i);
		r = smi_subject(v, json_object_array_get_idx(a, i), p, ns,
		    false, &sub, &oom);
		if (oom)
			goto oom;
		if (r == 1)
			t.sources[t.n_sources++] = sub;
	}

	if (VBAD(v))
		goto skip;
	if ((r = smi_unique(b, v, smi_kind_target, ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	if (drop)
		goto skip;
	t.namespace = weft_vdoc_strdup(ns, &oom);
	t.name = weft_vdoc_strdup(name, &oom);
	if (oom || smi_origin(v, spec, &org) == -1)
		goto oom;
	if (smi_grow((void **)&all->targets, &b->target_origins,
	    &b->cap_targets, all->n_targets, sizeof(t)) == -1) {
		free(org.file);
		goto oom;
	}
	b->target_origins[all->n_targets] = org;
	all->targets[all->n_targets++] = t;
	return 0;
skip:
	if (VBAD(v))
		smi_warnings_drop(v, nw);
	weft_smi_target_clear(&t);
	return 0;
oom:
	weft_smi_target_clear(&t);
	return -1;
}

/* --- HTTPRouteGroup -------------------------------------------------------------- */

/* RFC 9110 token characters: a header field name. */
static bool
smi_is_token(const char *s)
{
	const char *p;

	if (*s == '\0')
		return false;
	for (p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') ||
		    strchr("!#$%&'*+-.^_`|~", *p) != NULL))
			return false;
	return true;
}

/* A regex field value: 0 valid, -1 invalid (reported with the reason). */
static int
smi_regex(struct vdoc *v, const char *path, const char *re)
{
	char why[256];

	if (weft_re_validate(re, why, sizeof(why)) == 0)
		return 0;
	weft_vdoc_err(v, path, "invalid regular expression: %s", why);
	return -1;
}

/* One header filter (name, value) at path; appended to m.  Returns 0,
 * 1 (invalid, reported) or -1 (out of memory). */
static int
smi_header(struct vdoc *v, const char *path, const char *hname,
    struct json_object *val, struct weft_smi_http_match *m)
{
	struct weft_smi_header_match *nh;
	char buf[80], *lname;
	size_t i;

	if (!smi_is_token(hname)) {
		weft_vdoc_err(v, path, "expected an HTTP header name (letters, "
		    "digits and !#$%%&'*+-.^_`|~)");
		return 1;
	}
	if (val == NULL || !json_object_is_type(val, json_type_string)) {
		weft_vdoc_err(v, path, "expected a regular expression string, "
		    "got %s", weft_vdoc_got(val, buf, sizeof(buf)));
		return 1;
	}
	if (smi_regex(v, path, json_object_get_string(val)) == -1)
		return 1;
	/* sdk-go lets a repeated name overwrite the earlier one; we
	 * refuse instead of guessing which one was meant */
	for (i = 0; i < m->n_headers; i++)
		if (strcasecmp(m->headers[i].name, hname) == 0) {
			weft_vdoc_err(v, path, "header \"%s\" repeated in this "
			    "match (A-2)", m->headers[i].name);
			return 1;
		}
	if ((lname = strdup(hname)) == NULL)
		return -1;
	for (i = 0; lname[i] != '\0'; i++)
		if (lname[i] >= 'A' && lname[i] <= 'Z')
			lname[i] += 'a' - 'A';
	nh = reallocarray(m->headers, m->n_headers + 1, sizeof(*nh));
	if (nh == NULL) {
		free(lname);
		return -1;
	}
	m->headers = nh;
	nh[m->n_headers].name = lname;
	if ((nh[m->n_headers].value_regex =
	    strdup(json_object_get_string(val))) == NULL) {
		free(lname);
		return -1;
	}
	m->n_headers++;
	return 0;
}

static int
smi_header_cmp(const void *a, const void *b)
{
	return strcmp(((const struct weft_smi_header_match *)a)->name,
	    ((const struct weft_smi_header_match *)b)->name);
}

/* headers of a match, in either encoding: an array of one-key
 * objects (the CRD's) or a plain object (the later prose's).  Returns 0,
 * 1 (invalid, reported) or -1. */
static int
smi_headers(struct vdoc *v, struct json_object *hs, const char *path,
    struct weft_smi_http_match *m)
{
	struct json_object *e;
	char p[400], buf[80];
	size_t i, n;
	int r, bad = 0;

	if (json_object_is_type(hs, json_type_object)) {
		json_object_object_foreach(hs, k, val) {
			snprintf(p, sizeof(p), "%s[\"%s\"]", path, k);
			if ((r = smi_header(v, p, k, val, m)) == -1)
				return -1;
			bad |= r;
		}
	} else if (json_object_is_type(hs, json_type_array)) {
		n = json_object_array_length(hs);
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "%s[%zu]", path, i);
			e = json_object_array_get_idx(hs, i);
			if (e == NULL || !json_object_is_type(e,
			    json_type_object)) {
				weft_vdoc_err(v, p, "expected an object with "
				    "one header, got %s",
				    weft_vdoc_got(e, buf, sizeof(buf)));
				bad = 1;
				continue;
			}
			if (json_object_object_length(e) != 1) {
				weft_vdoc_err(v, p, "expected exactly one "
				    "header per list element, got %d (A-2)",
				    json_object_object_length(e));
				bad = 1;
				continue;
			}
			json_object_object_foreach(e, k, val) {
				snprintf(p, sizeof(p), "%s[%zu][\"%s\"]", path,
				    i, k);
				if ((r = smi_header(v, p, k, val, m)) == -1)
					return -1;
				bad |= r;
			}
		}
	} else {
		weft_vdoc_err(v, path, "expected a list of one-header objects "
		    "or an object of headers, got %s",
		    weft_vdoc_got(hs, buf, sizeof(buf)));
		return 1;
	}
	/* AND of filters: order carries no meaning, so make it canonical */
	if (m->n_headers > 1)
		qsort(m->headers, m->n_headers, sizeof(*m->headers),
		    smi_header_cmp);
	return bad;
}

/* One entry of matches at path.  Returns 0, 1 (invalid, reported) or -1. */
static int
smi_http_match(struct vdoc *v, struct json_object *e, const char *path,
    int ver, struct weft_smi_http_match *m)
{
	struct json_object *a, *x, *hs;
	const char *name, *re, *s;
	char p[300], buf[80];
	size_t i, j, n;
	int r, bad = 0;

	memset(m, 0, sizeof(*m));
	if (weft_vdoc_type(v, e, path, json_type_object, "an object") != 1) {
		if (e == NULL)
			weft_vdoc_err(v, path, "expected an object, got null");
		return 1;
	}
	/* only the name is required */
	snprintf(p, sizeof(p), "%s.name", path);
	if (s_req_str(v, e, "name", p, &name) == -1)
		bad = 1;
	else if (name[0] == '\0') {
		weft_vdoc_err(v, p, "expected a match name, got \"\"");
		bad = 1;
	} else if ((m->name = strdup(name)) == NULL)
		return -1;
	snprintf(p, sizeof(p), "%s.pathRegex", path);
	if ((r = weft_vdoc_str(v, e, "pathRegex", p, &re)) == -1)
		bad = 1;
	else if (r == 1 && smi_regex(v, p, re) == -1)
		bad = 1;
	else if (r == 1 && (m->path_regex = strdup(re)) == NULL)
		return -1;
	snprintf(p, sizeof(p), "%s.methods", path);
	if (weft_vdoc_arr(v, e, "methods", p, &a, &n) == -1)
		bad = 1;
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s.methods[%zu]", path, i);
		x = json_object_array_get_idx(a, i);
		s = json_object_is_type(x, json_type_string) ?
		    json_object_get_string(x) : NULL;
		for (j = 0; s != NULL &&
		    j < sizeof(smi_methods) / sizeof(smi_methods[0]); j++)
			if (strcmp(s, smi_methods[j]) == 0)
				break;
		if (s == NULL ||
		    j == sizeof(smi_methods) / sizeof(smi_methods[0])) {
			weft_vdoc_err(v, p, "expected *, GET, HEAD, PUT, POST, "
			    "DELETE, CONNECT, OPTIONS, TRACE or PATCH, got %s",
			    weft_vdoc_got(x, buf, sizeof(buf)));
			bad = 1;
			continue;
		}
		if (strv_push(&m->methods, &m->n_methods, s) == -1)
			return -1;
	}
	snprintf(p, sizeof(p), "%s.headers", path);
	if ((hs = weft_vdoc_field(e, "headers")) != NULL) {
		if (ver < 2) {
			/* silently ignoring a filter would widen the match */
			weft_vdoc_err(v, p, "not a field of " SMI_SPECS
			    "/v1alpha1 (headers came in v1alpha2)");
			bad = 1;
		} else if ((r = smi_headers(v, hs, p, m)) == -1)
			return -1;
		else
			bad |= r;
	}
	if (!bad && m->path_regex == NULL && m->n_methods == 0 &&
	    m->n_headers == 0)
		weft_vdoc_warn(v, path, "no pathRegex, methods or headers: "
		    "this entry matches every request");
	return bad;
}

int
weft_smi_http_route_group_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	struct weft_snapshot *all = &b->m->all;
	struct weft_smi_http_route_group g;
	struct weft_smi_http_match m;
	struct json_object *spec, *a, *top;
	const char *mpath;
	char p[256];
	size_t i, j, n;
	bool oom = false;
	size_t nw;
	int ver, r;

	memset(&g, 0, sizeof(g));
	nw = v->errs->n_warnings;
	if ((ver = smi_version(v, o, SMI_SPECS, 1, 4)) == -1)
		return 0;
	top = weft_vdoc_field(o, "matches");
	spec = weft_vdoc_field(o, "spec");
	if (ver <= 2) {
		/* §8.2: matches is top-level before v1alpha3 */
		if (spec != NULL)
			weft_vdoc_err(v, "spec", "not a field of " SMI_SPECS
			    "/v1alpha%d HTTPRouteGroup (matches is top-level)",
			    ver);
		spec = o;
		mpath = "matches";
	} else if (top != NULL && weft_vdoc_field(spec, "matches") == NULL) {
		/* also with an empty spec: a v1 API server would have kept
		 * nothing at all */
		weft_vdoc_warn(v, "matches", "belongs in spec.matches since "
		    SMI_SPECS "/v1alpha3; read as spec.matches (A-13)");
		spec = o;
		mpath = "matches";
	} else {
		if (top != NULL)
			weft_vdoc_err(v, "matches", "given both here and in "
			    "spec.matches; only spec.matches belongs in "
			    SMI_SPECS "/v1alpha%d", ver);
		mpath = "spec.matches";
		if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 0)
			weft_vdoc_err(v, "spec", "required");
	}
	if (spec == NULL)
		goto skip;
	if ((r = weft_vdoc_arr(v, spec, "matches", mpath, &a, &n)) == 0)
		weft_vdoc_err(v, mpath, "required");
	else if (r == 1 && n == 0)
		weft_vdoc_warn(v, mpath, "no matches: this group matches no "
		    "request");
	if (n > 0 && (g.matches = calloc(n, sizeof(*g.matches))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "%s[%zu]", mpath, i);
		r = smi_http_match(v, json_object_array_get_idx(a, i), p, ver,
		    &m);
		if (r == 0) {
			/* the name is the key rules[].matches use */
			for (j = 0; j < g.n_matches; j++)
				if (g.matches[j].name != NULL &&
				    strcmp(g.matches[j].name, m.name) == 0)
					break;
			if (j < g.n_matches) {
				snprintf(p, sizeof(p), "%s[%zu].name", mpath,
				    i);
				weft_vdoc_err(v, p, "duplicate match name "
				    "\"%s\" (also %s[%zu]; A-12)", m.name,
				    mpath, j);
				r = 1;
			}
		}
		if (r == 0) {
			g.matches[g.n_matches++] = m;
			continue;
		}
		/* a partly filled entry: hand it to the group to free */
		g.matches[g.n_matches++] = m;
		if (r == -1)
			goto oom;
	}
	if (VBAD(v))
		goto skip;
	if ((r = smi_unique(b, v, smi_kind_group, ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	g.namespace = weft_vdoc_strdup(ns, &oom);
	g.name = weft_vdoc_strdup(name, &oom);
	if (oom || smi_grow((void **)&all->http_route_groups, NULL,
	    &b->cap_http_route_groups, all->n_http_route_groups,
	    sizeof(g)) == -1)
		goto oom;
	all->http_route_groups[all->n_http_route_groups++] = g;
	return 0;
skip:
	if (VBAD(v))
		smi_warnings_drop(v, nw);
	weft_smi_http_route_group_clear(&g);
	return 0;
oom:
	weft_smi_http_route_group_clear(&g);
	return -1;
}

/* --- TCPRoute, UDPRoute ----------------------------------------------------------- */

static int
smi_port_cmp(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static int
smi_l4_add(struct weft_builder *b, struct vdoc *v, struct json_object *o,
    const char *ns, const char *name, bool udp)
{
	struct weft_snapshot *all = &b->m->all;
	struct weft_smi_l4_route rt;
	struct json_object *spec, *m = NULL, *a, *e;
	char p[256], buf[80];
	size_t i, k, n;
	bool oom = false;
	size_t nw;
	int ver, r;
	int64_t port;

	memset(&rt, 0, sizeof(rt));
	nw = v->errs->n_warnings;
	if ((ver = smi_version(v, o, SMI_SPECS, udp ? 4 : 1, 4)) == -1)
		return 0;
	if (ver < 4) {
		/* §8.2: no ports before v1alpha4, so every port; a document
		 * that lists some anyway must not be widened to all */
		if (weft_vdoc_field(weft_vdoc_field(o, "spec"),
		    "matches") != NULL)
			weft_vdoc_err(v, "spec.matches", "not a field of "
			    SMI_SPECS "/v1alpha%d TCPRoute (ports came in "
			    "v1alpha4; without them a TCPRoute covers every "
			    "port)", ver);
	} else {
		if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 0)
			weft_vdoc_err(v, "spec", "required");
		else if (spec != NULL && weft_vdoc_obj(v, spec, "matches",
		    "spec.matches", &m) == 0)
			weft_vdoc_err(v, "spec.matches", "required");
		if (m != NULL) {
			/* spec.matches.name (Go type only) is unused: A-9 */
			if ((r = weft_vdoc_arr(v, m, "ports",
			    "spec.matches.ports", &a,
			    &n)) == 0)
				weft_vdoc_err(v, "spec.matches.ports",
				    "required (an empty list means every "
				    "port)");
			if (n > 0 && (rt.ports = calloc(n,
			    sizeof(*rt.ports))) == NULL)
				goto oom;
			for (i = 0; i < n; i++) {
				snprintf(p, sizeof(p), "spec.matches.ports[%zu]",
				    i);
				e = json_object_array_get_idx(a, i);
				if (e == NULL || !json_object_is_type(e,
				    json_type_int) ||
				    (port = json_object_get_int64(e)) < 1 ||
				    port > 65535) {
					weft_vdoc_err(v, p, "expected 1-65535, "
					    "got %s", weft_vdoc_got(e, buf,
					    sizeof(buf)));
					continue;
				}
				rt.ports[rt.n_ports++] = (uint16_t)port;
			}
			/* a set: sorted, without repeats */
			if (rt.n_ports > 1)
				qsort(rt.ports, rt.n_ports, sizeof(*rt.ports),
				    smi_port_cmp);
			for (i = k = 0; i < rt.n_ports; i++)
				if (k == 0 || rt.ports[k - 1] != rt.ports[i])
					rt.ports[k++] = rt.ports[i];
			rt.n_ports = k;
		}
	}
	if (VBAD(v))
		goto skip;
	if ((r = smi_unique(b, v, udp ? smi_kind_udp : smi_kind_tcp, ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	rt.namespace = weft_vdoc_strdup(ns, &oom);
	rt.name = weft_vdoc_strdup(name, &oom);
	if (oom)
		goto oom;
	if (udp) {
		if (smi_grow((void **)&all->udp_routes, NULL,
		    &b->cap_udp_routes, all->n_udp_routes, sizeof(rt)) == -1)
			goto oom;
		all->udp_routes[all->n_udp_routes++] = rt;
	} else {
		if (smi_grow((void **)&all->tcp_routes, NULL,
		    &b->cap_tcp_routes, all->n_tcp_routes, sizeof(rt)) == -1)
			goto oom;
		all->tcp_routes[all->n_tcp_routes++] = rt;
	}
	return 0;
skip:
	if (VBAD(v))
		smi_warnings_drop(v, nw);
	weft_smi_l4_route_clear(&rt);
	return 0;
oom:
	weft_smi_l4_route_clear(&rt);
	return -1;
}

int
weft_smi_tcp_route_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	return smi_l4_add(b, v, o, ns, name, false);
}

int
weft_smi_udp_route_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	return smi_l4_add(b, v, o, ns, name, true);
}

/* --- TrafficSplit ------------------------------------------------------------------ */

/* A Kubernetes Quantity ("1", "500m", "1.5", "2Ki", "1e3") as a whole
 * number of milli-units, exactly (§8.3).  Returns 0, or -1 with a reason:
 * negative, finer than 1m, too large, or not a Quantity. */
static int
smi_quantity_milli(const char *s, uint64_t *out, const char **why)
{
	static const struct {
		const char	*sfx;
		int		 dec;	/* power of 10 */
		int		 bin;	/* power of 2 */
	} sfx[] = {
		{ "n", -9, 0 }, { "u", -6, 0 }, { "m", -3, 0 }, { "", 0, 0 },
		{ "k", 3, 0 }, { "M", 6, 0 }, { "G", 9, 0 }, { "T", 12, 0 },
		{ "P", 15, 0 }, { "E", 18, 0 }, { "Ki", 0, 10 },
		{ "Mi", 0, 20 }, { "Gi", 0, 30 }, { "Ti", 0, 40 },
		{ "Pi", 0, 50 }, { "Ei", 0, 60 },
	};
	unsigned __int128 v = 0, div;
	const char *p = s;
	int exp10 = 0, bin = 0, digits = 0, frac = 0, i;
	bool point = false;
	long e;
	char *end;

	*why = "expected a Quantity (such as 1, 500m or 1.5)";
	if (*p == '+')
		p++;
	else if (*p == '-') {
		*why = "expected a weight >= 0 (A-15)";
		return -1;
	}
	for (; (*p >= '0' && *p <= '9') || (*p == '.' && !point); p++) {
		if (*p == '.') {
			point = true;
			continue;
		}
		digits++;
		if (point)
			frac++;
		/* more than 38 significant digits cannot be a weight */
		if (v > ((unsigned __int128)1 << 120)) {
			*why = "weight too large";
			return -1;
		}
		v = v * 10 + (unsigned)(*p - '0');
	}
	if (digits == 0)
		return -1;
	if ((*p == 'e' || *p == 'E') && p[1] != '\0' && p[1] != 'i') {
		e = strtol(p + 1, &end, 10);
		if (*end != '\0' || end == p + 1 ||
		    !(p[1] == '+' || p[1] == '-' || (p[1] >= '0' &&
		    p[1] <= '9')))
			return -1;
		if (e > 40 || e < -40) {
			*why = e > 0 ? "weight too large" :
			    "finer than 1m: not a whole number of milli-units";
			return -1;
		}
		exp10 = (int)e;
	} else {
		for (i = 0; i < (int)(sizeof(sfx) / sizeof(sfx[0])); i++)
			if (strcmp(p, sfx[i].sfx) == 0)
				break;
		if (i == (int)(sizeof(sfx) / sizeof(sfx[0])))
			return -1;
		exp10 = sfx[i].dec;
		bin = sfx[i].bin;
	}
	/* value = v * 10^(exp10 - frac) * 2^bin; in milli-units: + 3 */
	exp10 += 3 - frac;
	for (i = 0; i < bin; i++) {
		if (v > ((unsigned __int128)1 << 126)) {
			*why = "weight too large";
			return -1;
		}
		v <<= 1;
	}
	for (; exp10 > 0; exp10--) {
		if (v > UINT64_MAX) {
			*why = "weight too large";
			return -1;
		}
		v *= 10;
	}
	/* v < 2^127 < 10^39: no non-zero v is a multiple of 10^39 */
	if (exp10 < -38) {
		if (v != 0) {
			*why = "finer than 1m: not a whole number of "
			    "milli-units";
			return -1;
		}
		exp10 = 0;
	}
	for (div = 1; exp10 < 0; exp10++)
		div *= 10;
	if (v % div != 0) {
		*why = "finer than 1m: not a whole number of milli-units";
		return -1;
	}
	v /= div;
	if (v > UINT64_MAX) {
		*why = "weight too large";
		return -1;
	}
	*out = (uint64_t)v;
	return 0;
}

static uint64_t
smi_gcd(uint64_t a, uint64_t b)
{
	uint64_t t;

	while (b != 0) {
		t = a % b;
		a = b;
		b = t;
	}
	return a;
}

/* backends[i].weight at path.  v1alpha1: a Quantity, in milli-units (the
 * caller reduces by the GCD); later: a whole number >= 0.  Returns
 * 0 or -1 (reported). */
static int
smi_weight(struct vdoc *v, struct json_object *w, const char *path, int ver,
    uint64_t *out)
{
	char buf[80], num[64];
	const char *why, *s;
	int64_t n;
	double d;

	*out = 0;
	if (w == NULL) {
		weft_vdoc_err(v, path, "required");
		return -1;
	}
	if (ver == 1) {
		if (json_object_is_type(w, json_type_string))
			s = json_object_get_string(w);
		else if (json_object_is_type(w, json_type_int)) {
			snprintf(num, sizeof(num), "%" PRId64,
			    json_object_get_int64(w));
			s = num;
		} else if (json_object_is_type(w, json_type_double)) {
			/* the shortest text that reads back as the same
			 * double, parsed exactly as a Quantity */
			snprintf(num, sizeof(num), "%.15g",
			    json_object_get_double(w));
			if (strtod(num, NULL) != json_object_get_double(w))
				snprintf(num, sizeof(num), "%.17g",
				    json_object_get_double(w));
			s = num;
		} else
			s = NULL;
		if (s == NULL || smi_quantity_milli(s, out, &why) == -1) {
			weft_vdoc_err(v, path, "%s, got %s", s == NULL ?
			    "expected a Quantity (such as 1, 500m or 1.5)" : why,
			    weft_vdoc_got(w, buf, sizeof(buf)));
			return -1;
		}
		return 0;
	}
	if (json_object_is_type(w, json_type_int)) {
		n = json_object_get_int64(w);
		if (n >= 0 && (uint64_t)n <= SMI_MAX_WEIGHT) {
			*out = (uint64_t)n;
			return 0;
		}
	} else if (json_object_is_type(w, json_type_double)) {
		/* the CRD types it "number": 3.0 is the whole number 3 */
		d = json_object_get_double(w);
		if (d >= 0 && d <= (double)SMI_MAX_WEIGHT && d == (double)
		    (uint64_t)d) {
			*out = (uint64_t)d;
			return 0;
		}
	}
	weft_vdoc_err(v, path, "expected a whole number 0-%" PRIu32 " (A-15)%s, "
	    "got %s", SMI_MAX_WEIGHT, json_object_is_type(w, json_type_string) ?
	    "; Quantities such as \"500m\" are " SMI_SPLIT "/v1alpha1 only" :
	    "", weft_vdoc_got(w, buf, sizeof(buf)));
	return -1;
}

/* spec.service: "name", "name.ns", "name.ns.svc" or
 * "name.ns.svc.<domain>" with ns the split's namespace, reduced to name.
 * Returns the name (malloc'd), or NULL with *bad set (reported) or on
 * allocation failure. */
static char *
smi_root_service(struct vdoc *v, const char *s, const char *ns, bool *bad)
{
	const char *dot = strchr(s, '.'), *rest;
	size_t nslen = strlen(ns);
	char *name;

	*bad = true;
	if (dot != NULL) {
		/* ".ns", then nothing, ".svc" or ".svc.<domain>" */
		if (strncmp(dot + 1, ns, nslen) != 0)
			goto fail;
		rest = dot + 1 + nslen;
		if (*rest != '\0' && strcmp(rest, ".svc") != 0 &&
		    (strncmp(rest, ".svc.", 5) != 0 ||
		    !weft_name_is_dns_subdomain(rest + 5)))
			goto fail;
	}
	if ((name = strndup(s, dot != NULL ? (size_t)(dot - s) :
	    strlen(s))) == NULL) {
		*bad = false;
		return NULL;
	}
	if (!weft_name_is_dns_label(name)) {
		free(name);
		goto fail;
	}
	*bad = false;
	return name;
fail:
	weft_vdoc_err(v, "spec.service", "expected a Service of namespace %s: "
	    "name, name.%s, name.%s.svc or name.%s.svc.<domain> (A-14), got "
	    "\"%s\"", ns, ns, ns, ns, s);
	return NULL;
}

/* metadata.creationTimestamp: RFC 3339 ("2024-05-01T12:00:30Z"), into
 * Unix seconds.  Returns 0 or -1. */
static int
smi_time(const char *s, int64_t *out)
{
	struct tm tm;
	const char *p;
	int off = 0, hh, mm;
	time_t t;

	memset(&tm, 0, sizeof(tm));
	if ((p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return -1;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z')
		p++;
	else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &hh,
	    &mm) == 2 && strlen(p) == 6 && p[3] == ':') {
		off = (hh * 60 + mm) * 60 * (*p == '-' ? -1 : 1);
		p += 6;
	} else
		return -1;
	if (*p != '\0' || (t = timegm(&tm)) == (time_t)-1)
		return -1;
	*out = (int64_t)t - off;
	return 0;
}

int
weft_smi_split_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	struct weft_snapshot *all = &b->m->all;
	struct weft_smi_split sp;
	struct weft_smi_origin org;
	struct json_object *spec, *a, *e;
	const char *s, *kind, *gname;
	char p[256], buf[80];
	uint64_t g = 0, w;
	size_t i, n, nzero = 0;
	bool oom = false, bad;
	size_t nw;
	int ver, r;

	memset(&sp, 0, sizeof(sp));
	nw = v->errs->n_warnings;
	if ((ver = smi_version(v, o, SMI_SPLIT, 1, 4)) == -1)
		return 0;
	if (weft_vdoc_str(v, weft_vdoc_field(o, "metadata"),
	    "creationTimestamp",
	    "metadata.creationTimestamp", &s) == 1 &&
	    smi_time(s, &sp.created) == -1)
		weft_vdoc_err(v, "metadata.creationTimestamp", "expected an "
		    "RFC 3339 time (such as 2024-05-01T12:00:30Z), got %s",
		    weft_vdoc_got(weft_vdoc_field(weft_vdoc_field(o,
		    "metadata"),
		    "creationTimestamp"), buf, sizeof(buf)));
	if (weft_vdoc_obj(v, o, "spec", "spec", &spec) == 0)
		weft_vdoc_err(v, "spec", "required");
	if (spec == NULL)
		goto skip;

	if (s_req_str(v, spec, "service", "spec.service", &s) == 1) {
		sp.service = smi_root_service(v, s, ns, &bad);
		if (sp.service == NULL && !bad)
			goto oom;
	}

	if ((r = weft_vdoc_arr(v, spec, "backends", "spec.backends", &a,
	    &n)) == 0)
		weft_vdoc_err(v, "spec.backends", "required");
	else if (r == 1 && n == 0)
		weft_vdoc_err(v, "spec.backends", "expected at least one "
		    "backend");
	if (n > 0 && (sp.backends = calloc(n, sizeof(*sp.backends))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		snprintf(p, sizeof(p), "spec.backends[%zu]", i);
		e = json_object_array_get_idx(a, i);
		if (weft_vdoc_type(v, e, p, json_type_object,
		    "an object") != 1) {
			if (e == NULL)
				weft_vdoc_err(v, p, "expected an object, got "
				    "null");
			continue;
		}
		snprintf(p, sizeof(p), "spec.backends[%zu].service", i);
		r = s_req_name(v, e, "service", p, weft_name_is_dns_label, &s);
		snprintf(p, sizeof(p), "spec.backends[%zu].weight", i);
		if (smi_weight(v, weft_vdoc_field(e, "weight"), p, ver,
		    &w) == -1 ||
		    r == -1)
			continue;
		if (sp.service != NULL && strcmp(s, sp.service) == 0)
			weft_vdoc_warn(v, p, "the root service is its own "
			    "backend: it is used as a plain Service, without "
			    "recursion (A-16)");
		if ((sp.backends[sp.n_backends].service = strdup(s)) == NULL)
			goto oom;
		sp.backends[sp.n_backends++].weight = w;
		g = smi_gcd(g, w);
		if (w == 0)
			nzero++;
	}
	/* §8.3: milli-units reduced by their GCD, so {1, 500m} is {2, 1} */
	for (i = 0; ver == 1 && g > 1 && i < sp.n_backends; i++)
		sp.backends[i].weight /= g;
	for (i = 0; ver == 1 && i < sp.n_backends; i++)
		if (sp.backends[i].weight > SMI_MAX_WEIGHT) {
			snprintf(p, sizeof(p), "spec.backends[%zu].weight", i);
			weft_vdoc_err(v, p, "weight too large: %" PRIu64
			    " after reduction to whole numbers (at most %"
			    PRIu32 ")", sp.backends[i].weight, SMI_MAX_WEIGHT);
		}
	if (sp.n_backends > 0 && nzero == sp.n_backends && !VBAD(v))
		weft_vdoc_warn(v, "spec.backends", "every weight is 0: "
		    "requests for the service get 503 (A-15)");

	if ((e = weft_vdoc_field(spec, "matches")) != NULL && ver < 3)
		/* a split limited to some requests must not become a
		 * catch-all */
		weft_vdoc_err(v, "spec.matches", "not a field of " SMI_SPLIT
		    "/v1alpha%d (matches came in v1alpha3)", ver);
	else if (weft_vdoc_arr(v, spec, "matches", "spec.matches", &a,
	    &n) == 1) {
		for (i = 0; i < n; i++) {
			snprintf(p, sizeof(p), "spec.matches[%zu]", i);
			e = json_object_array_get_idx(a, i);
			if (weft_vdoc_type(v, e, p, json_type_object,
			    "an object") != 1) {
				if (e == NULL)
					weft_vdoc_err(v, p, "expected an "
					    "object, got null");
				continue;
			}
			snprintf(p, sizeof(p), "spec.matches[%zu].kind", i);
			if (s_req_str(v, e, "kind", p, &kind) == 1 &&
			    strcmp(kind, "HTTPRouteGroup") != 0)
				weft_vdoc_err(v, p, "expected HTTPRouteGroup, "
				    "got %s", weft_vdoc_got(weft_vdoc_field(e,
				    "kind"),
				    buf, sizeof(buf)));
			snprintf(p, sizeof(p), "spec.matches[%zu].name", i);
			if (s_req_name(v, e, "name", p,
			    weft_name_is_dns_subdomain, &gname) == -1 ||
			    VBAD(v))
				continue;
			if (strv_push(&sp.match_groups, &sp.n_match_groups,
			    gname) == -1)
				goto oom;
		}
	}

	if (VBAD(v))
		goto skip;
	if ((r = smi_unique(b, v, smi_kind_split, ns, name)) == -1)
		goto oom;
	if (r == 0)
		goto skip;
	sp.namespace = weft_vdoc_strdup(ns, &oom);
	sp.name = weft_vdoc_strdup(name, &oom);
	if (oom || smi_origin(v, "spec.", &org) == -1)
		goto oom;
	if (smi_grow((void **)&all->splits, &b->split_origins, &b->cap_splits,
	    all->n_splits, sizeof(sp)) == -1) {
		free(org.file);
		goto oom;
	}
	b->split_origins[all->n_splits] = org;
	all->splits[all->n_splits++] = sp;
	return 0;
skip:
	if (VBAD(v))
		smi_warnings_drop(v, nw);
	weft_smi_split_clear(&sp);
	return 0;
oom:
	weft_smi_split_clear(&sp);
	return -1;
}

/* --- across objects ------------------------------------------------------------------ */

/* A reporting context for an object already in the model. */
static void
smi_vdoc(struct vdoc *v, struct weft_errors *errs,
    const struct weft_smi_origin *o, const char *kind, const char *ns,
    const char *name)
{
	memset(v, 0, sizeof(*v));
	v->errs = errs;
	v->file = o->file;
	v->doc = o->doc;
	snprintf(v->prefix, sizeof(v->prefix), "%s", o->prefix);
	snprintf(v->what, sizeof(v->what), "%s %s/%s", kind, ns, name);
}

/* A-17 order: earlier creationTimestamp first, then name. */
static bool
smi_split_before(const struct weft_smi_split *a, const struct weft_smi_split *b)
{
	if (a->created != b->created)
		return a->created < b->created;
	return strcmp(a->name, b->name) < 0;
}

static int
smi_nsname_cmp(const char *ns1, const char *n1, const char *ns2,
    const char *n2)
{
	int r = strcmp(ns1, ns2);

	return r != 0 ? r : strcmp(n1, n2);
}

static int
smi_target_cmp(const void *a, const void *b)
{
	const struct weft_smi_target *x = a, *y = b;

	return smi_nsname_cmp(x->namespace, x->name, y->namespace, y->name);
}

static int
smi_group_cmp(const void *a, const void *b)
{
	const struct weft_smi_http_route_group *x = a, *y = b;

	return smi_nsname_cmp(x->namespace, x->name, y->namespace, y->name);
}

static int
smi_l4_cmp(const void *a, const void *b)
{
	const struct weft_smi_l4_route *x = a, *y = b;

	return smi_nsname_cmp(x->namespace, x->name, y->namespace, y->name);
}

static int
smi_split_cmp(const void *a, const void *b)
{
	const struct weft_smi_split *x = a, *y = b;

	return smi_nsname_cmp(x->namespace, x->name, y->namespace, y->name);
}

int
weft_smi_finish(struct weft_builder *b, struct weft_errors *errs)
{
	struct weft_snapshot *all = &b->m->all;
	const struct weft_smi_split *keep;
	struct weft_smi_target *t;
	struct weft_smi_split *sp;
	struct vdoc v;
	size_t i, j, k;
	bool *loser = NULL;

	/* a target in another namespace than its destination is
	 * spec-compatible, but lets a client team grant itself access */
	for (i = k = 0; i < all->n_targets; i++) {
		t = &all->targets[i];
		if (b->opts->strict_target_namespace &&
		    strcmp(t->namespace, t->destination.namespace) != 0) {
			smi_vdoc(&v, errs, &b->target_origins[i],
			    "TrafficTarget", t->namespace, t->name);
			weft_vdoc_warn(&v, b->target_origins[i].spec[0] ?
			    "spec.destination.namespace" :
			    "destination.namespace", "destination %s/%s is not "
			    "in the target's namespace; ignored "
			    "(--strict-target-namespace, A-7)",
			    t->destination.namespace, t->destination.name);
			weft_smi_target_clear(t);
			free(b->target_origins[i].file);
			continue;
		}
		all->targets[k] = *t;
		b->target_origins[k++] = b->target_origins[i];
	}
	all->n_targets = k;

	/* one split without matches per root service, the earliest;
	 * decided over all candidates before any is removed */
	if (all->n_splits > 0 &&
	    (loser = calloc(all->n_splits, sizeof(*loser))) == NULL)
		return -1;
	for (i = 0; i < all->n_splits; i++) {
		sp = &all->splits[i];
		keep = NULL;
		for (j = 0; sp->n_match_groups == 0 && j < all->n_splits; j++) {
			const struct weft_smi_split *o = &all->splits[j];

			if (j != i && o->n_match_groups == 0 &&
			    strcmp(o->namespace, sp->namespace) == 0 &&
			    strcmp(o->service, sp->service) == 0 &&
			    smi_split_before(o, sp) &&
			    (keep == NULL || smi_split_before(o, keep)))
				keep = o;
		}
		if (keep == NULL)
			continue;
		loser[i] = true;
		smi_vdoc(&v, errs, &b->split_origins[i], "TrafficSplit",
		    sp->namespace, sp->name);
		weft_vdoc_err(&v, "spec.service", "Service \"%s\" already has a "
		    "split without matches, TrafficSplit %s/%s (the earliest by "
		    "creationTimestamp, then name, is kept); ignored (A-17)",
		    sp->service, keep->namespace, keep->name);
	}
	for (i = k = 0; i < all->n_splits; i++) {
		if (loser[i]) {
			weft_smi_split_clear(&all->splits[i]);
			free(b->split_origins[i].file);
			continue;
		}
		all->splits[k] = all->splits[i];
		b->split_origins[k++] = b->split_origins[i];
	}
	all->n_splits = k;
	free(loser);

	if (all->n_targets > 1)
		qsort(all->targets, all->n_targets, sizeof(*all->targets),
		    smi_target_cmp);
	if (all->n_http_route_groups > 1)
		qsort(all->http_route_groups, all->n_http_route_groups,
		    sizeof(*all->http_route_groups), smi_group_cmp);
	if (all->n_tcp_routes > 1)
		qsort(all->tcp_routes, all->n_tcp_routes,
		    sizeof(*all->tcp_routes), smi_l4_cmp);
	if (all->n_udp_routes > 1)
		qsort(all->udp_routes, all->n_udp_routes,
		    sizeof(*all->udp_routes), smi_l4_cmp);
	if (all->n_splits > 1)
		qsort(all->splits, all->n_splits, sizeof(*all->splits),
		    smi_split_cmp);
	weft_smi_builder_clear(b);
	return 0;
}

void
weft_smi_builder_clear(struct weft_builder *b)
{
	size_t i;

	if (b->target_origins != NULL)
		for (i = 0; i < b->m->all.n_targets; i++)
			free(b->target_origins[i].file);
	free(b->target_origins);
	b->target_origins = NULL;
	if (b->split_origins != NULL)
		for (i = 0; i < b->m->all.n_splits; i++)
			free(b->split_origins[i].file);
	free(b->split_origins);
	b->split_origins = NULL;
}
