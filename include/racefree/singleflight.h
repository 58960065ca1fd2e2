/* racefree/singleflight.h - one load per key at a time, shared by everyone
 * who asks while it runs.
 *
 * The race it prevents (the "safe" cache service of the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions"):
 *
 *   if (cache.has(key)) return cache.get(key);
 *   if (loading.has(key)) return wait_for(key);
 *   loading.add(key);            // A and B both got here: two loads
 *   value = fetch(key);
 *
 * The check ("is somebody loading this key?") and the act ("I am loading
 * it") are one step under a lock here: the first caller for a key creates a
 * *flight* and starts the loader; every caller that arrives before the
 * flight completes joins it and receives the same result. When the flight
 * completes it leaves the table, so the next caller starts a new one
 * (singleflight shares loads, it does not cache; see racefree/cache.h).
 *
 * Loaders may be synchronous (call rf_sf_complete before returning) or
 * asynchronous (hand the call to another thread, a timer, an event loop, and
 * complete it there). Waiters may block (rf_sf_do, with a timeout that only
 * affects that waiter) or register a callback (rf_sf_do_cb, for event-driven
 * servers that must not block a thread).
 *
 * Results are immutable and reference-counted: every waiter receives its own
 * reference and releases it; the value's free function runs when the last
 * reference goes. Nothing leaks when waiters time out or a key is forgotten.
 *
 * See docs/singleflight.md for the lock protocol and the costs.
 */
#ifndef RACEFREE_SINGLEFLIGHT_H
#define RACEFREE_SINGLEFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

typedef struct rf_sf rf_sf_t;               /* the table of flights */
typedef struct rf_sf_call rf_sf_call_t;     /* one in-flight execution for a key */
typedef struct rf_sf_result rf_sf_result_t; /* reference-counted result */

/* The loader. It is started exactly once per flight, on the thread of the
 * caller that created the flight, with no lock of the table held. It must
 * eventually call rf_sf_complete(call, ...) exactly once: before returning
 * (synchronous loader) or later from any thread (asynchronous loader).
 * `key` is the flight's own copy: valid until rf_sf_complete returns, and
 * in any case until the loader function returns.
 * A loader must not wait (rf_sf_do) on its own key: it would wait for
 * itself until its timeout. */
typedef void (*rf_sf_loader)(rf_sf_call_t *call, const char *key, void *loader_arg);

/* rf_sf_complete: end a flight with a result. `status` is 0 or a negative
 * RF_E... code (a positive status is recorded as RF_ELOAD). Ownership of
 * `value` (may be NULL; `len` is opaque to the library) passes to the
 * result: free_fn(value) runs when the last reference to the result is
 * released (free_fn may be NULL: nothing to free), on the thread that
 * releases it, never with a lock of the library held. A failed flight may
 * carry a value too (error details); it is handled the same way.
 *
 * Completing wakes every blocking waiter, runs every callback waiter on
 * this thread (before rf_sf_complete returns, no lock held), and removes
 * the flight from the table (unless rf_sf_forget already did).
 *
 * Returns 0; RF_EINVAL for a NULL call; RF_ESTATE when the call was already
 * completed -- then ownership of `value` stays with the caller. The second
 * completion is detected reliably while the call is still referenced,
 * which is always the case inside the loader function (its starter holds a
 * reference until the loader returns); after an asynchronous completion
 * the call may be freed at once, so completing it again from outside the
 * loader is a use-after-free: complete exactly once.
 * Thread-safety: any thread. Blocking: briefly takes the flight's bucket
 * lock; runs the callbacks. */
int rf_sf_complete(rf_sf_call_t *call, int status, void *value, size_t len,
                   void (*free_fn)(void *));

/* rf_sf_create: a new, empty flight table. Returns 0 and *out, RF_EINVAL
 * (out NULL) or RF_ENOMEM. */
int rf_sf_create(rf_sf_t **out);

