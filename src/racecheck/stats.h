/* stats.h - what a run measures: per-thread counters, latency histograms
 * and the tally of answers by (phase, step, status) that invariants count
 * over; the once-a-second live feed; and the merge into run totals.
 *
 * Threading: an rc_stats_t belongs to one worker thread while the run goes
 * on and is merged by the coordinating thread after the workers joined.
 * The live feed (rc_live_t) is the only structure touched by two threads
 * while running: the worker publishes its recent samples into it under its
 * mutex about ten times a second, the coordinator drains it once a second.
 */
#ifndef RC_STATS_H
#define RC_STATS_H

#include <pthread.h>
#include <stdint.h>

#include "hist.h"
#include "net.h"

#define RC_MAX_PHASES 64
#define RC_STATUS_MAX 1000

/* A tally code is an HTTP status (100..999) or RC_CODE_NETERR + RC_NET_x. */
#define RC_CODE_NETERR  1000
#define RC_MAX_STEP_LAT 256 /* steps with their own latency histogram (35 KiB each) */

typedef struct rc_tally_ent {
  uint64_t key; /* phase << 40 | step << 16 | code; 0 = empty slot */
  uint64_t count;
} rc_tally_ent_t;

typedef struct rc_tally {
  rc_tally_ent_t *ents;
  uint32_t cap, n;
} rc_tally_t;

void rc_tally_add(rc_tally_t *t, uint32_t phase, uint32_t step, uint32_t code, uint64_t n);
void rc_tally_merge(rc_tally_t *dst, const rc_tally_t *src);
void rc_tally_free(rc_tally_t *t);
static inline uint32_t rc_tally_phase(uint64_t key) {
  return (uint32_t)(key >> 40) - 1u;
}
static inline uint32_t rc_tally_step(uint64_t key) {
  return (uint32_t)((key >> 16) & 0xffffffu);
}
static inline uint32_t rc_tally_code(uint64_t key) {
  return (uint32_t)(key & 0xffffu);
}

typedef struct rc_stats {
  rc_hist_t lat; /* latency of every answer, microseconds */
  uint64_t sent;
  uint64_t responses;
  uint64_t status[RC_STATUS_MAX];
  uint64_t neterr[RC_NET_NERR];
  uint64_t bytes_in, bytes_out;
  uint64_t vu_created, vu_completed, vu_failed, vu_skipped;
  uint64_t expect_ok, expect_failed, capture_failed;
  uint64_t tmpl_undefined; /* template values naming an undefined variable */
  uint64_t max_lag_us;     /* worst delay between an arrival's intended and actual start */
  rc_tally_t tally;
  rc_hist_t *phase_lat[RC_MAX_PHASES]; /* allocated on first use */
  rc_hist_t **step_lat; /* per step id (metrics by endpoint), first RC_MAX_STEP_LAT */
  uint32_t nstep_lat;
  uint64_t phase_requests[RC_MAX_PHASES];
} rc_stats_t;

void rc_stats_init(rc_stats_t *s);
void rc_stats_free(rc_stats_t *s);
/* Record one answer (code = HTTP status) or error (RC_CODE_NETERR + kind). */
void rc_stats_answer(rc_stats_t *s, uint32_t phase, uint32_t step, uint32_t code,
                     uint64_t latency_us);
void rc_stats_merge(rc_stats_t *dst, const rc_stats_t *src);
uint64_t rc_stats_errors(const rc_stats_t *s);

/* One second of the run, for the live line and the report's time series. */
typedef struct rc_tick {
  double t; /* seconds since the start, at the end of the interval */
  uint64_t requests, errors;
  uint64_t p50, p95, p99, max; /* microseconds */
} rc_tick_t;

typedef struct rc_live {
  pthread_mutex_t mu;
  uint64_t requests, errors;
  rc_hist_t lat;
} rc_live_t;

void rc_live_init(rc_live_t *l);
void rc_live_destroy(rc_live_t *l);
/* Worker side: move a local interval (hist + counters) into the feed and
 * empty the local one. */
void rc_live_publish(rc_live_t *l, rc_hist_t *local, uint64_t *requests, uint64_t *errors);
/* Coordinator side: take everything published so far into out/counters. */
void rc_live_drain(rc_live_t *l, rc_hist_t *out, uint64_t *requests, uint64_t *errors);
/* Empty only the used range of a histogram (cheap). */
void rc_hist_clear(rc_hist_t *h);

#endif /* RC_STATS_H */
