/* test_lock_redis.c - the Redis lock backend against a private Redis
 * (scripts/redis.sh, see rf_redis_fixture.h): the shared backend contract,
 * the naive GET/SET/DEL lock breaking where ours holds (interleavings forced
 * with hook points), the fencing scenario with a holder paused past its
 * TTL, and faults: Redis stopped, restarted without its data, hung
 * (SIGSTOP), its script cache flushed, a connection dropped. */
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/time.h>

#include "lock_suite.h"
#include "rf_redis_fixture.h"

static rf_redis_fx g_fx;

#define CMD_TIMEOUT_MS 400

static int make_client(rf_lock_t **out, const char *prefix) {
  rf_lock_redis_opts_t ro = {.url = g_fx.url,
                             .prefix = prefix,
                             .pool_size = 2,
                             .connect_timeout_ms = 500,
                             .command_timeout_ms = CMD_TIMEOUT_MS,
                             .reconnect_interval_ms = 20};
  return rf_lock_create_redis(out, &ro, NULL);
}

static int setup_redis(void **state) {
  (void)state;
  if (rf_redis_fx_start(&g_fx) != 0) {
    fprintf(stderr, "test_lock_redis: no private Redis, cannot test the Redis backend\n");
    return -1;
  }
  if (make_client(&g_lk, NULL) != 0 || make_client(&g_lk2, NULL) != 0) {
    return -1;
  }
  return 0;
}

static int teardown_redis(void **state) {
  (void)state;
  rf_lock_destroy(g_lk);
  rf_lock_destroy(g_lk2);
  g_lk = g_lk2 = NULL;
  rf_redis_fx_teardown(&g_fx);
  return 0;
}

/* A raw hiredis connection, for the naive twin and for inspecting keys. */
static redisContext *raw_connect(void) {
  struct timeval tv = {.tv_sec = 2, .tv_usec = 0};
  redisContext *c = redisConnectWithTimeout(g_fx.host, g_fx.port, tv);
  assert_non_null(c);
  assert_int_equal(c->err, 0);
  redisSetTimeout(c, tv);
  return c;
}

static redisReply *raw(redisContext *c, const char *fmt, const char *a1) {
  redisReply *r = redisCommand(c, fmt, a1);
  assert_non_null(r);
  return r;
}

static void test_redis_name_ping(void **state) {
  (void)state;
  assert_string_equal(rf_lock_backend_name(g_lk), "redis");
  assert_int_equal(rf_lock_ping(g_lk), 0);
}

/* The keys in Redis are what docs/lock.md says: the owner with a TTL, and
 * the fencing counter equal to the token handed out. */
static void test_redis_key_layout(void **state) {
  (void)state;
  rf_lock_lease_t l;
  rf_lock_t *lk;
  assert_int_equal(make_client(&lk, "app1"), 0);
  assert_int_equal(rf_lock_acquire(lk, "layout", NULL, &l), 0);
  redisContext *c = raw_connect();
  redisReply *r = raw(c, "GET %s", "app1:lock:{layout}");
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_string_equal(r->str, l.owner);
  freeReplyObject(r);
  r = raw(c, "PTTL %s", "app1:lock:{layout}");
  assert_true(r->integer > 9000 && r->integer <= 10000);
  freeReplyObject(r);
  r = raw(c, "GET %s", "app1:fence:{layout}");
  assert_int_equal(strtoull(r->str, NULL, 10), l.token);
  freeReplyObject(r);
  /* a brand-new counter starts at the server's clock in microseconds */
  struct timeval now;
  gettimeofday(&now, NULL);
  uint64_t now_us = (uint64_t)now.tv_sec * 1000000u + (uint64_t)now.tv_usec;
  assert_true(l.token > now_us - 600u * 1000000u && l.token < now_us + 600u * 1000000u);
  assert_int_equal(rf_lock_release(lk, &l), 0);
  r = raw(c, "EXISTS %s", "app1:lock:{layout}");
  assert_int_equal(r->integer, 0);
  freeReplyObject(r);
  redisFree(c);
  rf_lock_destroy(lk);
}

/* SCRIPT FLUSH: EVALSHA answers NOSCRIPT, the backend falls back to EVAL. */
static void test_redis_noscript_fallback(void **state) {
  (void)state;
  rf_lock_lease_t l;
  assert_int_equal(rf_lock_acquire(g_lk, "noscript", NULL, &l), 0); /* scripts loaded */
  redisContext *c = raw_connect();
  freeReplyObject(raw(c, "SCRIPT %s", "FLUSH"));
  assert_int_equal(rf_lock_extend(g_lk, &l, 20000), 0);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  freeReplyObject(raw(c, "SCRIPT %s", "FLUSH"));
  assert_int_equal(rf_lock_acquire(g_lk, "noscript", NULL, &l), 0);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  redisFree(c);
}

