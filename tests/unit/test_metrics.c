/* test_metrics.c - the metrics registry: registration and idempotency, the
 * exact exposition of a small registry, histogram buckets, bad input,
 * capacity limits, allocation-failure torture and the robust lock of a
 * shared registry (a process dying while holding it). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "metrics_internal.h"
#include "racefree/metrics.h"
#include "rf_test.h"

static void test_create_bad_args(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(NULL, 8, 0), RF_EINVAL);
  assert_int_equal(rf_metrics_create(&m, 0, 0), RF_EINVAL);
  assert_int_equal(rf_metrics_create(&m, RF_METRICS_MAX_SERIES + 1, 0), RF_EINVAL);
  assert_int_equal(rf_metrics_create(&m, (size_t)-1, 0), RF_EINVAL);
  assert_int_equal(rf_metrics_create(&m, 8, 2u), RF_EINVAL);
  assert_int_equal(rf_metrics_create_ex(&m, NULL), RF_EINVAL);
  rf_metrics_opts_t big = {.max_series = 8, .arena_bytes = (size_t)1 << 33, .flags = 0};
  assert_int_equal(rf_metrics_create_ex(&m, &big), RF_ENOMEM);
  assert_null(m);
  rf_metrics_destroy(NULL);
  assert_int_equal(rf_metrics_series_count(NULL), 0);
}

static void test_register_idempotent(void **state) {
  (void)state;
  for (unsigned mode = 0; mode < 2; mode++) {
    rf_metrics_t *m = NULL;
    assert_int_equal(rf_metrics_create(&m, 16, mode == 0 ? 0 : RF_METRICS_SHARED), 0);
    rf_counter_t *a = NULL, *a2 = NULL, *b = NULL, *c = NULL, *sh = NULL, *sh2 = NULL;
    assert_int_equal(rf_metrics_counter(m, "req_total", "Requests.", "a=\"1\",b=\"2\"", 0, &a), 0);
    assert_int_equal(rf_metrics_counter(m, "req_total", "other help", "a=\"1\",b=\"2\"", 0, &a2),
                     0);
    assert_ptr_equal(a, a2);
    /* The same label set written in another order is the same series. */
    assert_int_equal(rf_metrics_counter(m, "req_total", NULL, "b=\"2\",a=\"1\"", 0, &a2), 0);
    assert_ptr_equal(a, a2);
    assert_int_equal(rf_metrics_counter(m, "req_total", NULL, "a=\"2\",b=\"2\"", 0, &b), 0);
    assert_ptr_not_equal(a, b);
    /* No labels: NULL and "" are the same series. */
    assert_int_equal(rf_metrics_counter(m, "req_total", NULL, NULL, 0, &c), 0);
    assert_int_equal(rf_metrics_counter(m, "req_total", NULL, "", 0, &a2), 0);
    assert_ptr_equal(c, a2);
    assert_int_equal(rf_metrics_series_count(m), 3);

    /* Conflicting definitions. */
    rf_gauge_t *g = NULL;
    assert_int_equal(rf_metrics_gauge(m, "req_total", NULL, "x=\"1\"", &g), RF_EEXIST);
    assert_int_equal(rf_metrics_counter(m, "req_total", NULL, NULL, RF_COUNTER_SHARDED, &a2),
                     RF_EEXIST);
    assert_int_equal(rf_metrics_counter(m, "hot_total", NULL, NULL, RF_COUNTER_SHARDED, &sh), 0);
    assert_int_equal(rf_metrics_counter(m, "hot_total", NULL, NULL, RF_COUNTER_SHARDED, &sh2), 0);
    assert_ptr_equal(sh, sh2);
    double b1[] = {1, 2};
    double b2[] = {1, 3};
    rf_histogram_t *h = NULL, *h2 = NULL;
    assert_int_equal(rf_metrics_histogram(m, "lat", NULL, NULL, b1, 2, &h), 0);
    assert_int_equal(rf_metrics_histogram(m, "lat", NULL, NULL, b1, 2, &h2), 0);
    assert_ptr_equal(h, h2);
    assert_int_equal(rf_metrics_histogram(m, "lat", NULL, NULL, b2, 2, &h2), RF_EEXIST);
    assert_int_equal(rf_metrics_histogram(m, "lat", NULL, NULL, b1, 1, &h2), RF_EEXIST);
    assert_int_equal(rf_metrics_series_count(m), 5);

    rf_counter_inc(a);
    rf_counter_add(a, 41);
    rf_counter_add(sh, 7);
    rf_counter_inc(sh2);
    assert_int_equal(rf_counter_value(a), 42);
    assert_int_equal(rf_counter_value(sh), 8);
    assert_int_equal(rf_counter_value(b), 0);
    rf_metrics_destroy(m);
  }
}

