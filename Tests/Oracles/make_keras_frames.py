#!/usr/bin/env python3
"""Keras reference numbers for the layers of the frames model: Reshape, GlobalAveragePooling1D and
GlobalMaxPooling1D, in small models of the frames preset's shape, as ../shared/reference/make_keras_golden.py
writes them for the seed's layer types (same group layout; each group's `spec` attribute is the sertrain spec).

  avg, max: Input (36, 1) -> Reshape (9, 4) -> Conv1D 6 (3, same, relu) -> BatchNorm -> MaxPooling1D (2, same)
            -> Conv1D 5 (3, same, relu) -> BatchNorm -> GlobalAveragePooling1D | GlobalMaxPooling1D
            -> Dense 7 relu -> Dense 3 softmax; batch 5, three Adam steps on the same batch.
Training: Adam(1e-3, epsilon 1e-7), categorical cross-entropy, BatchNormalization(momentum 0.99, epsilon 1e-3).

Usage: KERAS_BACKEND=tensorflow python make_keras_frames.py OUT.h5   (needs tensorflow-cpu, keras 3, h5py)
"""
import json
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import h5py
import keras
import numpy as np
import tensorflow as tf
from keras import layers


def build(pooling, seed):
    keras.utils.set_random_seed(seed)
    pool = layers.GlobalAveragePooling1D(name="global_avg1") if pooling == "avg" else \
        layers.GlobalMaxPooling1D(name="global_max1")
    return keras.Sequential([
        keras.Input(shape=(36, 1)), layers.Reshape((9, 4), name="reshape1"),
        layers.Conv1D(6, 3, padding="same", activation="relu", name="conv1"), layers.BatchNormalization(name="bn1"),
        layers.MaxPooling1D(2, strides=2, padding="same", name="pool1"),
        layers.Conv1D(5, 3, padding="same", activation="relu", name="conv2"), layers.BatchNormalization(name="bn2"),
        pool, layers.Dense(7, activation="relu", name="dense1"), layers.Dense(3, activation="softmax", name="dense2")])


def spec(pooling):
    pool = "GlobalAveragePooling1D" if pooling == "avg" else "GlobalMaxPooling1D"
    return {"name": pooling, "input_length": 36, "layers": [
        {"type": "Reshape", "target_shape": [9, 4]},
        {"type": "Conv1D", "filters": 6, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 2, "strides": 2},
        {"type": "Conv1D", "filters": 5, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": pool}, {"type": "Dense", "units": 7, "activation": "relu"},
        {"type": "Dense", "activation": "softmax"}]}


def save_vars(g, model):
    for layer in model.layers:
        for v in layer.weights:
            g[f"{layer.name}/{v.name}"] = np.asarray(v.numpy())


def run(h5, pooling, seed, steps=3):
    model = build(pooling, seed)
    opt = keras.optimizers.Adam(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7)
    loss_fn = keras.losses.CategoricalCrossentropy()
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, 36)).astype(np.float32)
    labels = rng.integers(0, 3, size=5)
    y = np.eye(3, dtype=np.float32)[labels]
    g = h5.create_group(pooling)
    g.attrs["spec"] = json.dumps(spec(pooling))
    g["x"], g["labels"] = x, labels
    save_vars(g.create_group("initial"), model)
    xin = x[..., None]
    g["probs_infer_initial"] = model(xin, training=False).numpy()
    losses = []
    for step in range(steps):
        with tf.GradientTape() as tape:
            probs = model(xin, training=True)
            loss = loss_fn(y, probs)
        grads = tape.gradient(loss, model.trainable_variables)
        if step == 0:
            g["probs_train"], g["loss"] = probs.numpy(), float(loss)
            gg = g.create_group("grads")
            for v, d in zip(model.trainable_variables, grads):
                gg["/".join(v.path.split("/")[-2:])] = d.numpy()
        opt.apply_gradients(zip(grads, model.trainable_variables))
        losses.append(float(loss))
        if step + 1 in (1, 3):
            save_vars(g.create_group(f"step{step + 1}"), model)
    g["losses"] = np.array(losses)
    g["probs_infer"] = model(xin, training=False).numpy()
    print(pooling, model.count_params(), "params; losses", losses)


if __name__ == "__main__":
    with h5py.File(sys.argv[1], "w") as h5:
        h5.attrs["keras"], h5.attrs["tensorflow"] = keras.__version__, tf.__version__
        run(h5, "avg", 3)
        run(h5, "max", 4)
