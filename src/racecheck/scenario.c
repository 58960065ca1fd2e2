/* scenario.c - see scenario.h. The loader walks libyaml's document tree
 * (which keeps the line and column of every node) and checks every mapping
 * against the keys it allows, so that errors point at the exact place. */
#include "scenario.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "http.h"
#include "jpath.h"
#include "tmpl.h"

#define RC_MAX_DEPTH      64     /* nesting of YAML values converted to JSON */
#define RC_MAX_JSON_NODES 200000 /* total, against alias bombs */
#define RC_MAX_LOOP_DEPTH 16
#define RC_MAX_STEPS      (1u << 20) /* request steps */
#define RC_MAX_ALL_STEPS  100000u    /* steps of every kind, aliases expanded */
/* Bounds checked before the YAML document is built, so that no file can
 * make the loader take unbounded time or memory. */
#define RC_MAX_FILE_BYTES   (16u << 20) /* a scenario file; CSV payloads are apart */
#define RC_MAX_YAML_DEPTH   128         /* nesting of lists and mappings */
#define RC_MAX_YAML_NODES   500000      /* scalars, lists and mappings */
#define RC_MAX_YAML_ALIASES 10000       /* *alias references */

typedef struct rc_ld {
  yaml_document_t doc;
  const char *path;
  rc_err_t *err;
  rc_file_t *f;
  size_t json_budget;
  size_t step_budget;
  int loop_depth;
} rc_ld_t;

/* --------------------------------------------------------------- helpers */

static yaml_node_t *rc__node(rc_ld_t *l, int idx) {
  return yaml_document_get_node(&l->doc, idx);
}

static int rc__fail(rc_ld_t *l, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rc__fail(rc_ld_t *l, const yaml_node_t *n, const char *fmt, ...) {
  char msg[400];
  va_list ap;
  va_start(ap, fmt);
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started on the line above
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  int line = n ? (int)n->start_mark.line + 1 : 0;
  int col = n ? (int)n->start_mark.column + 1 : 0;
  rc_err_set(l->err, line, col, "%s:%d:%d: %s", l->path ? l->path : "<scenario>", line, col, msg);
  return -1;
}

static const char *rc__str(const yaml_node_t *n) {
  return (const char *)n->data.scalar.value;
}

static int rc__is_scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE;
}

/* The text of a mapping key; "" for a key that is not a scalar (which no
 * allowed-key list contains, so it is reported as unknown). */
static const char *rc__key_str(const yaml_node_t *n) {
  return rc__is_scalar(n) ? rc__str(n) : "";
}

static int rc__is_plain(const yaml_node_t *n) {
  return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ||
         n->data.scalar.style == YAML_ANY_SCALAR_STYLE;
}

static const char *rc__kind(const yaml_node_t *n) {
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return "a scalar";
  case YAML_SEQUENCE_NODE:
    return "a list";
  case YAML_MAPPING_NODE:
    return "a mapping";
  default:
    return "empty";
  }
}

static int rc__want(rc_ld_t *l, const yaml_node_t *n, yaml_node_type_t t, const char *what) {
  if (n->type != t) {
    const char *want = t == YAML_SCALAR_NODE     ? "a scalar"
                       : t == YAML_SEQUENCE_NODE ? "a list"
                                                 : "a mapping";
    return rc__fail(l, n, "%s must be %s, not %s", what, want, rc__kind(n));
  }
  return 0;
}

static int rc__string(rc_ld_t *l, const yaml_node_t *n, const char *what, char **out) {
  if (rc__want(l, n, YAML_SCALAR_NODE, what) != 0) {
    return -1;
  }
  if (strlen(rc__str(n)) != n->data.scalar.length) {
    return rc__fail(l, n, "%s contains a NUL byte", what);
  }
  free(*out);
  *out = rc_xstrdup(rc__str(n));
  return 0;
}

static int rc__template(rc_ld_t *l, const yaml_node_t *n, const char *what, char **out) {
  if (rc__string(l, n, what, out) != 0) {
    return -1;
  }
  rc_err_t e = {0};
  if (rc_tmpl_check(*out, &e) != 0) {
    return rc__fail(l, n, "%s: %s", what, e.msg);
  }
  return 0;
}

static int rc__number(rc_ld_t *l, const yaml_node_t *n, const char *what, double lo, double hi,
                      double *out) {
  if (rc__want(l, n, YAML_SCALAR_NODE, what) != 0) {
    return -1;
  }
  const char *s = rc__str(n);
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (!*s || errno || *end || !isfinite(v) || v < lo || v > hi) {
    return rc__fail(l, n, "%s must be a number in [%g, %g], not '%s'", what, lo, hi, s);
  }
  *out = v;
  return 0;
}

static int rc__uint(rc_ld_t *l, const yaml_node_t *n, const char *what, uint64_t lo, uint64_t hi,
                    uint64_t *out) {
  if (rc__want(l, n, YAML_SCALAR_NODE, what) != 0) {
    return -1;
  }
  const char *s = rc__str(n);
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!isdigit((unsigned char)*s) || errno || *end || v < lo || v > hi) {
    return rc__fail(l, n, "%s must be an integer in [%llu, %llu], not '%s'", what,
                    (unsigned long long)lo, (unsigned long long)hi, s);
  }
  *out = v;
  return 0;
}

static int rc__bool(rc_ld_t *l, const yaml_node_t *n, const char *what, int *out) {
  if (rc__want(l, n, YAML_SCALAR_NODE, what) != 0) {
    return -1;
  }
  const char *s = rc__str(n);
  if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "yes") == 0) {
    *out = 1;
  } else if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0 || strcmp(s, "no") == 0) {
    *out = 0;
  } else {
    return rc__fail(l, n, "%s must be true or false, not '%s'", what, s);
  }
  return 0;
}

/* A duration in seconds ("10", "1.5") or with a unit ("500ms", "2m"). */
static int rc__duration(rc_ld_t *l, const yaml_node_t *n, const char *what, uint64_t *out) {
  if (rc__want(l, n, YAML_SCALAR_NODE, what) != 0) {
    return -1;
  }
  if (rc_parse_duration(rc__str(n), 1000000000ull, out) != 0) {
    return rc__fail(l, n, "%s must be a duration (seconds, or 500ms, 10s, 2m), not '%s'", what,
                    rc__str(n));
  }
  return 0;
}

/* Check a mapping's keys against `allowed` (NULL-terminated). */
static int rc__keys(rc_ld_t *l, const yaml_node_t *map, const char *where,
                    const char *const *allowed) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *k = rc__node(l, p->key);
    if (!rc__is_scalar(k)) {
      return rc__fail(l, k, "keys in %s must be plain names", where);
    }
    int ok = 0;
    for (const char *const *a = allowed; *a; a++) {
      if (strcmp(*a, rc__str(k)) == 0) {
        ok = 1;
        break;
      }
    }
    if (!ok) {
      char list[300] = "";
      for (const char *const *a = allowed; *a; a++) {
        size_t used = strlen(list);
        snprintf(list + used, sizeof list - used, "%s%s", a == allowed ? "" : ", ", *a);
      }
      return rc__fail(l, k, "unknown key '%s' in %s (expected one of: %s)", rc__str(k), where,
                      list);
    }
    for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
      yaml_node_t *k2 = rc__node(l, q->key);
      if (rc__is_scalar(k2) && strcmp(rc__str(k2), rc__str(k)) == 0) {
        return rc__fail(l, k, "duplicate key '%s' in %s", rc__str(k), where);
      }
    }
  }
  return 0;
}

// NOLINTBEGIN(bugprone-macro-parentheses): the arguments are names being declared
/* Iterate a mapping: kname is the key's text, val its value node, and
 * kname##_pair the pair (for the key's position). */
