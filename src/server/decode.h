/* decode.h - untrusted request input -> validated request structs.
 *
 * Every byte a client sends passes through these pure functions before a
 * route sees it: JSON bodies, path parameters. They allocate nothing that
 * outlives the call, keep no state and never touch the network, which is
 * what lets tests/fuzz/fuzz_decode.c throw arbitrary bytes at them.
 *
 * Rules (docs/server.md, docs/http-api.md "Conventions"):
 *   - a body is one JSON object (UTF-8, no duplicate keys, no NUL);
 *     unknown fields are rejected and named;
 *   - amounts, stock and quantities are JSON integers (no fraction, no
 *     exponent) in the field's range, 1 .. 1000000000000 unless stated;
 *   - identifiers are 1-128 characters of [A-Za-z0-9._:-];
 *   - an email is trimmed, lower-cased (ASCII), has exactly one '@' with
 *     non-empty parts around it, no spaces or control characters, and is at
 *     most 254 bytes.
 *
 * Every function returns 0, or RF_EINVAL with err filled: err->field names
 * the offending field ("" for the body as a whole) and err->message is a
 * sentence for the client that names it too. RF_ENOMEM if jansson cannot
 * allocate. Thread-safe (no shared state).
 */
#ifndef RACEFREED_DECODE_H
#define RACEFREED_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRV_ID_MAX     128
#define SRV_EMAIL_MAX  254
#define SRV_AMOUNT_MAX 1000000000000ll

typedef struct srv_decode_err {
  char field[72];
  char message[320];
} srv_decode_err_t;

/* ------------------------------------------------------------ scalars */

/* srv_valid_id: true if s[0..len) is 1-128 chars of [A-Za-z0-9._:-]. */
bool srv_valid_id(const char *s, size_t len);

/* srv_decode_id: validate a NUL-terminated identifier (a path parameter
 * or a field value) and copy it into out[SRV_ID_MAX + 1]. `field` names it
 * in the message. */
int srv_decode_id(const char *s, const char *field, char out[SRV_ID_MAX + 1],
                  srv_decode_err_t *err);

/* srv_decode_user_id: a positive decimal integer without sign or leading
 * zeros, < 2^63 (users' numeric ids in /users/{id}). */
int srv_decode_user_id(const char *s, int64_t *out, srv_decode_err_t *err);

/* srv_normalize_email: trim, lower-case, check (see above) s[0..len) into
 * out[SRV_EMAIL_MAX + 1]. `field` names it in the message. */
int srv_normalize_email(const char *s, size_t len, const char *field, char out[SRV_EMAIL_MAX + 1],
                        srv_decode_err_t *err);

/* ------------------------------------------------------------ bodies */

typedef struct {
  char email[SRV_EMAIL_MAX + 1]; /* normalised */
} srv_user_create_req_t;

typedef struct {
  int64_t stock; /* 0 .. 1e12 */
} srv_item_put_req_t;

typedef struct {
  char item_id[SRV_ID_MAX + 1];
  int64_t quantity; /* 1 .. 1e12 */
} srv_purchase_req_t;

typedef struct {
  int64_t balance; /* 0 .. 1e12 */
} srv_wallet_put_req_t;

typedef struct {
  int64_t amount; /* 1 .. 1e12 */
} srv_amount_req_t;

/* POST /users {"email": e} */
int srv_decode_user_create(const char *body, size_t len, srv_user_create_req_t *out,
                           srv_decode_err_t *err);
/* PUT /inventory/items/{itemId} {"stock": s} */
int srv_decode_item_put(const char *body, size_t len, srv_item_put_req_t *out,
                        srv_decode_err_t *err);
/* POST /inventory/purchase {"itemId": i, "quantity": q} */
int srv_decode_purchase(const char *body, size_t len, srv_purchase_req_t *out,
                        srv_decode_err_t *err);
/* PUT /wallets/{userId} {"balance": b} */
int srv_decode_wallet_put(const char *body, size_t len, srv_wallet_put_req_t *out,
                          srv_decode_err_t *err);
/* POST /wallets/{userId}/withdraw|deposit {"amount": a} */
int srv_decode_amount(const char *body, size_t len, srv_amount_req_t *out, srv_decode_err_t *err);

/* ------------------------------------------------------------ the engine */

/* The table-driven decoder the functions above are built on (new routes add
 * a field table and a one-line wrapper). */
typedef enum { SRV_FIELD_ID, SRV_FIELD_EMAIL, SRV_FIELD_INT } srv_field_type_t;

typedef struct srv_field {
  const char *name;
  srv_field_type_t type;
  size_t
      offset; /* where in the output struct: char[SRV_ID_MAX+1], char[SRV_EMAIL_MAX+1], int64_t */
  int64_t min, max; /* SRV_FIELD_INT */
  bool required;
} srv_field_t;

/* srv_decode_object: parse body[0..len) as one JSON object and fill *out
 * from the fields table; optional fields absent from the body leave *out
 * untouched. */
int srv_decode_object(const char *body, size_t len, const srv_field_t *fields, size_t nfields,
                      void *out, srv_decode_err_t *err);

#endif /* RACEFREED_DECODE_H */
