/* store.h - the repository interface of racefreed.
 *
 * Routes know nothing of SQL: they call the operations below, and each
 * database (SQLite, PostgreSQL) implements them behind one struct
 * of function pointers chosen at run time by the URL scheme. Atomicity lives
 * in the database statement, not in the caller: a unique index for users, a
 * conditional UPDATE for stock, a version check for wallets. Each operation
 * documents what it guarantees under concurrency ("atomic: ...").
 *
 * Errors: every operation returns 0 or a negative RF_E... code
 * (racefree/errors.h). Outputs are written only on success. The mapping is
 * the same for every backend:
 *
 *   RF_EINVAL     bad argument (NULL, empty or over-long id, negative stock
 *                 or balance, quantity < 1); nothing was touched
 *   RF_ENOENT     the row (user, item, wallet) does not exist
 *   RF_EEXIST     unique conflict (user_create: that email exists)
 *   RF_ECONFLICT  the row exists but the condition failed: wallet_cas saw a
 *                 different version; item_purchase found stock < quantity
 *                 (the route answers 409 out_of_stock)
 *   RF_ERANGE     an output buffer is too small
 *   RF_EBUSY      the database stayed locked for longer than the busy
 *                 timeout (SQLite: SQLITE_BUSY after busy_timeout;
 *                 PostgreSQL: statement_timeout, or serialization retries
 *                 spent); the operation had no effect and may be retried
 *   RF_EUNAVAIL   the database cannot be opened or reached (PostgreSQL: a
 *                 write whose connection died after sending may or may not
 *                 have been applied, whole: docs/postgres.md)
 *   RF_ENOMEM     out of memory
 *   RF_EIO        any other database error (corruption, disk full, ...)
 *
 * Thread-safety: a store is callable from any number of threads at once.
 * The SQLite backend keeps a small pool of connections (one per concurrent
 * caller, opened lazily, bounded; a caller beyond the bound waits for a free
 * one) with its prepared statements cached per connection. Direct calls
 * block for the duration of one short SQL transaction (plus, under write
 * contention, up to the busy timeout). Every write transaction starts with
 * BEGIN IMMEDIATE, so two writers never deadlock on a read-to-write lock
 * upgrade. A thread that must not block (an event loop) uses the executor
 * instead (rf_store_submit, below): writes then run on the store's own
 * writer thread, in group commits.
 *
 * Identifiers (item ids, wallet user ids) are NUL-terminated strings of
 * 1..RF_STORE_ID_MAX bytes; the store does not check the character set (the
 * routes validate it) but rejects empty and over-long ones with RF_EINVAL.
 * Emails are stored exactly as given: callers pass them normalised (trimmed,
 * lower-cased), which is what makes the unique index mean "same address".
 *
 * The "unchecked" and "set" operations exist only for racefreed --unsafe:
 * they are the naive read-then-write building blocks the article warns
 * about, kept here so that the unsafe handlers race on a real database.
 */
#ifndef RF_STORE_H
#define RF_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "racefree/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_STORE_ID_MAX    128 /* longest identifier, in bytes */
#define RF_STORE_EMAIL_MAX 254 /* longest email, in bytes (buffer: +1) */

typedef struct rf_store rf_store_t;
typedef struct rf_payment rf_payment_t; /* payments section below */
typedef struct rf_charge rf_charge_t;

/* ------------------------------------------------------ the executor */

/* A unit of database work handed to the store's executor (see
 * rf_store_submit). The caller owns the struct and keeps it alive until
 * `done` has been called; the store only links it into its queue. */
typedef struct rf_store_job rf_store_job_t;
typedef int (*rf_store_work_fn)(rf_store_t *s, void *arg);
typedef void (*rf_store_done_fn)(void *arg, int rc);
struct rf_store_job {
  rf_store_work_fn work; /* runs the rf_store_* calls; its return is rc */
  rf_store_done_fn done; /* called once, after the work is durable or undone */
  void *arg;
  /* private to the store */
  int rc;
  rf_store_job_t *next;
};

