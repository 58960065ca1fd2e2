/* rc_testsrv.h - a tiny HTTP/1.1 server for racecheck's tests, on
 * 127.0.0.1 with a kernel-chosen port, run by one thread with poll().
 *
 * Routes (by request path, query ignored):
 *   /ok         200 {"data":"ok"}, keep-alive, Content-Length
 *   /chunked    200, chunked body {"n":1,"parts":["a","b"]}
 *   /close      200 with Connection: close, then closes
 *   /eof        200 without Content-Length, body until close (HTTP/1.0 style)
 *   /trunc      Content-Length 100, sends 10 bytes, closes
 *   /garbage    "hello world\r\n", closes
 *   /silent     reads the request, never answers
 *   /reset      closes without answering
 *   /once       201 the first time, 409 afterwards (a race-free "create")
 *   /count      200 {"count":N} (N = requests to /once so far)
 *   /echo       200 with the request body echoed, Content-Type application/json
 *   /header     200 with X-Test: yes
 *   /status/NNN answers NNN
 *   /base/...   200 {"target":"<the request target, query included>"}
 *   /setcookie  200 with four Set-Cookie: sid (Path=/), scoped (Path=/other),
 *               foreign (Domain=example.com), gone (Max-Age=0)
 *   /cookies, /other/cookies   200 {"cookie":"<the request's Cookie header>"}
 *   /redir      302 to /ok; /redir303 and /redir307 to /echo; /redirloop to
 *               itself; /redirrel/a to "b?x=1" (relative); /redirrel/b 200
 *               {"rel":true}; /redircookie 302 to /cookies with Set-Cookie hop=1
 * Every other path: 404.
 */
#ifndef RC_TESTSRV_H
#define RC_TESTSRV_H

#include <stdint.h>

typedef struct rc_testsrv rc_testsrv_t;

/* Start the server; returns NULL on failure. */
rc_testsrv_t *rc_testsrv_start(void);
uint16_t rc_testsrv_port(const rc_testsrv_t *s);
/* Requests received so far (complete request heads). */
uint64_t rc_testsrv_requests(rc_testsrv_t *s);
/* Connections accepted so far. */
uint64_t rc_testsrv_accepted(rc_testsrv_t *s);
/* Stop the thread, close everything, free. */
void rc_testsrv_stop(rc_testsrv_t *s);

#endif
