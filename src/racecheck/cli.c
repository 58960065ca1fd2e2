/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "report.h"

static int rc__threads_default(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int rc__parse_int(const char *s, long lo, long hi, long *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi) {
    return -1;
  }
  *out = v;
  return 0;
}

/* Split "Name: value" into a header (pointers into a copy the caller frees
 * with the array). */
static int rc__parse_header(const char *arg, rc_header_t *h) {
  const char *colon = strchr(arg, ':');
  if (!colon || colon == arg) {
    return -1;
  }
  char *name = rc_xstrndup(arg, (size_t)(colon - arg));
  const char *v = colon + 1;
  while (*v == ' ' || *v == '\t') {
    v++;
  }
  h->name = name;
  h->value = v;
  return 0;
}

static void rc__free_headers(rc_header_t *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free((char *)h[i].name);
  }
  free(h);
}

/* Write the requested outputs and compute the final exit status. */
static int rc__finish(rc_result_t *r, const char *json_path, const char *html_path, int quiet) {
  if (r->exit_code == RC_EXIT_OK && rc_result_failed(r) > 0) {
    r->exit_code = RC_EXIT_FAILED;
  }
  if (!quiet) {
    rc_report_text(stdout, r);
  }
  if (json_path && rc_report_json(json_path, r) != 0) {
    fprintf(stderr, "racecheck: cannot write %s: %s\n", json_path, strerror(errno));
    if (r->exit_code == RC_EXIT_OK) {
      r->exit_code = RC_EXIT_USAGE;
    }
  }
  if (html_path && rc_report_html(html_path, r) != 0) {
    fprintf(stderr, "racecheck: cannot write %s: %s\n", html_path, strerror(errno));
    if (r->exit_code == RC_EXIT_OK) {
      r->exit_code = RC_EXIT_USAGE;
    }
  }
  return r->exit_code;
}

int rc_cli_bench(int argc, char **argv) {
  static const struct option longopts[] = {
      {"connections", required_argument, NULL, 'c'},
      {"duration", required_argument, NULL, 'd'},
      {"threads", required_argument, NULL, 't'},
      {"header", required_argument, NULL, 'H'},
      {"method", required_argument, NULL, 'X'},
      {"data", required_argument, NULL, 'D'},
      {"json", required_argument, NULL, 'J'},
      {"timeout", required_argument, NULL, 'T'},
      {"output", required_argument, NULL, 'o'},
      {"html", required_argument, NULL, 'W'},
      {"quiet", no_argument, NULL, 'q'},
      {NULL, 0, NULL, 0},
  };
  rc_bench_opts_t o = {0};
  o.connections = 64;
  o.threads = rc__threads_default();
  o.duration_ns = 10ull * 1000000000ull;
  o.timeout_ns = 10ull * 1000000000ull;
  o.method = "GET";
  const char *json_path = NULL, *html_path = NULL;
  int quiet = 0, json_body = 0;
  size_t hcap = 0;
  int ret = RC_EXIT_USAGE;
  optind = 1;
  int ch;
  long v;
  while ((ch = getopt_long(argc, argv, "c:d:t:H:X:o:q", longopts, NULL)) != -1) {
    switch (ch) {
    case 'c':
      if (rc__parse_int(optarg, 1, 1000000, &v) != 0) {
        fprintf(stderr, "racecheck bench: bad -c '%s'\n", optarg);
        goto done;
      }
      o.connections = (int)v;
      break;
    case 't':
      if (rc__parse_int(optarg, 1, 1024, &v) != 0) {
        fprintf(stderr, "racecheck bench: bad -t '%s'\n", optarg);
        goto done;
      }
      o.threads = (int)v;
      break;
    case 'd':
      if (rc_parse_duration(optarg, 1000000000ull, &o.duration_ns) != 0 || o.duration_ns == 0) {
        fprintf(stderr, "racecheck bench: bad duration '%s'\n", optarg);
        goto done;
      }
      break;
    case 'T':
      if (rc_parse_duration(optarg, 1000000000ull, &o.timeout_ns) != 0) {
        fprintf(stderr, "racecheck bench: bad timeout '%s'\n", optarg);
        goto done;
      }
      break;
    case 'H':
      if (o.nheaders == hcap) {
        hcap = hcap ? hcap * 2 : 8;
        o.headers = rc_xrealloc(o.headers, hcap * sizeof *o.headers);
      }
      if (rc__parse_header(optarg, &o.headers[o.nheaders]) != 0) {
        fprintf(stderr, "racecheck bench: bad header '%s' (want 'Name: value')\n", optarg);
        goto done;
      }
      o.nheaders++;
      break;
    case 'X':
      o.method = optarg;
      break;
    case 'D':
    case 'J':
      o.body = optarg;
      o.body_len = strlen(optarg);
      json_body = ch == 'J';
      break;
    case 'o':
      json_path = optarg;
      break;
    case 'W':
      html_path = optarg;
      break;
    case 'q':
      quiet = 1;
      break;
    default:
      goto done;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "racecheck bench: expected one URL\n");
    goto done;
  }
  if (json_body) {
    if (o.nheaders == hcap) {
      hcap = hcap ? hcap * 2 : 8;
      o.headers = rc_xrealloc(o.headers, hcap * sizeof *o.headers);
    }
    o.headers[o.nheaders].name = rc_xstrdup("Content-Type");
    o.headers[o.nheaders].value = "application/json";
    o.nheaders++;
    if (strcmp(o.method, "GET") == 0) {
      o.method = "POST";
    }
  }
  o.url = argv[optind];
  o.live = !quiet && isatty(STDERR_FILENO);
  rc_result_t r;
  rc_result_init(&r);
  r.target = o.url;
  rc_err_t err = {0};
  r.exit_code = rc_bench_run(&o, &r, &err);
  if (r.exit_code != RC_EXIT_OK) {
    fprintf(stderr, "racecheck bench: %s\n", err.msg);
    ret = r.exit_code;
    rc_result_free(&r);
    goto done;
  }
  ret = rc__finish(&r, json_path, html_path, quiet);
  rc_result_free(&r);
done:
  rc__free_headers(o.headers, o.nheaders);
  return ret;
}

int rc_cli_burst(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "racecheck burst: not built yet\n");
  return RC_EXIT_USAGE;
}

int rc_cli_run(int argc, char **argv, int check_only) {
  (void)argc;
  (void)argv;
  (void)check_only;
  fprintf(stderr, "racecheck run: not built yet\n");
  return RC_EXIT_USAGE;
}
