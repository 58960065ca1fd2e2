/* e2e_badinput.c - malformed and hostile requests against racefreed.
 *
 * Every case sends one bad request and asserts the answer API.md gives
 * (status, error code, and for 400 that the message names the field), then
 * that the database did not change (a fingerprint of every row of every
 * table, read from the SQLite file) and that the server still serves
 * (GET /health). One server for the whole file, with a user, an item and a
 * wallet in it so that "nothing changed" covers real rows.
 */
#include <errno.h>
#include <inttypes.h>
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

static e2e_server_t srv;

static int group_setup(void **state) {
  (void)state;
  /* a short connection timeout so that the stalled-client case is quick */
  const char *args[] = {"--workers", "1", "--connection-timeout", "3", NULL};
  if (e2e_server_start(&srv, args) != 0)
    return -1;
  e2e_resp_t r;
  int ok = 1;
  e2e_call(srv.port, "POST", "/users", "{\"email\":\"owner@example.com\"}", &r);
  ok &= r.status == 201;
  e2e_resp_free(&r);
  e2e_call(srv.port, "PUT", "/inventory/items/sku-1", "{\"stock\":5}", &r);
  ok &= r.status == 200;
  e2e_resp_free(&r);
  e2e_call(srv.port, "PUT", "/wallets/alice", "{\"balance\":100}", &r);
  ok &= r.status == 200;
  e2e_resp_free(&r);
  if (!ok) {
    fprintf(stderr, "e2e: could not create the fixture rows\n");
    e2e_server_stop(&srv);
    return -1;
  }
  return 0;
}

static int group_teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&srv);
  int rc = e2e_server_stop(&srv);
  return alive && rc == 0 ? 0 : -1;
}

static void assert_still_serving(void) {
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/health", NULL, &r);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
}

/* Send one request; assert status, error code (NULL: any JSON error body,
 * "": do not look at the body) and, when `field` is set, that the message
 * names it; then that the database is unchanged and the server serves. */
static void expect(const char *method, const char *path, const char *body, int status,
                   const char *code, const char *field) {
  uint64_t before = e2e_db_fingerprint(srv.db_path);
  assert_true(before != 0);
  e2e_resp_t r;
  e2e_call(srv.port, method, path, body, &r);
  if (r.status != status)
    fprintf(stderr, "  %s %s %s -> %d %s\n", method, path, body ? body : "", r.status, r.body);
  assert_int_equal(r.status, status);
  if (!code || code[0]) {
    json_t *j = e2e_json(&r);
    const char *c = NULL, *msg = NULL;
    assert_non_null(j);
    assert_int_equal(json_unpack(j, "{s:{s:s,s:s}}", "error", "code", &c, "message", &msg), 0);
    if (code)
      assert_string_equal(c, code);
    if (field && !strstr(msg, field)) {
      fprintf(stderr, "  message \"%s\" does not name \"%s\"\n", msg, field);
      fail();
    }
    json_decref(j);
  }
  e2e_resp_free(&r);
  assert_true(e2e_db_fingerprint(srv.db_path) == before);
  assert_still_serving();
}

#define BAD(method, path, body, field) expect(method, path, body, 400, "bad_request", field)

/* ---------------------------------------------------------------- JSON */

static void test_malformed_json(void **state) {
  (void)state;
  BAD("POST", "/users", "{\"email\":", NULL);
  BAD("POST", "/users", "", NULL);
  BAD("POST", "/users", "not json", NULL);
  BAD("POST", "/users", "[\"a@b.c\"]", NULL);
  BAD("POST", "/users", "\"a@b.c\"", NULL);
  BAD("POST", "/users", "{\"email\":\"a@b.c\"} trailing", NULL);
  BAD("POST", "/users", "{\"email\":\"a@b.c\",}", NULL);
  BAD("POST", "/users", "{\"email\":\"\xff\xfe@b.c\"}", NULL); /* not UTF-8 */
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"sku-1\" \"quantity\":1}", NULL);
  BAD("PUT", "/wallets/alice", "{balance:1}", NULL);
}

