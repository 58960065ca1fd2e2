/* payments.c - "The Idempotent Payment" and "Distributed Locks with Redis".
 *
 * POST /payments {"paymentId":p,"amount":a}
 *     201 {"paymentId":p,"amount":a,"status":"succeeded","chargeId":c}
 *     402 payment_declined (ids starting "decline-": the processor declines)
 *     409 payment_in_progress + Retry-After (another request holds it)
 *     422 idempotency_mismatch (p was first requested with another amount)
 *     A repeat after completion replays the stored status and body with
 *     Idempotent-Replayed: true (declines too).
 * GET /payments/{paymentId}   200 {"paymentId","amount","status"[,"chargeId"]} or 404
 * GET /charges?paymentId=p    200 {"paymentId":p,"count":n,"total":t}: the
 *     processor's ledger: calls made for p (charges and declines), amount taken
 *
 * Invariant: the processor is called exactly once per payment id, across
 * threads, server processes sharing the database, and restarts - including
 * a server killed in the middle of a charge. docs/payments.md has the full
 * protocol and the recovery rule; the request is a small state machine:
 *
 *   START    rf_store_payment_begin: the idempotency claim, one write
 *            transaction (INSERT ... ON CONFLICT DO NOTHING). It answers
 *            422, a replay or 409 at once, or hands this request the lease
 *            with a fencing token (a new record: token 1; a record whose
 *            holder's lease expired - it crashed or stalled - taken over by
 *            compare-and-set: token + 1, and the ledger's charge, if one was
 *            made, so that recovery finishes with it instead of charging).
 *   LOCKED   the keyed mutex "payment:<id>" of this process is ours (at
 *            once by trylock, or later through rf_kmutex_lock_cb when a
 *            stale holder of this very process still runs: no thread
 *            waits), then the lock service's lease (lock.h): a memory
 *            one per process, or with --redis the shared Redis one
 *            (app->redis), taken before START so that a Redis outage
 *            fails the request closed before anything is claimed. Then the
 *            request travels to the processor: half the charge latency.
 *
 * Which token fences the ledger: the store's lease generation (1, then +1
 * per takeover), not the Redis lock's token. Both are strictly increasing
 * per payment id, but a takeover raises the ledger's fence to the new
 * generation inside the claim transaction (that is what stops a paused
 * holder whose lease ran out); a Redis token (microseconds since the
 * epoch) is always larger than any generation, so a stale holder carrying
 * one would pass that fence. The generation lives in the same database as
 * the ledger, so it is as shared as the Redis token and needs no clock.
 * The Redis lease keeps instances from running the claim for one id at the
 * same time (409 at once instead of a database round trip per contender).
 *   CHARGE   the processor charges: rf_store_charge_record, fenced by the
 *            token (a holder older than one the ledger has seen gets
 *            RF_ESTALE and does not charge). The answer travels back: the
 *            other half of the latency.
 *   FINISH   rf_store_payment_finish, fenced by the token; release the
 *            locks; answer.
 * The waits are timers (the connection is suspended), never a sleeping
 * HTTP thread.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "racefree/kmutex.h"
#include "racefree/lock.h"

#include "routes.h"

enum {
  ST_START = 0,
  ST_LOCKED = 1,
  ST_CHARGE = 2,
  ST_FINISH = 3,
  /* after the store's executor ran the step's database work */
  ST_BEGUN = 4,    /* payment_begin */
  ST_CHARGED = 5,  /* charge_record */
  ST_FINISHED = 6, /* payment_finish */
  ST_CURRENT = 7,  /* payment_get, after losing a fenced write */
};

static rf_kmutex_t *g_km;          /* per-process: one charge per id at a time */
static rf_lock_t *g_lock;          /* lock.h service: app->redis, or a memory one */
static bool g_own_lock;            /* g_lock is ours (memory), not app->redis */
static char g_owner[96];           /* this process, as the lease owner in the store */
static uint64_t g_lease_ms;        /* the payment lease (see payments_init) */
static rf_lock_opts_t g_lock_opts; /* try-lock, TTL = the payment lease */

