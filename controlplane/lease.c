/* Leader election on a coordination.k8s.io/v1 Lease, as client-go's
 * leaderelection package does it:
 *
 *   every retry_period: GET the lease
 *     404                       -> create it with us as holder (201: leader;
 *                                  409: someone was faster)
 *     held by another replica,  -> follower
 *       and the record changed
 *       less than `duration`
 *       ago on our clock
 *     free, expired, or ours    -> PUT it back with us as holder and a new
 *                                  renewTime, carrying the resourceVersion
 *                                  we read: 200 leader, 409 someone else
 *                                  updated it first
 *   a leader that has not renewed for renew_deadline steps down (before
 *   `duration` runs out, so two leaders never overlap while clocks run
 *   at the same rate).
 *
 * Expiry is judged by when *we* saw the record change, not by the
 * renewTime written in it: replicas' clocks need not agree, only tick at
 * the same rate.  Releasing on shutdown clears the holder, so a successor
 * takes over at its next attempt instead of after `duration`. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "weft/kube.h"
#include "weft/log.h"

struct weft_lease {
	struct weft_kube *k;		/* borrowed */
	struct event_base *base;	/* borrowed */
	struct weft_lease_config cfg;	/* strings borrowed */
	void		(*cb)(bool, void *);
	void		*arg;
	char		 path[640];	/* the lease */
	char		 coll[512];	/* the namespace's leases */
	struct event	*timer;		/* owned: every retry_period */
	struct weft_kube_req *req;	/* in flight */
	bool		 leader;
	bool		 stopped;
	bool		 failing;	/* an error was logged */
	char		*holder;	/* owned: last seen; NULL: none */
	char		*record;	/* owned: last seen spec, serialised */
	struct timespec	 observed;	/* CLOCK_MONOTONIC when it changed */
	struct timespec	 renewed;	/* our last successful renew */
	struct json_object *last;	/* owned: the lease as last read */
	void		(*release_done)(void *);
	void		*release_arg;
};

static double
lease_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t->tv_sec) +
	    (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

/* Kubernetes MicroTime: RFC 3339 with microseconds, UTC. */
static void
lease_microtime(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	char s[32];

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(s, sizeof(s), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(buf, len, "%s.%06ldZ", s, (long)tv.tv_usec);
}

static void
lease_set_leader(struct weft_lease *l, bool leader, const char *why)
{
	if (l->leader == leader)
		return;
	l->leader = leader;
	if (leader)
		log_info("lease %s/%s: %s is the leader now", l->cfg.namespace,
		    l->cfg.name, l->cfg.identity);
	else
		log_warnx("lease %s/%s: %s is no longer the leader: %s",
		    l->cfg.namespace, l->cfg.name, l->cfg.identity, why);
	if (l->cb != NULL)
		l->cb(leader, l->arg);
}

static void
lease_set_holder(struct weft_lease *l, const char *holder)
{
	if (holder != NULL && *holder == '\0')
		holder = NULL;
	if ((holder == NULL && l->holder == NULL) || (holder != NULL &&
	    l->holder != NULL && strcmp(holder, l->holder) == 0))
		return;
	if (holder != NULL && strcmp(holder, l->cfg.identity) != 0)
		log_info("lease %s/%s: held by %s", l->cfg.namespace,
		    l->cfg.name, holder);
	free(l->holder);
	l->holder = holder ? strdup(holder) : NULL;
}

static const char *
lease_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_string))
		return json_object_get_string(v);
	return NULL;
}

static int64_t
lease_int(struct json_object *o, const char *key, int64_t def)
{
	struct json_object *v;

	if (o != NULL && json_object_object_get_ex(o, key, &v) &&
	    json_object_is_type(v, json_type_int))
		return json_object_get_int64(v);
	return def;
}

/* A lease spec naming us (or nobody, release) as holder, building on the
 * spec last read (prev, may be NULL). */
static struct json_object *
lease_spec(struct weft_lease *l, struct json_object *prev, bool release)
{
	struct json_object *spec;
	const char *holder = lease_str(prev, "holderIdentity");
	const char *acq = lease_str(prev, "acquireTime");
	int64_t transitions = lease_int(prev, "leaseTransitions", 0);
	bool ours = holder != NULL && strcmp(holder, l->cfg.identity) == 0;
	char now[40];

	lease_microtime(now, sizeof(now));
	if ((spec = json_object_new_object()) == NULL)
		return NULL;
	if (release) {
		json_object_object_add(spec, "leaseDurationSeconds",
		    json_object_new_int(1));
		json_object_object_add(spec, "acquireTime",
		    json_object_new_string(now));
	} else {
		json_object_object_add(spec, "holderIdentity",
		    json_object_new_string(l->cfg.identity));
		json_object_object_add(spec, "leaseDurationSeconds",
		    json_object_new_int(l->cfg.duration));
		json_object_object_add(spec, "acquireTime",
		    json_object_new_string(ours && acq ? acq : now));
		if (!ours && prev != NULL && holder != NULL)
			transitions++;
	}
	json_object_object_add(spec, "renewTime", json_object_new_string(now));
	json_object_object_add(spec, "leaseTransitions",
	    json_object_new_int64(transitions));
	return spec;
}

