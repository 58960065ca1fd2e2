/* fuzz_png.c - libFuzzer target for the PNG path of POST /images/process:
 * untrusted bytes are decoded under a pixel cap, filtered and re-encoded.
 * The first byte picks a filter list so the filters are exercised too. */
#include <stdint.h>
#include <stdlib.h>

#include "image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *specs[] = {"", "grayscale", "invert", "blur:1", "blur:3,invert,grayscale"};
  img_filter_t filters[IMG_MAX_FILTERS];
  size_t nfilters = 0;
  const char *spec = specs[size > 0 ? data[size - 1] % 5u : 0];
  img_t img = {0};
  if (img_parse_filters(spec, filters, &nfilters, NULL, 0) != IMG_OK) {
    abort();
  }
  if (img_decode_png(data, size, 1u << 20, &img) == IMG_OK) {
    void *png = NULL;
    size_t len = 0;
    if (img_apply(&img, filters, nfilters) == IMG_OK &&
        img_encode_png(&img, &png, &len) == IMG_OK) {
      img_t back = {0};
      /* What we encode, we can decode. */
      if (img_decode_png(png, len, 1u << 20, &back) != IMG_OK) {
        abort();
      }
      img_free(&back);
      free(png);
    }
    img_free(&img);
  }
  /* The filter parser takes untrusted text too. */
  char text[64];
  size_t n = size < sizeof(text) - 1 ? size : sizeof(text) - 1;
  for (size_t i = 0; i < n; i++) {
    text[i] = data[i] == 0 ? 'x' : (char)data[i];
  }
  text[n] = '\0';
  char err[128];
  (void)img_parse_filters(text, filters, &nfilters, err, sizeof(err));
  return 0;
}
