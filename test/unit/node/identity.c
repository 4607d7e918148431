/* Unit tests for node/identity.c: the renewal schedule
 * (weft_identity_next_renewal), and the certificate store's reference
 * counting and bundle parsing (node/certstore.c). */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "weft/certstore.h"
#include "node/identity.h"
#include "../../tap.h"

#define DAY	86400
#define T0	1700000000	/* some not_before */

static void
test_half_life(void)
{
	time_t t;

	/* rnd 0.5 is the exact middle: no jitter. */
	t = weft_identity_next_renewal(T0, T0 + DAY, T0, 0, 0.5);
	is_int(t, T0 + DAY / 2, "24 h certificate renews at half-life");
	t = weft_identity_next_renewal(T0, T0 + 60, T0 + 1, 0, 0.5);
	is_int(t, T0 + 30, "60 s certificate renews after 30 s");
	/* Jitter bounds: +-5% of the lifetime. */
	t = weft_identity_next_renewal(T0, T0 + DAY, T0, 0, 0.0);
	is_int(t, T0 + DAY / 2 - DAY / 20, "jitter low end is -5%%");
	t = weft_identity_next_renewal(T0, T0 + DAY, T0, 0, 0.999999);
	ok(t <= T0 + DAY / 2 + DAY / 20 && t >= T0 + DAY / 2 + DAY / 20 - 1,
	    "jitter high end is +5%% (got %+lld)",
	    (long long)(t - T0 - DAY / 2));
}

static void
test_jitter_spread(void)
{
	time_t t, lo = T0 + DAY, hi = T0;
	int i, bad = 0;

	srandom(42);
	for (i = 0; i < 10000; i++) {
		double r = (double)random() / ((double)RAND_MAX + 1.0);

		t = weft_identity_next_renewal(T0, T0 + DAY, T0, 0, r);
		if (t < T0 + DAY / 2 - DAY / 20 ||
		    t > T0 + DAY / 2 + DAY / 20)
			bad++;
		if (t < lo)
			lo = t;
		if (t > hi)
			hi = t;
	}
	is_int(bad, 0, "10000 random renewals all within +-5%% of half-life");
	ok(hi - lo > DAY / 20, "and they spread (range %llds)",
	    (long long)(hi - lo));
}

static void
test_expired(void)
{
	time_t now = T0 + DAY + 100;

	is_int(weft_identity_next_renewal(T0, T0 + DAY, now, 0, 0.5), now,
	    "already expired: renew immediately");
	is_int(weft_identity_next_renewal(T0, T0 + DAY, T0 + DAY * 3 / 4, 0,
	    0.5), T0 + DAY * 3 / 4, "past half-life (restart): immediately");
	is_int(weft_identity_next_renewal(0, 0, T0, 0, 0.3), T0,
	    "no certificate yet: immediately");
}

static void
test_backoff(void)
{
	time_t now = T0, prev = 0, t;
	unsigned a;
	int grows = 1;

	/* rnd near 0: the full base (equal jitter takes up to half off). */
	for (a = 1; a <= 6; a++) {
		t = weft_identity_next_renewal(0, 0, now, a, 0.0) - now;
		if (t != (time_t)1 << (a - 1))
			grows = 0;
		if (t < prev)
			grows = 0;
		prev = t;
	}
	ok(grows, "backoff doubles: 1, 2, 4, 8, 16, 32 s");
	is_int(weft_identity_next_renewal(0, 0, now, 7, 0.0) - now, 60,
	    "attempt 7: capped at 60 s");
	is_int(weft_identity_next_renewal(0, 0, now, 50, 0.0) - now, 60,
	    "attempt 50: capped at 60 s (no overflow)");
	is_int(weft_identity_next_renewal(0, 0, now, 4000000000u, 0.0) - now,
	    60, "attempt 4e9: capped at 60 s");
	is_int(weft_identity_next_renewal(0, 0, now, 1, 0.99) - now, 1,
	    "attempt 1: at least 1 s whatever the jitter");
	t = weft_identity_next_renewal(0, 0, now, 10, 0.99) - now;
	ok(t >= 30 && t <= 60, "capped backoff keeps jitter in [30, 60] (%lld)",
	    (long long)t);
	t = weft_identity_next_renewal(0, 0, now, 3, 0.5) - now;
	ok(t >= 2 && t <= 4, "attempt 3 with jitter in [2, 4] (%lld)",
	    (long long)t);
}

static void
test_never_past_expiry(void)
{
	time_t t;

	/* 60 s certificate, 40 s in, failing: margin 6 s -> retry by 54 s. */
	t = weft_identity_next_renewal(T0, T0 + 60, T0 + 40, 6, 0.0);
	is_int(t, T0 + 54, "a 32 s backoff is cut to expiry - 10%%");
	t = weft_identity_next_renewal(T0, T0 + 60, T0 + 40, 1, 0.0);
	is_int(t, T0 + 41, "a short backoff is left alone");
	/* 24 h: margin capped at 5 min. */
	t = weft_identity_next_renewal(T0, T0 + DAY, T0 + DAY - 330, 7, 0.0);
	is_int(t, T0 + DAY - 300, "24 h certificate: retry by expiry - 5 min");
	/* Past the margin (or expired): plain backoff, no busy loop. */
	t = weft_identity_next_renewal(T0, T0 + 60, T0 + 58, 7, 0.0);
	is_int(t, T0 + 58 + 60, "inside the margin: plain backoff");
	t = weft_identity_next_renewal(T0, T0 + 60, T0 + 600, 3, 0.0);
	is_int(t, T0 + 600 + 4, "expired and failing: plain backoff");
}

