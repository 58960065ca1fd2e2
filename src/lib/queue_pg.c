/* queue_pg.c - the PostgreSQL backend of the job queue ("postgres://..."
 * or "postgresql://...": a libpq URL plus the parameters the store's URL
 * takes too, so that racefreed can give both the same --db: pool=N
 * (connections of this handle, 1..256, default 8) and timeout_ms=N (bound
 * of every wait, 100..600000, default opts.busy_timeout_ms); both are
 * removed before the rest goes to libpq).
 *
 * One table in the first schema of the session's search_path (so that
 * several queues can share a database in different schemas), shared by
 * every thread of every process and host that opens the same URL:
 *
 *   rf_jobs(seq, id PRIMARY KEY, payload bytea, status, attempts,
 *           max_attempts, backoff_base_ms, backoff_cap_ms,
 *           remove_on_complete, run_at_ms, lease_until_ms, lease_owner,
 *           last_error, created_ms, updated_ms)
 *
 * run_at_ms is when a job is next due, as in the SQLite backend: its run
 * time while waiting, its lease end while active. One partial index,
 * (run_at_ms, seq) over the live jobs, serves the claim (the oldest due
 * job; creation order among jobs due in the same millisecond) and the
 * sweep of stalled jobs; final records (tombstones) cost it nothing.
 *
 * Atomicity: every write is ONE statement in autocommit, that is one
 * transaction, carrying its own check - as in the SQLite backend:
 *  - add is INSERT ... ON CONFLICT (id) DO NOTHING: the primary key makes
 *    "id free?" and "insert" one step; no row back means RF_EEXIST. A
 *    concurrent add of the same id waits for the first one's commit.
 *  - claim is UPDATE ... FROM (SELECT the next due job ... LIMIT 1 FOR
 *    UPDATE SKIP LOCKED) RETURNING the job. Unlike SQLite, PostgreSQL runs
 *    writers in parallel: two claimers may pick the same row from their
 *    snapshots. FOR UPDATE makes the pick lock the row; SKIP LOCKED makes a
 *    claimer that finds it locked move on to the next due job instead of
 *    queueing behind it; and a row whose lock is obtained after another
 *    transaction changed it is re-checked against the WHERE clause on its
 *    newest version (READ COMMITTED's re-check), so a job claimed or
 *    completed meanwhile is not taken again. Two claimers therefore never
 *    get the same (id, attempt), and N claimers take N different jobs in
 *    parallel.
 *  - complete, extend and fail's update are conditional UPDATEs fenced by
 *    (status = 'active' AND attempts = token); the same statement also
 *    answers EXISTS for the id, telling RF_ESTALE from RF_ENOENT without a
 *    second round trip. fail first reads the backoff parameters (immutable
 *    while this attempt is current; the UPDATE is fenced on the attempt).
 *  - a claim whose copy cannot be allocated is undone by a fenced UPDATE
 *    (due again at once, attempt count restored); should that fail too,
 *    the lease expiry brings the job back like a crashed worker's.
 * Stalled jobs on their last attempt are skipped by the claim and marked
 * failed by a sweep (SKIP LOCKED too, so sweeps never wait for each other
 * nor deadlock) that a claim runs when nothing is due and on every 256th
 * claim of a handle.
 *
 * Schema creation: CREATE TABLE/INDEX IF NOT EXISTS inside one transaction
 * that first takes a transaction-scoped advisory lock, so processes opening
 * a new database together do not race on the catalog; opening an existing
 * queue only checks that the table is there.
 *
 * Connections, timeouts, outages: a pool of `pool` connections (one per
 * concurrent call, connected lazily, a caller beyond waits at most
 * busy_timeout_ms: RF_EBUSY), statements prepared once per connection,
 * every round trip through libpq's asynchronous API with a deadline
 * (statement_timeout = busy_timeout_ms on the server, the client gives up
 * one second later), connecting included. A connection that fails or is
 * found closed by the server (restart) is dropped and its slot reconnects
 * on next use. Errors: 23505 (cannot happen here: ON CONFLICT) RF_EEXIST;
 * 40001/40P01 retried, at most 8 times, then RF_EBUSY; 57014/55P03
 * RF_EBUSY; a connection that cannot be made or is lost RF_EUNAVAIL (a
 * write whose connection died after sending may or may not have been
 * applied, whole); anything else RF_EIO. docs/postgres.md.
 *
 * Failure injection (test builds): RF_HOOK_FAIL("queue.pg.<statement>")
 * makes that statement fail with RF_EIO before it is sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "internal.h"
#include "queue_internal.h"

#define RF__PGQ_POOL_DEFAULT 8
#define RF__PGQ_POOL_LIMIT   256
#define RF__PGQ_GRACE_MS     1000 /* client wait = statement_timeout + grace */
#define RF__PGQ_TRIES        8    /* attempts of a statement hitting 40001/40P01 */
#define RF__PGQ_RETRY        1    /* internal: serialization failure, try again */
#define RF__PGQ_SWEEP_EVERY  256
/* The advisory lock of schema creation: "rfqueue" in ASCII. */
#define RF__PGQ_SCHEMA_LOCK "32200784831935845"

enum {
  PQ_INSERT,
  PQ_TAKE,
  PQ_UNTAKE,
  PQ_SWEEP,
  PQ_COMPLETE,
  PQ_FAIL_READ,
  PQ_FAIL_SET,
  PQ_EXTEND,
  PQ_GET,
  PQ_COUNTS,
  PQ_PURGE,
  PQ__COUNT
};