static void test_missing_extra_wrong_fields(void **state) {
  (void)state;
  BAD("POST", "/users", "{}", "email");
  BAD("POST", "/users", "{\"mail\":\"a@b.c\"}", NULL);
  BAD("POST", "/users", "{\"email\":5}", "email");
  BAD("POST", "/users", "{\"email\":null}", "email");
  BAD("POST", "/users", "{\"email\":[\"a@b.c\"]}", "email");
  BAD("POST", "/users", "{\"email\":\"new@b.c\",\"admin\":true}", "admin");
  BAD("PUT", "/inventory/items/sku-1", "{}", "stock");
  BAD("PUT", "/inventory/items/sku-1", "{\"stock\":\"5\"}", "stock");
  BAD("PUT", "/inventory/items/sku-1", "{\"stock\":true}", "stock");
  BAD("PUT", "/inventory/items/sku-1", "{\"stock\":5,\"price\":3}", "price");
  BAD("POST", "/inventory/purchase", "{\"quantity\":1}", "itemId");
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"sku-1\"}", "quantity");
  BAD("POST", "/inventory/purchase", "{\"itemId\":7,\"quantity\":1}", "itemId");
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"sku-1\",\"quantity\":\"1\"}", "quantity");
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"sku-1\",\"quantity\":1,\"x\":1}", "x");
  BAD("PUT", "/wallets/alice", "{}", "balance");
  BAD("PUT", "/wallets/alice", "{\"balance\":null}", "balance");
  BAD("POST", "/wallets/alice/withdraw", "{}", "amount");
  BAD("POST", "/wallets/alice/withdraw", "{\"amount\":\"10\"}", "amount");
  BAD("POST", "/wallets/alice/deposit", "{\"amount\":{}}", "amount");
  BAD("POST", "/wallets/alice/deposit", "{\"amount\":5,\"to\":\"bob\"}", "to");
}

static void test_bad_emails(void **state) {
  (void)state;
  BAD("POST", "/users", "{\"email\":\"\"}", "email");
  BAD("POST", "/users", "{\"email\":\"   \"}", "email");
  BAD("POST", "/users", "{\"email\":\"no-at-sign\"}", "email");
  BAD("POST", "/users", "{\"email\":\"two@@example.com\"}", "email");
  BAD("POST", "/users", "{\"email\":\"a@b@c\"}", "email");
  BAD("POST", "/users", "{\"email\":\"@example.com\"}", "email");
  BAD("POST", "/users", "{\"email\":\"user@\"}", "email");
  BAD("POST", "/users", "{\"email\":\"a\\u0000b@c.d\"}", "email"); /* NUL inside */
  char body[400];
  char local[256];
  memset(local, 'a', 250);
  local[250] = '\0';
  snprintf(body, sizeof body, "{\"email\":\"%s@b.cd\"}", local); /* 255 chars */
  BAD("POST", "/users", body, "email");
  /* the fixture's address again, in other letter case: a conflict */
  expect("POST", "/users", "{\"email\":\" OWNER@example.COM\"}", 409, "conflict", NULL);
}

/* ------------------------------------------------------------- numbers */

