// A Conv1D's three GEMMs as direct convolution, on AVX-512 or AVX2 with FMA (`Conv1DLayer` in ConvNet; elsewhere
// it runs them as OpenBLAS GEMMs).
//
// Why not BLAS: a convolution as BLAS GEMMs without an im2col copy (one GEMM per tap, or per phase as ConvNet does)
// makes BLAS pack every input row once per tap, k times per pass, and write the output through memory. These
// kernels pack nothing k times: a tile of 12 output positions × 32 output channels sums over every tap and input
// channel in 24 registers, the input read by broadcasts from a 16-position panel, the kernel streamed from L2.
//
// Forward and input gradient (`sertrain_conv_run`), per block of 192 positions of one sample:
//   - pack the block's input into panels of 16 positions (12 outputs plus up to 4 more rows for the taps),
//     transposed so that one channel's 16 positions are one 64-byte line: `panel[c*16 + r]`;
//   - for each 32-channel column panel of the packed kernel (`[c][j][32]`, k*cin*128 bytes, in L2), run every
//     position panel through the 12 × 32 tile.
// Kernel gradient (`sertrain_conv_weight_gradient`): a tile of 12 input channels × 32 output channels of one tap
// sums over 256 positions at a time: the input's rows packed into panels of 12 channels, the gradient's into a
// panel of 32 channels (32 KB, held in L1 across the input channels and taps). Each kernel gradient value sums
// over positions in order, whatever the split across threads.
//
// The AVX2 kernels are the same with a 6 × 16 tile (12 of the 16 registers) and a plainly copied panel.
//
// Sums run in a different order from a BLAS GEMM, so results differ from OpenBLAS's in the last bits (as
// OpenBLAS's own kernels differ from one CPU to another).
#include "kernels.h"

#define PANEL 16
#define NR_AVX512 32

#if defined(__x86_64__)
#include <immintrin.h>

// The AVX-512 tile: 12 positions (or input channels) × 32 channels; the AVX2 tile: 6 × 16.
#define MR 12
#define NR NR_AVX512
#define HMR 6
#define HNR 16

#define CHUNK 256
#define CHANNEL_BLOCK 64
#define AVX512 __attribute__((target("avx512f")))

/// `panel[c*16 + r]` = channel `c` of row `r` (`rows` rows `ld` floats apart from `in`; the rest zero, all 16).
AVX512 static void pack_panel(const float *in, long ld, long channels, int rows, int needed, float *panel) {
  (void)needed;
  for (long c0 = 0; c0 < channels; c0 += 16) {
    const int n = channels - c0 < 16 ? (int)(channels - c0) : 16;
    const __mmask16 mask = (__mmask16)((1u << n) - 1);
    __m512 r[16];
    for (int i = 0; i < 16; i++) r[i] = i < rows ? _mm512_maskz_loadu_ps(mask, in + i * ld + c0) : _mm512_setzero_ps();
    TRANSPOSE16(r);
    for (int i = 0; i < n; i++) _mm512_store_ps(panel + (c0 + i) * PANEL, r[i]);
  }
}

// The 12 × 32 tile: 24 accumulators `aR0`, `aR1` (ACC in kernels.h).
#define FMA(R, x, b0, b1)                  \
  a##R##0 = _mm512_fmadd_ps(x, b0, a##R##0); \
  a##R##1 = _mm512_fmadd_ps(x, b1, a##R##1)

/// One tap: rows `J ..< J+12` of the panel column `p` against the next 32 kernel values. The empty asm keeps the
/// compiler from carrying broadcasts from one tap to the next (rows overlap across taps), which spills the
/// accumulators.
#define TAP(J)                                                                  \
  do {                                                                          \
    const __m512 b0 = _mm512_load_ps(w), b1 = _mm512_load_ps(w + 16);            \
    __m512 x;                                                                   \
    w += NR;                                                                    \
    x = _mm512_set1_ps(p[(J) + 0]); FMA(0, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 1]); FMA(1, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 2]); FMA(2, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 3]); FMA(3, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 4]); FMA(4, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 5]); FMA(5, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 6]); FMA(6, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 7]); FMA(7, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 8]); FMA(8, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 9]); FMA(9, x, b0, b1);                           \
    x = _mm512_set1_ps(p[(J) + 10]); FMA(10, x, b0, b1);                         \
    x = _mm512_set1_ps(p[(J) + 11]); FMA(11, x, b0, b1);                         \
    __asm__ volatile("" ::: "memory");                                          \
  } while (0)

