/* racefree/pool.h - a fixed set of worker threads behind a bounded queue.
 *
 * CPU-heavy work (a report, an image filter) must not run on the threads
 * that serve requests, or every connection on those threads stalls. It goes
 * to this pool instead. Two races are closed:
 *
 *  1. Overload. An unbounded queue (`this.queue.push(task)` in the article
 *     "Concurrency for NestJS Developers: The Hidden Race Conditions")
 *     grows without limit under load; a check-then-push bound
 *     (`if (size < cap) push`) lets concurrent submitters overfill it. Here
 *     the capacity check and the push are one critical section, the ring is
 *     allocated once at create, and a full queue answers RF_EBUSY at once:
 *     back-pressure the caller turns into "503 overloaded, Retry-After".
 *  2. Lost or doubled completions at shutdown. Every accepted task gets
 *     exactly one completion: done(0) after fn ran, or done(RF_ECANCELED)
 *     without running fn when shutdown cancels the queue.
 *
 *   rf_pool_opts_t o = {.threads = 2, .queue_capacity = 64, .nice = 10};
 *   rf_pool_t *p;
 *   rf_pool_create(&p, &o);
 *   if (rf_pool_submit(p, render, on_rendered, req) == RF_EBUSY) reply_503();
 *   ...
 *   rf_pool_shutdown(p, RF_POOL_DRAIN);
 *   rf_pool_destroy(p);
 *
 * Completion comes either by callback (rf_pool_submit: done(status, arg) on
 * the worker right after fn, or on the shutdown caller's thread when
 * cancelled) or by a waitable, reference-counted future
 * (rf_pool_submit_future). See docs/pool.md.
 */
#ifndef RACEFREE_POOL_H
#define RACEFREE_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "racefree/errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

#define RF_POOL_MAX_THREADS 1024u
#define RF_POOL_MAX_QUEUE   ((size_t)1 << 24) /* 16 Mi tasks, 384 MiB of ring */

typedef struct rf_pool rf_pool_t;

/* threads: 1..RF_POOL_MAX_THREADS workers, started at create.
 * queue_capacity: 1..RF_POOL_MAX_QUEUE tasks waiting (not counting the ones
 *   running); the ring is allocated at create and never grows.
 * nice: 0 = workers keep the creator's priority; 1..19 = each worker calls
 *   setpriority(PRIO_PROCESS, gettid(), nice) (on Linux the nice value is
 *   per thread), so CPU work yields to the request threads. The value is
 *   absolute; a failure (e.g. the thread already runs at a higher nice and
 *   may not lower it) is ignored and counted in rf_pool_stats_t.nice_failed.
 * sched_idle: true = each worker switches itself to the SCHED_IDLE policy (Linux):
 *   it gets a CPU only when no normal thread wants one, so a request thread
 *   that wakes up preempts it at once (a nice value only lowers the
 *   worker's share: woken request threads still wait behind it for up to a
 *   scheduler slice). If the switch is refused, the worker falls back to
 *   `nice`; counted in rf_pool_stats_t.sched_idle_failed. */
typedef struct {
  unsigned threads;
  size_t queue_capacity;
  int nice;        /* >0: workers run at lower priority (setpriority per thread) */
  bool sched_idle; /* workers run under SCHED_IDLE (falling back to nice) */
} rf_pool_opts_t;

typedef void (*rf_task_fn)(void *arg);
/* status 0 after fn ran, RF_ECANCELED if cancelled at shutdown (fn not run) */
typedef void (*rf_task_done_fn)(int status, void *arg);

typedef enum { RF_POOL_DRAIN = 0, RF_POOL_CANCEL = 1 } rf_pool_shutdown_mode_t;

/* A statistics snapshot. Each field is read on its own (relaxed atomics, no
 * lock), so the fields are not one consistent cut: queued + busy may briefly
 * miss a task that is between the queue and a worker. Exact once the pool is
 * shut down. completed: fn ran (done(0) follows); rejected: RF_EBUSY
 * answers (not RF_ESHUTDOWN ones); canceled: done(RF_ECANCELED) given. */
