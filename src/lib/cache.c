/* cache.c - bounded TTL cache with single-flight misses (see racefree/cache.h).
 *
 * Structure
 * ---------
 * The key space is split into S stripes (S a power of two, chosen from
 * max_entries, see rf__cache_pick_stripes). Each stripe has a mutex taken by
 * writers only, its own chained hash table (doubling when the load factor
 * passes 3/4), its own share of max_entries (the shares add up to max_entries
 * exactly, so the total can never pass it) and its own CLOCK ring.
 *
 * Eviction: CLOCK (second chance). Every entry sits on a circular list with
 * a hand. A hit sets the entry's `ref` bit -- an atomic store, so hits take
 * no lock. When a stripe is full, the insert (stripe mutex) moves the hand:
 * an entry past ttl+stale is evicted at once; an entry with `ref` set gets
 * its bit cleared and a second chance; the first entry with `ref` clear is
 * evicted. A full turn clears every bit, so the hand stops within two
 * turns; amortised over inserts it is O(1). CLOCK approximates LRU; exact
 * LRU would move the entry to the front of a list on every hit, which needs
 * a lock on the hot path -- the thing a cache must not do. The price of
 * striping is that a stripe may evict while another still has room (the
 * per-stripe bound is max_entries / S, as in Guava's segmented LocalCache);
 * small caches get one stripe and a global bound.
 *
 * Hits read without locks (RCU style)
 * -----------------------------------
 * A hit writes no shared cache line: no lock word, no shared counter. It
 *   - marks its thread as reading (rf__rd_enter: one store to the thread's
 *     own reader slot, see "Reclamation"),
 *   - walks the bucket chain with acquire loads,
 *   - checks the entry's expiry (entries are immutable once published: a
 *     reload *replaces* the entry, it never rewrites result or expiry),
 *   - takes a reference on the result (the one atomic add on a line the
 *     caller was going to touch anyway), sets the CLOCK bit if clear,
 *   - leaves (a release store to its slot) and counts the hit in the
 *     cache's counter cell owned by its reader slot (a plain add).
 * Writers (insert, replace, evict, invalidate, grow) hold the stripe mutex
 * and publish with release stores, in an order that keeps every chain a
 * reader may be on walkable: a new entry is complete before it is linked; an
 * unlinked entry keeps its own `chain` pointer. The one in-place rewrite is
 * a grow, which moves entries between chains; it runs inside a sequence
 * count (`seq` odd while it runs), and a reader whose walk overlapped one
 * (seq changed) retries under the stripe mutex. A reader never waits.
 *
 * Reclamation (epoch-based). What a writer unlinks -- an evicted or
 * replaced entry (and the cache's reference to its result), an outgrown
 * bucket table -- may still be read by a reader that found it just before.
 * It is therefore not freed at once but *retired*: tagged with the global
 * epoch, which the retire then advances, and kept on the cache's limbo
 * list. A reader's slot holds the epoch it saw on entry (0 outside). An
 * object retired with tag t can no longer be reached by a reader that
 * entered with an epoch > t; so once every slot is 0 or > t, it is freed.
 * Writers try after every write that retired something (outside every lock:
 * freeing releases results, whose free functions are user code); nothing
 * ever waits for a reader. The reader's slot store must be visible before
 * its loads of the table (store->load order): either the reader issues a
 * full fence, or -- on Linux with membarrier(2) -- the reclaiming writer
 * issues MEMBARRIER_CMD_PRIVATE_EXPEDITED, which runs that fence on every
 * CPU running one of our threads, and the reader needs none (the same
 * asymmetric scheme as liburcu's "memb" flavour). Reader slots come from a
 * process-wide registry, one per live thread, reused after a thread exits.
 *
 *   hit:      enter; walk; check expiry; retain result; set ref; leave.
 *             (no lock, no allocation, no shared write)
 *   miss:     rf_sf_do / rf_sf_do_cb on the key (singleflight bucket lock).
 *             The starter's loader (rf__cache_loader) re-checks the cache,
 *             then runs the user's loader.
 *   complete: the singleflight completion hook (rf__cache_hook) runs with
 *             the flight's bucket lock held and takes the stripe mutex to
 *             insert, *before* the flight is unlinked. Lock order:
 *             singleflight bucket -> cache stripe -> limbo, never the
 *             reverse. What the insert displaces is retired; rf__cache_after
 *             reclaims once the bucket lock is released.
 *
 * Why no load can be duplicated within a TTL window: a key is, at every
 * instant, cached or loading (the insert happens before the unlink, under
 * the bucket lock). A caller that saw "not cached" and then "not loading"
 * must have looked at the flight table after the unlink, hence after the
 * insert (the insert's release store happens before the bucket unlock that
 * the caller's bucket lock acquires); its re-check of the cache (in
 * rf__cache_loader) then finds the fresh entry and completes its flight
 * with it instead of loading. A re-check that overlapped a grow retries
 * under the stripe mutex, so it cannot miss the entry either.
 *
 * Invalidation: rf_cache_invalidate first detaches the key's flight
 * (rf_sf_forget), then removes the entry. The hook inserts only when the
 * flight is still in the table, and it decides that under the bucket lock;
 * so a load that started before the invalidation either inserted before
 * the forget (and the removal that follows takes it out) or sees
 * in_table == false and does not insert. No stale value survives.
 *
 * Memory ordering: an entry's fields other than `chain`, `ref` and
 * `refreshing` are written before it is published (release) and never
 * after. `ref` is a relaxed hint (a lost or late bit only changes which
 * entry CLOCK picks); `refreshing` is claimed with an atomic exchange so
 * that exactly one stale hit starts the refresh -- relaxed suffices, it
 * guards no other data. The statistics counters are exact; no ordering
 * between them is promised.
 */
