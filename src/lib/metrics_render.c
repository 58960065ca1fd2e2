/* metrics_render.c - Prometheus text exposition format 0.0.4 of a
 * registry (see racefree/metrics.h).
 *
 * Rendering takes no lock: it acquire-loads nseries once (every slot below
 * it is complete and immutable, see the ordering essay in metrics.c) and
 * reads each value with relaxed loads. Families are written in order of
 * first registration with their series grouped under one HELP and one TYPE
 * line (a counting sort by family, O(series)).
 *
 * Histograms: the bucket counts are read once each, accumulated into the
 * cumulative le="..." lines, and their total is written both as the +Inf
 * bucket and as _count, so one rendering always satisfies the format's rule
 * that _count equals the +Inf bucket even while observations land. _sum is
 * read separately and may include an observation the buckets do not (or the
 * reverse); that skew is bounded by the observations in flight.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"

typedef struct {
  char *p;
  size_t len;
  size_t cap;
  int err;
} rf__buf_t;

static void rf__buf_put(rf__buf_t *b, const char *s, size_t n) {
  if (b->err != 0) {
    return;
  }
  if (b->cap - b->len <= n) {
    size_t cap = b->cap;
    while (cap - b->len <= n) {
      cap *= 2;
    }
    char *p = rf__realloc(b->p, cap);
    if (p == NULL) {
      b->err = RF_ENOMEM;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void rf__buf_str(rf__buf_t *b, const char *s) {
  rf__buf_put(b, s, strlen(s));
}

/* Shortest text that reads back as the same double, in the exposition's
 * spelling (+Inf, -Inf, NaN) and always with '.' as the decimal point,
 * whatever LC_NUMERIC says. */
static void rf__fmt_double(char *out, size_t cap, double v) {
  if (isnan(v)) {
    snprintf(out, cap, "NaN");
    return;
  }
  if (isinf(v)) {
    snprintf(out, cap, "%s", v > 0 ? "+Inf" : "-Inf");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(out, cap, "%.*g", prec, v);
    if (strtod(out, NULL) == v) {
      break;
    }
  }
  for (char *p = out; *p != '\0'; p++) {
    if (!((*p >= '0' && *p <= '9') || *p == 'e' || *p == '-' || *p == '+')) {
      *p = '.'; /* the locale's decimal point */
    }
  }
}

/* HELP text escaping: backslash and newline. */
static void rf__put_help(rf__buf_t *b, const char *s) {
  for (const char *p = s; *p != '\0'; p++) {
    if (*p == '\\') {
      rf__buf_put(b, "\\\\", 2);
    } else if (*p == '\n') {
      rf__buf_put(b, "\\n", 2);
    } else {
      rf__buf_put(b, p, 1);
    }
  }
}

/* name + suffix + {labels[,extra]} + " " */
static void rf__put_series(rf__buf_t *b, const char *name, const char *suffix, const char *labels,
                           const char *extra) {
  rf__buf_str(b, name);
  rf__buf_str(b, suffix);
  if (labels[0] != '\0' || extra != NULL) {
    rf__buf_put(b, "{", 1);
    rf__buf_str(b, labels);
    if (extra != NULL) {
      if (labels[0] != '\0') {
        rf__buf_put(b, ",", 1);
      }
      rf__buf_str(b, extra);
    }
    rf__buf_put(b, "}", 1);
  }
  rf__buf_put(b, " ", 1);
}

static void rf__put_u64(rf__buf_t *b, uint64_t v) {
  char num[32];
  snprintf(num, sizeof(num), "%" PRIu64 "\n", v);
  rf__buf_str(b, num);
}

