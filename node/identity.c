/* The identity manager (node/identity.h): one key and certificate per
 * SPIFFE ID of the node's local meshed pods.
 *
 * Each identity is a small state machine driven by one timer: request
 * (generate a key, send a CSR) -> verify the answer -> publish in the store
 * -> sleep until half-life -> request again.  A failure keeps the current
 * certificate in the store (it is replaced only by a verified successor) and
 * retries with backoff, ahead of expiry while possible.  The key of a
 * request lives in the request's identity until it is published or the
 * request fails, then it is freed (EVP_PKEY_free clears it).
 *
 * Issued certificates and their keys are also kept in the node's state
 * directory (identities/, mode 0700, files 0600), so that a daemon restarted
 * while the controller is away serves its pods with the identities they had
 * instead of refusing their cross-node traffic.  A restored certificate is
 * verified like a fresh one (our ID, chains to the trust bundle, unexpired);
 * the key stays on this node either way. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <time.h>

#include <event2/event.h>
#include <json-c/json.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "weft/certstore.h"
#include "weft/gen.h"
#include "weft/log.h"
#include "weft/snapshot.h"
#include "weft/spiffe.h"
#include "node/client.h"
#include "node/identity.h"

#define IDENTITY_TRUST_DOMAIN	"cluster.local"
#define IDENTITY_REQ_TIMEOUT	30	/* seconds for one CSR round trip */
#define IDENTITY_JITTER		0.05	/* +-5% of the lifetime at renewal */
#define IDENTITY_MARGIN_MAX	300	/* renew at least 5 min before expiry */

struct ident {
	LIST_ENTRY(ident) entry;
	struct weft_identity *im;		/* borrowed: the manager */
	char		 id[WEFT_SPIFFE_MAX];
	bool		 wanted;		/* seen in the last generation */
	/* the certificate in the store, if any */
	bool		 have_cert;
	time_t		 not_before, not_after;
	time_t		 start;			/* max(not_before, arrival) */
	char		 serial[80];
	/* the attempt in flight or being scheduled */
	EVP_PKEY	*key;			/* owned: the CSR's key */
	struct weft_client_req *req;		/* owned: in flight */
	struct event	*timer;			/* owned */
	unsigned	 attempt;		/* failures in a row */
};

struct weft_identity {
	struct event_base *base;		/* borrowed */
	struct weft_client *client;		/* borrowed */
	LIST_HEAD(, ident) idents;		/* owned */
	char		*bundle;		/* owned: the PEM in the store */
	char		*dir;			/* owned: <state>/identities, or NULL */
};

time_t
weft_identity_next_renewal(time_t not_before, time_t not_after, time_t now,
    unsigned attempt, double rnd)
{
	double life = (double)(not_after - not_before), off, margin;
	time_t t, limit, base, backoff;

	if (!(rnd >= 0 && rnd < 1))
		rnd = 0.5;
	if (attempt == 0) {
		if (not_after <= not_before)
			return now;		/* no certificate yet */
		off = life / 2 + (2 * rnd - 1) * IDENTITY_JITTER * life;
		t = not_before + (time_t)(off + 0.5);
		return t > now ? t : now;
	}
	base = attempt > 7 ? WEFT_IDENTITY_BACKOFF_MAX :
	    (time_t)1 << (attempt - 1);
	if (base > WEFT_IDENTITY_BACKOFF_MAX)
		base = WEFT_IDENTITY_BACKOFF_MAX;
	/* Equal jitter: [base/2, base], rounded up, at least the minimum. */
	backoff = base - (time_t)((double)base / 2 * rnd);
	if (backoff < WEFT_IDENTITY_BACKOFF_MIN)
		backoff = WEFT_IDENTITY_BACKOFF_MIN;
	t = now + backoff;
	if (not_after > not_before) {
		margin = life / 10;
		if (margin > IDENTITY_MARGIN_MAX)
			margin = IDENTITY_MARGIN_MAX;
		limit = not_after - (time_t)margin;
		if (limit > now && t > limit)
			t = limit;
	}
	return t;
}

static double
identity_rand(void)
{
	return (double)random() / ((double)RAND_MAX + 1.0);
}

static void
identity_fmt_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void
ident_schedule(struct ident *e, time_t when)
{
	struct timeval tv = { 0, 0 };
	time_t now = time(NULL);

	if (when > now)
		tv.tv_sec = when - now;
	evtimer_add(e->timer, &tv);
}

