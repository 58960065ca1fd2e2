/* racefree/metrics.h - exact counters, gauges and histograms, shared by
 * threads and (optionally) by forked worker processes, with Prometheus text
 * exposition.
 *
 * The race this module removes is the `this.requestCount++` of the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions": a
 * read, an add and a write that two threads (or two processes) interleave so
 * that one increment overwrites the other. Every update here is one atomic
 * read-modify-write (fetch_add, or a compare-and-swap loop for the double sum
 * of a histogram), so no update is ever lost.
 *
 *   rf_metrics_t *m;
 *   rf_counter_t *requests;
 *   rf_metrics_create(&m, 256, RF_METRICS_SHARED);       // before fork()
 *   rf_metrics_counter(m, "app_requests_total", "Requests served.",
 *                      "route=\"/api\"", RF_COUNTER_SHARDED, &requests);
 *   ... fork() workers; each calls rf_counter_inc(requests) ...
 *   char *text; size_t len;
 *   rf_metrics_render(m, &text, &len);  // any process: the sum over all
 *   free(text);
 *
 * Storage. A registry is one contiguous region holding a header, a table of
 * series, two hash indexes and an arena for names, help texts, label texts
 * and values. The region contains no pointers, only offsets from its start,
 * so it means the same thing at any address. With RF_METRICS_SHARED the
 * region is mmap(MAP_SHARED | MAP_ANONYMOUS): created before fork(), every
 * child sees the same pages, so a handle obtained in any process (before or
 * after the fork) updates the values every process reads - the C counterpart
 * of SharedArrayBuffer + Atomics. Capacity is fixed at creation (max_series
 * and the arena size); registering beyond it fails with RF_ENOMEM.
 *
 * Handles (rf_counter_t *, rf_gauge_t *, rf_histogram_t *) point into the
 * region, are never freed individually and stay valid until
 * rf_metrics_destroy in the process that uses them.
 *
 * Thread- and process-safety: updates and reads are lock-free and may run
 * concurrently with each other, with registration and with rendering, from
 * any thread of any process sharing the region. Registration takes the
 * registry lock (a robust, process-shared mutex in a shared region; a worker
 * that died holding it does not wedge the others).
 *
 * Memory ordering (the full essay is in src/lib/metrics.c and
 * docs/metrics.md): value updates and value reads are relaxed. A read
 * returns a value that some interleaving of the updates produced; it never
 * loses or invents an increment, but it orders nothing else: do not use a
 * metric to publish other data between threads.
 */
#ifndef RACEFREE_METRICS_H
#define RACEFREE_METRICS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

typedef struct rf_metrics rf_metrics_t;     /* registry */
typedef struct rf_counter rf_counter_t;     /* monotonic uint64 */
typedef struct rf_gauge rf_gauge_t;         /* int64 */
typedef struct rf_histogram rf_histogram_t; /* fixed buckets, double values */

/* rf_metrics_create flag: the registry lives in mmap(MAP_SHARED |
 * MAP_ANONYMOUS) memory; create it before fork() and every child updates the
 * same values. */
#define RF_METRICS_SHARED 1u

/* rf_metrics_counter flag: per-thread shards (one cache line each), summed
 * on read. Use it for hot counters incremented by many threads. */
#define RF_COUNTER_SHARDED 1u

/* Limits. Names longer than RF_METRICS_NAME_MAX, help texts longer than
 * RF_METRICS_HELP_MAX, label texts longer than RF_METRICS_LABELS_MAX (after
 * canonicalisation), more than RF_METRICS_MAX_BOUNDS histogram bounds or more
 * than RF_METRICS_MAX_SERIES series are RF_EINVAL. */
#define RF_METRICS_NAME_MAX   128
#define RF_METRICS_HELP_MAX   1024
#define RF_METRICS_LABELS_MAX 1024
#define RF_METRICS_MAX_BOUNDS 64
#define RF_METRICS_MAX_SERIES 65536u

/* Shards of a sharded counter. The k-th thread (in order of first use of a
 * sharded counter in its process) uses shard k % RF_METRICS_SHARDS on every
 * sharded counter. Each shard is one 64-byte cache line. */
