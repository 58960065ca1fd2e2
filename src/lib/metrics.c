/* metrics.c - the metrics registry: region creation, the registry lock,
 * lookup and idempotent registration (see racefree/metrics.h). The hot
 * update paths are in metrics_values.c, the exposition in metrics_render.c,
 * name and label checks in metrics_labels.c.
 *
 * Memory ordering - every atomic of the module and why it has its order
 * ---------------------------------------------------------------------
 *
 * 1. Value words (counter value and shards, gauge value, histogram count,
 *    bucket counts and sum bits) - RELAXED, in metrics_values.c.
 *    A metric value is self-contained: nobody reads a counter to learn that
 *    some other memory is ready. What we need is that no update is lost, and
 *    that is a property of the read-modify-write itself: C11 guarantees that
 *    every RMW on one atomic object reads the value written by the RMW just
 *    before it in that object's modification order (5.1.2.4p10 of C11),
 *    whatever memory_order argument is passed. Ordering arguments only decide
 *    what OTHER memory becomes visible alongside; here there is none, so
 *    acquire/release would buy nothing and cost fences on weakly ordered
 *    CPUs. (On x86-64 a relaxed fetch_add is still a LOCK XADD: the cost of
 *    the single counter is the cache line bouncing between cores, not the
 *    order; that is what the shards remove.)
 *    What a reader can conclude: a relaxed load returns some value from the
 *    object's modification order, never a torn or invented one, and by
 *    read-read coherence a later load by the same thread never returns an
 *    earlier value. For a sharded counter the sum of the shards therefore
 *    lies between the true total when the read started and when it ended,
 *    and is non-decreasing across reads of one thread.
 *    What a reader can NOT conclude: that a count of N means the N increments'
 *    other side effects are visible; that two different metrics read one
 *    after the other form a consistent snapshot (requests_total may lag
 *    errors_total); that a histogram's count, sum and buckets agree at the
 *    instant of a read (the exposition derives _count from the buckets it
 *    read, so one rendering is self-consistent).
 *
 * 2. nseries - the number of published series slots. Written only by the
 *    lock holder, with a RELEASE store after the slot, its texts and its cell
 *    were fully written; read by rf_metrics_render and
 *    rf_metrics_series_count with an ACQUIRE load, which makes every slot
 *    below the loaded value (and everything it points to by offset) visible
 *    without taking the lock. This is the one place where memory other than
 *    the atomic itself must be published, so it is the one that needs
 *    acquire/release.
 *
 * 3. Index entries (series and family hash indexes) - same pattern: the lock
 *    holder RELEASE-stores "slot + 1" into an empty entry after the slot is
 *    complete; lock-free lookups ACQUIRE-load entries, so a found slot is
 *    always fully initialised. Entries go from 0 to a slot index once and
 *    never change again, so a lookup that misses can only be racing with an
 *    insertion; that is why registration repeats the lookup under the lock
 *    before it inserts (check-then-act done right).
 *
 * 4. The shard round-robin (metrics_values.c) - RELAXED fetch_add: it only
 *    has to hand different numbers to different threads, which any RMW does.
 *
 * Everything else in the region (arena_used, the slot contents, the cells'
 * immutable fields) is plain memory, written under the registry lock before
 * publication and read either under the lock or after an acquire of (2) or
 * (3). The lock itself is a pthread mutex (process-shared in a shared
 * region), which orders everything written under it for the next owner, also
 * in another process: that is what makes arena_used and the slot table safe
 * for registrations from several processes.
 *
 * Cross-process: C11 atomics are specified for threads, but lock-free
 * atomics are "address-free" (C11 7.17.5 note): the same physical memory
 * mapped in two processes behaves as one atomic object. The header asserts at
 * compile time, and rf_metrics_create checks at run time, that the 64-bit
 * atomics are lock-free, otherwise RF_ENOTSUP.
 *
 * Robust lock: a worker killed while registering leaves the mutex owned by a
 * dead process. The next pthread_mutex_lock returns EOWNERDEAD; we then
 * repair what the dead owner may have left half done and mark the mutex
 * consistent. Publication order makes the repair small: a slot is published
 * by nseries first, then by its index entries. A death before the nseries
 * store leaves a slot nobody sees (reused by the next registration) and some
 * leaked arena bytes; a death after it may leave index entries missing, so
 * the repair re-inserts any published slot absent from an index.
 */
