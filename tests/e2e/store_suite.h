/* store_suite.h - the store's contract (src/store/store.h) as one cmocka
 * suite, run against every backend: test_store_suite_sqlite.c (SQLite) and
 * test_store_pg.c (PostgreSQL). A backend is described by how to make a
 * fresh, empty database and how to count rows in it; every test opens the
 * store on its own fresh database.
 */
#ifndef RF_STORE_SUITE_H
#define RF_STORE_SUITE_H

#include <stddef.h>
#include <stdint.h>

#include "rf_test.h"
#include "store.h"

typedef struct store_backend {
  const char *kind; /* rf_store_kind() of its stores */
  /* Write the URL of a new, empty database into url[cap] (extra: backend
   * URL parameters, may be NULL). */
  void (*fresh)(char *url, size_t cap, const char *extra);
  /* The integer result of sql (one row, one column) in the database. */
  int64_t (*count)(const char *url, const char *sql);
  /* Remove the database (after the store was closed). */
  void (*remove)(const char *url);
} store_backend_t;

typedef struct store_fixture {
  const store_backend_t *be;
  char url[512];
  rf_store_t *s;
} store_fixture_t;

/* cmocka setup/teardown: the prestate is the store_backend_t. */
int store_suite_setup(void **state);
int store_suite_teardown(void **state);

/* The shared tests, in the order to run them, with the given backend as
 * their prestate; n receives the count. The caller frees the array. */
const struct CMUnitTest *store_suite_tests(const store_backend_t *be, size_t *n);

#endif /* RF_STORE_SUITE_H */
