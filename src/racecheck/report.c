/* report.c - see report.h. */
#include "report.h"

#include <errno.h>
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
  }
  free(r->checks);
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
  fprintf(f, "  result          %s\n",
          r->exit_code == RC_EXIT_OK ? "PASS"
                                     : (r->exit_code == RC_EXIT_FAILED ? "FAIL" : "ERROR"));
}

int rc_report_json(const char *path, const rc_result_t *r) {
  (void)path;
  (void)r;
  errno = ENOSYS;
  return -1;
}

int rc_report_html(const char *path, const rc_result_t *r) {
  (void)path;
  (void)r;
  errno = ENOSYS;
  return -1;
}
