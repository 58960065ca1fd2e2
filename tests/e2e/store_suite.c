/* store_suite.c - see store_suite.h. Every operation of store.h with its
 * error mapping, idempotent migrations (also with several processes opening
 * a new database at once), and the three invariants under 8 threads: one
 * winner per email, no oversell, no lost update - plus the naive wallet
 * twin losing updates under the same load (the proof that the CAS test
 * can fail).
 */
#include "store_suite.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int store_suite_setup(void **state) {
  const store_backend_t *be = *state;
  store_fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  f->be = be;
  be->fresh(f->url, sizeof f->url, NULL);
  char err[256] = "";
  int rc = rf_store_open_err(f->url, &f->s, err, sizeof err);
  if (rc != 0) {
    fail_msg("open %s: %s (%s)", f->url, rf_err_name(rc), err);
  }
  *state = f;
  return 0;
}

int store_suite_teardown(void **state) {
  store_fixture_t *f = *state;
  rf_store_close(f->s);
  f->be->remove(f->url);
  free(f);
  return 0;
}

/* ------------------------------------------------------------ lifecycle */

static void test_open_twice_is_idempotent(void **state) {
  store_fixture_t *f = *state;
  int64_t id = 0;
  assert_string_equal(rf_store_kind(f->s), f->be->kind);
  assert_int_equal(rf_store_ping(f->s), 0);
  assert_int_equal(rf_store_user_create(f->s, "a@b.c", &id), 0);
  rf_store_close(f->s);
  f->s = NULL;
  /* reopen: the schema is there, nothing is migrated again, data kept */
  assert_int_equal(rf_store_open(f->url, &f->s), 0);
  rf_store_t *second = NULL;
  assert_int_equal(rf_store_open(f->url, &second), 0); /* two at once */
  char email[RF_STORE_EMAIL_MAX + 1];
  assert_int_equal(rf_store_user_get(second, id, email, sizeof email), 0);
  assert_string_equal(email, "a@b.c");
  rf_store_close(second);
  int64_t migrations = f->be->count(f->url, "SELECT max(version) FROM schema_version");
  assert_true(migrations >= 1);
  assert_int_equal(f->be->count(f->url, "SELECT count(*) FROM schema_version"), migrations);
  assert_int_equal(f->be->count(f->url, "SELECT count(*) FROM users"), 1);
}

/* Several processes opening one new database at once (racefreed
 * --workers N, or several hosts starting together): every one succeeds and
 * each migration is applied exactly once. */
static void test_concurrent_open_processes(void **state) {
  store_fixture_t *f = *state;
  char url[512];
  f->be->fresh(url, sizeof url, NULL);
  enum { NPROC = 4 };
  pid_t pids[NPROC];
  /* As racefreed does: no store open across fork (a store runs threads,
   * and a child of a multi-threaded process should not start its own). */
  rf_store_close(f->s);
  f->s = NULL;
  for (int i = 0; i < NPROC; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      rf_store_t *s = NULL;
      int64_t id = 0;
      char email[32];
      snprintf(email, sizeof email, "p%d@x.y", i);
      int rc = rf_store_open(url, &s);
      if (rc == 0)
        rc = rf_store_user_create(s, email, &id);
      rf_store_close(s);
      _exit(rc == 0 ? 0 : 1);
    }
  }
  for (int i = 0; i < NPROC; i++) {
    int st = 0;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  int64_t migrations = f->be->count(url, "SELECT max(version) FROM schema_version");
  assert_int_equal(f->be->count(url, "SELECT count(*) FROM schema_version"), migrations);
  assert_int_equal(f->be->count(url, "SELECT count(*) FROM users"), NPROC);
  f->be->remove(url);
  assert_int_equal(rf_store_open(f->url, &f->s), 0); /* the fixture's database is unharmed */
  assert_int_equal(rf_store_ping(f->s), 0);
}

/* A store opened before fork() refuses to run in the child. */
static void test_refuses_across_fork(void **state) {
  store_fixture_t *f = *state;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(rf_store_ping(f->s) == RF_ESTATE ? 0 : 1);
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  assert_int_equal(rf_store_ping(f->s), 0);
}

/* ---------------------------------------------------------------- users */

