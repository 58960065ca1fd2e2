/* test_store_pg.c - the PostgreSQL store against a real server.
 *
 * The server: RF_TEST_PG_URL, or a private cluster this program starts with
 * scripts/pg.sh (tests/support/rf_pg.h); every test works in a schema of
 * its own. First the shared suite (store_suite.c: every operation, the
 * invariants under 8 threads, migrations with 4 processes opening at once),
 * then what only PostgreSQL has: URL parameters and the pool knob, the
 * SQLSTATE mapping (live where a server can be made to produce the code),
 * serialization failures retried under SERIALIZABLE, statement timeouts,
 * the migration lock, a store closed in a forked child, a frozen server
 * and a stopped and restarted one.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "backend.h"
#include "rf_pg.h"
#include "store_suite.h"

static void pg_fresh(char *url, size_t cap, const char *extra) {
  rf_test_pg_schema_url(url, cap, extra, NULL, NULL);
}

/* A private cluster is deleted whole at exit: dropping each test's schema
 * would only cost time. Someone else's server gets its schemas back. */
static void pg_remove(const char *url) {
  if (!rf_test_pg_private())
    rf_test_pg_drop(url);
}

static const store_backend_t pg_backend = {"postgres", pg_fresh, rf_test_pg_int, pg_remove};

/* A store on a fresh schema; extra URL parameters and server options. */
static rf_store_t *open_fresh(char *url, size_t cap, const char *extra, const char *pgopts) {
  rf_test_pg_schema_url(url, cap, extra, pgopts, NULL);
  rf_store_t *s = NULL;
  char err[256] = "";
  int rc = rf_store_open_err(url, &s, err, sizeof err);
  if (rc != 0) {
    fail_msg("open: %s (%s)", rf_err_name(rc), err);
  }
  return s;
}

static rf__pg_stats_t stats(rf_store_t *s) {
  rf__pg_stats_t st;
  rf__store_pg_stats(s, &st);
  return st;
}

/* ------------------------------------------------------------ open, URL */

static void test_pg_open_errors(void **state) {
  (void)state;
  rf_store_t *s = NULL;
  char err[256];
  /* nothing listens on port 1: refused at once */
  uint64_t t0 = rf_test_now_ms();
  assert_int_equal(rf_store_open_err("postgres://127.0.0.1:1/x", &s, err, sizeof err), RF_EUNAVAIL);
  assert_true(rf_test_now_ms() - t0 < 3000);
  assert_non_null(strstr(err, "connect"));
  assert_null(strstr(err, "\n"));
  /* the store's own parameters are checked */
  const char *bad[] = {"?pool=0",
                       "?pool=257",
                       "?pool=x",
                       "?pool=",
                       "?pool",
                       "?timeout_ms=5",
                       "?timeout_ms=600001",
                       "?pool=2&timeout_ms=-1"};
  char url[512];
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(url, sizeof url, "%s%s", "postgres://127.0.0.1:1/x", bad[i]);
    assert_int_equal(rf_store_open_err(url, &s, err, sizeof err), RF_EINVAL);
    assert_non_null(strstr(err, "PostgreSQL URL"));
  }
  /* libpq's are checked by libpq, before any connection */
  assert_int_equal(rf_store_open_err("postgres://127.0.0.1:1/x?bogus=1", &s, err, sizeof err),
                   RF_EINVAL);
  assert_non_null(strstr(err, "bogus"));
  /* a database that does not exist: the server's own message */
  const char *base = rf_test_pg_url();
  snprintf(url, sizeof url, "%.*s/no_such_db", (int)(strrchr(base, '/') - base), base);
  assert_int_equal(rf_store_open_err(url, &s, err, sizeof err), RF_EUNAVAIL);
  assert_non_null(strstr(err, "no_such_db"));
  assert_null(s);
  /* postgresql:// is the same scheme */
  snprintf(url, sizeof url, "postgresql://%s", strstr(base, "://") + 3);
  assert_int_equal(rf_store_open_err(url, &s, err, sizeof err), 0);
  assert_string_equal(rf_store_kind(s), "postgres");
  assert_int_equal(rf_store_ping(s), 0);
  rf__pg_stats_t st = stats(s);
  assert_int_equal(st.pool_size, 8); /* the defaults */
  assert_int_equal(st.timeout_ms, 5000);
  rf_store_close(s);
}

/* --------------------------------------------------------- the mapping */

