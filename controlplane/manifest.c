/* Manifest files: YAML (libyaml events) or JSON (json-c) documents into
 * json-c trees, so validation (objects.c) sees one representation.
 *
 * YAML scalars are typed like YAML 1.2's core schema, which is what
 * Kubernetes (sigs.k8s.io/yaml) effectively does for the fields we read:
 * quoted and block scalars are strings; plain scalars are null, booleans,
 * integers or floats when they look like one, strings otherwise.  Anchors
 * are ignored, aliases rejected: nobody writes them in manifests, and
 * expanding them invites billion-laughs inputs. */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>
#include <yaml.h>

#include "weft/manifest.h"

#define MANIFEST_MAX_DEPTH	64

/* --- errors ---------------------------------------------------------------- */

static void
errors_vappend(char ***msgs, size_t *n, size_t *capp, const char *oom,
    const char *fmt, va_list ap)
{
	char *msg = NULL;

	if (vasprintf(&msg, fmt, ap) == -1)
		msg = NULL;
	if (*n == *capp) {
		size_t cap = *capp ? *capp * 2 : 8;
		char **m = reallocarray(*msgs, cap, sizeof(*m));

		if (m == NULL) {
			free(msg);
			return;
		}
		*msgs = m;
		*capp = cap;
	}
	if (msg == NULL)
		msg = strdup(oom);
	if (msg == NULL)
		return;
	(*msgs)[(*n)++] = msg;
}

void
weft_errors_add(struct weft_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vappend(&e->msgs, &e->n, &e->cap,
	    "out of memory while recording an error", fmt, ap);
	va_end(ap);
}

void
weft_errors_warn(struct weft_errors *e, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	errors_vappend(&e->warnings, &e->n_warnings, &e->cap_warnings,
	    "out of memory while recording a warning", fmt, ap);
	va_end(ap);
}

void
weft_errors_clear(struct weft_errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msgs[i]);
	free(e->msgs);
	e->msgs = NULL;
	e->n = e->cap = 0;
	for (i = 0; i < e->n_warnings; i++)
		free(e->warnings[i]);
	free(e->warnings);
	e->warnings = NULL;
	e->n_warnings = e->cap_warnings = 0;
}

/* --- document lists -------------------------------------------------------- */

static int
docs_append(struct weft_manifest_docs *docs, const char *file, unsigned index,
    struct json_object *obj)
{
	struct weft_manifest_doc *d;
	char *f;

	if ((f = strdup(file)) == NULL)
		return -1;
	d = reallocarray(docs->docs, docs->n + 1, sizeof(*d));
	if (d == NULL) {
		free(f);
		return -1;
	}
	docs->docs = d;
	d[docs->n].file = f;
	d[docs->n].index = index;
	d[docs->n].obj = obj;
	docs->n++;
	return 0;
}

int
weft_manifest_docs_move(struct weft_manifest_docs *dst,
    struct weft_manifest_docs *src)
{
	struct weft_manifest_doc *d;

	if (src->n == 0)
		return 0;
	d = reallocarray(dst->docs, dst->n + src->n, sizeof(*d));
	if (d == NULL)
		return -1;
	memcpy(d + dst->n, src->docs, src->n * sizeof(*d));
	dst->docs = d;
	dst->n += src->n;
	free(src->docs);
	src->docs = NULL;
	src->n = 0;
	return 0;
}

void
weft_manifest_docs_clear(struct weft_manifest_docs *docs)
{
	size_t i;

	for (i = 0; i < docs->n; i++) {
		free(docs->docs[i].file);
		json_object_put(docs->docs[i].obj);
	}
	free(docs->docs);
	docs->docs = NULL;
	docs->n = 0;
}

/* --- YAML ------------------------------------------------------------------ */

struct yl {
	yaml_parser_t	 parser;
	const char	*name;
	struct weft_errors *errs;
	bool		 syntax;	/* a parser error ended the stream */
};

