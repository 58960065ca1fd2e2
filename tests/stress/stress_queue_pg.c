/* stress_queue_pg.c - the job queue on a real PostgreSQL (RF_TEST_PG_URL,
 * or a private cluster started with scripts/pg.sh: tests/support/rf_pg.h),
 * beyond the shared suite of tests/unit/test_queue.c:
 *
 *  1. 8 producer threads enqueue overlapping ids while 4 worker threads
 *     claim (FOR UPDATE SKIP LOCKED): each id accepted once, processed once.
 *  2. 3 forked processes, each with 2 worker threads, claim from one queue
 *     while the parent keeps adding jobs: each job completed exactly once,
 *     on its first attempt.
 *  3. A process killed (SIGKILL) while it holds a job: after the lease the
 *     job is claimed again with the next attempt; the dead attempt is stale.
 *     A job whose row another transaction holds is skipped, not waited
 *     for (SKIP LOCKED, driven deterministically with a held row lock).
 *  4. 4 processes open a queue on a new database at once: the schema is
 *     created once, under its advisory lock; every open succeeds.
 *  5. Every statement failing in turn (failure injection): RF_EIO, and the
 *     job is as it was.
 *  6. URLs: the pool= knob, libpq's own parameters, an unreachable server.
 *  7. PostgreSQL stopped and started again (private cluster only): calls
 *     fail fast with RF_EUNAVAIL, then the same handle works again.
 */
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "racefree/queue.h"
#include "rf_pg.h"
#include "rf_test.h"

static void wait_completed(rf_queue_t *q, uint64_t n, int timeout_ms) {
  uint64_t start = rf_test_now_ms();
  rf_queue_counts_t c;
  for (;;) {
    assert_int_equal(rf_queue_counts(q, &c), 0);
    if (c.n[RF_JOB_COMPLETED] >= n) {
      break;
    }
    assert_true(rf_test_now_ms() - start < (uint64_t)timeout_ms);
    rf_test_sleep_ms(5);
  }
  assert_int_equal(c.n[RF_JOB_COMPLETED], n);
  assert_int_equal(c.n[RF_JOB_WAITING] + c.n[RF_JOB_ACTIVE] + c.n[RF_JOB_FAILED], 0);
}

static rf_queue_t *open_fresh(char *url, size_t cap, const char *extra) {
  rf_test_pg_schema_url(url, cap, extra, NULL, NULL);
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(&q, url, NULL), 0);
  assert_string_equal(rf_queue_backend(q), "postgres");
  return q;
}

/* ------------------------------------------------------------ 1. threads */

enum { PRODUCERS = 8, WORKERS = 4, UNIQUE_MAX = 2000 };

typedef struct {
  rf_queue_t *q;
  int unique;
  atomic_int accepted, duplicates, other;
  atomic_int processed[UNIQUE_MAX];
} threads_t;

static int count_handler(rf_job_t *job, void *arg) {
  threads_t *t = arg;
  int i = atoi(job->id + 4);
  atomic_fetch_add(&t->processed[i], 1);
  return 0;
}

static void producer(void *arg, int idx) {
  threads_t *t = arg;
  /* Each producer adds every id, starting at a different offset: every
   * id is contended by all producers. */
  for (int k = 0; k < t->unique; k++) {
    char id[32];
    snprintf(id, sizeof(id), "job-%d", (k + idx * t->unique / PRODUCERS) % t->unique);
    int rc = rf_queue_add(t->q, id, id, strlen(id), NULL);
    if (rc == 0) {
      atomic_fetch_add(&t->accepted, 1);
    } else if (rc == RF_EEXIST) {
      atomic_fetch_add(&t->duplicates, 1);
    } else {
      atomic_fetch_add(&t->other, 1);
    }
  }
}

static void test_threads_exactly_once(void **state) {
  (void)state;
  char url[512];
  threads_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  t->q = open_fresh(url, sizeof(url), "pool=12");
  t->unique = (int)rf_test_iters(300);
  if (t->unique < 60) {
    t->unique = 60;
  }
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(t->q, WORKERS, count_handler, t, 30000, 5, &w), 0);
  rf_test_run_parallel(PRODUCERS, producer, t);
  wait_completed(t->q, (uint64_t)t->unique, 60000);
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  assert_int_equal(atomic_load(&t->other), 0);
  assert_int_equal(atomic_load(&t->accepted), t->unique);
  assert_int_equal(atomic_load(&t->duplicates), (PRODUCERS - 1) * t->unique);
  for (int i = 0; i < t->unique; i++) {
    assert_int_equal(atomic_load(&t->processed[i]), 1);
  }
  assert_int_equal(st.claimed, (uint64_t)t->unique);
  assert_int_equal(st.completed, (uint64_t)t->unique);
  assert_int_equal(st.stale + st.errors, 0);
  assert_int_equal(rf_queue_close(t->q), 0);
  rf_test_pg_drop(url);
  free(t);
}

