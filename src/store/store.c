/* store.c - rf_store_open: pick the backend from the URL scheme. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "backend.h"
#include "store.h"

static void set_err(char *err, size_t errlen, const char *msg, const char *url) {
  if (err && errlen > 0)
    snprintf(err, errlen, "%s: %s", msg, url ? url : "(null)");
}

int rf_store_open_err(const char *url, rf_store_t **out, char *err, size_t errlen) {
  if (err && errlen > 0)
    err[0] = '\0';
  if (!url || !out) {
    set_err(err, errlen, "store: no database URL", url);
    return RF_EINVAL;
  }
  if (strncmp(url, "sqlite:", 7) == 0) {
    const char *path = url + 7;
    if (strncmp(path, "//", 2) == 0) /* sqlite:///abs/path, sqlite://rel/path */
      path += 2;
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0) {
      /* In-memory databases are private to one connection, and the store
       * uses several: refuse rather than silently split the data. */
      set_err(err, errlen, "store: sqlite URL needs a file path", url);
      return RF_EINVAL;
    }
    return rf__store_sqlite_open(path, out, err, errlen);
  }
  if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0)
    return rf__store_pg_open(url, out, err, errlen);
  set_err(err, errlen,
          "store: unknown database URL scheme (expected sqlite:PATH or postgres://...)", url);
  return RF_EINVAL;
}

int rf_store_open(const char *url, rf_store_t **out) {
  return rf_store_open_err(url, out, NULL, 0);
}

void rf_store_close(rf_store_t *s) {
  if (s)
    s->ops->close(s);
}

int rf_store_submit(rf_store_t *s, unsigned flags, rf_store_job_t *job) {
  if (!s || !job || !job->work || !job->done || flags > RF_STORE_WRITE)
    return RF_EINVAL;
  if (flags == RF_STORE_READ && s->ops->reads_inline) {
    job->next = NULL;
    job->rc = job->work(s, job->arg);
    job->done(job->arg, job->rc);
    return 0;
  }
  return s->exec ? rf__exec_submit(s->exec, job) : RF_ENOTSUP;
}

void rf_store_drain(rf_store_t *s) {
  if (s)
    rf__exec_drain(s->exec);
}

int rf_store_set_batch_limits(rf_store_t *s, unsigned max_jobs, unsigned max_ms) {
  return s ? rf__exec_set_batch_limits(s->exec, max_jobs, max_ms) : RF_EINVAL;
}

size_t rf_store_cancel(rf_store_t *s, int rc) {
  return s ? rf__exec_cancel(s->exec, rc) : 0;
}

void rf_store_exec_stats(const rf_store_t *s, uint64_t *batches, uint64_t *jobs) {
  rf__exec_stats(s ? s->exec : NULL, batches, jobs);
}

typedef struct {
  rf_store_job_t job;
  rf_store_work_fn work;
  void *arg;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int done, rc;
} run_t;

static int run_work(rf_store_t *s, void *arg) {
  run_t *r = arg;
  return r->work(s, r->arg);
}

static void run_done(void *arg, int rc) {
  run_t *r = arg;
  pthread_mutex_lock(&r->mu);
  r->rc = rc;
  r->done = 1;
  pthread_cond_signal(&r->cv);
  pthread_mutex_unlock(&r->mu);
}

int rf_store_run(rf_store_t *s, unsigned flags, rf_store_work_fn work, void *arg) {
  if (!work)
    return RF_EINVAL;
  run_t r = {.job = {.work = run_work, .done = run_done}, .work = work, .arg = arg};
  r.job.arg = &r;
  pthread_mutex_init(&r.mu, NULL);
  pthread_cond_init(&r.cv, NULL);
  int rc = rf_store_submit(s, flags, &r.job);
  if (rc == 0) {
    pthread_mutex_lock(&r.mu);
    while (!r.done)
      pthread_cond_wait(&r.cv, &r.mu);
    pthread_mutex_unlock(&r.mu);
    rc = r.rc;
  }
  pthread_cond_destroy(&r.cv);
  pthread_mutex_destroy(&r.mu);
  return rc;
}
