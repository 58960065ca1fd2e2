/* report.c - see report.h. */
#include "report.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void rc_result_init(rc_result_t *r) {
  memset(r, 0, sizeof *r);
  rc_stats_init(&r->total);
}

void rc_result_free(rc_result_t *r) {
  rc_stats_free(&r->total);
  free(r->ticks);
  for (size_t i = 0; i < r->nchecks; i++) {
    free(r->checks[i].name);
    free(r->checks[i].detail);
    free(r->checks[i].request);
    free(r->checks[i].requests);
    free(r->checks[i].sentence);
  }
  free(r->checks);
  for (size_t i = 0; i < r->ntl; i++) {
    free(r->tl[i].line);
  }
  free(r->tl);
  memset(r, 0, sizeof *r);
}

void rc_result_add_tick(rc_result_t *r, const rc_tick_t *t) {
  if (r->nticks == r->ticks_cap) {
    r->ticks_cap = r->ticks_cap ? r->ticks_cap * 2 : 64;
    r->ticks = rc_xrealloc(r->ticks, r->ticks_cap * sizeof *r->ticks);
  }
  r->ticks[r->nticks++] = *t;
}

rc_check_t *rc_result_add_check(rc_result_t *r, const char *kind, char *name, int ok, char *detail,
                                char *request) {
  if (r->nchecks == r->checks_cap) {
    r->checks_cap = r->checks_cap ? r->checks_cap * 2 : 16;
    r->checks = rc_xrealloc(r->checks, r->checks_cap * sizeof *r->checks);
  }
  rc_check_t *c = &r->checks[r->nchecks++];
  memset(c, 0, sizeof *c);
  c->kind = kind;
  c->name = name;
  c->ok = ok;
  c->detail = detail;
  c->request = request;
  c->failures = ok ? 0 : 1;
  return c;
}

size_t rc_result_failed(const rc_result_t *r) {
  size_t n = 0;
  for (size_t i = 0; i < r->nchecks; i++) {
    n += !r->checks[i].ok;
  }
  return n;
}

static double rc__ms(uint64_t us) {
  return (double)us / 1000.0;
}

void rc_report_live(FILE *f, double elapsed_s, const rc_tick_t *t) {
  fprintf(f, "\r\033[K  %6.1fs  %9.0f req/s  p99 %8.2f ms  errors %llu", elapsed_s,
          (double)t->requests, rc__ms(t->p99), (unsigned long long)t->errors);
  fflush(f);
}

size_t rc_result_warnings(const rc_result_t *r, char *out[RC_MAX_WARNINGS]) {
  const rc_stats_t *s = &r->total;
  size_t n = 0;
  uint64_t bad = 0;
  for (int i = 400; i < 600 && i < RC_STATUS_MAX; i++) {
    bad += s->status[i];
  }
  if (s->responses > 0 && bad * 2 > s->responses) {
    out[n++] = rc_xasprintf("%llu of %llu answers (%.0f%%) were 4xx/5xx errors: the target may "
                            "be wrong (URL, port, prefix, credentials) and the run may have "
                            "tested nothing",
                            (unsigned long long)bad, (unsigned long long)s->responses,
                            100.0 * (double)bad / (double)s->responses);
  }
  if (s->tmpl_undefined > 0) {
    out[n++] =
        rc_xasprintf("%llu template value%s named an undefined variable and %s rendered "
                     "as 'undefined' (as Artillery does): check the variable names",
                     (unsigned long long)s->tmpl_undefined, s->tmpl_undefined == 1 ? "" : "s",
                     s->tmpl_undefined == 1 ? "was" : "were");
  }
  return n;
}

