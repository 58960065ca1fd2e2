/* racefree/errors.h - the one error convention of libracefree.
 *
 * Every function of the library that can fail returns an int: 0 on success,
 * or a negative RF_E... code. errno never leaks through the API; outputs are
 * passed through pointers and are written only on success.
 */
#ifndef RACEFREE_ERRORS_H
#define RACEFREE_ERRORS_H

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: what this header declares
 * is its exported API. */
#pragma GCC visibility push(default)

#define RF_OK 0

/* X-macro so that codes, names and messages cannot drift apart. */
#define RF_ERRNO_MAP(XX)                                                                           \
  XX(EINVAL, -1, "invalid argument")                                                               \
  XX(ENOMEM, -2, "out of memory")                                                                  \
  XX(EBUSY, -3, "resource busy (queue full or lock held)")                                         \
  XX(ETIMEDOUT, -4, "timed out")                                                                   \
  XX(ECANCELED, -5, "operation canceled")                                                          \
  XX(ESHUTDOWN, -6, "object is shut down")                                                         \
  XX(ENOENT, -7, "not found")                                                                      \
  XX(EEXIST, -8, "already exists")                                                                 \
  XX(ECONFLICT, -9, "conflicting concurrent update")                                               \
  XX(ELOAD, -10, "loader failed")                                                                  \
  XX(ERANGE, -11, "value out of range")                                                            \
  XX(EIO, -12, "input/output error")                                                               \
  XX(EAGAIN, -13, "try again")                                                                     \
  XX(EUNAVAIL, -14, "backend unavailable")                                                         \
  XX(ESTATE, -15, "operation not valid in the current state")                                      \
  XX(ESTALE, -16, "stale fencing token")                                                           \
  XX(ENOTSUP, -17, "operation not supported")                                                      \
  XX(EOVERFLOW, -18, "value too large")                                                            \
  XX(EINTERNAL, -19, "internal error")

enum rf_errno {
#define RF__ERR_ENUM(name, value, msg) RF_##name = (value),
  RF_ERRNO_MAP(RF__ERR_ENUM)
#undef RF__ERR_ENUM
      RF_ERRNO_MIN = -19
};

/* rf_strerror: human-readable text for a status code (0 or RF_E...).
 * Never returns NULL; unknown codes give "unknown error". Thread-safe,
 * the returned string is static and must not be freed. */
const char *rf_strerror(int status);

/* rf_err_name: the symbolic name ("RF_EBUSY", "RF_OK") of a status code.
 * Never returns NULL; unknown codes give "RF_EUNKNOWN". Thread-safe. */
const char *rf_err_name(int status);

#pragma GCC visibility pop

#ifdef __cplusplus
}
#endif

#endif /* RACEFREE_ERRORS_H */