static void test_pg_sqlstate_mapping(void **state) {
  (void)state;
  static const struct {
    const char *sqlstate;
    int rc;
  } map[] = {
      {"23505", RF_EEXIST},    /* unique_violation */
      {"40001", RF__PG_RETRY}, /* serialization_failure: retried */
      {"40P01", RF__PG_RETRY}, /* deadlock_detected: retried */
      {"57014", RF_EBUSY},     /* query_canceled (statement_timeout) */
      {"55P03", RF_EBUSY},     /* lock_not_available */
      {"08000", RF_EUNAVAIL},  /* connection_exception */
      {"08006", RF_EUNAVAIL},  /* connection_failure */
      {"08001", RF_EUNAVAIL},  /* sqlclient_unable_to_establish_sqlconnection */
      {"57P01", RF_EUNAVAIL},  /* admin_shutdown */
      {"57P02", RF_EUNAVAIL},  /* crash_shutdown */
      {"57P03", RF_EUNAVAIL},  /* cannot_connect_now */
      {"53300", RF_EUNAVAIL},  /* too_many_connections */
      {"23514", RF_EINVAL},    /* check_violation */
      {"23502", RF_EINVAL},    /* not_null_violation */
      {"22003", RF_EINVAL},    /* numeric_value_out_of_range */
      {"42P01", RF_EIO},       /* undefined_table */
      {"53100", RF_EIO},       /* disk_full */
      {"XX000", RF_EIO},       /* internal_error */
      {"", RF_EIO},
      {"4000", RF_EIO},
      {NULL, RF_EIO},
  };
  for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
    if (rf__pg_map_sqlstate(map[i].sqlstate) != map[i].rc) {
      fail_msg("%s -> %d, expected %d", map[i].sqlstate ? map[i].sqlstate : "NULL",
               rf__pg_map_sqlstate(map[i].sqlstate), map[i].rc);
    }
  }
}

/* 23505 live: the same email twice (also covered by the suite), and the
 * schema's own CHECK behind the store's argument checks (23514 ->
 * RF_EINVAL) by a row the store did not write. */
static void test_pg_constraints_live(void **state) {
  (void)state;
  char url[512];
  rf_store_t *s = open_fresh(url, sizeof url, NULL, NULL);
  int64_t id = 0;
  assert_int_equal(rf_store_user_create(s, "x@y.z", &id), 0);
  assert_int_equal(rf_store_user_create(s, "x@y.z", &id), RF_EEXIST);
  assert_int_equal(rf_store_item_put(s, "thin", 1), 0);
  PGconn *c = rf_test_pg_connect(url);
  PGresult *r = PQexec(c, "UPDATE items SET stock = -1 WHERE id = 'thin'");
  assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
  assert_int_equal(rf__pg_map_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE)), RF_EINVAL);
  PQclear(r);
  PQfinish(c);
  rf_store_close(s);
}

/* --------------------------------------------------------------- pool */

typedef struct {
  rf_store_t *s;
  int per_thread;
  atomic_int ok, conflict, busy, other;
  atomic_int last_other;
} load_t;

static void buy_worker(void *arg, int idx) {
  (void)idx;
  load_t *l = arg;
  for (int i = 0; i < l->per_thread; i++) {
    int64_t left = 0;
    int rc = rf_store_item_purchase(l->s, "hot", 1, &left);
    if (rc == 0)
      atomic_fetch_add(&l->ok, 1);
    else if (rc == RF_ECONFLICT)
      atomic_fetch_add(&l->conflict, 1);
    else if (rc == RF_EBUSY)
      atomic_fetch_add(&l->busy, 1);
    else
      atomic_fetch_add(&l->other, 1), atomic_store(&l->last_other, rc);
  }
}

