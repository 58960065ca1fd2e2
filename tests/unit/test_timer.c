/* test_timer.c - ordering, cancel, shutdown, bad input, allocation failure. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rf_test.h"
#include "racefree/timer.h"

/* A small "record what fired, in order" helper, guarded by a mutex. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int order[512];
  int n;
} recorder;

static void rec_init(recorder *r) {
  pthread_mutex_init(&r->mu, NULL);
  pthread_cond_init(&r->cv, NULL);
  r->n = 0;
}

static void rec_fini(recorder *r) {
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
}

typedef struct {
  recorder *rec;
  int tag;
} rec_arg;

static void rec_fire(void *arg) {
  rec_arg *a = arg;
  pthread_mutex_lock(&a->rec->mu);
  a->rec->order[a->rec->n++] = a->tag;
  pthread_cond_broadcast(&a->rec->cv);
  pthread_mutex_unlock(&a->rec->mu);
}

/* Wait until n callbacks were recorded (5 s safety limit). */
static void rec_wait(recorder *r, int n) {
  uint64_t limit = rf_test_now_ms() + 5000;
  pthread_mutex_lock(&r->mu);
  while (r->n < n && rf_test_now_ms() < limit) {
    pthread_mutex_unlock(&r->mu);
    rf_test_sleep_ms(1);
    pthread_mutex_lock(&r->mu);
  }
  int got = r->n;
  pthread_mutex_unlock(&r->mu);
  assert_int_equal(got, n);
}

static void noop(void *arg) {
  (void)arg;
}

static void test_bad_input(void **state) {
  (void)state;
  rf_timer_t *t;
  uint64_t id;
  assert_int_equal(rf_timer_create(NULL), RF_EINVAL);
  assert_int_equal(rf_timer_after(NULL, 1, noop, NULL, &id), RF_EINVAL);
  assert_int_equal(rf_timer_cancel(NULL, 1), RF_EINVAL);
  assert_int_equal(rf_timer_shutdown(NULL, true), RF_EINVAL);
  assert_int_equal(rf_timer_pending(NULL), 0);
  rf_timer_destroy(NULL);
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_timer_after(t, 1, NULL, NULL, &id), RF_EINVAL);
  assert_int_equal(rf_timer_cancel(t, 0), RF_EINVAL);
  assert_int_equal(rf_timer_cancel(t, 12345), RF_ENOENT);
  rf_timer_destroy(t);
}

static void test_fires_after_delay(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg a = {&rec, 1};
  assert_int_equal(rf_timer_create(&t), 0);
  uint64_t t0 = rf_test_now_ms();
  uint64_t id = 0;
  assert_int_equal(rf_timer_after(t, 20, rec_fire, &a, &id), 0);
  assert_true(id != 0);
  rec_wait(&rec, 1);
  assert_true(rf_test_now_ms() - t0 >= 20);
  assert_int_equal(rf_timer_cancel(t, id), RF_ENOENT); /* already fired */
  assert_int_equal(rf_timer_pending(t), 0);
  rf_timer_destroy(t);
  rec_fini(&rec);
}

static void test_order_and_fifo_ties(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg args[8];
  /* Far deadlines, fired by shutdown(run_pending) in heap order: no timing
   * dependence at all. */
  const uint64_t delays[8] = {30000, 10000, 20000, 10000, 10000, 5000, 20000, 10000};
  assert_int_equal(rf_timer_create(&t), 0);
  for (int i = 0; i < 8; i++) {
    args[i] = (rec_arg){&rec, i};
    assert_int_equal(rf_timer_after(t, delays[i], rec_fire, &args[i], NULL), 0);
  }
  assert_int_equal(rf_timer_pending(t), 8);
  assert_int_equal(rf_timer_shutdown(t, true), 0);
  const int expect[8] = {5, 1, 3, 4, 7, 2, 6, 0};
  assert_int_equal(rec.n, 8);
  for (int i = 0; i < 8; i++) {
    assert_int_equal(rec.order[i], expect[i]);
  }
  rf_timer_destroy(t);
  rec_fini(&rec);
}

static void test_many_equal_delays_fifo(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg args[300];
  assert_int_equal(rf_timer_create(&t), 0);
  for (int i = 0; i < 300; i++) { /* also grows heap and index past 64 */
    args[i] = (rec_arg){&rec, i};
    assert_int_equal(rf_timer_after(t, 60000, rec_fire, &args[i], NULL), 0);
  }
  assert_int_equal(rf_timer_shutdown(t, true), 0);
  assert_int_equal(rec.n, 300);
  for (int i = 0; i < 300; i++) {
    assert_int_equal(rec.order[i], i);
  }
  rf_timer_destroy(t);
  rec_fini(&rec);
}

