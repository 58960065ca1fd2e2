/* singleflight.c - one load per key at a time (see racefree/singleflight.h).
 *
 * Table
 * -----
 * A fixed array of RF__SF_BUCKETS buckets, each a mutex and a chain of the
 * flights whose key hashes there. The table holds only flights *in
 * progress* (not results), which are few -- a handful per concurrent miss --
 * so a fixed array keeps chains short without ever resizing, and a flight's
 * bucket never changes, which is what lets a call find its own lock from
 * any thread (rf_sf_complete). One mutex per bucket means loads of
 * different keys do not contend on one lock.
 *
 * Lock protocol
 * -------------
 * Everything about a flight that changes -- its place in the chain,
 * `in_table`, `completed`, `refs`, the callback-waiter list, the result's
 * fields before completion -- is guarded by its bucket's mutex. The
 * check-then-act that the naive cache gets wrong ("is a flight running? if
 * not, start one") is made atomic by doing the final lookup and the insert
 * in the same critical section:
 *
 *   lock; find -> found: join, unlock, done
 *   unlock; RF_HOOK("sf.after_lookup"); allocate a new flight (no lock held)
 *   lock; find again -> found: join it, discard ours      <- the re-check
 *                    -> not found: insert ours, we are the starter
 *   unlock
 *
 * The first lookup only saves joiners an allocation. The window between the
 * two critical sections is exactly where the naive twin breaks; here a
 * caller parked in it finds the other caller's flight on the re-check.
 *
 * Lifetime of a flight (call)
 * ---------------------------
 * `refs` (under the bucket mutex) counts: the table while the flight is in
 * it (dropped at completion or rf_sf_forget), the flight itself (dropped by
 * rf_sf_complete: the loader's handle stays valid until then), each
 * blocking waiter until it has collected the result or timed out, and the
 * starter of a callback-form flight while its loader function runs. The
 * thread that drops the last reference frees the call. Callback waiters
 * hold no reference: their node sits in the call and is consumed when it
 * completes.
 *
 * Results are reference-counted with atomics so that they can be retained
 * and released from any thread without a lock. Result fields are written
 * once, under the bucket mutex, before `completed` is set; every waiter
 * reads them after seeing `completed` under the same mutex (or, for
 * callbacks, on the completing thread itself), so they are published by the
 * mutex. After that they never change.
 *
 * Reference counts and memory ordering
 * ------------------------------------
 * retain: fetch_add relaxed. The caller already owns a reference, so the
 * object cannot be freed concurrently; the increment orders nothing.
 * release: fetch_sub acq_rel. The release half makes every use of the
 * object by this thread happen-before the decrement; the thread that takes
 * the count to zero reads-from every earlier decrement (a release sequence),
 * and its acquire half makes all those uses happen-before the free. (An
 * acquire fence after a release decrement is the classic form; acq_rel on
 * the RMW is equivalent here, costs the same on x86 and is understood by
 * ThreadSanitizer.) The table itself (`rf_sf.refs`: one for its owner, one
 * per live call) follows the same rules, which is how rf_sf_destroy can be
 * deferred until the last flight is gone.
 */
#include "racefree/singleflight.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "singleflight_int.h"

#define RF__SF_BUCKETS 256u /* power of two */

/* A result is retained and released by every cache hit, from any thread:
 * it gets a cache line of its own (rf__sf_result_alloc) so that the
 * reference counts of two hot keys never share a line. */
#define RF__SF_LINE 64u

struct rf_sf_result {
  atomic_size_t refs;
  int status;
  void *value;
  size_t len;
  void (*free_fn)(void *);
  void *base; /* what rf__malloc returned */
};

static rf_sf_result_t *rf__sf_result_alloc(void) {
  char *base = rf__malloc(sizeof(rf_sf_result_t) + RF__SF_LINE - 1);
  if (base == NULL) {
    return NULL;
  }
  uintptr_t at = ((uintptr_t)base + RF__SF_LINE - 1) & ~(uintptr_t)(RF__SF_LINE - 1);
  rf_sf_result_t *r = (rf_sf_result_t *)(void *)(base + (at - (uintptr_t)base));
  memset(r, 0, sizeof(*r));
  atomic_init(&r->refs, 1);
  r->base = base;
  return r;
}

