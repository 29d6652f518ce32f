// A BatchNormalization and the MaxPooling1D after it, over an input stored row by row (the raw output of the
// Conv1D before it, read through that layer's bias and ReLU): the sweeps of `BatchNormLayer` in ConvNet with the
// same operations in the same order, so the results are those of its Swift loops, bit for bit, but 16 channels at
// a time on AVX-512. Backward does not store the routed gradient: its sweep routes the pooled gradient into a
// tile of 64 positions (in cache) and reads it there, which saves a write and a read of the input-sized tensor.
// Its sums (`Σdz`, `Σdz·x̂`) need no sweep over the input: every pooled gradient goes to its window's winner, so
// they are `Σdy` and `Σdy·x̂` of the winners, whose `x̂` the forward pool keeps (`sertrain_pooled_sums`).
#include "kernels.h"

#pragma clang fp contract(off)

/// The input at `x` (channels `c0 ..< c0+n`) through the producer's bias and ReLU, into `v`.
#define READ_INPUT(v, s, x, c0, n)                   \
  do {                                               \
    LOAD_INTO(v, (x) + (c0), n);                     \
    if ((s)->bias) {                                 \
      f16 b_;                                        \
      LOAD_INTO(b_, (s)->bias + (c0), n);            \
      v = v + b_;                                    \
      if ((s)->relu) v = SELECT(v < 0, (f16)0, v);   \
    }                                                \
  } while (0)

static inline __attribute__((always_inline)) void window(const sertrain_norm *s, long p, long *lo, long *hi) {
  pool_window(p, s->pool, s->pool_stride, s->pool_pad_left, s->length, lo, hi);
}

SERTRAIN_CLONES
void sertrain_norm_sums(const sertrain_norm *s, int b0, int b1, const float *center, double *out) {
  const int blocks = (s->channels + LANES - 1) / LANES;
  float *partials = zeroed((size_t)blocks * sizeof(f16));
  double *totals = zeroed((size_t)blocks * LANES * sizeof(double));
  for (int b = b0; b < b1; b++) {
    for (long t = 0; t < s->length; t++) {
      const float *x = s->input + (long)b * s->input_stride + t * s->channels;
      const int flush = is_flush(t, s->length);
      for (int block = 0; block < blocks; block++) {
        const int c0 = block * LANES;
        const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
        f16 v, partial;
        READ_INPUT(v, s, x, c0, n);
        memcpy(&partial, partials + c0, sizeof(f16));
        if (center) {
          f16 m;
          LOAD_INTO(m, center + c0, n);
          const f16 d = v - m;
          partial = partial + d * d;
        } else {
          partial = partial + v;
        }
        if (flush) FLUSH_AT(partial, totals + c0);
        memcpy(partials + c0, &partial, sizeof(f16));
      }
    }
  }
  store_totals(totals, 1, s->channels, out);
  free(partials);
  free(totals);
}

SERTRAIN_CLONES
void sertrain_norm_pool(const sertrain_norm *s, int b0, int b1, const float *scale, const float *shift,
                        float *output, long output_stride, const sertrain_pool_winners *winners) {
  for (int b = b0; b < b1; b++) {
    const float *xb = s->input + (long)b * s->input_stride;
    for (long p = 0; p < s->out_length; p++) {
      long lo, hi;
      window(s, p, &lo, &hi);
      float *y = output + (long)b * output_stride + p * s->channels;
      for (int c0 = 0; c0 < s->channels; c0 += LANES) {
        const int n = s->channels - c0 < LANES ? s->channels - c0 : LANES;
        f16 sc, sh, mean, inv, best = 0, xhat = 0;
        LOAD_POOL_MAPS(sc, sh, mean, inv, scale, shift, winners, c0, n);
        for (long t = lo; t < hi; t++) {
          f16 v, u;
          READ_INPUT(v, s, xb + t * s->channels, c0, n);
          u = v * sc + sh;
          const i16 wins = t == lo ? (i16)-1 : (u > best);
          best = SELECT(wins, u, best);
          if (winners) xhat = SELECT(wins, (v - mean) * inv, xhat);
        }
        STORE(best, y + c0, n);
        if (winners) STORE(xhat, winner_row(winners, b, p, s->channels) + c0, n);
      }
    }
  }
}

SERTRAIN_CLONES
void sertrain_pooled_sums(const float *dy, long dy_stride, const float *xhat, long xhat_stride, long rows,
                          int channels, int b0, int b1, double *out) {
  const int blocks = (channels + LANES - 1) / LANES;
  float *partials = zeroed((size_t)blocks * 2 * sizeof(f16));
  double *totals = zeroed((size_t)blocks * 2 * LANES * sizeof(double));
  for (int b = b0; b < b1; b++) {
    for (long p = 0; p < rows; p++) {
      const float *g = dy + (long)b * dy_stride + p * channels, *xh = xhat + (long)b * xhat_stride + p * channels;
      const int flush = is_flush(p, rows);
      for (int block = 0; block < blocks; block++) {
        const int c0 = block * LANES;
        const int n = channels - c0 < LANES ? channels - c0 : LANES;
        f16 gv, xv, p0, p1;
        LOAD_INTO(gv, g + c0, n);
        LOAD_INTO(xv, xh + c0, n);
        float *pb = partials + (long)block * 2 * LANES;
        memcpy(&p0, pb, sizeof(f16));
        memcpy(&p1, pb + LANES, sizeof(f16));
        p0 = p0 + gv;
        p1 = p1 + gv * xv;
        if (flush) {
          double *tb = totals + (long)block * 2 * LANES;
          FLUSH_AT(p0, tb);
          FLUSH_AT(p1, tb + LANES);
        }
        memcpy(pb, &p0, sizeof(f16));
        memcpy(pb + LANES, &p1, sizeof(f16));
      }
    }
  }
  store_totals(totals, 2, channels, out);
  free(partials);
  free(totals);
}