#define RF_STORE_READ  0u /* the work only reads */
#define RF_STORE_WRITE 1u /* the work writes: it runs on the database's writer */

/* The backend interface. Every function receives the store it was opened
 * as; see the rf_store_* wrappers below for the contracts. Later additions
 * (payments, jobs, idempotency records) are appended at the end. */
typedef struct rf_store_ops {
  const char *kind; /* "sqlite", "postgres" */
  void (*close)(rf_store_t *s);
  int (*ping)(rf_store_t *s);

  /* users */
  int (*user_create)(rf_store_t *s, const char *email, int64_t *id);
  int (*user_get)(rf_store_t *s, int64_t id, char *email, size_t cap);
  int (*user_find_unchecked)(rf_store_t *s, const char *email, int *found);
  int (*user_insert_unchecked)(rf_store_t *s, const char *email, int64_t *id);
  int (*user_get_unchecked)(rf_store_t *s, int64_t id, char *email, size_t cap);

  /* inventory */
  int (*item_put)(rf_store_t *s, const char *item, int64_t stock);
  int (*item_get)(rf_store_t *s, const char *item, int64_t *stock);
  int (*item_purchase)(rf_store_t *s, const char *item, int64_t qty, int64_t *remaining);
  int (*item_set_stock)(rf_store_t *s, const char *item, int64_t stock);

  /* wallets */
  int (*wallet_put)(rf_store_t *s, const char *user, int64_t balance, int64_t *version);
  int (*wallet_get)(rf_store_t *s, const char *user, int64_t *balance, int64_t *version);
  int (*wallet_cas)(rf_store_t *s, const char *user, int64_t expected_version, int64_t new_balance,
                    int64_t *new_version);
  int (*wallet_set)(rf_store_t *s, const char *user, int64_t balance, int64_t *new_version);

  /* payments: idempotency records and the card processor's ledger */
  int (*payment_begin)(rf_store_t *s, const char *id, int64_t amount, const char *fingerprint,
                       uint64_t lease_ms, const char *owner, rf_payment_t *out);
  int (*payment_finish)(rf_store_t *s, const char *id, uint64_t token, int declined,
                        int http_status, const char *charge_id, const char *body);
  int (*payment_get)(rf_store_t *s, const char *id, rf_payment_t *out);
  int (*charge_record)(rf_store_t *s, const char *payment_id, int64_t amount, int declined,
                       uint64_t token, rf_charge_t *out);
  int (*charge_stats)(rf_store_t *s, const char *payment_id, int64_t *count, int64_t *total);
  int (*charge_record_unchecked)(rf_store_t *s, const char *payment_id, int64_t amount,
                                 int declined, rf_charge_t *out);
  int (*payment_put_unchecked)(rf_store_t *s, const char *id, int64_t amount, int declined,
                               int http_status, const char *charge_id, const char *body);

  /* the mail sender's ledger */
  int (*email_send)(rf_store_t *s, const char *job_id, unsigned attempt, const char *to,
                    int *first);
  int (*email_send_unchecked)(rf_store_t *s, const char *job_id, const char *to);
  int (*email_sent_count)(rf_store_t *s, const char *to, int64_t *count);

  /* whether RF_STORE_READ work runs at once on the calling thread */
  int reads_inline;
} rf_store_ops_t;

/* Every backend's store begins with this header. */
struct rf_store {
  const rf_store_ops_t *ops;
  struct rf__exec *exec; /* the executor (store.c), started by the backend */
};

/* ------------------------------------------------------------ lifecycle */

