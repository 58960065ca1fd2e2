/* test_errors.c - the error convention: every code has a name and a text. */
#include <string.h>

#include "rf_test.h"

static void test_every_code_named(void **state) {
  (void)state;
  for (int code = RF_ERRNO_MIN; code < 0; code++) {
    assert_string_not_equal(rf_err_name(code), "RF_EUNKNOWN");
    assert_string_not_equal(rf_strerror(code), "unknown error");
  }
  assert_string_equal(rf_err_name(RF_OK), "RF_OK");
  assert_string_equal(rf_err_name(RF_EBUSY), "RF_EBUSY");
}

static void test_unknown_codes(void **state) {
  (void)state;
  assert_string_equal(rf_strerror(RF_ERRNO_MIN - 1), "unknown error");
  assert_string_equal(rf_strerror(1), "unknown error");
  assert_string_equal(rf_err_name(12345), "RF_EUNKNOWN");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_named),
      cmocka_unit_test(test_unknown_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