static const char *const RF__PGQ_SQL[PQ__COUNT] = {
    [PQ_INSERT] = "INSERT INTO rf_jobs(id, payload, status, attempts, max_attempts,"
                  " backoff_base_ms, backoff_cap_ms, remove_on_complete, run_at_ms,"
                  " created_ms, updated_ms)"
                  " VALUES ($1::text, $2::bytea, 'waiting', 0, $3::integer, $4::bigint,"
                  " $5::bigint, $6::boolean, $7::bigint, $8::bigint, $8::bigint)"
                  " ON CONFLICT (id) DO NOTHING RETURNING 1",
    /* The claim ($1 = now). A waiting job is due at run_at <= now, a stalled
     * one (attempts left) once its lease end run_at < now: one ordered scan
     * of the partial index finds the oldest due. */
    [PQ_TAKE] = "UPDATE rf_jobs j SET status = 'active', attempts = j.attempts + 1,"
                " run_at_ms = $2::bigint, lease_until_ms = $2::bigint, lease_owner = $3::text,"
                " updated_ms = $1::bigint"
                " FROM (SELECT id FROM rf_jobs"
                "  WHERE status IN ('waiting', 'active') AND run_at_ms <= $1::bigint"
                "  AND (status = 'waiting' OR (run_at_ms < $1::bigint"
                "  AND attempts < max_attempts))"
                "  ORDER BY run_at_ms, seq LIMIT 1 FOR UPDATE SKIP LOCKED) next"
                " WHERE j.id = next.id"
                " RETURNING j.id, j.attempts, j.max_attempts, j.payload, j.last_error",
    [PQ_UNTAKE] = "UPDATE rf_jobs SET status = 'waiting', attempts = attempts - 1,"
                  " run_at_ms = $3::bigint, lease_until_ms = NULL, lease_owner = NULL"
                  " WHERE id = $1::text AND status = 'active' AND attempts = $2::integer",
    [PQ_SWEEP] =
        "UPDATE rf_jobs SET status = 'failed', last_error = '" RF__QUEUE_STALLED_ERROR "',"
        " lease_until_ms = NULL, lease_owner = NULL, updated_ms = $1::bigint"
        " WHERE id IN (SELECT id FROM rf_jobs WHERE status = 'active'"
        "  AND run_at_ms < $1::bigint AND attempts >= max_attempts FOR UPDATE SKIP LOCKED)",
    [PQ_COMPLETE] = "WITH u AS (UPDATE rf_jobs SET status = 'completed', lease_until_ms = NULL,"
                    " lease_owner = NULL, updated_ms = $3::bigint,"
                    " payload = CASE WHEN remove_on_complete THEN NULL ELSE payload END,"
                    " last_error = CASE WHEN remove_on_complete THEN NULL ELSE last_error END"
                    " WHERE id = $1::text AND status = 'active' AND attempts = $2::integer"
                    " RETURNING 1)"
                    " SELECT (SELECT count(*) FROM u),"
                    " EXISTS (SELECT 1 FROM rf_jobs WHERE id = $1::text)",
    /* The backoff parameters, and whether attempt $2 is the current one
     * (no row: no such job). */
    [PQ_FAIL_READ] = "SELECT attempts, max_attempts, backoff_base_ms, backoff_cap_ms,"
                     " status = 'active' AND attempts = $2::integer"
                     " FROM rf_jobs WHERE id = $1::text",
    [PQ_FAIL_SET] = "WITH u AS (UPDATE rf_jobs SET status = $3::text,"
                    " run_at_ms = coalesce($4::bigint, run_at_ms), last_error = $5::text,"
                    " lease_until_ms = NULL, lease_owner = NULL, updated_ms = $6::bigint"
                    " WHERE id = $1::text AND status = 'active' AND attempts = $2::integer"
                    " RETURNING 1)"
                    " SELECT (SELECT count(*) FROM u),"
                    " EXISTS (SELECT 1 FROM rf_jobs WHERE id = $1::text)",
    [PQ_EXTEND] =
        "WITH u AS (UPDATE rf_jobs SET lease_until_ms = $3::bigint, run_at_ms = $3::bigint,"
        " updated_ms = $4::bigint"
        " WHERE id = $1::text AND status = 'active' AND attempts = $2::integer"
        " RETURNING 1)"
        " SELECT (SELECT count(*) FROM u),"
        " EXISTS (SELECT 1 FROM rf_jobs WHERE id = $1::text)",
    [PQ_GET] = "SELECT status, attempts, max_attempts, run_at_ms, lease_until_ms, created_ms,"
               " updated_ms, coalesce(octet_length(payload), 0), remove_on_complete, last_error"
               " FROM rf_jobs WHERE id = $1::text",
    [PQ_COUNTS] = "SELECT status, count(*) FROM rf_jobs GROUP BY status",
    /* (parenthesised: clang's -Wstring-concatenation takes a split last
     * literal of an array for a missing comma) */
    [PQ_PURGE] = ("DELETE FROM rf_jobs WHERE status IN ('completed', 'failed')"
                  " AND updated_ms < $1::bigint"),
};

#ifdef RF_TEST_HOOKS
static const char *const RF__PGQ_FAIL[PQ__COUNT] = {
    [PQ_INSERT] = "queue.pg.insert",     [PQ_TAKE] = "queue.pg.take",
    [PQ_UNTAKE] = "queue.pg.untake",     [PQ_SWEEP] = "queue.pg.sweep",
    [PQ_COMPLETE] = "queue.pg.complete", [PQ_FAIL_READ] = "queue.pg.fail_read",
    [PQ_FAIL_SET] = "queue.pg.fail_set", [PQ_EXTEND] = "queue.pg.extend",
    [PQ_GET] = "queue.pg.get",           [PQ_COUNTS] = "queue.pg.counts",
    [PQ_PURGE] = "queue.pg.purge",
};
#endif

