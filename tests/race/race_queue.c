/* race_queue.c - the queue's three races, forced with hook points.
 *
 * For each race the naive twin (an in-memory job list with check-then-act
 * claim and add, and a completion without a fencing token) is driven
 * through the bad interleaving and must break the invariant - that is the
 * proof the test can fail - and then our queue, on every backend, is driven
 * through the same interleaving and must hold:
 *
 *  1. double processing: A checks "waiting" and parks; B claims and runs
 *     the job; A resumes and runs it too.
 *  2. duplicate enqueue: A checks "no job with this id" and parks; B adds
 *     the id; A resumes and adds it again.
 *  3. zombie completion: A claims, stalls past its lease and parks before
 *     reporting; B reclaims the job; A resumes and reports "done" for a job
 *     it no longer owns.
 *
 * The naive twin's shared fields are relaxed atomics: its races are logic
 * races (a job run twice), not C data races, so TSan stays quiet.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "racefree/queue.h"
#include "rf_test.h"

/* ------------------------------------------------------------ naive twin */

#define NAIVE_MAX 16
enum { N_WAITING, N_ACTIVE, N_COMPLETED };

typedef struct {
  char id[32];
  atomic_int status;
  atomic_uint attempt;
  atomic_ullong lease_until;
  atomic_int runs;          /* times a worker ran this job */
  atomic_int completions;   /* completions accepted */
  atomic_uint completed_by; /* attempt number of the accepted completion */
} naive_job_t;

typedef struct {
  naive_job_t jobs[NAIVE_MAX];
  atomic_int count;
} naive_queue_t;

#define RLX memory_order_relaxed

/* "if no job with this id: append it" - no dedup in the append itself. */
static void naive_add(naive_queue_t *nq, const char *id) {
  int n = atomic_load_explicit(&nq->count, RLX);
  for (int i = 0; i < n; i++) {
    if (strcmp(nq->jobs[i].id, id) == 0) {
      return;
    }
  }
  RF_HOOK("queue.naive.add_after_check");
  int slot = atomic_fetch_add_explicit(&nq->count, 1, RLX);
  naive_job_t *j = &nq->jobs[slot];
  snprintf(j->id, sizeof(j->id), "%s", id);
  atomic_store_explicit(&j->status, N_WAITING, RLX);
}

static int naive_count_id(naive_queue_t *nq, const char *id) {
  int n = atomic_load_explicit(&nq->count, RLX), c = 0;
  for (int i = 0; i < n; i++) {
    c += strcmp(nq->jobs[i].id, id) == 0;
  }
  return c;
}

/* "if (job.status == waiting) { job.status = active; run }" */
static naive_job_t *naive_claim(naive_queue_t *nq, uint64_t now, uint64_t lease,
                                unsigned *attempt) {
  int n = atomic_load_explicit(&nq->count, RLX);
  for (int i = 0; i < n; i++) {
    naive_job_t *j = &nq->jobs[i];
    int st = atomic_load_explicit(&j->status, RLX);
    bool stalled = st == N_ACTIVE && atomic_load_explicit(&j->lease_until, RLX) < now;
    if (st == N_WAITING || stalled) {
      RF_HOOK("queue.naive.after_check");
      atomic_store_explicit(&j->status, N_ACTIVE, RLX);
      atomic_store_explicit(&j->lease_until, now + lease, RLX);
      *attempt = atomic_fetch_add_explicit(&j->attempt, 1, RLX) + 1;
      atomic_fetch_add_explicit(&j->runs, 1, RLX);
      return j;
    }
  }
  return NULL;
}

/* Completion without a fencing token: whoever says "done" while the job
 * is active is believed. `attempt` is only recorded, for the test to see
 * whose report decided the outcome. */
static void naive_complete(naive_job_t *j, unsigned attempt) {
  if (atomic_load_explicit(&j->status, RLX) == N_ACTIVE) {
    atomic_store_explicit(&j->status, N_COMPLETED, RLX);
    atomic_store_explicit(&j->completed_by, attempt, RLX);
    atomic_fetch_add_explicit(&j->completions, 1, RLX);
  }
}