static void test_bad_input(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 8, 0), 0);
  rf_counter_t *c = NULL;
  rf_gauge_t *g = NULL;
  rf_histogram_t *h = NULL;
  const char *bad_names[] = {"", "1abc", "a-b", "a b", "é", "a{b}", "a\"", "ab\n"};
  for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++) {
    assert_int_equal(rf_metrics_counter(m, bad_names[i], NULL, NULL, 0, &c), RF_EINVAL);
  }
  char longname[RF_METRICS_NAME_MAX + 2];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(rf_metrics_counter(m, longname, NULL, NULL, 0, &c), RF_EINVAL);
  longname[RF_METRICS_NAME_MAX] = '\0';
  assert_int_equal(rf_metrics_counter(m, longname, NULL, NULL, 0, &c), 0);
  assert_int_equal(rf_metrics_counter(m, ":colon:ok_1", NULL, NULL, 0, &c), 0);
  assert_int_equal(rf_metrics_counter(m, "_under", NULL, NULL, 0, &c), 0);

  const char *bad_labels[] = {"a=1",        "a=\"1",      "a=\"1\",",        ",a=\"1\"",
                              "a=\"x\\q\"", "a=\"x\ny\"", "__a=\"1\"",       "1a=\"x\"",
                              "a = \"1\"",  "a=\"1\" ",   "a=\"1\",a=\"2\"", "a=\"1\"b=\"2\"",
                              "=\"1\"",     "a=\"1\"\\",  "a=\"trailing\\\""};
  for (size_t i = 0; i < sizeof(bad_labels) / sizeof(bad_labels[0]); i++) {
    assert_int_equal(rf_metrics_counter(m, "x", NULL, bad_labels[i], 0, &c), RF_EINVAL);
  }
  char longlabels[RF_METRICS_LABELS_MAX + 16];
  memset(longlabels, 'v', sizeof(longlabels));
  memcpy(longlabels, "a=\"", 3);
  longlabels[sizeof(longlabels) - 2] = '"';
  longlabels[sizeof(longlabels) - 1] = '\0';
  assert_int_equal(rf_metrics_counter(m, "x", NULL, longlabels, 0, &c), RF_EINVAL);
  char longhelp[RF_METRICS_HELP_MAX + 2];
  memset(longhelp, 'h', sizeof(longhelp) - 1);
  longhelp[sizeof(longhelp) - 1] = '\0';
  assert_int_equal(rf_metrics_counter(m, "x", longhelp, NULL, 0, &c), RF_EINVAL);

  /* NULLs and flags. */
  assert_int_equal(rf_metrics_counter(NULL, "x", NULL, NULL, 0, &c), RF_EINVAL);
  assert_int_equal(rf_metrics_counter(m, NULL, NULL, NULL, 0, &c), RF_EINVAL);
  assert_int_equal(rf_metrics_counter(m, "x", NULL, NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_metrics_counter(m, "x", NULL, NULL, 2u, &c), RF_EINVAL);
  assert_int_equal(rf_metrics_gauge(NULL, "x", NULL, NULL, &g), RF_EINVAL);
  assert_int_equal(rf_metrics_gauge(m, "x", NULL, NULL, NULL), RF_EINVAL);

  /* Histogram bounds. */
  double inc[] = {1, 2, 3};
  double dec[] = {1, 3, 2};
  double dup[] = {1, 1};
  double nan_b[] = {1, NAN};
  double ninf[] = {-INFINITY, 1};
  double pinf_mid[] = {1, INFINITY, 2};
  double many[RF_METRICS_MAX_BOUNDS + 1];
  for (int i = 0; i <= RF_METRICS_MAX_BOUNDS; i++) {
    many[i] = i;
  }
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, dec, 3, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, dup, 2, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, nan_b, 2, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, ninf, 2, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, pinf_mid, 3, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, NULL, 2, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, inc, (size_t)-1, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, many, RF_METRICS_MAX_BOUNDS + 1, &h),
                   RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, "le=\"1\"", inc, 3, &h), RF_EINVAL);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, many, RF_METRICS_MAX_BOUNDS, &h), 0);
  assert_int_equal(rf_metrics_histogram(m, "h0", NULL, NULL, NULL, 0, &h), 0);

  /* Update and read functions tolerate NULL. */
  rf_counter_inc(NULL);
  rf_counter_add(NULL, 3);
  rf_gauge_set(NULL, 1);
  rf_gauge_add(NULL, 1);
  rf_histogram_observe(NULL, 1.0);
  assert_int_equal(rf_counter_value(NULL), 0);
  assert_int_equal(rf_gauge_value(NULL), 0);
  assert_int_equal(rf_histogram_count(NULL), 0);
  assert_true(rf_histogram_sum(NULL) == 0.0);
  uint64_t n = 0;
  assert_int_equal(rf_histogram_bucket(NULL, 0, &n), RF_EINVAL);
  assert_int_equal(rf_histogram_bucket(h, 0, NULL), RF_EINVAL);
  char *text = NULL;
  assert_int_equal(rf_metrics_render(NULL, &text, NULL), RF_EINVAL);
  assert_int_equal(rf_metrics_render(m, NULL, NULL), RF_EINVAL);
  rf_metrics_destroy(m);
}