typedef struct {
  size_t queued;
  unsigned busy;
  unsigned threads;
  uint64_t completed, rejected, canceled;
  size_t capacity;            /* queue_capacity */
  unsigned nice_failed;       /* workers whose setpriority failed */
  unsigned sched_idle_failed; /* workers refused SCHED_IDLE (they fell back to nice) */
} rf_pool_stats_t;

/* rf_pool_create: allocate the queue and start the workers. *out written on
 * success only. Errors: RF_EINVAL (NULL, threads or queue_capacity 0 or
 * above the maxima, nice outside 0..19), RF_ENOMEM (allocation or thread
 * creation failed; threads already started are stopped and joined, nothing
 * leaks). The caller owns the pool (rf_pool_destroy). */
int rf_pool_create(rf_pool_t **out, const rf_pool_opts_t *opts);

/* rf_pool_submit: queue fn(arg); done(status, arg) (may be NULL) follows
 * exactly once per accepted task: done(0) on the worker after fn returned,
 * or done(RF_ECANCELED) from rf_pool_shutdown(p, RF_POOL_CANCEL) without fn
 * running. Returns 0 (accepted), RF_EBUSY at once when queue_capacity tasks
 * are already waiting (never blocks, never grows the queue), RF_ESHUTDOWN
 * once shutdown has begun, RF_EINVAL (p or fn NULL). On error neither fn
 * nor done runs. Thread-safe, also from tasks and done callbacks. Cost: one
 * mutex round trip, a condvar signal only when a worker is idle. */
int rf_pool_submit(rf_pool_t *p, rf_task_fn fn, rf_task_done_fn done, void *arg);

typedef struct rf_future rf_future_t;

/* rf_pool_submit_future: as rf_pool_submit, with a future instead of a
 * callback. On 0, *out is a future the caller owns one reference to and
 * must release with rf_future_release, whether or not it waited and
 * whether or not the task has finished: the pool holds its own reference
 * until the task completes, so releasing early neither leaks nor crashes.
 * Errors as rf_pool_submit, plus RF_ENOMEM (the future); *out untouched on
 * error. Thread-safe. */
int rf_pool_submit_future(rf_pool_t *p, rf_task_fn fn, void *arg, rf_future_t **out);

/* rf_future_wait: wait until the task finished (timeout_ms < 0: forever;
 * 0: poll; > 0: at most that long, CLOCK_MONOTONIC). 0 and *task_status
 * (may be NULL) = 0 if fn ran or RF_ECANCELED if it was cancelled;
 * RF_ETIMEDOUT (not finished yet); RF_EINVAL (f NULL). Several threads may
 * wait on one future. Must not be called after the caller's
 * rf_future_release. Blocks. */
int rf_future_wait(rf_future_t *f, int timeout_ms, int *task_status);

/* rf_future_release: drop the caller's reference (NULL: no-op). The future
 * is freed when the task has also completed. Thread-safe; never blocks. */
void rf_future_release(rf_future_t *f);

/* rf_pool_shutdown: stop accepting tasks (rf_pool_submit -> RF_ESHUTDOWN),
 * then RF_POOL_DRAIN: workers run every queued task, then exit; or
 * RF_POOL_CANCEL: tasks still queued are removed and completed with
 * done(RF_ECANCELED) / future status RF_ECANCELED on this thread, fn not
 * run; tasks already running finish normally. Then joins every worker
 * (blocks until running tasks return). Returns 0; RF_ESHUTDOWN if shutdown
 * was already called; RF_ESTATE when called from one of p's own workers
 * (it cannot join itself); RF_EINVAL (NULL, unknown mode). */
int rf_pool_shutdown(rf_pool_t *p, rf_pool_shutdown_mode_t mode);

/* rf_pool_destroy: rf_pool_shutdown(p, RF_POOL_DRAIN) if not done yet, then
 * free the pool. NULL: no-op; called from one of p's own workers it does
 * nothing (it cannot join itself). Must not run concurrently with other
 * calls on p. Outstanding futures stay valid until
 * released. */
void rf_pool_destroy(rf_pool_t *p);

/* rf_pool_stats: fill *out (see rf_pool_stats_t). Lock-free, callable from
 * any thread at any time before destroy (e.g. a /metrics scrape). NULL
 * arguments: no-op. */
void rf_pool_stats(rf_pool_t *p, rf_pool_stats_t *out);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_POOL_H */
