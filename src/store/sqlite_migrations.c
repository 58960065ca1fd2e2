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
 *   payments.payment_id  PRIMARY KEY: the idempotency claim (INSERT ... ON
 *                        CONFLICT DO NOTHING); token = lease generation
 *   charge_fences.token  the largest fencing token the ledger has seen per
 *                        payment id: older holders cannot charge
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
    /* 2: payments (idempotency records), the card processor's ledger with
     * its fence, the mail sender's ledger (docs/payments.md, docs/jobs.md) */
    "CREATE TABLE payments ("
    "  payment_id     TEXT PRIMARY KEY,"
    "  amount         INTEGER NOT NULL CHECK (amount >= 1),"
    "  fingerprint    TEXT NOT NULL,"
    "  state          INTEGER NOT NULL CHECK (state IN (0, 1, 2)),"
    "  token          INTEGER NOT NULL CHECK (token >= 0),"
    "  lease_owner    TEXT,"
    "  lease_until_ms INTEGER NOT NULL DEFAULT 0,"
    "  http_status    INTEGER NOT NULL DEFAULT 0,"
    "  charge_id      TEXT NOT NULL DEFAULT '',"
    "  body           TEXT NOT NULL DEFAULT '',"
    "  created_ms     INTEGER NOT NULL,"
    "  updated_ms     INTEGER NOT NULL);"
    "CREATE TABLE charges ("
    "  seq        INTEGER PRIMARY KEY,"
    "  payment_id TEXT NOT NULL,"
    "  amount     INTEGER NOT NULL,"
    "  declined   INTEGER NOT NULL CHECK (declined IN (0, 1)),"
    "  token      INTEGER NOT NULL,"
    "  created_ms INTEGER NOT NULL);"
    "CREATE INDEX charges_payment ON charges(payment_id, seq);"
    "CREATE TABLE charge_fences ("
    "  payment_id TEXT PRIMARY KEY,"
    "  token      INTEGER NOT NULL);"
    "CREATE TABLE sends ("
    "  seq     INTEGER PRIMARY KEY,"
    "  job_id  TEXT NOT NULL,"
    "  attempt INTEGER NOT NULL,"
    "  to_addr TEXT NOT NULL,"
    "  sent_ms INTEGER NOT NULL);"
    "CREATE INDEX sends_job ON sends(job_id);"
    "CREATE INDEX sends_to ON sends(to_addr);",
};

const size_t rf__sqlite_migrations_count =
    sizeof rf__sqlite_migrations / sizeof rf__sqlite_migrations[0];
