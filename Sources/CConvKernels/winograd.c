// A Conv1D's passes by Winograd's minimal filtering (`Conv1DLayer` in ConvNet): F(4, k) for the inference forward
// and the input gradient, four outputs of a k-tap correlation from n = k+3 products instead of 4k, so the
// channel-mixing GEMMs do n/4k of the direct convolution's multiplies (8/20 for k = 5, 6/12 for k = 3); and F(k, 4)
// for the kernel gradient, the k taps from the same tiles of the input and four rows of the output gradient
// (`sertrain_winograd_gradient`), its products summed over the tiles by the GEMMs.
//
// Per tile of four output positions (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", 2016):
//   V_p = Σ_q BT[p][q] · d_q         the tile's n padded input rows d_q (cin each), here
//   M_p = V_p · U_p                  one GEMM per point p over every tile of a chunk (OpenBLAS, in ConvNet)
//   y_i = Σ_p AT[i][p] · M_p         the four output rows, here
// with U_p = Σ_j G[p][j] · W_j the kernel's transform. BT, G and AT come from evaluating at the points
// 0, ±1, ±2, ±1/2 and infinity (ConvNet's `WinogradTransform`). Sums run in a fixed order with no contraction into
// fused multiply-adds (kernels.h), so every variant gives the same bits.
#include "kernels.h"

/// The padded input row `row` of sample `b`, or NULL when it lies past the sample's data (padding, or another
/// sample's rows): the transforms treat it as zeros, so no sample's output depends on its neighbours.
static inline const float *input_row(const sertrain_winograd *w, long b, long row) {
  if (row >= w->valid_rows) return NULL;
  return w->input.data + (b * w->input.rows_per_sample + row) * w->input.channels;
}

/// The sample of the chunk's tile `tile` and the first of its four output rows in that sample.
static inline void tile_position(const sertrain_winograd *w, long tile, long *b, long *t0) {
  const long per_sample = (w->input.length + 3) / 4;
  *b = w->first_sample + tile / per_sample;
  *t0 = 4 * (tile % per_sample);
}

/// `dst[0..<n] = Σ_q coef[q] · src[q][0..<n]` over the sources that are not NULL and whose coefficient is not zero,
/// in order of q.
static inline __attribute__((always_inline)) void combine(float *restrict dst, const float *const *src,
                                                          const float *coef, int count, long n) {
  for (long c = 0; c < n; c++) dst[c] = 0;
  for (int q = 0; q < count; q++) {
    const float a = coef[q];
    const float *restrict s = src[q];
    if (a == 0 || s == NULL) continue;
    for (long c = 0; c < n; c++) dst[c] += a * s[c];
  }
}

SERTRAIN_CLONES
void sertrain_winograd_kernel(const float *weight, int kernel, long in_channels, long out_channels, const float *g,
                              int points, float *u) {
  const long plane = in_channels * out_channels;
  const float *taps[SERTRAIN_WINOGRAD_MAX_POINTS];
  for (int j = 0; j < kernel; j++) taps[j] = weight + j * plane;
  for (int p = 0; p < points; p++) {
    for (long c = 0; c < in_channels; c++) {
      const float *rows[SERTRAIN_WINOGRAD_MAX_POINTS];
      for (int j = 0; j < kernel; j++) rows[j] = taps[j] + c * out_channels;
      combine(u + p * plane + c * out_channels, rows, g + p * kernel, kernel, out_channels);
    }
  }
}

SERTRAIN_CLONES
void sertrain_winograd_input(const sertrain_winograd *w, long first, long end) {
  const int n = w->points;
  const long channels = w->input.channels;
  for (long tile = first; tile < end; tile++) {
    long b, t0;
    tile_position(w, tile, &b, &t0);
    const float *rows[SERTRAIN_WINOGRAD_MAX_POINTS];
    for (int q = 0; q < n; q++) rows[q] = input_row(w, b, t0 + q);
    for (int p = 0; p < n; p++) {
      combine(w->v + (p * w->tiles + tile) * channels, rows, w->bt + p * n, n, channels);
    }
  }
}

SERTRAIN_CLONES
void sertrain_winograd_output(const sertrain_winograd *w, long first, long end) {
  const int n = w->points;
  const long channels = w->out_channels, length = w->input.length;
  for (long tile = first; tile < end; tile++) {
    long b, t0;
    tile_position(w, tile, &b, &t0);
    const float *products[SERTRAIN_WINOGRAD_MAX_POINTS];
    for (int p = 0; p < n; p++) products[p] = w->m + (p * w->tiles + tile) * channels;
    for (int i = 0; i < 4 && t0 + i < length; i++) {
      float *row = w->output + (b * w->input.rows_per_sample + t0 + i) * channels;
      combine(row, products, w->at + i * n, n, channels);
    }
  }
}

SERTRAIN_CLONES
void sertrain_winograd_gradient(const sertrain_winograd *w, const float *gradient, const float *g4, long first,
                                long end) {
  const long channels = w->out_channels, length = w->input.length;
  for (long tile = first; tile < end; tile++) {
    long b, t0;
    tile_position(w, tile, &b, &t0);
    const float *rows[4];
    for (int i = 0; i < 4; i++) {
      rows[i] = t0 + i < length ? gradient + (b * w->input.rows_per_sample + t0 + i) * channels : NULL;
    }
    for (int p = 0; p < w->points; p++) {
      combine(w->m + (p * w->tiles + tile) * channels, rows, g4 + p * 4, 4, channels);
    }
  }
}
