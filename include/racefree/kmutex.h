/* racefree/kmutex.h - a mutex per string key, with entries that exist only
 * while somebody holds or waits on them.
 *
 * The race it prevents: "lock per user id" written as a check-then-insert
 * on a table of busy keys,
 *
 *   if (!table_has(key)) { table_insert(key); ... critical section ... }
 *
 * lets two requests both see the key absent and both enter. Here the check
 * and the claim are one step under the table's (striped) lock, so for each
 * key at most one holder exists at any time.
 *
 * Memory stays bounded by the keys in use: an entry {key, held, FIFO of
 * waiters} is created on the first lock of a key and freed as soon as
 * nobody holds or waits on it, so millions of distinct keys over time cost
 * nothing once they are unlocked (rf_kmutex_entries() returns to 0).
 *
 * Fairness: waiters are served strictly FIFO and the lock is handed over
 * directly by the unlocker (the key never becomes free in between, so a
 * newcomer cannot barge in ahead of a waiter).
 *
 * Ownership is by key, not by thread: any thread may unlock a key that is
 * held (a request locked with rf_kmutex_lock_cb may be finished by another
 * thread). The lock is not recursive: locking a key you hold waits for
 * yourself (until the timeout).
 *
 * Two ways to wait:
 *   rf_kmutex_lock       blocks the calling thread (condition variable),
 *                        with a timeout;
 *   rf_kmutex_lock_cb    never blocks: cb(0) runs once the key is granted,
 *                        synchronously when free, else later on the thread
 *                        that unlocks it; or cb(RF_ETIMEDOUT) on the timer
 *                        thread when the timeout passes first.
 * See docs/kmutex.md for the grant/timeout protocol.
 */
#ifndef RACEFREE_KMUTEX_H
#define RACEFREE_KMUTEX_H

#include <stddef.h>

#include "racefree/errors.h"
#include "racefree/timer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

typedef struct rf_kmutex rf_kmutex_t;

/* rf_kmutex_create: an empty keyed mutex. *out written on success only.
 * Errors: RF_EINVAL (out NULL), RF_ENOMEM. The caller owns it. */
int rf_kmutex_create(rf_kmutex_t **out);

/* rf_kmutex_destroy: free km and every entry. Callback waiters still
 * queued get cb(RF_ECANCELED) (on this thread) and their timeouts are
 * cancelled; keys still held are simply forgotten. Precondition: no thread
 * is inside rf_kmutex_lock/trylock/unlock/lock_cb on km (in particular no
 * thread blocked in rf_kmutex_lock). Waits for timeout callbacks that are
 * already running on a timer thread to finish (they are short). NULL is a
 * no-op. */
void rf_kmutex_destroy(rf_kmutex_t *km);

/* rf_kmutex_lock: acquire `key`, blocking the calling thread while another
 * holder has it. timeout_ms < 0: wait forever; 0: do not wait; > 0: wait at
 * most that long (CLOCK_MONOTONIC). Returns 0 (caller holds key), or
 * RF_ETIMEDOUT (not acquired; the waiter has removed itself from the queue
 * and holds nothing), RF_EINVAL (km or key NULL), RF_ENOMEM (a new entry
 * could not be allocated). A grant that arrives together with the timeout
 * wins: if the unlocker handed the key over before this waiter re-took the
 * table lock, the result is 0 and the caller holds the key, so a handed-over
 * lock is never lost. The key string is copied. Thread-safe. */
int rf_kmutex_lock(rf_kmutex_t *km, const char *key, int timeout_ms);

/* rf_kmutex_trylock: acquire `key` if nobody holds it. 0 or RF_EBUSY;
 * RF_EINVAL, RF_ENOMEM as above. Never blocks (beyond the table lock). */
int rf_kmutex_trylock(rf_kmutex_t *km, const char *key);

/* rf_kmutex_unlock: release `key`. If waiters are queued, the first one is
 * granted the key directly (a blocking waiter is woken; a callback waiter's
 * cb(0) runs on this thread before rf_kmutex_unlock returns, after the
 * table lock is released). Callbacks granted while this thread is already
 * running a grant callback (a cb that unlocks again) are queued and run by
 * the outermost unlock, in order, so chains of callback waiters do not
 * grow the stack. Errors: RF_ESTATE (key not held), RF_EINVAL. Any thread
 * may unlock. Thread-safe. */
int rf_kmutex_unlock(rf_kmutex_t *km, const char *key);

/* Result of rf_kmutex_lock_cb: status 0 = granted (the caller now holds the
 * key and must unlock it), RF_ETIMEDOUT = not granted, RF_ECANCELED = not
 * granted, the kmutex is being destroyed. Runs exactly once per accepted
 * request, with no kmutex lock held; may call any rf_kmutex function on
 * km (except destroy). */
typedef void (*rf_kmutex_cb)(int status, void *cb_arg);

/* rf_kmutex_lock_cb: acquire `key` without blocking.
 *   - key free: granted at once, cb(0, cb_arg) runs before this returns;
 *   - timeout_ms == 0 and key held: cb(RF_ETIMEDOUT) runs before return;
 *   - otherwise the request joins the key's FIFO; the unlocking thread
 *     grants it and runs cb(0); if `timer` is not NULL and timeout_ms > 0 a
 *     timeout is armed on it, and cb(RF_ETIMEDOUT) runs on the timer thread
 *     if the deadline passes first. timer NULL or timeout_ms < 0: no
 *     timeout (wait until granted).
 * Grant and timeout race under the table lock: whichever changes the
 * request's state first wins, the loser does nothing, so cb runs exactly
 * once. Returns 0 when cb has run or will run exactly once; on an error cb
 * never runs: RF_EINVAL (km, key or cb NULL), RF_ENOMEM, RF_ESHUTDOWN (the
 * timer is shut down). The timer may be shut down while requests wait
 * (run_pending = true fires their timeouts now; false drops them, and the
 * requests then wait until granted or destroyed), but it must not be
 * destroyed (freed) before the kmutex. Thread-safe. */
int rf_kmutex_lock_cb(rf_kmutex_t *km, const char *key, int timeout_ms, rf_timer_t *timer,
                      rf_kmutex_cb cb, void *cb_arg);

/* rf_kmutex_entries: live key entries (held or waited on). A relaxed
 * snapshot: exact once the threads using km have been joined (the join
 * orders their updates before the read). 0 for NULL. */
size_t rf_kmutex_entries(rf_kmutex_t *km);

/* rf_kmutex_waiters: requests (blocking and callback) queued on `key` right
 * now, 0 if the key is free, unknown or an argument is NULL. O(waiters),
 * under the key's stripe lock. For tests and diagnostics: the value can be
 * stale as soon as it is returned. */
size_t rf_kmutex_waiters(rf_kmutex_t *km, const char *key);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_KMUTEX_H */