static void
ident_failed(struct ident *e, const char *why)
{
	char exp[32] = "";
	time_t now = time(NULL), when;

	EVP_PKEY_free(e->key);
	e->key = NULL;
	e->attempt++;
	when = weft_identity_next_renewal(e->have_cert ? e->start : 0,
	    e->have_cert ? e->not_after : 0, now, e->attempt, identity_rand());
	if (e->have_cert) {
		identity_fmt_time(e->not_after, exp, sizeof(exp));
		log_warnx("identity %s: certificate request failed: %s; retry "
		    "%u in %llds; serving with serial %s until %s", e->id, why,
		    e->attempt, (long long)(when - now), e->serial, exp);
	} else
		log_warnx("identity %s: certificate request failed: %s; retry "
		    "%u in %llds; no certificate yet", e->id, why, e->attempt,
		    (long long)(when - now));
	ident_schedule(e, when);
}

/* The CSR for e->key: empty subject, the SPIFFE ID as a critical URI SAN
 * (SPIFFE X.509-SVID).  Returns malloc'd PEM or NULL. */
static char *
ident_csr(struct ident *e)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char san[WEFT_SPIFFE_MAX + 32], *pem = NULL, *data;
	long n;

	snprintf(san, sizeof(san), "critical,URI:%s", e->id);
	if ((req = X509_REQ_new()) == NULL ||
	    X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    X509_REQ_set_pubkey(req, e->key) != 1 ||
	    (ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name,
	    san)) == NULL ||
	    (exts = sk_X509_EXTENSION_new_null()) == NULL ||
	    sk_X509_EXTENSION_push(exts, ext) == 0)
		goto out;
	ext = NULL;			/* owned by exts */
	if (X509_REQ_add_extensions(req, exts) != 1 ||
	    X509_REQ_sign(req, e->key, EVP_sha256()) <= 0 ||
	    (bio = BIO_new(BIO_s_mem())) == NULL ||
	    PEM_write_bio_X509_REQ(bio, req) != 1 ||
	    (n = BIO_get_mem_data(bio, &data)) <= 0)
		goto out;
	pem = strndup(data, (size_t)n);
out:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	BIO_free(bio);
	return pem;
}

/* Exactly one URI SAN, equal to want. */
static int
ident_check_san(X509 *leaf, const char *want, const char **why)
{
	GENERAL_NAMES *names;
	const GENERAL_NAME *gn;
	const unsigned char *s;
	int i, uris = 0, match = 0, len;

	if ((names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL,
	    NULL)) == NULL) {
		*why = "the certificate has no subjectAltName";
		return -1;
	}
	for (i = 0; i < sk_GENERAL_NAME_num(names); i++) {
		gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type != GEN_URI)
			continue;
		uris++;
		s = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		if ((size_t)len == strlen(want) && memcmp(s, want, len) == 0)
			match = 1;
	}
	GENERAL_NAMES_free(names);
	if (uris != 1 || !match) {
		*why = uris == 1 ? "the certificate's URI SAN is another ID" :
		    "the certificate does not carry exactly one URI SAN";
		return -1;
	}
	return 0;
}

static time_t
ident_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return timegm(&tm);
}

/* Read every PEM certificate of pem into out (leaf first). */
static int
ident_read_certs(const char *pem, STACK_OF(X509) *out)
{
	BIO *bio;
	X509 *x;

	if (pem == NULL || *pem == '\0')
		return 0;
	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL)
		return -1;
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (sk_X509_push(out, x) == 0) {
			X509_free(x);
			BIO_free(bio);
			return -1;
		}
	}
	BIO_free(bio);
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		ERR_clear_error();
		return -1;
	}
	ERR_clear_error();
	return 0;
}

static const char *
json_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

/* The checks every certificate passes before it is published, fresh or
 * restored: it is for key, names exactly our ID, chains to the trust bundle
 * and has a non-empty validity; fills c's times and serial.  Returns 0, or
 * -1 with why. */
