#!/usr/bin/env bash
# bfloat16 against float32 on whole runs (issue 33's numerics): speaker-fold cross-validation on EmoDB (10 speakers,
# 5 folds of 2, boredom left out: 6 classes) with the frames model, the same seeds in each precision. Prints one
# tab-separated line per run: precision, seed, test accuracy mean and sd over folds, UAR mean and sd, seconds per
# fold; then each fold's accuracy, fp32 and bf16 side by side, and their paired difference.
#
#   Benchmarks/precision-experiment.sh [SERTRAIN] [WORK_DIR]    (SHARED: ../shared; SEEDS: "0 1 2"; MODEL: frames)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/emodb.sh
source "$root/Benchmarks/emodb.sh"
model=${MODEL:-frames}
experiment_setup precision "$@"
echo -e "precision\tseed\taccuracy\tsd\tUAR\tsd\tseconds/fold"
for seed in ${SEEDS:-0 1 2}; do
  for precision in fp32 bf16; do
    dir=cv-$model-$precision-s$seed
    start=$(date +%s.%N)
    "$sertrain" cv --data emodb.h5 --model "$model" --folds 5 --by speaker --seed "$seed" --precision "$precision" \
      --dir "$dir" -q >"$dir.log" 2>&1 || { tail -5 "$dir.log"; exit 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    awk -F, -v p="$precision" -v s="$seed" -v t="$seconds" \
      '$1 == "mean" {am = $4; um = $6} $1 == "sd" {printf "%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\n", p, s, am, $4, um, $6, t / 5}' \
      "$dir/cv.csv"
  done
done
echo -e "\nseed\tfold\tfp32\tbf16\tbf16 - fp32"
for seed in ${SEEDS:-0 1 2}; do
  paste -d, <(grep '^[0-9]' "cv-$model-fp32-s$seed/cv.csv" | cut -d, -f1,4) \
    <(grep '^[0-9]' "cv-$model-bf16-s$seed/cv.csv" | cut -d, -f4) |
    awk -F, -v s="$seed" '{printf "%s\t%s\t%.3f\t%.3f\t%+.3f\n", s, $1, $2, $3, $3 - $2}'
done | tee differences.tsv
awk -F'\t' '{d[NR] = $5; s += $5} END {m = s / NR; for (i in d) v += (d[i] - m)^2;
  printf "paired difference bf16 - fp32 over %d folds: mean %+.4f, se %.4f\n", NR, m, sqrt(v / (NR - 1) / NR)}' differences.tsv
