#!/usr/bin/env bash
# post-install.sh PREFIX - run after `cmake --install` by `make install`.
# A prefix whose library directory the dynamic linker searches (/usr/local,
# /usr) needs `ldconfig` to refresh its cache, or programs fail with
# "libracefree.so.0: cannot open shared object file": run it when we may
# (root), say so when we may not. Any other prefix is not searched at all:
# print how to reach it (rpath or LD_LIBRARY_PATH). Never fails the install.
set -uo pipefail
prefix=$(realpath -m "$1")
lib=$(find "$prefix"/lib* -maxdepth 2 -name 'libracefree.so.0' -printf '%h\n' 2>/dev/null | head -1)
if [ -z "$lib" ]; then
  echo "post-install: no libracefree.so.0 under $prefix" >&2
  exit 0
fi
lib=$(realpath "$lib")
searched=0
while IFS= read -r d; do
  if [ "$(realpath -m "$d")" = "$lib" ]; then searched=1; fi
done < <(ldconfig -v -N 2>/dev/null | sed -n 's/^\(\/[^:]*\):.*/\1/p'; echo /lib; echo /usr/lib)

echo "installed racefree in $prefix (library: $lib)"
if [ $searched -eq 1 ]; then
  if [ "$(id -u)" -eq 0 ] && ldconfig; then
    echo "ran ldconfig: programs find libracefree.so.0 without further settings"
  else
    echo "run 'sudo ldconfig' once, or programs fail with" \
         "'libracefree.so.0: cannot open shared object file'"
  fi
else
  echo "$lib is not searched by the dynamic linker; link your programs with"
  echo "  -Wl,-rpath,$lib    (or run them with LD_LIBRARY_PATH=$lib)"
  echo "and point pkg-config at the install: PKG_CONFIG_PATH=$lib/pkgconfig"
fi
