/* lock_mem.c - the in-process lock backend: a hash table of held keys under
 * one mutex, with the same lease semantics as Redis (entries expire), and a
 * condition variable on which waiters sleep until a key is released.
 *
 * Lock protocol. `mu` guards everything in rf__mem: the buckets, every
 * entry, the count and the token counter. Each operation is one critical
 * section, so "is the key free? then take it" cannot be split by another
 * thread, and neither can "is it still mine? then delete it".
 *
 * Fencing tokens come from `next_token`, a 64-bit counter that is only read
 * and incremented under `mu`, in the same critical section that installs the
 * new holder. That is what makes tokens monotonic per key: the acquisition
 * that gets token t+1 happens after (in `mu`'s total order) the one that got
 * t, and an entry's holder only changes under `mu`. A single counter for all
 * keys is monotonic for each key as well; 2^64 acquisitions never wrap. It
 * needs no atomics: a mutex is a stronger ordering than any atomic would
 * add, and nobody reads it outside `mu`.
 *
 * Expiry is lazy: an entry whose expires_ns has passed counts as absent and
 * is freed by whichever operation finds it; before the table grows, a sweep
 * frees every expired entry, so memory stays bounded by the keys held (plus
 * those that expired since the last sweep). Released and expired entries
 * wake the waiters (one broadcast condvar: waiters re-check their own key;
 * the in-process lock is not where thousands of waiters queue, kmutex is).
 */
#include <pthread.h>
#include <string.h>

#include "internal.h"
#include "racefree/lock.h"

typedef struct rf__mem_entry {
  struct rf__mem_entry *next;
  uint64_t hash;
  uint64_t token;
  uint64_t expires_ns;
  char owner[RF_LOCK_OWNER_LEN + 1];
  char key[];
} rf__mem_entry;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t released; /* broadcast when a key is released or found expired */
  rf__mem_entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
  uint64_t next_token;
} rf__mem;

#define RF__MEM_BUCKETS0 64

static struct timespec rf__abs_ts(uint64_t ns) {
  struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
  return ts;
}

/* Caller holds mu. The live entry for key, or NULL. An expired entry met on
 * the way is unlinked and freed (and waiters told). */
static rf__mem_entry *rf__mem_find(rf__mem *m, const char *key, uint64_t h, uint64_t now) {
  rf__mem_entry **pp = &m->buckets[h & (m->nbuckets - 1)];
  while (*pp != NULL) {
    rf__mem_entry *e = *pp;
    if (e->hash == h && strcmp(e->key, key) == 0) {
      if (e->expires_ns > now) {
        return e;
      }
      *pp = e->next;
      m->count--;
      rf__free(e);
      pthread_cond_broadcast(&m->released);
      return NULL;
    }
    pp = &e->next;
  }
  return NULL;
}

/* Caller holds mu. Unlink and free e. */
static void rf__mem_remove(rf__mem *m, rf__mem_entry *e) {
  rf__mem_entry **pp = &m->buckets[e->hash & (m->nbuckets - 1)];
  while (*pp != e) {
    pp = &(*pp)->next;
  }
  *pp = e->next;
  m->count--;
  rf__free(e);
  pthread_cond_broadcast(&m->released);
}

/* Caller holds mu. Free every expired entry. */
static void rf__mem_sweep(rf__mem *m, uint64_t now) {
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mem_entry **pp = &m->buckets[i];
    while (*pp != NULL) {
      rf__mem_entry *e = *pp;
      if (e->expires_ns <= now) {
        *pp = e->next;
        m->count--;
        rf__free(e);
      } else {
        pp = &e->next;
      }
    }
  }
}

/* Caller holds mu. Double the table (a failed allocation just keeps the
 * longer chains: correctness does not depend on the size). */
