/* test_rc_yaml.c - loading scenario files: every supported key, and every
 * error with the line it points at. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <time.h>
#include <unistd.h>

#include "scenario.h"

static const char *full_file =
    "config:\n"                                                                    /* 1 */
    "  target: \"http://127.0.0.1:3000/base\"\n"                                   /* 2 */
    "  http:\n"                                                                    /* 3 */
    "    timeout: 2.5\n"                                                           /* 4 */
    "  plugins:\n"                                                                 /* 5 */
    "    expect: {}\n"                                                             /* 6 */
    "  defaults:\n"                                                                /* 7 */
    "    headers:\n"                                                               /* 8 */
    "      x-client: racecheck\n"                                                  /* 9 */
    "  phases:\n"                                                                  /* 10 */
    "    - duration: 10\n"                                                         /* 11 */
    "      arrivalRate: 5\n"                                                       /* 12 */
    "      rampTo: 50\n"                                                           /* 13 */
    "      maxVusers: 100\n"                                                       /* 14 */
    "      name: ramp\n"                                                           /* 15 */
    "    - pause: 500ms\n"                                                         /* 16 */
    "    - duration: 1m\n"                                                         /* 17 */
    "      arrivalCount: 30\n"                                                     /* 18 */
    "    - burst: {connections: 50, repeat: 3, scenario: buy}\n"                   /* 19 */
    "      name: the burst\n"                                                      /* 20 */
    "  variables:\n"                                                               /* 21 */
    "    item: item-1\n"                                                           /* 22 */
    "    stock: 10\n"                                                              /* 23 */
    "    emails: [\"a@b.c\", \"d@e.f\"]\n"                                         /* 24 */
    "  payload:\n"                                                                 /* 25 */
    "    path: users.csv\n"                                                        /* 26 */
    "    fields: [email, name]\n"                                                  /* 27 */
    "    order: sequence\n"                                                        /* 28 */
    "    skipHeader: true\n"                                                       /* 29 */
    "  ensure:\n"                                                                  /* 30 */
    "    p99: 200\n"                                                               /* 31 */
    "    maxErrorRate: 1\n"                                                        /* 32 */
    "    thresholds:\n"                                                            /* 33 */
    "      - \"http.response_time.p95\": 100\n"                                    /* 34 */
    "      - median: 20\n"                                                         /* 35 */
    "before:\n"                                                                    /* 36 */
    "  flow:\n"                                                                    /* 37 */
    "    - put:\n"                                                                 /* 38 */
    "        url: \"/inventory/items/{{ item }}\"\n"                               /* 39 */
    "        json: {stock: \"{{ stock }}\"}\n"                                     /* 40 */
    "scenarios:\n"                                                                 /* 41 */
    "  - name: buy\n"                                                              /* 42 */
    "    weight: 3\n"                                                              /* 43 */
    "    flow:\n"                                                                  /* 44 */
    "      - post:\n"                                                              /* 45 */
    "          name: purchase\n"                                                   /* 46 */
    "          url: /inventory/purchase\n"                                         /* 47 */
    "          headers: {x-req: \"{{ $uuid }}\"}\n"                                /* 48 */
    "          qs: {debug: 1}\n"                                                   /* 49 */
    "          json: {itemId: \"{{ item }}\", quantity: 1}\n"                      /* 50 */
    "          capture:\n"                                                         /* 51 */
    "            - json: \"$.stock\"\n"                                            /* 52 */
    "              as: left\n"                                                     /* 53 */
    "            - header: x-request-id\n"                                         /* 54 */
    "              as: rid\n"                                                      /* 55 */
    "          expect:\n"                                                          /* 56 */
    "            - statusCode: [200, 409]\n"                                       /* 57 */
    "            - contentType: json\n"                                            /* 58 */
    "            - hasProperty: itemId\n"                                          /* 59 */
    "            - notHasProperty: secret\n"                                       /* 60 */
    "            - equals: [\"{{ item }}\", \"item-1\"]\n"                         /* 61 */
    "            - hasHeader: content-type\n"                                      /* 62 */
    "            - headerEquals: [x-cache, miss]\n"                                /* 63 */
    "            - expr: \"json.stock >= 0\"\n"                                    /* 64 */
    "      - think: 0.5\n"                                                         /* 65 */
    "      - log: \"left {{ left }}\"\n"                                           /* 66 */
    "  - name: browse\n"                                                           /* 67 */
    "    flow:\n"                                                                  /* 68 */
    "      - loop:\n"                                                              /* 69 */
    "          - get: {url: \"/items/{{ $loopElement }}\"}\n"                      /* 70 */
    "        over: [a, b]\n"                                                       /* 71 */
    "      - loop:\n"                                                              /* 72 */
    "          - delete: {url: /x, body: \"raw {{ $loopCount }}\"}\n"              /* 73 */
    "          - patch: {url: /y}\n"                                               /* 74 */
    "          - head: {url: /z}\n"                                                /* 75 */
    "          - options: {url: /w}\n"                                             /* 76 */
    "        count: 3\n"                                                           /* 77 */
    "after:\n"                                                                     /* 78 */
    "  flow:\n"                                                                    /* 79 */
    "    - get: {url: /after}\n"                                                   /* 80 */
    "invariants:\n"                                                                /* 81 */
    "  - name: no oversell\n"                                                      /* 82 */
    "    get:\n"                                                                   /* 83 */
    "      url: \"/inventory/items/{{ item }}\"\n"                                 /* 84 */
    "    expect:\n"                                                                /* 85 */
    "      - \"json.stock == stock - count(status == 200, step == 'purchase')\"\n" /* 86 */
    "      - \"json.stock >= 0\"\n"                                                /* 87 */
    "  - expect: \"status[500] == 0\"\n";                                          /* 88 */