static void test_bad_numbers(void **state) {
  (void)state;
  /* Numbers that do not fit 64 bits cannot be parsed at all, so the
   * message may not name the field for those (named == 0). */
  static const struct {
    const char *text;
    int named;
  } stock[] = {{"-1", 1},   {"1.5", 1},
               {"1e3", 1},  {"1000000000001", 1},
               {"-0.0", 1}, {"99999999999999999999999", 0},
               {"NaN", 0},  {"0x10", 0}},
    qty[] = {{"0", 1},   {"-1", 1},
             {"2.5", 1}, {"1000000000001", 1},
             {"1.0", 1}, {"18446744073709551617", 0}};
  for (size_t i = 0; i < sizeof stock / sizeof stock[0]; i++) {
    char body[96];
    snprintf(body, sizeof body, "{\"stock\":%s}", stock[i].text);
    BAD("PUT", "/inventory/items/sku-1", body, stock[i].named ? "stock" : NULL);
  }
  for (size_t i = 0; i < sizeof qty / sizeof qty[0]; i++) {
    char body[128];
    snprintf(body, sizeof body, "{\"itemId\":\"sku-1\",\"quantity\":%s}", qty[i].text);
    BAD("POST", "/inventory/purchase", body, qty[i].named ? "quantity" : NULL);
    snprintf(body, sizeof body, "{\"amount\":%s}", qty[i].text);
    BAD("POST", "/wallets/alice/withdraw", body, qty[i].named ? "amount" : NULL);
    BAD("POST", "/wallets/alice/deposit", body, qty[i].named ? "amount" : NULL);
  }
  BAD("PUT", "/wallets/alice", "{\"balance\":-1}", "balance");
  BAD("PUT", "/wallets/alice", "{\"balance\":0.5}", "balance");
  BAD("PUT", "/wallets/alice", "{\"balance\":1000000000001}", "balance");
  /* in range but impossible: the right 4xx, nothing changed */
  expect("POST", "/inventory/purchase", "{\"itemId\":\"sku-1\",\"quantity\":6}", 409,
         "out_of_stock", NULL);
  expect("POST", "/wallets/alice/withdraw", "{\"amount\":101}", 409, "insufficient_funds", NULL);
}

/* ----------------------------------------------------------------- ids */

static void test_bad_ids(void **state) {
  (void)state;
  char longid[140], path[200], body[260];
  memset(longid, 'x', 129);
  longid[129] = '\0';
  snprintf(path, sizeof path, "/inventory/items/%s", longid);
  BAD("PUT", path, "{\"stock\":1}", NULL);
  BAD("GET", path, NULL, NULL);
  snprintf(path, sizeof path, "/wallets/%s", longid);
  BAD("PUT", path, "{\"balance\":1}", NULL);
  snprintf(body, sizeof body, "{\"itemId\":\"%s\",\"quantity\":1}", longid);
  BAD("POST", "/inventory/purchase", body, "itemId");
  const char *bad[] = {"a%20b", "a%2Fb", "%C3%A9t%C3%A9", "a$b", "a%00b", "semi;colon"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(path, sizeof path, "/inventory/items/%s", bad[i]);
    BAD("PUT", path, "{\"stock\":1}", NULL);
    snprintf(path, sizeof path, "/wallets/%s/deposit", bad[i]);
    BAD("POST", path, "{\"amount\":1}", NULL);
  }
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"a b\",\"quantity\":1}", "itemId");
  BAD("POST", "/inventory/purchase", "{\"itemId\":\"\",\"quantity\":1}", "itemId");
  /* 128 characters is still a valid id: an unknown item, not bad input */
  longid[128] = '\0';
  snprintf(path, sizeof path, "/inventory/items/%s", longid);
  expect("GET", path, NULL, 404, "not_found", NULL);
  expect("POST", "/inventory/purchase", "{\"itemId\":\"nope\",\"quantity\":1}", 404, "not_found",
         NULL);
  expect("GET", "/users/987654321", NULL, 404, "not_found", NULL);
  expect("POST", "/wallets/nobody/withdraw", "{\"amount\":1}", 404, "not_found", NULL);
}

/* -------------------------------------------------------- HTTP framing */

