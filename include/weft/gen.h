/* A runtime generation on the node: a decoded snapshot plus the indexes the
 * data path needs, immutable once published and reference-counted.
 *
 * The node's control loop builds a generation from each snapshot it applies
 * and publishes it; worker threads take a reference (weft_gen_current) when
 * they make a decision and drop it when the connection or request ends, so
 * an old generation is freed when its last user is done (STYLE §8). */
#ifndef WEFT_GEN_H
#define WEFT_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/ip.h"
#include "weft/snapshot.h"

struct weft_gen;
struct weft_policy;

/* Build a generation from snap, taking ownership of it (it is freed with the
 * generation, or at once on failure).  Returns a generation with one
 * reference, or NULL with *err set (malloc'd) when the snapshot is unusable
 * (its SMI policy does not compile, two pods share an address, ...). */
struct weft_gen *weft_gen_build(struct weft_snapshot *snap, char **err);

/* Reference counting; both are thread-safe and accept NULL. */
struct weft_gen *weft_gen_ref(struct weft_gen *g);
void	weft_gen_unref(struct weft_gen *g);

/* Publish g as the current generation (takes one reference from the caller)
 * and drop the reference the previous one held.  NULL clears it. */
void	weft_gen_publish(struct weft_gen *g);
/* A new reference to the current generation, or NULL before the first one.
 * The caller unrefs it. */
struct weft_gen *weft_gen_current(void);

const struct weft_snapshot *weft_gen_snapshot(const struct weft_gen *g);
uint64_t weft_gen_generation(const struct weft_gen *g);
/* The generation's compiled SMI policy (weft/policy.h); never NULL, valid
 * as long as the caller holds its reference to g. */
const struct weft_policy *weft_gen_policy(const struct weft_gen *g);
/* This node's entry in the snapshot, or NULL if the controller has no Node
 * object for it (then it has no pod CIDRs). */
const struct weft_snap_node *weft_gen_self(const struct weft_gen *g);

/* The pod with this IP, anywhere in the cluster, or NULL. */
const struct weft_snap_pod *weft_gen_pod_by_ip(const struct weft_gen *g,
	    const struct weft_ip *ip);
/* True if ip is inside one of this node's pod CIDRs. */
bool	weft_gen_in_local_cidrs(const struct weft_gen *g,
	    const struct weft_ip *ip);
/* True if the pod runs on this node. */
bool	weft_gen_pod_is_local(const struct weft_gen *g,
	    const struct weft_snap_pod *pod);

/* The service whose cluster IP and port (host order) match, and that port's
 * entry in *sp; NULL if none. */
const struct weft_snap_service *weft_gen_service_by_vip(
	    const struct weft_gen *g, const struct weft_ip *ip, uint16_t port,
	    int protocol, const struct weft_service_port **sp);

/* The service ns/name, or NULL. */
const struct weft_snap_service *weft_gen_service_by_name(
	    const struct weft_gen *g, const char *ns, const char *name);

/* The TrafficSplits whose root is the service ns/service: *out points to
 * them (borrowed from g), those with `matches` first in (creationTimestamp,
 * name) order, the catch-all split last.  Returns how many (0: none,
 * *out NULL). */
size_t	weft_gen_splits(const struct weft_gen *g, const char *ns,
	    const char *service, const struct weft_smi_split *const **out);

struct weft_endpoint {
	const struct weft_snap_pod *pod;	/* borrowed from the generation */
	uint16_t	 port;			/* resolved targetPort, host order */
};

/* The ready endpoints of a service port: pods in the service's namespace that
 * match its selector and have an IP, with targetPort resolved (by number, or
 * by name through the pod's container ports; pods without that name are
 * skipped).  Writes at most max entries into out and returns how many exist
 * in all.  The array order is stable for a generation. */
size_t	weft_gen_service_endpoints(const struct weft_gen *g,
	    const struct weft_snap_service *svc,
	    const struct weft_service_port *sp,
	    struct weft_endpoint *out, size_t max);

#endif
