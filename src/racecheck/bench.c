/* bench.c - see bench.h. */
#include "bench.h"

#include <errno.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define RC_PUBLISH_NS (100ull * 1000000ull)

typedef struct rc_bworker {
  rc_live_t live; /* first: the monitor finds it at a fixed stride */
  rc_loop_t loop;
  pthread_t th;
  int idx;
  rc_conn_t *conns;
  int nconns;
  rc_stats_t st;
  rc_hist_t tick;
  uint64_t tick_req, tick_err, next_publish;
  const char *req;
  size_t req_len;
  unsigned resp_flags;
  uint64_t timeout_ns;
  uint64_t end;
} rc_bworker_t;

static void rc__bench_retry(void *ud, uint64_t now);

static void rc__bench_send(rc_bworker_t *w, rc_conn_t *c) {
  w->st.sent++;
  rc_conn_send(c, w->req, w->req_len, w->resp_flags, w->timeout_ns);
}

static void rc__bench_cb(rc_conn_t *c, int ev, void *ud) {
  rc_bworker_t *w = ud;
  uint64_t now = rc_now_ns();
  if (ev == RC_CONN_EV_RESPONSE) {
    uint64_t us = (now - c->t_send) / 1000u;
    int code = c->resp.status;
    w->st.responses++;
    w->st.status[code > 0 && code < RC_STATUS_MAX ? code : 0]++;
    rc_hist_record(&w->st.lat, us);
    rc_hist_record(&w->tick, us);
    w->tick_req++;
  } else if (ev == RC_CONN_EV_ERROR) {
    w->st.neterr[c->err]++;
    w->tick_err++;
    if (now < w->end) {
      /* back off a little so that a dead target does not spin the loop */
      rc_loop_timer(&w->loop, now + 10ull * 1000000ull, rc__bench_retry, c);
    }
    return;
  } else {
    return;
  }
  if (now < w->end) {
    rc__bench_send(w, c);
  }
}

static void rc__bench_retry(void *ud, uint64_t now) {
  rc_conn_t *c = ud;
  rc_bworker_t *w = c->ud;
  if (now < w->end) {
    rc__bench_send(w, c);
  }
}

static void *rc__bench_main(void *arg) {
  rc_bworker_t *w = arg;
  for (int i = 0; i < w->nconns; i++) {
    rc__bench_send(w, &w->conns[i]);
  }
  w->next_publish = rc_now_ns() + RC_PUBLISH_NS;
  for (;;) {
    uint64_t now = rc_now_ns();
    if (now >= w->end) {
      break;
    }
    uint64_t until = w->next_publish < w->end ? w->next_publish : w->end;
    if (rc_loop_run_once(&w->loop, until) != 0) {
      break;
    }
    now = rc_now_ns();
    if (now >= w->next_publish) {
      rc_live_publish(&w->live, &w->tick, &w->tick_req, &w->tick_err);
      w->next_publish = now + RC_PUBLISH_NS;
    }
  }
  rc_live_publish(&w->live, &w->tick, &w->tick_req, &w->tick_err);
  for (int i = 0; i < w->nconns; i++) {
    w->st.bytes_in += w->conns[i].bytes_in;
    w->st.bytes_out += w->conns[i].bytes_out;
    rc_conn_free(&w->conns[i]);
  }
  return NULL;
}

int rc_probe(const rc_addr_t *a, int timeout_ms, rc_err_t *err, const char *what) {
  int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    rc_err_set(err, 0, 0, "socket: %s", strerror(errno));
    return -1;
  }
  int rc = connect(fd, (const struct sockaddr *)&a->sa, a->len);
  int e = rc == 0 ? 0 : errno;
  if (rc != 0 && e == EINPROGRESS) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n = poll(&p, 1, timeout_ms);
    if (n <= 0) {
      e = ETIMEDOUT;
    } else {
      socklen_t sl = sizeof e;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &sl) != 0) {
        e = errno;
      }
    }
  }
  close(fd);
  if (e != 0) {
    rc_err_set(err, 0, 0, "cannot connect to %s: %s (is the service running?)", what, strerror(e));
    return -1;
  }
  return 0;
}

void rc_monitor_tick(rc_result_t *r, char *base, size_t stride, int n, uint64_t t0, int live) {
  static rc_hist_t h; /* only the coordinating thread calls this */
  rc_hist_init(&h);
  rc_tick_t t = {0};
  for (int i = 0; i < n; i++) {
    rc_live_drain((rc_live_t *)(void *)(base + (size_t)i * stride), &h, &t.requests, &t.errors);
  }
  t.t = (double)(rc_now_ns() - t0) / 1e9;
  t.p50 = rc_hist_percentile(&h, 50);
  t.p95 = rc_hist_percentile(&h, 95);
  t.p99 = rc_hist_percentile(&h, 99);
  t.max = h.max;
  rc_result_add_tick(r, &t);
  if (live) {
    rc_report_live(stderr, t.t, &t);
  }
}

