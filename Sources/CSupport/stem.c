// The first block of a ConvNet (a Conv1D over a one-channel input, its bias and ReLU, the BatchNormalization and
// the MaxPooling1D after it) computed without storing the convolution's output: every sweep that reads it
// recomputes it from the input, k multiplies per value, while the stored tensor would be the model's largest
// (the seed's: 64 x 2376 x 512 floats, 311 MB, read and written about ten times per step). See `BatchNormLayer`
// in ConvNet for the sweeps and their order of operations, which these kernels keep: the sums go into float over
// blocks of 16 positions and into double across blocks, the pool keeps the first maximum of each window, and its
// gradient goes to the first input equal to the maximum.
//
// Channels go 16 at a time (a register on AVX-512); each function is compiled for AVX-512, AVX2 and baseline
// x86-64 (target_clones) with no contraction into fused multiply-adds, so every variant gives the same bits.
#include <stdlib.h>
#include <string.h>

#include "CSupport.h"

#pragma clang fp contract(off)

typedef float f16 __attribute__((ext_vector_type(16)));
typedef int i16 __attribute__((ext_vector_type(16)));
typedef float f8 __attribute__((ext_vector_type(8)));
typedef double d8 __attribute__((ext_vector_type(8)));

#if defined(__x86_64__) && !defined(SERTRAIN_NO_TARGET_CLONES)
#define SERTRAIN_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SERTRAIN_CLONES
#endif

#define LANES 16
/// How many output rows ahead the pooled rows are prefetched (a hint: rows past the end are not read).
#define PREFETCH_ROWS 12
#define SELECT(mask, a, b) ((f16)(((i16)(a) & (mask)) | ((i16)(b) & ~(mask))))

/// `n <= 16` floats from `p` (the rest zero), and back. Vectors cross no function boundary (the baseline and AVX2
/// variants could not agree on how to pass 512-bit ones): helpers are macros or take pointers.
/// Whole blocks (`n == 16`) take one vector load or store, the last partial block a copy.
#define LOAD_INTO(v, p, n)                                 \
  do {                                                     \
    if ((n) == LANES) {                                    \
      memcpy(&(v), (p), sizeof(f16));                      \
    } else {                                               \
      v = (f16)0;                                          \
      memcpy(&(v), (p), (size_t)(n) * sizeof(float));      \
    }                                                      \
  } while (0)
#define STORE(v, p, n)                                     \
  do {                                                     \
    if ((n) == LANES) {                                    \
      memcpy((p), &(v), sizeof(f16));                      \
    } else {                                               \
      memcpy((p), &(v), (size_t)(n) * sizeof(float));      \
    }                                                      \
  } while (0)

/// Adds the float partial sums to the double totals (two halves of eight) and clears them.
#define FLUSH(partial, lo, hi)                                                                   \
  do {                                                                                           \
    lo += __builtin_convertvector(__builtin_shufflevector(partial, partial, 0, 1, 2, 3, 4, 5, 6, 7), d8); \
    hi += __builtin_convertvector(                                                               \
        __builtin_shufflevector(partial, partial, 8, 9, 10, 11, 12, 13, 14, 15), d8);             \
    partial = 0;                                                                                 \
  } while (0)

#define STORE_TOTALS(lo, hi, out, n)            \
  do {                                          \
    double t_[LANES];                           \
    memcpy(t_, &(lo), sizeof(d8));              \
    memcpy(t_ + 8, &(hi), sizeof(d8));          \
    memcpy((out), t_, (size_t)(n) * sizeof(double)); \
  } while (0)

/// The block's kernel taps, bias and per-channel vectors, loaded once (zero past the last channel).
typedef struct {
  f16 w[SERTRAIN_STEM_MAX_KERNEL];
  f16 bias;
} taps;

static inline __attribute__((always_inline)) void load_taps(const sertrain_stem *s, int c0, int n, taps *t) {
  for (int j = 0; j < s->kernel; j++) LOAD_INTO(t->w[j], s->weight + (long)j * s->channels + c0, n);
  LOAD_INTO(t->bias, s->bias + c0, n);
}

