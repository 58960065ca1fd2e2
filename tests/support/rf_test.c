/* rf_test.c - see rf_test.h. */
#include "rf_test.h"

#include <stdlib.h>
#include <time.h>

pthread_t rf_test_spawn(void *(*fn)(void *), void *arg) {
  pthread_t t;
  int rc = pthread_create(&t, NULL, fn, arg);
  assert_int_equal(rc, 0);
  return t;
}

void *rf_test_join(pthread_t t) {
  void *res = NULL;
  assert_int_equal(pthread_join(t, &res), 0);
  return res;
}

typedef struct {
  pthread_barrier_t *barrier;
  void (*fn)(void *, int);
  void *arg;
  int index;
} rf__par_arg;

static void *rf__par_main(void *p) {
  rf__par_arg *a = p;
  pthread_barrier_wait(a->barrier);
  a->fn(a->arg, a->index);
  return NULL;
}

void rf_test_run_parallel(int n, void (*fn)(void *, int), void *arg) {
  pthread_barrier_t barrier;
  pthread_t *threads = calloc((size_t)n, sizeof(*threads));
  rf__par_arg *args = calloc((size_t)n, sizeof(*args));
  assert_non_null(threads);
  assert_non_null(args);
  assert_int_equal(pthread_barrier_init(&barrier, NULL, (unsigned)n), 0);
  for (int i = 0; i < n; i++) {
    args[i] = (rf__par_arg){&barrier, fn, arg, i};
    threads[i] = rf_test_spawn(rf__par_main, &args[i]);
  }
  for (int i = 0; i < n; i++) {
    rf_test_join(threads[i]);
  }
  pthread_barrier_destroy(&barrier);
  free(args);
  free(threads);
}

uint64_t rf_test_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void rf_test_sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

long rf_test_iters(long normal) {
#if defined(__SANITIZE_THREAD__)
  return normal / 10 > 0 ? normal / 10 : 1;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return normal / 10 > 0 ? normal / 10 : 1;
#endif
#endif
  return normal;
}
