/* wallets.c - "Pattern 1: Optimistic Locking".
 *
 * PUT  /wallets/{userId} {"balance":b}          200 {"userId":u,"balance":b,"version":v}
 * GET  /wallets/{userId}                        200 {...} or 404
 * POST /wallets/{userId}/withdraw {"amount":a}  200 {...}; 409 insufficient_funds;
 *                                               503 contention (+ Retry-After)
 * POST /wallets/{userId}/deposit  {"amount":a}  as withdraw, adding (409 balance_limit
 *                                               above 10^15)
 *
 * Safe: read (balance, version); check; after the simulated work
 * (--db-latency-ms) write with a version check:
 *   UPDATE wallets SET balance = b', version = version + 1
 *    WHERE user_id = u AND version = v
 * If another request wrote in between, the version moved on, the UPDATE
 * touches nothing (RF_ECONFLICT), and the whole read-check-write starts
 * again after a backoff with full jitter (rf_retry_next: uniform in
 * [0, min(500, 10 * 2^attempt)] ms), at most --occ-retries times; then 503
 * contention with Retry-After. The backoff is a timer, not a sleeping
 * thread: the handler is a small state machine (START -> READ -> WRITE ->
 * READ ...). Invariants: the balance is never negative, it equals the
 * initial balance plus the 200-answered deposits minus the 200-answered
 * withdrawals, and each successful write raises the version by exactly one.
 */
#include "racefree/retry.h"

#include "routes.h"

#define BALANCE_LIMIT 1000000000000000ll /* 10^15: exact in a JSON double */
#define RETRY_BASE_MS 10
#define RETRY_CAP_MS  500

enum { ST_START = 0, ST_READ = 1, ST_WRITE = 2, ST_CHECK = 3, ST_DONE = 4 };

typedef struct {
  char user[SRV_ID_MAX + 1];
  int64_t amount; /* signed: negative withdraws */
  int64_t balance_read, version_read, balance_new, version_new;
  rf_retry_t retry;
} move_state_t;

/* PUT and GET: the database work runs on the store's executor. */
typedef struct {
  char user[SRV_ID_MAX + 1];
  int64_t balance, version;
} wallet_state_t;

static int wallet_put_work(rf_store_t *s, void *state) {
  wallet_state_t *st = state;
  return rf_store_wallet_put(s, st->user, st->balance, &st->version);
}

static int wallet_get_work(rf_store_t *s, void *state) {
  wallet_state_t *st = state;
  return rf_store_wallet_get(s, st->user, &st->balance, &st->version);
}

static int move_read_work(rf_store_t *s, void *state) {
  move_state_t *st = state;
  return rf_store_wallet_get(s, st->user, &st->balance_read, &st->version_read);
}

/* On the writer: the version check and the write in one statement. */
static int move_cas_work(rf_store_t *s, void *state) {
  move_state_t *st = state;
  return rf_store_wallet_cas(s, st->user, st->version_read, st->balance_new, &st->version_new);
}

static void reply_wallet(srv_rq_t *rq, const char *user, int64_t balance, int64_t version) {
  srv_rq_reply_json(rq, 200,
                    json_pack("{s:s,s:I,s:I}", "userId", user, "balance", (json_int_t)balance,
                              "version", (json_int_t)version));
}

static void reply_not_found(srv_rq_t *rq, const char *user) {
  srv_rq_reply_error(rq, 404, "not_found", "no wallet for user %s", user);
}

static void wallet_answer(srv_rq_t *rq, const wallet_state_t *st) {
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ENOENT)
    reply_not_found(rq, st->user);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "wallets");
  else
    reply_wallet(rq, st->user, st->balance, st->version);
}

void h_wallet_put(srv_rq_t *rq) {
  wallet_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    wallet_answer(rq, st);
    return;
  }
  srv_wallet_put_req_t req;
  srv_decode_err_t err;
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  int rc = srv_decode_id(srv_rq_param(rq, 0), "userId", st->user, &err);
  if (rc == 0)
    rc = srv_decode_wallet_put(body, len, &req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  st->balance = req.balance;
  srv_rq_store(rq, RF_STORE_WRITE, wallet_put_work, ST_DONE);
}

void h_wallet_get(srv_rq_t *rq) {
  wallet_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    wallet_answer(rq, st);
    return;
  }
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "userId", st->user, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  srv_rq_store(rq, RF_STORE_READ, wallet_get_work, ST_DONE);
}

/* START: decode path and body into the state. NULL when answered. */
static move_state_t *move_decode(srv_rq_t *rq, int sign) {
  move_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  srv_amount_req_t req;
  srv_decode_err_t err;
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  int rc = srv_decode_id(srv_rq_param(rq, 0), "userId", st->user, &err);
  if (rc == 0)
    rc = srv_decode_amount(body, len, &req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return NULL;
  }
  st->amount = sign * req.amount;
  return st;
}

/* The check after the read (rc: the read's result), shared by both
 * handlers. 0: st->balance_new is set; otherwise answered. */
