/* metrics_internal.h - the region layout shared by metrics*.c (not installed).
 *
 * A registry is ONE region, process-private (rf__calloc) or MAP_SHARED:
 *
 *   offset 0           struct rf_metrics (header, registry lock)
 *   table_off          rf__series_t[max_series]        series metadata
 *   sindex_off         _Atomic uint32_t[icap]          series hash index
 *   findex_off         _Atomic uint32_t[icap]          family (name) index
 *   arena_off..end     texts and value cells, bump-allocated, 64-aligned
 *
 * Nothing inside the region is a pointer: texts and cells are found by
 * offsets from the region start, so every process maps the same bytes with
 * the same meaning (for a MAP_SHARED region created before fork() the
 * address is even the same in every child, which is why handles - plain
 * pointers into the region - stay valid across fork()). An offset of 0 means
 * "none" (offset 0 is the header, never an arena object).
 *
 * Lifetime of the parts: the header fields above `nseries` are written once
 * by rf_metrics_create and read-only afterwards. A series slot, its texts and
 * the immutable fields of its cell (nshards, nbounds, bounds) are written
 * under the lock before the slot is published (nseries, then the index
 * entries, with release stores) and never change afterwards. Only the value
 * words of the cells change after publication, by atomic read-modify-writes.
 */
#ifndef RACEFREE_METRICS_INTERNAL_H
#define RACEFREE_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "internal.h"
#include "racefree/metrics.h"

#define RF__METRICS_MAGIC 0x52464d31u /* "RFM1" */
#define RF__LINE          64u

/* Cross-process use needs address-free, lock-free atomics: a lock-based
 * fallback would keep its lock in process-private memory and two processes
 * would each "lock" their own copy. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_LONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "32-bit atomics must be lock-free");
_Static_assert(sizeof(uint64_t) == sizeof(double), "double must be 64 bits");

enum { RF__KIND_COUNTER = 1, RF__KIND_GAUGE = 2, RF__KIND_HISTOGRAM = 3 };

/* One cache line holding one 64-bit value: shards never share a line. */
typedef struct {
  _Alignas(RF__LINE) _Atomic uint64_t v;
} rf__line_t;
_Static_assert(sizeof(rf__line_t) == RF__LINE, "one shard per cache line");

/* Counter cell. The first line holds the unsharded value and the immutable
 * shard count (so for a sharded counter that line is only read and stays
 * shared-clean in every core's cache); the shards follow, one line each. */
struct rf_counter {
  _Alignas(RF__LINE) _Atomic uint64_t value; /* unsharded counters */
  uint32_t nshards;                          /* 0 or RF_METRICS_SHARDS */
  uint32_t magic;
  rf__line_t shards[]; /* nshards lines */
};
_Static_assert(sizeof(struct rf_counter) == RF__LINE, "counter header is one line");

struct rf_gauge {
  _Alignas(RF__LINE) _Atomic int64_t value;
  uint32_t magic;
};

/* Histogram cell: count and sum (the bits of a double) share the first line
 * with the immutable bucket layout; the bounds follow, then at buckets_off
 * (from the cell start, 64-aligned) nbounds + 1 non-cumulative bucket
 * counts, the last one the +Inf bucket. */
struct rf_histogram {
  _Alignas(RF__LINE) _Atomic uint64_t count;
  _Atomic uint64_t sum_bits;
  uint32_t nbounds;
  uint32_t buckets_off;
  uint32_t magic;
  double bounds[]; /* nbounds, strictly increasing, finite */
};

/* Series metadata, immutable once published. */
typedef struct {
  uint64_t hash;       /* rf__metrics_hash(name, labels) */
  uint32_t name_off;   /* NUL-terminated name (shared by the family) */
  uint32_t help_off;   /* family help text, 0 = none */
  uint32_t labels_off; /* canonical label text, 0 = no labels */
  uint32_t cell_off;   /* struct rf_counter / rf_gauge / rf_histogram */
  uint32_t family;     /* slot index of the family's first series */
  uint16_t name_len;
  uint16_t labels_len;
  uint8_t kind;  /* RF__KIND_... */
  uint8_t flags; /* RF_COUNTER_SHARDED for counters */
} rf__series_t;

/* The region header. rf_metrics_t * is the region's start. */
struct rf_metrics {
  uint32_t magic;
  uint32_t flags;      /* RF_METRICS_SHARED */
  uint32_t max_series; /* table capacity */
  uint32_t icap;       /* index capacity, a power of two >= 2 * max_series */
  uint64_t region_size;
  uint64_t raw_pad; /* private regions: bytes from the allocation to here */
  uint32_t table_off, sindex_off, findex_off, arena_off, arena_end;
  uint32_t arena_used;      /* next free arena offset; under `lock` */
  _Atomic uint32_t nseries; /* published slots; release-stored under `lock` */
  pthread_mutex_t lock;     /* robust; process-shared in shared regions */
};

static inline const char *rf__metrics_text(const rf_metrics_t *m, uint32_t off) {
  return off == 0 ? "" : (const char *)m + off;
}

static inline const rf__series_t *rf__metrics_slot(const rf_metrics_t *m, uint32_t i) {
  return (const rf__series_t *)((const char *)m + m->table_off) + i;
}

static inline _Atomic uint64_t *rf__histogram_buckets(const struct rf_histogram *h) {
  return (_Atomic uint64_t *)((char *)h + h->buckets_off);
}

/* Bytes of a histogram cell with nbounds bounds, and its buckets_off. */
size_t rf__histogram_cell_size(size_t nbounds, uint32_t *buckets_off);

/* Name check: [a-zA-Z_:][a-zA-Z0-9_:]*, 1..RF_METRICS_NAME_MAX bytes.
 * Returns the length or 0 when invalid. */
size_t rf__metrics_name_len(const char *name);

/* Validate label text (NULL/"" = none) and write its canonical form (pairs
 * sorted by label name) to out (cap >= RF_METRICS_LABELS_MAX + 1). Rejects
 * the label name "le" when reserve_le. Returns the length or RF_EINVAL. */
int rf__metrics_labels_canon(const char *in, int reserve_le, char *out, size_t cap);

/* FNV-1a over name, a 0xff separator and labels. */
uint64_t rf__metrics_hash(const char *name, const char *labels);

/* Lock / unlock the registry. rf__metrics_lock repairs the indexes when the
 * previous owner died holding the lock (EOWNERDEAD) and returns 0, or
 * RF_ESTATE when the lock is unrecoverable. Exposed for the tests (a child
 * dies holding the lock). */
int rf__metrics_lock(rf_metrics_t *m);
void rf__metrics_unlock(rf_metrics_t *m);

/* Make the calling thread pick a new shard index on its next sharded
 * update, and reseed the round-robin from the process id (fork child). */
void rf__metrics_shards_atfork_child(void);

#endif /* RACEFREE_METRICS_INTERNAL_H */
