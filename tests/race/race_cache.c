/* race_cache.c - the article's cache races, forced with hooks, against
 * naive twins and against rf_cache.
 *
 * 1. Check-then-act (the article's CacheService.get):
 *      if (cache.has(k)) return; if (loading.has(k)) wait;
 *      RF_HOOK(...); loading.add(k); fetch();
 *    A and B both pass the checks: two fetches. rf_cache_get, both callers
 *    parked where they found no flight: one load, the other caller gets
 *    RF_CACHE_SHARED and the same value.
 * 2. The gap between "not cached" and "not loading": a cache glued to a
 *    plain singleflight that inserts after the flight has left the table.
 *    B parks after its cache miss; A loads, the flight ends, A inserts; B's
 *    singleflight finds no flight and loads again. rf_cache inserts before
 *    the flight leaves the table and re-checks: B gets A's value as a hit.
 * 3. Invalidation during a load: a naive cache stores the value loaded
 *    before the invalidation, which then survives it. rf_cache does not.
 * 4. A lock-free hit against the removal of its entry: a reader has found
 *    the entry and is about to take a reference on its value when another
 *    thread invalidates the key. A naive lock-free map frees the entry at
 *    once: the reader goes on with freed memory. rf_cache retires it and
 *    frees it only once no reader that may hold it is still reading: the
 *    reader gets the value intact, and it is freed at the next write.
 * 5. The same reader caught by a fork: the child must not wait for it. */
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "racefree/cache.h"
#include "rf_test.h"

/* ------------------------------------------------ naive twins */

/* Shared fields use relaxed atomics: logic races, not data races. */
static atomic_int n_has, n_loading, n_value, n_loads;

static void naive_reset(void) {
  atomic_store(&n_has, 0);
  atomic_store(&n_loading, 0);
  atomic_store(&n_value, 0);
  atomic_store(&n_loads, 0);
}

static int naive_fetch(void) {
  return atomic_fetch_add_explicit(&n_loads, 1, memory_order_relaxed) + 1;
}

static int naive_get(void) {
  if (atomic_load_explicit(&n_has, memory_order_relaxed)) {
    return atomic_load_explicit(&n_value, memory_order_relaxed);
  }
  if (atomic_load_explicit(&n_loading, memory_order_relaxed)) {
    while (atomic_load_explicit(&n_loading, memory_order_relaxed)) {
      sched_yield();
    }
    return atomic_load_explicit(&n_value, memory_order_relaxed);
  }
  RF_HOOK("cache.naive.after_check");
  atomic_store_explicit(&n_loading, 1, memory_order_relaxed);
  int v = naive_fetch();
  RF_HOOK("cache.naive.loader");
  atomic_store_explicit(&n_value, v, memory_order_relaxed);
  atomic_store_explicit(&n_has, 1, memory_order_relaxed);
  atomic_store_explicit(&n_loading, 0, memory_order_relaxed);
  return v;
}

static void naive_invalidate(void) {
  atomic_store_explicit(&n_has, 0, memory_order_relaxed);
}

static void *naive_thread(void *arg) {
  (void)arg;
  return (void *)(intptr_t)naive_get();
}

/* Twin 2: cache check, then a real rf_sf flight, then insert. */
static void plain_loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  int *v = malloc(sizeof(*v));
  *v = naive_fetch();
  assert_int_equal(rf_sf_complete(call, 0, v, sizeof(*v), free), 0);
}

static int naive2_get(rf_sf_t *sf) {
  if (atomic_load_explicit(&n_has, memory_order_relaxed)) {
    return atomic_load_explicit(&n_value, memory_order_relaxed);
  }
  RF_HOOK("cache.naive2.after_miss");
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_sf_do(sf, "k", plain_loader, NULL, -1, &r, NULL), 0);
  int v = *(const int *)rf_sf_result_value(r, NULL);
  rf_sf_result_release(r);
  atomic_store_explicit(&n_value, v, memory_order_relaxed); /* after the flight */
  atomic_store_explicit(&n_has, 1, memory_order_relaxed);
  return v;
}

static void *naive2_thread(void *arg) {
  return (void *)(intptr_t)naive2_get(arg);
}

/* ------------------------------------------------ ours */

static atomic_int loads;

