/* RE2-syntax regular expressions on PCRE2 (SPEC A-3, §4.1).
 *
 * A pattern is first walked by a small scanner that knows RE2's grammar: it
 * rejects what RE2 lacks (PCRE2 would accept it with a meaning Go and Envoy
 * do not have) and rewrites the few constructs both accept with different
 * meanings, then the rewritten text is compiled by PCRE2:
 *   - \v is a vertical tab in RE2 but "any vertical space" in PCRE2: \x{0b};
 *   - \ooo octal escapes (\12 is octal in RE2, a back-reference in PCRE2):
 *     \x{..};
 *   - a '{' that does not start a valid RE2 repetition is a literal in RE2;
 *     PCRE2 10.43 reads "{,n}" as a repetition, so it is written "\{";
 *   - \Q...\E is written out as escaped literals;
 *   - '$' without (?m) matches only at the very end in RE2
 *     (PCRE2_DOLLAR_ENDONLY).
 * Known remaining difference: RE2's \s is [\t\n\f\r ], PCRE2's also has \x0b.
 *
 * RE2 reads patterns and subjects as UTF-8 and \d, \w, \s, \b stay ASCII:
 * PCRE2_UTF without PCRE2_UCP.  Invalid UTF-8 in a subject (raw bytes in a
 * path) must not turn into a match error, so PCRE2_MATCH_INVALID_UTF: such
 * bytes simply match no pattern item, as in RE2.
 *
 * Matching is fail-closed: hitting a limit (or any PCRE2 error) is no match,
 * and is counted.  Per-thread match data, match context and JIT stack are
 * created on a thread's first match and reused, so matching allocates nothing
 * after that. */
#include "config.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "weft/regex.h"

/* RE2's limit on {n,m} counts. */
#define RE_MAX_REPEAT		1000
/* Longer patterns are a mistake or an attack: routes are short. */
#define RE_MAX_PATTERN		8192
/* Backtracking budget per match.  A linear scan of an 8 KiB path costs a
 * few thousand steps; catastrophic patterns ((a+)+b) hit this within a few
 * milliseconds on the JIT instead of running for minutes. */
#define RE_MATCH_LIMIT		1000000
#define RE_DEPTH_LIMIT		100000
#define RE_HEAP_LIMIT_KIB	8192
#define RE_JIT_STACK_START	(32 * 1024)
#define RE_JIT_STACK_MAX	(512 * 1024)

struct weft_re {
	pcre2_code		*code;
};

static uint64_t re_limit_hits;

/* --- RE2 syntax walk ------------------------------------------------------- */

struct re_scan {
	const char	*pat;
	size_t		 len;
	size_t		 i;
	char		*out;		/* rewritten pattern, NUL-terminated */
	size_t		*map;		/* out offset -> pattern offset */
	size_t		 olen, ocap;
	char		*err;
	size_t		 errlen;
	int		 nomem;
};

static int __attribute__((format(printf, 3, 4)))
re_fail(struct re_scan *sc, size_t off, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (sc->errlen > 0)
		snprintf(sc->err, sc->errlen, "offset %zu: %s", off, msg);
	return -1;
}

/* Append len bytes that stand for the pattern text at src. */
static int
re_emit(struct re_scan *sc, const char *s, size_t len, size_t src)
{
	size_t ncap, k;
	char *nout;
	size_t *nmap;

	if (sc->olen + len + 1 > sc->ocap) {
		ncap = (sc->olen + len + 1) * 2;
		if ((nout = realloc(sc->out, ncap)) == NULL) {
			sc->nomem = 1;
			return -1;
		}
		sc->out = nout;
		if ((nmap = reallocarray(sc->map, ncap, sizeof(*nmap))) ==
		    NULL) {
			sc->nomem = 1;
			return -1;
		}
		sc->map = nmap;
		sc->ocap = ncap;
	}
	for (k = 0; k < len; k++) {
		sc->out[sc->olen] = s[k];
		sc->map[sc->olen++] = src;
	}
	sc->out[sc->olen] = '\0';
	return 0;
}

static int
re_emit_cp(struct re_scan *sc, unsigned long cp, size_t src)
{
	char buf[16];

	snprintf(buf, sizeof(buf), "\\x{%lx}", cp);
	return re_emit(sc, buf, strlen(buf), src);
}

