/* SPIFFE IDs of workloads: spiffe://<trust-domain>/ns/<ns>/sa/<sa>.
 *
 * Stricter than the SPIFFE spec allows in general (it permits '_' in trust
 * domains and arbitrary path segments): we only ever issue and accept the
 * Kubernetes form, so anything else is a mistake or an attack.  Checks run
 * from the outside in, so the reason names the first thing that is wrong
 * at the coarsest level ("query not allowed" rather than "namespace: ..."). */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "weft/spiffe.h"

#define SPIFFE_SCHEME	"spiffe://"

static bool
spiffe_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 label of [s, s + len): lowercase alphanumerics and '-', not
 * starting or ending with '-', 1-63 characters. */
static bool
spiffe_is_label(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 63 || !spiffe_alnum(s[0]) ||
	    !spiffe_alnum(s[len - 1]))
		return false;
	for (i = 0; i < len; i++)
		if (!spiffe_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* RFC 1123 subdomain: dot-separated labels, at most max characters. */
static bool
spiffe_is_subdomain(const char *s, size_t len, size_t max)
{
	const char *dot, *end = s + len;

	if (len == 0 || len > max)
		return false;
	for (;;) {
		dot = memchr(s, '.', (size_t)(end - s));
		if (!spiffe_is_label(s, (size_t)((dot ? dot : end) - s)))
			return false;
		if (dot == NULL)
			return true;
		s = dot + 1;
	}
}

int
weft_spiffe_parse(const char *uri, struct weft_spiffe_id *out,
    const char **why)
{
	const char *td, *p, *seg[5], *slash;
	size_t len, td_len, seg_len[5], n, i;
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	*why = NULL;
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (uri == NULL || uri[0] == '\0') {
		*why = "empty";
		return -1;
	}
	if ((len = strnlen(uri, WEFT_SPIFFE_MAX)) >= WEFT_SPIFFE_MAX) {
		*why = "too long";
		return -1;
	}
	if (strncmp(uri, SPIFFE_SCHEME, sizeof(SPIFFE_SCHEME) - 1) != 0) {
		*why = strncasecmp(uri, SPIFFE_SCHEME,
		    sizeof(SPIFFE_SCHEME) - 1) == 0 ?
		    "scheme must be lowercase \"spiffe\"" :
		    "not a spiffe:// URI";
		return -1;
	}
	if (strchr(uri, '?') != NULL) {
		*why = "query not allowed";
		return -1;
	}
	if (strchr(uri, '#') != NULL) {
		*why = "fragment not allowed";
		return -1;
	}
	if (strchr(uri, '%') != NULL) {
		*why = "percent-encoding not allowed";
		return -1;
	}
	td = uri + sizeof(SPIFFE_SCHEME) - 1;
	td_len = strcspn(td, "/");
	if (memchr(td, '@', td_len) != NULL) {
		*why = "userinfo not allowed";
		return -1;
	}
	if (memchr(td, ':', td_len) != NULL) {
		*why = "port not allowed";
		return -1;
	}
	if (td_len == 0) {
		*why = "empty trust domain";
		return -1;
	}
	for (i = 0; i < td_len; i++)
		if (td[i] >= 'A' && td[i] <= 'Z') {
			*why = "trust domain: must be lowercase";
			return -1;
		}
	if (!spiffe_is_subdomain(td, td_len, 253)) {
		*why = "trust domain: not a DNS name";
		return -1;
	}
	p = td + td_len;
	if (*p == '\0') {
		*why = "no path (expected /ns/<namespace>/sa/<service-account>)";
		return -1;
	}
	for (n = 0; *p == '/'; n++) {
		p++;
		slash = strchr(p, '/');
		if (n < 5) {
			seg[n] = p;
			seg_len[n] = slash ? (size_t)(slash - p) : strlen(p);
		}
		if ((slash ? (size_t)(slash - p) : strlen(p)) == 0) {
			*why = "empty path segment";
			return -1;
		}
		if ((p[0] == '.' && (p[1] == '/' || p[1] == '\0')) ||
		    (p[0] == '.' && p[1] == '.' && (p[2] == '/' ||
		    p[2] == '\0'))) {
			*why = "dot segment not allowed";
			return -1;
		}
		p = slash ? slash : p + strlen(p);
	}
	if (n < 4) {
		*why = "missing path segments (expected "
		    "/ns/<namespace>/sa/<service-account>)";
		return -1;
	}
	if (n > 4) {
		*why = "extra path segments (expected "
		    "/ns/<namespace>/sa/<service-account>)";
		return -1;
	}
	if (seg_len[0] != 2 || strncmp(seg[0], "ns", 2) != 0 ||
	    seg_len[2] != 2 || strncmp(seg[2], "sa", 2) != 0) {
		*why = "expected /ns/<namespace>/sa/<service-account>";
		return -1;
	}
	if (!spiffe_is_label(seg[1], seg_len[1])) {
		*why = "namespace: not a DNS label";
		return -1;
	}
	if (!spiffe_is_subdomain(seg[3], seg_len[3], 253)) {
		*why = "service account: not a DNS subdomain";
		return -1;
	}
	if (out != NULL) {
		memcpy(out->trust_domain, td, td_len);
		memcpy(out->namespace, seg[1], seg_len[1]);
		memcpy(out->service_account, seg[3], seg_len[3]);
	}
	return 0;
}

char *
weft_spiffe_format(const char *trust_domain, const char *ns, const char *sa,
    char *buf, size_t len)
{
	int r;

	r = snprintf(buf, len, SPIFFE_SCHEME "%s/ns/%s/sa/%s", trust_domain,
	    ns, sa);
	if (r < 0 || (size_t)r >= len)
		return NULL;
	return buf;
}