SERTRAIN_CLONES
void sertrain_norm_backward(const sertrain_norm *s, int b0, int b1, const sertrain_norm_gradient *g,
                            float *input_gradient, long input_gradient_stride, double *out) {
  const long length = s->length, rows = s->out_length;
  const int channels = s->channels;
  const int blocks = (channels + LANES - 1) / LANES;
  const long width = (long)blocks * LANES;  // a padded row of the tiles
  const int sums = s->bias ? 1 : 0;
  float *partials = zeroed((size_t)blocks * (sums ? sums : 1) * sizeof(f16));
  double *totals = zeroed((size_t)blocks * (sums ? sums : 1) * LANES * sizeof(double));
  float *dz = zeroed((size_t)TILE * width * sizeof(float));  // the routed gradient of the tile's positions
  float *rem = zeroed((size_t)width * sizeof(float));        // what a window has not yet routed
  for (int b = b0; b < b1; b++) {
    const float *xb = s->input + (long)b * s->input_stride;
    const float *y = g->output + (long)b * g->output_stride;
    const float *dy = g->output_gradient + (long)b * g->output_gradient_stride;
    float *dxb = input_gradient + (long)b * input_gradient_stride;
    for (long t0 = 0; t0 < length; t0 += TILE) {
      const long t1 = t0 + TILE < length ? t0 + TILE : length;
      long pf, pl;
      windows_reaching(t0, t1, s->pool, s->pool_stride, s->pool_pad_left, rows, &pf, &pl);
      memset(dz, 0, (size_t)(t1 - t0) * width * sizeof(float));
      for (long p = pf; p <= pl; p++) {
        long wlo, whi;
        window(s, p, &wlo, &whi);
        for (int c0 = 0; c0 < channels; c0 += LANES) {
          const int n = channels - c0 < LANES ? channels - c0 : LANES;
          f16 r;
          LOAD_INTO(r, dy + p * channels + c0, n);
          memcpy(rem + c0, &r, sizeof(f16));
        }
        for (long t = wlo; t < whi; t++) {
          const float *x = xb + t * channels;
          const int inside = t >= t0 && t < t1;
          for (int c0 = 0; c0 < channels; c0 += LANES) {
            const int n = channels - c0 < LANES ? channels - c0 : LANES;
            f16 v, sc, sh, best, r;
            READ_INPUT(v, s, x, c0, n);
            LOAD_INTO(sc, g->scale + c0, n);
            LOAD_INTO(sh, g->shift + c0, n);
            LOAD_INTO(best, y + p * channels + c0, n);
            memcpy(&r, rem + c0, sizeof(f16));
            const i16 hit = (v * sc + sh) == best;
            if (inside) {
              f16 d;
              float *at = dz + (t - t0) * width + c0;
              memcpy(&d, at, sizeof(f16));
              d = d + SELECT(hit, r, (f16)0);
              memcpy(at, &d, sizeof(f16));
            }
            r = SELECT(hit, (f16)0, r);
            memcpy(rem + c0, &r, sizeof(f16));
          }
        }
      }
      for (long t = t0; t < t1; t++) {
        const float *x = xb + t * channels;
        const int flush = is_flush(t, length);
        for (int block = 0; block < blocks; block++) {
          const int c0 = block * LANES;
          const int n = channels - c0 < LANES ? channels - c0 : LANES;
          f16 v, mean, inv, gz;
          READ_INPUT(v, s, x, c0, n);
          LOAD_INTO(mean, g->mean + c0, n);
          LOAD_INTO(inv, g->inv_std + c0, n);
          memcpy(&gz, dz + (t - t0) * width + c0, sizeof(f16));
          const f16 xhat = (v - mean) * inv;
          float *pb = partials + (long)block * sums * LANES;
          double *tb = totals + (long)block * sums * LANES;
          f16 a1, a2, gs;
          LOAD_INTO(a1, g->a1 + c0, n);
          LOAD_INTO(a2, g->a2 + c0, n);
          LOAD_INTO(gs, g->gamma_inv_std + c0, n);
          f16 d = gs * (gz - a1 - xhat * a2);
          if (s->bias) {
            if (s->relu) d = SELECT(v <= 0, (f16)0, d);
            f16 p0;
            memcpy(&p0, pb, sizeof(f16));
            p0 = p0 + d;
            if (flush) FLUSH_AT(p0, tb);
            memcpy(pb, &p0, sizeof(f16));
          }
          STORE(d, dxb + t * channels + c0, n);
        }
      }
    }
  }
  if (sums) store_totals(totals, sums, channels, out);
  free(partials);
  free(totals);
  free(dz);
  free(rem);
}
