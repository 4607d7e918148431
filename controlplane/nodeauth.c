/* Node bootstrap in Kubernetes: which node does a bearer token speak for?
 *
 * The node daemon presents its projected service-account token (audience
 * "weft" by default).  The API server's TokenReview says whether the
 * token is valid, for which service account, and, for a token bound to a
 * pod, the pod's name and uid (user.extra authentication.kubernetes.io/
 * pod-name and pod-uid).  The caller must be the node daemon's service
 * account; its pod, looked up in the model, must still exist with that
 * uid, and the node it is scheduled on is the node the caller speaks
 * for.  A token of the daemon on node A therefore cannot read node B's
 * snapshot or obtain certificates for B's identities.
 *
 * Reviews are cached by the SHA-256 of the token (the token itself is not
 * kept): answers for a minute, refusals for ten seconds, failures to ask
 * for a second.  The pod is looked up again on every request, so a
 * deleted or replaced pod's token stops working with the next model. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "weft/kube.h"
#include "weft/log.h"

#define AUTH_CACHE_MAX		4096
#define AUTH_INFLIGHT_MAX	256

struct auth_entry {
	unsigned char	 hash[SHA256_DIGEST_LENGTH];
	time_t		 expires;
	int		 code;		/* 0: authenticated, else the refusal */
	char		*why;		/* owned: the refusal */
	char		*pod_ns;	/* owned */
	char		*pod_name;	/* owned */
	char		*pod_uid;	/* owned */
};

struct weft_node_auth_wait {
	TAILQ_ENTRY(weft_node_auth_wait) entry;
	struct auth_inflight *in;	/* borrowed */
	void		(*done)(void *);
	void		*arg;
};

struct auth_inflight {
	TAILQ_ENTRY(auth_inflight) entry;
	struct weft_node_auth *a;	/* borrowed */
	unsigned char	 hash[SHA256_DIGEST_LENGTH];
	struct weft_kube_req *req;	/* owned */
	bool		 listed;	/* in a->inflight */
	TAILQ_HEAD(, weft_node_auth_wait) waits;
};

struct weft_node_auth {
	struct weft_kube *k;		/* borrowed */
	char		*sa_ns;		/* owned */
	char		*sa_name;	/* owned */
	char		*username;	/* owned: system:serviceaccount:NS:NAME */
	char		*audience;	/* owned; NULL: the API server's */
	struct auth_entry *cache;	/* owned */
	size_t		 n_cache;
	TAILQ_HEAD(, auth_inflight) inflight;
	size_t		 n_inflight;
	uint64_t	 n_reviews;
};

static void
auth_entry_clear(struct auth_entry *e)
{
	free(e->why);
	free(e->pod_ns);
	free(e->pod_name);
	free(e->pod_uid);
	memset(e, 0, sizeof(*e));
}

struct weft_node_auth *
weft_node_auth_new(struct weft_kube *k, const char *sa_ns,
    const char *sa_name, const char *audience)
{
	struct weft_node_auth *a;

	if ((a = calloc(1, sizeof(*a))) == NULL)
		return NULL;
	a->k = k;
	TAILQ_INIT(&a->inflight);
	a->sa_ns = strdup(sa_ns);
	a->sa_name = strdup(sa_name);
	if (audience != NULL && *audience != '\0')
		a->audience = strdup(audience);
	if (a->sa_ns == NULL || a->sa_name == NULL ||
	    (audience != NULL && *audience != '\0' && a->audience == NULL) ||
	    asprintf(&a->username, "system:serviceaccount:%s:%s", sa_ns,
	    sa_name) == -1) {
		a->username = NULL;
		weft_node_auth_free(a);
		return NULL;
	}
	return a;
}

static void
auth_inflight_free(struct auth_inflight *in)
{
	struct weft_node_auth_wait *w;

	while ((w = TAILQ_FIRST(&in->waits)) != NULL) {
		TAILQ_REMOVE(&in->waits, w, entry);
		free(w);
	}
	weft_kube_cancel(in->req);
	if (in->listed) {
		TAILQ_REMOVE(&in->a->inflight, in, entry);
		in->a->n_inflight--;
	}
	free(in);
}

void
weft_node_auth_free(struct weft_node_auth *a)
{
	size_t i;

	if (a == NULL)
		return;
	while (!TAILQ_EMPTY(&a->inflight))
		auth_inflight_free(TAILQ_FIRST(&a->inflight));
	for (i = 0; i < a->n_cache; i++)
		auth_entry_clear(&a->cache[i]);
	free(a->cache);
	free(a->sa_ns);
	free(a->sa_name);
	free(a->username);
	free(a->audience);
	free(a);
}