static const char RF__PGQ_SCHEMA[] =
    "BEGIN;"
    "SET LOCAL statement_timeout = 60000;" /* not busy_timeout_ms: DDL may queue */
    "SELECT pg_advisory_xact_lock(" RF__PGQ_SCHEMA_LOCK ");"
    "CREATE TABLE IF NOT EXISTS rf_jobs ("
    " seq bigint GENERATED BY DEFAULT AS IDENTITY,"
    " id text PRIMARY KEY,"
    " payload bytea,"
    " status text NOT NULL CHECK (status IN ('waiting', 'active', 'completed', 'failed')),"
    " attempts integer NOT NULL DEFAULT 0,"
    " max_attempts integer NOT NULL,"
    " backoff_base_ms bigint NOT NULL,"
    " backoff_cap_ms bigint NOT NULL,"
    " remove_on_complete boolean NOT NULL DEFAULT false,"
    " run_at_ms bigint NOT NULL,"
    " lease_until_ms bigint,"
    " lease_owner text,"
    " last_error text,"
    " created_ms bigint NOT NULL,"
    " updated_ms bigint NOT NULL);"
    "CREATE INDEX IF NOT EXISTS rf_jobs_due ON rf_jobs (run_at_ms, seq)"
    " WHERE status IN ('waiting', 'active');"
    "COMMIT;";

typedef struct rf__pgconn {
  PGconn *pg;        /* NULL: not connected (connects on next use) */
  uint64_t prepared; /* bit i: statement i is prepared on pg */
  bool fresh;        /* connected during the current call */
  struct rf__pgconn *next;
} rf__pgconn_t;

#define RF__PGQ_NKEYS 9

typedef struct {
  rf_queue_t *q;
  pid_t pid; /* the process that opened the queue (close in a child) */
  int pool_size;
  int timeout_ms;
  char *uri; /* the URL without pool= */
  char tcp_user_timeout[16];
  const char *keys[RF__PGQ_NKEYS + 1];
  const char *vals[RF__PGQ_NKEYS + 1];
  char session_sql[160];
  pthread_mutex_t mu;   /* guards idle */
  pthread_cond_t freed; /* a slot came back (CLOCK_MONOTONIC) */
  rf__pgconn_t *idle;
  rf__pgconn_t *slots;
  /* Relaxed: only needs distinct values over time (sweep cadence). */
  atomic_uint_fast64_t claims;
} rf__pgq_t;

/* Positional parameters of one statement (text, or binary bytea). */
typedef struct {
  int n;
  const char *v[8];
  int len[8];
  int fmt[8];
  char buf[8][24];
} rf__pgq_args_t;

/* ------------------------------------------------------------ plumbing */

static int64_t rf__pgq_now(void) {
  return (int64_t)rf__now_ms();
}

static void rf__pgq_arg_text(rf__pgq_args_t *a, const char *s) {
  a->v[a->n] = s;
  a->len[a->n] = 0;
  a->fmt[a->n] = 0;
  a->n++;
}

static void rf__pgq_arg_i64(rf__pgq_args_t *a, int64_t x) {
  snprintf(a->buf[a->n], sizeof(a->buf[a->n]), "%lld", (long long)x);
  rf__pgq_arg_text(a, a->buf[a->n]);
}

static void rf__pgq_arg_null(rf__pgq_args_t *a) {
  rf__pgq_arg_text(a, NULL);
}

static void rf__pgq_arg_bytes(rf__pgq_args_t *a, const void *p, size_t len) {
  a->v[a->n] = p;
  a->len[a->n] = (int)len;
  a->fmt[a->n] = 1;
  a->n++;
}

static int rf__pgq_sqlstate(const char *st) {
  if (st == NULL || strlen(st) != 5) {
    return RF_EIO;
  }
  if (strcmp(st, "23505") == 0) {
    return RF_EEXIST;
  }
  if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0) {
    return RF__PGQ_RETRY;
  }
  if (strcmp(st, "57014") == 0 || strcmp(st, "55P03") == 0) {
    return RF_EBUSY;
  }
  if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P0", 4) == 0 || strcmp(st, "53300") == 0) {
    return RF_EUNAVAIL;
  }
  return RF_EIO;
}

static void rf__pgq_backoff(int attempt) {
  uint64_t x = rf__now_ns() * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  long cap_us = 1000L << (attempt < 6 ? attempt : 6);
  struct timespec ts = {0, (long)(x % (uint64_t)cap_us) * 1000L};
  nanosleep(&ts, NULL);
}

static int rf__pgq_wait(int fd, short events, int64_t deadline) {
  if (fd < 0) {
    return -1;
  }
  for (;;) {
    int64_t left = deadline - rf__pgq_now();
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, left > 0 ? (int)left : 0);
    if (n > 0) {
      return p.revents;
    }
    if (n == 0) {
      return 0;
    }
    if (errno != EINTR) {
      return -1;
    }
  }
}

static void rf__pgq_quiet(void *arg, const char *msg) {
  RF__UNUSED(arg);
  RF__UNUSED(msg);
}

static void rf__pgq_drop(rf__pgconn_t *c) {
  if (c->pg != NULL) {
    PQfinish(c->pg);
  }
  c->pg = NULL;
  c->prepared = 0;
}

