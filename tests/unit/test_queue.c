/* test_queue.c - the job queue's contract, one shared suite run against
 * every backend (the table `backends` below): every operation, every state
 * transition, deduplication, retries with backoff, lease expiry and
 * fencing, bad input, allocation failures, the worker helper; plus the
 * SQLite-only durability and statement-failure tests.
 *
 * Time is a manual clock (opts.clock_ms): leases and backoffs expire when a
 * test advances it, never by sleeping.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "queue_internal.h"
#include "racefree/queue.h"
#include "rf_pg.h"
#include "rf_test.h"

typedef struct {
  const char *name;
  bool durable;
} backend_t;

static const backend_t backends[] = {
    {"mem", false},
    {"sqlite", true},
    {"postgres", true}, /* RF_TEST_PG_URL, or a private cluster (rf_pg.h) */
};

typedef struct {
  const backend_t *be;
  char dir[64];
  char url[512];
  atomic_uint_fast64_t now;
  rf_queue_opts_t opts;
  rf_queue_t *q;
} fx_t;

#define T0 1000000u /* the manual clock's start */

static uint64_t manual_clock(void *arg) {
  fx_t *fx = arg;
  return atomic_load(&fx->now);
}

static void advance(fx_t *fx, uint64_t ms) {
  atomic_fetch_add(&fx->now, ms);
}

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
      }
    }
    closedir(d);
  }
  rmdir(dir);
}

static int fx_open(fx_t *fx) {
  return rf_queue_open(&fx->q, fx->url, &fx->opts);
}

static int setup(void **state) {
  const backend_t *be = *state;
  fx_t *fx = calloc(1, sizeof(*fx));
  assert_non_null(fx);
  fx->be = be;
  strcpy(fx->dir, "/tmp/rfq-unit-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  if (strcmp(be->name, "mem") == 0) {
    snprintf(fx->url, sizeof(fx->url), "mem:");
  } else if (strcmp(be->name, "postgres") == 0) {
    rf_test_pg_schema_url(fx->url, sizeof(fx->url), NULL, NULL, NULL); /* a fresh schema */
  } else {
    snprintf(fx->url, sizeof(fx->url), "sqlite:%s/q.db", fx->dir);
  }
  atomic_init(&fx->now, T0);
  fx->opts.clock_ms = manual_clock;
  fx->opts.clock_arg = fx;
  fx->opts.seed = 42;
  assert_int_equal(fx_open(fx), 0);
  rf_hook_reset();
  *state = fx;
  return 0;
}

static int teardown(void **state) {
  fx_t *fx = *state;
  rf_hook_reset();
  rf_test_fail_alloc_after(-1);
  assert_int_equal(rf_queue_close(fx->q), 0);
  rm_dir(fx->dir);
  free(fx);
  return 0;
}

static rf_job_t *claim_ok(rf_queue_t *q, const char *worker, uint64_t lease) {
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, worker, lease, &job), 0);
  assert_non_null(job);
  return job;
}

static void assert_status(rf_queue_t *q, const char *id, rf_job_status_t st, unsigned attempts) {
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, id, &info), 0);
  assert_string_equal(rf_job_status_name(info.status), rf_job_status_name(st));
  assert_int_equal(info.attempts, attempts);
}

static void assert_nothing_due(rf_queue_t *q) {
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), RF_ENOENT);
  assert_null(job);
}

static void assert_counts(rf_queue_t *q, uint64_t w, uint64_t a, uint64_t c, uint64_t f) {
  rf_queue_counts_t n;
  assert_int_equal(rf_queue_counts(q, &n), 0);
  assert_int_equal(n.n[RF_JOB_WAITING], w);
  assert_int_equal(n.n[RF_JOB_ACTIVE], a);
  assert_int_equal(n.n[RF_JOB_COMPLETED], c);
  assert_int_equal(n.n[RF_JOB_FAILED], f);
}

/* ------------------------------------------------------------ basics */

static void test_add_claim_complete(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_string_equal(rf_queue_backend(q), fx->be->name);
  assert_int_equal(rf_queue_add(q, "welcome-1", "hello", 5, NULL), 0);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "welcome-1", &info), 0);
  assert_int_equal(info.status, RF_JOB_WAITING);
  assert_int_equal(info.attempts, 0);
  assert_int_equal(info.max_attempts, RF_QUEUE_DEFAULT_ATTEMPTS);
  assert_int_equal(info.run_at_ms, T0);
  assert_int_equal(info.created_ms, T0);
  assert_int_equal(info.payload_len, 5);
  assert_false(info.removed);
  assert_string_equal(info.last_error, "");
  assert_counts(q, 1, 0, 0, 0);

  rf_job_t *job = claim_ok(q, "worker-1", 30000);
  assert_string_equal(job->id, "welcome-1");
  assert_int_equal(job->attempt, 1);
  assert_int_equal(job->max_attempts, RF_QUEUE_DEFAULT_ATTEMPTS);
  assert_int_equal(job->payload_len, 5);
  assert_memory_equal(job->payload, "hello", 5);
  assert_string_equal((const char *)job->payload, "hello"); /* NUL-terminated */
  assert_int_equal(job->lease_until_ms, T0 + 30000);
  assert_string_equal(job->last_error, "");
  assert_int_equal(rf_queue_get(q, "welcome-1", &info), 0);
  assert_int_equal(info.status, RF_JOB_ACTIVE);
  assert_int_equal(info.lease_until_ms, T0 + 30000);
  assert_int_equal(info.run_at_ms, T0 + 30000); /* due again when the lease ends */
  assert_counts(q, 0, 1, 0, 0);
  assert_nothing_due(q); /* the only job is leased */

  advance(fx, 10);
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), 0);
  assert_int_equal(rf_queue_get(q, "welcome-1", &info), 0);
  assert_int_equal(info.status, RF_JOB_COMPLETED);
  assert_int_equal(info.attempts, 1);
  assert_int_equal(info.lease_until_ms, 0);
  assert_int_equal(info.updated_ms, T0 + 10);
  assert_int_equal(info.payload_len, 5);
  assert_counts(q, 0, 0, 1, 0);
  assert_nothing_due(q);
  /* A second completion with the same token is refused. */
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), RF_ESTALE);
  rf_job_free(job);
  rf_job_free(NULL);
}

