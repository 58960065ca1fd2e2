/* jobs.c - "Pattern 3: Queue-Based Processing".
 *
 * POST /emails/welcome {"userId":u,"email":e}
 *     202 {"jobId":"welcome-u","status":"queued"}, or
 *     200 {"jobId":"welcome-u","status":"duplicate"} when that job exists
 *     (whatever its state, and whatever e: the first request's email wins).
 *     u is an identifier of at most 120 characters (the job id must fit
 *     the queue's 128).
 * GET /jobs/{jobId}     200 {"jobId":j,"status":"waiting"|"active"|"completed"|"failed",
 *                            "attempts":n} or 404
 * GET /emails/sent?to=e 200 {"to":e,"count":n}: mails the sender delivered to e
 *
 * Safe: the libracefree durable queue (queue.h, SQLite backend) in the
 * file "<database path>.jobs" next to the store's database. The job id is
 * the deduplication key: rf_queue_add refuses an id that exists in the same
 * atomic step that would insert it, so of N concurrent enqueues of one id
 * exactly one is 202. --job-workers threads per server process claim due
 * jobs (a claim is exclusive: one attempt of a job runs on one worker), run
 * the simulated sender, and complete the job or fail the attempt; failures
 * are retried with exponential backoff and full jitter (--job-backoff-ms,
 * doubling, capped at 60 s) until --job-attempts are spent, then the job is
 * failed. Jobs are durable: they survive a restart. A worker killed
 * mid-job leaves its job active with a lease (--job-lease-ms); once the
 * lease expires any worker claims it again with the next attempt number.
 *
 * The sender (simulated, --email-latency-ms): the request reaches it after
 * half the latency, it answers after the other half. Addresses containing
 * "+fail" are refused on every attempt, "+flaky" on the first attempt only.
 * It is idempotent per job id (rf_store_email_send: a second delivery for a
 * job id that was delivered already records nothing), which turns the
 * queue's at-least-once processing into exactly one mail per job id, also
 * across a crash between the delivery and the completion. docs/jobs.md says
 * precisely what is guaranteed when the sender is not idempotent.
 *
 * racefree_jobs_total{state}: queued (202 answers), completed, retried
 * (an attempt failed with attempts left), failed (the last attempt failed),
 * counted by this server's handlers.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "racefree/queue.h"

#include "log.h"
#include "redact.h"
#include "routes.h"

#define JOB_PREFIX     "welcome-"
#define JOB_PREFIX_LEN 8
#define USER_MAX       (RF_QUEUE_ID_MAX - JOB_PREFIX_LEN)
#define WORKER_POLL_MS 50
#define BACKOFF_CAP_MS 60000

static rf_queue_t *g_queue;
static rf_queue_worker_t *g_worker;

typedef struct {
  char user[SRV_ID_MAX + 1];
  char email[SRV_EMAIL_MAX + 1];
} welcome_req_t;

/* ------------------------------------------------------------ helpers */

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

typedef struct {
  const char *job_id, *to;
  unsigned attempt;
  bool once;
  int first;
} send_t;

static int send_work(rf_store_t *s, void *arg) {
  send_t *snd = arg;
  return snd->once ? rf_store_email_send(s, snd->job_id, snd->attempt, snd->to, &snd->first)
                   : rf_store_email_send_unchecked(s, snd->job_id, snd->to);
}

/* The simulated mail sender; runs on a job worker thread (which may
 * block: it is not an HTTP thread). once: idempotent per job id (safe);
 * otherwise every delivery is recorded (the naive twin). */
static int sender_send(srv_app_t *app, const char *job_id, unsigned attempt, const char *to,
                       bool once, char *why, size_t cap) {
  uint64_t latency = app->opts->email_latency_ms;
  sleep_ms(latency / 2);
  if (strstr(to, "+fail") != NULL) {
    snprintf(why, cap, "the mail server refused the address (+fail)");
    return RF_EIO;
  }
  if (strstr(to, "+flaky") != NULL && attempt == 1) {
    snprintf(why, cap, "the mail server was unavailable (first attempt)");
    return RF_EAGAIN;
  }
  /* The ledger write goes through the store's writer (this worker thread
   * may wait; it shares the writer's group commit instead of taking the
   * write lock on a connection of its own). */
  send_t snd = {.job_id = job_id, .attempt = attempt, .to = to, .once = once};
  int rc = rf_store_run(app->store, RF_STORE_WRITE, send_work, &snd);
  if (rc != 0) {
    snprintf(why, cap, "recording the delivery failed: %s", rf_strerror(rc));
    return rc;
  }
  sleep_ms(latency - latency / 2);
  return 0;
}

