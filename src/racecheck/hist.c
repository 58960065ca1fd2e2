/* hist.c - see hist.h. */
#include "hist.h"

#include <string.h>

void rc_hist_init(rc_hist_t *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
  h->lo = RC_HIST_BUCKETS;
}

uint32_t rc_hist_index(uint64_t v) {
  if (v > RC_HIST_MAX) {
    v = RC_HIST_MAX;
  }
  if (v < (uint64_t)2 * RC_HIST_SUB) {
    return (uint32_t)v;
  }
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned shift = msb - RC_HIST_SUB_BITS; /* v >> shift is in [SUB, 2*SUB) */
  return (shift + 1u) * RC_HIST_SUB + (uint32_t)((v >> shift) - RC_HIST_SUB);
}

uint64_t rc_hist_bucket_low(uint32_t i) {
  if (i < (uint64_t)2 * RC_HIST_SUB) {
    return i;
  }
  unsigned shift = i / RC_HIST_SUB - 1u;
  return ((uint64_t)(i % RC_HIST_SUB) + RC_HIST_SUB) << shift;
}

uint64_t rc_hist_bucket_high(uint32_t i) {
  if (i < (uint64_t)2 * RC_HIST_SUB) {
    return i;
  }
  unsigned shift = i / RC_HIST_SUB - 1u;
  return rc_hist_bucket_low(i) + ((UINT64_C(1) << shift) - 1u);
}

void rc_hist_record_n(rc_hist_t *h, uint64_t v, uint64_t n) {
  if (n == 0) {
    return;
  }
  if (v > RC_HIST_MAX) {
    v = RC_HIST_MAX;
  }
  uint32_t i = rc_hist_index(v);
  h->counts[i] += n;
  h->count += n;
  h->sum += v * n;
  if (v < h->min) {
    h->min = v;
  }
  if (v > h->max) {
    h->max = v;
  }
  if (i < h->lo) {
    h->lo = i;
  }
  if (i > h->hi) {
    h->hi = i;
  }
}

void rc_hist_record(rc_hist_t *h, uint64_t v) {
  rc_hist_record_n(h, v, 1);
}

void rc_hist_merge(rc_hist_t *dst, const rc_hist_t *src) {
  if (src->count == 0) {
    return;
  }
  for (uint32_t i = src->lo; i <= src->hi; i++) {
    dst->counts[i] += src->counts[i];
  }
  dst->count += src->count;
  dst->sum += src->sum;
  if (src->min < dst->min) {
    dst->min = src->min;
  }
  if (src->max > dst->max) {
    dst->max = src->max;
  }
  if (src->lo < dst->lo) {
    dst->lo = src->lo;
  }
  if (src->hi > dst->hi) {
    dst->hi = src->hi;
  }
}

uint64_t rc_hist_percentile(const rc_hist_t *h, double p) {
  if (h->count == 0) {
    return 0;
  }
  if (!(p > 0)) {
    return h->min;
  }
  if (p >= 100) {
    return h->max;
  }
  double r = p / 100.0 * (double)h->count;
  uint64_t rank = (uint64_t)r;
  if ((double)rank < r) {
    rank++;
  }
  if (rank < 1) {
    rank = 1;
  }
  uint64_t seen = 0;
  for (uint32_t i = h->lo; i <= h->hi; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t v = rc_hist_bucket_high(i);
      if (v > h->max) {
        v = h->max;
      }
      if (v < h->min) {
        v = h->min;
      }
      return v;
    }
  }
  return h->max;
}

double rc_hist_mean(const rc_hist_t *h) {
  return h->count ? (double)h->sum / (double)h->count : 0.0;
}