static void rf__render_histogram(rf__buf_t *b, const char *name, const char *labels,
                                 const rf_histogram_t *h) {
  char num[40];
  char le[48];
  uint64_t cum = 0;
  _Atomic uint64_t *buckets = rf__histogram_buckets(h);
  for (uint32_t i = 0; i <= h->nbounds; i++) {
    cum += atomic_load_explicit(&buckets[i], memory_order_relaxed);
    if (i < h->nbounds) {
      rf__fmt_double(num, sizeof(num), h->bounds[i]);
    } else {
      snprintf(num, sizeof(num), "+Inf");
    }
    snprintf(le, sizeof(le), "le=\"%s\"", num);
    rf__put_series(b, name, "_bucket", labels, le);
    rf__put_u64(b, cum);
  }
  rf__put_series(b, name, "_sum", labels, NULL);
  rf__fmt_double(num, sizeof(num), rf_histogram_sum(h));
  rf__buf_str(b, num);
  rf__buf_put(b, "\n", 1);
  rf__put_series(b, name, "_count", labels, NULL);
  rf__put_u64(b, cum);
}

static void rf__render_series(rf__buf_t *b, const rf_metrics_t *m, const rf__series_t *s) {
  const char *name = rf__metrics_text(m, s->name_off);
  const char *labels = rf__metrics_text(m, s->labels_off);
  const void *cell = (const char *)m + s->cell_off;
  if (s->kind == RF__KIND_COUNTER) {
    rf__put_series(b, name, "", labels, NULL);
    rf__put_u64(b, rf_counter_value(cell));
  } else if (s->kind == RF__KIND_GAUGE) {
    char num[32];
    rf__put_series(b, name, "", labels, NULL);
    snprintf(num, sizeof(num), "%" PRId64 "\n", rf_gauge_value(cell));
    rf__buf_str(b, num);
  } else {
    rf__render_histogram(b, name, labels, cell);
  }
}

static void rf__render_family_head(rf__buf_t *b, const rf_metrics_t *m, const rf__series_t *s) {
  static const char *const types[] = {"untyped", "counter", "gauge", "histogram"};
  const char *name = rf__metrics_text(m, s->name_off);
  if (s->help_off != 0) {
    rf__buf_str(b, "# HELP ");
    rf__buf_str(b, name);
    rf__buf_put(b, " ", 1);
    rf__put_help(b, rf__metrics_text(m, s->help_off));
    rf__buf_put(b, "\n", 1);
  }
  rf__buf_str(b, "# TYPE ");
  rf__buf_str(b, name);
  rf__buf_put(b, " ", 1);
  rf__buf_str(b, types[s->kind <= RF__KIND_HISTOGRAM ? s->kind : 0]);
  rf__buf_put(b, "\n", 1);
}

int rf_metrics_render(rf_metrics_t *m, char **out, size_t *len) {
  if (m == NULL || out == NULL || m->magic != RF__METRICS_MAGIC) {
    return RF_EINVAL;
  }
  uint32_t n = atomic_load_explicit(&m->nseries, memory_order_acquire);
  rf__buf_t b = {NULL, 0, 256, 0};
  /* start[f]: first position of family f in `order`; families are
   * identified by their first slot, so f < n and f <= every member. */
  uint32_t *start = rf__calloc((size_t)n + 1, sizeof(uint32_t));
  uint32_t *order = rf__malloc(((size_t)n + 1) * sizeof(uint32_t));
  b.p = rf__malloc(b.cap);
  int rc = 0;
  if (start == NULL || order == NULL || b.p == NULL) {
    rc = RF_ENOMEM;
    goto done;
  }
  b.p[0] = '\0';
  for (uint32_t i = 0; i < n; i++) {
    start[rf__metrics_slot(m, i)->family + 1]++;
  }
  for (uint32_t f = 0; f < n; f++) {
    start[f + 1] += start[f];
  }
  for (uint32_t i = 0; i < n; i++) {
    order[start[rf__metrics_slot(m, i)->family]++] = i; /* start[f] ends at f's end */
  }
  for (uint32_t k = 0; k < n; k++) {
    const rf__series_t *s = rf__metrics_slot(m, order[k]);
    if (s->family == order[k]) {
      rf__render_family_head(&b, m, s);
    }
    rf__render_series(&b, m, s);
  }
  rc = b.err;
done:
  rf__free(start);
  rf__free(order);
  if (rc != 0) {
    rf__free(b.p);
    return rc;
  }
  *out = b.p;
  if (len != NULL) {
    *len = b.len;
  }
  return 0;
}
