/* http.h - HTTP/1.1 for racecheck: URL parsing, request serialisation and
 * response handling on top of http-parser (the parser wrk uses; racecheck
 * never parses HTTP by hand).
 *
 * A response is fed in pieces as they arrive from the socket. The handler
 * stops exactly at the end of one message (it pauses the parser in
 * on_message_complete), so bytes after it -- which a well-behaved server
 * never sends to a client that does not pipeline -- are reported to the
 * caller rather than silently parsed as a second answer.
 *
 * None of these functions is thread-safe on a shared object; distinct
 * objects may be used from distinct threads.
 */
#ifndef RC_HTTP_H
#define RC_HTTP_H

#include <http_parser.h>
#include <stddef.h>
#include <stdint.h>

#include "rc.h"

/* --------------------------------------------------------------- URLs */

typedef struct rc_url {
  char host[256];
  uint16_t port;
  char hostport[300]; /* "host:port" as sent in the Host header */
  char *path;         /* path and query, "/" when empty; owned */
  int tls;            /* https */
} rc_url_t;

/* Parse an absolute http:// or https:// URL (default ports 80 and 443).
 * Returns 0, or -1 with a message in err (other schemes are refused). The
 * caller frees with rc_url_free. */
int rc_url_parse(const char *s, rc_url_t *out, rc_err_t *err);
void rc_url_free(rc_url_t *u);

/* --------------------------------------------------------------- responses */

enum {
  RC_RESP_BODY = 1,    /* keep the body in `body` */
  RC_RESP_HEADERS = 2, /* keep every header (lower-cased names) */
  RC_RESP_HEAD = 4,    /* answer to a HEAD request: no body follows */
};

/* Results of rc_resp_feed / rc_resp_eof. */
enum {
  RC_RESP_MORE = 0,     /* need more bytes */
  RC_RESP_DONE = 1,     /* one complete message */
  RC_RESP_EPROTO = -1,  /* not HTTP, or a malformed message */
  RC_RESP_ETRUNC = -2,  /* the connection ended inside a message */
  RC_RESP_ECLOSED = -3, /* the connection ended before any byte of one */
  RC_RESP_ETOOBIG = -4, /* body larger than the configured limit */
};

typedef struct rc_resp {
  http_parser parser;
  unsigned flags;
  int status;       /* status code, once the status line was read */
  int done;         /* a complete message was parsed */
  int keep_alive;   /* the connection may be reused after this message */
  int hdr_last;     /* 0 none, 1 field, 2 value: header callback state */
  size_t nread;     /* bytes of this message fed so far */
  size_t body_len;  /* body bytes seen (kept or not) */
  size_t max_body;  /* limit for a kept body (0: 64 MiB) */
  rc_buf_t body;    /* the body (RC_RESP_BODY) */
  rc_buf_t headers; /* "name\0value\0" pairs (RC_RESP_HEADERS) */
  rc_buf_t field;   /* header field being read */
  size_t value_off; /* offset in `headers` of the value being read */
} rc_resp_t;

/* Prepare r for a new response. Keeps the buffers' storage for reuse. */
void rc_resp_reset(rc_resp_t *r, unsigned flags);
/* Release the buffers. */
void rc_resp_free(rc_resp_t *r);
/* Feed len bytes; *used receives how many belong to this message. Returns
 * RC_RESP_MORE, RC_RESP_DONE or a negative error. */
int rc_resp_feed(rc_resp_t *r, const char *data, size_t len, size_t *used);
/* The peer closed the connection: completes a read-until-close body, or
 * tells which error that is. */
int rc_resp_eof(rc_resp_t *r);
/* Value of a header (name compared case-insensitively), or NULL. Needs
 * RC_RESP_HEADERS. The string lives as long as the response. */
const char *rc_resp_header(const rc_resp_t *r, const char *name);
/* The next value of a header that may repeat (Set-Cookie): the first with
 * prev NULL, then the one after prev (a value this function returned). */
const char *rc_resp_header_next(const rc_resp_t *r, const char *name, const char *prev);
/* A short name for a response error code ("EPROTO", ...). */
const char *rc_resp_strerror(int rc);

/* --------------------------------------------------------------- requests */

typedef struct rc_header {
  const char *name;
  const char *value;
} rc_header_t;

/* Serialise a request into out (appending). `path` is the request target
 * ("/x?y=1"); headers that the caller gives replace racecheck's defaults
 * (User-Agent, Accept, Content-Type); Content-Length is always computed. */
void rc_req_build(rc_buf_t *out, const char *method, const char *hostport, const char *path,
                  const rc_header_t *headers, size_t nheaders, const char *body, size_t body_len);

#endif /* RC_HTTP_H */
