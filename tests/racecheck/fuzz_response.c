/* fuzz_response.c - libFuzzer target: HTTP response handling on
 * http-parser, fed in pieces whose sizes the input chooses, then the end of
 * the connection. Every outcome must be a complete answer or an error. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) {
    return 0;
  }
  unsigned flags = data[0] & 7u;
  size_t step = (size_t)data[1] + 1u;
  data += 2;
  size -= 2;
  rc_resp_t r = {0};
  rc_resp_reset(&r, flags);
  r.max_body = 4096;
  size_t off = 0;
  int rc = RC_RESP_MORE;
  while (off < size && rc == RC_RESP_MORE) {
    size_t len = size - off < step ? size - off : step, used = 0;
    rc = rc_resp_feed(&r, (const char *)data + off, len, &used);
    if (used > len) {
      abort();
    }
    off += used;
    if (rc == RC_RESP_MORE && used < len) {
      abort(); /* all bytes are consumed unless the message ended */
    }
  }
  if (rc == RC_RESP_MORE) {
    rc = rc_resp_eof(&r);
  }
  if (rc == RC_RESP_DONE) {
    if (r.status < 0 || r.status > 999) { /* http-parser takes any three digits */
      abort();
    }
    (void)rc_resp_header(&r, "content-type");
    (void)rc_resp_header(&r, "x-cache");
    /* the handler is reusable for the next answer on a kept-alive socket */
    rc_resp_reset(&r, flags);
    size_t used = 0;
    (void)rc_resp_feed(&r, "HTTP/1.1 204 No Content\r\n\r\n", 27, &used);
  }
  rc_resp_free(&r);
  return 0;
}
