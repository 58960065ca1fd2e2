/* internal.h - shared internals of libracefree (not installed).
 *
 * Every allocation of the library goes through rf__malloc and friends so
 * that test builds can make the n-th allocation fail (rf_test_fail_alloc_after)
 * and prove every error path clean. Names with rf__ are internal.
 */
#ifndef RACEFREE_INTERNAL_H
#define RACEFREE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "racefree/errors.h"
#include "racefree/hook.h"

void *rf__malloc(size_t n);
void *rf__calloc(size_t count, size_t size);
void *rf__realloc(void *p, size_t n);
char *rf__strdup(const char *s);
char *rf__strndup(const char *s, size_t n);
void rf__free(void *p);

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t rf__now_ns(void);
uint64_t rf__now_ms(void);

/* An absolute CLOCK_MONOTONIC deadline timeout_ms from now, for
 * pthread_cond_timedwait on a condvar created with rf__cond_init. */
struct timespec rf__deadline(int timeout_ms);

/* Initialise a condition variable that waits on CLOCK_MONOTONIC. */
int rf__cond_init(void *cond);

/* FNV-1a 64-bit hash of a NUL-terminated string. */
uint64_t rf__hash_str(const char *s);

#define RF__UNUSED(x) ((void)(x))

#endif /* RACEFREE_INTERNAL_H */
