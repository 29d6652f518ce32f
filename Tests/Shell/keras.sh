#!/usr/bin/env bash
# Keras 3 itself (issue 18): a sertrain checkpoint exported as .keras loads with keras.models.load_model and its
# probabilities on raw feature rows equal `sertrain predict` (within 1e-5), the scaler riding in a leading
# Normalization layer; and a .keras that Keras saved (with a Normalization first) imports into a checkpoint that
# predicts as Keras does. Keras runs on the JAX backend (the smallest install), from a virtual environment made on
# first use (SERTRAIN_KERAS_VENV, default ~/.cache/sertrain/keras-venv); without PyPI the test skips.
# shellcheck source=Tests/Shell/lib.sh
source "$(dirname "$0")/lib.sh"
cd "$WORK" || exit 1
venv=${SERTRAIN_KERAS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/sertrain/keras-venv}
if ! "$venv/bin/python" -c "import keras, jax, h5py" 2>/dev/null; then
  if ! { python3 -m venv "$venv" && "$venv/bin/pip" install -q "keras==3.15.1" "jax[cpu]" h5py; } >pip.log 2>&1; then
    skip "Keras 3 round trip" "cannot install keras and jax into $venv: $(tail -1 pip.log)"
    exit 0
  fi
fi
export KERAS_BACKEND=jax TF_CPP_MIN_LOG_LEVEL=3
# Rows far from standard (an offset and a scale per column), so that a missing or wrong scaler shows.
awk 'BEGIN { srand(5); for (i = 0; i < 48; i++) printf "%d,", i; print "labels";
  for (r = 0; r < 90; r++) { c = r % 3; for (t = 0; t < 48; t++) printf "%.4f,", 100 * t + (t + 1) * (sin(0.2 * (c + 1) * t) + rand());
  print (c == 0 ? "angry" : c == 1 ? "calm" : "sad") } }' >f.csv
"$SERTRAIN" convert f.csv -o f.h5 --rows-per-recording 3 >/dev/null
"$SERTRAIN" train --data f.h5 --model tiny --epochs 3 --batch-size 16 --run-dir run -q >/dev/null
"$SERTRAIN" export-keras run/checkpoint-last.h5 -o model.keras >/dev/null
"$SERTRAIN" predict --checkpoint run/checkpoint-last.h5 --features f.h5 --csv >sertrain.csv

cat >compare.py <<'EOF'
import csv, sys
import h5py, keras, numpy as np
model_path, features, predictions = sys.argv[1:4]
model = keras.models.load_model(model_path)
assert type(model.layers[0]).__name__ == "Normalization", [type(l).__name__ for l in model.layers]
x = h5py.File(features, "r")["features"][:]
p = model.predict(x.reshape(len(x), -1, 1), verbose=0)
rows = list(csv.reader(open(predictions)))
k = p.shape[1]
s = np.array([[float(v) for v in r[2:2 + k]] for r in rows[1:]])
diff = float(np.abs(p - s).max())
print(f"{len(x)} rows x {k} classes, largest difference {diff:.2e}")
sys.exit(0 if diff <= 1e-5 else 1)
EOF
line=$("$venv/bin/python" compare.py model.keras f.h5 sertrain.csv 2>&1 | tail -1) \
  || fail "Keras 3 predicts sertrain's .keras export differently: $line"
pass "sertrain's .keras in Keras 3 (load_model, JAX backend): $line from sertrain predict on raw rows"

# The .keras is ready to fine-tune: named after the model, compiled as the run trained, with the run's Adam (its
# step count, learning rate and moments, which Keras loads without a warning), and `fit` takes a step.
cat >fit.py <<'EOF'
import json, sys, warnings, zipfile
import h5py, keras, numpy as np
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    model = keras.models.load_model(sys.argv[1])
assert not [w for w in said if "optimizer" in str(w.message)], [str(w.message) for w in said]
assert model.name == "tiny", model.name
assert type(model.optimizer).__name__ == "Adam" and model.loss == "categorical_crossentropy", (model.optimizer, model.loss)
c = h5py.File(sys.argv[3], "r")
adam = model.optimizer
assert int(adam.iterations) == c.attrs["optimizer_iterations"] > 0, (int(adam.iterations), c.attrs["optimizer_iterations"])
assert np.isclose(float(adam.learning_rate), c.attrs["learning_rate"]), float(adam.learning_rate)
for i, name in ((2, "m"), (3, "v")):  # each trainable variable's momentum, then its velocity, in the model's order
    mine = np.concatenate([np.ravel(np.asarray(x)) for x in adam.variables[i::2]])
    assert np.array_equal(mine, c["optimizer/" + name][:]), f"Adam's {name} differs from the checkpoint's"
names = json.loads(zipfile.ZipFile(sys.argv[1]).read("metadata.json"))["class_names"]
f = h5py.File(sys.argv[2], "r")
x, y = f["features"][:], f["labels"][:]
before = model.predict(x[:16].reshape(16, -1, 1), verbose=0)
history = model.fit(x[:16].reshape(16, -1, 1), np.eye(len(names))[y[:16]], batch_size=16, epochs=1, verbose=0)
after = model.predict(x[:16].reshape(16, -1, 1), verbose=0)
assert float(np.abs(after - before).max()) > 0, "fit changed nothing"
print(f"model {model.name}, classes {names}, one fit step: loss {history.history['loss'][0]:.4f}")
EOF
line=$("$venv/bin/python" fit.py model.keras f.h5 run/checkpoint-last.h5 2>&1 | tail -1) \
  || fail "Keras could not fit sertrain's .keras: $line"