static void
yl_syntax_error(struct yl *y)
{
	yaml_parser_t *p = &y->parser;

	y->syntax = true;
	if (p->error == YAML_MEMORY_ERROR) {
		weft_errors_add(y->errs, "%s: out of memory", y->name);
		return;
	}
	if (p->context != NULL)
		weft_errors_add(y->errs, "%s:%zu:%zu: syntax error: %s %s",
		    y->name, p->problem_mark.line + 1,
		    p->problem_mark.column + 1, p->problem ? p->problem : "?",
		    p->context);
	else
		weft_errors_add(y->errs, "%s:%zu:%zu: syntax error: %s",
		    y->name, p->problem_mark.line + 1,
		    p->problem_mark.column + 1,
		    p->problem ? p->problem : "invalid YAML");
}

static void __attribute__((format(printf, 3, 4)))
yl_error(struct yl *y, const yaml_mark_t *mark, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	weft_errors_add(y->errs, "%s:%zu:%zu: %s", y->name, mark->line + 1,
	    mark->column + 1, msg);
}

static bool
all_in(const char *s, size_t len, const char *set)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] == '\0' || strchr(set, s[i]) == NULL)
			return false;
	return true;
}

/* [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )? */
static bool
is_core_float(const char *s)
{
	size_t n;
	bool digits = false;

	if (*s == '-' || *s == '+')
		s++;
	n = strspn(s, "0123456789");
	digits = n > 0;
	s += n;
	if (*s == '.') {
		s++;
		n = strspn(s, "0123456789");
		if (!digits && n == 0)
			return false;
		digits = true;
		s += n;
	}
	if (!digits)
		return false;
	if (*s == 'e' || *s == 'E') {
		s++;
		if (*s == '-' || *s == '+')
			s++;
		n = strspn(s, "0123456789");
		if (n == 0)
			return false;
		s += n;
	}
	return *s == '\0';
}

/* Resolve a plain scalar per the YAML 1.2 core schema.  Sets *out (NULL for
 * null).  Returns 0, or -1 on allocation failure. */
static int
yl_plain_scalar(const char *s, size_t len, struct json_object **out)
{
	const char *p = s;
	char *end;
	long long ll;
	double d;

	*out = NULL;
	if (len == 0 || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 ||
	    strcmp(s, "Null") == 0 || strcmp(s, "NULL") == 0)
		return 0;
	if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 ||
	    strcmp(s, "TRUE") == 0) {
		*out = json_object_new_boolean(1);
		return *out ? 0 : -1;
	}
	if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 ||
	    strcmp(s, "FALSE") == 0) {
		*out = json_object_new_boolean(0);
		return *out ? 0 : -1;
	}
	if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o') &&
	    all_in(s + 2, len - 2, s[1] == 'x' ? "0123456789abcdefABCDEF" :
	    "01234567")) {
		errno = 0;
		ll = strtoll(s + 2, &end, s[1] == 'x' ? 16 : 8);
		if (errno == 0) {
			*out = json_object_new_int64(ll);
			return *out ? 0 : -1;
		}
	}
	if (*p == '-' || *p == '+')
		p++;
	if (all_in(p, len - (size_t)(p - s), "0123456789")) {
		errno = 0;
		ll = strtoll(s, &end, 10);
		if (errno == 0) {
			*out = json_object_new_int64(ll);
			return *out ? 0 : -1;
		}
		/* out of int64 range: a float, as Kubernetes' decoder does */
	}
	if (is_core_float(s)) {
		d = strtod(s, NULL);
		*out = json_object_new_double(d);
		return *out ? 0 : -1;
	}
	if (strcmp(p, ".inf") == 0 || strcmp(p, ".Inf") == 0 ||
	    strcmp(p, ".INF") == 0) {
		d = strtod(s[0] == '-' ? "-inf" : "inf", NULL);
		*out = json_object_new_double(d);
		return *out ? 0 : -1;
	}
	if (strcmp(s, ".nan") == 0 || strcmp(s, ".NaN") == 0 ||
	    strcmp(s, ".NAN") == 0) {
		*out = json_object_new_double(strtod("nan", NULL));
		return *out ? 0 : -1;
	}
	*out = json_object_new_string_len(s, (int)len);
	return *out ? 0 : -1;
}