static rc_file_t *load(const char *text, rc_err_t *err) {
  return rc_file_load_mem(text, strlen(text), RC_TEST_DATA "/scenario.yml", err);
}

static void test_full_file(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_file_t *f = load(full_file, &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_string_equal(f->target, "http://127.0.0.1:3000/base");
  assert_int_equal(f->timeout_ns, 2500000000ull);
  assert_int_equal(f->ndefault_headers, 1);
  assert_string_equal(f->default_headers[0].name, "x-client");
  assert_int_equal(f->nphases, 4);
  assert_int_equal(f->phases[0].kind, RC_PHASE_ARRIVAL);
  assert_true(f->phases[0].arrival_rate == 5 && f->phases[0].ramp_to == 50);
  assert_int_equal(f->phases[0].max_vusers, 100);
  assert_string_equal(f->phases[0].name, "ramp");
  assert_int_equal(f->phases[1].kind, RC_PHASE_PAUSE);
  assert_int_equal(f->phases[1].duration_ns, 500000000ull);
  assert_int_equal(f->phases[2].duration_ns, 60000000000ull);
  assert_true(f->phases[2].has_count && f->phases[2].arrival_count == 30);
  assert_int_equal(f->phases[3].kind, RC_PHASE_BURST);
  assert_int_equal(f->phases[3].burst_connections, 50);
  assert_int_equal(f->phases[3].burst_repeat, 3);
  assert_int_equal(f->phases[3].scenario, 0);
  assert_string_equal(f->phases[3].name, "the burst");
  assert_int_equal(json_integer_value(json_object_get(f->variables, "stock")), 10);
  assert_int_equal(json_array_size(json_object_get(f->variables, "emails")), 2);
  assert_int_equal(f->npayloads, 1);
  assert_int_equal(f->payloads[0].nrows, 3); /* header skipped, blank line ignored */
  assert_string_equal(f->payloads[0].rows[0][0], "a@b.c");
  assert_string_equal(f->payloads[0].rows[1][1], "Smith, Bob");
  assert_false(f->payloads[0].random);
  assert_int_equal(f->nensures, 4);
  assert_int_equal(f->ensures[0].metric, RC_ENS_P99);
  assert_int_equal(f->ensures[1].metric, RC_ENS_ERROR_RATE);
  assert_int_equal(f->ensures[2].metric, RC_ENS_P95);
  assert_int_equal(f->ensures[3].metric, RC_ENS_MEDIAN);
  assert_int_equal(f->before.n, 1);
  assert_string_equal(f->before.steps[0].method, "PUT");
  assert_int_equal(f->nscenarios, 2);
  assert_true(f->scenarios[0].weight == 3 && f->total_weight == 4);
  const rc_step_t *s = &f->scenarios[0].flow.steps[0];
  assert_string_equal(s->name, "purchase");
  assert_string_equal(s->method, "POST");
  assert_int_equal(s->nheaders, 1);
  assert_int_equal(s->nqs, 1);
  assert_non_null(s->json);
  assert_int_equal(s->ncaptures, 2);
  assert_int_equal(s->captures[1].kind, RC_CAP_HEADER);
  assert_int_equal(s->nexpects, 8);
  assert_int_equal(s->expects[0].ncodes, 2);
  assert_int_equal(s->expects[7].kind, RC_EXP_EXPR);
  assert_int_equal(f->scenarios[0].flow.steps[1].kind, RC_STEP_THINK);
  assert_int_equal(f->scenarios[0].flow.steps[1].think_ns, 500000000ull);
  assert_int_equal(f->scenarios[0].flow.steps[2].kind, RC_STEP_LOG);
  const rc_step_t *loop = &f->scenarios[1].flow.steps[0];
  assert_int_equal(loop->kind, RC_STEP_LOOP);
  assert_true(json_is_array(loop->over));
  const rc_step_t *loop2 = &f->scenarios[1].flow.steps[1];
  assert_int_equal(loop2->count, 3);
  assert_int_equal(loop2->nsteps, 4);
  assert_string_equal(loop2->steps[0].body, "raw {{ $loopCount }}");
  assert_string_equal(loop2->steps[2].method, "HEAD");
  assert_string_equal(loop2->steps[3].method, "OPTIONS");
  assert_int_equal(f->after.n, 1);
  assert_int_equal(f->ninvariants, 2);
  assert_int_equal(f->invariants[0].n, 2);
  assert_non_null(f->invariants[0].req);
  assert_null(f->invariants[1].req);
  assert_string_equal(f->invariants[1].name, "status[500] == 0");
  /* step ids cover every request: before 1, buy 1, browse 5, after 1, invariants 1 */
  assert_int_equal(f->nsteps, 9);
  assert_string_equal(f->steps[s->id].name, "purchase");
  assert_string_equal(f->steps[s->id].scenario, "buy");
  rc_file_free(f);
}

static void test_article_file(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load(RC_SOURCE_DIR "/examples/scenarios/artillery.yml", &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_string_equal(f->target, "http://localhost:3000");
  assert_int_equal(f->nphases, 1);
  assert_true(f->phases[0].arrival_rate == 100);
  assert_int_equal(f->phases[0].duration_ns, 10000000000ull);
  assert_string_equal(f->scenarios[0].name, "Test concurrent purchases");
  const rc_step_t *s = &f->scenarios[0].flow.steps[0];
  assert_string_equal(s->url, "/inventory/purchase");
  assert_int_equal(json_integer_value(json_object_get(s->json, "quantity")), 1);
  assert_string_equal(json_string_value(json_object_get(s->json, "itemId")), "item-1");
  rc_file_free(f);
}

typedef struct bad {
  const char *text;
  int line;
  const char *needle;
} bad_t;

static const char *const scn_ok = "scenarios:\n  - flow:\n      - get: {url: /}\n";

static void test_errors(void **state) {
  (void)state;
  char buf[2048];
  static const bad_t cases[] = {
      {"", 0, "empty"},
      {"config: [\n", 2, "YAML"},
      {"- a\n- b\n", 1, "must be a mapping"},
      {"scenarios: []\n", 1, "needs a config"},
      {"config:\n  target: http://x:1\n  phases:\n    - duration: 1\n      arivalRate: 5\n", 5,
       "unknown key 'arivalRate' in config.phases[0]"},
      {"config:\n  target: http://x:1\n  tagret: 1\n", 3, "unknown key 'tagret' in config"},
      {"config:\n  phases:\n    - duration: 1\n      arrivalRate: 1\n%s  - bogus: 1\n", 0, NULL},
      {"config:\n  target: ftp://x\n", 2, "only http://"},
      {"config:\n  target: nourl\n", 2, "invalid URL"},
      {"config:\n  target: \"/x\"\n", 2, "must be absolute"},
      {"config:\n  phases:\n    - arrivalRate: 1\n", 3, "needs a duration"},
      {"config:\n  phases:\n    - duration: 1\n", 3, "needs arrivalRate or arrivalCount"},
      {"config:\n  phases:\n    - duration: 1\n      arrivalRate: 1\n      arrivalCount: 2\n", 3,
       "not both"},
      {"config:\n  phases:\n    - duration: 1\n      rampTo: 3\n      arrivalCount: 2\n", 3,
       "rampTo needs arrivalRate"},
      {"config:\n  phases:\n    - duration: abc\n      arrivalRate: 1\n", 3, "must be a duration"},
      {"config:\n  phases:\n    - duration: 1\n      arrivalRate: -1\n", 4, "must be a number"},
      {"config:\n  phases:\n    - pause: 1\n      duration: 2\n", 3, "a pause phase"},
      {"config:\n  phases:\n    - burst: {repeat: 2}\n", 3, "burst needs connections"},
      {"config:\n  phases:\n    - burst: {connections: 5, conns: 2}\n", 3,
       "unknown key 'conns' in burst"},
      {"config:\n  phases:\n    - burst: {connections: 0}\n", 3, "must be an integer"},
      {"config:\n  phases:\n    - burst: {connections: 2, scenario: nope}\nscenarios:\n  - "
       "flow: []\n",
       3, "names no scenario"},
      {"config:\n  phases:\n    - pause: 1\n    - pause: 1\n      pause: 2\n", 5, "duplicate key"},
      {"config:\n  http: {timeout: 0}\n", 2, "must be positive"},
      {"config:\n  http: {timeouts: 1}\n", 2, "unknown key 'timeouts' in config.http"},
      {"config:\n  ensure: {p42: 1}\n", 2, "unknown key 'p42' in config.ensure"},
      {"config:\n  ensure:\n    conditions: []\n", 3, "use invariants"},
      {"config:\n  plugins: {metrics-by-endpoint: {}, ensure: {}, fancy: {}}\n", 2,
       "unknown key 'fancy' in config.plugins"},
      {"config:\n  payload: {path: nope.csv, fields: [a]}\n", 2, "cannot read"},
      {"config:\n  payload: {path: users.csv}\n", 2, "needs fields"},
      {"config:\n  payload: {path: users.csv, fields: [a], order: shuffled}\n", 2,
       "random or sequence"},
      {"config:\n  variables: {a: []}\n", 2, "empty list"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - got: {url: /}\n", 5,
       "unknown key 'got' in flow"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get: {url: /, jsn: {}}\n",
       5, "unknown key 'jsn' in get"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get: {}\n", 5,
       "needs a url"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get: {url: \"/{{ x\"}\n", 5,
       "unterminated"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - post: {url: /, json: {}, "
       "body: x}\n",
       5, "takes one of json, body, form or formData"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         capture: {json: \"$..x\", as: y}\n",
       7, "capture.json"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         capture: {json: \"$.x\"}\n",
       7, "needs 'as'"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         expect:\n            - statusCod: 200\n",
       8, "unknown key 'statusCod' in expect"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         expect:\n            - statusCode: 2000\n",
       8, "statusCode must be an integer"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         expect:\n            - expr: \"json.x ==\"\n",
       8, "expr:"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get:\n          url: /\n "
       "         expect:\n            - equals: [a]\n",
       8, "exactly two"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - think: 1\n        get: "
       "{url: /}\n",
       6, "one action"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - think: 1\n        count: "
       "2\n",
       6, "unknown key 'count' next to 'think'"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - function: setUp\n", 5,
       "JavaScript"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - loop: [{get: {url: /}}]\n",
       5, "needs count or over"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - loop: []\n        count: "
       "1\n        over: [1]\n",
       5, "not both"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - loop: []\n        "
       "whileTrue: f\n",
       6, "'whileTrue' loops call a JavaScript function"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\n    weight: 0\n", 4,
       "add up to 0"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - name: x\n", 4, "needs a flow"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\n    engine: ws\n", 5,
       "HTTP scenarios only"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\n    beforeScenario: f\n", 5,
       "'beforeScenario' hooks call JavaScript functions"},
      {"config:\n  phases: [{pause: 1}]\nscenarios: []\n", 3, "scenarios is empty"},
      {"config:\n  phases: [{pause: 1}]\n", 1, "needs scenarios"},
      {"config:\n  target: http://x:1\nscenarios:\n  - flow: []\n", 2, "needs phases"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\ninvariants:\n  - name: x\n", 6,
       "needs expect"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\ninvariants:\n  - expect: "
       "\"a ==\"\n",
       6, "invariant expect"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\ninvariants:\n  - expect: x\n   "
       " get: {url: /}\n    post: {url: /}\n",
       8, "at most one request"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\ninvariants:\n  - expect: x\n   "
       " when: always\n",
       7, "unknown key 'when' in invariants[0]"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\nbefore:\n  steps: []\n", 6,
       "unknown key 'steps' in before"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow: []\nenvironments: {}\n", 5,
       "unknown key 'environments' in the top level"},
      {"config:\n  environments: []\n", 2, "config.environments must be a mapping"},
      {"config:\n  environments: {a: 1}\n", 2, "config.environments.a must be a mapping"},
      {"config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n      - get: {url: /, headers: "
       "[a]}\n",
       5, "must be a mapping"},
      {"a: &x [*x]\n", 1, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const bad_t *c = &cases[i];
    if (strstr(c->text, "%s")) {
      continue; /* a template case, covered below */
    }
    snprintf(buf, sizeof buf, "%s", c->text);
    rc_err_t err = {0};
    rc_file_t *f = load(buf, &err);
    if (f) {
      rc_file_free(f);
      fail_msg("case %zu loaded:\n%s", i, buf);
    }
    if (c->line && err.line != c->line) {
      fail_msg("case %zu: line %d, want %d: %s", i, err.line, c->line, err.msg);
    }
    if (c->needle && !strstr(err.msg, c->needle)) {
      fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, c->needle);
    }
    /* every positioned message names the file and the line */
    if (c->line) {
      char want[64];
      snprintf(want, sizeof want, "scenario.yml:%d:", c->line);
      if (!strstr(err.msg, want)) {
        fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, want);
      }
    }
  }
  (void)scn_ok;
}

static void test_defaults_and_names(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_file_t *f = load("config:\n  phases:\n    - duration: 2\n      arrivalRate: 3\n"
                      "scenarios:\n  - flow:\n      - get: {url: /a}\n      - think: 200ms\n",
                      &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_null(f->target); /* may come from --target */
  assert_int_equal(f->timeout_ns, 10000000000ull);
  assert_string_equal(f->phases[0].name, "phase 1");
  assert_true(f->phases[0].ramp_to == 3);
  assert_string_equal(f->scenarios[0].name, "scenario 1");
  assert_string_equal(f->scenarios[0].flow.steps[0].name, "GET /a");
  assert_int_equal(f->scenarios[0].flow.steps[1].think_ns, 200000000ull);
  rc_file_free(f);
}

static void test_alias_bomb(void **state) {
  (void)state;
  /* a "billion laughs" of aliases inside a JSON body stays bounded */
  char text[4096];
  snprintf(text, sizeof text,
           "config:\n  phases: [{pause: 1}]\n  variables:\n"
           "    a: &a [x, x, x, x, x, x, x, x, x, x]\n"
           "    b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
           "    c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
           "    d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
           "    e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
           "    f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
           "scenarios:\n  - flow: []\n");
  rc_err_t err = {0};
  rc_file_t *f = load(text, &err);
  assert_null(f);
  assert_non_null(strstr(err.msg, "too large"));
}

static void test_durations(void **state) {
  (void)state;
  /* Artillery reads durations with the `ms` library: "0.5 min",
   * "9 seconds", "2 hours"; a bare number is seconds in a phase */
  static const struct {
    const char *s;
    uint64_t ns;
  } ok[] = {
      {"10", 10000000000ull},      {"1.5", 1500000000ull},       {"500ms", 500000000ull},
      {"0.5 min", 30000000000ull}, {"9 seconds", 9000000000ull}, {"2 hours", 7200000000000ull},
      {"3 Mins", 180000000000ull}, {"1 sec", 1000000000ull},     {"250 msecs", 250000000ull},
      {"1d", 86400000000000ull},   {"2m", 120000000000ull},      {"100us", 100000ull}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t ns = 0;
    if (rc_parse_duration(ok[i].s, 1000000000ull, &ns) != 0 || ns != ok[i].ns) {
      fail_msg("'%s' -> %llu, want %llu", ok[i].s, (unsigned long long)ns,
               (unsigned long long)ok[i].ns);
    }
  }
  static const char *const bad[] = {"", "x", "5 parsecs", "-1s", "1 s s", "inf"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t ns = 0;
    if (rc_parse_duration(bad[i], 1000000000ull, &ns) == 0) {
      fail_msg("'%s' parsed", bad[i]);
    }
  }
  rc_err_t err = {0};
  rc_file_t *f = load("config:\n  phases:\n    - {duration: \"0.5 min\", arrivalRate: 1}\n"
                      "    - pause: 9 seconds\n"
                      "scenarios:\n  - flow:\n      - think: \"1.5 seconds\"\n",
                      &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_int_equal(f->phases[0].duration_ns, 30000000000ull);
  assert_int_equal(f->phases[1].duration_ns, 9000000000ull);
  assert_int_equal(f->scenarios[0].flow.steps[0].think_ns, 1500000000ull);
  rc_file_free(f);
  /* think jitter, as Artillery: a percentage or milliseconds, per step or
   * in config.defaults.think */
  f = load("config:\n  phases: [{pause: 1}]\n  defaults: {think: {jitter: 10%}}\n"
           "scenarios:\n  - flow:\n      - {think: 2, jitter: 20%}\n"
           "      - think: 1\n        jitter: 500\n      - think: 3\n",
           &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_true(f->think_jitter_pct == 10);
  assert_true(f->scenarios[0].flow.steps[0].jitter_pct == 20);
  assert_int_equal(f->scenarios[0].flow.steps[1].jitter_ns, 500000000ull);
  assert_true(f->scenarios[0].flow.steps[2].jitter_pct == 0);
  rc_file_free(f);
  assert_null(load("config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n"
                   "      - {think: 2, jitter: lots}\n",
                   &err));
  assert_non_null(strstr(err.msg, "jitter must be a percentage"));
  assert_null(load("config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n"
                   "      - {log: x, jitter: 5}\n",
                   &err));
  assert_non_null(strstr(err.msg, "unknown key 'jitter' next to 'log'"));
}

static void test_all_blockers(void **state) {
  (void)state;
  /* every JavaScript hook and other engine is named, with its line, all at
   * once: never "unknown key", never only the first */
  const char *text = "config:\n"                                  /* 1 */
                     "  target: http://127.0.0.1:1\n"             /* 2 */
                     "  processor: ./funcs.js\n"                  /* 3 */
                     "  engines: {playwright: {}}\n"              /* 4 */
                     "  phases: [{pause: 1}]\n"                   /* 5 */
                     "before:\n  flow:\n    - function: seed\n"   /* 6-8 */
                     "scenarios:\n"                               /* 9 */
                     "  - beforeScenario: a\n"                    /* 10 */
                     "    afterScenario: b\n"                     /* 11 */
                     "    beforeRequest: c\n"                     /* 12 */
                     "    afterResponse: d\n"                     /* 13 */
                     "    flow:\n"                                /* 14 */
                     "      - get: {url: /, beforeRequest: e}\n"  /* 15 */
                     "      - post: {url: /, afterResponse: f}\n" /* 16 */
                     "      - loop: [{function: g}]\n"            /* 17 */
                     "        whileTrue: h\n"                     /* 18 */
                     "  - engine: socketio\n"                     /* 19 */
                     "    flow: [{emit: {channel: x}}]\n"         /* 20 */
                     "  - engine: ws\n"                           /* 21 */
                     "    flow: [{send: x}]\n";                   /* 22 */
  static const struct {
    int line;
    const char *what;
  } want[] = {{3, "config.processor loads a JavaScript file"},
              {4, "config.engines: 'playwright'"},
              {8, "'function' steps run JavaScript"},
              {10, "'beforeScenario' hooks"},
              {11, "'afterScenario' hooks"},
              {12, "'beforeRequest' hooks"},
              {13, "'afterResponse' hooks"},
              {15, "'beforeRequest' hooks"},
              {16, "'afterResponse' hooks"},
              {17, "'function' steps"},
              {18, "'whileTrue' loops"},
              {19, "engine 'socketio'"},
              {21, "engine 'ws'"}};
  rc_err_t err = {0};
  assert_null(load(text, &err));
  if (!strstr(err.msg, "13 features racecheck does not run")) {
    fail_msg("%s", err.msg);
  }
  assert_int_equal(err.line, 3);
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    char needle[64];
    snprintf(needle, sizeof needle, "scenario.yml:%d:", want[i].line);
    const char *at = strstr(err.msg, needle);
    while (at && strncmp(strchr(at, ' ') + 1, want[i].what, strlen(want[i].what)) != 0) {
      at = strstr(at + 1, needle);
    }
    if (!at) {
      fail_msg("line %d: no '%s' in\n%s", want[i].line, want[i].what, err.msg);
    }
  }
  assert_null(strstr(err.msg, "unknown key"));
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Load a generated file: a head, `n` copies of `rep`, then a tail. The
 * load must fail within `max_s` seconds with `needle` in the message. */
static void expect_refused(const char *head, const char *rep, size_t n, const char *tail,
                           const char *needle, double max_s) {
  rc_buf_t b = {0};
  rc_buf_puts(&b, head);
  for (size_t i = 0; i < n; i++) {
    rc_buf_puts(&b, rep);
  }
  rc_buf_puts(&b, tail);
  rc_err_t err = {0};
  double t0 = now_s();
  rc_file_t *f = rc_file_load_mem(b.data, b.len, "hostile.yml", &err);
  double dt = now_s() - t0;
  rc_buf_free(&b);
  if (f) {
    rc_file_free(f);
    fail_msg("a hostile file (%zu x '%.20s') loaded", n, rep);
  }
  if (!strstr(err.msg, needle)) {
    fail_msg("message '%s' lacks '%s'", err.msg, needle);
  }
  if (dt > max_s) {
    fail_msg("refusing %zu x '%.20s' took %.2f s", n, rep, dt);
  }
}

static void test_hostile_files(void **state) {
  (void)state;
  const char *head = "config:\n  target: http://127.0.0.1:1\n  phases: [{pause: 1}]\n"
                     "scenarios:\n  - flow:\n      - post:\n          url: /\n"
                     "          json: ";
  /* 100,000-deep flow nesting once took ~23 s (libyaml's scanner works in
   * proportion to the nesting for every token) */
  rc_buf_t closing = {0};
  for (int i = 0; i < 100000; i++) {
    rc_buf_putc(&closing, ']');
  }
  rc_buf_puts(&closing, "\n");
  expect_refused(head, "[", 100000, closing.data, "nested over 128 levels", 1.0);
  rc_buf_free(&closing);
  expect_refused(head, "{a: ", 100000, "1}\n", "nested over 128 levels", 1.0);
  expect_refused("config:\n  target: http://127.0.0.1:1\n  phases: [{pause: 1}]\n"
                 "scenarios:\n  - flow:\n      - post:\n          url: /\n"
                 "          json:\n            ",
                 "- ", 100000, "x\n", "nested over 128 levels", 1.0);
  /* too many values, and too many aliases */
  rc_buf_t many = {0};
  rc_buf_puts(&many, "[");
  for (int i = 0; i < 600000; i++) {
    rc_buf_puts(&many, "1,");
  }
  rc_buf_puts(&many, "1]\n");
  expect_refused(head, many.data, 1, "", "over 500000 values", 2.0);
  rc_buf_free(&many);
  expect_refused("config:\n  target: http://127.0.0.1:1\n  phases: [{pause: 1}]\n"
                 "before:\n  flow:\n    - get: &g {url: /}\n",
                 "    - get: *g\n", 20000, "scenarios:\n  - flow: []\n", "over 10000 aliases", 1.0);
  /* a "billion laughs" of steps: 10^7 think steps through 70 aliases */
  rc_buf_t bomb = {0};
  rc_buf_puts(&bomb, "config:\n  target: http://127.0.0.1:1\n  phases: [{pause: 1}]\n"
                     "before:\n  flow:\n    - log: x\n    - loop: &l0 [");
  for (int i = 0; i < 10; i++) {
    rc_buf_puts(&bomb, i ? ", {think: 0}" : "{think: 0}");
  }
  rc_buf_puts(&bomb, "]\n      count: 1\n");
  for (int lv = 1; lv < 7; lv++) {
    rc_buf_printf(&bomb, "    - loop: &l%d [", lv);
    for (int i = 0; i < 10; i++) {
      rc_buf_printf(&bomb, "%s{loop: *l%d, count: 1}", i ? ", " : "", lv - 1);
    }
    rc_buf_puts(&bomb, "]\n      count: 1\n");
  }
  expect_refused(bomb.data, "", 0, "scenarios:\n  - flow: []\n", "too many steps", 5.0);
  rc_buf_free(&bomb);
  /* a file over 16 MiB is refused before it is read (a sparse file: no
   * disk space used) */
  char path[] = "/tmp/rc_huge_XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(ftruncate(fd, (off_t)200 << 20), 0);
  close(fd);
  rc_err_t err = {0};
  double t0 = now_s();
  assert_null(rc_file_load(path, &err));
  assert_true(now_s() - t0 < 1.0);
  unlink(path);
  if (!strstr(err.msg, "at most 16 MiB")) {
    fail_msg("message '%s'", err.msg);
  }
}

static void test_burst_file(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_header_t h[] = {{"Content-Type", "application/json"}};
  rc_file_t *f = rc_file_burst("http://127.0.0.1:1", "post", "/users", h, 1,
                               "{\"email\":\"{{ $uuid }}\"}", 50, 2, 1000000000ull, &err);
  assert_non_null(f);
  assert_int_equal(f->phases[0].burst_connections, 50);
  assert_int_equal(f->phases[0].burst_repeat, 2);
  assert_string_equal(f->scenarios[0].flow.steps[0].method, "POST");
  assert_int_equal(rc_file_add_invariant(f, "status[201] == 1", &err), 0);
  assert_int_equal(rc_file_add_invariant(f, "status[201] ==", &err), -1);
  assert_int_equal(f->ninvariants, 1);
  rc_file_free(f);
  assert_null(rc_file_burst("http://127.0.0.1:1", "FETCH", "/", NULL, 0, NULL, 1, 1, 1, &err));
  assert_null(rc_file_burst("http://127.0.0.1:1", "GET", "/{{ x", NULL, 0, NULL, 1, 1, 1, &err));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_full_file),     cmocka_unit_test(test_article_file),
      cmocka_unit_test(test_errors),        cmocka_unit_test(test_defaults_and_names),
      cmocka_unit_test(test_alias_bomb),    cmocka_unit_test(test_burst_file),
      cmocka_unit_test(test_hostile_files), cmocka_unit_test(test_all_blockers),
      cmocka_unit_test(test_durations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
