#!/usr/bin/env bash
# lint.sh - cppcheck and clang-tidy over the project's C sources (library,
# programs and examples), and a clang-format check. Any finding fails.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files 'src/*.c' 'include/*.h' 'src/*.h' 'examples/*.c' 2>/dev/null; git ls-files --others --exclude-standard 'src/*.c' 'src/*.h' 'include/*.h' 'examples/*.c')
[ ${#files[@]} -gt 0 ] || exit 0
cfiles=()
for f in "${files[@]}"; do [[ $f == *.c ]] && cfiles+=("$f"); done

echo "lint: clang-format"
clang-format --dry-run --Werror "${files[@]}"

echo "lint: cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
  --inline-suppr --std=c11 -D_GNU_SOURCE -Iinclude -Isrc/lib \
  --suppress=missingIncludeSystem "${cfiles[@]}"

echo "lint: clang-tidy"
printf '%s\n' "${cfiles[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy -p build/debug --quiet 2>/dev/null
echo "lint: clean"
