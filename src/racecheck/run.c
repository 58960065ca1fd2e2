/* run.c - see run.h. */
#include "run.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "bench.h"
#include "cookie.h"
#include "expr.h"
#include "jpath.h"
#include "net.h"
#include "tmpl.h"

#define RC_PUBLISH_NS    (100ull * 1000000ull)
#define RC_MAX_FRAMES    18
#define RC_HIST_FLUSH    ((size_t)64 * 1024)
#define RC_MAX_INVOLVED  50
#define RC_BODY_SNIPPET  200
#define RC_MAX_REDIRECTS 10 /* as got, Artillery's HTTP client */

typedef struct rc_run rc_run_t;
typedef struct rc_worker rc_worker_t;

enum { RC_VU_LOAD, RC_VU_BURST, RC_VU_SINGLE };

enum { CMD_ARRIVALS = 1, CMD_BURST_PREPARE, CMD_BURST_FIRE, CMD_SINGLE, CMD_STOP };

typedef struct rc_cmd {
  int kind;
  uint32_t phase;
  uint64_t t0;
  uint32_t n;
  uint32_t round;         /* CMD_BURST_PREPARE: 1-based */
  const rc_step_t *steps; /* CMD_SINGLE */
  size_t nsteps;
} rc_cmd_t;

typedef struct rc_frame {
  const rc_step_t *steps;
  size_t n, i;
  const rc_step_t *loop; /* the loop step, NULL for the flow itself */
  uint64_t iter, count;
  json_t *over; /* owned */
} rc_frame_t;

typedef struct rc_vu rc_vu_t;
struct rc_vu {
  rc_worker_t *w;
  rc_vu_t *prev, *next; /* the worker's live virtual users */
  uint64_t id;
  int kind;
  uint32_t phase;
  const char *scenario;
  rc_frame_t stack[RC_MAX_FRAMES];
  int depth;
  json_t *vars;
  rc_conn_t conn;
  const rc_addr_t *addr;
  rc_buf_t req;
  char *url; /* rendered request target (path and query), for reports */
  /* the request being made, kept to follow a redirect */
  const char *method;
  char host[256];
  char hostport[300];
  rc_header_t *hs; /* rendered headers; values owned through hv */
  char **hv;
  size_t nh;
  rc_buf_t body;
  int has_body;
  int redirects;
  rc_jar_t *jar; /* allocated at the first cookie */
  const rc_step_t *cur;
  uint64_t intended;
  uint64_t req_id;
  uint64_t timer_at;
  int failed;
  int held;       /* burst: the first request waits for the fire command */
  int hold_first; /* burst: hold the next request */
  int connected;  /* burst: the connection attempt finished */
  json_t *last_json;
  int last_status;
  char *last_error;
};

/* First failure and count of one check, per worker, merged at the end. */
typedef struct rc_fail {
  const void *key; /* the rc_expect_t / rc_capture_t / rc_step_t */
  const char *kind;
  char *name;
  uint64_t ok, failed;
  char *detail, *request;
} rc_fail_t;

typedef struct rc_rec {
  uint64_t req, vu;
  uint32_t phase, step, code;
} rc_rec_t;

typedef struct rc_origin {
  char hostport[300];
  rc_addr_t addr;
} rc_origin_t;

struct rc_worker {
  rc_live_t live; /* first: rc_monitor_tick finds it at a fixed stride */
  rc_run_t *run;
  int idx;
  rc_loop_t loop;
  pthread_t th;
  rc_rng_t rng;
  rc_stats_t st;
  rc_hist_t tick;
  uint64_t tick_req, tick_err, next_publish;
  pthread_mutex_t mu; /* guards cmds */
  rc_cmd_t cmds[8];
  int ncmds;
  int stop;
  /* arrivals */
  int arr_active;
  const rc_phase_t *arr_phase;
  uint32_t arr_pidx;
  uint64_t arr_t0, arr_next, arr_total;
  /* burst */
  rc_vu_t **burst;
  uint32_t nburst, burst_ready;
  int burst_reported;
  uint64_t vu_seq, req_seq;
  rc_buf_t hbuf;
  rc_fail_t *fails;
  size_t nfails, fcap;
  rc_rec_t *recs;
  size_t nrecs, rcap;
  rc_tlreq_t *tl; /* burst requests for the timeline (bounded) */
  size_t ntl, tlcap;
  int tl_truncated;
  rc_origin_t *origins;
  size_t norigins;
  rc_vu_t *vus; /* live virtual users, freed at the end if interrupted */
};

struct rc_run {
  const rc_run_opts_t *o;
  const rc_file_t *f;
  rc_url_t target;
  char *prefix; /* target path without the trailing slash ("" for "/") */
  rc_addr_t addr;
  void *tls; /* the TLS context of every https origin */
  json_t *globals;
  int nworkers;
  rc_worker_t *ws;
  uint64_t t0;
  int hfd;
  int record; /* keep per-request records: --history or the HTML timeline */
  uint32_t nphases_total;
  const char *phase_names[RC_MAX_PHASES];
  atomic_uint_fast64_t phase_active[RC_MAX_PHASES];
  atomic_uint_fast64_t payload_seq;
  pthread_mutex_t mu; /* guards the fields below */
  pthread_cond_t cv;
  uint64_t active;      /* VUs alive */
  uint64_t arr_pending; /* workers still starting arrivals of a phase */
  uint64_t burst_ready, burst_done, want;
  int single_done;
  json_t *single_vars, *single_json;
  int single_status, single_failed;
  char *single_error;
  char *single_line; /* the last request of the single flow, rendered */
  /* tallies of the load phases, for invariants (coordinator only) */
  rc_stats_t snap;
  int have_snap;
};

/* --------------------------------------------------------------- helpers */

static double rc__secs(const rc_run_t *r, uint64_t t) {
  return t > r->t0 ? (double)(t - r->t0) / 1e9 : 0.0;
}

static void rc__hist_flush(rc_worker_t *w) {
  rc_run_t *r = w->run;
  if (r->hfd < 0 || w->hbuf.len == 0) {
    return;
  }
  /* whole lines in one write to an O_APPEND file never interleave */
  size_t off = 0;
  while (off < w->hbuf.len) {
    ssize_t n = write(r->hfd, w->hbuf.data + off, w->hbuf.len - off);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) {
        continue;
      }
      break;
    }
    off += (size_t)n;
  }
  rc_buf_clear(&w->hbuf);
}

static void rc__json_str(rc_buf_t *b, const char *s) {
  rc_buf_putc(b, '"');
  rc_buf_json_escape(b, s, strlen(s));
  rc_buf_putc(b, '"');
}

static rc_fail_t *rc__fail_slot(rc_worker_t *w, const void *key, const char *kind,
                                const char *name) {
  for (size_t i = 0; i < w->nfails; i++) {
    if (w->fails[i].key == key && strcmp(w->fails[i].kind, kind) == 0) {
      return &w->fails[i];
    }
  }
  if (w->nfails == w->fcap) {
    w->fcap = w->fcap ? w->fcap * 2 : 16;
    w->fails = rc_xrealloc(w->fails, w->fcap * sizeof *w->fails);
  }
  rc_fail_t *f = &w->fails[w->nfails++];
  memset(f, 0, sizeof *f);
  f->key = key;
  f->kind = kind;
  f->name = rc_xstrdup(name);
  return f;
}

static char *rc__describe(const rc_vu_t *vu, int status, const char *body, size_t blen) {
  rc_buf_t b = {0};
  rc_buf_printf(&b, "#%llu (vu %llu, %s) %s %s", (unsigned long long)vu->req_id,
                (unsigned long long)vu->id, vu->scenario ? vu->scenario : "-",
                vu->method ? vu->method : "?", vu->url ? vu->url : "?");
  if (status > 0) {
    rc_buf_printf(&b, " -> %d", status);
  }
  if (body && blen) {
    rc_buf_puts(&b, " ");
    size_t n = blen > RC_BODY_SNIPPET ? RC_BODY_SNIPPET : blen;
    for (size_t i = 0; i < n; i++) {
      char c = body[i];
      rc_buf_putc(&b, (c == '\n' || c == '\r' || c == '\t') ? ' ' : c);
    }
    if (blen > n) {
      rc_buf_puts(&b, "...");
    }
  }
  return rc_buf_steal(&b);
}

/* Keep a compact record of an answer (with --history), for the "requests
 * involved" of a failed invariant. */
static void rc__rec_push(rc_worker_t *w, rc_rec_t rec) {
  if (!w->recs || w->nrecs == w->rcap) {
    w->rcap = w->rcap ? w->rcap * 2 : 1024;
    w->recs = rc_xrealloc(w->recs, w->rcap * sizeof(rc_rec_t));
  }
  w->recs[w->nrecs++] = rec;
}

/* Keep one burst request for the HTML timeline (bounded per thread). */
static void rc__tl_push(rc_vu_t *vu, uint64_t now, int status, const char *error) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  if (!r->o->timeline || vu->kind != RC_VU_BURST) {
    return;
  }
  if (w->ntl >= RC_TL_MAX / (size_t)r->nworkers) {
    w->tl_truncated = 1;
    return;
  }
  if (w->ntl == w->tlcap) {
    w->tlcap = w->tlcap ? w->tlcap * 2 : 64;
    w->tl = rc_xrealloc(w->tl, w->tlcap * sizeof *w->tl);
  }
  uint64_t t0 = vu->conn.t_send ? vu->conn.t_send : now;
  rc_tlreq_t *t = &w->tl[w->ntl++];
  t->req = vu->req_id;
  t->vu = vu->id;
  t->t0_ms = t0 > r->t0 ? (double)(t0 - r->t0) / 1e6 : 0;
  t->t1_ms = now > r->t0 ? (double)(now - r->t0) / 1e6 : 0;
  t->status = status;
  t->error = error;
  t->line = rc_xasprintf("%s %s", vu->method ? vu->method : "?", vu->url ? vu->url : "?");
  t->round = 0;
  json_t *round = json_object_get(vu->vars, "$round");
  if (round) {
    t->round = (int)json_integer_value(round);
  }
}

static void rc__record_fail(rc_worker_t *w, const void *key, const char *kind, const char *name,
                            char *detail, char *request) {
  rc_fail_t *f = rc__fail_slot(w, key, kind, name);
  f->failed++;
  if (!f->detail) {
    f->detail = detail;
    f->request = request;
  } else {
    free(detail);
    free(request);
  }
}

/* --------------------------------------------------------------- lookups */

static json_t *rc__lookup(void *ud, const char *name, size_t len) {
  rc_vu_t *vu = ud;
  char key[256];
  if (len >= sizeof key) {
    return NULL;
  }
  memcpy(key, name, len);
  key[len] = '\0';
  json_t *v = vu->vars ? json_object_get(vu->vars, key) : NULL;
  if (!v) {
    v = json_object_get(vu->w->run->globals, key);
  }
  return v;
}

static void rc__tctx(rc_vu_t *vu, rc_tctx_t *t) {
  t->lookup = rc__lookup;
  t->ud = vu;
  t->rng = &vu->w->rng;
  /* an undefined variable renders as Artillery renders it, and is counted
   * (the reports warn about it) */
  t->undefined = &vu->w->st.tmpl_undefined;
}

