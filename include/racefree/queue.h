/* racefree/queue.h - a durable job queue with job-id deduplication, leases,
 * fencing attempt numbers and retries with backoff.
 *
 * The races it prevents ("Pattern 3: Queue-Based Processing" in the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions"):
 *
 *  - Duplicate enqueue. "if no job for this user yet, enqueue one" is a
 *    check-then-act: two requests both see "none" and both enqueue, so the
 *    welcome mail goes out twice. Here the job id IS the check: adding an id
 *    that exists is refused with RF_EEXIST in the same atomic step that
 *    would have inserted it (a primary key in SQL, one locked hash insert in
 *    memory). A duplicate is reported, never silently dropped.
 *  - Double processing. "if job.status == waiting: job.status = active; run"
 *    lets two workers see "waiting" and both run the job. Here a claim finds
 *    a due job and marks it active in one atomic step (one locked step in
 *    memory, one UPDATE ... WHERE id = (SELECT the next due job)
 *    statement under the file's write lock in SQLite), so two workers can
 *    never hold the same attempt of a job.
 *  - Zombie workers. A worker that stalls past its lease (a GC pause, a stuck
 *    socket) sees its job handed to another worker; when it wakes up and
 *    reports "done", that report must not count. Every claim increments the
 *    job's attempt number and hands it out as a fencing token: complete and
 *    fail carry it and are refused with RF_ESTALE unless it is still the
 *    job's current attempt.
 *
 *   rf_queue_t *q;
 *   rf_queue_open(&q, "sqlite:/var/lib/app/jobs.db", NULL);
 *   int rc = rf_queue_add(q, "welcome-42", body, len, NULL);  // 0 or RF_EEXIST
 *   ...
 *   rf_job_t *job;
 *   if (rf_queue_claim(q, "worker-1", 30000, &job) == 0) {
 *     int hr = send_mail(job->payload, job->payload_len);
 *     if (hr == 0) rf_queue_complete(q, job->id, job->attempt);
 *     else rf_queue_fail(q, job->id, job->attempt, "smtp timeout");
 *     rf_job_free(job);
 *   }
 *   // or let rf_queue_worker_start() run that loop on N threads.
 *
 * Job life cycle
 *
 *            add                 claim                 complete
 *   (none) ------> waiting ----------------> active -------------> completed
 *                    ^  (run_at <= now)        |  \
 *                    |     fail, attempts left  |   \ fail on the last attempt, or
 *                    +--------------------------+    \ lease expired on the last attempt
 *                      (run_at = now + backoff)        -----------------------> failed
 *   active with an expired lease (stalled) --claim--> active, attempt + 1
 *
 * Guarantees (precisely):
 *  - Deduplication: an id is accepted by rf_queue_add at most once for the
 *    lifetime of its record, whatever the concurrency (threads, and for
 *    SQLite, processes sharing the file). Records are kept after completion
 *    and failure (with remove_on_complete the payload is dropped but the id,
 *    status and attempt count stay as a tombstone), so a completed id is
 *    still a duplicate. Only rf_queue_purge deletes records; after a purge
 *    the id can be added again.
 *  - Delivery: at least once. Every added job is handed to a handler until
 *    it is completed or its attempts are spent; a worker that crashes
 *    mid-job (killed process, lost host) does not lose it: after the lease
 *    expires the next claim takes it again, with the next attempt number. A
 *    crash consumes an attempt; a stalled job whose last attempt expires
 *    becomes `failed` ("lease expired on the last attempt").
 *  - Processing: exactly once per job id while no worker crashes or
 *    overruns its lease: a claim is exclusive, a completed job is never
 *    claimed again, and a failed attempt is retried only because it failed.
 *    A handler that overruns its lease may run concurrently with the
 *    handler of the next attempt; its completion is then rejected
 *    (RF_ESTALE), so the job's final state is decided by the current
 *    attempt only. Side effects outside the queue (the mail sent) are the
 *    handler's: make them idempotent or fence them with job->attempt, or
 *    choose a lease longer than the handler's worst case (and extend it
 *    with rf_queue_extend).
 *
 * Time: due times and leases are wall-clock milliseconds (CLOCK_REALTIME,
 * or opts->clock_ms), so that every process sharing a file agrees on them
 * and they survive a restart. Processes on one host share the clock; across
 * hosts keep clocks synchronised and leases much longer than the skew.
 *
 * Backends, chosen by the URL at open time:
 *   "mem:"          in-process, not durable; one independent queue per open.
 *   "sqlite:PATH"   one SQLite file (WAL), durable, safe across threads and
 *                   processes sharing the file (each process opens it).
 *   "postgres://..." (or "postgresql://...") a libpq URL, plus pool=N (the
 *                   connections of this handle, default 8) and timeout_ms=N
 *                   (instead of busy_timeout_ms): table rf_jobs
 *                   in the session's schema, durable, safe across threads,
 *                   processes and hosts; claims use FOR UPDATE SKIP LOCKED.
 *                   A server that cannot be reached or is lost mid-call:
 *                   RF_EUNAVAIL from any call (docs/postgres.md).
 * Every backend implements the same semantics, checked by one shared test
 * suite (tests/unit/test_queue.c). See docs/queue.md.
 *
 * Thread-safety: every function may be called concurrently from any thread
 * on the same rf_queue_t, except rf_queue_close (call it once, after every
 * other call returned and every worker was stopped). A queue must not be
 * used across fork(): a child opens its own (RF_ESTATE otherwise).
 */
