/* e2e_hardening.c - hostile requests and operations against racefreed
 * (docs/server.md, "Hardening"):
 *
 *   - credentials in --redis / --db URLs never reach the log, stderr or an
 *     answer;
 *   - request smuggling patterns (RFC 9112 section 6.3) get one 400 and a
 *     closed connection: the bytes after them are never answered as a next
 *     request;
 *   - hundreds of query parameters get 414 at once, not silence until the
 *     connection timeout;
 *   - a NUL byte in the target gets 400; HEAD /api does not count;
 *   - a client connecting during the graceful drain is refused at once;
 *   - --bind to a non-loopback address warns that some routes are open.
 *
 * Raw sockets throughout, to 127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "e2e_http.h"
#include "e2e_server.h"

#define SECRET "Hunter2-Secret-Pw"

static e2e_server_t srv;

static int group_setup(void **state) {
  (void)state;
  const char *args[] = {"--workers", "1", "--connection-timeout", "10", NULL};
  if (e2e_server_start(&srv, args) != 0)
    return -1;
  e2e_resp_t r;
  e2e_call(srv.port, "PUT", "/inventory/items/sku-1", "{\"stock\":5}", &r);
  int ok = r.status == 200;
  e2e_resp_free(&r);
  return ok ? 0 : -1;
}

static int group_teardown(void **state) {
  (void)state;
  int alive = e2e_server_alive(&srv);
  int rc = e2e_server_stop(&srv);
  return alive && rc == 0 ? 0 : -1;
}

/* ------------------------------------------------------------ helpers */

static char *read_all(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)(n > 0 ? n : 0) + 1);
  size_t got = buf ? fread(buf, 1, (size_t)(n > 0 ? n : 0), f) : 0;
  fclose(f);
  if (buf)
    buf[got] = '\0';
  return buf;
}