/* ------------------------------------------------------------ 2. processes */

enum { CHILDREN = 3, PROC_JOBS_MAX = 600 };

typedef struct {
  atomic_int processed[PROC_JOBS_MAX];
  atomic_int per_child[CHILDREN];
  atomic_int done; /* the parent added everything and saw it completed */
} proc_shared_t;

typedef struct {
  proc_shared_t *sh;
  int child;
} proc_ctx_t;

static int proc_handler(rf_job_t *job, void *arg) {
  proc_ctx_t *c = arg;
  int i = atoi(job->id + 4);
  atomic_fetch_add(&c->sh->processed[i], 1);
  atomic_fetch_add(&c->sh->per_child[c->child], 1);
  usleep(200); /* some work, so that the three processes interleave */
  return 0;
}

static int child_main(const char *url, proc_shared_t *sh, int child) {
  rf_queue_t *q = NULL;
  if (rf_queue_open(&q, url, NULL) != 0) {
    return 2;
  }
  proc_ctx_t ctx = {sh, child};
  rf_queue_worker_t *w = NULL;
  if (rf_queue_worker_start(q, 2, proc_handler, &ctx, 30000, 5, &w) != 0) {
    return 3;
  }
  uint64_t start = rf_test_now_ms();
  while (!atomic_load(&sh->done) && rf_test_now_ms() - start < 120000) {
    rf_test_sleep_ms(5);
  }
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  int rc = rf_queue_close(q) == 0 && st.stale == 0 && st.errors == 0 ? 0 : 4;
  return atomic_load(&sh->done) ? rc : 5;
}

static void add_range(rf_queue_t *q, int from, int to) {
  for (int i = from; i < to; i++) {
    char id[32];
    snprintf(id, sizeof(id), "job-%d", i);
    assert_int_equal(rf_queue_add(q, id, NULL, 0, NULL), 0);
  }
}

static void test_processes_exactly_once(void **state) {
  (void)state;
  char url[512];
  int total = (int)rf_test_iters(PROC_JOBS_MAX);
  if (total < 120) {
    total = 120;
  }
  proc_shared_t *sh =
      mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, sizeof(*sh));
  rf_queue_t *q = open_fresh(url, sizeof(url), NULL);
  add_range(q, 0, total / 2); /* half before the children start */
  pid_t pids[CHILDREN];
  for (int c = 0; c < CHILDREN; c++) {
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) {
      _exit(child_main(url, sh, c));
    }
  }
  add_range(q, total / 2, total); /* half while they run: found by polling */
  wait_completed(q, (uint64_t)total, 120000);
  atomic_store(&sh->done, 1);
  for (int c = 0; c < CHILDREN; c++) {
    int status = 0;
    assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  int sum = 0, busy = 0;
  for (int i = 0; i < total; i++) {
    assert_int_equal(atomic_load(&sh->processed[i]), 1);
  }
  for (int c = 0; c < CHILDREN; c++) {
    sum += atomic_load(&sh->per_child[c]);
    busy += atomic_load(&sh->per_child[c]) > 0;
  }
  assert_int_equal(sum, total);
  print_message("%d jobs over %d processes: %d/%d/%d\n", total, busy,
                atomic_load(&sh->per_child[0]), atomic_load(&sh->per_child[1]),
                atomic_load(&sh->per_child[2]));
  for (int i = 0; i < total; i += 17) {
    char id[32];
    snprintf(id, sizeof(id), "job-%d", i);
    rf_job_info_t info;
    assert_int_equal(rf_queue_get(q, id, &info), 0);
    assert_int_equal(info.status, RF_JOB_COMPLETED);
    assert_int_equal(info.attempts, 1); /* never claimed twice */
  }
  assert_int_equal(rf_queue_close(q), 0);
  munmap(sh, sizeof(*sh));
  rf_test_pg_drop(url);
}

