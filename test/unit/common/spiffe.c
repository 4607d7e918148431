/* SPIFFE ID parsing: what we accept, and a reason for everything else. */
#include "config.h"

#include <string.h>

#include "weft/spiffe.h"

#include "../../tap.h"

static const struct {
	const char	*uri;
	const char	*td, *ns, *sa;
} valid[] = {
	{ "spiffe://cluster.local/ns/default/sa/default",
	    "cluster.local", "default", "default" },
	{ "spiffe://cluster.local/ns/shop/sa/api", "cluster.local", "shop",
	    "api" },
	{ "spiffe://example.org/ns/a-b/sa/x.y-z", "example.org", "a-b",
	    "x.y-z" },
	{ "spiffe://td/ns/0/sa/9", "td", "0", "9" },
	{ "spiffe://a-1.b2.c/ns/n/sa/s", "a-1.b2.c", "n", "s" },
};

static const struct {
	const char	*uri;
	const char	*why;
} invalid[] = {
	{ "", "empty" },
	{ "http://cluster.local/ns/a/sa/b", "not a spiffe:// URI" },
	{ "spiffe:/cluster.local/ns/a/sa/b", "not a spiffe:// URI" },
	{ "cluster.local/ns/a/sa/b", "not a spiffe:// URI" },
	{ "SPIFFE://cluster.local/ns/a/sa/b",
	    "scheme must be lowercase \"spiffe\"" },
	{ "spiffe://Cluster.local/ns/a/sa/b", "trust domain: must be lowercase" },
	{ "spiffe://clu_ster.local/ns/a/sa/b", "trust domain: not a DNS name" },
	{ "spiffe://-cluster.local/ns/a/sa/b", "trust domain: not a DNS name" },
	{ "spiffe://cluster..local/ns/a/sa/b", "trust domain: not a DNS name" },
	{ "spiffe://cluster.local./ns/a/sa/b", "trust domain: not a DNS name" },
	{ "spiffe:///ns/a/sa/b", "empty trust domain" },
	{ "spiffe://cluster.local:443/ns/a/sa/b", "port not allowed" },
	{ "spiffe://user@cluster.local/ns/a/sa/b", "userinfo not allowed" },
	{ "spiffe://user:pw@cluster.local/ns/a/sa/b", "userinfo not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/b?x=1", "query not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/b#frag", "fragment not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/%62", "percent-encoding not allowed" },
	{ "spiffe://cluster.local", "no path (expected "
	    "/ns/<namespace>/sa/<service-account>)" },
	{ "spiffe://cluster.local/", "empty path segment" },
	{ "spiffe://cluster.local/ns/a/sa/b/", "empty path segment" },
	{ "spiffe://cluster.local/ns//sa/b", "empty path segment" },
	{ "spiffe://cluster.local/ns/a/sa", "missing path segments (expected "
	    "/ns/<namespace>/sa/<service-account>)" },
	{ "spiffe://cluster.local/ns/a", "missing path segments (expected "
	    "/ns/<namespace>/sa/<service-account>)" },
	{ "spiffe://cluster.local/ns/a/sa/b/c", "extra path segments (expected "
	    "/ns/<namespace>/sa/<service-account>)" },
	{ "spiffe://cluster.local/ns/../sa/b", "dot segment not allowed" },
	{ "spiffe://cluster.local/ns/a/sa/..", "dot segment not allowed" },
	{ "spiffe://cluster.local/ns/./sa/b", "dot segment not allowed" },
	{ "spiffe://cluster.local/namespace/a/sa/b",
	    "expected /ns/<namespace>/sa/<service-account>" },
	{ "spiffe://cluster.local/ns/a/serviceaccount/b",
	    "expected /ns/<namespace>/sa/<service-account>" },
	{ "spiffe://cluster.local/NS/a/sa/b",
	    "expected /ns/<namespace>/sa/<service-account>" },
	{ "spiffe://cluster.local/ns/Shop/sa/b", "namespace: not a DNS label" },
	{ "spiffe://cluster.local/ns/a.b/sa/b", "namespace: not a DNS label" },
	{ "spiffe://cluster.local/ns/-a/sa/b", "namespace: not a DNS label" },
	{ "spiffe://cluster.local/ns/a/sa/B", "service account: not a DNS "
	    "subdomain" },
	{ "spiffe://cluster.local/ns/a/sa/b_c", "service account: not a DNS "
	    "subdomain" },
	{ "spiffe://cluster.local/ns/a/sa/b.", "service account: not a DNS "
	    "subdomain" },
	{ "spiffe://cluster.local/ns/a/sa/a b", "service account: not a DNS "
	    "subdomain" },
};