#define RC_FOREACH_PAIR(l, map, kname, val)                                                        \
  for (yaml_node_pair_t *kname##_pair = (map)->data.mapping.pairs.start;                           \
       kname##_pair < (map)->data.mapping.pairs.top; kname##_pair++)                               \
    for (const char *kname = rc__key_str(rc__node((l), kname##_pair->key)); kname; kname = NULL)   \
      for (yaml_node_t *val = rc__node((l), kname##_pair->value); val; val = NULL)
// NOLINTEND(bugprone-macro-parentheses)

/* Convert a YAML value to JSON: plain scalars that look like numbers,
 * booleans or null become those; quoted scalars stay strings. */
static json_t *rc__to_json(rc_ld_t *l, const yaml_node_t *n, int depth) {
  if (depth > RC_MAX_DEPTH) {
    rc__fail(l, n, "value nested too deeply");
    return NULL;
  }
  if (l->json_budget == 0) {
    rc__fail(l, n, "values too large: over %d nodes in all (counting what aliases expand to)",
             RC_MAX_JSON_NODES);
    return NULL;
  }
  l->json_budget--;
  if (n->type == YAML_SCALAR_NODE) {
    const char *s = rc__str(n);
    size_t len = n->data.scalar.length;
    if (rc__is_plain(n)) {
      if (len == 0 || strcmp(s, "null") == 0 || strcmp(s, "~") == 0) {
        return json_null();
      }
      if (strcmp(s, "true") == 0 || strcmp(s, "True") == 0) {
        return json_true();
      }
      if (strcmp(s, "false") == 0 || strcmp(s, "False") == 0) {
        return json_false();
      }
      char *end = NULL;
      errno = 0;
      long long iv = strtoll(s, &end, 10);
      if (end != s && !*end && !errno && (isdigit((unsigned char)s[0]) || s[0] == '-')) {
        return json_integer(iv);
      }
      errno = 0;
      double dv = strtod(s, &end);
      if (end != s && !*end && !errno && isfinite(dv) &&
          (isdigit((unsigned char)s[0]) || s[0] == '-' || s[0] == '.')) {
        return json_real(dv);
      }
    }
    json_t *v = json_stringn(s, len);
    if (!v) {
      rc__fail(l, n, "string is not valid UTF-8");
    }
    return v;
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    json_t *a = json_array();
    for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
      json_t *v = rc__to_json(l, rc__node(l, *i), depth + 1);
      if (!v) {
        json_decref(a);
        return NULL;
      }
      json_array_append_new(a, v);
    }
    return a;
  }
  if (n->type == YAML_MAPPING_NODE) {
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = rc__node(l, p->key);
      if (!rc__is_scalar(k)) {
        rc__fail(l, k, "object keys must be scalars");
        json_decref(o);
        return NULL;
      }
      json_t *v = rc__to_json(l, rc__node(l, p->value), depth + 1);
      if (!v) {
        json_decref(o);
        return NULL;
      }
      if (json_object_set_new(o, rc__str(k), v) != 0) {
        rc__fail(l, k, "bad object key");
        json_decref(o);
        return NULL;
      }
    }
    return o;
  }
  return json_null();
}

/* Check every string in a JSON template. */
static int rc__check_json_tmpl(rc_ld_t *l, const yaml_node_t *n, const json_t *v) {
  if (json_is_string(v)) {
    rc_err_t e = {0};
    if (rc_tmpl_check(json_string_value(v), &e) != 0) {
      return rc__fail(l, n, "json: %s", e.msg);
    }
    return 0;
  }
  const char *k;
  json_t *m;
  size_t i;
  if (json_is_object(v)) {
    json_object_foreach((json_t *)v, k, m) {
      if (rc__check_json_tmpl(l, n, m) != 0) {
        return -1;
      }
    }
  } else if (json_is_array(v)) {
    json_array_foreach(v, i, m) {
      if (rc__check_json_tmpl(l, n, m) != 0) {
        return -1;
      }
    }
  }
  return 0;
}

static int rc__kvs(rc_ld_t *l, const yaml_node_t *n, const char *what, rc_kv_t **out,
                   size_t *nout) {
  if (rc__want(l, n, YAML_MAPPING_NODE, what) != 0) {
    return -1;
  }
  size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  *out = rc_xcalloc(cnt, sizeof **out);
  *nout = 0;
  RC_FOREACH_PAIR(l, n, key, val) {
    rc_kv_t *kv = &(*out)[(*nout)++];
    kv->name = rc_xstrdup(key);
    if (val->type == YAML_SCALAR_NODE) {
      if (rc__template(l, val, what, &kv->value) != 0) {
        return -1;
      }
    } else {
      return rc__fail(l, val, "%s values must be scalars", what);
    }
    for (const char *c = key; *c; c++) {
      if (*c == '\r' || *c == '\n' || *c == ':' || *c == ' ') {
        return rc__fail(l, val, "bad %s name '%s'", what, key);
      }
    }
  }
  return 0;
}

/* --------------------------------------------------------------- steps */

static const char *const rc__methods[] = {"get",    "post", "put",     "patch",
                                          "delete", "head", "options", NULL};

static const char *rc__method_upper(const char *m) {
  static const char *const up[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"};
  for (int i = 0; rc__methods[i]; i++) {
    if (strcmp(rc__methods[i], m) == 0) {
      return up[i];
    }
  }
  return NULL;
}

static int rc__flow(rc_ld_t *l, const yaml_node_t *n, const char *where, const char *scenario,
                    rc_flow_t *out);

/* A think jitter as Artillery writes it: "20%" of the think time, or a
 * number of milliseconds (the unit of Artillery's think times). */
static int rc__jitter(rc_ld_t *l, const yaml_node_t *n, double *pct, uint64_t *ns) {
  if (rc__want(l, n, YAML_SCALAR_NODE, "jitter") != 0) {
    return -1;
  }
  const char *s = rc__str(n);
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || !(v >= 0) || v > 1e9) {
    return rc__fail(l, n, "jitter must be a percentage (20%%) or milliseconds, not '%s'", s);
  }
  if (*end == '%' && end[1] == '\0' && v <= 100) {
    *pct = v;
    *ns = 0;
    return 0;
  }
  if (*end != '\0') {
    return rc__fail(l, n, "jitter must be a percentage (20%%) or milliseconds, not '%s'", s);
  }
  *pct = 0;
  *ns = (uint64_t)(v * 1e6);
  return 0;
}

/* A capture (`as`), or a match (`value`, is_match): json, header or
 * regexp (PCRE2, with Artillery's `group` and `flags`), `strict`. */
static int rc__capture(rc_ld_t *l, const yaml_node_t *n, rc_capture_t *c, int is_match) {
  static const char *const ckeys[] = {"json",   "header", "regexp", "as",
                                      "strict", "group",  "flags",  NULL};
  static const char *const mkeys[] = {"json",   "header", "regexp", "value",
                                      "strict", "group",  "flags",  NULL};
  const char *what = is_match ? "match" : "capture";
  if (rc__want(l, n, YAML_MAPPING_NODE, is_match ? "a match" : "a capture") != 0 ||
      rc__keys(l, n, what, is_match ? mkeys : ckeys) != 0) {
    return -1;
  }
  c->line = (int)n->start_mark.line + 1;
  c->strict = 1;
  int have = 0;
  const char *flags = "";
  const yaml_node_t *re_node = NULL;
  RC_FOREACH_PAIR(l, n, key, val) {
    if (strcmp(key, "as") == 0) {
      if (rc__string(l, val, "capture.as", &c->as) != 0) {
        return -1;
      }
    } else if (strcmp(key, "strict") == 0) {
      if (rc__bool(l, val, "strict", &c->strict) != 0) {
        return -1;
      }
    } else if (strcmp(key, "group") == 0) {
      if (rc__string(l, val, "group", &c->group) != 0) {
        return -1;
      }
    } else if (strcmp(key, "flags") == 0) {
      if (rc__want(l, val, YAML_SCALAR_NODE, "flags") != 0) {
        return -1;
      }
      flags = rc__str(val);
    } else if (strcmp(key, "value") == 0) {
      c->value = rc__to_json(l, val, 0);
      if (!c->value || rc__check_json_tmpl(l, val, c->value) != 0) {
        return -1;
      }
    } else {
      if (have++) {
        return rc__fail(l, val, "a %s takes one of json, header or regexp", what);
      }
      c->kind = strcmp(key, "json") == 0     ? RC_CAP_JSON
                : strcmp(key, "header") == 0 ? RC_CAP_HEADER
                                             : RC_CAP_REGEXP;
      if (rc__string(l, val, key, &c->path) != 0) {
        return -1;
      }
      rc_err_t e = {0};
      if (c->kind == RC_CAP_JSON && rc_jpath_check(c->path, &e) != 0) {
        return rc__fail(l, val, "%s.json: %s", what, e.msg);
      }
      re_node = c->kind == RC_CAP_REGEXP ? val : NULL;
    }
  }
  if (!have) {
    return rc__fail(l, n, "a %s needs json, header or regexp", what);
  }
  if (re_node) {
    uint32_t opts = 0;
    for (const char *p = flags; *p; p++) {
      switch (*p) {
      case 'i':
        opts |= PCRE2_CASELESS;
        break;
      case 'm':
        opts |= PCRE2_MULTILINE;
        break;
      case 's':
        opts |= PCRE2_DOTALL;
        break;
      case 'u':
        opts |= PCRE2_UTF;
        break;
      case 'g':
      case 'y':
      case 'd':
        break; /* no meaning for one exec() */
      default:
        return rc__fail(l, re_node, "unknown regexp flag '%c' (i, m, s, u, g)", *p);
      }
    }
    int code = 0;
    PCRE2_SIZE off = 0;
    c->re = pcre2_compile((PCRE2_SPTR)c->path, PCRE2_ZERO_TERMINATED, opts, &code, &off, NULL);
    if (!c->re) {
      PCRE2_UCHAR msg[200];
      pcre2_get_error_message(code, msg, sizeof msg);
      return rc__fail(l, re_node, "regexp: %s at offset %zu", (const char *)msg, (size_t)off);
    }
  }
  if (is_match && !c->value) {
    return rc__fail(l, n, "a match needs 'value' (what the answer must hold)");
  }
  if (!is_match && (!c->as || !*c->as)) {
    return rc__fail(l, n, "a capture needs 'as' (the variable name)");
  }
  return 0;
}

static int rc__expect(rc_ld_t *l, const yaml_node_t *key_node, const char *key,
                      const yaml_node_t *val, rc_expect_t *x) {
  x->line = (int)key_node->start_mark.line + 1;
  if (strcmp(key, "statusCode") == 0) {
    x->kind = RC_EXP_STATUS;
    const yaml_node_t *items[64];
    size_t n = 0;
    if (val->type == YAML_SEQUENCE_NODE) {
      for (yaml_node_item_t *i = val->data.sequence.items.start;
           i < val->data.sequence.items.top && n < 64; i++) {
        items[n++] = rc__node(l, *i);
      }
    } else {
      items[n++] = val;
    }
    if (n == 0) {
      return rc__fail(l, val, "statusCode needs at least one code");
    }
    x->codes = rc_xcalloc(n, sizeof *x->codes);
    rc_buf_t t = {0};
    rc_buf_puts(&t, "statusCode ");
    for (size_t i = 0; i < n; i++) {
      uint64_t c = 0;
      if (rc__uint(l, items[i], "statusCode", 100, 999, &c) != 0) {
        rc_buf_free(&t);
        return -1;
      }
      x->codes[x->ncodes++] = (int)c;
      rc_buf_printf(&t, "%s%llu", i ? "|" : "", (unsigned long long)c);
    }
    x->text = rc_buf_steal(&t);
    return 0;
  }
  if (strcmp(key, "contentType") == 0 || strcmp(key, "hasProperty") == 0 ||
      strcmp(key, "notHasProperty") == 0 || strcmp(key, "hasHeader") == 0) {
    x->kind = key[0] == 'c'   ? RC_EXP_CONTENT_TYPE
              : key[0] == 'n' ? RC_EXP_NOT_HAS_PROPERTY
              : key[3] == 'P' ? RC_EXP_HAS_PROPERTY
                              : RC_EXP_HAS_HEADER;
    if (rc__template(l, val, key, &x->a) != 0) {
      return -1;
    }
    rc_err_t e = {0};
    if ((x->kind == RC_EXP_HAS_PROPERTY || x->kind == RC_EXP_NOT_HAS_PROPERTY) &&
        rc_jpath_check(x->a, &e) != 0) {
      return rc__fail(l, val, "%s: %s", key, e.msg);
    }
    x->text = rc_xasprintf("%s %s", key, x->a);
    return 0;
  }
  if (strcmp(key, "equals") == 0 || strcmp(key, "headerEquals") == 0) {
    x->kind = key[0] == 'e' ? RC_EXP_EQUALS : RC_EXP_HEADER_EQUALS;
    if (rc__want(l, val, YAML_SEQUENCE_NODE, key) != 0) {
      return -1;
    }
    if (val->data.sequence.items.top - val->data.sequence.items.start != 2) {
      return rc__fail(l, val, "%s needs a list of exactly two values", key);
    }
    if (rc__template(l, rc__node(l, val->data.sequence.items.start[0]), key, &x->a) != 0 ||
        rc__template(l, rc__node(l, val->data.sequence.items.start[1]), key, &x->b) != 0) {
      return -1;
    }
    x->text = rc_xasprintf("%s [%s, %s]", key, x->a, x->b);
    return 0;
  }
  if (strcmp(key, "expr") == 0) {
    x->kind = RC_EXP_EXPR;
    if (rc__string(l, val, "expr", &x->a) != 0) {
      return -1;
    }
    rc_err_t e = {0};
    x->expr = rc_expr_parse(x->a, &e);
    if (!x->expr) {
      return rc__fail(l, val, "expr: %s", e.msg);
    }
    x->text = rc_xasprintf("expr %s", x->a);
    return 0;
  }
  return rc__fail(l, key_node,
                  "unknown key '%s' in expect (expected one of: statusCode, contentType, "
                  "hasProperty, notHasProperty, equals, hasHeader, headerEquals, expr)",
                  key);
}

static int rc__expects(rc_ld_t *l, const yaml_node_t *n, rc_step_t *s) {
  /* a list of one-key mappings (Artillery), or one mapping of several */
  size_t cap = 0;
  const yaml_node_t *maps[1];
  const yaml_node_t *const *list = NULL;
  size_t nlist = 0;
  yaml_node_t **tmp = NULL;
  if (n->type == YAML_MAPPING_NODE) {
    maps[0] = n;
    list = maps;
    nlist = 1;
  } else if (n->type == YAML_SEQUENCE_NODE) {
    nlist = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    tmp = rc_xcalloc(nlist, sizeof(yaml_node_t *));
    for (size_t i = 0; i < nlist; i++) {
      tmp[i] = rc__node(l, n->data.sequence.items.start[i]);
    }
    list = (const yaml_node_t *const *)tmp;
  } else {
    return rc__fail(l, n, "expect must be a list of checks");
  }
  int rc = 0;
  for (size_t i = 0; i < nlist && rc == 0; i++) {
    const yaml_node_t *m = list[i];
    if (m->type != YAML_MAPPING_NODE) {
      rc = rc__fail(l, m, "each expectation is a mapping such as 'statusCode: 201'");
      break;
    }
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
      yaml_node_t *k = rc__node(l, p->key);
      if (!rc__is_scalar(k)) {
        rc = rc__fail(l, k, "expectation keys must be names");
        break;
      }
      if (s->nexpects == cap) {
        cap = cap ? cap * 2 : 4;
        s->expects = rc_xrealloc(s->expects, cap * sizeof *s->expects);
      }
      rc_expect_t *x = &s->expects[s->nexpects++];
      memset(x, 0, sizeof *x);
      if (rc__expect(l, k, rc__str(k), rc__node(l, p->value), x) != 0) {
        rc = -1;
        break;
      }
    }
  }
  free(tmp);
  return rc;
}

static int rc__request(rc_ld_t *l, const yaml_node_t *n, const char *method, const char *scenario,
                       rc_step_t *s) {
  static const char *const keys[] = {"url",    "json",    "body",     "headers", "qs",
                                     "cookie", "capture", "expect",   "name",    "followRedirect",
                                     "match",  "form",    "formData", NULL};
  if (rc__want(l, n, YAML_MAPPING_NODE, method) != 0 || rc__keys(l, n, method, keys) != 0) {
    return -1;
  }
  s->kind = RC_STEP_REQUEST;
  s->method = rc__method_upper(method);
  RC_FOREACH_PAIR(l, n, key, val) {
    int rc = 0;
    if (strcmp(key, "url") == 0) {
      rc = rc__template(l, val, "url", &s->url);
    } else if (strcmp(key, "name") == 0) {
      rc = rc__string(l, val, "name", &s->name);
    } else if (strcmp(key, "body") == 0) {
      rc = rc__template(l, val, "body", &s->body);
    } else if (strcmp(key, "json") == 0) {
      s->json = rc__to_json(l, val, 0);
      rc = s->json ? rc__check_json_tmpl(l, val, s->json) : -1;
    } else if (strcmp(key, "headers") == 0) {
      rc = rc__kvs(l, val, "headers", &s->headers, &s->nheaders);
    } else if (strcmp(key, "qs") == 0) {
      rc = rc__kvs(l, val, "qs", &s->qs, &s->nqs);
    } else if (strcmp(key, "cookie") == 0) {
      rc = rc__kvs(l, val, "cookie", &s->cookies, &s->ncookies);
    } else if (strcmp(key, "form") == 0 || strcmp(key, "formData") == 0) {
      if (s->form) {
        return rc__fail(l, val, "a request takes form or formData, not both");
      }
      s->multipart = key[4] == 'D';
      rc = rc__kvs(l, val, key, &s->form, &s->nform);
    } else if (strcmp(key, "followRedirect") == 0) {
      int follow = 1;
      rc = rc__bool(l, val, "followRedirect", &follow);
      s->no_redirect = !follow;
    } else if (strcmp(key, "capture") == 0 || strcmp(key, "match") == 0) {
      /* captures and matches share one list, in file order */
      int is_match = key[0] == 'm';
      size_t cnt = val->type == YAML_SEQUENCE_NODE
                       ? (size_t)(val->data.sequence.items.top - val->data.sequence.items.start)
                       : 1;
      s->captures = rc_xrealloc(s->captures, (s->ncaptures + cnt) * sizeof *s->captures);
      memset(s->captures + s->ncaptures, 0, cnt * sizeof *s->captures);
      for (size_t i = 0; i < cnt && rc == 0; i++) {
        const yaml_node_t *one =
            val->type == YAML_SEQUENCE_NODE ? rc__node(l, val->data.sequence.items.start[i]) : val;
        rc = rc__capture(l, one, &s->captures[s->ncaptures], is_match);
        s->ncaptures++;
      }
    } else if (strcmp(key, "expect") == 0) {
      rc = rc__expects(l, val, s);
    }
    if (rc != 0) {
      return -1;
    }
  }
  if (!s->url) {
    return rc__fail(l, n, "%s needs a url", method);
  }
  if ((s->json != NULL) + (s->body != NULL) + (s->form != NULL) > 1) {
    return rc__fail(l, n, "%s takes one of json, body, form or formData", method);
  }
  if (!s->name) {
    s->name = rc_xasprintf("%s %s", s->method, s->url);
  }
  if (l->f->nsteps >= RC_MAX_STEPS) {
    return rc__fail(l, n, "too many requests in one file");
  }
  if (l->f->expect_default_200 && s->nexpects == 0 && strcmp(scenario, "invariants") != 0) {
    /* Artillery's expect plugin with expectDefault200: a request without
     * expectations expects a 200 */
    s->expects = rc_xcalloc(1, sizeof *s->expects);
    s->nexpects = 1;
    s->expects[0].kind = RC_EXP_STATUS;
    s->expects[0].codes = rc_xcalloc(1, sizeof(int));
    s->expects[0].codes[0] = 200;
    s->expects[0].ncodes = 1;
    s->expects[0].text = rc_xstrdup("statusCode 200 (expectDefault200)");
    s->expects[0].line = s->line;
  }
  s->id = rc_file_add_stepinfo(l->f, s->name, scenario, s->method);
  return 0;
}

static int rc__step(rc_ld_t *l, const yaml_node_t *n, const char *where, const char *scenario,
                    rc_step_t *s) {
  s->line = (int)n->start_mark.line + 1;
  if (l->step_budget == 0) {
    return rc__fail(l, n, "too many steps: over %u in all (counting what aliases expand to)",
                    RC_MAX_ALL_STEPS);
  }
  l->step_budget--;
  if (n->type != YAML_MAPPING_NODE) {
    return rc__fail(l, n, "each step of %s must be a mapping such as 'get: {url: /}'", where);
  }
  /* find the action key */
  const char *action = NULL;
  yaml_node_t *aval = NULL, *akey = NULL;
  RC_FOREACH_PAIR(l, n, key, val) {
    if (!key) {
      continue;
    }
    int is_action = rc__method_upper(key) || strcmp(key, "think") == 0 ||
                    strcmp(key, "loop") == 0 || strcmp(key, "log") == 0;
    if (strcmp(key, "function") == 0) {
      return rc__fail(l, rc__node(l, key_pair->key),
                      "'function' steps run JavaScript, which racecheck does not support");
    }
    if (is_action) {
      if (action) {
        return rc__fail(l, rc__node(l, key_pair->key), "a step has one action, not '%s' and '%s'",
                        action, key);
      }
      action = key;
      aval = val;
      akey = rc__node(l, key_pair->key);
    }
  }
  if (!action) {
    yaml_node_t *k0 = rc__node(l, n->data.mapping.pairs.start[0].key);
    return rc__fail(l, k0,
                    "unknown key '%s' in %s (expected one of: get, post, put, patch, delete, "
                    "head, options, think, loop, log)",
                    rc__is_scalar(k0) ? rc__str(k0) : "?", where);
  }
  (void)akey;
  if (strcmp(action, "loop") == 0) {
    static const char *const keys[] = {"loop", "count", "over", NULL};
    if (rc__keys(l, n, "a loop step", keys) != 0) {
      return -1;
    }
    s->kind = RC_STEP_LOOP;
    if (++l->loop_depth > RC_MAX_LOOP_DEPTH) {
      return rc__fail(l, n, "loops nested too deeply");
    }
    rc_flow_t body = {0};
    int rc = rc__flow(l, aval, "loop", scenario, &body);
    l->loop_depth--;
    s->steps = body.steps;
    s->nsteps = body.n;
    if (rc != 0) {
      return -1;
    }
    RC_FOREACH_PAIR(l, n, key, val) {
      if (strcmp(key, "count") == 0) {
        if (rc__uint(l, val, "loop count", 1, 100000000, &s->count) != 0) {
          return -1;
        }
      } else if (strcmp(key, "over") == 0) {
        if (val->type == YAML_SEQUENCE_NODE) {
          s->over = rc__to_json(l, val, 0);
          if (!s->over) {
            return -1;
          }
        } else {
          char *name = NULL;
          if (rc__template(l, val, "loop over", &name) != 0) {
            free(name);
            return -1;
          }
          s->over = json_string(name);
          free(name);
          if (!s->over) {
            return rc__fail(l, val, "loop over is not valid UTF-8");
          }
        }
      }
    }
    if (s->count && s->over) {
      return rc__fail(l, n, "a loop takes count or over, not both");
    }
    if (!s->count && !s->over) {
      return rc__fail(l, n, "a loop needs count or over (endless loops are not supported)");
    }
    return 0;
  }
  const yaml_node_t *jitter = NULL;
  RC_FOREACH_PAIR(l, n, key, val) {
    if (strcmp(action, "think") == 0 && strcmp(key, "jitter") == 0) {
      jitter = val; /* Artillery: think with a jitter next to it */
    }
  }
  if (n->data.mapping.pairs.top - n->data.mapping.pairs.start != (jitter ? 2 : 1)) {
    yaml_node_t *k1 = NULL;
    RC_FOREACH_PAIR(l, n, key, val) {
      (void)val;
      if (strcmp(key, action) != 0 && !(jitter && strcmp(key, "jitter") == 0) && !k1) {
        k1 = rc__node(l, key_pair->key);
      }
    }
    return rc__fail(l, k1, "unknown key '%s' next to '%s' (request options go inside it)",
                    k1 && rc__is_scalar(k1) ? rc__str(k1) : "?", action);
  }
  if (strcmp(action, "think") == 0) {
    s->kind = RC_STEP_THINK;
    if (jitter && rc__jitter(l, jitter, &s->jitter_pct, &s->jitter_ns) != 0) {
      return -1;
    }
    return rc__duration(l, aval, "think", &s->think_ns);
  }
  if (strcmp(action, "log") == 0) {
    s->kind = RC_STEP_LOG;
    return rc__template(l, aval, "log", &s->log);
  }
  return rc__request(l, aval, action, scenario, s);
}

static int rc__flow(rc_ld_t *l, const yaml_node_t *n, const char *where, const char *scenario,
                    rc_flow_t *out) {
  if (rc__want(l, n, YAML_SEQUENCE_NODE, where) != 0) {
    return -1;
  }
  size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  out->steps = rc_xcalloc(cnt, sizeof *out->steps);
  out->n = 0;
  for (size_t i = 0; i < cnt; i++) {
    rc_step_t *s = &out->steps[out->n++];
    if (rc__step(l, rc__node(l, n->data.sequence.items.start[i]), where, scenario, s) != 0) {
      return -1;
    }
  }
  return 0;
}

/* --------------------------------------------------------------- config */

static int rc__phase(rc_ld_t *l, const yaml_node_t *n, size_t idx, rc_phase_t *p) {
  static const char *const keys[] = {"duration",     "arrivalRate", "rampTo",
                                     "arrivalCount", "pause",       "maxVusers",
                                     "name",         "burst",       NULL};
  char where[64];
  snprintf(where, sizeof where, "config.phases[%zu]", idx);
  if (rc__want(l, n, YAML_MAPPING_NODE, where) != 0 || rc__keys(l, n, where, keys) != 0) {
    return -1;
  }
  p->line = (int)n->start_mark.line + 1;
  p->scenario = -1;
  int has_dur = 0, has_rate = 0, has_ramp = 0, has_pause = 0, has_burst = 0;
  RC_FOREACH_PAIR(l, n, key, val) {
    int rc = 0;
    if (strcmp(key, "duration") == 0) {
      rc = rc__duration(l, val, "duration", &p->duration_ns);
      has_dur = 1;
    } else if (strcmp(key, "arrivalRate") == 0) {
      rc = rc__number(l, val, "arrivalRate", 0, 10000000, &p->arrival_rate);
      has_rate = 1;
    } else if (strcmp(key, "rampTo") == 0) {
      rc = rc__number(l, val, "rampTo", 0, 10000000, &p->ramp_to);
      has_ramp = 1;
    } else if (strcmp(key, "arrivalCount") == 0) {
      rc = rc__uint(l, val, "arrivalCount", 0, 1000000000, &p->arrival_count);
      p->has_count = 1;
    } else if (strcmp(key, "pause") == 0) {
      rc = rc__duration(l, val, "pause", &p->duration_ns);
      has_pause = 1;
    } else if (strcmp(key, "maxVusers") == 0) {
      rc = rc__uint(l, val, "maxVusers", 1, 100000000, &p->max_vusers);
    } else if (strcmp(key, "name") == 0) {
      rc = rc__string(l, val, "name", &p->name);
    } else if (strcmp(key, "burst") == 0) {
      static const char *const bkeys[] = {"connections", "repeat", "scenario", NULL};
      has_burst = 1;
      p->burst_repeat = 1;
      if (rc__want(l, val, YAML_MAPPING_NODE, "burst") != 0 ||
          rc__keys(l, val, "burst", bkeys) != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, bkey, bval) {
        uint64_t v = 0;
        if (strcmp(bkey, "connections") == 0) {
          rc = rc__uint(l, bval, "burst.connections", 1, 100000, &v);
          p->burst_connections = (uint32_t)v;
        } else if (strcmp(bkey, "repeat") == 0) {
          rc = rc__uint(l, bval, "burst.repeat", 1, 100000, &v);
          p->burst_repeat = (uint32_t)v;
        } else {
          rc = rc__string(l, bval, "burst.scenario", &p->burst_scenario);
        }
        if (rc != 0) {
          return -1;
        }
      }
      if (p->burst_connections == 0) {
        return rc__fail(l, val, "burst needs connections");
      }
    }
    if (rc != 0) {
      return -1;
    }
  }
  if (has_pause && has_burst) {
    return rc__fail(l, n, "%s: a phase is a pause, a burst or an arrival phase, not several",
                    where);
  }
  if (has_pause) {
    if (has_rate || has_ramp || p->has_count || has_dur) {
      return rc__fail(l, n, "%s: a pause phase takes no duration or arrivals", where);
    }
    p->kind = RC_PHASE_PAUSE;
  } else if (has_burst) {
    if (has_rate || has_ramp || p->has_count || has_dur) {
      return rc__fail(l, n, "%s: a burst phase takes no duration or arrival rate", where);
    }
    p->kind = RC_PHASE_BURST;
  } else {
    p->kind = RC_PHASE_ARRIVAL;
    if (!has_dur) {
      return rc__fail(l, n, "%s needs a duration (or pause, or burst)", where);
    }
    if (!has_rate && !p->has_count) {
      return rc__fail(l, n, "%s needs arrivalRate or arrivalCount", where);
    }
    if (has_rate && p->has_count) {
      return rc__fail(l, n, "%s takes arrivalRate or arrivalCount, not both", where);
    }
    if (has_ramp && !has_rate) {
      return rc__fail(l, n, "%s: rampTo needs arrivalRate", where);
    }
    if (!has_ramp) {
      p->ramp_to = p->arrival_rate;
    }
    if (p->duration_ns == 0) {
      return rc__fail(l, n, "%s: duration must be positive", where);
    }
  }
  if (!p->name) {
    p->name = rc_xasprintf("phase %zu", idx + 1);
  }
  return 0;
}

static int rc__csv(rc_ld_t *l, const yaml_node_t *n, rc_payload_t *p) {
  char *full = NULL;
  if (p->path[0] == '/' || !l->f->dir) {
    full = rc_xstrdup(p->path);
  } else {
    full = rc_xasprintf("%s/%s", l->f->dir, p->path);
  }
  char *text = NULL;
  size_t len = 0;
  if (rc_read_file(full, &text, &len) != 0) {
    int e = errno;
    rc__fail(l, n, "payload: cannot read '%s': %s", full, strerror(e));
    free(full);
    return -1;
  }
  free(full);
  size_t cap = 0;
  const char *s = text, *end = text + len;
  int first = 1;
  while (s < end) {
    /* one record */
    char **row = rc_xcalloc(p->nfields ? p->nfields : 1, sizeof *row);
    size_t nf = 0;
    int blank = 1;
    for (;;) {
      rc_buf_t fld = {0};
      if (s < end && *s == '"') {
        s++;
        while (s < end) {
          if (*s == '"' && s + 1 < end && s[1] == '"') {
            rc_buf_putc(&fld, '"');
            s += 2;
          } else if (*s == '"') {
            s++;
            break;
          } else {
            rc_buf_putc(&fld, *s++);
          }
        }
        blank = 0;
      }
      while (s < end && *s != p->delimiter && *s != '\n' && *s != '\r') {
        rc_buf_putc(&fld, *s++);
        blank = 0;
      }
      if (nf < p->nfields) {
        row[nf] = fld.data ? rc_buf_steal(&fld) : rc_xstrdup("");
      }
      rc_buf_free(&fld);
      nf++;
      if (s < end && *s == p->delimiter) {
        s++;
        blank = 0;
        continue;
      }
      break;
    }
    if (s < end && *s == '\r') {
      s++;
    }
    if (s < end && *s == '\n') {
      s++;
    }
    for (size_t i = 0; i < p->nfields; i++) {
      if (!row[i]) {
        row[i] = rc_xstrdup("");
      }
    }
    if (blank || (first && p->skip_header)) {
      for (size_t i = 0; i < p->nfields; i++) {
        free(row[i]);
      }
      free(row);
      first = 0;
      continue;
    }
    first = 0;
    if (p->nrows == cap) {
      cap = cap ? cap * 2 : 16;
      p->rows = rc_xrealloc(p->rows, cap * sizeof *p->rows);
    }
    p->rows[p->nrows++] = row;
  }
  free(text);
  if (p->nrows == 0) {
    return rc__fail(l, n, "payload '%s' has no rows", p->path);
  }
  return 0;
}

static int rc__payload(rc_ld_t *l, const yaml_node_t *n, rc_payload_t *p) {
  static const char *const keys[] = {"path", "fields",  "order", "skipHeader", "delimiter",
                                     "cast", "loadAll", "name",  NULL};
  int load_all = 0;
  if (rc__want(l, n, YAML_MAPPING_NODE, "config.payload") != 0 ||
      rc__keys(l, n, "config.payload", keys) != 0) {
    return -1;
  }
  p->random = 1;
  p->delimiter = ',';
  p->cast = 1;
  RC_FOREACH_PAIR(l, n, key, val) {
    int rc = 0;
    if (strcmp(key, "path") == 0) {
      rc = rc__string(l, val, "payload.path", &p->path);
    } else if (strcmp(key, "fields") == 0) {
      if (rc__want(l, val, YAML_SEQUENCE_NODE, "payload.fields") != 0) {
        return -1;
      }
      size_t cnt = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
      p->fields = rc_xcalloc(cnt, sizeof *p->fields);
      for (size_t i = 0; i < cnt && rc == 0; i++) {
        rc = rc__string(l, rc__node(l, val->data.sequence.items.start[i]), "payload field",
                        &p->fields[i]);
        p->nfields++;
      }
    } else if (strcmp(key, "order") == 0) {
      if (rc__want(l, val, YAML_SCALAR_NODE, "payload.order") != 0) {
        return -1;
      }
      if (strcmp(rc__str(val), "random") == 0) {
        p->random = 1;
      } else if (strcmp(rc__str(val), "sequence") == 0) {
        p->random = 0;
      } else {
        return rc__fail(l, val, "payload.order must be random or sequence, not '%s'", rc__str(val));
      }
    } else if (strcmp(key, "skipHeader") == 0) {
      rc = rc__bool(l, val, "payload.skipHeader", &p->skip_header);
    } else if (strcmp(key, "cast") == 0) {
      rc = rc__bool(l, val, "payload.cast", &p->cast);
    } else if (strcmp(key, "loadAll") == 0) {
      rc = rc__bool(l, val, "payload.loadAll", &load_all);
    } else if (strcmp(key, "name") == 0) {
      rc = rc__string(l, val, "payload.name", &p->name);
    } else if (strcmp(key, "delimiter") == 0) {
      if (rc__want(l, val, YAML_SCALAR_NODE, "payload.delimiter") != 0) {
        return -1;
      }
      if (val->data.scalar.length != 1 || rc__str(val)[0] == '"' || rc__str(val)[0] == '\n') {
        return rc__fail(l, val, "payload.delimiter must be one character");
      }
      p->delimiter = rc__str(val)[0];
    }
    if (rc != 0) {
      return -1;
    }
  }
  if (!p->path) {
    return rc__fail(l, n, "config.payload needs a path");
  }
  if (p->nfields == 0) {
    return rc__fail(l, n, "config.payload needs fields (the variable name of each column)");
  }
  if (load_all != (p->name != NULL)) {
    return rc__fail(l, n, "payload.loadAll and payload.name go together (name: the variable)");
  }
  if (rc__csv(l, n, p) != 0) {
    return -1;
  }
  if (load_all) {
    /* Artillery's loadAll: every row, as a list of objects, in one variable */
    p->all = json_array();
    for (size_t r = 0; r < p->nrows; r++) {
      json_t *o = json_object();
      for (size_t k = 0; k < p->nfields; k++) {
        json_object_set_new(o, p->fields[k], rc_payload_value(p->rows[r][k], p->cast));
      }
      json_array_append_new(p->all, o);
    }
  }
  return 0;
}

json_t *rc_payload_value(const char *field, int cast) {
  if (cast && *field) {
    char *end = NULL;
    errno = 0;
    long long iv = strtoll(field, &end, 10);
    if (!*end && !errno) {
      return json_integer(iv);
    }
    errno = 0;
    double dv = strtod(field, &end);
    if (!*end && !errno && isfinite(dv) && !isalpha((unsigned char)field[0]) &&
        !isalpha((unsigned char)field[*field == '-' || *field == '+'])) {
      return json_real(dv); /* not "inf", "nan" or hex spelled in letters */
    }
  }
  json_t *v = json_string(field);
  return v ? v : json_string("");
}

static const struct {
  const char *name;
  int metric;
} rc__metrics[] = {{"min", RC_ENS_MIN},
                   {"max", RC_ENS_MAX},
                   {"median", RC_ENS_MEDIAN},
                   {"p50", RC_ENS_MEDIAN},
                   {"p75", RC_ENS_P75},
                   {"p90", RC_ENS_P90},
                   {"p95", RC_ENS_P95},
                   {"p99", RC_ENS_P99},
                   {"p999", RC_ENS_P999},
                   {"mean", RC_ENS_MEAN},
                   {"maxErrorRate", RC_ENS_ERROR_RATE}};

static int rc__ensure_one(rc_ld_t *l, const yaml_node_t *k, const char *name,
                          const yaml_node_t *val) {
  const char *m = name;
  if (strncmp(m, "http.response_time.", 19) == 0) {
    m += 19;
  }
  for (size_t i = 0; i < sizeof rc__metrics / sizeof rc__metrics[0]; i++) {
    if (strcmp(rc__metrics[i].name, m) == 0 &&
        (m == name || rc__metrics[i].metric != RC_ENS_ERROR_RATE)) {
      rc_file_t *f = l->f;
      f->ensures = rc_xrealloc(f->ensures, (f->nensures + 1) * sizeof *f->ensures);
      rc_ensure_t *e = &f->ensures[f->nensures++];
      memset(e, 0, sizeof *e);
      e->metric = rc__metrics[i].metric;
      if (rc__number(l, val, name, 0, 1e12, &e->limit) != 0) {
        return -1;
      }
      e->text = e->metric == RC_ENS_ERROR_RATE ? rc_xasprintf("error rate <= %g%%", e->limit)
                                               : rc_xasprintf("%s <= %g ms", m, e->limit);
      return 0;
    }
  }
  return rc__fail(l, k,
                  "unknown key '%s' in config.ensure (expected one of: min, max, median, p50, "
                  "p75, p90, p95, p99, p999, mean, maxErrorRate, thresholds)",
                  name);
}

static int rc__ensure(rc_ld_t *l, const yaml_node_t *n) {
  if (rc__want(l, n, YAML_MAPPING_NODE, "config.ensure") != 0) {
    return -1;
  }
  RC_FOREACH_PAIR(l, n, key, val) {
    yaml_node_t *k = rc__node(l, key_pair->key);
    if (!key) {
      continue;
    }
    if (strcmp(key, "thresholds") == 0) {
      if (rc__want(l, val, YAML_SEQUENCE_NODE, "config.ensure.thresholds") != 0) {
        return -1;
      }
      for (yaml_node_item_t *i = val->data.sequence.items.start; i < val->data.sequence.items.top;
           i++) {
        yaml_node_t *m = rc__node(l, *i);
        if (rc__want(l, m, YAML_MAPPING_NODE, "a threshold") != 0) {
          return -1;
        }
        RC_FOREACH_PAIR(l, m, tkey, tval) {
          if (rc__ensure_one(l, rc__node(l, tkey_pair->key), tkey, tval) != 0) {
            return -1;
          }
        }
      }
    } else if (strcmp(key, "conditions") == 0) {
      return rc__fail(l, k, "config.ensure.conditions is not supported: use invariants");
    } else if (rc__ensure_one(l, k, key, val) != 0) {
      return -1;
    }
  }
  return 0;
}

static int rc__config(rc_ld_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"target",       "phases", "variables", "payload",
                                     "http",         "ensure", "plugins",   "defaults",
                                     "environments", "tls",    NULL};
  rc_file_t *f = l->f;
  if (rc__want(l, n, YAML_MAPPING_NODE, "config") != 0 || rc__keys(l, n, "config", keys) != 0) {
    return -1;
  }
  RC_FOREACH_PAIR(l, n, key, val) {
    int rc = 0;
    if (strcmp(key, "target") == 0) {
      rc = rc__string(l, val, "config.target", &f->target);
      if (rc == 0) {
        rc_url_t u;
        rc_err_t e = {0};
        if (rc_url_parse(f->target, &u, &e) != 0) {
          return rc__fail(l, val, "config.target: %s", e.msg);
        }
        rc_url_free(&u);
      }
    } else if (strcmp(key, "phases") == 0) {
      if (rc__want(l, val, YAML_SEQUENCE_NODE, "config.phases") != 0) {
        return -1;
      }
      size_t cnt = (size_t)(val->data.sequence.items.top - val->data.sequence.items.start);
      if (cnt > RC_MAX_PHASES - 4) {
        return rc__fail(l, val, "at most %d phases", RC_MAX_PHASES - 4);
      }
      f->phases = rc_xcalloc(cnt, sizeof *f->phases);
      for (size_t i = 0; i < cnt && rc == 0; i++) {
        rc = rc__phase(l, rc__node(l, val->data.sequence.items.start[i]), i, &f->phases[i]);
        f->nphases++;
      }
    } else if (strcmp(key, "variables") == 0) {
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.variables") != 0) {
        return -1;
      }
      f->variables = rc__to_json(l, val, 0);
      rc = f->variables ? 0 : -1;
      const char *vk;
      json_t *vv;
      if (rc == 0) {
        json_object_foreach(f->variables, vk, vv) {
          if (json_is_array(vv) && json_array_size(vv) == 0) {
            return rc__fail(l, val, "config.variables.%s is an empty list", vk);
          }
          if (!isalpha((unsigned char)vk[0]) && vk[0] != '_') {
            return rc__fail(l, val, "bad variable name '%s'", vk);
          }
        }
      }
    } else if (strcmp(key, "payload") == 0) {
      size_t cnt = val->type == YAML_SEQUENCE_NODE
                       ? (size_t)(val->data.sequence.items.top - val->data.sequence.items.start)
                       : 1;
      f->payloads = rc_xcalloc(cnt, sizeof *f->payloads);
      if (val->type == YAML_SEQUENCE_NODE) {
        for (size_t i = 0; i < cnt && rc == 0; i++) {
          rc = rc__payload(l, rc__node(l, val->data.sequence.items.start[i]), &f->payloads[i]);
          f->npayloads++;
        }
      } else {
        f->npayloads = 1;
        rc = rc__payload(l, val, &f->payloads[0]);
      }
    } else if (strcmp(key, "http") == 0) {
      static const char *const hkeys[] = {"timeout", NULL};
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.http") != 0 ||
          rc__keys(l, val, "config.http", hkeys) != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, hkey, hval) {
        (void)hkey;
        if (rc__duration(l, hval, "config.http.timeout", &f->timeout_ns) != 0) {
          return -1;
        }
        if (f->timeout_ns == 0) {
          return rc__fail(l, hval, "config.http.timeout must be positive");
        }
      }
    } else if (strcmp(key, "ensure") == 0) {
      rc = rc__ensure(l, val);
    } else if (strcmp(key, "tls") == 0) {
      /* Artillery passes config.tls to Node's TLS options; racecheck
       * reads rejectUnauthorized, and files for ca, cert and key */
      static const char *const tkeys[] = {"rejectUnauthorized", "ca", "cert", "key", NULL};
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.tls") != 0 ||
          rc__keys(l, val, "config.tls", tkeys) != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, tkey, tval) {
        if (strcmp(tkey, "rejectUnauthorized") == 0) {
          int reject = 1;
          if (rc__bool(l, tval, "config.tls.rejectUnauthorized", &reject) != 0) {
            return -1;
          }
          f->tls_insecure = !reject;
          continue;
        }
        char *rel = NULL;
        if (rc__string(l, tval, tkey, &rel) != 0 || !rel) {
          free(rel);
          return -1;
        }
        char *full =
            (rel[0] == '/' || !f->dir) ? rc_xstrdup(rel) : rc_xasprintf("%s/%s", f->dir, rel);
        free(rel);
        char **slot = strcmp(tkey, "ca") == 0     ? &f->tls_ca
                      : strcmp(tkey, "cert") == 0 ? &f->tls_cert
                                                  : &f->tls_key;
        free(*slot);
        *slot = full;
      }
    } else if (strcmp(key, "environments") == 0) {
      /* used by -e (merged before this walk); only its shape is checked */
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.environments") != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, ekey, eval) {
        char what[300];
        snprintf(what, sizeof what, "config.environments.%s", ekey);
        if (rc__want(l, eval, YAML_MAPPING_NODE, what) != 0) {
          return -1;
        }
      }
    } else if (strcmp(key, "defaults") == 0) {
      static const char *const dkeys[] = {"headers", "cookie", "think", NULL};
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.defaults") != 0 ||
          rc__keys(l, val, "config.defaults", dkeys) != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, dkey, dval) {
        if (strcmp(dkey, "think") == 0) {
          static const char *const tkeys[] = {"jitter", NULL};
          if (rc__want(l, dval, YAML_MAPPING_NODE, "config.defaults.think") != 0 ||
              rc__keys(l, dval, "config.defaults.think", tkeys) != 0) {
            return -1;
          }
          RC_FOREACH_PAIR(l, dval, jkey, jval) {
            (void)jkey;
            if (rc__jitter(l, jval, &f->think_jitter_pct, &f->think_jitter_ns) != 0) {
              return -1;
            }
          }
          continue;
        }
        if (strcmp(dkey, "cookie") == 0
                ? rc__kvs(l, dval, "cookie", &f->default_cookies, &f->ndefault_cookies) != 0
                : rc__kvs(l, dval, "headers", &f->default_headers, &f->ndefault_headers) != 0) {
          return -1;
        }
      }
    } else if (strcmp(key, "plugins") == 0) {
      /* Artillery needs `plugins: {expect: {}}` for expectations and
       * `ensure` for thresholds; both are built in here. Thresholds given
       * under plugins.ensure are read like config.ensure (Artillery's
       * ensure plugin takes either). */
      static const char *const pkeys[] = {"expect", "ensure", "metrics-by-endpoint", NULL};
      if (rc__want(l, val, YAML_MAPPING_NODE, "config.plugins") != 0 ||
          rc__keys(l, val, "config.plugins", pkeys) != 0) {
        return -1;
      }
      RC_FOREACH_PAIR(l, val, pkey, pval) {
        if (strcmp(pkey, "ensure") == 0 && pval->type == YAML_MAPPING_NODE &&
            rc__ensure(l, pval) != 0) {
          return -1;
        }
        if (strcmp(pkey, "expect") == 0 && pval->type == YAML_MAPPING_NODE) {
          /* the expect plugin's options: expectDefault200 is honoured,
           * the others (output formats) have no meaning here */
          RC_FOREACH_PAIR(l, pval, ekey, eval) {
            if (strcmp(ekey, "expectDefault200") == 0 &&
                rc__bool(l, eval, "expectDefault200", &f->expect_default_200) != 0) {
              return -1;
            }
          }
        }
      }
    }
    if (rc != 0) {
      return -1;
    }
  }
  return 0;
}

