/* stress_queue.c - the queue under contention, counts checked exactly.
 *
 *  1. (every backend) 8 producer threads enqueue overlapping job ids
 *     released together, while 4 worker threads process them: each unique
 *     id is accepted exactly once, every other attempt is reported as a
 *     duplicate, and each id is processed exactly once.
 *  2. (SQLite) 3 forked processes, each with 2 worker threads, share one
 *     file while the parent keeps adding jobs: each job is completed
 *     exactly once, across processes.
 *  3. (SQLite) a process is killed (SIGKILL) while it holds a job: after
 *     the lease the job is claimed again, with the next attempt number, and
 *     the dead worker's attempt can no longer complete it.
 */
#include <dirent.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "racefree/queue.h"
#include "rf_test.h"

static void make_dir(char *dir) {
  strcpy(dir, "/tmp/rfq-stress-XXXXXX");
  assert_non_null(mkdtemp(dir));
}

static void rm_dir(const char *dir) {
  DIR *d = opendir(dir);
  if (d != NULL) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (e->d_name[0] != '.') {
        char p[512];
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        unlink(p);
      }
    }
    closedir(d);
  }
  rmdir(dir);
}

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

/* ------------------------------------------------------------ 1. threads */

#define PRODUCERS 8
#define WORKERS   4
#define MAX_IDS   2000

typedef struct {
  rf_queue_t *q;
  int unique;     /* ids "job-0" .. "job-(unique-1)" */
  int per_thread; /* adds per producer */
  atomic_int accepted[MAX_IDS];
  atomic_int processed[MAX_IDS];
  atomic_long duplicates;
  atomic_long errors;
} shared_t;

static int id_index(const char *id) {
  return atoi(id + 4); /* "job-N" */
}

static int process(rf_job_t *job, void *arg) {
  shared_t *s = arg;
  int i = id_index(job->id);
  /* The payload is the id: check that the job carries its own data. */
  if (job->payload_len != strlen(job->id) || memcmp(job->payload, job->id, job->payload_len) != 0) {
    atomic_fetch_add(&s->errors, 1);
  }
  atomic_fetch_add(&s->processed[i], 1);
  return 0;
}

/* Producer p adds a window of ids starting at p * unique / 8, wrapping:
 * consecutive producers overlap on half of their ids, and every id is
 * offered by several producers at about the same time. */
static void producer(void *arg, int p) {
  shared_t *s = arg;
  int start = p * s->unique / PRODUCERS;
  for (int k = 0; k < s->per_thread; k++) {
    int i = (start + k) % s->unique;
    char id[32];
    snprintf(id, sizeof(id), "job-%d", i);
    int rc = rf_queue_add(s->q, id, id, strlen(id), NULL);
    if (rc == 0) {
      atomic_fetch_add(&s->accepted[i], 1);
    } else if (rc == RF_EEXIST) {
      atomic_fetch_add(&s->duplicates, 1);
    } else {
      atomic_fetch_add(&s->errors, 1);
    }
  }
}

