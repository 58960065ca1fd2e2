/* e2e_cpu.c - POST /reports/generate and POST /images/process against a
 * real racefreed (API.md "Reports", "Images"; docs/cpu-work.md).
 *
 *   e2e_cpu safe     the pool: results, images, errors, overload, disconnects
 *   e2e_cpu unsafe   the naive handlers compute the same answers
 *
 * Results: the sum of square roots equals the one computed here. Images: a
 * PNG made here goes through grayscale, invert and blur filters and comes
 * back equal, pixel by pixel, to a reference computed here the slow obvious
 * way (as src/imaging/test_image.c does); 415 for a body that is not a PNG,
 * 400 for unknown filters and corrupt data, 413 for an image with too many
 * pixels (image_too_large) and for a body over 16 MiB (payload_too_large);
 * a 2+ MiB PNG is accepted here while the same body is 413 on /payments
 * (the 16 MiB allowance is this route's only).
 * Safe only: a pool of one worker and a queue of two answers a burst with
 * 503 overloaded + Retry-After beyond what it can hold; clients that
 * disconnect while their jobs wait leave nothing behind (the queue drains,
 * the server keeps serving, and it exits cleanly - under ASan that includes
 * its leak check at exit).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <zlib.h>

#include "e2e_payments_common.h"
#include "image.h"

enum { TIMEOUT_MS = 60000, OVERLOAD_BURST = 12, DISCONNECTS = 6 };

static struct {
  int unsafe;
  e2e_server_t srv;
} g;

static int setup(void **state) {
  (void)state;
  const char *args[] = {"--pool-size", "2", g.unsafe ? "--unsafe" : NULL, NULL};
  return e2e_server_start(&g.srv, args) == 0 ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&g.srv);
  int rc = e2e_server_stop(&g.srv);
  if (!alive || rc != 0)
    fprintf(stderr, "e2e: racefreed %s (exit status %d)\n",
            alive ? "did not stop cleanly" : "had died during the test", rc);
  return alive && rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ generate */

static double ref_sum(int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += sqrt((double)i);
  return s;
}

static void generate(int port, int64_t n, e2e_resp_t *r) {
  char body[64];
  snprintf(body, sizeof body, "{\"iterations\":%lld}", (long long)n);
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, port), 0);
  e2e_conn_call(&c, "POST", "/reports/generate", body, NULL, r, TIMEOUT_MS);
  e2e_conn_close(&c);
}

static void test_generate_results(void **state) {
  (void)state;
  const int64_t ns[] = {1, 2, 1000, 1234567};
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
    e2e_resp_t r;
    generate(g.srv.port, ns[k], &r);
    assert_int_equal(r.status, 200);
    json_t *j = e2e_json(&r);
    double want = ref_sum(ns[k]);
    double got = json_number_value(json_object_get(j, "result"));
    assert_int_equal(json_integer_value(json_object_get(j, "iterations")), ns[k]);
    assert_true(fabs(got - want) <= 1e-9 * (want > 1 ? want : 1));
    assert_true(json_is_number(json_object_get(j, "ms")));
    assert_true(json_number_value(json_object_get(j, "ms")) >= 0);
    json_decref(j);
    e2e_resp_free(&r);
  }
  const char *bad[] = {"{\"iterations\":0}",
                       "{\"iterations\":10000000001}",
                       "{\"iterations\":1.5}",
                       "{\"iterations\":\"9\"}",
                       "{}",
                       "[]",
                       "{\"iterations\":1,\"x\":2}"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    e2e_resp_t r;
    e2e_call(g.srv.port, "POST", "/reports/generate", bad[k], &r);
    char code[64];
    if (r.status != 400 || strcmp(e2e_error_code(&r, code, sizeof code), "bad_request") != 0)
      fail_msg("%s: %d %s", bad[k], r.status, r.body);
    e2e_resp_free(&r);
  }
}

/* ------------------------------------------------------------ images */

static img_t make_image(uint32_t w, uint32_t h, unsigned seed) {
  img_t img = {w, h, malloc((size_t)w * h * 4u)};
  assert_non_null(img.rgba);
  for (size_t i = 0; i < (size_t)w * h * 4u; i++) {
    seed = seed * 1103515245u + 12345u;
    img.rgba[i] = (uint8_t)(seed >> 16);
  }
  return img;
}

static uint8_t *px(img_t *img, long x, long y) {
  x = x < 0 ? 0 : (x >= (long)img->width ? (long)img->width - 1 : x);
  y = y < 0 ? 0 : (y >= (long)img->height ? (long)img->height - 1 : y);
  return img->rgba + ((size_t)y * img->width + (size_t)x) * 4u;
}

