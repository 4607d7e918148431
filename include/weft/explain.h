/* `weft ctl explain`: one access decision, made by the controller with the
 * same compiled policy and the same functions the destination's node uses
 * (weft/policy.h), on the snapshot that node gets from the current model.
 *
 * Wire form (weft/controller.h): GET /v1/explain?from=NS/SA|unauthenticated
 *     &to=NS/POD&port=P[&proto=tcp|udp][&method=M][&path=P][&header=K=V]...
 * with an admin token.  200 and a JSON object:
 *   {"decision":"allow"|"deny"|"http", "target":"ns/name"|"",
 *    "rule":"...", "reason":"...", "from":"ns/sa"|"unauthenticated",
 *    "to":{"pod","namespace","serviceAccount","node"}, "port", "protocol",
 *    "generation", "connection":{"verdict","target","rule","reason"}
 *    [, "request":{"method","path","verdict","target","rule","reason"}]}
 * "http" is the answer when the connection is decided per request (HTTP
 * rules apply) and no request was given; with one (method, path or a
 * header), the request decides.  400 for a malformed query, 404 for an
 * unknown pod, each with {"error": "..."}. */
#ifndef WEFT_EXPLAIN_H
#define WEFT_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft_snapshot;
struct weft_model;

struct weft_explain_header {
	char		*name;			/* owned */
	char		*value;			/* owned */
};

struct weft_explain_query {
	char		*src_ns;		/* owned; both NULL: */
	char		*src_sa;		/*   unauthenticated */
	char		*dst_ns;		/* owned */
	char		*dst_pod;		/* owned */
	uint16_t	 port;
	int		 proto;			/* IPPROTO_TCP / IPPROTO_UDP */
	bool		 http;			/* a request was given */
	char		*method;		/* owned; "GET" when only a path
						 * or headers were given */
	char		*path;			/* owned; "/" likewise */
	struct weft_explain_header *headers;	/* owned */
	size_t		 n_headers;
};

/* Parse a query string (without '?', percent-encoded) into q.  Returns 0,
 * or -1 with *err (malloc'd; NULL on allocation failure) naming the
 * parameter; q is then cleared. */
int	weft_explain_parse(const char *query, struct weft_explain_query *q,
	    char **err);
void	weft_explain_query_clear(struct weft_explain_query *q);

/* Decide q against s, the snapshot of the destination pod's node (borrowed;
 * the pod is looked up in s->pods).  Returns the JSON text (malloc'd) and
 * the HTTP status for it in *status: 200, 404 (no such pod) or 500 (out of
 * memory or a policy that does not compile). NULL only when even the error
 * cannot be allocated. */
char	*weft_explain_eval(const struct weft_snapshot *s,
	    const struct weft_explain_query *q, int *status);

/* The whole endpoint: parse query, find the pod in m, cut the snapshot of
 * its node at generation gen, evaluate.  Same return as weft_explain_eval
 * (400 for a malformed query). */
char	*weft_explain_model(const struct weft_model *m, uint64_t gen,
	    const char *trust_domain, const char *query, int *status);

#endif