typedef struct {
  char id[SRV_ID_MAX + 1];
  char key[SRV_ID_MAX + 16]; /* "payment:<id>" */
  int64_t amount;
  int declined; /* "decline-" ids */
  uint64_t token;
  int lock_status; /* rf_kmutex_lock_cb's answer */
  unsigned next;   /* the stage pay_after continues at */
  bool have_kmutex, have_lease;
  bool replayed; /* finish: the answer is a replay of an earlier charge */
  rf_lock_lease_t lease;
  rf_charge_t charge;
  char fpr[48];     /* the request's fingerprint, for payment_begin */
  rf_payment_t rec; /* payment_begin's or payment_get's record */
  char *body;       /* finish: the outcome's answer (malloc'd) */
  int status;       /* finish: its status */
} pay_t;

typedef struct {
  char payment_id[SRV_ID_MAX + 1];
  int64_t amount;
} pay_req_t;

/* ------------------------------------------------------------ helpers */

static bool is_decline(const char *id) {
  return strncmp(id, "decline-", 8) == 0;
}

static pay_t *pay_decode(srv_rq_t *rq) {
  static const srv_field_t f[] = {
      {"paymentId", SRV_FIELD_ID, offsetof(pay_req_t, payment_id), 0, 0, true},
      {"amount", SRV_FIELD_INT, offsetof(pay_req_t, amount), 1, SRV_AMOUNT_MAX, true},
  };
  pay_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  pay_req_t req;
  srv_decode_err_t err;
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  int rc = srv_decode_object(body, len, f, sizeof f / sizeof f[0], &req, &err);
  if (rc != 0) {
    srv_rq_reply_decode_error(rq, rc, &err);
    return NULL;
  }
  memcpy(st->id, req.payment_id, sizeof st->id);
  snprintf(st->key, sizeof st->key, "payment:%s", st->id);
  st->amount = req.amount;
  st->declined = is_decline(st->id);
  return st;
}

/* The answer of an outcome, as JSON text (what is stored and replayed).
 * NULL when out of memory. */
static char *outcome_body(const char *id, int64_t amount, const rf_charge_t *ch, int *status) {
  json_t *v;
  if (ch->declined) {
    char msg[SRV_ID_MAX + 64];
    snprintf(msg, sizeof msg, "payment %s was declined by the card processor", id);
    *status = 402;
    v = json_pack("{s:{s:s,s:s}}", "error", "code", "payment_declined", "message", msg);
  } else {
    *status = 201;
    v = json_pack("{s:s,s:I,s:s,s:s}", "paymentId", id, "amount", (json_int_t)amount, "status",
                  "succeeded", "chargeId", ch->charge_id);
  }
  char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
  json_decref(v);
  return text;
}

static void reply_stored(srv_rq_t *rq, int status, const char *body, bool replayed) {
  if (replayed)
    srv_rq_header(rq, "Idempotent-Replayed", "true");
  srv_rq_reply_raw(rq, (unsigned)status, "application/json", body, strlen(body));
}

static void reply_in_progress(srv_rq_t *rq, const char *id) {
  srv_rq_header(rq, "Retry-After", "1");
  srv_rq_reply_error(rq, 409, "payment_in_progress",
                     "payment %s is being processed by another request; retry later", id);
}

/* The database work of each step; each runs on the store's executor
 * (the writes on the database's writer) with the request's pay_t. */
static int begin_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_payment_begin(s, st->id, st->amount, st->fpr, g_lease_ms, g_owner, &st->rec);
}

static int charge_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_charge_record(s, st->id, st->amount, st->declined, st->token, &st->charge);
}

static int finish_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_payment_finish(s, st->id, st->token, st->charge.declined, st->status,
                                 st->charge.declined ? "" : st->charge.charge_id, st->body);
}

