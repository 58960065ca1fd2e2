/* inventory.c - "Race Condition #2: Read-Modify-Write".
 *
 * PUT  /inventory/items/{itemId} {"stock":s}   200 {"itemId":i,"stock":s}
 * GET  /inventory/items/{itemId}               200 {"itemId":i,"stock":s} or 404
 * POST /inventory/purchase {"itemId":i,"quantity":q}
 *      200 {"success":true,"itemId":i,"stock":remaining}; 409 out_of_stock; 404
 *
 * Safe (the article's fix): after the simulated round trip, ONE conditional
 * statement, UPDATE items SET stock = stock - q WHERE id = i AND stock >= q.
 * The database evaluates the check and the write atomically, so stock never
 * goes below zero and the quantities sold add up exactly to the stock
 * removed, whatever the concurrency (threads, processes).
 */
#include "routes.h"

enum { ST_START = 0, ST_WRITE = 1, ST_DONE = 2, ST_CHECK = 3 };

static void reply_item(srv_rq_t *rq, const char *item, int64_t stock) {
  srv_rq_reply_json(rq, 200, json_pack("{s:s,s:I}", "itemId", item, "stock", (json_int_t)stock));
}

static void reply_not_found(srv_rq_t *rq, const char *item) {
  srv_rq_reply_error(rq, 404, "not_found", "no item %s", item);
}

/* PUT and GET of one item: the database work runs on the store's
 * executor (the writer for PUT), the answer in the next stage. */
typedef struct {
  char item[SRV_ID_MAX + 1];
  int64_t stock;
} item_state_t;

static int item_put_work(rf_store_t *s, void *state) {
  item_state_t *st = state;
  return rf_store_item_put(s, st->item, st->stock);
}

static int item_get_work(rf_store_t *s, void *state) {
  item_state_t *st = state;
  return rf_store_item_get(s, st->item, &st->stock);
}

static void item_answer(srv_rq_t *rq, const item_state_t *st) {
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ENOENT)
    reply_not_found(rq, st->item);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_item(rq, st->item, st->stock);
}

void h_item_put(srv_rq_t *rq) {
  item_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    item_answer(rq, st);
    return;
  }
  srv_decode_err_t err;
  srv_item_put_req_t req;
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  int rc = srv_decode_id(srv_rq_param(rq, 0), "itemId", st->item, &err);
  if (rc == 0)
    rc = srv_decode_item_put(body, len, &req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  st->stock = req.stock;
  srv_rq_store(rq, RF_STORE_WRITE, item_put_work, ST_DONE);
}

void h_item_get(srv_rq_t *rq) {
  item_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (srv_rq_stage(rq) == ST_DONE) {
    item_answer(rq, st);
    return;
  }
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "itemId", st->item, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  srv_rq_store(rq, RF_STORE_READ, item_get_work, ST_DONE);
}

static void reply_purchased(srv_rq_t *rq, const char *item, int64_t remaining) {
  srv_rq_reply_json(
      rq, 200,
      json_pack("{s:b,s:s,s:I}", "success", 1, "itemId", item, "stock", (json_int_t)remaining));
}

static void reply_out_of_stock(srv_rq_t *rq, const srv_purchase_req_t *req) {
  srv_rq_reply_error(rq, 409, "out_of_stock", "item %s has fewer than %lld in stock", req->item_id,
                     (long long)req->quantity);
}

typedef struct {
  srv_purchase_req_t req;
  int64_t stock_read; /* naive handler only: the stock it read */
  int64_t remaining;  /* the stock after the purchase */
} purchase_state_t;

/* On the writer: the check and the write in one statement. */
static int purchase_work(rf_store_t *s, void *state) {
  purchase_state_t *st = state;
  return rf_store_item_purchase(s, st->req.item_id, st->req.quantity, &st->remaining);
}

static void purchase_answer(srv_rq_t *rq, purchase_state_t *st) {
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ECONFLICT)
    reply_out_of_stock(rq, &st->req);
  else if (rc == RF_ENOENT)
    reply_not_found(rq, st->req.item_id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_purchased(rq, st->req.item_id, st->remaining);
}

/* Stage 0 of both handlers: decode into the per-request state. */
static purchase_state_t *purchase_decode(srv_rq_t *rq) {
  purchase_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  srv_decode_err_t err;
  int rc = srv_decode_purchase(body, len, &st->req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return NULL;
  }
  return st;
}

static void purchase_safe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  if (srv_rq_stage(rq) == ST_START) {
    if (purchase_decode(rq) != NULL)
      srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE);
    return;
  }
  purchase_state_t *st = srv_rq_state(rq, sizeof *st);
  if (srv_rq_stage(rq) == ST_DONE) {
    purchase_answer(rq, st);
    return;
  }
  /* The check and the write in one statement: nobody can act in between.
   * It runs on the database's writer; this thread serves others meanwhile. */
  srv_rq_store(rq, RF_STORE_WRITE, purchase_work, ST_DONE);
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   item = findOne(id); if (item.stock < q) 409;   // read, check
 *   ...await...                                   // others read the same stock
 *   item.stock -= q; save(item);                  // blind write
 *
 * With stock 10 and 20 concurrent purchases of 1, all 20 read 10, all pass
 * the check, all write 9: twenty items sold, one removed from stock. */
static int naive_read_work(rf_store_t *s, void *state) {
  purchase_state_t *st = state;
  return rf_store_item_get(s, st->req.item_id, &st->stock_read);
}

static int naive_write_work(rf_store_t *s, void *state) {
  purchase_state_t *st = state;
  return rf_store_item_set_stock(s, st->req.item_id, st->remaining);
}

static void purchase_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  if (srv_rq_stage(rq) == ST_START) {
    purchase_state_t *st = purchase_decode(rq);
    if (st == NULL)
      return;
    srv_rq_store(rq, RF_STORE_READ, naive_read_work, ST_CHECK); /* read */
    return;
  }
  if (srv_rq_stage(rq) == ST_CHECK) {
    purchase_state_t *st = srv_rq_state(rq, sizeof *st);
    int rc = srv_rq_store_rc(rq);
    if (rc == RF_ENOENT)
      reply_not_found(rq, st->req.item_id);
    else if (rc != 0)
      srv_rq_reply_status(rq, rc, "inventory");
    else if (st->stock_read < st->req.quantity) /* check */
      reply_out_of_stock(rq, &st->req);
    else
      srv_rq_after(rq, app->opts->db_latency_ms, ST_WRITE); /* the window */
    return;
  }
  purchase_state_t *st = srv_rq_state(rq, sizeof *st);
  if (srv_rq_stage(rq) == ST_DONE) {
    purchase_answer(rq, st);
    return;
  }
  st->remaining = st->stock_read - st->req.quantity;
  srv_rq_store(rq, RF_STORE_WRITE, naive_write_work, ST_DONE); /* blind write */
}

/* ---- dispatch ---- */

void h_purchase(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    purchase_unsafe(rq);
  else
    purchase_safe(rq);
}