static void test_render_exact(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 16, 0), 0);
  char *text = NULL;
  size_t len = 99;
  assert_int_equal(rf_metrics_render(m, &text, &len), 0);
  assert_string_equal(text, "");
  assert_int_equal(len, 0);
  free(text);

  rf_counter_t *ok = NULL, *err = NULL;
  rf_gauge_t *g = NULL;
  rf_histogram_t *h = NULL;
  assert_int_equal(rf_metrics_counter(m, "http_requests_total", "Requests.\nAll of them \\o/",
                                      "method=\"GET\",code=\"200\"", 0, &ok),
                   0);
  assert_int_equal(rf_metrics_gauge(m, "inflight", NULL, NULL, &g), 0);
  assert_int_equal(rf_metrics_counter(m, "http_requests_total", "ignored",
                                      "code=\"500\",method=\"GET\"", RF_COUNTER_SHARDED, &err),
                   0);
  char labels[64];
  const char *kv[] = {"route", "/a\"b"};
  assert_int_equal(rf_metrics_labels_render(labels, sizeof(labels), kv, 1), 0);
  double bounds[] = {0.1, 0.5, 1, INFINITY};
  assert_int_equal(rf_metrics_histogram(m, "latency_seconds", "Latency.", labels, bounds, 4, &h),
                   0);
  rf_counter_add(ok, 3);
  rf_counter_inc(err);
  rf_counter_inc(err);
  rf_gauge_set(g, 5);
  rf_gauge_add(g, -7);
  rf_histogram_observe(h, 0.25);
  rf_histogram_observe(h, 0.5);
  rf_histogram_observe(h, 0.75);
  rf_histogram_observe(h, 2);

  const char *want = "# HELP http_requests_total Requests.\\nAll of them \\\\o/\n"
                     "# TYPE http_requests_total counter\n"
                     "http_requests_total{code=\"200\",method=\"GET\"} 3\n"
                     "http_requests_total{code=\"500\",method=\"GET\"} 2\n"
                     "# TYPE inflight gauge\n"
                     "inflight -2\n"
                     "# HELP latency_seconds Latency.\n"
                     "# TYPE latency_seconds histogram\n"
                     "latency_seconds_bucket{route=\"/a\\\"b\",le=\"0.1\"} 0\n"
                     "latency_seconds_bucket{route=\"/a\\\"b\",le=\"0.5\"} 2\n"
                     "latency_seconds_bucket{route=\"/a\\\"b\",le=\"1\"} 3\n"
                     "latency_seconds_bucket{route=\"/a\\\"b\",le=\"+Inf\"} 4\n"
                     "latency_seconds_sum{route=\"/a\\\"b\"} 3.5\n"
                     "latency_seconds_count{route=\"/a\\\"b\"} 4\n";
  assert_int_equal(rf_metrics_render(m, &text, &len), 0);
  assert_string_equal(text, want);
  assert_int_equal(len, strlen(want));
  free(text);
  rf_metrics_destroy(m);
}

