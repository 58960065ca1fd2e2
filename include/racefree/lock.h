/* racefree/lock.h - named locks held as leases, in-process or in Redis, with
 * fencing tokens; and the fence that protected resources keep.
 *
 * The race it prevents: two requests for the same payment id, served by two
 * processes (or hosts), both pass "is it already being processed?" and both
 * charge the card. A lock named "payment:<id>" that only one holder gets at a
 * time closes the window between the check and the act.
 *
 * What it does not prevent on its own: a distributed lock is a LEASE. It
 * expires after ttl_ms whether or not its holder has finished, because a
 * holder that crashed must not block everybody forever. A holder that is
 * merely slow (a GC pause, SIGSTOP, a swapped-out page, a long network
 * retry) can therefore wake up after its lease ran out, while another holder
 * owns the lock, and still believe it holds it. Checking "do I still hold
 * it?" just before writing does not help: the pause can fall between the
 * check and the write. The cure is the FENCING TOKEN: every acquisition
 * returns a number that is strictly larger than the token of every earlier
 * acquisition of the same key. The holder passes it with each write, and the
 * protected resource remembers the largest token it has seen and refuses
 * writes that carry a smaller one (rf_fence_apply, or in SQL a conditional
 * UPDATE ... WHERE fence_token <= $token). A paused holder's late write then
 * fails with RF_ESTALE instead of overwriting (or double charging) what the
 * newer holder did. See docs/lock.md.
 *
 *   rf_lock_t *lk;
 *   rf_lock_redis_opts_t ro = {.url = "redis://127.0.0.1:6379"};
 *   rf_lock_create_redis(&lk, &ro, NULL);
 *   rf_lock_lease_t lease;
 *   int rc = rf_lock_acquire(lk, "payment:p1", NULL, &lease);
 *   if (rc == 0) {
 *     rc = ledger_write(p1, ..., lease.token);   // fenced by the resource
 *     rf_lock_release(lk, &lease);
 *   }
 *
 * Backends sit behind rf_lock_backend_t (a struct of function pointers):
 *   - memory (rf_lock_create_mem): one process; a mutex + condvar table with
 *     the same lease semantics (entries expire) and tokens from a 64-bit
 *     counter. For the embedded single-process server and for tests.
 *   - Redis (rf_lock_create_redis): any number of processes and hosts; one
 *     Redis (not Redlock over several masters: see docs/lock.md for why the
 *     fencing token is what makes a single Redis acceptable here).
 * The generic layer (this header) owns what is common: the random owner
 * value, the retry policy (attempts, delay, jitter), the validity check right
 * after acquiring, the cap on the total hold time, and the lease bookkeeping.
 *
 * Thread-safety: an rf_lock_t may be used by any number of threads at once.
 * A lease is a plain value owned by the caller; one lease must not be
 * released or extended from two threads at the same time. An rf_lock_t must
 * not be used in a child after fork(): create a new one there.
 */
#ifndef RACEFREE_LOCK_H
#define RACEFREE_LOCK_H

#include <stdbool.h>
#include <stdint.h>

#include "racefree/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

/* Longest key accepted (bytes, excluding the NUL). */
#define RF_LOCK_KEY_MAX 200
/* Length of the random owner value (hex characters). */
#define RF_LOCK_OWNER_LEN 32
/* Upper bounds that catch nonsense (a negative number cast to unsigned). */
#define RF_LOCK_TTL_MAX_MS   (24ull * 3600 * 1000) /* one day */
#define RF_LOCK_ATTEMPTS_MAX 1000000u

/* Options of an acquisition. Every field is used as given (0 is a value, not
 * "default"); start from RF_LOCK_OPTS_DEFAULT and change what you need.
 *   ttl_ms           lease length, 1 .. RF_LOCK_TTL_MAX_MS. Choose it well
 *                    above the longest expected critical section; the
 *                    fencing token covers the unexpected ones.
 *   attempts         acquisitions tried in total (>= 1; 1 = try-lock).
 *   retry_delay_ms,  after a busy attempt wait retry_delay_ms plus a uniform
 *   retry_jitter_ms  random [0, retry_jitter_ms] before the next one (the
 *                    jitter keeps contending clients from retrying in step).
 *                    The memory backend wakes a waiter early when the key is
 *                    released.
 *   safety_pct       0..99: if, once granted, less than safety_pct percent of
 *                    the TTL is left (the request took too long, or the
 *                    process paused right after it), the lock is released
 *                    again and the acquisition fails with RF_ETIMEDOUT: a
 *                    lease that is about to run out protects nothing.
 *   max_hold_ms      0: no cap; otherwise rf_lock_extend refuses to extend
 *                    the lease beyond max_hold_ms after the acquisition
 *                    started (>= ttl_ms). A holder stuck in a loop of
 *                    extensions cannot keep a key forever. */
