/* http.c - see http.h. */
#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* --------------------------------------------------------------- URLs */

void rc_url_free(rc_url_t *u) {
  free(u->path);
  u->path = NULL;
}

int rc_url_parse(const char *s, rc_url_t *out, rc_err_t *err) {
  memset(out, 0, sizeof *out);
  struct http_parser_url pu;
  http_parser_url_init(&pu);
  size_t n = strlen(s);
  if (n == 0 || http_parser_parse_url(s, n, 0, &pu) != 0) {
    rc_err_set(err, 0, 0, "invalid URL '%s'", s);
    return -1;
  }
  if (!(pu.field_set & (1u << UF_SCHEMA)) || !(pu.field_set & (1u << UF_HOST))) {
    rc_err_set(err, 0, 0, "URL '%s' must be absolute (http://host:port/path)", s);
    return -1;
  }
  const char *schema = s + pu.field_data[UF_SCHEMA].off;
  size_t slen = pu.field_data[UF_SCHEMA].len;
  int tls = slen == 5 && strncasecmp(schema, "https", 5) == 0;
  if (!tls && !(slen == 4 && strncasecmp(schema, "http", 4) == 0)) {
    rc_err_set(err, 0, 0, "URL '%s': only http:// and https:// are supported", s);
    return -1;
  }
  out->tls = tls;
  size_t hlen = pu.field_data[UF_HOST].len;
  if (hlen == 0 || hlen >= sizeof out->host) {
    rc_err_set(err, 0, 0, "URL '%s': bad host", s);
    return -1;
  }
  memcpy(out->host, s + pu.field_data[UF_HOST].off, hlen);
  out->host[hlen] = '\0';
  out->port = (pu.field_set & (1u << UF_PORT)) ? pu.port : (tls ? 443 : 80);
  int ipv6 = strchr(out->host, ':') != NULL;
  snprintf(out->hostport, sizeof out->hostport, ipv6 ? "[%s]:%u" : "%s:%u", out->host,
           (unsigned)out->port);
  rc_buf_t p = {0};
  if (pu.field_set & (1u << UF_PATH)) {
    rc_buf_append(&p, s + pu.field_data[UF_PATH].off, pu.field_data[UF_PATH].len);
  } else {
    rc_buf_putc(&p, '/');
  }
  if (pu.field_set & (1u << UF_QUERY)) {
    rc_buf_putc(&p, '?');
    rc_buf_append(&p, s + pu.field_data[UF_QUERY].off, pu.field_data[UF_QUERY].len);
  }
  out->path = rc_buf_steal(&p);
  return 0;
}

/* --------------------------------------------------------------- responses */

#define RC_DEFAULT_MAX_BODY (64u << 20)

static int rc__on_header_field(http_parser *p, const char *at, size_t len) {
  rc_resp_t *r = p->data;
  if (!(r->flags & RC_RESP_HEADERS)) {
    return 0;
  }
  if (r->hdr_last == 2) {
    rc_buf_putc(&r->headers, '\0'); /* the previous value is complete */
  }
  if (r->hdr_last != 1) {
    rc_buf_clear(&r->field);
  }
  rc_buf_append(&r->field, at, len);
  r->hdr_last = 1;
  return 0;
}

