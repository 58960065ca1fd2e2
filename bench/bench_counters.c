/* bench_counters.c - increments per second on one counter with 1 and 2
 * threads: the single contended atomic (rf_counter_inc), the sharded counter
 * (RF_COUNTER_SHARDED) and, as the reference, a uint64 behind a pthread
 * mutex. Prints a markdown section for docs/benchmarks.md.
 *
 * Each figure is the median of RUNS runs of RUN_MS milliseconds; every run
 * checks that the counter holds exactly the increments made. Total run time
 * is about 3 configurations x 2 thread counts x RUNS x RUN_MS = 5.4 s.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <racefree/metrics.h>

#define RUNS   3
#define RUN_MS 300
#define BATCH  1024

typedef enum { KIND_SINGLE, KIND_SHARDED, KIND_MUTEX, KIND_COUNT } kind_t;

static const char *const kind_names[KIND_COUNT] = {
    "single atomic (`rf_counter_inc`)",
    "sharded (`RF_COUNTER_SHARDED`)",
    "mutex-protected uint64 (reference)",
};

typedef struct {
  pthread_mutex_t mu;
  uint64_t value;
} mutex_counter_t;

typedef struct {
  kind_t kind;
  rf_counter_t *counter;
  mutex_counter_t *mc;
  pthread_barrier_t *start;
  _Atomic int *stop;
  uint64_t ops;
  double cpu_s; /* CPU time this thread got during the run */
} worker_t;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double thread_cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker_main(void *arg) {
  worker_t *w = arg;
  uint64_t ops = 0;
  pthread_barrier_wait(w->start);
  double cpu0 = thread_cpu_s();
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    if (w->kind == KIND_MUTEX) {
      for (int i = 0; i < BATCH; i++) {
        pthread_mutex_lock(&w->mc->mu);
        w->mc->value++;
        pthread_mutex_unlock(&w->mc->mu);
      }
    } else {
      for (int i = 0; i < BATCH; i++) {
        rf_counter_inc(w->counter);
      }
    }
    ops += BATCH;
  }
  w->ops = ops;
  w->cpu_s = thread_cpu_s() - cpu0;
  return NULL;
}

typedef struct {
  double rate; /* increments per second of wall time, < 0 on error */
  double par;  /* CPU seconds the threads got / wall seconds: 2.0 = truly parallel */
} result_t;

/* One timed run. */
static result_t run_once(kind_t kind, int nthreads) {
  rf_metrics_t *m = NULL;
  rf_counter_t *c = NULL;
  mutex_counter_t mc = {.value = 0};
  pthread_barrier_t start;
  _Atomic int stop = 0;
  worker_t w[2];
  pthread_t t[2];
  result_t res = {-1, 0};
  if (rf_metrics_create(&m, 4, 0) != 0 ||
      rf_metrics_counter(m, "bench_total", NULL, NULL,
                         kind == KIND_SHARDED ? RF_COUNTER_SHARDED : 0, &c) != 0) {
    rf_metrics_destroy(m);
    return res;
  }
  pthread_mutex_init(&mc.mu, NULL);
  pthread_barrier_init(&start, NULL, (unsigned)nthreads + 1);
  for (int i = 0; i < nthreads; i++) {
    w[i] = (worker_t){kind, c, &mc, &start, &stop, 0, 0};
    pthread_create(&t[i], NULL, worker_main, &w[i]);
  }
  pthread_barrier_wait(&start);
  double t0 = now_s();
  struct timespec nap = {0, RUN_MS * 1000000L};
  nanosleep(&nap, NULL);
  atomic_store_explicit(&stop, 1, memory_order_relaxed);
  uint64_t total = 0;
  double cpu = 0;
  for (int i = 0; i < nthreads; i++) {
    pthread_join(t[i], NULL);
    total += w[i].ops;
    cpu += w[i].cpu_s;
  }
  double elapsed = now_s() - t0;
  uint64_t got = kind == KIND_MUTEX ? mc.value : rf_counter_value(c);
  if (got == total) {
    res.rate = (double)total / elapsed;
    res.par = cpu / elapsed;
  } else {
    fprintf(stderr, "bench_counters: counted %llu, made %llu increments\n", (unsigned long long)got,
            (unsigned long long)total);
  }
  pthread_barrier_destroy(&start);
  pthread_mutex_destroy(&mc.mu);
  rf_metrics_destroy(m);
  return res;
}

static int cmp_result(const void *a, const void *b) {
  double x = ((const result_t *)a)->rate;
  double y = ((const result_t *)b)->rate;
  return (x > y) - (x < y);
}

static result_t median_run(kind_t kind, int nthreads) {
  result_t r[RUNS];
  for (int i = 0; i < RUNS; i++) {
    r[i] = run_once(kind, nthreads);
    if (r[i].rate < 0) {
      return r[i];
    }
  }
  qsort(r, RUNS, sizeof(r[0]), cmp_result);
  return r[RUNS / 2];
}

int main(void) {
  result_t res[3][KIND_COUNT];
  for (int nt = 1; nt <= 2; nt++) {
    for (int k = 0; k < KIND_COUNT; k++) {
      res[nt][k] = median_run((kind_t)k, nt);
      if (res[nt][k].rate < 0) {
        return 1;
      }
    }
  }
  printf("## Counters\n\n");
  printf("`build/release/bench/bench_counters`\n\n");
  printf("Increments per second on ONE counter, all threads incrementing it "
         "(median of %d runs of %d ms; each run checks the total is exact). "
         "Ratios are against the single contended atomic with the same thread count. "
         "\"CPUs busy\" is the CPU time the threads got divided by wall time: "
         "2.0 means both threads really ran in parallel for the whole run.\n\n",
         RUNS, RUN_MS);
  printf("| counter | threads | increments/s | vs single atomic | CPUs busy |\n");
  printf("|---|---:|---:|---:|---:|\n");
  for (int nt = 1; nt <= 2; nt++) {
    for (int k = 0; k < KIND_COUNT; k++) {
      printf("| %s | %d | %.1f M | %.2fx | %.2f |\n", kind_names[k], nt, res[nt][k].rate / 1e6,
             res[nt][k].rate / res[nt][KIND_SINGLE].rate, res[nt][k].par);
    }
  }
  double ratio = res[2][KIND_SHARDED].rate / res[2][KIND_SINGLE].rate;
  printf("\nSharded / single atomic at 2 threads: **%.1fx** (target: >= 5x) - %s.\n", ratio,
         ratio >= 5.0 ? "met" : "NOT met on this run");
  printf("Scaling 1 -> 2 threads: single atomic %.2fx, sharded %.2fx, mutex %.2fx.\n",
         res[2][KIND_SINGLE].rate / res[1][KIND_SINGLE].rate,
         res[2][KIND_SHARDED].rate / res[1][KIND_SHARDED].rate,
         res[2][KIND_MUTEX].rate / res[1][KIND_MUTEX].rate);
  return 0;
}
