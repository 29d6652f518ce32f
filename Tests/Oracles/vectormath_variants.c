// Runs the vector math of Sources/CAudioKernels/vectormath.c over 2 million awkward inputs, 200 vocoder steps and 500
// windowed frames and power spectra, a million decibels and logarithms, an overlap-add, and the ConvNet kernels of
// stem.c and batchnorm.c over three samples of 150 positions and 37 channels (a partial 16-lane block, ties in every
// pooling window of zeros), and the Winograd transforms of winograd.c (kernel, input, output and gradient over 2
// samples of 37 positions and 19 channels, with arbitrary transform matrices: only the variants' agreement matters),
// and prints one hash of every output bit. VectorMathTests compiles it once per instruction set and expects the same
// hash from each: the AVX-512, AVX2 and baseline variants that one binary carries must agree to the bit.
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "CAudioKernels.h"
#include "CConvKernels.h"

/// FNV-1a over a float's bits.
static uint64_t mix(uint64_t h, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  return (h ^ bits) * 1099511628211ULL;
}

static uint64_t mix_double(uint64_t h, double v) {
  uint64_t bits;
  memcpy(&bits, &v, sizeof bits);
  return (h ^ bits) * 1099511628211ULL;
}

/// The stem and BatchNorm/pool kernels forward and backward on values taken from `a` and `b`.
static uint64_t convnet_kernels(uint64_t h, const float *a, const float *b) {
  enum { B = 3, L = 150, K = 5, C = 37, S = L + 2 * K, OUT = 75 };
  float *input = calloc(B * S, 4), *weight = malloc(K * C * 4), *bias = malloc(C * 4), *rows = malloc(B * L * C * 4);
  float *scale = malloc(C * 4), *shift = malloc(C * 4), *mean = malloc(C * 4), *inv = malloc(C * 4);
  float *a1 = malloc(C * 4), *a2 = malloc(C * 4), *gs = malloc(C * 4);
  float *y = malloc(B * OUT * C * 4), *dy = malloc(B * OUT * C * 4), *dx = malloc(B * L * C * 4);
  float *xhat = malloc(B * OUT * C * 4);
  double *out = malloc((K + 1) * C * sizeof(double));
  for (int i = 0; i < B * S; i++) input[i] = (i % S >= 2 && i % S < L + 2) ? b[i] * 10 : 0;
  for (int i = 0; i < K * C; i++) weight[i] = b[1000 + i] * 3;
  for (int i = 0; i < B * L * C; i++) rows[i] = i % 7 == 0 ? 0 : b[5000 + i] * 5;
  for (int i = 0; i < C; i++) {
    bias[i] = b[200 + i];
    scale[i] = 0.5f + (b[300 + i] < 0 ? -b[300 + i] : b[300 + i]);
    shift[i] = b[400 + i];
    mean[i] = b[500 + i];
    inv[i] = 1.5f + b[600 + i];
    a1[i] = b[700 + i] * 0.1f;
    a2[i] = b[800 + i] * 0.1f;
    gs[i] = b[900 + i];
  }
  for (int i = 0; i < B * OUT * C; i++) dy[i] = a[i % 1000003] * 1e-3f;
  sertrain_stem stem = {input, S, L, K, C, weight, bias, 1, 5, 2, 1, OUT};
  sertrain_norm norm = {rows, L * C, L, C, bias, 1, 5, 2, 1, OUT};
  sertrain_norm_gradient g = {y, dy, OUT * C, OUT * C, scale, shift, mean, inv, a1, a2, gs};
  sertrain_pool_winners winners = {mean, inv, xhat, OUT * C};
  for (int which = 0; which < 2; which++) {
    if (which == 0) {
      sertrain_stem_sums(&stem, 0, B, NULL, out);
      for (int i = 0; i < C; i++) h = mix_double(h, out[i]);
      sertrain_stem_sums(&stem, 0, B, mean, out);
      for (int i = 0; i < C; i++) h = mix_double(h, out[i]);
      sertrain_stem_pool(&stem, 0, B, scale, shift, y, OUT * C, &winners);
    } else {
      sertrain_norm_sums(&norm, 0, B, NULL, out);
      for (int i = 0; i < C; i++) h = mix_double(h, out[i]);
      sertrain_norm_sums(&norm, 0, B, mean, out);
      for (int i = 0; i < C; i++) h = mix_double(h, out[i]);
      sertrain_norm_pool(&norm, 0, B, scale, shift, y, OUT * C, &winners);
    }
    for (int i = 0; i < B * OUT * C; i++) h = mix(h, y[i]);
    for (int i = 0; i < B * OUT * C; i++) h = mix(h, xhat[i]);
    sertrain_pooled_sums(dy, OUT * C, xhat, OUT * C, OUT, C, 0, B, out);
    for (int i = 0; i < 2 * C; i++) h = mix_double(h, out[i]);
    if (which == 0) {
      sertrain_stem_backward(&stem, 0, B, &g, out);
      for (int i = 0; i < (K + 1) * C; i++) h = mix_double(h, out[i]);
    } else {
      sertrain_norm_backward(&norm, 0, B, &g, dx, L * C, out);
      for (int i = 0; i < C; i++) h = mix_double(h, out[i]);
      for (int i = 0; i < B * L * C; i++) h = mix(h, dx[i]);
    }
  }
  free(input), free(weight), free(bias), free(rows), free(scale), free(shift), free(mean), free(inv);
  free(a1), free(a2), free(gs), free(y), free(dy), free(dx), free(xhat), free(out);
  return h;
}

