/* exec.c - the store's executor: threads that run database work for
 * callers that must not wait (store.h, "the executor").
 *
 * One FIFO of caller-owned jobs under one mutex. Two modes:
 *
 *   batch   (SQLite's writer: one thread) the thread takes up to
 *           RF_STORE_BATCH_MAX queued jobs at once and hands them to the
 *           backend's batch function, which runs them in one transaction
 *           and reports how many it finished; the rest go back to the front
 *           of the queue, in order. Then every finished job's `done` runs.
 *   single  (PostgreSQL: one thread per pooled connection) each thread runs
 *           one job's work, then its done.
 *
 * `pending` counts jobs queued or running, so rf__exec_drain can wait for
 * the queue to be empty AND every done to have returned.
 */

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

struct rf__exec {
  rf_store_t *store;
  rf__exec_batch_fn batch; /* NULL: single mode */
  void *ctx;
  pid_t pid;
  pthread_mutex_t mu;
  pthread_cond_t work; /* a job was queued, or stopping */
  pthread_cond_t idle; /* pending reached 0 */
  rf_store_job_t *head, *tail;
  size_t queued, pending;
  bool stopping;
  uint64_t batches, jobs;               /* under mu */
  _Atomic unsigned batch_max, batch_ms; /* rf_store_set_batch_limits */
  unsigned nthreads;
  pthread_t threads[];
};

/* Push jobs[0..n) back to the front of the queue, keeping their order. */
static void requeue_front(rf__exec_t *e, rf_store_job_t **jobs, size_t n) {
  for (size_t i = n; i-- > 0;) {
    jobs[i]->next = e->head;
    e->head = jobs[i];
    if (e->tail == NULL)
      e->tail = jobs[i];
    e->queued++;
  }
}

static size_t take(rf__exec_t *e, rf_store_job_t **jobs, size_t max) {
  size_t n = 0;
  while (n < max && e->head != NULL) {
    rf_store_job_t *j = e->head;
    e->head = j->next;
    if (e->head == NULL)
      e->tail = NULL;
    j->next = NULL;
    jobs[n++] = j;
    e->queued--;
  }
  return n;
}

static void *exec_main(void *arg) {
  rf__exec_t *e = arg;
  rf_store_job_t *jobs[RF_STORE_BATCH_LIMIT];
  pthread_mutex_lock(&e->mu);
  for (;;) {
    while (e->head == NULL && !e->stopping)
      pthread_cond_wait(&e->work, &e->mu);
    if (e->head == NULL) /* stopping with nothing left */
      break;
    size_t n = take(e, jobs, e->batch ? atomic_load(&e->batch_max) : 1);
    pthread_mutex_unlock(&e->mu);
    if (n == 0) { /* not reached: the queue was not empty and the bound is >= 1 */
      pthread_mutex_lock(&e->mu);
      continue;
    }

    size_t ran = n;
    if (e->batch != NULL) {
      ran = e->batch(e->store, jobs, n, e->ctx);
      if (ran == 0 || ran > n)
        ran = n; /* a batch function always finishes at least one */
    } else {
      jobs[0]->rc = jobs[0]->work(e->store, jobs[0]->arg);
    }
    if (ran < n) {
      pthread_mutex_lock(&e->mu);
      requeue_front(e, jobs + ran, n - ran);
      pthread_mutex_unlock(&e->mu);
    }
    for (size_t i = 0; i < ran; i++) {
      rf_store_job_t *j = jobs[i];
      j->done(j->arg, j->rc); /* j may be freed by its owner from here on */
    }

    pthread_mutex_lock(&e->mu);
    e->batches++;
    e->jobs += ran;
    e->pending -= ran;
    if (e->pending == 0)
      pthread_cond_broadcast(&e->idle);
  }
  pthread_mutex_unlock(&e->mu);
  return NULL;
}

int rf__exec_start(rf__exec_t **out, rf_store_t *store, unsigned threads, rf__exec_batch_fn batch,
                   void *ctx, const char *name) {
  if (out == NULL || store == NULL || threads == 0 || threads > 64)
    return RF_EINVAL;
  rf__exec_t *e = calloc(1, sizeof *e + threads * sizeof(pthread_t));
  if (e == NULL)
    return RF_ENOMEM;
  e->store = store;
  e->batch = batch;
  e->ctx = ctx;
  e->pid = rf__store_pid();
  atomic_init(&e->batch_max, RF_STORE_BATCH_MAX);
  atomic_init(&e->batch_ms, RF_STORE_BATCH_MS);
  pthread_mutex_init(&e->mu, NULL);
  pthread_cond_init(&e->work, NULL);
  pthread_cond_init(&e->idle, NULL);
  for (unsigned i = 0; i < threads; i++) {
    if (pthread_create(&e->threads[i], NULL, exec_main, e) != 0) {
      rf__exec_stop(e);
      return RF_ENOMEM;
    }
    e->nthreads++;
    if (name != NULL)
      pthread_setname_np(e->threads[i], name); /* best effort, for ps/top/gdb */
  }
  *out = e;
  return 0;
}

