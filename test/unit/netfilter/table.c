/* netfilter/table.c offline: build the batches, parse them back with
 * libnftnl, compare (the way libnftnl's own tests work).  No root needed. */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/fib_rules.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>

#include "weft/ip.h"
#include "weft/nft.h"
#include "weft/proxy.h"

#include "../../tap.h"

#define BUFSZ	(1 << 20)

/* ---- parsing helpers ---------------------------------------------------- */

static const char *
udata_comment(const void *ud, uint32_t len, uint8_t type)
{
	const struct nftnl_udata *a;
	const char *p = ud;

	for (a = ud; (const char *)a + 2 <= p + len;
	    a = (const struct nftnl_udata *)((const char *)a + 2 +
	    nftnl_udata_len(a)))
		if (nftnl_udata_type(a) == type) {
			const char *v = nftnl_udata_get(a);

			if (nftnl_udata_len(a) > 0 &&
			    v[nftnl_udata_len(a) - 1] == '\0')
				return v;
		}
	return NULL;
}

static void
hex(char *out, size_t outlen, const void *data, uint32_t len)
{
	const uint8_t *d = data;
	uint32_t i;

	out[0] = '\0';
	for (i = 0; i < len && 2 * i + 3 < outlen; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static const char *
meta_key(uint32_t k)
{
	switch (k) {
	case NFT_META_MARK:	return "mark";
	case NFT_META_NFPROTO:	return "nfproto";
	case NFT_META_L4PROTO:	return "l4proto";
	case NFT_META_IIFNAME:	return "iifname";
	}
	return "?";
}

struct summ {
	char	 s[1024];
};

static void
summ_add(struct summ *sm, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
summ_add(struct summ *sm, const char *fmt, ...)
{
	va_list ap;
	size_t l = strlen(sm->s);

	if (l)
		l += (size_t)snprintf(sm->s + l, sizeof(sm->s) - l, "; ");
	va_start(ap, fmt);
	vsnprintf(sm->s + l, sizeof(sm->s) - l, fmt, ap);
	va_end(ap);
}

static int
summ_expr(struct nftnl_expr *e, void *arg)
{
	struct summ *sm = arg;
	const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);
	char h[80];
	uint32_t len;
	const void *d;

	if (strcmp(name, "meta") == 0) {
		if (nftnl_expr_is_set(e, NFTNL_EXPR_META_DREG))
			summ_add(sm, "meta %s",
			    meta_key(nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY)));
		else
			summ_add(sm, "meta set %s",
			    meta_key(nftnl_expr_get_u32(e, NFTNL_EXPR_META_KEY)));
	} else if (strcmp(name, "cmp") == 0) {
		d = nftnl_expr_get(e, NFTNL_EXPR_CMP_DATA, &len);
		hex(h, sizeof(h), d, len);
		summ_add(sm, "cmp %s %s",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_CMP_OP) == NFT_CMP_EQ ?
		    "eq" : "neq", h);
	} else if (strcmp(name, "payload") == 0) {
		uint32_t reg = nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_DREG);
		char r[16] = "";

		/* The register only when it is not reg 1 (concatenations). */
		if (reg != NFT_REG_1)
			snprintf(r, sizeof(r), ">r%u", reg);
		summ_add(sm, "payload %s+%u/%u%s",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_BASE) ==
		    NFT_PAYLOAD_NETWORK_HEADER ? "nh" : "th",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_OFFSET),
		    nftnl_expr_get_u32(e, NFTNL_EXPR_PAYLOAD_LEN), r);
	} else if (strcmp(name, "lookup") == 0) {
		summ_add(sm, "lookup %s@%s",
		    nftnl_expr_is_set(e, NFTNL_EXPR_LOOKUP_FLAGS) &&
		    (nftnl_expr_get_u32(e, NFTNL_EXPR_LOOKUP_FLAGS) &
		    NFT_LOOKUP_F_INV) ? "!" : "",
		    nftnl_expr_get_str(e, NFTNL_EXPR_LOOKUP_SET));
	} else if (strcmp(name, "fib") == 0) {
		summ_add(sm, "fib flags 0x%x result %u",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_FIB_FLAGS),
		    nftnl_expr_get_u32(e, NFTNL_EXPR_FIB_RESULT));
	} else if (strcmp(name, "ct") == 0) {
		summ_add(sm, "ct %s",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_CT_KEY) == NFT_CT_DIRECTION ?
		    "direction" : "?");
	} else if (strcmp(name, "socket") == 0) {
		uint32_t k = nftnl_expr_get_u32(e, NFTNL_EXPR_SOCKET_KEY);

		summ_add(sm, "socket %s", k == NFT_SOCKET_TRANSPARENT ?
		    "transparent" : k == NFT_SOCKET_WILDCARD ? "wildcard" : "?");
	} else if (strcmp(name, "counter") == 0) {
		summ_add(sm, "counter");
	} else if (strcmp(name, "immediate") == 0) {
		if (nftnl_expr_is_set(e, NFTNL_EXPR_IMM_VERDICT)) {
			int v = (int)nftnl_expr_get_u32(e, NFTNL_EXPR_IMM_VERDICT);

			summ_add(sm, "%s", v == NF_ACCEPT ? "accept" :
			    v == NF_DROP ? "drop" : v == NFT_RETURN ? "return" :
			    "?");
		} else {
			d = nftnl_expr_get(e, NFTNL_EXPR_IMM_DATA, &len);
			hex(h, sizeof(h), d, len);
			summ_add(sm, "imm %s", h);
		}
	} else if (strcmp(name, "tproxy") == 0) {
		summ_add(sm, "tproxy %s",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_TPROXY_FAMILY) ==
		    NFPROTO_IPV4 ? "ip" : "ip6");
	} else if (strcmp(name, "reject") == 0) {
		summ_add(sm, "reject %s",
		    nftnl_expr_get_u32(e, NFTNL_EXPR_REJECT_TYPE) ==
		    NFT_REJECT_TCP_RST ? "tcp-rst" : "?");
	} else {
		summ_add(sm, "%s", name);
	}
	return 0;
}

/* ---- the parsed batch --------------------------------------------------- */

#define MAXR 64
#define MAXE 256

struct elem {
	char	 set[64];
	char	 key[160];		/* "a . b . port" for concatenations */
	char	 key_end[160];		/* "" when absent */
	char	 comment[160];
	uint32_t flags;
	uint16_t type;		/* NEWSETELEM / DELSETELEM */
	uint16_t nlflags;
};

struct parsed {
	int	 n_msgs, begin, end, bad;
	uint16_t types[512];
	int	 n_types;
	char	 table_comment[160];
	int	 n_newtable, n_deltable;
	char	 sets[16][64];
	uint32_t set_keytype[16], set_keylen[16], set_flags[16];
	char	 set_comment[16][160];
	char	 set_fields[16][16];	/* DESC_CONCAT lengths, "4.4.2" */
	uint32_t set_byteorder[16];	/* user data KEYBYTEORDER */
	int	 n_sets;
	char	 chains[4][64];
	uint32_t chain_hooks[4], chain_policies[4];
	int32_t	 chain_prios[4];
	char	 chain_types[4][32];
	char	 chain_comments[4][160];
	int	 n_chains;
	struct summ rules[MAXR];
	char	 rule_chain[MAXR][64];
	char	 rule_comment[MAXR][160];
	bool	 rule_counter[MAXR];
	int	 n_rules;
	struct elem elems[MAXE];
	int	 n_elems;
	uint32_t seq_first, seq_last;
	bool	 seq_ok, ack_ok;
};

