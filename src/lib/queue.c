/* queue.c - the generic part of the job queue (see racefree/queue.h):
 * URL dispatch to a backend, argument validation, the retry policy, the
 * wake-up of sleeping workers and the worker helper.
 *
 * Backends (queue_mem.c, queue_sqlite.c) only see validated input; the
 * contract they implement is in queue_internal.h.
 *
 * Waking workers. A worker that found nothing due sleeps on the queue's
 * condition variable for at most poll_ms. The lost-wake-up problem: a job
 * added between the worker's empty claim and its wait would sleep for the
 * whole poll interval. So the queue keeps a wake generation, bumped under
 * wake_mu by every add (and every fail that schedules a retry): the worker
 * reads the generation under wake_mu BEFORE it claims, and after an empty
 * claim waits only if the generation is unchanged, re-checked under the
 * same mutex as the wait. Any add that could have been missed by the claim
 * happened after that read, so it changed the generation and the worker
 * does not sleep. Jobs added by other processes, delayed jobs, backoffs and
 * expired leases cannot signal the condvar: the poll interval finds them.
 * Adders take wake_mu only to bump the generation and signal, which is a
 * short uncontended critical section next to the backend's own work.
 */
#include "racefree/queue.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "queue_internal.h"
#include "racefree/retry.h"

struct rf_queue {
  const rf__queue_backend_t *ops;
  void *state;
  rf__queue_cfg_t cfg;
  uint64_t seed;
  uint64_t (*clock_ms)(void *clock_arg);
  void *clock_arg;
  pid_t pid;         /* the process that opened the queue (worker ids) */
  unsigned fork_gen; /* rf__queue_fork_gen at open (fork guard) */

  /* Relaxed counter: only needs to hand out distinct values (jitter seeds). */
  atomic_uint_fast64_t seed_counter;
  /* Workers started and not yet stopped (close refuses while > 0). */
  atomic_int workers;

  pthread_mutex_t wake_mu;
  pthread_cond_t wake_cv;
  uint64_t wake_gen; /* guarded by wake_mu */
  unsigned sleepers; /* guarded by wake_mu */
};

static const rf__queue_backend_t *const rf__queue_backends[] = {
    &rf__queue_mem_backend,
    &rf__queue_sqlite_backend,
    &rf__queue_pg_backend,
    &rf__queue_pgsql_backend,
};

/* ------------------------------------------------------------ helpers */

const char *rf_job_status_name(rf_job_status_t status) {
  switch (status) {
  case RF_JOB_WAITING:
    return "waiting";
  case RF_JOB_ACTIVE:
    return "active";
  case RF_JOB_COMPLETED:
    return "completed";
  case RF_JOB_FAILED:
    return "failed";
  }
  return "unknown";
}

/* 1..RF_QUEUE_ID_MAX characters of [A-Za-z0-9._:-]. */
static bool rf__queue_id_ok(const char *s) {
  if (s == NULL) {
    return false;
  }
  size_t n = 0;
  for (; s[n] != '\0'; n++) {
    unsigned char c = (unsigned char)s[n];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok || n >= RF_QUEUE_ID_MAX) {
      return false;
    }
  }
  return n > 0;
}

void rf__queue_copy_error(char *dst, const char *src) {
  if (src == NULL) {
    dst[0] = '\0';
    return;
  }
  size_t n = strnlen(src, RF_QUEUE_ERROR_MAX + 1);
  if (n > RF_QUEUE_ERROR_MAX) {
    n = RF_QUEUE_ERROR_MAX;
    /* Do not cut a UTF-8 sequence: back up over continuation bytes
     * (10xxxxxx) to the lead byte of the character that would be cut. */
    if (((unsigned char)src[n] & 0xC0u) == 0x80u) {
      while (n > 0 && ((unsigned char)src[n] & 0xC0u) == 0x80u) {
        n--;
      }
    }
  }
  memcpy(dst, src, n);
  dst[n] = '\0';
}

