/* bench_pool.c - worker pool throughput and keyed mutex cost, each next to a
 * reference measured in the same run. Prints markdown for docs/benchmarks.md.
 *
 * Pool: N empty tasks submitted by one thread, time from the first submit to
 * the last completion (done callback). When the queue is full the submitter
 * yields and retries (back-pressure is part of the cost). References: the
 * same fn + done run inline on the submitting thread (the floor: no
 * hand-off at all), and the textbook hand-off of one item through a mutex and
 * two condition variables (a producer/consumer pair, one task at a time).
 *
 * Keyed mutex: uncontended lock+unlock pairs on one thread: on one hot key,
 * and on a new key every time (each pair creates and frees the entry), next
 * to pthread_mutex_lock+unlock. Each figure is the median of RUNS runs; the
 * whole program takes about 5 s.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <racefree/kmutex.h>
#include <racefree/pool.h>

#define RUNS          5
#define POOL_TASKS    400000
#define KM_PAIRS      2000000
#define HANDOFF_TASKS 20000

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof(*v), cmp_double);
  return v[n / 2];
}

/* ------------------------------------------------------------ pool */

static atomic_long g_done;
static volatile long g_sink;

static void empty_fn(void *arg) {
  g_sink = (long)(intptr_t)arg;
}

static void count_done(int status, void *arg) {
  (void)status;
  (void)arg;
  atomic_fetch_add_explicit(&g_done, 1, memory_order_relaxed);
}

/* Tasks per second through an rf_pool. */
static double run_pool(unsigned threads, size_t cap, long n, uint64_t *rejected) {
  rf_pool_t *p;
  rf_pool_opts_t o = {.threads = threads, .queue_capacity = cap};
  if (rf_pool_create(&p, &o) != 0) {
    return -1;
  }
  atomic_store(&g_done, 0);
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    while (rf_pool_submit(p, empty_fn, count_done, (void *)(intptr_t)i) == RF_EBUSY) {
      sched_yield();
    }
  }
  while (atomic_load_explicit(&g_done, memory_order_relaxed) < n) {
    sched_yield();
  }
  double dt = now_s() - t0;
  rf_pool_stats_t st;
  rf_pool_stats(p, &st);
  *rejected = st.rejected;
  rf_pool_destroy(p);
  return (double)n / dt;
}

/* Called through pointers the compiler cannot see through, as the pool
 * calls them. */
static rf_task_fn volatile g_fn = empty_fn;
static rf_task_done_fn volatile g_done_fn = count_done;

static double run_inline(long n) {
  atomic_store(&g_done, 0);
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    g_fn((void *)(intptr_t)i);
    g_done_fn(0, NULL);
  }
  double dt = now_s() - t0;
  return (double)n / dt;
}

/* One task in flight at a time: submit a future and wait for it (a
 * request thread handing one job to the pool and waiting for the result). */
static double run_future_roundtrip(long n) {
  rf_pool_t *p;
  rf_pool_opts_t o = {.threads = 1, .queue_capacity = 16};
  if (rf_pool_create(&p, &o) != 0) {
    return -1;
  }
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    rf_future_t *f;
    if (rf_pool_submit_future(p, empty_fn, (void *)(intptr_t)i, &f) != 0 ||
        rf_future_wait(f, -1, NULL) != 0) {
      rf_pool_destroy(p);
      return -1;
    }
    rf_future_release(f);
  }
  double dt = now_s() - t0;
  rf_pool_destroy(p);
  return (double)n / dt;
}

/* The reference hand-off: one slot, mutex + two condvars. */
typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t not_empty, not_full;
  int full;
  void *item;
  long n;
} handoff_t;

static void *handoff_consumer(void *arg) {
  handoff_t *h = arg;
  for (long i = 0; i < h->n; i++) {
    pthread_mutex_lock(&h->mu);
    while (!h->full) {
      pthread_cond_wait(&h->not_empty, &h->mu);
    }
    void *item = h->item;
    h->full = 0;
    pthread_cond_signal(&h->not_full);
    pthread_mutex_unlock(&h->mu);
    empty_fn(item);
    count_done(0, item);
  }
  return NULL;
}

static double run_handoff(long n) {
  handoff_t h = {.n = n};
  pthread_mutex_init(&h.mu, NULL);
  pthread_cond_init(&h.not_empty, NULL);
  pthread_cond_init(&h.not_full, NULL);
  atomic_store(&g_done, 0);
  pthread_t th;
  double t0 = now_s();
  pthread_create(&th, NULL, handoff_consumer, &h);
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&h.mu);
    while (h.full) {
      pthread_cond_wait(&h.not_full, &h.mu);
    }
    h.item = (void *)(intptr_t)i;
    h.full = 1;
    pthread_cond_signal(&h.not_empty);
    pthread_mutex_unlock(&h.mu);
  }
  pthread_join(th, NULL);
  double dt = now_s() - t0;
  pthread_cond_destroy(&h.not_full);
  pthread_cond_destroy(&h.not_empty);
  pthread_mutex_destroy(&h.mu);
  return (double)n / dt;
}

/* ------------------------------------------------------------ kmutex */

static double run_kmutex_hot(long n) {
  rf_kmutex_t *km;
  if (rf_kmutex_create(&km) != 0) {
    return -1;
  }
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    rf_kmutex_lock(km, "user:42", -1);
    rf_kmutex_unlock(km, "user:42");
  }
  double dt = now_s() - t0;
  rf_kmutex_destroy(km);
  return (double)n / dt;
}

