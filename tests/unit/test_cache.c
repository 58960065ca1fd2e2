/* test_cache.c - the contract of rf_cache: hits and misses with exact
 * stats, TTL expiry, stale-while-revalidate, CLOCK eviction and the
 * max_entries bound, failures not cached, invalidation (also during a
 * load), the callback form, timeouts, deferred destroy, bad input and
 * allocation-failure torture. */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/cache.h"
#include "rf_test.h"

typedef struct {
  atomic_int loads;
  atomic_int fail; /* status to fail with, 0: succeed */
} loader_ctx;

/* Synchronous loader: "<key>:<n>" where n counts this context's loads. */
static void loader(rf_sf_call_t *call, const char *key, void *arg) {
  loader_ctx *l = arg;
  int n = atomic_fetch_add(&l->loads, 1) + 1;
  int fail = atomic_load(&l->fail);
  if (fail != 0) {
    assert_int_equal(rf_sf_complete(call, fail, NULL, 0, NULL), 0);
    return;
  }
  size_t len = strlen(key) + 16;
  char *v = malloc(len);
  assert_non_null(v);
  snprintf(v, len, "%s:%d", key, n);
  assert_int_equal(rf_sf_complete(call, 0, v, strlen(v), free), 0);
}

/* Gets `key` and checks source and value; returns the source. */
static void expect_get(rf_cache_t *c, const char *key, loader_ctx *l, rf_cache_src_t src,
                       const char *value) {
  rf_sf_result_t *r = NULL;
  rf_cache_src_t got = (rf_cache_src_t)-1;
  assert_int_equal(rf_cache_get(c, key, loader, l, -1, &r, &got), 0);
  assert_int_equal(got, src);
  if (value != NULL) {
    assert_int_equal(rf_sf_result_status(r), 0);
    assert_string_equal(rf_sf_result_value(r, NULL), value);
  }
  rf_sf_result_release(r);
}

static rf_cache_t *make(size_t max, uint64_t ttl, uint64_t stale, unsigned stripes) {
  rf_cache_t *c = NULL;
  rf_cache_opts_t o = {max, ttl, stale, stripes};
  assert_int_equal(rf_cache_create(&c, &o), 0);
  return c;
}

static void expect_stats(rf_cache_t *c, uint64_t hits, uint64_t misses, uint64_t shared,
                         uint64_t loads, uint64_t failures, uint64_t evictions, uint64_t entries) {
  rf_cache_stats_t s;
  rf_cache_stats(c, &s);
  assert_int_equal(s.hits, hits);
  assert_int_equal(s.misses, misses);
  assert_int_equal(s.shared, shared);
  assert_int_equal(s.loads, loads);
  assert_int_equal(s.load_failures, failures);
  assert_int_equal(s.evictions, evictions);
  assert_int_equal(s.entries, entries);
}

static void test_hit_miss_stats(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 60000, 0, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1");
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1");
  expect_get(c, "b", &l, RF_CACHE_MISS, "b:2");
  expect_stats(c, 2, 2, 0, 2, 0, 0, 2);
  /* a result outlives the cache */
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_cache_get(c, "a", loader, &l, -1, &r, NULL), 0);
  rf_cache_destroy(c);
  assert_string_equal(rf_sf_result_value(r, NULL), "a:1");
  rf_sf_result_release(r);
}