pass "sertrain's .keras is named, compiled with the run's Adam state and fits in Keras 3: $line"

# A model Keras made and saved, a Normalization adapted to data first: import it, predict, compare.
cat >make.py <<'EOF'
import sys
import h5py, keras, numpy as np
x = h5py.File(sys.argv[1], "r")["features"][:].reshape(-1, 48, 1)
norm = keras.layers.Normalization(axis=1)
norm.adapt(x)
model = keras.Sequential([keras.Input((48, 1)), norm, keras.layers.Conv1D(8, 5, padding="same", activation="relu"),
    keras.layers.BatchNormalization(), keras.layers.MaxPooling1D(2, strides=2, padding="same"),
    keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
y = h5py.File(sys.argv[1], "r")["labels"][:]
model.fit(x, y, epochs=2, verbose=0)
model.save(sys.argv[2])
EOF
"$venv/bin/python" make.py f.h5 keras-made.keras >make.log 2>&1 || { cat make.log; fail "Keras could not make its model"; }
"$SERTRAIN" import-keras keras-made.keras -o imported.h5 --classes angry,calm,sad >import.log 2>&1 \
  || { cat import.log; fail "import-keras of a Keras-made .keras"; }
grep -q "scaler from its Normalization layer" import.log || fail "the adapted Normalization was not taken as the scaler"
grep -q "warning" import.log && fail "a warning on a model that carries its scaler: $(cat import.log)"
"$SERTRAIN" predict --checkpoint imported.h5 --features f.h5 --csv >imported.csv
line=$("$venv/bin/python" compare.py keras-made.keras f.h5 imported.csv 2>&1 | tail -1) \
  || fail "sertrain predicts a Keras-made .keras differently from Keras: $line"
pass "a .keras Keras saved (adapted Normalization first) imports: $line from Keras's own predict"

# The frames model's layers (Reshape, the global poolings, Dropout after them), both ways.
cat >frames.json <<'EOF'
{"name": "frames", "input_length": 48, "layers": [{"type": "Reshape", "target_shape": [12, 4]},
  {"type": "Conv1D", "filters": 8, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
  {"type": "MaxPooling1D", "pool_size": 2}, {"type": "Conv1D", "filters": 8, "kernel_size": 3, "activation": "relu"},
  {"type": "BatchNormalization"}, {"type": "GlobalAveragePooling1D"}, {"type": "Dropout", "rate": 0.3},
  {"type": "Dense", "units": 8, "activation": "relu"}, {"type": "Dense", "activation": "softmax"}]}
EOF
"$SERTRAIN" train --data f.h5 --model frames.json --epochs 3 --batch-size 16 --run-dir frames -q >/dev/null \
  || fail "training the frames spec"
"$SERTRAIN" export-keras frames/checkpoint-last.h5 -o frames.keras >/dev/null
"$SERTRAIN" predict --checkpoint frames/checkpoint-last.h5 --features f.h5 --csv >frames.csv
line=$("$venv/bin/python" compare.py frames.keras f.h5 frames.csv 2>&1 | tail -1) \
  || fail "Keras 3 predicts sertrain's frames model differently: $line"
pass "a frames model (Reshape, GlobalAveragePooling1D) exported as .keras, in Keras 3: $line from sertrain predict"
cat >make-frames.py <<'EOF'
import sys
import h5py, keras, numpy as np
x = h5py.File(sys.argv[1], "r")["features"][:].reshape(-1, 48, 1)
norm = keras.layers.Normalization(axis=1)
norm.adapt(x)
L = keras.layers
model = keras.Sequential([keras.Input((48, 1)), norm, L.Reshape((12, 4)), L.Conv1D(8, 3, padding="same", activation="relu"),
    L.BatchNormalization(), L.MaxPooling1D(2, strides=2, padding="same"), L.Conv1D(8, 3, padding="same", activation="relu"),
    L.GlobalMaxPooling1D(), L.Dense(3, activation="softmax")])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x, h5py.File(sys.argv[1], "r")["labels"][:], epochs=2, verbose=0)
model.save(sys.argv[2])
EOF
"$venv/bin/python" make-frames.py f.h5 keras-frames.keras >make.log 2>&1 || { cat make.log; fail "Keras could not make its frames model"; }
"$SERTRAIN" import-keras keras-frames.keras -o imported-frames.h5 --classes angry,calm,sad >import.log 2>&1 \
  || { cat import.log; fail "import-keras of a Keras-made frames model"; }
"$SERTRAIN" predict --checkpoint imported-frames.h5 --features f.h5 --csv >imported-frames.csv
line=$("$venv/bin/python" compare.py keras-frames.keras f.h5 imported-frames.csv 2>&1 | tail -1) \
  || fail "sertrain predicts a Keras-made frames model differently from Keras: $line"
pass "a .keras Keras saved with Reshape and GlobalMaxPooling1D imports: $line from Keras's own predict"

# A model made in Keras, imported, trains on in sertrain (--init-from): its weights are the run's first ones.
"$SERTRAIN" train --data f.h5 --init-from imported-frames.h5 --epochs 1 --batch-size 16 --run-dir tuned >tuned.log 2>&1 \
  || { cat tuned.log; fail "train --init-from an imported Keras model"; }
grep -q "starting from imported-frames.h5: every layer's weights" tuned.log \
  || fail "train --init-from did not say it took the imported weights: $(head -3 tuned.log)"
pass "a Keras-made model imported and trained on in sertrain (--init-from): $(grep -o 'val_accuracy [0-9.]*' tuned.log)"
