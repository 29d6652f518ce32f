#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, builds in release, and runs sertrain end to end on
# generated data: a learnable 3-class features.csv is converted to HDF5, the tiny model trains on one process
# and then data-parallel on 2 MPI ranks, a killed run resumes, and the weights go out as Keras files.
# (Audio extraction, evaluate, predict and the report join with their issues.)
set -euo pipefail
cd "$(dirname "$0")/.."
Launch/install-deps.sh
echo "== building (release)"
swift build -c release 2>&1 | grep -E "error|Compiling sertrain|Build complete" || true
swift build -c release >/dev/null
bin="$(swift build -c release --show-bin-path)/sertrain"
out=${DEMO_DIR:-demo}
rm -rf "$out" && mkdir -p "$out" && cd "$out"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi

echo "== a features.csv: 3 classes x 60 recordings x 4 rows of 2376 values (noisy tones), converted to HDF5"
awk 'BEGIN { srand(7); w = 2376; for (i = 0; i < w; i++) printf "%d,", i; print "labels";
  for (r = 0; r < 720; r++) { c = int(r / 4) % 3; for (t = 0; t < w; t++) printf "%.4f,", sin(0.01 * (c + 1) * t) + 8 * (rand() - 0.5);
  print (c == 0 ? "angry" : c == 1 ? "happy" : "sad") } }' >features.csv
"$bin" convert features.csv -o features.h5 --rows-per-recording 4
"$bin" inspect features.h5

echo "== the models"
"$bin" summary --model seed | tail -4
"$bin" summary --model tiny --classes 3

echo "== training the tiny model on one process (split by recording, Keras callbacks)"
"$bin" train --model tiny --epochs 8 --batch-size 32 --learning-rate 0.01 --run-dir run-1
if command -v mpirun >/dev/null; then
  echo "== the same on 2 MPI ranks (the global batch is split; results match up to summation order)"
  mpirun -n 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 "$bin" train --model tiny --epochs 8 \
    --batch-size 32 --learning-rate 0.01 --run-dir run-2
fi

echo "== stop a run with SIGUSR1 (checkpoint, exit 75), then resume it"
"$bin" train --model tiny --epochs 30 --patience 100 --batch-size 8 --learning-rate 0.01 --run-dir run-3 -q &
pid=$!
while [ ! -f run-3/checkpoint-last.h5 ]; do sleep 0.05; done
kill -USR1 $pid
wait $pid || echo "exit code $? (75: stopped after writing a checkpoint)"
"$bin" train --model tiny --epochs 30 --patience 100 --batch-size 8 --learning-rate 0.01 --run-dir run-3 \
  --resume auto | tail -3

echo "== the checkpoint, and its weights for Keras"
"$bin" inspect run-1/checkpoint-best.h5
"$bin" export-keras run-1/checkpoint-best.h5 -o model.weights.h5
"$bin" export-keras run-1/checkpoint-best.h5 -o model.h5
echo
echo "demo done: $out/ (run-1, run-2, run-3: checkpoints, history.csv, config.json)"
