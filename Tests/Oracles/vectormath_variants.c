// Runs the vector math of Sources/CSupport/vectormath.c over 2 million awkward inputs, 200 vocoder steps and 500
// windowed frames and power spectra, and prints one hash of every output bit. VectorMathTests compiles it once
// per instruction set and expects the same hash from each: the AVX-512, AVX2 and baseline variants that one
// binary carries must agree to the bit.
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
void sertrain_magnitude_angle(const float *re, const float *im, float *magnitude, float *angle, long count);
void sertrain_cos_sin(const float *angles, float *cos_out, float *sin_out, long count);
void sertrain_window_frame(const float *frame, const double *window, double *out, long count);
void sertrain_power_strided(const double *spectrum, long bins, float *power, long stride);
void sertrain_vocoder_step(
    const float *magnitude_a, const float *magnitude_b, const float *angle_a, const float *angle_b,
    const double *advance, double alpha, float *phase, float *column, long bins);
int main(int argc, char **argv) {
  long n = 2000003; float *a = malloc(n*4), *b = malloc(n*4), *c = malloc(n*4), *d = malloc(n*4);
  uint64_t s = 12345;
  for (long i = 0; i < n; i++) { s = s*6364136223846793005ULL + 1442695040888963407ULL; uint32_t u = s >> 32;
    float f; if (i % 3 == 0) { union {uint32_t u; float f;} x = {u & 0xbfffffff}; f = x.f; } else f = ((int32_t)u) * 1e-4f;
    a[i] = f; s = s*6364136223846793005ULL + 1; b[i] = ((int32_t)(s >> 32)) * 3e-5f; if (i % 101 == 0) b[i] = 0; if (i % 103 == 0) a[i] = -0.0f; }
  sertrain_magnitude_angle(a, b, c, d, n);
  uint64_t h = 1469598103934665603ULL;
  for (long i = 0; i < n; i++) { h = (h ^ *(uint32_t*)&c[i]) * 1099511628211ULL; h = (h ^ *(uint32_t*)&d[i]) * 1099511628211ULL; }
  for (long i = 0; i < n; i++) a[i] = b[i] * 7;  // angles up to ~4.5e5
  sertrain_cos_sin(a, c, d, n);
  for (long i = 0; i < n; i++) { h = (h ^ *(uint32_t*)&c[i]) * 1099511628211ULL; h = (h ^ *(uint32_t*)&d[i]) * 1099511628211ULL; }
  // 200 vocoder steps over 1025 bins (the tail of a vector included), magnitudes and angles from above.
  long bins = 1025;
  double *advance = malloc(bins * sizeof(double));
  float *phase = malloc(bins * 4), *column = malloc(2 * bins * 4);
  for (long k = 0; k < bins; k++) { advance[k] = 3.141592653589793 * 512 * k / (bins - 1); phase[k] = d[k]; }
  sertrain_magnitude_angle(b, a, c, d, n);
  for (long t = 0; t < 200; t++) {
    long at = (t * 977) % (n - 2 * bins);
    sertrain_vocoder_step(c + at, c + at + bins, d + at, d + at + bins, advance, (t % 17) / 17.0, phase, column, bins);
    for (long k = 0; k < 2 * bins; k++) h = (h ^ *(uint32_t*)&column[k]) * 1099511628211ULL;
  }
  for (long k = 0; k < bins; k++) h = (h ^ *(uint32_t*)&phase[k]) * 1099511628211ULL;
  // Power spectra of 500 frames of 1025 complex doubles, stored 4 apart.
  double *spectrum = malloc(2 * bins * sizeof(double));
  float *power = malloc(4 * bins * sizeof(float));
  for (long t = 0; t < 500; t++) {
    for (long k = 0; k < 2 * bins; k++) spectrum[k] = (double)a[(t * 131 + k) % n] * 1e3 + b[(t * 37 + k) % n];
    sertrain_window_frame(b + t * 97, spectrum, spectrum, 2 * bins - 3);
    sertrain_power_strided(spectrum, bins, power + (t & 3), 4);
    for (long k = 0; k < bins; k++) h = (h ^ *(uint32_t*)&power[4 * k + (t & 3)]) * 1099511628211ULL;
  }
  printf("%016llx\n", (unsigned long long)h);
}