/// The layer's output at position `t` (input rows `t ..< t+k` of the padded sample `xp`): the taps summed in
/// order, plus the bias, then the ReLU (negative values to zero) when the layer has one.
static inline __attribute__((always_inline)) void conv_at(const sertrain_stem *s, const int k, const taps *tp,
                                                          const float *xp, long t, f16 *out) {
  f16 u = xp[t] * tp->w[0];
  for (int j = 1; j < k; j++) u = u + xp[t + j] * tp->w[j];
  u = u + tp->bias;
  if (s->relu) u = SELECT(u < 0, (f16)0, u);
  *out = u;
}

static inline __attribute__((always_inline)) int is_flush(long t, long length) {
  return (t & 15) == 15 || t == length - 1;
}

static inline __attribute__((always_inline)) void sums(const sertrain_stem *s, const int k, int b0, int b1,
                                                       const float *center, double *out) {
  const long length = s->length;
  for (int c0 = 0; c0 < s->channels; c0 += LANES) {
    const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
    taps tp;
    load_taps(s, c0, n, &tp);
    f16 m = 0;
    if (center) LOAD_INTO(m, center + c0, n);
    f16 partial = 0;
    d8 lo = 0, hi = 0;
    for (int b = b0; b < b1; b++) {
      const float *xp = s->input + (long)b * s->input_stride;
      for (long t = 0; t < length; t++) {
        f16 v;
        conv_at(s, k, &tp, xp, t, &v);
        if (center) {
          f16 d = v - m;
          partial = partial + d * d;
        } else {
          partial = partial + v;
        }
        if (is_flush(t, length)) FLUSH(partial, lo, hi);
      }
    }
    STORE_TOTALS(lo, hi, out + c0, n);
  }
}

/// TensorFlow's `same` pooling window of output `p`, clipped to the input.
static inline __attribute__((always_inline)) void window(const sertrain_stem *s, long p, long *lo, long *hi) {
  long start = p * s->pool_stride - s->pool_pad_left;
  *lo = start > 0 ? start : 0;
  *hi = start + s->pool < s->length ? start + s->pool : s->length;
}

static inline __attribute__((always_inline)) void pool(const sertrain_stem *s, const int k, int b0, int b1,
                                                       const float *scale, const float *shift, float *output,
                                                       long output_stride) {
  const long length = s->length;
  f16 *z = aligned_alloc(64, (size_t)length * sizeof(f16));
  for (int c0 = 0; c0 < s->channels; c0 += LANES) {
    const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
    taps tp;
    load_taps(s, c0, n, &tp);
    f16 sc, sh;
    LOAD_INTO(sc, scale + c0, n);
    LOAD_INTO(sh, shift + c0, n);
    for (int b = b0; b < b1; b++) {
      const float *xp = s->input + (long)b * s->input_stride;
      for (long t = 0; t < length; t++) {
        f16 v;
        conv_at(s, k, &tp, xp, t, &v);
        z[t] = v * sc + sh;
      }
      float *y = output + (long)b * output_stride + c0;
      for (long p = 0; p < s->out_length; p++) {
        long lo, hi;
        window(s, p, &lo, &hi);
        __builtin_prefetch(y + (p + PREFETCH_ROWS) * s->channels, 1);
        f16 best = z[lo];
        for (long t = lo + 1; t < hi; t++) best = SELECT(z[t] > best, z[t], best);
        STORE(best, y + p * s->channels, n);
      }
    }
  }
  free(z);
}

