/* net.c - see net.h. */
#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define RC_SCAN_NS (20ull * 1000000ull) /* time-out scan period */

const char *rc_net_errname(int e) {
  static const char *const names[RC_NET_NERR] = {
      "OK",     "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ECLOSED", "ETRUNCATED",
      "EPROTO", "ETOOBIG",      "ECONNECT",   "EPIPE",     "ETLS",
  };
  return (e >= 0 && e < RC_NET_NERR) ? names[e] : "EUNKNOWN";
}

/* --------------------------------------------------------------- TLS */

void *rc_tls_ctx_new(const rc_tls_opts_t *o, rc_err_t *err) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    rc_err_set(err, 0, 0, "cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  /* SSL_write may write part of a buffer, and be called again with the
   * rest at another address (the request buffer is ours, not OpenSSL's) */
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  char why[256] = "";
  if (!o->insecure) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (o->ca ? SSL_CTX_load_verify_locations(ctx, o->ca, NULL) != 1
              : SSL_CTX_set_default_verify_paths(ctx) != 1) {
      snprintf(why, sizeof why, "cannot load the CA certificates %s", o->ca ? o->ca : "");
    }
  }
  if (!why[0] && o->cert && SSL_CTX_use_certificate_chain_file(ctx, o->cert) != 1) {
    snprintf(why, sizeof why, "cannot load the client certificate %s", o->cert);
  }
  if (!why[0] && (o->key || o->cert) &&
      SSL_CTX_use_PrivateKey_file(ctx, o->key ? o->key : o->cert, SSL_FILETYPE_PEM) != 1) {
    snprintf(why, sizeof why, "cannot load the client key %s", o->key ? o->key : o->cert);
  }
  if (!why[0] && (o->key || o->cert) && SSL_CTX_check_private_key(ctx) != 1) {
    snprintf(why, sizeof why, "the client key does not match the certificate");
  }
  if (why[0]) {
    char e[200];
    ERR_error_string_n(ERR_get_error(), e, sizeof e);
    rc_err_set(err, 0, 0, "TLS: %s (%s)", why, e);
    SSL_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

void rc_tls_ctx_free(void *ctx) {
  SSL_CTX_free(ctx);
}

void rc_addr_set_tls(rc_addr_t *a, void *tls, const char *host) {
  a->tls = tls;
  size_t n = strnlen(host, sizeof a->sni - 1);
  memcpy(a->sni, host, n);
  a->sni[n] = '\0';
}

int rc_addr_resolve(const char *host, uint16_t port, rc_addr_t *out, rc_err_t *err) {
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  char ps[8];
  snprintf(ps, sizeof ps, "%u", (unsigned)port);
  int rc = getaddrinfo(host, ps, &hints, &res);
  if (rc != 0 || !res) {
    rc_err_set(err, 0, 0, "cannot resolve '%s': %s", host, gai_strerror(rc));
    return -1;
  }
  const struct addrinfo *pick = res;
  for (const struct addrinfo *a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  }
  memset(out, 0, sizeof *out);
  memset(out, 0, sizeof *out); /* no TLS unless the caller sets it */
  memcpy(&out->sa, pick->ai_addr, pick->ai_addrlen);
  out->len = pick->ai_addrlen;
  freeaddrinfo(res);
  return 0;
}

/* --------------------------------------------------------------- loop */

int rc_loop_init(rc_loop_t *l) {
  memset(l, 0, sizeof *l);
  l->epfd = epoll_create1(EPOLL_CLOEXEC);
  if (l->epfd < 0) {
    return -errno;
  }
  l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (l->evfd < 0) {
    int e = -errno;
    close(l->epfd);
    return e;
  }
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) != 0) {
    int e = -errno;
    close(l->evfd);
    close(l->epfd);
    return e;
  }
  l->rbuf_size = (size_t)64 * 1024;
  l->rbuf = rc_xmalloc(l->rbuf_size);
  return 0;
}

void rc_loop_free(rc_loop_t *l) {
  if (l->epfd > 0) {
    close(l->epfd);
  }
  if (l->evfd > 0) {
    close(l->evfd);
  }
  free(l->rbuf);
  free(l->conns);
  free(l->timers);
  free(l->deferred);
  memset(l, 0, sizeof *l);
}

