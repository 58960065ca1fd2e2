/* expr.c - see expr.h. A hand-written tokenizer and recursive-descent
 * parser (bounded depth, so hostile input cannot exhaust the stack) and a
 * tree-walking evaluator with checked integer arithmetic. */
#include "expr.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define RC_EXPR_MAX_DEPTH 128
/* The tallest tree the parser builds. Chains of binary operators
 * ("a && b && c ...", "1 + 1 + ...") are parsed by loops but make
 * left-deep trees that evaluation, printing and freeing walk recursively:
 * bounding the height bounds that recursion (evaluation stops at
 * 4 * RC_EXPR_MAX_DEPTH, above this). */
#define RC_EXPR_MAX_HEIGHT 256

enum {
  N_INT,
  N_STR,
  N_BOOL,
  N_NULL,
  N_NAME,
  N_FIELD,  /* a.name */
  N_INDEX,  /* a[b] */
  N_STATUS, /* status[b] */
  N_CALL,
  N_NEG,
  N_NOT,
  N_BIN,
};

enum {
  OP_OR,
  OP_AND,
  OP_EQ,
  OP_NE,
  OP_LT,
  OP_LE,
  OP_GT,
  OP_GE,
  OP_ADD,
  OP_SUB,
  OP_MUL,
  OP_DIV,
  OP_MOD
};

static const char *const rc__opname[] = {"||", "&&", "==", "!=", "<", "<=", ">",
                                         ">=", "+",  "-",  "*",  "/", "%"};

struct rc_expr {
  int kind;
  int op;
  int col;
  int64_t i;
  char *s; /* N_STR, N_NAME, N_FIELD, N_CALL */
  size_t slen;
  rc_expr_t *a, *b;
  rc_expr_t **args;
  size_t nargs;
  int height; /* 1 for a leaf */
};

/* --------------------------------------------------------------- tokens */

enum { T_END, T_INT, T_STR, T_NAME, T_OP };

typedef struct rc_lex {
  const char *src;
  const char *p;
  int tok;
  const char *start; /* of the current token */
  int64_t ival;
  char *sval; /* T_STR (unescaped, owned) / T_NAME (owned) */
  size_t slen;
  char op[3];
  rc_err_t *err;
  int failed;
  int depth;
} rc_lex_t;

static int rc__col(const rc_lex_t *l, const char *at) {
  return (int)(at - l->src) + 1;
}

static void rc__fail(rc_lex_t *l, const char *at, const char *fmt, const char *arg) {
  if (l->failed) {
    return;
  }
  l->failed = 1;
  char msg[256];
  snprintf(msg, sizeof msg, fmt, arg);
  rc_err_set(l->err, 0, rc__col(l, at), "%s at column %d", msg, rc__col(l, at));
}

static void rc__next(rc_lex_t *l) {
  free(l->sval);
  l->sval = NULL;
  while (isspace((unsigned char)*l->p)) {
    l->p++;
  }
  l->start = l->p;
  char c = *l->p;
  if (c == '\0') {
    l->tok = T_END;
    return;
  }
  if (isdigit((unsigned char)c)) {
    int64_t v = 0;
    while (isdigit((unsigned char)*l->p)) {
      int d = *l->p - '0';
      if (v > (INT64_MAX - d) / 10) {
        rc__fail(l, l->start, "%s", "integer too large");
        l->tok = T_END;
        return;
      }
      v = v * 10 + d;
      l->p++;
    }
    if (isalpha((unsigned char)*l->p) || *l->p == '_') {
      rc__fail(l, l->p, "%s", "bad number");
      l->tok = T_END;
      return;
    }
    l->tok = T_INT;
    l->ival = v;
    return;
  }
  if (isalpha((unsigned char)c) || c == '_' || c == '$') {
    while (isalnum((unsigned char)*l->p) || *l->p == '_' || *l->p == '$') {
      l->p++;
    }
    l->tok = T_NAME;
    l->slen = (size_t)(l->p - l->start);
    l->sval = rc_xstrndup(l->start, l->slen);
    return;
  }
  if (c == '\'' || c == '"') {
    char q = c;
    l->p++;
    rc_buf_t b = {0};
    for (;;) {
      char d = *l->p;
      if (d == '\0') {
        rc_buf_free(&b);
        rc__fail(l, l->start, "%s", "unterminated string");
        l->tok = T_END;
        return;
      }
      l->p++;
      if (d == q) {
        break;
      }
      if (d == '\\') {
        char e = *l->p;
        if (e == '\0') {
          continue;
        }
        l->p++;
        d = e == 'n' ? '\n' : e == 't' ? '\t' : e;
      }
      rc_buf_putc(&b, d);
    }
    l->tok = T_STR;
    l->slen = b.len;
    l->sval = b.data ? rc_buf_steal(&b) : rc_xstrdup("");
    return;
  }
  static const char *const two[] = {"==", "!=", "<=", ">=", "&&", "||"};
  for (size_t i = 0; i < sizeof two / sizeof two[0]; i++) {
    if (l->p[0] == two[i][0] && l->p[1] == two[i][1]) {
      memcpy(l->op, two[i], 3);
      l->p += 2;
      l->tok = T_OP;
      return;
    }
  }
  if (strchr("+-*/%<>!()[].,", c)) {
    l->op[0] = c;
    l->op[1] = '\0';
    l->p++;
    l->tok = T_OP;
    return;
  }
  if (c == '=') {
    rc__fail(l, l->start, "%s", "'=' is not an operator (use '==')");
  } else {
    char s[2] = {c, 0};
    rc__fail(l, l->start, "unexpected character '%s'", s);
  }
  l->tok = T_END;
}