#include "racefree/cache.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "singleflight_int.h"

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__SANITIZE_THREAD__)
#define RF__CACHE_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define RF__CACHE_TSAN 1
#endif
#endif

#define RF__CACHE_MAX_STRIPES  256u
#define RF__CACHE_AUTO_STRIPES 16u   /* automatic choice: at most this many */
#define RF__CACHE_PER_STRIPE   1024u /* automatic choice: at least this many per stripe */
#define RF__CACHE_MIN_BUCKETS  16u
#define RF__CACHE_MAX_HOPS     64u /* a longer lock-free walk retries under the mutex */
#define RF__CACHE_CELLS        64u /* hit counter cells, one per reader slot id */
#define RF__CACHE_LINE         64u

/* ------------------------------------------------------------ readers */

/* One reader slot per live thread that has read a cache; process-wide,
 * never freed (reused after its thread exits). 128 bytes apart, so that no
 * two slots share a cache line. */
typedef struct rf__rd {
  atomic_uint_fast64_t epoch; /* 0: not reading; else the epoch seen on entry */
  atomic_bool used;           /* owned by a live thread */
  unsigned id;                /* registry index: selects the counter cell */
  struct rf__rd *next;        /* registry list; set before publication */
  char pad[128 - 24];
} rf__rd;

static _Atomic(rf__rd *) rf__rd_list;
static atomic_uint rf__rd_count;
static atomic_uint_fast64_t rf__epoch = 1;
static pthread_once_t rf__rd_once = PTHREAD_ONCE_INIT;
static pthread_key_t rf__rd_key;
static bool rf__rd_key_ok;
static bool rf__rd_memb; /* readers skip the fence; reclaimers use membarrier */
static _Thread_local rf__rd *rf__rd_mine;

static void rf__rd_thread_exit(void *p) {
  rf__rd *me = p;
  atomic_store_explicit(&me->epoch, 0, memory_order_release);
  rf__rd_mine = NULL;
  atomic_store_explicit(&me->used, false, memory_order_release);
}

/* In the child of a fork only the forking thread exists (and it is not in
 * a read section): every other slot is free, whatever its epoch said, or
 * a thread caught mid-hit would hold back reclamation in the child for
 * ever. */
static void rf__rd_atfork_child(void) {
  for (rf__rd *r = atomic_load_explicit(&rf__rd_list, memory_order_acquire); r != NULL;
       r = r->next) {
    if (r != rf__rd_mine) {
      atomic_store_explicit(&r->epoch, 0, memory_order_relaxed);
      atomic_store_explicit(&r->used, false, memory_order_release);
    }
  }
}

static void rf__rd_init(void) {
  rf__rd_key_ok = pthread_key_create(&rf__rd_key, rf__rd_thread_exit) == 0 &&
                  pthread_atfork(NULL, NULL, rf__rd_atfork_child) == 0;
#if defined(__linux__) && defined(SYS_membarrier) && !defined(RF__CACHE_TSAN)
  /* ThreadSanitizer builds keep the reader fence: TSan cannot see what a
   * membarrier orders. */
  rf__rd_memb = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
#endif
}

/* The calling thread's slot, taken on its first read. NULL when no slot
 * can be had (allocation failure): the caller reads under the mutex. */
