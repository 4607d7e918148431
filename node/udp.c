/* UDP grants of the node's table (UDPRoute, SPEC §4.3; DESIGN §2).
 *
 * UDP is not proxied: the destination node's forward chain admits a datagram
 * to one of its meshed pods only when (source address, pod address, port)
 * is an element of the table's udp-allow sets (netfilter/table.c).  This
 * file turns a generation's policy into those elements: the policy speaks of
 * identities, the table of addresses, so each granted source identity
 * becomes the addresses of the meshed pods that run as it, cluster-wide.
 * Why an address stands for an identity only as far as the network between
 * the nodes lets it: docs/policy.md, "UDP". */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft/gen.h"
#include "weft/nft.h"
#include "weft/node.h"
#include "weft/policy.h"
#include "weft/snapshot.h"

struct udp_ctx {
	const struct weft_snap_pod *dst;	/* the local pod asked about */
	const struct weft_snap_pod **srcs;	/* possible sources, by
						 * (namespace, account) */
	size_t		 n_srcs;
	struct weft_nft_udp *out;		/* owned until returned */
	size_t		 n, cap;
	bool		 nomem;
};

static int
udp_str_cmp(const char *a, const char *b)
{
	return strcmp(a != NULL ? a : "", b != NULL ? b : "");
}

static int
udp_src_cmp(const void *pa, const void *pb)
{
	const struct weft_snap_pod *a = *(const struct weft_snap_pod * const *)pa;
	const struct weft_snap_pod *b = *(const struct weft_snap_pod * const *)pb;
	int c;

	if ((c = udp_str_cmp(a->namespace, b->namespace)) != 0)
		return c;
	if ((c = udp_str_cmp(a->service_account, b->service_account)) != 0)
		return c;
	return udp_str_cmp(a->name, b->name);
}

/* A pod on the host network has its node's address: that address speaks
 * for every process of the node, not for the pod's identity. */
static bool
udp_is_node_address(const struct weft_snapshot *s, const struct weft_ip *ip)
{
	size_t i;

	for (i = 0; i < s->n_nodes; i++)
		if (s->nodes[i].address.family != 0 &&
		    weft_ip_equal(&s->nodes[i].address, ip))
			return true;
	return false;
}

static struct weft_nft_udp *
udp_push(struct udp_ctx *c)
{
	struct weft_nft_udp *nu;
	size_t ncap;

	if (c->n == c->cap) {
		ncap = c->cap ? c->cap * 2 : 16;
		if ((nu = reallocarray(c->out, ncap, sizeof(*nu))) == NULL) {
			c->nomem = true;
			return NULL;
		}
		c->out = nu;
		c->cap = ncap;
	}
	nu = &c->out[c->n++];
	memset(nu, 0, sizeof(*nu));
	return nu;
}

/* One grant of the policy for c->dst's identity: an element without source
 * for everyone, else one per pod of the source identity in dst's family. */
static void
udp_grant_cb(const char *src_ns, const char *src_sa, uint16_t lo, uint16_t hi,
    void *arg)
{
	struct udp_ctx *c = arg;
	const struct weft_snap_pod *d = c->dst;
	struct weft_nft_udp *u;
	size_t l, h, m;

	if (c->nomem || lo > hi)
		return;
	if (src_ns == NULL || src_sa == NULL) {
		if ((u = udp_push(c)) == NULL)
			return;
		u->any_src = true;
		u->dst = d->ip;
		u->port_lo = lo;
		u->port_hi = hi;
		snprintf(u->comment, sizeof(u->comment), "any source -> %s/%s",
		    d->namespace, d->name);
		return;
	}
	/* First source pod of (src_ns, src_sa). */
	for (l = 0, h = c->n_srcs; l < h;) {
		const struct weft_snap_pod *p;

		m = l + (h - l) / 2;
		p = c->srcs[m];
		if (udp_str_cmp(p->namespace, src_ns) < 0 ||
		    (udp_str_cmp(p->namespace, src_ns) == 0 &&
		    udp_str_cmp(p->service_account, src_sa) < 0))
			l = m + 1;
		else
			h = m;
	}
	for (; l < c->n_srcs; l++) {
		const struct weft_snap_pod *p = c->srcs[l];

		if (udp_str_cmp(p->namespace, src_ns) != 0 ||
		    udp_str_cmp(p->service_account, src_sa) != 0)
			break;
		if (p->ip.family != d->ip.family)
			continue;
		if ((u = udp_push(c)) == NULL)
			return;
		u->src = p->ip;
		u->dst = d->ip;
		u->port_lo = lo;
		u->port_hi = hi;
		snprintf(u->comment, sizeof(u->comment), "%s/%s -> %s/%s",
		    src_ns, src_sa, d->namespace, d->name);
	}
}

int
weft_node_udp_grants(const struct weft_gen *g, const struct weft_policy *p,
    weft_node_udp_grants_fn grants, struct weft_nft_udp **out, size_t *n)
{
	const struct weft_snapshot *s = weft_gen_snapshot(g);
	struct udp_ctx c;
	size_t i;

	*out = NULL;
	*n = 0;
	memset(&c, 0, sizeof(c));
	if (s->n_pods == 0)
		return 0;
	/* Sources: meshed pods with an address of their own.  A pod outside
	 * the mesh has no identity, whatever account it runs as. */
	if ((c.srcs = calloc(s->n_pods, sizeof(*c.srcs))) == NULL)
		return -1;
	for (i = 0; i < s->n_pods; i++) {
		const struct weft_snap_pod *q = &s->pods[i];

		if (q->ip.family != 0 && q->meshed &&
		    !udp_is_node_address(s, &q->ip))
			c.srcs[c.n_srcs++] = q;
	}
	qsort(c.srcs, c.n_srcs, sizeof(*c.srcs), udp_src_cmp);
	for (i = 0; i < s->n_pods && !c.nomem; i++) {
		const struct weft_snap_pod *d = &s->pods[i];

		if (d->ip.family == 0 || !d->meshed ||
		    !weft_gen_pod_is_local(g, d) ||
		    udp_is_node_address(s, &d->ip))
			continue;
		c.dst = d;
		grants(p, d->namespace, d->service_account, udp_grant_cb, &c);
	}
	free(c.srcs);
	if (c.nomem) {
		free(c.out);
		return -1;
	}
	*out = c.out;
	*n = c.n;
	return 0;
}