static void test_users(void **state) {
  store_fixture_t *f = *state;
  int64_t a = 0, b = 0, again = -3;
  char email[RF_STORE_EMAIL_MAX + 1];
  assert_int_equal(rf_store_user_create(f->s, "alice@example.com", &a), 0);
  assert_int_equal(rf_store_user_create(f->s, "bob@example.com", &b), 0);
  assert_true(a > 0 && b > 0 && a != b);
  assert_int_equal(rf_store_user_create(f->s, "alice@example.com", &again), RF_EEXIST);
  assert_int_equal(again, -3); /* outputs untouched on failure */
  assert_int_equal(rf_store_user_get(f->s, a, email, sizeof email), 0);
  assert_string_equal(email, "alice@example.com");
  assert_int_equal(rf_store_user_get(f->s, b + 1000, email, sizeof email), RF_ENOENT);
  assert_int_equal(rf_store_user_get(f->s, -1, email, sizeof email), RF_ENOENT);
  assert_int_equal(rf_store_user_get(f->s, a, email, 5), RF_ERANGE);
  assert_int_equal(rf_store_user_get(f->s, a, NULL, 10), RF_EINVAL);
  assert_int_equal(rf_store_user_get(f->s, a, email, 0), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, "", &again), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, NULL, &again), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, "x@y", NULL), RF_EINVAL);
  char big[RF_STORE_EMAIL_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(rf_store_user_create(f->s, big, &again), RF_EINVAL);
  big[RF_STORE_EMAIL_MAX] = '\0'; /* exactly the maximum is fine */
  assert_int_equal(rf_store_user_create(f->s, big, &again), 0);
  assert_int_equal(rf_store_user_get(f->s, again, email, sizeof email), 0);
  assert_int_equal(strlen(email), RF_STORE_EMAIL_MAX);
  /* the text is stored as given: quotes and non-ASCII are data, not SQL */
  assert_int_equal(rf_store_user_create(f->s, "o'brien\"; DROP TABLE users;--@x.y", &a), 0);
  assert_int_equal(rf_store_user_create(f->s, "caf\xc3\xa9@x.y", &b), 0);
  assert_int_equal(rf_store_user_get(f->s, a, email, sizeof email), 0);
  assert_string_equal(email, "o'brien\"; DROP TABLE users;--@x.y");
  assert_int_equal(rf_store_user_get(f->s, b, email, sizeof email), 0);
  assert_string_equal(email, "caf\xc3\xa9@x.y");
}

static void test_users_unchecked(void **state) {
  store_fixture_t *f = *state;
  int found = -1;
  int64_t a = 0, b = 0, safe = 0;
  char email[RF_STORE_EMAIL_MAX + 1];
  assert_int_equal(rf_store_user_find_unchecked(f->s, "d@x.y", &found), 0);
  assert_int_equal(found, 0);
  assert_int_equal(rf_store_user_insert_unchecked(f->s, "d@x.y", &a), 0);
  assert_int_equal(rf_store_user_find_unchecked(f->s, "d@x.y", &found), 0);
  assert_int_equal(found, 1);
  /* no unique index: a second insert of the same email succeeds */
  assert_int_equal(rf_store_user_insert_unchecked(f->s, "d@x.y", &b), 0);
  assert_true(b != a);
  assert_int_equal(rf_store_user_get_unchecked(f->s, b, email, sizeof email), 0);
  assert_string_equal(email, "d@x.y");
  /* the two tables are independent */
  assert_int_equal(rf_store_user_create(f->s, "d@x.y", &safe), 0);
  assert_int_equal(rf_store_user_get_unchecked(f->s, 999, email, sizeof email), RF_ENOENT);
  assert_int_equal(rf_store_user_find_unchecked(f->s, NULL, &found), RF_EINVAL);
  assert_int_equal(rf_store_user_find_unchecked(f->s, "a@b", NULL), RF_EINVAL);
  assert_int_equal(rf_store_user_insert_unchecked(f->s, "", &a), RF_EINVAL);
  assert_int_equal(f->be->count(f->url, "SELECT count(*) FROM users_unchecked"), 2);
}

/* ------------------------------------------------------------ inventory */

static void test_inventory(void **state) {
  store_fixture_t *f = *state;
  int64_t stock = -1, left = -1;
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), RF_ENOENT);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 1, &left), RF_ENOENT);
  assert_int_equal(rf_store_item_put(f->s, "sku-1", 3), 0);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 3);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 2, &left), 0);
  assert_int_equal(left, 1);
  left = -7;
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 2, &left), RF_ECONFLICT);
  assert_int_equal(left, -7); /* outputs untouched on failure */
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 1, &left), 0);
  assert_int_equal(left, 0);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 1, &left), RF_ECONFLICT);
  assert_int_equal(rf_store_item_put(f->s, "sku-1", 1000000000000LL), 0); /* reset */
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 1000000000000LL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 999999999999LL, &left), 0);
  assert_int_equal(left, 1);
  assert_int_equal(rf_store_item_put(f->s, "sku-1", 1000000000000LL), 0);
  /* bad arguments change nothing */
  assert_int_equal(rf_store_item_put(f->s, "sku-1", -1), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 0, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", -5, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "", 1, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, NULL, 1, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 1, NULL), RF_EINVAL);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", NULL), RF_EINVAL);
  char longid[RF_STORE_ID_MAX + 2];
  memset(longid, 'i', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(rf_store_item_put(f->s, longid, 1), RF_EINVAL);
  longid[RF_STORE_ID_MAX] = '\0';
  assert_int_equal(rf_store_item_put(f->s, longid, 1), 0);
  assert_int_equal(rf_store_item_get(f->s, longid, &stock), 0);
  assert_int_equal(stock, 1);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 1000000000000LL);
  /* the naive twin's plain write */
  assert_int_equal(rf_store_item_set_stock(f->s, "sku-1", 7), 0);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 7);
  assert_int_equal(rf_store_item_set_stock(f->s, "nope", 7), RF_ENOENT);
  assert_int_equal(rf_store_item_set_stock(f->s, "sku-1", -1), RF_EINVAL);
  assert_int_equal(rf_store_item_get(f->s, "nope", &stock), RF_ENOENT);
}

