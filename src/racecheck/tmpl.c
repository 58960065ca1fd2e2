/* tmpl.c - see tmpl.h. */
#include "tmpl.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jpath.h"

static const char *rc__skip_ws(const char *p, const char *end) {
  while (p < end && isspace((unsigned char)*p)) {
    p++;
  }
  return p;
}

static const char *rc__trim_end(const char *p, const char *end) {
  while (end > p && isspace((unsigned char)end[-1])) {
    end--;
  }
  return end;
}

/* Parse "(a, b)" integer arguments after a generator name. Returns the
 * number of arguments (up to max) or -1. */
static int rc__args(const char *p, const char *end, long long *args, int max) {
  p = rc__skip_ws(p, end);
  if (p == end) {
    return 0; /* no parentheses at all: "$uuid" */
  }
  if (*p != '(') {
    return -1;
  }
  p++;
  int n = 0;
  p = rc__skip_ws(p, end);
  if (p < end && *p == ')') {
    p++;
    return rc__skip_ws(p, end) == end ? 0 : -1;
  }
  for (;;) {
    p = rc__skip_ws(p, end);
    char *e = NULL;
    errno = 0;
    long long v = strtoll(p, &e, 10);
    if (e == p || errno || e > end || n == max) {
      return -1;
    }
    args[n++] = v;
    p = rc__skip_ws(e, end);
    if (p < end && *p == ',') {
      p++;
      continue;
    }
    if (p < end && *p == ')') {
      p++;
      break;
    }
    return -1;
  }
  return rc__skip_ws(p, end) == end ? n : -1;
}

static int rc__is_gen(const char *p, const char *end, const char *name) {
  size_t n = strlen(name);
  if ((size_t)(end - p) < n || memcmp(p, name, n) != 0) {
    return 0;
  }
  return p + n == end || p[n] == '(' || p[n] == '.' || p[n] == '[' || isspace((unsigned char)p[n]);
}

static int rc__valid_var(const char *p, const char *end) {
  if (p == end) {
    return 0;
  }
  for (const char *q = p; q < end; q++) {
    if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '-' || *q == '.' || *q == '[' ||
          *q == ']' || *q == '$' || *q == '\'' || *q == '"')) {
      return 0;
    }
  }
  return 1;
}

/* The template starting at o ("{{"): its inner text [*x, *xe) and the end
 * of the closing braces (*next). Artillery's triple braces "{{{ x }}}"
 * mean the same as "{{ x }}". NULL *next when it is not closed. */
static void rc__span(const char *o, const char **x, const char **xe, const char **next) {
  if (o[2] == '{') {
    const char *e3 = strstr(o + 3, "}}}");
    const char *e2 = strstr(o + 3, "}}");
    if (e3 && e3 == e2) {
      *x = o + 3;
      *xe = e3;
      *next = e3 + 3;
      return;
    }
  }
  const char *e = strstr(o + 2, "}}");
  *x = o + 2;
  *xe = e;
  *next = e ? e + 2 : NULL;
}

static json_t *rc__eval(const char *expr, size_t len, const rc_tctx_t *ctx, rc_err_t *err,
                        int *missing);

json_t *rc_tmpl_eval(const char *expr, size_t len, const rc_tctx_t *ctx, rc_err_t *err) {
  return rc__eval(expr, len, ctx, err, NULL);
}

/* As rc_tmpl_eval; *missing (when given) is set when the failure is an
 * undefined variable or path. */