/* rf_store_open: open the database named by url and bring its schema up to
 * date. Accepted: "sqlite:PATH" (the file is created if missing; its
 * directory must exist) and "postgres://..." / "postgresql://..." (a libpq
 * URL plus the store's pool= and timeout_ms= parameters: docs/postgres.md).
 * Schema changes are versioned migrations recorded in a schema_version
 * table, applied in order inside one write transaction (PostgreSQL: under
 * an advisory lock), so opening an up-to-date database (even from several
 * processes at once) changes nothing. SQLite settings: WAL journal,
 * synchronous=NORMAL, foreign_keys=ON, temp_store=MEMORY, busy_timeout
 * 5000 ms. Errors: RF_EINVAL (NULL, unknown scheme, malformed URL),
 * RF_ENOTSUP (a scheme this build lacks), RF_EUNAVAIL (cannot open, reach
 * or migrate), RF_EBUSY, RF_ENOMEM. On success *out owns the store
 * (rf_store_close).
 * Blocking: opens and migrates synchronously.
 * Threads: a store runs threads of its own (the executor; SQLite: the
 * writer and the checkpointer). A store opened before fork() is refused in
 * the child (RF_ESTATE) and may only be closed there; open stores after
 * fork, as racefreed's worker processes do. */
int rf_store_open(const char *url, rf_store_t **out);

/* rf_store_open_err: as rf_store_open, and on failure writes a one-line
 * human explanation (including the database's own message) into err
 * (err may be NULL). For start-up messages. */
int rf_store_open_err(const char *url, rf_store_t **out, char *err, size_t errlen);

/* rf_store_close: close every connection and free the store. NULL is a
 * no-op. No other call on s may be in flight or start afterwards. */
void rf_store_close(rf_store_t *s);

/* -------------------------------------------------------- the executor
 *
 * A thread that serves many clients (an HTTP event loop) must never wait on
 * the database: with SQLite a writer waits for the file's write lock (the
 * busy handler sleeps), with PostgreSQL every statement is a network round
 * trip. rf_store_submit hands work to the store instead:
 *
 *   RF_STORE_WRITE  the work runs on the database's writer. SQLite: exactly
 *                   one writer thread and connection per store, which takes
 *                   every write queued at that moment and runs them in ONE
 *                   transaction (group commit), each job inside its own
 *                   SAVEPOINT: a job whose work returns non-zero is rolled
 *                   back alone (its rc is kept), the others commit. Each
 *                   job's `done` is called after the COMMIT that holds its
 *                   write has returned, so a caller that answers from `done`
 *                   answers only what is durable to the same degree as a
 *                   single-statement transaction (docs/write-path.md). A
 *                   batch is bounded: at most RF_STORE_BATCH_MAX jobs and
 *                   RF_STORE_BATCH_MS milliseconds of work; the rest waits
 *                   for the next transaction. Jobs run in submission order.
 *                   If the COMMIT fails, every job of the batch that had
 *                   succeeded gets the commit's error instead (nothing of
 *                   the batch is in the database).
 *                   PostgreSQL: the executor's threads, each job in the
 *                   transactions its calls make.
 *   RF_STORE_READ   SQLite (reads_inline): the work runs at once on the
 *                   calling thread (WAL readers never wait for the writer);
 *                   `done` is called before rf_store_submit returns.
 *                   PostgreSQL: on the executor's threads, like writes.
 *
 * Inside `work`, the rf_store_* calls are made as usual with the store
 * passed in; on the writer they use the writer's connection and
 * transaction. `work` must not block on anything but the database.
 * `done` runs on the executor's thread (or the caller's, for inline reads).
 *
 * Returns 0 (done will be called exactly once), RF_EBUSY (more than
 * RF_STORE_QUEUE_MAX jobs waiting: the caller should answer "overloaded"),
 * RF_ESTATE (called in another process than the one that opened the store,
 * or the store is closing), RF_EINVAL. On error `done` is not called. */
#define RF_STORE_BATCH_MAX   128  /* default jobs per transaction */
#define RF_STORE_BATCH_MS    20   /* default milliseconds of work per transaction */
#define RF_STORE_BATCH_LIMIT 1024 /* the largest max_jobs accepted */
#define RF_STORE_QUEUE_MAX   8192
int rf_store_submit(rf_store_t *s, unsigned flags, rf_store_job_t *job);

