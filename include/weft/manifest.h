/* Kubernetes manifests: loading (YAML or JSON, many documents per file) and
 * validation of the kinds weft understands into a plain model, from which
 * the controller cuts one snapshot per node (weft/snapshot.h).
 *
 * Nothing here prints.  Every problem becomes one message in a
 * struct weft_errors, naming the file, the document (1-based, in file
 * order), the object when known, the field path and the reason:
 *
 *   pods.yaml: document 2 (Pod default/web): spec.nodeName: expected a string, got 42
 *   bad.yaml:3:7: syntax error: mapping values are not allowed in this context
 *
 * An invalid document is skipped; every other document still counts. */
#ifndef WEFT_MANIFEST_H
#define WEFT_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/snapshot.h"

struct json_object;

/* --- error lists ----------------------------------------------------------- */

struct weft_errors {
	char		**msgs;		/* owned, malloc'd strings */
	size_t		 n;
	size_t		 cap;
	/* Warnings: accepted as written, but probably not what was meant
	 * (SMI decisions of SPEC §9).  Same format; they never make a
	 * check fail. */
	char		**warnings;	/* owned, malloc'd strings */
	size_t		 n_warnings;
	size_t		 cap_warnings;
};

/* Append a formatted message; on allocation failure a fixed message is
 * counted instead, so n is always right. */
void	weft_errors_add(struct weft_errors *e, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Append a warning, as weft_errors_add does an error. */
void	weft_errors_warn(struct weft_errors *e, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
/* Free every message and warning; e itself is reusable (not freed). */
void	weft_errors_clear(struct weft_errors *e);

/* --- documents ------------------------------------------------------------- */

struct weft_manifest_doc {
	char		*file;		/* owned: name used in messages */
	unsigned	 index;		/* 1-based document index in file */
	struct json_object *obj;	/* owned reference; never NULL */
};

struct weft_manifest_docs {
	struct weft_manifest_doc *docs;	/* owned */
	size_t		 n;
};

/* Largest manifest file read (bigger files are an error). */
#define WEFT_MANIFEST_MAX_FILE	(16u << 20)

/* Parse buf (len bytes) as the content of a file called name: JSON when name
 * ends in ".json", YAML otherwise.  Appends every non-empty document to docs
 * (empty YAML documents are skipped).  Syntax errors are added to errs with
 * name:line:column; documents before a syntax error are kept, the rest of
 * the file is lost.  A document using an alias or a duplicate key is
 * reported and skipped, and parsing goes on with the next one.  Returns 0,
 * or -1 if a syntax error ended the file early (or allocation failed). */
int	weft_manifest_parse(const char *name, const char *buf, size_t len,
	    struct weft_manifest_docs *docs, struct weft_errors *errs);
/* Read path and parse it as above, naming it name in messages (name is
 * usually the path relative to the source directory).  Returns 0 or -1
 * (unreadable file or syntax error, reported in errs). */
int	weft_manifest_load_file(const char *path, const char *name,
	    struct weft_manifest_docs *docs, struct weft_errors *errs);
/* Whether a directory entry is a manifest: "*.yaml", "*.yml", "*.json",
 * not starting with '.'. */
bool	weft_manifest_is_manifest_name(const char *name);
/* List the manifest names of dir (non-recursive, strcmp order).  Returns
 * a NULL-terminated malloc'd array of malloc'd names, or NULL with errno
 * set.  Free with weft_manifest_names_free(). */
char	**weft_manifest_list_dir(const char *dir);
void	weft_manifest_names_free(char **names);
/* Load every manifest of dir in order.  Returns 0, or -1 when the directory
 * cannot be read (errs says why).  File-level problems are only in errs. */
int	weft_manifest_load_dir(const char *dir, struct weft_manifest_docs *docs,
	    struct weft_errors *errs);
/* Move every document of src to the end of dst (src is left empty).
 * Returns 0 or -1 on allocation failure (src unchanged). */
int	weft_manifest_docs_move(struct weft_manifest_docs *dst,
	    struct weft_manifest_docs *src);
/* Free the documents; docs itself is reusable. */
void	weft_manifest_docs_clear(struct weft_manifest_docs *docs);

/* --- the model ------------------------------------------------------------- */

/* An object of a kind no handler knows (kept for later kinds, e.g. SMI). */
struct weft_model_other {
	char		*api_version;	/* owned */
	char		*kind;		/* owned */
	char		*namespace;	/* owned; NULL when not given */
	char		*name;		/* owned; may be NULL */
	char		*file;		/* owned */
	unsigned	 doc;
	struct json_object *obj;	/* owned reference */
};

struct weft_model_sa {
	char		*namespace;	/* owned */
	char		*name;		/* owned */
};

/* Every valid object of the sources, sorted by (namespace, name).  The
 * snapshot arrays own their contents (weft_snapshot_free semantics);
 * pods include those without an IP and those of every node; the SMI arrays
 * hold every accepted SMI object, normalised (controlplane/smi.c). */
struct weft_model {
	struct weft_snapshot all;	/* generation 0, node_name NULL */
	struct weft_model_sa *sas;	/* owned */
	size_t		 n_sas;
	struct weft_model_other *others; /* owned */
	size_t		 n_others;
	struct weft_snap_pod *view_pods; /* owned array, borrowed contents:
					  * the pods of all with an IP */
	size_t		 n_view_pods;
};

/* Validate docs (borrowed) into a new model.  Invalid documents and
 * duplicates (same kind, namespace and name as an earlier document; the
 * earlier one is kept) are reported in errs and left out.  Namespaces that
 * pods, services or service accounts use without a Namespace object are
 * added as unmeshed, default-mode namespaces.  Returns NULL only on
 * allocation failure. */
struct weft_model *weft_model_build(const struct weft_manifest_docs *docs,
	    struct weft_errors *errs);

/* Choices of the controller's command line that change the model. */
struct weft_model_opts {
	/* leave out TrafficTargets whose namespace differs from their
	 * destination's (reported as warnings). */
	bool		 strict_target_namespace;
};

/* weft_model_build with options; opts NULL means the defaults (all
 * false). */
struct weft_model *weft_model_build_opts(const struct weft_manifest_docs *docs,
	    const struct weft_model_opts *opts, struct weft_errors *errs);
void	weft_model_free(struct weft_model *m);

/* Fill *view with the snapshot for node_name at generation gen: every node,
 * namespace and service, and the pods that have an IP.  The view borrows
 * everything from m (and node_name, trust_domain): never pass it to
 * weft_snapshot_free; it is valid while m lives. */
void	weft_model_view(const struct weft_model *m, const char *node_name,
	    uint64_t gen, const char *trust_domain, struct weft_snapshot *view);

/* Name checks as Kubernetes does them (apimachinery validation). */
bool	weft_name_is_dns_label(const char *s);		/* RFC 1123 label */
bool	weft_name_is_dns_subdomain(const char *s);	/* RFC 1123 subdomain */
bool	weft_name_is_iana_svc(const char *s);		/* IANA_SVC_NAME */

#endif
