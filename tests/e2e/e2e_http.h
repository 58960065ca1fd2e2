/* e2e_http.h - a small HTTP/1.1 client for the end-to-end tests.
 *
 * Blocking sockets to 127.0.0.1, responses parsed with http-parser (the
 * parser wrk uses: Content-Length, chunked and read-until-close bodies),
 * keep-alive connections, and a burst helper that makes N requests arrive
 * at the server together: it opens all N connections first, then writes the
 * N requests back to back from one thread (a few microseconds for all of
 * them, far less than any simulated delay of the server), then collects the
 * N responses with poll(). Every function returns 0 or a negative errno.
 */
#ifndef E2E_HTTP_H
#define E2E_HTTP_H

#include <stddef.h>

#define E2E_MAX_HEADERS 64

typedef struct e2e_resp {
  int status; /* HTTP status, 0 when no complete response arrived */
  int err;    /* 0, or -errno (-ETIMEDOUT, -ECONNRESET, -EPROTO...) */
  int nheaders;
  char *names[E2E_MAX_HEADERS]; /* as received */
  char *values[E2E_MAX_HEADERS];
  char *body; /* NUL-terminated (never NULL after a response) */
  size_t body_len;
  int keep_alive; /* the server keeps the connection open */
  double ms;      /* from the request's last byte written to the response */
} e2e_resp_t;

/* The value of header `name` (case-insensitive), or NULL. */
const char *e2e_header(const e2e_resp_t *r, const char *name);
/* Free what a response owns and zero it; safe on a zeroed response. */
void e2e_resp_free(e2e_resp_t *r);

typedef struct e2e_conn {
  int fd;
  int port;
  int reusable;  /* the last response allowed keep-alive */
  char *pending; /* bytes received beyond the last response */
  size_t npending;
} e2e_conn_t;

/* Connect to 127.0.0.1:port (TCP_NODELAY). */
int e2e_conn_open(e2e_conn_t *c, int port);
void e2e_conn_close(e2e_conn_t *c);
/* Write all n bytes (no SIGPIPE). */
int e2e_conn_send(e2e_conn_t *c, const void *data, size_t n);
/* Read one response within timeout_ms. On failure r->status == 0 and
 * r->err says why; the return value is r->err. */
int e2e_conn_read(e2e_conn_t *c, e2e_resp_t *r, int timeout_ms);
/* Send one request (reconnecting first if the previous response closed the
 * connection) and read its response. The request goes out in 64 KiB pieces
 * and sending stops early when an answer arrives first (a 413 decided from
 * Content-Length): writing on into a connection the server closed draws a
 * reset that can destroy the answer. body may be NULL; extra_headers is
 * NULL or raw lines each ending in "\r\n". */
int e2e_conn_call(e2e_conn_t *c, const char *method, const char *path, const char *body,
                  const char *extra_headers, e2e_resp_t *r, int timeout_ms);

/* One request on a fresh connection (10 s timeout). */
int e2e_call(int port, const char *method, const char *path, const char *body, e2e_resp_t *r);

/* A request as text: "METHOD path HTTP/1.1", Host, Content-Type and
 * Content-Length when body != NULL, extra headers, body. malloc'd. */
char *e2e_format(const char *method, const char *path, const char *body, const char *extra_headers,
                 size_t *len);

typedef struct e2e_req {
  const char *method;
  const char *path;
  const char *body;    /* NULL: no body */
  const char *headers; /* NULL or raw lines ending "\r\n" */
} e2e_req_t;

/* e2e_burst: send reqs[0..n-1] on n fresh connections released together
 * (see the top of this file) and store the responses in out[0..n-1]
 * (zeroed first; free each with e2e_resp_free). Individual failures are in
 * out[i].status/err; returns a negative errno only when the burst could
 * not be set up (a connection failed). */
int e2e_burst(int port, int n, const e2e_req_t *reqs, e2e_resp_t *out, int timeout_ms);

/* Percentile p (0..100) of n latencies (sorted in place). */
double e2e_percentile(double *ms, int n, double p);

/* Milliseconds on the monotonic clock. */
double e2e_now_ms(void);

#endif /* E2E_HTTP_H */