/* rf_store_set_batch_limits: a group commit takes at most max_jobs jobs
 * (1..RF_STORE_BATCH_LIMIT; 1 turns group commit off) and stops taking more
 * after max_ms milliseconds of work (>= 1). Takes effect from the next
 * transaction. RF_EINVAL. */
int rf_store_set_batch_limits(rf_store_t *s, unsigned max_jobs, unsigned max_ms);

/* rf_store_reads_inline: whether RF_STORE_READ work runs on the calling
 * thread (SQLite) rather than on the executor (PostgreSQL). */
static inline int rf_store_reads_inline(const rf_store_t *s) {
  return s ? s->ops->reads_inline : 1;
}

/* rf_store_run: submit work and wait for it, for a thread that may block
 * (a background worker): the write then shares the writer's group commit
 * instead of taking the write lock on a connection of its own. Returns the
 * work's result (after its COMMIT), or rf_store_submit's error. */
int rf_store_run(rf_store_t *s, unsigned flags, rf_store_work_fn work, void *arg);

/* rf_store_drain: wait until every job submitted so far has completed
 * (its `done` has returned). For shutdown, before the owners of the jobs
 * go away. */
void rf_store_drain(rf_store_t *s);

/* rf_store_cancel: every job submitted and not started yet completes now,
 * on the calling thread, with `rc` (its work does not run); jobs already
 * running finish normally. For shutdown, so that a stop does not wait for
 * a long queue in front of a busy database. Returns how many. */
size_t rf_store_cancel(rf_store_t *s, int rc);

/* rf_store_exec_stats: since the store was opened, *batches transactions
 * (SQLite's group commits; PostgreSQL: one per job) and *jobs jobs run by
 * the executor. Either may be NULL. */
void rf_store_exec_stats(const rf_store_t *s, uint64_t *batches, uint64_t *jobs);

/* The event-loop guard. A thread that must never wait on the database
 * marks itself with rf_store_loop_thread(true); every write transaction the
 * store then begins on that thread (and with PostgreSQL every round trip)
 * is counted, and rf_store_loop_waits() returns this thread's count. The
 * HTTP layer exports the sum as a metric; tests assert it stays 0. */
void rf_store_loop_thread(int on);
uint64_t rf_store_loop_waits(void);

/* rf_store_kind: "sqlite" or "postgres"; static string. */
static inline const char *rf_store_kind(const rf_store_t *s) {
  return s ? s->ops->kind : "none";
}

/* rf_store_ping: run a trivial query. 0, RF_EUNAVAIL or RF_EBUSY. */
static inline int rf_store_ping(rf_store_t *s) {
  return s ? s->ops->ping(s) : RF_EINVAL;
}

/* ---------------------------------------------------------------- users */

/* rf_store_user_create: insert a user with this (normalised) email.
 * Atomic: the unique index on users.email decides; of N concurrent creates
 * with one email exactly one returns 0, the others RF_EEXIST.
 * *id: the new user's id (> 0). */
static inline int rf_store_user_create(rf_store_t *s, const char *email, int64_t *id) {
  return s ? s->ops->user_create(s, email, id) : RF_EINVAL;
}

/* rf_store_user_get: copy the email of user `id` into email[cap]
 * (cap >= RF_STORE_EMAIL_MAX + 1 always suffices). RF_ENOENT, RF_ERANGE. */
static inline int rf_store_user_get(rf_store_t *s, int64_t id, char *email, size_t cap) {
  return s ? s->ops->user_get(s, id, email, cap) : RF_EINVAL;
}

/* --unsafe twin. users_unchecked is a separate table WITHOUT a unique
 * index. find: *found = 1 if some row has this email, else 0. insert:
 * inserts unconditionally. Each call alone is atomic; find-then-insert is
 * not, which is the point: concurrent sign-ups create duplicates.
 * get_unchecked reads users_unchecked (the ids of the two tables are
 * independent). */
