/* The Kubernetes API, as the controller uses it (--source kubernetes):
 * a small HTTP/1.1 client on the controller's event loop, the source that
 * lists and watches the kinds weft models, leader election on a Lease,
 * and TokenReview for the nodes' service-account tokens.
 *
 * Everything runs on one libevent loop and never blocks: requests are
 * non-blocking connections (TLS through bufferevent_openssl), responses are
 * parsed incrementally (llhttp: chunked transfer coding, bodies until EOF),
 * and watch streams are decoded event by event (json-c's streaming
 * tokener).  Callbacks run from the event loop, never from inside the call
 * that started the request.
 *
 * Conventions: functions returning int return 0 or -1; constructors
 * return NULL and set *err (malloc'd, the caller frees) when they fail. */
#ifndef WEFT_KUBE_H
#define WEFT_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/manifest.h"

struct event_base;
struct json_object;

/* --- connection settings ---------------------------------------------------- */

/* The service account of an in-cluster pod; WEFT_SERVICEACCOUNT_DIR
 * replaces it (tests). */
#define WEFT_KUBE_SA_DIR	"/var/run/secrets/kubernetes.io/serviceaccount"

struct weft_kube_config {
	char		*server;	/* owned: "https://host:port" */
	char		*ca_file;	/* owned; NULL: see ca_pem */
	char		*ca_pem;	/* owned: PEM text; NULL: see ca_file */
	bool		 insecure;	/* insecure-skip-tls-verify */
	char		*tls_server_name; /* owned; NULL: the server's host */
	char		*token;		/* owned: a fixed bearer token */
	char		*token_file;	/* owned: re-read when it changes
					 * (projected tokens rotate) */
	char		*cert_pem;	/* owned: client certificate (PEM) */
	char		*key_pem;	/* owned: its key (PEM) */
	char		*namespace;	/* owned: the pod's (in-cluster) or the
					 * context's namespace; may be NULL */
};

/* The pod's own service account: KUBERNETES_SERVICE_HOST/_PORT, the
 * token, CA bundle and namespace in WEFT_KUBE_SA_DIR.  Returns 0, or -1
 * with *err. */
int	weft_kube_config_in_cluster(struct weft_kube_config *cfg, char **err);
/* A kubeconfig file: context (NULL: current-context), its cluster
 * (server, certificate-authority[-data], insecure-skip-tls-verify,
 * tls-server-name) and user (token, tokenFile, client-certificate[-data],
 * client-key[-data]).  Relative paths are relative to the file's
 * directory.  exec and auth-provider users are refused.  Returns 0, or -1
 * with *err. */
int	weft_kube_config_load(const char *path, const char *context,
	    struct weft_kube_config *cfg, char **err);
void	weft_kube_config_clear(struct weft_kube_config *cfg);

/* --- requests ------------------------------------------------------------------ */

struct weft_kube;
struct weft_kube_req;

/* An API client for cfg (copied).  NULL with *err. */
struct weft_kube *weft_kube_new(struct event_base *base,
	    const struct weft_kube_config *cfg, char **err);
/* Cancels every request still open (their callbacks are not called). */
void	weft_kube_free(struct weft_kube *k);
const char *weft_kube_server(const struct weft_kube *k);
/* The namespace of the configuration (may be NULL). */
const char *weft_kube_namespace(const struct weft_kube *k);

struct weft_kube_resp {
	int		 status;	/* HTTP status; 0: no complete response */
	struct json_object *body;	/* borrowed for the call: the body
					 * parsed, or NULL (empty, not JSON, or
					 * streamed to on_event) */
	const char	*error;		/* why there is no (complete) response;
					 * NULL when status is set */
};

/* The request ended: called once, unless the request was cancelled. */
typedef void (*weft_kube_done_cb)(const struct weft_kube_resp *resp,
	    void *arg);
