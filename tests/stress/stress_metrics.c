/* stress_metrics.c - many threads and many processes hammering one registry:
 * every total must be exact.
 *
 * - 8 writer threads x M updates on an unsharded counter, a sharded counter,
 *   a gauge and a histogram, while a reader checks that the sharded sum
 *   never goes backwards;
 * - 8 threads registering the same series concurrently, updating and
 *   rendering: one series per name and labels, exact values;
 * - a shared registry, 4 forked worker processes (2 threads each) that
 *   increment K times and also register series after the fork: the parent
 *   sees exact totals, and a name registered in every child is one series.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "racefree/metrics.h"
#include "rf_test.h"

#define WRITERS 8

typedef struct {
  rf_counter_t *single;
  rf_counter_t *sharded;
  rf_gauge_t *gauge;
  rf_histogram_t *hist;
  long iters;
  _Atomic int writers_done;
  _Atomic int backwards;
} hammer_t;

static void hammer(void *arg, int index) {
  hammer_t *h = arg;
  if (index == WRITERS) { /* the reader */
    uint64_t last = 0;
    while (atomic_load(&h->writers_done) < WRITERS) {
      uint64_t v = rf_counter_value(h->sharded);
      if (v < last) {
        atomic_store(&h->backwards, 1);
      }
      last = v;
    }
    return;
  }
  for (long i = 0; i < h->iters; i++) {
    rf_counter_inc(h->single);
    rf_counter_inc(h->sharded);
    rf_gauge_add(h->gauge, 2);
    rf_gauge_add(h->gauge, -1);
    rf_histogram_observe(h->hist, (double)(i % 4) * 0.5); /* 0, .5, 1, 1.5 */
  }
  atomic_fetch_add(&h->writers_done, 1);
}

static void test_threads_exact(void **state) {
  (void)state;
  for (unsigned mode = 0; mode < 2; mode++) {
    rf_metrics_t *m = NULL;
    hammer_t h = {.iters = rf_test_iters(400000)};
    double bounds[] = {0.25, 0.75, 1.25};
    assert_int_equal(rf_metrics_create(&m, 8, mode == 0 ? 0 : RF_METRICS_SHARED), 0);
    assert_int_equal(rf_metrics_counter(m, "single_total", NULL, NULL, 0, &h.single), 0);
    assert_int_equal(
        rf_metrics_counter(m, "sharded_total", NULL, NULL, RF_COUNTER_SHARDED, &h.sharded), 0);
    assert_int_equal(rf_metrics_gauge(m, "g", NULL, NULL, &h.gauge), 0);
    assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, bounds, 3, &h.hist), 0);
    rf_test_run_parallel(WRITERS + 1, hammer, &h);

    uint64_t total = (uint64_t)WRITERS * (uint64_t)h.iters;
    assert_int_equal(rf_counter_value(h.single), total);
    assert_int_equal(rf_counter_value(h.sharded), total);
    assert_int_equal(rf_gauge_value(h.gauge), (int64_t)total);
    assert_int_equal(rf_histogram_count(h.hist), total);
    /* Each writer observes 0, .5, 1, 1.5 cyclically: all exact in binary. */
    double per_writer = 0;
    uint64_t want[4] = {0};
    for (long i = 0; i < h.iters; i++) {
      per_writer += (double)(i % 4) * 0.5;
      want[i % 4] += WRITERS;
    }
    assert_true(rf_histogram_sum(h.hist) == per_writer * WRITERS);
    for (size_t i = 0; i < 4; i++) {
      uint64_t n = 0;
      assert_int_equal(rf_histogram_bucket(h.hist, i, &n), 0);
      assert_int_equal(n, want[i]);
    }
    assert_int_equal(atomic_load(&h.backwards), 0);
    rf_metrics_destroy(m);
  }
}

/* ------------------------------------------------------------ registration */

#define REG_SERIES 32

typedef struct {
  rf_metrics_t *m;
  rf_counter_t *got[WRITERS][REG_SERIES];
  _Atomic int errors;
  long rounds;
} reg_t;

static void register_and_count(void *arg, int index) {
  reg_t *r = arg;
  for (long round = 0; round < r->rounds; round++) {
    for (int s = 0; s < REG_SERIES; s++) {
      /* Every thread walks the series in a different order. */
      int k = (s + index * 5) % REG_SERIES;
      char name[32];
      char labels[32];
      snprintf(name, sizeof(name), "fam%d_total", k % 4);
      snprintf(labels, sizeof(labels), "k=\"%d\"", k);
      rf_counter_t *c = NULL;
      if (rf_metrics_counter(r->m, name, "help", labels, (unsigned)(k % 2), &c) != 0 ||
          (round > 0 && c != r->got[index][k])) {
        atomic_fetch_add(&r->errors, 1);
        continue;
      }
      r->got[index][k] = c;
      rf_counter_inc(c);
    }
    if (index % 4 == 0) {
      char *text = NULL;
      if (rf_metrics_render(r->m, &text, NULL) != 0) {
        atomic_fetch_add(&r->errors, 1);
      }
      free(text);
    }
  }
}

