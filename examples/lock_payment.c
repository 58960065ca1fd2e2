/* lock_payment.c - a lease lock with fencing tokens (in-process backend; with
 * rf_lock_create_redis the same calls work across machines): a second holder
 * is refused while the lease lives, and a stale holder whose lease was taken
 * over is stopped by the fence. Described in docs/lock.md. */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <racefree/errors.h>
#include <racefree/lock.h>

static int charges; /* the protected resource: a ledger of charges */

static int charge(void *arg, uint64_t token) { /* runs only for a current token */
  charges++;
  printf("  charged %s with token %" PRIu64 "\n", (const char *)arg, token);
  return 0;
}

static int pay(void *arg, const rf_lock_lease_t *lease) { /* run under the lock */
  rf_fence_t *fence = arg;
  return rf_fence_apply(fence, "ledger:p-2", lease->token, charge, "p-2");
}

int main(void) {
  rf_lock_t *lk = NULL;
  rf_fence_t *fence = NULL;
  rf_lock_opts_t opts = RF_LOCK_OPTS_DEFAULT;
  opts.ttl_ms = 100;
  if (rf_lock_create_mem(&lk, &opts) != 0 || rf_fence_create(&fence) != 0)
    return 1;

  /* 1. A holds the lease; B is refused at once (attempts = 1: a try-lock). */
  rf_lock_lease_t a, b;
  int rc = rf_lock_acquire(lk, "payment:p-1", NULL, &a);
  printf("A acquires: %s\n", rf_err_name(rc));
  printf("B acquires while A holds it: %s\n",
         rf_err_name(rf_lock_acquire(lk, "payment:p-1", NULL, &b)));

  /* 2. A stalls past its TTL; B takes the key over with a larger token. */
  nanosleep(&(struct timespec){0, 150000000}, NULL);
  rc = rf_lock_acquire(lk, "payment:p-1", NULL, &b);
  printf("B acquires after A's lease expired: %s, token %s A's\n", rf_err_name(rc),
         b.token > a.token ? ">" : "<=");
  printf("B writes:\n");
  rf_fence_apply(fence, "ledger:p-1", b.token, charge, "p-1");

  /* 3. A wakes up and tries to write with its old token: refused. */
  rc = rf_fence_apply(fence, "ledger:p-1", a.token, charge, "p-1");
  printf("A writes with its stale token: %s\n", rf_err_name(rc));
  printf("A releases: %s (its lease was lost)\n", rf_err_name(rf_lock_release(lk, &a)));
  rf_lock_release(lk, &b);

  /* 4. The usual form: acquire, run, release. */
  printf("rf_lock_with:\n");
  rc = rf_lock_with(lk, "payment:p-2", NULL, pay, fence);
  printf("charges in the ledger: %d\n", charges);
  rf_fence_destroy(fence);
  rf_lock_destroy(lk);
  return rc == 0 && charges == 2 ? 0 : 1;
}
