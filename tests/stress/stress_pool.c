/* stress_pool.c - 8 submitters hammer a small pool; every count is exact.
 *
 *  - completed + rejected == submitted, and the sum of the values the tasks
 *    added equals the sum of the values of the accepted submissions;
 *  - a watcher thread reads the stats lock-free all along: queued never
 *    exceeds the capacity;
 *  - futures are mixed in, some released before completion;
 *  - a second round shuts down with CANCEL while submitters are still busy:
 *    every accepted task gets exactly one completion (ran or cancelled).
 */
#include <stdatomic.h>
#include <stdbool.h>
#include <sched.h>
#include <stdint.h>

#include "rf_test.h"
#include "racefree/pool.h"

#define SUBMITTERS 8
#define WORKERS    4
#define CAPACITY   64

typedef struct {
  rf_pool_t *p;
  long per_thread;
  atomic_uint_fast64_t sum_done;     /* added by tasks */
  atomic_uint_fast64_t sum_accepted; /* added by submitters on success */
  atomic_long submitted, accepted, rejected, shut, other, done_ok, done_canceled, unwaited;
  int cancel_rc;
  atomic_int stop_watch;
  atomic_int over_capacity;
} ctx_t;

static ctx_t *g; /* task callbacks get only the value as arg */

static void add_fn(void *arg) {
  atomic_fetch_add_explicit(&g->sum_done, (uintptr_t)arg, memory_order_relaxed);
}

static void done_fn(int status, void *arg) {
  (void)arg;
  atomic_fetch_add_explicit(status == 0 ? &g->done_ok : &g->done_canceled, 1, memory_order_relaxed);
}

static void submitter(void *arg, int index) {
  ctx_t *c = arg;
  for (long i = 0; i < c->per_thread; i++) {
    uintptr_t v = (uintptr_t)(index * 1000003L + i) % 1000 + 1;
    int rc;
    if (i % 7 == 0) {
      rf_future_t *f;
      rc = rf_pool_submit_future(c->p, add_fn, (void *)v, &f);
      if (rc == 0) {
        if (i % 2 == 0) {
          int st = -99;
          if (rf_future_wait(f, 10000, &st) == 0 && st == 0) {
            atomic_fetch_add_explicit(&c->done_ok, 1, memory_order_relaxed);
          }
        } else {
          /* released before completion: the pool's reference keeps it */
          atomic_fetch_add_explicit(&c->unwaited, 1, memory_order_relaxed);
        }
        rf_future_release(f);
      }
    } else {
      rc = rf_pool_submit(c->p, add_fn, done_fn, (void *)v);
    }
    if (rc == 0) {
      atomic_fetch_add_explicit(&c->accepted, 1, memory_order_relaxed);
      atomic_fetch_add_explicit(&c->sum_accepted, v, memory_order_relaxed);
    } else if (rc == RF_EBUSY) {
      atomic_fetch_add_explicit(&c->rejected, 1, memory_order_relaxed);
    } else if (rc == RF_ESHUTDOWN) {
      atomic_fetch_add_explicit(&c->shut, 1, memory_order_relaxed);
    }
  }
}

static void *watcher(void *arg) {
  ctx_t *c = arg;
  while (!atomic_load(&c->stop_watch)) {
    rf_pool_stats_t st;
    rf_pool_stats(c->p, &st);
    if (st.queued > st.capacity || st.busy > st.threads) {
      atomic_store(&c->over_capacity, 1);
    }
    sched_yield(); /* 2 cores: do not starve the submitters */
  }
  return NULL;
}

