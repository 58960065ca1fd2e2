/* http.c - libmicrohttpd glue: request lifecycle, suspend/resume, replies,
 * metrics, access log, graceful stop.
 *
 * Threads. libmicrohttpd runs --threads event-loop threads (internal
 * polling thread pool, epoll). Each connection belongs to one of them for
 * its whole life; the access handler (on_request) and the completion
 * callback (on_completed) of a connection always run on that thread.
 * Completions of suspended requests come from other threads: the timer
 * thread (simulated latencies, backoffs, cache loads) or an HTTP thread
 * that ran a once-initialiser.
 *
 * The life of one request (struct srv_rq), and who may touch it when:
 *
 *   RECEIVING   first call: rq allocated, route matched, Content-Length
 *               checked; upload calls append the body. HTTP thread only.
 *   RUNNING     the final call runs the handler on the HTTP thread.
 *     -> DONE       the handler replied synchronously: queue the answer.
 *     -> suspended  the handler called srv_rq_suspend/srv_rq_after: the
 *                   connection leaves the event loop and ONE completer now
 *                   owns rq. The HTTP thread only returns.
 *   WAKE / DONE the completer stored the next stage or the answer, then
 *               published the state with a release store, then called
 *               MHD_resume_connection as its very last touch of rq. The
 *               HTTP thread, called again after the resume, loads the state
 *               with acquire (so it sees the stage or answer) and runs the
 *               next stage or queues the answer.
 *
 * Why the order "suspend, then hand off" is mandatory: a completer may run
 * before the handler has returned (a timer of 0 ms, a cache hit answered
 * synchronously, a once callback); resuming a connection that is not yet
 * suspended is undefined behaviour in libmicrohttpd, while suspend followed
 * by resume, even within the same access-handler call, is well defined (the
 * connection goes round the event loop once).
 *
 * The request object is freed by on_completed, which libmicrohttpd calls on
 * the connection's own thread after the answer was sent (or the client went
 * away). A suspended connection is never completed, timed out or closed by
 * libmicrohttpd, so a completer can never see a freed rq; the converse
 * obligation is ours: every suspended connection must be resumed before
 * MHD_stop_daemon (srv_http_stop).
 */
#include "http.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "log.h"

#define BODY_LIMIT        ((size_t)1024 * 1024) /* docs/http-api.md: bodies over 1 MiB get 413 */
#define BODY_DISCARD_MAX  (16 * BODY_LIMIT)     /* beyond this, an oversized upload is cut off */
#define LARGE_BODY_LIMIT  (16u * BODY_LIMIT)    /* SRV_ROUTE_LARGE_BODY routes (images: 16 MiB) */
#define RQ_MAX_HEADERS    8
#define RQ_MAX_QUERIES    8
#define CONN_MEMORY_LIMIT ((size_t)32 * 1024) /* libmicrohttpd's default; zeroed per request */

enum rq_state { RQ_RECEIVING, RQ_RUNNING, RQ_WAKE, RQ_DONE };

struct srv_rq {
  srv_app_t *app;
  struct MHD_Connection *conn;
  const srv_route_t *route; /* NULL: not found / bad method */
  size_t route_index;       /* index into the duration histograms */
  srv_route_result_t match; /* routing result */
  unsigned allow;           /* SRV_ROUTE_BAD_METHOD */
  char method[16];
  uint64_t start_ns;

  size_t nparams;
  char *params[SRV_MAX_PARAMS];
  size_t nqueries;
  char *queries[RQ_MAX_QUERIES]; /* decoded copies handed out by srv_rq_query */

  char *body;
  size_t body_len, body_cap, body_seen;
  bool body_too_large;

  /* Stage machine. `suspended` and `again` are written by the handler's
   * thread during one invocation; a completer reads `suspended` (it was
   * written before the hand-off, which synchronises). */
  unsigned stage, next_stage;
  bool suspended, again;
  _Atomic int state; /* enum rq_state */
  void *mem;
  size_t mem_size;

  /* The answer. Written by whoever replies, before the release store of
   * RQ_DONE; read by the HTTP thread after the acquire load. */
  unsigned status;
  char *resp;
  size_t resp_len;
  char ctype[64];
  size_t nheaders;
  char *hname[RQ_MAX_HEADERS], *hvalue[RQ_MAX_HEADERS];
  bool forced; /* answered by srv_http_stop's last resort: ignore extra headers */
  bool close;  /* answer with Connection: close (a request refused before its body) */
  bool queued;

  /* app->susp_head list, under app->susp_mu, while suspended. */
  srv_rq_t *sprev, *snext;
  bool listed;

