// The ConvNet's kernels (ConvNet uses them): its first block (stem.c), BatchNorm and pool sweeps (batchnorm.c),
// direct convolution (conv.c), and the Winograd transforms of inference (winograd.c).
#pragma once

#include <stdint.h>

// The first block of a ConvNet without its convolution's output (stem.c; `BatchNormLayer` in ConvNet uses them).

/// The longest convolution kernel the stem kernels take.
#define SERTRAIN_STEM_MAX_KERNEL 32

/// A Conv1D over a one-channel input (padding `same`, bias, optional ReLU) and the MaxPooling1D (padding `same`)
/// after its BatchNorm. Position `t` of sample `b` reads the padded input at `input + b*input_stride + t + j`
/// for the taps `j < kernel`.
typedef struct {
  const float *input;
  long input_stride;
  long length;
  int kernel;
  int channels;
  const float *weight;  // [kernel][channels]
  const float *bias;    // [channels]
  int relu;
  int pool, pool_stride, pool_pad_left;
  long out_length;
} sertrain_stem;

/// What the backward sweep reads: the pooled output and its gradient (row `p` of sample `b` at
/// `b*output_stride + p*channels`, and `b*output_gradient_stride + p*channels`), the forward's affine map and batch
/// statistics, and the coefficients of `dx = gamma_inv_std * (dy - a1 - x̂*a2)`.
typedef struct {
  const float *output, *output_gradient;
  long output_stride, output_gradient_stride;
  const float *scale, *shift, *mean, *inv_std;
  const float *a1, *a2, *gamma_inv_std;
} sertrain_norm_gradient;

/// Where a training forward's pool keeps, for each pooled value, the normalised input `x̂ = (x - mean)*inv_std` of
/// its window's winner (the first position equal to the maximum, where backward routes its gradient): row `p` of
/// sample `b` at `xhat + b*xhat_stride + p*channels`.
typedef struct {
  const float *mean, *inv_std;
  float *xhat;
  long xhat_stride;
} sertrain_pool_winners;

/// `[Σdy, Σdy·x̂]` per channel (`2*channels` values) over the pooled rows `0 ..< rows` of samples `b0 ..< b1`: the
/// gradient at `dy + b*dy_stride + p*channels`, the winners' `x̂` as `sertrain_pool_winners` keeps them. These are
/// the sums over the BatchNorm's input positions of its routed gradient `dz` and `dz·x̂`, since every pooled
/// gradient goes to its window's winner. Float over blocks of 16 rows, double across blocks.
void sertrain_pooled_sums(const float *dy, long dy_stride, const float *xhat, long xhat_stride, long rows,
                          int channels, int b0, int b1, double *out);

/// Per-channel sums over samples `b0 ..< b1` of the layer's output, or of its squared distance to `center`.
void sertrain_stem_sums(const sertrain_stem *stem, int b0, int b1, const float *center, double *out);

/// Pools `output * scale + shift` of samples `b0 ..< b1` into `output` (row `p` of sample `b` at
/// `b*output_stride + p*channels`), and the winners' `x̂` into `winners` unless it is NULL.
void sertrain_stem_pool(const sertrain_stem *stem, int b0, int b1, const float *scale, const float *shift,
                        float *output, long output_stride, const sertrain_pool_winners *winners);

/// Backward over samples `b0 ..< b1`: writes the convolution's kernel gradient, tap by tap, then its bias gradient
/// (`(kernel+1)*channels` values).
void sertrain_stem_backward(const sertrain_stem *stem, int b0, int b1, const sertrain_norm_gradient *gradient,
                            double *out);

// A BatchNormalization and the MaxPooling1D after it over a stored input (batchnorm.c; `BatchNormLayer` in ConvNet).

/// Position `t` of sample `b` at `input + b*input_stride + t*channels`, read through the producing Conv1D's bias
/// and ReLU (`InputMap` in ConvNet) when `bias` is not NULL; the MaxPooling1D as in `sertrain_stem`.
typedef struct {
  const float *input;
  long input_stride;
  long length;
  int channels;
  const float *bias;
  int relu;
  int pool, pool_stride, pool_pad_left;
  long out_length;
} sertrain_norm;

/// Per-channel sums over samples `b0 ..< b1` of the input, or of its squared distance to `center`.
void sertrain_norm_sums(const sertrain_norm *norm, int b0, int b1, const float *center, double *out);