static void test_routes_and_methods(void **state) {
  (void)state;
  expect("GET", "/nope", NULL, 404, "not_found", NULL);
  expect("GET", "/api/nope/deeper", NULL, 404, "not_found", NULL);
  expect("POST", "/", "{}", 404, "not_found", NULL);
  static const struct {
    const char *method, *path, *allow;
  } cases[] = {
      {"POST", "/api", "GET"},
      {"DELETE", "/users", "POST"},
      {"GET", "/users", "POST"},
      {"GET", "/inventory/purchase", "POST"},
      {"DELETE", "/inventory/items/sku-1", "PUT"},
      {"PATCH", "/wallets/alice", "GET"},
      {"GET", "/wallets/alice/withdraw", "POST"},
      {"PUT", "/health", "GET"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint64_t before = e2e_db_fingerprint(srv.db_path);
    e2e_resp_t r;
    e2e_call(srv.port, cases[i].method, cases[i].path, "{}", &r);
    assert_int_equal(r.status, 405);
    char code[64];
    assert_string_equal(e2e_error_code(&r, code, sizeof code), "method_not_allowed");
    const char *allow = e2e_header(&r, "Allow");
    assert_non_null(allow);
    assert_non_null(strstr(allow, cases[i].allow));
    e2e_resp_free(&r);
    assert_true(e2e_db_fingerprint(srv.db_path) == before);
  }
  assert_still_serving();
}

static void test_body_too_large(void **state) {
  (void)state;
  size_t n = (1u << 20) + 1; /* 1 MiB + 1: a valid JSON document, too big */
  char *body = malloc(n + 1);
  assert_non_null(body);
  memset(body, ' ', n);
  memcpy(body, "{\"email\":\"big@example.com\"}", 27);
  body[n] = '\0';
  expect("POST", "/users", body, 413, "", NULL);
  /* announced only: Content-Length over the limit, no body sent */
  uint64_t before = e2e_db_fingerprint(srv.db_path);
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, srv.port), 0);
  const char *head = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 5000000\r\n\r\n";
  assert_int_equal(e2e_conn_send(&c, head, strlen(head)), 0);
  e2e_resp_t r;
  e2e_conn_read(&c, &r, 10000);
  assert_int_equal(r.status, 413);
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  /* exactly 1 MiB is accepted (and is a valid sign-up) */
  body[(1u << 20)] = '\0';
  e2e_call(srv.port, "POST", "/users", body, &r);
  assert_int_equal(r.status, 201);
  e2e_resp_free(&r);
  assert_true(e2e_db_fingerprint(srv.db_path) != before);
  free(body);
  assert_still_serving();
}

/* Raw bytes on a connection: the answer, if any, must be a 4xx; the
 * connection may be closed instead. Returns the status (0: closed). */
static int raw_exchange(const char *data, size_t n) {
  e2e_conn_t c;
  assert_int_equal(e2e_conn_open(&c, srv.port), 0);
  e2e_conn_send(&c, data, n); /* the server may close before reading all */
  e2e_resp_t r;
  e2e_conn_read(&c, &r, 10000);
  int st = r.status;
  e2e_resp_free(&r);
  e2e_conn_close(&c);
  return st;
}