#define RF_METRICS_SHARDS 16u

/* Default arena bytes reserved per series by rf_metrics_create: enough for
 * a sharded counter (17 cache lines) or a 64-bound histogram plus typical
 * name, help and label texts. Memory is reserved, not touched: pages are
 * backed only when used. */
#define RF_METRICS_BYTES_PER_SERIES 2048u

typedef struct {
  size_t max_series;  /* 1 .. RF_METRICS_MAX_SERIES */
  size_t arena_bytes; /* 0: max_series * RF_METRICS_BYTES_PER_SERIES */
  unsigned flags;     /* 0 or RF_METRICS_SHARED */
} rf_metrics_opts_t;

/* rf_metrics_create: a new empty registry for up to max_series series.
 * flags: 0 (process-private memory) or RF_METRICS_SHARED (see above).
 * Errors: RF_EINVAL (out NULL, max_series 0 or > RF_METRICS_MAX_SERIES,
 * unknown flags), RF_ENOMEM (allocation or mmap failed, or the region would
 * exceed 4 GiB), RF_ENOTSUP (64-bit atomics are not lock-free here, which
 * cross-process use requires). *out is written only on success.
 * Thread-safety: may be called from any thread. Does not block. */
int rf_metrics_create(rf_metrics_t **out, size_t max_series, unsigned flags);

/* rf_metrics_create_ex: as rf_metrics_create with an explicit arena size
 * (opts->arena_bytes, rounded up to 64; 0 = the default). Same errors; an
 * arena of more than 4 GiB in total is RF_ENOMEM. */
int rf_metrics_create_ex(rf_metrics_t **out, const rf_metrics_opts_t *opts);

/* rf_metrics_destroy: release this process's view of the registry (free or
 * munmap). Every handle obtained from it becomes invalid in this process. A
 * shared region stays alive in the other processes that map it; children may
 * (and should, before exiting normally) call this too. NULL is a no-op. Not
 * safe concurrently with any other use of the same registry in the same
 * process. */
void rf_metrics_destroy(rf_metrics_t *m);

/* Registration. `name` matches [a-zA-Z_:][a-zA-Z0-9_:]*; `help` may be NULL
 * (no HELP line; the first help registered for a name is the family's help,
 * later ones are ignored); `labels` is NULL, "" or pre-rendered Prometheus
 * label text without braces, e.g. "route=\"/api\",method=\"GET\"": label
 * names match [a-zA-Z_][a-zA-Z0-9_]* and do not start with "__", values are
 * double-quoted with \\, \" and \n escaped (rf_metrics_labels_render builds
 * such text). The pairs are stored sorted by label name, so "a=\"1\",b=\"2\""
 * and "b=\"2\",a=\"1\"" are the same series; a label name may not repeat.
 *
 * Idempotent: the same name and labels return the same series (in every
 * thread and, for a shared registry, every process, also after fork()).
 * Re-registering an existing series with a different type, counter flags or
 * histogram bounds, or a name whose family has another type, is RF_EEXIST.
 *
 * Errors: RF_EINVAL (NULL m/name/out, a bad name, label text, flags or
 * bounds, a length over the limits), RF_EEXIST (see above), RF_ENOMEM (the
 * series table or the arena is full), RF_ESTATE (the registry lock is
 * unrecoverable). *out is written only on success.
 *
 * Thread-safety: any thread of any process sharing the registry. An existing
 * series is found without locking; a new one is added under the registry
 * lock (blocks while another registration holds it, which is short). Makes
 * no heap allocation. */
int rf_metrics_counter(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                       unsigned flags, rf_counter_t **out);
int rf_metrics_gauge(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                     rf_gauge_t **out);
/* upper_bounds: nbounds finite values, strictly increasing (NULL when
 * nbounds is 0); a final +Inf is accepted and dropped, the +Inf bucket is
 * always present. At most RF_METRICS_MAX_BOUNDS. The label name "le" is
 * reserved for histograms. */
int rf_metrics_histogram(rf_metrics_t *m, const char *name, const char *help, const char *labels,
                         const double *upper_bounds, size_t nbounds, rf_histogram_t **out);

