/* main.c - racefreed: options, the listen socket, worker processes,
 * signals and shutdown (docs/server.md has the full picture).
 *
 * Start-up, in this order (nothing multi-threaded exists before fork):
 *   1. options (flags > environment > --config file), logging;
 *   2. bind + listen (so a taken port fails before anything else starts, and
 *      --port 0 knows its real port);
 *   3. the database is opened once and migrated, then closed (a bad URL or
 *      an unreachable database fails here, with the database's message);
 *   4. the metrics registry, in MAP_SHARED memory when there are several
 *      workers, with every series registered;
 *   5. --workers 1: serve in this process. --workers N: fork N workers that
 *      serve the inherited socket; this process supervises them (a worker
 *      that dies is restarted) and forwards SIGTERM/SIGINT/SIGHUP.
 * The line `listening on http://ADDR:PORT` is printed on stdout (flushed)
 * once the socket accepts connections.
 *
 * Signals are blocked in every thread and taken synchronously with
 * sigtimedwait by the main thread: no async-signal-safety pitfalls.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "racefree/racefree.h"

#include "app.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "redact.h"
#include "routes/routes.h"
#include "store.h"

extern char **environ;

#define MAX_RESTARTS         20    /* worker restarts allowed ... */
#define RESTART_WINDOW_MS    10000 /* ... within this window, then give up */
#define STOP_GRACE_EXTRA_MS  5000  /* supervisor: workers' shutdown timeout + this, then SIGKILL */
#define STOP_LISTEN_DELAY_MS 100   /* supervisor: after SIGTERM to the workers, stop listening */

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fail_msg(const char *msg) {
  char clean[4096];
  fprintf(stderr, "racefreed: error: %s\n", srv_url_redact(msg, clean, sizeof clean));
  fflush(stderr);
}

/* mkdir -p of the directory of a sqlite:PATH database, so that a first
 * start creates ./data by itself. Other URLs: nothing to do. */
static int ensure_db_dir(const char *url, char *err, size_t errlen) {
  if (strncmp(url, "sqlite:", 7) != 0)
    return 0;
  char path[SRV_PATH_MAX];
  size_t n = strlen(url + 7);
  if (n >= sizeof path)
    return 0; /* the store reports the bad path */
  memcpy(path, url + 7, n + 1);
  char *slash = strrchr(path, '/');
  if (slash == NULL || slash == path)
    return 0;
  *slash = '\0';
  for (char *p = path + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
      goto fail;
    *p = '/';
  }
  if (mkdir(path, 0755) != 0 && errno != EEXIST)
    goto fail;
  return 0;
fail:
  snprintf(err, errlen, "cannot create the database directory %s: %s", path, strerror(errno));
  return RF_EIO;
}

/* Is the bound address of fd a loopback one (127.0.0.0/8, ::1)? */
static bool bound_to_loopback(int fd) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
    return false;
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
    return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
  }
  if (ss.ss_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
  }
  return false;
}