static void test_ttl_expiry(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 40, 0, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1");
  rf_test_sleep_ms(60);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:2"); /* expired: loaded again */
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:2");
  expect_stats(c, 2, 2, 0, 2, 0, 0, 1); /* replaced in place */
  rf_cache_destroy(c);

  /* ttl 0: never expires */
  c = make(100, 0, 0, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:3");
  rf_test_sleep_ms(20);
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:3");
  rf_cache_destroy(c);
}

static void test_stale_while_revalidate(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 40, 10000, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  rf_test_sleep_ms(60);
  /* stale: served as a hit, and this hit refreshes it (sync loader) */
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1");
  assert_int_equal(atomic_load(&l.loads), 2);
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:2");
  rf_cache_stats_t s;
  rf_cache_stats(c, &s);
  assert_int_equal(s.stale_hits, 1);
  assert_int_equal(s.refreshes, 1);
  assert_int_equal(s.hits, 2);
  assert_int_equal(s.misses, 1);
  assert_int_equal(s.loads, 2);
  rf_cache_destroy(c);

  /* past ttl + stale: a plain miss */
  c = make(100, 20, 20, 0);
  expect_get(c, "b", &l, RF_CACHE_MISS, "b:3");
  rf_test_sleep_ms(60);
  expect_get(c, "b", &l, RF_CACHE_MISS, "b:4");
  rf_cache_destroy(c);
}

/* rf_cache_peek: fresh entries only, counted as hits; a miss or a stale
 * entry is RF_ENOENT, loads nothing and counts nothing. */
static void test_peek(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 40, 10000, 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_cache_peek(c, "a", &r), RF_ENOENT);
  assert_null(r);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  assert_int_equal(rf_cache_peek(c, "a", &r), 0);
  assert_string_equal(rf_sf_result_value(r, NULL), "a:1");
  rf_sf_result_release(r);
  r = NULL;
  expect_stats(c, 1, 1, 0, 1, 0, 0, 1);
  rf_test_sleep_ms(60);
  assert_int_equal(rf_cache_peek(c, "a", &r), RF_ENOENT); /* stale: left to get */
  assert_null(r);
  expect_stats(c, 1, 1, 0, 1, 0, 0, 1);
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1"); /* the stale hit refreshes */
  assert_int_equal(rf_cache_peek(c, "a", &r), 0);
  assert_string_equal(rf_sf_result_value(r, NULL), "a:2");
  rf_sf_result_release(r);
  assert_int_equal(rf_cache_peek(NULL, "a", &r), RF_EINVAL);
  assert_int_equal(rf_cache_peek(c, NULL, &r), RF_EINVAL);
  assert_int_equal(rf_cache_peek(c, "a", NULL), RF_EINVAL);
  rf_cache_destroy(c);
}

static void test_failed_refresh(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 30, 10000, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  rf_test_sleep_ms(50);
  atomic_store(&l.fail, RF_EUNAVAIL);
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1"); /* refresh fails */
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1"); /* stale value kept, no retry */
  assert_int_equal(atomic_load(&l.loads), 2);
  rf_cache_stats_t s;
  rf_cache_stats(c, &s);
  assert_int_equal(s.load_failures, 1);
  assert_int_equal(s.refreshes, 1);
  rf_cache_destroy(c);
}

static void test_clock_eviction(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(4, 60000, 0, 1);
  expect_get(c, "a", &l, RF_CACHE_MISS, NULL);
  expect_get(c, "b", &l, RF_CACHE_MISS, NULL);
  expect_get(c, "c", &l, RF_CACHE_MISS, NULL);
  expect_get(c, "d", &l, RF_CACHE_MISS, NULL);
  expect_get(c, "a", &l, RF_CACHE_HIT, NULL); /* a gets its second chance */
  expect_get(c, "e", &l, RF_CACHE_MISS, NULL);
  expect_stats(c, 1, 5, 0, 5, 0, 1, 4);
  expect_get(c, "a", &l, RF_CACHE_HIT, "a:1"); /* survived */
  expect_get(c, "b", &l, RF_CACHE_MISS, NULL); /* was the victim */
  expect_stats(c, 2, 6, 0, 6, 0, 2, 4);
  rf_cache_destroy(c);
}

static void test_bound_never_exceeded(void **state) {
  (void)state;
  static const struct {
    size_t max;
    unsigned stripes;
  } cases[] = {{1, 0}, {5, 8}, {3000, 0}, {3000, 16}};
  for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
    loader_ctx l = {0};
    rf_cache_t *c = make(cases[k].max, 60000, 0, cases[k].stripes);
    const int n = 10000;
    for (int i = 0; i < n; i++) {
      char key[32];
      snprintf(key, sizeof(key), "key-%d", i);
      expect_get(c, key, &l, RF_CACHE_MISS, NULL);
      rf_cache_stats_t s;
      rf_cache_stats(c, &s);
      assert_true(s.entries <= cases[k].max);
    }
    rf_cache_stats_t s;
    rf_cache_stats(c, &s);
    assert_int_equal(s.entries + s.evictions, n);
    assert_int_equal(s.entries, cases[k].max); /* every stripe filled up */
    rf_cache_destroy(c);
  }
}