static int current_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_payment_get(s, st->id, &st->rec);
}

/* Answer from the record as it stands (after losing a fenced write: the
 * current holder decides): read it, then current_answer. */
static void reply_current(srv_rq_t *rq) {
  srv_rq_store(rq, RF_STORE_READ, current_work, ST_CURRENT);
}

static void current_answer(srv_rq_t *rq, pay_t *st) {
  int rc = srv_rq_store_rc(rq);
  if (rc == 0 && st->rec.claim == RF_PAY_DONE)
    reply_stored(rq, st->rec.http_status, st->rec.body, true);
  else if (rc == 0)
    reply_in_progress(rq, st->id);
  else
    srv_rq_reply_status(rq, rc, "payments");
}

static void release_locks(pay_t *st) {
  if (st->have_lease) {
    rf_lock_release(g_lock, &st->lease); /* RF_ESTATE: it expired; the fence covered us */
    st->have_lease = false;
  }
  if (st->have_kmutex) {
    st->have_kmutex = false;
    rf_kmutex_unlock(g_km, st->key); /* may grant the next waiter on this thread */
  }
}

static void on_wake(void *arg) { /* timer thread */
  srv_rq_t *rq = arg;
  pay_t *st = srv_rq_state(rq, sizeof *st);
  srv_rq_wake(rq, st->next);
}

/* Continue at `stage` after ms without blocking (srv_rq_after, except that
 * a refused timer releases the locks before answering). The caller must
 * return right after. */
static void pay_after(srv_rq_t *rq, pay_t *st, uint64_t ms, unsigned stage) {
  if (ms == 0) {
    srv_rq_after(rq, 0, stage);
    return;
  }
  st->next = stage;
  srv_rq_suspend(rq);
  int rc = rf_timer_after(srv_rq_app(rq)->timer, ms, on_wake, rq, NULL);
  if (rc != 0) {
    release_locks(st);
    srv_rq_reply_status(rq, rc == RF_ENOMEM ? rc : RF_ESHUTDOWN, "payments");
  }
}

/* Store the outcome under our token (finish_work), then finished. */
static void finish(srv_rq_t *rq, pay_t *st, bool replayed) {
  st->replayed = replayed;
  st->body = outcome_body(st->id, st->amount, &st->charge, &st->status);
  if (st->body == NULL) {
    release_locks(st);
    srv_rq_reply_nomem(rq);
    return;
  }
  srv_rq_store(rq, RF_STORE_WRITE, finish_work, ST_FINISHED);
}

static void finished(srv_rq_t *rq, pay_t *st) {
  int rc = srv_rq_store_rc(rq);
  char *body = st->body;
  st->body = NULL;
  release_locks(st);
  if (rc == 0)
    reply_stored(rq, st->status, body, st->replayed);
  else if (rc == RF_ESTALE)
    reply_current(rq); /* our lease was taken over: the new holder answers */
  else
    srv_rq_reply_status(rq, rc, "payments");
  free(body);
}

/* ------------------------------------------------------------ safe */

static void locked(srv_rq_t *rq, pay_t *st) {
  if (st->lock_status != 0) { /* waited a whole lease for a stale holder */
    release_locks(st);
    reply_in_progress(rq, st->id);
    return;
  }
  st->have_kmutex = true;
  int rc = st->have_lease ? 0 : rf_lock_acquire(g_lock, st->key, &g_lock_opts, &st->lease);
  if (rc != 0) {
    release_locks(st);
    if (rc == RF_EBUSY || rc == RF_ETIMEDOUT)
      reply_in_progress(rq, st->id);
    else
      srv_rq_reply_status(rq, rc, "payments lock"); /* RF_EUNAVAIL: 503, fail closed */
    return;
  }
  st->have_lease = true;
  uint64_t latency = srv_rq_app(rq)->opts->charge_latency_ms;
  pay_after(rq, st, latency / 2, ST_CHARGE); /* the request travels to the processor */
}