static const rc_addr_t *rc__origin(rc_worker_t *w, const rc_url_t *u, rc_err_t *err) {
  rc_run_t *r = w->run;
  if (strcmp(u->hostport, r->target.hostport) == 0 && u->tls == r->target.tls) {
    return &r->addr;
  }
  for (size_t i = 0; i < w->norigins; i++) {
    if (strcmp(w->origins[i].hostport, u->hostport) == 0 &&
        (w->origins[i].addr.tls != NULL) == (u->tls != 0)) {
      return &w->origins[i].addr;
    }
  }
  rc_addr_t a;
  if (rc_addr_resolve(u->host, u->port, &a, err) != 0) {
    return NULL;
  }
  if (u->tls) {
    rc_addr_set_tls(&a, r->tls, u->host);
  }
  /* never reallocated while connections point into it: fixed capacity */
  if (!w->origins) {
    w->origins = rc_xcalloc(64, sizeof *w->origins);
  }
  if (w->norigins == 64) {
    rc_err_set(err, 0, 0, "too many distinct hosts (64)");
    return NULL;
  }
  rc_origin_t *o = &w->origins[w->norigins++];
  snprintf(o->hostport, sizeof o->hostport, "%s", u->hostport);
  o->addr = a;
  return &o->addr;
}

/* --------------------------------------------------------------- VUs */

static void rc__vu_advance(rc_vu_t *vu, uint64_t intended);
static void rc__conn_cb(rc_conn_t *c, int ev, void *ud);

static void rc__set_loop_vars(rc_vu_t *vu) {
  /* the innermost loop frame defines $loopCount / $loopIndex / $loopElement */
  for (int d = vu->depth - 1; d >= 0; d--) {
    rc_frame_t *fr = &vu->stack[d];
    if (!fr->loop) {
      continue;
    }
    json_object_set_new(vu->vars, "$loopCount", json_integer((json_int_t)fr->iter + 1));
    json_object_set_new(vu->vars, "$loopIndex", json_integer((json_int_t)fr->iter));
    if (fr->over) {
      json_object_set(vu->vars, "$loopElement", json_array_get(fr->over, fr->iter));
    } else {
      json_object_del(vu->vars, "$loopElement");
    }
    return;
  }
  json_object_del(vu->vars, "$loopCount");
  json_object_del(vu->vars, "$loopIndex");
  json_object_del(vu->vars, "$loopElement");
}

/* A global that holds a loadAll payload (a list, but not one to pick from). */
static int rc__is_load_all(const rc_file_t *f, const char *name) {
  for (size_t i = 0; i < f->npayloads; i++) {
    if (f->payloads[i].all && strcmp(f->payloads[i].name, name) == 0) {
      return 1;
    }
  }
  return 0;
}

static rc_vu_t *rc__vu_new(rc_worker_t *w, int kind, uint32_t phase, const char *scenario,
                           const rc_step_t *steps, size_t n) {
  rc_run_t *r = w->run;
  rc_vu_t *vu = rc_xcalloc(1, sizeof *vu);
  vu->w = w;
  vu->id = w->vu_seq++ * (uint64_t)r->nworkers + (uint64_t)w->idx;
  vu->kind = kind;
  vu->phase = phase;
  vu->scenario = scenario;
  vu->vars = json_object();
  vu->addr = &r->addr;
  rc_conn_init(&vu->conn, &w->loop, vu->addr, rc__conn_cb, vu);
  vu->stack[0] = (rc_frame_t){.steps = steps, .n = n};
  vu->depth = 1;
  vu->next = w->vus;
  if (w->vus) {
    w->vus->prev = vu;
  }
  w->vus = vu;
  /* list variables: each VU picks one value; payload rows: one row */
  const char *k;
  json_t *v;
  json_object_foreach(r->globals, k, v) {
    if (json_is_array(v) && json_array_size(v) > 0 && !json_object_get(r->o->vars, k) &&
        !rc__is_load_all(r->f, k)) {
      size_t i = (size_t)rc_rng_range(&w->rng, 0, (int64_t)json_array_size(v) - 1);
      json_object_set_new(vu->vars, k, json_deep_copy(json_array_get(v, i)));
    }
  }
  for (size_t p = 0; p < r->f->npayloads; p++) {
    const rc_payload_t *pl = &r->f->payloads[p];
    if (pl->all) {
      continue; /* loadAll: the whole list is a global variable */
    }
    size_t row = pl->random ? (size_t)rc_rng_range(&w->rng, 0, (int64_t)pl->nrows - 1)
                            : (size_t)(atomic_fetch_add(&r->payload_seq, 1) % pl->nrows);
    for (size_t fi = 0; fi < pl->nfields; fi++) {
      json_object_set_new(vu->vars, pl->fields[fi], rc_payload_value(pl->rows[row][fi], pl->cast));
    }
  }
  pthread_mutex_lock(&r->mu);
  r->active++;
  pthread_mutex_unlock(&r->mu);
  if (kind != RC_VU_SINGLE) {
    w->st.vu_created++;
  }
  return vu;
}

static void rc__free_hdrs(rc_vu_t *vu) {
  for (size_t i = 0; i < vu->nh; i++) {
    free(vu->hv[i]);
  }
  free(vu->hv);
  free(vu->hs);
  vu->hv = NULL;
  vu->hs = NULL;
  vu->nh = 0;
}

/* Unlink and free a virtual user (no accounting). */
static void rc__vu_free(rc_vu_t *vu) {
  rc_worker_t *w = vu->w;
  if (vu->prev) {
    vu->prev->next = vu->next;
  } else {
    w->vus = vu->next;
  }
  if (vu->next) {
    vu->next->prev = vu->prev;
  }
  rc_conn_free(&vu->conn);
  for (int d = 0; d < vu->depth; d++) {
    json_decref(vu->stack[d].over);
  }
  json_decref(vu->vars);
  json_decref(vu->last_json);
  free(vu->last_error);
  rc_buf_free(&vu->req);
  free(vu->url);
  rc__free_hdrs(vu);
  rc_buf_free(&vu->body);
  if (vu->jar) {
    rc_jar_free(vu->jar);
    free(vu->jar);
  }
  free(vu);
}

static void rc__vu_finish(rc_vu_t *vu) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  if (vu->kind != RC_VU_SINGLE) {
    if (vu->failed) {
      w->st.vu_failed++;
    } else {
      w->st.vu_completed++;
    }
  }
  if (vu->kind != RC_VU_SINGLE && vu->phase < RC_MAX_PHASES) {
    atomic_fetch_sub(&r->phase_active[vu->phase], 1);
  }
  if (vu->kind == RC_VU_BURST) {
    for (uint32_t i = 0; i < w->nburst; i++) {
      if (w->burst[i] == vu) {
        w->burst[i] = NULL; /* finished before the fire (nothing to hold) */
      }
    }
  }
  w->st.bytes_in += vu->conn.bytes_in;
  w->st.bytes_out += vu->conn.bytes_out;
  pthread_mutex_lock(&r->mu);
  r->active--;
  if (vu->kind == RC_VU_BURST) {
    r->burst_done++;
  }
  if (vu->kind == RC_VU_SINGLE) {
    r->single_done = 1;
    r->single_vars = vu->vars;
    vu->vars = NULL;
    r->single_json = vu->last_json;
    vu->last_json = NULL;
    r->single_status = vu->last_status;
    r->single_failed = vu->failed;
    r->single_error = vu->last_error;
    free(r->single_line);
    r->single_line = vu->method && vu->url ? rc_xasprintf("%s %s", vu->method, vu->url) : NULL;
    vu->last_error = NULL;
  }
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
  rc__vu_free(vu);
}

static void rc__vu_fail(rc_vu_t *vu, const char *why) {
  vu->failed = 1;
  if (!vu->last_error) {
    vu->last_error = rc_xstrdup(why);
  }
}

static void rc__urlencode(rc_buf_t *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      rc_buf_putc(b, (char)c);
    } else {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      rc_buf_append(b, e, 3);
    }
  }
}

static int rc__has_hdr(const rc_step_t *s, const char *name) {
  for (size_t i = 0; i < s->nheaders; i++) {
    if (strcasecmp(s->headers[i].name, name) == 0) {
      return 1;
    }
  }
  return 0;
}

/* Percent-encode what may not appear in a request target, after the
 * template was rendered, as a WHATWG URL parser does (Artillery's client
 * parses URLs with one): in the path, controls, space, " < > ` { } and
 * bytes over 0x7e; in the query, controls, space, " < > ' and bytes over
 * 0x7e. A '%' stays as it is (an already-encoded URL is not encoded twice)
 * and a fragment ('#...') is never sent. */
static void rc__encode_url(rc_buf_t *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  int query = 0;
  /* the scheme and authority of an absolute URL are left alone */
  const char *p = s;
  if (strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0 || strncmp(s, "//", 2) == 0) {
    const char *a = strstr(s, "//") + 2;
    size_t n = strcspn(a, "/?#");
    rc_buf_append(b, s, (size_t)(a - s) + n);
    p = a + n;
  }
  for (; *p && *p != '#'; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '?') {
      query = 1;
    }
    int enc = c <= 0x20 || c >= 0x7f || c == '"' || c == '<' || c == '>' ||
              (!query && (c == '`' || c == '{' || c == '}')) || (query && c == '\'');
    if (enc) {
      char e[3] = {'%', hex[c >> 4], hex[c & 15]};
      rc_buf_append(b, e, 3);
    } else {
      rc_buf_putc(b, (char)c);
    }
  }
  if (!b->data) {
    rc_buf_append(b, "", 0);
  }
}

/* Serialise vu's current request (method, host, target, headers, body)
 * into vu->req, with the cookie jar's Cookie header unless the step sets
 * one itself. */
static void rc__serialise(rc_vu_t *vu) {
  rc_buf_t cookie = {0};
  int has_cookie = 0;
  for (size_t i = 0; i < vu->nh; i++) {
    has_cookie |= strcasecmp(vu->hs[i].name, "cookie") == 0;
  }
  rc_header_t *hs = vu->hs;
  size_t nh = vu->nh;
  rc_header_t extra[65];
  if (vu->jar && !has_cookie) {
    rc_jar_header(vu->jar, vu->host, vu->url, vu->conn.addr && vu->conn.addr->tls != NULL, &cookie);
    if (cookie.len) {
      memcpy(extra, vu->hs, nh * sizeof *hs);
      extra[nh].name = "Cookie";
      extra[nh].value = cookie.data;
      hs = extra;
      nh++;
    }
  }
  rc_buf_clear(&vu->req);
  rc_req_build(&vu->req, vu->method, vu->hostport, vu->url, hs, nh,
               vu->has_body ? (vu->body.data ? vu->body.data : "") : NULL,
               vu->has_body ? vu->body.len : 0);
  rc_buf_free(&cookie);
}

static void rc__jar_put(rc_vu_t *vu, const char *set_cookie) {
  if (!vu->jar) {
    vu->jar = rc_xcalloc(1, sizeof *vu->jar);
  }
  rc_jar_set(vu->jar, set_cookie, vu->host, vu->url, (int64_t)(rc_wall_ms() / 1000u));
}

/* Render and serialise the request of step s into vu->req. Returns 0 or -1
 * with a message. */