static void test_failure_not_cached(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 60000, 0, 0);
  atomic_store(&l.fail, RF_EUNAVAIL);
  rf_sf_result_t *r = NULL;
  rf_cache_src_t src = RF_CACHE_HIT;
  assert_int_equal(rf_cache_get(c, "fail-x", loader, &l, -1, &r, &src), 0);
  assert_int_equal(src, RF_CACHE_MISS);
  assert_int_equal(rf_sf_result_status(r), RF_EUNAVAIL);
  rf_sf_result_release(r);
  expect_stats(c, 0, 1, 0, 1, 1, 0, 0);
  assert_int_equal(rf_cache_get(c, "fail-x", loader, &l, -1, &r, &src), 0);
  assert_int_equal(src, RF_CACHE_MISS); /* loaded again */
  rf_sf_result_release(r);
  atomic_store(&l.fail, 0);
  expect_get(c, "fail-x", &l, RF_CACHE_MISS, "fail-x:3");
  expect_get(c, "fail-x", &l, RF_CACHE_HIT, "fail-x:3");
  expect_stats(c, 1, 3, 0, 3, 2, 0, 1);
  rf_cache_destroy(c);
}

static void test_invalidate(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 60000, 0, 0);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:1");
  assert_int_equal(rf_cache_invalidate(c, "a"), 0);
  assert_int_equal(rf_cache_invalidate(c, "a"), RF_ENOENT);
  expect_get(c, "a", &l, RF_CACHE_MISS, "a:2");
  expect_stats(c, 0, 2, 0, 2, 0, 0, 1);
  rf_cache_destroy(c);
}

/* Asynchronous loader: leaves the call in `pending`. */
static rf_sf_call_t *_Atomic pending;
static atomic_int async_loads;

static void async_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  atomic_fetch_add(&async_loads, 1);
  atomic_store(&pending, call);
}

static void complete_with(rf_sf_call_t *call, const char *s) {
  char *v = strdup(s);
  assert_int_equal(rf_sf_complete(call, 0, v, strlen(v), free), 0);
}

typedef struct {
  atomic_int calls;
  rf_cache_src_t src;
  rf_sf_result_t *res;
} cb_rec;

static void record_cb(rf_sf_result_t *res, rf_cache_src_t src, void *arg) {
  cb_rec *r = arg;
  r->res = res;
  r->src = src;
  atomic_fetch_add(&r->calls, 1);
}

static void test_cb_form(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 60000, 0, 0);
  cb_rec r1 = {0}, r2 = {0}, r3 = {0}, r4 = {0};
  assert_int_equal(rf_cache_get_cb(c, "a", loader, &l, record_cb, &r1), 0);
  assert_int_equal(atomic_load(&r1.calls), 1); /* sync loader: before return */
  assert_int_equal(r1.src, RF_CACHE_MISS);
  assert_int_equal(rf_cache_get_cb(c, "a", loader, &l, record_cb, &r2), 0);
  assert_int_equal(atomic_load(&r2.calls), 1); /* hit: synchronous */
  assert_int_equal(r2.src, RF_CACHE_HIT);
  assert_ptr_equal(r1.res, r2.res);
  /* an async load, joined by a second callback */
  assert_int_equal(rf_cache_get_cb(c, "b", async_loader, NULL, record_cb, &r3), 0);
  assert_int_equal(rf_cache_get_cb(c, "b", async_loader, NULL, record_cb, &r4), 0);
  assert_int_equal(atomic_load(&r3.calls) + atomic_load(&r4.calls), 0);
  complete_with(atomic_exchange(&pending, NULL), "B");
  assert_int_equal(r3.src, RF_CACHE_MISS);
  assert_int_equal(r4.src, RF_CACHE_SHARED);
  assert_ptr_equal(r3.res, r4.res);
  expect_get(c, "b", &l, RF_CACHE_HIT, "B");
  expect_stats(c, 2, 2, 1, 2, 0, 0, 2);
  rf_sf_result_release(r1.res);
  rf_sf_result_release(r2.res);
  rf_sf_result_release(r3.res);
  rf_sf_result_release(r4.res);
  rf_cache_destroy(c);
}

