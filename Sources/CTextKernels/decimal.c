// Decimal text to float32, correctly rounded, for `sertrain convert` (about 100 million cells per seed CSV).
//
// The plain cell (at most 31 bytes before its comma: a sign, digits, one dot, no exponent) is parsed with SSE4.1
// and no data-dependent jump: a 16-byte comma search gives the next cell's start (so successive cells overlap in
// the CPU), two compares check the bytes, one shuffle gathers the digits without the dot, right-aligned, three
// multiply-adds make the integer mantissa, and the value is that mantissa times the nearest double to 10^-k.
// Cells past 15 bytes (float64 text) take a second 16 bytes the same way.
// Everything else (and every cell on CPUs without SSE4.1) takes `sertrain_parse_decimal`, digit by digit.
// (Swift's first version switched over digit counts; its jump tables mispredicted with the data's number widths.)
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "CTextKernels.h"

#if defined(__x86_64__)
#include <smmintrin.h>
#endif

static const double kPowerOfTen[45] = {
    1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8,
    1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,   1e5,   1e6,  1e7,
    1e8,   1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21, 1e22};

/// The float nearest to `mantissa * 10^exp10` (|exp10| at most 22) through the double product, or 0 when that
/// product may round differently from the exact value. `mantissa` is the decimal integer's value in double after at
/// most three roundings (none to 2^53; a long cell's halves joined: the high half, its scaling and the sum). With
/// 10^exp10's rounding and the product's, at most five roundings of 2^-53 relative: within 5 ulps of the exact
/// value. Rounding it to float is exact unless a float rounding midpoint may lie between the two: its 29 bits below
/// float's precision within 8 of the midpoint (1 in 2^25), float's subnormal range, or past float's largest value.
static inline int product_to_float(double mantissa, long exp10, float *value) {
  double d = mantissa * kPowerOfTen[exp10 + 22];
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  int64_t fromMidpoint = (int64_t)(bits & ((1ull << 29) - 1)) - (1ll << 28);
  if ((fromMidpoint >= -8 && fromMidpoint <= 8) || d < FLT_MIN || d > FLT_MAX) return 0;
  *value = (float)d;
  return 1;
}

int sertrain_parse_decimal(const unsigned char *p, long limit, float *value, long *used) {
  long i = 0;
  int negative = 0;
  if (i < limit && (p[i] == '-' || p[i] == '+')) negative = p[i++] == '-';
  // At most 19 significant digits are kept; digits past them move the exponent (integer part) or are dropped
  // (fraction), and a dropped non-zero digit sends the value to strtof.
  uint64_t mantissa = 0;
  long digits = 0, exp10 = 0;
  int dropped = 0;
  for (; i < limit && (unsigned)(p[i] - '0') < 10; i++, digits++) {
    if (mantissa < 1000000000000000000ull) {
      mantissa = mantissa * 10 + (p[i] - '0');
    } else {
      exp10++;
      dropped |= p[i] != '0';
    }
  }
  if (i < limit && p[i] == '.') {
    for (i++; i < limit && (unsigned)(p[i] - '0') < 10; i++, digits++) {
      if (mantissa < 1000000000000000000ull) {
        mantissa = mantissa * 10 + (p[i] - '0');
        exp10--;
      } else {
        dropped |= p[i] != '0';
      }
    }
  }
  if (digits == 0) {
    *used = 0;
    *value = 0;
    return SERTRAIN_CELL_TEXT;
  }
  if (i < limit && (p[i] | 0x20) == 'e') {  // an exponent, when digits follow the 'e'
    long k = i + 1, e = 0, eDigits = 0;
    int eNegative = 0;
    if (k < limit && (p[k] == '-' || p[k] == '+')) eNegative = p[k++] == '-';
    for (; k < limit && (unsigned)(p[k] - '0') < 10; k++, eDigits++) {
      if (e < 100000) e = e * 10 + (p[k] - '0');
    }
    if (eDigits > 0) {
      exp10 += eNegative ? -e : e;
      i = k;
    }
  }
  *used = i;
  float f;
  if (mantissa == 0) {
    f = 0;
  } else if (dropped || exp10 < -22 || exp10 > 22 || !product_to_float((double)mantissa, exp10, &f)) {
    // The exact fallback: strtof on a NUL-terminated copy of the bytes used.
    char small[64];
    char *copy = i < (long)sizeof small ? small : malloc((size_t)i + 1);
    if (!copy) abort();
    memcpy(copy, p, (size_t)i);
    copy[i] = 0;
    f = strtof(copy, NULL);
    if (copy != small) free(copy);
    f = __builtin_fabsf(f);  // the sign is applied below
  }
  if (f > FLT_MAX) {
    *value = 0;
    return SERTRAIN_CELL_OUT_OF_RANGE;
  }
  *value = negative ? -f : f;
  return SERTRAIN_CELL_NUMBER;
}

