/* postgres.c - the PostgreSQL backend of the store (see store.h and
 * docs/postgres.md), over libpq.
 *
 * URL: postgres://[user[:password]@]host[:port]/dbname[?param=value&...]
 * (or postgresql://). Two parameters are the store's own and are removed
 * before the rest goes to libpq:
 *   pool=N        connections in the pool, 1..256 (default 8)
 *   timeout_ms=N  bound of every wait, 100..600000 (default 5000): the
 *                 server's statement_timeout, the wait for a free pooled
 *                 connection, and (plus a 1 s grace) the client-side wait
 *                 for any answer of the server, connecting included
 * Every other parameter is libpq's (sslmode, options, application_name,
 * keepalives_idle, ...); the store supplies defaults that the URL may
 * override: application_name=racefree, gssencmode=disable, TCP keepalives
 * (idle 10 s, interval 3 s, count 3) and tcp_user_timeout=10 s.
 *
 * Connections. The pool has `pool` slots. A call takes an idle slot (or
 * waits, at most timeout_ms, for one: RF_EBUSY), connects the slot if it
 * has no live connection, runs its statement and gives the slot back.
 * Statements are prepared once per connection, on first use. Slots are
 * connected lazily, so the number of server connections follows
 * concurrency up to `pool`; the first one is opened (and migrates) in
 * rf_store_open.
 *
 * Atomicity. Every operation is ONE statement in autocommit mode, that is
 * one transaction: the unique index decides sign-ups, the purchase is the
 * conditional UPDATE ... WHERE stock >= qty RETURNING stock, the wallet
 * CAS is the version-checked UPDATE. Where a caller must tell "no row"
 * from "condition failed", the same statement also answers EXISTS over its
 * snapshot (a data-modifying CTE), so there is no second round trip and no
 * window between the two. A statement either commits whole or not at all:
 * a connection lost mid-statement is rolled back by the server.
 *
 * Errors are mapped by SQLSTATE (rf__pg_map_sqlstate): 23505 -> RF_EEXIST;
 * 40001/40P01 (serialization failure, deadlock) -> the statement is
 * retried, at most PG_TRIES times with jittered backoff, then RF_EBUSY;
 * 57014/55P03 (statement or lock timeout) -> RF_EBUSY; 08xxx, 57P0x,
 * 53300 and a connection libpq reports as bad -> RF_EUNAVAIL.
 *
 * Outages. Nothing ever blocks unboundedly: every round trip runs through
 * libpq's asynchronous API and poll() with a deadline, connecting too
 * (PQconnectStartParams/PQconnectPoll). A connection that fails, times out
 * or is found dead is closed and its slot reconnects on next use; before a
 * pooled connection is reused a non-blocking poll checks whether the server
 * closed it meanwhile (a restart sends every idle session a FATAL message
 * and an EOF), so after a restart the first call does not fail on a dead
 * socket. A call that lost its connection is retried once on a new one when
 * the statement cannot have reached the server or only reads; a write whose
 * fate is unknown (the connection died after sending) returns RF_EUNAVAIL.
 * While the server is down, calls fail with RF_EUNAVAIL as fast as the
 * connection attempt fails (at once for a refused connection; at most
 * timeout_ms + 1 s for a silent host).
 *
 * Fork: connections must not cross fork(). The store remembers the pid that
 * opened it and answers RF_ESTATE in any other process; rf_store_close in a
 * child closes the inherited sockets without telling the server (which
 * would end the parent's sessions).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "backend.h"
#include "store.h"

#define POOL_DEFAULT       8
#define POOL_LIMIT         256
#define TIMEOUT_DEFAULT_MS 5000
#define TIMEOUT_MIN_MS     100
#define TIMEOUT_MAX_MS     600000
#define GRACE_MS           1000 /* client wait = statement_timeout + grace */
#define PG_TRIES           8    /* attempts of a statement hitting 40001/40P01 */
#define RETRY              RF__PG_RETRY

/* Every statement the backend runs, prepared once per connection. */
enum {
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
  ST_FENCE_RAISE,
  ST_CHARGE_FENCED,
  ST_CHARGE_INSERT,
  ST_CHARGE_FIRST,
  ST_CHARGE_STATS,
  ST_SEND_ONCE,
  ST_SEND_ANY,
  ST_SEND_COUNT,
  ST__COUNT
};

_Static_assert(ST__COUNT <= 64, "prepared-statement mask is 64 bits");

