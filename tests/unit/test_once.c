/* test_once.c - the contract of rf_once: runs once, failures retried, the
 * callback form, recursion refused, bad input, allocation failure. */
#include <stdatomic.h>
#include <stdlib.h>

#include "racefree/once.h"
#include "rf_test.h"

static atomic_int runs;
static int fail_next; /* attempts still to fail; written only between calls */
static int payload;

static int init_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&runs, 1);
  if (fail_next > 0) {
    fail_next--;
    return RF_EIO;
  }
  payload = 42;
  return 0;
}

static void reset_counters(void) {
  atomic_store(&runs, 0);
  fail_next = 0;
  payload = 0;
}

static void test_runs_once(void **state) {
  (void)state;
  static rf_once_t o = RF_ONCE_INIT;
  reset_counters();
  assert_false(rf_once_done(&o));
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rf_once_call(&o, init_fn, NULL), 0);
  }
  assert_int_equal(atomic_load(&runs), 1);
  assert_int_equal(payload, 42);
  assert_true(rf_once_done(&o));
}

static void test_failure_not_cached(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  reset_counters();
  fail_next = 2;
  assert_int_equal(rf_once_call(&o, init_fn, NULL), RF_EIO);
  assert_false(rf_once_done(&o));
  assert_int_equal(rf_once_call(&o, init_fn, NULL), RF_EIO);
  assert_int_equal(rf_once_call(&o, init_fn, NULL), 0);
  assert_int_equal(rf_once_call(&o, init_fn, NULL), 0);
  assert_int_equal(atomic_load(&runs), 3);
  assert_true(rf_once_done(&o));
}

static int positive_fn(void *arg) {
  (void)arg;
  return 7;
}

static void test_positive_is_eload(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  assert_int_equal(rf_once_call(&o, positive_fn, NULL), RF_ELOAD);
  assert_false(rf_once_done(&o));
}

typedef struct {
  int calls;
  int status;
} cb_rec;

static void record_cb(int status, void *arg) {
  cb_rec *r = arg;
  r->calls++;
  r->status = status;
}

static void test_cb_form(void **state) {
  (void)state;
  rf_once_t o;
  assert_int_equal(rf_once_init(&o), 0);
  reset_counters();
  fail_next = 1;
  cb_rec r = {0, 1};
  assert_int_equal(rf_once_call_cb(&o, init_fn, NULL, record_cb, &r), 0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, RF_EIO);
  assert_int_equal(rf_once_call_cb(&o, init_fn, NULL, record_cb, &r), 0);
  assert_int_equal(r.calls, 2);
  assert_int_equal(r.status, 0);
  /* done: cb(0) synchronously, fn not run again */
  assert_int_equal(rf_once_call_cb(&o, init_fn, NULL, record_cb, &r), 0);
  assert_int_equal(r.calls, 3);
  assert_int_equal(r.status, 0);
  assert_int_equal(atomic_load(&runs), 2);
}

static int recursive_fn(void *arg) {
  rf_once_t *o = arg;
  int rc = rf_once_call(o, init_fn, NULL);
  cb_rec r = {0, 0};
  int rc2 = rf_once_call_cb(o, init_fn, NULL, record_cb, &r);
  return rc == RF_ESTATE && rc2 == RF_ESTATE && r.calls == 0 ? 0 : RF_EINTERNAL;
}

static void test_recursion_refused(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  reset_counters();
  assert_int_equal(rf_once_call(&o, recursive_fn, &o), 0);
  assert_int_equal(atomic_load(&runs), 0);
  assert_true(rf_once_done(&o));
}

static void test_reset(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  reset_counters();
  assert_int_equal(rf_once_call(&o, init_fn, NULL), 0);
  rf_once_reset(&o);
  assert_false(rf_once_done(&o));
  assert_int_equal(rf_once_call(&o, init_fn, NULL), 0);
  assert_int_equal(atomic_load(&runs), 2);
}

static void test_bad_input(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  cb_rec r = {0, 0};
  assert_int_equal(rf_once_call(NULL, init_fn, NULL), RF_EINVAL);
  assert_int_equal(rf_once_call(&o, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_once_call_cb(NULL, init_fn, NULL, record_cb, &r), RF_EINVAL);
  assert_int_equal(rf_once_call_cb(&o, NULL, NULL, record_cb, &r), RF_EINVAL);
  assert_int_equal(rf_once_call_cb(&o, init_fn, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(r.calls, 0);
  assert_int_equal(rf_once_init(NULL), RF_EINVAL);
  assert_false(rf_once_done(NULL));
  rf_once_reset(NULL);
}

/* An attempt parked inside fn, for the tests that need one running. */
static int parked_fn(void *arg) {
  (void)arg;
  atomic_fetch_add(&runs, 1);
  RF_HOOK("test.once.fn");
  return 0;
}

static void *run_parked(void *arg) {
  return (void *)(intptr_t)rf_once_call(arg, parked_fn, NULL);
}

static void test_alloc_failure_and_reset_while_running(void **state) {
  (void)state;
  rf_once_t o = RF_ONCE_INIT;
  reset_counters();
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("test.once.fn", 1), 0);
  pthread_t a = rf_test_spawn(run_parked, &o);
  RF_ASSERT_PARKED("test.once.fn", 1);

  /* Queueing a callback needs a node: make that allocation fail. */
  cb_rec r = {0, 0};
  rf_test_fail_alloc_after(0);
  assert_int_equal(rf_once_call_cb(&o, parked_fn, NULL, record_cb, &r), RF_ENOMEM);
  rf_test_fail_alloc_after(-1);
  assert_int_equal(r.calls, 0);

  /* Reset while running changes nothing. */
  rf_once_reset(&o);
  assert_int_equal(rf_once_call_cb(&o, parked_fn, NULL, record_cb, &r), 0);
  assert_int_equal(r.calls, 0); /* queued */

  rf_hook_release("test.once.fn", 1);
  assert_int_equal((int)(intptr_t)rf_test_join(a), 0);
  assert_int_equal(r.calls, 1); /* run by A before it returned */
  assert_int_equal(r.status, 0);
  assert_true(rf_once_done(&o));
  assert_int_equal(atomic_load(&runs), 1);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_runs_once),
      cmocka_unit_test(test_failure_not_cached),
      cmocka_unit_test(test_positive_is_eload),
      cmocka_unit_test(test_cb_form),
      cmocka_unit_test(test_recursion_refused),
      cmocka_unit_test(test_reset),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_alloc_failure_and_reset_while_running),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
