/* rf_pg.c - see rf_pg.h. */
#include "rf_pg.h"

#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "rf_test.h"

#ifndef RF_SOURCE_DIR
#error "RF_SOURCE_DIR (the repository root, for scripts/pg.sh) must be defined"
#endif

static pthread_mutex_t rf__pg_mu = PTHREAD_MUTEX_INITIALIZER;
static char rf__pg_base[256];   /* the server's URL, "" until known */
static char rf__pg_dir[64];     /* the private cluster's directory, "" if none */
static pid_t rf__pg_owner;      /* the process that started the cluster */
static pid_t rf__pg_watcher;    /* the watchdog process, 0 if none */
static unsigned rf__pg_schemas; /* schemas created so far (names) */

/* Run `pg.sh <action> <dir>`; the first output line goes to out (may be
 * NULL). Returns the exit status (-1 when it could not run). */
static int rf__pg_script(const char *action, char *out, size_t cap) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "bash '%s/scripts/pg.sh' %s '%s' 2>&1", RF_SOURCE_DIR, action,
           rf__pg_dir);
  FILE *p = popen(cmd, "r");
  if (p == NULL) {
    return -1;
  }
  char line[512];
  bool first = true;
  while (fgets(line, sizeof line, p) != NULL) {
    if (first && out != NULL && cap > 0) {
      size_t n = strcspn(line, "\r\n");
      n = n < cap ? n : cap - 1;
      memcpy(out, line, n);
      out[n] = '\0';
    }
    if (strncmp(line, "postgres", 8) != 0) {
      fprintf(stderr, "pg.sh %s: %s", action, line);
    }
    first = false;
  }
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void rf__pg_quiet(void *arg, const char *msg) {
  (void)arg;
  (void)msg;
}

static void rf__pg_drop_schemas(void);

static void rf__pg_atexit(void) {
  if (getpid() != rf__pg_owner) {
    return; /* a forked child exiting: the cluster is not its to stop */
  }
  if (rf__pg_dir[0] == '\0') {
    rf__pg_drop_schemas(); /* someone else's server: leave it as we found it */
    return;
  }
  if (rf__pg_watcher > 0 && kill(rf__pg_watcher, 0) == 0) {
    /* The watchdog stops and removes the cluster as soon as this process
     * is gone (its pipe closes): the seconds a fast shutdown takes on a
     * loaded machine are then not the test's. */
    return;
  }
  rf__pg_script("stop", NULL, 0);
  char cmd[160];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", rf__pg_dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "rf_pg: could not remove %s\n", rf__pg_dir);
  }
  rf__pg_dir[0] = '\0';
}

/* The watchdog: a process of its own (new session, so it outlives a test
 * killed by a timeout) blocked reading a pipe whose only writer is this
 * program (close-on-exec, so servers and scripts started later do not hold
 * it; forked test children do, and are waited for). EOF means the program
 * ended, however: then the cluster is stopped and removed. */
static void rf__pg_watchdog(void) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return;
  }
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    dup2(fds[0], 0);
    int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, 1);
      dup2(devnull, 2);
    }
    char script[512];
    snprintf(script, sizeof script,
             "cat >/dev/null; bash '%s/scripts/pg.sh' stop '%s'; rm -rf '%s'", RF_SOURCE_DIR,
             rf__pg_dir, rf__pg_dir);
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    _exit(127);
  }
  rf__pg_watcher = pid > 0 ? pid : 0;
  close(fds[0]); /* keep the write end open (and unused) until exit */
}

/* Start the private cluster; 0, or -1 with a message in why. */
static int rf__pg_start_private(char *why, size_t cap) {
  snprintf(rf__pg_dir, sizeof rf__pg_dir, "/tmp/rfpg-XXXXXX");
  if (mkdtemp(rf__pg_dir) == NULL) {
    rf__pg_dir[0] = '\0';
    snprintf(why, cap, "mkdtemp failed");
    return -1;
  }
  char url[256] = "";
  int rc = rf__pg_script("start", url, sizeof url);
  if (rc != 0 || strncmp(url, "postgres://", 11) != 0) {
    snprintf(why, cap, "scripts/pg.sh start failed (status %d: %s)", rc, url);
    return -1;
  }
  rf__pg_watchdog();
  snprintf(rf__pg_base, sizeof rf__pg_base, "%s", url);
  return 0;
}

const char *rf_test_pg_url(void) {
  char why[400] = "";
  pthread_mutex_lock(&rf__pg_mu);
  if (rf__pg_base[0] == '\0' && rf__pg_owner == 0) {
    rf__pg_owner = getpid();
    atexit(rf__pg_atexit);
    const char *env = getenv("RF_TEST_PG_URL");
    if (env != NULL && env[0] != '\0') {
      snprintf(rf__pg_base, sizeof rf__pg_base, "%s", env);
    } else {
      (void)rf__pg_start_private(why, sizeof why);
    }
  }
  bool ok = rf__pg_base[0] != '\0';
  pthread_mutex_unlock(&rf__pg_mu);
  if (!ok) {
    fail_msg("rf_pg: no PostgreSQL for this test: %s; install postgresql (scripts/deps.sh) or"
             " set RF_TEST_PG_URL",
             why[0] != '\0' ? why : "the private cluster failed to start earlier");
  }
  return rf__pg_base;
}