static void test_empty_payload_and_empty_queue(void **state) {
  fx_t *fx = *state;
  assert_nothing_due(fx->q);
  assert_int_equal(rf_queue_add(fx->q, "empty", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(fx->q, "empty2", "x", 0, NULL), 0);
  rf_job_t *job = claim_ok(fx->q, "w", 1000);
  assert_int_equal(job->payload_len, 0);
  assert_null(job->payload);
  rf_job_free(job);
  assert_counts(fx->q, 1, 1, 0, 0);
}

static void test_dedup(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_add(q, "j", "a", 1, NULL), 0);
  /* waiting */
  assert_int_equal(rf_queue_add(q, "j", "b", 1, NULL), RF_EEXIST);
  rf_job_t *job = claim_ok(q, "w", 1000);
  assert_memory_equal(job->payload, "a", 1); /* the duplicate changed nothing */
  /* active */
  assert_int_equal(rf_queue_add(q, "j", "c", 1, NULL), RF_EEXIST);
  assert_int_equal(rf_queue_complete(q, "j", job->attempt), 0);
  rf_job_free(job);
  /* completed */
  assert_int_equal(rf_queue_add(q, "j", "d", 1, NULL), RF_EEXIST);
  assert_nothing_due(q);
  /* failed */
  rf_job_opts_t once = RF_JOB_OPTS_DEFAULT;
  once.max_attempts = 1;
  assert_int_equal(rf_queue_add(q, "f", NULL, 0, &once), 0);
  job = claim_ok(q, "w", 1000);
  assert_int_equal(rf_queue_fail(q, "f", job->attempt, "boom"), 0);
  rf_job_free(job);
  assert_int_equal(rf_queue_add(q, "f", NULL, 0, NULL), RF_EEXIST);
  assert_counts(q, 0, 0, 1, 1);
  /* Ids are case-sensitive. */
  assert_int_equal(rf_queue_add(q, "J", NULL, 0, NULL), 0);
}

static void test_remove_on_complete_keeps_tombstone(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.remove_on_complete = true;
  o.backoff_base_ms = 0;
  o.backoff_cap_ms = 0;
  assert_int_equal(rf_queue_add(q, "welcome-7", "payload", 7, &o), 0);
  rf_job_t *job = claim_ok(q, "w", 1000);
  assert_int_equal(rf_queue_fail(q, job->id, job->attempt, "first try"), 0);
  rf_job_free(job);
  job = claim_ok(q, "w", 1000);
  assert_int_equal(job->attempt, 2);
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), 0);
  rf_job_free(job);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "welcome-7", &info), 0);
  assert_int_equal(info.status, RF_JOB_COMPLETED);
  assert_int_equal(info.attempts, 2);
  assert_true(info.removed);
  assert_int_equal(info.payload_len, 0);
  assert_string_equal(info.last_error, "");
  /* Each job id is sent exactly once: the tombstone still deduplicates. */
  assert_int_equal(rf_queue_add(q, "welcome-7", "again", 5, &o), RF_EEXIST);
  assert_nothing_due(q);
}

static void test_purge_ends_dedup(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t once = RF_JOB_OPTS_DEFAULT;
  once.max_attempts = 1;
  assert_int_equal(rf_queue_add(q, "done", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(q, "dead", NULL, 0, &once), 0);
  advance(fx, 1); /* "live" is due after the two others */
  assert_int_equal(rf_queue_add(q, "live", NULL, 0, NULL), 0);
  rf_job_t *a = claim_ok(q, "w", 1000);
  rf_job_t *b = claim_ok(q, "w", 1000);
  assert_int_equal(rf_queue_complete(q, "done", 1), 0);
  assert_int_equal(rf_queue_fail(q, "dead", 1, "x"), 0);
  rf_job_free(a);
  rf_job_free(b);
  advance(fx, 100);
  assert_int_equal(rf_queue_add(q, "late", NULL, 0, NULL), 0);
  rf_job_t *c = claim_ok(q, "w", 1000);
  assert_string_equal(c->id, "live");
  assert_int_equal(rf_queue_complete(q, "live", 1), 0);
  rf_job_free(c);
  uint64_t purged = 99;
  /* Only final records updated before T0 + 50: "done" and "dead". */
  assert_int_equal(rf_queue_purge(q, T0 + 50, &purged), 0);
  assert_int_equal(purged, 2);
  assert_int_equal(rf_queue_get(q, "done", &(rf_job_info_t){0}), RF_ENOENT);
  assert_int_equal(rf_queue_get(q, "dead", &(rf_job_info_t){0}), RF_ENOENT);
  assert_status(q, "live", RF_JOB_COMPLETED, 1);
  assert_status(q, "late", RF_JOB_WAITING, 0);
  assert_int_equal(rf_queue_add(q, "done", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(q, "live", NULL, 0, NULL), RF_EEXIST);
  assert_int_equal(rf_queue_purge(q, T0 + 1000, NULL), 0);
  assert_counts(q, 2, 0, 0, 0);
}

/* ------------------------------------------------------------ ordering */

static void test_order_and_delay(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t later = RF_JOB_OPTS_DEFAULT;
  later.delay_ms = 500;
  assert_int_equal(rf_queue_add(q, "delayed", NULL, 0, &later), 0);
  assert_int_equal(rf_queue_add(q, "b", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(q, "a", NULL, 0, NULL), 0);
  advance(fx, 1);
  assert_int_equal(rf_queue_add(q, "c", NULL, 0, NULL), 0);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "delayed", &info), 0);
  assert_int_equal(info.run_at_ms, T0 + 500);
  /* Oldest due first; jobs due in the same millisecond in either order. */
  rf_job_t *j1 = claim_ok(q, "w", 100000);
  rf_job_t *j2 = claim_ok(q, "w", 100000);
  rf_job_t *j3 = claim_ok(q, "w", 100000);
  assert_true((strcmp(j1->id, "a") == 0 && strcmp(j2->id, "b") == 0) ||
              (strcmp(j1->id, "b") == 0 && strcmp(j2->id, "a") == 0));
  assert_string_equal(j3->id, "c");
  rf_job_free(j1);
  rf_job_free(j2);
  rf_job_free(j3);
  assert_nothing_due(q);
  advance(fx, 498); /* T0 + 499 */
  assert_nothing_due(q);
  advance(fx, 1); /* T0 + 500: due */
  rf_job_t *job = claim_ok(q, "w", 100000);
  assert_string_equal(job->id, "delayed");
  rf_job_free(job);
}

/* ------------------------------------------------------------ retries */

static void test_fail_then_complete_on_attempt_2(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 100;
  o.backoff_cap_ms = 1000;
  assert_int_equal(rf_queue_add(q, "flaky", "p", 1, &o), 0);
  rf_job_t *job = claim_ok(q, "w1", 1000);
  assert_int_equal(job->attempt, 1);
  advance(fx, 5);
  assert_int_equal(rf_queue_fail(q, job->id, job->attempt, "temporary"), 0);
  rf_job_free(job);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "flaky", &info), 0);
  assert_int_equal(info.status, RF_JOB_WAITING);
  assert_int_equal(info.attempts, 1);
  assert_string_equal(info.last_error, "temporary");
  assert_int_equal(info.lease_until_ms, 0);
  assert_in_range(info.run_at_ms, T0 + 5, T0 + 5 + 100);
  assert_counts(q, 1, 0, 0, 0);
  if (info.run_at_ms > T0 + 5) {
    assert_nothing_due(q);
  }
  advance(fx, info.run_at_ms - (T0 + 5));
  job = claim_ok(q, "w2", 1000);
  assert_int_equal(job->attempt, 2);
  assert_string_equal(job->last_error, "temporary");
  assert_memory_equal(job->payload, "p", 1);
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), 0);
  rf_job_free(job);
  assert_status(q, "flaky", RF_JOB_COMPLETED, 2);
  assert_counts(q, 0, 0, 1, 0);
}

