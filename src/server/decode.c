/* decode.c - request validation (see decode.h for the rules). */
#include "decode.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "racefree/errors.h"

static int fail(srv_decode_err_t *err, const char *field, const char *fmt, ...) {
  if (err != NULL) {
    snprintf(err->field, sizeof err->field, "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    /* jansson's texts may quote raw input bytes: keep messages printable ASCII. */
    for (char *p = err->message; *p; p++)
      if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
        *p = '?';
  }
  return RF_EINVAL;
}

/* A key as it may appear in a message: printable ASCII, at most 64 bytes. */
static void printable(const char *s, char *out, size_t cap) {
  size_t j = 0;
  for (size_t i = 0; s[i] != '\0' && j + 1 < cap && i < 64; i++)
    out[j++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\') ? s[i] : '?';
  out[j] = '\0';
}

/* ------------------------------------------------------------ scalars */

bool srv_valid_id(const char *s, size_t len) {
  if (s == NULL || len == 0 || len > SRV_ID_MAX)
    return false;
  for (size_t i = 0; i < len; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == ':' || c == '-';
    if (!ok)
      return false;
  }
  return true;
}

int srv_decode_id(const char *s, const char *field, char out[SRV_ID_MAX + 1],
                  srv_decode_err_t *err) {
  size_t len = s ? strnlen(s, SRV_ID_MAX + 1) : 0;
  if (!srv_valid_id(s, len))
    return fail(err, field, "\"%s\" must be 1-128 characters of A-Z a-z 0-9 . _ : -", field);
  memcpy(out, s, len);
  out[len] = '\0';
  return 0;
}

int srv_decode_user_id(const char *s, int64_t *out, srv_decode_err_t *err) {
  size_t len = s ? strnlen(s, 20) : 0;
  if (len == 0 || len > 19 || s[0] == '0')
    return fail(err, "id", "\"id\" must be a positive integer");
  int64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return fail(err, "id", "\"id\" must be a positive integer");
    int d = s[i] - '0';
    if (v > (INT64_MAX - d) / 10)
      return fail(err, "id", "\"id\" is too large");
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

int srv_normalize_email(const char *s, size_t len, const char *field, char out[SRV_EMAIL_MAX + 1],
                        srv_decode_err_t *err) {
  if (s == NULL)
    return fail(err, field, "\"%s\" is required", field);
  while (len > 0 && is_space(s[0])) {
    s++;
    len--;
  }
  while (len > 0 && is_space(s[len - 1]))
    len--;
  if (len == 0)
    return fail(err, field, "\"%s\" must not be empty", field);
  if (len > SRV_EMAIL_MAX)
    return fail(err, field, "\"%s\" is longer than %d characters", field, SRV_EMAIL_MAX);
  size_t at = len, ats = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f)
      return fail(err, field, "\"%s\" must not contain spaces or control characters", field);
    if (c == '@') {
      ats++;
      at = i;
    }
    out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : (char)c;
  }
  out[len] = '\0';
  if (ats != 1 || at == 0 || at == len - 1)
    return fail(err, field,
                "\"%s\" is not a valid email address (one @ between a non-empty local part and "
                "domain)",
                field);
  return 0;
}

/* ------------------------------------------------------------ objects */

static int decode_int(const json_t *v, const srv_field_t *f, int64_t *out, srv_decode_err_t *err) {
  if (!json_is_integer(v))
    return fail(err, f->name, "\"%s\" must be an integer (a JSON number without fraction)",
                f->name);
  json_int_t n = json_integer_value(v);
  if (n < f->min || n > f->max)
    return fail(err, f->name, "\"%s\" must be between %lld and %lld", f->name, (long long)f->min,
                (long long)f->max);
  *out = (int64_t)n;
  return 0;
}

static int decode_field(const json_t *v, const srv_field_t *f, char *out, srv_decode_err_t *err) {
  switch (f->type) {
  case SRV_FIELD_INT: {
    int64_t n = 0;
    int rc = decode_int(v, f, &n, err);
    if (rc == 0)
      memcpy(out + f->offset, &n, sizeof n);
    return rc;
  }
  case SRV_FIELD_ID:
    if (!json_is_string(v))
      return fail(err, f->name, "\"%s\" must be a string", f->name);
    if (strlen(json_string_value(v)) != json_string_length(v)) /* an embedded \u0000 */
      return fail(err, f->name, "\"%s\" must be 1-128 characters of A-Z a-z 0-9 . _ : -", f->name);
    return srv_decode_id(json_string_value(v), f->name, out + f->offset, err);
  case SRV_FIELD_EMAIL:
    if (!json_is_string(v))
      return fail(err, f->name, "\"%s\" must be a string", f->name);
    return srv_normalize_email(json_string_value(v), json_string_length(v), f->name,
                               out + f->offset, err);
  }
  return fail(err, f->name, "\"%s\" has an unsupported type", f->name);
}

/* The key of the member whose value ends at body[pos] (where jansson
 * stopped on a number it cannot hold: 1e309 overflows even a double, so
 * the second parse below fails too). Walks back over the number, ':' and
 * the quoted key; false when the text there is not `"key": number`. */
static bool key_before(const char *body, size_t pos, char *key, size_t cap) {
  size_t i = pos;
  while (i > 0 && strchr("0123456789+-.eE", body[i - 1]) != NULL)
    i--;
  while (i > 0 && strchr(" \t\r\n", body[i - 1]) != NULL)
    i--;
  if (i == 0 || body[i - 1] != ':')
    return false;
  i--;
  while (i > 0 && strchr(" \t\r\n", body[i - 1]) != NULL)
    i--;
  if (i == 0 || body[i - 1] != '"')
    return false;
  size_t end = --i;
  while (i > 0 && !(body[i - 1] == '"' && (i < 2 || body[i - 2] != '\\')))
    i--;
  if (i == 0 || end - i >= cap)
    return false;
  memcpy(key, body + i, end - i);
  key[end - i] = '\0';
  return true;
}

/* jansson refuses integers beyond 64 bits outright. Parse again with every
 * number as a double only to find which known field holds the monster, so
 * the message can name it like any other out-of-range value. */
static int fail_overflow(const char *body, size_t len, const srv_field_t *fields, size_t nfields,
                         srv_decode_err_t *err, const json_error_t *jerr) {
  json_t *root = json_loadb(
      body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, NULL);
  for (size_t i = 0; root != NULL && i < nfields; i++) {
    const json_t *v = json_object_get(root, fields[i].name);
    if (fields[i].type != SRV_FIELD_INT || !json_is_real(v))
      continue;
    double d = json_real_value(v);
    if (d > 9.2e18 || d < -9.2e18) {
      json_decref(root);
      return fail(err, fields[i].name, "\"%s\" must be between %lld and %lld", fields[i].name,
                  (long long)fields[i].min, (long long)fields[i].max);
    }
  }
  json_decref(root);
  char key[SRV_ID_MAX + 1];
  size_t pos = (size_t)jerr->position;
  if (pos <= len && key_before(body, pos, key, sizeof key))
    return fail(err, key, "\"%s\" holds a number too large (line %d, column %d)", key, jerr->line,
                jerr->column);
  return fail(err, "", "the request body holds a number too large: %s (line %d, column %d)",
              jerr->text, jerr->line, jerr->column);
}

int srv_decode_object(const char *body, size_t len, const srv_field_t *fields, size_t nfields,
                      void *out, srv_decode_err_t *err) {
  if (body == NULL || len == 0)
    return fail(err, "", "the request body must be a JSON object");
  json_error_t jerr;
  /* JSON_ALLOW_NUL: a "\u0000" inside a string is valid JSON; it is refused
   * below by the field's own check, so the message can name the field. */
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
  if (root == NULL) {
    if (json_error_code(&jerr) == json_error_out_of_memory)
      return RF_ENOMEM;
    if (json_error_code(&jerr) == json_error_numeric_overflow)
      return fail_overflow(body, len, fields, nfields, err, &jerr);
    return fail(err, "", "the request body is not valid JSON: %s (line %d, column %d)", jerr.text,
                jerr.line, jerr.column);
  }
  int rc = 0;
  if (!json_is_object(root)) {
    rc = fail(err, "", "the request body must be a JSON object");
    goto done;
  }
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    bool known = false;
    for (size_t i = 0; i < nfields && !known; i++)
      known = strcmp(fields[i].name, key) == 0;
    if (!known) {
      char name[72];
      printable(key, name, sizeof name);
      rc = fail(err, name, "unknown field \"%s\"", name);
      goto done;
    }
  }
  for (size_t i = 0; i < nfields; i++) {
    const json_t *fv = json_object_get(root, fields[i].name);
    if (fv == NULL) {
      if (fields[i].required) {
        rc = fail(err, fields[i].name, "\"%s\" is required", fields[i].name);
        goto done;
      }
      continue;
    }
    rc = decode_field(fv, &fields[i], out, err);
    if (rc != 0)
      goto done;
  }
done:
  json_decref(root);
  return rc;
}