void rc_report_text(FILE *f, const rc_result_t *r) {
  const rc_stats_t *s = &r->total;
  uint64_t errs = rc_stats_errors(s);
  double dur = r->duration_s > 0 ? r->duration_s : 1e-9;
  fprintf(f, "\nracecheck %s: %s\n", r->mode, r->target ? r->target : "");
  if (r->file) {
    fprintf(f, "  scenario file   %s\n", r->file);
  }
  fprintf(f, "  duration        %.2f s, %d thread%s", r->duration_s, r->threads,
          r->threads == 1 ? "" : "s");
  if (r->connections) {
    fprintf(f, ", %d connections", r->connections);
  }
  fprintf(f, "\n");
  fprintf(f, "  requests        %llu sent, %llu answered, %llu errors\n",
          (unsigned long long)s->sent, (unsigned long long)s->responses, (unsigned long long)errs);
  fprintf(f, "  rate            %.1f req/s (answers)\n", (double)s->responses / dur);
  fprintf(f, "  transfer        %.2f MiB in, %.2f MiB out\n", (double)s->bytes_in / 1048576.0,
          (double)s->bytes_out / 1048576.0);
  if (s->responses) {
    fprintf(
        f,
        "  latency (ms)    min %.3f  p50 %.3f  p90 %.3f  p95 %.3f  p99 %.3f  p99.9 %.3f  max %.3f"
        "  mean %.3f\n",
        rc__ms(s->lat.min), rc__ms(rc_hist_percentile(&s->lat, 50)),
        rc__ms(rc_hist_percentile(&s->lat, 90)), rc__ms(rc_hist_percentile(&s->lat, 95)),
        rc__ms(rc_hist_percentile(&s->lat, 99)), rc__ms(rc_hist_percentile(&s->lat, 99.9)),
        rc__ms(s->lat.max), rc_hist_mean(&s->lat) / 1000.0);
  }
  fprintf(f, "  status codes   ");
  int any = 0;
  for (int i = 0; i < RC_STATUS_MAX; i++) {
    if (s->status[i]) {
      fprintf(f, " %d: %llu", i, (unsigned long long)s->status[i]);
      any = 1;
    }
  }
  fprintf(f, "%s\n", any ? "" : " none");
  if (errs) {
    fprintf(f, "  errors         ");
    for (int i = 1; i < RC_NET_NERR; i++) {
      if (s->neterr[i]) {
        fprintf(f, " %s: %llu", rc_net_errname(i), (unsigned long long)s->neterr[i]);
      }
    }
    fprintf(f, "\n");
  }
  /* latency by endpoint (step), as Artillery's metrics-by-endpoint */
  size_t shown = 0;
  for (size_t i = 0; i < r->nsteps && i < s->nstep_lat && shown < 20; i++) {
    const rc_hist_t *h = s->step_lat[i];
    if (!h || !h->count || r->nsteps < 2) {
      continue;
    }
    fprintf(f, "  %-15s %s: %llu answers, p50 %.3f  p95 %.3f  p99 %.3f  max %.3f ms\n",
            shown++ ? "" : "by step", r->steps[i].name, (unsigned long long)h->count,
            rc__ms(rc_hist_percentile(h, 50)), rc__ms(rc_hist_percentile(h, 95)),
            rc__ms(rc_hist_percentile(h, 99)), rc__ms(h->max));
  }
  if (s->vu_created || s->vu_skipped) {
    fprintf(f, "  scenarios       %llu started, %llu completed, %llu failed",
            (unsigned long long)s->vu_created, (unsigned long long)s->vu_completed,
            (unsigned long long)s->vu_failed);
    if (s->vu_skipped) {
      fprintf(f, ", %llu skipped (maxVusers)", (unsigned long long)s->vu_skipped);
    }
    fprintf(f, "\n");
  }
  if (s->max_lag_us > 1000) {
    fprintf(f, "  arrival lag     worst %.1f ms behind schedule\n", rc__ms(s->max_lag_us));
  }
  if (r->max_rss_kib > 0) {
    fprintf(f, "  memory          %.1f MiB peak RSS\n", (double)r->max_rss_kib / 1024.0);
  }
  if (r->seeded) {
    fprintf(f, "  seed            %llu (replay with --seed %llu)\n", (unsigned long long)r->seed,
            (unsigned long long)r->seed);
  }
  if (r->nchecks) {
    size_t failed = rc_result_failed(r);
    fprintf(f, "  checks          %zu passed, %zu failed\n", r->nchecks - failed, failed);
    for (size_t i = 0; i < r->nchecks; i++) {
      const rc_check_t *c = &r->checks[i];
      fprintf(f, "    %s %-9s %s", c->ok ? "ok  " : "FAIL", c->kind, c->name ? c->name : "");
      if (c->failures > 1) {
        fprintf(f, " (%llu times)", (unsigned long long)c->failures);
      }
      fprintf(f, "\n");
      if (!c->ok && c->sentence) {
        fprintf(f, "         %s\n", c->sentence);
      }
      if (c->detail && (!c->ok || strcmp(c->kind, "invariant") == 0)) {
        fprintf(f, "         %s\n", c->detail);
      }
      if (!c->ok && c->request) {
        fprintf(f, "         request: %s\n", c->request);
      }
      if (!c->ok && c->requests) {
        fprintf(f, "         requests involved: %s\n", c->requests);
      }
    }
  }
  char *warn[RC_MAX_WARNINGS];
  size_t nwarn = rc_result_warnings(r, warn);
  for (size_t i = 0; i < nwarn; i++) {
    fprintf(f, "  WARNING         %s\n", warn[i]);
    free(warn[i]);
  }
  fprintf(f, "  result          %s\n",
          r->exit_code == RC_EXIT_OK ? "PASS"
                                     : (r->exit_code == RC_EXIT_FAILED ? "FAIL" : "ERROR"));
}

/* --------------------------------------------------------------- JSON */

static void rc__jstr(rc_buf_t *b, const char *s) {
  if (!s) {
    rc_buf_puts(b, "null");
    return;
  }
  rc_buf_putc(b, '"');
  rc_buf_json_escape(b, s, strlen(s));
  rc_buf_putc(b, '"');
}

static void rc__jnum(rc_buf_t *b, double v) {
  if (!(v == v) || v > 1e300 || v < -1e300) {
    rc_buf_puts(b, "null");
  } else if (v == (double)(long long)v && v < 9e15 && v > -9e15) {
    rc_buf_printf(b, "%lld", (long long)v);
  } else {
    rc_buf_printf(b, "%.3f", v);
  }
}

static void rc__jlat(rc_buf_t *b, const rc_hist_t *h) {
  if (!h || h->count == 0) {
    rc_buf_puts(b, "null");
    return;
  }
  rc_buf_puts(b, "{\"min\":");
  rc__jnum(b, rc__ms(h->min));
  static const struct {
    const char *name;
    double p;
  } ps[] = {{"p50", 50}, {"p75", 75}, {"p90", 90}, {"p95", 95}, {"p99", 99}, {"p999", 99.9}};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
    rc_buf_printf(b, ",\"%s\":", ps[i].name);
    rc__jnum(b, rc__ms(rc_hist_percentile(h, ps[i].p)));
  }
  rc_buf_puts(b, ",\"max\":");
  rc__jnum(b, rc__ms(h->max));
  rc_buf_puts(b, ",\"mean\":");
  rc__jnum(b, rc_hist_mean(h) / 1000.0);
  rc_buf_printf(b, ",\"count\":%llu}", (unsigned long long)h->count);
}

/* Status codes (and network errors) of the tally entries that pass `keep`. */
static void rc__jcodes(rc_buf_t *b, const rc_tally_t *t, int phase, long step) {
  uint64_t codes[RC_CODE_NETERR + RC_NET_NERR];
  memset(codes, 0, sizeof codes);
  for (uint32_t i = 0; i < t->cap; i++) {
    uint64_t k = t->ents[i].key;
    if (!k || (phase >= 0 && (int)rc_tally_phase(k) != phase) ||
        (step >= 0 && (long)rc_tally_step(k) != step)) {
      continue;
    }
    uint32_t c = rc_tally_code(k);
    if (c < RC_CODE_NETERR + RC_NET_NERR) {
      codes[c] += t->ents[i].count;
    }
  }
  rc_buf_putc(b, '{');
  int first = 1;
  for (uint32_t c = 0; c < RC_CODE_NETERR + RC_NET_NERR; c++) {
    if (!codes[c]) {
      continue;
    }
    if (c < RC_CODE_NETERR) {
      rc_buf_printf(b, "%s\"%u\":%llu", first ? "" : ",", c, (unsigned long long)codes[c]);
    } else {
      rc_buf_printf(b, "%s\"%s\":%llu", first ? "" : ",", rc_net_errname((int)(c - RC_CODE_NETERR)),
                    (unsigned long long)codes[c]);
    }
    first = 0;
  }
  rc_buf_putc(b, '}');
}

