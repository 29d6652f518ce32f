#!/usr/bin/env bash
# One machine: RANKS ranks with THREADS OpenBLAS threads each, bound to cores (default: 1 rank per 2 cores).
#
#   Launch/local.sh                     # trains the seed model on features.h5
#   RANKS=4 THREADS=2 DATA=f.h5 MODEL=tiny EPOCHS=5 Launch/local.sh
#
# Stop it with `kill -USR1` (or Ctrl-C then run it again): it checkpoints and continues with --resume auto.
set -euo pipefail
SERTRAIN=${SERTRAIN:-sertrain}
DATA=${DATA:-features.h5}
RUN_DIR=${RUN_DIR:-runs/local}
MODEL=${MODEL:-seed}
EPOCHS=${EPOCHS:-50}
EXTRA=${EXTRA:-}
read -r -a extra <<<"$EXTRA"  # more train options, e.g. EXTRA="--batch-size 128 --patience 8"
cores=$(nproc)
THREADS=${THREADS:-$((cores >= 2 ? 2 : 1))}
RANKS=${RANKS:-$((cores / THREADS > 0 ? cores / THREADS : 1))}
root=()
[ "$(id -u)" -eq 0 ] && root=(--allow-run-as-root)
oversubscribe=()
[ $((RANKS * THREADS)) -gt "$cores" ] && oversubscribe=(--oversubscribe)
binding=(--bind-to core --map-by "slot:PE=$THREADS")
[ ${#oversubscribe[@]} -gt 0 ] && binding=(--bind-to none)
export OPENBLAS_NUM_THREADS=$THREADS
exec mpirun "${root[@]}" -n "$RANKS" "${oversubscribe[@]}" "${binding[@]}" -x OPENBLAS_NUM_THREADS \
  "$SERTRAIN" train --data "$DATA" --model "$MODEL" --epochs "$EPOCHS" --run-dir "$RUN_DIR" --resume auto "${extra[@]}"
