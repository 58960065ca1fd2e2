/* bench_queue.c - jobs enqueued and completed per second, next to the
 * cheapest thing that moves the same rows (or items) without the queue's
 * guarantees, measured in the same run.
 *
 * SQLite ("sqlite:PATH", WAL, synchronous=NORMAL):
 *  1. one thread: rf_queue_add, rf_queue_claim, rf_queue_complete per job
 *     (three write transactions: INSERT; BEGIN IMMEDIATE, sweep, pick,
 *     UPDATE ... RETURNING, COMMIT; fenced UPDATE);
 *  2. one producer thread adding while rf_queue_worker_start runs 2 worker
 *     threads with a no-op handler: from the first add to the last
 *     completion;
 *  reference: the raw pair per job on one connection with the same
 *  settings and an equivalent table: INSERT the job; UPDATE it to
 *  completed (autocommit, prepared statements) - a queue with no claim
 *  step, no lease, no fencing.
 * Memory ("mem:"):
 *  3. one thread add+claim+complete; 4. producer + 2 workers;
 *  reference: push and pop of a job pointer through a mutex-protected
 *  ring (no dedup, no lease, no copy).
 *
 * Each figure runs for 400 ms (--ms N) of wall time, four times,
 * interleaved with its reference; the best round of each is reported (the
 * machine is shared: the best round is the one least disturbed).
 * Prints a markdown section (## Queue).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "racefree/errors.h"
#include "racefree/queue.h"

static int bench_ms = 400;
#define ROUNDS 4
static char dir[64];
static const char payload[] =
    "{\"to\":\"user@example.com\",\"subject\":\"Welcome!\",\"userId\":42}";

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU time of the whole process (all threads, user + system). */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One measurement: jobs per second of wall time, CPU microseconds per job. */
typedef struct {
  double rate;
  double cpu_us;
} result_t;

static result_t result(uint64_t n, double wall, double cpu) {
  result_t r = {(double)n / wall, cpu * 1e6 / (double)n};
  return r;
}

static void die(const char *what, int rc) {
  fprintf(stderr, "bench_queue: %s: %s\n", what, rf_strerror(rc));
  exit(1);
}

static void remove_db(const char *path) {
  const char *suffix[] = {"", "-wal", "-shm", "-journal"};
  for (int i = 0; i < 4; i++) {
    char p[256];
    snprintf(p, sizeof(p), "%s%s", path, suffix[i]);
    unlink(p);
  }
}

static int round_no;

/* A fresh database file (or "mem:") for each measurement. */
static void fresh_url(const char *backend, char *url, size_t n, char *path, size_t pn) {
  snprintf(path, pn, "%s/q%d.db", dir, round_no++);
  remove_db(path);
  if (strcmp(backend, "mem") == 0) {
    snprintf(url, n, "mem:");
  } else {
    snprintf(url, n, "sqlite:%s", path);
  }
}

/* ------------------------------------------------ 1/3: one thread */

static result_t ours_sequential(const char *backend) {
  char url[256], path[200];
  fresh_url(backend, url, sizeof(url), path, sizeof(path));
  rf_queue_t *q = NULL;
  int rc = rf_queue_open(&q, url, NULL);
  if (rc != 0) {
    die("open", rc);
  }
  uint64_t n = 0;
  double c0 = cpu_s(), t0 = now_s(), deadline = t0 + bench_ms / 1000.0, t;
  do {
    for (int k = 0; k < 64; k++, n++) {
      char id[32];
      snprintf(id, sizeof(id), "job-%llu", (unsigned long long)n);
      rf_job_t *job = NULL;
      if ((rc = rf_queue_add(q, id, payload, sizeof(payload) - 1, NULL)) != 0 ||
          (rc = rf_queue_claim(q, "bench", 30000, &job)) != 0 ||
          (rc = rf_queue_complete(q, job->id, job->attempt)) != 0) {
        die("sequential", rc);
      }
      rf_job_free(job);
    }
  } while ((t = now_s()) < deadline);
  double c = cpu_s() - c0;
  rf_queue_close(q);
  remove_db(path);
  return result(n, t - t0, c);
}

/* ------------------------------------------------ 2/4: producer + workers */

static atomic_ullong handled;

