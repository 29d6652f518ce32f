#!/usr/bin/env bash
# TensorBoard (issue 31, item 3): a run's event files, read back by TensorBoard's own reader (EventAccumulator from
# the `tensorboard` package, in a virtual environment made on first use: SERTRAIN_TENSORBOARD_VENV, default
# ~/.cache/sertrain/tensorboard-venv; without PyPI the test skips): every epoch's loss, accuracy and learning rate
# under Keras's tags in train/ and validation/, equal to history.csv's, and the running loss every N steps; a resumed
# run adds its epochs.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
venv=${SERTRAIN_TENSORBOARD_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sertrain/tensorboard-venv}
if ! "$venv/bin/python" -c "import tensorboard" 2>/dev/null; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q tensorboard; } >pip.log 2>&1; then
    skip "TensorBoard event files" "cannot install tensorboard into $venv: $(tail -1 pip.log)"
    exit 0
  fi
fi
make_features f.h5 160 64 --rows-per-recording 4
args=(train --data f.h5 --model tiny --batch-size 8 --patience 100 --run-dir r --tensorboard-every 5 -q)
"$SERTRAIN" "${args[@]}" --epochs 3 || fail "training"
"$SERTRAIN" "${args[@]}" --epochs 5 --resume auto || fail "the resumed run"
cat >read.py <<'EOF'
import csv, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
history = list(csv.DictReader(open("r/history.csv")))
def scalars(part, tag):
    acc = EventAccumulator(f"r/tensorboard/{part}")
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}
checks = 0
for part, tag, column in [("train", "epoch_loss", "loss"), ("train", "epoch_accuracy", "accuracy"),
                          ("train", "epoch_learning_rate", "learning_rate"), ("validation", "epoch_loss", "val_loss"),
                          ("validation", "epoch_accuracy", "val_accuracy")]:
    got = scalars(part, tag)
    assert sorted(got) == list(range(len(history))), (tag, sorted(got))
    for row in history:
        want, have = float(row[column]), got[int(row["epoch"]) - 1]
        assert abs(have - want) <= 1e-6 * max(1, abs(want)), (tag, row["epoch"], have, want)
        checks += 1
batch = scalars("train", "batch_loss")
assert batch and all(step % 5 == 0 for step in batch), sorted(batch)
print(f"{len(history)} epochs, {checks} epoch scalars equal to history.csv, {len(batch)} batch_loss points")
EOF
line=$("$venv/bin/python" read.py 2>&1 | tail -1) || fail "TensorBoard's reader: $line"
pass "TensorBoard reads the run's event files (train/ and validation/, Keras's tags) after a resume: $line"