static void test_backoff_then_failed(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.max_attempts = 8;
  o.backoff_base_ms = 100;
  o.backoff_cap_ms = 1500;
  assert_int_equal(rf_queue_add(q, "doomed", NULL, 0, &o), 0);
  for (unsigned attempt = 1; attempt <= 8; attempt++) {
    rf_job_t *job = claim_ok(q, "w", 1000);
    assert_int_equal(job->attempt, attempt);
    char err[32];
    snprintf(err, sizeof(err), "failure %u", attempt);
    assert_int_equal(rf_queue_fail(q, job->id, job->attempt, err), 0);
    rf_job_free(job);
    rf_job_info_t info;
    assert_int_equal(rf_queue_get(q, "doomed", &info), 0);
    assert_string_equal(info.last_error, err);
    assert_int_equal(info.attempts, attempt);
    if (attempt == 8) {
      assert_int_equal(info.status, RF_JOB_FAILED);
      break;
    }
    assert_int_equal(info.status, RF_JOB_WAITING);
    uint64_t ceiling = 100u << (attempt - 1);
    if (ceiling > 1500) {
      ceiling = 1500;
    }
    uint64_t now = rf_queue_now_ms(q);
    assert_in_range(info.run_at_ms, now, now + ceiling);
    advance(fx, info.run_at_ms - now);
  }
  advance(fx, 1000000);
  assert_nothing_due(q);
  assert_counts(q, 0, 0, 0, 1);
  assert_int_equal(rf_queue_add(q, "doomed", NULL, 0, NULL), RF_EEXIST);
}

static void test_backoff_is_jittered_and_capped(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 1000;
  o.backoff_cap_ms = 4000;
  enum { N = 40 };
  uint64_t min = UINT64_MAX, max = 0;
  for (int i = 0; i < N; i++) {
    char id[16];
    snprintf(id, sizeof(id), "j%d", i);
    assert_int_equal(rf_queue_add(q, id, NULL, 0, &o), 0);
    rf_job_t *job = claim_ok(q, "w", 1000);
    assert_int_equal(rf_queue_fail(q, job->id, job->attempt, NULL), 0);
    rf_job_free(job);
    rf_job_info_t info;
    assert_int_equal(rf_queue_get(q, id, &info), 0);
    uint64_t d = info.run_at_ms - rf_queue_now_ms(q);
    assert_true(d <= 1000);
    min = d < min ? d : min;
    max = d > max ? d : max;
  }
  /* Full jitter spreads the retries over the window (a fixed delay would
   * give min == max: the thundering herd). */
  assert_true(max - min > 300);
  /* The ceiling doubles per attempt and stops at the cap, also for attempt
   * numbers whose 2^n would overflow. */
  const unsigned attempts[] = {1, 2, 3, 4, 5, 10, 63, 64, 65, 1000, UINT32_MAX};
  for (size_t i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++) {
    uint64_t ceiling = attempts[i] >= 3 ? 4000 : 1000u << (attempts[i] - 1);
    for (int k = 0; k < 50; k++) {
      assert_true(rf__queue_backoff_ms(q, attempts[i], 1000, 4000) <= ceiling);
    }
  }
  assert_int_equal(rf__queue_backoff_ms(q, 5, 0, 0), 0);
}

/* ------------------------------------------------------------ leases */

static void test_lease_expiry_reclaims_and_fences(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_add(q, "slow", "x", 1, NULL), 0);
  rf_job_t *a = claim_ok(q, "worker-a", 1000);
  advance(fx, 1000); /* lease_until == now: still held */
  assert_nothing_due(q);
  advance(fx, 1); /* expired: stalled-job recovery */
  rf_job_t *b = claim_ok(q, "worker-b", 1000);
  assert_string_equal(b->id, "slow");
  assert_int_equal(b->attempt, 2);
  assert_status(q, "slow", RF_JOB_ACTIVE, 2);
  /* The old worker wakes up: its token is stale. */
  assert_int_equal(rf_queue_complete(q, "slow", a->attempt), RF_ESTALE);
  assert_int_equal(rf_queue_fail(q, "slow", a->attempt, "late"), RF_ESTALE);
  assert_int_equal(rf_queue_extend(q, "slow", a->attempt, 1000), RF_ESTALE);
  assert_status(q, "slow", RF_JOB_ACTIVE, 2);
  assert_int_equal(rf_queue_complete(q, "slow", b->attempt), 0);
  assert_status(q, "slow", RF_JOB_COMPLETED, 2);
  rf_job_free(a);
  rf_job_free(b);
}

static void test_expired_but_not_reclaimed_can_complete(void **state) {
  fx_t *fx = *state;
  assert_int_equal(rf_queue_add(fx->q, "j", NULL, 0, NULL), 0);
  rf_job_t *a = claim_ok(fx->q, "w", 10);
  advance(fx, 5000);
  assert_int_equal(rf_queue_complete(fx->q, "j", a->attempt), 0);
  assert_nothing_due(fx->q);
  rf_job_free(a);
}

