/* util.c - see rc.h. */
#include "rc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

static void rc__oom(size_t n) {
  fprintf(stderr, "racecheck: out of memory (allocating %zu bytes)\n", n);
  abort();
}

void *rc_xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    rc__oom(n);
  }
  return p;
}

void *rc_xcalloc(size_t count, size_t size) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) {
    rc__oom(count * size);
  }
  return p;
}

void *rc_xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) {
    rc__oom(n);
  }
  return q;
}

char *rc_xstrdup(const char *s) {
  return rc_xstrndup(s, strlen(s));
}

char *rc_xstrndup(const char *s, size_t n) {
  char *p = rc_xmalloc(n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *rc_xasprintf(const char *fmt, ...) {
  rc_buf_t b = {0};
  va_list ap;
  va_start(ap, fmt);
  rc_buf_vprintf(&b, fmt, ap);
  va_end(ap);
  if (!b.data) {
    return rc_xstrdup("");
  }
  return rc_buf_steal(&b);
}

void rc_buf_reserve(rc_buf_t *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) {
    return;
  }
  size_t cap = b->cap ? b->cap : 64;
  while (cap < b->len + extra + 1) {
    cap *= 2;
  }
  b->data = rc_xrealloc(b->data, cap);
  b->cap = cap;
}

void rc_buf_append(rc_buf_t *b, const void *p, size_t n) {
  rc_buf_reserve(b, n);
  if (n) {
    memcpy(b->data + b->len, p, n);
  }
  b->len += n;
  b->data[b->len] = '\0';
}

void rc_buf_puts(rc_buf_t *b, const char *s) {
  rc_buf_append(b, s, strlen(s));
}

void rc_buf_putc(rc_buf_t *b, char c) {
  rc_buf_append(b, &c, 1);
}

void rc_buf_vprintf(rc_buf_t *b, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  char tmp[256];
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): the caller started it
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  if (n < 0) {
    va_end(ap2);
    return;
  }
  if ((size_t)n < sizeof tmp) {
    rc_buf_append(b, tmp, (size_t)n);
  } else {
    rc_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void rc_buf_printf(rc_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  rc_buf_vprintf(b, fmt, ap);
  va_end(ap);
}

void rc_buf_json_escape(rc_buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    switch (c) {
    case '"':
      rc_buf_puts(b, "\\\"");
      break;
    case '\\':
      rc_buf_puts(b, "\\\\");
      break;
    case '\n':
      rc_buf_puts(b, "\\n");
      break;
    case '\r':
      rc_buf_puts(b, "\\r");
      break;
    case '\t':
      rc_buf_puts(b, "\\t");
      break;
    default:
      if (c < 0x20 || c == 0x7f) {
        char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        rc_buf_append(b, e, 6);
      } else {
        rc_buf_putc(b, (char)c);
      }
    }
  }
}

void rc_buf_html_escape(rc_buf_t *b, const char *s) {
  for (; *s; s++) {
    switch (*s) {
    case '&':
      rc_buf_puts(b, "&amp;");
      break;
    case '<':
      rc_buf_puts(b, "&lt;");
      break;
    case '>':
      rc_buf_puts(b, "&gt;");
      break;
    case '"':
      rc_buf_puts(b, "&quot;");
      break;
    default:
      rc_buf_putc(b, *s);
    }
  }
}

void rc_buf_clear(rc_buf_t *b) {
  b->len = 0;
  if (b->data) {
    b->data[0] = '\0';
  }
}

void rc_buf_free(rc_buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

char *rc_buf_steal(rc_buf_t *b) {
  char *p = b->data;
  b->data = NULL;
  b->len = b->cap = 0;
  return p;
}

uint64_t rc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t rc_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t rc__splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void rc_rng_seed(rc_rng_t *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) {
    r->s[i] = rc__splitmix(&seed);
  }
}

static uint64_t rc__rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

uint64_t rc_rng_next(rc_rng_t *r) {
  uint64_t *s = r->s;
  uint64_t result = rc__rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rc__rotl(s[3], 45);
  return result;
}

int64_t rc_rng_range(rc_rng_t *r, int64_t lo, int64_t hi) {
  if (lo > hi) {
    int64_t t = lo;
    lo = hi;
    hi = t;
  }
  uint64_t span = (uint64_t)hi - (uint64_t)lo + 1u;
  if (span == 0) { /* the whole 64-bit range */
    return (int64_t)rc_rng_next(r);
  }
  /* Rejection sampling keeps the distribution uniform. */
  uint64_t limit = UINT64_MAX - (UINT64_MAX % span);
  uint64_t x;
  do {
    x = rc_rng_next(r);
  } while (x >= limit);
  return (int64_t)((uint64_t)lo + x % span);
}

double rc_rng_double(rc_rng_t *r) {
  return (double)(rc_rng_next(r) >> 11) * 0x1.0p-53;
}

void rc_err_set(rc_err_t *e, int line, int col, const char *fmt, ...) {
  if (!e) {
    return;
  }
  va_list ap;
  va_start(ap, fmt);
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): started on the line above
  vsnprintf(e->msg, sizeof e->msg, fmt, ap);
  va_end(ap);
  e->line = line;
  e->col = col;
}