static const char *const SQL[ST__COUNT] = {
    [ST_PING] = "SELECT 1",
    [ST_USER_INSERT] = "INSERT INTO users(email) VALUES ($1::text) RETURNING id",
    [ST_USER_GET] = "SELECT email FROM users WHERE id = $1::bigint",
    [ST_UU_FIND] = "SELECT 1 FROM users_unchecked WHERE email = $1::text LIMIT 1",
    [ST_UU_INSERT] = "INSERT INTO users_unchecked(email) VALUES ($1::text) RETURNING id",
    [ST_UU_GET] = "SELECT email FROM users_unchecked WHERE id = $1::bigint",
    [ST_ITEM_PUT] = "INSERT INTO items(id, stock) VALUES ($1::text, $2::bigint)"
                    " ON CONFLICT (id) DO UPDATE SET stock = excluded.stock",
    [ST_ITEM_GET] = "SELECT stock FROM items WHERE id = $1::text",
    /* The conditional UPDATE decides; EXISTS over the statement's snapshot
     * tells a missing item (NULL, false) from an out-of-stock one (NULL,
     * true) in the same statement. */
    [ST_ITEM_TAKE] = "WITH taken AS (UPDATE items SET stock = stock - $1::bigint"
                     " WHERE id = $2::text AND stock >= $1::bigint RETURNING stock)"
                     " SELECT (SELECT stock FROM taken),"
                     " EXISTS (SELECT 1 FROM items WHERE id = $2::text)",
    [ST_ITEM_SET] = "UPDATE items SET stock = $2::bigint WHERE id = $1::text RETURNING stock",
    [ST_WALLET_PUT] =
        "INSERT INTO wallets(user_id, balance, version) VALUES ($1::text, $2::bigint, 1)"
        " ON CONFLICT (user_id) DO UPDATE SET balance = excluded.balance,"
        " version = wallets.version + 1 RETURNING version",
    [ST_WALLET_GET] = "SELECT balance, version FROM wallets WHERE user_id = $1::text",
    /* Version-checked write, and the same EXISTS trick as the purchase. */
    [ST_WALLET_CAS] = "WITH w AS (UPDATE wallets SET balance = $2::bigint, version = version + 1"
                      " WHERE user_id = $1::text AND version = $3::bigint RETURNING version)"
                      " SELECT (SELECT version FROM w),"
                      " EXISTS (SELECT 1 FROM wallets WHERE user_id = $1::text)",
    [ST_WALLET_SET] = "UPDATE wallets SET balance = $2::bigint, version = version + 1"
                      " WHERE user_id = $1::text RETURNING version",
    /* The idempotency claim: the primary key decides who creates the
     * record; a loser waits for the winner's commit and gets no row. */
    [ST_PAY_INSERT] = "INSERT INTO payments(payment_id, amount, fingerprint, state, token,"
                      " lease_owner, lease_until_ms, created_ms, updated_ms)"
                      " VALUES ($1::text, $2::bigint, $3::text, 0, 1, $4::text, $5::bigint,"
                      " $6::bigint, $6::bigint)"
                      " ON CONFLICT (payment_id) DO NOTHING RETURNING token",
    [ST_PAY_GET] = "SELECT amount, fingerprint, state, token, lease_until_ms, http_status,"
                   " charge_id, body FROM payments WHERE payment_id = $1::text",
    /* Takeover of an expired lease: compare-and-set on (token, expired).
     * Of concurrent recoverers the first updates the row; the others wait
     * for its lock, re-check the WHERE on the new version and match
     * nothing. */
    [ST_PAY_TAKEOVER] = "UPDATE payments SET token = token + 1, lease_owner = $2::text,"
                        " lease_until_ms = $3::bigint, updated_ms = $4::bigint"
                        " WHERE payment_id = $1::text AND token = $5::bigint AND state = 0"
                        " AND lease_until_ms <= $4::bigint RETURNING token",
    /* Fenced finish; EXISTS tells a stale token from a missing record. */
    [ST_PAY_FINISH] = "WITH f AS (UPDATE payments SET state = $3::integer,"
                      " http_status = $4::integer, charge_id = $5::text, body = $6::text,"
                      " lease_owner = NULL, lease_until_ms = 0, updated_ms = $7::bigint"
                      " WHERE payment_id = $1::text AND token = $2::bigint AND state = 0"
                      " RETURNING 1)"
                      " SELECT (SELECT count(*) FROM f),"
                      " EXISTS (SELECT 1 FROM payments WHERE payment_id = $1::text)",
    [ST_PAY_PUT] = "INSERT INTO payments(payment_id, amount, fingerprint, state, token,"
                   " http_status, charge_id, body, created_ms, updated_ms)"
                   " VALUES ($1::text, $2::bigint, 'unchecked', $3::integer, 0, $4::integer,"
                   " $5::text, $6::text, $7::bigint, $7::bigint)"
                   " ON CONFLICT (payment_id) DO UPDATE SET amount = excluded.amount,"
                   " state = excluded.state, http_status = excluded.http_status,"
                   " charge_id = excluded.charge_id, body = excluded.body,"
                   " updated_ms = excluded.updated_ms",
    /* A takeover shows its token to the ledger: the fence only rises. */
    [ST_FENCE_RAISE] = "INSERT INTO charge_fences(payment_id, token) VALUES ($1::text, $2::bigint)"
                       " ON CONFLICT (payment_id) DO UPDATE"
                       " SET token = greatest(charge_fences.token, excluded.token)",
    /* The fenced charge, one statement: raise the fence to our token
     * unless it is above it already (then f is empty and nothing is
     * inserted: RF_ESTALE). The fence row stays locked until the commit,
     * so a concurrent holder with a larger token waits, then wins; one
     * with a smaller token waits, then finds the fence above it. */
    [ST_CHARGE_FENCED] = "WITH f AS (INSERT INTO charge_fences(payment_id, token)"
                         " VALUES ($1::text, $4::bigint) ON CONFLICT (payment_id) DO UPDATE"
                         " SET token = excluded.token WHERE charge_fences.token <= excluded.token"
                         " RETURNING token)"
                         " INSERT INTO charges(payment_id, amount, declined, token, created_ms)"
                         " SELECT $1::text, $2::bigint, $3::integer, $4::bigint, $5::bigint"
                         " FROM f RETURNING seq",
    [ST_CHARGE_INSERT] = "INSERT INTO charges(payment_id, amount, declined, token, created_ms)"
                         " VALUES ($1::text, $2::bigint, $3::integer, 0, $4::bigint) RETURNING seq",
    [ST_CHARGE_FIRST] = "SELECT seq, amount, declined, token FROM charges"
                        " WHERE payment_id = $1::text ORDER BY seq LIMIT 1",
    [ST_CHARGE_STATS] = "SELECT count(*),"
                        " coalesce(sum(CASE WHEN declined = 0 THEN amount ELSE 0 END), 0)"
                        " FROM charges WHERE payment_id = $1::text",
    /* One send per job id: the partial unique index sends_once decides
     * among concurrent senders; a send by the unchecked twin (attempt 0)
     * counts as a send too. */
    [ST_SEND_ONCE] = "INSERT INTO sends(job_id, attempt, to_addr, sent_ms)"
                     " SELECT $1::text, $2::bigint, $3::text, $4::bigint"
                     " WHERE NOT EXISTS (SELECT 1 FROM sends WHERE job_id = $1::text"
                     " AND attempt = 0)"
                     " ON CONFLICT (job_id) WHERE attempt > 0 DO NOTHING RETURNING seq",
    [ST_SEND_ANY] = "INSERT INTO sends(job_id, attempt, to_addr, sent_ms)"
                    " VALUES ($1::text, 0, $2::text, $3::bigint)",
    [ST_SEND_COUNT] = "SELECT count(*) FROM sends WHERE to_addr = $1::text",
};

/* Whether a statement only reads: a read that lost its connection may be
 * re-sent on a new one whatever happened to the first attempt. */
static bool read_only(int st) {
  return st == ST_PING || st == ST_USER_GET || st == ST_UU_FIND || st == ST_UU_GET ||
         st == ST_ITEM_GET || st == ST_WALLET_GET || st == ST_PAY_GET || st == ST_CHARGE_FIRST ||
         st == ST_CHARGE_STATS || st == ST_SEND_COUNT;
}

typedef struct pconn {
  PGconn *pg;        /* NULL: not connected (connects on next use) */
  uint64_t prepared; /* bit i: statement i is prepared on pg */
  bool fresh;        /* connected during the current call */
  struct pconn *next;
} pconn_t;

#define NPARAMS 9 /* connection keywords: defaults, then dbname (the URL) */

typedef struct pg_store {
  rf_store_t base;
  pid_t pid;
  int pool_size;
  int timeout_ms;
  char *uri; /* the URL without the store's own parameters */
  char tcp_user_timeout[16];
  const char *keys[NPARAMS + 1];
  const char *vals[NPARAMS + 1];
  char session_sql[160]; /* run once on every new connection */
  pthread_mutex_t mu;    /* guards idle */
  pthread_cond_t freed;  /* a slot was returned (CLOCK_MONOTONIC) */
  pconn_t *idle;         /* stack of slots not in use */
  pconn_t *slots;        /* pool_size slots */
  /* Statistics (relaxed: independent event counts, read by tests). */
  atomic_uint_fast64_t retries, connects, dropped;
} pg_store_t;

/* ------------------------------------------------------------- helpers */

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* Copy libpq's message (ends with a newline) into err, one line. */
static void set_err(char *err, size_t errlen, const char *what, const char *pgmsg) {
  if (!err || errlen == 0)
    return;
  snprintf(err, errlen, "store: %s%s%s", what, pgmsg ? ": " : "", pgmsg ? pgmsg : "");
  for (char *p = err; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = (p[1] == '\0') ? '\0' : ' ';
}

int rf__pg_map_sqlstate(const char *sqlstate) {
  if (!sqlstate || strlen(sqlstate) != 5)
    return RF_EIO;
  if (strcmp(sqlstate, "23505") == 0)
    return RF_EEXIST; /* unique_violation */
  if (strcmp(sqlstate, "40001") == 0 || strcmp(sqlstate, "40P01") == 0)
    return RETRY; /* serialization_failure, deadlock_detected */
  if (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "55P03") == 0)
    return RF_EBUSY; /* query_canceled (statement_timeout), lock_not_available */
  if (strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P0", 4) == 0 ||
      strcmp(sqlstate, "53300") == 0)
    return RF_EUNAVAIL; /* connection exception, shutdown, too many connections */
  if (strncmp(sqlstate, "23", 2) == 0 || strncmp(sqlstate, "22", 2) == 0)
    return RF_EINVAL; /* CHECK, NOT NULL, out-of-range value: the schema refuses it */
  return RF_EIO;
}

