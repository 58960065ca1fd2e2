/* kmutex.c - keyed mutex: striped hash table of on-demand entries (see
 * kmutex.h).
 *
 * Layout. A key hashes (FNV-1a) to one of RF__KM_STRIPES stripes; each
 * stripe has its own mutex and its own chained hash table of entries, so
 * unrelated keys rarely contend. An entry is {key, held, FIFO of waiters}.
 * Invariant (under the stripe lock): an entry exists iff it is held or has
 * waiters; a waiter exists only while its entry is held. Whoever makes an
 * entry idle (unlock with an empty queue, a waiter timing out) frees it in
 * the same critical section, so memory is bounded by keys in use.
 *
 * Grants are hand-overs: unlock pops the first waiter and marks it GRANTED
 * while `held` stays true, so the key is never observed free between two
 * holders and newcomers cannot barge ahead of the queue.
 *
 * Waiter state machine (the grant/timeout protocol). Every waiter has a
 * `state`, read and written only under its stripe lock:
 *
 *   WAITING --unlock pops it-------------------> GRANTED
 *   WAITING --its own timeout (cond or timer)--> TIMEDOUT   (leaves queue)
 *   WAITING --rf_kmutex_destroy----------------> CANCELED   (cb waiters)
 *
 * The first transition out of WAITING wins; every other party that later
 * looks at the waiter sees a final state and backs off. Consequences:
 *
 *   - Blocking waiter (rf_kmutex_lock): its pthread_cond_timedwait may
 *     return ETIMEDOUT while an unlocker, holding the stripe lock, has just
 *     granted it. When the waiter re-takes the lock it reads GRANTED and
 *     returns 0: the lock was handed to it and must not be dropped on the
 *     floor. Only if it still reads WAITING does it unlink itself and
 *     return RF_ETIMEDOUT. (Test builds open this window on purpose at the
 *     hook "kmutex.lock.timed_out": tests/race/race_kmutex.c.)
 *
 *   - Callback waiter (rf_kmutex_lock_cb) with a timer: two parties may
 *     finish it, the unlocker and the timer callback. The waiter is
 *     heap-allocated with a reference count: one "delivery" reference (held
 *     by the queue; dropped by whoever wins and runs cb) and one "timer"
 *     reference (dropped by the timer callback, or by the unlocker when
 *     rf_timer_cancel returns 0, i.e. the timer callback will never run).
 *     When the unlocker wins but cancel returns RF_ENOENT, the timer
 *     callback is already popped: it will take the stripe lock, read
 *     GRANTED, and only drop its reference. The reference count is atomic
 *     (acq_rel on the decrement, so the last owner sees every write of the
 *     others before it frees; the increment is relaxed: it happens before
 *     the waiter is published under the lock).
 *
 * Timer callbacks outlive neither the waiter (reference) nor the kmutex:
 * km->timers_out counts armed timeouts whose callback may still run;
 * rf_kmutex_destroy waits until it is 0 before it destroys the stripe
 * mutexes those callbacks lock. It is guarded by its own mutex `tmu` (lock
 * order: stripe -> tmu, and tmu is never held while taking anything else).
 *
 * Lock order overall: stripe lock -> timer mutex (rf_timer_after/cancel
 * are called with the stripe lock held); the timer thread holds no timer
 * lock while it runs our callback, which takes the stripe lock: no cycle.
 * User callbacks always run with no lock held.
 *
 * Recursion. A cb(0) typically does its work and unlocks, which grants the
 * next callback waiter, whose cb unlocks again... Run naively on the
 * unlocker's stack that is a recursion as deep as the queue. Instead each
 * thread keeps a small intrusive list of granted callbacks (thread-local);
 * only the outermost unlock on the thread drains it, in FIFO order.
 */
#include "racefree/kmutex.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

#define RF__KM_STRIPES      32 /* power of two */
#define RF__KM_INIT_BUCKETS 8  /* per stripe, power of two */

