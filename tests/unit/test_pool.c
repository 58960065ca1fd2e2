/* test_pool.c - worker pool: completion, back-pressure, futures, shutdown
 * modes, nice, bad input, allocation failure. Workers are held still with
 * the hook "pool.worker.before_run" (never with sleeps). */
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <unistd.h>

#include "rf_test.h"
#include "racefree/pool.h"

#define BEFORE_RUN "pool.worker.before_run"

typedef struct {
  atomic_int ran;
  atomic_int done_ok;
  atomic_int done_canceled;
  atomic_int done_other;
} counters;

static void count_fn(void *arg) {
  counters *c = arg;
  atomic_fetch_add(&c->ran, 1);
}

static void count_done(int status, void *arg) {
  counters *c = arg;
  if (status == 0) {
    atomic_fetch_add(&c->done_ok, 1);
  } else if (status == RF_ECANCELED) {
    atomic_fetch_add(&c->done_canceled, 1);
  } else {
    atomic_fetch_add(&c->done_other, 1);
  }
}

static rf_pool_t *make_pool(unsigned threads, size_t cap) {
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = threads, .queue_capacity = cap};
  assert_int_equal(rf_pool_create(&p, &o), 0);
  return p;
}

/* Park every worker of p on a task of its own (they stay at the hook). */
static void park_workers(rf_pool_t *p, unsigned threads, counters *c) {
  assert_int_equal(rf_hook_arm(BEFORE_RUN, threads), 0);
  for (unsigned i = 0; i < threads; i++) {
    assert_int_equal(rf_pool_submit(p, count_fn, count_done, c), 0);
  }
  RF_ASSERT_PARKED(BEFORE_RUN, threads);
}

static void test_bad_input(void **state) {
  (void)state;
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = 2, .queue_capacity = 4};
  assert_int_equal(rf_pool_create(NULL, &o), RF_EINVAL);
  assert_int_equal(rf_pool_create(&p, NULL), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 0, .queue_capacity = 4};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 2, .queue_capacity = 0};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 2, .queue_capacity = SIZE_MAX};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 2, .queue_capacity = RF_POOL_MAX_QUEUE + 1};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = RF_POOL_MAX_THREADS + 1, .queue_capacity = 4};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = UINT32_MAX, .queue_capacity = 4};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 2, .queue_capacity = 4, .nice = -1};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  o = (rf_pool_opts_t){.threads = 2, .queue_capacity = 4, .nice = 20};
  assert_int_equal(rf_pool_create(&p, &o), RF_EINVAL);
  assert_null(p);

  rf_future_t *f = NULL;
  assert_int_equal(rf_pool_submit(NULL, count_fn, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_pool_submit_future(NULL, count_fn, NULL, &f), RF_EINVAL);
  assert_int_equal(rf_future_wait(NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_pool_shutdown(NULL, RF_POOL_DRAIN), RF_EINVAL);
  rf_future_release(NULL);
  rf_pool_destroy(NULL);
  rf_pool_stats(NULL, NULL);

  p = make_pool(1, 4);
  assert_int_equal(rf_pool_submit(p, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_pool_submit_future(p, NULL, NULL, &f), RF_EINVAL);
  assert_int_equal(rf_pool_submit_future(p, count_fn, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_pool_shutdown(p, (rf_pool_shutdown_mode_t)7), RF_EINVAL);
  rf_pool_stats(p, NULL);
  assert_null(f);
  rf_pool_destroy(p);
}

static void test_runs_everything_once(void **state) {
  (void)state;
  counters c = {0};
  rf_pool_t *p = make_pool(4, 2000);
  for (int i = 0; i < 1000; i++) {
    assert_int_equal(rf_pool_submit(p, count_fn, i % 2 ? count_done : NULL, &c), 0);
  }
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), 0);
  assert_int_equal(atomic_load(&c.ran), 1000);
  assert_int_equal(atomic_load(&c.done_ok), 500);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(st.completed, 1000);
  assert_int_equal(st.rejected, 0);
  assert_int_equal(st.canceled, 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.busy, 0);
  assert_int_equal(st.threads, 4);
  assert_int_equal(st.capacity, 2000);
  rf_pool_destroy(p);
}

static void test_backpressure(void **state) {
  (void)state;
  rf_hook_reset();
  counters c = {0};
  rf_pool_t *p = make_pool(2, 8);
  park_workers(p, 2, &c);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(rf_pool_submit(p, count_fn, count_done, &c), 0);
  }
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(st.queued, 8);
  assert_int_equal(st.busy, 2);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rf_pool_submit(p, count_fn, count_done, &c), RF_EBUSY);
  }
  rf_future_t *f = NULL;
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &f), RF_EBUSY);
  assert_null(f);
  rf_pool_stats(p, &st);
  assert_int_equal(st.queued, 8); /* never above capacity */
  assert_int_equal(st.rejected, 6);
  assert_int_equal(rf_hook_release(BEFORE_RUN, 2), 0);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), 0);
  assert_int_equal(atomic_load(&c.ran), 10);
  assert_int_equal(atomic_load(&c.done_ok), 10);
  rf_pool_destroy(p);
  rf_hook_reset();
}