/// Output rows `0 ..< rows` (at most 12, `ldo` floats apart) of one 32-column panel: `Σ_c Σ_j panel[c][r+j] ·
/// w[c][j][0..<32]`, summed in registers over blocks of `CHANNEL_BLOCK` input channels and added to the output
/// block by block, which keeps rounding error to what a blocked GEMM has (a single register sum over all `k*cin`
/// terms had 2-4 times OpenBLAS's error, enough to fail the seed model's Keras comparison).
#define CONV_TILE(NAME, TAPS)                                                                                  \
  AVX512 __attribute__((noinline)) static void NAME(const float *panel, const float *w, long channels,         \
                                                    float *out, long ldo, int rows) {                          \
    for (long c0 = 0; c0 < channels; c0 += CHANNEL_BLOCK) {                                                    \
      const long c1 = c0 + CHANNEL_BLOCK < channels ? c0 + CHANNEL_BLOCK : channels;                           \
      ACC(0); ACC(1); ACC(2); ACC(3); ACC(4); ACC(5); ACC(6); ACC(7); ACC(8); ACC(9); ACC(10); ACC(11);         \
      for (long c = c0; c < c1; c++) {                                                                         \
        const float *p = panel + c * PANEL;                                                                    \
        TAPS                                                                                                   \
      }                                                                                                        \
      STORE_ROW(0) STORE_ROW(1) STORE_ROW(2) STORE_ROW(3) STORE_ROW(4) STORE_ROW(5)                            \
      STORE_ROW(6) STORE_ROW(7) STORE_ROW(8) STORE_ROW(9) STORE_ROW(10) STORE_ROW(11)                          \
    }                                                                                                          \
  }

CONV_TILE(tile1, TAP(0);)
CONV_TILE(tile2, TAP(0); TAP(1);)
CONV_TILE(tile3, TAP(0); TAP(1); TAP(2);)
CONV_TILE(tile4, TAP(0); TAP(1); TAP(2); TAP(3);)
CONV_TILE(tile5, TAP(0); TAP(1); TAP(2); TAP(3); TAP(4);)

// The kernel gradient's tile: `M` (at most 12) input channels × 32 output channels of one tap over `n` positions,
// added to `dw` (rows `ldw` floats apart). Position `t` of the input panel at `x + 12*t`, of the gradient's at
// `d + 32*t`.
#define WFMA(R)                                                   \
  if (R < M) {                                                    \
    const __m512 x_ = _mm512_set1_ps(xr[R]);                      \
    FMA(R, x_, b0, b1);                                           \
  }
#define WTILE(ROWS)                                                                                          \
  AVX512 __attribute__((noinline)) static void wtile##ROWS(const float *x, const float *d, long n, float *dw, \
                                                           long ldw) {                                       \
    enum { M = ROWS };                                                                                       \
    for (int r = 0; r < M; r++) {                                                                            \
      _mm_prefetch((const char *)(dw + r * ldw), _MM_HINT_T0);                                               \
      _mm_prefetch((const char *)(dw + r * ldw + 16), _MM_HINT_T0);                                          \
    }                                                                                                        \
    ACC(0); ACC(1); ACC(2); ACC(3); ACC(4); ACC(5); ACC(6); ACC(7); ACC(8); ACC(9); ACC(10); ACC(11);         \
    for (long t = 0; t < n; t++) {                                                                           \
      const float *xr = x + t * MR;                                                                          \
      const __m512 b0 = _mm512_load_ps(d + t * NR), b1 = _mm512_load_ps(d + t * NR + 16);                    \
      WFMA(0) WFMA(1) WFMA(2) WFMA(3) WFMA(4) WFMA(5) WFMA(6) WFMA(7) WFMA(8) WFMA(9) WFMA(10) WFMA(11)      \
    }                                                                                                        \
    WADD(0) WADD(1) WADD(2) WADD(3) WADD(4) WADD(5) WADD(6) WADD(7) WADD(8) WADD(9) WADD(10) WADD(11)        \
  }
WTILE(1) WTILE(2) WTILE(3) WTILE(4) WTILE(5) WTILE(6) WTILE(7) WTILE(8) WTILE(9) WTILE(10) WTILE(11) WTILE(12)

// The same kernels on AVX2 with FMA (8 lanes, 16 registers): a 6 × 16 tile in 12 accumulators `hR0`, `hR1`,
// the panel packed by plain loads and stores.
#define AVX2 __attribute__((target("avx2,fma")))
#define HACC(R) __m256 h##R##0 = _mm256_setzero_ps(), h##R##1 = _mm256_setzero_ps()
#define HFMA(R, x, b0, b1)                     \
  h##R##0 = _mm256_fmadd_ps(x, b0, h##R##0); \
  h##R##1 = _mm256_fmadd_ps(x, b1, h##R##1)
