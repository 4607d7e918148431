/* The snapshot: everything a node needs to know, as plain data.
 *
 * The controller computes one per node and generation from its sources; the
 * node receives it as JSON (weft_snapshot_{encode,decode}), persists it, and
 * compiles it into a runtime generation (weft/gen.h).  No runtime pointers
 * live here.  Every string is owned by the snapshot (malloc'd) and freed by
 * weft_snapshot_free(); every array is (pointer, count), owned likewise. */
#ifndef WEFT_SNAPSHOT_H
#define WEFT_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/ip.h"

struct json_object;

#define WEFT_SNAPSHOT_VERSION	1	/* wire format version, "version" */

struct weft_label {
	char		*key;
	char		*value;
};

struct weft_labels {
	struct weft_label *items;
	size_t		 n;
};

enum weft_access_mode {
	WEFT_ACCESS_ENFORCE = 0,	/* weft.io/access-mode=enforce (default) */
	WEFT_ACCESS_PERMISSIVE,		/* weft.io/access-mode=permissive */
};

enum weft_unauth_mode {
	WEFT_UNAUTH_DENY = 0,		/* weft.io/unauthenticated=deny (default) */
	WEFT_UNAUTH_ALLOW,
};

struct weft_snap_namespace {
	char		*name;
	bool		 meshed;		/* weft.io/mesh=enabled */
	enum weft_access_mode access_mode;
	enum weft_unauth_mode unauthenticated;
	struct weft_labels labels;
};

struct weft_snap_node {
	char		*name;
	struct weft_ip	 address;		/* InternalIP; family 0 if unknown */
	struct weft_cidr *pod_cidrs;		/* spec.podCIDRs (or podCIDR) */
	size_t		 n_pod_cidrs;
};

struct weft_container_port {
	char		*name;			/* may be NULL */
	uint16_t	 port;
	int		 protocol;		/* IPPROTO_TCP / IPPROTO_UDP */
};

struct weft_snap_pod {
	char		*namespace;
	char		*name;
	char		*uid;			/* may be NULL */
	char		*node;			/* spec.nodeName; may be NULL */
	char		*service_account;	/* default "default" */
	struct weft_ip	 ip;			/* status.podIP; family 0 if none */
	bool		 meshed;		/* its namespace is meshed */
	bool		 ready;			/* has an IP and is not terminating */
	struct weft_labels labels;
	struct weft_container_port *ports;
	size_t		 n_ports;
};

struct weft_service_port {
	char		*name;			/* may be NULL */
	uint16_t	 port;
	int		 protocol;		/* IPPROTO_TCP / IPPROTO_UDP */
	uint16_t	 target_port;		/* 0 when target_port_name is set */
	char		*target_port_name;	/* named targetPort; may be NULL */
	char		*app_protocol;		/* may be NULL */
};

struct weft_snap_service {
	char		*namespace;
	char		*name;
	struct weft_ip	 cluster_ip;		/* family 0: headless / none */
	struct weft_service_port *ports;
	size_t		 n_ports;
	struct weft_labels selector;		/* empty: no endpoints selected */
};


/* --- SMI, normalised to the latest versions (SPEC §8) -----------------------
 *
 * The controller validates every accepted version and converts it without
 * loss; the node sees only these shapes.  Namespaces of references are
 * resolved (A-6: an empty namespace is the object's own).  Arrays are sorted
 * by (namespace, name) of their objects, like every other array here. */

/* A ServiceAccount subject (the only identity kind, A-24). */
struct weft_smi_subject {
	char		*namespace;
	char		*name;
};

enum weft_smi_rule_kind {
	WEFT_SMI_HTTP = 1,		/* HTTPRouteGroup */
	WEFT_SMI_TCP,			/* TCPRoute */
	WEFT_SMI_UDP,			/* UDPRoute */
};

/* TrafficTarget spec.rules[]: a route object in the target's namespace. */
struct weft_smi_rule {
	enum weft_smi_rule_kind kind;
	char		*name;
	char		**matches;		/* HTTPRouteGroup entry names;
						 * n_matches 0: every entry */
	size_t		 n_matches;
};

struct weft_smi_target {
	char		*namespace;
	char		*name;
	struct weft_smi_subject destination;
	struct weft_smi_subject *sources;	/* may be empty */
	size_t		 n_sources;
	struct weft_smi_rule *rules;		/* may be empty */
	size_t		 n_rules;
	/* access v1alpha1/v1alpha2 destination.port, kept as a constraint on
	 * every rule of this target (SPEC §8.1); 0 = none. */
	uint16_t	 port;
};

struct weft_smi_header_match {
	char		*name;			/* lower case */
	char		*value_regex;		/* RE2 syntax, whole value */
};

