/* test_singleflight.c - the contract of rf_sf: results, failures, the
 * callback form, asynchronous completion, double completion, timeouts,
 * forget, deferred destroy, bad input and allocation failures. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/singleflight.h"
#include "rf_test.h"

static atomic_int loads;
static atomic_int frees;

static void count_free(void *p) {
  atomic_fetch_add(&frees, 1);
  free(p);
}

static void reset(void) {
  atomic_store(&loads, 0);
  atomic_store(&frees, 0);
}

/* Synchronous loader: value is a malloc'd copy of "v:<key>". */
static void sync_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  atomic_fetch_add(&loads, 1);
  size_t n = strlen(key) + 3;
  char *v = malloc(n);
  assert_non_null(v);
  snprintf(v, n, "v:%s", key);
  assert_int_equal(rf_sf_complete(call, 0, v, n - 1, count_free), 0);
}

static void failing_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  atomic_fetch_add(&loads, 1);
  assert_int_equal(rf_sf_complete(call, (int)(intptr_t)arg, NULL, 0, NULL), 0);
}

static void test_sync_do(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  rf_sf_result_t *r = NULL;
  bool shared = true;
  assert_int_equal(rf_sf_do(sf, "alpha", sync_loader, NULL, -1, &r, &shared), 0);
  assert_false(shared);
  assert_int_equal(rf_sf_result_status(r), 0);
  size_t len = 0;
  assert_string_equal(rf_sf_result_value(r, &len), "v:alpha");
  assert_int_equal(len, 7);
  assert_int_equal(rf_sf_inflight(sf), 0);
  /* singleflight does not cache: the next call loads again */
  rf_sf_result_t *r2 = NULL;
  assert_int_equal(rf_sf_do(sf, "alpha", sync_loader, NULL, 0, &r2, NULL), 0);
  assert_int_equal(atomic_load(&loads), 2);
  assert_ptr_not_equal(r, r2);
  assert_ptr_equal(rf_sf_result_retain(r), r);
  rf_sf_result_release(r);
  assert_int_equal(atomic_load(&frees), 0);
  rf_sf_result_release(r);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_result_release(r2);
  assert_int_equal(atomic_load(&frees), 2);
  rf_sf_destroy(sf);
}

static void test_failure(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_sf_do(sf, "k", failing_loader, (void *)(intptr_t)RF_EUNAVAIL, -1, &r, NULL),
                   0);
  assert_int_equal(rf_sf_result_status(r), RF_EUNAVAIL);
  size_t len = 99;
  assert_null(rf_sf_result_value(r, &len));
  assert_int_equal(len, 0);
  rf_sf_result_release(r);
  /* positive status is recorded as RF_ELOAD */
  assert_int_equal(rf_sf_do(sf, "k", failing_loader, (void *)(intptr_t)5, -1, &r, NULL), 0);
  assert_int_equal(rf_sf_result_status(r), RF_ELOAD);
  rf_sf_result_release(r);
  rf_sf_destroy(sf);
}

static atomic_int second_rc;

static void double_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  char *v1 = malloc(4);
  char *v2 = malloc(4);
  assert_int_equal(rf_sf_complete(call, 0, v1, 4, count_free), 0);
  atomic_store(&second_rc, rf_sf_complete(call, 0, v2, 4, count_free));
  free(v2); /* refused: ownership stayed here */
}

static void test_double_complete(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_sf_do(sf, "k", double_loader, NULL, -1, &r, NULL), 0);
  assert_int_equal(atomic_load(&second_rc), RF_ESTATE);
  rf_sf_result_release(r);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_destroy(sf);
}

typedef struct {
  atomic_int calls;
  atomic_int shared;
  rf_sf_result_t *res;
} cb_rec;

static void record_cb(rf_sf_result_t *res, bool shared, void *arg) {
  cb_rec *c = arg;
  c->res = res;
  atomic_store(&c->shared, shared);
  atomic_fetch_add(&c->calls, 1);
}

static void test_cb_sync(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  cb_rec c = {0};
  assert_int_equal(rf_sf_do_cb(sf, "beta", sync_loader, NULL, record_cb, &c), 0);
  assert_int_equal(atomic_load(&c.calls), 1); /* before return */
  assert_false(atomic_load(&c.shared));
  assert_string_equal(rf_sf_result_value(c.res, NULL), "v:beta");
  rf_sf_result_release(c.res);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_destroy(sf);
}

