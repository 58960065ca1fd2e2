/* bench.h - the closed model: `racecheck bench -c C -d D -t T URL`.
 *
 * C keep-alive connections spread over T threads each send one request,
 * wait for its answer and send the next, for D; the figure is raw
 * throughput. Latency is measured from the actual write, as wrk does: in a
 * closed model a slow answer delays the next request, so this latency is
 * subject to coordinated omission -- use an arrival phase (open model) to
 * measure latency under a given load.
 */
#ifndef RC_BENCH_H
#define RC_BENCH_H

#include "http.h"
#include "report.h"

typedef struct rc_bench_opts {
  const char *url;
  const char *method;
  rc_header_t *headers;
  size_t nheaders;
  const char *body;
  size_t body_len;
  int connections;
  int threads;
  uint64_t duration_ns;
  uint64_t timeout_ns;
  int live;     /* print the live line once a second */
  int insecure; /* -k: do not verify the TLS certificate of an https URL */
} rc_bench_opts_t;

/* Run the closed model and fill `out` (which the caller initialised with
 * rc_result_init). Returns RC_EXIT_OK, RC_EXIT_USAGE (bad URL) or
 * RC_EXIT_DOWN (target unreachable), with a message in err. */
int rc_bench_run(const rc_bench_opts_t *o, rc_result_t *out, rc_err_t *err);

/* Blocking TCP connect probe with a time-out: 0 when something listens.
 * Used to give a clear message when the target is down. */
int rc_probe(const rc_addr_t *a, int timeout_ms, rc_err_t *err, const char *what);

/* Once-a-second monitoring shared by every mode: drains the live feeds of
 * `n` workers (each rc_live_t at base + i * stride), appends the tick to the
 * result and prints the live line when asked. */
void rc_monitor_tick(rc_result_t *r, char *base, size_t stride, int n, uint64_t t0, int live);

#endif /* RC_BENCH_H */
