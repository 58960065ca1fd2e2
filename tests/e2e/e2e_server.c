/* e2e_server.c - start, watch and stop a real racefreed (see e2e_server.h). */
#include "e2e_server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#ifndef RF_RACEFREED
#error "RF_RACEFREED (path of the racefreed binary) must be defined by the build"
#endif

extern char **environ;

enum { START_TIMEOUT_MS = 15000, STOP_TIMEOUT_MS = 10000 };

/* Copy the server's stdout to the log until every writer has closed it. */
static void *drain_main(void *arg) {
  e2e_server_t *s = arg;
  char buf[4096];
  for (;;) {
    ssize_t n = read(s->out_fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (write(s->log_fd, buf, (size_t)n) < 0)
      break;
  }
  return NULL;
}

/* The environment without RACEFREE_* variables, so that only the command
 * line of the test decides how the server runs. */
static char **clean_env(void) {
  size_t n = 0;
  while (environ[n])
    n++;
  char **env = calloc(n + 1, sizeof *env);
  if (!env)
    return NULL;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (strncmp(environ[i], "RACEFREE_", 9) != 0)
      env[k++] = environ[i];
  return env;
}

/* Read stdout until the "listening on" line; returns the port or < 0. */
static int await_listening(e2e_server_t *s) {
  char line[4096];
  size_t len = 0;
  double deadline = e2e_now_ms() + START_TIMEOUT_MS;
  for (;;) {
    int left = (int)(deadline - e2e_now_ms());
    if (left <= 0)
      return -ETIMEDOUT;
    struct pollfd pf = {.fd = s->out_fd, .events = POLLIN};
    int pr = poll(&pf, 1, left);
    if (pr < 0 && errno == EINTR)
      continue;
    if (pr <= 0)
      return pr == 0 ? -ETIMEDOUT : -errno;
    char c;
    ssize_t n = read(s->out_fd, &c, 1); /* byte by byte: the rest is drained later */
    if (n <= 0)
      return -ECHILD; /* the server closed stdout: it exited */
    if (write(s->log_fd, &c, 1) < 0)
      return -EIO;
    if (c != '\n') {
      if (len < sizeof line - 1)
        line[len++] = c;
      continue;
    }
    line[len] = '\0';
    len = 0;
    const char *at = strstr(line, "listening on http://");
    if (!at)
      continue;
    const char *colon = strrchr(at + 20, ':');
    int port = colon ? atoi(colon + 1) : 0;
    if (port > 0 && port < 65536)
      return port;
  }
}

static int await_health(e2e_server_t *s) {
  double deadline = e2e_now_ms() + START_TIMEOUT_MS;
  while (e2e_now_ms() < deadline) {
    e2e_resp_t r;
    e2e_call(s->port, "GET", "/health", NULL, &r);
    int st = r.status;
    e2e_resp_free(&r);
    if (st == 200)
      return 0;
    if (!e2e_server_alive(s))
      return -ECHILD;
    usleep(5000);
  }
  return -ETIMEDOUT;
}

int e2e_server_start(e2e_server_t *s, const char *const *extra) {
  memset(s, 0, sizeof *s);
  s->pid = -1;
  s->out_fd = -1;
  s->log_fd = -1;
  snprintf(s->dir, sizeof s->dir, "/tmp/rf-e2e-XXXXXX");
  if (!mkdtemp(s->dir))
    return -errno;
  snprintf(s->db_path, sizeof s->db_path, "%s/db", s->dir);
  snprintf(s->log_path, sizeof s->log_path, "%s/server.log", s->dir);
  s->log_fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND, 0600);
  if (s->log_fd < 0)
    return -errno;

  char db_url[160];
  snprintf(db_url, sizeof db_url, "sqlite:%s", s->db_path);
  const char *argv[64];
  int argc = 0;
  argv[argc++] = RF_RACEFREED;
  argv[argc++] = "--bind";
  argv[argc++] = "127.0.0.1";
  argv[argc++] = "--port";
  argv[argc++] = "0";
  argv[argc++] = "--db";
  argv[argc++] = db_url;
  for (int i = 0; extra && extra[i] && argc < 63; i++)
    argv[argc++] = extra[i];
  argv[argc] = NULL;

  char **env = clean_env();
  int pipefd[2];
  if (!env || pipe2(pipefd, O_CLOEXEC) != 0) {
    free(env);
    return -errno;
  }
  double t0 = e2e_now_ms();
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) { /* child: only async-signal-safe calls until exec */
    /* A test that fails an assertion never reaches e2e_server_stop: the
     * server must still not outlive the test program. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
      _exit(127);
    setpgid(0, 0);
    dup2(pipefd[1], STDOUT_FILENO);
    dup2(s->log_fd, STDERR_FILENO);
    execve(RF_RACEFREED, (char *const *)argv, env);
    _exit(127);
  }
  free(env);
  close(pipefd[1]);
  if (pid < 0) {
    close(pipefd[0]);
    return -errno;
  }
  setpgid(pid, pid); /* also from here, so that it holds before we use it */
  s->pid = pid;
  s->out_fd = pipefd[0];

  int rc = await_listening(s);
  if (rc > 0) {
    s->port = rc;
    rc = 0;
  }
  if (rc == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, drain_main, s) == 0) {
      s->drain = (unsigned long)t;
      s->drain_started = 1;
    }
    rc = await_health(s);
  }
  s->start_ms = e2e_now_ms() - t0;
  if (rc != 0) {
    fprintf(stderr, "e2e: racefreed did not start (%s)\n", strerror(-rc));
    e2e_server_dump_log(s);
    e2e_server_stop(s);
  }
  return rc;
}

