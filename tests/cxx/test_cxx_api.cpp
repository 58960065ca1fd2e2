// test_cxx_api.cpp - libracefree's public headers from C++17: the umbrella
// header compiles, and a few modules work when called from C++ (once,
// cache, metrics, retry). Exits 0 when every check held; prints one line
// per check and the ctest closing line.
#include <racefree/racefree.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

static int g_failed = 0, g_passed = 0;

static void check(bool ok, const char *what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAILED", what);
  (ok ? g_passed : g_failed)++;
}

static int g_inits = 0;

extern "C" int init_once(void *arg) {
  ++*static_cast<int *>(arg);
  return 0;
}

extern "C" void load_value(rf_sf_call_t *call, const char *key, void *arg) {
  ++*static_cast<int *>(arg);
  std::string v = std::string("value of ") + key;
  char *copy = static_cast<char *>(std::malloc(v.size() + 1));
  std::memcpy(copy, v.c_str(), v.size() + 1);
  rf_sf_complete(call, copy ? 0 : RF_ENOMEM, copy, v.size() + 1, std::free);
}

int main() {
  // once: eight threads, one initialisation
  static rf_once_t once = RF_ONCE_INIT;
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; i++)
    ts.emplace_back([] { rf_once_call(&once, init_once, &g_inits); });
  for (auto &t : ts)
    t.join();
  check(g_inits == 1 && rf_once_done(&once), "rf_once_call from 8 C++ threads ran once");

  // cache: a miss loads, a hit does not
  rf_cache_t *cache = nullptr;
  rf_cache_opts_t co{};
  co.max_entries = 16;
  co.ttl_ms = 60000;
  check(rf_cache_create(&cache, &co) == 0, "rf_cache_create");
  int loads = 0;
  for (int i = 0; i < 2; i++) {
    rf_sf_result_t *res = nullptr;
    rf_cache_src_t src;
    int rc = rf_cache_get(cache, "k", load_value, &loads, 1000, &res, &src);
    const char *v = rc == 0 ? static_cast<const char *>(rf_sf_result_value(res, nullptr)) : "";
    check(rc == 0 && std::strcmp(v, "value of k") == 0 &&
              src == (i == 0 ? RF_CACHE_MISS : RF_CACHE_HIT),
          i == 0 ? "rf_cache_get miss" : "rf_cache_get hit");
    rf_sf_result_release(res);
  }
  check(loads == 1, "one load for two gets");
  rf_cache_destroy(cache);

  // metrics: a counter from several threads loses no update
  rf_metrics_t *m = nullptr;
  rf_counter_t *c = nullptr;
  check(rf_metrics_create(&m, 8, 0) == 0 &&
            rf_metrics_counter(m, "cxx_total", "C++ test.", nullptr, 0, &c) == 0,
        "rf_metrics_counter");
  ts.clear();
  for (int i = 0; i < 4; i++)
    ts.emplace_back([c] {
      for (int k = 0; k < 10000; k++)
        rf_counter_inc(c);
    });
  for (auto &t : ts)
    t.join();
  check(rf_counter_value(c) == 40000, "4 x 10000 increments counted");
  rf_metrics_destroy(m);

  // retry: the attempt budget is exact
  rf_retry_policy_t pol{};
  pol.max_attempts = 3;
  pol.base_ms = 1;
  pol.cap_ms = 10;
  rf_retry_t r;
  check(rf_retry_init(&r, &pol) == 0, "rf_retry_init");
  uint64_t delay = 0;
  int more = 0;
  while (rf_retry_next(&r, &delay) == 0)
    more++;
  check(more == 2, "two retries after the first attempt of three");

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