/* Reference blur (image.h): per channel, the rounded mean of the 2R+1
 * clamped neighbours in x, then the same in y over that result. */
static void ref_blur(img_t *img, unsigned r) {
  size_t n = (size_t)img->width * img->height * 4u;
  img_t tmp = {img->width, img->height, malloc(n)};
  assert_non_null(tmp.rgba);
  memcpy(tmp.rgba, img->rgba, n);
  unsigned win = 2 * r + 1;
  for (int pass = 0; pass < 2; pass++) {
    img_t *src = pass == 0 ? img : &tmp, *dst = pass == 0 ? &tmp : img;
    for (long y = 0; y < (long)img->height; y++)
      for (long x = 0; x < (long)img->width; x++)
        for (int c = 0; c < 3; c++) {
          unsigned sum = 0;
          for (long k = -(long)r; k <= (long)r; k++)
            sum += pass == 0 ? px(src, x + k, y)[c] : px(src, x, y + k)[c];
          px(dst, x, y)[c] = (uint8_t)((sum + win / 2) / win);
        }
  }
  free(tmp.rgba);
}

static void ref_apply(img_t *img, const char *spec) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", spec);
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    if (strncmp(tok, "blur:", 5) == 0) {
      ref_blur(img, (unsigned)atoi(tok + 5));
      continue;
    }
    for (size_t i = 0; i < (size_t)img->width * img->height; i++) {
      uint8_t *p = img->rgba + i * 4;
      if (strcmp(tok, "grayscale") == 0) {
        uint8_t yv = (uint8_t)((77u * p[0] + 150u * p[1] + 29u * p[2] + 128u) >> 8);
        p[0] = p[1] = p[2] = yv;
      } else {
        assert_string_equal(tok, "invert");
        for (int c = 0; c < 3; c++)
          p[c] = (uint8_t)(255 - p[c]);
      }
    }
  }
}

/* POST `path` with a binary body on a fresh connection. */
static void post_bytes(int port, const char *path, const char *ctype, const void *body, size_t len,
                       e2e_resp_t *r) {
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, port), 0);
  char head[512];
  int n = snprintf(head, sizeof head,
                   "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n\r\n",
                   path, ctype, len);
  assert_int_equal(e2e_conn_send(&c, head, (size_t)n), 0);
  if (len > 0)
    assert_int_equal(e2e_conn_send(&c, body, len), 0);
  e2e_conn_read(&c, r, TIMEOUT_MS);
  e2e_conn_close(&c);
}

static void round_trip(uint32_t w, uint32_t h, const char *spec) {
  img_t src = make_image(w, h, w * 7u + h);
  void *png = NULL;
  size_t len = 0;
  assert_int_equal(img_encode_png(&src, &png, &len), IMG_OK);
  char path[256];
  snprintf(path, sizeof path, "/images/process?filters=%s", spec);
  e2e_resp_t r;
  post_bytes(g.srv.port, path, "image/png", png, len, &r);
  if (r.status != 200)
    fail_msg("%s on %ux%u: %d %s", spec, w, h, r.status, r.body);
  assert_string_equal(e2e_header(&r, "Content-Type"), "image/png");
  img_t got = {0};
  assert_int_equal(img_decode_png(r.body, r.body_len, 1u << 24, &got), IMG_OK);
  assert_int_equal(got.width, w);
  assert_int_equal(got.height, h);
  ref_apply(&src, spec);
  for (size_t i = 0; i < (size_t)w * h * 4u; i++)
    if (got.rgba[i] != src.rgba[i])
      fail_msg("%s on %ux%u: byte %zu is %u, reference %u", spec, w, h, i, got.rgba[i],
               src.rgba[i]);
  img_free(&got);
  img_free(&src);
  free(png);
  e2e_resp_free(&r);
}

static void test_image_round_trips(void **state) {
  (void)state;
  round_trip(37, 23, "grayscale");
  round_trip(37, 23, "invert");
  round_trip(37, 23, "blur:2");
  round_trip(64, 48, "grayscale,invert,blur:3");
  round_trip(5, 40, "blur:32,invert"); /* radius larger than the image */
}

