/* pool.c - fixed workers, bounded ring queue, callback or future completion
 * (see pool.h).
 *
 * Lock protocol. One mutex `mu` guards the ring (head, count), the state,
 * `idle` and `shutdown_called`. Submit checks the capacity and pushes in one
 * critical section: that is the whole back-pressure guarantee (count never
 * exceeds cap). Workers pop under mu, release it, run fn and done, and take
 * mu again. No user code ever runs with mu held, so tasks and callbacks may
 * submit, read stats or release futures freely.
 *
 * Wakeups. `idle` counts workers blocked on work_cv; submit signals only when
 * it is non-zero. A worker re-checks the ring under mu before it sleeps, so
 * a push is never missed: either the worker sees count > 0, or it is counted
 * idle (under mu) before the submitter looks.
 *
 * Shutdown. RUNNING -> DRAINING (workers keep popping until the ring is
 * empty, then exit) or CANCELING (workers exit at their next look at the
 * state; the shutdown caller pops the remaining tasks one at a time, mu
 * released around each done(RF_ECANCELED)). Each task is popped by exactly
 * one thread under mu, hence exactly one completion per accepted task.
 *
 * Statistics are read without mu (a /metrics scrape must not contend with
 * submitters). `queued` and `busy` are written only under mu but stored in
 * atomics so that the lock-free read is not a data race; `completed`,
 * `rejected`, `canceled`, `nice_failed`, `sched_idle_failed` are pure event counters. All use
 * memory_order_relaxed: they order nothing else, each is a monotonic count
 * or a gauge whose single-field value is all a reader gets (documented as
 * not a consistent cut). A thread that has synchronised with the completion
 * (done ran, future waited, or shutdown returned) sees the counters updated
 * before it, because each counter is bumped before done/complete is called
 * and those hand-offs carry happens-before (mutex, join).
 *
 * Futures. A future has its own mutex/condvar and an atomic reference count
 * starting at 2 (caller + pool). The completing thread stores the status
 * under the future's mutex, broadcasts, unlocks, and only then drops the
 * pool's reference, so it never touches the future after a reference it
 * does not own. The decrement is acq_rel so that whichever side frees sees
 * the other side's last writes.
 */
#include "racefree/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

struct rf_future {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int refs;
  bool done;
  int status;
};

typedef struct {
  rf_task_fn fn;
  rf_task_done_fn done;
  void *arg;
  rf_future_t *future; /* NULL for callback tasks */
} rf__task;

enum { RF__P_RUNNING, RF__P_DRAINING, RF__P_CANCELING, RF__P_STOPPED };

struct rf_pool {
  pthread_mutex_t mu;
  pthread_cond_t work_cv;
  rf__task *ring;
  size_t cap, head, count;
  unsigned idle;
  int state;
  bool shutdown_called;
  unsigned nthreads;
  pthread_t *threads;
  int nice;
  bool sched_idle;
  atomic_size_t queued;
  atomic_uint busy;
  atomic_uint_fast64_t completed, rejected, canceled;
  atomic_uint nice_failed;
  atomic_uint sched_idle_failed;
};

/* The pool whose worker the current thread is (NULL elsewhere): shutdown
 * and destroy refuse to join their own thread. */
static _Thread_local rf_pool_t *rf__pool_current;

/* ------------------------------------------------------------ futures */

static void rf__future_unref(rf_future_t *f) {
  if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) == 1) {
    pthread_cond_destroy(&f->cv);
    pthread_mutex_destroy(&f->mu);
    rf__free(f);
  }
}

static void rf__future_complete(rf_future_t *f, int status) {
  pthread_mutex_lock(&f->mu);
  f->status = status;
  f->done = true;
  pthread_cond_broadcast(&f->cv);
  pthread_mutex_unlock(&f->mu);
  rf__future_unref(f); /* the pool's reference */
}

int rf_future_wait(rf_future_t *f, int timeout_ms, int *task_status) {
  if (f == NULL) {
    return RF_EINVAL;
  }
  struct timespec dl = rf__deadline(timeout_ms > 0 ? timeout_ms : 0);
  pthread_mutex_lock(&f->mu);
  while (!f->done) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&f->cv, &f->mu);
    } else if (timeout_ms == 0 || pthread_cond_timedwait(&f->cv, &f->mu, &dl) != 0) {
      break;
    }
  }
  int rc = f->done ? 0 : RF_ETIMEDOUT;
  if (rc == 0 && task_status != NULL) {
    *task_status = f->status;
  }
  pthread_mutex_unlock(&f->mu);
  return rc;
}

void rf_future_release(rf_future_t *f) {
  if (f != NULL) {
    rf__future_unref(f);
  }
}

/* ------------------------------------------------------------ tasks */

static void rf__task_finish(const rf__task *t, int status) {
  if (t->future != NULL) {
    rf__future_complete(t->future, status);
  } else if (t->done != NULL) {
    t->done(status, t->arg);
  }
}

