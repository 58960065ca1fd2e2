/* store.c - rf_store_open: pick the backend from the URL scheme. */
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
    job->flags = flags;
    job->next = NULL;
    job->rc = job->work(s, job->arg);
    job->done(job->arg, job->rc);
    return 0;
  }
  return s->exec ? rf__exec_submit(s->exec, flags, job) : RF_ENOTSUP;
}

void rf_store_drain(rf_store_t *s) {
  if (s)
    rf__exec_drain(s->exec);
}

void rf_store_exec_stats(const rf_store_t *s, uint64_t *batches, uint64_t *jobs) {
  rf__exec_stats(s ? s->exec : NULL, batches, jobs);
}
