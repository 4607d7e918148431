/* A connection as the destination's policy sees it (SPEC §3.4): who calls
 * (an identity, or nobody), which pod identity it reaches, on which port.
 * Decided once when the connection opens and again for every HTTP request
 * and whenever the generation changes, always against the current
 * generation's compiled policy. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "weft/gen.h"
#include "weft/policy.h"
#include "proxy/proxy-int.h"

struct weft_flow *
weft_flow_new(const char *src_ns, const char *src_sa, const char *dst_ns,
    const char *dst_sa, uint16_t port)
{
	struct weft_flow *fl;
	size_t a, b, c, d;
	char *p;

	if (src_ns == NULL || src_sa == NULL)
		src_ns = src_sa = "";
	a = strlen(src_ns) + 1;
	b = strlen(src_sa) + 1;
	c = strlen(dst_ns) + 1;
	d = strlen(dst_sa) + 1;
	if ((fl = malloc(sizeof(*fl) + a + b + c + d)) == NULL)
		return NULL;
	p = fl->fl_buf;
	fl->fl_src_ns = memcpy(p, src_ns, a);
	fl->fl_src_sa = memcpy(p += a, src_sa, b);
	fl->fl_dst_ns = memcpy(p += b, dst_ns, c);
	fl->fl_dst_sa = memcpy(p += c, dst_sa, d);
	fl->fl_port = port;
	return fl;
}

void
weft_flow_free(struct weft_flow *fl)
{
	free(fl);
}

static void
flow_policy(const struct weft_flow *fl, struct weft_policy_flow *pf)
{
	memset(pf, 0, sizeof(*pf));
	if (fl->fl_src_sa[0] != '\0') {
		pf->src_ns = fl->fl_src_ns;
		pf->src_sa = fl->fl_src_sa;
	}
	pf->dst_ns = fl->fl_dst_ns;
	pf->dst_sa = fl->fl_dst_sa;
	pf->proto = IPPROTO_TCP;
	pf->dst_port = fl->fl_port;
}

enum weft_policy_verdict
weft_flow_check(const struct weft_flow *fl, const struct weft_gen *g,
    struct weft_policy_why *why)
{
	const struct weft_policy *pol;
	struct weft_policy_flow pf;

	/* No generation or no compiled policy: nothing allows it. */
	if (g == NULL || (pol = weft_gen_policy(g)) == NULL) {
		if (why != NULL) {
			memset(why, 0, sizeof(*why));
			snprintf(why->reason, sizeof(why->reason),
			    "no policy yet");
		}
		return WEFT_POLICY_DENY;
	}
	flow_policy(fl, &pf);
	return weft_policy_check_conn(pol, &pf, why);
}

/* A denial's reason as a short, fixed token for metrics labels (the text
 * goes to the logs). */
const char *
weft_flow_deny_token(const struct weft_policy_why *w)
{
	static const struct {
		const char	*needle;
		const char	*token;
	} map[] = {
		{ "no policy yet", "no-policy" },
		{ "unauthenticated", "unauthenticated" },
		{ "no TrafficTarget selects", "no-traffic-target" },
		{ "is not a source", "source-not-allowed" },
		{ "no HTTPRouteGroup match", "route-not-allowed" },
		{ "not in TCPRoute", "port-not-allowed" },
		{ "destination.port", "port-not-allowed" },
		{ "not HTTP", "not-http" },
		{ "does not exist", "unresolved-rule" },
		{ "selects no match", "unresolved-rule" },
		{ "has no rules", "no-rules" },
		{ "has no sources", "no-sources" },
		{ "namespace", "namespace" },
	};
	size_t i;

	if (w == NULL)
		return "denied";
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strstr(w->reason, map[i].needle) != NULL)
			return map[i].token;
	return "denied";
}

bool
weft_flow_check_http(const struct weft_flow *fl,
    const struct weft_policy_http *req, char *why, size_t whylen,
    const char **token)
{
	const struct weft_policy *pol;
	struct weft_policy_flow pf;
	struct weft_policy_why w;
	enum weft_policy_verdict v;
	struct weft_gen *g;

	/* The current generation, every time: a change applies to the next
	 * request on a connection that is already open (DESIGN §5). */
	g = weft_gen_current();
	if (g == NULL || (pol = weft_gen_policy(g)) == NULL) {
		weft_gen_unref(g);
		snprintf(why, whylen, "no policy yet");
		*token = "no-policy";
		return false;
	}
	flow_policy(fl, &pf);
	v = weft_policy_check_conn(pol, &pf, &w);
	if (v == WEFT_POLICY_HTTP)
		v = weft_policy_check_http(pol, &pf, req, &w);
	weft_gen_unref(g);
	if (v != WEFT_POLICY_ALLOW) {
		snprintf(why, whylen, "%s", w.reason);
		*token = weft_flow_deny_token(&w);
		return false;
	}
	return true;
}

const char *
weft_flow_src(const struct weft_flow *fl, char *buf, size_t len)
{
	if (fl->fl_src_sa[0] == '\0')
		snprintf(buf, len, "unauthenticated");
	else
		snprintf(buf, len, "%s/%s", fl->fl_src_ns, fl->fl_src_sa);
	return buf;
}
