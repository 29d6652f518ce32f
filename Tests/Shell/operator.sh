#!/usr/bin/env bash
# shellcheck disable=SC2015 # `check && check || fail`: fail exits, so it is an if-then-else here
# What an operator meets on one machine: output to a file, stop signals (early, through the Launch scripts, to
# mpirun itself), --resume auto, resume flags that contradict the run, other data, extending a finished run, and two
# runs on one directory. SERTRAIN_TRIALS sets the number of trials of each signal test (default 10).
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
trials=${SERTRAIN_TRIALS:-10}
make_features f.h5 600 1536
make_features small.h5 120 64

# Output to a file: line-buffered epoch lines (each within 2 s of its epoch's end), plain progress lines.
(exec "$SERTRAIN" train --data f.h5 --model tiny --epochs 4 --batch-size 1 --run-dir file --progress-every 0.3 \
  >file.log 2>&1) &
run=$!
watch_epoch_lines file.log &
watcher=$!
wait "$run" || fail "train with output to a file"
kill "$watcher"
worst=$(epoch_line_lateness file file.log) || fail "epoch lines in file.log before their epochs ended, or none"
seconds=$(awk -F, 'NR > 1 {s += $7} END {printf "%.1f", s}' file/history.csv)
awk -v w="$worst" 'BEGIN {exit !(w <= 2.0)}' || fail "epoch lines reached the file up to $worst s late"
grep -qE "^  epoch 1/4, step [0-9]+/[0-9]+: [0-9.]+ samples/s, loss [0-9.]+ - accuracy [0-9.]+$" file.log \
  || { cat file.log; fail "no plain progress line in the log file"; }
grep -q $'\r' file.log && fail "a carriage-return progress bar in the log file"
pass "output to a file: 4 epochs ($seconds s of training), each epoch line in the file at most $worst s after its epoch ended; plain progress lines, no bar"

# Early signals: at a random moment in the first 100 ms after sertrain's first instruction, TERM or USR1 never kills
# it; it exits 75 (stopped) or 0 (done).
outcomes=""
for trial in $(seq 1 "$trials"); do
  sig=$([ $((trial % 2)) -eq 0 ] && echo USR1 || echo TERM)
  delay=$(awk -v s="$trial" 'BEGIN {srand(s); printf "%.3f", rand() * 0.1}')
  "$SERTRAIN" train --data small.h5 --model tiny --epochs 2 --batch-size 8 --run-dir "early-$trial" -q &
  pid=$!
  # The first instruction: the stop handlers, installed before main (SigCgt shows SIGTERM caught).
  for _ in $(seq 1 2000); do
    caught=$(awk '/^SigCgt/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    [ $((0x${caught:-0} & 0x4000)) -ne 0 ] && break
  done
  sleep "$delay"
  kill -"$sig" "$pid" 2>/dev/null || true
  code=0
  wait "$pid" || code=$?
  outcomes+="$code "
  case "$code" in 0 | 75) ;; *) fail "$sig after $delay s: exit $code (trial $trial)" ;; esac
done
pass "early TERM/USR1 in the first 100 ms: $(echo "$outcomes" | tr ' ' '\n' | grep . | sort | uniq -c | awk '{printf "%s%d x exit %d", (NR > 1 ? ", " : ""), $1, $2}') in $trials of $trials trials, never by the signal"

# SIGTERM to the job (the Launch script, as sbatch's --signal=B:, qdel or a terminal send it): 75 and a checkpoint.
# launch RUN_DIR GRACE: Launch/local.sh in this (sub)shell's place, so that its PID is the script's.
launch() {
  exec env SERTRAIN="$SERTRAIN" DATA=f.h5 MODEL=tiny EPOCHS=500 RANKS=2 THREADS=1 RUN_DIR="$1" GRACE="$2" \
    EXTRA="--batch-size 8 --patience 1000 -q" bash "$ROOT/Launch/local.sh" >"$1.log" 2>&1
}
stopped_ok() { [ "$(cat "$1/status")" = stopped ] && "$SERTRAIN" inspect "$1/checkpoint-last.h5" >/dev/null; }
t0=$(date +%s)
for trial in $(seq 1 "$trials"); do
  (launch "script-$trial" 60) &
  job=$!
  wait_for_file "script-$trial/checkpoint-last.h5" 60 || fail "no checkpoint (trial $trial)"
  kill -TERM "$job"
  code=0
  wait "$job" || code=$?
  [ "$code" -eq 75 ] && stopped_ok "script-$trial" || fail "TERM to Launch/local.sh: exit $code (trial $trial)"
