/* jpath.c - see jpath.h. */
#include "jpath.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Walk the path; with root == NULL only check the syntax. Returns 0 and the
 * value in *out, 1 when a component is absent, -1 on a syntax error. */
static int rc__walk(json_t *root, const char *p, json_t **out, rc_err_t *err) {
  json_t *cur = root;
  const char *start = p;
  while (*p == ' ') {
    p++;
  }
  if (*p == '$') {
    p++;
  } else if (*p && *p != '.' && *p != '[') {
    /* dotted form without the root: behave as if "$." preceded it */
    goto name;
  }
  while (*p) {
    if (*p == '.') {
      p++;
    name:;
      size_t n = strcspn(p, ".[");
      if (n == 0) {
        rc_err_set(err, 0, (int)(p - start) + 1, "empty name in JSON path '%s'", start);
        return -1;
      }
      if (root) {
        char key[256];
        if (n >= sizeof key) {
          return 1;
        }
        memcpy(key, p, n);
        key[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        if (!cur) {
          return 1;
        }
      }
      p += n;
    } else if (*p == '[') {
      p++;
      if (*p == '\'' || *p == '"') {
        char q = *p++;
        const char *e = strchr(p, q);
        if (!e || e[1] != ']') {
          rc_err_set(err, 0, (int)(p - start), "unterminated ['name'] in JSON path '%s'", start);
          return -1;
        }
        if (root) {
          char *key = rc_xstrndup(p, (size_t)(e - p));
          cur = json_is_object(cur) ? json_object_get(cur, key) : NULL;
          free(key);
          if (!cur) {
            return 1;
          }
        }
        p = e + 2;
      } else {
        char *e = NULL;
        errno = 0;
        long long idx = strtoll(p, &e, 10);
        if (e == p || *e != ']' || errno) {
          rc_err_set(err, 0, (int)(p - start) + 1, "bad index in JSON path '%s'", start);
          return -1;
        }
        if (root) {
          if (!json_is_array(cur)) {
            return 1;
          }
          long long size = (long long)json_array_size(cur);
          if (idx < 0) {
            idx += size;
          }
          if (idx < 0 || idx >= size) {
            return 1;
          }
          cur = json_array_get(cur, (size_t)idx);
        }
        p = e + 1;
      }
    } else {
      rc_err_set(err, 0, (int)(p - start) + 1, "unexpected '%c' in JSON path '%s'", *p, start);
      return -1;
    }
  }
  if (out) {
    *out = cur;
  }
  return 0;
}

int rc_jpath_check(const char *path, rc_err_t *err) {
  if (!path || !*path) {
    rc_err_set(err, 0, 0, "empty JSON path");
    return -1;
  }
  return rc__walk(NULL, path, NULL, err) < 0 ? -1 : 0;
}

json_t *rc_jpath_get(json_t *root, const char *path) {
  json_t *out = NULL;
  if (!root || !path) {
    return NULL;
  }
  return rc__walk(root, path, &out, NULL) == 0 ? out : NULL;
}