/* ------------------------------------------------------------ naive twin */

/* The lock as one would first write it: GET, then SET if it was free. */
static int naive_acquire(redisContext *c, const char *key, const char *owner) {
  redisReply *r = redisCommand(c, "GET %s", key);
  assert_non_null(r);
  int free_now = r->type == REDIS_REPLY_NIL;
  freeReplyObject(r);
  if (!free_now) {
    return RF_EBUSY;
  }
  RF_HOOK("lock.acquire.before_set"); /* the window between GET and SET */
  r = redisCommand(c, "SET %s %s PX 10000", key, owner);
  assert_non_null(r);
  freeReplyObject(r);
  return 0;
}

/* Release without compare-and-delete. */
static void naive_release(redisContext *c, const char *key) {
  freeReplyObject(redisCommand(c, "DEL %s", key));
}

typedef struct {
  const char *key;
  int rc;
  rf_lock_lease_t lease;
} thr_arg;

static void *naive_thread(void *p) {
  thr_arg *a = p;
  redisContext *c = raw_connect();
  a->rc = naive_acquire(c, a->key, "A");
  redisFree(c);
  return NULL;
}

static void *ours_thread(void *p) {
  thr_arg *a = p;
  a->rc = rf_lock_acquire(g_lk, a->key, NULL, &a->lease);
  return NULL;
}

/* A GETs (free) and is paused; B takes the lock; A resumes and SETs. */
static void test_redis_check_then_set(void **state) {
  (void)state;
  redisContext *c = raw_connect();

  /* naive: two holders */
  thr_arg a = {.key = "naive:cts"};
  rf_hook_reset();
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 1), 0);
  pthread_t t = rf_test_spawn(naive_thread, &a);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1);
  int rc_b = naive_acquire(c, "naive:cts", "B");
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal((a.rc == 0) + (rc_b == 0), 2);

  /* ours: one holder */
  rf_lock_lease_t b;
  thr_arg o = {.key = "ours:cts"};
  assert_int_equal(rf_hook_arm("lock.acquire.before_set", 1), 0);
  t = rf_test_spawn(ours_thread, &o);
  RF_ASSERT_PARKED("lock.acquire.before_set", 1);
  assert_int_equal(rf_lock_acquire(g_lk2, "ours:cts", NULL, &b), 0);
  assert_int_equal(rf_hook_release("lock.acquire.before_set", 1), 0);
  rf_test_join(t);
  rf_hook_reset();
  assert_int_equal(o.rc, RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
  redisFree(c);
}

/* A's lease expires; B takes the lock; A's late release must not free B's. */
static void test_redis_release_compare(void **state) {
  (void)state;
  redisContext *c = raw_connect();

  /* naive: A's DEL deletes B's lock, C gets in beside B */
  freeReplyObject(redisCommand(c, "SET naive:rel A PX 60"));
  rf_test_sleep_ms(120);
  assert_int_equal(naive_acquire(c, "naive:rel", "B"), 0);
  naive_release(c, "naive:rel"); /* A, late */
  assert_int_equal(naive_acquire(c, "naive:rel", "C"), 0);

  /* ours */
  rf_lock_lease_t la;
  rf_lock_lease_t lb;
  rf_lock_lease_t lc;
  assert_int_equal(acquire_short(g_lk, "ours:rel", 60, &la), 0);
  rf_test_sleep_ms(120);
  assert_int_equal(rf_lock_acquire(g_lk2, "ours:rel", NULL, &lb), 0);
  assert_int_equal(rf_lock_release(g_lk, &la), RF_ESTATE);
  assert_int_equal(rf_lock_acquire(g_lk, "ours:rel", NULL, &lc), RF_EBUSY);
  assert_int_equal(rf_lock_release(g_lk2, &lb), 0);
  redisFree(c);
}

/* ------------------------------------------------------------ fencing */

typedef struct {
  atomic_uint_fast64_t charged_by; /* token of the charge that stands */
  atomic_int charges;
} ledger;

static int ledger_charge(void *arg, uint64_t token) {
  ledger *l = arg;
  atomic_store(&l->charged_by, token);
  atomic_fetch_add(&l->charges, 1);
  return 0;
}