static bool rf__pgq_is_error(const PGresult *r) {
  ExecStatusType st = PQresultStatus(r);
  return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

/* Flush the request and collect its results (the first error, else the
 * last result) before the deadline; RF_EUNAVAIL and the connection dropped
 * when it fails or the deadline passes. */
static int rf__pgq_pump(rf__pgconn_t *c, int64_t deadline, PGresult **out) {
  PGconn *pg = c->pg;
  int fd = PQsocket(pg);
  int f;
  PGresult *keep = NULL;
  while ((f = PQflush(pg)) == 1) {
    int ev = rf__pgq_wait(fd, POLLOUT | POLLIN, deadline);
    if (ev <= 0 || ((ev & POLLIN) && !PQconsumeInput(pg))) {
      goto lost;
    }
  }
  if (f < 0) {
    goto lost;
  }
  for (;;) {
    while (PQisBusy(pg)) {
      int ev = rf__pgq_wait(fd, POLLIN, deadline);
      if (ev <= 0 || !PQconsumeInput(pg)) {
        goto lost;
      }
    }
    PGresult *r = PQgetResult(pg);
    if (r == NULL) {
      break;
    }
    if (keep != NULL && rf__pgq_is_error(keep)) {
      PQclear(r);
    } else {
      PQclear(keep);
      keep = r;
    }
  }
  if (keep == NULL || PQstatus(pg) == CONNECTION_BAD) {
    goto lost;
  }
  *out = keep;
  return 0;
lost:
  PQclear(keep);
  rf__pgq_drop(c);
  return RF_EUNAVAIL;
}

static int rf__pgq_result_rc(const PGresult *r) {
  switch (PQresultStatus(r)) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK:
    return 0;
  case PGRES_FATAL_ERROR:
  case PGRES_NONFATAL_ERROR:
    return rf__pgq_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE));
  default:
    return RF_EIO;
  }
}

static int rf__pgq_simple(rf__pgconn_t *c, const char *sql, int64_t deadline) {
  if (!PQsendQuery(c->pg, sql)) {
    rf__pgq_drop(c);
    return RF_EUNAVAIL;
  }
  PGresult *r = NULL;
  int rc = rf__pgq_pump(c, deadline, &r);
  if (rc == 0) {
    rc = rf__pgq_result_rc(r);
    PQclear(r);
  }
  return rc;
}

static int rf__pgq_connect(rf__pgq_t *s, rf__pgconn_t *c, int64_t deadline) {
  c->prepared = 0;
  c->pg = PQconnectStartParams(s->keys, s->vals, 1);
  if (c->pg == NULL) {
    return RF_ENOMEM;
  }
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (PQstatus(c->pg) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
         ps != PGRES_POLLING_FAILED) {
    short ev = ps == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (rf__pgq_wait(PQsocket(c->pg), ev, deadline) == 0) {
      rf__pgq_drop(c);
      return RF_EUNAVAIL;
    }
    ps = PQconnectPoll(c->pg);
  }
  if (PQstatus(c->pg) != CONNECTION_OK || PQsetnonblocking(c->pg, 1) != 0) {
    rf__pgq_drop(c);
    return RF_EUNAVAIL;
  }
  PQsetNoticeProcessor(c->pg, rf__pgq_quiet, NULL);
  int rc = rf__pgq_simple(c, s->session_sql, deadline);
  if (rc != 0) {
    rf__pgq_drop(c);
    return rc == RF_EUNAVAIL ? RF_EUNAVAIL : RF_EIO;
  }
  c->fresh = true;
  return 0;
}

/* Connected, idle, and not closed by the server meanwhile. */
static bool rf__pgq_alive(rf__pgconn_t *c) {
  if (c->pg == NULL || PQstatus(c->pg) != CONNECTION_OK ||
      PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
    return false;
  }
  struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
  if (poll(&p, 1, 0) > 0) {
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK) {
      return false;
    }
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL) {
      PQfreemem(n);
    }
  }
  return true;
}

static void rf__pgq_put(rf__pgq_t *s, rf__pgconn_t *c) {
  if (c->pg != NULL && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
    rf__pgq_drop(c);
  }
  pthread_mutex_lock(&s->mu);
  c->next = s->idle;
  s->idle = c;
  pthread_cond_signal(&s->freed);
  pthread_mutex_unlock(&s->mu);
}

static int rf__pgq_get(rf__pgq_t *s, rf__pgconn_t **out) {
  struct timespec ts = rf__deadline(s->timeout_ms);
  pthread_mutex_lock(&s->mu);
  while (s->idle == NULL) {
    if (pthread_cond_timedwait(&s->freed, &s->mu, &ts) == ETIMEDOUT && s->idle == NULL) {
      pthread_mutex_unlock(&s->mu);
      return RF_EBUSY;
    }
  }
  rf__pgconn_t *c = s->idle;
  s->idle = c->next;
  pthread_mutex_unlock(&s->mu);
  c->fresh = false;
  if (!rf__pgq_alive(c)) {
    rf__pgq_drop(c);
  }
  if (c->pg == NULL) {
    int rc = rf__pgq_connect(s, c, rf__pgq_now() + s->timeout_ms + RF__PGQ_GRACE_MS);
    if (rc != 0) {
      rf__pgq_put(s, c);
      return rc;
    }
  }
  *out = c;
  return 0;
}

/* Run prepared statement i on c. *sent: the statement may have reached
 * the server (preparing it changes nothing). */
static int rf__pgq_exec(rf__pgq_t *s, rf__pgconn_t *c, int i, const rf__pgq_args_t *a,
                        PGresult **out, bool *sent) {
  *sent = false;
#ifdef RF_TEST_HOOKS
  if (RF_HOOK_FAIL(RF__PGQ_FAIL[i])) {
    return RF_EIO;
  }
#endif
  char name[16];
  snprintf(name, sizeof(name), "rfq%d", i);
  int64_t deadline = rf__pgq_now() + s->timeout_ms + RF__PGQ_GRACE_MS;
  PGresult *r = NULL;
  int rc;
  if ((c->prepared & (1ull << i)) == 0) {
    if (!PQsendPrepare(c->pg, name, RF__PGQ_SQL[i], 0, NULL)) {
      rf__pgq_drop(c);
      return RF_EUNAVAIL;
    }
    rc = rf__pgq_pump(c, deadline, &r);
    if (rc != 0) {
      return rc;
    }
    rc = rf__pgq_result_rc(r);
    PQclear(r);
    if (rc != 0) {
      return rc;
    }
    c->prepared |= 1ull << i;
  }
  if (!PQsendQueryPrepared(c->pg, name, a->n, a->v, a->len, a->fmt, 0)) {
    rf__pgq_drop(c);
    return RF_EUNAVAIL;
  }
  *sent = true;
  rc = rf__pgq_pump(c, deadline, &r);
  if (rc != 0) {
    return rc;
  }
  rc = rf__pgq_result_rc(r);
  if (rc != 0) {
    PQclear(r);
    if (rc == RF_EUNAVAIL) {
      rf__pgq_drop(c);
    }
    return rc;
  }
  *out = r;
  return 0;
}

