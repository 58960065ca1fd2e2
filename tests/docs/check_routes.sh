#!/usr/bin/env bash
# check_routes.sh SRC - docs/http-api.md lists exactly the routes of the
# router's table (srv_routes in src/server/routes/routes.c): a route the page
# does not list, or a listed route the server does not have, fails.
set -euo pipefail
src=$1
table=$src/src/server/routes/routes.c
page=$src/docs/http-api.md

# The table's rows: R(SRV_M_GET, "/health", h_health, 0),
rows=$(sed -n '/^const srv_route_t srv_routes\[\]/,/^};/p' "$table" | grep -c '^ *R(' || true)
server=$(sed -n '/^const srv_route_t srv_routes\[\]/,/^};/p' "$table" |
  sed -n 's/^ *R(SRV_M_\([A-Z]*\), *"\([^"]*\)".*/\1 \2/p' | sort -u)
if [ "$rows" -eq 0 ] || [ "$(printf '%s\n' "$server" | wc -l)" -ne "$rows" ]; then
  echo "check_routes: read $(printf '%s\n' "$server" | wc -l) of $rows rows of srv_routes" \
       "in $table; update this script's pattern" >&2
  exit 1
fi
# The page's route tables: first cell `METHOD /path` (a query string is not
# part of the route).
page_routes=$(sed -n 's/^| `\(GET\|POST\|PUT\|DELETE\|PATCH\) \(\/[^`?]*\)[^`]*` |.*/\1 \2/p' "$page" |
  sort -u)

status=0
missing=$(comm -23 <(printf '%s\n' "$server") <(printf '%s\n' "$page_routes"))
extra=$(comm -13 <(printf '%s\n' "$server") <(printf '%s\n' "$page_routes"))
if [ -n "$missing" ]; then
  echo "docs/http-api.md does not list these routes of srv_routes:" >&2
  printf '%s\n' "$missing" | sed 's/^/  /' >&2
  status=1
fi
if [ -n "$extra" ]; then
  echo "docs/http-api.md lists routes that srv_routes does not have:" >&2
  printf '%s\n' "$extra" | sed 's/^/  /' >&2
  status=1
fi
[ $status -eq 0 ] && echo "check_routes: the page lists all $rows routes"
exit $status