/* The article's payment under a 200 ms lease: holder A is paused past its
 * TTL (a GC pause, SIGSTOP); client B acquires - token A+1 - and charges;
 * A wakes up and tries to charge with its old token: the ledger's fence
 * rejects it. A's release then reports that it had lost the lock. */
static void test_redis_fencing_paused_holder(void **state) {
  (void)state;
  rf_fence_t *fence;
  ledger led = {0};
  rf_lock_lease_t a;
  rf_lock_lease_t b;
  rf_lock_opts_t o = suite_opts(200);
  o.safety_pct = 0; /* only a stall of the whole lease refuses it */
  assert_int_equal(rf_fence_create(&fence), 0);

  assert_int_equal(rf_lock_acquire(g_lk, "payment:p42", &o, &a), 0);
  rf_test_sleep_ms(250); /* A paused: its lease runs out in Redis */
  assert_int_equal(rf_lock_remaining_ms(&a), 0);
  assert_int_equal(rf_lock_acquire(g_lk2, "payment:p42", &o, &b), 0);
  assert_int_equal(b.token, a.token + 1);
  assert_int_equal(rf_fence_apply(fence, "payment:p42", b.token, ledger_charge, &led), 0);

  /* A resumes and carries on as if it still held the lock */
  assert_int_equal(rf_fence_apply(fence, "payment:p42", a.token, ledger_charge, &led), RF_ESTALE);
  assert_int_equal(atomic_load(&led.charges), 1);
  assert_int_equal(atomic_load(&led.charged_by), b.token);
  assert_int_equal(rf_lock_extend(g_lk, &a, 200), RF_ESTATE);
  assert_int_equal(rf_lock_release(g_lk, &a), RF_ESTATE);
  assert_int_equal(rf_lock_release(g_lk2, &b), 0);
  rf_fence_destroy(fence);
}

/* ------------------------------------------------------------ faults */

/* Redis stopped: every call fails closed with RF_EUNAVAIL, fast; Redis back
 * (same port, data lost): calls work again without any intervention, and
 * the fencing tokens still go up. */
static void test_redis_down_and_back(void **state) {
  (void)state;
  rf_lock_lease_t l;
  if (!rf_redis_fx_can_restart(&g_fx)) {
    skip();
  }
  assert_int_equal(rf_lock_acquire(g_lk, "restart", NULL, &l), 0);
  uint64_t before = l.token;
  assert_int_equal(rf_lock_release(g_lk, &l), 0);

  assert_int_equal(rf_redis_fx_stop(&g_fx), 0);
  uint64_t t0 = rf_test_now_ms();
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rf_lock_acquire(g_lk, "restart", NULL, &l), RF_EUNAVAIL);
  }
  assert_int_equal(rf_lock_ping(g_lk), RF_EUNAVAIL);
  assert_true(rf_test_now_ms() - t0 < 3000); /* refused at once, never hanging */

  assert_int_equal(rf_redis_fx_restart(&g_fx), 0);
  int rc = RF_EUNAVAIL;
  for (int i = 0; i < 200 && rc == RF_EUNAVAIL; i++) {
    rc = rf_lock_acquire(g_lk, "restart", NULL, &l);
    if (rc == RF_EUNAVAIL) {
      rf_test_sleep_ms(10);
    }
  }
  assert_int_equal(rc, 0);
  assert_true(l.token > before); /* the counter was lost, the tokens still rise */
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  /* the second client's pooled connections were all broken: still fine */
  assert_int_equal(rf_lock_acquire(g_lk2, "restart", NULL, &l), 0);
  assert_int_equal(rf_lock_release(g_lk2, &l), 0);
  assert_int_equal(rf_lock_ping(g_lk2), 0);
}

/* A hung Redis (SIGSTOP): a call returns RF_EUNAVAIL after the command
 * timeout instead of hanging; after SIGCONT everything works again. */
static void test_redis_hung(void **state) {
  (void)state;
  rf_lock_lease_t l;
  if (!rf_redis_fx_can_restart(&g_fx)) {
    skip();
  }
  pid_t pid = rf_redis_fx_pid(&g_fx);
  assert_true(pid > 0);
  assert_int_equal(rf_lock_ping(g_lk), 0); /* a connection is open */
  assert_int_equal(kill(pid, SIGSTOP), 0);
  uint64_t t0 = rf_test_now_ms();
  int rc = rf_lock_acquire(g_lk, "hung", NULL, &l);
  uint64_t took = rf_test_now_ms() - t0;
  assert_int_equal(kill(pid, SIGCONT), 0);
  assert_int_equal(rc, RF_EUNAVAIL);
  assert_true(took >= CMD_TIMEOUT_MS / 2);
  assert_true(took < CMD_TIMEOUT_MS + 2000);
  /* The script may still run when Redis wakes up: "hung" is then held by an
   * owner nobody knows until its TTL ends. That is failing closed. */
  rc = RF_EUNAVAIL;
  for (int i = 0; i < 200 && rc == RF_EUNAVAIL; i++) {
    rc = rf_lock_acquire(g_lk, "after-hung", NULL, &l);
    if (rc == RF_EUNAVAIL) {
      rf_test_sleep_ms(10);
    }
  }
  assert_int_equal(rc, 0);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
}