/* One statement: take a connection, run, give it back; serialization
 * failures and deadlocks retried (bounded), a connection found dead retried
 * once on a new one when the statement cannot have been applied or only
 * reads. */
static int rf__pgq_query(rf__pgq_t *s, int i, const rf__pgq_args_t *a, PGresult **out) {
  bool again = false;
  bool reads = i == PQ_GET || i == PQ_COUNTS || i == PQ_FAIL_READ;
  for (int attempt = 1;; attempt++) {
    rf__pgconn_t *c = NULL;
    int rc = rf__pgq_get(s, &c);
    if (rc != 0) {
      return rc;
    }
    bool fresh = c->fresh, sent = false;
    rc = rf__pgq_exec(s, c, i, a, out, &sent);
    rf__pgq_put(s, c);
    if (rc == RF__PGQ_RETRY) {
      if (attempt >= RF__PGQ_TRIES) {
        return RF_EBUSY;
      }
      rf__pgq_backoff(attempt);
      continue;
    }
    if (rc == RF_EUNAVAIL && !fresh && !again && (!sent || reads)) {
      again = true;
      continue;
    }
    return rc;
  }
}

/* "(count, exists)" of the fenced statements: 0, RF_ESTALE or RF_ENOENT. */
static int rf__pgq_fenced_rc(const PGresult *r) {
  if (PQntuples(r) != 1) {
    return RF_EIO;
  }
  if (strtoll(PQgetvalue(r, 0, 0), NULL, 10) > 0) {
    return 0;
  }
  return PQgetvalue(r, 0, 1)[0] == 't' ? RF_ESTALE : RF_ENOENT;
}

static int64_t rf__pgq_i64(const PGresult *r, int row, int col) {
  return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* Decode a bytea in hex text format ("\x4142...") into dst[len]. */
static bool rf__pgq_unhex(const char *t, size_t tlen, unsigned char *dst, size_t len) {
  if (tlen != 2 + 2 * len || t[0] != '\\' || t[1] != 'x') {
    return false;
  }
  for (size_t k = 0; k < len; k++) {
    unsigned v = 0;
    for (int h = 0; h < 2; h++) {
      char ch = t[2 + 2 * k + (size_t)h];
      unsigned d = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                   : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                   : ch >= 'A' && ch <= 'F' ? (unsigned)(ch - 'A' + 10)
                                            : 16u;
      if (d > 15) {
        return false;
      }
      v = v * 16 + d;
    }
    dst[k] = (unsigned char)v;
  }
  return true;
}

/* ------------------------------------------------------------ open/close */

/* The decimal value of "name=N" at p (n bytes) when it is in [lo, hi];
 * -1 when p is "name=" with anything else; 0 when p is another parameter. */
static long rf__pgq_param(const char *p, size_t n, const char *name, long lo, long hi) {
  size_t k = strlen(name);
  if (n < k || strncmp(p, name, k) != 0 || (n > k && p[k] != '=')) {
    return 0; /* another parameter */
  }
  long v = 0;
  size_t i = k + 1;
  for (; i < n && i < k + 10 && p[i] >= '0' && p[i] <= '9'; i++) {
    v = v * 10 + (p[i] - '0');
  }
  return n > k + 1 && i == n && v >= lo && v <= hi ? v : -1;
}

/* The URL without the queue's own parameters (libpq would refuse them):
 * pool=N into s->pool_size, and timeout_ms=N (the store's parameter, so
 * that one URL serves both) into s->timeout_ms. */
static int rf__pgq_parse(rf__pgq_t *s, const char *url) {
  size_t len = strlen(url);
  s->uri = rf__malloc(len + 1);
  if (s->uri == NULL) {
    return RF_ENOMEM;
  }
  const char *q = strchr(url, '?');
  size_t base = q != NULL ? (size_t)(q - url) : len;
  memcpy(s->uri, url, base);
  size_t o = base;
  bool first = true;
  for (const char *p = q != NULL ? q + 1 : NULL; p != NULL && *p != '\0';) {
    const char *amp = strchr(p, '&');
    size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
    long pool = rf__pgq_param(p, n, "pool", 1, RF__PGQ_POOL_LIMIT);
    long timeout = rf__pgq_param(p, n, "timeout_ms", 100, 600000);
    if (pool < 0 || timeout < 0) {
      return RF_EINVAL;
    }
    if (pool > 0) {
      s->pool_size = (int)pool;
    } else if (timeout > 0) {
      s->timeout_ms = (int)timeout;
    } else if (n > 0) {
      s->uri[o++] = first ? '?' : '&';
      first = false;
      memcpy(s->uri + o, p, n);
      o += n;
    }
    p = amp != NULL ? amp + 1 : NULL;
  }
  s->uri[o] = '\0';
  return 0;
}

/* Create the table and index unless they are there (see the top). */
static int rf__pgq_schema(rf__pgconn_t *c) {
  int64_t deadline = rf__pgq_now() + 60000; /* DDL may wait for other sessions */
  if (!PQsendQuery(c->pg, "SELECT to_regclass('rf_jobs') IS NOT NULL")) {
    return RF_EUNAVAIL;
  }
  PGresult *r = NULL;
  int rc = rf__pgq_pump(c, deadline, &r);
  if (rc != 0) {
    return rc;
  }
  rc = rf__pgq_result_rc(r);
  bool have = rc == 0 && PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
  PQclear(r);
  if (rc != 0 || have) {
    return rc == RF__PGQ_RETRY ? RF_EBUSY : rc;
  }
  rc = rf__pgq_simple(c, RF__PGQ_SCHEMA, deadline);
  if (rc != 0) {
    rf__pgq_drop(c); /* the server rolls the transaction back */
  }
  return rc == RF__PGQ_RETRY ? RF_EBUSY : rc;
}

/* In a child after fork() the sockets are the parent's too: point them at
 * /dev/null before closing, so libpq's goodbye does not end the parent's
 * sessions. */
static void rf__pgq_detach(rf__pgq_t *s) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int i = 0; i < s->pool_size; i++) {
    if (s->slots[i].pg != NULL && PQsocket(s->slots[i].pg) >= 0 && devnull >= 0) {
      dup2(devnull, PQsocket(s->slots[i].pg));
    }
  }
  if (devnull >= 0) {
    close(devnull);
  }
}