static int
yl_scalar(struct yl *y, yaml_event_t *ev, struct json_object **out)
{
	const char *val = (const char *)ev->data.scalar.value;
	size_t len = ev->data.scalar.length;
	const char *tag = (const char *)ev->data.scalar.tag;

	*out = NULL;
	if (strlen(val) != len) {
		yl_error(y, &ev->start_mark, "NUL byte in scalar");
		return -1;
	}
	if ((tag != NULL && strcmp(tag, YAML_STR_TAG) == 0) ||
	    ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
		if ((*out = json_object_new_string_len(val, (int)len)) == NULL)
			goto oom;
		return 0;
	}
	if (yl_plain_scalar(val, len, out) == -1)
		goto oom;
	return 0;
oom:
	weft_errors_add(y->errs, "%s: out of memory", y->name);
	return -1;
}

static int yl_node(struct yl *, yaml_event_t *, int, struct json_object **);

/* Parse the next event into ev; on parser error report it. */
static int
yl_next(struct yl *y, yaml_event_t *ev)
{
	if (!yaml_parser_parse(&y->parser, ev)) {
		yl_syntax_error(y);
		return -1;
	}
	return 0;
}

static int
yl_sequence(struct yl *y, int depth, struct json_object **out)
{
	struct json_object *a, *v;
	yaml_event_t ev;

	if ((a = json_object_new_array()) == NULL)
		return -1;
	for (;;) {
		if (yl_next(y, &ev) == -1)
			goto fail;
		if (ev.type == YAML_SEQUENCE_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (yl_node(y, &ev, depth + 1, &v) == -1)
			goto fail;
		if (json_object_array_add(a, v) != 0) {
			json_object_put(v);
			goto fail;
		}
	}
	*out = a;
	return 0;
fail:
	json_object_put(a);
	return -1;
}

static int
yl_mapping(struct yl *y, int depth, struct json_object **out)
{
	struct json_object *m, *v;
	yaml_event_t ev;
	yaml_mark_t mark;
	char *key;

	if ((m = json_object_new_object()) == NULL)
		return -1;
	for (;;) {
		if (yl_next(y, &ev) == -1)
			goto fail;
		if (ev.type == YAML_MAPPING_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_SCALAR_EVENT) {
			yl_error(y, &ev.start_mark, ev.type == YAML_ALIAS_EVENT ?
			    "aliases are not supported" :
			    "complex mapping keys are not supported");
			yaml_event_delete(&ev);
			goto fail;
		}
		mark = ev.start_mark;
		key = strndup((const char *)ev.data.scalar.value,
		    ev.data.scalar.length);
		yaml_event_delete(&ev);
		if (key == NULL)
			goto fail;
		if (json_object_object_get_ex(m, key, NULL)) {
			yl_error(y, &mark, "duplicate key \"%s\"", key);
			free(key);
			goto fail;
		}
		if (yl_next(y, &ev) == -1 || yl_node(y, &ev, depth + 1,
		    &v) == -1) {
			free(key);
			goto fail;
		}
		if (json_object_object_add(m, key, v) != 0) {
			json_object_put(v);
			free(key);
			goto fail;
		}
		free(key);
	}
	*out = m;
	return 0;
fail:
	json_object_put(m);
	return -1;
}

/* Convert the node starting with ev (consumed here) into *out. */
static int
yl_node(struct yl *y, yaml_event_t *ev, int depth, struct json_object **out)
{
	int r;

	*out = NULL;
	if (depth > MANIFEST_MAX_DEPTH) {
		yl_error(y, &ev->start_mark, "nesting deeper than %d levels",
		    MANIFEST_MAX_DEPTH);
		yaml_event_delete(ev);
		return -1;
	}
	switch (ev->type) {
	case YAML_SCALAR_EVENT:
		r = yl_scalar(y, ev, out);
		break;
	case YAML_SEQUENCE_START_EVENT:
		r = yl_sequence(y, depth, out);
		break;
	case YAML_MAPPING_START_EVENT:
		r = yl_mapping(y, depth, out);
		break;
	case YAML_ALIAS_EVENT:
		yl_error(y, &ev->start_mark, "aliases are not supported");
		r = -1;
		break;
	default:
		yl_error(y, &ev->start_mark, "unexpected YAML event");
		r = -1;
		break;
	}
	yaml_event_delete(ev);
	return r;
}

static int
parse_yaml(const char *name, const char *buf, size_t len,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	struct yl y;
	struct json_object *obj;
	yaml_event_t ev;
	unsigned index = 0;
	int rc = 0, r;

	memset(&y, 0, sizeof(y));
	y.name = name;
	y.errs = errs;
	if (!yaml_parser_initialize(&y.parser)) {
		weft_errors_add(errs, "%s: out of memory", name);
		return -1;
	}
	yaml_parser_set_input_string(&y.parser, (const unsigned char *)buf,
	    len);
	for (;;) {
		if (yl_next(&y, &ev) == -1) {
			rc = -1;
			break;
		}
		if (ev.type == YAML_STREAM_END_EVENT) {
			yaml_event_delete(&ev);
			break;
		}
		if (ev.type != YAML_DOCUMENT_START_EVENT) {
			yaml_event_delete(&ev);
			continue;
		}
		yaml_event_delete(&ev);
		index++;
		if (yl_next(&y, &ev) == -1) {
			rc = -1;
			break;
		}
		r = yl_node(&y, &ev, 0, &obj);
		if (r == -1 && y.syntax) {
			rc = -1;
			break;
		}
		/* on a semantic error (alias, duplicate key), skip to the end
		 * of this document and go on with the next */
		for (;;) {
			if (yl_next(&y, &ev) == -1)
				break;
			if (ev.type == YAML_DOCUMENT_END_EVENT) {
				yaml_event_delete(&ev);
				break;
			}
			yaml_event_delete(&ev);
		}
		if (y.syntax) {
			/* the document's end is broken too: drop it */
			json_object_put(obj);
			rc = -1;
			break;
		}
		if (r == 0 && obj != NULL && docs_append(docs, name, index,
		    obj) == -1) {
			json_object_put(obj);
			weft_errors_add(errs, "%s: out of memory", name);
			rc = -1;
			break;
		}
	}
	yaml_parser_delete(&y.parser);
	return rc;
}

/* --- JSON ------------------------------------------------------------------ */

static void
offset_to_linecol(const char *buf, size_t off, size_t *line, size_t *col)
{
	size_t i;

	*line = 1;
	*col = 1;
	for (i = 0; i < off; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else
			(*col)++;
	}
}

static int
parse_json(const char *name, const char *buf, size_t len,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	struct json_tokener *tok;
	struct json_object *obj;
	enum json_tokener_error jerr;
	size_t off = 0, line, col;
	unsigned index = 0;
	int rc = 0;

	if (memchr(buf, '\0', len) != NULL) {
		weft_errors_add(errs, "%s: NUL byte in JSON", name);
		return -1;
	}
	if ((tok = json_tokener_new_ex(MANIFEST_MAX_DEPTH)) == NULL) {
		weft_errors_add(errs, "%s: out of memory", name);
		return -1;
	}
	/* strict, but several documents may follow each other */
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT |
	    JSON_TOKENER_ALLOW_TRAILING_CHARS);
	for (;;) {
		off += strspn(buf + off, " \t\r\n");
		if (off >= len)
			break;
		index++;
		json_tokener_reset(tok);
		obj = json_tokener_parse_ex(tok, buf + off, (int)(len - off));
		jerr = json_tokener_get_error(tok);
		if (jerr != json_tokener_success) {
			offset_to_linecol(buf, off + json_tokener_get_parse_end(
			    tok), &line, &col);
			weft_errors_add(errs, "%s:%zu:%zu: syntax error: %s",
			    name, line, col, jerr == json_tokener_continue ?
			    "unexpected end of file" :
			    json_tokener_error_desc(jerr));
			rc = -1;
			break;
		}
		off += json_tokener_get_parse_end(tok);
		if (obj == NULL)
			continue;	/* a bare null: an empty document */
		if (docs_append(docs, name, index, obj) == -1) {
			json_object_put(obj);
			weft_errors_add(errs, "%s: out of memory", name);
			rc = -1;
			break;
		}
	}
	json_tokener_free(tok);
	return rc;
}

