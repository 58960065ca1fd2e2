/* sqlite.c - the SQLite backend of the store (see store.h).
 *
 * Connections: an SQLite connection must not be used by two threads at
 * once, and the store is called from many. The store keeps a pool of
 * connections: a call takes an idle one (or opens a new one while fewer
 * than POOL_MAX are open, or waits for one to be returned), runs its
 * statements and gives it back. Each connection caches its prepared
 * statements (one per entry of SQL[] below, prepared on first use), so a
 * call costs a mutex round trip plus the SQL itself. A pool rather than a
 * connection per thread (pthread key) because a pool needs no thread-exit
 * destructor that could race with rf_store_close, and because the number of
 * connections then follows concurrency, not the number of threads.
 *
 * Transactions: every write runs inside BEGIN IMMEDIATE ... COMMIT. IMMEDIATE
 * takes the write lock at BEGIN, so a transaction never starts as a reader
 * and upgrades later (in WAL mode an upgrade over a stale snapshot fails
 * with SQLITE_BUSY_SNAPSHOT at once, without the busy handler). Waiting for
 * the lock is bounded by busy_timeout; beyond it the call returns RF_EBUSY
 * having changed nothing. Reads are single statements in autocommit, each a
 * consistent snapshot.
 *
 * Fork: connections must not cross fork(). The store remembers the pid that
 * opened it and refuses (RF_ESTATE) to run in another process: a worker
 * process opens its own store after fork.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "racefree/hook.h"
#include "sqlite_errmap.h" /* src/lib: the one SQLite error mapping */

#include "backend.h"
#include "store.h"

#define POOL_MAX        32
#define BUSY_TIMEOUT_MS 5000

/* Every statement the backend runs, prepared once per connection. */
enum {
  ST_BEGIN,
  ST_COMMIT,
  ST_ROLLBACK,
  ST_OP_BEGIN,
  ST_OP_RELEASE,
  ST_OP_ROLLBACK,
  ST_JOB_BEGIN,
  ST_JOB_RELEASE,
  ST_JOB_ROLLBACK,
  ST_PING,
  ST_USER_INSERT,
  ST_USER_GET,
  ST_UU_FIND,
  ST_UU_INSERT,
  ST_UU_GET,
  ST_ITEM_PUT,
  ST_ITEM_GET,
  ST_ITEM_TAKE,
  ST_ITEM_SET,
  ST_WALLET_PUT,
  ST_WALLET_GET,
  ST_WALLET_CAS,
  ST_WALLET_SET,
  ST_PAY_INSERT,
  ST_PAY_GET,
  ST_PAY_TAKEOVER,
  ST_PAY_FINISH,
  ST_PAY_PUT,
  ST_FENCE_GET,
  ST_FENCE_RAISE,
  ST_CHARGE_INSERT,
  ST_CHARGE_FIRST,
  ST_CHARGE_STATS,
  ST_SEND_FIND,
  ST_SEND_INSERT,
  ST_SEND_COUNT,
  ST__COUNT
};

static const char *const SQL[ST__COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_OP_BEGIN] = "SAVEPOINT rf_op",
    [ST_OP_RELEASE] = "RELEASE rf_op",
    [ST_OP_ROLLBACK] = "ROLLBACK TO rf_op",
    [ST_JOB_BEGIN] = "SAVEPOINT rf_job",
    [ST_JOB_RELEASE] = "RELEASE rf_job",
    [ST_JOB_ROLLBACK] = "ROLLBACK TO rf_job",
    [ST_PING] = "SELECT 1",
    [ST_USER_INSERT] = "INSERT INTO users(email) VALUES (?1) RETURNING id",
    [ST_USER_GET] = "SELECT email FROM users WHERE id = ?1",
    [ST_UU_FIND] = "SELECT 1 FROM users_unchecked WHERE email = ?1 LIMIT 1",
    [ST_UU_INSERT] = "INSERT INTO users_unchecked(email) VALUES (?1) RETURNING id",
    [ST_UU_GET] = "SELECT email FROM users_unchecked WHERE id = ?1",
    [ST_ITEM_PUT] = "INSERT INTO items(id, stock) VALUES (?1, ?2)"
                    " ON CONFLICT(id) DO UPDATE SET stock = excluded.stock",
    [ST_ITEM_GET] = "SELECT stock FROM items WHERE id = ?1",
    [ST_ITEM_TAKE] = "UPDATE items SET stock = stock - ?2 WHERE id = ?1 AND stock >= ?2"
                     " RETURNING stock",
    [ST_ITEM_SET] = "UPDATE items SET stock = ?2 WHERE id = ?1 RETURNING stock",
    [ST_WALLET_PUT] = "INSERT INTO wallets(user_id, balance, version) VALUES (?1, ?2, 1)"
                      " ON CONFLICT(user_id) DO UPDATE SET balance = excluded.balance,"
                      " version = wallets.version + 1 RETURNING version",
    [ST_WALLET_GET] = "SELECT balance, version FROM wallets WHERE user_id = ?1",
    [ST_WALLET_CAS] = "UPDATE wallets SET balance = ?2, version = version + 1"
                      " WHERE user_id = ?1 AND version = ?3 RETURNING version",
    [ST_WALLET_SET] = "UPDATE wallets SET balance = ?2, version = version + 1"
                      " WHERE user_id = ?1 RETURNING version",
    [ST_PAY_INSERT] = "INSERT INTO payments(payment_id, amount, fingerprint, state, token,"
                      " lease_owner, lease_until_ms, created_ms, updated_ms)"
                      " VALUES (?1, ?2, ?3, 0, 1, ?4, ?5, ?6, ?6)"
                      " ON CONFLICT(payment_id) DO NOTHING RETURNING token",
    [ST_PAY_GET] = "SELECT amount, fingerprint, state, token, lease_until_ms, http_status,"
                   " charge_id, body FROM payments WHERE payment_id = ?1",
    [ST_PAY_TAKEOVER] = "UPDATE payments SET token = token + 1, lease_owner = ?2,"
                        " lease_until_ms = ?3, updated_ms = ?4"
                        " WHERE payment_id = ?1 AND token = ?5 AND state = 0"
                        " AND lease_until_ms <= ?4 RETURNING token",
    [ST_PAY_FINISH] = "UPDATE payments SET state = ?3, http_status = ?4, charge_id = ?5,"
                      " body = ?6, lease_owner = NULL, lease_until_ms = 0, updated_ms = ?7"
                      " WHERE payment_id = ?1 AND token = ?2 AND state = 0",
    [ST_PAY_PUT] = "INSERT INTO payments(payment_id, amount, fingerprint, state, token,"
                   " http_status, charge_id, body, created_ms, updated_ms)"
                   " VALUES (?1, ?2, 'unchecked', ?3, 0, ?4, ?5, ?6, ?7, ?7)"
                   " ON CONFLICT(payment_id) DO UPDATE SET amount = excluded.amount,"
                   " state = excluded.state, http_status = excluded.http_status,"
                   " charge_id = excluded.charge_id, body = excluded.body,"
                   " updated_ms = excluded.updated_ms",
    [ST_FENCE_GET] = "SELECT token FROM charge_fences WHERE payment_id = ?1",
    [ST_FENCE_RAISE] = "INSERT INTO charge_fences(payment_id, token) VALUES (?1, ?2)"
                       " ON CONFLICT(payment_id) DO UPDATE"
                       " SET token = max(token, excluded.token)",
    [ST_CHARGE_INSERT] = "INSERT INTO charges(payment_id, amount, declined, token, created_ms)"
                         " VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
    [ST_CHARGE_FIRST] = "SELECT seq, amount, declined, token FROM charges"
                        " WHERE payment_id = ?1 ORDER BY seq LIMIT 1",
    [ST_CHARGE_STATS] = "SELECT count(*),"
                        " coalesce(sum(CASE WHEN declined = 0 THEN amount ELSE 0 END), 0)"
                        " FROM charges WHERE payment_id = ?1",
    [ST_SEND_FIND] = "SELECT 1 FROM sends WHERE job_id = ?1 LIMIT 1",
    [ST_SEND_INSERT] = "INSERT INTO sends(job_id, attempt, to_addr, sent_ms)"
                       " VALUES (?1, ?2, ?3, ?4)",
    [ST_SEND_COUNT] = "SELECT count(*) FROM sends WHERE to_addr = ?1",
};