/* -------------------------------------------------------------- wallets */

static void test_wallets(void **state) {
  store_fixture_t *f = *state;
  int64_t b = -1, v = -1, nv = -1;
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, &v), RF_ENOENT);
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 1, 5, &nv), RF_ENOENT);
  assert_int_equal(rf_store_wallet_set(f->s, "u1", 5, &nv), RF_ENOENT);
  assert_int_equal(rf_store_wallet_put(f->s, "u1", 100, &v), 0);
  assert_int_equal(v, 1); /* created: version 1 */
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, &v), 0);
  assert_int_equal(b, 100);
  assert_int_equal(v, 1);
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 1, 70, &nv), 0);
  assert_int_equal(nv, 2);
  nv = -9;
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 1, 0, &nv), RF_ECONFLICT);
  assert_int_equal(nv, -9);
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, &v), 0);
  assert_int_equal(b, 70);
  assert_int_equal(v, 2);
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 2, -1, &nv), RF_EINVAL);
  /* a reset is a write: the version rises, a straddling CAS fails */
  assert_int_equal(rf_store_wallet_put(f->s, "u1", 500, &v), 0);
  assert_int_equal(v, 3);
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 2, 60, NULL), RF_ECONFLICT);
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, NULL), 0);
  assert_int_equal(b, 500);
  assert_int_equal(rf_store_wallet_cas(f->s, "u1", 3, 400, NULL), 0);
  assert_int_equal(rf_store_wallet_get(f->s, "u1", NULL, &v), 0);
  assert_int_equal(v, 4);
  /* the naive twin: no version check, version still +1 */
  assert_int_equal(rf_store_wallet_set(f->s, "u1", 10, &nv), 0);
  assert_int_equal(nv, 5);
  assert_int_equal(rf_store_wallet_set(f->s, "u1", -10, &nv), RF_EINVAL);
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, &v), 0);
  assert_int_equal(b, 10);
  assert_int_equal(v, 5);
  assert_int_equal(rf_store_wallet_put(f->s, "u1", -1, &v), RF_EINVAL);
  assert_int_equal(rf_store_wallet_put(f->s, NULL, 1, &v), RF_EINVAL);
  assert_int_equal(rf_store_wallet_get(f->s, "", &b, &v), RF_EINVAL);
  assert_int_equal(rf_store_wallet_put(f->s, "u2", 0, NULL), 0);
  assert_int_equal(rf_store_wallet_get(f->s, "u2", &b, &v), 0);
  assert_int_equal(b, 0);
  assert_int_equal(v, 1);
}

/* ---------------------------------------------------------- concurrency */

enum { NTHREADS = 8 };

typedef struct shared {
  rf_store_t *s;
  int per_thread;
  const char *email;
  int ok[NTHREADS];
  int conflict[NTHREADS];
  int other[NTHREADS];
  int last_other[NTHREADS];
} shared_t;

static void sum(const shared_t *sh, int *ok, int *conflict, int *other) {
  *ok = *conflict = *other = 0;
  for (int i = 0; i < NTHREADS; i++) {
    *ok += sh->ok[i];
    *conflict += sh->conflict[i];
    *other += sh->other[i];
    if (sh->other[i])
      print_message("thread %d: %d unexpected results, last %s\n", i, sh->other[i],
                    rf_err_name(sh->last_other[i]));
  }
}

static void purchase_worker(void *arg, int idx) {
  shared_t *sh = arg;
  for (int i = 0; i < sh->per_thread; i++) {
    int64_t left = 0;
    int rc = rf_store_item_purchase(sh->s, "hot", 1, &left);
    if (rc == 0)
      sh->ok[idx]++;
    else if (rc == RF_ECONFLICT)
      sh->conflict[idx]++;
    else
      sh->other[idx]++, sh->last_other[idx] = rc;
  }
}

static void test_concurrent_purchases(void **state) {
  store_fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(60)};
  int64_t stock = NTHREADS * sh.per_thread / 2;
  assert_int_equal(rf_store_item_put(f->s, "hot", stock), 0);
  rf_test_run_parallel(NTHREADS, purchase_worker, &sh);
  int ok, conflict, other;
  sum(&sh, &ok, &conflict, &other);
  assert_int_equal(other, 0);
  assert_int_equal(ok, stock);
  assert_int_equal(conflict, (int64_t)NTHREADS * sh.per_thread - stock);
  int64_t final = -1;
  assert_int_equal(rf_store_item_get(f->s, "hot", &final), 0);
  assert_int_equal(final, 0);
}

