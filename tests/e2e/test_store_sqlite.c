/* test_store_sqlite.c - the SQLite store: every operation, the error
 * mapping of store.h, idempotent migrations, and the three invariants
 * under concurrency (one winner per email, no oversell, no lost update).
 * Each test gets a fresh database in its own mkdtemp directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "backend.h" /* rf__sqlite_migrations_count */
#include "rf_test.h"
#include "store.h"

typedef struct fixture {
  char dir[64];
  char path[96];
  char url[128];
  rf_store_t *s;
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  assert_non_null(f);
  snprintf(f->dir, sizeof f->dir, "/tmp/rf-store-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  snprintf(f->path, sizeof f->path, "%s/db", f->dir);
  snprintf(f->url, sizeof f->url, "sqlite:%s", f->path);
  assert_int_equal(rf_store_open(f->url, &f->s), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  rf_store_close(f->s);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    char p[160];
    snprintf(p, sizeof p, "%s%s", f->path, suffix[i]);
    unlink(p);
  }
  assert_int_equal(rmdir(f->dir), 0);
  free(f);
  return 0;
}

/* ------------------------------------------------------------ lifecycle */

static void test_open_errors(void **state) {
  (void)state;
  rf_store_t *s = NULL;
  char err[256];
  assert_int_equal(rf_store_open(NULL, &s), RF_EINVAL);
  assert_int_equal(rf_store_open("sqlite:/tmp/x", NULL), RF_EINVAL);
  assert_int_equal(rf_store_open_err("mysql://x", &s, err, sizeof err), RF_EINVAL);
  assert_non_null(strstr(err, "mysql://x"));
  assert_int_equal(rf_store_open("sqlite:", &s), RF_EINVAL);
  assert_int_equal(rf_store_open("sqlite::memory:", &s), RF_EINVAL);
  /* PostgreSQL: not built (RF_ENOTSUP) or, here, nothing listening */
  int pg = rf_store_open("postgres://127.0.0.1:1/x?connect_timeout=2", &s);
  assert_true(pg == RF_ENOTSUP || pg == RF_EUNAVAIL);
  assert_int_equal(rf_store_open_err("sqlite:/nonexistent-dir/sub/db", &s, err, sizeof err),
                   RF_EUNAVAIL);
  assert_non_null(strstr(err, "/nonexistent-dir/sub/db"));
  assert_null(s);
  rf_store_close(NULL);
  assert_string_equal(rf_store_kind(NULL), "none");
  assert_int_equal(rf_store_ping(NULL), RF_EINVAL);
}

static int64_t count_rows(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void test_open_twice_is_idempotent(void **state) {
  fixture_t *f = *state;
  int64_t id = 0;
  assert_string_equal(rf_store_kind(f->s), "sqlite");
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
  /* every migration recorded exactly once */
  int64_t nmig = (int64_t)rf__sqlite_migrations_count;
  assert_int_equal(count_rows(f->path, "SELECT count(*) FROM schema_version"), nmig);
  assert_int_equal(count_rows(f->path, "SELECT count(DISTINCT version) FROM schema_version"), nmig);
  assert_int_equal(count_rows(f->path, "SELECT max(version) FROM schema_version"), nmig);
  assert_int_equal(count_rows(f->path, "SELECT count(*) FROM users"), 1);
  char mode[16] = "";
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open_v2(f->path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  snprintf(mode, sizeof mode, "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  assert_string_equal(mode, "wal");
}

/* Several processes opening one new database at once (racefreed
 * --workers N): every one succeeds and the schema is applied once. */
static void test_concurrent_open_processes(void **state) {
  fixture_t *f = *state;
  char url[192], path[128];
  snprintf(path, sizeof path, "%s/multi", f->dir);
  snprintf(url, sizeof url, "sqlite:%s", path);
  enum { NPROC = 12 };
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
      int64_t id;
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
  assert_int_equal(count_rows(path, "SELECT count(*) FROM schema_version"),
                   (int64_t)rf__sqlite_migrations_count);
  assert_int_equal(count_rows(path, "SELECT count(*) FROM users"), NPROC);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    char p[180];
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
}

/* A store opened before fork() refuses to run in the child. */
static void test_refuses_across_fork(void **state) {
  fixture_t *f = *state;
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
  fixture_t *f = *state;
  int64_t a = 0, b = 0, again = 0;
  char email[RF_STORE_EMAIL_MAX + 1];
  assert_int_equal(rf_store_user_create(f->s, "alice@example.com", &a), 0);
  assert_int_equal(rf_store_user_create(f->s, "bob@example.com", &b), 0);
  assert_true(a > 0 && b > 0 && a != b);
  assert_int_equal(rf_store_user_create(f->s, "alice@example.com", &again), RF_EEXIST);
  assert_int_equal(rf_store_user_get(f->s, a, email, sizeof email), 0);
  assert_string_equal(email, "alice@example.com");
  assert_int_equal(rf_store_user_get(f->s, b + 1000, email, sizeof email), RF_ENOENT);
  assert_int_equal(rf_store_user_get(f->s, a, email, 5), RF_ERANGE);
  assert_int_equal(rf_store_user_get(f->s, a, NULL, 10), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, "", &again), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, NULL, &again), RF_EINVAL);
  assert_int_equal(rf_store_user_create(f->s, "x@y", NULL), RF_EINVAL);
  char big[RF_STORE_EMAIL_MAX + 2];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  assert_int_equal(rf_store_user_create(f->s, big, &again), RF_EINVAL);
  big[RF_STORE_EMAIL_MAX] = '\0'; /* exactly the maximum is fine */
  assert_int_equal(rf_store_user_create(f->s, big, &again), 0);
}

static void test_users_unchecked(void **state) {
  fixture_t *f = *state;
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
}

/* ------------------------------------------------------------ inventory */

static void test_inventory(void **state) {
  fixture_t *f = *state;
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
  /* bad arguments change nothing */
  assert_int_equal(rf_store_item_put(f->s, "sku-1", -1), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 0, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", -5, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "", 1, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, NULL, 1, &left), RF_EINVAL);
  assert_int_equal(rf_store_item_purchase(f->s, "sku-1", 1, NULL), RF_EINVAL);
  char longid[RF_STORE_ID_MAX + 2];
  memset(longid, 'i', sizeof longid - 1);
  longid[sizeof longid - 1] = '\0';
  assert_int_equal(rf_store_item_put(f->s, longid, 1), RF_EINVAL);
  longid[RF_STORE_ID_MAX] = '\0';
  assert_int_equal(rf_store_item_put(f->s, longid, 1), 0);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 1000000000000LL);
  /* the naive twin's plain write */
  assert_int_equal(rf_store_item_set_stock(f->s, "sku-1", 7), 0);
  assert_int_equal(rf_store_item_get(f->s, "sku-1", &stock), 0);
  assert_int_equal(stock, 7);
  assert_int_equal(rf_store_item_set_stock(f->s, "nope", 7), RF_ENOENT);
  assert_int_equal(rf_store_item_set_stock(f->s, "sku-1", -1), RF_EINVAL);
}

/* -------------------------------------------------------------- wallets */

static void test_wallets(void **state) {
  fixture_t *f = *state;
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
  /* the naive twin: no version check, version still +1 */
  assert_int_equal(rf_store_wallet_set(f->s, "u1", 10, &nv), 0);
  assert_int_equal(nv, 4);
  assert_int_equal(rf_store_wallet_set(f->s, "u1", -10, &nv), RF_EINVAL);
  assert_int_equal(rf_store_wallet_get(f->s, "u1", &b, &v), 0);
  assert_int_equal(b, 10);
  assert_int_equal(v, 4);
  assert_int_equal(rf_store_wallet_put(f->s, "u1", -1, &v), RF_EINVAL);
  assert_int_equal(rf_store_wallet_put(f->s, NULL, 1, &v), RF_EINVAL);
  assert_int_equal(rf_store_wallet_get(f->s, "", &b, &v), RF_EINVAL);
}

/* ---------------------------------------------------------- concurrency */

enum { NTHREADS = 8 };

typedef struct shared {
  rf_store_t *s;
  int per_thread;
  int ok[NTHREADS];
  int conflict[NTHREADS];
  int other[NTHREADS];
} shared_t;

static void purchase_worker(void *arg, int idx) {
  shared_t *sh = arg;
  for (int i = 0; i < sh->per_thread; i++) {
    int64_t left;
    int rc = rf_store_item_purchase(sh->s, "hot", 1, &left);
    if (rc == 0)
      sh->ok[idx]++;
    else if (rc == RF_ECONFLICT)
      sh->conflict[idx]++;
    else
      sh->other[idx]++;
  }
}

static void test_concurrent_purchases(void **state) {
  fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(60)};
  int64_t stock = NTHREADS * sh.per_thread / 2;
  assert_int_equal(rf_store_item_put(f->s, "hot", stock), 0);
  rf_test_run_parallel(NTHREADS, purchase_worker, &sh);
  int ok = 0, conflict = 0, other = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ok += sh.ok[i];
    conflict += sh.conflict[i];
    other += sh.other[i];
  }
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
      int64_t b, v;
      if (rf_store_wallet_get(sh->s, "w", &b, &v) != 0) {
        sh->other[idx]++;
        break;
      }
      if (b < 3) {
        sh->conflict[idx]++; /* insufficient funds */
        break;
      }
      int rc = rf_store_wallet_cas(sh->s, "w", v, b - 3, NULL);
      if (rc == 0) {
        sh->ok[idx]++;
        break;
      }
      if (rc != RF_ECONFLICT) {
        sh->other[idx]++;
        break;
      }
    }
  }
}

