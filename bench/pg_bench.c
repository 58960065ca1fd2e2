/* pg_bench.c - the PostgreSQL store and queue next to raw libpq, in the
 * same run against the same server (bench/postgres.bench.sh starts a
 * private cluster and runs this program with its URL).
 *
 *   pg_bench URL [SECONDS]
 *
 * Figures (each the mean over 10 slices that alternate with the
 * reference's, so that a shared machine's load falls on both alike):
 *   - purchases/s through rf_store_item_purchase, 1 thread and 8 threads
 *     (pool=8), vs the store's statement (the conditional UPDATE with its
 *     EXISTS) run with PQexecPrepared on one blocking connection per
 *     thread: what the store's pool, deadlines and checks cost;
 *   - queue jobs/s, add + claim + complete through rf_queue on one thread,
 *     vs the same three statements with PQexecPrepared.
 * Both sides send the same SQL with the same number of round trips.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "racefree/queue.h"
#include "store.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
  fprintf(stderr, "pg_bench: %s: %s\n", what, detail ? detail : "");
  exit(1);
}

static char g_url[1100];  /* the schema's URL, with the store's parameters */
static char g_conn[1024]; /* the same for libpq (no pool=) */
static double g_secs = 2.0;

static void quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static PGconn *raw_connect_to(const char *conninfo) {
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK)
    die("connect", PQerrorMessage(c));
  PQsetNoticeProcessor(c, quiet, NULL);
  return c;
}

static PGconn *raw_connect(void) {
  return raw_connect_to(g_conn);
}

static void raw_exec(PGconn *c, const char *sql) {
  PGresult *r = PQexec(c, sql);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    die(sql, PQresultErrorMessage(r));
  PQclear(r);
}

static void raw_prepare(PGconn *c, const char *name, const char *sql) {
  PGresult *r = PQprepare(c, name, sql, 0, NULL);
  if (PQresultStatus(r) != PGRES_COMMAND_OK)
    die(sql, PQresultErrorMessage(r));
  PQclear(r);
}

static PGresult *raw_run(PGconn *c, const char *name, int n, const char *const *v) {
  PGresult *r = PQexecPrepared(c, name, n, v, NULL, NULL, 0);
  if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
    die(name, PQresultErrorMessage(r));
  return r;
}

/* ------------------------------------------------------------ purchases */

#define TAKE_SQL                                                                                   \
  "WITH taken AS (UPDATE items SET stock = stock - $1::bigint"                                     \
  " WHERE id = $2::text AND stock >= $1::bigint RETURNING stock)"                                  \
  " SELECT (SELECT stock FROM taken), EXISTS (SELECT 1 FROM items WHERE id = $2::text)"

/* Raw connections, opened and prepared once, outside the timed slices. */
static PGconn *g_raw[8];
static PGconn *g_rawq;

typedef struct {
  rf_store_t *s; /* NULL: raw libpq */
  atomic_long n;
  double until;
} buy_t;

typedef struct {
  buy_t *b;
  PGconn *c;
} buy_arg_t;

static void *buy_thread(void *arg) {
  buy_arg_t *a = arg;
  buy_t *b = a->b;
  long n = 0;
  while (now_s() < b->until) {
    for (int i = 0; i < 16; i++) {
      if (b->s) {
        int64_t left;
        if (rf_store_item_purchase(b->s, "hot", 1, &left) != 0)
          die("purchase", "store");
      } else {
        PQclear(raw_run(a->c, "take", 2, (const char *const[]){"1", "hot"}));
      }
    }
    n += 16;
  }
  atomic_fetch_add(&b->n, n);
  return NULL;
}

static double buy_rate(rf_store_t *s, int threads) {
  buy_t b = {.s = s};
  buy_arg_t args[8];
  pthread_t t[8];
  double t0 = now_s();
  b.until = t0 + g_secs;
  for (int i = 0; i < threads; i++) {
    args[i] = (buy_arg_t){&b, g_raw[i]};
    pthread_create(&t[i], NULL, buy_thread, &args[i]);
  }
  for (int i = 0; i < threads; i++)
    pthread_join(t[i], NULL);
  return (double)atomic_load(&b.n) / (now_s() - t0);
}

/* ------------------------------------------------------------ queue */

static long g_seq;

static void raw_queue_prepare(PGconn *c) {
  raw_prepare(c, "ins",
              "INSERT INTO raw_jobs(id, status, attempts, run_at_ms) VALUES ($1, 'waiting', 0, 0)"
              " ON CONFLICT (id) DO NOTHING RETURNING 1");
  raw_prepare(c, "claim",
              "UPDATE raw_jobs j SET status = 'active', attempts = j.attempts + 1,"
              " run_at_ms = 1 FROM (SELECT id FROM raw_jobs WHERE status = 'waiting'"
              " AND run_at_ms <= 1 ORDER BY run_at_ms, seq LIMIT 1 FOR UPDATE SKIP LOCKED) nx"
              " WHERE j.id = nx.id RETURNING j.id, j.attempts");
  raw_prepare(c, "done",
              "UPDATE raw_jobs SET status = 'completed' WHERE id = $1 AND status = 'active'"
              " AND attempts = $2::integer");
}

