/* retry_backoff.c - exponential backoff with full jitter: the ceilings, the
 * delays one caller draws (a fixed seed makes them reproducible), and
 * rf_retry_run retrying a flaky operation until it succeeds. Described in
 * docs/retry.md. */
#include <inttypes.h>
#include <stdio.h>

#include <racefree/errors.h>
#include <racefree/retry.h>

static int flaky(void *arg, unsigned attempt) { /* fails twice, then works */
  (void)arg;
  printf("  attempt %u: %s\n", attempt, attempt < 2 ? "conflict" : "ok");
  return attempt < 2 ? RF_ECONFLICT : 0;
}

static bool is_conflict(int status) {
  return status == RF_ECONFLICT;
}

int main(void) {
  rf_retry_policy_t policy = {.max_attempts = 5, .base_ms = 10, .cap_ms = 60, .seed = 42};
  printf("ceilings:");
  for (unsigned a = 0; a < 5; a++)
    printf(" %" PRIu64, rf_retry_ceiling(&policy, a));
  printf(" ms\n");

  rf_retry_t r;
  rf_retry_init(&r, &policy);
  uint64_t delay;
  int rc;
  while ((rc = rf_retry_next(&r, &delay)) == 0)
    printf("retry %u after %" PRIu64 " ms (at most %" PRIu64 ")\n", r.attempt, delay,
           rf_retry_ceiling(&policy, r.attempt - 1));
  printf("then: %s (5 attempts spent)\n", rf_err_name(rc));

  printf("rf_retry_run:\n");
  rc = rf_retry_run(&policy, flaky, NULL, is_conflict);
  printf("result: %s\n", rf_err_name(rc));
  return rc == 0 ? 0 : 1;
}
