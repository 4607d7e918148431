/* The node's nftables table `inet weft` and the policy routing TPROXY needs.
 * netfilter/ is the only code that talks nftables or rtnetlink.
 *
 * Functions returning int return 0 on success or -1 with *err set to a
 * malloc'd message (caller frees) when err is not NULL. */
#ifndef WEFT_NFT_H
#define WEFT_NFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "weft/ip.h"

#define WEFT_NFT_TABLE		"weft"
#define WEFT_NFT_COMMENT_MAX	128	/* nft's NFT_USERDATA_MAXLEN is 256 */

/* One set element: an address and the object it stands for ("ns/pod"). */
struct weft_nft_pod {
	struct weft_ip	 ip;
	char		 comment[WEFT_NFT_COMMENT_MAX];
};

/* One UDP grant to a local meshed pod (UDPRoute, SPEC §4.3): datagrams from
 * src, or from every source when any_src, to dst's ports port_lo..port_hi
 * (host order, inclusive).  src and dst have the same family.  Grants that
 * overlap or touch for the same (src, dst) are merged when the table is
 * built, so callers may list them as the policy yields them. */
struct weft_nft_udp {
	struct weft_ip	 src;			/* unused when any_src */
	struct weft_ip	 dst;
	uint16_t	 port_lo;
	uint16_t	 port_hi;
	bool		 any_src;
	char		 comment[WEFT_NFT_COMMENT_MAX];	/* "ns/sa -> ns/pod" */
};

/* Desired state of the table.  Plain data; arrays borrowed by the functions
 * below.  Pod arrays are kept sorted by weft_nft_config_sort() so that two
 * configs can be diffed. */
struct weft_nft_config {
	struct weft_cidr *pod_cidrs;		/* this node's pod CIDRs */
	size_t		 n_pod_cidrs;
	struct weft_nft_pod *meshed;		/* local pods in meshed namespaces */
	size_t		 n_meshed;
	struct weft_nft_pod *exempt;		/* local pods outside the mesh */
	size_t		 n_exempt;
	struct weft_nft_udp *udp;		/* UDP the policy grants to local
						 * meshed pods; any order */
	size_t		 n_udp;
	const char	*pod_iface_prefix;	/* host side of pod veths, e.g. "wv" */
	uint16_t	 outbound_port;		/* 15001 */
	uint16_t	 inbound_port;		/* 15006 */
	uint16_t	 tunnel_port;		/* 15008 */
	uint32_t	 own_mark;		/* 0x539 */
	uint32_t	 tproxy_mark;		/* 0x53a */
};

struct weft_nft;

/* Open the netfilter netlink socket.  NULL with *err on failure. */
struct weft_nft *weft_nft_open(char **err);
void	weft_nft_close(struct weft_nft *n);

/* Replace the whole table with cfg in one batch (delete if present + create):
 * the kernel commits all of it or nothing. */
int	weft_nft_apply(struct weft_nft *n, const struct weft_nft_config *cfg,
	    char **err);
/* Bring the pod sets and the UDP grant sets from old to new with set-element
 * updates only (one batch; no rule is touched).  Falls back to nothing: the
 * caller does a full apply when CIDRs, ports or marks differ
 * (weft_nft_config_same_rules). */
int	weft_nft_update_pods(struct weft_nft *n,
	    const struct weft_nft_config *old, const struct weft_nft_config *new,
	    char **err);
bool	weft_nft_config_same_rules(const struct weft_nft_config *a,
	    const struct weft_nft_config *b);
/* Delete the table if present (weft node --cleanup). */
int	weft_nft_delete(struct weft_nft *n, char **err);
/* 1 if the table exists, 0 if not, -1 on error. */
int	weft_nft_exists(struct weft_nft *n, char **err);

/* Sort pod arrays in place (by family, then address). */
void	weft_nft_config_sort(struct weft_nft_config *cfg);

/* Offline batch building, for tests: write the full-replace batch for cfg
 * into buf and return its length, or 0 if it does not fit. */
size_t	weft_nft_build_apply_batch(const struct weft_nft_config *cfg,
	    void *buf, size_t len, uint32_t seq);
/* The set-element batch weft_nft_update_pods() would send: returns the
 * number of NEWSETELEM/DELSETELEM messages (0 = nothing differs, *outlen 0)
 * or -1 if it does not fit; *outlen is the batch length. */
int	weft_nft_build_update_batch(const struct weft_nft_config *old,
	    const struct weft_nft_config *new, void *buf, size_t len,
	    uint32_t seq, size_t *outlen);

/* Watch for changes to our table made by others (delete, flush).  The fd is
 * readable when something happened; weft_nft_monitor_read() drains it and
 * returns 1 if table `inet weft` was deleted or one of its chains/rules was
 * removed, 0 otherwise, -1 on error. */
int	weft_nft_monitor_open(char **err);
int	weft_nft_monitor_read(int fd);

/* Rule counters, for /metrics: calls cb once per rule of the table. */
typedef void (*weft_nft_counter_cb)(const char *chain, const char *comment,
	    uint64_t packets, uint64_t bytes, void *arg);
int	weft_nft_read_counters(struct weft_nft *n, weft_nft_counter_cb cb,
	    void *arg, char **err);

/* Policy routing over rtnetlink: for each family, a rule "fwmark MARK lookup
 * TABLE" (preference prio) and a route "local default dev lo table TABLE".
 * Idempotent: existing entries are kept. */
int	weft_route_install(uint32_t mark, uint32_t table, uint32_t prio,
	    char **err);
/* Remove them; absent entries are not an error. */
int	weft_route_remove(uint32_t mark, uint32_t table, uint32_t prio,
	    char **err);
/* Offline message building, for tests: one RTM_NEWRULE/RTM_DELRULE
 * ("fwmark MARK lookup TABLE pref PRIO") or RTM_NEWROUTE/RTM_DELROUTE
 * ("local default dev IFINDEX table TABLE") for family AF_INET or AF_INET6.
 * Returns the message length, 0 if it does not fit. */
size_t	weft_route_build_rule(void *buf, size_t len, int type, int family,
	    uint32_t mark, uint32_t table, uint32_t prio, uint32_t seq);
size_t	weft_route_build_route(void *buf, size_t len, int type, int family,
	    uint32_t table, int ifindex, uint32_t seq);

#endif
