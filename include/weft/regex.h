/* Regular expressions of SMI traffic specs: RE2 syntax (SPEC A-3, §4.1),
 * run by PCRE2 with JIT and match limits.  Constructs RE2 lacks
 * (back-references, look-around, atomic groups, possessive quantifiers,
 * recursion, conditionals, callouts, \C, ...) are rejected, so a pattern means
 * the same here as in Go or Envoy.  A compiled pattern is immutable and may
 * be matched from any thread. */
#ifndef WEFT_REGEX_H
#define WEFT_REGEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum weft_re_anchor {
	WEFT_RE_PREFIX = 0,	/* implicit ^: matches at the start (paths) */
	WEFT_RE_FULL,		/* implicit ^...$: the whole subject (header
				 * values) */
};

struct weft_re;

/* 0 if pattern is valid RE2 syntax that compiles; else -1 and a reason in
 * err ("offset 3: back-references are not RE2 syntax"). */
int	weft_re_validate(const char *pattern, char *err, size_t errlen);

/* Compile (and JIT) pattern; NULL with a reason in err on failure. */
struct weft_re *weft_re_compile(const char *pattern, enum weft_re_anchor a,
	    char *err, size_t errlen);
void	weft_re_free(struct weft_re *re);

/* 1 on a match, 0 on none; a match that hits the match or depth limit is
 * counted and treated as no match (fail closed), 0. */
int	weft_re_match(const struct weft_re *re, const char *s, size_t len);

/* Matches, process-wide, that ended on a limit or error (fail closed). */
uint64_t weft_re_limit_hits(void);

#endif