static void test_threads_register(void **state) {
  (void)state;
  reg_t *r = calloc(1, sizeof(*r));
  assert_non_null(r);
  r->rounds = rf_test_iters(2000);
  assert_int_equal(rf_metrics_create(&r->m, 64, RF_METRICS_SHARED), 0);
  rf_test_run_parallel(WRITERS, register_and_count, r);
  assert_int_equal(atomic_load(&r->errors), 0);
  assert_int_equal(rf_metrics_series_count(r->m), REG_SERIES);
  for (int k = 0; k < REG_SERIES; k++) {
    for (int t = 1; t < WRITERS; t++) {
      assert_ptr_equal(r->got[t][k], r->got[0][k]);
    }
    assert_int_equal(rf_counter_value(r->got[0][k]), (uint64_t)WRITERS * (uint64_t)r->rounds);
  }
  char *text = NULL;
  assert_int_equal(rf_metrics_render(r->m, &text, NULL), 0);
  /* 4 families: 4 TYPE lines, 32 series lines. */
  int types = 0;
  for (const char *p = text; (p = strstr(p, "# TYPE ")) != NULL; p++) {
    types++;
  }
  assert_int_equal(types, 4);
  free(text);
  rf_metrics_destroy(r->m);
  free(r);
}

/* ------------------------------------------------------------ processes */

#define CHILDREN 4

typedef struct {
  rf_counter_t *single;
  rf_counter_t *sharded;
  rf_counter_t *late;
  rf_histogram_t *hist;
  long iters;
} child_work_t;

static void *child_worker(void *arg) {
  child_work_t *w = arg;
  for (long i = 0; i < w->iters; i++) {
    rf_counter_inc(w->single);
    rf_counter_inc(w->sharded);
    rf_counter_inc(w->late);
    rf_histogram_observe(w->hist, 1.0);
  }
  return NULL;
}

/* Runs in a forked child (raw pthreads and exit codes, no cmocka). */
static int child_main(rf_metrics_t *m, const child_work_t *base, int child) {
  child_work_t w = *base;
  /* Registered after the fork, by every child: must be one series. */
  if (rf_metrics_counter(m, "late_total", "Registered after fork.", "where=\"child\"",
                         RF_COUNTER_SHARDED, &w.late) != 0) {
    return 2;
  }
  char labels[32];
  snprintf(labels, sizeof(labels), "child=\"%d\"", child);
  rf_counter_t *mine = NULL;
  if (rf_metrics_counter(m, "child_total", NULL, labels, 0, &mine) != 0) {
    return 3;
  }
  rf_counter_add(mine, (uint64_t)child + 1);
  /* Two threads, half the iterations each (iters is even). */
  w.iters /= 2;
  pthread_t t;
  if (pthread_create(&t, NULL, child_worker, &w) != 0) {
    return 4;
  }
  child_worker(&w);
  pthread_join(t, NULL);
  return 0;
}

static void test_processes_shared(void **state) {
  (void)state;
  rf_metrics_t *m = NULL;
  child_work_t w = {.iters = rf_test_iters(200000) & ~1L};
  double bounds[] = {0.5, 2};
  assert_int_equal(rf_metrics_create(&m, 32, RF_METRICS_SHARED), 0);
  assert_int_equal(rf_metrics_counter(m, "single_total", NULL, NULL, 0, &w.single), 0);
  assert_int_equal(
      rf_metrics_counter(m, "sharded_total", NULL, NULL, RF_COUNTER_SHARDED, &w.sharded), 0);
  assert_int_equal(rf_metrics_histogram(m, "h", NULL, NULL, bounds, 2, &w.hist), 0);

  pid_t pids[CHILDREN];
  for (int i = 0; i < CHILDREN; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      int rc = child_main(m, &w, i);
      rf_metrics_destroy(m); /* the child's view only */
      _exit(rc);
    }
  }
  for (int i = 0; i < CHILDREN; i++) {
    int status = 0;
    assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }

  uint64_t total = (uint64_t)CHILDREN * (uint64_t)w.iters;
  assert_int_equal(rf_counter_value(w.single), total);
  assert_int_equal(rf_counter_value(w.sharded), total);
  assert_int_equal(rf_histogram_count(w.hist), total);
  assert_true(rf_histogram_sum(w.hist) == (double)total);
  /* 3 from the parent, late_total once, child_total once per child. */
  assert_int_equal(rf_metrics_series_count(m), 3 + 1 + CHILDREN);
  /* The parent finds the series the children registered. */
  rf_counter_t *late = NULL;
  assert_int_equal(
      rf_metrics_counter(m, "late_total", NULL, "where=\"child\"", RF_COUNTER_SHARDED, &late), 0);
  assert_int_equal(rf_counter_value(late), total);
  uint64_t child_sum = 0;
  for (int i = 0; i < CHILDREN; i++) {
    char labels[32];
    snprintf(labels, sizeof(labels), "child=\"%d\"", i);
    rf_counter_t *c = NULL;
    assert_int_equal(rf_metrics_counter(m, "child_total", NULL, labels, 0, &c), 0);
    assert_int_equal(rf_counter_value(c), (uint64_t)i + 1);
    child_sum += rf_counter_value(c);
  }
  assert_int_equal(child_sum, CHILDREN * (CHILDREN + 1) / 2);
  assert_int_equal(rf_metrics_series_count(m), 3 + 1 + CHILDREN);

  char *text = NULL;
  assert_int_equal(rf_metrics_render(m, &text, NULL), 0);
  char line[96];
  snprintf(line, sizeof(line), "\nsharded_total %llu\n", (unsigned long long)total);
  assert_non_null(strstr(text, line));
  snprintf(line, sizeof(line), "\nh_bucket{le=\"2\"} %llu\n", (unsigned long long)total);
  assert_non_null(strstr(text, line));
  free(text);
  rf_metrics_destroy(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      /* The fork test first, while this process has never had threads. */
      cmocka_unit_test(test_processes_shared),
      cmocka_unit_test(test_threads_exact),
      cmocka_unit_test(test_threads_register),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