int rc_bench_run(const rc_bench_opts_t *o, rc_result_t *out, rc_err_t *err) {
  rc_url_t url;
  if (rc_url_parse(o->url, &url, err) != 0) {
    return RC_EXIT_USAGE;
  }
  rc_addr_t addr;
  void *tls = NULL;
  int ret = RC_EXIT_OK;
  rc_bworker_t *ws = NULL;
  rc_buf_t req = {0};
  int nthreads = o->threads > 0 ? o->threads : 1;
  int nconns = o->connections > 0 ? o->connections : 1;
  if (nthreads > nconns) {
    nthreads = nconns;
  }
  if (rc_addr_resolve(url.host, url.port, &addr, err) != 0) {
    ret = RC_EXIT_USAGE;
    goto done;
  }
  if (url.tls) {
    rc_tls_opts_t to = {.insecure = o->insecure};
    tls = rc_tls_ctx_new(&to, err);
    if (!tls) {
      ret = RC_EXIT_USAGE;
      goto done;
    }
    rc_addr_set_tls(&addr, tls, url.host);
  }
  if (rc_probe(&addr, 2000, err, url.hostport) != 0) {
    ret = RC_EXIT_DOWN;
    goto done;
  }
  rc_req_build(&req, o->method ? o->method : "GET", url.hostport, url.path, o->headers, o->nheaders,
               o->body, o->body_len);
  out->mode = "bench";
  out->threads = nthreads;
  out->connections = nconns;
  out->nphases = 1;
  out->phases[0].name = "closed";
  out->phases[0].kind = "closed";
  out->phases[0].tally = -1;
  ws = rc_xcalloc((size_t)nthreads, sizeof *ws);
  uint64_t t0 = rc_now_ns();
  uint64_t end = t0 + o->duration_ns;
  out->started_wall_ms = rc_wall_ms();
  int started = 0;
  for (int i = 0; i < nthreads; i++) {
    rc_bworker_t *w = &ws[i];
    w->idx = i;
    rc_live_init(&w->live);
    rc_stats_init(&w->st);
    rc_hist_init(&w->tick);
    int rc = rc_loop_init(&w->loop);
    if (rc != 0) {
      rc_err_set(err, 0, 0, "epoll: %s", strerror(-rc));
      ret = RC_EXIT_USAGE;
      break;
    }
    w->nconns = nconns / nthreads + (i < nconns % nthreads ? 1 : 0);
    w->conns = rc_xcalloc((size_t)w->nconns, sizeof *w->conns);
    for (int k = 0; k < w->nconns; k++) {
      rc_conn_init(&w->conns[k], &w->loop, &addr, rc__bench_cb, w);
    }
    w->req = req.data;
    w->req_len = req.len;
    w->resp_flags = strcmp(o->method ? o->method : "GET", "HEAD") == 0 ? RC_RESP_HEAD : 0;
    w->timeout_ns = o->timeout_ns;
    w->end = end;
    if (pthread_create(&w->th, NULL, rc__bench_main, w) != 0) {
      rc_err_set(err, 0, 0, "cannot start thread %d", i);
      rc_loop_free(&w->loop);
      free(w->conns);
      ret = RC_EXIT_USAGE;
      break;
    }
    started++;
  }
  uint64_t next = t0 + 1000000000ull;
  while (started == nthreads) {
    uint64_t now = rc_now_ns();
    if (now >= end) {
      break;
    }
    uint64_t until = next < end ? next : end;
    struct timespec ts = {(time_t)((until - now) / 1000000000ull),
                          (long)((until - now) % 1000000000ull)};
    nanosleep(&ts, NULL);
    if (rc_now_ns() >= next) {
      rc_monitor_tick(out, (char *)ws, sizeof *ws, nthreads, t0, o->live);
      next += 1000000000ull;
    }
  }
  for (int i = 0; i < started; i++) {
    pthread_join(ws[i].th, NULL);
  }
  out->duration_s = (double)(rc_now_ns() - t0) / 1e9;
  out->phases[0].end_s = out->duration_s;
  if (o->live && started == nthreads) {
    fprintf(stderr, "\r\033[K");
  }
  for (int i = 0; i < started; i++) {
    rc_stats_merge(&out->total, &ws[i].st);
    rc_stats_free(&ws[i].st);
    rc_loop_free(&ws[i].loop);
    free(ws[i].conns);
    rc_live_destroy(&ws[i].live);
  }
  out->total.sent -= 0;
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    out->max_rss_kib = ru.ru_maxrss;
  }
done:
  free(ws);
  rc_buf_free(&req);
  rc_url_free(&url);
  if (tls) {
    rc_tls_ctx_free(tls);
  }
  return ret;
}
