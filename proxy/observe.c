/* Labels for the metrics of a proxied connection (weft/metrics.h), looked up
 * once when it opens: who the source and the destination are, and which
 * Service was called, from the generation's indexes. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "weft/conn.h"
#include "weft/gen.h"
#include "weft/ip.h"
#include "weft/metrics.h"
#include "weft/spiffe.h"

/* "ip:port" or "[v6]:port" into ip; -1 if it is neither. */
static int
observe_parse_addr(const char *s, struct weft_ip *ip)
{
	char host[80], *colon;

	if (snprintf(host, sizeof(host), "%s", s) >= (int)sizeof(host))
		return -1;
	if ((colon = strrchr(host, ':')) != NULL && colon != host) {
		*colon = '\0';
		if (host[0] == '[' && colon[-1] == ']') {
			colon[-1] = '\0';
			memmove(host, host + 1, strlen(host));
		}
	}
	return weft_ip_parse(host, ip);
}

static const struct weft_snap_pod *
observe_pod(const struct weft_gen *g, const struct sockaddr *sa)
{
	struct weft_ip ip;

	if (g == NULL || sa == NULL || weft_ip_from_sockaddr(sa, &ip,
	    NULL) == -1)
		return NULL;
	return weft_gen_pod_by_ip(g, &ip);
}

static struct weft_metrics_flow *
observe_flow(struct weft_conn_ctx *cx, const struct weft_gen *g,
    enum weft_metrics_side side, const struct sockaddr *src,
    const char *src_str, const char *src_id, const struct sockaddr *orig_dst,
    const struct sockaddr *upstream)
{
	struct weft_metrics_conn c;
	const struct weft_snap_pod *sp = NULL, *dp;
	const struct weft_snap_service *svc = NULL;
	const struct weft_service_port *port;
	struct weft_spiffe_id id;
	struct weft_ip ip;
	uint16_t p;
	const char *why;

	memset(&c, 0, sizeof(c));
	c.side = side;
	if (src != NULL)
		sp = observe_pod(g, src);
	else if (src_str != NULL && *src_str != '\0' && g != NULL &&
	    observe_parse_addr(src_str, &ip) == 0)
		sp = weft_gen_pod_by_ip(g, &ip);
	if (src_id != NULL && weft_spiffe_parse(src_id, &id, &why) == 0) {
		/* The certificate is who called; a pod address that
		 * disagrees is not taken for it. */
		c.src.ns = id.namespace;
		c.src.sa = id.service_account;
		if (sp != NULL && strcmp(sp->namespace, id.namespace) == 0 &&
		    strcmp(sp->service_account, id.service_account) == 0)
			c.src.pod = sp->name;
	} else if (sp != NULL) {
		c.src.ns = sp->namespace;
		c.src.sa = sp->service_account;
		c.src.pod = sp->name;
	}
	if ((dp = observe_pod(g, upstream)) != NULL) {
		c.dst.ns = dp->namespace;
		c.dst.sa = dp->service_account;
		c.dst.pod = dp->name;
	}
	if (g != NULL && orig_dst != NULL &&
	    weft_ip_from_sockaddr(orig_dst, &ip, &p) == 0 &&
	    (svc = weft_gen_service_by_vip(g, &ip, p, IPPROTO_TCP,
	    &port)) != NULL) {
		c.dst_service = svc->name;
		if (c.dst.ns == NULL)
			c.dst.ns = svc->namespace;
	}
	return weft_metrics_flow_new(cx->cx_metrics, &c);
}

struct weft_metrics_flow *
weft_observe_flow(struct weft_conn_ctx *cx, const struct weft_gen *g,
    enum weft_metrics_side side, const struct sockaddr *src,
    const char *src_str, const char *src_id, const struct sockaddr *orig_dst,
    const struct sockaddr *upstream)
{
	struct weft_gen *cur = NULL;
	struct weft_metrics_flow *f;

	if (cx == NULL || cx->cx_metrics == NULL)
		return NULL;
	if (g == NULL)
		g = cur = weft_gen_current();
	f = observe_flow(cx, g, side, src, src_str, src_id, orig_dst, upstream);
	weft_gen_unref(cur);
	return f;
}

void
weft_observe_conn(struct weft_conn_ctx *cx, const struct weft_gen *g,
    int dir, const struct sockaddr *src, const struct sockaddr *orig_dst,
    const struct sockaddr *upstream, struct weft_metrics_flow *out[2])
{
	struct weft_gen *cur = NULL;
	const struct weft_snap_pod *dp;

	out[0] = out[1] = NULL;
	if (cx == NULL || cx->cx_metrics == NULL)
		return;
	if (g == NULL)
		g = cur = weft_gen_current();
	if (dir == WEFT_DIR_OUTBOUND)
		out[0] = observe_flow(cx, g, WEFT_METRICS_OUTBOUND, src, NULL,
		    NULL, orig_dst, upstream);
	dp = observe_pod(g, upstream);
	if (dir == WEFT_DIR_INBOUND || (dp != NULL && dp->meshed &&
	    weft_gen_pod_is_local(g, dp)))
		out[1] = observe_flow(cx, g, WEFT_METRICS_INBOUND, src, NULL,
		    NULL, orig_dst, upstream);
	weft_gen_unref(cur);
}

void
weft_observe_conn_close(struct weft_conn_ctx *cx,
    struct weft_metrics_flow *f[2], uint64_t sent, uint64_t received)
{
	weft_metrics_flow_close(cx->cx_metrics, f[0], sent, received);
	weft_metrics_flow_close(cx->cx_metrics, f[1], sent, received);
	f[0] = f[1] = NULL;
}