static void test_extend(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_add(q, "long", NULL, 0, NULL), 0);
  rf_job_t *a = claim_ok(q, "w", 1000);
  advance(fx, 900);
  assert_int_equal(rf_queue_extend(q, "long", a->attempt, 1000), 0);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "long", &info), 0);
  assert_int_equal(info.lease_until_ms, T0 + 1900);
  advance(fx, 500); /* past the first lease, within the extension */
  assert_nothing_due(q);
  advance(fx, 501);
  rf_job_t *b = claim_ok(q, "w2", 1000);
  assert_int_equal(b->attempt, 2);
  assert_int_equal(rf_queue_extend(q, "long", 1, 1000), RF_ESTALE);
  assert_int_equal(rf_queue_extend(q, "nope", 1, 1000), RF_ENOENT);
  assert_int_equal(rf_queue_extend(q, "long", 2, 0), RF_EINVAL);
  rf_job_free(a);
  rf_job_free(b);
}

static void test_stalled_last_attempt_fails(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.max_attempts = 2;
  assert_int_equal(rf_queue_add(q, "crashy", NULL, 0, &o), 0);
  rf_job_t *a = claim_ok(q, "w", 100);
  advance(fx, 101);
  rf_job_t *b = claim_ok(q, "w", 100);
  assert_int_equal(b->attempt, 2);
  advance(fx, 101);
  assert_nothing_due(q); /* the sweep fails it instead of a third attempt */
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "crashy", &info), 0);
  assert_int_equal(info.status, RF_JOB_FAILED);
  assert_int_equal(info.attempts, 2);
  assert_string_equal(info.last_error, "lease expired on the last attempt");
  assert_int_equal(rf_queue_complete(q, "crashy", 2), RF_ESTALE);
  assert_counts(q, 0, 0, 0, 1);
  rf_job_free(a);
  rf_job_free(b);
}

static void test_stalled_and_waiting_interleave_by_due_time(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_add(q, "first", NULL, 0, NULL), 0);
  rf_job_t *a = claim_ok(q, "w", 100); /* lease until T0 + 100 */
  rf_job_free(a);
  advance(fx, 50);
  assert_int_equal(rf_queue_add(q, "second", NULL, 0, NULL), 0); /* due T0 + 50 */
  advance(fx, 100);
  assert_int_equal(rf_queue_add(q, "third", NULL, 0, NULL), 0); /* due T0 + 150 */
  /* Due order: second (50), first (stalled since 100), third (150). */
  const char *expect[] = {"second", "first", "third"};
  for (int i = 0; i < 3; i++) {
    rf_job_t *job = claim_ok(q, "w", 100000);
    assert_string_equal(job->id, expect[i]);
    rf_job_free(job);
  }
}

static void test_fencing_errors(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_complete(q, "ghost", 1), RF_ENOENT);
  assert_int_equal(rf_queue_fail(q, "ghost", 1, NULL), RF_ENOENT);
  assert_int_equal(rf_queue_add(q, "j", NULL, 0, NULL), 0);
  /* waiting: no attempt is current */
  assert_int_equal(rf_queue_complete(q, "j", 1), RF_ESTALE);
  assert_int_equal(rf_queue_fail(q, "j", 1, NULL), RF_ESTALE);
  rf_job_t *a = claim_ok(q, "w", 1000);
  assert_int_equal(rf_queue_complete(q, "j", 2), RF_ESTALE); /* from the future */
  assert_int_equal(rf_queue_complete(q, "j", 0), RF_EINVAL);
  assert_int_equal(rf_queue_fail(q, "j", 1, NULL), 0);
  /* a failed attempt cannot be completed afterwards */
  assert_int_equal(rf_queue_complete(q, "j", 1), RF_ESTALE);
  assert_int_equal(rf_queue_fail(q, "j", 1, NULL), RF_ESTALE);
  rf_job_free(a);
}

/* ------------------------------------------------------------ bad input */

