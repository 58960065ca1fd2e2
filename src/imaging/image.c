/* image.c - see image.h. PNG through libspng, filters by hand (they are a
 * few lines each and must match a reference pixel by pixel). */
#include "image.h"

#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

const char *img_strerror(int status) {
  switch (status) {
  case IMG_OK:
    return "ok";
  case IMG_ENOTPNG:
    return "body is not a PNG image";
  case IMG_ECORRUPT:
    return "PNG data is corrupt or unsupported";
  case IMG_ETOOBIG:
    return "decoded image exceeds the pixel limit";
  case IMG_EFILTER:
    return "unknown filter or bad blur radius";
  case IMG_ENOMEM:
    return "out of memory";
  default:
    return "unknown image error";
  }
}

void img_free(img_t *img) {
  if (img != NULL) {
    free(img->rgba);
    img->rgba = NULL;
    img->width = 0;
    img->height = 0;
  }
}

int img_decode_png(const void *png, size_t len, uint64_t max_pixels, img_t *out) {
  int rc = IMG_ECORRUPT;
  spng_ctx *ctx = NULL;
  uint8_t *pixels = NULL;
  struct spng_ihdr ihdr;
  size_t size = 0;

  if (png == NULL || out == NULL || len < sizeof(png_signature) ||
      memcmp(png, png_signature, sizeof(png_signature)) != 0) {
    return IMG_ENOTPNG;
  }
  ctx = spng_ctx_new(0);
  if (ctx == NULL) {
    return IMG_ENOMEM;
  }
  /* Ancillary chunks are not needed: bound their memory tightly. */
  spng_set_chunk_limits(ctx, 1u << 20, 4u << 20);
  spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_DISCARD);
  if (spng_set_png_buffer(ctx, png, len) != 0 || spng_get_ihdr(ctx, &ihdr) != 0) {
    goto done;
  }
  if (ihdr.width == 0 || ihdr.height == 0) {
    goto done;
  }
  if ((uint64_t)ihdr.width * ihdr.height > max_pixels) {
    rc = IMG_ETOOBIG;
    goto done;
  }
  if (spng_decoded_image_size(ctx, SPNG_FMT_RGBA8, &size) != 0 ||
      size != (size_t)ihdr.width * ihdr.height * 4u) {
    goto done;
  }
  pixels = malloc(size);
  if (pixels == NULL) {
    rc = IMG_ENOMEM;
    goto done;
  }
  if (spng_decode_image(ctx, pixels, size, SPNG_FMT_RGBA8, SPNG_DECODE_TRNS) != 0) {
    goto done;
  }
  out->width = ihdr.width;
  out->height = ihdr.height;
  out->rgba = pixels;
  pixels = NULL;
  rc = IMG_OK;
done:
  free(pixels);
  spng_ctx_free(ctx);
  return rc;
}

int img_encode_png(const img_t *img, void **out, size_t *out_len) {
  int rc = IMG_ENOMEM;
  int err = 0;
  spng_ctx *ctx = NULL;
  if (img == NULL || img->rgba == NULL || out == NULL || out_len == NULL) {
    return IMG_ECORRUPT;
  }
  ctx = spng_ctx_new(SPNG_CTX_ENCODER);
  if (ctx == NULL) {
    return IMG_ENOMEM;
  }
  struct spng_ihdr ihdr = {.width = img->width,
                           .height = img->height,
                           .bit_depth = 8,
                           .color_type = SPNG_COLOR_TYPE_TRUECOLOR_ALPHA};
  if (spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1) != 0 || spng_set_ihdr(ctx, &ihdr) != 0 ||
      spng_encode_image(ctx, img->rgba, (size_t)img->width * img->height * 4u, SPNG_FMT_PNG,
                        SPNG_ENCODE_FINALIZE) != 0) {
    goto done;
  }
  void *buf = spng_get_png_buffer(ctx, out_len, &err);
  if (buf == NULL || err != 0) {
    free(buf);
    goto done;
  }
  *out = buf;
  rc = IMG_OK;
done:
  spng_ctx_free(ctx);
  return rc;
}

static int parse_one(const char *s, size_t len, img_filter_t *f) {
  if (len == 9 && memcmp(s, "grayscale", 9) == 0) {
    f->kind = IMG_GRAYSCALE;
    return IMG_OK;
  }
  if (len == 6 && memcmp(s, "invert", 6) == 0) {
    f->kind = IMG_INVERT;
    return IMG_OK;
  }
  if (len > 5 && len <= 7 && memcmp(s, "blur:", 5) == 0) {
    unsigned r = 0;
    for (size_t i = 5; i < len; i++) {
      if (s[i] < '0' || s[i] > '9') {
        return IMG_EFILTER;
      }
      r = r * 10u + (unsigned)(s[i] - '0');
    }
    if (r < 1 || r > IMG_BLUR_MAX || (s[5] == '0')) {
      return IMG_EFILTER;
    }
    f->kind = IMG_BLUR;
    f->radius = r;
    return IMG_OK;
  }
  return IMG_EFILTER;
}

