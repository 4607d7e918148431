/* The policy engine (SPEC §3.4, §4.1; DESIGN §5): SMI access control
 * compiled from one snapshot into an immutable structure that answers "may
 * this source talk to this destination" per connection and, when HTTP rules
 * apply, per request.  One is built with every generation (weft/gen.h) and
 * lives as long as it; evaluation takes no lock and allocates nothing. */
#ifndef WEFT_POLICY_H
#define WEFT_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct weft_snapshot;
struct weft_policy;

/* Compile s (borrowed: it must outlive the policy).  NULL with *err
 * (malloc'd) only on allocation failure or a pattern that does not compile
 * (the controller validates them first). */
struct weft_policy *weft_policy_compile(const struct weft_snapshot *s,
	    char **err);
void	weft_policy_free(struct weft_policy *p);

/* One flow, as the destination sees it. */
struct weft_policy_flow {
	const char	*src_ns;		/* caller's identity; both NULL: */
	const char	*src_sa;		/*   unauthenticated */
	const char	*dst_ns;		/* destination pod's namespace */
	const char	*dst_sa;		/*   and service account */
	int		 proto;			/* IPPROTO_TCP / IPPROTO_UDP */
	uint16_t	 dst_port;		/* the pod's port */
};

struct weft_http_header {
	const char	*name;
	size_t		 name_len;
	const char	*value;
	size_t		 value_len;
};

/* One HTTP request head (HTTP/1.x, or HTTP/2 pseudo-headers, A-26). */
struct weft_policy_http {
	const char	*method;
	size_t		 method_len;
	const char	*path;			/* without the query string */
	size_t		 path_len;
	const struct weft_http_header *headers;
	size_t		 n_headers;
};

enum weft_policy_verdict {
	WEFT_POLICY_DENY = 0,
	WEFT_POLICY_ALLOW,			/* the whole connection */
	WEFT_POLICY_HTTP,			/* parse it; decide per request
						 * (weft_policy_check_http) */
};

/* Why: filled on every answer, for logs, metrics and `weft ctl explain`. */
struct weft_policy_why {
	char		 target[256];		/* "ns/name" of the TrafficTarget
						 * that allowed; "" otherwise */
	char		 rule[256];		/* "TCPRoute ns/name",
						 * "HTTPRouteGroup ns/name match
						 * read", ""; or the mode */
	char		 reason[160];		/* a denial's reason, or why it
						 * was allowed without a target
						 * ("namespace shop is
						 * permissive") */
};

/* Decide a new connection (TCP) or flow (UDP).  TCP answers HTTP when no
 * target admits it at L4 alone but some target's HTTP rules could admit its
 * requests; UDP never answers HTTP.  why may be NULL. */
enum weft_policy_verdict weft_policy_check_conn(const struct weft_policy *p,
	    const struct weft_policy_flow *f, struct weft_policy_why *why);

/* Decide one request of a connection; ALLOW or DENY. */
enum weft_policy_verdict weft_policy_check_http(const struct weft_policy *p,
	    const struct weft_policy_flow *f, const struct weft_policy_http *req,
	    struct weft_policy_why *why);

/* TrafficSplit `matches` (SPEC §5.2): true if req matches at least one
 * entry of the merged HTTPRouteGroups named in groups (n names, in
 * namespace ns), with the semantics of weft_policy_check_http.
 * A group that does not exist, or has no entries, matches nothing.  Only
 * groups some TrafficSplit of the compiled snapshot names are known here
 * (and those some TrafficTarget names). */
bool	weft_policy_match_groups(const struct weft_policy *p, const char *ns,
	    char *const *groups, size_t n, const struct weft_policy_http *req);

/* UDP is enforced in the node's nftables table, not in the proxy (UDPRoute,
 * SPEC §4.3).  For the destination identity (dst_ns, dst_sa), call fn once
 * per (source identity, port range) some target grants over UDP.  A NULL
 * source means every source, meshed or not (a permissive namespace, or one
 * that allows unauthenticated callers); then lo..hi is 0..65535. */
typedef void (*weft_policy_udp_fn)(const char *src_ns, const char *src_sa,
	    uint16_t lo, uint16_t hi, void *arg);
void	weft_policy_udp_grants(const struct weft_policy *p, const char *dst_ns,
	    const char *dst_sa, weft_policy_udp_fn fn, void *arg);

#endif
