/* backend.h - what store.c needs from each database backend (private).
 *
 * Each backend provides one constructor that opens its database, applies
 * its migrations and returns a store whose first member is the rf_store
 * header with the backend's ops table.
 */
#ifndef RF_STORE_BACKEND_H
#define RF_STORE_BACKEND_H

#include <stddef.h>

#include "store.h"

/* Open the SQLite database file at path (see rf_store_open). On failure a
 * one-line message is written to err (when err != NULL). */
int rf__store_sqlite_open(const char *path, rf_store_t **out, char *err, size_t errlen);

/* The SQLite schema: migration i (0-based) brings the schema from version i
 * to version i + 1. Append only: never edit a migration that has shipped. */
extern const char *const rf__sqlite_migrations[];
extern const size_t rf__sqlite_migrations_count;

#endif /* RF_STORE_BACKEND_H */
