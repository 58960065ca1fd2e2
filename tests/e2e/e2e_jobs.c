/* e2e_jobs.c - POST /emails/welcome, GET /jobs/{jobId}, GET /emails/sent
 * against a real racefreed (API.md "Background jobs").
 *
 *   e2e_jobs safe   WORKERS   one welcome job per user id, one mail per job
 *   e2e_jobs unsafe 1         ... duplicates and repeated mails with --unsafe
 *
 * Safe: BURST enqueues of one user id released together: exactly one 202
 * queued, BURST-1 200 duplicate; the job completes and exactly one mail is
 * sent. The unsafe run sends the same burst to the naive in-memory list and
 * asserts more than one mail went out (the proof the safe assertion can
 * fail). In both modes: a "+flaky" address completes on attempt 2, a
 * "+fail" address ends failed after --job-attempts (3 here, with 10 ms
 * backoffs so the test is quick); racefree_jobs_total counts the
 * transitions; bad input is 400 and unknown jobs 404.
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

enum { BURST = 50, TIMEOUT_MS = 30000, WAIT_MS = 20000, ATTEMPTS = 3 };

static struct {
  int unsafe;
  int workers;
  e2e_server_t srv;
} g;

static int setup(void **state) {
  (void)state;
  char workers[16];
  snprintf(workers, sizeof workers, "%d", g.workers);
  const char *args[] = {
      "--workers",        workers, "--email-latency-ms",         "20", "--job-attempts", "3",
      "--job-backoff-ms", "10",    g.unsafe ? "--unsafe" : NULL, NULL};
  return e2e_server_start(&g.srv, args) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&g.srv);
  int rc = e2e_server_stop(&g.srv);
  if (!alive || rc != 0)
    fprintf(stderr, "e2e: racefreed %s (exit status %d)\n",
            alive ? "did not stop cleanly" : "had died during the test", rc);
  return alive && rc == 0 ? 0 : -1;
}

static const char *tag(void) {
  static char buf[32];
  static int seq;
  snprintf(buf, sizeof buf, "%d-%d", (int)getpid() % 100000, ++seq);
  return buf;
}

static int64_t sent_to(const char *email) {
  char path[256];
  snprintf(path, sizeof path, "/emails/sent?to=%s", email);
  return e2e_get_int(g.srv.port, path, "count");
}

/* Poll GET /jobs/{id} until its status is `want` (or WAIT_MS pass);
 * returns its attempts, -1 on timeout. */
static int64_t wait_job(const char *job_id, const char *want) {
  char path[192], status[32] = "";
  snprintf(path, sizeof path, "/jobs/%s", job_id);
  double until = e2e_now_ms() + WAIT_MS;
  while (e2e_now_ms() < until) {
    if (strcmp(e2e_get_str(g.srv.port, path, "status", status, sizeof status), want) == 0)
      return e2e_get_int(g.srv.port, path, "attempts");
    usleep(20 * 1000);
  }
  fprintf(stderr, "  %s: still \"%s\" after %d ms, expected \"%s\"\n", job_id, status, WAIT_MS,
          want);
  return -1;
}

static void enqueue(const char *user, const char *email, int want_status) {
  char body[256];
  snprintf(body, sizeof body, "{\"userId\":\"%s\",\"email\":\"%s\"}", user, email);
  e2e_resp_t r;
  e2e_call(g.srv.port, "POST", "/emails/welcome", body, &r);
  assert_int_equal(r.status, want_status);
  e2e_resp_free(&r);
}

/* ------------------------------------------------------------ one job */

static void test_one_job_many_enqueues(void **state) {
  (void)state;
  char user[64], email[96], job[96];
  snprintf(user, sizeof user, "u%s", tag());
  snprintf(email, sizeof email, "%s@example.com", user);
  snprintf(job, sizeof job, "welcome-%s", user);
  static char bodies[BURST][192];
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"userId\":\"%s\",\"email\":\"%s\"}", user, email);
    reqs[i] = (e2e_req_t){"POST", "/emails/welcome", bodies[i], NULL};
  }
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  e2e_print_statuses("POST /emails/welcome (one user)", r, BURST);
  if (g.unsafe) {
    assert_int_equal(e2e_count_status(r, BURST, 202), BURST); /* no dedup at all */
    double until = e2e_now_ms() + WAIT_MS;
    while (sent_to(email) < 2 && e2e_now_ms() < until)
      usleep(20 * 1000);
    int64_t n = sent_to(email);
    fprintf(stderr, "  mails sent to %s: %" PRId64 "\n", email, n);
    assert_true(n > 1); /* the welcome mail went out more than once */
    e2e_burst_free(r, BURST);
    return;
  }
  assert_int_equal(e2e_count_status(r, BURST, 202), 1);
  assert_int_equal(e2e_count_status(r, BURST, 200), BURST - 1);
  for (int i = 0; i < BURST; i++) {
    json_t *j = e2e_json(&r[i]);
    assert_string_equal(json_string_value(json_object_get(j, "jobId")), job);
    assert_string_equal(json_string_value(json_object_get(j, "status")),
                        r[i].status == 202 ? "queued" : "duplicate");
    json_decref(j);
  }
  assert_int_equal(wait_job(job, "completed"), 1);
  usleep(200 * 1000); /* nothing else is in flight: no late second send */
  assert_int_equal(sent_to(email), 1);
  enqueue(user, email, 200); /* a completed job is still a duplicate */
  e2e_burst_free(r, BURST);
}

