/* test_hook.c - the hook points themselves: park, release, fail, reset. */
#include <stdatomic.h>

#include "rf_test.h"

static atomic_int passed;

static void *pass_point(void *arg) {
  (void)arg;
  RF_HOOK("test.point");
  atomic_fetch_add(&passed, 1);
  return NULL;
}

static void test_park_and_release(void **state) {
  (void)state;
  rf_hook_reset();
  atomic_store(&passed, 0);
  assert_int_equal(rf_hook_arm("test.point", 1), 0);
  pthread_t a = rf_test_spawn(pass_point, NULL);
  RF_ASSERT_PARKED("test.point", 1);
  /* B is not caught by the trap set for A. */
  pthread_t b = rf_test_spawn(pass_point, NULL);
  rf_test_join(b);
  assert_int_equal(atomic_load(&passed), 1);
  assert_int_equal(rf_hook_release("test.point", 1), 0);
  rf_test_join(a);
  assert_int_equal(atomic_load(&passed), 2);
  assert_int_equal(rf_hook_hits("test.point"), 2);
  rf_hook_reset();
}

static void test_fail_point(void **state) {
  (void)state;
  rf_hook_reset();
  assert_false(RF_HOOK_FAIL("test.fail"));
  assert_int_equal(rf_hook_fail("test.fail", 2), 0);
  assert_true(RF_HOOK_FAIL("test.fail"));
  assert_true(RF_HOOK_FAIL("test.fail"));
  assert_false(RF_HOOK_FAIL("test.fail"));
  rf_hook_reset();
}

static void test_bad_args(void **state) {
  (void)state;
  assert_int_equal(rf_hook_arm(NULL, 1), RF_EINVAL);
  assert_int_equal(rf_hook_arm("x", 0), RF_EINVAL);
  assert_int_equal(
      rf_hook_arm("0123456789012345678901234567890123456789012345678901234567890123456789", 1),
      RF_EINVAL);
  assert_int_equal(rf_hook_release("never.armed", 1), RF_ENOENT);
  assert_int_equal(rf_hook_wait_parked("never.armed", 1, 10), RF_ETIMEDOUT);
  assert_true(rf_hook_enabled());
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_park_and_release),
      cmocka_unit_test(test_fail_point),
      cmocka_unit_test(test_bad_args),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