  /* srv_rq_store: the job handed to the store's executor, and its result. */
  rf_store_job_t job;
  srv_store_fn store_fn;
  srv_offload_fn offload_fn;
  int store_rc;
};

typedef struct srv_http {
  srv_app_t *app;
  const srv_route_t *routes;
  size_t nroutes;
} srv_http_t;

static srv_http_t g_http; /* one daemon per process */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ accessors */

srv_app_t *srv_rq_app(srv_rq_t *rq) {
  return rq->app;
}

const char *srv_rq_param(srv_rq_t *rq, size_t i) {
  return i < rq->nparams ? rq->params[i] : NULL;
}

const char *srv_rq_body(srv_rq_t *rq, size_t *len) {
  if (len != NULL)
    *len = rq->body_len;
  return rq->body;
}

const char *srv_rq_query(srv_rq_t *rq, const char *key) {
  const char *v = MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, key);
  if (v == NULL || rq->nqueries >= RQ_MAX_QUERIES)
    return NULL;
  char *copy = strdup(v);
  if (copy == NULL)
    return NULL;
  srv_unescape_final(copy);
  rq->queries[rq->nqueries++] = copy;
  return copy;
}

bool srv_rq_is_head(srv_rq_t *rq) {
  return strcmp(rq->method, "HEAD") == 0;
}

unsigned srv_rq_stage(srv_rq_t *rq) {
  return rq->stage;
}

void *srv_rq_state(srv_rq_t *rq, size_t size) {
  if (rq->mem == NULL) {
    rq->mem = calloc(1, size ? size : 1);
    rq->mem_size = rq->mem ? size : 0;
  }
  return size <= rq->mem_size ? rq->mem : NULL;
}

/* ------------------------------------------------------------ suspension */

static void list_add(srv_rq_t *rq) {
  srv_app_t *app = rq->app;
  pthread_mutex_lock(&app->susp_mu);
  rq->sprev = NULL;
  rq->snext = app->susp_head;
  if (app->susp_head != NULL)
    app->susp_head->sprev = rq;
  app->susp_head = rq;
  rq->listed = true;
  app->susp_count++;
  pthread_mutex_unlock(&app->susp_mu);
}

/* Take rq off the suspended list. false: srv_http_stop's last resort has
 * already answered it, so this completer must drop its result. */
static bool list_claim(srv_rq_t *rq) {
  srv_app_t *app = rq->app;
  pthread_mutex_lock(&app->susp_mu);
  bool listed = rq->listed;
  if (listed) {
    if (rq->sprev != NULL)
      rq->sprev->snext = rq->snext;
    else
      app->susp_head = rq->snext;
    if (rq->snext != NULL)
      rq->snext->sprev = rq->sprev;
    rq->listed = false;
    app->susp_count--;
  }
  pthread_mutex_unlock(&app->susp_mu);
  return listed;
}

void srv_rq_suspend(srv_rq_t *rq) {
  if (rq->suspended)
    return; /* once per invocation */
  list_add(rq);
  rq->suspended = true;
  MHD_suspend_connection(rq->conn);
}

/* The completer's last step: publish the new state, then resume. */
static void publish(srv_rq_t *rq, int state) {
  if (!rq->suspended) {
    atomic_store_explicit(&rq->state, state, memory_order_release);
    return;
  }
  struct MHD_Connection *conn = rq->conn; /* read before rq may be freed */
  atomic_store_explicit(&rq->state, state, memory_order_release);
  MHD_resume_connection(conn);
}

void srv_rq_wake(srv_rq_t *rq, unsigned next_stage) {
  if (rq->suspended && !list_claim(rq))
    return;
  rq->next_stage = next_stage;
  publish(rq, RQ_WAKE);
}

static void on_timer(void *arg) {
  srv_rq_t *rq = arg;
  srv_rq_wake(rq, rq->next_stage);
}

void srv_rq_after(srv_rq_t *rq, uint64_t ms, unsigned next_stage) {
  rq->next_stage = next_stage;
  if (ms == 0) {
    rq->again = true;
    return;
  }
  srv_rq_suspend(rq);
  int rc = rf_timer_after(rq->app->timer, ms, on_timer, rq, NULL);
  if (rc != 0)
    srv_rq_reply_error(rq, 503, "shutting_down", "the server is shutting down");
}

/* ------------------------------------------------------------ the store */

/* srv_rq_store / srv_rq_offload could not hand the work over: continue at
 * next_stage with the reason as the work's result (RF_EBUSY: a full queue,
 * answered 503 + Retry-After; RF_ESHUTDOWN). */