int rc_parse_duration(const char *s, uint64_t unit_ns, uint64_t *out_ns) {
  if (!s || !*s) {
    return -1;
  }
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || !(v >= 0) || isinf(v)) {
    return -1;
  }
  /* units as the `ms` library reads them (Artillery's durations: "0.5 min",
   * "9 seconds", "2h"), case-insensitive, spaces allowed before the unit;
   * plus ns and us */
  static const struct {
    const char *name;
    double ns;
  } units[] = {{"ns", 1},         {"us", 1e3},          {"ms", 1e6},           {"msec", 1e6},
               {"msecs", 1e6},    {"millisecond", 1e6}, {"milliseconds", 1e6}, {"s", 1e9},
               {"sec", 1e9},      {"secs", 1e9},        {"second", 1e9},       {"seconds", 1e9},
               {"m", 60e9},       {"min", 60e9},        {"mins", 60e9},        {"minute", 60e9},
               {"minutes", 60e9}, {"h", 3600e9},        {"hr", 3600e9},        {"hrs", 3600e9},
               {"hour", 3600e9},  {"hours", 3600e9},    {"d", 86400e9},        {"day", 86400e9},
               {"days", 86400e9}};
  while (*end == ' ' || *end == '\t') {
    end++;
  }
  double mult = (double)unit_ns;
  if (*end != '\0') {
    size_t k;
    for (k = 0; k < sizeof units / sizeof units[0]; k++) {
      if (strcasecmp(end, units[k].name) == 0) {
        break;
      }
    }
    if (k == sizeof units / sizeof units[0]) {
      return -1;
    }
    mult = units[k].ns;
  }
  double ns = v * mult;
  if (ns > 1e18) {
    return -1;
  }
  *out_ns = (uint64_t)ns;
  return 0;
}

int rc_read_file(const char *path, char **out, size_t *out_len) {
  return rc_read_file_max(path, (size_t)1 << 30, out, out_len);
}

int rc_read_file_max(const char *path, size_t max, char **out, size_t *out_len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    return -1;
  }
  /* only regular files: never /dev/zero or a FIFO */
  struct stat st;
  if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
    fclose(f);
    errno = EINVAL;
    return -1;
  }
  if ((uint64_t)st.st_size > (uint64_t)max) {
    fclose(f);
    errno = EFBIG;
    return -1;
  }
  rc_buf_t b = {0};
  char tmp[8192];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
    if (b.len + n > max) { /* grew while being read */
      fclose(f);
      rc_buf_free(&b);
      errno = EFBIG;
      return -1;
    }
    rc_buf_append(&b, tmp, n);
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    rc_buf_free(&b);
    errno = EIO;
    return -1;
  }
  if (!b.data) {
    rc_buf_append(&b, "", 0);
  }
  *out_len = b.len;
  *out = rc_buf_steal(&b);
  return 0;
}
