/* Logging to stderr with a timestamp, a level and the program tag.
 * Lines are written with one write(2) so threads do not interleave. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft/log.h"

static const char *log_tag = "weft";
static volatile int log_level = WEFT_LOG_INFO;

void
weft_log_init(const char *tag, enum weft_log_level level)
{
	if (tag != NULL)
		log_tag = tag;
	log_level = level;
}

void
weft_log_set_level(enum weft_log_level level)
{
	log_level = level;
}

enum weft_log_level
weft_log_get_level(void)
{
	return log_level;
}

static void
log_vwrite(enum weft_log_level level, const char *errstr, const char *fmt,
    va_list ap)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	char line[2048];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int r;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	r = snprintf(line, sizeof(line),
	    "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000, log_tag,
	    names[level]);
	n = r > 0 ? (size_t)r : 0;
	if (n < sizeof(line)) {
		r = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		if (r > 0)
			n += (size_t)r;
	}
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	if (errstr != NULL) {
		r = snprintf(line + n, sizeof(line) - n, ": %s", errstr);
		if (r > 0)
			n += (size_t)r;
		if (n >= sizeof(line) - 1)
			n = sizeof(line) - 2;
	}
	line[n++] = '\n';
	(void)!write(STDERR_FILENO, line, n);
}

#define LOG_BODY(level, errstr)					\
	do {							\
		int saved_errno = errno;			\
		va_list ap;					\
		if ((int)(level) > log_level)			\
			break;					\
		va_start(ap, fmt);				\
		log_vwrite((level), (errstr), fmt, ap);		\
		va_end(ap);					\
		errno = saved_errno;				\
	} while (0)

void
log_warn(const char *fmt, ...)
{
	const char *e = strerror(errno);

	LOG_BODY(WEFT_LOG_WARN, e);
}

void
log_warnx(const char *fmt, ...)
{
	LOG_BODY(WEFT_LOG_WARN, NULL);
}

void
log_info(const char *fmt, ...)
{
	LOG_BODY(WEFT_LOG_INFO, NULL);
}

void
log_debug(const char *fmt, ...)
{
	LOG_BODY(WEFT_LOG_DEBUG, NULL);
}

void
fatal(const char *fmt, ...)
{
	const char *e = strerror(errno);
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(WEFT_LOG_ERROR, e, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(WEFT_LOG_ERROR, NULL, fmt, ap);
	va_end(ap);
	exit(1);
}
