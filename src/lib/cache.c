/* cache.c - bounded TTL cache with single-flight misses (see racefree/cache.h).
 *
 * Structure
 * ---------
 * The key space is split into S lock stripes (S a power of two, chosen from
 * max_entries, see rf__cache_pick_stripes). Each stripe has a reader-writer
 * lock, its own chained hash table (doubling when the load factor passes
 * 1), its own share of max_entries (the shares add up to max_entries
 * exactly, so the total can never pass it) and its own CLOCK ring.
 *
 * Eviction: CLOCK (second chance). Every entry sits on a circular list with
 * a hand. A hit sets the entry's `ref` bit -- an atomic store, so hits need
 * only the shared lock. When a stripe is full, the insert (exclusive lock)
 * moves the hand: an entry past ttl+stale is evicted at once; an entry with
 * `ref` set gets its bit cleared and a second chance; the first entry with
 * `ref` clear is evicted. A full turn clears every bit, so the hand stops
 * within two turns; amortised over inserts it is O(1). CLOCK approximates
 * LRU; exact LRU would move the entry to the front of a list on every hit,
 * which needs the exclusive lock on the hot path -- the thing a cache must
 * not do. The price of striping is that a stripe may evict while another
 * still has room (the per-stripe bound is max_entries / S, as in Guava's
 * segmented LocalCache); small caches get one stripe and a global bound.
 *
 * Lock protocol
 * -------------
 *   hit:      rdlock(stripe); find; check expiry; retain result; set ref;
 *             unlock.                    (no exclusive lock, no allocation)
 *   miss:     rf_sf_do / rf_sf_do_cb on the key (singleflight bucket lock).
 *             The starter's loader (rf__cache_loader) re-checks the cache
 *             under rdlock, then runs the user's loader.
 *   complete: the singleflight completion hook (rf__cache_hook) runs with
 *             the flight's bucket lock held and takes wrlock(stripe) to
 *             insert, *before* the flight is unlinked. Lock order:
 *             singleflight bucket -> cache stripe, never the reverse.
 *             What the insert displaces (an evicted entry, a replaced
 *             result) is freed by rf__cache_after once the bucket lock is
 *             released: a value's free function is user code and never
 *             runs under a lock of the library.
 *
 * Why no load can be duplicated within a TTL window: a key is, at every
 * instant, cached or loading (the insert happens before the unlink, under
 * the bucket lock). A caller that saw "not cached" and then "not loading"
 * must have looked at the flight table after the unlink, hence after the
 * insert; its re-check of the cache (in rf__cache_loader) then finds the
 * fresh entry and completes its flight with it instead of loading.
 *
 * Invalidation: rf_cache_invalidate first detaches the key's flight
 * (rf_sf_forget), then removes the entry. The hook inserts only when the
 * flight is still in the table, and it decides that under the bucket lock;
 * so a load that started before the invalidation either inserted before
 * the forget (and the removal that follows takes it out) or sees
 * in_table == false and does not insert. No stale value survives.
 *
 * Memory ordering: every field of an entry except `ref` and `refreshing`
 * is written under the stripe's exclusive lock and read under at least the
 * shared lock. `ref` and `refreshing` are written by readers holding only
 * the shared lock, so they are atomics: `ref` is a relaxed hint (a lost or
 * late bit only changes which entry CLOCK picks); `refreshing` is claimed
 * with an atomic exchange so that exactly one stale hit starts the refresh
 * -- relaxed suffices, it guards no other data. The statistics counters are
 * relaxed atomics: each is exact, no ordering between them is promised.
 */
#include "racefree/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "singleflight_int.h"

#define RF__CACHE_MAX_STRIPES  256u
#define RF__CACHE_AUTO_STRIPES 16u   /* automatic choice: at most this many */
#define RF__CACHE_PER_STRIPE   1024u /* automatic choice: at least this many per stripe */
#define RF__CACHE_MIN_BUCKETS  16u

