/* --source kubernetes: list and watch the API server, keep a trimmed copy
 * of every object the model reads, and hand them to the model build as
 * documents, like the directory source does.
 *
 * One reflector per resource, as client-go's:
 *
 *   list (limit=500, continue=...) --all pages--> swap the cache, note the
 *   list's resourceVersion --> watch from it (allowWatchBookmarks, a
 *   timeoutSeconds of 5-10 minutes) --> each event updates the cache and
 *   the resourceVersion; bookmarks only move the resourceVersion
 *
 *   the watch ends (server timeout)  -> watch again from there, at once
 *   the connection breaks            -> watch again from there, after backoff
 *   410 Gone (event or status)       -> list again (the history we would
 *                                       need is compacted away)
 *   continue token expired (410)     -> list again from the first page
 *   other errors                     -> backoff (exponential, jittered,
 *                                       200 ms to 30 s), then list again
 *
 * A relist keeps serving the old cache until its last page arrived, then
 * swaps: the model never sees half a list.  Nothing is handed to the
 * controller before every resource was listed once (a partial model would
 * revoke what it does not show yet).
 *
 * SMI kinds are found through discovery (/apis, then /apis/GROUP/VERSION):
 * for each kind the newest version the cluster serves is watched.  Served
 * versions of one kind are views of the same objects (the API server
 * converts), so watching several would only repeat them; the model
 * normalises every version.  Discovery runs again every minute and when a
 * watched SMI resource answers 404, so CRDs installed after the
 * controller are picked up.
 *
 * Objects are trimmed on arrival (weft_kube_trim): a Pod from a real API
 * server is several kilobytes, mostly managedFields and status the model
 * never reads, and json-c multiplies that.  Updates that leave the trimmed
 * copy unchanged (a probe timestamp, a resourceVersion) do not count as
 * changes. */
#include "config.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>

#include "weft/kube.h"
#include "weft/log.h"

#define KUBE_PAGE_SIZE		500
#define KUBE_REQ_TIMEOUT	60	/* seconds of silence on a list */
#define KUBE_WATCH_MIN		300	/* timeoutSeconds: 5 to 10 minutes */
#define KUBE_WATCH_MAX		600
#define KUBE_WATCH_SLACK	30	/* beyond timeoutSeconds: idle limit */
#define KUBE_BACKOFF_MIN_MS	200
#define KUBE_BACKOFF_MAX_MS	30000
#define KUBE_COALESCE_MS	100
#define KUBE_DISCOVERY_PERIOD	60	/* seconds */
#define KUBE_TRIM_DELAY		2	/* seconds of quiet before malloc_trim */

/* --- object cache: key "ns/name" (or "name") -> trimmed object ------------- */

/* Objects are kept as the JSON text of their trimmed copy: json-c spends
 * some 600 bytes on every JSON object (its hash table), ten times the
 * text, and the text is parsed again only when a model is built. */
struct kobj {
	struct kobj	*next;		/* hash chain */
	char		*key;		/* owned */
	char		*text;		/* owned: the trimmed object, JSON */
	size_t		 len;
};

struct kmap {
	struct kobj	**b;		/* owned */
	size_t		 nb;
	size_t		 n;
};

static uint64_t
kmap_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;	/* FNV-1a */

	while (*s != '\0') {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ULL;
	}
	return h;
}

static void
kmap_clear(struct kmap *m)
{
	struct kobj *o, *next;
	size_t i;

	for (i = 0; i < m->nb; i++)
		for (o = m->b[i]; o != NULL; o = next) {
			next = o->next;
			free(o->key);
			free(o->text);
			free(o);
		}
	free(m->b);
	memset(m, 0, sizeof(*m));
}

static struct kobj *
kmap_get(const struct kmap *m, const char *key)
{
	struct kobj *o;

	if (m->nb == 0)
		return NULL;
	for (o = m->b[kmap_hash(key) % m->nb]; o != NULL; o = o->next)
		if (strcmp(o->key, key) == 0)
			return o;
	return NULL;
}

static int
kmap_grow(struct kmap *m)
{
	struct kobj **nb, *o, *next;
	size_t n = m->nb ? m->nb * 2 : 64, i, h;

	if ((nb = calloc(n, sizeof(*nb))) == NULL)
		return -1;
	for (i = 0; i < m->nb; i++)
		for (o = m->b[i]; o != NULL; o = next) {
			next = o->next;
			h = kmap_hash(o->key) % n;
			o->next = nb[h];
			nb[h] = o;
		}
	free(m->b);
	m->b = nb;
	m->nb = n;
	return 0;
}

/* Store obj (reference taken over and released) under key.  Returns 1 if
 * the map changed, 0 if an equal object was there, -1 on allocation
 * failure. */
