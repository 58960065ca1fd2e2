/* router.h - method + path -> route, with path parameters.
 *
 * A route pattern is a path whose segments are literals or `{name}`
 * placeholders ("/wallets/{userId}/withdraw"). A placeholder matches one
 * non-empty segment; literals match exactly; the segment counts must be
 * equal (no trailing-slash or prefix matching). The table is a plain array
 * searched in order: a handful of routes, no allocation, pure, so the unit
 * tests and the fuzz target call it directly.
 *
 * Results: a route whose pattern and method match; or "method not allowed"
 * with the set of methods that the path does accept (for the Allow
 * header); or "not found". HEAD is answered as GET.
 */
#ifndef RACEFREED_ROUTER_H
#define RACEFREED_ROUTER_H

#include <stddef.h>

#define SRV_MAX_PARAMS 4

enum {
  SRV_M_GET = 1u << 0,
  SRV_M_POST = 1u << 1,
  SRV_M_PUT = 1u << 2,
  SRV_M_DELETE = 1u << 3,
  SRV_M_PATCH = 1u << 4,
};

typedef struct srv_route {
  const char *pattern;   /* "/users/{id}" */
  void (*handler)(void); /* opaque to the router (cast back by the HTTP glue) */
  unsigned method;       /* one SRV_M_* bit */
  unsigned flags;        /* opaque to the router (the HTTP glue's per-route flags) */
} srv_route_t;

typedef struct srv_span {
  const char *p; /* into the matched path (not NUL-terminated) */
  size_t len;
} srv_span_t;

typedef enum {
  SRV_ROUTE_FOUND = 0,
  SRV_ROUTE_NOT_FOUND = 1,
  SRV_ROUTE_BAD_METHOD = 2,
} srv_route_result_t;

typedef struct srv_match {
  const srv_route_t *route; /* SRV_ROUTE_FOUND */
  size_t index;             /* the route's index in the table */
  size_t nparams;
  srv_span_t params[SRV_MAX_PARAMS];
  unsigned allow; /* SRV_ROUTE_BAD_METHOD: methods the path accepts */
} srv_match_t;

/* srv_method_bit: "GET" -> SRV_M_GET ("HEAD" too), 0 for other methods. */
unsigned srv_method_bit(const char *method);

/* srv_router_match: find the route for method + path (path without query
 * string). Never fails; *m is always written. */
srv_route_result_t srv_router_match(const srv_route_t *routes, size_t nroutes, const char *method,
                                    const char *path, srv_match_t *m);

/* srv_allow_header: render an Allow mask ("GET, HEAD, PUT") into buf.
 * Returns buf. */
char *srv_allow_header(unsigned allow, char *buf, size_t cap);

/* Percent-decoding in two steps, so that an encoded '/' inside a path
 * parameter is data ("/inventory/items/a%2Fb" is the item "a/b", an invalid
 * id: 400) and not a segment separator (404).
 *
 * srv_unescape_keep: decode every %XX of s in place except %2F, %25 and
 * %00, which stay encoded; malformed escapes stay as they are. Returns the
 * new length. Used as libmicrohttpd's unescape callback, before routing.
 * srv_unescape_final: decode the %2F and %25 that srv_unescape_keep kept
 * (after routing, per parameter or query value); %00 stays the three
 * characters "%00" so a NUL can never truncate a value. Returns the new
 * length. Together they equal one full decoding, NUL aside. */
size_t srv_unescape_keep(char *s);
size_t srv_unescape_final(char *s);

#endif /* RACEFREED_ROUTER_H */
