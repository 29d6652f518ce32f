// The audio front end's vector kernels: the phase vocoder's float32 hypot, atan2, cos and sin, evaluated in double
// and rounded to float once (see VectorMath.swift in AudioFeatures for why, and for the tests), the vocoder step
// built on them, the STFT's window and the power spectrum. Eight lanes per step; each function is compiled for
// AVX-512, AVX2 and baseline x86-64 and the loader picks one for the CPU (target_clones). Every variant does the
// same IEEE operations in the same order (no contraction into fused multiply-adds), so all give the same bits.
#include <string.h>

#include "CAudioKernels.h"
#include "CSystem.h"

#pragma clang fp contract(off)

typedef float f8 __attribute__((ext_vector_type(8)));
typedef double d8 __attribute__((ext_vector_type(8)));


typedef long l8 __attribute__((ext_vector_type(8)));

// Vectors cross no function boundary: the baseline and AVX2 variants could not agree on how to pass 512-bit
// ones, so the helpers are macros or take pointers, and are always inlined.

/// `a` where `mask` is set, else `b`.
#define SELECT8(mask, a, b) ((d8)((((l8)(a)) & (mask)) | (((l8)(b)) & ~(mask))))
#define SPLAT(v) ((d8)(v))
#define SIGN_BIT ((l8)(long)0x8000000000000000UL)
#define ALWAYS_INLINE static inline __attribute__((always_inline))

/// atan2(y, x) with IEEE signed zeros, for finite inputs: t = min/max in [0, 1]; above tan(pi/8) the argument is
/// (t-1)/(t+1) instead, so |u| <= tan(pi/8) with one division either way; the Taylor series of atan to u^29
/// (15 terms) leaves under 3e-13.
ALWAYS_INLINE void atan2_8(const d8 *py, const d8 *px, d8 *out) {
  d8 y = *py, x = *px;
  const l8 magnitude_bits = (l8)0x7fffffffffffffffL;
  d8 ax = (d8)((l8)x & magnitude_bits), ay = (d8)((l8)y & magnitude_bits);
  l8 swap = ay > ax;
  d8 num = SELECT8(swap, ax, ay);
  d8 den = SELECT8(swap, ay, ax);
  l8 big = num > den * 0.41421356237309503;
  d8 u = (num - SELECT8(big, den, SPLAT(0))) / (SELECT8(big, num, SPLAT(0)) + den);
  l8 zero = den == 0;
  d8 z = u * u;
  d8 p = SPLAT(1.0 / 29);
  p = p * z - 1.0 / 27;
  p = p * z + 1.0 / 25;
  p = p * z - 1.0 / 23;
  p = p * z + 1.0 / 21;
  p = p * z - 1.0 / 19;
  p = p * z + 1.0 / 17;
  p = p * z - 1.0 / 15;
  p = p * z + 1.0 / 13;
  p = p * z - 1.0 / 11;
  p = p * z + 1.0 / 9;
  p = p * z - 1.0 / 7;
  p = p * z + 1.0 / 5;
  p = p * z - 1.0 / 3;
  d8 r = SELECT8(zero, SPLAT(0), u + u * z * p);
  r = SELECT8(big, r + 3.141592653589793 / 4, r);
  r = SELECT8(swap, 3.141592653589793 / 2 - r, r);
  r = SELECT8(((l8)x & SIGN_BIT) != 0, 3.141592653589793 - r, r);  // x negative or -0
  // r >= 0 here: give it y's sign.
  *out = (d8)(((l8)r & magnitude_bits) | ((l8)y & SIGN_BIT));
}

