/* redact.c - see redact.h. */
#include "redact.h"

#include <ctype.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

typedef struct outbuf {
  char *p;
  size_t cap, len;
} outbuf_t;

static void put(outbuf_t *o, const char *s, size_t n) {
  if (o->cap == 0)
    return;
  size_t room = o->cap - 1 - o->len;
  if (n > room)
    n = room;
  memcpy(o->p + o->len, s, n);
  o->len += n;
  o->p[o->len] = '\0';
}

static bool is_scheme_char(char c) {
  return isalnum((unsigned char)c) || c == '+' || c == '-' || c == '.';
}

/* Characters that end a URL's authority (or the URL itself, in free text). */
static bool ends_authority(char c) {
  return c == '\0' || c == '/' || c == '?' || c == '#' || isspace((unsigned char)c) || c == '\'' ||
         c == '"';
}

static const char *const secret_keys[] = {"password", "passwd", "pwd",   "sslpassword",
                                          "pass",     "secret", "token", NULL};

/* Does the key that ends just before `eq` (text from `start`) name a
 * secret? The key is the run of [A-Za-z0-9_] before '=' (spaces allowed
 * before '=', as in conninfo "password = x"). */
static bool secret_key_before(const char *start, const char *eq) {
  const char *e = eq;
  while (e > start && (e[-1] == ' ' || e[-1] == '\t'))
    e--;
  const char *b = e;
  while (b > start && (isalnum((unsigned char)b[-1]) || b[-1] == '_'))
    b--;
  size_t n = (size_t)(e - b);
  if (n == 0)
    return false;
  for (size_t i = 0; secret_keys[i] != NULL; i++)
    if (strlen(secret_keys[i]) == n && strncasecmp(b, secret_keys[i], n) == 0)
      return true;
  return false;
}

/* The end of the value that starts at v: a '...' quoted conninfo value
 * (with \' escapes), else up to '&', '#', a space or the end. */
static const char *value_end(const char *v) {
  if (*v == '\'') {
    const char *p = v + 1;
    while (*p != '\0' && *p != '\'') {
      if (*p == '\\' && p[1] != '\0')
        p++;
      p++;
    }
    return *p == '\'' ? p + 1 : p;
  }
  while (*v != '\0' && *v != '&' && *v != '#' && !isspace((unsigned char)*v) && *v != '"')
    v++;
  return v;
}

/* At s[0] == ':' of "scheme://": if an authority with userinfo follows,
 * write the scheme separator, then "user:***@" (or "***@"), and return the host;
 * else NULL. */
static const char *redact_userinfo(const char *text, const char *s, outbuf_t *o) {
  const char *sch = s;
  while (sch > text && is_scheme_char(sch[-1]))
    sch--;
  if (sch == s)
    return NULL;
  bool redis = (size_t)(s - sch) >= 5 && strncasecmp(s - 5, "redis", 5) == 0;
  redis = redis || ((size_t)(s - sch) >= 6 && strncasecmp(s - 6, "rediss", 6) == 0);
  const char *auth = s + 3, *at = NULL, *p = auth;
  for (; !ends_authority(*p); p++)
    if (*p == '@')
      at = p; /* the last '@' of the authority ends the userinfo */
  if (at == NULL)
    return NULL;
  const char *colon = memchr(auth, ':', (size_t)(at - auth));
  put(o, "://", 3);
  if (colon != NULL) {
    put(o, auth, (size_t)(colon - auth));
    put(o, ":" SRV_REDACTED, 1 + strlen(SRV_REDACTED));
  } else if (redis) {
    put(o, SRV_REDACTED, strlen(SRV_REDACTED));
  } else {
    put(o, auth, (size_t)(at - auth));
  }
  put(o, "@", 1);
  return at + 1;
}

char *srv_url_redact(const char *in, char *out, size_t cap) {
  outbuf_t o = {out, cap, 0};
  if (cap > 0)
    out[0] = '\0';
  if (in == NULL)
    return out;
  const char *copied = in; /* everything before this is in out */
  for (const char *s = in; *s != '\0'; s++) {
    if (s[0] == ':' && s[1] == '/' && s[2] == '/') {
      put(&o, copied, (size_t)(s - copied));
      const char *host = redact_userinfo(in, s, &o);
      if (host != NULL) {
        copied = host;
        s = host - 1;
      } else {
        copied = s;
      }
    } else if (s[0] == '=' && secret_key_before(in, s)) {
      const char *v = s + 1;
      while (*v == ' ' || *v == '\t')
        v++;
      const char *e = value_end(v);
      put(&o, copied, (size_t)(v - copied));
      put(&o, SRV_REDACTED, strlen(SRV_REDACTED));
      copied = e;
      s = e - 1;
    }
  }
  put(&o, copied, strlen(copied));
  return out;
}
