/* fuzz_expr.c - libFuzzer target: the expression tokenizer, parser,
 * printer and evaluator. A parsed expression must print to text that
 * parses again to the same print; evaluation against a sample environment
 * must return a value or an error, never crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "expr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *sample;

static int name_cb(void *ud, const char *name, rc_val_t *out) {
  (void)ud;
  memset(out, 0, sizeof *out);
  if (strcmp(name, "json") == 0) {
    out->type = RC_V_JSON;
    out->j = sample;
    return 0;
  }
  if (strcmp(name, "status") == 0 || strcmp(name, "sent") == 0) {
    out->type = RC_V_INT;
    out->i = 200;
    return 0;
  }
  if (strcmp(name, "step") == 0) {
    out->type = RC_V_STR;
    out->s = "purchase";
    out->slen = 8;
    return 0;
  }
  return -1;
}

static int status_cb(void *ud, int64_t code, int64_t *out) {
  (void)ud;
  *out = code == 200 ? 10 : 0;
  return 0;
}

static int count_cb(void *ud, const rc_expr_t *const *f, size_t n, int64_t *out, rc_err_t *err);

static const rc_env_t env = {.name = name_cb, .status_count = status_cb, .count = count_cb};

static int count_cb(void *ud, const rc_expr_t *const *f, size_t n, int64_t *out, rc_err_t *err) {
  (void)ud;
  *out = 0;
  for (size_t i = 0; i < n; i++) {
    int v = rc_expr_test(f[i], &env, err);
    if (v < 0) {
      return -1;
    }
    *out += v;
  }
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!sample) {
    sample = json_loads("{\"stock\":3,\"data\":[{\"userId\":\"u\",\"n\":1},{\"n\":-2}],"
                        "\"s\":\"x\",\"b\":true,\"z\":null,\"big\":9223372036854775807}",
                        0, NULL);
  }
  char *src = malloc(size + 1);
  memcpy(src, data, size);
  src[size] = '\0';
  rc_err_t err = {0};
  rc_expr_t *e = rc_expr_parse(src, &err);
  if (e) {
    rc_buf_t p1 = {0}, p2 = {0};
    rc_expr_print(e, &p1);
    rc_expr_t *again = rc_expr_parse(p1.data, &err);
    if (!again) {
      abort(); /* the printer wrote something the parser refuses */
    }
    rc_expr_print(again, &p2);
    if (strcmp(p1.data, p2.data) != 0) {
      abort(); /* printing is not stable */
    }
    rc_val_t v;
    (void)rc_expr_eval(e, &env, &v, &err);
    rc_buf_t ex = {0};
    rc_expr_explain(e, &env, &ex);
    rc_buf_free(&ex);
    rc_buf_free(&p1);
    rc_buf_free(&p2);
    rc_expr_free(again);
    rc_expr_free(e);
  }
  free(src);
  return 0;
}
