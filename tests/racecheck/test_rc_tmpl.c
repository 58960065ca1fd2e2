/* test_rc_tmpl.c - {{ }} templates, generators, typed JSON substitution
 * and the JSON paths of captures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "jpath.h"
#include "tmpl.h"

static json_t *vars;

static json_t *lookup(void *ud, const char *name, size_t len) {
  (void)ud;
  char key[128];
  if (len >= sizeof key) {
    return NULL;
  }
  memcpy(key, name, len);
  key[len] = '\0';
  return json_object_get(vars, key);
}

static rc_rng_t rng;
static rc_tctx_t ctx = {.lookup = lookup, .rng = &rng};

static int setup(void **state) {
  (void)state;
  vars = json_loads("{\"id\":42,\"email\":\"a@b.c\",\"user\":{\"name\":\"ann\",\"tags\":[\"x\","
                    "\"y\"]},\"$loopCount\":3,\"$loopElement\":{\"k\":\"v\"}}",
                    0, NULL);
  rc_rng_seed(&rng, 7);
  return vars ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  json_decref(vars);
  return 0;
}

static char *render(const char *s) {
  rc_buf_t b = {0};
  rc_err_t err = {0};
  if (rc_tmpl_render(s, &ctx, &b, &err) != 0) {
    rc_buf_free(&b);
    return NULL;
  }
  return rc_buf_steal(&b);
}

static void test_variables(void **state) {
  (void)state;
  char *s = render("/users/{{ id }}?e={{email}}&n={{ user.name }}&t={{ user.tags[1] }}");
  assert_string_equal(s, "/users/42?e=a@b.c&n=ann&t=y");
  free(s);
  s = render("no templates here");
  assert_string_equal(s, "no templates here");
  free(s);
  s = render("");
  assert_string_equal(s, "");
  free(s);
  s = render("{{ user }}");
  assert_string_equal(s, "{\"name\":\"ann\",\"tags\":[\"x\",\"y\"]}");
  free(s);
  s = render("{{ $loopCount }}-{{ $loopElement.k }}");
  assert_string_equal(s, "3-v");
  free(s);
}

static void test_triple_braces(void **state) {
  (void)state;
  /* Artillery reads "{{{ x }}}" as "{{ x }}" */
  char *s = render("/u/{{{ id }}}/{{{user.name}}}?e={{ email }}");
  assert_string_equal(s, "/u/42/ann?e=a@b.c");
  free(s);
  rc_err_t err = {0};
  assert_int_equal(rc_tmpl_check("{{{ id }}}-{{{ $uuid }}}", &err), 0);
  assert_int_equal(rc_tmpl_check("{{{ id }}", &err), -1);
  json_t *tmpl = json_pack("{s:s}", "n", "{{{ id }}}");
  json_t *out = rc_tmpl_render_json(tmpl, &ctx, &err);
  assert_non_null(out);
  assert_int_equal(json_integer_value(json_object_get(out, "n")), 42); /* typed, as {{ }} */
  json_decref(out);
  json_decref(tmpl);
}

