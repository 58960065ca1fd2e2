/* cpu.c - "Worker Threads in NestJS": CPU-heavy work off the request threads.
 *
 * POST /reports/generate {"iterations":n}   200 {"iterations":n,"result":x,"ms":t}
 *     x = sum of sqrt(i) for i in 0..n-1, n in 1..10^10; t = milliseconds the
 *     computation took on its worker.
 * POST /images/process?filters=f1,f2,...     200 the processed PNG (image/png)
 *     PNG body up to 16 MiB (this route only: SRV_ROUTE_LARGE_BODY); filters
 *     grayscale, invert, blur:R (1..32) applied left to right (src/imaging).
 *     415 unsupported_media_type: the body is not a PNG; 400 bad_request:
 *     unknown filter or corrupt PNG; 413 image_too_large: more than
 *     IMG_PIXEL_CAP pixels once decoded (the 16 MiB body cap is 413
 *     payload_too_large from the HTTP glue).
 * Both: 503 overloaded (+ Retry-After) when the pool queue is full.
 *
 * Safe: the handler validates what is cheap (the body decodes as JSON, the
 * PNG signature, the filter list), then suspends the connection and submits
 * a job to the CPU pool (srv_pool_submit: --pool-size workers running at
 * nice 10, behind a queue of --pool-queue). The HTTP thread returns at once
 * and goes on serving its other connections. The worker computes, then, in
 * the job's completion, answers (which resumes the connection) and frees
 * the job. The HTTP threads never run the work.
 *
 * Ownership. A job owns everything it allocates (the decoded pixels, the
 * encoded PNG) and frees it in its completion, whatever the outcome. The
 * request body it reads stays owned by the request: a suspended connection
 * is never completed or freed by libmicrohttpd (http.c), so the body
 * outlives the job, which replies as its very last use of it. A client that
 * disconnects while its job waits or runs changes nothing of this: the job
 * runs, replies into the suspended connection, frees its buffers; the
 * resumed connection then finds its socket closed and on_completed frees
 * the request. Nothing leaks (the e2e test disconnects clients mid-job under
 * ASan's leak checker).
 *
 * Shutdown. The generate loop checks app->shutting_down every 2^20
 * iterations (about a millisecond) and gives up with 503 shutting_down, so
 * a 10^10-iteration job (tens of seconds) does not hold the graceful stop;
 * jobs still queued when the pool is cancelled get done(RF_ECANCELED) and
 * answer 503 too.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "routes.h"

#define ITERATIONS_MAX 10000000000ll /* docs/http-api.md: n <= 10^10 */
#define CHECK_EVERY    (1ll << 20)   /* iterations between two shutdown checks */
#define IMG_PIXEL_CAP  (1ull << 24)  /* 16 Mi pixels = 64 MiB of RGBA per image */

static const unsigned char png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void reply_submit_error(srv_rq_t *rq, int rc) {
  if (rc == RF_EBUSY) {
    srv_rq_header(rq, "Retry-After", "1");
    srv_rq_reply_error(rq, 503, "overloaded", "the worker pool is full, retry later");
  } else {
    srv_rq_reply_status(rq, rc, "worker pool");
  }
}

/* ------------------------------------------------------------ the work */

/* sum of sqrt(i), i in 0..n-1. *aborted = true (and the partial sum is
 * returned) when `stop` (may be NULL) became true on the way. */
static double sum_sqrt(int64_t n, const atomic_bool *stop, bool *aborted) {
  double sum = 0.0;
  *aborted = false;
  for (int64_t i = 0; i < n;) {
    int64_t end = n - i > CHECK_EVERY ? i + CHECK_EVERY : n;
    for (; i < end; i++)
      sum += sqrt((double)i);
    if (stop != NULL && i < n && atomic_load_explicit(stop, memory_order_relaxed)) {
      *aborted = true;
      break;
    }
  }
  return sum;
}

static json_t *generate_body(int64_t n, double result, double ms) {
  return json_pack("{s:I,s:f,s:f}", "iterations", (json_int_t)n, "result", result, "ms", ms);
}

static int decode_iterations(srv_rq_t *rq, int64_t *n) {
  static const srv_field_t f[] = {
      {"iterations", SRV_FIELD_INT, 0, 1, ITERATIONS_MAX, true},
  };
  size_t len;
  const char *body = srv_rq_body(rq, &len);
  srv_decode_err_t err;
  int rc = srv_decode_object(body, len, f, 1, n, &err);
  if (rc != 0)
    srv_rq_reply_decode_error(rq, rc, &err);
  return rc;
}

/* The image pipeline: decode, filter, encode. 0 or an IMG_E... code; on 0
 * *out is a malloc'd PNG. */
static int process_png(const char *png, size_t len, const img_filter_t *filters, size_t nfilters,
                       void **out, size_t *out_len) {
  img_t img = {0};
  int rc = img_decode_png(png, len, IMG_PIXEL_CAP, &img);
  if (rc == IMG_OK)
    rc = img_apply(&img, filters, nfilters);
  if (rc == IMG_OK)
    rc = img_encode_png(&img, out, out_len);
  img_free(&img);
  return rc;
}

static void reply_image(srv_rq_t *rq, int rc, const void *png, size_t len) {
  switch (rc) {
  case IMG_OK:
    srv_rq_reply_raw(rq, 200, "image/png", png, len);
    return;
  case IMG_ENOTPNG:
    srv_rq_reply_error(rq, 415, "unsupported_media_type", "the body is not a PNG image");
    return;
  case IMG_ECORRUPT:
    srv_rq_reply_error(rq, 400, "bad_request", "the PNG data is corrupt or unsupported");
    return;
  case IMG_ETOOBIG:
    srv_rq_reply_error(rq, 413, "image_too_large", "the image has more than %llu pixels",
                       (unsigned long long)IMG_PIXEL_CAP);
    return;
  case IMG_ENOMEM:
    srv_rq_reply_nomem(rq);
    return;
  default:
    srv_rq_reply_error(rq, 500, "internal", "image processing failed: %s", img_strerror(rc));
    return;
  }
}