/* DRAIN: what is queued at shutdown still runs. */
typedef struct {
  rf_pool_t *p;
  rf_pool_shutdown_mode_t mode;
  int rc;
} shut_arg;

static void *shutdown_thread(void *arg) {
  shut_arg *s = arg;
  s->rc = rf_pool_shutdown(s->p, s->mode);
  return NULL;
}

static void test_drain(void **state) {
  (void)state;
  rf_hook_reset();
  counters c = {0};
  rf_pool_t *p = make_pool(2, 16);
  park_workers(p, 2, &c);
  for (int i = 0; i < 16; i++) {
    assert_int_equal(rf_pool_submit(p, count_fn, count_done, &c), 0);
  }
  shut_arg s = {p, RF_POOL_DRAIN, -99};
  pthread_t th = rf_test_spawn(shutdown_thread, &s);
  /* The shutdown has begun once submit says so (it cannot finish: the
   * workers are parked). */
  while (rf_pool_submit(p, count_fn, count_done, &c) != RF_ESHUTDOWN) {
    rf_test_sleep_ms(1);
  }
  assert_int_equal(rf_hook_release(BEFORE_RUN, 2), 0);
  rf_test_join(th);
  assert_int_equal(s.rc, 0);
  /* The queue was full until the shutdown: exactly 2 + 16 accepted, all ran. */
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(atomic_load(&c.ran), 18);
  assert_int_equal(atomic_load(&c.done_ok), 18);
  assert_int_equal(st.completed, 18);
  assert_int_equal(st.canceled, 0);
  assert_int_equal(st.queued, 0);
  rf_pool_destroy(p);
  rf_hook_reset();
}

static void test_futures(void **state) {
  (void)state;
  rf_hook_reset();
  counters c = {0};
  rf_pool_t *p = make_pool(1, 8);
  rf_future_t *f = NULL;
  int st = -99;
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &f), 0);
  assert_int_equal(rf_future_wait(f, -1, &st), 0);
  assert_int_equal(st, 0);
  assert_int_equal(rf_future_wait(f, 0, NULL), 0); /* done stays done */
  assert_int_equal(atomic_load(&c.ran), 1);
  rf_future_release(f);

  /* Timeout while the worker is held; then completion; release after. */
  assert_int_equal(rf_hook_arm(BEFORE_RUN, 1), 0);
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &f), 0);
  RF_ASSERT_PARKED(BEFORE_RUN, 1);
  assert_int_equal(rf_future_wait(f, 0, &st), RF_ETIMEDOUT);
  assert_int_equal(rf_future_wait(f, 20, &st), RF_ETIMEDOUT);
  /* Released by the caller BEFORE the task finishes: the pool's reference
   * keeps it alive; nothing leaks (ASan) and nothing crashes. */
  rf_future_t *early = NULL;
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &early), 0);
  rf_future_release(early);
  assert_int_equal(rf_hook_release(BEFORE_RUN, 1), 0);
  assert_int_equal(rf_future_wait(f, 5000, &st), 0);
  assert_int_equal(st, 0);
  rf_future_release(f);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), 0);
  assert_int_equal(atomic_load(&c.ran), 3);
  rf_pool_destroy(p);
  rf_hook_reset();
}