static void lease_got(const struct weft_kube_resp *resp, void *arg);
static void lease_put_done(const struct weft_kube_resp *resp, void *arg);

/* A leader that could not renew in time steps down, whatever the
 * requests in flight may still bring. */
static void
lease_check_deadline(struct weft_lease *l)
{
	char why[128];

	if (l->leader && lease_since(&l->renewed) > l->cfg.renew_deadline) {
		snprintf(why, sizeof(why), "not renewed for %d s",
		    l->cfg.renew_deadline);
		lease_set_leader(l, false, why);
	}
}

static void
lease_tick(evutil_socket_t fd, short what, void *arg)
{
	struct weft_lease *l = arg;
	struct timeval tv = { l->cfg.retry_period, 0 };

	if (l->stopped)
		return;
	evtimer_add(l->timer, &tv);
	lease_check_deadline(l);
	if (l->req != NULL)
		return;
	if ((l->req = weft_kube_request(l->k, "GET", l->path, NULL, NULL,
	    l->cfg.retry_period + 2, NULL, lease_got, l)) == NULL)
		log_warnx("lease: out of memory");
}

/* PUT (update, with resourceVersion) or POST (create) the lease. */
static void
lease_write(struct weft_lease *l, struct json_object *current, bool release,
    weft_kube_done_cb done)
{
	struct json_object *o, *meta, *spec, *prev = NULL;
	const char *rv = NULL;

	if (current != NULL) {
		json_object_object_get_ex(current, "spec", &prev);
		if (json_object_object_get_ex(current, "metadata", &meta))
			rv = lease_str(meta, "resourceVersion");
	}
	o = json_object_new_object();
	meta = json_object_new_object();
	spec = lease_spec(l, prev, release);
	if (o == NULL || meta == NULL || spec == NULL) {
		json_object_put(o);
		json_object_put(meta);
		json_object_put(spec);
		log_warnx("lease: out of memory");
		return;
	}
	json_object_object_add(o, "apiVersion",
	    json_object_new_string("coordination.k8s.io/v1"));
	json_object_object_add(o, "kind", json_object_new_string("Lease"));
	json_object_object_add(meta, "name",
	    json_object_new_string(l->cfg.name));
	json_object_object_add(meta, "namespace",
	    json_object_new_string(l->cfg.namespace));
	if (rv != NULL)
		json_object_object_add(meta, "resourceVersion",
		    json_object_new_string(rv));
	json_object_object_add(o, "metadata", meta);
	json_object_object_add(o, "spec", spec);
	l->req = weft_kube_request(l->k, current ? "PUT" : "POST",
	    current ? l->path : l->coll, "application/json",
	    json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
	    l->cfg.retry_period + 2, NULL, done, l);
	if (l->req == NULL)
		log_warnx("lease: out of memory");
	json_object_put(o);
}

/* Note the record read; a change restarts the expiry clock. */
static void
lease_observe(struct weft_lease *l, struct json_object *lease)
{
	struct json_object *spec = NULL;
	const char *rec;

	json_object_object_get_ex(lease, "spec", &spec);
	rec = spec ? json_object_to_json_string_ext(spec,
	    JSON_C_TO_STRING_PLAIN) : "";
	if (l->record == NULL || strcmp(l->record, rec) != 0) {
		free(l->record);
		l->record = strdup(rec);
		clock_gettime(CLOCK_MONOTONIC, &l->observed);
	}
	lease_set_holder(l, lease_str(spec, "holderIdentity"));
	json_object_put(l->last);
	l->last = json_object_get(lease);
}