static void test_concurrent_wallet_cas(void **state) {
  fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(40)};
  /* enough for about two thirds of the withdrawals */
  int64_t initial = 3 * (NTHREADS * sh.per_thread * 2 / 3) + 2;
  assert_int_equal(rf_store_wallet_put(f->s, "w", initial, NULL), 0);
  rf_test_run_parallel(NTHREADS, withdraw_worker, &sh);
  int ok = 0, other = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ok += sh.ok[i];
    other += sh.other[i];
  }
  assert_int_equal(other, 0);
  int64_t b, v;
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
    int64_t b;
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
  fixture_t *f = *state;
  shared_t sh = {.s = f->s, .per_thread = (int)rf_test_iters(40)};
  int64_t initial = 1000000;
  assert_int_equal(rf_store_wallet_put(f->s, "n", initial, NULL), 0);
  rf_test_run_parallel(NTHREADS, withdraw_naive_worker, &sh);
  int ok = 0;
  for (int i = 0; i < NTHREADS; i++)
    ok += sh.ok[i];
  int64_t b;
  assert_int_equal(rf_store_wallet_get(f->s, "n", &b, NULL), 0);
  assert_true(b > initial - ok); /* some successful withdrawals were lost */
}

static void signup_worker(void *arg, int idx) {
  shared_t *sh = arg;
  int64_t id;
  int rc = rf_store_user_create(sh->s, "same@example.com", &id);
  if (rc == 0)
    sh->ok[idx]++;
  else if (rc == RF_EEXIST)
    sh->conflict[idx]++;
  else
    sh->other[idx]++;
}

