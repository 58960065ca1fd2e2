/* http.h - the HTTP glue: libmicrohttpd in, route handlers out.
 *
 * The glue owns threads, connections, body limits, routing, error shapes,
 * metrics and access logs. A route handler receives a request (srv_rq_t)
 * whose path parameters and body are available, and answers it. It must not
 * wait: an HTTP thread runs an event loop for many connections, so one
 * sleeping handler stalls all of them (docs/server.md, "Waiting without
 * blocking"). A handler that has to wait:
 *
 *   - either calls srv_rq_after(rq, ms, next_stage): the connection is
 *     suspended, a timer fires after ms, the connection is resumed and the
 *     SAME handler runs again on an HTTP thread with srv_rq_stage(rq) ==
 *     next_stage. Per-request state that must survive between stages lives
 *     in srv_rq_state(rq, size). This is how simulated latencies and retry
 *     backoffs are written: a little state machine, no thread blocked.
 *   - or calls srv_rq_suspend(rq) BEFORE handing the request to something
 *     that completes it later on another thread (a cache flight, a once
 *     callback, a pool task), which then calls srv_rq_reply_* or
 *     srv_rq_wake. Suspending first matters: the completion may run on
 *     another thread before the handler has even returned, and resuming a
 *     connection that is not suspended is undefined in libmicrohttpd.
 *
 * Replies (srv_rq_reply_*) may be made from any thread, exactly once per
 * request. After the reply call returns, that thread must not touch rq
 * again (the connection may already be resumed, answered and freed).
 * The handler's own thread may keep using rq until the handler returns
 * only if it did NOT suspend (a synchronous handler); once it has handed
 * off a suspended request it must return without touching rq.
 */
#ifndef RACEFREED_HTTP_H
#define RACEFREED_HTTP_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "app.h"
#include "decode.h"
#include "router.h"

typedef void (*srv_handler_fn)(srv_rq_t *rq);

/* Route flags (srv_route_t.flags). */
#define SRV_ROUTE_BODY       1u /* the route reads a request body */
#define SRV_ROUTE_LARGE_BODY 2u /* ... of up to 16 MiB instead of 1 MiB (POST /images/process) */

/* ------------------------------------------------------------ accessors */

srv_app_t *srv_rq_app(srv_rq_t *rq);
/* Path parameter i (NUL-terminated copy, owned by rq), NULL if i is out of range. */
const char *srv_rq_param(srv_rq_t *rq, size_t i);
/* The request body (not NUL-terminated; len 0 when there is none). */
const char *srv_rq_body(srv_rq_t *rq, size_t *len);
/* Query argument, percent-decoded, owned by rq (NULL if absent; at most 8
 * lookups per request). Only from the handler's own thread. */
const char *srv_rq_query(srv_rq_t *rq, const char *key);
/* Is this a HEAD request (routed to its GET route, which must then have no
 * side effect)? */
bool srv_rq_is_head(srv_rq_t *rq);
/* The stage this invocation of the handler runs (0 the first time). */
unsigned srv_rq_stage(srv_rq_t *rq);
/* Zeroed per-request memory of at least `size` bytes, the same block on
 * every call (size must not grow), freed with the request. NULL when out of
 * memory (the handler then answers 500: srv_rq_reply_nomem). */
void *srv_rq_state(srv_rq_t *rq, size_t size);

/* ------------------------------------------------------------ waiting */

/* srv_rq_suspend: suspend the connection before handing rq off. Only from
 * the handler, once per invocation. */
void srv_rq_suspend(srv_rq_t *rq);

/* srv_rq_after: continue this handler at next_stage after ms milliseconds
 * without blocking the thread (ms 0: right away, on this thread). If the
 * timer refuses (shutdown), answers 503 shutting_down instead. Either way
 * the handler must return right after this call without touching rq. */
void srv_rq_after(srv_rq_t *rq, uint64_t ms, unsigned next_stage);

