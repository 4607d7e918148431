/* The model: every valid object of the sources, and the per-node snapshot
 * view cut from it.  Objects are sorted by (namespace, name) once built, so
 * the snapshot does not depend on file names or document order and an
 * unchanged cluster encodes to unchanged bytes. */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "weft/manifest.h"

#include "model.h"

void
weft_model_free(struct weft_model *m)
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->n_sas; i++) {
		free(m->sas[i].namespace);
		free(m->sas[i].name);
	}
	free(m->sas);
	for (i = 0; i < m->n_others; i++) {
		free(m->others[i].api_version);
		free(m->others[i].kind);
		free(m->others[i].namespace);
		free(m->others[i].name);
		free(m->others[i].file);
		json_object_put(m->others[i].obj);
	}
	free(m->others);
	free(m->view_pods);
	/* all is a malloc'd-contents snapshot embedded in m: free its parts */
	for (i = 0; i < m->all.n_nodes; i++)
		weft_snap_node_clear(&m->all.nodes[i]);
	free(m->all.nodes);
	for (i = 0; i < m->all.n_namespaces; i++)
		weft_snap_namespace_clear(&m->all.namespaces[i]);
	free(m->all.namespaces);
	for (i = 0; i < m->all.n_pods; i++)
		weft_snap_pod_clear(&m->all.pods[i]);
	free(m->all.pods);
	for (i = 0; i < m->all.n_services; i++)
		weft_snap_service_clear(&m->all.services[i]);
	free(m->all.services);
	for (i = 0; i < m->all.n_targets; i++)
		weft_smi_target_clear(&m->all.targets[i]);
	free(m->all.targets);
	for (i = 0; i < m->all.n_http_route_groups; i++)
		weft_smi_http_route_group_clear(&m->all.http_route_groups[i]);
	free(m->all.http_route_groups);
	for (i = 0; i < m->all.n_tcp_routes; i++)
		weft_smi_l4_route_clear(&m->all.tcp_routes[i]);
	free(m->all.tcp_routes);
	for (i = 0; i < m->all.n_udp_routes; i++)
		weft_smi_l4_route_clear(&m->all.udp_routes[i]);
	free(m->all.udp_routes);
	for (i = 0; i < m->all.n_splits; i++)
		weft_smi_split_clear(&m->all.splits[i]);
	free(m->all.splits);
	free(m);
}

/* --- building ----------------------------------------------------------------- */

