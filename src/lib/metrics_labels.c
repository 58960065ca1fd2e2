/* metrics_labels.c - metric name and label text checks, label
 * canonicalisation and rendering (see racefree/metrics.h).
 *
 * Label text is what goes between the braces of the exposition:
 * name="value" pairs separated by commas, no spaces. Values are stored
 * escaped (\\, \" and \n), exactly as they are exposed, so rendering copies
 * bytes. Registration parses the text strictly and re-emits the pairs sorted
 * by name, so the order a caller wrote them in does not create a second
 * series for the same label set.
 */
#include <string.h>

#include "metrics_internal.h"

#define RF__MAX_PAIRS (RF_METRICS_LABELS_MAX / 4 + 1) /* a="" is 4 bytes + ',' */

static int rf__is_alpha_(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static int rf__is_digit(unsigned char c) {
  return c >= '0' && c <= '9';
}

size_t rf__metrics_name_len(const char *name) {
  if (name == NULL) {
    return 0;
  }
  size_t i = 0;
  for (; name[i] != '\0'; i++) {
    unsigned char c = (unsigned char)name[i];
    int ok = rf__is_alpha_(c) || c == ':' || (i > 0 && rf__is_digit(c));
    if (!ok || i >= RF_METRICS_NAME_MAX) {
      return 0;
    }
  }
  return i;
}

/* Length of a valid label name at s ([a-zA-Z_][a-zA-Z0-9_]*, not "__..."),
 * scanning at most max bytes; 0 if invalid. */
static size_t rf__label_name_len(const char *s, size_t max) {
  size_t i = 0;
  while (i < max &&
         (rf__is_alpha_((unsigned char)s[i]) || (i > 0 && rf__is_digit((unsigned char)s[i])))) {
    i++;
  }
  if (i >= 2 && s[0] == '_' && s[1] == '_') {
    return 0; /* reserved for Prometheus' own use */
  }
  return i;
}

typedef struct {
  uint16_t name, name_len; /* offsets into the input */
  uint16_t pair, pair_len; /* the whole name="value" */
} rf__pair_t;

/* Parse one name="value" at in[*pos]; on success fill p and advance *pos
 * past it. Returns 0 or RF_EINVAL. */
static int rf__parse_pair(const char *in, size_t len, size_t *pos, rf__pair_t *p) {
  size_t i = *pos;
  size_t nl = rf__label_name_len(in + i, len - i);
  if (nl == 0 || i + nl + 2 > len || in[i + nl] != '=' || in[i + nl + 1] != '"') {
    return RF_EINVAL;
  }
  p->name = (uint16_t)i;
  p->name_len = (uint16_t)nl;
  size_t j = i + nl + 2;
  for (;;) {
    if (j >= len || in[j] == '\n') {
      return RF_EINVAL; /* unterminated, or a raw newline */
    }
    if (in[j] == '"') {
      break;
    }
    if (in[j] == '\\') {
      if (j + 1 >= len || (in[j + 1] != '\\' && in[j + 1] != '"' && in[j + 1] != 'n')) {
        return RF_EINVAL;
      }
      j++;
    }
    j++;
  }
  p->pair = (uint16_t)i;
  p->pair_len = (uint16_t)(j + 1 - i);
  *pos = j + 1;
  return 0;
}

static int rf__pair_cmp(const char *in, const rf__pair_t *a, const rf__pair_t *b) {
  size_t n = a->name_len < b->name_len ? a->name_len : b->name_len;
  int c = memcmp(in + a->name, in + b->name, n);
  if (c != 0) {
    return c;
  }
  return (int)a->name_len - (int)b->name_len;
}

int rf__metrics_labels_canon(const char *in, int reserve_le, char *out, size_t cap) {
  if (cap < RF_METRICS_LABELS_MAX + 1) {
    return RF_EINVAL;
  }
  out[0] = '\0';
  if (in == NULL || in[0] == '\0') {
    return 0;
  }
  size_t len = strnlen(in, RF_METRICS_LABELS_MAX + 1);
  if (len > RF_METRICS_LABELS_MAX) {
    return RF_EINVAL;
  }
  rf__pair_t pairs[RF__MAX_PAIRS];
  size_t n = 0;
  size_t pos = 0;
  for (;;) {
    if (n == RF__MAX_PAIRS || rf__parse_pair(in, len, &pos, &pairs[n]) != 0) {
      return RF_EINVAL;
    }
    n++;
    if (pos == len) {
      break;
    }
    if (in[pos] != ',' || ++pos == len) {
      return RF_EINVAL; /* junk after a pair, or a trailing comma */
    }
  }
  /* Insertion sort by name (a handful of pairs), then reject repeats. */
  for (size_t i = 1; i < n; i++) {
    rf__pair_t p = pairs[i];
    size_t j = i;
    while (j > 0 && rf__pair_cmp(in, &pairs[j - 1], &p) > 0) {
      pairs[j] = pairs[j - 1];
      j--;
    }
    pairs[j] = p;
  }
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    if ((i > 0 && rf__pair_cmp(in, &pairs[i - 1], &pairs[i]) == 0) ||
        (reserve_le && pairs[i].name_len == 2 && memcmp(in + pairs[i].name, "le", 2) == 0)) {
      return RF_EINVAL;
    }
    if (i > 0) {
      out[o++] = ',';
    }
    memcpy(out + o, in + pairs[i].pair, pairs[i].pair_len);
    o += pairs[i].pair_len;
  }
  out[o] = '\0'; /* o == len: the same bytes, reordered */
  return (int)o;
}