static rf__rd *rf__rd_register(void) {
  pthread_once(&rf__rd_once, rf__rd_init);
  if (!rf__rd_key_ok) {
    return NULL;
  }
  rf__rd *me = NULL;
  for (rf__rd *r = atomic_load_explicit(&rf__rd_list, memory_order_acquire); r != NULL;
       r = r->next) {
    bool expect = false;
    if (!atomic_load_explicit(&r->used, memory_order_relaxed) &&
        atomic_compare_exchange_strong_explicit(&r->used, &expect, true, memory_order_acquire,
                                                memory_order_relaxed)) {
      me = r;
      break;
    }
  }
  if (me == NULL) {
    me = rf__calloc(1, sizeof(*me));
    if (me == NULL) {
      return NULL;
    }
    atomic_init(&me->epoch, 0);
    atomic_init(&me->used, true);
    me->id = atomic_fetch_add_explicit(&rf__rd_count, 1, memory_order_relaxed);
    rf__rd *head = atomic_load_explicit(&rf__rd_list, memory_order_relaxed);
    do {
      me->next = head;
    } while (!atomic_compare_exchange_weak_explicit(&rf__rd_list, &head, me, memory_order_release,
                                                    memory_order_relaxed));
  }
  if (pthread_setspecific(rf__rd_key, me) != 0) {
    atomic_store_explicit(&me->used, false, memory_order_release);
    return NULL;
  }
  rf__rd_mine = me;
  return me;
}

/* Marks the thread as reading; NULL if it cannot (see rf__rd_register). */
static inline rf__rd *rf__rd_enter(void) {
  rf__rd *me = rf__rd_mine;
  if (me == NULL && (me = rf__rd_register()) == NULL) {
    return NULL;
  }
  uint64_t e = atomic_load_explicit(&rf__epoch, memory_order_acquire);
  if (rf__rd_memb) {
    atomic_store_explicit(&me->epoch, e, memory_order_release);
    atomic_signal_fence(memory_order_seq_cst); /* the reclaimer's membarrier fences for us */
  } else {
    /* A seq_cst exchange: the store, then a full barrier before the loads
     * of the table (cheaper than a separate fence on x86). */
    (void)atomic_exchange_explicit(&me->epoch, e, memory_order_seq_cst);
  }
  return me;
}

static inline void rf__rd_leave(rf__rd *me) {
  atomic_store_explicit(&me->epoch, 0, memory_order_release);
}

/* The tag of an object unlinked just before: readers that entered with an
 * epoch greater than it cannot reach the object. */
static uint64_t rf__rd_retire_tag(void) {
  return atomic_fetch_add_explicit(&rf__epoch, 1, memory_order_seq_cst);
}

/* The smallest epoch of a thread reading now (UINT64_MAX: none); 0 when it
 * cannot be known (membarrier failed), which frees nothing. */
static uint64_t rf__rd_oldest(void) {
  if (rf__rd_memb) {
#if defined(__linux__) && defined(SYS_membarrier)
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) != 0) {
      return 0;
    }
#endif
  } else {
    /* The full barrier that pairs with the readers' exchange: the unlinks
     * before it, the loads of the slots after. */
    (void)atomic_fetch_add_explicit(&rf__epoch, 0, memory_order_seq_cst);
  }
  uint64_t min = UINT64_MAX;
  for (rf__rd *r = atomic_load_explicit(&rf__rd_list, memory_order_acquire); r != NULL;
       r = r->next) {
    uint64_t e = atomic_load_explicit(&r->epoch, memory_order_acquire);
    if (e != 0 && e < min) {
      min = e;
    }
  }
  return min;
}

/* ------------------------------------------------------------ types */

typedef struct rf__cache_entry {
  /* What a hit reads, first: with a short key, one cache line. */
  _Atomic(struct rf__cache_entry *) chain; /* bucket chain, walked by readers */
  uint64_t hash;
  uint64_t expires_ms; /* UINT64_MAX: never */
  rf_sf_result_t *result;
  /* Writers only. */
  union {
    struct rf__cache_entry *prev; /* CLOCK ring, while linked */
    uint64_t retired;             /* epoch tag, once retired (out of the ring) */
  } u;
  struct rf__cache_entry *next; /* CLOCK ring, then the limbo list once retired */
  atomic_bool ref;              /* CLOCK bit, set by hits */
  atomic_bool refreshing;       /* a stale hit claimed the refresh */
  char key[];
} rf__cache_entry;

typedef struct rf__cache_table {
  struct rf__cache_table *next; /* limbo list once retired */
  uint64_t retired;
  size_t n; /* power of two */
  _Atomic(rf__cache_entry *) b[];
} rf__cache_table;

typedef struct rf__cache_stripe {
  /* Read by hits: written only by writers. */
  atomic_uint seq; /* odd while a grow rewires chains */
  _Atomic(rf__cache_table *) table;
  char pad0[RF__CACHE_LINE - sizeof(atomic_uint) - sizeof(void *)];
  /* Writers only, under `lock`. */
  pthread_mutex_t lock;
  size_t count;
  size_t cap;
  rf__cache_entry *hand; /* NULL when empty */
  bool closed;
  bool lock_ok;
  char pad1[RF__CACHE_LINE];
} rf__cache_stripe;

