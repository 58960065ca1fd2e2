/* sqlite_migrations.c - the SQLite schema of racefreed, as ordered
 * migrations. sqlite.c applies the ones a database has not seen yet, in
 * order, inside one BEGIN IMMEDIATE transaction, and records the new
 * version in schema_version. Append only: a shipped migration is never
 * edited, a change is a new entry.
 *
 * Where the atomicity lives:
 *   users.email          UNIQUE index: the database decides who signed up first
 *   users_unchecked      the same table WITHOUT the index (--unsafe demo)
 *   items.stock          CHECK (stock >= 0) backs the conditional UPDATE
 *   wallets.version      optimistic locking: every write bumps it by one
 */
#include "backend.h"

const char *const rf__sqlite_migrations[] = {
    /* 1: users, inventory, wallets */
    "CREATE TABLE users ("
    "  id         INTEGER PRIMARY KEY,"
    "  email      TEXT NOT NULL,"
    "  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);"
    "CREATE UNIQUE INDEX users_email ON users(email);"
    "CREATE TABLE users_unchecked ("
    "  id         INTEGER PRIMARY KEY,"
    "  email      TEXT NOT NULL,"
    "  created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);"
    "CREATE INDEX users_unchecked_email ON users_unchecked(email);"
    "CREATE TABLE items ("
    "  id    TEXT PRIMARY KEY,"
    "  stock INTEGER NOT NULL CHECK (stock >= 0));"
    "CREATE TABLE wallets ("
    "  user_id TEXT PRIMARY KEY,"
    "  balance INTEGER NOT NULL CHECK (balance >= 0),"
    "  version INTEGER NOT NULL CHECK (version >= 1));",
};

const size_t rf__sqlite_migrations_count =
    sizeof rf__sqlite_migrations / sizeof rf__sqlite_migrations[0];
