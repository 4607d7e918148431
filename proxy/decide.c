/* The routing decision for a captured connection, from the current
 * generation: connect (where, and whether source-transparent), hold, or
 * refuse.  A pure function of its inputs, so it is tested table-driven. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "weft/balance.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/log.h"
#include "proxy/proxy-int.h"

const char *
weft_verdict_name(enum weft_verdict v)
{
	switch (v) {
	case WEFT_VERDICT_CONNECT:
		return "connect";
	case WEFT_VERDICT_HOLD:
		return "hold";
	case WEFT_VERDICT_REFUSE:
		return "refuse";
	case WEFT_VERDICT_TUNNEL:
		return "tunnel";
	case WEFT_VERDICT_ROUTE:
		return "route";
	}
	return "?";
}

static void
decide_refuse(struct weft_decision *d, enum weft_close_reason r,
    const char *why)
{
	d->d_verdict = WEFT_VERDICT_REFUSE;
	d->d_reason = r;
	snprintf(d->d_route, sizeof(d->d_route), "%s", why);
}

static void
decide_hold(struct weft_decision *d, const char *why)
{
	d->d_verdict = WEFT_VERDICT_HOLD;
	d->d_reason = WEFT_CLOSE_HELD_TIMEOUT;
	snprintf(d->d_route, sizeof(d->d_route), "hold: %s", why);
}

static void
decide_connect(struct weft_decision *d, const struct weft_ip *ip,
    uint16_t port, bool transparent)
{
	d->d_verdict = WEFT_VERDICT_CONNECT;
	weft_ip_to_sockaddr(ip, port, &d->d_upstream, &d->d_upstream_len);
	d->d_transparent = transparent;
}

static bool
decide_is_guard_port(const struct weft_relay_config *rc, uint16_t port,
    uint16_t listen_port)
{
	size_t i;

	if (port == listen_port)
		return true;
	for (i = 0; i < rc->rc_n_guard_ports; i++)
		if (rc->rc_guard_ports[i] == port)
			return true;
	return false;
}

/* A meshed pod on another node, from a meshed pod of ours, when the mesh has
 * a CA (the snapshot carries a trust bundle) and the tunnel is on: turn the
 * CONNECT decision in *d into TUNNEL.  Never falls back: without a
 * certificate the connection waits (conn.c), it is not sent in the clear. */
static void
decide_tunnel(const struct weft_gen *g, const struct weft_ip *sip,
    const struct weft_snap_pod *dpod, uint16_t dport,
    const struct weft_relay_config *rc, struct weft_decision *d)
{
	const struct weft_snapshot *snap = weft_gen_snapshot(g);
	const struct weft_snap_pod *spod;

	if (rc->rc_tunnel_port == 0 || snap->trust_bundle == NULL ||
	    snap->trust_domain == NULL || dpod == NULL || !dpod->meshed ||
	    dpod->node == NULL || weft_gen_pod_is_local(g, dpod))
		return;
	if ((spod = weft_gen_pod_by_ip(g, sip)) == NULL || !spod->meshed ||
	    !weft_gen_pod_is_local(g, spod))
		return;
	if (weft_spiffe_format(snap->trust_domain, spod->namespace,
	    spod->service_account, d->d_src_id, sizeof(d->d_src_id)) == NULL ||
	    weft_spiffe_format(snap->trust_domain, dpod->namespace,
	    dpod->service_account, d->d_dst_id, sizeof(d->d_dst_id)) == NULL) {
		decide_refuse(d, WEFT_CLOSE_ERROR, "identity does not fit");
		return;
	}
	d->d_verdict = WEFT_VERDICT_TUNNEL;
	weft_ip_to_sockaddr(&dpod->ip, dport, &d->d_upstream,
	    &d->d_upstream_len);
	weft_ip_to_sockaddr(&dpod->ip, rc->rc_tunnel_port, &d->d_tunnel,
	    &d->d_tunnel_len);
	d->d_transparent = false;
	snprintf(d->d_node, sizeof(d->d_node), "%s", dpod->node);
}

