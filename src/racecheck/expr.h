/* expr.h - the expression language of invariants and `expect: - expr:`.
 *
 *   expr    := or
 *   or      := and ( "||" and )*
 *   and     := cmp ( "&&" cmp )*
 *   cmp     := add ( ("=="|"!="|"<"|"<="|">"|">=") add )?
 *   add     := mul ( ("+"|"-") mul )*
 *   mul     := unary ( ("*"|"/"|"%") unary )*
 *   unary   := ("-"|"!") unary | postfix
 *   postfix := primary ( "." NAME | "[" expr "]" )*
 *   primary := INT | STRING | "true" | "false" | "null" | "(" expr ")"
 *            | "status" "[" expr "]"           tally: answers with that status
 *            | NAME "(" [ expr ("," expr)* ] ")"   function call
 *            | NAME                            a name given by the environment
 *
 * Values are 64-bit integers (overflow is an error, never wraps), booleans,
 * strings, null and JSON values (objects and arrays from responses and
 * variables; JSON numbers read as integers). `==`/`!=` compare any two
 * values (different types are unequal); ordering needs two integers or two
 * strings; `&&`, `||`, `!` need booleans and short-circuit.
 *
 * Functions: count(filter, ...) counts the run's answers for which every
 * filter holds (filters see status, step, scenario, phase, method, error);
 * len(x) (string, array, object); all(list, pred) / any(list, pred) with
 * `it` bound to each element; sum(list, expr) adds expr over the elements;
 * header(name) a response header.
 *
 * Parsing is pure (no globals, no I/O) and returns a tree or a message with
 * the column. Evaluation is pure apart from the caller's callbacks.
 */
#ifndef RC_EXPR_H
#define RC_EXPR_H

#include <jansson.h>
#include <stdint.h>

#include "rc.h"

enum { RC_V_NULL, RC_V_BOOL, RC_V_INT, RC_V_STR, RC_V_JSON };

typedef struct rc_val {
  int type;
  int64_t i; /* RC_V_INT, RC_V_BOOL */
  const char *s;
  size_t slen;     /* RC_V_STR (borrowed: from the tree, the environment or JSON) */
  const json_t *j; /* RC_V_JSON (borrowed) */
} rc_val_t;

typedef struct rc_expr rc_expr_t;

typedef struct rc_env {
  void *ud;
  /* Resolve a name (json, status, sent, a variable...). Returns 0 with the
   * value, or -1 when the name is unknown. */
  int (*name)(void *ud, const char *name, rc_val_t *out);
  /* status[code]: how many answers had that status. Optional. */
  int (*status_count)(void *ud, int64_t code, int64_t *out);
  /* count(filters...): answers for which every filter is true. Optional. */
  int (*count)(void *ud, const rc_expr_t *const *filters, size_t n, int64_t *out, rc_err_t *err);
  /* header(name). Optional. */
  int (*header)(void *ud, const char *name, rc_val_t *out);
} rc_env_t;

/* Parse src. Returns a tree the caller frees with rc_expr_free, or NULL
 * with a message and err->col (1-based) pointing at the problem. */
rc_expr_t *rc_expr_parse(const char *src, rc_err_t *err);
void rc_expr_free(rc_expr_t *e);
/* Evaluate. Returns 0 with the value, or -1 with a message. */
int rc_expr_eval(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, rc_err_t *err);
/* Evaluate a condition: 1 true, 0 false, -1 error (including "not a
 * boolean"). */
int rc_expr_test(const rc_expr_t *e, const rc_env_t *env, rc_err_t *err);
/* Append an explanation of why a condition has its value: the value of
 * each side of every comparison, e.g. "json.stock = -3; 10 - count(...) = 0". */
void rc_expr_explain(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out);
/* Append one plain sentence saying why a condition is false, e.g.
 * "status[201] is 20 but should equal 1." (the first false part of an &&
 * chain; the values of both sides of a comparison). */
void rc_expr_sentence(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out);
/* Append the source text of a subtree (normalised). */
void rc_expr_print(const rc_expr_t *e, rc_buf_t *out);
/* Append a value as text. */
void rc_val_print(const rc_val_t *v, rc_buf_t *out);
/* Visit every count(...) call in the tree (for "requests involved"). */
void rc_expr_each_count(const rc_expr_t *e,
                        void (*fn)(void *ud, const rc_expr_t *call, const rc_expr_t *const *filters,
                                   size_t n),
                        void *ud);

#endif /* RC_EXPR_H */
