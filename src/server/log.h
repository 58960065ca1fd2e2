/* log.h - racefreed's log lines: text or JSON, one write(2) per line.
 *
 * Lines go to stderr, or to --log-file (opened O_APPEND). Each line is
 * formatted into a local buffer and written with a single write(2), so
 * lines from many threads and worker processes never interleave (O_APPEND
 * writes are atomic with respect to each other on local files; pipes are
 * atomic up to PIPE_BUF). srv_log_reopen (on SIGHUP) opens the file again
 * and dup2()s it over the descriptor in use: writers never see a closed
 * descriptor, so reopening needs no lock.
 *
 * Request lines carry method, route pattern, status and duration; never
 * bodies, headers or query strings (they may hold personal data).
 */
#ifndef RACEFREED_LOG_H
#define RACEFREED_LOG_H

#include <stdint.h>

#include "options.h"

/* srv_log_init: level, format and destination (path NULL or "" = stderr).
 * Returns 0 or RF_EIO (file cannot be opened; the message says why).
 * Call once before any thread starts. */
int srv_log_init(int level, int format, const char *path, char *err, size_t errlen);

/* srv_log_reopen: reopen the log file (no-op for stderr). Thread-safe. */
int srv_log_reopen(void);

/* srv_log_close: flush nothing (unbuffered), close the file. */
void srv_log_close(void);

/* srv_log_enabled: would a line at this level be written? */
int srv_log_enabled(int level);

/* srv_log: one free-text line at `level` (printf format). Thread-safe. */
void srv_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* srv_log_request: the access line for one answered request. */
void srv_log_request(const char *method, const char *route, unsigned status, double ms);

#endif /* RACEFREED_LOG_H */