static int rc__on_header_value(http_parser *p, const char *at, size_t len) {
  rc_resp_t *r = p->data;
  if (!(r->flags & RC_RESP_HEADERS)) {
    return 0;
  }
  if (r->hdr_last != 2) {
    /* a new header: store the lower-cased name, then the value grows */
    for (size_t i = 0; i < r->field.len; i++) {
      char c = r->field.data[i];
      rc_buf_putc(&r->headers, (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c);
    }
    rc_buf_putc(&r->headers, '\0');
    r->value_off = r->headers.len;
  }
  rc_buf_append(&r->headers, at, len);
  r->hdr_last = 2;
  return 0;
}

static void rc__end_header(rc_resp_t *r) {
  if (r->hdr_last == 2) {
    rc_buf_putc(&r->headers, '\0');
  } else if (r->hdr_last == 1) {
    /* a field without a value: store it with an empty value */
    rc_buf_append(&r->headers, r->field.data, r->field.len);
    rc_buf_putc(&r->headers, '\0');
    rc_buf_putc(&r->headers, '\0');
  }
  r->hdr_last = 0;
}

static int rc__on_headers_complete(http_parser *p) {
  rc_resp_t *r = p->data;
  r->status = (int)p->status_code;
  if (r->flags & RC_RESP_HEADERS) {
    rc__end_header(r);
  }
  /* 1: tell http-parser that no body follows (HEAD) */
  return (r->flags & RC_RESP_HEAD) ? 1 : 0;
}

static int rc__on_body(http_parser *p, const char *at, size_t len) {
  rc_resp_t *r = p->data;
  r->body_len += len;
  if (r->flags & RC_RESP_BODY) {
    size_t max = r->max_body ? r->max_body : RC_DEFAULT_MAX_BODY;
    if (r->body.len + len > max) {
      return -1;
    }
    rc_buf_append(&r->body, at, len);
  }
  return 0;
}

static int rc__on_message_complete(http_parser *p) {
  rc_resp_t *r = p->data;
  r->done = 1;
  r->status = (int)p->status_code;
  r->keep_alive = http_should_keep_alive(p);
  http_parser_pause(p, 1);
  return 0;
}

static const http_parser_settings rc__settings = {
    .on_header_field = rc__on_header_field,
    .on_header_value = rc__on_header_value,
    .on_headers_complete = rc__on_headers_complete,
    .on_body = rc__on_body,
    .on_message_complete = rc__on_message_complete,
};

void rc_resp_reset(rc_resp_t *r, unsigned flags) {
  http_parser_init(&r->parser, HTTP_RESPONSE);
  r->parser.data = r;
  r->flags = flags;
  r->status = 0;
  r->done = 0;
  r->keep_alive = 0;
  r->hdr_last = 0;
  r->nread = 0;
  r->body_len = 0;
  r->value_off = 0;
  rc_buf_clear(&r->body);
  rc_buf_clear(&r->headers);
  rc_buf_clear(&r->field);
}

void rc_resp_free(rc_resp_t *r) {
  rc_buf_free(&r->body);
  rc_buf_free(&r->headers);
  rc_buf_free(&r->field);
}

int rc_resp_feed(rc_resp_t *r, const char *data, size_t len, size_t *used) {
  *used = 0;
  if (r->done) {
    return RC_RESP_DONE;
  }
  if (len == 0) {
    return RC_RESP_MORE;
  }
  size_t n = http_parser_execute(&r->parser, &rc__settings, data, len);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  *used = n;
  r->nread += n;
  if (r->done) {
    /* paused in on_message_complete: unpause so the parser can be reset */
    http_parser_pause(&r->parser, 0);
    return RC_RESP_DONE;
  }
  if (e == HPE_CB_body) {
    return RC_RESP_ETOOBIG;
  }
  if (e != HPE_OK) {
    return RC_RESP_EPROTO;
  }
  return RC_RESP_MORE;
}

int rc_resp_eof(rc_resp_t *r) {
  if (r->done) {
    return RC_RESP_DONE;
  }
  if (r->nread == 0) {
    return RC_RESP_ECLOSED;
  }
  if (HTTP_PARSER_ERRNO(&r->parser) != HPE_OK) {
    return RC_RESP_EPROTO;
  }
  http_parser_execute(&r->parser, &rc__settings, NULL, 0);
  if (r->done) {
    http_parser_pause(&r->parser, 0);
    r->keep_alive = 0;
    return RC_RESP_DONE;
  }
  return RC_RESP_ETRUNC;
}

const char *rc_resp_header(const rc_resp_t *r, const char *name) {
  return rc_resp_header_next(r, name, NULL);
}

const char *rc_resp_header_next(const rc_resp_t *r, const char *name, const char *prev) {
  if (!r->headers.data) {
    return NULL;
  }
  const char *p = r->headers.data;
  const char *end = p + r->headers.len;
  if (prev) {
    p = prev + strlen(prev) + 1; /* the pair after prev's value */
  }
  while (p && p < end) {
    const char *v = p + strlen(p) + 1;
    if (v >= end) {
      break;
    }
    if (strcasecmp(p, name) == 0) {
      return v;
    }
    p = v + strlen(v) + 1;
  }
  return NULL;
}

const char *rc_resp_strerror(int rc) {
  switch (rc) {
  case RC_RESP_EPROTO:
    return "EPROTO";
  case RC_RESP_ETRUNC:
    return "ETRUNCATED";
  case RC_RESP_ECLOSED:
    return "ECLOSED";
  case RC_RESP_ETOOBIG:
    return "ETOOBIG";
  default:
    return "OK";
  }
}

/* --------------------------------------------------------------- requests */

static int rc__has_header(const rc_header_t *h, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++) {
    if (strcasecmp(h[i].name, name) == 0) {
      return 1;
    }
  }
  return 0;
}

void rc_req_build(rc_buf_t *out, const char *method, const char *hostport, const char *path,
                  const rc_header_t *headers, size_t nheaders, const char *body, size_t body_len) {
  rc_buf_printf(out, "%s %s HTTP/1.1\r\n", method, (path && *path) ? path : "/");
  if (!rc__has_header(headers, nheaders, "host")) {
    rc_buf_printf(out, "Host: %s\r\n", hostport);
  }
  if (!rc__has_header(headers, nheaders, "user-agent")) {
    rc_buf_puts(out, "User-Agent: racecheck/" RC_VERSION "\r\n");
  }
  if (!rc__has_header(headers, nheaders, "accept")) {
    rc_buf_puts(out, "Accept: */*\r\n");
  }
  for (size_t i = 0; i < nheaders; i++) {
    if (strcasecmp(headers[i].name, "content-length") == 0) {
      continue;
    }
    rc_buf_printf(out, "%s: %s\r\n", headers[i].name, headers[i].value);
  }
  int has_body = body != NULL;
  if (has_body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
      strcmp(method, "PATCH") == 0) {
    rc_buf_printf(out, "Content-Length: %zu\r\n", has_body ? body_len : (size_t)0);
  }
  rc_buf_puts(out, "\r\n");
  if (has_body && body_len) {
    rc_buf_append(out, body, body_len);
  }
}
