/* cli.c - see cli.h. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include <jansson.h>
#include <strings.h>

#include "bench.h"
#include "report.h"
#include "run.h"
#include "scenario.h"

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
      {"insecure", no_argument, NULL, 'k'},
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
  while ((ch = getopt_long(argc, argv, "c:d:t:H:X:o:qk", longopts, NULL)) != -1) {
    switch (ch) {
    case 'k':
      o.insecure = 1;
      break;
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

/* Options shared by run and burst. */
typedef struct rc_common {
  const char *target;
  int threads;
  uint64_t seed;
  int seeded; /* --seed given */
  json_t *vars;
  const char *json_path, *html_path, *history_path;
  int quiet, verbose;
  int insecure; /* -k */
} rc_common_t;

enum {
  OPT_TARGET = 256,
  OPT_HTML,
  OPT_HISTORY,
  OPT_SEED,
  OPT_JSON,
  OPT_EXPECT,
  OPT_TIMEOUT,
  OPT_VERBOSE
};

/* Handle a shared option; 1 handled, 0 not ours, -1 bad value. */
static int rc__common_opt(rc_common_t *c, int ch, const char *arg, const char *cmd) {
  long v;
  switch (ch) {
  case OPT_TARGET:
    c->target = arg;
    return 1;
  case 't':
    if (rc__parse_int(arg, 1, 1024, &v) != 0) {
      fprintf(stderr, "racecheck %s: bad -t '%s'\n", cmd, arg);
      return -1;
    }
    c->threads = (int)v;
    return 1;
  case 'o':
    c->json_path = arg;
    return 1;
  case OPT_HTML:
    c->html_path = arg;
    return 1;
  case OPT_HISTORY:
    c->history_path = arg;
    return 1;
  case OPT_SEED: {
    char *end = NULL;
    errno = 0;
    unsigned long long s = strtoull(arg, &end, 10);
    if (errno || !*arg || *end) {
      fprintf(stderr, "racecheck %s: bad --seed '%s'\n", cmd, arg);
      return -1;
    }
    c->seed = s;
    c->seeded = 1;
    return 1;
  }
  case 'v': {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
      fprintf(stderr, "racecheck %s: --var wants NAME=VALUE, not '%s'\n", cmd, arg);
      return -1;
    }
    char *name = rc_xstrndup(arg, (size_t)(eq - arg));
    /* a value that parses as JSON keeps its type (numbers, lists) */
    json_t *val = json_loads(eq + 1, JSON_DECODE_ANY, NULL);
    if (!val) {
      val = json_string(eq + 1);
    }
    if (!val) {
      fprintf(stderr, "racecheck %s: --var value is not valid UTF-8\n", cmd);
      free(name);
      return -1;
    }
    json_object_set_new(c->vars, name, val);
    free(name);
    return 1;
  }
  case 'q':
    c->quiet = 1;
    return 1;
  case 'k':
    c->insecure = 1;
    return 1;
  case OPT_VERBOSE:
    c->verbose = 1;
    return 1;
  default:
    return 0;
  }
}

static void rc__on_signal(int sig) {
  (void)sig;
  rc_run_interrupt(); /* SA_RESETHAND: a second Ctrl-C ends the process */
}

static int rc__do_run(const rc_file_t *f, rc_common_t *c, const char *mode) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = rc__on_signal;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  rc_run_opts_t ro = {0};
  ro.file = f;
  ro.target = c->target;
  ro.threads = c->threads;
  ro.insecure = c->insecure;
  ro.timeline = c->html_path != NULL; /* the HTML report draws the bursts */
  if (!c->seeded) {
    /* a fresh seed per run, so that $randomString, $uuid and friends differ
     * from one run to the next; it is printed, and --seed replays it */
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
      rnd = (uint32_t)(rc_wall_ms() ^ ((uint64_t)getpid() << 16));
    }
    c->seed = rnd;
  }
  ro.seed = c->seed;
  ro.vars = c->vars;
  ro.history_path = c->history_path;
  ro.live = !c->quiet && isatty(STDERR_FILENO);
  ro.verbose = c->verbose;
  rc_result_t r;
  rc_result_init(&r);
  r.seeded = 1;
  r.seed = c->seed;
  rc_err_t err = {0};
  r.exit_code = rc_run(&ro, &r, &err);
  r.mode = mode;
  int ret;
  if (r.exit_code != RC_EXIT_OK) {
    fprintf(stderr, "racecheck %s: %s\n", mode, err.msg);
    ret = r.exit_code;
  } else {
    ret = rc__finish(&r, c->json_path, c->html_path, c->quiet);
  }
  rc_result_free(&r);
  return ret;
}

