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

struct weft_builder {
	struct weft_model *m;		/* owned until weft_model_build returns */
	size_t		 cap_nodes, cap_namespaces, cap_pods, cap_services;
	size_t		 cap_sas, cap_others;
	struct weft_seen *seen;		/* owned */
	size_t		 n_seen, cap_seen;
};

/* Record kind/namespace/name from file/doc.  Returns 1 if new, 0 if seen
 * before (*first set to the earlier record), -1 on allocation failure. */
int	weft_builder_seen(struct weft_builder *b, const char *kind,
	    const char *ns, const char *name, const char *file, unsigned doc,
	    const struct weft_seen **first);

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

#endif