static int
kmap_put(struct kmap *m, const char *key, struct json_object *obj)
{
	struct kobj *o;
	const char *s;
	size_t h, len;
	char *text;

	s = json_object_to_json_string_length(obj, JSON_C_TO_STRING_PLAIN |
	    JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	text = s != NULL ? strndup(s, len) : NULL;
	json_object_put(obj);
	if (text == NULL)
		return -1;
	if ((o = kmap_get(m, key)) != NULL) {
		if (o->len == len && memcmp(o->text, text, len) == 0) {
			free(text);
			return 0;
		}
		free(o->text);
		o->text = text;
		o->len = len;
		return 1;
	}
	if ((m->n + 1 > m->nb * 2 && kmap_grow(m) == -1) ||
	    (o = calloc(1, sizeof(*o))) == NULL) {
		free(text);
		return -1;
	}
	if ((o->key = strdup(key)) == NULL) {
		free(o);
		free(text);
		return -1;
	}
	o->text = text;
	o->len = len;
	h = kmap_hash(key) % m->nb;
	o->next = m->b[h];
	m->b[h] = o;
	m->n++;
	return 1;
}

/* 1 if key was there (removed), 0 if not. */
static int
kmap_del(struct kmap *m, const char *key)
{
	struct kobj **pp, *o;

	if (m->nb == 0)
		return 0;
	for (pp = &m->b[kmap_hash(key) % m->nb]; (o = *pp) != NULL;
	    pp = &o->next)
		if (strcmp(o->key, key) == 0) {
			*pp = o->next;
			free(o->key);
			free(o->text);
			free(o);
			m->n--;
			return 1;
		}
	return 0;
}

/* Whether a and b hold the same keys with equal objects. */
static bool
kmap_equal(const struct kmap *a, const struct kmap *b)
{
	struct kobj *o, *p;
	size_t i;

	if (a->n != b->n)
		return false;
	for (i = 0; i < a->nb; i++)
		for (o = a->b[i]; o != NULL; o = o->next)
			if ((p = kmap_get(b, o->key)) == NULL ||
			    p->len != o->len ||
			    memcmp(p->text, o->text, o->len) != 0)
				return false;
	return true;
}

/* --- resources ------------------------------------------------------------------ */

struct kres_def {
	const char	*group;		/* "" = core */
	const char	*version;	/* NULL: found by discovery */
	const char	*kind;
	const char	*plural;
	bool		 namespaced;
};

/* Documents come out in this order (then by key). */
static const struct kres_def kres_defs[] = {
	{ "",			"v1",	"Namespace",	  "namespaces",	false },
	{ "",			"v1",	"Node",		  "nodes",	false },
	{ "",			"v1",	"ServiceAccount", "serviceaccounts", true },
	{ "",			"v1",	"Pod",		  "pods",	true },
	{ "",			"v1",	"Service",	  "services",	true },
	{ "discovery.k8s.io",	"v1",	"EndpointSlice",  "endpointslices", true },
	{ "access.smi-spec.io",	NULL,	"TrafficTarget",  "traffictargets", true },
	{ "specs.smi-spec.io",	NULL,	"HTTPRouteGroup", "httproutegroups", true },
	{ "specs.smi-spec.io",	NULL,	"TCPRoute",	  "tcproutes",	true },
	{ "specs.smi-spec.io",	NULL,	"UDPRoute",	  "udproutes",	true },
	{ "split.smi-spec.io",	NULL,	"TrafficSplit",	  "trafficsplits", true },
};
#define KRES_N	(sizeof(kres_defs) / sizeof(kres_defs[0]))

enum kres_next {
	KRES_DO_LIST,
	KRES_DO_WATCH,
};

struct kres {
	struct weft_source_kube *s;
	const struct kres_def *def;
	char		*version;	/* owned; NULL: not served (SMI) */
	char		 api_version[128];
	char		 path[256];	/* the collection, cluster-wide */
	struct kmap	 objs;		/* what the model sees */
	struct kmap	 next;		/* a list in progress */
	char		*cont;		/* owned: continue token */
	char		 rv[128];	/* resourceVersion to watch from */
	bool		 synced;	/* listed at least once (or absent) */
	bool		 listing;
	struct weft_kube_req *req;	/* the list page or watch in flight */
	struct event	*timer;		/* owned: backoff */
	enum kres_next	 after_timer;
	int		 backoff_ms;
	uint64_t	 watch_events;	/* of the current watch */
	bool		 failing;	/* an error was logged */
	/* counters for status and tests */
	uint64_t	 n_lists, n_pages, n_watches, n_relists, n_gone;
	uint64_t	 n_bookmarks, n_events, n_errors, n_expired;
};

/* One discovery request per group version, with its slot. */
struct disc_slot {
	struct weft_source_kube *s;
	size_t		 i;
};

#define KUBE_DISC_MAX	16	/* SMI group versions looked at */

struct weft_source_kube {
	struct weft_kube *k;		/* borrowed */
	struct event_base *base;	/* borrowed */
	struct kres	 res[KRES_N];
	void		(*changed)(void *);
	void		*changed_arg;
	struct event	*ev_changed;	/* owned: coalesces changes */
	struct event	*ev_trim;	/* owned: malloc_trim when quiet */
	bool		 synced;	/* every resource listed once */
	bool		 discovered;	/* discovery succeeded once */
	/* discovery */
	struct event	*ev_discovery;	/* owned */
	struct weft_kube_req *disc_req;	/* GET /apis */
	struct weft_kube_req *disc_gv[KUBE_DISC_MAX]; /* GET /apis/G/V */
	char		*disc_gv_name[KUBE_DISC_MAX]; /* owned: "G/V" */
	struct json_object *disc_gv_body[KUBE_DISC_MAX]; /* owned */
	struct disc_slot disc_slots[KUBE_DISC_MAX];
	int		 watch_max;	/* timeoutSeconds at most */
	size_t		 n_disc_gv, disc_pending;
	int		 disc_backoff_ms;
	uint64_t	 n_discoveries;
};

static void kres_list(struct kres *kr);
static void kres_watch(struct kres *kr);
static void source_discover(struct weft_source_kube *s);

static int
kube_jitter(int ms)
{
	/* half fixed, half random: retries of many reflectors spread out */
	return ms / 2 + (int)(random() % (ms / 2 + 1));
}

static void
source_touch(struct weft_source_kube *s)
{
	struct timeval tv = { 0, KUBE_COALESCE_MS * 1000 };

	if (!s->synced || evtimer_pending(s->ev_changed, NULL))
		return;
	evtimer_add(s->ev_changed, &tv);
}

/* Every resource listed once: the first model can be built. */
static void
source_check_synced(struct weft_source_kube *s)
{
	const struct timeval now = { 0, 0 };
	size_t i;

	if (s->synced || !s->discovered)
		return;
	for (i = 0; i < KRES_N; i++)
		if (!s->res[i].synced)
			return;
	s->synced = true;
	log_info("kubernetes: every resource listed; the model follows "
	    "the watches from now on");
	evtimer_add(s->ev_changed, &now);
}

static void
source_changed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct weft_source_kube *s = arg;
	struct timeval tv = { KUBE_TRIM_DELAY, 0 };

	s->changed(s->changed_arg);
	evtimer_add(s->ev_trim, &tv);
}