static void test_distinct_users(void **state) {
  (void)state;
  const char *t = tag();
  static char bodies[BURST][192];
  e2e_req_t reqs[BURST];
  for (int i = 0; i < BURST; i++) {
    snprintf(bodies[i], sizeof bodies[i], "{\"userId\":\"d%s-%d\",\"email\":\"d%s-%d@x.io\"}", t, i,
             t, i);
    reqs[i] = (e2e_req_t){"POST", "/emails/welcome", bodies[i], NULL};
  }
  e2e_resp_t r[BURST];
  assert_int_equal(e2e_burst(g.srv.port, BURST, reqs, r, TIMEOUT_MS), 0);
  assert_int_equal(e2e_count_status(r, BURST, 202), BURST);
  for (int i = 0; i < BURST; i++) {
    char job[96], email[96];
    snprintf(job, sizeof job, "welcome-d%s-%d", t, i);
    snprintf(email, sizeof email, "d%s-%d@x.io", t, i);
    assert_int_equal(wait_job(job, "completed"), 1);
    assert_int_equal(sent_to(email), 1);
  }
  e2e_burst_free(r, BURST);
}

/* ------------------------------------------------------------ retries */

static void test_flaky_completes_on_attempt_2(void **state) {
  (void)state;
  char user[64], email[96], job[96];
  snprintf(user, sizeof user, "f%s", tag());
  snprintf(email, sizeof email, "%s+flaky@example.com", user);
  snprintf(job, sizeof job, "welcome-%s", user);
  enqueue(user, email, 202);
  assert_int_equal(wait_job(job, "completed"), 2);
  char q[128];
  snprintf(q, sizeof q, "%s%%2Bflaky@example.com", user); /* '+' in a query is a space */
  assert_int_equal(sent_to(q), 1);
}

static void test_fail_ends_failed(void **state) {
  (void)state;
  char user[64], email[96], job[96];
  snprintf(user, sizeof user, "x%s", tag());
  snprintf(email, sizeof email, "%s+fail@example.com", user);
  snprintf(job, sizeof job, "welcome-%s", user);
  enqueue(user, email, 202);
  assert_int_equal(wait_job(job, "failed"), ATTEMPTS);
  char q[128];
  snprintf(q, sizeof q, "%s%%2Bfail@example.com", user);
  assert_int_equal(sent_to(q), 0);
  usleep(200 * 1000);
  assert_int_equal(wait_job(job, "failed"), ATTEMPTS); /* final: no further attempt */
}

static void test_metrics(void **state) {
  (void)state;
  /* what the tests above did, at least (the counters are per server run) */
  assert_true(e2e_metric(g.srv.port, "racefree_jobs_total{state=\"queued\"}") >= 1);
  assert_true(e2e_metric(g.srv.port, "racefree_jobs_total{state=\"completed\"}") >= 1);
  assert_true(e2e_metric(g.srv.port, "racefree_jobs_total{state=\"retried\"}") >= ATTEMPTS);
  assert_true(e2e_metric(g.srv.port, "racefree_jobs_total{state=\"failed\"}") >= 1);
}

/* ------------------------------------------------------------ input */

static void expect(const char *method, const char *path, const char *body, int status) {
  e2e_resp_t r;
  e2e_call(g.srv.port, method, path, body, &r);
  if (r.status != status)
    fail_msg("%s %s %s: %d %s (expected %d)", method, path, body ? body : "", r.status, r.body,
             status);
  e2e_resp_free(&r);
}

static void test_bad_input(void **state) {
  (void)state;
  char body[512], user[130];
  memset(user, 'u', 121);
  user[121] = '\0'; /* "welcome-" + 121 > the queue's 128 */
  snprintf(body, sizeof body, "{\"userId\":\"%s\",\"email\":\"a@b.io\"}", user);
  expect("POST", "/emails/welcome", body, 400);
  user[120] = '\0';
  snprintf(body, sizeof body, "{\"userId\":\"%s\",\"email\":\"a@b.io\"}", user);
  expect("POST", "/emails/welcome", body, 202); /* 120 fits */
  expect("POST", "/emails/welcome", "{\"userId\":\"u\"}", 400);
  expect("POST", "/emails/welcome", "{\"userId\":\"u\",\"email\":\"nope\"}", 400);
  expect("POST", "/emails/welcome", "{\"userId\":\"a b\",\"email\":\"a@b.io\"}", 400);
  expect("GET", "/jobs/welcome-never", NULL, 404);
  expect("GET", "/jobs/bad%20id", NULL, 400);
  expect("GET", "/emails/sent", NULL, 400);
  expect("GET", "/emails/sent?to=nope", NULL, 400);
  expect("GET", "/emails/sent?to=nobody@x.io", NULL, 200);
  assert_int_equal(sent_to("nobody@x.io"), 0);
}

int main(int argc, char **argv) {
  if (argc != 3 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe WORKERS\n", argv[0]);
    return 2;
  }
  g.unsafe = strcmp(argv[1], "unsafe") == 0;
  g.workers = atoi(argv[2]);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_job_many_enqueues),
      cmocka_unit_test(test_distinct_users),
      cmocka_unit_test(test_flaky_completes_on_attempt_2),
      cmocka_unit_test(test_fail_ends_failed),
      cmocka_unit_test(test_metrics),
      cmocka_unit_test(test_bad_input),
  };
  char group[64];
  snprintf(group, sizeof group, "e2e_jobs_%s_w%d", argv[1], g.workers);
  return cmocka_run_group_tests_name(group, tests, setup, teardown);
}
