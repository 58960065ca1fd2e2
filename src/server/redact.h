/* redact.h - credentials out of everything racefreed prints.
 *
 * A --db or --redis URL may carry a password (redis://:secret@host:6379,
 * postgres://user:secret@host/db, postgres://host/db?password=secret, or a
 * libpq conninfo "host=h password=secret"). racefreed prints URLs in its
 * start-up lines, in error messages (which may quote a database driver's
 * own message) and in answers such as GET /ready; every one of those goes
 * through srv_url_redact first, and srv_log and the start-up error path
 * pass their whole line through it as a last guard.
 */
#ifndef RACEFREED_REDACT_H
#define RACEFREED_REDACT_H

#include <stddef.h>

/* The mask that replaces a secret. */
#define SRV_REDACTED "***"

/* srv_url_redact: copy `in` (a URL, a conninfo string or any text quoting
 * them) to out[cap], with each secret replaced by "***":
 *   - the password of every "scheme://user:password@host" (the user stays;
 *     for redis:// and rediss://, a lone "secret@host" is a password too);
 *   - the value of every key naming a secret ("password", "passwd", "pwd",
 *     "sslpassword", "pass", "secret", "token", case-insensitive) written
 *     key=value, in a query string (up to '&', '#' or a space) or in a
 *     conninfo (up to a space, or a whole '...' quoted value).
 * The output is always NUL-terminated (truncated when cap is too small;
 * never truncated inside a secret). Returns out. in == out is not
 * allowed. */
char *srv_url_redact(const char *in, char *out, size_t cap);

#endif /* RACEFREED_REDACT_H */
