#!/usr/bin/env bash
# The Launch scripts, for real under mpirun on this machine, with fake Slurm and PBS environments (the cluster in a
# box runs slurm.sbatch under real Slurm): local.sh, slurm.sbatch through srun and through mpirun, pbs.sh, and a
# preemption (USR1 to the batch script) that checkpoints, exits 75, asks for a requeue and resumes.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
make_features f.h5 101 64
fake=$WORK/bin
mkdir -p "$fake"
# srun as mpirun would run it inside an allocation; scontrol records a requeue.
cat >"$fake/srun" <<'SH'
#!/usr/bin/env bash
args=(); for a in "$@"; do case "$a" in --mpi=*|--cpu-bind=*|--kill-on-bad-exit=*|--cpus-per-task=*) ;; *) args+=("$a");; esac; done
exec mpirun -n "$SLURM_NTASKS" --oversubscribe --bind-to none -x OPENBLAS_NUM_THREADS -x HDF5_USE_FILE_LOCKING "${args[@]}"
SH
printf '#!/usr/bin/env bash\necho "$@" >>"%s/requeued"\n' "$WORK" >"$fake/scontrol"
chmod +x "$fake/srun" "$fake/scontrol"
common=(SERTRAIN="$SERTRAIN" DATA=f.h5 MODEL=tiny EPOCHS=2 EXTRA="--batch-size 8 -q")
env "${common[@]}" RUN_DIR=local RANKS=2 THREADS=1 bash "$ROOT/Launch/local.sh" || fail "Launch/local.sh"
env PATH="$fake:$PATH" "${common[@]}" RUN_DIR=slurm SLURM_JOB_ID=42 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  bash "$ROOT/Launch/slurm.sbatch" || fail "Launch/slurm.sbatch (srun)"
env "${common[@]}" RUN_DIR=slurm-mpirun LAUNCHER=mpirun SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  bash "$ROOT/Launch/slurm.sbatch" || fail "Launch/slurm.sbatch (mpirun)"
printf 'localhost\nlocalhost\n' >nodes
env "${common[@]}" RUN_DIR=pbs PBS_NODEFILE="$WORK/nodes" PBS_JOBID=7 OMP_NUM_THREADS=1 bash "$ROOT/Launch/pbs.sh" \
  || fail "Launch/pbs.sh"
for run in local slurm slurm-mpirun pbs; do
  [ "$(wc -l <"$run/history.csv")" -eq 3 ] || fail "Launch: $run did not train 2 epochs"
done
pass "Launch/local.sh, slurm.sbatch (srun and mpirun) and pbs.sh train for real"

# Preemption: USR1 to the batch script reaches the ranks, which checkpoint and exit 75; the script requeues.
(exec env PATH="$fake:$PATH" SERTRAIN="$SERTRAIN" DATA=f.h5 MODEL=tiny EPOCHS=500 \
  EXTRA="--batch-size 8 --patience 1000 -q" RUN_DIR=preempt SLURM_JOB_ID=43 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 \
  bash "$ROOT/Launch/slurm.sbatch") &
batch=$!
wait_for_file preempt/checkpoint-last.h5 30 || fail "preemption: no checkpoint after 30 s"
kill -USR1 "$batch"
code=0
wait "$batch" || code=$?
if [ "$code" -ne 75 ] || ! grep -q "requeue 43" requeued; then fail "preemption: exit $code, requeue not asked"; fi
env PATH="$fake:$PATH" SERTRAIN="$SERTRAIN" DATA=f.h5 MODEL=tiny EPOCHS=3 EXTRA="--batch-size 8 -q" \
  RUN_DIR=preempt SLURM_JOB_ID=43 SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 bash "$ROOT/Launch/slurm.sbatch" \
  || fail "the requeued job did not resume"
pass "USR1 to slurm.sbatch: checkpoint, exit 75, requeue asked, the requeued job resumes"

# Arguments after slurm.sbatch are train options, quoting kept (a spec whose name has a space); without RUN_DIR the
# run directory is the job's name, so the same job submitted again continues its run.
"$SERTRAIN" summary --model tiny >/dev/null
printf '%s' '{"name": "spaced", "input_length": 64, "layers": [{"type": "Flatten"}, {"type": "Dense", "activation": "softmax"}]}' \
  >"my spec.json"
for attempt in 1 2; do
  env PATH="$fake:$PATH" SERTRAIN="$SERTRAIN" DATA=f.h5 EPOCHS=$((attempt + 1)) SLURM_JOB_ID=$((50 + attempt)) \
    SLURM_JOB_NAME=spaced SLURM_NTASKS=2 SLURM_CPUS_PER_TASK=1 bash "$ROOT/Launch/slurm.sbatch" --model "my spec.json" \
    --batch-size 8 -q || fail "slurm.sbatch with arguments (attempt $attempt)"
done
if ! grep -q '"model" : "my spec.json"' runs/slurm-spaced/config.json \
  || [ "$(grep -c . runs/slurm-spaced/history.csv)" -ne 4 ]; then
  fail "slurm.sbatch: the arguments or the run directory by job name: $(cat runs/slurm-spaced/config.json)"
fi
pass "slurm.sbatch passes its arguments to train as given and keeps a job's run in runs/slurm-JOBNAME across submissions"

# Launch/install.sh puts the binary under PREFIX/bin and says when that is not on PATH (swift stubbed: the build is
# the test suite's own; this checks the script's copy and its advice).
cat >"$fake/swift" <<SH
#!/usr/bin/env bash
case "\$*" in *--show-bin-path*) dirname "$SERTRAIN";; *) echo "Build of product 'sertrain' complete!";; esac
SH
chmod +x "$fake/swift"
out=$(env PATH="$fake:$PATH" PREFIX="$WORK/prefix" bash "$ROOT/Launch/install.sh") || fail "Launch/install.sh: $out"
summary=$("$WORK/prefix/bin/sertrain" summary --model tiny) || fail "install.sh: the installed binary does not run"
grep -q "Total params: 3,651" <<<"$summary" || fail "install.sh: installed binary: $summary"
grep -q "is not on PATH" <<<"$out" || fail "install.sh did not say that PREFIX/bin is not on PATH: $out"
pass "Launch/install.sh installs PREFIX/bin/sertrain and says how to put it on PATH"

# A failed build stops install.sh loudly, and the binary there from before is not installed.
cat >"$fake/swift" <<SH2
#!/usr/bin/env bash
case "\$*" in *--show-bin-path*) dirname "$SERTRAIN";; *) echo "Sources/x.swift:1:1: error: the build broke"; exit 1;; esac
SH2
code=0
out=$(env PATH="$fake:$PATH" PREFIX="$WORK/prefix2" bash "$ROOT/Launch/install.sh" 2>&1) || code=$?
if [ "$code" -eq 0 ] || ! grep -q "the release build failed" <<<"$out" || ! grep -q "the build broke" <<<"$out" \
  || [ -e "$WORK/prefix2/bin/sertrain" ]; then
  fail "install.sh after a failed build: exit $code, $out"
fi
pass "Launch/install.sh fails loudly when the build fails (exit $code) and installs nothing"