static json_t *rc__eval(const char *expr, size_t len, const rc_tctx_t *ctx, rc_err_t *err,
                        int *missing) {
  const char *p = rc__skip_ws(expr, expr + len);
  const char *end = rc__trim_end(p, expr + len);
  long long a[2];
  if (p < end && *p == '$') {
    if (rc__is_gen(p, end, "$randomNumber")) {
      int n = rc__args(p + 13, end, a, 2);
      if (n != 2) {
        rc_err_set(err, 0, 0, "$randomNumber needs (min, max)");
        return NULL;
      }
      return json_integer(ctx && ctx->rng ? rc_rng_range(ctx->rng, a[0], a[1]) : a[0]);
    }
    if (rc__is_gen(p, end, "$randomString")) {
      int n = rc__args(p + 13, end, a, 1);
      if (n > 1 || n < 0 || (n == 1 && (a[0] < 0 || a[0] > 65536))) {
        rc_err_set(err, 0, 0, "$randomString needs (length), 0..65536");
        return NULL;
      }
      long long len2 = n == 1 ? a[0] : 10;
      static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
      char *s = rc_xmalloc((size_t)len2 + 1);
      for (long long i = 0; i < len2; i++) {
        s[i] = al[ctx && ctx->rng ? rc_rng_next(ctx->rng) % 62 : 0];
      }
      s[len2] = '\0';
      json_t *v = json_string_nocheck(s);
      free(s);
      return v;
    }
    if (rc__is_gen(p, end, "$uuid")) {
      if (rc__args(p + 5, end, a, 0) != 0) {
        rc_err_set(err, 0, 0, "$uuid takes no arguments");
        return NULL;
      }
      uint64_t h = ctx && ctx->rng ? rc_rng_next(ctx->rng) : 0;
      uint64_t l = ctx && ctx->rng ? rc_rng_next(ctx->rng) : 0;
      h = (h & ~0xf000ull) | 0x4000ull;                        /* version 4 */
      l = (l & 0x3fffffffffffffffull) | 0x8000000000000000ull; /* variant 1 */
      char s[40];
      snprintf(s, sizeof s, "%08x-%04x-%04x-%04x-%012llx", (unsigned)(h >> 32),
               (unsigned)((h >> 16) & 0xffff), (unsigned)(h & 0xffff), (unsigned)(l >> 48),
               (unsigned long long)(l & 0xffffffffffffull));
      return json_string(s);
    }
    if (rc__is_gen(p, end, "$timestamp")) {
      if (rc__args(p + 10, end, a, 0) != 0) {
        rc_err_set(err, 0, 0, "$timestamp takes no arguments");
        return NULL;
      }
      return json_integer((json_int_t)rc_wall_ms());
    }
    const char *envp = NULL;
    if ((size_t)(end - p) > 5 && memcmp(p, "$env.", 5) == 0) {
      envp = p + 5;
    } else if ((size_t)(end - p) > 20 && memcmp(p, "$processEnvironment.", 20) == 0) {
      envp = p + 20;
    }
    if (envp) {
      char *name = rc_xstrndup(envp, (size_t)(end - envp));
      const char *v = getenv(name);
      if (!v) {
        rc_err_set(err, 0, 0, "environment variable '%s' is not set", name);
        free(name);
        return NULL;
      }
      free(name);
      return json_string_nocheck(v);
    }
    if (!(rc__is_gen(p, end, "$loopCount") || rc__is_gen(p, end, "$loopElement") ||
          rc__is_gen(p, end, "$loopIndex") || rc__is_gen(p, end, "$round") ||
          rc__is_gen(p, end, "$environment"))) {
      rc_err_set(err, 0, 0, "unknown generator '%.*s'", (int)(end - p), p);
      return NULL;
    }
  }
  if (!rc__valid_var(p, end)) {
    rc_err_set(err, 0, 0, "bad template expression '%.*s'", (int)(end - p), p);
    return NULL;
  }
  size_t nlen = strcspn(p, ".[");
  if (p + nlen > end) {
    nlen = (size_t)(end - p);
  }
  json_t *v = ctx && ctx->lookup ? ctx->lookup(ctx->ud, p, nlen) : NULL;
  if (!v) {
    rc_err_set(err, 0, 0, "no variable '%.*s'", (int)nlen, p);
    if (missing) {
      *missing = 1;
    }
    return NULL;
  }
  if (p + nlen < end) {
    char *rest = rc_xstrndup(p + nlen, (size_t)(end - p - (ptrdiff_t)nlen));
    json_t *sub = rc_jpath_get(v, rest);
    if (!sub) {
      rc_err_set(err, 0, 0, "'%.*s' has no '%s'", (int)nlen, p, rest);
      free(rest);
      if (missing) {
        *missing = 1;
      }
      return NULL;
    }
    free(rest);
    v = sub;
  }
  /* a copy, never a new reference: the variable may be shared with other
   * threads, and jansson's json_incref reads the count without an atomic
   * load (harmless on x86, but a data race by the letter of C11) */
  return json_deep_copy(v);
}

