/* racefree/once.h - fallible lazy initialisation: run an init function at
 * most once *successfully*, however many threads ask at the same moment.
 *
 * The race it prevents ("lazy initialization" in the article
 * "Concurrency for NestJS Developers: The Hidden Race Conditions"):
 *
 *   if (!loaded) {         // A and B both see 0 ...
 *     load();              // ... and both load
 *     loaded = 1;
 *   }
 *
 * rf_once_call lets exactly one caller run the init function; callers that
 * arrive while it runs wait for that attempt (blocking form) or queue a
 * callback (rf_once_call_cb, for event-driven code that must not block).
 * Unlike pthread_once, a failure is not cached: the error code is returned to
 * every caller of the attempt that failed, the object goes back to "not
 * initialised", and the next call retries.
 *
 * States: NEW -> RUNNING -> DONE, or RUNNING -> NEW when the attempt fails.
 * After DONE a call costs one acquire load. The object needs no create call
 * (RF_ONCE_INIT) and no destroy call: it holds no resources while idle.
 *
 * See docs/once.md for the memory-ordering argument and the costs.
 */
#ifndef RACEFREE_ONCE_H
#define RACEFREE_ONCE_H

#include <pthread.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

/* Values of rf_once_t.state (internal, listed for RF_ONCE_INIT). */
#define RF__ONCE_NEW     0
#define RF__ONCE_RUNNING 1
#define RF__ONCE_DONE    2

struct rf__once_waiter;

/* The fields are private: use the functions below. The struct is public only
 * so that an rf_once_t can be a static variable with RF_ONCE_INIT.
 *
 * state    NEW/RUNNING/DONE. DONE is stored with release after fn returned 0
 *          and loaded with acquire on the fast path; every other access is
 *          made with `mu` held (see once.c for the full argument). A plain
 *          int accessed only through the compiler's __atomic builtins, so
 *          that the header is the same type in C and C++ (C++ has no
 *          <stdatomic.h> before C++23).
 * mu, cv   guard `waiters` and `runner`; blocking waiters sleep on cv.
 * waiters  the callers queued on the running attempt (blocking ones live on
 *          their own stacks, callback ones are heap nodes).
 * runner   identity of the thread running the attempt, to refuse a
 *          recursive call from inside fn instead of deadlocking. */
typedef struct rf_once {
  int state;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  struct rf__once_waiter *waiters;
  const void *runner;
} rf_once_t;

/* Static initialiser: `static rf_once_t cfg_once = RF_ONCE_INIT;`. The
 * condition variable uses the default clock: nothing here waits with a
 * timeout. For an rf_once_t inside a heap object use rf_once_init. */
#define RF_ONCE_INIT                                                                               \
  { RF__ONCE_NEW, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL }

/* The init function: 0 on success, a negative RF_E... code on failure (a
 * positive return is treated as RF_ELOAD). It runs on the thread of the
 * caller that claimed the attempt, without any lock of the rf_once_t held,
 * so it may block and may take its own locks. It must not call rf_once_call
 * or rf_once_call_cb on the same object (that returns RF_ESTATE). */
typedef int (*rf_once_fn)(void *arg);

/* Completion callback of rf_once_call_cb: status is 0 (initialised) or the
 * failed attempt's code. */
typedef void (*rf_once_cb)(int status, void *cb_arg);

/* rf_once_init: initialise `o` at run time; equivalent to RF_ONCE_INIT.
 * Returns 0, or RF_EINVAL when o is NULL. Not thread-safe: call it before
 * the object is shared. */
int rf_once_init(rf_once_t *o);

/* rf_once_call: make sure fn has run successfully once for `o`.
 *
 * - Already initialised: returns 0 at once (one acquire load, no lock).
 * - Nobody running: this caller runs fn(arg) on its own thread. On success
 *   the object becomes DONE and 0 is returned; on failure fn's code is
 *   returned and the object goes back to not-initialised.
 * - Another thread is running fn: blocks until that attempt ends and returns
 *   that attempt's result (0, or its error code). It does not start a new
 *   attempt of its own after a failure: the next call does.
 *
 * Every caller that returns 0 sees all memory writes fn made (fn's writes
 * happen-before the return).
 *
 * Errors: RF_EINVAL (o or fn NULL), RF_ESTATE (called from inside fn for
 * the same object), or the failed attempt's code.
 * Thread-safety: any number of threads, any mix with rf_once_call_cb.
 * Blocking: runs fn, or waits for the thread running it (no timeout). */
int rf_once_call(rf_once_t *o, rf_once_fn fn, void *arg);

/* rf_once_call_cb: the non-blocking form of rf_once_call.
 *
 * - Already initialised: cb(0, cb_arg) runs synchronously before return.
 * - Nobody running: this caller runs fn(arg) now, then cb(status, cb_arg),
 *   then the callbacks other callers queued meanwhile.
 * - An attempt is running: cb is queued and is called with the attempt's
 *   status on the thread that ran fn, when fn returns. The caller returns
 *   at once.
 *
 * Returns 0 when cb has run or will run exactly once. On error cb is never
 * called: RF_EINVAL (o, fn or cb NULL), RF_ENOMEM (queueing needs a small
 * allocation), RF_ESTATE (called from inside fn for the same object).
 * Callbacks run without any lock of `o` held; they may call rf_once_call
 * (a failed attempt's callbacks may start the retry). They must not block
 * for long: they delay the thread that ran fn and the callbacks after them.
 * Thread-safety: as rf_once_call. */
int rf_once_call_cb(rf_once_t *o, rf_once_fn fn, void *arg, rf_once_cb cb, void *cb_arg);

/* rf_once_done: true once an attempt succeeded. When it returns true, the
 * caller sees fn's writes (acquire load). False for NULL. Never blocks. */
bool rf_once_done(rf_once_t *o);

/* rf_once_reset: for tests only: return a DONE (or never-run) object to the
 * not-initialised state so the next call runs fn again. If an attempt is
 * running, nothing changes (the call does not wait). NULL is ignored. The
 * caller must make sure no other thread relies on the object being DONE. */
void rf_once_reset(rf_once_t *o);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_ONCE_H */
