/* test_rc_http.c - response handling on http-parser (pure: chunked,
 * keep-alive, Connection: close, read-until-close, truncated, not HTTP,
 * split at every byte) and the event-loop connections against an in-test
 * socket server (keep-alive reuse, reconnection after close, errors and
 * time-outs reported, never a crash). */
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "http.h"
#include "net.h"
#include "rc_testsrv.h"

/* ------------------------------------------------------------ pure */

static int feed_all(rc_resp_t *r, const char *s, size_t step, size_t *consumed) {
  size_t n = strlen(s), off = 0;
  int rc = RC_RESP_MORE;
  while (off < n) {
    size_t len = step && n - off > step ? step : n - off, used = 0;
    rc = rc_resp_feed(r, s + off, len, &used);
    off += used;
    if (rc != RC_RESP_MORE) {
      break;
    }
  }
  if (consumed) {
    *consumed = off;
  }
  return rc;
}

static void test_content_length(void **state) {
  (void)state;
  const char *msg = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Cache: "
                    "miss\r\nContent-Length: 9\r\n\r\n{\"id\":12}";
  for (size_t step = 0; step <= 7; step++) { /* whole, then split at every byte */
    rc_resp_t r = {0};
    rc_resp_reset(&r, RC_RESP_BODY | RC_RESP_HEADERS);
    assert_int_equal(feed_all(&r, msg, step, NULL), RC_RESP_DONE);
    assert_int_equal(r.status, 201);
    assert_true(r.keep_alive);
    assert_string_equal(r.body.data, "{\"id\":12}");
    assert_string_equal(rc_resp_header(&r, "x-cache"), "miss");
    assert_string_equal(rc_resp_header(&r, "CONTENT-TYPE"), "application/json");
    assert_null(rc_resp_header(&r, "x-none"));
    rc_resp_free(&r);
  }
}

static void test_chunked(void **state) {
  (void)state;
  const char *msg = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n"
                    "3;ext=1\r\nefg\r\n0\r\nTrailer: x\r\n\r\n";
  for (size_t step = 0; step <= 5; step++) {
    rc_resp_t r = {0};
    rc_resp_reset(&r, RC_RESP_BODY);
    assert_int_equal(feed_all(&r, msg, step, NULL), RC_RESP_DONE);
    assert_string_equal(r.body.data, "abcdefg");
    assert_int_equal(r.body_len, 7);
    assert_true(r.keep_alive);
    rc_resp_free(&r);
  }
}

