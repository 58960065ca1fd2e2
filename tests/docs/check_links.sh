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
  dir=.
  case $page in */*) dir=${page%/*} ;; esac
  if [ ! -e "$dir/$path" ]; then
    echo "$page: link to $target: no such file" >&2
    status=1
  fi
done < <(grep -o -H '](\([^)]*\))' "${pages[@]}")
if grep -n -H 'API\.md\|DESIGN\.md' "${pages[@]}" include/racefree/*.h >&2; then
  echo "(above: citations of files the project does not hold)" >&2
  status=1
fi
# One awk for all files: the text of each with lines joined (and comment
# stars dropped), so that a title broken over two lines is still found.
unnamed=$(awk -v title="$title" '
  FNR == 1 && NR > 1 { check() }
  { line = $0; sub(/^ *\* ?/, "", line); text = text " " line }
  END { check() }
  function check() {
    gsub(/  +/, " ", text)
    if (tolower(text) ~ /the article/ && index(text, title) == 0) print prev
    text = ""
  }
  { prev = FILENAME }
' "${pages[@]}" include/racefree/*.h)
for f in $unnamed; do
  echo "$f: speaks of \"the article\" without naming it (\"$title\")" >&2
  status=1
done
[ $status -eq 0 ] && echo "check_links: ${#pages[@]} pages and the public headers cite only what the project holds"
exit $status