static void test_future_canceled(void **state) {
  (void)state;
  rf_hook_reset();
  counters c = {0};
  rf_pool_t *p = make_pool(1, 4);
  park_workers(p, 1, &c);
  rf_future_t *f = NULL, *g = NULL;
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &f), 0);
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &g), 0);
  rf_future_release(g); /* released early, cancelled later: no leak */
  shut_arg s = {p, RF_POOL_CANCEL, -99};
  pthread_t th = rf_test_spawn(shutdown_thread, &s);
  int st = -99;
  assert_int_equal(rf_future_wait(f, 5000, &st), 0); /* cancelled before the join */
  assert_int_equal(st, RF_ECANCELED);
  assert_int_equal(rf_hook_release(BEFORE_RUN, 1), 0);
  rf_test_join(th);
  assert_int_equal(s.rc, 0);
  assert_int_equal(atomic_load(&c.ran), 1); /* only the parked one */
  rf_future_release(f);
  rf_pool_destroy(p);
  rf_hook_reset();
}

/* ---------------------------------------------------- from inside tasks */

typedef struct {
  rf_pool_t *p;
  counters *c;
  int submit_rc;
  int shutdown_rc;
} inner_arg;

static void inner_fn(void *arg) {
  inner_arg *a = arg;
  a->submit_rc = rf_pool_submit(a->p, count_fn, count_done, a->c);
  a->shutdown_rc = rf_pool_shutdown(a->p, RF_POOL_DRAIN);
  rf_pool_destroy(a->p); /* from its own worker: does nothing */
}

static void test_from_inside_a_task(void **state) {
  (void)state;
  counters c = {0};
  rf_pool_t *p = make_pool(2, 8);
  inner_arg a = {p, &c, -99, -99};
  rf_future_t *f;
  assert_int_equal(rf_pool_submit_future(p, inner_fn, &a, &f), 0);
  assert_int_equal(rf_future_wait(f, 5000, NULL), 0);
  rf_future_release(f);
  assert_int_equal(a.submit_rc, 0);
  assert_int_equal(a.shutdown_rc, RF_ESTATE);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), 0);
  assert_int_equal(atomic_load(&c.ran), 1);
  rf_pool_destroy(p);
}

static void test_use_after_shutdown(void **state) {
  (void)state;
  counters c = {0};
  rf_pool_t *p = make_pool(1, 4);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_CANCEL), 0);
  assert_int_equal(rf_pool_submit(p, count_fn, count_done, &c), RF_ESHUTDOWN);
  rf_future_t *f = NULL;
  assert_int_equal(rf_pool_submit_future(p, count_fn, &c, &f), RF_ESHUTDOWN);
  assert_null(f);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_DRAIN), RF_ESHUTDOWN);
  assert_int_equal(rf_pool_shutdown(p, RF_POOL_CANCEL), RF_ESHUTDOWN);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  assert_int_equal(st.rejected, 0); /* ESHUTDOWN is not back-pressure */
  assert_int_equal(atomic_load(&c.ran) + atomic_load(&c.done_ok) + atomic_load(&c.done_canceled),
                   0);
  rf_pool_destroy(p);
}

/* ---------------------------------------------------- nice */

static void nice_fn(void *arg) {
  int *out = arg;
  *out = getpriority(PRIO_PROCESS, (id_t)gettid());
}

static void test_nice_per_worker(void **state) {
  (void)state;
  int self_before = getpriority(PRIO_PROCESS, (id_t)gettid());
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = 1, .queue_capacity = 4, .nice = 13};
  assert_int_equal(rf_pool_create(&p, &o), 0);
  int seen = -99;
  rf_future_t *f;
  assert_int_equal(rf_pool_submit_future(p, nice_fn, &seen, &f), 0);
  assert_int_equal(rf_future_wait(f, 5000, NULL), 0);
  rf_future_release(f);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  if (st.nice_failed == 0) {
    assert_int_equal(seen, 13);
  } else {
    assert_int_equal(st.nice_failed, 1); /* e.g. already above 13 here */
  }
  /* Only the worker changed: this (request) thread keeps its priority. */
  assert_int_equal(getpriority(PRIO_PROCESS, (id_t)gettid()), self_before);
  rf_pool_destroy(p);
}

