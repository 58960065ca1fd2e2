/* cache_get.c - a bounded cache with a TTL whose misses are single-flight:
 * hits, a miss, an expiry and an eviction, then the statistics. Described in
 * docs/cache.md. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <racefree/cache.h>
#include <racefree/errors.h>

static int loads;

/* The loader: called on a miss, by exactly one caller per key at a time. */
static void load_price(rf_sf_call_t *call, const char *key, void *arg) {
  (void)arg;
  loads++;
  char *v = malloc(32);
  if (v == NULL) {
    rf_sf_complete(call, RF_ENOMEM, NULL, 0, NULL);
    return;
  }
  snprintf(v, 32, "%s=%d", key, 100 + loads);
  rf_sf_complete(call, 0, v, strlen(v) + 1, free);
}

static void get(rf_cache_t *c, const char *key) {
  static const char *const src_name[] = {"hit", "miss", "shared"};
  rf_sf_result_t *res = NULL;
  rf_cache_src_t src;
  int rc = rf_cache_get(c, key, load_price, NULL, 1000, &res, &src);
  if (rc != 0 || rf_sf_result_status(res) != 0)
    printf("get %-5s %s\n", key, rf_err_name(rc != 0 ? rc : rf_sf_result_status(res)));
  else
    printf("get %-5s %-6s %s\n", key, src_name[src], (const char *)rf_sf_result_value(res, NULL));
  rf_sf_result_release(res);
}

int main(void) {
  rf_cache_t *c = NULL;
  rf_cache_opts_t opts = {.max_entries = 2, .ttl_ms = 200};
  int rc = rf_cache_create(&c, &opts);
  if (rc != 0) {
    fprintf(stderr, "rf_cache_create: %s\n", rf_strerror(rc));
    return 1;
  }
  get(c, "apple");                                   /* miss: loads */
  get(c, "apple");                                   /* hit */
  nanosleep(&(struct timespec){0, 300000000}, NULL); /* past the 200 ms TTL */
  get(c, "apple");                                   /* expired: loads again */
  get(c, "pear");                                    /* miss */
  get(c, "plum"); /* miss; the cache holds 2 entries, so one is evicted */
  rf_cache_stats_t st;
  rf_cache_stats(c, &st);
  printf("loads=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64 " evictions=%" PRIu64
         " entries=%" PRIu64 "\n",
         st.loads, st.hits, st.misses, st.evictions, st.entries);
  rf_cache_destroy(c);
  return st.loads == 4 && st.entries == 2 ? 0 : 1;
}
