// conv.c's direct convolution with bfloat16 multiplies and float sums (AVX512-BF16's `vdpbf16ps`), for training and
// inference in mixed precision (`Precision.bf16` in ConvNet): the operands of every multiply are rounded to
// bfloat16 (8 significant bits, to nearest even, subnormals to zero, as `vcvtneps2bf16` does), the products summed in
// float, as Keras's `mixed_bfloat16` policy and oneDNN do. One `vdpbf16ps` does 32 multiply-adds where `vfmadd` does
// 16, so the same tiles run at up to twice the float peak.
//
// The tiles are conv.c's with pairs: each 32-bit lane holds two bfloat16 values, and `vdpbf16ps` adds both products
// of a pair to a float lane.
//   - Output (forward and input gradient): pairs of input channels. The panel holds, per pair of channels, 16
//     positions of 32 bits (`panel[cp*16 + r]`), the packed kernel `[q][cp][j][32][2]`; a tile of 12 positions × 32
//     channels is 24 accumulators, each step one broadcast pair against 32 output channels × 2 input channels.
//   - Kernel gradient: pairs of positions. The input's rows packed per tile of 12 channels as pairs of rows from an
//     even row (`even[s][12]`: rows 2s, 2s+1) and from an odd one (`odd[s][12]`: rows 2s+1, 2s+2), so every tap
//     reads aligned pairs; the gradient as `[s][32][2]` (rows 2s, 2s+1 of 32 channels).
// An odd count of channels or positions gets a zero partner.
#include "kernels.h"

/// `x` rounded to bfloat16 as `vcvtneps2bf16` rounds: to nearest even, subnormals to signed zero, NaN kept quiet.
static inline uint32_t to_bf16(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) == 0) return (u >> 16) & 0x8000u;
  if ((u & 0x7fffffffu) > 0x7f800000u) return (u >> 16) | 0x40u;
  return (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}


/// The tile: 12 positions (or input channels) × 32 output channels.
#define BMR 12
#define BNR 32

#if defined(__x86_64__)
#include <immintrin.h>

#define BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
#define BPANEL 16
#define BCHUNK 256
/// Input channel pairs summed in registers before a tile adds to its output (64 channels, as conv.c).
#define PAIR_BLOCK 32

/// `panel[cp*16 + r]` = channels `2cp, 2cp+1` of row `r` (`rows` rows `ld` floats apart from `in`, the rest zero).
BF16 static void pack_pairs(const float *in, long ld, long channels, int rows, uint32_t *panel) {
  for (long c0 = 0; c0 < channels; c0 += 32) {
    const long n = channels - c0 < 32 ? channels - c0 : 32;
    const __mmask16 lo = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
    const __mmask16 hi = (__mmask16)(n <= 16 ? 0 : n >= 32 ? 0xffff : (1u << (n - 16)) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) {
      if (i < rows) {
        const __m512 a = _mm512_maskz_loadu_ps(lo, in + i * ld + c0);
        const __m512 b = _mm512_maskz_loadu_ps(hi, in + i * ld + c0 + 16);
        r[i] = _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(b, a));
      } else {
        r[i] = _mm512_setzero_ps();
      }
    }
    TRANSPOSE16(r);
    const long pairs = (n + 1) / 2;
    for (long i = 0; i < pairs; i++) _mm512_store_ps((float *)(panel + (c0 / 2 + i) * BPANEL), r[i]);
  }
}

#define BDOT(R, x, b0, b1)                                        \
  a##R##0 = _mm512_dpbf16_ps(a##R##0, (__m512bh)(x), (__m512bh)(b0)); \
  a##R##1 = _mm512_dpbf16_ps(a##R##1, (__m512bh)(x), (__m512bh)(b1))

/// One tap: rows `J ..< J+12` of pair column `p` against the next 32 × 2 kernel values.
#define BTAP(J)                                                                    \
  do {                                                                             \
    const __m512i b0 = _mm512_load_si512(w), b1 = _mm512_load_si512(w + 32);       \
    __m512i x;                                                                     \
    w += 2 * BNR;                                                                  \
    x = _mm512_set1_epi32((int)p[(J) + 0]); BDOT(0, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 1]); BDOT(1, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 2]); BDOT(2, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 3]); BDOT(3, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 4]); BDOT(4, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 5]); BDOT(5, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 6]); BDOT(6, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 7]); BDOT(7, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 8]); BDOT(8, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 9]); BDOT(9, x, b0, b1);                    \
    x = _mm512_set1_epi32((int)p[(J) + 10]); BDOT(10, x, b0, b1);                  \
    x = _mm512_set1_epi32((int)p[(J) + 11]); BDOT(11, x, b0, b1);                  \
    __asm__ volatile("" ::: "memory");                                             \
  } while (0)