int
main(void)
{
	struct weft_spiffe_id id;
	char buf[WEFT_SPIFFE_MAX], longid[WEFT_SPIFFE_MAX + 64];
	const char *why;
	size_t i;
	int r;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		why = "unset";
		r = weft_spiffe_parse(valid[i].uri, &id, &why);
		is_int(r, 0, "valid: %s", valid[i].uri);
		is_str(why, NULL, "  no reason");
		is_str(id.trust_domain, valid[i].td, "  trust domain");
		is_str(id.namespace, valid[i].ns, "  namespace");
		is_str(id.service_account, valid[i].sa, "  service account");
		is_str(weft_spiffe_format(id.trust_domain, id.namespace,
		    id.service_account, buf, sizeof(buf)), valid[i].uri,
		    "  format round-trips");
	}
	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		why = NULL;
		r = weft_spiffe_parse(invalid[i].uri, &id, &why);
		is_int(r, -1, "invalid: \"%s\"", invalid[i].uri);
		is_str(why, invalid[i].why, "  reason");
		is_str(id.trust_domain, "", "  output cleared");
	}
	is_int(weft_spiffe_parse(NULL, &id, &why), -1, "NULL rejected");

	/* too long: a 64-character namespace is also wrong, but length is
	 * checked first and bounds the work */
	memset(longid, 'a', sizeof(longid) - 1);
	longid[sizeof(longid) - 1] = '\0';
	memcpy(longid, "spiffe://cluster.local/ns/a/sa/", 31);
	is_int(weft_spiffe_parse(longid, &id, &why), -1, "too long rejected");
	is_str(why, "too long", "  reason");
	/* the longest accepted: 511 characters */
	longid[WEFT_SPIFFE_MAX - 1] = '\0';
	for (i = 31 + 63; i < WEFT_SPIFFE_MAX - 1; i += 64)
		longid[i] = '.';
	if (longid[WEFT_SPIFFE_MAX - 2] == '.')
		longid[WEFT_SPIFFE_MAX - 2] = 'a';
	r = weft_spiffe_parse(longid, &id, &why);
	diag("511 characters: %s", why ? why : "ok");
	/* 480 characters of service account exceed 253 */
	is_str(why, "service account: not a DNS subdomain",
	    "service account over 253 characters rejected");
	/* a namespace of 64 characters */
	snprintf(longid, sizeof(longid), "spiffe://td/ns/%.64s/sa/s",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	is_int(weft_spiffe_parse(longid, &id, &why), -1, "64-char namespace");
	is_str(why, "namespace: not a DNS label", "  reason");
	/* a 253-character service account is fine */
	memset(buf, 0, sizeof(buf));
	strcpy(buf, "spiffe://td/ns/n/sa/");
	for (i = 0; i < 253; i++)
		buf[20 + i] = (i % 64 == 63) ? '.' : 'a';
	is_int(weft_spiffe_parse(buf, &id, &why), 0,
	    "253-character service account");
	is_int(strlen(id.service_account), 253, "  kept whole");

	ok(weft_spiffe_format("td", "n", "s", buf, 10) == NULL,
	    "format: too small a buffer");
	return tap_done();
}
