/* stress_timer.c - many timers from many threads: each fires exactly once
 * or is cancelled exactly once, never both, never neither.
 *
 * 8 threads arm timers with short delays (0..15 ms) and cancel a share of
 * them: some right away, some of their own later, some armed by another
 * thread (so cancels race with the timer thread's pops). Every timer has a
 * record; the callback counts `fired`, a cancel that returns 0 counts
 * `cancelled`. After shutdown(run_pending) every record has exactly one.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "rf_test.h"
#include "racefree/timer.h"

#define THREADS 8

typedef struct {
  atomic_int fired;
  atomic_int cancelled;
} rec_t;

typedef struct {
  rf_timer_t *t;
  long per_thread;
  rec_t *recs;        /* THREADS * per_thread */
  atomic_ullong *ids; /* published ids, 0 = not armed yet */
  atomic_long errors;
} ctx_t;

static void fire(void *arg) {
  atomic_fetch_add_explicit(&((rec_t *)arg)->fired, 1, memory_order_relaxed);
}

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static void try_cancel(ctx_t *c, long slot) {
  uint64_t id = atomic_load(&c->ids[slot]);
  if (id == 0) {
    return;
  }
  int rc = rf_timer_cancel(c->t, id);
  if (rc == 0) {
    atomic_fetch_add(&c->recs[slot].cancelled, 1);
  } else if (rc != RF_ENOENT) {
    atomic_fetch_add(&c->errors, 1);
  }
}

static void worker(void *arg, int index) {
  ctx_t *c = arg;
  uint64_t s = 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1);
  long base = index * c->per_thread;
  for (long i = 0; i < c->per_thread; i++) {
    long slot = base + i;
    uint64_t id;
    if (rf_timer_after(c->t, rnd(&s) % 16, fire, &c->recs[slot], &id) != 0) {
      atomic_fetch_add(&c->errors, 1);
      continue;
    }
    atomic_store(&c->ids[slot], id);
    uint64_t r = rnd(&s) % 8;
    if (r == 0) {
      try_cancel(c, slot); /* at once */
    } else if (r == 1 && i >= 10) {
      try_cancel(c, slot - 10); /* an older one of ours */
    } else if (r == 2) {
      /* someone else's, maybe firing right now */
      long other = (long)(rnd(&s) % (uint64_t)(THREADS * c->per_thread));
      try_cancel(c, other);
    }
  }
}

static void test_exactly_one_outcome(void **state) {
  (void)state;
  ctx_t c = {0};
  c.per_thread = rf_test_iters(5000);
  long n = THREADS * c.per_thread;
  c.recs = calloc((size_t)n, sizeof(rec_t));
  c.ids = calloc((size_t)n, sizeof(atomic_ullong));
  assert_non_null(c.recs);
  assert_non_null(c.ids);
  assert_int_equal(rf_timer_create(&c.t), 0);
  rf_test_run_parallel(THREADS, worker, &c);
  assert_int_equal(rf_timer_shutdown(c.t, true), 0); /* fire what is left */
  assert_int_equal(atomic_load(&c.errors), 0);
  long fired = 0, cancelled = 0;
  for (long i = 0; i < n; i++) {
    int f = atomic_load(&c.recs[i].fired), k = atomic_load(&c.recs[i].cancelled);
    assert_int_equal(f + k, 1);
    fired += f;
    cancelled += k;
  }
  assert_int_equal(fired + cancelled, n);
  assert_true(cancelled > 0);
  rf_timer_destroy(c.t);
  free(c.ids);
  free(c.recs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exactly_one_outcome),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
