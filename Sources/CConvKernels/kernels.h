// What the ConvNet's kernels share (stem.c, batchnorm.c, conv.c): vector types, the instruction-set clones
// (AVX-512, AVX2 and baseline x86-64 in one binary, target_clones) and 16-lane float helpers. Every file turns off
// contraction into fused multiply-adds, so every variant gives the same bits. Private to CConvKernels.
#pragma once
#pragma clang fp contract(off)

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "CConvKernels.h"
#include "CSystem.h"


typedef float f16 __attribute__((ext_vector_type(16)));
typedef int i16 __attribute__((ext_vector_type(16)));
typedef double d8 __attribute__((ext_vector_type(8)));


#define LANES 16

/// (x86-64, AVX-512: conv.c and bf16.c) The direct convolution's 12 × 32 tile: 24 float accumulators `aR0`, `aR1`
/// (row R, columns 0-15 and 16-31); a finished row stored (`c0 == 0`: the first block of input channels) or added
/// to the output row `R` (`ldo` floats apart); a kernel-gradient row added to `dw` (`ldw` floats apart).
#define ACC(R) __m512 a##R##0 = _mm512_setzero_ps(), a##R##1 = _mm512_setzero_ps()
#define STORE_ROW(R)                                                                         \
  if (R < rows) {                                                                            \
    if (c0 == 0) {                                                                           \
      _mm512_storeu_ps(out + R * ldo, a##R##0);                                              \
      _mm512_storeu_ps(out + R * ldo + 16, a##R##1);                                         \
    } else {                                                                                 \
      _mm512_storeu_ps(out + R * ldo, _mm512_add_ps(_mm512_loadu_ps(out + R * ldo), a##R##0)); \
      _mm512_storeu_ps(out + R * ldo + 16, _mm512_add_ps(_mm512_loadu_ps(out + R * ldo + 16), a##R##1)); \
    }                                                                                        \
  }
#define WADD(R)                                                                                          \
  if (R < M) {                                                                                           \
    _mm512_storeu_ps(dw + R * ldw, _mm512_add_ps(_mm512_loadu_ps(dw + R * ldw), a##R##0));                \
    _mm512_storeu_ps(dw + R * ldw + 16, _mm512_add_ps(_mm512_loadu_ps(dw + R * ldw + 16), a##R##1));      \
  }

/// (x86-64, AVX-512: conv.c and bf16.c) Transposes 16 rows of 16 floats in place.
#define TRANSPOSE16(r)                                                                                     \
  do {                                                                                                     \
    __m512 a_[16], b_[16];                                                                                 \
    for (int i = 0; i < 8; i++) {                                                                          \
      a_[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);                                              \
      a_[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);                                          \
    }                                                                                                      \
    for (int i = 0; i < 4; i++) {                                                                          \
      __m512d a0 = _mm512_castps_pd(a_[4 * i]), a1 = _mm512_castps_pd(a_[4 * i + 1]);                      \
      __m512d a2 = _mm512_castps_pd(a_[4 * i + 2]), a3 = _mm512_castps_pd(a_[4 * i + 3]);                  \
      b_[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));                                            \
      b_[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));                                        \
      b_[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));                                        \
      b_[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));                                        \
    }                                                                                                      \
    for (int q = 0; q < 4; q++) {                                                                          \
      __m512 c1 = _mm512_shuffle_f32x4(b_[q], b_[4 + q], 0x88);                                            \
      __m512 c2 = _mm512_shuffle_f32x4(b_[q], b_[4 + q], 0xdd);                                            \
      __m512 c3 = _mm512_shuffle_f32x4(b_[8 + q], b_[12 + q], 0x88);                                       \
      __m512 c4 = _mm512_shuffle_f32x4(b_[8 + q], b_[12 + q], 0xdd);                                       \
      r[q] = _mm512_shuffle_f32x4(c1, c3, 0x88);                                                           \
      r[8 + q] = _mm512_shuffle_f32x4(c1, c3, 0xdd);                                                       \
      r[4 + q] = _mm512_shuffle_f32x4(c2, c4, 0x88);                                                       \
      r[12 + q] = _mm512_shuffle_f32x4(c2, c4, 0xdd);                                                      \
    }                                                                                                      \
  } while (0)
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

/// Whether the float partial sums go into the double totals after position `t`: every 16 positions and at the
/// end of a sample (`sweepSums` in ConvNet).
static inline __attribute__((always_inline)) int is_flush(long t, long length) {
  return (t & 15) == 15 || t == length - 1;
}

/// The window of pooled output `p` (padding `same` by TensorFlow's rule: `pad` cells on the left, padded cells never
/// win), clipped to the input's `length` positions.
static inline __attribute__((always_inline)) void pool_window(long p, int pool, int stride, int pad, long length,
                                                              long *lo, long *hi) {
  long start = p * stride - pad;
  *lo = start > 0 ? start : 0;
  *hi = start + pool < length ? start + pool : length;
}


/// Prefetches rows `first ..< end` (clipped to `rows`) of `channels` floats each from `base`.
static inline __attribute__((always_inline)) void prefetch_rows(const float *base, long first, long end, long rows,
                                                                int channels, int write) {
  if (end > rows) end = rows;
  for (const float *p = base + first * channels, *e = base + end * channels; p < e; p += 16) {
    if (write) {
      __builtin_prefetch(p, 1);
    } else {
      __builtin_prefetch(p, 0);
    }
  }
}

/// Adds the float partial sums at `partial` to the double totals at `total` (16 lanes) and clears them.
#define FLUSH_AT(partial, total)                                                         \
  do {                                                                                   \
    d8 lo_, hi_;                                                                         \
    memcpy(&lo_, (total), sizeof(d8));                                                   \
    memcpy(&hi_, (total) + 8, sizeof(d8));                                               \
    FLUSH(partial, lo_, hi_);                                                            \
    memcpy((total), &lo_, sizeof(d8));                                                   \
    memcpy((total) + 8, &hi_, sizeof(d8));                                               \
  } while (0)

/// What a pool reads for channels `c0 ..< c0+n` (stem.c, batchnorm.c): the BatchNorm's affine map and, with
/// `winners` (a training forward), the statistics of the winners' `x̂` (zero without).
#define LOAD_POOL_MAPS(sc, sh, mean, inv, scale, shift, winners, c0, n) \
  do {                                                                 \
    LOAD_INTO(sc, (scale) + (c0), n);                                  \
    LOAD_INTO(sh, (shift) + (c0), n);                                  \
    mean = 0;                                                          \
    inv = 0;                                                           \
    if (winners) {                                                     \
      LOAD_INTO(mean, (winners)->mean + (c0), n);                      \
      LOAD_INTO(inv, (winners)->inv_std + (c0), n);                    \
    }                                                                  \
  } while (0)

/// Where the winners' `x̂` of pooled row `p` of sample `b` go.
static inline float *winner_row(const sertrain_pool_winners *w, int b, long p, int channels) {
  return w->xhat + (long)b * w->xhat_stride + p * channels;
}

/// Positions per tile in the backward sweeps (stem.c, batchnorm.c).
#define TILE 64

/// The pooled outputs `*first ... *last` (of `rows`) whose windows reach positions `t0 ..< t1`: window `p` starts
/// at `p*stride - pad` and reaches `pool` positions. `*first > *last` when none does (strides longer than the pool).
static inline __attribute__((always_inline)) void windows_reaching(long t0, long t1, int pool, int stride, int pad,
                                                                   long rows, long *first, long *last) {
  const long from = t0 + pad - pool + 1;
  *first = from <= 0 ? 0 : (from + stride - 1) / stride;
  *last = (t1 - 1 + pad) / stride;
  if (*last > rows - 1) *last = rows - 1;
}

/// `bytes` of zeroed scratch aligned for 16-lane vectors; stops the process with a message when memory runs out
/// (these are a few hundred KB at most).
static inline void *zeroed(size_t bytes) {
  size_t size = bytes < 64 ? 64 : (bytes + 63) / 64 * 64;
  void *p = aligned_alloc(64, size);
  if (!p) {
    fprintf(stderr, "sertrain: out of memory allocating %zu bytes of kernel scratch\n", size);
    abort();
  }
  memset(p, 0, size);
  return p;
}

/// The totals of sum `i` of every channel (`sums` runs of 16 per channel block) into `out + i*channels`.
static inline void store_totals(const double *totals, int sums, int channels, double *out) {
  for (int c0 = 0, block = 0; c0 < channels; c0 += LANES, block++) {
    const int n = channels - c0 < LANES ? channels - c0 : LANES;
    for (int i = 0; i < sums; i++) {
      memcpy(out + (long)i * channels + c0, totals + ((long)block * sums + i) * LANES, (size_t)n * sizeof(double));
    }
  }
}