/* libnftnl (1.2.4) numbers the element nests of a request 1, 2, 3, ... (the
 * kernel ignores the nest type) but its parser wants NFTA_LIST_ELEM on each,
 * so nftnl_set_elems_nlmsg_parse() returns -1 after the first element of a
 * request it built itself.  The element list is walked here with libmnl;
 * the set name still comes from libnftnl. */
/* A key as nft would print it: an address, or a concatenation of addresses
 * and a port, each field padded to 4 bytes (the layouts weft uses). */
static void
key_str(const uint8_t *k, uint16_t len, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN];
	int af = len == 4 || len == 8 || len == 12 ? AF_INET : AF_INET6;
	size_t alen = af == AF_INET ? 4 : 16;
	bool two = len == 12 || len == 36, port = len != 4 && len != 16;

	out[0] = '\0';
	if (len != 4 && len != 16 && len != 8 && len != 12 && len != 20 &&
	    len != 36)
		return;
	inet_ntop(af, k, a, sizeof(a));
	if (!port) {
		snprintf(out, outlen, "%s", a);
		return;
	}
	k += alen;
	if (two) {
		inet_ntop(af, k, b, sizeof(b));
		k += alen;
		snprintf(out, outlen, "%s . %s . %u", a, b,
		    (unsigned)(k[0] << 8 | k[1]));
	} else
		snprintf(out, outlen, "%s . %u", a,
		    (unsigned)(k[0] << 8 | k[1]));
	if (k[2] != 0 || k[3] != 0)	/* padding must be zero */
		snprintf(out, outlen, "bad padding");
}

static void
elem_one(struct parsed *p, const struct nlattr *nest)
{
	const struct nlattr *a, *d;
	struct elem *x;
	const char *c;

	if (p->n_elems == MAXE)
		return;
	x = &p->elems[p->n_elems++];
	memset(x, 0, sizeof(*x));
	mnl_attr_for_each_nested(a, nest) {
		switch (mnl_attr_get_type(a)) {
		case NFTA_SET_ELEM_KEY:
		case NFTA_SET_ELEM_KEY_END:
			mnl_attr_for_each_nested(d, a)
				if (mnl_attr_get_type(d) == NFTA_DATA_VALUE)
					key_str(mnl_attr_get_payload(d),
					    mnl_attr_get_payload_len(d),
					    mnl_attr_get_type(a) ==
					    NFTA_SET_ELEM_KEY ? x->key :
					    x->key_end, sizeof(x->key));
			break;
		case NFTA_SET_ELEM_FLAGS:
			x->flags = ntohl(mnl_attr_get_u32(a));
			break;
		case NFTA_SET_ELEM_USERDATA:
			c = udata_comment(mnl_attr_get_payload(a),
			    mnl_attr_get_payload_len(a),
			    NFTNL_UDATA_SET_ELEM_COMMENT);
			if (c)
				snprintf(x->comment, sizeof(x->comment), "%s",
				    c);
			break;
		}
	}
}

static void
elems_parse(struct parsed *p, const struct nlmsghdr *nlh)
{
	const struct nlattr *a, *e;

	mnl_attr_for_each(a, nlh, sizeof(struct nfgenmsg))
		if (mnl_attr_get_type(a) == NFTA_SET_ELEM_LIST_ELEMENTS)
			mnl_attr_for_each_nested(e, a)
				elem_one(p, e);
}

static void
parse_batch(const void *buf, size_t blen, struct parsed *p)
{
	const struct nlmsghdr *nlh;
	int len = (int)blen, idx = 0;
	uint32_t prev = 0;

	memset(p, 0, sizeof(*p));
	p->seq_ok = p->ack_ok = true;
	for (nlh = buf; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len),
	    idx++) {
		uint16_t t = nlh->nlmsg_type;
		const struct nfgenmsg *g = mnl_nlmsg_get_payload(nlh);

		if (idx > 0 && nlh->nlmsg_seq != prev + 1)
			p->seq_ok = false;
		prev = nlh->nlmsg_seq;
		if (t == NFNL_MSG_BATCH_BEGIN) {
			p->begin++;
			continue;
		}
		if (t == NFNL_MSG_BATCH_END) {
			p->end++;
			continue;
		}
		p->n_msgs++;
		if (p->n_types < 512)
			p->types[p->n_types++] = (uint16_t)NFNL_MSG_TYPE(t);
		if (p->seq_first == 0)
			p->seq_first = nlh->nlmsg_seq;
		p->seq_last = nlh->nlmsg_seq;
		if (!(nlh->nlmsg_flags & NLM_F_ACK) || g->nfgen_family !=
		    NFPROTO_INET)
			p->ack_ok = false;
		switch (NFNL_MSG_TYPE(t)) {
		case NFT_MSG_NEWTABLE:
		case NFT_MSG_DELTABLE: {
			struct nftnl_table *tb = nftnl_table_alloc();

			if (nftnl_table_nlmsg_parse(nlh, tb) < 0)
				p->bad++;
			if (NFNL_MSG_TYPE(t) == NFT_MSG_DELTABLE)
				p->n_deltable++;
			else
				p->n_newtable++;
			if (nftnl_table_is_set(tb, NFTNL_TABLE_USERDATA)) {
				uint32_t l;
				const void *d = nftnl_table_get_data(tb,
				    NFTNL_TABLE_USERDATA, &l);
				const char *c = udata_comment(d, l,
				    NFTNL_UDATA_TABLE_COMMENT);

				if (c)
					snprintf(p->table_comment,
					    sizeof(p->table_comment), "%s", c);
			}
			nftnl_table_free(tb);
			break;
		}
		case NFT_MSG_NEWSET: {
			struct nftnl_set *s = nftnl_set_alloc();
			int i = p->n_sets++;

			if (nftnl_set_nlmsg_parse(nlh, s) < 0)
				p->bad++;
			snprintf(p->sets[i], 64, "%s",
			    nftnl_set_get_str(s, NFTNL_SET_NAME));
			p->set_keytype[i] = nftnl_set_get_u32(s,
			    NFTNL_SET_KEY_TYPE);
			p->set_keylen[i] = nftnl_set_get_u32(s,
			    NFTNL_SET_KEY_LEN);
			if (nftnl_set_is_set(s, NFTNL_SET_FLAGS))
				p->set_flags[i] = nftnl_set_get_u32(s,
				    NFTNL_SET_FLAGS);
			if (nftnl_set_is_set(s, NFTNL_SET_DESC_CONCAT)) {
				uint32_t l, k;
				const uint8_t *f = nftnl_set_get_data(s,
				    NFTNL_SET_DESC_CONCAT, &l);

				for (k = 0; k < l && f[k] != 0; k++)
					snprintf(p->set_fields[i] +
					    strlen(p->set_fields[i]), 16 -
					    strlen(p->set_fields[i]), "%s%u",
					    k ? "." : "", f[k]);
			}
			if (nftnl_set_is_set(s, NFTNL_SET_USERDATA)) {
				uint32_t l;
				const void *d = nftnl_set_get_data(s,
				    NFTNL_SET_USERDATA, &l);
				const char *c = udata_comment(d, l,
				    NFTNL_UDATA_SET_COMMENT);
				const struct nftnl_udata *ua;

				if (c)
					snprintf(p->set_comment[i], 160, "%s",
					    c);
				p->set_byteorder[i] = 99;
				for (ua = d; (const char *)ua + 2 <=
				    (const char *)d + l; ua = (const void *)
				    ((const char *)ua + 2 + nftnl_udata_len(ua)))
					if (nftnl_udata_type(ua) ==
					    NFTNL_UDATA_SET_KEYBYTEORDER &&
					    nftnl_udata_len(ua) == 4)
						p->set_byteorder[i] =
						    nftnl_udata_get_u32(ua);
			}
			nftnl_set_free(s);
			break;
		}
		case NFT_MSG_NEWSETELEM:
		case NFT_MSG_DELSETELEM: {
			struct nftnl_set *s = nftnl_set_alloc();
			int first = p->n_elems, i;

			/* See elems_parse(): the return value is not usable
			 * here, the header attributes are. */
			nftnl_set_elems_nlmsg_parse(nlh, s);
			if (!nftnl_set_is_set(s, NFTNL_SET_NAME) ||
			    strcmp(nftnl_set_get_str(s, NFTNL_SET_TABLE),
			    "weft") != 0)
				p->bad++;
			elems_parse(p, nlh);
			for (i = first; i < p->n_elems; i++) {
				snprintf(p->elems[i].set, 64, "%s",
				    nftnl_set_get_str(s, NFTNL_SET_NAME));
				p->elems[i].type = (uint16_t)NFNL_MSG_TYPE(t);
				p->elems[i].nlflags = nlh->nlmsg_flags;
			}
			nftnl_set_free(s);
			break;
		}
		case NFT_MSG_NEWCHAIN: {
			struct nftnl_chain *c = nftnl_chain_alloc();
			int i = p->n_chains < 4 ? p->n_chains++ : 3;

			if (nftnl_chain_nlmsg_parse(nlh, c) < 0)
				p->bad++;
			snprintf(p->chains[i], 64, "%s",
			    nftnl_chain_get_str(c, NFTNL_CHAIN_NAME));
			snprintf(p->chain_types[i], 32, "%s",
			    nftnl_chain_get_str(c, NFTNL_CHAIN_TYPE));
			p->chain_hooks[i] = nftnl_chain_get_u32(c,
			    NFTNL_CHAIN_HOOKNUM);
			p->chain_prios[i] = nftnl_chain_get_s32(c,
			    NFTNL_CHAIN_PRIO);
			p->chain_policies[i] = nftnl_chain_get_u32(c,
			    NFTNL_CHAIN_POLICY);
			if (nftnl_chain_is_set(c, NFTNL_CHAIN_USERDATA)) {
				uint32_t l;
				const void *d = nftnl_chain_get_data(c,
				    NFTNL_CHAIN_USERDATA, &l);
				const char *cm = udata_comment(d, l,
				    NFTNL_UDATA_CHAIN_COMMENT);

				if (cm)
					snprintf(p->chain_comments[i], 160,
					    "%s", cm);
			}
			nftnl_chain_free(c);
			break;
		}
		case NFT_MSG_NEWRULE: {
			struct nftnl_rule *r = nftnl_rule_alloc();
			int i = p->n_rules++;

			if (nftnl_rule_nlmsg_parse(nlh, r) < 0)
				p->bad++;
			nftnl_expr_foreach(r, summ_expr, &p->rules[i]);
			snprintf(p->rule_chain[i], 64, "%s",
			    nftnl_rule_get_str(r, NFTNL_RULE_CHAIN));
			p->rule_counter[i] = strstr(p->rules[i].s, "counter") !=
			    NULL;
			if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA)) {
				uint32_t l;
				const void *d = nftnl_rule_get_data(r,
				    NFTNL_RULE_USERDATA, &l);
				const char *c = udata_comment(d, l,
				    NFTNL_UDATA_RULE_COMMENT);

				if (c)
					snprintf(p->rule_comment[i], 160, "%s",
					    c);
			}
			nftnl_rule_free(r);
			break;
		}
		default:
			p->bad++;
		}
	}
	if (len != 0)
		p->bad++;
}

