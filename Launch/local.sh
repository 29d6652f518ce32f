#!/usr/bin/env bash
# One machine: RANKS ranks with THREADS OpenBLAS threads each, bound to cores (default: 1 rank per 2 cores).
#
#   Launch/local.sh                     # trains on features.h5 (the frames model on extracted rows)
#   RANKS=4 THREADS=2 DATA=f.h5 MODEL=tiny EPOCHS=5 Launch/local.sh --batch-size 32   # arguments: train options
#
# SIGTERM, SIGINT or SIGUSR1 to this script: the ranks finish their step, rank 0 writes a checkpoint, and the script
# exits with 75; run it again and it continues (--resume auto). GRACE is how long mpirun lets ranks it signals
# itself (a SIGTERM sent to mpirun directly) finish before SIGKILL: one training step plus a checkpoint write
# (the seed model: about 3 s a step at batch 64 on 2 cores, 0.5 s to write 86 MB), with room to spare.
set -euo pipefail
SERTRAIN=${SERTRAIN:-sertrain}
DATA=${DATA:-features.h5}
RUN_DIR=${RUN_DIR:-runs/local}
MODEL=${MODEL:-auto}  # auto: the frames model for frames rows (extract), the seed's for its features.csv
EPOCHS=${EPOCHS:-50}
GRACE=${GRACE:-60}
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

# supervise (in this script's place) passes TERM, INT and USR1 on to mpirun as USR1, which mpirun forwards to every
# rank at once (a TERM to mpirun itself would SIGKILL them after GRACE), and exits as the run's status file says.
exec "$SERTRAIN" supervise --run-dir "$RUN_DIR" -- mpirun "${root[@]}" -n "$RANKS" "${oversubscribe[@]}" \
  "${binding[@]}" --mca odls_base_sigkill_timeout "$GRACE" --mca orte_abort_on_non_zero_status 0 \
  -x OPENBLAS_NUM_THREADS "$SERTRAIN" train --data "$DATA" --model "$MODEL" --epochs "$EPOCHS" --run-dir "$RUN_DIR" \
  --resume auto "${extra[@]}" "$@"
