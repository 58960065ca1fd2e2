/* report.h - the outcome of a run and its three renderings: the summary
 * printed at the end, report.json (schema documented in docs/racecheck.md,
 * "report.json") and a self-contained HTML page with inline SVG charts.
 */
#ifndef RC_REPORT_H
#define RC_REPORT_H

#include <stdio.h>

#include "stats.h"

/* Static description of one step (request) of the run, indexed by the
 * step id that the tally uses. */
typedef struct rc_stepinfo {
  const char *name;
  const char *scenario;
  const char *method;
} rc_stepinfo_t;

typedef struct rc_phaseinfo {
  const char *name;
  const char *kind; /* "arrival", "pause", "burst", "closed", "before", "after", "invariants" */
  double start_s, end_s;
  int tally; /* the phase index its requests are tallied under, -1 none */
} rc_phaseinfo_t;

/* One request of a burst phase, for the HTML timeline (a lane per
 * connection: each virtual user of a burst has its own). */
typedef struct rc_tlreq {
  uint64_t req, vu;
  double t0_ms, t1_ms; /* written, answered (or failed), since the run's start */
  int status;          /* 0: a network error (`error`) */
  const char *error;   /* static */
  char *line;          /* the rendered request line, "POST /inventory/purchase"; owned */
  int round;
} rc_tlreq_t;
#define RC_TL_MAX 4000 /* requests kept for the timeline, all threads together */

/* One check: an expectation, an ensure threshold or an invariant. */
typedef struct rc_check {
  const char *kind;  /* "expect", "capture", "ensure", "invariant" */
  char *name;        /* what was checked ("statusCode 201", "p99 < 200", ...) */
  char *detail;      /* why it failed / the values seen; owned */
  char *request;     /* the request that broke it ("#12 vu 3 POST /users -> 500"), or NULL */
  char *requests;    /* related request ids as a JSON array text, or NULL */
  char *sentence;    /* a failed invariant in one plain sentence, or NULL */
  uint64_t failures; /* how many times it failed (expectations) */
  int ok;
} rc_check_t;

typedef struct rc_result {
  const char *mode; /* "run", "burst", "bench" */
  const char *target;
  const char *file;
  uint64_t started_wall_ms;
  double duration_s;
  int threads;
  int connections;
  rc_stats_t total;
  rc_tick_t *ticks;
  size_t nticks, ticks_cap;
  rc_phaseinfo_t phases[RC_MAX_PHASES];
  size_t nphases;
  const rc_stepinfo_t *steps;
  size_t nsteps;
  rc_check_t *checks;
  size_t nchecks, checks_cap;
  long max_rss_kib;
  int exit_code;
  rc_tlreq_t *tl; /* burst requests for the timeline, by send time */
  size_t ntl;
  int tl_truncated;
  int seeded;    /* run/burst: `seed` is the seed of the random generators */
  uint64_t seed; /* printed so that --seed N replays the run */
} rc_result_t;

void rc_result_init(rc_result_t *r);
void rc_result_free(rc_result_t *r);
void rc_result_add_tick(rc_result_t *r, const rc_tick_t *t);
/* Append a check; takes ownership of the strings (any may be NULL). */
rc_check_t *rc_result_add_check(rc_result_t *r, const char *kind, char *name, int ok, char *detail,
                                char *request);
/* Number of failed checks. */
size_t rc_result_failed(const rc_result_t *r);

/* Sentences about a suspicious run, which every report format shows: most
 * answers 4xx/5xx (a run whose checks all held may then have tested
 * nothing: a wrong URL, a missing token), and templates that named an
 * undefined variable. Fills out[] with up to RC_MAX_WARNINGS strings the
 * caller frees; returns how many. */
#define RC_MAX_WARNINGS 2
size_t rc_result_warnings(const rc_result_t *r, char *out[RC_MAX_WARNINGS]);

/* Human summary (the end-of-run text). */
void rc_report_text(FILE *f, const rc_result_t *r);
/* The live line printed once a second on a terminal. */
void rc_report_live(FILE *f, double elapsed_s, const rc_tick_t *t);
/* report.json; returns 0 or -1 with errno. */
int rc_report_json(const char *path, const rc_result_t *r);
/* report.html; returns 0 or -1 with errno. */
int rc_report_html(const char *path, const rc_result_t *r);
/* Render report.json into a buffer (for tests). */
void rc_report_json_buf(rc_buf_t *b, const rc_result_t *r);

#endif /* RC_REPORT_H */
