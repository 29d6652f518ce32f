#!/usr/bin/env bash
# The cluster in a box (Tests/Cluster/box.sh): 2 nodes as network namespaces, real Slurm, multi-node MPI over TCP.
#   1. sbatch Launch/slurm.sbatch on 2 nodes x 1 rank (srun --mpi=pmix) trains the tiny model on a synthetic
#      corpus; each epoch line is in the Slurm output file within 2 s of the epoch's end.
#   2. Preemption for real: scancel --signal=USR1 --batch -> checkpoint -> exit 75 -> scontrol requeue -> the
#      requeued job resumes in the same run directory -> its final weights equal an uninterrupted job's, bit for bit.
#   3. mpirun -n 4 across the 2 nodes (an rsh agent that enters a node's namespaces) gives the 1-rank history at a
#      learning rate of 1e-5; an interrupted 4-rank run resumes exactly; the gradients crossed the veth links.
# Skips with one line where the box cannot start (not root, no Slurm). Everything runs as PID 1 of its own PID
# namespace, so nothing it started outlives it.
here=$(cd "$(dirname "$0")" && pwd)
if [ -z "${SERTRAIN_BOX_INNER:-}" ]; then
  if ! reason=$(bash "$here/../Cluster/box.sh" check 2>&1); then
    echo "SKIP cluster in a box: $reason"
    echo skip >>"${SERTRAIN_TALLY:-/dev/null}"
    exit 0
  fi
  exec unshare --pid --fork --kill-child --mount-proc --mount --propagation private \
    env SERTRAIN_BOX_INNER=1 bash "$0" "$@"
fi
# shellcheck source=Tests/Shell/lib.sh
source "$here/lib.sh"
# shellcheck source=Tests/Cluster/box.sh
source "$here/../Cluster/box.sh"
cd "$WORK" || exit 1
chmod 755 "$WORK"
started=$(date +%s)

rate=${SERTRAIN_BOX_RATE:-10gbit}
on_exit box_down
box_up 2 "$rate"
tc -n srt-n1 qdisc show dev eth0 | grep -q "tbf.*rate" || fail "no tbf cap on srt-n1's link"
pass "cluster up in $(($(date +%s) - started)) s: slurmctld, 2 slurmd, munged; links capped at $rate (tc tbf)"

"$SERTRAIN" synth -o corpus --speakers 4 --per-class 4 >/dev/null
"$SERTRAIN" extract corpus -o f.h5 -q >/dev/null
export OMPI_MCA_btl=self,vader,tcp OMPI_MCA_btl_tcp_if_include=$BOX_SUBNET.0/24
export OMPI_MCA_oob_tcp_if_include=$BOX_SUBNET.0/24 OPENBLAS_NUM_THREADS=1

# submit NAME EPOCHS: slurm.sbatch on 2 nodes x 1 rank x 1 core; prints the job id.
submit() {
  DATA="$WORK/f.h5" RUN_DIR="$WORK/$1" MODEL=tiny EPOCHS="$2" EXTRA="--batch-size 4 --patience 100 --progress-every 1" \
    box_client sbatch --parsable --job-name="$1" --nodes=2 --ntasks-per-node=1 --cpus-per-task=1 --time=10 \
    --chdir="$WORK" --output="$WORK/$1.out" "$ROOT/Launch/slurm.sbatch"
}
job_field() { box_client scontrol show job "$1" | grep -oE "(^| )$2=[^ ]+" | head -1 | cut -d= -f2; }
# wait_job ID SECONDS: until the job has ended; prints its state.
wait_job() {
  local state _
  for _ in $(seq 1 $(($2 * 5))); do
    state=$(job_field "$1" JobState)
    case "$state" in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) break ;; esac
    sleep 0.2
  done
  echo "$state"
}
digest() { "$SERTRAIN" inspect "$1/checkpoint-last.h5" | awk '/digest/ {print $2}'; }

# 1. A plain job; a watcher notes when each epoch line reaches the output file.
t0=$(date +%s)
job=$(submit plain 6)
watch_epoch_lines plain.out &
watcher=$!
state=$(wait_job "$job" 120)
kill "$watcher"
[ "$state" = COMPLETED ] || { cat plain.out; fail "sbatch on 2 nodes: job $job ended $state"; }
nodes=$(job_field "$job" NodeList)
[ "$nodes" = "srt-n[1-2]" ] || fail "the job did not run on both nodes ($nodes)"
[ "$(grep -c "^Epoch " plain.out)" -eq 6 ] || { cat plain.out; fail "expected 6 epoch lines in plain.out"; }
worst=$(epoch_line_lateness plain plain.out) || fail "epoch lines in plain.out before their epochs ended, or none"
awk -v w="$worst" 'BEGIN {exit !(w <= 2.0)}' \
  || fail "epoch lines reached the Slurm output file up to $worst s after their epochs ended"
epoch_seconds=$(awk -F, 'NR > 1 {s += $7} END {printf "%.1f", s / (NR - 1)}' plain/history.csv)
pass "sbatch slurm.sbatch, 2 nodes x 1 rank (srun --mpi=pmix): 6 epochs of $epoch_seconds s in $(($(date +%s) - t0)) s; each epoch line in the output file at most $worst s after its epoch ended"