uint64_t rf__metrics_hash(const char *name, const char *labels) {
  uint64_t h = 14695981039346656037ull;
  for (const char *p = name; *p != '\0'; p++) {
    h = (h ^ (unsigned char)*p) * 1099511628211ull;
  }
  if (labels != NULL) {
    h = (h ^ 0xffu) * 1099511628211ull;
    for (const char *p = labels; *p != '\0'; p++) {
      h = (h ^ (unsigned char)*p) * 1099511628211ull;
    }
  }
  return h;
}

/* Append n bytes to buf at *o if they fit (keeping room for the NUL). */
static int rf__put(char *buf, size_t cap, size_t *o, const char *s, size_t n) {
  if (n >= cap - *o) {
    return RF_ERANGE;
  }
  memcpy(buf + *o, s, n);
  *o += n;
  return 0;
}

int rf_metrics_labels_render(char *buf, size_t cap, const char *const *kv, size_t npairs) {
  if (buf == NULL || cap == 0 || (kv == NULL && npairs > 0)) {
    return RF_EINVAL;
  }
  size_t o = 0;
  int rc = 0;
  for (size_t i = 0; i < npairs && rc == 0; i++) {
    const char *name = kv[2 * i];
    const char *value = kv[2 * i + 1];
    size_t nl = name != NULL ? strlen(name) : 0;
    if (nl == 0 || value == NULL || rf__label_name_len(name, nl) != nl) {
      rc = RF_EINVAL;
      break;
    }
    if (i > 0) {
      rc = rf__put(buf, cap, &o, ",", 1);
    }
    if (rc == 0) {
      rc = rf__put(buf, cap, &o, name, nl);
    }
    if (rc == 0) {
      rc = rf__put(buf, cap, &o, "=\"", 2);
    }
    for (const char *p = value; rc == 0 && *p != '\0'; p++) {
      if (*p == '\\') {
        rc = rf__put(buf, cap, &o, "\\\\", 2);
      } else if (*p == '"') {
        rc = rf__put(buf, cap, &o, "\\\"", 2);
      } else if (*p == '\n') {
        rc = rf__put(buf, cap, &o, "\\n", 2);
      } else {
        rc = rf__put(buf, cap, &o, p, 1);
      }
    }
    if (rc == 0) {
      rc = rf__put(buf, cap, &o, "\"", 1);
    }
  }
  buf[rc == 0 ? o : 0] = '\0';
  return rc;
}
