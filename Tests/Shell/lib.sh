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

# wait_launcher PID DIR: the exit code of a run's launcher (PID: mpirun, or a shell whose child it is). OpenMPI
# 4.1's mpirun (Debian 12: 4.1.4, PMIx 4.2) can hang in PMIx_server_finalize after its ranks ended, one of them
# killed (seen once in CI; gdb: orte_finalize -> pmix_server_finalize -> pthread_mutex_lock). A launcher still there
# 15 s after the last of the run's ranks (`--run-dir DIR`) ended is killed with its children, DIR is counted in
# ./launcher-hangs, and the code is 137. (`sertrain supervise` does the same for the Launch scripts.)
wait_launcher() {
  local pid=$1 dir=$2 idle=0 p state
  while state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) && [ -n "$state" ] && [ "$state" != Z ]; do
    local live=0
    for p in $(sertrain_pids "--run-dir $dir "); do
      [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || live=1
    done
    if [ "$live" -eq 1 ]; then idle=0; else idle=$((idle + 1)); fi
    if [ "$idle" -ge 150 ]; then
      echo "$dir" >>launcher-hangs
      pkill -9 -P "$pid" 2>/dev/null
      kill -9 "$pid" 2>/dev/null
      break
    fi
    sleep 0.1
  done
  wait "$pid"
}

# watch_epoch_lines LOG: in the background, appends "N <unix time>" to LOG.arrivals as each `Epoch N/` line reaches
# LOG; the caller kills it ($!) when the run is over.
watch_epoch_lines() {
  local log=$1 seen=0 n
  while :; do
    n=$(grep -c "^Epoch " "$log" 2>/dev/null || true)
    while [ "$seen" -lt "${n:-0}" ]; do
      seen=$((seen + 1))
      echo "$seen $(date +%s.%N)" >>"$log.arrivals"
    done
    sleep 0.05
  done
}

# epoch_line_lateness RUN_DIR LOG: the most seconds by which an epoch line reached LOG after the epoch's end_time in
# RUN_DIR/history.csv; fails when a line arrived before its epoch ended (clocks disagree) or no line arrived.
epoch_line_lateness() {
  awk -F, 'NR > 1 {print $1, $8}' "$1/history.csv" | join - <(sort -n "$2.arrivals") \
    | awk '{d = $3 - $2; if (d > w) w = d; if (d < -0.5) early = 1; n++}
      END {if (early || n == 0) exit 1; printf "%.2f", w}'
}

# Waits up to `seconds` for a file to exist.
wait_for_file() {
  local file=$1 seconds=${2:-30} _
  for _ in $(seq 1 $((seconds * 20))); do [ -e "$file" ] && return 0; sleep 0.05; done
  return 1
}
