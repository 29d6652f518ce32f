// The first block of a ConvNet (a Conv1D over a one-channel input, its bias and ReLU, the BatchNormalization and
// the MaxPooling1D after it) computed without storing the convolution's output: every sweep that reads it
// recomputes it from the input, k multiplies per value, while the stored tensor would be the model's largest
// (the seed's: 64 x 2376 x 512 floats, 311 MB, read and written about ten times per step). See `BatchNormLayer`
// in ConvNet for the sweeps and their order of operations, which these kernels keep: the sums go into float over
// blocks of 16 positions and into double across blocks, the pool keeps the first maximum of each window, and its
// gradient goes to the first input equal to the maximum.
//
// Channels go 16 at a time (a register on AVX-512); each function is compiled for AVX-512, AVX2 and baseline
// x86-64 (target_clones) with no contraction into fused multiply-adds, so every variant gives the same bits.
#include "kernels.h"

#pragma clang fp contract(off)

/// A channel block's kernel taps and bias, loaded once (zero past the last channel).
typedef struct {
  f16 w[SERTRAIN_STEM_MAX_KERNEL];
  f16 bias;
} taps;

static inline __attribute__((always_inline)) void load_taps(const sertrain_stem *s, int c0, int n, taps *t) {
  for (int j = 0; j < s->kernel; j++) LOAD_INTO(t->w[j], s->weight + (long)j * s->channels + c0, n);
  LOAD_INTO(t->bias, s->bias + c0, n);
}

/// The layer's output at position `t` (input rows `t ..< t+k` of the padded sample `xp`): the taps summed in
/// order, plus the bias, then the ReLU (negative values to zero) when the layer has one.
static inline __attribute__((always_inline)) void conv_at(const sertrain_stem *s, const int k, const taps *tp,
                                                          const float *xp, long t, f16 *out) {
  f16 u = xp[t] * tp->w[0];
  for (int j = 1; j < k; j++) u = u + xp[t + j] * tp->w[j];
  u = u + tp->bias;
  if (s->relu) u = SELECT(u < 0, (f16)0, u);
  *out = u;
}

static inline __attribute__((always_inline)) void sums(const sertrain_stem *s, const int k, int b0, int b1,
                                                       const float *center, double *out) {
  const long length = s->length;
  for (int c0 = 0; c0 < s->channels; c0 += LANES) {
    const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
    taps tp;
    load_taps(s, c0, n, &tp);
    f16 m = 0;
    if (center) LOAD_INTO(m, center + c0, n);
    f16 partial = 0;
    d8 lo = 0, hi = 0;
    for (int b = b0; b < b1; b++) {
      const float *xp = s->input + (long)b * s->input_stride;
      for (long t = 0; t < length; t++) {
        f16 v;
        conv_at(s, k, &tp, xp, t, &v);
        if (center) {
          f16 d = v - m;
          partial = partial + d * d;
        } else {
          partial = partial + v;
        }
        if (is_flush(t, length)) FLUSH(partial, lo, hi);
      }
    }
    STORE_TOTALS(lo, hi, out + c0, n);
  }
}

/// TensorFlow's `same` pooling window of output `p`, clipped to the input.
static inline __attribute__((always_inline)) void window(const sertrain_stem *s, long p, long *lo, long *hi) {
  pool_window(p, s->pool, s->pool_stride, s->pool_pad_left, s->length, lo, hi);
}

// The pooled rows are a whole channel row apart (2 KB for 512 channels) in the 16-channel loops, too far for the
// hardware prefetchers to follow across pages. So the loops go by tiles of positions, all channel blocks of a
// tile before the next, and each tile first asks for the whole rows of the next (contiguous memory).