int rc_cli_burst(int argc, char **argv) {
  static const struct option longopts[] = {
      {"target", required_argument, NULL, OPT_TARGET},
      {"threads", required_argument, NULL, 't'},
      {"output", required_argument, NULL, 'o'},
      {"html", required_argument, NULL, OPT_HTML},
      {"history", required_argument, NULL, OPT_HISTORY},
      {"seed", required_argument, NULL, OPT_SEED},
      {"var", required_argument, NULL, 'v'},
      {"quiet", no_argument, NULL, 'q'},
      {"verbose", no_argument, NULL, OPT_VERBOSE},
      {"repeat", required_argument, NULL, 'r'},
      {"header", required_argument, NULL, 'H'},
      {"method", required_argument, NULL, 'X'},
      {"data", required_argument, NULL, 'd'},
      {"json", required_argument, NULL, OPT_JSON},
      {"expect", required_argument, NULL, OPT_EXPECT},
      {"timeout", required_argument, NULL, OPT_TIMEOUT},
      {"insecure", no_argument, NULL, 'k'},
      {NULL, 0, NULL, 0},
  };
  rc_common_t c = {0};
  c.threads = rc__threads_default();
  c.vars = json_object();
  long n = 10, repeat = 1;
  const char *method = "GET", *body = NULL;
  int json_body = 0, method_set = 0;
  rc_header_t *hs = NULL;
  size_t nh = 0, hcap = 0;
  const char **expects = NULL;
  size_t nexp = 0;
  uint64_t timeout = 10ull * 1000000000ull;
  int ret = RC_EXIT_USAGE;
  rc_file_t *f = NULL;
  rc_url_t u = {0};
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "n:r:t:o:v:qH:X:d:k", longopts, NULL)) != -1) {
    int h = rc__common_opt(&c, ch, optarg, "burst");
    if (h < 0) {
      goto done;
    }
    if (h) {
      continue;
    }
    switch (ch) {
    case 'n':
      if (rc__parse_int(optarg, 1, 100000, &n) != 0) {
        fprintf(stderr, "racecheck burst: bad -n '%s'\n", optarg);
        goto done;
      }
      break;
    case 'r':
      if (rc__parse_int(optarg, 1, 100000, &repeat) != 0) {
        fprintf(stderr, "racecheck burst: bad --repeat '%s'\n", optarg);
        goto done;
      }
      break;
    case 'H':
      if (nh == hcap) {
        hcap = hcap ? hcap * 2 : 8;
        hs = rc_xrealloc(hs, hcap * sizeof *hs);
      }
      if (rc__parse_header(optarg, &hs[nh]) != 0) {
        fprintf(stderr, "racecheck burst: bad header '%s' (want 'Name: value')\n", optarg);
        goto done;
      }
      nh++;
      break;
    case 'X':
      method = optarg;
      method_set = 1;
      break;
    case 'd':
    case OPT_JSON:
      body = optarg;
      json_body = ch == OPT_JSON;
      break;
    case OPT_EXPECT:
      expects = rc_xrealloc(expects, (nexp + 1) * sizeof *expects);
      expects[nexp++] = optarg;
      break;
    case OPT_TIMEOUT:
      if (rc_parse_duration(optarg, 1000000000ull, &timeout) != 0 || timeout == 0) {
        fprintf(stderr, "racecheck burst: bad --timeout '%s'\n", optarg);
        goto done;
      }
      break;
    default:
      goto done;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "racecheck burst: expected one URL\n");
    goto done;
  }
  if (body && !method_set) {
    method = "POST";
  }
  if (json_body) {
    int has = 0;
    for (size_t i = 0; i < nh; i++) {
      has |= strcasecmp(hs[i].name, "content-type") == 0;
    }
    if (!has) {
      if (nh == hcap) {
        hcap = hcap ? hcap * 2 : 8;
        hs = rc_xrealloc(hs, hcap * sizeof *hs);
      }
      hs[nh].name = rc_xstrdup("Content-Type");
      hs[nh].value = "application/json";
      nh++;
    }
  }
  rc_err_t err = {0};
  if (rc_url_parse(argv[optind], &u, &err) != 0) {
    fprintf(stderr, "racecheck burst: %s\n", err.msg);
    goto done;
  }
  char origin[320];
  snprintf(origin, sizeof origin, "%s://%s", u.tls ? "https" : "http", u.hostport);
  f = rc_file_burst(c.target ? c.target : origin, method, u.path, hs, nh, body, (uint32_t)n,
                    (uint32_t)repeat, timeout, &err);
  if (!f) {
    fprintf(stderr, "racecheck burst: %s\n", err.msg);
    goto done;
  }
  c.target = NULL;
  for (size_t i = 0; i < nexp; i++) {
    if (rc_file_add_invariant(f, expects[i], &err) != 0) {
      fprintf(stderr, "racecheck burst: --expect '%s': %s\n", expects[i], err.msg);
      goto done;
    }
  }
  if (c.threads > n) {
    c.threads = (int)n;
  }
  ret = rc__do_run(f, &c, "burst");
