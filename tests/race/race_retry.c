/* race_retry.c - the thundering herd, made deterministic.
 *
 * The race in retries is not a data race but a timing one: clients that fail
 * together and back off by the same fixed schedule (the article's
 * `setTimeout(r, 10 * Math.pow(2, i))`) hit the backend together again,
 * wave after wave. Two tests, no wall-clock dependence:
 *
 * 1. A virtual-time simulation: 100 clients fail at t = 0 against a backend
 *    that serves at most 10 requests per millisecond. The naive twin
 *    (fixed exponential backoff) sends all 90 losers back at t = 10 ms, 80
 *    at t = 30 ms, ... and runs out of budget with 20 clients failed; with
 *    rf_retry (full jitter, per-client seeds) the peak load of any
 *    millisecond stays low and every client gets through.
 *
 * 2. Seeds. Two threads that seed from the clock in the same tick (here: a
 *    frozen clock, via the failure hook "retry.seed.frozen_clock") get the
 *    same jitter and retry in lockstep with the naive "seed = clock"; the
 *    library mixes in the thread id and a process-wide counter, so they
 *    differ.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "rf_test.h"
#include "racefree/retry.h"

#define CLIENTS      100
#define PER_TICK     10 /* backend capacity per virtual millisecond */
#define MAX_ATTEMPTS 8
#define TICKS        20000

static const rf_retry_policy_t POLICY = {
    .max_attempts = MAX_ATTEMPTS, .base_ms = 10, .cap_ms = 1000, .seed = 0};

typedef struct {
  int failed;     /* clients that ran out of budget */
  int peak_retry; /* most requests in one tick, after t = 0 */
} herd_result;

/* The naive twin of rf_retry_next: no jitter, same for every client. */
static uint64_t naive_delay(unsigned attempt) {
  return POLICY.base_ms << attempt;
}

static herd_result simulate(bool jitter) {
  rf_retry_t r[CLIENTS];
  int64_t next[CLIENTS]; /* tick of the next attempt, -1 = finished */
  unsigned attempt[CLIENTS];
  herd_result res = {0, 0};
  for (int c = 0; c < CLIENTS; c++) {
    rf_retry_policy_t p = POLICY;
    p.seed = 1000u + (uint64_t)c; /* reproducible, one seed per client */
    assert_int_equal(rf_retry_init(&r[c], &p), 0);
    next[c] = 0;
    attempt[c] = 0;
  }
  for (int64_t tick = 0; tick < TICKS; tick++) {
    int load = 0;
    for (int c = 0; c < CLIENTS; c++) {
      if (next[c] != tick) {
        continue;
      }
      load++;
      if (load <= PER_TICK) {
        next[c] = -1; /* served */
        continue;
      }
      uint64_t d;
      int rc;
      if (jitter) {
        rc = rf_retry_next(&r[c], &d);
      } else {
        rc = attempt[c] + 1 < MAX_ATTEMPTS ? 0 : RF_ERANGE;
        d = naive_delay(attempt[c]);
      }
      attempt[c]++;
      if (rc != 0) {
        next[c] = -1;
        res.failed++;
        continue;
      }
      next[c] = tick + 1 + (int64_t)d; /* the failed request took 1 ms */
    }
    if (tick > 0 && load > res.peak_retry) {
      res.peak_retry = load;
    }
  }
  for (int c = 0; c < CLIENTS; c++) {
    assert_int_equal(next[c], -1); /* everyone finished within TICKS */
  }
  return res;
}

static void test_naive_backoff_herds(void **state) {
  (void)state;
  herd_result n = simulate(false);
  /* Every wave arrives whole: 90, 80, ... 30 in one millisecond. */
  assert_int_equal(n.peak_retry, CLIENTS - PER_TICK);
  assert_int_equal(n.failed, CLIENTS - PER_TICK * MAX_ATTEMPTS);
}

static void test_jitter_spreads_the_herd(void **state) {
  (void)state;
  herd_result j = simulate(true);
  assert_true(j.peak_retry <= 3 * PER_TICK / 2);
  assert_int_equal(j.failed, 0);
  /* Reproducible: the same seeds give the same outcome. */
  herd_result again = simulate(true);
  assert_int_equal(again.peak_retry, j.peak_retry);
  assert_int_equal(again.failed, j.failed);
}

/* ------------------------------------------------------------ seeds */

typedef struct {
  uint64_t seq[2][16];
  bool naive;
} seed_ctx;

static void naive_init(rf_retry_t *r, const rf_retry_policy_t *p) {
  uint64_t clock = rf_test_now_ms();
  if (RF_HOOK_FAIL("retry.seed.frozen_clock")) {
    clock = 42;
  }
  rf_retry_policy_t fixed = *p;
  fixed.seed = 1; /* placeholder, replaced below */
  assert_int_equal(rf_retry_init(r, &fixed), 0);
  r->policy.seed = 0;
  r->rng = clock; /* the bug: the clock is the whole seed */
}

static void seeder(void *arg, int index) {
  seed_ctx *c = arg;
  rf_retry_policy_t p = {.max_attempts = 17, .base_ms = 1000, .cap_ms = 1000, .seed = 0};
  rf_retry_t r;
  if (c->naive) {
    naive_init(&r, &p);
  } else {
    rf_retry_init(&r, &p);
  }
  for (int i = 0; i < 16; i++) {
    rf_retry_next(&r, &c->seq[index][i]);
  }
}

static int same_delays(const seed_ctx *c) {
  int same = 0;
  for (int i = 0; i < 16; i++) {
    same += c->seq[0][i] == c->seq[1][i];
  }
  return same;
}

static void test_seed_from_clock_only_lockstep(void **state) {
  (void)state;
  rf_hook_reset();
  seed_ctx c;
  memset(&c, 0, sizeof(c));
  c.naive = true;
  assert_int_equal(rf_hook_fail("retry.seed.frozen_clock", 2), 0);
  rf_test_run_parallel(2, seeder, &c);
  assert_int_equal(same_delays(&c), 16); /* violated: lockstep */
  rf_hook_reset();
}

static void test_seed_mixes_thread_and_counter(void **state) {
  (void)state;
  rf_hook_reset();
  seed_ctx c;
  memset(&c, 0, sizeof(c));
  assert_int_equal(rf_hook_fail("retry.seed.frozen_clock", 2), 0);
  rf_test_run_parallel(2, seeder, &c);
  assert_int_equal(rf_hook_hits("retry.seed.frozen_clock"), 2); /* both saw it */
  assert_true(same_delays(&c) <= 2);                            /* 1001 values: a match is chance */
  rf_hook_reset();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_backoff_herds),
      cmocka_unit_test(test_jitter_spreads_the_herd),
      cmocka_unit_test(test_seed_from_clock_only_lockstep),
      cmocka_unit_test(test_seed_mixes_thread_and_counter),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
