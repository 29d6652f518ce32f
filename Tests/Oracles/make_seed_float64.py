#!/usr/bin/env python3
"""The seed model's reference numbers in float64: a compact exact oracle beside the shared float32 golden file.

Why: in training mode the seed model at batch 4 is ill-conditioned (BatchNorm over channels with variance
down to 6e-6, a Dense unit dead on all four rows), so float32 rounding alone moves TensorFlow's own gradients by
up to 3% of a tensor's largest value (TensorFlow in float32 re-run here, or in float64, differs from
`keras-golden.h5` that much). Comparing a float32 implementation with float64 Keras on the same weights isolates
the implementation's own error, which for a faithful one is ~1e-4 relative to each tensor's largest value.

Reads `seed/initial`, `seed/x`, `seed/labels` from ../shared/reference/keras-golden.h5 and writes OUT.h5 with:
  probs_train (B, K), loss              training-mode forward with the initial weights, float64
  grads/<layer>/<var>/{index,value,max_abs}  512 sampled elements of each gradient (flat index, value) and the
                                        tensor's largest |value|
  probs_infer (B, K)                    inference after one Adam step (lr 1e-3, epsilon 1e-7), float64
Usage: KERAS_BACKEND=tensorflow python make_seed_float64.py GOLDEN.h5 OUT.h5  (pip install tensorflow-cpu h5py)
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

keras.config.set_floatx("float64")
golden = h5py.File(sys.argv[1], "r")
g = golden["seed"]
cfg = json.loads(g.attrs["config"])
seq = [keras.Input(shape=(cfg["length"], 1))]
for i, (f, k, p) in enumerate(zip(cfg["filters"], cfg["kernels"], cfg["pools"])):
    seq += [layers.Conv1D(f, k, padding="same", activation="relu", name=f"conv{i+1}"),
            layers.BatchNormalization(name=f"bn{i+1}"),
            layers.MaxPooling1D(pool_size=p, strides=2, padding="same", name=f"pool{i+1}")]
n = len(cfg["filters"])
seq += [layers.Flatten(name="flatten"), layers.Dense(cfg["dense"], activation="relu", name="dense1"),
        layers.BatchNormalization(name=f"bn{n+1}"), layers.Dense(cfg["classes"], activation="softmax", name="dense2")]
model = keras.Sequential(seq)
for layer in model.layers:
    for v in layer.weights:
        v.assign(g[f"initial/{layer.name}/{v.name}"][()].astype(np.float64))
x = g["x"][()].astype(np.float64)[..., None]
y = np.eye(cfg["classes"])[g["labels"][()]]
with tf.GradientTape() as tape:
    probs = model(x, training=True)
    loss = keras.losses.CategoricalCrossentropy()(y, probs)
grads = tape.gradient(loss, model.trainable_variables)
rng = np.random.default_rng(7)
with h5py.File(sys.argv[2], "w") as out:
    out.attrs["keras"], out.attrs["tensorflow"] = keras.__version__, tf.__version__
    out["probs_train"], out["loss"] = probs.numpy(), float(loss)
    for v, d in zip(model.trainable_variables, grads):
        flat = d.numpy().ravel()
        index = np.sort(rng.choice(flat.size, size=min(512, flat.size), replace=False))
        name = "/".join(v.path.split("/")[-2:])
        out[f"grads/{name}/index"] = index.astype(np.int64)
        out[f"grads/{name}/value"] = flat[index]
        out[f"grads/{name}/max_abs"] = float(np.abs(flat).max())
    opt = keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    out["probs_infer"] = model(x, training=False).numpy()
print("wrote", sys.argv[2])