static void rf__pgq_close(void *state) {
  rf__pgq_t *s = state;
  if (s->slots != NULL) {
    if (getpid() != s->pid) {
      rf__pgq_detach(s);
    }
    for (int i = 0; i < s->pool_size; i++) {
      rf__pgq_drop(&s->slots[i]);
    }
  }
  rf__free(s->slots);
  pthread_cond_destroy(&s->freed);
  pthread_mutex_destroy(&s->mu);
  rf__free(s->uri);
  rf__free(s);
}

/* target: the URL after "postgres:" / "postgresql:"; rebuilt whole. */
static int rf__pgq_open_scheme(rf_queue_t *q, const char *scheme, const char *target,
                               const rf__queue_cfg_t *cfg, void **state) {
  if (strncmp(target, "//", 2) != 0) {
    return RF_EINVAL;
  }
  rf__pgq_t *s = rf__calloc(1, sizeof(*s));
  if (s == NULL) {
    return RF_ENOMEM;
  }
  s->q = q;
  s->pid = getpid();
  s->pool_size = RF__PGQ_POOL_DEFAULT;
  s->timeout_ms = cfg->busy_timeout_ms;
  atomic_init(&s->claims, 0);
  if (pthread_mutex_init(&s->mu, NULL) != 0) {
    rf__free(s);
    return RF_ENOMEM;
  }
  if (rf__cond_init(&s->freed) != 0) {
    pthread_mutex_destroy(&s->mu);
    rf__free(s);
    return RF_ENOMEM;
  }
  size_t ulen = strlen(scheme) + 1 + strlen(target) + 1;
  char *url = rf__malloc(ulen);
  int rc = RF_ENOMEM;
  if (url != NULL) {
    snprintf(url, ulen, "%s:%s", scheme, target);
    rc = rf__pgq_parse(s, url);
    rf__free(url);
  }
  if (rc == 0) {
    s->slots = rf__calloc((size_t)s->pool_size, sizeof(*s->slots));
    rc = s->slots != NULL ? 0 : RF_ENOMEM;
  }
  if (rc == 0) {
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(s->uri, &perr);
    rc = o != NULL ? 0 : perr != NULL ? RF_EINVAL : RF_ENOMEM;
    PQconninfoFree(o);
    PQfreemem(perr);
  }
  if (rc != 0) {
    rf__pgq_close(s);
    return rc;
  }
  snprintf(s->tcp_user_timeout, sizeof(s->tcp_user_timeout), "%d", 10000);
  const char *kv[][2] = {
      {"application_name", "racefree-queue"},
      {"gssencmode", "disable"},
      {"keepalives", "1"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "3"},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", s->tcp_user_timeout},
      {"dbname", s->uri},
  };
  size_t nkv = sizeof(kv) / sizeof(kv[0]);
  for (size_t i = 0; i < nkv; i++) {
    s->keys[i] = kv[i][0];
    s->vals[i] = kv[i][1];
  }
  s->keys[nkv] = s->vals[nkv] = NULL;
  snprintf(s->session_sql, sizeof(s->session_sql),
           "SET statement_timeout = %d; SET idle_in_transaction_session_timeout = %d;"
           " SET bytea_output = hex",
           s->timeout_ms, 2 * s->timeout_ms + RF__PGQ_GRACE_MS);
  for (int i = s->pool_size - 1; i >= 0; i--) {
    s->slots[i].next = s->idle;
    s->idle = &s->slots[i];
  }
  rf__pgconn_t *c = s->idle;
  rc = rf__pgq_connect(s, c, rf__pgq_now() + s->timeout_ms + RF__PGQ_GRACE_MS);
  if (rc == 0) {
    rc = rf__pgq_schema(c);
  }
  if (rc != 0) {
    rf__pgq_close(s);
    return rc == RF_ENOMEM || rc == RF_EBUSY || rc == RF_EINVAL ? rc
           : rc == RF_EUNAVAIL                                  ? RF_EUNAVAIL
                                                                : RF_EIO;
  }
  *state = s;
  return 0;
}

static int rf__pgq_open(rf_queue_t *q, const char *target, const rf__queue_cfg_t *cfg,
                        void **state) {
  return rf__pgq_open_scheme(q, "postgres", target, cfg, state);
}

static int rf__pgq_open_long(rf_queue_t *q, const char *target, const rf__queue_cfg_t *cfg,
                             void **state) {
  return rf__pgq_open_scheme(q, "postgresql", target, cfg, state);
}

/* ------------------------------------------------------------ operations */