static void on_kmutex(int status, void *arg) { /* the unlocker's or the timer's thread */
  srv_rq_t *rq = arg;
  pay_t *st = srv_rq_state(rq, sizeof *st);
  st->lock_status = status;
  srv_rq_wake(rq, ST_LOCKED);
}

/* We hold the payment's lease: serialise with this process's other holders
 * of the id (a stale one may still run), without blocking. */
static void lock_and_charge(srv_rq_t *rq, pay_t *st) {
  int rc = rf_kmutex_trylock(g_km, st->key);
  if (rc == 0) {
    locked(rq, st);
    return;
  }
  if (rc != RF_EBUSY) {
    release_locks(st);
    srv_rq_reply_status(rq, rc, "payments");
    return;
  }
  srv_rq_suspend(rq); /* before the hand-off: on_kmutex may run on any thread, even now */
  rc = rf_kmutex_lock_cb(g_km, st->key, (int)g_lease_ms, srv_rq_app(rq)->timer, on_kmutex, rq);
  if (rc != 0) {
    release_locks(st);
    srv_rq_reply_status(rq, rc, "payments");
  }
}

/* With --redis the lease is taken BEFORE the idempotency claim: a Redis
 * that is down then fails the request closed (503 + Retry-After) without
 * leaving a claimed record behind that would answer 409 until its lease
 * ran out; a holder in another instance answers 409 at once. */
static int lock_first(srv_rq_t *rq, pay_t *st) {
  if (!srv_rq_app(rq)->redis)
    return 0;
  int rc = rf_lock_acquire(g_lock, st->key, &g_lock_opts, &st->lease);
  if (rc == RF_EBUSY || rc == RF_ETIMEDOUT)
    reply_in_progress(rq, st->id);
  else if (rc != 0)
    srv_rq_reply_status(rq, rc, "payments lock"); /* RF_EUNAVAIL: 503, fail closed */
  else
    st->have_lease = true;
  return rc;
}

static void start(srv_rq_t *rq) {
  pay_t *st = pay_decode(rq);
  if (st == NULL || lock_first(rq, st) != 0)
    return;
  snprintf(st->fpr, sizeof st->fpr, "amount=%lld", (long long)st->amount);
  srv_rq_store(rq, RF_STORE_WRITE, begin_work, ST_BEGUN); /* the idempotency claim */
}

/* After the claim: charge, finish, or answer from the record. */
static void begun(srv_rq_t *rq, pay_t *st) {
  const rf_payment_t *rec = &st->rec;
  int rc = srv_rq_store_rc(rq);
  if (rc != 0) {
    release_locks(st);
    srv_rq_reply_status(rq, rc, "payments");
    return;
  }
  if (rec->claim == RF_PAY_MISMATCH || rec->claim == RF_PAY_DONE || rec->claim == RF_PAY_BUSY)
    release_locks(st); /* answered below without charging */
  switch (rec->claim) {
  case RF_PAY_MISMATCH:
    srv_rq_reply_error(rq, 422, "idempotency_mismatch",
                       "payment %s was first requested with amount %lld, not %lld", st->id,
                       (long long)rec->amount, (long long)st->amount);
    return;
  case RF_PAY_DONE:
    reply_stored(rq, rec->http_status, rec->body, true);
    return;
  case RF_PAY_BUSY:
    reply_in_progress(rq, st->id);
    return;
  case RF_PAY_TAKEN_OVER:
    st->token = rec->token;
    if (rec->has_charge) { /* charged before its holder died: finish, never charge twice */
      st->charge = rec->charge;
      finish(rq, st, true);
      return;
    }
    lock_and_charge(rq, st);
    return;
  case RF_PAY_CLAIMED:
  default:
    st->token = rec->token;
    lock_and_charge(rq, st);
    return;
  }
}

