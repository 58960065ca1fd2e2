/* queue_internal.h - the backend interface of the job queue (not installed).
 *
 * A backend is a struct of function pointers chosen at open time by the URL
 * scheme (queue.c holds the table). The generic layer (queue.c) validates
 * every argument, reads the clock, truncates texts and checks the fork
 * guard before calling a backend, so a backend receives only valid input:
 * ids of 1..128 characters of [A-Za-z0-9._:-], a payload within limits,
 * lease and delay in range, `now` from the queue's clock.
 *
 * What every backend must guarantee (the shared suite tests/unit/test_queue.c
 * checks each of these against every backend; the PostgreSQL backend,
 * queue_pg.c, implements each with one statement; fail reads first):
 *
 *  add       insert the record iff no record with this id exists, in one
 *            atomic step (RF_EEXIST otherwise; nothing changed). status
 *            waiting, attempts 0, run_at = job->run_at_ms.
 *  claim     in one atomic step: pick the due job with the smallest due
 *            time, where a waiting job is due at run_at (<= now) and an
 *            active job whose lease expired and that has attempts left at
 *            lease_until (< now); set it active, attempts + 1, lease_until
 *            = now + lease, lease_owner = worker; return a copy allocated
 *            with rf__job_alloc. If that allocation fails, the claim must
 *            not stand (undo it, or never commit it): RF_ENOMEM. RF_ENOENT
 *            when nothing is due. Two claims never return the same (id,
 *            attempt). Active jobs whose lease expired with attempts >=
 *            max_attempts are never returned; the backend marks them failed
 *            (last_error RF__QUEUE_STALLED_ERROR) no later than a claim that
 *            returns RF_ENOENT.
 *  complete  iff status active and attempts == attempt: completed, lease
 *            cleared, payload and error dropped if remove_on_complete.
 *            RF_ENOENT if no record, RF_ESTALE otherwise.
 *  fail      same fencing; if attempts < max_attempts: waiting, run_at =
 *            now + rf__queue_backoff_ms(q, attempts, base, cap); else failed.
 *            last_error = error (already truncated; may be NULL).
 *  extend    same fencing; lease_until = the given value.
 *  get       the record's fields; RF_ENOENT if none.
 *  counts    jobs per status, one snapshot.
 *  purge     delete completed and failed records with updated < before.
 *
 * Errors a backend may return besides those: RF_ENOMEM, RF_EBUSY (lock not
 * obtained within busy_timeout_ms; nothing changed), RF_EIO (anything the
 * storage reported; nothing changed), RF_EUNAVAIL (a database server that
 * cannot be reached; a write whose connection died after sending may or
 * may not have been applied, as a whole).
 *
 * Concurrency: every operation may be called from many threads at once; the
 * backend provides its own locking. close is called once, with no other
 * call in progress.
 */
#ifndef RACEFREE_QUEUE_INTERNAL_H
#define RACEFREE_QUEUE_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "racefree/queue.h"

/* Normalised options, as a backend sees them. */
typedef struct {
  size_t max_payload;
  int busy_timeout_ms;
  bool sync_full;
} rf__queue_cfg_t;

/* A job to insert (validated). */
typedef struct {
  const char *id;
  const void *payload;
  size_t len;
  unsigned max_attempts;
  uint64_t base_ms;
  uint64_t cap_ms;
  bool remove_on_complete;
  uint64_t run_at_ms;
  uint64_t now_ms;
} rf__job_new_t;

typedef struct rf__queue_backend {
  const char *scheme; /* URL scheme, also the backend's name */
  /* target: the URL after "scheme:". q is the owning queue (for
   * rf__queue_backoff_ms); the state is stored in *state on success. */
  int (*open)(rf_queue_t *q, const char *target, const rf__queue_cfg_t *cfg, void **state);
  void (*close)(void *state);
  int (*add)(void *state, const rf__job_new_t *job);
  int (*claim)(void *state, const char *worker_id, uint64_t now_ms, uint64_t lease_ms,
               rf_job_t **out);
  int (*complete)(void *state, const char *id, unsigned attempt, uint64_t now_ms);
  int (*fail)(void *state, const char *id, unsigned attempt, const char *error, uint64_t now_ms);
  int (*extend)(void *state, const char *id, unsigned attempt, uint64_t lease_until_ms,
                uint64_t now_ms);
  int (*get)(void *state, const char *id, rf_job_info_t *out);
  int (*counts)(void *state, rf_queue_counts_t *out);
  int (*purge)(void *state, uint64_t before_ms, uint64_t *purged);
} rf__queue_backend_t;

extern const rf__queue_backend_t rf__queue_mem_backend;
extern const rf__queue_backend_t rf__queue_sqlite_backend;
extern const rf__queue_backend_t rf__queue_pg_backend;    /* postgres:// (queue_pg.c) */
extern const rf__queue_backend_t rf__queue_pgsql_backend; /* postgresql://, the same */

/* The retry delay after attempt number `attempt` (>= 1) failed: uniform in
 * [0, min(cap, base * 2^(attempt-1))]. Thread-safe, never blocks. */
uint64_t rf__queue_backoff_ms(rf_queue_t *q, unsigned attempt, uint64_t base_ms, uint64_t cap_ms);

/* A zeroed rf_job_t with room for a payload of `len` bytes plus a NUL
 * (payload points there, or is NULL when len is 0). Free with rf_job_free.
 * NULL on allocation failure. */
rf_job_t *rf__job_alloc(size_t len);

/* Copy `src` (may be NULL) into dst[RF_QUEUE_ERROR_MAX + 1], truncated at a
 * UTF-8 boundary. */
void rf__queue_copy_error(char *dst, const char *src);

/* Lock `mu`, waiting at most timeout_ms: 0 or RF_EBUSY. A trylock first,
 * so the uncontended case costs what pthread_mutex_lock costs. */
int rf__queue_timedlock(pthread_mutex_t *mu, int timeout_ms);

/* The error text a claim records when a stalled job's last lease expired. */
#define RF__QUEUE_STALLED_ERROR "lease expired on the last attempt"

#endif /* RACEFREE_QUEUE_INTERNAL_H */
