/* reports.c - "Race Condition #4: The Subtle Service State".
 *
 * GET /reports/{userId}  200 {"userId":u,"data":[{"userId":u,"seq":k,"amount":a},...]}
 *
 * The data comes from a simulated upstream that answers after
 * --upstream-latency-ms (a timer; no thread waits) with five rows that
 * belong to u. Invariant: no response ever contains another user's data.
 *
 * Safe (the article's fix): the report under construction is local to the
 * request (its per-request state), never a field of the service.
 */
#include <pthread.h>
#include <string.h>

#include "routes.h"

#define REPORT_ROWS 5

enum { ST_START = 0, ST_FETCHED = 1 };

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The upstream's answer for user u: REPORT_ROWS rows, each naming u. */
static json_t *fetch_user_data(const char *user) {
  json_t *rows = json_array();
  uint64_t h = fnv1a(user);
  for (int k = 1; rows != NULL && k <= REPORT_ROWS; k++) {
    json_t *row = json_pack("{s:s,s:i,s:I}", "userId", user, "seq", k, "amount",
                            (json_int_t)((h >> (k * 8)) % 1000));
    if (row == NULL || json_array_append_new(rows, row) != 0) {
      json_decref(rows);
      return NULL;
    }
  }
  return rows;
}

typedef struct {
  char user[SRV_ID_MAX + 1];
} report_t;

static report_t *decode_user(srv_rq_t *rq) {
  report_t *r = srv_rq_state(rq, sizeof *r);
  if (r == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "userId", r->user, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return NULL;
  }
  return r;
}

static void report_safe(srv_rq_t *rq) {
  if (srv_rq_stage(rq) == ST_START) {
    if (decode_user(rq) != NULL) /* const report = { userId, data: [] }: local */
      srv_rq_after(rq, srv_rq_app(rq)->opts->upstream_latency_ms, ST_FETCHED);
    return;
  }
  report_t *r = srv_rq_state(rq, sizeof *r);
  json_t *data = fetch_user_data(r->user);
  srv_rq_reply_json(rq, 200, data ? json_pack("{s:s,s:o}", "userId", r->user, "data", data) : NULL);
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   this.currentReport = { userId, data: [] };        // shared by every request
 *   const userData = await this.fetchUserData(userId);
 *   this.currentReport.data = userData;               // currentReport may be B's now
 *   return this.currentReport;
 *
 * One "current report" per process. Request A (user 1) sets it, request B
 * (user 2) overwrites it during A's fetch, A attaches user 1's rows to B's
 * report and returns {"userId":"2","data":[rows of user 1]}: one user sees
 * another's data. Each field access takes a mutex (no C data race); the
 * sequence of accesses is what races. */
static pthread_mutex_t current_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
  char user[SRV_ID_MAX + 1];
  json_t *data;
} current; /* the service's instance variable */

static void report_unsafe(srv_rq_t *rq) {
  report_t *r;
  if (srv_rq_stage(rq) == ST_START) {
    if ((r = decode_user(rq)) == NULL)
      return;
    pthread_mutex_lock(&current_mu); /* this.currentReport = { userId, data: [] } */
    memcpy(current.user, r->user, sizeof current.user);
    json_decref(current.data);
    current.data = json_array();
    pthread_mutex_unlock(&current_mu);
    srv_rq_after(rq, srv_rq_app(rq)->opts->upstream_latency_ms, ST_FETCHED);
    return;
  }
  r = srv_rq_state(rq, sizeof *r);
  json_t *data = fetch_user_data(r->user); /* the right user's rows ... */
  pthread_mutex_lock(&current_mu);
  json_decref(current.data); /* this.currentReport.data = userData */
  current.data = data;
  json_t *copy = data ? json_deep_copy(current.data) : NULL;
  json_t *body = copy ? json_pack("{s:s,s:o}", "userId", current.user, "data", copy)
                      : NULL; /* ... in whoever's report is current */
  pthread_mutex_unlock(&current_mu);
  srv_rq_reply_json(rq, 200, body);
}

/* ---- dispatch and lifecycle ---- */

void h_report(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    report_unsafe(rq);
  else
    report_safe(rq);
}

int reports_init(srv_app_t *app, char *err, size_t errlen) {
  (void)app;
  (void)err;
  (void)errlen;
  return 0;
}

void reports_fini(srv_app_t *app) {
  (void)app;
  pthread_mutex_lock(&current_mu);
  json_decref(current.data);
  current.data = NULL;
  pthread_mutex_unlock(&current_mu);
}