struct weft_smi_http_match {
	char		*name;
	char		*path_regex;		/* RE2, anchored at the start of
						 * the path; NULL: any path */
	char		**methods;		/* upper case, or "*"; empty:
						 * any method */
	size_t		 n_methods;
	struct weft_smi_header_match *headers;	/* AND; empty: no filter */
	size_t		 n_headers;
};

struct weft_smi_http_route_group {
	char		*namespace;
	char		*name;
	struct weft_smi_http_match *matches;	/* names unique */
	size_t		 n_matches;
};

/* TCPRoute and UDPRoute. */
struct weft_smi_l4_route {
	char		*namespace;
	char		*name;
	uint16_t	*ports;			/* empty: every port */
	size_t		 n_ports;
};

struct weft_smi_split_backend {
	char		*service;		/* Service in the split's namespace */
	uint64_t	 weight;		/* relative, integer, >= 0 (v1alpha1
						 * Quantities converted, §8.3) */
};

struct weft_smi_split {
	char		*namespace;
	char		*name;
	char		*service;		/* root Service name (A-14 forms
						 * reduced to the name) */
	struct weft_smi_split_backend *backends;
	size_t		 n_backends;
	char		**match_groups;		/* HTTPRouteGroup names; empty:
						 * the catch-all split */
	size_t		 n_match_groups;
	int64_t		 created;		/* metadata.creationTimestamp,
						 * Unix seconds; 0 if absent
						 * (A-17 order: created, name) */
};

struct weft_snapshot {
	uint64_t	 generation;
	char		*node_name;		/* the node it is for */
	char		*trust_domain;		/* "cluster.local" */
	char		*trust_bundle;		/* PEM, every mesh CA root; may
						 * be NULL (a controller
						 * without a CA) */
	struct weft_snap_node *nodes;
	size_t		 n_nodes;
	struct weft_snap_namespace *namespaces;
	size_t		 n_namespaces;
	struct weft_snap_pod *pods;		/* every pod with an IP, cluster-wide */
	size_t		 n_pods;
	struct weft_snap_service *services;
	size_t		 n_services;
	/* SMI objects, every namespace. */
	struct weft_smi_target *targets;
	size_t		 n_targets;
	struct weft_smi_http_route_group *http_route_groups;
	size_t		 n_http_route_groups;
	struct weft_smi_l4_route *tcp_routes;
	size_t		 n_tcp_routes;
	struct weft_smi_l4_route *udp_routes;
	size_t		 n_udp_routes;
	struct weft_smi_split *splits;
	size_t		 n_splits;
};

/* Free a snapshot and everything it owns; NULL is fine. */
void	weft_snapshot_free(struct weft_snapshot *s);
/* Free what one object owns (not the struct itself) and zero it. */
void	weft_labels_clear(struct weft_labels *l);
void	weft_snap_node_clear(struct weft_snap_node *n);
void	weft_snap_namespace_clear(struct weft_snap_namespace *ns);
void	weft_snap_pod_clear(struct weft_snap_pod *p);
void	weft_snap_service_clear(struct weft_snap_service *s);
void	weft_smi_target_clear(struct weft_smi_target *t);
void	weft_smi_http_route_group_clear(struct weft_smi_http_route_group *g);
void	weft_smi_l4_route_clear(struct weft_smi_l4_route *r);
void	weft_smi_split_clear(struct weft_smi_split *sp);

/* Encode to a JSON string (returned, caller frees) in a stable order, so the
 * same snapshot always encodes to the same bytes.  NULL on allocation failure. */
char	*weft_snapshot_encode(const struct weft_snapshot *s);

/* Decode JSON text.  On success returns a new snapshot (caller frees with
 * weft_snapshot_free) and leaves *err NULL.  On failure returns NULL and sets
 * *err to a malloc'd message naming the JSON path ("pods[3].ip: not an IP
 * address"), which the caller frees.  Unknown fields are ignored (forward
 * compatibility); a "version" other than WEFT_SNAPSHOT_VERSION is an error. */
struct weft_snapshot *weft_snapshot_decode(const char *json, size_t len,
	    char **err);

/* Lookups over the plain arrays (linear; runtime indexes live in gen.h). */
const struct weft_snap_node *weft_snapshot_node(const struct weft_snapshot *s,
	    const char *name);
const struct weft_snap_namespace *weft_snapshot_namespace(
	    const struct weft_snapshot *s, const char *name);
const char *weft_labels_get(const struct weft_labels *l, const char *key);
/* True if every selector label is present with the same value in labels and
 * the selector is not empty. */
bool	weft_labels_match(const struct weft_labels *selector,
	    const struct weft_labels *labels);

#endif
