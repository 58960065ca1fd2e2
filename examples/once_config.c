/* once_config.c - lazy initialisation that runs once, even when 8 threads ask
 * at the same moment, and that retries after a failure instead of caching it.
 * Described in docs/once.md. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#include <racefree/errors.h>
#include <racefree/once.h>

static rf_once_t config_once = RF_ONCE_INIT;
static atomic_int loads;     /* how many times load_config ran */
static atomic_int fail_next; /* make the next load fail (a missing file) */
static int config_port;      /* written by load_config, read after rf_once_call */

static int load_config(void *arg) {
  (void)arg;
  atomic_fetch_add(&loads, 1);
  if (atomic_exchange(&fail_next, 0))
    return RF_EIO; /* not cached: the next call tries again */
  config_port = 8080;
  return 0;
}

static void *request(void *arg) {
  int *rc = arg;
  *rc = rf_once_call(&config_once, load_config, NULL);
  return NULL;
}

int main(void) {
  /* 1. The first load fails: the caller gets the error, nothing is cached. */
  atomic_store(&fail_next, 1);
  int rc = rf_once_call(&config_once, load_config, NULL);
  printf("first call: %s, done=%d\n", rf_err_name(rc), rf_once_done(&config_once));

  /* 2. Eight requests arrive together: one of them loads, all get 0. */
  pthread_t t[8];
  int status[8];
  for (int i = 0; i < 8; i++)
    pthread_create(&t[i], NULL, request, &status[i]);
  int ok = 0;
  for (int i = 0; i < 8; i++) {
    pthread_join(t[i], NULL);
    ok += status[i] == 0;
  }
  printf("8 concurrent calls: %d returned 0, port=%d\n", ok, config_port);
  printf("load_config ran %d times (1 failure + 1 success)\n", atomic_load(&loads));
  return ok == 8 && atomic_load(&loads) == 2 ? 0 : 1;
}
