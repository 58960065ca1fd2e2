/* counter_demo.c - forked worker processes counting into one shared
 * registry: the C counterpart of SharedArrayBuffer + Atomics.
 *
 *   counter_demo [workers (1..64, default 4)] [increments per worker (default 200000)]
 *
 * The parent creates a RF_METRICS_SHARED registry, forks the workers, and
 * each worker increments a plain and a sharded counter, keeps a gauge of
 * busy workers and observes how long each batch took. Next to them, every
 * worker also runs the naive `count = count + 1` (a relaxed load, then a
 * relaxed store) on a word in shared memory. The parent waits, prints the
 * totals - exact for the library's counters, usually short for the naive
 * one - and then the Prometheus exposition of the registry.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <racefree/errors.h>
#include <racefree/metrics.h>

typedef struct {
  rf_counter_t *requests;
  rf_counter_t *requests_sharded;
  rf_gauge_t *busy;
  rf_histogram_t *batch_seconds;
  _Atomic uint64_t *naive; /* in a MAP_SHARED page */
} demo_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void worker(const demo_t *d, long increments) {
  const long batch = 10000;
  rf_gauge_add(d->busy, 1);
  for (long done = 0; done < increments;) {
    double t0 = now_s();
    long n = increments - done < batch ? increments - done : batch;
    for (long i = 0; i < n; i++) {
      rf_counter_inc(d->requests);
      rf_counter_inc(d->requests_sharded);
      /* The article's count++: read, add, write back. */
      uint64_t v = atomic_load_explicit(d->naive, memory_order_relaxed);
      atomic_store_explicit(d->naive, v + 1, memory_order_relaxed);
    }
    rf_histogram_observe(d->batch_seconds, now_s() - t0);
    done += n;
  }
  rf_gauge_add(d->busy, -1);
}

static long arg_long(int argc, char **argv, int i, long def, long min, long max) {
  if (argc <= i) {
    return def;
  }
  char *end = NULL;
  long v = strtol(argv[i], &end, 10);
  if (end == argv[i] || *end != '\0' || v < min || v > max) {
    fprintf(stderr, "usage: %s [workers 1..64] [increments 1..100000000]\n", argv[0]);
    exit(2);
  }
  return v;
}

static int setup(rf_metrics_t *m, demo_t *d) {
  static const double bounds[] = {0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05};
  int rc = rf_metrics_counter(m, "demo_requests_total", "Increments by all workers.",
                              "counter=\"single\"", 0, &d->requests);
  if (rc == 0) {
    rc = rf_metrics_counter(m, "demo_requests_total", NULL, "counter=\"sharded\"",
                            RF_COUNTER_SHARDED, &d->requests_sharded);
  }
  if (rc == 0) {
    rc = rf_metrics_gauge(m, "demo_busy_workers", "Workers currently counting.", NULL, &d->busy);
  }
  if (rc == 0) {
    rc = rf_metrics_histogram(m, "demo_batch_seconds", "Time to count one batch of 10000.", NULL,
                              bounds, sizeof(bounds) / sizeof(bounds[0]), &d->batch_seconds);
  }
  return rc;
}

int main(int argc, char **argv) {
  long workers = arg_long(argc, argv, 1, 4, 1, 64);
  long increments = arg_long(argc, argv, 2, 200000, 1, 100000000);
  rf_metrics_t *m = NULL;
  demo_t d = {0};
  int rc = rf_metrics_create(&m, 16, RF_METRICS_SHARED);
  if (rc == 0) {
    rc = setup(m, &d);
  }
  if (rc != 0) {
    fprintf(stderr, "counter_demo: %s\n", rf_strerror(rc));
    rf_metrics_destroy(m);
    return 1;
  }
  void *page =
      mmap(NULL, sizeof(*d.naive), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    perror("mmap");
    rf_metrics_destroy(m);
    return 1;
  }
  d.naive = page;

  for (long i = 0; i < workers; i++) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      worker(&d, increments);
      rf_metrics_destroy(m);
      _exit(0);
    }
  }
  int failed = 0;
  for (long i = 0; i < workers; i++) {
    int status = 0;
    if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failed = 1;
    }
  }

  unsigned long long want = (unsigned long long)workers * (unsigned long long)increments;
  unsigned long long single = rf_counter_value(d.requests);
  unsigned long long sharded = rf_counter_value(d.requests_sharded);
  unsigned long long naive = atomic_load(d.naive);
  printf("%ld worker processes x %ld increments = %llu expected\n", workers, increments, want);
  printf("  rf_counter_inc (one atomic)   %llu %s\n", single, single == want ? "exact" : "WRONG");
  printf("  rf_counter_inc (sharded)      %llu %s\n", sharded, sharded == want ? "exact" : "WRONG");
  printf("  naive count = count + 1       %llu (%llu lost)\n", naive, want - naive);
  printf("\n# Prometheus exposition (GET /metrics)\n");
  char *text = NULL;
  rc = rf_metrics_render(m, &text, NULL);
  if (rc == 0) {
    fputs(text, stdout);
    free(text);
  } else {
    fprintf(stderr, "counter_demo: render: %s\n", rf_strerror(rc));
  }
  munmap(page, sizeof(*d.naive));
  rf_metrics_destroy(m);
  return failed || rc != 0 || single != want || sharded != want ? 1 : 0;
}