static double queue_rate(rf_queue_t *q) {
  PGconn *c = g_rawq;
  long n = 0;
  double t0 = now_s(), t = t0;
  while (t - t0 < g_secs) {
    char id[32];
    snprintf(id, sizeof id, "j%ld", ++g_seq);
    if (q) {
      rf_job_t *job = NULL;
      if (rf_queue_add(q, id, "x", 1, NULL) != 0 || rf_queue_claim(q, "w", 30000, &job) != 0 ||
          rf_queue_complete(q, job->id, job->attempt) != 0)
        die("queue", id);
      rf_job_free(job);
    } else {
      PQclear(raw_run(c, "ins", 1, (const char *const[]){id}));
      PGresult *r = raw_run(c, "claim", 0, NULL);
      char jid[64], att[16];
      snprintf(jid, sizeof jid, "%s", PQgetvalue(r, 0, 0));
      snprintf(att, sizeof att, "%s", PQgetvalue(r, 0, 1));
      PQclear(r);
      PQclear(raw_run(c, "done", 2, (const char *const[]){jid, att}));
    }
    n++;
    t = now_s();
  }
  return (double)n / (t - t0);
}

/* ------------------------------------------------------------ main */

enum { SLICES = 10 };

int main(int argc, char **argv) {
  if (argc < 2)
    die("usage", "pg_bench URL [SECONDS]");
  if (argc >= 3 && atof(argv[2]) > 0)
    g_secs = atof(argv[2]);
  char schema[64];
  snprintf(schema, sizeof schema, "bench_%ld", (long)getpid());
  const char *sep = strchr(argv[1], '?') ? "&" : "?";
  snprintf(g_conn, sizeof g_conn, "%s%soptions=-csearch_path%%3D%s", argv[1], sep, schema);
  snprintf(g_url, sizeof g_url, "%s&pool=8", g_conn);
  PGconn *admin = raw_connect_to(argv[1]);
  char sql[256];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", schema, schema);
  raw_exec(admin, sql);

  char err[256] = "";
  rf_store_t *s = NULL;
  if (rf_store_open_err(g_url, &s, err, sizeof err) != 0)
    die("store", err);
  if (rf_store_item_put(s, "hot", 1000000000000LL) != 0)
    die("item_put", "");
  rf_queue_t *q = NULL;
  if (rf_queue_open(&q, g_url, NULL) != 0)
    die("queue", "open");
  PGconn *c = raw_connect();
  raw_exec(c, "CREATE TABLE raw_jobs (seq bigint GENERATED BY DEFAULT AS IDENTITY,"
              " id text PRIMARY KEY, status text NOT NULL, attempts integer NOT NULL,"
              " run_at_ms bigint NOT NULL);"
              "CREATE INDEX ON raw_jobs (run_at_ms, seq) WHERE status IN ('waiting', 'active')");
  PQfinish(c);

  for (int i = 0; i < 8; i++) {
    g_raw[i] = raw_connect();
    raw_prepare(g_raw[i], "take", TAKE_SQL);
  }
  g_rawq = raw_connect();
  raw_queue_prepare(g_rawq);

  /* Each figure and its reference alternate in SLICES short slices, so
   * that the load of a shared machine falls on both alike. */
  double total = g_secs;
  g_secs = total / SLICES;
  double m[6] = {0};
  for (int k = 0; k < SLICES; k++) {
    m[0] += buy_rate(s, 1) / SLICES;
    m[1] += buy_rate(NULL, 1) / SLICES;
    m[2] += buy_rate(s, 8) / SLICES;
    m[3] += buy_rate(NULL, 8) / SLICES;
    m[4] += queue_rate(q) / SLICES;
    m[5] += queue_rate(NULL) / SLICES;
  }
  g_secs = total;
  for (int i = 0; i < 8; i++)
    PQfinish(g_raw[i]);
  PQfinish(g_rawq);

  rf_queue_close(q);
  rf_store_close(s);
  snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", schema);
  raw_exec(admin, sql);
  PQfinish(admin);

  printf("## PostgreSQL store and queue next to raw libpq (postgres.bench.sh)\n\n");
  printf("`pg_bench URL %.0f` against a private PostgreSQL 15 cluster (scripts/pg.sh: fsync off,\n"
         "loopback TCP); each figure and its reference alternate in %d slices of %.2f s. Both\n"
         "sides send the same SQL in the same number of round trips; the ratio is what the\n"
         "store's pool, deadline-bounded asynchronous I/O and result checks cost.\n\n",
         g_secs, SLICES, g_secs / SLICES);
  printf("| figure | per second | reference | per second | ratio |\n");
  printf("|---|---:|---|---:|---:|\n");
  printf(
      "| rf_store_item_purchase, 1 thread | %.0f | PQexecPrepared, 1 connection | %.0f | %.2f |\n",
      m[0], m[1], m[0] / m[1]);
  printf("| rf_store_item_purchase, 8 threads, pool=8 | %.0f | PQexecPrepared, 8 connections | "
         "%.0f | %.2f |\n",
         m[2], m[3], m[2] / m[3]);
  printf("| rf_queue add + claim + complete, 1 thread | %.0f | the 3 statements, PQexecPrepared |"
         " %.0f | %.2f |\n",
         m[4], m[5], m[4] / m[5]);
  return 0;
}
