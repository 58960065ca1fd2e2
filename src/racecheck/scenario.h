/* scenario.h - a scenario file in memory and its YAML loader.
 *
 * The format is Artillery's where the two overlap (config.target, phases,
 * variables, payload, http.timeout, ensure; scenarios with weighted flows
 * of get/post/put/patch/delete, think, loop, log; captures and the expect
 * plugin's checks), plus racecheck's race extensions: `burst` phases,
 * `before`/`after` flows and `invariants`. docs/racecheck.md lists every
 * key. Unknown keys are errors that name the key and its line, so a typo
 * never silently turns a check off.
 *
 * Loading is pure apart from reading CSV payload files relative to the
 * scenario file. The loaded file is immutable and shared read-only by all
 * worker threads.
 */
#ifndef RC_SCENARIO_H
#define RC_SCENARIO_H

#include <jansson.h>
#include <stdint.h>

#include "expr.h"
#include "rc.h"
#include "report.h"

typedef struct rc_kv {
  char *name;
  char *value; /* template */
} rc_kv_t;

enum { RC_CAP_JSON, RC_CAP_HEADER, RC_CAP_REGEXP };

/* A capture, or (with `value`) an Artillery `match`. */
typedef struct rc_capture {
  int kind;
  char *path; /* JSON path, header name or regular expression */
  char *as;
  int line;
  int strict;    /* a miss (or a mismatch) fails the virtual user; default 1 */
  json_t *value; /* match: the expected value (a template); NULL for a capture */
  void *re;      /* regexp: the compiled pattern (pcre2_code *) */
  char *group;   /* regexp: the group to take, by number or name (default: the match) */
} rc_capture_t;

enum {
  RC_EXP_STATUS,       /* statusCode: 201 | [200, 201] */
  RC_EXP_CONTENT_TYPE, /* contentType: json | application/json */
  RC_EXP_HAS_PROPERTY, /* hasProperty: data.id */
  RC_EXP_NOT_HAS_PROPERTY,
  RC_EXP_EQUALS,        /* equals: [a, b] (templates) */
  RC_EXP_HAS_HEADER,    /* hasHeader: x-cache */
  RC_EXP_HEADER_EQUALS, /* headerEquals: [name, value] */
  RC_EXP_EXPR,          /* expr: "json.userId == uid" (racecheck) */
};

typedef struct rc_expect {
  int kind;
  int *codes;
  size_t ncodes;
  char *a, *b; /* templates / property paths */
  rc_expr_t *expr;
  char *text; /* "statusCode: 201", for reports */
  int line;
} rc_expect_t;

enum { RC_STEP_REQUEST, RC_STEP_THINK, RC_STEP_LOOP, RC_STEP_LOG };

typedef struct rc_step rc_step_t;
struct rc_step {
  int kind;
  int line;
  /* request */
  uint32_t id; /* global step id (tally key) */
  char *name;
  const char *method;
  char *url;    /* template */
  json_t *json; /* JSON body template, or NULL */
  char *body;   /* raw body template, or NULL */
  rc_kv_t *headers;
  size_t nheaders;
  rc_kv_t *qs;
  size_t nqs;
  rc_kv_t *form; /* `form` (urlencoded) or `formData` (multipart): name -> template */
  size_t nform;
  int multipart;
  rc_kv_t *cookies; /* `cookie`: name -> template, put in the jar */
  size_t ncookies;
  int no_redirect; /* followRedirect: false */
  rc_capture_t *captures;
  size_t ncaptures;
  rc_expect_t *expects;
  size_t nexpects;
  /* think */
  uint64_t think_ns;
  double jitter_pct;  /* think jitter: +- this percentage of think_ns, or */
  uint64_t jitter_ns; /* +- this much; both 0: none (see rc_file_t's default) */
  /* loop */
  rc_step_t *steps;
  size_t nsteps;
  uint64_t count; /* 0: not a count loop */
  json_t *over;   /* literal array, or a string naming a variable (template) */
  /* log */
  char *log;
};

typedef struct rc_flow {
  rc_step_t *steps;
  size_t n;
} rc_flow_t;

typedef struct rc_scn {
  char *name;
  double weight;
  rc_flow_t flow;
  int line;
} rc_scn_t;

enum { RC_PHASE_ARRIVAL, RC_PHASE_PAUSE, RC_PHASE_BURST };

typedef struct rc_phase {
  int kind;
  char *name;
  uint64_t duration_ns;
  double arrival_rate;    /* per second, at the start */
  double ramp_to;         /* per second, at the end (= arrival_rate when no ramp) */
  uint64_t arrival_count; /* arrivalCount: spread evenly over duration */
  int has_count;
  uint64_t max_vusers; /* 0: unlimited */
  uint32_t burst_connections;
  uint32_t burst_repeat;
  int scenario; /* burst: index of the scenario every VU runs, -1 weighted */
  char *burst_scenario;
  int line;
} rc_phase_t;