enum { RF__KW_BLOCKING, RF__KW_CALLBACK };
enum { RF__KW_WAITING, RF__KW_GRANTED, RF__KW_TIMEDOUT, RF__KW_CANCELED };

typedef struct rf__kstripe rf__kstripe;
typedef struct rf__kentry rf__kentry;

typedef struct rf__kwaiter {
  struct rf__kwaiter *prev, *next; /* entry FIFO */
  int kind;
  int state;          /* under the stripe lock */
  pthread_cond_t *cv; /* blocking waiter: on its stack */
  rf_kmutex_cb cb;    /* callback waiter */
  void *cb_arg;
  rf_kmutex_t *km;
  rf__kstripe *stripe;
  rf__kentry *entry; /* valid while WAITING */
  rf_timer_t *timer; /* NULL: no timeout armed */
  uint64_t timer_id;
  atomic_int refs;
  bool own_timer_ref;           /* destroy: the cancel won the timer ref */
  struct rf__kwaiter *tls_next; /* deferred grant list, destroy's list */
} rf__kwaiter;

struct rf__kentry {
  rf__kentry *next; /* bucket chain */
  uint64_t hash;
  bool held;
  rf__kwaiter *head, *tail;
  char key[];
};

struct rf__kstripe {
  _Alignas(64) pthread_mutex_t mu;
  rf__kentry **buckets;
  size_t nbuckets;
  size_t count;
};

struct rf_kmutex {
  rf__kstripe stripes[RF__KM_STRIPES];
  atomic_size_t entries; /* relaxed: statistics only */
  pthread_mutex_t tmu;
  pthread_cond_t tcv;
  size_t timers_out; /* under tmu */
};

/* ------------------------------------------------------------ table */

static rf__kstripe *rf__km_stripe(rf_kmutex_t *km, uint64_t h) {
  return &km->stripes[(h >> 59) & (RF__KM_STRIPES - 1)];
}

static rf__kentry **rf__km_slot(rf__kstripe *s, const char *key, uint64_t h) {
  rf__kentry **pp = &s->buckets[h & (s->nbuckets - 1)];
  while (*pp != NULL && ((*pp)->hash != h || strcmp((*pp)->key, key) != 0)) {
    pp = &(*pp)->next;
  }
  return pp;
}

/* Failure to grow only makes chains longer: not reported. */
static void rf__km_maybe_grow(rf__kstripe *s) {
  if (s->count < s->nbuckets || s->nbuckets > SIZE_MAX / 2 / sizeof(rf__kentry *)) {
    return;
  }
  size_t nb = s->nbuckets * 2;
  rf__kentry **b = rf__calloc(nb, sizeof(rf__kentry *));
  if (b == NULL) {
    return;
  }
  for (size_t i = 0; i < s->nbuckets; i++) {
    rf__kentry *e = s->buckets[i];
    while (e != NULL) {
      rf__kentry *next = e->next;
      e->next = b[e->hash & (nb - 1)];
      b[e->hash & (nb - 1)] = e;
      e = next;
    }
  }
  rf__free(s->buckets);
  s->buckets = b;
  s->nbuckets = nb;
}

/* Find the entry for key, creating it (idle) if absent. Caller holds s->mu.
 * NULL only when a new entry cannot be allocated. */
static rf__kentry *rf__km_get(rf_kmutex_t *km, rf__kstripe *s, const char *key, uint64_t h) {
  rf__kentry **pp = rf__km_slot(s, key, h);
  if (*pp != NULL) {
    return *pp;
  }
  size_t len = strlen(key);
  rf__kentry *e = rf__malloc(sizeof(*e) + len + 1);
  if (e == NULL) {
    return NULL;
  }
  memcpy(e->key, key, len + 1);
  e->hash = h;
  e->held = false;
  e->head = e->tail = NULL;
  e->next = NULL;
  *pp = e;
  s->count++;
  atomic_fetch_add_explicit(&km->entries, 1, memory_order_relaxed);
  rf__km_maybe_grow(s);
  return e;
}