static void withdraw_worker(void *arg, int idx) {
  shared_t *sh = arg;
  for (int i = 0; i < sh->per_thread; i++) {
    for (;;) { /* the optimistic loop of the withdraw route */
      int64_t b = 0, v = 0;
      int rc = rf_store_wallet_get(sh->s, "w", &b, &v);
      if (rc != 0) {
        sh->other[idx]++, sh->last_other[idx] = rc;
        break;
      }
      if (b < 3) {
        sh->conflict[idx]++; /* insufficient funds */
        break;
      }
      rc = rf_store_wallet_cas(sh->s, "w", v, b - 3, NULL);
      if (rc == 0) {
        sh->ok[idx]++;
        break;
      }
      if (rc != RF_ECONFLICT) {
        sh->other[idx]++, sh->last_other[idx] = rc;
        break;
      }
    }
  }
}

static void test_concurrent_wallet_cas(void **state) {
  store_fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(40)};
  /* enough for about two thirds of the withdrawals */
  int64_t initial = 3 * (NTHREADS * sh.per_thread * 2 / 3) + 2;
  assert_int_equal(rf_store_wallet_put(f->s, "w", initial, NULL), 0);
  rf_test_run_parallel(NTHREADS, withdraw_worker, &sh);
  int ok, conflict, other;
  sum(&sh, &ok, &conflict, &other);
  assert_int_equal(other, 0);
  int64_t b = 0, v = 0;
  assert_int_equal(rf_store_wallet_get(f->s, "w", &b, &v), 0);
  assert_int_equal(b, initial - 3 * (int64_t)ok);
  assert_int_equal(v, 1 + ok);
  assert_int_equal(ok, NTHREADS * sh.per_thread * 2 / 3); /* drained down to 2 */
  assert_int_equal(b, 2);
}

/* The naive twin under the same load loses updates: proof that the CAS
 * test above could fail. Read, then write without a version check. */
static void withdraw_naive_worker(void *arg, int idx) {
  shared_t *sh = arg;
  for (int i = 0; i < sh->per_thread; i++) {
    int64_t b = 0;
    if (rf_store_wallet_get(sh->s, "n", &b, NULL) != 0 || b < 1) {
      sh->other[idx]++;
      continue;
    }
    usleep(200); /* the naive handler's simulated work between read and write */
    if (rf_store_wallet_set(sh->s, "n", b - 1, NULL) == 0)
      sh->ok[idx]++;
    else
      sh->other[idx]++;
  }
}

static void test_naive_wallet_loses_updates(void **state) {
  store_fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(40)};
  int64_t initial = 1000000;
  assert_int_equal(rf_store_wallet_put(f->s, "n", initial, NULL), 0);
  rf_test_run_parallel(NTHREADS, withdraw_naive_worker, &sh);
  int ok = 0;
  for (int i = 0; i < NTHREADS; i++)
    ok += sh.ok[i];
  int64_t b = 0;
  assert_int_equal(rf_store_wallet_get(f->s, "n", &b, NULL), 0);
  assert_true(b > initial - ok); /* some successful withdrawals were lost */
}

static void signup_worker(void *arg, int idx) {
  shared_t *sh = arg;
  int64_t id = 0;
  int rc = rf_store_user_create(sh->s, sh->email, &id);
  if (rc == 0)
    sh->ok[idx]++;
  else if (rc == RF_EEXIST)
    sh->conflict[idx]++;
  else
    sh->other[idx]++, sh->last_other[idx] = rc;
}

static void test_concurrent_signups(void **state) {
  store_fixture_t *f = *state;
  for (int round = 0; round < 3; round++) {
    char email[32], sql[96];
    snprintf(email, sizeof email, "same%d@example.com", round);
    shared_t sh = {.s = f->s, .email = email};
    rf_test_run_parallel(NTHREADS, signup_worker, &sh);
    int ok, conflict, other;
    sum(&sh, &ok, &conflict, &other);
    assert_int_equal(ok, 1);
    assert_int_equal(conflict, NTHREADS - 1);
    assert_int_equal(other, 0);
    snprintf(sql, sizeof sql, "SELECT count(*) FROM users WHERE email = '%s'", email);
    assert_int_equal(f->be->count(f->url, sql), 1);
  }
}

/* ------------------------------------------------------------ payments */

static rf_payment_t pay_begin(rf_store_t *s, const char *id, int64_t amount, uint64_t lease_ms) {
  rf_payment_t p = {0};
  char fpr[64];
  snprintf(fpr, sizeof fpr, "amount=%lld", (long long)amount);
  int rc = rf_store_payment_begin(s, id, amount, fpr, lease_ms, "test", &p);
  if (rc != 0)
    fail_msg("payment_begin %s: %s", id, rf_err_name(rc));
  return p;
}

static int64_t charges(rf_store_t *s, const char *id, int64_t *total) {
  int64_t n = -1;
  assert_int_equal(rf_store_charge_stats(s, id, &n, total), 0);
  return n;
}