static inline __attribute__((always_inline)) void pool(const sertrain_stem *s, const int k, int b0, int b1,
                                                       const float *scale, const float *shift, float *output,
                                                       long output_stride, const sertrain_pool_winners *winners) {
  const long rows = s->out_length;
  const long tile_rows = TILE / s->pool_stride > 0 ? TILE / s->pool_stride : 1;
  f16 *z = zeroed((size_t)(tile_rows * s->pool_stride + s->pool + 1) * sizeof(f16));
  f16 *xh = winners ? zeroed((size_t)(tile_rows * s->pool_stride + s->pool + 1) * sizeof(f16)) : NULL;
  for (int b = b0; b < b1; b++) {
    const float *xp = s->input + (long)b * s->input_stride;
    float *y = output + (long)b * output_stride;
    for (long p0 = 0; p0 < rows; p0 += tile_rows) {
      const long p1 = p0 + tile_rows < rows ? p0 + tile_rows : rows;
      prefetch_rows(y, p1, p1 + tile_rows, rows, s->channels, 1);
      long zlo, zhi, unused;
      window(s, p0, &zlo, &unused);
      window(s, p1 - 1, &unused, &zhi);
      for (int c0 = 0; c0 < s->channels; c0 += LANES) {
        const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
        taps tp;
        load_taps(s, c0, n, &tp);
        f16 sc, sh, mean, inv;
        LOAD_POOL_MAPS(sc, sh, mean, inv, scale, shift, winners, c0, n);
        for (long t = zlo; t < zhi; t++) {
          f16 v;
          conv_at(s, k, &tp, xp, t, &v);
          z[t - zlo] = v * sc + sh;
          if (winners) xh[t - zlo] = (v - mean) * inv;
        }
        for (long p = p0; p < p1; p++) {
          long lo, hi;
          window(s, p, &lo, &hi);
          f16 best = z[lo - zlo];
          if (winners) {
            f16 x = xh[lo - zlo];
            for (long t = lo + 1; t < hi; t++) {
              const i16 wins = z[t - zlo] > best;
              best = SELECT(wins, z[t - zlo], best);
              x = SELECT(wins, xh[t - zlo], x);
            }
            STORE(x, winner_row(winners, b, p, s->channels) + c0, n);
          } else {
            for (long t = lo + 1; t < hi; t++) best = SELECT(z[t - zlo] > best, z[t - zlo], best);
          }
          STORE(best, y + p * s->channels + c0, n);
        }
      }
    }
  }
  free(z);
  free(xh);
}