/* The destination side's policy, in process, when the connection goes
 * straight to a local meshed pod: same-node traffic from a pod of ours
 * carries that pod's identity (its address is trustworthy: anti-spoofing,
 * DESIGN §2); anything else is unauthenticated. */
static void
decide_policy(const struct weft_gen *g, enum weft_conn_dir dir,
    const struct weft_ip *sip, const struct weft_snap_pod *dpod,
    uint16_t dport, struct weft_decision *d)
{
	const struct weft_snap_pod *spod;
	const char *sns = NULL, *ssa = NULL;
	struct weft_policy_why why;

	if (d->d_verdict != WEFT_VERDICT_CONNECT || dpod == NULL ||
	    !dpod->meshed || !weft_gen_pod_is_local(g, dpod))
		return;
	if (dir == WEFT_DIR_OUTBOUND &&
	    (spod = weft_gen_pod_by_ip(g, sip)) != NULL && spod->meshed &&
	    weft_gen_pod_is_local(g, spod)) {
		sns = spod->namespace;
		ssa = spod->service_account;
	}
	if ((d->d_flow = weft_flow_new(sns, ssa, dpod->namespace,
	    dpod->service_account, dport)) == NULL) {
		decide_refuse(d, WEFT_CLOSE_ERROR, "out of memory");
		return;
	}
	d->d_policy = weft_flow_check(d->d_flow, g, &why);
	d->d_token = d->d_policy == WEFT_POLICY_DENY ?
	    weft_flow_deny_token(&why) : NULL;
	snprintf(d->d_why, sizeof(d->d_why), "%.150s", why.reason[0] != '\0' ?
	    why.reason : why.rule);
}

void
weft_decision_clear(struct weft_decision *d)
{
	weft_flow_free(d->d_flow);
	d->d_flow = NULL;
}

/* A service VIP: the router's (HTTP), or a backend and an endpoint for the
 * whole connection (weft/balance.h).  Returns false if dst is not a VIP. */
static bool
decide_service(const struct weft_gen *g, const struct weft_ip *sip,
    const struct weft_ip *ip, uint16_t port, const struct weft_relay_config *rc,
    struct weft_lb *lb, unsigned flags, struct weft_decision *d)
{
	const struct weft_snap_service *svc;
	const struct weft_service_port *sp = NULL;
	struct weft_lb_choice c;
	enum weft_lb_proto proto;
	char via[120];

	if ((svc = weft_gen_service_by_vip(g, ip, port, IPPROTO_TCP,
	    &sp)) == NULL)
		return false;
	proto = weft_lb_port_proto(sp);
	if ((flags & WEFT_DECIDE_ROUTE) && !(flags & WEFT_DECIDE_OPAQUE) &&
	    proto != WEFT_LB_PROTO_TCP) {
		d->d_verdict = WEFT_VERDICT_ROUTE;
		d->d_sniff = proto == WEFT_LB_PROTO_UNKNOWN;
		snprintf(d->d_route, sizeof(d->d_route), "svc %s/%s: %s",
		    svc->namespace, svc->name, d->d_sniff ? "sniff" : "http");
		return true;
	}
	/* Not HTTP: the catch-all split, if any, decides for the whole
	 * connection (SPEC §5.2). */
	if (weft_lb_backend(lb, g, svc, sp, NULL, &c) != WEFT_LB_OK ||
	    weft_lb_endpoint(lb, g, &c, NULL, 0, weft_lb_now_ms()) !=
	    WEFT_LB_OK) {
		/* kube-proxy rejects a service without endpoints too. */
		decide_refuse(d, WEFT_CLOSE_NO_ROUTE, "");
		snprintf(d->d_route, sizeof(d->d_route), "svc %.40s/%.40s: "
		    "%.70s", svc->namespace, svc->name, c.why);
		return true;
	}
	decide_connect(d, &c.ep.pod->ip, c.ep.port, rc->rc_transparent);
	via[0] = '\0';
	if (c.split != NULL)
		snprintf(via, sizeof(via), " split %s -> svc %s", c.split->name,
		    c.backend->name);
	snprintf(d->d_route, sizeof(d->d_route), "svc %s/%s%s -> pod %s/%s",
	    svc->namespace, svc->name, via, c.ep.pod->namespace,
	    c.ep.pod->name);
	d->d_lb_ep = c.state;
	decide_tunnel(g, sip, c.ep.pod, c.ep.port, rc, d);
	decide_policy(g, WEFT_DIR_OUTBOUND, sip, c.ep.pod, c.ep.port, d);
	return true;
}