done
pass "SIGTERM to Launch/local.sh (mpirun -n 2, grace 60 s): exit 75 and a checkpoint in $trials of $trials trials, $(($(date +%s) - t0)) s"
# On a terminal (a pty from script(1)): the progress bar shows the running loss and accuracy, as Keras's does.
if command -v script >/dev/null; then
  script -q -e -c "'$SERTRAIN' train --data f.h5 --model tiny --epochs 2 --batch-size 4 --run-dir tty --monitor loss" \
    /dev/null >tty.log 2>&1 || { cat tty.log; fail "train on a terminal"; }
  tr '\r' '\n' <tty.log | grep -qE "epoch 1/2 \[[#.]+\] [0-9]+% [0-9]+ samples/s - loss [0-9.]+ - accuracy [0-9.]+" \
    || { cat -v tty.log | head -5; fail "the progress bar shows no running loss and accuracy"; }
  pass "on a terminal the progress bar shows the running loss and accuracy"
else
  skip "the progress bar on a terminal" "no script(1)"
fi

# Not quiet: rank 0 says the stop was clean before mpirun's own message that the job was aborted with exit code 75.
(exec env SERTRAIN="$SERTRAIN" DATA=f.h5 MODEL=tiny EPOCHS=500 RANKS=2 THREADS=1 RUN_DIR=loud GRACE=60 \
  EXTRA="--batch-size 8 --patience 1000 --progress-every 0" bash "$ROOT/Launch/local.sh" >loud.log 2>&1) &
job=$!
wait_for_file loud/checkpoint-last.h5 60 || fail "no checkpoint (loud)"
kill -TERM "$job"
code=0
wait "$job" || code=$?
[ "$code" -eq 75 ] && grep -q "message that the job was aborted with exit code 75 follows: the stop was clean" loud.log \
  || { cat loud.log; fail "the stop under mpirun did not say it was clean: exit $code"; }
pass "a stop under mpirun says it was clean before mpirun's abort message"

# SIGTERM to mpirun itself: it SIGTERMs the ranks after the grace (SIGCONT first, then a sleep), and exits 1
# after a second grace whatever they did; the ranks stop at the next step and write the checkpoint, and the script
# reads the run's status to exit 75. A short grace keeps the trials short: mpirun takes two of them to exit.
t0=$(date +%s)
for trial in $(seq 1 "$trials"); do
  (launch "mpirun-$trial" 2) &
  job=$!
  wait_for_file "mpirun-$trial/checkpoint-last.h5" 60 || fail "no checkpoint (trial $trial)"
  kill -TERM "$(pgrep -P "$job" -x mpirun)"
  code=0
  wait "$job" || code=$?
  [ "$code" -eq 75 ] && stopped_ok "mpirun-$trial" || fail "TERM to mpirun: exit $code (trial $trial)"
done
pass "SIGTERM to mpirun itself (grace 2 s): exit 75 and a checkpoint in $trials of $trials trials, $(($(date +%s) - t0)) s"

# --resume auto without --run-dir: the newest unfinished run by its checkpoint's time, whatever the names say.
mkdir runs
stop_after_checkpoint() {
  ("$SERTRAIN" train --data small.h5 --model tiny --epochs 300 --patience 1000 --batch-size 8 --run-dir "$1" -q) &
  local p=$!
  wait_for_file "$1/checkpoint-last.h5" 30 || fail "no checkpoint in $1"
  kill -USR1 "$p"
  local code=0
  wait "$p" || code=$?
  [ "$code" -eq 75 ] || fail "USR1: exit $code, expected 75"
}
stop_after_checkpoint runs/mmm-older
stop_after_checkpoint runs/aaa-newer
"$SERTRAIN" train --data small.h5 --model tiny --epochs 2 --batch-size 8 --run-dir runs/zzz-finished -q
before=$("$SERTRAIN" inspect runs/mmm-older/checkpoint-last.h5 | awk '/digest/ {print $2}')
"$SERTRAIN" train --data small.h5 --model tiny --epochs 3 --resume auto >auto.log 2>&1 || { cat auto.log; fail "--resume auto"; }
grep -q "^--resume auto: runs/aaa-newer is the newest unfinished run" auto.log || { cat auto.log; fail "--resume auto chose another run"; }
[ "$(cat runs/aaa-newer/status)" = finished ] && [ "$(cat runs/mmm-older/status)" = stopped ] \
  && [ "$before" = "$("$SERTRAIN" inspect runs/mmm-older/checkpoint-last.h5 | awk '/digest/ {print $2}')" ] \
  || fail "--resume auto: the wrong run changed"
