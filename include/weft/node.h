/* The node daemon (`weft node`). */
#ifndef WEFT_NODE_H
#define WEFT_NODE_H

#include <stddef.h>

#include "weft/policy.h"

struct weft_gen;
struct weft_nft_config;
struct weft_nft_udp;

/* Entry point of `weft node`; argv[0] is "node".  Returns the exit code. */
int	weft_node_main(int argc, char **argv);

/* Derive the desired table state from a generation: this node's CIDRs, its
 * local pods, meshed or exempt, sorted, and the UDP its meshed pods may
 * receive (weft_node_udp_grants with the generation's policy).  Returns 0,
 * or -1 on allocation failure.  Free with weft_node_nft_config_free(). */
int	weft_node_nft_config(const struct weft_gen *g, const char *iface_prefix,
	    struct weft_nft_config *out);
void	weft_node_nft_config_free(struct weft_nft_config *cfg);

/* What enumerates a destination identity's UDP grants:
 * weft_policy_udp_grants() in the daemon, a stand-in in tests. */
typedef void (*weft_node_udp_grants_fn)(const struct weft_policy *p,
	    const char *dst_ns, const char *dst_sa, weft_policy_udp_fn fn,
	    void *arg);

/* The UDP elements of the node's table (node/udp.c; docs/policy.md "UDP"):
 * for each meshed pod of this node with an address, each grant grants(p)
 * yields for its identity, and each meshed pod of the cluster that runs as
 * the grant's source identity in the same address family, one element
 * (source pod, local pod, ports) commented "src-ns/sa -> ns/pod"; a grant to
 * every source gives one element without source.  Pods whose address is a
 * node's (host network) are neither sources nor destinations.  Unsorted and
 * unmerged (netfilter/ does both).  p and the generation are borrowed.
 * Returns 0 with *out (malloc'd, caller frees; NULL when *n is 0), or -1
 * on allocation failure with *out NULL and *n 0. */
int	weft_node_udp_grants(const struct weft_gen *g,
	    const struct weft_policy *p, weft_node_udp_grants_fn grants,
	    struct weft_nft_udp **out, size_t *n);

#endif