/* pool=2: 8 threads share two server connections, and nothing is lost. */
static void test_pg_pool_knob(void **state) {
  (void)state;
  char url[512], app[64], extra[128];
  snprintf(app, sizeof app, "rft_pool_%ld", (long)getpid());
  snprintf(extra, sizeof extra, "pool=2&application_name=%s", app);
  rf_store_t *s = open_fresh(url, sizeof url, extra, NULL);
  assert_int_equal(stats(s).pool_size, 2);
  load_t l = {.s = s, .per_thread = (int)rf_test_iters(50)};
  int64_t stock = 8 * l.per_thread / 2;
  assert_int_equal(rf_store_item_put(s, "hot", stock), 0);
  rf_test_run_parallel(8, buy_worker, &l);
  assert_int_equal(atomic_load(&l.other), 0);
  assert_int_equal(atomic_load(&l.busy), 0);
  assert_int_equal(atomic_load(&l.ok), stock);
  assert_int_equal(atomic_load(&l.conflict), (int64_t)8 * l.per_thread - stock);
  rf__pg_stats_t st = stats(s);
  assert_true(st.connects >= 1 && st.connects <= 2);
  assert_int_equal(st.dropped, 0);
  char sql[160];
  snprintf(sql, sizeof sql,
           "SELECT count(*) FROM pg_stat_activity WHERE application_name = '%s'"
           " AND pid <> pg_backend_pid()",
           app);
  assert_true(rf_test_pg_int(url, sql) <= 2);
  rf_store_close(s);
  /* closed: the server sessions are gone */
  for (int i = 0; i < 100 && rf_test_pg_int(url, sql) > 0; i++)
    rf_test_sleep_ms(10);
  assert_int_equal(rf_test_pg_int(url, sql), 0);
}

/* ------------------------------------------------------- serialization */

typedef struct {
  rf_store_t *s;
  int per_thread;
  atomic_int ok, broke, busy, other;
  atomic_int last_other;
} cas_t;

static void cas_worker(void *arg, int idx) {
  (void)idx;
  cas_t *c = arg;
  for (int i = 0; i < c->per_thread; i++) {
    for (;;) {
      int64_t b = 0, v = 0;
      int rc = rf_store_wallet_get(c->s, "w", &b, &v);
      if (rc == 0 && b < 3) {
        atomic_fetch_add(&c->broke, 1);
        break;
      }
      if (rc == 0)
        rc = rf_store_wallet_cas(c->s, "w", v, b - 3, NULL);
      if (rc == 0) {
        atomic_fetch_add(&c->ok, 1);
        break;
      }
      if (rc == RF_ECONFLICT)
        continue;
      if (rc == RF_EBUSY)
        atomic_fetch_add(&c->busy, 1); /* retries ran out: no effect */
      else
        atomic_fetch_add(&c->other, 1), atomic_store(&c->last_other, rc);
      break;
    }
  }
}

/* Under SERIALIZABLE, concurrent writers of one row get 40001; the store
 * retries them (bounded) and the caller sees only the contract's codes.
 * An operation that runs out of retries answers RF_EBUSY having changed
 * nothing, so the books still balance exactly. */
static void test_pg_serializable_retries(void **state) {
  (void)state;
  char url[512];
  rf_store_t *s =
      open_fresh(url, sizeof url, "pool=8", "-cdefault_transaction_isolation=serializable");
  cas_t c = {.s = s, .per_thread = (int)rf_test_iters(30)};
  int64_t initial = 3 * (8 * c.per_thread * 2 / 3) + 2;
  assert_int_equal(rf_store_wallet_put(s, "w", initial, NULL), 0);
  rf_test_run_parallel(8, cas_worker, &c);
  if (atomic_load(&c.other) != 0)
    fail_msg("unexpected %s", rf_err_name(atomic_load(&c.last_other)));
  int ok = atomic_load(&c.ok);
  int64_t b = 0, v = 0;
  assert_int_equal(rf_store_wallet_get(s, "w", &b, &v), 0);
  assert_int_equal(b, initial - 3 * (int64_t)ok);
  assert_int_equal(v, 1 + ok);
  assert_int_equal(ok + atomic_load(&c.broke) + atomic_load(&c.busy), 8 * c.per_thread);
  /* the purchase under the same isolation */
  load_t l = {.s = s, .per_thread = (int)rf_test_iters(30)};
  int64_t stock = 8 * l.per_thread / 2;
  assert_int_equal(rf_store_item_put(s, "hot", stock), 0);
  rf_test_run_parallel(8, buy_worker, &l);
  assert_int_equal(atomic_load(&l.other), 0);
  int64_t left = 0;
  assert_int_equal(rf_store_item_get(s, "hot", &left), 0);
  assert_int_equal(left, stock - atomic_load(&l.ok));
  rf__pg_stats_t st = stats(s);
  print_message("serializable: %d CAS ok, %d busy; %llu statement retries\n", ok,
                atomic_load(&c.busy) + atomic_load(&l.busy), (unsigned long long)st.retries);
  assert_true(st.retries > 0); /* 40001 happened and was absorbed */
  rf_store_close(s);
}

