/* test_rc_cookie.c - the cookie jar: host-only and Domain cookies, Path and
 * its default, Max-Age and Expires, Secure, replacement and order, bounds
 * (RFC 6265 basics, as tough-cookie -- Artillery's jar -- applies them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cookie.h"

#define NOW 1700000000 /* 2023-11-14 */

static char *header(const rc_jar_t *j, const char *host, const char *path, int https) {
  rc_buf_t b = {0};
  rc_jar_header(j, host, path, https, &b);
  rc_buf_append(&b, "", 0);
  return rc_buf_steal(&b);
}

static void expect_header(const rc_jar_t *j, const char *host, const char *path, int https,
                          const char *want) {
  char *h = header(j, host, path, https);
  if (strcmp(h, want) != 0) {
    fail_msg("%s%s: '%s', want '%s'", host, path, h, want);
  }
  free(h);
}

static void test_domain_and_path(void **state) {
  (void)state;
  rc_jar_t j = {0};
  rc_jar_set(&j, "host=1", "shop.example.com", "/", NOW);
  rc_jar_set(&j, "dom=2; Domain=.example.com; Path=/", "shop.example.com", "/", NOW);
  rc_jar_set(&j, "evil=3; Domain=other.com", "shop.example.com", "/", NOW);
  rc_jar_set(&j, "sub=4; Domain=deep.shop.example.com", "shop.example.com", "/", NOW);
  rc_jar_set(&j, "dir=5", "shop.example.com", "/a/b/c?q=1", NOW);
  rc_jar_set(&j, "p=6; Path=/a", "shop.example.com", "/", NOW);
  rc_jar_set(&j, "bad", "shop.example.com", "/", NOW); /* no '=': ignored */
  assert_int_equal(j.n, 4);
  expect_header(&j, "shop.example.com", "/", 0, "host=1; dom=2");
  expect_header(&j, "www.example.com", "/", 0, "dom=2"); /* Domain covers subdomains */
  expect_header(&j, "example.com", "/", 0, "dom=2");     /* and the domain itself */
  expect_header(&j, "badexample.com", "/", 0, "");       /* not a suffix at a dot */
  expect_header(&j, "shop.example.com", "/a/b/x", 0, "dir=5; p=6; host=1; dom=2");
  expect_header(&j, "shop.example.com", "/a", 0, "p=6; host=1; dom=2");
  expect_header(&j, "shop.example.com", "/ab", 0, "host=1; dom=2"); /* /a is no prefix of /ab */
  rc_jar_free(&j);
}

static void test_expiry_secure_replace(void **state) {
  (void)state;
  rc_jar_t j = {0};
  rc_jar_set(&j, "a=1", "h", "/", NOW);
  rc_jar_set(&j, "b=2; Secure", "h", "/", NOW);
  rc_jar_set(&j, "c=3; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "h", "/", NOW); /* past */
  rc_jar_set(&j, "d=4; Expires=Wed, 21 Oct 2099 07:28:00 GMT", "h", "/", NOW);
  rc_jar_set(&j, "e=5; Max-Age=60; Expires=Wed, 21 Oct 2015 07:28:00 GMT", "h", "/", NOW);
  expect_header(&j, "h", "/", 0, "a=1; d=4; e=5");
  expect_header(&j, "h", "/", 1, "a=1; b=2; d=4; e=5");
  rc_jar_set(&j, "a=new", "h", "/", NOW); /* replaced in place */
  expect_header(&j, "h", "/", 0, "a=new; d=4; e=5");
  rc_jar_set(&j, "d=x; Max-Age=0", "h", "/", NOW); /* removed */
  expect_header(&j, "h", "/", 0, "a=new; e=5");
  rc_jar_free(&j);
  /* bounded: the oldest goes */
  for (int i = 0; i < RC_JAR_MAX + 10; i++) {
    char sc[32];
    snprintf(sc, sizeof sc, "k%d=%d", i, i);
    rc_jar_set(&j, sc, "h", "/", NOW);
  }
  assert_int_equal(j.n, RC_JAR_MAX);
  char *h = header(&j, "h", "/", 0);
  assert_null(strstr(h, "k9="));
  assert_non_null(strstr(h, "k10=10"));
  free(h);
  rc_jar_free(&j);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_domain_and_path),
      cmocka_unit_test(test_expiry_secure_replace),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
