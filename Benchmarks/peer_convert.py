# The peer of `sertrain bench convert`: pandas.read_csv, then h5py writing the same datasets as `sertrain convert`.
# Arguments: the CSV, the HDF5 file to write. Prints seconds and peak memory as JSON.
import sys, time
import numpy as np, pandas as pd, h5py
csv, out = sys.argv[1], sys.argv[2]
t = time.perf_counter()
df = pd.read_csv(csv)
labels = df.pop("labels").astype(str)
x = df.fillna(0).to_numpy(dtype=np.float32)
classes = sorted(labels.unique())
index = {c: i for i, c in enumerate(classes)}
with h5py.File(out, "w") as h5:
    h5.create_dataset("features", data=x, chunks=(32, x.shape[1]), maxshape=(None, x.shape[1]))
    h5["labels"] = labels.map(index).to_numpy(dtype=np.int32)
    h5["classes"] = np.array(classes, dtype=h5py.string_dtype())
    h5["source"] = (np.arange(len(x)) // 4).astype(np.int32)
    h5["augmentation"] = (np.arange(len(x)) % 4).astype(np.int8)