/* Streaming (watch): each JSON value of a 200 response's body, in order.
 * obj is borrowed for the call (take a reference to keep it).  May call
 * weft_kube_cancel() on its own request, and nothing else that frees. */
typedef void (*weft_kube_event_cb)(struct json_object *obj, void *arg);

/* Send method path (absolute path with query) with an optional JSON body.
 * timeout: seconds without any byte from the server (connection included)
 * before the request fails.  With on_event, a 200 body is streamed to it
 * and done gets body NULL; other statuses, and every status without
 * on_event, collect the body (at most 256 MiB).  Returns a handle, or NULL
 * when the request could not even be queued (then no callback runs). */
struct weft_kube_req *weft_kube_request(struct weft_kube *k,
	    const char *method, const char *path, const char *content_type,
	    const char *body, int timeout, weft_kube_event_cb on_event,
	    weft_kube_done_cb done, void *arg);
/* Abandon a request: no callback runs any more.  NULL is fine. */
void	weft_kube_cancel(struct weft_kube_req *r);

/* The "message" of a Status body, else a short description of resp.
 * Writes into buf and returns it. */
const char *weft_kube_resp_why(const struct weft_kube_resp *resp, char *buf,
	    size_t len);

/* --- TokenReview (authentication.k8s.io/v1) ---------------------------------- */

struct weft_kube_review {
	bool		 authenticated;
	const char	*username;	/* "system:serviceaccount:NS:NAME" */
	const char	*pod_name;	/* extra authentication.kubernetes.io/
					 * pod-name; NULL if absent */
	const char	*pod_uid;	/* extra .../pod-uid; NULL if absent */
	const char	*error;		/* status.error, or why the review
					 * could not be made; NULL otherwise */
	bool		 failed;	/* no answer (API unreachable, 5xx...):
					 * says nothing about the token */
};

/* Everything borrowed for the call. */
typedef void (*weft_kube_review_cb)(const struct weft_kube_review *rv,
	    void *arg);

/* Ask the API server whether token is valid for audience (NULL: the API
 * server's own).  A review whose status.audiences does not include
 * audience is reported unauthenticated. */
struct weft_kube_req *weft_kube_token_review(struct weft_kube *k,
	    const char *token, const char *audience, weft_kube_review_cb cb,
	    void *arg);

/* --- node authentication (TokenReview + pod binding) ------------------------ */

struct weft_node_auth;
struct weft_node_auth_wait;

#define WEFT_NODE_AUTH_OK	0
#define WEFT_NODE_AUTH_PENDING	1
#define WEFT_NODE_AUTH_REFUSED	2

/* Node daemons authenticate as service account sa_ns/sa_name with a
 * projected token for audience (NULL or "": the API server's).  k is
 * borrowed.  NULL on allocation failure. */
struct weft_node_auth *weft_node_auth_new(struct weft_kube *k,
	    const char *sa_ns, const char *sa_name, const char *audience);
void	weft_node_auth_free(struct weft_node_auth *a);
/* Which node token speaks for, with pods looked up in m (may be NULL):
 *   WEFT_NODE_AUTH_OK       *node (borrowed from m) is the node of the
 *                           token's pod
 *   WEFT_NODE_AUTH_REFUSED  *code (401, 403 or 503) and why
 *   WEFT_NODE_AUTH_PENDING  a TokenReview is under way; done(arg) runs
 *                           once it is back, and the same call then gets
 *                           the answer from the cache.  *waitp lets the
 *                           caller withdraw (weft_node_auth_cancel). */
int	weft_node_auth_check(struct weft_node_auth *a,
	    const struct weft_model *m, const char *token, const char **node,
	    int *code, char *why, size_t len, void (*done)(void *), void *arg,
	    struct weft_node_auth_wait **waitp);
void	weft_node_auth_cancel(struct weft_node_auth_wait *w);
/* TokenReviews sent so far. */
uint64_t weft_node_auth_reviews(const struct weft_node_auth *a);

