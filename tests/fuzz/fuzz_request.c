/* fuzz_request.c - libFuzzer target for racefreed's whole request path:
 * the bytes of one connection (request line, headers, body, possibly
 * several pipelined requests) go through libmicrohttpd, racefreed's
 * refusals (framing, targets), the router, body limits and every route
 * handler, against a real store.
 *
 * The server runs in this process, as racefreed runs it (srv_app_open,
 * srv_http_start on a listening socket on 127.0.0.1, every latency 0 so
 * that no handler waits); each input is written to a fresh connection,
 * which is then half-closed, and the answers are read until the server
 * closes or falls silent. Beyond "no crash, no leak, no UB" (the
 * sanitizers' job) it checks the first answer: a well-formed HTTP/1.1
 * status line, and when racefreed made the answer (JSON) and it is an
 * error, the error shape {"error":{"code":string,"message":string}}.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <jansson.h>

#include "racefree/errors.h"

#include "app.h"
#include "http.h"
#include "listen.h"
#include "log.h"
#include "options.h"
#include "routes/routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static srv_options_t g_opts;
static srv_shared_t g_shared;
static srv_app_t g_app;
static int g_port = -1;
static char g_dir[64];

static void stop_server(void) {
  srv_http_stop(&g_app, 1000);
  srv_app_close(&g_app);
  srv_shared_destroy(&g_shared);
  srv_log_close();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "fuzz_request: cannot remove %s\n", g_dir);
}

static void die(const char *what, const char *err) {
  fprintf(stderr, "fuzz_request: %s: %s\n", what, err);
  abort();
}

static void start_server(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/rf_fuzz_request_XXXXXX");
  if (mkdtemp(g_dir) == NULL)
    die("mkdtemp", strerror(errno));
  char err[1024] = "", db[128];
  snprintf(db, sizeof db, "sqlite:%s/db", g_dir);
  srv_options_defaults(&g_opts);
  static const char *const set[][2] = {
      {"threads", "1"},
      {"pool-size", "1"},
      {"job-workers", "0"},
      {"upstream-latency-ms", "0"},
      {"charge-latency-ms", "0"},
      {"email-latency-ms", "0"},
      {"db-latency-ms", "0"},
      {"connection-timeout", "2"},
      {"shutdown-timeout-ms", "1000"},
      {"log-level", "error"},
  };
  for (size_t i = 0; i < sizeof set / sizeof set[0]; i++)
    if (srv_options_set(&g_opts, set[i][0], set[i][1], err, sizeof err) != 0)
      die("options", err);
  if (srv_options_set(&g_opts, "db", db, err, sizeof err) != 0)
    die("options", err);
  srv_options_resolve_cores(&g_opts, 1);
  if (srv_log_init(g_opts.log_level, g_opts.log_format, NULL, err, sizeof err) != 0)
    die("log", err);
  const char *patterns[SRV_MAX_ROUTES];
  for (size_t i = 0; i < srv_nroutes; i++)
    patterns[i] = srv_routes[i].pattern;
  if (srv_shared_create(&g_shared, false, patterns, srv_nroutes) != 0)
    die("metrics", "cannot create the registry");
  int fd = -1;
  char display[128];
  if (srv_listen("127.0.0.1", 0, &fd, display, sizeof display, err, sizeof err) != 0)
    die("listen", err);
  const char *colon = strrchr(display, ':');
  g_port = colon ? atoi(colon + 1) : -1;
  if (srv_app_open(&g_app, &g_opts, &g_shared, err, sizeof err) != 0)
    die("app", err);
  if (srv_http_start(&g_app, fd, srv_routes, srv_nroutes, err, sizeof err) != 0)
    die("http", err);
  atexit(stop_server);
}

/* The first answer in buf[0..n): a status line, and for a JSON error the
 * error shape. abort() when it is not. */
static void check_answer(const char *buf, size_t n) {
  if (n == 0)
    return; /* closed without an answer (an incomplete or unparsable request) */
  if (n < 12 || strncmp(buf, "HTTP/1.1 ", 9) != 0)
    abort();
  int status = atoi(buf + 9);
  if (status < 100 || status > 599)
    abort();
  const char *end = NULL;
  for (size_t i = 0; i + 3 < n; i++)
    if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
      end = buf + i;
      break;
    }
  if (end == NULL)
    return; /* the server closed mid-answer: the client half-closed first */
  size_t hlen = (size_t)(end - buf);
  char *head = strndup(buf, hlen);
  if (head == NULL)
    return;
  bool json = false;
  long clen = -1;
  for (char *line = strtok(head, "\r\n"); line != NULL; line = strtok(NULL, "\r\n")) {
    if (strncasecmp(line, "Content-Type: application/json", 30) == 0)
      json = true;
    else if (strncasecmp(line, "Content-Length:", 15) == 0)
      clen = atol(line + 15);
  }
  free(head);
  const char *body = end + 4;
  size_t have = n - hlen - 4;
  if (!json || status < 400 || clen < 0 || (size_t)clen > have)
    return;
  json_t *j = json_loadb(body, (size_t)clen, 0, NULL);
  json_t *e = json_object_get(j, "error");
  if (!json_is_string(json_object_get(e, "code")) ||
      !json_is_string(json_object_get(e, "message"))) {
    fprintf(stderr, "fuzz_request: a %d answer without the error shape: %.*s\n", status, (int)clen,
            body);
    abort();
  }
  json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (g_port < 0)
    start_server();
  if (size > 64 * 1024)
    return 0;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return 0;
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)g_port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  int one = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    close(fd);
    return 0;
  }
  size_t off = 0;
  while (off < size) {
    ssize_t w = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (w <= 0)
      break; /* the server answered early (413) and closed */
    off += (size_t)w;
  }
  shutdown(fd, SHUT_WR);
  static char buf[64 * 1024], rest[64 * 1024];
  size_t n = 0;
  /* Read until the server closes, or until it has been silent for
   * QUIET_MS: libmicrohttpd 0.9.75 does not always notice the client's
   * half-close, and an incomplete request is (rightly) left waiting for
   * the 2 s idle timeout; waiting for either would make the target slow.
   * Every handler answers at once here (latencies 0), so silence means
   * the server has said what it will say. */
  enum { QUIET_MS = 5 };
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, QUIET_MS) != 1)
      break;
    bool full = n == sizeof buf; /* only the start (the first answer) is kept */
    ssize_t got = full ? recv(fd, rest, sizeof rest, 0) : recv(fd, buf + n, sizeof buf - n, 0);
    if (got <= 0)
      break;
    if (!full)
      n += (size_t)got;
  }
  close(fd);
  check_answer(buf, n);
  return 0;
}