static int
ident_check(struct ident *e, struct weft_cert *c, EVP_PKEY *key, char *why,
    size_t whylen)
{
	X509_STORE_CTX *vctx = NULL;
	X509_STORE *bundle = NULL;
	const char *reason;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	size_t i;
	int rc = -1;

	if (EVP_PKEY_eq(X509_get0_pubkey(c->leaf), key) != 1) {
		snprintf(why, whylen, "the certificate is not for our key");
		goto out;
	}
	if (ident_check_san(c->leaf, e->id, &reason) == -1) {
		snprintf(why, whylen, "%s", reason);
		goto out;
	}
	if ((bundle = weft_certstore_bundle()) == NULL) {
		snprintf(why, whylen, "no trust bundle yet to verify it with");
		goto out;
	}
	if ((vctx = X509_STORE_CTX_new()) == NULL ||
	    X509_STORE_CTX_init(vctx, bundle, c->leaf, c->chain) != 1) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	if (X509_verify_cert(vctx) != 1) {
		snprintf(why, whylen, "the certificate does not chain to the "
		    "trust bundle: %s", X509_verify_cert_error_string(
		    X509_STORE_CTX_get_error(vctx)));
		goto out;
	}
	c->not_before = ident_asn1_time(X509_get0_notBefore(c->leaf));
	c->not_after = ident_asn1_time(X509_get0_notAfter(c->leaf));
	if (c->not_after <= c->not_before) {
		snprintf(why, whylen, "the certificate's validity is empty");
		goto out;
	}
	if ((bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c->leaf),
	    NULL)) == NULL || (hex = BN_bn2hex(bn)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto out;
	}
	for (i = 0; hex[i] != '\0' && i + 1 < sizeof(c->serial); i++)
		c->serial[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ?
		    hex[i] - 'A' + 'a' : hex[i]);
	c->serial[i] = '\0';
	rc = 0;
out:
	ERR_clear_error();
	OPENSSL_free(hex);
	BN_free(bn);
	X509_STORE_CTX_free(vctx);
	X509_STORE_free(bundle);
	return rc;
}

/* The controller's answer to a CSR: {"certificate": PEM leaf, "chain": PEM
 * intermediates (may be empty or absent), ...}.  Verified before it is
 * published: our key, our ID, a chain to the trust bundle.  Returns a new
 * certificate (taking e->key) or NULL with *why. */
static struct weft_cert *
ident_verify(struct ident *e, const char *body, size_t len, char *why,
    size_t whylen)
{
	struct json_object *root = NULL;
	struct weft_cert *c = NULL;
	STACK_OF(X509) *certs = NULL;
	const char *leaf_pem;

	ERR_clear_error();
	if ((root = json_tokener_parse(body)) == NULL ||
	    !json_object_is_type(root, json_type_object)) {
		snprintf(why, whylen, "the answer is not a JSON object");
		goto fail;
	}
	if ((leaf_pem = json_str(root, "certificate")) == NULL) {
		snprintf(why, whylen, "the answer has no \"certificate\"");
		goto fail;
	}
	if ((certs = sk_X509_new_null()) == NULL ||
	    ident_read_certs(leaf_pem, certs) == -1 ||
	    ident_read_certs(json_str(root, "chain"), certs) == -1 ||
	    sk_X509_num(certs) == 0) {
		snprintf(why, whylen, "the answer's certificate is not PEM");
		goto fail;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->spiffe_id = strdup(e->id)) == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	c->leaf = sk_X509_shift(certs);
	c->chain = certs;		/* the rest: intermediates */
	certs = NULL;
	if (ident_check(e, c, e->key, why, whylen) == -1)
		goto fail;
	c->key = e->key;
	e->key = NULL;
	json_object_put(root);
	return c;
fail:
	ERR_clear_error();
	sk_X509_pop_free(certs, X509_free);
	weft_cert_free(c);
	if (root != NULL)
		json_object_put(root);
	return NULL;
}

/* A refusal's reason: {"error": "..."} or the body's first line. */
static void
ident_reason(const char *body, char *out, size_t len)
{
	struct json_object *root;
	const char *s = NULL;

	if ((root = json_tokener_parse(body)) != NULL &&
	    json_object_is_type(root, json_type_object) &&
	    (s = json_str(root, "error")) == NULL)
		s = json_str(root, "reason");
	snprintf(out, len, "%s", s != NULL ? s : body);
	out[strcspn(out, "\r\n")] = '\0';
	if (root != NULL)
		json_object_put(root);
}

/* --- persistence ------------------------------------------------------------ */

/* <dir>/<trust-domain>_ns_<ns>_sa_<sa>.pem: '/' cannot occur in a name
 * part, so the mapping is one to one. */