static int rc__build(rc_vu_t *vu, const rc_step_t *s, rc_err_t *err) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  rc_tctx_t t;
  rc__tctx(vu, &t);
  rc_buf_t url = {0}, enc = {0};
  int rc = -1;
  rc_url_t abs = {0};
  rc__free_hdrs(vu);
  rc_buf_clear(&vu->body);
  vu->has_body = 0;
  vu->redirects = 0;
  if (rc_tmpl_render(s->url, &t, &url, err) != 0) {
    goto done;
  }
  rc__encode_url(&enc, url.data ? url.data : "");
  const char *hostport = r->target.hostport;
  const char *host = r->target.host;
  const rc_addr_t *addr = &r->addr;
  rc_buf_t path = {0};
  if (strncmp(enc.data, "http://", 7) == 0 || strncmp(enc.data, "https://", 8) == 0) {
    if (rc_url_parse(enc.data, &abs, err) != 0) {
      goto done;
    }
    addr = rc__origin(w, &abs, err);
    if (!addr) {
      goto done;
    }
    hostport = abs.hostport;
    host = abs.host;
    rc_buf_puts(&path, abs.path);
  } else {
    rc_buf_puts(&path, r->prefix);
    if (enc.data[0] != '/') {
      rc_buf_putc(&path, '/');
    }
    rc_buf_puts(&path, enc.data);
  }
  for (size_t i = 0; i < s->nqs; i++) {
    rc_buf_t v = {0};
    if (rc_tmpl_render(s->qs[i].value, &t, &v, err) != 0) {
      rc_buf_free(&v);
      rc_buf_free(&path);
      goto done;
    }
    rc_buf_putc(&path, (i == 0 && !strchr(path.data, '?')) ? '?' : '&');
    rc__urlencode(&path, s->qs[i].name);
    rc_buf_putc(&path, '=');
    rc__urlencode(&path, v.data ? v.data : "");
    rc_buf_free(&v);
  }
  free(vu->url);
  vu->url = rc_buf_steal(&path);
  vu->method = s->method;
  snprintf(vu->host, sizeof vu->host, "%s", host);
  snprintf(vu->hostport, sizeof vu->hostport, "%s", hostport);
  /* headers: config.defaults.headers, then the step's */
  const rc_file_t *f = r->f;
  size_t total = f->ndefault_headers + s->nheaders;
  vu->hs = rc_xcalloc(total + 1, sizeof *vu->hs);
  vu->hv = rc_xcalloc(total + 1, sizeof *vu->hv);
  for (size_t i = 0; i < total && vu->nh < 60; i++) {
    const rc_kv_t *kv =
        i < f->ndefault_headers ? &f->default_headers[i] : &s->headers[i - f->ndefault_headers];
    if (i < f->ndefault_headers && rc__has_hdr(s, kv->name)) {
      continue;
    }
    rc_buf_t v = {0};
    if (rc_tmpl_render(kv->value, &t, &v, err) != 0) {
      rc_buf_free(&v);
      goto done;
    }
    if (!v.data) {
      rc_buf_append(&v, "", 0);
    }
    vu->hv[vu->nh] = rc_buf_steal(&v);
    vu->hs[vu->nh].name = kv->name;
    vu->hs[vu->nh].value = vu->hv[vu->nh];
    vu->nh++;
  }
  /* cookies given in the file (config.defaults.cookie, the step's
   * `cookie`) go into the jar for this URL, as Artillery does */
  for (size_t i = 0; i < f->ndefault_cookies + s->ncookies; i++) {
    const rc_kv_t *kv =
        i < f->ndefault_cookies ? &f->default_cookies[i] : &s->cookies[i - f->ndefault_cookies];
    rc_buf_t v = {0};
    if (rc_tmpl_render(kv->value, &t, &v, err) != 0) {
      rc_buf_free(&v);
      goto done;
    }
    char *sc = rc_xasprintf("%s=%s", kv->name, v.data ? v.data : "");
    rc__jar_put(vu, sc);
    free(sc);
    rc_buf_free(&v);
  }
  if (s->json) {
    json_t *j = rc_tmpl_render_json(s->json, &t, err);
    if (!j) {
      goto done;
    }
    char *txt = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
    rc_buf_puts(&vu->body, txt ? txt : "null");
    free(txt);
    int has_ct = 0;
    for (size_t i = 0; i < vu->nh && !has_ct; i++) {
      has_ct = strcasecmp(vu->hs[i].name, "content-type") == 0;
    }
    if (!has_ct) {
      vu->hv[vu->nh] = NULL;
      vu->hs[vu->nh].name = "Content-Type";
      vu->hs[vu->nh].value = "application/json";
      vu->nh++;
    }
    vu->has_body = 1;
  } else if (s->body) {
    if (rc_tmpl_render(s->body, &t, &vu->body, err) != 0) {
      goto done;
    }
    vu->has_body = 1;
  } else if (s->form) {
    /* Artillery's form (urlencoded) and formData (multipart/form-data) */
    char boundary[48];
    snprintf(boundary, sizeof boundary, "racecheck-%016llx",
             (unsigned long long)rc_rng_next(&w->rng));
    for (size_t i = 0; i < s->nform; i++) {
      rc_buf_t v = {0};
      if (rc_tmpl_render(s->form[i].value, &t, &v, err) != 0) {
        rc_buf_free(&v);
        goto done;
      }
      if (s->multipart) {
        rc_buf_printf(&vu->body, "--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n",
                      boundary, s->form[i].name);
        rc_buf_append(&vu->body, v.data ? v.data : "", v.len);
        rc_buf_puts(&vu->body, "\r\n");
      } else {
        if (i) {
          rc_buf_putc(&vu->body, '&');
        }
        rc__urlencode(&vu->body, s->form[i].name);
        rc_buf_putc(&vu->body, '=');
        rc__urlencode(&vu->body, v.data ? v.data : "");
      }
      rc_buf_free(&v);
    }
    if (s->multipart) {
      rc_buf_printf(&vu->body, "--%s--\r\n", boundary);
    }
    int has_ct = 0;
    for (size_t i = 0; i < vu->nh && !has_ct; i++) {
      has_ct = strcasecmp(vu->hs[i].name, "content-type") == 0;
    }
    if (!has_ct) {
      vu->hv[vu->nh] = s->multipart ? rc_xasprintf("multipart/form-data; boundary=%s", boundary)
                                    : rc_xstrdup("application/x-www-form-urlencoded");
      vu->hs[vu->nh].name = "Content-Type";
      vu->hs[vu->nh].value = vu->hv[vu->nh];
      vu->nh++;
    }
    vu->has_body = 1;
  }
  if (vu->conn.addr != addr) {
    rc_conn_close(&vu->conn);
    vu->conn.addr = addr;
  }
  rc__serialise(vu);
  rc = 0;
done:
  rc_url_free(&abs);
  rc_buf_free(&url);
  rc_buf_free(&enc);
  return rc;
}

/* Turn vu's request into the one a redirect answer points at: `loc` is the
 * Location header, resolved against the current URL. 303 makes any method
 * but HEAD a GET without a body; 301, 302, 307 and 308 keep the method and
 * the body (got's behaviour, Artillery's HTTP client). Returns 0 or -1. */
static int rc__redirect(rc_vu_t *vu, const char *loc, int status, rc_err_t *err) {
  rc_worker_t *w = vu->w;
  rc_buf_t enc = {0}, path = {0};
  rc_url_t abs = {0};
  const rc_addr_t *addr = vu->conn.addr;
  int rc = -1;
  if (strncmp(loc, "//", 2) == 0) {
    rc_buf_puts(&enc, "http:");
  }
  rc__encode_url(&enc, loc);
  if (strncmp(enc.data, "http://", 7) == 0 || strncmp(enc.data, "https://", 8) == 0) {
    if (rc_url_parse(enc.data, &abs, err) != 0) {
      goto done;
    }
    addr = rc__origin(w, &abs, err);
    if (!addr) {
      goto done;
    }
    if (strcmp(abs.hostport, vu->hostport) != 0) {
      /* another origin: the previous host's cookies and credentials stay behind */
      for (size_t i = 0; i < vu->nh; i++) {
        if (strcasecmp(vu->hs[i].name, "authorization") == 0 ||
            strcasecmp(vu->hs[i].name, "cookie") == 0 || strcasecmp(vu->hs[i].name, "host") == 0) {
          free(vu->hv[i]);
          vu->hv[i] = vu->hv[vu->nh - 1];
          vu->hs[i] = vu->hs[vu->nh - 1];
          vu->nh--;
          i--;
        }
      }
    }
    snprintf(vu->host, sizeof vu->host, "%s", abs.host);
    snprintf(vu->hostport, sizeof vu->hostport, "%s", abs.hostport);
    rc_buf_puts(&path, abs.path);
  } else if (enc.data[0] == '/') {
    rc_buf_puts(&path, enc.data);
  } else {
    /* relative: against the directory of the current path */
    size_t n = strcspn(vu->url, "?");
    while (n > 0 && vu->url[n - 1] != '/') {
      n--;
    }
    rc_buf_append(&path, vu->url, n ? n : 0);
    if (!n) {
      rc_buf_putc(&path, '/');
    }
    rc_buf_puts(&path, enc.data);
  }
  free(vu->url);
  vu->url = rc_buf_steal(&path);
  if (status == 303 && strcmp(vu->method, "HEAD") != 0) {
    vu->method = "GET";
    vu->has_body = 0;
    for (size_t i = 0; i < vu->nh; i++) {
      if (strcasecmp(vu->hs[i].name, "content-type") == 0) {
        free(vu->hv[i]);
        vu->hv[i] = vu->hv[vu->nh - 1];
        vu->hs[i] = vu->hs[vu->nh - 1];
        vu->nh--;
        i--;
      }
    }
  }
  if (vu->conn.addr != addr) {
    rc_conn_close(&vu->conn);
    vu->conn.addr = addr;
  }
  rc__serialise(vu);
  rc = 0;
done:
  rc_url_free(&abs);
  rc_buf_free(&enc);
  rc_buf_free(&path);
  return rc;
}

static void rc__history_invoke(rc_vu_t *vu, uint64_t now) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  if (r->hfd < 0) {
    return;
  }
  rc_buf_t *b = &w->hbuf;
  rc_buf_printf(b, "{\"type\":\"invoke\",\"time\":%llu,\"process\":%llu,\"req\":%llu,\"phase\":",
                (unsigned long long)(now - r->t0), (unsigned long long)vu->id,
                (unsigned long long)vu->req_id);
  rc__json_str(b, r->phase_names[vu->phase]);
  rc_buf_puts(b, ",\"scenario\":");
  rc__json_str(b, vu->scenario ? vu->scenario : "");
  rc_buf_puts(b, ",\"step\":");
  rc__json_str(b, vu->cur->name);
  rc_buf_printf(b, ",\"method\":\"%s\",\"url\":", vu->method);
  rc__json_str(b, vu->url);
  rc_buf_puts(b, "}\n");
  if (b->len >= RC_HIST_FLUSH) {
    rc__hist_flush(w);
  }
}

static void rc__history_complete(rc_vu_t *vu, uint64_t now, int status, const char *error,
                                 const char *outcome, uint64_t lat_us, const json_t *captured) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  if (r->hfd < 0) {
    return;
  }
  rc_buf_t *b = &w->hbuf;
  rc_buf_printf(b,
                "{\"type\":\"complete\",\"time\":%llu,\"process\":%llu,\"req\":%llu,"
                "\"outcome\":\"%s\"",
                (unsigned long long)(now - r->t0), (unsigned long long)vu->id,
                (unsigned long long)vu->req_id, outcome);
  if (status > 0) {
    rc_buf_printf(b, ",\"status\":%d,\"latency_us\":%llu", status, (unsigned long long)lat_us);
  }
  if (error) {
    rc_buf_puts(b, ",\"error\":");
    rc__json_str(b, error);
  }
  if (captured && json_object_size(captured)) {
    char *c = json_dumps(captured, JSON_COMPACT);
    if (c) {
      rc_buf_printf(b, ",\"captured\":%s", c);
      free(c);
    }
  }
  rc_buf_puts(b, "}\n");
  if (b->len >= RC_HIST_FLUSH) {
    rc__hist_flush(w);
  }
}

static void rc__send(rc_vu_t *vu, uint64_t intended) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  vu->intended = intended;
  vu->req_id = w->req_seq++ * (uint64_t)r->nworkers + (uint64_t)w->idx;
  w->st.sent++;
  uint64_t now = rc_now_ns();
  rc__history_invoke(vu, now);
  const rc_step_t *s = vu->cur;
  /* headers always: Set-Cookie and Location are needed whatever the step */
  unsigned flags = RC_RESP_HEADERS;
  if (s->ncaptures || s->nexpects || vu->kind == RC_VU_SINGLE || r->hfd >= 0) {
    flags |= RC_RESP_BODY;
  }
  if (strcmp(vu->method, "HEAD") == 0) {
    flags |= RC_RESP_HEAD;
  }
  rc_conn_send(&vu->conn, vu->req.data, vu->req.len, flags, r->f->timeout_ns);
}

