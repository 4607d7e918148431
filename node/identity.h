/* Internal to node/: the identity manager (DESIGN §4).  On the node's
 * control loop it keeps one certificate per SPIFFE ID of the node's local
 * meshed pods in the certificate store (weft/certstore.h): a key generated
 * here (never sent anywhere), a CSR signed by the controller
 * (POST /v1/certificates), renewal at half-life with jitter, retries with
 * backoff, and the trust bundle from each snapshot. */
#ifndef WEFT_NODE_IDENTITY_H
#define WEFT_NODE_IDENTITY_H

#include <stdbool.h>
#include <time.h>

struct event_base;
struct weft_client;
struct weft_gen;
struct weft_identity;

/* A manager issuing through client (borrowed; must outlive it), keeping
 * issued keys and certificates in <state_dir>/identities (NULL: nowhere) so
 * that a restart while the controller is away keeps the pods' identities.
 * NULL on allocation failure. */
struct weft_identity *weft_identity_new(struct event_base *base,
	    struct weft_client *client, const char *state_dir);
/* Cancels requests in flight, removes its identities from the store. */
void	weft_identity_free(struct weft_identity *im);

/* After each applied generation (g borrowed for the call): take the trust
 * bundle when the snapshot has one, start issuing for new identities,
 * drop the identities no local meshed pod uses any more. */
void	weft_identity_apply(struct weft_identity *im, const struct weft_gen *g);

/* Retry now every identity waiting in backoff (the controller is back). */
void	weft_identity_kick(struct weft_identity *im);

/* True when every wanted identity has an unexpired certificate in the
 * store (vacuously true with no local meshed pods). */
bool	weft_identity_ready(const struct weft_identity *im);

/* Backoff bounds for failed requests, seconds. */
#define WEFT_IDENTITY_BACKOFF_MIN	1
#define WEFT_IDENTITY_BACKOFF_MAX	60

/* When to try next, a pure function (unit-tested).  not_before/not_after:
 * the current certificate's useful life, both 0 when there is none; the
 * caller passes the later of notBefore and the time the certificate
 * arrived, since CAs backdate notBefore for clock skew.  attempt:
 * 0 to schedule the regular renewal, n > 0 after n failed attempts in a
 * row.  rnd: uniform in [0, 1), the jitter.
 *
 *  - attempt 0: half-life, not_before + (not_after - not_before) / 2, moved
 *    by up to +-5% of the lifetime; never before now (an expired or
 *    half-spent certificate renews at once); no certificate: now.
 *  - attempt n: now + a backoff of min(2^(n-1), 60) s, "equal jitter"
 *    (between half of it and all of it, at least 1 s), but never later than
 *    not_after minus a margin (a tenth of the lifetime, at most 5 min) while
 *    that point is still ahead; past it, the plain backoff, so a controller
 *    that keeps refusing is not hammered. */
time_t	weft_identity_next_renewal(time_t not_before, time_t not_after,
	    time_t now, unsigned attempt, double rnd);

#endif