/* ---- config ------------------------------------------------------------- */

static struct weft_nft_pod
pod(const char *ip, const char *comment)
{
	struct weft_nft_pod p;

	memset(&p, 0, sizeof(p));
	if (weft_ip_parse(ip, &p.ip) == -1)
		abort();
	snprintf(p.comment, sizeof(p.comment), "%s", comment);
	return p;
}

static struct weft_cidr
cidr(const char *s)
{
	struct weft_cidr c;

	if (weft_cidr_parse(s, &c) == -1)
		abort();
	return c;
}

static void
base_config(struct weft_nft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->pod_iface_prefix = "wv";
	cfg->outbound_port = WEFT_PORT_OUTBOUND;
	cfg->inbound_port = WEFT_PORT_INBOUND;
	cfg->tunnel_port = WEFT_PORT_TUNNEL;
	cfg->own_mark = WEFT_MARK_OWN;
	cfg->tproxy_mark = WEFT_MARK_TPROXY;
}

static const struct elem *
find_elem(const struct parsed *p, const char *set, const char *key,
    uint32_t flags)
{
	int i;

	for (i = 0; i < p->n_elems; i++)
		if (strcmp(p->elems[i].set, set) == 0 &&
		    strcmp(p->elems[i].key, key) == 0 &&
		    p->elems[i].flags == flags)
			return &p->elems[i];
	return NULL;
}