static struct auth_entry *
auth_find(struct weft_node_auth *a, const unsigned char *hash)
{
	time_t now = time(NULL);
	size_t i;

	for (i = 0; i < a->n_cache; i++)
		if (CRYPTO_memcmp(a->cache[i].hash, hash,
		    SHA256_DIGEST_LENGTH) == 0)
			return a->cache[i].expires > now ? &a->cache[i] : NULL;
	return NULL;
}

/* A cleared slot for hash: its old entry, an expired one, a new one, or
 * (cache full) the one expiring first. */
static struct auth_entry *
auth_slot(struct weft_node_auth *a, const unsigned char *hash)
{
	struct auth_entry *e = NULL, *nc;
	time_t now = time(NULL);
	size_t i;

	for (i = 0; e == NULL && i < a->n_cache; i++)
		if (CRYPTO_memcmp(a->cache[i].hash, hash,
		    SHA256_DIGEST_LENGTH) == 0)
			e = &a->cache[i];
	for (i = 0; e == NULL && i < a->n_cache; i++)
		if (a->cache[i].expires <= now)
			e = &a->cache[i];
	if (e == NULL && a->n_cache < AUTH_CACHE_MAX &&
	    (nc = reallocarray(a->cache, a->n_cache + 1,
	    sizeof(*nc))) != NULL) {
		a->cache = nc;
		e = &a->cache[a->n_cache++];
		memset(e, 0, sizeof(*e));
	}
	for (i = 0; e == NULL && i < a->n_cache; i++)
		if (i == 0 || a->cache[i].expires < e->expires)
			e = &a->cache[i];
	if (e != NULL)
		auth_entry_clear(e);
	return e;
}

static void
auth_refuse(struct weft_node_auth *a, const unsigned char *hash, int code,
    int ttl, const char *why)
{
	struct auth_entry *e;

	if ((e = auth_slot(a, hash)) == NULL)
		return;
	memcpy(e->hash, hash, SHA256_DIGEST_LENGTH);
	e->code = code;
	e->expires = time(NULL) + ttl;
	e->why = strdup(why);
}

static void
auth_review_done(const struct weft_kube_review *rv, void *arg)
{
	struct auth_inflight *in = arg;
	struct weft_node_auth *a = in->a;
	struct weft_node_auth_wait *w;
	struct auth_entry *e;
	char why[512];

	in->req = NULL;
	if (rv->failed) {
		snprintf(why, sizeof(why), "cannot review the token: %s",
		    rv->error ? rv->error : "no answer");
		log_warnx("node authentication: %s", why);
		auth_refuse(a, in->hash, 503, 1, why);
	} else if (!rv->authenticated) {
		snprintf(why, sizeof(why), "token rejected by the API server%s%s",
		    rv->error ? ": " : "", rv->error ? rv->error : "");
		log_info("node authentication: %s", why);
		auth_refuse(a, in->hash, 401, 10, why);
	} else if (strcmp(rv->username, a->username) != 0) {
		snprintf(why, sizeof(why), "%s is not the node daemon's "
		    "service account (%s)", rv->username, a->username);
		log_info("node authentication: %s", why);
		auth_refuse(a, in->hash, 403, 10, why);
	} else if (rv->pod_name == NULL || rv->pod_uid == NULL) {
		snprintf(why, sizeof(why), "the token of %s is not bound to a "
		    "pod (use a projected service account token)",
		    rv->username);
		log_info("node authentication: %s", why);
		auth_refuse(a, in->hash, 403, 10, why);
	} else if ((e = auth_slot(a, in->hash)) != NULL) {
		memcpy(e->hash, in->hash, SHA256_DIGEST_LENGTH);
		e->code = 0;
		e->expires = time(NULL) + 60;
		e->pod_ns = strdup(a->sa_ns);
		e->pod_name = strdup(rv->pod_name);
		e->pod_uid = strdup(rv->pod_uid);
		if (e->pod_ns == NULL || e->pod_name == NULL ||
		    e->pod_uid == NULL) {
			auth_entry_clear(e);
			e->code = 503;
			e->expires = time(NULL) + 1;
			e->why = strdup("out of memory");
		} else
			log_debug("node authentication: token of pod %s/%s "
			    "(uid %s)", e->pod_ns, e->pod_name, e->pod_uid);
	}
	/* the waiters ask again and find the answer in the cache (or, if it
	 * could not be stored, start a review of their own, not join this
	 * one, which is over) */
	TAILQ_REMOVE(&a->inflight, in, entry);
	a->n_inflight--;
	in->listed = false;
	while ((w = TAILQ_FIRST(&in->waits)) != NULL) {
		TAILQ_REMOVE(&in->waits, w, entry);
		w->done(w->arg);
		free(w);
	}
	auth_inflight_free(in);
}

