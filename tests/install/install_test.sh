#!/usr/bin/env bash
# install_test.sh BUILD_DIR EXAMPLE.c - see CMakeLists.txt beside this file.
set -euo pipefail
build=$1
example=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(find "$prefix" -name racefree.pc -printf '%h\n' | head -1)
export PKG_CONFIG_PATH=$libdir
test -f "$prefix/include/racefree/errors.h"
test -f "$prefix/include/racefree/racefree.h"
ls "$prefix"/lib*/libracefree.so* "$prefix"/lib*/libracefree.a >/dev/null
# Only the public API is exported: no internals (rf__*), no test hooks.
so=$(ls "$prefix"/lib*/libracefree.so | head -1)
leaked=$(nm -D --defined-only "$so" | awk '{print $3}' | grep -E '^(rf__|rf_hook_|rf_test_)' || true)
if [ -n "$leaked" ]; then
  echo "install test: libracefree.so exports internal symbols:" $leaked >&2
  exit 1
fi
nm -D --defined-only "$so" | awk '{print $3}' | grep -qx rf_once_call
test ! -e "$prefix/include/racefree/hook.h"
# shared
cc -std=c11 -Wall -Werror "$example" $(pkg-config --cflags --libs racefree) -o "$prefix/ex_shared"
LD_LIBRARY_PATH="$(dirname "$libdir")" "$prefix/ex_shared" | grep -q RF_EINVAL
# static
cc -std=c11 -Wall -Werror "$example" $(pkg-config --cflags racefree) \
  "$(dirname "$libdir")/libracefree.a" $(pkg-config --libs-only-l --static racefree | sed 's/-lracefree//') \
  -o "$prefix/ex_static"
"$prefix/ex_static" | grep -q RF_EINVAL
echo "install test: shared and static consumers built through pkg-config and ran"