static void test_timeout_and_invalidate_during_load(void **state) {
  (void)state;
  loader_ctx l = {0};
  rf_cache_t *c = make(100, 60000, 0, 0);
  rf_sf_result_t *r = NULL;
  rf_cache_src_t src;
  /* the starter gives up at once; the load goes on and is cached */
  assert_int_equal(rf_cache_get(c, "a", async_loader, NULL, 0, &r, &src), RF_ETIMEDOUT);
  complete_with(atomic_exchange(&pending, NULL), "A");
  expect_get(c, "a", &l, RF_CACHE_HIT, "A");
  expect_stats(c, 1, 1, 0, 1, 0, 0, 1);

  /* invalidated while loading: its waiter is served, nothing is cached */
  cb_rec rec = {0};
  assert_int_equal(rf_cache_get_cb(c, "b", async_loader, NULL, record_cb, &rec), 0);
  assert_int_equal(rf_cache_invalidate(c, "b"), 0);
  complete_with(atomic_exchange(&pending, NULL), "old-b");
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_string_equal(rf_sf_result_value(rec.res, NULL), "old-b");
  rf_sf_result_release(rec.res);
  expect_get(c, "b", &l, RF_CACHE_MISS, "b:1");
  rf_cache_destroy(c);
}

static void test_destroy_with_load_in_flight(void **state) {
  (void)state;
  rf_cache_t *c = make(100, 60000, 0, 0);
  cb_rec rec = {0};
  assert_int_equal(rf_cache_get_cb(c, "a", async_loader, NULL, record_cb, &rec), 0);
  rf_cache_destroy(c);
  complete_with(atomic_exchange(&pending, NULL), "late");
  assert_int_equal(atomic_load(&rec.calls), 1);
  assert_int_equal(rec.src, RF_CACHE_MISS);
  assert_string_equal(rf_sf_result_value(rec.res, NULL), "late");
  rf_sf_result_release(rec.res); /* ASan: nothing else left */
}

/* A value's free function is user code: it may call back into the cache.
 * Here the eviction done by b's insert frees a, whose free function
 * invalidates b -- the key whose flight is completing. Deadlocks if the
 * library ran it under the flight's bucket lock or the stripe lock. */
static rf_cache_t *reent_cache;
static atomic_int reent_frees;

static void reentrant_free(void *p) {
  free(p);
  atomic_fetch_add(&reent_frees, 1);
  rf_cache_stats_t s;
  rf_cache_stats(reent_cache, &s);
  (void)rf_cache_invalidate(reent_cache, "b");
}

static void reentrant_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  char *v = strdup(key);
  assert_int_equal(rf_sf_complete(call, 0, v, strlen(v), reentrant_free), 0);
}

