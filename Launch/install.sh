#!/usr/bin/env bash
# Builds sertrain in release and installs the binary as PREFIX/bin/sertrain (default /usr/local; PREFIX=~/.local
# installs without root). Installs the C libraries it links against first (apt, as root; Launch/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
Launch/install-deps.sh
# The commit the binary is built from (sertrain --version; Package.swift reads it), "-dirty" with local changes.
SERTRAIN_COMMIT=${SERTRAIN_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
if [ -n "$SERTRAIN_COMMIT" ] && ! git diff --quiet HEAD -- 2>/dev/null; then SERTRAIN_COMMIT+=-dirty; fi
export SERTRAIN_COMMIT
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# A failed build must stop here: an older binary may be there from before, and installing it would hide the failure.
if ! swift build -c release --product sertrain >"$log" 2>&1; then
  grep -E "error" "$log" >&2 || tail -20 "$log" >&2
  echo "install.sh: the release build failed; nothing was installed" >&2
  exit 1
fi
grep -E "Build of product" "$log" || true
bin="$(swift build -c release --show-bin-path)/sertrain"
[ -x "$bin" ] || { echo "install.sh: the build did not produce $bin" >&2; exit 1; }
mkdir -p "$prefix/bin"
install -m 0755 "$bin" "$prefix/bin/sertrain"
echo "installed $prefix/bin/sertrain"
case ":$PATH:" in
  *":$prefix/bin:"*) ;;
  *) echo "note: $prefix/bin is not on PATH; add it: export PATH=\"$prefix/bin:\$PATH\"" ;;
esac
# The benchmarks find their Python peers from the checkout (Benchmarks/*.py): run 'sertrain bench' from here.
