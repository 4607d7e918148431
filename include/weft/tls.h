/* TLS for the tunnel between nodes (DESIGN §3): SSL_CTXs built from the
 * certificate store, cached per worker thread, and the peer identity check.
 *
 * Everything is TLS 1.3 only, ALPN "h2", AES-128-GCM first, groups
 * X25519:P-256; both sides verify against the mesh trust bundle.  The peer's
 * SPIFFE ID is checked inside the verify callback at depth 0, so a wrong
 * identity fails the handshake like a bad chain does.
 *
 * A cache belongs to one worker thread and is not locked.  The SSL_CTXs it
 * returns are borrowed; each SSL made from one holds its own reference, so a
 * rebuild (the store's version moved) never pulls a context from under a
 * live connection. */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "weft/spiffe.h"

struct weft_tls_cache;

/* What the verify callback checks at depth 0 (set on each SSL with
 * weft_tls_set_peer_check; must outlive the SSL's handshake). */
struct weft_tls_peer_check {
	const char	*pc_want_id;	/* exact ID (client side), or NULL */
	const char	*pc_want_td;	/* trust domain (server side), or NULL */
	bool		 pc_rejected;	/* set: the ID was wrong (not the chain) */
	char		 pc_got[WEFT_SPIFFE_MAX];	/* the peer's ID if seen */
	const char	*pc_why;	/* static reason of a rejection */
};

struct weft_tls_cache *weft_tls_cache_new(void);
void	weft_tls_cache_free(struct weft_tls_cache *tc);

/* The client context for identity id (our certificate and key), or NULL if
 * the store has no certificate for it or no trust bundle (logged at debug).
 * Borrowed: valid until the next call on this cache. */
SSL_CTX	*weft_tls_client_ctx(struct weft_tls_cache *tc, const char *id);
/* The server context presenting id's certificate; NULL as above. */
SSL_CTX	*weft_tls_server_ctx(struct weft_tls_cache *tc, const char *id);

/* Attach pc to ssl for the verify callback. */
void	weft_tls_set_peer_check(SSL *ssl, struct weft_tls_peer_check *pc);

/* The peer identity of a certificate: it must carry exactly one URI SAN,
 * and that must be a valid workload ID (weft_spiffe_parse).  Copies the
 * URI into buf (>= WEFT_SPIFFE_MAX) and fills *id when not NULL.  Returns 0,
 * or -1 with a static reason in *why. */
int	weft_tls_peer_id(X509 *leaf, char *buf, size_t len,
	    struct weft_spiffe_id *id, const char **why);

/* The check the verify callback makes: 0 if leaf's ID equals want_id (when
 * given) and is in trust domain want_td (when given); -1 with *why. */
int	weft_tls_check_peer(X509 *leaf, const char *want_id,
	    const char *want_td, char *got, size_t gotlen, const char **why);

/* The last OpenSSL error of this thread as text ("certificate verify
 * failed"), or "" if none; clears the queue. */
const char *weft_tls_error(char *buf, size_t len);

#endif