static void block_signals(sigset_t *set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
  sigaddset(set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* ------------------------------------------------------------ serving */

/* Serve on fd until SIGTERM/SIGINT, in this process. 0 after a clean stop. */
static int serve(const srv_options_t *o, srv_shared_t *shared, int fd, const char *display,
                 bool announce) {
  srv_app_t app;
  char err[1024] = "";
  int rc = srv_app_open(&app, o, shared, err, sizeof err);
  if (rc != 0) {
    fail_msg(err);
    return 1;
  }
  rc = srv_http_start(&app, fd, srv_routes, srv_nroutes, err, sizeof err);
  if (rc != 0) {
    fail_msg(err);
    srv_app_close(&app);
    return 1;
  }
  srv_log(SRV_LOG_INFO, "serving http://%s: %llu HTTP threads, store %s%s", display,
          (unsigned long long)o->threads, rf_store_kind(app.store),
          o->unsafe ? ", UNSAFE handlers" : "");
  if (announce) {
    printf("listening on http://%s\n", display);
    fflush(stdout);
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  for (;;) {
    int sig = sigwaitinfo(&set, NULL);
    if (sig == SIGHUP) {
      if (srv_log_reopen() != 0)
        srv_log(SRV_LOG_ERROR, "cannot reopen the log file");
      continue;
    }
    if (sig == SIGTERM || sig == SIGINT)
      break;
  }
  srv_log(SRV_LOG_INFO, "shutting down: draining requests (up to %llu ms)",
          (unsigned long long)o->shutdown_timeout_ms);
  srv_http_stop(&app, o->shutdown_timeout_ms);
  srv_app_close(&app);
  srv_log(SRV_LOG_INFO, "stopped");
  return 0;
}

/* ------------------------------------------------------------ workers */

typedef struct supervisor {
  const srv_options_t *o;
  srv_shared_t *shared;
  int fd;
  const char *display;
  pid_t *pids;
  size_t n;
  uint64_t restarts[MAX_RESTARTS]; /* times of the last restarts (ring) */
  size_t nrestarts;
} supervisor_t;

static pid_t spawn_worker(supervisor_t *s, size_t idx) {
  pid_t parent = getpid();
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid != 0) {
    if (pid < 0)
      srv_log(SRV_LOG_ERROR, "fork: %s", strerror(errno));
    return pid;
  }
  /* The worker: die with the supervisor, serve, exit. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent)
    _exit(1);
  srv_log(SRV_LOG_INFO, "worker %zu started", idx);
  int rc = serve(s->o, s->shared, s->fd, s->display, false);
  srv_shared_destroy(s->shared);
  srv_log_close();
  exit(rc); /* not _exit: sanitizers' exit-time checks (leaks) cover workers too */
}

static size_t alive(const supervisor_t *s) {
  size_t n = 0;
  for (size_t i = 0; i < s->n; i++)
    n += s->pids[i] > 0;
  return n;
}

static void signal_all(const supervisor_t *s, int sig) {
  for (size_t i = 0; i < s->n; i++)
    if (s->pids[i] > 0)
      kill(s->pids[i], sig);
}

/* Record a restart; false when MAX_RESTARTS happened within the window. */
static bool may_restart(supervisor_t *s) {
  uint64_t t = now_ms();
  size_t slot = s->nrestarts % MAX_RESTARTS;
  if (s->nrestarts >= MAX_RESTARTS && t - s->restarts[slot] < RESTART_WINDOW_MS)
    return false;
  s->restarts[slot] = t;
  s->nrestarts++;
  return true;
}

static void describe_exit(int status, char *buf, size_t cap) {
  if (WIFSIGNALED(status))
    snprintf(buf, cap, "was killed by signal %d", WTERMSIG(status));
  else
    snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
}

static int supervise(supervisor_t *s) {
  for (size_t i = 0; i < s->n; i++) {
    s->pids[i] = spawn_worker(s, i);
    if (s->pids[i] < 0) {
      signal_all(s, SIGTERM);
      return 1;
    }
  }
  printf("listening on http://%s\n", s->display);
  fflush(stdout);
  srv_log(SRV_LOG_INFO, "supervising %zu workers", s->n);

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGCHLD);
  bool stopping = false;
  int code = 0;
  uint64_t kill_at = 0, stop_listen_at = UINT64_MAX;
  for (;;) {
    struct timespec tick = {0, (stop_listen_at == UINT64_MAX ? 200 : 20) * 1000000L};
    int sig = sigtimedwait(&set, NULL, &tick);
    if ((sig == SIGTERM || sig == SIGINT) && !stopping) {
      stopping = true;
      kill_at = now_ms() + s->o->shutdown_timeout_ms + STOP_GRACE_EXTRA_MS;
      srv_log(SRV_LOG_INFO, "stopping %zu workers", alive(s));
      signal_all(s, SIGTERM);
      stop_listen_at = now_ms() + STOP_LISTEN_DELAY_MS;
    } else if (sig == SIGHUP) {
      if (srv_log_reopen() != 0)
        srv_log(SRV_LOG_ERROR, "cannot reopen the log file");
      signal_all(s, SIGHUP);
    }
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
      for (size_t i = 0; i < s->n; i++) {
        if (s->pids[i] != pid)
          continue;
        s->pids[i] = 0;
        if (stopping)
          break;
        char how[64];
        describe_exit(status, how, sizeof how);
        if (!may_restart(s)) {
          srv_log(SRV_LOG_ERROR, "worker %zu (pid %d) %s; %d restarts in %d s, giving up", i,
                  (int)pid, how, MAX_RESTARTS, RESTART_WINDOW_MS / 1000);
          stopping = true;
          code = 1;
          kill_at = now_ms() + s->o->shutdown_timeout_ms + STOP_GRACE_EXTRA_MS;
          signal_all(s, SIGTERM);
          break;
        }
        srv_log(SRV_LOG_WARN, "worker %zu (pid %d) %s; restarting it", i, (int)pid, how);
        s->pids[i] = spawn_worker(s, i);
        if (s->pids[i] < 0)
          s->pids[i] = 0;
        break;
      }
    }
    if (stopping && s->fd >= 0 && now_ms() >= stop_listen_at) {
      /* The workers have quiesced (they take the socket out of their
       * event loops on SIGTERM): stop the shared socket listening, so that
       * a client connecting during the drain is refused at once instead of
       * waiting in the backlog until the processes exit. */
      (void)shutdown(s->fd, SHUT_RDWR);
      stop_listen_at = UINT64_MAX;
    }
    if (stopping) {
      if (alive(s) == 0)
        break;
      if (now_ms() > kill_at) {
        srv_log(SRV_LOG_ERROR, "workers did not stop in time: killing them");
        signal_all(s, SIGKILL);
        kill_at = UINT64_MAX;
      }
    } else if (alive(s) == 0) {
      srv_log(SRV_LOG_ERROR, "no worker left");
      code = 1;
      break;
    }
  }
  srv_log(SRV_LOG_INFO, "stopped");
  return code;
}

