/* bench_lock_redis.c - rf_lock acquire+release pairs per second against a
 * Redis, next to raw SET NX PX round trips on one hiredis connection, in the
 * same run.
 *
 * Like for like: one client, one connection, one command in flight. An
 * acquire is one EVALSHA round trip, a release another, so a pair costs two
 * round trips; the reference is the raw round trip of the command at the
 * heart of the acquire script (SET key value NX PX ttl), halved. The ratio
 * is what the Lua scripts, the fencing counter, the owner value and the
 * library's bookkeeping cost on top of the network.
 *
 * Needs RF_BENCH_REDIS_URL (bench/lock.bench.sh starts a private Redis and
 * sets it, then turns the key=value lines printed here into the markdown
 * section of docs/benchmarks.md, next to redis-benchmark's figure). Run
 * without it - as bench/run.sh does with every bench_* program - it prints
 * a markdown comment saying so and exits 0.
 *
 *   RF_BENCH_REDIS_URL=redis://127.0.0.1:6379 bench_lock_redis [pairs]
 */
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "racefree/lock.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_host_port(const char *url, char *host, size_t hostlen, int *port) {
  const char *p = strstr(url, "://");
  p = p != NULL ? p + 3 : url;
  const char *colon = strrchr(p, ':');
  if (colon == NULL || (size_t)(colon - p) >= hostlen) {
    return -1;
  }
  memcpy(host, p, (size_t)(colon - p));
  host[colon - p] = '\0';
  *port = atoi(colon + 1);
  return *port > 0 ? 0 : -1;
}

/* Raw SET NX PX round trips per second on one connection. */
static double bench_setnx(const char *host, int port, long n) {
  redisContext *c = redisConnect(host, port);
  if (c == NULL || c->err != 0) {
    fprintf(stderr, "bench_lock_redis: cannot connect to %s:%d\n", host, port);
    exit(1);
  }
  for (long i = 0; i < 1000; i++) { /* warm-up */
    freeReplyObject(redisCommand(c, "SET rf:bench:raw v NX PX 10000"));
  }
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    redisReply *r = redisCommand(c, "SET rf:bench:raw v NX PX 10000");
    if (r == NULL) {
      fprintf(stderr, "bench_lock_redis: SET failed: %s\n", c->errstr);
      exit(1);
    }
    freeReplyObject(r);
  }
  double dt = now_s() - t0;
  redisFree(c);
  return (double)n / dt;
}

/* rf_lock acquire + release pairs per second, one thread, one connection. */
static double bench_pairs(const char *url, long n) {
  rf_lock_t *lk;
  rf_lock_redis_opts_t ro = {.url = url, .pool_size = 1};
  rf_lock_lease_t l;
  if (rf_lock_create_redis(&lk, &ro, NULL) != 0) {
    fprintf(stderr, "bench_lock_redis: rf_lock_create_redis failed\n");
    exit(1);
  }
  for (long i = 0; i < 500; i++) { /* warm-up: connect, load scripts */
    if (rf_lock_acquire(lk, "bench", NULL, &l) != 0 || rf_lock_release(lk, &l) != 0) {
      fprintf(stderr, "bench_lock_redis: warm-up failed\n");
      exit(1);
    }
  }
  double t0 = now_s();
  for (long i = 0; i < n; i++) {
    int rc = rf_lock_acquire(lk, "bench", NULL, &l);
    if (rc == 0) {
      rc = rf_lock_release(lk, &l);
    }
    if (rc != 0) {
      fprintf(stderr, "bench_lock_redis: %s\n", rf_strerror(rc));
      exit(1);
    }
  }
  double dt = now_s() - t0;
  rf_lock_destroy(lk);
  return (double)n / dt;
}

int main(int argc, char **argv) {
  const char *url = getenv("RF_BENCH_REDIS_URL");
  long pairs = argc > 1 ? atol(argv[1]) : 10000;
  char host[128];
  int port;
  if (url == NULL || url[0] == '\0') {
    printf("<!-- bench_lock_redis: skipped here (no RF_BENCH_REDIS_URL); "
           "bench/lock.bench.sh measures it against a private Redis -->\n");
    return 0;
  }
  if (pairs <= 0 || parse_host_port(url, host, sizeof(host), &port) != 0) {
    fprintf(stderr, "usage: RF_BENCH_REDIS_URL=redis://host:port bench_lock_redis [pairs]\n");
    return 2;
  }
  double setnx = bench_setnx(host, port, pairs * 2);
  double p = bench_pairs(url, pairs);
  printf("pairs=%ld\n", pairs);
  printf("pairs_per_s=%.0f\n", p);
  printf("hiredis_setnx_rtt_per_s=%.0f\n", setnx);
  return 0;
}
