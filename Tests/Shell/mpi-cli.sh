#!/usr/bin/env bash
# sertrain itself under mpirun on one machine: uneven shards, a rank killed mid-run, ser-mini on 2 ranks, and the
# HTML report rendered in headless Chromium.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
make_features f.h5 101 64

timeout 300 mpirun -n 3 --bind-to none "$SERTRAIN" train --data f.h5 --model tiny --epochs 3 --batch-size 8 \
  --split random --run-dir uneven -q || fail "mpirun -n 3 train"
[ "$(wc -l <uneven/history.csv)" -eq 4 ] || fail "3 ranks: expected 3 epochs of history"
pass "mpirun -n 3 train on 101 rows: 3 epochs, history written"

# evaluate on 3 ranks counts what one process counts (the loss aside: its sum's order differs), the original rows'
# and each augmentation's figures included.
make_features g.h5 120 64 --rows-per-recording 4
"$SERTRAIN" evaluate --checkpoint uneven/checkpoint-last.h5 --data g.h5 --split all >eval-1.txt \
  || fail "evaluate on one process"
timeout 120 mpirun -n 3 --bind-to none "$SERTRAIN" evaluate --checkpoint uneven/checkpoint-last.h5 --data g.h5 \
  --split all >eval-3.txt || fail "mpirun -n 3 evaluate"
grep -q "original rows alone (.*): 30 rows" eval-1.txt || { cat eval-1.txt; fail "evaluate: no original rows' line"; }
diff <(sed 's/loss [0-9.]*, //' eval-1.txt) <(sed 's/loss [0-9.]*, //' eval-3.txt) \
  || fail "evaluate on 3 ranks differs from one process"
pass "mpirun -n 3 evaluate: the same counts as one process, the original rows' too"

(exec mpirun -n 2 --bind-to none "$SERTRAIN" train --data f.h5 --model tiny --epochs 500 --patience 1000 \
  --batch-size 8 --run-dir killed -q >killed.log 2>&1) &
launcher=$!
wait_for_file killed/checkpoint-last.h5 30 || fail "killed run: no checkpoint after 30 s"
victim=$(sertrain_pids "--run-dir killed" | tail -1)
[ -n "$victim" ] || fail "no rank process found to kill"
kill -9 "$victim"
if wait "$launcher"; then fail "a killed rank must fail the job"; fi
"$SERTRAIN" inspect killed/checkpoint-last.h5 >/dev/null || fail "the last checkpoint does not open"
pass "a rank killed mid-run: the job exits non-zero and the last checkpoint opens"

mini=$SERTRAIN_SHARED/datasets/ser-mini
if [ -d "$mini" ]; then
  # Every recording of ser-mini, four rows each, on 2 ranks (the rows do not depend on the rank count: MPI suite).
  timeout 900 mpirun -n 2 --bind-to none "$SERTRAIN" extract "$mini" -o ser-mini.h5 -q >extract.log \
    || { cat extract.log; fail "extract ser-mini"; }
  "$SERTRAIN" inspect ser-mini.h5 >inspect.log
  if ! grep -q "rows          5704 x 2376" inspect.log || ! grep -q "1426 (4 rows each), 8 speakers" inspect.log \
    || grep -q skipped extract.log; then
    cat extract.log inspect.log
    fail "ser-mini: expected 4 x 1,426 rows, 8 speakers, nothing skipped"
  fi
  pass "mpirun -n 2 extract ser-mini: 1,426 recordings, 5,704 rows, 8 speakers, nothing skipped"
else
  skip "mpirun -n 2 extract ser-mini" "$mini is not present"
fi

"$SERTRAIN" report uneven >/dev/null || fail "sertrain report"
if command -v chromium >/dev/null; then
  chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --hide-scrollbars --window-size=1000,1250 \
    --screenshot="$WORK/report.png" "file://$WORK/uneven/report.html" >/dev/null 2>&1 || true
  size=$(stat -c %s report.png 2>/dev/null || echo 0)
  [ "$size" -gt 20000 ] || fail "the report did not render (screenshot: $size bytes)"
  if ! grep -q "<svg" uneven/report.html || ! grep -q "Confusion matrix" uneven/report.html; then
    fail "the report lacks its charts"
  fi
  pass "report.html renders in headless Chromium ($size-byte screenshot)"
else
  skip "report.html in headless Chromium" "chromium is not installed"
fi
