/* The table `inet weft`, built from a struct weft_nft_config into netlink
 * batches.  No socket here: mnl.c sends what this file builds, and the unit
 * test parses it back (test/unit/netfilter/table.c).
 *
 * The bytecode mirrors what nft 1.0.6 emits for the same rules (checked with
 * `nft --debug=netlink`), so that `nft list table inet weft` prints every rule
 * in the syntax an operator would have typed. */
#include "config.h"

#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "weft/ip.h"
#include "weft/nft.h"
#include "nft-int.h"

#define CHAIN_PREROUTING	"filter-prerouting"
#define CHAIN_FORWARD		"filter-forward"
#define TABLE_COMMENT \
	"weft: capture of meshed pods' traffic; rebuilt by weft node, do not edit"
#define CHAIN_COMMENT \
	"TPROXY capture of local pods' TCP; fails closed when weft is down"
#define CHAIN_FORWARD_COMMENT \
	"UDPRoute: UDP to local meshed pods only as TrafficTargets grant it"

/* nft's datatypes (src/datatype.h): what `nft list` needs to print keys. */
#define NFT_TYPE_IPV4_ADDR	7
#define NFT_TYPE_IPV6_ADDR	8
#define NFT_TYPE_INET_SERVICE	13
#define NFT_TYPE_BITS		6	/* a concatenation's type packs its
					 * fields' types, 6 bits each */
#define NFT_BYTEORDER_INVALID	0	/* what nft records for a
					 * concatenation: per field */
#define NFT_BYTEORDER_BIG	2	/* enum byteorder BYTEORDER_BIG_ENDIAN */

#define REG			NFT_REG_1

enum { V4, V6, NFAM };

/* Sets in the order they are created; ids are per batch. */
enum weft_nft_setidx {
	SET_CIDRS, SET_MESHED, SET_EXEMPT, SET_UDP, SET_UDP_ANY, NSETS
};

/* What a set's elements are: an address, or a concatenation with a port
 * range (`flags interval` on a concatenation: nft's pipapo sets). */
enum weft_nft_key {
	KEY_ADDR,		/* ipv4_addr */
	KEY_SRC_DST_PORT,	/* ipv4_addr . ipv4_addr . inet_service */
	KEY_DST_PORT,		/* ipv4_addr . inet_service */
};

static const struct {
	const char	*name[NFAM];
	const char	*comment;
	bool		 interval;
	enum weft_nft_key key;
} weft_nft_sets[NSETS] = {
	[SET_CIDRS]  = { { "pod-cidrs-v4", "pod-cidrs-v6" },
	    "pod CIDRs of this node", true, KEY_ADDR },
	[SET_MESHED] = { { "meshed-pods-v4", "meshed-pods-v6" },
	    "local pods in meshed namespaces", false, KEY_ADDR },
	[SET_EXEMPT] = { { "exempt-pods-v4", "exempt-pods-v6" },
	    "local pods outside the mesh", false, KEY_ADDR },
	[SET_UDP]    = { { "udp-allow-v4", "udp-allow-v6" },
	    "UDP granted by TrafficTargets: source pod . local pod . ports",
	    true, KEY_SRC_DST_PORT },
	[SET_UDP_ANY] = { { "udp-allow-any-v4", "udp-allow-any-v6" },
	    "UDP granted to every source: local pod . ports", true,
	    KEY_DST_PORT },
};

static const int weft_nft_afs[NFAM] = { AF_INET, AF_INET6 };

/* ---- batch writer ------------------------------------------------------- */

int
weft_nft_err(char **err, const char *fmt, ...)
{
	va_list ap;

	if (err != NULL) {
		va_start(ap, fmt);
		if (vasprintf(err, fmt, ap) == -1)
			*err = NULL;
		va_end(ap);
	}
	return -1;
}

int
weft_nft_batch_init(struct weft_nft_batch *b, void *buf, size_t cap,
    uint32_t seq, bool record)
{
	memset(b, 0, sizeof(*b));
	b->buf = buf;
	b->cap = cap;
	b->seq = seq;
	b->record = record;
	b->next_set_id = 1;
	if ((b->scratch = calloc(1, WEFT_NFT_MSG_MAX)) == NULL)
		return -1;
	return 0;
}

void
weft_nft_batch_free(struct weft_nft_batch *b)
{
	free(b->scratch);
	b->scratch = NULL;
	free(b->msgs);
	b->msgs = NULL;
	b->n_msgs = b->cap_msgs = 0;
}

/* Copy the message built in scratch into the batch, then clear the scratch
 * so that the next message's padding bytes are zero. */
static void
weft_nft_batch_copy(struct weft_nft_batch *b, struct nlmsghdr *nlh)
{
	size_t len = NLMSG_ALIGN(nlh->nlmsg_len);

	if (!b->failed && len > b->cap - b->len)
		b->failed = true;
	if (!b->failed) {
		memcpy(b->buf + b->len, nlh, len);
		b->len += len;
	}
	memset(nlh, 0, len < WEFT_NFT_MSG_MAX ? len : WEFT_NFT_MSG_MAX);
}