static inline int rf_store_user_find_unchecked(rf_store_t *s, const char *email, int *found) {
  return s ? s->ops->user_find_unchecked(s, email, found) : RF_EINVAL;
}
static inline int rf_store_user_insert_unchecked(rf_store_t *s, const char *email, int64_t *id) {
  return s ? s->ops->user_insert_unchecked(s, email, id) : RF_EINVAL;
}
static inline int rf_store_user_get_unchecked(rf_store_t *s, int64_t id, char *email, size_t cap) {
  return s ? s->ops->user_get_unchecked(s, id, email, cap) : RF_EINVAL;
}

/* ------------------------------------------------------------ inventory */

/* rf_store_item_put: create the item or reset its stock (upsert); stock
 * >= 0 else RF_EINVAL. Atomic. */
static inline int rf_store_item_put(rf_store_t *s, const char *item, int64_t stock) {
  return s ? s->ops->item_put(s, item, stock) : RF_EINVAL;
}

/* rf_store_item_get: *stock of the item, or RF_ENOENT. */
static inline int rf_store_item_get(rf_store_t *s, const char *item, int64_t *stock) {
  return s ? s->ops->item_get(s, item, stock) : RF_EINVAL;
}

/* rf_store_item_purchase: take qty (>= 1) from the item's stock.
 * Atomic: one conditional statement, UPDATE ... SET stock = stock - qty
 * WHERE id = item AND stock >= qty, inside one IMMEDIATE transaction that
 * also tells the two failures apart: RF_ENOENT (no such item) or
 * RF_ECONFLICT (stock < qty: out of stock; nothing changed). Stock never
 * goes below zero, and the quantities of successful purchases sum exactly
 * to the stock removed. *remaining: the stock right after this purchase. */
static inline int rf_store_item_purchase(rf_store_t *s, const char *item, int64_t qty,
                                         int64_t *remaining) {
  return s ? s->ops->item_purchase(s, item, qty, remaining) : RF_EINVAL;
}

/* --unsafe twin: overwrite the stock of an existing item (RF_ENOENT if
 * missing, RF_EINVAL if stock < 0) without looking at what is there. The
 * naive handler does item_get, checks, waits, item_set_stock: lost updates
 * and overselling follow. */
static inline int rf_store_item_set_stock(rf_store_t *s, const char *item, int64_t stock) {
  return s ? s->ops->item_set_stock(s, item, stock) : RF_EINVAL;
}

/* -------------------------------------------------------------- wallets */

/* rf_store_wallet_put: create the wallet or reset its balance (upsert);
 * balance >= 0 else RF_EINVAL. Versions: a new wallet gets version 1; a
 * reset of an existing wallet increments its version (it is a write like
 * any other), so a read-modify-write that straddles a reset fails its
 * version check instead of silently undoing the reset.
 * *version (may be NULL): the version after the write. Atomic. */
static inline int rf_store_wallet_put(rf_store_t *s, const char *user, int64_t balance,
                                      int64_t *version) {
  return s ? s->ops->wallet_put(s, user, balance, version) : RF_EINVAL;
}

/* rf_store_wallet_get: *balance and *version (either may be NULL) of the
 * wallet, or RF_ENOENT. One consistent snapshot of the row. */
static inline int rf_store_wallet_get(rf_store_t *s, const char *user, int64_t *balance,
                                      int64_t *version) {
  return s ? s->ops->wallet_get(s, user, balance, version) : RF_EINVAL;
}

/* rf_store_wallet_cas: optimistic write. Atomic: UPDATE wallets SET
 * balance = new_balance, version = version + 1 WHERE user_id = user AND
 * version = expected_version. Returns 0 and *new_version (may be NULL,
 * = expected_version + 1), RF_ECONFLICT if the version moved on (retry:
 * re-read, re-check, re-write), RF_ENOENT if there is no such wallet,
 * RF_EINVAL if new_balance < 0 (the balance is never negative: the schema
 * also has CHECK (balance >= 0)). */