/* Jittered exponential backoff before retry number `attempt` (>= 1):
 * uniform in [0, min(64, 2^attempt)] ms. */
static void backoff(int attempt) {
  static atomic_uint seq;
  unsigned x = atomic_fetch_add_explicit(&seq, 0x9E3779B9u, memory_order_relaxed) ^
               (unsigned)now_ms() * 2654435761u;
  x ^= x >> 15;
  x *= 0x2c1b3c6du;
  x ^= x >> 12;
  long cap_us = 1000L << (attempt < 6 ? attempt : 6);
  struct timespec ts = {0, (long)(x % (unsigned)cap_us) * 1000L};
  nanosleep(&ts, NULL);
}

/* Wait until fd is ready for `events` or the deadline passes. Returns the
 * revents (> 0), 0 on timeout, -1 on error. */
static int wait_fd(int fd, short events, int64_t deadline) {
  if (fd < 0)
    return -1;
  for (;;) {
    int64_t left = deadline - now_ms();
    if (left < 0)
      left = 0;
    struct pollfd p = {.fd = fd, .events = events};
    int n = poll(&p, 1, (int)left);
    if (n > 0)
      return p.revents;
    if (n == 0)
      return 0;
    if (errno != EINTR)
      return -1;
  }
}

/* Notices (and the FATAL a restarting server sends to idle sessions) are
 * not for stderr: the caller sees the errors that matter as codes. */
static void quiet_notices(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

/* ---------------------------------------------------------- connections */

static void conn_drop(pg_store_t *s, pconn_t *c) {
  if (c->pg) {
    PQfinish(c->pg);
    atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
  }
  c->pg = NULL;
  c->prepared = 0;
}

static bool is_error(const PGresult *r) {
  ExecStatusType st = PQresultStatus(r);
  return st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
}

/* Send what libpq has queued and collect the results of the request, with
 * the connection in non-blocking mode. On success *out is the first error
 * result if there was one, else the last result. Returns 0, or RF_EUNAVAIL
 * when the connection failed or the deadline passed (the connection is
 * then closed: its state is unknown). */
static int pump(pg_store_t *s, pconn_t *c, int64_t deadline, PGresult **out) {
  PGconn *pg = c->pg;
  int fd = PQsocket(pg);
  int f;
  while ((f = PQflush(pg)) == 1) {
    int ev = wait_fd(fd, POLLOUT | POLLIN, deadline);
    if (ev <= 0 || ((ev & POLLIN) && !PQconsumeInput(pg)))
      goto lost;
  }
  if (f < 0)
    goto lost;
  PGresult *keep = NULL;
  for (;;) {
    while (PQisBusy(pg)) {
      int ev = wait_fd(fd, POLLIN, deadline);
      if (ev <= 0 || !PQconsumeInput(pg)) {
        PQclear(keep);
        goto lost;
      }
    }
    PGresult *r = PQgetResult(pg);
    if (!r)
      break;
    if (keep && is_error(keep)) {
      PQclear(r); /* the first error is the one that explains */
    } else {
      PQclear(keep);
      keep = r;
    }
  }
  if (!keep || PQstatus(pg) == CONNECTION_BAD) {
    PQclear(keep);
    goto lost;
  }
  *out = keep;
  return 0;
lost:
  conn_drop(s, c);
  return RF_EUNAVAIL;
}

/* Map a finished result: 0, RETRY or RF_E... */
static int result_rc(const PGresult *r) {
  switch (PQresultStatus(r)) {
  case PGRES_COMMAND_OK:
  case PGRES_TUPLES_OK:
    return 0;
  case PGRES_FATAL_ERROR:
  case PGRES_NONFATAL_ERROR:
    return rf__pg_map_sqlstate(PQresultErrorField(r, PG_DIAG_SQLSTATE));
  default:
    return RF_EIO;
  }
}

/* Run a parameterless (possibly multi-statement) command: simple query
 * protocol. 0, RETRY or RF_E...; on an error the message goes to err. */
static int exec_simple(pg_store_t *s, pconn_t *c, const char *sql, int64_t deadline, char *err,
                       size_t errlen) {
  if (!PQsendQuery(c->pg, sql)) {
    set_err(err, errlen, "cannot send to PostgreSQL", PQerrorMessage(c->pg));
    conn_drop(s, c);
    return RF_EUNAVAIL;
  }
  PGresult *r = NULL;
  int rc = pump(s, c, deadline, &r);
  if (rc != 0) {
    set_err(err, errlen, "PostgreSQL connection lost or timed out", NULL);
    return rc;
  }
  rc = result_rc(r);
  if (rc != 0)
    set_err(err, errlen, "PostgreSQL", PQresultErrorMessage(r));
  PQclear(r);
  return rc;
}

/* Connect slot c, bounded by the deadline, and prepare the session. */
static int conn_connect(pg_store_t *s, pconn_t *c, int64_t deadline, char *err, size_t errlen) {
  c->prepared = 0;
  c->pg = PQconnectStartParams(s->keys, s->vals, 1);
  if (!c->pg)
    return RF_ENOMEM;
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (PQstatus(c->pg) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
         ps != PGRES_POLLING_FAILED) {
    int ev = wait_fd(PQsocket(c->pg), ps == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
    if (ev == 0) {
      set_err(err, errlen, "cannot connect to PostgreSQL: timed out", NULL);
      PQfinish(c->pg);
      c->pg = NULL;
      return RF_EUNAVAIL;
    }
    ps = PQconnectPoll(c->pg);
  }
  if (PQstatus(c->pg) != CONNECTION_OK) {
    set_err(err, errlen, "cannot connect to PostgreSQL", PQerrorMessage(c->pg));
    PQfinish(c->pg);
    c->pg = NULL;
    return RF_EUNAVAIL;
  }
  PQsetNoticeProcessor(c->pg, quiet_notices, NULL);
  if (PQsetnonblocking(c->pg, 1) != 0) {
    set_err(err, errlen, "cannot use PostgreSQL connection", PQerrorMessage(c->pg));
    conn_drop(s, c);
    return RF_EUNAVAIL;
  }
  atomic_fetch_add_explicit(&s->connects, 1, memory_order_relaxed);
  int rc = exec_simple(s, c, s->session_sql, deadline, err, errlen);
  if (rc != 0) {
    conn_drop(s, c);
    return rc == RETRY ? RF_EBUSY : rc == RF_EUNAVAIL ? RF_EUNAVAIL : RF_EIO;
  }
  c->fresh = true;
  return 0;
}

/* Whether an idle connection is still usable: connected, outside any
 * transaction, and not closed by the server meanwhile (a readable socket
 * on an idle session means a FATAL message and/or EOF). */
static bool conn_alive(pconn_t *c) {
  if (!c->pg || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    return false;
  struct pollfd p = {.fd = PQsocket(c->pg), .events = POLLIN};
  if (poll(&p, 1, 0) > 0) {
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) != CONNECTION_OK)
      return false;
    PGnotify *n;
    while ((n = PQnotifies(c->pg)) != NULL)
      PQfreemem(n);
  }
  return true;
}

/* Take a slot for the calling thread, connected. Waits at most timeout_ms
 * for a free slot (RF_EBUSY) and connecting is bounded too (RF_EUNAVAIL). */
static int conn_get(pg_store_t *s, pconn_t **out) {
  if (rf__store_pid() != s->pid)
    return RF_ESTATE;
  rf__store_loop_note(); /* every call here makes round trips */
  int64_t deadline = now_ms() + s->timeout_ms;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  ts.tv_sec += s->timeout_ms / 1000;
  ts.tv_nsec += (long)(s->timeout_ms % 1000) * 1000000L;
  if (ts.tv_nsec >= 1000000000L) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000L;
  }
  pthread_mutex_lock(&s->mu);
  while (!s->idle) {
    if (pthread_cond_timedwait(&s->freed, &s->mu, &ts) == ETIMEDOUT && !s->idle) {
      pthread_mutex_unlock(&s->mu);
      return RF_EBUSY;
    }
  }
  pconn_t *c = s->idle;
  s->idle = c->next;
  pthread_mutex_unlock(&s->mu);
  c->fresh = false;
  if (!conn_alive(c))
    conn_drop(s, c);
  int rc = 0;
  if (!c->pg)
    rc = conn_connect(s, c, deadline + GRACE_MS, NULL, 0);
  if (rc != 0) {
    pthread_mutex_lock(&s->mu);
    c->next = s->idle;
    s->idle = c;
    pthread_cond_signal(&s->freed);
    pthread_mutex_unlock(&s->mu);
    return rc;
  }
  *out = c;
  return 0;
}