/// Pools `input * scale + shift` of samples `b0 ..< b1` into `output` (row `p` of sample `b` at
/// `b*output_stride + p*channels`), and the winners' `x̂` into `winners` unless it is NULL.
void sertrain_norm_pool(const sertrain_norm *norm, int b0, int b1, const float *scale, const float *shift,
                        float *output, long output_stride, const sertrain_pool_winners *winners);

/// Backward over samples `b0 ..< b1`, the pooled gradient routed to the first position of each window equal to its
/// maximum: writes the input gradient `input_gradient` (rows as the input's, `input_gradient_stride` floats per
/// sample), masked by the producer's ReLU, and, with a producer (`bias`), its bias gradient (`channels` values).
void sertrain_norm_backward(const sertrain_norm *norm, int b0, int b1, const sertrain_norm_gradient *gradient,
                            float *input_gradient, long input_gradient_stride, double *out);

// A Conv1D's GEMMs as direct convolution (conv.c; `Conv1DLayer` in ConvNet), on CPUs with AVX-512 or AVX2.

/// A convolution's padded input: row `i` of sample `b` at `data + (b*rows_per_sample + i)*channels`, the rows
/// outside the sample zero; `length` output positions per sample, `kernel` taps.
typedef struct {
  const float *data;
  long channels;
  long rows_per_sample;
  long length;
  int kernel;
} sertrain_conv_input;

/// The input against a kernel `[kernel][input.channels][out_channels]` packed by `sertrain_conv_pack`: output row
/// `t < length` of sample `b` at `output + (b*rows_per_sample + t)*out_channels` is `Σ_j input row (t+j) · W_j`.
/// `limit`: the instruction sets the kernels may use (2: AVX-512, 1: AVX2, 0: none), as packed.
typedef struct {
  sertrain_conv_input input;
  const float *packed;
  long out_channels;
  float *output;
  int limit;
} sertrain_conv;

/// Whether the direct kernels run here for this kernel size (1 to 5) and output width within `limit` (2: AVX-512,
/// 1: AVX2, 0: none): x86-64 with AVX-512F (a multiple of 32 channels) or AVX2 and FMA (a multiple of 16).
int sertrain_conv_available(int kernel, long out_channels, int limit);

/// The instruction set the direct kernels use here within `limit`: 2 for AVX-512, 1 for AVX2, 0 for none.
int sertrain_conv_level(int limit);

/// Floats `sertrain_conv_pack` writes.
long sertrain_conv_packed_count(int kernel, long in_channels, long out_channels);

/// Lays the kernel `w[kernel][in_channels][out_channels]` out for `sertrain_conv_run` within `limit`.
void sertrain_conv_pack(const float *w, int kernel, long in_channels, long out_channels, int limit, float *packed);

/// The blocks of positions `sertrain_conv_run` splits a batch into.
long sertrain_conv_blocks(const sertrain_conv *conv, long batch);

/// Writes the output rows of blocks `first ..< end`.
void sertrain_conv_run(const sertrain_conv *conv, long first, long end);

/// The kernel gradient `dW[j][ci][co] = Σ_b Σ_{t<length} input row (t+j) of b [ci] · gradient row t of b [co]`
/// over `batch` samples, the gradient row `t` of sample `b` at `gradient + (b*rows_per_sample + t)*out_channels`;
/// added to what `weight_gradient` holds when `accumulate` is not 0; `limit` as in `sertrain_conv`.
typedef struct {
  sertrain_conv_input input;
  long batch;
  const float *gradient;
  long out_channels;
  float *weight_gradient;
  int accumulate;
  int limit;
} sertrain_conv_gradient;

/// The column panels `sertrain_conv_weight_gradient` splits the kernel gradient into.
long sertrain_conv_gradient_parts(const sertrain_conv_gradient *gradient);

/// Writes the kernel gradient's columns of panels `first ..< end` (every tap and input channel).
void sertrain_conv_weight_gradient(const sertrain_conv_gradient *gradient, long first, long end);

// A Conv1D's inference forward as Winograd's F(4, k) (winograd.c; `Conv1DLayer` in ConvNet).

/// The most points (k+3 for a k-tap kernel) the Winograd transforms take.
#define SERTRAIN_WINOGRAD_MAX_POINTS 8