static inline int rf_store_wallet_cas(rf_store_t *s, const char *user, int64_t expected_version,
                                      int64_t new_balance, int64_t *new_version) {
  return s ? s->ops->wallet_cas(s, user, expected_version, new_balance, new_version) : RF_EINVAL;
}

/* --unsafe twin: overwrite the balance without a version check; the
 * version still rises by one per write (*new_version may be NULL).
 * RF_ENOENT if missing, RF_EINVAL if balance < 0. The naive handler reads
 * with wallet_get, checks, waits, wallet_set: two concurrent withdrawals
 * both succeed but only one is subtracted (a lost update). */
static inline int rf_store_wallet_set(rf_store_t *s, const char *user, int64_t balance,
                                      int64_t *new_version) {
  return s ? s->ops->wallet_set(s, user, balance, new_version) : RF_EINVAL;
}

/* ------------------------------------------------------------- payments */

/* Idempotency records (table payments) and the simulated card processor's
 * ledger (tables charges, charge_fences). docs/payments.md tells the whole
 * protocol; in short, for one payment id:
 *
 *   payment_begin   claims the record (new: token 1) or takes over an
 *                   expired lease (token + 1), or reports the record's state
 *   charge_record   the processor charges, fenced by that token
 *   payment_finish  the holder of the current token stores the outcome
 *
 * Tokens are the lease generation of the record: every claim or takeover
 * raises it by one, durably, so they keep increasing across restarts and
 * across processes sharing the database. Lease times are wall-clock
 * milliseconds (CLOCK_REALTIME), so every process and every restart agrees
 * on them. A backend that does not implement an operation of this section
 * or the next (its ops entry is NULL) answers RF_ENOTSUP. */

#define RF_STORE_BODY_MAX      1024 /* stored answer body, bytes (buffer: +1) */
#define RF_STORE_CHARGE_ID_MAX 40   /* "ch_..." (buffer: +1) */
#define RF_STORE_FPR_MAX       128  /* request fingerprint, bytes */
#define RF_STORE_OWNER_MAX     128  /* lease owner, bytes */

typedef enum {
  RF_PAY_PROCESSING = 0, /* claimed, outcome not stored yet */
  RF_PAY_SUCCEEDED = 1,  /* final */
  RF_PAY_DECLINED = 2,   /* final */
} rf_payment_state_t;

/* What payment_begin found (rf_payment_t.claim). */
typedef enum {
  RF_PAY_CLAIMED = 0,    /* new record, the caller holds the lease with token 1 */
  RF_PAY_TAKEN_OVER = 1, /* the previous holder's lease had expired: the caller
                          * holds it now with the next token; has_charge and
                          * charge tell what the ledger recorded before */
  RF_PAY_BUSY = 2,       /* processing under another holder's live lease */
  RF_PAY_DONE = 3,       /* final: replay http_status and body */
  RF_PAY_MISMATCH = 4,   /* same id, another amount or fingerprint */
} rf_payment_claim_t;

/* One call to the card processor, as its ledger recorded it. */
struct rf_charge {
  char charge_id[RF_STORE_CHARGE_ID_MAX + 1]; /* "ch_<n>", unique in the database */
  int64_t amount;
  int declined; /* 1: the processor declined (nothing was taken) */
  uint64_t token;
};

/* An idempotency record (plus, after a takeover, the ledger's answer). */
struct rf_payment {
  rf_payment_claim_t claim; /* payment_begin only */
  rf_payment_state_t state;
  int64_t amount;         /* as stored (MISMATCH: the first request's) */
  uint64_t token;         /* the lease generation (CLAIMED/TAKEN_OVER: the caller's) */
  uint64_t lease_left_ms; /* processing: time left on the lease, 0 when expired */
  int http_status;        /* final: the stored answer's status */
  char charge_id[RF_STORE_CHARGE_ID_MAX + 1]; /* final: "" when declined */
  char body[RF_STORE_BODY_MAX + 1];           /* final: the stored answer's body */
  int has_charge;                             /* TAKEN_OVER: charge is valid */
  rf_charge_t charge;                         /* TAKEN_OVER: the ledger's first charge */
};

