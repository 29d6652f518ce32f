# The Keras peer on sertrain's own folds: for each fold of a `sertrain cv` directory, Keras 3 (TensorFlow CPU) trains
# the same model on the same rows (the fold checkpoint's `split`: its train, validation and held-out rows),
# standardised the same way (computed here with numpy from the feature file, not taken from sertrain), with Keras's
# own Adam, EarlyStopping and ReduceLROnPlateau at the fold's config.json settings, from Keras's own initialisation,
# shuffling and dropout; then evaluates it on the held-out rows and writes OUT_DIR/cv.csv in sertrain's format, so
# that `sertrain compare CV_DIR OUT_DIR` pairs the two fold by fold.
#
# Before training, each fold checks that it reads the rows as sertrain does: the fold's trained model, exported with
# `sertrain export-keras` and given the rows standardised here, must give the probabilities `sertrain predict
# --features` prints for the held-out rows (within 2e-4; the CSV has six decimals). The architecture is that export's
# (layer by layer, the Normalization left out: the rows arrive standardised), freshly initialised.
#
#   python peer_cv.py SERTRAIN CV_DIR FEATURES_H5 OUT_DIR [--seed N]
import argparse, csv, io, json, os, subprocess, sys, time
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import h5py, numpy as np, keras, tensorflow as tf
tf.get_logger().setLevel("ERROR")  # a new model per fold retraces predict: said once per fold otherwise


def column_features(attrs, width):
    """Each column's feature (0 ZCR, 1 RMS, 2 + c MFCC c), as Schema's `columnFeatures`."""
    n_mfcc = int(attrs["n_mfcc"])
    per_frame = 2 + n_mfcc
    frames = width // per_frame
    layout = attrs.get("layout", "seed")
    if isinstance(layout, bytes):
        layout = layout.decode()
    i = np.arange(width)
    if layout == "frames":
        return i % per_frame
    return np.where(i < frames, 0, np.where(i < 2 * frames, 1, 2 + (i - 2 * frames) % n_mfcc))


def statistics(x, features=None):
    """Mean and population deviation per column, or per feature over its columns (`features`); zero becomes 1."""
    x = x.astype(np.float64)
    if features is None:
        mean, sd = x.mean(axis=0), x.std(axis=0)
    else:
        k = features.max() + 1
        mean = np.array([x[:, features == f].mean() for f in range(k)])[features]
        sd = np.array([x[:, features == f].std() for f in range(k)])[features]
    sd[sd == 0] = 1
    return mean, sd


def standardise(x, how, train, speakers, features):
    if how == "none":
        return x
    if how in ("column", "feature"):
        mean, sd = statistics(x[train], None if how == "column" else features)
        return ((x - mean) / sd).astype(np.float32)
    if how == "speaker":  # every row of a speaker, train, validation and test alike
        out = np.empty_like(x)
        for s in np.unique(speakers):
            rows = speakers == s
            mean, sd = statistics(x[rows], features)
            out[rows] = (x[rows] - mean) / sd
        return out
    sys.exit(f"peer_cv: standardisation {how!r} is not one this peer reproduces")


def metrics(probabilities, truth, classes):
    """Accuracy, macro F1 (scikit-learn's, over the classes in the truth or the predictions), UAR, mean loss."""
    predicted = probabilities.argmax(axis=1)
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    f1s, recalls = [], []
    for c in range(k):
        support, called = confusion[c].sum(), confusion[:, c].sum()
        if support == 0 and called == 0:
            continue
        p = confusion[c, c] / called if called else 0.0
        r = confusion[c, c] / support if support else 0.0
        f1s.append(2 * p * r / (p + r) if p + r else 0.0)
        if support:
            recalls.append(r)
    clipped = np.clip(probabilities[np.arange(len(truth)), truth], 1e-7, 1 - 1e-7)
    return (np.trace(confusion) / len(truth), float(np.mean(f1s)), float(np.mean(recalls)),
            float(-np.log(clipped).mean()))