static int
re_isdigit(int c)
{
	return c >= '0' && c <= '9';
}

static int
re_isxdigit(int c)
{
	return re_isdigit(c) || (c >= 'a' && c <= 'f') ||
	    (c >= 'A' && c <= 'F');
}

static int
re_isword(int c)
{
	return re_isdigit(c) || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z') || c == '_';
}

/* ASCII punctuation: RE2 lets any of it be escaped to stand for itself. */
static int
re_ispunct(int c)
{
	return c > 0x20 && c < 0x7f && !re_isword(c);
}

/* Length of a valid RE2 repetition "{n}", "{n,}" or "{n,m}" at p[0] == '{',
 * with its bounds; 0 if it is not one (then '{' is a literal). */
static size_t
re_repeat(const char *p, size_t len, long *lo, long *hi)
{
	size_t i = 1;
	long n = 0, m;

	if (i >= len || !re_isdigit(p[i]))
		return 0;
	while (i < len && re_isdigit(p[i])) {
		if (n <= 100000)
			n = n * 10 + (p[i] - '0');
		i++;
	}
	m = n;
	if (i < len && p[i] == ',') {
		i++;
		m = -1;
		if (i < len && re_isdigit(p[i])) {
			m = 0;
			while (i < len && re_isdigit(p[i])) {
				if (m <= 100000)
					m = m * 10 + (p[i] - '0');
				i++;
			}
		}
	}
	if (i >= len || p[i] != '}')
		return 0;
	*lo = n;
	*hi = m;
	return i + 1;
}

/* The reason RE2 gives no meaning to "\c", or NULL if c may follow '\'
 * (the caller handles those). */
static const char *
re_bad_escape(int c)
{
	switch (c) {
	case 'k': case 'g':
		return "back-references are not RE2 syntax";
	case 'C':
		return "\\C (single code unit) is not RE2 syntax";
	case 'K':
		return "\\K (match start reset) is not RE2 syntax";
	case 'G':
		return "\\G is not RE2 syntax";
	case 'Z':
		return "\\Z is not RE2 syntax (use \\z)";
	case 'E':
		return "\\E without \\Q is not RE2 syntax";
	default:
		return NULL;
	}
}