static int rc__is_op(const rc_lex_t *l, const char *op) {
  return l->tok == T_OP && strcmp(l->op, op) == 0;
}

/* --------------------------------------------------------------- tree */

static rc_expr_t *rc__node(int kind, int col) {
  rc_expr_t *e = rc_xcalloc(1, sizeof *e);
  e->kind = kind;
  e->col = col;
  e->height = 1;
  return e;
}

void rc_expr_free(rc_expr_t *e) {
  if (!e) {
    return;
  }
  rc_expr_free(e->a);
  rc_expr_free(e->b);
  for (size_t i = 0; i < e->nargs; i++) {
    rc_expr_free(e->args[i]);
  }
  free(e->args);
  free(e->s);
  free(e);
}

/* Set a new inner node's height from its children; fail (and free it)
 * when the tree grows taller than RC_EXPR_MAX_HEIGHT. */
static rc_expr_t *rc__grown(rc_lex_t *l, rc_expr_t *e) {
  int h = 0;
  if (e->a && e->a->height > h) {
    h = e->a->height;
  }
  if (e->b && e->b->height > h) {
    h = e->b->height;
  }
  for (size_t i = 0; i < e->nargs; i++) {
    if (e->args[i]->height > h) {
      h = e->args[i]->height;
    }
  }
  e->height = h + 1;
  if (e->height > RC_EXPR_MAX_HEIGHT) {
    rc__fail(l, l->src + e->col - 1, "%s",
             "expression too long: more than 256 operations nested or chained (split it into "
             "several checks)");
    rc_expr_free(e);
    return NULL;
  }
  return e;
}

static rc_expr_t *rc__expr(rc_lex_t *l);

static rc_expr_t *rc__primary(rc_lex_t *l) {
  int col = rc__col(l, l->start);
  if (l->tok == T_INT) {
    rc_expr_t *e = rc__node(N_INT, col);
    e->i = l->ival;
    rc__next(l);
    return e;
  }
  if (l->tok == T_STR) {
    rc_expr_t *e = rc__node(N_STR, col);
    e->s = l->sval;
    e->slen = l->slen;
    l->sval = NULL;
    rc__next(l);
    return e;
  }
  if (rc__is_op(l, "(")) {
    rc__next(l);
    rc_expr_t *e = rc__expr(l);
    if (!e) {
      return NULL;
    }
    if (!rc__is_op(l, ")")) {
      rc__fail(l, l->start, "%s", "expected ')'");
      rc_expr_free(e);
      return NULL;
    }
    rc__next(l);
    return e;
  }
  if (l->tok == T_NAME) {
    char *name = l->sval;
    size_t nlen = l->slen;
    l->sval = NULL;
    rc__next(l);
    if (strcmp(name, "true") == 0 || strcmp(name, "false") == 0) {
      rc_expr_t *e = rc__node(N_BOOL, col);
      e->i = name[0] == 't';
      free(name);
      return e;
    }
    if (strcmp(name, "null") == 0) {
      free(name);
      return rc__node(N_NULL, col);
    }
    if (strcmp(name, "status") == 0 && rc__is_op(l, "[")) {
      free(name);
      rc__next(l);
      rc_expr_t *e = rc__node(N_STATUS, col);
      e->a = rc__expr(l);
      if (!e->a || !rc__is_op(l, "]")) {
        rc__fail(l, l->start, "%s", "expected ']'");
        rc_expr_free(e);
        return NULL;
      }
      rc__next(l);
      return rc__grown(l, e);
    }
    if (rc__is_op(l, "(")) {
      rc_expr_t *e = rc__node(N_CALL, col);
      e->s = name;
      e->slen = nlen;
      rc__next(l);
      size_t cap = 0;
      if (!rc__is_op(l, ")")) {
        for (;;) {
          rc_expr_t *a = rc__expr(l);
          if (!a) {
            rc_expr_free(e);
            return NULL;
          }
          if (e->nargs == cap) {
            cap = cap ? cap * 2 : 4;
            e->args = rc_xrealloc(e->args, cap * sizeof(rc_expr_t *));
          }
          e->args[e->nargs++] = a;
          if (rc__is_op(l, ",")) {
            rc__next(l);
            continue;
          }
          break;
        }
      }
      if (!rc__is_op(l, ")")) {
        rc__fail(l, l->start, "%s", "expected ',' or ')'");
        rc_expr_free(e);
        return NULL;
      }
      rc__next(l);
      /* check the known functions and their arities now, not at run time */
      static const struct {
        const char *name;
        size_t min, max;
      } fns[] = {{"count", 0, 16}, {"len", 1, 1}, {"all", 2, 2},
                 {"any", 2, 2},    {"sum", 2, 2}, {"header", 1, 1}};
      size_t k;
      for (k = 0; k < sizeof fns / sizeof fns[0]; k++) {
        if (strcmp(fns[k].name, e->s) == 0) {
          break;
        }
      }
      if (k == sizeof fns / sizeof fns[0]) {
        rc__fail(l, l->src + col - 1, "unknown function '%s'", e->s);
        rc_expr_free(e);
        return NULL;
      }
      if (e->nargs < fns[k].min || e->nargs > fns[k].max) {
        rc__fail(l, l->src + col - 1, "wrong number of arguments to %s()", e->s);
        rc_expr_free(e);
        return NULL;
      }
      return rc__grown(l, e);
    }
    rc_expr_t *e = rc__node(N_NAME, col);
    e->s = name;
    e->slen = nlen;
    return e;
  }
  if (l->tok == T_END) {
    rc__fail(l, l->start, "%s", "unexpected end of expression");
  } else {
    rc__fail(l, l->start, "unexpected '%s'", l->tok == T_OP ? l->op : "token");
  }
  return NULL;
}

