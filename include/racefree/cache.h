/* racefree/cache.h - a bounded, TTL-expiring cache whose misses are
 * single-flight: N concurrent misses for one key run the loader once.
 *
 * The race it prevents is the "safe" cache service of the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions", whose
 * "is it cached? is it loading? then I load it" sequence lets two requests
 * both decide to load. Here a miss joins or starts the singleflight flight
 * for its key (racefree/singleflight.h); the flight inserts the value into
 * the cache *before* it leaves the flight table, so there is no instant at
 * which a key is neither cached nor loading, and a caller that starts a new
 * flight re-checks the cache first. Hence the guarantee: within one TTL
 * window (and without rf_cache_invalidate or eviction of the key) the
 * loader runs at most once per key, however many callers ask at once.
 *
 * Failed loads are not cached: every caller waiting on the failed flight
 * gets the failure, the next caller loads again.
 *
 * Bounded: never more than max_entries entries. Eviction is CLOCK (second
 * chance) per stripe, so a hit only sets a bit: hits take no lock and write
 * no line shared with other hits (entries removed while a hit may still read
 * them are freed after it; see docs/cache.md). Entries expire ttl_ms after they
 * were loaded (monotonic clock). With stale_ms > 0, an entry past its TTL
 * but younger than ttl_ms + stale_ms is still returned (as a hit) and the
 * first such hit starts one refresh flight (stale-while-revalidate).
 */
#ifndef RACEFREE_CACHE_H
#define RACEFREE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "racefree/singleflight.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

typedef struct rf_cache rf_cache_t;

typedef struct {
  size_t max_entries; /* > 0; at most RF_CACHE_MAX_ENTRIES */
  uint64_t ttl_ms;    /* 0: entries never expire */
  uint64_t stale_ms;  /* 0: no stale-while-revalidate */
  unsigned stripes;   /* stripes, 0: automatic (see docs/cache.md);
                         rounded down to a power of two, at most 256 and
                         at most max_entries */
} rf_cache_opts_t;

#define RF_CACHE_MAX_ENTRIES ((size_t)1 << 40)
#define RF_CACHE_MAX_TTL_MS  ((uint64_t)1 << 52) /* ~142,000 years */

typedef enum {
  RF_CACHE_HIT = 0,   /* served from the cache (including a stale hit) */
  RF_CACHE_MISS = 1,  /* this caller ran the loader */
  RF_CACHE_SHARED = 2 /* waited on another caller's load */
} rf_cache_src_t;

/* Counters since creation. hits + misses + shared = completed gets (a
 * blocking get that timed out counts as a miss if it started the load, and
 * not at all if it had joined one). `entries` is a snapshot and includes
 * expired entries not yet replaced or evicted. */
typedef struct {
  uint64_t hits;          /* includes stale_hits */
  uint64_t misses;        /* gets that started a load */
  uint64_t shared;        /* gets that joined a load in progress */
  uint64_t loads;         /* loader invocations (misses + refreshes) */
  uint64_t load_failures; /* loads completed with a non-zero status */
  uint64_t evictions;     /* entries removed to respect max_entries */
  uint64_t entries;       /* entries stored now */
  uint64_t stale_hits;    /* hits served past the TTL (stale_ms > 0) */
  uint64_t refreshes;     /* refresh flights started by stale hits */
} rf_cache_stats_t;

/* rf_cache_create: a new cache. Returns 0 and *out; RF_EINVAL (out or opts
 * NULL, max_entries 0), RF_ERANGE (max_entries, ttl_ms or stale_ms beyond
 * the limits above), RF_ENOMEM. */
int rf_cache_create(rf_cache_t **out, const rf_cache_opts_t *opts);

/* rf_cache_destroy: drop every entry and the cache. NULL is ignored. Loads
 * still in progress are not cut short: their waiters get their results (the
 * values are no longer cached) and the remaining memory is released when
 * the last of them completes. No other call on `c` may run concurrently or
 * follow. */
void rf_cache_destroy(rf_cache_t *c);