/* Asynchronous loader: parks the call in `pending` for the test to complete. */
static rf_sf_call_t *_Atomic pending;

static void async_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  atomic_fetch_add(&loads, 1);
  atomic_store(&pending, call);
}

typedef struct {
  rf_sf_call_t *call;
  int status;
} completer_arg;

static void *completer(void *p) {
  completer_arg *a = p;
  char *v = malloc(6);
  memcpy(v, "async", 6);
  return (void *)(intptr_t)rf_sf_complete(a->call, a->status, v, 5, count_free);
}

static void test_async_and_timeouts(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  cb_rec c1 = {0}, c2 = {0};
  assert_int_equal(rf_sf_do_cb(sf, "k", async_loader, NULL, record_cb, &c1), 0);
  rf_sf_call_t *call = atomic_exchange(&pending, NULL);
  assert_non_null(call);
  assert_int_equal(rf_sf_inflight(sf), 1);
  assert_int_equal(rf_sf_do_cb(sf, "k", async_loader, NULL, record_cb, &c2), 0);
  /* blocking waiters with short timeouts give up; the flight goes on */
  rf_sf_result_t *r = NULL;
  bool shared = false;
  assert_int_equal(rf_sf_do(sf, "k", async_loader, NULL, 0, &r, &shared), RF_ETIMEDOUT);
  assert_true(shared);
  assert_int_equal(rf_sf_do(sf, "k", async_loader, NULL, 20, &r, &shared), RF_ETIMEDOUT);
  assert_int_equal(atomic_load(&loads), 1);
  assert_int_equal(atomic_load(&c1.calls) + atomic_load(&c2.calls), 0);

  completer_arg a = {call, 0};
  pthread_t t = rf_test_spawn(completer, &a);
  assert_int_equal((int)(intptr_t)rf_test_join(t), 0);
  assert_int_equal(atomic_load(&c1.calls), 1);
  assert_int_equal(atomic_load(&c2.calls), 1);
  assert_false(atomic_load(&c1.shared));
  assert_true(atomic_load(&c2.shared));
  assert_ptr_equal(c1.res, c2.res);
  assert_string_equal(rf_sf_result_value(c1.res, NULL), "async");
  assert_int_equal(rf_sf_inflight(sf), 0);
  rf_sf_result_release(c1.res);
  assert_int_equal(atomic_load(&frees), 0);
  rf_sf_result_release(c2.res);
  assert_int_equal(atomic_load(&frees), 1);
  rf_sf_destroy(sf);
}

static void test_forget(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  assert_int_equal(rf_sf_forget(sf, "k"), RF_ENOENT);
  cb_rec c1 = {0}, c2 = {0};
  assert_int_equal(rf_sf_do_cb(sf, "k", async_loader, NULL, record_cb, &c1), 0);
  rf_sf_call_t *first = atomic_exchange(&pending, NULL);
  assert_int_equal(rf_sf_forget(sf, "k"), 0);
  assert_int_equal(rf_sf_inflight(sf), 0);
  assert_int_equal(rf_sf_forget(sf, "k"), RF_ENOENT);
  /* the next call starts a new flight */
  assert_int_equal(rf_sf_do_cb(sf, "k", async_loader, NULL, record_cb, &c2), 0);
  rf_sf_call_t *second = atomic_exchange(&pending, NULL);
  assert_ptr_not_equal(first, second);
  assert_int_equal(atomic_load(&loads), 2);
  assert_false(atomic_load(&c2.shared));
  assert_int_equal(rf_sf_complete(second, 0, NULL, 0, NULL), 0);
  assert_int_equal(atomic_load(&c2.calls), 1);
  assert_int_equal(rf_sf_complete(first, RF_EIO, NULL, 0, NULL), 0);
  assert_int_equal(atomic_load(&c1.calls), 1); /* the detached flight's waiter */
  assert_int_equal(rf_sf_result_status(c1.res), RF_EIO);
  rf_sf_result_release(c1.res);
  rf_sf_result_release(c2.res);
  rf_sf_destroy(sf);
}