/* An I/O error injected on one command: RF_EUNAVAIL for that call, the
 * connection is replaced for the next. */
static void test_redis_io_error(void **state) {
  (void)state;
  rf_lock_lease_t l;
  rf_hook_reset();
  assert_int_equal(rf_hook_fail("lock.redis.io", 1), 0);
  assert_int_equal(rf_lock_acquire(g_lk, "ioerr", NULL, &l), RF_EUNAVAIL);
  assert_int_equal(rf_lock_acquire(g_lk, "ioerr", NULL, &l), 0);
  assert_int_equal(rf_hook_fail("lock.redis.io", 1), 0);
  assert_int_equal(rf_lock_release(g_lk, &l), RF_EUNAVAIL); /* may be retried */
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
  assert_int_equal(rf_hook_fail("lock.redis.connect", 1), 0);
  assert_int_equal(rf_hook_fail("lock.redis.io", 1), 0);
  assert_int_equal(rf_lock_acquire(g_lk, "ioerr", NULL, &l), RF_EUNAVAIL); /* drops it */
  assert_int_equal(rf_lock_acquire(g_lk, "ioerr", NULL, &l), RF_EUNAVAIL); /* connect fails */
  rf_hook_reset();
  int rc = RF_EUNAVAIL;
  for (int i = 0; i < 100 && rc == RF_EUNAVAIL; i++) {
    rc = rf_lock_acquire(g_lk, "ioerr", NULL, &l);
    if (rc == RF_EUNAVAIL) {
      rf_test_sleep_ms(5); /* the reconnect interval */
    }
  }
  assert_int_equal(rc, 0);
  assert_int_equal(rf_lock_release(g_lk, &l), 0);
}

/* Options: a database number, a wrong password (fails closed), a prefix;
 * nonsense is refused at creation. */
static void test_redis_options(void **state) {
  (void)state;
  char url[200];
  rf_lock_t *lk = NULL;
  rf_lock_lease_t l;

  snprintf(url, sizeof(url), "redis://%s:%d/3", g_fx.host, g_fx.port);
  rf_lock_redis_opts_t ro = {.url = url, .prefix = "db3"};
  assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), 0);
  assert_int_equal(rf_lock_acquire(lk, "k", NULL, &l), 0);
  redisContext *c = raw_connect();
  freeReplyObject(raw(c, "SELECT %s", "3"));
  redisReply *r = raw(c, "EXISTS %s", "db3:lock:{k}");
  assert_int_equal(r->integer, 1);
  freeReplyObject(r);
  redisFree(c);
  assert_int_equal(rf_lock_release(lk, &l), 0);
  rf_lock_destroy(lk);

  snprintf(url, sizeof(url), "redis://:wrong@%s:%d", g_fx.host, g_fx.port);
  ro.url = url;
  assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), 0);
  assert_int_equal(rf_lock_acquire(lk, "k", NULL, &l), RF_EUNAVAIL);
  assert_int_equal(rf_lock_ping(lk), RF_EUNAVAIL);
  rf_lock_destroy(lk);

  /* nothing listens there: created, but unavailable */
  ro.url = "redis://127.0.0.1:1";
  assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), 0);
  assert_int_equal(rf_lock_ping(lk), RF_EUNAVAIL);
  assert_int_equal(rf_lock_acquire(lk, "k", NULL, &l), RF_EUNAVAIL);
  rf_lock_destroy(lk);

  static const char *const bad_urls[] = {"",
                                         "http://x",
                                         "redis://",
                                         "redis://:6379",
                                         "redis://h:",
                                         "redis://h:0",
                                         "redis://h:65536",
                                         "redis://h:12x",
                                         "redis://h/x",
                                         "redis://u@h:1",
                                         "redis://[::1:6379",
                                         "redis://h:1/99999999"};
  for (size_t i = 0; i < sizeof(bad_urls) / sizeof(bad_urls[0]); i++) {
    ro.url = bad_urls[i];
    assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), RF_EINVAL);
  }
  ro.url = "redis://[::1]:6379/0";
  assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), 0);
  rf_lock_destroy(lk);
  ro.url = "redis://user:pw@localhost";
  assert_int_equal(rf_lock_create_redis(&lk, &ro, NULL), 0);
  rf_lock_destroy(lk);

  rf_lock_redis_opts_t bad = {.url = g_fx.url, .prefix = ""};
  assert_int_equal(rf_lock_create_redis(&lk, &bad, NULL), RF_EINVAL);
  bad.prefix = NULL;
  bad.pool_size = 100000;
  assert_int_equal(rf_lock_create_redis(&lk, &bad, NULL), RF_EINVAL);
  bad.pool_size = 0;
  bad.command_timeout_ms = 4000000000u;
  assert_int_equal(rf_lock_create_redis(&lk, &bad, NULL), RF_EINVAL);
  bad.command_timeout_ms = 0;
  rf_lock_opts_t bado = RF_LOCK_OPTS_DEFAULT;
  bado.attempts = 0;
  assert_int_equal(rf_lock_create_redis(&lk, &bad, &bado), RF_EINVAL);
  assert_int_equal(rf_lock_create_redis(NULL, &bad, NULL), RF_EINVAL);
  assert_int_equal(rf_lock_create_redis(&lk, NULL, NULL), RF_EINVAL);
  bad.url = NULL;
  assert_int_equal(rf_lock_create_redis(&lk, &bad, NULL), RF_EINVAL);
}