typedef struct {
  uint64_t ttl_ms;
  unsigned attempts;
  uint64_t retry_delay_ms;
  uint64_t retry_jitter_ms;
  unsigned safety_pct;
  uint64_t max_hold_ms;
} rf_lock_opts_t;

/* 10 s lease, a single attempt (try-lock), 10 % safety margin, no cap. */
#define RF_LOCK_OPTS_DEFAULT                                                                       \
  {                                                                                                \
    .ttl_ms = 10000, .attempts = 1, .retry_delay_ms = 50, .retry_jitter_ms = 50, .safety_pct = 10, \
    .max_hold_ms = 0                                                                               \
  }

/* A held lease: written by rf_lock_acquire, updated by rf_lock_extend. All
 * times are CLOCK_MONOTONIC nanoseconds of this process (rf_lock_now_ns).
 *   token           the fencing token: strictly greater than the token of
 *                   every earlier acquisition of the same key in the same
 *                   backend. Opaque otherwise (Redis tokens start near the
 *                   current time in microseconds, see docs/lock.md).
 *   start_ns        when the request that won the lock was sent: the lease
 *                   cannot have started earlier.
 *   valid_until_ns  a conservative local expiry: start + ttl minus an
 *                   allowance for clock drift (1 % of the TTL + 2 ms).
 *   hold_until_ns   the max_hold cap (UINT64_MAX when none).
 *   key, owner      the lock key and the random value that identifies this
 *                   holder (release and extend compare it). */
typedef struct {
  uint64_t token;
  uint64_t start_ns;
  uint64_t valid_until_ns;
  uint64_t hold_until_ns;
  uint64_t ttl_ms;
  char key[RF_LOCK_KEY_MAX + 1];
  char owner[RF_LOCK_OWNER_LEN + 1];
} rf_lock_lease_t;

/* ------------------------------------------------------------ backends */

/* The interface every backend implements. `impl` is the backend's own state.
 * Every operation is called concurrently from many threads and must be
 * thread-safe; none may block longer than the backend's own timeouts.
 *   acquire  if `key` is free (or expired), make `owner` its holder for
 *            ttl_ms and store a new fencing token in *token; if `owner`
 *            already holds it (a retried request whose reply was lost),
 *            refresh the TTL and store the token of that holding.
 *            0, RF_EBUSY (held by another owner), RF_EUNAVAIL (backend
 *            unreachable or failing: fail closed), RF_ENOMEM, RF_EIO.
 *   release  delete the key if and only if `owner` holds it (compare and
 *            delete, atomically). 0, RF_ESTATE (not held by owner: the
 *            lease expired, and maybe someone else holds it now),
 *            RF_EUNAVAIL, RF_EIO.
 *   extend   set the key's TTL to ttl_ms from now if and only if `owner`
 *            holds it. 0, RF_ESTATE, RF_EUNAVAIL, RF_EIO.
 *   wait     optional (NULL: the caller sleeps): block for at most max_ms,
 *            returning earlier when `key` may have become free. Returns 0.
 *   ping     optional: 0 when the backend is reachable, RF_EUNAVAIL if not.
 *   destroy  free impl. */
typedef struct rf_lock_backend {
  const char *name;
  int (*acquire)(void *impl, const char *key, const char *owner, uint64_t ttl_ms, uint64_t *token);
  int (*release)(void *impl, const char *key, const char *owner);
  int (*extend)(void *impl, const char *key, const char *owner, uint64_t ttl_ms);
  int (*wait)(void *impl, const char *key, uint64_t max_ms);
  int (*ping)(void *impl);
  void (*destroy)(void *impl);
} rf_lock_backend_t;

typedef struct rf_lock rf_lock_t;

/* rf_lock_create: a lock service on a custom backend. `backend` must stay
 * valid for the life of the service (usually a static const); ownership of
 * `impl` passes to the service in every case: on error backend->destroy(impl)
 * has been called already. `defaults` (copied; NULL: RF_LOCK_OPTS_DEFAULT)
 * are used by calls that pass NULL options. Errors: RF_EINVAL (NULL out or
 * backend, a backend without acquire/release/extend/destroy, invalid
 * defaults), RF_ENOMEM. *out is written only on success. Thread-safe. */
