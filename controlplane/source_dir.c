/* --source dir:PATH: the manifests of one directory, re-read on change.
 *
 * inotify watches the directory itself (editors replace files by rename, so
 * watching files would lose them); events are coalesced by a 100 ms timer
 * that restarts on every event, so a burst of writes costs one reload.  The
 * last good documents of each file are kept, so a file caught half-written
 * or broken by a typo does not take its objects out of the cluster. */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <event2/event.h>
#include <json-c/json.h>

#include "weft/controller.h"
#include "weft/log.h"

#define SOURCE_DIR_DEBOUNCE_USEC	100000

struct source_file {
	char		*name;			/* owned */
	struct weft_manifest_docs docs;		/* last good parse (owned) */
};

struct weft_source_dir {
	char		*dir;			/* owned */
	struct source_file *files;		/* owned, sorted like the dir */
	size_t		 n_files;
	int		 inotify_fd;
	struct event	*ev_inotify;		/* owned */
	struct event	*ev_debounce;		/* owned */
	void		(*cb)(void *);
	void		*cb_arg;
};

struct weft_source_dir *
weft_source_dir_new(const char *dir)
{
	struct weft_source_dir *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	if ((s->dir = strdup(dir)) == NULL) {
		free(s);
		return NULL;
	}
	s->inotify_fd = -1;
	return s;
}

static void
source_files_free(struct source_file *files, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(files[i].name);
		weft_manifest_docs_clear(&files[i].docs);
	}
	free(files);
}

void
weft_source_dir_free(struct weft_source_dir *s)
{
	if (s == NULL)
		return;
	if (s->ev_inotify != NULL)
		event_free(s->ev_inotify);
	if (s->ev_debounce != NULL)
		event_free(s->ev_debounce);
	if (s->inotify_fd != -1)
		close(s->inotify_fd);
	source_files_free(s->files, s->n_files);
	free(s->dir);
	free(s);
}

static struct source_file *
source_file_find(struct weft_source_dir *s, const char *name)
{
	size_t i;

	for (i = 0; i < s->n_files; i++)
		if (strcmp(s->files[i].name, name) == 0)
			return &s->files[i];
	return NULL;
}

/* Append new references to the documents of from to docs. */
static int
docs_copy(struct weft_manifest_docs *docs,
    const struct weft_manifest_docs *from)
{
	struct weft_manifest_docs tmp = { NULL, 0 };
	size_t i;

	if (from->n == 0)
		return 0;
	if ((tmp.docs = calloc(from->n, sizeof(*tmp.docs))) == NULL)
		return -1;
	for (i = 0; i < from->n; i++) {
		if ((tmp.docs[i].file = strdup(from->docs[i].file)) == NULL) {
			weft_manifest_docs_clear(&tmp);
			return -1;
		}
		tmp.docs[i].index = from->docs[i].index;
		tmp.docs[i].obj = json_object_get(from->docs[i].obj);
		tmp.n = i + 1;
	}
	if (weft_manifest_docs_move(docs, &tmp) == -1) {
		weft_manifest_docs_clear(&tmp);
		return -1;
	}
	return 0;
}

int
weft_source_dir_load(struct weft_source_dir *s,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	struct source_file *files = NULL, *old, *f;
	struct weft_manifest_docs out = { NULL, 0 };
	char **names, *path;
	size_t i, n;

	if ((names = weft_manifest_list_dir(s->dir)) == NULL) {
		weft_errors_add(errs, "%s: %s", s->dir, strerror(errno));
		return -1;
	}
	for (n = 0; names[n] != NULL; n++)
		;
	if (n > 0 && (files = calloc(n, sizeof(*files))) == NULL)
		goto oom;
	for (i = 0; i < n; i++) {
		struct weft_manifest_docs tmp = { NULL, 0 };
		int r;

		f = &files[i];
		f->name = names[i];
		names[i] = NULL;
		if (asprintf(&path, "%s/%s", s->dir, f->name) == -1)
			goto oom;
		r = weft_manifest_load_file(path, f->name, &tmp, errs);
		free(path);
		old = source_file_find(s, f->name);
		if (r == -1 && old != NULL && old->docs.n > 0) {
			weft_manifest_docs_clear(&tmp);
			weft_errors_add(errs, "%s: keeping the %zu document(s) "
			    "of its last good version", f->name, old->docs.n);
			f->docs = old->docs;
			old->docs.docs = NULL;
			old->docs.n = 0;
		} else
			f->docs = tmp;
		if (docs_copy(&out, &f->docs) == -1)
			goto oom;
	}
	weft_manifest_names_free(names);
	if (weft_manifest_docs_move(docs, &out) == -1) {
		weft_manifest_docs_clear(&out);
		source_files_free(files, n);
		weft_errors_add(errs, "%s: out of memory", s->dir);
		return -1;
	}
	source_files_free(s->files, s->n_files);
	s->files = files;
	s->n_files = n;
	return 0;
oom:
	for (i = 0; names[i] != NULL || i < n; i++)
		if (i < n)
			free(names[i]);
	free(names);
	source_files_free(files, n);
	weft_manifest_docs_clear(&out);
	weft_errors_add(errs, "%s: out of memory", s->dir);
	return -1;
}

static void
source_dir_debounced(evutil_socket_t fd, short what, void *arg)
{
	struct weft_source_dir *s = arg;

	s->cb(s->cb_arg);
}

static void
source_dir_inotify(evutil_socket_t fd, short what, void *arg)
{
	struct weft_source_dir *s = arg;
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ie;
	struct timeval tv = { 0, SOURCE_DIR_DEBOUNCE_USEC };
	bool relevant = false;
	ssize_t len;
	char *p;

	for (;;) {
		len = read(fd, buf, sizeof(buf));
		if (len == -1 && errno == EINTR)
			continue;
		if (len <= 0)
			break;
		for (p = buf; p < buf + len;
		    p += sizeof(struct inotify_event) + ie->len) {
			ie = (const struct inotify_event *)p;
			if (ie->mask & IN_Q_OVERFLOW)
				relevant = true;
			else if (ie->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				log_warnx("source %s: directory removed or "
				    "moved; keeping the last state", s->dir);
				relevant = true;
			} else if (ie->len > 0 &&
			    weft_manifest_is_manifest_name(ie->name))
				relevant = true;
		}
	}
	if (relevant)
		evtimer_add(s->ev_debounce, &tv);
}

int
weft_source_dir_watch(struct weft_source_dir *s, struct event_base *base,
    void (*cb)(void *), void *arg)
{
	int saved;

	s->cb = cb;
	s->cb_arg = arg;
	if ((s->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1)
		return -1;
	if (inotify_add_watch(s->inotify_fd, s->dir, IN_CLOSE_WRITE |
	    IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE |
	    IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) == -1)
		goto fail;
	s->ev_inotify = event_new(base, s->inotify_fd, EV_READ | EV_PERSIST,
	    source_dir_inotify, s);
	s->ev_debounce = evtimer_new(base, source_dir_debounced, s);
	if (s->ev_inotify == NULL || s->ev_debounce == NULL ||
	    event_add(s->ev_inotify, NULL) == -1) {
		errno = ENOMEM;
		goto fail;
	}
	return 0;
fail:
	saved = errno;
	if (s->ev_inotify != NULL)
		event_free(s->ev_inotify);
	if (s->ev_debounce != NULL)
		event_free(s->ev_debounce);
	s->ev_inotify = s->ev_debounce = NULL;
	close(s->inotify_fd);
	s->inotify_fd = -1;
	errno = saved;
	return -1;
}