static void test_bad_input(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  char id129[130];
  memset(id129, 'a', 129);
  id129[129] = '\0';
  char id128[129];
  memset(id128, 'b', 128);
  id128[128] = '\0';
  const char *bad_ids[] = {"", "a b", "a/b", "caf\xc3\xa9", "a\nb", "semi;colon", "quo'te", id129};
  for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
    assert_int_equal(rf_queue_add(q, bad_ids[i], NULL, 0, NULL), RF_EINVAL);
    assert_int_equal(rf_queue_get(q, bad_ids[i], &(rf_job_info_t){0}), RF_EINVAL);
    assert_int_equal(rf_queue_complete(q, bad_ids[i], 1), RF_EINVAL);
    rf_job_t *job = NULL;
    assert_int_equal(rf_queue_claim(q, bad_ids[i], 1000, &job), RF_EINVAL);
  }
  assert_int_equal(rf_queue_add(q, id128, NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(q, "Az09._:-", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_add(NULL, "x", NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_add(q, NULL, NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_add(q, "x", NULL, 3, NULL), RF_EINVAL);
  /* payload size */
  size_t big = RF_QUEUE_PAYLOAD_DEFAULT_MAX + 1;
  char *buf = calloc(1, big);
  assert_non_null(buf);
  assert_int_equal(rf_queue_add(q, "big", buf, big, NULL), RF_EOVERFLOW);
  assert_int_equal(rf_queue_add(q, "big", buf, big - 1, NULL), 0);
  assert_int_equal(rf_queue_add(q, "huge", buf, SIZE_MAX, NULL), RF_EOVERFLOW);
  rf_job_t *j1 = claim_ok(q, "w", 1000);
  rf_job_t *j2 = claim_ok(q, "w", 1000);
  rf_job_t *j3 = claim_ok(q, "w", 1000);
  rf_job_t *jbig = strcmp(j1->id, "big") == 0 ? j1 : strcmp(j2->id, "big") == 0 ? j2 : j3;
  assert_string_equal(jbig->id, "big");
  assert_int_equal(jbig->payload_len, big - 1);
  assert_memory_equal(jbig->payload, buf, big - 1);
  rf_job_free(j1);
  rf_job_free(j2);
  rf_job_free(j3);
  free(buf);
  /* job options */
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.max_attempts = 0;
  assert_int_equal(rf_queue_add(q, "o1", NULL, 0, &o), RF_EINVAL);
  o.max_attempts = RF_QUEUE_ATTEMPTS_MAX + 1;
  assert_int_equal(rf_queue_add(q, "o1", NULL, 0, &o), RF_EINVAL);
  o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 10;
  o.backoff_cap_ms = 5;
  assert_int_equal(rf_queue_add(q, "o1", NULL, 0, &o), RF_EINVAL);
  o = RF_JOB_OPTS_DEFAULT;
  o.backoff_cap_ms = RF_QUEUE_BACKOFF_MAX_MS + 1;
  assert_int_equal(rf_queue_add(q, "o1", NULL, 0, &o), RF_EINVAL);
  o = RF_JOB_OPTS_DEFAULT;
  o.delay_ms = UINT64_MAX;
  assert_int_equal(rf_queue_add(q, "o1", NULL, 0, &o), RF_EINVAL);
  assert_int_equal(rf_queue_get(q, "o1", &(rf_job_info_t){0}), RF_ENOENT);
  /* claim */
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(NULL, "w", 1000, &job), RF_EINVAL);
  assert_int_equal(rf_queue_claim(q, NULL, 1000, &job), RF_EINVAL);
  assert_int_equal(rf_queue_claim(q, "w", 0, &job), RF_EINVAL);
  assert_int_equal(rf_queue_claim(q, "w", RF_QUEUE_LEASE_MAX_MS + 1, &job), RF_EINVAL);
  assert_int_equal(rf_queue_claim(q, "w", 1000, NULL), RF_EINVAL);
  assert_null(job);
  /* others */
  assert_int_equal(rf_queue_get(q, "x", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_get(NULL, "x", &(rf_job_info_t){0}), RF_EINVAL);
  assert_int_equal(rf_queue_counts(q, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_counts(NULL, &(rf_queue_counts_t){0}), RF_EINVAL);
  assert_int_equal(rf_queue_purge(NULL, 0, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_purge(q, UINT64_MAX, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_complete(NULL, "x", 1), RF_EINVAL);
  assert_int_equal(rf_queue_fail(q, NULL, 1, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_extend(q, "x", 1, RF_QUEUE_LEASE_MAX_MS + 1), RF_EINVAL);
  assert_null(rf_queue_backend(NULL));
  assert_int_equal(rf_queue_close(NULL), 0);
  assert_string_equal(rf_job_status_name((rf_job_status_t)9), "unknown");
  /* worker */
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(q, 0, NULL, NULL, 1000, 10, &w), RF_EINVAL);
  assert_null(w);
}

static int noop_handler(rf_job_t *job, void *arg) {
  (void)job;
  (void)arg;
  return 0;
}

static void test_bad_worker_args(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(NULL, 1, noop_handler, NULL, 1000, 10, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 0, noop_handler, NULL, 1000, 10, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 257, noop_handler, NULL, 1000, 10, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 1, noop_handler, NULL, 0, 10, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 1, noop_handler, NULL, 1000, 0, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 1, noop_handler, NULL, 1000, 60001, &w), RF_EINVAL);
  assert_int_equal(rf_queue_worker_start(q, 1, noop_handler, NULL, 1000, 10, NULL), RF_EINVAL);
  assert_null(w);
  /* thread creation failure: nothing left running, queue closable */
  assert_int_equal(rf_hook_fail("queue.worker.thread", 1), 0);
  assert_int_equal(rf_queue_worker_start(q, 3, noop_handler, NULL, 1000, 10, &w), RF_EAGAIN);
  assert_null(w);
  rf_queue_worker_stop(NULL, NULL);
  rf_queue_worker_stats(NULL, NULL);
}

static void test_error_text_truncation(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  char long_err[600];
  /* 254 ASCII bytes then a 2-byte character straddling the limit. */
  memset(long_err, 'e', 254);
  memcpy(long_err + 254, "\xc3\xa9", 2);
  memset(long_err + 256, 'z', 100);
  long_err[356] = '\0';
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 0;
  o.backoff_cap_ms = 0;
  assert_int_equal(rf_queue_add(q, "e", NULL, 0, &o), 0);
  rf_job_t *job = claim_ok(q, "w", 1000);
  assert_int_equal(rf_queue_fail(q, "e", job->attempt, long_err), 0);
  rf_job_free(job);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "e", &info), 0);
  assert_int_equal(strlen(info.last_error), 254);       /* the é is not cut in half */
  assert_int_equal(info.run_at_ms, rf_queue_now_ms(q)); /* zero backoff */
}

/* ------------------------------------------------------------ open */

static void test_open_urls(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(NULL, "mem:", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, NULL, NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, "", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, "mem", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, ":x", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, "bogus:x", NULL), RF_ENOTSUP);
  assert_int_equal(rf_queue_open(&q, "mem:extra", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, "sqlite:", NULL), RF_EINVAL);
  assert_int_equal(rf_queue_open(&q, "sqlite::memory:", NULL), RF_ENOTSUP);
  /* the same code as the store and the PostgreSQL queue give */
  assert_int_equal(rf_queue_open(&q, "sqlite:/nonexistent-dir/x/q.db", NULL), RF_EUNAVAIL);
  rf_queue_opts_t bad = {.max_payload = RF_QUEUE_PAYLOAD_HARD_MAX + 1};
  assert_int_equal(rf_queue_open(&q, "mem:", &bad), RF_EINVAL);
  bad = (rf_queue_opts_t){.busy_timeout_ms = -1};
  assert_int_equal(rf_queue_open(&q, "mem:", &bad), RF_EINVAL);
  assert_null(q);
  /* A file that is not an SQLite database. */
  char path[160];
  snprintf(path, sizeof(path), "%s/garbage.db", fx->dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("this is not a database, just some text that is long enough to matter\n", f);
  fclose(f);
  char url[200];
  snprintf(url, sizeof(url), "sqlite:%s", path);
  assert_int_equal(rf_queue_open(&q, url, NULL), RF_EUNAVAIL); /* SQLITE_NOTADB */
  /* Default options, real clock; larger max_payload. */
  rf_queue_opts_t o = {.max_payload = 100};
  assert_int_equal(rf_queue_open(&q, "mem:", &o), 0);
  assert_int_equal(rf_queue_add(q, "p", "0123456789", 10, NULL), 0);
  char buf[101] = {0};
  assert_int_equal(rf_queue_add(q, "p2", buf, 101, NULL), RF_EOVERFLOW);
  uint64_t now = rf_queue_now_ms(q);
  assert_true(now > 1600000000000ull); /* wall clock, ms since 1970 */
  assert_int_equal(rf_queue_close(q), 0);
}

/* ------------------------------------------------------------ workers */

typedef struct {
  atomic_int runs;
  atomic_int fail_first; /* fail attempt 1 of every job */
  atomic_int always_fail;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  bool gate_closed;
  atomic_int entered;
} handler_ctx_t;

static int counting_handler(rf_job_t *job, void *arg) {
  handler_ctx_t *h = arg;
  atomic_fetch_add(&h->runs, 1);
  atomic_fetch_add(&h->entered, 1);
  pthread_mutex_lock(&h->mu);
  while (h->gate_closed) {
    pthread_cond_wait(&h->cv, &h->mu);
  }
  pthread_mutex_unlock(&h->mu);
  if (atomic_load(&h->always_fail) || (atomic_load(&h->fail_first) && job->attempt == 1)) {
    snprintf(job->error, sizeof(job->error), "handler failed attempt %u", job->attempt);
    return RF_EIO;
  }
  return 0;
}

static void handler_ctx_init(handler_ctx_t *h) {
  memset(h, 0, sizeof(*h));
  pthread_mutex_init(&h->mu, NULL);
  pthread_cond_init(&h->cv, NULL);
}

static void handler_ctx_destroy(handler_ctx_t *h) {
  pthread_mutex_destroy(&h->mu);
  pthread_cond_destroy(&h->cv);
}

static void wait_counts(rf_queue_t *q, rf_job_status_t st, uint64_t n) {
  uint64_t start = rf_test_now_ms();
  rf_queue_counts_t c;
  for (;;) {
    assert_int_equal(rf_queue_counts(q, &c), 0);
    if (c.n[st] == n) {
      return;
    }
    assert_true(rf_test_now_ms() - start < 10000);
    rf_test_sleep_ms(2);
  }
}

static void test_worker_processes_everything(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  handler_ctx_t h;
  handler_ctx_init(&h);
  atomic_store(&h.fail_first, 1);
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(q, 4, counting_handler, &h, 30000, 5, &w), 0);
  assert_int_equal(rf_queue_close(q), RF_EBUSY); /* a worker is running */
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 0;
  o.backoff_cap_ms = 0;
  enum { N = 60 };
  for (int i = 0; i < N; i++) {
    char id[16];
    snprintf(id, sizeof(id), "job-%d", i);
    assert_int_equal(rf_queue_add(q, id, id, strlen(id), &o), 0);
  }
  wait_counts(q, RF_JOB_COMPLETED, N);
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  assert_int_equal(st.claimed, 2 * N); /* each failed once, completed on attempt 2 */
  assert_int_equal(st.completed, N);
  assert_int_equal(st.failed, N);
  assert_int_equal(st.stale, 0);
  assert_int_equal(st.errors, 0);
  assert_int_equal(atomic_load(&h.runs), 2 * N);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "job-7", &info), 0);
  assert_int_equal(info.status, RF_JOB_COMPLETED);
  assert_int_equal(info.attempts, 2);
  assert_string_equal(info.last_error, "handler failed attempt 1");
  handler_ctx_destroy(&h);
}