static void test_payment_claim_busy_mismatch_done(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t p = pay_begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_CLAIMED);
  assert_int_equal(p.token, 1);
  assert_int_equal(p.amount, 100);
  p = pay_begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_BUSY);
  assert_true(p.lease_left_ms > 50000 && p.lease_left_ms <= 60000);
  assert_int_equal(p.state, RF_PAY_PROCESSING);
  p = pay_begin(f->s, "p1", 101, 60000);
  assert_int_equal(p.claim, RF_PAY_MISMATCH);
  assert_int_equal(p.amount, 100);
  rf_payment_t q = {0};
  assert_int_equal(rf_store_payment_begin(f->s, "p1", 100, "other", 1000, "t", &q), 0);
  assert_int_equal(q.claim, RF_PAY_MISMATCH);
  /* only the current token finishes, once */
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 2, 0, 201, "ch_1", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 1, 0, 201, "ch_1", "{\"a\":\"o'q\"}"), 0);
  assert_int_equal(rf_store_payment_finish(f->s, "p1", 1, 0, 201, "ch_1", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "nope", 1, 0, 201, "", "{}"), RF_ENOENT);
  p = pay_begin(f->s, "p1", 100, 60000);
  assert_int_equal(p.claim, RF_PAY_DONE);
  assert_int_equal(p.state, RF_PAY_SUCCEEDED);
  assert_int_equal(p.http_status, 201);
  assert_string_equal(p.body, "{\"a\":\"o'q\"}");
  assert_string_equal(p.charge_id, "ch_1");
  assert_int_equal(p.lease_left_ms, 0);
  p = pay_begin(f->s, "p1", 7, 60000); /* a mismatch stays a mismatch when final */
  assert_int_equal(p.claim, RF_PAY_MISMATCH);
  assert_int_equal(rf_store_payment_get(f->s, "p1", &q), 0);
  assert_int_equal(q.claim, RF_PAY_DONE);
  assert_int_equal(q.amount, 100);
  assert_int_equal(rf_store_payment_get(f->s, "p2", &q), RF_ENOENT);
  /* declined: final too, replayed like a success */
  p = pay_begin(f->s, "decline-1", 5, 60000);
  assert_int_equal(rf_store_payment_finish(f->s, "decline-1", p.token, 1, 402, NULL, "{}"), 0);
  assert_int_equal(rf_store_payment_get(f->s, "decline-1", &q), 0);
  assert_int_equal(q.state, RF_PAY_DECLINED);
  assert_int_equal(q.http_status, 402);
  assert_string_equal(q.charge_id, "");
  /* a body of exactly the maximum */
  char big[RF_STORE_BODY_MAX + 1];
  memset(big, 'b', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  p = pay_begin(f->s, "big", 1, 60000);
  assert_int_equal(rf_store_payment_finish(f->s, "big", p.token, 0, 201, "ch_9", big), 0);
  assert_int_equal(rf_store_payment_get(f->s, "big", &q), 0);
  assert_string_equal(q.body, big);
}

static void test_payment_bad_arguments(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t p = {0};
  char big[RF_STORE_BODY_MAX + 2];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(rf_store_payment_begin(f->s, "", 1, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 0, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 0, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 86400001, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 1, NULL, &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(f->s, "p", 1, "a", 1, "o", NULL), RF_EINVAL);
  assert_int_equal(rf_store_payment_begin(NULL, "p", 1, "a", 1, "o", &p), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 0, 0, 201, "", "{}"), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 1, 0, 42, "", "{}"), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 1, 0, 201, "", big), RF_EINVAL);
  assert_int_equal(rf_store_payment_finish(f->s, "p", 1, 0, 201, "", NULL), RF_EINVAL);
  assert_int_equal(rf_store_payment_get(f->s, "", &p), RF_EINVAL);
  assert_int_equal(rf_store_charge_record(f->s, "p", 1, 0, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_store_charge_record(f->s, "p", 0, 0, 1, NULL), RF_EINVAL);
  assert_int_equal(rf_store_charge_record_unchecked(f->s, "", 1, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_store_charge_stats(f->s, NULL, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_store_payment_put_unchecked(f->s, "p", 0, 0, 201, "", "{}"), RF_EINVAL);
  int first = 0;
  int64_t n = 0;
  assert_int_equal(rf_store_email_send(f->s, "j", 0, "a@b", &first), RF_EINVAL);
  assert_int_equal(rf_store_email_send(f->s, "j", 1, "", &first), RF_EINVAL);
  assert_int_equal(rf_store_email_send(f->s, "", 1, "a@b", &first), RF_EINVAL);
  assert_int_equal(rf_store_email_send(f->s, "j", 1, "a@b", NULL), RF_EINVAL);
  assert_int_equal(rf_store_email_send_unchecked(f->s, "j", NULL), RF_EINVAL);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@b", NULL), RF_EINVAL);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@b", &n), 0);
  assert_int_equal(n, 0);
  /* nothing was written by any of them */
  assert_int_equal(rf_store_payment_get(f->s, "p", &p), RF_ENOENT);
  assert_int_equal(charges(f->s, "p", NULL), 0);
}

