/* e2e_limits.c - racefreed at and beyond its limits (docs/server.md, "HTTP
 * details" and "Hardening"): slow clients, many connections, header and
 * parameter counts, body limits per route, unsupported versions.
 *
 * Each case checks the answer's status and shape (JSON error body, or for
 * the few answers libmicrohttpd makes itself, the status and
 * Connection: close), that it came at once, then that the database did not
 * change (a fingerprint of every row) and that the server still serves.
 * One server (--connection-timeout 2) for the whole file.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_http.h"
#include "e2e_server.h"

#define MIB (1024 * 1024)

static e2e_server_t srv;
static uint64_t fingerprint;

static int group_setup(void **state) {
  (void)state;
  const char *args[] = {"--workers", "1", "--connection-timeout", "2", "--connection-limit",
                        "600",       NULL};
  if (e2e_server_start(&srv, args) != 0)
    return -1;
  e2e_resp_t r;
  int ok = 1;
  e2e_call(srv.port, "PUT", "/inventory/items/sku-1", "{\"stock\":5}", &r);
  ok &= r.status == 200;
  e2e_resp_free(&r);
  e2e_call(srv.port, "PUT", "/wallets/alice", "{\"balance\":100}", &r);
  ok &= r.status == 200;
  e2e_resp_free(&r);
  fingerprint = e2e_db_fingerprint(srv.db_path);
  return ok && fingerprint != 0 ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&srv);
  int rc = e2e_server_stop(&srv);
  return alive && rc == 0 ? 0 : -1;
}

/* The data is intact and the server answers, promptly. */
static void assert_intact(void) {
  assert_int_equal(e2e_db_fingerprint(srv.db_path), fingerprint);
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/inventory/items/sku-1", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(e2e_json_int(&r, "stock"), 5);
  assert_true(r.ms < 1000);
  e2e_resp_free(&r);
  e2e_call(srv.port, "GET", "/wallets/alice", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(e2e_json_int(&r, "balance"), 100);
  e2e_resp_free(&r);
}

static void assert_json_error(const e2e_resp_t *r, int status, const char *code) {
  if (r->status != status)
    fprintf(stderr, "  got %d (err %d): %.200s\n", r->status, r->err, r->body ? r->body : "");
  assert_int_equal(r->status, status);
  const char *ct = e2e_header(r, "Content-Type");
  assert_non_null(ct);
  assert_non_null(strstr(ct, "application/json"));
  json_t *j = e2e_json(r);
  assert_non_null(j);
  json_t *e = json_object_get(j, "error");
  assert_true(json_is_object(e));
  assert_true(json_is_string(json_object_get(e, "message")));
  assert_string_equal(json_string_value(json_object_get(e, "code")), code);
  json_decref(j);
}

/* Raw bytes on a fresh connection; one answer within 5 s. */
static void raw(const char *req, size_t len, e2e_resp_t *r) {
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, srv.port), 0);
  e2e_conn_send(&c, req, len); /* the server may answer and close before the end */
  e2e_conn_read(&c, r, 5000);
  e2e_conn_close(&c);
}