#if defined(__x86_64__)
/// kGatherDigits[n][k]: the shuffle that takes the digits of n bytes (0 to 16) whose dot is at byte k (k = n: no
/// dot) and right-aligns them in 16 bytes, the dot left out; -1 selects a zero. Filled before main.
static signed char kGatherDigits[17][17][16];

__attribute__((constructor)) static void fill_gather_digits(void) {
  for (int n = 0; n <= 16; n++) {
    for (int k = 0; k <= 16; k++) {
      memset(kGatherDigits[n][k], -1, 16);
      int j = 15;
      for (int i = n - 1; i >= 0; i--) {
        if (i != k) kGatherDigits[n][k][j--] = (signed char)i;
      }
    }
  }
}

/// What 16 bytes of a cell hold: digit bytes, dots, and the digits' values (others 0).
typedef struct {
  __m128i values;
  unsigned digits, dots;
} classified;

__attribute__((target("sse4.1"))) static inline classified classify(__m128i v) {
  __m128i d = _mm_sub_epi8(v, _mm_set1_epi8('0'));
  __m128i isDigit = _mm_cmpeq_epi8(_mm_min_epu8(d, _mm_set1_epi8(9)), d);
  classified c = {_mm_and_si128(d, isDigit), (unsigned)_mm_movemask_epi8(isDigit),
                  (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('.')))};
  return c;
}

/// The integer that the digits of `n` bytes spell, the dot at `dotAt` (n: none) left out: at most 16 digits.
__attribute__((target("sse4.1"))) static inline uint64_t gather_integer(__m128i values, unsigned n, unsigned dotAt) {
  __m128i d = _mm_shuffle_epi8(values, _mm_loadu_si128((const __m128i *)kGatherDigits[n][dotAt]));
  __m128i pairs = _mm_maddubs_epi16(d, _mm_set1_epi16(0x010A));      // 10 a + b
  __m128i fours = _mm_madd_epi16(pairs, _mm_set1_epi32(0x00010064));  // 100 ab + cd
  __m128i eights = _mm_madd_epi16(_mm_packus_epi32(fours, fours), _mm_set1_epi32(0x00012710));  // 10^4 x + y
  return (uint64_t)(uint32_t)_mm_cvtsi128_si32(eights) * 100000000u + (uint32_t)_mm_extract_epi32(eights, 1);
}