static void test_cancel(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg args[200];
  uint64_t ids[200];
  assert_int_equal(rf_timer_create(&t), 0);
  for (int i = 0; i < 200; i++) {
    args[i] = (rec_arg){&rec, i};
    /* Deadlines 1 s apart: far more than arming takes, so deadline order
     * is delay order even on a slow (sanitized) run. */
    uint64_t delay = 60000 + 1000 * (uint64_t)(i * 7919 % 200);
    assert_int_equal(rf_timer_after(t, delay, rec_fire, &args[i], &ids[i]), 0);
  }
  /* Cancel every third one, in an order unrelated to the heap's. */
  int cancelled = 0;
  for (int i = 199; i >= 0; i--) {
    if (i % 3 == 0) {
      assert_int_equal(rf_timer_cancel(t, ids[i]), 0);
      assert_int_equal(rf_timer_cancel(t, ids[i]), RF_ENOENT);
      cancelled++;
    }
  }
  assert_int_equal(rf_timer_pending(t), 200 - cancelled);
  assert_int_equal(rf_timer_shutdown(t, true), 0);
  assert_int_equal(rec.n, 200 - cancelled);
  /* Remaining ones fired in deadline order and none of the cancelled. */
  int prev_delay = -1;
  for (int i = 0; i < rec.n; i++) {
    int tag = rec.order[i];
    assert_true(tag % 3 != 0);
    int delay = tag * 7919 % 200;
    assert_true(delay >= prev_delay);
    prev_delay = delay;
  }
  rf_timer_destroy(t);
  rec_fini(&rec);
}

static void test_huge_delay(void **state) {
  (void)state;
  rf_timer_t *t;
  uint64_t id;
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_timer_after(t, UINT64_MAX, noop, NULL, &id), 0);
  assert_int_equal(rf_timer_after(t, UINT64_MAX / 2, noop, NULL, NULL), 0);
  assert_int_equal(rf_timer_pending(t), 2);
  assert_int_equal(rf_timer_cancel(t, id), 0);
  rf_timer_destroy(t); /* drops the other one unrun */
}

/* Callbacks may arm and cancel timers on the same timer. */
typedef struct {
  rf_timer_t *t;
  recorder *rec;
  rec_arg next;
  uint64_t victim;
  int cancel_rc;
} chain_arg;

static void chain_fire(void *arg) {
  chain_arg *c = arg;
  c->cancel_rc = rf_timer_cancel(c->t, c->victim);
  assert_int_equal(rf_timer_after(c->t, 1, rec_fire, &c->next, NULL), 0);
}

static void test_callbacks_may_rearm_and_cancel(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg victim_arg = {&rec, 99};
  chain_arg c = {.rec = &rec, .next = {&rec, 7}};
  assert_int_equal(rf_timer_create(&t), 0);
  c.t = t;
  assert_int_equal(rf_timer_after(t, 60000, rec_fire, &victim_arg, &c.victim), 0);
  assert_int_equal(rf_timer_after(t, 0, chain_fire, &c, NULL), 0);
  rec_wait(&rec, 1);
  assert_int_equal(rec.order[0], 7);
  assert_int_equal(c.cancel_rc, 0);
  assert_int_equal(rf_timer_pending(t), 0);
  rf_timer_destroy(t);
  rec_fini(&rec);
}

typedef struct {
  rf_timer_t *t;
  int shutdown_rc;
  int after_rc;
  atomic_int ran;
} self_arg;

static void self_shutdown(void *arg) {
  self_arg *s = arg;
  s->shutdown_rc = rf_timer_shutdown(s->t, false);
  atomic_store(&s->ran, 1);
}

static void after_during_drain(void *arg) {
  self_arg *s = arg;
  s->after_rc = rf_timer_after(s->t, 0, noop, NULL, NULL);
}

static void test_shutdown_rules(void **state) {
  (void)state;
  rf_timer_t *t;
  self_arg s = {0};
  assert_int_equal(rf_timer_create(&t), 0);
  s.t = t;
  /* From a callback: RF_ESTATE (it cannot join itself). */
  assert_int_equal(rf_timer_after(t, 0, self_shutdown, &s, NULL), 0);
  while (atomic_load(&s.ran) == 0) {
    rf_test_sleep_ms(1);
  }
  assert_int_equal(s.shutdown_rc, RF_ESTATE);
  /* Callbacks run by shutdown(true) cannot arm new timers. */
  assert_int_equal(rf_timer_after(t, 60000, after_during_drain, &s, NULL), 0);
  assert_int_equal(rf_timer_shutdown(t, true), 0);
  assert_int_equal(s.after_rc, RF_ESHUTDOWN);
  /* Use after shutdown. */
  assert_int_equal(rf_timer_after(t, 1, noop, NULL, NULL), RF_ESHUTDOWN);
  assert_int_equal(rf_timer_cancel(t, 1), RF_ESHUTDOWN);
  assert_int_equal(rf_timer_shutdown(t, true), RF_ESHUTDOWN);
  assert_int_equal(rf_timer_pending(t), 0);
  rf_timer_destroy(t);
}