typedef struct conn {
  sqlite3 *db;
  sqlite3_stmt *st[ST__COUNT];
  struct conn *next;
} conn_t;

typedef struct sqlite_store {
  rf_store_t base;
  char *path;
  pid_t pid;            /* the process that opened the store */
  pthread_mutex_t mu;   /* guards idle, nopen */
  pthread_cond_t freed; /* a connection was returned or a slot freed */
  conn_t *idle;         /* stack of connections not in use */
  int nopen;            /* connections open (idle + in use) */
  conn_t *writer;       /* the writer thread's own connection */
  /* The checkpointer: copies the WAL back into the database file on its
   * own connection and thread, so that the writer's COMMIT never does it
   * (an automatic checkpoint runs inside the COMMIT that crosses the WAL
   * threshold, and fsyncs: milliseconds every answer of that batch waits). */
  pthread_t ckpt_thread;
  bool ckpt_started, ckpt_stop, ckpt_due;
  pthread_cond_t ckpt_cond; /* under mu */
} sqlite_store_t;

#define CKPT_PAGES 1000 /* SQLite's own wal_autocheckpoint default */

/* While the writer runs a job, the job's store calls use the writer's
 * connection and transaction: conn_get hands it out, tx_begin/tx_end turn
 * into a savepoint per operation, conn_put leaves it alone. */
static _Thread_local conn_t *tl_batch;
static _Thread_local const sqlite_store_t *tl_batch_store;
/* Operations begun by the running job, and whether its first one is open.
 * The first operation of a job needs no savepoint of its own: the job's
 * savepoint marks the same state, so a failed first operation rolls back
 * to the job's savepoint (which stays open) - two statements saved on the
 * common job of one operation. */
static _Thread_local unsigned tl_job_ops;
static _Thread_local bool tl_first_open;

/* ---------------------------------------------------------- error mapping */

static int map_rc(int rc) {
  return rf__sqlite_errmap(rc);
}

static int valid_id(const char *id) {
  if (!id)
    return 0;
  size_t n = strnlen(id, RF_STORE_ID_MAX + 1);
  return n >= 1 && n <= RF_STORE_ID_MAX;
}

static int valid_email(const char *e) {
  if (!e)
    return 0;
  size_t n = strnlen(e, RF_STORE_EMAIL_MAX + 1);
  return n >= 1 && n <= RF_STORE_EMAIL_MAX;
}

/* ------------------------------------------------------------ connections */

static void conn_close(conn_t *c) {
  if (!c)
    return;
  for (int i = 0; i < ST__COUNT; i++)
    sqlite3_finalize(c->st[i]);
  sqlite3_close_v2(c->db);
  free(c);
}

/* Open one connection with the per-connection settings. journal_mode=WAL
 * is a property of the file; setting it on every connection is a cheap
 * no-op once the file is in WAL mode. temp_store=MEMORY: inside an explicit
 * transaction a statement that may fail half-way (our UPDATEs have CHECK
 * constraints) writes a statement journal, by default a temporary file;
 * in memory the purchase transaction runs about 4x faster (measured with
 * bench/bench_sqlite_purchase). */
static int conn_open(const char *path, conn_t **out, char *err, size_t errlen) {
  conn_t *c = calloc(1, sizeof *c);
  if (!c)
    return RF_ENOMEM;
  int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
  int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
  if (rc == SQLITE_OK)
    rc = sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
  /* Switching a new file to WAL takes an exclusive lock, and SQLite
   * answers SQLITE_BUSY at once, without the busy handler, when another
   * process holds a lock at that moment (several worker processes opening
   * one new database together): retry with a short backoff up to the busy
   * timeout. The pragmas are idempotent. */
  for (unsigned waited_ms = 0, nap_ms = 1; rc == SQLITE_OK;) {
    rc = sqlite3_exec(c->db,
                      "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                      " PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
                      NULL, NULL, NULL);
    if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= BUSY_TIMEOUT_MS)
      break;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)nap_ms * 1000000L};
    nanosleep(&ts, NULL);
    waited_ms += nap_ms;
    nap_ms = nap_ms < 16 ? nap_ms * 2 : 16;
    rc = SQLITE_OK;
  }
  if (rc != SQLITE_OK) {
    if (err && errlen > 0)
      snprintf(err, errlen, "store: cannot open sqlite database %s: %s", path,
               c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc));
    int e = map_rc(rc);
    conn_close(c);
    return e == RF_EBUSY || e == RF_ENOMEM ? e : RF_EUNAVAIL;
  }
  *out = c;
  return 0;
}