/* A GET with `nheaders` extra headers of `vlen`-byte values. */
static char *with_headers(int nheaders, size_t vlen, size_t *len) {
  size_t cap = 64 + (size_t)nheaders * (vlen + 16);
  char *req = malloc(cap), *val = malloc(vlen + 1);
  assert_non_null(req);
  assert_non_null(val);
  memset(val, 'v', vlen);
  val[vlen] = '\0';
  size_t n = (size_t)snprintf(req, cap, "GET /api/count HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < nheaders; i++)
    n += (size_t)snprintf(req + n, cap - n, "X-H%d: %s\r\n", i, val);
  n += (size_t)snprintf(req + n, cap - n, "\r\n");
  free(val);
  *len = n;
  return req;
}

static void test_header_counts(void **state) {
  (void)state;
  size_t len;
  e2e_resp_t r;
  char *req = with_headers(50, 20, &len); /* ordinary */
  raw(req, len, &r);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
  free(req);
  /* 2,000 headers, and one 40 KiB header: beyond the 32 KiB pool. */
  const int counts[] = {2000, 1};
  const size_t sizes[] = {4, 40000};
  for (int i = 0; i < 2; i++) {
    req = with_headers(counts[i], sizes[i], &len);
    raw(req, len, &r);
    assert_int_equal(r.status, 431); /* libmicrohttpd's own answer (docs/server.md) */
    assert_true(r.ms < 2000);
    assert_non_null(e2e_header(&r, "Connection"));
    e2e_resp_free(&r);
    free(req);
  }
  assert_intact();
}

static void test_parameter_counts_and_target_lengths(void **state) {
  (void)state;
  size_t cap = 64 * 1024;
  char *req = malloc(cap);
  assert_non_null(req);
  const struct {
    int params;
    size_t pad; /* bytes of one extra parameter's value */
    int status;
  } cases[] = {
      {100, 0, 200},       /* the limit */
      {101, 0, 414},       /* one more: racefreed's JSON 414 */
      {1000, 0, 414},      /* what used to hold the connection 30 s */
      {1, 10 * 1024, 414}, /* a 10 KiB target: over racefreed's 8 KiB */
      {1, 40 * 1024, 414}, /* 40 KiB: beyond the 32 KiB pool (HTML) */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = (size_t)snprintf(req, cap, "GET /api/count?");
    for (int p = 1; p < cases[i].params; p++)
      n += (size_t)snprintf(req + n, cap - n, "k%d=v&", p);
    n += (size_t)snprintf(req + n, cap - n, "last=");
    memset(req + n, 'x', cases[i].pad);
    n += cases[i].pad;
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    e2e_resp_t r;
    raw(req, n, &r);
    if (cases[i].status == 200)
      assert_int_equal(r.status, 200);
    else if (cases[i].pad <= 16 * 1024)
      assert_json_error(&r, 414, "uri_too_long");
    else
      assert_int_equal(r.status, 414);
    assert_true(r.ms < 2000);
    e2e_resp_free(&r);
  }
  free(req);
  assert_intact();
}

static void test_body_limits_per_route(void **state) {
  (void)state;
  e2e_conn_t c = {.fd = -1, .port = srv.port};
  e2e_resp_t r;
  /* Declared too large: 413 from Content-Length, before any body byte. */
  const struct {
    const char *method, *path;
    size_t len;
  } declared[] = {
      {"PUT", "/inventory/items/sku-1", MIB + 1},   {"POST", "/users", MIB + 1},
      {"POST", "/wallets/alice/withdraw", MIB + 1}, {"POST", "/payments", MIB + 1},
      {"POST", "/images/process", 16 * MIB + 1},
  };
  for (size_t i = 0; i < sizeof declared / sizeof declared[0]; i++) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     declared[i].method, declared[i].path, declared[i].len);
    raw(head, (size_t)n, &r);
    assert_json_error(&r, 413, "payload_too_large");
    assert_true(r.ms < 2000);
    e2e_resp_free(&r);
  }
  /* Really sent: 1 MiB + 1 of JSON-ish bytes to a 1 MiB route. */
  char *big = malloc(MIB + 2);
  assert_non_null(big);
  memset(big, ' ', MIB + 1);
  big[0] = '{';
  big[MIB] = '}';
  big[MIB + 1] = '\0';
  e2e_conn_call(&c, "PUT", "/inventory/items/sku-1", big, NULL, &r, 10000);
  assert_json_error(&r, 413, "payload_too_large");
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  /* Exactly 1 MiB is read and judged on its content (400, not 413). */
  big[MIB - 1] = '}';
  big[MIB] = '\0';
  c.fd = -1;
  e2e_conn_call(&c, "PUT", "/inventory/items/sku-1", big, NULL, &r, 10000);
  assert_json_error(&r, 400, "bad_request");
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  /* Chunked past the limit: 413 as soon as it passes, connection closed. */
  e2e_conn_t k;
  assert_int_equal(e2e_conn_open(&k, srv.port), 0);
  const char head[] = "PUT /inventory/items/sku-1 HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n";
  assert_int_equal(e2e_conn_send(&k, head, sizeof head - 1), 0);
  char chunk[64];
  int hn = snprintf(chunk, sizeof chunk, "%x\r\n", 64 * 1024);
  for (int i = 0; i < 20; i++) { /* 1.25 MiB */
    if (e2e_conn_send(&k, chunk, (size_t)hn) != 0 || e2e_conn_send(&k, big, 64 * 1024) != 0 ||
        e2e_conn_send(&k, "\r\n", 2) != 0)
      break;
  }
  e2e_conn_send(&k, "0\r\n\r\n", 5);
  e2e_conn_read(&k, &r, 5000);
  assert_json_error(&r, 413, "payload_too_large");
  e2e_resp_free(&r);
  e2e_conn_close(&k);
  free(big);
  assert_intact();
}