static void test_render_numbers(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 4, 0), 0);
  double bounds[] = {-1.5, 1e-9, 0.1, 1e6, 123456789.125};
  rf_histogram_t *h = NULL;
  assert_int_equal(rf_metrics_histogram(m, "n", NULL, NULL, bounds, 5, &h), 0);
  rf_histogram_observe(h, -INFINITY);
  rf_counter_t *c = NULL;
  assert_int_equal(rf_metrics_counter(m, "big_total", NULL, NULL, 0, &c), 0);
  rf_counter_add(c, UINT64_MAX);
  char *text = NULL;
  assert_int_equal(rf_metrics_render(m, &text, NULL), 0);
  const char *want = "# TYPE n histogram\n"
                     "n_bucket{le=\"-1.5\"} 1\n"
                     "n_bucket{le=\"1e-09\"} 1\n"
                     "n_bucket{le=\"0.1\"} 1\n"
                     "n_bucket{le=\"1e+06\"} 1\n"
                     "n_bucket{le=\"123456789.125\"} 1\n"
                     "n_bucket{le=\"+Inf\"} 1\n"
                     "n_sum -Inf\n"
                     "n_count 1\n"
                     "# TYPE big_total counter\n"
                     "big_total 18446744073709551615\n";
  assert_string_equal(text, want);
  free(text);
  rf_counter_inc(c); /* wraps modulo 2^64 */
  assert_int_equal(rf_counter_value(c), 0);
  rf_metrics_destroy(m);
}

static void test_histogram_buckets(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 4, 0), 0);
  double bounds[] = {1, 2, 4};
  rf_histogram_t *h = NULL;
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, bounds, 3, &h), 0);
  /* Upper bounds are inclusive (le): 1 lands in the first bucket. */
  double obs[] = {-3, 0.5, 1, 1.5, 2, 2.5, 4, 4.5, 100};
  double sum = 0;
  for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++) {
    rf_histogram_observe(h, obs[i]);
    sum += obs[i];
  }
  uint64_t want[] = {3, 2, 2, 2};
  for (size_t i = 0; i < 4; i++) {
    uint64_t n = 99;
    assert_int_equal(rf_histogram_bucket(h, i, &n), 0);
    assert_int_equal(n, want[i]);
  }
  uint64_t n = 0;
  assert_int_equal(rf_histogram_bucket(h, 4, &n), RF_ERANGE);
  assert_int_equal(rf_histogram_count(h), 9);
  assert_true(rf_histogram_sum(h) == sum);
  /* NaN goes to +Inf and poisons the sum, as in the reference clients. */
  rf_histogram_observe(h, NAN);
  assert_int_equal(rf_histogram_bucket(h, 3, &n), 0);
  assert_int_equal(n, 3);
  assert_true(isnan(rf_histogram_sum(h)));

  /* No bounds at all: only the +Inf bucket. */
  rf_histogram_t *h0 = NULL;
  assert_int_equal(rf_metrics_histogram(m, "h0", NULL, NULL, NULL, 0, &h0), 0);
  rf_histogram_observe(h0, 7);
  assert_int_equal(rf_histogram_bucket(h0, 0, &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rf_histogram_bucket(h0, 1, &n), RF_ERANGE);
  rf_metrics_destroy(m);
}