static void rf__mem_grow(rf__mem *m) {
  size_t n = m->nbuckets * 2;
  rf__mem_entry **b = rf__calloc(n, sizeof(rf__mem_entry *));
  if (b == NULL) {
    return;
  }
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mem_entry *e = m->buckets[i];
    while (e != NULL) {
      rf__mem_entry *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  rf__free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
}

static int rf__mem_acquire(void *impl, const char *key, const char *owner, uint64_t ttl_ms,
                           uint64_t *token) {
  rf__mem *m = impl;
  uint64_t h = rf__hash_str(key);
  int rc = 0;

  pthread_mutex_lock(&m->mu);
  uint64_t now = rf__now_ns();
  rf__mem_entry *e = rf__mem_find(m, key, h, now);
  if (e != NULL) {
    if (strcmp(e->owner, owner) != 0) {
      rc = RF_EBUSY;
      goto done;
    }
    /* The same owner again: a retried attempt of one acquisition. */
    e->expires_ns = now + ttl_ms * 1000000u;
    *token = e->token;
    goto done;
  }
  if (m->count >= m->nbuckets * 2) {
    rf__mem_sweep(m, now);
    if (m->count >= m->nbuckets) {
      rf__mem_grow(m);
    }
  }
  size_t klen = strlen(key);
  e = rf__malloc(sizeof(*e) + klen + 1);
  if (e == NULL) {
    rc = RF_ENOMEM;
    goto done;
  }
  e->hash = h;
  e->token = ++m->next_token;
  e->expires_ns = now + ttl_ms * 1000000u;
  memcpy(e->owner, owner, RF_LOCK_OWNER_LEN + 1);
  memcpy(e->key, key, klen + 1);
  e->next = m->buckets[h & (m->nbuckets - 1)];
  m->buckets[h & (m->nbuckets - 1)] = e;
  m->count++;
  *token = e->token;

done:
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static int rf__mem_release(void *impl, const char *key, const char *owner) {
  rf__mem *m = impl;
  int rc = RF_ESTATE;
  pthread_mutex_lock(&m->mu);
  rf__mem_entry *e = rf__mem_find(m, key, rf__hash_str(key), rf__now_ns());
  if (e != NULL && strcmp(e->owner, owner) == 0) {
    rf__mem_remove(m, e);
    rc = 0;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

static int rf__mem_extend(void *impl, const char *key, const char *owner, uint64_t ttl_ms) {
  rf__mem *m = impl;
  int rc = RF_ESTATE;
  pthread_mutex_lock(&m->mu);
  uint64_t now = rf__now_ns();
  rf__mem_entry *e = rf__mem_find(m, key, rf__hash_str(key), now);
  if (e != NULL && strcmp(e->owner, owner) == 0) {
    e->expires_ns = now + ttl_ms * 1000000u;
    rc = 0;
  }
  pthread_mutex_unlock(&m->mu);
  return rc;
}

/* Sleep until `key` is free or max_ms pass. The check and the wait happen
 * under mu, so a release cannot slip in between and be missed; a holder
 * that never releases is waited for until its expiry at most. */
static int rf__mem_wait(void *impl, const char *key, uint64_t max_ms) {
  rf__mem *m = impl;
  uint64_t h = rf__hash_str(key);
  pthread_mutex_lock(&m->mu);
  uint64_t deadline = rf__now_ns() + max_ms * 1000000u;
  for (;;) {
    uint64_t now = rf__now_ns();
    rf__mem_entry *e = rf__mem_find(m, key, h, now);
    if (e == NULL || now >= deadline) {
      break;
    }
    struct timespec ts = rf__abs_ts(e->expires_ns < deadline ? e->expires_ns : deadline);
    (void)pthread_cond_timedwait(&m->released, &m->mu, &ts);
  }
  pthread_mutex_unlock(&m->mu);
  return 0;
}

static void rf__mem_destroy(void *impl) {
  rf__mem *m = impl;
  if (m == NULL) {
    return;
  }
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mem_entry *e = m->buckets[i];
    while (e != NULL) {
      rf__mem_entry *next = e->next;
      rf__free(e);
      e = next;
    }
  }
  rf__free(m->buckets);
  pthread_cond_destroy(&m->released);
  pthread_mutex_destroy(&m->mu);
  rf__free(m);
}

static const rf_lock_backend_t rf__mem_backend = {
    .name = "memory",
    .acquire = rf__mem_acquire,
    .release = rf__mem_release,
    .extend = rf__mem_extend,
    .wait = rf__mem_wait,
    .ping = NULL,
    .destroy = rf__mem_destroy,
};

int rf_lock_create_mem(rf_lock_t **out, const rf_lock_opts_t *defaults) {
  rf__mem *m = NULL;
  if (out == NULL || (defaults != NULL && rf_lock_opts_check(defaults) != 0)) {
    return RF_EINVAL;
  }
  m = rf__calloc(1, sizeof(*m));
  if (m == NULL) {
    goto fail;
  }
  m->nbuckets = RF__MEM_BUCKETS0;
  m->buckets = rf__calloc(m->nbuckets, sizeof(rf__mem_entry *));
  if (m->buckets == NULL || rf__cond_init(&m->released) != 0) {
    goto fail;
  }
  pthread_mutex_init(&m->mu, NULL);
  /* From here rf_lock_create owns m (and destroys it on failure). */
  return rf_lock_create(out, &rf__mem_backend, m, defaults);

fail:
  if (m != NULL) {
    rf__free(m->buckets);
    rf__free(m);
  }
  return RF_ENOMEM;
}