/* Caller holds mu and count > 0. */
static rf__task rf__pool_pop(rf_pool_t *p) {
  rf__task t = p->ring[p->head];
  p->head = p->head + 1 == p->cap ? 0 : p->head + 1;
  p->count--;
  atomic_store_explicit(&p->queued, p->count, memory_order_relaxed);
  return t;
}

/* SCHED_IDLE when asked (only this thread: pthread_setschedparam on
 * Linux changes the calling thread's policy), else, or if refused, nice. */
static void rf__pool_set_priority(rf_pool_t *p) {
  if (p->sched_idle) {
#ifdef SCHED_IDLE
    struct sched_param sp = {.sched_priority = 0};
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp) == 0) {
      return;
    }
#endif
    atomic_fetch_add_explicit(&p->sched_idle_failed, 1, memory_order_relaxed);
  }
  if (p->nice > 0 && setpriority(PRIO_PROCESS, (id_t)gettid(), p->nice) != 0) {
    atomic_fetch_add_explicit(&p->nice_failed, 1, memory_order_relaxed);
  }
}

static void *rf__pool_worker(void *arg) {
  rf_pool_t *p = arg;
  rf__pool_current = p;
  rf__pool_set_priority(p);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    if (p->state == RF__P_CANCELING) {
      break;
    }
    if (p->count > 0) {
      rf__task t = rf__pool_pop(p);
      atomic_store_explicit(&p->busy, atomic_load_explicit(&p->busy, memory_order_relaxed) + 1,
                            memory_order_relaxed);
      pthread_mutex_unlock(&p->mu);
      RF_HOOK("pool.worker.before_run");
      t.fn(t.arg);
      atomic_fetch_add_explicit(&p->completed, 1, memory_order_relaxed);
      rf__task_finish(&t, 0);
      pthread_mutex_lock(&p->mu);
      atomic_store_explicit(&p->busy, atomic_load_explicit(&p->busy, memory_order_relaxed) - 1,
                            memory_order_relaxed);
      continue;
    }
    if (p->state == RF__P_DRAINING) {
      break;
    }
    p->idle++;
    pthread_cond_wait(&p->work_cv, &p->mu);
    p->idle--;
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

/* ------------------------------------------------------------ API */

static void rf__pool_free(rf_pool_t *p) {
  pthread_cond_destroy(&p->work_cv);
  pthread_mutex_destroy(&p->mu);
  rf__free(p->threads);
  rf__free(p->ring);
  rf__free(p);
}

static void rf__pool_join(rf_pool_t *p, unsigned n) {
  for (unsigned i = 0; i < n; i++) {
    pthread_join(p->threads[i], NULL);
  }
}

int rf_pool_create(rf_pool_t **out, const rf_pool_opts_t *opts) {
  if (out == NULL || opts == NULL || opts->threads == 0 || opts->threads > RF_POOL_MAX_THREADS ||
      opts->queue_capacity == 0 || opts->queue_capacity > RF_POOL_MAX_QUEUE || opts->nice < 0 ||
      opts->nice > 19) {
    return RF_EINVAL;
  }
  rf_pool_t *p = rf__calloc(1, sizeof(*p));
  if (p == NULL) {
    return RF_ENOMEM;
  }
  bool mu_ok = false, cv_ok = false;
  unsigned started = 0;
  p->ring = rf__calloc(opts->queue_capacity, sizeof(*p->ring));
  p->threads = rf__calloc(opts->threads, sizeof(*p->threads));
  if (p->ring == NULL || p->threads == NULL) {
    goto fail;
  }
  p->cap = opts->queue_capacity;
  p->nthreads = opts->threads;
  p->nice = opts->nice;
  p->sched_idle = opts->sched_idle;
  p->state = RF__P_RUNNING;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    goto fail;
  }
  mu_ok = true;
  if (rf__cond_init(&p->work_cv) != 0) {
    goto fail;
  }
  cv_ok = true;
  for (; started < p->nthreads; started++) {
    /* Test builds can fail the first or the last creation on purpose. */
    if (RF_HOOK_FAIL(started + 1 == p->nthreads ? "pool.create.last_thread"
                                                : "pool.create.thread") ||
        pthread_create(&p->threads[started], NULL, rf__pool_worker, p) != 0) {
      goto fail;
    }
  }
  *out = p;
  return 0;
fail:
  if (started > 0) {
    pthread_mutex_lock(&p->mu);
    p->state = RF__P_DRAINING; /* the ring is empty: they exit at once */
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    rf__pool_join(p, started);
  }
  if (cv_ok) {
    pthread_cond_destroy(&p->work_cv);
  }
  if (mu_ok) {
    pthread_mutex_destroy(&p->mu);
  }
  rf__free(p->threads);
  rf__free(p->ring);
  rf__free(p);
  return RF_ENOMEM;
}