/* rf_store_payment_begin: the idempotency claim, in one write transaction.
 * Atomic: of any number of concurrent calls for one id (threads or
 * processes), exactly one creates the record (claim RF_PAY_CLAIMED, token
 * 1, leased to `owner` for lease_ms); the others see it:
 *   - amount or fingerprint differ from the stored ones: RF_PAY_MISMATCH
 *     (checked first, whatever the state);
 *   - final: RF_PAY_DONE with the stored status, charge id and body;
 *   - processing with a live lease: RF_PAY_BUSY (lease_left_ms);
 *   - processing with an expired lease (its holder crashed or stalled):
 *     the first caller takes it over - compare-and-set on (token, expired
 *     lease), so exactly one of concurrent recoverers wins, the others get
 *     RF_PAY_BUSY - and gets RF_PAY_TAKEN_OVER with token + 1. In the same
 *     transaction the new token is shown to the ledger's fence (so a charge
 *     by the stale holder is refused from now on) and the ledger's first
 *     charge for the id, if any, is returned (has_charge, charge): the
 *     caller then finishes with it instead of charging again.
 * fingerprint: 1..RF_STORE_FPR_MAX bytes describing the request (e.g.
 * "amount=42"); owner: 1..RF_STORE_OWNER_MAX bytes naming the holder (for
 * diagnostics); lease_ms 1 .. 86400000 (one day); amount >= 1.
 * Errors: RF_EINVAL, RF_EBUSY, RF_EIO, RF_ENOMEM. *out written on 0 only. */
static inline int rf_store_payment_begin(rf_store_t *s, const char *id, int64_t amount,
                                         const char *fingerprint, uint64_t lease_ms,
                                         const char *owner, rf_payment_t *out) {
  return !s ? RF_EINVAL
         : !s->ops->payment_begin
             ? RF_ENOTSUP
             : s->ops->payment_begin(s, id, amount, fingerprint, lease_ms, owner, out);
}

/* rf_store_payment_finish: store the outcome (succeeded, or declined when
 * `declined`), the answer's http_status and body (<= RF_STORE_BODY_MAX
 * bytes) and charge_id ("" or NULL when declined). Atomic and fenced: only
 * while the record is processing with exactly this token (UPDATE ... WHERE
 * token = ?); otherwise RF_ESTALE (a newer holder took over, or the
 * outcome is stored already) and nothing changes; RF_ENOENT without a
 * record. Also RF_EINVAL, RF_EBUSY, RF_EIO. */
static inline int rf_store_payment_finish(rf_store_t *s, const char *id, uint64_t token,
                                          int declined, int http_status, const char *charge_id,
                                          const char *body) {
  return !s ? RF_EINVAL
         : !s->ops->payment_finish
             ? RF_ENOTSUP
             : s->ops->payment_finish(s, id, token, declined, http_status, charge_id, body);
}

/* rf_store_payment_get: the record of `id` (claim is RF_PAY_DONE when
 * final, RF_PAY_BUSY while processing). RF_ENOENT, RF_EINVAL, RF_EBUSY,
 * RF_EIO. One consistent snapshot. */
static inline int rf_store_payment_get(rf_store_t *s, const char *id, rf_payment_t *out) {
  return !s ? RF_EINVAL : !s->ops->payment_get ? RF_ENOTSUP : s->ops->payment_get(s, id, out);
}

/* rf_store_charge_record: the card processor charges (or, with
 * `declined`, declines) `amount` for payment_id and records it in its
 * ledger, in one write transaction fenced by `token`: if the ledger has
 * seen a larger token for this payment id (a newer holder charged, or
 * asked about charges while taking over), RF_ESTALE and nothing is
 * written; otherwise the token is remembered as the largest seen and the
 * charge is inserted. *out (may be NULL): the recorded charge. Token >= 1.
 * Errors: RF_EINVAL, RF_ESTALE, RF_EBUSY, RF_EIO. */