/* Start the request of step s. */
static void rc__start_request(rc_vu_t *vu, const rc_step_t *s, uint64_t intended) {
  rc_worker_t *w = vu->w;
  vu->cur = s;
  rc_err_t err = {0};
  if (rc__build(vu, s, &err) != 0) {
    char *what = rc_xasprintf("%s: template", s->name);
    rc__record_fail(w, s, "template", what, rc_xstrdup(err.msg), NULL);
    free(what);
    rc__vu_fail(vu, err.msg);
    rc__vu_finish(vu);
    return;
  }
  if (vu->hold_first) {
    vu->hold_first = 0;
    vu->held = 1;
    return; /* rc__fire sends it */
  }
  rc__send(vu, intended);
}

static void rc__think_cb(void *ud, uint64_t now) {
  rc_vu_t *vu = ud;
  (void)now;
  rc__vu_advance(vu, vu->timer_at);
}

/* Run steps until one needs to wait (a request, a think) or the flow ends. */
static void rc__vu_advance(rc_vu_t *vu, uint64_t intended) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  for (;;) {
    rc_frame_t *fr = &vu->stack[vu->depth - 1];
    if (fr->i >= fr->n) {
      if (vu->depth == 1) {
        rc__vu_finish(vu);
        return;
      }
      fr->iter++;
      if (fr->iter < fr->count) {
        fr->i = 0;
        rc__set_loop_vars(vu);
        continue;
      }
      json_decref(fr->over);
      fr->over = NULL;
      vu->depth--;
      rc__set_loop_vars(vu);
      continue;
    }
    const rc_step_t *s = &fr->steps[fr->i++];
    switch (s->kind) {
    case RC_STEP_REQUEST:
      rc__start_request(vu, s, intended);
      return;
    case RC_STEP_THINK:
      if (s->think_ns) {
        /* Artillery's jitter: uniform in think +- jitter, never below 0 */
        double pct = s->jitter_pct, jns = (double)s->jitter_ns;
        if (pct == 0 && jns == 0) {
          pct = r->f->think_jitter_pct;
          jns = (double)r->f->think_jitter_ns;
        }
        double j = pct > 0 ? (double)s->think_ns * pct / 100.0 : jns;
        double t = (double)s->think_ns + (j > 0 ? (rc_rng_double(&w->rng) * 2 - 1) * j : 0);
        vu->timer_at = rc_now_ns() + (t > 0 ? (uint64_t)t : 0);
        rc_loop_timer(&w->loop, vu->timer_at, rc__think_cb, vu);
        return;
      }
      break;
    case RC_STEP_LOG: {
      rc_tctx_t t;
      rc__tctx(vu, &t);
      rc_buf_t b = {0};
      rc_err_t err = {0};
      if (rc_tmpl_render(s->log, &t, &b, &err) != 0) {
        rc_buf_free(&b);
        rc_buf_puts(&b, err.msg);
      }
      if (r->o->verbose || vu->kind == RC_VU_SINGLE) {
        fprintf(stderr, "[vu %llu] %s\n", (unsigned long long)vu->id, b.data ? b.data : "");
      }
      rc_buf_free(&b);
      break;
    }
    case RC_STEP_LOOP: {
      if (vu->depth >= RC_MAX_FRAMES) {
        rc__vu_fail(vu, "loops nested too deeply");
        rc__vu_finish(vu);
        return;
      }
      rc_frame_t nf = {.steps = s->steps, .n = s->nsteps, .loop = s};
      if (s->over) {
        json_t *list = NULL;
        if (json_is_array(s->over)) {
          list = json_deep_copy(s->over); /* shared with other threads: copy */
        } else {
          /* a variable name, or a "{{ name }}" template */
          const char *name = json_string_value(s->over);
          rc_tctx_t t;
          rc__tctx(vu, &t);
          rc_err_t err = {0};
          const char *x = name;
          size_t len = strlen(name);
          const char *o = strstr(name, "{{"), *e = o ? strstr(o, "}}") : NULL;
          if (o && e) {
            x = o + 2;
            len = (size_t)(e - o - 2);
          }
          list = rc_tmpl_eval(x, len, &t, &err);
          if (!list || !json_is_array(list)) {
            json_decref(list);
            char *what = rc_xasprintf("loop over %s", name);
            rc__record_fail(w, s, "template", what, rc_xstrdup(err.msg[0] ? err.msg : "not a list"),
                            NULL);
            free(what);
            rc__vu_fail(vu, "loop over: not a list");
            rc__vu_finish(vu);
            return;
          }
        }
        nf.over = list;
        nf.count = json_array_size(list);
      } else {
        nf.count = s->count;
      }
      if (nf.count == 0 || nf.n == 0) {
        json_decref(nf.over);
        break;
      }
      vu->stack[vu->depth++] = nf;
      rc__set_loop_vars(vu);
      break;
    }
    default:
      break;
    }
  }
}

/* --------------------------------------------------------------- answers */

typedef struct rc_stepenv {
  rc_vu_t *vu;
  json_t *json;
  int status;
} rc_stepenv_t;

static int rc__stepenv_name(void *ud, const char *name, rc_val_t *out) {
  rc_stepenv_t *e = ud;
  memset(out, 0, sizeof *out);
  if (strcmp(name, "json") == 0) {
    out->type = e->json ? RC_V_JSON : RC_V_NULL;
    out->j = e->json;
    return 0;
  }
  if (strcmp(name, "status") == 0) {
    out->type = RC_V_INT;
    out->i = e->status;
    return 0;
  }
  json_t *v = rc__lookup(e->vu, name, strlen(name));
  if (!v) {
    return -1;
  }
  out->type = RC_V_JSON;
  out->j = v;
  return 0;
}

static int rc__stepenv_header(void *ud, const char *name, rc_val_t *out) {
  rc_stepenv_t *e = ud;
  const char *v = rc_resp_header(&e->vu->conn.resp, name);
  if (!v) {
    return -1;
  }
  out->type = RC_V_STR;
  out->s = v;
  out->slen = strlen(v);
  return 0;
}

/* Evaluate one expectation: 1 held, 0 failed (detail set). */
static int rc__check(rc_vu_t *vu, const rc_expect_t *x, int status, json_t *json, char **detail) {
  rc_tctx_t t;
  rc__tctx(vu, &t);
  const rc_resp_t *resp = &vu->conn.resp;
  rc_err_t err = {0};
  switch (x->kind) {
  case RC_EXP_STATUS:
    for (size_t i = 0; i < x->ncodes; i++) {
      if (x->codes[i] == status) {
        return 1;
      }
    }
    *detail = rc_xasprintf("status %d", status);
    return 0;
  case RC_EXP_CONTENT_TYPE: {
    const char *ct = rc_resp_header(resp, "content-type");
    rc_buf_t want = {0};
    if (rc_tmpl_render(x->a, &t, &want, &err) != 0) {
      *detail = rc_xstrdup(err.msg);
      rc_buf_free(&want);
      return 0;
    }
    const char *w = want.data;
    int ok = 0;
    if (ct) {
      if (strcmp(w, "json") == 0) {
        ok = strstr(ct, "json") != NULL;
      } else {
        ok = strncasecmp(ct, w, strlen(w)) == 0;
      }
    }
    if (!ok) {
      *detail = rc_xasprintf("content-type '%s'", ct ? ct : "(none)");
    }
    rc_buf_free(&want);
    return ok;
  }
  case RC_EXP_HAS_PROPERTY:
  case RC_EXP_NOT_HAS_PROPERTY: {
    int has = json && rc_jpath_get(json, x->a) != NULL;
    int want = x->kind == RC_EXP_HAS_PROPERTY;
    if (has != want) {
      *detail = rc_xstrdup(json ? (want ? "property absent" : "property present")
                                : "the body is not JSON");
      return 0;
    }
    return 1;
  }
  case RC_EXP_HAS_HEADER:
    if (!rc_resp_header(resp, x->a)) {
      *detail = rc_xasprintf("no header '%s'", x->a);
      return 0;
    }
    return 1;
  case RC_EXP_EQUALS:
  case RC_EXP_HEADER_EQUALS: {
    rc_buf_t a = {0}, b = {0};
    int ok = 0;
    if (rc_tmpl_render(x->a, &t, &a, &err) != 0 || rc_tmpl_render(x->b, &t, &b, &err) != 0) {
      *detail = rc_xstrdup(err.msg);
    } else if (x->kind == RC_EXP_EQUALS) {
      ok = strcmp(a.data, b.data) == 0;
      if (!ok) {
        *detail = rc_xasprintf("'%s' != '%s'", a.data, b.data);
      }
    } else {
      const char *h = rc_resp_header(resp, a.data);
      ok = h && strcmp(h, b.data) == 0;
      if (!ok) {
        *detail = rc_xasprintf("header %s is '%s'", a.data, h ? h : "(none)");
      }
    }
    rc_buf_free(&a);
    rc_buf_free(&b);
    return ok;
  }
  case RC_EXP_EXPR: {
    rc_stepenv_t se = {.vu = vu, .json = json, .status = status};
    rc_env_t env = {.ud = &se, .name = rc__stepenv_name, .header = rc__stepenv_header};
    int v = rc_expr_test(x->expr, &env, &err);
    if (v == 1) {
      return 1;
    }
    if (v < 0) {
      *detail = rc_xstrdup(err.msg);
    } else {
      rc_buf_t b = {0};
      rc_expr_explain(x->expr, &env, &b);
      *detail = rc_buf_steal(&b);
    }
    return 0;
  }
  default:
    return 1;
  }
}

/* A regexp capture: the whole match, or the group named or numbered by
 * c->group (Artillery's extractRegExp); NULL when nothing matches. */
static json_t *rc__regexp(const rc_capture_t *c, const char *body, size_t len) {
  pcre2_match_data *md = pcre2_match_data_create_from_pattern(c->re, NULL);
  json_t *v = NULL;
  if (pcre2_match(c->re, (PCRE2_SPTR)body, len, 0, 0, md, NULL) >= 0) {
    int g = 0;
    if (c->group) {
      char *end = NULL;
      long n = strtol(c->group, &end, 10);
      g = (end && !*end) ? (int)n : pcre2_substring_number_from_name(c->re, (PCRE2_SPTR)c->group);
    }
    PCRE2_UCHAR *sub = NULL;
    PCRE2_SIZE sl = 0;
    if (g >= 0 && pcre2_substring_get_bynumber(md, (uint32_t)g, &sub, &sl) == 0) {
      if (sl > 0) { /* an empty match is no value, as in Artillery */
        v = json_stringn((const char *)sub, sl);
      }
      pcre2_substring_free(sub);
    }
  }
  pcre2_match_data_free(md);
  return v;
}