static void rc__iso_time(char *out, size_t n, uint64_t ms) {
  time_t s = (time_t)(ms / 1000u);
  struct tm tm;
  gmtime_r(&s, &tm);
  char tmp[32];
  strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out, n, "%s.%03uZ", tmp, (unsigned)(ms % 1000u));
}

void rc_report_json_buf(rc_buf_t *b, const rc_result_t *r) {
  const rc_stats_t *s = &r->total;
  double dur = r->duration_s > 0 ? r->duration_s : 1e-9;
  char when[40];
  rc__iso_time(when, sizeof when, r->started_wall_ms);
  rc_buf_puts(b, "{\n  \"schema\": \"racecheck-report/1\",\n  \"version\": \"" RC_VERSION "\"");
  rc_buf_puts(b, ",\n  \"mode\": ");
  rc__jstr(b, r->mode);
  rc_buf_puts(b, ",\n  \"target\": ");
  rc__jstr(b, r->target);
  rc_buf_puts(b, ",\n  \"file\": ");
  rc__jstr(b, r->file);
  rc_buf_printf(b, ",\n  \"started_at\": \"%s\"", when);
  rc_buf_puts(b, ",\n  \"duration_s\": ");
  rc__jnum(b, r->duration_s);
  rc_buf_printf(b, ",\n  \"threads\": %d", r->threads);
  if (r->connections) {
    rc_buf_printf(b, ",\n  \"connections\": %d", r->connections);
  } else {
    rc_buf_puts(b, ",\n  \"connections\": null");
  }
  rc_buf_printf(b, ",\n  \"ok\": %s,\n  \"exit_code\": %d", r->exit_code == 0 ? "true" : "false",
                r->exit_code);
  if (r->seeded) {
    rc_buf_printf(b, ",\n  \"seed\": %llu", (unsigned long long)r->seed);
  } else {
    rc_buf_puts(b, ",\n  \"seed\": null");
  }
  char *warn[RC_MAX_WARNINGS];
  size_t nwarn = rc_result_warnings(r, warn);
  rc_buf_puts(b, ",\n  \"warnings\": [");
  for (size_t i = 0; i < nwarn; i++) {
    if (i) {
      rc_buf_puts(b, ", ");
    }
    rc__jstr(b, warn[i]);
    free(warn[i]);
  }
  rc_buf_puts(b, "]");
  rc_buf_printf(b,
                ",\n  \"requests\": {\"sent\": %llu, \"answered\": %llu, \"errors\": %llu, "
                "\"rate\": ",
                (unsigned long long)s->sent, (unsigned long long)s->responses,
                (unsigned long long)rc_stats_errors(s));
  rc__jnum(b, (double)s->responses / dur);
  rc_buf_printf(b, ", \"bytes_in\": %llu, \"bytes_out\": %llu}", (unsigned long long)s->bytes_in,
                (unsigned long long)s->bytes_out);
  rc_buf_puts(b, ",\n  \"status\": {");
  int first = 1;
  for (int i = 0; i < RC_STATUS_MAX; i++) {
    if (s->status[i]) {
      rc_buf_printf(b, "%s\"%d\": %llu", first ? "" : ", ", i, (unsigned long long)s->status[i]);
      first = 0;
    }
  }
  rc_buf_puts(b, "},\n  \"errors\": {");
  first = 1;
  for (int i = 1; i < RC_NET_NERR; i++) {
    if (s->neterr[i]) {
      rc_buf_printf(b, "%s\"%s\": %llu", first ? "" : ", ", rc_net_errname(i),
                    (unsigned long long)s->neterr[i]);
      first = 0;
    }
  }
  rc_buf_puts(b, "},\n  \"latency_ms\": ");
  rc__jlat(b, &s->lat);
  rc_buf_printf(b,
                ",\n  \"scenarios\": {\"started\": %llu, \"completed\": %llu, \"failed\": %llu, "
                "\"skipped\": %llu}",
                (unsigned long long)s->vu_created, (unsigned long long)s->vu_completed,
                (unsigned long long)s->vu_failed, (unsigned long long)s->vu_skipped);
  rc_buf_printf(b, ",\n  \"expectations\": {\"passed\": %llu, \"failed\": %llu}",
                (unsigned long long)s->expect_ok, (unsigned long long)s->expect_failed);
  rc_buf_puts(b, ",\n  \"arrival_lag_max_ms\": ");
  rc__jnum(b, rc__ms(s->max_lag_us));
  rc_buf_printf(b, ",\n  \"max_rss_kib\": %ld", r->max_rss_kib);
  rc_buf_puts(b, ",\n  \"phases\": [");
  for (size_t i = 0; i < r->nphases; i++) {
    const rc_phaseinfo_t *p = &r->phases[i];
    rc_buf_puts(b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
    rc__jstr(b, p->name);
    rc_buf_puts(b, ", \"kind\": ");
    rc__jstr(b, p->kind);
    rc_buf_puts(b, ", \"start_s\": ");
    rc__jnum(b, p->start_s);
    rc_buf_puts(b, ", \"end_s\": ");
    rc__jnum(b, p->end_s);
    if (p->tally >= 0 && p->tally < RC_MAX_PHASES) {
      rc_buf_printf(
          b, ", \"requests\": %llu, \"status\": ", (unsigned long long)s->phase_requests[p->tally]);
      rc__jcodes(b, &s->tally, p->tally, -1);
      rc_buf_puts(b, ", \"latency_ms\": ");
      rc__jlat(b, s->phase_lat[p->tally]);
    } else {
      rc_buf_printf(b, ", \"requests\": %llu, \"status\": {", (unsigned long long)s->sent);
      first = 1;
      for (int k = 0; k < RC_STATUS_MAX; k++) {
        if (s->status[k]) {
          rc_buf_printf(b, "%s\"%d\":%llu", first ? "" : ",", k, (unsigned long long)s->status[k]);
          first = 0;
        }
      }
      rc_buf_puts(b, "}, \"latency_ms\": ");
      rc__jlat(b, &s->lat);
    }
    rc_buf_putc(b, '}');
  }
  rc_buf_puts(b, r->nphases ? "\n  ]" : "]");
  rc_buf_puts(b, ",\n  \"steps\": [");
  first = 1;
  for (size_t i = 0; i < r->nsteps; i++) {
    uint64_t n = 0;
    for (uint32_t k = 0; k < s->tally.cap; k++) {
      if (s->tally.ents[k].key && rc_tally_step(s->tally.ents[k].key) == i) {
        n += s->tally.ents[k].count;
      }
    }
    rc_buf_puts(b, first ? "\n    {\"name\": " : ",\n    {\"name\": ");
    first = 0;
    rc__jstr(b, r->steps[i].name);
    rc_buf_puts(b, ", \"scenario\": ");
    rc__jstr(b, r->steps[i].scenario);
    rc_buf_puts(b, ", \"method\": ");
    rc__jstr(b, r->steps[i].method);
    rc_buf_printf(b, ", \"requests\": %llu, \"status\": ", (unsigned long long)n);
    rc__jcodes(b, &s->tally, -1, (long)i);
    rc_buf_puts(b, ", \"latency_ms\": "); /* metrics by endpoint */
    rc__jlat(b, i < s->nstep_lat ? s->step_lat[i] : NULL);
    rc_buf_putc(b, '}');
  }
  rc_buf_puts(b, first ? "]" : "\n  ]");
  rc_buf_puts(b, ",\n  \"timeline\": [");
  for (size_t i = 0; i < r->nticks; i++) {
    const rc_tick_t *t = &r->ticks[i];
    rc_buf_puts(b, i ? ",\n    {\"t\": " : "\n    {\"t\": ");
    rc__jnum(b, t->t);
    rc_buf_printf(b, ", \"requests\": %llu, \"errors\": %llu, \"p50_ms\": ",
                  (unsigned long long)t->requests, (unsigned long long)t->errors);
    rc__jnum(b, rc__ms(t->p50));
    rc_buf_puts(b, ", \"p95_ms\": ");
    rc__jnum(b, rc__ms(t->p95));
    rc_buf_puts(b, ", \"p99_ms\": ");
    rc__jnum(b, rc__ms(t->p99));
    rc_buf_puts(b, ", \"max_ms\": ");
    rc__jnum(b, rc__ms(t->max));
    rc_buf_putc(b, '}');
  }
  rc_buf_puts(b, r->nticks ? "\n  ]" : "]");
  rc_buf_puts(b, ",\n  \"checks\": [");
  for (size_t i = 0; i < r->nchecks; i++) {
    const rc_check_t *c = &r->checks[i];
    rc_buf_puts(b, i ? ",\n    {\"kind\": " : "\n    {\"kind\": ");
    rc__jstr(b, c->kind);
    rc_buf_puts(b, ", \"name\": ");
    rc__jstr(b, c->name);
    rc_buf_printf(b, ", \"ok\": %s, \"failures\": %llu, \"detail\": ", c->ok ? "true" : "false",
                  (unsigned long long)c->failures);
    rc__jstr(b, c->detail);
    rc_buf_puts(b, ", \"request\": ");
    rc__jstr(b, c->request);
    rc_buf_puts(b, ", \"involved\": ");
    rc_buf_puts(b, c->requests ? c->requests : "null");
    rc_buf_putc(b, '}');
  }
  rc_buf_puts(b, r->nchecks ? "\n  ]\n}\n" : "]\n}\n");
}

static int rc__write_file(const char *path, const rc_buf_t *b) {
  FILE *f = fopen(path, "wb");
  if (!f) {
    return -1;
  }
  size_t n = b->len ? fwrite(b->data, 1, b->len, f) : 0;
  int bad = n != b->len;
  if (fclose(f) != 0) {
    bad = 1;
  }
  if (bad) {
    errno = errno ? errno : EIO;
    return -1;
  }
  return 0;
}

int rc_report_json(const char *path, const rc_result_t *r) {
  rc_buf_t b = {0};
  rc_report_json_buf(&b, r);
  int rc = rc__write_file(path, &b);
  rc_buf_free(&b);
  return rc;
}

/* --------------------------------------------------------------- HTML */

typedef struct rc_series {
  const char *name;
  const char *color;
  double *v;
} rc_series_t;

static double rc__nice(double max) {
  double step = 1;
  if (max > 1e-9) {
    double p = pow(10, floor(log10(max > 1e-9 ? max : 1e-9)));
    double m = max / p;
    step = (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
  }
  return step;
}

/* A line chart of n points per series over x (seconds). */
static void rc__svg_lines(rc_buf_t *b, const char *title, const char *unit, const double *x,
                          size_t n, const rc_series_t *ser, size_t nser) {
  const double W = 760, H = 260, L = 60, R = 20, T = 30, B = 40;
  double xmax = n ? x[n - 1] : 1, ymax = 0;
  for (size_t k = 0; k < nser; k++) {
    for (size_t i = 0; i < n; i++) {
      if (ser[k].v[i] > ymax) {
        ymax = ser[k].v[i];
      }
    }
  }
  ymax = rc__nice(ymax * 1.05);
  if (!(xmax > 0)) {
    xmax = 1;
  }
  rc_buf_printf(b, "<svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">", W,
                H, W, H);
  rc_buf_printf(b, "<text x=\"%.0f\" y=\"18\" class=\"t\">", L);
  rc_buf_html_escape(b, title);
  rc_buf_puts(b, "</text>");
  for (int g = 0; g <= 4; g++) {
    double y = T + (H - T - B) * (1 - g / 4.0);
    rc_buf_printf(b,
                  "<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" class=\"g\"/>"
                  "<text x=\"%.0f\" y=\"%.1f\" class=\"a\" text-anchor=\"end\">%g</text>",
                  L, y, W - R, y, L - 6, y + 4, ymax * g / 4.0);
  }
  double xstep = rc__nice(xmax / 6.0);
  for (int g = 0; g <= 12 && xstep * g <= xmax * 1.0001; g++) {
    double xv = xstep * g;
    double px = L + (W - L - R) * (xv / xmax);
    rc_buf_printf(b, "<text x=\"%.1f\" y=\"%.0f\" class=\"a\" text-anchor=\"middle\">%gs</text>",
                  px, H - B + 16, xv);
  }
  rc_buf_printf(b, "<text x=\"12\" y=\"%.0f\" class=\"a\" transform=\"rotate(-90 12 %.0f)\">",
                (H - B + T) / 2, (H - B + T) / 2);
  rc_buf_html_escape(b, unit);
  rc_buf_puts(b, "</text>");
  for (size_t k = 0; k < nser; k++) {
    rc_buf_printf(b, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                  ser[k].color);
    for (size_t i = 0; i < n; i++) {
      double px = L + (W - L - R) * (x[i] / xmax);
      double py = T + (H - T - B) * (1 - ser[k].v[i] / ymax);
      rc_buf_printf(b, "%.1f,%.1f ", px, py);
    }
    rc_buf_puts(b, "\"/>");
    rc_buf_printf(b, "<rect x=\"%.0f\" y=\"%.0f\" width=\"10\" height=\"10\" fill=\"%s\"/>",
                  L + 10 + 110.0 * (double)k, H - 14, ser[k].color);
    rc_buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" class=\"a\">", L + 24 + 110.0 * (double)k, H - 5);
    rc_buf_html_escape(b, ser[k].name);
    rc_buf_puts(b, "</text>");
  }
  if (n == 0) {
    rc_buf_printf(b, "<text x=\"%.0f\" y=\"%.0f\" class=\"a\">(shorter than one second)</text>",
                  L + 20, H / 2);
  }
  rc_buf_puts(b, "</svg>\n");
}

static const char *rc__code_color(uint32_t c) {
  if (c >= RC_CODE_NETERR) {
    return "#7f1d1d";
  }
  if (c < 300) {
    return "#16a34a";
  }
  if (c < 400) {
    return "#2563eb";
  }
  if (c < 500) {
    return "#d97706";
  }
  return "#dc2626";
}

/* Horizontal stacked bars: status codes per phase. */
static void rc__svg_codes(rc_buf_t *b, const rc_result_t *r) {
  const rc_stats_t *s = &r->total;
  size_t rows = r->nphases ? r->nphases : 1;
  double W = 760, rowh = 34, L = 150, R = 20, T = 30;
  double H = T + rowh * (double)rows + 30;
  rc_buf_printf(b, "<svg viewBox=\"0 0 %.0f %.0f\" width=\"%.0f\" height=\"%.0f\" role=\"img\">", W,
                H, W, H);
  rc_buf_printf(b, "<text x=\"%.0f\" y=\"18\" class=\"t\">Status codes per phase</text>", 10.0);
  for (size_t i = 0; i < r->nphases; i++) {
    const rc_phaseinfo_t *p = &r->phases[i];
    double y = T + rowh * (double)i;
    rc_buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" class=\"a\" text-anchor=\"end\">", L - 8,
                  y + rowh / 2 + 4);
    rc_buf_html_escape(b, p->name ? p->name : "");
    rc_buf_puts(b, "</text>");
    uint64_t codes[RC_CODE_NETERR + RC_NET_NERR];
    memset(codes, 0, sizeof codes);
    uint64_t total = 0;
    if (p->tally >= 0) {
      for (uint32_t k = 0; k < s->tally.cap; k++) {
        uint64_t key = s->tally.ents[k].key;
        if (key && (int)rc_tally_phase(key) == p->tally &&
            rc_tally_code(key) < RC_CODE_NETERR + RC_NET_NERR) {
          codes[rc_tally_code(key)] += s->tally.ents[k].count;
          total += s->tally.ents[k].count;
        }
      }
    } else {
      for (uint32_t c = 0; c < RC_STATUS_MAX; c++) {
        codes[c] = s->status[c];
        total += s->status[c];
      }
      for (int e = 1; e < RC_NET_NERR; e++) {
        codes[RC_CODE_NETERR + (uint32_t)e] = s->neterr[e];
        total += s->neterr[e];
      }
    }
    double x = L;
    for (uint32_t c = 0; c < RC_CODE_NETERR + RC_NET_NERR && total; c++) {
      if (!codes[c]) {
        continue;
      }
      double w = (W - L - R) * (double)codes[c] / (double)total;
      char label[32];
      if (c < RC_CODE_NETERR) {
        snprintf(label, sizeof label, "%u", c);
      } else {
        snprintf(label, sizeof label, "%s", rc_net_errname((int)(c - RC_CODE_NETERR)));
      }
      rc_buf_printf(b,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\">"
                    "<title>%s: %llu</title></rect>",
                    x, y + 4, w, rowh - 8, rc__code_color(c), label, (unsigned long long)codes[c]);
      if (w > 60) {
        rc_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"l\">%s: %llu</text>", x + 4,
                      y + rowh / 2 + 4, label, (unsigned long long)codes[c]);
      }
      x += w;
    }
    if (!total) {
      rc_buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" class=\"a\">no requests</text>", L + 4,
                    y + rowh / 2 + 4);
    }
  }
  rc_buf_puts(b, "</svg>\n");
}