static inline __attribute__((always_inline)) void backward(const sertrain_stem *s, const int k, int b0, int b1,
                                                           const sertrain_stem_gradient *g, double *out) {
  const long length = s->length;
  const int weights = g->a1 != NULL;
  f16 *v = aligned_alloc(64, (size_t)length * sizeof(f16));
  f16 *dz = aligned_alloc(64, (size_t)length * sizeof(f16));
  for (int c0 = 0; c0 < s->channels; c0 += LANES) {
    const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
    taps tp;
    load_taps(s, c0, n, &tp);
    f16 sc, sh, mean, inv, a1 = 0, a2 = 0, gs = 0;
    LOAD_INTO(sc, g->scale + c0, n);
    LOAD_INTO(sh, g->shift + c0, n);
    LOAD_INTO(mean, g->mean + c0, n);
    LOAD_INTO(inv, g->inv_std + c0, n);
    if (weights) {
      LOAD_INTO(a1, g->a1 + c0, n);
      LOAD_INTO(a2, g->a2 + c0, n);
      LOAD_INTO(gs, g->gamma_inv_std + c0, n);
    }
    // Sums: [Σdz, Σdz·x̂], or [dW tap 0 ..< k, dbias].
    f16 partial[SERTRAIN_STEM_MAX_KERNEL + 1];
    d8 lo[SERTRAIN_STEM_MAX_KERNEL + 1], hi[SERTRAIN_STEM_MAX_KERNEL + 1];
    const int sums = weights ? k + 1 : 2;
    for (int i = 0; i < sums; i++) partial[i] = 0, lo[i] = 0, hi[i] = 0;
    for (int b = b0; b < b1; b++) {
      const float *xp = s->input + (long)b * s->input_stride;
      const float *y = g->output + (long)b * g->output_stride + c0;
      const float *dy = g->output_gradient + (long)b * g->output_gradient_stride + c0;
      for (long t = 0; t < length; t++) {
        conv_at(s, k, &tp, xp, t, &v[t]);
        dz[t] = 0;
      }
      // Each window's gradient to the first position whose normalised value equals the window's maximum.
      for (long p = 0; p < s->out_length; p++) {
        long wlo, whi;
        window(s, p, &wlo, &whi);
        // Rows are a whole channel row apart (2 KB for 512 channels), too far for the hardware prefetchers to
        // follow across pages: ask for the rows a few windows ahead.
        __builtin_prefetch(y + (p + PREFETCH_ROWS) * s->channels);
        __builtin_prefetch(dy + (p + PREFETCH_ROWS) * s->channels);
        f16 best, rem;
        LOAD_INTO(best, y + p * s->channels, n);
        LOAD_INTO(rem, dy + p * s->channels, n);
        for (long t = wlo; t < whi; t++) {
          i16 hit = (v[t] * sc + sh) == best;
          dz[t] = dz[t] + SELECT(hit, rem, (f16)0);
          rem = SELECT(hit, (f16)0, rem);
        }
      }
      for (long t = 0; t < length; t++) {
        const f16 xhat = (v[t] - mean) * inv;
        if (!weights) {
          partial[0] = partial[0] + dz[t];
          partial[1] = partial[1] + dz[t] * xhat;
        } else {
          f16 d = gs * (dz[t] - a1 - xhat * a2);
          if (s->relu) d = SELECT(v[t] <= 0, (f16)0, d);
          for (int j = 0; j < k; j++) partial[j] = partial[j] + xp[t + j] * d;
          partial[k] = partial[k] + d;
        }
        if (is_flush(t, length)) {
          for (int i = 0; i < sums; i++) FLUSH(partial[i], lo[i], hi[i]);
        }
      }
    }
    for (int i = 0; i < sums; i++) STORE_TOTALS(lo[i], hi[i], out + (long)i * s->channels + c0, n);
  }
  free(v);
  free(dz);
}

// The public entry points, with the common kernel sizes as constants (unrolled tap loops).
#define BY_KERNEL(call)        \
  switch (s->kernel) {         \
    case 3: call(3); break;    \
    case 5: call(5); break;    \
    default: call(s->kernel);  \
  }

SERTRAIN_CLONES
void sertrain_stem_sums(const sertrain_stem *s, int b0, int b1, const float *center, double *out) {
#define SUMS(k) sums(s, k, b0, b1, center, out)
  BY_KERNEL(SUMS)
}

SERTRAIN_CLONES
void sertrain_stem_pool(const sertrain_stem *s, int b0, int b1, const float *scale, const float *shift,
                        float *output, long output_stride) {
#define POOL(k) pool(s, k, b0, b1, scale, shift, output, output_stride)
  BY_KERNEL(POOL)
}

SERTRAIN_CLONES
void sertrain_stem_backward(const sertrain_stem *s, int b0, int b1, const sertrain_stem_gradient *g, double *out) {
#define BACKWARD(k) backward(s, k, b0, b1, g, out)
  BY_KERNEL(BACKWARD)
}
