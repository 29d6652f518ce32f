// The audio front end's vector kernels (vectormath.c; AudioFeatures uses them).
#pragma once

// Lane-wise square roots for Swift's SIMD8<Float>: Swift's `squareRoot()` on SIMD vectors goes lane by lane
// through the C library's `sqrtf` (for errno), which also stops the code around it from staying in vector
// registers; this is one packed instruction per register.
typedef float sertrain_float8 __attribute__((ext_vector_type(8)));

static inline __attribute__((always_inline)) sertrain_float8 sertrain_sqrt_float8(sertrain_float8 x) {
  return __builtin_elementwise_sqrt(x);
}

/// |z| and arg z of `count` complex numbers given as float32 real and imaginary parts (numpy's `abs` and `angle`
/// of complex64), evaluated in double and rounded once: correctly rounded but for values within about 1e-13 of a
/// rounding boundary.
void sertrain_magnitude_angle(const float *re, const float *im, float *magnitude, float *angle, long count);

/// cos and sin of `count` float32 angles of magnitude below 1.6e6, evaluated in double and rounded once.
void sertrain_cos_sin(const float *angles, float *cos_out, float *sin_out, long count);

/// One step of librosa's phase vocoder over `bins` bins: the column `(1 - alpha) |a| + alpha |b|` at the phase
/// accumulator's angle, as complex64 into `column` (interleaved), then the float32 accumulator advanced by
/// `advance` plus the wrapped difference of the angles of `b` and `a`.
void sertrain_vocoder_step(
    const float *magnitude_a, const float *magnitude_b, const float *angle_a, const float *angle_b,
    const double *advance, double alpha, float *phase, float *column, long bins);

/// `|z|^2` of `bins` complex numbers given in double (interleaved), each rounded to complex64 first and squared in
/// float32 (librosa's power spectrum of its complex64 STFT), stored `stride` floats apart.
void sertrain_power_strided(const double *spectrum, long bins, float *power, long stride);

/// `out[i] = frame[i] * window[i]` in double (librosa's window times a float32 frame).
void sertrain_window_frame(const float *frame, const double *window, double *out, long count);

/// `ln x` of `count` positive normal doubles (error under 1e-17 relative before the final rounding).
void sertrain_natural_log(const double *x, double *out, long count);

/// Power to decibels in place, librosa's `power_to_db` before its floor: `10·log10(max(1e-10, v))`, the logarithm
/// in double (`sertrain_natural_log`'s, divided by ln 10) rounded to float once, then times 10 in float; returns the
/// largest result (`-inf` for none).
float sertrain_power_db(float *values, long count);

/// One frame of an inverse STFT's overlap-add (librosa's `istft`): `signal[i] += window[i] * (frame[i] / scale)` and
/// `norm[i] += window[i]^2`, float32 accumulators with float64 addends, rounded to float once per addition.
void sertrain_overlap_add(
    const float *frame, const double *window, float scale, float *signal, float *norm, long count);