/* Grow *arr (elements of sz) to hold n + 1. */
static int
grow(void **arr, size_t *cap, size_t n, size_t sz)
{
	size_t ncap;
	void *p;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 16;
	if ((p = reallocarray(*arr, ncap, sz)) == NULL)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

static size_t
seen_hash(const char *kind, const char *ns, const char *name)
{
	const char *parts[3] = { kind, ns, name }, *p;
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */
	size_t i;

	for (i = 0; i < 3; i++) {
		for (p = parts[i]; *p != '\0'; p++) {
			h ^= (unsigned char)*p;
			h *= 1099511628211ULL;
		}
		h ^= 0xff;	/* "a" "bc" differs from "ab" "c" */
		h *= 1099511628211ULL;
	}
	return (size_t)h;
}

/* Double the open-addressing index of b->seen (entries are 1 + the
 * position in b->seen; 0 is empty). */
static int
seen_index_grow(struct weft_builder *b)
{
	size_t nb = b->seen_nb ? b->seen_nb * 2 : 64, i, slot;
	size_t *idx;

	if ((idx = calloc(nb, sizeof(*idx))) == NULL)
		return -1;
	for (i = 0; i < b->n_seen; i++) {
		const struct weft_seen *s = &b->seen[i];

		for (slot = seen_hash(s->kind, s->namespace, s->name) % nb;
		    idx[slot] != 0; slot = (slot + 1) % nb)
			;
		idx[slot] = i + 1;
	}
	free(b->seen_index);
	b->seen_index = idx;
	b->seen_nb = nb;
	return 0;
}

int
weft_builder_seen(struct weft_builder *b, const char *kind, const char *ns,
    const char *name, const char *file, unsigned doc,
    const struct weft_seen **first)
{
	struct weft_seen *s;
	size_t slot;

	/* hashed: a cluster holds thousands of pods, and a linear search
	 * per object made each build quadratic */
	if ((b->n_seen + 1) * 2 > b->seen_nb && seen_index_grow(b) == -1)
		return -1;
	for (slot = seen_hash(kind, ns, name) % b->seen_nb;
	    b->seen_index[slot] != 0; slot = (slot + 1) % b->seen_nb) {
		s = &b->seen[b->seen_index[slot] - 1];
		if (s->kind == kind && strcmp(s->name, name) == 0 &&
		    strcmp(s->namespace, ns) == 0) {
			*first = s;
			return 0;
		}
	}
	if (grow((void **)&b->seen, &b->cap_seen, b->n_seen,
	    sizeof(*b->seen)) == -1)
		return -1;
	s = &b->seen[b->n_seen];
	s->kind = kind;
	s->namespace = strdup(ns);
	s->name = strdup(name);
	s->file = strdup(file);
	s->doc = doc;
	if (s->namespace == NULL || s->name == NULL || s->file == NULL) {
		free(s->namespace);
		free(s->name);
		free(s->file);
		return -1;
	}
	b->n_seen++;
	b->seen_index[slot] = b->n_seen;
	return 1;
}

int
weft_builder_add_node(struct weft_builder *b, struct weft_snap_node *n)
{
	struct weft_snapshot *a = &b->m->all;

	if (grow((void **)&a->nodes, &b->cap_nodes, a->n_nodes,
	    sizeof(*n)) == -1) {
		weft_snap_node_clear(n);
		return -1;
	}
	a->nodes[a->n_nodes++] = *n;
	return 0;
}

int
weft_builder_add_namespace(struct weft_builder *b,
    struct weft_snap_namespace *ns)
{
	struct weft_snapshot *a = &b->m->all;

	if (grow((void **)&a->namespaces, &b->cap_namespaces,
	    a->n_namespaces, sizeof(*ns)) == -1) {
		weft_snap_namespace_clear(ns);
		return -1;
	}
	a->namespaces[a->n_namespaces++] = *ns;
	return 0;
}

int
weft_builder_add_pod(struct weft_builder *b, struct weft_snap_pod *p)
{
	struct weft_snapshot *a = &b->m->all;

	if (grow((void **)&a->pods, &b->cap_pods, a->n_pods,
	    sizeof(*p)) == -1) {
		weft_snap_pod_clear(p);
		return -1;
	}
	a->pods[a->n_pods++] = *p;
	return 0;
}

int
weft_builder_add_service(struct weft_builder *b, struct weft_snap_service *s)
{
	struct weft_snapshot *a = &b->m->all;

	if (grow((void **)&a->services, &b->cap_services, a->n_services,
	    sizeof(*s)) == -1) {
		weft_snap_service_clear(s);
		return -1;
	}
	a->services[a->n_services++] = *s;
	return 0;
}

int
weft_builder_add_sa(struct weft_builder *b, struct weft_model_sa *sa)
{
	struct weft_model *m = b->m;

	if (grow((void **)&m->sas, &b->cap_sas, m->n_sas,
	    sizeof(*sa)) == -1) {
		free(sa->namespace);
		free(sa->name);
		return -1;
	}
	m->sas[m->n_sas++] = *sa;
	return 0;
}

int
weft_builder_add_other(struct weft_builder *b, struct weft_model_other *o)
{
	struct weft_model *m = b->m;

	if (grow((void **)&m->others, &b->cap_others, m->n_others,
	    sizeof(*o)) == -1) {
		free(o->api_version);
		free(o->kind);
		free(o->namespace);
		free(o->name);
		free(o->file);
		json_object_put(o->obj);
		return -1;
	}
	m->others[m->n_others++] = *o;
	return 0;
}

/* --- finishing ---------------------------------------------------------------- */

static int
cmp_nsname(const char *ns1, const char *n1, const char *ns2, const char *n2)
{
	int r = strcmp(ns1, ns2);

	return r != 0 ? r : strcmp(n1, n2);
}

static int
node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct weft_snap_node *)a)->name,
	    ((const struct weft_snap_node *)b)->name);
}

static int
namespace_cmp(const void *a, const void *b)
{
	return strcmp(((const struct weft_snap_namespace *)a)->name,
	    ((const struct weft_snap_namespace *)b)->name);
}

static int
pod_cmp(const void *a, const void *b)
{
	const struct weft_snap_pod *x = a, *y = b;

	return cmp_nsname(x->namespace, x->name, y->namespace, y->name);
}

static int
service_cmp(const void *a, const void *b)
{
	const struct weft_snap_service *x = a, *y = b;

	return cmp_nsname(x->namespace, x->name, y->namespace, y->name);
}

