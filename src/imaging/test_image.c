/* test_image.c - PNG round trips and filters checked pixel by pixel against
 * a reference written here the slow, obvious way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "image.h"

static img_t make_image(uint32_t w, uint32_t h, unsigned seed) {
  img_t img = {w, h, malloc((size_t)w * h * 4u)};
  assert_non_null(img.rgba);
  for (size_t i = 0; i < (size_t)w * h * 4u; i++) {
    seed = seed * 1103515245u + 12345u;
    img.rgba[i] = (uint8_t)(seed >> 16);
  }
  return img;
}

static img_t copy_image(const img_t *src) {
  img_t img = {src->width, src->height, malloc((size_t)src->width * src->height * 4u)};
  assert_non_null(img.rgba);
  memcpy(img.rgba, src->rgba, (size_t)src->width * src->height * 4u);
  return img;
}

static uint8_t *px(img_t *img, long x, long y) {
  x = x < 0 ? 0 : (x >= (long)img->width ? (long)img->width - 1 : x);
  y = y < 0 ? 0 : (y >= (long)img->height ? (long)img->height - 1 : y);
  return img->rgba + ((size_t)y * img->width + (size_t)x) * 4u;
}

/* Reference blur: for every pixel, sum the 2R+1 clamped neighbours in x,
 * round; then the same in y over the result. */
static void ref_blur(img_t *img, unsigned r) {
  img_t tmp = copy_image(img);
  unsigned win = 2 * r + 1;
  for (long y = 0; y < (long)img->height; y++) {
    for (long x = 0; x < (long)img->width; x++) {
      for (int c = 0; c < 3; c++) {
        unsigned sum = 0;
        for (long k = -(long)r; k <= (long)r; k++) {
          sum += px(img, x + k, y)[c];
        }
        px(&tmp, x, y)[c] = (uint8_t)((sum + win / 2) / win);
      }
    }
  }
  for (long y = 0; y < (long)img->height; y++) {
    for (long x = 0; x < (long)img->width; x++) {
      for (int c = 0; c < 3; c++) {
        unsigned sum = 0;
        for (long k = -(long)r; k <= (long)r; k++) {
          sum += px(&tmp, x, y + k)[c];
        }
        px(img, x, y)[c] = (uint8_t)((sum + win / 2) / win);
      }
    }
  }
  img_free(&tmp);
}

static void ref_apply(img_t *img, const char *spec) {
  char buf[256];
  strcpy(buf, spec);
  for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
    for (size_t i = 0; i < (size_t)img->width * img->height; i++) {
      uint8_t *p = img->rgba + i * 4;
      if (strcmp(tok, "grayscale") == 0) {
        uint8_t yv = (uint8_t)((77u * p[0] + 150u * p[1] + 29u * p[2] + 128u) >> 8);
        p[0] = p[1] = p[2] = yv;
      } else if (strcmp(tok, "invert") == 0) {
        p[0] = (uint8_t)(255 - p[0]);
        p[1] = (uint8_t)(255 - p[1]);
        p[2] = (uint8_t)(255 - p[2]);
      }
    }
    if (strncmp(tok, "blur:", 5) == 0) {
      ref_blur(img, (unsigned)atoi(tok + 5));
    }
  }
}

static void check_pipeline(uint32_t w, uint32_t h, const char *spec) {
  img_t src = make_image(w, h, w * 31u + h);
  void *png = NULL;
  size_t len = 0;
  assert_int_equal(img_encode_png(&src, &png, &len), IMG_OK);

  img_t got = {0};
  assert_int_equal(img_decode_png(png, len, 1u << 24, &got), IMG_OK);
  assert_int_equal(got.width, w);
  assert_int_equal(got.height, h);
  assert_memory_equal(got.rgba, src.rgba, (size_t)w * h * 4u);

  img_filter_t f[IMG_MAX_FILTERS];
  size_t n = 0;
  assert_int_equal(img_parse_filters(spec, f, &n, NULL, 0), IMG_OK);
  assert_int_equal(img_apply(&got, f, n), IMG_OK);
  ref_apply(&src, spec);
  for (size_t i = 0; i < (size_t)w * h * 4u; i++) {
    if (got.rgba[i] != src.rgba[i]) {
      fail_msg("%s on %ux%u: byte %zu is %u, reference %u", spec, w, h, i, got.rgba[i],
               src.rgba[i]);
    }
  }
  free(png);
  img_free(&got);
  img_free(&src);
}

