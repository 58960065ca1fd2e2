/* test_rc_expr.c - the expression language: tokenizer and parser errors
 * (with columns), evaluation, types, overflow, count() filters, explain. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "expr.h"

typedef struct ent {
  int status;
  const char *step;
  int64_t count;
} ent_t;

static const ent_t ents[] = {
    {200, "purchase", 10}, {409, "purchase", 10}, {200, "reset", 1}, {0, "purchase", 2}};

typedef struct env_ud {
  json_t *json;
  const ent_t *cur; /* inside count() */
} env_ud_t;

static int name_cb(void *ud, const char *name, rc_val_t *out) {
  env_ud_t *e = ud;
  memset(out, 0, sizeof *out);
  if (e->cur) {
    if (strcmp(name, "status") == 0) {
      out->type = RC_V_INT;
      out->i = e->cur->status;
      return 0;
    }
    if (strcmp(name, "step") == 0) {
      out->type = RC_V_STR;
      out->s = e->cur->step;
      out->slen = strlen(e->cur->step);
      return 0;
    }
    return -1;
  }
  if (strcmp(name, "json") == 0) {
    out->type = RC_V_JSON;
    out->j = e->json;
    return 0;
  }
  if (strcmp(name, "sent") == 0) {
    out->type = RC_V_INT;
    out->i = 23;
    return 0;
  }
  if (strcmp(name, "initial") == 0) {
    out->type = RC_V_INT;
    out->i = 10;
    return 0;
  }
  return -1;
}

static int status_cb(void *ud, int64_t code, int64_t *out) {
  (void)ud;
  *out = 0;
  for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++) {
    if (ents[i].status == code) {
      *out += ents[i].count;
    }
  }
  return 0;
}

static int count_cb(void *ud, const rc_expr_t *const *f, size_t n, int64_t *out, rc_err_t *err);

static rc_env_t make_env(env_ud_t *u) {
  rc_env_t e = {.ud = u, .name = name_cb, .status_count = status_cb, .count = count_cb};
  return e;
}

static int count_cb(void *ud, const rc_expr_t *const *f, size_t n, int64_t *out, rc_err_t *err) {
  env_ud_t *outer = ud;
  *out = 0;
  for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++) {
    env_ud_t inner = {.json = outer->json, .cur = &ents[i]};
    rc_env_t env = make_env(&inner);
    int all = 1;
    for (size_t k = 0; k < n; k++) {
      int v = rc_expr_test(f[k], &env, err);
      if (v < 0) {
        return -1;
      }
      all &= v;
    }
    if (all) {
      *out += ents[i].count;
    }
  }
  return 0;
}

/* Evaluate src as a condition with json = body. */
static int test_src(const char *src, const char *body, rc_err_t *err) {
  rc_err_t perr = {0};
  rc_expr_t *e = rc_expr_parse(src, &perr);
  if (!e) {
    if (err) {
      *err = perr;
    }
    return -2;
  }
  env_ud_t u = {.json = body ? json_loads(body, JSON_DECODE_ANY, NULL) : NULL};
  rc_env_t env = make_env(&u);
  rc_err_t e2 = {0};
  int v = rc_expr_test(e, &env, &e2);
  if (err) {
    *err = e2;
  }
  json_decref(u.json);
  rc_expr_free(e);
  return v;
}

static int64_t eval_int(const char *src) {
  rc_err_t err = {0};
  rc_expr_t *e = rc_expr_parse(src, &err);
  assert_non_null(e);
  env_ud_t u = {0};
  rc_env_t env = make_env(&u);
  rc_val_t v;
  assert_int_equal(rc_expr_eval(e, &env, &v, &err), 0);
  assert_int_equal(v.type, RC_V_INT);
  rc_expr_free(e);
  return v.i;
}