/* --------------------------------------------------------------- timeline */

/* Request ids named by failed checks (their "requests involved"). */
static json_t *rc__offending(const rc_result_t *r) {
  json_t *ids = json_object();
  for (size_t i = 0; i < r->nchecks; i++) {
    const rc_check_t *c = &r->checks[i];
    if (c->ok || !c->requests) {
      continue;
    }
    /* [{"count": ..., "matched": n, "requests": [ids]}, ...] */
    json_t *a = json_loads(c->requests, JSON_DECODE_ANY, NULL);
    size_t k, m;
    json_t *g, *v;
    json_array_foreach(a, k, g) {
      json_array_foreach(json_object_get(g, "requests"), m, v) {
        if (json_is_integer(v)) {
          char key[32];
          snprintf(key, sizeof key, "%lld", (long long)json_integer_value(v));
          json_object_set_new(ids, key, json_true());
        }
      }
    }
    json_decref(a);
  }
  return ids;
}

static const char *rc__status_colour(int status) {
  return status == 0    ? "#6b7280"  /* network error: grey */
         : status < 300 ? "#16a34a"  /* 2xx green */
         : status < 400 ? "#2563eb"  /* 3xx blue */
         : status < 500 ? "#d97706"  /* 4xx orange */
                        : "#dc2626"; /* 5xx red */
}

