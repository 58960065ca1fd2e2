/* once.c - fallible lazy initialisation (see racefree/once.h).
 *
 * Memory ordering
 * ---------------
 * The whole point of the fast path is that a caller who finds the object
 * initialised touches nothing but one word: `state`. That is only correct if
 * seeing DONE also means seeing everything fn wrote (the configuration it
 * parsed, the pointer it published). The protocol:
 *
 *   runner:  fn(arg)                       -- plain writes W
 *            lock(mu)
 *            store(state, DONE, release)   -- W happen-before this store
 *            unlock(mu)
 *
 *   reader:  load(state, acquire) == DONE  -- synchronises with the store
 *            ... use what fn wrote          -- W happen-before this use
 *
 * A release store and an acquire load that reads it form a synchronises-with
 * edge (C11 5.1.2.4), so W happen-before every use made after the fast path
 * returned. A relaxed load would not do: on a weakly ordered CPU (ARM,
 * POWER) the reader could see DONE and still read the old values of W.
 *
 * Every other access to `state` (the NEW -> RUNNING claim, RUNNING -> NEW on
 * failure, the DONE store itself) is made with `mu` held, and every reader
 * that does not see DONE on the fast path takes `mu` before deciding
 * anything. The mutex orders those accesses among themselves, so they can be
 * relaxed; the DONE store is the only one a lock-free reader can observe
 * and so the only one that needs release. A reader that sees DONE under the
 * mutex is ordered after the runner's unlock and sees W through the mutex.
 *
 * Waiting
 * -------
 * Callers arriving during an attempt queue a waiter node on `waiters`.
 * Blocking callers keep their node on their own stack and sleep on `cv`
 * until the runner marks the node done (with `mu` held) -- the node stays
 * valid because its owner cannot return before that. Callback callers queue
 * a heap node. When the attempt ends the runner, with `mu` held, stores the
 * new state, detaches the whole list, marks the stack nodes done and
 * broadcasts; after unlocking it runs the callbacks. So each waiter receives
 * the status of exactly the attempt it waited for, even if a later attempt
 * has started (and failed differently) by the time it wakes up.
 */
#include "racefree/once.h"

#include "internal.h"

typedef struct rf__once_waiter {
  struct rf__once_waiter *next;
  rf_once_cb cb; /* NULL: a blocking waiter (node on its owner's stack) */
  void *cb_arg;
  int status; /* the attempt's result, written under mu */
  bool done;  /* blocking waiters: set under mu when the attempt ended */
} rf__once_waiter;

/* One byte per thread whose address identifies the thread (for the
 * recursion check); only its address is used. */
static _Thread_local char rf__once_self;

int rf_once_init(rf_once_t *o) {
  if (o == NULL) {
    return RF_EINVAL;
  }
  *o = (rf_once_t)RF_ONCE_INIT;
  return 0;
}

bool rf_once_done(rf_once_t *o) {
  return o != NULL && __atomic_load_n(&o->state, __ATOMIC_ACQUIRE) == RF__ONCE_DONE;
}

static int rf__once_norm(int status) {
  return status > 0 ? RF_ELOAD : status;
}

/* Runs fn as the claimed attempt (state is RUNNING, mu not held), publishes
 * the outcome, wakes the blocking waiters and returns the callback waiters
 * of this attempt, whose `status` is filled in, for the caller to run. */
static int rf__once_run(rf_once_t *o, rf_once_fn fn, void *arg, rf__once_waiter **cbs) {
  int status = rf__once_norm(fn(arg));
  rf__once_waiter *list;
  rf__once_waiter *cb_list = NULL;

  pthread_mutex_lock(&o->mu);
  if (status == 0) {
    /* The release store: see "Memory ordering" above. */
    __atomic_store_n(&o->state, RF__ONCE_DONE, __ATOMIC_RELEASE);
  } else {
    __atomic_store_n(&o->state, RF__ONCE_NEW, __ATOMIC_RELAXED);
  }
  o->runner = NULL;
  list = o->waiters;
  o->waiters = NULL;
  while (list != NULL) {
    rf__once_waiter *w = list;
    list = w->next; /* read before `done`: a stack node may vanish after */
    w->status = status;
    if (w->cb != NULL) {
      w->next = cb_list;
      cb_list = w;
    } else {
      w->done = true;
    }
  }
  pthread_cond_broadcast(&o->cv);
  pthread_mutex_unlock(&o->mu);
  *cbs = cb_list;
  return status;
}

/* Runs and frees the callback waiters detached by rf__once_run. The list is
 * in reverse arrival order; callbacks are independent, order is not part
 * of the contract. */