/* ------------------------------------------------------------ fixtures */

typedef struct {
  const char *name;
} backend_t;

static const backend_t backends[] = {{"mem"}, {"sqlite"}};

typedef struct {
  char dir[64];
  char url[128];
  atomic_ullong now;
  rf_queue_t *q;
} fx_t;

static uint64_t manual_clock(void *arg) {
  fx_t *fx = arg;
  return atomic_load(&fx->now);
}

static void fx_open(fx_t *fx, const backend_t *be) {
  memset(fx, 0, sizeof(*fx));
  strcpy(fx->dir, "/tmp/rfq-race-XXXXXX");
  assert_non_null(mkdtemp(fx->dir));
  if (strcmp(be->name, "mem") == 0) {
    snprintf(fx->url, sizeof(fx->url), "mem:");
  } else {
    snprintf(fx->url, sizeof(fx->url), "sqlite:%s/q.db", fx->dir);
  }
  atomic_init(&fx->now, 1000000);
  /* A short lock wait: a claimer that cannot get in while another one is
   * parked inside the critical section gives up with RF_EBUSY. */
  rf_queue_opts_t o = {.busy_timeout_ms = 200, .clock_ms = manual_clock, .clock_arg = fx};
  assert_int_equal(rf_queue_open(&fx->q, fx->url, &o), 0);
  rf_hook_reset();
}

static void fx_close(fx_t *fx) {
  rf_hook_reset();
  assert_int_equal(rf_queue_close(fx->q), 0);
  DIR *d = opendir(fx->dir);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] != '.') {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
        unlink(p);
      }
    }
    closedir(d);
  }
  rmdir(fx->dir);
}

/* ------------------------------------------------------------ 1. double processing */

static void *naive_claimer(void *arg) {
  naive_queue_t *nq = arg;
  unsigned attempt;
  naive_claim(nq, 0, 1000, &attempt);
  return NULL;
}

static void test_naive_claim_runs_job_twice(void **state) {
  (void)state;
  rf_hook_reset();
  static naive_queue_t nq;
  memset(&nq, 0, sizeof(nq));
  naive_add(&nq, "welcome-1");
  assert_int_equal(rf_hook_arm("queue.naive.after_check", 1), 0);
  pthread_t a = rf_test_spawn(naive_claimer, &nq);
  RF_ASSERT_PARKED("queue.naive.after_check", 1); /* A saw "waiting" */
  unsigned attempt;
  assert_non_null(naive_claim(&nq, 0, 1000, &attempt)); /* B claims and runs it */
  assert_int_equal(rf_hook_release("queue.naive.after_check", 1), 0);
  rf_test_join(a);                                    /* A runs it again */
  assert_int_equal(atomic_load(&nq.jobs[0].runs), 2); /* the violation */
  rf_hook_reset();
}

typedef struct {
  rf_queue_t *q;
  int rc;
  rf_job_t *job;
} claim_arg_t;

static void *our_claimer(void *arg) {
  claim_arg_t *c = arg;
  c->rc = rf_queue_claim(c->q, "worker-a", 1000, &c->job);
  return NULL;
}

