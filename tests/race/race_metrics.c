/* race_metrics.c - the article's `count++` race, forced deterministically.
 *
 * Each test drives a naive twin and the real code through the same bad
 * interleaving with named hooks: thread A is parked inside its update
 * (after it read the old value), thread B runs a whole update, A is released.
 * The naive twin loses B's update - proof that the test can fail - and the
 * real code does not.
 *
 * The twins use relaxed atomic loads and stores for their shared words, so
 * the race is a logic race (lost update), not a C data race: TSan stays
 * quiet and there is no undefined behaviour.
 */
#include <stdatomic.h>
#include <string.h>

#include "racefree/metrics.h"
#include "rf_test.h"

/* ------------------------------------------------------------ naive twins */

/* count++ as three steps: read, (hook), write back. */
typedef struct {
  _Atomic uint64_t v;
} naive_counter_t;

static void naive_counter_inc(naive_counter_t *c) {
  uint64_t v = atomic_load_explicit(&c->v, memory_order_relaxed);
  RF_HOOK("metrics.naive.after_read");
  atomic_store_explicit(&c->v, v + 1, memory_order_relaxed);
}

/* sum += x on a double kept as bits, without the CAS loop. */
typedef struct {
  _Atomic uint64_t bits;
} naive_sum_t;

static void naive_sum_add(naive_sum_t *s, double x) {
  uint64_t old = atomic_load_explicit(&s->bits, memory_order_relaxed);
  double d;
  memcpy(&d, &old, sizeof(d));
  d += x;
  RF_HOOK("metrics.naive.sum_after_read");
  memcpy(&old, &d, sizeof(d));
  atomic_store_explicit(&s->bits, old, memory_order_relaxed);
}

static double naive_sum_value(naive_sum_t *s) {
  uint64_t b = atomic_load_explicit(&s->bits, memory_order_relaxed);
  double d;
  memcpy(&d, &b, sizeof(d));
  return d;
}

/* Registration as "look up; if missing, append" without re-checking. */
typedef struct {
  _Atomic int n;
  char names[4][16];
  pthread_mutex_t mu;
} naive_registry_t;

static int naive_register(naive_registry_t *r, const char *name) {
  int n = atomic_load_explicit(&r->n, memory_order_relaxed);
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < n; i++) {
    if (strcmp(r->names[i], name) == 0) {
      pthread_mutex_unlock(&r->mu);
      return i;
    }
  }
  pthread_mutex_unlock(&r->mu);
  RF_HOOK("metrics.naive.register_after_lookup");
  pthread_mutex_lock(&r->mu); /* locked append, but the check is stale */
  n = atomic_load_explicit(&r->n, memory_order_relaxed);
  strcpy(r->names[n], name);
  atomic_store_explicit(&r->n, n + 1, memory_order_relaxed);
  pthread_mutex_unlock(&r->mu);
  return n;
}

/* ------------------------------------------------------------ drivers */

static void *run_naive_inc(void *arg) {
  naive_counter_inc(arg);
  return NULL;
}

static void *run_counter_inc(void *arg) {
  rf_counter_inc(arg);
  return NULL;
}

/* A parked after its read, B increments, A released. */
static void interleave(const char *hook, void *(*fn)(void *), void *arg) {
  rf_hook_reset();
  assert_int_equal(rf_hook_arm(hook, 1), 0);
  pthread_t a = rf_test_spawn(fn, arg);
  RF_ASSERT_PARKED(hook, 1);
  pthread_t b = rf_test_spawn(fn, arg); /* not caught: only one was armed */
  rf_test_join(b);
  assert_int_equal(rf_hook_release(hook, 1), 0);
  rf_test_join(a);
  assert_int_equal(rf_hook_hits(hook), 2);
  rf_hook_reset();
}

static void test_naive_counter_loses_increment(void **state) {
  (void)state;
  naive_counter_t c = {0};
  interleave("metrics.naive.after_read", run_naive_inc, &c);
  assert_int_equal(atomic_load(&c.v), 1); /* two increments, one survived */
}

static void test_counter_keeps_increment(void **state) {
  (void)state;
  for (unsigned flags = 0; flags <= RF_COUNTER_SHARDED; flags++) {
    rf_metrics_t *m = NULL;
    rf_counter_t *c = NULL;
    assert_int_equal(rf_metrics_create(&m, 4, 0), 0);
    assert_int_equal(rf_metrics_counter(m, "c_total", NULL, NULL, flags, &c), 0);
    interleave("metrics.counter.before_add", run_counter_inc, c);
    assert_int_equal(rf_counter_value(c), 2);
    rf_metrics_destroy(m);
  }
}

static void test_counter_keeps_increment_shared(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  rf_counter_t *c = NULL;
  assert_int_equal(rf_metrics_create(&m, 4, RF_METRICS_SHARED), 0);
  assert_int_equal(rf_metrics_counter(m, "c_total", NULL, NULL, RF_COUNTER_SHARDED, &c), 0);
  interleave("metrics.counter.before_add", run_counter_inc, c);
  assert_int_equal(rf_counter_value(c), 2);
  rf_metrics_destroy(m);
}

