/* The netfilter netlink socket: open, send a batch, drain every ACK and
 * collect every error with the object it belongs to (after nftables'
 * src/mnl.c mnl_batch_talk: continue on error, report them all). */
#include "config.h"

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <libnftnl/table.h>

#include "weft/nft.h"
#include "nft-int.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK	270
#endif

struct weft_nft *
weft_nft_open(char **err)
{
	struct weft_nft *n;
	int on = 1;

	if ((n = calloc(1, sizeof(*n))) == NULL ||
	    (n->rbuf = malloc(WEFT_NFT_RBUF)) == NULL) {
		free(n);
		weft_nft_err(err, "nft: out of memory");
		return NULL;
	}
	n->nl = mnl_socket_open2(NETLINK_NETFILTER, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (n->nl == NULL) {
		weft_nft_err(err, "nft: netlink socket: %s", strerror(errno));
		goto fail;
	}
	if (mnl_socket_bind(n->nl, 0, MNL_SOCKET_AUTOPID) == -1) {
		weft_nft_err(err, "nft: netlink bind: %s", strerror(errno));
		goto fail;
	}
	/* Error messages from the kernel where it has them; capped acks so a
	 * failing batch does not echo every message back at us. */
	mnl_socket_setsockopt(n->nl, NETLINK_EXT_ACK, &on, sizeof(on));
	mnl_socket_setsockopt(n->nl, NETLINK_CAP_ACK, &on, sizeof(on));
	n->portid = mnl_socket_get_portid(n->nl);
	n->seq = (uint32_t)time(NULL);
	weft_nft_monitor_own_portid(n->portid, true);
	return n;
fail:
	if (n->nl != NULL)
		mnl_socket_close(n->nl);
	free(n->rbuf);
	free(n);
	return NULL;
}

void
weft_nft_close(struct weft_nft *n)
{
	if (n == NULL)
		return;
	weft_nft_monitor_own_portid(n->portid, false);
	mnl_socket_close(n->nl);
	free(n->rbuf);
	free(n);
}

void
weft_nft_drain(struct weft_nft *n)
{
	int fd = mnl_socket_get_fd(n->nl);

	while (recv(fd, n->rbuf, WEFT_NFT_RBUF, MSG_DONTWAIT) != -1 ||
	    errno == EINTR || errno == ENOBUFS)
		;
}

ssize_t
weft_nft_recv(struct weft_nft *n, int timeout_ms)
{
	struct pollfd pfd = { .fd = mnl_socket_get_fd(n->nl), .events = POLLIN };
	ssize_t r;
	int rc;

	for (;;) {
		r = recv(pfd.fd, n->rbuf, WEFT_NFT_RBUF, MSG_DONTWAIT);
		if (r >= 0 || (errno != EAGAIN && errno != EINTR))
			return r;
		if (errno == EINTR)
			continue;
		rc = poll(&pfd, 1, timeout_ms);
		if (rc == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if (rc == -1 && errno != EINTR)
			return -1;
	}
}

struct weft_nft_extack {
	const char	*msg;
};

static int
weft_nft_extack_cb(const struct nlattr *a, void *arg)
{
	struct weft_nft_extack *x = arg;

	if (mnl_attr_get_type(a) == NLMSGERR_ATTR_MSG &&
	    mnl_attr_validate(a, MNL_TYPE_NUL_STRING) == 0)
		x->msg = mnl_attr_get_str(a);
	return MNL_CB_OK;
}

const char *
weft_nft_extack_msg(const struct nlmsghdr *nlh)
{
	const struct nlmsgerr *e = mnl_nlmsg_get_payload(nlh);
	struct weft_nft_extack x = { NULL };
	size_t off;

	if (!(nlh->nlmsg_flags & NLM_F_ACK_TLVS) ||
	    nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
		return NULL;
	off = sizeof(*e);
	/* Without NLM_F_CAPPED the failing request is echoed first. */
	if (!(nlh->nlmsg_flags & NLM_F_CAPPED) && e->error != 0)
		off += e->msg.nlmsg_len - sizeof(struct nlmsghdr);
	if (NLMSG_HDRLEN + MNL_ALIGN(off) > nlh->nlmsg_len)
		return NULL;
	mnl_attr_parse(nlh, (unsigned int)MNL_ALIGN(off), weft_nft_extack_cb, &x);
	return x.msg;
}

/* Room for one ack per message: a netlink ack costs far more than its bytes
 * in socket accounting, and a lost ack would leave the outcome unknown. */
static void
weft_nft_size_buffers(struct weft_nft *n, size_t nmsgs, size_t len)
{
	int fd = mnl_socket_get_fd(n->nl);
	size_t want_r = nmsgs * 2048 + 65536, want_s = len + 65536;
	int v;

	if (want_r > (size_t)n->rcvbuf && want_r < 1U << 30) {
		v = (int)want_r;
		if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) ==
		    -1)
			setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v));
		n->rcvbuf = v;
	}
	if (want_s > (size_t)n->sndbuf && want_s < 1U << 30) {
		v = (int)want_s;
		if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) ==
		    -1)
			setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
		n->sndbuf = v;
	}
}

