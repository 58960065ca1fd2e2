/* cookie.h - a virtual user's cookie jar, as Artillery keeps one per
 * virtual user (it uses tough-cookie): every Set-Cookie of an answer is
 * stored and the matching cookies are sent back in a Cookie header.
 *
 * The RFC 6265 basics: host-only cookies and Domain cookies (the host or
 * its subdomains; a Domain that does not cover the host is ignored), Path
 * (default: the directory of the request path) and path matching, Max-Age
 * and Expires (a cookie whose time is past is removed), Secure (never sent
 * over plain http). Not done: the public-suffix list, SameSite, HttpOnly
 * (meaningless without scripts).
 *
 * Bounded: at most RC_JAR_MAX cookies (the oldest is dropped), each at most
 * 4 KiB. A jar belongs to one virtual user, hence one thread.
 */
#ifndef RC_COOKIE_H
#define RC_COOKIE_H

#include <stdint.h>

#include "rc.h"

#define RC_JAR_MAX 64

typedef struct rc_cookie {
  char *name, *value, *domain, *path;
  int host_only, secure;
} rc_cookie_t;

typedef struct rc_jar {
  rc_cookie_t c[RC_JAR_MAX];
  size_t n;
} rc_jar_t;

/* Store one Set-Cookie header value received from `host` for a request to
 * `path` (query allowed, ignored). `now` is the wall clock in seconds. */
void rc_jar_set(rc_jar_t *j, const char *set_cookie, const char *host, const char *path,
                int64_t now);
/* Append "a=1; b=2" for a request to host/path (nothing when no cookie
 * matches). Longer paths first, as RFC 6265 asks. */
void rc_jar_header(const rc_jar_t *j, const char *host, const char *path, int https, rc_buf_t *out);
void rc_jar_free(rc_jar_t *j);

#endif /* RC_COOKIE_H */