/* rf_cache_get: the value for `key`, blocking on a miss.
 *
 * Hit (a fresh entry, or a stale one within ttl+stale): *out is a new
 * reference to the cached result, *src = RF_CACHE_HIT; no lock is taken
 * (but for the stripe's mutex in the rare lookup that overlapped a table
 * doubling) and nothing waits for another hit. The first stale hit of an entry also
 * starts its refresh flight on this thread before returning (with a
 * synchronous loader this caller pays for that load; with an asynchronous
 * one it does not wait).
 * Miss: joins the load in progress for `key` (*src = RF_CACHE_SHARED) or
 * starts one, running fn(call, key, loader_arg) on this thread exactly as
 * rf_sf_do does (*src = RF_CACHE_MISS); waits up to timeout_ms (< 0:
 * forever). A successful result is inserted (replacing an expired entry,
 * evicting one if the stripe is full) before any waiter sees it.
 *
 * A failed load is not an error here: it returns 0 with *out a result whose
 * rf_sf_result_status() is the loader's code; nothing is cached.
 * The caller owns the reference in *out: rf_sf_result_release it.
 * Errors (nothing stored): RF_EINVAL (c, key, fn or out NULL), RF_ENOMEM,
 * RF_ETIMEDOUT (this caller stops waiting; the load goes on for others and
 * its value is still cached). `src` may be NULL.
 * Thread-safety: any number of threads. Blocking: on a miss only. */
int rf_cache_get(rf_cache_t *c, const char *key, rf_sf_loader fn, void *loader_arg, int timeout_ms,
                 rf_sf_result_t **out, rf_cache_src_t *src);

/* Callback of rf_cache_get_cb: owns one reference to res (release it). */
typedef void (*rf_cache_cb)(rf_sf_result_t *res, rf_cache_src_t src, void *cb_arg);

/* rf_cache_get_cb: the non-blocking form, for event-driven servers. On a hit
 * cb(res, RF_CACHE_HIT, cb_arg) runs synchronously before return (for a
 * stale hit the refresh starts after cb returned). On a miss the load is
 * joined or started (its loader runs on this thread now, as for
 * rf_sf_do_cb) and cb runs once when it completes, on the completing thread
 * -- possibly before rf_cache_get_cb returns.
 * Returns 0 when cb has run or will run exactly once; on error cb is never
 * called: RF_EINVAL (c, key, fn or cb NULL), RF_ENOMEM.
 * Thread-safety: any number of threads. Never blocks except for running
 * the loader of a load this caller starts. */
int rf_cache_get_cb(rf_cache_t *c, const char *key, rf_sf_loader fn, void *loader_arg,
                    rf_cache_cb cb, void *cb_arg);

/* rf_cache_peek: the hit path alone, for a caller that must know whether
 * it will have to wait before it commits to waiting (an event-driven
 * server answers a hit at once and suspends a connection only on a miss).
 * Returns 0 with *out a new reference to the result of a fresh entry,
 * counted as a hit; RF_ENOENT when `key` has no fresh entry -- nothing is
 * loaded or counted, and a stale entry is not returned, so that the
 * rf_cache_get / rf_cache_get_cb that follows serves it and starts its
 * refresh; RF_EINVAL (c, key or out NULL).
 * Thread-safety: any number of threads. Never blocks. */
int rf_cache_peek(rf_cache_t *c, const char *key, rf_sf_result_t **out);

/* rf_cache_invalidate: remove `key`'s entry and detach its load in
 * progress, if any: waiters of that load still get its result, but it is
 * not cached, and the next get loads again. Returns 0 if something was
 * removed or detached, RF_ENOENT if neither, RF_EINVAL (NULL argument).
 * Thread-safety: any thread. Blocking: takes the stripe's writer mutex. The
 * entry (and the cache's reference to its value) is freed at once unless a
 * hit may still be reading it; then at a later write or rf_cache_destroy. */
int rf_cache_invalidate(rf_cache_t *c, const char *key);

/* rf_cache_stats: a snapshot of the counters (each exact, the set not
 * taken atomically while other threads run). NULL c or out: *out zeroed
 * when out is not NULL. Thread-safety: any thread. */
void rf_cache_stats(rf_cache_t *c, rf_cache_stats_t *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_CACHE_H */
