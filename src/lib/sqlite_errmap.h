/* sqlite_errmap.h - SQLite result code -> RF_E... code, one mapping for
 * every SQLite user of the project (the job queue's backend and racefreed's
 * store), so that one failure means one thing everywhere. Header only: the
 * store does not link the library's internals. */
#ifndef RF_SQLITE_ERRMAP_H
#define RF_SQLITE_ERRMAP_H

#include <sqlite3.h>

#include "racefree/errors.h"

/* rc: a primary or extended SQLite result code. */
static inline int rf__sqlite_errmap(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return 0;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return RF_EBUSY; /* the lock stayed taken beyond the busy timeout */
  case SQLITE_NOMEM:
    return RF_ENOMEM;
  case SQLITE_CONSTRAINT:
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
      return RF_EEXIST;
    return RF_EINVAL; /* CHECK, NOT NULL: a value the schema refuses */
  case SQLITE_CANTOPEN:
  case SQLITE_NOTADB:
  case SQLITE_PERM:
  case SQLITE_AUTH:
    return RF_EUNAVAIL; /* the database cannot be opened or used at all */
  default:
    return RF_EIO; /* corruption, disk full, I/O error, ... */
  }
}

#endif /* RF_SQLITE_ERRMAP_H */