/* ----------------------------------------------------------- timeouts */

/* A row held by another session longer than timeout_ms: the server cancels
 * the statement (57014) and the caller gets RF_EBUSY, in about timeout_ms,
 * with nothing changed. */
static void test_pg_statement_timeout(void **state) {
  (void)state;
  char url[512];
  rf_store_t *s = open_fresh(url, sizeof url, "timeout_ms=300", NULL);
  assert_int_equal(rf_store_wallet_put(s, "w", 100, NULL), 0);
  assert_int_equal(rf_store_item_put(s, "i", 5), 0);
  PGconn *c = rf_test_pg_connect(url);
  PQclear(PQexec(c, "BEGIN"));
  PGresult *r = PQexec(c, "SELECT * FROM wallets, items FOR UPDATE");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  PQclear(r);
  uint64_t t0 = rf_test_now_ms();
  assert_int_equal(rf_store_wallet_cas(s, "w", 1, 50, NULL), RF_EBUSY);
  int64_t left = 0;
  assert_int_equal(rf_store_item_purchase(s, "i", 1, &left), RF_EBUSY);
  uint64_t took = rf_test_now_ms() - t0;
  assert_true(took >= 500 && took < 3000);
  /* reads do not wait for row locks */
  int64_t b = 0, v = 0;
  assert_int_equal(rf_store_wallet_get(s, "w", &b, &v), 0);
  assert_int_equal(b, 100);
  PQclear(PQexec(c, "COMMIT"));
  PQfinish(c);
  assert_int_equal(rf_store_wallet_cas(s, "w", 1, 50, &v), 0);
  assert_int_equal(v, 2);
  assert_int_equal(rf_store_item_purchase(s, "i", 1, &left), 0);
  assert_int_equal(left, 4);
  assert_int_equal(stats(s).dropped, 0); /* a server-side cancel keeps the session */
  rf_store_close(s);
}

/* ---------------------------------------------------------- migrations */

typedef struct {
  const char *url;
  atomic_int done;
  int rc;
} opener_t;

static void *opener(void *arg) {
  opener_t *o = arg;
  rf_store_t *s = NULL;
  o->rc = rf_store_open(o->url, &s);
  atomic_store(&o->done, 1);
  rf_store_close(s);
  return NULL;
}

/* Migrations run under the advisory lock: while another session holds it,
 * opening a new database waits; released, it completes. A database newer
 * than the program is refused. */
static void test_pg_migration_lock(void **state) {
  (void)state;
  char url[512];
  rf_test_pg_schema_url(url, sizeof url, NULL, NULL, NULL);
  PGconn *c = rf_test_pg_connect(url);
  PGresult *r = PQexec(c, "SELECT pg_advisory_lock(" RF__PG_MIGRATION_LOCK ")");
  assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
  PQclear(r);
  char slow[600]; /* a wait for the lock longer than timeout_ms is fine */
  snprintf(slow, sizeof slow, "%s&timeout_ms=200", url);
  opener_t o = {.url = slow};
  pthread_t t = rf_test_spawn(opener, &o);
  rf_test_sleep_ms(500);
  assert_int_equal(atomic_load(&o.done), 0); /* waiting for the lock */
  assert_int_equal(rf_test_pg_int(url, "SELECT count(*) FROM pg_tables"
                                       " WHERE tablename = 'users' AND schemaname ="
                                       " current_schema()"),
                   0);
  PQclear(PQexec(c, "SELECT pg_advisory_unlock(" RF__PG_MIGRATION_LOCK ")"));
  rf_test_join(t);
  assert_int_equal(o.rc, 0);
  assert_int_equal(rf_test_pg_int(url, "SELECT count(*) FROM schema_version"),
                   (int64_t)rf__pg_migrations_count);
  /* newer than us: refused, with the reason */
  PQclear(PQexec(c, "SET search_path TO DEFAULT"));
  PQfinish(c);
  rf_test_pg_exec(url, "INSERT INTO schema_version(version) VALUES (999)");
  rf_store_t *s = NULL;
  char err[256];
  assert_int_equal(rf_store_open_err(url, &s, err, sizeof err), RF_EUNAVAIL);
  assert_non_null(strstr(err, "newer"));
  assert_null(s);
  rf_test_pg_drop(url);
}

/* ----------------------------------------------------------------- fork */