def main():
    parser = argparse.ArgumentParser()
    for name in ("sertrain", "cv_dir", "features", "out_dir"):
        parser.add_argument(name)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args()
    with open(os.path.join(a.cv_dir, "cv.csv")) as f:
        table = list(csv.reader(f))
    header, folds = table[0], [r for r in table[1:] if r[0] not in ("mean", "sd")]
    with h5py.File(a.features, "r") as f:
        x = f["features"][:]
        labels = f["labels"][:]
        classes = [c.decode() for c in f["classes"][:]]
        source = f["source"][:]
        augmentation = f["augmentation"][:]
        speakers = np.array([s.decode() for s in f["sources/speaker"][:]])[source]
        features = column_features(dict(f.attrs), x.shape[1])
    os.makedirs(a.out_dir, exist_ok=True)
    lines = [header[:3] + ["accuracy", "macro_f1", "uar", "original_accuracy", "original_uar", "loss", "train_rows",
                           "epochs", "seconds"]]
    results = []
    for row in folds:
        fold = int(row[0])
        run = os.path.join(a.cv_dir, f"fold-{fold}")
        checkpoint = os.path.join(run, "checkpoint-last.h5")
        with open(os.path.join(run, "config.json")) as f:
            config = json.load(f)
        for key, plain in (("classWeight", None), ("classWeights", None), ("lrScaling", None), ("warmupEpochs", 0),
                           ("precision", None), ("limitRows", None), ("stepsPerEpoch", None)):
            if config.get(key, plain) not in (plain, "none", "fp32"):
                sys.exit(f"peer_cv: {run}/config.json sets {key}, which this peer does not reproduce")
        with h5py.File(checkpoint, "r") as c:
            split = c["split"][:]
            how = c.attrs["standardization"]
            how = how.decode() if isinstance(how, bytes) else how
            model_classes = [n.decode() for n in c["class_names"][:]]
        assert model_classes == classes, (model_classes, classes)
        train, val, test = (np.flatnonzero(split == s) for s in (0, 1, 2))
        assert len(test) == int(row[2]), f"fold {fold}: {len(test)} held-out rows, cv.csv says {row[2]}"
        xs = standardise(x, how, train, speakers, features)

        # The rows as sertrain reads them: its trained model, given these rows, predicts as sertrain does.
        exported = os.path.join(a.out_dir, f"fold-{fold}.keras")
        subprocess.run([a.sertrain, "export-keras", checkpoint, "-o", exported], check=True, stdout=subprocess.DEVNULL)
        printed = subprocess.run(
            [a.sertrain, "predict", "--checkpoint", checkpoint, "--features", a.features, "--split", "test", "--csv"],
            check=True, capture_output=True, text=True).stdout
        theirs = {int(r["path_or_row"]): [float(r[c]) for c in classes] for r in csv.DictReader(io.StringIO(printed))}
        trained = keras.models.load_model(exported)
        body = [l for l in trained.layers if not isinstance(l, keras.layers.Normalization)]

        def build():
            model = keras.Sequential([keras.Input((x.shape[1],))] + [type(l).from_config(l.get_config()) for l in body])
            model.compile(optimizer=keras.optimizers.Adam(config["learningRate"]),
                          loss="categorical_crossentropy", metrics=["accuracy"])
            return model
        check = build()
        for new, old in zip(check.layers, body):
            new.set_weights(old.get_weights())
        mine = check.predict(xs[test], batch_size=256, verbose=0)
        gap = np.abs(mine - np.array([theirs[r] for r in test])).max()
        if sorted(theirs) != sorted(test.tolist()) or gap > 2e-4:
            sys.exit(f"peer_cv: fold {fold}: the rows read here are not sertrain's (probabilities differ by {gap:.2g})")

        keras.utils.set_random_seed(a.seed * 1000 + fold)
        model = build()
        es, lr = config["earlyStopping"], config["reduceLR"]
        callbacks = [
            keras.callbacks.EarlyStopping(
                monitor=es["monitor"], patience=es["patience"], min_delta=es["minDelta"], mode=es["mode"],
                restore_best_weights=es["restoreBestWeights"], start_from_epoch=es["startFromEpoch"]),
            keras.callbacks.ReduceLROnPlateau(
                monitor=lr["monitor"], factor=lr["factor"], patience=lr["patience"], min_delta=lr["minDelta"],
                mode=lr["mode"], cooldown=lr["cooldown"], min_lr=lr["minLR"]),
        ]
        onehot = np.eye(len(classes), dtype=np.float32)
        start = time.time()
        history = model.fit(
            xs[train], onehot[labels[train]], batch_size=config["batchSize"], epochs=config["epochs"],
            validation_data=(xs[val], onehot[labels[val]]), callbacks=callbacks, shuffle=True, verbose=0)
        seconds = time.time() - start
        probabilities = model.predict(xs[test], batch_size=256, verbose=0)
        m = metrics(probabilities, labels[test], classes)
        original = augmentation[test] == 0  # the original rows alone, without extraction's copies
        o = metrics(probabilities[original], labels[test][original], classes) if original.any() else (np.nan,) * 4
        m = m[:3] + o[:1] + o[2:3] + m[3:]
        results.append(m)
        epochs = len(history.history["loss"])
        lines.append(row[:3] + [repr(float(v)) for v in m] + [str(len(train)), str(epochs), f"{seconds:.1f}"])
        print(f"fold {fold} ({row[1]}): {len(train)} train, {len(val)} validation, {len(test)} held-out rows; "
              f"{epochs} epochs, {seconds:.0f} s; accuracy {m[0]:.4f}, macro F1 {m[1]:.4f}, UAR {m[2]:.4f} "
              f"(sertrain {float(row[3]):.4f}; its trained model read here within {gap:.1g})", flush=True)
    r = np.array(results)
    total = str(sum(int(row[2]) for row in folds))
    lines.append(["mean", "", total] + [repr(float(v)) for v in r.mean(axis=0)] + ["", "", ""])
    lines.append(["sd", "", ""] + [repr(float(v)) for v in r.std(axis=0, ddof=1)] + ["", "", ""])
    # cv.csv as sertrain writes it (ten columns, for compare); the epochs and seconds in peer.csv beside it.
    with open(os.path.join(a.out_dir, "cv.csv"), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([line[:10] for line in lines])
    with open(os.path.join(a.out_dir, "peer.csv"), "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(lines)
    print(f"Keras {keras.__version__} on {a.cv_dir}'s folds: accuracy {r[:, 0].mean():.4f} +- "
          f"{r[:, 0].std(ddof=1):.4f}")


if __name__ == "__main__":
    main()