static void test_filters_match_reference(void **state) {
  (void)state;
  check_pipeline(1, 1, "grayscale");
  check_pipeline(16, 9, "invert");
  check_pipeline(17, 13, "blur:1");
  check_pipeline(40, 3, "blur:5");
  check_pipeline(3, 40, "blur:32"); /* radius larger than the image */
  check_pipeline(33, 21, "grayscale,invert,blur:3");
  check_pipeline(25, 25, "blur:2,grayscale,blur:1,invert");
}

static void test_parse_filters(void **state) {
  (void)state;
  img_filter_t f[IMG_MAX_FILTERS];
  size_t n = 99;
  char err[128];
  assert_int_equal(img_parse_filters("", f, &n, err, sizeof(err)), IMG_OK);
  assert_int_equal(n, 0);
  assert_int_equal(img_parse_filters("blur:32", f, &n, err, sizeof(err)), IMG_OK);
  assert_int_equal(f[0].radius, 32);
  const char *bad[] = {"blur:0",  "blur:33", "blur:",   "blur:-1",   "blur:01", "sepia",
                       "invert,", ",invert", "blur:3x", "GRAYSCALE", "blur:100"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    assert_int_equal(img_parse_filters(bad[i], f, &n, err, sizeof(err)), IMG_EFILTER);
    assert_non_null(strstr(err, "unknown filter"));
  }
  char many[512] = "invert";
  for (int i = 0; i < IMG_MAX_FILTERS; i++) {
    strcat(many, ",invert");
  }
  assert_int_equal(img_parse_filters(many, f, &n, err, sizeof(err)), IMG_EFILTER);
}

static void test_bad_png(void **state) {
  (void)state;
  img_t img = {0};
  assert_int_equal(img_decode_png("GIF89a....", 10, 1000, &img), IMG_ENOTPNG);
  assert_int_equal(img_decode_png(NULL, 0, 1000, &img), IMG_ENOTPNG);

  img_t src = make_image(8, 8, 5);
  void *png = NULL;
  size_t len = 0;
  assert_int_equal(img_encode_png(&src, &png, &len), IMG_OK);
  /* Over the pixel cap: refused from the header, before decoding. */
  assert_int_equal(img_decode_png(png, len, 63, &img), IMG_ETOOBIG);
  /* Truncated and corrupted data. */
  assert_int_equal(img_decode_png(png, len / 2, 1000, &img), IMG_ECORRUPT);
  uint8_t *bytes = png;
  for (size_t i = 8; i < len; i += 7) {
    bytes[i] ^= 0x5a;
  }
  assert_int_equal(img_decode_png(png, len, 1000, &img), IMG_ECORRUPT);
  assert_null(img.rgba);
  free(png);
  img_free(&src);
}

static void test_decompression_bomb_header(void **state) {
  (void)state;
  /* A header claiming 100000 x 100000 pixels: refused with ETOOBIG. */
  static const uint8_t hdr[] = {0x89, 'P',  'N', 'G', '\r', '\n', 0x1a, '\n', 0,    0,    0,
                                13,   'I',  'H', 'D', 'R',  0,    1,    0x86, 0xa0, 0,    1,
                                0x86, 0xa0, 8,   6,   0,    0,    0,    0x00, 0x00, 0x00, 0x00};
  uint8_t buf[sizeof(hdr)];
  memcpy(buf, hdr, sizeof(hdr));
  /* CRC over type+data. */
  uint32_t crc = 0xffffffffu;
  for (size_t i = 12; i < 29; i++) {
    crc ^= buf[i];
    for (int k = 0; k < 8; k++) {
      crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
  }
  crc ^= 0xffffffffu;
  buf[29] = (uint8_t)(crc >> 24);
  buf[30] = (uint8_t)(crc >> 16);
  buf[31] = (uint8_t)(crc >> 8);
  buf[32] = (uint8_t)crc;
  img_t img = {0};
  assert_int_equal(img_decode_png(buf, sizeof(buf), 16u << 20, &img), IMG_ETOOBIG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filters_match_reference),
      cmocka_unit_test(test_parse_filters),
      cmocka_unit_test(test_bad_png),
      cmocka_unit_test(test_decompression_bomb_header),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
