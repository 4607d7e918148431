/* Watching table `inet weft` for changes made by others: the nf_tables
 * notification group.  Our own transactions are recognised by the netlink
 * port id they came from (nf_tables sets nlmsg_pid of a notification to
 * the sender's port), so re-applying the table does not trigger itself. */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <libmnl/libmnl.h>

#include "weft/nft.h"
#include "nft-int.h"

#define WEFT_NFT_OWN_MAX	8

static pthread_mutex_t weft_nft_own_lock = PTHREAD_MUTEX_INITIALIZER;
static uint32_t weft_nft_own[WEFT_NFT_OWN_MAX];

void
weft_nft_monitor_own_portid(uint32_t portid, bool add)
{
	int i;

	pthread_mutex_lock(&weft_nft_own_lock);
	for (i = 0; i < WEFT_NFT_OWN_MAX; i++) {
		if (add && weft_nft_own[i] == 0) {
			weft_nft_own[i] = portid;
			break;
		}
		if (!add && weft_nft_own[i] == portid) {
			weft_nft_own[i] = 0;
			break;
		}
	}
	pthread_mutex_unlock(&weft_nft_own_lock);
}

static bool
weft_nft_is_own(uint32_t portid)
{
	bool own = false;
	int i;

	if (portid == 0)
		return false;
	pthread_mutex_lock(&weft_nft_own_lock);
	for (i = 0; i < WEFT_NFT_OWN_MAX; i++)
		if (weft_nft_own[i] == portid)
			own = true;
	pthread_mutex_unlock(&weft_nft_own_lock);
	return own;
}

int
weft_nft_monitor_open(char **err)
{
	struct sockaddr_nl sa = {
		.nl_family = AF_NETLINK,
		.nl_groups = 1U << (NFNLGRP_NFTABLES - 1),
	};
	int fd, sz = 1 << 20;

	fd = socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    NETLINK_NETFILTER);
	if (fd == -1)
		return weft_nft_err(err, "nft monitor: socket: %s",
		    strerror(errno));
	/* A flush of a big table is one notification per rule. */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof(sz)) == -1)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == -1) {
		weft_nft_err(err, "nft monitor: bind: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* Attribute 1 is the table name in every object message (NFTA_TABLE_NAME,
 * NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
 * NFTA_SET_ELEM_LIST_TABLE). */
static int
weft_nft_mon_attr_cb(const struct nlattr *a, void *arg)
{
	const char **table = arg;

	if (mnl_attr_get_type(a) == 1 &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
		*table = mnl_attr_get_str(a);
	return MNL_CB_OK;
}

static bool
weft_nft_mon_is_ours(const struct nlmsghdr *nlh)
{
	const struct nfgenmsg *g;
	const char *table = NULL;

	if (NFNL_SUBSYS_ID(nlh->nlmsg_type) != NFNL_SUBSYS_NFTABLES)
		return false;
	switch (NFNL_MSG_TYPE(nlh->nlmsg_type)) {
	case NFT_MSG_NEWTABLE:
	case NFT_MSG_DELTABLE:
	case NFT_MSG_NEWCHAIN:
	case NFT_MSG_DELCHAIN:
	case NFT_MSG_NEWRULE:
	case NFT_MSG_DELRULE:
	case NFT_MSG_NEWSET:
	case NFT_MSG_DELSET:
	case NFT_MSG_NEWSETELEM:
	case NFT_MSG_DELSETELEM:
		break;
	default:
		return false;
	}
	if (nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*g))
		return false;
	g = mnl_nlmsg_get_payload(nlh);
	if (g->nfgen_family != NFPROTO_INET)
		return false;
	mnl_attr_parse(nlh, sizeof(*g), weft_nft_mon_attr_cb, &table);
	return table != NULL && strcmp(table, WEFT_NFT_TABLE) == 0;
}

int
weft_nft_monitor_read(int fd)
{
	static char buf[65536];		/* monitor runs on one thread */
	bool changed = false;
	ssize_t r;

	for (;;) {
		const struct nlmsghdr *nlh;
		int len;

		r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN)
				break;
			/* Overrun: events were lost; say "changed" so the
			 * caller checks and restores the table. */
			if (errno == ENOBUFS) {
				changed = true;
				continue;
			}
			return -1;
		}
		len = (int)r;
		for (nlh = (const struct nlmsghdr *)buf; mnl_nlmsg_ok(nlh, len);
		    nlh = mnl_nlmsg_next(nlh, &len)) {
			if (weft_nft_is_own(nlh->nlmsg_pid))
				continue;
			if (weft_nft_mon_is_ours(nlh))
				changed = true;
		}
	}
	return changed ? 1 : 0;
}