static int rc__before_after(rc_ld_t *l, const yaml_node_t *n, const char *where, rc_flow_t *out) {
  static const char *const keys[] = {"flow", NULL};
  if (rc__want(l, n, YAML_MAPPING_NODE, where) != 0 || rc__keys(l, n, where, keys) != 0) {
    return -1;
  }
  RC_FOREACH_PAIR(l, n, key, val) {
    (void)key;
    if (rc__flow(l, val, where, where, out) != 0) {
      return -1;
    }
  }
  return 0;
}

static int rc__scenarios(rc_ld_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"name", "weight", "flow", "engine", NULL};
  rc_file_t *f = l->f;
  if (rc__want(l, n, YAML_SEQUENCE_NODE, "scenarios") != 0) {
    return -1;
  }
  size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  if (cnt == 0) {
    return rc__fail(l, n, "scenarios is empty");
  }
  f->scenarios = rc_xcalloc(cnt, sizeof *f->scenarios);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *s = rc__node(l, n->data.sequence.items.start[i]);
    rc_scn_t *sc = &f->scenarios[f->nscenarios++];
    sc->weight = 1;
    sc->line = (int)s->start_mark.line + 1;
    char where[48];
    snprintf(where, sizeof where, "scenarios[%zu]", i);
    if (rc__want(l, s, YAML_MAPPING_NODE, where) != 0 || rc__keys(l, s, where, keys) != 0) {
      return -1;
    }
    yaml_node_t *flow = NULL;
    RC_FOREACH_PAIR(l, s, key, val) {
      if (strcmp(key, "name") == 0) {
        if (rc__string(l, val, "scenario name", &sc->name) != 0) {
          return -1;
        }
      } else if (strcmp(key, "weight") == 0) {
        if (rc__number(l, val, "weight", 0, 1e9, &sc->weight) != 0) {
          return -1;
        }
      } else if (strcmp(key, "engine") == 0) {
        if (!rc__is_scalar(val) || strcmp(rc__str(val), "http") != 0) {
          return rc__fail(l, val, "only the http engine is supported");
        }
      } else {
        flow = val;
      }
    }
    if (!sc->name) {
      sc->name = rc_xasprintf("scenario %zu", i + 1);
    }
    if (!flow) {
      return rc__fail(l, s, "%s needs a flow", where);
    }
    if (rc__flow(l, flow, "flow", sc->name, &sc->flow) != 0) {
      return -1;
    }
    f->total_weight += sc->weight;
  }
  if (!(f->total_weight > 0)) {
    return rc__fail(l, n, "the scenario weights add up to 0");
  }
  return 0;
}