int rf_lock_create(rf_lock_t **out, const rf_lock_backend_t *backend, void *impl,
                   const rf_lock_opts_t *defaults);

/* rf_lock_create_mem: the in-process backend. Locks are visible to the
 * threads of this process only (not to forked children: they get a copy).
 * Errors as rf_lock_create. */
int rf_lock_create_mem(rf_lock_t **out, const rf_lock_opts_t *defaults);

/* Options of the Redis backend. 0 / NULL fields take the documented default.
 *   url                    "redis://[[user]:password@]host[:port][/db]"
 *                          (required; port 6379 and db 0 by default).
 *   prefix                 key namespace (NULL: "rf"). Lock `k` lives at
 *                          "<prefix>:lock:{k}", its token counter at
 *                          "<prefix>:fence:{k}" (one hash slot in a cluster).
 *   pool_size              connections kept (0: 4), each used by one thread
 *                          at a time; more threads wait for a free one.
 *   connect_timeout_ms     TCP connect timeout (0: 500).
 *   command_timeout_ms     per-command send/receive timeout (0: 1000): a
 *                          hung Redis costs at most this much per command.
 *   reconnect_interval_ms  after a failed connect, calls fail fast with
 *                          RF_EUNAVAIL for this long before the next try
 *                          (0: 100), so a dead Redis is not hammered. */
typedef struct {
  const char *url;
  const char *prefix;
  unsigned pool_size;
  unsigned connect_timeout_ms;
  unsigned command_timeout_ms;
  unsigned reconnect_interval_ms;
} rf_lock_redis_opts_t;

/* rf_lock_create_redis: the Redis backend (hiredis). Connects lazily: a
 * Redis that is down at creation is not an error (rf_lock_ping tells);
 * every operation reconnects by itself once Redis is back. Errors:
 * RF_EINVAL (NULL arguments, a malformed URL, a prefix over 64 bytes,
 * absurd timeouts or pool size), RF_ENOMEM; *out written only on success.
 * Thread-safe. */
int rf_lock_create_redis(rf_lock_t **out, const rf_lock_redis_opts_t *redis,
                         const rf_lock_opts_t *defaults);

/* rf_lock_destroy: free the service and its backend (closes connections).
 * Leases still held are not released (they expire). NULL is ignored. Must
 * not race with calls on the same service. */
void rf_lock_destroy(rf_lock_t *lk);

/* rf_lock_backend_name: "memory", "redis", or a custom backend's name;
 * "" for NULL. */
const char *rf_lock_backend_name(const rf_lock_t *lk);

/* rf_lock_acquire: acquire `key` (1..RF_LOCK_KEY_MAX bytes) under `opts`
 * (NULL: the service's defaults). Tries up to opts->attempts times, waiting
 * retry_delay_ms + jitter between busy attempts; then checks that at least
 * safety_pct % of the TTL is left. On success fills *lease (token, times,
 * key, owner) and returns 0. Errors: RF_EBUSY (held by another holder after
 * every attempt), RF_ETIMEDOUT (granted, but too late to be useful: it was
 * released again), RF_EUNAVAIL (backend unreachable: fail closed, not
 * retried), RF_EINVAL (NULL, empty or long key, invalid opts), RF_ENOMEM,
 * RF_EIO. *lease is written only on success. Blocks: up to attempts x
 * (delay + jitter + the backend's timeouts). Thread-safe. */
int rf_lock_acquire(rf_lock_t *lk, const char *key, const rf_lock_opts_t *opts,
                    rf_lock_lease_t *lease);

/* rf_lock_release: give the lock back, if this lease still holds it (compare
 * and delete: a lease that expired never deletes a newer holder's lock).
 * 0, RF_ESTATE (the lease had expired: the critical section may have
 * overlapped another holder's; fenced writes were still safe), RF_EUNAVAIL
 * (not reachable: the lock will expire by itself), RF_EINVAL (NULL). After
 * any return the lease must not be used again except for rf_lock_release
 * retries on RF_EUNAVAIL. Thread-safe for distinct leases. */
int rf_lock_release(rf_lock_t *lk, rf_lock_lease_t *lease);

/* rf_lock_extend: extend the lease to ttl_ms from now (1..RF_LOCK_TTL_MAX_MS)
 * if it still holds the lock (compare and pexpire). Updates
 * lease->valid_until_ns and ttl_ms. The token does not change (it is still
 * the same holding). Errors: RF_ERANGE (now + ttl_ms would pass the
 * max_hold cap: refused, the lease is unchanged and still held until its
 * current expiry), RF_ESTATE (no longer held), RF_EUNAVAIL, RF_EINVAL.
 * Thread-safe for distinct leases. */
