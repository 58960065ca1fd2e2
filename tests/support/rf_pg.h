/* rf_pg.h - a real PostgreSQL server for the tests that need one.
 *
 * Which server: RF_TEST_PG_URL from the environment when it is set (a
 * server someone else runs: CI service, developer machine); otherwise a
 * private cluster that the first call to rf_test_pg_url() creates with
 * scripts/pg.sh in a fresh mkdtemp directory (initdb once per test
 * program) and that is stopped and deleted when the program ends, however
 * it ends (exit, crash, killed by a timeout): by a watchdog process that
 * notices the end through a pipe only the program holds (or, if the
 * watchdog could not be started, by an atexit handler).
 *
 * The tests never pass silently without PostgreSQL: if neither works, the
 * first call fails the test. (Set RF_TEST_PG_URL to use another server.)
 *
 * Isolation: every test takes a fresh schema (rf_test_pg_schema_url); the
 * URL it gets makes every connection use that schema first in its
 * search_path, so tables of different tests (and of parallel test
 * programs on one server) never meet.
 */
#ifndef RF_PG_H
#define RF_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/* The server's base URL (static string). Fails the test when no server. */
const char *rf_test_pg_url(void);

/* Whether the server is this program's private cluster (the tests that
 * stop and restart PostgreSQL run only then). */
bool rf_test_pg_private(void);

/* Stop / start the private cluster (pg.sh stop / start on the same port).
 * 0 on success. Only when rf_test_pg_private(). */
int rf_test_pg_stop(void);
int rf_test_pg_start(void);

/* Create a fresh schema and write into out[cap] a URL whose sessions use
 * it: the base URL plus options=-csearch_path=<schema> (and the server
 * options in pgopts, e.g. "-cdefault_transaction_isolation=serializable",
 * may be NULL), plus `extra` ("pool=4&timeout_ms=2000", may be NULL) as
 * further parameters. The schema's name goes to schema[64] when schema is
 * not NULL. */
void rf_test_pg_schema_url(char *out, size_t cap, const char *extra, const char *pgopts,
                           char *schema);

/* Drop the schema of a URL made by rf_test_pg_schema_url. */
void rf_test_pg_drop(const char *url);

/* A plain libpq connection to url (the store's own parameters removed);
 * fails the test when it cannot connect. Close with PQfinish. */
PGconn *rf_test_pg_connect(const char *url);

/* Run sql on url (a URL from rf_test_pg_schema_url: the store's own
 * parameters are removed first); fails the test on error. */
void rf_test_pg_exec(const char *url, const char *sql);

/* The integer in the first column of the first row of sql on url. */
int64_t rf_test_pg_int(const char *url, const char *sql);

#endif /* RF_PG_H */
