/* TLS contexts for the tunnel, per worker, from the certificate store.
 *
 * A cache entry is (side, identity) -> SSL_CTX, valid for one version of the
 * store: when weft_certstore_version() moves, the whole cache is dropped and
 * rebuilt on demand (rotations are rare; a rebuild costs a few key loads).
 * Live SSLs keep their own reference to the context they came from.
 *
 * Resumption: the client keeps sessions itself (proxy/tunnel.c, a copy
 * per pool key, SSL_set_session); the server issues stateless tickets
 * sealed with one random key per process, so a ticket from one worker
 * resumes on another.  The session id context names the identity and the
 * store version, so a ticket never resumes under another certificate or
 * bundle; tls_ticket_dec_cb refuses one whose client certificate has
 * expired since the full handshake. */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "weft/certstore.h"
#include "weft/log.h"
#include "weft/spiffe.h"
#include "weft/tls.h"

#define TLS_CIPHERSUITES \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:" \
	"TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS	"X25519:P-256"

struct tls_entry {
	bool		 te_server;
	char		*te_id;
	SSL_CTX		*te_ctx;		/* one reference */
};

struct weft_tls_cache {
	uint64_t	 tc_version;
	struct tls_entry *tc_entries;
	size_t		 tc_n, tc_cap;
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_exidx = -1;
static unsigned char tls_ticket_keys[80];	/* name 16, hmac 32, aes 32 */
static bool tls_ticket_keys_ok;

static void
tls_init_once(void)
{
	tls_exidx = SSL_get_ex_new_index(0, (void *)"weft peer check", NULL,
	    NULL, NULL);
	tls_ticket_keys_ok = RAND_bytes(tls_ticket_keys,
	    sizeof(tls_ticket_keys)) == 1;
}

const char *
weft_tls_error(char *buf, size_t len)
{
	unsigned long e, last = 0;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (last == 0) {
		if (len > 0)
			buf[0] = '\0';
		return buf;
	}
	ERR_error_string_n(last, buf, len);
	/* "error:0A000086:SSL routines::certificate verify failed": keep
	 * the reason. */
	{
		char *p = strrchr(buf, ':');

		if (p != NULL && p[1] != '\0')
			memmove(buf, p + 1, strlen(p + 1) + 1);
	}
	return buf;
}

int
weft_tls_peer_id(X509 *leaf, char *buf, size_t len, struct weft_spiffe_id *id,
    const char **why)
{
	GENERAL_NAMES *gens;
	const GENERAL_NAME *gn, *uri = NULL;
	struct weft_spiffe_id tmp;
	const unsigned char *data;
	int i, n, nuri = 0, dlen;

	if (len > 0)
		buf[0] = '\0';
	if (leaf == NULL) {
		*why = "no certificate";
		return -1;
	}
	if ((gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL,
	    NULL)) == NULL) {
		*why = "no subjectAltName";
		return -1;
	}
	n = sk_GENERAL_NAME_num(gens);
	for (i = 0; i < n; i++) {
		gn = sk_GENERAL_NAME_value(gens, i);
		if (gn->type == GEN_URI) {
			nuri++;
			uri = gn;
		}
	}
	if (nuri != 1) {
		GENERAL_NAMES_free(gens);
		*why = nuri == 0 ? "no URI SAN" : "more than one URI SAN";
		return -1;
	}
	data = ASN1_STRING_get0_data(uri->d.uniformResourceIdentifier);
	dlen = ASN1_STRING_length(uri->d.uniformResourceIdentifier);
	if (dlen <= 0 || (size_t)dlen >= len || (size_t)dlen >= WEFT_SPIFFE_MAX ||
	    memchr(data, '\0', (size_t)dlen) != NULL) {
		GENERAL_NAMES_free(gens);
		*why = "URI SAN empty, too long or with a NUL";
		return -1;
	}
	memcpy(buf, data, (size_t)dlen);
	buf[dlen] = '\0';
	GENERAL_NAMES_free(gens);
	if (weft_spiffe_parse(buf, id != NULL ? id : &tmp, why) == -1)
		return -1;
	return 0;
}

