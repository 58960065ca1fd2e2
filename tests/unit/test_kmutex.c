/* test_kmutex.c - keyed mutex: exclusion, FIFO hand-over, timeouts, callback
 * waiters, bounded memory, bad input, allocation failure. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "rf_test.h"
#include "racefree/kmutex.h"
#include "racefree/timer.h"

/* Poll (bounded) until `key` has n queued waiters: waiting for a state, not
 * hoping a sleep is long enough. */
static void wait_waiters(rf_kmutex_t *km, const char *key, size_t n) {
  uint64_t limit = rf_test_now_ms() + 5000;
  while (rf_kmutex_waiters(km, key) != n && rf_test_now_ms() < limit) {
    rf_test_sleep_ms(1);
  }
  assert_int_equal(rf_kmutex_waiters(km, key), n);
}

static void wait_atomic(atomic_int *v, int want) {
  uint64_t limit = rf_test_now_ms() + 5000;
  while (atomic_load(v) != want && rf_test_now_ms() < limit) {
    rf_test_sleep_ms(1);
  }
  assert_int_equal(atomic_load(v), want);
}

static void test_bad_input(void **state) {
  (void)state;
  rf_kmutex_t *km;
  assert_int_equal(rf_kmutex_create(NULL), RF_EINVAL);
  assert_int_equal(rf_kmutex_lock(NULL, "k", 0), RF_EINVAL);
  assert_int_equal(rf_kmutex_trylock(NULL, "k"), RF_EINVAL);
  assert_int_equal(rf_kmutex_unlock(NULL, "k"), RF_EINVAL);
  assert_int_equal(rf_kmutex_entries(NULL), 0);
  assert_int_equal(rf_kmutex_waiters(NULL, "k"), 0);
  rf_kmutex_destroy(NULL);
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, NULL, 0), RF_EINVAL);
  assert_int_equal(rf_kmutex_trylock(km, NULL), RF_EINVAL);
  assert_int_equal(rf_kmutex_unlock(km, NULL), RF_EINVAL);
  assert_int_equal(rf_kmutex_lock_cb(km, "k", 0, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_kmutex_lock_cb(km, NULL, 0, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_kmutex_unlock(km, "never"), RF_ESTATE);
  assert_int_equal(rf_kmutex_waiters(km, NULL), 0);
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km);
}

static void test_basic(void **state) {
  (void)state;
  rf_kmutex_t *km;
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, "user:1", -1), 0);
  assert_int_equal(rf_kmutex_entries(km), 1);
  assert_int_equal(rf_kmutex_trylock(km, "user:1"), RF_EBUSY);
  assert_int_equal(rf_kmutex_trylock(km, "user:2"), 0); /* other keys are independent */
  assert_int_equal(rf_kmutex_trylock(km, ""), 0);       /* the empty key is a key */
  assert_int_equal(rf_kmutex_entries(km), 3);
  assert_int_equal(rf_kmutex_unlock(km, "user:1"), 0);
  assert_int_equal(rf_kmutex_unlock(km, "user:1"), RF_ESTATE);
  assert_int_equal(rf_kmutex_unlock(km, "user:2"), 0);
  assert_int_equal(rf_kmutex_unlock(km, ""), 0);
  assert_int_equal(rf_kmutex_entries(km), 0);
  /* Held keys left at destroy are simply forgotten (no leak). */
  assert_int_equal(rf_kmutex_lock(km, "left", 0), 0);
  rf_kmutex_destroy(km);
}