/* The checks that need no decoding: the PNG signature (415), the filter
 * list (400). 0 when the request may go on; otherwise it was answered. */
typedef struct {
  const char *png;
  size_t len;
  img_filter_t filters[IMG_MAX_FILTERS];
  size_t nfilters;
} image_req_t;

static int image_precheck(srv_rq_t *rq, image_req_t *r) {
  r->png = srv_rq_body(rq, &r->len);
  if (r->len < sizeof png_signature || memcmp(r->png, png_signature, sizeof png_signature) != 0) {
    reply_image(rq, IMG_ENOTPNG, NULL, 0);
    return -1;
  }
  char why[160] = "";
  if (img_parse_filters(srv_rq_query(rq, "filters"), r->filters, &r->nfilters, why, sizeof why) !=
      IMG_OK) {
    srv_rq_reply_error(rq, 400, "bad_request", "filters: %s", why[0] ? why : "invalid filter list");
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------ safe */

typedef struct gen_job {
  srv_rq_t *rq;
  srv_app_t *app;
  int64_t n;
  double result, ms;
  bool aborted;
} gen_job_t;

static void gen_run(void *arg) { /* a pool worker */
  gen_job_t *j = arg;
  double t0 = now_ms();
  j->result = sum_sqrt(j->n, &j->app->shutting_down, &j->aborted);
  j->ms = now_ms() - t0;
}

static void gen_done(int status, void *arg) { /* the worker after gen_run, or the canceller */
  gen_job_t *j = arg;
  if (status != 0 || j->aborted)
    srv_rq_reply_error(j->rq, 503, "shutting_down", "the server is shutting down");
  else
    srv_rq_reply_json(j->rq, 200, generate_body(j->n, j->result, j->ms));
  free(j);
}

static void generate_safe(srv_rq_t *rq) {
  int64_t n = 0;
  if (decode_iterations(rq, &n) != 0)
    return;
  gen_job_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  j->rq = rq;
  j->app = srv_rq_app(rq);
  j->n = n;
  srv_rq_suspend(rq); /* before the hand-off: gen_done may run before we return */
  int rc = srv_pool_submit(j->app, gen_run, gen_done, j);
  if (rc != 0) {
    free(j);
    reply_submit_error(rq, rc);
  }
}

typedef struct img_job {
  srv_rq_t *rq;
  image_req_t req; /* req.png points into the request's body (see the top) */
  int rc;
  void *out; /* owned: the encoded PNG */
  size_t out_len;
} img_job_t;

static void img_run(void *arg) {
  img_job_t *j = arg;
  j->rc =
      process_png(j->req.png, j->req.len, j->req.filters, j->req.nfilters, &j->out, &j->out_len);
}

static void img_done(int status, void *arg) {
  img_job_t *j = arg;
  if (status != 0)
    srv_rq_reply_error(j->rq, 503, "shutting_down", "the server is shutting down");
  else
    reply_image(j->rq, j->rc, j->out, j->out_len); /* copies the PNG */
  free(j->out);
  free(j);
}

static void image_safe(srv_rq_t *rq) {
  img_job_t *j = calloc(1, sizeof *j);
  if (j == NULL) {
    srv_rq_reply_nomem(rq);
    return;
  }
  if (image_precheck(rq, &j->req) != 0) {
    free(j);
    return;
  }
  j->rq = rq;
  srv_rq_suspend(rq);
  int rc = srv_pool_submit(srv_rq_app(rq), img_run, img_done, j);
  if (rc != 0) {
    free(j);
    reply_submit_error(rq, rc);
  }
}

/* ---- UNSAFE: the article's naive version ----
 *
 *   @Get("generate")
 *   async generateReport() {
 *     const result = this.heavyImageProcessing(); // ❌ This BLOCKS all requests
 *     return result;
 *   }
 *
 * The work runs right here, on the HTTP thread that received the request.
 * That thread runs the event loop of every connection assigned to it: all
 * of them wait until the loop ends (GET /api included: the e2e latency
 * test sees it stall). No queue bound either: as many jobs run at once as
 * there are HTTP threads, and the rest of the server queues behind them. */

static void generate_unsafe(srv_rq_t *rq) {
  int64_t n = 0;
  if (decode_iterations(rq, &n) != 0)
    return;
  bool aborted;
  double t0 = now_ms();
  double result = sum_sqrt(n, NULL, &aborted); /* blocks this HTTP thread */
  srv_rq_reply_json(rq, 200, generate_body(n, result, now_ms() - t0));
}

static void image_unsafe(srv_rq_t *rq) {
  image_req_t r;
  if (image_precheck(rq, &r) != 0)
    return;
  void *out = NULL;
  size_t out_len = 0;
  int rc = process_png(r.png, r.len, r.filters, r.nfilters, &out, &out_len); /* blocks */
  reply_image(rq, rc, out, out_len);
  free(out);
}

/* ---- dispatch ---- */

void h_reports_generate(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    generate_unsafe(rq);
  else
    generate_safe(rq);
}

void h_images_process(srv_rq_t *rq) {
  if (srv_rq_app(rq)->opts->unsafe)
    image_unsafe(rq);
  else
    image_safe(rq);
}
