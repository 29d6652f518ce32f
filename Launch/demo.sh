#!/usr/bin/env bash
# The demo on a fresh machine, in a few minutes: installs what is missing, builds in release, writes a synthetic
# speech corpus, extracts its features on 2 MPI ranks, trains the frames model on 2 ranks (validation on a speaker
# it never heard), evaluates it on held-out recordings, predicts three files, writes the HTML report; then stops a run
# with a signal and resumes it, and exports the weights for Keras.
set -euo pipefail
cd "$(dirname "$0")/.."
Launch/install-deps.sh
# The commit the binary is built from (sertrain --version; Package.swift reads it), "-dirty" with local changes.
SERTRAIN_COMMIT=${SERTRAIN_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
if [ -n "$SERTRAIN_COMMIT" ] && ! git diff --quiet HEAD -- 2>/dev/null; then SERTRAIN_COMMIT+=-dirty; fi
export SERTRAIN_COMMIT
echo "== building (release)"
swift build -c release 2>&1 | grep -E "error|Compiling sertrain|Build complete" || true
swift build -c release >/dev/null
bin="$(swift build -c release --show-bin-path)/sertrain"
out=${DEMO_DIR:-demo}
rm -rf "$out" && mkdir -p "$out" && cd "$out"
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpi=(mpirun -n 2 --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS=1)

echo "== a synthetic corpus: 5 speakers x 7 emotions x 10 utterances of speech-like sound"
"$bin" synth -o corpus --speakers 5 --per-class 10
echo "== features on 2 ranks: 4 rows per recording (original, noise, pitch, pitch+noise)"
"${mpi[@]}" "$bin" extract corpus -o features.h5
"$bin" inspect features.h5

echo "== the frames model, the default for extracted rows (the seed's network: sertrain summary --model seed)"
"$bin" summary --model frames
echo "== training on 2 ranks, split by speaker: validation and test are voices it never heard"
"${mpi[@]}" "$bin" train --epochs 15 --batch-size 32 --split speaker --val-fraction 0.2 --test-fraction 0.2 \
  --run-dir run

echo "== evaluate on the held-out speaker's recordings"
"$bin" evaluate --checkpoint run/checkpoint-last.h5 --split test
echo "== predict three recordings: two of the held-out speaker (S4), one the model trained on (said so)"
"$bin" predict --checkpoint run/checkpoint-last.h5 corpus/Synth/S4_07_sad.wav corpus/Synth/S4_09_surprise.wav \
  corpus/Synth/S1_03_angry.wav

echo "== stop a run with SIGUSR1 (checkpoint, exit 75), then resume it where it stopped"
"$bin" train --model tiny --epochs 12 --patience 100 --batch-size 16 --learning-rate 0.01 --run-dir run-stopped -q &
pid=$!
while [ ! -f run-stopped/checkpoint-last.h5 ]; do sleep 0.05; done
kill -USR1 $pid
wait $pid || echo "exit code $? (75: stopped after writing a checkpoint)"
"$bin" train --model tiny --epochs 12 --patience 100 --batch-size 16 --learning-rate 0.01 --run-dir run-stopped \
  --resume auto -q
"$bin" inspect run-stopped/checkpoint-last.h5 | grep training

echo "== the weights for Keras"
"$bin" export-keras run/checkpoint-last.h5 -o model.weights.h5
"$bin" export-keras run/checkpoint-last.h5 -o model.h5
echo
echo "demo done. The report: $(pwd)/run/report.html"
