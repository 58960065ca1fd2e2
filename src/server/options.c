/* options.c - the option table and the parsers of its three sources.
 * See options.h for the precedence rules and the file formats. */
#include "options.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "racefree/errors.h"

#include "redact.h"

#ifndef RACEFREED_DEFAULT_APP_CONFIG
#define RACEFREED_DEFAULT_APP_CONFIG "config/app.json"
#endif

#define CONFIG_FILE_MAX ((size_t)1024 * 1024)

typedef enum { OPT_STR, OPT_UINT, OPT_BOOL, OPT_ENUM } opt_type_t;

typedef int (*opt_check_fn)(const char *value, char *why, size_t whylen);

typedef struct opt_def {
  const char *name;
  opt_type_t type;
  size_t offset;
  size_t size; /* OPT_STR: capacity of the char array */
  uint64_t min, max;
  const char *const *choices; /* OPT_ENUM: NULL-terminated, index = stored value */
  opt_check_fn check;         /* OPT_STR: extra validation, may be NULL */
  const char *def;            /* default, in text form (parsed like any other value) */
  const char *metavar;
  const char *help;
} opt_def_t;

static const char *const log_formats[] = {"text", "json", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const pool_priorities[] = {"idle", "nice", NULL};

static int check_db(const char *v, char *why, size_t whylen) {
  if (strncmp(v, "sqlite:", 7) == 0 && v[7] != '\0')
    return 0;
  if (strncmp(v, "postgres://", 11) == 0 || strncmp(v, "postgresql://", 13) == 0)
    return 0;
  char shown[SRV_PATH_MAX];
  snprintf(why, whylen, "expected sqlite:PATH or postgres://..., got '%.200s'",
           srv_url_redact(v, shown, sizeof shown));
  return -1;
}

static int check_redis(const char *v, char *why, size_t whylen) {
  if (v[0] == '\0' || strcmp(v, "off") == 0 || strncmp(v, "redis://", 8) == 0)
    return 0;
  char shown[SRV_PATH_MAX];
  snprintf(why, whylen, "expected redis://HOST:PORT or off, got '%.200s'",
           srv_url_redact(v, shown, sizeof shown));
  return -1;
}

static int check_nonempty(const char *v, char *why, size_t whylen) {
  if (v[0] != '\0')
    return 0;
  snprintf(why, whylen, "must not be empty");
  return -1;
}

#define OFF(f)   offsetof(srv_options_t, f)
#define SZ(f)    sizeof(((srv_options_t *)0)->f)
#define U64_MAX_ 1000000000000ull

/* The one description of every option. docs/configuration.md's table is
 * racefreed --help-markdown's output (the docs.configuration test compares
 * them: after a change here, paste the new output there). */
static const opt_def_t opt_table[] = {
    {"bind", OPT_STR, OFF(bind), SZ(bind), 0, 0, NULL, check_nonempty, "127.0.0.1", "ADDR",
     "listen address (numeric IPv4/IPv6 or a host name: the first address that binds is used)"},
    {"port", OPT_UINT, OFF(port), 0, 0, 65535, NULL, NULL, "3000", "N",
     "listen port (0: pick a free one; the start-up line shows it)"},
    {"db", OPT_STR, OFF(db), SZ(db), 0, 0, NULL, check_db, "sqlite:./data/racefree.db", "URL",
     "database: sqlite:PATH (its directory is created if missing) or postgres://..."},
    {"redis", OPT_STR, OFF(redis), SZ(redis), 0, 0, NULL, check_redis, "", "URL",
     "redis://HOST:PORT (empty or off: no Redis); checked by GET /ready"},
    {"workers", OPT_UINT, OFF(workers), 0, 1, 64, NULL, NULL, "1", "N",
     "server processes sharing the listen socket (1..64)"},
    {"threads", OPT_UINT, OFF(threads), 0, 0, 256, NULL, NULL, "0", "N",
     "HTTP threads per process (0: number of cores)"},
    {"pool-size", OPT_UINT, OFF(pool_size), 0, 0, 256, NULL, NULL, "0", "N",
     "CPU worker pool threads per process (0: number of cores)"},
    {"pool-queue", OPT_UINT, OFF(pool_queue), 0, 1, 1000000, NULL, NULL, "64", "N",
     "CPU worker pool queue capacity"},
    {"pool-priority", OPT_ENUM, OFF(pool_priority), 0, 0, 0, pool_priorities, NULL, "idle",
     "idle|nice",
     "CPU pool workers: SCHED_IDLE (run only on a CPU nothing else wants; nice 10 if refused) or "
     "nice 10"},
    {"job-workers", OPT_UINT, OFF(job_workers), 0, 0, 64, NULL, NULL, "2", "N",
     "background job workers"},
    {"app-config", OPT_STR, OFF(app_config), SZ(app_config), 0, 0, NULL, check_nonempty,
     RACEFREED_DEFAULT_APP_CONFIG, "PATH", "the JSON file GET /config serves"},
    {"upstream-latency-ms", OPT_UINT, OFF(upstream_latency_ms), 0, 0, 60000, NULL, NULL, "50", "MS",
     "simulated upstream: cache loader, report data, config file"},
    {"charge-latency-ms", OPT_UINT, OFF(charge_latency_ms), 0, 0, 60000, NULL, NULL, "50", "MS",
     "simulated card processor"},
    {"email-latency-ms", OPT_UINT, OFF(email_latency_ms), 0, 0, 60000, NULL, NULL, "20", "MS",
     "simulated mail sender"},
    {"db-latency-ms", OPT_UINT, OFF(db_latency_ms), 0, 0, 60000, NULL, NULL, "20", "MS",
     "simulated work between a read and its write (users, inventory, wallets)"},
    {"cache-ttl-ms", OPT_UINT, OFF(cache_ttl_ms), 0, 1, U64_MAX_, NULL, NULL, "60000", "MS",
     "cache entry lifetime"},
    {"cache-max-entries", OPT_UINT, OFF(cache_max_entries), 0, 1, 100000000, NULL, NULL, "100000",
     "N", "cache bound"},
    {"occ-retries", OPT_UINT, OFF(occ_retries), 0, 0, 100, NULL, NULL, "8", "N",
     "wallet retries after a version conflict (attempts = retries + 1)"},
    {"job-attempts", OPT_UINT, OFF(job_attempts), 0, 1, 100, NULL, NULL, "5", "N",
     "attempts per background job"},
    {"job-backoff-ms", OPT_UINT, OFF(job_backoff_ms), 0, 0, 3600000, NULL, NULL, "1000", "MS",
     "first retry delay ceiling of a background job (doubles per attempt, capped at 60 s)"},
    {"job-lease-ms", OPT_UINT, OFF(job_lease_ms), 0, 100, 86400000, NULL, NULL, "30000", "MS",
     "lease of a running job: a job whose worker died is retried after it"},
    {"payment-lease-ms", OPT_UINT, OFF(payment_lease_ms), 0, 100, 86400000, NULL, NULL, "5000",
     "MS",
     "lease of a payment in flight (at least 2 x charge latency + 1 s is used): a payment "
     "whose server died is recovered by the next request after it"},
    {"unsafe", OPT_BOOL, OFF(unsafe), 0, 0, 0, NULL, NULL, "false", NULL,
     "serve the naive (racy) handlers, for demonstrations; logs a warning at start-up"},
    {"log-format", OPT_ENUM, OFF(log_format), 0, 0, 0, log_formats, NULL, "text", "text|json",
     "log line format"},
    {"log-level", OPT_ENUM, OFF(log_level), 0, 0, 0, log_levels, NULL, "info",
     "debug|info|warn|error", "least severe level logged (request lines are info)"},
    {"log-file", OPT_STR, OFF(log_file), SZ(log_file), 0, 0, NULL, NULL, "", "PATH",
     "append logs to this file instead of stderr (reopened on SIGHUP)"},
    {"connection-limit", OPT_UINT, OFF(connection_limit), 0, 1, 1000000, NULL, NULL, "4096", "N",
     "open connections per process; more are refused"},
    {"connection-timeout", OPT_UINT, OFF(connection_timeout_s), 0, 1, 3600, NULL, NULL, "30", "S",
     "idle seconds before a connection is closed (a slow or silent client cannot pin one)"},
    {"shutdown-timeout-ms", OPT_UINT, OFF(shutdown_timeout_ms), 0, 0, 600000, NULL, NULL, "10000",
     "MS", "how long SIGTERM waits for in-flight requests"},
};

#define OPT_COUNT (sizeof opt_table / sizeof opt_table[0])

/* ------------------------------------------------------------ helpers */

static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* Option names match with '-' and '_' interchangeable, case-insensitively. */
static int name_eq(const char *def, const char *name, size_t len) {
  size_t i = 0;
  for (; i < len && def[i] != '\0'; i++) {
    char a = def[i], b = (char)tolower((unsigned char)name[i]);
    if (b == '_')
      b = '-';
    if (a != b)
      return 0;
  }
  return i == len && def[i] == '\0';
}

static const opt_def_t *find_opt(const char *name, size_t len) {
  for (size_t i = 0; i < OPT_COUNT; i++)
    if (name_eq(opt_table[i].name, name, len))
      return &opt_table[i];
  return NULL;
}

static int parse_bool(const char *v, bool *out) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  for (size_t i = 0; i < 4; i++) {
    if (strcasecmp(v, yes[i]) == 0) {
      *out = true;
      return 0;
    }
    if (strcasecmp(v, no[i]) == 0) {
      *out = false;
      return 0;
    }
  }
  return -1;
}