static void not_handed_over(srv_rq_t *rq, int rc, unsigned next_stage) {
  atomic_fetch_sub(&rq->app->store_jobs, 1);
  rq->store_rc = rc == RF_ESTATE ? RF_ESHUTDOWN : rc;
  if (rq->suspended)
    srv_rq_wake(rq, next_stage);
  else
    rq->again = true;
}

static int store_work(rf_store_t *s, void *arg) {
  srv_rq_t *rq = arg;
  return rq->store_fn(s, rq->mem);
}

static void store_done(void *arg, int rc) {
  srv_rq_t *rq = arg;
  srv_app_t *app = rq->app;
  rq->store_rc = rc;
  if (rq->suspended)
    srv_rq_wake(rq, rq->next_stage); /* the last touch of rq */
  else
    rq->again = true; /* an inline read: the handler goes on on this thread */
  atomic_fetch_sub(&app->store_jobs, 1);
}

void srv_rq_store(srv_rq_t *rq, unsigned mode, srv_store_fn fn, unsigned next_stage) {
  srv_app_t *app = rq->app;
  rq->next_stage = next_stage;
  rq->store_fn = fn;
  rq->store_rc = 0;
  rq->job = (rf_store_job_t){.work = store_work, .done = store_done, .arg = rq};
  /* Announce the job before looking at the flag; srv_http_stop sets the
   * flag before waiting for the count: one of the two sees the other. */
  atomic_fetch_add(&app->store_jobs, 1);
  int rc = RF_ESHUTDOWN;
  if (!atomic_load(&app->store_closing)) {
    bool inline_read = mode == RF_STORE_READ && rf_store_reads_inline(app->store);
    if (!inline_read)
      srv_rq_suspend(rq); /* before the hand-off: the writer may finish first */
    rc = rf_store_submit(app->store, mode, &rq->job);
    if (rc == 0)
      return;
  }
  not_handed_over(rq, rc, next_stage);
}

int srv_rq_store_rc(const srv_rq_t *rq) {
  return rq->store_rc;
}

static void offload_run(void *arg) { /* an I/O pool thread */
  srv_rq_t *rq = arg;
  rq->store_rc = rq->offload_fn(rq->mem);
}

static void offload_done(int status, void *arg) {
  srv_rq_t *rq = arg;
  srv_app_t *app = rq->app;
  if (status != 0) /* cancelled: fn did not run */
    rq->store_rc = status == RF_ECANCELED ? RF_ESHUTDOWN : status;
  srv_rq_wake(rq, rq->next_stage); /* the last touch of rq */
  atomic_fetch_sub(&app->store_jobs, 1);
}

void srv_rq_offload(srv_rq_t *rq, srv_offload_fn fn, unsigned next_stage) {
  srv_app_t *app = rq->app;
  rq->next_stage = next_stage;
  rq->offload_fn = fn;
  rq->store_rc = 0;
  atomic_fetch_add(&app->store_jobs, 1); /* as srv_rq_store: seen by srv_http_stop */
  int rc = RF_ESHUTDOWN;
  if (!atomic_load(&app->store_closing)) {
    srv_rq_suspend(rq);
    rc = rf_pool_submit(app->io_pool, offload_run, offload_done, rq);
    if (rc == 0)
      return;
  }
  not_handed_over(rq, rc, next_stage);
}

/* ------------------------------------------------------------ replies */

void srv_rq_header(srv_rq_t *rq, const char *name, const char *value) {
  if (rq->nheaders >= RQ_MAX_HEADERS)
    return;
  char *n = strdup(name), *v = strdup(value);
  if (n == NULL || v == NULL) {
    free(n);
    free(v);
    return;
  }
  rq->hname[rq->nheaders] = n;
  rq->hvalue[rq->nheaders] = v;
  rq->nheaders++;
}

/* Every reply ends here. Takes ownership of body (malloc'd). */
static void commit(srv_rq_t *rq, unsigned status, const char *ctype, char *body, size_t len) {
  if (rq->suspended && !list_claim(rq)) {
    free(body);
    return;
  }
  rq->status = status;
  free(rq->resp);
  rq->resp = body;
  rq->resp_len = len;
  snprintf(rq->ctype, sizeof rq->ctype, "%s", ctype);
  publish(rq, RQ_DONE);
}

static const char internal_error_body[] =
    "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";

static void commit_nomem(srv_rq_t *rq) {
  char *b = strdup(internal_error_body);
  commit(rq, 500, "application/json", b, b ? strlen(b) : 0);
}

void srv_rq_reply_json(srv_rq_t *rq, unsigned status, json_t *body) {
  char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
  json_decref(body);
  if (text == NULL) {
    commit_nomem(rq);
    return;
  }
  commit(rq, status, "application/json", text, strlen(text));
}