static void test_our_claim_runs_job_once(void **state) {
  const backend_t *be = *state;
  fx_t fx;
  fx_open(&fx, be);
  assert_int_equal(rf_queue_add(fx.q, "welcome-1", NULL, 0, NULL), 0);
  assert_int_equal(rf_hook_arm("queue.claim.before_take", 1), 0);
  claim_arg_t a = {.q = fx.q};
  pthread_t ta = rf_test_spawn(our_claimer, &a);
  RF_ASSERT_PARKED("queue.claim.before_take", 1); /* A is about to take it */
  /* B runs its whole claim in A's window through the same handle: it
   * cannot get in (the memory queue's mutex, SQLite's per-handle writer
   * mutex are held by A). */
  rf_job_t *b = NULL;
  assert_int_equal(rf_queue_claim(fx.q, "worker-b", 1000, &b), RF_EBUSY);
  assert_null(b);
  /* SQLite: C, on another handle to the same file (what another process
   * has), is not held back by A; it takes the job. In SQLite the choice
   * and the take are one statement, so A, resumed, must find nothing. */
  bool sqlite = strcmp(be->name, "sqlite") == 0;
  rf_job_t *c = NULL;
  if (sqlite) {
    rf_queue_t *other = NULL;
    rf_queue_opts_t o = {.busy_timeout_ms = 200, .clock_ms = manual_clock, .clock_arg = &fx};
    assert_int_equal(rf_queue_open(&other, fx.url, &o), 0);
    assert_int_equal(rf_queue_claim(other, "worker-c", 1000, &c), 0);
    assert_int_equal(c->attempt, 1);
    assert_int_equal(rf_queue_close(other), 0);
  }
  assert_int_equal(rf_hook_release("queue.claim.before_take", 1), 0);
  rf_test_join(ta);
  if (sqlite) {
    assert_int_equal(a.rc, RF_ENOENT);
  } else {
    assert_int_equal(a.rc, 0);
    assert_string_equal(a.job->id, "welcome-1");
    assert_int_equal(a.job->attempt, 1);
  }
  /* Exactly one claimer holds the job; B, retrying, finds nothing. */
  assert_int_equal((a.rc == 0) + (c != NULL), 1);
  assert_int_equal(rf_queue_claim(fx.q, "worker-b", 1000, &b), RF_ENOENT);
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(fx.q, "welcome-1", &info), 0);
  assert_int_equal(info.attempts, 1); /* claimed (run) exactly once */
  rf_job_free(a.job);
  rf_job_free(c);
  fx_close(&fx);
}

/* ------------------------------------------------------------ 2. duplicate enqueue */

static void *naive_adder(void *arg) {
  naive_add(arg, "welcome-1");
  return NULL;
}

static void test_naive_add_enqueues_twice(void **state) {
  (void)state;
  rf_hook_reset();
  static naive_queue_t nq;
  memset(&nq, 0, sizeof(nq));
  assert_int_equal(rf_hook_arm("queue.naive.add_after_check", 1), 0);
  pthread_t a = rf_test_spawn(naive_adder, &nq);
  RF_ASSERT_PARKED("queue.naive.add_after_check", 1); /* A saw "no such id" */
  naive_add(&nq, "welcome-1");                        /* B adds it */
  assert_int_equal(rf_hook_release("queue.naive.add_after_check", 1), 0);
  rf_test_join(a);
  assert_int_equal(naive_count_id(&nq, "welcome-1"), 2); /* the violation */
  rf_hook_reset();
}

typedef struct {
  rf_queue_t *q;
  int rc;
} add_arg_t;

static void *our_adder(void *arg) {
  add_arg_t *x = arg;
  x->rc = rf_queue_add(x->q, "welcome-1", "a", 1, NULL);
  return NULL;
}

static void test_our_add_reports_duplicate(void **state) {
  const backend_t *be = *state;
  fx_t fx;
  fx_open(&fx, be);
  assert_int_equal(rf_hook_arm("queue.add.before_insert", 1), 0);
  add_arg_t a = {.q = fx.q};
  pthread_t ta = rf_test_spawn(our_adder, &a);
  RF_ASSERT_PARKED("queue.add.before_insert", 1);                     /* A decided to add */
  assert_int_equal(rf_queue_add(fx.q, "welcome-1", "b", 1, NULL), 0); /* B adds first */
  assert_int_equal(rf_hook_release("queue.add.before_insert", 1), 0);
  rf_test_join(ta);
  assert_int_equal(a.rc, RF_EEXIST); /* reported, not dropped, not doubled */
  rf_queue_counts_t c;
  assert_int_equal(rf_queue_counts(fx.q, &c), 0);
  assert_int_equal(c.n[RF_JOB_WAITING], 1);
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(fx.q, "w", 1000, &job), 0);
  assert_memory_equal(job->payload, "b", 1); /* B's job, untouched by A */
  rf_job_free(job);
  fx_close(&fx);
}

/* ------------------------------------------------------------ 3. zombie completion */

