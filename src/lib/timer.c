/* timer.c - one thread and a binary min-heap of deadlines (see timer.h).
 *
 * Data: every armed timer is one node. The heap (an array of node pointers)
 * orders nodes by (deadline_ns, id); ids grow monotonically, so equal
 * deadlines fire in FIFO order. Each node remembers its heap position, and
 * an intrusive hash table (chained through node->hnext, buckets indexed by
 * id & mask: sequential ids spread perfectly) maps id -> node, so cancel is
 * a hash lookup plus an O(log n) heap removal. We chose the index over lazy
 * deletion (leaving cancelled nodes in the heap with a flag) because the
 * server cancels most of its timers (lock timeouts that are granted in time):
 * lazy deletion would keep their memory until the deadline passes.
 *
 * Lock protocol: one mutex `mu` guards the heap, the index, next_id and the
 * state. The timer thread pops a due node and removes it from the index
 * while holding mu, then releases mu and calls the callback. That pop is the
 * linearisation point of the "fire or cancel" decision: a cancel that takes
 * mu before it finds the node and wins (0); a cancel after it finds nothing
 * and loses (RF_ENOENT), even though the callback may not have started yet.
 * Hence exactly one outcome per id. Callbacks run with mu released, so they
 * may arm and cancel timers, and code that holds its own lock while calling
 * rf_timer_after/cancel (kmutex does) cannot deadlock against a callback
 * that takes that lock: the order is always "user lock -> mu".
 *
 * Waiting: the thread sleeps on `cv` (CLOCK_MONOTONIC, rf__cond_init) until
 * the top deadline, or indefinitely when the heap is empty. rf_timer_after
 * signals only when the new node became the top (an earlier deadline);
 * cancelling the top does not signal: the thread wakes at the old deadline,
 * finds a later top and sleeps again, which is cheaper than a wakeup per
 * cancel.
 *
 * Shutdown: state RUNNING -> DRAINING (run_pending: the thread fires every
 * node regardless of deadline, in heap order, then exits) or STOPPING (the
 * thread exits at once, nodes stay and are freed unrun after the join) ->
 * STOPPED after the join.
 */
#include "racefree/timer.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "internal.h"

typedef struct rf__tnode {
  uint64_t deadline_ns;
  uint64_t id; /* also the FIFO sequence number */
  rf_timer_fn fn;
  void *arg;
  size_t pos;              /* index in the heap */
  struct rf__tnode *hnext; /* id index chain */
} rf__tnode;

enum { RF__T_RUNNING, RF__T_DRAINING, RF__T_STOPPING, RF__T_STOPPED };

struct rf_timer {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  rf__tnode **heap;
  size_t len, cap;
  rf__tnode **buckets;
  size_t nbuckets; /* power of two */
  uint64_t next_id;
  int state;
  bool shutdown_called;
  pthread_t thread;
};

#define RF__TIMER_INIT_CAP     64
#define RF__TIMER_INIT_BUCKETS 64

/* ------------------------------------------------------------ heap */

static bool rf__tnode_less(const rf__tnode *a, const rf__tnode *b) {
  return a->deadline_ns < b->deadline_ns || (a->deadline_ns == b->deadline_ns && a->id < b->id);
}

static void rf__heap_set(rf_timer_t *t, size_t i, rf__tnode *n) {
  t->heap[i] = n;
  n->pos = i;
}

static void rf__heap_up(rf_timer_t *t, size_t i) {
  rf__tnode *n = t->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!rf__tnode_less(n, t->heap[parent])) {
      break;
    }
    rf__heap_set(t, i, t->heap[parent]);
    i = parent;
  }
  rf__heap_set(t, i, n);
}

static void rf__heap_down(rf_timer_t *t, size_t i) {
  rf__tnode *n = t->heap[i];
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= t->len) {
      break;
    }
    size_t m = (l + 1 < t->len && rf__tnode_less(t->heap[l + 1], t->heap[l])) ? l + 1 : l;
    if (!rf__tnode_less(t->heap[m], n)) {
      break;
    }
    rf__heap_set(t, i, t->heap[m]);
    i = m;
  }
  rf__heap_set(t, i, n);
}

/* Remove heap[i] (caller holds mu). */
static void rf__heap_remove(rf_timer_t *t, size_t i) {
  t->len--;
  if (i == t->len) {
    return;
  }
  rf__heap_set(t, i, t->heap[t->len]);
  if (i > 0 && rf__tnode_less(t->heap[i], t->heap[(i - 1) / 2])) {
    rf__heap_up(t, i);
  } else {
    rf__heap_down(t, i);
  }
}

/* ------------------------------------------------------------ id index */

