/* The controller (`weft controller`), its sources and `weft ctl`.
 *
 * Control protocol (DESIGN §6), HTTP/1.1 + JSON over TLS 1.3 (plain HTTP
 * with --plaintext); the server certificate comes from the mesh CA
 * (weft/ca.h), clients verify it with STATE-DIR/ca-bundle.pem:
 *   GET /v1/nodes/<name>/snapshot?have=<gen>   Bearer token of node/<name>
 *       or admin.  200 + snapshot JSON + X-Weft-Generation when the
 *       controller's generation differs from have (or have is 0/absent),
 *       else held until it changes (200) or --poll-timeout passes (304).
 *       have is recorded as the node's applied generation.
 *   GET /v1/status    admin token: {"generation":G,"nodes":[{"name",
 *       "applied","last_seen","known"}],"errors":[...]}
 *       Also "held", "tls", "ca":{"signing","roots":[{"serial","subject",
 *       "not_after","retire_at","signing"}]} and per node "certificates":
 *       [{"spiffe_id","serial","not_after"}] (newest per identity).
 *   POST /v1/certificates   node token (or admin + "node"):
 *       {"csr":PEM,"spiffeId":ID[,"node":N]} -> 200 {"certificate","chain",
 *       "trustBundle","serial","notAfter"}; 400 malformed CSR/ID/body or
 *       other trust domain; 403 when no pod with that namespace and
 *       service account is scheduled on the node.
 *   POST /v1/ca/rotate   admin token: a new root signs; the old one stays
 *       in the bundle for --ca-overlap.  200 {"signing","roots"}; 409 when
 *       the CA came from --ca-cert/--ca-key.
 *   The snapshot carries "trustBundle" (every root, PEM); a bundle change
 *   is a new generation.
 *   GET /v1/explain?from=NS/SA|unauthenticated&to=NS/POD&port=P[&proto=
 *       tcp|udp][&method=M][&path=P][&header=K=V]...   admin token: one
 *       policy decision for the pod's node (weft/explain.h); 400 bad query,
 *       404 unknown pod, 503 before the first load.
 *   GET /healthz      "ok", no token. */
#ifndef WEFT_CONTROLLER_H
#define WEFT_CONTROLLER_H

#include "weft/manifest.h"

struct event_base;

#define WEFT_CONTROLLER_POLL_TIMEOUT	30	/* seconds */
#define WEFT_CONTROLLER_URL		"http://127.0.0.1:15010"

/* `weft controller ...` and `weft ctl ...`: argv[0] is "controller" / "ctl".
 * Return the process exit status. */
int	weft_controller_main(int argc, char **argv);
int	weft_ctl_main(int argc, char **argv);

/* --- manifest directory source ------------------------------------------------ */

struct weft_source_dir;

/* A source reading every manifest of dir (not opened until load).  Returns
 * NULL on allocation failure. */
struct weft_source_dir *weft_source_dir_new(const char *dir);
void	weft_source_dir_free(struct weft_source_dir *s);
/* Read the directory into docs (appended), problems into errs.  A file
 * whose syntax broke (or that became unreadable) contributes the documents
 * of its last good read, with an error saying so; a bad document only
 * costs itself.  Returns 0, or -1 if the directory itself cannot be read
 * (errs says why; docs untouched). */
int	weft_source_dir_load(struct weft_source_dir *s,
	    struct weft_manifest_docs *docs, struct weft_errors *errs);
/* Watch the directory with inotify in base; cb(arg) runs once the
 * directory has been quiet for 100 ms after a change.  Returns 0 or -1
 * (errno set). */
int	weft_source_dir_watch(struct weft_source_dir *s, struct event_base *base,
	    void (*cb)(void *), void *arg);

#endif