/// Output rows `0 ..< rows` (at most 12, `ldo` floats apart) of one 32-column panel over `pairs` channel pairs.
#define BCONV_TILE(NAME, TAPS)                                                                                 \
  BF16 __attribute__((noinline)) static void NAME(const uint32_t *panel, const uint16_t *w, long pairs,        \
                                                  float *out, long ldo, int rows) {                            \
    for (long c0 = 0; c0 < pairs; c0 += PAIR_BLOCK) {                                                       \
      const long c1 = c0 + PAIR_BLOCK < pairs ? c0 + PAIR_BLOCK : pairs;                                    \
      ACC(0); ACC(1); ACC(2); ACC(3); ACC(4); ACC(5); ACC(6); ACC(7); ACC(8); ACC(9); ACC(10);       \
      ACC(11);                                                                                                \
      for (long cp = c0; cp < c1; cp++) {                                                                    \
        const uint32_t *p = panel + cp * BPANEL;                                                               \
        TAPS                                                                                                   \
      }                                                                                                        \
      STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3) STORE_ROW(4) STORE_ROW(5)                      \
      STORE_ROW(6) STORE_ROW(7) STORE_ROW(8) STORE_ROW(9) STORE_ROW(10) STORE_ROW(11)                    \
    }                                                                                                          \
  }

BCONV_TILE(btile1, BTAP(0);)
BCONV_TILE(btile2, BTAP(0); BTAP(1);)
BCONV_TILE(btile3, BTAP(0); BTAP(1); BTAP(2);)
BCONV_TILE(btile4, BTAP(0); BTAP(1); BTAP(2); BTAP(3);)
BCONV_TILE(btile5, BTAP(0); BTAP(1); BTAP(2); BTAP(3); BTAP(4);)

typedef void (*btile_fn)(const uint32_t *, const uint16_t *, long, float *, long, int);
static const btile_fn btiles[6] = {0, btile1, btile2, btile3, btile4, btile5};

// The kernel gradient's tile: `M` (at most 12) input channels × 32 output channels of one tap over `n` pairs of
// positions, added to `dw` (rows `ldw` floats apart). Pair `s` of the input panel at `x + 12*s`, of the gradient's
// at `d + 64*s` (bfloat16 values).
#define BWDOT(R)                                              \
  if (R < M) {                                                \
    const __m512i x_ = _mm512_set1_epi32((int)xr[R]);         \
    BDOT(R, x_, b0, b1);                                      \
  }
#define BWTILE(ROWS)                                                                                           \
  BF16 __attribute__((noinline)) static void bwtile##ROWS(const uint32_t *x, const uint16_t *d, long n,         \
                                                          float *dw, long ldw) {                               \
    enum { M = ROWS };                                                                                         \
    ACC(0); ACC(1); ACC(2); ACC(3); ACC(4); ACC(5); ACC(6); ACC(7); ACC(8); ACC(9); ACC(10);         \
    ACC(11);                                                                                                  \
    for (long s = 0; s < n; s++) {                                                                             \
      const uint32_t *xr = x + s * BMR;                                                                        \
      const __m512i b0 = _mm512_load_si512(d + s * 2 * BNR), b1 = _mm512_load_si512(d + s * 2 * BNR + 32);    \
      BWDOT(0) BWDOT(1) BWDOT(2) BWDOT(3) BWDOT(4) BWDOT(5) BWDOT(6) BWDOT(7) BWDOT(8) BWDOT(9) BWDOT(10)      \
      BWDOT(11)                                                                                                \
    }                                                                                                          \
    WADD(0) WADD(1) WADD(2) WADD(3) WADD(4) WADD(5) WADD(6) WADD(7) WADD(8) WADD(9) WADD(10)        \
    WADD(11)                                                                                                  \
  }
BWTILE(1) BWTILE(2) BWTILE(3) BWTILE(4) BWTILE(5) BWTILE(6) BWTILE(7) BWTILE(8) BWTILE(9) BWTILE(10) BWTILE(11)
BWTILE(12)

typedef void (*bwtile_fn)(const uint32_t *, const uint16_t *, long, float *, long);
static const bwtile_fn bwtiles[13] = {0,        bwtile1,  bwtile2, bwtile3, bwtile4,  bwtile5, bwtile6,
                                      bwtile7, bwtile8, bwtile9, bwtile10, bwtile11, bwtile12};

