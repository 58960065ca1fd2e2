/* bench_sqlite_purchase.c - the database floor of POST /inventory/purchase.
 *
 * Runs the purchase the store runs (src/store/sqlite.c) on one hot item,
 * in a loop on one SQLite connection with the store's settings (WAL,
 * synchronous=NORMAL, temp_store=MEMORY): BEGIN IMMEDIATE; UPDATE items SET stock = stock - 1
 * WHERE id = ? AND stock >= 1 RETURNING stock; COMMIT. This is what the
 * HTTP route cannot beat, so bench/server.bench.sh compares the route's
 * wrk figure against it.
 *
 *   bench_sqlite_purchase              markdown section: the transaction the
 *                                      store uses vs the same UPDATE in
 *                                      autocommit (the cost of BEGIN/COMMIT)
 *   bench_sqlite_purchase --raw SECS   print purchases per second only
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(sqlite3 *db, const char *what) {
  fprintf(stderr, "bench_sqlite_purchase: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
  exit(1);
}

static void exec(sqlite3 *db, const char *sql) {
  if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
    die(db, sql);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK)
    die(db, sql);
  return st;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st) {
  int rc, rows = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW)
    rows++;
  if (rc != SQLITE_DONE)
    die(db, "step");
  sqlite3_reset(st);
  return rows;
}

/* Purchases per second for `secs` seconds; in_tx: inside BEGIN IMMEDIATE. */
static double run(sqlite3 *db, double secs, int in_tx) {
  sqlite3_stmt *begin = prep(db, "BEGIN IMMEDIATE"), *commit = prep(db, "COMMIT");
  sqlite3_stmt *take = prep(db, "UPDATE items SET stock = stock - ?2 WHERE id = ?1 AND stock >= ?2"
                                " RETURNING stock");
  sqlite3_bind_text(take, 1, "hot", -1, SQLITE_STATIC);
  sqlite3_bind_int64(take, 2, 1);
  long n = 0;
  double t0 = now_s(), t = t0;
  while (t - t0 < secs) {
    for (int i = 0; i < 256; i++) {
      if (in_tx)
        step_done(db, begin);
      if (step_done(db, take) != 1)
        die(db, "out of stock");
      if (in_tx)
        step_done(db, commit);
    }
    n += 256;
    t = now_s();
  }
  sqlite3_finalize(begin);
  sqlite3_finalize(commit);
  sqlite3_finalize(take);
  return (double)n / (t - t0);
}

int main(int argc, char **argv) {
  int raw = argc >= 2 && strcmp(argv[1], "--raw") == 0;
  double secs = raw && argc >= 3 ? atof(argv[2]) : 2.0;
  if (secs <= 0)
    secs = 2.0;
  char dir[] = "/tmp/rf-bench-sqlite-XXXXXX";
  if (!mkdtemp(dir)) {
    perror("mkdtemp");
    return 1;
  }
  char path[64];
  snprintf(path, sizeof path, "%s/db", dir);
  sqlite3 *db = NULL;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die(db, "open");
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
           " PRAGMA temp_store=MEMORY;");
  exec(db, "CREATE TABLE items (id TEXT PRIMARY KEY, stock INTEGER NOT NULL CHECK (stock >= 0));"
           "INSERT INTO items VALUES ('hot', 1000000000000)");
  double tx = run(db, secs, 1);
  double autocommit = raw ? 0 : run(db, secs, 0);
  sqlite3_close(db);
  const char *suffix[] = {"", "-wal", "-shm"};
  for (int i = 0; i < 3; i++) {
    char p[80];
    snprintf(p, sizeof p, "%s%s", path, suffix[i]);
    unlink(p);
  }
  rmdir(dir);
  if (raw) {
    printf("%.0f\n", tx);
    return 0;
  }
  printf("## SQLite purchase floor (bench_sqlite_purchase)\n\n");
  printf("`bench_sqlite_purchase`: one connection, WAL, synchronous=NORMAL, temp_store=MEMORY,\n"
         "one hot item, "
         "%.0f s per figure; the conditional `UPDATE ... WHERE stock >= ? RETURNING stock`.\n\n",
         secs);
  printf("| figure | purchases/s | reference | reference purchases/s | ratio |\n");
  printf("|---|---:|---|---:|---:|\n");
  printf("| inside BEGIN IMMEDIATE ... COMMIT (the store) | %.0f | same UPDATE, autocommit | "
         "%.0f | %.2f |\n",
         tx, autocommit, autocommit > 0 ? tx / autocommit : 0);
  return 0;
}
