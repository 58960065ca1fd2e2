/* racefree/hook.h - named hook points for deterministic race tests.
 *
 * The library (and the naive twins in the tests) mark the places where a race
 * window opens with RF_HOOK("module.point"). In a normal build the macro is
 * empty and costs nothing. In a build with RF_TEST_HOOKS defined (the test
 * builds of this project do that), a test can:
 *
 *   rf_hook_arm("cache.after_check", 1);    // next thread to get there parks
 *   ... start thread A ...
 *   rf_hook_wait_parked("cache.after_check", 1, 5000);
 *   ... run thread B to completion through the same code ...
 *   rf_hook_release("cache.after_check", 1);  // A goes on
 *
 * which forces the exact interleaving "A checks, B acts, A acts" the way
 * PostgreSQL's injection points do. Only the first `count` threads that reach
 * an armed point park; later arrivals pass straight through, so B is never
 * caught by the trap set for A.
 *
 * Failure injection uses the same names: rf_hook_fail("pool.submit.alloc", 1)
 * makes the next RF_HOOK_FAIL("pool.submit.alloc") evaluate to true, so an
 * error path can be driven on purpose. rf_test_fail_alloc_after(n) makes the
 * library's n-th next allocation fail (0 = the very next one), for
 * "torture" loops that prove every error path releases what it took.
 *
 * Thread-safety: every function here may be called from any thread. A parked
 * thread waits on a condition variable; it gives up after a safety timeout
 * (RF_HOOK_PARK_MAX_MS, 10 s) and prints a warning, so a broken test fails
 * instead of hanging forever. The fast path when nothing is armed is one
 * relaxed atomic load.
 *
 * Without RF_TEST_HOOKS the test functions still link but do nothing and
 * return RF_ENOTSUP, so a program can probe whether hooks are compiled in.
 */
#ifndef RACEFREE_HOOK_H
#define RACEFREE_HOOK_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RF_HOOK_PARK_MAX_MS 10000
#define RF_HOOK_NAME_MAX    63

#ifdef RF_TEST_HOOKS
void rf__hook_point(const char *name);
bool rf__hook_fail_point(const char *name);
#define RF_HOOK(name)      rf__hook_point(name)
#define RF_HOOK_FAIL(name) rf__hook_fail_point(name)
#else
#define RF_HOOK(name)      ((void)0)
#define RF_HOOK_FAIL(name) (false)
#endif

/* rf_hook_enabled: true when the library was built with RF_TEST_HOOKS. */
bool rf_hook_enabled(void);

/* rf_hook_arm: the next `count` threads reaching `name` park there until
 * released. Re-arming adds to the count. Errors: RF_EINVAL (NULL or long
 * name, count 0), RF_ENOMEM (hook table full), RF_ENOTSUP (no hooks). */
int rf_hook_arm(const char *name, unsigned count);

/* rf_hook_wait_parked: block until at least `n` threads are parked at
 * `name`, or timeout_ms elapses (RF_ETIMEDOUT). */
int rf_hook_wait_parked(const char *name, unsigned n, int timeout_ms);

/* rf_hook_release: let `n` parked (or future parking) threads go on. */
int rf_hook_release(const char *name, unsigned n);

/* rf_hook_fail: the next `count` evaluations of RF_HOOK_FAIL(name) are true. */
int rf_hook_fail(const char *name, unsigned count);

/* rf_hook_hits: how many times `name` was passed since the last reset
 * (counted only while at least one hook is armed or failing). */
unsigned long rf_hook_hits(const char *name);

/* rf_hook_reset: disarm every point and release every parked thread. */
void rf_hook_reset(void);

/* rf_test_fail_alloc_after: the n-th next library allocation fails
 * (n = 0: the next one); n < 0 disables injection. */
int rf_test_fail_alloc_after(long n);

/* rf_test_alloc_count: library allocations made so far (test builds). */
unsigned long rf_test_alloc_count(void);

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_HOOK_H */