/* The expected rules, in the order an operator reads them. */
static const struct {
	const char *comment;
	const char *summ;
} want_rules[] = {
	{ "weft's own sockets",
	  "meta mark; cmp eq 39050000; counter; return" },
	{ "spoofed source address from a pod interface",
	  "meta nfproto; cmp eq 02; meta iifname; cmp eq 7776; "
	  "fib flags 0x29 result 1; cmp eq 00000000; counter; drop" },
	{ "spoofed source address from a pod interface",
	  "meta iifname; cmp eq 7776; meta nfproto; cmp eq 0a; payload nh+8/16; "
	  "cmp neq 00000000000000000000000000000000; fib flags 0x29 result 1; "
	  "cmp eq 00000000; counter; drop" },
	{ "pod address arriving on the wrong interface (spoofed)",
	  "meta nfproto; cmp eq 02; payload nh+12/4; lookup @pod-cidrs-v4; "
	  "fib flags 0x29 result 1; cmp eq 00000000; counter; drop" },
	{ "pod address arriving on the wrong interface (spoofed)",
	  "meta nfproto; cmp eq 0a; payload nh+8/16; lookup @pod-cidrs-v6; "
	  "fib flags 0x29 result 1; cmp eq 00000000; counter; drop" },
	{ "packets of connections weft proxies",
	  "meta l4proto; cmp eq 06; socket transparent; cmp eq 01; "
	  "socket wildcard; cmp eq 00; counter; imm 3a050000; meta set mark; "
	  "accept" },
	{ "to this node itself",
	  "fib flags 0x2 result 3; cmp eq 02000000; counter; return" },
	{ "replies of connections weft does not proxy",
	  "ct direction; cmp eq 01; counter; return" },
	{ "mTLS tunnel to a local pod",
	  "meta nfproto; cmp eq 02; payload nh+16/4; lookup @pod-cidrs-v4; "
	  "payload nh+16/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 06; "
	  "payload th+2/2; cmp eq 3aa0; counter; imm 3aa0; tproxy ip; "
	  "imm 3a050000; meta set mark; accept" },
	{ "mTLS tunnel to a local pod",
	  "meta nfproto; cmp eq 0a; payload nh+24/16; lookup @pod-cidrs-v6; "
	  "payload nh+24/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 06; "
	  "payload th+2/2; cmp eq 3aa0; counter; imm 3aa0; tproxy ip6; "
	  "imm 3a050000; meta set mark; accept" },
	{ "TCP from a local meshed pod",
	  "meta nfproto; cmp eq 02; payload nh+12/4; lookup @pod-cidrs-v4; "
	  "payload nh+12/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 06; "
	  "counter; imm 3a99; tproxy ip; imm 3a050000; meta set mark; accept" },
	{ "TCP from a local meshed pod",
	  "meta nfproto; cmp eq 0a; payload nh+8/16; lookup @pod-cidrs-v6; "
	  "payload nh+8/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 06; "
	  "counter; imm 3a99; tproxy ip6; imm 3a050000; meta set mark; accept" },
	{ "plaintext TCP to a local pod",
	  "meta nfproto; cmp eq 02; payload nh+16/4; lookup @pod-cidrs-v4; "
	  "payload nh+16/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 06; "
	  "counter; imm 3a9e; tproxy ip; imm 3a050000; meta set mark; accept" },
	{ "plaintext TCP to a local pod",
	  "meta nfproto; cmp eq 0a; payload nh+24/16; lookup @pod-cidrs-v6; "
	  "payload nh+24/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 06; "
	  "counter; imm 3a9e; tproxy ip6; imm 3a050000; meta set mark; accept" },
	{ "captured but weft is not listening: refuse (fail closed)",
	  "meta nfproto; cmp eq 02; payload nh+12/4; lookup @pod-cidrs-v4; "
	  "payload nh+12/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 06; "
	  "counter; reject tcp-rst" },
	{ "captured but weft is not listening: refuse (fail closed)",
	  "meta nfproto; cmp eq 02; payload nh+16/4; lookup @pod-cidrs-v4; "
	  "payload nh+16/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 06; "
	  "counter; reject tcp-rst" },
	{ "captured but weft is not listening: refuse (fail closed)",
	  "meta nfproto; cmp eq 0a; payload nh+8/16; lookup @pod-cidrs-v6; "
	  "payload nh+8/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 06; "
	  "counter; reject tcp-rst" },
	{ "captured but weft is not listening: refuse (fail closed)",
	  "meta nfproto; cmp eq 0a; payload nh+24/16; lookup @pod-cidrs-v6; "
	  "payload nh+24/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 06; "
	  "counter; reject tcp-rst" },
	/* chain filter-forward: UDPRoute */
	{ "UDP replies: allowed when their flow began",
	  "meta l4proto; cmp eq 11; ct direction; cmp eq 01; counter; return" },
	{ "UDP a TrafficTarget grants to this source (UDPRoute)",
	  "meta nfproto; cmp eq 02; meta l4proto; cmp eq 11; payload nh+12/4; "
	  "payload nh+16/4>r9; payload th+2/2>r10; lookup @udp-allow-v4; "
	  "counter; accept" },
	{ "UDP a TrafficTarget grants to this source (UDPRoute)",
	  "meta nfproto; cmp eq 0a; meta l4proto; cmp eq 11; payload nh+8/16; "
	  "payload nh+24/16>r2; payload th+2/2>r3; lookup @udp-allow-v6; "
	  "counter; accept" },
	{ "UDP to a pod that takes it from every source",
	  "meta nfproto; cmp eq 02; meta l4proto; cmp eq 11; payload nh+16/4; "
	  "payload th+2/2>r9; lookup @udp-allow-any-v4; counter; accept" },
	{ "UDP to a pod that takes it from every source",
	  "meta nfproto; cmp eq 0a; meta l4proto; cmp eq 11; payload nh+24/16; "
	  "payload th+2/2>r2; lookup @udp-allow-any-v6; counter; accept" },
	{ "UDP to a local meshed pod that no TrafficTarget grants",
	  "meta nfproto; cmp eq 02; payload nh+16/4; lookup @pod-cidrs-v4; "
	  "payload nh+16/4; lookup !@exempt-pods-v4; meta l4proto; cmp eq 11; "
	  "counter; drop" },
	{ "UDP to a local meshed pod that no TrafficTarget grants",
	  "meta nfproto; cmp eq 0a; payload nh+24/16; lookup @pod-cidrs-v6; "
	  "payload nh+24/16; lookup !@exempt-pods-v6; meta l4proto; cmp eq 11; "
	  "counter; drop" },
};
#define N_PREROUTING	18	/* the rest are filter-forward's */
#define N_WANT	((int)(sizeof(want_rules) / sizeof(want_rules[0])))

