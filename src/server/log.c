/* log.c - see log.h. */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "racefree/errors.h"

#include "redact.h"

/* Written once by srv_log_init before threads exist, read-only afterwards. */
static int log_level = SRV_LOG_INFO;
static int log_format = SRV_LOG_TEXT;
static char log_path[SRV_PATH_MAX];
/* The descriptor number never changes after init (reopen dup2()s over it);
 * atomic only so that srv_log_close racing a late writer is not UB. */
static _Atomic int log_fd = STDERR_FILENO;

static int open_log(const char *path) {
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int srv_log_init(int level, int format, const char *path, char *err, size_t errlen) {
  log_level = level;
  log_format = format;
  if (path == NULL || path[0] == '\0') {
    log_path[0] = '\0';
    atomic_store(&log_fd, STDERR_FILENO);
    return 0;
  }
  int fd = open_log(path);
  if (fd < 0) {
    if (err != NULL)
      snprintf(err, errlen, "--log-file %s: %s", path, strerror(errno));
    return RF_EIO;
  }
  snprintf(log_path, sizeof log_path, "%s", path);
  atomic_store(&log_fd, fd);
  return 0;
}

int srv_log_reopen(void) {
  if (log_path[0] == '\0')
    return 0;
  int fd = open_log(log_path);
  if (fd < 0)
    return RF_EIO;
  int cur = atomic_load(&log_fd);
  /* dup3 replaces cur atomically: a concurrent write goes to the old or the
   * new file, never to a closed descriptor. */
  int rc = dup3(fd, cur, O_CLOEXEC) < 0 ? RF_EIO : 0;
  close(fd);
  return rc;
}

void srv_log_close(void) {
  int fd = atomic_exchange(&log_fd, STDERR_FILENO);
  if (fd != STDERR_FILENO)
    close(fd);
}

int srv_log_enabled(int level) {
  return level >= log_level;
}

static size_t timestamp(char *buf, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  int m = snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return n + (m > 0 ? (size_t)m : 0);
}

static void emit(char *line, size_t len, size_t cap) {
  if (len >= cap - 1)
    len = cap - 2;
  line[len++] = '\n';
  const char *p = line;
  while (len > 0) {
    ssize_t w = write(atomic_load_explicit(&log_fd, memory_order_relaxed), p, len);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return;
    p += w;
    len -= (size_t)w;
  }
}

/* JSON-escape s into out (always NUL-terminated). */
static size_t json_escape(const char *s, char *out, size_t cap) {
  size_t j = 0;
  for (; *s != '\0' && j + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[j++] = '\\';
      out[j++] = (char)c;
    } else if (c < 0x20) {
      j += (size_t)snprintf(out + j, cap - j, "\\u%04x", c);
    } else {
      out[j++] = (char)c;
    }
  }
  out[j] = '\0';
  return j;
}

void srv_log(int level, const char *fmt, ...) {
  if (level < log_level)
    return;
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  char clean[sizeof msg];
  srv_url_redact(msg, clean, sizeof clean); /* last guard: no password reaches a log */
  memcpy(msg, clean, sizeof msg);
  char line[4096], ts[40];
  timestamp(ts, sizeof ts);
  int n;
  if (log_format == SRV_LOG_JSON) {
    char esc[sizeof line - 128];
    json_escape(msg, esc, sizeof esc);
    n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"msg\":\"%s\"}",
                 ts, srv_log_level_name(level), (int)getpid(), esc);
  } else {
    n = snprintf(line, sizeof line, "%s %-5s [%d] %s", ts, srv_log_level_name(level), (int)getpid(),
                 msg);
  }
  if (n > 0)
    emit(line, (size_t)n, sizeof line);
}

void srv_log_request(const char *method, const char *route, unsigned status, double ms) {
  if (SRV_LOG_INFO < log_level)
    return;
  char line[1024], ts[40], m[64], r[256];
  timestamp(ts, sizeof ts);
  json_escape(method ? method : "-", m, sizeof m);
  json_escape(route ? route : "-", r, sizeof r);
  int n;
  if (log_format == SRV_LOG_JSON)
    n = snprintf(line, sizeof line,
                 "{\"ts\":\"%s\",\"level\":\"info\",\"pid\":%d,\"method\":\"%s\",\"route\":\"%s\","
                 "\"status\":%u,\"ms\":%.3f}",
                 ts, (int)getpid(), m, r, status, ms);
  else
    n = snprintf(line, sizeof line, "%s info  [%d] %s %s %u %.3fms", ts, (int)getpid(), m, r,
                 status, ms);
  if (n > 0)
    emit(line, (size_t)n, sizeof line);
}
