/* stats.c - see stats.h. */
#include "stats.h"

#include <stdlib.h>
#include <string.h>

static uint64_t rc__mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  return k;
}

static void rc__tally_put(rc_tally_t *t, uint64_t key, uint64_t n) {
  if ((t->n + 1) * 4 >= t->cap * 3) {
    uint32_t ncap = t->cap ? t->cap * 2 : 64;
    rc_tally_ent_t *old = t->ents;
    uint32_t ocap = t->cap;
    t->ents = rc_xcalloc(ncap, sizeof *t->ents);
    t->cap = ncap;
    t->n = 0;
    for (uint32_t i = 0; i < ocap; i++) {
      if (old[i].key) {
        rc__tally_put(t, old[i].key, old[i].count);
      }
    }
    free(old);
  }
  uint32_t mask = t->cap - 1;
  for (uint32_t i = (uint32_t)rc__mix(key) & mask;; i = (i + 1) & mask) {
    if (t->ents[i].key == key) {
      t->ents[i].count += n;
      return;
    }
    if (t->ents[i].key == 0) {
      t->ents[i].key = key;
      t->ents[i].count = n;
      t->n++;
      return;
    }
  }
}

void rc_tally_add(rc_tally_t *t, uint32_t phase, uint32_t step, uint32_t code, uint64_t n) {
  /* phase + 1 so that no valid key is 0 */
  uint64_t key = ((uint64_t)(phase + 1u) << 40) | ((uint64_t)(step & 0xffffffu) << 16) |
                 (uint64_t)(code & 0xffffu);
  rc__tally_put(t, key, n);
}

void rc_tally_merge(rc_tally_t *dst, const rc_tally_t *src) {
  for (uint32_t i = 0; i < src->cap; i++) {
    if (src->ents[i].key) {
      rc__tally_put(dst, src->ents[i].key, src->ents[i].count);
    }
  }
}

void rc_tally_free(rc_tally_t *t) {
  free(t->ents);
  memset(t, 0, sizeof *t);
}

void rc_stats_init(rc_stats_t *s) {
  memset(s, 0, sizeof *s);
  rc_hist_init(&s->lat);
}

void rc_stats_free(rc_stats_t *s) {
  rc_tally_free(&s->tally);
  for (int i = 0; i < RC_MAX_PHASES; i++) {
    free(s->phase_lat[i]);
  }
  for (uint32_t i = 0; i < s->nstep_lat; i++) {
    free(s->step_lat[i]);
  }
  free(s->step_lat);
  memset(s, 0, sizeof *s);
}

/* The latency histogram of a step (allocated on first use); a shared
 * throw-away one past RC_MAX_STEP_LAT steps. */
static rc_hist_t *rc__step_hist(rc_stats_t *s, uint32_t step) {
  static _Thread_local rc_hist_t spill;
  if (step >= RC_MAX_STEP_LAT) {
    return &spill;
  }
  if (step >= s->nstep_lat) {
    s->step_lat = rc_xrealloc(s->step_lat, (step + 1) * sizeof(rc_hist_t *));
    memset(s->step_lat + s->nstep_lat, 0, (step + 1 - s->nstep_lat) * sizeof(rc_hist_t *));
    s->nstep_lat = step + 1;
  }
  if (!s->step_lat[step]) {
    s->step_lat[step] = rc_xmalloc(sizeof(rc_hist_t));
    rc_hist_init(s->step_lat[step]);
  }
  return s->step_lat[step];
}