static void
test_apply(void)
{
	struct weft_nft_config cfg;
	struct weft_cidr cidrs[4];
	struct weft_nft_pod meshed[4], exempt[2];
	static struct parsed p;
	void *buf = malloc(BUFSZ);
	size_t len;
	int i, tproxy_rules = 0;

	base_config(&cfg);
	cidrs[0] = cidr("10.244.1.0/24");
	cidrs[1] = cidr("fd00:10:244:1::/64");
	cidrs[2] = cidr("10.250.0.0/16");
	cidrs[3] = cidr("10.250.0.0/17");	/* inside the previous: merged */
	cfg.pod_cidrs = cidrs;
	cfg.n_pod_cidrs = 4;
	meshed[0] = pod("10.244.1.11", "demo/api");
	meshed[1] = pod("10.244.1.10", "demo/web");
	meshed[2] = pod("fd00:10:244:1::10", "demo/web");
	meshed[3] = pod("10.244.1.10", "demo/web");	/* duplicate: once */
	cfg.meshed = meshed;
	cfg.n_meshed = 4;
	exempt[0] = pod("10.244.1.20", "plain/db");
	cfg.exempt = exempt;
	cfg.n_exempt = 1;

	len = weft_nft_build_apply_batch(&cfg, buf, BUFSZ, 1000);
	ok(len > 0, "apply batch built (%zu bytes)", len);
	is_int(weft_nft_build_apply_batch(&cfg, buf, 200, 1000), 0,
	    "apply batch that does not fit returns 0");
	len = weft_nft_build_apply_batch(&cfg, buf, BUFSZ, 1000);
	parse_batch(buf, len, &p);
	is_int(p.bad, 0, "every message parses back with libnftnl");
	is_int(p.begin, 1, "one batch begin");
	is_int(p.end, 1, "one batch end");
	ok(p.seq_ok, "sequence numbers consecutive");
	ok(p.ack_ok, "every message has NLM_F_ACK and family inet");
	is_int(p.seq_first, 1001, "first message after BEGIN has seq 1001");

	/* NEWTABLE, DELTABLE, NEWTABLE: replace, one transaction. */
	ok(p.n_types >= 3 && p.types[0] == NFT_MSG_NEWTABLE &&
	    p.types[1] == NFT_MSG_DELTABLE && p.types[2] == NFT_MSG_NEWTABLE,
	    "batch starts NEWTABLE, DELTABLE, NEWTABLE");
	is_str(p.table_comment, "weft: capture of meshed pods' traffic; "
	    "rebuilt by weft node, do not edit", "table comment");

	is_int(p.n_sets, 10, "ten sets");
	{
		static const char *names[] = { "pod-cidrs-v4", "pod-cidrs-v6",
		    "meshed-pods-v4", "meshed-pods-v6", "exempt-pods-v4",
		    "exempt-pods-v6", "udp-allow-v4", "udp-allow-v6",
		    "udp-allow-any-v4", "udp-allow-any-v6" };
		/* nft's concatenated types: 6 bits per field, ipv4_addr 7,
		 * ipv6_addr 8, inet_service 13; fields padded to 4 bytes. */
		static const uint32_t types[] = { 7, 8, 7, 8, 7, 8,
		    (7 << 12) | (7 << 6) | 13, (8 << 12) | (8 << 6) | 13,
		    (7 << 6) | 13, (8 << 6) | 13 };
		static const uint32_t lens[] = { 4, 16, 4, 16, 4, 16, 12, 36,
		    8, 20 };
		static const char *fields[] = { "", "", "", "", "", "",
		    "4.4.2", "16.16.2", "4.2", "16.2" };
		static const uint32_t flags[] = { NFT_SET_INTERVAL,
		    NFT_SET_INTERVAL, 0, 0, 0, 0,
		    NFT_SET_INTERVAL | NFT_SET_CONCAT,
		    NFT_SET_INTERVAL | NFT_SET_CONCAT,
		    NFT_SET_INTERVAL | NFT_SET_CONCAT,
		    NFT_SET_INTERVAL | NFT_SET_CONCAT };

		for (i = 0; i < 10 && i < p.n_sets; i++) {
			is_str(p.sets[i], names[i], "set %d name", i);
			is_int(p.set_keytype[i], types[i], "%s key type",
			    names[i]);
			is_int(p.set_keylen[i], lens[i], "%s key len",
			    names[i]);
			is_str(p.set_fields[i], fields[i],
			    "%s concatenation fields", names[i]);
			is_int(p.set_flags[i], flags[i], "%s flags", names[i]);
			is_int(p.set_byteorder[i], i < 6 ? 2 : 0,
			    "%s key byte order as nft records it", names[i]);
			ok(p.set_comment[i][0] != '\0', "%s has a comment: %s",
			    names[i], p.set_comment[i]);
		}
		is_str(p.set_comment[0], "pod CIDRs of this node",
		    "pod-cidrs comment");
	}

	/* Intervals: 0 end, 10.244.1.0, 10.244.2.0 end, 10.250.0.0,
	 * 10.251.0.0 end; v6: ::/end, fd00:10:244:1::, fd00:10:244:2:: end */
	ok(find_elem(&p, "pod-cidrs-v4", "0.0.0.0", NFT_SET_ELEM_INTERVAL_END),
	    "v4 interval set starts with an end element at 0.0.0.0");
	ok(find_elem(&p, "pod-cidrs-v4", "10.244.1.0", 0), "10.244.1.0 start");
	ok(find_elem(&p, "pod-cidrs-v4", "10.244.2.0",
	    NFT_SET_ELEM_INTERVAL_END), "10.244.2.0 end");
	ok(find_elem(&p, "pod-cidrs-v4", "10.250.0.0", 0), "10.250.0.0 start");
	ok(find_elem(&p, "pod-cidrs-v4", "10.251.0.0",
	    NFT_SET_ELEM_INTERVAL_END), "10.251.0.0 end (/17 merged in /16)");
	ok(find_elem(&p, "pod-cidrs-v6", "fd00:10:244:1::", 0), "v6 start");
	ok(find_elem(&p, "pod-cidrs-v6", "fd00:10:244:2::",
	    NFT_SET_ELEM_INTERVAL_END), "v6 end");
	{
		const struct elem *e;
		int nm = 0;

		e = find_elem(&p, "meshed-pods-v4", "10.244.1.10", 0);
		ok(e && strcmp(e->comment, "demo/web") == 0,
		    "meshed 10.244.1.10 commented demo/web");
		e = find_elem(&p, "meshed-pods-v4", "10.244.1.11", 0);
		ok(e && strcmp(e->comment, "demo/api") == 0,
		    "meshed 10.244.1.11 commented demo/api");
		e = find_elem(&p, "meshed-pods-v6", "fd00:10:244:1::10", 0);
		ok(e && strcmp(e->comment, "demo/web") == 0,
		    "meshed v6 pod in the v6 set");
		e = find_elem(&p, "exempt-pods-v4", "10.244.1.20", 0);
		ok(e && strcmp(e->comment, "plain/db") == 0,
		    "exempt 10.244.1.20 commented plain/db");
		for (i = 0; i < p.n_elems; i++)
			nm += strcmp(p.elems[i].set, "meshed-pods-v4") == 0;
		is_int(nm, 2, "duplicate pod added once");
	}

	is_int(p.n_chains, 2, "two chains");
	is_str(p.chains[0], "filter-prerouting", "chain name type-hook");
	is_str(p.chain_types[0], "filter", "chain type filter");
	is_int(p.chain_hooks[0], NF_INET_PRE_ROUTING, "hook prerouting");
	is_int(p.chain_prios[0], -150, "priority mangle");
	is_int(p.chain_policies[0], NF_ACCEPT, "policy accept");
	is_str(p.chains[1], "filter-forward", "UDP chain filter-forward");
	is_str(p.chain_types[1], "filter", "forward chain type filter");
	is_int(p.chain_hooks[1], NF_INET_FORWARD, "hook forward: after DNAT");
	is_int(p.chain_prios[1], 0, "priority filter");
	is_int(p.chain_policies[1], NF_ACCEPT, "forward policy accept");
	ok(strstr(p.chain_comments[1], "UDPRoute") != NULL,
	    "forward chain says what it is for: %s", p.chain_comments[1]);

	is_int(p.n_rules, N_WANT, "rule count");
	for (i = 0; i < p.n_rules; i++) {
		ok(p.rule_counter[i], "rule %d has a counter", i + 1);
		ok(p.rule_comment[i][0] != '\0', "rule %d has a comment", i + 1);
		is_str(p.rule_chain[i], i < N_PREROUTING ? "filter-prerouting" :
		    "filter-forward", "rule %d chain", i + 1);
		tproxy_rules += strstr(p.rules[i].s, "tproxy") != NULL;
	}
	for (i = 0; i < p.n_rules && i < N_WANT; i++) {
		is_str(p.rule_comment[i], want_rules[i].comment,
		    "rule %d comment", i + 1);
		is_str(p.rules[i].s, want_rules[i].summ, "rule %d bytecode",
		    i + 1);
	}
	is_int(tproxy_rules, 6, "six tproxy rules (3 kinds x 2 families)");
	{
		/* Fail closed: every tproxy rule is followed, later, by a
		 * reject matching the same addresses. */
		int last_tproxy = -1, first_reject = -1;

		for (i = 0; i < p.n_rules; i++) {
			if (strstr(p.rules[i].s, "tproxy"))
				last_tproxy = i;
			if (first_reject < 0 && strstr(p.rules[i].s, "reject"))
				first_reject = i;
		}
		ok(first_reject > last_tproxy && first_reject > 0,
		    "reject rules come after every capture rule");
	}

	/* No interface prefix: anti-spoofing by pod CIDR only. */
	cfg.pod_iface_prefix = NULL;
	len = weft_nft_build_apply_batch(&cfg, buf, BUFSZ, 1);
	parse_batch(buf, len, &p);
	is_int(p.n_rules, N_WANT - 2, "no prefix: two rules fewer");
	for (i = 0; i < p.n_rules; i++)
		ok(strstr(p.rules[i].s, "iifname") == NULL,
		    "no prefix: rule %d has no iifname", i + 1);
	is_str(p.rule_comment[1],
	    "pod address arriving on the wrong interface (spoofed)",
	    "no prefix: second rule is the pod-CIDR anti-spoofing");

	/* Ports and marks come from the config. */
	base_config(&cfg);
	cfg.outbound_port = 1001;
	cfg.own_mark = 0x1234;
	len = weft_nft_build_apply_batch(&cfg, buf, BUFSZ, 1);
	parse_batch(buf, len, &p);
	ok(strstr(p.rules[0].s, "cmp eq 34120000") != NULL,
	    "own mark from config");
	ok(strstr(p.rules[10].s, "imm 03e9; tproxy ip;") != NULL,
	    "outbound port from config");
	is_int(p.n_elems, 0, "empty config: no element messages");

	/* Many pods: split in several NEWSETELEM messages. */
	{
		struct weft_nft_pod *many = calloc(300, sizeof(*many));
		char ip[32], c[32];

		for (i = 0; i < 300; i++) {
			snprintf(ip, sizeof(ip), "10.244.%d.%d", 1 + i / 200,
			    1 + i % 200);
			snprintf(c, sizeof(c), "ns/pod-%d", i);
			many[i] = pod(ip, c);
		}
		base_config(&cfg);
		cfg.meshed = many;
		cfg.n_meshed = 300;
		len = weft_nft_build_apply_batch(&cfg, buf, BUFSZ, 1);
		parse_batch(buf, len, &p);
		is_int(p.bad, 0, "300 pods: parses back");
		{
			int nmsg = 0, j;

			for (j = 0; j < p.n_types; j++)
				nmsg += p.types[j] == NFT_MSG_NEWSETELEM;
			is_int(nmsg, 5, "300 pods: 5 element messages of <= 64");
		}
		free(many);
	}
	free(buf);
}