/* Loads "v<n>", parking at "test.cache.loader" when armed. */
static void loader(rf_sf_call_t *call, const char *key, void *arg) {
  (void)key;
  (void)arg;
  int n = atomic_fetch_add(&loads, 1) + 1;
  RF_HOOK("test.cache.loader");
  int *v = malloc(sizeof(*v));
  *v = n;
  assert_int_equal(rf_sf_complete(call, 0, v, sizeof(*v), free), 0);
}

typedef struct {
  rf_cache_t *c;
  int rc;
  rf_cache_src_t src;
  rf_sf_result_t *res;
} caller;

static void *caller_thread(void *p) {
  caller *c = p;
  c->rc = rf_cache_get(c->c, "k", loader, NULL, -1, &c->res, &c->src);
  return NULL;
}

static rf_cache_t *make(void) {
  rf_cache_t *c = NULL;
  rf_cache_opts_t o = {100, 60000, 0, 0};
  assert_int_equal(rf_cache_create(&c, &o), 0);
  return c;
}

static int value_of(rf_sf_result_t *r) {
  return *(const int *)rf_sf_result_value(r, NULL);
}

static void test_check_then_act(void **state) {
  (void)state;
  rf_hook_reset();

  naive_reset();
  assert_int_equal(rf_hook_arm("cache.naive.after_check", 2), 0);
  pthread_t a = rf_test_spawn(naive_thread, NULL);
  pthread_t b = rf_test_spawn(naive_thread, NULL);
  RF_ASSERT_PARKED("cache.naive.after_check", 2);
  rf_hook_release("cache.naive.after_check", 2);
  rf_test_join(a);
  rf_test_join(b);
  assert_int_equal(atomic_load(&n_loads), 2); /* the race, reproduced */

  rf_cache_t *c = make();
  atomic_store(&loads, 0);
  caller ca = {c, -1, RF_CACHE_HIT, NULL};
  caller cb = ca;
  assert_int_equal(rf_hook_arm("sf.after_lookup", 2), 0);
  a = rf_test_spawn(caller_thread, &ca);
  b = rf_test_spawn(caller_thread, &cb);
  RF_ASSERT_PARKED("sf.after_lookup", 2); /* both: not cached, not loading */
  assert_int_equal(rf_hook_arm("test.cache.loader", 1), 0);
  assert_int_equal(rf_hook_arm("sf.joined", 1), 0);
  rf_hook_release("sf.after_lookup", 1);
  RF_ASSERT_PARKED("test.cache.loader", 1); /* the first is loading */
  rf_hook_release("sf.after_lookup", 1);
  RF_ASSERT_PARKED("sf.joined", 1); /* the second joined that load */
  rf_hook_release("sf.joined", 1);
  rf_hook_release("test.cache.loader", 1);
  rf_test_join(a);
  rf_test_join(b);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(cb.rc, 0);
  assert_int_equal(atomic_load(&loads), 1);
  assert_true((ca.src == RF_CACHE_MISS && cb.src == RF_CACHE_SHARED) ||
              (ca.src == RF_CACHE_SHARED && cb.src == RF_CACHE_MISS));
  assert_int_equal(value_of(ca.res), 1);
  assert_ptr_equal(ca.res, cb.res);
  rf_cache_stats_t s;
  rf_cache_stats(c, &s);
  assert_int_equal(s.loads, 1);
  assert_int_equal(s.misses, 1);
  assert_int_equal(s.shared, 1);
  assert_int_equal(s.entries, 1);
  rf_sf_result_release(ca.res);
  rf_sf_result_release(cb.res);
  rf_cache_destroy(c);
  rf_hook_reset();
}