void rc_loop_wake(rc_loop_t *l) {
  uint64_t one = 1;
  ssize_t n = write(l->evfd, &one, sizeof one);
  (void)n; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

static void rc__heap_up(rc_loop_t *l, uint32_t i) {
  rc_timer_t t = l->timers[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (l->timers[p].when <= t.when) {
      break;
    }
    l->timers[i] = l->timers[p];
    i = p;
  }
  l->timers[i] = t;
}

static void rc__heap_down(rc_loop_t *l, uint32_t i) {
  rc_timer_t t = l->timers[i];
  uint32_t n = l->ntimers;
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= n) {
      break;
    }
    if (c + 1 < n && l->timers[c + 1].when < l->timers[c].when) {
      c++;
    }
    if (t.when <= l->timers[c].when) {
      break;
    }
    l->timers[i] = l->timers[c];
    i = c;
  }
  l->timers[i] = t;
}

void rc_loop_timer(rc_loop_t *l, uint64_t when, rc_timer_fn fn, void *ud) {
  if (l->ntimers == l->tcap) {
    l->tcap = l->tcap ? l->tcap * 2 : 64;
    l->timers = rc_xrealloc(l->timers, l->tcap * sizeof *l->timers);
  }
  l->timers[l->ntimers] = (rc_timer_t){.when = when, .fn = fn, .ud = ud};
  rc__heap_up(l, l->ntimers++);
}

uint64_t rc_loop_next_timer(const rc_loop_t *l) {
  return l->ntimers ? l->timers[0].when : UINT64_MAX;
}

static void rc__track(rc_loop_t *l, rc_conn_t *c) {
  if (l->nconns == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 64;
    l->conns = rc_xrealloc(l->conns, l->cap * sizeof(rc_conn_t *));
  }
  c->idx = l->nconns;
  l->conns[l->nconns++] = c;
}

static void rc__untrack(rc_loop_t *l, rc_conn_t *c) {
  uint32_t i = c->idx;
  if (i >= l->nconns || l->conns[i] != c) {
    return;
  }
  l->conns[i] = l->conns[--l->nconns];
  l->conns[i]->idx = i;
}

static void rc__defer(rc_conn_t *c, int ev) {
  rc_loop_t *l = c->loop;
  if (c->deferred_ev) {
    c->deferred_ev = (uint8_t)ev;
    return;
  }
  if (l->ndeferred == l->dcap) {
    l->dcap = l->dcap ? l->dcap * 2 : 16;
    l->deferred = rc_xrealloc(l->deferred, l->dcap * sizeof(rc_conn_t *));
  }
  c->deferred_ev = (uint8_t)ev;
  l->deferred[l->ndeferred++] = c;
}

/* --------------------------------------------------------------- connections */

void rc_conn_init(rc_conn_t *c, rc_loop_t *loop, const rc_addr_t *addr, rc_conn_cb cb, void *ud) {
  memset(c, 0, sizeof *c);
  c->loop = loop;
  c->fd = -1;
  c->state = RC_CS_CLOSED;
  c->addr = addr;
  c->cb = cb;
  c->ud = ud;
}

void rc_conn_close(rc_conn_t *c) {
  if (c->fd >= 0) {
    rc__untrack(c->loop, c);
    /* Abortive close (RST): the client side keeps no TIME_WAIT entry. At
     * thousands of new connections a second TIME_WAIT sockets pile up by the
     * tens of thousands, exhaust the ephemeral ports and make every
     * connect() search the table (measured: two thirds of the CPU time in
     * __inet_hash_connect at 8000 arrivals/s). We only close a connection
     * whose answer is complete, or that failed, so nothing is lost. */
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
  }
  if (c->ssl) {
    SSL_free(c->ssl);
    c->ssl = NULL;
  }
  c->state = RC_CS_CLOSED;
  c->deadline = 0;
  c->send_after_connect = 0;
  c->nreq = 0;
}

void rc_conn_free(rc_conn_t *c) {
  rc_conn_close(c);
  /* drop a queued event: the owner is going away */
  rc_loop_t *l = c->loop;
  if (c->deferred_ev && l) {
    for (uint32_t i = 0; i < l->ndeferred; i++) {
      if (l->deferred[i] == c) {
        l->deferred[i] = NULL;
      }
    }
  }
  c->deferred_ev = 0;
  rc_resp_free(&c->resp);
}

