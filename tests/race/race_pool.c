/* race_pool.c - deterministic interleavings for the worker pool.
 *
 * 1. Bounded queue. The naive twin checks the size, then pushes:
 *        if (size < cap) { RF_HOOK("pool.submit.after_check"); push; }
 *    Thread A passes the check at size cap-1 and parks; B passes the same
 *    check and pushes; A resumes and pushes: size cap+1, the bound is broken.
 *    The pool checks and pushes in one critical section (the hook sits after
 *    it): with A parked, B gets RF_EBUSY and the queue holds exactly cap.
 *
 * 2. Cancellation, the libuv way (test-threadpool-cancel.c): every worker is
 *    parked on a task of its own at "pool.worker.before_run", the queue is
 *    filled, RF_EBUSY checked, shutdown(CANCEL) runs; every queued task must
 *    get done(RF_ECANCELED) exactly once and never run, every running one
 *    done(0) exactly once. No sleeps decide anything.
 */
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "rf_test.h"
#include "racefree/pool.h"

#define BEFORE_RUN  "pool.worker.before_run"
#define AFTER_CHECK "pool.submit.after_check"

/* ------------------------------------------------------------ naive twin */

typedef struct {
  atomic_size_t size; /* relaxed: a logic race, not a data race */
  size_t cap;
} naive_queue;

static int naive_submit(naive_queue *q) {
  if (atomic_load_explicit(&q->size, memory_order_relaxed) < q->cap) {
    RF_HOOK(AFTER_CHECK);
    size_t n = atomic_load_explicit(&q->size, memory_order_relaxed);
    atomic_store_explicit(&q->size, n + 1, memory_order_relaxed); /* push */
    return 0;
  }
  return RF_EBUSY;
}

typedef struct {
  naive_queue *nq;
  rf_pool_t *p;
  int rc;
} submit_arg;

static void noop(void *arg) {
  (void)arg;
}

static void *naive_submitter(void *arg) {
  submit_arg *a = arg;
  a->rc = naive_submit(a->nq);
  return NULL;
}

static void *pool_submitter(void *arg) {
  submit_arg *a = arg;
  a->rc = rf_pool_submit(a->p, noop, NULL, NULL);
  return NULL;
}

static void test_naive_queue_overfills(void **state) {
  (void)state;
  rf_hook_reset();
  naive_queue q = {.cap = 4};
  atomic_store(&q.size, 3); /* one slot left */
  assert_int_equal(rf_hook_arm(AFTER_CHECK, 1), 0);
  submit_arg a = {.nq = &q, .rc = -99};
  pthread_t th = rf_test_spawn(naive_submitter, &a);
  RF_ASSERT_PARKED(AFTER_CHECK, 1);      /* A passed the check */
  assert_int_equal(naive_submit(&q), 0); /* B passes it too and pushes */
  assert_int_equal(rf_hook_release(AFTER_CHECK, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, 0);
  /* The invariant size <= cap is violated: proof the test can fail. */
  assert_int_equal(atomic_load(&q.size), 5);
  assert_true(atomic_load(&q.size) > q.cap);
  rf_hook_reset();
}

static void test_pool_never_overfills(void **state) {
  (void)state;
  rf_hook_reset();
  rf_pool_t *p;
  rf_pool_opts_t o = {.threads = 1, .queue_capacity = 4};
  assert_int_equal(rf_pool_create(&p, &o), 0);
  /* Hold the only worker so nothing leaves the queue. */
  assert_int_equal(rf_hook_arm(BEFORE_RUN, 1), 0);
  assert_int_equal(rf_pool_submit(p, noop, NULL, NULL), 0);
  RF_ASSERT_PARKED(BEFORE_RUN, 1);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(rf_pool_submit(p, noop, NULL, NULL), 0);
  }
  /* Same interleaving as the naive twin. */
  assert_int_equal(rf_hook_arm(AFTER_CHECK, 1), 0);
  submit_arg a = {.p = p, .rc = -99};
  pthread_t th = rf_test_spawn(pool_submitter, &a);
  RF_ASSERT_PARKED(AFTER_CHECK, 1);
  assert_int_equal(rf_pool_submit(p, noop, NULL, NULL), RF_EBUSY);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(st.queued, 4);
  assert_int_equal(rf_hook_release(AFTER_CHECK, 1), 0);
  rf_test_join(th);
  assert_int_equal(a.rc, 0);
  rf_pool_stats(p, &st);
  assert_true(st.queued <= st.capacity);
  assert_int_equal(st.rejected, 1);
  assert_int_equal(rf_hook_release(BEFORE_RUN, 1), 0);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), 0);
  rf_pool_stats(p, &st);
  assert_int_equal(st.completed, 5);
  rf_pool_destroy(p);
  rf_hook_reset();
}