/// (cos x, sin x): x = k pi/2 + r with |r| <= pi/4 (Cody-Waite with fdlibm's 33-bit pi/2, exact for |k| < 2^20),
/// Taylor series to r^14 and r^15 (error under 1e-15), and the quadrant k mod 4.
ALWAYS_INLINE void cos_sin_8(const d8 *px, d8 *cos_out, d8 *sin_out) {
  d8 x = *px;
  const d8 magic = SPLAT(0x1.8p52);
  d8 k = (x * (2 / 3.141592653589793) + magic) - magic;
  d8 r = (x - k * 1.57079632673412561417e+00) - k * 6.07710050650619224932e-11;
  // The quadrant k mod 4, in double (0...3): k - 4 round((k - 1.5) / 4).
  d8 q = k - 4 * (((k - 1.5) * 0.25 + magic) - magic);
  d8 z = r * r;
  d8 s = SPLAT(-1.0 / 1307674368000);
  s = s * z + 1.0 / 6227020800;
  s = s * z - 1.0 / 39916800;
  s = s * z + 1.0 / 362880;
  s = s * z - 1.0 / 5040;
  s = s * z + 1.0 / 120;
  s = s * z - 1.0 / 6;
  s = (s * z + 1) * r;
  d8 c = SPLAT(-1.0 / 87178291200);
  c = c * z + 1.0 / 479001600;
  c = c * z - 1.0 / 3628800;
  c = c * z + 1.0 / 40320;
  c = c * z - 1.0 / 720;
  c = c * z + 1.0 / 24;
  c = c * z - 1.0 / 2;
  c = c * z + 1;
  // Quadrants 1 and 3 swap sine and cosine; the signs follow the quadrant.
  l8 odd = (q == 1) | (q == 3);
  d8 sin_abs = SELECT8(odd, c, s);
  d8 cos_abs = SELECT8(odd, s, c);
  l8 sin_negative = q >= 2;
  l8 cos_negative = (q == 1) | (q == 2);
  *cos_out = SELECT8(cos_negative, -cos_abs, cos_abs);
  *sin_out = SELECT8(sin_negative, -sin_abs, sin_abs);
}

/// Eight floats from `p`, or the first `count` of them and zeros when fewer than eight remain.
ALWAYS_INLINE void load8f(const float *p, long count, f8 *out) {
  f8 v = (f8)0;
  if (count >= 8) {
    __builtin_memcpy(&v, p, sizeof v);
  } else {
    for (long j = 0; j < count; j++) v[j] = p[j];
  }
  *out = v;
}

/// The same, widened to double.
ALWAYS_INLINE void load8(const float *p, long count, d8 *out) {
  f8 v;
  load8f(p, count, &v);
  *out = __builtin_convertvector(v, d8);
}

ALWAYS_INLINE void store8(float *p, const d8 *v, long count) {
  f8 f = __builtin_convertvector(*v, f8);
  if (count >= 8) {
    __builtin_memcpy(p, &f, sizeof f);
  } else {
    for (long j = 0; j < count; j++) p[j] = f[j];
  }
}

SERTRAIN_CLONES
void sertrain_magnitude_angle(const float *re, const float *im, float *magnitude, float *angle, long count) {
  for (long i = 0; i < count; i += 8) {
    long n = count - i;
    d8 x, y, m, a;
    load8(re + i, n, &x);
    load8(im + i, n, &y);
    m = __builtin_elementwise_sqrt(x * x + y * y);
    atan2_8(&y, &x, &a);
    store8(magnitude + i, &m, n);
    store8(angle + i, &a, n);
  }
}

SERTRAIN_CLONES
void sertrain_cos_sin(const float *angles, float *cos_out, float *sin_out, long count) {
  for (long i = 0; i < count; i += 8) {
    long n = count - i;
    d8 x, c, s;
    load8(angles + i, n, &x);
    cos_sin_8(&x, &c, &s);
    store8(cos_out + i, &c, n);
    store8(sin_out + i, &s, n);
  }
}

ALWAYS_INLINE void load8d(const double *p, long count, d8 *out) {
  d8 v = SPLAT(0);
  if (count >= 8) {
    __builtin_memcpy(&v, p, sizeof v);
  } else {
    for (long j = 0; j < count; j++) v[j] = p[j];
  }
  *out = v;
}