/* Fail the n-th allocation until creation succeeds: RF_ENOMEM each time,
 * nothing leaked. */
static void test_redis_alloc_failures(void **state) {
  (void)state;
  char url[200];
  int ok = 0;
  snprintf(url, sizeof(url), "redis://u:p@%s:%d/1", g_fx.host, g_fx.port);
  rf_lock_redis_opts_t ro = {.url = url, .prefix = "torture"};
  for (long n = 0; n < 100 && !ok; n++) {
    rf_lock_t *lk = NULL;
    rf_test_fail_alloc_after(n);
    int rc = rf_lock_create_redis(&lk, &ro, NULL);
    rf_test_fail_alloc_after(-1);
    if (rc == 0) {
      ok = 1;
      rf_lock_destroy(lk);
    } else {
      assert_int_equal(rc, RF_ENOMEM);
    }
  }
  assert_true(ok);
}

/* Many threads on one client: the pool (2 connections) is shared safely and
 * the lock still admits one holder at a time. */
typedef struct {
  atomic_int inside;
  atomic_int max_inside;
  atomic_long done;
} excl;

static void excl_worker(void *p, int idx) {
  excl *e = p;
  (void)idx;
  rf_lock_opts_t o = suite_opts(5000);
  o.attempts = 100000;
  o.retry_delay_ms = 0;
  o.retry_jitter_ms = 1;
  for (int i = 0; i < 20; i++) {
    rf_lock_lease_t l;
    assert_int_equal(rf_lock_acquire(g_lk, "excl", &o, &l), 0);
    int now = atomic_fetch_add(&e->inside, 1) + 1;
    int m = atomic_load(&e->max_inside);
    while (now > m && !atomic_compare_exchange_weak(&e->max_inside, &m, now)) {
    }
    atomic_fetch_sub(&e->inside, 1);
    assert_int_equal(rf_lock_release(g_lk, &l), 0);
    atomic_fetch_add(&e->done, 1);
  }
}

static void test_redis_threads_one_client(void **state) {
  (void)state;
  excl e = {0};
  rf_test_run_parallel(8, excl_worker, &e);
  assert_int_equal(atomic_load(&e.done), 8 * 20);
  assert_int_equal(atomic_load(&e.max_inside), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      LOCK_SUITE_TESTS,
      cmocka_unit_test(test_redis_name_ping),
      cmocka_unit_test(test_redis_key_layout),
      cmocka_unit_test(test_redis_noscript_fallback),
      cmocka_unit_test(test_redis_check_then_set),
      cmocka_unit_test(test_redis_release_compare),
      cmocka_unit_test(test_redis_fencing_paused_holder),
      cmocka_unit_test(test_redis_io_error),
      cmocka_unit_test(test_redis_options),
      cmocka_unit_test(test_redis_alloc_failures),
      cmocka_unit_test(test_redis_threads_one_client),
      cmocka_unit_test(test_redis_hung),
      cmocka_unit_test(test_redis_down_and_back),
  };
  return cmocka_run_group_tests(tests, setup_redis, teardown_redis);
}