static void rf__sf_result_free(rf_sf_result_t *r) {
  if (r != NULL) {
    rf__free(r->base);
  }
}

typedef struct rf__sf_waiter {
  struct rf__sf_waiter *next;
  rf_sf_cb cb;
  void *cb_arg;
  bool shared;
} rf__sf_waiter;

typedef struct rf__sf_bucket {
  pthread_mutex_t mu;
  rf_sf_call_t *head;
  char pad[64 - (sizeof(pthread_mutex_t) + sizeof(void *)) % 64]; /* one line each */
} rf__sf_bucket;

struct rf_sf_call {
  rf_sf_t *sf;
  rf__sf_bucket *bucket;
  rf_sf_call_t *next; /* chain, while in_table */
  uint64_t hash;
  unsigned refs;
  bool in_table;
  bool completed;
  rf_sf_result_t *result; /* preallocated; filled at completion */
  rf__sf_waiter *waiters; /* callback waiters, newest first */
  void *data;             /* internal loader data for the hook */
  pthread_cond_t cv;      /* blocking waiters */
  char key[];
};

struct rf_sf {
  atomic_size_t refs;     /* 1 for the owner + 1 per live call */
  atomic_size_t inflight; /* flights in the table */
  rf__sf_hook hook;
  rf__sf_after after;
  void (*on_free)(void *);
  void *hook_arg;
  rf__sf_bucket buckets[RF__SF_BUCKETS];
};

/* ------------------------------------------------------------ results */

int rf_sf_result_status(const rf_sf_result_t *r) {
  return r != NULL ? r->status : RF_EINVAL;
}

const void *rf_sf_result_value(const rf_sf_result_t *r, size_t *len) {
  if (len != NULL) {
    *len = r != NULL ? r->len : 0;
  }
  return r != NULL ? r->value : NULL;
}

rf_sf_result_t *rf_sf_result_retain(rf_sf_result_t *r) {
  if (r != NULL) {
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
  }
  return r;
}

void rf_sf_result_release(rf_sf_result_t *r) {
  if (r == NULL) {
    return;
  }
  if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1) {
    if (r->free_fn != NULL) {
      r->free_fn(r->value);
    }
    rf__sf_result_free(r);
  }
}

/* ------------------------------------------------------------ table */

int rf__sf_create_ex(rf_sf_t **out, rf__sf_hook hook, rf__sf_after after, void (*on_free)(void *),
                     void *hook_arg) {
  if (out == NULL) {
    return RF_EINVAL;
  }
  rf_sf_t *sf = rf__calloc(1, sizeof(*sf));
  if (sf == NULL) {
    return RF_ENOMEM;
  }
  for (unsigned i = 0; i < RF__SF_BUCKETS; i++) {
    /* Default attributes: cannot fail on Linux (no allocation). */
    pthread_mutex_init(&sf->buckets[i].mu, NULL);
  }
  atomic_init(&sf->refs, 1);
  atomic_init(&sf->inflight, 0);
  sf->hook = hook;
  sf->after = after;
  sf->on_free = on_free;
  sf->hook_arg = hook_arg;
  *out = sf;
  return 0;
}

int rf_sf_create(rf_sf_t **out) {
  return rf__sf_create_ex(out, NULL, NULL, NULL, NULL);
}

static void rf__sf_unref(rf_sf_t *sf) {
  if (atomic_fetch_sub_explicit(&sf->refs, 1, memory_order_acq_rel) != 1) {
    return;
  }
  for (unsigned i = 0; i < RF__SF_BUCKETS; i++) {
    pthread_mutex_destroy(&sf->buckets[i].mu);
  }
  if (sf->on_free != NULL) {
    sf->on_free(sf->hook_arg);
  }
  rf__free(sf);
}