typedef struct rf__cache_entry {
  struct rf__cache_entry *chain; /* bucket chain */
  struct rf__cache_entry *prev;  /* CLOCK ring */
  struct rf__cache_entry *next;
  uint64_t hash;
  uint64_t expires_ms; /* UINT64_MAX: never */
  rf_sf_result_t *result;
  atomic_bool ref;        /* CLOCK bit, set by hits */
  atomic_bool refreshing; /* a stale hit claimed the refresh */
  char key[];
} rf__cache_entry;

typedef struct rf__cache_stripe {
  pthread_rwlock_t lock;
  atomic_uint_fast64_t hits; /* next to the lock: the hit path dirties one line */
  atomic_uint_fast64_t stale_hits;
  rf__cache_entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  size_t cap;
  rf__cache_entry *hand; /* NULL when empty */
  bool closed;
  char pad[64];
} rf__cache_stripe;

struct rf_cache {
  rf_sf_t *sf;
  uint64_t ttl_ms;
  uint64_t stale_ms;
  unsigned nstripes;
  rf__cache_stripe *stripes;
  atomic_uint_fast64_t misses;
  atomic_uint_fast64_t shared;
  atomic_uint_fast64_t recheck_hits;
  atomic_uint_fast64_t loads;
  atomic_uint_fast64_t load_failures;
  atomic_uint_fast64_t evictions;
  atomic_uint_fast64_t refreshes;
};

/* The state of one get on its way through singleflight. For the blocking
 * form it lives on the caller's stack; for the callback form it is the
 * head of a heap request. rf__cache_loader writes started/hit only when
 * this get created the flight. */
typedef struct {
  rf_cache_t *c;
  rf_sf_loader fn;
  void *arg;
  bool started; /* this get created the flight */
  bool hit;     /* ... and the re-check found a fresh entry */
} rf__cache_ctx;

typedef struct {
  rf__cache_ctx ctx;
  rf_cache_cb cb; /* NULL: a refresh */
  void *cb_arg;
} rf__cache_req;

enum { RF__LOOK_MISS, RF__LOOK_HIT, RF__LOOK_STALE, RF__LOOK_REFRESH };

static void rf__cache_add(atomic_uint_fast64_t *ctr, uint64_t n) {
  atomic_fetch_add_explicit(ctr, n, memory_order_relaxed);
}

static uint64_t rf__cache_get_ctr(atomic_uint_fast64_t *ctr) {
  return atomic_load_explicit(ctr, memory_order_relaxed);
}

static rf__cache_stripe *rf__cache_stripe_of(rf_cache_t *c, uint64_t hash) {
  /* High bits pick the stripe, low bits the bucket inside it. */
  return &c->stripes[(hash >> 40) & (c->nstripes - 1)];
}

/* Caller holds s->lock (shared or exclusive). */
static rf__cache_entry *rf__cache_find(rf__cache_stripe *s, uint64_t hash, const char *key) {
  for (rf__cache_entry *e = s->buckets[hash & (s->nbuckets - 1)]; e != NULL; e = e->chain) {
    if (e->hash == hash && strcmp(e->key, key) == 0) {
      return e;
    }
  }
  return NULL;
}

static bool rf__cache_dead(const rf_cache_t *c, const rf__cache_entry *e, uint64_t now) {
  return e->expires_ms != UINT64_MAX && now >= e->expires_ms + c->stale_ms;
}

/* The cache's clock: CLOCK_MONOTONIC_COARSE, in milliseconds. It reads the
 * time of the last kernel tick (resolution 1-4 ms) for ~4 ns instead of the
 * ~30 ns of CLOCK_MONOTONIC (measured on the build VM), which is a quarter of
 * a hit. TTLs are therefore accurate to one tick; inserts and checks use the
 * same clock, so an entry never lives *less* than ttl_ms minus one tick. */