/* A JSON error answer: status, Content-Type, {"error":{"code","message"}}. */
static void assert_json_error(const e2e_resp_t *r, int status, const char *code) {
  if (r->status != status)
    fprintf(stderr, "  got %d (err %d): %s\n", r->status, r->err, r->body ? r->body : "");
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

static void assert_still_serving(void) {
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/inventory/items/sku-1", NULL, &r);
  assert_int_equal(r.status, 200);
  assert_int_equal(e2e_json_int(&r, "stock"), 5);
  e2e_resp_free(&r);
}

/* The peer closed the connection (EOF or reset) within timeout_ms, having
 * sent nothing more. */
static void assert_closed(e2e_conn_t *c, int timeout_ms) {
  assert_int_equal(c->npending, 0);
  struct pollfd p = {.fd = c->fd, .events = POLLIN};
  int n = poll(&p, 1, timeout_ms);
  assert_int_equal(n, 1);
  char b[256];
  ssize_t got = recv(c->fd, b, sizeof b, 0);
  if (got > 0)
    fprintf(stderr, "  unexpected bytes after the answer: %.*s\n", (int)got, b);
  assert_true(got == 0 || (got < 0 && errno == ECONNRESET));
}

/* Send raw bytes on a fresh connection, read one answer. */
static void raw_call(const char *req, size_t len, e2e_conn_t *c, e2e_resp_t *r, int timeout_ms) {
  assert_int_equal(e2e_conn_open(c, srv.port), 0);
  assert_int_equal(e2e_conn_send(c, req, len), 0);
  e2e_conn_read(c, r, timeout_ms);
}

/* ------------------------------------------------------------ 1. secrets */

/* racefreed with a password in its Redis URL and an unreachable Redis:
 * neither the start-up warning, nor GET /ready, nor the log at exit shows
 * the password. A --db URL with a password that cannot be opened: the
 * error on stderr does not show it either. */
static void test_secrets_not_printed(void **state) {
  (void)state;
  int fd = socket(AF_INET, SOCK_STREAM, 0); /* a port nobody listens on */
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t alen = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
  char url[128];
  snprintf(url, sizeof url, "redis://:" SECRET "@127.0.0.1:%d/0", ntohs(a.sin_port));
  e2e_server_t s;
  const char *args[] = {"--redis", url, "--log-level", "debug", NULL};
  assert_int_equal(e2e_server_start(&s, args), 0);
  e2e_resp_t r;
  e2e_call(s.port, "GET", "/ready", NULL, &r);
  assert_int_equal(r.status, 503);
  assert_null(strstr(r.body, SECRET));
  e2e_resp_free(&r);
  char log_path[sizeof s.log_path];
  snprintf(log_path, sizeof log_path, "%s", s.log_path);
  setenv("RF_E2E_KEEP", "1", 1); /* read the log after the stop */
  int rc = e2e_server_stop(&s);
  unsetenv("RF_E2E_KEEP");
  close(fd);
  assert_int_equal(rc, 0);
  char *log = read_all(log_path);
  assert_non_null(log);
  assert_non_null(strstr(log, "redis://:***@127.0.0.1")); /* the warning is there, masked */
  if (strstr(log, SECRET) != NULL)
    fprintf(stderr, "%s", log);
  assert_null(strstr(log, SECRET));
  free(log);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", s.dir);
  assert_int_equal(system(cmd), 0);

  /* start-up failure with a PostgreSQL URL holding a password */
  char out[] = "/tmp/rf_e2e_secret_XXXXXX";
  int ofd = mkstemp(out);
  assert_true(ofd >= 0);
  close(ofd);
  snprintf(cmd, sizeof cmd,
           "'%s' --port 0 --db 'postgres://app:" SECRET
           "@127.0.0.1:%d/app?sslmode=disable&password=" SECRET "2' >'%s' 2>&1",
           RF_RACEFREED, ntohs(a.sin_port), out);
  int status = system(cmd);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  char *err = read_all(out);
  unlink(out);
  assert_non_null(err);
  assert_non_null(strstr(err, "error"));
  if (strstr(err, SECRET) != NULL)
    fprintf(stderr, "%s", err);
  assert_null(strstr(err, SECRET));
  free(err);
}

/* ------------------------------------------------------------ 2. smuggling */

/* The bad request, then a second request on the same connection: exactly
 * one answer (400, JSON, Connection: close), then the connection closes. */
static void expect_smuggling_refused(const char *head_and_body) {
  char req[1024];
  int n = snprintf(req, sizeof req, "%sGET /api HTTP/1.1\r\nHost: x\r\n\r\n", head_and_body);
  e2e_conn_t c;
  e2e_resp_t r;
  raw_call(req, (size_t)n, &c, &r, 5000);
  assert_json_error(&r, 400, "bad_request");
  const char *conn = e2e_header(&r, "Connection");
  assert_non_null(conn);
  assert_string_equal(conn, "close");
  assert_true(r.ms < 2000);
  e2e_resp_free(&r);
  assert_closed(&c, 3000);
  e2e_conn_close(&c);
}

static void test_smuggling(void **state) {
  (void)state;
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/api/count", NULL, &r);
  int64_t before = e2e_json_int(&r, "count");
  e2e_resp_free(&r);
  /* two different Content-Length headers */
  expect_smuggling_refused("PUT /inventory/items/sku-1 HTTP/1.1\r\nHost: x\r\n"
                           "Content-Type: application/json\r\n"
                           "Content-Length: 11\r\nContent-Length: 45\r\n\r\n{\"stock\":9}");
  /* Content-Length and Transfer-Encoding: chunked */
  expect_smuggling_refused("PUT /inventory/items/sku-1 HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "b\r\n{\"stock\":9}\r\n0\r\n\r\n");
  /* a final coding other than chunked */
  expect_smuggling_refused("PUT /inventory/items/sku-1 HTTP/1.1\r\nHost: x\r\n"
                           "Transfer-Encoding: chunked, gzip\r\n\r\n");
  expect_smuggling_refused("POST /users HTTP/1.1\r\nHost: x\r\n"
                           "Transfer-Encoding: identity\r\n\r\n");
  /* the same length twice, once as a list */
  expect_smuggling_refused("PUT /inventory/items/sku-1 HTTP/1.1\r\nHost: x\r\n"
                           "Content-Length: 11\r\nContent-Length: 11, 11\r\n\r\n{\"stock\":9}");
  /* none of the trailing GET /api requests ran, no body was applied */
  e2e_call(srv.port, "GET", "/api/count", NULL, &r);
  assert_int_equal(e2e_json_int(&r, "count"), before);
  e2e_resp_free(&r);
  assert_still_serving();
  /* plain chunked and a repeated equal Content-Length still work */
  const char ok[] = "PUT /inventory/items/sku-2 HTTP/1.1\r\nHost: x\r\n"
                    "Transfer-Encoding: chunked\r\n\r\nb\r\n{\"stock\":7}\r\n0\r\n\r\n";
  e2e_conn_t c;
  raw_call(ok, sizeof ok - 1, &c, &r, 5000);
  assert_int_equal(r.status, 200);
  e2e_resp_free(&r);
  e2e_conn_close(&c);
}

/* ------------------------------------------------------------ 3. limits */

static void test_many_query_parameters(void **state) {
  (void)state;
  size_t cap = 16384;
  char *req = malloc(cap);
  assert_non_null(req);
  for (int nparams = 100; nparams <= 600; nparams += 500) {
    size_t n = (size_t)snprintf(req, cap, "GET /api/count?");
    for (int i = 0; i < nparams; i++)
      n += (size_t)snprintf(req + n, cap - n, "%sk%d=v", i ? "&" : "", i);
    n += (size_t)snprintf(req + n, cap - n, " HTTP/1.1\r\nHost: x\r\n\r\n");
    e2e_conn_t c;
    e2e_resp_t r;
    raw_call(req, n, &c, &r, 5000);
    if (nparams <= 100) {
      assert_int_equal(r.status, 200);
    } else {
      assert_json_error(&r, 414, "uri_too_long");
      assert_true(r.ms < 2000); /* at once, not at the connection timeout */
    }
    e2e_resp_free(&r);
    e2e_conn_close(&c);
  }
  free(req);
  assert_still_serving();
}

static void test_nul_in_target(void **state) {
  (void)state;
  static const char raw_nul[] = "GET /inventory/items/sku-1\0zz HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char pct_nul[] = "GET /inventory/items/sku-1%00zz HTTP/1.1\r\nHost: x\r\n\r\n";
  static const char query_nul[] = "GET /api/count?x=%00 HTTP/1.1\r\nHost: x\r\n\r\n";
  const struct {
    const char *req;
    size_t len;
  } cases[] = {{raw_nul, sizeof raw_nul - 1},
               {pct_nul, sizeof pct_nul - 1},
               {query_nul, sizeof query_nul - 1}};
  for (size_t i = 0; i < 3; i++) {
    e2e_conn_t c;
    e2e_resp_t r;
    raw_call(cases[i].req, cases[i].len, &c, &r, 5000);
    assert_json_error(&r, 400, "bad_request");
    e2e_resp_free(&r);
    e2e_conn_close(&c);
  }
  assert_still_serving();
}

static void test_head_does_not_count(void **state) {
  (void)state;
  e2e_resp_t r;
  e2e_call(srv.port, "GET", "/api/count", NULL, &r);
  int64_t before = e2e_json_int(&r, "count");
  e2e_resp_free(&r);
  for (int i = 0; i < 3; i++) { /* raw: the client's parser would wait for a body */
    e2e_conn_t c;
    assert_int_equal(e2e_conn_open(&c, srv.port), 0);
    const char head[] = "HEAD /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_int_equal(e2e_conn_send(&c, head, sizeof head - 1), 0);
    char buf[1024];
    size_t n = 0;
    ssize_t got;
    while (n < sizeof buf - 1 && (got = recv(c.fd, buf + n, sizeof buf - 1 - n, 0)) > 0)
      n += (size_t)got;
    buf[n] = '\0';
    assert_true(strncmp(buf, "HTTP/1.1 200", 12) == 0);
    e2e_conn_close(&c);
  }
  e2e_call(srv.port, "GET", "/api/count", NULL, &r);
  assert_int_equal(e2e_json_int(&r, "count"), before);
  e2e_resp_free(&r);
  e2e_call(srv.port, "GET", "/api", NULL, &r);
  e2e_resp_free(&r);
  e2e_call(srv.port, "GET", "/api/count", NULL, &r);
  assert_int_equal(e2e_json_int(&r, "count"), before + 1);
  e2e_resp_free(&r);
}

static void test_huge_number_names_field(void **state) {
  (void)state;
  e2e_resp_t r;
  e2e_call(srv.port, "PUT", "/inventory/items/sku-1", "{\"stock\":1e309}", &r);
  assert_json_error(&r, 400, "bad_request");
  assert_non_null(strstr(r.body, "\\\"stock\\\""));
  e2e_resp_free(&r);
  assert_still_serving();
}

/* ------------------------------------------------------------ 4. drain */

/* A slow request in flight, SIGTERM, then a new client: refused (or
 * answered 503) at once, while the request in flight still completes. */
static void drain_case(const char *workers) {
  e2e_server_t s;
  const char *args[] = {"--workers", workers, "--upstream-latency-ms", "1500", NULL};
  assert_int_equal(e2e_server_start(&s, args), 0);
  e2e_conn_t slow;
  assert_int_equal(e2e_conn_open(&slow, s.port), 0);
  const char get[] = "GET /cache/drain-key HTTP/1.1\r\nHost: x\r\n\r\n";
  assert_int_equal(e2e_conn_send(&slow, get, sizeof get - 1), 0);
  usleep(300 * 1000);
  assert_int_equal(kill(s.pid, SIGTERM), 0);
  usleep(300 * 1000); /* the drain has started */
  double t0 = e2e_now_ms();
  e2e_conn_t late;
  int rc = e2e_conn_open(&late, s.port);
  int status = 0;
  if (rc == 0) {
    const char h[] = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    e2e_resp_t r;
    if (e2e_conn_send(&late, h, sizeof h - 1) == 0) {
      e2e_conn_read(&late, &r, 5000);
      status = r.status;
      e2e_resp_free(&r);
    }
    e2e_conn_close(&late);
  }
  double ms = e2e_now_ms() - t0;
  fprintf(stderr, "  workers %s: new client during the drain: connect %d, status %d, %.0f ms\n",
          workers, rc, status, ms);
  assert_true(status == 0 || status == 503);
  assert_true(ms < 400); /* refused at once, not ~1 s later when the process exits */
  e2e_resp_t r;
  e2e_conn_read(&slow, &r, 5000);
  assert_int_equal(r.status, 200); /* the request in flight still finished */
  e2e_resp_free(&r);
  e2e_conn_close(&slow);
  assert_int_equal(e2e_server_stop(&s), 0);
}

static void test_drain_refuses_new_clients(void **state) {
  (void)state;
  drain_case("1");
  drain_case("2");
}

/* ------------------------------------------------------------ 7. bind */

static int log_has(const e2e_server_t *s, const char *needle) {
  char *log = read_all(s->log_path);
  int found = log != NULL && strstr(log, needle) != NULL;
  free(log);
  return found;
}

static void test_bind_warning(void **state) {
  (void)state;
  assert_false(log_has(&srv, "not a loopback address"));
  e2e_server_t s;
  const char *args[] = {"--bind", "0.0.0.0",
                        NULL}; /* for about a second; we connect to 127.0.0.1 */
  assert_int_equal(e2e_server_start(&s, args), 0);
  int warned = log_has(&s, "not a loopback address") && log_has(&s, "/metrics") &&
               log_has(&s, "/emails/sent");
  assert_int_equal(e2e_server_stop(&s), 0);
  assert_true(warned);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_secrets_not_printed),
      cmocka_unit_test(test_smuggling),
      cmocka_unit_test(test_many_query_parameters),
      cmocka_unit_test(test_nul_in_target),
      cmocka_unit_test(test_head_does_not_count),
      cmocka_unit_test(test_huge_number_names_field),
      cmocka_unit_test(test_drain_refuses_new_clients),
      cmocka_unit_test(test_bind_warning),
  };
  return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