done:
  rc_file_free(f);
  rc_url_free(&u);
  rc__free_headers(hs, nh);
  free(expects);
  json_decref(c.vars);
  return ret;
}

int rc_cli_run(int argc, char **argv, int check_only) {
  static const struct option longopts[] = {
      {"target", required_argument, NULL, OPT_TARGET},
      {"threads", required_argument, NULL, 't'},
      {"output", required_argument, NULL, 'o'},
      {"html", required_argument, NULL, OPT_HTML},
      {"history", required_argument, NULL, OPT_HISTORY},
      {"seed", required_argument, NULL, OPT_SEED},
      {"var", required_argument, NULL, 'v'},
      {"quiet", no_argument, NULL, 'q'},
      {"verbose", no_argument, NULL, OPT_VERBOSE},
      {"environment", required_argument, NULL, 'e'},
      {"overrides", required_argument, NULL, 'O'},
      {"insecure", no_argument, NULL, 'k'},
      {NULL, 0, NULL, 0},
  };
  const char *cmd = check_only ? "check" : "run";
  const char *env = NULL, *overrides = NULL;
  rc_common_t c = {0};
  c.threads = rc__threads_default();
  c.vars = json_object();
  int ret = RC_EXIT_USAGE;
  rc_file_t *f = NULL;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, "t:o:v:qe:k", longopts, NULL)) != -1) {
    if (ch == 'e') {
      env = optarg;
      continue;
    }
    if (ch == 'O') {
      overrides = optarg;
      continue;
    }
    int h = rc__common_opt(&c, ch, optarg, cmd);
    if (h <= 0) {
      goto done;
    }
  }
  if (optind != argc - 1) {
    fprintf(stderr, "racecheck %s: expected one scenario file\n", cmd);
    goto done;
  }
  rc_err_t err = {0};
  f = rc_file_load_ex(argv[optind], env, overrides, &err);
  if (!f) {
    fprintf(stderr, "racecheck %s: %s\n", cmd, err.msg);
    goto done;
  }
  if (c.target) {
    rc_url_t u;
    if (rc_url_parse(c.target, &u, &err) != 0) {
      fprintf(stderr, "racecheck %s: --target: %s\n", cmd, err.msg);
      goto done;
    }
    rc_url_free(&u);
  }
  if (check_only) {
    size_t reqs = f->nsteps;
    printf("%s: ok (%zu phase%s, %zu scenario%s, %zu request step%s, %zu invariant%s)\n",
           argv[optind], f->nphases, f->nphases == 1 ? "" : "s", f->nscenarios,
           f->nscenarios == 1 ? "" : "s", reqs, reqs == 1 ? "" : "s", f->ninvariants,
           f->ninvariants == 1 ? "" : "s");
    ret = RC_EXIT_OK;
    goto done;
  }
  ret = rc__do_run(f, &c, "run");
done:
  rc_file_free(f);
  json_decref(c.vars);
  return ret;
}