/* A model build frees as much as it allocated, in pieces of every size,
 * and list pages are megabytes: once things are quiet, hand what is free
 * back to the kernel instead of carrying the high-water mark (5,000 pods:
 * about 90 MiB at the peak of a build, under 30 MiB after). */
static void
source_trim_cb(evutil_socket_t fd, short what, void *arg)
{
	malloc_trim(0);
}

/* "ns/name" or "name" of an object; NULL when it has no name. */
static const char *
kres_key(const struct kres *kr, struct json_object *obj, char *buf,
    size_t len)
{
	struct json_object *meta, *name, *ns;

	if (!json_object_object_get_ex(obj, "metadata", &meta) ||
	    !json_object_object_get_ex(meta, "name", &name) ||
	    !json_object_is_type(name, json_type_string))
		return NULL;
	if (kr->def->namespaced && json_object_object_get_ex(meta, "namespace",
	    &ns) && json_object_is_type(ns, json_type_string))
		snprintf(buf, len, "%s/%s", json_object_get_string(ns),
		    json_object_get_string(name));
	else
		snprintf(buf, len, "%s", json_object_get_string(name));
	return buf;
}

static const char *
kres_obj_rv(struct json_object *obj)
{
	struct json_object *meta, *rv;

	if (json_object_object_get_ex(obj, "metadata", &meta) &&
	    json_object_object_get_ex(meta, "resourceVersion", &rv) &&
	    json_object_is_type(rv, json_type_string))
		return json_object_get_string(rv);
	return NULL;
}

static void
kres_set_rv(struct kres *kr, const char *rv)
{
	if (rv != NULL && *rv != '\0')
		snprintf(kr->rv, sizeof(kr->rv), "%s", rv);
}

static void
kres_stop(struct kres *kr)
{
	weft_kube_cancel(kr->req);
	kr->req = NULL;
	if (kr->timer != NULL)
		evtimer_del(kr->timer);
	kmap_clear(&kr->next);
	free(kr->cont);
	kr->cont = NULL;
	kr->listing = false;
}

static void
kres_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct kres *kr = arg;

	if (kr->after_timer == KRES_DO_WATCH)
		kres_watch(kr);
	else
		kres_list(kr);
}

/* Try again after the backoff, which doubles each time up to the cap. */
static void
kres_retry(struct kres *kr, enum kres_next what)
{
	struct timeval tv;
	int ms;

	if (kr->backoff_ms == 0)
		kr->backoff_ms = KUBE_BACKOFF_MIN_MS;
	else if ((kr->backoff_ms *= 2) > KUBE_BACKOFF_MAX_MS)
		kr->backoff_ms = KUBE_BACKOFF_MAX_MS;
	ms = kube_jitter(kr->backoff_ms);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	kr->after_timer = what;
	evtimer_add(kr->timer, &tv);
}

static void
kres_fail(struct kres *kr, const char *what, const char *why,
    enum kres_next next)
{
	kr->n_errors++;
	if (!kr->failing || log_debug_enabled())
		log_warnx("kubernetes: %s %s: %s; retrying with backoff",
		    what, kr->path, why);
	kr->failing = true;
	kres_retry(kr, next);
}

static void
kres_ok(struct kres *kr)
{
	if (kr->failing)
		log_info("kubernetes: %s: working again", kr->path);
	kr->failing = false;
	kr->backoff_ms = 0;
}

/* --- list ------------------------------------------------------------------------- */

static void kres_list_done(const struct weft_kube_resp *resp, void *arg);

static void
kres_list(struct kres *kr)
{
	char path[4096], *enc = NULL;

	if (kr->version == NULL)
		return;
	if (!kr->listing) {
		kr->listing = true;
		kr->n_lists++;
		kmap_clear(&kr->next);
	}
	if (kr->cont != NULL && (enc = evhttp_uriencode(kr->cont, -1,
	    0)) == NULL) {
		kres_fail(kr, "list", "out of memory", KRES_DO_LIST);
		return;
	}
	snprintf(path, sizeof(path), "%s?limit=%d%s%s", kr->path,
	    KUBE_PAGE_SIZE, enc ? "&continue=" : "", enc ? enc : "");
	free(enc);
	kr->n_pages++;
	if ((kr->req = weft_kube_request(kr->s->k, "GET", path, NULL, NULL,
	    KUBE_REQ_TIMEOUT, NULL, kres_list_done, kr)) == NULL)
		kres_fail(kr, "list", "out of memory", KRES_DO_LIST);
}

/* The items of a list page into kr->next.  Returns 0 or -1 (OOM). */
static int
kres_list_items(struct kres *kr, struct json_object *items)
{
	struct json_object *t;
	char key[512];
	size_t i, n;

	n = json_object_array_length(items);
	for (i = 0; i < n; i++) {
		struct json_object *it = json_object_array_get_idx(items, i);

		if (kres_key(kr, it, key, sizeof(key)) == NULL)
			continue;
		if ((t = weft_kube_trim(it, kr->api_version,
		    kr->def->kind)) == NULL ||
		    kmap_put(&kr->next, key, t) == -1)
			return -1;
	}
	return 0;
}