/* ------------------------------------------------------------ main */

static void print_version(void) {
  printf("racefreed %s (libracefree %s, libmicrohttpd %s, jansson %s)\n", RF_VERSION_STRING,
         RF_VERSION_STRING, MHD_get_version(), JANSSON_VERSION);
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--help-markdown") == 0) {
    srv_options_markdown(stdout);
    return 0;
  }
  srv_options_t opts;
  srv_opts_action_t action;
  char err[2048] = "";
  if (srv_options_load(&opts, argc, argv, environ, &action, err, sizeof err) != 0) {
    fail_msg(err);
    fprintf(stderr, "(racefreed --help lists the options)\n");
    return 2;
  }
  if (action == SRV_OPTS_HELP) {
    srv_options_usage(stdout, "racefreed");
    return 0;
  }
  if (action == SRV_OPTS_VERSION) {
    print_version();
    return 0;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  srv_options_resolve_cores(&opts, cores > 0 ? (unsigned)cores : 1);
  if (srv_log_init(opts.log_level, opts.log_format, opts.log_file, err, sizeof err) != 0) {
    fail_msg(err);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  sigset_t set;
  block_signals(&set); /* before any thread exists: every thread inherits it */

  int code = 1, fd = -1;
  srv_shared_t shared;
  bool have_shared = false;
  char display[300];
  if (opts.redis[0] != '\0') { /* a malformed URL is fatal; an unreachable Redis is "not ready" */
    rf_lock_t *redis = NULL;
    if (srv_redis_open(opts.redis, &redis, err, sizeof err) != 0) {
      fail_msg(err);
      goto done;
    }
    char shown[SRV_PATH_MAX];
    if (rf_lock_ping(redis) != 0)
      srv_log(SRV_LOG_WARN, "redis %s is not reachable (yet): GET /ready answers 503 until it is",
              srv_url_redact(opts.redis, shown, sizeof shown));
    rf_lock_destroy(redis);
  }
  if (ensure_db_dir(opts.db, err, sizeof err) != 0) {
    fail_msg(err);
    goto done;
  }
  if (srv_listen(opts.bind, (unsigned)opts.port, &fd, display, sizeof display, err, sizeof err) !=
      0) {
    fail_msg(err);
    goto done;
  }
  if (!bound_to_loopback(fd))
    srv_log(SRV_LOG_WARN,
            "listening on %s, not a loopback address: GET /metrics, GET /config, "
            "GET /charges and GET /emails/sent have no authentication; put racefreed behind "
            "a reverse proxy that restricts them (docs/server.md, \"Exposing racefreed\")",
            display);
  rf_store_t *store = NULL; /* open once here: migrations, and a clear error */
  if (rf_store_open_err(opts.db, &store, err, sizeof err) != 0) {
    fail_msg(err);
    goto done;
  }
  rf_store_close(store);
  const char *patterns[SRV_MAX_ROUTES];
  for (size_t i = 0; i < srv_nroutes; i++)
    patterns[i] = srv_routes[i].pattern;
  int rc = srv_shared_create(&shared, opts.workers > 1, patterns, srv_nroutes);
  if (rc != 0) {
    snprintf(err, sizeof err, "cannot create the metrics registry: %s", rf_strerror(rc));
    fail_msg(err);
    goto done;
  }
  have_shared = true;
  if (opts.unsafe)
    srv_log(SRV_LOG_WARN, "UNSAFE MODE: every scenario runs the naive, racy handler of "
                          "\"Concurrency for NestJS Developers: The Hidden Race Conditions\". "
                          "For demonstrations and tests only; never in production.");
  if (opts.config_file[0] != '\0')
    srv_log(SRV_LOG_INFO, "options read from %s", opts.config_file);
  if (opts.workers <= 1) {
    code = serve(&opts, &shared, fd, display, true);
    fd = -1; /* the daemon took it: closed at quiesce (or by MHD_stop_daemon) */
  } else {
    pid_t pids[64] = {0};
    supervisor_t sup = {.o = &opts,
                        .shared = &shared,
                        .fd = fd,
                        .display = display,
                        .pids = pids,
                        .n = (size_t)opts.workers};
    code = supervise(&sup);
  }
done:
  if (fd >= 0)
    close(fd);
  if (have_shared)
    srv_shared_destroy(&shared);
  srv_log_close();
  return code;
}
