/* test_retry.c - backoff bounds, budget, reproducibility, overflow safety. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "rf_test.h"
#include "racefree/retry.h"

static void test_bad_input(void **state) {
  (void)state;
  rf_retry_t r;
  rf_retry_policy_t ok = {.max_attempts = 3, .base_ms = 10, .cap_ms = 100, .seed = 1};
  rf_retry_policy_t zero_attempts = {.max_attempts = 0, .base_ms = 10, .cap_ms = 100};
  rf_retry_policy_t zero_cap = {.max_attempts = 3, .base_ms = 10, .cap_ms = 0};
  uint64_t d = 0;
  assert_int_equal(rf_retry_init(NULL, &ok), RF_EINVAL);
  assert_int_equal(rf_retry_init(&r, NULL), RF_EINVAL);
  assert_int_equal(rf_retry_init(&r, &zero_attempts), RF_EINVAL);
  assert_int_equal(rf_retry_init(&r, &zero_cap), RF_EINVAL);
  assert_int_equal(rf_retry_next(NULL, &d), RF_EINVAL);
  assert_int_equal(rf_retry_init(&r, &ok), 0);
  assert_int_equal(rf_retry_next(&r, NULL), RF_EINVAL);
  assert_int_equal(rf_retry_ceiling(NULL, 3), 0);
  assert_int_equal(rf_retry_run(NULL, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_retry_run(&ok, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_retry_run(&zero_cap, NULL, NULL, NULL), RF_EINVAL);
}

static void test_same_seed_same_sequence(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 64, .base_ms = 3, .cap_ms = 100000, .seed = 12345};
  rf_retry_t a, b, c;
  assert_int_equal(rf_retry_init(&a, &p), 0);
  assert_int_equal(rf_retry_init(&b, &p), 0);
  p.seed = 12346;
  assert_int_equal(rf_retry_init(&c, &p), 0);
  int differ = 0;
  for (int i = 0; i < 63; i++) {
    uint64_t da, db, dc;
    assert_int_equal(rf_retry_next(&a, &da), 0);
    assert_int_equal(rf_retry_next(&b, &db), 0);
    assert_int_equal(rf_retry_next(&c, &dc), 0);
    assert_int_equal(da, db);
    differ += da != dc;
  }
  assert_true(differ > 50); /* a neighbouring seed gives an unrelated sequence */
}

static void test_auto_seeds_differ(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 2, .base_ms = 1, .cap_ms = 1, .seed = 0};
  rf_retry_t a, b;
  assert_int_equal(rf_retry_init(&a, &p), 0);
  assert_int_equal(rf_retry_init(&b, &p), 0);
  assert_true(a.rng != b.rng);
  assert_int_equal(a.policy.seed, 0);
}

static void test_delays_within_bounds(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 2000, .base_ms = 1, .cap_ms = 1000, .seed = 99};
  rf_retry_t r;
  assert_int_equal(rf_retry_init(&r, &p), 0);
  for (unsigned i = 0; i < 1999; i++) {
    uint64_t ceiling = rf_retry_ceiling(&p, r.attempt);
    assert_int_equal(ceiling, i < 10 ? (1u << i) : 1000u);
    uint64_t d;
    assert_int_equal(rf_retry_next(&r, &d), 0);
    assert_true(d <= ceiling);
  }
}

static void test_uniform_full_range(void **state) {
  (void)state;
  /* Full jitter: the whole window [0, ceiling] is used, mean ~ ceiling/2. */
  rf_retry_policy_t p = {.max_attempts = 2, .base_ms = 100, .cap_ms = 100, .seed = 7};
  uint64_t sum = 0, min = UINT64_MAX, max = 0;
  const int n = 20000;
  for (int i = 0; i < n; i++) {
    rf_retry_t r;
    p.seed = (uint64_t)i + 1;
    assert_int_equal(rf_retry_init(&r, &p), 0);
    uint64_t d;
    assert_int_equal(rf_retry_next(&r, &d), 0);
    assert_true(d <= 100);
    sum += d;
    min = d < min ? d : min;
    max = d > max ? d : max;
  }
  assert_int_equal(min, 0);
  assert_int_equal(max, 100);
  double mean = (double)sum / n;
  assert_true(mean > 48.0 && mean < 52.0);
}

static void test_budget(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 5, .base_ms = 1, .cap_ms = 10, .seed = 1};
  rf_retry_t r;
  uint64_t d;
  assert_int_equal(rf_retry_init(&r, &p), 0);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(rf_retry_next(&r, &d), 0);
  }
  d = 777;
  assert_int_equal(rf_retry_next(&r, &d), RF_ERANGE);
  assert_int_equal(rf_retry_next(&r, &d), RF_ERANGE);
  assert_int_equal(d, 777); /* not written on error */
  assert_int_equal(r.attempt, 4);

  p.max_attempts = 1; /* no retry at all */
  assert_int_equal(rf_retry_init(&r, &p), 0);
  assert_int_equal(rf_retry_next(&r, &d), RF_ERANGE);
}

