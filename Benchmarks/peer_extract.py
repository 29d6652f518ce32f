# The librosa peer of `sertrain bench extract`: the seed's pipeline on every file of a corpus (load at 22,050 Hz with
# soxr_hq, offset 0.6 s, duration 2.5 s; ZCR, RMS, MFCC rows for original, noise, pitch and pitch+noise), one
# process. Arguments: a file listing one audio path per line. Prints files/s.
import sys, time
import numpy as np, librosa
paths = [l.strip() for l in open(sys.argv[1]) if l.strip()]
rng = np.random.default_rng(0)
def row(y):
    zcr = librosa.feature.zero_crossing_rate(y=y, frame_length=2048, hop_length=512)[0]
    rms = librosa.feature.rms(y=y, frame_length=2048, hop_length=512)[0]
    mfcc = librosa.feature.mfcc(y=y, sr=22050)
    r = np.concatenate([zcr, rms, mfcc.T.ravel()])
    out = np.zeros(2376, dtype=np.float32)
    out[: min(2376, len(r))] = r[:2376]
    return out
def noise(y):
    return y + 0.035 * rng.uniform() * np.amax(y) * rng.normal(size=len(y))
t = time.perf_counter()
rows = 0
for p in paths:
    y, _ = librosa.load(p, sr=22050, mono=True, offset=0.6, duration=2.5, res_type="soxr_hq")
    if len(y) == 0:
        continue
    pitched = librosa.effects.pitch_shift(y=y, sr=22050, n_steps=0.7, res_type="soxr_hq")
    for v in (y, noise(y), pitched, noise(pitched)):
        row(v)
        rows += 1
dt = time.perf_counter() - t
print(f"librosa: {len(paths)} files, {rows} rows in {dt:.2f} s = {len(paths) / dt:.2f} files/s")