/* ------------------------------------------------------------ 3. crash */

static uint64_t shared_clock(void *arg) {
  return atomic_load((atomic_ullong *)arg);
}

static void test_killed_worker_job_is_reclaimed(void **state) {
  (void)state;
  char url[512];
  rf_test_pg_schema_url(url, sizeof(url), NULL, NULL, NULL);
  atomic_ullong *now =
      mmap(NULL, sizeof(*now), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(now != MAP_FAILED);
  atomic_store(now, 5000000);
  rf_queue_opts_t o = {.clock_ms = shared_clock, .clock_arg = now};
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(&q, url, &o), 0);
  assert_int_equal(rf_queue_add(q, "welcome-9", "mail", 4, NULL), 0);
  int pipefd[2];
  assert_int_equal(pipe(pipefd), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rf_queue_t *cq = NULL;
    rf_job_t *job = NULL;
    char ok = rf_queue_open(&cq, url, &o) == 0 && rf_queue_claim(cq, "doomed", 1000, &job) == 0 &&
                      job->attempt == 1
                  ? 'y'
                  : 'n';
    (void)!write(pipefd[1], &ok, 1);
    pause(); /* holding the job until killed */
    _exit(0);
  }
  char ok = 0;
  assert_int_equal(read(pipefd[0], &ok, 1), 1);
  assert_int_equal(ok, 'y');
  assert_int_equal(kill(pid, SIGKILL), 0);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  close(pipefd[0]);
  close(pipefd[1]);
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, "survivor", 1000, &job), RF_ENOENT); /* lease holds */
  atomic_fetch_add(now, 1001);
  assert_int_equal(rf_queue_claim(q, "survivor", 1000, &job), 0);
  assert_string_equal(job->id, "welcome-9");
  assert_int_equal(job->attempt, 2);
  assert_memory_equal(job->payload, "mail", 4);
  assert_int_equal(rf_queue_complete(q, "welcome-9", 1), RF_ESTALE); /* the dead attempt */
  assert_int_equal(rf_queue_complete(q, "welcome-9", 2), 0);
  rf_job_free(job);
  assert_int_equal(rf_queue_close(q), 0);
  munmap(now, sizeof(*now));
  rf_test_pg_drop(url);
}

/* SKIP LOCKED, deterministically: while another transaction holds the
 * oldest due job's row lock, a claim takes the next job at once instead of
 * waiting for it (nor taking the locked one); released, the job is taken. */
static void test_claim_skips_locked_job(void **state) {
  (void)state;
  char url[512];
  rf_queue_t *q = open_fresh(url, sizeof(url), NULL);
  assert_int_equal(rf_queue_add(q, "older", NULL, 0, NULL), 0);
  usleep(2000);
  assert_int_equal(rf_queue_add(q, "newer", NULL, 0, NULL), 0);
  PGconn *c = rf_test_pg_connect(url);
  PQclear(PQexec(c, "BEGIN"));
  PGresult *r = PQexec(c, "SELECT 1 FROM rf_jobs WHERE id = 'older' FOR UPDATE");
  assert_int_equal(PQntuples(r), 1);
  PQclear(r);
  uint64_t t0 = rf_test_now_ms();
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, "w", 30000, &job), 0);
  assert_true(rf_test_now_ms() - t0 < 1000); /* did not queue behind the lock */
  assert_string_equal(job->id, "newer");
  rf_job_free(job);
  job = NULL;
  assert_int_equal(rf_queue_claim(q, "w", 30000, &job), RF_ENOENT); /* "older" is locked */
  PQclear(PQexec(c, "COMMIT"));
  PQfinish(c);
  assert_int_equal(rf_queue_claim(q, "w", 30000, &job), 0);
  assert_string_equal(job->id, "older");
  assert_int_equal(job->attempt, 1);
  rf_job_free(job);
  assert_int_equal(rf_queue_close(q), 0);
  rf_test_pg_drop(url);
}

/* ------------------------------------------------------------ 4. open */