static void test_threads_exactly_once(void **state) {
  const char *backend = *state;
  char dir[64], url[128];
  make_dir(dir);
  if (strcmp(backend, "mem") == 0) {
    snprintf(url, sizeof(url), "mem:");
  } else {
    snprintf(url, sizeof(url), "sqlite:%s/q.db", dir);
  }
  shared_t *s = calloc(1, sizeof(*s));
  assert_non_null(s);
  bool sqlite = strcmp(backend, "sqlite") == 0;
  s->unique = (int)rf_test_iters(sqlite ? 600 : 2000);
  if (s->unique < 80) {
    s->unique = 80;
  }
  s->per_thread = s->unique / 2; /* 8 x unique/2 = 4 offers per id on average */
  assert_int_equal(rf_queue_open(&s->q, url, NULL), 0);
  rf_queue_worker_t *w = NULL;
  assert_int_equal(rf_queue_worker_start(s->q, WORKERS, process, s, 30000, 10, &w), 0);
  rf_test_run_parallel(PRODUCERS, producer, s);
  long offers = (long)PRODUCERS * s->per_thread;
  long unique_offered = 0;
  for (int i = 0; i < s->unique; i++) {
    /* Every id is in some producer's window iff the windows cover [0, unique). */
    unique_offered += atomic_load(&s->accepted[i]) > 0;
  }
  assert_int_equal(unique_offered, s->unique);
  wait_completed(s->q, (uint64_t)s->unique, 30000);
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  assert_int_equal(atomic_load(&s->errors), 0);
  for (int i = 0; i < s->unique; i++) {
    assert_int_equal(atomic_load(&s->accepted[i]), 1);
    assert_int_equal(atomic_load(&s->processed[i]), 1);
  }
  assert_int_equal(atomic_load(&s->duplicates), offers - s->unique);
  assert_int_equal(st.claimed, (uint64_t)s->unique);
  assert_int_equal(st.completed, (uint64_t)s->unique);
  assert_int_equal(st.failed + st.stale + st.errors, 0);
  assert_int_equal(rf_queue_close(s->q), 0);
  free(s);
  rm_dir(dir);
}

/* ------------------------------------------------------------ 2. processes */

#define CHILDREN      3
#define PROC_JOBS_MAX 600

typedef struct {
  atomic_int processed[PROC_JOBS_MAX];
  atomic_int per_child[CHILDREN];
} proc_shared_t;

typedef struct {
  proc_shared_t *sh;
  int child;
} child_ctx_t;

static int child_process(rf_job_t *job, void *arg) {
  child_ctx_t *c = arg;
  atomic_fetch_add(&c->sh->processed[id_index(job->id)], 1);
  atomic_fetch_add(&c->sh->per_child[c->child], 1);
  return 0;
}

/* A worker process: its own queue on the shared file, 2 worker threads,
 * until every job is completed. */
static int child_main(const char *url, proc_shared_t *sh, int child, int total) {
  rf_queue_t *q = NULL;
  if (rf_queue_open(&q, url, NULL) != 0) {
    return 10;
  }
  child_ctx_t ctx = {sh, child};
  rf_queue_worker_t *w = NULL;
  if (rf_queue_worker_start(q, 2, child_process, &ctx, 30000, 2, &w) != 0) {
    return 11;
  }
  uint64_t start = rf_test_now_ms();
  int rc = 0;
  for (;;) {
    rf_queue_counts_t c;
    if (rf_queue_counts(q, &c) == 0 && c.n[RF_JOB_COMPLETED] == (uint64_t)total) {
      break;
    }
    if (rf_test_now_ms() - start > 60000) {
      rc = 12;
      break;
    }
    rf_test_sleep_ms(5);
  }
  rf_queue_worker_stats_t st;
  rf_queue_worker_stop(w, &st);
  if (st.stale + st.errors + st.failed != 0) {
    rc = 13;
  }
  if (rf_queue_close(q) != 0) {
    rc = 14;
  }
  return rc;
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
  char dir[64], url[128];
  make_dir(dir);
  snprintf(url, sizeof(url), "sqlite:%s/q.db", dir);
  int total = (int)rf_test_iters(PROC_JOBS_MAX);
  if (total < 120) {
    total = 120;
  }
  proc_shared_t *sh =
      mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(sh != MAP_FAILED);
  memset(sh, 0, sizeof(*sh));
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(&q, url, NULL), 0);
  add_range(q, 0, total / 2); /* half before the children start */
  pid_t pids[CHILDREN];
  for (int c = 0; c < CHILDREN; c++) {
    pids[c] = fork();
    assert_true(pids[c] >= 0);
    if (pids[c] == 0) {
      _exit(child_main(url, sh, c, total));
    }
  }
  add_range(q, total / 2, total); /* half while they run: found by polling */
  for (int c = 0; c < CHILDREN; c++) {
    int status = 0;
    assert_int_equal(waitpid(pids[c], &status, 0), pids[c]);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
  }
  int sum = 0;
  for (int i = 0; i < total; i++) {
    assert_int_equal(atomic_load(&sh->processed[i]), 1);
  }
  for (int c = 0; c < CHILDREN; c++) {
    sum += atomic_load(&sh->per_child[c]);
  }
  assert_int_equal(sum, total);
  rf_queue_counts_t n;
  assert_int_equal(rf_queue_counts(q, &n), 0);
  assert_int_equal(n.n[RF_JOB_COMPLETED], (uint64_t)total);
  for (int i = 0; i < total; i += 37) {
    char id[32];
    snprintf(id, sizeof(id), "job-%d", i);
    rf_job_info_t info;
    assert_int_equal(rf_queue_get(q, id, &info), 0);
    assert_int_equal(info.attempts, 1);
  }
  assert_int_equal(rf_queue_close(q), 0);
  munmap(sh, sizeof(*sh));
  rm_dir(dir);
}

