/* The policy routing TPROXY needs, over rtnetlink: for v4 and v6,
 *	ip rule add fwmark MARK lookup TABLE pref PRIO
 *	ip route add local default dev lo table TABLE
 * so that packets the capture rules marked are delivered locally, to the
 * transparent socket tproxy assigned them. */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>

#include <libmnl/libmnl.h>

#include "weft/nft.h"
#include "nft-int.h"

#define WEFT_ROUTE_REMOVE_MAX	16	/* duplicates someone else added */

size_t
weft_route_build_rule(void *buf, size_t len, int type, int family,
    uint32_t mark, uint32_t table, uint32_t prio, uint32_t seq)
{
	struct nlmsghdr *nlh;
	struct fib_rule_hdr *frh;

	if (len < 128)
		return 0;
	memset(buf, 0, 128);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (uint16_t)type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	if (type == RTM_NEWRULE)
		/* EXCL makes the kernel compare with existing rules: EEXIST
		 * instead of a duplicate. */
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = seq;
	frh = mnl_nlmsg_put_extra_header(nlh, sizeof(*frh));
	frh->family = (uint8_t)family;
	frh->action = FR_ACT_TO_TBL;
	frh->table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	mnl_attr_put_u32(nlh, FRA_TABLE, table);
	mnl_attr_put_u32(nlh, FRA_FWMARK, mark);
	mnl_attr_put_u32(nlh, FRA_FWMASK, 0xffffffff);
	mnl_attr_put_u32(nlh, FRA_PRIORITY, prio);
	return nlh->nlmsg_len;
}

size_t
weft_route_build_route(void *buf, size_t len, int type, int family,
    uint32_t table, int ifindex, uint32_t seq)
{
	struct nlmsghdr *nlh;
	struct rtmsg *rtm;

	if (len < 128)
		return 0;
	memset(buf, 0, 128);
	nlh = mnl_nlmsg_put_header(buf);
	nlh->nlmsg_type = (uint16_t)type;
	nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
	if (type == RTM_NEWROUTE)
		nlh->nlmsg_flags |= NLM_F_CREATE | NLM_F_EXCL;
	nlh->nlmsg_seq = seq;
	rtm = mnl_nlmsg_put_extra_header(nlh, sizeof(*rtm));
	rtm->rtm_family = (uint8_t)family;
	rtm->rtm_dst_len = 0;			/* default */
	rtm->rtm_table = table < 256 ? (uint8_t)table : RT_TABLE_UNSPEC;
	rtm->rtm_protocol = RTPROT_BOOT;	/* what `ip route add` uses */
	rtm->rtm_scope = RT_SCOPE_HOST;
	rtm->rtm_type = RTN_LOCAL;
	mnl_attr_put_u32(nlh, RTA_TABLE, table);
	mnl_attr_put_u32(nlh, RTA_OIF, (uint32_t)ifindex);
	return nlh->nlmsg_len;
}

/* Send one request and wait for its ack: 0 or a negative errno. */
static int
weft_route_talk(struct mnl_socket *nl, const struct nlmsghdr *req,
    char *rbuf, size_t rlen, const char **extmsg)
{
	struct pollfd pfd = { .fd = mnl_socket_get_fd(nl), .events = POLLIN };
	ssize_t r;

	*extmsg = NULL;
	if (mnl_socket_sendto(nl, req, req->nlmsg_len) == -1)
		return -errno;
	for (;;) {
		const struct nlmsghdr *nlh;
		int len;

		r = recv(pfd.fd, rbuf, rlen, MSG_DONTWAIT);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -errno;
			if (poll(&pfd, 1, WEFT_NFT_TIMEOUT_MS) == 0)
				return -ETIMEDOUT;
			continue;
		}
		len = (int)r;
		for (nlh = (const struct nlmsghdr *)rbuf; mnl_nlmsg_ok(nlh, len);
		    nlh = mnl_nlmsg_next(nlh, &len)) {
			const struct nlmsgerr *e;

			if (nlh->nlmsg_seq != req->nlmsg_seq ||
			    nlh->nlmsg_type != NLMSG_ERROR)
				continue;
			e = mnl_nlmsg_get_payload(nlh);
			if (e->error != 0)
				*extmsg = weft_nft_extack_msg(nlh);
			return e->error;
		}
	}
}

