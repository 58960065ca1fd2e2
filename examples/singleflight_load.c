/* singleflight_load.c - 10 threads ask for the same key at once; the loader
 * runs once and all of them get its value. Described in docs/singleflight.md. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <racefree/errors.h>
#include <racefree/singleflight.h>

static rf_sf_t *flights;
static atomic_int loads;
static atomic_int waiting; /* threads that reached rf_sf_do */

/* The slow upstream: runs on the first caller's thread, completes the call
 * with a malloc'ed string that the library frees when the last reader lets go. */
static void load_user(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  atomic_fetch_add(&loads, 1);
  while (atomic_load(&waiting) < 10) /* let every caller join the flight */
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  nanosleep(&(struct timespec){0, 200000000}, NULL); /* 200 ms of "database" */
  char *v = malloc(64);
  if (v == NULL) {
    rf_sf_complete(call, RF_ENOMEM, NULL, 0, NULL);
    return;
  }
  snprintf(v, 64, "profile of %s", key);
  rf_sf_complete(call, 0, v, strlen(v) + 1, free);
}

static atomic_int same, shared_count;

static void *request(void *arg) {
  (void)arg;
  rf_sf_result_t *res = NULL;
  bool shared = false;
  atomic_fetch_add(&waiting, 1);
  int rc = rf_sf_do(flights, "user:42", load_user, NULL, 5000, &res, &shared);
  if (rc == 0 && rf_sf_result_status(res) == 0) {
    const char *v = rf_sf_result_value(res, NULL);
    atomic_fetch_add(&same, strcmp(v, "profile of user:42") == 0);
    atomic_fetch_add(&shared_count, shared);
  }
  rf_sf_result_release(res);
  return NULL;
}

int main(void) {
  if (rf_sf_create(&flights) != 0)
    return 1;
  pthread_t t[10];
  for (int i = 0; i < 10; i++)
    pthread_create(&t[i], NULL, request, NULL);
  for (int i = 0; i < 10; i++)
    pthread_join(t[i], NULL);
  printf("10 callers, loader ran %d time(s)\n", atomic_load(&loads));
  printf("%d got \"profile of user:42\", %d of them shared another caller's load\n",
         atomic_load(&same), atomic_load(&shared_count));
  printf("flights in progress afterwards: %zu\n", rf_sf_inflight(flights));
  rf_sf_destroy(flights);
  return atomic_load(&loads) == 1 && atomic_load(&same) == 10 ? 0 : 1;
}