#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "metrics_internal.h"

/* Definition of the series being registered. */
typedef struct {
  uint8_t kind;
  uint8_t flags;
  const double *bounds;
  size_t nbounds;
} rf__def_t;

static pthread_once_t rf__metrics_once = PTHREAD_ONCE_INIT;

static void rf__metrics_once_init(void) {
  /* A forked child inherits the forking thread's shard index and the
   * round-robin position, so every child would start on the same shard;
   * reseed in the child. Failure only costs spreading, not correctness. */
  (void)pthread_atfork(NULL, NULL, rf__metrics_shards_atfork_child);
}

static size_t rf__round_up(size_t n, size_t to) {
  return (n + to - 1) / to * to;
}

static _Atomic uint32_t *rf__index(const rf_metrics_t *m, uint32_t off) {
  return (_Atomic uint32_t *)((char *)m + off);
}

/* ------------------------------------------------------------ create */

static int rf__lock_init(rf_metrics_t *m, int shared) {
  pthread_mutexattr_t attr;
  if (pthread_mutexattr_init(&attr) != 0) {
    return RF_ENOMEM;
  }
  int rc = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (rc == 0 && shared) {
    rc = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  }
  if (rc == 0) {
    rc = pthread_mutex_init(&m->lock, &attr);
  }
  pthread_mutexattr_destroy(&attr);
  return rc == 0 ? 0 : (rc == ENOTSUP ? RF_ENOTSUP : RF_ENOMEM);
}

/* The region for one registry: mmap for a shared one, rf__calloc (aligned
 * to a cache line by hand) for a private one. Zero-filled either way. */
static rf_metrics_t *rf__region_alloc(size_t size, int shared, uint64_t *raw_pad) {
  if (shared) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    *raw_pad = 0;
    return p == MAP_FAILED ? NULL : p;
  }
  char *raw = rf__calloc(1, size + RF__LINE);
  if (raw == NULL) {
    return NULL;
  }
  size_t pad = (size_t)(-(uintptr_t)raw & (RF__LINE - 1));
  *raw_pad = pad;
  return (rf_metrics_t *)(raw + pad);
}

static void rf__region_free(rf_metrics_t *m) {
  if (m->flags & RF_METRICS_SHARED) {
    munmap(m, (size_t)m->region_size);
  } else {
    rf__free((char *)m - m->raw_pad);
  }
}

static int rf__atomics_lock_free(void) {
  _Atomic uint64_t probe64;
  _Atomic uint32_t probe32;
  atomic_init(&probe64, 0);
  atomic_init(&probe32, 0);
  return atomic_is_lock_free(&probe64) && atomic_is_lock_free(&probe32);
}