void
weft_nft_batch_open(struct weft_nft_batch *b)
{
	struct nlmsghdr *nlh;

	memset(b->scratch, 0, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
	nlh = nftnl_batch_begin(b->scratch, b->seq++);
	weft_nft_batch_copy(b, nlh);
	b->seq_first = b->seq;
}

void
weft_nft_batch_close(struct weft_nft_batch *b)
{
	struct nlmsghdr *nlh;

	memset(b->scratch, 0, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
	nlh = nftnl_batch_end(b->scratch, b->seq++);
	weft_nft_batch_copy(b, nlh);
}

struct nlmsghdr *
weft_nft_msg_start(struct weft_nft_batch *b, uint16_t type, uint16_t flags)
{
	memset(b->scratch, 0, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
	/* The table family comes from the nfgenmsg header: inet, always. */
	return nftnl_nlmsg_build_hdr(b->scratch, type, NFPROTO_INET,
	    flags | NLM_F_ACK, b->seq);
}

void
weft_nft_msg_add(struct weft_nft_batch *b, struct nlmsghdr *nlh,
    const char *fmt, ...)
{
	struct weft_nft_msgdesc *d;
	va_list ap;

	weft_nft_batch_copy(b, nlh);
	if (b->record && !b->failed) {
		if (b->n_msgs == b->cap_msgs) {
			size_t ncap = b->cap_msgs ? b->cap_msgs * 2 : 32;

			d = reallocarray(b->msgs, ncap, sizeof(*d));
			if (d == NULL) {
				b->failed = true;
				goto out;
			}
			b->msgs = d;
			b->cap_msgs = ncap;
		}
		d = &b->msgs[b->n_msgs++];
		d->seq = b->seq;
		va_start(ap, fmt);
		vsnprintf(d->what, sizeof(d->what), fmt, ap);
		va_end(ap);
	}
out:
	b->seq++;
}

/* ---- pods: order, dedup, diff ------------------------------------------- */

static int
weft_nft_ip_cmp(const struct weft_ip *a, const struct weft_ip *b)
{
	if (a->family != b->family)
		return a->family < b->family ? -1 : 1;
	return memcmp(a->bytes, b->bytes, weft_ip_len(a));
}

static int
weft_nft_pod_cmp(const void *a, const void *b)
{
	return weft_nft_ip_cmp(&((const struct weft_nft_pod *)a)->ip,
	    &((const struct weft_nft_pod *)b)->ip);
}

static int
weft_nft_cidr_cmp(const void *pa, const void *pb)
{
	const struct weft_cidr *a = pa, *b = pb;
	int c;

	if ((c = weft_nft_ip_cmp(&a->addr, &b->addr)) != 0)
		return c;
	return (int)a->prefix - (int)b->prefix;
}

void
weft_nft_config_sort(struct weft_nft_config *cfg)
{
	if (cfg->n_meshed > 1)
		qsort(cfg->meshed, cfg->n_meshed, sizeof(*cfg->meshed),
		    weft_nft_pod_cmp);
	if (cfg->n_exempt > 1)
		qsort(cfg->exempt, cfg->n_exempt, sizeof(*cfg->exempt),
		    weft_nft_pod_cmp);
	if (cfg->n_pod_cidrs > 1)
		qsort(cfg->pod_cidrs, cfg->n_pod_cidrs, sizeof(*cfg->pod_cidrs),
		    weft_nft_cidr_cmp);
}

/* A sorted, de-duplicated copy of one family's pods (the caller's arrays are
 * borrowed and may be in any order).  NULL with *n = 0 when empty. */
static struct weft_nft_pod *
weft_nft_pods_family(const struct weft_nft_pod *pods, size_t n, int af,
    size_t *out_n, bool *nomem)
{
	struct weft_nft_pod *c;
	size_t i, k = 0;

	*out_n = 0;
	if (n == 0)
		return NULL;
	if ((c = calloc(n, sizeof(*c))) == NULL) {
		*nomem = true;
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (pods[i].ip.family == af)
			c[k++] = pods[i];
	qsort(c, k, sizeof(*c), weft_nft_pod_cmp);
	n = k;
	for (i = k = 0; i < n; i++)
		if (k == 0 || weft_nft_ip_cmp(&c[k - 1].ip, &c[i].ip) != 0)
			c[k++] = c[i];
	*out_n = k;
	return c;
}

/* UDP grants in the order of their set's keys: source (unset for any_src),
 * destination, then ports. */
static int
weft_nft_udp_cmp(const void *pa, const void *pb)
{
	const struct weft_nft_udp *a = pa, *b = pb;
	int c;

	if ((c = weft_nft_ip_cmp(&a->src, &b->src)) != 0)
		return c;
	if ((c = weft_nft_ip_cmp(&a->dst, &b->dst)) != 0)
		return c;
	if (a->port_lo != b->port_lo)
		return a->port_lo < b->port_lo ? -1 : 1;
	if (a->port_hi != b->port_hi)
		return a->port_hi < b->port_hi ? -1 : 1;
	return 0;
}

/* With the comment last, so that merging picks the same comment whatever
 * order the caller listed the grants in. */
static int
weft_nft_udp_sort_cmp(const void *pa, const void *pb)
{
	const struct weft_nft_udp *a = pa, *b = pb;
	int c;

	if ((c = weft_nft_udp_cmp(a, b)) != 0)
		return c;
	return strncmp(a->comment, b->comment, WEFT_NFT_COMMENT_MAX);
}

/* The elements of one UDP set: one family's grants, from every source
 * (any) or from one source each, sorted, with the port ranges of the same
 * (source, destination) merged where they overlap or touch.  A concatenated
 * interval set refuses overlapping elements (pipapo), and the diff needs one
 * canonical form.  The first grant's comment stands for a merged range.
 * NULL with *n = 0 when empty. */
static struct weft_nft_udp *
weft_nft_udp_family(const struct weft_nft_udp *u, size_t n, int af, bool any,
    size_t *out_n, bool *nomem)
{
	struct weft_nft_udp *c;
	size_t i, k = 0;

	*out_n = 0;
	if (n == 0)
		return NULL;
	if ((c = calloc(n, sizeof(*c))) == NULL) {
		*nomem = true;
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (u[i].dst.family != af || u[i].any_src != any ||
		    (!any && u[i].src.family != af) ||
		    u[i].port_lo > u[i].port_hi)
			continue;
		c[k] = u[i];
		if (any)
			memset(&c[k].src, 0, sizeof(c[k].src));
		k++;
	}
	qsort(c, k, sizeof(*c), weft_nft_udp_sort_cmp);
	n = k;
	for (i = k = 0; i < n; i++) {
		struct weft_nft_udp *prev = k > 0 ? &c[k - 1] : NULL;

		if (prev != NULL && weft_nft_ip_cmp(&prev->src, &c[i].src) == 0 &&
		    weft_nft_ip_cmp(&prev->dst, &c[i].dst) == 0 &&
		    (uint32_t)c[i].port_lo <= (uint32_t)prev->port_hi + 1) {
			if (c[i].port_hi > prev->port_hi)
				prev->port_hi = c[i].port_hi;
			continue;
		}
		c[k++] = c[i];
	}
	*out_n = k;
	return c;
}

static bool
weft_nft_str_empty(const char *s)
{
	return s == NULL || s[0] == '\0';
}

static bool
weft_nft_cidrs_same(const struct weft_nft_config *a,
    const struct weft_nft_config *b)
{
	size_t i, j;

	/* Every CIDR of a is in b and vice versa: order does not matter. */
	for (i = 0; i < a->n_pod_cidrs; i++) {
		for (j = 0; j < b->n_pod_cidrs; j++)
			if (weft_nft_cidr_cmp(&a->pod_cidrs[i],
			    &b->pod_cidrs[j]) == 0)
				break;
		if (j == b->n_pod_cidrs)
			return false;
	}
	for (j = 0; j < b->n_pod_cidrs; j++) {
		for (i = 0; i < a->n_pod_cidrs; i++)
			if (weft_nft_cidr_cmp(&a->pod_cidrs[i],
			    &b->pod_cidrs[j]) == 0)
				break;
		if (i == a->n_pod_cidrs)
			return false;
	}
	return true;
}

bool
weft_nft_config_same_rules(const struct weft_nft_config *a,
    const struct weft_nft_config *b)
{
	if (a->outbound_port != b->outbound_port ||
	    a->inbound_port != b->inbound_port ||
	    a->tunnel_port != b->tunnel_port ||
	    a->own_mark != b->own_mark ||
	    a->tproxy_mark != b->tproxy_mark)
		return false;
	if (weft_nft_str_empty(a->pod_iface_prefix) !=
	    weft_nft_str_empty(b->pod_iface_prefix))
		return false;
	if (!weft_nft_str_empty(a->pod_iface_prefix) &&
	    strcmp(a->pod_iface_prefix, b->pod_iface_prefix) != 0)
		return false;
	/* The CIDR set is rebuilt only by a full apply. */
	return weft_nft_cidrs_same(a, b);
}

/* ---- objects ------------------------------------------------------------ */

static int
weft_nft_udata_comment(uint8_t type, const char *comment, char *out,
    size_t outlen, uint32_t *len)
{
	struct nftnl_udata_buf *ud;
	int rc = -1;

	if ((ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 8)) == NULL)
		return -1;
	if (nftnl_udata_put_strz(ud, type, comment) &&
	    nftnl_udata_buf_len(ud) <= outlen) {
		*len = nftnl_udata_buf_len(ud);
		memcpy(out, nftnl_udata_buf_data(ud), *len);
		rc = 0;
	}
	nftnl_udata_buf_free(ud);
	return rc;
}

static void
weft_nft_add_table(struct weft_nft_batch *b, uint16_t type, bool comment,
    const char *what)
{
	struct nftnl_table *t;
	struct nlmsghdr *nlh;
	char ud[NFTNL_UDATA_COMMENT_MAXLEN + 8];
	uint32_t udlen;

	if ((t = nftnl_table_alloc()) == NULL) {
		b->failed = true;
		return;
	}
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, WEFT_NFT_TABLE);
	if (comment && weft_nft_udata_comment(NFTNL_UDATA_TABLE_COMMENT,
	    TABLE_COMMENT, ud, sizeof(ud), &udlen) == 0)
		nftnl_table_set_data(t, NFTNL_TABLE_USERDATA, ud, udlen);
	nlh = weft_nft_msg_start(b, type,
	    type == NFT_MSG_NEWTABLE ? NLM_F_CREATE : 0);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);
	weft_nft_msg_add(b, nlh, "%s", what);
}

/* Key type (nft's datatype numbers, packed for a concatenation) and key
 * length (every field of a concatenation padded to a 32-bit register). */
static uint32_t
weft_nft_key_type(enum weft_nft_key key, int fam)
{
	uint32_t a = fam == V4 ? NFT_TYPE_IPV4_ADDR : NFT_TYPE_IPV6_ADDR;

	switch (key) {
	case KEY_SRC_DST_PORT:
		return (((a << NFT_TYPE_BITS) | a) << NFT_TYPE_BITS) |
		    NFT_TYPE_INET_SERVICE;
	case KEY_DST_PORT:
		return (a << NFT_TYPE_BITS) | NFT_TYPE_INET_SERVICE;
	default:
		return a;
	}
}

static uint32_t
weft_nft_key_len(enum weft_nft_key key, int fam)
{
	uint32_t a = fam == V4 ? 4 : 16;

	switch (key) {
	case KEY_SRC_DST_PORT:
		return 2 * a + 4;
	case KEY_DST_PORT:
		return a + 4;
	default:
		return a;
	}
}

static void
weft_nft_add_set(struct weft_nft_batch *b, enum weft_nft_setidx si, int fam,
    uint32_t set_id)
{
	enum weft_nft_key key = weft_nft_sets[si].key;
	struct nftnl_udata_buf *ud;
	struct nftnl_set *s;
	struct nlmsghdr *nlh;
	uint8_t fields[4] = { 0 };
	uint32_t flags = 0;

	if ((s = nftnl_set_alloc()) == NULL ||
	    (ud = nftnl_udata_buf_alloc(NFTNL_UDATA_COMMENT_MAXLEN + 32)) ==
	    NULL) {
		nftnl_set_free(s);
		b->failed = true;
		return;
	}
	nftnl_set_set_str(s, NFTNL_SET_TABLE, WEFT_NFT_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, weft_nft_sets[si].name[fam]);
	nftnl_set_set_u32(s, NFTNL_SET_FAMILY, NFPROTO_INET);
	nftnl_set_set_u32(s, NFTNL_SET_KEY_TYPE, weft_nft_key_type(key, fam));
	nftnl_set_set_u32(s, NFTNL_SET_KEY_LEN, weft_nft_key_len(key, fam));
	nftnl_set_set_u32(s, NFTNL_SET_ID, set_id);
	if (weft_nft_sets[si].interval)
		flags |= NFT_SET_INTERVAL;
	if (key != KEY_ADDR) {
		/* A concatenation: the kernel needs each field's length to
		 * match ranges field by field (NFTA_SET_DESC_CONCAT). */
		fields[0] = fam == V4 ? 4 : 16;
		fields[1] = key == KEY_SRC_DST_PORT ? fields[0] : 2;
		fields[2] = key == KEY_SRC_DST_PORT ? 2 : 0;
		nftnl_set_set_data(s, NFTNL_SET_DESC_CONCAT, fields,
		    key == KEY_SRC_DST_PORT ? 3 : 2);
		flags |= NFT_SET_CONCAT;
	}
	if (flags != 0)
		nftnl_set_set_u32(s, NFTNL_SET_FLAGS, flags);
	/* Same user data as nft: key byte order, then the comment. */
	nftnl_udata_put_u32(ud, NFTNL_UDATA_SET_KEYBYTEORDER,
	    key == KEY_ADDR ? NFT_BYTEORDER_BIG : NFT_BYTEORDER_INVALID);
	nftnl_udata_put_strz(ud, NFTNL_UDATA_SET_COMMENT,
	    weft_nft_sets[si].comment);
	nftnl_set_set_data(s, NFTNL_SET_USERDATA, nftnl_udata_buf_data(ud),
	    nftnl_udata_buf_len(ud));
	nftnl_udata_buf_free(ud);

	nlh = weft_nft_msg_start(b, NFT_MSG_NEWSET, NLM_F_CREATE);
	nftnl_set_nlmsg_build_payload(nlh, s);
	nftnl_set_free(s);
	weft_nft_msg_add(b, nlh, "set %s", weft_nft_sets[si].name[fam]);
}

/* A set header naming the set for an element message; set_id 0 means the set
 * exists already (update batches). */
static struct nftnl_set *
weft_nft_elem_set(const char *name, uint32_t set_id)
{
	struct nftnl_set *s;

	if ((s = nftnl_set_alloc()) == NULL)
		return NULL;
	nftnl_set_set_str(s, NFTNL_SET_TABLE, WEFT_NFT_TABLE);
	nftnl_set_set_str(s, NFTNL_SET_NAME, name);
	if (set_id != 0)
		nftnl_set_set_u32(s, NFTNL_SET_ID, set_id);
	return s;
}

static int
weft_nft_elem_add(struct nftnl_set *s, const void *key, size_t keylen,
    uint32_t flags, const char *comment)
{
	struct nftnl_set_elem *e;
	char ud[NFTNL_UDATA_COMMENT_MAXLEN + 8];
	uint32_t udlen;

	if ((e = nftnl_set_elem_alloc()) == NULL)
		return -1;
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, keylen);
	if (flags != 0)
		nftnl_set_elem_set_u32(e, NFTNL_SET_ELEM_FLAGS, flags);
	if (!weft_nft_str_empty(comment) &&
	    weft_nft_udata_comment(NFTNL_UDATA_SET_ELEM_COMMENT, comment, ud,
	    sizeof(ud), &udlen) == 0)
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, ud, udlen);
	nftnl_set_elem_add(s, e);
	return 0;
}