static rc_expr_t *rc__postfix(rc_lex_t *l) {
  rc_expr_t *e = rc__primary(l);
  while (e) {
    int col = rc__col(l, l->start);
    if (rc__is_op(l, ".")) {
      rc__next(l);
      if (l->tok != T_NAME) {
        rc__fail(l, l->start, "%s", "expected a name after '.'");
        rc_expr_free(e);
        return NULL;
      }
      rc_expr_t *f = rc__node(N_FIELD, col);
      f->a = e;
      f->s = l->sval;
      f->slen = l->slen;
      l->sval = NULL;
      rc__next(l);
      e = rc__grown(l, f);
    } else if (rc__is_op(l, "[")) {
      rc__next(l);
      rc_expr_t *f = rc__node(N_INDEX, col);
      f->a = e;
      f->b = rc__expr(l);
      if (!f->b || !rc__is_op(l, "]")) {
        rc__fail(l, l->start, "%s", "expected ']'");
        rc_expr_free(f);
        return NULL;
      }
      rc__next(l);
      e = rc__grown(l, f);
    } else {
      break;
    }
  }
  return e;
}

static rc_expr_t *rc__unary(rc_lex_t *l) {
  if (rc__is_op(l, "-") || rc__is_op(l, "!")) {
    int col = rc__col(l, l->start);
    int kind = l->op[0] == '-' ? N_NEG : N_NOT;
    if (++l->depth > RC_EXPR_MAX_DEPTH) {
      rc__fail(l, l->start, "%s", "expression nested too deeply");
      return NULL;
    }
    rc__next(l);
    rc_expr_t *a = rc__unary(l);
    l->depth--;
    if (!a) {
      return NULL;
    }
    rc_expr_t *e = rc__node(kind, col);
    e->a = a;
    return rc__grown(l, e);
  }
  return rc__postfix(l);
}

static rc_expr_t *rc__bin(rc_lex_t *l, int op, rc_expr_t *a, rc_expr_t *b, int col) {
  rc_expr_t *e = rc__node(N_BIN, col);
  e->op = op;
  e->a = a;
  e->b = b;
  return rc__grown(l, e);
}

static rc_expr_t *rc__mul(rc_lex_t *l) {
  rc_expr_t *e = rc__unary(l);
  while (e && (rc__is_op(l, "*") || rc__is_op(l, "/") || rc__is_op(l, "%"))) {
    int op = l->op[0] == '*' ? OP_MUL : l->op[0] == '/' ? OP_DIV : OP_MOD;
    int col = rc__col(l, l->start);
    rc__next(l);
    rc_expr_t *b = rc__unary(l);
    if (!b) {
      rc_expr_free(e);
      return NULL;
    }
    e = rc__bin(l, op, e, b, col);
  }
  return e;
}

static rc_expr_t *rc__add(rc_lex_t *l) {
  rc_expr_t *e = rc__mul(l);
  while (e && (rc__is_op(l, "+") || rc__is_op(l, "-"))) {
    int op = l->op[0] == '+' ? OP_ADD : OP_SUB;
    int col = rc__col(l, l->start);
    rc__next(l);
    rc_expr_t *b = rc__mul(l);
    if (!b) {
      rc_expr_free(e);
      return NULL;
    }
    e = rc__bin(l, op, e, b, col);
  }
  return e;
}