/* One escape at sc->i (which points at the '\'); inclass: inside [...]. */
static int
re_escape(struct re_scan *sc, int inclass)
{
	const char *p = sc->pat;
	size_t start = sc->i, i = sc->i + 1, j;
	unsigned long cp;
	const char *why;
	int c;

	if (i >= sc->len)
		return re_fail(sc, start, "trailing backslash");
	c = (unsigned char)p[i];
	if (c >= '1' && c <= '9' && !(c <= '7' && i + 1 < sc->len &&
	    p[i + 1] >= '0' && p[i + 1] <= '7'))
		return re_fail(sc, start, "back-references are not RE2 syntax");
	if (c >= '0' && c <= '7') {
		/* RE2 octal: \0 plus up to two digits, or \[1-7] plus one or
		 * two digits. */
		cp = 0;
		for (j = i; j < sc->len && j < i + 3 && p[j] >= '0' &&
		    p[j] <= '7'; j++)
			cp = cp * 8 + (unsigned long)(p[j] - '0');
		sc->i = j;
		return re_emit_cp(sc, cp, start);
	}
	switch (c) {
	case 'a': case 'f': case 't': case 'n': case 'r':
	case 'd': case 'D': case 's': case 'S': case 'w': case 'W':
		sc->i = i + 1;
		return re_emit(sc, p + start, 2, start);
	case 'v':
		sc->i = i + 1;
		return re_emit_cp(sc, 0x0b, start);
	case 'b': case 'B': case 'A': case 'z':
		if (inclass)
			return re_fail(sc, start, "\\%c inside a character "
			    "class is not RE2 syntax", c);
		sc->i = i + 1;
		return re_emit(sc, p + start, 2, start);
	case 'x':
		i++;
		if (i < sc->len && p[i] == '{') {
			cp = 0;
			for (j = i + 1; j < sc->len && re_isxdigit(p[j]); j++) {
				cp = cp * 16 + (unsigned long)(re_isdigit(p[j]) ?
				    p[j] - '0' : (p[j] | 0x20) - 'a' + 10);
				if (cp > 0x10ffff)
					break;
			}
			if (j == i + 1 || j >= sc->len || p[j] != '}' ||
			    cp > 0x10ffff)
				return re_fail(sc, start,
				    "invalid escape \\x{...}");
			sc->i = j + 1;
		} else {
			if (i + 1 >= sc->len || !re_isxdigit(p[i]) ||
			    !re_isxdigit(p[i + 1]))
				return re_fail(sc, start, "\\x needs two hex "
				    "digits or \\x{...}");
			sc->i = i + 2;
		}
		return re_emit(sc, p + start, sc->i - start, start);
	case 'p': case 'P':
		i++;
		if (i < sc->len && p[i] == '{') {
			for (j = i + 1; j < sc->len && p[j] != '}'; j++)
				if (!re_isword(p[j]) && p[j] != '^')
					break;
			if (j >= sc->len || p[j] != '}' || j == i + 1)
				return re_fail(sc, start,
				    "invalid Unicode class \\%c{...}", c);
			sc->i = j + 1;
		} else {
			if (i >= sc->len || !re_isword(p[i]))
				return re_fail(sc, start,
				    "invalid Unicode class \\%c", c);
			sc->i = i + 1;
		}
		return re_emit(sc, p + start, sc->i - start, start);
	case 'Q':
		if (inclass)
			return re_fail(sc, start, "\\Q inside a character "
			    "class is not RE2 syntax");
		/* Literal text up to \E or the end, written as escapes so no
		 * PCRE2 reading of \Q can differ. */
		for (j = i + 1; j < sc->len; j++) {
			if (p[j] == '\\' && j + 1 < sc->len && p[j + 1] == 'E') {
				j += 2;
				break;
			}
			if (re_ispunct((unsigned char)p[j]) &&
			    re_emit(sc, "\\", 1, j) == -1)
				return -1;
			if (re_emit(sc, p + j, 1, j) == -1)
				return -1;
		}
		sc->i = j;
		return 0;
	}
	if ((why = re_bad_escape(c)) != NULL)
		return re_fail(sc, start, "%s", why);
	if (re_ispunct(c)) {
		sc->i = i + 1;
		return re_emit(sc, p + start, 2, start);
	}
	if (c < 0x20 || c >= 0x7f)
		return re_fail(sc, start, "invalid escape sequence");
	return re_fail(sc, start, "\\%c is not RE2 syntax", c);
}

/* A character class at sc->i == '['. */
static int
re_class(struct re_scan *sc)
{
	const char *p = sc->pat;
	size_t start = sc->i, i = sc->i + 1, j;

	if (re_emit(sc, "[", 1, start) == -1)
		return -1;
	if (i < sc->len && p[i] == '^') {
		if (re_emit(sc, "^", 1, i) == -1)
			return -1;
		i++;
	}
	if (i < sc->len && p[i] == ']') {
		if (re_emit(sc, "\\]", 2, i) == -1)
			return -1;
		i++;
	}
	while (i < sc->len && p[i] != ']') {
		if (p[i] == '[' && i + 1 < sc->len && p[i + 1] == ':') {
			/* [:name:] or [:^name:]; PCRE2 checks the name
			 * against the same list as RE2. */
			for (j = i + 2; j < sc->len && (re_isword(p[j]) ||
			    p[j] == '^'); j++)
				;
			if (j + 1 < sc->len && p[j] == ':' && p[j + 1] == ']') {
				if (re_emit(sc, p + i, j + 2 - i, i) == -1)
					return -1;
				i = j + 2;
				continue;
			}
		}
		if (p[i] == '[') {
			/* A literal in RE2; PCRE2 reads [. and [= specially. */
			if (re_emit(sc, "\\[", 2, i) == -1)
				return -1;
			i++;
			continue;
		}
		if (p[i] == '\\') {
			sc->i = i;
			if (re_escape(sc, 1) == -1)
				return -1;
			i = sc->i;
			continue;
		}
		if (re_emit(sc, p + i, 1, i) == -1)
			return -1;
		i++;
	}
	if (i >= sc->len)
		return re_fail(sc, start, "missing closing ]");
	sc->i = i + 1;
	return re_emit(sc, "]", 1, i);
}

/* A group opening (or flag setting) at sc->i == '('; counts open groups in
 * *depth. */