static int rf__pgq_add(void *state, const rf__job_new_t *in) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, in->id);
  if (in->len > 0) {
    rf__pgq_arg_bytes(&a, in->payload, in->len);
  } else {
    rf__pgq_arg_null(&a);
  }
  rf__pgq_arg_i64(&a, in->max_attempts);
  rf__pgq_arg_i64(&a, (int64_t)in->base_ms);
  rf__pgq_arg_i64(&a, (int64_t)in->cap_ms);
  rf__pgq_arg_text(&a, in->remove_on_complete ? "true" : "false");
  rf__pgq_arg_i64(&a, (int64_t)in->run_at_ms);
  rf__pgq_arg_i64(&a, (int64_t)in->now_ms);
  PGresult *r = NULL;
  int rc = rf__pgq_query(state, PQ_INSERT, &a, &r);
  if (rc == 0 && PQntuples(r) == 0) {
    rc = RF_EEXIST; /* ON CONFLICT DO NOTHING: the id exists */
  }
  PQclear(r);
  return rc;
}

static int rf__pgq_sweep(rf__pgq_t *s, uint64_t now) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_i64(&a, (int64_t)now);
  PGresult *r = NULL;
  int rc = rf__pgq_query(s, PQ_SWEEP, &a, &r);
  PQclear(r);
  return rc;
}

/* The claim committed but its copy could not be allocated: put the job
 * back, due at once with the attempt count it had (best effort). */
static void rf__pgq_untake(rf__pgq_t *s, const char *id, unsigned attempt, uint64_t now) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, id);
  rf__pgq_arg_i64(&a, attempt);
  rf__pgq_arg_i64(&a, (int64_t)now);
  PGresult *r = NULL;
  if (rf__pgq_query(s, PQ_UNTAKE, &a, &r) == 0) {
    PQclear(r);
  }
}

/* The row RETURNING by PQ_TAKE into a new job. */
static int rf__pgq_copy_job(const PGresult *r, uint64_t lease_until, rf_job_t **out) {
  const char *id = PQgetvalue(r, 0, 0);
  size_t idlen = (size_t)PQgetlength(r, 0, 0);
  const char *hex = PQgetvalue(r, 0, 3);
  size_t hexlen = PQgetisnull(r, 0, 3) ? 0 : (size_t)PQgetlength(r, 0, 3);
  if (idlen == 0 || idlen > RF_QUEUE_ID_MAX || (hexlen != 0 && hexlen < 2)) {
    return RF_EIO; /* not a row this module wrote */
  }
  size_t len = hexlen == 0 ? 0 : (hexlen - 2) / 2;
  rf_job_t *job = rf__job_alloc(len);
  if (job == NULL) {
    return RF_ENOMEM;
  }
  if (len > 0 && !rf__pgq_unhex(hex, hexlen, job->payload, len)) {
    rf_job_free(job);
    return RF_EIO;
  }
  memcpy(job->id, id, idlen);
  job->id[idlen] = '\0';
  job->attempt = (unsigned)rf__pgq_i64(r, 0, 1);
  job->max_attempts = (unsigned)rf__pgq_i64(r, 0, 2);
  job->lease_until_ms = lease_until;
  rf__queue_copy_error(job->last_error, PQgetisnull(r, 0, 4) ? NULL : PQgetvalue(r, 0, 4));
  *out = job;
  return 0;
}

static int rf__pgq_claim(void *state, const char *worker_id, uint64_t now, uint64_t lease_ms,
                         rf_job_t **out) {
  rf__pgq_t *s = state;
  uint64_t n = atomic_fetch_add_explicit(&s->claims, 1, memory_order_relaxed) + 1;
  if (n % RF__PGQ_SWEEP_EVERY == 0) {
    int rc = rf__pgq_sweep(s, now);
    if (rc != 0) {
      return rc;
    }
  }
  /* Race tests park a claimer here: the pick and the take are one
   * statement, whose row lock (SKIP LOCKED) and re-check make a second
   * claimer take another job or none. */
  RF_HOOK("queue.claim.before_take");
  rf__pgq_args_t a = {0};
  rf__pgq_arg_i64(&a, (int64_t)now);
  rf__pgq_arg_i64(&a, (int64_t)(now + lease_ms));
  rf__pgq_arg_text(&a, worker_id);
  PGresult *r = NULL;
  int rc = rf__pgq_query(s, PQ_TAKE, &a, &r);
  if (rc != 0) {
    return rc;
  }
  if (PQntuples(r) == 1) {
    rc = rf__pgq_copy_job(r, now + lease_ms, out);
    if (rc == RF_ENOMEM) {
      char id[RF_QUEUE_ID_MAX + 1];
      rf__queue_copy_error(id, PQgetvalue(r, 0, 0));
      rf__pgq_untake(s, id, (unsigned)rf__pgq_i64(r, 0, 1), now);
    }
    PQclear(r);
    return rc;
  }
  PQclear(r);
  rc = rf__pgq_sweep(s, now);
  return rc != 0 ? rc : RF_ENOENT;
}

static int rf__pgq_fenced(rf__pgq_t *s, int which, rf__pgq_args_t *a) {
  PGresult *r = NULL;
  int rc = rf__pgq_query(s, which, a, &r);
  if (rc == 0) {
    rc = rf__pgq_fenced_rc(r);
  }
  PQclear(r);
  return rc;
}

static int rf__pgq_complete(void *state, const char *id, unsigned attempt, uint64_t now) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, id);
  rf__pgq_arg_i64(&a, attempt);
  rf__pgq_arg_i64(&a, (int64_t)now);
  return rf__pgq_fenced(state, PQ_COMPLETE, &a);
}