static void test_shutdown_drop(void **state) {
  (void)state;
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg a = {&rec, 1};
  assert_int_equal(rf_timer_create(&t), 0);
  for (int i = 0; i < 10; i++) {
    assert_int_equal(rf_timer_after(t, 60000, rec_fire, &a, NULL), 0);
  }
  assert_int_equal(rf_timer_shutdown(t, false), 0);
  assert_int_equal(rec.n, 0);
  assert_int_equal(rf_timer_pending(t), 0);
  rf_timer_destroy(t);
  rec_fini(&rec);
}

/* While shutdown(false) waits to join a running callback, a cancel of a
 * timer still in the heap wins (it will never run); after the join cancel
 * says RF_ESHUTDOWN. The running callback is held at "timer.before_fire". */
typedef struct {
  rf_timer_t *t;
  int rc;
} shut_arg;

static void *shutdown_drop(void *arg) {
  shut_arg *s = arg;
  s->rc = rf_timer_shutdown(s->t, false);
  return NULL;
}

static void test_cancel_while_stopping(void **state) {
  (void)state;
  rf_hook_reset();
  rf_timer_t *t;
  recorder rec;
  rec_init(&rec);
  rec_arg a = {&rec, 1}, b = {&rec, 2};
  uint64_t later;
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_hook_arm("timer.before_fire", 1), 0);
  assert_int_equal(rf_timer_after(t, 0, rec_fire, &a, NULL), 0);
  RF_ASSERT_PARKED("timer.before_fire", 1);
  assert_int_equal(rf_timer_after(t, 60000, rec_fire, &b, &later), 0);
  shut_arg s = {t, -99};
  pthread_t th = rf_test_spawn(shutdown_drop, &s);
  /* The shutdown has begun once rf_timer_after refuses. */
  while (rf_timer_after(t, 1, noop, NULL, NULL) != RF_ESHUTDOWN) {
    rf_test_sleep_ms(1);
  }
  assert_int_equal(rf_timer_cancel(t, later), 0);
  assert_int_equal(rf_hook_release("timer.before_fire", 1), 0);
  rf_test_join(th);
  assert_int_equal(s.rc, 0);
  assert_int_equal(rec.n, 1); /* only the one already running */
  assert_int_equal(rec.order[0], 1);
  assert_int_equal(rf_timer_cancel(t, later), RF_ESHUTDOWN);
  rf_timer_destroy(t);
  rec_fini(&rec);
  rf_hook_reset();
}

/* One scenario for the torture loop: create, arm 150 timers (the heap and
 * the index grow twice), cancel half, destroy. Every failure must be
 * RF_ENOMEM and leave nothing behind. */
static void alloc_scenario(void) {
  rf_timer_t *t = NULL;
  int rc = rf_timer_create(&t);
  if (rc != 0) {
    assert_int_equal(rc, RF_ENOMEM);
    assert_null(t);
    return;
  }
  uint64_t ids[150];
  int armed = 0;
  for (int i = 0; i < 150; i++) {
    rc = rf_timer_after(t, 60000, noop, NULL, &ids[armed]);
    if (rc == 0) {
      armed++;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
  }
  for (int i = 0; i < armed; i += 2) {
    assert_int_equal(rf_timer_cancel(t, ids[i]), 0);
  }
  assert_int_equal(rf_timer_pending(t), (size_t)(armed - (armed + 1) / 2));
  rf_timer_destroy(t);
}

/* Torture: fail the 1st, 2nd, ... allocation of the scenario in turn (as
 * many as a clean run makes). ASan's leak checker proves the error paths
 * release everything. */
static void test_alloc_failures(void **state) {
  (void)state;
  unsigned long before = rf_test_alloc_count();
  alloc_scenario();
  long total = (long)(rf_test_alloc_count() - before);
  assert_true(total > 150);
  for (long n = 0; n < total; n++) {
    rf_test_fail_alloc_after(n);
    alloc_scenario();
  }
  rf_test_fail_alloc_after(-1);

  rf_timer_t *t = NULL;
  assert_int_equal(rf_hook_fail("timer.create.thread", 1), 0);
  assert_int_equal(rf_timer_create(&t), RF_ENOMEM);
  assert_null(t);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_fires_after_delay),
      cmocka_unit_test(test_order_and_fifo_ties),
      cmocka_unit_test(test_many_equal_delays_fifo),
      cmocka_unit_test(test_cancel),
      cmocka_unit_test(test_huge_delay),
      cmocka_unit_test(test_callbacks_may_rearm_and_cancel),
      cmocka_unit_test(test_shutdown_rules),
      cmocka_unit_test(test_shutdown_drop),
      cmocka_unit_test(test_cancel_while_stopping),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