static void
kres_list_done(const struct weft_kube_resp *resp, void *arg)
{
	struct kres *kr = arg;
	struct weft_source_kube *s = kr->s;
	struct json_object *items, *meta, *v;
	const char *cont = NULL, *rv = NULL;
	char why[512];
	bool changed;

	kr->req = NULL;
	if (resp->status == 410) {
		/* the continue token outlived the history it points into:
		 * start over with a fresh, consistent list */
		kr->n_expired++;
		log_info("kubernetes: list %s: continue token expired "
		    "(410 Gone); listing again from the first page", kr->path);
		kmap_clear(&kr->next);
		free(kr->cont);
		kr->cont = NULL;
		kr->listing = false;
		if (kr->n_expired % 3 == 0)
			kres_retry(kr, KRES_DO_LIST);
		else
			kres_list(kr);
		return;
	}
	/* 404 of an SMI resource: its CRD or version may be gone; find out
	 * (discovery repoints or stops us) and meanwhile retry as usual */
	if (resp->status == 404 && kr->def->version == NULL)
		source_discover(s);
	if (resp->status != 200 || resp->body == NULL ||
	    !json_object_object_get_ex(resp->body, "items", &items) ||
	    !json_object_is_type(items, json_type_array)) {
		kmap_clear(&kr->next);
		free(kr->cont);
		kr->cont = NULL;
		kr->listing = false;
		kres_fail(kr, "list", resp->status == 200 ? "no items in "
		    "the answer" : weft_kube_resp_why(resp, why, sizeof(why)),
		    KRES_DO_LIST);
		return;
	}
	if (kres_list_items(kr, items) == -1) {
		kmap_clear(&kr->next);
		kr->listing = false;
		kres_fail(kr, "list", "out of memory", KRES_DO_LIST);
		return;
	}
	if (json_object_object_get_ex(resp->body, "metadata", &meta)) {
		if (json_object_object_get_ex(meta, "continue", &v) &&
		    json_object_is_type(v, json_type_string) &&
		    *json_object_get_string(v) != '\0')
			cont = json_object_get_string(v);
		if (json_object_object_get_ex(meta, "resourceVersion", &v) &&
		    json_object_is_type(v, json_type_string))
			rv = json_object_get_string(v);
	}
	free(kr->cont);
	kr->cont = NULL;
	if (cont != NULL) {
		if ((kr->cont = strdup(cont)) == NULL) {
			kmap_clear(&kr->next);
			kr->listing = false;
			kres_fail(kr, "list", "out of memory", KRES_DO_LIST);
			return;
		}
		kres_list(kr);
		return;
	}
	/* the last page: the list is whole */
	kr->listing = false;
	changed = !kmap_equal(&kr->objs, &kr->next);
	kmap_clear(&kr->objs);
	kr->objs = kr->next;
	memset(&kr->next, 0, sizeof(kr->next));
	kr->rv[0] = '\0';
	kres_set_rv(kr, rv);
	kres_ok(kr);
	log_debug("kubernetes: listed %s: %zu object(s) at resourceVersion "
	    "%s%s", kr->path, kr->objs.n, kr->rv, changed ? "" :
	    " (no change)");
	if (!kr->synced) {
		kr->synced = true;
		log_info("kubernetes: %s: %zu object(s)", kr->path, kr->objs.n);
		source_check_synced(s);
	} else if (changed)
		source_touch(s);
	kres_watch(kr);
}

/* --- watch ------------------------------------------------------------------------ */

static void kres_watch_done(const struct weft_kube_resp *resp, void *arg);
static void kres_watch_event(struct json_object *ev, void *arg);

static void
kres_watch(struct kres *kr)
{
	char path[1024];
	int lo, hi, t;

	if (kr->version == NULL)
		return;
	hi = kr->s->watch_max;
	lo = hi >= KUBE_WATCH_MAX ? KUBE_WATCH_MIN : (hi + 1) / 2;
	t = lo + (int)(random() % (hi - lo + 1));
	snprintf(path, sizeof(path), "%s?watch=1&allowWatchBookmarks=true&"
	    "resourceVersion=%s&timeoutSeconds=%d", kr->path, kr->rv, t);
	kr->watch_events = 0;
	kr->n_watches++;
	if ((kr->req = weft_kube_request(kr->s->k, "GET", path, NULL, NULL,
	    t + KUBE_WATCH_SLACK, kres_watch_event, kres_watch_done,
	    kr)) == NULL)
		kres_fail(kr, "watch", "out of memory", KRES_DO_WATCH);
}

/* Start over with a list: the watch cannot go on from kr->rv. */
static void
kres_relist(struct kres *kr, const char *why)
{
	kr->n_relists++;
	log_info("kubernetes: watch %s: %s; listing again", kr->path, why);
	weft_kube_cancel(kr->req);
	kr->req = NULL;
	kres_list(kr);
}

static void
kres_watch_event(struct json_object *ev, void *arg)
{
	struct kres *kr = arg;
	struct json_object *type, *obj, *code, *t;
	const char *ty;
	char key[512], why[300];
	int r;

	if (!json_object_object_get_ex(ev, "type", &type) ||
	    !json_object_is_type(type, json_type_string) ||
	    !json_object_object_get_ex(ev, "object", &obj) ||
	    !json_object_is_type(obj, json_type_object)) {
		log_warnx("kubernetes: watch %s: an event without type or "
		    "object; ignored", kr->path);
		return;
	}
	ty = json_object_get_string(type);
	kr->watch_events++;
	if (strcmp(ty, "BOOKMARK") == 0) {
		kr->n_bookmarks++;
		kres_set_rv(kr, kres_obj_rv(obj));
		return;
	}
	if (strcmp(ty, "ERROR") == 0) {
		struct weft_kube_resp st = { 0, obj, NULL };

		if (json_object_object_get_ex(obj, "code", &code))
			st.status = json_object_get_int(code);
		weft_kube_resp_why(&st, why, sizeof(why));
		if (st.status == 410) {
			kr->n_gone++;
			kres_relist(kr, why);
			return;
		}
		weft_kube_cancel(kr->req);
		kr->req = NULL;
		kres_fail(kr, "watch", why, KRES_DO_LIST);
		return;
	}
	if (kres_key(kr, obj, key, sizeof(key)) == NULL) {
		log_warnx("kubernetes: watch %s: %s event for an object "
		    "without a name; ignored", kr->path, ty);
		return;
	}
	kr->n_events++;
	if (strcmp(ty, "DELETED") == 0) {
		kres_set_rv(kr, kres_obj_rv(obj));
		if (kmap_del(&kr->objs, key) == 1)
			source_touch(kr->s);
		return;
	}
	if (strcmp(ty, "ADDED") != 0 && strcmp(ty, "MODIFIED") != 0) {
		log_warnx("kubernetes: watch %s: unknown event type %s; "
		    "ignored", kr->path, ty);
		return;
	}
	kres_set_rv(kr, kres_obj_rv(obj));
	if ((t = weft_kube_trim(obj, kr->api_version, kr->def->kind)) == NULL ||
	    (r = kmap_put(&kr->objs, key, t)) == -1) {
		/* the cache lost an update: only a relist repairs that */
		weft_kube_cancel(kr->req);
		kr->req = NULL;
		kres_fail(kr, "watch", "out of memory", KRES_DO_LIST);
		return;
	}
	if (r == 1)
		source_touch(kr->s);
}