/* A PNG whose header declares w x h pixels (and no pixel data). */
static void *png_header_only(uint32_t w, uint32_t h, size_t *len) {
  img_t one = make_image(1, 1, 1);
  void *png = NULL;
  assert_int_equal(img_encode_png(&one, &png, len), IMG_OK);
  img_free(&one);
  unsigned char *p = png; /* signature(8) length(4) "IHDR"(4) data(13) crc(4) */
  for (int i = 0; i < 4; i++) {
    p[16 + i] = (unsigned char)(w >> (24 - 8 * i));
    p[20 + i] = (unsigned char)(h >> (24 - 8 * i));
  }
  uLong crc = crc32(0L, p + 12, 17);
  for (int i = 0; i < 4; i++)
    p[29 + i] = (unsigned char)(crc >> (24 - 8 * i));
  return png;
}

static void expect_error(const char *path, const void *body, size_t len, int status,
                         const char *code) {
  e2e_resp_t r;
  post_bytes(g.srv.port, path, "image/png", body, len, &r);
  char got[64];
  if (r.status != status || strcmp(e2e_error_code(&r, got, sizeof got), code) != 0)
    fail_msg("%s (%zu bytes): %d %s, expected %d %s", path, len, r.status, r.body, status, code);
  e2e_resp_free(&r);
}

static void test_image_errors(void **state) {
  (void)state;
  img_t img = make_image(8, 8, 3);
  void *png = NULL;
  size_t len = 0;
  assert_int_equal(img_encode_png(&img, &png, &len), IMG_OK);
  expect_error("/images/process?filters=invert", "hello, world", 12, 415, "unsupported_media_type");
  expect_error("/images/process?filters=invert", "", 0, 415, "unsupported_media_type");
  expect_error("/images/process?filters=sharpen", png, len, 400, "bad_request");
  expect_error("/images/process?filters=blur:0", png, len, 400, "bad_request");
  expect_error("/images/process?filters=blur:33", png, len, 400, "bad_request");
  unsigned char corrupt[64];
  memcpy(corrupt, png, 8);
  memset(corrupt + 8, 0x5a, sizeof corrupt - 8);
  expect_error("/images/process?filters=invert", corrupt, sizeof corrupt, 400, "bad_request");
  size_t hlen = 0;
  void *huge = png_header_only(5000, 5000, &hlen); /* 25 Mpx > the 16 Mpx cap */
  expect_error("/images/process?filters=invert", huge, hlen, 413, "image_too_large");
  free(huge);

  /* a declared body over 16 MiB: refused from the headers */
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, g.srv.port), 0);
  const char *head = "POST /images/process HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: image/png\r\nContent-Length: 16777217\r\n\r\n";
  assert_int_equal(e2e_conn_send(&c, head, strlen(head)), 0);
  e2e_resp_t r;
  e2e_conn_read(&c, &r, TIMEOUT_MS);
  char code[64];
  assert_int_equal(r.status, 413);
  assert_string_equal(e2e_error_code(&r, code, sizeof code), "payload_too_large");
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  img_free(&img);
  free(png);
}

/* Over 1 MiB: fine for images, 413 anywhere else. */
static void test_large_body_only_for_images(void **state) {
  (void)state;
  img_t img = make_image(900, 900, 11); /* noise: ~3 MiB of PNG */
  void *png = NULL;
  size_t len = 0;
  assert_int_equal(img_encode_png(&img, &png, &len), IMG_OK);
  assert_true(len > (size_t)2 * 1024 * 1024);
  e2e_resp_t r;
  post_bytes(g.srv.port, "/images/process?filters=invert", "image/png", png, len, &r);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
  /* the same declared length elsewhere: 413 from the headers (the body is
   * not sent: the server answers and closes without reading it) */
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, g.srv.port), 0);
  char head[256];
  int hn = snprintf(head, sizeof head,
                    "POST /payments HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                    len);
  assert_int_equal(e2e_conn_send(&c, head, (size_t)hn), 0);
  e2e_conn_read(&c, &r, TIMEOUT_MS);
  assert_int_equal(r.status, 413);
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  img_free(&img);
  free(png);
}

/* ------------------------------------------------------------ the pool */

/* Iterations that take about target_ms on this server. */
static int64_t calibrate(int port, double target_ms) {
  e2e_resp_t r;
  int64_t n = 2000000;
  generate(port, n, &r);
  assert_int_equal(r.status, 200);
  json_t *j = e2e_json(&r);
  double ms = json_number_value(json_object_get(j, "ms"));
  json_decref(j);
  e2e_resp_free(&r);
  double scaled = (double)n * target_ms / (ms > 0.1 ? ms : 0.1);
  return scaled > 1e10 ? 10000000000ll : (int64_t)scaled;
}