static void rc__on_answer(rc_vu_t *vu, uint64_t now) {
  rc_worker_t *w = vu->w;
  rc_run_t *r = w->run;
  const rc_step_t *s = vu->cur;
  rc_resp_t *resp = &vu->conn.resp;
  int status = resp->status;
  uint64_t lat = now > vu->intended ? (now - vu->intended) / 1000u : 0;
  rc_stats_answer(&w->st, vu->phase, s->id, (uint32_t)status, lat);
  rc_hist_record(&w->tick, lat);
  w->tick_req++;
  if (r->record) {
    rc__rec_push(w, (rc_rec_t){vu->req_id, vu->id, vu->phase, s->id, (uint32_t)status});
  }
  rc__tl_push(vu, now, status, NULL);
  /* the cookie jar: every answer's Set-Cookie, redirects included */
  for (const char *sc = rc_resp_header(resp, "set-cookie"); sc;
       sc = rc_resp_header_next(resp, "set-cookie", sc)) {
    rc__jar_put(vu, sc);
  }
  /* redirects are followed unless the step says followRedirect: false;
   * each hop is an answer of its own (as Artillery counts them), the
   * captures and expectations apply to the last one */
  const char *loc = NULL;
  if ((status == 301 || status == 302 || status == 303 || status == 307 || status == 308) &&
      !s->no_redirect && (loc = rc_resp_header(resp, "location")) != NULL && *loc) {
    if (vu->redirects >= RC_MAX_REDIRECTS) {
      char *what = rc_xasprintf("%s: redirects", s->name);
      rc__record_fail(w, s, "expect", what,
                      rc_xasprintf("more than %d redirects", RC_MAX_REDIRECTS),
                      rc__describe(vu, status, resp->body.data, resp->body.len));
      free(what);
      rc__history_complete(vu, now, status, NULL, "fail", lat, NULL);
      rc__vu_fail(vu, "too many redirects");
      rc__vu_finish(vu);
      return;
    }
    rc_err_t err = {0};
    char *where = rc_xstrdup(loc);
    rc__history_complete(vu, now, status, NULL, "ok", lat, NULL);
    if (rc__redirect(vu, where, status, &err) != 0) {
      char *what = rc_xasprintf("%s: redirect", s->name);
      rc__record_fail(w, s, "template", what, rc_xasprintf("Location '%s': %s", where, err.msg),
                      NULL);
      free(what);
      free(where);
      rc__vu_fail(vu, err.msg);
      rc__vu_finish(vu);
      return;
    }
    free(where);
    vu->redirects++;
    rc__send(vu, now);
    return;
  }
  json_t *json = NULL;
  if (resp->body.len) {
    json = json_loadb(resp->body.data, resp->body.len, JSON_DECODE_ANY, NULL);
  }
  const char *outcome = "ok";
  /* captures and matches, in file order */
  json_t *captured = NULL;
  for (size_t i = 0; i < s->ncaptures && !vu->failed; i++) {
    const rc_capture_t *c = &s->captures[i];
    json_t *v = NULL;
    if (c->kind == RC_CAP_JSON) {
      v = json ? rc_jpath_get(json, c->path) : NULL;
      if (v) {
        json_incref(v);
      }
    } else if (c->kind == RC_CAP_HEADER) {
      const char *h = rc_resp_header(resp, c->path);
      v = h ? json_string_nocheck(h) : NULL;
    } else {
      v = rc__regexp(c, resp->body.data ? resp->body.data : "", resp->body.len);
    }
    if (c->value) {
      /* match: the value found must be the expected one (JavaScript's
       * ===: 5 and "5" differ) */
      rc_tctx_t t;
      rc__tctx(vu, &t);
      rc_err_t err = {0};
      json_t *want = rc_tmpl_render_json(c->value, &t, &err);
      int ok = v && want && json_equal(v, want);
      char *name =
          rc_xasprintf("%s / %s: match %s", vu->scenario ? vu->scenario : "-", s->name, c->path);
      if (ok || !c->strict) {
        rc__fail_slot(w, c, "match", name)->ok++;
      } else {
        char *got = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        char *exp = want ? json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        rc__record_fail(
            w, c, "match", name,
            rc_xasprintf("got %s, expected %s", got ? got : "nothing", exp ? exp : err.msg),
            rc__describe(vu, status, resp->body.data, resp->body.len));
        free(got);
        free(exp);
        rc__vu_fail(vu, "match failed");
        outcome = "fail";
      }
      free(name);
      json_decref(want);
      json_decref(v);
      continue;
    }
    char *name = rc_xasprintf("%s / %s: capture %s as %s", vu->scenario ? vu->scenario : "-",
                              s->name, c->path, c->as);
    if (!v && !c->strict) {
      rc__fail_slot(w, c, "capture", name)->ok++; /* strict: false -- a miss is no failure */
      free(name);
      continue;
    }
    if (!v) {
      w->st.capture_failed++;
      rc__record_fail(w, c, "capture", name, rc_xasprintf("'%s' not found in the answer", c->path),
                      rc__describe(vu, status, resp->body.data, resp->body.len));
      rc__vu_fail(vu, "capture failed");
      outcome = "fail";
      free(name);
      break;
    }
    rc__fail_slot(w, c, "capture", name)->ok++;
    free(name);
    if (!captured) {
      captured = json_object();
    }
    json_object_set(captured, c->as, v);
    json_object_set_new(vu->vars, c->as, v);
  }
  /* expectations, after the captures (as in Artillery: they may use them) */
  for (size_t i = 0; i < s->nexpects && !vu->failed; i++) {
    const rc_expect_t *x = &s->expects[i];
    char *detail = NULL;
    char *name = rc_xasprintf("%s / %s: %s", vu->scenario ? vu->scenario : "-", s->name, x->text);
    if (rc__check(vu, x, status, json, &detail)) {
      rc__fail_slot(w, x, "expect", name)->ok++;
      w->st.expect_ok++;
    } else {
      w->st.expect_failed++;
      rc__record_fail(w, x, "expect", name, detail,
                      rc__describe(vu, status, resp->body.data, resp->body.len));
      rc__vu_fail(vu, "expectation failed");
      outcome = "fail";
    }
    free(name);
  }
  rc__history_complete(vu, now, status, NULL, outcome, lat, captured);
  json_decref(captured);
  if (vu->kind == RC_VU_SINGLE) {
    json_decref(vu->last_json);
    vu->last_json = json;
    json = NULL;
    vu->last_status = status;
  }
  json_decref(json);
  if (vu->failed) {
    rc__vu_finish(vu);
    return;
  }
  rc__vu_advance(vu, now);
}