/* Free e if nobody holds or waits on it. Caller holds s->mu. */
static void rf__km_release_if_idle(rf_kmutex_t *km, rf__kstripe *s, rf__kentry *e) {
  if (e->held || e->head != NULL) {
    return;
  }
  rf__kentry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];
  while (*pp != e) {
    pp = &(*pp)->next;
  }
  *pp = e->next;
  s->count--;
  atomic_fetch_sub_explicit(&km->entries, 1, memory_order_relaxed);
  rf__free(e);
}

static void rf__kw_append(rf__kentry *e, rf__kwaiter *w) {
  w->next = NULL;
  w->prev = e->tail;
  if (e->tail != NULL) {
    e->tail->next = w;
  } else {
    e->head = w;
  }
  e->tail = w;
  w->entry = e;
}

static void rf__kw_unlink(rf__kentry *e, rf__kwaiter *w) {
  if (w->prev != NULL) {
    w->prev->next = w->next;
  } else {
    e->head = w->next;
  }
  if (w->next != NULL) {
    w->next->prev = w->prev;
  } else {
    e->tail = w->prev;
  }
  w->prev = w->next = NULL;
  w->entry = NULL;
}

/* ------------------------------------------------------------ waiters */

static void rf__kw_unref(rf__kwaiter *w) {
  if (atomic_fetch_sub_explicit(&w->refs, 1, memory_order_acq_rel) == 1) {
    rf__free(w);
  }
}

/* One armed timeout will never call back (it ran, or was cancelled). Last
 * access to km by a timer callback. */
static void rf__km_timer_done(rf_kmutex_t *km) {
  pthread_mutex_lock(&km->tmu);
  if (--km->timers_out == 0) {
    pthread_cond_broadcast(&km->tcv);
  }
  pthread_mutex_unlock(&km->tmu);
}

/* Caller holds the stripe lock and has moved w out of WAITING: disarm its
 * timer. Returns true when the timer callback will never run, i.e. the
 * caller now owns the timer's reference and must drop it (after unlocking:
 * see rf__kw_drop_timer_ref). That is the case when cancel removed it (0),
 * and when the timer has been shut down and joined (RF_ESHUTDOWN): a
 * callback that had run would have found w WAITING and finished it, so it
 * did not run, and it never will (dropped by rf_timer_shutdown(t, false)). */
static bool rf__kw_disarm(rf__kwaiter *w) {
  if (w->timer == NULL) {
    return false;
  }
  int rc = rf_timer_cancel(w->timer, w->timer_id);
  return rc == 0 || rc == RF_ESHUTDOWN;
}

static void rf__kw_drop_timer_ref(rf__kwaiter *w) {
  rf_kmutex_t *km = w->km;
  rf__kw_unref(w);
  rf__km_timer_done(km);
}

static _Thread_local rf__kwaiter *rf__km_tls_head;
static _Thread_local rf__kwaiter *rf__km_tls_tail;
static _Thread_local bool rf__km_tls_draining;

/* Run cb(0) for a granted callback waiter on this thread, without nesting:
 * see "Recursion" above. */
static void rf__kw_deliver_grant(rf__kwaiter *w) {
  w->tls_next = NULL;
  if (rf__km_tls_tail != NULL) {
    rf__km_tls_tail->tls_next = w;
  } else {
    rf__km_tls_head = w;
  }
  rf__km_tls_tail = w;
  if (rf__km_tls_draining) {
    return;
  }
  rf__km_tls_draining = true;
  while (rf__km_tls_head != NULL) {
    rf__kwaiter *x = rf__km_tls_head;
    rf__km_tls_head = x->tls_next;
    if (rf__km_tls_head == NULL) {
      rf__km_tls_tail = NULL;
    }
    x->cb(0, x->cb_arg);
    rf__kw_unref(x); /* delivery reference */
  }
  rf__km_tls_draining = false;
}

