/* racefree/retry.h - exponential backoff with full jitter, a cap and an
 * attempt budget.
 *
 * The race it prevents is the thundering herd: when many clients fail at the
 * same moment (a version conflict, a lock held, a backend restarting) and
 * all retry after the same fixed delay (`10 * 2^i` ms in the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions"), they
 * collide again at exactly the same instant, wave after wave. With "full
 * jitter" (delay uniform in [0, min(cap, base * 2^attempt)]) the retries of
 * a wave spread over the whole window and most of them succeed.
 *
 *   rf_retry_policy_t pol = {.max_attempts = 8, .base_ms = 10, .cap_ms = 1000};
 *   rf_retry_t r;
 *   rf_retry_init(&r, &pol);
 *   for (;;) {
 *     int rc = try_once();
 *     if (rc != RF_ECONFLICT) return rc;
 *     uint64_t d;
 *     if (rf_retry_next(&r, &d) != 0) return rc;   // budget spent
 *     sleep_ms(d);                                   // or a timer
 *   }
 *
 * An rf_retry_t is a small value owned by one caller (one request); it is
 * not shared between threads and needs no cleanup. The generator is
 * splitmix64: fast, full period 2^64, and seedable so that tests replay the
 * exact same delays. See docs/retry.md.
 */
#ifndef RACEFREE_RETRY_H
#define RACEFREE_RETRY_H

#include <stdbool.h>
#include <stdint.h>

#include "racefree/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

/* The policy.
 *   max_attempts  total attempts including the first one (>= 1). With 3,
 *                 rf_retry_next grants two retries and then says RF_ERANGE.
 *   base_ms       ceiling of the first retry's delay (0: retry at once).
 *   cap_ms        largest ceiling ever used (>= 1); the exponential stops
 *                 growing there.
 *   seed          0: a fresh seed from the monotonic clock, the thread id
 *                 and a process-wide counter (distinct for every call even
 *                 when two threads read the same clock value); any other
 *                 value: a reproducible sequence. */
typedef struct {
  unsigned max_attempts;
  uint64_t base_ms;
  uint64_t cap_ms;
  uint64_t seed; /* 0: seeded from time+thread */
} rf_retry_policy_t;

/* The state of one retry loop. Fields are public so the struct can live on
 * the stack; treat them as read-only. `attempt` counts the delays handed
 * out so far (0 before the first retry); `rng` is the splitmix64 state. */
typedef struct {
  rf_retry_policy_t policy;
  unsigned attempt;
  uint64_t rng;
} rf_retry_t;

/* rf_retry_init: prepare *r for a new loop under *policy (copied).
 * Errors: RF_EINVAL (NULL argument, max_attempts 0, cap_ms 0); *r is not
 * written on error. Thread-safe (touches only *r and, for seed 0, one
 * atomic counter); never blocks. */
int rf_retry_init(rf_retry_t *r, const rf_retry_policy_t *policy);

/* rf_retry_next: call after a failed attempt. Returns 0 and stores in
 * *delay_ms the wait before the next attempt, uniform (no modulo bias) in
 * [0, rf_retry_ceiling(&r->policy, r->attempt)], then counts the attempt.
 * Returns RF_ERANGE when the budget is spent (r->attempt + 1 attempts have
 * been made and that equals max_attempts); *delay_ms is then not written and
 * later calls keep returning RF_ERANGE. RF_EINVAL for NULL arguments.
 * Not thread-safe for one *r (it is one caller's state); never blocks. */
int rf_retry_next(rf_retry_t *r, uint64_t *delay_ms);

/* rf_retry_ceiling: min(cap_ms, base_ms * 2^attempt), computed without
 * overflow (a shift that would overflow saturates, so any attempt number,
 * even 10^9, gives cap_ms). 0 for a NULL policy. Pure function. */
uint64_t rf_retry_ceiling(const rf_retry_policy_t *policy, unsigned attempt);

/* One attempt of rf_retry_run: `attempt` is 0 for the first call. Returns
 * 0 on success or a status that `retryable` classifies. */
typedef int (*rf_retry_op)(void *arg, unsigned attempt);
typedef bool (*rf_retry_pred)(int status); /* true: retry this status */

/* rf_retry_run: blocking helper. Calls op(arg, 0); while it returns a
 * non-zero status that is retryable (retryable == NULL: every non-zero
 * status is) and the budget allows, sleeps the jittered backoff (nanosleep,
 * restarted after signals) and calls op again with the next attempt number.
 * Returns op's last status (0 on success), or RF_EINVAL without calling op
 * for a NULL op/policy or an invalid policy. Blocks the calling thread for
 * the sum of the delays: use rf_retry_next with a timer (racefree/timer.h)
 * where a thread must not block. Thread-safe (no shared state besides the
 * seed counter). */
int rf_retry_run(const rf_retry_policy_t *policy, rf_retry_op op, void *arg,
                 rf_retry_pred retryable);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_RETRY_H */