/// 32 channels of gradient rows `a` and `b` (either NULL for zeros) as 32 pairs `[32][2]` at `d`.
BF16 static void pack_row_pair(const float *a, const float *b, uint16_t *d) {
  for (int h = 0; h < 2; h++) {
    const __m512 va = a ? _mm512_loadu_ps(a + 16 * h) : _mm512_setzero_ps();
    const __m512 vb = b ? _mm512_loadu_ps(b + 16 * h) : _mm512_setzero_ps();
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(va));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(vb));
    _mm512_store_si512(d + 32 * h, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

/// `channels` values of rows `a` and `b` (either NULL for zeros) as pairs: `pair[c]` = (`a[c]`, `b[c]`).
BF16 static void pack_input_pair(const float *a, const float *b, long channels, uint32_t *pair) {
  for (long c = 0; c < channels; c += 16) {
    const __mmask16 m = (__mmask16)(channels - c >= 16 ? 0xffff : (1u << (channels - c)) - 1);
    const __m512 va = a ? _mm512_maskz_loadu_ps(m, a + c) : _mm512_setzero_ps();
    const __m512 vb = b ? _mm512_maskz_loadu_ps(m, b + c) : _mm512_setzero_ps();
    const __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(va));
    const __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(vb));
    _mm512_mask_storeu_epi32(pair + c, m, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
  }
}

/// The kernel `w[kernel][in_channels][out_channels]` as `sertrain_conv_bf16_pack` lays it out.
BF16 static void pack_kernel(const float *w, int kernel, long in_channels, long out_channels, uint16_t *packed) {
  const long pairs = (in_channels + 1) / 2;
  for (long q = 0; q < out_channels / BNR; q++) {
    for (long cp = 0; cp < pairs; cp++) {
      for (int j = 0; j < kernel; j++) {
        const float *row = w + ((long)j * in_channels + 2 * cp) * out_channels + q * BNR;
        pack_row_pair(row, 2 * cp + 1 < in_channels ? row + out_channels : NULL,
                      packed + (((q * pairs + cp) * kernel + j) * BNR) * 2);
      }
    }
  }
}

BF16 static void run_bf16(const sertrain_conv_bf16 *cv, long first, long end) {
  const int k = cv->input.kernel, block = BMR * 16;
  const long per = (cv->input.length + block - 1) / block, cin = cv->input.channels, cout = cv->out_channels;
  const long rows = cv->input.rows_per_sample, length = cv->input.length, pairs = (cin + 1) / 2;
  const btile_fn tile = btiles[k];
  uint32_t *scratch = zeroed((size_t)16 * pairs * BPANEL * sizeof(uint32_t));
  for (long blk = first; blk < end; blk++) {
    const long b = blk / per, t0 = (blk % per) * block;
    const long t1 = t0 + block < length ? t0 + block : length;
    const int panels = (int)((t1 - t0 + BMR - 1) / BMR);
    const float *in = cv->input.data + b * rows * cin;
    for (int m = 0; m < panels; m++) {
      const long t = t0 + (long)m * BMR, readable = length + k - 1 - t;
      pack_pairs(in + t * cin, cin, cin, readable < BPANEL ? (int)readable : BPANEL, scratch + m * pairs * BPANEL);
    }
    float *out = cv->output + b * rows * cout;
    for (long q = 0; q < cout / BNR; q++) {
      const uint16_t *w = cv->packed + q * pairs * k * 2 * BNR;
      for (int m = 0; m < panels; m++) {
        const long t = t0 + (long)m * BMR;
        tile(scratch + m * pairs * BPANEL, w, pairs, out + t * cout + q * BNR, cout, t1 - t < BMR ? (int)(t1 - t) : BMR);
      }
    }
  }
  free(scratch);
}