static int move_check(srv_rq_t *rq, move_state_t *st, int rc) {
  if (rc == RF_ENOENT) {
    reply_not_found(rq, st->user);
    return rc;
  }
  if (rc != 0) {
    srv_rq_reply_status(rq, rc, "wallets");
    return rc;
  }
  st->balance_new = st->balance_read + st->amount;
  if (st->balance_new < 0) {
    srv_rq_reply_error(rq, 409, "insufficient_funds", "wallet %s holds %lld, less than %lld",
                       st->user, (long long)st->balance_read, (long long)-st->amount);
    return RF_ECONFLICT;
  }
  if (st->balance_new > BALANCE_LIMIT) {
    srv_rq_reply_error(rq, 409, "balance_limit", "wallet %s would exceed %lld", st->user,
                       (long long)BALANCE_LIMIT);
    return RF_ERANGE;
  }
  return 0;
}

static void move_safe(srv_rq_t *rq, int sign) {
  srv_app_t *app = srv_rq_app(rq);
  move_state_t *st;
  switch (srv_rq_stage(rq)) {
  case ST_START: {
    st = move_decode(rq, sign);
    if (st == NULL)
      return;
    rf_retry_policy_t pol = {.max_attempts = (unsigned)app->opts->occ_retries + 1,
                             .base_ms = RETRY_BASE_MS,
                             .cap_ms = RETRY_CAP_MS};
    int rc = rf_retry_init(&st->retry, &pol);
    if (rc != 0) {
      srv_rq_reply_status(rq, rc, "wallets");
      return;
    }
    srv_rq_after(rq, 0, ST_READ);
    return;
  }
  case ST_READ:
    srv_rq_store(rq, RF_STORE_READ, move_read_work, ST_CHECK);
    return;
  case ST_CHECK:
    st = srv_rq_state(rq, sizeof *st);
    if (move_check(rq, st, srv_rq_store_rc(rq)) == 0)
      srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE);
    return;
  case ST_WRITE:
    srv_rq_store(rq, RF_STORE_WRITE, move_cas_work, ST_DONE);
    return;
  default: {
    st = srv_rq_state(rq, sizeof *st);
    int rc = srv_rq_store_rc(rq);
    if (rc == 0) {
      reply_wallet(rq, st->user, st->balance_new, st->version_new);
      return;
    }
    if (rc == RF_ENOENT) {
      reply_not_found(rq, st->user);
      return;
    }
    if (rc != RF_ECONFLICT) {
      srv_rq_reply_status(rq, rc, "wallets");
      return;
    }
    uint64_t delay = 0; /* somebody wrote in between: back off, then re-read */
    if (rf_retry_next(&st->retry, &delay) != 0) {
      srv_rq_header(rq, "Retry-After", "1");
      srv_rq_reply_error(rq, 503, "contention",
                         "wallet %s: still conflicting after %u attempts, retry later", st->user,
                         st->retry.policy.max_attempts);
      return;
    }
    srv_rq_after(rq, delay, ST_READ);
    return;
  }
  }
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   user = findOne(id); if (user.balance < amount) 409;   // read, check
 *   ...await...                                          // others read too
 *   user.balance -= amount; save(user)  // no version check: last write wins
 *
 * Two concurrent withdrawals of 60 from 100 both read 100, both pass, both
 * write 40 and both answer 200: 120 paid out, 60 taken. */
static int naive_set_work(rf_store_t *s, void *state) {
  move_state_t *st = state;
  return rf_store_wallet_set(s, st->user, st->balance_new, &st->version_new);
}

static void move_unsafe(srv_rq_t *rq, int sign) {
  srv_app_t *app = srv_rq_app(rq);
  move_state_t *st;
  switch (srv_rq_stage(rq)) {
  case ST_START:
    st = move_decode(rq, sign);
    if (st != NULL)
      srv_rq_store(rq, RF_STORE_READ, move_read_work, ST_CHECK); /* read */
    return;
  case ST_CHECK:
    st = srv_rq_state(rq, sizeof *st);
    if (move_check(rq, st, srv_rq_store_rc(rq)) == 0)       /* check */
      srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE); /* the window */
    return;
  case ST_WRITE:
    srv_rq_store(rq, RF_STORE_WRITE, naive_set_work, ST_DONE); /* blind write */
    return;
  default:
    st = srv_rq_state(rq, sizeof *st);
    int rc = srv_rq_store_rc(rq);
    if (rc == RF_ENOENT)
      reply_not_found(rq, st->user);
    else if (rc != 0)
      srv_rq_reply_status(rq, rc, "wallets");
    else
      reply_wallet(rq, st->user, st->balance_new, st->version_new);
    return;
  }
}

/* ---- dispatch ---- */

void h_wallet_withdraw(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    move_unsafe(rq, -1);
  else
    move_safe(rq, -1);
}

void h_wallet_deposit(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    move_unsafe(rq, 1);
  else
    move_safe(rq, 1);
}
