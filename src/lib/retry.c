/* retry.c - exponential backoff with full jitter (see racefree/retry.h).
 *
 * Generator: splitmix64 (Steele, Lea, Flood 2014; the seeder recommended for
 * the xoshiro family). The state is one uint64_t advanced by a Weyl
 * constant and passed through a 64-bit finaliser, so every seed, including
 * 0, gives a full-period sequence and two nearby seeds give unrelated ones.
 *
 * Uniform draw in [0, bound]: rejection on the low end removes modulo bias
 * (Lemire's threshold trick without 128-bit multiplication, which ISO C
 * lacks): reject raw values below (2^64 - range) % range, so the accepted
 * interval is an exact multiple of range. Expected draws < 2.
 *
 * Seeding with seed 0: the clock alone is not enough. Two threads that start
 * in the same clock tick (or whose clocks are frozen, as on some VMs, or
 * coarse) would draw identical delays and retry in lockstep, which is the
 * very herd jitter is meant to break. We mix three sources through
 * splitmix64: the monotonic clock, the kernel thread id and a process-wide
 * counter. The counter alone makes every seed of the process distinct; the
 * clock and tid make processes differ. The counter is a relaxed atomic: we
 * only need each fetch_add to return a distinct value, not any ordering
 * with other memory.
 */
#include "racefree/retry.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

static atomic_uint_fast64_t rf__retry_seed_counter;

static uint64_t rf__splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static uint64_t rf__retry_auto_seed(void) {
  uint64_t clock = rf__now_ns();
  /* Tests freeze the clock to show that equal clock readings still give
   * distinct seeds (tests/race/race_retry.c). */
  if (RF_HOOK_FAIL("retry.seed.frozen_clock")) {
    clock = 42;
  }
  uint64_t s = clock;
  uint64_t a = rf__splitmix64(&s);
  s ^= (uint64_t)gettid() * 0xD6E8FEB86659FD93ull;
  uint64_t b = rf__splitmix64(&s);
  s ^= atomic_fetch_add_explicit(&rf__retry_seed_counter, 1, memory_order_relaxed);
  return a ^ b ^ rf__splitmix64(&s);
}

/* Uniform in [0, bound], inclusive, without modulo bias. */
static uint64_t rf__retry_uniform(uint64_t *state, uint64_t bound) {
  if (bound == UINT64_MAX) {
    return rf__splitmix64(state);
  }
  uint64_t range = bound + 1;
  uint64_t threshold = (0 - range) % range; /* (2^64 - range) mod range */
  for (;;) {
    uint64_t x = rf__splitmix64(state);
    if (x >= threshold) {
      return x % range;
    }
  }
}

static int rf__retry_policy_ok(const rf_retry_policy_t *p) {
  return p != NULL && p->max_attempts >= 1 && p->cap_ms >= 1;
}

uint64_t rf_retry_ceiling(const rf_retry_policy_t *policy, unsigned attempt) {
  if (policy == NULL) {
    return 0;
  }
  uint64_t exp;
  if (policy->base_ms == 0) {
    exp = 0;
  } else if (attempt >= 64 || policy->base_ms > (UINT64_MAX >> attempt)) {
    exp = UINT64_MAX; /* base << attempt would lose bits: saturate */
  } else {
    exp = policy->base_ms << attempt;
  }
  return exp < policy->cap_ms ? exp : policy->cap_ms;
}

int rf_retry_init(rf_retry_t *r, const rf_retry_policy_t *policy) {
  if (r == NULL || !rf__retry_policy_ok(policy)) {
    return RF_EINVAL;
  }
  r->policy = *policy;
  r->attempt = 0;
  r->rng = policy->seed != 0 ? policy->seed : rf__retry_auto_seed();
  return 0;
}

int rf_retry_next(rf_retry_t *r, uint64_t *delay_ms) {
  if (r == NULL || delay_ms == NULL || !rf__retry_policy_ok(&r->policy)) {
    return RF_EINVAL;
  }
  /* attempt delays handed out so far means attempt + 1 attempts made. */
  if ((uint64_t)r->attempt + 1 >= r->policy.max_attempts) {
    return RF_ERANGE;
  }
  uint64_t ceiling = rf_retry_ceiling(&r->policy, r->attempt);
  *delay_ms = rf__retry_uniform(&r->rng, ceiling);
  r->attempt++;
  return 0;
}

static void rf__retry_sleep_ms(uint64_t ms) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ms / 1000u);
  ts.tv_nsec = (long)(ms % 1000u) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

int rf_retry_run(const rf_retry_policy_t *policy, rf_retry_op op, void *arg,
                 rf_retry_pred retryable) {
  rf_retry_t r;
  if (op == NULL || rf_retry_init(&r, policy) != 0) {
    return RF_EINVAL;
  }
  for (unsigned attempt = 0;; attempt++) {
    int rc = op(arg, attempt);
    if (rc == 0 || (retryable != NULL && !retryable(rc))) {
      return rc;
    }
    uint64_t delay;
    if (rf_retry_next(&r, &delay) != 0) {
      return rc;
    }
    rf__retry_sleep_ms(delay);
  }
}