static int noop(rf_job_t *job, void *arg) {
  (void)job;
  (void)arg;
  atomic_fetch_add_explicit(&handled, 1, memory_order_relaxed);
  return 0;
}

static result_t ours_workers(const char *backend) {
  char url[256], path[200];
  fresh_url(backend, url, sizeof(url), path, sizeof(path));
  rf_queue_t *q = NULL;
  int rc = rf_queue_open(&q, url, NULL);
  if (rc != 0) {
    die("open", rc);
  }
  atomic_store(&handled, 0);
  rf_queue_worker_t *w = NULL;
  if ((rc = rf_queue_worker_start(q, 2, noop, NULL, 30000, 5, &w)) != 0) {
    die("worker_start", rc);
  }
  uint64_t n = 0;
  double c0 = cpu_s(), t0 = now_s(), deadline = t0 + bench_ms / 1000.0;
  do {
    for (int k = 0; k < 64; k++, n++) {
      char id[32];
      snprintf(id, sizeof(id), "job-%llu", (unsigned long long)n);
      if ((rc = rf_queue_add(q, id, payload, sizeof(payload) - 1, NULL)) != 0) {
        die("add", rc);
      }
    }
  } while (now_s() < deadline);
  while (atomic_load(&handled) < n) {
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
  }
  double t = now_s(), c = cpu_s() - c0;
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  if (st.completed != n) {
    die("workers: completed != added", RF_EINTERNAL);
  }
  rf_queue_close(q);
  remove_db(path);
  return result(n, t - t0, c);
}

/* ------------------------------------------------ reference: raw SQLite */