/* Timer callback: the timeout of a callback waiter. */
static void rf__kw_timeout(void *arg) {
  rf__kwaiter *w = arg;
  rf_kmutex_t *km = w->km;
  rf__kstripe *s = w->stripe;
  bool won = false;
  pthread_mutex_lock(&s->mu);
  if (w->state == RF__KW_WAITING) {
    rf__kentry *e = w->entry;
    rf__kw_unlink(e, w);
    w->state = RF__KW_TIMEDOUT;
    rf__km_release_if_idle(km, s, e);
    won = true;
  }
  pthread_mutex_unlock(&s->mu);
  if (won) {
    w->cb(RF_ETIMEDOUT, w->cb_arg);
    rf__kw_unref(w); /* delivery reference */
  }
  rf__kw_drop_timer_ref(w); /* last touch of km */
}

/* ------------------------------------------------------------ API */

int rf_kmutex_create(rf_kmutex_t **out) {
  if (out == NULL) {
    return RF_EINVAL;
  }
  int made = 0;
  bool tmu_ok = false, tcv_ok = false;
  rf_kmutex_t *km = rf__calloc(1, sizeof(*km));
  if (km == NULL) {
    goto fail;
  }
  if (pthread_mutex_init(&km->tmu, NULL) != 0) {
    goto fail;
  }
  tmu_ok = true;
  if (rf__cond_init(&km->tcv) != 0) {
    goto fail;
  }
  tcv_ok = true;
  for (; made < RF__KM_STRIPES; made++) {
    rf__kstripe *s = &km->stripes[made];
    s->buckets = rf__calloc(RF__KM_INIT_BUCKETS, sizeof(rf__kentry *));
    if (s->buckets == NULL) {
      goto fail;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
      rf__free(s->buckets);
      goto fail;
    }
    s->nbuckets = RF__KM_INIT_BUCKETS;
  }
  *out = km;
  return 0;
fail:
  if (km != NULL) {
    for (int i = 0; i < made; i++) {
      pthread_mutex_destroy(&km->stripes[i].mu);
      rf__free(km->stripes[i].buckets);
    }
    if (tcv_ok) {
      pthread_cond_destroy(&km->tcv);
    }
    if (tmu_ok) {
      pthread_mutex_destroy(&km->tmu);
    }
    rf__free(km);
  }
  return RF_ENOMEM;
}

void rf_kmutex_destroy(rf_kmutex_t *km) {
  if (km == NULL) {
    return;
  }
  /* 1. Cancel queued callback waiters (precondition: no blocking ones). */
  for (int i = 0; i < RF__KM_STRIPES; i++) {
    rf__kstripe *s = &km->stripes[i];
    rf__kwaiter *canceled = NULL;
    pthread_mutex_lock(&s->mu);
    for (size_t b = 0; b < s->nbuckets; b++) {
      for (rf__kentry *e = s->buckets[b]; e != NULL; e = e->next) {
        while (e->head != NULL) {
          rf__kwaiter *w = e->head;
          rf__kw_unlink(e, w);
          w->state = RF__KW_CANCELED;
          w->tls_next = canceled;
          canceled = w;
        }
      }
    }
    for (rf__kwaiter *w = canceled; w != NULL; w = w->tls_next) {
      w->own_timer_ref = rf__kw_disarm(w);
    }
    pthread_mutex_unlock(&s->mu);
    while (canceled != NULL) {
      rf__kwaiter *w = canceled;
      canceled = w->tls_next;
      w->cb(RF_ECANCELED, w->cb_arg);
      if (w->own_timer_ref) {
        rf__kw_drop_timer_ref(w);
      }
      rf__kw_unref(w);
    }
  }
  /* 2. Timer callbacks already popped still lock our stripes: wait. */
  pthread_mutex_lock(&km->tmu);
  while (km->timers_out > 0) {
    pthread_cond_wait(&km->tcv, &km->tmu);
  }
  pthread_mutex_unlock(&km->tmu);
  /* 3. Free the table. */
  for (int i = 0; i < RF__KM_STRIPES; i++) {
    rf__kstripe *s = &km->stripes[i];
    for (size_t b = 0; b < s->nbuckets; b++) {
      rf__kentry *e = s->buckets[b];
      while (e != NULL) {
        rf__kentry *next = e->next;
        rf__free(e);
        e = next;
      }
    }
    rf__free(s->buckets);
    pthread_mutex_destroy(&s->mu);
  }
  pthread_cond_destroy(&km->tcv);
  pthread_mutex_destroy(&km->tmu);
  rf__free(km);
}