static void
kres_watch_done(const struct weft_kube_resp *resp, void *arg)
{
	struct kres *kr = arg;
	char why[512];

	kr->req = NULL;
	if (resp->status == 200 && resp->error == NULL) {
		/* timeoutSeconds passed: the normal end of a watch */
		kres_ok(kr);
		kres_watch(kr);
		return;
	}
	if (resp->status == 410) {
		kr->n_gone++;
		kres_relist(kr, "410 Gone");
		return;
	}
	if (resp->status == 404 && kr->def->version == NULL)
		source_discover(kr->s);
	if (resp->status == 0) {
		/* the connection broke: resume from the last version seen;
		 * a watch that had delivered something starts a new
		 * backoff series */
		if (kr->watch_events > 0)
			kr->backoff_ms = 0;
		kres_fail(kr, "watch", weft_kube_resp_why(resp, why,
		    sizeof(why)), KRES_DO_WATCH);
		return;
	}
	kres_fail(kr, "watch", weft_kube_resp_why(resp, why, sizeof(why)),
	    KRES_DO_LIST);
}

/* Point kr at version (NULL: not served) and (re)start it. */
static int
kres_set_version(struct kres *kr, const char *version)
{
	char *v = NULL;

	if (version == NULL && kr->version == NULL)
		return 0;
	if (version != NULL && kr->version != NULL &&
	    strcmp(version, kr->version) == 0)
		return 0;
	if (version != NULL && (v = strdup(version)) == NULL)
		return -1;
	kres_stop(kr);
	free(kr->version);
	kr->version = v;
	kr->rv[0] = '\0';
	if (v == NULL) {
		kr->path[0] = '\0';
		kr->api_version[0] = '\0';
		if (kr->objs.n > 0) {
			kmap_clear(&kr->objs);
			source_touch(kr->s);
		}
		kr->synced = true;
		return 0;
	}
	if (kr->def->group[0] == '\0') {
		snprintf(kr->api_version, sizeof(kr->api_version), "%s", v);
		snprintf(kr->path, sizeof(kr->path), "/api/%s/%s", v,
		    kr->def->plural);
	} else {
		snprintf(kr->api_version, sizeof(kr->api_version), "%s/%s",
		    kr->def->group, v);
		snprintf(kr->path, sizeof(kr->path), "/apis/%s/%s/%s",
		    kr->def->group, v, kr->def->plural);
	}
	/* the old version's objects stay until the new list replaces them */
	kres_list(kr);
	return 0;
}

/* --- discovery --------------------------------------------------------------------- */

static bool
smi_group(const char *g)
{
	size_t i;

	for (i = 0; i < KRES_N; i++)
		if (kres_defs[i].version == NULL &&
		    strcmp(kres_defs[i].group, g) == 0)
			return true;
	return false;
}

static void
disc_reset(struct weft_source_kube *s)
{
	size_t i;

	weft_kube_cancel(s->disc_req);
	s->disc_req = NULL;
	for (i = 0; i < s->n_disc_gv; i++) {
		weft_kube_cancel(s->disc_gv[i]);
		s->disc_gv[i] = NULL;
		free(s->disc_gv_name[i]);
		s->disc_gv_name[i] = NULL;
		json_object_put(s->disc_gv_body[i]);
		s->disc_gv_body[i] = NULL;
	}
	s->n_disc_gv = s->disc_pending = 0;
}

static void
disc_schedule(struct weft_source_kube *s, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(s->ev_discovery, &tv);
}

static void
disc_fail(struct weft_source_kube *s, const char *why)
{
	if (s->disc_backoff_ms == 0)
		s->disc_backoff_ms = KUBE_BACKOFF_MIN_MS;
	else if ((s->disc_backoff_ms *= 2) > KUBE_BACKOFF_MAX_MS)
		s->disc_backoff_ms = KUBE_BACKOFF_MAX_MS;
	if (s->disc_backoff_ms == KUBE_BACKOFF_MIN_MS || log_debug_enabled())
		log_warnx("kubernetes: discovery: %s; retrying with backoff",
		    why);
	disc_reset(s);
	disc_schedule(s, kube_jitter(s->disc_backoff_ms));
}

