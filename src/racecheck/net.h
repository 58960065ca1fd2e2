/* net.h - the event loop of racecheck: one epoll instance per thread,
 * non-blocking keep-alive client connections, timers and a cross-thread
 * wake-up.
 *
 * Threading: a loop and every connection on it belong to the one thread
 * that runs rc_loop_run_once; only rc_loop_wake may be called from other
 * threads. Callbacks run on the loop's thread.
 *
 * Connections are edge-triggered: the socket is registered once for
 * readability and writability and never modified again, reads go on until
 * a short read (which on a stream socket means the queue was drained) and a
 * write that would block waits for the next writability edge. This keeps
 * the cost to one read and one write system call per request, which is
 * what lets the closed-model benchmark keep up with wrk.
 */
#ifndef RC_NET_H
#define RC_NET_H

#include <stdint.h>
#include <sys/socket.h>

#include "http.h"

/* Network error kinds, reported and tallied by name. */
enum {
  RC_NET_OK = 0,
  RC_NET_ECONNREFUSED, /* nothing listens on the target */
  RC_NET_ECONNRESET,   /* the peer reset the connection */
  RC_NET_ETIMEDOUT,    /* no complete answer within the request timeout */
  RC_NET_ECLOSED,      /* closed by the peer before any byte of the answer */
  RC_NET_ETRUNCATED,   /* closed by the peer in the middle of the answer */
  RC_NET_EPROTO,       /* the answer is not valid HTTP/1.x */
  RC_NET_ETOOBIG,      /* the answer body exceeds the limit */
  RC_NET_ECONNECT,     /* any other failure to connect (no route, EMFILE...) */
  RC_NET_EPIPE,        /* the request could not be written */
  RC_NET_ETLS,         /* the TLS handshake failed (certificate, protocol) */
  RC_NET_NERR
};
const char *rc_net_errname(int e);

typedef struct rc_loop rc_loop_t;
typedef struct rc_conn rc_conn_t;

/* An address to connect to (resolved once, shared read-only). With `tls`
 * set (an SSL_CTX from rc_tls_ctx_new), connections to it speak TLS, with
 * `sni` as the server name (and the name the certificate must match when
 * the context verifies). */
typedef struct rc_addr {
  struct sockaddr_storage sa;
  socklen_t len;
  void *tls;
  char sni[256];
} rc_addr_t;

/* TLS options (config.tls, -k). Paths may be NULL. */
typedef struct rc_tls_opts {
  int insecure; /* do not verify the server's certificate (rejectUnauthorized: false) */
  const char *ca, *cert, *key;
} rc_tls_opts_t;
/* A client TLS context (OpenSSL), shared read-only by every thread. Returns
 * NULL with a message. */
void *rc_tls_ctx_new(const rc_tls_opts_t *o, rc_err_t *err);
void rc_tls_ctx_free(void *ctx);
/* Make connections to `a` speak TLS with context `tls`, to server `host`. */
void rc_addr_set_tls(rc_addr_t *a, void *tls, const char *host);

/* Resolve host:port (numeric or a name from /etc/hosts or DNS), preferring
 * IPv4. Returns 0, or -1 with a message. Blocking. */
int rc_addr_resolve(const char *host, uint16_t port, rc_addr_t *out, rc_err_t *err);

/* Events delivered to a connection's callback. */
enum {
  RC_CONN_EV_CONNECTED = 1, /* rc_conn_connect finished */
  RC_CONN_EV_RESPONSE = 2,  /* c->resp holds a complete answer */
  RC_CONN_EV_ERROR = 3,     /* c->err holds an RC_NET_ code; the socket is closed */
};
typedef void (*rc_conn_cb)(rc_conn_t *c, int event, void *ud);

enum {
  RC_CS_CLOSED,
  RC_CS_CONNECTING,
  RC_CS_IDLE,
  RC_CS_SENDING,
  RC_CS_WAITING,
  RC_CS_HANDSHAKE /* TLS */
};