/* ------------------------------------------------------------ cancellation */

#define THREADS 4
#define CAP     32

typedef struct {
  atomic_int ran;
  atomic_int done_calls;
  atomic_int status;
  sem_t *sem;
} task_rec;

static void rec_fn(void *arg) {
  task_rec *r = arg;
  atomic_fetch_add(&r->ran, 1);
}

static void rec_done(int status, void *arg) {
  task_rec *r = arg;
  atomic_store(&r->status, status);
  atomic_fetch_add(&r->done_calls, 1);
  sem_post(r->sem);
}

typedef struct {
  rf_pool_t *p;
  int rc;
} shut_arg;

static void *cancel_thread(void *arg) {
  shut_arg *s = arg;
  s->rc = rf_pool_shutdown(s->p, RF_POOL_CANCEL);
  return NULL;
}

static void sem_wait_5s(sem_t *sem) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += 5;
  assert_int_equal(sem_timedwait(sem, &ts), 0);
}

static void test_cancel_every_queued_task_once(void **state) {
  (void)state;
  rf_hook_reset();
  sem_t sem;
  assert_int_equal(sem_init(&sem, 0, 0), 0);
  task_rec blockers[THREADS], queued[CAP];
  for (int i = 0; i < THREADS; i++) {
    blockers[i] = (task_rec){.sem = &sem};
  }
  for (int i = 0; i < CAP; i++) {
    queued[i] = (task_rec){.sem = &sem};
  }
  rf_pool_t *p;
  rf_pool_opts_t o = {.threads = THREADS, .queue_capacity = CAP};
  assert_int_equal(rf_pool_create(&p, &o), 0);

  /* Block every worker. */
  assert_int_equal(rf_hook_arm(BEFORE_RUN, THREADS), 0);
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(rf_pool_submit(p, rec_fn, rec_done, &blockers[i]), 0);
  }
  RF_ASSERT_PARKED(BEFORE_RUN, THREADS);

  /* Fill the queue; the next one bounces. */
  for (int i = 0; i < CAP; i++) {
    assert_int_equal(rf_pool_submit(p, rec_fn, rec_done, &queued[i]), 0);
  }
  task_rec extra = {.sem = &sem};
  assert_int_equal(rf_pool_submit(p, rec_fn, rec_done, &extra), RF_EBUSY);
  rf_future_t *f = NULL;
  assert_int_equal(rf_pool_submit_future(p, rec_fn, &extra, &f), RF_EBUSY);

  /* Cancel. The queued tasks are completed before the join, which waits
   * for the parked workers. */
  shut_arg s = {p, -99};
  pthread_t th = rf_test_spawn(cancel_thread, &s);
  for (int i = 0; i < CAP; i++) {
    sem_wait_5s(&sem);
  }
  for (int i = 0; i < CAP; i++) {
    assert_int_equal(atomic_load(&queued[i].done_calls), 1);
    assert_int_equal(atomic_load(&queued[i].status), RF_ECANCELED);
    assert_int_equal(atomic_load(&queued[i].ran), 0);
  }
  assert_int_equal(rf_pool_submit(p, rec_fn, rec_done, &extra), RF_ESHUTDOWN);
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(atomic_load(&blockers[i].done_calls), 0); /* still parked */
  }

  /* Let the running ones finish: done(0), exactly once. */
  assert_int_equal(rf_hook_release(BEFORE_RUN, THREADS), 0);
  rf_test_join(th);
  assert_int_equal(s.rc, 0);
  for (int i = 0; i < THREADS; i++) {
    assert_int_equal(atomic_load(&blockers[i].ran), 1);
    assert_int_equal(atomic_load(&blockers[i].done_calls), 1);
    assert_int_equal(atomic_load(&blockers[i].status), 0);
  }
  for (int i = 0; i < CAP; i++) { /* and nothing changed for the cancelled */
    assert_int_equal(atomic_load(&queued[i].done_calls), 1);
    assert_int_equal(atomic_load(&queued[i].ran), 0);
  }
  assert_int_equal(atomic_load(&extra.done_calls), 0);
  assert_int_equal(atomic_load(&extra.ran), 0);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(st.completed, THREADS);
  assert_int_equal(st.canceled, CAP);
  assert_int_equal(st.rejected, 2);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.busy, 0);
  rf_pool_destroy(p);
  sem_destroy(&sem);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_queue_overfills),
      cmocka_unit_test(test_pool_never_overfills),
      cmocka_unit_test(test_cancel_every_queued_task_once),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