/* Every group version answered: pick each SMI kind's newest version. */
static void
disc_apply(struct weft_source_kube *s)
{
	struct json_object *resources, *r, *v;
	const char *best, *gv, *ver;
	size_t i, j, k;

	for (i = 0; i < KRES_N; i++) {
		struct kres *kr = &s->res[i];
		char served[256] = "";

		if (kr->def->version != NULL)
			continue;
		best = NULL;
		for (j = 0; j < s->n_disc_gv; j++) {
			gv = s->disc_gv_name[j];
			if (strncmp(gv, kr->def->group,
			    strlen(kr->def->group)) != 0 ||
			    gv[strlen(kr->def->group)] != '/')
				continue;
			ver = gv + strlen(kr->def->group) + 1;
			if (!json_object_object_get_ex(s->disc_gv_body[j],
			    "resources", &resources) ||
			    !json_object_is_type(resources, json_type_array))
				continue;
			for (k = 0; k < json_object_array_length(resources);
			    k++) {
				r = json_object_array_get_idx(resources, k);
				if (!json_object_object_get_ex(r, "name", &v) ||
				    strcmp(json_object_get_string(v),
				    kr->def->plural) != 0)
					continue;
				snprintf(served + strlen(served),
				    sizeof(served) - strlen(served), "%s%s",
				    served[0] ? ", " : "", ver);
				if (best == NULL ||
				    weft_kube_version_cmp(ver, best) > 0)
					best = ver;
			}
		}
		if ((best == NULL) != (kr->version == NULL) ||
		    (best != NULL && strcmp(best, kr->version) != 0) ||
		    !s->discovered) {
			if (best != NULL)
				log_info("kubernetes: %s: watching %s/%s "
				    "(served: %s)", kr->def->kind,
				    kr->def->group, best, served);
			else
				log_info("kubernetes: %s: not served by this "
				    "cluster", kr->def->kind);
		}
		if (kres_set_version(kr, best) == -1)
			log_warnx("kubernetes: %s: out of memory",
			    kr->def->kind);
	}
	if (s->disc_backoff_ms != 0)
		log_info("kubernetes: discovery: working again");
	s->discovered = true;
	s->disc_backoff_ms = 0;
	s->n_discoveries++;
	disc_reset(s);
	disc_schedule(s, KUBE_DISCOVERY_PERIOD * 1000);
	source_check_synced(s);
}

static void
disc_slot_done(const struct weft_kube_resp *resp, void *arg)
{
	struct disc_slot *slot = arg;
	struct weft_source_kube *s = slot->s;
	char why[300], msg[400];

	s->disc_gv[slot->i] = NULL;
	s->disc_pending--;
	if (resp->status == 200 && resp->body != NULL)
		s->disc_gv_body[slot->i] = json_object_get(resp->body);
	else if (resp->status != 404) {
		/* 404: the version went away since /apis; it serves
		 * nothing.  Anything else: try the round again later. */
		snprintf(msg, sizeof(msg), "/apis/%s: %s",
		    s->disc_gv_name[slot->i],
		    weft_kube_resp_why(resp, why, sizeof(why)));
		disc_fail(s, msg);
		return;
	}
	if (s->disc_pending == 0)
		disc_apply(s);
}

static void
disc_apis_done(const struct weft_kube_resp *resp, void *arg)
{
	struct weft_source_kube *s = arg;
	struct json_object *groups, *g, *name, *versions, *v, *ver;
	char why[300], path[300];
	size_t i, j;

	s->disc_req = NULL;
	if (resp->status != 200 || resp->body == NULL ||
	    !json_object_object_get_ex(resp->body, "groups", &groups) ||
	    !json_object_is_type(groups, json_type_array)) {
		disc_fail(s, resp->status == 200 ? "/apis: no groups" :
		    weft_kube_resp_why(resp, why, sizeof(why)));
		return;
	}
	for (i = 0; i < json_object_array_length(groups); i++) {
		g = json_object_array_get_idx(groups, i);
		if (!json_object_object_get_ex(g, "name", &name) ||
		    !smi_group(json_object_get_string(name)) ||
		    !json_object_object_get_ex(g, "versions", &versions) ||
		    !json_object_is_type(versions, json_type_array))
			continue;
		for (j = 0; j < json_object_array_length(versions); j++) {
			v = json_object_array_get_idx(versions, j);
			if (!json_object_object_get_ex(v, "version", &ver) ||
			    !json_object_is_type(ver, json_type_string) ||
			    s->n_disc_gv >= KUBE_DISC_MAX)
				continue;
			if (asprintf(&s->disc_gv_name[s->n_disc_gv], "%s/%s",
			    json_object_get_string(name),
			    json_object_get_string(ver)) == -1) {
				s->disc_gv_name[s->n_disc_gv] = NULL;
				disc_fail(s, "out of memory");
				return;
			}
			s->n_disc_gv++;
		}
	}
	if (s->n_disc_gv == 0) {
		disc_apply(s);
		return;
	}
	/* all slots first, then the requests: a callback never runs
	 * before every request is out (results come from the loop) */
	s->disc_pending = s->n_disc_gv;
	for (i = 0; i < s->n_disc_gv; i++) {
		s->disc_slots[i].s = s;
		s->disc_slots[i].i = i;
		snprintf(path, sizeof(path), "/apis/%s", s->disc_gv_name[i]);
		if ((s->disc_gv[i] = weft_kube_request(s->k, "GET", path,
		    NULL, NULL, KUBE_REQ_TIMEOUT, NULL, disc_slot_done,
		    &s->disc_slots[i])) == NULL) {
			disc_fail(s, "out of memory");
			return;
		}
	}
}

static void
source_discover(struct weft_source_kube *s)
{
	if (s->disc_req != NULL || s->disc_pending > 0)
		return;
	disc_reset(s);
	evtimer_del(s->ev_discovery);
	if ((s->disc_req = weft_kube_request(s->k, "GET", "/apis", NULL, NULL,
	    KUBE_REQ_TIMEOUT, NULL, disc_apis_done, s)) == NULL)
		disc_fail(s, "out of memory");
}

static void
disc_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	source_discover(arg);
}

/* --- the source --------------------------------------------------------------------- */

struct weft_source_kube *
weft_source_kube_new(struct weft_kube *k, struct event_base *base,
    void (*changed)(void *), void *arg)
{
	struct weft_source_kube *s;
	size_t i;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->k = k;
	s->base = base;
	s->changed = changed;
	s->changed_arg = arg;
	s->watch_max = KUBE_WATCH_MAX;
	if ((s->ev_changed = evtimer_new(base, source_changed_cb, s)) == NULL ||
	    (s->ev_trim = evtimer_new(base, source_trim_cb, s)) == NULL ||
	    (s->ev_discovery = evtimer_new(base, disc_timer_cb, s)) == NULL)
		goto fail;
	for (i = 0; i < KRES_N; i++) {
		s->res[i].s = s;
		s->res[i].def = &kres_defs[i];
		if ((s->res[i].timer = evtimer_new(base, kres_timer_cb,
		    &s->res[i])) == NULL)
			goto fail;
	}
	return s;
fail:
	weft_source_kube_free(s);
	return NULL;
}