static int
ident_path(const struct ident *e, char *buf, size_t len)
{
	const char *p = e->id + strlen("spiffe://");
	size_t n;
	char *q;

	if (e->im->dir == NULL || strncmp(e->id, "spiffe://", 9) != 0)
		return -1;
	n = (size_t)snprintf(buf, len, "%s/", e->im->dir);
	if (n + strlen(p) + sizeof(".pem") > len)
		return -1;
	q = buf + n;
	for (; *p != '\0'; p++)
		*q++ = *p == '/' ? '_' : *p;
	memcpy(q, ".pem", sizeof(".pem"));
	return 0;
}

/* Key, leaf and chain, PEM, written to a temporary file and renamed. */
static void
ident_save(const struct ident *e, const struct weft_cert *c)
{
	char path[4096], tmp[4096 + 8];
	BIO *b = NULL;
	int fd, i, ok;

	if (ident_path(e, path, sizeof(path)) == -1)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
	    0600)) == -1 || (b = BIO_new_fd(fd, BIO_CLOSE)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("identity %s: cannot keep it in %s", e->id,
		    e->im->dir);
		return;
	}
	ok = PEM_write_bio_PrivateKey(b, c->key, NULL, NULL, 0, NULL,
	    NULL) == 1 && PEM_write_bio_X509(b, c->leaf) == 1;
	for (i = 0; ok && c->chain != NULL && i < sk_X509_num(c->chain); i++)
		ok = PEM_write_bio_X509(b, sk_X509_value(c->chain, i)) == 1;
	ok = ok && BIO_flush(b) == 1 && fsync(fd) == 0;
	BIO_free(b);
	if (!ok || rename(tmp, path) == -1) {
		ERR_clear_error();
		unlink(tmp);
		log_warnx("identity %s: cannot keep it in %s", e->id,
		    e->im->dir);
	}
}

static void
ident_forget(const struct ident *e)
{
	char path[4096];

	if (ident_path(e, path, sizeof(path)) == 0 && unlink(path) == -1 &&
	    errno != ENOENT)
		log_warn("identity %s: cannot remove %s", e->id, path);
}

/* A certificate kept by an earlier run, checked like a fresh one.  NULL if
 * there is none or it no longer passes (expired, another root, ...). */
static struct weft_cert *
ident_restore(struct ident *e)
{
	struct weft_cert *c = NULL;
	STACK_OF(X509) *certs = NULL;
	EVP_PKEY *key = NULL;
	char path[4096], why[256];
	X509 *x;
	BIO *b;

	if (ident_path(e, path, sizeof(path)) == -1 ||
	    (b = BIO_new_file(path, "r")) == NULL) {
		ERR_clear_error();
		return NULL;
	}
	key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	if ((certs = sk_X509_new_null()) != NULL)
		while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
			if (sk_X509_push(certs, x) == 0)
				X509_free(x);
	BIO_free(b);
	ERR_clear_error();
	if (key == NULL || certs == NULL || sk_X509_num(certs) == 0 ||
	    (c = calloc(1, sizeof(*c))) == NULL ||
	    (c->spiffe_id = strdup(e->id)) == NULL) {
		snprintf(why, sizeof(why), "unreadable");
		goto fail;
	}
	c->leaf = sk_X509_shift(certs);
	c->chain = certs;
	certs = NULL;
	if (ident_check(e, c, key, why, sizeof(why)) == -1)
		goto fail;
	if (c->not_after <= time(NULL)) {
		snprintf(why, sizeof(why), "expired");
		goto fail;
	}
	c->key = key;
	return c;
fail:
	log_info("identity %s: kept certificate not used: %s", e->id, why);
	sk_X509_pop_free(certs, X509_free);
	weft_cert_free(c);
	EVP_PKEY_free(key);
	return NULL;
}

