/* RE2 syntax on PCRE2: what is accepted, what is rejected and why, and how
 * the two anchorings match. */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "weft/regex.h"

#include "../../tap.h"

static const char *valid[] = {
	"", "/v1/accounts", "/healthz$", ".*", ".*?", "a|b|", "(?i)firefox",
	"(?i:x)y", "(?-i)x", "(?s).", "(?U)a+", "(?P<id>[0-9]+)", "(?<id>x)",
	"(?:a|b)+", "[]a]", "[^]a]", "[[:alpha:]_-]+", "[[:^digit:]]",
	"\\d\\D\\s\\S\\w\\W", "\\bword\\B", "\\Atext\\z", "\\pL\\p{Greek}\\PN",
	"\\p{^Greek}", "\\x41\\x{263a}", "\\0\\012\\101", "\\.\\*\\?\\+\\[\\]",
	"a{2}", "a{2,}", "a{2,5}?", "a{1000}", "x{", "x{a}", "{", "a{,3}",
	"\\Qa.b*c\\E+", "\\Q(unclosed", "é+", "[\\d\\-a-z]", "yes|true",
	".*Mobile.*",
};

static const struct {
	const char	*pattern;
	const char	*err;		/* expected message, exactly */
} invalid[] = {
	{ "(a)\\1", "offset 3: back-references are not RE2 syntax" },
	{ "\\9", "offset 0: back-references are not RE2 syntax" },
	{ "(?P<n>a)\\k<n>", "offset 8: back-references are not RE2 syntax" },
	{ "(a)\\g1", "offset 3: back-references are not RE2 syntax" },
	{ "(?P<n>a)(?P=n)", "offset 8: back-references are not RE2 syntax" },
	{ "a(?=b)", "offset 1: look-ahead assertions are not RE2 syntax" },
	{ "a(?!b)", "offset 1: look-ahead assertions are not RE2 syntax" },
	{ "(?<=a)b", "offset 0: look-behind assertions are not RE2 syntax" },
	{ "(?<!a)b", "offset 0: look-behind assertions are not RE2 syntax" },
	{ "(?>a+)b", "offset 0: atomic groups are not RE2 syntax" },
	{ "a*+", "offset 1: possessive quantifiers are not RE2 syntax" },
	{ "a++", "offset 1: possessive quantifiers are not RE2 syntax" },
	{ "a?+", "offset 1: possessive quantifiers are not RE2 syntax" },
	{ "a{2}+", "offset 1: possessive quantifiers are not RE2 syntax" },
	{ "(a(?R))", "offset 2: recursion is not RE2 syntax" },
	{ "(a(?1))", "offset 2: recursion is not RE2 syntax" },
	{ "(a(?-1))", "offset 2: recursion is not RE2 syntax" },
	{ "(?P<n>a(?&n))", "offset 7: recursion is not RE2 syntax" },
	{ "(?P<n>a(?P>n))", "offset 7: recursion is not RE2 syntax" },
	{ "(?(1)a|b)", "offset 0: conditionals are not RE2 syntax" },
	{ "a(?C1)", "offset 1: callouts are not RE2 syntax" },
	{ "\\C", "offset 0: \\C (single code unit) is not RE2 syntax" },
	{ "a\\Kb", "offset 1: \\K (match start reset) is not RE2 syntax" },
	{ "(*UTF)a", "offset 0: (* verbs are not RE2 syntax" },
	{ "(?|a)", "offset 0: branch reset groups are not RE2 syntax" },
	{ "(?#c)", "offset 0: comments are not RE2 syntax" },
	{ "(?x)a b", "offset 2: flag 'x' is not RE2 syntax" },
	{ "(?)", "offset 0: invalid flags" },
	{ "(?'n'a)", "offset 0: (?'name' groups are not RE2 syntax "
	    "(use (?P<name>...))" },
	{ "\\Z", "offset 0: \\Z is not RE2 syntax (use \\z)" },
	{ "\\G", "offset 0: \\G is not RE2 syntax" },
	{ "a\\E", "offset 1: \\E without \\Q is not RE2 syntax" },
	{ "\\h", "offset 0: \\h is not RE2 syntax" },
	{ "\\R", "offset 0: \\R is not RE2 syntax" },
	{ "\\e", "offset 0: \\e is not RE2 syntax" },
	{ "[\\b]", "offset 1: \\b inside a character class is not RE2 syntax" },
	{ "[\\Qa\\E]", "offset 1: \\Q inside a character class is not RE2 "
	    "syntax" },
	{ "\\x4", "offset 0: \\x needs two hex digits or \\x{...}" },
	{ "\\x{110000}", "offset 0: invalid escape \\x{...}" },
	{ "a**", "offset 2: bad repetition operator" },
	{ "a{2}{3}", "offset 4: bad repetition operator" },
	{ "*a", "offset 0: missing argument to repetition operator" },
	{ "(*)", "offset 0: (* verbs are not RE2 syntax" },
	{ "a|*", "offset 2: missing argument to repetition operator" },
	{ "a{1001}", "offset 1: repeat count above 1000" },
	{ "a{3,2}", "offset 1: invalid repeat count" },
	{ "[a", "offset 0: missing closing ]" },
	{ "(a", "offset 2: missing closing )" },
	{ "a)", "offset 1: unexpected )" },
	{ "\\", "offset 0: trailing backslash" },
	{ "(?P<1a>x)", "offset 0: invalid named capture group" },
	{ "[z-a]", "offset 3: range out of order in character class" },
	{ "[[:nope:]]", "offset 1: unknown POSIX class name" },
};

