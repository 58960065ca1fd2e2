/* hello_errors.c - the smallest program using libracefree: print the
 * library's status codes with their names and texts. */
#include <stdio.h>

#include <racefree/racefree.h>

int main(void) {
  for (int code = 0; code >= RF_ERRNO_MIN; code--) {
    printf("%4d %-14s %s\n", code, rf_err_name(code), rf_strerror(code));
  }
  return 0;
}