/* Take a connection for the calling thread: an idle one, a new one, or
 * wait until another thread returns one. */
static int conn_get(sqlite_store_t *s, conn_t **out) {
  if (tl_batch != NULL && tl_batch_store == s) { /* the writer, inside a job */
    *out = tl_batch;
    return 0;
  }
  if (rf__store_pid() != s->pid)
    return RF_ESTATE;
  pthread_mutex_lock(&s->mu);
  while (!s->idle && s->nopen >= POOL_MAX)
    pthread_cond_wait(&s->freed, &s->mu);
  conn_t *c = s->idle;
  if (c) {
    s->idle = c->next;
    pthread_mutex_unlock(&s->mu);
    *out = c;
    return 0;
  }
  s->nopen++; /* reserve the slot, open outside the lock */
  pthread_mutex_unlock(&s->mu);
  int rc = conn_open(s->path, &c, NULL, 0);
  if (rc != 0) {
    pthread_mutex_lock(&s->mu);
    s->nopen--;
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  *out = c;
  return 0;
}

/* Give a connection back. A connection left inside a transaction by an
 * error path is rolled back first so the next user starts clean. */
static void conn_put(sqlite_store_t *s, conn_t *c) {
  if (c == tl_batch)
    return; /* the writer's: its transaction goes on */
  if (!sqlite3_get_autocommit(c->db))
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
  pthread_mutex_lock(&s->mu);
  c->next = s->idle;
  s->idle = c;
  pthread_cond_signal(&s->freed);
  pthread_mutex_unlock(&s->mu);
}

/* The cached statement `which`, reset and unbound, ready for binding. */
static int stmt(conn_t *c, int which, sqlite3_stmt **out) {
  if (!c->st[which]) {
    int rc =
        sqlite3_prepare_v3(c->db, SQL[which], -1, SQLITE_PREPARE_PERSISTENT, &c->st[which], NULL);
    if (rc != SQLITE_OK)
      return map_rc(rc);
  }
  *out = c->st[which];
  return 0;
}

/* Finish with a statement: reset it (keeps it cached) and drop bindings. */
static void stmt_done(sqlite3_stmt *st) {
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
}

/* Run a statement without parameters and without result rows. */
static int exec_simple(conn_t *c, int which) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, which, &st);
  if (rc != 0)
    return rc;
  int src = sqlite3_step(st);
  stmt_done(st);
  return src == SQLITE_DONE || src == SQLITE_ROW ? 0 : map_rc(src);
}

/* A write transaction. On the writer, inside a batch, a savepoint: the
 * operation stays atomic (its failure undoes only its own statements) and
 * commits with the batch. Elsewhere BEGIN IMMEDIATE, which may wait for the
 * write lock: counted when this thread is an event loop. */
static int tx_begin(conn_t *c) {
  if (c == tl_batch && tl_job_ops++ == 0) {
    tl_first_open = true;
    return 0; /* the job's savepoint stands for this operation's */
  }
  if (c == tl_batch)
    return exec_simple(c, ST_OP_BEGIN);
  rf__store_loop_note();
  return exec_simple(c, ST_BEGIN);
}

/* Commit when rc == 0, else roll back; returns the final status. */
static int tx_end(conn_t *c, int rc) {
  if (c == tl_batch && tl_first_open) {
    tl_first_open = false;
    if (rc != 0 && !sqlite3_get_autocommit(c->db))
      exec_simple(c, ST_JOB_ROLLBACK); /* undo this operation; the savepoint stays */
    return rc;
  }
  if (c == tl_batch) {
    if (rc == 0 && (rc = exec_simple(c, ST_OP_RELEASE)) == 0)
      return 0;
    if (!sqlite3_get_autocommit(c->db)) {
      exec_simple(c, ST_OP_ROLLBACK);
      exec_simple(c, ST_OP_RELEASE);
    }
    return rc;
  }
  if (rc == 0) {
    rc = exec_simple(c, ST_COMMIT);
    if (rc == 0)
      return 0;
  }
  if (!sqlite3_get_autocommit(c->db))
    exec_simple(c, ST_ROLLBACK);
  return rc;
}

/* Step a statement whose result is at most one row with one integer
 * column. *found = 1 and *val set if there was a row. Always steps to the
 * end, so that the statement's writes (RETURNING) are complete. */
static int step_int(sqlite3_stmt *st, int *found, int64_t *val) {
  int rc = sqlite3_step(st);
  *found = 0;
  if (rc == SQLITE_ROW) {
    *found = 1;
    if (val)
      *val = sqlite3_column_int64(st, 0);
    rc = sqlite3_step(st);
  }
  int e = rc == SQLITE_DONE ? 0 : map_rc(rc);
  stmt_done(st);
  return e;
}

/* ------------------------------------------------------------- migrations */

static int migrate(conn_t *c, char *err, size_t errlen) {
  const char *what = "begin";
  int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
  if (rc == SQLITE_OK) {
    what = "schema_version";
    rc = sqlite3_exec(c->db, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
                      NULL, NULL, NULL);
  }
  int64_t have = 0;
  if (rc == SQLITE_OK) {
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(c->db, "SELECT coalesce(max(version), 0) FROM schema_version", -1, &st,
                            NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
      have = sqlite3_column_int64(st, 0);
      rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
  }
  if (rc == SQLITE_OK && have > (int64_t)rf__sqlite_migrations_count) {
    if (err && errlen > 0)
      snprintf(err, errlen, "store: database schema version %lld is newer than this program (%zu)",
               (long long)have, rf__sqlite_migrations_count);
    sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return RF_EUNAVAIL;
  }
  for (size_t v = (size_t)have; rc == SQLITE_OK && v < rf__sqlite_migrations_count; v++) {
    what = "migration";
    rc = sqlite3_exec(c->db, rf__sqlite_migrations[v], NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
      char sql[96];
      snprintf(sql, sizeof sql, "INSERT INTO schema_version(version) VALUES (%zu)", v + 1);
      rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    }
  }
  if (rc == SQLITE_OK) {
    what = "commit";
    rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
  }
  if (rc != SQLITE_OK) {
    if (err && errlen > 0)
      snprintf(err, errlen, "store: sqlite schema %s failed: %s", what, sqlite3_errmsg(c->db));
    if (!sqlite3_get_autocommit(c->db))
      sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    int e = map_rc(rc);
    return e == RF_EBUSY || e == RF_ENOMEM ? e : RF_EUNAVAIL;
  }
  return 0;
}

/* ----------------------------------------------------------------- store */

static const rf_store_ops_t sqlite_ops;

static void ckpt_stop(sqlite_store_t *s) {
  if (!s->ckpt_started)
    return;
  s->ckpt_started = false;
  if (rf__store_pid() != s->pid)
    return; /* a forked child: the thread is the parent's */
  pthread_mutex_lock(&s->mu);
  s->ckpt_stop = true;
  pthread_cond_signal(&s->ckpt_cond);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->ckpt_thread, NULL);
}

