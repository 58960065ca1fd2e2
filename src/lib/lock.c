/* lock.c - the generic layer of the lock module (see racefree/lock.h):
 * owner values, the retry policy, the validity check after acquiring, the
 * hold cap and the lease bookkeeping. Backends (lock_mem.c, lock_redis.c)
 * only answer "grant / refuse / compare-and-delete / compare-and-expire".
 *
 * Time. Every lease time is taken from CLOCK_MONOTONIC of this process. The
 * backend's clock (Redis's) is never compared with ours; what we compare is
 * durations: the lease cannot have started before we sent the request that
 * won it (start_ns), and the backend counts ttl_ms from a moment no earlier
 * than that. So start_ns + ttl is a safe local bound, minus an allowance for
 * the two clocks running at slightly different rates (1 % of the TTL, plus
 * 2 ms for timer granularity: the figures Redlock uses).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "racefree/lock.h"

struct rf_lock {
  const rf_lock_backend_t *be;
  void *impl;
  rf_lock_opts_t defaults;
};

#define RF__NS_PER_MS 1000000ull

/* ------------------------------------------------------------ randomness */

static uint64_t rf__splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* A seed distinct per call even when two threads read the same clock value:
 * the process-wide counter is the only shared state, and only its
 * uniqueness matters, so a relaxed fetch_add is enough. */
static uint64_t rf__fallback_seed(void) {
  static atomic_uint_fast64_t calls;
  uint64_t n = atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
  uint64_t s = rf__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)pthread_self() ^
               (n * 0x9e3779b97f4a7c15ull);
  return rf__splitmix64(&s);
}

/* The owner value: 128 random bits from the kernel, as 32 hex characters.
 * It must be unguessable by other holders only in the sense that two
 * holders never draw the same value (a collision would let one release the
 * other's lock); getrandom gives that. If the kernel refuses (no entropy
 * source in an exotic sandbox), a splitmix64 stream seeded from the clock,
 * PID, thread and a counter still makes collisions negligible. */
static void rf__lock_owner(char out[RF_LOCK_OWNER_LEN + 1]) {
  uint64_t w[2];
  if (getrandom(w, sizeof(w), GRND_NONBLOCK) != (ssize_t)sizeof(w)) {
    uint64_t s = rf__fallback_seed();
    w[0] = rf__splitmix64(&s);
    w[1] = rf__splitmix64(&s);
  }
  snprintf(out, RF_LOCK_OWNER_LEN + 1, "%016llx%016llx", (unsigned long long)w[0],
           (unsigned long long)w[1]);
}

/* Jitter for the retry delays: a per-thread splitmix64 stream (no sharing,
 * no locking), seeded on first use. */
static _Thread_local uint64_t rf__jitter_state;
static _Thread_local int rf__jitter_seeded;

static uint64_t rf__jitter(uint64_t max_ms) {
  if (max_ms == 0) {
    return 0;
  }
  if (!rf__jitter_seeded) {
    rf__jitter_state = rf__fallback_seed();
    rf__jitter_seeded = 1;
  }
  return rf__splitmix64(&rf__jitter_state) % (max_ms + 1);
}