/* --- the source ------------------------------------------------------------------ */

struct weft_source_kube;

/* Watches Namespaces, Pods, Services, EndpointSlices, ServiceAccounts,
 * Nodes, and the newest served version of each SMI kind (found through
 * /apis discovery, repeated every minute).  k is borrowed.  changed(arg)
 * runs once every kind has been listed, and after that whenever objects
 * changed (changes are coalesced for up to 100 ms). */
struct weft_source_kube *weft_source_kube_new(struct weft_kube *k,
	    struct event_base *base, void (*changed)(void *), void *arg);
void	weft_source_kube_start(struct weft_source_kube *s);
/* Watches ask for timeoutSeconds of at most seconds (between half and all
 * of it; the default is client-go's 5 to 10 minutes).  Before start. */
void	weft_source_kube_set_watch_timeout(struct weft_source_kube *s,
	    int seconds);
void	weft_source_kube_free(struct weft_source_kube *s);
/* Every kind has been listed at least once. */
bool	weft_source_kube_synced(const struct weft_source_kube *s);
/* Append one document per object ("kubernetes: Pod ns/name", document 1),
 * each a trimmed copy holding what the model reads.  Returns 0 or -1 on
 * allocation failure (errs says so). */
int	weft_source_kube_docs(struct weft_source_kube *s,
	    struct weft_manifest_docs *docs, struct weft_errors *errs);
/* Per resource: path, objects, resourceVersion, lists, watches, relists,
 * 410s, bookmarks, events; for `weft ctl status` (a new reference). */
struct json_object *weft_source_kube_status(const struct weft_source_kube *s);

/* A trimmed copy of obj (borrowed) of the given kind: metadata without
 * managedFields and the last-applied annotation; for Pods, Nodes,
 * ServiceAccounts, Namespaces and EndpointSlices only the fields the model
 * reads.  apiVersion and kind are set from the arguments.  NULL on
 * allocation failure. */
struct json_object *weft_kube_trim(struct json_object *obj,
	    const char *api_version, const char *kind);

/* Kubernetes' order of API versions: v1 > v1beta2 > v1beta1 > v1alpha1 >
 * non-conforming names (alphabetically).  <0, 0, >0 like strcmp, where the
 * preferred version is "greater". */
int	weft_kube_version_cmp(const char *a, const char *b);

/* --- leader election (coordination.k8s.io/v1 Lease) ------------------------- */

struct weft_lease_config {
	const char	*namespace;	/* borrowed */
	const char	*name;		/* borrowed */
	const char	*identity;	/* borrowed: this replica */
	int		 duration;	/* seconds a lease lasts unrenewed */
	int		 renew_deadline; /* a leader that could not renew for
					 * this long steps down (< duration) */
	int		 retry_period;	/* seconds between attempts */
};

struct weft_lease;

/* The client-go algorithm: acquire when the lease is free or its holder
 * has not renewed it for `duration` as observed on our clock, renew every
 * retry_period, step down after renew_deadline without a renewal.
 * Updates carry the resourceVersion read, so of two contenders the API
 * server lets one win (409 Conflict for the other).  cb(leader, arg) runs
 * on each change.  k and cfg's strings are borrowed. */
struct weft_lease *weft_lease_new(struct weft_kube *k, struct event_base *base,
	    const struct weft_lease_config *cfg,
	    void (*cb)(bool leader, void *arg), void *arg);
void	weft_lease_start(struct weft_lease *l);
bool	weft_lease_leader(const struct weft_lease *l);
/* The holder last seen (NULL if none), and the transitions counter. */
const char *weft_lease_holder(const struct weft_lease *l);
/* Give the lease up if held (holder cleared, so another replica takes it
 * at once), then call done(arg); done runs in any case.  Stops renewing. */
void	weft_lease_release(struct weft_lease *l, void (*done)(void *),
	    void *arg);
void	weft_lease_free(struct weft_lease *l);

#endif