static void s_close(rf_store_t *base) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  rf__exec_stop(s->base.exec); /* runs what is queued, then joins the writer */
  ckpt_stop(s);
  conn_close(s->writer);
  conn_t *c = s->idle;
  while (c) {
    conn_t *next = c->next;
    conn_close(c);
    c = next;
  }
  if (rf__store_pid() == s->pid) {
    pthread_cond_destroy(&s->ckpt_cond);
    pthread_cond_destroy(&s->freed);
    pthread_mutex_destroy(&s->mu);
  }
  free(s->path);
  free(s);
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Run one job inside the batch transaction, in its own savepoint: rolled
 * back alone when its work fails. */
static int writer_job(sqlite_store_t *s, rf_store_job_t *job) {
  conn_t *c = s->writer;
  int rc = exec_simple(c, ST_JOB_BEGIN);
  if (rc != 0)
    return rc;
  tl_batch = c;
  tl_batch_store = s;
  tl_job_ops = 0;
  tl_first_open = false;
  rc = job->work(&s->base, job->arg);
  tl_batch = NULL;
  tl_batch_store = NULL;
  if (sqlite3_get_autocommit(c->db))
    return rc != 0 ? rc : RF_EIO; /* SQLite rolled the transaction back */
  if (rc == 0 && (rc = exec_simple(c, ST_JOB_RELEASE)) == 0)
    return 0;
  exec_simple(c, ST_JOB_ROLLBACK);
  exec_simple(c, ST_JOB_RELEASE);
  return rc;
}

/* The writer's group commit (store.h, "the executor"): BEGIN IMMEDIATE -
 * the only place this process waits for SQLite's write lock - then each
 * job in its savepoint, then one COMMIT for all. A job is answered (its
 * done runs) only after that COMMIT has returned. Bounded by
 * RF_STORE_BATCH_MS: later jobs wait for the next transaction. */
static size_t writer_batch(rf_store_t *base, rf_store_job_t **jobs, size_t n, void *ctx) {
  (void)ctx;
  sqlite_store_t *s = (sqlite_store_t *)base;
  conn_t *c = s->writer;
  int rc = exec_simple(c, ST_BEGIN);
  if (rc != 0) {
    for (size_t i = 0; i < n; i++)
      jobs[i]->rc = rc;
    return n;
  }
  uint64_t t0 = mono_ms(), batch_ms = rf__exec_batch_ms(s->base.exec);
  size_t ran = 0;
  int lost = 0;
  while (ran < n && !lost) {
    if (ran > 0 && mono_ms() - t0 >= batch_ms)
      break;
    jobs[ran]->rc = writer_job(s, jobs[ran]);
    lost = sqlite3_get_autocommit(c->db) ? jobs[ran]->rc : 0;
    ran++;
  }
  RF_HOOK("store.batch.commit"); /* tests: park here, or fail the COMMIT */
  rc = lost ? lost : RF_HOOK_FAIL("store.batch.commit") ? RF_EIO : exec_simple(c, ST_COMMIT);
  if (rc != 0) {
    if (!sqlite3_get_autocommit(c->db))
      exec_simple(c, ST_ROLLBACK);
    for (size_t i = 0; i < ran; i++)
      if (jobs[i]->rc == 0)
        jobs[i]->rc = rc; /* nothing of this batch is in the database */
  }
  return ran;
}

/* After each COMMIT on the writer's connection (SQLite's WAL hook): ask
 * the checkpointer to run once the WAL holds CKPT_PAGES pages. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int pages) {
  (void)db;
  (void)name;
  sqlite_store_t *s = arg;
  if (pages >= CKPT_PAGES) {
    pthread_mutex_lock(&s->mu);
    if (!s->ckpt_due) {
      s->ckpt_due = true;
      pthread_cond_signal(&s->ckpt_cond);
    }
    pthread_mutex_unlock(&s->mu);
  }
  return SQLITE_OK;
}

/* PASSIVE checkpoints: never wait for readers or the writer, copy what can
 * be copied; the next one continues. Errors are left for the next round
 * (the WAL only grows meanwhile, nothing is lost). */
static void *ckpt_main(void *arg) {
  sqlite_store_t *s = arg;
  conn_t *c = NULL;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (!s->ckpt_due && !s->ckpt_stop)
      pthread_cond_wait(&s->ckpt_cond, &s->mu);
    if (s->ckpt_stop)
      break;
    s->ckpt_due = false;
    pthread_mutex_unlock(&s->mu);
    if (c == NULL && conn_open(s->path, &c, NULL, 0) != 0)
      c = NULL;
    if (c != NULL)
      sqlite3_wal_checkpoint_v2(c->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    pthread_mutex_lock(&s->mu);
  }
  pthread_mutex_unlock(&s->mu);
  conn_close(c);
  return NULL;
}

