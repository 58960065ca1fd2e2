/* rc_testsrv.c - see rc_testsrv.h. Test code: requests are parsed just
 * enough to find the path and the body length. */
#include "rc_testsrv.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 1100

typedef struct conn {
  int fd;
  char buf[16384];
  size_t len;
} conn_t;

struct rc_testsrv {
  int lfd;
  int pipefd[2];
  uint16_t port;
  pthread_t th;
  atomic_ulong requests, accepted;
  unsigned long once;
  conn_t *conns[MAXC];
  int nconns;
};

static void sendall(int fd, const char *p, size_t n) {
  while (n) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) {
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

static void reply(int fd, int status, const char *extra, const char *body) {
  char head[512];
  int n =
      snprintf(head, sizeof head,
               "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n",
               status, strlen(body), extra ? extra : "");
  sendall(fd, head, (size_t)n);
  sendall(fd, body, strlen(body));
}

/* Handle one complete request; returns 0 to keep the connection, 1 to close it. */
static int handle(rc_testsrv_t *s, int fd, const char *req, const char *body, size_t blen) {
  char path[256] = "";
  sscanf(req, "%*s %255s", path);
  if (strncmp(path, "/base/", 6) == 0) { /* echo the request target */
    char b[400];
    snprintf(b, sizeof b, "{\"target\":\"%s\"}", path);
    atomic_fetch_add(&s->requests, 1);
    reply(fd, 200, NULL, b);
    return 0;
  }
  char *q = strchr(path, '?');
  if (q) {
    *q = '\0';
  }
  atomic_fetch_add(&s->requests, 1);
  if (strcmp(path, "/ok") == 0) {
    reply(fd, 200, NULL, "{\"data\":\"ok\"}");
  } else if (strcmp(path, "/chunked") == 0) {
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: "
                    "chunked\r\n\r\n7\r\n{\"n\":1,\r\n12\r\n\"parts\":[\"a\",\"b\"]}\r\n0\r\n\r\n";
    sendall(fd, r, strlen(r));
  } else if (strcmp(path, "/close") == 0) {
    reply(fd, 200, "Connection: close\r\n", "{\"data\":\"bye\"}");
    return 1;
  } else if (strcmp(path, "/eof") == 0) {
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"eof\":true}";
    sendall(fd, r, strlen(r));
    return 1;
  } else if (strcmp(path, "/trunc") == 0) {
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789";
    sendall(fd, r, strlen(r));
    return 1;
  } else if (strcmp(path, "/garbage") == 0) {
    sendall(fd, "hello world\r\n", 13);
    return 1;
  } else if (strcmp(path, "/silent") == 0) {
    return 0;
  } else if (strcmp(path, "/reset") == 0) {
    return 1;
  } else if (strcmp(path, "/once") == 0) {
    if (s->once++ == 0) {
      reply(fd, 201, NULL, "{\"created\":true}");
    } else {
      reply(fd, 409, NULL, "{\"error\":{\"code\":\"conflict\"}}");
    }
  } else if (strcmp(path, "/count") == 0) {
    char b[64];
    snprintf(b, sizeof b, "{\"count\":%lu}", s->once);
    reply(fd, 200, NULL, b);
  } else if (strcmp(path, "/echo") == 0) {
    char *copy = malloc(blen + 1);
    memcpy(copy, body, blen);
    copy[blen] = '\0';
    reply(fd, 200, NULL, blen ? copy : "null");
    free(copy);
  } else if (strcmp(path, "/setcookie") == 0) {
    reply(fd, 200,
          "Set-Cookie: sid=abc123; Path=/; HttpOnly\r\n"
          "Set-Cookie: scoped=1; Path=/other\r\n"
          "Set-Cookie: foreign=1; Domain=example.com\r\n"
          "Set-Cookie: gone=1; Max-Age=0\r\n",
          "{}");
  } else if (strcmp(path, "/cookies") == 0 || strcmp(path, "/other/cookies") == 0) {
    /* echo the Cookie header (of the request head only) */
    char val[512] = "";
    const char *h = strcasestr(req, "\r\nCookie:");
    if (h && h < body) {
      h += 9;
      while (*h == ' ') {
        h++;
      }
      size_t n = strcspn(h, "\r");
      snprintf(val, sizeof val, "%.*s", (int)(n < 400 ? n : 400), h);
    }
    char b[600];
    snprintf(b, sizeof b, "{\"cookie\":\"%s\"}", val);
    reply(fd, 200, NULL, b);
  } else if (strcmp(path, "/redir") == 0) {
    reply(fd, 302, "Location: /ok\r\n", "{}");
  } else if (strcmp(path, "/redir303") == 0) {
    reply(fd, 303, "Location: /echo\r\n", "{}");
  } else if (strcmp(path, "/redir307") == 0) {
    reply(fd, 307, "Location: /echo\r\n", "{}");
  } else if (strcmp(path, "/redirloop") == 0) {
    reply(fd, 302, "Location: /redirloop\r\n", "{}");
  } else if (strcmp(path, "/redirrel/a") == 0) {
    reply(fd, 302, "Location: b?x=1\r\n", "{}");
  } else if (strcmp(path, "/redirrel/b") == 0) {
    reply(fd, 200, NULL, "{\"rel\":true}");
  } else if (strcmp(path, "/redircookie") == 0) {
    reply(fd, 302, "Set-Cookie: hop=1; Path=/\r\nLocation: /cookies\r\n", "{}");
  } else if (strcmp(path, "/header") == 0) {
    reply(fd, 200, "X-Test: yes\r\n", "{}");
  } else if (strncmp(path, "/status/", 8) == 0) {
    reply(fd, atoi(path + 8), NULL, "{}");
  } else {
    reply(fd, 404, NULL, "{\"error\":{\"code\":\"not_found\"}}");
  }
  return 0;
}

/* Consume complete requests from c; returns 1 when the connection must close. */
static int drain(rc_testsrv_t *s, conn_t *c) {
  for (;;) {
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) {
      return c->len >= sizeof c->buf - 1;
    }
    size_t head = (size_t)(end - c->buf) + 4;
    size_t clen = 0;
    for (char *h = c->buf; h && h < end; h = strstr(h, "\r\n")) {
      h += (h[0] == '\r') ? 2 : 0;
      if (strncasecmp(h, "Content-Length:", 15) == 0) {
        clen = strtoul(h + 15, NULL, 10);
      }
      if (!strstr(h, "\r\n")) {
        break;
      }
    }
    if (c->len < head + clen) {
      return 0;
    }
    int close_it = handle(s, c->fd, c->buf, c->buf + head, clen);
    memmove(c->buf, c->buf + head + clen, c->len - head - clen);
    c->len -= head + clen;
    if (close_it) {
      return 1;
    }
  }
}