/* Closing an inherited store in a child must not end the parent's
 * sessions (they share the sockets). */
static void test_pg_close_in_child(void **state) {
  (void)state;
  char url[512];
  rf_store_t *s = open_fresh(url, sizeof url, NULL, NULL);
  assert_int_equal(rf_store_item_put(s, "i", 1), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int ok = rf_store_ping(s) == RF_ESTATE;
    rf_store_close(s);
    _exit(ok ? 0 : 1);
  }
  int st = 0;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  uint64_t dropped = stats(s).dropped;
  int64_t v = 0;
  assert_int_equal(rf_store_item_get(s, "i", &v), 0);
  assert_int_equal(stats(s).dropped, dropped); /* the same session still works */
  rf_store_close(s);
}

/* --------------------------------------------------------------- outages */

/* The backend of the store's only connection stops answering (SIGSTOP).
 * A purchase sent to it gives up after timeout_ms + 1 s with RF_EUNAVAIL
 * (it may or may not have been applied: the store cannot know) instead of
 * hanging; a read in the same situation is sent again on a new connection
 * and succeeds. */
static void test_pg_frozen_backend(void **state) {
  (void)state;
  if (!rf_test_pg_private()) {
    print_message("skipped: the server is not this program's (RF_TEST_PG_URL)\n");
    return;
  }
  char url[512], app[64], extra[160];
  snprintf(app, sizeof app, "rft_frozen_%ld", (long)getpid());
  snprintf(extra, sizeof extra, "pool=1&timeout_ms=400&application_name=%s", app);
  rf_store_t *s = open_fresh(url, sizeof url, extra, NULL);
  int64_t v = 0;
  assert_int_equal(rf_store_item_put(s, "i", 10), 0);
  assert_int_equal(rf_store_item_purchase(s, "i", 1, &v), 0); /* prepared */
  assert_int_equal(rf_store_item_get(s, "i", &v), 0);
  char sql[200];
  snprintf(sql, sizeof sql,
           "SELECT pid FROM pg_stat_activity WHERE application_name = '%s'"
           " AND pid <> pg_backend_pid()",
           app);
  for (int round = 0; round < 2; round++) {
    assert_int_equal(rf_store_ping(s), 0); /* connected */
    pid_t backend = (pid_t)rf_test_pg_int(url, sql);
    assert_true(backend > 0);
    uint64_t dropped = stats(s).dropped;
    assert_int_equal(kill(backend, SIGSTOP), 0);
    uint64_t t0 = rf_test_now_ms();
    int rc = round == 0 ? rf_store_item_purchase(s, "i", 1, &v) : rf_store_item_get(s, "i", &v);
    uint64_t took = rf_test_now_ms() - t0;
    assert_int_equal(kill(backend, SIGCONT), 0);
    assert_int_equal(stats(s).dropped, dropped + 1);
    if (round == 0) {
      assert_int_equal(rc, RF_EUNAVAIL);
      assert_true(took >= 1400 && took < 3000); /* 400 ms + 1 s grace */
    } else {
      assert_int_equal(rc, 0);
      assert_true(took >= 1400 && took < 4000);
    }
  }
  /* The frozen session, resumed, may still have run the purchase it had
   * received before it noticed its client was gone: an RF_EUNAVAIL write
   * has an unknown outcome (it is applied whole or not at all). */
  assert_int_equal(rf_store_item_get(s, "i", &v), 0);
  assert_true(v == 9 || v == 8);
  rf_store_close(s);
}

typedef struct {
  rf_store_t *s;
  atomic_int stop;
  atomic_int ok, unavail, other, last_other;
  atomic_int bought;
  atomic_uint_fast64_t max_fail_ms;
} outage_t;

static void outage_worker(void *arg, int idx) {
  outage_t *o = arg;
  while (!atomic_load(&o->stop)) {
    uint64_t t0 = rf_test_now_ms();
    int64_t v = 0;
    int rc =
        idx % 2 ? rf_store_item_purchase(o->s, "big", 1, &v) : rf_store_item_get(o->s, "big", &v);
    uint64_t took = rf_test_now_ms() - t0;
    if (rc == 0) {
      atomic_fetch_add(&o->ok, 1);
      if (idx % 2)
        atomic_fetch_add(&o->bought, 1);
      continue;
    }
    uint64_t m = atomic_load(&o->max_fail_ms);
    while (took > m && !atomic_compare_exchange_weak(&o->max_fail_ms, &m, took)) {
    }
    if (rc == RF_EUNAVAIL)
      atomic_fetch_add(&o->unavail, 1);
    else
      atomic_fetch_add(&o->other, 1), atomic_store(&o->last_other, rc);
    rf_test_sleep_ms(5);
  }
}