static void test_concurrent_open_processes(void **state) {
  (void)state;
  char url[512];
  rf_test_pg_schema_url(url, sizeof(url), NULL, NULL, NULL);
  enum { NPROC = 4 };
  pid_t pids[NPROC];
  for (int i = 0; i < NPROC; i++) {
    pids[i] = fork();
    assert_true(pids[i] >= 0);
    if (pids[i] == 0) {
      rf_queue_t *q = NULL;
      char id[16];
      snprintf(id, sizeof(id), "p%d", i);
      int rc = rf_queue_open(&q, url, NULL);
      if (rc == 0) {
        rc = rf_queue_add(q, id, NULL, 0, NULL);
      }
      if (rc == 0) {
        rc = rf_queue_close(q);
      }
      _exit(rc == 0 ? 0 : 1);
    }
  }
  for (int i = 0; i < NPROC; i++) {
    int st = 0;
    assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
  }
  assert_int_equal(rf_test_pg_int(url, "SELECT count(*) FROM rf_jobs"), NPROC);
  assert_int_equal(rf_test_pg_int(url, "SELECT count(*) FROM pg_indexes WHERE tablename ="
                                       " 'rf_jobs' AND schemaname = current_schema()"),
                   2); /* primary key and rf_jobs_due */
  rf_test_pg_drop(url);
}

/* ------------------------------------------------------------ 5. failures */

static void assert_status(rf_queue_t *q, const char *id, rf_job_status_t st, unsigned attempts) {
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, id, &info), 0);
  assert_int_equal(info.status, st);
  assert_int_equal(info.attempts, attempts);
}

static void test_statement_failures(void **state) {
  (void)state;
  char url[512];
  rf_queue_t *q = open_fresh(url, sizeof(url), NULL);
  rf_hook_reset();
  assert_int_equal(rf_hook_fail("queue.pg.insert", 1), 0);
  assert_int_equal(rf_queue_add(q, "j", "x", 1, NULL), RF_EIO);
  assert_int_equal(rf_queue_get(q, "j", &(rf_job_info_t){0}), RF_ENOENT);
  assert_int_equal(rf_queue_add(q, "j", "x", 1, NULL), 0);
  rf_job_t *job = NULL;
  assert_int_equal(rf_hook_fail("queue.pg.take", 1), 0);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), RF_EIO);
  assert_null(job);
  assert_status(q, "j", RF_JOB_WAITING, 0);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), 0);
  rf_job_t *none = NULL;
  assert_int_equal(rf_hook_fail("queue.pg.sweep", 1), 0);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &none), RF_EIO); /* nothing due: the sweep */
  assert_null(none);
  const char *fail_steps[] = {"queue.pg.fail_read", "queue.pg.fail_set"};
  for (size_t i = 0; i < sizeof(fail_steps) / sizeof(fail_steps[0]); i++) {
    assert_int_equal(rf_hook_fail(fail_steps[i], 1), 0);
    assert_int_equal(rf_queue_fail(q, "j", job->attempt, "e"), RF_EIO);
    assert_status(q, "j", RF_JOB_ACTIVE, 1);
  }
  assert_int_equal(rf_hook_fail("queue.pg.extend", 1), 0);
  assert_int_equal(rf_queue_extend(q, "j", 1, 1000), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.pg.complete", 1), 0);
  assert_int_equal(rf_queue_complete(q, "j", 1), RF_EIO);
  assert_status(q, "j", RF_JOB_ACTIVE, 1);
  assert_int_equal(rf_hook_fail("queue.pg.get", 1), 0);
  assert_int_equal(rf_queue_get(q, "j", &(rf_job_info_t){0}), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.pg.counts", 1), 0);
  assert_int_equal(rf_queue_counts(q, &(rf_queue_counts_t){{0}}), RF_EIO);
  assert_int_equal(rf_hook_fail("queue.pg.purge", 1), 0);
  assert_int_equal(rf_queue_purge(q, 0, NULL), RF_EIO);
  assert_int_equal(rf_queue_complete(q, "j", 1), 0);
  assert_status(q, "j", RF_JOB_COMPLETED, 1);
  rf_job_free(job);
  /* a claim whose copy cannot be allocated, and whose undo fails too: the
   * job stays leased until its lease ends (like a crashed worker's) */
  assert_int_equal(rf_queue_add(q, "k", "y", 1, NULL), 0);
  assert_int_equal(rf_hook_fail("queue.pg.untake", 1), 0);
  rf_test_fail_alloc_after(0);
  assert_int_equal(rf_queue_claim(q, "w", 50, &job), RF_ENOMEM);
  rf_test_fail_alloc_after(-1);
  assert_status(q, "k", RF_JOB_ACTIVE, 1);
  rf_test_sleep_ms(60);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), 0);
  assert_int_equal(job->attempt, 2);
  rf_job_free(job);
  rf_hook_reset();
  assert_int_equal(rf_queue_close(q), 0);
  rf_test_pg_drop(url);
}

