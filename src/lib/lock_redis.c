/* lock_redis.c - the Redis lock backend (hiredis).
 *
 * Protocol. A lock `k` is the string key "<prefix>:lock:{k}" whose value is
 * the holder's random owner value, with a TTL (PX). Its fencing counter is
 * "<prefix>:fence:{k}", an integer without TTL. Three Lua scripts do the
 * work, each one round trip, each atomic in Redis (a script runs alone):
 *
 *   acquire  SET lock owner NX PX ttl; if set, INCR fence and return it; if
 *            the lock is already ours (a retried request whose reply was
 *            lost), refresh the TTL and return the current counter; else 0.
 *   release  if GET lock == owner then DEL (compare-and-delete).
 *   extend   if GET lock == owner then PEXPIRE ttl (compare-and-pexpire).
 *
 * The token is taken in the same script as the SET NX: if they were two
 * commands, a holder could be granted the lock, pause, lose it by expiry and
 * then fetch a token newer than the next holder's. In one script the token
 * order is the grant order.
 *
 * Tokens across a Redis restart. A Redis without persistence (or a failover
 * to a replica that missed the last writes) comes back without the counter;
 * counting again from 1 would hand out tokens smaller than those the
 * resources have already seen, and every holder would be fenced off as
 * stale. So a counter that INCR creates (it returns 1) is first set to the
 * server's clock in microseconds (TIME). Every earlier token was lower than
 * that, as long as the counter grew by less than one per microsecond on
 * average - each increment needs a whole grant-and-release cycle of
 * scripts, so it does - and the server's wall clock did not step back
 * across the restart. Tokens are therefore large (about 1.7e15 today) and
 * still exact in a Lua number (< 2^53).
 *
 * Scripts are called with EVALSHA (the body is sent once per connection by
 * SCRIPT LOAD, pipelined); a NOSCRIPT error (the script cache was flushed,
 * or the server restarted) falls back to EVAL, which also loads the script
 * again.
 *
 * Connections. A small pool (pool_size hiredis contexts) under one mutex:
 * a thread takes a free context for one command and gives it back; if none
 * is free it waits on the condvar (every holder gives it back within the
 * command timeout). Contexts connect lazily, with a connect timeout, and get
 * a send/receive timeout (redisSetTimeout), so no call blocks longer than
 * connect + command timeouts. Any I/O error or timeout drops the context
 * (a late reply must never be read as the answer to the next command); the
 * next use reconnects. A command that meets a connection closed by the
 * server (EOF or reset on a context that was used before: Redis restarted,
 * idle timeout) is sent once more on a fresh connection; every script is
 * safe to repeat (acquire is idempotent per owner, extend sets the same
 * TTL; a release that is repeated after a lost reply may find the key gone
 * - deleted by the lost attempt - and is then reported as done). After a
 * failed connect, calls fail fast with RF_EUNAVAIL for reconnect_interval_ms
 * so a dead Redis is not hammered; errors are RF_EUNAVAIL: the lock fails
 * closed.
 *
 * hiredis 0.14 writes with write(2), so a write to a connection the server
 * has closed raises SIGPIPE, whose default action kills the process. A
 * library must not change the process's signal dispositions, so each
 * command runs with SIGPIPE blocked in the calling thread, and a SIGPIPE the
 * command raised is consumed (sigtimedwait) before the mask is restored.
 */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "internal.h"
#include "racefree/lock.h"

#define RF__REDIS_PREFIX_MAX   64
#define RF__REDIS_HOST_MAX     255
#define RF__REDIS_POOL_MAX     1024
#define RF__REDIS_TIMEOUT_MAX  600000u
#define RF__REDIS_KEYBUF       (RF__REDIS_PREFIX_MAX + RF_LOCK_KEY_MAX + 16)
#define RF__REDIS_SHA_LEN      40
#define RF__REDIS_DEF_POOL     4
#define RF__REDIS_DEF_CONNECT  500
#define RF__REDIS_DEF_COMMAND  1000
#define RF__REDIS_DEF_RECONECT 100

enum { RF__S_ACQUIRE, RF__S_RELEASE, RF__S_EXTEND, RF__S_COUNT };

