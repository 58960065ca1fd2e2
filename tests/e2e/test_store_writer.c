/* test_store_writer.c - the SQLite store's writer (store.h, "the
 * executor"): group commit with a savepoint per job, answers after the
 * COMMIT, a failed COMMIT fails the whole batch, the event-loop guard, and
 * the wait for a busy database happening on the writer, not the caller.
 *
 * The interleavings are forced with the store's hook point
 * "store.batch.commit" (the writer parks there between a batch's last job
 * and its COMMIT, or fails the COMMIT), not with sleeps: the first batch
 * parks, the test queues the jobs it wants in the next batch, then lets it
 * go on.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "racefree/hook.h"
#include "rf_test.h"
#include "store.h"

#define HOOK "store.batch.commit"

typedef struct tjob tjob_t;
typedef int (*tjob_fn)(rf_store_t *s, tjob_t *j);

struct tjob {
  rf_store_job_t job;
  tjob_fn fn;
  const char *a; /* an email or an item id */
  int64_t out;   /* an id or the remaining stock */
  int rc;
  int visible_in_done; /* done: the job's user, read on a fresh connection */
  const char *path;    /* the database file, for visible_in_done */
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done;
};

static char g_dir[64], g_path[128], g_url[160];

static int64_t count_sql(const char *sql, const char *arg) {
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  assert_int_equal(sqlite3_open_v2(g_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
  if (arg)
    sqlite3_bind_text(st, 1, arg, -1, SQLITE_STATIC);
  assert_int_equal(sqlite3_step(st), SQLITE_ROW);
  int64_t n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

static int64_t users_with(const char *email) {
  return count_sql("SELECT count(*) FROM users WHERE email = ?1", email);
}

static int work(rf_store_t *s, void *arg) {
  tjob_t *j = arg;
  return j->fn(s, j);
}

static void done(void *arg, int rc) {
  tjob_t *j = arg;
  if (j->path != NULL) { /* a reader that is not the writer sees the commit */
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_open_v2(j->path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, "SELECT count(*) FROM users WHERE email = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
      sqlite3_bind_text(st, 1, j->a, -1, SQLITE_STATIC);
      if (sqlite3_step(st) == SQLITE_ROW)
        j->visible_in_done = (int)sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  pthread_mutex_lock(&j->mu);
  j->rc = rc;
  j->done = 1;
  pthread_cond_signal(&j->cv);
  pthread_mutex_unlock(&j->mu);
}

static void submit_path(rf_store_t *s, tjob_t *j, tjob_fn fn, const char *a, const char *path) {
  memset(j, 0, sizeof *j);
  j->fn = fn;
  j->a = a;
  j->path = path;
  pthread_mutex_init(&j->mu, NULL);
  pthread_cond_init(&j->cv, NULL);
  j->job = (rf_store_job_t){.work = work, .done = done, .arg = j};
  assert_int_equal(rf_store_submit(s, RF_STORE_WRITE, &j->job), 0);
}

static void submit(rf_store_t *s, tjob_t *j, tjob_fn fn, const char *a) {
  submit_path(s, j, fn, a, NULL);
}

static int wait_done(tjob_t *j) {
  pthread_mutex_lock(&j->mu);
  while (!j->done)
    pthread_cond_wait(&j->cv, &j->mu);
  pthread_mutex_unlock(&j->mu);
  pthread_cond_destroy(&j->cv);
  pthread_mutex_destroy(&j->mu);
  return j->rc;
}

static int is_done(tjob_t *j) {
  pthread_mutex_lock(&j->mu);
  int d = j->done;
  pthread_mutex_unlock(&j->mu);
  return d;
}

/* ---------------------------------------------------------- job bodies */

static int j_user(rf_store_t *s, tjob_t *j) {
  return rf_store_user_create(s, j->a, &j->out);
}

/* Writes an item, then fails: the savepoint must undo the write. */
static int j_put_then_fail(rf_store_t *s, tjob_t *j) {
  int rc = rf_store_item_put(s, j->a, 5);
  return rc != 0 ? rc : RF_ECONFLICT;
}

/* Two writes of one job, in order: put 7, take 2. */
static int j_put_then_buy(rf_store_t *s, tjob_t *j) {
  int rc = rf_store_item_put(s, j->a, 7);
  return rc != 0 ? rc : rf_store_item_purchase(s, j->a, 2, &j->out);
}

static int j_buy5(rf_store_t *s, tjob_t *j) {
  return rf_store_item_purchase(s, j->a, 5, &j->out);
}

/* ------------------------------------------------------------ fixture */

static int setup(void **state) {
  snprintf(g_dir, sizeof g_dir, "/tmp/rf-writer-XXXXXX");
  if (mkdtemp(g_dir) == NULL)
    return -1;
  snprintf(g_path, sizeof g_path, "%s/db", g_dir);
  snprintf(g_url, sizeof g_url, "sqlite:%s", g_path);
  rf_store_t *s = NULL;
  if (rf_store_open(g_url, &s) != 0)
    return -1;
  rf_hook_reset();
  *state = s;
  return 0;
}

static int teardown(void **state) {
  rf_store_close(*state);
  rf_hook_reset();
  char p[200];
  const char *sfx[] = {"", "-wal", "-shm"};
  for (size_t i = 0; i < 3; i++) {
    snprintf(p, sizeof p, "%s%s", g_path, sfx[i]);
    unlink(p);
  }
  rmdir(g_dir);
  return 0;
}

/* The first batch (gate) parks before its COMMIT; jobs queued meanwhile
 * form the next batch. */
static void park_gate(rf_store_t *s, tjob_t *gate, const char *email) {
  assert_int_equal(rf_hook_arm(HOOK, 1), 0);
  submit(s, gate, j_user, email);
  assert_int_equal(rf_hook_wait_parked(HOOK, 1, 5000), 0);
}

/* ---------------------------------------------------------------- tests */

/* One batch of five jobs: a unique violation, a success, a job that wrote
 * and then failed, a job with two writes, and a job that depends on the
 * one before it. Each failure is its own; the rest commit, in order. */
static void test_batch_isolation_and_order(void **state) {
  rf_store_t *s = *state;
  tjob_t gate, b, c, d, e, f;
  /* No time bound here: the count of transactions is the point, and a slow
   * machine (a sanitizer) must not split the batch. */
  assert_int_equal(rf_store_set_batch_limits(s, RF_STORE_BATCH_MAX, 60000), 0);
  assert_int_equal(rf_store_set_batch_limits(s, 0, 10), RF_EINVAL);
  uint64_t batches0 = 0, jobs0 = 0;
  rf_store_exec_stats(s, &batches0, &jobs0);
  park_gate(s, &gate, "dup@example.com");
  submit(s, &b, j_user, "dup@example.com"); /* the gate's email: unique violation */
  submit(s, &c, j_user, "c@example.com");
  submit(s, &d, j_put_then_fail, "d");
  submit(s, &e, j_put_then_buy, "e");
  submit(s, &f, j_buy5, "e");
  assert_int_equal(rf_hook_release(HOOK, 1), 0);
  assert_int_equal(wait_done(&gate), 0);
  assert_int_equal(wait_done(&b), RF_EEXIST);
  assert_int_equal(wait_done(&c), 0);
  assert_int_equal(wait_done(&d), RF_ECONFLICT);
  assert_int_equal(wait_done(&e), 0);
  assert_int_equal(e.out, 5); /* put 7, then take 2, inside one job */
  assert_int_equal(wait_done(&f), 0);
  assert_int_equal(f.out, 0); /* ran after e: took the 5 e left */
  rf_store_drain(s);          /* the statistics are counted after the done calls */
  uint64_t batches = 0, jobs = 0;
  rf_store_exec_stats(s, &batches, &jobs);
  assert_int_equal(jobs - jobs0, 6);
  assert_int_equal(batches - batches0, 2); /* the gate alone, then b..f together */

  assert_int_equal(users_with("dup@example.com"), 1);
  assert_int_equal(users_with("c@example.com"), 1);
  int64_t stock = -1;
  assert_int_equal(rf_store_item_get(s, "d", &stock), RF_ENOENT); /* d's write undone */
  assert_int_equal(rf_store_item_get(s, "e", &stock), 0);
  assert_int_equal(stock, 0);
}

/* A job is answered after the COMMIT that holds its write: while the
 * writer is parked before the COMMIT nobody has been answered and no other
 * connection sees the row; inside `done` a fresh connection sees it. */
static void test_done_after_commit(void **state) {
  rf_store_t *s = *state;
  tjob_t g;
  assert_int_equal(rf_hook_arm(HOOK, 1), 0);
  submit_path(s, &g, j_user, "g@example.com", g_path);
  assert_int_equal(rf_hook_wait_parked(HOOK, 1, 5000), 0);
  rf_test_sleep_ms(50);
  assert_false(is_done(&g));
  assert_int_equal(users_with("g@example.com"), 0);
  assert_int_equal(rf_hook_release(HOOK, 1), 0);
  assert_int_equal(wait_done(&g), 0);
  assert_int_equal(g.visible_in_done, 1);
}

/* A COMMIT that fails fails every job of its batch, including those whose
 * own work succeeded, and nothing of the batch is in the database. */
static void test_commit_failure_fails_the_batch(void **state) {
  rf_store_t *s = *state;
  tjob_t gate, h, i, k;
  park_gate(s, &gate, "gate@example.com");
  submit(s, &h, j_user, "h@example.com");
  submit(s, &i, j_user, "i@example.com");
  assert_int_equal(rf_hook_fail(HOOK, 2), 0); /* the gate's COMMIT, then h+i's */
  assert_int_equal(rf_hook_release(HOOK, 1), 0);
  assert_int_equal(wait_done(&gate), RF_EIO);
  assert_int_equal(wait_done(&h), RF_EIO);
  assert_int_equal(wait_done(&i), RF_EIO);
  assert_int_equal(users_with("gate@example.com"), 0);
  assert_int_equal(users_with("h@example.com"), 0);
  assert_int_equal(users_with("i@example.com"), 0);
  submit(s, &k, j_user, "h@example.com"); /* the writer goes on */
  assert_int_equal(wait_done(&k), 0);
  assert_int_equal(users_with("h@example.com"), 1);
}

/* The event-loop guard counts a write transaction begun on a marked
 * thread, and nothing for the same write handed to the writer. */
static void test_loop_guard(void **state) {
  rf_store_t *s = *state;
  rf_store_loop_thread(1);
  uint64_t w0 = rf_store_loop_waits();
  assert_int_equal(rf_store_item_put(s, "direct", 1), 0); /* the naive way */
  assert_int_equal(rf_store_loop_waits(), w0 + 1);
  int64_t v = 0;
  assert_int_equal(rf_store_item_get(s, "direct", &v), 0); /* a WAL read: no wait */
  tjob_t j;
  submit(s, &j, j_user, "loop@example.com");
  assert_int_equal(wait_done(&j), 0);
  assert_int_equal(rf_store_loop_waits(), w0 + 1);
  rf_store_loop_thread(0);
}

/* Another connection holds the write lock: rf_store_submit returns at
 * once; the writer waits (busy_timeout) and completes the job once the
 * lock is released. The caller never waits on the database. */
static void test_busy_wait_is_the_writers(void **state) {
  rf_store_t *s = *state;
  sqlite3 *other = NULL;
  assert_int_equal(sqlite3_open(g_path, &other), SQLITE_OK);
  assert_int_equal(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
  uint64_t t0 = rf_test_now_ms();
  tjob_t j;
  submit(s, &j, j_user, "busy@example.com");
  assert_true(rf_test_now_ms() - t0 < 100); /* handed over, not waited for */
  rf_test_sleep_ms(300);
  assert_false(is_done(&j)); /* the writer is waiting for the lock */
  assert_int_equal(sqlite3_exec(other, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(other);
  assert_int_equal(wait_done(&j), 0);
  assert_int_equal(users_with("busy@example.com"), 1);
}

/* The count bound: with max_jobs 2, five queued jobs take three
 * transactions after the gate's. */
static void test_batch_count_bound(void **state) {
  rf_store_t *s = *state;
  assert_int_equal(rf_store_set_batch_limits(s, 2, 60000), 0);
  uint64_t b0 = 0;
  rf_store_exec_stats(s, &b0, NULL);
  tjob_t gate, j[5];
  static const char *const emails[5] = {"b1@example.com", "b2@example.com", "b3@example.com",
                                        "b4@example.com", "b5@example.com"};
  park_gate(s, &gate, "bgate@example.com");
  for (int i = 0; i < 5; i++)
    submit(s, &j[i], j_user, emails[i]);
  assert_int_equal(rf_hook_release(HOOK, 1), 0);
  assert_int_equal(wait_done(&gate), 0);
  for (int i = 0; i < 5; i++)
    assert_int_equal(wait_done(&j[i]), 0);
  rf_store_drain(s);
  uint64_t b1 = 0;
  rf_store_exec_stats(s, &b1, NULL);
  assert_int_equal(b1 - b0, 1 + 3);
}

/* rf_store_drain returns only after every submitted job's done ran. */
static void test_drain(void **state) {
  rf_store_t *s = *state;
  enum { N = 64 };
  tjob_t *js = calloc(N, sizeof *js);
  char(*emails)[32] = calloc(N, sizeof *emails);
  assert_non_null(js);
  assert_non_null(emails);
  for (int i = 0; i < N; i++) {
    snprintf(emails[i], sizeof emails[i], "drain%d@example.com", i);
    submit(s, &js[i], j_user, emails[i]);
  }
  rf_store_drain(s);
  for (int i = 0; i < N; i++)
    assert_true(is_done(&js[i]));
  for (int i = 0; i < N; i++)
    assert_int_equal(wait_done(&js[i]), 0);
  assert_int_equal(count_sql("SELECT count(*) FROM users WHERE email LIKE 'drain%'", NULL), N);
  free(emails);
  free(js);
}

int main(void) {
  if (!rf_hook_enabled()) {
    fprintf(stderr, "test_store_writer needs the hooked store\n");
    return 1;
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_batch_isolation_and_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_done_after_commit, setup, teardown),
      cmocka_unit_test_setup_teardown(test_commit_failure_fails_the_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(test_loop_guard, setup, teardown),
      cmocka_unit_test_setup_teardown(test_busy_wait_is_the_writers, setup, teardown),
      cmocka_unit_test_setup_teardown(test_batch_count_bound, setup, teardown),
      cmocka_unit_test_setup_teardown(test_drain, setup, teardown),
  };
  return cmocka_run_group_tests_name("store/writer", tests, NULL, NULL);
}