static inline __attribute__((always_inline)) void backward(const sertrain_stem *s, const int k, int b0, int b1,
                                                           const sertrain_norm_gradient *g, double *out) {
  const long length = s->length, rows = s->out_length;
  const int sums = k + 1;
  const int blocks = (s->channels + LANES - 1) / LANES;
  // Per channel block, carried from tile to tile: the float partial sums and double totals of
  // [dW tap 0 ..< k, dbias].
  float *partials = zeroed((size_t)blocks * sums * sizeof(f16));
  double *totals = zeroed((size_t)blocks * sums * 2 * sizeof(d8));
  // The layer's output over a tile and the windows that reach it, and the tile's routed gradient.
  f16 *v = zeroed((size_t)(TILE + 2 * s->pool + 2) * sizeof(f16));
  f16 *dz = zeroed((size_t)TILE * sizeof(f16));
  for (int b = b0; b < b1; b++) {
    const float *xp = s->input + (long)b * s->input_stride;
    const float *y = g->output + (long)b * g->output_stride;
    const float *dy = g->output_gradient + (long)b * g->output_gradient_stride;
    for (long t0 = 0; t0 < length; t0 += TILE) {
      const long t1 = t0 + TILE < length ? t0 + TILE : length;
      long pf, pl;
      windows_reaching(t0, t1, s->pool, s->pool_stride, s->pool_pad_left, rows, &pf, &pl);
      long vlo = t0, vhi = t1, unused;
      if (pf <= pl) {
        long wlo, whi;
        window(s, pf, &wlo, &unused);
        window(s, pl, &unused, &whi);
        if (wlo < vlo) vlo = wlo;
        if (whi > vhi) vhi = whi;
      }
      prefetch_rows(y, pl + 1, pl + 1 + TILE / s->pool_stride + 1, rows, s->channels, 0);
      prefetch_rows(dy, pl + 1, pl + 1 + TILE / s->pool_stride + 1, rows, s->channels, 0);
      for (int block = 0; block < blocks; block++) {
        const int c0 = block * LANES;
        const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
        taps tp;
        load_taps(s, c0, n, &tp);
        f16 sc, sh, mean, inv, a1, a2, gs;
        LOAD_INTO(sc, g->scale + c0, n);
        LOAD_INTO(sh, g->shift + c0, n);
        LOAD_INTO(mean, g->mean + c0, n);
        LOAD_INTO(inv, g->inv_std + c0, n);
        LOAD_INTO(a1, g->a1 + c0, n);
        LOAD_INTO(a2, g->a2 + c0, n);
        LOAD_INTO(gs, g->gamma_inv_std + c0, n);
        for (long t = vlo; t < vhi; t++) conv_at(s, k, &tp, xp, t, &v[t - vlo]);
        for (long t = t0; t < t1; t++) dz[t - t0] = 0;
        // Each window's gradient to the first position whose normalised value equals the window's maximum;
        // the tile keeps what lands in it.
        for (long p = pf; p <= pl; p++) {
          long wlo, whi;
          window(s, p, &wlo, &whi);
          f16 best, rem;
          LOAD_INTO(best, y + p * s->channels + c0, n);
          LOAD_INTO(rem, dy + p * s->channels + c0, n);
          for (long t = wlo; t < whi; t++) {
            i16 hit = (v[t - vlo] * sc + sh) == best;
            if (t >= t0 && t < t1) dz[t - t0] = dz[t - t0] + SELECT(hit, rem, (f16)0);
            rem = SELECT(hit, (f16)0, rem);
          }
        }
        f16 partial[SERTRAIN_STEM_MAX_KERNEL + 1];
        float *pb = partials + (long)block * sums * LANES;
        double *tb = totals + (long)block * sums * LANES;
        memcpy(partial, pb, (size_t)sums * sizeof(f16));
        for (long t = t0; t < t1; t++) {
          const f16 vt = v[t - vlo], dzt = dz[t - t0];
          const f16 xhat = (vt - mean) * inv;
          f16 d = gs * (dzt - a1 - xhat * a2);
          if (s->relu) d = SELECT(vt <= 0, (f16)0, d);
          for (int j = 0; j < k; j++) partial[j] = partial[j] + xp[t + j] * d;
          partial[k] = partial[k] + d;
          if (is_flush(t, length)) {
            for (int i = 0; i < sums; i++) FLUSH_AT(partial[i], tb + (long)i * LANES);
          }
        }
        memcpy(pb, partial, (size_t)sums * sizeof(f16));
      }
    }
  }
  store_totals(totals, sums, s->channels, out);
  free(partials);
  free(totals);
  free(v);
  free(dz);
}

// The public entry points, with the common kernel sizes as constants (unrolled tap loops).
#define BY_KERNEL(call)        \
  switch (s->kernel) {         \
    case 3: call(3); break;    \
    case 5: call(5); break;    \
    default: call(s->kernel);  \
  }

SERTRAIN_CLONES
void sertrain_stem_sums(const sertrain_stem *s, int b0, int b1, const float *center, double *out) {
#define SUMS(k) sums(s, k, b0, b1, center, out)
  BY_KERNEL(SUMS)
}

SERTRAIN_CLONES
void sertrain_stem_pool(const sertrain_stem *s, int b0, int b1, const float *scale, const float *shift,
                        float *output, long output_stride, const sertrain_pool_winners *winners) {
#define POOL(k) pool(s, k, b0, b1, scale, shift, output, output_stride, winners)
  BY_KERNEL(POOL)
}

SERTRAIN_CLONES
void sertrain_stem_backward(const sertrain_stem *s, int b0, int b1, const sertrain_norm_gradient *g, double *out) {
#define BACKWARD(k) backward(s, k, b0, b1, g, out)
  BY_KERNEL(BACKWARD)
}