static void test_gap_between_cache_and_flight(void **state) {
  (void)state;
  rf_hook_reset();

  /* Twin 2: B parks after its cache miss, A does everything, B loads again. */
  naive_reset();
  rf_sf_t *sf = NULL;
  assert_int_equal(rf_sf_create(&sf), 0);
  assert_int_equal(rf_hook_arm("cache.naive2.after_miss", 1), 0);
  pthread_t b = rf_test_spawn(naive2_thread, sf);
  RF_ASSERT_PARKED("cache.naive2.after_miss", 1);
  assert_int_equal(naive2_get(sf), 1); /* A */
  rf_hook_release("cache.naive2.after_miss", 1);
  assert_int_equal((int)(intptr_t)rf_test_join(b), 2);
  assert_int_equal(atomic_load(&n_loads), 2); /* the race, reproduced */
  rf_sf_destroy(sf);

  /* Ours: same interleaving at "cache.after_miss". */
  rf_cache_t *c = make();
  atomic_store(&loads, 0);
  caller cb = {c, -1, RF_CACHE_MISS, NULL};
  assert_int_equal(rf_hook_arm("cache.after_miss", 1), 0);
  b = rf_test_spawn(caller_thread, &cb);
  RF_ASSERT_PARKED("cache.after_miss", 1);
  rf_sf_result_t *ra = NULL;
  rf_cache_src_t sa = RF_CACHE_HIT;
  assert_int_equal(rf_cache_get(c, "k", loader, NULL, -1, &ra, &sa), 0); /* A */
  assert_int_equal(sa, RF_CACHE_MISS);
  rf_hook_release("cache.after_miss", 1);
  rf_test_join(b);
  assert_int_equal(cb.rc, 0);
  assert_int_equal(cb.src, RF_CACHE_HIT); /* the re-check found A's value */
  assert_ptr_equal(cb.res, ra);
  assert_int_equal(atomic_load(&loads), 1);
  rf_cache_stats_t s;
  rf_cache_stats(c, &s);
  assert_int_equal(s.hits, 1);
  assert_int_equal(s.misses, 1);
  assert_int_equal(s.loads, 1);
  rf_sf_result_release(ra);
  rf_sf_result_release(cb.res);
  rf_cache_destroy(c);
  rf_hook_reset();
}

static void test_invalidate_during_load(void **state) {
  (void)state;
  rf_hook_reset();

  /* Naive: the value loaded before the invalidation is stored after it. */
  naive_reset();
  assert_int_equal(rf_hook_arm("cache.naive.loader", 1), 0);
  pthread_t a = rf_test_spawn(naive_thread, NULL);
  RF_ASSERT_PARKED("cache.naive.loader", 1);
  naive_invalidate(); /* the data changed: drop the cached value */
  rf_hook_release("cache.naive.loader", 1);
  rf_test_join(a);
  assert_int_equal(atomic_load(&n_has), 1); /* stale value survived */

  /* Ours: the load in flight is detached; its waiter is served, nothing
   * is cached, and the next get loads fresh data. */
  rf_cache_t *c = make();
  atomic_store(&loads, 0);
  caller ca = {c, -1, RF_CACHE_HIT, NULL};
  assert_int_equal(rf_hook_arm("test.cache.loader", 1), 0);
  a = rf_test_spawn(caller_thread, &ca);
  RF_ASSERT_PARKED("test.cache.loader", 1);
  assert_int_equal(rf_cache_invalidate(c, "k"), 0);
  rf_hook_release("test.cache.loader", 1);
  rf_test_join(a);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(ca.src, RF_CACHE_MISS);
  assert_int_equal(value_of(ca.res), 1);
  rf_sf_result_t *r = NULL;
  rf_cache_src_t src = RF_CACHE_HIT;
  assert_int_equal(rf_cache_get(c, "k", loader, NULL, -1, &r, &src), 0);
  assert_int_equal(src, RF_CACHE_MISS);
  assert_int_equal(value_of(r), 2);
  rf_sf_result_release(r);
  rf_sf_result_release(ca.res);
  rf_cache_destroy(c);
  rf_hook_reset();
}

/* Twin 4: a lock-free lookup with immediate reclamation. "freed" stands
 * for free(): setting it instead keeps the twin's bug out of ASan's way. */
typedef struct {
  atomic_int freed;
  int value;
} naive4_entry;

static naive4_entry n4_slot;
static _Atomic(naive4_entry *) n4_map = NULL;

static void *naive4_reader(void *arg) {
  (void)arg;
  naive4_entry *e = atomic_load(&n4_map); /* found */
  RF_HOOK("cache.naive4.found");
  return (void *)(intptr_t)atomic_load(&e->freed); /* then "retain" */
}

static atomic_int frees4;

static void free4(void *p) {
  free(p);
  atomic_fetch_add(&frees4, 1);
}

static void loader4(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  int *v = malloc(sizeof(*v));
  *v = key[0];
  assert_int_equal(rf_sf_complete(call, 0, v, sizeof(*v), free4), 0);
}

static void *hit4_thread(void *p) {
  caller *c = p;
  c->rc = rf_cache_get(c->c, "k", loader4, NULL, -1, &c->res, &c->src);
  return NULL;
}

