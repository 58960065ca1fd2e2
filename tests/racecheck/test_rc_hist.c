/* test_rc_hist.c - the latency histogram against a sorted reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>

#include <cmocka.h>

#include "hist.h"
#include "rc.h"

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* nearest-rank percentile of a sorted array */
static uint64_t ref_pct(const uint64_t *v, size_t n, double p) {
  if (p <= 0) {
    return v[0];
  }
  if (p >= 100) {
    return v[n - 1];
  }
  double r = p / 100.0 * (double)n;
  size_t rank = (size_t)r;
  if ((double)rank < r) {
    rank++;
  }
  if (rank < 1) {
    rank = 1;
  }
  return v[rank - 1];
}

static void check_against_reference(uint64_t *v, size_t n) {
  rc_hist_t *h = malloc(sizeof *h);
  rc_hist_init(h);
  for (size_t i = 0; i < n; i++) {
    rc_hist_record(h, v[i]);
  }
  qsort(v, n, sizeof *v, cmp_u64);
  assert_int_equal(h->count, n);
  assert_int_equal(h->min, v[0]);
  assert_int_equal(h->max, v[n - 1]);
  static const double ps[] = {0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
    uint64_t ref = ref_pct(v, n, ps[i]);
    uint64_t got = rc_hist_percentile(h, ps[i]);
    /* never below the true value, above it by at most the bucket width */
    assert_true(got >= ref);
    assert_true(got - ref <= ref / RC_HIST_SUB + 1);
  }
  free(h);
}

static void test_uniform(void **state) {
  (void)state;
  rc_rng_t rng;
  rc_rng_seed(&rng, 1);
  size_t n = 100000;
  uint64_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    v[i] = (uint64_t)rc_rng_range(&rng, 0, 5000000);
  }
  check_against_reference(v, n);
  free(v);
}

static void test_long_tail(void **state) {
  (void)state;
  rc_rng_t rng;
  rc_rng_seed(&rng, 2);
  size_t n = 50000;
  uint64_t *v = malloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    /* log-uniform over 1 us .. 100 s: every bucket scale gets samples */
    double e = rc_rng_double(&rng) * 8.0;
    v[i] = (uint64_t)pow(10.0, e);
  }
  check_against_reference(v, n);
  free(v);
}

static void test_small_values_exact(void **state) {
  (void)state;
  uint64_t v[] = {0, 1, 2, 3, 250, 255, 100, 17};
  size_t n = sizeof v / sizeof v[0];
  rc_hist_t *h = malloc(sizeof *h);
  rc_hist_init(h);
  for (size_t i = 0; i < n; i++) {
    rc_hist_record(h, v[i]);
  }
  qsort(v, n, sizeof *v, cmp_u64);
  for (int p = 1; p <= 100; p++) {
    assert_int_equal(rc_hist_percentile(h, p), ref_pct(v, n, p));
  }
  free(h);
}

static void test_buckets(void **state) {
  (void)state;
  /* every value lies inside its bucket, buckets are contiguous */
  uint64_t prev_high = 0;
  for (uint32_t i = 0; i < RC_HIST_BUCKETS; i++) {
    uint64_t lo = rc_hist_bucket_low(i), hi = rc_hist_bucket_high(i);
    assert_true(lo <= hi);
    if (i > 0) {
      assert_int_equal(lo, prev_high + 1);
    }
    assert_int_equal(rc_hist_index(lo), i);
    assert_int_equal(rc_hist_index(hi), i);
    prev_high = hi;
  }
  assert_int_equal(prev_high, RC_HIST_MAX);
  assert_int_equal(rc_hist_index(UINT64_MAX), RC_HIST_BUCKETS - 1);
}

static void test_merge_and_empty(void **state) {
  (void)state;
  rc_hist_t *a = malloc(sizeof *a), *b = malloc(sizeof *b), *all = malloc(sizeof *all);
  rc_hist_init(a);
  rc_hist_init(b);
  rc_hist_init(all);
  assert_int_equal(rc_hist_percentile(a, 99), 0);
  assert_true(rc_hist_mean(a) == 0.0);
  for (uint64_t i = 1; i <= 1000; i++) {
    rc_hist_record(i % 2 ? a : b, i * 37);
    rc_hist_record(all, i * 37);
  }
  rc_hist_merge(a, b);
  assert_int_equal(a->count, all->count);
  for (int p = 0; p <= 100; p += 5) {
    assert_int_equal(rc_hist_percentile(a, p), rc_hist_percentile(all, p));
  }
  assert_true(rc_hist_mean(a) == rc_hist_mean(all));
  rc_hist_record(a, UINT64_MAX); /* clamped, never out of range */
  assert_int_equal(a->max, RC_HIST_MAX);
  free(a);
  free(b);
  free(all);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_uniform),
      cmocka_unit_test(test_long_tail),
      cmocka_unit_test(test_small_values_exact),
      cmocka_unit_test(test_buckets),
      cmocka_unit_test(test_merge_and_empty),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
