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

enum { ST_START = 0, ST_WRITE = 1 };

static void reply_item(srv_rq_t *rq, const char *item, int64_t stock) {
  srv_rq_reply_json(rq, 200, json_pack("{s:s,s:I}", "itemId", item, "stock", (json_int_t)stock));
}

static void reply_not_found(srv_rq_t *rq, const char *item) {
  srv_rq_reply_error(rq, 404, "not_found", "no item %s", item);
}

void h_item_put(srv_rq_t *rq) {
  char item[SRV_ID_MAX + 1];
  srv_decode_err_t err;
  srv_item_put_req_t req;
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  int rc = srv_decode_id(srv_rq_param(rq, 0), "itemId", item, &err);
  if (rc == 0)
    rc = srv_decode_item_put(body, len, &req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  rc = rf_store_item_put(srv_rq_app(rq)->store, item, req.stock);
  if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_item(rq, item, req.stock);
}

void h_item_get(srv_rq_t *rq) {
  char item[SRV_ID_MAX + 1];
  srv_decode_err_t err;
  int rc = srv_decode_id(srv_rq_param(rq, 0), "itemId", item, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return;
  }
  int64_t stock = 0;
  rc = rf_store_item_get(srv_rq_app(rq)->store, item, &stock);
  if (rc == RF_ENOENT)
    reply_not_found(rq, item);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_item(rq, item, stock);
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
} purchase_state_t;

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
  int64_t remaining = 0;
  /* The check and the write in one statement: nobody can act in between. */
  int rc = rf_store_item_purchase(app->store, st->req.item_id, st->req.quantity, &remaining);
  if (rc == RF_ECONFLICT)
    reply_out_of_stock(rq, &st->req);
  else if (rc == RF_ENOENT)
    reply_not_found(rq, st->req.item_id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_purchased(rq, st->req.item_id, remaining);
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   item = findOne(id); if (item.stock < q) 409;   // read, check
 *   ...await...                                   // others read the same stock
 *   item.stock -= q; save(item);                  // blind write
 *
 * With stock 10 and 20 concurrent purchases of 1, all 20 read 10, all pass
 * the check, all write 9: twenty items sold, one removed from stock. */
static void purchase_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  if (srv_rq_stage(rq) == ST_START) {
    purchase_state_t *st = purchase_decode(rq);
    if (st == NULL)
      return;
    int rc = rf_store_item_get(app->store, st->req.item_id, &st->stock_read); /* read */
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
  int64_t remaining = st->stock_read - st->req.quantity;
  int rc = rf_store_item_set_stock(app->store, st->req.item_id, remaining); /* blind write */
  if (rc == RF_ENOENT)
    reply_not_found(rq, st->req.item_id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "inventory");
  else
    reply_purchased(rq, st->req.item_id, remaining);
}

/* ---- dispatch ---- */

void h_purchase(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    purchase_unsafe(rq);
  else
    purchase_safe(rq);
}