void srv_rq_reply_raw(srv_rq_t *rq, unsigned status, const char *content_type, const char *body,
                      size_t len) {
  char *copy = malloc(len ? len : 1);
  if (copy == NULL) {
    commit_nomem(rq);
    return;
  }
  memcpy(copy, body, len);
  commit(rq, status, content_type, copy, len);
}

static void reply_error_v(srv_rq_t *rq, unsigned status, const char *code, const char *fmt,
                          va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  /* Messages may quote client input: keep them printable ASCII so the JSON
   * encoder never meets invalid UTF-8. */
  for (char *p = msg; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
      *p = '?';
  srv_rq_reply_json(rq, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", msg));
}

void srv_rq_reply_error(srv_rq_t *rq, unsigned status, const char *code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  reply_error_v(rq, status, code, fmt, ap);
  va_end(ap);
}

void srv_rq_reply_decode_error(srv_rq_t *rq, int rc, const srv_decode_err_t *err) {
  if (rc == RF_EINVAL)
    srv_rq_reply_error(rq, 400, "bad_request", "%s", err->message);
  else
    commit_nomem(rq);
}

void srv_rq_reply_nomem(srv_rq_t *rq) {
  commit_nomem(rq);
}

void srv_rq_reply_status(srv_rq_t *rq, int rc, const char *what) {
  switch (rc) {
  case RF_EBUSY:
  case RF_EAGAIN:
    srv_rq_header(rq, "Retry-After", "1");
    srv_rq_reply_error(rq, 503, "busy", "%s: the database is busy, retry later", what);
    return;
  case RF_EUNAVAIL:
    srv_rq_header(rq, "Retry-After", "1");
    srv_rq_reply_error(rq, 503, "unavailable", "%s: the database is unavailable", what);
    return;
  case RF_ESHUTDOWN:
    srv_rq_reply_error(rq, 503, "shutting_down", "the server is shutting down");
    return;
  case RF_ENOMEM:
    commit_nomem(rq);
    return;
  default:
    srv_log(SRV_LOG_ERROR, "%s: %s", what, rf_strerror(rc));
    srv_rq_reply_error(rq, 500, "internal", "%s: %s", what, rf_strerror(rc));
    return;
  }
}

/* ------------------------------------------------------------ the handler */

static enum MHD_Result queue_answer(srv_rq_t *rq) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(rq->resp_len, rq->resp, MHD_RESPMEM_MUST_FREE);
  if (r == NULL)
    return MHD_NO;
  rq->resp = NULL; /* the response frees it */
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, rq->ctype);
  if (!rq->forced)
    for (size_t i = 0; i < rq->nheaders; i++)
      MHD_add_response_header(r, rq->hname[i], rq->hvalue[i]);
  if (rq->close || atomic_load_explicit(&rq->app->shutting_down, memory_order_relaxed))
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result ret = MHD_queue_response(rq->conn, rq->status, r);
  MHD_destroy_response(r);
  rq->queued = ret == MHD_YES;
  return ret;
}

static enum MHD_Result run_handler(srv_rq_t *rq) {
  for (;;) {
    rq->suspended = false;
    rq->again = false;
    atomic_store_explicit(&rq->state, RQ_RUNNING, memory_order_relaxed);
    /* The event-loop guard: a store call that waits on the database from
     * this thread is counted (racefree_store_loop_waits_total, meant to
     * stay 0: handlers use srv_rq_store). */
    uint64_t waits = rf_store_loop_waits();
    ((srv_handler_fn)rq->route->handler)(rq);
    uint64_t waited = rf_store_loop_waits() - waits;
    if (waited > 0)
      rf_counter_add(rq->app->shared->loop_waits, waited);
    if (rq->suspended)
      return MHD_YES; /* a completer owns rq now: do not touch it */
    if (rq->again) {
      rq->stage = rq->next_stage;
      continue;
    }
    if (atomic_load_explicit(&rq->state, memory_order_acquire) != RQ_DONE)
      srv_rq_reply_error(rq, 500, "internal", "the handler did not answer");
    return queue_answer(rq);
  }
}

static void reply_unrouted(srv_rq_t *rq) {
  if (rq->match == SRV_ROUTE_BAD_METHOD) {
    char allow[64];
    srv_rq_header(rq, "Allow", srv_allow_header(rq->allow, allow, sizeof allow));
    srv_rq_reply_error(rq, 405, "method_not_allowed", "method %s is not allowed here (allowed: %s)",
                       rq->method, allow);
  } else {
    srv_rq_reply_error(rq, 404, "not_found", "no such route");
  }
}