static void count_outcome(srv_app_t *app, int rc, unsigned attempt, unsigned max_attempts) {
  int state = rc == 0                   ? SRV_JOB_COMPLETED
              : attempt >= max_attempts ? SRV_JOB_FAILED
                                        : SRV_JOB_RETRIED;
  rf_counter_inc(app->shared->jobs[state]);
}

/* Body -> request; 0, or answered (400). */
static int decode_welcome(srv_rq_t *rq, welcome_req_t *req, char job_id[RF_QUEUE_ID_MAX + 1]) {
  static const srv_field_t f[] = {
      {"userId", SRV_FIELD_ID, offsetof(welcome_req_t, user), 0, 0, true},
      {"email", SRV_FIELD_EMAIL, offsetof(welcome_req_t, email), 0, 0, true},
  };
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  srv_decode_err_t err;
  int rc = srv_decode_object(body, len, f, sizeof f / sizeof f[0], req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return rc;
  }
  if (strlen(req->user) > USER_MAX) {
    srv_rq_reply_error(rq, 400, "bad_request",
                       "userId is longer than %d characters (the job id must fit in %d)", USER_MAX,
                       RF_QUEUE_ID_MAX);
    return RF_EINVAL;
  }
  size_t n = strlen(req->user); /* <= USER_MAX: fits with the prefix */
  memcpy(job_id, JOB_PREFIX, JOB_PREFIX_LEN);
  memcpy(job_id + JOB_PREFIX_LEN, req->user, n);
  job_id[JOB_PREFIX_LEN + n] = '\0';
  return 0;
}

static void reply_enqueued(srv_rq_t *rq, const char *job_id, bool duplicate) {
  if (!duplicate)
    rf_counter_inc(srv_rq_app(rq)->shared->jobs[SRV_JOB_QUEUED]);
  srv_rq_reply_json(
      rq, duplicate ? 200 : 202,
      json_pack("{s:s,s:s}", "jobId", job_id, "status", duplicate ? "duplicate" : "queued"));
}

static void reply_job(srv_rq_t *rq, const char *job_id, const char *status, unsigned attempts) {
  srv_rq_reply_json(rq, 200,
                    json_pack("{s:s,s:s,s:I}", "jobId", job_id, "status", status, "attempts",
                              (json_int_t)attempts));
}

/* ------------------------------------------------------------ safe */

static int welcome_handler(rf_job_t *job, void *arg) { /* a job worker thread */
  srv_app_t *app = arg;
  json_t *p = json_loadb(job->payload, job->payload_len, 0, NULL);
  const char *to = p ? json_string_value(json_object_get(p, "email")) : NULL;
  int rc = RF_EINVAL;
  if (to == NULL)
    snprintf(job->error, sizeof job->error, "the job's payload has no email");
  else
    rc = sender_send(app, job->id, job->attempt, to, true, job->error, sizeof job->error);
  json_decref(p);
  count_outcome(app, rc, job->attempt, job->max_attempts);
  return rc;
}

/* The queue's calls block on its database (SQLite's write lock, or a
 * PostgreSQL round trip): they run on the I/O pool (srv_rq_offload), and the
 * handler answers in its next stage. */
enum { ST_START = 0, ST_DONE = 1 };

typedef struct {
  char job_id[RF_QUEUE_ID_MAX + 1];
  char *payload; /* malloc'd, freed by the I/O pool's call */
  rf_job_opts_t jo;
  rf_job_info_t info;
} job_state_t;

static int add_work(void *state) {
  job_state_t *st = state;
  int rc = rf_queue_add(g_queue, st->job_id, st->payload, strlen(st->payload), &st->jo);
  free(st->payload);
  st->payload = NULL;
  return rc;
}

static int get_work(void *state) {
  job_state_t *st = state;
  return rf_queue_get(g_queue, st->job_id, &st->info);
}

static void welcome_safe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  job_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    int rc = srv_rq_store_rc(rq);
    free(st->payload); /* not handed over (shutdown, full queue) */
    st->payload = NULL;
    if (rc == 0 || rc == RF_EEXIST)
      reply_enqueued(rq, st->job_id, rc == RF_EEXIST);
    else
      srv_rq_reply_status(rq, rc, "jobs");
    return;
  }
  welcome_req_t req;
  if (decode_welcome(rq, &req, st->job_id) != 0)
    return;
  json_t *v = json_pack("{s:s,s:s}", "userId", req.user, "email", req.email);
  if (v != NULL)
    st->payload = json_dumps(v, JSON_COMPACT);
  json_decref(v);
  if (st->payload == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  uint64_t base = app->opts->job_backoff_ms;
  st->jo = (rf_job_opts_t){.max_attempts = (unsigned)app->opts->job_attempts,
                           .backoff_base_ms = base,
                           .backoff_cap_ms = base > BACKOFF_CAP_MS ? base : BACKOFF_CAP_MS};
  srv_rq_offload(rq, add_work, ST_DONE);
}