static int rc__invariants(rc_ld_t *l, const yaml_node_t *n) {
  static const char *const keys[] = {"name",  "expect", "get",  "post",    "put",
                                     "patch", "delete", "head", "options", NULL};
  rc_file_t *f = l->f;
  if (rc__want(l, n, YAML_SEQUENCE_NODE, "invariants") != 0) {
    return -1;
  }
  size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
  f->invariants = rc_xcalloc(cnt, sizeof *f->invariants);
  for (size_t i = 0; i < cnt; i++) {
    yaml_node_t *m = rc__node(l, n->data.sequence.items.start[i]);
    rc_invariant_t *inv = &f->invariants[f->ninvariants++];
    inv->line = (int)m->start_mark.line + 1;
    char where[48];
    snprintf(where, sizeof where, "invariants[%zu]", i);
    if (rc__want(l, m, YAML_MAPPING_NODE, where) != 0 || rc__keys(l, m, where, keys) != 0) {
      return -1;
    }
    yaml_node_t *exp = NULL;
    RC_FOREACH_PAIR(l, m, key, val) {
      if (strcmp(key, "name") == 0) {
        if (rc__string(l, val, "invariant name", &inv->name) != 0) {
          return -1;
        }
      } else if (strcmp(key, "expect") == 0) {
        exp = val;
      } else {
        if (inv->req) {
          return rc__fail(l, rc__node(l, key_pair->key), "an invariant makes at most one request");
        }
        inv->req = rc_xcalloc(1, sizeof *inv->req);
        inv->req->line = (int)val->start_mark.line + 1;
        if (rc__request(l, val, key, "invariants", inv->req) != 0) {
          return -1;
        }
      }
    }
    if (!exp) {
      return rc__fail(l, m, "%s needs expect (one expression or a list)", where);
    }
    size_t ne = exp->type == YAML_SEQUENCE_NODE
                    ? (size_t)(exp->data.sequence.items.top - exp->data.sequence.items.start)
                    : 1;
    if (ne == 0) {
      return rc__fail(l, exp, "%s.expect is empty", where);
    }
    inv->exprs = rc_xcalloc(ne, sizeof(rc_expr_t *));
    inv->texts = rc_xcalloc(ne, sizeof *inv->texts);
    for (size_t k = 0; k < ne; k++) {
      yaml_node_t *e =
          exp->type == YAML_SEQUENCE_NODE ? rc__node(l, exp->data.sequence.items.start[k]) : exp;
      inv->n++;
      if (rc__string(l, e, "invariant expect", &inv->texts[k]) != 0) {
        return -1;
      }
      rc_err_t pe = {0};
      inv->exprs[k] = rc_expr_parse(inv->texts[k], &pe);
      if (!inv->exprs[k]) {
        return rc__fail(l, e, "invariant expect: %s", pe.msg);
      }
    }
    if (!inv->name) {
      inv->name = rc_xstrdup(inv->texts[0]);
    }
  }
  return 0;
}