static void
lease_got(const struct weft_kube_resp *resp, void *arg)
{
	struct weft_lease *l = arg;
	struct json_object *spec = NULL;
	const char *holder;
	int64_t dur;
	char why[300];

	l->req = NULL;
	if (l->stopped)
		return;
	if (resp->status == 404) {
		lease_write(l, NULL, false, lease_put_done);
		return;
	}
	if (resp->status != 200 || resp->body == NULL) {
		if (!l->failing || log_debug_enabled())
			log_warnx("lease %s/%s: %s", l->cfg.namespace,
			    l->cfg.name, weft_kube_resp_why(resp, why,
			    sizeof(why)));
		l->failing = true;
		lease_check_deadline(l);
		return;
	}
	if (l->failing)
		log_info("lease %s/%s: readable again", l->cfg.namespace,
		    l->cfg.name);
	l->failing = false;
	lease_observe(l, resp->body);
	json_object_object_get_ex(resp->body, "spec", &spec);
	holder = lease_str(spec, "holderIdentity");
	dur = lease_int(spec, "leaseDurationSeconds", l->cfg.duration);
	if (holder != NULL && *holder != '\0' &&
	    strcmp(holder, l->cfg.identity) != 0 &&
	    lease_since(&l->observed) < (double)dur) {
		lease_set_leader(l, false, "another replica holds the lease");
		return;
	}
	lease_write(l, resp->body, false, lease_put_done);
}

static void
lease_put_done(const struct weft_kube_resp *resp, void *arg)
{
	struct weft_lease *l = arg;
	char why[300];

	l->req = NULL;
	if (l->stopped)
		return;
	if ((resp->status == 200 || resp->status == 201) &&
	    resp->body != NULL) {
		lease_observe(l, resp->body);
		clock_gettime(CLOCK_MONOTONIC, &l->renewed);
		lease_set_leader(l, true, NULL);
		return;
	}
	if (resp->status == 409)
		log_info("lease %s/%s: conflict: another replica wrote it "
		    "first", l->cfg.namespace, l->cfg.name);
	else
		log_warnx("lease %s/%s: %s", l->cfg.namespace, l->cfg.name,
		    weft_kube_resp_why(resp, why, sizeof(why)));
	lease_check_deadline(l);
}

struct weft_lease *
weft_lease_new(struct weft_kube *k, struct event_base *base,
    const struct weft_lease_config *cfg, void (*cb)(bool, void *),
    void *arg)
{
	struct weft_lease *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->k = k;
	l->base = base;
	l->cfg = *cfg;
	l->cb = cb;
	l->arg = arg;
	snprintf(l->coll, sizeof(l->coll),
	    "/apis/coordination.k8s.io/v1/namespaces/%s/leases",
	    cfg->namespace);
	snprintf(l->path, sizeof(l->path), "%s/%s", l->coll, cfg->name);
	if ((l->timer = evtimer_new(base, lease_tick, l)) == NULL) {
		free(l);
		return NULL;
	}
	return l;
}

void
weft_lease_start(struct weft_lease *l)
{
	const struct timeval now = { 0, 0 };

	log_info("lease %s/%s: candidate %s (duration %d s, renew deadline "
	    "%d s, retry every %d s)", l->cfg.namespace, l->cfg.name,
	    l->cfg.identity, l->cfg.duration, l->cfg.renew_deadline,
	    l->cfg.retry_period);
	evtimer_add(l->timer, &now);
}

bool
weft_lease_leader(const struct weft_lease *l)
{
	return l != NULL && l->leader;
}

const char *
weft_lease_holder(const struct weft_lease *l)
{
	return l != NULL ? l->holder : NULL;
}

static void
lease_release_done(const struct weft_kube_resp *resp, void *arg)
{
	struct weft_lease *l = arg;
	char why[300];

	l->req = NULL;
	if (resp->status == 200)
		log_info("lease %s/%s: released", l->cfg.namespace,
		    l->cfg.name);
	else
		log_warnx("lease %s/%s: release failed: %s", l->cfg.namespace,
		    l->cfg.name, weft_kube_resp_why(resp, why, sizeof(why)));
	if (l->release_done != NULL)
		l->release_done(l->release_arg);
}

void
weft_lease_release(struct weft_lease *l, void (*done)(void *), void *arg)
{
	bool was = l->leader;

	l->stopped = true;
	evtimer_del(l->timer);
	weft_kube_cancel(l->req);
	l->req = NULL;
	l->release_done = done;
	l->release_arg = arg;
	if (was && l->last != NULL) {
		lease_set_leader(l, false, "shutting down");
		lease_write(l, l->last, true, lease_release_done);
		if (l->req != NULL)
			return;
	}
	if (done != NULL)
		done(arg);
}

void
weft_lease_free(struct weft_lease *l)
{
	if (l == NULL)
		return;
	weft_kube_cancel(l->req);
	if (l->timer != NULL)
		event_free(l->timer);
	free(l->holder);
	free(l->record);
	json_object_put(l->last);
	free(l);
}
