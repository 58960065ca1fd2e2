/* stress_kmutex.c - 8 threads increment plain ints under keyed locks.
 *
 * Each thread runs M iterations over 4 hot keys, mixing the three ways to
 * take a key (blocking lock, trylock spin, callback waiter with a timer
 * timeout), and increments a plain int per key inside the critical section.
 * Any lost exclusion shows as a lost update (and as a TSan report); any lost
 * hand-over shows as a hang or a timeout. Afterwards every counter is exact
 * and rf_kmutex_entries() is back to 0. A second test churns distinct keys
 * from all threads at once (memory stays bounded: entries back to 0).
 */
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>

#include "rf_test.h"
#include "racefree/kmutex.h"
#include "racefree/timer.h"

#define THREADS 8
#define KEYS    4

static const char *const key_names[KEYS] = {"user:1", "user:2", "order:7", "wallet:42"};

typedef struct {
  rf_kmutex_t *km;
  rf_timer_t *timer;
  long iters;
  int counters[KEYS]; /* plain ints: protected by the keyed lock only */
  atomic_long timeouts;
  atomic_long errors;
} ctx_t;

typedef struct {
  ctx_t *c;
  int k;
  sem_t done;
  int status;
} cb_req;

/* Granted: runs on this thread (free key) or on the unlocker's thread. */
static void on_lock(int status, void *arg) {
  cb_req *r = arg;
  r->status = status;
  if (status == 0) {
    r->c->counters[r->k]++;
    if (rf_kmutex_unlock(r->c->km, key_names[r->k]) != 0) {
      atomic_fetch_add(&r->c->errors, 1);
    }
  }
  sem_post(&r->done);
}

static void worker(void *arg, int index) {
  ctx_t *c = arg;
  cb_req req;
  req.c = c;
  sem_init(&req.done, 0, 0);
  for (long i = 0; i < c->iters; i++) {
    int k = (int)((i + index) % KEYS);
    const char *key = key_names[k];
    switch ((i + index) % 3) {
    case 0:
      if (rf_kmutex_lock(c->km, key, -1) != 0) {
        atomic_fetch_add(&c->errors, 1);
        continue;
      }
      break;
    case 1:
      while (rf_kmutex_trylock(c->km, key) == RF_EBUSY) {
        sched_yield();
      }
      break;
    default:
      req.k = k;
      if (rf_kmutex_lock_cb(c->km, key, 10000, c->timer, on_lock, &req) != 0) {
        atomic_fetch_add(&c->errors, 1);
        continue;
      }
      sem_wait(&req.done);
      if (req.status == RF_ETIMEDOUT) {
        atomic_fetch_add(&c->timeouts, 1);
      } else if (req.status != 0) {
        atomic_fetch_add(&c->errors, 1);
      }
      continue; /* on_lock incremented and unlocked */
    }
    c->counters[k]++;
    if (rf_kmutex_unlock(c->km, key) != 0) {
      atomic_fetch_add(&c->errors, 1);
    }
  }
  sem_destroy(&req.done);
}

static void test_exact_counters(void **state) {
  (void)state;
  static ctx_t c;
  assert_int_equal(rf_kmutex_create(&c.km), 0);
  assert_int_equal(rf_timer_create(&c.timer), 0);
  c.iters = rf_test_iters(30000);
  rf_test_run_parallel(THREADS, worker, &c);
  long total = 0;
  for (int k = 0; k < KEYS; k++) {
    total += c.counters[k];
  }
  assert_int_equal(atomic_load(&c.errors), 0);
  assert_int_equal(atomic_load(&c.timeouts), 0); /* 10 s is never reached */
  assert_int_equal(total, THREADS * c.iters);
  /* Per key: each thread visits key k exactly iters/KEYS times (+1). */
  for (int k = 0; k < KEYS; k++) {
    long expect = 0;
    for (int t = 0; t < THREADS; t++) {
      for (long i = 0; i < c.iters; i++) {
        expect += (i + t) % KEYS == k;
      }
    }
    assert_int_equal(c.counters[k], expect);
  }
  assert_int_equal(rf_kmutex_entries(c.km), 0);
  assert_int_equal(rf_timer_pending(c.timer), 0); /* every timeout was cancelled */
  rf_kmutex_destroy(c.km);
  rf_timer_destroy(c.timer);
}

static void churn(void *arg, int index) {
  ctx_t *c = arg;
  char key[48];
  for (long i = 0; i < c->iters; i++) {
    /* Distinct keys per thread, plus a shared one now and then. */
    if (i % 16 == 0) {
      snprintf(key, sizeof(key), "shared-%ld", i % 64);
    } else {
      snprintf(key, sizeof(key), "t%d-k%ld", index, i);
    }
    if (rf_kmutex_lock(c->km, key, -1) != 0 || rf_kmutex_unlock(c->km, key) != 0) {
      atomic_fetch_add(&c->errors, 1);
    }
  }
}

static void test_distinct_keys_bounded(void **state) {
  (void)state;
  static ctx_t c;
  assert_int_equal(rf_kmutex_create(&c.km), 0);
  c.iters = rf_test_iters(100000);
  rf_test_run_parallel(THREADS, churn, &c);
  assert_int_equal(atomic_load(&c.errors), 0);
  assert_int_equal(rf_kmutex_entries(c.km), 0);
  rf_kmutex_destroy(c.km);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_counters),
      cmocka_unit_test(test_distinct_keys_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