#define HTAP(J)                                                                 \
  do {                                                                          \
    const __m256 b0 = _mm256_load_ps(w), b1 = _mm256_load_ps(w + 8);           \
    __m256 x;                                                                   \
    w += HNR;                                                                   \
    x = _mm256_broadcast_ss(p + (J) + 0); HFMA(0, x, b0, b1);                   \
    x = _mm256_broadcast_ss(p + (J) + 1); HFMA(1, x, b0, b1);                   \
    x = _mm256_broadcast_ss(p + (J) + 2); HFMA(2, x, b0, b1);                   \
    x = _mm256_broadcast_ss(p + (J) + 3); HFMA(3, x, b0, b1);                   \
    x = _mm256_broadcast_ss(p + (J) + 4); HFMA(4, x, b0, b1);                   \
    x = _mm256_broadcast_ss(p + (J) + 5); HFMA(5, x, b0, b1);                   \
    __asm__ volatile("" ::: "memory");                                          \
  } while (0)
#define HSTORE_ROW(R)                                                                                     \
  if (R < rows) {                                                                                         \
    if (c0 == 0) {                                                                                        \
      _mm256_storeu_ps(out + R * ldo, h##R##0);                                                           \
      _mm256_storeu_ps(out + R * ldo + 8, h##R##1);                                                       \
    } else {                                                                                              \
      _mm256_storeu_ps(out + R * ldo, _mm256_add_ps(_mm256_loadu_ps(out + R * ldo), h##R##0));            \
      _mm256_storeu_ps(out + R * ldo + 8, _mm256_add_ps(_mm256_loadu_ps(out + R * ldo + 8), h##R##1));    \
    }                                                                                                     \
  }
#define HCONV_TILE(NAME, TAPS)                                                                                 \
  AVX2 __attribute__((noinline)) static void NAME(const float *panel, const float *w, long channels,           \
                                                  float *out, long ldo, int rows) {                            \
    for (long c0 = 0; c0 < channels; c0 += CHANNEL_BLOCK) {                                                    \
      const long c1 = c0 + CHANNEL_BLOCK < channels ? c0 + CHANNEL_BLOCK : channels;                           \
      HACC(0); HACC(1); HACC(2); HACC(3); HACC(4); HACC(5);                                                    \
      for (long c = c0; c < c1; c++) {                                                                         \
        const float *p = panel + c * PANEL;                                                                    \
        TAPS                                                                                                   \
      }                                                                                                        \
      HSTORE_ROW(0) HSTORE_ROW(1) HSTORE_ROW(2) HSTORE_ROW(3) HSTORE_ROW(4) HSTORE_ROW(5)                      \
    }                                                                                                          \
  }
HCONV_TILE(htile1, HTAP(0);)
HCONV_TILE(htile2, HTAP(0); HTAP(1);)
HCONV_TILE(htile3, HTAP(0); HTAP(1); HTAP(2);)
HCONV_TILE(htile4, HTAP(0); HTAP(1); HTAP(2); HTAP(3);)
HCONV_TILE(htile5, HTAP(0); HTAP(1); HTAP(2); HTAP(3); HTAP(4);)

#define HWFMA(R)                                                  \
  if (R < M) {                                                    \
    const __m256 x_ = _mm256_broadcast_ss(xr + R);                \
    HFMA(R, x_, b0, b1);                                          \
  }
#define HWADD(R)                                                                                      \
  if (R < M) {                                                                                        \
    _mm256_storeu_ps(dw + R * ldw, _mm256_add_ps(_mm256_loadu_ps(dw + R * ldw), h##R##0));            \
    _mm256_storeu_ps(dw + R * ldw + 8, _mm256_add_ps(_mm256_loadu_ps(dw + R * ldw + 8), h##R##1));    \
  }
#define HWTILE(ROWS)                                                                                          \
  AVX2 __attribute__((noinline)) static void hwtile##ROWS(const float *x, const float *d, long n, float *dw,  \
                                                          long ldw) {                                        \
    enum { M = ROWS };                                                                                       \
    HACC(0); HACC(1); HACC(2); HACC(3); HACC(4); HACC(5);                                                    \
    for (long t = 0; t < n; t++) {                                                                           \
      const float *xr = x + t * HMR;                                                                         \
      const __m256 b0 = _mm256_load_ps(d + t * HNR), b1 = _mm256_load_ps(d + t * HNR + 8);                   \
      HWFMA(0) HWFMA(1) HWFMA(2) HWFMA(3) HWFMA(4) HWFMA(5)                                                  \
    }                                                                                                        \
    HWADD(0) HWADD(1) HWADD(2) HWADD(3) HWADD(4) HWADD(5)                                                    \
  }
HWTILE(1) HWTILE(2) HWTILE(3) HWTILE(4) HWTILE(5) HWTILE(6)

/// The panel by plain loads and stores: rows `0 ..< needed` of `panel[c*16 + r]`, zero from row `rows` on.
static void pack_panel_plain(const float *in, long ld, long channels, int rows, int needed, float *panel) {
  for (int r = 0; r < needed; r++) {
    if (r < rows) {
      for (long c = 0; c < channels; c++) panel[c * PANEL + r] = in[r * ld + c];
    } else {
      for (long c = 0; c < channels; c++) panel[c * PANEL + r] = 0;
    }
  }
}

typedef void (*tile_fn)(const float *, const float *, long, float *, long, int);
typedef void (*wtile_fn)(const float *, const float *, long, float *, long);
typedef void (*pack_fn)(const float *, long, long, int, int, float *);

/// One instruction set's kernels: output tiles of `mr` positions (or input channels) × `nr` channels.
typedef struct {
  int mr, nr;
  pack_fn pack;
  tile_fn tiles[6];
  wtile_fn wtiles[13];
} isa_kernels;

static const isa_kernels avx512_kernels = {
    MR, NR, pack_panel, {0, tile1, tile2, tile3, tile4, tile5},
    {0, wtile1, wtile2, wtile3, wtile4, wtile5, wtile6, wtile7, wtile8, wtile9, wtile10, wtile11, wtile12}};
static const isa_kernels avx2_kernels = {
    HMR, HNR, pack_panel_plain, {0, htile1, htile2, htile3, htile4, htile5},
    {0, hwtile1, hwtile2, hwtile3, hwtile4, hwtile5, hwtile6}};

static void run(const isa_kernels *isa, const sertrain_conv *cv, long first, long end) {
  const int mr = isa->mr, nr = isa->nr, k = cv->input.kernel, block = mr * 16;
  const long per = (cv->input.length + block - 1) / block, cin = cv->input.channels, cout = cv->out_channels;
  const long rows = cv->input.rows_per_sample, length = cv->input.length;
  const tile_fn tile = isa->tiles[k];
  float *scratch = zeroed((size_t)16 * cin * PANEL * sizeof(float));
  for (long blk = first; blk < end; blk++) {
    const long b = blk / per, t0 = (blk % per) * block;
    const long t1 = t0 + block < length ? t0 + block : length;
    const int panels = (int)((t1 - t0 + mr - 1) / mr);
    const float *in = cv->input.data + b * rows * cin;
    for (int m = 0; m < panels; m++) {
      const long t = t0 + (long)m * mr, readable = length + k - 1 - t;  // padded rows t .. of this sample
      isa->pack(in + t * cin, cin, cin, readable < PANEL ? (int)readable : PANEL, mr + k - 1,
                scratch + m * cin * PANEL);
    }
    float *out = cv->output + b * rows * cout;
    for (long q = 0; q < cout / nr; q++) {
      const float *w = cv->packed + q * cin * k * nr;
      for (int m = 0; m < panels; m++) {
        const long t = t0 + (long)m * mr;
        tile(scratch + m * cin * PANEL, w, cin, out + t * cout + q * nr, cout, t1 - t < mr ? (int)(t1 - t) : mr);
      }
    }
  }
  free(scratch);
}

/// Per chunk of 256 positions of one sample: the input's rows (with the taps' `k-1` more) packed into panels of
/// `mr` channels (`[tile][row][mr]`), then per column panel of the gradient, packed (`[t][nr]`, 32 KB at most, in
/// L1), every tap and input tile.
static void weight_gradient(const isa_kernels *isa, const sertrain_conv_gradient *g, long first, long end) {
  const int mr = isa->mr, nr = isa->nr, k = g->input.kernel;
  const long cin = g->input.channels, cout = g->out_channels, rows = g->input.rows_per_sample;
  const long length = g->input.length, tiles = (cin + mr - 1) / mr, span = CHUNK + k - 1;
  float *xp = zeroed((size_t)tiles * span * mr * sizeof(float)), *dp = zeroed((size_t)CHUNK * nr * sizeof(float));
  for (int j = 0; j < k && !g->accumulate; j++) {
    for (long c = 0; c < cin; c++) {
      memset(g->weight_gradient + (j * cin + c) * cout + first * nr, 0, (size_t)(end - first) * nr * sizeof(float));
    }
  }
  for (long b = 0; b < g->batch; b++) {
    for (long t0 = 0; t0 < length; t0 += CHUNK) {
      const long n = length - t0 < CHUNK ? length - t0 : CHUNK;
      for (long i = 0; i < n + k - 1; i++) {
        const float *src = g->input.data + (b * rows + t0 + i) * cin;
        for (long tile = 0; tile < tiles; tile++) {
          const long c = tile * mr, m = cin - c < mr ? cin - c : mr;
          memcpy(xp + (tile * span + i) * mr, src + c, (size_t)m * sizeof(float));
        }
      }
      for (long q = first; q < end; q++) {
        for (long t = 0; t < n; t++) {
          memcpy(dp + t * nr, g->gradient + (b * rows + t0 + t) * cout + q * nr, (size_t)nr * sizeof(float));
        }
        for (int j = 0; j < k; j++) {
          float *dw = g->weight_gradient + (long)j * cin * cout + q * nr;
          for (long tile = 0; tile < tiles; tile++) {
            const long c = tile * mr, m = cin - c < mr ? cin - c : mr;
            isa->wtiles[m](xp + (tile * span + j) * mr, dp, n, dw + c * cout, cout);
          }
        }
      }
    }
  }
  free(xp);
  free(dp);
}
#else
typedef struct {
  int mr, nr;
} isa_kernels;
static void run(const isa_kernels *isa, const sertrain_conv *cv, long first, long end) {
  (void)isa, (void)cv, (void)first, (void)end;
}
static void weight_gradient(const isa_kernels *isa, const sertrain_conv_gradient *g, long first, long end) {
  (void)isa, (void)g, (void)first, (void)end;
}
#endif

/// The kernels for this CPU within `limit` (2: AVX-512, 1: AVX2, 0: none); NULL where none run.
static const isa_kernels *kernels_here(int limit) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (limit >= 2 && __builtin_cpu_supports("avx512f")) return &avx512_kernels;
  if (limit >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &avx2_kernels;
#else
  (void)limit;
#endif
  return NULL;
}

int sertrain_conv_level(int limit) {
  const isa_kernels *isa = kernels_here(limit);
  return isa == NULL ? 0 : isa->nr == NR_AVX512 ? 2 : 1;
}

int sertrain_conv_available(int kernel, long out_channels, int limit) {
  const isa_kernels *isa = kernels_here(limit);
  return isa && kernel >= 1 && kernel <= 5 && out_channels > 0 && out_channels % isa->nr == 0;
}

/// The kernels for this call, or a clear stop where none run (the caller checks `sertrain_conv_available`).
static const isa_kernels *require(int kernel, long out_channels, int limit, const char *what) {
  if (!sertrain_conv_available(kernel, out_channels, limit)) {
    fprintf(stderr, "sertrain: %s called where the direct convolution does not run (kernel %d, %ld channels)\n",
            what, kernel, out_channels);
    abort();
  }
  return kernels_here(limit);
}

long sertrain_conv_packed_count(int kernel, long in_channels, long out_channels) {
  return (long)kernel * in_channels * out_channels;
}

void sertrain_conv_pack(const float *w, int kernel, long in_channels, long out_channels, int limit, float *packed) {
  const int nr = require(kernel, out_channels, limit, "sertrain_conv_pack")->nr;
  for (long q = 0; q < out_channels / nr; q++) {
    for (long c = 0; c < in_channels; c++) {
      for (int j = 0; j < kernel; j++) {
        memcpy(packed + ((q * in_channels + c) * kernel + j) * nr,
               w + ((long)j * in_channels + c) * out_channels + q * nr, (size_t)nr * sizeof(float));
      }
    }
  }
}

long sertrain_conv_blocks(const sertrain_conv *conv, long batch) {
  const long block = require(conv->input.kernel, conv->out_channels, conv->limit, "sertrain_conv_blocks")->mr * 16;
  return batch * ((conv->input.length + block - 1) / block);
}

void sertrain_conv_run(const sertrain_conv *conv, long first, long end) {
  run(require(conv->input.kernel, conv->out_channels, conv->limit, "sertrain_conv_run"), conv, first, end);
}

long sertrain_conv_gradient_parts(const sertrain_conv_gradient *gradient) {
  return gradient->out_channels /
         require(gradient->input.kernel, gradient->out_channels, gradient->limit, "sertrain_conv_gradient_parts")->nr;
}

void sertrain_conv_weight_gradient(const sertrain_conv_gradient *gradient, long first, long end) {
  weight_gradient(
      require(gradient->input.kernel, gradient->out_channels, gradient->limit, "sertrain_conv_weight_gradient"),
      gradient, first, end);
}