static double run_kmutex_distinct(long n) {
  rf_kmutex_t *km;
  char key[32];
  if (rf_kmutex_create(&km) != 0) {
    return -1;
  }
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "order:%ld", i);
    rf_kmutex_lock(km, key, -1);
    rf_kmutex_unlock(km, key);
  }
  double dt = now_s() - t0;
  size_t left = rf_kmutex_entries(km);
  rf_kmutex_destroy(km);
  return left == 0 ? (double)n / dt : -1;
}

static double run_snprintf_only(long n) {
  char key[32];
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "order:%ld", i);
    g_sink = key[7];
  }
  return (double)n / (now_s() - t0);
}

static double run_pthread_mutex(long n) {
  pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    pthread_mutex_lock(&mu);
    g_sink = i;
    pthread_mutex_unlock(&mu);
  }
  return (double)n / (now_s() - t0);
}

int main(void) {
  double pool2[RUNS], pool1[RUNS], inl[RUNS], hand[RUNS], rt[RUNS];
  double kh[RUNS], kd[RUNS], pm[RUNS], sp[RUNS];
  uint64_t rej2 = 0, rej1 = 0;
  for (int r = 0; r < RUNS; r++) {
    pool2[r] = run_pool(2, 1024, POOL_TASKS, &rej2);
    pool1[r] = run_pool(1, 1024, POOL_TASKS, &rej1);
    inl[r] = run_inline(POOL_TASKS);
    hand[r] = run_handoff(HANDOFF_TASKS);
    rt[r] = run_future_roundtrip(HANDOFF_TASKS);
    kh[r] = run_kmutex_hot(KM_PAIRS);
    kd[r] = run_kmutex_distinct(KM_PAIRS / 4);
    sp[r] = run_snprintf_only(KM_PAIRS / 4);
    pm[r] = run_pthread_mutex(KM_PAIRS * 4);
    if (pool2[r] < 0 || pool1[r] < 0 || rt[r] < 0 || kh[r] < 0 || kd[r] < 0) {
      fprintf(stderr, "bench_pool: a run failed\n");
      return 1;
    }
  }
  double p2 = median(pool2, RUNS), p1 = median(pool1, RUNS), in = median(inl, RUNS),
         ho = median(hand, RUNS), fr = median(rt, RUNS);
  double h = median(kh, RUNS), d = median(kd, RUNS), m = median(pm, RUNS), s = median(sp, RUNS);

  printf("## Pool\n\n");
  printf("`build/release/bench/bench_pool`\n\n");
  printf("Empty tasks, one submitting thread, submit-to-completion (a `done` callback counts "
         "them; on `RF_EBUSY` the submitter yields and retries). Median of %d runs of %d tasks "
         "(%d for the one-at-a-time rows). References measured in the same run: the textbook "
         "one-slot hand-off (mutex + two "
         "condvars, one consumer thread) and the same calls made inline (no hand-off at "
         "all, the floor).\n\n",
         RUNS, POOL_TASKS, HANDOFF_TASKS);
  printf("| figure | tasks/s | reference | reference tasks/s | ratio |\n");
  printf("|---|---:|---|---:|---:|\n");
  printf("| rf_pool, 2 workers, queue 1024 | %.0f k | one-slot mutex+condvar hand-off | %.0f k | "
         "%.2fx |\n",
         p2 / 1e3, ho / 1e3, p2 / ho);
  printf("| rf_pool, 1 worker, queue 1024 | %.0f k | one-slot mutex+condvar hand-off | %.0f k | "
         "%.2fx |\n",
         p1 / 1e3, ho / 1e3, p1 / ho);
  printf("| rf_pool, 2 workers, queue 1024 | %.0f k | inline call (no thread) | %.0f k | "
         "%.3fx |\n",
         p2 / 1e3, in / 1e3, p2 / in);
  printf("| rf_pool_submit_future + rf_future_wait, one task in flight, 1 worker | %.0f k | "
         "one-slot mutex+condvar hand-off | %.0f k | %.2fx |\n",
         fr / 1e3, ho / 1e3, fr / ho);
  printf("\nTarget >= 500 k tasks/s: %s (%.0f k with 2 workers). Back-pressure answers during "
         "the last run: %llu (2 workers), %llu (1 worker).\n\n",
         p2 >= 500e3 ? "met" : "NOT met on this run", p2 / 1e3, (unsigned long long)rej2,
         (unsigned long long)rej1);

  printf("## Keyed mutex\n\n");
  printf("`build/release/bench/bench_pool`\n\n");
  printf("Uncontended lock+unlock pairs per second on one thread, median of %d runs. A key's "
         "entry exists only while held, so every pair creates and frees it (hash, stripe "
         "lock, malloc, free); the \"distinct keys\" row also formats a new key each time "
         "(snprintf alone: %.1f M/s).\n\n",
         RUNS, s / 1e6);
  printf("| figure | pairs/s | reference | reference pairs/s | ratio |\n");
  printf("|---|---:|---|---:|---:|\n");
  printf("| rf_kmutex_lock+unlock, one key | %.1f M | pthread_mutex_lock+unlock | %.1f M | "
         "%.3fx |\n",
         h / 1e6, m / 1e6, h / m);
  printf("| rf_kmutex_lock+unlock, a new key each time | %.1f M | pthread_mutex_lock+unlock | "
         "%.1f M | %.3fx |\n",
         d / 1e6, m / 1e6, d / m);
  return 0;
}
