/* Logging, after relayd's log.c: stderr in the foreground, one line per event.
 * Every function preserves errno.  log_warn() appends strerror(errno). */
#ifndef WEFT_LOG_H
#define WEFT_LOG_H

#include <stdarg.h>

enum weft_log_level {
	WEFT_LOG_ERROR = 0,
	WEFT_LOG_WARN,
	WEFT_LOG_INFO,
	WEFT_LOG_DEBUG,
};

/* Set the program tag shown in each line (borrowed; must outlive logging)
 * and the highest level that is printed. */
void	weft_log_init(const char *tag, enum weft_log_level level);
void	weft_log_set_level(enum weft_log_level level);
enum weft_log_level weft_log_get_level(void);

void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define log_debug_enabled() (weft_log_get_level() >= WEFT_LOG_DEBUG)

#endif