static void
test_update(void)
{
	struct weft_nft_config a, b;
	struct weft_nft_pod am[3], bm[3], ae[1], be[2];
	struct weft_cidr c = cidr("10.244.1.0/24");
	static struct parsed p;
	void *buf = malloc(BUFSZ);
	size_t len;
	int n, i, ndel = 0, nnew = 0;
	const struct elem *e;

	base_config(&a);
	base_config(&b);
	a.pod_cidrs = b.pod_cidrs = &c;
	a.n_pod_cidrs = b.n_pod_cidrs = 1;
	am[0] = pod("10.244.1.10", "demo/web");
	am[1] = pod("10.244.1.11", "demo/api");
	am[2] = pod("10.244.1.12", "demo/old");
	a.meshed = am;
	a.n_meshed = 3;
	ae[0] = pod("10.244.1.20", "plain/db");
	a.exempt = ae;
	a.n_exempt = 1;
	/* b: web stays, api's IP now belongs to another pod (comment change),
	 * old is gone, new arrives (unsorted on purpose), db moves into the
	 * mesh... no: db stays exempt and a second exempt pod arrives. */
	bm[0] = pod("10.244.1.13", "demo/new");
	bm[1] = pod("10.244.1.10", "demo/web");
	bm[2] = pod("10.244.1.11", "demo/api-2");
	b.meshed = bm;
	b.n_meshed = 3;
	be[0] = pod("10.244.1.20", "plain/db");
	be[1] = pod("10.244.1.21", "plain/cache");
	b.exempt = be;
	b.n_exempt = 2;

	ok(weft_nft_config_same_rules(&a, &b), "same_rules: pods only differ");
	n = weft_nft_build_update_batch(&a, &b, buf, BUFSZ, 500, &len);
	is_int(n, 5, "update: 5 messages");
	parse_batch(buf, len, &p);
	is_int(p.bad, 0, "update batch parses back");
	is_int(p.begin, 1, "update: batch begin");
	is_int(p.end, 1, "update: batch end");
	is_int(p.n_rules, 0, "update: no rule messages");
	is_int(p.n_sets + p.n_newtable + p.n_deltable, 0,
	    "update: no table or set messages");
	for (i = 0; i < p.n_types; i++) {
		ndel += p.types[i] == NFT_MSG_DELSETELEM;
		nnew += p.types[i] == NFT_MSG_NEWSETELEM;
	}
	is_int(ndel, 2, "update: 2 DELSETELEM");
	is_int(nnew, 3, "update: 3 NEWSETELEM");
	ok(p.n_types == 5 && p.types[0] == NFT_MSG_DELSETELEM &&
	    p.types[1] == NFT_MSG_DELSETELEM,
	    "update: deletions before additions");
	e = find_elem(&p, "meshed-pods-v4", "10.244.1.12", 0);
	ok(e && e->type == NFT_MSG_DELSETELEM, "old pod deleted");
	e = find_elem(&p, "meshed-pods-v4", "10.244.1.13", 0);
	ok(e && e->type == NFT_MSG_NEWSETELEM &&
	    strcmp(e->comment, "demo/new") == 0, "new pod added with comment");
	ok(e && (e->nlflags & NLM_F_EXCL), "addition is exclusive");
	{
		int del = 0, add = 0;

		for (i = 0; i < p.n_elems; i++)
			if (strcmp(p.elems[i].key, "10.244.1.11") == 0) {
				if (p.elems[i].type == NFT_MSG_DELSETELEM)
					del++;
				else if (strcmp(p.elems[i].comment,
				    "demo/api-2") == 0)
					add++;
			}
		ok(del == 1 && add == 1,
		    "comment change: delete then add with new comment");
	}
	e = find_elem(&p, "exempt-pods-v4", "10.244.1.21", 0);
	ok(e && e->type == NFT_MSG_NEWSETELEM, "exempt pod added");
	ok(find_elem(&p, "meshed-pods-v4", "10.244.1.10", 0) == NULL,
	    "unchanged pod not touched");
	ok(find_elem(&p, "exempt-pods-v4", "10.244.1.20", 0) == NULL,
	    "unchanged exempt pod not touched");

	n = weft_nft_build_update_batch(&a, &a, buf, BUFSZ, 1, &len);
	is_int(n, 0, "no difference: 0 messages");
	is_int(len, 0, "no difference: empty batch skipped");

	/* Pod moving from exempt to meshed (namespace joined the mesh). */
	b.meshed = ae;
	b.n_meshed = 1;
	b.exempt = NULL;
	b.n_exempt = 0;
	a.meshed = NULL;
	a.n_meshed = 0;
	n = weft_nft_build_update_batch(&a, &b, buf, BUFSZ, 1, &len);
	parse_batch(buf, len, &p);
	is_int(n, 2, "move between sets: 2 messages");
	e = find_elem(&p, "exempt-pods-v4", "10.244.1.20", 0);
	ok(e && e->type == NFT_MSG_DELSETELEM, "moved: deleted from exempt");
	e = find_elem(&p, "meshed-pods-v4", "10.244.1.20", 0);
	ok(e && e->type == NFT_MSG_NEWSETELEM, "moved: added to meshed");
	free(buf);
}

static struct weft_nft_udp
udp(const char *src, const char *dst, uint16_t lo, uint16_t hi,
    const char *comment)
{
	struct weft_nft_udp u;

	memset(&u, 0, sizeof(u));
	u.any_src = src == NULL;
	if ((src != NULL && weft_ip_parse(src, &u.src) == -1) ||
	    weft_ip_parse(dst, &u.dst) == -1)
		abort();
	u.port_lo = lo;
	u.port_hi = hi;
	snprintf(u.comment, sizeof(u.comment), "%s", comment);
	return u;
}