/* Counters. rf_counter_inc adds 1, rf_counter_add adds n (mod 2^64). One
 * relaxed atomic fetch_add (on this thread's shard for a sharded counter).
 * Lock-free, never blocks; on an unsharded counter it is a single atomic
 * instruction and async-signal-safe. NULL is a no-op. */
void rf_counter_inc(rf_counter_t *c);
void rf_counter_add(rf_counter_t *c, uint64_t n);

/* rf_counter_value: the current total (the sum of the shards for a sharded
 * counter). With concurrent increments the result lies between the total at
 * the start and at the end of the call, and successive calls from one thread
 * never go backwards. NULL gives 0. Lock-free. */
uint64_t rf_counter_value(const rf_counter_t *c);

/* Gauges. set stores v; add adds delta (negative to decrement; wraps as
 * two's complement, never undefined). Relaxed atomics, lock-free, never
 * block. A set concurrent with adds is ordered with them in some single
 * order: adds after the set build on it, adds before it are overwritten.
 * NULL is a no-op / gives 0. */
void rf_gauge_set(rf_gauge_t *g, int64_t v);
void rf_gauge_add(rf_gauge_t *g, int64_t delta);
int64_t rf_gauge_value(const rf_gauge_t *g);

/* rf_histogram_observe: count v in the first bucket whose upper bound is
 * >= v (the +Inf bucket otherwise), add 1 to the count and v to the sum.
 * Three independent relaxed atomic updates (the sum by a compare-and-swap
 * loop on the bits of a double): none is ever lost, but a concurrent reader
 * may see one before the others. NaN is counted in the +Inf bucket and makes
 * the sum NaN, as in the reference Prometheus clients. Lock-free (the CAS
 * loop retries only when another observer changed the sum). NULL: no-op. */
void rf_histogram_observe(rf_histogram_t *h, double v);

/* rf_histogram_count / _sum: total observations and their sum. The sum of
 * doubles is exact in the sense that no observation is lost; its last bits
 * may depend on the order of additions when the values are not exactly
 * representable sums. NULL gives 0. */
uint64_t rf_histogram_count(const rf_histogram_t *h);
double rf_histogram_sum(const rf_histogram_t *h);

/* rf_histogram_bucket: observations in bucket i (NOT cumulative):
 * i < nbounds is (bound[i-1], bound[i]], i == nbounds is the +Inf bucket.
 * RF_ERANGE for i > nbounds, RF_EINVAL for NULLs. */
int rf_histogram_bucket(const rf_histogram_t *h, size_t i, uint64_t *count);

/* rf_metrics_series_count: series registered so far (0 for NULL). */
size_t rf_metrics_series_count(const rf_metrics_t *m);

/* rf_metrics_render: the Prometheus text exposition format 0.0.4 of every
 * series: families in order of first registration, each with one HELP (when
 * a help text was given) and one TYPE line, then its series in registration
 * order. Histograms give cumulative name_bucket{...,le="..."} lines ending
 * with le="+Inf", then name_sum and name_count (equal to the +Inf bucket of
 * the same rendering). *out is NUL-terminated and malloc'd: the caller
 * free()s it; *len (len may be NULL) is strlen(*out).
 * Errors: RF_EINVAL (NULL m or out), RF_ENOMEM. Thread-safety: any thread
 * of any process, concurrently with updates and registrations (it reads
 * without locking and sees every series registered before it started; each
 * value is read once, so a rendering is not an atomic snapshot of all
 * series). */
int rf_metrics_render(rf_metrics_t *m, char **out, size_t *len);

/* rf_metrics_labels_render: build label text for registration from npairs
 * name/value pairs (kv[2i] the name, kv[2i+1] the raw value, escaped here:
 * backslash, double quote and newline), e.g. {"route", "/a\"b"} gives
 * route="/a\"b". Writes a NUL-terminated string to buf.
 * Errors: RF_EINVAL (NULL buf or kv with npairs > 0, a bad label name),
 * RF_ERANGE (does not fit in cap bytes; buf then holds ""). Thread-safe,
 * no allocation. */
int rf_metrics_labels_render(char *buf, size_t cap, const char *const *kv, size_t npairs);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_METRICS_H */