void rf_sf_destroy(rf_sf_t *sf) {
  if (sf != NULL) {
    rf__sf_unref(sf);
  }
}

size_t rf_sf_inflight(rf_sf_t *sf) {
  return sf != NULL ? atomic_load_explicit(&sf->inflight, memory_order_relaxed) : 0;
}

static rf__sf_bucket *rf__sf_bucket_of(rf_sf_t *sf, uint64_t hash) {
  return &sf->buckets[hash & (RF__SF_BUCKETS - 1)];
}

/* Caller holds b->mu. */
static rf_sf_call_t *rf__sf_find(rf__sf_bucket *b, uint64_t hash, const char *key) {
  for (rf_sf_call_t *c = b->head; c != NULL; c = c->next) {
    if (c->hash == hash && strcmp(c->key, key) == 0) {
      return c;
    }
  }
  return NULL;
}

/* Caller holds the bucket mutex; c is in the table. Drops the table's
 * reference, which is never the last one (the flight's own is still held
 * while the call is in the table). */
static void rf__sf_unlink(rf_sf_call_t *c) {
  rf_sf_call_t **pp = &c->bucket->head;
  while (*pp != c) {
    pp = &(*pp)->next;
  }
  *pp = c->next;
  c->next = NULL;
  c->in_table = false;
  c->refs--;
  atomic_fetch_sub_explicit(&c->sf->inflight, 1, memory_order_relaxed);
}

static rf_sf_call_t *rf__sf_call_new(rf_sf_t *sf, const char *key, uint64_t hash) {
  size_t len = strlen(key);
  rf_sf_call_t *c = rf__calloc(1, sizeof(*c) + len + 1);
  rf_sf_result_t *r = rf__sf_result_alloc(); /* refs = 1: the call's own */
  if (c == NULL || r == NULL || rf__cond_init(&c->cv) != 0) {
    rf__free(c);
    rf__sf_result_free(r);
    return NULL;
  }
  c->sf = sf;
  c->bucket = rf__sf_bucket_of(sf, hash);
  c->hash = hash;
  c->result = r;
  memcpy(c->key, key, len + 1);
  atomic_fetch_add_explicit(&sf->refs, 1, memory_order_relaxed);
  return c;
}

static void rf__sf_call_free(rf_sf_call_t *c) {
  rf_sf_t *sf = c->sf;
  pthread_cond_destroy(&c->cv);
  rf_sf_result_release(c->result);
  rf__free(c);
  rf__sf_unref(sf);
}

/* Drops one reference of the caller's; frees the call if it was the last. */
static void rf__sf_call_unref(rf_sf_call_t *c) {
  pthread_mutex_t *mu = &c->bucket->mu;
  pthread_mutex_lock(mu);
  bool last = --c->refs == 0;
  pthread_mutex_unlock(mu);
  if (last) {
    rf__sf_call_free(c);
  }
}

/* Finds or creates the flight for `key` (see "Lock protocol" above).
 * `node` (callback form) is queued on the flight; the caller gets a
 * reference on the call when it is a blocking waiter (node == NULL) or when
 * it created the flight (it then runs the loader and drops the reference
 * afterwards). */
