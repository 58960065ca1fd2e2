/* fuzz_decode.c - libFuzzer target for racefreed's request decoding: every
 * byte a client controls (JSON bodies, path parameters, the URL path) goes
 * through these pure functions first.
 *
 * Input layout: byte 0 selects the decoder, the rest is its input. Beyond
 * "no crash, no leak, no UB" (the sanitizers' job) the target checks the
 * contract of each decoder: a success yields a value that satisfies the
 * validation rules (ids of the allowed alphabet, normalised emails, integers
 * in range); a failure yields RF_EINVAL with a non-empty, printable-ASCII
 * message (it is sent to the client inside JSON). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "racefree/errors.h"

#include "decode.h"
#include "options.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_err(int rc, const srv_decode_err_t *err) {
  if (rc == RF_ENOMEM)
    return;
  if (rc != RF_EINVAL || err->message[0] == '\0')
    abort();
  for (const char *p = err->message; *p; p++)
    if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
      abort();
}

static void check_id(const char *id) {
  if (!srv_valid_id(id, strlen(id)))
    abort();
}

static void check_email(const char *e) {
  size_t n = strlen(e), at = 0;
  if (n == 0 || n > SRV_EMAIL_MAX)
    abort();
  for (size_t i = 0; i < n; i++) {
    if ((e[i] >= 'A' && e[i] <= 'Z') || (unsigned char)e[i] <= 0x20)
      abort();
    at += e[i] == '@';
  }
  if (at != 1 || e[0] == '@' || e[n - 1] == '@')
    abort();
}

static void check_range(int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    abort();
}

static const srv_route_t routes[] = {
    {"/cache/{key}", NULL, SRV_M_GET, 0},
    {"/inventory/items/{itemId}", NULL, SRV_M_PUT, 0},
    {"/inventory/items/{itemId}", NULL, SRV_M_GET, 0},
    {"/wallets/{userId}/withdraw", NULL, SRV_M_POST, 0},
    {"/a/{x}/b/{y}/c/{z}/d/{w}", NULL, SRV_M_GET, 0},
};

static void fuzz_path(const char *s) {
  char *path = strdup(s);
  if (path == NULL)
    return;
  srv_unescape_keep(path);
  srv_match_t m;
  srv_route_result_t r =
      srv_router_match(routes, sizeof routes / sizeof routes[0], "GET", path, &m);
  if (r == SRV_ROUTE_FOUND) {
    for (size_t i = 0; i < m.nparams; i++) {
      if (m.params[i].len == 0 || memchr(m.params[i].p, '/', m.params[i].len) != NULL)
        abort();
      char *p = strndup(m.params[i].p, m.params[i].len);
      if (p == NULL)
        break;
      srv_unescape_final(p);
      char out[SRV_ID_MAX + 1];
      srv_decode_err_t err;
      int rc = srv_decode_id(p, "id", out, &err);
      if (rc == 0)
        check_id(out);
      else
        check_err(rc, &err);
      free(p);
    }
  } else if (r == SRV_ROUTE_BAD_METHOD && m.allow == 0) {
    abort();
  }
  free(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0)
    return 0;
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  srv_decode_err_t err;
  memset(&err, 0, sizeof err);
  int rc;
  switch (data[0] % 8) {
  case 0: {
    srv_user_create_req_t r;
    if ((rc = srv_decode_user_create(body, len, &r, &err)) == 0)
      check_email(r.email);
    else
      check_err(rc, &err);
    break;
  }
  case 1: {
    srv_item_put_req_t r;
    if ((rc = srv_decode_item_put(body, len, &r, &err)) == 0)
      check_range(r.stock, 0, SRV_AMOUNT_MAX);
    else
      check_err(rc, &err);
    break;
  }
  case 2: {
    srv_purchase_req_t r;
    if ((rc = srv_decode_purchase(body, len, &r, &err)) == 0) {
      check_id(r.item_id);
      check_range(r.quantity, 1, SRV_AMOUNT_MAX);
    } else {
      check_err(rc, &err);
    }
    break;
  }
  case 3: {
    srv_wallet_put_req_t r;
    if ((rc = srv_decode_wallet_put(body, len, &r, &err)) == 0)
      check_range(r.balance, 0, SRV_AMOUNT_MAX);
    else
      check_err(rc, &err);
    break;
  }
  case 4: {
    srv_amount_req_t r;
    if ((rc = srv_decode_amount(body, len, &r, &err)) == 0)
      check_range(r.amount, 1, SRV_AMOUNT_MAX);
    else
      check_err(rc, &err);
    break;
  }
  default: {
    /* NUL-terminated views: path parameters, URL paths, option values */
    char *s = malloc(len + 1);
    if (s == NULL)
      return 0;
    memcpy(s, body, len);
    s[len] = '\0';
    if (data[0] % 8 == 5) {
      fuzz_path(s);
      int64_t id;
      if ((rc = srv_decode_user_id(s, &id, &err)) == 0)
        check_range(id, 1, INT64_MAX);
      else
        check_err(rc, &err);
    } else if (data[0] % 8 == 6) {
      char out[SRV_EMAIL_MAX + 1];
      if ((rc = srv_normalize_email(s, strlen(s), "email", out, &err)) == 0)
        check_email(out);
      else
        check_err(rc, &err);
    } else {
      srv_options_t o;
      srv_options_defaults(&o);
      char msg[512];
      char *eq = strchr(s, '=');
      if (eq != NULL) {
        *eq = '\0';
        (void)srv_options_set(&o, s, eq + 1, msg, sizeof msg);
      }
    }
    free(s);
    break;
  }
  }
  return 0;
}
