/* lock_fence.c - the fence a protected resource keeps (racefree/lock.h):
 * per resource, the largest fencing token accepted so far.
 *
 * Lock protocol. `mu` guards the table's shape (buckets, chains, count);
 * each entry has its own mutex guarding `last` and `seen`, held across the
 * check, the record and the guarded write of rf_fence_apply. That is the
 * whole point: "token >= last? then write" must be one step for the
 * resource, or a newer holder could check and write between an older
 * holder's check and its write, and the older write would land last.
 * Entries are never freed before rf_fence_destroy (forgetting a resource's
 * token would re-admit stale holders), so a pointer taken under `mu` stays
 * valid after `mu` is dropped; growing the table relinks entries, it never
 * moves them. Lock order: `mu` is never taken while an entry mutex is held.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"
#include "racefree/lock.h"

#define RF__FENCE_NAME_MAX 4096
#define RF__FENCE_BUCKETS0 64

typedef struct rf__fence_entry {
  struct rf__fence_entry *next;
  uint64_t hash;
  pthread_mutex_t mu;
  uint64_t last; /* guarded by mu */
  bool seen;     /* guarded by mu */
  char name[];
} rf__fence_entry;

struct rf_fence {
  pthread_mutex_t mu;
  rf__fence_entry **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
};

int rf_fence_create(rf_fence_t **out) {
  rf_fence_t *f = NULL;
  if (out == NULL) {
    return RF_EINVAL;
  }
  f = rf__calloc(1, sizeof(*f));
  if (f == NULL) {
    goto fail;
  }
  f->nbuckets = RF__FENCE_BUCKETS0;
  f->buckets = rf__calloc(f->nbuckets, sizeof(rf__fence_entry *));
  if (f->buckets == NULL) {
    goto fail;
  }
  pthread_mutex_init(&f->mu, NULL);
  *out = f;
  return 0;

fail:
  rf__free(f);
  return RF_ENOMEM;
}

void rf_fence_destroy(rf_fence_t *f) {
  if (f == NULL) {
    return;
  }
  for (size_t i = 0; i < f->nbuckets; i++) {
    rf__fence_entry *e = f->buckets[i];
    while (e != NULL) {
      rf__fence_entry *next = e->next;
      pthread_mutex_destroy(&e->mu);
      rf__free(e);
      e = next;
    }
  }
  rf__free(f->buckets);
  pthread_mutex_destroy(&f->mu);
  rf__free(f);
}

/* Caller holds f->mu. */
static void rf__fence_grow(rf_fence_t *f) {
  size_t n = f->nbuckets * 2;
  rf__fence_entry **b = rf__calloc(n, sizeof(rf__fence_entry *));
  if (b == NULL) {
    return; /* longer chains, still correct */
  }
  for (size_t i = 0; i < f->nbuckets; i++) {
    rf__fence_entry *e = f->buckets[i];
    while (e != NULL) {
      rf__fence_entry *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  rf__free(f->buckets);
  f->buckets = b;
  f->nbuckets = n;
}

/* The entry for `name`, created when `create` is set. NULL when absent (or
 * out of memory while creating: *rc says which). */
static rf__fence_entry *rf__fence_get(rf_fence_t *f, const char *name, bool create, int *rc) {
  uint64_t h = rf__hash_str(name);
  rf__fence_entry *e;
  *rc = 0;
  pthread_mutex_lock(&f->mu);
  for (e = f->buckets[h & (f->nbuckets - 1)]; e != NULL; e = e->next) {
    if (e->hash == h && strcmp(e->name, name) == 0) {
      goto done;
    }
  }
  if (!create) {
    *rc = RF_ENOENT;
    goto done;
  }
  size_t len = strlen(name);
  e = rf__malloc(sizeof(*e) + len + 1);
  if (e == NULL) {
    *rc = RF_ENOMEM;
    goto done;
  }
  e->hash = h;
  e->last = 0;
  e->seen = false;
  memcpy(e->name, name, len + 1);
  pthread_mutex_init(&e->mu, NULL);
  if (f->count >= f->nbuckets * 2) {
    rf__fence_grow(f);
  }
  e->next = f->buckets[h & (f->nbuckets - 1)];
  f->buckets[h & (f->nbuckets - 1)] = e;
  f->count++;

done:
  pthread_mutex_unlock(&f->mu);
  return e;
}

static bool rf__fence_name_ok(const char *name) {
  if (name == NULL) {
    return false;
  }
  size_t n = strnlen(name, RF__FENCE_NAME_MAX + 1);
  return n > 0 && n <= RF__FENCE_NAME_MAX;
}

static int rf__fence_do(rf_fence_t *f, const char *resource, uint64_t token, rf_fence_write_fn fn,
                        void *arg) {
  int rc;
  if (f == NULL || !rf__fence_name_ok(resource) || token == 0) {
    return RF_EINVAL;
  }
  rf__fence_entry *e = rf__fence_get(f, resource, true, &rc);
  if (e == NULL) {
    return rc;
  }
  pthread_mutex_lock(&e->mu);
  if (e->seen && token < e->last) {
    rc = RF_ESTALE;
  } else {
    e->last = token;
    e->seen = true;
    RF_HOOK("lock.fence.before_write");
    rc = fn != NULL ? fn(arg, token) : 0;
  }
  pthread_mutex_unlock(&e->mu);
  return rc;
}

int rf_fence_apply(rf_fence_t *f, const char *resource, uint64_t token, rf_fence_write_fn fn,
                   void *arg) {
  if (fn == NULL) {
    return RF_EINVAL;
  }
  return rf__fence_do(f, resource, token, fn, arg);
}

int rf_fence_check(rf_fence_t *f, const char *resource, uint64_t token) {
  return rf__fence_do(f, resource, token, NULL, NULL);
}

int rf_fence_last(rf_fence_t *f, const char *resource, uint64_t *token) {
  int rc;
  if (f == NULL || !rf__fence_name_ok(resource) || token == NULL) {
    return RF_EINVAL;
  }
  rf__fence_entry *e = rf__fence_get(f, resource, false, &rc);
  if (e == NULL) {
    return rc;
  }
  pthread_mutex_lock(&e->mu);
  rc = e->seen ? 0 : RF_ENOENT;
  if (e->seen) {
    *token = e->last;
  }
  pthread_mutex_unlock(&e->mu);
  return rc;
}