static void
weft_nft_elem_msg(struct weft_nft_batch *b, uint16_t type, uint16_t flags,
    struct nftnl_set *s, const char *what)
{
	struct nlmsghdr *nlh;

	nlh = weft_nft_msg_start(b, type, flags);
	nftnl_set_elems_nlmsg_build_payload(nlh, s);
	weft_nft_msg_add(b, nlh, "%s", what);
}

static const char *
weft_nft_pod_str(const struct weft_nft_pod *p, char *buf, size_t len)
{
	char ip[WEFT_IP_STRLEN];

	weft_ip_str(&p->ip, ip, sizeof(ip));
	if (weft_nft_str_empty(p->comment))
		snprintf(buf, len, "%s", ip);
	else
		snprintf(buf, len, "%s (%.*s)", ip, WEFT_NFT_COMMENT_MAX,
		    p->comment);
	return buf;
}

/* Elements of a pod set, WEFT_NFT_ELEMS_PER_MSG per message. */
static void
weft_nft_add_pod_elems(struct weft_nft_batch *b, const char *setname,
    uint32_t set_id, const struct weft_nft_pod *pods, size_t n)
{
	char first[WEFT_IP_STRLEN + WEFT_NFT_COMMENT_MAX + 4];
	char last[WEFT_IP_STRLEN + WEFT_NFT_COMMENT_MAX + 4];
	char what[512];
	struct nftnl_set *s;
	size_t i, j, k;

	for (i = 0; i < n; i += k) {
		k = n - i < WEFT_NFT_ELEMS_PER_MSG ? n - i :
		    WEFT_NFT_ELEMS_PER_MSG;
		if ((s = weft_nft_elem_set(setname, set_id)) == NULL) {
			b->failed = true;
			return;
		}
		for (j = i; j < i + k; j++)
			if (weft_nft_elem_add(s, pods[j].ip.bytes,
			    weft_ip_len(&pods[j].ip), 0, pods[j].comment) == -1)
				b->failed = true;
		weft_nft_pod_str(&pods[i], first, sizeof(first));
		if (k == 1)
			snprintf(what, sizeof(what), "set %s element %s",
			    setname, first);
		else
			snprintf(what, sizeof(what),
			    "set %s elements %s .. %s (%zu)", setname, first,
			    weft_nft_pod_str(&pods[i + k - 1], last,
			    sizeof(last)), k);
		weft_nft_elem_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, s, what);
		nftnl_set_free(s);
	}
}

/* A UDP grant's key at one of its port range's ends: [source .] destination
 * . port, each field padded to a 32-bit register as nft does.  Returns the
 * key length. */
static size_t
weft_nft_udp_key(const struct weft_nft_udp *u, uint16_t port, uint8_t key[36])
{
	size_t alen = weft_ip_len(&u->dst), k = 0;
	uint16_t nport = htons(port);

	memset(key, 0, 36);
	if (!u->any_src) {
		memcpy(key, u->src.bytes, alen);
		k += alen;
	}
	memcpy(key + k, u->dst.bytes, alen);
	k += alen;
	memcpy(key + k, &nport, sizeof(nport));
	return k + 4;
}

/* "10.244.1.12 . 10.244.1.10 . 5000-5010 (ns/sa -> ns/pod)", as nft prints
 * the element. */
