/* The data path: worker threads, each with its own libevent loop and its own
 * SO_REUSEPORT listeners, relaying captured connections.  A connection lives
 * on one thread for its whole life.  Decisions read the current generation
 * (weft/gen.h). */
#ifndef WEFT_PROXY_H
#define WEFT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WEFT_PORT_OUTBOUND	15001	/* TPROXY: TCP from local pods */
#define WEFT_PORT_INBOUND	15006	/* TPROXY: plaintext TCP to local pods */
#define WEFT_PORT_TUNNEL	15008	/* TPROXY: mTLS tunnel to local pods */
#define WEFT_PORT_ADMIN		15020	/* node admin HTTP (/metrics, /healthz) */
#define WEFT_PORT_CONTROLLER	15010	/* controller API */

/* SO_MARK carried by every socket weft opens toward pods or peers; every
 * capture chain returns on it (istio uses the same value). */
#define WEFT_MARK_OWN		0x539
/* fwmark set by the capture rules on packets handed to a transparent socket;
 * policy routing sends it to the local table WEFT_ROUTE_TABLE. */
#define WEFT_MARK_TPROXY	0x53a
#define WEFT_ROUTE_TABLE	15001
#define WEFT_ROUTE_PRIORITY	15001	/* ip rule preference */

struct weft_proxy_config {
	int		 workers;		/* threads; 0 = one per core */
	uint16_t	 outbound_port;		/* WEFT_PORT_OUTBOUND */
	uint16_t	 inbound_port;		/* WEFT_PORT_INBOUND */
	uint16_t	 tunnel_port;		/* mTLS tunnel listener, and the
						 * port dialled on other nodes'
						 * pods; 0 = WEFT_PORT_TUNNEL.
						 * Outbound traffic uses the
						 * tunnel only once the snapshot
						 * carries a trust bundle. */
	uint32_t	 own_mark;		/* WEFT_MARK_OWN */
	size_t		 buffer_high;		/* per direction, bytes; 0 = default */
	int		 connect_timeout_ms;	/* 0 = default */
	int		 hold_ms;		/* how long a connection to a pod the
						 * node does not know yet is parked
						 * before it is refused; 0 = default */
	struct weft_metrics *metrics;		/* borrowed; worker i records in
						 * its shard i; NULL = off */
	bool		 tunnel_pool_off;	/* one TLS connection per tunnel
						 * stream (weft/tunnel.h
						 * tu_pool); false = pooled */
};

struct weft_metrics;
struct weft_proxy;

/* Open the listeners (IP_TRANSPARENT, SO_REUSEPORT, one set per worker) and
 * start the workers.  Returns 0 and *out, or -1 with a message logged and
 * nothing left open. */
int	weft_proxy_start(const struct weft_proxy_config *cfg,
	    struct weft_proxy **out);
/* Stop accepting, close every connection, join the workers, free. */
void	weft_proxy_stop(struct weft_proxy *p);

#endif