/* srv_rq_wake: from any thread, for a suspended rq: run the handler again
 * at next_stage on an HTTP thread. Do not touch rq afterwards. */
void srv_rq_wake(srv_rq_t *rq, unsigned next_stage);

/* srv_rq_store: run fn(store, state) on the store's executor, then continue
 * this handler at next_stage, where srv_rq_store_rc(rq) is fn's return.
 * `state` is srv_rq_state's block (allocate it first): fn reads its inputs
 * there and writes its outputs there. mode RF_STORE_WRITE: fn runs on the
 * database's writer, in a group-commit transaction inside its own savepoint
 * (a non-zero return undoes fn's writes alone), and the handler continues
 * after the COMMIT. RF_STORE_READ: fn only reads; with SQLite it runs at
 * once on this thread, with PostgreSQL on the executor. fn runs on another
 * thread than the handler: it must touch nothing but the store and
 * `state`. When the work cannot be handed over, the handler continues at
 * next_stage all the same, with srv_rq_store_rc = RF_EBUSY (the queue is
 * full) or RF_ESHUTDOWN, which srv_rq_reply_status answers 503. Either way
 * the handler must return right after this call without touching rq. */
typedef int (*srv_store_fn)(rf_store_t *s, void *state);
void srv_rq_store(srv_rq_t *rq, unsigned mode, srv_store_fn fn, unsigned next_stage);
int srv_rq_store_rc(const srv_rq_t *rq);

/* srv_rq_offload: as srv_rq_store, for a blocking call that is not the
 * store's (the job queue's database): fn(state) runs on the I/O pool, then
 * the handler continues at next_stage with srv_rq_store_rc = fn's return
 * (RF_EBUSY when the pool's queue is full, RF_ESHUTDOWN when stopping). */
typedef int (*srv_offload_fn)(void *state);
void srv_rq_offload(srv_rq_t *rq, srv_offload_fn fn, unsigned next_stage);

/* ------------------------------------------------------------ answers */

/* Add a response header (copied). Before the reply, from the thread that
 * will reply. At most 8 per response. */
void srv_rq_header(srv_rq_t *rq, const char *name, const char *value);

/* Answer with a JSON value (the reference is stolen; NULL -> 500). */
void srv_rq_reply_json(srv_rq_t *rq, unsigned status, json_t *body);
/* Answer with bytes (copied). */
void srv_rq_reply_raw(srv_rq_t *rq, unsigned status, const char *content_type, const char *body,
                      size_t len);
/* Answer {"error":{"code":code,"message":...}}. */
void srv_rq_reply_error(srv_rq_t *rq, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The answer to a failed srv_decode_* call: 400 bad_request naming the
 * field for RF_EINVAL, 500 for RF_ENOMEM. */
void srv_rq_reply_decode_error(srv_rq_t *rq, int rc, const srv_decode_err_t *err);
/* 500 internal out of memory. */
void srv_rq_reply_nomem(srv_rq_t *rq);
/* Map a store/library error code to an answer (503 for busy/unavailable
 * with Retry-After, 500 otherwise). */
void srv_rq_reply_status(srv_rq_t *rq, int rc, const char *what);

/* ------------------------------------------------------------ daemon */

/* srv_http_start: serve on the already bound, listening socket fd with the
 * route table (handlers are srv_handler_fn). Returns 0 or a negative code
 * with a message in err. */
int srv_http_start(srv_app_t *app, int listen_fd, const srv_route_t *routes, size_t nroutes,
                   char *err, size_t errlen);

/* srv_http_stop: graceful stop (docs/server.md, "Shutdown"): stop
 * accepting, let in-flight requests finish for up to timeout_ms, fire the
 * pending timers, resume what is still suspended, stop the daemon. */
void srv_http_stop(srv_app_t *app, uint64_t timeout_ms);

#endif /* RACEFREED_HTTP_H */