static rc_expr_t *rc__cmp(rc_lex_t *l) {
  rc_expr_t *e = rc__add(l);
  if (!e || l->tok != T_OP) {
    return e;
  }
  static const struct {
    const char *s;
    int op;
  } ops[] = {{"==", OP_EQ}, {"!=", OP_NE}, {"<", OP_LT},
             {"<=", OP_LE}, {">", OP_GT},  {">=", OP_GE}};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    if (strcmp(l->op, ops[i].s) == 0) {
      int col = rc__col(l, l->start);
      rc__next(l);
      rc_expr_t *b = rc__add(l);
      if (!b) {
        rc_expr_free(e);
        return NULL;
      }
      e = rc__bin(l, ops[i].op, e, b, col);
      if (l->tok == T_OP && (l->op[0] == '<' || l->op[0] == '>' ||
                             (l->op[1] == '=' && (l->op[0] == '=' || l->op[0] == '!')))) {
        rc__fail(l, l->start, "%s", "comparisons do not chain (use &&)");
        rc_expr_free(e);
        return NULL;
      }
      break;
    }
  }
  return e;
}

static rc_expr_t *rc__and(rc_lex_t *l) {
  rc_expr_t *e = rc__cmp(l);
  while (e && rc__is_op(l, "&&")) {
    int col = rc__col(l, l->start);
    rc__next(l);
    rc_expr_t *b = rc__cmp(l);
    if (!b) {
      rc_expr_free(e);
      return NULL;
    }
    e = rc__bin(l, OP_AND, e, b, col);
  }
  return e;
}

static rc_expr_t *rc__expr(rc_lex_t *l) {
  if (++l->depth > RC_EXPR_MAX_DEPTH) {
    rc__fail(l, l->start, "%s", "expression nested too deeply");
    return NULL;
  }
  rc_expr_t *e = rc__and(l);
  while (e && rc__is_op(l, "||")) {
    int col = rc__col(l, l->start);
    rc__next(l);
    rc_expr_t *b = rc__and(l);
    if (!b) {
      rc_expr_free(e);
      e = NULL;
      break;
    }
    e = rc__bin(l, OP_OR, e, b, col);
  }
  l->depth--;
  if (e && l->failed) {
    rc_expr_free(e);
    return NULL;
  }
  return e;
}

rc_expr_t *rc_expr_parse(const char *src, rc_err_t *err) {
  if (!src) {
    rc_err_set(err, 0, 0, "no expression");
    return NULL;
  }
  rc_lex_t l = {.src = src, .p = src, .err = err};
  rc__next(&l);
  if (l.tok == T_END && !l.failed) {
    rc_err_set(err, 0, 1, "empty expression");
    return NULL;
  }
  rc_expr_t *e = l.failed ? NULL : rc__expr(&l);
  if (e && l.tok != T_END) {
    rc__fail(&l, l.start, "unexpected '%s'",
             l.tok == T_OP ? l.op : (l.tok == T_NAME ? l.sval : "token"));
    rc_expr_free(e);
    e = NULL;
  }
  if (e && l.failed) {
    rc_expr_free(e);
    e = NULL;
  }
  free(l.sval);
  return e;
}

/* --------------------------------------------------------------- values */

static void rc__from_json(const json_t *j, rc_val_t *v) {
  memset(v, 0, sizeof *v);
  if (!j || json_is_null(j)) {
    v->type = RC_V_NULL;
  } else if (json_is_boolean(j)) {
    v->type = RC_V_BOOL;
    v->i = json_is_true(j);
  } else if (json_is_integer(j)) {
    v->type = RC_V_INT;
    v->i = (int64_t)json_integer_value(j);
  } else if (json_is_real(j) && json_real_value(j) == (double)(int64_t)json_real_value(j) &&
             json_real_value(j) < 9.2e18 && json_real_value(j) > -9.2e18) {
    v->type = RC_V_INT;
    v->i = (int64_t)json_real_value(j);
  } else if (json_is_string(j)) {
    v->type = RC_V_STR;
    v->s = json_string_value(j);
    v->slen = json_string_length(j);
  } else {
    v->type = RC_V_JSON;
    v->j = j;
  }
}

static const char *rc__tname(int t) {
  static const char *const n[] = {"null", "boolean", "integer", "string", "JSON value"};
  return (t >= 0 && t <= RC_V_JSON) ? n[t] : "?";
}

void rc_val_print(const rc_val_t *v, rc_buf_t *out) {
  switch (v->type) {
  case RC_V_NULL:
    rc_buf_puts(out, "null");
    break;
  case RC_V_BOOL:
    rc_buf_puts(out, v->i ? "true" : "false");
    break;
  case RC_V_INT:
    rc_buf_printf(out, "%lld", (long long)v->i);
    break;
  case RC_V_STR:
    rc_buf_putc(out, '\'');
    rc_buf_append(out, v->s, v->slen > 200 ? 200 : v->slen);
    if (v->slen > 200) {
      rc_buf_puts(out, "...");
    }
    rc_buf_putc(out, '\'');
    break;
  default: {
    char *s = json_dumps(v->j, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
      size_t n = strlen(s);
      rc_buf_append(out, s, n > 200 ? 200 : n);
      if (n > 200) {
        rc_buf_puts(out, "...");
      }
      free(s);
    }
  }
  }
}