int rf__exec_submit(rf__exec_t *e, rf_store_job_t *job) {
  if (e == NULL || job == NULL || job->work == NULL || job->done == NULL)
    return RF_EINVAL;
  if (rf__store_pid() != e->pid)
    return RF_ESTATE;
  job->rc = 0;
  job->next = NULL;
  pthread_mutex_lock(&e->mu);
  if (e->stopping) {
    pthread_mutex_unlock(&e->mu);
    return RF_ESTATE;
  }
  if (e->queued >= RF_STORE_QUEUE_MAX) {
    pthread_mutex_unlock(&e->mu);
    return RF_EBUSY;
  }
  if (e->tail != NULL)
    e->tail->next = job;
  else
    e->head = job;
  e->tail = job;
  e->queued++;
  e->pending++;
  pthread_cond_signal(&e->work);
  pthread_mutex_unlock(&e->mu);
  return 0;
}

size_t rf__exec_cancel(rf__exec_t *e, int rc) {
  if (e == NULL || rf__store_pid() != e->pid)
    return 0;
  pthread_mutex_lock(&e->mu);
  rf_store_job_t *head = e->head;
  size_t n = e->queued;
  e->head = e->tail = NULL;
  e->queued = 0;
  pthread_mutex_unlock(&e->mu);
  for (rf_store_job_t *j = head; j != NULL;) {
    rf_store_job_t *next = j->next; /* read before done: j may be freed */
    j->rc = rc;
    j->done(j->arg, rc);
    j = next;
  }
  pthread_mutex_lock(&e->mu);
  e->pending -= n;
  if (e->pending == 0)
    pthread_cond_broadcast(&e->idle);
  pthread_mutex_unlock(&e->mu);
  return n;
}

void rf__exec_drain(rf__exec_t *e) {
  if (e == NULL || rf__store_pid() != e->pid)
    return;
  pthread_mutex_lock(&e->mu);
  while (e->pending > 0)
    pthread_cond_wait(&e->idle, &e->mu);
  pthread_mutex_unlock(&e->mu);
}

int rf__exec_set_batch_limits(rf__exec_t *e, unsigned max_jobs, unsigned max_ms) {
  if (e == NULL || max_jobs < 1 || max_jobs > RF_STORE_BATCH_LIMIT || max_ms < 1)
    return RF_EINVAL;
  atomic_store(&e->batch_max, max_jobs);
  atomic_store(&e->batch_ms, max_ms);
  return 0;
}

unsigned rf__exec_batch_ms(const rf__exec_t *e) {
  return e ? atomic_load(&((rf__exec_t *)e)->batch_ms) : RF_STORE_BATCH_MS;
}

void rf__exec_stats(const rf__exec_t *e, uint64_t *batches, uint64_t *jobs) {
  uint64_t b = 0, j = 0;
  if (e != NULL) {
    pthread_mutex_lock((pthread_mutex_t *)&e->mu);
    b = e->batches;
    j = e->jobs;
    pthread_mutex_unlock((pthread_mutex_t *)&e->mu);
  }
  if (batches)
    *batches = b;
  if (jobs)
    *jobs = j;
}

void rf__exec_stop(rf__exec_t *e) {
  if (e == NULL)
    return;
  if (rf__store_pid() != e->pid) {
    /* A forked child: the threads do not exist here, and the condition
     * variables still count the parent's waiters (destroying them would
     * wait for those forever). Only the memory is ours. */
    free(e);
    return;
  }
  pthread_mutex_lock(&e->mu);
  e->stopping = true; /* threads finish what is queued, then leave */
  pthread_cond_broadcast(&e->work);
  pthread_mutex_unlock(&e->mu);
  for (unsigned i = 0; i < e->nthreads; i++)
    pthread_join(e->threads[i], NULL);
  pthread_cond_destroy(&e->idle);
  pthread_cond_destroy(&e->work);
  pthread_mutex_destroy(&e->mu);
  free(e);
}

/* ------------------------------------------------------------- the pid */

/* getpid() is a system call on every call (glibc caches nothing), and the
 * store checks the process on every operation (a store must not be used
 * in a forked child): the pid is read once and refreshed in the child by a
 * pthread_atfork handler. (A child made by a raw clone() without fork's
 * handlers keeps the parent's value: such a child must not use a store.) */
static pid_t g_pid;
static pthread_once_t g_pid_once = PTHREAD_ONCE_INIT;

static void pid_refresh(void) {
  __atomic_store_n(&g_pid, getpid(), __ATOMIC_RELAXED);
}

static void pid_init(void) {
  pid_refresh();
  pthread_atfork(NULL, NULL, pid_refresh);
}

pid_t rf__store_pid(void) {
  pthread_once(&g_pid_once, pid_init);
  return __atomic_load_n(&g_pid, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------ event-loop guard */

static _Thread_local int tl_loop;
static _Thread_local uint64_t tl_waits;

void rf_store_loop_thread(int on) {
  tl_loop = on != 0;
}

uint64_t rf_store_loop_waits(void) {
  return tl_waits;
}

void rf__store_loop_note(void) {
  if (tl_loop)
    tl_waits++;
}
