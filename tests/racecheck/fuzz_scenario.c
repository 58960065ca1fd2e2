/* fuzz_scenario.c - libFuzzer target: the scenario file loader (YAML,
 * every key, templates and expressions inside it) on arbitrary bytes.
 * It must return a file or an error, never crash, leak or hang. */
#include <stddef.h>
#include <stdint.h>

#include "scenario.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  rc_err_t err = {0};
  /* half the inputs with -e staging: config.environments merged too */
  const char *env = (size && (data[size - 1] & 1)) ? "staging" : NULL;
  rc_file_t *f = rc_file_load_mem_env((const char *)data, size, "/nonexistent/fuzz.yml", env, &err);
  rc_file_free(f);
  return 0;
}