struct rc_conn {
  rc_loop_t *loop;
  int fd;
  void *ssl; /* the TLS session on fd (SSL *), or NULL */
  uint8_t state;
  uint8_t send_after_connect; /* a request waits for the connection */
  uint8_t deferred_ev;        /* event queued for the next loop turn */
  int err;
  uint32_t idx; /* position in the loop's table of open sockets */
  const rc_addr_t *addr;
  const char *out; /* the request being sent (not owned) */
  size_t out_len, out_off;
  unsigned resp_flags;
  uint64_t t_send;     /* when the current request was first written */
  uint64_t deadline;   /* absolute time-out of the current operation; 0 none */
  uint64_t timeout_ns; /* time-out of the current request */
  uint32_t nreq;       /* answers received on the current socket */
  uint64_t bytes_in, bytes_out;
  rc_resp_t resp;
  rc_conn_cb cb;
  void *ud;
};

/* Prepare a closed connection to addr. Never fails. */
void rc_conn_init(rc_conn_t *c, rc_loop_t *loop, const rc_addr_t *addr, rc_conn_cb cb, void *ud);
/* Open the socket now (for bursts: connect first, send later). Delivers
 * RC_CONN_EV_CONNECTED or RC_CONN_EV_ERROR later (never from inside this
 * call). A connection that is already open gets RC_CONN_EV_CONNECTED on
 * the next loop turn. */
void rc_conn_connect(rc_conn_t *c, uint64_t timeout_ns);
/* Send a request (buf stays owned by the caller and must live until the
 * answer or the error) and read its answer with resp_flags (RC_RESP_*).
 * Opens the connection when closed. The outcome arrives as an event, never
 * from inside this call. c->resp stays valid until the next send. */
void rc_conn_send(rc_conn_t *c, const char *buf, size_t len, unsigned resp_flags,
                  uint64_t timeout_ns);
/* Close the socket (no event is delivered). Safe on a closed connection. */
void rc_conn_close(rc_conn_t *c);
/* Close and free the response buffers. */
void rc_conn_free(rc_conn_t *c);

typedef void (*rc_timer_fn)(void *ud, uint64_t now);
typedef struct rc_timer {
  uint64_t when;
  rc_timer_fn fn;
  void *ud;
} rc_timer_t;

struct rc_loop {
  int epfd;
  int evfd;
  char *rbuf;
  size_t rbuf_size;
  rc_conn_t **conns; /* open sockets, for the time-out scan */
  uint32_t nconns, cap;
  rc_timer_t *timers; /* binary min-heap on `when` */
  uint32_t ntimers, tcap;
  rc_conn_t **deferred; /* events to deliver on the next turn */
  uint32_t ndeferred, dcap;
  uint64_t next_scan;
  void (*on_wake)(rc_loop_t *l, void *ud);
  void *wake_ud;
};

/* Create the epoll instance and the wake-up eventfd. Returns 0 or -errno. */
int rc_loop_init(rc_loop_t *l);
/* Release the loop (connections must have been closed by their owners). */
void rc_loop_free(rc_loop_t *l);
/* Wake the loop from another thread: on_wake runs on the loop's thread.
 * Thread-safe, async-signal-safe. */
void rc_loop_wake(rc_loop_t *l);
/* Run fn(ud, now) at `when` (CLOCK_MONOTONIC ns) on the loop's thread.
 * Timers cannot be cancelled: the callback checks whether it still matters. */
void rc_loop_timer(rc_loop_t *l, uint64_t when, rc_timer_fn fn, void *ud);
/* Wait for events until `until` (absolute ns) at the latest and dispatch
 * them, then due timers and time-outs. Returns 0 or -errno of epoll_wait. */
int rc_loop_run_once(rc_loop_t *l, uint64_t until);
/* Time of the earliest timer, or UINT64_MAX. */
uint64_t rc_loop_next_timer(const rc_loop_t *l);

#endif /* RC_NET_H */
