/* users.c - "Race Condition #1: Check-Then-Act".
 *
 * POST /users {"email":e}  201 {"id":n,"email":e'} (e' trimmed, lower-case);
 *                          409 conflict when that email exists.
 * GET /users/{id}          200 {"id":n,"email":e} or 404.
 *
 * Safe (the article's fix): no "does it exist?" question at all. After the
 * simulated round trip (--db-latency-ms) the handler INSERTs and lets the
 * unique index on users.email decide: of N concurrent sign-ups with one
 * address exactly one insert succeeds, the others get a unique violation
 * (RF_EEXIST) and answer 409. Waiting is a timer, never a blocked thread.
 */
#include "routes.h"

typedef struct {
  srv_user_create_req_t req;
  int64_t id; /* the new user's id */
} create_state_t;

enum { ST_START = 0, ST_WRITE = 1, ST_DONE = 2, ST_CHECK = 3 };

/* On the writer: the unique index decides. */
static int create_work(rf_store_t *s, void *state) {
  create_state_t *st = state;
  return rf_store_user_create(s, st->req.email, &st->id);
}

static void reply_user(srv_rq_t *rq, unsigned status, int64_t id, const char *email) {
  srv_rq_reply_json(rq, status, json_pack("{s:I,s:s}", "id", (json_int_t)id, "email", email));
}

static void create_safe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  create_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  switch (srv_rq_stage(rq)) {
  case ST_START: {
    size_t len;
    const char *body = srv_rq_body(rq, &len);
    srv_decode_err_t err;
    int rc = srv_decode_user_create(body, len, &st->req, &err);
    if (rc != 0) {
      srv_rq_reply_decode_error(rq, rc, &err);
      return;
    }
    srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE);
    return;
  }
  case ST_WRITE:
    srv_rq_store(rq, RF_STORE_WRITE, create_work, ST_DONE);
    return;
  default: {
    int rc = srv_rq_store_rc(rq);
    if (rc == RF_EEXIST)
      srv_rq_reply_error(rq, 409, "conflict", "a user with email %s exists", st->req.email);
    else if (rc != 0)
      srv_rq_reply_status(rq, rc, "users");
    else
      reply_user(rq, 201, st->id, st->req.email);
    return;
  }
  }
}

typedef struct {
  int64_t id;
  int unchecked;
  char email[RF_STORE_EMAIL_MAX + 1];
} get_state_t;

static int get_work(rf_store_t *s, void *state) {
  get_state_t *st = state;
  return st->unchecked ? rf_store_user_get_unchecked(s, st->id, st->email, sizeof st->email)
                       : rf_store_user_get(s, st->id, st->email, sizeof st->email);
}

static void get_common(srv_rq_t *rq, int unchecked) {
  get_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_START) {
    srv_decode_err_t err;
    int rc = srv_decode_user_id(srv_rq_param(rq, 0), &st->id, &err);
    if (rc != 0) {
      srv_rq_reply_decode_error(rq, rc, &err);
      return;
    }
    st->unchecked = unchecked;
    srv_rq_store(rq, RF_STORE_READ, get_work, ST_DONE);
    return;
  }
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ENOENT)
    srv_rq_reply_error(rq, 404, "not_found", "no user with id %lld", (long long)st->id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "users");
  else
    reply_user(rq, 200, st->id, st->email);
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   exists = find(email); if (exists) 409;   // check
 *   ...await...                              // another request checks here
 *   insert(email)                            // act: a duplicate
 *
 * It works on a separate table without the unique index (users_unchecked),
 * so N concurrent sign-ups that all pass the check before the first insert
 * all get 201, and N rows share one address. Same simulated delay as the
 * safe handler, between the check and the act. */
typedef struct {
  srv_user_create_req_t req;
  int64_t id;
  int found;
} naive_state_t;

static int naive_find_work(rf_store_t *s, void *state) {
  naive_state_t *st = state;
  return rf_store_user_find_unchecked(s, st->req.email, &st->found);
}

static int naive_insert_work(rf_store_t *s, void *state) {
  naive_state_t *st = state;
  return rf_store_user_insert_unchecked(s, st->req.email, &st->id);
}

static void create_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  naive_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  switch (srv_rq_stage(rq)) {
  case ST_START: {
    size_t len;
    const char *body = srv_rq_body(rq, &len);
    srv_decode_err_t err;
    int rc = srv_decode_user_create(body, len, &st->req, &err);
    if (rc != 0) {
      srv_rq_reply_decode_error(rq, rc, &err);
      return;
    }
    srv_rq_store(rq, RF_STORE_READ, naive_find_work, ST_CHECK); /* check */
    return;
  }
  case ST_CHECK: {
    int rc = srv_rq_store_rc(rq);
    if (rc != 0) {
      srv_rq_reply_status(rq, rc, "users");
      return;
    }
    if (st->found) {
      srv_rq_reply_error(rq, 409, "conflict", "a user with email %s exists", st->req.email);
      return;
    }
    srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE); /* the window */
    return;
  }
  case ST_WRITE:
    srv_rq_store(rq, RF_STORE_WRITE, naive_insert_work, ST_DONE); /* act */
    return;
  default: {
    int rc = srv_rq_store_rc(rq);
    if (rc != 0)
      srv_rq_reply_status(rq, rc, "users");
    else
      reply_user(rq, 201, st->id, st->req.email);
    return;
  }
  }
}

/* ---- dispatch ---- */

void h_users_create(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    create_unsafe(rq);
  else
    create_safe(rq);
}

void h_users_get(srv_rq_t *rq) {
  get_common(rq, srv_rq_app(rq)->opts->unsafe);
}