SERTRAIN_CLONES
void sertrain_vocoder_step(
    const float *magnitude_a, const float *magnitude_b, const float *angle_a, const float *angle_b,
    const double *advance, double alpha, float *phase, float *column, long bins) {
  const d8 magic = SPLAT(0x1.8p52), two_pi = SPLAT(2 * 3.141592653589793);
  const d8 one_minus_alpha = SPLAT(1 - alpha), alpha8 = SPLAT(alpha);
  for (long k = 0; k < bins; k += 8) {
    long n = bins - k;
    d8 p, c, s, ma, mb, adv;
    load8(phase + k, n, &p);
    cos_sin_8(&p, &c, &s);
    // The cosines and sines as float32 (numpy's), then the magnitude interpolated in double.
    c = __builtin_convertvector(__builtin_convertvector(c, f8), d8);
    s = __builtin_convertvector(__builtin_convertvector(s, f8), d8);
    load8(magnitude_a + k, n, &ma);
    load8(magnitude_b + k, n, &mb);
    d8 magnitude = one_minus_alpha * ma + alpha8 * mb;
    f8 re = __builtin_convertvector(c * magnitude, f8), im = __builtin_convertvector(s * magnitude, f8);
    f8 lo = __builtin_shufflevector(re, im, 0, 8, 1, 9, 2, 10, 3, 11);
    f8 hi = __builtin_shufflevector(re, im, 4, 12, 5, 13, 6, 14, 7, 15);
    if (n >= 8) {
      __builtin_memcpy(column + 2 * k, &lo, sizeof lo);
      __builtin_memcpy(column + 2 * k + 8, &hi, sizeof hi);
    } else {
      for (long j = 0; j < 2 * n; j++) column[2 * k + j] = j < 8 ? lo[j] : hi[j - 8];
    }
    // The phase advance: the angle difference in float32, then double; np.round is to nearest, ties to even.
    f8 fa, fb;
    load8f(angle_a + k, n, &fa);
    load8f(angle_b + k, n, &fb);
    load8d(advance + k, n, &adv);
    d8 dphase = __builtin_convertvector(fb - fa, d8) - adv;
    dphase -= two_pi * ((dphase / two_pi + magic) - magic);
    d8 updated = p + (adv + dphase);
    store8(phase + k, &updated, n);
  }
}

SERTRAIN_CLONES
void sertrain_power_strided(const double *spectrum, long bins, float *power, long stride) {
  long k = 0;
  for (; k + 8 <= bins; k += 8) {
    d8 a, b;
    __builtin_memcpy(&a, spectrum + 2 * k, sizeof a);
    __builtin_memcpy(&b, spectrum + 2 * k + 8, sizeof b);
    f8 re = __builtin_convertvector(__builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14), f8);
    f8 im = __builtin_convertvector(__builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15), f8);
    f8 q = re * re + im * im;
    for (int j = 0; j < 8; j++) power[(k + j) * stride] = q[j];
  }
  for (; k < bins; k++) {
    float re = (float)spectrum[2 * k], im = (float)spectrum[2 * k + 1];
    power[k * stride] = re * re + im * im;
  }
}

SERTRAIN_CLONES
void sertrain_window_frame(const float *frame, const double *window, double *out, long count) {
  long i = 0;
  for (; i + 8 <= count; i += 8) {
    f8 x;
    d8 w;
    __builtin_memcpy(&x, frame + i, sizeof x);
    __builtin_memcpy(&w, window + i, sizeof w);
    d8 product = __builtin_convertvector(x, d8) * w;
    __builtin_memcpy(out + i, &product, sizeof product);
  }
  for (; i < count; i++) out[i] = (double)frame[i] * window[i];
}

