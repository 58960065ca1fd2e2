/* stress_cache.c - 8 threads hammer 16 keys of one rf_cache (long TTL, no
 * expiry or eviction during the test) through rf_cache_get and
 * rf_cache_get_cb; a third of the loads complete on a separate completer
 * thread, and every odd key's first load fails.
 * Exact checks: the loader ran exactly once per even key and exactly twice
 * per odd key (the failure is not cached, the retry is), hits + misses +
 * shared == gets, misses == loads, every value is its key's, every value
 * is freed exactly once. Many rounds, each on a cold cache, so that the
 * stampede on cold keys is exercised again and again. */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "racefree/cache.h"
#include "rf_test.h"

#define THREADS 8
#define KEYS    16

typedef struct {
  int key;
} value_t;

typedef struct node {
  struct node *next;
  rf_sf_call_t *call;
  int status;
  value_t *v;
} node;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static node *q_head;
static bool q_stop;

static atomic_int key_loads[KEYS];
static atomic_long loads, frees, bad, failed_results, cb_outstanding, gets;

static void free_value(void *p) {
  atomic_fetch_add(&frees, 1);
  free(p);
}

static void finish(rf_sf_call_t *call, int status, value_t *v) {
  int rc = status == 0 ? rf_sf_complete(call, 0, v, sizeof(*v), free_value)
                       : rf_sf_complete(call, status, NULL, 0, NULL);
  if (rc != 0) {
    atomic_fetch_add(&bad, 1);
  }
}

static void loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  long seq = atomic_fetch_add(&loads, 1);
  int k = atoi(key + 1);
  int nth = atomic_fetch_add(&key_loads[k], 1);
  int status = (k % 2 == 1 && nth == 0) ? RF_EUNAVAIL : 0;
  value_t *v = NULL;
  if (status == 0) {
    v = malloc(sizeof(*v));
    v->key = k;
  }
  if (seq % 3 != 0) {
    sched_yield();
    finish(call, status, v);
    return;
  }
  node *n = malloc(sizeof(*n));
  *n = (node){NULL, call, status, v};
  pthread_mutex_lock(&q_mu);
  n->next = q_head;
  q_head = n;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
}

static void *completer(void *arg) {
  (void)arg;
  pthread_mutex_lock(&q_mu);
  for (;;) {
    while (q_head == NULL && !q_stop) {
      pthread_cond_wait(&q_cv, &q_mu);
    }
    if (q_head == NULL) {
      break;
    }
    node *n = q_head;
    q_head = n->next;
    pthread_mutex_unlock(&q_mu);
    finish(n->call, n->status, n->v);
    free(n);
    pthread_mutex_lock(&q_mu);
  }
  pthread_mutex_unlock(&q_mu);
  return NULL;
}

static void check(rf_sf_result_t *r, int key) {
  int st = rf_sf_result_status(r);
  const value_t *v = rf_sf_result_value(r, NULL);
  if (st == RF_EUNAVAIL && key % 2 == 1) {
    atomic_fetch_add(&failed_results, 1);
  } else if (st != 0 || v == NULL || v->key != key) {
    atomic_fetch_add(&bad, 1);
  }
  rf_sf_result_release(r);
}

static void on_result(rf_sf_result_t *r, rf_cache_src_t src, void *arg) {
  (void)src;
  int *key = arg;
  check(r, *key);
  free(key);
  atomic_fetch_sub(&cb_outstanding, 1);
}

typedef struct {
  rf_cache_t *c;
  long iters;
} world;

static void worker(void *arg, int index) {
  world *w = arg;
  unsigned seed = (unsigned)index * 2654435761u + 7;
  for (long i = 0; i < w->iters; i++) {
    seed = seed * 1103515245u + 12345u;
    int key = (int)((seed >> 16) % KEYS);
    char name[16];
    snprintf(name, sizeof(name), "k%d", key);
    atomic_fetch_add(&gets, 1);
    if ((seed >> 8) % 4 == 0) {
      int *k = malloc(sizeof(*k));
      *k = key;
      atomic_fetch_add(&cb_outstanding, 1);
      if (rf_cache_get_cb(w->c, name, loader, NULL, on_result, k) != 0) {
        atomic_fetch_add(&bad, 1);
      }
    } else {
      rf_sf_result_t *r = NULL;
      if (rf_cache_get(w->c, name, loader, NULL, -1, &r, NULL) != 0) {
        atomic_fetch_add(&bad, 1);
        continue;
      }
      check(r, key);
    }
  }
}

/* One round: a cold cache, 8 threads released together. */
static void round_once(long iters, bool verbose) {
  rf_cache_opts_t o = {1024, 3600 * 1000, 0, 0};
  world w = {NULL, iters};
  for (int k = 0; k < KEYS; k++) {
    atomic_store(&key_loads[k], 0);
  }
  atomic_store(&loads, 0);
  atomic_store(&frees, 0);
  atomic_store(&failed_results, 0);
  atomic_store(&gets, 0);
  assert_int_equal(rf_cache_create(&w.c, &o), 0);
  rf_test_run_parallel(THREADS, worker, &w);
  while (atomic_load(&cb_outstanding) > 0) {
    sched_yield();
  }

  assert_int_equal(atomic_load(&bad), 0);
  for (int k = 0; k < KEYS; k++) {
    assert_int_equal(atomic_load(&key_loads[k]), k % 2 == 1 ? 2 : 1);
  }
  rf_cache_stats_t s;
  rf_cache_stats(w.c, &s);
  if (verbose) {
    printf("# gets %ld hits %llu misses %llu shared %llu loads %llu failed results %ld\n",
           atomic_load(&gets), (unsigned long long)s.hits, (unsigned long long)s.misses,
           (unsigned long long)s.shared, (unsigned long long)s.loads, atomic_load(&failed_results));
  }
  assert_int_equal(s.loads, KEYS + KEYS / 2);
  assert_int_equal(s.load_failures, KEYS / 2);
  assert_int_equal(s.misses, s.loads);
  assert_int_equal(s.hits + s.misses + s.shared, atomic_load(&gets));
  assert_int_equal(s.entries, KEYS);
  assert_int_equal(s.evictions, 0);
  assert_true(atomic_load(&failed_results) >= KEYS / 2);
  rf_cache_destroy(w.c);
  assert_int_equal(atomic_load(&frees), KEYS); /* one successful value per key */
}

static void test_stress(void **state) {
  (void)state;
  pthread_t comp = rf_test_spawn(completer, NULL);
  long rounds = rf_test_iters(300);
  for (long r = 0; r < rounds; r++) {
    round_once(2000, r == 0);
  }
  round_once(rf_test_iters(100000), true); /* one long hot round */
  pthread_mutex_lock(&q_mu);
  q_stop = true;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
  rf_test_join(comp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
