/* EndpointSlice (discovery.k8s.io/v1): where endpoint readiness comes from
 * in a cluster.
 *
 * The model computes a service's endpoints from its selector (as the
 * EndpointSlice controller does); slices contribute what only the
 * cluster knows, whether each endpoint is ready.  An endpoint whose
 * targetRef names a Pod marks that pod: it is ready only if every slice
 * endpoint naming it is ready (conditions.ready; absent means ready, as
 * the API documents).  A pod no slice names keeps the readiness the pod
 * itself gives (an IP and no deletionTimestamp), which is all a manifest
 * directory has. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/manifest.h"

#include "model.h"

static struct json_object *
eps_field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* Report o[key] when present and not of type t; returns the value when it
 * has that type, else NULL. */
static struct json_object *
eps_typed(struct vdoc *v, struct json_object *o, const char *key,
    const char *path, enum json_type t, const char *expected)
{
	struct json_object *val = eps_field(o, key);
	char buf[80];

	if (val == NULL)
		return NULL;
	if (!json_object_is_type(val, t)) {
		weft_vdoc_err(v, path, "expected %s, got %s", expected,
		    weft_vdoc_got(val, buf, sizeof(buf)));
		return NULL;
	}
	return val;
}

static int
eps_grow(struct weft_builder *b)
{
	struct weft_slice_ep *n;
	size_t cap;

	if (b->n_slice_eps < b->cap_slice_eps)
		return 0;
	cap = b->cap_slice_eps ? b->cap_slice_eps * 2 : 16;
	if ((n = reallocarray(b->slice_eps, cap, sizeof(*n))) == NULL)
		return -1;
	b->slice_eps = n;
	b->cap_slice_eps = cap;
	return 0;
}

int
weft_endpointslice_add(struct weft_builder *b, struct vdoc *v,
    struct json_object *o, const char *ns, const char *name)
{
	struct json_object *at, *eps, *ep, *cond, *ready, *ref, *s;
	const struct weft_seen *first;
	const char *rkind, *rname, *rns;
	char path[128], buf[80];
	size_t i, n, start = b->n_slice_eps;
	int r;

	if ((at = eps_typed(v, o, "addressType", "addressType",
	    json_type_string, "a string")) == NULL && eps_field(o,
	    "addressType") == NULL)
		weft_vdoc_err(v, "addressType", "required");
	else if (at != NULL && strcmp(json_object_get_string(at), "IPv4") != 0 &&
	    strcmp(json_object_get_string(at), "IPv6") != 0 &&
	    strcmp(json_object_get_string(at), "FQDN") != 0)
		weft_vdoc_err(v, "addressType", "expected IPv4, IPv6 or FQDN, "
		    "got %s", weft_vdoc_got(at, buf, sizeof(buf)));
	eps = eps_typed(v, o, "endpoints", "endpoints", json_type_array,
	    "an array");
	n = eps ? json_object_array_length(eps) : 0;
	for (i = 0; i < n; i++) {
		ep = json_object_array_get_idx(eps, i);
		snprintf(path, sizeof(path), "endpoints[%zu]", i);
		if (!json_object_is_type(ep, json_type_object)) {
			weft_vdoc_err(v, path, "expected an object, got %s",
			    weft_vdoc_got(ep, buf, sizeof(buf)));
			continue;
		}
		snprintf(path, sizeof(path), "endpoints[%zu].conditions", i);
		cond = eps_typed(v, ep, "conditions", path, json_type_object,
		    "an object");
		snprintf(path, sizeof(path), "endpoints[%zu].conditions.ready",
		    i);
		ready = eps_typed(v, cond, "ready", path, json_type_boolean,
		    "true or false");
		snprintf(path, sizeof(path), "endpoints[%zu].targetRef", i);
		if ((ref = eps_typed(v, ep, "targetRef", path,
		    json_type_object, "an object")) == NULL)
			continue;
		rkind = rname = NULL;
		rns = ns;
		if ((s = eps_field(ref, "kind")) != NULL &&
		    json_object_is_type(s, json_type_string))
			rkind = json_object_get_string(s);
		if ((s = eps_field(ref, "name")) != NULL &&
		    json_object_is_type(s, json_type_string))
			rname = json_object_get_string(s);
		if ((s = eps_field(ref, "namespace")) != NULL &&
		    json_object_is_type(s, json_type_string))
			rns = json_object_get_string(s);
		if (rkind == NULL || strcmp(rkind, "Pod") != 0 || rname == NULL)
			continue;
		if (eps_grow(b) == -1)
			goto oom;
		b->slice_eps[b->n_slice_eps].namespace = strdup(rns);
		b->slice_eps[b->n_slice_eps].pod = strdup(rname);
		b->slice_eps[b->n_slice_eps].ready = ready == NULL ||
		    json_object_get_boolean(ready);
		b->n_slice_eps++;
		if (b->slice_eps[b->n_slice_eps - 1].namespace == NULL ||
		    b->slice_eps[b->n_slice_eps - 1].pod == NULL)
			goto oom;
	}
	if (VBAD(v))
		goto drop;
	if ((r = weft_builder_seen(b, "EndpointSlice", ns, name, v->file,
	    v->doc, &first)) == -1)
		goto oom;
	if (r == 0) {
		weft_vdoc_err(v, "metadata.name", "duplicate %s, first defined "
		    "in %s document %u; ignored", v->what, first->file,
		    first->doc);
		goto drop;
	}
	return 0;
drop:
	weft_slice_eps_truncate(b, start);
	return 0;
oom:
	weft_slice_eps_truncate(b, start);
	return -1;
}

void
weft_slice_eps_truncate(struct weft_builder *b, size_t n)
{
	while (b->n_slice_eps > n) {
		b->n_slice_eps--;
		free(b->slice_eps[b->n_slice_eps].namespace);
		free(b->slice_eps[b->n_slice_eps].pod);
	}
}

static int
slice_ep_cmp(const void *a, const void *b)
{
	const struct weft_slice_ep *x = a, *y = b;
	int r = strcmp(x->namespace, y->namespace);

	return r != 0 ? r : strcmp(x->pod, y->pod);
}

void
weft_slice_eps_apply(struct weft_builder *b)
{
	struct weft_snapshot *a = &b->m->all;
	struct weft_slice_ep key, *e;
	size_t i;

	if (b->n_slice_eps == 0)
		return;
	qsort(b->slice_eps, b->n_slice_eps, sizeof(*b->slice_eps),
	    slice_ep_cmp);
	for (i = 0; i < a->n_pods; i++) {
		struct weft_snap_pod *p = &a->pods[i];

		key.namespace = p->namespace;
		key.pod = p->name;
		if ((e = bsearch(&key, b->slice_eps, b->n_slice_eps,
		    sizeof(*b->slice_eps), slice_ep_cmp)) == NULL)
			continue;
		/* bsearch lands on any of the equal entries: back to the
		 * first, then every one must say ready */
		while (e > b->slice_eps && slice_ep_cmp(e - 1, &key) == 0)
			e--;
		for (; e < b->slice_eps + b->n_slice_eps &&
		    slice_ep_cmp(e, &key) == 0; e++)
			if (!e->ready)
				p->ready = false;
	}
}