BF16 static void weight_gradient_bf16(const sertrain_conv_gradient *g, long first, long end) {
  const int k = g->input.kernel;
  const long cin = g->input.channels, cout = g->out_channels, rows = g->input.rows_per_sample;
  const long length = g->input.length, tiles = (cin + BMR - 1) / BMR;
  const long span = (BCHUNK + k) / 2 + 1;  // pairs of input rows per chunk, from an even or an odd row
  uint32_t *even = zeroed((size_t)tiles * span * BMR * sizeof(uint32_t));
  uint32_t *odd = zeroed((size_t)tiles * span * BMR * sizeof(uint32_t));
  uint16_t *dp = zeroed((size_t)BCHUNK / 2 * 2 * BNR * sizeof(uint16_t));
  uint32_t *pair = zeroed((size_t)(cin + 32) * sizeof(uint32_t));
  for (int j = 0; j < k && !g->accumulate; j++) {
    for (long c = 0; c < cin; c++) {
      memset(g->weight_gradient + (j * cin + c) * cout + first * BNR, 0, (size_t)(end - first) * BNR * sizeof(float));
    }
  }
  for (long b = 0; b < g->batch; b++) {
    for (long t0 = 0; t0 < length; t0 += BCHUNK) {
      const long n = length - t0 < BCHUNK ? length - t0 : BCHUNK, valid = n + k - 1, np = (n + 1) / 2;
      const float *base = g->input.data + (b * rows + t0) * cin;
      // Pairs of the chunk's input rows (zero past the rows the taps read), from even rows and, for odd taps,
      // from odd ones: each pair converted for every channel at once (`pair`), then cut into tiles of 12.
      const long pairs_needed = np + (k - 1) / 2;
      for (long s = 0; s < pairs_needed; s++) {
        for (int parity = 0; parity < (k > 1 ? 2 : 1); parity++) {
          const long r0 = 2 * s + parity;
          pack_input_pair(r0 < valid ? base + r0 * cin : NULL, r0 + 1 < valid ? base + (r0 + 1) * cin : NULL, cin,
                          pair);
          uint32_t *dst = parity == 0 ? even : odd;
          for (long tile = 0; tile < tiles; tile++) {
            const long c0 = tile * BMR, m = cin - c0 < BMR ? cin - c0 : BMR;
            memcpy(dst + (tile * span + s) * BMR, pair + c0, (size_t)m * sizeof(uint32_t));
          }
        }
      }
      for (long q = first; q < end; q++) {
        const float *grad = g->gradient + (b * rows + t0) * cout + q * BNR;
        for (long s = 0; s < np; s++) {
          pack_row_pair(grad + 2 * s * cout, 2 * s + 1 < n ? grad + (2 * s + 1) * cout : NULL, dp + s * 2 * BNR);
        }
        for (int j = 0; j < k; j++) {
          float *dw = g->weight_gradient + (long)j * cin * cout + q * BNR;
          const uint32_t *x = j % 2 == 0 ? even : odd;
          for (long tile = 0; tile < tiles; tile++) {
            const long c0 = tile * BMR, m = cin - c0 < BMR ? cin - c0 : BMR;
            bwtiles[m](x + (tile * span + j / 2) * BMR, dp, np, dw + c0 * cout, cout);
          }
        }
      }
    }
  }
  free(even);
  free(odd);
  free(dp);
  free(pair);
}
#endif

int sertrain_bf16_level(void) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    return 1;
  }
#endif
  return 0;
}

int sertrain_conv_bf16_available(int kernel, long out_channels) {
  return sertrain_bf16_level() && kernel >= 1 && kernel <= 5 && out_channels > 0 && out_channels % BNR == 0;
}

static void require_bf16(int kernel, long out_channels, const char *what) {
  if (!sertrain_conv_bf16_available(kernel, out_channels)) {
    fprintf(stderr, "sertrain: %s called where the bfloat16 convolution does not run (kernel %d, %ld channels)\n",
            what, kernel, out_channels);
    abort();
  }
}

long sertrain_conv_bf16_packed_count(int kernel, long in_channels, long out_channels) {
  return (long)kernel * (in_channels + 1) / 2 * 2 * out_channels;
}

void sertrain_conv_bf16_pack(const float *w, int kernel, long in_channels, long out_channels, uint16_t *packed) {
  require_bf16(kernel, out_channels, "sertrain_conv_bf16_pack");
#if defined(__x86_64__)
  pack_kernel(w, kernel, in_channels, out_channels, packed);
#endif
}

long sertrain_conv_bf16_blocks(const sertrain_conv_bf16 *conv, long batch) {
  require_bf16(conv->input.kernel, conv->out_channels, "sertrain_conv_bf16_blocks");
  const long block = BMR * 16;
  return batch * ((conv->input.length + block - 1) / block);
}

void sertrain_conv_bf16_run(const sertrain_conv_bf16 *conv, long first, long end) {
  require_bf16(conv->input.kernel, conv->out_channels, "sertrain_conv_bf16_run");
#if defined(__x86_64__)
  run_bf16(conv, first, end);
#endif
}

long sertrain_conv_bf16_gradient_parts(const sertrain_conv_gradient *gradient) {
  require_bf16(gradient->input.kernel, gradient->out_channels, "sertrain_conv_bf16_gradient_parts");
  return gradient->out_channels / BNR;
}

void sertrain_conv_bf16_weight_gradient(const sertrain_conv_gradient *gradient, long first, long end) {
  require_bf16(gradient->input.kernel, gradient->out_channels, "sertrain_conv_bf16_weight_gradient");
#if defined(__x86_64__)
  weight_gradient_bf16(gradient, first, end);
#endif
}

float sertrain_bf16_round(float x) {
  const uint32_t u = to_bf16(x) << 16;
  float r;
  memcpy(&r, &u, sizeof r);
  return r;
}