static void test_overload_and_disconnects(void **state) {
  (void)state;
  if (g.unsafe)
    skip(); /* the naive handler has no queue to fill */
  e2e_server_t s;
  const char *args[] = {"--pool-size", "1", "--pool-queue", "2", NULL};
  assert_int_equal(e2e_server_start(&s, args), 0);
  int64_t n = calibrate(s.port, 300);
  char body[64];
  snprintf(body, sizeof body, "{\"iterations\":%lld}", (long long)n);

  e2e_req_t reqs[OVERLOAD_BURST];
  e2e_resp_t r[OVERLOAD_BURST];
  for (int i = 0; i < OVERLOAD_BURST; i++)
    reqs[i] = (e2e_req_t){"POST", "/reports/generate", body, NULL};
  assert_int_equal(e2e_burst(s.port, OVERLOAD_BURST, reqs, r, TIMEOUT_MS), 0);
  e2e_print_statuses("POST /reports/generate (pool 1, queue 2)", r, OVERLOAD_BURST);
  int ok = e2e_count_status(r, OVERLOAD_BURST, 200),
      busy = e2e_count_status(r, OVERLOAD_BURST, 503);
  assert_int_equal(ok + busy, OVERLOAD_BURST);
  assert_true(ok >= 1);
  assert_true(busy >= OVERLOAD_BURST / 2);
  for (int i = 0; i < OVERLOAD_BURST; i++) {
    char code[64];
    if (r[i].status != 503)
      continue;
    assert_string_equal(e2e_error_code(&r[i], code, sizeof code), "overloaded");
    assert_non_null(e2e_header(&r[i], "Retry-After"));
  }
  e2e_burst_free(r, OVERLOAD_BURST);

  /* Clients that give up while their jobs wait: connect, send, close. */
  for (int i = 0; i < DISCONNECTS; i++) {
    e2e_conn_t c;
    assert_int_equal(e2e_conn_open(&c, s.port), 0);
    size_t len = 0;
    char *req = e2e_format("POST", "/reports/generate", body, NULL, &len);
    assert_int_equal(e2e_conn_send(&c, req, len), 0);
    free(req);
    e2e_conn_close(&c);
  }
  /* Every job runs, answers into its closed connection and is freed: the
   * queue drains, no worker stays busy, and the only request left active
   * is the /metrics scrape itself (one scrape: one moment). */
  double until = e2e_now_ms() + TIMEOUT_MS, queued, running, active;
  for (;;) {
    e2e_resp_t m;
    e2e_call(s.port, "GET", "/metrics", NULL, &m);
    queued = e2e_metric_in(&m, "racefree_pool_queue_depth");
    running = e2e_metric_in(&m, "racefree_pool_busy_workers");
    active = e2e_metric_in(&m, "racefree_active_requests");
    e2e_resp_free(&m);
    if ((queued == 0 && running == 0 && active == 1) || e2e_now_ms() > until)
      break;
    usleep(50 * 1000);
  }
  if (queued != 0 || running != 0 || active != 1)
    fail_msg("after the disconnected jobs: queue %.0f, busy %.0f, active requests %.0f", queued,
             running, active);
  /* Still serving CPU work. A disconnected request the server reads late
   * (a loaded machine) may still hold the queue for a moment after the
   * scrape above saw it empty: "overloaded" is retried for a while, but the
   * pool must come back. */
  e2e_resp_t h;
  double retry_until = e2e_now_ms() + TIMEOUT_MS / 4;
  for (;;) {
    generate(s.port, 10, &h);
    if (h.status != 503 || e2e_now_ms() > retry_until)
      break;
    e2e_resp_free(&h);
    usleep(100 * 1000);
  }
  assert_int_equal(h.status, 200);
  e2e_resp_free(&h);
  assert_int_equal(e2e_server_stop(&s), 0); /* clean exit (and, under ASan, no leak) */
}

int main(int argc, char **argv) {
  if (argc != 2 || (strcmp(argv[1], "safe") != 0 && strcmp(argv[1], "unsafe") != 0)) {
    fprintf(stderr, "usage: %s safe|unsafe\n", argv[0]);
    return 2;
  }
  g.unsafe = strcmp(argv[1], "unsafe") == 0;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_generate_results),
      cmocka_unit_test(test_image_round_trips),
      cmocka_unit_test(test_image_errors),
      cmocka_unit_test(test_large_body_only_for_images),
      cmocka_unit_test(test_overload_and_disconnects),
  };
  char group[64];
  snprintf(group, sizeof group, "e2e_cpu_%s", argv[1]);
  return cmocka_run_group_tests_name(group, tests, setup, teardown);
}