rf_job_t *rf__job_alloc(size_t len) {
  if (len > RF_QUEUE_PAYLOAD_HARD_MAX) {
    return NULL;
  }
  rf_job_t *job = rf__calloc(1, sizeof(*job) + len + 1);
  if (job != NULL && len > 0) {
    job->payload = (unsigned char *)(job + 1);
    job->payload_len = len;
  }
  return job;
}

void rf_job_free(rf_job_t *job) {
  rf__free(job);
}

static uint64_t rf__queue_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t rf_queue_now_ms(const rf_queue_t *q) {
  if (q != NULL && q->clock_ms != NULL) {
    return q->clock_ms(q->clock_arg);
  }
  return rf__queue_wall_ms();
}

/* Fork guard. A queue's connections, locks and threads belong to the
 * process that opened it; a child must open its own. getpid() is a system
 * call (glibc no longer caches it), expensive enough here to be a third of
 * an in-memory add+claim+complete, so instead a pthread_atfork child
 * handler bumps a generation counter, and every call compares the
 * generation with the one recorded at open: one relaxed load. Relaxed is
 * enough: the handler runs in the child's only thread before fork()
 * returns there, and threads the child creates later see it through
 * pthread_create. If the handler could not be registered we fall back to
 * getpid(). */
static atomic_uint rf__queue_fork_gen;
static bool rf__queue_atfork_ok;
static pthread_once_t rf__queue_atfork_once = PTHREAD_ONCE_INIT;

static void rf__queue_in_child(void) {
  atomic_fetch_add_explicit(&rf__queue_fork_gen, 1, memory_order_relaxed);
}

static void rf__queue_atfork_init(void) {
  rf__queue_atfork_ok = pthread_atfork(NULL, NULL, rf__queue_in_child) == 0;
}

static int rf__queue_guard(const rf_queue_t *q) {
  if (q == NULL) {
    return RF_EINVAL;
  }
  if (rf__queue_atfork_ok) {
    unsigned gen = atomic_load_explicit(&rf__queue_fork_gen, memory_order_relaxed);
    return gen == q->fork_gen ? 0 : RF_ESTATE;
  }
  return getpid() == q->pid ? 0 : RF_ESTATE;
}

/* The backoff: one "full jitter" draw of racefree/retry.h under the
 * ceiling min(cap, base * 2^(attempt-1)) that retry.h computes. We do not
 * keep an rf_retry_t per job (the attempt count lives in the job record,
 * possibly in another process), so each delay is a fresh one-step policy
 * whose only draw is uniform in [0, ceiling]. */
uint64_t rf__queue_backoff_ms(rf_queue_t *q, unsigned attempt, uint64_t base_ms, uint64_t cap_ms) {
  rf_retry_policy_t pol = {.max_attempts = 2, .base_ms = base_ms, .cap_ms = cap_ms};
  uint64_t ceiling = rf_retry_ceiling(&pol, attempt > 0 ? attempt - 1 : 0);
  if (ceiling == 0) {
    return 0;
  }
  rf_retry_policy_t one = {.max_attempts = 2, .base_ms = ceiling, .cap_ms = ceiling, .seed = 0};
  if (q->seed != 0) {
    /* Reproducible: the n-th delay of this queue from (seed, n). */
    uint64_t n = atomic_fetch_add_explicit(&q->seed_counter, 1, memory_order_relaxed);
    one.seed = (q->seed ^ (n * 0x9E3779B97F4A7C15ull)) | 1u;
  }
  rf_retry_t r;
  uint64_t delay = 0;
  if (rf_retry_init(&r, &one) != 0 || rf_retry_next(&r, &delay) != 0) {
    return ceiling; /* cannot happen with this policy; be conservative */
  }
  return delay;
}

int rf__queue_timedlock(pthread_mutex_t *mu, int timeout_ms) {
  if (pthread_mutex_trylock(mu) == 0) {
    return 0;
  }
  /* pthread_mutex_timedlock takes a CLOCK_REALTIME deadline (the
   * CLOCK_MONOTONIC pthread_mutex_clocklock is not known to TSan here). */
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  return pthread_mutex_timedlock(mu, &ts) == 0 ? 0 : RF_EBUSY;
}