void
weft_source_kube_start(struct weft_source_kube *s)
{
	size_t i;

	for (i = 0; i < KRES_N; i++)
		if (s->res[i].def->version != NULL &&
		    kres_set_version(&s->res[i], s->res[i].def->version) == -1)
			log_warnx("kubernetes: out of memory");
	source_discover(s);
}

void
weft_source_kube_free(struct weft_source_kube *s)
{
	size_t i;

	if (s == NULL)
		return;
	disc_reset(s);
	for (i = 0; i < KRES_N; i++) {
		struct kres *kr = &s->res[i];

		if (kr->s == NULL)
			continue;
		kres_stop(kr);
		if (kr->timer != NULL)
			event_free(kr->timer);
		kmap_clear(&kr->objs);
		free(kr->version);
	}
	if (s->ev_changed != NULL)
		event_free(s->ev_changed);
	if (s->ev_trim != NULL)
		event_free(s->ev_trim);
	if (s->ev_discovery != NULL)
		event_free(s->ev_discovery);
	free(s);
}

void
weft_source_kube_set_watch_timeout(struct weft_source_kube *s, int seconds)
{
	s->watch_max = seconds < 2 ? 2 : seconds;
}

bool
weft_source_kube_synced(const struct weft_source_kube *s)
{
	return s->synced;
}

static int
kobj_cmp(const void *a, const void *b)
{
	return strcmp((*(struct kobj *const *)a)->key,
	    (*(struct kobj *const *)b)->key);
}

int
weft_source_kube_docs(struct weft_source_kube *s,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	struct weft_manifest_docs out = { NULL, 0 };
	struct kobj **arr = NULL, *o;
	struct json_tokener *tok;
	size_t total = 0, i, j, n;

	for (i = 0; i < KRES_N; i++)
		total += s->res[i].objs.n;
	if (total > 0 && (out.docs = calloc(total, sizeof(*out.docs))) == NULL)
		goto oom;
	for (i = 0; i < KRES_N; i++) {
		struct kres *kr = &s->res[i];

		if (kr->objs.n == 0)
			continue;
		if ((arr = calloc(kr->objs.n, sizeof(*arr))) == NULL)
			goto oom;
		for (j = n = 0; j < kr->objs.nb; j++)
			for (o = kr->objs.b[j]; o != NULL; o = o->next)
				arr[n++] = o;
		qsort(arr, n, sizeof(*arr), kobj_cmp);
		for (j = 0; j < n; j++) {
			struct weft_manifest_doc *d = &out.docs[out.n];

			if (asprintf(&d->file, "kubernetes: %s %s",
			    kr->def->kind, arr[j]->key) == -1) {
				d->file = NULL;
				goto oom;
			}
			d->index = 1;
			/* our own serialisation: it parses back */
			if ((tok = json_tokener_new_ex(64)) == NULL) {
				free(d->file);
				goto oom;
			}
			d->obj = json_tokener_parse_ex(tok, arr[j]->text,
			    (int)arr[j]->len);
			json_tokener_free(tok);
			if (d->obj == NULL) {
				free(d->file);
				goto oom;
			}
			out.n++;
		}
		free(arr);
		arr = NULL;
	}
	if (weft_manifest_docs_move(docs, &out) == -1)
		goto oom;
	return 0;
oom:
	free(arr);
	weft_manifest_docs_clear(&out);
	weft_errors_add(errs, "kubernetes: out of memory");
	return -1;
}