static void policy_fn(void *arg) {
  int *out = arg;
  *out = sched_getscheduler(0); /* 0: the calling thread, on Linux */
}

/* sched_idle: the worker runs under SCHED_IDLE (or, refused, at its nice
 * value, counted); the creating thread keeps its policy. */
static void test_sched_idle_per_worker(void **state) {
  (void)state;
  int self_before = sched_getscheduler(0);
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = 1, .queue_capacity = 4, .nice = 13, .sched_idle = true};
  assert_int_equal(rf_pool_create(&p, &o), 0);
  int policy = -99;
  int prio = -99;
  rf_future_t *f;
  assert_int_equal(rf_pool_submit_future(p, policy_fn, &policy, &f), 0);
  assert_int_equal(rf_future_wait(f, 5000, NULL), 0);
  rf_future_release(f);
  assert_int_equal(rf_pool_submit_future(p, nice_fn, &prio, &f), 0);
  assert_int_equal(rf_future_wait(f, 5000, NULL), 0);
  rf_future_release(f);
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  if (st.sched_idle_failed == 0) {
    assert_int_equal(policy, SCHED_IDLE);
    assert_int_equal(st.nice_failed, 0);
  } else { /* refused here: the nice fallback applies */
    assert_int_equal(st.sched_idle_failed, 1);
    assert_int_equal(policy, self_before);
    if (st.nice_failed == 0) {
      assert_int_equal(prio, 13);
    }
  }
  assert_int_equal(sched_getscheduler(0), self_before);
  rf_pool_destroy(p);
}

/* ---------------------------------------------------- allocation failure */

static void alloc_scenario(void) {
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = 2, .queue_capacity = 16};
  counters c = {0};
  int rc = rf_pool_create(&p, &o);
  if (rc != 0) {
    assert_int_equal(rc, RF_ENOMEM);
    assert_null(p);
    return;
  }
  rf_future_t *fs[8];
  int nf = 0;
  for (int i = 0; i < 8; i++) {
    rc = rf_pool_submit_future(p, count_fn, &c, &fs[nf]);
    if (rc == 0) {
      nf++;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
  }
  for (int i = 0; i < nf; i++) {
    if (i % 2 == 0) {
      assert_int_equal(rf_future_wait(fs[i], 5000, NULL), 0);
    }
    rf_future_release(fs[i]);
  }
  rf_pool_destroy(p);
  assert_int_equal(atomic_load(&c.ran), nf);
}

static void test_alloc_failures(void **state) {
  (void)state;
  unsigned long before = rf_test_alloc_count();
  alloc_scenario();
  long total = (long)(rf_test_alloc_count() - before);
  assert_true(total >= 11);
  for (long n = 0; n < total; n++) {
    rf_test_fail_alloc_after(n);
    alloc_scenario();
  }
  rf_test_fail_alloc_after(-1);

  /* Thread creation failing: the first worker, then the last one (the
   * started workers must be stopped and joined). */
  rf_pool_t *p = NULL;
  rf_pool_opts_t o = {.threads = 3, .queue_capacity = 4};
  assert_int_equal(rf_hook_fail("pool.create.thread", 1), 0);
  assert_int_equal(rf_pool_create(&p, &o), RF_ENOMEM);
  assert_null(p);
  rf_hook_reset();
  assert_int_equal(rf_hook_fail("pool.create.last_thread", 1), 0);
  assert_int_equal(rf_pool_create(&p, &o), RF_ENOMEM);
  assert_null(p);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_runs_everything_once),
      cmocka_unit_test(test_backpressure),
      cmocka_unit_test(test_drain),
      cmocka_unit_test(test_futures),
      cmocka_unit_test(test_future_canceled),
      cmocka_unit_test(test_from_inside_a_task),
      cmocka_unit_test(test_use_after_shutdown),
      cmocka_unit_test(test_nice_per_worker),
      cmocka_unit_test(test_sched_idle_per_worker),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
