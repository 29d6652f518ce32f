// Decimal text to float32, correctly rounded, for `sertrain convert` (about 100 million cells per seed CSV).
//
// The common cell (a sign, up to 7 integer digits, up to 15 digits in all, no exponent) is parsed without a loop
// or a data-dependent jump: eight bytes at a time are classified and converted with SWAR arithmetic, the powers
// of ten come from tables, and the value is the exact integer mantissa times the nearest double to 10^-k. A
// switch over digit counts (Swift's) compiled to jump tables whose targets changed from cell to cell with the
// data's number widths; the mispredicted jumps, not the arithmetic, were most of the parse's time.
#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "CTextKernels.h"

static const double kPowerOfTen[45] = {
    1e-22, 1e-21, 1e-20, 1e-19, 1e-18, 1e-17, 1e-16, 1e-15, 1e-14, 1e-13, 1e-12, 1e-11, 1e-10, 1e-9, 1e-8,
    1e-7,  1e-6,  1e-5,  1e-4,  1e-3,  1e-2,  1e-1,  1e0,   1e1,   1e2,   1e3,   1e4,   1e5,   1e6,  1e7,
    1e8,   1e9,   1e10,  1e11,  1e12,  1e13,  1e14,  1e15,  1e16,  1e17,  1e18,  1e19,  1e20,  1e21, 1e22};
static const uint64_t kIntegerPowerOfTen[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};

/// The float nearest to `mantissa * 10^exp10` (mantissa at most 2^53, |exp10| at most 22) through the double
/// product, or 0 when that product may round differently from the exact value. The product is within 2 ulps of
/// the exact value (10^exp10's rounding and the product's, half an ulp each, relative); rounding it to float is
/// exact unless a float rounding midpoint may lie between the two: its 29 bits below float's precision within 4
/// of the midpoint (1 in 2^26), or float's subnormal range.
static inline int product_to_float(uint64_t mantissa, long exp10, float *value) {
  double d = (double)mantissa * kPowerOfTen[exp10 + 22];
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  int64_t fromMidpoint = (int64_t)(bits & ((1ull << 29) - 1)) - (1ll << 28);
  if ((fromMidpoint >= -4 && fromMidpoint <= 4) || d < FLT_MIN) return 0;
  *value = (float)d;
  return 1;
}

/// The number of decimal digits that begin the eight bytes of `v` (byte 0 first), 0 to 8.
static inline int digit_run(uint64_t v) {
  // A byte is a digit when its high nibble is 3 and adding 6 keeps it so. (A carry out of a byte of 0xFA or more
  // reaches only bytes after it, which are past the run.)
  uint64_t classes = (v & 0xF0F0F0F0F0F0F0F0ull) | (((v + 0x0606060606060606ull) & 0xF0F0F0F0F0F0F0F0ull) >> 4);
  uint64_t nonDigit = classes ^ 0x3333333333333333ull;
  return nonDigit ? __builtin_ctzll(nonDigit) >> 3 : 8;
}

/// The value of the first `run` (0 to 8) digit bytes of `v`.
static inline uint64_t run_value(uint64_t v, int run) {
  // The run moved to the last of eight digit places (the first places become zeros), then the eight places
  // combined in pairs, fours and eights. Bytes past the run, and borrows from them, are shifted out.
  uint64_t x = run ? (v - 0x3030303030303030ull) << (64 - 8 * run) : 0;
  x = x * 10 + (x >> 8);
  return (((x & 0x000000FF000000FFull) * (100 + (1000000ull << 32))) +
          (((x >> 16) & 0x000000FF000000FFull) * (1 + (10000ull << 32)))) >>
         32;
}

static inline uint64_t load8(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof v);  // little-endian: byte 0 is p[0]
  return v;
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
  } else if (dropped || mantissa > (1ull << 53) || exp10 < -22 || exp10 > 22 ||
             !product_to_float(mantissa, exp10, &f)) {
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

long sertrain_parse_number_cells(const unsigned char *line, long *position, long end, float *out, long max) {
  long pos = *position, cells = 0;
  while (cells < max && pos < end) {
    const unsigned char *p = line + pos;
    long stop;  // the cell's end: its comma or the line's end
    float value;
    if (end - pos >= 32) {  // the common cell, read eight bytes at a time (never past the line's end)
      int negative = p[0] == '-';
      const unsigned char *s = p + (negative | (p[0] == '+'));
      uint64_t v = load8(s);
      int integerDigits = digit_run(v);
      uint64_t mantissa = run_value(v, integerDigits);
      const unsigned char *t = s + integerDigits;
      long fractionDigits = 0;
      if (*t == '.') {
        uint64_t w = load8(t + 1);
        int run = digit_run(w);
        mantissa = mantissa * kIntegerPowerOfTen[run] + run_value(w, run);
        fractionDigits = run;
        t += 1 + run;
        if (run == 8) {
          w = load8(t);
          run = digit_run(w);
          mantissa = mantissa * kIntegerPowerOfTen[run] + run_value(w, run);
          fractionDigits += run;
          t += run;
        }
      }
      stop = t - line;
      long digits = integerDigits + fractionDigits;
      // Anything else (8 or more integer digits, more than 15 digits, an exponent, text after the number, a
      // value that needs strtof) takes the general parse below.
      if (integerDigits < 8 && digits > 0 && digits <= 15 && (stop == end || *t == ',') &&
          (mantissa == 0 ? (value = 0, 1) : product_to_float(mantissa, -fractionDigits, &value))) {
        out[cells++] = negative ? -value : value;
        pos = stop + 1;
        continue;
      }
    }
    long used;
    if (sertrain_parse_decimal(p, end - pos, &value, &used) != SERTRAIN_CELL_NUMBER || used == 0) break;
    stop = pos + used;
    if (stop != end && line[stop] != ',') break;
    out[cells++] = value;
    pos = stop + 1;
  }
  *position = pos;
  return cells;
}