static const char *
weft_nft_udp_str(const struct weft_nft_udp *u, char *buf, size_t len)
{
	char src[WEFT_IP_STRLEN], dst[WEFT_IP_STRLEN], ports[16];

	if (u->port_lo == u->port_hi)
		snprintf(ports, sizeof(ports), "%u", u->port_lo);
	else
		snprintf(ports, sizeof(ports), "%u-%u", u->port_lo, u->port_hi);
	weft_ip_str(&u->dst, dst, sizeof(dst));
	if (u->any_src)
		snprintf(buf, len, "%s . %s", dst, ports);
	else
		snprintf(buf, len, "%s . %s . %s",
		    weft_ip_str(&u->src, src, sizeof(src)), dst, ports);
	if (!weft_nft_str_empty(u->comment))
		snprintf(buf + strlen(buf), len - strlen(buf), " (%.*s)",
		    WEFT_NFT_COMMENT_MAX, u->comment);
	return buf;
}

/* One element of a concatenated interval set: key and key_end both
 * inclusive (unlike the start/end pairs of a plain interval set). */
static int
weft_nft_udp_elem_add(struct nftnl_set *s, const struct weft_nft_udp *u,
    bool comment)
{
	struct nftnl_set_elem *e;
	uint8_t key[36], key_end[36];
	char ud[NFTNL_UDATA_COMMENT_MAXLEN + 8];
	uint32_t udlen;
	size_t klen;

	if ((e = nftnl_set_elem_alloc()) == NULL)
		return -1;
	klen = weft_nft_udp_key(u, u->port_lo, key);
	weft_nft_udp_key(u, u->port_hi, key_end);
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY, key, (uint32_t)klen);
	nftnl_set_elem_set(e, NFTNL_SET_ELEM_KEY_END, key_end, (uint32_t)klen);
	if (comment && !weft_nft_str_empty(u->comment) &&
	    weft_nft_udata_comment(NFTNL_UDATA_SET_ELEM_COMMENT, u->comment, ud,
	    sizeof(ud), &udlen) == 0)
		nftnl_set_elem_set(e, NFTNL_SET_ELEM_USERDATA, ud, udlen);
	nftnl_set_elem_add(s, e);
	return 0;
}

/* Elements of a UDP set, WEFT_NFT_ELEMS_PER_MSG per message. */
static void
weft_nft_add_udp_elems(struct weft_nft_batch *b, const char *setname,
    uint32_t set_id, const struct weft_nft_udp *u, size_t n)
{
	char first[256], last[256], what[600];
	struct nftnl_set *s;
	size_t i, j, k;

	for (i = 0; i < n; i += k) {
		k = n - i < WEFT_NFT_ELEMS_PER_MSG ? n - i :
		    WEFT_NFT_ELEMS_PER_MSG;
		if ((s = weft_nft_elem_set(setname, set_id)) == NULL) {
			b->failed = true;
			return;
		}
		for (j = i; j < i + k; j++)
			if (weft_nft_udp_elem_add(s, &u[j], true) == -1)
				b->failed = true;
		weft_nft_udp_str(&u[i], first, sizeof(first));
		if (k == 1)
			snprintf(what, sizeof(what), "set %s element %s",
			    setname, first);
		else
			snprintf(what, sizeof(what),
			    "set %s elements %s .. %s (%zu)", setname, first,
			    weft_nft_udp_str(&u[i + k - 1], last, sizeof(last)),
			    k);
		weft_nft_elem_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, s, what);
		nftnl_set_free(s);
	}
}

/* 128-bit big-endian arithmetic for interval ends. */
static void
weft_nft_range(const struct weft_cidr *c, uint8_t lo[16], uint8_t hi[16],
    bool *hi_wraps, size_t alen)
{
	size_t i, bits = alen * 8;
	unsigned carry = 1;

	memset(lo, 0, 16);
	memset(hi, 0, 16);
	memcpy(lo, c->addr.bytes, alen);
	memcpy(hi, c->addr.bytes, alen);
	/* Clear host bits of lo (already zero by contract), set them in hi,
	 * then hi + 1 is the first address after the prefix. */
	for (i = c->prefix; i < bits; i++) {
		lo[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
		hi[i / 8] |= (uint8_t)(0x80 >> (i % 8));
	}
	for (i = alen; i-- > 0 && carry;) {
		unsigned v = hi[i] + carry;

		hi[i] = (uint8_t)v;
		carry = v >> 8;
	}
	*hi_wraps = carry != 0;
}

/* The CIDR set of one family as intervals, encoded the way nft does it: an
 * "end" element at zero unless the first range starts there, then a start
 * and an end (one past the last address) per merged range. */
static void
weft_nft_add_cidr_elems(struct weft_nft_batch *b, const char *setname,
    uint32_t set_id, const struct weft_nft_config *cfg, int af)
{
	struct weft_cidr *c;
	struct nftnl_set *s;
	uint8_t lo[16], hi[16], clo[16], chi[16], zero[16] = { 0 };
	size_t alen = af == AF_INET ? 4 : 16, i, n = 0;
	bool wraps = false, cwraps, have = false, first = true;
	char what[256], buf[WEFT_CIDR_STRLEN];
	int nelem = 0;

	if (cfg->n_pod_cidrs == 0)
		return;
	if ((c = calloc(cfg->n_pod_cidrs, sizeof(*c))) == NULL) {
		b->failed = true;
		return;
	}
	for (i = 0; i < cfg->n_pod_cidrs; i++)
		if (cfg->pod_cidrs[i].addr.family == af)
			c[n++] = cfg->pod_cidrs[i];
	if (n == 0) {
		free(c);
		return;
	}
	qsort(c, n, sizeof(*c), weft_nft_cidr_cmp);
	if ((s = weft_nft_elem_set(setname, set_id)) == NULL) {
		free(c);
		b->failed = true;
		return;
	}
	what[0] = '\0';
	for (i = 0; i < n; i++) {
		weft_nft_range(&c[i], clo, chi, &cwraps, alen);
		snprintf(what + strlen(what), sizeof(what) - strlen(what),
		    "%s%s", i ? ", " : "", weft_cidr_str(&c[i], buf,
		    sizeof(buf)));
		if (have && (wraps || memcmp(clo, hi, alen) <= 0)) {
			/* Overlaps or touches the current range: merge. */
			if (!wraps && (cwraps || memcmp(chi, hi, alen) > 0)) {
				memcpy(hi, chi, alen);
				wraps = cwraps;
			}
			continue;
		}
		if (have) {
			if (first && memcmp(lo, zero, alen) != 0)
				nelem += weft_nft_elem_add(s, zero, alen,
				    NFT_SET_ELEM_INTERVAL_END, NULL) == 0;
			first = false;
			nelem += weft_nft_elem_add(s, lo, alen, 0, NULL) == 0;
			if (!wraps)
				nelem += weft_nft_elem_add(s, hi, alen,
				    NFT_SET_ELEM_INTERVAL_END, NULL) == 0;
		}
		memcpy(lo, clo, alen);
		memcpy(hi, chi, alen);
		wraps = cwraps;
		have = true;
	}
	if (first && memcmp(lo, zero, alen) != 0)
		nelem += weft_nft_elem_add(s, zero, alen,
		    NFT_SET_ELEM_INTERVAL_END, NULL) == 0;
	nelem += weft_nft_elem_add(s, lo, alen, 0, NULL) == 0;
	if (!wraps)
		nelem += weft_nft_elem_add(s, hi, alen,
		    NFT_SET_ELEM_INTERVAL_END, NULL) == 0;
	(void)nelem;
	{
		char w2[512];

		snprintf(w2, sizeof(w2), "set %s elements %s", setname, what);
		weft_nft_elem_msg(b, NFT_MSG_NEWSETELEM, NLM_F_CREATE, s, w2);
	}
	nftnl_set_free(s);
	free(c);
}

static void
weft_nft_add_chain(struct weft_nft_batch *b, const char *name, uint32_t hook,
    int32_t prio, const char *comment)
{
	struct nftnl_chain *c;
	struct nlmsghdr *nlh;
	char ud[NFTNL_UDATA_COMMENT_MAXLEN + 8];
	uint32_t udlen;

	if ((c = nftnl_chain_alloc()) == NULL) {
		b->failed = true;
		return;
	}
	nftnl_chain_set_str(c, NFTNL_CHAIN_TABLE, WEFT_NFT_TABLE);
	nftnl_chain_set_str(c, NFTNL_CHAIN_NAME, name);
	nftnl_chain_set_str(c, NFTNL_CHAIN_TYPE, "filter");
	nftnl_chain_set_u32(c, NFTNL_CHAIN_HOOKNUM, hook);
	nftnl_chain_set_s32(c, NFTNL_CHAIN_PRIO, prio);
	nftnl_chain_set_u32(c, NFTNL_CHAIN_POLICY, NF_ACCEPT);
	if (weft_nft_udata_comment(NFTNL_UDATA_CHAIN_COMMENT, comment,
	    ud, sizeof(ud), &udlen) == 0)
		nftnl_chain_set_data(c, NFTNL_CHAIN_USERDATA, ud, udlen);
	nlh = weft_nft_msg_start(b, NFT_MSG_NEWCHAIN, NLM_F_CREATE);
	nftnl_chain_nlmsg_build_payload(nlh, c);
	nftnl_chain_free(c);
	weft_nft_msg_add(b, nlh, "chain %s", name);
}

/* ---- rules: expression helpers ------------------------------------------ */

struct weft_nft_rb {
	struct weft_nft_batch	*b;
	struct nftnl_rule	*r;
	const uint32_t		*set_ids;	/* [NSETS][NFAM] flattened */
	const char		*chain;		/* the rules go here */
	int			 n;		/* rules so far in chain */
};

static struct nftnl_expr *
weft_nft_expr(struct weft_nft_rb *rb, const char *name)
{
	struct nftnl_expr *e;

	if (rb->r == NULL || (e = nftnl_expr_alloc(name)) == NULL) {
		rb->b->failed = true;
		return NULL;
	}
	nftnl_rule_add_expr(rb->r, e);
	return e;
}

static void
x_meta_load(struct weft_nft_rb *rb, uint32_t key)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "meta")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_DREG, REG);
}

