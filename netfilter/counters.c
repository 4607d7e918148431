/* Rule counters of table `inet weft`, for /metrics: a rule dump, each rule's
 * counter expression and comment. */
#include "config.h"

#include <sys/types.h>

#include <netinet/in.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/udata.h>

#include "weft/nft.h"
#include "nft-int.h"

#define WEFT_NFT_DUMP_TRIES	5

struct weft_nft_ctr {
	char		 chain[64];
	char		 comment[NFTNL_UDATA_COMMENT_MAXLEN + 1];
	uint64_t	 packets;
	uint64_t	 bytes;
};

static int
weft_nft_ctr_expr_cb(struct nftnl_expr *e, void *arg)
{
	struct weft_nft_ctr *c = arg;
	const char *name = nftnl_expr_get_str(e, NFTNL_EXPR_NAME);

	if (name != NULL && strcmp(name, "counter") == 0) {
		c->packets += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_PACKETS);
		c->bytes += nftnl_expr_get_u64(e, NFTNL_EXPR_CTR_BYTES);
	}
	return 0;
}

static int
weft_nft_ctr_udata_cb(const struct nftnl_udata *attr, void *arg)
{
	struct weft_nft_ctr *c = arg;
	uint8_t len = nftnl_udata_len(attr);
	const char *v = nftnl_udata_get(attr);

	if (nftnl_udata_type(attr) == NFTNL_UDATA_RULE_COMMENT && len > 0 &&
	    v[len - 1] == '\0' && len <= sizeof(c->comment))
		memcpy(c->comment, v, len);
	return 0;
}

static int
weft_nft_ctr_parse(const struct nlmsghdr *nlh, struct weft_nft_ctr *c)
{
	struct nftnl_rule *r;
	const char *chain;
	const void *ud;
	uint32_t udlen;

	memset(c, 0, sizeof(*c));
	if ((r = nftnl_rule_alloc()) == NULL)
		return -1;
	if (nftnl_rule_nlmsg_parse(nlh, r) == -1) {
		nftnl_rule_free(r);
		return -1;
	}
	if ((chain = nftnl_rule_get_str(r, NFTNL_RULE_CHAIN)) != NULL)
		strncpy(c->chain, chain, sizeof(c->chain) - 1);
	if (nftnl_rule_is_set(r, NFTNL_RULE_USERDATA) &&
	    (ud = nftnl_rule_get_data(r, NFTNL_RULE_USERDATA, &udlen)) != NULL)
		nftnl_udata_parse(ud, udlen, weft_nft_ctr_udata_cb, c);
	nftnl_expr_foreach(r, weft_nft_ctr_expr_cb, c);
	nftnl_rule_free(r);
	return 0;
}

/* One complete dump into *out; 1 when the ruleset changed meanwhile
 * (NLM_F_DUMP_INTR: try again), 0 when done, -1 on error. */
static int
weft_nft_ctr_dump(struct weft_nft *n, struct weft_nft_ctr **out, size_t *nout,
    char **err)
{
	char req[512];
	struct nftnl_rule *r;
	struct nlmsghdr *nlh;
	struct weft_nft_ctr *v = NULL, *nv;
	size_t nv_cap = 0, nn = 0;
	uint32_t seq = n->seq++;
	bool intr = false;
	ssize_t got;

	if ((r = nftnl_rule_alloc()) == NULL)
		return weft_nft_err(err, "nft counters: out of memory");
	nftnl_rule_set_str(r, NFTNL_RULE_TABLE, WEFT_NFT_TABLE);
	nlh = nftnl_nlmsg_build_hdr(req, NFT_MSG_GETRULE, NFPROTO_INET,
	    NLM_F_DUMP, seq);
	nftnl_rule_nlmsg_build_payload(nlh, r);
	nftnl_rule_free(r);

	weft_nft_drain(n);
	if (mnl_socket_sendto(n->nl, nlh, nlh->nlmsg_len) == -1)
		return weft_nft_err(err, "nft counters: sendto: %s",
		    strerror(errno));
	for (;;) {
		const struct nlmsghdr *m;
		int len;

		if ((got = weft_nft_recv(n, WEFT_NFT_TIMEOUT_MS)) == -1) {
			free(v);
			return weft_nft_err(err, "nft counters: %s",
			    strerror(errno));
		}
		len = (int)got;
		for (m = (const struct nlmsghdr *)n->rbuf; mnl_nlmsg_ok(m, len);
		    m = mnl_nlmsg_next(m, &len)) {
			if (m->nlmsg_seq != seq)
				continue;
			if (m->nlmsg_flags & NLM_F_DUMP_INTR)
				intr = true;
			if (m->nlmsg_type == NLMSG_DONE) {
				if (intr) {
					free(v);
					return 1;
				}
				*out = v;
				*nout = nn;
				return 0;
			}
			if (m->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e =
				    mnl_nlmsg_get_payload(m);

				free(v);
				if (e->error == -EINTR)
					return 1;
				if (e->error == -ENOENT) {	/* no table */
					*out = NULL;
					*nout = 0;
					return 0;
				}
				return weft_nft_err(err, "nft counters: %s",
				    strerror(-e->error));
			}
			if (NFNL_MSG_TYPE(m->nlmsg_type) != NFT_MSG_NEWRULE)
				continue;
			if (nn == nv_cap) {
				nv_cap = nv_cap ? nv_cap * 2 : 32;
				if ((nv = reallocarray(v, nv_cap,
				    sizeof(*v))) == NULL) {
					free(v);
					return weft_nft_err(err,
					    "nft counters: out of memory");
				}
				v = nv;
			}
			if (weft_nft_ctr_parse(m, &v[nn]) == 0)
				nn++;
		}
	}
}

int
weft_nft_read_counters(struct weft_nft *n, weft_nft_counter_cb cb, void *arg,
    char **err)
{
	struct weft_nft_ctr *v = NULL;
	size_t nv = 0, i;
	int tries, rc = 1;

	for (tries = 0; tries < WEFT_NFT_DUMP_TRIES && rc == 1; tries++)
		if ((rc = weft_nft_ctr_dump(n, &v, &nv, err)) == -1)
			return -1;
	if (rc == 1)
		return weft_nft_err(err, "nft counters: ruleset kept changing "
		    "during %d dumps", WEFT_NFT_DUMP_TRIES);
	for (i = 0; i < nv; i++)
		cb(v[i].chain, v[i].comment, v[i].packets, v[i].bytes, arg);
	free(v);
	return 0;
}