/* Send a built batch and read one ack per message.  Every non-zero error is
 * reported with the object its message stands for; any error means the
 * kernel aborted the whole transaction. */
static int
weft_nft_send_batch(struct weft_nft *n, struct weft_nft_batch *b,
    const char *op, char **err)
{
	char *msg = NULL;
	size_t msglen = 0, acked = 0, i, nerr = 0;
	bool *seen = NULL;
	FILE *f = NULL;
	ssize_t r;
	int rc = -1;

	if (b->n_msgs == 0)
		return 0;
	if ((seen = calloc(b->n_msgs, sizeof(*seen))) == NULL ||
	    (f = open_memstream(&msg, &msglen)) == NULL) {
		free(seen);
		return weft_nft_err(err, "nft %s: out of memory", op);
	}
	weft_nft_drain(n);
	weft_nft_size_buffers(n, b->n_msgs, b->len);
	if (mnl_socket_sendto(n->nl, b->buf, b->len) == -1) {
		fprintf(f, "%ssendto: %s", nerr ? "; " : "", strerror(errno));
		nerr++;
		goto done;
	}
	while (acked < b->n_msgs) {
		const struct nlmsghdr *nlh;
		int len;

		if ((r = weft_nft_recv(n, WEFT_NFT_TIMEOUT_MS)) == -1) {
			fprintf(f, "%s%s after %zu of %zu acknowledgements "
			    "(outcome unknown)", nerr ? "; " : "", errno == ENOBUFS ?
			    "acknowledgements lost (receive buffer overrun)" :
			    strerror(errno), acked, b->n_msgs);
			nerr++;
			break;
		}
		len = (int)r;
		for (nlh = (const struct nlmsghdr *)n->rbuf;
		    mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
			const struct nlmsgerr *e;
			const char *x;

			if (nlh->nlmsg_type != NLMSG_ERROR ||
			    nlh->nlmsg_len < NLMSG_HDRLEN + sizeof(*e))
				continue;
			e = mnl_nlmsg_get_payload(nlh);
			x = weft_nft_extack_msg(nlh);
			if (nlh->nlmsg_seq == b->seq_first - 1 ||
			    nlh->nlmsg_seq == b->seq - 1) {
				/* BEGIN or END refused: nothing else will
				 * answer (e.g. EPERM without CAP_NET_ADMIN). */
				if (e->error != 0) {
					fprintf(f, "%sbatch %s: %s%s%s%s",
					    nerr ? "; " : "", nlh->nlmsg_seq == b->seq - 1 ?
					    "end" : "begin", strerror(-e->error),
					    x ? " (" : "", x ? x : "",
					    x ? ")" : "");
					nerr++;
					goto done;
				}
				continue;
			}
			if (nlh->nlmsg_seq < b->seq_first ||
			    nlh->nlmsg_seq - b->seq_first >= b->n_msgs)
				continue;	/* not ours: stale */
			i = nlh->nlmsg_seq - b->seq_first;
			if (b->msgs[i].seq != nlh->nlmsg_seq)
				continue;
			if (!seen[i]) {
				seen[i] = true;
				acked++;
			}
			if (e->error != 0) {
				fprintf(f, "%s%s: %s%s%s%s", nerr ? "; " : "",
				    b->msgs[i].what,
				    strerror(-e->error), x ? " (" : "",
				    x ? x : "", x ? ")" : "");
				nerr++;
			}
		}
	}
done:
	fclose(f);
	f = NULL;
	if (nerr == 0)
		rc = 0;
	else
		weft_nft_err(err, "nft %s failed, nothing changed: %s", op,
		    msg ? msg : "");
	free(msg);
	free(seen);
	return rc;
}