#ifndef RACEFREE_QUEUE_H
#define RACEFREE_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

/* Limits. Ids (job ids and worker ids) are 1..RF_QUEUE_ID_MAX characters
 * from [A-Za-z0-9._:-]. Error texts are truncated to RF_QUEUE_ERROR_MAX
 * bytes (at a UTF-8 character boundary). */
#define RF_QUEUE_ID_MAX              128
#define RF_QUEUE_ERROR_MAX           255
#define RF_QUEUE_PAYLOAD_DEFAULT_MAX ((size_t)65536)    /* 64 KiB: opts.max_payload = 0 */
#define RF_QUEUE_PAYLOAD_HARD_MAX    ((size_t)16777216) /* 16 MiB: largest max_payload */
#define RF_QUEUE_ATTEMPTS_MAX        1000u
#define RF_QUEUE_DEFAULT_ATTEMPTS    5u
#define RF_QUEUE_DEFAULT_BASE_MS     1000u
#define RF_QUEUE_DEFAULT_CAP_MS      60000u
#define RF_QUEUE_BACKOFF_MAX_MS      (7ull * 24 * 3600 * 1000) /* base, cap */
#define RF_QUEUE_LEASE_MAX_MS        (7ull * 24 * 3600 * 1000)
#define RF_QUEUE_DELAY_MAX_MS        (366ull * 24 * 3600 * 1000)

typedef struct rf_queue rf_queue_t;
typedef struct rf_queue_worker rf_queue_worker_t;

/* Options of a queue; NULL or zeroed fields take the defaults. */
typedef struct {
  /* Largest payload accepted by rf_queue_add (0: 64 KiB; at most 16 MiB). */
  size_t max_payload;
  /* How long an operation waits for the queue's lock (the SQLite write
   * lock of the file, the mutex of a memory queue) before giving up with
   * RF_EBUSY, having changed nothing. 0: 5000 ms. */
  int busy_timeout_ms;
  /* SQLite: true = synchronous=FULL (each commit reaches the disk before it
   * returns: survives power loss); false (default) = synchronous=NORMAL in
   * WAL mode (survives a crash of the process; the last commits may be lost
   * on power loss or an OS crash). Ignored by "mem:". */
  bool sync_full;
  /* Seed of the backoff jitter: 0 draws a fresh seed for every delay; any
   * other value makes the delays of this queue reproducible (tests). */
  uint64_t seed;
  /* The clock of due times and leases, in milliseconds. NULL: wall clock
   * (CLOCK_REALTIME). Tests pass a manual clock to expire leases and
   * backoffs without sleeping. Must be thread-safe and never go back. */
  uint64_t (*clock_ms)(void *clock_arg);
  void *clock_arg;
} rf_queue_opts_t;