static const struct weft_snap_pod *
auth_pod(const struct weft_model *m, const char *ns, const char *name)
{
	size_t lo = 0, hi, mid;
	int r;

	if (m == NULL)
		return NULL;
	hi = m->all.n_pods;
	/* the model's pods are sorted by (namespace, name) */
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = strcmp(m->all.pods[mid].namespace, ns);
		if (r == 0)
			r = strcmp(m->all.pods[mid].name, name);
		if (r == 0)
			return &m->all.pods[mid];
		if (r < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

int
weft_node_auth_check(struct weft_node_auth *a, const struct weft_model *m,
    const char *token, const char **node, int *code, char *why, size_t len,
    void (*done)(void *), void *arg, struct weft_node_auth_wait **waitp)
{
	unsigned char hash[SHA256_DIGEST_LENGTH];
	struct auth_inflight *in;
	struct weft_node_auth_wait *w;
	const struct weft_snap_pod *p;
	struct auth_entry *e;

	*node = NULL;
	*code = 0;
	*waitp = NULL;
	SHA256((const unsigned char *)token, strlen(token), hash);
	if ((e = auth_find(a, hash)) != NULL) {
		if (e->code != 0) {
			*code = e->code;
			snprintf(why, len, "%s", e->why ? e->why :
			    "out of memory");
			return WEFT_NODE_AUTH_REFUSED;
		}
		p = auth_pod(m, e->pod_ns, e->pod_name);
		if (p == NULL || p->uid == NULL ||
		    strcmp(p->uid, e->pod_uid) != 0) {
			*code = 403;
			snprintf(why, len, "pod %s/%s (uid %s), to which the token "
			    "is bound, is not %s", e->pod_ns, e->pod_name,
			    e->pod_uid, p == NULL ? "known (yet)" :
			    "this uid any more");
			return WEFT_NODE_AUTH_REFUSED;
		}
		if (p->node == NULL) {
			*code = 403;
			snprintf(why, len, "pod %s/%s is not scheduled on a "
			    "node", e->pod_ns, e->pod_name);
			return WEFT_NODE_AUTH_REFUSED;
		}
		*node = p->node;
		return WEFT_NODE_AUTH_OK;
	}
	TAILQ_FOREACH(in, &a->inflight, entry)
		if (memcmp(in->hash, hash, sizeof(hash)) == 0)
			break;
	if (in == NULL) {
		if (a->n_inflight >= AUTH_INFLIGHT_MAX) {
			*code = 503;
			snprintf(why, len, "too many token reviews in flight");
			return WEFT_NODE_AUTH_REFUSED;
		}
		if ((in = calloc(1, sizeof(*in))) == NULL)
			goto oom;
		in->a = a;
		memcpy(in->hash, hash, sizeof(hash));
		TAILQ_INIT(&in->waits);
		TAILQ_INSERT_TAIL(&a->inflight, in, entry);
		in->listed = true;
		a->n_inflight++;
		if ((in->req = weft_kube_token_review(a->k, token, a->audience,
		    auth_review_done, in)) == NULL) {
			auth_inflight_free(in);
			goto oom;
		}
		a->n_reviews++;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		goto oom;
	w->in = in;
	w->done = done;
	w->arg = arg;
	TAILQ_INSERT_TAIL(&in->waits, w, entry);
	*waitp = w;
	return WEFT_NODE_AUTH_PENDING;
oom:
	*code = 503;
	snprintf(why, len, "out of memory");
	return WEFT_NODE_AUTH_REFUSED;
}

void
weft_node_auth_cancel(struct weft_node_auth_wait *w)
{
	if (w == NULL)
		return;
	TAILQ_REMOVE(&w->in->waits, w, entry);
	free(w);
}

uint64_t
weft_node_auth_reviews(const struct weft_node_auth *a)
{
	return a->n_reviews;
}