static void test_unsupported_version(void **state) {
  (void)state;
  const char req[] = "GET /api/count HTTP/2.0\r\nHost: x\r\n\r\n";
  e2e_resp_t r;
  raw(req, sizeof req - 1, &r);
  assert_int_equal(r.status, 505); /* libmicrohttpd's own answer (docs/server.md) */
  assert_true(r.ms < 2000);
  e2e_resp_free(&r);
  assert_intact();
}

/* Clients that send part of a request and stall (slowloris) are cut off
 * by the connection timeout (2 s here); others are served meanwhile. */
static void test_slow_clients(void **state) {
  (void)state;
  enum { SLOW = 20 };
  e2e_conn_t slow[SLOW];
  for (int i = 0; i < SLOW; i++) {
    assert_int_equal(e2e_conn_open(&slow[i], srv.port), 0);
    assert_int_equal(e2e_conn_send(&slow[i], "GET /api", 8), 0);
  }
  double t0 = e2e_now_ms();
  int closed = 0;
  while (e2e_now_ms() - t0 < 4500 && closed < SLOW) {
    e2e_resp_t r; /* others are served while the slow ones hold their connections */
    e2e_call(srv.port, "GET", "/health", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(r.ms < 1000);
    e2e_resp_free(&r);
    closed = 0;
    for (int i = 0; i < SLOW; i++) {
      if (slow[i].fd < 0) {
        closed++;
        continue;
      }
      struct pollfd p = {.fd = slow[i].fd, .events = POLLIN};
      char b[512];
      if (poll(&p, 1, 0) == 1 && recv(slow[i].fd, b, sizeof b, MSG_DONTWAIT) <= 0) {
        e2e_conn_close(&slow[i]);
        slow[i].fd = -1;
        closed++;
      }
    }
    usleep(200 * 1000);
  }
  for (int i = 0; i < SLOW; i++)
    if (slow[i].fd >= 0)
      e2e_conn_close(&slow[i]);
  double took = e2e_now_ms() - t0;
  fprintf(stderr, "  %d of %d stalled clients cut off after %.0f ms\n", closed, SLOW, took);
  assert_int_equal(closed, SLOW);
  assert_true(took > 1500); /* by the timeout, not at once */
  assert_intact();
}

/* Hundreds of idle connections at once (up to --connection-limit), then
 * the server still answers new ones; past the limit, connections are
 * refused or closed, never left hanging. */
static void test_many_connections(void **state) {
  (void)state;
  enum { N = 500 };
  e2e_conn_t *c = calloc(N, sizeof *c);
  assert_non_null(c);
  int opened = 0;
  for (int i = 0; i < N; i++)
    if (e2e_conn_open(&c[i], srv.port) == 0)
      opened++;
    else
      c[i].fd = -1;
  assert_int_equal(opened, N);
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/health", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_true(r.ms < 2000);
  e2e_resp_free(&r);
  /* and every one of them can be used */
  int ok = 0;
  for (int i = 0; i < N; i += 25) {
    e2e_conn_call(&c[i], "GET", "/api/count", NULL, NULL, &r, 5000);
    ok += r.status == 200;
    e2e_resp_free(&r);
  }
  assert_int_equal(ok, N / 25);
  for (int i = 0; i < N; i++)
    if (c[i].fd >= 0)
      e2e_conn_close(&c[i]);
  free(c);
  assert_intact();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_header_counts),
      cmocka_unit_test(test_parameter_counts_and_target_lengths),
      cmocka_unit_test(test_body_limits_per_route),
      cmocka_unit_test(test_unsupported_version),
      cmocka_unit_test(test_slow_clients),
      cmocka_unit_test(test_many_connections),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
