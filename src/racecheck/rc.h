/* rc.h - small utilities shared by every part of racecheck: growable byte
 * buffers, allocation that never returns NULL, clocks, a per-thread PRNG and
 * error reporting with file positions.
 *
 * racecheck is a command-line tool, not a library: running out of memory is
 * not an error it can usefully recover from, so rc_xmalloc and friends print
 * a message and abort (the way git's xmalloc does). Every other failure --
 * bad input, unreachable targets, broken responses -- is reported through
 * return values and never crashes the tool.
 */
#ifndef RC_RC_H
#define RC_RC_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define RC_VERSION "0.1.0"

/* Exit statuses of the racecheck command (documented in docs/racecheck.md). */
enum {
  RC_EXIT_OK = 0,     /* every expectation, ensure threshold and invariant held */
  RC_EXIT_FAILED = 1, /* at least one of them failed */
  RC_EXIT_USAGE = 2,  /* bad command line or scenario file */
  RC_EXIT_DOWN = 3,   /* the target could not be reached before the run */
};

/* Allocation: never returns NULL (aborts with a message on exhaustion).
 * Thread-safe. The caller frees with free(). */
void *rc_xmalloc(size_t n);
void *rc_xcalloc(size_t count, size_t size);
void *rc_xrealloc(void *p, size_t n);
char *rc_xstrdup(const char *s);
char *rc_xstrndup(const char *s, size_t n);
/* printf into a fresh string the caller frees. */
char *rc_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A growable byte buffer, always NUL-terminated after its len bytes once
 * anything was appended. Zero-initialised is empty and valid. Not
 * thread-safe; owns its storage (rc_buf_free releases it). */
typedef struct rc_buf {
  char *data;
  size_t len;
  size_t cap;
} rc_buf_t;

void rc_buf_reserve(rc_buf_t *b, size_t extra);
void rc_buf_append(rc_buf_t *b, const void *p, size_t n);
void rc_buf_puts(rc_buf_t *b, const char *s);
void rc_buf_putc(rc_buf_t *b, char c);
void rc_buf_printf(rc_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void rc_buf_vprintf(rc_buf_t *b, const char *fmt, va_list ap);
/* Append s as the contents of a JSON string (without the quotes). */
void rc_buf_json_escape(rc_buf_t *b, const char *s, size_t n);
/* Append s with &, <, >, " escaped for HTML. */
void rc_buf_html_escape(rc_buf_t *b, const char *s);
void rc_buf_clear(rc_buf_t *b);
void rc_buf_free(rc_buf_t *b);
/* Give the storage to the caller (NUL-terminated, possibly NULL when empty). */
char *rc_buf_steal(rc_buf_t *b);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t rc_now_ns(void);
/* CLOCK_REALTIME in milliseconds since the epoch (for report timestamps). */
uint64_t rc_wall_ms(void);

/* xoshiro256** PRNG; one per thread, never shared. Seed with rc_rng_seed. */
typedef struct rc_rng {
  uint64_t s[4];
} rc_rng_t;
void rc_rng_seed(rc_rng_t *r, uint64_t seed);
uint64_t rc_rng_next(rc_rng_t *r);
/* Uniform integer in [lo, hi] (inclusive); lo > hi swaps them. */
int64_t rc_rng_range(rc_rng_t *r, int64_t lo, int64_t hi);
/* Uniform double in [0, 1). */
double rc_rng_double(rc_rng_t *r);

/* An error message with an optional position, filled by the loaders and the
 * expression parser. line/col are 1-based; 0 means "no position". */
typedef struct rc_err {
  char msg[4096]; /* room for every blocker of a scenario file */
  int line;
  int col;
} rc_err_t;
void rc_err_set(rc_err_t *e, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parse a duration such as "10", "10s", "500ms", "2m", "1.5s" (a bare
 * number means `unit_ns` units). Returns 0 and stores nanoseconds, or -1. */
int rc_parse_duration(const char *s, uint64_t unit_ns, uint64_t *out_ns);

/* Read a whole regular file (at most 1 GiB) into a fresh NUL-terminated
 * buffer. Returns 0, or -1 with errno set (EINVAL: not a regular file). */
int rc_read_file(const char *path, char **out, size_t *out_len);
/* The same with a limit of `max` bytes: a larger file fails with EFBIG
 * before anything is read. */
int rc_read_file_max(const char *path, size_t max, char **out, size_t *out_len);

#endif /* RC_RC_H */
