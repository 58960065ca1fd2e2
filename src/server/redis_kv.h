/* redis_kv.h - the few plain Redis commands racefreed needs besides locks:
 * GET, SET PX and DEL of values shared between instances (the cache's
 * cross-instance single-flight publishes loaded values with them).
 *
 * Why here and not in the library: the library's lock module (lock.h)
 * keeps its connections private to lock semantics (scripts, fencing); a
 * general key-value API in libracefree would be a second Redis client
 * surface to document and keep stable for one caller. This helper is
 * small, server-private, and uses the same hiredis with the same short
 * timeouts and fail-fast rule as --redis's lock service.
 *
 * Connections: a small pool (each used by one thread at a time; a caller
 * finding none idle opens a temporary one). After a failed connect every
 * call fails fast with RF_EUNAVAIL for reconnect_ms, so a dead Redis costs
 * nothing per request; the first call after that reconnects by itself.
 *
 * Thread-safety: every function may be called from any thread at once.
 * Blocking: one round trip, at most the command timeout (connect: the
 * connect timeout). */
#ifndef RACEFREED_REDIS_KV_H
#define RACEFREED_REDIS_KV_H

#include <stddef.h>
#include <stdint.h>

typedef struct srv_kv srv_kv_t;

/* srv_kv_open: for "redis://[:password@]host[:port][/db]"; connects lazily
 * (a Redis that is down is not an error here). timeout_ms: connect and
 * command timeout (1..60000). RF_EINVAL (bad URL or timeout), RF_ENOMEM. */
int srv_kv_open(srv_kv_t **out, const char *url, unsigned timeout_ms);
/* srv_kv_close: free the pool. NULL is ignored. No call may be running. */
void srv_kv_close(srv_kv_t *kv);

/* srv_kv_get: the value of key into a malloc'd NUL-terminated *value (free
 * it), length in *len (may be NULL). 0, RF_ENOENT (no such key),
 * RF_EUNAVAIL (Redis unreachable or failing), RF_ENOMEM, RF_EINVAL. */
int srv_kv_get(srv_kv_t *kv, const char *key, char **value, size_t *len);
/* srv_kv_set_px: SET key value PX ttl_ms (ttl_ms >= 1). 0, RF_EUNAVAIL,
 * RF_ENOMEM, RF_EINVAL. */
int srv_kv_set_px(srv_kv_t *kv, const char *key, const char *value, size_t len, uint64_t ttl_ms);
/* srv_kv_del: DEL key. 0 (also when absent), RF_EUNAVAIL, RF_EINVAL. */
int srv_kv_del(srv_kv_t *kv, const char *key);

#endif /* RACEFREED_REDIS_KV_H */
