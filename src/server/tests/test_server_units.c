/* test_server_units.c - racefreed's pure modules: request decoding and
 * validation, routing, option precedence (flags > environment > file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "racefree/errors.h"

#include "decode.h"
#include "options.h"
#include "redact.h"
#include "router.h"

#define BODY(s) (s), strlen(s)

/* ------------------------------------------------------------ decode */

static void test_ids(void **state) {
  (void)state;
  assert_true(srv_valid_id("a", 1));
  assert_true(srv_valid_id("item-1.A_b:c", 12));
  assert_false(srv_valid_id("", 0));
  assert_false(srv_valid_id("a b", 3));
  assert_false(srv_valid_id("a/b", 3));
  assert_false(srv_valid_id("é", 2));
  char id[129];
  memset(id, 'x', 128);
  id[128] = '\0';
  assert_true(srv_valid_id(id, 128));
  char out[SRV_ID_MAX + 1];
  srv_decode_err_t err;
  assert_int_equal(srv_decode_id(id, "itemId", out, &err), 0);
  assert_string_equal(out, id);
  char longer[130];
  memset(longer, 'x', 129);
  longer[129] = '\0';
  assert_int_equal(srv_decode_id(longer, "itemId", out, &err), RF_EINVAL);
  assert_string_equal(err.field, "itemId");
  assert_non_null(strstr(err.message, "\"itemId\""));
  assert_int_equal(srv_decode_id(NULL, "key", out, &err), RF_EINVAL);
}