static void test_worker_failing_handler_ends_failed(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  handler_ctx_t h;
  handler_ctx_init(&h);
  atomic_store(&h.always_fail, 1);
  rf_job_opts_t o = {.max_attempts = 3, .backoff_base_ms = 0, .backoff_cap_ms = 0};
  assert_int_equal(rf_queue_add(q, "welcome-x-fail", NULL, 0, &o), 0);
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(q, 2, counting_handler, &h, 30000, 5, &w), 0);
  wait_counts(q, RF_JOB_FAILED, 1);
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  assert_int_equal(st.failed, 3);
  assert_int_equal(atomic_load(&h.runs), 3);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "welcome-x-fail", &info), 0);
  assert_int_equal(info.attempts, 3);
  assert_string_equal(info.last_error, "handler failed attempt 3");
  handler_ctx_destroy(&h);
}

static void test_worker_woken_by_add(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  handler_ctx_t h;
  handler_ctx_init(&h);
  rf_queue_worker_t *w = NULL;
  /* A poll interval far longer than the test: only the wake-up of
   * rf_queue_add can get the jobs processed in time. */
  assert_int_equal(rf_queue_worker_start(q, 2, counting_handler, &h, 30000, 60000, &w), 0);
  rf_test_sleep_ms(50); /* let the workers go to sleep (passes either way) */
  uint64_t start = rf_test_now_ms();
  assert_int_equal(rf_queue_add(q, "wake-1", NULL, 0, NULL), 0);
  wait_counts(q, RF_JOB_COMPLETED, 1);
  rf_test_sleep_ms(20);
  assert_int_equal(rf_queue_add(q, "wake-2", NULL, 0, NULL), 0);
  wait_counts(q, RF_JOB_COMPLETED, 2);
  assert_true(rf_test_now_ms() - start < 5000);
  uint64_t t0 = rf_test_now_ms();
  rf_queue_worker_stop(w, NULL); /* stop wakes the sleepers at once */
  assert_true(rf_test_now_ms() - t0 < 5000);
  handler_ctx_destroy(&h);
}

typedef struct {
  rf_queue_worker_t *w;
  rf_queue_worker_stats_t st;
} stopper_t;

static void *stopper(void *arg) {
  stopper_t *s = arg;
  rf_queue_worker_stop(s->w, &s->st);
  return NULL;
}

static void test_worker_stop_is_graceful(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  handler_ctx_t h;
  handler_ctx_init(&h);
  h.gate_closed = true;
  stopper_t s = {0};
  assert_int_equal(rf_queue_worker_start(q, 2, counting_handler, &h, 30000, 5, &s.w), 0);
  assert_int_equal(rf_queue_add(q, "in-flight", NULL, 0, NULL), 0);
  uint64_t start = rf_test_now_ms();
  while (atomic_load(&h.entered) == 0) {
    assert_true(rf_test_now_ms() - start < 5000);
    rf_test_sleep_ms(1);
  }
  pthread_t t = rf_test_spawn(stopper, &s);
  rf_test_sleep_ms(20);
  assert_status(q, "in-flight", RF_JOB_ACTIVE, 1); /* still running */
  pthread_mutex_lock(&h.mu);
  h.gate_closed = false;
  pthread_cond_broadcast(&h.cv);
  pthread_mutex_unlock(&h.mu);
  rf_test_join(t);
  assert_status(q, "in-flight", RF_JOB_COMPLETED, 1); /* finished, not abandoned */
  assert_int_equal(s.st.completed, 1);
  /* Nothing is claimed after the stop. */
  assert_int_equal(rf_queue_add(q, "after", NULL, 0, NULL), 0);
  assert_status(q, "after", RF_JOB_WAITING, 0);
  handler_ctx_destroy(&h);
}

