/* cookie.c - see cookie.h. */
#include "cookie.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void rc__cookie_free(rc_cookie_t *c) {
  free(c->name);
  free(c->value);
  free(c->domain);
  free(c->path);
  memset(c, 0, sizeof *c);
}

void rc_jar_free(rc_jar_t *j) {
  for (size_t i = 0; i < j->n; i++) {
    rc__cookie_free(&j->c[i]);
  }
  j->n = 0;
}

static void rc__jar_remove(rc_jar_t *j, size_t i) {
  rc__cookie_free(&j->c[i]);
  memmove(&j->c[i], &j->c[i + 1], (j->n - i - 1) * sizeof j->c[0]);
  j->n--;
}

/* [s, e) trimmed of spaces and tabs, as a fresh string. */
static char *rc__trimdup(const char *s, const char *e) {
  while (s < e && (*s == ' ' || *s == '\t')) {
    s++;
  }
  while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
    e--;
  }
  return rc_xstrndup(s, (size_t)(e - s));
}

static char *rc__lower(char *s) {
  for (char *p = s; *p; p++) {
    *p = (char)tolower((unsigned char)*p);
  }
  return s;
}

/* The request path without its query, "/" when empty. */
static size_t rc__path_len(const char *path) {
  size_t n = strcspn(path, "?#");
  return n;
}

static char *rc__default_path(const char *path) {
  size_t n = rc__path_len(path);
  if (n == 0 || path[0] != '/') {
    return rc_xstrdup("/");
  }
  size_t last = 0;
  for (size_t i = 0; i < n; i++) {
    if (path[i] == '/') {
      last = i;
    }
  }
  return last == 0 ? rc_xstrdup("/") : rc_xstrndup(path, last);
}

static int rc__domain_match(const char *host, const char *domain) {
  if (strcasecmp(host, domain) == 0) {
    return 1;
  }
  size_t hl = strlen(host), dl = strlen(domain);
  return hl > dl && host[hl - dl - 1] == '.' && strcasecmp(host + hl - dl, domain) == 0 &&
         !isdigit((unsigned char)host[hl - 1]); /* never a suffix of an IP address */
}

static int rc__path_match(const char *req, size_t rlen, const char *cpath) {
  size_t cl = strlen(cpath);
  if (rlen == 0) {
    req = "/";
    rlen = 1;
  }
  if (cl > rlen || strncmp(req, cpath, cl) != 0) {
    return 0;
  }
  return cl == rlen || cpath[cl - 1] == '/' || req[cl] == '/';
}

static int rc__parse_expires(const char *v, int64_t *out) {
  static const char *const fmts[] = {"%a, %d %b %Y %H:%M:%S", "%a, %d-%b-%Y %H:%M:%S",
                                     "%a, %d-%b-%y %H:%M:%S", "%A, %d-%b-%y %H:%M:%S"};
  for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (strptime(v, fmts[i], &tm)) {
      *out = (int64_t)timegm(&tm);
      return 0;
    }
  }
  return -1;
}

void rc_jar_set(rc_jar_t *j, const char *set_cookie, const char *host, const char *path,
                int64_t now) {
  if (strlen(set_cookie) > 4096) {
    return;
  }
  const char *semi = strchr(set_cookie, ';');
  const char *end = semi ? semi : set_cookie + strlen(set_cookie);
  const char *eq = memchr(set_cookie, '=', (size_t)(end - set_cookie));
  if (!eq) {
    return; /* RFC 6265 5.2: no '=' in the name-value pair: ignore it */
  }
  rc_cookie_t c = {0};
  c.name = rc__trimdup(set_cookie, eq);
  c.value = rc__trimdup(eq + 1, end);
  if (!*c.name) {
    rc__cookie_free(&c);
    return;
  }
  int expired = 0;
  int have_max_age = 0;
  while (semi) {
    const char *a = semi + 1;
    semi = strchr(a, ';');
    const char *ae = semi ? semi : a + strlen(a);
    const char *aeq = memchr(a, '=', (size_t)(ae - a));
    char *an = rc__trimdup(a, aeq ? aeq : ae);
    char *av = aeq ? rc__trimdup(aeq + 1, ae) : rc_xstrdup("");
    if (strcasecmp(an, "domain") == 0 && *av) {
      const char *d = av[0] == '.' ? av + 1 : av;
      free(c.domain);
      c.domain = rc__lower(rc_xstrdup(d));
    } else if (strcasecmp(an, "path") == 0 && av[0] == '/') {
      free(c.path);
      c.path = rc_xstrdup(av);
    } else if (strcasecmp(an, "secure") == 0) {
      c.secure = 1;
    } else if (strcasecmp(an, "max-age") == 0 && *av) {
      char *e = NULL;
      long long s = strtoll(av, &e, 10);
      if (e && !*e) {
        have_max_age = 1; /* Max-Age wins over Expires */
        expired = s <= 0;
      }
    } else if (strcasecmp(an, "expires") == 0 && !have_max_age) {
      int64_t t;
      if (rc__parse_expires(av, &t) == 0) {
        expired = t <= now;
      }
    }
    free(an);
    free(av);
  }
  if (c.domain && *c.domain) {
    if (!rc__domain_match(host, c.domain)) {
      rc__cookie_free(&c); /* a Domain that does not cover the host: ignored */
      return;
    }
  } else {
    free(c.domain);
    c.domain = rc__lower(rc_xstrdup(host));
    c.host_only = 1;
  }
  if (!c.path) {
    c.path = rc__default_path(path);
  }
  /* replace (or, expired, remove) the cookie of the same name, domain and
   * path; a replaced cookie keeps its creation time (RFC 6265 5.3), hence
   * its place in the jar and in the Cookie header */
  for (size_t i = 0; i < j->n; i++) {
    rc_cookie_t *o = &j->c[i];
    if (strcmp(o->name, c.name) == 0 && strcmp(o->domain, c.domain) == 0 &&
        strcmp(o->path, c.path) == 0) {
      if (expired) {
        rc__jar_remove(j, i);
        rc__cookie_free(&c);
      } else {
        rc__cookie_free(o);
        *o = c;
      }
      return;
    }
  }
  if (expired) {
    rc__cookie_free(&c);
    return;
  }
  if (j->n == RC_JAR_MAX) {
    rc__jar_remove(j, 0); /* full: drop the oldest */
  }
  j->c[j->n++] = c;
}

void rc_jar_header(const rc_jar_t *j, const char *host, const char *path, int https,
                   rc_buf_t *out) {
  size_t rlen = rc__path_len(path);
  const rc_cookie_t *pick[RC_JAR_MAX];
  size_t n = 0;
  for (size_t i = 0; i < j->n; i++) {
    const rc_cookie_t *c = &j->c[i];
    if (c->secure && !https) {
      continue;
    }
    if (c->host_only ? strcasecmp(c->domain, host) != 0 : !rc__domain_match(host, c->domain)) {
      continue;
    }
    if (!rc__path_match(path, rlen, c->path)) {
      continue;
    }
    /* insertion sort: longer paths first, then older first */
    size_t k = n++;
    while (k > 0 && strlen(pick[k - 1]->path) < strlen(c->path)) {
      pick[k] = pick[k - 1];
      k--;
    }
    pick[k] = c;
  }
  for (size_t i = 0; i < n; i++) {
    rc_buf_printf(out, "%s%s=%s", i ? "; " : "", pick[i]->name, pick[i]->value);
  }
}