/* KEYS[1] lock, KEYS[2] fence counter; ARGV[1] owner, ARGV[2] ttl ms. */
static const char rf__script_acquire[] =
    "if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  local t = redis.call('INCR', KEYS[2])\n"
    "  if t == 1 then\n"
    "    local now = redis.call('TIME')\n"
    "    redis.call('SET', KEYS[2], now[1] .. string.format('%06d', now[2]))\n"
    "    t = redis.call('INCR', KEYS[2])\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "  return tonumber(redis.call('GET', KEYS[2]))\n"
    "end\n"
    "return 0\n";

/* KEYS[1] lock; ARGV[1] owner. */
static const char rf__script_release[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                         "  return redis.call('DEL', KEYS[1])\n"
                                         "end\n"
                                         "return 0\n";

/* KEYS[1] lock; ARGV[1] owner, ARGV[2] ttl ms. */
static const char rf__script_extend[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
                                        "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
                                        "end\n"
                                        "return 0\n";

static const char *const rf__scripts[RF__S_COUNT] = {rf__script_acquire, rf__script_release,
                                                     rf__script_extend};

typedef struct {
  redisContext *c;                              /* NULL: not connected */
  char sha[RF__S_COUNT][RF__REDIS_SHA_LEN + 1]; /* "" when SCRIPT LOAD failed */
} rf__redis_conn;

typedef struct {
  char *host;
  char *user;     /* NULL: none */
  char *password; /* NULL: no AUTH */
  int port;
  unsigned db;
  char *prefix;
  struct timeval connect_tv;
  struct timeval command_tv;
  uint64_t reconnect_ns;

  pthread_mutex_t mu;
  pthread_cond_t freed; /* a connection was given back */
  rf__redis_conn *conns;
  unsigned *free_stack; /* indexes of idle connections, guarded by mu */
  unsigned nfree;       /* guarded by mu */
  unsigned n;
  uint64_t down_until_ns; /* guarded by mu: fail fast until then */
} rf__redis;

/* ------------------------------------------------------------ URL */

/* Parse "redis://[[user]:password@]host[:port][/db]" into r. */
static int rf__redis_parse_url(rf__redis *r, const char *url) {
  static const char scheme[] = "redis://";
  const char *p;
  const char *at;
  const char *host_end;
  const char *end;
  char *num_end;

  if (strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
    return RF_EINVAL;
  }
  p = url + sizeof(scheme) - 1;
  end = p + strcspn(p, "/");
  at = memchr(p, '@', (size_t)(end - p));
  if (at != NULL) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    if (colon == NULL) {
      return RF_EINVAL; /* "user@" without a password means nothing to AUTH */
    }
    if (colon > p) {
      r->user = rf__strndup(p, (size_t)(colon - p));
      if (r->user == NULL) {
        return RF_ENOMEM;
      }
    }
    r->password = rf__strndup(colon + 1, (size_t)(at - colon - 1));
    if (r->password == NULL) {
      return RF_ENOMEM;
    }
    p = at + 1;
  }
  if (*p == '[') { /* [IPv6] */
    host_end = memchr(p, ']', (size_t)(end - p));
    if (host_end == NULL) {
      return RF_EINVAL;
    }
    r->host = rf__strndup(p + 1, (size_t)(host_end - p - 1));
    host_end++;
  } else {
    host_end = memchr(p, ':', (size_t)(end - p));
    if (host_end == NULL) {
      host_end = end;
    }
    r->host = rf__strndup(p, (size_t)(host_end - p));
  }
  if (r->host == NULL) {
    return RF_ENOMEM;
  }
  if (r->host[0] == '\0' || strlen(r->host) > RF__REDIS_HOST_MAX) {
    return RF_EINVAL;
  }
  r->port = 6379;
  if (host_end < end) {
    if (*host_end != ':' || host_end + 1 == end) {
      return RF_EINVAL;
    }
    errno = 0;
    unsigned long port = strtoul(host_end + 1, &num_end, 10);
    if (errno != 0 || num_end != end || port == 0 || port > 65535) {
      return RF_EINVAL;
    }
    r->port = (int)port;
  }
  if (*end == '/' && end[1] != '\0') {
    errno = 0;
    unsigned long db = strtoul(end + 1, &num_end, 10);
    if (errno != 0 || *num_end != '\0' || db > 1000000) {
      return RF_EINVAL;
    }
    r->db = (unsigned)db;
  }
  return 0;
}

/* ------------------------------------------------------------ commands */

/* Run one command with SIGPIPE blocked in this thread (see the top). */
static redisReply *rf__redis_command(redisContext *c, int argc, const char **argv,
                                     const size_t *lens, int *err_no) {
  sigset_t pipe_set;
  sigset_t old;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  errno = 0;
  redisReply *rep = redisCommandArgv(c, argc, argv, lens);
  *err_no = errno;
  if (rep == NULL && !sigismember(&old, SIGPIPE)) {
    /* We blocked it, so a pending SIGPIPE is ours: consume it. */
    sigset_t pending;
    static const struct timespec zero = {0, 0};
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
      (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rep;
}

/* An error reply that says "not now" rather than "wrong": fail closed with
 * RF_EUNAVAIL; anything else (WRONGTYPE on our keys, a script error) is
 * RF_EIO. */
static int rf__redis_reply_error(const redisReply *rep) {
  static const char *const unavailable[] = {"LOADING", "BUSY",     "READONLY",    "MASTERDOWN",
                                            "OOM",     "TRYAGAIN", "CLUSTERDOWN", "NOAUTH",
                                            "NOPERM",  "MISCONF",  "NOREPLICAS"};
  for (size_t i = 0; i < sizeof(unavailable) / sizeof(unavailable[0]); i++) {
    size_t n = strlen(unavailable[i]);
    if (rep->len >= n && strncmp(rep->str, unavailable[i], n) == 0) {
      return RF_EUNAVAIL;
    }
  }
  return RF_EIO;
}

static void rf__redis_drop(rf__redis_conn *conn) {
  if (conn->c != NULL) {
    redisFree(conn->c);
    conn->c = NULL;
  }
}

static void rf__redis_mark_down(rf__redis *r) {
  pthread_mutex_lock(&r->mu);
  r->down_until_ns = rf__now_ns() + r->reconnect_ns;
  pthread_mutex_unlock(&r->mu);
}

/* A simple command on a fresh connection during set-up; 0 when it got a
 * non-error reply. */
static int rf__redis_setup_cmd(redisContext *c, int argc, const char **argv) {
  int e;
  redisReply *rep = rf__redis_command(c, argc, argv, NULL, &e);
  if (rep == NULL) {
    return RF_EUNAVAIL;
  }
  int rc = rep->type == REDIS_REPLY_ERROR ? rf__redis_reply_error(rep) : 0;
  freeReplyObject(rep);
  return rc == RF_EIO ? RF_EUNAVAIL : rc;
}

/* Load the scripts (one pipelined round trip). A failure leaves the SHA
 * empty: that script is then sent with EVAL. */
static void rf__redis_load_scripts(rf__redis_conn *conn) {
  sigset_t pipe_set;
  sigset_t old;
  for (int i = 0; i < RF__S_COUNT; i++) {
    conn->sha[i][0] = '\0';
  }
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
  for (int i = 0; i < RF__S_COUNT; i++) {
    const char *argv[3] = {"SCRIPT", "LOAD", rf__scripts[i]};
    if (redisAppendCommandArgv(conn->c, 3, argv, NULL) != REDIS_OK) {
      goto done;
    }
  }
  for (int i = 0; i < RF__S_COUNT; i++) {
    void *v = NULL;
    if (redisGetReply(conn->c, &v) != REDIS_OK) {
      goto done;
    }
    redisReply *rep = v;
    if (rep->type == REDIS_REPLY_STRING && rep->len == RF__REDIS_SHA_LEN) {
      memcpy(conn->sha[i], rep->str, RF__REDIS_SHA_LEN + 1);
    }
    freeReplyObject(rep);
  }
done:
  if (!sigismember(&old, SIGPIPE)) {
    sigset_t pending;
    static const struct timespec zero = {0, 0};
    if (sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
      (void)sigtimedwait(&pipe_set, NULL, &zero);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* Connect conn (not connected). 0, or RF_EUNAVAIL (and the pool is marked
 * down for reconnect_interval). */
static int rf__redis_connect(rf__redis *r, rf__redis_conn *conn) {
  char db[16];
  int rc = RF_EUNAVAIL;

  pthread_mutex_lock(&r->mu);
  bool down = rf__now_ns() < r->down_until_ns;
  pthread_mutex_unlock(&r->mu);
  if (down || RF_HOOK_FAIL("lock.redis.connect")) {
    return RF_EUNAVAIL;
  }
  conn->c = redisConnectWithTimeout(r->host, r->port, r->connect_tv);
  if (conn->c == NULL || conn->c->err != 0) {
    goto done;
  }
  if (redisSetTimeout(conn->c, r->command_tv) != REDIS_OK) {
    goto done;
  }
  (void)redisEnableKeepAlive(conn->c);
  if (r->password != NULL) {
    const char *argv[3] = {"AUTH", r->user != NULL ? r->user : r->password, r->password};
    if (rf__redis_setup_cmd(conn->c, r->user != NULL ? 3 : 2, argv) != 0) {
      goto done;
    }
  }
  if (r->db != 0) {
    snprintf(db, sizeof(db), "%u", r->db);
    const char *argv[2] = {"SELECT", db};
    if (rf__redis_setup_cmd(conn->c, 2, argv) != 0) {
      goto done;
    }
  }
  rf__redis_load_scripts(conn);
  if (conn->c->err != 0) {
    goto done;
  }
  rc = 0;

done:
  if (rc != 0) {
    rf__redis_drop(conn);
    rf__redis_mark_down(r);
  }
  return rc;
}

static unsigned rf__redis_checkout(rf__redis *r) {
  pthread_mutex_lock(&r->mu);
  while (r->nfree == 0) {
    pthread_cond_wait(&r->freed, &r->mu);
  }
  unsigned i = r->free_stack[--r->nfree];
  pthread_mutex_unlock(&r->mu);
  return i;
}

static void rf__redis_checkin(rf__redis *r, unsigned i) {
  pthread_mutex_lock(&r->mu);
  r->free_stack[r->nfree++] = i;
  pthread_cond_signal(&r->freed);
  pthread_mutex_unlock(&r->mu);
}

/* Run script `which` with the given keys and arguments and store its
 * integer answer in *result. *resent tells whether the command had to be
 * sent again on a new connection after the old one was found closed.
 * 0, RF_EUNAVAIL, RF_EIO, RF_ENOMEM. */
static int rf__redis_eval(rf__redis *r, int which, int nkeys, const char *const *keys, int nargs,
                          const char *const *args, long long *result, bool *resent) {
  const char *argv[8];
  size_t lens[8];
  int argc = 0;
  int rc = RF_EUNAVAIL;
  int err_no = 0;
  redisReply *rep = NULL;
  char nk[4];

  *resent = false;
  snprintf(nk, sizeof(nk), "%d", nkeys);
  unsigned ci = rf__redis_checkout(r);
  rf__redis_conn *conn = &r->conns[ci];

  for (int round = 0; round < 2; round++) {
    bool reused = conn->c != NULL;
    if (!reused && rf__redis_connect(r, conn) != 0) {
      rc = RF_EUNAVAIL;
      goto done;
    }
    bool use_sha = conn->sha[which][0] != '\0';
    argc = 0;
    argv[argc++] = use_sha ? "EVALSHA" : "EVAL";
    argv[argc++] = use_sha ? conn->sha[which] : rf__scripts[which];
    argv[argc++] = nk;
    for (int i = 0; i < nkeys; i++) {
      argv[argc++] = keys[i];
    }
    for (int i = 0; i < nargs; i++) {
      argv[argc++] = args[i];
    }
    for (int i = 0; i < argc; i++) {
      lens[i] = strlen(argv[i]);
    }
    if (RF_HOOK_FAIL("lock.redis.io")) {
      rf__redis_drop(conn);
      rc = RF_EUNAVAIL;
      goto done;
    }
    rep = rf__redis_command(conn->c, argc, argv, lens, &err_no);
    if (rep == NULL) {
      int err = conn->c->err;
      rf__redis_drop(conn);
      if (err == REDIS_ERR_OOM) {
        rc = RF_ENOMEM;
        goto done;
      }
      /* A connection the server closed while it sat idle: the command
       * never reached a live server. Once more on a new connection. */
      bool closed = err == REDIS_ERR_EOF ||
                    (err == REDIS_ERR_IO && (err_no == ECONNRESET || err_no == EPIPE));
      if (reused && closed && round == 0) {
        *resent = true;
        continue;
      }
      rc = RF_EUNAVAIL;
      goto done;
    }
    if (rep->type == REDIS_REPLY_ERROR && use_sha && strncmp(rep->str, "NOSCRIPT", 8) == 0) {
      /* The script cache lost it: send the body (EVAL caches it again). */
      freeReplyObject(rep);
      argv[0] = "EVAL";
      argv[1] = rf__scripts[which];
      lens[0] = strlen(argv[0]);
      lens[1] = strlen(argv[1]);
      rep = rf__redis_command(conn->c, argc, argv, lens, &err_no);
      if (rep == NULL) {
        rc = conn->c->err == REDIS_ERR_OOM ? RF_ENOMEM : RF_EUNAVAIL;
        rf__redis_drop(conn);
        goto done;
      }
    }
    break;
  }
  if (rep == NULL) {
    rc = RF_EUNAVAIL;
    goto done;
  }
  if (rep->type == REDIS_REPLY_INTEGER) {
    *result = rep->integer;
    rc = 0;
  } else if (rep->type == REDIS_REPLY_ERROR) {
    rc = rf__redis_reply_error(rep);
  } else {
    rc = RF_EIO;
  }

done:
  if (rep != NULL) {
    freeReplyObject(rep);
  }
  rf__redis_checkin(r, ci);
  return rc;
}

static void rf__redis_keys(const rf__redis *r, const char *key, char lock[RF__REDIS_KEYBUF],
                           char fence[RF__REDIS_KEYBUF]) {
  snprintf(lock, RF__REDIS_KEYBUF, "%s:lock:{%s}", r->prefix, key);
  if (fence != NULL) {
    snprintf(fence, RF__REDIS_KEYBUF, "%s:fence:{%s}", r->prefix, key);
  }
}

/* ------------------------------------------------------------ backend */

static int rf__redis_acquire(void *impl, const char *key, const char *owner, uint64_t ttl_ms,
                             uint64_t *token) {
  rf__redis *r = impl;
  char lock[RF__REDIS_KEYBUF];
  char fence[RF__REDIS_KEYBUF];
  char ttl[24];
  long long res = 0;
  bool resent;

  rf__redis_keys(r, key, lock, fence);
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
  const char *keys[2] = {lock, fence};
  const char *args[2] = {owner, ttl};
  int rc = rf__redis_eval(r, RF__S_ACQUIRE, 2, keys, 2, args, &res, &resent);
  if (rc != 0) {
    return rc;
  }
  if (res == 0) {
    return RF_EBUSY;
  }
  if (res < 0) {
    return RF_EIO;
  }
  *token = (uint64_t)res;
  return 0;
}

static int rf__redis_release(void *impl, const char *key, const char *owner) {
  rf__redis *r = impl;
  char lock[RF__REDIS_KEYBUF];
  long long res = 0;
  bool resent;

  rf__redis_keys(r, key, lock, NULL);
  const char *keys[1] = {lock};
  const char *args[1] = {owner};
  int rc = rf__redis_eval(r, RF__S_RELEASE, 1, keys, 1, args, &res, &resent);
  if (rc != 0) {
    return rc;
  }
  return res == 1 || resent ? 0 : RF_ESTATE;
}

static int rf__redis_extend(void *impl, const char *key, const char *owner, uint64_t ttl_ms) {
  rf__redis *r = impl;
  char lock[RF__REDIS_KEYBUF];
  char ttl[24];
  long long res = 0;
  bool resent;

  rf__redis_keys(r, key, lock, NULL);
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)ttl_ms);
  const char *keys[1] = {lock};
  const char *args[2] = {owner, ttl};
  int rc = rf__redis_eval(r, RF__S_EXTEND, 1, keys, 2, args, &res, &resent);
  if (rc != 0) {
    return rc;
  }
  return res == 1 ? 0 : RF_ESTATE;
}

static int rf__redis_ping(void *impl) {
  rf__redis *r = impl;
  int rc = RF_EUNAVAIL;
  int err_no;
  unsigned ci = rf__redis_checkout(r);
  rf__redis_conn *conn = &r->conns[ci];
  for (int round = 0; round < 2; round++) {
    bool reused = conn->c != NULL;
    if (!reused && rf__redis_connect(r, conn) != 0) {
      break;
    }
    const char *argv[1] = {"PING"};
    redisReply *rep = rf__redis_command(conn->c, 1, argv, NULL, &err_no);
    if (rep == NULL) {
      rf__redis_drop(conn);
      if (reused) {
        continue; /* maybe a connection closed while idle: try a new one */
      }
      break;
    }
    rc = rep->type == REDIS_REPLY_ERROR ? RF_EUNAVAIL : 0;
    freeReplyObject(rep);
    break;
  }
  rf__redis_checkin(r, ci);
  return rc;
}

static void rf__redis_destroy(void *impl) {
  rf__redis *r = impl;
  if (r == NULL) {
    return;
  }
  if (r->conns != NULL) {
    for (unsigned i = 0; i < r->n; i++) {
      rf__redis_drop(&r->conns[i]);
    }
    pthread_cond_destroy(&r->freed);
    pthread_mutex_destroy(&r->mu);
  }
  rf__free(r->conns);
  rf__free(r->free_stack);
  rf__free(r->host);
  rf__free(r->user);
  rf__free(r->password);
  rf__free(r->prefix);
  rf__free(r);
}

static const rf_lock_backend_t rf__redis_backend = {
    .name = "redis",
    .acquire = rf__redis_acquire,
    .release = rf__redis_release,
    .extend = rf__redis_extend,
    .wait = NULL,
    .ping = rf__redis_ping,
    .destroy = rf__redis_destroy,
};

static struct timeval rf__tv_ms(unsigned ms) {
  struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
  return tv;
}

int rf_lock_create_redis(rf_lock_t **out, const rf_lock_redis_opts_t *ro,
                         const rf_lock_opts_t *defaults) {
  rf__redis *r = NULL;
  int rc = RF_EINVAL;

  if (out == NULL || ro == NULL || ro->url == NULL || ro->pool_size > RF__REDIS_POOL_MAX ||
      ro->connect_timeout_ms > RF__REDIS_TIMEOUT_MAX ||
      ro->command_timeout_ms > RF__REDIS_TIMEOUT_MAX ||
      ro->reconnect_interval_ms > RF__REDIS_TIMEOUT_MAX ||
      (ro->prefix != NULL &&
       (ro->prefix[0] == '\0' ||
        strnlen(ro->prefix, RF__REDIS_PREFIX_MAX + 1) > RF__REDIS_PREFIX_MAX)) ||
      (defaults != NULL && rf_lock_opts_check(defaults) != 0)) {
    return RF_EINVAL;
  }
  r = rf__calloc(1, sizeof(*r));
  if (r == NULL) {
    return RF_ENOMEM;
  }
  rc = rf__redis_parse_url(r, ro->url);
  if (rc != 0) {
    goto fail;
  }
  rc = RF_ENOMEM;
  r->prefix = rf__strdup(ro->prefix != NULL ? ro->prefix : "rf");
  if (r->prefix == NULL) {
    goto fail;
  }
  r->connect_tv =
      rf__tv_ms(ro->connect_timeout_ms != 0 ? ro->connect_timeout_ms : RF__REDIS_DEF_CONNECT);
  r->command_tv =
      rf__tv_ms(ro->command_timeout_ms != 0 ? ro->command_timeout_ms : RF__REDIS_DEF_COMMAND);
  r->reconnect_ns = (uint64_t)(ro->reconnect_interval_ms != 0 ? ro->reconnect_interval_ms
                                                              : RF__REDIS_DEF_RECONECT) *
                    1000000u;
  r->n = ro->pool_size != 0 ? ro->pool_size : RF__REDIS_DEF_POOL;
  r->free_stack = rf__calloc(r->n, sizeof(*r->free_stack));
  if (r->free_stack == NULL) {
    goto fail;
  }
  if (rf__cond_init(&r->freed) != 0) {
    goto fail;
  }
  r->conns = rf__calloc(r->n, sizeof(*r->conns));
  if (r->conns == NULL) {
    pthread_cond_destroy(&r->freed);
    goto fail;
  }
  pthread_mutex_init(&r->mu, NULL);
  for (unsigned i = 0; i < r->n; i++) {
    r->free_stack[i] = r->n - 1 - i;
  }
  r->nfree = r->n;
  /* From here rf_lock_create owns r (and destroys it on failure). */
  return rf_lock_create(out, &rf__redis_backend, r, defaults);

fail:
  rf__redis_destroy(r);
  return rc;
}