static inline int rf_store_charge_record(rf_store_t *s, const char *payment_id, int64_t amount,
                                         int declined, uint64_t token, rf_charge_t *out) {
  return !s ? RF_EINVAL
         : !s->ops->charge_record
             ? RF_ENOTSUP
             : s->ops->charge_record(s, payment_id, amount, declined, token, out);
}

/* rf_store_charge_stats: how many times the processor was called for
 * payment_id (*count, charges and declines) and the total amount actually
 * charged (*total, declines excluded). 0/0 for an unknown id. Either
 * output may be NULL. RF_EINVAL, RF_EBUSY, RF_EIO. */
static inline int rf_store_charge_stats(rf_store_t *s, const char *payment_id, int64_t *count,
                                        int64_t *total) {
  return !s                      ? RF_EINVAL
         : !s->ops->charge_stats ? RF_ENOTSUP
                                 : s->ops->charge_stats(s, payment_id, count, total);
}

/* --unsafe twins: charge without any fence or claim (every call records a
 * charge), and store a record unconditionally (insert or overwrite, state
 * final). The naive handler checks a per-process set, adds to it, charges
 * and saves: concurrent requests with one id are all charged. */
static inline int rf_store_charge_record_unchecked(rf_store_t *s, const char *payment_id,
                                                   int64_t amount, int declined, rf_charge_t *out) {
  return !s ? RF_EINVAL
         : !s->ops->charge_record_unchecked
             ? RF_ENOTSUP
             : s->ops->charge_record_unchecked(s, payment_id, amount, declined, out);
}
static inline int rf_store_payment_put_unchecked(rf_store_t *s, const char *id, int64_t amount,
                                                 int declined, int http_status,
                                                 const char *charge_id, const char *body) {
  return !s ? RF_EINVAL
         : !s->ops->payment_put_unchecked
             ? RF_ENOTSUP
             : s->ops->payment_put_unchecked(s, id, amount, declined, http_status, charge_id, body);
}

/* ---------------------------------------------------------- mail sender */

/* rf_store_email_send: the simulated mail sender delivers mail for job
 * `job_id` (attempt `attempt` >= 1) to `to`, idempotently per job id: in
 * one write transaction, if the ledger already holds a send for job_id,
 * nothing is written and *first = 0; otherwise the send is recorded and
 * *first = 1. So however often a job is run (retries, a worker killed
 * after the send and before its completion), its mail goes out once.
 * RF_EINVAL, RF_EBUSY, RF_EIO. */
static inline int rf_store_email_send(rf_store_t *s, const char *job_id, unsigned attempt,
                                      const char *to, int *first) {
  return !s                    ? RF_EINVAL
         : !s->ops->email_send ? RF_ENOTSUP
                               : s->ops->email_send(s, job_id, attempt, to, first);
}

/* --unsafe twin: record a send unconditionally (attempt 0). */
static inline int rf_store_email_send_unchecked(rf_store_t *s, const char *job_id, const char *to) {
  return !s                              ? RF_EINVAL
         : !s->ops->email_send_unchecked ? RF_ENOTSUP
                                         : s->ops->email_send_unchecked(s, job_id, to);
}

/* rf_store_email_sent_count: sends recorded to `to` (0 when none).
 * RF_EINVAL, RF_EBUSY, RF_EIO. */
static inline int rf_store_email_sent_count(rf_store_t *s, const char *to, int64_t *count) {
  return !s                          ? RF_EINVAL
         : !s->ops->email_sent_count ? RF_ENOTSUP
                                     : s->ops->email_sent_count(s, to, count);
}

#ifdef __cplusplus
}
#endif

#endif /* RF_STORE_H */