static void rf__queue_wake(rf_queue_t *q) {
  pthread_mutex_lock(&q->wake_mu);
  q->wake_gen++;
  if (q->sleepers > 0) {
    pthread_cond_signal(&q->wake_cv);
  }
  pthread_mutex_unlock(&q->wake_mu);
}

/* ------------------------------------------------------------ open/close */

static int rf__queue_cfg(const rf_queue_opts_t *opts, rf__queue_cfg_t *cfg) {
  cfg->max_payload = RF_QUEUE_PAYLOAD_DEFAULT_MAX;
  cfg->busy_timeout_ms = 5000;
  cfg->sync_full = false;
  if (opts == NULL) {
    return 0;
  }
  if (opts->max_payload > RF_QUEUE_PAYLOAD_HARD_MAX || opts->busy_timeout_ms < 0) {
    return RF_EINVAL;
  }
  if (opts->max_payload > 0) {
    cfg->max_payload = opts->max_payload;
  }
  if (opts->busy_timeout_ms > 0) {
    cfg->busy_timeout_ms = opts->busy_timeout_ms;
  }
  cfg->sync_full = opts->sync_full;
  return 0;
}

int rf_queue_open(rf_queue_t **out, const char *url, const rf_queue_opts_t *opts) {
  if (out == NULL || url == NULL) {
    return RF_EINVAL;
  }
  const char *colon = strchr(url, ':');
  if (colon == NULL || colon == url) {
    return RF_EINVAL;
  }
  const rf__queue_backend_t *ops = NULL;
  size_t scheme_len = (size_t)(colon - url);
  for (size_t i = 0; i < sizeof(rf__queue_backends) / sizeof(rf__queue_backends[0]); i++) {
    const char *s = rf__queue_backends[i]->scheme;
    if (strlen(s) == scheme_len && memcmp(s, url, scheme_len) == 0) {
      ops = rf__queue_backends[i];
    }
  }
  if (ops == NULL) {
    return RF_ENOTSUP;
  }
  rf__queue_cfg_t cfg;
  int rc = rf__queue_cfg(opts, &cfg);
  if (rc != 0) {
    return rc;
  }
  rf_queue_t *q = rf__calloc(1, sizeof(*q));
  if (q == NULL) {
    return RF_ENOMEM;
  }
  bool mu = false, cv = false;
  if (pthread_mutex_init(&q->wake_mu, NULL) != 0) {
    rc = RF_ENOMEM;
    goto fail;
  }
  mu = true;
  if (rf__cond_init(&q->wake_cv) != 0) {
    rc = RF_ENOMEM;
    goto fail;
  }
  cv = true;
  q->ops = ops;
  q->cfg = cfg;
  pthread_once(&rf__queue_atfork_once, rf__queue_atfork_init);
  q->pid = getpid();
  q->fork_gen = atomic_load_explicit(&rf__queue_fork_gen, memory_order_relaxed);
  if (opts != NULL) {
    q->seed = opts->seed;
    q->clock_ms = opts->clock_ms;
    q->clock_arg = opts->clock_arg;
  }
  atomic_init(&q->seed_counter, 0);
  atomic_init(&q->workers, 0);
  rc = ops->open(q, colon + 1, &q->cfg, &q->state);
  if (rc != 0) {
    goto fail;
  }
  *out = q;
  return 0;

fail:
  if (cv) {
    pthread_cond_destroy(&q->wake_cv);
  }
  if (mu) {
    pthread_mutex_destroy(&q->wake_mu);
  }
  rf__free(q);
  return rc;
}

int rf_queue_close(rf_queue_t *q) {
  if (q == NULL) {
    return 0;
  }
  if (atomic_load_explicit(&q->workers, memory_order_acquire) > 0) {
    return RF_EBUSY;
  }
  q->ops->close(q->state);
  pthread_cond_destroy(&q->wake_cv);
  pthread_mutex_destroy(&q->wake_mu);
  rf__free(q);
  return 0;
}

const char *rf_queue_backend(const rf_queue_t *q) {
  return q == NULL ? NULL : q->ops->scheme;
}

/* ------------------------------------------------------------ operations */