static void test_gauge(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 4, RF_METRICS_SHARED), 0);
  rf_gauge_t *g = NULL;
  assert_int_equal(rf_metrics_gauge(m, "g", "A gauge.", NULL, &g), 0);
  rf_gauge_add(g, 10);
  rf_gauge_add(g, -15);
  assert_int_equal(rf_gauge_value(g), -5);
  rf_gauge_set(g, INT64_MAX);
  rf_gauge_add(g, 1); /* wraps, no UB */
  assert_true(rf_gauge_value(g) == INT64_MIN);
  rf_metrics_destroy(m);
}

static void test_labels_render(void **state) {
  (void)state;
  char buf[64];
  const char *kv[] = {"a", "x\\y\"z\nw", "b_2", ""};
  assert_int_equal(rf_metrics_labels_render(buf, sizeof(buf), kv, 2), 0);
  assert_string_equal(buf, "a=\"x\\\\y\\\"z\\nw\",b_2=\"\"");
  /* What it renders is accepted by registration. */
  rf_metrics_t *m = NULL;
  rf_counter_t *c = NULL;
  assert_int_equal(rf_metrics_create(&m, 2, 0), 0);
  assert_int_equal(rf_metrics_counter(m, "c", NULL, buf, 0, &c), 0);
  rf_metrics_destroy(m);

  assert_int_equal(rf_metrics_labels_render(buf, sizeof(buf), NULL, 0), 0);
  assert_string_equal(buf, "");
  assert_int_equal(rf_metrics_labels_render(buf, 8, kv, 2), RF_ERANGE);
  assert_string_equal(buf, "");
  const char *exact[] = {"ab", "c"}; /* ab="c" is 6 bytes + NUL */
  assert_int_equal(rf_metrics_labels_render(buf, 7, exact, 1), 0);
  assert_int_equal(rf_metrics_labels_render(buf, 6, exact, 1), RF_ERANGE);
  const char *badname[] = {"a-b", "1"};
  assert_int_equal(rf_metrics_labels_render(buf, sizeof(buf), badname, 1), RF_EINVAL);
  const char *nullval[] = {"a", NULL};
  assert_int_equal(rf_metrics_labels_render(buf, sizeof(buf), nullval, 1), RF_EINVAL);
  assert_int_equal(rf_metrics_labels_render(NULL, 8, kv, 1), RF_EINVAL);
  assert_int_equal(rf_metrics_labels_render(buf, 0, kv, 1), RF_EINVAL);
  assert_int_equal(rf_metrics_labels_render(buf, sizeof(buf), NULL, 1), RF_EINVAL);
}

static void test_registry_full(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 2, RF_METRICS_SHARED), 0);
  rf_counter_t *a = NULL, *b = NULL, *c = NULL;
  assert_int_equal(rf_metrics_counter(m, "a", NULL, NULL, 0, &a), 0);
  assert_int_equal(rf_metrics_counter(m, "b", NULL, NULL, RF_COUNTER_SHARDED, &b), 0);
  assert_int_equal(rf_metrics_counter(m, "c", NULL, NULL, 0, &c), RF_ENOMEM);
  assert_null(c);
  /* Existing series are still found when the table is full. */
  assert_int_equal(rf_metrics_counter(m, "a", NULL, NULL, 0, &c), 0);
  assert_ptr_equal(a, c);
  rf_metrics_destroy(m);

  /* Arena full: the failed registration publishes nothing and gives its
   * bytes back, so a smaller series still fits. */
  rf_metrics_opts_t o = {.max_series = 16, .arena_bytes = 1024, .flags = 0};
  assert_int_equal(rf_metrics_create_ex(&m, &o), 0);
  assert_int_equal(rf_metrics_counter(m, "big", NULL, NULL, RF_COUNTER_SHARDED, &c), RF_ENOMEM);
  assert_int_equal(rf_metrics_series_count(m), 0);
  /* A gauge "gN" takes 128 bytes (name, then a 64-aligned 64-byte cell):
   * exactly 8 fit in the 1024 bytes the failed counter gave back. */
  int rc = 0;
  int i = 0;
  for (; i < 16 && rc == 0; i++) {
    char name[16];
    snprintf(name, sizeof(name), "g%d", i);
    rf_gauge_t *g = NULL;
    rc = rf_metrics_gauge(m, name, NULL, NULL, &g);
  }
  assert_int_equal(rc, RF_ENOMEM);
  assert_int_equal(i, 9);
  assert_int_equal(rf_metrics_series_count(m), 8);
  rf_metrics_destroy(m);
}

