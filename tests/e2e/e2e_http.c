/* e2e_http.c - the end-to-end tests' HTTP/1.1 client (see e2e_http.h). */
#include "e2e_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <http_parser.h>

double e2e_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

const char *e2e_header(const e2e_resp_t *r, const char *name) {
  for (int i = 0; i < r->nheaders; i++)
    if (r->names[i] && strcasecmp(r->names[i], name) == 0)
      return r->values[i] ? r->values[i] : "";
  return NULL;
}

void e2e_resp_free(e2e_resp_t *r) {
  for (int i = 0; i < r->nheaders; i++) {
    free(r->names[i]);
    free(r->values[i]);
  }
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* ------------------------------------------------------------- parsing */

/* One response being parsed. http-parser calls back with pieces of header
 * names and values that may be split across reads: `last` remembers which
 * of the two the previous piece belonged to. */
typedef struct reader {
  http_parser p;
  e2e_resp_t *r;
  int complete;
  int last; /* 0 none, 1 field, 2 value */
  size_t body_cap;
  int oom;
} reader_t;

static int append(char **s, size_t *len, size_t *cap, const char *at, size_t n) {
  if (*len + n + 1 > *cap) {
    size_t nc = *cap ? *cap : 64;
    while (nc < *len + n + 1)
      nc *= 2;
    char *ns = realloc(*s, nc);
    if (!ns)
      return -1;
    *s = ns;
    *cap = nc;
  }
  memcpy(*s + *len, at, n);
  *len += n;
  (*s)[*len] = '\0';
  return 0;
}

static int append_str(char **s, const char *at, size_t n) {
  size_t len = *s ? strlen(*s) : 0, cap = *s ? len + 1 : 0;
  return append(s, &len, &cap, at, n);
}

static int on_header_field(http_parser *p, const char *at, size_t n) {
  reader_t *rd = p->data;
  e2e_resp_t *r = rd->r;
  if (rd->last != 1) {
    if (r->nheaders == E2E_MAX_HEADERS)
      return 0; /* ignore headers beyond the limit */
    r->nheaders++;
  }
  rd->last = 1;
  if (append_str(&r->names[r->nheaders - 1], at, n) != 0)
    rd->oom = 1;
  return rd->oom;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
  reader_t *rd = p->data;
  e2e_resp_t *r = rd->r;
  rd->last = 2;
  if (r->nheaders == 0)
    return 0;
  if (append_str(&r->values[r->nheaders - 1], at, n) != 0)
    rd->oom = 1;
  return rd->oom;
}

static int on_headers_complete(http_parser *p) {
  reader_t *rd = p->data;
  rd->r->status = (int)p->status_code;
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  reader_t *rd = p->data;
  if (append(&rd->r->body, &rd->r->body_len, &rd->body_cap, at, n) != 0)
    rd->oom = 1;
  return rd->oom;
}

static int on_message_complete(http_parser *p) {
  reader_t *rd = p->data;
  rd->complete = 1;
  rd->r->keep_alive = http_should_keep_alive(p);
  http_parser_pause(p, 1); /* bytes after this message belong to the next */
  return 0;
}

static const http_parser_settings settings = {
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void reader_init(reader_t *rd, e2e_resp_t *r) {
  memset(rd, 0, sizeof *rd);
  memset(r, 0, sizeof *r);
  http_parser_init(&rd->p, HTTP_RESPONSE);
  rd->p.data = rd;
  rd->r = r;
}

/* Feed bytes; returns how many were consumed, or -EPROTO/-ENOMEM. n == 0
 * means the peer closed the connection. */
static long reader_feed(reader_t *rd, const char *buf, size_t n) {
  size_t used = http_parser_execute(&rd->p, &settings, buf, n);
  if (rd->oom)
    return -ENOMEM;
  enum http_errno e = HTTP_PARSER_ERRNO(&rd->p);
  if (e != HPE_OK && e != HPE_PAUSED)
    return -EPROTO;
  return (long)used;
}

/* Finish a response: an empty body becomes "", failures zero the status. */
static void reader_finish(reader_t *rd, int err, double t0) {
  e2e_resp_t *r = rd->r;
  if (!r->body) {
    r->body = calloc(1, 1);
    r->body_len = 0;
  }
  if (err || !rd->complete) {
    r->status = 0;
    r->err = err ? err : -ECONNRESET;
  }
  r->ms = e2e_now_ms() - t0;
}

/* ---------------------------------------------------------- connections */

static int connect_port(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    int e = -errno;
    close(fd);
    return e;
  }
  return fd;
}

int e2e_conn_open(e2e_conn_t *c, int port) {
  memset(c, 0, sizeof *c);
  c->fd = -1;
  c->port = port;
  int fd = connect_port(port);
  if (fd < 0)
    return fd;
  c->fd = fd;
  c->reusable = 1;
  return 0;
}

void e2e_conn_close(e2e_conn_t *c) {
  if (c->fd >= 0)
    close(c->fd);
  c->fd = -1;
  free(c->pending);
  c->pending = NULL;
  c->npending = 0;
}

static int send_all(int fd, const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int e2e_conn_send(e2e_conn_t *c, const void *data, size_t n) {
  return c->fd < 0 ? -ENOTCONN : send_all(c->fd, data, n);
}

/* Send a request in pieces, stopping early when the server has answered
 * already (e.g. 413 from the Content-Length alone, before the body): a
 * server that rejects a body closes the connection, and writing on into a
 * closed connection draws a reset that can destroy the answer before it is
 * read. 0: all sent; 1: stopped because an answer is waiting; < 0: error. */
static int send_watching(int fd, const char *p, size_t n) {
  while (n > 0) {
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    if (poll(&pf, 1, 0) == 1)
      return 1;
    size_t piece = n < 65536 ? n : 65536;
    int rc = send_all(fd, p, piece);
    if (rc != 0)
      return rc;
    p += piece;
    n -= piece;
  }
  return 0;
}

/* Keep what follows a complete response for the next read. */
static void keep_pending(e2e_conn_t *c, const char *buf, size_t n) {
  char *p = n ? malloc(n) : NULL;
  if (p)
    memcpy(p, buf, n);
  free(c->pending);
  c->pending = p;
  c->npending = p ? n : 0;
}

int e2e_conn_read(e2e_conn_t *c, e2e_resp_t *r, int timeout_ms) {
  reader_t rd;
  reader_init(&rd, r);
  double t0 = e2e_now_ms(), deadline = t0 + timeout_ms;
  int err = 0;
  if (c->npending) {
    char *buf = c->pending;
    size_t n = c->npending;
    c->pending = NULL;
    c->npending = 0;
    long used = reader_feed(&rd, buf, n);
    if (used < 0)
      err = (int)used;
    else if (rd.complete)
      keep_pending(c, buf + used, n - (size_t)used);
    free(buf);
  }
  static __thread char buf[65536];
  while (!err && !rd.complete) {
    if (c->fd < 0) {
      err = -ENOTCONN;
      break;
    }
    int left = (int)(deadline - e2e_now_ms());
    if (left <= 0) {
      err = -ETIMEDOUT;
      break;
    }
    struct pollfd pf = {.fd = c->fd, .events = POLLIN};
    int pr = poll(&pf, 1, left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0) {
      err = pr == 0 ? -ETIMEDOUT : -errno;
      break;
    }
    ssize_t n = recv(c->fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = -errno;
      break;
    }
    long used = reader_feed(&rd, buf, (size_t)n);
    if (used < 0) {
      err = (int)used;
      break;
    }
    if (n == 0) { /* closed: complete only if the body ran until close */
      c->reusable = 0;
      if (!rd.complete)
        err = -ECONNRESET;
      break;
    }
    if (rd.complete)
      keep_pending(c, buf + used, (size_t)n - (size_t)used);
  }
  reader_finish(&rd, err, t0);
  if (r->status == 0 || !r->keep_alive)
    c->reusable = 0;
  return r->err;
}

char *e2e_format(const char *method, const char *path, const char *body, const char *extra_headers,
                 size_t *len) {
  size_t blen = body ? strlen(body) : 0;
  size_t cap =
      strlen(method) + strlen(path) + (extra_headers ? strlen(extra_headers) : 0) + blen + 160;
  char *s = malloc(cap);
  if (!s)
    return NULL;
  int n;
  if (body)
    n = snprintf(s, cap,
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\n%s\r\n",
                 method, path, blen, extra_headers ? extra_headers : "");
  else
    n = snprintf(s, cap, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method, path,
                 extra_headers ? extra_headers : "");
  memcpy(s + n, body ? body : "", blen + 1);
  if (len)
    *len = (size_t)n + blen;
  return s;
}

int e2e_conn_call(e2e_conn_t *c, const char *method, const char *path, const char *body,
                  const char *extra_headers, e2e_resp_t *r, int timeout_ms) {
  if (c->fd < 0 || !c->reusable) {
    int port = c->port;
    e2e_conn_close(c);
    int rc = e2e_conn_open(c, port);
    if (rc != 0) {
      memset(r, 0, sizeof *r);
      r->err = rc;
      r->body = calloc(1, 1);
      return rc;
    }
  }
  size_t len;
  char *req = e2e_format(method, path, body, extra_headers, &len);
  if (!req)
    return -ENOMEM;
  int rc = send_watching(c->fd, req, len);
  free(req);
  if (rc != 0) /* stopped early or failed: an answer may be waiting anyway */
    c->reusable = 0;
  rc = e2e_conn_read(c, r, timeout_ms);
  c->reusable = c->reusable && r->status != 0;
  return rc;
}

int e2e_call(int port, const char *method, const char *path, const char *body, e2e_resp_t *r) {
  e2e_conn_t c;
  int rc = e2e_conn_open(&c, port);
  if (rc != 0) {
    memset(r, 0, sizeof *r);
    r->err = rc;
    r->body = calloc(1, 1);
    return rc;
  }
  rc = e2e_conn_call(&c, method, path, body, NULL, r, 10000);
  e2e_conn_close(&c);
  return rc;
}

/* --------------------------------------------------------------- burst */

int e2e_burst(int port, int n, const e2e_req_t *reqs, e2e_resp_t *out, int timeout_ms) {
  int rc = 0;
  memset(out, 0, (size_t)n * sizeof *out);
  int *fds = calloc((size_t)n, sizeof *fds);
  char **texts = calloc((size_t)n, sizeof *texts);
  size_t *lens = calloc((size_t)n, sizeof *lens);
  double *t0 = calloc((size_t)n, sizeof *t0);
  reader_t *rds = calloc((size_t)n, sizeof *rds);
  struct pollfd *pfs = calloc((size_t)n, sizeof *pfs);
  if (!fds || !texts || !lens || !t0 || !rds || !pfs) {
    rc = -ENOMEM;
    goto out;
  }
  for (int i = 0; i < n; i++)
    fds[i] = -1;
  /* 1. every connection established and every request formatted... */
  for (int i = 0; i < n && rc == 0; i++) {
    reader_init(&rds[i], &out[i]);
    texts[i] = e2e_format(reqs[i].method, reqs[i].path, reqs[i].body, reqs[i].headers, &lens[i]);
    if (!texts[i])
      rc = -ENOMEM;
    else if ((fds[i] = connect_port(port)) < 0)
      rc = fds[i];
  }
  if (rc != 0)
    goto out;
  /* 2. ...then all requests written back to back... */
  for (int i = 0; i < n; i++) {
    t0[i] = e2e_now_ms();
    int e = send_all(fds[i], texts[i], lens[i]);
    if (e != 0)
      out[i].err = e;
  }
  /* 3. ...then every response collected as it comes. */
  double deadline = e2e_now_ms() + timeout_ms;
  static __thread char buf[65536];
  for (;;) {
    int waiting = 0;
    for (int i = 0; i < n; i++) {
      int active = !rds[i].complete && !out[i].err;
      pfs[i].fd = active ? fds[i] : -1;
      pfs[i].events = POLLIN;
      pfs[i].revents = 0;
      waiting += active;
    }
    int left = (int)(deadline - e2e_now_ms());
    if (waiting == 0 || left <= 0)
      break;
    int pr = poll(pfs, (nfds_t)n, left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      break;
    for (int i = 0; i < n; i++) {
      if (!pfs[i].revents)
        continue;
      ssize_t got = recv(fds[i], buf, sizeof buf, 0);
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0) {
        out[i].err = -errno;
        continue;
      }
      long used = reader_feed(&rds[i], buf, (size_t)got);
      if (used < 0)
        out[i].err = (int)used;
      else if (got == 0 && !rds[i].complete)
        out[i].err = -ECONNRESET;
      if (rds[i].complete)
        out[i].ms = e2e_now_ms() - t0[i];
    }
  }
  for (int i = 0; i < n; i++) {
    double ms = out[i].ms;
    int e = out[i].err ? out[i].err : (rds[i].complete ? 0 : -ETIMEDOUT);
    reader_finish(&rds[i], e, t0[i]);
    if (!e)
      out[i].ms = ms;
  }
out:
  if (fds)
    for (int i = 0; i < n; i++)
      if (fds[i] >= 0)
        close(fds[i]);
  if (texts)
    for (int i = 0; i < n; i++)
      free(texts[i]);
  free(fds);
  free(texts);
  free(lens);
  free(t0);
  free(rds);
  free(pfs);
  return rc;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

double e2e_percentile(double *ms, int n, double p) {
  if (n <= 0)
    return 0;
  qsort(ms, (size_t)n, sizeof *ms, cmp_double);
  int idx = (int)(p / 100.0 * (n - 1) + 0.5);
  if (idx < 0)
    idx = 0;
  if (idx >= n)
    idx = n - 1;
  return ms[idx];
}
