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

echo "test.sh: $((passed + mpi_passed)) passed, 0 failed"
