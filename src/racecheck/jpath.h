/* jpath.h - the JSON paths of captures and expectations: `$.a.b[0]`,
 * `$['a'].b`, and the dotted form `a.b[0]` of Artillery's hasProperty.
 * A small subset of JSONPath: names, indexes (negative from the end) and
 * the root; no wildcards or filters. Pure functions, thread-safe.
 */
#ifndef RC_JPATH_H
#define RC_JPATH_H

#include <jansson.h>

#include "rc.h"

/* Check the syntax of a path. Returns 0 or -1 with a message. */
int rc_jpath_check(const char *path, rc_err_t *err);
/* Follow path in root. Returns the (borrowed) value or NULL when absent or
 * when the path is malformed. */
json_t *rc_jpath_get(json_t *root, const char *path);

#endif /* RC_JPATH_H */