static uint64_t rf__cache_clock_ms(void) {
  struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
  clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rf__cache_now(const rf_cache_t *c) {
  return c->ttl_ms != 0 ? rf__cache_clock_ms() : 0;
}

/* The hit path. Looks `key` up under the shared lock. A fresh entry, or a
 * stale one when allow_stale, gives a new reference in *out. Counts hits
 * when count is set. RF__LOOK_REFRESH: stale, and this caller claimed the
 * entry's refresh. */
static int rf__cache_lookup(rf_cache_t *c, const char *key, uint64_t hash, bool allow_stale,
                            bool count, rf_sf_result_t **out) {
  rf__cache_stripe *s = rf__cache_stripe_of(c, hash);
  uint64_t now = rf__cache_now(c);
  int look = RF__LOOK_MISS;

  pthread_rwlock_rdlock(&s->lock);
  rf__cache_entry *e = rf__cache_find(s, hash, key);
  if (e != NULL) {
    if (now < e->expires_ms) {
      look = RF__LOOK_HIT;
    } else if (allow_stale && c->stale_ms > 0 && !rf__cache_dead(c, e, now)) {
      look = atomic_exchange_explicit(&e->refreshing, true, memory_order_relaxed)
                 ? RF__LOOK_STALE
                 : RF__LOOK_REFRESH;
    }
    if (look != RF__LOOK_MISS) {
      *out = rf_sf_result_retain(e->result);
      /* Test before set: a hot entry's line is not dirtied on every hit. */
      if (!atomic_load_explicit(&e->ref, memory_order_relaxed)) {
        atomic_store_explicit(&e->ref, true, memory_order_relaxed);
      }
    }
  }
  pthread_rwlock_unlock(&s->lock);
  if (count && look != RF__LOOK_MISS) {
    rf__cache_add(&s->hits, 1);
    if (look != RF__LOOK_HIT) {
      rf__cache_add(&s->stale_hits, 1);
    }
  }
  return look;
}

/* ------------------------------------------------------------ entries */

static rf__cache_entry *rf__cache_entry_new(const char *key, uint64_t hash) {
  size_t len = strlen(key);
  rf__cache_entry *e = rf__calloc(1, sizeof(*e) + len + 1);
  if (e != NULL) {
    e->hash = hash;
    memcpy(e->key, key, len + 1);
    atomic_init(&e->ref, false);
    atomic_init(&e->refreshing, false);
  }
  return e;
}

static void rf__cache_entry_free(rf__cache_entry *e) {
  if (e != NULL) {
    rf_sf_result_release(e->result);
    rf__free(e);
  }
}

/* Ring and chain maintenance; caller holds s->lock exclusively. */
static void rf__cache_ring_insert(rf__cache_stripe *s, rf__cache_entry *e) {
  if (s->hand == NULL) {
    e->next = e->prev = e;
    s->hand = e;
  } else { /* just behind the hand: the last the hand will reach */
    e->next = s->hand;
    e->prev = s->hand->prev;
    s->hand->prev->next = e;
    s->hand->prev = e;
  }
}

static void rf__cache_unlink(rf__cache_stripe *s, rf__cache_entry *e) {
  rf__cache_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
  while (*pp != e) {
    pp = &(*pp)->chain;
  }
  *pp = e->chain;
  if (e->next == e) {
    s->hand = NULL;
  } else {
    e->prev->next = e->next;
    e->next->prev = e->prev;
    if (s->hand == e) {
      s->hand = e->next;
    }
  }
  s->count--;
}

/* Doubles the bucket array; on allocation failure keeps the old one
 * (longer chains, still correct). */
static void rf__cache_grow(rf__cache_stripe *s) {
  size_t n = s->nbuckets * 2;
  rf__cache_entry **nb = rf__calloc(n, sizeof(rf__cache_entry *));
  if (nb == NULL) {
    return;
  }
  for (size_t i = 0; i < s->nbuckets; i++) {
    rf__cache_entry *e = s->buckets[i];
    while (e != NULL) {
      rf__cache_entry *next = e->chain;
      e->chain = nb[e->hash & (n - 1)];
      nb[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  rf__free(s->buckets);
  s->buckets = nb;
  s->nbuckets = n;
}

/* Picks and unlinks the CLOCK victim of a non-empty stripe. */
static rf__cache_entry *rf__cache_evict(rf_cache_t *c, rf__cache_stripe *s, uint64_t now) {
  for (;;) {
    rf__cache_entry *e = s->hand;
    if (rf__cache_dead(c, e, now) || !atomic_load_explicit(&e->ref, memory_order_relaxed)) {
      rf__cache_unlink(s, e);
      return e;
    }
    atomic_store_explicit(&e->ref, false, memory_order_relaxed);
    s->hand = e->next;
  }
}

/* Inserts (or refreshes) `fresh`'s key with result r. Takes ownership of
 * fresh. Runs in the completion hook, with the flight's bucket lock held:
 * it releases nothing itself (a release may run a value's free function)
 * but returns the one entry to free -- fresh if unused (carrying the
 * replaced result), or the evicted entry -- for rf__cache_after. */
static rf__cache_entry *rf__cache_insert(rf_cache_t *c, rf__cache_entry *fresh, rf_sf_result_t *r) {
  rf__cache_stripe *s = rf__cache_stripe_of(c, fresh->hash);
  rf__cache_entry *victim = NULL;
  uint64_t now = rf__cache_clock_ms();
  uint64_t expires = c->ttl_ms != 0 ? now + c->ttl_ms : UINT64_MAX;

  pthread_rwlock_wrlock(&s->lock);
  if (s->closed) {
    victim = fresh; /* the cache is being destroyed: do not cache */
    goto out;
  }
  rf__cache_entry *e = rf__cache_find(s, fresh->hash, fresh->key);
  if (e != NULL) {             /* expired (or stale, on refresh): replace the value */
    fresh->result = e->result; /* freed with fresh, later */
    e->result = rf_sf_result_retain(r);
    e->expires_ms = expires;
    atomic_store_explicit(&e->refreshing, false, memory_order_relaxed);
    victim = fresh;
    goto out;
  }
  if (s->count >= s->cap) {
    victim = rf__cache_evict(c, s, now);
    rf__cache_add(&c->evictions, 1);
  }
  fresh->result = rf_sf_result_retain(r);
  fresh->expires_ms = expires;
  size_t b = fresh->hash & (s->nbuckets - 1);
  fresh->chain = s->buckets[b];
  s->buckets[b] = fresh;
  rf__cache_ring_insert(s, fresh);
  s->count++;
  if (s->count > s->nbuckets) {
    rf__cache_grow(s);
  }
out:
  pthread_rwlock_unlock(&s->lock);
  return victim;
}

/* The singleflight completion hook (see "Lock protocol"). Returns the
 * entry to free once the bucket lock is released (or NULL). */
static void *rf__cache_hook(void *arg, const char *key, uint64_t hash, rf_sf_result_t *r,
                            void *data, bool in_table, bool loaded) {
  rf_cache_t *c = arg;
  rf__cache_entry *fresh = data;
  (void)key;
  (void)hash;
  if (loaded && rf_sf_result_status(r) != 0) {
    rf__cache_add(&c->load_failures, 1);
  }
  if (!loaded || rf_sf_result_status(r) != 0 || !in_table || fresh == NULL) {
    return fresh; /* not cached */
  }
  return rf__cache_insert(c, fresh, r);
}

/* Runs after the bucket lock is released: frees what the hook left. */
static void rf__cache_after(void *arg, void *deferred) {
  (void)arg;
  rf__cache_entry_free(deferred);
}

/* ------------------------------------------------------------ loads */

/* The loader every flight of the cache runs: re-check, then the user's. */
static void rf__cache_loader(rf_sf_call_t *call, const char *key, void *arg) {
  rf__cache_ctx *x = arg;
  rf_cache_t *c = x->c;
  rf_sf_loader fn = x->fn;
  void *fn_arg = x->arg;
  uint64_t hash = rf__sf_call_hash(call);
  rf_sf_result_t *r = NULL;

  x->started = true;
  if (rf__cache_lookup(c, key, hash, false, false, &r) == RF__LOOK_HIT) {
    x->hit = true;
    rf__sf_complete_result(call, r); /* may run callbacks that free x */
    rf_sf_result_release(r);
    return;
  }
  /* The entry is allocated now, outside every lock, and handed to the
   * hook; if that fails the value is still delivered, just not cached. */
  rf__sf_call_set_data(call, rf__cache_entry_new(key, hash));
  rf__cache_add(&c->loads, 1);
  RF_HOOK("cache.loader.start");
  fn(call, key, fn_arg); /* x may be freed from here on */
}

/* Accounts one finished get and returns its source. */
static rf_cache_src_t rf__cache_account(rf_cache_t *c, const rf__cache_ctx *x, bool shared,
                                        int rc) {
  if (x->started) {
    if (x->hit) {
      rf__cache_add(&c->recheck_hits, 1);
      return RF_CACHE_HIT;
    }
    rf__cache_add(&c->misses, 1);
    return RF_CACHE_MISS;
  }
  if (rc == 0 && shared) {
    rf__cache_add(&c->shared, 1);
  }
  return RF_CACHE_SHARED;
}

static void rf__cache_req_done(rf_sf_result_t *res, bool shared, void *arg) {
  rf__cache_req *req = arg;
  if (req->cb == NULL) { /* a refresh: the hook did the work */
    rf_sf_result_release(res);
    rf__free(req);
    return;
  }
  rf_cache_src_t src = rf__cache_account(req->ctx.c, &req->ctx, shared, 0);
  rf_cache_cb cb = req->cb;
  void *cb_arg = req->cb_arg;
  rf__free(req);
  cb(res, src, cb_arg);
}

/* Starts the refresh flight of a stale entry this caller claimed. */
static void rf__cache_refresh(rf_cache_t *c, const char *key, uint64_t hash, rf_sf_loader fn,
                              void *arg) {
  rf__cache_req *req = rf__calloc(1, sizeof(*req));
  int rc = RF_ENOMEM;
  if (req != NULL) {
    req->ctx = (rf__cache_ctx){c, fn, arg, false, false};
    rc = rf_sf_do_cb(c->sf, key, rf__cache_loader, &req->ctx, rf__cache_req_done, req);
  }
  if (rc == 0) {
    rf__cache_add(&c->refreshes, 1);
    return;
  }
  rf__free(req);
  /* Give the claim back so that a later stale hit can try again. */
  rf__cache_stripe *s = rf__cache_stripe_of(c, hash);
  pthread_rwlock_rdlock(&s->lock);
  rf__cache_entry *e = rf__cache_find(s, hash, key);
  if (e != NULL) {
    atomic_store_explicit(&e->refreshing, false, memory_order_relaxed);
  }
  pthread_rwlock_unlock(&s->lock);
}

/* ------------------------------------------------------------ API */

int rf_cache_get(rf_cache_t *c, const char *key, rf_sf_loader fn, void *loader_arg, int timeout_ms,
                 rf_sf_result_t **out, rf_cache_src_t *src) {
  if (c == NULL || key == NULL || fn == NULL || out == NULL) {
    return RF_EINVAL;
  }
  uint64_t hash = rf__hash_str(key);
  rf_sf_result_t *r = NULL;
  int look = rf__cache_lookup(c, key, hash, true, true, &r);
  if (look != RF__LOOK_MISS) {
    *out = r;
    if (src != NULL) {
      *src = RF_CACHE_HIT;
    }
    if (look == RF__LOOK_REFRESH) {
      rf__cache_refresh(c, key, hash, fn, loader_arg);
    }
    return 0;
  }
  /* Not cached. The window between here and the flight lookup is closed
   * by the re-check in rf__cache_loader. */
  RF_HOOK("cache.after_miss");
  rf__cache_ctx x = {c, fn, loader_arg, false, false};
  bool shared = false;
  int rc = rf_sf_do(c->sf, key, rf__cache_loader, &x, timeout_ms, &r, &shared);
  rf_cache_src_t s = rf__cache_account(c, &x, shared, rc);
  if (rc != 0) {
    return rc;
  }
  *out = r;
  if (src != NULL) {
    *src = s;
  }
  return 0;
}

int rf_cache_get_cb(rf_cache_t *c, const char *key, rf_sf_loader fn, void *loader_arg,
                    rf_cache_cb cb, void *cb_arg) {
  if (c == NULL || key == NULL || fn == NULL || cb == NULL) {
    return RF_EINVAL;
  }
  uint64_t hash = rf__hash_str(key);
  rf_sf_result_t *r = NULL;
  int look = rf__cache_lookup(c, key, hash, true, true, &r);
  if (look != RF__LOOK_MISS) {
    cb(r, RF_CACHE_HIT, cb_arg);
    if (look == RF__LOOK_REFRESH) {
      rf__cache_refresh(c, key, hash, fn, loader_arg);
    }
    return 0;
  }
  RF_HOOK("cache.after_miss");
  rf__cache_req *req = rf__calloc(1, sizeof(*req));
  if (req == NULL) {
    return RF_ENOMEM;
  }
  req->ctx = (rf__cache_ctx){c, fn, loader_arg, false, false};
  req->cb = cb;
  req->cb_arg = cb_arg;
  int rc = rf_sf_do_cb(c->sf, key, rf__cache_loader, &req->ctx, rf__cache_req_done, req);
  if (rc != 0) {
    rf__free(req);
  }
  return rc;
}

int rf_cache_invalidate(rf_cache_t *c, const char *key) {
  if (c == NULL || key == NULL) {
    return RF_EINVAL;
  }
  /* Forget first, then remove: see "Invalidation" above. */
  bool forgot = rf_sf_forget(c->sf, key) == 0;
  uint64_t hash = rf__hash_str(key);
  rf__cache_stripe *s = rf__cache_stripe_of(c, hash);
  pthread_rwlock_wrlock(&s->lock);
  rf__cache_entry *e = rf__cache_find(s, hash, key);
  if (e != NULL) {
    rf__cache_unlink(s, e);
  }
  pthread_rwlock_unlock(&s->lock);
  bool removed = e != NULL;
  rf__cache_entry_free(e);
  return forgot || removed ? 0 : RF_ENOENT;
}

void rf_cache_stats(rf_cache_t *c, rf_cache_stats_t *out) {
  if (out == NULL) {
    return;
  }
  memset(out, 0, sizeof(*out));
  if (c == NULL) {
    return;
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    out->hits += rf__cache_get_ctr(&s->hits);
    out->stale_hits += rf__cache_get_ctr(&s->stale_hits);
    pthread_rwlock_rdlock(&s->lock);
    out->entries += s->count;
    pthread_rwlock_unlock(&s->lock);
  }
  out->hits += rf__cache_get_ctr(&c->recheck_hits);
  out->misses = rf__cache_get_ctr(&c->misses);
  out->shared = rf__cache_get_ctr(&c->shared);
  out->loads = rf__cache_get_ctr(&c->loads);
  out->load_failures = rf__cache_get_ctr(&c->load_failures);
  out->evictions = rf__cache_get_ctr(&c->evictions);
  out->refreshes = rf__cache_get_ctr(&c->refreshes);
}

/* ------------------------------------------------------------ life */

static unsigned rf__cache_floor_pow2(size_t n) {
  unsigned p = 1;
  while ((size_t)p * 2 <= n && p * 2 <= RF__CACHE_MAX_STRIPES) {
    p *= 2;
  }
  return p;
}

static unsigned rf__cache_pick_stripes(const rf_cache_opts_t *o) {
  if (o->stripes == 0) {
    unsigned s = rf__cache_floor_pow2(o->max_entries / RF__CACHE_PER_STRIPE);
    return s > RF__CACHE_AUTO_STRIPES ? RF__CACHE_AUTO_STRIPES : s;
  }
  size_t want = o->stripes < o->max_entries ? o->stripes : o->max_entries;
  return rf__cache_floor_pow2(want);
}

/* Frees what rf_cache_create allocated: stripes (locks, bucket arrays) and
 * the cache. Entries must be gone already. Also the table's on_free. */
static void rf__cache_free(void *arg) {
  rf_cache_t *c = arg;
  if (c->stripes != NULL) {
    for (unsigned i = 0; i < c->nstripes; i++) {
      if (c->stripes[i].buckets != NULL) {
        pthread_rwlock_destroy(&c->stripes[i].lock);
        rf__free(c->stripes[i].buckets);
      }
    }
    rf__free(c->stripes);
  }
  rf__free(c);
}

int rf_cache_create(rf_cache_t **out, const rf_cache_opts_t *opts) {
  if (out == NULL || opts == NULL || opts->max_entries == 0) {
    return RF_EINVAL;
  }
  if (opts->max_entries > RF_CACHE_MAX_ENTRIES || opts->ttl_ms > RF_CACHE_MAX_TTL_MS ||
      opts->stale_ms > RF_CACHE_MAX_TTL_MS) {
    return RF_ERANGE;
  }
  int rc = RF_ENOMEM;
  pthread_rwlockattr_t attr;
  bool attr_ok = pthread_rwlockattr_init(&attr) == 0;
  rf_cache_t *c = rf__calloc(1, sizeof(*c));
  if (!attr_ok || c == NULL) {
    goto fail;
  }
  /* Writers first: a steady stream of hits must not starve an insert. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  c->ttl_ms = opts->ttl_ms;
  c->stale_ms = opts->ttl_ms != 0 ? opts->stale_ms : 0;
  c->nstripes = rf__cache_pick_stripes(opts);
  c->stripes = rf__calloc(c->nstripes, sizeof(*c->stripes));
  if (c->stripes == NULL) {
    goto fail;
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    s->cap = opts->max_entries / c->nstripes + (i < opts->max_entries % c->nstripes ? 1 : 0);
    s->nbuckets = RF__CACHE_MIN_BUCKETS;
    s->buckets = rf__calloc(s->nbuckets, sizeof(rf__cache_entry *));
    if (s->buckets == NULL) {
      goto fail;
    }
    if (pthread_rwlock_init(&s->lock, &attr) != 0) {
      rf__free(s->buckets);
      s->buckets = NULL;
      goto fail;
    }
  }
  rc = rf__sf_create_ex(&c->sf, rf__cache_hook, rf__cache_after, rf__cache_free, c);
  if (rc != 0) {
    goto fail;
  }
  pthread_rwlockattr_destroy(&attr);
  *out = c;
  return 0;

fail:
  if (c != NULL) {
    rf__cache_free(c);
  }
  if (attr_ok) {
    pthread_rwlockattr_destroy(&attr);
  }
  return rc;
}

void rf_cache_destroy(rf_cache_t *c) {
  if (c == NULL) {
    return;
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    rf__cache_entry *list = NULL;
    pthread_rwlock_wrlock(&s->lock);
    s->closed = true; /* late completions must not insert */
    for (size_t b = 0; b < s->nbuckets; b++) {
      while (s->buckets[b] != NULL) {
        rf__cache_entry *e = s->buckets[b];
        s->buckets[b] = e->chain;
        e->chain = list;
        list = e;
      }
    }
    s->hand = NULL;
    s->count = 0;
    pthread_rwlock_unlock(&s->lock);
    while (list != NULL) {
      rf__cache_entry *e = list;
      list = e->chain;
      rf__cache_entry_free(e);
    }
  }
  /* The rest goes when the table goes: now, or when the last load still
   * in progress completes (its hook needs the stripes). */
  rf_sf_destroy(c->sf);
}