static int ckpt_start(sqlite_store_t *s) {
  int rc = sqlite3_exec(s->writer->db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    return map_rc(rc);
  if (pthread_create(&s->ckpt_thread, NULL, ckpt_main, s) != 0) {
    sqlite3_wal_autocheckpoint(s->writer->db, CKPT_PAGES); /* back to SQLite's own */
    return 0;
  }
  pthread_setname_np(s->ckpt_thread, "rf-sqlite-ckpt");
  s->ckpt_started = true;
  sqlite3_wal_hook(s->writer->db, wal_hook, s);
  return 0;
}

int rf__store_sqlite_open(const char *path, rf_store_t **out, char *err, size_t errlen) {
  sqlite_store_t *s = calloc(1, sizeof *s);
  if (!s)
    return RF_ENOMEM;
  s->base.ops = &sqlite_ops;
  s->pid = rf__store_pid();
  s->path = strdup(path);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->freed, NULL);
  pthread_cond_init(&s->ckpt_cond, NULL);
  if (!s->path) {
    s_close(&s->base);
    return RF_ENOMEM;
  }
  conn_t *c = NULL;
  int rc = conn_open(path, &c, err, errlen);
  if (rc == 0)
    rc = migrate(c, err, errlen);
  if (rc != 0) {
    conn_close(c);
    s_close(&s->base);
    return rc;
  }
  s->idle = c; /* the first connection joins the pool */
  s->nopen = 1;
  rc = conn_open(path, &s->writer, err, errlen);
  if (rc == 0)
    rc = ckpt_start(s);
  if (rc == 0)
    rc = rf__exec_start(&s->base.exec, &s->base, 1, writer_batch, NULL, "rf-sqlite-wr");
  if (rc != 0) {
    s_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}

static int s_ping(rf_store_t *base) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  int found = 0;
  rc = stmt(c, ST_PING, &st);
  if (rc == 0)
    rc = step_int(st, &found, NULL);
  conn_put(s, c);
  return rc == 0 ? 0 : rc == RF_EBUSY ? RF_EBUSY : RF_EUNAVAIL;
}

/* ----------------------------------------------------------------- users */

/* INSERT ... RETURNING id inside BEGIN IMMEDIATE; a unique violation is
 * RF_EEXIST. */
static int insert_email(sqlite_store_t *s, int which, const char *email, int64_t *id) {
  if (!valid_email(email) || !id)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int64_t newid = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    rc = stmt(c, which, &st);
    if (rc == 0) {
      sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
      rc = step_int(st, &found, &newid);
    }
    if (rc == 0 && !found)
      rc = RF_EINTERNAL;
    rc = tx_end(c, rc);
  }
  conn_put(s, c);
  if (rc == 0)
    *id = newid;
  return rc;
}

static int get_email(sqlite_store_t *s, int which, int64_t id, char *email, size_t cap) {
  if (!email || cap == 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  rc = stmt(c, which, &st);
  if (rc == 0) {
    sqlite3_bind_int64(st, 1, id);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
      const unsigned char *txt = sqlite3_column_text(st, 0);
      size_t n = (size_t)sqlite3_column_bytes(st, 0);
      if (!txt)
        rc = RF_ENOMEM;
      else if (n + 1 > cap)
        rc = RF_ERANGE;
      else
        memcpy(email, txt, n + 1);
    } else {
      rc = src == SQLITE_DONE ? RF_ENOENT : map_rc(src);
    }
    stmt_done(st);
  }
  conn_put(s, c);
  return rc;
}

static int s_user_create(rf_store_t *base, const char *email, int64_t *id) {
  return insert_email((sqlite_store_t *)base, ST_USER_INSERT, email, id);
}

static int s_user_get(rf_store_t *base, int64_t id, char *email, size_t cap) {
  return get_email((sqlite_store_t *)base, ST_USER_GET, id, email, cap);
}

static int s_user_find_unchecked(rf_store_t *base, const char *email, int *found) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_email(email) || !found)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  int f = 0;
  rc = stmt(c, ST_UU_FIND, &st);
  if (rc == 0) {
    sqlite3_bind_text(st, 1, email, -1, SQLITE_STATIC);
    rc = step_int(st, &f, NULL);
  }
  conn_put(s, c);
  if (rc == 0)
    *found = f;
  return rc;
}

static int s_user_insert_unchecked(rf_store_t *base, const char *email, int64_t *id) {
  return insert_email((sqlite_store_t *)base, ST_UU_INSERT, email, id);
}

static int s_user_get_unchecked(rf_store_t *base, int64_t id, char *email, size_t cap) {
  return get_email((sqlite_store_t *)base, ST_UU_GET, id, email, cap);
}

/* --------------------------------------------------------- row helpers */

/* Run statement `which` with (text ?1, int ?2, optional int ?3) and read
 * an optional single integer result row. Inside its own IMMEDIATE
 * transaction when `write`. The caller holds connection c. */
static int run_kv(conn_t *c, int which, const char *key, int64_t a, int has_b, int64_t b,
                  int *found, int64_t *val) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, which, &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
  if (sqlite3_bind_parameter_count(st) >= 2)
    sqlite3_bind_int64(st, 2, a);
  if (has_b)
    sqlite3_bind_int64(st, 3, b);
  return step_int(st, found, val);
}

/* ------------------------------------------------------------- inventory */

static int s_item_put(rf_store_t *base, const char *item, int64_t stock) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(item) || stock < 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found;
  rc = tx_begin(c);
  if (rc == 0)
    rc = tx_end(c, run_kv(c, ST_ITEM_PUT, item, stock, 0, 0, &found, NULL));
  conn_put(s, c);
  return rc;
}

static int s_item_get(rf_store_t *base, const char *item, int64_t *stock) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(item) || !stock)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t v = 0;
  rc = run_kv(c, ST_ITEM_GET, item, 0, 0, 0, &found, &v);
  conn_put(s, c);
  if (rc == 0 && !found)
    rc = RF_ENOENT;
  if (rc == 0)
    *stock = v;
  return rc;
}

/* The conditional UPDATE decides; when it matches no row, a SELECT in the
 * same transaction (so nothing can slip in between) tells a missing item
 * from an out-of-stock one. */
static int s_item_purchase(rf_store_t *base, const char *item, int64_t qty, int64_t *remaining) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(item) || qty < 1 || !remaining)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t left = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = run_kv(c, ST_ITEM_TAKE, item, qty, 0, 0, &found, &left);
    if (r == 0 && !found) {
      int64_t ignored;
      r = run_kv(c, ST_ITEM_GET, item, 0, 0, 0, &found, &ignored);
      if (r == 0)
        r = found ? RF_ECONFLICT : RF_ENOENT;
    }
    /* Nothing was written on the failure paths: commit or roll back is
     * the same; roll back to keep it obvious. */
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0)
    *remaining = left;
  return rc;
}