typedef struct {
  naive_sum_t *naive;
  rf_histogram_t *h;
  double x;
} sum_arg_t;

static void *run_naive_sum(void *arg) {
  sum_arg_t *a = arg;
  naive_sum_add(a->naive, a->x);
  return NULL;
}

static void *run_observe(void *arg) {
  sum_arg_t *a = arg;
  rf_histogram_observe(a->h, a->x);
  return NULL;
}

static void test_naive_sum_loses_observation(void **state) {
  (void)state;
  naive_sum_t s = {0};
  sum_arg_t arg = {&s, NULL, 1.5};
  interleave("metrics.naive.sum_after_read", run_naive_sum, &arg);
  assert_true(naive_sum_value(&s) == 1.5); /* 1.5 + 1.5 gave 1.5 */
}

static void test_histogram_sum_cas_retries(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  rf_histogram_t *h = NULL;
  double bounds[] = {1, 2};
  assert_int_equal(rf_metrics_create(&m, 4, 0), 0);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, bounds, 2, &h), 0);
  sum_arg_t arg = {NULL, h, 1.5};
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("metrics.histogram.before_cas", 1), 0);
  pthread_t a = rf_test_spawn(run_observe, &arg);
  RF_ASSERT_PARKED("metrics.histogram.before_cas", 1);
  pthread_t b = rf_test_spawn(run_observe, &arg);
  rf_test_join(b);
  assert_int_equal(rf_hook_release("metrics.histogram.before_cas", 1), 0);
  rf_test_join(a);
  /* A's CAS failed once (B changed the sum) and it retried: 3 passes. */
  assert_int_equal(rf_hook_hits("metrics.histogram.before_cas"), 3);
  rf_hook_reset();
  assert_true(rf_histogram_sum(h) == 3.0);
  assert_int_equal(rf_histogram_count(h), 2);
  uint64_t n = 0;
  assert_int_equal(rf_histogram_bucket(h, 1, &n), 0);
  assert_int_equal(n, 2);
  rf_metrics_destroy(m);
}

typedef struct {
  naive_registry_t *naive;
  rf_metrics_t *m;
  rf_counter_t *got;
  int rc;
  int naive_got;
} reg_arg_t;

static void *run_naive_register(void *arg) {
  reg_arg_t *a = arg;
  a->naive_got = naive_register(a->naive, "req_total");
  return NULL;
}

static void *run_register(void *arg) {
  reg_arg_t *a = arg;
  a->rc = rf_metrics_counter(a->m, "req_total", NULL, "r=\"/\"", 0, &a->got);
  return NULL;
}

/* Two threads register the same name; A is parked between its (missed)
 * lookup and its insert while B registers. */
static void race_register(const char *hook, void *(*fn)(void *), reg_arg_t *ra, reg_arg_t *rb) {
  rf_hook_reset();
  assert_int_equal(rf_hook_arm(hook, 1), 0);
  pthread_t a = rf_test_spawn(fn, ra);
  RF_ASSERT_PARKED(hook, 1);
  pthread_t b = rf_test_spawn(fn, rb);
  rf_test_join(b);
  assert_int_equal(rf_hook_release(hook, 1), 0);
  rf_test_join(a);
  rf_hook_reset();
}

static void test_naive_register_duplicates(void **state) {
  (void)state;
  naive_registry_t r = {.n = 0};
  pthread_mutex_init(&r.mu, NULL);
  reg_arg_t a = {.naive = &r};
  reg_arg_t b = {.naive = &r};
  race_register("metrics.naive.register_after_lookup", run_naive_register, &a, &b);
  assert_int_equal(atomic_load(&r.n), 2); /* the same name twice */
  assert_int_not_equal(a.naive_got, b.naive_got);
  pthread_mutex_destroy(&r.mu);
}

static void test_register_is_idempotent_under_race(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 4, RF_METRICS_SHARED), 0);
  reg_arg_t a = {.m = m};
  reg_arg_t b = {.m = m};
  race_register("metrics.register.after_lookup", run_register, &a, &b);
  assert_int_equal(a.rc, 0);
  assert_int_equal(b.rc, 0);
  assert_non_null(a.got);
  assert_ptr_equal(a.got, b.got);
  assert_int_equal(rf_metrics_series_count(m), 1);
  rf_metrics_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_counter_loses_increment),
      cmocka_unit_test(test_counter_keeps_increment),
      cmocka_unit_test(test_counter_keeps_increment_shared),
      cmocka_unit_test(test_naive_sum_loses_observation),
      cmocka_unit_test(test_histogram_sum_cas_retries),
      cmocka_unit_test(test_naive_register_duplicates),
      cmocka_unit_test(test_register_is_idempotent_under_race),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