/* ------------------------------------------------------------ 3. crash */

/* A clock in shared memory, so that the parent can expire the dead
 * child's lease without sleeping. */
static uint64_t shared_clock(void *arg) {
  return atomic_load((atomic_ullong *)arg);
}

static void test_killed_worker_job_is_reclaimed(void **state) {
  (void)state;
  char dir[64], url[128];
  make_dir(dir);
  snprintf(url, sizeof(url), "sqlite:%s/q.db", dir);
  atomic_ullong *now =
      mmap(NULL, sizeof(*now), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  assert_true(now != MAP_FAILED);
  atomic_store(now, 5000000);
  rf_queue_opts_t o = {.clock_ms = shared_clock, .clock_arg = now};
  rf_queue_t *q = NULL;
  assert_int_equal(rf_queue_open(&q, url, &o), 0);
  assert_int_equal(rf_queue_add(q, "welcome-9", "mail", 4, NULL), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    rf_queue_t *cq = NULL;
    rf_job_t *job = NULL;
    if (rf_queue_open(&cq, url, &o) != 0 || rf_queue_claim(cq, "doomed", 1000, &job) != 0) {
      _exit(1);
    }
    raise(SIGKILL); /* dies mid-job: no complete, no fail, no close */
    _exit(2);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGKILL);
  /* The job is leased to the dead worker... */
  rf_job_info_t info;
  assert_int_equal(rf_queue_get(q, "welcome-9", &info), 0);
  assert_int_equal(info.status, RF_JOB_ACTIVE);
  assert_int_equal(info.attempts, 1);
  rf_job_t *job = NULL;
  assert_int_equal(rf_queue_claim(q, "survivor", 1000, &job), RF_ENOENT);
  /* ...until the lease expires: at least once. */
  atomic_fetch_add(now, 1001);
  assert_int_equal(rf_queue_claim(q, "survivor", 1000, &job), 0);
  assert_string_equal(job->id, "welcome-9");
  assert_int_equal(job->attempt, 2);
  assert_memory_equal(job->payload, "mail", 4);
  assert_int_equal(rf_queue_complete(q, job->id, 1), RF_ESTALE);
  assert_int_equal(rf_queue_complete(q, job->id, job->attempt), 0);
  rf_job_free(job);
  assert_int_equal(rf_queue_close(q), 0);
  munmap(now, sizeof(*now));
  rm_dir(dir);
}

int main(void) {
  static const char *const mem = "mem", *const sqlite = "sqlite";
  const struct CMUnitTest tests[] = {
      {"threads_exactly_once/mem", test_threads_exactly_once, NULL, NULL, (void *)mem},
      {"threads_exactly_once/sqlite", test_threads_exactly_once, NULL, NULL, (void *)sqlite},
      cmocka_unit_test(test_processes_exactly_once),
      cmocka_unit_test(test_killed_worker_job_is_reclaimed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