static void test_arithmetic(void **state) {
  (void)state;
  assert_int_equal(eval_int("1 + 2 * 3"), 7);
  assert_int_equal(eval_int("(1 + 2) * 3"), 9);
  assert_int_equal(eval_int("10 - 4 - 3"), 3); /* left associative */
  assert_int_equal(eval_int("17 / 5"), 3);
  assert_int_equal(eval_int("17 % 5"), 2);
  assert_int_equal(eval_int("-3 + --3"), 0);
  assert_int_equal(eval_int("9223372036854775807"), INT64_MAX);
}

static void test_conditions(void **state) {
  (void)state;
  assert_int_equal(test_src("1 < 2 && 2 <= 2 && 3 > 2 && 3 >= 3", NULL, NULL), 1);
  assert_int_equal(test_src("1 == 2 || 'a' == 'a'", NULL, NULL), 1);
  assert_int_equal(test_src("!(1 == 1)", NULL, NULL), 0);
  assert_int_equal(test_src("'abc' < 'abd' && 'ab' < 'abc'", NULL, NULL), 1);
  assert_int_equal(test_src("true != false && null == null", NULL, NULL), 1);
  assert_int_equal(test_src("1 == '1'", NULL, NULL), 0); /* different types are unequal */
  /* && and || short-circuit: the right side would be a type error */
  assert_int_equal(test_src("false && 1", NULL, NULL), 0);
  assert_int_equal(test_src("true || 1", NULL, NULL), 1);
}

static void test_json_paths(void **state) {
  (void)state;
  const char *body = "{\"stock\":0,\"item\":{\"id\":\"item-1\",\"tags\":[\"a\",\"b\"]},"
                     "\"data\":[{\"userId\":\"u1\",\"n\":2},{\"userId\":\"u1\",\"n\":3}],"
                     "\"ratio\":2.0,\"ok\":true}";
  assert_int_equal(test_src("json.stock == 0", body, NULL), 1);
  assert_int_equal(test_src("json.item.id == 'item-1'", body, NULL), 1);
  assert_int_equal(test_src("json.item.tags[1] == 'b' && json.item.tags[-1] == 'b'", body, NULL),
                   1);
  assert_int_equal(test_src("json['item']['id'] == 'item-1'", body, NULL), 1);
  assert_int_equal(test_src("json.missing == null && json.item.tags[9] == null", body, NULL), 1);
  assert_int_equal(test_src("json.ratio == 2 && json.ok", body, NULL), 1);
  assert_int_equal(
      test_src("len(json.data) == 2 && len(json.item) == 2 && len('abc') == 3", body, NULL), 1);
  assert_int_equal(test_src("all(json.data, it.userId == 'u1')", body, NULL), 1);
  assert_int_equal(test_src("any(json.data, it.n == 3) && !any(json.data, it.n == 4)", body, NULL),
                   1);
  assert_int_equal(test_src("sum(json.data, it.n) == 5", body, NULL), 1);
  /* json that is not an object: fields are null, not an error */
  assert_int_equal(test_src("json.stock == null", "[1,2]", NULL), 1);
  assert_int_equal(test_src("json.stock == null", NULL, NULL), 1);
}

static void test_tallies(void **state) {
  (void)state;
  assert_int_equal(
      test_src("status[200] == 11 && status[409] == 10 && status[500] == 0", NULL, NULL), 1);
  assert_int_equal(test_src("count(status == 200, step == 'purchase') == 10", NULL, NULL), 1);
  assert_int_equal(test_src("count(step == 'purchase') == 22", NULL, NULL), 1);
  assert_int_equal(test_src("count() == 23 && count() == sent", NULL, NULL), 1);
  assert_int_equal(test_src("json.stock == initial - count(status == 200, step == 'purchase')",
                            "{\"stock\":0}", NULL),
                   1);
  assert_int_equal(test_src("json.stock == initial - count(status == 200, step == 'purchase')",
                            "{\"stock\":-3}", NULL),
                   0);
}

static void expect_parse_error(const char *src, int col, const char *needle) {
  rc_err_t err = {0};
  rc_expr_t *e = rc_expr_parse(src, &err);
  if (e) {
    fail_msg("'%s' parsed", src);
  }
  if (col) {
    assert_int_equal(err.col, col);
  }
  if (!strstr(err.msg, needle)) {
    fail_msg("'%s': message '%s' lacks '%s'", src, err.msg, needle);
  }
}