static int
re_group(struct re_scan *sc, int *depth)
{
	const char *p = sc->pat;
	size_t start = sc->i, i = sc->i + 1, j;
	int neg, nflags;

	if (i < sc->len && p[i] == '*')
		return re_fail(sc, start, "(* verbs are not RE2 syntax");
	if (i >= sc->len || p[i] != '?') {
		(*depth)++;
		sc->i = i;
		return re_emit(sc, "(", 1, start);
	}
	i++;
	if (i >= sc->len)
		return re_fail(sc, start, "missing closing )");
	switch (p[i]) {
	case '=': case '!':
		return re_fail(sc, start,
		    "look-ahead assertions are not RE2 syntax");
	case '<':
		if (i + 1 < sc->len && (p[i + 1] == '=' || p[i + 1] == '!'))
			return re_fail(sc, start,
			    "look-behind assertions are not RE2 syntax");
		j = i + 1;
		goto named;
	case 'P':
		if (i + 1 < sc->len && p[i + 1] == '=')
			return re_fail(sc, start,
			    "back-references are not RE2 syntax");
		if (i + 1 < sc->len && p[i + 1] == '>')
			return re_fail(sc, start, "recursion is not RE2 syntax");
		if (i + 1 >= sc->len || p[i + 1] != '<')
			return re_fail(sc, start, "invalid named capture group");
		j = i + 2;
		goto named;
	case '>':
		return re_fail(sc, start, "atomic groups are not RE2 syntax");
	case '|':
		return re_fail(sc, start, "branch reset groups are not RE2 "
		    "syntax");
	case '#':
		return re_fail(sc, start, "comments are not RE2 syntax");
	case '(':
		return re_fail(sc, start, "conditionals are not RE2 syntax");
	case 'C':
		return re_fail(sc, start, "callouts are not RE2 syntax");
	case 'R': case '&': case '+':
	case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return re_fail(sc, start, "recursion is not RE2 syntax");
	case '-':
		if (i + 1 < sc->len && re_isdigit(p[i + 1]))
			return re_fail(sc, start, "recursion is not RE2 syntax");
		break;
	case '\'':
		return re_fail(sc, start, "(?'name' groups are not RE2 syntax "
		    "(use (?P<name>...))");
	}
	/* Flags: [imsU]*(-[imsU]+)? then ')' or ':'. */
	neg = 0;
	nflags = 0;
	for (j = i; j < sc->len; j++) {
		if (p[j] == 'i' || p[j] == 'm' || p[j] == 's' || p[j] == 'U') {
			nflags++;
			continue;
		}
		if (p[j] == '-') {
			if (neg)
				return re_fail(sc, start, "invalid flags");
			neg = 1;
			nflags = 0;
			continue;
		}
		if (p[j] == ')' || p[j] == ':')
			break;
		return re_fail(sc, j, "flag '%c' is not RE2 syntax", p[j]);
	}
	if (j >= sc->len)
		return re_fail(sc, start, "missing closing )");
	if (nflags == 0 && (neg || p[j] == ')'))
		return re_fail(sc, start, "invalid flags");
	if (p[j] == ':')
		(*depth)++;
	sc->i = j + 1;
	return re_emit(sc, p + start, j + 1 - start, start);

named:
	/* RE2 names: a letter or '_' then word characters. */
	for (i = j; i < sc->len && re_isword(p[i]); i++)
		;
	if (i == j || re_isdigit(p[j]) || i >= sc->len || p[i] != '>')
		return re_fail(sc, start, "invalid named capture group");
	(*depth)++;
	if (re_emit(sc, "(?P<", 4, start) == -1)
		return -1;
	sc->i = i + 1;
	return re_emit(sc, p + j, i + 1 - j, j);
}