/* ------------------------------------------------------------ allocation failures */

/* One pass through every operation; returns the first error. */
static int one_pass(const char *url, const rf_queue_opts_t *opts, int pass) {
  rf_queue_t *q = NULL;
  char id[32];
  snprintf(id, sizeof(id), "torture-%d", pass);
  int rc = rf_queue_open(&q, url, opts);
  if (rc != 0) {
    return rc;
  }
  rf_job_t *job = NULL;
  rf_job_info_t info;
  rf_queue_counts_t counts;
  rf_queue_worker_t *w = NULL;
  rf_job_opts_t o = {.max_attempts = 2};
  if ((rc = rf_queue_add(q, id, "payload", 7, &o)) != 0 ||
      (rc = rf_queue_claim(q, "w", 1000, &job)) != 0 ||
      (rc = rf_queue_fail(q, job->id, job->attempt, "some error")) != 0) {
    goto out;
  }
  rf_job_free(job);
  job = NULL;
  if ((rc = rf_queue_claim(q, "w", 1000, &job)) != 0 ||
      (rc = rf_queue_extend(q, job->id, job->attempt, 2000)) != 0 ||
      (rc = rf_queue_complete(q, job->id, job->attempt)) != 0 ||
      (rc = rf_queue_get(q, job->id, &info)) != 0 || (rc = rf_queue_counts(q, &counts)) != 0 ||
      (rc = rf_queue_purge(q, 0, NULL)) != 0 ||
      (rc = rf_queue_worker_start(q, 2, noop_handler, NULL, 1000, 5, &w)) != 0) {
    goto out;
  }
  rf_queue_worker_stop(w, NULL);
out:
  rf_job_free(job);
  assert_int_equal(rf_queue_close(q), 0);
  return rc;
}

static void test_alloc_failures(void **state) {
  fx_t *fx = *state;
  int failures = 0;
  int pass = 0;
  for (long n = 0;; n++, pass++) {
    assert_true(n < 1000);
    rf_test_fail_alloc_after(n);
    int rc = one_pass(fx->url, &fx->opts, pass);
    rf_test_fail_alloc_after(-1);
    if (rc == 0) {
      break;
    }
    assert_int_equal(rc, RF_ENOMEM);
    failures++;
  }
  assert_true(failures >= 5);
  /* The queue the failed passes touched still works. */
  assert_int_equal(rf_queue_add(fx->q, "after-torture", NULL, 0, NULL), 0);
  assert_status(fx->q, "after-torture", RF_JOB_WAITING, 0);
}

static void test_claim_enomem_leaves_job_due(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  assert_int_equal(rf_queue_add(q, "j", "payload", 7, NULL), 0);
  rf_job_t *job = NULL;
  rf_test_fail_alloc_after(0); /* the copy handed to the claimer */
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), RF_ENOMEM);
  rf_test_fail_alloc_after(-1);
  assert_null(job);
  assert_status(q, "j", RF_JOB_WAITING, 0); /* not claimed, attempt not spent */
  job = claim_ok(q, "w", 1000);
  assert_int_equal(job->attempt, 1);
  assert_memory_equal(job->payload, "payload", 7);
  rf_job_free(job);
}

/* ------------------------------------------------------------ SQLite only */

static void test_durable_across_reopen(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  rf_job_opts_t once = {.max_attempts = 1};
  /* One millisecond apart, so that they are claimed in this order. */
  assert_int_equal(rf_queue_add(q, "w8", "waiting", 7, NULL), 0);
  advance(fx, 1);
  assert_int_equal(rf_queue_add(q, "ac", "active", 6, NULL), 0);
  advance(fx, 1);
  assert_int_equal(rf_queue_add(q, "co", "completed", 9, NULL), 0);
  advance(fx, 1);
  assert_int_equal(rf_queue_add(q, "fa", "failed", 6, &once), 0);
  rf_job_opts_t later = {.max_attempts = 5, .delay_ms = 100000};
  assert_int_equal(rf_queue_add(q, "de", NULL, 0, &later), 0);
  rf_job_t *j1 = claim_ok(q, "w", 1000);
  rf_job_t *j2 = claim_ok(q, "w", 1000);
  rf_job_t *j3 = claim_ok(q, "w", 1000);
  rf_job_t *j4 = claim_ok(q, "w", 1000);
  assert_string_equal(j1->id, "w8");
  assert_string_equal(j4->id, "fa");
  assert_int_equal(rf_queue_complete(q, "co", 1), 0);
  assert_int_equal(rf_queue_fail(q, "fa", 1, "gone"), 0);
  assert_int_equal(rf_queue_close(q), 0);
  fx->q = NULL;
  assert_int_equal(fx_open(fx), 0);
  q = fx->q;
  assert_status(q, "w8", RF_JOB_ACTIVE, 1);
  assert_status(q, "ac", RF_JOB_ACTIVE, 1);
  assert_status(q, "co", RF_JOB_COMPLETED, 1);
  assert_status(q, "fa", RF_JOB_FAILED, 1);
  assert_status(q, "de", RF_JOB_WAITING, 0);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "fa", &info), 0);
  assert_string_equal(info.last_error, "gone");
  /* The token survives the restart; dedup too. */
  assert_int_equal(rf_queue_complete(q, "w8", j1->attempt), 0);
  for (const char *const *id = (const char *const[]){"w8", "ac", "co", "fa", "de", NULL}; *id;
       id++) {
    assert_int_equal(rf_queue_add(q, *id, NULL, 0, NULL), RF_EEXIST);
  }
  /* The worker that held "ac" died with the old process: after the lease
   * the job is claimed again. */
  advance(fx, 1001);
  rf_job_t *again = claim_ok(q, "w-new", 1000);
  assert_string_equal(again->id, "ac");
  assert_int_equal(again->attempt, 2);
  assert_memory_equal(again->payload, "active", 6);
  assert_int_equal(rf_queue_complete(q, "ac", 1), RF_ESTALE);
  assert_int_equal(rf_queue_complete(q, "ac", 2), 0);
  assert_nothing_due(q);
  advance(fx, 100000);
  rf_job_t *d = claim_ok(q, "w", 1000);
  assert_string_equal(d->id, "de");
  rf_job_free(j1);
  rf_job_free(j2);
  rf_job_free(j3);
  rf_job_free(j4);
  rf_job_free(again);
  rf_job_free(d);
}