# 2. Preemption: the same job, stopped by USR1 to its batch script after its first checkpoint, requeued, resumed.
t0=$(date +%s)
job=$(submit preempted 6)
wait_for_file preempted/checkpoint-last.h5 120 || { cat preempted.out; fail "no checkpoint from job $job"; }
box_client scancel --signal=USR1 --batch "$job"
state=$(wait_job "$job" 180)
restarts=$(job_field "$job" Restarts)
[ "$state" = COMPLETED ] || { cat preempted.out; fail "the preempted job ended $state"; }
if [ "${restarts:-0}" -lt 1 ] || ! grep -q "requeueing job $job" preempted.out \
  || ! grep -q "^resuming from" preempted.out; then
  cat preempted.out
  fail "the job was not stopped, requeued and resumed (restarts: $restarts)"
fi
grep -q "stopped by SIGUSR1 at epoch" preempted.out || fail "no checkpoint at the stop in preempted.out"
[ "$(digest plain)" = "$(digest preempted)" ] || fail "preempted and requeued: final weights differ from the plain job's"
pass "scancel --signal=USR1 --batch: checkpoint, exit 75, scontrol requeue, resumed in the same run directory; final weights equal the uninterrupted job's bit for bit ($(digest plain)), $(($(date +%s) - t0)) s"

# 3. mpirun across the namespaces: ranks 0-1 on srt-n1, 2-3 on srt-n2, orted started by an rsh agent.
cat >rsh-agent <<EOF
#!/usr/bin/env bash
# mpirun's rsh agent into the box: HOST COMMAND... runs COMMAND in that node's network and UTS namespaces.
host=\$1
shift
exec nsenter --target "\$(cat "$BOX/slurmd-\$host.pid")" --net --uts -- sh -c "\$*"
EOF
chmod +x rsh-agent
mpi4() {
  box_client mpirun -n 4 --host srt-n1:2,srt-n2:2 --mca plm_rsh_agent "$WORK/rsh-agent" --bind-to none \
    -x OPENBLAS_NUM_THREADS -x OMPI_MCA_btl -x OMPI_MCA_btl_tcp_if_include \
    "$SERTRAIN" train --data f.h5 --model tiny --batch-size 8 --learning-rate 1e-5 --epochs 4 --patience 100 "$@"
}
t0=$(date +%s)
"$SERTRAIN" train --data f.h5 --model tiny --batch-size 8 --learning-rate 1e-5 --epochs 4 --patience 100 \
  --run-dir one -q
before=$(box_link_bytes)
mpi4 --run-dir four -q >four.log 2>&1 || { cat four.log; fail "mpirun -n 4 across 2 nodes"; }
crossed=$(($(box_link_bytes) - before))
[ "$(grep -c . four/history.csv)" -eq 5 ] || fail "mpirun -n 4: expected 4 epochs of history"
worst=$(paste -d, one/history.csv four/history.csv | awk -F, 'NR > 1 {
  for (c = 2; c <= 5; c++) { a = $c; b = $(c + 8); d = (a - b) / (a > 0 ? a : 1); if (d < 0) d = -d; if (d > w) w = d } }
  END {printf "%.2e", w}')
awk -v w="$worst" 'BEGIN {exit !(w <= 1e-4)}' \
  || { paste -d'\n' one/history.csv four/history.csv; fail "4 ranks on 2 nodes vs 1 rank: history differs by $worst"; }
steps=$(awk -F, 'NR > 1 {n++} END {print n}' four/history.csv)
trainable=$("$SERTRAIN" inspect four/checkpoint-last.h5 | grep -oE "\(([0-9]+) trainable" | grep -oE "[0-9]+")
rows=$("$SERTRAIN" inspect four/checkpoint-last.h5 | awk '$1 == "split" {print $3}' | tr -d ,)
steps=$((steps * ((rows + 7) / 8)))
need=$((steps * (trainable + 5) * 4))
[ "$crossed" -ge "$need" ] || fail "only $crossed bytes crossed the links, fewer than $steps steps x $(((trainable + 5) * 4)) gradient bytes"
pass "mpirun -n 4 over 2 nodes (rsh agent into the namespaces): the 1-rank history within $worst at learning rate 1e-5; $crossed bytes over the veth links >= $steps steps x $(((trainable + 5) * 4)) gradient bytes; $(($(date +%s) - t0)) s"

t0=$(date +%s)
(mpi4 --run-dir four-stopped -q >stopped.log 2>&1) &
launcher=$!
wait_for_file four-stopped/checkpoint-last.h5 60 || fail "the 4-rank run wrote no checkpoint"
pkill -USR1 -x mpirun
code=0
wait_launcher "$launcher" four-stopped || code=$?
hung=""
if [ -s launcher-hangs ] && [ "$(head -1 four-stopped/status)" = stopped ]; then  # OpenMPI's, not sertrain's
  code=75
  hung=" (mpirun then hung in its finalize and was killed, as sertrain supervise would)"
fi
[ "$code" -eq 75 ] || { cat stopped.log; fail "USR1 to mpirun across nodes: exit $code, expected 75"; }
mpi4 --run-dir four-stopped --resume auto -q >resumed.log 2>&1 || { cat resumed.log; fail "the 4-rank resume"; }
[ "$(digest four)" = "$(digest four-stopped)" ] || fail "4 ranks on 2 nodes, stopped and resumed: weights differ"
pass "mpirun -n 4 over 2 nodes stopped by USR1 (exit 75$hung) and resumed: final weights equal the uninterrupted run's bit for bit; $(($(date +%s) - t0)) s"
echo "cluster in a box: $(($(date +%s) - started)) s in all"
