/* stress_singleflight.c - 8 threads hammer 8 keys through rf_sf_do and
 * rf_sf_do_cb; half the loads complete synchronously, half on a separate
 * completer thread. Exact checks: every flight has exactly one starter
 * (results with shared == false == loader runs), every waiter gets its own
 * key's value, every value is freed exactly once, nothing stays in flight. */
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/singleflight.h"
#include "rf_test.h"

#define THREADS 8
#define KEYS    8

typedef struct {
  int key;
  long seq;
} value_t;

/* Completer: a tiny locked queue of calls to complete asynchronously. */
typedef struct node {
  struct node *next;
  rf_sf_call_t *call;
  value_t *v;
} node;

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static node *q_head;
static bool q_stop;

static atomic_long loads;
static atomic_long frees;
static atomic_long starters; /* results with shared == false */
static atomic_long joiners;
static atomic_long bad; /* wrong value for the key, or an error */
static atomic_long cb_outstanding;

static void free_value(void *p) {
  atomic_fetch_add(&frees, 1);
  free(p);
}

static void loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  long seq = atomic_fetch_add(&loads, 1);
  value_t *v = malloc(sizeof(*v));
  v->key = atoi(key + 1);
  v->seq = seq;
  if (seq % 2 == 0) {
    sched_yield(); /* widen the window a little */
    if (rf_sf_complete(call, 0, v, sizeof(*v), free_value) != 0) {
      atomic_fetch_add(&bad, 1);
    }
    return;
  }
  node *n = malloc(sizeof(*n));
  n->call = call;
  n->v = v;
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
    if (rf_sf_complete(n->call, 0, n->v, sizeof(*n->v), free_value) != 0) {
      atomic_fetch_add(&bad, 1);
    }
    free(n);
    pthread_mutex_lock(&q_mu);
  }
  pthread_mutex_unlock(&q_mu);
  return NULL;
}

static void check(rf_sf_result_t *r, bool shared, int key) {
  const value_t *v = rf_sf_result_value(r, NULL);
  if (rf_sf_result_status(r) != 0 || v == NULL || v->key != key) {
    atomic_fetch_add(&bad, 1);
  }
  atomic_fetch_add(shared ? &joiners : &starters, 1);
  rf_sf_result_release(r);
}

typedef struct {
  int key;
} cb_ctx;

static void on_result(rf_sf_result_t *r, bool shared, void *arg) {
  cb_ctx *c = arg;
  check(r, shared, c->key);
  free(c);
  atomic_fetch_sub(&cb_outstanding, 1);
}

typedef struct {
  rf_sf_t *sf;
  long iters;
} world;

static void worker(void *arg, int index) {
  world *w = arg;
  unsigned seed = (unsigned)index * 7919u + 1;
  for (long i = 0; i < w->iters; i++) {
    seed = seed * 1103515245u + 12345u;
    int key = (int)((seed >> 16) % KEYS);
    char name[16];
    snprintf(name, sizeof(name), "k%d", key);
    if ((seed >> 8) % 4 == 0) {
      cb_ctx *c = malloc(sizeof(*c));
      c->key = key;
      atomic_fetch_add(&cb_outstanding, 1);
      if (rf_sf_do_cb(w->sf, name, loader, NULL, on_result, c) != 0) {
        atomic_fetch_add(&bad, 1);
      }
    } else {
      rf_sf_result_t *r = NULL;
      bool shared = false;
      if (rf_sf_do(w->sf, name, loader, NULL, -1, &r, &shared) != 0) {
        atomic_fetch_add(&bad, 1);
        continue;
      }
      check(r, shared, key);
    }
  }
}

static void test_stress(void **state) {
  (void)state;
  world w = {NULL, rf_test_iters(20000)};
  assert_int_equal(rf_sf_create(&w.sf), 0);
  pthread_t comp = rf_test_spawn(completer, NULL);
  rf_test_run_parallel(THREADS, worker, &w);
  while (atomic_load(&cb_outstanding) > 0) {
    sched_yield();
  }
  pthread_mutex_lock(&q_mu);
  q_stop = true;
  pthread_cond_signal(&q_cv);
  pthread_mutex_unlock(&q_mu);
  rf_test_join(comp);

  long total = THREADS * w.iters;
  assert_int_equal(atomic_load(&bad), 0);
  assert_int_equal(atomic_load(&starters) + atomic_load(&joiners), total);
  assert_int_equal(atomic_load(&starters), atomic_load(&loads)); /* one starter per flight */
  assert_int_equal(atomic_load(&frees), atomic_load(&loads));    /* every value freed once */
  assert_int_equal(rf_sf_inflight(w.sf), 0);
  assert_true(atomic_load(&joiners) > 0); /* flights were actually shared */
  printf("# %ld gets, %ld loads, %ld shared\n", total, atomic_load(&loads), atomic_load(&joiners));
  rf_sf_destroy(w.sf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
