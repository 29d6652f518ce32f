#!/usr/bin/env python3
"""librosa's pitch-shifted rows with np.angle correctly rounded: the oracle that isolates our vocoder's own error.

Why: `librosa-golden.h5`'s pitch rows were made where numpy computes float32 `arctan2` (inside `np.angle`) with
Intel SVML's low-accuracy AVX-512 kernel, whose results differ from the correctly rounded ones in about 38% of
values (measured here). The vocoder accumulates phase in float32 (values reach 1.8e5 rad, an ulp of 0.016), so an
ulp in an angle now and then flips a phase rounding and moves the pitch row's MFCCs by up to 5e-3. librosa itself
moves that much: with `np.angle` through glibc's `atan2f` (what numpy uses on CPUs without AVX-512) or correctly
rounded, its pitch MFCCs differ from the golden file by up to 3.4e-3 and 5.1e-3 on these 8 recordings.

This script runs librosa exactly as `make_librosa_golden.py` does, on the golden file's own `y`, with `np.angle`
correctly rounded for complex64 (atan2 in float64, rounded once to float32, as sertrain's vocoder computes it),
and writes OUT.h5 with, per recording key, `pitch/row` (2376) and `pitch/y`'s length.
Usage: python make_pitch_rows.py GOLDEN.h5 OUT.h5   (pip install librosa soundfile h5py; librosa 0.11)
"""
import sys

import h5py
import librosa
import numpy as np

SR, FRAME, HOP, WIDTH = 22050, 2048, 512, 2376
_angle = np.angle


def angle(z, deg=False):
    z = np.asarray(z)
    if z.dtype != np.complex64 or deg:
        return _angle(z, deg)
    return np.arctan2(z.imag.astype(np.float64), z.real.astype(np.float64)).astype(np.float32)


def row(y):
    zcr = librosa.feature.zero_crossing_rate(y=y, frame_length=FRAME, hop_length=HOP)[0]
    rms = librosa.feature.rms(y=y, frame_length=FRAME, hop_length=HOP)[0]
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR)), n_mfcc=20)
    r = np.concatenate([zcr, rms, mfcc.T.ravel()]).astype(np.float64)
    padded = np.zeros(WIDTH)
    padded[: min(WIDTH, len(r))] = r[:WIDTH]
    return padded


def main(golden, out):
    np.angle = angle  # librosa's phase_vocoder calls np.angle
    keys = []
    golden.visit(lambda k: keys.append(k[: -len("/pitch/y")]) if k.endswith("/pitch/y") else None)
    with h5py.File(out, "w") as h5:
        h5.attrs["librosa"] = librosa.__version__
        h5.attrs["angle"] = "complex64 angle = float32(atan2 in float64)"
        for key in keys:
            y = golden[key + "/y"][()]
            pitched = librosa.effects.pitch_shift(y=y, sr=SR, n_steps=0.7, res_type="soxr_hq")
            h5[key + "/pitch/row"] = row(pitched).astype(np.float32)
            print(key, "pitch row vs golden: max |diff| %.2e" % np.abs(row(pitched) - golden[key + "/pitch/row"][()]).max())


if __name__ == "__main__":
    main(h5py.File(sys.argv[1], "r"), sys.argv[2])