/* Walk the whole pattern; 0 with sc->out set, or -1 (sc->nomem on ENOMEM). */
static int
re_scan(struct re_scan *sc)
{
	const char *p = sc->pat;
	size_t start, n;
	long lo, hi;
	int repeatable = 0, depth = 0, c;

	if (sc->len > RE_MAX_PATTERN)
		return re_fail(sc, 0, "pattern longer than %d bytes",
		    RE_MAX_PATTERN);
	if (memchr(p, '\0', sc->len) != NULL)
		return re_fail(sc, (size_t)((const char *)memchr(p, '\0',
		    sc->len) - p), "NUL byte in pattern");
	if (re_emit(sc, "", 0, 0) == -1)
		return -1;
	while (sc->i < sc->len) {
		start = sc->i;
		c = (unsigned char)p[start];
		switch (c) {
		case '\\':
			if (re_escape(sc, 0) == -1)
				return -1;
			/* \Q\E (empty) leaves the previous item in place. */
			if (sc->i - start > 4 || sc->pat[start + 1] != 'Q')
				repeatable = 1;
			continue;
		case '[':
			if (re_class(sc) == -1)
				return -1;
			repeatable = 1;
			continue;
		case '(':
			/* Nothing to repeat right after "(" or "(?i)". */
			if (re_group(sc, &depth) == -1)
				return -1;
			repeatable = 0;
			continue;
		case ')':
			if (depth == 0)
				return re_fail(sc, start, "unexpected )");
			depth--;
			repeatable = 1;
			break;
		case '|':
			repeatable = 0;
			break;
		case '*': case '+': case '?': case '{':
			if (c == '{') {
				n = re_repeat(p + start, sc->len - start, &lo,
				    &hi);
				if (n == 0) {
					/* A literal brace in RE2. */
					if (re_emit(sc, "\\{", 2, start) == -1)
						return -1;
					sc->i++;
					repeatable = 1;
					continue;
				}
				if (lo > RE_MAX_REPEAT || hi > RE_MAX_REPEAT)
					return re_fail(sc, start, "repeat count "
					    "above %d", RE_MAX_REPEAT);
				if (hi != -1 && hi < lo)
					return re_fail(sc, start,
					    "invalid repeat count");
			} else
				n = 1;
			if (!repeatable)
				return re_fail(sc, start,
				    "missing argument to repetition operator");
			if (re_emit(sc, p + start, n, start) == -1)
				return -1;
			sc->i += n;
			if (sc->i < sc->len && p[sc->i] == '+')
				return re_fail(sc, start, "possessive "
				    "quantifiers are not RE2 syntax");
			if (sc->i < sc->len && p[sc->i] == '?') {
				if (re_emit(sc, "?", 1, sc->i) == -1)
					return -1;
				sc->i++;
			}
			/* RE2 rejects a repetition of a repetition ("a**",
			 * "a{2}{3}"); PCRE2 accepts some of them. */
			if (sc->i < sc->len && (p[sc->i] == '*' ||
			    p[sc->i] == '+' || p[sc->i] == '?' ||
			    (p[sc->i] == '{' && re_repeat(p + sc->i,
			    sc->len - sc->i, &lo, &hi) != 0)))
				return re_fail(sc, sc->i,
				    "bad repetition operator");
			repeatable = 0;
			continue;
		default:
			repeatable = 1;
			break;
		}
		if (re_emit(sc, p + start, 1, start) == -1)
			return -1;
		sc->i++;
	}
	if (depth != 0)
		return re_fail(sc, sc->len, "missing closing )");
	return 0;
}

/* --- compile ----------------------------------------------------------------- */