static void rf__once_run_cbs(rf__once_waiter *cbs) {
  while (cbs != NULL) {
    rf__once_waiter *w = cbs;
    cbs = w->next;
    w->cb(w->status, w->cb_arg);
    rf__free(w);
  }
}

int rf_once_call(rf_once_t *o, rf_once_fn fn, void *arg) {
  if (o == NULL || fn == NULL) {
    return RF_EINVAL;
  }
  /* Fast path: one acquire load. */
  if (__atomic_load_n(&o->state, __ATOMIC_ACQUIRE) == RF__ONCE_DONE) {
    return 0;
  }
  RF_HOOK("once.after_check");

  int rc = 0;
  rf__once_waiter self = {0};
  rf__once_waiter *cbs = NULL;

  pthread_mutex_lock(&o->mu);
  int state = __atomic_load_n(&o->state, __ATOMIC_RELAXED);
  if (state == RF__ONCE_DONE) {
    pthread_mutex_unlock(&o->mu);
    return 0;
  }
  if (state == RF__ONCE_NEW) {
    /* Claim the attempt. Relaxed: only lock holders look at RUNNING. */
    __atomic_store_n(&o->state, RF__ONCE_RUNNING, __ATOMIC_RELAXED);
    o->runner = &rf__once_self;
    pthread_mutex_unlock(&o->mu);
    rc = rf__once_run(o, fn, arg, &cbs);
    rf__once_run_cbs(cbs);
    return rc;
  }
  if (o->runner == &rf__once_self) {
    pthread_mutex_unlock(&o->mu);
    return RF_ESTATE;
  }
  /* RUNNING on another thread: queue on this attempt and wait. The hook
   * lets a test see this caller queued before it lets the attempt end. */
  self.next = o->waiters;
  /* A stack node in a shared list: safe, this frame cannot return before
   * the runner has unlinked it and set `done` (see "Waiting" above). */
  // cppcheck-suppress autoVariables
  o->waiters = &self;
  pthread_mutex_unlock(&o->mu);
  RF_HOOK("once.queued");
  pthread_mutex_lock(&o->mu);
  while (!self.done) {
    pthread_cond_wait(&o->cv, &o->mu);
  }
  rc = self.status;
  pthread_mutex_unlock(&o->mu);
  return rc;
}

int rf_once_call_cb(rf_once_t *o, rf_once_fn fn, void *arg, rf_once_cb cb, void *cb_arg) {
  if (o == NULL || fn == NULL || cb == NULL) {
    return RF_EINVAL;
  }
  if (__atomic_load_n(&o->state, __ATOMIC_ACQUIRE) == RF__ONCE_DONE) {
    cb(0, cb_arg);
    return 0;
  }
  RF_HOOK("once.after_check");

  rf__once_waiter *cbs = NULL;
  pthread_mutex_lock(&o->mu);
  int state = __atomic_load_n(&o->state, __ATOMIC_RELAXED);
  if (state == RF__ONCE_DONE) {
    pthread_mutex_unlock(&o->mu);
    cb(0, cb_arg);
    return 0;
  }
  if (state == RF__ONCE_NEW) {
    __atomic_store_n(&o->state, RF__ONCE_RUNNING, __ATOMIC_RELAXED);
    o->runner = &rf__once_self;
    pthread_mutex_unlock(&o->mu);
    int status = rf__once_run(o, fn, arg, &cbs);
    cb(status, cb_arg);
    rf__once_run_cbs(cbs);
    return 0;
  }
  if (o->runner == &rf__once_self) {
    pthread_mutex_unlock(&o->mu);
    return RF_ESTATE;
  }
  /* RUNNING elsewhere: the node is allocated under the lock so that the
   * attempt cannot end between "it is running" and "we are queued". */
  rf__once_waiter *w = rf__calloc(1, sizeof(*w));
  if (w == NULL) {
    pthread_mutex_unlock(&o->mu);
    return RF_ENOMEM;
  }
  w->cb = cb;
  w->cb_arg = cb_arg;
  w->next = o->waiters;
  o->waiters = w;
  pthread_mutex_unlock(&o->mu);
  RF_HOOK("once.queued");
  return 0;
}

void rf_once_reset(rf_once_t *o) {
  if (o == NULL) {
    return;
  }
  pthread_mutex_lock(&o->mu);
  if (__atomic_load_n(&o->state, __ATOMIC_RELAXED) != RF__ONCE_RUNNING) {
    __atomic_store_n(&o->state, RF__ONCE_NEW, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&o->mu);
}