/* Give a slot back; a connection left inside a transaction is closed (its
 * state is unknown; the server rolls the transaction back). */
static void conn_put(pg_store_t *s, pconn_t *c) {
  if (c->pg && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
    conn_drop(s, c);
  pthread_mutex_lock(&s->mu);
  c->next = s->idle;
  s->idle = c;
  pthread_cond_signal(&s->freed);
  pthread_mutex_unlock(&s->mu);
}

/* Run prepared statement `st` on c with text parameters. On success *out
 * is the result (caller clears). *sent: the statement itself may have
 * reached the server (preparing it changes no data). */
static int exec_prepared(pg_store_t *s, pconn_t *c, int st, int n, const char *const *vals,
                         PGresult **out, bool *sent) {
  char name[16];
  snprintf(name, sizeof name, "rf%d", st);
  int64_t deadline = now_ms() + s->timeout_ms + GRACE_MS;
  PGresult *r = NULL;
  int rc;
  *sent = false;
  if (!(c->prepared & (1ull << st))) {
    if (!PQsendPrepare(c->pg, name, SQL[st], 0, NULL)) {
      conn_drop(s, c);
      return RF_EUNAVAIL;
    }
    rc = pump(s, c, deadline, &r);
    if (rc != 0)
      return rc;
    rc = result_rc(r);
    PQclear(r);
    if (rc != 0)
      return rc;
    c->prepared |= 1ull << st;
  }
  if (!PQsendQueryPrepared(c->pg, name, n, vals, NULL, NULL, 0)) {
    conn_drop(s, c);
    return RF_EUNAVAIL;
  }
  *sent = true;
  rc = pump(s, c, deadline, &r);
  if (rc != 0)
    return rc;
  rc = result_rc(r);
  if (rc != 0) {
    PQclear(r);
    if (rc == RF_EUNAVAIL)
      conn_drop(s, c); /* 08xxx, 57P0x: the session is over */
    return rc;
  }
  *out = r;
  return 0;
}

/* One operation = one statement: take a connection, run, give it back,
 * retrying serialization failures and deadlocks (bounded, with backoff)
 * and a connection found dead (once, when the statement cannot have been
 * applied or only reads). On success *out is the result. */
static int query(pg_store_t *s, int st, int n, const char *const *vals, PGresult **out) {
  bool reconnected = false;
  for (int attempt = 1;; attempt++) {
    pconn_t *c = NULL;
    int rc = conn_get(s, &c);
    if (rc != 0)
      return rc;
    bool fresh = c->fresh, sent = false;
    PGresult *r = NULL;
    rc = exec_prepared(s, c, st, n, vals, &r, &sent);
    conn_put(s, c);
    if (rc == 0) {
      *out = r;
      return 0;
    }
    if (rc == RETRY) {
      if (attempt >= PG_TRIES)
        return RF_EBUSY;
      atomic_fetch_add_explicit(&s->retries, 1, memory_order_relaxed);
      backoff(attempt);
      continue;
    }
    if (rc == RF_EUNAVAIL && !fresh && !reconnected && (!sent || read_only(st))) {
      reconnected = true; /* a pooled connection died while idle: once more */
      continue;
    }
    return rc;
  }
}

/* A transaction: fn runs its statements on c (with tx_exec) between BEGIN
 * and COMMIT. fn returns 0 to commit, anything else to roll back (a
 * logical outcome such as RF_ESTALE, or an error). The whole transaction
 * is run again after a serialization failure or deadlock (fn must start
 * from scratch each time), at most PG_TRIES times; once more on a new
 * connection when BEGIN found a pooled connection dead. */
typedef int (*tx_fn)(pg_store_t *s, pconn_t *c, void *arg);

static int tx_control(pg_store_t *s, pconn_t *c, const char *sql) {
  return exec_simple(s, c, sql, now_ms() + s->timeout_ms + GRACE_MS, NULL, 0);
}

static int run_tx(pg_store_t *s, tx_fn fn, void *arg) {
  bool reconnected = false;
  for (int attempt = 1;; attempt++) {
    pconn_t *c = NULL;
    int rc = conn_get(s, &c);
    if (rc != 0)
      return rc;
    bool fresh = c->fresh;
    rc = tx_control(s, c, "BEGIN");
    if (rc == RF_EUNAVAIL && !fresh && !reconnected) {
      conn_put(s, c);
      reconnected = true; /* nothing was sent but BEGIN: once more */
      continue;
    }
    if (rc == 0) {
      rc = fn(s, c, arg);
      if (rc == 0)
        rc = tx_control(s, c, "COMMIT"); /* may fail with 40001 under SERIALIZABLE */
      else if (c->pg && PQstatus(c->pg) == CONNECTION_OK)
        (void)tx_control(s, c, "ROLLBACK");
    }
    conn_put(s, c); /* closes the connection if it is still inside a transaction */
    if (rc != RETRY)
      return rc;
    if (attempt >= PG_TRIES)
      return RF_EBUSY;
    atomic_fetch_add_explicit(&s->retries, 1, memory_order_relaxed);
    backoff(attempt);
  }
}

/* A statement inside run_tx's transaction: the result or an error. */
static int tx_exec(pg_store_t *s, pconn_t *c, int st, int n, const char *const *vals,
                   PGresult **out) {
  bool sent;
  return exec_prepared(s, c, st, n, vals, out, &sent);
}

/* Integer value of column col of row 0; *isnull when SQL NULL. */
static int64_t col_i64(const PGresult *r, int col, bool *isnull) {
  if (PQgetisnull(r, 0, col)) {
    if (isnull)
      *isnull = true;
    return 0;
  }
  if (isnull)
    *isnull = false;
  return strtoll(PQgetvalue(r, 0, col), NULL, 10);
}

/* Whether column col of row 0 is the boolean true ("t" in text format). */
static bool col_bool(const PGresult *r, int col) {
  return !PQgetisnull(r, 0, col) && PQgetvalue(r, 0, col)[0] == 't';
}

/* --------------------------------------------------------- URL parsing */

/* Parse a decimal integer in [lo, hi] from [p, end). */
static bool parse_int(const char *p, const char *end, long lo, long hi, int *out) {
  if (p == end || end - p > 9)
    return false;
  long v = 0;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9')
      return false;
    v = v * 10 + (*p - '0');
  }
  if (v < lo || v > hi)
    return false;
  *out = (int)v;
  return true;
}

