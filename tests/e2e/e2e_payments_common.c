/* e2e_payments_common.c - see e2e_payments_common.h. */
#include "e2e_payments_common.h"

#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int e2e_count_status(const e2e_resp_t *r, int n, int status) {
  int c = 0;
  for (int i = 0; i < n; i++)
    c += r[i].status == status;
  return c;
}

void e2e_print_statuses(const char *what, const e2e_resp_t *r, int n) {
  int seen[600] = {0};
  for (int i = 0; i < n; i++)
    if (r[i].status >= 0 && r[i].status < 600)
      seen[r[i].status]++;
  fprintf(stderr, "  %s:", what);
  for (int s = 0; s < 600; s++)
    if (seen[s])
      fprintf(stderr, " %dx%d", seen[s], s);
  fprintf(stderr, "\n");
}

void e2e_burst_free(e2e_resp_t *r, int n) {
  for (int i = 0; i < n; i++)
    e2e_resp_free(&r[i]);
}

int e2e_data_dir_make(e2e_data_dir_t *d) {
  snprintf(d->dir, sizeof d->dir, "/tmp/rf-e2e-data-XXXXXX");
  if (!mkdtemp(d->dir))
    return -1;
  snprintf(d->db_arg, sizeof d->db_arg, "sqlite:%s/db", d->dir);
  return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

void e2e_data_dir_remove(e2e_data_dir_t *d) {
  const char *keep = getenv("RF_E2E_KEEP");
  if (d->dir[0] && !(keep && strcmp(keep, "1") == 0))
    nftw(d->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  d->dir[0] = '\0';
}

int e2e_start_on(e2e_server_t *s, const e2e_data_dir_t *d, const char *const *extra) {
  const char *args[64];
  int n = 0;
  for (int i = 0; extra && extra[i] && n < 60; i++)
    args[n++] = extra[i];
  args[n++] = "--db";
  args[n++] = d->db_arg;
  args[n] = NULL;
  return e2e_server_start(s, args);
}

void e2e_kill9(e2e_server_t *s) {
  if (s->pid > 0) {
    kill(-s->pid, SIGKILL);
    kill(s->pid, SIGKILL);
    int st;
    waitpid(s->pid, &st, 0);
    s->pid = -1; /* reaped: e2e_server_stop only cleans up now */
  }
  e2e_server_stop(s);
}

int64_t e2e_get_int(int port, const char *path, const char *key) {
  e2e_resp_t r;
  e2e_call(port, "GET", path, NULL, &r);
  int64_t v = r.status == 200 ? e2e_json_int(&r, key) : INT64_MIN;
  e2e_resp_free(&r);
  return v;
}

const char *e2e_get_str(int port, const char *path, const char *key, char *buf, size_t cap) {
  buf[0] = '\0';
  e2e_resp_t r;
  e2e_call(port, "GET", path, NULL, &r);
  json_t *j = r.status == 200 ? e2e_json(&r) : NULL;
  const char *v = j ? json_string_value(json_object_get(j, key)) : NULL;
  if (v)
    snprintf(buf, cap, "%s", v);
  json_decref(j);
  e2e_resp_free(&r);
  return buf;
}
