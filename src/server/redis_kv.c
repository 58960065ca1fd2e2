/* redis_kv.c - see redis_kv.h. */
#include "redis_kv.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "racefree/errors.h"

#define KV_POOL         4
#define KV_RECONNECT_MS 500

struct srv_kv {
  char host[256];
  char password[256]; /* "" = no AUTH */
  int port;
  unsigned db;
  struct timeval tv;
  pthread_mutex_t mu;
  redisContext *idle[KV_POOL]; /* guarded by mu */
  unsigned nidle;              /* guarded by mu */
  uint64_t down_until_ms;      /* guarded by mu: fail fast until then */
};

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int parse_url(srv_kv_t *kv, const char *url) {
  if (strncmp(url, "redis://", 8) != 0)
    return RF_EINVAL;
  const char *p = url + 8;
  const char *end = p + strcspn(p, "/");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at != NULL) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    size_t n = colon ? (size_t)(at - colon - 1) : 0;
    if (colon == NULL || n >= sizeof kv->password)
      return RF_EINVAL;
    memcpy(kv->password, colon + 1, n);
    kv->password[n] = '\0';
    p = at + 1;
  }
  const char *colon = memchr(p, ':', (size_t)(end - p));
  const char *host_end = colon ? colon : end;
  size_t hn = (size_t)(host_end - p);
  if (hn == 0 || hn >= sizeof kv->host)
    return RF_EINVAL;
  memcpy(kv->host, p, hn);
  kv->host[hn] = '\0';
  kv->port = 6379;
  if (colon != NULL) {
    char *num_end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &num_end, 10);
    if (errno != 0 || num_end != end || port == 0 || port > 65535)
      return RF_EINVAL;
    kv->port = (int)port;
  }
  if (*end == '/' && end[1] != '\0') {
    char *num_end;
    errno = 0;
    unsigned long db = strtoul(end + 1, &num_end, 10);
    if (errno != 0 || *num_end != '\0' || db > 1000000)
      return RF_EINVAL;
    kv->db = (unsigned)db;
  }
  return 0;
}

int srv_kv_open(srv_kv_t **out, const char *url, unsigned timeout_ms) {
  if (out == NULL || url == NULL || timeout_ms == 0 || timeout_ms > 60000)
    return RF_EINVAL;
  srv_kv_t *kv = calloc(1, sizeof *kv);
  if (kv == NULL)
    return RF_ENOMEM;
  int rc = parse_url(kv, url);
  if (rc != 0) {
    free(kv);
    return rc;
  }
  kv->tv.tv_sec = timeout_ms / 1000;
  kv->tv.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
  pthread_mutex_init(&kv->mu, NULL);
  *out = kv;
  return 0;
}

void srv_kv_close(srv_kv_t *kv) {
  if (kv == NULL)
    return;
  for (unsigned i = 0; i < kv->nidle; i++)
    redisFree(kv->idle[i]);
  pthread_mutex_destroy(&kv->mu);
  free(kv);
}

/* One command with SIGPIPE blocked in this thread (a peer that closed the
 * socket must not kill the process). NULL when the connection failed. */