/* Split the store's own parameters (pool, timeout_ms) off the URL; the
 * rest, libpq's, stays in s->uri in the original order. */
static int parse_url(pg_store_t *s, const char *url, char *err, size_t errlen) {
  size_t len = strlen(url);
  s->uri = malloc(len + 1);
  if (!s->uri)
    return RF_ENOMEM;
  const char *q = strchr(url, '?');
  size_t base = q ? (size_t)(q - url) : len;
  memcpy(s->uri, url, base);
  size_t o = base;
  bool first = true;
  for (const char *p = q ? q + 1 : NULL; p && *p;) {
    const char *amp = strchr(p, '&');
    const char *end = amp ? amp : p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    size_t klen = eq ? (size_t)(eq - p) : (size_t)(end - p);
    if (klen == 4 && memcmp(p, "pool", 4) == 0) {
      if (!eq || !parse_int(eq + 1, end, 1, POOL_LIMIT, &s->pool_size)) {
        set_err(err, errlen, "bad pool= in the PostgreSQL URL (expected 1..256)", NULL);
        return RF_EINVAL;
      }
    } else if (klen == 10 && memcmp(p, "timeout_ms", 10) == 0) {
      if (!eq || !parse_int(eq + 1, end, TIMEOUT_MIN_MS, TIMEOUT_MAX_MS, &s->timeout_ms)) {
        set_err(err, errlen, "bad timeout_ms= in the PostgreSQL URL (expected 100..600000)", NULL);
        return RF_EINVAL;
      }
    } else if (end > p) {
      s->uri[o++] = first ? '?' : '&';
      first = false;
      memcpy(s->uri + o, p, (size_t)(end - p));
      o += (size_t)(end - p);
    }
    p = amp ? amp + 1 : NULL;
  }
  s->uri[o] = '\0';
  return 0;
}

/* ------------------------------------------------------------ migrations */

/* Bring the schema up to date on connection c: one transaction that first
 * takes a transaction-scoped advisory lock, so that processes starting
 * together apply each migration exactly once (the others wait on the lock,
 * then find the versions recorded). */
static int migrate(pg_store_t *s, pconn_t *c, char *err, size_t errlen) {
  int64_t deadline = now_ms() + 60000; /* DDL may wait for other sessions */
  int rc = exec_simple(s, c,
                       /* the session's statement_timeout would cut the wait
                        * for another process's migrations short: 60 s here */
                       "BEGIN; SET LOCAL statement_timeout = 60000;"
                       " SELECT pg_advisory_xact_lock(" RF__PG_MIGRATION_LOCK ");"
                       " CREATE TABLE IF NOT EXISTS schema_version ("
                       "  version integer PRIMARY KEY,"
                       "  applied_at timestamptz NOT NULL DEFAULT now())",
                       deadline, err, errlen);
  int64_t have = 0;
  if (rc == 0) {
    if (!PQsendQuery(c->pg, "SELECT coalesce(max(version), 0) FROM schema_version")) {
      conn_drop(s, c);
      rc = RF_EUNAVAIL;
    } else {
      PGresult *r = NULL;
      rc = pump(s, c, deadline, &r);
      if (rc == 0) {
        rc = result_rc(r);
        if (rc == 0 && PQntuples(r) == 1)
          have = col_i64(r, 0, NULL);
        else
          set_err(err, errlen, "PostgreSQL schema_version", PQresultErrorMessage(r));
        PQclear(r);
      }
    }
  }
  if (rc == 0 && have > (int64_t)rf__pg_migrations_count) {
    if (err && errlen > 0)
      snprintf(err, errlen, "store: database schema version %lld is newer than this program (%zu)",
               (long long)have, rf__pg_migrations_count);
    rc = RF_EUNAVAIL;
  }
  for (size_t v = (size_t)have; rc == 0 && v < rf__pg_migrations_count; v++) {
    rc = exec_simple(s, c, rf__pg_migrations[v], deadline, err, errlen);
    if (rc == 0) {
      char sql[96];
      snprintf(sql, sizeof sql, "INSERT INTO schema_version(version) VALUES (%zu)", v + 1);
      rc = exec_simple(s, c, sql, deadline, err, errlen);
    }
  }
  if (rc == 0)
    rc = exec_simple(s, c, "COMMIT", deadline, err, errlen);
  if (rc != 0 && c->pg)
    conn_drop(s, c); /* the server rolls back what the transaction did */
  if (rc == RETRY)
    rc = RF_EBUSY;
  return rc == 0 || rc == RF_EBUSY || rc == RF_ENOMEM ? rc : RF_EUNAVAIL;
}

/* ----------------------------------------------------------------- store */

static const rf_store_ops_t pg_ops;

/* In a child process after fork(), the sockets are shared with the parent:
 * closing a connection the normal way would send the server a Terminate
 * message and end the parent's session. Point each socket at /dev/null
 * first, so libpq's goodbye goes nowhere. */
static void detach_sockets(pg_store_t *s) {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  for (int i = 0; i < s->pool_size; i++) {
    pconn_t *c = &s->slots[i];
    if (c->pg && PQsocket(c->pg) >= 0 && devnull >= 0)
      dup2(devnull, PQsocket(c->pg));
  }
  if (devnull >= 0)
    close(devnull);
}

static void s_close(rf_store_t *base) {
  pg_store_t *s = (pg_store_t *)base;
  rf__exec_stop(s->base.exec); /* runs what is queued, then joins */
  if (s->slots) {
    if (rf__store_pid() != s->pid)
      detach_sockets(s);
    for (int i = 0; i < s->pool_size; i++)
      if (s->slots[i].pg)
        PQfinish(s->slots[i].pg);
  }
  free(s->slots);
  pthread_cond_destroy(&s->freed);
  pthread_mutex_destroy(&s->mu);
  free(s->uri);
  free(s);
}