/* Per-job options of rf_queue_add. NULL means RF_JOB_OPTS_DEFAULT; a
 * struct is taken literally (zero base and cap: retry at once). */
typedef struct {
  unsigned max_attempts;    /* 1..RF_QUEUE_ATTEMPTS_MAX, claims included */
  uint64_t backoff_base_ms; /* ceiling of the first retry's delay */
  uint64_t backoff_cap_ms;  /* largest ceiling, >= backoff_base_ms */
  uint64_t delay_ms;        /* first run no earlier than now + delay_ms */
  bool remove_on_complete;  /* drop payload and error text at completion */
} rf_job_opts_t;

#define RF_JOB_OPTS_DEFAULT                                                                        \
  ((rf_job_opts_t){RF_QUEUE_DEFAULT_ATTEMPTS, RF_QUEUE_DEFAULT_BASE_MS, RF_QUEUE_DEFAULT_CAP_MS,   \
                   0, false})

typedef enum {
  RF_JOB_WAITING = 0,   /* due at run_at (new, delayed or retrying) */
  RF_JOB_ACTIVE = 1,    /* claimed; lease_until may have passed (stalled) */
  RF_JOB_COMPLETED = 2, /* final */
  RF_JOB_FAILED = 3     /* final: attempts spent */
} rf_job_status_t;
#define RF_JOB_STATUS_COUNT 4

/* A claimed job, owned by the caller of rf_queue_claim: free it with
 * rf_job_free. `attempt` (1 for the first claim) is the fencing token to
 * pass to rf_queue_complete / rf_queue_fail / rf_queue_extend. `payload` is
 * NULL when payload_len is 0, and is followed by a NUL byte (so text
 * payloads can be used as strings). `error` is scratch space for a handler
 * run by rf_queue_worker_start: text written there becomes the job's
 * last_error when the handler fails (empty: rf_strerror of its status). */
typedef struct {
  char id[RF_QUEUE_ID_MAX + 1];
  unsigned attempt;
  unsigned max_attempts;
  uint64_t lease_until_ms;
  size_t payload_len;
  void *payload;
  char last_error[RF_QUEUE_ERROR_MAX + 1]; /* of the previous attempt, or "" */
  char error[RF_QUEUE_ERROR_MAX + 1];
} rf_job_t;

/* The state of a job, as returned by rf_queue_get (no allocation). */
typedef struct {
  rf_job_status_t status;
  unsigned attempts; /* claims so far (the last attempt number handed out) */
  unsigned max_attempts;
  uint64_t run_at_ms;      /* next due: run time (waiting), lease end (active) */
  uint64_t lease_until_ms; /* active: lease end; otherwise 0 */
  uint64_t created_ms;
  uint64_t updated_ms;
  size_t payload_len;                      /* 0 once removed on completion */
  bool removed;                            /* completed with remove_on_complete */
  char last_error[RF_QUEUE_ERROR_MAX + 1]; /* "" when none */
} rf_job_info_t;

/* Number of jobs per status (index with rf_job_status_t). */
typedef struct {
  uint64_t n[RF_JOB_STATUS_COUNT];
} rf_queue_counts_t;

/* rf_job_status_name: "waiting", "active", "completed", "failed" (the
 * words of the HTTP API and of the racefree_jobs_total{state=...} label);
 * "unknown" otherwise. Static string, thread-safe. */
const char *rf_job_status_name(rf_job_status_t status);

/* rf_queue_open: open (creating it if needed) the queue named by `url`
 * ("mem:", "sqlite:PATH" or "postgres://...") and store it in *out.
 * Errors: RF_EINVAL (NULL argument, malformed URL, invalid opts), RF_ENOTSUP
 * (unknown scheme, "sqlite::memory:" which a connection pool cannot share),
 * RF_ENOMEM, RF_EUNAVAIL (the SQLite file cannot be opened or is not a
 * database; PostgreSQL cannot be reached), RF_EIO (another database error,
 * e.g. a file that is a database but not a queue's), RF_EBUSY (the file
 * stayed locked longer than busy_timeout_ms). *out is written only on
 * success.
 * Blocking: file I/O for SQLite, a connection for PostgreSQL. Thread-safe. */