static void test_hit_vs_reclaim(void **state) {
  (void)state;
  rf_hook_reset();

  /* Naive: the reader resumes on an entry that was freed under it. */
  atomic_store(&n4_slot.freed, 0);
  n4_slot.value = 1;
  atomic_store(&n4_map, &n4_slot);
  assert_int_equal(rf_hook_arm("cache.naive4.found", 1), 0);
  pthread_t a = rf_test_spawn(naive4_reader, NULL);
  RF_ASSERT_PARKED("cache.naive4.found", 1);
  atomic_store(&n4_map, NULL);     /* invalidate ... */
  atomic_store(&n4_slot.freed, 1); /* ... and free at once */
  rf_hook_release("cache.naive4.found", 1);
  assert_int_equal((int)(intptr_t)rf_test_join(a), 1); /* use after free, reproduced */

  /* Ours: the same interleaving at "cache.hit.found". */
  rf_cache_t *c = NULL;
  rf_cache_opts_t o = {100, 60000, 0, 1};
  assert_int_equal(rf_cache_create(&c, &o), 0);
  atomic_store(&frees4, 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_cache_get(c, "k", loader4, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r); /* the cache holds k's only reference */
  assert_int_equal(rf_cache_get(c, "x", loader4, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r);
  caller ca = {c, -1, RF_CACHE_MISS, NULL};
  assert_int_equal(rf_hook_arm("cache.hit.found", 1), 0);
  a = rf_test_spawn(hit4_thread, &ca);
  RF_ASSERT_PARKED("cache.hit.found", 1); /* k found, no reference taken yet */
  assert_int_equal(rf_cache_invalidate(c, "k"), 0);
  assert_int_equal(rf_cache_invalidate(c, "x"), 0); /* another write, another reclaim */
  assert_int_equal(atomic_load(&frees4), 0);        /* nothing freed under the reader */
  rf_hook_release("cache.hit.found", 1);
  rf_test_join(a);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(ca.src, RF_CACHE_HIT);
  assert_int_equal(value_of(ca.res), 'k'); /* intact */
  rf_sf_result_release(ca.res);
  /* The reader has left: the next write's reclaim frees both retired
   * entries (their values had no other reference left). */
  assert_int_equal(rf_cache_get(c, "y", loader4, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r);
  assert_int_equal(rf_cache_invalidate(c, "y"), 0);
  assert_int_equal(atomic_load(&frees4), 3);
  rf_cache_stats_t st;
  rf_cache_stats(c, &st);
  assert_int_equal(st.entries, 0);
  assert_int_equal(st.hits, 1);
  rf_cache_destroy(c);
  rf_hook_reset();
}

/* 5. fork while another thread is inside a hit: the child has no such
 * thread, and its reader slot must not hold back reclamation there. The
 * child invalidates two keys and checks that both values are freed. */
static void test_fork_during_hit(void **state) {
  (void)state;
  rf_hook_reset();
  rf_cache_t *c = NULL;
  rf_cache_opts_t o = {100, 60000, 0, 1};
  assert_int_equal(rf_cache_create(&c, &o), 0);
  atomic_store(&frees4, 0);
  rf_sf_result_t *r = NULL;
  assert_int_equal(rf_cache_get(c, "k", loader4, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r);
  assert_int_equal(rf_cache_get(c, "x", loader4, NULL, -1, &r, NULL), 0);
  rf_sf_result_release(r);
  caller ca = {c, -1, RF_CACHE_MISS, NULL};
  assert_int_equal(rf_hook_arm("cache.hit.found", 1), 0);
  pthread_t a = rf_test_spawn(hit4_thread, &ca);
  RF_ASSERT_PARKED("cache.hit.found", 1);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) { /* the child: only this thread; exit status = frees seen */
    rf_cache_invalidate(c, "k");
    rf_cache_invalidate(c, "x");
    _exit(atomic_load(&frees4));
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st));
  assert_int_equal(WEXITSTATUS(st), 2); /* both freed in the child */
  rf_hook_release("cache.hit.found", 1);
  rf_test_join(a);
  assert_int_equal(ca.rc, 0);
  assert_int_equal(value_of(ca.res), 'k');
  rf_sf_result_release(ca.res);
  rf_cache_destroy(c);
  assert_int_equal(atomic_load(&frees4), 2);
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_check_then_act),
      cmocka_unit_test(test_gap_between_cache_and_flight),
      cmocka_unit_test(test_invalidate_during_load),
      cmocka_unit_test(test_hit_vs_reclaim),
      cmocka_unit_test(test_fork_during_hit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