/// winograd.c's four transforms with 8 points (a 5-tap kernel) on values taken from `a` and `b`.
static uint64_t winograd_kernels(uint64_t h, const float *a, const float *b) {
  enum { B = 2, L = 37, K = 5, P = 8, CI = 19, CO = 21, S = L + 2 * K, TILES = B * ((L + 3) / 4) };
  float *input = calloc(B * S * CI, 4), *weight = malloc(K * CI * CO * 4), *u = malloc(P * CI * CO * 4);
  float *g = malloc(P * K * 4), *bt = malloc(P * P * 4), *at = malloc(4 * P * 4), *g4 = malloc(P * 4 * 4);
  float *v = malloc(P * TILES * CI * 4), *m = malloc(P * TILES * CO * 4), *out = calloc(B * S * CO, 4);
  float *gradient = malloc(B * S * CO * 4);
  for (int i = 0; i < B * S * CI; i++) input[i] = (i / CI) % S < L + 2 ? b[7000 + i] * 10 : 0;
  for (int i = 0; i < K * CI * CO; i++) weight[i] = b[9000 + i] * 3;
  for (int i = 0; i < P * K; i++) g[i] = a[100 + i];
  for (int i = 0; i < P * P; i++) bt[i] = a[300 + i] * 2;
  for (int i = 0; i < 4 * P; i++) at[i] = a[500 + i];
  for (int i = 0; i < P * 4; i++) g4[i] = b[700 + i] * 5;
  for (int i = 0; i < P * TILES * CO; i++) m[i] = b[20000 + i];
  for (int i = 0; i < B * S * CO; i++) gradient[i] = a[30000 + i];
  sertrain_winograd_kernel(weight, K, CI, CO, g, P, u);
  for (int i = 0; i < P * CI * CO; i++) h = mix(h, u[i]);
  sertrain_winograd w = {{input, CI, S, L, K}, L + 2, 0, TILES, P, bt, at, v, m, CO, out};
  sertrain_winograd_input(&w, 0, TILES);
  for (int i = 0; i < P * TILES * CI; i++) h = mix(h, v[i]);
  sertrain_winograd_output(&w, 0, TILES);
  for (int i = 0; i < B * S * CO; i++) h = mix(h, out[i]);
  sertrain_winograd_gradient(&w, gradient, g4, 0, TILES);
  for (int i = 0; i < P * TILES * CO; i++) h = mix(h, m[i]);
  free(input), free(weight), free(u), free(g), free(bt), free(at), free(g4), free(v), free(m), free(out), free(gradient);
  return h;
}