/// A plain cell at `p` (`room` bytes readable): a sign, digits and at most one dot, at most 31 bytes before its
/// comma. Sets `*length` (its bytes before the comma) and `*value` and returns 1, or returns 0 for anything else.
/// Cells of up to 15 bytes (8 significant digits and the like) take one 16-byte load; longer ones (a float32
/// written as float64, "-344.8731384277344") two, their halves' integers joined in double.
__attribute__((target("sse4.1,popcnt"))) static inline int parse_plain_cell(const unsigned char *p, long room,
                                                                            long *length, float *value) {
  __m128i v = _mm_loadu_si128((const __m128i *)p);
  unsigned commas = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(',')));
  unsigned sign = p[0] == '-' || p[0] == '+';
  classified a = classify(v);
  double mantissa;
  long fraction;
  if (commas) {
    unsigned n = (unsigned)__builtin_ctz(commas);
    *length = n;
    unsigned cell = (1u << n) - 1, digits = a.digits & cell, dot = a.dots & cell;
    if ((cell & ~digits & ~dot & ~sign) != 0 || __builtin_popcount(dot) > 1 || digits == 0) return 0;
    unsigned dotAt = dot ? (unsigned)__builtin_ctz(dot) : n;
    // (A signed conversion is one instruction; at most 15 digits.)
    mantissa = (double)(int64_t)gather_integer(a.values, n, dotAt);
    fraction = dot ? n - dotAt - 1 : 0;
  } else {
    if (room < 32) return 0;
    __m128i w = _mm_loadu_si128((const __m128i *)(p + 16));
    unsigned n = (unsigned)__builtin_ctz((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(w, _mm_set1_epi8(','))) | 0x10000);
    *length = 16 + n;
    classified b = classify(w);
    unsigned cell = (1u << n) - 1, dot1 = a.dots, dot2 = b.dots & cell;
    if (n == 16 || (0xFFFF & ~a.digits & ~dot1 & ~sign) != 0 || (cell & ~b.digits & ~dot2) != 0 ||
        __builtin_popcount(dot1) + __builtin_popcount(dot2) > 1) {
      return 0;
    }
    unsigned dotAt1 = dot1 ? (unsigned)__builtin_ctz(dot1) : 16, dotAt2 = dot2 ? (unsigned)__builtin_ctz(dot2) : n;
    long lowDigits = n - (dot2 != 0);
    fraction = dot1 ? 15 - dotAt1 + lowDigits : dot2 ? n - dotAt2 - 1 : 0;
    if (fraction > 22) return 0;
    // The halves' integers are exact; in double the high one (16 digits) may round, and so may its scaling and the sum.
    mantissa = (double)(int64_t)gather_integer(a.values, 16, dotAt1) * kPowerOfTen[22 + lowDigits] +
               (double)(int64_t)gather_integer(b.values, n, dotAt2);
  }
  float f = 0;
  if (mantissa != 0 && !product_to_float(mantissa, -fraction, &f)) return 0;
  uint32_t bits;  // the sign set without a jump: signs vary from cell to cell and would be mispredicted
  memcpy(&bits, &f, sizeof bits);
  bits |= (uint32_t)(p[0] == '-') << 31;
  memcpy(value, &bits, sizeof bits);
  return 1;
}
#endif

/// The cells loop; `plainCell` (inlined) parses the plain cells when the line has 16 bytes left.
static inline __attribute__((always_inline)) long parse_cells(
    const unsigned char *line, long *position, long end, float *out, long max,
    int (*plainCell)(const unsigned char *, long, long *, float *)) {
  long pos = *position, cells = 0;
  while (cells < max && pos < end) {
    float value;
    if (plainCell) {  // never reads past the line's end
      long length;
      while (cells < max && pos <= end - 16 && plainCell(line + pos, end - pos, &length, &value)) {
        out[cells++] = value;
        pos += length + 1;
      }
      if (cells == max || pos >= end) break;
    }
    const unsigned char *p = line + pos;
    long used;
    if (sertrain_parse_decimal(p, end - pos, &value, &used) != SERTRAIN_CELL_NUMBER || used == 0) break;
    long stop = pos + used;
    if (stop != end && line[stop] != ',') break;
    out[cells++] = value;
    pos = stop + 1;
  }
  *position = pos;
  return cells;
}

#if defined(__x86_64__)
__attribute__((target("sse4.1,popcnt"))) static long parse_cells_sse41(const unsigned char *line, long *position, long end,
                                                                float *out, long max) {
  return parse_cells(line, position, end, out, max, parse_plain_cell);
}
#endif

/// 1 when the CPU runs `parse_cells_sse41`.
static inline int has_sse41(void) {
#if defined(__x86_64__)
  return __builtin_cpu_supports("sse4.1") && __builtin_cpu_supports("popcnt");
#else
  return 0;
#endif
}

const char *sertrain_number_cells_level(void) { return has_sse41() ? "SSE4.1" : "digit by digit"; }

long sertrain_parse_number_cells(const unsigned char *line, long *position, long end, float *out, long max) {
#if defined(__x86_64__)
  if (has_sse41()) return parse_cells_sse41(line, position, end, out, max);
#endif
  return parse_cells(line, position, end, out, max, 0);
}
