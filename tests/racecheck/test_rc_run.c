/* test_rc_run.c - whole runs against the in-test server: bursts with
 * invariants (holding and broken, with the requests involved), the open
 * model with captures, loops and expectations, before/after flows, the
 * history, report.json / HTML, a target that is down, and the exit codes
 * of the command line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "rc_testsrv.h"
#include "run.h"
#include "scenario.h"

static rc_testsrv_t *srv;
static char dir[] = "/tmp/rc_test_run_XXXXXX";
static char target[64];
static rc_file_t *files[64]; /* loaded files, freed at the end */
static int nfiles;

static int setup(void **state) {
  (void)state;
  srv = rc_testsrv_start();
  if (!srv || !mkdtemp(dir)) {
    return -1;
  }
  snprintf(target, sizeof target, "http://127.0.0.1:%u", (unsigned)rc_testsrv_port(srv));
  return 0;
}

static int teardown(void **state) {
  (void)state;
  rc_testsrv_stop(srv);
  for (int i = 0; i < nfiles; i++) {
    rc_file_free(files[i]);
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static char *write_file(const char *name, const char *text) {
  char *path = rc_xasprintf("%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

/* Run a scenario text with --target; returns the exit code of rc_run and
 * leaves the result in *r. */
static int run_text(const char *text, rc_result_t *r, const char *history, int threads) {
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load_mem(text, strlen(text), NULL, &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  rc_run_opts_t o = {
      .file = f, .target = target, .threads = threads, .seed = 1, .history_path = history};
  rc_result_init(r);
  int rc = rc_run(&o, r, &err);
  if (rc != 0) {
    fprintf(stderr, "rc_run: %s\n", err.msg);
  }
  /* the result points into the file for step names: keep it alive */
  r->file = NULL;
  assert_true(nfiles < 64);
  files[nfiles++] = f;
  return rc;
}

static const rc_check_t *find_check(const rc_result_t *r, const char *kind, const char *needle) {
  for (size_t i = 0; i < r->nchecks; i++) {
    if (strcmp(r->checks[i].kind, kind) == 0 && strstr(r->checks[i].name, needle)) {
      return &r->checks[i];
    }
  }
  fail_msg("no %s check containing '%s'", kind, needle);
  return NULL;
}

static void test_burst_invariants(void **state) {
  (void)state;
  rc_result_t r;
  char *hist = rc_xasprintf("%s/history.jsonl", dir);
  const char *text = "config:\n"
                     "  phases:\n"
                     "    - burst: {connections: 20}\n"
                     "scenarios:\n"
                     "  - name: create\n"
                     "    flow:\n"
                     "      - post: {url: /once, name: create, json: {email: a@b.c}}\n"
                     "invariants:\n"
                     "  - name: exactly one created\n"
                     "    expect:\n"
                     "      - \"status[201] == 1\"\n"
                     "      - \"status[409] == 19 && sent == 20 && errors == 0\"\n"
                     "      - \"count(status == 201, step == 'create') == 2\"\n"
                     "  - name: server agrees\n"
                     "    get: {url: /count}\n"
                     "    expect: \"json.count == count(step == 'create')\"\n";
  assert_int_equal(run_text(text, &r, hist, 2), RC_EXIT_OK);
  assert_int_equal(r.total.status[201], 1);
  assert_int_equal(r.total.status[409], 19);
  assert_int_equal(r.total.vu_created, 20);
  assert_true(find_check(&r, "invariant", "status[201] == 1")->ok);
  assert_true(find_check(&r, "invariant", "status[409] == 19")->ok);
  assert_true(find_check(&r, "invariant", "server agrees")->ok);
  const rc_check_t *bad = find_check(&r, "invariant", "'create') == 2");
  assert_false(bad->ok);
  assert_non_null(strstr(bad->detail, "count(status == 201, step == 'create') = 1"));
  /* the history names the one request that got the 201 */
  assert_non_null(bad->requests);
  assert_non_null(strstr(bad->requests, "\"matched\":1"));
  assert_int_equal(rc_result_failed(&r), 1);
  /* history: an invoke and a complete event per request */
  FILE *f = fopen(hist, "r");
  assert_non_null(f);
  char line[2048];
  int invokes = 0, completes = 0, created = 0;
  while (fgets(line, sizeof line, f)) {
    json_t *j = json_loads(line, 0, NULL);
    assert_non_null(j);
    const char *type = json_string_value(json_object_get(j, "type"));
    if (strcmp(type, "invoke") == 0) {
      invokes++;
      assert_non_null(json_object_get(j, "process"));
      assert_non_null(json_object_get(j, "url"));
    } else {
      completes++;
      created += json_integer_value(json_object_get(j, "status")) == 201;
    }
    json_decref(j);
  }
  fclose(f);
  assert_int_equal(invokes, 21); /* 20 in the burst + the invariant's GET */
  assert_int_equal(completes, 21);
  assert_int_equal(created, 1);
  /* report.json parses and carries the checks */
  rc_buf_t b = {0};
  rc_report_json_buf(&b, &r);
  json_error_t je;
  json_t *rep = json_loads(b.data, 0, &je);
  if (!rep) {
    fail_msg("report.json: %s at %d", je.text, je.line);
  }
  assert_string_equal(json_string_value(json_object_get(rep, "schema")), "racecheck-report/1");
  assert_int_equal(json_array_size(json_object_get(rep, "checks")), r.nchecks);
  assert_int_equal(json_integer_value(json_object_get(json_object_get(rep, "status"), "409")), 19);
  /* latency by step (Artillery's metrics-by-endpoint): the burst step has
   * its 20 answers, a step that made no request has none */
  json_t *steps = json_object_get(rep, "steps");
  size_t si;
  json_t *st;
  int seen_burst_step = 0;
  json_array_foreach(steps, si, st) {
    json_t *lat = json_object_get(st, "latency_ms");
    json_int_t reqs = json_integer_value(json_object_get(st, "requests"));
    if (reqs == 0) {
      assert_true(json_is_null(lat));
    } else {
      assert_int_equal(json_integer_value(json_object_get(lat, "count")), reqs);
      seen_burst_step |= reqs == 20;
    }
  }
  assert_true(seen_burst_step);
  json_decref(rep);
  rc_buf_free(&b);
  char *html = rc_xasprintf("%s/r.html", dir);
  assert_int_equal(rc_report_html(html, &r), 0);
  char *txt = NULL;
  size_t len = 0;
  assert_int_equal(rc_read_file(html, &txt, &len), 0);
  assert_non_null(strstr(txt, "<svg"));
  assert_null(strstr(txt, "http://") == txt ? NULL : strstr(txt, "<script src"));
  free(txt);
  free(html);
  rc_result_free(&r);
  free(hist);
}

static void test_open_model_flows(void **state) {
  (void)state;
  rc_result_t r;
  const char *text =
      "config:\n"
      "  phases:\n"
      "    - duration: 1\n"
      "      arrivalRate: 40\n"
      "    - pause: 0.1\n"
      "    - duration: 0.5\n"
      "      arrivalCount: 10\n"
      "  variables:\n"
      "    color: [red, blue]\n"
      "    n: 5\n"
      "  defaults:\n"
      "    headers: {x-client: test}\n"
      "before:\n"
      "  flow:\n"
      "    - post:\n"
      "        url: /echo\n"
      "        json: {token: \"t-{{ n }}\"}\n"
      "        capture: {json: \"$.token\", as: token}\n"
      "scenarios:\n"
      "  - name: chain\n"
      "    flow:\n"
      "      - post:\n"
      "          url: /echo\n"
      "          json: {id: \"{{ $randomNumber(1, 9) }}\", n: \"{{ n }}\", c: \"{{ color }}\", "
      "t: \"{{ token }}\"}\n"
      "          capture:\n"
      "            - json: \"$.id\"\n"
      "              as: id\n"
      "          expect:\n"
      "            - statusCode: 200\n"
      "            - contentType: json\n"
      "            - hasProperty: c\n"
      "            - equals: [\"{{ token }}\", \"t-5\"]\n"
      "            - expr: \"json.n == 5 && json.id >= 1 && json.id <= 9\"\n"
      "      - loop:\n"
      "          - get: {url: \"/ok?i={{ $loopElement }}&id={{ id }}\", name: loop-get}\n"
      "        over: [a, b, c]\n"
      "      - loop:\n"
      "          - think: 1ms\n"
      "          - get:\n"
      "              url: /header\n"
      "              name: hdr\n"
      "              capture: {header: x-test, as: xt}\n"
      "              expect: [{hasHeader: x-test}, {headerEquals: [x-test, \"{{ xt }}\"]}]\n"
      "        count: 2\n"
      "after:\n"
      "  flow:\n"
      "    - get: {url: /ok}\n";
  assert_int_equal(run_text(text, &r, NULL, 2), RC_EXIT_OK);
  assert_int_equal(r.total.vu_created, 50);
  assert_int_equal(r.total.vu_completed, 50);
  assert_int_equal(r.total.vu_failed, 0);
  /* 50 VUs x (1 + 3 + 2) requests, + before + after */
  assert_int_equal(r.total.sent, 50 * 6 + 2);
  assert_int_equal(rc_stats_errors(&r.total), 0);
  assert_int_equal(rc_result_failed(&r), 0);
  assert_true(find_check(&r, "expect", "expr json.n == 5")->ok);
  assert_true(find_check(&r, "capture", "capture $.id as id")->ok);
  assert_int_equal(r.nphases, 5); /* before, 3 phases, after */
  assert_true(r.duration_s >= 1.5);
  rc_result_free(&r);
}

static void test_expectation_failure(void **state) {
  (void)state;
  rc_result_t r;
  const char *text = "config:\n"
                     "  phases: [{duration: 0.2, arrivalCount: 4}]\n"
                     "  ensure: {maxErrorRate: 10, p99: 100000}\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get:\n"
                     "          url: /status/500\n"
                     "          expect: [{statusCode: 200}]\n"
                     "      - get: {url: /ok}\n";
  assert_int_equal(run_text(text, &r, NULL, 1), RC_EXIT_OK);
  const rc_check_t *c = find_check(&r, "expect", "statusCode 200");
  assert_false(c->ok);
  assert_int_equal(c->failures, 4);
  assert_non_null(strstr(c->detail, "status 500"));
  assert_non_null(strstr(c->request, "GET /status/500 -> 500"));
  assert_int_equal(r.total.vu_failed, 4);
  assert_int_equal(r.total.sent, 4); /* failed VUs stop */
  assert_false(find_check(&r, "ensure", "error rate")->ok);
  assert_true(find_check(&r, "ensure", "p99")->ok);
  rc_result_free(&r);
}

static void test_network_errors_counted(void **state) {
  (void)state;
  rc_result_t r;
  const char *text = "config:\n"
                     "  phases: [{burst: {connections: 3}}]\n"
                     "  http: {timeout: 300ms}\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get: {url: /trunc}\n"
                     "  - flow:\n"
                     "      - get: {url: /garbage}\n"
                     "  - flow:\n"
                     "      - get: {url: /silent}\n"
                     "invariants:\n"
                     "  - expect: \"errors == 3 && sent == 3 && failed == 3\"\n"
                     "  - expect: \"count(error != '') == 3\"\n";
  assert_int_equal(run_text(text, &r, NULL, 1), RC_EXIT_OK);
  assert_int_equal(rc_stats_errors(&r.total), 3);
  assert_int_equal(rc_result_failed(&r), 0);
  rc_result_free(&r);
}

static void test_burst_rounds(void **state) {
  (void)state;
  rc_result_t r;
  const char *text = "config:\n"
                     "  phases: [{burst: {connections: 4, repeat: 3}}]\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - post:\n"
                     "          url: /echo\n"
                     "          json: {round: \"{{ $round }}\"}\n"
                     "          expect: [{expr: \"json.round >= 1 && json.round <= 3\"}]\n"
                     "after:\n"
                     "  flow:\n"
                     "    - post:\n"
                     "        url: /echo\n"
                     "        json: {round: \"{{ $round }}\"}\n"
                     "        expect: [{expr: \"json.round == 0\"}]\n"
                     "invariants:\n"
                     "  - expect: \"sent == 12 && completed == 12\"\n";
  assert_int_equal(run_text(text, &r, NULL, 2), RC_EXIT_OK);
  assert_int_equal(rc_result_failed(&r), 0);
  assert_int_equal(r.total.vu_created, 12);
  rc_result_free(&r);
}

static void test_target_prefix_and_query(void **state) {
  (void)state;
  char text[1024];
  snprintf(text, sizeof text,
           "config:\n"
           "  target: \"%s/base/\"\n"
           "  phases: [{burst: {connections: 1}}]\n"
           "scenarios:\n"
           "  - flow:\n"
           "      - get:\n"
           "          url: \"/items/{{ id }}\"\n"
           "          qs: {q: \"a b&c\", n: \"{{ id }}\"}\n"
           "          expect: [{expr: \"json.target == '/base/items/7?q=a%%20b%%26c&n=7'\"}]\n"
           "      - get:\n"
           "          url: \"%s/base/abs?x=1\"\n"
           "          qs: {y: 2}\n"
           "          expect: [{expr: \"json.target == '/base/abs?x=1&y=2'\"}]\n",
           target, target);
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load_mem(text, strlen(text), NULL, &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  json_t *vars = json_pack("{s:i}", "id", 7);
  rc_run_opts_t o = {.file = f, .threads = 1, .vars = vars};
  rc_result_t r;
  rc_result_init(&r);
  assert_int_equal(rc_run(&o, &r, &err), RC_EXIT_OK);
  for (size_t i = 0; i < r.nchecks; i++) {
    if (!r.checks[i].ok) {
      fail_msg("%s: %s", r.checks[i].name, r.checks[i].detail);
    }
  }
  assert_int_equal(r.total.status[200], 2);
  rc_result_free(&r);
  json_decref(vars);
  rc_file_free(f);
}

static void test_target_down(void **state) {
  (void)state;
  rc_err_t err = {0};
  const char *text = "config:\n  target: http://127.0.0.1:1\n  phases: [{pause: 1}]\n"
                     "scenarios:\n  - flow: []\n";
  rc_file_t *f = rc_file_load_mem(text, strlen(text), NULL, &err);
  assert_non_null(f);
  rc_run_opts_t o = {.file = f, .threads = 1};
  rc_result_t r;
  rc_result_init(&r);
  assert_int_equal(rc_run(&o, &r, &err), RC_EXIT_DOWN);
  assert_non_null(strstr(err.msg, "cannot connect to 127.0.0.1:1"));
  rc_result_free(&r);
  rc_file_free(f);
}

static int cli(int (*fn)(int, char **, int), int check, int argc, ...) {
  char *argv[32];
  va_list ap;
  va_start(ap, argc);
  for (int i = 0; i < argc; i++) {
    argv[i] = va_arg(ap, char *);
  }
  va_end(ap);
  argv[argc] = NULL;
  return fn(argc, argv, check);
}

static int burst_cli(int argc, char **argv, int unused) {
  (void)unused;
  return rc_cli_burst(argc, argv);
}

static void test_cli_exit_codes(void **state) {
  (void)state;
  char *good = write_file("good.yml", "config:\n  phases: [{burst: {connections: 4}}]\n"
                                      "scenarios:\n  - flow:\n      - get: {url: /ok}\n"
                                      "invariants:\n  - expect: \"status[200] == 4\"\n");
  char *bad = write_file("bad.yml", "config:\n  phases: [{burst: {connections: 4}}]\n"
                                    "scenarios:\n  - flow:\n      - get: {url: /ok, jsn: 1}\n");
  char *fails = write_file("fails.yml", "config:\n  phases: [{burst: {connections: 4}}]\n"
                                        "scenarios:\n  - flow:\n      - get: {url: /ok}\n"
                                        "invariants:\n  - expect: \"status[200] == 5\"\n");
  char *json = rc_xasprintf("%s/report.json", dir);
  assert_int_equal(cli(rc_cli_run, 1, 2, "check", good), 0);
  assert_int_equal(cli(rc_cli_run, 1, 2, "check", bad), 2);
  assert_int_equal(cli(rc_cli_run, 0, 2, "run", bad), 2);
  assert_int_equal(cli(rc_cli_run, 0, 2, "run", "/nonexistent.yml"), 2);
  assert_int_equal(cli(rc_cli_run, 0, 3, "run", "--bogus", good), 2);
  assert_int_equal(cli(rc_cli_run, 0, 5, "run", "-q", "--target", target, good), 0);
  assert_int_equal(cli(rc_cli_run, 0, 7, "run", "-q", "--target", target, "-o", json, fails), 1);
  char *txt = NULL;
  size_t len = 0;
  assert_int_equal(rc_read_file(json, &txt, &len), 0);
  assert_non_null(strstr(txt, "\"ok\": false"));
  free(txt);
  assert_int_equal(cli(rc_cli_run, 0, 4, "run", "--target", "https://x", good), 2);
  /* an https target in the file: --target replaces it (e.g. with a
   * plain-HTTP instance); without, it is used (nothing listens here) */
  char *tls = write_file("tls.yml", "config:\n  target: https://127.0.0.1:1/api\n"
                                    "  phases: [{burst: {connections: 2}}]\n"
                                    "scenarios:\n  - flow:\n      - get: {url: /ok}\n");
  assert_int_equal(cli(rc_cli_run, 1, 2, "check", tls), 0);
  assert_int_equal(cli(rc_cli_run, 0, 5, "run", "-q", "--target", target, tls), 0);
  assert_int_equal(cli(rc_cli_run, 0, 3, "run", "-q", tls), 3);
  free(tls);
  assert_int_equal(cli(rc_cli_run, 0, 4, "run", "--target", "http://127.0.0.1:1", good), 3);
  char *url = rc_xasprintf("%s/once", target);
  assert_int_equal(cli(burst_cli, 0, 9, "burst", "-q", "-n", "8", "--json", "{\"e\":1}", url,
                       "--expect", "status[201] + status[409] == 8"),
                   0);
  assert_int_equal(cli(burst_cli, 0, 7, "burst", "-q", "-n", "8", url, "--expect", "sent == 9"), 1);
  assert_int_equal(cli(burst_cli, 0, 6, "burst", "-q", "-n", "8", url, "--expect", "sent =="), 2);
  assert_int_equal(cli(burst_cli, 0, 5, "burst", "-q", "-n", "0", url), 2);
  assert_int_equal(cli(burst_cli, 0, 4, "burst", "-q", "-H", "nocolon"), 2);
  free(url);
  free(json);
  free(good);
  free(bad);
  free(fails);
}

/* Every check of r held (fail with the first that did not). */
static void all_held(const rc_result_t *r) {
  for (size_t i = 0; i < r->nchecks; i++) {
    if (!r->checks[i].ok) {
      fail_msg("%s: %s (%s)", r->checks[i].name, r->checks[i].detail ? r->checks[i].detail : "",
               r->checks[i].request ? r->checks[i].request : "");
    }
  }
}

static void test_cookie_jar(void **state) {
  (void)state;
  /* Artillery keeps a cookie jar per virtual user: what the target sets
   * is sent back, by path and domain; a `cookie` key adds to it */
  const char *text =
      "config:\n"
      "  phases: [{burst: {connections: 3}}]\n"
      "  defaults: {cookie: {lang: en}}\n"
      "scenarios:\n"
      "  - flow:\n"
      "      - get: {url: /cookies, expect: [{expr: \"json.cookie == 'lang=en'\"}]}\n"
      "      - get: {url: /setcookie}\n"
      "      - get: {url: /cookies, expect: [{expr: \"json.cookie == 'lang=en; sid=abc123'\"}]}\n"
      "      - get:\n"
      "          url: /other/cookies\n"
      "          cookie: {theme: \"dark-{{ $round }}\"}\n"
      /* cookies set by the file take the request's default path (/other),
       * as tough-cookie does: lang is then there twice */
      "          expect: [{expr: \"json.cookie == 'scoped=1; lang=en; theme=dark-1; lang=en; "
      "sid=abc123'\"}]\n"
      "      - get: {url: /redircookie, expect: [{expr: \"json.cookie == 'lang=en; sid=abc123; "
      "hop=1'\"}]}\n"
      "      - get:\n"
      "          url: /cookies\n"
      "          headers: {cookie: mine=1}\n"
      "          expect: [{expr: \"json.cookie == 'mine=1'\"}]\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 2), 0);
  all_held(&r);
  assert_int_equal(r.total.status[200], 3 * 6);
  rc_result_free(&r);
}

static void test_redirects(void **state) {
  (void)state;
  /* followed unless followRedirect: false; 303 turns a POST into a GET
   * without a body, 307 keeps both; each hop is an answer */
  const char *text =
      "config:\n"
      "  phases: [{burst: {connections: 2}}]\n"
      "scenarios:\n"
      "  - flow:\n"
      "      - get: {url: /redir, expect: [{statusCode: 200}, {expr: \"json.data == 'ok'\"}]}\n"
      "      - post: {url: /redir307, json: {a: 1}, expect: [{expr: \"json.a == 1\"}]}\n"
      "      - post: {url: /redir303, json: {a: 1}, expect: [{expr: \"json == null\"}]}\n"
      "      - get: {url: /redirrel/a, expect: [{expr: \"json.rel == true\"}]}\n"
      "      - get: {url: /redir, followRedirect: false, expect: [{statusCode: 302}]}\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  assert_int_equal(r.total.status[302], 2 * 3);
  assert_int_equal(r.total.status[307], 2);
  assert_int_equal(r.total.status[303], 2);
  assert_int_equal(r.total.status[200], 2 * 4);
  rc_result_free(&r);
  /* a redirect loop stops after 10 hops and fails the virtual user */
  const char *loop = "config:\n"
                     "  phases: [{burst: {connections: 1}}]\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get: {url: /redirloop}\n";
  assert_int_equal(run_text(loop, &r, NULL, 1), 0);
  assert_int_equal(r.total.status[302], 11);
  assert_int_equal(r.total.vu_failed, 1);
  const rc_check_t *c = find_check(&r, "expect", "redirects");
  assert_false(c->ok);
  assert_non_null(strstr(c->detail, "more than 10 redirects"));
  rc_result_free(&r);
}

static void test_url_encoding(void **state) {
  (void)state;
  /* a template that renders a space (or quotes, braces) is percent-encoded
   * after rendering, as Artillery's URL parser does; '%' stays */
  const char *text =
      "config:\n"
      "  phases: [{burst: {connections: 1}}]\n"
      "  variables: {who: 'hide on \"bush\" {x}', pct: 'a%20b'}\n"
      "scenarios:\n"
      "  - flow:\n"
      "      - get:\n"
      "          url: \"/base/summoner/{{ who }}?q={{ who }}#frag\"\n"
      "          expect: [{expr: \"json.target == "
      "'/base/summoner/hide%20on%20%22bush%22%20%7Bx%7D?q=hide%20on%20%22bush%22%20{x}'\"}]\n"
      "      - get:\n"
      "          url: \"/base/{{ pct }}\"\n"
      "          expect: [{expr: \"json.target == '/base/a%20b'\"}]\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  assert_int_equal(r.total.status[200], 2);
  rc_result_free(&r);
}

static void test_plugins_ensure(void **state) {
  (void)state;
  /* Artillery's ensure plugin reads config.plugins.ensure too: a threshold
   * there is checked (a latency limit of 0 ms cannot hold) */
  const char *text = "config:\n"
                     "  phases: [{burst: {connections: 2}}]\n"
                     "  plugins:\n"
                     "    ensure:\n"
                     "      thresholds: [{\"http.response_time.p99\": 0}]\n"
                     "      maxErrorRate: 50\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get: {url: /ok}\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  assert_false(find_check(&r, "ensure", "p99")->ok);
  assert_true(find_check(&r, "ensure", "error rate")->ok);
  rc_result_free(&r);
}

/* The request targets recorded in a history file, in request order. */
static char *history_urls(const char *path) {
  char *txt = NULL;
  size_t len = 0;
  assert_int_equal(rc_read_file(path, &txt, &len), 0);
  rc_buf_t out = {0};
  for (char *p = strstr(txt, "\"url\":"); p; p = strstr(p + 1, "\"url\":")) {
    size_t n = strcspn(p, "}");
    rc_buf_append(&out, p, n);
    rc_buf_putc(&out, '\n');
  }
  free(txt);
  unlink(path);
  return rc_buf_steal(&out);
}

static void test_environments(void **state) {
  (void)state;
  /* -e NAME merges config.environments.NAME over config (lodash's merge,
   * as Artillery): target replaced, variables key by key, phases element
   * by element; $environment is the name */
  char text[1024];
  snprintf(text, sizeof text,
           "config:\n"
           "  target: http://127.0.0.1:1/nowhere\n"
           "  phases: [{burst: {connections: 1}}]\n"
           "  variables: {a: 1, b: 2}\n"
           "  environments:\n"
           "    staging:\n"
           "      target: %s/base\n"
           "      phases: [{burst: {connections: 3}}]\n"
           "      variables: {b: 3}\n"
           "    other: {target: http://127.0.0.1:1}\n"
           "scenarios:\n"
           "  - flow:\n"
           "      - get:\n"
           "          url: \"/{{ $environment }}/{{ a }}/{{ b }}\"\n"
           "          expect: [{expr: \"json.target == '/base/staging/1/3'\"}]\n"
           /* Artillery's built-in `target` variable: the target in use */
           "      - get: {url: \"/t/{{ target }}\", expect: [{expr: \"json.target "
           "== '/base/t/%s/base'\"}]}\n",
           target, target);
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load_mem_env(text, strlen(text), NULL, "staging", &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  rc_run_opts_t o = {.file = f, .threads = 1};
  rc_result_t r;
  rc_result_init(&r);
  assert_int_equal(rc_run(&o, &r, &err), RC_EXIT_OK);
  all_held(&r);
  assert_int_equal(r.total.status[200], 6);
  rc_result_free(&r);
  rc_file_free(f);
  assert_null(rc_file_load_mem_env(text, strlen(text), NULL, "prod", &err));
  assert_non_null(strstr(err.msg, "environment 'prod' is not defined in config.environments "
                                  "(defined: staging, other)"));
  /* the command line: -e / --environment */
  char *path = write_file("env.yml", text);
  assert_int_equal(cli(rc_cli_run, 0, 4, "run", "-q", "--environment=staging", path), 0);
  assert_int_equal(cli(rc_cli_run, 0, 5, "run", "-q", "-e", "prod", path), 2);
  /* --overrides: a JSON object merged over the file after the environment
   * (here b becomes 4, so the expectation on /staging/1/3 fails) */
  assert_int_equal(cli(rc_cli_run, 0, 6, "run", "-q", "-e", "staging",
                       "--overrides={\"config\": {\"variables\": {\"a\": 1}}}", path),
                   0);
  assert_int_equal(cli(rc_cli_run, 0, 6, "run", "-q", "-e", "staging",
                       "--overrides={\"config\": {\"variables\": {\"b\": 4}}}", path),
                   1);
  assert_int_equal(cli(rc_cli_run, 0, 6, "run", "-q", "-e", "staging", "--overrides=[1]", path), 2);
  f = rc_file_load_mem_ex(text, strlen(text), NULL, "staging",
                          "{\"config\": {\"phases\": [{\"burst\": {\"connections\": 7}}]}, "
                          "\"after\": {\"flow\": []}}",
                          &err);
  if (!f) {
    fail_msg("%s", err.msg);
  }
  assert_int_equal(f->phases[0].burst_connections, 7);
  rc_file_free(f);
  free(path);
}

static void test_undefined_variables(void **state) {
  (void)state;
  /* Artillery renders an undefined variable as 'undefined' in text, and
   * leaves out a JSON value that is only that template (null in a list);
   * racecheck does the same and warns about it in the reports */
  const char *text =
      "config:\n"
      "  phases: [{burst: {connections: 1}}]\n"
      "  variables: {user: {id: 7}}\n"
      "scenarios:\n"
      "  - flow:\n"
      "      - get:\n"
      "          url: \"{{ target }}/base/x/{{ nope }}/{{ user.missing }}/{{ user.id }}\"\n"
      "          expect: [{expr: \"json.target == '/base/x/undefined/undefined/7'\"}]\n"
      "      - post:\n"
      "          url: /echo\n"
      "          json: {a: \"{{ nope }}\", b: 1, c: [\"{{ nope }}\"], d: \"x{{ nope }}\"}\n"
      "          expect: [{expr: \"len(json) == 3 && json.b == 1 && json.c[0] == null "
      "&& json.d == 'xundefined'\"}]\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  assert_int_equal(r.total.tmpl_undefined, 5);
  char *w[RC_MAX_WARNINGS];
  size_t n = rc_result_warnings(&r, w);
  assert_int_equal(n, 1);
  assert_non_null(strstr(w[0], "5 template values named an undefined variable"));
  free(w[0]);
  rc_result_free(&r);
}

static size_t count_of(const char *hay, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) {
    n++;
  }
  return n;
}

static void test_html_timeline(void **state) {
  (void)state;
  /* a burst drawn as a timeline: a lane per connection, a bar per request
   * coloured by status, the requests behind the failed invariant outlined
   * and listed with their rendered request lines; the failed invariant in
   * one sentence; no per-second charts for a sub-second run */
  char text[1024];
  snprintf(text, sizeof text,
           "config:\n"
           "  phases: [{burst: {connections: 6}}]\n"
           "  variables: {path: base}\n"
           "scenarios:\n"
           "  - flow:\n"
           "      - post: {url: \"/once?who={{ path }}\", name: create}\n"
           "invariants:\n"
           "  - name: created once\n"
           "    expect: \"count(step == 'create', status == 409) == 0\"\n");
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load_mem(text, strlen(text), NULL, &err);
  assert_non_null(f);
  rc_run_opts_t o = {.file = f, .target = target, .threads = 2, .seed = 3, .timeline = 1};
  rc_result_t r;
  rc_result_init(&r);
  assert_int_equal(rc_run(&o, &r, &err), RC_EXIT_OK);
  assert_int_equal(r.ntl, 6);
  const rc_check_t *c = find_check(&r, "invariant", "created once");
  assert_false(c->ok);
  assert_non_null(c->sentence);
  /* /once answered 201 before this test too: every one is a 409 or one is 201 */
  int conflicts = (int)r.total.status[409];
  char want[128];
  snprintf(want, sizeof want, "count(step == 'create', status == 409) is %d but should equal 0.",
           conflicts);
  assert_string_equal(c->sentence, want);
  char *html = rc_xasprintf("%s/timeline.html", dir);
  assert_int_equal(rc_report_html(html, &r), 0);
  char *txt = NULL;
  size_t len = 0;
  assert_int_equal(rc_read_file(html, &txt, &len), 0);
  assert_non_null(strstr(txt, "Burst timeline"));
  assert_non_null(strstr(txt, "6 requests on 6 connections"));
  assert_int_equal(count_of(txt, "<title>#"), 6); /* one bar per request */
  assert_int_equal(count_of(txt, "stroke=\"#000\""), (size_t)conflicts);
  assert_non_null(strstr(txt, "<code>POST /once?who=base</code>")); /* rendered, listed */
  assert_null(strstr(txt, "{{"));                                   /* no template anywhere */
  assert_non_null(strstr(txt, want));
  assert_null(strstr(txt, "Over time")); /* a sub-second run: no per-second charts */
  free(txt);
  free(html);
  rc_result_free(&r);
  rc_file_free(f);
}

static void test_match_and_regexp(void **state) {
  (void)state;
  /* Artillery's `match` (a value the answer must hold) and `capture` with
   * `regexp` (group by name or number, flags, strict: false) */
  const char *text = "config:\n"
                     "  phases: [{burst: {connections: 2}}]\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get:\n"
                     "          url: /ok\n"
                     "          capture:\n"
                     "            - {regexp: '\"da(t)a\":\"(?<val>[a-z]+)\"', group: val, as: v}\n"
                     "            - {regexp: 'DA(T)A', flags: i, group: '1', as: t}\n"
                     "            - {regexp: 'DATA', flags: i, as: w}\n"
                     "            - {regexp: 'nowhere', as: x, strict: false}\n"
                     "          match:\n"
                     "            - {json: $.data, value: \"{{ v }}\"}\n"
                     "            - {json: $.data, value: other, strict: false}\n"
                     "          expect: [{equals: [\"{{ v }}-{{ t }}-{{ w }}\", ok-t-data]}]\n"
                     "      - get: {url: /header, match: {header: x-test, value: \"yes\"}}\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  assert_int_equal(r.total.vu_completed, 2);
  rc_result_free(&r);
  const char *bad = "config:\n"
                    "  phases: [{burst: {connections: 1}}]\n"
                    "scenarios:\n"
                    "  - flow:\n"
                    "      - get: {url: /ok, match: {json: $.data, value: other}}\n"
                    "      - get: {url: /ok}\n";
  assert_int_equal(run_text(bad, &r, NULL, 1), 0);
  const rc_check_t *c = find_check(&r, "match", "match $.data");
  assert_false(c->ok);
  assert_non_null(strstr(c->detail, "got \"ok\", expected \"other\""));
  assert_int_equal(r.total.vu_failed, 1);
  assert_int_equal(r.total.status[200], 1); /* the flow stopped there */
  rc_result_free(&r);
  rc_err_t err = {0};
  const char *badre = "config:\n  phases: [{pause: 1}]\nscenarios:\n  - flow:\n"
                      "      - get: {url: /, capture: {regexp: 'a(', as: x}}\n";
  assert_null(rc_file_load_mem(badre, strlen(badre), NULL, &err));
  assert_non_null(strstr(err.msg, "regexp: missing closing parenthesis"));
}

static void test_forms(void **state) {
  (void)state;
  /* Artillery's form (urlencoded) and formData (multipart) bodies; /echo
   * sends the body back, regexp captures read it */
  const char *text =
      "config:\n"
      "  phases: [{burst: {connections: 1}}]\n"
      "  variables: {who: \"a b&c\"}\n"
      "scenarios:\n"
      "  - flow:\n"
      "      - post:\n"
      "          url: /echo\n"
      "          form: {name: \"{{ who }}\", n: 1}\n"
      "          capture: {regexp: '^.*$', as: urlenc}\n"
      "          expect: [{equals: [\"{{ urlenc }}\", \"name=a%20b%26c&n=1\"]}]\n"
      "      - post:\n"
      "          url: /echo\n"
      "          formData: {name: \"{{ who }}\", n: 1}\n"
      "          capture:\n"
      "            - {regexp: 'name=\"name\"\\r\\n\\r\\n([^\\r]*)\\r\\n', group: '1', as: "
      "name}\n"
      "            - {regexp: '^--(racecheck-[0-9a-f]+)\\r\\n', group: '1', as: b}\n"
      "            - {regexp: '--(racecheck-[0-9a-f]+)--\\r\\n$', group: '1', as: e}\n"
      "          expect:\n"
      "            - {equals: [\"{{ name }}\", \"a b&c\"]}\n"
      "            - {equals: [\"{{ b }}\", \"{{ e }}\"]}\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  assert_int_equal(r.total.status[200], 2);
  rc_result_free(&r);
}

static void test_expect_default_200(void **state) {
  (void)state;
  /* plugins.expect.expectDefault200: a request without expectations
   * expects a 200; one with its own keeps them */
  const char *text = "config:\n"
                     "  phases: [{burst: {connections: 1}}]\n"
                     "  plugins: {expect: {expectDefault200: true, outputFormat: json}}\n"
                     "scenarios:\n"
                     "  - flow:\n"
                     "      - get: {url: /ok}\n"
                     "      - get: {url: /status/404, expect: [{statusCode: 404}]}\n"
                     "      - get: {url: /status/500}\n";
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  const rc_check_t *c = find_check(&r, "expect", "/status/500: statusCode 200 (expectDefault200)");
  assert_false(c->ok);
  assert_true(find_check(&r, "expect", "GET /ok: statusCode 200 (expectDefault200)")->ok);
  assert_true(find_check(&r, "expect", "statusCode 404")->ok);
  rc_result_free(&r);
}

static void test_payload_cast_load_all(void **state) {
  (void)state;
  /* Artillery's payload options: cast (numbers become numbers, the
   * default), loadAll with name (every row in one variable) */
  char *csv = write_file("nums.csv", "1,007,abc\n2,-3,x y\n3,1e400,inf\n");
  char text[1024];
  snprintf(text, sizeof text,
           "config:\n"
           "  phases: [{burst: {connections: 1}}]\n"
           "  payload:\n"
           "    - {path: %s, fields: [id, n, s], order: sequence}\n"
           "    - {path: %s, fields: [sid, sn, ss], cast: false}\n"
           "    - {path: %s, fields: [a, b, c], loadAll: true, name: rows}\n"
           "scenarios:\n"
           "  - flow:\n"
           "      - post:\n"
           "          url: /echo\n"
           "          json: {id: \"{{ id }}\", n: \"{{ n }}\", sid: \"{{ sid }}\", rows: \"{{ rows "
           "}}\"}\n"
           "          expect:\n"
           "            - expr: \"json.id == 1 && json.n == 7\"\n"
           "            - expr: \"len(json.sid) == 1\"\n"
           "            - expr: \"len(json.rows) == 3 && json.rows[1].b == -3 && json.rows[1].c == "
           "'x y' && json.rows[2].b == '1e400' && json.rows[2].c == 'inf'\"\n",
           csv, csv, csv);
  rc_result_t r;
  assert_int_equal(run_text(text, &r, NULL, 1), 0);
  all_held(&r);
  rc_result_free(&r);
  free(csv);
}

static void test_seed(void **state) {
  (void)state;
  /* a fresh seed per run ($randomString differs between runs), printed in
   * report.json; --seed N replays the same values */
  char *file = write_file("seed.yml", "config:\n  phases: [{burst: {connections: 1}}]\n"
                                      "scenarios:\n  - flow:\n"
                                      "      - get: {url: \"/base/{{ $randomString(12) }}\"}\n"
                                      "      - get: {url: \"/base/{{ $uuid }}\"}\n");
  char *hist = rc_xasprintf("%s/h.jsonl", dir);
  char *json = rc_xasprintf("%s/seed.json", dir);
  char *urls[4];
  for (int i = 0; i < 4; i++) {
    if (i < 2) {
      assert_int_equal(cli(rc_cli_run, 0, 11, "run", "-q", "-t", "1", "--target", target,
                           "--history", hist, "-o", json, file),
                       0);
    } else {
      assert_int_equal(cli(rc_cli_run, 0, 13, "run", "-q", "-t", "1", "--seed", "42", "--target",
                           target, "--history", hist, "-o", json, file),
                       0);
    }
    urls[i] = history_urls(hist);
    assert_non_null(urls[i]);
    char *txt = NULL;
    size_t len = 0;
    assert_int_equal(rc_read_file(json, &txt, &len), 0);
    assert_non_null(strstr(txt, "\"seed\": "));
    if (i >= 2) {
      assert_non_null(strstr(txt, "\"seed\": 42,"));
    }
    free(txt);
  }
  assert_string_not_equal(urls[0], urls[1]); /* fresh: different values */
  assert_string_equal(urls[2], urls[3]);     /* replayed: the same */
  for (int i = 0; i < 4; i++) {
    free(urls[i]);
  }
  free(hist);
  free(json);
  free(file);
}

static void test_error_warning(void **state) {
  (void)state;
  /* every answer 4xx/5xx and no check failed: PASS, with a warning in the
   * text, report.json and the HTML report */
  char *file = write_file("err.yml", "config:\n  phases: [{burst: {connections: 4}}]\n"
                                     "scenarios:\n  - flow:\n      - get: {url: /status/500}\n");
  char *json = rc_xasprintf("%s/err.json", dir);
  char *html = rc_xasprintf("%s/err.html", dir);
  char *out = rc_xasprintf("%s/err.txt", dir);
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  FILE *o = freopen(out, "w", stdout);
  assert_non_null(o);
  int rc = cli(rc_cli_run, 0, 8, "run", "--target", target, "-o", json, "--html", html, file);
  fflush(stdout);
  dup2(saved, STDOUT_FILENO);
  close(saved);
  assert_int_equal(rc, 0);
  const char *paths[] = {out, json, html};
  for (int i = 0; i < 3; i++) {
    char *txt = NULL;
    size_t len = 0;
    assert_int_equal(rc_read_file(paths[i], &txt, &len), 0);
    if (!strstr(txt, "4 of 4 answers (100%) were 4xx/5xx")) {
      fail_msg("no warning in %s", paths[i]);
    }
    free(txt);
  }
  /* a mostly healthy run has none */
  char *fine = write_file("fine.yml", "config:\n  phases: [{burst: {connections: 4}}]\n"
                                      "scenarios:\n  - flow:\n      - get: {url: /ok}\n"
                                      "      - get: {url: /status/404}\n");
  assert_int_equal(cli(rc_cli_run, 0, 7, "run", "-q", "--target", target, "-o", json, fine), 0);
  char *txt = NULL;
  size_t len = 0;
  assert_int_equal(rc_read_file(json, &txt, &len), 0);
  assert_non_null(strstr(txt, "\"warnings\": []"));
  free(txt);
  free(fine);
  free(file);
  free(json);
  free(html);
  free(out);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_burst_invariants),
      cmocka_unit_test(test_open_model_flows),
      cmocka_unit_test(test_expectation_failure),
      cmocka_unit_test(test_network_errors_counted),
      cmocka_unit_test(test_burst_rounds),
      cmocka_unit_test(test_target_prefix_and_query),
      cmocka_unit_test(test_target_down),
      cmocka_unit_test(test_cli_exit_codes),
      cmocka_unit_test(test_cookie_jar),
      cmocka_unit_test(test_redirects),
      cmocka_unit_test(test_url_encoding),
      cmocka_unit_test(test_plugins_ensure),
      cmocka_unit_test(test_environments),
      cmocka_unit_test(test_undefined_variables),
      cmocka_unit_test(test_html_timeline),
      cmocka_unit_test(test_match_and_regexp),
      cmocka_unit_test(test_forms),
      cmocka_unit_test(test_expect_default_200),
      cmocka_unit_test(test_payload_cast_load_all),
      cmocka_unit_test(test_seed),
      cmocka_unit_test(test_error_warning),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