/* ------------------------------------------------------------ 6. URLs */

static void test_urls(void **state) {
  (void)state;
  rf_queue_t *q = NULL;
  const char *base = rf_test_pg_url();
  char url[600];
  const char *bad[] = {"pool=0",        "pool=257",    "pool=x",  "pool=",         "pool",
                       "timeout_ms=99", "timeout_ms=", "bogus=1", "pool=2&pool=0", "poolx=1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    snprintf(url, sizeof(url), "%s%c%s", base, strchr(base, '?') ? '&' : '?', bad[i]);
    assert_int_equal(rf_queue_open(&q, url, NULL), RF_EINVAL);
  }
  assert_int_equal(rf_queue_open(&q, "postgres:nohost", NULL), RF_EINVAL);
  uint64_t t0 = rf_test_now_ms();
  rf_queue_opts_t o = {.busy_timeout_ms = 500};
  assert_int_equal(rf_queue_open(&q, "postgres://127.0.0.1:1/x", &o), RF_EUNAVAIL);
  assert_true(rf_test_now_ms() - t0 < 3000);
  assert_null(q);
  /* postgresql://, pool=1 with 4 threads of work, and the store's
   * timeout_ms= (one URL serves both) */
  rf_test_pg_schema_url(url, sizeof(url), "pool=1&timeout_ms=3000", NULL, NULL);
  char longer[620];
  snprintf(longer, sizeof(longer), "postgresql://%s", strstr(url, "://") + 3);
  assert_int_equal(rf_queue_open(&q, longer, NULL), 0);
  assert_string_equal(rf_queue_backend(q), "postgresql");
  threads_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  t->q = q;
  t->unique = 40;
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(q, 4, count_handler, t, 30000, 5, &w), 0);
  rf_test_run_parallel(2, producer, t);
  wait_completed(q, 40, 30000);
  rf_queue_worker_stop(w, NULL);
  assert_int_equal(atomic_load(&t->accepted), 40);
  free(t);
  assert_int_equal(rf_queue_close(q), 0);
  rf_test_pg_drop(url);
}

/* ------------------------------------------------------------ 7. outage */

static void test_outage_and_restart(void **state) {
  (void)state;
  if (!rf_test_pg_private()) {
    print_message("skipped: the server is not this program's (RF_TEST_PG_URL)\n");
    return;
  }
  char url[512];
  rf_test_pg_schema_url(url, sizeof(url), NULL, NULL, NULL);
  rf_queue_opts_t o = {.busy_timeout_ms = 1000};
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(&q, url, &o), 0);
  assert_int_equal(rf_queue_add(q, "before", NULL, 0, NULL), 0);
  assert_int_equal(rf_test_pg_stop(), 0);
  uint64_t t0 = rf_test_now_ms();
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), RF_EUNAVAIL);
  assert_int_equal(rf_queue_add(q, "during", NULL, 0, NULL), RF_EUNAVAIL);
  assert_int_equal(rf_queue_get(q, "before", &(rf_job_info_t){0}), RF_EUNAVAIL);
  assert_true(rf_test_now_ms() - t0 < 2000);
  assert_int_equal(rf_test_pg_start(), 0);
  assert_int_equal(rf_queue_claim(q, "w", 1000, &job), 0); /* the same handle */
  assert_string_equal(job->id, "before");
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), 0);
  rf_job_free(job);
  assert_int_equal(rf_queue_add(q, "during", NULL, 0, NULL), 0);
  assert_int_equal(rf_queue_close(q), 0);
  rf_test_pg_drop(url);
}

int main(void) {
  rf_test_pg_url(); /* start the server before any test is timed */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_threads_exactly_once),
      cmocka_unit_test(test_processes_exactly_once),
      cmocka_unit_test(test_killed_worker_job_is_reclaimed),
      cmocka_unit_test(test_claim_skips_locked_job),
      cmocka_unit_test(test_concurrent_open_processes),
      cmocka_unit_test(test_statement_failures),
      cmocka_unit_test(test_urls),
      cmocka_unit_test(test_outage_and_restart),
  };
  return cmocka_run_group_tests_name("queue/postgres", tests, NULL, NULL);
}
