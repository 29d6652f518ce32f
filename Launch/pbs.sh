#!/usr/bin/env bash
# PBS Pro / Torque: data-parallel training of the seed model.
#
#   qsub -v DATA=/scratch/me/features.h5 Launch/pbs.sh
#
# 2 nodes x 8 ranks x 4 threads; sertrain checkpoints on SIGTERM (qdel, or walltime with a kill delay) and exits
# with 75; resubmit the same job and it continues with --resume auto.
#PBS -N sertrain
#PBS -l select=2:ncpus=32:mpiprocs=8:ompthreads=4
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"

SERTRAIN=${SERTRAIN:-sertrain}
DATA=${DATA:-features.h5}
RUN_DIR=${RUN_DIR:-runs/pbs-${PBS_JOBID:-local}}
MODEL=${MODEL:-seed}
EPOCHS=${EPOCHS:-50}
EXTRA=${EXTRA:-}
read -r -a extra <<<"$EXTRA"  # more train options, e.g. EXTRA="--batch-size 128 --patience 8"
threads=${OMP_NUM_THREADS:-4}
ranks=$(wc -l <"${PBS_NODEFILE:-/dev/null}" 2>/dev/null || echo 0)
[ "$ranks" -gt 0 ] || ranks=${RANKS:-1}

export OPENBLAS_NUM_THREADS=$threads HDF5_USE_FILE_LOCKING=FALSE
hostfile=()
[ -n "${PBS_NODEFILE:-}" ] && hostfile=(--hostfile "$PBS_NODEFILE")
exec mpirun -n "$ranks" "${hostfile[@]}" --bind-to core --map-by "slot:PE=$threads" -x OPENBLAS_NUM_THREADS \
  -x HDF5_USE_FILE_LOCKING "$SERTRAIN" train --data "$DATA" --model "$MODEL" --epochs "$EPOCHS" \
  --run-dir "$RUN_DIR" --resume auto "${extra[@]}"