static void rc__fail(rc_conn_t *c, int err) {
  rc_conn_close(c);
  c->err = err;
  c->cb(c, RC_CONN_EV_ERROR, c->ud);
}

static int rc__errno_kind(int e) {
  switch (e) {
  case ECONNREFUSED:
    return RC_NET_ECONNREFUSED;
  case ECONNRESET:
    return RC_NET_ECONNRESET;
  case EPIPE:
    return RC_NET_EPIPE;
  case ETIMEDOUT:
    return RC_NET_ETIMEDOUT;
  default:
    return RC_NET_ECONNECT;
  }
}

/* Start a non-blocking connect. Returns 0 (connecting or connected) or an
 * RC_NET_ error kind. */
static int rc__open(rc_conn_t *c) {
  int fd = socket(c->addr->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return RC_NET_ECONNECT;
  }
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int rc = connect(fd, (const struct sockaddr *)&c->addr->sa, c->addr->len);
  if (rc != 0 && errno != EINPROGRESS) {
    int kind = rc__errno_kind(errno);
    close(fd);
    return kind;
  }
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
  if (epoll_ctl(c->loop->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
    close(fd);
    return RC_NET_ECONNECT;
  }
  c->fd = fd;
  c->state = RC_CS_CONNECTING;
  c->nreq = 0;
  rc__track(c->loop, c);
  return 0;
}

void rc_conn_connect(rc_conn_t *c, uint64_t timeout_ns) {
  if (c->fd >= 0) {
    rc__defer(c, RC_CONN_EV_CONNECTED);
    return;
  }
  int kind = rc__open(c);
  if (kind) {
    c->err = kind;
    rc__defer(c, RC_CONN_EV_ERROR);
    return;
  }
  c->send_after_connect = 0;
  c->deadline = timeout_ns ? rc_now_ns() + timeout_ns : 0;
}

/* Write what remains of the request. Returns 0 (all written, or waiting
 * for writability) or an RC_NET_ error kind; the caller reports it. */
static int rc__write(rc_conn_t *c) {
  while (c->ssl && c->out_off < c->out_len) {
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
    if (n > 0) {
      c->out_off += (size_t)n;
      c->bytes_out += (uint64_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      c->state = RC_CS_SENDING;
      return 0;
    }
    return e == SSL_ERROR_SYSCALL && errno ? rc__errno_kind(errno) : RC_NET_EPIPE;
  }
  while (c->out_off < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c->out_off += (size_t)n;
      c->bytes_out += (uint64_t)n;
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->state = RC_CS_SENDING;
      return 0; /* the next EPOLLOUT edge continues */
    }
    return n < 0 ? rc__errno_kind(errno) : RC_NET_EPIPE;
  }
  c->state = RC_CS_WAITING;
  return 0;
}

void rc_conn_send(rc_conn_t *c, const char *buf, size_t len, unsigned resp_flags,
                  uint64_t timeout_ns) {
  c->out = buf;
  c->out_len = len;
  c->out_off = 0;
  c->resp_flags = resp_flags;
  c->timeout_ns = timeout_ns;
  rc_resp_reset(&c->resp, resp_flags);
  uint64_t now = rc_now_ns();
  c->t_send = now;
  c->deadline = timeout_ns ? now + timeout_ns : 0;
  if (c->fd < 0) {
    int kind = rc__open(c);
    if (kind) {
      c->err = kind;
      rc__defer(c, RC_CONN_EV_ERROR);
      return;
    }
  }
  if (c->state == RC_CS_CONNECTING) {
    c->send_after_connect = 1;
    return;
  }
  int kind = rc__write(c);
  if (kind) {
    rc_conn_close(c);
    c->err = kind;
    rc__defer(c, RC_CONN_EV_ERROR);
  }
}

static void rc__ready(rc_conn_t *c);

/* Drive the TLS handshake; any event on the socket calls it again. */
static void rc__handshake(rc_conn_t *c) {
  ERR_clear_error();
  int r = SSL_connect(c->ssl);
  if (r == 1) {
    rc__ready(c);
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    return;
  }
  rc__fail(c, (e == SSL_ERROR_SYSCALL && errno == ECONNRESET) ? RC_NET_ECONNRESET : RC_NET_ETLS);
}

static void rc__on_connected(rc_conn_t *c) {
  int soerr = 0;
  socklen_t sl = sizeof soerr;
  if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) {
    soerr = errno;
  }
  if (soerr != 0) {
    rc__fail(c, rc__errno_kind(soerr));
    return;
  }
  if (c->addr->tls) {
    SSL *ssl = SSL_new(c->addr->tls);
    if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
      SSL_free(ssl);
      rc__fail(c, RC_NET_ETLS);
      return;
    }
    c->ssl = ssl;
    if (c->addr->sni[0]) {
      int verify = (SSL_CTX_get_verify_mode(c->addr->tls) & SSL_VERIFY_PEER) != 0;
      unsigned char ip[16];
      int is_ip =
          inet_pton(AF_INET, c->addr->sni, ip) == 1 || inet_pton(AF_INET6, c->addr->sni, ip) == 1;
      if (is_ip) {
        /* no SNI for an address (RFC 6066); the certificate must name it */
        if (verify) {
          X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), c->addr->sni);
        }
      } else {
        SSL_set_tlsext_host_name(ssl, c->addr->sni);
        if (verify) {
          SSL_set1_host(ssl, c->addr->sni); /* the certificate must name the host */
        }
      }
    }
    c->state = RC_CS_HANDSHAKE;
    rc__handshake(c);
    return;
  }
  rc__ready(c);
}