static void
x_cmp(struct weft_nft_rb *rb, uint32_t op, const void *data, uint32_t len)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "cmp")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_SREG, REG);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CMP_OP, op);
	nftnl_expr_set(e, NFTNL_EXPR_CMP_DATA, data, len);
}

static void
x_cmp_u8(struct weft_nft_rb *rb, uint8_t v)
{
	x_cmp(rb, NFT_CMP_EQ, &v, 1);
}

static void
x_payload_reg(struct weft_nft_rb *rb, uint32_t base, uint32_t off,
    uint32_t len, uint32_t reg)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "payload")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_DREG, reg);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_BASE, base);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET, off);
	nftnl_expr_set_u32(e, NFTNL_EXPR_PAYLOAD_LEN, len);
}

static void
x_payload(struct weft_nft_rb *rb, uint32_t base, uint32_t off, uint32_t len)
{
	x_payload_reg(rb, base, off, len, REG);
}

static void
x_nfproto(struct weft_nft_rb *rb, int fam)
{
	x_meta_load(rb, NFT_META_NFPROTO);
	x_cmp_u8(rb, fam == V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
}

static void
x_l4proto(struct weft_nft_rb *rb, uint8_t proto)
{
	x_meta_load(rb, NFT_META_L4PROTO);
	x_cmp_u8(rb, proto);
}

static void
x_l4proto_tcp(struct weft_nft_rb *rb)
{
	x_l4proto(rb, IPPROTO_TCP);
}

/* `ip saddr` / `ip6 daddr` ... into the register. */
static void
x_addr(struct weft_nft_rb *rb, int fam, bool src)
{
	if (fam == V4)
		x_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, src ? 12 : 16, 4);
	else
		x_payload(rb, NFT_PAYLOAD_NETWORK_HEADER, src ? 8 : 24, 16);
}

static void
x_lookup(struct weft_nft_rb *rb, enum weft_nft_setidx si, int fam, bool inv)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "lookup")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SREG, REG);
	nftnl_expr_set_str(e, NFTNL_EXPR_LOOKUP_SET, weft_nft_sets[si].name[fam]);
	nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_SET_ID,
	    rb->set_ids[si * NFAM + fam]);
	if (inv)
		nftnl_expr_set_u32(e, NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
}

/* `ip saddr @set` (dependency included), like nft. */
static void
x_addr_in(struct weft_nft_rb *rb, int fam, bool src, enum weft_nft_setidx si,
    bool inv)
{
	x_addr(rb, fam, src);
	x_lookup(rb, si, fam, inv);
}

/* What capture keys on: TCP whose source (src) or destination is in this
 * node's pod CIDRs and is not an exempt pod.  The capture rules and the
 * fail-closed rules that back them share it, so they can never drift
 * apart; the UDP policy's drop rule keys on the same pods. */
static void
x_pods_proto(struct weft_nft_rb *rb, int fam, bool src, uint8_t proto)
{
	x_nfproto(rb, fam);
	x_addr_in(rb, fam, src, SET_CIDRS, false);
	x_addr_in(rb, fam, src, SET_EXEMPT, true);
	x_l4proto(rb, proto);
}

static void
x_captured(struct weft_nft_rb *rb, int fam, bool src)
{
	x_pods_proto(rb, fam, src, IPPROTO_TCP);
}

/* `[ip saddr .] ip daddr . udp dport @set`: the fields go into consecutive
 * 32-bit registers from reg 1 on, numbered as nft does (a 16-byte field
 * takes a whole 128-bit register, so v6 keys use reg 1, 2, 3). */
static void
x_udp_lookup(struct weft_nft_rb *rb, int fam, enum weft_nft_setidx si)
{
	bool src = weft_nft_sets[si].key == KEY_SRC_DST_PORT;
	uint32_t reg;

	x_nfproto(rb, fam);
	x_l4proto(rb, IPPROTO_UDP);
	if (fam == V4) {
		reg = NFT_REG_1;
		if (src) {
			x_payload_reg(rb, NFT_PAYLOAD_NETWORK_HEADER, 12, 4, reg);
			reg = NFT_REG32_01;
		}
		x_payload_reg(rb, NFT_PAYLOAD_NETWORK_HEADER, 16, 4, reg);
		x_payload_reg(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2,
		    reg == NFT_REG_1 ? NFT_REG32_01 : NFT_REG32_02);
	} else {
		reg = NFT_REG_1;
		if (src)
			x_payload_reg(rb, NFT_PAYLOAD_NETWORK_HEADER, 8, 16,
			    reg++);
		x_payload_reg(rb, NFT_PAYLOAD_NETWORK_HEADER, 24, 16, reg++);
		x_payload_reg(rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, reg);
	}
	x_lookup(rb, si, fam, false);
}


static void
x_iifname_prefix(struct weft_nft_rb *rb, const char *prefix)
{
	x_meta_load(rb, NFT_META_IIFNAME);
	/* A wildcard "wv*" is a compare of the prefix bytes without NUL. */
	x_cmp(rb, NFT_CMP_EQ, prefix, (uint32_t)strlen(prefix));
}

/* `fib saddr . iif oif missing` */
static void
x_fib_rpf_missing(struct weft_nft_rb *rb)
{
	struct nftnl_expr *e;
	uint32_t zero = 0;

	if ((e = weft_nft_expr(rb, "fib")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, REG);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_OIF);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS,
	    NFTA_FIB_F_SADDR | NFTA_FIB_F_IIF | NFTA_FIB_F_PRESENT);
	x_cmp(rb, NFT_CMP_EQ, &zero, sizeof(zero));
}

/* `fib daddr type local` */
static void
x_fib_daddr_local(struct weft_nft_rb *rb)
{
	struct nftnl_expr *e;
	uint32_t local = RTN_LOCAL;

	if ((e = weft_nft_expr(rb, "fib")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_DREG, REG);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
	nftnl_expr_set_u32(e, NFTNL_EXPR_FIB_FLAGS, NFTA_FIB_F_DADDR);
	x_cmp(rb, NFT_CMP_EQ, &local, sizeof(local));
}

static void
x_ct_direction(struct weft_nft_rb *rb, uint8_t dir)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "ct")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_KEY, NFT_CT_DIRECTION);
	nftnl_expr_set_u32(e, NFTNL_EXPR_CT_DREG, REG);
	x_cmp_u8(rb, dir);
}

