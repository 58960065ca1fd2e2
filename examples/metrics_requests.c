/* metrics_requests.c - a request counter, a gauge and a latency histogram in a
 * registry shared by forked worker processes: the totals are exact, and the
 * registry renders as Prometheus text. Described in docs/metrics.md. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <racefree/errors.h>
#include <racefree/metrics.h>

int main(void) {
  rf_metrics_t *m = NULL;
  rf_counter_t *requests = NULL;
  rf_gauge_t *busy = NULL;
  rf_histogram_t *latency = NULL;
  static const double bounds[] = {0.005, 0.05, 0.5};
  int rc = rf_metrics_create(&m, 16, RF_METRICS_SHARED); /* before fork() */
  if (rc == 0)
    rc = rf_metrics_counter(m, "app_requests_total", "Requests served.", "route=\"/api\"", 0,
                            &requests);
  if (rc == 0)
    rc = rf_metrics_gauge(m, "app_busy_workers", "Workers handling a request.", NULL, &busy);
  if (rc == 0)
    rc = rf_metrics_histogram(m, "app_request_seconds", "Request duration.", NULL, bounds, 3,
                              &latency);
  if (rc != 0) {
    fprintf(stderr, "metrics: %s\n", rf_strerror(rc));
    return 1;
  }

  for (int w = 0; w < 4; w++) { /* 4 worker processes, 50000 requests each */
    pid_t pid = fork();
    if (pid < 0)
      return 1;
    if (pid == 0) {
      rf_gauge_add(busy, 1);
      for (int i = 0; i < 50000; i++) {
        rf_counter_inc(requests);
        /* 1 % slow; durations in powers of two, so that the sum is exact in any order */
        rf_histogram_observe(latency, i % 100 == 0 ? 0.125 : 0.0009765625);
      }
      rf_gauge_add(busy, -1);
      _exit(0);
    }
  }
  for (int w = 0; w < 4; w++)
    wait(NULL);

  printf("requests counted by 4 processes: %llu (expected 200000)\n",
         (unsigned long long)rf_counter_value(requests));
  char *text = NULL;
  if (rf_metrics_render(m, &text, NULL) == 0) {
    fputs(text, stdout);
    free(text);
  }
  int exact = rf_counter_value(requests) == 200000 && rf_gauge_value(busy) == 0;
  rf_metrics_destroy(m);
  return exact ? 0 : 1;
}