static int rc__equal(const rc_val_t *a, const rc_val_t *b) {
  if (a->type != b->type) {
    return 0;
  }
  switch (a->type) {
  case RC_V_NULL:
    return 1;
  case RC_V_BOOL:
  case RC_V_INT:
    return a->i == b->i;
  case RC_V_STR:
    return a->slen == b->slen && memcmp(a->s, b->s, a->slen) == 0;
  default:
    return json_equal(a->j, b->j);
  }
}

/* `it` inside all/any/sum: a child environment that resolves `it` first. */
typedef struct rc_itenv {
  const rc_env_t *parent;
  rc_val_t it;
} rc_itenv_t;

static int rc__it_name(void *ud, const char *name, rc_val_t *out) {
  rc_itenv_t *e = ud;
  if (strcmp(name, "it") == 0) {
    *out = e->it;
    return 0;
  }
  return e->parent->name ? e->parent->name(e->parent->ud, name, out) : -1;
}

static int rc__it_status(void *ud, int64_t code, int64_t *out) {
  rc_itenv_t *e = ud;
  return e->parent->status_count ? e->parent->status_count(e->parent->ud, code, out) : -1;
}

static int rc__it_count(void *ud, const rc_expr_t *const *f, size_t n, int64_t *out,
                        rc_err_t *err) {
  rc_itenv_t *e = ud;
  if (!e->parent->count) {
    rc_err_set(err, 0, 0, "count() is not available here");
    return -1;
  }
  return e->parent->count(e->parent->ud, f, n, out, err);
}

static int rc__it_header(void *ud, const char *name, rc_val_t *out) {
  rc_itenv_t *e = ud;
  return e->parent->header ? e->parent->header(e->parent->ud, name, out) : -1;
}

static int rc__eval(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, rc_err_t *err,
                    int depth);

static int rc__eval_type(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, int type,
                         const char *what, rc_err_t *err, int depth) {
  if (rc__eval(e, env, out, err, depth) != 0) {
    return -1;
  }
  if (out->type != type) {
    rc_buf_t b = {0};
    rc_expr_print(e, &b);
    rc_err_set(err, 0, e->col, "%s needs %s, but %s is %s", what, rc__tname(type), b.data,
               rc__tname(out->type));
    rc_buf_free(&b);
    return -1;
  }
  return 0;
}

static int rc__call(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, rc_err_t *err,
                    int depth) {
  memset(out, 0, sizeof *out);
  if (strcmp(e->s, "count") == 0) {
    if (!env->count) {
      rc_err_set(err, 0, e->col, "count() is not available here");
      return -1;
    }
    int64_t n = 0;
    if (env->count(env->ud, (const rc_expr_t *const *)e->args, e->nargs, &n, err) != 0) {
      return -1;
    }
    out->type = RC_V_INT;
    out->i = n;
    return 0;
  }
  if (strcmp(e->s, "header") == 0) {
    rc_val_t name;
    if (rc__eval_type(e->args[0], env, &name, RC_V_STR, "header()", err, depth) != 0) {
      return -1;
    }
    char *n = rc_xstrndup(name.s, name.slen);
    int rc = env->header ? env->header(env->ud, n, out) : -1;
    free(n);
    if (rc != 0) {
      out->type = RC_V_NULL;
    }
    return 0;
  }
  rc_val_t x;
  if (rc__eval(e->args[0], env, &x, err, depth) != 0) {
    return -1;
  }
  if (strcmp(e->s, "len") == 0) {
    out->type = RC_V_INT;
    if (x.type == RC_V_STR) {
      out->i = (int64_t)x.slen;
    } else if (x.type == RC_V_JSON && json_is_array(x.j)) {
      out->i = (int64_t)json_array_size(x.j);
    } else if (x.type == RC_V_JSON && json_is_object(x.j)) {
      out->i = (int64_t)json_object_size(x.j);
    } else {
      rc_err_set(err, 0, e->col, "len() needs a string, array or object, not %s",
                 rc__tname(x.type));
      return -1;
    }
    return 0;
  }
  /* all / any / sum over an array */
  if (x.type != RC_V_JSON || !json_is_array(x.j)) {
    rc_buf_t b = {0};
    rc_expr_print(e->args[0], &b);
    rc_err_set(err, 0, e->col, "%s() needs an array, but %s is %s", e->s, b.data,
               rc__tname(x.type));
    rc_buf_free(&b);
    return -1;
  }
  int is_all = strcmp(e->s, "all") == 0, is_any = strcmp(e->s, "any") == 0;
  rc_itenv_t it = {.parent = env};
  rc_env_t child = {.ud = &it,
                    .name = rc__it_name,
                    .status_count = rc__it_status,
                    .count = rc__it_count,
                    .header = rc__it_header};
  int64_t acc = 0;
  int result = is_all ? 1 : 0;
  size_t i;
  const json_t *m;
  json_array_foreach(x.j, i, m) {
    rc__from_json(m, &it.it);
    rc_val_t r;
    if (is_all || is_any) {
      if (rc__eval_type(e->args[1], &child, &r, RC_V_BOOL, e->s, err, depth) != 0) {
        return -1;
      }
      if (is_all && !r.i) {
        result = 0;
        break;
      }
      if (is_any && r.i) {
        result = 1;
        break;
      }
    } else {
      if (rc__eval_type(e->args[1], &child, &r, RC_V_INT, "sum()", err, depth) != 0) {
        return -1;
      }
      if (__builtin_add_overflow(acc, r.i, &acc)) {
        rc_err_set(err, 0, e->col, "integer overflow in sum()");
        return -1;
      }
    }
  }
  if (is_all || is_any) {
    out->type = RC_V_BOOL;
    out->i = result;
  } else {
    out->type = RC_V_INT;
    out->i = acc;
  }
  return 0;
}