static void
x_socket(struct weft_nft_rb *rb, uint32_t key, uint8_t want)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "socket")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_KEY, key);
	nftnl_expr_set_u32(e, NFTNL_EXPR_SOCKET_DREG, REG);
	x_cmp_u8(rb, want);
}

static void
x_counter(struct weft_nft_rb *rb)
{
	weft_nft_expr(rb, "counter");
}

static void
x_imm_data(struct weft_nft_rb *rb, const void *data, uint32_t len)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "immediate")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, REG);
	nftnl_expr_set(e, NFTNL_EXPR_IMM_DATA, data, len);
}

static void
x_verdict(struct weft_nft_rb *rb, int verdict)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "immediate")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
	nftnl_expr_set_u32(e, NFTNL_EXPR_IMM_VERDICT, (uint32_t)verdict);
}

static void
x_mark_set(struct weft_nft_rb *rb, uint32_t mark)
{
	struct nftnl_expr *e;

	x_imm_data(rb, &mark, sizeof(mark));
	if ((e = weft_nft_expr(rb, "meta")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_KEY, NFT_META_MARK);
	nftnl_expr_set_u32(e, NFTNL_EXPR_META_SREG, REG);
}

/* `tproxy ip to :port meta mark set mark accept`.  tproxy is not terminal:
 * when no transparent socket takes the packet it breaks out of the rule and
 * the packet goes on to the next one (the fail-closed reject). */
static void
x_tproxy_accept(struct weft_nft_rb *rb, int fam, uint16_t port, uint32_t mark)
{
	struct nftnl_expr *e;
	uint16_t nport = htons(port);

	x_imm_data(rb, &nport, sizeof(nport));
	if ((e = weft_nft_expr(rb, "tproxy")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_FAMILY,
	    fam == V4 ? NFPROTO_IPV4 : NFPROTO_IPV6);
	nftnl_expr_set_u32(e, NFTNL_EXPR_TPROXY_REG_PORT, REG);
	x_mark_set(rb, mark);
	x_verdict(rb, NF_ACCEPT);
}

static void
x_reject_tcp_reset(struct weft_nft_rb *rb)
{
	struct nftnl_expr *e;

	if ((e = weft_nft_expr(rb, "reject")) == NULL)
		return;
	nftnl_expr_set_u32(e, NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
	nftnl_expr_set_u8(e, NFTNL_EXPR_REJECT_CODE, 0);
}

static void
weft_nft_rule_begin(struct weft_nft_rb *rb)
{
	if ((rb->r = nftnl_rule_alloc()) == NULL) {
		rb->b->failed = true;
		return;
	}
	nftnl_rule_set_str(rb->r, NFTNL_RULE_TABLE, WEFT_NFT_TABLE);
	nftnl_rule_set_str(rb->r, NFTNL_RULE_CHAIN, rb->chain);
	nftnl_rule_set_u32(rb->r, NFTNL_RULE_FAMILY, NFPROTO_INET);
}

static void
weft_nft_rule_end(struct weft_nft_rb *rb, const char *comment)
{
	struct nlmsghdr *nlh;
	char ud[NFTNL_UDATA_COMMENT_MAXLEN + 8];
	uint32_t udlen;

	if (rb->r == NULL)
		return;
	if (weft_nft_udata_comment(NFTNL_UDATA_RULE_COMMENT, comment, ud,
	    sizeof(ud), &udlen) == 0)
		nftnl_rule_set_data(rb->r, NFTNL_RULE_USERDATA, ud, udlen);
	else
		rb->b->failed = true;
	nlh = weft_nft_msg_start(rb->b, NFT_MSG_NEWRULE,
	    NLM_F_CREATE | NLM_F_APPEND);
	nftnl_rule_nlmsg_build_payload(nlh, rb->r);
	nftnl_rule_free(rb->r);
	rb->r = NULL;
	rb->n++;
	weft_nft_msg_add(rb->b, nlh, "rule %d of chain %s \"%s\"", rb->n,
	    rb->chain, comment);
}

/* ---- the table ---------------------------------------------------------- */

#define C_OWN		"weft's own sockets"
#define C_SPOOF_IF	"spoofed source address from a pod interface"
#define C_SPOOF_CIDR	"pod address arriving on the wrong interface (spoofed)"
#define C_SOCKET	"packets of connections weft proxies"
#define C_LOCAL		"to this node itself"
#define C_REPLY		"replies of connections weft does not proxy"
#define C_TUNNEL	"mTLS tunnel to a local pod"
#define C_OUTBOUND	"TCP from a local meshed pod"
#define C_INBOUND	"plaintext TCP to a local pod"
#define C_FAILCLOSED	"captured but weft is not listening: refuse (fail closed)"
#define C_UDP_REPLY	"UDP replies: allowed when their flow began"
#define C_UDP_GRANT	"UDP a TrafficTarget grants to this source (UDPRoute)"
#define C_UDP_ANY	"UDP to a pod that takes it from every source"
#define C_UDP_DENY	"UDP to a local meshed pod that no TrafficTarget grants"

static void
weft_nft_add_rules(struct weft_nft_batch *b, const struct weft_nft_config *cfg,
    const uint32_t *set_ids)
{
	struct weft_nft_rb rb = { .b = b, .set_ids = set_ids,
	    .chain = CHAIN_PREROUTING };
	const char *prefix = cfg->pod_iface_prefix;
	static const uint8_t any6[16];
	int fam;

	/* 1. Packets of weft's own sockets (SO_MARK) are never captured. */
	weft_nft_rule_begin(&rb);
	x_meta_load(&rb, NFT_META_MARK);
	x_cmp(&rb, NFT_CMP_EQ, &cfg->own_mark, sizeof(cfg->own_mark));
	x_counter(&rb);
	x_verdict(&rb, NFT_RETURN);
	weft_nft_rule_end(&rb, C_OWN);

	/* 2. Anti-spoofing: source identity on the node is the source address,
	 * so a packet must come in on the interface its source is routed
	 * through (strict reverse path).  On pod interfaces for any source, so
	 * a pod cannot pose as an outside host either; and for pod addresses on
	 * any interface.  v6: the unspecified source of DAD/MLD is not
	 * routable and not spoofing. */
	if (!weft_nft_str_empty(prefix)) {
		weft_nft_rule_begin(&rb);
		x_nfproto(&rb, V4);
		x_iifname_prefix(&rb, prefix);
		x_fib_rpf_missing(&rb);
		x_counter(&rb);
		x_verdict(&rb, NF_DROP);
		weft_nft_rule_end(&rb, C_SPOOF_IF);

		weft_nft_rule_begin(&rb);
		x_iifname_prefix(&rb, prefix);
		x_nfproto(&rb, V6);
		x_addr(&rb, V6, true);
		x_cmp(&rb, NFT_CMP_NEQ, any6, sizeof(any6));
		x_fib_rpf_missing(&rb);
		x_counter(&rb);
		x_verdict(&rb, NF_DROP);
		weft_nft_rule_end(&rb, C_SPOOF_IF);
	}
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_nfproto(&rb, fam);
		x_addr_in(&rb, fam, true, SET_CIDRS, false);
		x_fib_rpf_missing(&rb);
		x_counter(&rb);
		x_verdict(&rb, NF_DROP);
		weft_nft_rule_end(&rb, C_SPOOF_CIDR);
	}

	/* 3. Every packet of a connection a transparent weft socket owns:
	 * replies to its upstream sockets, later packets of accepted ones.
	 * Wildcard-bound sockets (the listeners) are left to the capture rules,
	 * as iptables' socket match does by default: otherwise any forwarded
	 * SYN to port 15001 would match the listener. */
	weft_nft_rule_begin(&rb);
	x_l4proto_tcp(&rb);
	x_socket(&rb, NFT_SOCKET_TRANSPARENT, 1);
	x_socket(&rb, NFT_SOCKET_WILDCARD, 0);
	x_counter(&rb);
	x_mark_set(&rb, cfg->tproxy_mark);
	x_verdict(&rb, NF_ACCEPT);
	weft_nft_rule_end(&rb, C_SOCKET);

	/* 4. Traffic to the node's own addresses is not pod traffic.  `type
	 * local` reads the local table only, so the `local default` route of
	 * weft's policy table does not make every address local. */
	weft_nft_rule_begin(&rb);
	x_fib_daddr_local(&rb);
	x_counter(&rb);
	x_verdict(&rb, NFT_RETURN);
	weft_nft_rule_end(&rb, C_LOCAL);

	/* 4b. Replies of connections that were not captured (opened before the
	 * table existed, DNAT'd NodePort traffic to a pod, ...) must not be
	 * hijacked into a listener, which would reset them.  Untracked or
	 * invalid packets have no direction and stay subject to capture. */
	weft_nft_rule_begin(&rb);
	x_ct_direction(&rb, 1 /* IP_CT_DIR_REPLY */);
	x_counter(&rb);
	x_verdict(&rb, NFT_RETURN);
	weft_nft_rule_end(&rb, C_REPLY);

	/* 5-7. Capture.  Keyed on the node's pod CIDRs minus the exempt pods,
	 * not on known meshed pods: a pod weft has not heard of yet is held,
	 * never let through unmeshed (boot safety).  Outbound needs no
	 * interface match: rule 2 guarantees pod sources come from pods. */
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_captured(&rb, fam, false);
		{
			uint16_t p = htons(cfg->tunnel_port);

			x_payload(&rb, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2);
			x_cmp(&rb, NFT_CMP_EQ, &p, sizeof(p));
		}
		x_counter(&rb);
		x_tproxy_accept(&rb, fam, cfg->tunnel_port, cfg->tproxy_mark);
		weft_nft_rule_end(&rb, C_TUNNEL);
	}
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_captured(&rb, fam, true);
		x_counter(&rb);
		x_tproxy_accept(&rb, fam, cfg->outbound_port, cfg->tproxy_mark);
		weft_nft_rule_end(&rb, C_OUTBOUND);
	}
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_captured(&rb, fam, false);
		x_counter(&rb);
		x_tproxy_accept(&rb, fam, cfg->inbound_port, cfg->tproxy_mark);
		weft_nft_rule_end(&rb, C_INBOUND);
	}

	/* 8. Fail closed: what the capture rules matched but no listener took
	 * (weft dead or restarting) is refused here instead of being routed in
	 * clear.  The tunnel's traffic is a subset of the inbound match. */
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_captured(&rb, fam, true);
		x_counter(&rb);
		x_reject_tcp_reset(&rb);
		weft_nft_rule_end(&rb, C_FAILCLOSED);

		weft_nft_rule_begin(&rb);
		x_captured(&rb, fam, false);
		x_counter(&rb);
		x_reject_tcp_reset(&rb);
		weft_nft_rule_end(&rb, C_FAILCLOSED);
	}
}