int rf_queue_open(rf_queue_t **out, const char *url, const rf_queue_opts_t *opts);

/* rf_queue_close: release the queue (memory queues lose their jobs; SQLite
 * jobs stay in the file). Returns RF_EBUSY and does nothing while a worker
 * started on it is running (stop it first); 0 otherwise, also for NULL.
 * Not thread-safe with other calls on the same queue. */
int rf_queue_close(rf_queue_t *q);

/* rf_queue_backend: the backend's name ("mem", "sqlite", "postgres" or
 * "postgresql": the URL's scheme), or NULL for NULL. */
const char *rf_queue_backend(const rf_queue_t *q);

/* rf_queue_add: enqueue job `id` with a copy of payload[0..len). The job is
 * due at now + opts->delay_ms. Returns 0, or RF_EEXIST when a record with
 * this id exists in any status (also completed, failed, removed on
 * completion): the queue is then unchanged. Other errors: RF_EINVAL (NULL
 * q/id, id not 1..128 of [A-Za-z0-9._:-], payload NULL with len > 0,
 * invalid job options), RF_EOVERFLOW (len > max_payload), RF_ENOMEM,
 * RF_EBUSY, RF_EIO, RF_ESTATE (used after fork). The caller keeps
 * ownership of payload. Wakes a sleeping worker of this process.
 * Thread-safe; blocks on the backend's lock (at most busy_timeout_ms). */
int rf_queue_add(rf_queue_t *q, const char *id, const void *payload, size_t len,
                 const rf_job_opts_t *opts);

/* rf_queue_claim: atomically take one due job: the oldest-due of the
 * waiting jobs with run_at <= now and the active jobs whose lease expired
 * (lease_until < now: stalled-job recovery); jobs due in the same
 * millisecond come in creation order (memory, PostgreSQL) or id order
 * (SQLite). The job becomes active,
 * leased to worker_id until now + lease_ms, attempts + 1; *out receives a
 * copy (caller frees it with rf_job_free). A stalled job on its last
 * attempt is never handed out: claims mark it failed ("lease expired on
 * the last attempt"), at the latest when a claim finds nothing due (SQLite
 * also every 256 claims of a handle; memory: at every claim).
 * Returns RF_ENOENT when no job is due (*out untouched). Other errors:
 * RF_EINVAL (NULL argument, invalid worker_id, lease_ms 0 or above
 * RF_QUEUE_LEASE_MAX_MS), RF_ENOMEM, RF_EBUSY, RF_EIO, RF_ESTATE. On an
 * error no job is claimed (on RF_ENOMEM SQLite undoes the claim it
 * committed: the job is due again with its attempt count; should the undo
 * fail too, the lease expiry brings it back like a crashed worker's job).
 * Thread-safe; blocks on the backend's lock. */
int rf_queue_claim(rf_queue_t *q, const char *worker_id, uint64_t lease_ms, rf_job_t **out);

/* rf_queue_complete: mark attempt `attempt` of job `id` done. Succeeds
 * only while the job is active with that attempt number (a lease that
 * expired without anyone reclaiming the job still counts). With
 * remove_on_complete, the payload and error text are dropped and the id
 * stays as a tombstone. Errors: RF_ENOENT (no such job), RF_ESTALE (the job
 * is not active with this attempt: reclaimed by another worker, already
 * completed or failed), RF_EINVAL, RF_EBUSY, RF_EIO, RF_ESTATE.
 * Thread-safe; blocks on the backend's lock. */
int rf_queue_complete(rf_queue_t *q, const char *id, unsigned attempt);

/* rf_queue_fail: report that attempt `attempt` of job `id` failed with
 * `error` (may be NULL; truncated to RF_QUEUE_ERROR_MAX bytes). If attempts
 * remain the job goes back to waiting, due after a delay drawn uniformly in
 * [0, min(cap, base * 2^(attempt-1))] ("full jitter", racefree/retry.h);
 * otherwise it becomes failed. Same errors and fencing as
 * rf_queue_complete. Wakes a sleeping worker. Thread-safe. */
int rf_queue_fail(rf_queue_t *q, const char *id, unsigned attempt, const char *error);