static int parse_uint(const char *v, uint64_t min, uint64_t max, uint64_t *out) {
  if (*v == '\0' || strlen(v) > 20)
    return -1;
  uint64_t n = 0;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9')
      return -1;
    uint64_t d = (uint64_t)(*p - '0');
    if (n > (UINT64_MAX - d) / 10)
      return -1;
    n = n * 10 + d;
  }
  if (n < min || n > max)
    return -1;
  *out = n;
  return 0;
}

/* Set one option; `src` names the source for the message ("--port",
 * "RACEFREE_PORT", "config file x line 3: port"). */
static int apply(srv_options_t *o, const opt_def_t *d, const char *value, const char *src,
                 char *err, size_t errlen) {
  char *base = (char *)o + d->offset;
  switch (d->type) {
  case OPT_STR: {
    size_t n = strlen(value);
    if (n >= d->size) {
      set_err(err, errlen, "%s: value too long (%zu bytes, at most %zu)", src, n, d->size - 1);
      return RF_EINVAL;
    }
    char why[512];
    if (d->check != NULL && d->check(value, why, sizeof why) != 0) {
      set_err(err, errlen, "%s: %s", src, why);
      return RF_EINVAL;
    }
    memcpy(base, value, n + 1);
    if (strcmp(d->name, "redis") == 0 && strcmp(value, "off") == 0)
      base[0] = '\0';
    return 0;
  }
  case OPT_UINT: {
    uint64_t n;
    if (parse_uint(value, d->min, d->max, &n) != 0) {
      set_err(err, errlen, "%s: expected an integer in %llu..%llu, got '%.64s'", src,
              (unsigned long long)d->min, (unsigned long long)d->max, value);
      return RF_EINVAL;
    }
    memcpy(base, &n, sizeof n);
    return 0;
  }
  case OPT_BOOL: {
    bool b;
    if (parse_bool(value, &b) != 0) {
      set_err(err, errlen, "%s: expected true or false, got '%.64s'", src, value);
      return RF_EINVAL;
    }
    memcpy(base, &b, sizeof b);
    return 0;
  }
  case OPT_ENUM:
    for (int i = 0; d->choices[i] != NULL; i++) {
      if (strcasecmp(d->choices[i], value) == 0) {
        memcpy(base, &i, sizeof i);
        return 0;
      }
    }
    set_err(err, errlen, "%s: expected %s, got '%.64s'", src, d->metavar, value);
    return RF_EINVAL;
  }
  return RF_EINVAL;
}

