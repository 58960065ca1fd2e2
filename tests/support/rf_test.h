/* rf_test.h - helpers shared by the cmocka tests of racefree.
 *
 * Threads: rf_test_spawn/rf_test_join wrap pthreads and fail the test on
 * error. rf_test_run_parallel runs `n` copies of fn released together through
 * a barrier, which is how the stress tests make contention likely; the race
 * tests use named hooks (racefree/hook.h) instead, for exact interleavings.
 */
#ifndef RF_TEST_H
#define RF_TEST_H

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "racefree/errors.h"
#include "racefree/hook.h"

/* Start a thread running fn(arg); aborts the test on failure. */
pthread_t rf_test_spawn(void *(*fn)(void *), void *arg);
/* Join a thread; returns its result. */
void *rf_test_join(pthread_t t);

/* Run fn(arg, index) on n threads released together; waits for all. */
void rf_test_run_parallel(int n, void (*fn)(void *arg, int index), void *arg);

/* Milliseconds since an arbitrary monotonic origin. */
uint64_t rf_test_now_ms(void);

/* Sleep for ms milliseconds (for tests that need time to pass, e.g. TTLs;
 * never to "let a race happen"). */
void rf_test_sleep_ms(unsigned ms);

/* Scale an iteration count down under sanitizers (TSan is ~10x slower). */
long rf_test_iters(long normal);

/* Park helper: assert that a thread reached hook `name` within 5 s. */
#define RF_ASSERT_PARKED(name, n) assert_int_equal(rf_hook_wait_parked((name), (n), 5000), 0)

#endif