static void job_get_safe(srv_rq_t *rq, const char *job_id) {
  job_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_START) {
    snprintf(st->job_id, sizeof st->job_id, "%s", job_id);
    srv_rq_offload(rq, get_work, ST_DONE);
    return;
  }
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ENOENT)
    srv_rq_reply_error(rq, 404, "not_found", "no job %s", st->job_id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "jobs");
  else
    reply_job(rq, st->job_id, rf_job_status_name(st->info.status), st->info.attempts);
}

/* ---------------------------------------------------- the mail ledger */

typedef struct {
  char email[SRV_EMAIL_MAX + 1];
  int64_t count;
} sent_state_t;

static int sent_count_work(rf_store_t *s, void *state) {
  sent_state_t *st = state;
  return rf_store_email_sent_count(s, st->email, &st->count);
}

void h_emails_sent(srv_rq_t *rq) {
  sent_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    int rc = srv_rq_store_rc(rq);
    if (rc != 0)
      srv_rq_reply_status(rq, rc, "mail sender");
    else
      srv_rq_reply_json(rq, 200,
                        json_pack("{s:s,s:I}", "to", st->email, "count", (json_int_t)st->count));
    return;
  }
  const char *to = srv_rq_query(rq, "to");
  if (to == NULL) {
    srv_rq_reply_error(rq, 400, "bad_request", "the query parameter to is required");
    return;
  }
  char email[SRV_EMAIL_MAX + 1];
  srv_decode_err_t err;
  int rc = srv_normalize_email(to, strlen(to), "to", email, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  snprintf(st->email, sizeof st->email, "%s", email);
  srv_rq_store(rq, RF_STORE_READ, sent_count_work, ST_DONE);
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   // "if no welcome job for this user yet, enqueue one" - with no job id
 *   this.jobs.push({ to: email, ... });
 *
 * An in-memory list and --job-workers threads that pop from it: no
 * deduplication (two enqueues of one id are two jobs, two mails: the
 * sender records every delivery), no durability (a restart loses what is
 * queued), retries at once without backoff, up to --job-attempts. GET
 * /jobs/{id} shows the latest job enqueued under that id. Every list
 * operation takes a mutex: the race is the missing check, not a C data
 * race. */

typedef struct njob {
  struct njob *next_all, *next_pending;
  char id[RF_QUEUE_ID_MAX + 1];
  char email[SRV_EMAIL_MAX + 1];
  const char *status; /* a static name */
  unsigned attempts;
} njob_t;

static pthread_mutex_t nq_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t nq_cv = PTHREAD_COND_INITIALIZER;
static njob_t *nq_all;            /* every job, newest first */
static njob_t *nq_head, *nq_tail; /* pending, FIFO */
static bool nq_stop;
static pthread_t *nq_threads;
static size_t nq_nthreads;

static void *naive_worker(void *arg) {
  srv_app_t *app = arg;
  unsigned max = (unsigned)app->opts->job_attempts;
  pthread_mutex_lock(&nq_mu);
  for (;;) {
    while (!nq_stop && nq_head == NULL)
      pthread_cond_wait(&nq_cv, &nq_mu);
    if (nq_stop)
      break;
    njob_t *j = nq_head;
    nq_head = j->next_pending;
    if (nq_head == NULL)
      nq_tail = NULL;
    j->status = "active";
    pthread_mutex_unlock(&nq_mu);
    int rc = RF_EAGAIN;
    char why[RF_QUEUE_ERROR_MAX + 1];
    for (unsigned attempt = 1; attempt <= max && rc != 0; attempt++) {
      pthread_mutex_lock(&nq_mu);
      j->attempts = attempt;
      pthread_mutex_unlock(&nq_mu);
      rc = sender_send(app, j->id, attempt, j->email, false, why, sizeof why);
      count_outcome(app, rc, attempt, max);
    }
    pthread_mutex_lock(&nq_mu);
    j->status = rc == 0 ? "completed" : "failed";
  }
  pthread_mutex_unlock(&nq_mu);
  return NULL;
}

static void welcome_unsafe(srv_rq_t *rq) {
  welcome_req_t req;
  char job_id[RF_QUEUE_ID_MAX + 1];
  if (decode_welcome(rq, &req, job_id) != 0)
    return;
  njob_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  memcpy(j->id, job_id, sizeof j->id);
  memcpy(j->email, req.email, sizeof j->email);
  j->status = "waiting";
  pthread_mutex_lock(&nq_mu); /* this.jobs.push(...) */
  j->next_all = nq_all;
  nq_all = j;
  if (nq_tail != NULL)
    nq_tail->next_pending = j;
  else
    nq_head = j;
  nq_tail = j;
  pthread_cond_signal(&nq_cv);
  pthread_mutex_unlock(&nq_mu);
  reply_enqueued(rq, job_id, false);
}

static void job_get_unsafe(srv_rq_t *rq, const char *job_id) {
  const char *status = NULL;
  unsigned attempts = 0;
  pthread_mutex_lock(&nq_mu);
  for (njob_t *j = nq_all; j != NULL && status == NULL; j = j->next_all)
    if (strcmp(j->id, job_id) == 0) {
      status = j->status;
      attempts = j->attempts;
    }
  pthread_mutex_unlock(&nq_mu);
  if (status == NULL)
    srv_rq_reply_error(rq, 404, "not_found", "no job %s", job_id);
  else
    reply_job(rq, job_id, status, attempts);
}

static void naive_stop(void) {
  pthread_mutex_lock(&nq_mu);
  nq_stop = true;
  pthread_cond_broadcast(&nq_cv);
  pthread_mutex_unlock(&nq_mu);
  for (size_t i = 0; i < nq_nthreads; i++)
    pthread_join(nq_threads[i], NULL);
  free(nq_threads);
  nq_threads = NULL;
  nq_nthreads = 0;
  while (nq_all != NULL) {
    njob_t *j = nq_all;
    nq_all = j->next_all;
    free(j);
  }
  nq_head = nq_tail = NULL;
  nq_stop = false;
}

static int naive_start(srv_app_t *app, char *err, size_t errlen) {
  size_t n = (size_t)app->opts->job_workers;
  nq_threads = calloc(n ? n : 1, sizeof *nq_threads);
  if (nq_threads == NULL)
    return RF_ENOMEM;
  for (; nq_nthreads < n; nq_nthreads++) {
    if (pthread_create(&nq_threads[nq_nthreads], NULL, naive_worker, app) != 0) {
      snprintf(err, errlen, "jobs: cannot start a job worker thread");
      naive_stop();
      return RF_EAGAIN;
    }
  }
  return 0;
}

/* ---- dispatch and lifecycle ---- */

void h_emails_welcome(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    welcome_unsafe(rq);
  else
    welcome_safe(rq);
}

void h_job_get(srv_rq_t *rq) {
  char job_id[SRV_ID_MAX + 1];
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "jobId", job_id, &err);
  if (rc != 0)
    srv_rq_reply_decode_error(rq, rc, &err);
  else if (srv_rq_app(rq)->opts->unsafe)
    job_get_unsafe(rq, job_id);
  else
    job_get_safe(rq, job_id);
}