static void test_deferred_destroy(void **state) {
  (void)state;
  reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  cb_rec c = {0};
  assert_int_equal(rf_sf_do_cb(sf, "k", async_loader, NULL, record_cb, &c), 0);
  rf_sf_call_t *call = atomic_exchange(&pending, NULL);
  rf_sf_destroy(sf); /* flight still in progress: memory stays until it ends */
  char *v = malloc(2);
  assert_int_equal(rf_sf_complete(call, 0, v, 1, count_free), 0);
  assert_int_equal(atomic_load(&c.calls), 1);
  rf_sf_result_release(c.res);
  assert_int_equal(atomic_load(&frees), 1);
  /* ASan's leak check proves the table went with the last flight. */
}

static void test_bad_input(void **state) {
  (void)state;
  rf_sf_t *sf = NULL;
  rf_sf_result_t *r = NULL;
  cb_rec c = {0};
  assert_int_equal(rf_sf_create(NULL), RF_EINVAL);
  assert_int_equal(rf_sf_create(&sf), 0);
  assert_int_equal(rf_sf_do(NULL, "k", sync_loader, NULL, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_do(sf, NULL, sync_loader, NULL, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_do(sf, "k", NULL, NULL, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_do(sf, "k", sync_loader, NULL, -1, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_do_cb(NULL, "k", sync_loader, NULL, record_cb, &c), RF_EINVAL);
  assert_int_equal(rf_sf_do_cb(sf, NULL, sync_loader, NULL, record_cb, &c), RF_EINVAL);
  assert_int_equal(rf_sf_do_cb(sf, "k", NULL, NULL, record_cb, &c), RF_EINVAL);
  assert_int_equal(rf_sf_do_cb(sf, "k", sync_loader, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_forget(NULL, "k"), RF_EINVAL);
  assert_int_equal(rf_sf_forget(sf, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_complete(NULL, 0, NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_sf_result_status(NULL), RF_EINVAL);
  size_t len = 3;
  assert_null(rf_sf_result_value(NULL, &len));
  assert_int_equal(len, 0);
  assert_null(rf_sf_result_retain(NULL));
  rf_sf_result_release(NULL);
  assert_int_equal(rf_sf_inflight(NULL), 0);
  assert_int_equal(atomic_load(&c.calls), 0);
  /* the empty key is a key like any other */
  assert_int_equal(rf_sf_do(sf, "", sync_loader, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r);
  rf_sf_destroy(sf);
  rf_sf_destroy(NULL);
}

/* Fails the 0th, 1st, ... allocation of a create/do/do_cb sequence in turn:
 * every error path must release what it took (ASan's leak check). */
static void test_alloc_torture(void **state) {
  (void)state;
  int completed = 0;
  for (long n = 0; n < 64 && !completed; n++) {
    reset();
    rf_sf_t *sf = NULL;
    rf_test_fail_alloc_after(n);
    int rc = rf_sf_create(&sf);
    if (rc != 0) {
      assert_int_equal(rc, RF_ENOMEM);
      continue;
    }
    rf_sf_result_t *r = NULL;
    rc = rf_sf_do(sf, "torture", sync_loader, NULL, -1, &r, NULL);
    assert_true(rc == 0 || rc == RF_ENOMEM);
    rf_sf_result_release(r);
    cb_rec c = {0};
    int rc2 = rf_sf_do_cb(sf, "torture", sync_loader, NULL, record_cb, &c);
    assert_true(rc2 == 0 || rc2 == RF_ENOMEM);
    assert_int_equal(atomic_load(&c.calls), rc2 == 0 ? 1 : 0);
    rf_sf_result_release(c.res);
    rf_test_fail_alloc_after(-1);
    rf_sf_destroy(sf);
    assert_int_equal(atomic_load(&frees), atomic_load(&loads));
    completed = rc == 0 && rc2 == 0;
  }
  assert_true(completed);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sync_do),
      cmocka_unit_test(test_failure),
      cmocka_unit_test(test_double_complete),
      cmocka_unit_test(test_cb_sync),
      cmocka_unit_test(test_async_and_timeouts),
      cmocka_unit_test(test_forget),
      cmocka_unit_test(test_deferred_destroy),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_alloc_torture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