static int rf__sf_attach(rf_sf_t *sf, const char *key, rf__sf_waiter *node, rf_sf_call_t **callp,
                         bool *created) {
  uint64_t hash = rf__hash_str(key);
  rf__sf_bucket *b = rf__sf_bucket_of(sf, hash);
  rf_sf_call_t *fresh = NULL;

  pthread_mutex_lock(&b->mu);
  rf_sf_call_t *c = rf__sf_find(b, hash, key);
  if (c == NULL) {
    pthread_mutex_unlock(&b->mu);
    RF_HOOK("sf.after_lookup");
    fresh = rf__sf_call_new(sf, key, hash);
    if (fresh == NULL) {
      return RF_ENOMEM;
    }
    pthread_mutex_lock(&b->mu);
    c = rf__sf_find(b, hash, key); /* the re-check */
  }
  if (c != NULL) {
    if (node == NULL) {
      c->refs++;
    } else {
      node->shared = true;
      node->next = c->waiters;
      c->waiters = node;
    }
    pthread_mutex_unlock(&b->mu);
    if (fresh != NULL) {
      rf__sf_call_free(fresh); /* never published: lost the re-check */
    }
    *callp = c;
    *created = false;
    return 0;
  }
  c = fresh;
  c->next = b->head;
  b->head = c;
  c->in_table = true;
  c->refs = 3; /* table + flight + this caller (waiter or loader invocation) */
  if (node != NULL) {
    node->shared = false;
    node->next = NULL;
    c->waiters = node;
  }
  atomic_fetch_add_explicit(&sf->inflight, 1, memory_order_relaxed);
  pthread_mutex_unlock(&b->mu);
  *callp = c;
  *created = true;
  return 0;
}

/* Waits for c to complete (timeout_ms < 0: forever), collects a reference
 * to the result and drops the caller's reference on c. */
static int rf__sf_wait(rf_sf_call_t *c, int timeout_ms, rf_sf_result_t **out) {
  pthread_mutex_t *mu = &c->bucket->mu;
  struct timespec dl = rf__deadline(timeout_ms > 0 ? timeout_ms : 0);
  int rc = RF_ETIMEDOUT;

  pthread_mutex_lock(mu);
  while (!c->completed && timeout_ms != 0) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&c->cv, mu);
    } else if (pthread_cond_timedwait(&c->cv, mu, &dl) != 0) {
      break; /* ETIMEDOUT; `completed` is checked once more below */
    }
  }
  if (c->completed) {
    *out = rf_sf_result_retain(c->result);
    rc = 0;
  }
  bool last = --c->refs == 0;
  pthread_mutex_unlock(mu);
  if (last) {
    rf__sf_call_free(c);
  }
  return rc;
}

int rf_sf_do(rf_sf_t *sf, const char *key, rf_sf_loader fn, void *loader_arg, int timeout_ms,
             rf_sf_result_t **out, bool *shared) {
  if (sf == NULL || key == NULL || fn == NULL || out == NULL) {
    return RF_EINVAL;
  }
  rf_sf_call_t *c = NULL;
  bool created = false;
  int rc = rf__sf_attach(sf, key, NULL, &c, &created);
  if (rc != 0) {
    return rc;
  }
  if (created) {
    RF_HOOK("sf.loader.start");
    fn(c, c->key, loader_arg);
  } else {
    RF_HOOK("sf.joined");
  }
  rc = rf__sf_wait(c, timeout_ms, out);
  if (shared != NULL) {
    *shared = !created;
  }
  return rc;
}

int rf_sf_do_cb(rf_sf_t *sf, const char *key, rf_sf_loader fn, void *loader_arg, rf_sf_cb cb,
                void *cb_arg) {
  if (sf == NULL || key == NULL || fn == NULL || cb == NULL) {
    return RF_EINVAL;
  }
  rf__sf_waiter *node = rf__malloc(sizeof(*node));
  if (node == NULL) {
    return RF_ENOMEM;
  }
  node->cb = cb;
  node->cb_arg = cb_arg;
  rf_sf_call_t *c = NULL;
  bool created = false;
  int rc = rf__sf_attach(sf, key, node, &c, &created);
  if (rc != 0) {
    rf__free(node);
    return rc;
  }
  if (created) {
    RF_HOOK("sf.loader.start");
    fn(c, c->key, loader_arg);
    rf__sf_call_unref(c); /* the invocation reference */
  } else {
    RF_HOOK("sf.joined"); /* c may be gone already: not touched */
  }
  return 0;
}