/* Claim key if free. Returns 0 (claimed), RF_EBUSY (held; *entry set, the
 * caller still holds s->mu), RF_ENOMEM. On 0 and RF_ENOMEM s->mu is
 * released. */
static int rf__km_claim(rf_kmutex_t *km, rf__kstripe *s, const char *key, uint64_t h,
                        rf__kentry **entry) {
  rf__kentry *e = rf__km_get(km, s, key, h);
  if (e == NULL) {
    pthread_mutex_unlock(&s->mu);
    return RF_ENOMEM;
  }
  if (!e->held) {
    e->held = true;
    pthread_mutex_unlock(&s->mu);
    /* The check and the claim were one critical section: a thread parked
     * here already owns the key, so nobody else can pass. */
    RF_HOOK("kmutex.after_check");
    return 0;
  }
  *entry = e;
  return RF_EBUSY;
}

int rf_kmutex_trylock(rf_kmutex_t *km, const char *key) {
  if (km == NULL || key == NULL) {
    return RF_EINVAL;
  }
  uint64_t h = rf__hash_str(key);
  rf__kstripe *s = rf__km_stripe(km, h);
  rf__kentry *e = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = rf__km_claim(km, s, key, h, &e);
  if (rc == RF_EBUSY) {
    pthread_mutex_unlock(&s->mu);
  }
  return rc;
}

int rf_kmutex_lock(rf_kmutex_t *km, const char *key, int timeout_ms) {
  if (km == NULL || key == NULL) {
    return RF_EINVAL;
  }
  uint64_t h = rf__hash_str(key);
  rf__kstripe *s = rf__km_stripe(km, h);
  rf__kentry *e = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = rf__km_claim(km, s, key, h, &e);
  if (rc != RF_EBUSY) {
    return rc;
  }
  /* Held (so e cannot go away while we are queued): wait our turn. */
  if (timeout_ms == 0) {
    pthread_mutex_unlock(&s->mu);
    return RF_ETIMEDOUT;
  }
  pthread_cond_t cv;
  if (rf__cond_init(&cv) != 0) {
    pthread_mutex_unlock(&s->mu);
    return RF_ENOMEM;
  }
  rf__kwaiter w;
  memset(&w, 0, sizeof(w));
  w.kind = RF__KW_BLOCKING;
  w.state = RF__KW_WAITING;
  w.cv = &cv;
  rf__kw_append(e, &w);
  struct timespec dl = rf__deadline(timeout_ms);
  while (w.state == RF__KW_WAITING) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&cv, &s->mu);
    } else if (pthread_cond_timedwait(&cv, &s->mu, &dl) == ETIMEDOUT) {
#ifdef RF_TEST_HOOKS
      /* Test builds only: widen the window between "timed out" and "re-took
       * the lock" so a test can grant us inside it. Legal in real builds
       * too: the mutex may be re-acquired arbitrarily late. */
      pthread_mutex_unlock(&s->mu);
      RF_HOOK("kmutex.lock.timed_out");
      pthread_mutex_lock(&s->mu);
#endif
      break;
    }
  }
  if (w.state == RF__KW_WAITING) {
    rf__kw_unlink(e, &w);
    w.state = RF__KW_TIMEDOUT;
    rf__km_release_if_idle(km, s, e);
    rc = RF_ETIMEDOUT;
  } else {
    rc = 0; /* GRANTED, even if the timeout fired too: the key is ours */
  }
  pthread_mutex_unlock(&s->mu);
  pthread_cond_destroy(&cv);
  return rc;
}

