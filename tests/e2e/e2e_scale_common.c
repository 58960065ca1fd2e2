/* e2e_scale_common.c - see e2e_scale_common.h. */
#include "e2e_scale_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rf_pg.h"

#ifndef RF_SOURCE_DIR
#error "RF_SOURCE_DIR (the repository root, for scripts/redis.sh) must be defined"
#endif

static int redis_sh(const char *action, const char *dir, char *out, size_t cap) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "bash '%s/scripts/redis.sh' %s '%s' 2>&1", RF_SOURCE_DIR, action, dir);
  FILE *p = popen(cmd, "r");
  if (p == NULL)
    return -errno;
  char line[256] = "";
  if (fgets(line, sizeof line, p) == NULL)
    line[0] = '\0';
  char rest[256];
  while (fgets(rest, sizeof rest, p) != NULL)
    fputs(rest, stderr);
  int st = pclose(p);
  line[strcspn(line, "\r\n")] = '\0';
  if (st != 0) {
    fprintf(stderr, "redis.sh %s: %s\n", action, line);
    return -EIO;
  }
  if (out != NULL)
    snprintf(out, cap, "%s", line);
  return 0;
}

int e2e_scale_redis_stop(e2e_scale_t *sc) {
  return redis_sh("stop", sc->redis_dir, NULL, 0);
}

int e2e_scale_redis_start(e2e_scale_t *sc) {
  return redis_sh("start", sc->redis_dir, sc->redis_url, sizeof sc->redis_url);
}

int e2e_scale_start(e2e_scale_t *sc, int i, const char *const *extra) {
  const char *argv[48];
  int n = 0;
  for (; extra != NULL && extra[n] != NULL && n < 40; n++)
    argv[n] = extra[n];
  argv[n++] = "--db";
  argv[n++] = sc->pg_url;
  argv[n++] = "--redis";
  argv[n++] = sc->redis_url;
  argv[n] = NULL;
  return e2e_server_start(&sc->srv[i], argv);
}

int e2e_scale_open(e2e_scale_t *sc, const char *const *extra) {
  memset(sc, 0, sizeof *sc);
  snprintf(sc->pg_url, sizeof sc->pg_url, "%s", rf_test_pg_url());
  snprintf(sc->redis_dir, sizeof sc->redis_dir, "/tmp/rf-scale-redis-XXXXXX");
  if (mkdtemp(sc->redis_dir) == NULL) {
    sc->redis_dir[0] = '\0';
    return -errno;
  }
  int rc = e2e_scale_redis_start(sc);
  for (int i = 0; rc == 0 && i < E2E_SCALE_N; i++) {
    rc = e2e_scale_start(sc, i, extra);
    if (rc == 0)
      sc->up++;
  }
  if (rc != 0)
    (void)e2e_scale_close(sc);
  return rc;
}

int e2e_scale_close(e2e_scale_t *sc) {
  int unclean = 0;
  for (int i = 0; i < sc->up; i++) {
    if (sc->srv[i].pid <= 0)
      continue;
    e2e_server_t *s = &sc->srv[i];
    int st = e2e_server_stop(s);
    if (st != 0) {
      fprintf(stderr, "instance %d exited with status %d\n", i, st);
      unclean++;
    }
  }
  sc->up = 0;
  if (sc->redis_dir[0] != '\0') {
    e2e_scale_redis_stop(sc);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sc->redis_dir);
    if (system(cmd) != 0)
      fprintf(stderr, "cannot remove %s\n", sc->redis_dir);
    sc->redis_dir[0] = '\0';
  }
  return unclean;
}

const char *e2e_scale_tag(char *buf, size_t cap) {
  static int seq;
  snprintf(buf, cap, "t%ldx%d", (long)getpid(), ++seq);
  return buf;
}

void e2e_scale_ports(const e2e_scale_t *sc, int ports[E2E_SCALE_N]) {
  for (int i = 0; i < E2E_SCALE_N; i++)
    ports[i] = sc->srv[i].port;
}

int e2e_burst_ports(const int *ports, int nports, int n, const e2e_req_t *reqs, e2e_resp_t *out,
                    int timeout_ms) {
  e2e_conn_t *c = calloc((size_t)n, sizeof *c);
  char **text = calloc((size_t)n, sizeof *text);
  size_t *len = calloc((size_t)n, sizeof *len);
  int rc = c && text && len ? 0 : -ENOMEM;
  memset(out, 0, sizeof *out * (size_t)n);
  int opened = 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    text[i] = e2e_format(reqs[i].method, reqs[i].path, reqs[i].body, reqs[i].headers, &len[i]);
    if (text[i] == NULL)
      rc = -ENOMEM;
    else if ((rc = e2e_conn_open(&c[i], ports[i % nports])) == 0)
      opened++;
  }
  for (int i = 0; rc == 0 && i < n; i++) /* back to back: released together */
    if (e2e_conn_send(&c[i], text[i], len[i]) != 0)
      out[i].err = -EPIPE;
  for (int i = 0; rc == 0 && i < n; i++)
    if (out[i].err == 0)
      e2e_conn_read(&c[i], &out[i], timeout_ms);
  for (int i = 0; i < opened; i++)
    e2e_conn_close(&c[i]);
  for (int i = 0; text != NULL && i < n; i++)
    free(text[i]);
  free(text);
  free(len);
  free(c);
  return rc;
}