static int rc__root(rc_ld_t *l, const yaml_node_t *root) {
  static const char *const keys[] = {"config", "scenarios", "before", "after", "invariants", NULL};
  if (!root) {
    return rc__fail(l, NULL, "the file is empty");
  }
  if (rc__want(l, root, YAML_MAPPING_NODE, "the file") != 0 ||
      rc__keys(l, root, "the top level", keys) != 0) {
    return -1;
  }
  const yaml_node_t *cfg = NULL, *scn = NULL, *bef = NULL, *aft = NULL, *inv = NULL;
  RC_FOREACH_PAIR(l, root, key, val) {
    if (strcmp(key, "config") == 0) {
      cfg = val;
    } else if (strcmp(key, "scenarios") == 0) {
      scn = val;
    } else if (strcmp(key, "before") == 0) {
      bef = val;
    } else if (strcmp(key, "after") == 0) {
      aft = val;
    } else {
      inv = val;
    }
  }
  /* config first (payload files, target), then flows in file order */
  if (!cfg) {
    return rc__fail(l, root, "the file needs a config section");
  }
  if (rc__config(l, cfg) != 0) {
    return -1;
  }
  if (bef && rc__before_after(l, bef, "before", &l->f->before) != 0) {
    return -1;
  }
  if (!scn) {
    return rc__fail(l, root, "the file needs scenarios");
  }
  if (rc__scenarios(l, scn) != 0) {
    return -1;
  }
  if (aft && rc__before_after(l, aft, "after", &l->f->after) != 0) {
    return -1;
  }
  if (inv && rc__invariants(l, inv) != 0) {
    return -1;
  }
  if (l->f->nphases == 0) {
    return rc__fail(l, cfg, "config needs phases");
  }
  for (size_t i = 0; i < l->f->nphases; i++) {
    rc_phase_t *p = &l->f->phases[i];
    if (!p->burst_scenario) {
      continue;
    }
    for (size_t k = 0; k < l->f->nscenarios; k++) {
      if (strcmp(l->f->scenarios[k].name, p->burst_scenario) == 0) {
        p->scenario = (int)k;
      }
    }
    if (p->scenario < 0) {
      rc_err_set(l->err, p->line, 1, "%s:%d:1: burst.scenario '%s' names no scenario",
                 l->path ? l->path : "<scenario>", p->line, p->burst_scenario);
      return -1;
    }
  }
  return 0;
}

