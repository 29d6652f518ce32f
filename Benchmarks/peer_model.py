# The peer of `sertrain bench model`: Keras 3 on TensorFlow CPU, the same model, trained at the same batch on random
# data, then `predict`. Arguments: batch, steps, warmup, predict batches, model (seed or frames), and the Keras dtype
# policy (float32, or mixed_bfloat16: bfloat16 compute with float32 variables, as a Keras user turns it on). The seed model's
# steps are `train_on_batch` calls, each timed; the frames model's (a few milliseconds of compute each, where a
# call's own overhead would dominate) are one `fit` over `steps` batches, as a user trains, timed as a whole and
# divided evenly. Prints one JSON line like `ModelBenchSample`.
import json, os, resource, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np, keras
from keras import layers
batch, steps, warmup, predict_batches = map(int, sys.argv[1:5])
name = sys.argv[5] if len(sys.argv) > 5 else "seed"
policy = sys.argv[6] if len(sys.argv) > 6 else "float32"
keras.mixed_precision.set_global_policy(policy)
seq = [keras.Input(shape=(2376, 1))]
if name == "seed":
    for f, k in zip([512, 512, 256, 256, 128], [5, 5, 5, 3, 3]):
        seq += [layers.Conv1D(f, k, padding="same", activation="relu"), layers.BatchNormalization(),
                layers.MaxPooling1D(pool_size=5, strides=2, padding="same")]
    seq += [layers.Flatten(), layers.Dense(512, activation="relu"), layers.BatchNormalization(),
            layers.Dense(7, activation="softmax", dtype="float32")]
    expected = 7193223
else:  # ModelSpec.frames()
    seq += [layers.Reshape((108, 22))]
    for f, k, pool in ((64, 5, True), (128, 5, True), (128, 3, False)):
        seq += [layers.Conv1D(f, k, padding="same", activation="relu"), layers.BatchNormalization()]
        if pool:
            seq += [layers.MaxPooling1D(pool_size=2, strides=2, padding="same")]
    seq += [layers.GlobalMaxPooling1D(), layers.Dropout(0.3), layers.Dense(64, activation="relu"),
            layers.Dense(7, activation="softmax", dtype="float32")]
    expected = 107463
model = keras.Sequential(seq)
assert model.count_params() == expected, model.count_params()
model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(3)
x = rng.normal(size=(batch, 2376, 1)).astype(np.float32)
y = np.eye(7, dtype=np.float32)[rng.integers(0, 7, size=batch)]
times = []
if name == "seed":
    for i in range(warmup + steps):
        t = time.perf_counter()
        model.train_on_batch(x, y)
        if i >= warmup:
            times.append(time.perf_counter() - t)
else:
    xs, ys = np.concatenate([x] * steps), np.concatenate([y] * steps)
    model.fit(xs[:max(warmup, 1) * batch], ys[:max(warmup, 1) * batch], batch_size=batch, epochs=1, verbose=0,
              shuffle=False)
    t = time.perf_counter()
    model.fit(xs, ys, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    times = [(time.perf_counter() - t) / steps] * steps
xs = np.concatenate([x] * predict_batches)
model.predict(x, batch_size=batch, verbose=0)
t = time.perf_counter()
model.predict(xs, batch_size=batch, verbose=0)
rate = len(xs) / (time.perf_counter() - t)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"step_seconds": times, "predict_samples_per_second": rate, "peak_mb": peak}))