static void test_parse_errors(void **state) {
  (void)state;
  expect_parse_error("", 1, "empty");
  expect_parse_error("   ", 0, "empty");
  expect_parse_error("1 +", 4, "unexpected end");
  expect_parse_error("(1 + 2", 7, "expected ')'");
  expect_parse_error("a = 1", 3, "'=' is not an operator");
  expect_parse_error("1 == 2 == 3", 8, "do not chain");
  expect_parse_error("'abc", 1, "unterminated string");
  expect_parse_error("foo(1)", 1, "unknown function 'foo'");
  expect_parse_error("len()", 1, "wrong number of arguments");
  expect_parse_error("all(json)", 1, "wrong number");
  expect_parse_error("json.", 6, "expected a name");
  expect_parse_error("status[1", 9, "expected ']'");
  expect_parse_error("1 2", 3, "unexpected");
  expect_parse_error("99999999999999999999", 1, "too large");
  expect_parse_error("12abc", 3, "bad number");
  expect_parse_error("a # b", 3, "unexpected character '#'");
  expect_parse_error("count(status == 200,)", 0, "unexpected");
  /* deep nesting is refused, not a stack overflow */
  char deep[4096];
  memset(deep, '(', 3000);
  deep[3000] = '1';
  memset(deep + 3001, ')', 3000 > 1094 ? 1094 : 3000);
  deep[4095] = '\0';
  expect_parse_error(deep, 0, "nested too deeply");
  memset(deep, '!', 4000);
  deep[4000] = '\0';
  expect_parse_error(deep, 0, "nested too deeply");
}

static void expect_eval_error(const char *src, const char *body, const char *needle) {
  rc_err_t err = {0};
  int v = test_src(src, body, &err);
  if (v != -1) {
    fail_msg("'%s' gave %d", src, v);
  }
  if (!strstr(err.msg, needle)) {
    fail_msg("'%s': message '%s' lacks '%s'", src, err.msg, needle);
  }
}

static void test_eval_errors(void **state) {
  (void)state;
  expect_eval_error("1 / 0 == 1", NULL, "division by zero");
  expect_eval_error("1 % 0 == 1", NULL, "division by zero");
  expect_eval_error("9223372036854775807 + 1 == 0", NULL, "overflow");
  expect_eval_error("-9223372036854775807 - 2 == 0", NULL, "overflow");
  expect_eval_error("9223372036854775807 * 2 == 0", NULL, "overflow");
  expect_eval_error("nosuch == 1", NULL, "unknown name 'nosuch'");
  expect_eval_error("1 + 'a' == 1", NULL, "needs integers");
  expect_eval_error("1 < 'a'", NULL, "cannot compare");
  expect_eval_error("1 && true", NULL, "needs boolean");
  expect_eval_error("1 + 1", NULL, "not a condition");
  expect_eval_error("len(json.x) == 0", "{}", "len() needs");
  expect_eval_error("all(json.x, true)", "{}", "needs an array");
  expect_eval_error("count(nosuch == 1) == 0", NULL, "unknown name");
  expect_eval_error("sum(json, 'x') == 0", "[1]", "sum() needs integer");
}