/* --------------------------------------------------------------- environments */

/* `-e NAME` merges config.environments.NAME over config the way Artillery
 * does (lodash's merge): mappings key by key, recursively; lists element
 * by element; anything else is replaced. The merged nodes are added to the
 * document (by index: adding nodes may move them), bounded in number. */
#define RC_MAX_MERGE 100000

static int rc__merge(rc_ld_t *l, int a, int b, size_t *budget, int depth) {
  yaml_node_t *na = rc__node(l, a), *nb = rc__node(l, b);
  if (!na || !nb || depth > RC_MAX_YAML_DEPTH || *budget == 0) {
    return 0;
  }
  (*budget)--;
  yaml_mark_t mark = na->start_mark;
  if (na->type == YAML_MAPPING_NODE && nb->type == YAML_MAPPING_NODE) {
    int m = yaml_document_add_mapping(&l->doc, NULL, YAML_BLOCK_MAPPING_STYLE);
    if (!m) {
      return 0;
    }
    /* na and nb may have moved with the new node: use indexes from here */
    rc__node(l, m)->start_mark = mark;
    na = rc__node(l, a);
    nb = rc__node(l, b);
    size_t ca = (size_t)(na->data.mapping.pairs.top - na->data.mapping.pairs.start);
    size_t cb = (size_t)(nb->data.mapping.pairs.top - nb->data.mapping.pairs.start);
    for (size_t i = 0; i < ca + cb; i++) {
      /* re-fetch: adding nodes may have moved them */
      yaml_node_t *x = rc__node(l, i < ca ? a : b);
      yaml_node_pair_t pr = x->data.mapping.pairs.start[i < ca ? i : i - ca];
      const char *k = rc__key_str(rc__node(l, pr.key));
      int other = 0;
      yaml_node_t *y = rc__node(l, i < ca ? b : a);
      for (yaml_node_pair_t *q = y->data.mapping.pairs.start; q < y->data.mapping.pairs.top; q++) {
        if (strcmp(rc__key_str(rc__node(l, q->key)), k) == 0) {
          other = q->value;
        }
      }
      int v = pr.value;
      if (i < ca && other) {
        v = rc__merge(l, pr.value, other, budget, depth + 1);
      } else if (i >= ca && other) {
        continue; /* merged with the base's key above */
      }
      if (!v || !yaml_document_append_mapping_pair(&l->doc, m, pr.key, v)) {
        return 0;
      }
    }
    return m;
  }
  if (na->type == YAML_SEQUENCE_NODE && nb->type == YAML_SEQUENCE_NODE) {
    int sq = yaml_document_add_sequence(&l->doc, NULL, YAML_BLOCK_SEQUENCE_STYLE);
    if (!sq) {
      return 0;
    }
    rc__node(l, sq)->start_mark = mark;
    size_t ca = (size_t)(rc__node(l, a)->data.sequence.items.top -
                         rc__node(l, a)->data.sequence.items.start);
    size_t cb = (size_t)(rc__node(l, b)->data.sequence.items.top -
                         rc__node(l, b)->data.sequence.items.start);
    for (size_t i = 0; i < (ca > cb ? ca : cb); i++) {
      int ia = i < ca ? rc__node(l, a)->data.sequence.items.start[i] : 0;
      int ib = i < cb ? rc__node(l, b)->data.sequence.items.start[i] : 0;
      int v = ia && ib ? rc__merge(l, ia, ib, budget, depth + 1) : (ia ? ia : ib);
      if (!v || !yaml_document_append_sequence_item(&l->doc, sq, v)) {
        return 0;
      }
    }
    return sq;
  }
  return b;
}

static int rc__prescan(const char *text, size_t len, const char *path, rc_err_t *err);

/* Copy node `idx` of document `src` into l->doc; the new index, or 0. */
static int rc__copy(rc_ld_t *l, yaml_document_t *src, int idx, size_t *budget, int depth) {
  yaml_node_t *n = yaml_document_get_node(src, idx);
  if (!n || depth > RC_MAX_YAML_DEPTH || *budget == 0) {
    return 0;
  }
  (*budget)--;
  if (n->type == YAML_SCALAR_NODE) {
    return yaml_document_add_scalar(&l->doc, NULL, n->data.scalar.value, (int)n->data.scalar.length,
                                    n->data.scalar.style);
  }
  if (n->type == YAML_SEQUENCE_NODE) {
    int sq = yaml_document_add_sequence(&l->doc, NULL, YAML_FLOW_SEQUENCE_STYLE);
    size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    for (size_t i = 0; sq && i < cnt; i++) {
      int item = yaml_document_get_node(src, idx)->data.sequence.items.start[i];
      int v = rc__copy(l, src, item, budget, depth + 1);
      if (!v || !yaml_document_append_sequence_item(&l->doc, sq, v)) {
        return 0;
      }
    }
    return sq;
  }
  int m = yaml_document_add_mapping(&l->doc, NULL, YAML_FLOW_MAPPING_STYLE);
  size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
  for (size_t i = 0; m && i < cnt; i++) {
    yaml_node_pair_t pr = yaml_document_get_node(src, idx)->data.mapping.pairs.start[i];
    int k = rc__copy(l, src, pr.key, budget, depth + 1);
    int v = k ? rc__copy(l, src, pr.value, budget, depth + 1) : 0;
    if (!v || !yaml_document_append_mapping_pair(&l->doc, m, k, v)) {
      return 0;
    }
  }
  return m;
}

/* --overrides JSON: merged over the whole file, as Artillery does (after
 * the environment). 0, or -1 with a message. */