static pcre2_code *
re_build(const char *pattern, uint32_t extra, char *err, size_t errlen)
{
	struct re_scan sc;
	pcre2_compile_context *cctx = NULL;
	pcre2_code *code = NULL;
	PCRE2_UCHAR msg[160];
	PCRE2_SIZE eoff;
	size_t off;
	int ecode;

	if (errlen > 0)
		err[0] = '\0';
	memset(&sc, 0, sizeof(sc));
	sc.pat = pattern;
	sc.len = strlen(pattern);
	sc.err = err;
	sc.errlen = errlen;
	if (re_scan(&sc) == -1) {
		if (sc.nomem && errlen > 0)
			snprintf(err, errlen, "out of memory");
		goto done;
	}
	if ((cctx = pcre2_compile_context_create(NULL)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	pcre2_set_newline(cctx, PCRE2_NEWLINE_LF);
	code = pcre2_compile((PCRE2_SPTR)sc.out, sc.olen, PCRE2_UTF |
	    PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY |
	    PCRE2_NEVER_BACKSLASH_C | PCRE2_NEVER_UCP | extra, &ecode, &eoff,
	    cctx);
	if (code == NULL) {
		pcre2_get_error_message(ecode, msg, sizeof(msg));
		off = eoff < sc.olen ? sc.map[eoff] : sc.len;
		if (errlen > 0)
			snprintf(err, errlen, "offset %zu: %s", off,
			    (const char *)msg);
	}
done:
	pcre2_compile_context_free(cctx);
	free(sc.out);
	free(sc.map);
	return code;
}

int
weft_re_validate(const char *pattern, char *err, size_t errlen)
{
	pcre2_code *code;

	if ((code = re_build(pattern, 0, err, errlen)) == NULL)
		return -1;
	pcre2_code_free(code);
	return 0;
}

struct weft_re *
weft_re_compile(const char *pattern, enum weft_re_anchor a, char *err,
    size_t errlen)
{
	struct weft_re *re;
	uint32_t opts = PCRE2_ANCHORED;

	/* ENDANCHORED at compile time (not match time) keeps the JIT path. */
	if (a == WEFT_RE_FULL)
		opts |= PCRE2_ENDANCHORED;
	if ((re = calloc(1, sizeof(*re))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((re->code = re_build(pattern, opts, err, errlen)) == NULL) {
		free(re);
		return NULL;
	}
	/* Without JIT (unsupported CPU, or W^X memory) pcre2_match falls back
	 * to the interpreter under the same limits. */
	(void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
	return re;
}

void
weft_re_free(struct weft_re *re)
{
	if (re == NULL)
		return;
	pcre2_code_free(re->code);
	free(re);
}

/* --- match --------------------------------------------------------------------- */

struct re_thread {
	pcre2_match_data	*md;
	pcre2_match_context	*mctx;
	pcre2_jit_stack		*jit;
};

static pthread_key_t re_key;
static pthread_once_t re_key_once = PTHREAD_ONCE_INIT;
static int re_key_ok;

static void
re_thread_free(void *arg)
{
	struct re_thread *t = arg;

	if (t == NULL)
		return;
	pcre2_match_data_free(t->md);
	pcre2_match_context_free(t->mctx);
	pcre2_jit_stack_free(t->jit);
	free(t);
}

static void
re_key_init(void)
{
	re_key_ok = pthread_key_create(&re_key, re_thread_free) == 0;
}

static struct re_thread *
re_thread_get(void)
{
	struct re_thread *t;

	pthread_once(&re_key_once, re_key_init);
	if (!re_key_ok)
		return NULL;
	if ((t = pthread_getspecific(re_key)) != NULL)
		return t;
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	/* One pair is enough: we never read captures, and a match with too
	 * small an ovector still reports success (rc 0). */
	t->md = pcre2_match_data_create(1, NULL);
	t->mctx = pcre2_match_context_create(NULL);
	t->jit = pcre2_jit_stack_create(RE_JIT_STACK_START, RE_JIT_STACK_MAX,
	    NULL);
	if (t->md == NULL || t->mctx == NULL) {
		re_thread_free(t);
		return NULL;
	}
	pcre2_set_match_limit(t->mctx, RE_MATCH_LIMIT);
	pcre2_set_depth_limit(t->mctx, RE_DEPTH_LIMIT);
	pcre2_set_heap_limit(t->mctx, RE_HEAP_LIMIT_KIB);
	if (t->jit != NULL)
		pcre2_jit_stack_assign(t->mctx, NULL, t->jit);
	if (pthread_setspecific(re_key, t) != 0) {
		re_thread_free(t);
		return NULL;
	}
	return t;
}

int
weft_re_match(const struct weft_re *re, const char *s, size_t len)
{
	struct re_thread *t;
	int rc;

	if ((t = re_thread_get()) == NULL) {
		__atomic_add_fetch(&re_limit_hits, 1, __ATOMIC_RELAXED);
		return 0;
	}
	rc = pcre2_match(re->code, (PCRE2_SPTR)(s != NULL ? s : ""), len, 0,
	    0, t->md, t->mctx);
	if (rc >= 0)
		return 1;
	if (rc != PCRE2_ERROR_NOMATCH)
		__atomic_add_fetch(&re_limit_hits, 1, __ATOMIC_RELAXED);
	return 0;
}

uint64_t
weft_re_limit_hits(void)
{
	return __atomic_load_n(&re_limit_hits, __ATOMIC_RELAXED);
}
