// HDF5's Fletcher-32 checksum, vectorised: HDF5's own (H5_checksum_fletcher32) adds one 16-bit word at a time, a
// share of convert's CPU time worth taking back (BENCHMARKS.md, convert).
#include <stddef.h>
#include <stdint.h>
#include "CSystem.h"

SERTRAIN_CLONES uint32_t sertrain_fletcher32(const void *bytes, unsigned long count) {
  const uint8_t *p = bytes;
  size_t words = count / 2;
  uint32_t sum1 = 0, sum2 = 0;
  // HDF5 adds blocks of at most 360 big-endian words (sum1 += w, sum2 += sum1 for each) and folds both sums to 16
  // bits after each block. A block's effect in closed form, with HDF5's 32-bit wrapping:
  // sum2 += n sum1 + sum over j of (n - j) w_j, sum1 += sum of w_j. The loop over j vectorises.
  while (words) {
    uint32_t n = words > 360 ? 360 : (uint32_t)words;
    words -= n;
    uint32_t s = 0, t = 0;
    for (uint32_t j = 0; j < n; j++) {
      uint32_t w = (uint32_t)p[2 * j] << 8 | p[2 * j + 1];
      s += w;
      t += (n - j) * w;
    }
    p += 2 * (size_t)n;
    sum2 += n * sum1 + t;
    sum1 += s;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (count % 2) {  // a last odd byte is the high byte of a word
    sum1 += (uint32_t)p[0] << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return sum2 << 16 | sum1;
}
