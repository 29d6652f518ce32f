import CConvKernels

// MARK: - Conv1D -> BatchNormalization -> MaxPooling1D as one layer

/// The seed's block, `Conv1D -> BatchNormalization -> MaxPooling1D` (or a `BatchNormalization -> MaxPooling1D`
/// without a Conv1D before it), as one layer, in fewer sweeps over the largest tensors, which are memory-bound:
/// - The pool runs on the normalised values as the BatchNorm's kernels (batchnorm.c) compute them, so the
///   normalised tensor is never stored, and backward routes the pooled gradient in the sweep that writes the
///   BatchNorm's input gradient (`BatchNormLayer`).
/// - The convolution's output is stored raw (`Conv1DLayer.forwardRaw`); the BatchNorm's kernels add its bias and
///   apply its ReLU as they read it, and backward's sweep applies the ReLU mask and sums the bias gradient as it
///   writes the convolution's output gradient.
/// - `stem`: a first layer over one input channel. Its output, the largest tensor of a typical model, is not
///   stored at all: stem.c recomputes it from the input in every sweep (k multiplies per value) and writes the
///   convolution's kernel and bias gradients in backward's sweep (summed like the BatchNorm's sums, not by a GEMM).
///
/// The values are those of the layers apart, computed by the same operations in the same order, but for the
/// BatchNorm's backward sums, which add the same terms in another order (over pooled rows, not input positions).
final class ConvBlockLayer: Layer {
  let conv: Conv1DLayer?
  let norm: BatchNormLayer
  let pool: PoolWindow
  let plans: [LayerPlan]
  let isStem: Bool
  /// The convolution's raw output `[B, L, C]` (`Conv1DLayer.rawLayout`); none for a stem.
  private var raw: FloatBuffer?
  private var capacity = 0

  /// - Parameter stem: recompute the convolution (stem.c); needs one input channel and at most
  ///   `SERTRAIN_STEM_MAX_KERNEL` taps.
  init(conv: Conv1DLayer?, norm: BatchNormLayer, pool: MaxPoolLayer, stem: Bool) {
    precondition(!stem || conv.map { $0.cin == 1 && $0.k <= Int(SERTRAIN_STEM_MAX_KERNEL) } == true, "stem")
    (self.conv, self.norm, self.pool, isStem) = (conv, norm, pool.pool, stem)
    plans = (conv.map { [$0.plan] } ?? []) + [norm.plan, pool.plan]
  }

  var inputLayout: Layout? { conv?.paddedInputLayout }
  var inputGradientLayout: Layout? { conv?.rawLayout }
  var ownedFloats: Int { (raw?.count ?? 0) + norm.ownedFloats }

  /// Allocates the raw output; the convolution's output gradient and its Winograd buffers (after the gradient in
  /// backward, alone in an inference forward) live in the network's shared scratch.
  func reserve(batch: Int) -> Int {
    guard let conv, !isStem else { return 0 }
    if batch > capacity {
      capacity = batch
      raw = FloatBuffer(count: conv.rawLayout.rows(batch: batch) * conv.cout)
    }
    let (forward, backward) = conv.winogradScratch(batch: batch)
    return max(forward, conv.paddedGradientLayout.rows(batch: batch) * conv.cout + backward)
  }

  private func rawOutput(_ conv: Conv1DLayer, batch: Int) -> Tensor {
    Tensor(base: raw!.pointer, batch: batch, length: conv.length, channels: conv.cout, layout: conv.rawLayout)
  }

  /// The BatchNorm's kernels over the block's input `x`: stem.c's on `x` itself, else batchnorm.c's on the raw
  /// convolution output, through its bias and ReLU, or on `x` when there is no convolution.
  private func kernels(_ x: Tensor) -> NormKernels {
    guard let conv else { return .norm(x, pool: pool) }
    if isStem { return .stem(conv.stem(input: x, pool: pool)) }
    return .norm(rawOutput(conv, batch: x.batch), pool: pool, bias: conv.bias, relu: conv.relu)
  }

  /// x `[B, L, cin]` (`Conv1DLayer.paddedInputLayout`) -> y `[B, ceil(L/s), cout]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    if isStem {
      x.zeroPadding()
    } else if let conv {
      conv.forwardRaw(x, rawOutput(conv, batch: x.batch), inference: !ctx.training, workspace: ctx.scratch)
    }
    norm.normalize(kernels(x), batch: x.batch, length: pool.inputLength, pool: pool, into: y, ctx)
  }

  /// dy `[B, ceil(L/s), cout]` -> dW `[k, cin, cout]`, db `[cout]`, dgamma, dbeta `[cout]`, dx `[B, L, cin]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let conv else {
      norm.backward(kernels(x), batch: x.batch, pool: pool, y: y, dy: dy, dx: dx, ctx)
      return
    }
    if isStem {
      norm.backward(kernels(x), batch: x.batch, pool: pool, y: y, dy: dy, dx: nil, producer: conv, ctx)
      return
    }
    // The gradient of the convolution's raw output, masked by its ReLU, in the layout its backward reads.
    let d = Tensor(
      base: ctx.scratch!, batch: x.batch, length: conv.length, channels: conv.cout, layout: conv.paddedGradientLayout)
    norm.backward(kernels(x), batch: x.batch, pool: pool, y: y, dy: dy, dx: d, producer: conv, ctx)
    conv.backwardMasked(
      x: x, d: d, dx: dx, workspace: ctx.scratch! + conv.paddedGradientLayout.rows(batch: x.batch) * conv.cout,
      parametersDone: ctx.parametersDone)
  }
}