int rf__store_pg_open(const char *url, rf_store_t **out, char *err, size_t errlen) {
  if (!url || !out)
    return RF_EINVAL;
  pg_store_t *s = calloc(1, sizeof *s);
  if (!s)
    return RF_ENOMEM;
  s->base.ops = &pg_ops;
  s->pid = rf__store_pid();
  s->pool_size = POOL_DEFAULT;
  s->timeout_ms = TIMEOUT_DEFAULT_MS;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->freed, &ca);
  pthread_condattr_destroy(&ca);
  int rc = parse_url(s, url, err, errlen);
  if (rc == 0) {
    s->slots = calloc((size_t)s->pool_size, sizeof *s->slots);
    if (!s->slots)
      rc = RF_ENOMEM;
  }
  if (rc != 0) {
    s_close(&s->base);
    return rc;
  }
  /* libpq's part of the URL is checked before any connection is tried,
   * so that a typo is RF_EINVAL, not "unavailable". */
  char *perr = NULL;
  PQconninfoOption *opts = PQconninfoParse(s->uri, &perr);
  if (!opts) {
    set_err(err, errlen, "bad PostgreSQL URL", perr ? perr : "out of memory");
    rc = perr ? RF_EINVAL : RF_ENOMEM;
    PQfreemem(perr);
    s_close(&s->base);
    return rc;
  }
  PQconninfoFree(opts);
  /* Defaults first: the URL's own values (expanded from dbname) win. */
  snprintf(s->tcp_user_timeout, sizeof s->tcp_user_timeout, "%d", 10000);
  const char *kv[][2] = {
      {"application_name", "racefree"},
      {"gssencmode", "disable"},
      {"keepalives", "1"},
      {"keepalives_idle", "10"},
      {"keepalives_interval", "3"},
      {"keepalives_count", "3"},
      {"tcp_user_timeout", s->tcp_user_timeout},
      {"dbname", s->uri},
  };
  size_t nkv = sizeof kv / sizeof kv[0];
  for (size_t i = 0; i < nkv; i++) {
    s->keys[i] = kv[i][0];
    s->vals[i] = kv[i][1];
  }
  s->keys[nkv] = s->vals[nkv] = NULL;
  /* The server cancels a statement after timeout_ms (57014 -> RF_EBUSY)
   * before the client's own deadline (timeout_ms + grace) gives up on a
   * silent server; a session idle inside a transaction is ended. */
  snprintf(s->session_sql, sizeof s->session_sql,
           "SET statement_timeout = %d; SET idle_in_transaction_session_timeout = %d",
           s->timeout_ms, 2 * s->timeout_ms + GRACE_MS);
  /* The slots, all idle; slot 0 connects now and migrates. */
  for (int i = s->pool_size - 1; i >= 0; i--) {
    s->slots[i].next = s->idle;
    s->idle = &s->slots[i];
  }
  pconn_t *c = s->idle;
  rc = conn_connect(s, c, now_ms() + s->timeout_ms + GRACE_MS, err, errlen);
  if (rc == 0)
    rc = migrate(s, c, err, errlen);
  /* Executor threads: as many as connections (a job holds one connection
   * for its calls, so more threads would only wait for a slot), but no more
   * than CPUs. Transactions that wait for one hot row's lock gain nothing
   * from running side by side, and on a busy machine a descheduled lock
   * holder makes all the others wait (a convoy). Measured with
   * bench/scale.bench.sh on 2 CPUs, a hot-item purchase with two instances
   * had a p99 of 130-660 ms with 8 threads per instance, 35-290 ms with 4,
   * and 10-14 ms with 2 (the build before the executor: 14-20 ms), at the
   * same throughput. */
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int threads = s->pool_size;
  if (cpus > 0 && threads > cpus)
    threads = (int)cpus;
  if (rc == 0)
    rc = rf__exec_start(&s->base.exec, &s->base, (unsigned)(threads < 64 ? threads : 64), NULL,
                        NULL, "rf-pg-exec");
  if (rc != 0) {
    s_close(&s->base);
    return rc;
  }
  *out = &s->base;
  return 0;
}

void rf__store_pg_stats(rf_store_t *base, rf__pg_stats_t *out) {
  pg_store_t *s = (pg_store_t *)base;
  out->retries = atomic_load_explicit(&s->retries, memory_order_relaxed);
  out->connects = atomic_load_explicit(&s->connects, memory_order_relaxed);
  out->dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
  out->pool_size = s->pool_size;
  out->timeout_ms = s->timeout_ms;
}

static int s_ping(rf_store_t *base) {
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_PING, 0, NULL, &r);
  PQclear(r);
  return rc == 0 || rc == RF_EBUSY || rc == RF_ESTATE ? rc : RF_EUNAVAIL;
}

/* ----------------------------------------------------------------- users */

static int insert_email(pg_store_t *s, int st, const char *email, int64_t *id) {
  if (!valid_email(email) || !id)
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query(s, st, 1, (const char *const[]){email}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0)
    *id = col_i64(r, 0, NULL);
  PQclear(r);
  return rc;
}

static int get_email(pg_store_t *s, int st, int64_t id, char *email, size_t cap) {
  if (!email || cap == 0)
    return RF_EINVAL;
  char idtxt[24];
  snprintf(idtxt, sizeof idtxt, "%lld", (long long)id);
  PGresult *r = NULL;
  int rc = query(s, st, 1, (const char *const[]){idtxt}, &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = RF_ENOENT;
  if (rc == 0) {
    size_t n = (size_t)PQgetlength(r, 0, 0);
    if (n + 1 > cap)
      rc = RF_ERANGE;
    else
      memcpy(email, PQgetvalue(r, 0, 0), n + 1);
  }
  PQclear(r);
  return rc;
}

static int s_user_create(rf_store_t *base, const char *email, int64_t *id) {
  return insert_email((pg_store_t *)base, ST_USER_INSERT, email, id);
}

static int s_user_get(rf_store_t *base, int64_t id, char *email, size_t cap) {
  return get_email((pg_store_t *)base, ST_USER_GET, id, email, cap);
}

static int s_user_find_unchecked(rf_store_t *base, const char *email, int *found) {
  if (!valid_email(email) || !found)
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_UU_FIND, 1, (const char *const[]){email}, &r);
  if (rc == 0)
    *found = PQntuples(r) > 0;
  PQclear(r);
  return rc;
}

static int s_user_insert_unchecked(rf_store_t *base, const char *email, int64_t *id) {
  return insert_email((pg_store_t *)base, ST_UU_INSERT, email, id);
}

static int s_user_get_unchecked(rf_store_t *base, int64_t id, char *email, size_t cap) {
  return get_email((pg_store_t *)base, ST_UU_GET, id, email, cap);
}

/* ------------------------------------------------------------- inventory */

static int s_item_put(rf_store_t *base, const char *item, int64_t stock) {
  if (!valid_id(item) || stock < 0)
    return RF_EINVAL;
  char v[24];
  snprintf(v, sizeof v, "%lld", (long long)stock);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_ITEM_PUT, 2, (const char *const[]){item, v}, &r);
  PQclear(r);
  return rc;
}

static int s_item_get(rf_store_t *base, const char *item, int64_t *stock) {
  if (!valid_id(item) || !stock)
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_ITEM_GET, 1, (const char *const[]){item}, &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = RF_ENOENT;
  if (rc == 0)
    *stock = col_i64(r, 0, NULL);
  PQclear(r);
  return rc;
}

static int s_item_purchase(rf_store_t *base, const char *item, int64_t qty, int64_t *remaining) {
  if (!valid_id(item) || qty < 1 || !remaining)
    return RF_EINVAL;
  char q[24];
  snprintf(q, sizeof q, "%lld", (long long)qty);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_ITEM_TAKE, 2, (const char *const[]){q, item}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0) {
    bool none = false;
    int64_t left = col_i64(r, 0, &none);
    if (none)
      rc = col_bool(r, 1) ? RF_ECONFLICT : RF_ENOENT;
    else
      *remaining = left;
  }
  PQclear(r);
  return rc;
}

static int s_item_set_stock(rf_store_t *base, const char *item, int64_t stock) {
  if (!valid_id(item) || stock < 0)
    return RF_EINVAL;
  char v[24];
  snprintf(v, sizeof v, "%lld", (long long)stock);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_ITEM_SET, 2, (const char *const[]){item, v}, &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = RF_ENOENT;
  PQclear(r);
  return rc;
}

/* --------------------------------------------------------------- wallets */

static int s_wallet_put(rf_store_t *base, const char *user, int64_t balance, int64_t *version) {
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  char b[24];
  snprintf(b, sizeof b, "%lld", (long long)balance);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_WALLET_PUT, 2, (const char *const[]){user, b}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0 && version)
    *version = col_i64(r, 0, NULL);
  PQclear(r);
  return rc;
}

static int s_wallet_get(rf_store_t *base, const char *user, int64_t *balance, int64_t *version) {
  if (!valid_id(user))
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_WALLET_GET, 1, (const char *const[]){user}, &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = RF_ENOENT;
  if (rc == 0) {
    if (balance)
      *balance = col_i64(r, 0, NULL);
    if (version)
      *version = col_i64(r, 1, NULL);
  }
  PQclear(r);
  return rc;
}