static int rc__overrides(rc_ld_t *l, const char *text) {
  yaml_parser_t parser;
  yaml_document_t od;
  if (!yaml_parser_initialize(&parser)) {
    rc_err_set(l->err, 0, 0, "cannot initialise the YAML parser");
    return -1;
  }
  size_t len = strlen(text);
  if (rc__prescan(text, len, "--overrides", l->err) != 0) { /* the same bounds as a file */
    yaml_parser_delete(&parser);
    return -1;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int ok = yaml_parser_load(&parser, &od);
  yaml_parser_delete(&parser);
  if (!ok) {
    rc_err_set(l->err, 0, 0, "--overrides: not valid JSON");
    return -1;
  }
  yaml_node_t *oroot = yaml_document_get_root_node(&od);
  yaml_node_t *root = yaml_document_get_root_node(&l->doc);
  int rc = 0;
  if (!oroot || oroot->type != YAML_MAPPING_NODE || len > RC_MAX_FILE_BYTES) {
    rc_err_set(l->err, 0, 0, "--overrides must be a JSON object such as '{\"config\": {...}}'");
    rc = -1;
  } else if (root && root->type == YAML_MAPPING_NODE) {
    size_t budget = RC_MAX_MERGE;
    int copy = rc__copy(l, &od, 1, &budget, 0);
    /* merge key by key into the root (node 1), which stays the root */
    size_t cnt = copy ? (size_t)(rc__node(l, copy)->data.mapping.pairs.top -
                                 rc__node(l, copy)->data.mapping.pairs.start)
                      : 0;
    for (size_t i = 0; copy && i < cnt && rc == 0; i++) {
      yaml_node_pair_t op = rc__node(l, copy)->data.mapping.pairs.start[i];
      const char *k = rc__key_str(rc__node(l, op.key));
      size_t rn = (size_t)(rc__node(l, 1)->data.mapping.pairs.top -
                           rc__node(l, 1)->data.mapping.pairs.start);
      size_t j;
      for (j = 0; j < rn; j++) {
        if (strcmp(rc__key_str(rc__node(l, rc__node(l, 1)->data.mapping.pairs.start[j].key)), k) ==
            0) {
          break;
        }
      }
      if (j < rn) {
        int v =
            rc__merge(l, rc__node(l, 1)->data.mapping.pairs.start[j].value, op.value, &budget, 0);
        if (!v) {
          rc = -1;
        } else {
          rc__node(l, 1)->data.mapping.pairs.start[j].value = v;
        }
      } else if (!yaml_document_append_mapping_pair(&l->doc, 1, op.key, op.value)) {
        rc = -1;
      }
    }
    if (!copy || budget == 0) {
      rc = -1;
    }
    if (rc != 0) {
      rc_err_set(l->err, 0, 0, "--overrides is too large to merge");
    }
  }
  yaml_document_delete(&od);
  return rc;
}

/* Apply environment `env` to the document; 0, or -1 with a message. */
static int rc__environment(rc_ld_t *l, const char *env) {
  yaml_node_t *root = yaml_document_get_root_node(&l->doc);
  if (!root || root->type != YAML_MAPPING_NODE) {
    return 0; /* the usual errors follow */
  }
  int root_idx = (int)(root - l->doc.nodes.start) + 1;
  size_t cfg_pair = 0;
  int cfg = 0, envs = 0, chosen = 0;
  for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
       p++) {
    if (strcmp(rc__key_str(rc__node(l, p->key)), "config") == 0) {
      cfg = p->value;
      cfg_pair = (size_t)(p - root->data.mapping.pairs.start);
    }
  }
  yaml_node_t *c = cfg ? rc__node(l, cfg) : NULL;
  if (c && c->type == YAML_MAPPING_NODE) {
    RC_FOREACH_PAIR(l, c, key, val) {
      if (strcmp(key, "environments") == 0) {
        envs = key_pair->value;
        if (val->type == YAML_MAPPING_NODE) {
          RC_FOREACH_PAIR(l, val, ekey, eval) {
            (void)eval;
            if (strcmp(ekey, env) == 0) {
              chosen = ekey_pair->value;
            }
          }
        }
      }
    }
  }
  if (!chosen) {
    rc_buf_t names = {0};
    yaml_node_t *e = envs ? rc__node(l, envs) : NULL;
    if (e && e->type == YAML_MAPPING_NODE) {
      RC_FOREACH_PAIR(l, e, ekey, eval) {
        (void)eval;
        rc_buf_printf(&names, "%s%s", names.len ? ", " : "", ekey);
      }
    }
    rc__fail(l, e ? e : c, "environment '%s' is not defined in config.environments (defined: %s)",
             env, names.len ? names.data : "none");
    rc_buf_free(&names);
    return -1;
  }
  if (rc__node(l, chosen)->type != YAML_MAPPING_NODE) {
    return rc__fail(l, rc__node(l, chosen), "config.environments.%s must be a mapping", env);
  }
  size_t budget = RC_MAX_MERGE;
  int merged = rc__merge(l, cfg, chosen, &budget, 0);
  if (!merged || budget == 0) {
    return rc__fail(l, rc__node(l, chosen), "config.environments.%s is too large to merge", env);
  }
  rc__node(l, root_idx)->data.mapping.pairs.start[cfg_pair].value = merged;
  return 0;
}

/* --------------------------------------------------------------- blockers */

/* Features of Artillery scripts that racecheck does not run: JavaScript
 * (processor files, function steps, hooks, whileTrue) and other engines.
 * They are all found in one walk, before anything else is checked, so that
 * a user learns every one of them at once with its line -- never a bare
 * "unknown key". */
#define RC_MAX_BLOCKERS 20

typedef struct rc_scan {
  rc_ld_t *l;
  rc_buf_t out;
  size_t n;
  unsigned char *seen; /* flows already scanned (aliases), by node index */
  size_t nnodes;
  int line, col; /* of the first blocker */
} rc_scan_t;

static void rc__blocker(rc_scan_t *sc, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void rc__blocker(rc_scan_t *sc, const yaml_node_t *n, const char *fmt, ...) {
  if (sc->n == 0) {
    sc->line = (int)n->start_mark.line + 1;
    sc->col = (int)n->start_mark.column + 1;
  }
  if (sc->n++ >= RC_MAX_BLOCKERS) {
    return;
  }
  char msg[300];
  va_list ap;
  va_start(ap, fmt);
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started on the line above
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  rc_buf_printf(&sc->out, "\n  %s:%d:%d: %s", sc->l->path ? sc->l->path : "<scenario>",
                (int)n->start_mark.line + 1, (int)n->start_mark.column + 1, msg);
}

static int rc__is_hook(const char *k) {
  static const char *const hooks[] = {"beforeRequest", "afterResponse", "beforeScenario",
                                      "afterScenario", "onError",       NULL};
  for (const char *const *h = hooks; *h; h++) {
    if (strcmp(*h, k) == 0) {
      return 1;
    }
  }
  return 0;
}

static void rc__scan_hook(rc_scan_t *sc, const yaml_node_t *k, const char *name) {
  rc__blocker(sc, k,
              "'%s' hooks call JavaScript functions (from config.processor), which racecheck "
              "does not run",
              name);
}

static void rc__scan_flow(rc_scan_t *sc, const yaml_node_t *flow) {
  if (!flow || flow->type != YAML_SEQUENCE_NODE) {
    return;
  }
  size_t idx = (size_t)(flow - sc->l->doc.nodes.start);
  if (idx < sc->nnodes) {
    if (sc->seen[idx]) {
      return; /* an alias of a flow already scanned */
    }
    sc->seen[idx] = 1;
  }
  rc_ld_t *l = sc->l;
  for (yaml_node_item_t *i = flow->data.sequence.items.start; i < flow->data.sequence.items.top;
       i++) {
    yaml_node_t *st = rc__node(l, *i);
    if (!st || st->type != YAML_MAPPING_NODE) {
      continue;
    }
    RC_FOREACH_PAIR(l, st, key, val) {
      yaml_node_t *k = rc__node(l, key_pair->key);
      if (strcmp(key, "function") == 0) {
        rc__blocker(sc, k,
                    "'function' steps run JavaScript (from config.processor), which racecheck "
                    "does not run");
      } else if (strcmp(key, "whileTrue") == 0) {
        rc__blocker(sc, k,
                    "'whileTrue' loops call a JavaScript function, which racecheck does not run "
                    "(use count or over)");
      } else if (strcmp(key, "loop") == 0 || strcmp(key, "parallel") == 0) {
        rc__scan_flow(sc, val);
      } else if (rc__method_upper(key) && val->type == YAML_MAPPING_NODE) {
        RC_FOREACH_PAIR(l, val, rkey, rval) {
          (void)rval;
          if (rc__is_hook(rkey)) {
            rc__scan_hook(sc, rc__node(l, rkey_pair->key), rkey);
          }
        }
      }
    }
  }
}

static void rc__scan_engine(rc_scan_t *sc, const yaml_node_t *n, const char *engine,
                            const char *where) {
  rc__blocker(sc, n,
              "%s '%s': racecheck runs HTTP scenarios only (no WebSocket, Socket.IO, Playwright "
              "or other engines)",
              where, engine);
}

/* Returns the number of blockers; their lines are in sc->out. */
static size_t rc__scan(rc_scan_t *sc, const yaml_node_t *root) {
  rc_ld_t *l = sc->l;
  if (!root || root->type != YAML_MAPPING_NODE) {
    return 0;
  }
  sc->nnodes = (size_t)(l->doc.nodes.top - l->doc.nodes.start);
  sc->seen = rc_xcalloc(sc->nnodes + 1, 1);
  RC_FOREACH_PAIR(l, root, key, val) {
    if (strcmp(key, "config") == 0 && val->type == YAML_MAPPING_NODE) {
      RC_FOREACH_PAIR(l, val, ckey, cval) {
        yaml_node_t *k = rc__node(l, ckey_pair->key);
        if (strcmp(ckey, "processor") == 0) {
          rc__blocker(sc, k,
                      "config.processor loads a JavaScript file, which racecheck does not run");
        } else if (strcmp(ckey, "engines") == 0 && cval->type == YAML_MAPPING_NODE) {
          RC_FOREACH_PAIR(l, cval, ekey, eval) {
            (void)eval;
            if (strcmp(ekey, "http") != 0) {
              rc__scan_engine(sc, rc__node(l, ekey_pair->key), ekey, "config.engines:");
            }
          }
        }
      }
    } else if (strcmp(key, "scenarios") == 0 && val->type == YAML_SEQUENCE_NODE) {
      for (yaml_node_item_t *i = val->data.sequence.items.start; i < val->data.sequence.items.top;
           i++) {
        yaml_node_t *scn = rc__node(l, *i);
        if (!scn || scn->type != YAML_MAPPING_NODE) {
          continue;
        }
        const yaml_node_t *flow = NULL;
        int other_engine = 0;
        RC_FOREACH_PAIR(l, scn, skey, sval) {
          yaml_node_t *k = rc__node(l, skey_pair->key);
          if (strcmp(skey, "engine") == 0 && rc__is_scalar(sval) &&
              strcmp(rc__str(sval), "http") != 0) {
            rc__scan_engine(sc, sval, rc__str(sval), "engine");
            other_engine = 1;
          } else if (rc__is_hook(skey)) {
            rc__scan_hook(sc, k, skey);
          } else if (strcmp(skey, "flow") == 0) {
            flow = sval;
          }
        }
        if (!other_engine) { /* another engine's steps are no news */
          rc__scan_flow(sc, flow);
        }
      }
    } else if ((strcmp(key, "before") == 0 || strcmp(key, "after") == 0) &&
               val->type == YAML_MAPPING_NODE) {
      RC_FOREACH_PAIR(l, val, bkey, bval) {
        if (strcmp(bkey, "flow") == 0) {
          rc__scan_flow(sc, bval);
        }
      }
    }
  }
  free(sc->seen);
  sc->seen = NULL;
  return sc->n;
}

/* --------------------------------------------------------------- public */

uint32_t rc_file_add_stepinfo(rc_file_t *f, const char *name, const char *scenario,
                              const char *method) {
  f->steps = rc_xrealloc(f->steps, (f->nsteps + 1) * sizeof *f->steps);
  f->steps[f->nsteps].name = name;
  f->steps[f->nsteps].scenario = scenario;
  f->steps[f->nsteps].method = method;
  return (uint32_t)f->nsteps++;
}

static void rc__yaml_error(const yaml_parser_t *parser, const char *path, rc_err_t *err) {
  int line = (int)parser->problem_mark.line + 1, col = (int)parser->problem_mark.column + 1;
  rc_err_set(err, line, col, "%s:%d:%d: YAML: %s%s%s", path ? path : "<scenario>", line, col,
             parser->problem ? parser->problem : "syntax error", parser->context ? " " : "",
             parser->context ? parser->context : "");
}

/* A first pass over libyaml's events, before any document is built: bound
 * the nesting, the number of nodes and of aliases. libyaml's scanner does
 * work proportional to the flow nesting for every token, so a 100,000-deep
 * "[[[..." took tens of seconds to load; stopping at RC_MAX_YAML_DEPTH keeps
 * every file's cost linear. Returns 0, or -1 with a message. */
static int rc__prescan(const char *text, size_t len, const char *path, rc_err_t *err) {
  const char *p = path ? path : "<scenario>";
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    rc_err_set(err, 0, 0, "cannot initialise the YAML parser");
    return -1;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int depth = 0, rc = -1;
  size_t nodes = 0, aliases = 0;
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      rc__yaml_error(&parser, path, err);
      break;
    }
    int line = (int)ev.start_mark.line + 1, col = (int)ev.start_mark.column + 1;
    yaml_event_type_t t = ev.type;
    yaml_event_delete(&ev);
    if (t == YAML_STREAM_END_EVENT) {
      rc = 0;
      break;
    }
    if (t == YAML_SEQUENCE_START_EVENT || t == YAML_MAPPING_START_EVENT) {
      if (++depth > RC_MAX_YAML_DEPTH) {
        rc_err_set(err, line, col, "%s:%d:%d: lists and mappings nested over %d levels deep", p,
                   line, col, RC_MAX_YAML_DEPTH);
        break;
      }
    } else if (t == YAML_SEQUENCE_END_EVENT || t == YAML_MAPPING_END_EVENT) {
      depth--;
    } else if (t == YAML_ALIAS_EVENT && ++aliases > RC_MAX_YAML_ALIASES) {
      rc_err_set(err, line, col, "%s:%d:%d: over %d aliases (*name) in one file", p, line, col,
                 RC_MAX_YAML_ALIASES);
      break;
    }
    if ((t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT ||
         t == YAML_MAPPING_START_EVENT) &&
        ++nodes > RC_MAX_YAML_NODES) {
      rc_err_set(err, line, col, "%s:%d:%d: over %d values in one file", p, line, col,
                 RC_MAX_YAML_NODES);
      break;
    }
  }
  yaml_parser_delete(&parser);
  return rc;
}