void rc_stats_answer(rc_stats_t *s, uint32_t phase, uint32_t step, uint32_t code,
                     uint64_t latency_us) {
  if (code >= RC_CODE_NETERR) {
    uint32_t k = code - RC_CODE_NETERR;
    s->neterr[k < RC_NET_NERR ? k : RC_NET_ECONNECT]++;
  } else {
    s->responses++;
    s->status[code < RC_STATUS_MAX ? code : 0]++;
    rc_hist_record(&s->lat, latency_us);
    if (phase < RC_MAX_PHASES) {
      if (!s->phase_lat[phase]) {
        s->phase_lat[phase] = rc_xmalloc(sizeof(rc_hist_t));
        rc_hist_init(s->phase_lat[phase]);
      }
      rc_hist_record(s->phase_lat[phase], latency_us);
    }
    rc_hist_record(rc__step_hist(s, step), latency_us);
  }
  if (phase < RC_MAX_PHASES) {
    s->phase_requests[phase]++;
  }
  rc_tally_add(&s->tally, phase, step, code, 1);
}

void rc_stats_merge(rc_stats_t *d, const rc_stats_t *s) {
  for (uint32_t i = 0; i < s->nstep_lat; i++) {
    if (s->step_lat[i]) {
      rc_hist_merge(rc__step_hist(d, i), s->step_lat[i]);
    }
  }
  rc_hist_merge(&d->lat, &s->lat);
  d->sent += s->sent;
  d->responses += s->responses;
  for (int i = 0; i < RC_STATUS_MAX; i++) {
    d->status[i] += s->status[i];
  }
  for (int i = 0; i < RC_NET_NERR; i++) {
    d->neterr[i] += s->neterr[i];
  }
  d->bytes_in += s->bytes_in;
  d->bytes_out += s->bytes_out;
  d->vu_created += s->vu_created;
  d->vu_completed += s->vu_completed;
  d->vu_failed += s->vu_failed;
  d->vu_skipped += s->vu_skipped;
  d->expect_ok += s->expect_ok;
  d->expect_failed += s->expect_failed;
  d->capture_failed += s->capture_failed;
  d->tmpl_undefined += s->tmpl_undefined;
  if (s->max_lag_us > d->max_lag_us) {
    d->max_lag_us = s->max_lag_us;
  }
  rc_tally_merge(&d->tally, &s->tally);
  for (int i = 0; i < RC_MAX_PHASES; i++) {
    d->phase_requests[i] += s->phase_requests[i];
    if (s->phase_lat[i]) {
      if (!d->phase_lat[i]) {
        d->phase_lat[i] = rc_xmalloc(sizeof(rc_hist_t));
        rc_hist_init(d->phase_lat[i]);
      }
      rc_hist_merge(d->phase_lat[i], s->phase_lat[i]);
    }
  }
}

uint64_t rc_stats_errors(const rc_stats_t *s) {
  uint64_t n = 0;
  for (int i = 1; i < RC_NET_NERR; i++) {
    n += s->neterr[i];
  }
  return n;
}

void rc_hist_clear(rc_hist_t *h) {
  if (h->count) {
    memset(&h->counts[h->lo], 0, (size_t)(h->hi - h->lo + 1) * sizeof h->counts[0]);
  }
  h->count = h->sum = h->max = 0;
  h->min = UINT64_MAX;
  h->lo = RC_HIST_BUCKETS;
  h->hi = 0;
}

void rc_live_init(rc_live_t *l) {
  pthread_mutex_init(&l->mu, NULL);
  l->requests = l->errors = 0;
  rc_hist_init(&l->lat);
}

void rc_live_destroy(rc_live_t *l) {
  pthread_mutex_destroy(&l->mu);
}

void rc_live_publish(rc_live_t *l, rc_hist_t *local, uint64_t *requests, uint64_t *errors) {
  pthread_mutex_lock(&l->mu);
  rc_hist_merge(&l->lat, local);
  l->requests += *requests;
  l->errors += *errors;
  pthread_mutex_unlock(&l->mu);
  rc_hist_clear(local);
  *requests = *errors = 0;
}

void rc_live_drain(rc_live_t *l, rc_hist_t *out, uint64_t *requests, uint64_t *errors) {
  pthread_mutex_lock(&l->mu);
  rc_hist_merge(out, &l->lat);
  *requests += l->requests;
  *errors += l->errors;
  rc_hist_clear(&l->lat);
  l->requests = l->errors = 0;
  pthread_mutex_unlock(&l->mu);
}