int rf_kmutex_unlock(rf_kmutex_t *km, const char *key) {
  if (km == NULL || key == NULL) {
    return RF_EINVAL;
  }
  uint64_t h = rf__hash_str(key);
  rf__kstripe *s = rf__km_stripe(km, h);
  pthread_mutex_lock(&s->mu);
  rf__kentry *e = *rf__km_slot(s, key, h);
  if (e == NULL || !e->held) {
    pthread_mutex_unlock(&s->mu);
    return RF_ESTATE;
  }
  rf__kwaiter *w = e->head;
  if (w == NULL) {
    e->held = false;
    rf__km_release_if_idle(km, s, e);
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  /* Hand over: e->held stays true. */
  rf__kw_unlink(e, w);
  w->state = RF__KW_GRANTED;
  if (w->kind == RF__KW_BLOCKING) {
    /* Signal under the lock: once we unlock, the waiter may return and its
     * stack condvar is gone. */
    pthread_cond_signal(w->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
  }
  bool own_timer_ref = rf__kw_disarm(w);
  pthread_mutex_unlock(&s->mu);
  if (own_timer_ref) {
    rf__kw_drop_timer_ref(w);
  }
  rf__kw_deliver_grant(w);
  return 0;
}

int rf_kmutex_lock_cb(rf_kmutex_t *km, const char *key, int timeout_ms, rf_timer_t *timer,
                      rf_kmutex_cb cb, void *cb_arg) {
  if (km == NULL || key == NULL || cb == NULL) {
    return RF_EINVAL;
  }
  uint64_t h = rf__hash_str(key);
  rf__kstripe *s = rf__km_stripe(km, h);
  rf__kentry *e = NULL;
  pthread_mutex_lock(&s->mu);
  int rc = rf__km_claim(km, s, key, h, &e);
  if (rc == 0) {
    cb(0, cb_arg);
    return 0;
  }
  if (rc != RF_EBUSY) {
    return rc;
  }
  if (timeout_ms == 0) {
    pthread_mutex_unlock(&s->mu);
    cb(RF_ETIMEDOUT, cb_arg);
    return 0;
  }
  rf__kwaiter *w = rf__calloc(1, sizeof(*w));
  if (w == NULL) {
    pthread_mutex_unlock(&s->mu); /* e is held by someone: nothing to free */
    return RF_ENOMEM;
  }
  w->kind = RF__KW_CALLBACK;
  w->state = RF__KW_WAITING;
  w->cb = cb;
  w->cb_arg = cb_arg;
  w->km = km;
  w->stripe = s;
  atomic_init(&w->refs, 1); /* delivery reference */
  rf__kw_append(e, w);
  if (timer != NULL && timeout_ms > 0) {
    pthread_mutex_lock(&km->tmu);
    km->timers_out++;
    pthread_mutex_unlock(&km->tmu);
    atomic_fetch_add_explicit(&w->refs, 1, memory_order_relaxed); /* timer reference */
    w->timer = timer;
    /* Armed under the stripe lock: no grant can race with the setup. */
    rc = rf_timer_after(timer, (uint64_t)timeout_ms, rf__kw_timeout, w, &w->timer_id);
    if (rc != 0) {
      rf__kw_unlink(e, w);
      pthread_mutex_unlock(&s->mu);
      rf__km_timer_done(km);
      rf__free(w);
      return rc;
    }
  }
  pthread_mutex_unlock(&s->mu);
  return 0;
}

size_t rf_kmutex_entries(rf_kmutex_t *km) {
  if (km == NULL) {
    return 0;
  }
  return atomic_load_explicit(&km->entries, memory_order_relaxed);
}

size_t rf_kmutex_waiters(rf_kmutex_t *km, const char *key) {
  if (km == NULL || key == NULL) {
    return 0;
  }
  uint64_t h = rf__hash_str(key);
  rf__kstripe *s = rf__km_stripe(km, h);
  size_t n = 0;
  pthread_mutex_lock(&s->mu);
  rf__kentry *e = *rf__km_slot(s, key, h);
  for (rf__kwaiter *w = e != NULL ? e->head : NULL; w != NULL; w = w->next) {
    n++;
  }
  pthread_mutex_unlock(&s->mu);
  return n;
}