/* The queue's URL: "sqlite:<database path>.jobs" for a sqlite: store; the
 * store's own database for a postgres:// one (the queue keeps its tables
 * there, so every instance sharing the database shares the queue and its
 * job-id deduplication). Anything else: in memory (not durable), and the
 * start-up log says so. */
static void queue_url(const char *db, char *url, size_t cap) {
  if (strncmp(db, "postgres://", 11) == 0 || strncmp(db, "postgresql://", 13) == 0) {
    snprintf(url, cap, "%s", db);
    return;
  }
  if (strncmp(db, "sqlite:", 7) != 0) {
    snprintf(url, cap, "mem:");
    return;
  }
  const char *path = db + 7;
  if (strncmp(path, "//", 2) == 0) /* sqlite:///abs/path, as the store reads it */
    path += 2;
  snprintf(url, cap, "sqlite:%s.jobs", path);
}

int jobs_init(srv_app_t *app, char *err, size_t errlen) {
  const srv_options_t *o = app->opts;
  if (o->unsafe)
    return naive_start(app, err, errlen);
  char url[SRV_PATH_MAX + 16];
  queue_url(o->db, url, sizeof url);
  if (strcmp(url, "mem:") == 0)
    srv_log(SRV_LOG_WARN, "jobs: the queue is in memory (not durable) with this database");
  int rc = rf_queue_open(&g_queue, url, NULL);
  if (rc != 0) {
    char shown[SRV_PATH_MAX + 16];
    snprintf(err, errlen, "jobs: cannot open the job queue %s: %s",
             srv_url_redact(url, shown, sizeof shown), rf_strerror(rc));
    return rc;
  }
  if (o->job_workers > 0) {
    rc = rf_queue_worker_start(g_queue, (unsigned)o->job_workers, welcome_handler, app,
                               o->job_lease_ms, WORKER_POLL_MS, &g_worker);
    if (rc != 0) {
      snprintf(err, errlen, "jobs: cannot start the job workers: %s", rf_strerror(rc));
      jobs_fini(app);
    }
  }
  return rc;
}

/* Workers first: each finishes the job it runs (up to one email latency),
 * then the queue closes; what is still queued stays in the file. */
void jobs_fini(srv_app_t *app) {
  (void)app;
  rf_queue_worker_stop(g_worker, NULL);
  g_worker = NULL;
  rf_queue_close(g_queue);
  g_queue = NULL;
  naive_stop();
}