static int s_item_set_stock(rf_store_t *base, const char *item, int64_t stock) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(item) || stock < 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = run_kv(c, ST_ITEM_SET, item, stock, 0, 0, &found, NULL);
    if (r == 0 && !found)
      r = RF_ENOENT;
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  return rc;
}

/* --------------------------------------------------------------- wallets */

static int s_wallet_put(rf_store_t *base, const char *user, int64_t balance, int64_t *version) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t v = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = run_kv(c, ST_WALLET_PUT, user, balance, 0, 0, &found, &v);
    if (r == 0 && !found)
      r = RF_EINTERNAL;
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0 && version)
    *version = v;
  return rc;
}

static int s_wallet_get(rf_store_t *base, const char *user, int64_t *balance, int64_t *version) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(user))
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  int64_t b = 0, v = 0;
  rc = stmt(c, ST_WALLET_GET, &st);
  if (rc == 0) {
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
      b = sqlite3_column_int64(st, 0);
      v = sqlite3_column_int64(st, 1);
    } else {
      rc = src == SQLITE_DONE ? RF_ENOENT : map_rc(src);
    }
    stmt_done(st);
  }
  conn_put(s, c);
  if (rc == 0) {
    if (balance)
      *balance = b;
    if (version)
      *version = v;
  }
  return rc;
}

/* The version check is in the WHERE clause; when no row matched, a SELECT
 * in the same transaction tells a stale version from a missing wallet. */
static int s_wallet_cas(rf_store_t *base, const char *user, int64_t expected, int64_t balance,
                        int64_t *new_version) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t v = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = run_kv(c, ST_WALLET_CAS, user, balance, 1, expected, &found, &v);
    if (r == 0 && !found) {
      int64_t ignored;
      sqlite3_stmt *st = NULL;
      r = stmt(c, ST_WALLET_GET, &st);
      if (r == 0) {
        sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
        r = step_int(st, &found, &ignored);
      }
      if (r == 0)
        r = found ? RF_ECONFLICT : RF_ENOENT;
    }
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0 && new_version)
    *new_version = v;
  return rc;
}

static int s_wallet_set(rf_store_t *base, const char *user, int64_t balance, int64_t *new_version) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t v = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = run_kv(c, ST_WALLET_SET, user, balance, 0, 0, &found, &v);
    if (r == 0 && !found)
      r = RF_ENOENT;
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0 && new_version)
    *new_version = v;
  return rc;
}

/* -------------------------------------------------------------- payments */

#define LEASE_MAX_MS (24ull * 3600 * 1000)

/* Lease times and ledger timestamps: wall-clock milliseconds, shared by
 * every process and surviving a restart (docs/payments.md). */
static int64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int valid_text(const char *t, size_t max) {
  if (!t)
    return 0;
  size_t n = strnlen(t, max + 1);
  return n >= 1 && n <= max;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t cap) {
  const unsigned char *t = sqlite3_column_text(st, col);
  size_t n = t ? (size_t)sqlite3_column_bytes(st, col) : 0;
  if (n >= cap)
    n = cap - 1;
  if (n > 0)
    memcpy(dst, t, n);
  dst[n] = '\0';
}

static void charge_id_of(int64_t seq, char out[RF_STORE_CHARGE_ID_MAX + 1]) {
  snprintf(out, RF_STORE_CHARGE_ID_MAX + 1, "ch_%lld", (long long)seq);
}

/* Read the payment row of `id` into *p (claim: DONE or BUSY by state) and
 * its fingerprint into fpr. *found = 0 when there is none. */
static int read_payment(conn_t *c, const char *id, int64_t now, rf_payment_t *p,
                        char fpr[RF_STORE_FPR_MAX + 1], int *found) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, ST_PAY_GET, &st);
  if (rc != 0)
    return rc;
  *found = 0;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    *found = 1;
    memset(p, 0, sizeof *p);
    p->amount = sqlite3_column_int64(st, 0);
    copy_col(st, 1, fpr, RF_STORE_FPR_MAX + 1);
    p->state = (rf_payment_state_t)sqlite3_column_int(st, 2);
    p->token = (uint64_t)sqlite3_column_int64(st, 3);
    int64_t until = sqlite3_column_int64(st, 4);
    p->http_status = sqlite3_column_int(st, 5);
    copy_col(st, 6, p->charge_id, sizeof p->charge_id);
    copy_col(st, 7, p->body, sizeof p->body);
    p->claim = p->state == RF_PAY_PROCESSING ? RF_PAY_BUSY : RF_PAY_DONE;
    p->lease_left_ms = p->state == RF_PAY_PROCESSING && until > now ? (uint64_t)(until - now) : 0;
    src = sqlite3_step(st);
  }
  rc = src == SQLITE_DONE ? 0 : map_rc(src);
  stmt_done(st);
  return rc;
}

/* The ledger's first charge for payment_id. *found = 0 when none. */
static int first_charge(conn_t *c, const char *payment_id, rf_charge_t *ch, int *found) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, ST_CHARGE_FIRST, &st);
  if (rc != 0)
    return rc;
  *found = 0;
  sqlite3_bind_text(st, 1, payment_id, -1, SQLITE_STATIC);
  int src = sqlite3_step(st);
  if (src == SQLITE_ROW) {
    *found = 1;
    charge_id_of(sqlite3_column_int64(st, 0), ch->charge_id);
    ch->amount = sqlite3_column_int64(st, 1);
    ch->declined = sqlite3_column_int(st, 2);
    ch->token = (uint64_t)sqlite3_column_int64(st, 3);
    src = sqlite3_step(st);
  }
  rc = src == SQLITE_DONE ? 0 : map_rc(src);
  stmt_done(st);
  return rc;
}

/* Raise the ledger's fence for payment_id to at least token. */
static int fence_raise(conn_t *c, const char *payment_id, uint64_t token) {
  int found = 0;
  return run_kv(c, ST_FENCE_RAISE, payment_id, (int64_t)token, 0, 0, &found, NULL);
}

/* The takeover of an expired lease (inside begin's transaction): CAS on
 * (token, expired), show the new token to the fence, read the ledger. */