static void test_timeout(void **state) {
  (void)state;
  rf_kmutex_t *km;
  assert_int_equal(rf_kmutex_create(&km), 0);
  assert_int_equal(rf_kmutex_lock(km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock(km, "k", 0), RF_ETIMEDOUT);
  uint64_t t0 = rf_test_now_ms();
  assert_int_equal(rf_kmutex_lock(km, "k", 30), RF_ETIMEDOUT);
  assert_true(rf_test_now_ms() - t0 >= 30);
  assert_int_equal(rf_kmutex_waiters(km, "k"), 0); /* removed itself */
  assert_int_equal(rf_kmutex_entries(km), 1);
  assert_int_equal(rf_kmutex_unlock(km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km);
}

/* ---------------------------------------------------- blocking FIFO */

typedef struct {
  rf_kmutex_t *km;
  pthread_mutex_t mu;
  int order[8];
  int n;
} fifo_ctx;

typedef struct {
  fifo_ctx *ctx;
  int tag;
  int rc;
  int unlock_rc;
} fifo_arg;

static void *fifo_waiter(void *p) {
  fifo_arg *a = p;
  a->rc = rf_kmutex_lock(a->ctx->km, "k", 10000);
  if (a->rc == 0) {
    pthread_mutex_lock(&a->ctx->mu);
    a->ctx->order[a->ctx->n++] = a->tag;
    pthread_mutex_unlock(&a->ctx->mu);
    /* unlocked by another thread than the one that will lock next */
    a->unlock_rc = rf_kmutex_unlock(a->ctx->km, "k");
  }
  return NULL;
}

static void test_blocking_fifo_handover(void **state) {
  (void)state;
  fifo_ctx ctx = {.n = 0};
  pthread_mutex_init(&ctx.mu, NULL);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", -1), 0);
  fifo_arg args[4];
  pthread_t th[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (fifo_arg){&ctx, i, -99, -99};
    th[i] = rf_test_spawn(fifo_waiter, &args[i]);
    wait_waiters(ctx.km, "k", (size_t)i + 1); /* queued in this order */
  }
  /* A newcomer cannot barge in ahead of the queue. */
  assert_int_equal(rf_kmutex_trylock(ctx.km, "k"), RF_EBUSY);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  for (int i = 0; i < 4; i++) {
    rf_test_join(th[i]);
    assert_int_equal(args[i].rc, 0);
    assert_int_equal(args[i].unlock_rc, 0);
  }
  assert_int_equal(ctx.n, 4);
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ctx.order[i], i);
  }
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  rf_kmutex_destroy(ctx.km);
  pthread_mutex_destroy(&ctx.mu);
}

/* ---------------------------------------------------- bounded memory */

static void test_entries_bounded(void **state) {
  (void)state;
  rf_kmutex_t *km;
  char key[32];
  assert_int_equal(rf_kmutex_create(&km), 0);
  long n = rf_test_iters(1000000);
  for (long i = 0; i < n; i++) {
    snprintf(key, sizeof(key), "order-%ld", i);
    assert_int_equal(rf_kmutex_lock(km, key, 0), 0);
    if (i % 4096 == 0) {
      assert_int_equal(rf_kmutex_entries(km), 1);
    }
    assert_int_equal(rf_kmutex_unlock(km, key), 0);
  }
  assert_int_equal(rf_kmutex_entries(km), 0);
  /* Many held at once (the stripes' tables grow), then all released. */
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "held-%d", i);
    assert_int_equal(rf_kmutex_trylock(km, key), 0);
  }
  assert_int_equal(rf_kmutex_entries(km), 5000);
  for (int i = 0; i < 5000; i++) {
    snprintf(key, sizeof(key), "held-%d", i);
    assert_int_equal(rf_kmutex_trylock(km, key), RF_EBUSY);
    assert_int_equal(rf_kmutex_unlock(km, key), 0);
  }
  assert_int_equal(rf_kmutex_entries(km), 0);
  rf_kmutex_destroy(km);
}

/* ---------------------------------------------------- callback waiters */

typedef struct {
  rf_kmutex_t *km;
  const char *key;
  int *order;
  atomic_int n;
  atomic_int status_sum;
  bool unlock_in_cb;
  pthread_t granted_on;
} cb_ctx;

typedef struct {
  cb_ctx *ctx;
  int tag;
  atomic_int calls;
  atomic_int status;
} cb_arg;

static void record_cb(int status, void *p) {
  cb_arg *a = p;
  cb_ctx *c = a->ctx;
  c->granted_on = pthread_self(); /* published by the atomic store of calls below */
  atomic_store(&a->status, status);
  if (status == 0) {
    int i = atomic_fetch_add(&c->n, 1);
    if (c->order != NULL) {
      c->order[i] = a->tag;
    }
    if (c->unlock_in_cb) {
      assert_int_equal(rf_kmutex_unlock(c->km, c->key), 0);
    }
  } else {
    atomic_fetch_add(&c->status_sum, status);
  }
  atomic_fetch_add(&a->calls, 1);
}

static void test_cb_sync_grant(void **state) {
  (void)state;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1};
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 100, NULL, record_cb, &a), 0);
  assert_int_equal(atomic_load(&a.calls), 1); /* before return */
  assert_int_equal(atomic_load(&a.status), 0);
  assert_true(pthread_equal(ctx.granted_on, pthread_self()));
  /* Busy and timeout 0: cb(RF_ETIMEDOUT) before return. */
  cb_arg b = {.ctx = &ctx, .tag = 2};
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 0, NULL, record_cb, &b), 0);
  assert_int_equal(atomic_load(&b.calls), 1);
  assert_int_equal(atomic_load(&b.status), RF_ETIMEDOUT);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  rf_kmutex_destroy(ctx.km);
}