static void rf__pg_drop_schemas(void) {
  if (rf__pg_schemas == 0 || rf__pg_base[0] == '\0') {
    return;
  }
  PGconn *c = PQconnectdb(rf__pg_base);
  if (PQstatus(c) == CONNECTION_OK) {
    PQsetNoticeProcessor(c, rf__pg_quiet, NULL);
    for (unsigned i = 1; i <= rf__pg_schemas; i++) {
      char sql[96];
      snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS rft_%ld_%u CASCADE", (long)getpid(), i);
      PQclear(PQexec(c, sql));
    }
  }
  PQfinish(c);
}

bool rf_test_pg_private(void) {
  rf_test_pg_url();
  return rf__pg_dir[0] != '\0';
}

int rf_test_pg_stop(void) {
  if (!rf_test_pg_private()) {
    return -1;
  }
  return rf__pg_script("stop", NULL, 0);
}

int rf_test_pg_start(void) {
  if (!rf_test_pg_private()) {
    return -1;
  }
  char url[256] = "";
  int rc = rf__pg_script("start", url, sizeof url);
  return rc == 0 && strcmp(url, rf__pg_base) == 0 ? 0 : -1;
}

/* The URL without the store's and queue's own parameters (libpq would
 * refuse them). */
static void rf__pg_libpq_url(const char *url, char *out, size_t cap) {
  const char *q = strchr(url, '?');
  size_t base = q != NULL ? (size_t)(q - url) : strlen(url);
  snprintf(out, cap, "%.*s", (int)base, url);
  bool first = true;
  for (const char *p = q != NULL ? q + 1 : NULL; p != NULL && *p != '\0';) {
    const char *amp = strchr(p, '&');
    size_t n = amp != NULL ? (size_t)(amp - p) : strlen(p);
    if (strncmp(p, "pool=", 5) != 0 && strncmp(p, "timeout_ms=", 11) != 0 && n > 0) {
      size_t o = strlen(out);
      snprintf(out + o, cap - o, "%c%.*s", first ? '?' : '&', (int)n, p);
      first = false;
    }
    p = amp != NULL ? amp + 1 : NULL;
  }
}

PGconn *rf_test_pg_connect(const char *url) {
  char conninfo[512];
  rf__pg_libpq_url(url, conninfo, sizeof conninfo);
  PGconn *c = PQconnectdb(conninfo);
  if (PQstatus(c) != CONNECTION_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", PQerrorMessage(c));
    PQfinish(c);
    fail_msg("rf_pg: cannot connect: %s", msg);
  }
  PQsetNoticeProcessor(c, rf__pg_quiet, NULL);
  return c;
}

static PGresult *rf__pg_run(const char *url, const char *sql) {
  PGconn *c = rf_test_pg_connect(url);
  PGresult *r = PQexec(c, sql);
  PQfinish(c);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", PQresultErrorMessage(r));
    PQclear(r);
    fail_msg("rf_pg: %s: %s", sql, msg);
  }
  return r;
}

void rf_test_pg_exec(const char *url, const char *sql) {
  PQclear(rf__pg_run(url, sql));
}

int64_t rf_test_pg_int(const char *url, const char *sql) {
  PGresult *r = rf__pg_run(url, sql);
  assert_true(PQntuples(r) >= 1 && PQnfields(r) >= 1);
  int64_t v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}

/* Append s to out[cap] percent-encoded as a URI query value. */
static void rf__pg_encode(char *out, size_t cap, const char *s) {
  size_t o = strlen(out);
  for (; *s != '\0' && o + 4 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
        ch == '-' || ch == '_' || ch == '.') {
      out[o++] = (char)ch;
    } else {
      o += (size_t)snprintf(out + o, cap - o, "%%%02X", ch);
    }
  }
  out[o] = '\0';
}

void rf_test_pg_schema_url(char *out, size_t cap, const char *extra, const char *pgopts,
                           char *schema) {
  const char *base = rf_test_pg_url();
  char name[64];
  pthread_mutex_lock(&rf__pg_mu);
  unsigned n = ++rf__pg_schemas;
  pthread_mutex_unlock(&rf__pg_mu);
  snprintf(name, sizeof name, "rft_%ld_%u", (long)getpid(), n);
  char sql[200];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s", name, name);
  rf_test_pg_exec(base, sql);
  char opts[256];
  snprintf(opts, sizeof opts, "-csearch_path=%s%s%s", name, pgopts != NULL ? " " : "",
           pgopts != NULL ? pgopts : "");
  char url[1024];
  snprintf(url, sizeof url, "%s%coptions=", base, strchr(base, '?') != NULL ? '&' : '?');
  rf__pg_encode(url, sizeof url, opts);
  int len = snprintf(out, cap, "%s%s%s", url, extra != NULL ? "&" : "", extra != NULL ? extra : "");
  assert_true(len > 0 && (size_t)len < cap);
  if (schema != NULL) {
    snprintf(schema, 64, "%s", name);
  }
}

void rf_test_pg_drop(const char *url) {
  const char *p = strstr(url, "search_path%3D");
  assert_non_null(p);
  p += strlen("search_path%3D");
  size_t n = strspn(p, "abcdefghijklmnopqrstuvwxyz0123456789_");
  char sql[128];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %.*s CASCADE", (int)n, p);
  rf_test_pg_exec(rf_test_pg_url(), sql);
}