static void test_user_ids(void **state) {
  (void)state;
  int64_t v;
  srv_decode_err_t err;
  assert_int_equal(srv_decode_user_id("1", &v, &err), 0);
  assert_int_equal(v, 1);
  assert_int_equal(srv_decode_user_id("9223372036854775807", &v, &err), 0);
  assert_int_equal(v, INT64_MAX);
  assert_int_equal(srv_decode_user_id("9223372036854775808", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id("0", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id("01", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id("-1", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id("1a", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id("", &v, &err), RF_EINVAL);
  assert_int_equal(srv_decode_user_id(NULL, &v, &err), RF_EINVAL);
  assert_string_equal(err.field, "id");
}

static void test_email(void **state) {
  (void)state;
  srv_user_create_req_t r;
  srv_decode_err_t err;
  assert_int_equal(srv_decode_user_create(BODY("{\"email\":\"  Foo@Example.COM\\t\"}"), &r, &err),
                   0);
  assert_string_equal(r.email, "foo@example.com");
  static const char *const bad[] = {
      "{\"email\":\"\"}",
      "{\"email\":\"   \"}",
      "{\"email\":\"nobody\"}",
      "{\"email\":\"@x\"}",
      "{\"email\":\"x@\"}",
      "{\"email\":\"a@b@c\"}",
      "{\"email\":\"a b@c\"}",
      "{\"email\":\"a\\u0001@c\"}",
      "{\"email\":5}",
      "{\"email\":null}",
      "{}",
      "{\"email\":\"a@b\",\"x\":1}",
      "{\"email\":[\"a@b\"]}",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    assert_int_equal(srv_decode_user_create(BODY(bad[i]), &r, &err), RF_EINVAL);
    assert_true(strlen(err.message) > 0);
  }
  /* 254 bytes is the limit, after trimming */
  char body[400], local[300];
  memset(local, 'a', 252);
  local[252] = '\0';
  snprintf(body, sizeof body, "{\"email\":\" %s@b \"}", local); /* 254 */
  assert_int_equal(srv_decode_user_create(BODY(body), &r, &err), 0);
  assert_int_equal(strlen(r.email), 254);
  snprintf(body, sizeof body, "{\"email\":\"%sa@b\"}", local); /* 255 */
  assert_int_equal(srv_decode_user_create(BODY(body), &r, &err), RF_EINVAL);
  assert_string_equal(err.field, "email");
}

static void test_integers(void **state) {
  (void)state;
  srv_purchase_req_t p;
  srv_decode_err_t err;
  assert_int_equal(srv_decode_purchase(BODY("{\"itemId\":\"i-1\",\"quantity\":3}"), &p, &err), 0);
  assert_string_equal(p.item_id, "i-1");
  assert_int_equal(p.quantity, 3);
  assert_int_equal(
      srv_decode_purchase(BODY("{\"quantity\":1000000000000,\"itemId\":\"x\"}"), &p, &err), 0);
  assert_int_equal(p.quantity, 1000000000000ll);
  static const struct {
    const char *body;
    const char *field;
  } bad[] = {
      {"{\"itemId\":\"i\",\"quantity\":0}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":-1}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":1000000000001}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":1.0}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":1e3}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":\"1\"}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":true}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":99999999999999999999999}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":1e309}", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\" : -1E+400 }", "quantity"},
      {"{\"itemId\":\"i\",\"quantity\":1,\"other\":1e309}", "other"},
      {"{\"itemId\":\"i\"}", "quantity"},
      {"{\"itemId\":\"\",\"quantity\":1}", "itemId"},
      {"{\"itemId\":7,\"quantity\":1}", "itemId"},
      {"{\"itemId\":\"i\",\"quantity\":1,\"extra\":{}}", "extra"},
      {"{\"itemId\":\"i\",\"itemId\":\"j\",\"quantity\":1}", ""},
      {"{\"itemId\":\"i\",\"quantity\":1", ""},
      {"[]", ""},
      {"\"x\"", ""},
      {"", ""},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    memset(&err, 0, sizeof err);
    assert_int_equal(srv_decode_purchase(BODY(bad[i].body), &p, &err), RF_EINVAL);
    assert_string_equal(err.field, bad[i].field);
    if (bad[i].field[0] != '\0')
      assert_non_null(strstr(err.message, bad[i].field));
  }
  srv_item_put_req_t s;
  assert_int_equal(srv_decode_item_put(BODY("{\"stock\":0}"), &s, &err), 0);
  srv_wallet_put_req_t w;
  assert_int_equal(srv_decode_wallet_put(BODY("{\"balance\":0}"), &w, &err), 0);
  srv_amount_req_t a;
  assert_int_equal(srv_decode_amount(BODY("{\"amount\":0}"), &a, &err), RF_EINVAL);
  assert_int_equal(srv_decode_amount(BODY("{\"amount\":7}"), &a, &err), 0);
  assert_int_equal(a.amount, 7);
}

static void test_messages_are_ascii(void **state) {
  (void)state;
  srv_amount_req_t a;
  srv_decode_err_t err;
  const char body[] = "{\"amount\":\xff}";
  assert_int_equal(srv_decode_amount(body, sizeof body - 1, &a, &err), RF_EINVAL);
  for (const char *p = err.message; *p; p++)
    assert_true(*p >= 0x20 && *p < 0x7f);
  const char key[] = "{\"\xc3\xa9\x01\":1}";
  assert_int_equal(srv_decode_amount(key, sizeof key - 1, &a, &err), RF_EINVAL);
  for (const char *p = err.message; *p; p++)
    assert_true(*p >= 0x20 && *p < 0x7f);
}

/* ------------------------------------------------------------ router */

static void h(void) {}

static const srv_route_t routes[] = {
    {"/", h, SRV_M_GET, 0},
    {"/api", h, SRV_M_GET, 0},
    {"/api/count", h, SRV_M_GET, 0},
    {"/items/{id}", h, SRV_M_PUT, 0},
    {"/items/{id}", h, SRV_M_GET, 0},
    {"/wallets/{user}/withdraw", h, SRV_M_POST, 0},
    {"/a/{x}/b/{y}", h, SRV_M_GET, 0},
};
#define NR (sizeof routes / sizeof routes[0])

static void test_router(void **state) {
  (void)state;
  srv_match_t m;
  assert_int_equal(srv_router_match(routes, NR, "GET", "/", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.index, 0);
  assert_int_equal(srv_router_match(routes, NR, "GET", "/api", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.index, 1);
  assert_int_equal(srv_router_match(routes, NR, "HEAD", "/api/count", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.index, 2);
  assert_int_equal(srv_router_match(routes, NR, "PUT", "/items/abc", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.index, 3);
  assert_int_equal(m.nparams, 1);
  assert_int_equal(m.params[0].len, 3);
  assert_memory_equal(m.params[0].p, "abc", 3);
  assert_int_equal(srv_router_match(routes, NR, "GET", "/items/abc", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.index, 4);
  assert_int_equal(srv_router_match(routes, NR, "GET", "/a/1/b/22", &m), SRV_ROUTE_FOUND);
  assert_int_equal(m.nparams, 2);
  assert_memory_equal(m.params[1].p, "22", 2);
  assert_int_equal(srv_router_match(routes, NR, "POST", "/wallets/u/withdraw", &m),
                   SRV_ROUTE_FOUND);

  /* 405 with the methods the path accepts */
  assert_int_equal(srv_router_match(routes, NR, "DELETE", "/items/abc", &m), SRV_ROUTE_BAD_METHOD);
  assert_int_equal(m.allow, SRV_M_GET | SRV_M_PUT);
  char buf[64];
  assert_string_equal(srv_allow_header(m.allow, buf, sizeof buf), "GET, HEAD, PUT");
  assert_int_equal(srv_router_match(routes, NR, "BREW", "/api", &m), SRV_ROUTE_BAD_METHOD);
  assert_int_equal(srv_router_match(routes, NR, "GET", "/wallets/u/withdraw", &m),
                   SRV_ROUTE_BAD_METHOD);
  assert_string_equal(srv_allow_header(m.allow, buf, sizeof buf), "POST");

  /* 404: no prefix, no trailing slash, no empty parameter */
  static const char *const missing[] = {
      "",         "api",   "/api/",  "/apix",   "/api/count/1", "/items/", "/items",
      "/items//", "//api", "/a/1/b", "/a//b/2", "/wallets/u",   "/Api"};
  for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++)
    assert_int_equal(srv_router_match(routes, NR, "GET", missing[i], &m), SRV_ROUTE_NOT_FOUND);
  assert_int_equal(srv_router_match(routes, NR, "GET", NULL, &m), SRV_ROUTE_NOT_FOUND);
}

static void test_unescape(void **state) {
  (void)state;
  static const struct {
    const char *in, *keep, *final;
  } cases[] = {
      {"/items/a%2Fb", "/items/a%2Fb", "/items/a/b"},
      {"/ap%69", "/api", "/api"},
      {"a%252F", "a%252F", "a%2F"},
      {"a%00b", "a%00b", "a%00b"},
      {"%zz%4", "%zz%4", "%zz%4"},
      {"%41%2f%25%20", "A%2f%25 ", "A/% "},
      {"", "", ""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[64];
    snprintf(buf, sizeof buf, "%s", cases[i].in);
    assert_int_equal(srv_unescape_keep(buf), strlen(cases[i].keep));
    assert_string_equal(buf, cases[i].keep);
    assert_int_equal(srv_unescape_final(buf), strlen(cases[i].final));
    assert_string_equal(buf, cases[i].final);
  }
  srv_match_t m;
  char path[] = "/items/a%2Fb";
  srv_unescape_keep(path);
  assert_int_equal(srv_router_match(routes, NR, "GET", path, &m), SRV_ROUTE_FOUND);
}

static void test_nul_in_strings(void **state) {
  (void)state;
  srv_purchase_req_t p;
  srv_user_create_req_t u;
  srv_decode_err_t err;
  assert_int_equal(srv_decode_purchase(BODY("{\"itemId\":\"a\\u0000b\",\"quantity\":1}"), &p, &err),
                   RF_EINVAL);
  assert_string_equal(err.field, "itemId");
  assert_int_equal(srv_decode_user_create(BODY("{\"email\":\"a\\u0000b@c.d\"}"), &u, &err),
                   RF_EINVAL);
  assert_string_equal(err.field, "email");
  assert_non_null(strstr(err.message, "email"));
}

/* ------------------------------------------------------------ options */

static char *write_tmp(const char *content) {
  char *path = strdup("/tmp/rfd_opts_XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, content, strlen(content)), (ssize_t)strlen(content));
  close(fd);
  return path;
}

static int load(srv_options_t *o, char *const *argv, int argc, char *const *envp, char *err,
                srv_opts_action_t *action) {
  return srv_options_load(o, argc, argv, envp, action, err, 512);
}

static void test_options_defaults(void **state) {
  (void)state;
  srv_options_t o;
  srv_opts_action_t a;
  char err[512] = "";
  char *argv[] = {"racefreed", NULL};
  assert_int_equal(load(&o, argv, 1, NULL, err, &a), 0);
  assert_int_equal(a, SRV_OPTS_RUN);
  assert_string_equal(o.bind, "127.0.0.1");
  assert_int_equal(o.port, 3000);
  assert_string_equal(o.db, "sqlite:./data/racefree.db");
  assert_string_equal(o.redis, "");
  assert_int_equal(o.workers, 1);
  assert_int_equal(o.pool_queue, 64);
  assert_int_equal(o.job_workers, 2);
  assert_int_equal(o.upstream_latency_ms, 50);
  assert_int_equal(o.charge_latency_ms, 50);
  assert_int_equal(o.email_latency_ms, 20);
  assert_int_equal(o.cache_ttl_ms, 60000);
  assert_int_equal(o.cache_max_entries, 100000);
  assert_int_equal(o.occ_retries, 8);
  assert_int_equal(o.job_attempts, 5);
  assert_false(o.unsafe);
  assert_int_equal(o.log_format, SRV_LOG_TEXT);
  assert_int_equal(o.log_level, SRV_LOG_INFO);
  assert_int_equal(o.threads, 0);
  srv_options_resolve_cores(&o, 6);
  assert_int_equal(o.threads, 6);
  assert_int_equal(o.pool_size, 6);
}

static void test_options_precedence(void **state) {
  (void)state;
  char *file = write_tmp("# a comment\n\nport = 1111\nworkers=3\nlog-format = json\n"
                         "upstream_latency_ms = \"7\"\nunsafe = yes\n");
  char cfg[300];
  snprintf(cfg, sizeof cfg, "--config=%s", file);
  srv_options_t o;
  srv_opts_action_t a;
  char err[512] = "";

  /* file only */
  char *argv1[] = {"racefreed", cfg, NULL};
  assert_int_equal(load(&o, argv1, 2, NULL, err, &a), 0);
  assert_int_equal(o.port, 1111);
  assert_int_equal(o.workers, 3);
  assert_int_equal(o.log_format, SRV_LOG_JSON);
  assert_int_equal(o.upstream_latency_ms, 7);
  assert_true(o.unsafe);
  assert_string_equal(o.config_file, file);

  /* environment beats the file; RACEFREE_CONFIG names the file */
  char envcfg[300];
  snprintf(envcfg, sizeof envcfg, "RACEFREE_CONFIG=%s", file);
  char *env[] = {
      envcfg, "RACEFREE_PORT=2222", "RACEFREE_UNSAFE=0", "RACEFREE_NOT_AN_OPTION=x", "PATH=/bin",
      NULL};
  char *argv2[] = {"racefreed", NULL};
  assert_int_equal(load(&o, argv2, 1, env, err, &a), 0);
  assert_int_equal(o.port, 2222);
  assert_int_equal(o.workers, 3);
  assert_false(o.unsafe);

  /* flags beat both, in both spellings; the last flag wins */
  char *argv3[] = {"racefreed",   "--port",    "3333", "--unsafe",
                   "--workers=4", "--workers", "5",    NULL};
  assert_int_equal(load(&o, argv3, 7, env, err, &a), 0);
  assert_int_equal(o.port, 3333);
  assert_true(o.unsafe);
  assert_int_equal(o.workers, 5);
  assert_int_equal(o.log_format, SRV_LOG_JSON); /* still from the file */

  /* --port 0 is allowed */
  char *argv4[] = {"racefreed", "--port", "0", NULL};
  assert_int_equal(load(&o, argv4, 3, NULL, err, &a), 0);
  assert_int_equal(o.port, 0);
  unlink(file);
  free(file);
}

static void test_options_json_file(void **state) {
  (void)state;
  char *file = write_tmp("{\"port\": 4444, \"unsafe\": true, \"db\": \"sqlite:/tmp/x.db\", "
                         "\"log_level\": \"debug\"}");
  char cfg[300];
  snprintf(cfg, sizeof cfg, "--config=%s", file);
  srv_options_t o;
  srv_opts_action_t a;
  char err[512] = "";
  char *argv[] = {"racefreed", cfg, NULL};
  assert_int_equal(load(&o, argv, 2, NULL, err, &a), 0);
  assert_int_equal(o.port, 4444);
  assert_true(o.unsafe);
  assert_string_equal(o.db, "sqlite:/tmp/x.db");
  assert_int_equal(o.log_level, SRV_LOG_DEBUG);
  unlink(file);
  free(file);
  /* A string longer than the option holds is refused, naming the key, in
   * both file forms (it used to be cut to 1,023 bytes without a word). */
  static char big[3000];
  memset(big, 'a', sizeof big - 1);
  const char *const forms[] = {"{\"app_config\": \"/%s\"}", "app-config = /%s\n"};
  for (size_t i = 0; i < 2; i++) {
    char *text = malloc(sizeof big + 64);
    assert_non_null(text);
    for (size_t n = 1022; n <= 1024; n++) { /* "/" + n bytes: 1023 fits, 1024 and 1025 do not */
      snprintf(text, sizeof big + 64, forms[i], big + sizeof big - 1 - n);
      char *f = write_tmp(text);
      snprintf(cfg, sizeof cfg, "--config=%s", f);
      char *argv2[] = {"racefreed", cfg, NULL};
      err[0] = '\0';
      int rc = load(&o, argv2, 2, NULL, err, &a);
      if (n + 1 < SRV_PATH_MAX) {
        assert_int_equal(rc, 0);
        assert_int_equal(strlen(o.app_config), n + 1);
      } else {
        assert_int_equal(rc, RF_EINVAL);
        assert_non_null(strstr(err, "app"));
        assert_non_null(strstr(err, "too long"));
      }
      unlink(f);
      free(f);
    }
    free(text);
  }
}

static void test_options_errors(void **state) {
  (void)state;
  srv_options_t o;
  srv_opts_action_t a;
  char err[512];
  static const struct {
    int argc;
    const char *argv[4];
    const char *needle;
  } bad[] = {
      {2, {"r", "--nope"}, "--nope"},
      {3, {"r", "--port", "65536"}, "--port"},
      {3, {"r", "--port", "-1"}, "--port"},
      {3, {"r", "--port", "12x"}, "--port"},
      {2, {"r", "--port"}, "missing value"},
      {3, {"r", "--workers", "0"}, "--workers"},
      {3, {"r", "--log-format", "xml"}, "--log-format"},
      {3, {"r", "--db", "mysql://x"}, "--db"},
      {3, {"r", "--redis", "http://x"}, "--redis"},
      {2, {"r", "--unsafe=maybe"}, "--unsafe"},
      {2, {"r", "positional"}, "positional"},
      {2, {"r", "--config"}, "--config"},
      {3, {"r", "--config", "/nonexistent/racefreed.conf"}, "/nonexistent/racefreed.conf"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    int rc =
        srv_options_load(&o, bad[i].argc, (char *const *)bad[i].argv, NULL, &a, err, sizeof err);
    assert_true(rc < 0);
    assert_non_null(strstr(err, bad[i].needle));
  }
  char *env[] = {"RACEFREE_PORT=abc", NULL};
  char *argv[] = {"r", NULL};
  assert_int_equal(srv_options_load(&o, 1, argv, env, &a, err, sizeof err), RF_EINVAL);
  assert_non_null(strstr(err, "RACEFREE_PORT"));

  char *file = write_tmp("port = 1\nbogus = 2\n");
  char cfg[300];
  snprintf(cfg, sizeof cfg, "--config=%s", file);
  char *argv2[] = {"r", cfg, NULL};
  assert_int_equal(srv_options_load(&o, 2, argv2, NULL, &a, err, sizeof err), RF_EINVAL);
  assert_non_null(strstr(err, "line 2"));
  assert_non_null(strstr(err, "bogus"));
  unlink(file);
  free(file);
}

static void test_options_meta(void **state) {
  (void)state;
  srv_options_t o;
  srv_opts_action_t a;
  char err[512];
  char *argv[] = {"r", "--port", "nonsense", "--help", NULL};
  assert_int_equal(srv_options_load(&o, 4, argv, NULL, &a, err, sizeof err), 0);
  assert_int_equal(a, SRV_OPTS_HELP);
  char *argv2[] = {"r", "--version", NULL};
  assert_int_equal(srv_options_load(&o, 2, argv2, NULL, &a, err, sizeof err), 0);
  assert_int_equal(a, SRV_OPTS_VERSION);
  assert_int_equal(srv_options_set(&o, "cache_ttl_ms", "5", err, sizeof err), 0);
  assert_int_equal(o.cache_ttl_ms, 5);
  assert_int_equal(srv_options_set(&o, "redis", "off", err, sizeof err), 0);
  assert_string_equal(o.redis, "");
  FILE *devnull = fopen("/dev/null", "w");
  srv_options_usage(devnull, "racefreed");
  srv_options_markdown(devnull);
  fclose(devnull);
}

/* ------------------------------------------------------------ redaction */

static void expect_redacted(const char *in, const char *want) {
  char out[512];
  srv_url_redact(in, out, sizeof out);
  if (strcmp(out, want) != 0)
    fprintf(stderr, "  redact(%s) = %s, want %s\n", in, out, want);
  assert_string_equal(out, want);
}

static void test_redact(void **state) {
  (void)state;
  expect_redacted("redis://:s3cret@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0");
  expect_redacted("redis://default:s3cret@h:6379", "redis://default:***@h:6379");
  expect_redacted("rediss://s3cret@h", "rediss://***@h");
  expect_redacted("redis://127.0.0.1:6379", "redis://127.0.0.1:6379");
  expect_redacted("postgres://user:pa:ss@db.example/app", "postgres://user:***@db.example/app");
  expect_redacted("postgresql://user@db/app", "postgresql://user@db/app");
  expect_redacted("postgres://u:p@w@db/app?sslmode=off", "postgres://u:***@db/app?sslmode=off");
  expect_redacted("postgres://db/app?user=u&password=s3cret&sslmode=require",
                  "postgres://db/app?user=u&password=***&sslmode=require");
  expect_redacted("host=db user=u password=s3cret dbname=app",
                  "host=db user=u password=*** dbname=app");
  expect_redacted("host=db password = 'a b\\' c' dbname=app", "host=db password = *** dbname=app");
  expect_redacted("PASSWORD=x", "PASSWORD=***");
  expect_redacted("sqlite:./data/racefree.db", "sqlite:./data/racefree.db");
  /* free text quoting a URL, as error messages do */
  expect_redacted("--redis redis://:hunter2@h:1: connection refused",
                  "--redis redis://:***@h:1: connection refused");
  expect_redacted("store: cannot open 'postgres://a:hunter2@h/d' (timeout)",
                  "store: cannot open 'postgres://a:***@h/d' (timeout)");
  expect_redacted("", "");
  expect_redacted("://x@y", "://x@y");
  /* truncation never shows the secret */
  char small[12];
  srv_url_redact("redis://:hunter2@host:6379", small, sizeof small);
  assert_null(strstr(small, "hunter"));
  assert_int_equal(strlen(small), sizeof small - 1);
  srv_url_redact("x", small, 0); /* cap 0: nothing written */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ids),
      cmocka_unit_test(test_user_ids),
      cmocka_unit_test(test_email),
      cmocka_unit_test(test_integers),
      cmocka_unit_test(test_messages_are_ascii),
      cmocka_unit_test(test_router),
      cmocka_unit_test(test_unescape),
      cmocka_unit_test(test_nul_in_strings),
      cmocka_unit_test(test_options_defaults),
      cmocka_unit_test(test_options_precedence),
      cmocka_unit_test(test_options_json_file),
      cmocka_unit_test(test_options_errors),
      cmocka_unit_test(test_options_meta),
      cmocka_unit_test(test_redact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
