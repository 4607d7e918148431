/* netfilter/ internals: the batch writer shared by table.c (building) and
 * mnl.c (sending).  Not part of the public API (include/weft/nft.h). */
#ifndef WEFT_NFT_INT_H
#define WEFT_NFT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/types.h>
#include <linux/netlink.h>

#include "weft/nft.h"

struct mnl_socket;

/* Largest single netlink message we build.  Set elements are split so that
 * a NEWSETELEM stays far below it: the element list is one nested attribute
 * and nla_len is 16 bits. */
#define WEFT_NFT_MSG_MAX	65536
#define WEFT_NFT_ELEMS_PER_MSG	64

/* What a message of the batch stands for, so that a kernel error, which
 * carries only the sequence number, can name the config object. */
struct weft_nft_msgdesc {
	uint32_t	 seq;
	char		 what[512];
};

/* A batch under construction in a caller-provided buffer. */
struct weft_nft_batch {
	char		*buf;		/* borrowed */
	size_t		 cap;
	size_t		 len;
	uint32_t	 seq;		/* next sequence number */
	uint32_t	 seq_first;	/* first message after BEGIN */
	char		*scratch;	/* owned: WEFT_NFT_MSG_MAX bytes */
	struct weft_nft_msgdesc *msgs;	/* owned; NULL when not recording */
	size_t		 n_msgs;
	size_t		 cap_msgs;
	bool		 record;
	bool		 failed;	/* out of room or memory */
	uint32_t	 next_set_id;
};

int	weft_nft_batch_init(struct weft_nft_batch *b, void *buf, size_t cap,
	    uint32_t seq, bool record);
void	weft_nft_batch_free(struct weft_nft_batch *b);
/* Start a message in the scratch buffer; finish it with msg_add(), which
 * copies it into the batch and records what it stands for. */
struct nlmsghdr *weft_nft_msg_start(struct weft_nft_batch *b, uint16_t type,
	    uint16_t flags);
void	weft_nft_msg_add(struct weft_nft_batch *b, struct nlmsghdr *nlh,
	    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void	weft_nft_batch_open(struct weft_nft_batch *b);	/* BEGIN */
void	weft_nft_batch_close(struct weft_nft_batch *b);	/* END */

/* The netfilter socket (mnl.c).  One per daemon, opened at startup,
 * non-blocking: every reply of a request is queued by the time sendto()
 * returns (netlink processing is synchronous), so reads never wait long. */
struct weft_nft {
	struct mnl_socket *nl;
	uint32_t	 portid;
	uint32_t	 seq;
	char		*rbuf;		/* owned, WEFT_NFT_RBUF bytes */
	int		 rcvbuf;	/* SO_RCVBUF we asked for */
	int		 sndbuf;
};

#define WEFT_NFT_RBUF		(128 * 1024)
#define WEFT_NFT_TIMEOUT_MS	2000

/* Discard replies left over from an earlier request that timed out. */
void	weft_nft_drain(struct weft_nft *n);
/* One datagram into n->rbuf, waiting up to timeout_ms.  Length, or -1 with
 * errno (ETIMEDOUT when nothing came). */
ssize_t	weft_nft_recv(struct weft_nft *n, int timeout_ms);
/* The text of NLMSGERR_ATTR_MSG of an error message, or NULL. */
const char *weft_nft_extack_msg(const struct nlmsghdr *nlh);

/* Builders (table.c).  0 on success, -1 when the buffer is too small. */
int	weft_nft_build_apply(struct weft_nft_batch *b,
	    const struct weft_nft_config *cfg);
/* Number of messages added (0 = nothing differs), -1 when out of room. */
int	weft_nft_build_update(struct weft_nft_batch *b,
	    const struct weft_nft_config *old, const struct weft_nft_config *new);
int	weft_nft_build_delete(struct weft_nft_batch *b);

/* Monitor (monitor.c): netlink port ids of our own weft_nft sockets, so the
 * monitor ignores the notifications of our own transactions. */
void	weft_nft_monitor_own_portid(uint32_t portid, bool add);

/* printf into a malloc'd *err (if err is not NULL); returns -1. */
int	weft_nft_err(char **err, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

#endif
