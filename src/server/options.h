/* options.h - racefreed's configuration: every option, its default, and the
 * three places it can come from.
 *
 * One table (options.c) describes every option once: its name, type, range,
 * default and help text. From that table come the defaults, the parsers of
 * the three sources, --help and docs/configuration.md. Precedence, lowest
 * first:
 *
 *   built-in default  <  --config FILE  <  RACEFREE_<NAME> environment  <  --flag
 *
 * The config file is either a JSON object ({"port": 3000, "unsafe": false})
 * or key=value lines (`port = 3000`, `# comment`); the first non-blank
 * character decides ('{' means JSON). Keys are option names with dashes or
 * underscores. Unknown keys in the file and unknown flags are errors;
 * unknown RACEFREE_* variables are ignored (other tools may share the
 * prefix).
 *
 * This module is pure: it reads the argument vector, the environment array
 * and the file it is given, and touches no global state, so the unit tests
 * drive it directly.
 */
#ifndef RACEFREED_OPTIONS_H
#define RACEFREED_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_PATH_MAX 1024

typedef enum { SRV_LOG_TEXT = 0, SRV_LOG_JSON = 1 } srv_log_format_t;
typedef enum { SRV_POOL_IDLE = 0, SRV_POOL_NICE = 1 } srv_pool_priority_t;
typedef enum {
  SRV_LOG_DEBUG = 0,
  SRV_LOG_INFO = 1,
  SRV_LOG_WARN = 2,
  SRV_LOG_ERROR = 3
} srv_log_level_t;

typedef struct srv_options {
  char bind[256];                /* listen address (numeric IPv4/IPv6 or a host name) */
  uint64_t port;                 /* 0: pick a free port */
  char db[SRV_PATH_MAX];         /* sqlite:PATH or postgres://... */
  char redis[SRV_PATH_MAX];      /* "" = off */
  uint64_t workers;              /* server processes sharing the listen socket */
  uint64_t threads;              /* HTTP threads per process; 0 = number of cores */
  uint64_t pool_size;            /* CPU worker pool threads; 0 = number of cores */
  uint64_t pool_queue;           /* CPU worker pool queue capacity */
  int pool_priority;             /* srv_pool_priority_t */
  uint64_t job_workers;          /* background job workers */
  char app_config[SRV_PATH_MAX]; /* the JSON file GET /config serves */
  uint64_t upstream_latency_ms;  /* simulated upstream (cache loader, reports, config) */
  uint64_t charge_latency_ms;    /* simulated card processor */
  uint64_t email_latency_ms;     /* simulated mail sender */
  uint64_t
      db_latency_ms; /* simulated work between a read and the write (users, inventory, wallets) */
  uint64_t cache_ttl_ms;
  uint64_t cache_max_entries;
  uint64_t occ_retries; /* retries after a version conflict (attempts = retries + 1) */
  uint64_t job_attempts;
  uint64_t job_backoff_ms;   /* ceiling of the first retry's delay (doubles per attempt) */
  uint64_t job_lease_ms;     /* a job whose worker died is retried after this */
  uint64_t payment_lease_ms; /* a payment whose holder died is recovered after this */
  bool unsafe;
  int log_format;              /* srv_log_format_t */
  int log_level;               /* srv_log_level_t */
  char log_file[SRV_PATH_MAX]; /* "" = stderr */
  uint64_t connection_limit;
  uint64_t connection_timeout_s;
  uint64_t shutdown_timeout_ms;
  char config_file[SRV_PATH_MAX]; /* the file that was read, "" if none */
} srv_options_t;

/* What srv_options_load found on the command line besides options. */
typedef enum {
  SRV_OPTS_RUN = 0,     /* start the server */
  SRV_OPTS_HELP = 1,    /* --help was given: print srv_options_usage, exit 0 */
  SRV_OPTS_VERSION = 2, /* --version was given */
} srv_opts_action_t;

/* srv_options_defaults: fill *o with the built-in defaults. Never fails. */
void srv_options_defaults(srv_options_t *o);

/* srv_options_load: defaults, then the config file (--config FILE, else
 * $RACEFREE_CONFIG), then RACEFREE_* variables from envp (a NULL-terminated
 * "NAME=value" array, may be NULL), then the flags of argv[1..argc-1].
 * On success returns 0 and sets *action. On a bad option, value, file or
 * positional argument returns RF_EINVAL (RF_EIO: the config file cannot be
 * read) and writes one line naming the source and the option into
 * err[errlen]; *o is then unspecified. Pure apart from reading the file. */
int srv_options_load(srv_options_t *o, int argc, char *const argv[], char *const envp[],
                     srv_opts_action_t *action, char *err, size_t errlen);

/* srv_options_set: set one option by name ("port", "log-format";
 * underscores accepted) from its text form, as a file or environment entry
 * would. RF_EINVAL with a message for an unknown name or a bad value. */
int srv_options_set(srv_options_t *o, const char *name, const char *value, char *err,
                    size_t errlen);

/* srv_options_resolve_cores: replace the "0 = number of cores" sentinels of
 * threads and pool-size by `cores` (>= 1). */
void srv_options_resolve_cores(srv_options_t *o, unsigned cores);

/* srv_options_usage: the --help text, generated from the option table. */
void srv_options_usage(FILE *out, const char *prog);

/* srv_options_markdown: the option table as a markdown table (for
 * docs/configuration.md: `racefreed --help-markdown`). */
void srv_options_markdown(FILE *out);

/* Names for logs and /ready. */
const char *srv_log_format_name(int f);
const char *srv_log_level_name(int l);

#endif /* RACEFREED_OPTIONS_H */