static int rf__job_opts_check(const rf_job_opts_t *o) {
  if (o->max_attempts < 1 || o->max_attempts > RF_QUEUE_ATTEMPTS_MAX) {
    return RF_EINVAL;
  }
  if (o->backoff_cap_ms > RF_QUEUE_BACKOFF_MAX_MS || o->backoff_base_ms > o->backoff_cap_ms) {
    return RF_EINVAL;
  }
  if (o->delay_ms > RF_QUEUE_DELAY_MAX_MS) {
    return RF_EINVAL;
  }
  return 0;
}

int rf_queue_add(rf_queue_t *q, const char *id, const void *payload, size_t len,
                 const rf_job_opts_t *opts) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (!rf__queue_id_ok(id) || (payload == NULL && len > 0)) {
    return RF_EINVAL;
  }
  rf_job_opts_t o = opts != NULL ? *opts : RF_JOB_OPTS_DEFAULT;
  rc = rf__job_opts_check(&o);
  if (rc != 0) {
    return rc;
  }
  if (len > q->cfg.max_payload) {
    return RF_EOVERFLOW;
  }
  uint64_t now = rf_queue_now_ms(q);
  rf__job_new_t job = {
      .id = id,
      .payload = len > 0 ? payload : NULL,
      .len = len,
      .max_attempts = o.max_attempts,
      .base_ms = o.backoff_base_ms,
      .cap_ms = o.backoff_cap_ms,
      .remove_on_complete = o.remove_on_complete,
      .run_at_ms = now + o.delay_ms,
      .now_ms = now,
  };
  /* Race tests park an adder here, after it decided to add, to let another
   * add of the same id run first: the backend's atomic insert must then
   * report RF_EEXIST (tests/race/race_queue.c). */
  RF_HOOK("queue.add.before_insert");
  rc = q->ops->add(q->state, &job);
  if (rc == 0) {
    rf__queue_wake(q);
  }
  return rc;
}

int rf_queue_claim(rf_queue_t *q, const char *worker_id, uint64_t lease_ms, rf_job_t **out) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (!rf__queue_id_ok(worker_id) || out == NULL || lease_ms == 0 ||
      lease_ms > RF_QUEUE_LEASE_MAX_MS) {
    return RF_EINVAL;
  }
  return q->ops->claim(q->state, worker_id, rf_queue_now_ms(q), lease_ms, out);
}

static int rf__queue_token_check(rf_queue_t *q, const char *id, unsigned attempt) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (!rf__queue_id_ok(id) || attempt == 0) {
    return RF_EINVAL;
  }
  return 0;
}

int rf_queue_complete(rf_queue_t *q, const char *id, unsigned attempt) {
  int rc = rf__queue_token_check(q, id, attempt);
  if (rc != 0) {
    return rc;
  }
  /* Race tests park a worker here, with its attempt number in hand, while
   * its lease expires and another worker reclaims the job. */
  RF_HOOK("queue.complete.before_update");
  return q->ops->complete(q->state, id, attempt, rf_queue_now_ms(q));
}

int rf_queue_fail(rf_queue_t *q, const char *id, unsigned attempt, const char *error) {
  int rc = rf__queue_token_check(q, id, attempt);
  if (rc != 0) {
    return rc;
  }
  char text[RF_QUEUE_ERROR_MAX + 1];
  rf__queue_copy_error(text, error);
  rc = q->ops->fail(q->state, id, attempt, error != NULL ? text : NULL, rf_queue_now_ms(q));
  if (rc == 0) {
    rf__queue_wake(q); /* a retry may be due at once (zero backoff) */
  }
  return rc;
}

int rf_queue_extend(rf_queue_t *q, const char *id, unsigned attempt, uint64_t lease_ms) {
  int rc = rf__queue_token_check(q, id, attempt);
  if (rc != 0) {
    return rc;
  }
  if (lease_ms == 0 || lease_ms > RF_QUEUE_LEASE_MAX_MS) {
    return RF_EINVAL;
  }
  uint64_t now = rf_queue_now_ms(q);
  return q->ops->extend(q->state, id, attempt, now + lease_ms, now);
}