/* A's lease expires (stalled or dead before charging), B takes over: B's
 * token reaches the ledger's fence in the takeover, so A's late charge is
 * refused although B has not charged yet. The unfenced twin, driven
 * through the same steps, records both charges. */
static void test_payment_takeover_fences_stale_holder(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t a = pay_begin(f->s, "pay", 50, 1);
  assert_int_equal(a.claim, RF_PAY_CLAIMED);
  rf_test_sleep_ms(5);
  rf_payment_t b = pay_begin(f->s, "pay", 50, 60000);
  assert_int_equal(b.claim, RF_PAY_TAKEN_OVER);
  assert_int_equal(b.token, 2);
  assert_false(b.has_charge);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 50, 0, a.token, NULL), RF_ESTALE);
  rf_charge_t ch = {0};
  assert_int_equal(rf_store_charge_record(f->s, "pay", 50, 0, b.token, &ch), 0);
  assert_int_equal(ch.token, 2);
  assert_int_equal(ch.amount, 50);
  assert_int_equal(strncmp(ch.charge_id, "ch_", 3), 0);
  assert_int_equal(rf_store_payment_finish(f->s, "pay", a.token, 0, 201, "x", "{}"), RF_ESTALE);
  assert_int_equal(rf_store_payment_finish(f->s, "pay", b.token, 0, 201, ch.charge_id, "{}"), 0);
  int64_t total = 0;
  assert_int_equal(charges(f->s, "pay", &total), 1);
  assert_int_equal(total, 50);
  /* the naive twin: same interleaving, no fence */
  rf_charge_t c1 = {0}, c2 = {0};
  assert_int_equal(rf_store_charge_record_unchecked(f->s, "naive", 50, 0, &c1), 0); /* B */
  assert_int_equal(rf_store_charge_record_unchecked(f->s, "naive", 50, 0, &c2), 0); /* late A */
  assert_string_not_equal(c1.charge_id, c2.charge_id);
  assert_int_equal(charges(f->s, "naive", &total), 2);
  assert_int_equal(total, 100);
  assert_int_equal(rf_store_payment_put_unchecked(f->s, "naive", 50, 0, 201, c2.charge_id, "{}"),
                   0);
  assert_int_equal(rf_store_payment_put_unchecked(f->s, "naive", 50, 0, 201, c1.charge_id, "{}"),
                   0);
  rf_payment_t q = {0};
  assert_int_equal(rf_store_payment_get(f->s, "naive", &q), 0);
  assert_string_equal(q.charge_id, c1.charge_id); /* the last write won */
}

/* A charged, then died before storing the outcome: the recoverer learns
 * of the charge in the takeover and finishes with it instead of charging. */
static void test_payment_takeover_reports_charge(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t a = pay_begin(f->s, "pay", 70, 1);
  rf_charge_t ch = {0};
  assert_int_equal(rf_store_charge_record(f->s, "pay", 70, 0, a.token, &ch), 0);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 70, 0, a.token, NULL), 0); /* same token */
  rf_test_sleep_ms(5);
  rf_payment_t b = pay_begin(f->s, "pay", 70, 60000);
  assert_int_equal(b.claim, RF_PAY_TAKEN_OVER);
  assert_true(b.has_charge);
  assert_string_equal(b.charge.charge_id, ch.charge_id); /* the first one */
  assert_int_equal(b.charge.amount, 70);
  assert_int_equal(b.charge.declined, 0);
  assert_int_equal(b.charge.token, a.token);
  /* declines are processor calls too, but take nothing */
  rf_payment_t d = pay_begin(f->s, "decline-1", 30, 60000);
  assert_int_equal(rf_store_charge_record(f->s, "decline-1", 30, 1, d.token, &ch), 0);
  assert_int_equal(ch.declined, 1);
  int64_t total = -1;
  assert_int_equal(charges(f->s, "decline-1", &total), 1);
  assert_int_equal(total, 0);
}

enum { NRACE = 16 };

typedef struct {
  rf_store_t *s;
  uint64_t lease_ms;
  int claim[NRACE];
  int err[NRACE];
} claim_race_t;

static void begin_worker(void *arg, int idx) {
  claim_race_t *r = arg;
  rf_payment_t p = {0};
  r->err[idx] = rf_store_payment_begin(r->s, "hot", 10, "amount=10", r->lease_ms, "w", &p);
  r->claim[idx] = r->err[idx] == 0 ? (int)p.claim : -1;
}

static int count_claims(const claim_race_t *r, int claim) {
  int n = 0;
  for (int i = 0; i < NRACE; i++) {
    if (r->err[i] != 0)
      fail_msg("payment_begin: %s", rf_err_name(r->err[i]));
    n += r->claim[i] == claim;
  }
  return n;
}

