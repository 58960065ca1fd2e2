/* race_timer.c - cancel versus fire, forced at "timer.before_fire".
 *
 * Invariant: for every timer, exactly one of "the callback ran" and "cancel
 * returned success" happens.
 *
 * The naive twin marks a timer cancelled with a flag that the firing thread
 * checks before it calls back:
 *     fire:   if (!cancelled) { RF_HOOK("timer.before_fire"); fn(); }
 *     cancel: cancelled = 1; return 0;
 * Park the firing thread after its check, cancel (success!), release: the
 * callback runs too. Both outcomes happen: a caller that freed `arg` after
 * the "successful" cancel now has a use-after-free.
 *
 * rf_timer decides under its mutex: the pop of a due node removes it from
 * the id index, and the hook sits after the pop. Cancel then finds nothing
 * and says RF_ENOENT, so the caller knows the callback owns `arg`.
 */
#include <stdatomic.h>
#include <stdbool.h>

#include "rf_test.h"
#include "racefree/timer.h"

#define BEFORE_FIRE "timer.before_fire"

typedef struct {
  atomic_int cancelled; /* relaxed: a logic race, not a data race */
  atomic_int fired;
} naive_timer;

static void *naive_fire(void *arg) {
  naive_timer *t = arg;
  if (!atomic_load_explicit(&t->cancelled, memory_order_relaxed)) {
    RF_HOOK(BEFORE_FIRE);
    atomic_fetch_add_explicit(&t->fired, 1, memory_order_relaxed);
  }
  return NULL;
}

static int naive_cancel(naive_timer *t) {
  atomic_store_explicit(&t->cancelled, 1, memory_order_relaxed);
  return 0;
}

static void test_naive_cancel_and_fire_both_happen(void **state) {
  (void)state;
  rf_hook_reset();
  naive_timer t = {0};
  assert_int_equal(rf_hook_arm(BEFORE_FIRE, 1), 0);
  pthread_t th = rf_test_spawn(naive_fire, &t);
  RF_ASSERT_PARKED(BEFORE_FIRE, 1);
  int cancel_won = naive_cancel(&t) == 0;
  assert_int_equal(rf_hook_release(BEFORE_FIRE, 1), 0);
  rf_test_join(th);
  int outcomes = cancel_won + atomic_load(&t.fired);
  assert_int_equal(outcomes, 2); /* violated: proof the test can fail */
  rf_hook_reset();
}

static void count_fire(void *arg) {
  atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_timer_exactly_one_outcome(void **state) {
  (void)state;
  rf_hook_reset();
  rf_timer_t *t;
  atomic_int fired = 0;
  uint64_t id;
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_hook_arm(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_timer_after(t, 0, count_fire, &fired, &id), 0);
  RF_ASSERT_PARKED(BEFORE_FIRE, 1); /* popped, about to call back */
  int cancel_rc = rf_timer_cancel(t, id);
  assert_int_equal(cancel_rc, RF_ENOENT); /* lost: the callback owns arg */
  assert_int_equal(rf_hook_release(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_timer_shutdown(t, true), 0); /* joins: the callback has returned */
  int outcomes = (cancel_rc == 0) + atomic_load(&fired);
  assert_int_equal(outcomes, 1);
  assert_int_equal(atomic_load(&fired), 1);
  rf_timer_destroy(t);
  rf_hook_reset();
}

static void test_timer_cancel_first_never_fires(void **state) {
  (void)state;
  rf_hook_reset();
  rf_timer_t *t;
  atomic_int fired = 0;
  uint64_t hold, id;
  assert_int_equal(rf_timer_create(&t), 0);
  /* Park the timer thread on another timer so ours stays in the heap. */
  atomic_int other = 0;
  assert_int_equal(rf_hook_arm(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_timer_after(t, 0, count_fire, &other, &hold), 0);
  RF_ASSERT_PARKED(BEFORE_FIRE, 1);
  assert_int_equal(rf_timer_after(t, 0, count_fire, &fired, &id), 0); /* due now */
  assert_int_equal(rf_timer_cancel(t, id), 0);                        /* won */
  assert_int_equal(rf_hook_release(BEFORE_FIRE, 1), 0);
  assert_int_equal(rf_timer_shutdown(t, true), 0); /* would fire anything left */
  assert_int_equal(atomic_load(&fired), 0);
  assert_int_equal(atomic_load(&other), 1);
  rf_timer_destroy(t);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_cancel_and_fire_both_happen),
      cmocka_unit_test(test_timer_exactly_one_outcome),
      cmocka_unit_test(test_timer_cancel_first_never_fires),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