/// `ln x` for positive normal `x`: `x = 2^e·m` with `m` in `[√½, √2)`, and `ln m = 2 atanh s = 2(s + s³/3 + ... +
/// s²¹/21)` with `s = (m-1)/(m+1)`, `|s| <= 0.172` (error under 1e-17); `e·ln 2` with ln 2 split so that `e·ln2hi`
/// is exact.
ALWAYS_INLINE void log_8(const d8 *px, d8 *out) {
  typedef unsigned long u8 __attribute__((ext_vector_type(8)));
  const u8 bits = (u8)*px;
  // The biased exponent as a double (2^52 + E, minus 2^52), and the mantissa scaled to [1, 2).
  d8 e = (d8)(((bits >> 52) & 0x7ff) | 0x4330000000000000UL) - 0x1p52 - 1023.0;
  d8 m = (d8)((bits & 0x000fffffffffffffUL) | 0x3ff0000000000000UL);
  const l8 high = m > 1.4142135623730951;
  m = SELECT8(high, m * 0.5, m);
  e = SELECT8(high, e + 1.0, e);
  const d8 s = (m - 1.0) / (m + 1.0);
  const d8 z = s * s;
  d8 p = SPLAT(1.0 / 21);
  p = p * z + 1.0 / 19;
  p = p * z + 1.0 / 17;
  p = p * z + 1.0 / 15;
  p = p * z + 1.0 / 13;
  p = p * z + 1.0 / 11;
  p = p * z + 1.0 / 9;
  p = p * z + 1.0 / 7;
  p = p * z + 1.0 / 5;
  p = p * z + 1.0 / 3;
  const d8 ln_m = 2.0 * s + 2.0 * s * z * p;
  *out = e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + ln_m);
}

SERTRAIN_CLONES
void sertrain_natural_log(const double *x, double *out, long count) {
  for (long i = 0; i < count; i += 8) {
    d8 v, l;
    load8d(x + i, count - i, &v);
    log_8(&v, &l);
    if (count - i >= 8) {
      __builtin_memcpy(out + i, &l, sizeof l);
    } else {
      for (long j = 0; i + j < count; j++) out[i + j] = l[j];
    }
  }
}

SERTRAIN_CLONES
float sertrain_power_db(float *values, long count) {
  f8 peak = (f8)(-__builtin_inff());
  for (long i = 0; i < count; i += 8) {
    const long n = count - i;
    f8 v;
    load8f(values + i, n, &v);
    // max(1e-10, v), NaN included (a NaN is not >= the bound).
    typedef int i8 __attribute__((ext_vector_type(8)));
    const i8 keep = v >= 1e-10f;
    v = (f8)((keep & (i8)v) | (~keep & (i8)(f8)1e-10f));
    d8 l;
    const d8 w = __builtin_convertvector(v, d8);
    log_8(&w, &l);
    const f8 db = 10.0f * __builtin_convertvector(l / 2.302585092994045684, f8);
    if (n >= 8) {
      __builtin_memcpy(values + i, &db, sizeof db);
      peak = __builtin_elementwise_max(peak, db);  // never NaN: the bound came first
    } else {
      for (long j = 0; j < n; j++) {
        values[i + j] = db[j];
        peak[j] = db[j] > peak[j] ? db[j] : peak[j];
      }
    }
  }
  float top = peak[0];
  for (int j = 1; j < 8; j++) top = peak[j] > top ? peak[j] : top;
  return top;
}

SERTRAIN_CLONES
void sertrain_overlap_add(
    const float *frame, const double *window, float scale, float *signal, float *norm, long count) {
  long i = 0;
  for (; i + 8 <= count; i += 8) {
    f8 x, s, q;
    d8 w;
    __builtin_memcpy(&x, frame + i, sizeof x);
    __builtin_memcpy(&w, window + i, sizeof w);
    __builtin_memcpy(&s, signal + i, sizeof s);
    __builtin_memcpy(&q, norm + i, sizeof q);
    s = __builtin_convertvector(__builtin_convertvector(s, d8) + w * __builtin_convertvector(x / scale, d8), f8);
    q = __builtin_convertvector(__builtin_convertvector(q, d8) + w * w, f8);
    __builtin_memcpy(signal + i, &s, sizeof s);
    __builtin_memcpy(norm + i, &q, sizeof q);
  }
  for (; i < count; i++) {
    signal[i] = (float)((double)signal[i] + window[i] * (double)(frame[i] / scale));
    norm[i] = (float)((double)norm[i] + window[i] * window[i]);
  }
}