struct json_object *
weft_source_kube_status(const struct weft_source_kube *s)
{
	struct json_object *o, *arr, *r;
	size_t i;

	if ((o = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(o, "server",
	    json_object_new_string(weft_kube_server(s->k)));
	json_object_object_add(o, "synced", json_object_new_boolean(s->synced));
	json_object_object_add(o, "discoveries",
	    json_object_new_int64((int64_t)s->n_discoveries));
	if ((arr = json_object_new_array()) == NULL)
		return o;
	json_object_object_add(o, "resources", arr);
	for (i = 0; i < KRES_N; i++) {
		const struct kres *kr = &s->res[i];

		if ((r = json_object_new_object()) == NULL)
			continue;
		json_object_object_add(r, "kind",
		    json_object_new_string(kr->def->kind));
		json_object_object_add(r, "apiVersion", kr->version ?
		    json_object_new_string(kr->api_version) : NULL);
		json_object_object_add(r, "objects",
		    json_object_new_int64((int64_t)kr->objs.n));
		json_object_object_add(r, "resourceVersion",
		    json_object_new_string(kr->rv));
		json_object_object_add(r, "synced",
		    json_object_new_boolean(kr->synced));
		json_object_object_add(r, "listing",
		    json_object_new_boolean(kr->listing));
		json_object_object_add(r, "lists",
		    json_object_new_int64((int64_t)kr->n_lists));
		json_object_object_add(r, "pages",
		    json_object_new_int64((int64_t)kr->n_pages));
		json_object_object_add(r, "watches",
		    json_object_new_int64((int64_t)kr->n_watches));
		json_object_object_add(r, "relists",
		    json_object_new_int64((int64_t)kr->n_relists));
		json_object_object_add(r, "gone",
		    json_object_new_int64((int64_t)kr->n_gone));
		json_object_object_add(r, "expired",
		    json_object_new_int64((int64_t)kr->n_expired));
		json_object_object_add(r, "bookmarks",
		    json_object_new_int64((int64_t)kr->n_bookmarks));
		json_object_object_add(r, "events",
		    json_object_new_int64((int64_t)kr->n_events));
		json_object_object_add(r, "errors",
		    json_object_new_int64((int64_t)kr->n_errors));
		json_object_array_add(arr, r);
	}
	return o;
}

/* --- trimming -------------------------------------------------------------------- */

/* dst[key] = a new reference to src[key], when present. */
static void
trim_copy(struct json_object *dst, struct json_object *src, const char *key)
{
	struct json_object *v;

	if (src != NULL && json_object_object_get_ex(src, key, &v) &&
	    v != NULL)
		json_object_object_add(dst, key, json_object_get(v));
}

static void
trim_copy_keys(struct json_object *dst, struct json_object *src,
    const char *const *keys)
{
	for (; *keys != NULL; keys++)
		trim_copy(dst, src, *keys);
}

static struct json_object *
trim_meta(struct json_object *meta)
{
	static const char *const keep[] = { "name", "namespace", "uid",
	    "labels", "creationTimestamp", "deletionTimestamp", NULL };
	struct json_object *m, *ann, *na;

	if ((m = json_object_new_object()) == NULL)
		return NULL;
	trim_copy_keys(m, meta, keep);
	if (json_object_object_get_ex(meta, "annotations", &ann) &&
	    json_object_is_type(ann, json_type_object) &&
	    (na = json_object_new_object()) != NULL) {
		json_object_object_foreach(ann, k, v) {
			if (strcmp(k, "kubectl.kubernetes.io/"
			    "last-applied-configuration") == 0)
				continue;
			json_object_object_add(na, k, json_object_get(v));
		}
		if (json_object_object_length(na) > 0)
			json_object_object_add(m, "annotations", na);
		else
			json_object_put(na);
	}
	return m;
}

/* A new object with keys copied from src (NULL: nothing there). */
static struct json_object *
trim_sub(struct json_object *src, const char *const *keys)
{
	struct json_object *o;

	if (src == NULL || !json_object_is_type(src, json_type_object))
		return NULL;
	if ((o = json_object_new_object()) != NULL)
		trim_copy_keys(o, src, keys);
	return o;
}

static struct json_object *
field(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	if (o == NULL || !json_object_object_get_ex(o, key, &v))
		return NULL;
	return v;
}

/* Each element of arr (objects) reduced to keys. */
static struct json_object *
trim_array(struct json_object *arr, const char *const *keys)
{
	struct json_object *out, *e;
	size_t i;

	if (arr == NULL || !json_object_is_type(arr, json_type_array))
		return NULL;
	if ((out = json_object_new_array()) == NULL)
		return NULL;
	for (i = 0; i < json_object_array_length(arr); i++) {
		e = json_object_array_get_idx(arr, i);
		if (json_object_is_type(e, json_type_object))
			json_object_array_add(out, trim_sub(e, keys));
		else
			json_object_array_add(out, json_object_get(e));
	}
	return out;
}

static void
trim_add(struct json_object *o, const char *key, struct json_object *v)
{
	if (v != NULL)
		json_object_object_add(o, key, v);
}

static void
trim_pod(struct json_object *t, struct json_object *obj)
{
	static const char *const spec_keys[] = { "nodeName",
	    "serviceAccountName", "serviceAccount", "hostNetwork", NULL };
	static const char *const container_keys[] = { "name", "ports", NULL };
	static const char *const status_keys[] = { "podIP", "podIPs", "phase",
	    NULL };
	static const char *const cond_keys[] = { "type", "status", NULL };
	struct json_object *spec = field(obj, "spec"), *status, *ts, *tst;

	if ((ts = trim_sub(spec, spec_keys)) != NULL) {
		trim_add(ts, "containers", trim_array(field(spec, "containers"),
		    container_keys));
		json_object_object_add(t, "spec", ts);
	}
	status = field(obj, "status");
	if ((tst = trim_sub(status, status_keys)) != NULL) {
		/* type and status only: probe timestamps are no change */
		trim_add(tst, "conditions", trim_array(field(status,
		    "conditions"), cond_keys));
		json_object_object_add(t, "status", tst);
	}
}

static void
trim_node(struct json_object *t, struct json_object *obj)
{
	static const char *const spec_keys[] = { "podCIDR", "podCIDRs", NULL };
	static const char *const status_keys[] = { "addresses", NULL };

	trim_add(t, "spec", trim_sub(field(obj, "spec"), spec_keys));
	trim_add(t, "status", trim_sub(field(obj, "status"), status_keys));
}

static void
trim_slice(struct json_object *t, struct json_object *obj)
{
	static const char *const ep_keys[] = { "addresses", "conditions",
	    "targetRef", "nodeName", NULL };
	static const char *const top[] = { "addressType", "ports", NULL };

	trim_copy_keys(t, obj, top);
	trim_add(t, "endpoints", trim_array(field(obj, "endpoints"), ep_keys));
}

struct json_object *
weft_kube_trim(struct json_object *obj, const char *api_version,
    const char *kind)
{
	struct json_object *t, *m;

	if ((t = json_object_new_object()) == NULL)
		return NULL;
	json_object_object_add(t, "apiVersion",
	    json_object_new_string(api_version));
	json_object_object_add(t, "kind", json_object_new_string(kind));
	if ((m = trim_meta(field(obj, "metadata"))) == NULL) {
		json_object_put(t);
		return NULL;
	}
	json_object_object_add(t, "metadata", m);
	if (strcmp(kind, "Pod") == 0)
		trim_pod(t, obj);
	else if (strcmp(kind, "Node") == 0)
		trim_node(t, obj);
	else if (strcmp(kind, "EndpointSlice") == 0)
		trim_slice(t, obj);
	else if (strcmp(kind, "Namespace") == 0 ||
	    strcmp(kind, "ServiceAccount") == 0)
		;	/* metadata is all the model reads */
	else if (strcmp(kind, "Service") == 0)
		trim_copy(t, obj, "spec");
	else {
		/* SMI and anything else: every field but status */
		json_object_object_foreach(obj, k, v) {
			if (strcmp(k, "apiVersion") == 0 ||
			    strcmp(k, "kind") == 0 ||
			    strcmp(k, "metadata") == 0 ||
			    strcmp(k, "status") == 0)
				continue;
			json_object_object_add(t, k, json_object_get(v));
		}
	}
	return t;
}
