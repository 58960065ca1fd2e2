#!/usr/bin/env bash
# check_links.sh SRC - the user-facing text cites only what the project holds:
# every relative link of README.md and docs/**/*.md resolves to a file; no
# page or public header names API.md or DESIGN.md (team notes the project
# does not ship); and a page or header that speaks of "the article" names it
# by its title somewhere in that file.
set -uo pipefail
cd "$1" || exit 1
title='Concurrency for NestJS Developers: The Hidden Race Conditions'
status=0
mapfile -t pages < <(ls README.md docs/*.md docs/*/*.md 2>/dev/null)
# One grep for all links (a process per page is slow on a busy machine).
while IFS= read -r hit; do
  page=${hit%%:*}
  target=${hit#*:](}
  target=${target%)}
  path=${target%%#*}
  case $target in *://* | mailto:* | '#'*) continue ;; esac
  if [ ! -e "$(dirname "$page")/$path" ]; then
    echo "$page: link to $target: no such file" >&2
    status=1
  fi
done < <(grep -o -H '](\([^)]*\))' "${pages[@]}")
if grep -n -H 'API\.md\|DESIGN\.md' "${pages[@]}" include/racefree/*.h >&2; then
  echo "(above: citations of files the project does not hold)" >&2
  status=1
fi
while IFS= read -r f; do
  if ! tr '\n' ' ' <"$f" | sed 's/ \* / /g; s/  */ /g' | grep -q "$title"; then
    echo "$f: speaks of \"the article\" without naming it (\"$title\")" >&2
    status=1
  fi
done < <(grep -l -i 'the article' "${pages[@]}" include/racefree/*.h)
[ $status -eq 0 ] && echo "check_links: ${#pages[@]} pages and the public headers cite only what the project holds"
exit $status