int rf_queue_get(rf_queue_t *q, const char *id, rf_job_info_t *out) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (!rf__queue_id_ok(id) || out == NULL) {
    return RF_EINVAL;
  }
  return q->ops->get(q->state, id, out);
}

int rf_queue_counts(rf_queue_t *q, rf_queue_counts_t *out) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (out == NULL) {
    return RF_EINVAL;
  }
  return q->ops->counts(q->state, out);
}

int rf_queue_purge(rf_queue_t *q, uint64_t before_ms, uint64_t *purged) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (before_ms > (uint64_t)INT64_MAX) {
    return RF_EINVAL;
  }
  uint64_t n = 0;
  rc = q->ops->purge(q->state, before_ms, &n);
  if (rc == 0 && purged != NULL) {
    *purged = n;
  }
  return rc;
}

/* ------------------------------------------------------------ workers */

#define RF__WORKER_MAX_THREADS  256
#define RF__WORKER_REPORT_TRIES 3

typedef struct rf__worker_thread {
  struct rf_queue_worker *w;
  pthread_t tid;
  char id[32];
} rf__worker_thread_t;

struct rf_queue_worker {
  rf_queue_t *q;
  rf_job_handler handler;
  void *arg;
  uint64_t lease_ms;
  unsigned poll_ms;
  unsigned nthreads;
  bool stopping; /* guarded by q->wake_mu */
  /* Statistics: relaxed atomics, each an independent event count. */
  atomic_uint_fast64_t claimed, completed, failed, stale, errors;
  rf__worker_thread_t *threads;
};

static bool rf__worker_transient(int rc) {
  return rc == RF_EBUSY || rc == RF_EIO || rc == RF_ENOMEM || rc == RF_EAGAIN;
}

static void rf__worker_report(struct rf_queue_worker *w, rf_job_t *job, int hrc) {
  int rc = 0;
  for (unsigned t = 0; t < RF__WORKER_REPORT_TRIES; t++) {
    if (hrc == 0) {
      rc = rf_queue_complete(w->q, job->id, job->attempt);
    } else {
      rc = rf_queue_fail(w->q, job->id, job->attempt,
                         job->error[0] != '\0' ? job->error : rf_strerror(hrc));
    }
    if (!rf__worker_transient(rc)) {
      break;
    }
    struct timespec ts = {0, (long)(t + 1) * 10 * 1000000L};
    nanosleep(&ts, NULL);
  }
  atomic_uint_fast64_t *counter = &w->errors;
  if (rc == 0) {
    counter = hrc == 0 ? &w->completed : &w->failed;
  } else if (rc == RF_ESTALE) {
    counter = &w->stale;
  }
  atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
}

/* Sleep until woken by an add/fail, stopped, or poll_ms passed; returns
 * false when the worker is stopping. `gen` is the generation read before
 * the claim that found nothing (see the essay at the top). */
static bool rf__worker_wait(struct rf_queue_worker *w, uint64_t gen) {
  rf_queue_t *q = w->q;
  pthread_mutex_lock(&q->wake_mu);
  if (!w->stopping && q->wake_gen == gen) {
    struct timespec deadline = rf__deadline((int)w->poll_ms);
    q->sleepers++;
    pthread_cond_timedwait(&q->wake_cv, &q->wake_mu, &deadline);
    q->sleepers--;
  }
  bool go_on = !w->stopping;
  pthread_mutex_unlock(&q->wake_mu);
  return go_on;
}

static void *rf__worker_main(void *arg) {
  rf__worker_thread_t *self = arg;
  struct rf_queue_worker *w = self->w;
  rf_queue_t *q = w->q;
  for (;;) {
    pthread_mutex_lock(&q->wake_mu);
    bool stop = w->stopping;
    uint64_t gen = q->wake_gen;
    pthread_mutex_unlock(&q->wake_mu);
    if (stop) {
      break;
    }
    rf_job_t *job = NULL;
    int rc = rf_queue_claim(q, self->id, w->lease_ms, &job);
    if (rc == 0) {
      atomic_fetch_add_explicit(&w->claimed, 1, memory_order_relaxed);
      int hrc = w->handler(job, w->arg);
      rf__worker_report(w, job, hrc);
      rf_job_free(job);
      continue;
    }
    if (rc != RF_ENOENT) {
      atomic_fetch_add_explicit(&w->errors, 1, memory_order_relaxed);
    }
    if (!rf__worker_wait(w, gen)) {
      break;
    }
  }
  return NULL;
}