/* rf_queue_extend: heartbeat of a long job: set its lease to now +
 * lease_ms. Same fencing and errors as rf_queue_complete. Thread-safe. */
int rf_queue_extend(rf_queue_t *q, const char *id, unsigned attempt, uint64_t lease_ms);

/* rf_queue_get: the state of job `id` into *out. Errors: RF_ENOENT (no
 * record: never added, or purged), RF_EINVAL, RF_EBUSY, RF_EIO, RF_ESTATE.
 * Reads a consistent snapshot of one job. Thread-safe; no allocation. */
int rf_queue_get(rf_queue_t *q, const char *id, rf_job_info_t *out);

/* rf_queue_counts: number of jobs in each status (one consistent snapshot;
 * for SQLite a scan of the status index: call it for metrics, not per job).
 * Errors: RF_EINVAL, RF_EBUSY, RF_EIO, RF_ESTATE. Thread-safe. */
int rf_queue_counts(rf_queue_t *q, rf_queue_counts_t *out);

/* rf_queue_purge: delete the records of completed and failed jobs last
 * updated before `before_ms` (queue clock), ending their deduplication:
 * their ids can be added again. *purged (may be NULL) receives the number
 * deleted. Errors: RF_EINVAL, RF_EBUSY, RF_EIO, RF_ESTATE. Thread-safe. */
int rf_queue_purge(rf_queue_t *q, uint64_t before_ms, uint64_t *purged);

/* rf_queue_now_ms: the queue's clock (opts.clock_ms or the wall clock). */
uint64_t rf_queue_now_ms(const rf_queue_t *q);

/* rf_job_free: free a job returned by rf_queue_claim (NULL: no-op). */
void rf_job_free(rf_job_t *job);

/* ------------------------------------------------------------- workers */

/* A job handler: return 0 to complete the job, any other value to fail
 * this attempt (optionally after writing a message into job->error). It
 * runs on a worker thread; it may block (the worker does nothing else
 * meanwhile) and may call rf_queue_extend for long work. */
typedef int (*rf_job_handler)(rf_job_t *job, void *arg);

typedef struct {
  uint64_t claimed;   /* jobs handed to the handler */
  uint64_t completed; /* handler returned 0 and the completion was accepted */
  uint64_t failed;    /* handler failed and the failure was recorded */
  uint64_t stale;     /* report refused with RF_ESTALE (lease lost) */
  uint64_t errors;    /* backend errors (claim/complete/fail gave up) */
} rf_queue_worker_stats_t;

/* rf_queue_worker_start: run `nthreads` (1..256) threads that loop:
 * claim (lease lease_ms), run handler(job, arg), complete or fail with the
 * attempt number. When nothing is due a thread sleeps until rf_queue_add or
 * rf_queue_fail on this rf_queue_t signals it (same process), or poll_ms
 * (1..60000) passes (jobs added by other processes, delays, backoffs and
 * expired leases are found by polling). A backend error (RF_EBUSY...) on
 * complete/fail is retried 3 times, then left to lease expiry. Worker ids
 * are "w<pid>.<n>". Errors: RF_EINVAL, RF_ENOMEM, RF_EAGAIN (a thread could
 * not be created; none is left running). *out is written on success. */
int rf_queue_worker_start(rf_queue_t *q, unsigned nthreads, rf_job_handler handler, void *arg,
                          uint64_t lease_ms, unsigned poll_ms, rf_queue_worker_t **out);

/* rf_queue_worker_stop: graceful stop: no new claims; each thread finishes
 * the job it is running (handler, then complete/fail), then the threads
 * are joined and the worker freed. If `final` is not NULL it receives the
 * final counters (exact). Blocks until then; must not be called from a
 * handler. NULL w: no-op. Not thread-safe for one worker. */
void rf_queue_worker_stop(rf_queue_worker_t *w, rf_queue_worker_stats_t *final);

/* rf_queue_worker_stats: counters since start (relaxed reads of counters
 * that other threads update: each value is a recent one, not a snapshot
 * of all five). Thread-safe. */
void rf_queue_worker_stats(const rf_queue_worker_t *w, rf_queue_worker_stats_t *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_QUEUE_H */