static void test_exact_counts(void **state) {
  (void)state;
  static ctx_t c;
  g = &c;
  rf_pool_opts_t o = {.threads = WORKERS, .queue_capacity = CAPACITY};
  assert_int_equal(rf_pool_create(&c.p, &o), 0);
  c.per_thread = rf_test_iters(40000);
  pthread_t w = rf_test_spawn(watcher, &c);
  rf_test_run_parallel(SUBMITTERS, submitter, &c);
  assert_int_equal(rf_pool_shutdown(c.p, RF_POOL_DRAIN), 0);
  atomic_store(&c.stop_watch, 1);
  rf_test_join(w);

  rf_pool_stats_t st;
  rf_pool_stats(c.p, &st);
  long submitted = SUBMITTERS * c.per_thread;
  assert_int_equal(atomic_load(&c.shut), 0);
  assert_int_equal(st.completed + st.rejected, (uint64_t)submitted);
  assert_int_equal(st.rejected, (uint64_t)atomic_load(&c.rejected));
  assert_int_equal(st.completed, (uint64_t)atomic_load(&c.accepted));
  assert_int_equal(atomic_load(&c.sum_done), atomic_load(&c.sum_accepted));
  assert_int_equal(st.canceled, 0);
  assert_int_equal(st.queued, 0);
  assert_int_equal(st.busy, 0);
  assert_int_equal(atomic_load(&c.over_capacity), 0);
  /* One completion per accepted task: a done(0) callback, a waited future
   * reporting 0, or a future released before completion (DRAIN ran it). */
  assert_int_equal(atomic_load(&c.done_ok) + atomic_load(&c.unwaited), (long)st.completed);
  assert_true(st.rejected > 0); /* back-pressure was really exercised */
  rf_pool_destroy(c.p);
}

/* Shutdown(CANCEL) racing with live submitters: they keep submitting until
 * the pool answers RF_ESHUTDOWN, so the cancel always lands under load. */
static void *late_cancel(void *arg) {
  ctx_t *c = arg;
  while (atomic_load_explicit(&c->accepted, memory_order_relaxed) < 1000) {
    sched_yield();
  }
  c->cancel_rc = rf_pool_shutdown(c->p, RF_POOL_CANCEL);
  return NULL;
}

static void cb_submitter(void *arg, int index) {
  ctx_t *c = arg;
  for (long i = 0;; i++) {
    uintptr_t v = (uintptr_t)(index + i) % 10 + 1;
    int rc = rf_pool_submit(c->p, add_fn, done_fn, (void *)v);
    atomic_fetch_add_explicit(&c->submitted, 1, memory_order_relaxed);
    if (rc == 0) {
      atomic_fetch_add_explicit(&c->accepted, 1, memory_order_relaxed);
    } else if (rc == RF_EBUSY) {
      atomic_fetch_add_explicit(&c->rejected, 1, memory_order_relaxed);
    } else if (rc == RF_ESHUTDOWN) {
      atomic_fetch_add_explicit(&c->shut, 1, memory_order_relaxed);
      break;
    } else {
      atomic_fetch_add_explicit(&c->other, 1, memory_order_relaxed);
      break;
    }
  }
}

static void test_cancel_under_load(void **state) {
  (void)state;
  static ctx_t c;
  g = &c;
  rf_pool_opts_t o = {.threads = WORKERS, .queue_capacity = CAPACITY};
  assert_int_equal(rf_pool_create(&c.p, &o), 0);
  pthread_t k = rf_test_spawn(late_cancel, &c);
  rf_test_run_parallel(SUBMITTERS, cb_submitter, &c);
  rf_test_join(k);
  assert_int_equal(c.cancel_rc, 0);
  assert_int_equal(atomic_load(&c.other), 0);
  assert_int_equal(atomic_load(&c.shut), SUBMITTERS); /* each stopped on it */
  rf_pool_stats_t st;
  rf_pool_stats(c.p, &st);
  long accepted = atomic_load(&c.accepted);
  assert_int_equal(accepted + atomic_load(&c.rejected) + atomic_load(&c.shut),
                   atomic_load(&c.submitted));
  /* Exactly one completion per accepted task. */
  assert_int_equal(atomic_load(&c.done_ok) + atomic_load(&c.done_canceled), accepted);
  assert_int_equal(st.completed, (uint64_t)atomic_load(&c.done_ok));
  assert_int_equal(st.canceled, (uint64_t)atomic_load(&c.done_canceled));
  assert_int_equal(st.rejected, (uint64_t)atomic_load(&c.rejected));
  rf_pool_destroy(c.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_counts),
      cmocka_unit_test(test_cancel_under_load),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
