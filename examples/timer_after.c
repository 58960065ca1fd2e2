/* timer_after.c - callbacks after a delay, on one timer thread, in deadline
 * order; a cancel that wins; and a "never" delay that only fires when the
 * timer is shut down with run_pending = true. Described in docs/timer.md. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <racefree/errors.h>
#include <racefree/timer.h>

static const char *fired[8]; /* written on the timer thread only */
static int nfired;

static void note(void *arg) {
  if (nfired < 8)
    fired[nfired++] = arg;
}

int main(void) {
  rf_timer_t *t = NULL;
  if (rf_timer_create(&t) != 0)
    return 1;
  uint64_t id_late, id_never;
  rf_timer_after(t, 30, note, "30 ms", NULL);
  rf_timer_after(t, 10, note, "10 ms", NULL);
  rf_timer_after(t, 20, note, "20 ms", NULL);
  rf_timer_after(t, 40, note, "40 ms (cancelled)", &id_late);
  rf_timer_after(t, UINT64_MAX, note, "never (saturated delay)", &id_never);

  int rc = rf_timer_cancel(t, id_late); /* 0: note will never run for it */
  printf("cancel the 40 ms timer: %s\n", rf_err_name(rc));
  nanosleep(&(struct timespec){0, 200000000}, NULL);
  printf("pending after 200 ms: %zu\n", rf_timer_pending(t));

  rf_timer_shutdown(t, true); /* fire what is left, now, then join the thread */
  rf_timer_destroy(t);
  for (int i = 0; i < nfired; i++)
    printf("fired: %s\n", fired[i]);
  return rc == 0 && nfired == 4 ? 0 : 1;
}
