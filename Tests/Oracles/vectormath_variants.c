// Runs the vector math of Sources/CSupport/vectormath.c over 2 million awkward inputs, 200 vocoder steps and 500
// windowed frames and power spectra, and prints one hash of every output bit. VectorMathTests compiles it once
// per instruction set and expects the same hash from each: the AVX-512, AVX2 and baseline variants that one
// binary carries must agree to the bit.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "CSupport.h"

/// FNV-1a over a float's bits.
static uint64_t mix(uint64_t h, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  return (h ^ bits) * 1099511628211ULL;
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
  printf("%016llx\n", (unsigned long long)h);
  return 0;
}