int rc_tmpl_has(const char *s) {
  return s && strstr(s, "{{") != NULL;
}

int rc_tmpl_check(const char *s, rc_err_t *err) {
  const char *p = s;
  for (;;) {
    const char *o = strstr(p, "{{");
    const char *c = strstr(p, "}}");
    if (!o) {
      if (c) {
        rc_err_set(err, 0, (int)(c - s) + 1, "'}}' without '{{' in '%s'", s);
        return -1;
      }
      return 0;
    }
    const char *x0, *e, *next;
    rc__span(o, &x0, &e, &next);
    if (!e) {
      rc_err_set(err, 0, (int)(o - s) + 1, "unterminated '{{' in '%s'", s);
      return -1;
    }
    const char *x = rc__skip_ws(x0, e);
    const char *xe = rc__trim_end(x, e);
    if (x == xe) {
      rc_err_set(err, 0, (int)(o - s) + 1, "empty '{{ }}' in '%s'", s);
      return -1;
    }
    const char *inner = strstr(x0, "{{");
    if (inner && inner < e) {
      rc_err_set(err, 0, (int)(inner - s) + 1, "nested '{{' in '%s'", s);
      return -1;
    }
    if (*x == '$') {
      /* evaluate generators with no context: catches bad names/arguments */
      if (!(rc__is_gen(x, xe, "$loopCount") || rc__is_gen(x, xe, "$loopElement") ||
            rc__is_gen(x, xe, "$loopIndex") || rc__is_gen(x, xe, "$round") ||
            rc__is_gen(x, xe, "$environment") ||
            ((size_t)(xe - x) > 5 && memcmp(x, "$env.", 5) == 0) ||
            ((size_t)(xe - x) > 20 && memcmp(x, "$processEnvironment.", 20) == 0))) {
        rc_err_t e2 = {0};
        json_t *v = rc_tmpl_eval(x, (size_t)(xe - x), NULL, &e2);
        if (!v) {
          rc_err_set(err, 0, (int)(o - s) + 1, "%s in '%s'", e2.msg, s);
          return -1;
        }
        json_decref(v);
      }
    } else if (!rc__valid_var(x, xe)) {
      rc_err_set(err, 0, (int)(o - s) + 1, "bad variable name '%.*s' in '%s'", (int)(xe - x), x, s);
      return -1;
    } else {
      size_t nlen = strcspn(x, ".[");
      if (nlen == 0) {
        rc_err_set(err, 0, (int)(o - s) + 1, "bad variable name '%.*s' in '%s'", (int)(xe - x), x,
                   s);
        return -1;
      }
      if (x + nlen < xe) {
        char *rest = rc_xstrndup(x + nlen, (size_t)(xe - x - (ptrdiff_t)nlen));
        rc_err_t e2 = {0};
        int bad = rc_jpath_check(rest, &e2);
        free(rest);
        if (bad) {
          rc_err_set(err, 0, (int)(o - s) + 1, "bad path in '%.*s'", (int)(xe - x), x);
          return -1;
        }
      }
    }
    p = next;
  }
}

void rc_tmpl_append_value(rc_buf_t *out, const json_t *v) {
  if (json_is_string(v)) {
    rc_buf_append(out, json_string_value(v), json_string_length(v));
    return;
  }
  char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  if (s) {
    rc_buf_puts(out, s);
    free(s);
  }
}