void srv_options_defaults(srv_options_t *o) {
  memset(o, 0, sizeof *o);
  for (size_t i = 0; i < OPT_COUNT; i++) {
    char err[256];
    int rc = apply(o, &opt_table[i], opt_table[i].def, opt_table[i].name, err, sizeof err);
    (void)rc; /* the table's defaults are valid (tested) */
  }
}

int srv_options_set(srv_options_t *o, const char *name, const char *value, char *err,
                    size_t errlen) {
  const opt_def_t *d = find_opt(name, strlen(name));
  if (d == NULL) {
    set_err(err, errlen, "unknown option '%.64s'", name);
    return RF_EINVAL;
  }
  return apply(o, d, value, d->name, err, errlen);
}

void srv_options_resolve_cores(srv_options_t *o, unsigned cores) {
  if (cores == 0)
    cores = 1;
  if (o->threads == 0)
    o->threads = cores;
  if (o->pool_size == 0)
    o->pool_size = cores;
}

const char *srv_log_format_name(int f) {
  return (f >= 0 && f <= 1) ? log_formats[f] : "?";
}

const char *srv_log_level_name(int l) {
  return (l >= 0 && l <= 3) ? log_levels[l] : "?";
}

/* ------------------------------------------------------------ the file */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    set_err(err, errlen, "config file %s: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(CONFIG_FILE_MAX + 1);
  size_t n = buf ? fread(buf, 1, CONFIG_FILE_MAX + 1, f) : 0;
  int bad = buf == NULL || ferror(f) || n > CONFIG_FILE_MAX;
  fclose(f);
  if (bad) {
    set_err(err, errlen, "config file %s: cannot read it (or larger than 1 MiB)", path);
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static int file_set(srv_options_t *o, const char *path, unsigned line, const char *key,
                    size_t keylen, const char *value, char *err, size_t errlen) {
  char src[SRV_PATH_MAX + 128];
  if (line > 0)
    snprintf(src, sizeof src, "config file %s line %u: %.*s", path, line, (int)keylen, key);
  else
    snprintf(src, sizeof src, "config file %s: %.*s", path, (int)keylen, key);
  const opt_def_t *d = find_opt(key, keylen);
  if (d == NULL) {
    set_err(err, errlen, "%s: unknown option", src);
    return RF_EINVAL;
  }
  return apply(o, d, value, src, err, errlen);
}

static int load_json_file(srv_options_t *o, const char *path, const char *buf, size_t len,
                          char *err, size_t errlen) {
  json_error_t jerr;
  json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL || !json_is_object(root)) {
    set_err(err, errlen, "config file %s: %s (line %d)", path,
            root ? "expected a JSON object" : jerr.text, root ? 1 : jerr.line);
    json_decref(root);
    return RF_EINVAL;
  }
  int rc = 0;
  const char *key;
  json_t *v;
  json_object_foreach(root, key, v) {
    char text[64];
    const char *value = text;
    if (json_is_string(v))
      value = json_string_value(v); /* whole: apply() refuses one too long, naming the key */
    else if (json_is_integer(v) && json_integer_value(v) >= 0)
      snprintf(text, sizeof text, "%lld", (long long)json_integer_value(v));
    else if (json_is_boolean(v))
      snprintf(text, sizeof text, "%s", json_is_true(v) ? "true" : "false");
    else {
      set_err(err, errlen,
              "config file %s: %.64s: expected a string, a non-negative integer "
              "or a boolean",
              path, key);
      rc = RF_EINVAL;
      break;
    }
    rc = file_set(o, path, 0, key, strlen(key), value, err, errlen);
    if (rc != 0)
      break;
  }
  json_decref(root);
  return rc;
}

static int load_kv_file(srv_options_t *o, const char *path, char *buf, char *err, size_t errlen) {
  unsigned lineno = 0;
  char *p = buf; /* split by hand: strtok would merge blank lines and lose the numbering */
  while (p != NULL && *p != '\0') {
    char *nl = strchr(p, '\n');
    if (nl != NULL)
      *nl = '\0';
    lineno++;
    char *s = p;
    p = nl ? nl + 1 : NULL;
    while (isspace((unsigned char)*s))
      s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
      s[--n] = '\0';
    if (*s == '\0' || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      set_err(err, errlen, "config file %s line %u: expected key = value", path, lineno);
      return RF_EINVAL;
    }
    size_t keylen = (size_t)(eq - s);
    while (keylen > 0 && isspace((unsigned char)s[keylen - 1]))
      keylen--;
    char *val = eq + 1;
    while (isspace((unsigned char)*val))
      val++;
    size_t vlen = strlen(val);
    if (vlen >= 2 &&
        ((val[0] == '"' && val[vlen - 1] == '"') || (val[0] == '\'' && val[vlen - 1] == '\''))) {
      val[vlen - 1] = '\0';
      val++;
    }
    if (keylen == 0) {
      set_err(err, errlen, "config file %s line %u: missing key before '='", path, lineno);
      return RF_EINVAL;
    }
    int rc = file_set(o, path, lineno, s, keylen, val, err, errlen);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int load_file(srv_options_t *o, const char *path, char *err, size_t errlen) {
  size_t len = 0;
  char *buf = read_file(path, &len, err, errlen);
  if (buf == NULL)
    return RF_EIO;
  if (memchr(buf, '\0', len) != NULL) {
    free(buf);
    set_err(err, errlen, "config file %s: contains a NUL byte", path);
    return RF_EINVAL;
  }
  const char *q = buf;
  while (isspace((unsigned char)*q))
    q++;
  int rc = *q == '{' ? load_json_file(o, path, buf, len, err, errlen)
                     : load_kv_file(o, path, buf, err, errlen);
  free(buf);
  if (rc == 0)
    snprintf(o->config_file, sizeof o->config_file, "%s", path);
  return rc;
}

/* ------------------------------------------------------------ environment */

static const char *env_lookup(char *const envp[], const char *name) {
  if (envp == NULL)
    return NULL;
  size_t n = strlen(name);
  for (size_t i = 0; envp[i] != NULL; i++)
    if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
      return envp[i] + n + 1;
  return NULL;
}

static void env_name(const opt_def_t *d, char *out, size_t cap) {
  size_t j = (size_t)snprintf(out, cap, "RACEFREE_");
  for (size_t i = 0; d->name[i] != '\0' && j + 1 < cap; i++)
    out[j++] = d->name[i] == '-' ? '_' : (char)toupper((unsigned char)d->name[i]);
  out[j] = '\0';
}

static int load_env(srv_options_t *o, char *const envp[], char *err, size_t errlen) {
  for (size_t i = 0; i < OPT_COUNT; i++) {
    char name[64];
    env_name(&opt_table[i], name, sizeof name);
    const char *v = env_lookup(envp, name);
    if (v == NULL || (v[0] == '\0' && opt_table[i].type != OPT_STR))
      continue; /* empty means unset, except for strings (RACEFREE_REDIS= turns Redis off) */
    int rc = apply(o, &opt_table[i], v, name, err, errlen);
    if (rc != 0)
      return rc;
  }
  return 0;
}

/* ------------------------------------------------------------ flags */

/* First pass: --help, --version, --config (which must be known before the
 * other flags are applied, since flags win over the file). */
static int scan_meta(int argc, char *const argv[], const char **config, srv_opts_action_t *action,
                     char *err, size_t errlen) {
  for (int i = 1; i < argc && argv[i] != NULL; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
      *action = SRV_OPTS_HELP;
    else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
      if (*action == SRV_OPTS_RUN)
        *action = SRV_OPTS_VERSION;
    } else if (strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) {
        set_err(err, errlen, "--config: missing value (a file name)");
        return RF_EINVAL;
      }
      *config = argv[++i];
    } else if (strncmp(a, "--config=", 9) == 0)
      *config = a + 9;
  }
  return 0;
}

static int load_flags(srv_options_t *o, int argc, char *const argv[], char *err, size_t errlen) {
  for (int i = 1; i < argc && argv[i] != NULL; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0 || strcmp(a, "--version") == 0 ||
        strcmp(a, "-V") == 0 || strncmp(a, "--config=", 9) == 0)
      continue;
    if (strcmp(a, "--config") == 0) {
      i++;
      continue;
    }
    if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
      set_err(err, errlen, "unexpected argument '%.64s' (options start with --; see --help)", a);
      return RF_EINVAL;
    }
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
    const opt_def_t *d = find_opt(name, nlen);
    if (d == NULL) {
      set_err(err, errlen, "unknown option --%.*s (see --help)", (int)(nlen > 64 ? 64 : nlen),
              name);
      return RF_EINVAL;
    }
    char src[80];
    snprintf(src, sizeof src, "--%s", d->name);
    const char *value;
    if (eq != NULL)
      value = eq + 1;
    else if (d->type == OPT_BOOL)
      value = "true";
    else if (i + 1 < argc)
      value = argv[++i];
    else {
      set_err(err, errlen, "%s: missing value (%s)", src, d->metavar);
      return RF_EINVAL;
    }
    int rc = apply(o, d, value, src, err, errlen);
    if (rc != 0)
      return rc;
  }
  return 0;
}