/* rf_sf_destroy: release the table. NULL is ignored. Flights still in
 * progress are not cut short: their waiters still get their results, and
 * the memory of the table is released when the last of them completes
 * (deferred destruction). No new call may be made on `sf` after destroy.
 * Thread-safety: must not race with calls on the same table. */
void rf_sf_destroy(rf_sf_t *sf);

/* rf_sf_do: get the result of the flight for `key`, blocking.
 *
 * If no flight for `key` is in progress, this caller creates one and runs
 * fn(call, key, loader_arg) on its own thread (*shared = false); otherwise
 * it joins the flight in progress (*shared = true). Either way it then
 * waits up to timeout_ms (< 0: forever, 0: do not wait) for the flight to
 * complete and stores a new reference to the result in *out; the caller
 * releases it with rf_sf_result_release. A failed load is not an error of
 * rf_sf_do: it returns 0 and the result carries the loader's status.
 *
 * Errors (nothing is stored in *out): RF_EINVAL (sf, key, fn or out NULL),
 * RF_ENOMEM (could not create the flight), RF_ETIMEDOUT (this waiter gave
 * up; the flight goes on and every other waiter still gets the result).
 * `shared` may be NULL; it is written on success and on RF_ETIMEDOUT.
 * Thread-safety: any number of threads. Blocking: runs the loader (if
 * first) and waits for the flight. */
int rf_sf_do(rf_sf_t *sf, const char *key, rf_sf_loader fn, void *loader_arg, int timeout_ms,
             rf_sf_result_t **out, bool *shared);

/* Callback of rf_sf_do_cb: owns one reference to res (release it). */
typedef void (*rf_sf_cb)(rf_sf_result_t *res, bool shared, void *cb_arg);

/* rf_sf_do_cb: the non-blocking form of rf_sf_do. Creates or joins the
 * flight for `key` exactly as rf_sf_do does (a creating caller runs the
 * loader on its own thread now), then returns without waiting. cb is
 * called exactly once when the flight completes, on the completing thread:
 * possibly before rf_sf_do_cb returns (synchronous loader), possibly later
 * on another thread. `shared` is false for the caller that created the
 * flight. Returns 0 when cb will run (or has run); on error cb is never
 * called: RF_EINVAL (sf, key, fn or cb NULL), RF_ENOMEM.
 * Thread-safety: any number of threads. Blocking: only the loader's own
 * work when this caller creates the flight. */
int rf_sf_do_cb(rf_sf_t *sf, const char *key, rf_sf_loader fn, void *loader_arg, rf_sf_cb cb,
                void *cb_arg);

/* rf_sf_forget: detach the flight in progress for `key` from the table, so
 * that the next call for `key` starts a new flight. Waiters of the detached
 * flight are unaffected: they get its result when it completes. Returns 0,
 * RF_ENOENT (no flight in progress for key), RF_EINVAL (NULL argument).
 * Thread-safety: any thread. Blocking: briefly takes a bucket lock. */
int rf_sf_forget(rf_sf_t *sf, const char *key);

/* rf_sf_inflight: flights currently in the table (diagnostics and tests;
 * the value may be outdated as soon as it is returned). 0 for NULL. */
size_t rf_sf_inflight(rf_sf_t *sf);

/* rf_sf_result_status: the loader's status (0 or negative). RF_EINVAL for
 * a NULL result. Results are immutable: any thread, no lock. */
int rf_sf_result_status(const rf_sf_result_t *r);

/* rf_sf_result_value: the value and (when len is not NULL) its length.
 * The pointer stays valid as long as the caller holds its reference.
 * NULL (and *len = 0) for a NULL result. Any thread, no lock. */
const void *rf_sf_result_value(const rf_sf_result_t *r, size_t *len);

/* rf_sf_result_retain: take one more reference; returns r (NULL for NULL).
 * Any thread; one atomic increment. */
rf_sf_result_t *rf_sf_result_retain(rf_sf_result_t *r);

/* rf_sf_result_release: drop one reference; the last one runs the value's
 * free function and frees the result. NULL is ignored. Any thread. */
void rf_sf_result_release(rf_sf_result_t *r);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_SINGLEFLIGHT_H */
