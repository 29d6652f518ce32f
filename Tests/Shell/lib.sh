#!/usr/bin/env bash
# Helpers for the shell test scripts that Launch/test.sh runs. Each script sources this file, calls `pass`,
# `skip` or `fail` once per check, and leaves its temporary files to `on_exit`.
#
# Environment from Launch/test.sh: SERTRAIN (the built binary), SERTRAIN_TALLY (a file of one word per check:
# pass or skip), SERTRAIN_SHARED (../shared or where it is).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERTRAIN=${SERTRAIN:-$ROOT/.build/debug/sertrain}
SERTRAIN_TALLY=${SERTRAIN_TALLY:-/dev/null}
SERTRAIN_SHARED=${SERTRAIN_SHARED:-$ROOT/../shared}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

pass() { echo "PASS $*"; echo pass >>"$SERTRAIN_TALLY"; }
skip() { echo "SKIP $1: $2"; echo skip >>"$SERTRAIN_TALLY"; }
fail() { echo "FAIL $*" >&2; exit 1; }

# A temporary directory removed on exit, and cleanup steps run before it (last registered first).
WORK=$(mktemp -d "/tmp/sertrain-$(basename "$0" .sh)-XXXXXX")
_cleanups=()
on_exit() { _cleanups=("$1" "${_cleanups[@]}"); }
_cleanup() {
  local c
  for c in "${_cleanups[@]}"; do eval "$c" || true; done
  rm -rf "$WORK"
}
trap _cleanup EXIT

# A small labelled CSV of `rows` rows x `width` columns, 3 classes, turned into a feature file (one recording per
# row unless more arguments say so): make_features FILE ROWS WIDTH [convert options]
make_features() {
  local out=$1 rows=$2 width=$3
  shift 3
  awk -v rows="$rows" -v w="$width" 'BEGIN { srand(3); for (i = 0; i < w; i++) printf "%d,", i; print "labels";
    for (r = 0; r < rows; r++) { c = r % 3; for (t = 0; t < w; t++) printf "%.4f,", sin(0.15 * (c + 1) * t) + rand() - 0.5;
    print (c == 0 ? "angry" : c == 1 ? "calm" : "sad") } }' >"$WORK/make-features.csv"
  "$SERTRAIN" convert "$WORK/make-features.csv" -o "$out" "$@" >/dev/null
}

# The PIDs of sertrain processes whose command line contains `pattern`.
sertrain_pids() {
  pgrep -f -- "$1" | while read -r p; do [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "sertrain" ] && echo "$p"; done
  return 0
}

# Waits up to `seconds` for a file to exist.
wait_for_file() {
  local file=$1 seconds=${2:-30} _
  for _ in $(seq 1 $((seconds * 20))); do [ -e "$file" ] && return 0; sleep 0.05; done
  return 1
}