static void rc__burst_ready(rc_worker_t *w) {
  if (w->burst_reported || w->burst_ready < w->nburst) {
    return;
  }
  w->burst_reported = 1;
  rc_run_t *r = w->run;
  pthread_mutex_lock(&r->mu);
  r->burst_ready += w->nburst;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

static void rc__conn_cb(rc_conn_t *c, int ev, void *ud) {
  rc_vu_t *vu = ud;
  rc_worker_t *w = vu->w;
  (void)c;
  uint64_t now = rc_now_ns();
  if (ev == RC_CONN_EV_CONNECTED) {
    if (vu->kind == RC_VU_BURST && !vu->connected) {
      vu->connected = 1;
      w->burst_ready++;
      rc__burst_ready(w);
    }
    return;
  }
  if (ev == RC_CONN_EV_ERROR && vu->held) {
    /* a burst connection failed before the fire: report it at the fire */
    if (!vu->connected) {
      vu->connected = 1;
      w->burst_ready++;
      rc__burst_ready(w);
    }
    return;
  }
  if (ev == RC_CONN_EV_ERROR) {
    const char *name = rc_net_errname(c->err);
    rc_stats_answer(&w->st, vu->phase, vu->cur ? vu->cur->id : 0, RC_CODE_NETERR + (uint32_t)c->err,
                    0);
    w->tick_err++;
    if (w->run->record) {
      rc__rec_push(w, (rc_rec_t){vu->req_id, vu->id, vu->phase, vu->cur ? vu->cur->id : 0,
                                 RC_CODE_NETERR + (uint32_t)c->err});
    }
    rc__tl_push(vu, now, 0, name);
    rc__history_complete(vu, now, 0, name, "info", 0, NULL);
    rc__vu_fail(vu, name);
    rc__vu_finish(vu);
    return;
  }
  rc__on_answer(vu, now);
}

/* --------------------------------------------------------------- workers */

static double rc__arrival_time(const rc_phase_t *p, uint64_t i, uint64_t total) {
  double d = (double)p->duration_ns / 1e9;
  if (p->has_count) {
    return total ? (double)i * d / (double)total : 0;
  }
  double r0 = p->arrival_rate, r1 = p->ramp_to;
  double a = (r1 - r0) / (2.0 * d);
  if (fabs(a) < 1e-12) {
    return r0 > 0 ? (double)i / r0 : d;
  }
  double disc = r0 * r0 + 4.0 * a * (double)i;
  if (disc < 0) {
    disc = 0;
  }
  return (-r0 + sqrt(disc)) / (2.0 * a);
}

static uint64_t rc__arrival_total(const rc_phase_t *p) {
  if (p->has_count) {
    return p->arrival_count;
  }
  double d = (double)p->duration_ns / 1e9;
  return (uint64_t)floor((p->arrival_rate + p->ramp_to) / 2.0 * d + 1e-9);
}

static const rc_scn_t *rc__pick(rc_worker_t *w, int forced) {
  const rc_file_t *f = w->run->f;
  if (forced >= 0) {
    return &f->scenarios[forced];
  }
  double x = rc_rng_double(&w->rng) * f->total_weight;
  for (size_t i = 0; i < f->nscenarios; i++) {
    x -= f->scenarios[i].weight;
    if (x < 0) {
      return &f->scenarios[i];
    }
  }
  return &f->scenarios[f->nscenarios - 1];
}

/* The worker's arrivals of the current phase are all started: tell the
 * coordinator, which waits for that before it calls the run drained. */
static void rc__arrivals_done(rc_worker_t *w) {
  rc_run_t *r = w->run;
  w->arr_active = 0;
  pthread_mutex_lock(&r->mu);
  r->arr_pending--;
  pthread_cond_broadcast(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

/* Start every arrival due by `now`; with `force`, every remaining one (the
 * phase is over: a worker that fell behind still starts them all, late,
 * and the lag says so). */
static void rc__spawn_arrivals(rc_worker_t *w, uint64_t now, int force) {
  rc_run_t *r = w->run;
  while (w->arr_active) {
    if (w->arr_next >= w->arr_total) {
      rc__arrivals_done(w);
      break;
    }
    uint64_t at =
        w->arr_t0 + (uint64_t)(rc__arrival_time(w->arr_phase, w->arr_next, w->arr_total) * 1e9);
    if (at > now && !force) {
      break;
    }
    if (at > now) {
      at = now;
    }
    w->arr_next += (uint64_t)r->nworkers;
    uint64_t lag = (now - at) / 1000u;
    if (lag > w->st.max_lag_us) {
      w->st.max_lag_us = lag;
    }
    const rc_phase_t *p = w->arr_phase;
    if (p->max_vusers) {
      uint64_t cur = atomic_fetch_add(&r->phase_active[w->arr_pidx], 1);
      if (cur >= p->max_vusers) {
        atomic_fetch_sub(&r->phase_active[w->arr_pidx], 1);
        w->st.vu_skipped++;
        continue;
      }
    } else {
      atomic_fetch_add(&r->phase_active[w->arr_pidx], 1);
    }
    const rc_scn_t *sc = rc__pick(w, -1);
    rc_vu_t *vu = rc__vu_new(w, RC_VU_LOAD, w->arr_pidx, sc->name, sc->flow.steps, sc->flow.n);
    rc__vu_advance(vu, at);
  }
}

static uint64_t rc__next_arrival(const rc_worker_t *w) {
  if (!w->arr_active || w->arr_next >= w->arr_total) {
    return UINT64_MAX;
  }
  return w->arr_t0 + (uint64_t)(rc__arrival_time(w->arr_phase, w->arr_next, w->arr_total) * 1e9);
}

static void rc__burst_prepare(rc_worker_t *w, const rc_cmd_t *c) {
  rc_run_t *r = w->run;
  const rc_phase_t *p = &r->f->phases[c->phase];
  free(w->burst);
  w->burst = rc_xcalloc(c->n ? c->n : 1, sizeof(rc_vu_t *));
  w->nburst = c->n;
  w->burst_ready = 0;
  w->burst_reported = 0;
  for (uint32_t i = 0; i < c->n; i++) {
    const rc_scn_t *sc = rc__pick(w, p->scenario);
    atomic_fetch_add(&r->phase_active[c->phase], 1);
    rc_vu_t *vu = rc__vu_new(w, RC_VU_BURST, c->phase, sc->name, sc->flow.steps, sc->flow.n);
    w->burst[i] = vu;
    json_object_set_new(vu->vars, "$round", json_integer((json_int_t)c->round));
    vu->hold_first = 1;
    rc__vu_advance(vu, 0);
  }
  /* VUs that hold their first request connect now; the others (no request,
   * or failed to render) count as ready at once */
  for (uint32_t i = 0; i < c->n; i++) {
    rc_vu_t *vu = w->burst[i]; /* NULL when it already finished */
    if (vu && vu->held) {
      rc_conn_connect(&vu->conn, r->f->timeout_ns);
    } else {
      w->burst[i] = NULL;
      w->burst_ready++;
    }
  }
  rc__burst_ready(w);
}

static void rc__burst_fire(rc_worker_t *w) {
  uint64_t now = rc_now_ns();
  for (uint32_t i = 0; i < w->nburst; i++) {
    rc_vu_t *vu = w->burst[i];
    if (!vu) {
      continue;
    }
    vu->held = 0;
    /* a connection that failed to open is retried by the send; its error,
     * if it fails again, is tallied like any other */
    rc__send(vu, now);
  }
  free(w->burst);
  w->burst = NULL;
  w->nburst = 0;
}

static void rc__on_wake(rc_loop_t *l, void *ud) {
  rc_worker_t *w = ud;
  (void)l;
  rc_cmd_t cmds[8];
  pthread_mutex_lock(&w->mu);
  int n = w->ncmds;
  memcpy(cmds, w->cmds, (size_t)n * sizeof cmds[0]);
  w->ncmds = 0;
  pthread_mutex_unlock(&w->mu);
  for (int i = 0; i < n; i++) {
    const rc_cmd_t *c = &cmds[i];
    if (c->kind != CMD_BURST_FIRE && c->kind != CMD_STOP && w->arr_active) {
      /* a new phase: the previous one's arrivals are all due by now */
      rc__spawn_arrivals(w, rc_now_ns(), 1);
    }
    switch (c->kind) {
    case CMD_ARRIVALS:
      w->arr_active = 1;
      w->arr_phase = &w->run->f->phases[c->phase];
      w->arr_pidx = c->phase;
      w->arr_t0 = c->t0;
      w->arr_total = rc__arrival_total(w->arr_phase);
      w->arr_next = (uint64_t)w->idx;
      break;
    case CMD_BURST_PREPARE:
      rc__burst_prepare(w, c);
      break;
    case CMD_BURST_FIRE:
      rc__burst_fire(w);
      break;
    case CMD_SINGLE: {
      const char *name = w->run->phase_names[c->phase];
      rc_vu_t *vu = rc__vu_new(w, RC_VU_SINGLE, c->phase, name, c->steps, c->nsteps);
      rc__vu_advance(vu, rc_now_ns());
      break;
    }
    case CMD_STOP:
      w->stop = 1;
      break;
    default:
      break;
    }
  }
}

static void rc__post(rc_worker_t *w, const rc_cmd_t *c) {
  pthread_mutex_lock(&w->mu);
  if (w->ncmds < 8) {
    w->cmds[w->ncmds++] = *c;
  }
  pthread_mutex_unlock(&w->mu);
  rc_loop_wake(&w->loop);
}

static void *rc__worker_main(void *arg) {
  rc_worker_t *w = arg;
  w->next_publish = rc_now_ns() + RC_PUBLISH_NS;
  while (!w->stop) {
    uint64_t now = rc_now_ns();
    rc__spawn_arrivals(w, now, 0);
    uint64_t until = w->next_publish;
    uint64_t na = rc__next_arrival(w);
    if (na < until) {
      until = na;
    }
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
  rc__hist_flush(w);
  /* left only when the run was interrupted */
  for (rc_vu_t *vu = w->vus, *next; vu; vu = next) {
    next = vu->next;
    rc__vu_free(vu);
  }
  return NULL;
}

/* --------------------------------------------------------------- coordinator */

static volatile sig_atomic_t rc__interrupted;

void rc_run_interrupt(void) {
  rc__interrupted = 1;
}

typedef struct rc_coord {
  rc_run_t *r;
  rc_result_t *out;
} rc_coord_t;

#define RC_POLL_NS (100ull * 1000000ull) /* how often the coordinator looks at Ctrl-C */

/* Wait until pred(r) holds, ticking the monitor once a second. Called
 * with r->mu held; returns with it held: 0, or -1 when interrupted. */
static int rc__wait(rc_coord_t *c, int (*pred)(rc_run_t *r), uint64_t *next_tick) {
  rc_run_t *r = c->r;
  while (!pred(r)) {
    if (rc__interrupted) {
      return -1;
    }
    uint64_t now = rc_now_ns();
    if (now >= *next_tick) {
      pthread_mutex_unlock(&r->mu);
      rc_monitor_tick(c->out, (char *)r->ws, sizeof *r->ws, r->nworkers, r->t0, r->o->live);
      pthread_mutex_lock(&r->mu);
      *next_tick += 1000000000ull;
      continue;
    }
    uint64_t until = *next_tick < now + RC_POLL_NS ? *next_tick : now + RC_POLL_NS;
    struct timespec ts = {(time_t)(until / 1000000000ull), (long)(until % 1000000000ull)};
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
  }
  return 0;
}

/* Sleep until `until`, ticking the monitor: 0, or -1 when interrupted. */
static int rc__sleep_until(rc_coord_t *c, uint64_t until, uint64_t *next_tick) {
  rc_run_t *r = c->r;
  for (;;) {
    uint64_t now = rc_now_ns();
    if (rc__interrupted) {
      return -1;
    }
    if (now >= until) {
      return 0;
    }
    if (now >= *next_tick) {
      rc_monitor_tick(c->out, (char *)r->ws, sizeof *r->ws, r->nworkers, r->t0, r->o->live);
      *next_tick += 1000000000ull;
      continue;
    }
    uint64_t t = until < *next_tick ? until : *next_tick;
    if (t > now + RC_POLL_NS) {
      t = now + RC_POLL_NS;
    }
    struct timespec ts = {(time_t)((t - now) / 1000000000ull), (long)((t - now) % 1000000000ull)};
    nanosleep(&ts, NULL);
  }
}

static int rc__pred_drained(rc_run_t *r) {
  return r->active == 0 && r->arr_pending == 0;
}
static int rc__pred_ready(rc_run_t *r) {
  return r->burst_ready >= r->want;
}
static int rc__pred_done(rc_run_t *r) {
  return r->burst_done >= r->want;
}
static int rc__pred_single(rc_run_t *r) {
  return r->single_done;
}

/* Run a flow as one virtual user on worker 0 and wait for it. */
static void rc__single(rc_coord_t *c, uint32_t phase, const rc_step_t *steps, size_t n,
                       uint64_t *next_tick) {
  rc_run_t *r = c->r;
  pthread_mutex_lock(&r->mu);
  r->single_done = 0;
  json_decref(r->single_vars);
  json_decref(r->single_json);
  free(r->single_error);
  free(r->single_line);
  r->single_vars = r->single_json = NULL;
  r->single_error = NULL;
  r->single_line = NULL;
  r->single_failed = 0;
  r->single_status = 0;
  pthread_mutex_unlock(&r->mu);
  rc_cmd_t cmd = {.kind = CMD_SINGLE, .phase = phase, .steps = steps, .nsteps = n};
  rc__post(&r->ws[0], &cmd);
  pthread_mutex_lock(&r->mu);
  rc__wait(c, rc__pred_single, next_tick);
  pthread_mutex_unlock(&r->mu);
}

/* The invariant environment: the answer of its request plus the tallies of
 * the load phases. */
typedef struct rc_invenv {
  rc_run_t *r;
  json_t *json;
  int status;
  const rc_stats_t *s;
} rc_invenv_t;

typedef struct rc_entenv {
  rc_run_t *r;
  uint64_t key;
} rc_entenv_t;

static int rc__ent_name(void *ud, const char *name, rc_val_t *out) {
  rc_entenv_t *e = ud;
  const rc_file_t *f = e->r->f;
  uint32_t code = rc_tally_code(e->key), step = rc_tally_step(e->key);
  uint32_t phase = rc_tally_phase(e->key);
  memset(out, 0, sizeof *out);
  const char *s = NULL;
  if (strcmp(name, "status") == 0) {
    out->type = RC_V_INT;
    out->i = code < RC_CODE_NETERR ? code : 0;
    return 0;
  }
  if (strcmp(name, "error") == 0) {
    s = code >= RC_CODE_NETERR ? rc_net_errname((int)(code - RC_CODE_NETERR)) : "";
  } else if (strcmp(name, "step") == 0) {
    s = step < f->nsteps ? f->steps[step].name : "";
  } else if (strcmp(name, "scenario") == 0) {
    s = step < f->nsteps ? f->steps[step].scenario : "";
  } else if (strcmp(name, "method") == 0) {
    s = step < f->nsteps ? f->steps[step].method : "";
  } else if (strcmp(name, "phase") == 0) {
    s = phase < e->r->nphases_total ? e->r->phase_names[phase] : "";
  } else {
    json_t *v = json_object_get(e->r->globals, name);
    if (!v) {
      return -1;
    }
    out->type = RC_V_JSON;
    out->j = v;
    return 0;
  }
  out->type = RC_V_STR;
  out->s = s;
  out->slen = strlen(s);
  return 0;
}

static int rc__entry_matches(rc_run_t *r, uint64_t key, const rc_expr_t *const *filters, size_t n,
                             rc_err_t *err) {
  rc_entenv_t ee = {.r = r, .key = key};
  rc_env_t env = {.ud = &ee, .name = rc__ent_name};
  for (size_t k = 0; k < n; k++) {
    int v = rc_expr_test(filters[k], &env, err);
    if (v < 0) {
      return -1;
    }
    if (!v) {
      return 0;
    }
  }
  return 1;
}

static int rc__inv_count(void *ud, const rc_expr_t *const *filters, size_t n, int64_t *out,
                         rc_err_t *err) {
  rc_invenv_t *e = ud;
  const rc_tally_t *t = &e->s->tally;
  int64_t sum = 0;
  for (uint32_t i = 0; i < t->cap; i++) {
    uint64_t key = t->ents[i].key;
    if (!key || rc_tally_phase(key) >= e->r->f->nphases) {
      continue;
    }
    int m = rc__entry_matches(e->r, key, filters, n, err);
    if (m < 0) {
      return -1;
    }
    if (m) {
      sum += (int64_t)t->ents[i].count;
    }
  }
  *out = sum;
  return 0;
}

static int rc__inv_status(void *ud, int64_t code, int64_t *out) {
  rc_invenv_t *e = ud;
  const rc_tally_t *t = &e->s->tally;
  int64_t sum = 0;
  for (uint32_t i = 0; i < t->cap; i++) {
    uint64_t key = t->ents[i].key;
    if (key && rc_tally_phase(key) < e->r->f->nphases && (int64_t)rc_tally_code(key) == code) {
      sum += (int64_t)t->ents[i].count;
    }
  }
  *out = sum;
  return 0;
}

static int rc__inv_name(void *ud, const char *name, rc_val_t *out) {
  rc_invenv_t *e = ud;
  memset(out, 0, sizeof *out);
  const rc_stats_t *s = e->s;
  int64_t v = -1;
  if (strcmp(name, "json") == 0) {
    out->type = e->json ? RC_V_JSON : RC_V_NULL;
    out->j = e->json;
    return 0;
  }
  if (strcmp(name, "status") == 0) {
    out->type = e->status ? RC_V_INT : RC_V_NULL;
    out->i = e->status;
    return 0;
  }
  if (strcmp(name, "sent") == 0 || strcmp(name, "responses") == 0 || strcmp(name, "errors") == 0 ||
      strcmp(name, "timeouts") == 0) {
    /* over the load phases only, like count() */
    int64_t sent = 0, resp = 0, errs = 0, tmo = 0;
    const rc_tally_t *t = &s->tally;
    for (uint32_t i = 0; i < t->cap; i++) {
      uint64_t key = t->ents[i].key;
      if (!key || rc_tally_phase(key) >= e->r->f->nphases) {
        continue;
      }
      int64_t cnt = (int64_t)t->ents[i].count;
      uint32_t code = rc_tally_code(key);
      sent += cnt;
      if (code < RC_CODE_NETERR) {
        resp += cnt;
      } else {
        errs += cnt;
        if (code == RC_CODE_NETERR + RC_NET_ETIMEDOUT) {
          tmo += cnt;
        }
      }
    }
    v = name[0] == 's' ? sent : name[0] == 'r' ? resp : name[0] == 'e' ? errs : tmo;
  } else if (strcmp(name, "created") == 0) {
    v = (int64_t)s->vu_created;
  } else if (strcmp(name, "completed") == 0) {
    v = (int64_t)s->vu_completed;
  } else if (strcmp(name, "failed") == 0) {
    v = (int64_t)s->vu_failed;
  }
  if (v >= 0) {
    out->type = RC_V_INT;
    out->i = v;
    return 0;
  }
  json_t *j = json_object_get(e->r->globals, name);
  if (!j) {
    return -1;
  }
  out->type = RC_V_JSON;
  out->j = j;
  return 0;
}

typedef struct rc_involved {
  rc_run_t *r;
  rc_buf_t *out;
  size_t listed;
} rc_involved_t;

static void rc__involved_cb(void *ud, const rc_expr_t *call, const rc_expr_t *const *filters,
                            size_t n) {
  rc_involved_t *iv = ud;
  rc_run_t *r = iv->r;
  rc_buf_t ids = {0};
  size_t found = 0;
  for (int wi = 0; wi < r->nworkers; wi++) {
    rc_worker_t *w = &r->ws[wi];
    for (size_t i = 0; i < w->nrecs; i++) {
      const rc_rec_t *rec = &w->recs[i];
      if (rec->phase >= r->f->nphases) {
        continue;
      }
      uint64_t key = ((uint64_t)(rec->phase + 1u) << 40) | ((uint64_t)rec->step << 16) |
                     (uint64_t)(rec->code & 0xffffu);
      rc_err_t err = {0};
      if (rc__entry_matches(r, key, filters, n, &err) != 1) {
        continue;
      }
      if (found < RC_MAX_INVOLVED) {
        rc_buf_printf(&ids, "%s%llu", found ? "," : "", (unsigned long long)rec->req);
      }
      found++;
    }
  }
  if (iv->out->len) {
    rc_buf_puts(iv->out, ",");
  }
  rc_buf_puts(iv->out, "{\"count\":");
  rc_buf_t txt = {0};
  rc_expr_print(call, &txt);
  rc__json_str(iv->out, txt.data);
  rc_buf_free(&txt);
  rc_buf_printf(iv->out, ",\"matched\":%zu,\"requests\":[%s]%s}", found, ids.data ? ids.data : "",
                found > RC_MAX_INVOLVED ? ",\"truncated\":true" : "");
  rc_buf_free(&ids);
  iv->listed++;
}

static void rc__invariants(rc_coord_t *c, uint64_t *next_tick) {
  rc_run_t *r = c->r;
  const rc_file_t *f = r->f;
  uint32_t phase = (uint32_t)f->nphases + 2;
  for (size_t i = 0; i < f->ninvariants; i++) {
    const rc_invariant_t *inv = &f->invariants[i];
    rc_invenv_t ie = {.r = r, .s = &r->snap};
    char *reqfail = NULL;
    if (inv->req) {
      rc__single(c, phase, inv->req, 1, next_tick);
      pthread_mutex_lock(&r->mu);
      ie.json = r->single_json;
      ie.status = r->single_status;
      if (r->single_failed && r->single_error) {
        reqfail = rc_xasprintf("the invariant's request failed: %s", r->single_error);
      }
      pthread_mutex_unlock(&r->mu);
    }
    rc_env_t env = {
        .ud = &ie, .name = rc__inv_name, .status_count = rc__inv_status, .count = rc__inv_count};
    for (size_t k = 0; k < inv->n; k++) {
      rc_err_t err = {0};
      int v = reqfail ? 0 : rc_expr_test(inv->exprs[k], &env, &err);
      rc_buf_t d = {0};
      if (reqfail) {
        rc_buf_puts(&d, reqfail);
      } else if (v < 0) {
        rc_buf_printf(&d, "error: %s", err.msg);
      } else {
        rc_expr_explain(inv->exprs[k], &env, &d);
      }
      char *name = inv->n > 1 || strcmp(inv->name, inv->texts[k]) != 0
                       ? rc_xasprintf("%s: %s", inv->name, inv->texts[k])
                       : rc_xstrdup(inv->name);
      rc_check_t *chk =
          rc_result_add_check(c->out, "invariant", name, v == 1, rc_buf_steal(&d), NULL);
      if (v != 1 && inv->req) {
        /* the request as it was sent, not its template */
        pthread_mutex_lock(&r->mu);
        chk->request = r->single_line ? rc_xasprintf("%s -> %d", r->single_line, ie.status)
                                      : rc_xasprintf("%s %s -> %d", inv->req->method, inv->req->url,
                                                     ie.status);
        pthread_mutex_unlock(&r->mu);
      }
      if (v != 1 && !reqfail) {
        rc_buf_t sb = {0};
        rc_expr_sentence(inv->exprs[k], &env, &sb);
        chk->sentence = rc_buf_steal(&sb);
      }
      if (v != 1 && r->record) {
        rc_buf_t ids = {0};
        rc_involved_t iv = {.r = r, .out = &ids};
        rc_expr_each_count(inv->exprs[k], rc__involved_cb, &iv);
        if (iv.listed) {
          chk->requests = rc_xasprintf("[%s]", ids.data);
        }
        rc_buf_free(&ids);
      }
    }
    free(reqfail);
  }
}

static void rc__ensure(rc_run_t *r, rc_result_t *out) {
  const rc_stats_t *s = &out->total;
  for (size_t i = 0; i < r->f->nensures; i++) {
    const rc_ensure_t *e = &r->f->ensures[i];
    double v = 0;
    switch (e->metric) {
    case RC_ENS_MIN:
      v = s->lat.count ? (double)s->lat.min : 0;
      break;
    case RC_ENS_MAX:
      v = (double)s->lat.max;
      break;
    case RC_ENS_MEDIAN:
      v = (double)rc_hist_percentile(&s->lat, 50);
      break;
    case RC_ENS_P75:
      v = (double)rc_hist_percentile(&s->lat, 75);
      break;
    case RC_ENS_P90:
      v = (double)rc_hist_percentile(&s->lat, 90);
      break;
    case RC_ENS_P95:
      v = (double)rc_hist_percentile(&s->lat, 95);
      break;
    case RC_ENS_P99:
      v = (double)rc_hist_percentile(&s->lat, 99);
      break;
    case RC_ENS_P999:
      v = (double)rc_hist_percentile(&s->lat, 99.9);
      break;
    case RC_ENS_MEAN:
      v = rc_hist_mean(&s->lat);
      break;
    default:
      break;
    }
    int ok;
    char *detail;
    if (e->metric == RC_ENS_ERROR_RATE) {
      double rate = s->vu_created ? 100.0 * (double)s->vu_failed / (double)s->vu_created : 0;
      ok = rate <= e->limit;
      detail = rc_xasprintf("error rate %.2f%% (%llu of %llu scenarios failed)", rate,
                            (unsigned long long)s->vu_failed, (unsigned long long)s->vu_created);
    } else {
      v /= 1000.0;
      ok = v <= e->limit;
      detail = rc_xasprintf("measured %.3f ms", v);
    }
    rc_result_add_check(out, "ensure", rc_xstrdup(e->text), ok, detail, NULL);
  }
}

static int rc__tl_cmp(const void *a, const void *b) {
  const rc_tlreq_t *x = a, *y = b;
  return x->t0_ms < y->t0_ms ? -1 : x->t0_ms > y->t0_ms ? 1 : (x->req > y->req) - (x->req < y->req);
}

/* Move the workers' timeline requests into the result, by send time. */
static void rc__collect_timeline(rc_run_t *r, rc_result_t *out) {
  size_t n = 0;
  for (int i = 0; i < r->nworkers; i++) {
    n += r->ws[i].ntl;
    out->tl_truncated |= r->ws[i].tl_truncated;
  }
  if (n == 0) {
    return;
  }
  out->tl = rc_xcalloc(n, sizeof *out->tl);
  for (int i = 0; i < r->nworkers; i++) {
    rc_worker_t *w = &r->ws[i];
    memcpy(out->tl + out->ntl, w->tl, w->ntl * sizeof *w->tl);
    out->ntl += w->ntl;
    w->ntl = 0; /* the lines belong to the result now */
  }
  qsort(out->tl, out->ntl, sizeof *out->tl, rc__tl_cmp);
}

static void rc__collect_fails(rc_run_t *r, rc_result_t *out) {
  /* merge per-worker failure slots by key, in worker 0's order first */
  for (int wi = 0; wi < r->nworkers; wi++) {
    rc_worker_t *w = &r->ws[wi];
    for (size_t i = 0; i < w->nfails; i++) {
      rc_fail_t *f = &w->fails[i];
      if (!f->key) {
        continue;
      }
      uint64_t ok = f->ok, failed = f->failed;
      char *detail = f->detail, *request = f->request;
      f->detail = f->request = NULL;
      for (int wj = wi + 1; wj < r->nworkers; wj++) {
        rc_worker_t *w2 = &r->ws[wj];
        for (size_t k = 0; k < w2->nfails; k++) {
          rc_fail_t *g = &w2->fails[k];
          if (g->key == f->key && strcmp(g->kind, f->kind) == 0) {
            ok += g->ok;
            failed += g->failed;
            if (!detail) {
              detail = g->detail;
              request = g->request;
              g->detail = g->request = NULL;
            }
            g->key = NULL;
          }
        }
      }
      rc_check_t *c = rc_result_add_check(out, f->kind, f->name, failed == 0, detail, request);
      f->name = NULL;
      c->failures = failed;
      if (failed == 0) {
        free(c->detail);
        c->detail = rc_xasprintf("held %llu times", (unsigned long long)ok);
      } else {
        uint64_t total = ok + failed;
        char *d = rc_xasprintf("failed %llu of %llu times; first: %s", (unsigned long long)failed,
                               (unsigned long long)total, c->detail ? c->detail : "");
        free(c->detail);
        c->detail = d;
      }
    }
  }
}

static void rc__snapshot(rc_run_t *r) {
  /* called after the load phases drained: the workers' last writes happen
   * before their VUs finished, which the coordinator saw under r->mu */
  rc_stats_init(&r->snap);
  for (int i = 0; i < r->nworkers; i++) {
    rc_stats_merge(&r->snap, &r->ws[i].st);
  }
  r->have_snap = 1;
}

int rc_run(const rc_run_opts_t *o, rc_result_t *out, rc_err_t *err) {
  const rc_file_t *f = o->file;
  rc_run_t run;
  rc_run_t *r = &run;
  memset(r, 0, sizeof *r);
  r->o = o;
  r->f = f;
  r->hfd = -1;
  int ret = RC_EXIT_OK;
  int started = 0;
  const char *target = o->target ? o->target : f->target;
  if (!target) {
    rc_err_set(err, 0, 0, "no target: set config.target or pass --target URL");
    return RC_EXIT_USAGE;
  }
  if (rc_url_parse(target, &r->target, err) != 0) {
    return RC_EXIT_USAGE;
  }
  size_t plen = strlen(r->target.path);
  while (plen > 0 && r->target.path[plen - 1] == '/') {
    plen--;
  }
  r->prefix = rc_xstrndup(r->target.path, plen);
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  r->globals = f->variables ? json_deep_copy(f->variables) : json_object();
  if (o->vars) {
    json_object_update(r->globals, o->vars);
  }
  json_object_set_new(r->globals, "$round", json_integer(0)); /* outside bursts */
  for (size_t i = 0; i < f->npayloads; i++) {
    if (f->payloads[i].all) {
      json_object_set_new(r->globals, f->payloads[i].name, json_deep_copy(f->payloads[i].all));
    }
  }
  if (!json_object_get(r->globals, "target")) {
    /* Artillery's built-in `target` variable: the target URL in use */
    json_object_set_new(r->globals, "target", json_string(target));
  }
  for (size_t i = 0; i < f->nphases; i++) {
    r->phase_names[i] = f->phases[i].name;
  }
  r->phase_names[f->nphases] = "before";
  r->phase_names[f->nphases + 1] = "after";
  r->phase_names[f->nphases + 2] = "invariants";
  r->nphases_total = (uint32_t)f->nphases + 3;
  if (rc_addr_resolve(r->target.host, r->target.port, &r->addr, err) != 0) {
    ret = RC_EXIT_USAGE;
    goto done;
  }
  {
    rc_tls_opts_t to = {.insecure = o->insecure || f->tls_insecure,
                        .ca = f->tls_ca,
                        .cert = f->tls_cert,
                        .key = f->tls_key};
    r->tls = rc_tls_ctx_new(&to, err);
    if (!r->tls) {
      ret = RC_EXIT_USAGE;
      goto done;
    }
  }
  if (r->target.tls) {
    rc_addr_set_tls(&r->addr, r->tls, r->target.host);
  }
  if (rc_probe(&r->addr, 2000, err, r->target.hostport) != 0) {
    ret = RC_EXIT_DOWN;
    goto done;
  }
  if (o->history_path) {
    r->hfd = open(o->history_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (r->hfd < 0) {
      rc_err_set(err, 0, 0, "cannot write %s: %s", o->history_path, strerror(errno));
      ret = RC_EXIT_USAGE;
      goto done;
    }
  }
  r->record = r->hfd >= 0 || o->timeline;
  r->nworkers = o->threads > 0 ? o->threads : 1;
  r->ws = rc_xcalloc((size_t)r->nworkers, sizeof *r->ws);
  out->mode = "run";
  out->target = target;
  out->file = f->path;
  out->threads = r->nworkers;
  out->steps = f->steps;
  out->nsteps = f->nsteps;
  r->t0 = rc_now_ns();
  out->started_wall_ms = rc_wall_ms();
  for (int i = 0; i < r->nworkers; i++) {
    rc_worker_t *w = &r->ws[i];
    w->run = r;
    w->idx = i;
    rc_live_init(&w->live);
    rc_stats_init(&w->st);
    rc_hist_init(&w->tick);
    pthread_mutex_init(&w->mu, NULL);
    rc_rng_seed(&w->rng, o->seed * 1000003u + (uint64_t)i + 1u);
    int rc = rc_loop_init(&w->loop);
    if (rc != 0) {
      rc_err_set(err, 0, 0, "epoll: %s", strerror(-rc));
      ret = RC_EXIT_USAGE;
      pthread_mutex_destroy(&w->mu);
      rc_live_destroy(&w->live);
      rc_stats_free(&w->st);
      break;
    }
    w->loop.on_wake = rc__on_wake;
    w->loop.wake_ud = w;
    if (pthread_create(&w->th, NULL, rc__worker_main, w) != 0) {
      rc_loop_free(&w->loop);
      pthread_mutex_destroy(&w->mu);
      rc_live_destroy(&w->live);
      rc_stats_free(&w->st);
      rc_err_set(err, 0, 0, "cannot start thread %d", i);
      ret = RC_EXIT_USAGE;
      break;
    }
    started++;
  }
  if (started == r->nworkers) {
    rc_coord_t c = {.r = r, .out = out};
    uint64_t next_tick = r->t0 + 1000000000ull;
    size_t np = 0;
    /* before: one VU; its captures become global variables */
    if (f->before.n) {
      rc_phaseinfo_t *pi = &out->phases[np++];
      pi->name = "before";
      pi->kind = "before";
      pi->tally = (int)f->nphases;
      pi->start_s = rc__secs(r, rc_now_ns());
      rc__single(&c, (uint32_t)f->nphases, f->before.steps, f->before.n, &next_tick);
      pthread_mutex_lock(&r->mu);
      if (r->single_vars) {
        const char *k;
        json_t *v;
        json_object_foreach(r->single_vars, k, v) {
          if (k[0] != '$') {
            json_object_set(r->globals, k, v);
          }
        }
      }
      if (r->single_failed) {
        rc_result_add_check(out, "before", rc_xstrdup("the before flow completed"), 0,
                            rc_xstrdup(r->single_error ? r->single_error : "failed"), NULL);
      }
      pthread_mutex_unlock(&r->mu);
      pi->end_s = rc__secs(r, rc_now_ns());
    }
    for (size_t i = 0; i < f->nphases && !rc__interrupted; i++) {
      const rc_phase_t *p = &f->phases[i];
      rc_phaseinfo_t *pi = &out->phases[np++];
      pi->name = p->name;
      pi->tally = (int)i;
      pi->kind = p->kind == RC_PHASE_ARRIVAL ? "arrival"
                 : p->kind == RC_PHASE_PAUSE ? "pause"
                                             : "burst";
      uint64_t start = rc_now_ns();
      pi->start_s = rc__secs(r, start);
      if (p->kind == RC_PHASE_ARRIVAL) {
        pthread_mutex_lock(&r->mu);
        r->arr_pending += (uint64_t)r->nworkers;
        pthread_mutex_unlock(&r->mu);
        for (int k = 0; k < r->nworkers; k++) {
          rc_cmd_t cmd = {.kind = CMD_ARRIVALS, .phase = (uint32_t)i, .t0 = start};
          rc__post(&r->ws[k], &cmd);
        }
        rc__sleep_until(&c, start + p->duration_ns, &next_tick);
      } else if (p->kind == RC_PHASE_PAUSE) {
        rc__sleep_until(&c, start + p->duration_ns, &next_tick);
      } else {
        for (uint32_t round = 0; round < p->burst_repeat && !rc__interrupted; round++) {
          pthread_mutex_lock(&r->mu);
          r->burst_ready = r->burst_done = 0;
          pthread_mutex_unlock(&r->mu);
          uint32_t n = p->burst_connections;
          for (int k = 0; k < r->nworkers; k++) {
            uint32_t share = n / (uint32_t)r->nworkers + ((uint32_t)k < n % (uint32_t)r->nworkers);
            rc_cmd_t cmd = {
                .kind = CMD_BURST_PREPARE, .phase = (uint32_t)i, .n = share, .round = round + 1};
            rc__post(&r->ws[k], &cmd);
          }
          pthread_mutex_lock(&r->mu);
          r->want = n;
          pthread_mutex_unlock(&r->mu);
          pthread_mutex_lock(&r->mu);
          rc__wait(&c, rc__pred_ready, &next_tick);
          pthread_mutex_unlock(&r->mu);
          for (int k = 0; k < r->nworkers; k++) {
            rc_cmd_t cmd = {.kind = CMD_BURST_FIRE};
            rc__post(&r->ws[k], &cmd);
          }
          pthread_mutex_lock(&r->mu);
          rc__wait(&c, rc__pred_done, &next_tick);
          pthread_mutex_unlock(&r->mu);
        }
      }
      pi->end_s = rc__secs(r, rc_now_ns());
    }
    /* let the last virtual users finish */
    pthread_mutex_lock(&r->mu);
    (void)rc__wait(&c, rc__pred_drained, &next_tick);
    pthread_mutex_unlock(&r->mu);
    if (np > 0 && f->nphases > 0) {
      out->phases[np - 1].end_s = rc__secs(r, rc_now_ns());
    }
    out->duration_s = rc__secs(r, rc_now_ns());
    rc__snapshot(r);
    if (rc__interrupted) {
      rc_result_add_check(out, "run", rc_xstrdup("the run completed"), 0,
                          rc_xstrdup("interrupted: after, invariants and the rest of the phases "
                                     "did not run"),
                          NULL);
    }
    if (f->after.n && !rc__interrupted) {
      rc_phaseinfo_t *pi = &out->phases[np++];
      pi->name = "after";
      pi->kind = "after";
      pi->tally = (int)f->nphases + 1;
      pi->start_s = rc__secs(r, rc_now_ns());
      rc__single(&c, (uint32_t)f->nphases + 1, f->after.steps, f->after.n, &next_tick);
      pi->end_s = rc__secs(r, rc_now_ns());
    }
    if (f->ninvariants && !rc__interrupted) {
      rc_phaseinfo_t *pi = &out->phases[np++];
      pi->name = "invariants";
      pi->kind = "invariants";
      pi->tally = (int)f->nphases + 2;
      pi->start_s = rc__secs(r, rc_now_ns());
      rc__invariants(&c, &next_tick);
      pi->end_s = rc__secs(r, rc_now_ns());
    }
    out->nphases = np;
  }
  for (int i = 0; i < started; i++) {
    rc_cmd_t cmd = {.kind = CMD_STOP};
    rc__post(&r->ws[i], &cmd);
  }
  for (int i = 0; i < started; i++) {
    pthread_join(r->ws[i].th, NULL);
  }
  if (o->live && started) {
    fprintf(stderr, "\r\033[K");
  }
  if (started == r->nworkers) {
    for (int i = 0; i < r->nworkers; i++) {
      rc_stats_merge(&out->total, &r->ws[i].st);
    }
    rc__collect_fails(r, out);
    rc__ensure(r, out);
    rc__collect_timeline(r, out);
  }
  for (int i = 0; i < started; i++) {
    rc_worker_t *w = &r->ws[i];
    rc_stats_free(&w->st);
    rc_loop_free(&w->loop);
    pthread_mutex_destroy(&w->mu);
    rc_live_destroy(&w->live);
    rc_buf_free(&w->hbuf);
    for (size_t k = 0; k < w->nfails; k++) {
      free(w->fails[k].name);
      free(w->fails[k].detail);
      free(w->fails[k].request);
    }
    free(w->fails);
    free(w->recs);
    for (size_t k = 0; k < w->ntl; k++) {
      free(w->tl[k].line);
    }
    free(w->tl);
    free(w->origins);
    free(w->burst);
  }
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    out->max_rss_kib = ru.ru_maxrss;
  }
done:
  if (r->have_snap) {
    rc_stats_free(&r->snap);
  }
  json_decref(r->single_vars);
  json_decref(r->single_json);
  free(r->single_error);
  free(r->single_line);
  free(r->ws);
  if (r->hfd >= 0) {
    close(r->hfd);
  }
  json_decref(r->globals);
  free(r->prefix);
  rc_url_free(&r->target);
  if (r->tls) {
    rc_tls_ctx_free(r->tls);
  }
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  return ret;
}
