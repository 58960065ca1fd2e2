/* backend.h - what store.c needs from each database backend (private).
 *
 * Each backend provides one constructor that opens its database, applies
 * its migrations and returns a store whose first member is the rf_store
 * header with the backend's ops table.
 */
#ifndef RF_STORE_BACKEND_H
#define RF_STORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "store.h"

/* Open the SQLite database file at path (see rf_store_open). On failure a
 * one-line message is written to err (when err != NULL). */
int rf__store_sqlite_open(const char *path, rf_store_t **out, char *err, size_t errlen);

/* The SQLite schema: migration i (0-based) brings the schema from version i
 * to version i + 1. Append only: never edit a migration that has shipped. */
extern const char *const rf__sqlite_migrations[];
extern const size_t rf__sqlite_migrations_count;

/* Open the PostgreSQL database named by url ("postgres://..." or
 * "postgresql://...", see postgres.c for the pool= and timeout_ms=
 * parameters) and bring its schema up to date. On failure a one-line
 * message is written to err (when err != NULL). */
int rf__store_pg_open(const char *url, rf_store_t **out, char *err, size_t errlen);

/* The PostgreSQL schema, as rf__sqlite_migrations (append only). They
 * are applied under this transaction-scoped advisory lock ("rfstore" in
 * ASCII), so that processes opening one database at once take turns. */
#define RF__PG_MIGRATION_LOCK "32200793405747813"
extern const char *const rf__pg_migrations[];
extern const size_t rf__pg_migrations_count;

/* The PostgreSQL error mapping: SQLSTATE (5 characters, may be NULL) to
 * an RF_E... code, or RF__PG_RETRY for the failures a statement is retried
 * on (40001 serialization failure, 40P01 deadlock). Pure; for tests too. */
#define RF__PG_RETRY 1
int rf__pg_map_sqlstate(const char *sqlstate);

/* Counters of a PostgreSQL store since it was opened (tests, diagnostics):
 * statements retried after 40001/40P01, connections opened, connections
 * closed because they failed, timed out or were found dead. */
typedef struct {
  uint64_t retries, connects, dropped;
  int pool_size, timeout_ms;
} rf__pg_stats_t;
void rf__store_pg_stats(rf_store_t *s, rf__pg_stats_t *out);

/* The executor (exec.c, store.h "the executor"). A batch function runs
 * jobs[0..n) (n >= 1) on the writer, sets each job's rc, and returns how
 * many it finished (>= 1); the others go back to the front of the queue. */
typedef struct rf__exec rf__exec_t;
typedef size_t (*rf__exec_batch_fn)(rf_store_t *s, rf_store_job_t **jobs, size_t n, void *ctx);
/* threads >= 1; batch NULL: each job's work runs alone. name: the threads'
 * name (15 bytes at most). */
int rf__exec_start(rf__exec_t **out, rf_store_t *s, unsigned threads, rf__exec_batch_fn batch,
                   void *ctx, const char *name);
int rf__exec_submit(rf__exec_t *e, rf_store_job_t *job);
void rf__exec_drain(rf__exec_t *e);
/* Take every job not started yet off the queue and call its done with rc,
 * on the calling thread. Returns how many. */
size_t rf__exec_cancel(rf__exec_t *e, int rc);
void rf__exec_stats(const rf__exec_t *e, uint64_t *batches, uint64_t *jobs);
int rf__exec_set_batch_limits(rf__exec_t *e, unsigned max_jobs, unsigned max_ms);
unsigned rf__exec_batch_ms(const rf__exec_t *e); /* the current time bound */
/* Runs what is queued, joins the threads, frees. NULL is a no-op. */
void rf__exec_stop(rf__exec_t *e);

/* The calling process's pid, without a system call (refreshed after fork
 * by a pthread_atfork handler). */
pid_t rf__store_pid(void);

/* Count a wait on the database if this thread is marked as an event loop
 * (rf_store_loop_thread). Backends call it where a call would block. */
void rf__store_loop_note(void);

#endif /* RF_STORE_BACKEND_H */
