/* errors.c - status codes to text. Pure functions over static tables. */
#include "racefree/errors.h"

const char *rf_strerror(int status) {
  switch (status) {
  case RF_OK:
    return "success";
#define RF__ERR_MSG(name, value, msg)                                                              \
  case RF_##name:                                                                                  \
    return msg;
    RF_ERRNO_MAP(RF__ERR_MSG)
#undef RF__ERR_MSG
  default:
    return "unknown error";
  }
}

const char *rf_err_name(int status) {
  switch (status) {
  case RF_OK:
    return "RF_OK";
#define RF__ERR_NAME(name, value, msg)                                                             \
  case RF_##name:                                                                                  \
    return "RF_" #name;
    RF_ERRNO_MAP(RF__ERR_NAME)
#undef RF__ERR_NAME
  default:
    return "RF_EUNKNOWN";
  }
}