static void test_print_and_explain(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_expr_t *e =
      rc_expr_parse("json.stock==initial-count(status==200,step=='purchase')&&(1-(2-3))==2", &err);
  assert_non_null(e);
  rc_buf_t b = {0};
  rc_expr_print(e, &b);
  assert_string_equal(b.data, "json.stock == initial - count(status == 200, step == 'purchase') && "
                              "1 - (2 - 3) == 2");
  rc_buf_free(&b);
  env_ud_t u = {.json = json_loads("{\"stock\":-3}", 0, NULL)};
  rc_env_t env = make_env(&u);
  rc_expr_explain(e, &env, &b);
  assert_non_null(strstr(b.data, "json.stock = -3"));
  assert_non_null(strstr(b.data, "initial - count(status == 200, step == 'purchase') = 0"));
  rc_buf_free(&b);
  json_decref(u.json);
  rc_expr_free(e);
  /* printing a parsed tree and parsing the text again gives the same text */
  const char *srcs[] = {
      "-(1 + 2) * 3",     "!a || b && c",        "x[1].y['z']",
      "status[201] == 1", "(a < b) != (c == d)", /* found by fuzz_expr: must keep parentheses */
      "'it''s' == \"q\""};
  for (size_t i = 0; i < sizeof srcs / sizeof srcs[0]; i++) {
    rc_expr_t *a = rc_expr_parse(srcs[i], &err);
    if (!a) {
      continue; /* the last one is two strings: a parse error is fine */
    }
    rc_buf_t p1 = {0}, p2 = {0};
    rc_expr_print(a, &p1);
    rc_expr_t *c = rc_expr_parse(p1.data, &err);
    assert_non_null(c);
    rc_expr_print(c, &p2);
    assert_string_equal(p1.data, p2.data);
    rc_buf_free(&p1);
    rc_buf_free(&p2);
    rc_expr_free(a);
    rc_expr_free(c);
  }
}

static void count_visitor(void *ud, const rc_expr_t *call, const rc_expr_t *const *f, size_t n) {
  (void)call;
  (void)f;
  *(size_t *)ud += n;
}

static void test_each_count(void **state) {
  (void)state;
  rc_err_t err = {0};
  rc_expr_t *e = rc_expr_parse("count(status == 200) + count(a == 1, b == 2) == 3", &err);
  assert_non_null(e);
  size_t filters = 0;
  rc_expr_each_count(e, count_visitor, &filters);
  assert_int_equal(filters, 3);
  rc_expr_free(e);
  assert_null(rc_expr_parse(NULL, &err));
  rc_expr_free(NULL);
}

/* Build "first<sep>term<sep>term..." with n terms after the first. */
static char *chain(const char *first, const char *term, size_t n, const char *tail) {
  size_t fl = strlen(first), tl = strlen(term), el = strlen(tail);
  char *s = malloc(fl + tl * n + el + 1);
  assert_non_null(s);
  memcpy(s, first, fl);
  for (size_t i = 0; i < n; i++) {
    memcpy(s + fl + i * tl, term, tl);
  }
  memcpy(s + fl + n * tl, tail, el + 1);
  return s;
}

static void test_hostile_chains(void **state) {
  (void)state;
  /* 300,000 chained operators once crashed evaluation and freeing (one
   * stack frame per term of a left-deep tree): now the parser refuses
   * them with a message, and a chain under the bound still works */
  static const struct {
    const char *first, *term, *tail;
  } hostile[] = {{"true", " && true", ""}, {"false", " || false", ""}, {"1", " + 1", " == 1"},
                 {"2", " * 1", " > 0"},    {"json", ".a", " == null"}, {"json", "[0]", " == null"}};
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    char *src = chain(hostile[i].first, hostile[i].term, 300000, hostile[i].tail);
    expect_parse_error(src, 0, "expression too long");
    free(src);
  }
  char *ok = chain("1", " + 1", 200, " == 201");
  assert_int_equal(test_src(ok, NULL, NULL), 1);
  free(ok);
  ok = chain("true", " && true", 200, "");
  assert_int_equal(test_src(ok, NULL, NULL), 1);
  free(ok);
  /* deep nesting is refused too (it always was) */
  char *deep = chain("", "(", 100000, "1");
  expect_parse_error(deep, 0, "nested too deeply");
  free(deep);
  deep = chain("", "-", 100000, "1");
  expect_parse_error(deep, 0, "nested too deeply");
  free(deep);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_arithmetic),        cmocka_unit_test(test_conditions),
      cmocka_unit_test(test_json_paths),        cmocka_unit_test(test_tallies),
      cmocka_unit_test(test_parse_errors),      cmocka_unit_test(test_eval_errors),
      cmocka_unit_test(test_print_and_explain), cmocka_unit_test(test_each_count),
      cmocka_unit_test(test_hostile_chains),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