static rf__tnode **rf__index_slot(rf_timer_t *t, uint64_t id) {
  rf__tnode **pp = &t->buckets[id & (t->nbuckets - 1)];
  while (*pp != NULL && (*pp)->id != id) {
    pp = &(*pp)->hnext;
  }
  return pp;
}

/* Double the bucket array when the load factor passes 1. Failure to grow is
 * harmless (chains get longer), so it is not reported. */
static void rf__index_maybe_grow(rf_timer_t *t) {
  if (t->len < t->nbuckets || t->nbuckets > SIZE_MAX / 2 / sizeof(rf__tnode *)) {
    return;
  }
  size_t nb = t->nbuckets * 2;
  rf__tnode **b = rf__calloc(nb, sizeof(rf__tnode *));
  if (b == NULL) {
    return;
  }
  for (size_t i = 0; i < t->nbuckets; i++) {
    rf__tnode *n = t->buckets[i];
    while (n != NULL) {
      rf__tnode *next = n->hnext;
      n->hnext = b[n->id & (nb - 1)];
      b[n->id & (nb - 1)] = n;
      n = next;
    }
  }
  rf__free(t->buckets);
  t->buckets = b;
  t->nbuckets = nb;
}

static void rf__index_remove(rf_timer_t *t, rf__tnode *n) {
  rf__tnode **pp = rf__index_slot(t, n->id);
  *pp = n->hnext;
  n->hnext = NULL;
}

/* ------------------------------------------------------------ thread */

static struct timespec rf__ns_to_ts(uint64_t ns) {
  struct timespec ts;
  ts.tv_sec = (time_t)(ns / 1000000000u);
  ts.tv_nsec = (long)(ns % 1000000000u);
  return ts;
}

/* Pop the top node (caller holds mu). */
static rf__tnode *rf__timer_pop(rf_timer_t *t) {
  rf__tnode *n = t->heap[0];
  rf__heap_remove(t, 0);
  rf__index_remove(t, n);
  return n;
}

static void *rf__timer_main(void *arg) {
  rf_timer_t *t = arg;
  pthread_mutex_lock(&t->mu);
  for (;;) {
    if (t->state == RF__T_STOPPING) {
      break;
    }
    if (t->len == 0) {
      if (t->state == RF__T_DRAINING) {
        break;
      }
      pthread_cond_wait(&t->cv, &t->mu);
      continue;
    }
    uint64_t deadline = t->heap[0]->deadline_ns;
    if (t->state == RF__T_DRAINING || deadline <= rf__now_ns()) {
      rf__tnode *n = rf__timer_pop(t);
      pthread_mutex_unlock(&t->mu);
      /* Popped: from here on cancel(n->id) returns RF_ENOENT. */
      RF_HOOK("timer.before_fire");
      n->fn(n->arg);
      rf__free(n);
      pthread_mutex_lock(&t->mu);
      continue;
    }
    if (deadline == UINT64_MAX) {
      pthread_cond_wait(&t->cv, &t->mu);
    } else {
      struct timespec ts = rf__ns_to_ts(deadline);
      pthread_cond_timedwait(&t->cv, &t->mu, &ts);
    }
  }
  pthread_mutex_unlock(&t->mu);
  return NULL;
}

/* ------------------------------------------------------------ API */

int rf_timer_create(rf_timer_t **out) {
  if (out == NULL) {
    return RF_EINVAL;
  }
  int rc = RF_ENOMEM;
  bool mu_ok = false, cv_ok = false;
  rf_timer_t *t = rf__calloc(1, sizeof(*t));
  if (t == NULL) {
    goto fail;
  }
  t->heap = rf__calloc(RF__TIMER_INIT_CAP, sizeof(rf__tnode *));
  t->buckets = rf__calloc(RF__TIMER_INIT_BUCKETS, sizeof(rf__tnode *));
  if (t->heap == NULL || t->buckets == NULL) {
    goto fail;
  }
  t->cap = RF__TIMER_INIT_CAP;
  t->nbuckets = RF__TIMER_INIT_BUCKETS;
  t->next_id = 1;
  t->state = RF__T_RUNNING;
  if (pthread_mutex_init(&t->mu, NULL) != 0) {
    goto fail;
  }
  mu_ok = true;
  if (rf__cond_init(&t->cv) != 0) {
    goto fail;
  }
  cv_ok = true;
  if (RF_HOOK_FAIL("timer.create.thread") ||
      pthread_create(&t->thread, NULL, rf__timer_main, t) != 0) {
    goto fail;
  }
  *out = t;
  return 0;
fail:
  if (t != NULL) {
    if (cv_ok) {
      pthread_cond_destroy(&t->cv);
    }
    if (mu_ok) {
      pthread_mutex_destroy(&t->mu);
    }
    rf__free(t->heap);
    rf__free(t->buckets);
    rf__free(t);
  }
  return rc;
}