static srv_rq_t *rq_new(srv_http_t *h, struct MHD_Connection *conn, const char *url,
                        const char *method) {
  srv_rq_t *rq = calloc(1, sizeof *rq);
  if (rq == NULL)
    return NULL;
  rq->app = h->app;
  rq->conn = conn;
  rq->start_ns = now_ns();
  snprintf(rq->method, sizeof rq->method, "%s", method);
  atomic_init(&rq->state, RQ_RECEIVING);
  srv_match_t m;
  rq->match = srv_router_match(h->routes, h->nroutes, method, url, &m);
  rq->route_index = h->nroutes; /* "unmatched" series */
  if (rq->match == SRV_ROUTE_FOUND) {
    rq->route = m.route;
    rq->route_index = m.index;
    for (size_t i = 0; i < m.nparams; i++) {
      rq->params[i] = strndup(m.params[i].p, m.params[i].len);
      if (rq->params[i] == NULL)
        break;
      srv_unescape_final(rq->params[i]); /* "%2F" is data, decoded only now */
      rq->nparams++;
    }
    if (rq->nparams != m.nparams)
      rq->match = SRV_ROUTE_NOT_FOUND; /* out of memory: answered 404 below, rare */
  }
  rq->allow = m.allow;
  return rq;
}

static void rq_free(srv_rq_t *rq) {
  for (size_t i = 0; i < rq->nparams; i++)
    free(rq->params[i]);
  for (size_t i = 0; i < rq->nqueries; i++)
    free(rq->queries[i]);
  for (size_t i = 0; i < rq->nheaders; i++) {
    free(rq->hname[i]);
    free(rq->hvalue[i]);
  }
  free(rq->body);
  free(rq->resp);
  free(rq->mem);
  free(rq);
}

/* The body limit of rq's route (docs/http-api.md: 1 MiB, images 16 MiB). */
static size_t body_limit(const srv_rq_t *rq) {
  return rq->route != NULL && (rq->route->flags & SRV_ROUTE_LARGE_BODY) ? LARGE_BODY_LIMIT
                                                                        : BODY_LIMIT;
}

static bool body_append(srv_rq_t *rq, const char *data, size_t n) {
  size_t limit = body_limit(rq);
  rq->body_seen += n;
  if (rq->body_too_large || rq->body_len + n > limit) {
    rq->body_too_large = true;
    return rq->body_seen <= (limit < BODY_DISCARD_MAX ? BODY_DISCARD_MAX : 2 * limit);
  }
  if (rq->body_len + n > rq->body_cap) {
    size_t cap = rq->body_cap ? rq->body_cap : 1024;
    while (cap < rq->body_len + n)
      cap *= 2;
    if (cap > limit)
      cap = limit;
    char *b = realloc(rq->body, cap);
    if (b == NULL)
      return false;
    rq->body = b;
    rq->body_cap = cap;
  }
  memcpy(rq->body + rq->body_len, data, n);
  rq->body_len += n;
  return true;
}

static bool content_length_too_large(const srv_rq_t *rq, struct MHD_Connection *conn) {
  const char *cl =
      MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl == NULL)
    return false;
  errno = 0;
  char *end = NULL;
  unsigned long long n = strtoull(cl, &end, 10);
  return errno == ERANGE || (end != cl && n > body_limit(rq));
}

static void reply_too_large(srv_rq_t *rq) {
  srv_rq_reply_error(rq, 413, "payload_too_large", "the request body is larger than %zu bytes",
                     body_limit(rq));
}

/* ------------------------------------------------------------ refusals
 *
 * Requests refused before their body, answered from the access handler's
 * first call with a JSON error and Connection: close (the connection is
 * closed after the answer, so the bytes that follow are never parsed as a
 * next request). Two checks:
 *
 * The request line (on_uri, libmicrohttpd's URI log callback, called with
 * the raw target before libmicrohttpd splits and decodes it). libmicrohttpd
 * 0.9.75 stores every query argument as a record in the connection's
 * memory pool; when the pool runs out there it queues its own 431 and then
 * never sends it, leaving the client waiting for the connection timeout.
 * So a target with more than QUERY_ARGS_MAX arguments, or longer than
 * TARGET_MAX bytes, is refused here (414): its query string is cut to
 * nothing in place (the callback's buffer is the request line in the
 * connection's read buffer, writable) so that libmicrohttpd parses no
 * argument at all. A NUL byte in the target, percent-encoded (%00) or raw
 * (which would silently truncate the path: "/items/a<NUL>b" served as
 * "/items/a"), is refused with 400.
 *
 * The framing headers (refuse_framing, RFC 9112 section 6.3): several
 * Content-Length values that differ or are not decimal numbers,
 * Content-Length together with Transfer-Encoding, or a Transfer-Encoding
 * whose final coding is not chunked. libmicrohttpd 0.9.75 accepts these
 * (it uses the first Content-Length, or prefers chunked), which lets a
 * front proxy that reads the other length smuggle a request. */

