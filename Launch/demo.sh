#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, builds in release, and runs sertrain end to end: a
# synthetic speech corpus is written and its features extracted (and ser-mini's, when it is beside the project),
# the tiny model trains on one process and data-parallel on 2 MPI ranks, a stopped run resumes, and the weights go
# out as Keras files. (evaluate, predict and the report join with their issue.)
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

echo "== a synthetic corpus (4 speakers x 7 emotions x 10 utterances of speech-like sound), then its features"
"$bin" synth -o corpus --speakers 4 --per-class 10
"$bin" extract corpus -o features.h5
"$bin" inspect features.h5
if [ -d ../../shared/datasets/ser-mini ] || [ -d "${SERMINI:-/nonexistent}" ]; then
  echo "== real recordings: ser-mini (1,426 files of RAVDESS, SAVEE, TESS), extracted on 2 ranks"
  mpirun -n 2 --oversubscribe --bind-to none "$bin" extract "${SERMINI:-../../shared/datasets/ser-mini}" \
    -o ser-mini.h5 -q || true
fi

echo "== the models"
"$bin" summary --model seed | tail -4
"$bin" summary --model tiny

echo "== training the tiny model on one process (split by speaker: validation on a voice it never heard)"
"$bin" train --model tiny --epochs 12 --batch-size 32 --learning-rate 0.01 --split speaker --val-fraction 0.25 \
  --test-fraction 0 --run-dir run-1
if command -v mpirun >/dev/null; then
  echo "== the same on 2 MPI ranks (the global batch is split; results match up to summation order)"
  mpirun -n 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1 "$bin" train --model tiny --epochs 12 \
    --batch-size 32 --learning-rate 0.01 --split speaker --val-fraction 0.25 --test-fraction 0 --run-dir run-2
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