/* Build with build() into a buffer that grows until the batch fits. */
static int
weft_nft_run(struct weft_nft *n, const char *op, size_t hint,
    int (*build)(struct weft_nft_batch *, const void *, const void *),
    const void *a1, const void *a2, char **err)
{
	struct weft_nft_batch b;
	size_t cap = hint;
	char *buf = NULL;
	int rc, built;

	for (;;) {
		char *nb;

		if (cap > 256U << 20)
			return weft_nft_err(err, "nft %s: batch too large", op);
		if ((nb = realloc(buf, cap)) == NULL) {
			free(buf);
			return weft_nft_err(err, "nft %s: out of memory", op);
		}
		buf = nb;
		if (weft_nft_batch_init(&b, buf, cap, n->seq, true) == -1) {
			free(buf);
			return weft_nft_err(err, "nft %s: out of memory", op);
		}
		built = build(&b, a1, a2);
		if (built != -1)
			break;
		weft_nft_batch_free(&b);
		cap *= 2;
	}
	n->seq = b.seq;
	rc = built == 0 && b.n_msgs == 0 ? 0 : weft_nft_send_batch(n, &b, op,
	    err);
	weft_nft_batch_free(&b);
	free(buf);
	return rc;
}

static int
weft_nft_apply_cb(struct weft_nft_batch *b, const void *cfg, const void *unused)
{
	return weft_nft_build_apply(b, cfg);
}

static int
weft_nft_update_cb(struct weft_nft_batch *b, const void *old, const void *new)
{
	int n = weft_nft_build_update(b, old, new);

	/* An empty update is skipped: no batch at all. */
	if (n == 0)
		b->n_msgs = 0;
	return n == -1 ? -1 : 0;
}

static int
weft_nft_delete_cb(struct weft_nft_batch *b, const void *u1, const void *u2)
{
	return weft_nft_build_delete(b);
}

int
weft_nft_apply(struct weft_nft *n, const struct weft_nft_config *cfg,
    char **err)
{
	size_t hint = 64 * 1024 + (cfg->n_meshed + cfg->n_exempt) * 320 +
	    cfg->n_udp * 400 + cfg->n_pod_cidrs * 128;

	return weft_nft_run(n, "apply table inet " WEFT_NFT_TABLE, hint,
	    weft_nft_apply_cb, cfg, NULL, err);
}

int
weft_nft_update_pods(struct weft_nft *n, const struct weft_nft_config *old,
    const struct weft_nft_config *new, char **err)
{
	size_t hint = 16 * 1024 + (old->n_meshed + old->n_exempt +
	    new->n_meshed + new->n_exempt + old->n_udp + new->n_udp) * 400;

	return weft_nft_run(n, "update sets", hint, weft_nft_update_cb,
	    old, new, err);
}

int
weft_nft_delete(struct weft_nft *n, char **err)
{
	return weft_nft_run(n, "delete table inet " WEFT_NFT_TABLE, 4096,
	    weft_nft_delete_cb, NULL, NULL, err);
}

int
weft_nft_exists(struct weft_nft *n, char **err)
{
	char buf[512];
	struct nftnl_table *t;
	struct nlmsghdr *nlh;
	uint32_t seq = n->seq++;
	int found = 0;
	ssize_t r;

	if ((t = nftnl_table_alloc()) == NULL)
		return weft_nft_err(err, "nft: out of memory");
	nftnl_table_set_str(t, NFTNL_TABLE_NAME, WEFT_NFT_TABLE);
	nlh = nftnl_nlmsg_build_hdr(buf, NFT_MSG_GETTABLE, NFPROTO_INET,
	    NLM_F_ACK, seq);
	nftnl_table_nlmsg_build_payload(nlh, t);
	nftnl_table_free(t);

	weft_nft_drain(n);
	if (mnl_socket_sendto(n->nl, nlh, nlh->nlmsg_len) == -1)
		return weft_nft_err(err, "nft get table: sendto: %s",
		    strerror(errno));
	for (;;) {
		const struct nlmsghdr *m;
		int len;

		if ((r = weft_nft_recv(n, WEFT_NFT_TIMEOUT_MS)) == -1)
			return weft_nft_err(err, "nft get table: %s",
			    strerror(errno));
		len = (int)r;
		for (m = (const struct nlmsghdr *)n->rbuf; mnl_nlmsg_ok(m, len);
		    m = mnl_nlmsg_next(m, &len)) {
			const struct nlmsgerr *e;

			if (m->nlmsg_seq != seq)
				continue;
			if (m->nlmsg_type != NLMSG_ERROR) {
				found = 1;
				continue;
			}
			e = mnl_nlmsg_get_payload(m);
			if (e->error == 0)
				return found;
			if (e->error == -ENOENT)
				return 0;
			return weft_nft_err(err, "nft get table: %s",
			    strerror(-e->error));
		}
	}
}
