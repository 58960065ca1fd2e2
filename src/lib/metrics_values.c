/* metrics_values.c - the hot paths: counter, gauge and histogram updates
 * and reads (see racefree/metrics.h).
 *
 * Every atomic here is RELAXED; metrics.c explains at length why that is
 * enough (no update is lost because each one is a single read-modify-write;
 * no other data is published through a metric) and what a reader may and may
 * not conclude from a value.
 *
 * Sharded counters. One contended counter is one cache line that every
 * incrementing core must own exclusively in turn: with two cores the line
 * ping-pongs and each increment waits for a transfer. A sharded counter gives
 * each thread its own line (struct rf_counter + RF_METRICS_SHARDS lines of
 * 64 bytes), so increments by different threads touch different lines and
 * proceed in parallel; the reader pays instead, summing 16 lines.
 *
 * A thread's shard index is assigned once, on its first sharded update, from
 * a process-wide round-robin (relaxed fetch_add: it only has to give
 * different threads different numbers) and kept in a thread-local variable.
 * Threads beyond 16, or threads of different processes on a shared
 * registry, may share a shard: a shard is still updated only by atomic
 * fetch_add, so sharing costs contention, never correctness. After fork()
 * the child reseeds the round-robin from its pid (pthread_atfork), so
 * workers forked from one parent usually start on different shards.
 */
#include <string.h>
#include <unistd.h>

#include "metrics_internal.h"

static _Atomic unsigned rf__shard_next;
static _Thread_local unsigned rf__shard_tls; /* shard index + 1; 0 = unassigned */

void rf__metrics_shards_atfork_child(void) {
  /* Runs in the child's only thread; nothing else can touch these. */
  rf__shard_tls = 0;
  atomic_store_explicit(&rf__shard_next, (unsigned)getpid() * 2654435761u, memory_order_relaxed);
}

static inline unsigned rf__shard_index(void) {
  unsigned s = rf__shard_tls;
  if (s == 0) {
    s = atomic_fetch_add_explicit(&rf__shard_next, 1, memory_order_relaxed) % RF_METRICS_SHARDS + 1;
    rf__shard_tls = s;
  }
  return s - 1;
}

/* ------------------------------------------------------------ counters */

void rf_counter_add(rf_counter_t *c, uint64_t n) {
  if (c == NULL) {
    return;
  }
  /* The race window of the naive `v = load; store(v + n)`: here there is
   * none, the read and the write are one atomic instruction. */
  RF_HOOK("metrics.counter.before_add");
  if (c->nshards == 0) {
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
  } else {
    atomic_fetch_add_explicit(&c->shards[rf__shard_index()].v, n, memory_order_relaxed);
  }
}

void rf_counter_inc(rf_counter_t *c) {
  rf_counter_add(c, 1);
}

uint64_t rf_counter_value(const rf_counter_t *c) {
  if (c == NULL) {
    return 0;
  }
  rf_counter_t *w = (rf_counter_t *)c; /* atomic loads take non-const in C11 */
  uint64_t sum = atomic_load_explicit(&w->value, memory_order_relaxed);
  for (uint32_t i = 0; i < c->nshards; i++) {
    sum += atomic_load_explicit(&w->shards[i].v, memory_order_relaxed);
  }
  return sum;
}

/* ------------------------------------------------------------ gauges */

void rf_gauge_set(rf_gauge_t *g, int64_t v) {
  if (g != NULL) {
    atomic_store_explicit(&g->value, v, memory_order_relaxed);
  }
}

void rf_gauge_add(rf_gauge_t *g, int64_t delta) {
  if (g != NULL) {
    /* Atomic signed arithmetic wraps silently (C11 7.17.7.5p3): no UB. */
    atomic_fetch_add_explicit(&g->value, delta, memory_order_relaxed);
  }
}

int64_t rf_gauge_value(const rf_gauge_t *g) {
  if (g == NULL) {
    return 0;
  }
  return atomic_load_explicit(&((rf_gauge_t *)g)->value, memory_order_relaxed);
}

/* ------------------------------------------------------------ histograms */

static inline uint64_t rf__dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof(u));
  return u;
}

static inline double rf__bitsd(uint64_t u) {
  double d;
  memcpy(&d, &u, sizeof(d));
  return d;
}

/* First bucket whose upper bound is >= v; nbounds (+Inf) otherwise and for
 * NaN (every comparison with NaN is false). */
static inline uint32_t rf__bucket_of(const rf_histogram_t *h, double v) {
  uint32_t lo = 0;
  uint32_t hi = h->nbounds;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (v <= h->bounds[mid]) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  return lo;
}

void rf_histogram_observe(rf_histogram_t *h, double v) {
  if (h == NULL) {
    return;
  }
  atomic_fetch_add_explicit(&rf__histogram_buckets(h)[rf__bucket_of(h, v)], 1,
                            memory_order_relaxed);
  atomic_fetch_add_explicit(&h->count, 1, memory_order_relaxed);
  /* There is no atomic add for doubles: read the bits, add in a register,
   * publish with compare-and-swap. If another observer changed the sum in
   * between, the CAS fails, `old` receives the new bits and we add again:
   * no observation is ever overwritten (the naive load/add/store would). */
  uint64_t old = atomic_load_explicit(&h->sum_bits, memory_order_relaxed);
  for (;;) {
    RF_HOOK("metrics.histogram.before_cas");
    uint64_t next = rf__dbits(rf__bitsd(old) + v);
    if (atomic_compare_exchange_weak_explicit(&h->sum_bits, &old, next, memory_order_relaxed,
                                              memory_order_relaxed)) {
      break;
    }
  }
}

uint64_t rf_histogram_count(const rf_histogram_t *h) {
  if (h == NULL) {
    return 0;
  }
  return atomic_load_explicit(&((rf_histogram_t *)h)->count, memory_order_relaxed);
}

double rf_histogram_sum(const rf_histogram_t *h) {
  if (h == NULL) {
    return 0.0;
  }
  return rf__bitsd(atomic_load_explicit(&((rf_histogram_t *)h)->sum_bits, memory_order_relaxed));
}

int rf_histogram_bucket(const rf_histogram_t *h, size_t i, uint64_t *count) {
  if (h == NULL || count == NULL) {
    return RF_EINVAL;
  }
  if (i > h->nbounds) {
    return RF_ERANGE;
  }
  *count = atomic_load_explicit(&rf__histogram_buckets(h)[i], memory_order_relaxed);
  return 0;
}
