/* run.h - executing a scenario file: the open model (arrival phases,
 * latency from the intended start so that a slow server cannot hide its
 * queueing -- no coordinated omission), synchronised bursts, before/after
 * flows, expectations, captures, invariants and the request history.
 *
 * Threads: one coordinating thread (the caller of rc_run) drives the phases
 * and T worker threads each run an epoll loop with their share of virtual
 * users. The coordinator talks to a worker through a small mutex-protected
 * command queue plus an eventfd wake-up; workers report burst readiness,
 * finished virtual users and single-flow results through the run's mutex
 * and condition variable. Nothing else is shared while running, apart from
 * the scenario file and the global variables, which are read-only whenever
 * a worker can see them (they change only between phases, before the
 * command that publishes them, under the worker's mutex).
 */
#ifndef RC_RUN_H
#define RC_RUN_H

#include <jansson.h>

#include "report.h"
#include "scenario.h"

typedef struct rc_run_opts {
  const rc_file_t *file;
  const char *target; /* overrides config.target when set */
  int threads;
  uint64_t seed;
  json_t *vars; /* --var overrides (object), borrowed */
  const char *history_path;
  int live;     /* the once-a-second line on stderr */
  int verbose;  /* print log steps */
  int insecure; /* -k: do not verify TLS certificates */
  int timeline; /* keep burst requests and the requests behind failed invariants (HTML) */
} rc_run_opts_t;

/* Run the file; fill `out` (initialised by the caller). Returns
 * RC_EXIT_OK (the caller then looks at the checks), RC_EXIT_USAGE or
 * RC_EXIT_DOWN with a message in err. */
int rc_run(const rc_run_opts_t *o, rc_result_t *out, rc_err_t *err);

/* Ask the running rc_run to stop: no further phases; after/invariants are
 * skipped, a failed "run" check says so, and the report is still written.
 * Async-signal-safe (the Ctrl-C handler calls it). */
void rc_run_interrupt(void);

#endif /* RC_RUN_H */