/* --- files and directories -------------------------------------------------- */

static bool
has_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a > b && strcmp(s + a - b, suffix) == 0;
}

int
weft_manifest_parse(const char *name, const char *buf, size_t len,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	if (has_suffix(name, ".json"))
		return parse_json(name, buf, len, docs, errs);
	return parse_yaml(name, buf, len, docs, errs);
}

int
weft_manifest_load_file(const char *path, const char *name,
    struct weft_manifest_docs *docs, struct weft_errors *errs)
{
	struct stat st;
	char *buf = NULL;
	size_t got = 0;
	ssize_t r;
	int fd, rc = -1;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		weft_errors_add(errs, "%s: %s", name, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		weft_errors_add(errs, "%s: %s", name, strerror(errno));
		goto done;
	}
	if (!S_ISREG(st.st_mode)) {
		weft_errors_add(errs, "%s: not a regular file", name);
		goto done;
	}
	if ((size_t)st.st_size > WEFT_MANIFEST_MAX_FILE) {
		weft_errors_add(errs, "%s: larger than %u bytes", name,
		    WEFT_MANIFEST_MAX_FILE);
		goto done;
	}
	if ((buf = malloc((size_t)st.st_size + 1)) == NULL) {
		weft_errors_add(errs, "%s: out of memory", name);
		goto done;
	}
	/* the file may change under us: read what is there, up to the size
	 * seen by fstat */
	while (got < (size_t)st.st_size) {
		r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			weft_errors_add(errs, "%s: %s", name, strerror(errno));
			goto done;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	buf[got] = '\0';
	rc = weft_manifest_parse(name, buf, got, docs, errs);
done:
	free(buf);
	close(fd);
	return rc;
}

bool
weft_manifest_is_manifest_name(const char *name)
{
	if (name[0] == '.')
		return false;
	return has_suffix(name, ".yaml") || has_suffix(name, ".yml") ||
	    has_suffix(name, ".json");
}

static int
names_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
weft_manifest_names_free(char **names)
{
	size_t i;

	if (names == NULL)
		return;
	for (i = 0; names[i] != NULL; i++)
		free(names[i]);
	free(names);
}

char **
weft_manifest_list_dir(const char *dir)
{
	DIR *d;
	struct dirent *de;
	char **names = NULL, **nn;
	size_t n = 0;
	int saved;

	if ((d = opendir(dir)) == NULL)
		return NULL;
	if ((names = calloc(1, sizeof(*names))) == NULL)
		goto fail;
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0)
				goto fail;
			break;
		}
		if (!weft_manifest_is_manifest_name(de->d_name))
			continue;
		if ((nn = reallocarray(names, n + 2, sizeof(*names))) == NULL)
			goto fail;
		names = nn;
		if ((names[n] = strdup(de->d_name)) == NULL)
			goto fail;
		names[++n] = NULL;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), names_cmp);
	return names;
fail:
	saved = errno;
	weft_manifest_names_free(names);
	closedir(d);
	errno = saved;
	return NULL;
}

int
weft_manifest_load_dir(const char *dir, struct weft_manifest_docs *docs,
    struct weft_errors *errs)
{
	char **names, *path;
	size_t i;

	if ((names = weft_manifest_list_dir(dir)) == NULL) {
		weft_errors_add(errs, "%s: %s", dir, strerror(errno));
		return -1;
	}
	for (i = 0; names[i] != NULL; i++) {
		if (asprintf(&path, "%s/%s", dir, names[i]) == -1) {
			weft_errors_add(errs, "%s: out of memory", names[i]);
			continue;
		}
		(void)weft_manifest_load_file(path, names[i], docs, errs);
		free(path);
	}
	weft_manifest_names_free(names);
	return 0;
}