int rf_sf_forget(rf_sf_t *sf, const char *key) {
  if (sf == NULL || key == NULL) {
    return RF_EINVAL;
  }
  uint64_t hash = rf__hash_str(key);
  rf__sf_bucket *b = rf__sf_bucket_of(sf, hash);
  pthread_mutex_lock(&b->mu);
  rf_sf_call_t *c = rf__sf_find(b, hash, key);
  if (c != NULL) {
    rf__sf_unlink(c);
  }
  pthread_mutex_unlock(&b->mu);
  return c != NULL ? 0 : RF_ENOENT;
}

/* ------------------------------------------------------------ completion */

/* Ends the flight with either an existing result (`existing`) or a new one
 * made of status/value/len/free_fn. See "Lifetime" above. */
static int rf__sf_finish(rf_sf_call_t *c, rf_sf_result_t *existing, int status, void *value,
                         size_t len, void (*free_fn)(void *)) {
  if (c == NULL) {
    return RF_EINVAL;
  }
  rf_sf_t *sf = c->sf;
  pthread_mutex_t *mu = &c->bucket->mu;
  rf_sf_result_t *spare = NULL;

  pthread_mutex_lock(mu);
  if (c->completed) {
    pthread_mutex_unlock(mu);
    return RF_ESTATE;
  }
  if (existing != NULL) {
    spare = c->result; /* the preallocated one, unused */
    c->result = rf_sf_result_retain(existing);
  } else {
    c->result->status = status > 0 ? RF_ELOAD : status;
    c->result->value = value;
    c->result->len = len;
    c->result->free_fn = free_fn;
  }
  rf_sf_result_t *res = c->result;
  void *data = c->data;
  c->data = NULL;
  void *deferred = NULL;
  if (sf->hook != NULL) {
    /* Before the unlink: see singleflight_int.h. */
    deferred = sf->hook(sf->hook_arg, c->key, c->hash, res, data, c->in_table, existing == NULL);
  }
  c->completed = true;
  if (c->in_table) {
    rf__sf_unlink(c);
  }
  /* Detach the callback waiters, oldest first, each with its reference. */
  rf__sf_waiter *ws = NULL;
  size_t n = 0;
  while (c->waiters != NULL) {
    rf__sf_waiter *w = c->waiters;
    c->waiters = w->next;
    w->next = ws;
    ws = w;
    n++;
  }
  if (n > 0) {
    atomic_fetch_add_explicit(&res->refs, n, memory_order_relaxed);
  }
  /* Keep the table (and what its hook_arg points to) alive while `after`
   * and the callbacks run: once the flight's reference is dropped below, a
   * waiter may free the call and, after rf_sf_destroy, the table. */
  bool pin = n > 0 || deferred != NULL;
  if (pin) {
    atomic_fetch_add_explicit(&sf->refs, 1, memory_order_relaxed);
  }
  pthread_cond_broadcast(&c->cv);
  bool last = --c->refs == 0; /* the flight's own reference */
  pthread_mutex_unlock(mu);

  if (deferred != NULL && sf->after != NULL) {
    sf->after(sf->hook_arg, deferred);
  }
  rf_sf_result_release(spare);
  while (ws != NULL) {
    rf__sf_waiter *w = ws;
    ws = w->next;
    w->cb(res, w->shared, w->cb_arg);
    rf__free(w);
  }
  if (last) {
    rf__sf_call_free(c);
  }
  if (pin) {
    rf__sf_unref(sf);
  }
  return 0;
}

int rf_sf_complete(rf_sf_call_t *call, int status, void *value, size_t len,
                   void (*free_fn)(void *)) {
  return rf__sf_finish(call, NULL, status, value, len, free_fn);
}

int rf__sf_complete_result(rf_sf_call_t *call, rf_sf_result_t *r) {
  if (r == NULL) {
    return RF_EINVAL;
  }
  return rf__sf_finish(call, r, 0, NULL, 0, NULL);
}

void rf__sf_call_set_data(rf_sf_call_t *call, void *data) {
  call->data = data;
}

uint64_t rf__sf_call_hash(const rf_sf_call_t *call) {
  return call->hash;
}