rc_file_t *rc_file_load_mem(const char *text, size_t len, const char *path, rc_err_t *err) {
  return rc_file_load_mem_env(text, len, path, NULL, err);
}

rc_file_t *rc_file_load_mem_env(const char *text, size_t len, const char *path, const char *env,
                                rc_err_t *err) {
  return rc_file_load_mem_ex(text, len, path, env, NULL, err);
}

rc_file_t *rc_file_load_mem_ex(const char *text, size_t len, const char *path, const char *env,
                               const char *overrides, rc_err_t *err) {
  rc_ld_t l;
  memset(&l, 0, sizeof l);
  l.path = path;
  l.err = err;
  l.json_budget = RC_MAX_JSON_NODES;
  l.step_budget = RC_MAX_ALL_STEPS;
  if (len > RC_MAX_FILE_BYTES) {
    rc_err_set(err, 0, 0, "%s: %zu bytes: a scenario file may have at most %u MiB",
               path ? path : "<scenario>", len, RC_MAX_FILE_BYTES >> 20);
    return NULL;
  }
  if (rc__prescan(text, len, path, err) != 0) {
    return NULL;
  }
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    rc_err_set(err, 0, 0, "cannot initialise the YAML parser");
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  if (!yaml_parser_load(&parser, &l.doc)) {
    rc__yaml_error(&parser, path, err);
    yaml_parser_delete(&parser);
    return NULL;
  }
  yaml_parser_delete(&parser);
  rc_file_t *f = rc_xcalloc(1, sizeof *f);
  l.f = f;
  f->timeout_ns = 10ull * 1000000000ull;
  if (path) {
    f->path = rc_xstrdup(path);
    const char *slash = strrchr(path, '/');
    f->dir = slash ? rc_xstrndup(path, (size_t)(slash - path)) : rc_xstrdup(".");
  }
  l.f = f;
  int rc;
  if ((env && rc__environment(&l, env) != 0) || (overrides && rc__overrides(&l, overrides) != 0)) {
    yaml_document_delete(&l.doc);
    rc_file_free(f);
    return NULL;
  }

  yaml_node_t *root = yaml_document_get_root_node(&l.doc);
  rc_scan_t sc = {.l = &l};
  if (rc__scan(&sc, root) > 0) {
    rc_err_set(err, sc.line, sc.col, "%s: %zu feature%s racecheck does not run:%s%s",
               path ? path : "<scenario>", sc.n, sc.n == 1 ? "" : "s", sc.out.data,
               sc.n > RC_MAX_BLOCKERS ? "\n  ..." : "");
    rc = -1;
  } else {
    rc = rc__root(&l, root);
    if (rc == 0 && env) {
      /* Artillery's $environment: the name given with -e */
      if (!f->variables) {
        f->variables = json_object();
      }
      json_object_set_new(f->variables, "$environment", json_string(env));
    }
  }
  rc_buf_free(&sc.out);
  yaml_document_delete(&l.doc);
  if (rc != 0) {
    rc_file_free(f);
    return NULL;
  }
  return f;
}

rc_file_t *rc_file_load(const char *path, rc_err_t *err) {
  return rc_file_load_env(path, NULL, err);
}

rc_file_t *rc_file_load_env(const char *path, const char *env, rc_err_t *err) {
  return rc_file_load_ex(path, env, NULL, err);
}

rc_file_t *rc_file_load_ex(const char *path, const char *env, const char *overrides,
                           rc_err_t *err) {
  char *text = NULL;
  size_t len = 0;
  /* the size is checked before reading: a huge file is refused at once */
  if (rc_read_file_max(path, RC_MAX_FILE_BYTES, &text, &len) != 0) {
    if (errno == EFBIG) {
      rc_err_set(err, 0, 0, "%s: a scenario file may have at most %u MiB", path,
                 RC_MAX_FILE_BYTES >> 20);
    } else {
      rc_err_set(err, 0, 0, "cannot read %s: %s", path, strerror(errno));
    }
    return NULL;
  }
  rc_file_t *f = rc_file_load_mem_ex(text, len, path, env, overrides, err);
  free(text);
  return f;
}

static void rc__free_step(rc_step_t *s);

static void rc__free_flow(rc_step_t *steps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    rc__free_step(&steps[i]);
  }
  free(steps);
}

static void rc__free_kvs(rc_kv_t *kv, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(kv[i].name);
    free(kv[i].value);
  }
  free(kv);
}

static void rc__free_step(rc_step_t *s) {
  free(s->name);
  free(s->url);
  json_decref(s->json);
  free(s->body);
  rc__free_kvs(s->headers, s->nheaders);
  rc__free_kvs(s->qs, s->nqs);
  rc__free_kvs(s->cookies, s->ncookies);
  rc__free_kvs(s->form, s->nform);
  for (size_t i = 0; i < s->ncaptures; i++) {
    free(s->captures[i].path);
    free(s->captures[i].as);
    free(s->captures[i].group);
    json_decref(s->captures[i].value);
    pcre2_code_free(s->captures[i].re);
  }
  free(s->captures);
  for (size_t i = 0; i < s->nexpects; i++) {
    free(s->expects[i].codes);
    free(s->expects[i].a);
    free(s->expects[i].b);
    free(s->expects[i].text);
    rc_expr_free(s->expects[i].expr);
  }
  free(s->expects);
  rc__free_flow(s->steps, s->nsteps);
  json_decref(s->over);
  free(s->log);
}

void rc_file_free(rc_file_t *f) {
  if (!f) {
    return;
  }
  free(f->path);
  free(f->dir);
  free(f->target);
  for (size_t i = 0; i < f->nphases; i++) {
    free(f->phases[i].name);
    free(f->phases[i].burst_scenario);
  }
  free(f->phases);
  json_decref(f->variables);
  for (size_t i = 0; i < f->npayloads; i++) {
    rc_payload_t *p = &f->payloads[i];
    free(p->path);
    for (size_t r = 0; r < p->nrows; r++) {
      for (size_t k = 0; k < p->nfields; k++) {
        free(p->rows[r][k]);
      }
      free(p->rows[r]);
    }
    free(p->rows);
    free(p->name);
    json_decref(p->all);
    for (size_t k = 0; k < p->nfields; k++) {
      free(p->fields[k]);
    }
    free(p->fields);
  }
  free(f->payloads);
  rc__free_kvs(f->default_headers, f->ndefault_headers);
  rc__free_kvs(f->default_cookies, f->ndefault_cookies);
  free(f->tls_ca);
  free(f->tls_cert);
  free(f->tls_key);
  for (size_t i = 0; i < f->nensures; i++) {
    free(f->ensures[i].text);
  }
  free(f->ensures);
  for (size_t i = 0; i < f->nscenarios; i++) {
    free(f->scenarios[i].name);
    rc__free_flow(f->scenarios[i].flow.steps, f->scenarios[i].flow.n);
  }
  free(f->scenarios);
  rc__free_flow(f->before.steps, f->before.n);
  rc__free_flow(f->after.steps, f->after.n);
  for (size_t i = 0; i < f->ninvariants; i++) {
    rc_invariant_t *inv = &f->invariants[i];
    free(inv->name);
    if (inv->req) {
      rc__free_step(inv->req);
      free(inv->req);
    }
    for (size_t k = 0; k < inv->n; k++) {
      rc_expr_free(inv->exprs[k]);
      free(inv->texts[k]);
    }
    free(inv->exprs);
    free(inv->texts);
  }
  free(f->invariants);
  free(f->steps);
  free(f);
}

rc_file_t *rc_file_burst(const char *target, const char *method, const char *path,
                         const rc_header_t *headers, size_t nheaders, const char *body,
                         uint32_t connections, uint32_t repeat, uint64_t timeout_ns,
                         rc_err_t *err) {
  if (rc_tmpl_check(path, err) != 0 || (body && rc_tmpl_check(body, err) != 0)) {
    return NULL;
  }
  for (size_t i = 0; i < nheaders; i++) {
    if (rc_tmpl_check(headers[i].value, err) != 0) {
      return NULL;
    }
  }
  rc_file_t *f = rc_xcalloc(1, sizeof *f);
  f->target = rc_xstrdup(target);
  f->timeout_ns = timeout_ns;
  f->phases = rc_xcalloc(1, sizeof *f->phases);
  f->nphases = 1;
  f->phases[0].kind = RC_PHASE_BURST;
  f->phases[0].name = rc_xstrdup("burst");
  f->phases[0].burst_connections = connections;
  f->phases[0].burst_repeat = repeat;
  f->phases[0].scenario = 0;
  f->scenarios = rc_xcalloc(1, sizeof *f->scenarios);
  f->nscenarios = 1;
  f->total_weight = 1;
  rc_scn_t *sc = &f->scenarios[0];
  sc->name = rc_xstrdup("burst");
  sc->weight = 1;
  sc->flow.steps = rc_xcalloc(1, sizeof *sc->flow.steps);
  sc->flow.n = 1;
  rc_step_t *s = &sc->flow.steps[0];
  s->kind = RC_STEP_REQUEST;
  s->method = NULL;
  for (int i = 0; rc__methods[i]; i++) {
    const char *up = rc__method_upper(rc__methods[i]);
    if (strcasecmp(up, method) == 0) {
      s->method = up;
    }
  }
  if (!s->method) {
    rc_err_set(err, 0, 0, "unknown method '%s'", method);
    rc_file_free(f);
    return NULL;
  }
  s->url = rc_xstrdup(path);
  s->body = body ? rc_xstrdup(body) : NULL;
  s->headers = rc_xcalloc(nheaders ? nheaders : 1, sizeof *s->headers);
  for (size_t i = 0; i < nheaders; i++) {
    s->headers[i].name = rc_xstrdup(headers[i].name);
    s->headers[i].value = rc_xstrdup(headers[i].value);
  }
  s->nheaders = nheaders;
  s->name = rc_xstrdup("burst");
  s->id = rc_file_add_stepinfo(f, s->name, sc->name, s->method);
  return f;
}

int rc_file_add_invariant(rc_file_t *f, const char *text, rc_err_t *err) {
  rc_expr_t *e = rc_expr_parse(text, err);
  if (!e) {
    return -1;
  }
  f->invariants = rc_xrealloc(f->invariants, (f->ninvariants + 1) * sizeof *f->invariants);
  rc_invariant_t *inv = &f->invariants[f->ninvariants++];
  memset(inv, 0, sizeof *inv);
  inv->name = rc_xstrdup(text);
  inv->exprs = rc_xcalloc(1, sizeof(rc_expr_t *));
  inv->texts = rc_xcalloc(1, sizeof *inv->texts);
  inv->exprs[0] = e;
  inv->texts[0] = rc_xstrdup(text);
  inv->n = 1;
  return 0;
}