static int rc__arith(const rc_expr_t *e, int64_t a, int64_t b, int64_t *r, rc_err_t *err) {
  int ovf = 0;
  switch (e->op) {
  case OP_ADD:
    ovf = __builtin_add_overflow(a, b, r);
    break;
  case OP_SUB:
    ovf = __builtin_sub_overflow(a, b, r);
    break;
  case OP_MUL:
    ovf = __builtin_mul_overflow(a, b, r);
    break;
  default:
    if (b == 0) {
      rc_err_set(err, 0, e->col, "division by zero");
      return -1;
    }
    if (a == INT64_MIN && b == -1) {
      ovf = 1;
      break;
    }
    *r = e->op == OP_DIV ? a / b : a % b;
  }
  if (ovf) {
    rc_err_set(err, 0, e->col, "integer overflow");
    return -1;
  }
  return 0;
}

static int rc__eval(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, rc_err_t *err,
                    int depth) {
  if (depth > 4 * RC_EXPR_MAX_DEPTH) {
    rc_err_set(err, 0, e->col, "expression nested too deeply");
    return -1;
  }
  depth++;
  memset(out, 0, sizeof *out);
  rc_val_t a, b;
  switch (e->kind) {
  case N_INT:
    out->type = RC_V_INT;
    out->i = e->i;
    return 0;
  case N_BOOL:
    out->type = RC_V_BOOL;
    out->i = e->i;
    return 0;
  case N_NULL:
    out->type = RC_V_NULL;
    return 0;
  case N_STR:
    out->type = RC_V_STR;
    out->s = e->s;
    out->slen = e->slen;
    return 0;
  case N_NAME:
    if (!env->name || env->name(env->ud, e->s, out) != 0) {
      rc_err_set(err, 0, e->col, "unknown name '%s'", e->s);
      return -1;
    }
    if (out->type == RC_V_JSON) {
      rc__from_json(out->j, out);
    }
    return 0;
  case N_FIELD:
    if (rc__eval(e->a, env, &a, err, depth) != 0) {
      return -1;
    }
    rc__from_json((a.type == RC_V_JSON && json_is_object(a.j)) ? json_object_get(a.j, e->s) : NULL,
                  out);
    return 0;
  case N_INDEX:
    if (rc__eval(e->a, env, &a, err, depth) != 0 || rc__eval(e->b, env, &b, err, depth) != 0) {
      return -1;
    }
    if (a.type == RC_V_JSON && json_is_array(a.j) && b.type == RC_V_INT) {
      int64_t n = (int64_t)json_array_size(a.j);
      int64_t i = b.i < 0 ? b.i + n : b.i;
      rc__from_json((i >= 0 && i < n) ? json_array_get(a.j, (size_t)i) : NULL, out);
    } else if (a.type == RC_V_JSON && json_is_object(a.j) && b.type == RC_V_STR) {
      char *k = rc_xstrndup(b.s, b.slen);
      rc__from_json(json_object_get(a.j, k), out);
      free(k);
    } else {
      out->type = RC_V_NULL;
    }
    return 0;
  case N_STATUS: {
    if (rc__eval_type(e->a, env, &a, RC_V_INT, "status[]", err, depth) != 0) {
      return -1;
    }
    if (!env->status_count) {
      rc_err_set(err, 0, e->col, "status[...] is not available here");
      return -1;
    }
    int64_t n = 0;
    if (env->status_count(env->ud, a.i, &n) != 0) {
      rc_err_set(err, 0, e->col, "status[...] is not available here");
      return -1;
    }
    out->type = RC_V_INT;
    out->i = n;
    return 0;
  }
  case N_CALL:
    return rc__call(e, env, out, err, depth);
  case N_NEG:
    if (rc__eval_type(e->a, env, &a, RC_V_INT, "'-'", err, depth) != 0) {
      return -1;
    }
    if (a.i == INT64_MIN) {
      rc_err_set(err, 0, e->col, "integer overflow");
      return -1;
    }
    out->type = RC_V_INT;
    out->i = -a.i;
    return 0;
  case N_NOT:
    if (rc__eval_type(e->a, env, &a, RC_V_BOOL, "'!'", err, depth) != 0) {
      return -1;
    }
    out->type = RC_V_BOOL;
    out->i = !a.i;
    return 0;
  default:
    break;
  }
  /* N_BIN */
  if (e->op == OP_AND || e->op == OP_OR) {
    const char *what = e->op == OP_AND ? "'&&'" : "'||'";
    if (rc__eval_type(e->a, env, &a, RC_V_BOOL, what, err, depth) != 0) {
      return -1;
    }
    out->type = RC_V_BOOL;
    if ((e->op == OP_AND && !a.i) || (e->op == OP_OR && a.i)) {
      out->i = a.i;
      return 0;
    }
    if (rc__eval_type(e->b, env, &b, RC_V_BOOL, what, err, depth) != 0) {
      return -1;
    }
    out->i = b.i;
    return 0;
  }
  if (rc__eval(e->a, env, &a, err, depth) != 0 || rc__eval(e->b, env, &b, err, depth) != 0) {
    return -1;
  }
  if (e->op == OP_EQ || e->op == OP_NE) {
    out->type = RC_V_BOOL;
    out->i = rc__equal(&a, &b) == (e->op == OP_EQ);
    return 0;
  }
  if (e->op >= OP_LT && e->op <= OP_GE) {
    int c;
    if (a.type == RC_V_INT && b.type == RC_V_INT) {
      c = a.i < b.i ? -1 : a.i > b.i;
    } else if (a.type == RC_V_STR && b.type == RC_V_STR) {
      size_t n = a.slen < b.slen ? a.slen : b.slen;
      c = memcmp(a.s, b.s, n);
      if (c == 0) {
        c = a.slen < b.slen ? -1 : a.slen > b.slen;
      }
    } else {
      rc_err_set(err, 0, e->col, "cannot compare %s %s %s", rc__tname(a.type), rc__opname[e->op],
                 rc__tname(b.type));
      return -1;
    }
    out->type = RC_V_BOOL;
    out->i = e->op == OP_LT ? c < 0 : e->op == OP_LE ? c <= 0 : e->op == OP_GT ? c > 0 : c >= 0;
    return 0;
  }
  if (a.type != RC_V_INT || b.type != RC_V_INT) {
    rc_err_set(err, 0, e->col, "'%s' needs integers, not %s and %s", rc__opname[e->op],
               rc__tname(a.type), rc__tname(b.type));
    return -1;
  }
  out->type = RC_V_INT;
  return rc__arith(e, a.i, b.i, &out->i, err);
}

