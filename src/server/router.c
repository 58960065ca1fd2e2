/* router.c - see router.h. */
#include "router.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

unsigned srv_method_bit(const char *method) {
  if (method == NULL)
    return 0;
  if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
    return SRV_M_GET;
  if (strcmp(method, "POST") == 0)
    return SRV_M_POST;
  if (strcmp(method, "PUT") == 0)
    return SRV_M_PUT;
  if (strcmp(method, "DELETE") == 0)
    return SRV_M_DELETE;
  if (strcmp(method, "PATCH") == 0)
    return SRV_M_PATCH;
  return 0;
}

/* Match path against pattern; on success fill params. */
static bool match_pattern(const char *pattern, const char *path, srv_match_t *m) {
  size_t np = 0;
  const char *a = pattern, *b = path;
  if (*a != '/' || *b != '/')
    return false;
  while (*a == '/' && *b == '/') {
    a++;
    b++;
    const char *ae = strchr(a, '/'), *be = strchr(b, '/');
    size_t al = ae ? (size_t)(ae - a) : strlen(a);
    size_t bl = be ? (size_t)(be - b) : strlen(b);
    if (al >= 2 && a[0] == '{' && a[al - 1] == '}') {
      if (bl == 0 || np >= SRV_MAX_PARAMS)
        return false;
      m->params[np].p = b;
      m->params[np].len = bl;
      np++;
    } else if (al != bl || memcmp(a, b, al) != 0) {
      return false;
    }
    a += al;
    b += bl;
  }
  if (*a != '\0' || *b != '\0')
    return false;
  m->nparams = np;
  return true;
}

srv_route_result_t srv_router_match(const srv_route_t *routes, size_t nroutes, const char *method,
                                    const char *path, srv_match_t *m) {
  memset(m, 0, sizeof *m);
  unsigned want = srv_method_bit(method);
  unsigned allow = 0;
  if (path == NULL)
    return SRV_ROUTE_NOT_FOUND;
  for (size_t i = 0; i < nroutes; i++) {
    srv_match_t cand;
    memset(&cand, 0, sizeof cand);
    if (!match_pattern(routes[i].pattern, path, &cand))
      continue;
    if (routes[i].method & want) {
      *m = cand;
      m->route = &routes[i];
      m->index = i;
      return SRV_ROUTE_FOUND;
    }
    allow |= routes[i].method;
  }
  if (allow == 0)
    return SRV_ROUTE_NOT_FOUND;
  m->allow = allow;
  return SRV_ROUTE_BAD_METHOD;
}

char *srv_allow_header(unsigned allow, char *buf, size_t cap) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{SRV_M_GET, "GET, HEAD"},
               {SRV_M_POST, "POST"},
               {SRV_M_PUT, "PUT"},
               {SRV_M_DELETE, "DELETE"},
               {SRV_M_PATCH, "PATCH"}};
  size_t used = 0;
  if (cap == 0)
    return buf;
  buf[0] = '\0';
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(allow & names[i].bit))
      continue;
    int n = snprintf(buf + used, cap - used, "%s%s", used ? ", " : "", names[i].name);
    if (n < 0 || (size_t)n >= cap - used)
      break;
    used += (size_t)n;
  }
  return buf;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

/* One pass of the two-step decoding (router.h): the first step decodes
 * everything but %2F, %25, %00; the final step decodes %2F and %25. */
static size_t unescape(char *s, bool final) {
  char *w = s;
  for (const char *r = s; *r != '\0';) {
    int hi, lo;
    if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0) {
      int c = hi * 16 + lo;
      bool kept = c == '/' || c == '%' || c == 0; /* what the first step leaves encoded */
      if (final ? (kept && c != 0) : !kept) {
        *w++ = (char)c;
        r += 3;
        continue;
      }
    }
    *w++ = *r++;
  }
  *w = '\0';
  return (size_t)(w - s);
}

size_t srv_unescape_keep(char *s) {
  return s ? unescape(s, false) : 0;
}

size_t srv_unescape_final(char *s) {
  return s ? unescape(s, true) : 0;
}