static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens) {
  sigset_t pipe_set, old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  redisReply *rep = redisCommandArgv(c, argc, argv, lens);
  struct timespec zero = {0, 0};
  while (sigtimedwait(&pipe_set, NULL, &zero) > 0) { /* drop a SIGPIPE we caused */
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rep;
}

static bool ok_reply(redisReply *rep) {
  return rep != NULL && rep->type != REDIS_REPLY_ERROR;
}

static redisContext *connect_new(srv_kv_t *kv) {
  redisContext *c = redisConnectWithTimeout(kv->host, kv->port, kv->tv);
  if (c == NULL || c->err != 0 || redisSetTimeout(c, kv->tv) != REDIS_OK)
    goto fail;
  if (kv->password[0] != '\0') {
    const char *argv[] = {"AUTH", kv->password};
    redisReply *rep = command(c, 2, argv, NULL);
    bool ok = ok_reply(rep);
    freeReplyObject(rep);
    if (!ok)
      goto fail;
  }
  if (kv->db != 0) {
    char db[16];
    snprintf(db, sizeof db, "%u", kv->db);
    const char *argv[] = {"SELECT", db};
    redisReply *rep = command(c, 2, argv, NULL);
    bool ok = ok_reply(rep);
    freeReplyObject(rep);
    if (!ok)
      goto fail;
  }
  return c;
fail:
  if (c != NULL)
    redisFree(c);
  return NULL;
}

/* An idle connection or a new one; NULL (RF_EUNAVAIL) while Redis is down. */
static redisContext *take(srv_kv_t *kv) {
  pthread_mutex_lock(&kv->mu);
  redisContext *c = kv->nidle > 0 ? kv->idle[--kv->nidle] : NULL;
  bool down = c == NULL && now_ms() < kv->down_until_ms;
  pthread_mutex_unlock(&kv->mu);
  if (c != NULL || down)
    return c;
  c = connect_new(kv);
  if (c == NULL) {
    pthread_mutex_lock(&kv->mu);
    kv->down_until_ms = now_ms() + KV_RECONNECT_MS;
    pthread_mutex_unlock(&kv->mu);
  }
  return c;
}

/* Give c back, or drop it when it failed (c->err) or the pool is full. */
static void give(srv_kv_t *kv, redisContext *c) {
  pthread_mutex_lock(&kv->mu);
  if (c->err == 0 && kv->nidle < KV_POOL) {
    kv->idle[kv->nidle++] = c;
    c = NULL;
  }
  pthread_mutex_unlock(&kv->mu);
  if (c != NULL)
    redisFree(c);
}

static int run(srv_kv_t *kv, int argc, const char **argv, const size_t *lens, redisReply **out) {
  redisContext *c = take(kv);
  if (c == NULL)
    return RF_EUNAVAIL;
  redisReply *rep = command(c, argc, argv, lens);
  give(kv, c);
  if (!ok_reply(rep)) {
    freeReplyObject(rep);
    return RF_EUNAVAIL;
  }
  *out = rep;
  return 0;
}

int srv_kv_get(srv_kv_t *kv, const char *key, char **value, size_t *len) {
  if (kv == NULL || key == NULL || value == NULL)
    return RF_EINVAL;
  const char *argv[] = {"GET", key};
  redisReply *rep = NULL;
  int rc = run(kv, 2, argv, NULL, &rep);
  if (rc != 0)
    return rc;
  if (rep->type == REDIS_REPLY_NIL) {
    rc = RF_ENOENT;
  } else if (rep->type != REDIS_REPLY_STRING) {
    rc = RF_EUNAVAIL;
  } else if ((*value = malloc(rep->len + 1)) == NULL) {
    rc = RF_ENOMEM;
  } else {
    memcpy(*value, rep->str, rep->len);
    (*value)[rep->len] = '\0';
    if (len != NULL)
      *len = rep->len;
  }
  freeReplyObject(rep);
  return rc;
}

int srv_kv_set_px(srv_kv_t *kv, const char *key, const char *value, size_t len, uint64_t ttl_ms) {
  if (kv == NULL || key == NULL || value == NULL || ttl_ms == 0)
    return RF_EINVAL;
  char ttl[24];
  snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
  const char *argv[] = {"SET", key, value, "PX", ttl};
  size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
  redisReply *rep = NULL;
  int rc = run(kv, 5, argv, lens, &rep);
  freeReplyObject(rep);
  return rc;
}

int srv_kv_del(srv_kv_t *kv, const char *key) {
  if (kv == NULL || key == NULL)
    return RF_EINVAL;
  const char *argv[] = {"DEL", key};
  redisReply *rep = NULL;
  int rc = run(kv, 2, argv, NULL, &rep);
  freeReplyObject(rep);
  return rc;
}
