/* util.c - allocation wrappers (with failure injection in test builds),
 * clocks and hashing shared by the modules of libracefree. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Allocation failure injection. rf__alloc_fail_at holds the value of the
 * allocation counter at which to fail, or -1. Both are only touched with
 * relaxed atomics: injection is a test aid, not a synchronisation device,
 * and tests arm it before starting the threads they observe. */
#ifdef RF_TEST_HOOKS
static atomic_long rf__alloc_fail_at = -1;
#endif
static atomic_ulong rf__alloc_count;

static int rf__alloc_should_fail(void) {
#ifdef RF_TEST_HOOKS
  unsigned long n = atomic_fetch_add_explicit(&rf__alloc_count, 1, memory_order_relaxed);
  long at = atomic_load_explicit(&rf__alloc_fail_at, memory_order_relaxed);
  if (at >= 0 && (unsigned long)at == n) {
    return 1;
  }
  return RF_HOOK_FAIL("alloc") ? 1 : 0;
#else
  return 0;
#endif
}

int rf_test_fail_alloc_after(long n) {
#ifdef RF_TEST_HOOKS
  unsigned long now = atomic_load_explicit(&rf__alloc_count, memory_order_relaxed);
  atomic_store_explicit(&rf__alloc_fail_at, n < 0 ? -1 : (long)(now + (unsigned long)n),
                        memory_order_relaxed);
  return 0;
#else
  (void)n;
  return RF_ENOTSUP;
#endif
}

unsigned long rf_test_alloc_count(void) {
  return atomic_load_explicit(&rf__alloc_count, memory_order_relaxed);
}

void *rf__malloc(size_t n) {
  if (rf__alloc_should_fail()) {
    return NULL;
  }
  return malloc(n == 0 ? 1 : n);
}

void *rf__calloc(size_t count, size_t size) {
  if (rf__alloc_should_fail()) {
    return NULL;
  }
  return calloc(count == 0 ? 1 : count, size == 0 ? 1 : size);
}

void *rf__realloc(void *p, size_t n) {
  if (rf__alloc_should_fail()) {
    return NULL;
  }
  return realloc(p, n == 0 ? 1 : n);
}

char *rf__strndup(const char *s, size_t n) {
  size_t len = strnlen(s, n);
  char *d = rf__malloc(len + 1);
  if (d != NULL) {
    memcpy(d, s, len);
    d[len] = '\0';
  }
  return d;
}

char *rf__strdup(const char *s) {
  return rf__strndup(s, strlen(s));
}

void rf__free(void *p) {
  free(p);
}

uint64_t rf__now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rf__now_ms(void) {
  return rf__now_ns() / 1000000u;
}

struct timespec rf__deadline(int timeout_ms) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  if (timeout_ms < 0) {
    timeout_ms = 0;
  }
  ts.tv_sec += timeout_ms / 1000;
  ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1000000000L;
  }
  return ts;
}

int rf__cond_init(void *cond) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) {
    return RF_ENOMEM;
  }
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init((pthread_cond_t *)cond, &attr);
  pthread_condattr_destroy(&attr);
  return rc == 0 ? 0 : RF_ENOMEM;
}

uint64_t rf__hash_str(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}
