/* fuzz_cookie.c - libFuzzer target: the cookie jar on arbitrary Set-Cookie
 * lines (one per input line), then the Cookie header for a few URLs. It
 * must never crash, leak or grow past its bound. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cookie.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = rc_xstrndup((const char *)data, size);
  rc_jar_t jar = {0};
  static const char *const hosts[] = {"example.com", "a.example.com", "127.0.0.1"};
  static const char *const paths[] = {"/", "/a/b?x=1", "", "/other/x"};
  size_t k = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), k++) {
    rc_jar_set(&jar, line, hosts[k % 3], paths[k % 4], 1700000000);
  }
  if (jar.n > RC_JAR_MAX) {
    abort();
  }
  for (size_t i = 0; i < 12; i++) {
    rc_buf_t b = {0};
    rc_jar_header(&jar, hosts[i % 3], paths[i % 4], (int)(i & 1), &b);
    rc_buf_free(&b);
  }
  rc_jar_free(&jar);
  free(text);
  return 0;
}