static void sq_check(sqlite3 *db, int src, const char *what) {
  if (src != SQLITE_OK && src != SQLITE_DONE && src != SQLITE_ROW) {
    fprintf(stderr, "bench_queue: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
  }
}

static result_t ref_sqlite(void) {
  char url[256], path[200];
  fresh_url("sqlite", url, sizeof(url), path, sizeof(path));
  sqlite3 *db = NULL;
  sq_check(db, sqlite3_open(path, &db), "open");
  sq_check(
      db, sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL, NULL),
      "pragma");
  sq_check(db,
           sqlite3_exec(db,
                        "CREATE TABLE jobs(id TEXT PRIMARY KEY, payload BLOB, status TEXT NOT NULL,"
                        " attempts INTEGER NOT NULL, updated_ms INTEGER NOT NULL)",
                        NULL, NULL, NULL),
           "create");
  sqlite3_stmt *ins = NULL, *upd = NULL;
  sq_check(db,
           sqlite3_prepare_v2(db,
                              "INSERT INTO jobs(id, payload, status, attempts, updated_ms)"
                              " VALUES (?1, ?2, 'waiting', 0, ?3)",
                              -1, &ins, NULL),
           "prepare");
  sq_check(db,
           sqlite3_prepare_v2(db,
                              "UPDATE jobs SET status = 'completed', attempts = 1, updated_ms = ?2"
                              " WHERE id = ?1",
                              -1, &upd, NULL),
           "prepare");
  uint64_t n = 0;
  double c0 = cpu_s(), t0 = now_s(), deadline = t0 + bench_ms / 1000.0, t;
  do {
    for (int k = 0; k < 64; k++, n++) {
      char id[32];
      snprintf(id, sizeof(id), "job-%llu", (unsigned long long)n);
      sqlite3_bind_text(ins, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_blob(ins, 2, payload, sizeof(payload) - 1, SQLITE_STATIC);
      sqlite3_bind_int64(ins, 3, (sqlite3_int64)n);
      sq_check(db, sqlite3_step(ins), "insert");
      sqlite3_reset(ins);
      sqlite3_bind_text(upd, 1, id, -1, SQLITE_STATIC);
      sqlite3_bind_int64(upd, 2, (sqlite3_int64)n);
      sq_check(db, sqlite3_step(upd), "update");
      sqlite3_reset(upd);
    }
  } while ((t = now_s()) < deadline);
  double c = cpu_s() - c0;
  sqlite3_finalize(ins);
  sqlite3_finalize(upd);
  sqlite3_close(db);
  remove_db(path);
  return result(n, t - t0, c);
}

/* ------------------------------------------------ reference: mutex ring */

#define RING 1024

typedef struct {
  pthread_mutex_t mu;
  void *slots[RING];
  unsigned head, tail;
} ring_t;

static result_t ref_ring(void) {
  static ring_t r = {.mu = PTHREAD_MUTEX_INITIALIZER};
  uint64_t n = 0, sink = 0;
  double c0 = cpu_s(), t0 = now_s(), deadline = t0 + bench_ms / 1000.0, t;
  do {
    for (int k = 0; k < 256; k++, n++) {
      pthread_mutex_lock(&r.mu);
      r.slots[r.tail++ % RING] = (void *)payload;
      pthread_mutex_unlock(&r.mu);
      pthread_mutex_lock(&r.mu);
      sink += (uintptr_t)r.slots[r.head++ % RING];
      pthread_mutex_unlock(&r.mu);
    }
  } while ((t = now_s()) < deadline);
  double c = cpu_s() - c0;
  if (sink == 1) {
    printf(" ");
  }
  return result(n, t - t0, c);
}

/* ------------------------------------------------ main */

static void best(result_t *b, result_t r) {
  if (r.rate > b->rate) {
    *b = r;
  }
}

static void row(const char *figure, result_t ours, const char *ref_name, result_t ref) {
  printf("| %s | %.0f | %.1f | %s | %.0f | %.2f | %.3g |\n", figure, ours.rate, ours.cpu_us,
         ref_name, ref.rate, ref.cpu_us, ours.rate / ref.rate);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--ms") == 0 && i + 1 < argc) {
      bench_ms = atoi(argv[++i]);
    }
  }
  strcpy(dir, "/tmp/rfq-bench-XXXXXX");
  if (mkdtemp(dir) == NULL) {
    perror("mkdtemp");
    return 1;
  }
  result_t sq_seq = {0}, sq_wrk = {0}, sq_ref = {0}, m_seq = {0}, m_wrk = {0}, m_ref = {0};
  for (int r = 0; r < ROUNDS; r++) {
    best(&sq_ref, ref_sqlite());
    best(&sq_seq, ours_sequential("sqlite"));
    best(&sq_wrk, ours_workers("sqlite"));
    best(&m_ref, ref_ring());
    best(&m_seq, ours_sequential("mem"));
    best(&m_wrk, ours_workers("mem"));
  }
  rmdir(dir);

  printf("## Queue (bench_queue)\n\n");
  printf("`build/release/bench/bench_queue` (%d ms per figure, best of %d interleaved rounds).\n"
         "A job = enqueue + claim + complete, %zu-byte payload, no-op handler; jobs/s is wall\n"
         "time, CPU us/job is the process's CPU time (user + system, all threads) per job.\n"
         "SQLite: a file in /tmp, WAL, synchronous=NORMAL. The SQLite reference is the raw pair a\n"
         "queue cannot do without (INSERT the job, UPDATE it to completed; autocommit, prepared,\n"
         "one connection, same settings); the memory reference is a push and a pop through a\n"
         "mutex-protected ring.\n\n",
         bench_ms, ROUNDS, sizeof(payload) - 1);
  printf("| figure | jobs/s | CPU us/job | reference | reference jobs/s | reference CPU us/job |"
         " ratio |\n");
  printf("|---|---:|---:|---|---:|---:|---:|\n");
  row("sqlite: add + claim + complete, 1 thread", sq_seq, "raw INSERT + UPDATE", sq_ref);
  row("sqlite: 1 producer + worker helper (2 threads)", sq_wrk, "raw INSERT + UPDATE", sq_ref);
  row("mem: add + claim + complete, 1 thread", m_seq, "mutex ring push + pop", m_ref);
  row("mem: 1 producer + worker helper (2 threads)", m_wrk, "mutex ring push + pop", m_ref);
  printf("\nA queued job costs three SQLite write transactions (insert, claim, fenced complete)\n"
         "touching about seven pages (the table b-tree and one partial index), the reference two\n"
         "transactions and three pages; on this shared machine the SQLite figures are bound by\n"
         "WAL writes and checkpoint fsyncs (wall time well above CPU time), so they move with the\n"
         "disk load of the moment: compare the ratio. Target: >= 5,000 jobs/s on SQLite.\n");
  return 0;
}
