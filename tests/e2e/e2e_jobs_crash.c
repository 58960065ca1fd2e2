/* e2e_jobs_crash.c - jobs are durable and survive their worker's death
 * (API.md "Background jobs", docs/jobs.md).
 *
 *  - Restart: a server with no job workers accepts jobs, stops (SIGTERM);
 *    a new server on the same data directory completes every one of them,
 *    one mail each.
 *  - A worker killed mid-job: the server (one worker, a 2 s mail latency,
 *    a LEASE_MS job lease) is SIGKILLed while the job runs - before the
 *    mail sender delivered (KILL_EARLY_MS after the claim) or after it
 *    (KILL_LATE_MS; the delivery happens half-way, at 1 s). The restarted
 *    server finds the job active under a dead worker's lease, claims it
 *    again once the lease has expired (attempt 2) and completes it. Either
 *    way exactly one mail was sent: the sender is idempotent per job id.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_payments_common.h"

enum {
  NJOBS = 5,
  LEASE_MS = 3000,
  KILL_EARLY_MS = 300, /* the delivery happens at 1000 ms */
  KILL_LATE_MS = 1500,
  WAIT_MS = 30000,
};

static int64_t sent_to(int port, const char *email) {
  char path[256];
  snprintf(path, sizeof path, "/emails/sent?to=%s", email);
  return e2e_get_int(port, path, "count");
}

static const char *job_status(int port, const char *job, char *buf, size_t cap) {
  char path[192];
  snprintf(path, sizeof path, "/jobs/%s", job);
  return e2e_get_str(port, path, "status", buf, cap);
}

static int64_t job_attempts(int port, const char *job) {
  char path[192];
  snprintf(path, sizeof path, "/jobs/%s", job);
  return e2e_get_int(port, path, "attempts");
}

static int wait_status(int port, const char *job, const char *want) {
  char buf[32];
  double until = e2e_now_ms() + WAIT_MS;
  while (strcmp(job_status(port, job, buf, sizeof buf), want) != 0 && e2e_now_ms() < until)
    usleep(20 * 1000);
  return strcmp(buf, want) == 0 ? 0 : -1;
}

static void enqueue(int port, const char *user, const char *email) {
  char body[256];
  snprintf(body, sizeof body, "{\"userId\":\"%s\",\"email\":\"%s\"}", user, email);
  e2e_resp_t r;
  e2e_call(port, "POST", "/emails/welcome", body, &r);
  assert_int_equal(r.status, 202);
  e2e_resp_free(&r);
}

static void test_jobs_survive_a_restart(void **state) {
  (void)state;
  e2e_data_dir_t d;
  assert_int_equal(e2e_data_dir_make(&d), 0);
  e2e_server_t a, b;
  const char *idle[] = {"--job-workers", "0", NULL};
  assert_int_equal(e2e_start_on(&a, &d, idle), 0);
  for (int i = 0; i < NJOBS; i++) {
    char user[32], email[64], job[64], buf[32];
    snprintf(user, sizeof user, "r%d", i);
    snprintf(email, sizeof email, "r%d@example.com", i);
    snprintf(job, sizeof job, "welcome-r%d", i);
    enqueue(a.port, user, email);
    assert_string_equal(job_status(a.port, job, buf, sizeof buf), "waiting");
  }
  assert_int_equal(e2e_server_stop(&a), 0);

  const char *busy[] = {"--job-workers", "2", "--email-latency-ms", "20", NULL};
  assert_int_equal(e2e_start_on(&b, &d, busy), 0);
  for (int i = 0; i < NJOBS; i++) {
    char email[64], job[64];
    snprintf(email, sizeof email, "r%d@example.com", i);
    snprintf(job, sizeof job, "welcome-r%d", i);
    assert_int_equal(wait_status(b.port, job, "completed"), 0);
    assert_int_equal(job_attempts(b.port, job), 1);
    assert_int_equal(sent_to(b.port, email), 1);
  }
  assert_int_equal(e2e_server_stop(&b), 0);
  e2e_data_dir_remove(&d);
}

static void killed_mid_job(int kill_after_ms, int delivered_before_kill) {
  e2e_data_dir_t d;
  assert_int_equal(e2e_data_dir_make(&d), 0);
  e2e_server_t a, b;
  const char *slow[] = {"--job-workers", "1", "--email-latency-ms", "2000", "--job-lease-ms",
                        "3000",          NULL};
  assert_int_equal(e2e_start_on(&a, &d, slow), 0);
  const char *job = "welcome-k", *email = "k@example.com";
  enqueue(a.port, "k", email);
  assert_int_equal(wait_status(a.port, job, "active"), 0);
  double claimed = e2e_now_ms();
  usleep((useconds_t)kill_after_ms * 1000);
  e2e_kill9(&a);
  fprintf(stderr, "  killed %.0f ms after the claim was seen\n", e2e_now_ms() - claimed);

  const char *fast[] = {"--job-workers", "1", "--email-latency-ms", "20", "--job-lease-ms",
                        "3000",          NULL};
  assert_int_equal(e2e_start_on(&b, &d, fast), 0);
  char buf[32];
  assert_string_equal(job_status(b.port, job, buf, sizeof buf), "active"); /* a dead lease */
  assert_int_equal(sent_to(b.port, email), delivered_before_kill);
  assert_int_equal(wait_status(b.port, job, "completed"), 0);
  double took = e2e_now_ms() - claimed;
  fprintf(stderr, "  completed %.0f ms after the first claim\n", took);
  assert_true(took >= LEASE_MS - 300); /* not before the dead worker's lease expired */
  assert_int_equal(job_attempts(b.port, job), 2);
  assert_int_equal(sent_to(b.port, email), 1);
  assert_int_equal(e2e_server_stop(&b), 0);
  e2e_data_dir_remove(&d);
}

static void test_killed_before_the_delivery(void **state) {
  (void)state;
  killed_mid_job(KILL_EARLY_MS, 0);
}

static void test_killed_after_the_delivery(void **state) {
  (void)state;
  killed_mid_job(KILL_LATE_MS, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_jobs_survive_a_restart),
      cmocka_unit_test(test_killed_before_the_delivery),
      cmocka_unit_test(test_killed_after_the_delivery),
  };
  return cmocka_run_group_tests_name("e2e_jobs_crash", tests, NULL, NULL);
}
