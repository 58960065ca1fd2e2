/* hist.h - a log-linear latency histogram (HdrHistogram-style).
 *
 * Values are unsigned integers (racecheck records microseconds). Values
 * below 2*RC_HIST_SUB are counted exactly; above, each power-of-two range
 * [2^k, 2^(k+1)) is split into RC_HIST_SUB equal sub-buckets, so every
 * recorded value is known to within 1/RC_HIST_SUB (0.78 %) of itself. The
 * memory is fixed (RC_HIST_BUCKETS counters, about 35 KiB) whatever the
 * number of samples, recording is a few instructions and no allocation, and
 * histograms recorded on different threads merge exactly by adding counts.
 * Values above RC_HIST_MAX are clamped to it (and still counted).
 *
 * Percentiles use the nearest-rank definition: the value of the sample of
 * rank ceil(p/100 * count); the histogram answers with the highest value
 * that is equivalent to that sample (the top of its bucket, capped by the
 * exact maximum), so a reported p99 is never below the true one by more
 * than the bucket precision and never above the true maximum.
 *
 * Not thread-safe: each thread records into its own and merges at the end.
 */
#ifndef RC_HIST_H
#define RC_HIST_H

#include <stdint.h>

#define RC_HIST_SUB_BITS 7
#define RC_HIST_SUB      (1u << RC_HIST_SUB_BITS)
#define RC_HIST_MAX_MSB  40 /* values up to 2^41 - 1 (about 25 days in us) */
#define RC_HIST_BUCKETS  ((RC_HIST_MAX_MSB - RC_HIST_SUB_BITS + 2) * RC_HIST_SUB)
#define RC_HIST_MAX      ((UINT64_C(1) << (RC_HIST_MAX_MSB + 1)) - 1)

typedef struct rc_hist {
  uint64_t count;
  uint64_t sum; /* of the (clamped) values, for the mean */
  uint64_t min;
  uint64_t max;
  uint32_t lo, hi; /* range of buckets that may be non-zero: [lo, hi] */
  uint64_t counts[RC_HIST_BUCKETS];
} rc_hist_t;

/* Empty the histogram. Never fails. */
void rc_hist_init(rc_hist_t *h);
/* Record one value. Never fails (clamps to RC_HIST_MAX). */
void rc_hist_record(rc_hist_t *h, uint64_t v);
/* Record `n` samples of value v. */
void rc_hist_record_n(rc_hist_t *h, uint64_t v, uint64_t n);
/* Add every sample of src to dst. */
void rc_hist_merge(rc_hist_t *dst, const rc_hist_t *src);
/* Nearest-rank percentile, p in [0, 100]; 0 for an empty histogram.
 * p <= 0 gives the minimum, p >= 100 the maximum. */
uint64_t rc_hist_percentile(const rc_hist_t *h, double p);
/* Arithmetic mean of the recorded values; 0 when empty. */
double rc_hist_mean(const rc_hist_t *h);

/* Bucket arithmetic, exposed for the tests. */
uint32_t rc_hist_index(uint64_t v);
/* Lowest and highest value that fall in bucket i. */
uint64_t rc_hist_bucket_low(uint32_t i);
uint64_t rc_hist_bucket_high(uint32_t i);

#endif /* RC_HIST_H */
