/* SPIFFE identities: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>
 * (DESIGN §4).  Pure functions, no allocation unless stated. */
#ifndef WEFT_SPIFFE_H
#define WEFT_SPIFFE_H

#include <stdbool.h>
#include <stddef.h>

#define WEFT_SPIFFE_MAX	512	/* longest ID we accept, NUL included */

struct weft_spiffe_id {
	char	trust_domain[256];
	char	namespace[64];
	char	service_account[254];
};

/* Parse and validate a workload ID of our form.  Returns 0, or -1 with a
 * static reason in *why ("not a spiffe:// URI", "namespace: not a DNS
 * label", ...).  Trust domain: lowercase DNS name; namespace: RFC 1123
 * label; service account: RFC 1123 subdomain; no query, fragment, port,
 * userinfo, percent-encoding, empty or dot segments. */
int	weft_spiffe_parse(const char *uri, struct weft_spiffe_id *out,
	    const char **why);
/* Format into buf (>= WEFT_SPIFFE_MAX).  Returns buf, or NULL if it does
 * not fit. */
char	*weft_spiffe_format(const char *trust_domain, const char *ns,
	    const char *sa, char *buf, size_t len);

#endif