static int rf__pool_push(rf_pool_t *p, const rf__task *t) {
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  if (p->state != RF__P_RUNNING) {
    rc = RF_ESHUTDOWN;
  } else if (p->count == p->cap) {
    atomic_fetch_add_explicit(&p->rejected, 1, memory_order_relaxed);
    rc = RF_EBUSY;
  } else {
    size_t tail = p->head + p->count;
    p->ring[tail >= p->cap ? tail - p->cap : tail] = *t;
    p->count++;
    atomic_store_explicit(&p->queued, p->count, memory_order_relaxed);
    if (p->idle > 0) {
      pthread_cond_signal(&p->work_cv);
    }
  }
  pthread_mutex_unlock(&p->mu);
  /* Check and push were one critical section: a submitter parked here has
   * already taken its slot, so no other can squeeze past the bound. */
  RF_HOOK("pool.submit.after_check");
  return rc;
}

int rf_pool_submit(rf_pool_t *p, rf_task_fn fn, rf_task_done_fn done, void *arg) {
  if (p == NULL || fn == NULL) {
    return RF_EINVAL;
  }
  rf__task t = {fn, done, arg, NULL};
  return rf__pool_push(p, &t);
}

int rf_pool_submit_future(rf_pool_t *p, rf_task_fn fn, void *arg, rf_future_t **out) {
  if (p == NULL || fn == NULL || out == NULL) {
    return RF_EINVAL;
  }
  rf_future_t *f = rf__calloc(1, sizeof(*f));
  if (f == NULL) {
    return RF_ENOMEM;
  }
  int rc = RF_ENOMEM;
  bool mu_ok = false;
  if (pthread_mutex_init(&f->mu, NULL) != 0) {
    goto fail;
  }
  mu_ok = true;
  if (rf__cond_init(&f->cv) != 0) {
    goto fail;
  }
  atomic_init(&f->refs, 2); /* caller + pool */
  rf__task t = {fn, NULL, arg, f};
  rc = rf__pool_push(p, &t);
  if (rc != 0) {
    pthread_cond_destroy(&f->cv);
    goto fail;
  }
  *out = f;
  return 0;
fail:
  if (mu_ok) {
    pthread_mutex_destroy(&f->mu);
  }
  rf__free(f);
  return rc;
}

int rf_pool_shutdown(rf_pool_t *p, rf_pool_shutdown_mode_t mode) {
  if (p == NULL || (mode != RF_POOL_DRAIN && mode != RF_POOL_CANCEL)) {
    return RF_EINVAL;
  }
  if (rf__pool_current == p) {
    return RF_ESTATE;
  }
  pthread_mutex_lock(&p->mu);
  if (p->shutdown_called) {
    pthread_mutex_unlock(&p->mu);
    return RF_ESHUTDOWN;
  }
  p->shutdown_called = true;
  p->state = mode == RF_POOL_CANCEL ? RF__P_CANCELING : RF__P_DRAINING;
  pthread_cond_broadcast(&p->work_cv);
  if (mode == RF_POOL_CANCEL) {
    while (p->count > 0) {
      rf__task t = rf__pool_pop(p);
      pthread_mutex_unlock(&p->mu);
      atomic_fetch_add_explicit(&p->canceled, 1, memory_order_relaxed);
      rf__task_finish(&t, RF_ECANCELED);
      pthread_mutex_lock(&p->mu);
    }
  }
  pthread_mutex_unlock(&p->mu);
  rf__pool_join(p, p->nthreads);
  pthread_mutex_lock(&p->mu);
  p->state = RF__P_STOPPED;
  pthread_mutex_unlock(&p->mu);
  return 0;
}

void rf_pool_destroy(rf_pool_t *p) {
  if (p == NULL || rf__pool_current == p) {
    return; /* from its own worker: cannot join itself, leave it alone */
  }
  (void)rf_pool_shutdown(p, RF_POOL_DRAIN);
  rf__pool_free(p);
}

void rf_pool_stats(rf_pool_t *p, rf_pool_stats_t *out) {
  if (p == NULL || out == NULL) {
    return;
  }
  out->queued = atomic_load_explicit(&p->queued, memory_order_relaxed);
  out->busy = atomic_load_explicit(&p->busy, memory_order_relaxed);
  out->threads = p->nthreads;
  out->completed = atomic_load_explicit(&p->completed, memory_order_relaxed);
  out->rejected = atomic_load_explicit(&p->rejected, memory_order_relaxed);
  out->canceled = atomic_load_explicit(&p->canceled, memory_order_relaxed);
  out->capacity = p->cap;
  out->nice_failed = atomic_load_explicit(&p->nice_failed, memory_order_relaxed);
  out->sched_idle_failed = atomic_load_explicit(&p->sched_idle_failed, memory_order_relaxed);
}