int rc_tmpl_render(const char *s, const rc_tctx_t *ctx, rc_buf_t *out, rc_err_t *err) {
  const char *p = s;
  for (;;) {
    const char *o = strstr(p, "{{");
    if (!o) {
      rc_buf_puts(out, p);
      if (!out->data) {
        rc_buf_append(out, "", 0);
      }
      return 0;
    }
    const char *x, *e, *next;
    rc__span(o, &x, &e, &next);
    if (!e) {
      rc_err_set(err, 0, (int)(o - s) + 1, "unterminated '{{' in '%s'", s);
      return -1;
    }
    rc_buf_append(out, p, (size_t)(o - p));
    int missing = 0;
    json_t *v = rc__eval(x, (size_t)(e - x), ctx, err, &missing);
    if (!v && missing && ctx && ctx->undefined) {
      (*ctx->undefined)++;
      rc_buf_puts(out, "undefined"); /* what Artillery's String.replace writes */
      p = next;
      continue;
    }
    if (!v) {
      return -1;
    }
    rc_tmpl_append_value(out, v);
    json_decref(v);
    p = next;
  }
}

/* A string that is one template and nothing else: "{{ x }}". */
static int rc__single(const char *s, const char **x, size_t *n) {
  const char *p = s;
  while (isspace((unsigned char)*p)) {
    p++;
  }
  if (p[0] != '{' || p[1] != '{') {
    return 0;
  }
  const char *x0, *e, *t;
  rc__span(p, &x0, &e, &t);
  if (!e || strstr(x0, "{{")) {
    return 0;
  }
  while (isspace((unsigned char)*t)) {
    t++;
  }
  if (*t) {
    return 0;
  }
  *x = x0;
  *n = (size_t)(e - x0);
  return 1;
}

/* *omit is set (and NULL returned) for a value that is one template naming
 * an undefined variable, rendered the Artillery way (ctx->undefined). */
static json_t *rc__render_json(const json_t *v, const rc_tctx_t *ctx, rc_err_t *err, int *omit) {
  if (json_is_string(v)) {
    const char *s = json_string_value(v);
    if (!rc_tmpl_has(s)) {
      return json_copy((json_t *)v); /* the template is shared: no incref */
    }
    const char *x;
    size_t n;
    if (rc__single(s, &x, &n)) {
      int missing = 0;
      json_t *r = rc__eval(x, n, ctx, err, &missing);
      if (!r && missing && ctx && ctx->undefined) {
        (*ctx->undefined)++;
        *omit = 1; /* JSON.stringify leaves an undefined value out */
      }
      return r;
    }
    rc_buf_t b = {0};
    if (rc_tmpl_render(s, ctx, &b, err) != 0) {
      rc_buf_free(&b);
      return NULL;
    }
    json_t *r = json_stringn_nocheck(b.data ? b.data : "", b.len);
    rc_buf_free(&b);
    return r;
  }
  if (json_is_object(v)) {
    json_t *o = json_object();
    const char *k;
    json_t *m;
    json_object_foreach((json_t *)v, k, m) {
      int skip = 0;
      json_t *r = rc__render_json(m, ctx, err, &skip);
      if (!r && skip) {
        continue;
      }
      if (!r) {
        json_decref(o);
        return NULL;
      }
      json_object_set_new(o, k, r);
    }
    return o;
  }
  if (json_is_array(v)) {
    json_t *a = json_array();
    size_t i;
    json_t *m;
    json_array_foreach((json_t *)v, i, m) {
      int skip = 0;
      json_t *r = rc__render_json(m, ctx, err, &skip);
      if (!r && skip) {
        r = json_null(); /* undefined in a list: null, as JSON.stringify */
      }
      if (!r) {
        json_decref(a);
        return NULL;
      }
      json_array_append_new(a, r);
    }
    return a;
  }
  return json_copy((json_t *)v);
}

json_t *rc_tmpl_render_json(const json_t *v, const rc_tctx_t *ctx, rc_err_t *err) {
  int omit = 0;
  json_t *r = rc__render_json(v, ctx, err, &omit);
  return (!r && omit) ? json_null() : r;
}