static int
sa_cmp(const void *a, const void *b)
{
	const struct weft_model_sa *x = a, *y = b;

	return cmp_nsname(x->namespace, x->name, y->namespace, y->name);
}

/* A namespace used by an object but not declared: it exists, unmeshed,
 * with default modes. */
static int
implicit_namespace(struct weft_builder *b, const char *name)
{
	struct weft_snap_namespace ns;

	if (weft_snapshot_namespace(&b->m->all, name) != NULL)
		return 0;
	memset(&ns, 0, sizeof(ns));
	if ((ns.name = strdup(name)) == NULL)
		return -1;
	return weft_builder_add_namespace(b, &ns);
}

static int
model_finish(struct weft_builder *b, struct weft_errors *errs)
{
	struct weft_model *m = b->m;
	struct weft_snapshot *a = &m->all;
	const struct weft_snap_namespace *ns;
	size_t i;

	for (i = 0; i < a->n_pods; i++)
		if (implicit_namespace(b, a->pods[i].namespace) == -1)
			return -1;
	for (i = 0; i < a->n_services; i++)
		if (implicit_namespace(b, a->services[i].namespace) == -1)
			return -1;
	for (i = 0; i < m->n_sas; i++)
		if (implicit_namespace(b, m->sas[i].namespace) == -1)
			return -1;
	if (a->n_nodes)
		qsort(a->nodes, a->n_nodes, sizeof(*a->nodes), node_cmp);
	if (a->n_namespaces)
		qsort(a->namespaces, a->n_namespaces, sizeof(*a->namespaces),
		    namespace_cmp);
	if (a->n_pods)
		qsort(a->pods, a->n_pods, sizeof(*a->pods), pod_cmp);
	if (a->n_services)
		qsort(a->services, a->n_services, sizeof(*a->services),
		    service_cmp);
	if (m->n_sas)
		qsort(m->sas, m->n_sas, sizeof(*m->sas), sa_cmp);
	if (weft_smi_finish(b, errs) == -1)
		return -1;
	weft_slice_eps_apply(b);
	for (i = 0; i < a->n_pods; i++) {
		ns = weft_snapshot_namespace(a, a->pods[i].namespace);
		a->pods[i].meshed = ns != NULL && ns->meshed;
	}
	if (a->n_pods > 0 &&
	    (m->view_pods = calloc(a->n_pods, sizeof(*m->view_pods))) == NULL)
		return -1;
	for (i = 0; i < a->n_pods; i++)
		if (a->pods[i].ip.family != 0)
			m->view_pods[m->n_view_pods++] = a->pods[i];
	return 0;
}

struct weft_model *
weft_model_build(const struct weft_manifest_docs *docs,
    struct weft_errors *errs)
{
	return weft_model_build_opts(docs, NULL, errs);
}

struct weft_model *
weft_model_build_opts(const struct weft_manifest_docs *docs,
    const struct weft_model_opts *opts, struct weft_errors *errs)
{
	static const struct weft_model_opts defaults;
	struct weft_builder b;
	size_t i;
	int rc = 0;

	memset(&b, 0, sizeof(b));
	b.opts = opts != NULL ? opts : &defaults;
	if ((b.m = calloc(1, sizeof(*b.m))) == NULL)
		return NULL;
	for (i = 0; rc == 0 && i < docs->n; i++)
		rc = weft_objects_add_doc(&b, &docs->docs[i], errs);
	if (rc == 0)
		rc = model_finish(&b, errs);
	for (i = 0; i < b.n_seen; i++) {
		free(b.seen[i].namespace);
		free(b.seen[i].name);
		free(b.seen[i].file);
	}
	free(b.seen);
	free(b.seen_index);
	weft_smi_builder_clear(&b);
	weft_slice_eps_truncate(&b, 0);
	free(b.slice_eps);
	if (rc == -1) {
		weft_model_free(b.m);
		return NULL;
	}
	return b.m;
}

void
weft_model_view(const struct weft_model *m, const char *node_name,
    uint64_t gen, const char *trust_domain, struct weft_snapshot *view)
{
	*view = m->all;
	view->generation = gen;
	/* the view only borrows: these casts never lead to a write or free */
	view->node_name = (char *)(uintptr_t)node_name;
	view->trust_domain = (char *)(uintptr_t)trust_domain;
	view->pods = m->view_pods;
	view->n_pods = m->n_view_pods;
	/* the SMI arrays (targets ... splits) come with *view = m->all:
	 * every namespace's objects, borrowed like the rest */
}