int
weft_tls_check_peer(X509 *leaf, const char *want_id, const char *want_td,
    char *got, size_t gotlen, const char **why)
{
	struct weft_spiffe_id sid;

	if (weft_tls_peer_id(leaf, got, gotlen, &sid, why) == -1)
		return -1;
	if (want_td != NULL && strcmp(sid.trust_domain, want_td) != 0) {
		*why = "another trust domain";
		return -1;
	}
	if (want_id != NULL && strcmp(got, want_id) != 0) {
		*why = "not the expected identity";
		return -1;
	}
	return 0;
}

void
weft_tls_set_peer_check(SSL *ssl, struct weft_tls_peer_check *pc)
{
	pthread_once(&tls_once, tls_init_once);
	SSL_set_ex_data(ssl, tls_exidx, pc);
}

static int
tls_verify_cb(int ok, X509_STORE_CTX *xs)
{
	struct weft_tls_peer_check *pc;
	const char *why = NULL;
	SSL *ssl;

	if (!ok || X509_STORE_CTX_get_error_depth(xs) != 0)
		return ok;
	ssl = X509_STORE_CTX_get_ex_data(xs,
	    SSL_get_ex_data_X509_STORE_CTX_idx());
	pc = ssl != NULL ? SSL_get_ex_data(ssl, tls_exidx) : NULL;
	if (pc == NULL) {
		/* Fail closed: nobody said what to expect. */
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	if (weft_tls_check_peer(X509_STORE_CTX_get_current_cert(xs),
	    pc->pc_want_id, pc->pc_want_td, pc->pc_got, sizeof(pc->pc_got),
	    &why) == -1) {
		pc->pc_rejected = true;
		pc->pc_why = why;
		X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
		return 0;
	}
	return 1;
}

static int
tls_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	unsigned int i;

	(void)ssl;
	(void)arg;
	for (i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 2 && i + 3 <= inlen && memcmp(&in[i + 1], "h2",
		    2) == 0) {
			*out = &in[i + 1];
			*outlen = 2;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* A ticket resumes only while the certificate the client showed in the
 * full handshake is still valid: TLS 1.3 hands out a fresh ticket on every
 * resumption, so without this check a chain of resumptions would outlive
 * an expired (never renewed) client certificate. */
static SSL_TICKET_RETURN
tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *sess, const unsigned char *name,
    size_t namelen, SSL_TICKET_STATUS status, void *arg)
{
	X509 *peer;

	(void)ssl;
	(void)name;
	(void)namelen;
	(void)arg;
	switch (status) {
	case SSL_TICKET_SUCCESS:
	case SSL_TICKET_SUCCESS_RENEW:
		peer = SSL_SESSION_get0_peer(sess);
		if (peer == NULL || X509_cmp_current_time(
		    X509_get0_notAfter(peer)) <= 0)
			return SSL_TICKET_RETURN_IGNORE_RENEW;
		return status == SSL_TICKET_SUCCESS ? SSL_TICKET_RETURN_USE :
		    SSL_TICKET_RETURN_USE_RENEW;
	case SSL_TICKET_EMPTY:
	case SSL_TICKET_NO_DECRYPT:
		return SSL_TICKET_RETURN_IGNORE_RENEW;
	default:
		return SSL_TICKET_RETURN_ABORT;
	}
}

static SSL_CTX *
tls_ctx_build(bool server, const char *id, uint64_t version)
{
	struct weft_cert *c;
	X509_STORE *st;
	SSL_CTX *ctx = NULL;
	unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
	unsigned int sidlen = sizeof(sid);
	char err[256];
	int i;

	if ((c = weft_certstore_get(id)) == NULL) {
		log_debug("tls: no certificate for %s", id);
		return NULL;
	}
	if ((st = weft_certstore_bundle()) == NULL) {
		log_debug("tls: no trust bundle yet");
		weft_cert_unref(c);
		return NULL;
	}
	if ((ctx = SSL_CTX_new(server ? TLS_server_method() :
	    TLS_client_method())) == NULL)
		goto fail;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) ||
	    !SSL_CTX_set_ciphersuites(ctx, TLS_CIPHERSUITES) ||
	    !SSL_CTX_set1_groups_list(ctx, TLS_GROUPS))
		goto fail;
	/* libevent 2.1 never sends close_notify (feasibility §4). */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
	    SSL_OP_NO_RENEGOTIATION);
	/* An idle pooled connection gives back its two ~17 KiB record
	 * buffers: a third of its memory, ~0.35 KiB per idle stream. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate(ctx, c->leaf) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, c->key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto fail;
	for (i = 0; c->chain != NULL && i < sk_X509_num(c->chain); i++)
		if (SSL_CTX_add1_chain_cert(ctx, sk_X509_value(c->chain,
		    i)) != 1)
			goto fail;
	SSL_CTX_set1_cert_store(ctx, st);
	if (server) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, tls_verify_cb);
		SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_select, NULL);
		/* Resumption only under the same identity and store. */
		if (EVP_Digest(id, strlen(id), sid, &sidlen, EVP_sha256(),
		    NULL) != 1)
			goto fail;
		memcpy(sid, &version, sizeof(version) < sidlen ?
		    sizeof(version) : sidlen);
		if (SSL_CTX_set_session_id_context(ctx, sid, sidlen) != 1)
			goto fail;
		/* One ticket per handshake: the client keeps only the last
		 * one per pool key anyway.  Sealed with the process key, so
		 * every worker's (and every rebuilt) context opens it. */
		if (!SSL_CTX_set_num_tickets(ctx, 1) || !tls_ticket_keys_ok ||
		    SSL_CTX_set_tlsext_ticket_keys(ctx, tls_ticket_keys,
		    sizeof(tls_ticket_keys)) != 1 ||
		    !SSL_CTX_set_session_ticket_cb(ctx, NULL,
		    tls_ticket_dec_cb, NULL))
			goto fail;
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, tls_verify_cb);
		/* 0 is success here. */
		if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2",
		    3) != 0)
			goto fail;
		/* The tunnel keeps the sessions (SSL_CTX_sess_set_new_cb). */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
		    SSL_SESS_CACHE_NO_INTERNAL_STORE);
	}
	X509_STORE_free(st);
	weft_cert_unref(c);
	return ctx;