static int
count_set(const struct parsed *p, const char *set, uint16_t type)
{
	int i, n = 0;

	for (i = 0; i < p->n_elems; i++)
		n += strcmp(p->elems[i].set, set) == 0 &&
		    p->elems[i].type == type;
	return n;
}

static const struct elem *
find_range(const struct parsed *p, const char *set, const char *key,
    const char *key_end, uint16_t type)
{
	int i;

	for (i = 0; i < p->n_elems; i++)
		if (strcmp(p->elems[i].set, set) == 0 &&
		    strcmp(p->elems[i].key, key) == 0 &&
		    strcmp(p->elems[i].key_end, key_end) == 0 &&
		    p->elems[i].type == type)
			return &p->elems[i];
	return NULL;
}

/* UDP grants: elements of the concatenated interval sets, merged, and
 * updated by element diffs. */
static void
test_udp(void)
{
	struct weft_nft_config a, b;
	struct weft_nft_udp ua[9], ub[5];
	static struct parsed p;
	const struct elem *e;
	void *buf = malloc(BUFSZ);
	size_t len;
	int n, i, first_new = -1, last_del = -1;

	base_config(&a);
	ua[0] = udp("10.244.2.10", "10.244.1.10", 5000, 5010,
	    "shop/api -> shop/web");
	ua[1] = udp("10.244.1.12", "10.244.1.10", 53, 53,
	    "tools/client -> shop/web");
	/* overlaps ua[0]: one element 5000-5020 */
	ua[2] = udp("10.244.2.10", "10.244.1.10", 5005, 5020,
	    "shop/api -> shop/web");
	/* touches 53: one element 53-54 */
	ua[3] = udp("10.244.1.12", "10.244.1.10", 54, 54,
	    "tools/client -> shop/web");
	ua[4] = udp(NULL, "10.244.1.11", 0, 65535, "any source -> shop/api-2");
	ua[5] = udp("fd00:10:244:2::10", "fd00:10:244:1::10", 7000, 7000,
	    "shop/api -> shop/web");
	ua[6] = udp("10.244.2.10", "10.244.1.10", 60, 50, "backwards");
	ua[7] = udp("fd00::1", "10.244.1.10", 1, 1, "mixed families");
	ua[8] = udp("10.244.1.12", "10.244.1.10", 53, 53,
	    "tools/client -> shop/web");		/* duplicate */
	a.udp = ua;
	a.n_udp = 9;

	len = weft_nft_build_apply_batch(&a, buf, BUFSZ, 1);
	ok(len > 0, "apply with UDP grants built");
	parse_batch(buf, len, &p);
	is_int(p.bad, 0, "UDP elements parse back");
	is_int(count_set(&p, "udp-allow-v4", NFT_MSG_NEWSETELEM), 2,
	    "v4 grants: overlapping and touching ranges merged, duplicate once");
	e = find_range(&p, "udp-allow-v4", "10.244.2.10 . 10.244.1.10 . 5000",
	    "10.244.2.10 . 10.244.1.10 . 5020", NFT_MSG_NEWSETELEM);
	ok(e != NULL, "5000-5010 + 5005-5020: one element, key and key_end");
	ok(e && strcmp(e->comment, "shop/api -> shop/web") == 0 &&
	    e->flags == 0, "commented, no interval-end flag (pipapo)");
	ok(find_range(&p, "udp-allow-v4", "10.244.1.12 . 10.244.1.10 . 53",
	    "10.244.1.12 . 10.244.1.10 . 54", NFT_MSG_NEWSETELEM),
	    "53 + 54: one element 53-54");
	e = find_range(&p, "udp-allow-v6",
	    "fd00:10:244:2::10 . fd00:10:244:1::10 . 7000",
	    "fd00:10:244:2::10 . fd00:10:244:1::10 . 7000", NFT_MSG_NEWSETELEM);
	ok(e != NULL, "v6 grant in the v6 set, single port: key_end == key");
	is_int(count_set(&p, "udp-allow-v6", NFT_MSG_NEWSETELEM), 1,
	    "mixed-family grant dropped");
	e = find_range(&p, "udp-allow-any-v4", "10.244.1.11 . 0",
	    "10.244.1.11 . 65535", NFT_MSG_NEWSETELEM);
	ok(e && strcmp(e->comment, "any source -> shop/api-2") == 0,
	    "grant to every source: destination . 0-65535");
	is_int(count_set(&p, "udp-allow-any-v6", NFT_MSG_NEWSETELEM), 0,
	    "no v6 grant to every source");
	is_int(p.n_rules, N_WANT, "grants change no rule");

	/* b: api's range widens (delete + add), client's grant goes, a new
	 * source arrives, the open pod's comment changes, v6 stays. */
	base_config(&b);
	ub[0] = udp("10.244.2.10", "10.244.1.10", 5000, 5030,
	    "shop/api -> shop/web");
	ub[1] = udp("10.244.2.11", "10.244.1.10", 53, 53,
	    "shop/api -> shop/web");
	ub[2] = udp(NULL, "10.244.1.11", 0, 65535, "any source -> shop/api-3");
	ub[3] = ua[5];
	ub[4] = ua[2];		/* inside ub[0]: merged away */
	b.udp = ub;
	b.n_udp = 5;
	ok(weft_nft_config_same_rules(&a, &b), "same_rules: grants only differ");
	n = weft_nft_build_update_batch(&a, &b, buf, BUFSZ, 1, &len);
	parse_batch(buf, len, &p);
	is_int(p.bad, 0, "UDP update parses back");
	is_int(n, 6, "update: 6 element messages");
	is_int(p.n_rules + p.n_sets + p.n_chains, 0, "update: elements only");
	ok(find_range(&p, "udp-allow-v4", "10.244.2.10 . 10.244.1.10 . 5000",
	    "10.244.2.10 . 10.244.1.10 . 5020", NFT_MSG_DELSETELEM) &&
	    find_range(&p, "udp-allow-v4", "10.244.2.10 . 10.244.1.10 . 5000",
	    "10.244.2.10 . 10.244.1.10 . 5030", NFT_MSG_NEWSETELEM),
	    "widened range: old element deleted, new one added");
	ok(find_range(&p, "udp-allow-v4", "10.244.1.12 . 10.244.1.10 . 53",
	    "10.244.1.12 . 10.244.1.10 . 54", NFT_MSG_DELSETELEM),
	    "revoked grant deleted with its exact range");
	e = find_range(&p, "udp-allow-v4", "10.244.2.11 . 10.244.1.10 . 53",
	    "10.244.2.11 . 10.244.1.10 . 53", NFT_MSG_NEWSETELEM);
	ok(e && (e->nlflags & NLM_F_EXCL) &&
	    strcmp(e->comment, "shop/api -> shop/web") == 0,
	    "new grant added, exclusive, commented");
	ok(find_range(&p, "udp-allow-any-v4", "10.244.1.11 . 0",
	    "10.244.1.11 . 65535", NFT_MSG_DELSETELEM) &&
	    (e = find_range(&p, "udp-allow-any-v4", "10.244.1.11 . 0",
	    "10.244.1.11 . 65535", NFT_MSG_NEWSETELEM)) &&
	    strcmp(e->comment, "any source -> shop/api-3") == 0,
	    "comment change: delete then add");
	is_int(count_set(&p, "udp-allow-v6", NFT_MSG_NEWSETELEM) +
	    count_set(&p, "udp-allow-v6", NFT_MSG_DELSETELEM), 0,
	    "unchanged v6 grant untouched");
	for (i = 0; i < p.n_types; i++) {
		if (p.types[i] == NFT_MSG_DELSETELEM)
			last_del = i;
		if (p.types[i] == NFT_MSG_NEWSETELEM && first_new < 0)
			first_new = i;
	}
	ok(last_del >= 0 && first_new > last_del,
	    "every deletion before any addition");
	n = weft_nft_build_update_batch(&b, &b, buf, BUFSZ, 1, &len);
	is_int(n, 0, "same grants: nothing to send");
	free(buf);
}