static void test_sqlite_statement_failures(void **state) {
  fx_t *fx = *state;
  rf_queue_t *q = fx->q;
  /* add */
  assert_int_equal(rf_hook_fail("queue.sqlite.insert", 1), 0);
  assert_int_equal(rf_queue_add(q, "j", "x", 1, NULL), RF_EIO);
  assert_int_equal(rf_queue_get(q, "j", &(rf_job_info_t){0}), RF_ENOENT);
  assert_int_equal(rf_queue_add(q, "j", "x", 1, NULL), 0);
  /* the claim statement, and the sweep a claim runs when nothing is due */
  rf_job_t *job = NULL;
  assert_int_equal(rf_hook_fail("queue.sqlite.take", 1), 0);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), RF_EIO);
  assert_null(job);
  assert_status(q, "j", RF_JOB_WAITING, 0);
  job = claim_ok(q, "w", 1000);
  assert_int_equal(rf_hook_fail("queue.sqlite.sweep", 1), 0);
  rf_job_t *none = NULL;
  assert_int_equal(rf_queue_claim(q, "w", 1000, &none), RF_EIO);
  assert_null(none);
  /* fail: the read and the fenced update */
  const char *fail_steps[] = {"queue.sqlite.fail_read", "queue.sqlite.fail_set"};
  for (size_t i = 0; i < sizeof(fail_steps) / sizeof(fail_steps[0]); i++) {
    assert_int_equal(rf_hook_fail(fail_steps[i], 1), 0);
    assert_int_equal(rf_queue_fail(q, "j", job->attempt, "e"), RF_EIO);
    assert_status(q, "j", RF_JOB_ACTIVE, 1);
  }
  /* complete, extend, probe, reads */
  assert_int_equal(rf_hook_fail("queue.sqlite.extend", 1), 0);
  assert_int_equal(rf_queue_extend(q, "j", 1, 1000), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.sqlite.probe", 1), 0);
  assert_int_equal(rf_queue_complete(q, "j", 2), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.sqlite.complete", 1), 0);
  assert_int_equal(rf_queue_complete(q, "j", 1), RF_EIO);
  assert_status(q, "j", RF_JOB_ACTIVE, 1);
  assert_int_equal(rf_hook_fail("queue.sqlite.get", 1), 0);
  assert_int_equal(rf_queue_get(q, "j", &(rf_job_info_t){0}), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.sqlite.counts", 1), 0);
  assert_int_equal(rf_queue_counts(q, &(rf_queue_counts_t){{0}}), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.sqlite.purge", 1), 0);
  assert_int_equal(rf_queue_purge(q, 0, NULL), RF_EIO);
  /* and then everything works */
  assert_int_equal(rf_queue_complete(q, "j", 1), 0);
  assert_status(q, "j", RF_JOB_COMPLETED, 1);
  rf_job_free(job);
}

static void test_fork_guard(void **state) {
  fx_t *fx = *state;
  (void)fx;
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* The child must open its own queue: the inherited one refuses. */
    int rc = rf_queue_add(fx->q, "from-child", NULL, 0, NULL);
    _exit(rc == RF_ESTATE ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
  assert_int_equal(rf_queue_get(fx->q, "from-child", &(rf_job_info_t){0}), RF_ENOENT);
}

/* ------------------------------------------------------------ main */

/* The shared suite: every test here runs against every backend. */
#define QUEUE_TEST(f, be) cmocka_unit_test_prestate_setup_teardown(f, setup, teardown, (void *)(be))
#define QUEUE_SHARED_SUITE(be)                                                                     \
  QUEUE_TEST(test_add_claim_complete, be), QUEUE_TEST(test_empty_payload_and_empty_queue, be),     \
      QUEUE_TEST(test_dedup, be), QUEUE_TEST(test_remove_on_complete_keeps_tombstone, be),         \
      QUEUE_TEST(test_purge_ends_dedup, be), QUEUE_TEST(test_order_and_delay, be),                 \
      QUEUE_TEST(test_fail_then_complete_on_attempt_2, be),                                        \
      QUEUE_TEST(test_backoff_then_failed, be),                                                    \
      QUEUE_TEST(test_backoff_is_jittered_and_capped, be),                                         \
      QUEUE_TEST(test_lease_expiry_reclaims_and_fences, be),                                       \
      QUEUE_TEST(test_expired_but_not_reclaimed_can_complete, be), QUEUE_TEST(test_extend, be),    \
      QUEUE_TEST(test_stalled_last_attempt_fails, be),                                             \
      QUEUE_TEST(test_stalled_and_waiting_interleave_by_due_time, be),                             \
      QUEUE_TEST(test_fencing_errors, be), QUEUE_TEST(test_bad_input, be),                         \
      QUEUE_TEST(test_bad_worker_args, be), QUEUE_TEST(test_error_text_truncation, be),            \
      QUEUE_TEST(test_open_urls, be), QUEUE_TEST(test_worker_processes_everything, be),            \
      QUEUE_TEST(test_worker_failing_handler_ends_failed, be),                                     \
      QUEUE_TEST(test_worker_woken_by_add, be), QUEUE_TEST(test_worker_stop_is_graceful, be),      \
      QUEUE_TEST(test_alloc_failures, be), QUEUE_TEST(test_fork_guard, be),                        \
      QUEUE_TEST(test_claim_enomem_leaves_job_due, be)

int main(void) {
  const struct CMUnitTest mem_tests[] = {QUEUE_SHARED_SUITE(&backends[0])};
  const struct CMUnitTest sqlite_tests[] = {
      QUEUE_SHARED_SUITE(&backends[1]),
      /* durable backends only */
      QUEUE_TEST(test_durable_across_reopen, &backends[1]),
      QUEUE_TEST(test_sqlite_statement_failures, &backends[1]),
  };
  const struct CMUnitTest pg_tests[] = {
      QUEUE_SHARED_SUITE(&backends[2]),
      QUEUE_TEST(test_durable_across_reopen, &backends[2]),
  };
  int failed = cmocka_run_group_tests_name("queue/mem", mem_tests, NULL, NULL);
  failed += cmocka_run_group_tests_name("queue/sqlite", sqlite_tests, NULL, NULL);
  failed += cmocka_run_group_tests_name("queue/postgres", pg_tests, NULL, NULL);
  return failed;
}
