#!/usr/bin/env bash
# Installs what is missing, builds, checks formatting, and runs every test:
#   1. swift test: every XCTest suite in one process (tests that need ../shared skip with the reason);
#   2. the MPI suite under `mpirun -n 2` and `mpirun -n 4 --oversubscribe` (one check each in the tally);
#   3. the shell tests in Tests/Shell: sertrain under mpirun, the Launch scripts, operator semantics (signals,
#      resume, locks, output to files), and the cluster in a box (network namespaces, real Slurm; root only).
# Prints one line per check and a closing `test.sh: N passed, F failed, S skipped`; exits non-zero on a failure.
#
#   Launch/test.sh                 # everything
#   Launch/test.sh swift           # only the named stages: format, swift, mpi, shell (and shell script names)
#   SERTRAIN_SHARED=/x Launch/test.sh   # where ../shared is (tests that need it skip when it is missing)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export SERTRAIN_SHARED=${SERTRAIN_SHARED:-$root/../shared}
stages=("$@")
want() {
  [ ${#stages[@]} -eq 0 ] && return 0
  local s
  for s in "${stages[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

Launch/install-deps.sh --test
# The commit the binary is built from (sertrain --version; Package.swift reads it), "-dirty" with local changes.
SERTRAIN_COMMIT=${SERTRAIN_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || true)}
if [ -n "$SERTRAIN_COMMIT" ] && ! git diff --quiet HEAD -- 2>/dev/null; then SERTRAIN_COMMIT+=-dirty; fi
export SERTRAIN_COMMIT
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
# Tests are small; one BLAS thread per process keeps MPI runs from fighting over the cores.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
logs=$(mktemp -d /tmp/sertrain-test-logs-XXXXXX)
export SERTRAIN_TALLY=$logs/tally
: >"$SERTRAIN_TALLY"
failed=0
passed_xctest=0
skipped_xctest=0

if [ ! -d "$SERTRAIN_SHARED" ]; then
  echo "note: $SERTRAIN_SHARED is not present: tests that need its datasets and reference files skip"
fi

if want format; then
  echo "== format"
  swift format lint --strict --recursive Package.swift Sources Tests
  shellcheck -x Launch/*.sh Launch/slurm.sbatch .ci/run Tests/Shell/*.sh Tests/Cluster/*.sh
fi

echo "== build"
swift build --build-tests 2>&1 | grep -vE '^\[[0-9]+/[0-9]+\]' || true
swift build --build-tests >/dev/null # fail the script on a build error
bin_dir=$(swift build --show-bin-path)
export SERTRAIN=$bin_dir/sertrain

# Reads an XCTest log: sets xc_executed, xc_skipped, xc_failures from the summary of `suite` (the last one), and
# prints the reasons of the skipped tests, one line per reason with its count. Fails when there is no summary.
xctest_summary() {
  local log=$1 suite=$2 line
  line=$(grep -E "^Test Suite '$suite' (passed|failed)" -A1 "$log" \
    | grep -oE "Executed [0-9]+ tests?, with ([0-9]+ tests? skipped and )?[0-9]+ failures?" | tail -1 || true)
  [ -n "$line" ] || return 1
  xc_executed=$(echo "$line" | awk '{print $2}')
  xc_skipped=$(echo "$line" | grep -oE "[0-9]+ tests? skipped" | awk '{print $1}' || true)
  xc_skipped=${xc_skipped:-0}
  xc_failures=$(echo "$line" | grep -oE "[0-9]+ failures?" | awk '{print $1}')
  if [ "$xc_skipped" -gt 0 ]; then
    grep -oE "Test skipped - .*" "$log" | sed 's/^Test skipped - //' | sort | uniq -c \
      | awk '{n = $1; $1 = ""; printf "  skipped %d: %s\n", n, substr($0, 2)}'
  fi
}

if want swift; then
  echo "== swift test"
  log=$logs/swift-test.log
  swift test --skip-build >"$log" 2>&1 || true
  grep -E "error:|failed|Executed .* tests" "$log" | grep -v "^Test Suite 'Selected" | tail -40 || true
  if ! xctest_summary "$log" "All tests"; then
    tail -40 "$log"
    echo "FAIL swift test printed no summary (log: $log)"
    failed=$((failed + 1))
  elif [ "$xc_failures" -gt 0 ] || ! grep -q "^Test Suite 'All tests' passed" "$log"; then
    echo "FAIL swift test: $xc_failures of $xc_executed tests failed (log: $log)"
    failed=$((failed + (xc_failures > 0 ? xc_failures : 1)))
    passed_xctest=$((passed_xctest + xc_executed - xc_skipped - xc_failures))
  else
    echo "swift test: $((xc_executed - xc_skipped)) passed, $xc_skipped skipped"
    passed_xctest=$((passed_xctest + xc_executed - xc_skipped))
    skipped_xctest=$((skipped_xctest + xc_skipped))
  fi
fi

if want mpi; then
  echo "== MPI suite"
  xctest=$bin_dir/sertrainPackageTests.xctest
  classes=$("$xctest" --list-tests | grep -E '^MPITests\.' | cut -d/ -f1 | sort -u | paste -sd, -)
  if [ -z "$classes" ]; then
    echo "FAIL no MPI test classes found"
    failed=$((failed + 1))
  fi
  for ranks in 2 4; do
    [ -n "$classes" ] || break
    log=$logs/mpi-$ranks.log
    if ! timeout 900 mpirun -n "$ranks" --oversubscribe --bind-to none "$xctest" "$classes" >"$log" 2>&1; then
      grep -E "error|failed|Abort|signal" "$log" | head -40 || true
      echo "FAIL the MPI suite with $ranks ranks (log: $log)"
      failed=$((failed + 1))
      continue
    fi
    # Every rank must report its run with no failures.
    ok=$(grep -cE "^Test Suite 'Selected tests' passed" "$log" || true)
    if [ "$ok" -ne "$ranks" ] || ! xctest_summary "$log" "Selected tests" >/dev/null || [ "$xc_executed" -eq 0 ]; then
      tail -40 "$log"
      echo "FAIL the MPI suite with $ranks ranks: $ok of $ranks ranks passed (log: $log)"
      failed=$((failed + 1))
      continue
    fi
    # One check per rank count: the tests themselves are counted once, in the swift test stage (where the ones that
    # need several ranks skip).
    echo "mpirun -n $ranks: $((xc_executed - xc_skipped)) tests passed on each of $ranks ranks, $xc_skipped skipped (1 check)"
    passed_xctest=$((passed_xctest + 1))
  done
fi

for script in Tests/Shell/*.sh; do
  name=$(basename "$script" .sh)
  [ "$name" = lib ] && continue
  want shell || want "$name" || continue
  echo "== $name"
  if ! timeout 1200 bash "$script"; then
    echo "FAIL $script"
    failed=$((failed + 1))
  fi
done

passed_shell=$(grep -c '^pass$' "$SERTRAIN_TALLY" || true)
skipped_shell=$(grep -c '^skip$' "$SERTRAIN_TALLY" || true)
rm -rf "$logs"
echo "test.sh: $((passed_xctest + passed_shell)) passed, $failed failed, $((skipped_xctest + skipped_shell)) skipped"
[ "$failed" -eq 0 ]