fail:
	log_warnx("tls: %s context for %s: %s", server ? "server" : "client",
	    id, weft_tls_error(err, sizeof(err)));
	SSL_CTX_free(ctx);
	X509_STORE_free(st);
	weft_cert_unref(c);
	return NULL;
}

struct weft_tls_cache *
weft_tls_cache_new(void)
{
	pthread_once(&tls_once, tls_init_once);
	return calloc(1, sizeof(struct weft_tls_cache));
}

static void
tls_cache_flush(struct weft_tls_cache *tc)
{
	size_t i;

	for (i = 0; i < tc->tc_n; i++) {
		SSL_CTX_free(tc->tc_entries[i].te_ctx);
		free(tc->tc_entries[i].te_id);
	}
	tc->tc_n = 0;
}

void
weft_tls_cache_free(struct weft_tls_cache *tc)
{
	if (tc == NULL)
		return;
	tls_cache_flush(tc);
	free(tc->tc_entries);
	free(tc);
}

static SSL_CTX *
tls_cache_get(struct weft_tls_cache *tc, bool server, const char *id)
{
	uint64_t v = weft_certstore_version();
	struct tls_entry *e;
	SSL_CTX *ctx;
	size_t i;

	if (v != tc->tc_version) {
		tls_cache_flush(tc);
		tc->tc_version = v;
	}
	for (i = 0; i < tc->tc_n; i++) {
		e = &tc->tc_entries[i];
		if (e->te_server == server && strcmp(e->te_id, id) == 0)
			return e->te_ctx;
	}
	if ((ctx = tls_ctx_build(server, id, v)) == NULL)
		return NULL;
	if (tc->tc_n == tc->tc_cap) {
		size_t cap = tc->tc_cap ? tc->tc_cap * 2 : 8;
		struct tls_entry *ne = realloc(tc->tc_entries,
		    cap * sizeof(*ne));

		if (ne == NULL) {
			SSL_CTX_free(ctx);
			return NULL;
		}
		tc->tc_entries = ne;
		tc->tc_cap = cap;
	}
	e = &tc->tc_entries[tc->tc_n];
	if ((e->te_id = strdup(id)) == NULL) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	e->te_server = server;
	e->te_ctx = ctx;
	tc->tc_n++;
	return ctx;
}

SSL_CTX *
weft_tls_client_ctx(struct weft_tls_cache *tc, const char *id)
{
	return tls_cache_get(tc, false, id);
}

SSL_CTX *
weft_tls_server_ctx(struct weft_tls_cache *tc, const char *id)
{
	return tls_cache_get(tc, true, id);
}
