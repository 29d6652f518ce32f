#!/usr/bin/env bash
# The original rows against all of a held-out recording's rows (EXPERIMENTS.md, "What the accuracy counts"): each
# fold of the given cross-validation directories evaluated on its test rows (`evaluate --json`), printing per fold
# the accuracy and UAR over all rows and over the original rows alone, and the accuracy of each augmentation; then,
# per directory name less its seed (cv-emodb-frames-column-s0 -> cv-emodb-frames-column), the mean difference.
#
#   Benchmarks/original-rows.sh SERTRAIN DATA.h5 CV_DIR... > original-rows.tsv
set -euo pipefail
sertrain=$1 data=$2
shift 2
folds=$(mktemp)
trap 'rm -f "$folds"' EXIT
echo -e "cv\tfold\taccuracy\tuar\toriginal_accuracy\toriginal_uar\toriginal\tnoise\tpitch\tpitch+noise"
for dir in "$@"; do
  for fold in "$dir"/fold-*; do
    "$sertrain" evaluate --checkpoint "$fold/checkpoint-last.h5" --data "$data" --split test --json \
      | python3 -c '
import json, sys
e, name, fold = json.load(sys.stdin), sys.argv[1], sys.argv[2]
kinds = e["byAugmentation"]
cells = [e["accuracy"], e["unweightedAverageRecall"], e["original"]["accuracy"], e["original"]["unweightedAverageRecall"]]
cells += [kinds[k][0] / kinds[k][1] for k in ("original", "noise", "pitch", "pitch+noise")]
print(name, fold, *("%.4f" % c for c in cells), sep="\t")' "$(basename "$dir")" "$(basename "$fold")"
  done
done >"$folds"
cat "$folds"
python3 -c '
import sys, statistics as st
groups = {}
for line in sys.stdin:
    cells = line.split("\t")
    groups.setdefault(cells[0].rsplit("-s", 1)[0], []).append([float(c) for c in cells[2:]])
for name, folds in groups.items():
    d = [f[2] - f[0] for f in folds]
    u = [f[3] - f[1] for f in folds]
    kinds = ", ".join("%s %.3f" % (k, st.mean(f[4 + i] for f in folds))
                      for i, k in enumerate(("original", "noise", "pitch", "pitch+noise")))
    print("# %s, %d folds: accuracy %.3f, original rows %.3f (%+.1f points, sd %.1f, %d folds higher, %d lower); "
          "UAR %.3f, original rows %.3f (%+.1f); by augmentation %s" % (
              name, len(folds), st.mean(f[0] for f in folds), st.mean(f[2] for f in folds), 100 * st.mean(d),
              100 * st.stdev(d), sum(x > 0 for x in d), sum(x < 0 for x in d), st.mean(f[1] for f in folds),
              st.mean(f[3] for f in folds), 100 * st.mean(u), kinds))' <"$folds"