int srv_options_load(srv_options_t *o, int argc, char *const argv[], char *const envp[],
                     srv_opts_action_t *action, char *err, size_t errlen) {
  if (o == NULL || action == NULL || (argc > 0 && argv == NULL))
    return RF_EINVAL;
  srv_options_defaults(o);
  *action = SRV_OPTS_RUN;
  const char *config = NULL;
  int rc = scan_meta(argc, argv, &config, action, err, errlen);
  if (rc != 0 || *action != SRV_OPTS_RUN)
    return rc;
  if (config == NULL)
    config = env_lookup(envp, "RACEFREE_CONFIG");
  if (config != NULL && config[0] != '\0') {
    rc = load_file(o, config, err, errlen);
    if (rc != 0)
      return rc;
  }
  rc = load_env(o, envp, err, errlen);
  if (rc != 0)
    return rc;
  return load_flags(o, argc, argv, err, errlen);
}

/* ------------------------------------------------------------ help */

void srv_options_usage(FILE *out, const char *prog) {
  fprintf(out,
          "Usage: %s [options]\n\n"
          "racefreed serves the race scenarios of the article \"Concurrency for NestJS\n"
          "Developers: The Hidden Race Conditions\" over HTTP/JSON, safe by default,\n"
          "naive with --unsafe. Every option can also be set as RACEFREE_<NAME> in the\n"
          "environment or in --config FILE (key = value lines, or one JSON object);\n"
          "flags win over the environment, which wins over the file.\n\n"
          "  --config FILE                 read options from FILE (also RACEFREE_CONFIG)\n"
          "  --help, -h                    print this help and exit\n"
          "  --version, -V                 print the version and exit\n"
          "  --help-markdown               print the option table in markdown and exit\n",
          prog);
  for (size_t i = 0; i < OPT_COUNT; i++) {
    const opt_def_t *d = &opt_table[i];
    char left[80];
    if (d->metavar != NULL)
      snprintf(left, sizeof left, "--%s %s", d->name, d->metavar);
    else
      snprintf(left, sizeof left, "--%s", d->name);
    if (strlen(left) > 29) /* too wide for the column: the text goes below */
      fprintf(out, "  %s\n  %-29s %s", left, "", d->help);
    else
      fprintf(out, "  %-29s %s", left, d->help);
    if (d->def[0] != '\0' && d->type != OPT_BOOL)
      fprintf(out, " [%s]", d->def);
    fputc('\n', out);
  }
}

void srv_options_markdown(FILE *out) {
  fprintf(out, "| option | environment | default | meaning |\n|---|---|---|---|\n");
  for (size_t i = 0; i < OPT_COUNT; i++) {
    const opt_def_t *d = &opt_table[i];
    char env[64];
    env_name(d, env, sizeof env);
    fprintf(out, "| `--%s", d->name);
    if (d->metavar != NULL) {
      fputc(' ', out);
      for (const char *m = d->metavar; *m; m++)
        fputs(*m == '|' ? "\\|" : (char[2]){*m, 0}, out);
    }
    if (d->offset == OFF(app_config)) /* a path of the build machine: say what it is */
      fprintf(out,
              "` | `%s` | `config/app.json` of the source tree (absolute path compiled in) "
              "| %s |\n",
              env, d->help);
    else
      fprintf(out, "` | `%s` | %s%s%s | %s |\n", env, d->def[0] ? "`" : "",
              d->def[0] ? d->def : "(none)", d->def[0] ? "`" : "", d->help);
  }
}