static int rf__pgq_extend(void *state, const char *id, unsigned attempt, uint64_t lease_until,
                          uint64_t now) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, id);
  rf__pgq_arg_i64(&a, attempt);
  rf__pgq_arg_i64(&a, (int64_t)lease_until);
  rf__pgq_arg_i64(&a, (int64_t)now);
  return rf__pgq_fenced(state, PQ_EXTEND, &a);
}

static int rf__pgq_fail(void *state, const char *id, unsigned attempt, const char *error,
                        uint64_t now) {
  rf__pgq_t *s = state;
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, id);
  rf__pgq_arg_i64(&a, attempt);
  PGresult *r = NULL;
  int rc = rf__pgq_query(s, PQ_FAIL_READ, &a, &r);
  if (rc != 0) {
    return rc;
  }
  if (PQntuples(r) != 1 || PQgetvalue(r, 0, 4)[0] != 't') {
    rc = PQntuples(r) != 1 ? RF_ENOENT : RF_ESTALE;
    PQclear(r);
    return rc;
  }
  unsigned attempts = (unsigned)rf__pgq_i64(r, 0, 0);
  unsigned max_attempts = (unsigned)rf__pgq_i64(r, 0, 1);
  uint64_t base = (uint64_t)rf__pgq_i64(r, 0, 2);
  uint64_t cap = (uint64_t)rf__pgq_i64(r, 0, 3);
  PQclear(r);
  bool retry = attempts < max_attempts;
  rf__pgq_args_t u = {0};
  rf__pgq_arg_text(&u, id);
  rf__pgq_arg_i64(&u, attempt);
  rf__pgq_arg_text(&u, retry ? "waiting" : "failed");
  if (retry) {
    rf__pgq_arg_i64(&u, (int64_t)(now + rf__queue_backoff_ms(s->q, attempts, base, cap)));
  } else {
    rf__pgq_arg_null(&u);
  }
  rf__pgq_arg_text(&u, error);
  rf__pgq_arg_i64(&u, (int64_t)now);
  return rf__pgq_fenced(s, PQ_FAIL_SET, &u);
}

static rf_job_status_t rf__pgq_status(const char *t) {
  switch (t[0]) {
  case 'w':
    return RF_JOB_WAITING;
  case 'a':
    return RF_JOB_ACTIVE;
  case 'c':
    return RF_JOB_COMPLETED;
  default:
    return RF_JOB_FAILED;
  }
}

static int rf__pgq_get_info(void *state, const char *id, rf_job_info_t *out) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_text(&a, id);
  PGresult *r = NULL;
  int rc = rf__pgq_query(state, PQ_GET, &a, &r);
  if (rc != 0) {
    return rc;
  }
  if (PQntuples(r) == 1) {
    memset(out, 0, sizeof(*out));
    out->status = rf__pgq_status(PQgetvalue(r, 0, 0));
    out->attempts = (unsigned)rf__pgq_i64(r, 0, 1);
    out->max_attempts = (unsigned)rf__pgq_i64(r, 0, 2);
    out->run_at_ms = (uint64_t)rf__pgq_i64(r, 0, 3);
    out->lease_until_ms = (uint64_t)rf__pgq_i64(r, 0, 4); /* NULL reads 0 */
    out->created_ms = (uint64_t)rf__pgq_i64(r, 0, 5);
    out->updated_ms = (uint64_t)rf__pgq_i64(r, 0, 6);
    out->payload_len = (size_t)rf__pgq_i64(r, 0, 7);
    out->removed = out->status == RF_JOB_COMPLETED && PQgetvalue(r, 0, 8)[0] == 't';
    rf__queue_copy_error(out->last_error, PQgetisnull(r, 0, 9) ? NULL : PQgetvalue(r, 0, 9));
  } else {
    rc = RF_ENOENT;
  }
  PQclear(r);
  return rc;
}

static int rf__pgq_counts(void *state, rf_queue_counts_t *out) {
  rf__pgq_args_t a = {0};
  PGresult *r = NULL;
  int rc = rf__pgq_query(state, PQ_COUNTS, &a, &r);
  if (rc != 0) {
    return rc;
  }
  rf_queue_counts_t n;
  memset(&n, 0, sizeof(n));
  for (int i = 0; i < PQntuples(r); i++) {
    n.n[rf__pgq_status(PQgetvalue(r, i, 0))] += (uint64_t)rf__pgq_i64(r, i, 1);
  }
  PQclear(r);
  *out = n;
  return 0;
}

static int rf__pgq_purge(void *state, uint64_t before_ms, uint64_t *purged) {
  rf__pgq_args_t a = {0};
  rf__pgq_arg_i64(&a, (int64_t)before_ms);
  PGresult *r = NULL;
  int rc = rf__pgq_query(state, PQ_PURGE, &a, &r);
  if (rc == 0) {
    *purged = strtoull(PQcmdTuples(r), NULL, 10);
  }
  PQclear(r);
  return rc;
}

const rf__queue_backend_t rf__queue_pg_backend = {
    .scheme = "postgres",
    .open = rf__pgq_open,
    .close = rf__pgq_close,
    .add = rf__pgq_add,
    .claim = rf__pgq_claim,
    .complete = rf__pgq_complete,
    .fail = rf__pgq_fail,
    .extend = rf__pgq_extend,
    .get = rf__pgq_get_info,
    .counts = rf__pgq_counts,
    .purge = rf__pgq_purge,
};

/* The same backend under the other scheme libpq accepts. */
const rf__queue_backend_t rf__queue_pgsql_backend = {
    .scheme = "postgresql",
    .open = rf__pgq_open_long,
    .close = rf__pgq_close,
    .add = rf__pgq_add,
    .claim = rf__pgq_claim,
    .complete = rf__pgq_complete,
    .fail = rf__pgq_fail,
    .extend = rf__pgq_extend,
    .get = rf__pgq_get_info,
    .counts = rf__pgq_counts,
    .purge = rf__pgq_purge,
};