static void *naive_zombie(void *arg) {
  naive_job_t *j = arg;
  RF_HOOK("queue.naive.before_complete");
  naive_complete(j, 1);
  return NULL;
}

static void test_naive_stale_completion_accepted(void **state) {
  (void)state;
  rf_hook_reset();
  static naive_queue_t nq;
  memset(&nq, 0, sizeof(nq));
  naive_add(&nq, "slow");
  unsigned attempt_a, attempt_b;
  naive_job_t *j = naive_claim(&nq, 0, 100, &attempt_a); /* A, lease until 100 */
  assert_non_null(j);
  assert_int_equal(rf_hook_arm("queue.naive.before_complete", 1), 0);
  pthread_t a = rf_test_spawn(naive_zombie, j);
  RF_ASSERT_PARKED("queue.naive.before_complete", 1);          /* A stalls */
  assert_ptr_equal(naive_claim(&nq, 101, 100, &attempt_b), j); /* B reclaims */
  assert_int_equal(rf_hook_release("queue.naive.before_complete", 1), 0);
  rf_test_join(a);
  assert_int_equal(attempt_a, 1);
  assert_int_equal(attempt_b, 2);
  naive_complete(j, attempt_b); /* B finishes: ignored, the job is "done" */
  /* The violation: the outcome was decided by attempt 1, whose worker had
   * lost the job, while attempt 2 was still running. */
  assert_int_equal(atomic_load(&j->completed_by), 1);
  assert_int_equal(atomic_load(&j->completions), 1);
  rf_hook_reset();
}

typedef struct {
  rf_queue_t *q;
  unsigned attempt;
  int rc;
} complete_arg_t;

static void *our_zombie(void *arg) {
  complete_arg_t *x = arg;
  x->rc = rf_queue_complete(x->q, "slow", x->attempt);
  return NULL;
}

static void test_our_stale_completion_refused(void **state) {
  const backend_t *be = *state;
  fx_t fx;
  fx_open(&fx, be);
  assert_int_equal(rf_queue_add(fx.q, "slow", NULL, 0, NULL), 0);
  rf_job_t *ja = NULL;
  assert_int_equal(rf_queue_claim(fx.q, "worker-a", 100, &ja), 0);
  assert_int_equal(rf_hook_arm("queue.complete.before_update", 1), 0);
  complete_arg_t a = {.q = fx.q, .attempt = ja->attempt};
  pthread_t ta = rf_test_spawn(our_zombie, &a);
  RF_ASSERT_PARKED("queue.complete.before_update", 1); /* A stalls */
  atomic_fetch_add(&fx.now, 101);                      /* its lease expires */
  rf_job_t *jb = NULL;
  assert_int_equal(rf_queue_claim(fx.q, "worker-b", 100, &jb), 0); /* B reclaims */
  assert_int_equal(jb->attempt, 2);
  assert_int_equal(rf_hook_release("queue.complete.before_update", 1), 0);
  rf_test_join(ta);
  assert_int_equal(a.rc, RF_ESTALE); /* A's report does not count */
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(fx.q, "slow", &info), 0);
  assert_int_equal(info.status, RF_JOB_ACTIVE); /* still B's */
  assert_int_equal(rf_queue_complete(fx.q, "slow", jb->attempt), 0);
  rf_job_free(ja);
  rf_job_free(jb);
  fx_close(&fx);
}

/* Our side of a race, on one backend (the test's name says which). */
#define OURS(f, i, name)                                                                           \
  { #f "/" name, f, NULL, NULL, (void *)&backends[i] }

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_naive_claim_runs_job_twice),
      OURS(test_our_claim_runs_job_once, 0, "mem"),
      OURS(test_our_claim_runs_job_once, 1, "sqlite"),
      cmocka_unit_test(test_naive_add_enqueues_twice),
      OURS(test_our_add_reports_duplicate, 0, "mem"),
      OURS(test_our_add_reports_duplicate, 1, "sqlite"),
      cmocka_unit_test(test_naive_stale_completion_accepted),
      OURS(test_our_stale_completion_refused, 0, "mem"),
      OURS(test_our_stale_completion_refused, 1, "sqlite"),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