static void test_overflow_safe(void **state) {
  (void)state;
  rf_retry_policy_t p = {
      .max_attempts = UINT_MAX, .base_ms = UINT64_MAX / 3, .cap_ms = UINT64_MAX - 1, .seed = 5};
  assert_int_equal(rf_retry_ceiling(&p, 0), UINT64_MAX / 3);
  assert_int_equal(rf_retry_ceiling(&p, 1), (UINT64_MAX / 3) << 1);
  assert_int_equal(rf_retry_ceiling(&p, 2), UINT64_MAX - 1); /* would overflow: saturates */
  assert_int_equal(rf_retry_ceiling(&p, 63), UINT64_MAX - 1);
  assert_int_equal(rf_retry_ceiling(&p, 64), UINT64_MAX - 1);
  assert_int_equal(rf_retry_ceiling(&p, 1000000000u), UINT64_MAX - 1);
  assert_int_equal(rf_retry_ceiling(&p, UINT_MAX), UINT64_MAX - 1);

  rf_retry_policy_t q = {.max_attempts = UINT_MAX, .base_ms = 1, .cap_ms = 30000, .seed = 5};
  assert_int_equal(rf_retry_ceiling(&q, 62), 30000);
  assert_int_equal(rf_retry_ceiling(&q, 63), 30000);
  assert_int_equal(rf_retry_ceiling(&q, 64), 30000);
  assert_int_equal(rf_retry_ceiling(&q, 65), 30000);

  /* Deep into the budget: still within cap. */
  rf_retry_t r;
  assert_int_equal(rf_retry_init(&r, &q), 0);
  r.attempt = UINT_MAX - 3;
  uint64_t d;
  assert_int_equal(rf_retry_next(&r, &d), 0);
  assert_true(d <= 30000);
  assert_int_equal(rf_retry_next(&r, &d), 0);
  assert_int_equal(rf_retry_next(&r, &d), RF_ERANGE);

  /* The full 64-bit window (cap UINT64_MAX) is handled too. */
  rf_retry_policy_t w = {.max_attempts = 100, .base_ms = 1, .cap_ms = UINT64_MAX, .seed = 3};
  assert_int_equal(rf_retry_init(&r, &w), 0);
  for (int i = 0; i < 99; i++) {
    assert_int_equal(rf_retry_next(&r, &d), 0);
  }
  assert_int_equal(rf_retry_ceiling(&w, 70), UINT64_MAX);
}

static void test_zero_base(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 100, .base_ms = 0, .cap_ms = 1000, .seed = 2};
  rf_retry_t r;
  uint64_t d;
  assert_int_equal(rf_retry_init(&r, &p), 0);
  for (int i = 0; i < 99; i++) {
    assert_int_equal(rf_retry_next(&r, &d), 0);
    assert_int_equal(d, 0);
  }
}

typedef struct {
  int fail_times;
  int fail_status;
  unsigned calls;
  unsigned last_attempt;
} op_state;

static int flaky_op(void *arg, unsigned attempt) {
  op_state *s = arg;
  assert_int_equal(attempt, s->calls);
  s->calls++;
  s->last_attempt = attempt;
  return (int)s->calls <= s->fail_times ? s->fail_status : 0;
}

static bool only_conflict(int status) {
  return status == RF_ECONFLICT;
}

static void test_run(void **state) {
  (void)state;
  rf_retry_policy_t p = {.max_attempts = 5, .base_ms = 1, .cap_ms = 2, .seed = 11};
  op_state s = {.fail_times = 3, .fail_status = RF_ECONFLICT};
  assert_int_equal(rf_retry_run(&p, flaky_op, &s, only_conflict), 0);
  assert_int_equal(s.calls, 4);

  /* Budget spent: the last status comes back, after exactly max_attempts. */
  s = (op_state){.fail_times = 100, .fail_status = RF_ECONFLICT};
  assert_int_equal(rf_retry_run(&p, flaky_op, &s, only_conflict), RF_ECONFLICT);
  assert_int_equal(s.calls, 5);
  assert_int_equal(s.last_attempt, 4);

  /* Not retryable: returned at once. */
  s = (op_state){.fail_times = 100, .fail_status = RF_EINVAL};
  assert_int_equal(rf_retry_run(&p, flaky_op, &s, only_conflict), RF_EINVAL);
  assert_int_equal(s.calls, 1);

  /* NULL predicate: every failure is retried. */
  s = (op_state){.fail_times = 2, .fail_status = RF_EIO};
  assert_int_equal(rf_retry_run(&p, flaky_op, &s, NULL), 0);
  assert_int_equal(s.calls, 3);
}

static void test_run_sleeps_backoff(void **state) {
  (void)state;
  /* base 20, cap 20, seed chosen arbitrarily: total sleep is the sum of the
   * delays rf_retry_next would give with the same seed. */
  rf_retry_policy_t p = {.max_attempts = 4, .base_ms = 20, .cap_ms = 20, .seed = 4242};
  rf_retry_t r;
  uint64_t expect = 0, d;
  assert_int_equal(rf_retry_init(&r, &p), 0);
  while (rf_retry_next(&r, &d) == 0) {
    expect += d;
  }
  op_state s = {.fail_times = 100, .fail_status = RF_EAGAIN};
  uint64_t t0 = rf_test_now_ms();
  assert_int_equal(rf_retry_run(&p, flaky_op, &s, NULL), RF_EAGAIN);
  uint64_t took = rf_test_now_ms() - t0;
  assert_true(took + 1 >= expect);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_same_seed_same_sequence),
      cmocka_unit_test(test_auto_seeds_differ),
      cmocka_unit_test(test_delays_within_bounds),
      cmocka_unit_test(test_uniform_full_range),
      cmocka_unit_test(test_budget),
      cmocka_unit_test(test_overflow_safe),
      cmocka_unit_test(test_zero_base),
      cmocka_unit_test(test_run),
      cmocka_unit_test(test_run_sleeps_backoff),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