/* Jepsen-style: a lane per connection (virtual user), each request a bar
 * from its write to its answer, coloured by status; the requests behind a
 * failed invariant outlined in black and listed with their request lines. */
static void rc__svg_timeline(rc_buf_t *b, const rc_result_t *r) {
  enum { MAXLANES = 120 };
  uint64_t lanes[MAXLANES];
  size_t nl = 0;
  int more = 0;
  double t0 = r->tl[0].t0_ms, t1 = t0;
  for (size_t i = 0; i < r->ntl; i++) {
    const rc_tlreq_t *q = &r->tl[i];
    size_t k;
    for (k = 0; k < nl && lanes[k] != q->vu; k++) {
    }
    if (k == nl) {
      if (nl == MAXLANES) {
        more = 1;
        continue;
      }
      lanes[nl++] = q->vu;
    }
    if (q->t0_ms < t0) {
      t0 = q->t0_ms;
    }
    if (q->t1_ms > t1) {
      t1 = q->t1_ms;
    }
  }
  double span = t1 - t0 > 0.001 ? t1 - t0 : 0.001;
  json_t *bad = rc__offending(r);
  const double left = 70, width = 700, lane_h = nl > 40 ? 6 : 14, top = 34;
  double height = top + (double)nl * lane_h + 34;
  rc_buf_puts(b, "<h2 id=\"timeline\">Burst timeline</h2>\n<p>A lane per connection (one virtual "
                 "user each), a "
                 "bar per request from its write to its answer, coloured by status: "
                 "<span style=\"color:#16a34a\">2xx</span>, "
                 "<span style=\"color:#2563eb\">3xx</span>, "
                 "<span style=\"color:#d97706\">4xx</span>, "
                 "<span style=\"color:#dc2626\">5xx</span>, "
                 "<span style=\"color:#6b7280\">network error</span>. "
                 "Requests behind a failed invariant are outlined in black. "
                 "Hover a bar for its request.</p>\n");
  rc_buf_printf(b,
                "<svg width=\"%.0f\" height=\"%.0f\" role=\"img\" aria-label=\"burst timeline\">",
                left + width + 20, height);
  rc_buf_printf(b,
                "<text x=\"%.0f\" y=\"18\" class=\"t\">%zu requests on %zu connections, "
                "%.2f ms from the first write to the last answer</text>",
                left, r->ntl, nl, span);
  for (int g = 0; g <= 4; g++) {
    double x = left + width * g / 4.0;
    rc_buf_printf(b,
                  "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" class=\"g\"/>"
                  "<text x=\"%.1f\" y=\"%.0f\" class=\"a\" text-anchor=\"%s\">%.2f ms</text>",
                  x, top - 4, x, height - 26, x, height - 12,
                  g == 0   ? "start"
                  : g == 4 ? "end"
                           : "middle",
                  span * g / 4.0);
  }
  for (size_t k = 0; k < nl; k++) {
    if (nl <= 40 || k % 10 == 0) {
      rc_buf_printf(b, "<text x=\"%.0f\" y=\"%.1f\" class=\"a\" text-anchor=\"end\">vu %llu</text>",
                    left - 6, top + (double)k * lane_h + lane_h * 0.8,
                    (unsigned long long)lanes[k]);
    }
  }
  for (int pass = 0; pass < 2; pass++) { /* offending bars last, on top */
    for (size_t i = 0; i < r->ntl; i++) {
      const rc_tlreq_t *q = &r->tl[i];
      char key[32];
      snprintf(key, sizeof key, "%llu", (unsigned long long)q->req);
      int off = json_object_get(bad, key) != NULL;
      if (off != pass) {
        continue;
      }
      size_t k;
      for (k = 0; k < nl && lanes[k] != q->vu; k++) {
      }
      if (k == nl) {
        continue;
      }
      double x0 = left + (q->t0_ms - t0) / span * width;
      double w = (q->t1_ms - q->t0_ms) / span * width;
      if (w < 1.5) {
        w = 1.5;
      }
      rc_buf_printf(b,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"%s>"
                    "<title>#%llu (vu %llu) ",
                    x0, top + (double)k * lane_h + 1, w, lane_h - 2, rc__status_colour(q->status),
                    off ? " stroke=\"#000\" stroke-width=\"2\"" : "", (unsigned long long)q->req,
                    (unsigned long long)q->vu);
      rc_buf_html_escape(b, q->line);
      if (q->status) {
        rc_buf_printf(b, " -&gt; %d", q->status);
      } else {
        rc_buf_printf(b, " -&gt; %s", q->error ? q->error : "error");
      }
      rc_buf_printf(b, ", sent at %.3f ms, %.3f ms%s</title></rect>", q->t0_ms - t0,
                    q->t1_ms - q->t0_ms, off ? ", behind a failed invariant" : "");
    }
  }
  rc_buf_puts(b, "</svg>\n");
  if (more || r->tl_truncated) {
    rc_buf_printf(b, "<p>Only the first %s are drawn.</p>\n",
                  more ? "120 connections" : "requests (4000 in all)");
  }
  /* the offending requests, as they were sent */
  size_t listed = 0;
  for (size_t i = 0; i < r->ntl && listed < 50; i++) {
    const rc_tlreq_t *q = &r->tl[i];
    char key[32];
    snprintf(key, sizeof key, "%llu", (unsigned long long)q->req);
    if (!json_object_get(bad, key)) {
      continue;
    }
    if (listed++ == 0) {
      rc_buf_puts(b, "<table><tr><th>request</th><th>vu</th><th>sent</th><th>answer</th>"
                     "<th>request line</th></tr>");
    }
    rc_buf_printf(b, "<tr><td>#%llu</td><td>%llu</td><td>%.3f ms</td><td>",
                  (unsigned long long)q->req, (unsigned long long)q->vu, q->t0_ms - t0);
    if (q->status) {
      rc_buf_printf(b, "<span style=\"color:%s;font-weight:600\">%d</span> after %.3f ms",
                    rc__status_colour(q->status), q->status, q->t1_ms - q->t0_ms);
    } else {
      rc_buf_printf(b, "%s", q->error ? q->error : "error");
    }
    rc_buf_puts(b, "</td><td><code>");
    rc_buf_html_escape(b, q->line);
    rc_buf_puts(b, "</code></td></tr>");
  }
  if (listed) {
    rc_buf_puts(b, "</table>\n");
  }
  json_decref(bad);
}