/* Hit counters of one reader slot id: written by that slot's thread only
 * (a plain add, no atomic read-modify-write), read by rf_cache_stats. */
typedef struct {
  atomic_uint_fast64_t hits;
  atomic_uint_fast64_t stale_hits;
  char pad[RF__CACHE_LINE - 2 * sizeof(atomic_uint_fast64_t)];
} rf__cache_cell;

struct rf_cache {
  rf_sf_t *sf;
  uint64_t ttl_ms;
  uint64_t stale_ms;
  unsigned nstripes;
  rf__cache_stripe *stripes; /* line-aligned inside stripes_mem */
  void *stripes_mem;
  rf__cache_cell *cells; /* RF__CACHE_CELLS, line-aligned inside cells_mem */
  void *cells_mem;
  pthread_mutex_t limbo_mu;
  bool limbo_mu_ok;
  rf__cache_entry *limbo; /* retired entries, newest first */
  rf__cache_table *limbo_tables;
  atomic_uint_fast64_t hits_shared; /* hits of readers without a cell */
  atomic_uint_fast64_t stale_hits_shared;
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

/* Only the thread owning the cell's reader slot writes it. */
static void rf__cache_cell_inc(atomic_uint_fast64_t *ctr) {
  atomic_store_explicit(ctr, atomic_load_explicit(ctr, memory_order_relaxed) + 1,
                        memory_order_relaxed);
}

static rf__cache_stripe *rf__cache_stripe_of(rf_cache_t *c, uint64_t hash) {
  /* High bits pick the stripe, low bits the bucket inside it. */
  return &c->stripes[(hash >> 40) & (c->nstripes - 1)];
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

/* rf__hash_str, inlined into the hit path (the same function: singleflight
 * hashes keys with rf__hash_str and the loader's re-check uses its hash). */
static inline uint64_t rf__cache_hash(const char *s) {
  uint64_t h = 14695981039346656037ull;
  for (; *s != '\0'; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ull;
  }
  return h;
}

static uint64_t rf__cache_now(const rf_cache_t *c) {
  return c->ttl_ms != 0 ? rf__cache_clock_ms() : 0;
}

/* Finds `key` in stripe s. Called under s->lock, or in a reader section
 * (rf__rd_enter); in the latter case returns false when the walk may have
 * been disturbed by a grow (retry under the lock). */
static inline __attribute__((always_inline)) bool
rf__cache_find(rf__cache_stripe *s, uint64_t hash, const char *key, rf__cache_entry **found) {
  unsigned seq = atomic_load_explicit(&s->seq, memory_order_acquire);
  if ((seq & 1u) != 0) {
    return false;
  }
  rf__cache_table *t = atomic_load_explicit(&s->table, memory_order_acquire);
  rf__cache_entry *e = atomic_load_explicit(&t->b[hash & (t->n - 1)], memory_order_acquire);
  unsigned hops = 0;
  while (e != NULL && (e->hash != hash || strcmp(e->key, key) != 0)) {
    if (++hops > RF__CACHE_MAX_HOPS) {
      return false;
    }
    e = atomic_load_explicit(&e->chain, memory_order_acquire);
  }
  /* The loads above are acquires: this load cannot move before them, and
   * if one of them read a grow's (release) store, it sees that grow's seq. */
  if (atomic_load_explicit(&s->seq, memory_order_acquire) != seq) {
    return false;
  }
  *found = e;
  return true;
}

/* Classifies a found entry; on a hit (fresh, or stale when allowed) takes
 * a reference in *out. e stays alive during this (lock or reader section). */
static inline int rf__cache_classify(rf_cache_t *c, rf__cache_entry *e, uint64_t now,
                                     bool allow_stale, rf_sf_result_t **out) {
  int look = RF__LOOK_MISS;
  if (now < e->expires_ms) {
    look = RF__LOOK_HIT;
  } else if (allow_stale && c->stale_ms > 0 && !rf__cache_dead(c, e, now)) {
    look = atomic_exchange_explicit(&e->refreshing, true, memory_order_relaxed) ? RF__LOOK_STALE
                                                                                : RF__LOOK_REFRESH;
  }
  if (look != RF__LOOK_MISS) {
    /* The cache's own reference cannot be dropped before we leave: the
     * entry (which holds it) is freed only after a grace period. */
    *out = rf_sf_result_retain(e->result);
    /* Test before set: a hot entry's line is not dirtied on every hit. */
    if (!atomic_load_explicit(&e->ref, memory_order_relaxed)) {
      atomic_store_explicit(&e->ref, true, memory_order_relaxed);
    }
  }
  return look;
}

/* The hit path. Looks `key` up without a lock (falling back to the stripe
 * mutex when a grow got in the way or the thread has no reader slot). A
 * fresh entry, or a stale one when allow_stale, gives a new reference in
 * *out. Counts hits when count is set. RF__LOOK_REFRESH: stale, and this
 * caller claimed the entry's refresh. */
static inline __attribute__((always_inline)) int rf__cache_lookup(rf_cache_t *c, const char *key,
                                                                  uint64_t hash, bool allow_stale,
                                                                  bool count,
                                                                  rf_sf_result_t **out) {
  rf__cache_stripe *s = rf__cache_stripe_of(c, hash);
  uint64_t now = rf__cache_now(c);
  rf__cache_entry *e = NULL;
  int look = RF__LOOK_MISS;

  rf__rd *me = rf__rd_enter();
  if (me != NULL) {
    if (rf__cache_find(s, hash, key, &e)) {
      if (e != NULL) {
        RF_HOOK("cache.hit.found");
        look = rf__cache_classify(c, e, now, allow_stale, out);
      }
      rf__rd_leave(me);
      if (count && look != RF__LOOK_MISS) {
        if (me->id < RF__CACHE_CELLS) {
          rf__cache_cell *cell = &c->cells[me->id];
          rf__cache_cell_inc(&cell->hits);
          if (look != RF__LOOK_HIT) {
            rf__cache_cell_inc(&cell->stale_hits);
          }
        } else {
          rf__cache_add(&c->hits_shared, 1);
          if (look != RF__LOOK_HIT) {
            rf__cache_add(&c->stale_hits_shared, 1);
          }
        }
      }
      return look;
    }
    rf__rd_leave(me);
  }
  pthread_mutex_lock(&s->lock);
  (void)rf__cache_find(s, hash, key, &e); /* under the lock: never disturbed */
  if (e != NULL) {
    look = rf__cache_classify(c, e, now, allow_stale, out);
  }
  pthread_mutex_unlock(&s->lock);
  if (count && look != RF__LOOK_MISS) {
    rf__cache_add(&c->hits_shared, 1);
    if (look != RF__LOOK_HIT) {
      rf__cache_add(&c->stale_hits_shared, 1);
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
    atomic_init(&e->chain, NULL);
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

static rf__cache_table *rf__cache_table_new(size_t n) {
  rf__cache_table *t = rf__calloc(1, sizeof(*t) + n * sizeof(t->b[0]));
  if (t != NULL) {
    t->n = n;
    for (size_t i = 0; i < n; i++) {
      atomic_init(&t->b[i], NULL);
    }
  }
  return t;
}

/* Retiring: the object is unlinked; it is freed by rf__cache_reclaim once
 * no reader can hold it. Caller holds the stripe mutex. */
static void rf__cache_retire(rf_cache_t *c, rf__cache_entry *e) {
  e->u.retired = rf__rd_retire_tag();
  pthread_mutex_lock(&c->limbo_mu);
  e->next = c->limbo;
  c->limbo = e;
  pthread_mutex_unlock(&c->limbo_mu);
}

static void rf__cache_retire_table(rf_cache_t *c, rf__cache_table *t) {
  t->retired = rf__rd_retire_tag();
  pthread_mutex_lock(&c->limbo_mu);
  t->next = c->limbo_tables;
  c->limbo_tables = t;
  pthread_mutex_unlock(&c->limbo_mu);
}

/* Frees what no reader can hold any more (all of it when `all`: only at
 * destroy, when no reader may run). Call with no lock held: freeing an
 * entry releases its result, which may run a value's free function, which
 * may call back into the cache. Never waits for readers. */
static void rf__cache_reclaim(rf_cache_t *c, bool all) {
  pthread_mutex_lock(&c->limbo_mu);
  rf__cache_entry *list = c->limbo;
  rf__cache_table *tables = c->limbo_tables;
  c->limbo = NULL;
  c->limbo_tables = NULL;
  pthread_mutex_unlock(&c->limbo_mu);
  if (list == NULL && tables == NULL) {
    return;
  }
  uint64_t oldest = all ? UINT64_MAX : rf__rd_oldest();
  rf__cache_entry *keep = NULL;
  rf__cache_entry **keep_tail = &keep;
  rf__cache_table *keep_t = NULL;
  while (tables != NULL) {
    rf__cache_table *t = tables;
    tables = t->next;
    if (t->retired < oldest) {
      rf__free(t);
    } else {
      t->next = keep_t;
      keep_t = t;
    }
  }
  while (list != NULL) {
    rf__cache_entry *e = list;
    list = e->next;
    if (e->u.retired < oldest) {
      rf__cache_entry_free(e);
    } else {
      e->next = NULL;
      *keep_tail = e;
      keep_tail = &e->next;
    }
  }
  if (keep != NULL || keep_t != NULL) {
    pthread_mutex_lock(&c->limbo_mu);
    *keep_tail = c->limbo;
    c->limbo = keep;
    while (keep_t != NULL) {
      rf__cache_table *t = keep_t;
      keep_t = t->next;
      t->next = c->limbo_tables;
      c->limbo_tables = t;
    }
    pthread_mutex_unlock(&c->limbo_mu);
  }
}

/* Ring and chain maintenance; caller holds s->lock. */
static void rf__cache_ring_insert(rf__cache_stripe *s, rf__cache_entry *e) {
  if (s->hand == NULL) {
    e->next = e->u.prev = e;
    s->hand = e;
  } else { /* just behind the hand: the last the hand will reach */
    e->next = s->hand;
    e->u.prev = s->hand->u.prev;
    s->hand->u.prev->next = e;
    s->hand->u.prev = e;
  }
}

/* The link that points at e (e is in the table). */
static _Atomic(rf__cache_entry *) *rf__cache_link_of(rf__cache_stripe *s, rf__cache_entry *e) {
  rf__cache_table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
  _Atomic(rf__cache_entry *) *pp = &t->b[e->hash & (t->n - 1)];
  rf__cache_entry *cur;
  while ((cur = atomic_load_explicit(pp, memory_order_relaxed)) != e) {
    pp = &cur->chain;
  }
  return pp;
}

/* Unlinks e from its chain and the ring. e's own `chain` stays intact, so a
 * reader standing on e walks on; the caller retires e. */
static void rf__cache_unlink(rf__cache_stripe *s, rf__cache_entry *e) {
  _Atomic(rf__cache_entry *) *pp = rf__cache_link_of(s, e);
  atomic_store_explicit(pp, atomic_load_explicit(&e->chain, memory_order_relaxed),
                        memory_order_release);
  if (e->next == e) {
    s->hand = NULL;
  } else {
    e->u.prev->next = e->next;
    e->next->u.prev = e->u.prev;
    if (s->hand == e) {
      s->hand = e->next;
    }
  }
  s->count--;
}

/* Doubles the bucket table; on allocation failure keeps the old one
 * (longer chains, still correct). Moving entries between chains is the one
 * rewrite a reader cannot walk through: it runs with seq odd. */
static void rf__cache_grow(rf_cache_t *c, rf__cache_stripe *s) {
  rf__cache_table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
  size_t n = t->n * 2;
  rf__cache_table *nt = rf__cache_table_new(n);
  if (nt == NULL) {
    return;
  }
  unsigned seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
  /* Every store of the move below is a release, ordered after this one. */
  atomic_store_explicit(&s->seq, seq + 1, memory_order_relaxed);
  for (size_t i = 0; i < t->n; i++) {
    rf__cache_entry *e = atomic_load_explicit(&t->b[i], memory_order_relaxed);
    while (e != NULL) {
      rf__cache_entry *next = atomic_load_explicit(&e->chain, memory_order_relaxed);
      _Atomic(rf__cache_entry *) *head = &nt->b[e->hash & (n - 1)];
      atomic_store_explicit(&e->chain, atomic_load_explicit(head, memory_order_relaxed),
                            memory_order_release);
      atomic_store_explicit(head, e, memory_order_release);
      e = next;
    }
  }
  atomic_store_explicit(&s->table, nt, memory_order_release);
  atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
  rf__cache_retire_table(c, t);
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

/* Inserts `fresh` for its key with result r, replacing the key's entry if
 * there is one (expired, or stale on refresh): entries are never rewritten
 * once published. Takes ownership of fresh. Runs in the completion hook,
 * with the flight's bucket lock held: it frees nothing itself (a release
 * may run a value's free function) but retires what it displaced, and
 * returns fresh if unused (it holds no result then), for rf__cache_after. */
static rf__cache_entry *rf__cache_insert(rf_cache_t *c, rf__cache_entry *fresh, rf_sf_result_t *r) {
  rf__cache_stripe *s = rf__cache_stripe_of(c, fresh->hash);
  uint64_t now = rf__cache_clock_ms();

  pthread_mutex_lock(&s->lock);
  if (s->closed) {
    pthread_mutex_unlock(&s->lock);
    return fresh; /* the cache is being destroyed: do not cache */
  }
  fresh->result = rf_sf_result_retain(r);
  fresh->expires_ms = c->ttl_ms != 0 ? now + c->ttl_ms : UINT64_MAX;
  rf__cache_entry *e = NULL;
  (void)rf__cache_find(s, fresh->hash, fresh->key, &e);
  if (e != NULL) { /* take e's place in its chain and in the ring */
    _Atomic(rf__cache_entry *) *pp = rf__cache_link_of(s, e);
    atomic_store_explicit(&fresh->chain, atomic_load_explicit(&e->chain, memory_order_relaxed),
                          memory_order_relaxed);
    atomic_store_explicit(&fresh->ref, atomic_load_explicit(&e->ref, memory_order_relaxed),
                          memory_order_relaxed);
    if (e->next == e) {
      fresh->next = fresh->u.prev = fresh;
    } else {
      fresh->next = e->next;
      fresh->u.prev = e->u.prev;
      e->u.prev->next = fresh;
      e->next->u.prev = fresh;
    }
    if (s->hand == e) {
      s->hand = fresh;
    }
    atomic_store_explicit(pp, fresh, memory_order_release); /* publish */
    rf__cache_retire(c, e);
    pthread_mutex_unlock(&s->lock);
    return NULL;
  }
  if (s->count >= s->cap) {
    rf__cache_retire(c, rf__cache_evict(c, s, now));
    rf__cache_add(&c->evictions, 1);
  }
  rf__cache_table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
  _Atomic(rf__cache_entry *) *head = &t->b[fresh->hash & (t->n - 1)];
  atomic_store_explicit(&fresh->chain, atomic_load_explicit(head, memory_order_relaxed),
                        memory_order_relaxed);
  atomic_store_explicit(head, fresh, memory_order_release); /* publish */
  rf__cache_ring_insert(s, fresh);
  s->count++;
  if (s->count > t->n / 4 * 3) { /* load factor 3/4, as java.util.HashMap */
    rf__cache_grow(c, s);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

/* What the hook returns when it has nothing to free but retired something:
 * `after` runs only for a non-NULL return. */
static char rf__cache_reclaim_only;

/* The singleflight completion hook (see "complete:" above). Returns what
 * rf__cache_after must handle once the bucket lock is released (or NULL). */
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
  rf__cache_entry *unused = rf__cache_insert(c, fresh, r);
  if (unused != NULL) {
    return unused;
  }
  return &rf__cache_reclaim_only;
}

/* Runs after the bucket lock is released: frees what the hook left and
 * what the insert displaced, if no reader can still hold it. */
static void rf__cache_after(void *arg, void *deferred) {
  rf_cache_t *c = arg;
  if (deferred != &rf__cache_reclaim_only) {
    rf__cache_entry_free(deferred);
  }
  rf__cache_reclaim(c, false);
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
  rf__cache_entry *e = NULL;
  pthread_mutex_lock(&s->lock);
  (void)rf__cache_find(s, hash, key, &e);
  if (e != NULL) {
    atomic_store_explicit(&e->refreshing, false, memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->lock);
}

/* ------------------------------------------------------------ API */

int rf_cache_get(rf_cache_t *c, const char *key, rf_sf_loader fn, void *loader_arg, int timeout_ms,
                 rf_sf_result_t **out, rf_cache_src_t *src) {
  if (c == NULL || key == NULL || fn == NULL || out == NULL) {
    return RF_EINVAL;
  }
  uint64_t hash = rf__cache_hash(key);
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
  uint64_t hash = rf__cache_hash(key);
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

int rf_cache_peek(rf_cache_t *c, const char *key, rf_sf_result_t **out) {
  if (c == NULL || key == NULL || out == NULL) {
    return RF_EINVAL;
  }
  rf_sf_result_t *r = NULL;
  if (rf__cache_lookup(c, key, rf__cache_hash(key), false, true, &r) != RF__LOOK_HIT) {
    return RF_ENOENT;
  }
  *out = r;
  return 0;
}

int rf_cache_invalidate(rf_cache_t *c, const char *key) {
  if (c == NULL || key == NULL) {
    return RF_EINVAL;
  }
  /* Forget first, then remove: see "Invalidation" above. */
  bool forgot = rf_sf_forget(c->sf, key) == 0;
  uint64_t hash = rf__cache_hash(key);
  rf__cache_stripe *s = rf__cache_stripe_of(c, hash);
  rf__cache_entry *e = NULL;
  pthread_mutex_lock(&s->lock);
  (void)rf__cache_find(s, hash, key, &e);
  if (e != NULL) {
    rf__cache_unlink(s, e);
    rf__cache_retire(c, e);
  }
  pthread_mutex_unlock(&s->lock);
  bool removed = e != NULL;
  if (removed) {
    rf__cache_reclaim(c, false);
  }
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
  for (unsigned i = 0; i < RF__CACHE_CELLS; i++) {
    out->hits += rf__cache_get_ctr(&c->cells[i].hits);
    out->stale_hits += rf__cache_get_ctr(&c->cells[i].stale_hits);
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    pthread_mutex_lock(&s->lock);
    out->entries += s->count;
    pthread_mutex_unlock(&s->lock);
  }
  out->hits += rf__cache_get_ctr(&c->hits_shared) + rf__cache_get_ctr(&c->recheck_hits);
  out->stale_hits += rf__cache_get_ctr(&c->stale_hits_shared);
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

/* Line-aligned array of n objects of `size` inside a fresh zeroed block
 * (*mem, to free). */
static void *rf__cache_aligned(size_t n, size_t size, void **mem) {
  char *m = rf__calloc(1, n * size + RF__CACHE_LINE - 1);
  *mem = m;
  if (m == NULL) {
    return NULL;
  }
  uintptr_t a = ((uintptr_t)m + RF__CACHE_LINE - 1) & ~(uintptr_t)(RF__CACHE_LINE - 1);
  return m + (a - (uintptr_t)m);
}

/* Frees what rf_cache_create allocated: stripes (locks, tables), limbo and
 * the cache. Entries must be gone already. Also the table's on_free. */
static void rf__cache_free(void *arg) {
  rf_cache_t *c = arg;
  if (c->limbo_mu_ok) {
    rf__cache_reclaim(c, true);
    pthread_mutex_destroy(&c->limbo_mu);
  }
  if (c->stripes != NULL) {
    for (unsigned i = 0; i < c->nstripes; i++) {
      rf__cache_stripe *s = &c->stripes[i];
      if (s->lock_ok) {
        pthread_mutex_destroy(&s->lock);
      }
      rf__free(atomic_load_explicit(&s->table, memory_order_relaxed));
    }
  }
  rf__free(c->stripes_mem);
  rf__free(c->cells_mem);
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
  pthread_once(&rf__rd_once, rf__rd_init);
  int rc = RF_ENOMEM;
  rf_cache_t *c = rf__calloc(1, sizeof(*c));
  if (c == NULL) {
    return RF_ENOMEM;
  }
  c->ttl_ms = opts->ttl_ms;
  c->stale_ms = opts->ttl_ms != 0 ? opts->stale_ms : 0;
  c->nstripes = rf__cache_pick_stripes(opts);
  c->limbo_mu_ok = pthread_mutex_init(&c->limbo_mu, NULL) == 0;
  c->stripes = rf__cache_aligned(c->nstripes, sizeof(rf__cache_stripe), &c->stripes_mem);
  c->cells = rf__cache_aligned(RF__CACHE_CELLS, sizeof(rf__cache_cell), &c->cells_mem);
  if (!c->limbo_mu_ok || c->stripes == NULL || c->cells == NULL) {
    goto fail;
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    s->cap = opts->max_entries / c->nstripes + (i < opts->max_entries % c->nstripes ? 1 : 0);
    atomic_init(&s->seq, 0);
    atomic_init(&s->table, rf__cache_table_new(RF__CACHE_MIN_BUCKETS));
    if (atomic_load_explicit(&s->table, memory_order_relaxed) == NULL) {
      goto fail;
    }
    s->lock_ok = pthread_mutex_init(&s->lock, NULL) == 0;
    if (!s->lock_ok) {
      goto fail;
    }
  }
  rc = rf__sf_create_ex(&c->sf, rf__cache_hook, rf__cache_after, rf__cache_free, c);
  if (rc != 0) {
    goto fail;
  }
  *out = c;
  return 0;

fail:
  rf__cache_free(c);
  return rc;
}

void rf_cache_destroy(rf_cache_t *c) {
  if (c == NULL) {
    return;
  }
  for (unsigned i = 0; i < c->nstripes; i++) {
    rf__cache_stripe *s = &c->stripes[i];
    rf__cache_entry *list = NULL;
    pthread_mutex_lock(&s->lock);
    s->closed = true; /* late completions must not insert */
    rf__cache_table *t = atomic_load_explicit(&s->table, memory_order_relaxed);
    for (size_t b = 0; b < t->n; b++) {
      rf__cache_entry *e = atomic_load_explicit(&t->b[b], memory_order_relaxed);
      while (e != NULL) {
        rf__cache_entry *next = atomic_load_explicit(&e->chain, memory_order_relaxed);
        e->next = list;
        list = e;
        e = next;
      }
      atomic_store_explicit(&t->b[b], NULL, memory_order_relaxed);
    }
    s->hand = NULL;
    s->count = 0;
    pthread_mutex_unlock(&s->lock);
    while (list != NULL) {
      rf__cache_entry *e = list;
      list = e->next;
      rf__cache_entry_free(e);
    }
  }
  /* No reader may run any more (see cache.h): free the limbo now. */
  rf__cache_reclaim(c, true);
  /* The rest goes when the table goes: now, or when the last load still
   * in progress completes (its hook needs the stripes). */
  rf_sf_destroy(c->sf);
}
