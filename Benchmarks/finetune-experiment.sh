#!/usr/bin/env bash
# Fine-tuning across corpora (EXPERIMENTS.md): the frames model trained on all of ser-mini (RAVDESS, SAVEE, TESS),
# then EmoDB's speaker folds trained from it (`--init-from`), against the same folds trained from the seed's draw
# (Benchmarks/frames-experiment.sh's runs, made here if missing), at Adam's 1e-3 and at 1e-4, with speaker
# standardisation (the better one on both corpora), two seeds each, paired by fold with `sertrain compare`.
#
#   Benchmarks/finetune-experiment.sh [SERTRAIN] [WORK_DIR]      (SHARED: ../shared)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/emodb.sh
source "$root/Benchmarks/emodb.sh"
experiment_setup finetune "$@"
mini_features
# All of ser-mini but a tenth of its recordings for the callbacks; no test rows (EmoDB is the test).
[ -f pre-mini/checkpoint-best.h5 ] || "$sertrain" train --data mini.h5 --standardize speaker --test-fraction 0 \
  --run-dir pre-mini -q
"$sertrain" evaluate --checkpoint pre-mini/checkpoint-best.h5 --split val | sed -n '1,2p'
cv() {  # directory, then cv's options
  local dir=$1
  shift
  [ -f "$dir/cv.csv" ] || "$sertrain" cv --data emodb.h5 --standardize speaker --folds 5 --by speaker --dir "$dir" \
    -q "$@" >"$dir.log" 2>&1 || { tail -5 "$dir.log"; exit 1; }
  awk -F, -v d="$dir" '$1 == "mean" {m = $4; u = $6} $1 == "sd" {printf "%s\t%.3f\t%.3f\tUAR %.3f\n", d, m, $4, u}' \
    "$dir/cv.csv"
}
for seed in 0 1; do
  cv "cv-emodb-frames-speaker-s$seed" --seed "$seed"
  cv "cv-emodb-tuned-speaker-s$seed" --seed "$seed" --init-from pre-mini/checkpoint-best.h5
  cv "cv-emodb-tuned-lr4-speaker-s$seed" --seed "$seed" --init-from pre-mini/checkpoint-best.h5 --learning-rate 1e-4
done
for tuned in tuned tuned-lr4; do
  "$sertrain" compare cv-emodb-frames-speaker-s0 "cv-emodb-$tuned-speaker-s0" \
    cv-emodb-frames-speaker-s1 "cv-emodb-$tuned-speaker-s1" | sed -n '1p;4,6p'
done
