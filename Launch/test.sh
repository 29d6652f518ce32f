#!/usr/bin/env bash
# Installs what is missing, builds, checks formatting, runs every test: `swift test` (all suites on one
# process), then the MPI suite under `mpirun -n 2` and `mpirun -n 4 --oversubscribe`.
set -euo pipefail
cd "$(dirname "$0")/.."
Launch/install-deps.sh

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
# Tests are small; one BLAS thread per process keeps MPI runs from fighting over the cores.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

echo "== format"
swift format lint --strict --recursive Package.swift Sources Tests

echo "== build"
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
swift build --build-tests >/dev/null  # fail the script on a build error

echo "== swift test"
swift test --skip-build 2>&1 | tee /tmp/sertrain-swift-test.log | grep -E "error|failed|Executed .* tests" | tail -40
single=$(grep -E "^Test Suite 'All tests' (passed|failed)" -A1 /tmp/sertrain-swift-test.log | grep -oE "Executed [0-9]+ tests, with [0-9]+ failures" | tail -1)
[ -n "$single" ] || { echo "swift test printed no summary"; exit 1; }
grep -q "^Test Suite 'All tests' passed" /tmp/sertrain-swift-test.log || { echo "swift test failed"; exit 1; }
passed=$(echo "$single" | awk '{print $2}')

echo "== MPI suite"
bin="$(swift build --show-bin-path)/sertrainPackageTests.xctest"
classes=$("$bin" --list-tests | grep -E '^MPITests\.' | cut -d/ -f1 | sort -u | paste -sd, -)
[ -n "$classes" ] || { echo "no MPI test classes found"; exit 1; }
mpi_passed=0
for ranks in 2 4; do
  log=/tmp/sertrain-mpi-$ranks.log
  if ! timeout 900 mpirun -n "$ranks" --oversubscribe --bind-to none "$bin" "$classes" >"$log" 2>&1; then
    grep -E "error|failed|Abort|signal" "$log" | head -40
    echo "MPI suite failed with $ranks ranks (log: $log)"
    exit 1
  fi
  # Every rank must report its run with no failures.
  ok=$(grep -cE "^Test Suite 'Selected tests' passed" "$log" || true)
  [ "$ok" -eq "$ranks" ] || { cat "$log" | tail -40; echo "only $ok of $ranks ranks passed"; exit 1; }
  n=$(grep -E "^Test Suite 'Selected tests' passed" -A1 "$log" | grep -oE "Executed [0-9]+ tests" | head -1 | awk '{print $2}')
  [ "${n:-0}" -gt 0 ] || { echo "the MPI suite ran no test with $ranks ranks"; exit 1; }
  echo "mpirun -n $ranks: $n tests passed on each of $ranks ranks"
  mpi_passed=$((mpi_passed + n))
done

echo "== MPI command line"
# sertrain itself under mpirun: uneven shards (101 rows, 3 ranks), and a rank killed mid-run.
exe="$(swift build --show-bin-path)/sertrain"
work=$(mktemp -d /tmp/sertrain-mpi-cli-XXXXXX)
trap 'rm -rf "$work"' EXIT
awk 'BEGIN { srand(3); w = 64; for (i = 0; i < w; i++) printf "%d,", i; print "labels";
  for (r = 0; r < 101; r++) { c = r % 3; for (t = 0; t < w; t++) printf "%.4f,", sin(0.15 * (c + 1) * t) + rand() - 0.5;
  print (c == 0 ? "angry" : c == 1 ? "calm" : "sad") } }' >"$work/f.csv"
(cd "$work" && "$exe" convert f.csv -o f.h5 >/dev/null)
cli_passed=0
(cd "$work" && timeout 300 mpirun -n 3 --oversubscribe --bind-to none "$exe" train --data f.h5 --model tiny \
  --epochs 3 --batch-size 8 --split random --run-dir uneven -q) || { echo "mpirun -n 3 train failed"; exit 1; }
[ "$(wc -l <"$work/uneven/history.csv")" -eq 4 ] || { echo "3 ranks: expected 3 epochs of history"; exit 1; }
echo "mpirun -n 3 train on 101 rows: 3 epochs, history written"
cli_passed=$((cli_passed + 1))
(cd "$work" && exec mpirun -n 2 --oversubscribe --bind-to none "$exe" train --data f.h5 --model tiny --epochs 500 \
  --patience 1000 --batch-size 8 --run-dir killed -q >killed.log 2>&1) &
launcher=$!
for _ in $(seq 1 600); do [ -f "$work/killed/checkpoint-last.h5" ] && break; sleep 0.05; done
victim=$(pgrep -f -- "--run-dir killed" | while read -r p; do
  [ "$(cat /proc/$p/comm 2>/dev/null)" = "sertrain" ] && echo "$p"; done | tail -1)
[ -n "$victim" ] || { echo "no rank process found to kill"; exit 1; }
kill -9 "$victim"
if wait "$launcher"; then echo "a killed rank must fail the job"; exit 1; fi
"$exe" inspect "$work/killed/checkpoint-last.h5" >/dev/null || { echo "the last checkpoint does not open"; exit 1; }
echo "a rank killed mid-run: the job exits non-zero and the last checkpoint opens"
cli_passed=$((cli_passed + 1))

if [ -d ../shared/datasets/ser-mini ]; then
  # Every recording of ser-mini, four rows each, on 2 ranks (the rows do not depend on the rank count: MPI suite).
  timeout 900 mpirun -n 2 --oversubscribe --bind-to none "$exe" extract ../shared/datasets/ser-mini \
    -o "$work/ser-mini.h5" -q >"$work/extract.log" || { cat "$work/extract.log"; echo "extract failed"; exit 1; }
  "$exe" inspect "$work/ser-mini.h5" >"$work/inspect.log"
  grep -q "rows          5704 x 2376" "$work/inspect.log" && grep -q "1426 (4 rows each), 8 speakers" "$work/inspect.log" && ! grep -q skipped "$work/extract.log" \
    || { cat "$work/extract.log" "$work/inspect.log"; echo "ser-mini: expected 4 x 1,426 rows, 8 speakers, nothing skipped"; exit 1; }
  echo "mpirun -n 2 extract ser-mini: 1,426 recordings, 5,704 rows, 8 speakers, nothing skipped"
  cli_passed=$((cli_passed + 1))
fi

echo "test.sh: $((passed + mpi_passed + cli_passed)) passed, 0 failed"
