/* singleflight_int.h - the internal extension of singleflight that the cache
 * is built on (not installed).
 *
 * The cache must insert a loaded value *before* the flight leaves the table:
 * otherwise a caller arriving between "flight removed" and "value cached"
 * would find neither and load again. So the table accepts a completion hook
 * that runs inside rf_sf_complete with the flight's bucket lock held, before
 * the flight is unlinked. Lock order: singleflight bucket -> whatever the
 * hook takes (the cache's stripe lock); the hook must not call back into the
 * singleflight table.
 */
#ifndef RACEFREE_SINGLEFLIGHT_INT_H
#define RACEFREE_SINGLEFLIGHT_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "racefree/singleflight.h"

/* Completion hook. `data` is what the loader attached with
 * rf__sf_call_set_data (NULL if nothing): the hook owns it from now on.
 * `in_table` is false when rf_sf_forget detached the flight. `loaded` is
 * false when the flight was completed with rf__sf_complete_result (an
 * existing result, no load happened). Called with the bucket lock held, so
 * it must not run user code (a value's free function): whatever it wants to
 * free it returns, and the table passes that to `after` once the bucket
 * lock is released (NULL: nothing to do). */
typedef void *(*rf__sf_hook)(void *hook_arg, const char *key, uint64_t hash, rf_sf_result_t *r,
                             void *data, bool in_table, bool loaded);
typedef void (*rf__sf_after)(void *hook_arg, void *deferred);

/* rf__sf_create_ex: rf_sf_create with a completion hook and its `after`
 * function, and on_free, called with hook_arg when the table's memory is
 * finally released (after rf_sf_destroy and the completion of the last
 * flight). Any of them may be NULL. */
int rf__sf_create_ex(rf_sf_t **out, rf__sf_hook hook, rf__sf_after after, void (*on_free)(void *),
                     void *hook_arg);

/* Attach loader data to a call not yet completed (from inside the loader). */
void rf__sf_call_set_data(rf_sf_call_t *call, void *data);

/* The hash of the call's key (rf__hash_str). */
uint64_t rf__sf_call_hash(const rf_sf_call_t *call);

/* rf__sf_complete_result: complete `call` with an existing result (the call
 * takes its own reference; the caller keeps its one). Same contract as
 * rf_sf_complete otherwise; the hook sees loaded = false. */
int rf__sf_complete_result(rf_sf_call_t *call, rf_sf_result_t *r);

#endif /* RACEFREE_SINGLEFLIGHT_INT_H */
