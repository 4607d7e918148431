/* The mesh CA, in the controller (DESIGN §4).
 *
 * One or more ECDSA P-256 roots; one of them signs, the others are being
 * retired after a rotation and stay in the trust bundle until their
 * overlap ends.  Persisted in <state-dir>/ca/ (mode 0700):
 *
 *   state.json        {"signing":N,"roots":[{"id":N,"retire_at":T},...]}
 *   root-N.crt        the root certificate (PEM, 0644)
 *   root-N.key        its key (PEM, PKCS#8, 0600)
 *
 * and the bundle, every root in PEM, is written to
 * <state-dir>/ca-bundle.pem (0644) on every change, for installers that
 * bootstrap nodes with it.  Or the root comes from --ca-cert/--ca-key
 * (then it is never rotated by us).
 *
 * Leaves carry only the CSR's public key: the subject is empty, the SAN
 * URI (critical) is the authorised SPIFFE ID, keyUsage digitalSignature,
 * EKU serverAuth+clientAuth, CA:FALSE, SKI/AKI; the chain is empty (no
 * intermediates), the roots travel as the bundle.
 *
 * Functions returning int return 0, or -1 with *err set to a malloc'd
 * message (the caller frees); allocation failures included.  One event
 * loop uses a CA: nothing here locks. */
#ifndef WEFT_CA_H
#define WEFT_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "weft/spiffe.h"

struct weft_model;

#define WEFT_CA_CERT_TTL	(24 * 3600)	/* default leaf TTL, seconds */
#define WEFT_CA_ROOT_DAYS	3650		/* root validity */
#define WEFT_CA_BUNDLE_FILE	"ca-bundle.pem"	/* in the state directory */

struct weft_ca_config {
	const char	*state_dir;	/* borrowed; the controller's; required */
	const char	*trust_domain;	/* borrowed; "cluster.local" */
	const char	*cert_file;	/* borrowed; --ca-cert, or NULL */
	const char	*key_file;	/* borrowed; --ca-key, or NULL */
	int64_t		 cert_ttl;	/* leaf TTL, seconds (> 0) */
	int64_t		 overlap;	/* seconds an old root stays trusted */
	/* the clock, injectable for tests; NULL: time() */
	time_t		(*now)(void *arg);
	void		*now_arg;
};

struct weft_ca;

/* A root as shown by status: all strings static within the CA (valid
 * until the next rotate/expire/free). */
struct weft_ca_root_info {
	unsigned	 id;		/* 0: loaded from --ca-cert */
	char		 serial[80];	/* hex */
	char		 subject[256];
	time_t		 not_after;
	time_t		 retire_at;	/* 0: not retiring */
	bool		 signing;
};

/* An issued leaf, all owned by the struct (weft_ca_leaf_clear). */
struct weft_ca_leaf {
	char		*cert_pem;	/* the leaf */
	char		*chain_pem;	/* intermediates: "" today */
	char		 serial[80];	/* lowercase hex */
	time_t		 not_before;
	time_t		 not_after;
};

/* Load the CA from conf (borrowed; copied), generating the first root when
 * the state holds none, and write the bundle file.  Roots whose overlap has
 * ended are dropped.  Returns the CA or NULL with *err.  A state that
 * exists but does not load is an error, never silently replaced: nodes
 * trust the old root. */
struct weft_ca *weft_ca_open(const struct weft_ca_config *conf, char **err);
void	weft_ca_free(struct weft_ca *ca);

/* The trust bundle, every root in PEM (borrowed: valid until the next
 * rotate/expire/free). */
const char *weft_ca_bundle(const struct weft_ca *ca);
/* Roots (for status): fills up to n entries of out, returns the count. */
size_t	weft_ca_roots(const struct weft_ca *ca, struct weft_ca_root_info *out,
	    size_t n);
/* Id of the signing root (0 when loaded from files). */
unsigned weft_ca_signing_id(const struct weft_ca *ca);

/* Generate a new root that signs from now on; the previous signing root
 * stays in the bundle until now + overlap (persisted).  The bundle file is
 * rewritten.  Refused for a CA loaded from --ca-cert/--ca-key. */
int	weft_ca_rotate(struct weft_ca *ca, char **err);
/* Drop roots whose overlap has ended.  Returns 1 when the bundle changed,
 * else 0.  A failure to persist is logged, not returned: the roots in
 * memory stay correct. */
int	weft_ca_expire(struct weft_ca *ca);
/* When the next root leaves the bundle, or 0 if none is retiring. */
time_t	weft_ca_next_retirement(const struct weft_ca *ca);

/* Sign a CSR (PEM, len bytes, need not be NUL-terminated) for spiffe_id,
 * which the caller has authorised (weft_ca_authorize).  Checks: one PEM
 * certificate request, its signature, an EC P-256 key.  Every error names
 * the problem ("csr: signature invalid", "csr: key is RSA, expected EC
 * P-256").  On success fills *out (clear with weft_ca_leaf_clear). */
int	weft_ca_sign_csr(struct weft_ca *ca, const char *csr_pem, size_t len,
	    const char *spiffe_id, struct weft_ca_leaf *out, char **err);
void	weft_ca_leaf_clear(struct weft_ca_leaf *leaf);

/* A server certificate for the controller API: a new P-256 key and a leaf
 * with the given SANs (each an IP address or a DNS name; anything else is
 * an error) valid for ttl seconds.  Signed by the oldest root with more
 * than half the overlap left (clients installed before a rotation trust
 * only the old root), and never valid beyond that root's retirement:
 * renew at half-life.  *key and *cert are new references
 * (caller frees), NULL on failure. */
int	weft_ca_issue_server(struct weft_ca *ca, const char *const *sans,
	    size_t n_sans, int64_t ttl, EVP_PKEY **key, X509 **cert,
	    char **err);

/* Node authorisation of a CSR, a pure function over the model (borrowed;
 * NULL: nothing is scheduled anywhere).  spiffe_id must be a valid ID of
 * trust_domain, and a pod with its namespace and service account must have
 * spec.nodeName == node (an IP is not needed: scheduled is enough).
 * Returns 0 (id filled when not NULL), 400 (malformed ID, other trust
 * domain) or 403 (no such pod on the node), with the reason in why. */
int	weft_ca_authorize(const struct weft_model *m, const char *trust_domain,
	    const char *node, const char *spiffe_id, struct weft_spiffe_id *id,
	    char *why, size_t why_len);

/* "60s", "15m", "24h", "7d" or plain seconds into seconds (> 0).
 * Returns 0 or -1. */
int	weft_ca_parse_duration(const char *s, int64_t *secs);

/* Helpers shared with the controller and ctl: the serial of c as
 * lowercase hex; t as RFC 3339 UTC ("2024-05-01T12:00:00Z"). */
void	weft_ca_serial_hex(const X509 *c, char *buf, size_t len);
void	weft_ca_rfc3339(time_t t, char *buf, size_t len);
/* ASN1 time of a certificate field as time_t (0 if unreadable). */
time_t	weft_ca_asn1_time(const ASN1_TIME *t);

#endif