/* A long chain of callback waiters, each unlocking inside its callback:
 * granted FIFO, all within the first unlock, without the stack growing
 * with the queue (recursion 100k deep would overflow the stack). */
static void test_cb_fifo_chain_no_recursion(void **state) {
  (void)state;
  const int n = (int)rf_test_iters(100000);
  cb_ctx ctx = {.key = "k", .unlock_in_cb = true};
  ctx.order = calloc((size_t)n, sizeof(int));
  cb_arg *args = calloc((size_t)n, sizeof(cb_arg));
  assert_non_null(ctx.order);
  assert_non_null(args);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  for (int i = 0; i < n; i++) {
    args[i].ctx = &ctx;
    args[i].tag = i;
    assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", -1, NULL, record_cb, &args[i]), 0);
  }
  assert_int_equal(rf_kmutex_waiters(ctx.km, "k"), (size_t)n);
  assert_int_equal(atomic_load(&ctx.n), 0);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(atomic_load(&ctx.n), n); /* all ran before unlock returned */
  for (int i = 0; i < n; i++) {
    assert_int_equal(ctx.order[i], i);
    assert_int_equal(atomic_load(&args[i].calls), 1);
  }
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  rf_kmutex_destroy(ctx.km);
  free(args);
  free(ctx.order);
}

static void test_cb_timeout_on_timer_thread(void **state) {
  (void)state;
  rf_timer_t *t;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  uint64_t t0 = rf_test_now_ms();
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 20, t, record_cb, &a), 0);
  assert_int_equal(atomic_load(&a.calls), 0);
  wait_atomic(&a.calls, 1);
  assert_true(rf_test_now_ms() - t0 >= 20);
  assert_int_equal(atomic_load(&a.status), RF_ETIMEDOUT);
  assert_false(pthread_equal(ctx.granted_on, pthread_self()));
  assert_int_equal(rf_kmutex_waiters(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(ctx.km), 1); /* still held by us */
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  rf_kmutex_destroy(ctx.km);
  rf_timer_destroy(t);
}

static void test_cb_granted_cancels_timeout(void **state) {
  (void)state;
  rf_timer_t *t;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 60000, t, record_cb, &a), 0);
  assert_int_equal(rf_timer_pending(t), 1);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0); /* grants a on this thread */
  assert_int_equal(atomic_load(&a.calls), 1);
  assert_int_equal(atomic_load(&a.status), 0);
  assert_true(pthread_equal(ctx.granted_on, pthread_self()));
  assert_int_equal(rf_timer_pending(t), 0); /* its timeout was cancelled */
  assert_int_equal(rf_kmutex_entries(ctx.km), 1);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  /* timer NULL: the timeout is ignored, the request waits until granted. */
  cb_arg b = {.ctx = &ctx, .tag = 2};
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 5, NULL, record_cb, &b), 0);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(atomic_load(&b.status), 0);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  rf_kmutex_destroy(ctx.km);
  rf_timer_destroy(t);
}

static void test_cb_timer_shut_down(void **state) {
  (void)state;
  rf_timer_t *t;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_timer_shutdown(t, false), 0);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 100, t, record_cb, &a), RF_ESHUTDOWN);
  assert_int_equal(atomic_load(&a.calls), 0); /* error: cb never runs */
  assert_int_equal(rf_kmutex_waiters(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0);
  assert_int_equal(rf_kmutex_entries(ctx.km), 0);
  rf_kmutex_destroy(ctx.km);
  rf_timer_destroy(t);
}

/* The timer is shut down without running its timeouts while requests wait:
 * they stay queued (no timeout any more), are granted or cancelled normally,
 * and nothing hangs or leaks. */
