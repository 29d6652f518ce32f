#!/usr/bin/env bash
# Installs what is missing, builds, checks formatting, runs every test: `swift test` (all suites on one
# process), then the MPI suite under `mpirun -n 2` and `mpirun -n 4 --oversubscribe`.
set -euo pipefail
cd "$(dirname "$0")/.."
Launch/install-deps.sh --test

if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
# Tests are small; one BLAS thread per process keeps MPI runs from fighting over the cores.
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}

echo "== format"
swift format lint --strict --recursive Package.swift Sources Tests
shellcheck Launch/*.sh Launch/slurm.sbatch .ci/run

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
  [ "$ok" -eq "$ranks" ] || { tail -40 "$log"; echo "only $ok of $ranks ranks passed"; exit 1; }
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
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "sertrain" ] && echo "$p"; done | tail -1)
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
  if ! grep -q "rows          5704 x 2376" "$work/inspect.log" || ! grep -q "1426 (4 rows each), 8 speakers" \
    "$work/inspect.log" || grep -q skipped "$work/extract.log"; then
    cat "$work/extract.log" "$work/inspect.log"
    echo "ser-mini: expected 4 x 1,426 rows, 8 speakers, nothing skipped"
    exit 1
  fi
  echo "mpirun -n 2 extract ser-mini: 1,426 recordings, 5,704 rows, 8 speakers, nothing skipped"
  cli_passed=$((cli_passed + 1))
fi

echo "== Launch scripts, for real under mpirun (fake Slurm and PBS environments)"
fake="$work/bin"
mkdir -p "$fake"
# srun as mpirun would run it inside an allocation; scontrol records a requeue.
cat >"$fake/srun" <<'SH'
#!/usr/bin/env bash
args=(); for a in "$@"; do case "$a" in --mpi=*|--cpu-bind=*|--kill-on-bad-exit=*) ;; *) args+=("$a");; esac; done
exec mpirun -n "$SLURM_NTASKS" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS -x HDF5_USE_FILE_LOCKING "${args[@]}"
SH
printf '#!/usr/bin/env bash\necho "$@" >>"%s/requeued"\n' "$work" >"$fake/scontrol"
chmod +x "$fake/srun" "$fake/scontrol"
common=(SERTRAIN="$exe" DATA=f.h5 MODEL=tiny EPOCHS=2 EXTRA="--batch-size 8 -q")
(cd "$work" && env "${common[@]}" RUN_DIR=local RANKS=2 THREADS=1 bash "$OLDPWD/Launch/local.sh") \
  || { echo "Launch/local.sh failed"; exit 1; }
(cd "$work" && env PATH="$fake:$PATH" "${common[@]}" RUN_DIR=slurm SLURM_JOB_ID=42 SLURM_NTASKS=2 \
  SLURM_CPUS_PER_TASK=1 bash "$OLDPWD/Launch/slurm.sbatch") || { echo "Launch/slurm.sbatch (srun) failed"; exit 1; }
(cd "$work" && env "${common[@]}" RUN_DIR=slurm-mpirun LAUNCHER=mpirun SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  bash "$OLDPWD/Launch/slurm.sbatch") || { echo "Launch/slurm.sbatch (mpirun) failed"; exit 1; }
printf 'localhost\nlocalhost\n' >"$work/nodes"
(cd "$work" && env "${common[@]}" RUN_DIR=pbs PBS_NODEFILE="$work/nodes" PBS_JOBID=7 OMP_NUM_THREADS=1 \
  bash "$OLDPWD/Launch/pbs.sh") || { echo "Launch/pbs.sh failed"; exit 1; }
for run in local slurm slurm-mpirun pbs; do
  [ "$(wc -l <"$work/$run/history.csv")" -eq 3 ] || { echo "Launch: $run did not train 2 epochs"; exit 1; }
done
# Preemption: USR1 to the batch script reaches the ranks, which checkpoint and exit 75; the script requeues.
(cd "$work" && exec env PATH="$fake:$PATH" SERTRAIN="$exe" DATA=f.h5 MODEL=tiny EPOCHS=500 \
  EXTRA="--batch-size 8 --patience 1000 -q" RUN_DIR=preempt SLURM_JOB_ID=43 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  bash "$OLDPWD/Launch/slurm.sbatch") &
batch=$!
for _ in $(seq 1 600); do [ -f "$work/preempt/checkpoint-last.h5" ] && break; sleep 0.05; done
kill -USR1 "$batch"
code=0
wait "$batch" || code=$?
if [ "$code" -ne 75 ] || ! grep -q "requeue 43" "$work/requeued"; then
  echo "preemption: exit $code, requeue not asked"
  exit 1
fi
(cd "$work" && env PATH="$fake:$PATH" SERTRAIN="$exe" DATA=f.h5 MODEL=tiny EPOCHS=3 EXTRA="--batch-size 8 -q" \
  RUN_DIR=preempt SLURM_JOB_ID=43 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 bash "$OLDPWD/Launch/slurm.sbatch") \
  || { echo "the requeued job did not resume"; exit 1; }
echo "Launch/local.sh, slurm.sbatch (srun and mpirun), pbs.sh train for real; USR1 checkpoints, exits 75, requeues, resumes"
cli_passed=$((cli_passed + 1))

echo "== report"
(cd "$work" && "$exe" report local >/dev/null) || { echo "sertrain report failed"; exit 1; }
if command -v chromium >/dev/null; then
  chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --window-size=1000,1250 \
    --screenshot="$work/report.png" "file://$work/local/report.html" >/dev/null 2>&1 || true
  size=$(stat -c %s "$work/report.png" 2>/dev/null || echo 0)
  [ "$size" -gt 20000 ] || { echo "the report did not render (screenshot: $size bytes)"; exit 1; }
  if ! grep -q "<svg" "$work/local/report.html" || ! grep -q "Confusion matrix" "$work/local/report.html"; then
    echo "the report lacks its charts"
    exit 1
  fi
  echo "report.html renders in headless Chromium ($size-byte screenshot)"
  cli_passed=$((cli_passed + 1))
fi

echo "test.sh: $((passed + mpi_passed + cli_passed)) passed, 0 failed"