static const struct {
	const char	*pattern;
	enum weft_re_anchor a;
	const char	*subject;
	int		 want;
} matches[] = {
	/* Paths: implicit ^ only (SPEC §4.1). */
	{ "/metrics", WEFT_RE_PREFIX, "/metrics", 1 },
	{ "/metrics", WEFT_RE_PREFIX, "/metrics/x", 1 },
	{ "/metrics", WEFT_RE_PREFIX, "/metricsfoo", 1 },
	{ "/metrics", WEFT_RE_PREFIX, "/api/metrics", 0 },
	{ "/healthz$", WEFT_RE_PREFIX, "/healthz", 1 },
	{ "/healthz$", WEFT_RE_PREFIX, "/healthz/x", 0 },
	/* RE2's $ is the very end, not before a final newline. */
	{ "/healthz$", WEFT_RE_PREFIX, "/healthz\n", 0 },
	{ ".*", WEFT_RE_PREFIX, "", 1 },
	{ "a|ab", WEFT_RE_PREFIX, "abc", 1 },
	/* Header values: the whole value. */
	{ "yes|true", WEFT_RE_FULL, "yes", 1 },
	{ "yes|true", WEFT_RE_FULL, "true", 1 },
	{ "yes|true", WEFT_RE_FULL, "yess", 0 },
	{ "yes|true", WEFT_RE_FULL, "xtrue", 0 },
	{ "a|ab", WEFT_RE_FULL, "ab", 1 },
	{ ".*Mobile.*", WEFT_RE_FULL, "Mozilla/5.0 (Mobile)", 1 },
	{ ".*Mobile.*", WEFT_RE_FULL, "Mozilla/5.0", 0 },
	{ "(?i)firefox", WEFT_RE_FULL, "FireFox", 1 },
	{ ".*?session=([^;]+)", WEFT_RE_PREFIX, "a=1; session=x", 1 },
	/* Rewritten constructs keep RE2's meaning. */
	{ "\\v", WEFT_RE_FULL, "\x0b", 1 },
	{ "\\v", WEFT_RE_FULL, "\n", 0 },
	{ "\\12", WEFT_RE_FULL, "\n", 1 },
	{ "a{,3}", WEFT_RE_FULL, "a{,3}", 1 },
	{ "a{,3}", WEFT_RE_FULL, "aa", 0 },
	{ "x{a}", WEFT_RE_FULL, "x{a}", 1 },
	{ "\\Qa.b\\E", WEFT_RE_FULL, "a.b", 1 },
	{ "\\Qa.b\\E", WEFT_RE_FULL, "axb", 0 },
	{ "[]a]+", WEFT_RE_FULL, "]a]", 1 },
	{ "[[.]", WEFT_RE_FULL, "[", 1 },
	/* \d and \w stay ASCII, '.' is a code point. */
	{ "\\d", WEFT_RE_FULL, "\xd9\xa3", 0 },
	{ "é.", WEFT_RE_FULL, "é\xe2\x98\xba", 1 },
	{ "\\x{263a}", WEFT_RE_FULL, "\xe2\x98\xba", 1 },
	/* Invalid UTF-8 in a subject is no match, not an error. */
	{ "/a.*", WEFT_RE_PREFIX, "/a\xff\xfe", 1 },
	{ "/a.", WEFT_RE_FULL, "/a\xff", 0 },
};