static void
ident_response_cb(int code, const char *body, size_t len, const char *why,
    void *arg)
{
	struct ident *e = arg;
	struct weft_cert *c;
	char msg[512], reason[400], exp[32], renew[32];
	bool renewal = e->have_cert;
	time_t when;

	e->req = NULL;
	if (code == 0) {
		ident_failed(e, why != NULL ? why : "no answer");
		return;
	}
	if (code != 200) {
		ident_reason(body, reason, sizeof(reason));
		snprintf(msg, sizeof(msg), "controller answered %d%s%s", code,
		    reason[0] != '\0' ? ": " : "", reason);
		ident_failed(e, msg);
		return;
	}
	if ((c = ident_verify(e, body, len, reason, sizeof(reason))) == NULL) {
		snprintf(msg, sizeof(msg), "rejected the answer: %s", reason);
		ident_failed(e, msg);
		return;
	}
	e->have_cert = true;
	e->not_before = c->not_before;
	e->not_after = c->not_after;
	/* The CA backdates notBefore for clock skew (a minute, which is a
	 * whole 60 s lifetime): count the life from when we got it. */
	e->start = c->not_before > time(NULL) ? c->not_before : time(NULL);
	snprintf(e->serial, sizeof(e->serial), "%s", c->serial);
	e->attempt = 0;
	ident_save(e, c);
	weft_certstore_put(c);		/* replaces the old one, if any */
	when = weft_identity_next_renewal(e->start, e->not_after,
	    time(NULL), 0, identity_rand());
	identity_fmt_time(e->not_after, exp, sizeof(exp));
	identity_fmt_time(when, renew, sizeof(renew));
	log_info("identity %s: certificate %s, serial %s, expires %s, "
	    "renewal at %s", e->id, renewal ? "renewed" : "issued", e->serial,
	    exp, renew);
	ident_schedule(e, when);
}

static void
ident_request(struct ident *e)
{
	struct json_object *o = NULL;
	const char *body;
	char *csr = NULL;

	if (e->req != NULL)
		return;
	EVP_PKEY_free(e->key);
	/* A new key for every certificate, renewals included. */
	if ((e->key = EVP_EC_gen("P-256")) == NULL ||
	    (csr = ident_csr(e)) == NULL) {
		ERR_clear_error();
		ident_failed(e, "cannot make a key and CSR");
		return;
	}
	if ((o = json_object_new_object()) == NULL ||
	    json_object_object_add(o, "csr", json_object_new_string(csr)) != 0 ||
	    json_object_object_add(o, "spiffeId",
	    json_object_new_string(e->id)) != 0 ||
	    (body = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE)) == NULL) {
		ident_failed(e, "out of memory");
		goto out;
	}
	log_debug("identity %s: requesting a certificate", e->id);
	if ((e->req = weft_client_post(e->im->client, "/v1/certificates",
	    "application/json", body, strlen(body), IDENTITY_REQ_TIMEOUT,
	    ident_response_cb, e)) == NULL)
		ident_failed(e, "cannot send the request");
out:
	if (o != NULL)
		json_object_put(o);
	free(csr);
}

static void
ident_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	ident_request(arg);
}

static void
ident_free(struct ident *e, bool remove)
{
	LIST_REMOVE(e, entry);
	weft_client_req_cancel(e->req);
	if (e->timer != NULL)
		event_free(e->timer);
	EVP_PKEY_free(e->key);
	if (remove)
		weft_certstore_remove(e->id);
	free(e);
}

static struct ident *
ident_find(struct weft_identity *im, const char *id)
{
	struct ident *e;

	LIST_FOREACH(e, &im->idents, entry)
		if (strcmp(e->id, id) == 0)
			return e;
	return NULL;
}

static void
identity_bundle(struct weft_identity *im, const char *pem)
{
	struct ident *e;
	char *err = NULL, *copy;

	if (pem == NULL || (im->bundle != NULL && strcmp(im->bundle, pem) == 0))
		return;
	if ((copy = strdup(pem)) == NULL ||
	    weft_certstore_set_bundle(pem, &err) == -1) {
		log_warnx("snapshot's trust bundle not taken: %s; keeping the "
		    "previous one", err != NULL ? err : "out of memory");
		free(err);
		free(copy);
		return;
	}
	log_info("trust bundle %s", im->bundle == NULL ? "installed" :
	    "updated; certificates are kept while their roots stay in it");
	free(im->bundle);
	im->bundle = copy;
	/* Issuance that failed for want of a bundle can go on now. */
	LIST_FOREACH(e, &im->idents, entry)
		if (!e->have_cert && e->req == NULL && e->attempt > 0)
			ident_schedule(e, 0);
}

