#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, builds in release, and runs sertrain end to end on
# generated data. Today it converts a generated seed-shaped features.csv and describes the feature file; it grows
# with the model, training and audio issues into synth → extract → train → evaluate → predict → report.
set -euo pipefail
cd "$(dirname "$0")/.."
Launch/install-deps.sh
echo "== building (release)"
swift build -c release 2>&1 | grep -E "error|warning: unre|Compiling sertrain|Build complete" || true
swift build -c release >/dev/null
bin="$(swift build -c release --show-bin-path)/sertrain"
out=${DEMO_DIR:-demo}
mkdir -p "$out"
echo "== a seed-shaped features.csv (4,000 rows), converted to HDF5"
"$bin" bench convert --rows 4000 --repeats 1 --no-peer --work-dir "$out"
echo "== the feature file"
"$bin" inspect "$out/features.h5"
echo
echo "demo done: $out/features.h5"
