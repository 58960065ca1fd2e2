/* image.h - PNG decode/encode and the filters of POST /images/process.
 *
 * Pure functions over caller-owned buffers, used by racefreed on its worker
 * pool (never on an HTTP thread). Every input is untrusted: the PNG bytes
 * and the filter list come from a client, so decoding is bounded (a cap on
 * the decoded pixel count against decompression bombs, chunk limits), and
 * every failure is an error code, never a crash. Fuzzed by fuzz_png.
 *
 * Filters apply left to right to RGBA8 pixels; alpha is left unchanged:
 *   grayscale  luma = (77 R + 150 G + 29 B + 128) >> 8  (BT.601, integer)
 *   invert     c = 255 - c for R, G, B
 *   blur:R     box blur of radius R (1..32), separable: a horizontal pass,
 *              then a vertical pass, each the rounded mean of the 2R+1
 *              samples around a pixel with edge pixels repeated (clamped).
 */
#ifndef RF_IMAGE_H
#define RF_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Status codes of this module (0 on success). */
#define IMG_OK       0
#define IMG_ENOTPNG  (-1) /* the body does not start with the PNG signature -> 415 */
#define IMG_ECORRUPT (-2) /* a PNG signature, but the data cannot be decoded -> 400 */
#define IMG_ETOOBIG  (-3) /* width x height above the pixel cap -> 413 */
#define IMG_EFILTER  (-4) /* unknown filter or bad blur radius -> 400 */
#define IMG_ENOMEM   (-5) /* out of memory -> 500 */

#define IMG_MAX_FILTERS 16
#define IMG_BLUR_MAX    32

typedef struct {
  uint32_t width;
  uint32_t height;
  uint8_t *rgba; /* width * height * 4 bytes, owned (img_free) */
} img_t;

typedef enum { IMG_GRAYSCALE, IMG_INVERT, IMG_BLUR } img_filter_kind_t;

typedef struct {
  img_filter_kind_t kind;
  unsigned radius; /* blur only */
} img_filter_t;

/* img_decode_png: decode `len` bytes of PNG into RGBA8. max_pixels caps
 * width*height (checked from the header before any pixel is allocated).
 * On success *out owns a new buffer (img_free). Thread-safe. */
int img_decode_png(const void *png, size_t len, uint64_t max_pixels, img_t *out);

/* img_encode_png: encode an RGBA8 image; *out is malloc'd (caller frees). */
int img_encode_png(const img_t *img, void **out, size_t *out_len);

/* img_parse_filters: parse "grayscale,invert,blur:3" into at most
 * IMG_MAX_FILTERS filters. An empty or NULL spec is zero filters. On
 * IMG_EFILTER, `err` (errlen bytes) names the offending filter. */
int img_parse_filters(const char *spec, img_filter_t *out, size_t *n, char *err, size_t errlen);

/* img_apply: run the filters left to right, in place. */
int img_apply(img_t *img, const img_filter_t *filters, size_t n);

/* img_free: release the pixels (safe on a zeroed img_t). */
void img_free(img_t *img);

/* img_strerror: text for an IMG_E... code. */
const char *img_strerror(int status);

#endif