static void test_concurrent_signups(void **state) {
  fixture_t *f = *state;
  shared_t sh = {.s = f->s};
  rf_test_run_parallel(NTHREADS, signup_worker, &sh);
  int ok = 0, conflict = 0, other = 0;
  for (int i = 0; i < NTHREADS; i++) {
    ok += sh.ok[i];
    conflict += sh.conflict[i];
    other += sh.other[i];
  }
  assert_int_equal(ok, 1);
  assert_int_equal(conflict, NTHREADS - 1);
  assert_int_equal(other, 0);
  assert_int_equal(count_rows(f->path, "SELECT count(*) FROM users"), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_open_errors),
      cmocka_unit_test_setup_teardown(test_open_twice_is_idempotent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_open_processes, setup, teardown),
      cmocka_unit_test_setup_teardown(test_refuses_across_fork, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users, setup, teardown),
      cmocka_unit_test_setup_teardown(test_users_unchecked, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inventory, setup, teardown),
      cmocka_unit_test_setup_teardown(test_wallets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_purchases, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_wallet_cas, setup, teardown),
      cmocka_unit_test_setup_teardown(test_naive_wallet_loses_updates, setup, teardown),
      cmocka_unit_test_setup_teardown(test_concurrent_signups, setup, teardown),
  };
  return cmocka_run_group_tests_name("store_sqlite", tests, NULL, NULL);
}