static void charge(srv_rq_t *rq) {
  srv_rq_store(rq, RF_STORE_WRITE, charge_work, ST_CHARGED); /* fenced by our token */
}

static void charged(srv_rq_t *rq, pay_t *st) {
  srv_app_t *app = srv_rq_app(rq);
  int rc = srv_rq_store_rc(rq);
  if (rc != 0) {
    release_locks(st);
    if (rc == RF_ESTALE)
      reply_current(rq); /* a newer holder exists: it charges, not us */
    else
      srv_rq_reply_status(rq, rc, "card processor");
    return;
  }
  uint64_t latency = app->opts->charge_latency_ms;
  pay_after(rq, st, latency - latency / 2, ST_FINISH); /* the answer travels back */
}

static void payment_safe(srv_rq_t *rq) {
  pay_t *st = srv_rq_state(rq, sizeof(pay_t));
  switch (srv_rq_stage(rq)) {
  case ST_START:
    start(rq);
    return;
  case ST_LOCKED:
    locked(rq, st);
    return;
  case ST_CHARGE:
    charge(rq);
    return;
  case ST_FINISH:
    finish(rq, st, false);
    return;
  case ST_BEGUN:
    begun(rq, st);
    return;
  case ST_CHARGED:
    charged(rq, st);
    return;
  case ST_FINISHED:
    finished(rq, st);
    return;
  default:
    current_answer(rq, st);
    return;
  }
}

/* ---------------------------------------------- the read-only routes */

enum { R_START = 0, R_DONE = 1 };

typedef struct {
  char id[SRV_ID_MAX + 1];
  rf_payment_t rec;
  int64_t count, total;
} read_state_t;

static int payment_get_work(rf_store_t *s, void *state) {
  read_state_t *st = state;
  return rf_store_payment_get(s, st->id, &st->rec);
}

static int charge_stats_work(rf_store_t *s, void *state) {
  read_state_t *st = state;
  return rf_store_charge_stats(s, st->id, &st->count, &st->total);
}

/* Decode the id into the read state and hand fn to the store; NULL when
 * answered or handed over, the state when the read has completed. */
static read_state_t *read_step(srv_rq_t *rq, const char *raw, srv_store_fn fn) {
  read_state_t *st = srv_rq_state(rq, sizeof *st);
  if (st == NULL) {
    srv_rq_reply_nomem(rq);
    return NULL;
  }
  if (srv_rq_stage(rq) == R_DONE)
    return st;
  srv_decode_err_t err;
  int rc = srv_decode_id(raw, "paymentId", st->id, &err);
  if (rc != 0)
    srv_rq_reply_decode_error(rq, rc, &err);
  else
    srv_rq_store(rq, RF_STORE_READ, fn, R_DONE);
  return NULL;
}

void h_payment_get(srv_rq_t *rq) {
  read_state_t *st = read_step(rq, srv_rq_param(rq, 0), payment_get_work);
  if (st == NULL)
    return;
  const char *id = st->id;
  const rf_payment_t *rec = &st->rec;
  int rc = srv_rq_store_rc(rq);
  if (rc == RF_ENOENT) {
    srv_rq_reply_error(rq, 404, "not_found", "no payment %s", id);
    return;
  }
  if (rc != 0) {
    srv_rq_reply_status(rq, rc, "payments");
    return;
  }
  static const char *const names[] = {"processing", "succeeded", "declined"};
  json_t *v = json_pack("{s:s,s:I,s:s}", "paymentId", id, "amount", (json_int_t)rec->amount,
                        "status", names[rec->state <= RF_PAY_DECLINED ? rec->state : 0]);
  if (v != NULL && rec->charge_id[0] != '\0' &&
      json_object_set_new(v, "chargeId", json_string(rec->charge_id)) != 0) {
    json_decref(v);
    v = NULL;
  }
  srv_rq_reply_json(rq, 200, v);
}

