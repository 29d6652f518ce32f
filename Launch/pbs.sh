#!/usr/bin/env bash
# PBS Pro (and Torque, see below): data-parallel training of the seed model.
#
#   qsub -v DATA=/scratch/me/features.h5 Launch/pbs.sh
#
# 2 nodes x 8 ranks x 4 threads. The run directory comes from the job name (runs/pbs-<name>), so resubmitting the
# same job continues it with --resume auto (a second job of that name running at once is refused by the run's
# lock). qdel, or the walltime, sends SIGTERM to the job and SIGKILL after the server's kill_delay: the ranks finish
# their step, rank 0 writes a checkpoint, and the script exits 75. Resubmit to continue.
#
# Torque: its resource syntax differs. Replace the select line with
#   #PBS -l nodes=2:ppn=32
# Torque lists every core in $PBS_NODEFILE (PBS Pro one line per mpiproc); the script then runs one rank per
# THREADS cores (default 4) and exports OMP_NUM_THREADS itself.
#PBS -N sertrain
#PBS -l select=2:ncpus=32:mpiprocs=8:ompthreads=4
#PBS -l walltime=04:00:00
#PBS -j oe
set -euo pipefail
cd "${PBS_O_WORKDIR:-.}"

SERTRAIN=${SERTRAIN:-sertrain}
DATA=${DATA:-features.h5}
RUN_DIR=${RUN_DIR:-runs/pbs-${PBS_JOBNAME:-sertrain}}
MODEL=${MODEL:-auto}  # auto: the frames model for frames rows (extract), the seed's for its features.csv
EPOCHS=${EPOCHS:-50}
GRACE=${GRACE:-60}  # seconds between mpirun's own SIGTERM and SIGKILL to the ranks (one step and a checkpoint)
EXTRA=${EXTRA:-}
read -r -a extra <<<"$EXTRA"  # more train options, e.g. EXTRA="--batch-size 128 --patience 8"
threads=${THREADS:-${OMP_NUM_THREADS:-4}}
slots=$(wc -l <"${PBS_NODEFILE:-/dev/null}" 2>/dev/null || echo 0)
if [ -n "${PBS_NUM_PPN:-}" ]; then
  ranks=$((slots / threads))  # Torque: one line per core
else
  ranks=$slots  # PBS Pro: one line per mpiproc
fi
[ "$ranks" -gt 0 ] || ranks=${RANKS:-1}

export OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads HDF5_USE_FILE_LOCKING=FALSE
hostfile=()
[ -n "${PBS_NODEFILE:-}" ] && hostfile=(--hostfile "$PBS_NODEFILE")
# supervise (in this script's place) passes qdel's TERM (and USR1) on to mpirun as USR1, which mpirun forwards to
# every rank, and exits as the run's status file says: 75 when the ranks stopped after a checkpoint.
exec "$SERTRAIN" supervise --run-dir "$RUN_DIR" -- mpirun -n "$ranks" "${hostfile[@]}" --bind-to core \
  --map-by "slot:PE=$threads" --mca odls_base_sigkill_timeout "$GRACE" --mca orte_abort_on_non_zero_status 0 \
  -x OPENBLAS_NUM_THREADS -x HDF5_USE_FILE_LOCKING \
  "$SERTRAIN" train --data "$DATA" --model "$MODEL" --epochs "$EPOCHS" --run-dir "$RUN_DIR" --resume auto "${extra[@]}"