#define QUERY_ARGS_MAX 100
#define TARGET_MAX     8192

enum uri_verdict { URI_TOO_MANY_ARGS, URI_TOO_LONG, URI_NUL, URI_VERDICTS };
static const char uri_verdicts[URI_VERDICTS]; /* their addresses mark a refused target */

static int uri_verdict_of(const void *con_cls) {
  uintptr_t p = (uintptr_t)con_cls, base = (uintptr_t)uri_verdicts; /* unrelated pointers */
  return p >= base && p < base + URI_VERDICTS ? (int)(p - base) : -1;
}

/* Did libmicrohttpd's NUL after the target end the string, or a raw NUL
 * byte of the client? libmicrohttpd ends the target by overwriting the
 * space before "HTTP/x.y", and ends that version with the line's CR LF
 * (both overwritten too): so the target's terminator must be followed by
 * "HTTP/d.d" and NUL. Only called for HTTP/1.x request lines. */
static bool raw_nul_in_target(const char *uri) {
  const char *v = uri + strlen(uri) + 1;
  bool version = strncmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
                 v[7] >= '0' && v[7] <= '9' && v[8] == '\0';
  return !version || strncmp(v + 9, "HTTP/", 5) == 0;
}

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
  (void)cls;
  (void)conn;
  size_t len = strlen(uri);
  if (raw_nul_in_target(uri))
    return (void *)&uri_verdicts[URI_NUL];
  for (const char *p = strchr(uri, '%'); p != NULL; p = strchr(p + 1, '%'))
    if (p[1] == '0' && p[2] == '0')
      return (void *)&uri_verdicts[URI_NUL];
  char *q = strchr(uri, '?');
  if (q == NULL)
    return len > TARGET_MAX ? (void *)&uri_verdicts[URI_TOO_LONG] : NULL;
  size_t nargs = 1;
  for (const char *p = q + 1; *p != '\0'; p++)
    nargs += *p == '&';
  int verdict = len > TARGET_MAX ? URI_TOO_LONG : nargs > QUERY_ARGS_MAX ? URI_TOO_MANY_ARGS : -1;
  if (verdict < 0)
    return NULL;
  q[1] = '\0'; /* libmicrohttpd parses the arguments after the '?': none */
  return (void *)&uri_verdicts[verdict];
}

typedef struct framing {
  unsigned ncl, nte;
  const char *cl, *te;
  bool cl_bad; /* a Content-Length that is not digits, or differs from the first */
} framing_t;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
  (void)kind;
  framing_t *f = cls;
  if (value == NULL)
    value = "";
  if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
    size_t n = strspn(value, "0123456789");
    if (n == 0 || value[n] != '\0' || (f->cl != NULL && strcmp(f->cl, value) != 0))
      f->cl_bad = true;
    if (f->cl == NULL)
      f->cl = value;
    f->ncl++;
  } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
    f->te = value;
    f->nte++;
  }
  return MHD_YES;
}

/* The final coding of a Transfer-Encoding value is "chunked", alone. */
static bool te_is_chunked(const char *te) {
  while (*te == ' ' || *te == '\t')
    te++;
  size_t n = strlen(te);
  while (n > 0 && (te[n - 1] == ' ' || te[n - 1] == '\t'))
    n--;
  return n == 7 && strncasecmp(te, "chunked", 7) == 0;
}

/* A refusal of the framing headers: true and the answer made. */
static bool refuse_framing(srv_rq_t *rq, struct MHD_Connection *conn) {
  framing_t f = {0};
  MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
  const char *why = NULL;
  if (f.cl_bad)
    why = f.ncl > 1 ? "conflicting Content-Length headers" : "a malformed Content-Length header";
  else if (f.ncl > 0 && f.nte > 0)
    why = "Content-Length together with Transfer-Encoding";
  else if (f.nte > 1 || (f.nte == 1 && !te_is_chunked(f.te)))
    why = "a Transfer-Encoding other than chunked";
  if (why == NULL)
    return false;
  rq->close = true;
  srv_rq_reply_error(rq, 400, "bad_request", "ambiguous request framing: %s", why);
  return true;
}

