/* racefree/timer.h - one thread, a min-heap of deadlines: waiting without
 * blocking anyone.
 *
 * A request that must wait (a simulated slow upstream, the timeout of a
 * queued lock request, a retry backoff) must not sleep on a server thread:
 * that thread serves many connections. Instead it arms a timer and returns;
 * the timer thread calls back when the deadline passes.
 *
 *   rf_timer_t *t;
 *   rf_timer_create(&t);
 *   uint64_t id;
 *   rf_timer_after(t, 50, upstream_done, conn, &id);   // 50 ms from now
 *   ...
 *   if (rf_timer_cancel(t, id) == 0) { ... upstream_done will never run ... }
 *   rf_timer_shutdown(t, true);   // fire what is left, join the thread
 *   rf_timer_destroy(t);
 *
 * The guarantee, per timer id: exactly one of these happens, once --
 *   (a) its callback runs (on the timer thread), or
 *   (b) rf_timer_cancel(id) returns 0 (then the callback never runs and the
 *       caller owns `arg` again), or
 *   (c) the timer is dropped unrun by rf_timer_shutdown(t, false) or
 *       rf_timer_destroy (the caller must know what to free).
 * A cancel that returns RF_ENOENT lost the race: the callback has run or is
 * running right now on the timer thread (cancel never waits for it).
 *
 * Order: callbacks run in deadline order; timers with equal deadlines run
 * in the order they were armed (FIFO: the id is also the sequence number).
 * Clock: CLOCK_MONOTONIC, so wall-clock jumps do not fire or stall timers.
 * Callbacks run with no lock held, so they may call rf_timer_after and
 * rf_timer_cancel on the same timer (but not shutdown/destroy).
 *
 * Cost: rf_timer_after and rf_timer_cancel are O(log n) (heap plus an
 * id->node hash index), one allocation per timer. See docs/timer.md.
 */
#ifndef RACEFREE_TIMER_H
#define RACEFREE_TIMER_H

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

typedef struct rf_timer rf_timer_t;

/* A timer callback: runs on the timer thread, must be short and never
 * block (every later timer waits for it). */
typedef void (*rf_timer_fn)(void *arg);

/* rf_timer_create: start the timer thread. *out is written on success only.
 * Errors: RF_EINVAL (out NULL), RF_ENOMEM (allocation or thread creation
 * failed; nothing is left behind). The caller owns the timer and frees it
 * with rf_timer_destroy. */
int rf_timer_create(rf_timer_t **out);

/* rf_timer_destroy: stop the thread if rf_timer_shutdown was not called
 * (as rf_timer_shutdown(t, false): pending callbacks are NOT run, their
 * args are not touched), join it and free everything. NULL is a no-op.
 * Blocks while a callback is running. Must not be called from a timer
 * callback, nor concurrently with any other call on t. */
void rf_timer_destroy(rf_timer_t *t);

/* rf_timer_after: run fn(arg) on the timer thread delay_ms milliseconds
 * from now (0: as soon as possible, after timers already due). A delay so
 * large that the deadline overflows saturates (the timer then never comes
 * due; it can still be cancelled, and rf_timer_shutdown(t, true) runs
 * it). If id is not NULL the timer's id (never 0, unique for the life of t)
 * is stored there, before the callback can run.
 * Errors: RF_EINVAL (t or fn NULL), RF_ENOMEM, RF_ESHUTDOWN (shutdown has
 * begun; also from callbacks run by rf_timer_shutdown(t, true)). On error
 * fn will never run for this call. Thread-safe; never blocks beyond the
 * timer's mutex. */
int rf_timer_after(rf_timer_t *t, uint64_t delay_ms, rf_timer_fn fn, void *arg, uint64_t *id);

/* rf_timer_cancel: remove a pending timer. 0: removed, its callback will
 * never run. RF_ENOENT: unknown id, already fired, or running right now
 * (cancel does not wait for it). RF_EINVAL: t NULL or id 0. RF_ESHUTDOWN:
 * rf_timer_shutdown has joined the thread, so no callback of t runs any
 * more (each pending one was either fired or dropped). Thread-safe,
 * callable from callbacks; O(log n); never blocks beyond the timer's
 * mutex. */
int rf_timer_cancel(rf_timer_t *t, uint64_t id);

/* rf_timer_shutdown: stop accepting timers (rf_timer_after returns
 * RF_ESHUTDOWN from now on), then either fire every pending timer now, in
 * deadline/FIFO order (run_pending true), or drop them unrun (false), and
 * join the timer thread. Returns 0; RF_ESHUTDOWN if shutdown was already
 * called (the first call does the work); RF_ESTATE when called from a
 * timer callback (it cannot join its own thread); RF_EINVAL for NULL.
 * Blocks until the thread has exited. rf_timer_destroy is still needed. */
int rf_timer_shutdown(rf_timer_t *t, bool run_pending);

/* rf_timer_pending: timers armed and neither fired nor cancelled (a
 * snapshot, taken under the mutex). 0 for NULL. Thread-safe. */
size_t rf_timer_pending(rf_timer_t *t);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_TIMER_H */