static void test_generators(void **state) {
  (void)state;
  for (int i = 0; i < 200; i++) {
    char *s = render("{{ $randomNumber(5, 9) }}");
    long v = strtol(s, NULL, 10);
    assert_true(v >= 5 && v <= 9);
    free(s);
  }
  char *s = render("{{ $randomString(12) }}");
  assert_int_equal(strlen(s), 12);
  for (int i = 0; i < 12; i++) {
    assert_true((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                (s[i] >= '0' && s[i] <= '9'));
  }
  free(s);
  char *u1 = render("{{ $uuid }}"), *u2 = render("{{ $uuid() }}");
  assert_int_equal(strlen(u1), 36);
  assert_int_equal(u1[14], '4'); /* version 4 */
  assert_true(strchr("89ab", u1[19]) != NULL);
  assert_string_not_equal(u1, u2);
  free(u1);
  free(u2);
  setenv("RC_TEST_ENV", "hello", 1);
  s = render("{{ $env.RC_TEST_ENV }}/{{ $processEnvironment.RC_TEST_ENV }}");
  assert_string_equal(s, "hello/hello");
  free(s);
  s = render("{{ $timestamp }}");
  assert_true(strtoull(s, NULL, 10) > 1600000000000ull);
  free(s);
}

static void test_render_errors(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_buf_t b = {0};
  assert_int_equal(rc_tmpl_render("/x/{{ nosuch }}", &ctx, &b, &err), -1);
  assert_non_null(strstr(err.msg, "no variable 'nosuch'"));
  rc_buf_free(&b);
  assert_int_equal(rc_tmpl_render("{{ user.nope }}", &ctx, &b, &err), -1);
  assert_non_null(strstr(err.msg, "has no"));
  rc_buf_free(&b);
  unsetenv("RC_TEST_NOPE");
  assert_int_equal(rc_tmpl_render("{{ $env.RC_TEST_NOPE }}", &ctx, &b, &err), -1);
  assert_non_null(strstr(err.msg, "not set"));
  rc_buf_free(&b);
}

static void want_check(const char *s, int ok, const char *needle) {
  rc_err_t err = {0};
  int rc = rc_tmpl_check(s, &err);
  if ((rc == 0) != ok) {
    fail_msg("check('%s') = %d", s, rc);
  }
  if (!ok && needle && !strstr(err.msg, needle)) {
    fail_msg("check('%s'): '%s' lacks '%s'", s, err.msg, needle);
  }
}

static void test_check(void **state) {
  (void)state;
  want_check("/a/{{ id }}/{{ $uuid }}/{{ $randomNumber(1, 2) }}", 1, NULL);
  want_check("{{ $loopElement.k }} {{ $env.HOME }} {{ user.tags[0] }}", 1, NULL);
  want_check("{{ id", 0, "unterminated");
  want_check("id }}", 0, "without");
  want_check("{{ }}", 0, "empty");
  want_check("{{ {{ a }} }}", 0, "nested");
  want_check("{{ $nope }}", 0, "unknown generator");
  want_check("{{ $randomNumber(1) }}", 0, "$randomNumber needs");
  want_check("{{ $randomNumber(a, b) }}", 0, "$randomNumber needs");
  want_check("{{ $randomString(-1) }}", 0, "$randomString");
  want_check("{{ $uuid(3) }}", 0, "no arguments");
  want_check("{{ a b }}", 0, "bad variable");
  want_check("{{ a[x }}", 0, "bad path");
}

static void test_json_typed(void **state) {
  (void)state;
  json_t *t = json_loads("{\"n\":\"{{ id }}\",\"s\":\"id={{ id }}\",\"u\":\"{{ user }}\","
                         "\"list\":[\"{{ email }}\",1,true,null],\"plain\":\"x\"}",
                         0, NULL);
  rc_err_t err = {0};
  json_t *r = rc_tmpl_render_json(t, &ctx, &err);
  assert_non_null(r);
  assert_true(json_is_integer(json_object_get(r, "n")));
  assert_int_equal(json_integer_value(json_object_get(r, "n")), 42);
  assert_string_equal(json_string_value(json_object_get(r, "s")), "id=42");
  assert_true(json_is_object(json_object_get(r, "u")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(r, "list"), 0)), "a@b.c");
  json_decref(r);
  json_decref(t);
  t = json_loads("{\"a\":[\"{{ nosuch }}\"]}", 0, NULL);
  assert_null(rc_tmpl_render_json(t, &ctx, &err));
  json_decref(t);
}

static void test_jpath(void **state) {
  (void)state;
  json_t *j = json_loads("{\"id\":7,\"a\":{\"b\":[10,{\"c\":\"d\"}]},\"x.y\":1}", 0, NULL);
  assert_int_equal(json_integer_value(rc_jpath_get(j, "$.id")), 7);
  assert_int_equal(json_integer_value(rc_jpath_get(j, "id")), 7);
  assert_int_equal(json_integer_value(rc_jpath_get(j, "$.a.b[0]")), 10);
  assert_int_equal(json_integer_value(rc_jpath_get(j, "a.b[-2]")), 10);
  assert_string_equal(json_string_value(rc_jpath_get(j, "$.a.b[1].c")), "d");
  assert_int_equal(json_integer_value(rc_jpath_get(j, "$['x.y']")), 1);
  assert_ptr_equal(rc_jpath_get(j, "$"), j);
  assert_null(rc_jpath_get(j, "$.nope"));
  assert_null(rc_jpath_get(j, "$.a.b[5]"));
  assert_null(rc_jpath_get(j, "$.id.x"));
  assert_null(rc_jpath_get(j, "$.a[0]"));
  assert_null(rc_jpath_get(NULL, "$.id"));
  rc_err_t err = {0};
  assert_int_equal(rc_jpath_check("$.a.b[1].c", &err), 0);
  assert_int_equal(rc_jpath_check("$..a", &err), -1);
  assert_int_equal(rc_jpath_check("$.a[x]", &err), -1);
  assert_int_equal(rc_jpath_check("$['a", &err), -1);
  assert_int_equal(rc_jpath_check("", &err), -1);
  assert_int_equal(rc_jpath_check("$.a b", &err), 0); /* names may hold spaces */
  json_decref(j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_variables),     cmocka_unit_test(test_generators),
      cmocka_unit_test(test_triple_braces), cmocka_unit_test(test_render_errors),
      cmocka_unit_test(test_check),         cmocka_unit_test(test_json_typed),
      cmocka_unit_test(test_jpath),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