/* --- the store ----------------------------------------------------------- */

static X509 *
self_signed(EVP_PKEY *key, const char *cn)
{
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_subject_name(x, name);
	X509_set_issuer_name(x, name);
	X509_NAME_free(name);
	X509_set_pubkey(x, key);
	X509_sign(x, key, EVP_sha256());
	return x;
}

static char *
to_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s;
	long n;

	PEM_write_bio_X509(b, x);
	n = BIO_get_mem_data(b, &data);
	s = strndup(data, (size_t)n);
	BIO_free(b);
	return s;
}

static struct weft_cert *
mkcert(const char *id, EVP_PKEY *key, X509 *leaf)
{
	struct weft_cert *c = calloc(1, sizeof(*c));

	c->spiffe_id = strdup(id);
	EVP_PKEY_up_ref(key);
	c->key = key;
	X509_up_ref(leaf);
	c->leaf = leaf;
	c->chain = sk_X509_new_null();
	snprintf(c->serial, sizeof(c->serial), "07");
	return c;
}

static void
count_cb(const struct weft_cert *c, void *arg)
{
	(*(int *)arg)++;
}

static void
test_store(void)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = self_signed(key, "root-a"), *y;
	struct weft_cert *c1, *c2, *got;
	X509_STORE *xs, *xs2;
	char *pem, *pem2, *two, *err = NULL;
	uint64_t v;
	int n = 0;

	v = weft_certstore_version();
	ok(weft_certstore_get("spiffe://td/ns/a/sa/b") == NULL,
	    "empty store: no certificate");
	c1 = mkcert("spiffe://td/ns/a/sa/b", key, x);
	weft_certstore_put(c1);
	ok(weft_certstore_version() > v, "put moves the version");
	got = weft_certstore_get("spiffe://td/ns/a/sa/b");
	ok(got == c1, "get returns the published certificate");
	/* Replace while a reader holds the old one: it stays usable. */
	c2 = mkcert("spiffe://td/ns/a/sa/b", key, x);
	weft_certstore_put(c2);
	ok(got->leaf == x && strcmp(got->spiffe_id,
	    "spiffe://td/ns/a/sa/b") == 0, "a replaced certificate stays "
	    "valid for its reader");
	weft_cert_unref(got);
	got = weft_certstore_get("spiffe://td/ns/a/sa/b");
	ok(got == c2, "get returns the replacement");
	weft_cert_unref(got);
	weft_certstore_foreach(count_cb, &n);
	is_int(n, 1, "one identity in the store");
	v = weft_certstore_version();
	weft_certstore_remove("spiffe://td/ns/a/sa/b");
	ok(weft_certstore_get("spiffe://td/ns/a/sa/b") == NULL &&
	    weft_certstore_version() > v, "remove drops it and moves the "
	    "version");

	ok(weft_certstore_bundle() == NULL, "no bundle before the first");
	pem = to_pem(x);
	y = self_signed(key, "root-b");
	pem2 = to_pem(y);
	asprintf(&two, "%s%s", pem, pem2);
	is_int(weft_certstore_set_bundle(two, &err), 0, "two-root bundle");
	xs = weft_certstore_bundle();
	ok(xs != NULL, "bundle store handed out");
	is_int(sk_X509_OBJECT_num(X509_STORE_get0_objects(xs)), 2,
	    "both roots in the store");
	n = weft_certstore_set_bundle("-----BEGIN CERTIFICATE-----\nAAAA\n"
	    "-----END CERTIFICATE-----\n", &err);
	ok(n == -1 && err != NULL, "malformed bundle refused (%s)",
	    err ? err : "");
	free(err);
	err = NULL;
	n = weft_certstore_set_bundle("nothing here", &err);
	ok(n == -1 && err != NULL, "bundle without certificate refused (%s)",
	    err ? err : "");
	free(err);
	err = NULL;
	xs2 = weft_certstore_bundle();
	ok(xs2 == xs, "a refused bundle keeps the previous one");
	X509_STORE_free(xs2);
	is_int(weft_certstore_set_bundle(pem, &err), 0, "one-root bundle");
	xs2 = weft_certstore_bundle();
	ok(xs2 != xs && sk_X509_OBJECT_num(X509_STORE_get0_objects(xs)) == 2,
	    "a holder of the old bundle keeps its view");
	X509_STORE_free(xs);
	X509_STORE_free(xs2);
	weft_certstore_clear();
	free(pem);
	free(pem2);
	free(two);
	X509_free(x);
	X509_free(y);
	EVP_PKEY_free(key);
}

int
main(void)
{
	test_half_life();
	test_jitter_spread();
	test_expired();
	test_backoff();
	test_never_past_expiry();
	test_store();
	return tap_done();
}
