#!/usr/bin/env bash
# ldconfig_test.sh BUILD_DIR POST_INSTALL - `make install`'s last step
# (scripts/post-install.sh): a prefix the dynamic linker does not search gets
# the rpath / LD_LIBRARY_PATH advice and no ldconfig; a searched one gets
# ldconfig when run as root, the advice to run it otherwise. A stand-in
# ldconfig first on PATH says which directories are searched and records
# its calls, so the system's cache is never touched.
set -euo pipefail
build=$1
post=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
lib=$(find "$tmp/prefix" -name libracefree.so.0 -printf '%h\n' | head -1)
mkdir "$tmp/bin"
fake() { # fake DIR: ldconfig -v lists DIR; any other call is recorded
  cat >"$tmp/bin/ldconfig" <<EOS
#!/bin/sh
if [ "\$1" = "-v" ]; then echo "$1:"; exit 0; fi
echo "ldconfig \$*" >>"$tmp/calls"
EOS
  chmod +x "$tmp/bin/ldconfig"
}

fake /nowhere
out=$(PATH="$tmp/bin:$PATH" bash "$post" "$tmp/prefix")
grep -q -- "-Wl,-rpath,$lib" <<<"$out"
grep -q "LD_LIBRARY_PATH=$lib" <<<"$out"
test ! -e "$tmp/calls"

fake "$lib"
out=$(PATH="$tmp/bin:$PATH" bash "$post" "$tmp/prefix")
if [ "$(id -u)" -eq 0 ]; then
  grep -q "ran ldconfig" <<<"$out"
  grep -q "^ldconfig" "$tmp/calls"
else
  grep -q "sudo ldconfig" <<<"$out"
  test ! -e "$tmp/calls"
fi
echo "ldconfig test: custom prefix advised, searched prefix refreshed"