static void test_free_fn_may_reenter(void **state) {
  (void)state;
  reent_cache = make(1, 60000, 0, 1);
  atomic_store(&reent_frees, 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_cache_get(reent_cache, "a", reentrant_loader, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r); /* the cache holds a's last reference */
  assert_int_equal(rf_cache_get(reent_cache, "b", reentrant_loader, NULL, -1, &r, NULL), 0);
  assert_int_equal(atomic_load(&reent_frees), 1); /* a evicted and freed */
  rf_cache_stats_t s;
  rf_cache_stats(reent_cache, &s);
  assert_int_equal(s.evictions, 1);
  assert_int_equal(s.entries, 0); /* a's free function invalidated b */
  rf_sf_result_release(r);
  assert_int_equal(atomic_load(&reent_frees), 2);
  rf_cache_destroy(reent_cache);
}

static void test_bad_input(void **state) {
  (void)state;
  rf_cache_t *c = NULL;
  rf_cache_opts_t o = {10, 1000, 0, 0};
  loader_ctx l = {0};
  rf_sf_result_t *r = NULL;
  cb_rec rec = {0};
  assert_int_equal(rf_cache_create(NULL, &o), RF_EINVAL);
  assert_int_equal(rf_cache_create(&c, NULL), RF_EINVAL);
  o.max_entries = 0;
  assert_int_equal(rf_cache_create(&c, &o), RF_EINVAL);
  o.max_entries = RF_CACHE_MAX_ENTRIES + 1;
  assert_int_equal(rf_cache_create(&c, &o), RF_ERANGE);
  o.max_entries = 10;
  o.ttl_ms = UINT64_MAX;
  assert_int_equal(rf_cache_create(&c, &o), RF_ERANGE);
  o.ttl_ms = 1000;
  o.stale_ms = UINT64_MAX;
  assert_int_equal(rf_cache_create(&c, &o), RF_ERANGE);
  o.stale_ms = 0;
  o.stripes = 100000; /* clamped, not an error */
  assert_int_equal(rf_cache_create(&c, &o), 0);
  assert_int_equal(rf_cache_get(NULL, "k", loader, &l, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_cache_get(c, NULL, loader, &l, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_cache_get(c, "k", NULL, &l, -1, &r, NULL), RF_EINVAL);
  assert_int_equal(rf_cache_get(c, "k", loader, &l, -1, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_cache_get_cb(NULL, "k", loader, &l, record_cb, &rec), RF_EINVAL);
  assert_int_equal(rf_cache_get_cb(c, NULL, loader, &l, record_cb, &rec), RF_EINVAL);
  assert_int_equal(rf_cache_get_cb(c, "k", NULL, &l, record_cb, &rec), RF_EINVAL);
  assert_int_equal(rf_cache_get_cb(c, "k", loader, &l, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_cache_invalidate(NULL, "k"), RF_EINVAL);
  assert_int_equal(rf_cache_invalidate(c, NULL), RF_EINVAL);
  assert_int_equal(atomic_load(&rec.calls), 0);
  assert_int_equal(atomic_load(&l.loads), 0);
  rf_cache_stats_t s;
  memset(&s, 0xff, sizeof(s));
  rf_cache_stats(NULL, &s);
  assert_int_equal(s.hits, 0);
  rf_cache_stats(c, NULL);
  rf_cache_destroy(c);
  rf_cache_destroy(NULL);
}

/* Fails the 0th, 1st, ... allocation of a whole scenario in turn. */
static void test_alloc_torture(void **state) {
  (void)state;
  bool clean = false;
  for (long n = 0; n < 200 && !clean; n++) {
    loader_ctx l = {0};
    rf_cache_t *c = NULL;
    rf_cache_opts_t o = {2, 60000, 0, 1};
    rf_test_fail_alloc_after(n);
    int rc = rf_cache_create(&c, &o);
    if (rc != 0) {
      assert_int_equal(rc, RF_ENOMEM);
      continue;
    }
    int bad = 0;
    const char *keys[] = {"a", "a", "b", "c", "a"};
    for (size_t i = 0; i < 5; i++) {
      rf_sf_result_t *r = NULL;
      rc = rf_cache_get(c, keys[i], loader, &l, -1, &r, NULL);
      bad += rc != 0;
      assert_true(rc == 0 || rc == RF_ENOMEM);
      rf_sf_result_release(r);
    }
    cb_rec rec = {0};
    rc = rf_cache_get_cb(c, "d", loader, &l, record_cb, &rec);
    assert_true(rc == 0 || rc == RF_ENOMEM);
    assert_int_equal(atomic_load(&rec.calls), rc == 0 ? 1 : 0);
    bad += rc != 0;
    rf_sf_result_release(rec.res);
    rc = rf_cache_invalidate(c, "d");
    assert_true(rc == 0 || rc == RF_ENOENT);
    rf_test_fail_alloc_after(-1);
    rf_cache_stats_t s;
    rf_cache_stats(c, &s);
    assert_true(s.entries <= 2);
    rf_cache_destroy(c);
    clean = bad == 0 && s.loads == 4 && s.hits == 2;
  }
  assert_true(clean);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hit_miss_stats),
      cmocka_unit_test(test_ttl_expiry),
      cmocka_unit_test(test_stale_while_revalidate),
      cmocka_unit_test(test_peek),
      cmocka_unit_test(test_failed_refresh),
      cmocka_unit_test(test_clock_eviction),
      cmocka_unit_test(test_bound_never_exceeded),
      cmocka_unit_test(test_failure_not_cached),
      cmocka_unit_test(test_invalidate),
      cmocka_unit_test(test_cb_form),
      cmocka_unit_test(test_timeout_and_invalidate_during_load),
      cmocka_unit_test(test_destroy_with_load_in_flight),
      cmocka_unit_test(test_free_fn_may_reenter),
      cmocka_unit_test(test_bad_input),
      cmocka_unit_test(test_alloc_torture),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
