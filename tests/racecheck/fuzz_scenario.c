/* fuzz_scenario.c - libFuzzer target: the scenario file loader (YAML,
 * every key, templates and expressions inside it) on arbitrary bytes.
 * It must return a file or an error, never crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rc_err_t err = {0};
  rc_file_t *f = rc_file_load_mem((const char *)data, size, "/nonexistent/fuzz.yml", &err);
  rc_file_free(f);
  return 0;
}