static int s_wallet_cas(rf_store_t *base, const char *user, int64_t expected, int64_t balance,
                        int64_t *new_version) {
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  char b[24], e[24];
  snprintf(b, sizeof b, "%lld", (long long)balance);
  snprintf(e, sizeof e, "%lld", (long long)expected);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_WALLET_CAS, 3, (const char *const[]){user, b, e}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0) {
    bool none = false;
    int64_t v = col_i64(r, 0, &none);
    if (none)
      rc = col_bool(r, 1) ? RF_ECONFLICT : RF_ENOENT;
    else if (new_version)
      *new_version = v;
  }
  PQclear(r);
  return rc;
}

static int s_wallet_set(rf_store_t *base, const char *user, int64_t balance, int64_t *new_version) {
  if (!valid_id(user) || balance < 0)
    return RF_EINVAL;
  char b[24];
  snprintf(b, sizeof b, "%lld", (long long)balance);
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_WALLET_SET, 2, (const char *const[]){user, b}, &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = RF_ENOENT;
  if (rc == 0 && new_version)
    *new_version = col_i64(r, 0, NULL);
  PQclear(r);
  return rc;
}

/* -------------------------------------------------------------- payments */

#define LEASE_MAX_MS (24ull * 3600 * 1000)

/* Lease times and ledger timestamps: wall-clock milliseconds, as in the
 * SQLite backend (store.h): every process and every restart agrees on
 * them; hosts sharing one database must keep their clocks synchronised. */
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

static void copy_col(const PGresult *r, int col, char *dst, size_t cap) {
  size_t n = PQgetisnull(r, 0, col) ? 0 : (size_t)PQgetlength(r, 0, col);
  if (n >= cap)
    n = cap - 1;
  memcpy(dst, PQgetvalue(r, 0, col), n);
  dst[n] = '\0';
}

static void charge_id_of(int64_t seq, char out[RF_STORE_CHARGE_ID_MAX + 1]) {
  snprintf(out, RF_STORE_CHARGE_ID_MAX + 1, "ch_%lld", (long long)seq);
}

/* Decimal text of v in buf[24]. */
static const char *i64s(char *buf, int64_t v) {
  snprintf(buf, 24, "%lld", (long long)v);
  return buf;
}

/* The payment row of `id` into *p (claim DONE or BUSY by state), its
 * fingerprint into fpr; *found = 0 when there is none. */
static int read_payment(pg_store_t *s, pconn_t *c, const char *id, int64_t now, rf_payment_t *p,
                        char fpr[RF_STORE_FPR_MAX + 1], int *found) {
  PGresult *r = NULL;
  int rc = c ? tx_exec(s, c, ST_PAY_GET, 1, (const char *const[]){id}, &r)
             : query(s, ST_PAY_GET, 1, (const char *const[]){id}, &r);
  if (rc != 0)
    return rc;
  *found = PQntuples(r) > 0;
  if (*found) {
    memset(p, 0, sizeof *p);
    p->amount = col_i64(r, 0, NULL);
    copy_col(r, 1, fpr, RF_STORE_FPR_MAX + 1);
    p->state = (rf_payment_state_t)col_i64(r, 2, NULL);
    p->token = (uint64_t)col_i64(r, 3, NULL);
    int64_t until = col_i64(r, 4, NULL);
    p->http_status = (int)col_i64(r, 5, NULL);
    copy_col(r, 6, p->charge_id, sizeof p->charge_id);
    copy_col(r, 7, p->body, sizeof p->body);
    p->claim = p->state == RF_PAY_PROCESSING ? RF_PAY_BUSY : RF_PAY_DONE;
    p->lease_left_ms = p->state == RF_PAY_PROCESSING && until > now ? (uint64_t)(until - now) : 0;
  }
  PQclear(r);
  return 0;
}

typedef struct {
  const char *id, *fingerprint, *owner;
  int64_t amount;
  uint64_t lease_ms;
  rf_payment_t p; /* the outcome */
} begin_t;

/* The takeover of an expired lease, inside begin's transaction: the CAS,
 * then the new token shown to the ledger's fence (from now on the stale
 * holder cannot charge), then the ledger's first charge for the id. If
 * another recoverer won the CAS, the row is read again: BUSY (or DONE). */
static int takeover(pg_store_t *s, pconn_t *c, begin_t *b, int64_t now) {
  char until[24], nows[24], tok[24];
  PGresult *r = NULL;
  int rc = tx_exec(s, c, ST_PAY_TAKEOVER, 5,
                   (const char *const[]){b->id, b->owner, i64s(until, now + (int64_t)b->lease_ms),
                                         i64s(nows, now), i64s(tok, (int64_t)b->p.token)},
                   &r);
  if (rc != 0)
    return rc;
  bool won = PQntuples(r) == 1;
  int64_t token = won ? col_i64(r, 0, NULL) : 0;
  PQclear(r);
  if (!won) {
    char fpr[RF_STORE_FPR_MAX + 1];
    int found = 0;
    rc = read_payment(s, c, b->id, now, &b->p, fpr, &found);
    return rc == 0 && !found ? RF_EINTERNAL : rc;
  }
  b->p.claim = RF_PAY_TAKEN_OVER;
  b->p.token = (uint64_t)token;
  b->p.lease_left_ms = b->lease_ms;
  rc = tx_exec(s, c, ST_FENCE_RAISE, 2, (const char *const[]){b->id, i64s(tok, token)}, &r);
  PQclear(r);
  if (rc != 0)
    return rc;
  rc = tx_exec(s, c, ST_CHARGE_FIRST, 1, (const char *const[]){b->id}, &r);
  if (rc == 0 && PQntuples(r) == 1) {
    b->p.has_charge = 1;
    charge_id_of(col_i64(r, 0, NULL), b->p.charge.charge_id);
    b->p.charge.amount = col_i64(r, 1, NULL);
    b->p.charge.declined = (int)col_i64(r, 2, NULL);
    b->p.charge.token = (uint64_t)col_i64(r, 3, NULL);
  }
  PQclear(r);
  return rc;
}

static int begin_tx(pg_store_t *s, pconn_t *c, void *arg) {
  begin_t *b = arg;
  memset(&b->p, 0, sizeof b->p);
  int64_t now = wall_ms();
  char amount[24], until[24], nows[24];
  PGresult *r = NULL;
  int rc = tx_exec(s, c, ST_PAY_INSERT, 6,
                   (const char *const[]){b->id, i64s(amount, b->amount), b->fingerprint, b->owner,
                                         i64s(until, now + (int64_t)b->lease_ms), i64s(nows, now)},
                   &r);
  if (rc != 0)
    return rc;
  bool claimed = PQntuples(r) == 1;
  if (claimed) { /* the record is ours */
    b->p.claim = RF_PAY_CLAIMED;
    b->p.amount = b->amount;
    b->p.token = (uint64_t)col_i64(r, 0, NULL);
    b->p.lease_left_ms = b->lease_ms;
  }
  PQclear(r);
  if (claimed)
    return 0;
  /* It existed (committed: the insert waited for its creator): what is it? */
  char fpr[RF_STORE_FPR_MAX + 1];
  int found = 0;
  rc = read_payment(s, c, b->id, now, &b->p, fpr, &found);
  if (rc == 0 && !found)
    rc = RF_EINTERNAL; /* payment records are never deleted */
  if (rc == 0 && (b->p.amount != b->amount || strcmp(fpr, b->fingerprint) != 0))
    b->p.claim = RF_PAY_MISMATCH;
  else if (rc == 0 && b->p.claim == RF_PAY_BUSY && b->p.lease_left_ms == 0)
    rc = takeover(s, c, b, now);
  return rc;
}