/* ------------------------------------------------------------ the bodies */

#define NF(t) (sizeof(t) / sizeof((t)[0]))

int srv_decode_user_create(const char *body, size_t len, srv_user_create_req_t *out,
                           srv_decode_err_t *err) {
  static const srv_field_t f[] = {
      {"email", SRV_FIELD_EMAIL, offsetof(srv_user_create_req_t, email), 0, 0, true},
  };
  return srv_decode_object(body, len, f, NF(f), out, err);
}

int srv_decode_item_put(const char *body, size_t len, srv_item_put_req_t *out,
                        srv_decode_err_t *err) {
  static const srv_field_t f[] = {
      {"stock", SRV_FIELD_INT, offsetof(srv_item_put_req_t, stock), 0, SRV_AMOUNT_MAX, true},
  };
  return srv_decode_object(body, len, f, NF(f), out, err);
}

int srv_decode_purchase(const char *body, size_t len, srv_purchase_req_t *out,
                        srv_decode_err_t *err) {
  static const srv_field_t f[] = {
      {"itemId", SRV_FIELD_ID, offsetof(srv_purchase_req_t, item_id), 0, 0, true},
      {"quantity", SRV_FIELD_INT, offsetof(srv_purchase_req_t, quantity), 1, SRV_AMOUNT_MAX, true},
  };
  return srv_decode_object(body, len, f, NF(f), out, err);
}

int srv_decode_wallet_put(const char *body, size_t len, srv_wallet_put_req_t *out,
                          srv_decode_err_t *err) {
  static const srv_field_t f[] = {
      {"balance", SRV_FIELD_INT, offsetof(srv_wallet_put_req_t, balance), 0, SRV_AMOUNT_MAX, true},
  };
  return srv_decode_object(body, len, f, NF(f), out, err);
}

int srv_decode_amount(const char *body, size_t len, srv_amount_req_t *out, srv_decode_err_t *err) {
  static const srv_field_t f[] = {
      {"amount", SRV_FIELD_INT, offsetof(srv_amount_req_t, amount), 1, SRV_AMOUNT_MAX, true},
  };
  return srv_decode_object(body, len, f, NF(f), out, err);
}