static void rf__sleep_ms(uint64_t ms) {
  struct timespec ts = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* ------------------------------------------------------------ checks */

uint64_t rf_lock_now_ns(void) {
  return rf__now_ns();
}

int rf_lock_opts_check(const rf_lock_opts_t *o) {
  if (o == NULL || o->ttl_ms == 0 || o->ttl_ms > RF_LOCK_TTL_MAX_MS || o->attempts == 0 ||
      o->attempts > RF_LOCK_ATTEMPTS_MAX || o->retry_delay_ms > RF_LOCK_TTL_MAX_MS ||
      o->retry_jitter_ms > RF_LOCK_TTL_MAX_MS || o->safety_pct > 99 ||
      (o->max_hold_ms != 0 &&
       (o->max_hold_ms < o->ttl_ms || o->max_hold_ms > RF_LOCK_TTL_MAX_MS))) {
    return RF_EINVAL;
  }
  return 0;
}

static int rf__key_ok(const char *key) {
  if (key == NULL) {
    return 0;
  }
  size_t n = strnlen(key, RF_LOCK_KEY_MAX + 1);
  return n > 0 && n <= RF_LOCK_KEY_MAX;
}

static int rf__lease_ok(const rf_lock_lease_t *l) {
  return l != NULL && rf__key_ok(l->key) &&
         strnlen(l->owner, RF_LOCK_OWNER_LEN + 1) == RF_LOCK_OWNER_LEN;
}

/* Conservative local expiry of a lease granted for ttl_ms to a request sent
 * at start_ns (see the note on time at the top). */
static uint64_t rf__valid_until(uint64_t start_ns, uint64_t ttl_ms) {
  uint64_t drift_ms = ttl_ms / 100 + 2;
  if (drift_ms >= ttl_ms) {
    return start_ns;
  }
  return start_ns + (ttl_ms - drift_ms) * RF__NS_PER_MS;
}

/* ------------------------------------------------------------ service */

int rf_lock_create(rf_lock_t **out, const rf_lock_backend_t *backend, void *impl,
                   const rf_lock_opts_t *defaults) {
  int rc = 0;
  bool owned = true; /* impl still ours to destroy on the way out */
  rf_lock_t *lk = NULL;
  rf_lock_opts_t d = RF_LOCK_OPTS_DEFAULT;

  if (backend == NULL) {
    return RF_EINVAL; /* nothing we could call to free impl */
  }
  if (out == NULL || backend->acquire == NULL || backend->release == NULL ||
      backend->extend == NULL || backend->destroy == NULL) {
    rc = RF_EINVAL;
    goto done;
  }
  if (defaults != NULL) {
    d = *defaults;
  }
  if (rf_lock_opts_check(&d) != 0) {
    rc = RF_EINVAL;
    goto done;
  }
  lk = rf__calloc(1, sizeof(*lk));
  if (lk == NULL) {
    rc = RF_ENOMEM;
    goto done;
  }
  lk->be = backend;
  lk->impl = impl;
  lk->defaults = d;
  *out = lk;
  owned = false; /* lk owns it now */

done:
  if (owned && backend->destroy != NULL) {
    backend->destroy(impl);
  }
  return rc;
}

void rf_lock_destroy(rf_lock_t *lk) {
  if (lk == NULL) {
    return;
  }
  lk->be->destroy(lk->impl);
  rf__free(lk);
}

const char *rf_lock_backend_name(const rf_lock_t *lk) {
  if (lk == NULL || lk->be->name == NULL) {
    return "";
  }
  return lk->be->name;
}

int rf_lock_ping(rf_lock_t *lk) {
  if (lk == NULL) {
    return RF_EINVAL;
  }
  return lk->be->ping != NULL ? lk->be->ping(lk->impl) : 0;
}

/* Wait between two attempts: the backend's wait (which returns early when
 * the key is released) or a plain sleep. */
static void rf__between_attempts(rf_lock_t *lk, const char *key, const rf_lock_opts_t *o) {
  uint64_t ms = o->retry_delay_ms + rf__jitter(o->retry_jitter_ms);
  if (ms == 0) {
    return;
  }
  if (lk->be->wait != NULL) {
    (void)lk->be->wait(lk->impl, key, ms);
  } else {
    rf__sleep_ms(ms);
  }
}

int rf_lock_acquire(rf_lock_t *lk, const char *key, const rf_lock_opts_t *opts,
                    rf_lock_lease_t *lease) {
  char owner[RF_LOCK_OWNER_LEN + 1];
  uint64_t token = 0;
  uint64_t start = 0;
  int rc = RF_EBUSY;

  if (lk == NULL || lease == NULL || !rf__key_ok(key)) {
    return RF_EINVAL;
  }
  if (opts == NULL) {
    opts = &lk->defaults;
  } else if (rf_lock_opts_check(opts) != 0) {
    return RF_EINVAL;
  }
  /* One owner value for every attempt of this call: if an attempt's reply
   * is lost and the next attempt finds the key held by this very owner, the
   * backend recognises the holding as ours (idempotent acquire). */
  rf__lock_owner(owner);
  for (unsigned a = 0; a < opts->attempts; a++) {
    if (a > 0) {
      rf__between_attempts(lk, key, opts);
    }
    start = rf__now_ns();
    RF_HOOK("lock.acquire.before_set");
    rc = lk->be->acquire(lk->impl, key, owner, opts->ttl_ms, &token);
    if (rc != RF_EBUSY) {
      break;
    }
  }
  if (rc != 0) {
    return rc;
  }
  RF_HOOK("lock.acquire.granted");

  /* The validity check: the lease started no earlier than `start`; if the
   * round trip (or a pause of this process right after it) ate so much of
   * it that less than safety_pct % is left, the caller could not do
   * anything useful before it expires. Give it back and say so. */
  uint64_t valid_until = rf__valid_until(start, opts->ttl_ms);
  uint64_t margin = opts->ttl_ms * RF__NS_PER_MS / 100 * opts->safety_pct;
  uint64_t now = rf__now_ns();
  if (now >= valid_until || valid_until - now < margin) {
    (void)lk->be->release(lk->impl, key, owner);
    return RF_ETIMEDOUT;
  }

  memset(lease, 0, sizeof(*lease));
  lease->token = token;
  lease->start_ns = start;
  lease->valid_until_ns = valid_until;
  lease->hold_until_ns =
      opts->max_hold_ms == 0 ? UINT64_MAX : start + opts->max_hold_ms * RF__NS_PER_MS;
  lease->ttl_ms = opts->ttl_ms;
  memcpy(lease->key, key, strlen(key) + 1);
  memcpy(lease->owner, owner, sizeof(owner));
  return 0;
}

int rf_lock_release(rf_lock_t *lk, rf_lock_lease_t *lease) {
  if (lk == NULL || lease == NULL) {
    return RF_EINVAL;
  }
  if (lease->owner[0] == '\0') {
    return RF_ESTATE; /* released already */
  }
  if (!rf__lease_ok(lease)) {
    return RF_EINVAL;
  }
  int rc = lk->be->release(lk->impl, lease->key, lease->owner);
  if (rc == 0 || rc == RF_ESTATE) {
    /* Whatever happened, this lease holds nothing any more: a second
     * release must not reach the backend. */
    lease->owner[0] = '\0';
    lease->valid_until_ns = 0;
  }
  return rc;
}

int rf_lock_extend(rf_lock_t *lk, rf_lock_lease_t *lease, uint64_t ttl_ms) {
  if (lk == NULL || lease == NULL || ttl_ms == 0 || ttl_ms > RF_LOCK_TTL_MAX_MS) {
    return RF_EINVAL;
  }
  if (lease->owner[0] == '\0') {
    return RF_ESTATE;
  }
  if (!rf__lease_ok(lease)) {
    return RF_EINVAL;
  }
  uint64_t start = rf__now_ns();
  if (lease->hold_until_ns != UINT64_MAX &&
      (start >= lease->hold_until_ns || ttl_ms * RF__NS_PER_MS > lease->hold_until_ns - start)) {
    return RF_ERANGE;
  }
  int rc = lk->be->extend(lk->impl, lease->key, lease->owner, ttl_ms);
  if (rc == 0) {
    lease->valid_until_ns = rf__valid_until(start, ttl_ms);
    lease->ttl_ms = ttl_ms;
  }
  return rc;
}

uint64_t rf_lock_remaining_ms(const rf_lock_lease_t *lease) {
  if (lease == NULL) {
    return 0;
  }
  uint64_t now = rf__now_ns();
  return now >= lease->valid_until_ns ? 0 : (lease->valid_until_ns - now) / RF__NS_PER_MS;
}

int rf_lock_with(rf_lock_t *lk, const char *key, const rf_lock_opts_t *opts, rf_lock_fn fn,
                 void *arg) {
  rf_lock_lease_t lease;
  if (fn == NULL) {
    return RF_EINVAL;
  }
  int rc = rf_lock_acquire(lk, key, opts, &lease);
  if (rc != 0) {
    return rc;
  }
  int frc = fn(arg, &lease);
  int rrc = rf_lock_release(lk, &lease);
  return frc != 0 ? frc : rrc;
}
