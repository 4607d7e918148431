/* The node's certificate store (weft/certstore.h): a small table of
 * reference-counted, immutable certificates and the trust bundle, behind one
 * mutex.  The identity manager writes on the control loop; proxy workers
 * read.  Readers hold the lock only to take a reference, never while they
 * use a certificate.
 *
 * The trust bundle is kept as one X509_STORE built per bundle change and
 * handed out with X509_STORE_up_ref: an X509_STORE is safe to share between
 * threads for verification (OpenSSL locks its object cache), and readers
 * must treat it as read-only.  A bundle change builds a new store; holders of
 * the old one keep a consistent view until they free it. */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "weft/certstore.h"

/* A node runs pods of a handful of service accounts: a linear table is the
 * right size, and it keeps foreach in a stable order. */
static pthread_mutex_t	 store_mtx = PTHREAD_MUTEX_INITIALIZER;
static struct weft_cert	**store_certs;		/* owned references */
static size_t		 store_n, store_cap;
static X509_STORE	*store_bundle;		/* owned reference */
static atomic_uint_fast64_t store_version;

void
weft_cert_free(struct weft_cert *c)
{
	if (c == NULL)
		return;
	free(c->spiffe_id);
	EVP_PKEY_free(c->key);		/* OpenSSL clears private key memory */
	X509_free(c->leaf);
	sk_X509_pop_free(c->chain, X509_free);
	free(c);
}

void
weft_cert_unref(struct weft_cert *c)
{
	int left;

	if (c == NULL)
		return;
	pthread_mutex_lock(&store_mtx);
	left = --c->refs;
	pthread_mutex_unlock(&store_mtx);
	if (left == 0)
		weft_cert_free(c);
}

static ssize_t
store_find(const char *spiffe_id)
{
	size_t i;

	for (i = 0; i < store_n; i++)
		if (strcmp(store_certs[i]->spiffe_id, spiffe_id) == 0)
			return (ssize_t)i;
	return -1;
}

void
weft_certstore_put(struct weft_cert *c)
{
	struct weft_cert *old = NULL;
	ssize_t i;

	c->refs = 1;			/* the table's reference */
	pthread_mutex_lock(&store_mtx);
	if ((i = store_find(c->spiffe_id)) != -1) {
		old = store_certs[i];
		store_certs[i] = c;
	} else {
		if (store_n == store_cap) {
			size_t ncap = store_cap ? store_cap * 2 : 8;
			struct weft_cert **nt;

			if ((nt = realloc(store_certs,
			    ncap * sizeof(*nt))) == NULL) {
				/* Keep serving without it rather than lose
				 * the certificate silently: the caller sees
				 * it missing from the store and retries. */
				pthread_mutex_unlock(&store_mtx);
				weft_cert_free(c);
				return;
			}
			store_certs = nt;
			store_cap = ncap;
		}
		store_certs[store_n++] = c;
	}
	atomic_fetch_add(&store_version, 1);
	pthread_mutex_unlock(&store_mtx);
	weft_cert_unref(old);
}

void
weft_certstore_remove(const char *spiffe_id)
{
	struct weft_cert *old = NULL;
	ssize_t i;

	pthread_mutex_lock(&store_mtx);
	if ((i = store_find(spiffe_id)) != -1) {
		old = store_certs[i];
		memmove(&store_certs[i], &store_certs[i + 1],
		    (store_n - (size_t)i - 1) * sizeof(*store_certs));
		store_n--;
		atomic_fetch_add(&store_version, 1);
	}
	pthread_mutex_unlock(&store_mtx);
	weft_cert_unref(old);
}

struct weft_cert *
weft_certstore_get(const char *spiffe_id)
{
	struct weft_cert *c = NULL;
	ssize_t i;

	pthread_mutex_lock(&store_mtx);
	if ((i = store_find(spiffe_id)) != -1) {
		c = store_certs[i];
		c->refs++;
	}
	pthread_mutex_unlock(&store_mtx);
	return c;
}

void
weft_certstore_foreach(void (*cb)(const struct weft_cert *, void *), void *arg)
{
	size_t i;

	pthread_mutex_lock(&store_mtx);
	for (i = 0; i < store_n; i++)
		cb(store_certs[i], arg);
	pthread_mutex_unlock(&store_mtx);
}

/* The drained OpenSSL error queue as a message, for *err. */
static char *
store_ssl_error(const char *what)
{
	unsigned long e = ERR_get_error();
	char buf[256], *msg;

	ERR_clear_error();
	if (e == 0)
		return strdup(what);
	ERR_error_string_n(e, buf, sizeof(buf));
	if (asprintf(&msg, "%s: %s", what, buf) == -1)
		return NULL;
	return msg;
}

int
weft_certstore_set_bundle(const char *pem, char **err)
{
	X509_STORE *xs = NULL, *old;
	X509 *x;
	BIO *bio = NULL;
	int n = 0;

	*err = NULL;
	ERR_clear_error();
	if ((bio = BIO_new_mem_buf(pem, -1)) == NULL ||
	    (xs = X509_STORE_new()) == NULL) {
		*err = strdup("out of memory");
		goto fail;
	}
	while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(xs, x) != 1) {
			X509_free(x);
			*err = store_ssl_error("trust bundle: adding a "
			    "certificate");
			goto fail;
		}
		X509_free(x);		/* the store holds its own reference */
		n++;
	}
	/* PEM_read_bio_X509 ends with "no start line" at the end of input;
	 * anything else is a malformed certificate. */
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE) {
		*err = store_ssl_error("trust bundle: malformed PEM");
		goto fail;
	}
	ERR_clear_error();
	if (n == 0) {
		*err = strdup("trust bundle: no certificate");
		goto fail;
	}
	BIO_free(bio);
	pthread_mutex_lock(&store_mtx);
	old = store_bundle;
	store_bundle = xs;
	atomic_fetch_add(&store_version, 1);
	pthread_mutex_unlock(&store_mtx);
	X509_STORE_free(old);
	return 0;
fail:
	BIO_free(bio);
	X509_STORE_free(xs);
	return -1;
}

X509_STORE *
weft_certstore_bundle(void)
{
	X509_STORE *xs;

	pthread_mutex_lock(&store_mtx);
	if ((xs = store_bundle) != NULL)
		X509_STORE_up_ref(xs);
	pthread_mutex_unlock(&store_mtx);
	return xs;
}

uint64_t
weft_certstore_version(void)
{
	return atomic_load(&store_version);
}

void
weft_certstore_clear(void)
{
	struct weft_cert **t;
	X509_STORE *xs;
	size_t i, n;

	pthread_mutex_lock(&store_mtx);
	t = store_certs;
	n = store_n;
	xs = store_bundle;
	store_certs = NULL;
	store_n = store_cap = 0;
	store_bundle = NULL;
	atomic_fetch_add(&store_version, 1);
	pthread_mutex_unlock(&store_mtx);
	for (i = 0; i < n; i++)
		weft_cert_unref(t[i]);
	free(t);
	X509_STORE_free(xs);
}