int main(void) {
  long n = 2000003;
  float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4), *d = malloc(n * 4);
  // Awkward inputs: raw bit patterns (every third, sign and exponent bits mixed), scaled integers, exact zeros
  // and negative zeros.
  uint64_t s = 12345;
  for (long i = 0; i < n; i++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    uint32_t u = s >> 32;
    if (i % 3 == 0) {
      uint32_t bits = u & 0xbfffffff;
      memcpy(&a[i], &bits, sizeof bits);
    } else {
      a[i] = ((int32_t)u) * 1e-4f;
    }
    s = s * 6364136223846793005ULL + 1;
    b[i] = ((int32_t)(s >> 32)) * 3e-5f;
    if (i % 101 == 0) b[i] = 0;
    if (i % 103 == 0) a[i] = -0.0f;
  }
  uint64_t h = 1469598103934665603ULL;
  sertrain_magnitude_angle(a, b, c, d, n);
  for (long i = 0; i < n; i++) h = mix(mix(h, c[i]), d[i]);
  for (long i = 0; i < n; i++) a[i] = b[i] * 7;  // angles up to ~4.5e5
  sertrain_cos_sin(a, c, d, n);
  for (long i = 0; i < n; i++) h = mix(mix(h, c[i]), d[i]);
  // 200 vocoder steps over 1025 bins (the tail of a vector included), magnitudes and angles from above.
  long bins = 1025;
  double *advance = malloc(bins * sizeof(double));
  float *phase = malloc(bins * 4), *column = malloc(2 * bins * 4);
  for (long k = 0; k < bins; k++) {
    advance[k] = 3.141592653589793 * 512 * k / (bins - 1);
    phase[k] = d[k];
  }
  sertrain_magnitude_angle(b, a, c, d, n);
  for (long t = 0; t < 200; t++) {
    long at = (t * 977) % (n - 2 * bins);
    sertrain_vocoder_step(c + at, c + at + bins, d + at, d + at + bins, advance, (t % 17) / 17.0, phase, column, bins);
    for (long k = 0; k < 2 * bins; k++) h = mix(h, column[k]);
  }
  for (long k = 0; k < bins; k++) h = mix(h, phase[k]);
  // 500 windowed frames and their power spectra of 1025 complex doubles, stored 4 apart.
  double *spectrum = malloc(2 * bins * sizeof(double));
  float *power = malloc(4 * bins * sizeof(float));
  for (long t = 0; t < 500; t++) {
    for (long k = 0; k < 2 * bins; k++) spectrum[k] = (double)a[(t * 131 + k) % n] * 1e3 + b[(t * 37 + k) % n];
    sertrain_window_frame(b + t * 97, spectrum, spectrum, 2 * bins - 3);
    sertrain_power_strided(spectrum, bins, power + (t & 3), 4);
    for (long k = 0; k < bins; k++) h = mix(h, power[4 * k + (t & 3)]);
  }
  // Decibels of a million powers (raw bit patterns: zeros, NaN, subnormals, infinities and every magnitude; a
  // partial last vector), and the natural logarithm of positive doubles.
  long m = 1000003;
  for (long i = 0; i < m; i++) {
    uint32_t bits;
    memcpy(&bits, &a[(i * 7) % n], sizeof bits);
    bits &= 0x7fffffff;
    memcpy(&c[i], &bits, sizeof bits);
  }
  h = mix(h, sertrain_power_db(c, m));
  for (long i = 0; i < m; i++) h = mix(h, c[i]);
  double *x = malloc(m * sizeof(double)), *ln = malloc(m * sizeof(double));
  for (long i = 0; i < m; i++) x[i] = fabs((double)b[i]) * 1e3 + 1e-300 + (double)i;
  sertrain_natural_log(x, ln, m);
  for (long i = 0; i < m; i++) h = mix_double(h, ln[i]);
  // An inverse STFT's overlap-add: 300 frames of 2048 (and a last partial vector of 2045) at a hop of 512.
  float *signal = calloc(512 * 300 + 2048, 4), *norm = calloc(512 * 300 + 2048, 4);
  for (long t = 0; t < 300; t++) {
    for (long k = 0; k < 2048; k++) spectrum[k] = b[(t * 211 + k) % n] + 0.5;
    sertrain_overlap_add(a + t * 313, spectrum, 2048.0f, signal + 512 * t, norm + 512 * t, t == 299 ? 2045 : 2048);
  }
  for (long i = 0; i < 512 * 300 + 2048; i++) h = mix(mix(h, signal[i]), norm[i]);
  h = convnet_kernels(h, a, b);
  h = winograd_kernels(h, a, b);
  printf("%016llx\n", (unsigned long long)h);
  return 0;
}