/* The connection is established (and TLS negotiated): send or report. */
static void rc__ready(rc_conn_t *c) {
  if (c->send_after_connect) {
    c->send_after_connect = 0;
    c->t_send = rc_now_ns();
    int kind = rc__write(c);
    if (kind) {
      rc__fail(c, kind);
    }
    return;
  }
  c->state = RC_CS_IDLE;
  c->deadline = 0;
  c->cb(c, RC_CONN_EV_CONNECTED, c->ud);
}

static void rc__deliver(rc_conn_t *c) {
  c->deadline = 0;
  if (!c->resp.keep_alive) {
    rc_conn_close(c);
  } else {
    c->state = RC_CS_IDLE;
  }
  c->nreq++;
  c->cb(c, RC_CONN_EV_RESPONSE, c->ud);
}

static void rc__on_readable(rc_conn_t *c, int until_eof) {
  rc_loop_t *l = c->loop;
  for (;;) {
    ssize_t n;
    if (c->ssl) {
      /* OpenSSL reads one record at a time: a short read does not mean the
       * socket is drained, so read on until it wants more (edge-triggered) */
      until_eof = 1;
      ERR_clear_error();
      int r = SSL_read(c->ssl, l->rbuf, (int)l->rbuf_size);
      if (r > 0) {
        n = r;
      } else {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
          return;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0) ||
            (e == SSL_ERROR_SSL &&
             ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING)) {
          n = 0; /* the end of the stream, with or without close_notify */
        } else {
          n = -1;
          errno = (e == SSL_ERROR_SYSCALL && errno) ? errno : ECONNRESET;
        }
      }
    } else {
      n = recv(c->fd, l->rbuf, l->rbuf_size, 0);
    }
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return;
      }
      if (c->state == RC_CS_WAITING || c->state == RC_CS_SENDING) {
        rc__fail(c, rc__errno_kind(errno));
      } else {
        rc_conn_close(c);
      }
      return;
    }
    if (n == 0) {
      if (c->state == RC_CS_WAITING || c->state == RC_CS_SENDING) {
        int rc = rc_resp_eof(&c->resp);
        if (rc == RC_RESP_DONE) {
          c->resp.keep_alive = 0;
          rc__deliver(c);
        } else {
          rc__fail(c, rc == RC_RESP_ECLOSED  ? RC_NET_ECLOSED
                      : rc == RC_RESP_ETRUNC ? RC_NET_ETRUNCATED
                                             : RC_NET_EPROTO);
        }
      } else {
        rc_conn_close(c); /* an idle keep-alive connection closed by the server */
      }
      return;
    }
    c->bytes_in += (uint64_t)n;
    if (c->state != RC_CS_WAITING && c->state != RC_CS_SENDING) {
      rc_conn_close(c); /* bytes nobody asked for: the connection is unusable */
      return;
    }
    size_t used = 0;
    int rc = rc_resp_feed(&c->resp, l->rbuf, (size_t)n, &used);
    if (rc == RC_RESP_DONE) {
      if (used < (size_t)n) {
        c->resp.keep_alive = 0; /* unsolicited bytes follow the answer */
      }
      rc__deliver(c);
      return;
    }
    if (rc < 0) {
      rc__fail(c, rc == RC_RESP_ETOOBIG ? RC_NET_ETOOBIG : RC_NET_EPROTO);
      return;
    }
    if ((size_t)n < l->rbuf_size && !until_eof) {
      return; /* a short read drained the socket */
    }
  }
}