/// One chunk of whole samples of a convolution's inference forward, in tiles of four output positions
/// (`(input.length+3)/4` per sample, numbered from the chunk's first sample). The input rows as
/// `sertrain_conv_input` lays them out; rows from `valid_rows` on (the right padding) read as zeros. The transforms
/// `bt` `[points][points]` and `at` `[4][points]`; the transformed input `v` `[points][tiles][input.channels]` and
/// the products `m` `[points][tiles][out_channels]`; output row `t` of sample `b` at
/// `output + (b*input.rows_per_sample + t)*out_channels`.
typedef struct {
  sertrain_conv_input input;
  long valid_rows;
  long first_sample;
  long tiles;
  int points;
  const float *bt, *at;
  float *v, *m;
  long out_channels;
  float *output;
} sertrain_winograd;

/// The kernel's transform `u[p][ci][co] = Σ_j g[p][j] · weight[j][ci][co]`, `g` `[points][kernel]` (also how the
/// kernel gradient's `points` products combine into its taps: `weight` the products, `g` `[taps][points]`).
void sertrain_winograd_kernel(const float *weight, int kernel, long in_channels, long out_channels, const float *g,
                              int points, float *u);

/// Writes `v` for the chunk's tiles `first ..< end`.
void sertrain_winograd_input(const sertrain_winograd *w, long first, long end);

/// Writes the output rows of the chunk's tiles `first ..< end` from `m` (the rows past each sample's length are
/// left as they are).
void sertrain_winograd_output(const sertrain_winograd *w, long first, long end);

/// The kernel gradient's transform of the output gradient, F(k, 4) over the tiles of `w` (its input's lengths, first
/// sample and tiles; `out_channels` the gradient's): `m[p][tile][co] = Σ_{i<4} g4[p][i] · gradient row (4q+i) of the
/// tile's sample`, the gradient's row `t` of sample `b` at `gradient + (b*input.rows_per_sample + t)*out_channels` and
/// its rows from `input.length` on read as zeros; for the chunk's tiles `first ..< end`.
void sertrain_winograd_gradient(const sertrain_winograd *w, const float *gradient, const float *g4, long first,
                                long end);

// The direct convolution with bfloat16 multiplies and float sums (bf16.c; `Precision.bf16` in ConvNet), on CPUs with
// AVX512-BF16.

/// 1 where the bfloat16 kernels run here (x86-64 with AVX512-BF16, AVX512-BW and AVX512-VL), else 0.
int sertrain_bf16_level(void);

/// `x` rounded to bfloat16 as the kernels round every operand: to nearest even, subnormals to signed zero.
float sertrain_bf16_round(float x);

/// Whether the bfloat16 kernels run here for this kernel size (1 to 5) and output width (a multiple of 32).
int sertrain_conv_bf16_available(int kernel, long out_channels);

/// `sertrain_conv` with the kernel packed as bfloat16 by `sertrain_conv_bf16_pack`.
typedef struct {
  sertrain_conv_input input;
  const uint16_t *packed;
  long out_channels;
  float *output;
} sertrain_conv_bf16;

/// bfloat16 values `sertrain_conv_bf16_pack` writes.
long sertrain_conv_bf16_packed_count(int kernel, long in_channels, long out_channels);

/// The kernel `w[kernel][in_channels][out_channels]` rounded to bfloat16 and laid out for `sertrain_conv_bf16_run`.
void sertrain_conv_bf16_pack(const float *w, int kernel, long in_channels, long out_channels, uint16_t *packed);

/// The blocks of positions `sertrain_conv_bf16_run` splits a batch into.
long sertrain_conv_bf16_blocks(const sertrain_conv_bf16 *conv, long batch);

/// Writes the output rows of blocks `first ..< end`, as `sertrain_conv_run` with bfloat16 multiplies.
void sertrain_conv_bf16_run(const sertrain_conv_bf16 *conv, long first, long end);

/// The column panels `sertrain_conv_bf16_weight_gradient` splits the kernel gradient into.
long sertrain_conv_bf16_gradient_parts(const sertrain_conv_gradient *gradient);

/// `sertrain_conv_weight_gradient` with bfloat16 multiplies: columns of panels `first ..< end`.
void sertrain_conv_bf16_weight_gradient(const sertrain_conv_gradient *gradient, long first, long end);