static void rf__worker_signal_stop(struct rf_queue_worker *w) {
  pthread_mutex_lock(&w->q->wake_mu);
  w->stopping = true;
  pthread_cond_broadcast(&w->q->wake_cv);
  pthread_mutex_unlock(&w->q->wake_mu);
}

int rf_queue_worker_start(rf_queue_t *q, unsigned nthreads, rf_job_handler handler, void *arg,
                          uint64_t lease_ms, unsigned poll_ms, rf_queue_worker_t **out) {
  int rc = rf__queue_guard(q);
  if (rc != 0) {
    return rc;
  }
  if (handler == NULL || out == NULL || nthreads < 1 || nthreads > RF__WORKER_MAX_THREADS ||
      lease_ms == 0 || lease_ms > RF_QUEUE_LEASE_MAX_MS || poll_ms < 1 || poll_ms > 60000) {
    return RF_EINVAL;
  }
  struct rf_queue_worker *w = rf__calloc(1, sizeof(*w));
  if (w == NULL) {
    return RF_ENOMEM;
  }
  w->threads = rf__calloc(nthreads, sizeof(*w->threads));
  if (w->threads == NULL) {
    rf__free(w);
    return RF_ENOMEM;
  }
  w->q = q;
  w->handler = handler;
  w->arg = arg;
  w->lease_ms = lease_ms;
  w->poll_ms = poll_ms;
  atomic_fetch_add_explicit(&q->workers, 1, memory_order_acq_rel);
  static atomic_uint rf__worker_seq;
  unsigned started = 0;
  for (; started < nthreads; started++) {
    rf__worker_thread_t *t = &w->threads[started];
    t->w = w;
    snprintf(t->id, sizeof(t->id), "w%ld.%u", (long)q->pid,
             atomic_fetch_add_explicit(&rf__worker_seq, 1, memory_order_relaxed));
    if (RF_HOOK_FAIL("queue.worker.thread") ||
        pthread_create(&t->tid, NULL, rf__worker_main, t) != 0) {
      break;
    }
  }
  if (started < nthreads) {
    rf__worker_signal_stop(w);
    for (unsigned i = 0; i < started; i++) {
      pthread_join(w->threads[i].tid, NULL);
    }
    atomic_fetch_sub_explicit(&q->workers, 1, memory_order_acq_rel);
    rf__free(w->threads);
    rf__free(w);
    return RF_EAGAIN;
  }
  w->nthreads = nthreads;
  *out = w;
  return 0;
}

void rf_queue_worker_stats(const rf_queue_worker_t *w, rf_queue_worker_stats_t *out) {
  if (out == NULL) {
    return;
  }
  memset(out, 0, sizeof(*out));
  if (w == NULL) {
    return;
  }
  out->claimed = atomic_load_explicit(&w->claimed, memory_order_relaxed);
  out->completed = atomic_load_explicit(&w->completed, memory_order_relaxed);
  out->failed = atomic_load_explicit(&w->failed, memory_order_relaxed);
  out->stale = atomic_load_explicit(&w->stale, memory_order_relaxed);
  out->errors = atomic_load_explicit(&w->errors, memory_order_relaxed);
}

void rf_queue_worker_stop(rf_queue_worker_t *w, rf_queue_worker_stats_t *final) {
  if (w == NULL) {
    return;
  }
  rf__worker_signal_stop(w);
  for (unsigned i = 0; i < w->nthreads; i++) {
    pthread_join(w->threads[i].tid, NULL);
  }
  /* pthread_join orders every thread's counter updates before this read. */
  rf_queue_worker_stats(w, final);
  atomic_fetch_sub_explicit(&w->q->workers, 1, memory_order_acq_rel);
  rf__free(w->threads);
  rf__free(w);
}