static void *outage_driver(void *arg) {
  outage_t *o = arg;
  rf_test_sleep_ms(300); /* traffic first */
  assert_int_equal(rf_test_pg_stop(), 0);
  rf_test_sleep_ms(700); /* the outage */
  assert_int_equal(rf_test_pg_start(), 0);
  /* until the store serves again, without being reopened */
  uint64_t t0 = rf_test_now_ms();
  int64_t v = 0;
  while (rf_store_item_get(o->s, "big", &v) != 0) {
    assert_true(rf_test_now_ms() - t0 < 10000);
    rf_test_sleep_ms(20);
  }
  int ok = atomic_load(&o->ok);
  while (atomic_load(&o->ok) < ok + 20) /* and every worker's traffic flows */
    rf_test_sleep_ms(5);
  atomic_store(&o->stop, 1);
  return NULL;
}

static void outage_runner(void *arg, int idx) {
  outage_t *o = arg;
  if (idx == 4) {
    outage_driver(o);
    return;
  }
  outage_worker(o, idx);
}

/* PostgreSQL stopped under load (pg.sh stop: fast shutdown) and started
 * again: while it is down every call fails fast with RF_EUNAVAIL; after it
 * is back the same store serves again; no acknowledged purchase is lost
 * and none is applied twice. */
static void test_pg_outage_and_restart(void **state) {
  (void)state;
  if (!rf_test_pg_private()) {
    print_message("skipped: the server is not this program's (RF_TEST_PG_URL)\n");
    return;
  }
  char url[512];
  rf_store_t *s = open_fresh(url, sizeof url, "pool=4&timeout_ms=1000", NULL);
  int64_t initial = 1000000;
  assert_int_equal(rf_store_item_put(s, "big", initial), 0);
  outage_t o = {.s = s};
  rf_test_run_parallel(5, outage_runner, &o);
  int64_t left = 0;
  assert_int_equal(rf_store_item_get(s, "big", &left), 0);
  rf__pg_stats_t st = stats(s);
  print_message("outage: %d ok, %d unavailable (slowest failure %llu ms), %llu connects, %llu"
                " dropped\n",
                atomic_load(&o.ok), atomic_load(&o.unavail),
                (unsigned long long)atomic_load(&o.max_fail_ms), (unsigned long long)st.connects,
                (unsigned long long)st.dropped);
  if (atomic_load(&o.other) != 0)
    fail_msg("unexpected %s during the outage", rf_err_name(atomic_load(&o.last_other)));
  assert_true(atomic_load(&o.unavail) > 0);
  assert_true(atomic_load(&o.max_fail_ms) < 2500); /* nobody hung */
  assert_true(st.dropped >= 1);
  /* Acknowledged purchases all applied; a purchase whose connection died
   * after sending may or may not have committed (the client cannot know),
   * at most one per such failure. */
  int64_t taken = initial - left;
  assert_true(taken >= atomic_load(&o.bought));
  assert_true(taken <= atomic_load(&o.bought) + atomic_load(&o.unavail));
  rf_store_close(s);
}

int main(void) {
  size_t n = 0;
  const struct CMUnitTest *suite = store_suite_tests(&pg_backend, &n);
  rf_test_pg_url(); /* start the server before any test is timed */
  int failed = _cmocka_run_group_tests("store_suite/postgres", suite, n, NULL, NULL);
  free((void *)suite);
  const struct CMUnitTest pg_tests[] = {
      cmocka_unit_test(test_pg_open_errors),          cmocka_unit_test(test_pg_sqlstate_mapping),
      cmocka_unit_test(test_pg_constraints_live),     cmocka_unit_test(test_pg_pool_knob),
      cmocka_unit_test(test_pg_serializable_retries), cmocka_unit_test(test_pg_statement_timeout),
      cmocka_unit_test(test_pg_migration_lock),       cmocka_unit_test(test_pg_close_in_child),
      cmocka_unit_test(test_pg_frozen_backend),       cmocka_unit_test(test_pg_outage_and_restart),
  };
  failed += cmocka_run_group_tests_name("store/postgres", pg_tests, NULL, NULL);
  return failed;
}
