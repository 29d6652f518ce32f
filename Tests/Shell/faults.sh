#!/usr/bin/env bash
# Fault injection (issues 16 and 30): SIGKILLs at random moments of a tiny-model run and of its resumes, on 1 rank
# and on 2 (one rank killed), and two placed on purpose: between the writes of checkpoint-last.h5 and
# checkpoint-best.h5, and right after the final checkpoint; then each run is resumed to its end and both checkpoints
# compared, every dataset bit for bit, with an uninterrupted run's, and the same command run again on the finished
# run (as a requeued job does) must change nothing. SERTRAIN_KILLS sets the number of kills on 1 rank (default 10; half as many on 2 ranks), SERTRAIN_SEED the
# moments.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
kills=${SERTRAIN_KILLS:-10}
RANDOM=${SERTRAIN_SEED:-16}
make_features f.h5 240 64 --rows-per-recording 4
args=(train --data f.h5 --model tiny --epochs 30 --patience 100 --batch-size 8 --learning-rate 0.01 -q)

# The contents digest of every dataset in a checkpoint (`inspect --verify` reads them all, checking checksums).
contents() { "$SERTRAIN" inspect --verify "$1" | awk '/contents sha256/ {print $3}'; }

# kill_trials RANKS NAME N SECONDS: SIGKILLs (of one rank) at random moments up to 2 x SECONDS / N after the ranks
# of a run or of its resume have started, until N have landed; a run that ends first is finished and a new one (NAME-2, ...) begins.
# Each run is compared with the uninterrupted one (straight, or straight2 on 2 ranks). Prints runs and starts.
kill_trials() {
  local ranks=$1 name=$2 n=$3 span=$4 landed=0 starts=0 round=0 dir delay pid victim
  local reference=straight launch=("$SERTRAIN")
  if [ "$ranks" -eq 2 ]; then reference=straight2 launch=(mpirun -n 2 --bind-to none "$SERTRAIN"); fi
  while [ "$landed" -lt "$n" ]; do
    round=$((round + 1))
    dir=$name-$round
    while [ "$landed" -lt "$n" ]; do
      starts=$((starts + 1))
      delay=$(awk -v r="$RANDOM" -v s="$span" -v n="$n" 'BEGIN {printf "%.3f", r / 32768 * 2 * s / n}')
      "${launch[@]}" "${args[@]}" --run-dir "$dir" --resume auto >"$dir.$starts.log" 2>&1 &
      pid=$!
      # The moment counts from when every rank's process is there (mpirun takes a while to start them).
      for _ in $(seq 1 200); do
        [ "$(sertrain_pids "--run-dir $dir " | wc -l)" -ge "$ranks" ] && break
        sleep 0.02
      done
      sleep "$delay"
      victim=$(sertrain_pids "--run-dir $dir " | sed -n "$((RANDOM % ranks + 1))p")
      if [ -n "$victim" ] && kill -9 "$victim" 2>/dev/null; then landed=$((landed + 1)); fi
      wait_launcher "$pid" "$dir" && break
      # A kill at any moment leaves the last checkpoint readable, its checksums intact.
      if [ -e "$dir/checkpoint-last.h5" ] && ! contents "$dir/checkpoint-last.h5" >/dev/null; then
        fail "$dir: checkpoint-last.h5 does not verify after a kill ${delay} s into a start"
      fi
    done
    "${launch[@]}" "${args[@]}" --run-dir "$dir" --resume auto >"$dir.last.log" 2>&1 || fail "$dir: the last resume"
    same_checkpoints "$dir" "$reference"
    rerun_finished "$dir" "$reference" "${launch[@]}"
  done
  echo "$round runs, $starts starts, each run rerun once finished"
}

# rerun_finished DIR REFERENCE LAUNCH...: the same command again on the finished run (a requeued job does this) says
# it finished, exits 0, and changes no weight: both checkpoints still REFERENCE's, the status `finished`.
rerun_finished() {
  local dir=$1 reference=$2 a=() x
  shift 2
  for x in "${args[@]}"; do [ "$x" = -q ] || a+=("$x"); done  # not quiet: it says why it does nothing
  "$@" "${a[@]}" --run-dir "$dir" --resume auto >"$dir.rerun.log" 2>&1 || fail "$dir: the rerun of a finished run"
  grep -q "already finished" "$dir.rerun.log" || fail "$dir: the rerun did not say the run had finished"
  same_checkpoints "$dir" "$reference"
  [ "$(head -1 "$dir/status")" = finished ] || fail "$dir: status $(head -1 "$dir/status") after the rerun"
}

# same_checkpoints DIR REFERENCE: both checkpoints of DIR hold REFERENCE's datasets bit for bit.
same_checkpoints() {
  local name
  for name in checkpoint-last.h5 checkpoint-best.h5; do
    [ "$(contents "$1/$name")" = "$(contents "$2/$name")" ] || fail "$1/$name differs from the uninterrupted run's"
  done
}

start=$(date +%s.%N)
"$SERTRAIN" "${args[@]}" --run-dir straight || fail "the uninterrupted run"
span=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')

# The kill between the two checkpoint writes, at the last epoch that improves (found from the straight run's
# history), then random kills of the resumes.
improvements=$(awk -F, 'NR > 1 && $5 > best {best = $5; n++} END {print n}' straight/history.csv)
{ (SERTRAIN_FAULT=between-checkpoints:$improvements exec "$SERTRAIN" "${args[@]}" --run-dir killed >/dev/null); } \
  2>/dev/null && fail "the fault point between the two checkpoint writes did not kill the run"
"$SERTRAIN" "${args[@]}" --run-dir killed --resume auto >/dev/null || fail "the resume after the planned kill"
same_checkpoints killed straight
# The kill right after the final checkpoint (weights final, history and status not yet written), then the same
# command again, twice: the run is finished, nothing changes.
{ (SERTRAIN_FAULT=final-checkpoint:1 exec "$SERTRAIN" "${args[@]}" --run-dir final --resume auto >/dev/null); } \
  2>/dev/null && fail "the fault point after the final checkpoint did not kill the run"
[ "$(head -1 final/status)" = running ] || fail "final: status $(head -1 final/status) after the kill"
same_checkpoints final straight
rerun_finished final straight "$SERTRAIN"
rerun_finished final straight "$SERTRAIN"
runs=$(kill_trials 1 killed "$kills" "$span")
pass "1 rank: 1 kill between the checkpoint writes, 1 after the final checkpoint, and $kills random kills in $runs (a run takes $span s), resumed: both checkpoints bit for bit the uninterrupted run's; the reruns of finished runs (2 after the final-checkpoint kill) changed nothing"

if ! command -v mpirun >/dev/null; then
  skip "faults on 2 ranks" "no mpirun"
  exit 0
fi
start=$(date +%s.%N)
mpirun -n 2 --bind-to none "$SERTRAIN" "${args[@]}" --run-dir straight2 || fail "the uninterrupted 2-rank run"
span=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.2f", e - s}')
n2=$(((kills + 1) / 2))
runs=$(kill_trials 2 killed2 "$n2" "$span")
hangs=""
if [ -s launcher-hangs ]; then
  hangs="; mpirun hung after its ranks had ended $(wc -l <launcher-hangs) time(s) (OpenMPI's finalize) and was killed"
fi
pass "2 ranks: $n2 random kills of one rank in $runs (a run takes $span s), resumed: both checkpoints bit for bit the uninterrupted run's, and the same command on each finished run changed nothing$hangs"
