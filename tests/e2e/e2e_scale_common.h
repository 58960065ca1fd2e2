/* e2e_scale_common.h - racefreed scaled out, for the scale programs
 * (e2e_scale*.c): two instances on two ports sharing one PostgreSQL and one
 * Redis, all three private to the test program.
 *
 * PostgreSQL: the program's private cluster from tests/support/rf_pg.h
 * (scripts/pg.sh in a mkdtemp directory, stopped when the program exits,
 * or RF_TEST_PG_URL). The instances use its plain URL (the store and the
 * job queue both live there), so rounds keep apart by unique ids
 * (e2e_scale_tag), not by schema.
 * Redis: scripts/redis.sh start in a mkdtemp directory; e2e_scale_redis_stop
 * and _start restart it on the same port (the URL stays valid), and
 * e2e_scale_close stops it by the PID the script recorded. */
#ifndef E2E_SCALE_COMMON_H
#define E2E_SCALE_COMMON_H

#include "e2e_http.h"
#include "e2e_payments_common.h"
#include "e2e_server.h"

#define E2E_SCALE_N 2 /* instances */

typedef struct {
  char pg_url[512];
  char redis_dir[64];
  char redis_url[64];
  e2e_server_t srv[E2E_SCALE_N];
  int up; /* instances started */
} e2e_scale_t;

/* Start Redis, find PostgreSQL, start E2E_SCALE_N instances with
 * --db <pg> --redis <redis> plus extra (NULL-terminated, may be NULL).
 * 0 or a negative errno (message on stderr). */
int e2e_scale_open(e2e_scale_t *sc, const char *const *extra);
/* (Re)start instance i with the same arguments. */
int e2e_scale_start(e2e_scale_t *sc, int i, const char *const *extra);
/* Stop the instances (SIGTERM) and Redis. Returns how many instances did
 * not exit cleanly (a sanitizer's report makes the exit status non-zero;
 * RF_E2E_KEEP=1 keeps the instances' logs). */
int e2e_scale_close(e2e_scale_t *sc);

int e2e_scale_redis_stop(e2e_scale_t *sc);
int e2e_scale_redis_start(e2e_scale_t *sc);

/* A unique tag for the ids of one round ("t<pid>x<n>"). */
const char *e2e_scale_tag(char *buf, size_t cap);

/* Burst over several ports: request i goes to ports[i % nports]. All n
 * connections are opened first, then the n requests are written back to
 * back, then the answers read (each within timeout_ms). out[] as
 * e2e_burst. */
int e2e_burst_ports(const int *ports, int nports, int n, const e2e_req_t *reqs, e2e_resp_t *out,
                    int timeout_ms);

/* The two instances' ports. */
void e2e_scale_ports(const e2e_scale_t *sc, int ports[E2E_SCALE_N]);

#endif /* E2E_SCALE_COMMON_H */