static void test_connection_close_and_http10(void **state) {
  (void)state;
  rc_resp_t r = {0};
  rc_resp_reset(&r, 0);
  assert_int_equal(
      feed_all(&r, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 0, NULL),
      RC_RESP_DONE);
  assert_false(r.keep_alive);
  rc_resp_reset(&r, 0);
  assert_int_equal(feed_all(&r, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", 0, NULL),
                   RC_RESP_DONE);
  assert_false(r.keep_alive);
  rc_resp_reset(&r, 0);
  assert_int_equal(feed_all(&r,
                            "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: "
                            "2\r\n\r\nok",
                            0, NULL),
                   RC_RESP_DONE);
  assert_true(r.keep_alive);
  rc_resp_free(&r);
}

static void test_until_close(void **state) {
  (void)state;
  rc_resp_t r = {0};
  rc_resp_reset(&r, RC_RESP_BODY);
  assert_int_equal(feed_all(&r, "HTTP/1.1 200 OK\r\n\r\nall of it", 3, NULL), RC_RESP_MORE);
  assert_int_equal(rc_resp_eof(&r), RC_RESP_DONE);
  assert_string_equal(r.body.data, "all of it");
  assert_false(r.keep_alive);
  rc_resp_free(&r);
}

static void test_truncated_and_closed(void **state) {
  (void)state;
  rc_resp_t r = {0};
  rc_resp_reset(&r, 0);
  assert_int_equal(rc_resp_eof(&r), RC_RESP_ECLOSED);
  rc_resp_reset(&r, 0);
  assert_int_equal(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123", 0, NULL),
                   RC_RESP_MORE);
  assert_int_equal(rc_resp_eof(&r), RC_RESP_ETRUNC);
  rc_resp_reset(&r, 0);
  assert_int_equal(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Le", 0, NULL), RC_RESP_MORE);
  assert_int_equal(rc_resp_eof(&r), RC_RESP_ETRUNC);
  rc_resp_reset(&r, 0);
  assert_int_equal(
      feed_all(&r, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", 0, NULL),
      RC_RESP_MORE);
  assert_int_equal(rc_resp_eof(&r), RC_RESP_ETRUNC);
  rc_resp_free(&r);
}

static void test_not_http(void **state) {
  (void)state;
  static const char *bad[] = {"hello world\r\n", "HTTP/1.1 abc OK\r\n\r\n",
                              "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                              "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rc_resp_t r = {0};
    rc_resp_reset(&r, RC_RESP_BODY | RC_RESP_HEADERS);
    int rc = feed_all(&r, bad[i], 0, NULL);
    if (rc == RC_RESP_MORE) {
      rc = rc_resp_eof(&r);
    }
    assert_true(rc == RC_RESP_EPROTO || rc == RC_RESP_ETRUNC);
    rc_resp_free(&r);
  }
}

static void test_trailing_and_head(void **state) {
  (void)state;
  rc_resp_t r = {0};
  size_t used = 0;
  const char *two = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 200 OK\r\n";
  rc_resp_reset(&r, 0);
  assert_int_equal(feed_all(&r, two, 0, &used), RC_RESP_DONE);
  assert_int_equal(used, strlen("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"));
  /* a HEAD answer announces a length but has no body */
  rc_resp_reset(&r, RC_RESP_HEAD | RC_RESP_BODY);
  assert_int_equal(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", 0, NULL),
                   RC_RESP_DONE);
  assert_int_equal(r.body_len, 0);
  /* the kept body is bounded */
  rc_resp_reset(&r, RC_RESP_BODY);
  r.max_body = 4;
  assert_int_equal(feed_all(&r, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n12345678", 0, NULL),
                   RC_RESP_ETOOBIG);
  rc_resp_free(&r);
  assert_string_equal(rc_resp_strerror(RC_RESP_ETRUNC), "ETRUNCATED");
  /* found by fuzz_response: no kept headers, lookups are simply absent */
  rc_resp_t h = {0};
  rc_resp_reset(&h, 0);
  assert_int_equal(feed_all(&h, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, NULL),
                   RC_RESP_DONE);
  assert_null(rc_resp_header(&h, "content-type"));
  rc_resp_free(&h);
}

static void test_request_build_and_url(void **state) {
  (void)state;
  rc_buf_t b = {0};
  rc_header_t h[] = {{"Content-Type", "application/json"}, {"Content-Length", "999"}};
  rc_req_build(&b, "POST", "127.0.0.1:3000", "/users?a=1", h, 2, "{}", 2);
  assert_non_null(strstr(b.data, "POST /users?a=1 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"));
  assert_non_null(strstr(b.data, "Content-Length: 2\r\n\r\n{}"));
  assert_null(strstr(b.data, "999"));
  rc_buf_free(&b);
  rc_url_t u;
  rc_err_t err = {0};
  assert_int_equal(rc_url_parse("http://localhost:8080/a/b?x=1", &u, &err), 0);
  assert_string_equal(u.host, "localhost");
  assert_int_equal(u.port, 8080);
  assert_string_equal(u.path, "/a/b?x=1");
  assert_string_equal(u.hostport, "localhost:8080");
  rc_url_free(&u);
  assert_int_equal(rc_url_parse("http://[::1]/", &u, &err), 0);
  assert_int_equal(u.port, 80);
  assert_string_equal(u.hostport, "[::1]:80");
  rc_url_free(&u);
  assert_int_equal(rc_url_parse("https://x/", &u, &err), 0); /* TLS, port 443 */
  assert_int_equal(u.tls, 1);
  assert_int_equal(u.port, 443);
  rc_url_free(&u);
  assert_int_equal(rc_url_parse("ftp://x/", &u, &err), -1);
  assert_int_equal(rc_url_parse("/relative", &u, &err), -1);
  assert_int_equal(rc_url_parse("", &u, &err), -1);
}

/* ------------------------------------------------------------ engine */

typedef struct got {
  int events, responses, errors, connected;
  int last_err, last_status;
  char body[256];
} got_t;

static void cb(rc_conn_t *c, int ev, void *ud) {
  got_t *g = ud;
  g->events++;
  if (ev == RC_CONN_EV_RESPONSE) {
    g->responses++;
    g->last_status = c->resp.status;
    snprintf(g->body, sizeof g->body, "%s", c->resp.body.data ? c->resp.body.data : "");
  } else if (ev == RC_CONN_EV_ERROR) {
    g->errors++;
    g->last_err = c->err;
  } else {
    g->connected++;
  }
}

static void wait_events(rc_loop_t *l, got_t *g, int want) {
  uint64_t end = rc_now_ns() + 5000000000ull;
  while (g->events < want && rc_now_ns() < end) {
    rc_loop_run_once(l, rc_now_ns() + 50000000ull);
  }
  assert_int_equal(g->events, want);
}

static rc_testsrv_t *srv;
static rc_addr_t addr;

static int setup(void **state) {
  (void)state;
  srv = rc_testsrv_start();
  if (!srv) {
    return -1;
  }
  rc_err_t err = {0};
  return rc_addr_resolve("127.0.0.1", rc_testsrv_port(srv), &addr, &err);
}

static int teardown(void **state) {
  (void)state;
  rc_testsrv_stop(srv);
  return 0;
}

static void send_get(rc_conn_t *c, rc_buf_t *b, const char *path, uint64_t timeout_ns) {
  rc_buf_clear(b);
  rc_req_build(b, "GET", "127.0.0.1", path, NULL, 0, NULL, 0);
  rc_conn_send(c, b->data, b->len, RC_RESP_BODY | RC_RESP_HEADERS, timeout_ns);
}

static void test_keepalive_reuse(void **state) {
  (void)state;
  rc_loop_t l;
  assert_int_equal(rc_loop_init(&l), 0);
  got_t g = {0};
  rc_conn_t c;
  rc_conn_init(&c, &l, &addr, cb, &g);
  rc_buf_t b = {0};
  uint64_t acc0 = rc_testsrv_accepted(srv);
  for (int i = 1; i <= 5; i++) {
    send_get(&c, &b, "/ok", 2000000000ull);
    wait_events(&l, &g, i);
    assert_int_equal(g.last_status, 200);
    assert_string_equal(g.body, "{\"data\":\"ok\"}");
  }
  assert_int_equal(c.nreq, 5);
  assert_int_equal(rc_testsrv_accepted(srv) - acc0, 1); /* one connection, reused */
  send_get(&c, &b, "/chunked", 2000000000ull);
  wait_events(&l, &g, 6);
  assert_string_equal(g.body, "{\"n\":1,\"parts\":[\"a\",\"b\"]}");
  rc_conn_free(&c);
  rc_buf_free(&b);
  rc_loop_free(&l);
}

static void test_close_reconnects(void **state) {
  (void)state;
  rc_loop_t l;
  assert_int_equal(rc_loop_init(&l), 0);
  got_t g = {0};
  rc_conn_t c;
  rc_conn_init(&c, &l, &addr, cb, &g);
  rc_buf_t b = {0};
  uint64_t acc0 = rc_testsrv_accepted(srv);
  send_get(&c, &b, "/close", 2000000000ull);
  wait_events(&l, &g, 1);
  assert_int_equal(g.last_status, 200);
  assert_int_equal(c.fd, -1); /* closed as the server asked */
  send_get(&c, &b, "/eof", 2000000000ull);
  wait_events(&l, &g, 2);
  assert_int_equal(g.responses, 2);
  assert_string_equal(g.body, "{\"eof\":true}");
  send_get(&c, &b, "/ok", 2000000000ull);
  wait_events(&l, &g, 3);
  assert_int_equal(g.responses, 3);
  assert_int_equal(rc_testsrv_accepted(srv) - acc0, 3);
  rc_conn_free(&c);
  rc_buf_free(&b);
  rc_loop_free(&l);
}

static void expect_error(const char *path, int want, uint64_t timeout_ns) {
  rc_loop_t l;
  assert_int_equal(rc_loop_init(&l), 0);
  got_t g = {0};
  rc_conn_t c;
  rc_conn_init(&c, &l, &addr, cb, &g);
  rc_buf_t b = {0};
  send_get(&c, &b, path, timeout_ns);
  wait_events(&l, &g, 1);
  if (g.errors != 1 || g.last_err != want) {
    fail_msg("%s: errors %d, kind %s, want %s", path, g.errors, rc_net_errname(g.last_err),
             rc_net_errname(want));
  }
  assert_int_equal(c.fd, -1);
  /* the connection is usable again after an error */
  send_get(&c, &b, "/ok", 2000000000ull);
  wait_events(&l, &g, 2);
  assert_int_equal(g.responses, 1);
  rc_conn_free(&c);
  rc_buf_free(&b);
  rc_loop_free(&l);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("/trunc", RC_NET_ETRUNCATED, 2000000000ull);
  expect_error("/garbage", RC_NET_EPROTO, 2000000000ull);
  expect_error("/reset", RC_NET_ECLOSED, 2000000000ull);
  uint64_t t0 = rc_now_ns();
  expect_error("/silent", RC_NET_ETIMEDOUT, 200000000ull);
  assert_true(rc_now_ns() - t0 < 3000000000ull);
}

static void test_refused_and_connect_first(void **state) {
  (void)state;
  /* a port nobody listens on */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
  assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
  close(fd);
  rc_addr_t dead;
  rc_err_t err = {0};
  assert_int_equal(rc_addr_resolve("127.0.0.1", ntohs(a.sin_port), &dead, &err), 0);
  rc_loop_t l;
  assert_int_equal(rc_loop_init(&l), 0);
  got_t g = {0};
  rc_conn_t c;
  rc_conn_init(&c, &l, &dead, cb, &g);
  rc_buf_t b = {0};
  send_get(&c, &b, "/ok", 2000000000ull);
  wait_events(&l, &g, 1);
  assert_int_equal(g.last_err, RC_NET_ECONNREFUSED);
  rc_conn_free(&c);
  /* connect first, send later: what a burst does */
  got_t g2 = {0};
  rc_conn_init(&c, &l, &addr, cb, &g2);
  rc_conn_connect(&c, 2000000000ull);
  assert_int_equal(g2.events, 0); /* never from inside the call */
  wait_events(&l, &g2, 1);
  assert_int_equal(g2.connected, 1);
  rc_conn_connect(&c, 2000000000ull); /* already open: reported again */
  wait_events(&l, &g2, 2);
  assert_int_equal(g2.connected, 2);
  send_get(&c, &b, "/ok", 2000000000ull);
  wait_events(&l, &g2, 3);
  assert_int_equal(g2.responses, 1);
  rc_conn_free(&c);
  rc_buf_free(&b);
  rc_loop_free(&l);
  /* resolution failures are messages, not crashes */
  assert_int_equal(rc_addr_resolve("no.such.host.invalid", 80, &dead, &err), -1);
}

static void timer_cb(void *ud, uint64_t now) {
  (void)now;
  int *order = ud;
  order[order[0] + 1] = order[0] + 1;
  order[0]++;
}

static void test_timers(void **state) {
  (void)state;
  rc_loop_t l;
  assert_int_equal(rc_loop_init(&l), 0);
  int order[8] = {0};
  uint64_t now = rc_now_ns();
  for (int i = 0; i < 5; i++) {
    rc_loop_timer(&l, now + (uint64_t)(5 - i) * 1000000ull, timer_cb, order);
  }
  assert_true(rc_loop_next_timer(&l) <= now + 1000000ull);
  uint64_t end = now + 2000000000ull;
  while (order[0] < 5 && rc_now_ns() < end) {
    rc_loop_run_once(&l, now + 100000000ull);
  }
  assert_int_equal(order[0], 5);
  assert_int_equal(rc_loop_next_timer(&l), UINT64_MAX);
  rc_loop_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_content_length),
      cmocka_unit_test(test_chunked),
      cmocka_unit_test(test_connection_close_and_http10),
      cmocka_unit_test(test_until_close),
      cmocka_unit_test(test_truncated_and_closed),
      cmocka_unit_test(test_not_http),
      cmocka_unit_test(test_trailing_and_head),
      cmocka_unit_test(test_request_build_and_url),
      cmocka_unit_test(test_keepalive_reuse),
      cmocka_unit_test(test_close_reconnects),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_refused_and_connect_first),
      cmocka_unit_test(test_timers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