int rc_expr_eval(const rc_expr_t *e, const rc_env_t *env, rc_val_t *out, rc_err_t *err) {
  if (!e || !env) {
    rc_err_set(err, 0, 0, "no expression");
    return -1;
  }
  return rc__eval(e, env, out, err, 0);
}

int rc_expr_test(const rc_expr_t *e, const rc_env_t *env, rc_err_t *err) {
  rc_val_t v;
  if (rc_expr_eval(e, env, &v, err) != 0) {
    return -1;
  }
  if (v.type != RC_V_BOOL) {
    rc_buf_t b = {0};
    rc_val_print(&v, &b);
    rc_err_set(err, 0, 1, "the expression is not a condition (its value is %s)", b.data);
    rc_buf_free(&b);
    return -1;
  }
  return (int)v.i;
}

/* --------------------------------------------------------------- printing */

static int rc__prec(const rc_expr_t *e) {
  if (e->kind != N_BIN) {
    return 10;
  }
  switch (e->op) {
  case OP_OR:
    return 1;
  case OP_AND:
    return 2;
  case OP_ADD:
  case OP_SUB:
    return 4;
  case OP_MUL:
  case OP_DIV:
  case OP_MOD:
    return 5;
  default:
    return 3;
  }
}

static void rc__print_sub(const rc_expr_t *e, int min_prec, rc_buf_t *out) {
  int paren = rc__prec(e) < min_prec;
  if (paren) {
    rc_buf_putc(out, '(');
  }
  rc_expr_print(e, out);
  if (paren) {
    rc_buf_putc(out, ')');
  }
}

