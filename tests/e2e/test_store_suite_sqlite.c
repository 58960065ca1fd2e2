/* test_store_suite_sqlite.c - the shared store suite (store_suite.c)
 * against SQLite: the same contract test_store_pg.c checks on PostgreSQL.
 * (test_store_sqlite.c holds the SQLite-specific tests.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store_suite.h"

/* url: "sqlite:/tmp/rf-suite-XXXXXX/db" */
static void sq_fresh(char *url, size_t cap, const char *extra) {
  (void)extra;
  char dir[64] = "/tmp/rf-suite-XXXXXX";
  assert_non_null(mkdtemp(dir));
  snprintf(url, cap, "sqlite:%s/db", dir);
}

static int64_t sq_count(const char *url, const char *sql) {
  sqlite3 *db;
  sqlite3_stmt *st;
  assert_int_equal(sqlite3_open_v2(url + 7, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static void sq_remove(const char *url) {
  const char *path = url + 7;
  const char *suffix[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    char p[600];
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
  char dir[600];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  assert_non_null(slash);
  *slash = '\0';
  assert_int_equal(rmdir(dir), 0);
}

static const store_backend_t sqlite_backend = {"sqlite", sq_fresh, sq_count, sq_remove};

int main(void) {
  size_t n = 0;
  const struct CMUnitTest *tests = store_suite_tests(&sqlite_backend, &n);
  int failed = _cmocka_run_group_tests("store_suite/sqlite", tests, n, NULL, NULL);
  free((void *)tests);
  return failed;
}