int img_parse_filters(const char *spec, img_filter_t *out, size_t *n, char *err, size_t errlen) {
  size_t count = 0;
  if (out == NULL || n == NULL) {
    return IMG_EFILTER;
  }
  *n = 0;
  if (spec == NULL || spec[0] == '\0') {
    return IMG_OK;
  }
  const char *p = spec;
  for (;;) {
    const char *comma = strchr(p, ',');
    size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
    if (count == IMG_MAX_FILTERS) {
      if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "at most %d filters", IMG_MAX_FILTERS);
      }
      return IMG_EFILTER;
    }
    img_filter_t f = {IMG_GRAYSCALE, 0};
    if (parse_one(p, len, &f) != IMG_OK) {
      if (err != NULL && errlen > 0) {
        snprintf(err, errlen, "unknown filter '%.*s' (grayscale, invert, blur:1..%d)",
                 (int)(len > 40 ? 40 : len), p, IMG_BLUR_MAX);
      }
      return IMG_EFILTER;
    }
    out[count++] = f;
    if (comma == NULL) {
      break;
    }
    p = comma + 1;
  }
  *n = count;
  return IMG_OK;
}

static void grayscale(img_t *img) {
  size_t n = (size_t)img->width * img->height;
  for (size_t i = 0; i < n; i++) {
    uint8_t *px = img->rgba + i * 4u;
    unsigned y = (77u * px[0] + 150u * px[1] + 29u * px[2] + 128u) >> 8;
    px[0] = px[1] = px[2] = (uint8_t)y;
  }
}

static void invert(img_t *img) {
  size_t n = (size_t)img->width * img->height;
  for (size_t i = 0; i < n; i++) {
    uint8_t *px = img->rgba + i * 4u;
    px[0] = (uint8_t)(255u - px[0]);
    px[1] = (uint8_t)(255u - px[1]);
    px[2] = (uint8_t)(255u - px[2]);
  }
}

/* One pass of the box blur over `count` lines of `len` pixels each; pixel j
 * of line i is at src[(i * line_stride + j * px_stride) * 4]. A sliding sum
 * over clamped indices makes each pass O(pixels), whatever the radius. */
static void blur_pass(const uint8_t *src, uint8_t *dst, uint32_t count, uint32_t len,
                      size_t line_stride, size_t px_stride, unsigned r) {
  const unsigned window = 2u * r + 1u;
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t *line = src + i * line_stride * 4u;
    uint8_t *out = dst + i * line_stride * 4u;
    for (int c = 0; c < 3; c++) {
      unsigned sum = 0;
      for (long k = -(long)r; k <= (long)r; k++) {
        long j = k < 0 ? 0 : (k >= (long)len ? (long)len - 1 : k);
        sum += line[(size_t)j * px_stride * 4u + (size_t)c];
      }
      for (uint32_t j = 0; j < len; j++) {
        out[(size_t)j * px_stride * 4u + (size_t)c] = (uint8_t)((sum + window / 2u) / window);
        long leave = (long)j - (long)r;
        long enter = (long)j + (long)r + 1;
        leave = leave < 0 ? 0 : leave;
        enter = enter >= (long)len ? (long)len - 1 : enter;
        sum += line[(size_t)enter * px_stride * 4u + (size_t)c];
        sum -= line[(size_t)leave * px_stride * 4u + (size_t)c];
      }
    }
    for (uint32_t j = 0; j < len; j++) { /* alpha unchanged */
      out[(size_t)j * px_stride * 4u + 3u] = line[(size_t)j * px_stride * 4u + 3u];
    }
  }
}

static int blur(img_t *img, unsigned r) {
  size_t bytes = (size_t)img->width * img->height * 4u;
  uint8_t *tmp = malloc(bytes);
  if (tmp == NULL) {
    return IMG_ENOMEM;
  }
  /* Horizontal: lines are rows (stride width), pixels adjacent. */
  blur_pass(img->rgba, tmp, img->height, img->width, img->width, 1, r);
  /* Vertical: lines are columns (stride 1 pixel), pixels a row apart. */
  blur_pass(tmp, img->rgba, img->width, img->height, 1, img->width, r);
  free(tmp);
  return IMG_OK;
}

int img_apply(img_t *img, const img_filter_t *filters, size_t n) {
  if (img == NULL || img->rgba == NULL || (n > 0 && filters == NULL)) {
    return IMG_ECORRUPT;
  }
  for (size_t i = 0; i < n; i++) {
    switch (filters[i].kind) {
    case IMG_GRAYSCALE:
      grayscale(img);
      break;
    case IMG_INVERT:
      invert(img);
      break;
    case IMG_BLUR:
      if (filters[i].radius < 1 || filters[i].radius > IMG_BLUR_MAX) {
        return IMG_EFILTER;
      }
      if (blur(img, filters[i].radius) != IMG_OK) {
        return IMG_ENOMEM;
      }
      break;
    default:
      return IMG_EFILTER;
    }
  }
  return IMG_OK;
}