void rc_expr_print(const rc_expr_t *e, rc_buf_t *out) {
  switch (e->kind) {
  case N_INT:
    rc_buf_printf(out, "%lld", (long long)e->i);
    break;
  case N_BOOL:
    rc_buf_puts(out, e->i ? "true" : "false");
    break;
  case N_NULL:
    rc_buf_puts(out, "null");
    break;
  case N_STR:
    rc_buf_putc(out, '\'');
    for (size_t i = 0; i < e->slen; i++) {
      if (e->s[i] == '\'' || e->s[i] == '\\') {
        rc_buf_putc(out, '\\');
      }
      rc_buf_putc(out, e->s[i]);
    }
    rc_buf_putc(out, '\'');
    break;
  case N_NAME:
    rc_buf_puts(out, e->s);
    break;
  case N_FIELD:
    rc__print_sub(e->a, 10, out);
    rc_buf_printf(out, ".%s", e->s);
    break;
  case N_INDEX:
    rc__print_sub(e->a, 10, out);
    rc_buf_putc(out, '[');
    rc_expr_print(e->b, out);
    rc_buf_putc(out, ']');
    break;
  case N_STATUS:
    rc_buf_puts(out, "status[");
    rc_expr_print(e->a, out);
    rc_buf_putc(out, ']');
    break;
  case N_CALL:
    rc_buf_printf(out, "%s(", e->s);
    for (size_t i = 0; i < e->nargs; i++) {
      if (i) {
        rc_buf_puts(out, ", ");
      }
      rc_expr_print(e->args[i], out);
    }
    rc_buf_putc(out, ')');
    break;
  case N_NEG:
  case N_NOT:
    rc_buf_putc(out, e->kind == N_NEG ? '-' : '!');
    rc__print_sub(e->a, 10, out);
    break;
  default: {
    int p = rc__prec(e);
    /* comparisons do not chain: a comparison operand of one needs
     * parentheses on either side */
    rc__print_sub(e->a, p == 3 ? p + 1 : p, out);
    rc_buf_printf(out, " %s ", rc__opname[e->op]);
    /* left-associative: the right operand needs parentheses at equal
     * precedence ("a - (b - c)") */
    rc__print_sub(e->b, p + 1, out);
  }
  }
}

static void rc__explain_term(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out) {
  if (e->kind == N_INT || e->kind == N_STR || e->kind == N_BOOL || e->kind == N_NULL) {
    return;
  }
  if (out->len) {
    rc_buf_puts(out, "; ");
  }
  rc_expr_print(e, out);
  rc_buf_puts(out, " = ");
  rc_val_t v;
  rc_err_t err = {0};
  if (rc_expr_eval(e, env, &v, &err) != 0) {
    rc_buf_printf(out, "<error: %s>", err.msg);
  } else {
    rc_val_print(&v, out);
  }
}

void rc_expr_explain(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out) {
  if (e->kind == N_BIN && (e->op == OP_AND || e->op == OP_OR)) {
    rc_expr_explain(e->a, env, out);
    rc_expr_explain(e->b, env, out);
  } else if (e->kind == N_NOT) {
    rc_expr_explain(e->a, env, out);
  } else if (e->kind == N_BIN && e->op >= OP_EQ && e->op <= OP_GE) {
    rc__explain_term(e->a, env, out);
    rc__explain_term(e->b, env, out);
  } else {
    rc__explain_term(e, env, out);
  }
  if (!out->data) {
    rc_buf_append(out, "", 0);
  }
}

static int rc__is_literal(const rc_expr_t *e) {
  return e->kind == N_INT || e->kind == N_STR || e->kind == N_BOOL || e->kind == N_NULL;
}

static void rc__value_of(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out) {
  rc_val_t v;
  rc_err_t err = {0};
  if (rc_expr_eval(e, env, &v, &err) != 0) {
    rc_buf_printf(out, "<error: %s>", err.msg);
  } else {
    rc_val_print(&v, out);
  }
}

void rc_expr_sentence(const rc_expr_t *e, const rc_env_t *env, rc_buf_t *out) {
  /* the first part of an && chain that does not hold */
  while (e->kind == N_BIN && e->op == OP_AND) {
    rc_err_t err = {0};
    e = rc_expr_test(e->a, env, &err) != 1 ? e->a : e->b;
  }
  if (e->kind == N_BIN && e->op >= OP_EQ && e->op <= OP_GE) {
    static const char *const should[] = {"should equal",        "should differ from",
                                         "should be less than", "should be at most",
                                         "should be more than", "should be at least"};
    rc_expr_print(e->a, out);
    rc_buf_puts(out, " is ");
    rc__value_of(e->a, env, out);
    rc_buf_printf(out, " but %s ", should[e->op - OP_EQ]);
    if (rc__is_literal(e->b)) {
      rc_expr_print(e->b, out);
    } else {
      rc_expr_print(e->b, out);
      rc_buf_puts(out, ", which is ");
      rc__value_of(e->b, env, out);
    }
    rc_buf_putc(out, '.');
    return;
  }
  rc_expr_print(e, out);
  rc_buf_puts(out, " is ");
  rc__value_of(e, env, out);
  rc_buf_puts(out, e->kind == N_BIN && e->op == OP_OR ? ": none of its parts holds." : ".");
}

void rc_expr_each_count(const rc_expr_t *e,
                        void (*fn)(void *ud, const rc_expr_t *call, const rc_expr_t *const *filters,
                                   size_t n),
                        void *ud) {
  if (!e) {
    return;
  }
  if (e->kind == N_CALL && strcmp(e->s, "count") == 0) {
    fn(ud, e, (const rc_expr_t *const *)e->args, e->nargs);
  }
  rc_expr_each_count(e->a, fn, ud);
  rc_expr_each_count(e->b, fn, ud);
  for (size_t i = 0; i < e->nargs; i++) {
    rc_expr_each_count(e->args[i], fn, ud);
  }
}
