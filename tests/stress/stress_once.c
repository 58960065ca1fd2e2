/* stress_once.c - 8 threads released together on a fresh rf_once_t, many
 * rounds: the init function runs exactly once per round when it succeeds,
 * and exactly (failures + 1) times when its first attempts fail, with half
 * of the callers using the callback form. */
#include <sched.h>
#include <stdatomic.h>

#include "racefree/once.h"
#include "rf_test.h"

#define THREADS 8

typedef struct {
  rf_once_t once;
  pthread_barrier_t start, end;
  long rounds;
  atomic_int runs;        /* fn invocations this round */
  atomic_int fails_left;  /* attempts still to fail this round */
  atomic_long total_runs; /* over all rounds */
  atomic_long cb_calls;
  atomic_long errors; /* callers that saw a status other than 0/RF_EIO */
  int payload;        /* written by fn, read by callers after success */
} world;

static int init_fn(void *arg) {
  world *w = arg;
  atomic_fetch_add(&w->runs, 1);
  atomic_fetch_add(&w->total_runs, 1);
  if (atomic_load(&w->fails_left) > 0) {
    atomic_fetch_sub(&w->fails_left, 1);
    return RF_EIO;
  }
  w->payload = 1234; /* plain write: published by the once's release store */
  return 0;
}

typedef struct {
  world *w;
  atomic_int status;
  atomic_int done;
} cb_slot;

static void on_done(int status, void *arg) {
  cb_slot *s = arg;
  atomic_fetch_add(&s->w->cb_calls, 1);
  atomic_store(&s->status, status);
  atomic_store(&s->done, 1); /* last: the waiter's frame may go right after */
}

static void worker(void *arg, int index) {
  world *w = arg;
  for (long r = 0; r < w->rounds; r++) {
    pthread_barrier_wait(&w->start);
    int rc;
    if (index % 2 == 0) {
      do {
        rc = rf_once_call(&w->once, init_fn, w);
      } while (rc == RF_EIO);
    } else {
      do {
        cb_slot s = {w, 0, 0};
        rc = rf_once_call_cb(&w->once, init_fn, w, on_done, &s);
        if (rc == 0) {
          while (!atomic_load(&s.done)) { /* the cb runs on the runner's thread */
            sched_yield();
          }
          rc = atomic_load(&s.status);
        }
      } while (rc == RF_EIO);
    }
    if (rc != 0 || w->payload != 1234) {
      atomic_fetch_add(&w->errors, 1);
    }
    pthread_barrier_wait(&w->end);
    if (index == 0) { /* between rounds: nobody inside */
      if (atomic_load(&w->runs) != 1 + (int)(r % 3)) {
        atomic_fetch_add(&w->errors, 1000);
      }
      rf_once_reset(&w->once);
      w->payload = 0;
      atomic_store(&w->runs, 0);
      atomic_store(&w->fails_left, (int)((r + 1) % 3)); /* 0, 1 or 2 failures */
    }
    pthread_barrier_wait(&w->end);
  }
}

static void test_stress(void **state) {
  (void)state;
  static world w = {.once = RF_ONCE_INIT};
  w.rounds = rf_test_iters(3000);
  atomic_store(&w.fails_left, 0);
  assert_int_equal(pthread_barrier_init(&w.start, NULL, THREADS), 0);
  assert_int_equal(pthread_barrier_init(&w.end, NULL, THREADS), 0);
  rf_test_run_parallel(THREADS, worker, &w);
  pthread_barrier_destroy(&w.start);
  pthread_barrier_destroy(&w.end);
  assert_int_equal(atomic_load(&w.errors), 0);
  /* rounds cycle through 0, 1, 2 failures: 1, 2, 3 runs */
  long expect = 0;
  for (long r = 0; r < w.rounds; r++) {
    expect += 1 + r % 3;
  }
  assert_int_equal(atomic_load(&w.total_runs), expect);
  assert_true(atomic_load(&w.cb_calls) >= w.rounds * (THREADS / 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
