"""What a --standardize speaker model does when a speaker's own statistics are not at hand (EXPERIMENTS.md, "One
recording of a new speaker"): each fold's model, exported to Keras, predicts its held-out speakers' original rows
standardised four ways: by each speaker's own statistics over all their rows (as sertrain evaluates), by the train
rows' statistics per feature (the checkpoint's speaker_fallback, what `predict` uses for fewer than 10 recordings),
by the mean over the training speakers of their statistics, and by each recording's own (one row's frames).

    python Benchmarks/speaker-fallback.py SERTRAIN FEATURES.h5 CV_DIR...   (a venv with keras, tensorflow and h5py)
"""
import os
import sys

import h5py
import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
import keras  # noqa: E402

from peer_cv import statistics  # noqa: E402  per column or per feature, as sertrain's scalers


def main():
    sertrain, data, dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    with h5py.File(data) as f:
        x, labels, source, aug = f["features"][:], f["labels"][:], f["source"][:], f["augmentation"][:]
        speakers = np.array([s.decode() for s in f["sources/speaker"][:]])[source]
        assert f.attrs["layout"] in ("frames", b"frames"), "rows in the frames layout"
        features = np.arange(x.shape[1]) % (2 + int(f.attrs["n_mfcc"]))
    ways = ("own", "train rows", "mean of speakers", "recording")
    results = {w: [] for w in ways}
    for d in dirs:
        folds = sorted(int(n.split("-")[1]) for n in os.listdir(d) if n.startswith("fold-"))
        for fold in folds:
            checkpoint = f"{d}/fold-{fold}/checkpoint-last.h5"
            with h5py.File(checkpoint) as c:
                split = c["split"][:]
            exported = f"{d}/fold-{fold}/speaker-fallback.keras"
            if os.system(f"'{sertrain}' export-keras '{checkpoint}' -o '{exported}' --force >/dev/null") != 0:
                sys.exit(f"export-keras {checkpoint} failed")
            model = keras.models.load_model(exported)
            train, test = split == 0, np.flatnonzero((split == 2) & (aug == 0))

            def accuracy(z):
                p = model.predict(z.astype(np.float32), batch_size=256, verbose=0)
                return float((p.argmax(1) == labels[test]).mean())

            own = np.empty((len(test), x.shape[1]))
            for s in np.unique(speakers[test]):
                mean, sd = statistics(x[speakers == s], features)
                rows = speakers[test] == s
                own[rows] = (x[test][rows] - mean) / sd
            mean, sd = statistics(x[train], features)
            pooled = (x[test] - mean) / sd
            each = [statistics(x[train & (speakers == s)], features) for s in np.unique(speakers[train])]
            average = (x[test] - np.mean([m for m, _ in each], 0)) / np.mean([s for _, s in each], 0)
            def by_itself(i):
                mean, sd = statistics(x[i:i + 1], features)
                return (x[i] - mean) / sd
            alone = np.array([by_itself(i) for i in test])
            for way, z in zip(ways, (own, pooled, average, alone)):
                results[way].append(accuracy(z))
            print(os.path.basename(d.rstrip("/")), fold, *("%.4f" % results[w][-1] for w in ways), sep="\t",
                  flush=True)
    for w in ways:
        print(f"# {w}: mean accuracy of the original rows over {len(results[w])} folds {np.mean(results[w]):.4f}")


main()