static void rc__on_event(rc_conn_t *c, uint32_t events) {
  if (c->state == RC_CS_HANDSHAKE) {
    rc__handshake(c);
    return;
  }
  if (c->state == RC_CS_CONNECTING) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) {
      rc__on_connected(c);
    }
    return;
  }
  if ((events & EPOLLOUT) && c->state == RC_CS_SENDING) {
    int kind = rc__write(c);
    if (kind) {
      rc__fail(c, kind);
      return;
    }
  }
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    if (c->fd >= 0) {
      /* with the peer's FIN in this edge, read on to see the end of file:
       * no further edge would announce it */
      rc__on_readable(c, (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
    }
  }
}

static void rc__scan_timeouts(rc_loop_t *l, uint64_t now) {
  for (uint32_t i = 0; i < l->nconns;) {
    rc_conn_t *c = l->conns[i];
    if (c->deadline && c->deadline <= now) {
      rc__fail(c, RC_NET_ETIMEDOUT);
      continue; /* the table changed under i: look at the same slot again */
    }
    i++;
  }
}

int rc_loop_run_once(rc_loop_t *l, uint64_t until) {
  /* deliver events promised by rc_conn_send / rc_conn_connect */
  if (l->ndeferred) {
    uint32_t n = l->ndeferred;
    rc_conn_t **batch = rc_xmalloc(n * sizeof(rc_conn_t *));
    memcpy(batch, l->deferred, n * sizeof(rc_conn_t *));
    l->ndeferred = 0;
    for (uint32_t i = 0; i < n; i++) {
      rc_conn_t *c = batch[i];
      if (!c || !c->deferred_ev) {
        continue;
      }
      int ev = c->deferred_ev;
      c->deferred_ev = 0;
      c->cb(c, ev, c->ud);
    }
    free(batch);
  }
  uint64_t now = rc_now_ns();
  uint64_t wake = until;
  if (l->ntimers && l->timers[0].when < wake) {
    wake = l->timers[0].when;
  }
  if (l->nconns && l->next_scan < wake) {
    wake = l->next_scan;
  }
  if (l->ndeferred) {
    wake = now;
  }
  struct timespec ts = {0, 0};
  if (wake > now) {
    uint64_t d = wake - now;
    if (d > 1000000000ull) {
      d = 1000000000ull;
    }
    ts.tv_sec = (time_t)(d / 1000000000ull);
    ts.tv_nsec = (long)(d % 1000000000ull);
  }
  struct epoll_event evs[256];
  int n = epoll_pwait2(l->epfd, evs, 256, &ts, NULL);
  if (n < 0) {
    if (errno == EINTR) {
      return 0;
    }
    return -errno;
  }
  for (int i = 0; i < n; i++) {
    if (evs[i].data.ptr == NULL) {
      uint64_t v;
      ssize_t r = read(l->evfd, &v, sizeof v);
      (void)r;
      if (l->on_wake) {
        l->on_wake(l, l->wake_ud);
      }
      continue;
    }
    rc__on_event(evs[i].data.ptr, evs[i].events);
  }
  now = rc_now_ns();
  while (l->ntimers && l->timers[0].when <= now) {
    rc_timer_t t = l->timers[0];
    l->timers[0] = l->timers[--l->ntimers];
    if (l->ntimers) {
      rc__heap_down(l, 0);
    }
    t.fn(t.ud, now);
  }
  if (now >= l->next_scan) {
    rc__scan_timeouts(l, now);
    l->next_scan = now + RC_SCAN_NS;
  }
  return 0;
}