static void test_payment_concurrent_claims(void **state) {
  store_fixture_t *f = *state;
  claim_race_t r = {.s = f->s, .lease_ms = 60000};
  rf_test_run_parallel(NRACE, begin_worker, &r);
  assert_int_equal(count_claims(&r, RF_PAY_CLAIMED), 1);
  assert_int_equal(count_claims(&r, RF_PAY_BUSY), NRACE - 1);
  claim_race_t t = {.s = f->s, .lease_ms = 60000};
  rf_test_run_parallel(NRACE, begin_worker, &t); /* the lease is live: all busy */
  assert_int_equal(count_claims(&t, RF_PAY_BUSY), NRACE);
}

static void begin_slow_worker(void *arg, int idx) {
  claim_race_t *r = arg;
  rf_payment_t p = {0};
  r->err[idx] = rf_store_payment_begin(r->s, "slow", 10, "amount=10", r->lease_ms, "w", &p);
  r->claim[idx] = r->err[idx] == 0 ? (int)p.claim : -1;
}

static void test_payment_concurrent_recoverers(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t a = pay_begin(f->s, "slow", 10, 1);
  assert_int_equal(a.claim, RF_PAY_CLAIMED);
  rf_test_sleep_ms(5);
  claim_race_t r = {.s = f->s, .lease_ms = 60000};
  rf_test_run_parallel(NRACE, begin_slow_worker, &r);
  assert_int_equal(count_claims(&r, RF_PAY_TAKEN_OVER), 1);
  assert_int_equal(count_claims(&r, RF_PAY_BUSY), NRACE - 1);
  rf_payment_t p = {0};
  assert_int_equal(rf_store_payment_get(f->s, "slow", &p), 0);
  assert_int_equal(p.token, 2);
}

/* Tokens are durable: after a reopen (a restart) a takeover continues the
 * sequence, so a holder from before the restart stays fenced out. */
static void test_payment_tokens_survive_reopen(void **state) {
  store_fixture_t *f = *state;
  rf_payment_t a = pay_begin(f->s, "pay", 5, 1);
  rf_test_sleep_ms(5);
  rf_payment_t b = pay_begin(f->s, "pay", 5, 1);
  assert_int_equal(b.token, 2);
  rf_store_close(f->s);
  assert_int_equal(rf_store_open(f->url, &f->s), 0);
  rf_test_sleep_ms(5);
  rf_payment_t c = pay_begin(f->s, "pay", 5, 60000);
  assert_int_equal(c.claim, RF_PAY_TAKEN_OVER);
  assert_int_equal(c.token, 3);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, a.token, NULL), RF_ESTALE);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, b.token, NULL), RF_ESTALE);
  assert_int_equal(rf_store_charge_record(f->s, "pay", 5, 0, c.token, NULL), 0);
}

/* The whole protocol under stalls: 8 threads process 12 payments with
 * 30 ms leases, each holder stalling at random (sometimes past its lease)
 * before charging and before finishing; recoverers take over, reuse a
 * recorded charge, or charge. Exactly one charge per payment, every
 * payment final, and its stored charge id is that charge. */
enum { NPAY = 12 };

typedef struct {
  rf_store_t *s;
  atomic_int done;
  atomic_int errors;
  atomic_int last_error;
} storm_t;

static void stall(unsigned *seed) {
  unsigned r = (unsigned)rand_r(seed) % 100;
  if (r < 60)
    return;
  rf_test_sleep_ms(r < 90 ? 10 : 45); /* 10 % stall past the 30 ms lease */
}

static void storm_worker(void *arg, int idx) {
  storm_t *st = arg;
  unsigned seed = 7u * (unsigned)idx + 1u;
  while (atomic_load(&st->done) < NPAY) {
    char id[16];
    snprintf(id, sizeof id, "pay-%u", (unsigned)rand_r(&seed) % NPAY);
    rf_payment_t p = {0};
    int rc = rf_store_payment_begin(st->s, id, 9, "amount=9", 30, "w", &p);
    if (rc == 0 && (p.claim == RF_PAY_CLAIMED || p.claim == RF_PAY_TAKEN_OVER)) {
      rf_charge_t ch = p.charge;
      if (!p.has_charge) {
        stall(&seed);
        rc = rf_store_charge_record(st->s, id, 9, 0, p.token, &ch);
      }
      if (rc == 0) {
        stall(&seed);
        rc = rf_store_payment_finish(st->s, id, p.token, 0, 201, ch.charge_id, "{}");
        if (rc == 0)
          atomic_fetch_add(&st->done, 1);
      }
      if (rc == RF_ESTALE)
        rc = 0; /* lost the lease: the next holder carries on */
    }
    if (rc != 0)
      atomic_fetch_add(&st->errors, 1), atomic_store(&st->last_error, rc);
  }
}