static int s_payment_begin(rf_store_t *base, const char *id, int64_t amount,
                           const char *fingerprint, uint64_t lease_ms, const char *owner,
                           rf_payment_t *out) {
  if (!valid_id(id) || amount < 1 || !valid_text(fingerprint, RF_STORE_FPR_MAX) ||
      !valid_text(owner, RF_STORE_OWNER_MAX) || lease_ms < 1 || lease_ms > LEASE_MAX_MS || !out)
    return RF_EINVAL;
  begin_t b = {
      .id = id, .fingerprint = fingerprint, .owner = owner, .amount = amount, .lease_ms = lease_ms};
  int rc = run_tx((pg_store_t *)base, begin_tx, &b);
  if (rc == 0)
    *out = b.p;
  return rc;
}

static int s_payment_finish(rf_store_t *base, const char *id, uint64_t token, int declined,
                            int http_status, const char *charge_id, const char *body) {
  if (!charge_id)
    charge_id = "";
  if (!valid_id(id) || token < 1 || token > INT64_MAX || http_status < 100 || http_status > 599 ||
      !body || strnlen(body, RF_STORE_BODY_MAX + 1) > RF_STORE_BODY_MAX ||
      strnlen(charge_id, RF_STORE_CHARGE_ID_MAX + 1) > RF_STORE_CHARGE_ID_MAX)
    return RF_EINVAL;
  char tok[24], state[24], status[24], nows[24];
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_PAY_FINISH, 7,
                 (const char *const[]){id, i64s(tok, (int64_t)token),
                                       i64s(state, declined ? RF_PAY_DECLINED : RF_PAY_SUCCEEDED),
                                       i64s(status, http_status), charge_id, body,
                                       i64s(nows, wall_ms())},
                 &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0 && col_i64(r, 0, NULL) == 0) /* stale token, final already, or no record */
    rc = col_bool(r, 1) ? RF_ESTALE : RF_ENOENT;
  PQclear(r);
  return rc;
}

static int s_payment_get(rf_store_t *base, const char *id, rf_payment_t *out) {
  if (!valid_id(id) || !out)
    return RF_EINVAL;
  rf_payment_t p;
  char fpr[RF_STORE_FPR_MAX + 1];
  int found = 0;
  int rc = read_payment((pg_store_t *)base, NULL, id, wall_ms(), &p, fpr, &found);
  if (rc == 0 && !found)
    rc = RF_ENOENT;
  if (rc == 0)
    *out = p;
  return rc;
}

/* A charge: fenced (one statement that raises the fence to `token` unless
 * it is above it, and inserts the charge only then) or not (the --unsafe
 * twin: every call records a charge). */
static int charge_common(pg_store_t *s, const char *payment_id, int64_t amount, int declined,
                         int fenced, uint64_t token, rf_charge_t *out) {
  if (!valid_id(payment_id) || amount < 1 || (fenced && (token < 1 || token > INT64_MAX)))
    return RF_EINVAL;
  char amt[24], dec[24], tok[24], nows[24];
  PGresult *r = NULL;
  int rc;
  if (fenced)
    rc = query(s, ST_CHARGE_FENCED, 5,
               (const char *const[]){payment_id, i64s(amt, amount), i64s(dec, declined ? 1 : 0),
                                     i64s(tok, (int64_t)token), i64s(nows, wall_ms())},
               &r);
  else
    rc = query(s, ST_CHARGE_INSERT, 4,
               (const char *const[]){payment_id, i64s(amt, amount), i64s(dec, declined ? 1 : 0),
                                     i64s(nows, wall_ms())},
               &r);
  if (rc == 0 && PQntuples(r) == 0)
    rc = fenced ? RF_ESTALE : RF_EINTERNAL;
  if (rc == 0 && out) {
    memset(out, 0, sizeof *out);
    charge_id_of(col_i64(r, 0, NULL), out->charge_id);
    out->amount = amount;
    out->declined = declined ? 1 : 0;
    out->token = fenced ? token : 0;
  }
  PQclear(r);
  return rc;
}

static int s_charge_record(rf_store_t *base, const char *payment_id, int64_t amount, int declined,
                           uint64_t token, rf_charge_t *out) {
  return charge_common((pg_store_t *)base, payment_id, amount, declined, 1, token, out);
}

static int s_charge_record_unchecked(rf_store_t *base, const char *payment_id, int64_t amount,
                                     int declined, rf_charge_t *out) {
  return charge_common((pg_store_t *)base, payment_id, amount, declined, 0, 0, out);
}

static int s_charge_stats(rf_store_t *base, const char *payment_id, int64_t *count,
                          int64_t *total) {
  if (!valid_id(payment_id))
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_CHARGE_STATS, 1, (const char *const[]){payment_id}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0) {
    if (count)
      *count = col_i64(r, 0, NULL);
    if (total)
      *total = col_i64(r, 1, NULL);
  }
  PQclear(r);
  return rc;
}

static int s_payment_put_unchecked(rf_store_t *base, const char *id, int64_t amount, int declined,
                                   int http_status, const char *charge_id, const char *body) {
  if (!charge_id)
    charge_id = "";
  if (!valid_id(id) || amount < 1 || !body ||
      strnlen(body, RF_STORE_BODY_MAX + 1) > RF_STORE_BODY_MAX)
    return RF_EINVAL;
  char amt[24], state[24], status[24], nows[24];
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_PAY_PUT, 7,
                 (const char *const[]){id, i64s(amt, amount),
                                       i64s(state, declined ? RF_PAY_DECLINED : RF_PAY_SUCCEEDED),
                                       i64s(status, http_status), charge_id, body,
                                       i64s(nows, wall_ms())},
                 &r);
  PQclear(r);
  return rc;
}

/* ------------------------------------------------------------ mail sender */

static int s_email_send(rf_store_t *base, const char *job_id, unsigned attempt, const char *to,
                        int *first) {
  if (attempt < 1 || !first || !valid_text(job_id, RF_STORE_ID_MAX) || !valid_email(to))
    return RF_EINVAL;
  char att[24], nows[24];
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_SEND_ONCE, 4,
                 (const char *const[]){job_id, i64s(att, attempt), to, i64s(nows, wall_ms())}, &r);
  if (rc == 0)
    *first = PQntuples(r) == 1;
  PQclear(r);
  return rc;
}

static int s_email_send_unchecked(rf_store_t *base, const char *job_id, const char *to) {
  if (!valid_text(job_id, RF_STORE_ID_MAX) || !valid_email(to))
    return RF_EINVAL;
  char nows[24];
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_SEND_ANY, 3,
                 (const char *const[]){job_id, to, i64s(nows, wall_ms())}, &r);
  PQclear(r);
  return rc;
}

static int s_email_sent_count(rf_store_t *base, const char *to, int64_t *count) {
  if (!valid_email(to) || !count)
    return RF_EINVAL;
  PGresult *r = NULL;
  int rc = query((pg_store_t *)base, ST_SEND_COUNT, 1, (const char *const[]){to}, &r);
  if (rc == 0 && PQntuples(r) != 1)
    rc = RF_EINTERNAL;
  if (rc == 0)
    *count = col_i64(r, 0, NULL);
  PQclear(r);
  return rc;
}

static const rf_store_ops_t pg_ops = {
    .kind = "postgres",
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
    .reads_inline = 0,
};