pass "--resume auto takes the newest unfinished run by its checkpoint's time (runs/aaa-newer, not runs/zzz-finished or runs/mmm-older) and says why"

# Resume flags that contradict the checkpoint: one line each, nothing changed.
stop_after_checkpoint flags
digest_before=$("$SERTRAIN" inspect flags/checkpoint-last.h5 | awk '/digest/ {print $2}')
code=0
"$SERTRAIN" train --data small.h5 --run-dir flags --resume auto --model seed --seed 9 --batch-size 16 \
  --learning-rate 0.01 --no-standardize >flags.log 2>&1 || code=$?
[ "$code" -eq 1 ] || fail "contradicting flags: exit $code"
for flag in "--model seed" "--seed 9" "--batch-size 16" "--learning-rate 0.01" "--no-standardize"; do
  grep -q -- "$flag contradicts the run being resumed" flags.log || { cat flags.log; fail "no line for $flag"; }
done
[ "$(grep -c "contradicts" flags.log)" -eq 5 ] || fail "expected one line per contradicting flag"
"$SERTRAIN" train --data small.h5 --run-dir flags --resume auto --batch-size 8 --epochs 300 -q &
p=$!
sleep 0.3
kill -USR1 "$p"
wait "$p" || true  # flags that agree (--batch-size 8) are accepted
[ "$digest_before" != "$("$SERTRAIN" inspect flags/checkpoint-last.h5 | awk '/digest/ {print $2}')" ] \
  || fail "the agreeing resume did not train"
pass "resume refuses each contradicting flag (--model, --seed, --batch-size, --learning-rate, --no-standardize) with one line each; agreeing flags pass"

# Other data with the same row count and labels: refused by content.
cp small.h5 same.h5
awk 'BEGIN { srand(4) } NR == 1 { print; next } { n = split($0, c, ","); for (i = 1; i < n; i++) printf "%.4f,", c[i] + rand() * 0.01; print c[n] }' \
  make-features.csv >other.csv
"$SERTRAIN" convert other.csv -o other.h5 >/dev/null
code=0
"$SERTRAIN" train --data other.h5 --run-dir flags --resume auto -q >data.log 2>&1 || code=$?
[ "$code" -eq 1 ] && grep -q "is not the data the run in flags/checkpoint-last.h5 trained on: its feature values differ" \
  data.log || { cat data.log; fail "other data (same rows and labels) was not refused: exit $code"; }
pass "resume identifies the data by content: another extract with the same rows and labels is refused"

# A finished run continues with more epochs (Keras's initial_epoch); the same count only says it finished.
"$SERTRAIN" train --data small.h5 --run-dir runs/zzz-finished --resume auto --epochs 2 >same.log
grep -q "already finished (epoch 2 of 2)" same.log || fail "the finished run did not say so"
"$SERTRAIN" train --data small.h5 --run-dir runs/zzz-finished --resume auto --epochs 4 >more.log
grep -q "continuing the finished run from epoch 2 to 4" more.log && [ "$(grep -c . runs/zzz-finished/history.csv)" -eq 5 ] \
  || { cat more.log; fail "--epochs 4 did not continue the finished run"; }
pass "--epochs 4 on a finished 2-epoch run continues it to epoch 4; --epochs 2 says it already finished"

# Two runs on one directory: the second refuses, naming the holder.
("$SERTRAIN" train --data small.h5 --model tiny --epochs 300 --patience 1000 --batch-size 8 --run-dir busy -q) &
first=$!
wait_for_file busy/checkpoint-last.h5 30 || fail "no checkpoint in busy"
code=0
"$SERTRAIN" train --data small.h5 --model tiny --epochs 2 --run-dir busy -q 2>busy.log || code=$?
kill -USR1 "$first"
wait "$first" || true
[ "$code" -eq 1 ] && grep -qE "busy is in use by pid $first on host $(hostname)" busy.log \
  || { cat busy.log; fail "a second run on a locked directory: exit $code"; }
pass "a second train on a run directory in use refuses, naming the holder's PID and host"