static void *srv_main(void *arg) {
  rc_testsrv_t *s = arg;
  struct pollfd *pf = calloc(MAXC + 2, sizeof *pf);
  for (;;) {
    int n = 0;
    pf[n++] = (struct pollfd){.fd = s->pipefd[0], .events = POLLIN};
    pf[n++] = (struct pollfd){.fd = s->lfd, .events = POLLIN};
    for (int i = 0; i < s->nconns; i++) {
      pf[n++] = (struct pollfd){.fd = s->conns[i]->fd, .events = POLLIN};
    }
    if (poll(pf, (nfds_t)n, 1000) < 0 && errno != EINTR) {
      break;
    }
    if (pf[0].revents) {
      break;
    }
    if (pf[1].revents & POLLIN) {
      int fd = accept(s->lfd, NULL, NULL);
      if (fd >= 0 && s->nconns < MAXC) {
        conn_t *c = calloc(1, sizeof *c);
        c->fd = fd;
        s->conns[s->nconns++] = c;
        atomic_fetch_add(&s->accepted, 1);
      } else if (fd >= 0) {
        close(fd);
      }
    }
    for (int i = 2; i < n; i++) {
      if (!pf[i].revents) {
        continue;
      }
      conn_t *c = NULL;
      int ci = -1;
      for (int k = 0; k < s->nconns; k++) {
        if (s->conns[k]->fd == pf[i].fd) {
          c = s->conns[k];
          ci = k;
        }
      }
      if (!c) {
        continue;
      }
      ssize_t r = recv(c->fd, c->buf + c->len, sizeof c->buf - 1 - c->len, 0);
      int close_it = r <= 0;
      if (r > 0) {
        c->len += (size_t)r;
        close_it = drain(s, c);
      }
      if (close_it) {
        close(c->fd);
        free(c);
        s->conns[ci] = s->conns[--s->nconns];
      }
    }
  }
  for (int i = 0; i < s->nconns; i++) {
    close(s->conns[i]->fd);
    free(s->conns[i]);
  }
  s->nconns = 0;
  free(pf);
  return NULL;
}

rc_testsrv_t *rc_testsrv_start(void) {
  rc_testsrv_t *s = calloc(1, sizeof *s);
  s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof a;
  if (bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 1024) != 0 ||
      getsockname(s->lfd, (struct sockaddr *)&a, &al) != 0 || pipe(s->pipefd) != 0) {
    close(s->lfd);
    free(s);
    return NULL;
  }
  s->port = ntohs(a.sin_port);
  if (pthread_create(&s->th, NULL, srv_main, s) != 0) {
    close(s->lfd);
    free(s);
    return NULL;
  }
  return s;
}

uint16_t rc_testsrv_port(const rc_testsrv_t *s) {
  return s->port;
}

uint64_t rc_testsrv_requests(rc_testsrv_t *s) {
  return atomic_load(&s->requests);
}

uint64_t rc_testsrv_accepted(rc_testsrv_t *s) {
  return atomic_load(&s->accepted);
}

void rc_testsrv_stop(rc_testsrv_t *s) {
  if (!s) {
    return;
  }
  ssize_t w = write(s->pipefd[1], "x", 1);
  (void)w;
  pthread_join(s->th, NULL);
  close(s->lfd);
  close(s->pipefd[0]);
  close(s->pipefd[1]);
  free(s);
}