static int takeover(conn_t *c, const char *id, uint64_t lease_ms, const char *owner, int64_t now,
                    rf_payment_t *p) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, ST_PAY_TAKEOVER, &st);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t token = 0;
  sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, now + (int64_t)lease_ms);
  sqlite3_bind_int64(st, 4, now);
  sqlite3_bind_int64(st, 5, (int64_t)p->token);
  rc = step_int(st, &found, &token);
  if (rc != 0 || !found)
    return rc; /* not taken over: p stays BUSY (unreachable inside IMMEDIATE) */
  p->claim = RF_PAY_TAKEN_OVER;
  p->token = (uint64_t)token;
  p->lease_left_ms = lease_ms;
  rc = fence_raise(c, id, p->token);
  if (rc == 0)
    rc = first_charge(c, id, &p->charge, &p->has_charge);
  return rc;
}

static int s_payment_begin(rf_store_t *base, const char *id, int64_t amount,
                           const char *fingerprint, uint64_t lease_ms, const char *owner,
                           rf_payment_t *out) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(id) || amount < 1 || !valid_text(fingerprint, RF_STORE_FPR_MAX) ||
      !valid_text(owner, RF_STORE_OWNER_MAX) || lease_ms < 1 || lease_ms > LEASE_MAX_MS || !out)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  rf_payment_t p;
  memset(&p, 0, sizeof p);
  int64_t now = wall_ms();
  rc = tx_begin(c);
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    int found = 0;
    int64_t token = 0;
    int r = stmt(c, ST_PAY_INSERT, &st);
    if (r == 0) {
      sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, amount);
      sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 4, owner, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 5, now + (int64_t)lease_ms);
      sqlite3_bind_int64(st, 6, now);
      r = step_int(st, &found, &token);
    }
    if (r == 0 && found) { /* the record is ours */
      p.claim = RF_PAY_CLAIMED;
      p.amount = amount;
      p.token = (uint64_t)token;
      p.lease_left_ms = lease_ms;
    } else if (r == 0) { /* it existed: what is it? */
      char fpr[RF_STORE_FPR_MAX + 1];
      r = read_payment(c, id, now, &p, fpr, &found);
      if (r == 0 && !found)
        r = RF_EINTERNAL; /* the conflicting row vanished inside our transaction */
      if (r == 0 && (p.amount != amount || strcmp(fpr, fingerprint) != 0))
        p.claim = RF_PAY_MISMATCH;
      else if (r == 0 && p.claim == RF_PAY_BUSY && p.lease_left_ms == 0)
        r = takeover(c, id, lease_ms, owner, now, &p);
    }
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0)
    *out = p;
  return rc;
}

static int s_payment_finish(rf_store_t *base, const char *id, uint64_t token, int declined,
                            int http_status, const char *charge_id, const char *body) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!charge_id)
    charge_id = "";
  if (!valid_id(id) || token < 1 || http_status < 100 || http_status > 599 || !body ||
      strnlen(body, RF_STORE_BODY_MAX + 1) > RF_STORE_BODY_MAX ||
      strnlen(charge_id, RF_STORE_CHARGE_ID_MAX + 1) > RF_STORE_CHARGE_ID_MAX)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  rc = tx_begin(c);
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    int r = stmt(c, ST_PAY_FINISH, &st);
    if (r == 0) {
      sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, (int64_t)token);
      sqlite3_bind_int(st, 3, declined ? RF_PAY_DECLINED : RF_PAY_SUCCEEDED);
      sqlite3_bind_int(st, 4, http_status);
      sqlite3_bind_text(st, 5, charge_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 6, body, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 7, wall_ms());
      int src = sqlite3_step(st);
      r = src == SQLITE_DONE ? 0 : map_rc(src);
      int changed = r == 0 ? sqlite3_changes(c->db) : 0;
      stmt_done(st);
      if (r == 0 && changed == 0) { /* stale token, final already, or no record */
        rf_payment_t p;
        char fpr[RF_STORE_FPR_MAX + 1];
        int found = 0;
        r = read_payment(c, id, 0, &p, fpr, &found);
        if (r == 0)
          r = found ? RF_ESTALE : RF_ENOENT;
      }
    }
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  return rc;
}

static int s_payment_get(rf_store_t *base, const char *id, rf_payment_t *out) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(id) || !out)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  rf_payment_t p;
  char fpr[RF_STORE_FPR_MAX + 1];
  int found = 0;
  rc = read_payment(c, id, wall_ms(), &p, fpr, &found);
  conn_put(s, c);
  if (rc == 0 && !found)
    rc = RF_ENOENT;
  if (rc == 0)
    *out = p;
  return rc;
}

/* Insert one charge (the caller holds the transaction). */
static int charge_insert(conn_t *c, const char *payment_id, int64_t amount, int declined,
                         uint64_t token, rf_charge_t *ch) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, ST_CHARGE_INSERT, &st);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t seq = 0;
  sqlite3_bind_text(st, 1, payment_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, amount);
  sqlite3_bind_int(st, 3, declined ? 1 : 0);
  sqlite3_bind_int64(st, 4, (int64_t)token);
  sqlite3_bind_int64(st, 5, wall_ms());
  rc = step_int(st, &found, &seq);
  if (rc == 0 && !found)
    rc = RF_EINTERNAL;
  if (rc == 0) {
    charge_id_of(seq, ch->charge_id);
    ch->amount = amount;
    ch->declined = declined ? 1 : 0;
    ch->token = token;
  }
  return rc;
}

/* The fence and the charge in one transaction: a holder whose token is
 * older than one the ledger has seen for this payment cannot charge. */
static int charge_common(sqlite_store_t *s, const char *payment_id, int64_t amount, int declined,
                         int fenced, uint64_t token, rf_charge_t *out) {
  if (!valid_id(payment_id) || amount < 1 || (fenced && token < 1))
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  rf_charge_t ch;
  memset(&ch, 0, sizeof ch);
  rc = tx_begin(c);
  if (rc == 0) {
    int r = 0;
    if (fenced) {
      int found = 0;
      int64_t seen = 0;
      r = run_kv(c, ST_FENCE_GET, payment_id, 0, 0, 0, &found, &seen);
      if (r == 0 && found && (uint64_t)seen > token)
        r = RF_ESTALE;
      if (r == 0)
        r = fence_raise(c, payment_id, token);
    }
    if (r == 0)
      r = charge_insert(c, payment_id, amount, declined, token, &ch);
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0 && out)
    *out = ch;
  return rc;
}

