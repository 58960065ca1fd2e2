/* e2e_payments_common.h - helpers shared by the payments, jobs and CPU
 * end-to-end programs (e2e_payments*.c, e2e_jobs*.c, e2e_cpu*.c).
 *
 * Besides counting answers, these tests restart servers on the same data
 * directory (a crash, or a clean stop, then a new process on the same
 * SQLite files): e2e_data_dir_* makes a directory that outlives one
 * e2e_server_t, and e2e_start_on passes its database to the server (a
 * later --db flag wins over the fixture's own). e2e_kill9 is the crash:
 * SIGKILL to the server's whole process group, then reaped. */
#ifndef E2E_PAYMENTS_COMMON_H
#define E2E_PAYMENTS_COMMON_H

#include <stdint.h>

#include "e2e_http.h"
#include "e2e_server.h"

/* Answers with this status among r[0..n). */
int e2e_count_status(const e2e_resp_t *r, int n, int status);
/* "  what: 1x201 49x409" on stderr. */
void e2e_print_statuses(const char *what, const e2e_resp_t *r, int n);
void e2e_burst_free(e2e_resp_t *r, int n);

/* A data directory that survives server restarts. */
typedef struct {
  char dir[64];
  char db_arg[128]; /* "sqlite:<dir>/db" */
} e2e_data_dir_t;
int e2e_data_dir_make(e2e_data_dir_t *d);
void e2e_data_dir_remove(e2e_data_dir_t *d);

/* e2e_server_start with "--db <d->db_arg>" appended after `extra`. */
int e2e_start_on(e2e_server_t *s, const e2e_data_dir_t *d, const char *const *extra);

/* Crash: SIGKILL the server's process group, reap it, clean the fixture. */
void e2e_kill9(e2e_server_t *s);

/* GET path; integer member key of the 200 answer, INT64_MIN otherwise. */
int64_t e2e_get_int(int port, const char *path, const char *key);
/* GET path; string member key of the 200 answer into buf ("" otherwise). */
const char *e2e_get_str(int port, const char *path, const char *key, char *buf, size_t cap);

/* e2e_metric, e2e_metric_in: see e2e_server.h. */

#endif /* E2E_PAYMENTS_COMMON_H */
