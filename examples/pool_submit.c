/* pool_submit.c - CPU work on a bounded worker pool: results through
 * futures, and back-pressure (RF_EBUSY) instead of an unbounded queue when
 * more work arrives than the pool can hold. Described in docs/pool.md. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>

#include <racefree/errors.h>
#include <racefree/pool.h>

typedef struct {
  long n;
  double result;
} job_t;

static void sum_sqrt(void *arg) { /* runs on a pool thread */
  job_t *j = arg;
  double s = 0;
  for (long i = 0; i < j->n; i++)
    s += sqrt((double)i);
  j->result = s;
}

static atomic_int release_gate;
static void block(void *arg) { /* holds a worker until the gate opens */
  (void)arg;
  while (!atomic_load(&release_gate))
    ;
}

int main(void) {
  rf_pool_t *p = NULL;
  rf_pool_opts_t opts = {.threads = 2, .queue_capacity = 2};
  if (rf_pool_create(&p, &opts) != 0)
    return 1;

  /* 1. Results: submit, then wait for the future. */
  job_t jobs[2] = {{.n = 1000}, {.n = 1000000}};
  rf_future_t *f[2];
  for (int i = 0; i < 2; i++)
    if (rf_pool_submit_future(p, sum_sqrt, &jobs[i], &f[i]) != 0)
      return 1;
  for (int i = 0; i < 2; i++) {
    int status = -1;
    rf_future_wait(f[i], -1, &status);
    rf_future_release(f[i]);
    printf("sum of sqrt(0..%ld) = %.1f (status %s)\n", jobs[i].n - 1, jobs[i].result,
           rf_err_name(status));
  }

  /* 2. Back-pressure: 2 busy workers + 2 queued = full; the next is refused. */
  int accepted = 0, refused = 0;
  for (int i = 0; i < 2; i++) /* occupy both workers */
    accepted += rf_pool_submit(p, block, NULL, NULL) == 0;
  rf_pool_stats_t st;
  do
    rf_pool_stats(p, &st);
  while (st.busy < 2 || st.queued > 0); /* both blockers running, none waiting */
  for (int i = 0; i < 4; i++) {
    int rc = rf_pool_submit(p, block, NULL, NULL);
    if (rc == 0)
      accepted++;
    else if (rc == RF_EBUSY)
      refused++;
  }
  printf("6 submissions to 2 threads + a queue of 2: %d accepted, %d refused (RF_EBUSY)\n",
         accepted, refused);
  atomic_store(&release_gate, 1);
  rf_pool_shutdown(p, RF_POOL_DRAIN); /* runs what was accepted, then stops */
  rf_pool_stats(p, &st);
  printf("completed=%llu rejected=%llu\n", (unsigned long long)st.completed,
         (unsigned long long)st.rejected);
  rf_pool_destroy(p);
  return refused == 2 ? 0 : 1;
}