void h_charges(srv_rq_t *rq) {
  const char *q = NULL;
  if (srv_rq_stage(rq) == R_START && (q = srv_rq_query(rq, "paymentId")) == NULL) {
    srv_rq_reply_error(rq, 400, "bad_request", "the query parameter paymentId is required");
    return;
  }
  read_state_t *st = read_step(rq, q, charge_stats_work);
  if (st == NULL)
    return;
  int rc = srv_rq_store_rc(rq);
  if (rc != 0)
    srv_rq_reply_status(rq, rc, "card processor");
  else
    srv_rq_reply_json(rq, 200,
                      json_pack("{s:s,s:I,s:I}", "paymentId", st->id, "count",
                                (json_int_t)st->count, "total", (json_int_t)st->total));
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   if (this.processedPayments.has(paymentId)) throw "Already processed";
 *   this.processedPayments.add(paymentId);       // one step later
 *   await this.stripeService.charge(amount);      // ⚠️ YIELDS
 *   await this.db.payments.create({ paymentId, amount });
 *
 * A set of ids per process, checked, then added one step (1 ms, the
 * article's timeline) later: every request of a burst that checks inside
 * that window charges. The processor's ledger records each charge, so GET
 * /charges shows the double charge. Nothing is claimed in the database (a
 * restart forgets the set: a repeat charges again), amounts are not
 * compared, and "Already processed" is answered 409 already_processed.
 * The same charge latency as the safe handler; each set operation takes a
 * mutex (no C data race: the race is in the logic). */

#define NAIVE_BUCKETS 4096
#define NAIVE_STEP_MS 1

enum { N_START = 0, N_ADD = 1, N_CHARGE = 2, N_SAVE = 3, N_CHARGED = 4, N_SAVED = 5 };

static int naive_charge_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_charge_record_unchecked(s, st->id, st->amount, st->declined, &st->charge);
}

static int naive_save_work(rf_store_t *s, void *state) {
  pay_t *st = state;
  return rf_store_payment_put_unchecked(s, st->id, st->amount, st->charge.declined, st->status,
                                        st->charge.charge_id, st->body);
}

typedef struct nid {
  struct nid *next;
  char id[];
} nid_t;

static pthread_mutex_t naive_mu = PTHREAD_MUTEX_INITIALIZER;
static nid_t *naive_set[NAIVE_BUCKETS];

static nid_t **naive_slot(const char *id) {
  uint64_t h = 1469598103934665603ull;
  for (const char *p = id; *p; p++)
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  nid_t **s = &naive_set[h % NAIVE_BUCKETS];
  while (*s != NULL && strcmp((*s)->id, id) != 0)
    s = &(*s)->next;
  return s;
}

static bool naive_has(const char *id) {
  pthread_mutex_lock(&naive_mu);
  bool has = *naive_slot(id) != NULL;
  pthread_mutex_unlock(&naive_mu);
  return has;
}

static int naive_add(const char *id) {
  size_t n = strlen(id) + 1;
  nid_t *e = malloc(sizeof *e + n);
  if (e == NULL)
    return RF_ENOMEM;
  memcpy(e->id, id, n);
  e->next = NULL;
  pthread_mutex_lock(&naive_mu);
  nid_t **s = naive_slot(id);
  if (*s == NULL)
    *s = e;
  else
    free(e);
  pthread_mutex_unlock(&naive_mu);
  return 0;
}

static void payment_unsafe(srv_rq_t *rq) {
  srv_app_t *app = srv_rq_app(rq);
  uint64_t latency = app->opts->charge_latency_ms;
  pay_t *st;
  switch (srv_rq_stage(rq)) {
  case N_START:
    if ((st = pay_decode(rq)) == NULL)
      return;
    if (naive_has(st->id)) { /* if (processedPayments.has(paymentId)) */
      srv_rq_reply_error(rq, 409, "already_processed", "payment %s: already processed", st->id);
      return;
    }
    srv_rq_after(rq, NAIVE_STEP_MS, N_ADD);
    return;
  case N_ADD: {
    st = srv_rq_state(rq, sizeof *st);
    int rc = naive_add(st->id); /* processedPayments.add(paymentId) */
    if (rc != 0)
      srv_rq_reply_status(rq, rc, "payments");
    else
      srv_rq_after(rq, latency / 2, N_CHARGE);
    return;
  }
  case N_CHARGE: /* stripe.charge(amount) */
    srv_rq_store(rq, RF_STORE_WRITE, naive_charge_work, N_CHARGED);
    return;
  case N_CHARGED: {
    int rc = srv_rq_store_rc(rq);
    if (rc != 0)
      srv_rq_reply_status(rq, rc, "card processor");
    else
      srv_rq_after(rq, latency - latency / 2, N_SAVE);
    return;
  }
  case N_SAVE: /* db.payments.create */
    st = srv_rq_state(rq, sizeof *st);
    st->body = outcome_body(st->id, st->amount, &st->charge, &st->status);
    if (st->body == NULL) {
      srv_rq_reply_nomem(rq);
      return;
    }
    srv_rq_store(rq, RF_STORE_WRITE, naive_save_work, N_SAVED);
    return;
  default: {
    st = srv_rq_state(rq, sizeof *st);
    int rc = srv_rq_store_rc(rq);
    if (rc != 0)
      srv_rq_reply_status(rq, rc, "payments");
    else
      reply_stored(rq, st->status, st->body, false);
    free(st->body);
    st->body = NULL;
    return;
  }
  }
}

/* ---- dispatch and lifecycle ---- */

void h_payment_create(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    payment_unsafe(rq);
  else
    payment_safe(rq);
}

/* The lease must outlive a live holder's whole charge (two half latencies
 * and the SQL around them): at least 2 x latency + 1 s, whatever
 * --payment-lease-ms says. */
int payments_init(srv_app_t *app, char *err, size_t errlen) {
  const srv_options_t *o = app->opts;
  g_lease_ms = o->payment_lease_ms;
  if (g_lease_ms < 2 * o->charge_latency_ms + 1000)
    g_lease_ms = 2 * o->charge_latency_ms + 1000;
  rf_lock_opts_t lo = RF_LOCK_OPTS_DEFAULT;
  lo.ttl_ms = g_lease_ms;
  lo.attempts = 1; /* a second holder means "in progress": 409, no waiting */
  g_lock_opts = lo;
  uint64_t salt = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  if (f != NULL) {
    if (fread(&salt, sizeof salt, 1, f) != 1)
      salt = 0;
    fclose(f);
  }
  snprintf(g_owner, sizeof g_owner, "racefreed-%ld-%016llx", (long)getpid(),
           (unsigned long long)salt);
  int rc = rf_kmutex_create(&g_km);
  g_own_lock = app->redis == NULL;
  if (rc == 0 && !g_own_lock)
    g_lock = app->redis; /* one lease per id across every instance sharing Redis */
  else if (rc == 0)
    rc = rf_lock_create_mem(&g_lock, &g_lock_opts);
  if (rc != 0) {
    snprintf(err, errlen, "payments: cannot create the payment locks: %s", rf_strerror(rc));
    payments_fini(app);
  }
  return rc;
}

void payments_fini(srv_app_t *app) {
  (void)app;
  if (g_own_lock)
    rf_lock_destroy(g_lock);
  g_lock = NULL;
  rf_kmutex_destroy(g_km);
  g_km = NULL;
  pthread_mutex_lock(&naive_mu);
  for (size_t i = 0; i < NAIVE_BUCKETS; i++) {
    while (naive_set[i] != NULL) {
      nid_t *e = naive_set[i];
      naive_set[i] = e->next;
      free(e);
    }
  }
  pthread_mutex_unlock(&naive_mu);
}