int rf_metrics_create_ex(rf_metrics_t **out, const rf_metrics_opts_t *opts) {
  if (out == NULL || opts == NULL || opts->max_series == 0 ||
      opts->max_series > RF_METRICS_MAX_SERIES || (opts->flags & ~RF_METRICS_SHARED) != 0) {
    return RF_EINVAL;
  }
  if (!rf__atomics_lock_free()) {
    return RF_ENOTSUP;
  }
  pthread_once(&rf__metrics_once, rf__metrics_once_init);

  size_t max = opts->max_series;
  size_t arena = opts->arena_bytes != 0 ? opts->arena_bytes : max * RF_METRICS_BYTES_PER_SERIES;
  if (arena > UINT32_MAX) {
    return RF_ENOMEM;
  }
  size_t icap = 1;
  while (icap < 2 * max) {
    icap <<= 1;
  }
  /* Every term is bounded (max <= 65536, arena < 4 GiB): no overflow. */
  size_t table_off = rf__round_up(sizeof(rf_metrics_t), RF__LINE);
  size_t sindex_off = table_off + rf__round_up(max * sizeof(rf__series_t), RF__LINE);
  size_t findex_off = sindex_off + rf__round_up(icap * sizeof(uint32_t), RF__LINE);
  size_t arena_off = findex_off + rf__round_up(icap * sizeof(uint32_t), RF__LINE);
  size_t size = arena_off + rf__round_up(arena, RF__LINE);
  if (size > UINT32_MAX) {
    return RF_ENOMEM;
  }

  int shared = (opts->flags & RF_METRICS_SHARED) != 0;
  uint64_t raw_pad = 0;
  rf_metrics_t *m = rf__region_alloc(size, shared, &raw_pad);
  if (m == NULL) {
    return RF_ENOMEM;
  }
  m->magic = RF__METRICS_MAGIC;
  m->flags = opts->flags;
  m->max_series = (uint32_t)max;
  m->icap = (uint32_t)icap;
  m->region_size = size;
  m->raw_pad = raw_pad;
  m->table_off = (uint32_t)table_off;
  m->sindex_off = (uint32_t)sindex_off;
  m->findex_off = (uint32_t)findex_off;
  m->arena_off = (uint32_t)arena_off;
  m->arena_end = (uint32_t)size;
  m->arena_used = (uint32_t)arena_off;
  atomic_init(&m->nseries, 0);
  /* The indexes are zero-filled memory: all entries empty. */
  int rc = rf__lock_init(m, shared);
  if (rc != 0) {
    rf__region_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

int rf_metrics_create(rf_metrics_t **out, size_t max_series, unsigned flags) {
  rf_metrics_opts_t opts = {.max_series = max_series, .arena_bytes = 0, .flags = flags};
  return rf_metrics_create_ex(out, &opts);
}

void rf_metrics_destroy(rf_metrics_t *m) {
  if (m == NULL || m->magic != RF__METRICS_MAGIC) {
    return;
  }
  if (!(m->flags & RF_METRICS_SHARED)) {
    /* A shared mutex may be in use by other processes: never destroyed,
     * it goes away with the last mapping. */
    pthread_mutex_destroy(&m->lock);
  }
  rf__region_free(m);
}

size_t rf_metrics_series_count(const rf_metrics_t *m) {
  if (m == NULL) {
    return 0;
  }
  return atomic_load_explicit(&((rf_metrics_t *)m)->nseries, memory_order_acquire);
}

/* ------------------------------------------------------------ indexes */

/* Probe `index` for hash. family != 0: match the family name only; else
 * match name and labels. Returns the slot index, or UINT32_MAX with *hole
 * set to the empty entry where it would go. Lock-free (acquire loads). */
static uint32_t rf__probe(const rf_metrics_t *m, uint32_t index_off, uint64_t hash, int family,
                          const char *name, size_t name_len, const char *labels, size_t labels_len,
                          uint32_t *hole) {
  _Atomic uint32_t *index = rf__index(m, index_off);
  uint32_t mask = m->icap - 1;
  uint32_t i = (uint32_t)hash & mask;
  for (uint32_t step = 0; step < m->icap; step++, i = (i + 1) & mask) {
    uint32_t e = atomic_load_explicit(&index[i], memory_order_acquire);
    if (e == 0) {
      *hole = i;
      return UINT32_MAX;
    }
    const rf__series_t *s = rf__metrics_slot(m, e - 1);
    if (s->name_len != name_len || memcmp(rf__metrics_text(m, s->name_off), name, name_len) != 0) {
      continue;
    }
    if (family) {
      return s->family;
    }
    if (s->hash == hash && s->labels_len == labels_len &&
        memcmp(rf__metrics_text(m, s->labels_off), labels, labels_len) == 0) {
      return e - 1;
    }
  }
  *hole = UINT32_MAX; /* cannot happen: icap >= 2 * max_series */
  return UINT32_MAX;
}

static uint64_t rf__family_hash(const char *name) {
  return rf__metrics_hash(name, NULL);
}

/* Insert slot i into both indexes when missing (lock held). */
static void rf__index_slot(rf_metrics_t *m, uint32_t i) {
  const rf__series_t *s = rf__metrics_slot(m, i);
  const char *name = rf__metrics_text(m, s->name_off);
  const char *labels = rf__metrics_text(m, s->labels_off);
  uint32_t hole;
  if (rf__probe(m, m->sindex_off, s->hash, 0, name, s->name_len, labels, s->labels_len, &hole) ==
          UINT32_MAX &&
      hole != UINT32_MAX) {
    atomic_store_explicit(rf__index(m, m->sindex_off) + hole, i + 1, memory_order_release);
  }
  if (s->family == i &&
      rf__probe(m, m->findex_off, rf__family_hash(name), 1, name, s->name_len, NULL, 0, &hole) ==
          UINT32_MAX &&
      hole != UINT32_MAX) {
    atomic_store_explicit(rf__index(m, m->findex_off) + hole, i + 1, memory_order_release);
  }
}

/* ------------------------------------------------------------ lock */

/* The previous owner died inside the critical section: every published
 * slot (below nseries) is complete, but its index entries may be missing. */
static void rf__metrics_repair(rf_metrics_t *m) {
  uint32_t n = atomic_load_explicit(&m->nseries, memory_order_relaxed);
  if (n > m->max_series) {
    n = m->max_series; /* cannot happen; never index past the table */
  }
  for (uint32_t i = 0; i < n; i++) {
    rf__index_slot(m, i);
  }
}

int rf__metrics_lock(rf_metrics_t *m) {
  int rc = pthread_mutex_lock(&m->lock);
  if (rc == EOWNERDEAD) {
    rf__metrics_repair(m);
    rc = pthread_mutex_consistent(&m->lock);
    if (rc != 0) {
      pthread_mutex_unlock(&m->lock);
    }
  }
  return rc == 0 ? 0 : RF_ESTATE;
}

void rf__metrics_unlock(rf_metrics_t *m) {
  pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------ register */

static uint32_t rf__arena_alloc(rf_metrics_t *m, size_t n, size_t align) {
  size_t at = rf__round_up(m->arena_used, align);
  if (n > m->arena_end || at > m->arena_end - n) {
    return 0;
  }
  m->arena_used = (uint32_t)(at + n);
  return (uint32_t)at;
}

static uint32_t rf__arena_text(rf_metrics_t *m, const char *s, size_t len) {
  uint32_t off = rf__arena_alloc(m, len + 1, 1);
  if (off != 0) {
    memcpy((char *)m + off, s, len);
    ((char *)m)[off + len] = '\0';
  }
  return off;
}

size_t rf__histogram_cell_size(size_t nbounds, uint32_t *buckets_off) {
  size_t boff =
      rf__round_up(offsetof(struct rf_histogram, bounds) + nbounds * sizeof(double), RF__LINE);
  *buckets_off = (uint32_t)boff;
  return rf__round_up(boff + (nbounds + 1) * sizeof(uint64_t), RF__LINE);
}

/* Allocate and initialise the value cell for def. Returns its offset, 0
 * when the arena is full. */
static uint32_t rf__cell_create(rf_metrics_t *m, const rf__def_t *def) {
  uint32_t off = 0;
  if (def->kind == RF__KIND_COUNTER) {
    uint32_t nshards = (def->flags & RF_COUNTER_SHARDED) ? RF_METRICS_SHARDS : 0;
    off = rf__arena_alloc(m, sizeof(struct rf_counter) + nshards * sizeof(rf__line_t), RF__LINE);
    if (off != 0) {
      struct rf_counter *c = (struct rf_counter *)((char *)m + off);
      atomic_init(&c->value, 0);
      for (uint32_t i = 0; i < nshards; i++) {
        atomic_init(&c->shards[i].v, 0);
      }
      c->nshards = nshards;
      c->magic = RF__METRICS_MAGIC;
    }
  } else if (def->kind == RF__KIND_GAUGE) {
    off = rf__arena_alloc(m, sizeof(struct rf_gauge), RF__LINE);
    if (off != 0) {
      struct rf_gauge *g = (struct rf_gauge *)((char *)m + off);
      atomic_init(&g->value, 0);
      g->magic = RF__METRICS_MAGIC;
    }
  } else {
    uint32_t boff;
    size_t size = rf__histogram_cell_size(def->nbounds, &boff);
    off = rf__arena_alloc(m, size, RF__LINE);
    if (off != 0) {
      struct rf_histogram *h = (struct rf_histogram *)((char *)m + off);
      atomic_init(&h->count, 0);
      atomic_init(&h->sum_bits, 0); /* the bits of +0.0 */
      h->nbounds = (uint32_t)def->nbounds;
      h->buckets_off = boff;
      h->magic = RF__METRICS_MAGIC;
      for (size_t i = 0; i < def->nbounds; i++) {
        h->bounds[i] = def->bounds[i];
      }
      for (size_t i = 0; i <= def->nbounds; i++) {
        atomic_init(&rf__histogram_buckets(h)[i], 0);
      }
    }
  }
  return off;
}

/* Does the published series s have definition def? */
static int rf__def_matches(const rf_metrics_t *m, const rf__series_t *s, const rf__def_t *def) {
  if (s->kind != def->kind || s->flags != def->flags) {
    return 0;
  }
  if (def->kind == RF__KIND_HISTOGRAM) {
    const struct rf_histogram *h = (const void *)((const char *)m + s->cell_off);
    if (h->nbounds != def->nbounds) {
      return 0;
    }
    for (size_t i = 0; i < def->nbounds; i++) {
      if (h->bounds[i] != def->bounds[i]) {
        return 0;
      }
    }
  }
  return 1;
}

static int rf__found(const rf_metrics_t *m, uint32_t idx, const rf__def_t *def, void **out) {
  const rf__series_t *s = rf__metrics_slot(m, idx);
  if (!rf__def_matches(m, s, def)) {
    return RF_EEXIST;
  }
  *out = (char *)m + s->cell_off;
  return 0;
}

/* Everything a registration needs, validated, before the lock. */
typedef struct {
  const char *name;
  size_t name_len;
  const char *help;
  size_t help_len;
  char labels[RF_METRICS_LABELS_MAX + 1];
  size_t labels_len;
  uint64_t hash;
} rf__key_t;

static int rf__key_init(rf__key_t *k, const char *name, const char *help, const char *labels,
                        int reserve_le) {
  k->name = name;
  k->name_len = rf__metrics_name_len(name);
  if (k->name_len == 0) {
    return RF_EINVAL;
  }
  k->help = help != NULL ? help : "";
  k->help_len = strnlen(k->help, RF_METRICS_HELP_MAX + 1);
  if (k->help_len > RF_METRICS_HELP_MAX) {
    return RF_EINVAL;
  }
  int len = rf__metrics_labels_canon(labels, reserve_le, k->labels, sizeof(k->labels));
  if (len < 0) {
    return len;
  }
  k->labels_len = (size_t)len;
  k->hash = rf__metrics_hash(name, k->labels);
  return 0;
}

/* Add a new series (lock held, lookup missed). */
static int rf__insert(rf_metrics_t *m, const rf__key_t *k, const rf__def_t *def, void **out) {
  uint32_t hole;
  uint32_t fam = rf__probe(m, m->findex_off, rf__family_hash(k->name), 1, k->name, k->name_len,
                           NULL, 0, &hole);
  if (fam != UINT32_MAX && rf__metrics_slot(m, fam)->kind != def->kind) {
    return RF_EEXIST;
  }
  uint32_t n = atomic_load_explicit(&m->nseries, memory_order_relaxed);
  if (n >= m->max_series) {
    return RF_ENOMEM;
  }
  uint32_t saved_used = m->arena_used;
  rf__series_t s = {.hash = k->hash,
                    .family = fam != UINT32_MAX ? fam : n,
                    .name_len = (uint16_t)k->name_len,
                    .labels_len = (uint16_t)k->labels_len,
                    .kind = def->kind,
                    .flags = def->flags};
  if (fam != UINT32_MAX) {
    s.name_off = rf__metrics_slot(m, fam)->name_off;
    s.help_off = rf__metrics_slot(m, fam)->help_off;
  } else {
    s.name_off = rf__arena_text(m, k->name, k->name_len);
    s.help_off = k->help_len > 0 ? rf__arena_text(m, k->help, k->help_len) : 0;
  }
  s.labels_off = k->labels_len > 0 ? rf__arena_text(m, k->labels, k->labels_len) : 0;
  s.cell_off = rf__cell_create(m, def);
  if (s.name_off == 0 || (k->help_len > 0 && fam == UINT32_MAX && s.help_off == 0) ||
      (k->labels_len > 0 && s.labels_off == 0) || s.cell_off == 0) {
    m->arena_used = saved_used; /* nothing was published: take it back */
    return RF_ENOMEM;
  }
  memcpy((rf__series_t *)rf__metrics_slot(m, n), &s, sizeof(s));
  /* Publish: the slot and everything it refers to are complete (ordering
   * essay, point 2), then make it findable (point 3). */
  atomic_store_explicit(&m->nseries, n + 1, memory_order_release);
  if (RF_HOOK_FAIL("metrics.register.die_after_publish")) {
    _exit(70); /* crash simulation for the robust-lock repair test */
  }
  rf__index_slot(m, n);
  *out = (char *)m + s.cell_off;
  return 0;
}

static int rf__register(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                        const rf__def_t *def, void **out) {
  if (m == NULL || name == NULL || m->magic != RF__METRICS_MAGIC) {
    return RF_EINVAL;
  }
  rf__key_t k;
  int rc = rf__key_init(&k, name, help, labels, def->kind == RF__KIND_HISTOGRAM);
  if (rc != 0) {
    return rc;
  }
  /* Fast path: an existing series is found without the lock. */
  uint32_t hole;
  uint32_t idx =
      rf__probe(m, m->sindex_off, k.hash, 0, k.name, k.name_len, k.labels, k.labels_len, &hole);
  if (idx != UINT32_MAX) {
    return rf__found(m, idx, def, out);
  }
  /* Race window: another thread or process may register the same series
   * right now. The lookup is repeated under the lock before inserting. */
  RF_HOOK("metrics.register.after_lookup");
  rc = rf__metrics_lock(m);
  if (rc != 0) {
    return rc;
  }
  idx = rf__probe(m, m->sindex_off, k.hash, 0, k.name, k.name_len, k.labels, k.labels_len, &hole);
  if (idx != UINT32_MAX) {
    rc = rf__found(m, idx, def, out);
  } else {
    rc = rf__insert(m, &k, def, out);
  }
  rf__metrics_unlock(m);
  return rc;
}

int rf_metrics_counter(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                       unsigned flags, rf_counter_t **out) {
  if (out == NULL || (flags & ~RF_COUNTER_SHARDED) != 0) {
    return RF_EINVAL;
  }
  rf__def_t def = {RF__KIND_COUNTER, (uint8_t)flags, NULL, 0};
  void *cell = NULL;
  int rc = rf__register(m, name, help, labels, &def, &cell);
  if (rc == 0) {
    *out = cell;
  }
  return rc;
}

int rf_metrics_gauge(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                     rf_gauge_t **out) {
  if (out == NULL) {
    return RF_EINVAL;
  }
  rf__def_t def = {RF__KIND_GAUGE, 0, NULL, 0};
  void *cell = NULL;
  int rc = rf__register(m, name, help, labels, &def, &cell);
  if (rc == 0) {
    *out = cell;
  }
  return rc;
}

/* Bounds must be finite and strictly increasing; a trailing +Inf is
 * dropped (the +Inf bucket always exists). Returns the count to keep or -1. */
static long rf__bounds_check(const double *b, size_t n) {
  if ((n > 0 && b == NULL) || n > RF_METRICS_MAX_BOUNDS + 1) {
    return -1;
  }
  if (n > 0 && isinf(b[n - 1]) && b[n - 1] > 0) {
    n--;
  }
  if (n > RF_METRICS_MAX_BOUNDS) {
    return -1;
  }
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(b[i]) || (i > 0 && !(b[i] > b[i - 1]))) {
      return -1;
    }
  }
  return (long)n;
}

int rf_metrics_histogram(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                         const double *upper_bounds, size_t nbounds, rf_histogram_t **out) {
  long keep = rf__bounds_check(upper_bounds, nbounds);
  if (out == NULL || keep < 0) {
    return RF_EINVAL;
  }
  rf__def_t def = {RF__KIND_HISTOGRAM, 0, upper_bounds, (size_t)keep};
  void *cell = NULL;
  int rc = rf__register(m, name, help, labels, &def, &cell);
  if (rc == 0) {
    *out = cell;
  }
  return rc;
}
