/* rf_redis_fixture.h - a private Redis for a test program.
 *
 * rf_redis_fx_start() runs scripts/redis.sh start in a fresh mkdtemp
 * directory (the repository is found from this file's own path, which CMake
 * passes to the compiler as an absolute path) and keeps its URL; stop and
 * restart act on that one server (by the PID the script recorded, never by
 * name); rf_redis_fx_teardown() stops it and removes the directory. When
 * RF_TEST_REDIS_URL is set, that Redis is used instead and nothing is
 * started or stopped (the cases that must stop and restart the server are
 * then skipped: rf_redis_fx_can_restart() is false).
 *
 * A missing redis-server is a loud failure, not a skip: the tests must run
 * in CI, which installs it through scripts/deps.sh.
 */
#ifndef RF_REDIS_FIXTURE_H
#define RF_REDIS_FIXTURE_H

#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

typedef struct {
  char dir[64];
  char url[128];
  char script[PATH_MAX];
  char host[64];
  int port;
  bool external;
  bool running;
} rf_redis_fx;

/* Run `scripts/redis.sh <action> <dir>`; the first line of its standard
 * output goes to out (may be NULL). 0 when the script succeeded. */
static inline int rf_redis_fx_script(rf_redis_fx *fx, const char *action, char *out,
                                     size_t outlen) {
  char cmd[PATH_MAX + 160];
  char line[256] = "";
  snprintf(cmd, sizeof(cmd), "'%s' %s '%s'", fx->script, action, fx->dir);
  FILE *p = popen(cmd, "r");
  if (p == NULL) {
    return -1;
  }
  if (fgets(line, sizeof(line), p) == NULL) {
    line[0] = '\0';
  }
  char rest[256];
  while (fgets(rest, sizeof(rest), p) != NULL) {
  }
  int st = pclose(p);
  line[strcspn(line, "\r\n")] = '\0';
  if (out != NULL) {
    snprintf(out, outlen, "%s", line);
  }
  return st == 0 ? 0 : -1;
}

static inline int rf_redis_fx_parse(rf_redis_fx *fx) {
  const char *p = strstr(fx->url, "://");
  if (p == NULL) {
    return -1;
  }
  p += 3;
  const char *colon = strrchr(p, ':');
  if (colon == NULL || (size_t)(colon - p) >= sizeof(fx->host)) {
    return -1;
  }
  memcpy(fx->host, p, (size_t)(colon - p));
  fx->host[colon - p] = '\0';
  fx->port = atoi(colon + 1);
  return fx->port > 0 ? 0 : -1;
}

/* Start (or adopt RF_TEST_REDIS_URL). Prints the reason and returns -1 on
 * failure. */
static inline int rf_redis_fx_start(rf_redis_fx *fx) {
  memset(fx, 0, sizeof(*fx));
  const char *env = getenv("RF_TEST_REDIS_URL");
  if (env != NULL && env[0] != '\0') {
    snprintf(fx->url, sizeof(fx->url), "%s", env);
    fx->external = true;
    fx->running = true;
    return rf_redis_fx_parse(fx);
  }
  const char *self = __FILE__;
  const char *tail = strrchr(self, '/');
  if (tail == NULL || self[0] != '/') {
    fprintf(stderr, "rf_redis_fixture: cannot locate the repository from %s\n", self);
    return -1;
  }
  /* this header is <repo>/tests/unit/rf_redis_fixture.h */
  snprintf(fx->script, sizeof(fx->script), "%.*s/../../scripts/redis.sh", (int)(tail - self), self);
  if (access(fx->script, X_OK) != 0) {
    fprintf(stderr, "rf_redis_fixture: %s is missing or not executable\n", fx->script);
    return -1;
  }
  snprintf(fx->dir, sizeof(fx->dir), "/tmp/rf-redis-XXXXXX");
  if (mkdtemp(fx->dir) == NULL) {
    perror("rf_redis_fixture: mkdtemp");
    return -1;
  }
  if (rf_redis_fx_script(fx, "start", fx->url, sizeof(fx->url)) != 0 ||
      strncmp(fx->url, "redis://", 8) != 0) {
    fprintf(stderr, "rf_redis_fixture: scripts/redis.sh start failed (is redis-server installed? "
                    "run scripts/deps.sh)\n");
    return -1;
  }
  fx->running = true;
  return rf_redis_fx_parse(fx);
}

static inline bool rf_redis_fx_can_restart(const rf_redis_fx *fx) {
  return !fx->external;
}

/* Stop the server (it can be started again on the same port). */
static inline int rf_redis_fx_stop(rf_redis_fx *fx) {
  if (fx->external || !fx->running) {
    return fx->external ? -1 : 0;
  }
  fx->running = false;
  return rf_redis_fx_script(fx, "stop", NULL, 0);
}

/* Start it again after rf_redis_fx_stop: same directory, same port. */
static inline int rf_redis_fx_restart(rf_redis_fx *fx) {
  char url[128];
  if (fx->external) {
    return -1;
  }
  if (rf_redis_fx_script(fx, "start", url, sizeof(url)) != 0 || strcmp(url, fx->url) != 0) {
    return -1;
  }
  fx->running = true;
  return 0;
}

/* The server's PID (from DIR/redis.pid), or -1. */
static inline pid_t rf_redis_fx_pid(const rf_redis_fx *fx) {
  char path[96];
  long pid = -1;
  if (fx->external) {
    return -1;
  }
  snprintf(path, sizeof(path), "%s/redis.pid", fx->dir);
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    return -1;
  }
  if (fscanf(f, "%ld", &pid) != 1) {
    pid = -1;
  }
  fclose(f);
  return (pid_t)pid;
}

static inline void rf_redis_fx_teardown(rf_redis_fx *fx) {
  if (fx->external || fx->dir[0] == '\0') {
    return;
  }
  (void)rf_redis_fx_stop(fx);
  char cmd[128];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
  if (system(cmd) != 0) {
    fprintf(stderr, "rf_redis_fixture: could not remove %s\n", fx->dir);
  }
  fx->dir[0] = '\0';
}

#endif /* RF_REDIS_FIXTURE_H */