static int s_charge_record(rf_store_t *base, const char *payment_id, int64_t amount, int declined,
                           uint64_t token, rf_charge_t *out) {
  return charge_common((sqlite_store_t *)base, payment_id, amount, declined, 1, token, out);
}

static int s_charge_record_unchecked(rf_store_t *base, const char *payment_id, int64_t amount,
                                     int declined, rf_charge_t *out) {
  return charge_common((sqlite_store_t *)base, payment_id, amount, declined, 0, 0, out);
}

static int s_charge_stats(rf_store_t *base, const char *payment_id, int64_t *count,
                          int64_t *total) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_id(payment_id))
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  sqlite3_stmt *st = NULL;
  int64_t n = 0, t = 0;
  rc = stmt(c, ST_CHARGE_STATS, &st);
  if (rc == 0) {
    sqlite3_bind_text(st, 1, payment_id, -1, SQLITE_STATIC);
    int src = sqlite3_step(st);
    if (src == SQLITE_ROW) {
      n = sqlite3_column_int64(st, 0);
      t = sqlite3_column_int64(st, 1);
      src = sqlite3_step(st);
    }
    rc = src == SQLITE_DONE ? 0 : map_rc(src);
    stmt_done(st);
  }
  conn_put(s, c);
  if (rc == 0) {
    if (count)
      *count = n;
    if (total)
      *total = t;
  }
  return rc;
}

static int s_payment_put_unchecked(rf_store_t *base, const char *id, int64_t amount, int declined,
                                   int http_status, const char *charge_id, const char *body) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!charge_id)
    charge_id = "";
  if (!valid_id(id) || amount < 1 || !body ||
      strnlen(body, RF_STORE_BODY_MAX + 1) > RF_STORE_BODY_MAX)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  rc = tx_begin(c);
  if (rc == 0) {
    sqlite3_stmt *st = NULL;
    int r = stmt(c, ST_PAY_PUT, &st);
    if (r == 0) {
      sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 2, amount);
      sqlite3_bind_int(st, 3, declined ? RF_PAY_DECLINED : RF_PAY_SUCCEEDED);
      sqlite3_bind_int(st, 4, http_status);
      sqlite3_bind_text(st, 5, charge_id, -1, SQLITE_STATIC);
      sqlite3_bind_text(st, 6, body, -1, SQLITE_STATIC);
      sqlite3_bind_int64(st, 7, wall_ms());
      int src = sqlite3_step(st);
      r = src == SQLITE_DONE ? 0 : map_rc(src);
      stmt_done(st);
    }
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  return rc;
}

/* ------------------------------------------------------------ mail sender */

static int send_insert(conn_t *c, const char *job_id, unsigned attempt, const char *to) {
  sqlite3_stmt *st = NULL;
  int rc = stmt(c, ST_SEND_INSERT, &st);
  if (rc != 0)
    return rc;
  sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, attempt);
  sqlite3_bind_text(st, 3, to, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 4, wall_ms());
  int src = sqlite3_step(st);
  stmt_done(st);
  return src == SQLITE_DONE ? 0 : map_rc(src);
}

/* check (a send for this job?) and insert in one IMMEDIATE transaction:
 * the write lock makes the pair atomic. */
static int send_common(sqlite_store_t *s, const char *job_id, unsigned attempt, const char *to,
                       int once, int *first) {
  if (!valid_text(job_id, RF_STORE_ID_MAX) || !valid_email(to))
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int sent_before = 0;
  rc = tx_begin(c);
  if (rc == 0) {
    int r = once ? run_kv(c, ST_SEND_FIND, job_id, 0, 0, 0, &sent_before, NULL) : 0;
    if (r == 0 && !sent_before)
      r = send_insert(c, job_id, attempt, to);
    rc = tx_end(c, r);
  }
  conn_put(s, c);
  if (rc == 0 && first)
    *first = !sent_before;
  return rc;
}

static int s_email_send(rf_store_t *base, const char *job_id, unsigned attempt, const char *to,
                        int *first) {
  if (attempt < 1 || !first)
    return RF_EINVAL;
  return send_common((sqlite_store_t *)base, job_id, attempt, to, 1, first);
}

static int s_email_send_unchecked(rf_store_t *base, const char *job_id, const char *to) {
  return send_common((sqlite_store_t *)base, job_id, 0, to, 0, NULL);
}

static int s_email_sent_count(rf_store_t *base, const char *to, int64_t *count) {
  sqlite_store_t *s = (sqlite_store_t *)base;
  if (!valid_email(to) || !count)
    return RF_EINVAL;
  conn_t *c = NULL;
  int rc = conn_get(s, &c);
  if (rc != 0)
    return rc;
  int found = 0;
  int64_t n = 0;
  rc = run_kv(c, ST_SEND_COUNT, to, 0, 0, 0, &found, &n);
  conn_put(s, c);
  if (rc == 0)
    *count = n;
  return rc;
}

static const rf_store_ops_t sqlite_ops = {
    .kind = "sqlite",
    .close = s_close,
    .ping = s_ping,
    .user_create = s_user_create,
    .user_get = s_user_get,
    .user_find_unchecked = s_user_find_unchecked,
    .user_insert_unchecked = s_user_insert_unchecked,
    .user_get_unchecked = s_user_get_unchecked,
    .item_put = s_item_put,
    .item_get = s_item_get,
    .item_purchase = s_item_purchase,
    .item_set_stock = s_item_set_stock,
    .wallet_put = s_wallet_put,
    .wallet_get = s_wallet_get,
    .wallet_cas = s_wallet_cas,
    .wallet_set = s_wallet_set,
    .payment_begin = s_payment_begin,
    .payment_finish = s_payment_finish,
    .payment_get = s_payment_get,
    .charge_record = s_charge_record,
    .charge_stats = s_charge_stats,
    .charge_record_unchecked = s_charge_record_unchecked,
    .payment_put_unchecked = s_payment_put_unchecked,
    .email_send = s_email_send,
    .email_send_unchecked = s_email_send_unchecked,
    .email_sent_count = s_email_sent_count,
    .reads_inline = 1,
};
