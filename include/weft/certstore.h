/* The node's certificate store: one key and certificate chain per identity
 * of its local pods, plus the mesh trust bundle.  Written by the identity
 * manager on the node's control loop (node/identity.c), read by worker
 * threads (proxy/tls.c) -- thread-safe, reference-counted entries, never
 * modified once published.
 *
 * Keys are generated on the node and never leave it. */
#ifndef WEFT_CERTSTORE_H
#define WEFT_CERTSTORE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* One issued identity.  Immutable after publication. */
struct weft_cert {
	char		*spiffe_id;	/* owned: "spiffe://td/ns/N/sa/S" */
	EVP_PKEY	*key;		/* owned */
	X509		*leaf;		/* owned */
	STACK_OF(X509)	*chain;		/* owned: intermediates, may be empty */
	char		 serial[80];	/* hex */
	time_t		 not_before;
	time_t		 not_after;
	/* private to the store */
	int		 refs;
};

/* Publish c for c->spiffe_id (the store takes ownership; a previous
 * certificate for the same ID is dropped when its last user is done). */
void	weft_certstore_put(struct weft_cert *c);
/* Remove the identity (no local pod uses it any more). */
void	weft_certstore_remove(const char *spiffe_id);
/* A new reference to the current certificate of spiffe_id, or NULL. */
struct weft_cert *weft_certstore_get(const char *spiffe_id);
void	weft_cert_unref(struct weft_cert *c);
/* Free an unpublished certificate (never put). */
void	weft_cert_free(struct weft_cert *c);

/* Trust bundle: the mesh CA roots (several during a rotation), PEM text.
 * set parses pem into a new X509_STORE and publishes it; returns 0, or -1
 * with *err (malloc'd; "trust bundle: malformed PEM: ...") and the previous
 * bundle kept.  get returns a new reference to the current X509_STORE
 * (X509_STORE_up_ref; caller frees with X509_STORE_free) or NULL before the
 * first bundle.  The store is shared between threads: use it to verify,
 * never modify it (a bundle change publishes a new store). */
int	weft_certstore_set_bundle(const char *pem, char **err);
X509_STORE *weft_certstore_bundle(void);

/* A counter that moves on every put, remove or bundle change, so that
 * caches of SSL_CTXs (proxy/tls.c) know when to rebuild. */
uint64_t weft_certstore_version(void);

/* Iterate the current certificates (for /debug and ctl): calls cb with a
 * borrowed certificate under the store's lock; cb must not call the store. */
void	weft_certstore_foreach(void (*cb)(const struct weft_cert *, void *),
	    void *arg);

/* Drop every certificate and the bundle (daemon shutdown, tests); holders
 * of references keep theirs. */
void	weft_certstore_clear(void);

#endif
