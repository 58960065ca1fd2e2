/* listen.c - see listen.h. */
#include "listen.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "racefree/errors.h"

#define BACKLOG 4096

static int describe(int fd, char *display, size_t cap) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len = sizeof ss;
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0 ||
      getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return RF_EIO;
  snprintf(display, cap, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, serv);
  return 0;
}

int srv_listen(const char *host, unsigned port, int *fd_out, char *display, size_t cap, char *err,
               size_t errlen) {
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%u", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gai = getaddrinfo(host, portstr, &hints, &res);
  if (gai != 0) {
    snprintf(err, errlen, "cannot listen on %s:%u: %s", host, port, gai_strerror(gai));
    return RF_EINVAL;
  }
  int fd = -1, saved = 0;
  for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      saved = errno;
      continue;
    }
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, BACKLOG) == 0)
      break;
    saved = errno;
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  if (fd < 0) {
    snprintf(err, errlen, "cannot listen on %s:%u: %s", host, port, strerror(saved));
    return saved == EADDRINUSE ? RF_EBUSY : RF_EIO;
  }
  if (describe(fd, display, cap) != 0) {
    snprintf(err, errlen, "cannot read the bound address of %s:%u: %s", host, port,
             strerror(errno));
    close(fd);
    return RF_EIO;
  }
  *fd_out = fd;
  return 0;
}