int rf_timer_after(rf_timer_t *t, uint64_t delay_ms, rf_timer_fn fn, void *arg, uint64_t *id) {
  if (t == NULL || fn == NULL) {
    return RF_EINVAL;
  }
  rf__tnode *n = rf__malloc(sizeof(*n));
  if (n == NULL) {
    return RF_ENOMEM;
  }
  uint64_t now = rf__now_ns();
  n->deadline_ns =
      delay_ms > (UINT64_MAX - now) / 1000000u ? UINT64_MAX : now + delay_ms * 1000000u;
  n->fn = fn;
  n->arg = arg;
  n->hnext = NULL;

  int rc = 0;
  pthread_mutex_lock(&t->mu);
  if (t->state != RF__T_RUNNING) {
    rc = RF_ESHUTDOWN;
    goto out;
  }
  if (t->len == t->cap) {
    rf__tnode **h = NULL;
    if (t->cap <= SIZE_MAX / 2 / sizeof(rf__tnode *)) {
      h = rf__realloc(t->heap, t->cap * 2 * sizeof(rf__tnode *));
    }
    if (h == NULL) {
      rc = RF_ENOMEM;
      goto out;
    }
    t->heap = h;
    t->cap *= 2;
  }
  n->id = t->next_id++;
  rf__index_maybe_grow(t);
  rf__tnode **slot = rf__index_slot(t, n->id);
  *slot = n;
  t->heap[t->len] = n;
  n->pos = t->len++;
  rf__heap_up(t, n->pos);
  if (id != NULL) {
    *id = n->id;
  }
  if (n->pos == 0) {
    pthread_cond_signal(&t->cv); /* new earliest deadline */
  }
out:
  pthread_mutex_unlock(&t->mu);
  if (rc != 0) {
    rf__free(n);
  }
  return rc;
}

int rf_timer_cancel(rf_timer_t *t, uint64_t id) {
  if (t == NULL || id == 0) {
    return RF_EINVAL;
  }
  rf__tnode *n = NULL;
  int rc = RF_ENOENT;
  pthread_mutex_lock(&t->mu);
  if (t->state == RF__T_STOPPED) {
    rc = RF_ESHUTDOWN; /* joined: no callback runs any more */
  } else {
    /* Also while STOPPING: a node still indexed will never run. */
    rf__tnode **slot = rf__index_slot(t, id);
    n = *slot;
    if (n != NULL) {
      *slot = n->hnext;
      rf__heap_remove(t, n->pos);
      rc = 0;
    }
  }
  pthread_mutex_unlock(&t->mu);
  rf__free(n);
  return rc;
}

size_t rf_timer_pending(rf_timer_t *t) {
  if (t == NULL) {
    return 0;
  }
  pthread_mutex_lock(&t->mu);
  size_t n = t->len;
  pthread_mutex_unlock(&t->mu);
  return n;
}

int rf_timer_shutdown(rf_timer_t *t, bool run_pending) {
  if (t == NULL) {
    return RF_EINVAL;
  }
  pthread_mutex_lock(&t->mu);
  if (t->shutdown_called) {
    pthread_mutex_unlock(&t->mu);
    return RF_ESHUTDOWN;
  }
  if (pthread_equal(pthread_self(), t->thread)) {
    pthread_mutex_unlock(&t->mu);
    return RF_ESTATE;
  }
  t->shutdown_called = true;
  t->state = run_pending ? RF__T_DRAINING : RF__T_STOPPING;
  pthread_cond_signal(&t->cv);
  pthread_mutex_unlock(&t->mu);

  pthread_join(t->thread, NULL);

  /* The thread is gone. Other threads may still call rf_timer_cancel (and
   * get RF_ESHUTDOWN), so the nodes it left are freed under mu. */
  pthread_mutex_lock(&t->mu);
  t->state = RF__T_STOPPED;
  for (size_t i = 0; i < t->len; i++) {
    rf__free(t->heap[i]);
  }
  t->len = 0;
  memset(t->buckets, 0, t->nbuckets * sizeof(rf__tnode *));
  pthread_mutex_unlock(&t->mu);
  return 0;
}

void rf_timer_destroy(rf_timer_t *t) {
  if (t == NULL) {
    return;
  }
  (void)rf_timer_shutdown(t, false);
  pthread_cond_destroy(&t->cv);
  pthread_mutex_destroy(&t->mu);
  rf__free(t->heap);
  rf__free(t->buckets);
  rf__free(t);
}