int rc_report_html(const char *path, const rc_result_t *r) {
  const rc_stats_t *s = &r->total;
  rc_buf_t b = {0};
  rc_buf_puts(&b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                  "<title>racecheck report</title><style>"
                  "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#111;max-width:820px}"
                  "h1{font-size:20px}h2{font-size:16px;margin-top:28px}"
                  "table{border-collapse:collapse;margin:8px 0}"
                  "td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}"
                  ".ok{color:#15803d;font-weight:600}.fail{color:#b91c1c;font-weight:600}"
                  "svg{display:block;margin:12px 0;background:#fafafa;border:1px solid #eee}"
                  ".t{font-size:14px;font-weight:600}.a{font-size:11px;fill:#444}"
                  ".l{font-size:11px;fill:#fff}.g{stroke:#e5e5e5}"
                  ".warn{background:#fef3c7;border:2px solid #d97706;padding:8px 12px;"
                  "font-weight:600}"
                  "code{background:#f3f3f3;padding:1px 3px}</style></head><body>\n");
  rc_buf_puts(&b, "<h1>racecheck ");
  rc_buf_html_escape(&b, r->mode ? r->mode : "");
  rc_buf_puts(&b, ": ");
  rc_buf_html_escape(&b, r->target ? r->target : "");
  rc_buf_printf(&b, " &mdash; <span class=\"%s\">%s</span></h1>\n",
                r->exit_code == 0 ? "ok" : "fail", r->exit_code == 0 ? "PASS" : "FAIL");
  char *warn[RC_MAX_WARNINGS];
  size_t nwarn = rc_result_warnings(r, warn);
  for (size_t i = 0; i < nwarn; i++) {
    rc_buf_puts(&b, "<p class=\"warn\">Warning: ");
    rc_buf_html_escape(&b, warn[i]);
    rc_buf_puts(&b, ".</p>\n");
    free(warn[i]);
  }
  char when[40];
  rc__iso_time(when, sizeof when, r->started_wall_ms);
  double dur = r->duration_s > 0 ? r->duration_s : 1e-9;
  rc_buf_puts(&b, "<table>");
  if (r->file) {
    rc_buf_puts(&b, "<tr><th>scenario file</th><td>");
    rc_buf_html_escape(&b, r->file);
    rc_buf_puts(&b, "</td></tr>");
  }
  rc_buf_printf(&b,
                "<tr><th>started</th><td>%s</td></tr><tr><th>duration</th><td>%.2f s, %d "
                "threads</td></tr>"
                "<tr><th>requests</th><td>%llu sent, %llu answered, %llu errors</td></tr>"
                "<tr><th>rate</th><td>%.1f req/s</td></tr>",
                when, r->duration_s, r->threads, (unsigned long long)s->sent,
                (unsigned long long)s->responses, (unsigned long long)rc_stats_errors(s),
                (double)s->responses / dur);
  if (s->lat.count) {
    rc_buf_printf(&b,
                  "<tr><th>latency</th><td>min %.2f, p50 %.2f, p95 %.2f, p99 %.2f, max %.2f "
                  "ms</td></tr>",
                  rc__ms(s->lat.min), rc__ms(rc_hist_percentile(&s->lat, 50)),
                  rc__ms(rc_hist_percentile(&s->lat, 95)), rc__ms(rc_hist_percentile(&s->lat, 99)),
                  rc__ms(s->lat.max));
  }
  if (s->vu_created) {
    rc_buf_printf(&b,
                  "<tr><th>scenarios</th><td>%llu started, %llu completed, %llu failed</td></tr>",
                  (unsigned long long)s->vu_created, (unsigned long long)s->vu_completed,
                  (unsigned long long)s->vu_failed);
  }
  if (r->seeded) {
    rc_buf_printf(&b, "<tr><th>seed</th><td>%llu (replay with <code>--seed %llu</code>)</td></tr>",
                  (unsigned long long)r->seed, (unsigned long long)r->seed);
  }
  rc_buf_puts(&b, "</table>\n");
  if (r->nchecks) {
    rc_buf_puts(&b, "<h2>Checks</h2><table><tr><th></th><th>kind</th><th>check</th>"
                    "<th>detail</th></tr>");
    for (size_t i = 0; i < r->nchecks; i++) {
      const rc_check_t *c = &r->checks[i];
      rc_buf_printf(&b, "<tr><td class=\"%s\">%s</td><td>%s</td><td><code>", c->ok ? "ok" : "fail",
                    c->ok ? "ok" : "FAIL", c->kind);
      rc_buf_html_escape(&b, c->name ? c->name : "");
      rc_buf_puts(&b, "</code></td><td>");
      if (!c->ok && c->sentence) {
        rc_buf_puts(&b, "<b>");
        rc_buf_html_escape(&b, c->sentence);
        rc_buf_puts(&b, "</b><br>");
      }
      rc_buf_html_escape(&b, c->detail ? c->detail : "");
      if (!c->ok && c->request) {
        rc_buf_puts(&b, "<br>request: ");
        rc_buf_html_escape(&b, c->request);
      }
      if (!c->ok && c->requests) {
        rc_buf_puts(&b, "<br>requests involved: ");
        rc_buf_html_escape(&b, c->requests);
      }
      rc_buf_puts(&b, "</td></tr>");
    }
    rc_buf_puts(&b, "</table>\n");
  }
  if (r->ntl) {
    rc__svg_timeline(&b, r);
  }
  /* per-second charts need at least two seconds to say anything */
  size_t n = r->nticks;
  if (n >= 2) {
    rc_buf_puts(&b, "<h2>Over time</h2>\n");
  }
  double *x = rc_xcalloc(n ? n : 1, sizeof *x);
  double *p50 = rc_xcalloc(n ? n : 1, sizeof *p50), *p95 = rc_xcalloc(n ? n : 1, sizeof *p95);
  double *p99 = rc_xcalloc(n ? n : 1, sizeof *p99), *rate = rc_xcalloc(n ? n : 1, sizeof *rate);
  double *errs = rc_xcalloc(n ? n : 1, sizeof *errs);
  for (size_t i = 0; i < n; i++) {
    double span = r->ticks[i].t - (i ? r->ticks[i - 1].t : 0);
    if (!(span > 0)) {
      span = 1;
    }
    x[i] = r->ticks[i].t;
    p50[i] = rc__ms(r->ticks[i].p50);
    p95[i] = rc__ms(r->ticks[i].p95);
    p99[i] = rc__ms(r->ticks[i].p99);
    rate[i] = (double)r->ticks[i].requests / span;
    errs[i] = (double)r->ticks[i].errors / span;
  }
  rc_series_t lat[3] = {{"p50", "#2563eb", p50}, {"p95", "#d97706", p95}, {"p99", "#dc2626", p99}};
  rc_series_t rs[2] = {{"answers/s", "#16a34a", rate}, {"errors/s", "#b91c1c", errs}};
  if (n >= 2) {
    rc__svg_lines(&b, "Latency percentiles (per second)", "ms", x, n, lat, 3);
    rc__svg_lines(&b, "Request rate", "per second", x, n, rs, 2);
  }
  free(x);
  free(p50);
  free(p95);
  free(p99);
  free(rate);
  free(errs);
  rc_buf_puts(&b, "<h2>Phases</h2>\n");
  if (s->responses || rc_stats_errors(s)) {
    rc__svg_codes(&b, r);
  }
  rc_buf_puts(&b, "<table><tr><th>phase</th><th>kind</th><th>from</th><th>to</th>"
                  "<th>requests</th><th>p99</th></tr>");
  for (size_t i = 0; i < r->nphases; i++) {
    const rc_phaseinfo_t *p = &r->phases[i];
    const rc_hist_t *h = p->tally >= 0 ? s->phase_lat[p->tally] : &s->lat;
    uint64_t req = p->tally >= 0 ? s->phase_requests[p->tally] : s->sent;
    rc_buf_puts(&b, "<tr><td>");
    rc_buf_html_escape(&b, p->name ? p->name : "");
    rc_buf_printf(&b, "</td><td>%s</td><td>%.2f s</td><td>%.2f s</td><td>%llu</td><td>",
                  p->kind ? p->kind : "", p->start_s, p->end_s, (unsigned long long)req);
    if (h && h->count) {
      rc_buf_printf(&b, "%.2f ms", rc__ms(rc_hist_percentile(h, 99)));
    }
    rc_buf_puts(&b, "</td></tr>");
  }
  rc_buf_puts(&b, "</table>\n");
  /* latency by endpoint (step), as Artillery's metrics-by-endpoint */
  int any_step = 0;
  for (size_t i = 0; i < r->nsteps && i < s->nstep_lat; i++) {
    const rc_hist_t *h = s->step_lat[i];
    if (!h || !h->count) {
      continue;
    }
    if (!any_step++) {
      rc_buf_puts(&b, "<h2>By step</h2><table><tr><th>step</th><th>scenario</th><th>answers</th>"
                      "<th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>");
    }
    rc_buf_puts(&b, "<tr><td><code>");
    rc_buf_html_escape(&b, r->steps[i].name ? r->steps[i].name : "");
    rc_buf_puts(&b, "</code></td><td>");
    rc_buf_html_escape(&b, r->steps[i].scenario ? r->steps[i].scenario : "");
    rc_buf_printf(&b,
                  "</td><td>%llu</td><td>%.2f ms</td><td>%.2f ms</td><td>%.2f ms</td>"
                  "<td>%.2f ms</td></tr>",
                  (unsigned long long)h->count, rc__ms(rc_hist_percentile(h, 50)),
                  rc__ms(rc_hist_percentile(h, 95)), rc__ms(rc_hist_percentile(h, 99)),
                  rc__ms(h->max));
  }
  if (any_step) {
    rc_buf_puts(&b, "</table>\n");
  }
  rc_buf_puts(&b, "<p>Generated by racecheck " RC_VERSION ".</p></body></html>\n");
  int rc = rc__write_file(path, &b);
  rc_buf_free(&b);
  return rc;
}