static struct mnl_socket *
weft_route_open(char **err)
{
	struct mnl_socket *nl;
	int on = 1;

	nl = mnl_socket_open2(NETLINK_ROUTE, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (nl == NULL) {
		weft_nft_err(err, "rtnetlink socket: %s", strerror(errno));
		return NULL;
	}
	if (mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == -1) {
		weft_nft_err(err, "rtnetlink bind: %s", strerror(errno));
		mnl_socket_close(nl);
		return NULL;
	}
	mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, sizeof(on));
	mnl_socket_setsockopt(nl, NETLINK_CAP_ACK, &on, sizeof(on));
	return nl;
}

static int
weft_route_do(bool install, uint32_t mark, uint32_t table, uint32_t prio,
    char **err)
{
	static const int families[] = { AF_INET, AF_INET6 };
	char req[256], *rbuf;
	struct mnl_socket *nl;
	const char *x;
	uint32_t seq = (uint32_t)time(NULL);
	unsigned lo;
	size_t i;
	int rc = 0, e, k;

	if ((lo = if_nametoindex("lo")) == 0)
		return weft_nft_err(err, "policy routing: no loopback "
		    "interface: %s", strerror(errno));
	if ((rbuf = malloc(8192)) == NULL)
		return weft_nft_err(err, "policy routing: out of memory");
	if ((nl = weft_route_open(err)) == NULL) {
		free(rbuf);
		return -1;
	}
	for (i = 0; i < sizeof(families) / sizeof(families[0]) && rc == 0;
	    i++) {
		const char *fam = families[i] == AF_INET ? "" : " -6";

		/* Rule then route on install, the reverse on removal. */
		for (k = 0; k < 2 && rc == 0; k++) {
			bool is_rule = install ? k == 0 : k == 1;
			int tries = install ? 1 : WEFT_ROUTE_REMOVE_MAX;

			while (tries-- > 0) {
				if (is_rule)
					weft_route_build_rule(req, sizeof(req),
					    install ? RTM_NEWRULE : RTM_DELRULE,
					    families[i], mark, table, prio,
					    seq++);
				else
					weft_route_build_route(req, sizeof(req),
					    install ? RTM_NEWROUTE :
					    RTM_DELROUTE, families[i], table,
					    (int)lo, seq++);
				e = weft_route_talk(nl,
				    (const struct nlmsghdr *)req, rbuf, 8192,
				    &x);
				if (e == 0 && !install)
					continue;	/* delete duplicates */
				if (e == 0 || (install && e == -EEXIST) ||
				    (!install && (e == -ENOENT ||
				    e == -ESRCH)))
					break;
				/* No IPv6 in this kernel or namespace. */
				if (families[i] == AF_INET6 &&
				    e == -EAFNOSUPPORT)
					break;
				if (is_rule)
					rc = weft_nft_err(err, "ip%s rule %s "
					    "fwmark 0x%x lookup %u pref %u: "
					    "%s%s%s%s", fam,
					    install ? "add" : "del", mark,
					    table, prio, strerror(-e),
					    x ? " (" : "", x ? x : "",
					    x ? ")" : "");
				else
					rc = weft_nft_err(err, "ip%s route %s "
					    "local default dev lo table %u: "
					    "%s%s%s%s", fam,
					    install ? "add" : "del", table,
					    strerror(-e), x ? " (" : "",
					    x ? x : "", x ? ")" : "");
				break;
			}
		}
	}
	mnl_socket_close(nl);
	free(rbuf);
	return rc;
}

int
weft_route_install(uint32_t mark, uint32_t table, uint32_t prio, char **err)
{
	return weft_route_do(true, mark, table, prio, err);
}

int
weft_route_remove(uint32_t mark, uint32_t table, uint32_t prio, char **err)
{
	return weft_route_do(false, mark, table, prio, err);
}