/* UDP is not proxied (SPEC §4.3): the destination node's forward hook
 * admits UDP to its meshed pods only as the policy grants it.  Forward, not
 * prerouting: it runs after DNAT (kube-proxy's, at dstnat), so it sees the
 * pod and the port the pod receives on even for a Service's address,
 * same-node and cross-node alike, and never sees what the node itself sends
 * (output) or receives (input).  Sources are trustworthy for local pods (the
 * anti-spoofing rules of prerouting ran first), not for other nodes' pods
 * (docs/policy.md, "UDP"). */
static void
weft_nft_add_udp_rules(struct weft_nft_batch *b, const uint32_t *set_ids)
{
	struct weft_nft_rb rb = { .b = b, .set_ids = set_ids,
	    .chain = CHAIN_FORWARD };
	int fam;

	/* Replies pass: their flow's first packet was checked.  Every packet
	 * of the original direction is checked again, so a flow stops as soon
	 * as its grant is revoked, with no conntrack flush. */
	weft_nft_rule_begin(&rb);
	x_l4proto(&rb, IPPROTO_UDP);
	x_ct_direction(&rb, 1 /* IP_CT_DIR_REPLY */);
	x_counter(&rb);
	x_verdict(&rb, NFT_RETURN);
	weft_nft_rule_end(&rb, C_UDP_REPLY);

	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_udp_lookup(&rb, fam, SET_UDP);
		x_counter(&rb);
		x_verdict(&rb, NF_ACCEPT);
		weft_nft_rule_end(&rb, C_UDP_GRANT);
	}
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_udp_lookup(&rb, fam, SET_UDP_ANY);
		x_counter(&rb);
		x_verdict(&rb, NF_ACCEPT);
		weft_nft_rule_end(&rb, C_UDP_ANY);
	}
	/* Everything else to a pod capture would hold: pods the node has not
	 * heard of yet included (boot safety), exempt pods excluded. */
	for (fam = V4; fam < NFAM; fam++) {
		weft_nft_rule_begin(&rb);
		x_pods_proto(&rb, fam, false, IPPROTO_UDP);
		x_counter(&rb);
		x_verdict(&rb, NF_DROP);
		weft_nft_rule_end(&rb, C_UDP_DENY);
	}
}

int
weft_nft_build_apply(struct weft_nft_batch *b,
    const struct weft_nft_config *cfg)
{
	uint32_t set_ids[NSETS * NFAM];
	const struct weft_nft_pod *src;
	struct weft_nft_pod *pods;
	struct weft_nft_udp *udp;
	bool nomem = false;
	size_t n, nsrc;
	int si, fam;

	weft_nft_batch_open(b);
	/* Delete whatever is there and create it anew, in one transaction:
	 * the bare NEWTABLE makes the DELTABLE valid when the table does not
	 * exist yet (what `table t; delete table t; table t {...}` does). */
	weft_nft_add_table(b, NFT_MSG_NEWTABLE, false,
	    "table inet " WEFT_NFT_TABLE " (ensure it exists)");
	weft_nft_add_table(b, NFT_MSG_DELTABLE, false,
	    "delete table inet " WEFT_NFT_TABLE);
	weft_nft_add_table(b, NFT_MSG_NEWTABLE, true,
	    "table inet " WEFT_NFT_TABLE);

	for (si = 0; si < NSETS; si++)
		for (fam = V4; fam < NFAM; fam++) {
			set_ids[si * NFAM + fam] = b->next_set_id++;
			weft_nft_add_set(b, si, fam, set_ids[si * NFAM + fam]);
		}
	for (fam = V4; fam < NFAM; fam++)
		weft_nft_add_cidr_elems(b, weft_nft_sets[SET_CIDRS].name[fam],
		    set_ids[SET_CIDRS * NFAM + fam], cfg, weft_nft_afs[fam]);
	for (si = SET_MESHED; si <= SET_EXEMPT; si++) {
		src = si == SET_MESHED ? cfg->meshed : cfg->exempt;
		nsrc = si == SET_MESHED ? cfg->n_meshed : cfg->n_exempt;
		for (fam = V4; fam < NFAM; fam++) {
			pods = weft_nft_pods_family(src, nsrc,
			    weft_nft_afs[fam], &n, &nomem);
			weft_nft_add_pod_elems(b, weft_nft_sets[si].name[fam],
			    set_ids[si * NFAM + fam], pods, n);
			free(pods);
		}
	}
	for (si = SET_UDP; si <= SET_UDP_ANY; si++)
		for (fam = V4; fam < NFAM; fam++) {
			udp = weft_nft_udp_family(cfg->udp, cfg->n_udp,
			    weft_nft_afs[fam], si == SET_UDP_ANY, &n, &nomem);
			weft_nft_add_udp_elems(b, weft_nft_sets[si].name[fam],
			    set_ids[si * NFAM + fam], udp, n);
			free(udp);
		}
	weft_nft_add_chain(b, CHAIN_PREROUTING, NF_INET_PRE_ROUTING,
	    -150 /* mangle */, CHAIN_COMMENT);
	weft_nft_add_rules(b, cfg, set_ids);
	weft_nft_add_chain(b, CHAIN_FORWARD, NF_INET_FORWARD, 0 /* filter */,
	    CHAIN_FORWARD_COMMENT);
	weft_nft_add_udp_rules(b, set_ids);
	weft_nft_batch_close(b);
	return b->failed || nomem ? -1 : 0;
}