int e2e_server_alive(const e2e_server_t *s) {
  if (s->pid <= 0)
    return 0;
  siginfo_t info;
  memset(&info, 0, sizeof info);
  if (waitid(P_PID, (id_t)s->pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0)
    return 0;
  return info.si_pid == 0; /* nothing to report: still running */
}

void e2e_server_dump_log(const e2e_server_t *s) {
  FILE *f = fopen(s->log_path, "r");
  if (!f)
    return;
  fprintf(stderr, "----- racefreed log (%s) -----\n", s->log_path);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    fwrite(buf, 1, n, stderr);
  fprintf(stderr, "----- end of log -----\n");
  fclose(f);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb;
  (void)flag;
  (void)ftw;
  return remove(path);
}

int e2e_server_stop(e2e_server_t *s) {
  int result = -1;
  if (s->pid > 0) {
    kill(s->pid, SIGTERM);
    double deadline = e2e_now_ms() + STOP_TIMEOUT_MS;
    int st = 0;
    pid_t got = 0;
    while ((got = waitpid(s->pid, &st, WNOHANG)) == 0 && e2e_now_ms() < deadline)
      usleep(2000);
    if (got == s->pid)
      result = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    /* whatever is left of the child's process group (workers) */
    kill(-s->pid, SIGKILL);
    if (got == 0) {
      fprintf(stderr, "e2e: racefreed %d ignored SIGTERM for %d ms: killed\n", (int)s->pid,
              STOP_TIMEOUT_MS);
      waitpid(s->pid, &st, 0);
    }
    s->pid = -1;
  }
  if (s->drain_started)
    pthread_join((pthread_t)s->drain, NULL);
  s->drain_started = 0;
  if (s->out_fd >= 0)
    close(s->out_fd);
  if (s->log_fd >= 0)
    close(s->log_fd);
  s->out_fd = s->log_fd = -1;
  const char *keep = getenv("RF_E2E_KEEP");
  if (s->dir[0] && !(keep && strcmp(keep, "1") == 0))
    nftw(s->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
  else if (s->dir[0])
    fprintf(stderr, "e2e: kept %s\n", s->dir);
  s->dir[0] = '\0';
  return result;
}

/* ---------------------------------------------------------------- helpers */

json_t *e2e_json(const e2e_resp_t *r) {
  if (!r->body)
    return NULL;
  return json_loadb(r->body, r->body_len, 0, NULL);
}

const char *e2e_error_code(const e2e_resp_t *r, char *buf, size_t cap) {
  buf[0] = '\0';
  json_t *j = e2e_json(r);
  const char *code = NULL;
  if (j && json_unpack(j, "{s:{s:s}}", "error", "code", &code) == 0 && code)
    snprintf(buf, cap, "%s", code);
  json_decref(j);
  return buf;
}

int64_t e2e_json_int(const e2e_resp_t *r, const char *key) {
  json_t *j = e2e_json(r);
  json_t *v = j ? json_object_get(j, key) : NULL;
  int64_t out = json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
  json_decref(j);
  return out;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 1099511628211ULL;
  }
  return h;
}

uint64_t e2e_db_fingerprint(const char *path) {
  sqlite3 *db = NULL;
  uint64_t total = 0;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    sqlite3_close(db);
    return 0;
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt *tables = NULL;
  if (sqlite3_prepare_v2(db,
                         "SELECT name FROM sqlite_master WHERE type = 'table'"
                         " AND name NOT LIKE 'sqlite_%' ORDER BY name",
                         -1, &tables, NULL) != SQLITE_OK)
    goto out;
  total = 1469598103934665603ULL;
  while (sqlite3_step(tables) == SQLITE_ROW) {
    const char *name = (const char *)sqlite3_column_text(tables, 0);
    char sql[300];
    snprintf(sql, sizeof sql, "SELECT * FROM \"%s\"", name);
    sqlite3_stmt *rows = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &rows, NULL) != SQLITE_OK) {
      sqlite3_finalize(rows);
      continue;
    }
    uint64_t th = fnv(1469598103934665603ULL, name, strlen(name)), sum = 0, count = 0;
    while (sqlite3_step(rows) == SQLITE_ROW) {
      uint64_t rh = 1469598103934665603ULL;
      for (int c = 0; c < sqlite3_column_count(rows); c++) {
        const void *blob = sqlite3_column_blob(rows, c);
        int n = sqlite3_column_bytes(rows, c);
        rh = fnv(rh, &c, sizeof c);
        if (blob)
          rh = fnv(rh, blob, (size_t)n);
      }
      sum += rh; /* order-independent */
      count++;
    }
    sqlite3_finalize(rows);
    th = fnv(th, &sum, sizeof sum);
    th = fnv(th, &count, sizeof count);
    total = fnv(total, &th, sizeof th);
  }
out:
  sqlite3_finalize(tables);
  sqlite3_close(db);
  return total;
}

double e2e_metric_in(const e2e_resp_t *scrape, const char *series) {
  size_t n = strlen(series);
  for (const char *line = scrape->status == 200 ? scrape->body : NULL; line && *line;) {
    if (strncmp(line, series, n) == 0 && line[n] == ' ')
      return strtod(line + n + 1, NULL);
    const char *nl = strchr(line, '\n');
    line = nl ? nl + 1 : NULL;
  }
  return -1;
}

double e2e_metric(int port, const char *series) {
  e2e_resp_t r;
  e2e_call(port, "GET", "/metrics", NULL, &r);
  double v = e2e_metric_in(&r, series);
  e2e_resp_free(&r);
  return v;
}