void
weft_decide(const struct weft_gen *g, enum weft_conn_dir dir,
    const struct sockaddr *src, const struct sockaddr *dst,
    uint16_t listen_port, const struct weft_relay_config *rc,
    struct weft_decision *d)
{
	weft_decide_lb(g, dir, src, dst, listen_port, rc, NULL, 0, d);
}

void
weft_decide_lb(const struct weft_gen *g, enum weft_conn_dir dir,
    const struct sockaddr *src, const struct sockaddr *dst,
    uint16_t listen_port, const struct weft_relay_config *rc,
    struct weft_lb *lb, unsigned flags, struct weft_decision *d)
{
	const struct weft_snap_pod *pod;
	struct weft_ip sip, dip;
	uint16_t sport, dport;

	(void)sport;
	memset(d, 0, sizeof(*d));
	if (weft_ip_from_sockaddr(src, &sip, &sport) == -1 ||
	    weft_ip_from_sockaddr(dst, &dip, &dport) == -1) {
		decide_refuse(d, WEFT_CLOSE_ERROR, "not an IP socket");
		return;
	}
	/* Before anything else: a connection to our own listener would be
	 * accepted by us again, forever (feasibility §3). */
	if (decide_is_guard_port(rc, dport, listen_port)) {
		decide_refuse(d, WEFT_CLOSE_SELF_CONNECT,
		    "destination is a weft port");
		return;
	}
	if (g == NULL) {
		decide_hold(d, "no generation yet");
		return;
	}
	pod = weft_gen_pod_by_ip(g, &dip);

	switch (dir) {
	case WEFT_DIR_OUTBOUND:
		if (decide_service(g, &sip, &dip, dport, rc, lb, flags, d))
			return;
		if (pod != NULL) {
			decide_connect(d, &dip, dport, rc->rc_transparent);
			snprintf(d->d_route, sizeof(d->d_route), "pod %s/%s",
			    pod->namespace, pod->name);
			decide_tunnel(g, &sip, pod, dport, rc, d);
			decide_policy(g, dir, &sip, pod, dport, d);
			return;
		}
		if (weft_gen_in_local_cidrs(g, &dip)) {
			decide_hold(d, "unknown pod in local CIDR");
			return;
		}
		decide_connect(d, &dip, dport, rc->rc_transparent);
		snprintf(d->d_route, sizeof(d->d_route), "passthrough");
		return;
	case WEFT_DIR_INBOUND:
		if (pod != NULL && weft_gen_pod_is_local(g, pod)) {
			decide_connect(d, &dip, dport, rc->rc_transparent);
			snprintf(d->d_route, sizeof(d->d_route), "pod %s/%s",
			    pod->namespace, pod->name);
			decide_policy(g, dir, &sip, pod, dport, d);
			return;
		}
		if (weft_gen_in_local_cidrs(g, &dip)) {
			decide_hold(d, "unknown pod in local CIDR");
			return;
		}
		decide_refuse(d, WEFT_CLOSE_DENIED, pod != NULL ?
		    "inbound to a pod of another node" :
		    "inbound to a non-pod address");
		return;
	case WEFT_DIR_RELAY:
	case WEFT_DIR_TUNNEL:
		break;
	}
	decide_refuse(d, WEFT_CLOSE_ERROR, "no decision for this direction");
}