/* The subject for a test name: control bytes as \\xHH, so one TAP line. */
static const char *
vis(const char *s)
{
	static char buf[4][128];
	static int n;
	char *b = buf[n++ & 3];
	size_t o = 0;

	for (; *s != '\0' && o + 5 < sizeof(buf[0]); s++) {
		if ((unsigned char)*s < 0x20)
			o += (size_t)snprintf(b + o, 5, "\\x%02x",
			    (unsigned char)*s);
		else
			b[o++] = *s;
	}
	b[o] = '\0';
	return b;
}

static void
test_valid(void)
{
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
		err[0] = '\0';
		is_int(weft_re_validate(valid[i], err, sizeof(err)), 0,
		    "valid: \"%s\"%s%s", valid[i], err[0] ? ": " : "", err);
	}
}

static void
test_invalid(void)
{
	struct weft_re *re;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		err[0] = '\0';
		is_int(weft_re_validate(invalid[i].pattern, err, sizeof(err)),
		    -1, "invalid: \"%s\"", invalid[i].pattern);
		is_str(err, invalid[i].err, "reason for \"%s\"",
		    invalid[i].pattern);
	}
	/* compile rejects what validate rejects, with the same reason */
	re = weft_re_compile("(?=x)", WEFT_RE_PREFIX, err, sizeof(err));
	ok(re == NULL, "compile rejects look-ahead");
	is_str(err, "offset 0: look-ahead assertions are not RE2 syntax",
	    "compile reason");
	/* a short buffer truncates, never overflows */
	memset(err, 'X', sizeof(err));
	weft_re_validate("a(?=b)", err, 8);
	is_str(err, "offset ", "reason truncated to the buffer");
}

static void
test_match(void)
{
	struct weft_re *re;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(matches) / sizeof(matches[0]); i++) {
		re = weft_re_compile(matches[i].pattern, matches[i].a, err,
		    sizeof(err));
		if (re == NULL) {
			ok(0, "compile \"%s\": %s", matches[i].pattern, err);
			continue;
		}
		is_int(weft_re_match(re, matches[i].subject,
		    strlen(matches[i].subject)), matches[i].want,
		    "%s \"%s\" on \"%s\"", matches[i].a == WEFT_RE_FULL ?
		    "full" : "prefix", matches[i].pattern,
		    vis(matches[i].subject));
		weft_re_free(re);
	}
	/* the length bounds the subject (no NUL needed) */
	re = weft_re_compile("ab$", WEFT_RE_PREFIX, err, sizeof(err));
	is_int(weft_re_match(re, "abc", 2), 1, "length bounds the subject");
	is_int(weft_re_match(re, NULL, 0), 0, "NULL empty subject");
	weft_re_free(re);
	weft_re_free(NULL);
}

static void
test_limit(void)
{
	struct weft_re *re;
	char err[256], subject[64];
	uint64_t before;

	/* Catastrophic backtracking: the limit ends it, no match, counted. */
	re = weft_re_compile("(a+)+[bc]", WEFT_RE_FULL, err, sizeof(err));
	ok(re != NULL, "compile (a+)+[bc]");
	memset(subject, 'a', sizeof(subject) - 1);
	subject[sizeof(subject) - 1] = '\0';
	before = weft_re_limit_hits();
	is_int(weft_re_match(re, subject, strlen(subject)), 0,
	    "limit: no match");
	is_int(weft_re_limit_hits() - before, 1, "limit hit counted");
	subject[sizeof(subject) - 2] = 'c';
	is_int(weft_re_match(re, subject, strlen(subject)), 1,
	    "same pattern matches quickly when it can");
	weft_re_free(re);
}

static struct weft_re *thread_re;

static void *
thread_main(void *arg)
{
	int i, n = 0;

	for (i = 0; i < 1000; i++)
		n += weft_re_match(thread_re, (i & 1) ? "/v1/x" : "/v2/x", 5);
	return (void *)(intptr_t)n;
}

static void
test_threads(void)
{
	pthread_t t[4];
	void *rv;
	char err[256];
	int i, sum = 0;

	thread_re = weft_re_compile("/v1/", WEFT_RE_PREFIX, err, sizeof(err));
	for (i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, thread_main, NULL);
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], &rv);
		sum += (int)(intptr_t)rv;
	}
	is_int(sum, 4 * 500, "one pattern matched from four threads");
	weft_re_free(thread_re);
}

int
main(void)
{
	test_valid();
	test_invalid();
	test_match();
	test_limit();
	test_threads();
	return tap_done();
}
