/* Private to controlplane/: the model under construction, shared by the
 * kind handlers (objects.c) and the model's assembly (model.c). */
#ifndef WEFT_CONTROLPLANE_MODEL_H
#define WEFT_CONTROLPLANE_MODEL_H

#include "weft/manifest.h"

/* Where an object came from, for duplicate messages. */
struct weft_seen {
	const char	*kind;		/* static string from the kind table */
	char		*namespace;	/* owned; "" for cluster-scoped */
	char		*name;		/* owned */
	char		*file;		/* owned */
	unsigned	 doc;
};

/* Where an SMI object came from, for the checks that span objects (A-7,
 * A-17), which run after every document has been read. */
struct weft_smi_origin {
	char		*file;		/* owned */
	unsigned	 doc;
	char		 prefix[32];	/* "items[3]." inside a List, else "" */
	const char	*spec;		/* "spec." or "" (access v1alpha1) */
};

/* An EndpointSlice endpoint that names a pod (endpointslice.c). */
struct weft_slice_ep {
	char		*namespace;	/* owned */
	char		*pod;		/* owned */
	bool		 ready;
};

struct weft_builder {
	struct weft_model *m;		/* owned until weft_model_build returns */
	const struct weft_model_opts *opts; /* borrowed; never NULL */
	size_t		 cap_nodes, cap_namespaces, cap_pods, cap_services;
	size_t		 cap_sas, cap_others;
	struct weft_seen *seen;		/* owned */
	size_t		 n_seen, cap_seen;
	size_t		*seen_index;	/* owned: hash of seen (model.c) */
	size_t		 seen_nb;
	/* SMI (smi.c): capacities of m->all's arrays; the origins are
	 * parallel to m->all.targets and m->all.splits until
	 * weft_smi_finish() */
	size_t		 cap_targets, cap_http_route_groups, cap_tcp_routes;
	size_t		 cap_udp_routes, cap_splits;
	struct weft_smi_origin *target_origins;	/* owned */
	struct weft_smi_origin *split_origins;	/* owned */
	/* EndpointSlice endpoints naming pods, applied by model_finish */
	struct weft_slice_ep *slice_eps;	/* owned */
	size_t		 n_slice_eps, cap_slice_eps;
};

/* Per-document reporting context of the kind handlers. */
struct vdoc {
	struct weft_errors *errs;
	const char	*file;
	unsigned	 doc;
	char		 prefix[32];	/* "items[3]." inside a List, else "" */
	char		 what[320];	/* "Pod default/web", "" until known */
	int		 nerr;		/* errors reported */
	int		 nsoft;		/* of which: parts dropped, object kept */
};

/* Whether the document had an error that invalidates it as a whole. */
#define VBAD(v)	((v)->nerr > (v)->nsoft)

/* Report an error (counted in v->nerr) or a warning about field path of
 * the document ("file: document N (what): prefix+path: message"). */
void	weft_vdoc_err(struct vdoc *v, const char *path, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
void	weft_vdoc_warn(struct vdoc *v, const char *path, const char *fmt, ...)
	    __attribute__((format(printf, 3, 4)));
/* How a value is shown after "got" in messages (JSON text for scalars, a
 * word for containers); returns buf or a static string. */
const char *weft_vdoc_got(struct json_object *o, char *buf, size_t len);

/* Fields (objects.c).  The value of key in o, or NULL when absent or null
 * (Kubernetes treats an explicit null like an absent field). */
struct json_object *weft_vdoc_field(struct json_object *o, const char *key);
/* Typed getters: 1 present and of type t (expected names it in the error),
 * 0 absent, -1 wrong type (reported at path). */
int	weft_vdoc_type(struct vdoc *v, struct json_object *val,
	    const char *path, enum json_type t, const char *expected);
int	weft_vdoc_str(struct vdoc *v, struct json_object *o, const char *key,
	    const char *path, const char **out);
int	weft_vdoc_obj(struct vdoc *v, struct json_object *o, const char *key,
	    const char *path, struct json_object **out);
int	weft_vdoc_arr(struct vdoc *v, struct json_object *o, const char *key,
	    const char *path, struct json_object **out, size_t *n);
/* strdup(s), NULL for NULL; *oom set when out of memory. */
char	*weft_vdoc_strdup(const char *s, bool *oom);

/* Record kind/namespace/name from file/doc.  Returns 1 if new, 0 if seen
 * before (*first set to the earlier record), -1 on allocation failure. */
int	weft_builder_seen(struct weft_builder *b, const char *kind,
	    const char *ns, const char *name, const char *file, unsigned doc,
	    const struct weft_seen **first);

/* EndpointSlice (endpointslice.c): the kind handler; readiness of the
 * pods the slices name applied to b->m (after the pods are sorted); the
 * recorded endpoints freed down to n. */
int	weft_endpointslice_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
void	weft_slice_eps_apply(struct weft_builder *b);
void	weft_slice_eps_truncate(struct weft_builder *b, size_t n);

/* Append an object, taking ownership of what it points to (on failure it
 * is freed).  Return 0, or -1 on allocation failure. */
int	weft_builder_add_node(struct weft_builder *b, struct weft_snap_node *n);
int	weft_builder_add_namespace(struct weft_builder *b,
	    struct weft_snap_namespace *ns);
int	weft_builder_add_pod(struct weft_builder *b, struct weft_snap_pod *p);
int	weft_builder_add_service(struct weft_builder *b,
	    struct weft_snap_service *s);
int	weft_builder_add_sa(struct weft_builder *b, struct weft_model_sa *sa);
int	weft_builder_add_other(struct weft_builder *b,
	    struct weft_model_other *o);

/* weft_snap_*_clear() and weft_labels_clear() are in weft/snapshot.h. */

/* Validate one document (a List is expanded) into b, reporting into errs.
 * Returns 0, or -1 on allocation failure. */
int	weft_objects_add_doc(struct weft_builder *b,
	    const struct weft_manifest_doc *doc, struct weft_errors *errs);

/* Kind handlers of the SMI groups (smi.c), rows of objects.c's
 * kind_handlers[]: each checks the apiVersion itself (several versions are
 * accepted) and adds the object normalised, or reports why not.  Return 0,
 * or -1 on allocation failure. */
int	weft_smi_target_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
int	weft_smi_http_route_group_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
int	weft_smi_tcp_route_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
int	weft_smi_udp_route_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
int	weft_smi_split_add(struct weft_builder *b, struct vdoc *v,
	    struct json_object *o, const char *ns, const char *name);
/* After every document: the checks across objects (A-7 with
 * b->opts->strict_target_namespace, A-17), then sort the SMI arrays and
 * free the origins.  Returns 0 or -1 on allocation failure. */
int	weft_smi_finish(struct weft_builder *b, struct weft_errors *errs);
/* Free what the builder holds for SMI (the origins); idempotent. */
void	weft_smi_builder_clear(struct weft_builder *b);

#endif