/* Every allocation of create + register + render fails in turn: each
 * failure is reported as RF_ENOMEM and leaks nothing (ASan checks). */
static void test_alloc_torture(void **state) {
  (void)state;
  int completed = 0;
  for (long n = 0; n < 100 && !completed; n++) {
    rf_test_fail_alloc_after(n);
    rf_metrics_t *m = NULL;
    int rc = rf_metrics_create(&m, 8, 0);
    if (rc != 0) {
      assert_int_equal(rc, RF_ENOMEM);
      continue;
    }
    rf_counter_t *c = NULL;
    rf_histogram_t *h = NULL;
    double bounds[] = {1, 2};
    assert_int_equal(rf_metrics_counter(m, "c_total", "help", "k=\"v\"", 0, &c), 0);
    assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, bounds, 2, &h), 0);
    rf_counter_inc(c);
    rf_histogram_observe(h, 1.5);
    char *text = NULL;
    size_t len = 0;
    rc = rf_metrics_render(m, &text, &len);
    if (rc == 0) {
      assert_non_null(strstr(text, "c_total{k=\"v\"} 1\n"));
      assert_non_null(strstr(text, "h_count 1\n"));
      free(text);
      completed = 1;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
      assert_null(text);
    }
    rf_metrics_destroy(m);
  }
  rf_test_fail_alloc_after(-1);
  assert_true(completed);
}

/* A worker that dies holding the registry lock must not wedge the others:
 * the robust mutex hands the next locker EOWNERDEAD, which is repaired. */
static void test_robust_lock_owner_died(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 8, RF_METRICS_SHARED), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    _exit(rf__metrics_lock(m) == 0 ? 0 : 1); /* dies holding the lock */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  rf_counter_t *c = NULL;
  assert_int_equal(rf_metrics_counter(m, "after_death_total", NULL, NULL, 0, &c), 0);
  assert_int_equal(rf_metrics_counter(m, "second_total", NULL, NULL, 0, &c), 0);
  assert_int_equal(rf_metrics_series_count(m), 2);
  rf_metrics_destroy(m);
}

/* A worker dies after publishing a series but before indexing it: the
 * repair indexes it, and re-registering finds it instead of duplicating. */
static void test_robust_lock_repair(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  assert_int_equal(rf_metrics_create(&m, 8, RF_METRICS_SHARED), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rf_counter_t *c = NULL;
    rf_hook_fail("metrics.register.die_after_publish", 1);
    rf_metrics_counter(m, "half_done_total", NULL, "w=\"1\"", 0, &c);
    _exit(1); /* not reached: the fail point exits with 70 */
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 70);
  assert_int_equal(rf_metrics_series_count(m), 1);
  rf_counter_t *c = NULL, *c2 = NULL;
  assert_int_equal(rf_metrics_counter(m, "half_done_total", NULL, "w=\"1\"", 0, &c), 0);
  assert_int_equal(rf_metrics_series_count(m), 1);
  assert_int_equal(rf_metrics_counter(m, "half_done_total", NULL, "w=\"2\"", 0, &c2), 0);
  assert_int_equal(rf_metrics_series_count(m), 2);
  rf_counter_inc(c);
  char *text = NULL;
  assert_int_equal(rf_metrics_render(m, &text, NULL), 0);
  assert_string_equal(text, "# TYPE half_done_total counter\n"
                            "half_done_total{w=\"1\"} 1\n"
                            "half_done_total{w=\"2\"} 0\n");
  free(text);
  rf_metrics_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_bad_args),
      cmocka_unit_test(test_register_idempotent),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_render_exact),
      cmocka_unit_test(test_render_numbers),
      cmocka_unit_test(test_histogram_buckets),
      cmocka_unit_test(test_gauge),
      cmocka_unit_test(test_labels_render),
      cmocka_unit_test(test_registry_full),
      cmocka_unit_test(test_alloc_torture),
      cmocka_unit_test(test_robust_lock_owner_died),
      cmocka_unit_test(test_robust_lock_repair),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
