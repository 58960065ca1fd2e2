/* listen.h - bind the listen socket before anything else starts.
 *
 * racefreed binds its socket itself (instead of letting libmicrohttpd do
 * it) for three reasons: the error for a taken port is ours to word; with
 * --port 0 the real port is known before the start-up line is printed; and
 * with --workers N the parent binds once and every worker process serves
 * the same socket (inherited over fork, handed to libmicrohttpd with
 * MHD_OPTION_LISTEN_SOCKET), so no SO_REUSEPORT is needed and there is no
 * window in which some workers listen and others do not.
 */
#ifndef RACEFREED_LISTEN_H
#define RACEFREED_LISTEN_H

#include <stddef.h>

/* srv_listen: a non-blocking, close-on-exec TCP socket bound to host:port
 * (numeric address or name; the first address that binds wins) and
 * listening. On success 0, *fd, and in display[cap] the "ADDR:PORT" it
 * listens on (the real port when port is 0; IPv6 in brackets). On failure
 * a negative code and a message in err naming the address and the reason
 * ("Address already in use"). */
int srv_listen(const char *host, unsigned port, int *fd, char *display, size_t cap, char *err,
               size_t errlen);

#endif /* RACEFREED_LISTEN_H */