int rf_lock_extend(rf_lock_t *lk, rf_lock_lease_t *lease, uint64_t ttl_ms);

/* rf_lock_remaining_ms: milliseconds of conservative validity left on the
 * lease by the local clock (0 when expired or NULL). A hint for deciding to
 * extend or give up; never a substitute for fencing. Pure, thread-safe. */
uint64_t rf_lock_remaining_ms(const rf_lock_lease_t *lease);

/* rf_lock_ping: 0 when the backend is reachable (always for memory),
 * RF_EUNAVAIL otherwise, RF_EINVAL for NULL. For readiness probes. */
int rf_lock_ping(rf_lock_t *lk);

/* The critical section of rf_lock_with: runs while the lock is held; use
 * lease->token to fence every write. Returns 0 or a negative status. */
typedef int (*rf_lock_fn)(void *arg, const rf_lock_lease_t *lease);

/* rf_lock_with: acquire, run fn, release - the withLock of the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions". Returns
 * the acquisition's error (fn not run), else fn's status when it is not 0,
 * else the release's status (RF_ESTATE tells the caller the lease expired
 * during fn; RF_EUNAVAIL that the lock is left to expire). Thread-safe. */
int rf_lock_with(rf_lock_t *lk, const char *key, const rf_lock_opts_t *opts, rf_lock_fn fn,
                 void *arg);

/* rf_lock_opts_check: 0 when *opts is valid (the ranges above), else
 * RF_EINVAL. */
int rf_lock_opts_check(const rf_lock_opts_t *opts);

/* rf_lock_now_ns: the clock the lease times use (CLOCK_MONOTONIC, ns). */
uint64_t rf_lock_now_ns(void);

/* ------------------------------------------------------------ fencing */

/* The fence a protected resource keeps: for every resource name, the largest
 * fencing token it has accepted. Tokens are compared per resource, so name
 * the resource after the lock key that guards it (or anything the lock key
 * determines). This in-process table serves resources that live in one
 * process (the simulated card processor, an in-memory ledger); a resource in
 * a database keeps the token in the row and fences in the UPDATE itself
 * (docs/lock.md, "The payments ledger"). Entries are kept until destroy:
 * forgetting a token would let a stale holder in again. */
typedef struct rf_fence rf_fence_t;

/* rf_fence_create: an empty fence. RF_EINVAL (NULL), RF_ENOMEM. */
int rf_fence_create(rf_fence_t **out);

/* rf_fence_destroy: free it. NULL is ignored. No call may be running. */
void rf_fence_destroy(rf_fence_t *f);

/* The guarded write of rf_fence_apply. Returns 0 or a negative status. */
typedef int (*rf_fence_write_fn)(void *arg, uint64_t token);

/* rf_fence_apply: the fenced write. Atomically with respect to every other
 * rf_fence_apply/rf_fence_check on the same resource: if `token` is smaller
 * than the largest token accepted for `resource`, return RF_ESTALE without
 * calling fn; otherwise record `token` as the largest, call fn(arg, token)
 * and return its status. Equal tokens are accepted (one holder may write
 * several times). The token stays recorded even if fn fails: a newer holder
 * has shown up, older ones are stale whatever fn did. Errors: RF_EINVAL
 * (NULL f/resource/fn, empty resource, token 0), RF_ENOMEM, RF_ESTALE, or
 * fn's status. Blocks while another write to the same resource runs (fn runs
 * under the resource's mutex: keep it short, and never call the same fence
 * for the same resource from inside fn). */
int rf_fence_apply(rf_fence_t *f, const char *resource, uint64_t token, rf_fence_write_fn fn,
                   void *arg);

/* rf_fence_check: rf_fence_apply without a write: accept and record `token`
 * (0) or reject it (RF_ESTALE). On its own this is only a check: a write
 * made after it is NOT protected against a newer holder that checks in
 * between. Use it where the caller already serialises the check with its
 * write (inside the resource's own transaction or lock); otherwise use
 * rf_fence_apply. Errors as rf_fence_apply. */
int rf_fence_check(rf_fence_t *f, const char *resource, uint64_t token);

/* rf_fence_last: the largest token accepted for `resource` in *token.
 * RF_ENOENT when none was, RF_EINVAL for NULL arguments. */
int rf_fence_last(rf_fence_t *f, const char *resource, uint64_t *token);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_LOCK_H */