/* The answer to a target on_uri refused. */
static void refuse_target(srv_rq_t *rq, int verdict) {
  rq->close = true;
  if (verdict == URI_TOO_MANY_ARGS)
    srv_rq_reply_error(rq, 414, "uri_too_long", "too many query parameters (at most %d)",
                       QUERY_ARGS_MAX);
  else if (verdict == URI_TOO_LONG)
    srv_rq_reply_error(rq, 414, "uri_too_long", "the request target is longer than %d bytes",
                       TARGET_MAX);
  else
    srv_rq_reply_error(rq, 400, "bad_request", "the request target contains a NUL byte");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
  (void)version;
  srv_http_t *h = cls;
  srv_rq_t *rq = *con_cls;
  rf_store_loop_thread(1); /* this is an event-loop thread */
  int verdict = uri_verdict_of(rq);
  if (rq == NULL || verdict >= 0) {
    /* First call: headers only. Answering a GET here would lose keep-alive
     * (libmicrohttpd closes a connection whose answer was queued before the
     * body phase), so only refusals (above) and an oversized declared body
     * are answered now. */
    rq = rq_new(h, conn, url, method);
    if (rq == NULL)
      return MHD_NO;
    *con_cls = rq;
    atomic_fetch_add_explicit(&h->app->inflight, 1, memory_order_relaxed);
    rf_gauge_add(h->app->shared->active, 1);
    if (verdict >= 0) {
      refuse_target(rq, verdict);
      return queue_answer(rq);
    }
    if (refuse_framing(rq, conn))
      return queue_answer(rq);
    if (content_length_too_large(rq, conn)) {
      reply_too_large(rq);
      return queue_answer(rq);
    }
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    bool ok = body_append(rq, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return ok ? MHD_YES : MHD_NO;
  }
  int st = atomic_load_explicit(&rq->state, memory_order_acquire);
  switch (st) {
  case RQ_DONE:
    return rq->queued ? MHD_YES : queue_answer(rq);
  case RQ_WAKE:
    rq->stage = rq->next_stage;
    return run_handler(rq);
  case RQ_RECEIVING:
    if (rq->body_too_large) {
      reply_too_large(rq);
      return queue_answer(rq);
    }
    if (rq->route == NULL) {
      reply_unrouted(rq);
      return queue_answer(rq);
    }
    return run_handler(rq);
  default:
    return MHD_YES; /* RQ_RUNNING: not reached (a suspended connection is not called) */
  }
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)conn;
  srv_http_t *h = cls;
  srv_rq_t *rq = *con_cls;
  *con_cls = NULL;
  if (rq == NULL || uri_verdict_of(rq) >= 0)
    return; /* never reached the access handler */
  srv_app_t *app = h->app;
  double secs = (double)(now_ns() - rq->start_ns) / 1e9;
  if (rq->queued) {
    rf_counter_inc(app->shared->requests);
    if (rq->status >= 500)
      rf_counter_inc(app->shared->errors);
    rf_histogram_observe(app->shared->duration[rq->route_index], secs);
    srv_log_request(rq->method, rq->route ? rq->route->pattern : "-", rq->status, secs * 1e3);
  } else if (srv_log_enabled(SRV_LOG_DEBUG)) {
    srv_log(SRV_LOG_DEBUG, "%s %s: connection ended before an answer (code %d)", rq->method,
            rq->route ? rq->route->pattern : "-", (int)toe);
  }
  rf_gauge_add(app->shared->active, -1);
  atomic_fetch_sub_explicit(&app->inflight, 1, memory_order_relaxed);
  rq_free(rq);
}

static size_t unescape_cb(void *cls, struct MHD_Connection *conn, char *s) {
  (void)cls;
  (void)conn;
  return srv_unescape_keep(s);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  size_t n = strlen(msg);
  while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
    msg[--n] = '\0';
  srv_log(SRV_LOG_WARN, "http: %s", msg);
}

/* ------------------------------------------------------------ daemon */

int srv_http_start(srv_app_t *app, int listen_fd, const srv_route_t *routes, size_t nroutes,
                   char *err, size_t errlen) {
  g_http.app = app;
  g_http.routes = routes;
  g_http.nroutes = nroutes;
  const srv_options_t *o = app->opts;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   MHD_USE_ERROR_LOG;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, &g_http, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
      MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
      (unsigned)o->threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->connection_limit,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->connection_timeout_s,
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY_LIMIT, MHD_OPTION_NOTIFY_COMPLETED,
      on_completed, &g_http, MHD_OPTION_UNESCAPE_CALLBACK, unescape_cb, NULL,
      MHD_OPTION_URI_LOG_CALLBACK, on_uri, NULL, MHD_OPTION_END);
  if (d == NULL) {
    snprintf(err, errlen, "cannot start the HTTP daemon (libmicrohttpd refused the options)");
    return RF_EINTERNAL;
  }
  app->daemon = d;
  return 0;
}