static void test_garbage_request_line(void **state) {
  (void)state;
  uint64_t before = e2e_db_fingerprint(srv.db_path);
  /* Each answered with a 4xx, or (an unknown HTTP version) 505, or by
   * closing the connection. */
  static const struct {
    const char *raw;
    int also; /* another acceptable status besides 4xx and a close */
  } cases[] = {
      {"GARBAGE\r\n\r\n", 0},
      {"GET\r\n\r\n", 0},
      {"GET /api HTTP/9.9\r\nHost: x\r\n\r\n", 505},
      {"\x01\x02\x03\x04 / HTTP/1.1\r\n\r\n", 0},
      {"GET /api HTTP/1.1\r\nNo colon here\r\n\r\n", 0},
      {"POST /users HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 0},
      {"POST /users HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int st = raw_exchange(cases[i].raw, strlen(cases[i].raw));
    int ok = st == 0 || (st >= 400 && st < 500) || (cases[i].also && st == cases[i].also);
    if (!ok)
      fprintf(stderr, "  case %zu answered %d\n", i, st);
    assert_true(ok);
  }
  assert_true(e2e_db_fingerprint(srv.db_path) == before);
  assert_still_serving();
}

static void test_enormous_header(void **state) {
  (void)state;
  uint64_t before = e2e_db_fingerprint(srv.db_path);
  size_t big = (size_t)256 * 1024;
  char *req = malloc(big + 128);
  assert_non_null(req);
  int n = snprintf(req, 128, "GET /api HTTP/1.1\r\nHost: x\r\nX-Big: ");
  memset(req + n, 'b', big);
  memcpy(req + n + big, "\r\n\r\n", 5);
  int st = raw_exchange(req, (size_t)n + big + 4);
  fprintf(stderr, "  256 KiB header: %d\n", st);
  assert_true(st == 0 || st == 400 || st == 413 || st == 431);
  /* many headers instead of one big one */
  size_t off = (size_t)snprintf(req, 64, "GET /api HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; off + 32 < big; i++)
    off += (size_t)snprintf(req + off, 32, "X-H%d: v\r\n", i);
  memcpy(req + off, "\r\n", 3);
  st = raw_exchange(req, off + 2);
  fprintf(stderr, "  many headers: %d\n", st);
  assert_true(st == 0 || st == 400 || st == 413 || st == 431);
  free(req);
  assert_true(e2e_db_fingerprint(srv.db_path) == before);
  assert_still_serving();
}

/* Clients that send half a request and stall hold a connection each, but
 * nothing else: others are served at normal speed meanwhile, and the
 * server closes the stalled connections after its connection timeout
 * (3 s here; the limit allows for a loaded machine). */
enum { STALLED = 16, STALL_LIMIT_S = 20 }; /* server: --connection-timeout 3 */

static void test_stalled_clients(void **state) {
  (void)state;
  uint64_t before = e2e_db_fingerprint(srv.db_path);
  e2e_conn_t stalled[STALLED];
  const char *half = "POST /users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     "Content-Length: 40\r\n\r\n{\"email\":\"stall";
  for (int i = 0; i < STALLED; i++) {
    assert_int_equal(e2e_conn_open(&stalled[i], srv.port), 0);
    const char *data = i % 2 ? half : "GET /api HTTP/1.1\r\nHost: x\r\n"; /* body or headers */
    assert_int_equal(e2e_conn_send(&stalled[i], data, strlen(data)), 0);
  }
  double worst = 0;
  for (int i = 0; i < 50; i++) {
    e2e_resp_t r;
    e2e_call(srv.port, "GET", "/api", NULL, &r);
    assert_int_equal(r.status, 200);
    if (r.ms > worst)
      worst = r.ms;
    e2e_resp_free(&r);
  }
  fprintf(stderr, "  with %d stalled clients: slowest GET /api %.1f ms\n", STALLED, worst);
  assert_true(worst < 1000);
  /* now wait for the server to drop them */
  double t0 = e2e_now_ms(), last = 0;
  int open = STALLED;
  while (open > 0 && e2e_now_ms() - t0 < STALL_LIMIT_S * 1000.0) {
    open = 0;
    for (int i = 0; i < STALLED; i++) {
      if (stalled[i].fd < 0)
        continue;
      struct pollfd pf = {.fd = stalled[i].fd, .events = POLLIN};
      if (poll(&pf, 1, 0) == 1) { /* readable: EOF/RST, or an error answer */
        char buf[512];
        ssize_t n = recv(stalled[i].fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n <= 0) {
          e2e_conn_close(&stalled[i]);
          last = e2e_now_ms() - t0;
          continue;
        }
      }
      open++;
    }
    if (open)
      usleep(100 * 1000);
  }
  fprintf(stderr, "  stalled connections closed by the server after %.1f s (%d still open)\n",
          last / 1000.0, open);
  for (int i = 0; i < STALLED; i++)
    e2e_conn_close(&stalled[i]);
  assert_int_equal(open, 0);
  assert_true(e2e_db_fingerprint(srv.db_path) == before);
  assert_still_serving();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malformed_json),
      cmocka_unit_test(test_missing_extra_wrong_fields),
      cmocka_unit_test(test_bad_emails),
      cmocka_unit_test(test_bad_numbers),
      cmocka_unit_test(test_bad_ids),
      cmocka_unit_test(test_routes_and_methods),
      cmocka_unit_test(test_garbage_request_line),
      cmocka_unit_test(test_enormous_header),
      cmocka_unit_test(test_body_too_large),
      cmocka_unit_test(test_stalled_clients),
  };
  return cmocka_run_group_tests_name("e2e_badinput", tests, group_setup, group_teardown);
}