/* Serve with a kept certificate while it is good; renew on schedule. */
static bool
ident_adopt(struct ident *e)
{
	struct weft_cert *c;
	char exp[32], renew[32];
	time_t when;

	if ((c = ident_restore(e)) == NULL)
		return false;
	e->have_cert = true;
	e->not_before = c->not_before;
	e->not_after = c->not_after;
	e->start = c->not_before;
	snprintf(e->serial, sizeof(e->serial), "%s", c->serial);
	weft_certstore_put(c);
	when = weft_identity_next_renewal(e->start, e->not_after, time(NULL),
	    0, identity_rand());
	identity_fmt_time(e->not_after, exp, sizeof(exp));
	identity_fmt_time(when, renew, sizeof(renew));
	log_info("identity %s: certificate serial %s restored from %s, "
	    "expires %s, renewal at %s", e->id, e->serial, e->im->dir, exp,
	    renew);
	ident_schedule(e, when);
	return true;
}

void
weft_identity_apply(struct weft_identity *im, const struct weft_gen *g)
{
	const struct weft_snapshot *s = weft_gen_snapshot(g);
	const char *td = s->trust_domain != NULL ? s->trust_domain :
	    IDENTITY_TRUST_DOMAIN;
	struct ident *e, *next;
	char id[WEFT_SPIFFE_MAX];
	size_t i;

	identity_bundle(im, s->trust_bundle);
	LIST_FOREACH(e, &im->idents, entry)
		e->wanted = false;
	for (i = 0; i < s->n_pods; i++) {
		const struct weft_snap_pod *p = &s->pods[i];

		if (!p->meshed || !weft_gen_pod_is_local(g, p) ||
		    p->namespace == NULL)
			continue;
		if (weft_spiffe_format(td, p->namespace,
		    p->service_account != NULL ? p->service_account : "default",
		    id, sizeof(id)) == NULL) {
			log_warnx("pod %s/%s: no SPIFFE ID fits", p->namespace,
			    p->name);
			continue;
		}
		if ((e = ident_find(im, id)) != NULL) {
			e->wanted = true;
			continue;
		}
		if ((e = calloc(1, sizeof(*e))) == NULL ||
		    (e->timer = evtimer_new(im->base, ident_timer_cb, e)) ==
		    NULL) {
			free(e);
			log_warnx("identity %s: out of memory", id);
			continue;
		}
		e->im = im;
		e->wanted = true;
		snprintf(e->id, sizeof(e->id), "%s", id);
		LIST_INSERT_HEAD(&im->idents, e, entry);
		if (ident_adopt(e))
			continue;
		log_info("identity %s: wanted by local pod %s/%s; requesting "
		    "a certificate", e->id, p->namespace, p->name);
		ident_schedule(e, 0);
	}
	for (e = LIST_FIRST(&im->idents); e != NULL; e = next) {
		next = LIST_NEXT(e, entry);
		if (e->wanted)
			continue;
		log_info("identity %s: no local meshed pod uses it any more; "
		    "removed", e->id);
		ident_forget(e);
		ident_free(e, true);
	}
}

void
weft_identity_kick(struct weft_identity *im)
{
	struct ident *e;

	LIST_FOREACH(e, &im->idents, entry)
		if (e->attempt > 0 && e->req == NULL)
			ident_schedule(e, 0);
}

bool
weft_identity_ready(const struct weft_identity *im)
{
	const struct ident *e;
	time_t now = time(NULL);

	LIST_FOREACH(e, &im->idents, entry)
		if (!e->have_cert || e->not_after <= now)
			return false;
	return true;
}

struct weft_identity *
weft_identity_new(struct event_base *base, struct weft_client *client,
    const char *state_dir)
{
	struct weft_identity *im;

	if ((im = calloc(1, sizeof(*im))) == NULL)
		return NULL;
	im->base = base;
	im->client = client;
	LIST_INIT(&im->idents);
	if (state_dir != NULL) {
		if (asprintf(&im->dir, "%s/identities", state_dir) == -1) {
			free(im);
			return NULL;
		}
		if (mkdir(im->dir, 0700) == -1 && errno != EEXIST) {
			log_warn("identities are not kept across restarts: %s",
			    im->dir);
			free(im->dir);
			im->dir = NULL;
		}
	}
	return im;
}

void
weft_identity_free(struct weft_identity *im)
{
	if (im == NULL)
		return;
	while (!LIST_EMPTY(&im->idents))
		ident_free(LIST_FIRST(&im->idents), true);
	free(im->bundle);
	free(im->dir);
	free(im);
}