static void
test_same_rules_sort(void)
{
	struct weft_nft_config a, b;
	struct weft_cidr ca[2], cb[2];
	struct weft_nft_pod pods[4];

	base_config(&a);
	base_config(&b);
	ca[0] = cidr("10.244.1.0/24");
	ca[1] = cidr("fd00::/64");
	cb[0] = ca[1];
	cb[1] = ca[0];
	a.pod_cidrs = ca;
	a.n_pod_cidrs = 2;
	b.pod_cidrs = cb;
	b.n_pod_cidrs = 2;
	ok(weft_nft_config_same_rules(&a, &b), "same_rules: CIDR order ignored");
	b.n_pod_cidrs = 1;
	ok(!weft_nft_config_same_rules(&a, &b), "same_rules: CIDR removed");
	b.n_pod_cidrs = 2;
	cb[0] = cidr("10.244.2.0/24");
	ok(!weft_nft_config_same_rules(&a, &b), "same_rules: CIDR changed");
	cb[0] = ca[1];
	b.inbound_port = 1;
	ok(!weft_nft_config_same_rules(&a, &b), "same_rules: port changed");
	b.inbound_port = a.inbound_port;
	b.tproxy_mark = 1;
	ok(!weft_nft_config_same_rules(&a, &b), "same_rules: mark changed");
	b.tproxy_mark = a.tproxy_mark;
	b.pod_iface_prefix = "cali";
	ok(!weft_nft_config_same_rules(&a, &b), "same_rules: prefix changed");
	a.pod_iface_prefix = NULL;
	b.pod_iface_prefix = "";
	ok(weft_nft_config_same_rules(&a, &b), "same_rules: NULL == \"\"");

	pods[0] = pod("fd00::1", "b/v6");
	pods[1] = pod("10.0.0.2", "a/two");
	pods[2] = pod("10.0.0.10", "a/ten");
	pods[3] = pod("9.255.255.255", "a/nine");
	a.meshed = pods;
	a.n_meshed = 4;
	weft_nft_config_sort(&a);
	is_str(pods[0].comment, "a/nine", "sort: 9.255.255.255 first");
	is_str(pods[1].comment, "a/two", "sort: numeric, not textual");
	is_str(pods[2].comment, "a/ten", "sort: 10.0.0.10 third");
	is_str(pods[3].comment, "b/v6", "sort: v6 after v4");
	ca[0] = cidr("fd00::/64");
	ca[1] = cidr("10.0.0.0/8");
	weft_nft_config_sort(&a);
	ok(ca[0].addr.family == AF_INET, "sort: CIDRs v4 first");
}

struct rt_attrs {
	uint32_t table, mark, mask, prio, oif;
	int n;
};

static int
rt_attr_cb(const struct nlattr *a, void *arg)
{
	struct rt_attrs *r = arg;

	r->n++;
	return MNL_CB_OK;
	(void)a;
}

static void
test_route(void)
{
	char buf[256];
	const struct nlmsghdr *nlh = (const void *)buf;
	const struct fib_rule_hdr *frh;
	const struct rtmsg *rtm;
	const struct nlattr *a;
	struct rt_attrs r;
	size_t len;

	len = weft_route_build_rule(buf, sizeof(buf), RTM_NEWRULE, AF_INET,
	    WEFT_MARK_TPROXY, WEFT_ROUTE_TABLE, WEFT_ROUTE_PRIORITY, 7);
	ok(len > 0 && len == nlh->nlmsg_len, "rule message built");
	is_int(nlh->nlmsg_type, RTM_NEWRULE, "RTM_NEWRULE");
	ok((nlh->nlmsg_flags & (NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK)) ==
	    (NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK),
	    "new rule: create, exclusive (idempotent via EEXIST), ack");
	frh = mnl_nlmsg_get_payload(nlh);
	is_int(frh->family, AF_INET, "rule family");
	is_int(frh->action, FR_ACT_TO_TBL, "rule action lookup");
	is_int(frh->table, RT_TABLE_UNSPEC, "table > 255 goes in FRA_TABLE");
	memset(&r, 0, sizeof(r));
	mnl_attr_for_each(a, nlh, sizeof(*frh)) {
		switch (mnl_attr_get_type(a)) {
		case FRA_TABLE:    r.table = mnl_attr_get_u32(a); break;
		case FRA_FWMARK:   r.mark = mnl_attr_get_u32(a); break;
		case FRA_FWMASK:   r.mask = mnl_attr_get_u32(a); break;
		case FRA_PRIORITY: r.prio = mnl_attr_get_u32(a); break;
		}
	}
	is_int(r.table, 15001, "FRA_TABLE 15001");
	is_int(r.mark, 0x53a, "FRA_FWMARK 0x53a");
	is_int(r.mask, 0xffffffff, "FRA_FWMASK all bits");
	is_int(r.prio, 15001, "FRA_PRIORITY 15001");

	len = weft_route_build_rule(buf, sizeof(buf), RTM_DELRULE, AF_INET6,
	    1, 2, 3, 8);
	is_int(nlh->nlmsg_type, RTM_DELRULE, "RTM_DELRULE");
	ok(!(nlh->nlmsg_flags & NLM_F_CREATE), "del rule: no create flag");
	frh = mnl_nlmsg_get_payload(nlh);
	is_int(frh->family, AF_INET6, "v6 rule family");

	len = weft_route_build_route(buf, sizeof(buf), RTM_NEWROUTE, AF_INET6,
	    WEFT_ROUTE_TABLE, 1, 9);
	ok(len > 0, "route message built");
	rtm = mnl_nlmsg_get_payload(nlh);
	is_int(rtm->rtm_family, AF_INET6, "route family");
	is_int(rtm->rtm_type, RTN_LOCAL, "route type local");
	is_int(rtm->rtm_scope, RT_SCOPE_HOST, "route scope host");
	is_int(rtm->rtm_dst_len, 0, "route dst default");
	memset(&r, 0, sizeof(r));
	mnl_attr_for_each(a, nlh, sizeof(*rtm)) {
		switch (mnl_attr_get_type(a)) {
		case RTA_TABLE: r.table = mnl_attr_get_u32(a); break;
		case RTA_OIF:   r.oif = mnl_attr_get_u32(a); break;
		}
	}
	is_int(r.table, 15001, "RTA_TABLE 15001");
	is_int(r.oif, 1, "RTA_OIF lo");
	ok(mnl_attr_parse(nlh, sizeof(*rtm), rt_attr_cb, &r) == MNL_CB_OK &&
	    r.n == 2, "route: exactly two attributes");
	is_int(weft_route_build_route(buf, 16, RTM_NEWROUTE, AF_INET, 1, 1, 1),
	    0, "route builder: too small buffer returns 0");
}

int
main(void)
{
	test_apply();
	test_update();
	test_udp();
	test_same_rules_sort();
	test_route();
	return tap_done();
}