static void test_payment_exactly_once_under_stalls(void **state) {
  store_fixture_t *f = *state;
  storm_t st = {.s = f->s};
  rf_test_run_parallel(NTHREADS, storm_worker, &st);
  if (atomic_load(&st.errors) != 0)
    fail_msg("%d errors, last %s", atomic_load(&st.errors),
             rf_err_name(atomic_load(&st.last_error)));
  assert_int_equal(atomic_load(&st.done), NPAY);
  for (int i = 0; i < NPAY; i++) {
    char id[16];
    snprintf(id, sizeof id, "pay-%d", i);
    int64_t total = 0;
    assert_int_equal(charges(f->s, id, &total), 1);
    assert_int_equal(total, 9);
    rf_payment_t p = {0};
    assert_int_equal(rf_store_payment_get(f->s, id, &p), 0);
    assert_int_equal(p.claim, RF_PAY_DONE);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT seq FROM charges WHERE payment_id = '%s'", id);
    char want[RF_STORE_CHARGE_ID_MAX + 1];
    snprintf(want, sizeof want, "ch_%lld", (long long)f->be->count(f->url, sql));
    assert_string_equal(p.charge_id, want);
  }
}

/* ---------------------------------------------------------- mail sender */

static void test_email_send_once_per_job(void **state) {
  store_fixture_t *f = *state;
  int first = -1;
  int64_t n = -1;
  assert_int_equal(rf_store_email_send(f->s, "welcome-1", 1, "a@x.io", &first), 0);
  assert_int_equal(first, 1);
  assert_int_equal(rf_store_email_send(f->s, "welcome-1", 2, "a@x.io", &first), 0);
  assert_int_equal(first, 0);
  assert_int_equal(rf_store_email_send(f->s, "welcome-1", 1, "other@x.io", &first), 0);
  assert_int_equal(first, 0);
  assert_int_equal(rf_store_email_sent_count(f->s, "a@x.io", &n), 0);
  assert_int_equal(n, 1);
  assert_int_equal(rf_store_email_sent_count(f->s, "other@x.io", &n), 0);
  assert_int_equal(n, 0);
  /* the naive twin records every call */
  assert_int_equal(rf_store_email_send_unchecked(f->s, "welcome-2", "b@x.io"), 0);
  assert_int_equal(rf_store_email_send_unchecked(f->s, "welcome-2", "b@x.io"), 0);
  assert_int_equal(rf_store_email_sent_count(f->s, "b@x.io", &n), 0);
  assert_int_equal(n, 2);
  /* and a job the twin sent counts as sent */
  assert_int_equal(rf_store_email_send(f->s, "welcome-2", 1, "b@x.io", &first), 0);
  assert_int_equal(first, 0);
}

typedef struct {
  rf_store_t *s;
  int first[NRACE];
  int err[NRACE];
} send_race_t;

static void send_worker(void *arg, int idx) {
  send_race_t *r = arg;
  int first = 0;
  r->err[idx] = rf_store_email_send(r->s, "welcome-9", (unsigned)idx + 1, "c@x.io", &first);
  r->first[idx] = first;
}

static void test_email_concurrent_sends(void **state) {
  store_fixture_t *f = *state;
  send_race_t r = {.s = f->s};
  rf_test_run_parallel(NRACE, send_worker, &r);
  int firsts = 0;
  for (int i = 0; i < NRACE; i++) {
    assert_int_equal(r.err[i], 0);
    firsts += r.first[i];
  }
  assert_int_equal(firsts, 1);
  int64_t n = 0;
  assert_int_equal(rf_store_email_sent_count(f->s, "c@x.io", &n), 0);
  assert_int_equal(n, 1);
}

/* ---------------------------------------------------------------- list */

#define T(fn)                                                                                      \
  { #fn, fn, store_suite_setup, store_suite_teardown, NULL }

static const struct CMUnitTest suite[] = {
    T(test_open_twice_is_idempotent),
    T(test_concurrent_open_processes),
    T(test_refuses_across_fork),
    T(test_users),
    T(test_users_unchecked),
    T(test_inventory),
    T(test_wallets),
    T(test_concurrent_purchases),
    T(test_concurrent_wallet_cas),
    T(test_naive_wallet_loses_updates),
    T(test_concurrent_signups),
    T(test_payment_claim_busy_mismatch_done),
    T(test_payment_bad_arguments),
    T(test_payment_takeover_fences_stale_holder),
    T(test_payment_takeover_reports_charge),
    T(test_payment_concurrent_claims),
    T(test_payment_concurrent_recoverers),
    T(test_payment_tokens_survive_reopen),
    T(test_payment_exactly_once_under_stalls),
    T(test_email_send_once_per_job),
    T(test_email_concurrent_sends),
};

#define NSUITE (sizeof suite / sizeof suite[0])

const struct CMUnitTest *store_suite_tests(const store_backend_t *be, size_t *n) {
  struct CMUnitTest *t = calloc(NSUITE, sizeof *t);
  assert_non_null(t);
  for (size_t i = 0; i < NSUITE; i++) {
    t[i] = suite[i];
    t[i].initial_state = (void *)be;
  }
  *n = NSUITE;
  return t;
}