typedef struct rc_payload {
  char *path;
  char **fields;
  size_t nfields;
  int random; /* order: random (default) or sequence */
  int skip_header;
  char delimiter;
  char ***rows; /* rows[r][f] */
  size_t nrows;
  int cast;    /* numbers become numbers (Artillery's default), else strings */
  char *name;  /* loadAll: the variable that holds every row */
  json_t *all; /* loadAll: [{field: value, ...}, ...] */
} rc_payload_t;

/* A CSV field as a JSON value: with cast, an integer or a finite decimal
 * number becomes a number (as csv-parse's cast in Artillery), else a
 * string. A new reference. */
json_t *rc_payload_value(const char *field, int cast);

enum {
  RC_ENS_MIN,
  RC_ENS_MAX,
  RC_ENS_MEDIAN,
  RC_ENS_P75,
  RC_ENS_P90,
  RC_ENS_P95,
  RC_ENS_P99,
  RC_ENS_P999,
  RC_ENS_MEAN,
  RC_ENS_ERROR_RATE
};

typedef struct rc_ensure {
  int metric;
  double limit; /* milliseconds, or percent for the error rate */
  char *text;
} rc_ensure_t;

typedef struct rc_invariant {
  char *name;
  rc_step_t *req; /* the request whose answer `json` refers to, or NULL */
  rc_expr_t **exprs;
  char **texts;
  size_t n;
  int line;
} rc_invariant_t;

typedef struct rc_file {
  char *path;
  char *dir;
  char *target;
  rc_phase_t *phases;
  size_t nphases;
  json_t *variables; /* object: name -> value or list of values */
  rc_payload_t *payloads;
  size_t npayloads;
  uint64_t timeout_ns;
  rc_kv_t *default_headers;
  size_t ndefault_headers;
  int expect_default_200;  /* config.plugins.expect.expectDefault200 */
  double think_jitter_pct; /* config.defaults.think.jitter */
  uint64_t think_jitter_ns;
  rc_kv_t *default_cookies; /* config.defaults.cookie */
  size_t ndefault_cookies;
  int tls_insecure;                  /* config.tls.rejectUnauthorized: false */
  char *tls_ca, *tls_cert, *tls_key; /* config.tls paths, resolved; or NULL */
  rc_ensure_t *ensures;
  size_t nensures;
  rc_scn_t *scenarios;
  size_t nscenarios;
  double total_weight;
  rc_flow_t before, after;
  rc_invariant_t *invariants;
  size_t ninvariants;
  rc_stepinfo_t *steps; /* by step id */
  size_t nsteps;
} rc_file_t;

/* Load a scenario file. Returns a new file or NULL with a message naming
 * the file, line and key. The caller frees with rc_file_free. */
rc_file_t *rc_file_load(const char *path, rc_err_t *err);
/* Load from memory; `path` is used for messages and relative payload
 * paths (may be NULL: payload paths are then relative to the current
 * directory). */
rc_file_t *rc_file_load_mem(const char *text, size_t len, const char *path, rc_err_t *err);
/* The same with `-e NAME`: config.environments.NAME merged over config as
 * Artillery does (mappings key by key, lists element by element), and the
 * variable $environment set to NAME. env NULL: no environment. */
rc_file_t *rc_file_load_env(const char *path, const char *env, rc_err_t *err);
rc_file_t *rc_file_load_mem_env(const char *text, size_t len, const char *path, const char *env,
                                rc_err_t *err);
/* And with Artillery's --overrides: a JSON object merged over the file the
 * same way, after the environment. NULL: none. */
rc_file_t *rc_file_load_ex(const char *path, const char *env, const char *overrides, rc_err_t *err);
rc_file_t *rc_file_load_mem_ex(const char *text, size_t len, const char *path, const char *env,
                               const char *overrides, rc_err_t *err);
void rc_file_free(rc_file_t *f);

/* Parse a request step out of a one-request description, for the burst
 * command line. Takes ownership of nothing; returns a new file with one
 * scenario of one request and one burst phase. */
rc_file_t *rc_file_burst(const char *target, const char *method, const char *path,
                         const rc_header_t *headers, size_t nheaders, const char *body,
                         uint32_t connections, uint32_t repeat, uint64_t timeout_ns, rc_err_t *err);
/* Add an invariant over the tallies (no request), e.g. "status[201] == 1".
 * Returns 0 or -1 with the parse error. */
int rc_file_add_invariant(rc_file_t *f, const char *text, rc_err_t *err);
/* Register a step for tallies (used by the loader and rc_file_burst). */
uint32_t rc_file_add_stepinfo(rc_file_t *f, const char *name, const char *scenario,
                              const char *method);

#endif /* RC_SCENARIO_H */