/* One element per message, so a kernel error names the pod. */
static void
weft_nft_pod_msg(struct weft_nft_batch *b, uint16_t type, const char *setname,
    const void *elem)
{
	const struct weft_nft_pod *p = elem;
	char what[512], ps[WEFT_IP_STRLEN + WEFT_NFT_COMMENT_MAX + 4];
	struct nftnl_set *s;

	if ((s = weft_nft_elem_set(setname, 0)) == NULL ||
	    weft_nft_elem_add(s, p->ip.bytes, weft_ip_len(&p->ip), 0,
	    type == NFT_MSG_NEWSETELEM ? p->comment : NULL) == -1) {
		nftnl_set_free(s);
		b->failed = true;
		return;
	}
	snprintf(what, sizeof(what), "set %s: %s %s", setname,
	    type == NFT_MSG_NEWSETELEM ? "add" : "delete",
	    weft_nft_pod_str(p, ps, sizeof(ps)));
	/* EXCL: an element already there means our view of the kernel is
	 * wrong; say so rather than carry on (the caller re-applies). */
	weft_nft_elem_msg(b, type,
	    type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE | NLM_F_EXCL : 0, s, what);
	nftnl_set_free(s);
}

typedef void weft_nft_msg_fn(struct weft_nft_batch *, uint16_t,
	    const char *, const void *);

/* Walk two sorted, de-duplicated arrays of elements (size bytes each,
 * ordered by cmp, a comment at comment_off); pass 0 emits deletions (gone,
 * or comment changed), pass 1 additions.  Deletions go first so that a
 * changed comment is a delete then an add of the same key in one
 * transaction.  An element is its whole key: a UDP port range that grows
 * is a delete and an add. */
static int
weft_nft_diff_set(struct weft_nft_batch *b, const char *setname,
    const void *old, size_t no, const void *new, size_t nn, size_t size,
    int (*cmp)(const void *, const void *), size_t comment_off,
    weft_nft_msg_fn *msg, int pass)
{
	const char *o = old, *n = new;
	size_t i = 0, j = 0;
	int c, count = 0;

	while (i < no || j < nn) {
		const char *oe = o + i * size, *ne = n + j * size;

		if (i == no)
			c = 1;
		else if (j == nn)
			c = -1;
		else
			c = cmp(oe, ne);
		if (c < 0) {
			if (pass == 0) {
				msg(b, NFT_MSG_DELSETELEM, setname, oe);
				count++;
			}
			i++;
		} else if (c > 0) {
			if (pass == 1) {
				msg(b, NFT_MSG_NEWSETELEM, setname, ne);
				count++;
			}
			j++;
		} else {
			if (strncmp(oe + comment_off, ne + comment_off,
			    WEFT_NFT_COMMENT_MAX) != 0) {
				msg(b, pass == 0 ? NFT_MSG_DELSETELEM :
				    NFT_MSG_NEWSETELEM, setname,
				    pass == 0 ? oe : ne);
				count++;
			}
			i++;
			j++;
		}
	}
	return count;
}

/* One UDP grant per message, like pods. */
static void
weft_nft_udp_msg(struct weft_nft_batch *b, uint16_t type, const char *setname,
    const void *elem)
{
	const struct weft_nft_udp *u = elem;
	char what[600], us[256];
	struct nftnl_set *s;

	if ((s = weft_nft_elem_set(setname, 0)) == NULL ||
	    weft_nft_udp_elem_add(s, u, type == NFT_MSG_NEWSETELEM) == -1) {
		nftnl_set_free(s);
		b->failed = true;
		return;
	}
	snprintf(what, sizeof(what), "set %s: %s %s", setname,
	    type == NFT_MSG_NEWSETELEM ? "add" : "delete",
	    weft_nft_udp_str(u, us, sizeof(us)));
	weft_nft_elem_msg(b, type,
	    type == NFT_MSG_NEWSETELEM ? NLM_F_CREATE | NLM_F_EXCL : 0, s, what);
	nftnl_set_free(s);
}

int
weft_nft_build_update(struct weft_nft_batch *b,
    const struct weft_nft_config *old, const struct weft_nft_config *new)
{
	struct weft_nft_pod *o[2][NFAM], *n[2][NFAM];
	struct weft_nft_udp *uo[2][NFAM], *un[2][NFAM];
	size_t no[2][NFAM], nn[2][NFAM], nuo[2][NFAM], nun[2][NFAM];
	bool nomem = false;
	int si, fam, pass, count = 0;

	for (si = 0; si < 2; si++)
		for (fam = V4; fam < NFAM; fam++) {
			o[si][fam] = weft_nft_pods_family(
			    si == 0 ? old->meshed : old->exempt,
			    si == 0 ? old->n_meshed : old->n_exempt,
			    weft_nft_afs[fam], &no[si][fam], &nomem);
			n[si][fam] = weft_nft_pods_family(
			    si == 0 ? new->meshed : new->exempt,
			    si == 0 ? new->n_meshed : new->n_exempt,
			    weft_nft_afs[fam], &nn[si][fam], &nomem);
			/* si 0: udp-allow, 1: udp-allow-any */
			uo[si][fam] = weft_nft_udp_family(old->udp, old->n_udp,
			    weft_nft_afs[fam], si == 1, &nuo[si][fam], &nomem);
			un[si][fam] = weft_nft_udp_family(new->udp, new->n_udp,
			    weft_nft_afs[fam], si == 1, &nun[si][fam], &nomem);
		}
	if (!nomem) {
		/* Every deletion before any addition, so that a changed element
		 * never overlaps its old self in a set. */
		weft_nft_batch_open(b);
		for (pass = 0; pass < 2; pass++) {
			for (si = 0; si < 2; si++)
				for (fam = V4; fam < NFAM; fam++)
					count += weft_nft_diff_set(b,
					    weft_nft_sets[SET_MESHED + si].name[fam],
					    o[si][fam], no[si][fam],
					    n[si][fam], nn[si][fam],
					    sizeof(struct weft_nft_pod),
					    weft_nft_pod_cmp, offsetof(struct
					    weft_nft_pod, comment),
					    weft_nft_pod_msg, pass);
			for (si = 0; si < 2; si++)
				for (fam = V4; fam < NFAM; fam++)
					count += weft_nft_diff_set(b,
					    weft_nft_sets[SET_UDP + si].name[fam],
					    uo[si][fam], nuo[si][fam],
					    un[si][fam], nun[si][fam],
					    sizeof(struct weft_nft_udp),
					    weft_nft_udp_cmp, offsetof(struct
					    weft_nft_udp, comment),
					    weft_nft_udp_msg, pass);
		}
		weft_nft_batch_close(b);
	}
	for (si = 0; si < 2; si++)
		for (fam = V4; fam < NFAM; fam++) {
			free(o[si][fam]);
			free(n[si][fam]);
			free(uo[si][fam]);
			free(un[si][fam]);
		}
	return b->failed || nomem ? -1 : count;
}

int
weft_nft_build_delete(struct weft_nft_batch *b)
{
	weft_nft_batch_open(b);
	weft_nft_add_table(b, NFT_MSG_NEWTABLE, false,
	    "table inet " WEFT_NFT_TABLE " (ensure it exists)");
	weft_nft_add_table(b, NFT_MSG_DELTABLE, false,
	    "delete table inet " WEFT_NFT_TABLE);
	weft_nft_batch_close(b);
	return b->failed ? -1 : 0;
}

/* ---- offline entry points (nft.h) --------------------------------------- */

size_t
weft_nft_build_apply_batch(const struct weft_nft_config *cfg, void *buf,
    size_t len, uint32_t seq)
{
	struct weft_nft_batch b;
	size_t out = 0;

	if (weft_nft_batch_init(&b, buf, len, seq, false) == -1)
		return 0;
	if (weft_nft_build_apply(&b, cfg) == 0)
		out = b.len;
	weft_nft_batch_free(&b);
	return out;
}

int
weft_nft_build_update_batch(const struct weft_nft_config *old,
    const struct weft_nft_config *new, void *buf, size_t len, uint32_t seq,
    size_t *outlen)
{
	struct weft_nft_batch b;
	int n;

	*outlen = 0;
	if (weft_nft_batch_init(&b, buf, len, seq, false) == -1)
		return -1;
	n = weft_nft_build_update(&b, old, new);
	if (n > 0)
		*outlen = b.len;
	weft_nft_batch_free(&b);
	return n;
}