static void test_cb_timer_dropped_under_waiters(void **state) {
  (void)state;
  rf_timer_t *t;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1}, b = {.ctx = &ctx, .tag = 2};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 60000, t, record_cb, &a), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 60000, t, record_cb, &b), 0);
  assert_int_equal(rf_timer_shutdown(t, false), 0);   /* timeouts dropped */
  assert_int_equal(rf_kmutex_unlock(ctx.km, "k"), 0); /* grants a */
  assert_int_equal(atomic_load(&a.calls), 1);
  assert_int_equal(atomic_load(&a.status), 0);
  rf_kmutex_destroy(ctx.km); /* cancels b; must not wait for its timeout */
  assert_int_equal(atomic_load(&b.calls), 1);
  assert_int_equal(atomic_load(&b.status), RF_ECANCELED);
  rf_timer_destroy(t);
}

static void test_destroy_cancels_cb_waiters(void **state) {
  (void)state;
  rf_timer_t *t;
  cb_ctx ctx = {.key = "k"};
  cb_arg a = {.ctx = &ctx, .tag = 1}, b = {.ctx = &ctx, .tag = 2};
  assert_int_equal(rf_timer_create(&t), 0);
  assert_int_equal(rf_kmutex_create(&ctx.km), 0);
  assert_int_equal(rf_kmutex_lock(ctx.km, "k", 0), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", 60000, t, record_cb, &a), 0);
  assert_int_equal(rf_kmutex_lock_cb(ctx.km, "k", -1, NULL, record_cb, &b), 0);
  rf_kmutex_destroy(ctx.km);
  assert_int_equal(atomic_load(&a.status), RF_ECANCELED);
  assert_int_equal(atomic_load(&b.status), RF_ECANCELED);
  assert_int_equal(atomic_load(&a.calls), 1);
  assert_int_equal(atomic_load(&b.calls), 1);
  assert_int_equal(rf_timer_pending(t), 0);
  rf_timer_destroy(t);
}

/* ---------------------------------------------------- allocation failure */

static void alloc_cb(int status, void *p) {
  atomic_int *calls = p;
  atomic_fetch_add(calls, 1);
  (void)status;
}

static void alloc_scenario(rf_timer_t *t) {
  rf_kmutex_t *km = NULL;
  atomic_int calls = 0;
  int rc = rf_kmutex_create(&km);
  if (rc != 0) {
    assert_int_equal(rc, RF_ENOMEM);
    assert_null(km);
    return;
  }
  char key[16];
  int held = 0;
  for (int i = 0; i < 40; i++) { /* enough to grow a stripe's table */
    snprintf(key, sizeof(key), "k%d", i);
    rc = i % 2 ? rf_kmutex_lock(km, key, 0) : rf_kmutex_trylock(km, key);
    if (rc == 0) {
      held |= i == 0;
      continue;
    }
    assert_int_equal(rc, RF_ENOMEM);
  }
  int accepted = 0;
  if (held) {
    rc = rf_kmutex_lock_cb(km, "k0", 60000, t, alloc_cb, &calls);
    if (rc == 0) {
      accepted++;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
    rc = rf_kmutex_lock_cb(km, "k0", -1, NULL, alloc_cb, &calls);
    if (rc == 0) {
      accepted++;
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
    assert_int_equal(rf_kmutex_unlock(km, "k0"), 0);
    assert_int_equal(atomic_load(&calls), accepted > 0 ? 1 : 0);
  }
  rf_kmutex_destroy(km); /* cancels the other one */
  assert_int_equal(atomic_load(&calls), accepted);
  assert_int_equal(rf_timer_pending(t), 0);
}

static void test_alloc_failures(void **state) {
  (void)state;
  rf_timer_t *t;
  assert_int_equal(rf_timer_create(&t), 0);
  unsigned long before = rf_test_alloc_count();
  alloc_scenario(t);
  long total = (long)(rf_test_alloc_count() - before);
  assert_true(total > 40);
  for (long n = 0; n < total; n++) {
    rf_test_fail_alloc_after(n);
    alloc_scenario(t);
  }
  rf_test_fail_alloc_after(-1);
  rf_timer_destroy(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_basic),
      cmocka_unit_test(test_timeout),
      cmocka_unit_test(test_blocking_fifo_handover),
      cmocka_unit_test(test_entries_bounded),
      cmocka_unit_test(test_cb_sync_grant),
      cmocka_unit_test(test_cb_fifo_chain_no_recursion),
      cmocka_unit_test(test_cb_timeout_on_timer_thread),
      cmocka_unit_test(test_cb_granted_cancels_timeout),
      cmocka_unit_test(test_cb_timer_shut_down),
      cmocka_unit_test(test_cb_timer_dropped_under_waiters),
      cmocka_unit_test(test_destroy_cancels_cb_waiters),
      cmocka_unit_test(test_alloc_failures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
