/* tmpl.h - `{{ ... }}` templates in URLs, headers, bodies and log lines.
 *
 * Inside the braces: a variable (`id`, `user.id`, `items[0]`: the first
 * name is looked up, the rest walks its JSON value), or a generator:
 *   $randomNumber(min, max)  integer in [min, max]
 *   $randomString(n)         n characters of [A-Za-z0-9]
 *   $uuid                    a random (version 4) UUID
 *   $timestamp               milliseconds since the epoch
 *   $loopCount, $loopElement the current loop iteration (1-based) / element
 *   $loopIndex                the current loop iteration, 0-based
 *   $round                    the round of a burst phase (1-based; 0 elsewhere)
 *   $env.NAME, $processEnvironment.NAME   an environment variable
 * A string that is exactly one template ("{{ n }}") keeps the type of the
 * value when it stands in a JSON body, so numbers stay numbers.
 *
 * Pure functions apart from the caller's lookup callback and PRNG; safe on
 * any thread with a per-thread rng.
 */
#ifndef RC_TMPL_H
#define RC_TMPL_H

#include <jansson.h>

#include "rc.h"

typedef struct rc_tctx {
  /* Find variable `name` (len bytes, not NUL-terminated); borrowed result or
   * NULL. $loopCount and $loopElement are looked up by these names too. */
  json_t *(*lookup)(void *ud, const char *name, size_t len);
  void *ud;
  rc_rng_t *rng;
  /* When set, an undefined variable (or a path into one that does not
   * exist) renders as Artillery renders it -- the text "undefined", and a
   * JSON value that is only that template is left out -- and is counted
   * here; when NULL, it is an error. */
  uint64_t *undefined;
} rc_tctx_t;

/* Syntax check (balanced braces, known generators, argument counts).
 * Returns 0 or -1 with a message whose col points into s. */
int rc_tmpl_check(const char *s, rc_err_t *err);
/* 1 when s contains a template. */
int rc_tmpl_has(const char *s);
/* Render s, appending to out. Returns 0, or -1 with a message (unknown
 * variable, bad generator). */
int rc_tmpl_render(const char *s, const rc_tctx_t *ctx, rc_buf_t *out, rc_err_t *err);
/* Render every string inside a JSON value. Returns a new reference or NULL
 * with a message. */
json_t *rc_tmpl_render_json(const json_t *v, const rc_tctx_t *ctx, rc_err_t *err);
/* Evaluate one template expression (the text between the braces) to a new
 * JSON reference (used for typed substitution and `loop: over`). */
json_t *rc_tmpl_eval(const char *expr, size_t len, const rc_tctx_t *ctx, rc_err_t *err);
/* Append a JSON value as text: strings raw, other values as compact JSON. */
void rc_tmpl_append_value(rc_buf_t *out, const json_t *v);

#endif /* RC_TMPL_H */