static void wait_drained(srv_app_t *app, uint64_t timeout_ms) {
  uint64_t deadline = now_ns() + timeout_ms * 1000000ull;
  while (atomic_load_explicit(&app->inflight, memory_order_relaxed) > 0 && now_ns() < deadline) {
    struct timespec ts = {0, 5 * 1000000L};
    nanosleep(&ts, NULL);
  }
}

/* Last resort: answer every request that is still suspended. Only reached
 * when something kept a request suspended although the timer thread has
 * fired and stopped (a bug): better a 503 than a hang or a crash. */
static size_t force_resume_all(srv_app_t *app) {
  size_t n = 0;
  pthread_mutex_lock(&app->susp_mu);
  while (app->susp_head != NULL) {
    srv_rq_t *rq = app->susp_head;
    app->susp_head = rq->snext;
    rq->listed = false;
    app->susp_count--;
    static const char body[] =
        "{\"error\":{\"code\":\"shutting_down\",\"message\":\"the server is shutting down\"}}";
    char *b = strdup(body);
    rq->status = 503;
    free(rq->resp);
    rq->resp = b;
    rq->resp_len = b ? strlen(b) : 0;
    snprintf(rq->ctype, sizeof rq->ctype, "application/json");
    rq->forced = true;
    publish(rq, RQ_DONE);
    n++;
  }
  pthread_mutex_unlock(&app->susp_mu);
  return n;
}

/* After the quiesce, the socket is still in the LISTEN state: the kernel
 * would go on completing handshakes into the backlog, and those clients
 * would wait, unanswered, until the process exits. shutdown(2) on a
 * listening socket stops it listening (Linux): queued connections are
 * reset and new ones refused. With --workers N the socket is shared by
 * every worker, so the supervisor does this (main.c), not a worker. */
static void stop_listening(const srv_app_t *app, MHD_socket fd) {
  if (fd != MHD_INVALID_SOCKET && app->opts->workers <= 1)
    (void)shutdown(fd, SHUT_RDWR);
}

void srv_http_stop(srv_app_t *app, uint64_t timeout_ms) {
  if (app->daemon == NULL)
    return;
  atomic_store(&app->shutting_down, true);
  /* 1. Stop accepting. The listen socket is ours (we bound it; workers
   *    share it), so close this process's descriptor. */
  MHD_socket fd = MHD_quiesce_daemon(app->daemon);
  /* The descriptor is closed only after MHD_stop_daemon: until then a
   * daemon thread may still be taking it out of its epoll set. */
  stop_listening(app, fd);
  /* 2. In-flight requests finish normally, up to the timeout. */
  wait_drained(app, timeout_ms);
  /* 3. Fire every pending timer now: sleeping requests wake and answer
   *    (anything that asks the timer again gets 503 shutting_down). */
  if (app->timer != NULL)
    rf_timer_shutdown(app->timer, true);
  wait_drained(app, 2000);
  /* 4. The CPU pool: queued tasks are cancelled (their requests answer
   *    503), running ones finish and answer while the daemon still lives,
   *    so no task can touch a request after it was answered below. */
  if (app->pool != NULL)
    rf_pool_shutdown(app->pool, RF_POOL_CANCEL);
  wait_drained(app, 1000);
  /* 4b. The store's executor and the I/O pool: no new jobs from here on; the ones handed
   *    over already complete (each wakes its request, which answers), so
   *    none can touch a request after step 5 answered it. */
  atomic_store(&app->store_closing, true);
  size_t cancelled = rf_store_cancel(app->store, RF_ESHUTDOWN); /* not started: 503 now */
  if (cancelled > 0)
    srv_log(SRV_LOG_WARN, "shutdown: %zu database job(s) not started were answered 503", cancelled);
  while (atomic_load(&app->store_jobs) > 0) {
    rf_store_drain(app->store);
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
  }
  wait_drained(app, 1000);
  /* 5. Resume whatever is still suspended, then stop. */
  size_t forced = force_resume_all(app);
  if (forced > 0) {
    srv_log(SRV_LOG_ERROR, "shutdown: answered %zu request(s) still suspended", forced);
    wait_drained(app, 1000);
  }
  long left = atomic_load(&app->inflight);
  if (left > 0)
    srv_log(SRV_LOG_WARN, "shutdown: closing %ld unfinished connection(s)", left);
  MHD_stop_daemon(app->daemon);
  app->daemon = NULL;
  if (fd != MHD_INVALID_SOCKET)
    close(fd);
}
