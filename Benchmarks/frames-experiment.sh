#!/usr/bin/env bash
# The frame-model experiment (EXPERIMENTS.md): speaker-fold cross-validation on EmoDB (within one corpus: 10
# speakers, 5 folds of 2, boredom left out: 6 classes) and on ser-mini (across corpora: 8 speakers, 4 folds), for
# the flat `small` preset and the frames models with each standardisation, for each of SEEDS (0 1). Prints one
# tab-separated line per run: data, model, standardisation, seed, test accuracy mean and sd, UAR mean and sd, the
# mean over folds of the best validation accuracy (what a model choice may look at), seconds per fold; then the
# comparisons.
#
#   Benchmarks/frames-experiment.sh [SERTRAIN] [WORK_DIR]      (SHARED: ../shared; RUNS: a subset, e.g. "emodb";
#                                                              VARIANTS=1: also the candidates of Benchmarks/frames/,
#                                                              the average over time with other settings;
#                                                              PEER=1: also Keras on the same folds, the frames
#                                                              model with column and speaker standardisation, in
#                                                              keras-cv-..., compared with sertrain's: PEER_VENV, a
#                                                              venv with tensorflow-cpu and h5py, made if missing;
#                                                              PEER_SEEDS, default SEEDS; SEEDS="" PEER=1 runs only
#                                                              the peer and the sertrain runs it pairs with)
#   A run whose directory holds its cv.csv is not run again: its line comes from it (seconds 0 unless it was timed).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=Benchmarks/emodb.sh
source "$root/Benchmarks/emodb.sh"
experiment_setup frames "$@"
mini_features
# The mean over folds of each fold's best validation accuracy (history.csv's fifth column).
validation() {
  for h in "$1"/fold-*/history.csv; do tail -n +2 "$h" | cut -d, -f5 | sort -g | tail -1; done \
    | awk '{s += $1; n++} END {printf "%.4f", s / n}'
}
run() {  # data folds model standardisation seed
  local data=$1 folds=$2 model=$3 norm=$4 seed=$5
  local name dir start seconds
  name=$(basename "$model" .json)
  dir=cv-$data-$name-$norm-s$seed
  start=$(date +%s.%N)
  if [ -f "$dir/cv.csv" ]; then
    seconds=$(cat "$dir.seconds" 2>/dev/null || echo 0)
  else
    "$sertrain" cv --data "$data.h5" --model "$model" --standardize "$norm" --folds "$folds" --by speaker \
      --seed "$seed" --dir "$dir" -q >"$dir.log" 2>&1 || { tail -5 "$dir.log"; return 1; }
    seconds=$(echo "$(date +%s.%N) - $start" | bc)
    echo "$seconds" >"$dir.seconds"
  fi
  awk -F, -v d="$data" -v m="$name" -v n="$norm" -v s="$seed" -v v="$(validation "$dir")" -v t="$seconds" -v k="$folds" \
    '$1 == "mean" {am = $4; um = $6} $1 == "sd" {printf "%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.3f\t%.3f\t%s\t%.1f\n", d, m, n, s, am, $4, um, $6, v, t / k}' \
    "$dir/cv.csv"
}
echo -e "data\tmodel\tstandardize\tseed\taccuracy\tsd\tUAR\tsd\tvalidation\tseconds/fold"
for data in ${RUNS:-emodb mini}; do
  folds=$([ "$data" = emodb ] && echo 5 || echo 4)
  for seed in ${SEEDS-0 1}; do
    run "$data" "$folds" small column "$seed"
    for norm in column feature speaker; do run "$data" "$folds" frames "$norm" "$seed"; done
    if [ "$data" = emodb ] && [ -n "${VARIANTS:-}" ]; then  # the candidates the preset was chosen among
      for variant in average dropout5 small-frames; do
        for norm in column speaker; do run "$data" "$folds" "$root/Benchmarks/frames/$variant.json" "$norm" "$seed"; done
      done
    fi
  done
done
# The claims, paired by fold over both seeds with the corrected k-fold test (sertrain compare): frames over the
# flat model, then speaker and feature over column standardisation.
pairs() { for seed in ${SEEDS-0 1}; do echo "cv-$1-$2-s$seed cv-$1-$3-s$seed"; done; }
claimed=${RUNS:-emodb mini}
[ -n "${SEEDS-0 1}" ] || claimed=""
for data in $claimed; do
  for claim in "small-column frames-column" "frames-column frames-speaker" "frames-column frames-feature"; do
    # shellcheck disable=SC2046,SC2086
    "$sertrain" compare $(pairs "$data" $claim) | sed -n '1p;4,6p'
  done
done
# The Keras peer on the same folds and rows (Benchmarks/peer_cv.py), paired with sertrain's runs fold by fold.
if [ -n "${PEER:-}" ]; then
  venv=${PEER_VENV:-$root/.build/bench-venv}
  if ! "$venv/bin/python" -c "import tensorflow, h5py" 2>/dev/null; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q tensorflow-cpu h5py
  fi
  for data in ${RUNS:-emodb mini}; do
    folds=$([ "$data" = emodb ] && echo 5 || echo 4)
    for norm in column speaker; do
      pairs=()
      for seed in ${PEER_SEEDS:-${SEEDS-0 1}}; do
        run "$data" "$folds" frames "$norm" "$seed" >/dev/null
        dir=cv-$data-frames-$norm-s$seed
        pairs+=("$dir" "keras-$dir")
        [ -f "keras-$dir/cv.csv" ] || "$venv/bin/python" "$root/Benchmarks/peer_cv.py" "$sertrain" "$dir" "$data.h5" \
          "keras-$dir" --seed "$seed" >"keras-$dir.log" 2>&1 || { tail -5 "keras-$dir.log"; exit 1; }
        grep '^fold\|^Keras' "keras-$dir.log"
      done
      "$sertrain" compare "${pairs[@]}" | sed -n '1p;4,6p'
    done
  done
fi
