# The peer of `sertrain bench model`: Keras 3 on TensorFlow CPU, the same model, `train_on_batch` at the same batch on
# random data, then `predict`. Arguments: batch, steps, warmup, predict batches. Prints one JSON line like
# `ModelBenchSample`.
import json, os, resource, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras
from keras import layers
batch, steps, warmup, predict_batches = map(int, sys.argv[1:5])
seq = [keras.Input(shape=(2376, 1))]
for f, k in zip([512, 512, 256, 256, 128], [5, 5, 5, 3, 3]):
    seq += [layers.Conv1D(f, k, padding="same", activation="relu"), layers.BatchNormalization(),
            layers.MaxPooling1D(pool_size=5, strides=2, padding="same")]
seq += [layers.Flatten(), layers.Dense(512, activation="relu"), layers.BatchNormalization(),
        layers.Dense(7, activation="softmax")]
model = keras.Sequential(seq)
assert model.count_params() == 7193223, model.count_params()
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(3)
x = rng.normal(size=(batch, 2376, 1)).astype(np.float32)
y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, size=batch)]
times = []
for i in range(warmup + steps):
    t = time.perf_counter()
    model.train_on_batch(x, y)
    if i >= warmup:
        times.append(time.perf_counter() - t)
xs = np.concatenate([x] * predict_batches)
model.predict(x, batch_size=batch, verbose=0)
t = time.perf_counter()
model.predict(xs, batch_size=batch, verbose=0)
rate = len(xs) / (time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"step_seconds": times, "predict_samples_per_second": rate, "peak_mb": peak}))

