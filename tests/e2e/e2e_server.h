/* e2e_server.h - a real racefreed for the end-to-end tests.
 *
 * e2e_server_start runs the racefreed built next to the tests (its path
 * comes from CMake: RF_RACEFREED) as a child process in its own process
 * group, on a free port (--port 0) with a fresh SQLite database in a new
 * temporary directory, plus the caller's extra arguments (--unsafe,
 * --workers 2, ...). It reads the "listening on http://127.0.0.1:PORT"
 * line from the server's stdout, then waits until GET /health answers 200.
 * The server's stdout and stderr are kept in <dir>/server.log (printed by
 * e2e_server_dump_log, e.g. when a test fails). e2e_server_stop sends
 * SIGTERM to that pid, escalates to SIGKILL (the child's process group, so
 * worker processes go too) after a timeout, and removes the directory
 * (kept when the environment has RF_E2E_KEEP=1).
 *
 * Also here: small helpers the tests share (JSON of a response, the error
 * code of an error body, a fingerprint of the database's contents).
 */
#ifndef E2E_SERVER_H
#define E2E_SERVER_H

#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "e2e_http.h"

typedef struct e2e_server {
  pid_t pid;
  int port;
  char dir[64];       /* temporary directory */
  char db_path[128];  /* <dir>/db */
  char log_path[128]; /* <dir>/server.log */
  int out_fd;         /* read end of the server's stdout */
  int log_fd;
  int drain_started;
  unsigned long drain; /* pthread_t of the stdout copier */
  double start_ms;     /* time from fork to the first 200 on /health */
} e2e_server_t;

/* Start racefreed with extra (NULL-terminated, may be NULL) arguments.
 * 0, or a negative errno (the log is printed to stderr on failure). */
int e2e_server_start(e2e_server_t *s, const char *const *extra);

/* Stop the server and remove its directory. Returns the server's exit
 * status (0 for a clean exit on SIGTERM), 128 + signal if it died of a
 * signal, or -1 when it had to be killed. */
int e2e_server_stop(e2e_server_t *s);

/* A value of GET /metrics (the registry shared by every worker process:
 * totals over all of them): the first line starting with `series` (name
 * with labels, e.g. "racefree_jobs_total{state=\"completed\"}"); -1 when
 * absent. */
double e2e_metric(int port, const char *series);
/* The same from a /metrics answer already fetched (several series of one
 * scrape: one consistent moment). */
double e2e_metric_in(const e2e_resp_t *scrape, const char *series);

/* Print the server log to stderr. */
void e2e_server_dump_log(const e2e_server_t *s);

/* Is the server process still running? */
int e2e_server_alive(const e2e_server_t *s);

/* The response body parsed as JSON (NULL if it is not JSON); json_decref. */
json_t *e2e_json(const e2e_resp_t *r);
/* error.code of an error body, copied into buf (or "" when absent). */
const char *e2e_error_code(const e2e_resp_t *r, char *buf, size_t cap);
/* Integer member `key` of a JSON object response; INT64_MIN if absent. */
int64_t e2e_json_int(const e2e_resp_t *r, const char *key);

/* A hash of every row of every table of the SQLite database at path,
 * independent of row order; 0 when the file cannot be read. */
uint64_t e2e_db_fingerprint(const char *path);

#endif /* E2E_SERVER_H */
