import CConvKernels

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - BatchNormalization

/// BatchNormalization over the batch and length axes, per channel, as Keras computes it: training uses the batch
/// mean and biased variance (summed in double precision, two passes) and updates the moving statistics with
/// `m = m*momentum + stat*(1-momentum)`; inference uses the moving statistics. `y = x*s + (beta - mean*s)`
/// with `s = gamma / sqrt(var + epsilon)`.
///
/// Its sweeps over the input run in C (`NormKernels`: batchnorm.c). They end in a max-pool: over windows of one
/// position when the layer runs alone, over a MaxPooling1D's windows when it runs inside a `ConvBlockLayer`, which
/// also hands it kernels that read the convolution's raw output through its bias and ReLU (or recompute it,
/// stem.c). A training forward keeps the `x̂` of each window's winner (the first position equal to its maximum),
/// a tensor of the output's size. Every output gradient goes to its window's winner, so backward's sums
/// `Σdz = Σdy` and `Σdz·x̂ = Σdy·x̂_winner` come from the output rows (`sertrain_pooled_sums`), and one sweep over
/// the input routes the gradient and writes `dx`. (Those sums add the same terms as over the input positions, in
/// another order.)
final class BatchNormLayer: Layer {
  let plan: LayerPlan
  let channels: Int
  let momentum: Float, oneMinusMomentum: Float, epsilon: Float
  let variables: NormVariables
  /// The last training forward's batch statistics, for backward.
  private var mean: [Float], invStd: [Float]
  /// The last forward's affine map `y = x*scale + shift`.
  private var scale: [Float], shift: [Float]
  private var count = 0.0
  /// Forward: [sums, count] then [variance sums]; backward: [Σdy, Σdy·x̂].
  private var sums: [Double]
  /// The last training forward's `x̂` of each window's winner (`sertrain_pool_winners`): output rows of `channels`,
  /// compact per sample.
  private var winners: FloatBuffer?
  private var winnersValid = false

  var plans: [LayerPlan] { [plan] }
  var ownedFloats: Int { winners?.count ?? 0 }

  init(plan: LayerPlan, variables: NormVariables) {
    self.plan = plan
    self.variables = variables
    channels = plan.inputChannels
    let m = plan.spec.momentum ?? 0.99
    (momentum, oneMinusMomentum) = (Float(m), Float(1.0 - m))
    epsilon = Float(plan.spec.epsilon ?? 1e-3)
    (mean, invStd) = (Array(repeating: 0, count: channels), Array(repeating: 1, count: channels))
    (scale, shift) = (Array(repeating: 1, count: channels), Array(repeating: 0, count: channels))
    sums = Array(repeating: 0, count: 2 * channels)
  }

  /// The reductions a rank with no rows joins, in forward and backward order (synchronised BatchNorm).
  var reductionSizes: (forward: [Int], backward: [Int]) { ([channels + 1, channels], [2 * channels]) }

  /// x `[B, L, C]` -> y `[B, L, C]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let pool = PoolWindow(identity: x.length)
    normalize(.norm(x, pool: pool), batch: x.batch, length: x.length, pool: pool, into: y, ctx)
  }

  /// dy `[B, L, C]` -> dgamma, dbeta `[C]`, dx `[B, L, C]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    let pool = PoolWindow(identity: x.length)
    backward(.norm(x, pool: pool), batch: x.batch, pool: pool, y: y, dy: dy, dx: dx, ctx)
  }

  /// The statistics (a training forward's, from the batch and reduced across ranks, updating the moving ones; else
  /// the moving ones), then `x*scale + shift` pooled into `y` `[B, pool.outputLength, C]`; `kernels` read the input.
  func normalize(
    _ kernels: NormKernels, batch: Int, length: Int, pool: PoolWindow, into y: Tensor, _ ctx: StepContext
  ) {
    let c = channels
    let (gamma, beta) = (variables.gamma.value, variables.beta.value)
    let (movingMean, movingVariance) = (variables.movingMean, variables.movingVariance)
    if ctx.training {
      sums.withUnsafeMutableBufferPointer { s in
        let p = s.baseAddress!
        // Pass 1: the mean. The reduction carries [sums, count] so that ranks with fewer rows weigh less.
        partSums(batch: batch, width: c, into: p) { _, samples, part in kernels.sums(samples, center: nil, part) }
        p[c] = Double(batch * length)
        ctx.reduce?(UnsafeMutableBufferPointer(start: p, count: c + 1))
        count = p[c]
        for i in 0..<c { mean[i] = Float(p[i] / count) }
        // Pass 2: the biased variance around the float32 mean.
        mean.withUnsafeBufferPointer { m in
          partSums(batch: batch, width: c, into: p + c) { _, samples, part in
            kernels.sums(samples, center: m.baseAddress!, part)
          }
        }
        ctx.reduce?(UnsafeMutableBufferPointer(start: p + c, count: c))
        for i in 0..<c {
          let variance = Float(p[c + i] / count)
          invStd[i] = 1 / (variance + epsilon).squareRoot()
          scale[i] = gamma[i] * invStd[i]
          shift[i] = beta[i] - mean[i] * scale[i]
          movingMean[i] = movingMean[i] * momentum + mean[i] * oneMinusMomentum
          movingVariance[i] = movingVariance[i] * momentum + variance * oneMinusMomentum
        }
      }
    } else {
      for i in 0..<c {
        scale[i] = gamma[i] / (movingVariance[i] + epsilon).squareRoot()
        shift[i] = beta[i] - movingMean[i] * scale[i]
      }
    }
    let rows = pool.outputLength
    let stride = y.layout.stride * c
    winnersValid = ctx.training
    if ctx.training && (winners == nil || winners!.count < batch * rows * c) {
      winners = FloatBuffer(count: batch * rows * c)
    }
    scale.withUnsafeBufferPointer { s in
      shift.withUnsafeBufferPointer { h in
        mean.withUnsafeBufferPointer { m in
          invStd.withUnsafeBufferPointer { inv in
            var w = sertrain_pool_winners(
              mean: m.baseAddress!, inv_std: inv.baseAddress!, xhat: winners?.pointer, xhat_stride: rows * c)
            withUnsafePointer(to: &w) { w in
              Parallel.forEach(batch) { _, samples in
                kernels.pool(
                  samples, scale: s.baseAddress!, shift: h.baseAddress!, y.row(0, 0), stride: stride,
                  winners: ctx.training ? w : nil)
              }
            }
          }
        }
      }
    }
  }

  /// `dx = gamma/σ · (dz - Σdz/N - x̂·Σ(dz·x̂)/N)`, `dgamma = Σ dz·x̂`, `dbeta = Σ dz`, where `dz` is the output
  /// gradient `dy` `[B, pool.outputLength, C]` routed to the first position of each window equal to its maximum.
  /// The sweep writes `dx` `[B, L, C]` (unless nil: the input is the network's), and, for a `producer` Conv1D whose
  /// bias and ReLU `kernels` apply, its bias gradient; stem.c's kernels write its kernel and bias gradients.
  func backward(
    _ kernels: NormKernels, batch: Int, pool: PoolWindow, y: Tensor, dy: Tensor, dx: Tensor?,
    producer: Conv1DLayer? = nil, _ ctx: StepContext
  ) {
    precondition(winnersValid, "\(plan.name): backward needs a training forward first")
    let c = channels
    let m = UnsafeMutablePointer<Float>.allocate(capacity: 7 * c)
    defer { m.deallocate() }
    let inv = m + c
    let (a1, a2, sc, s, h) = (m + 2 * c, m + 3 * c, m + 4 * c, m + 5 * c, m + 6 * c)
    for i in 0..<c { (m[i], inv[i], s[i], h[i]) = (mean[i], invStd[i], scale[i], shift[i]) }
    sums.withUnsafeMutableBufferPointer { sb in
      let total = sb.baseAddress!
      // [Σdz, Σdz·x̂] from the output rows: every output gradient goes to its window's winner.
      let (rows, g, gStride, xhat) = (pool.outputLength, dy.row(0, 0), dy.layout.stride * c, winners!.pointer)
      partSums(batch: batch, width: 2 * c, into: total) { _, samples, part in
        sertrain_pooled_sums(
          g, gStride, xhat, rows * c, rows, Int32(c), Int32(samples.lowerBound), Int32(samples.upperBound), part)
      }
      // This rank's share of dgamma and dbeta (the gradient allreduce sums the shares); the input gradient
      // needs the sums over every rank's rows.
      for i in 0..<c {
        variables.beta.gradient[i] = Float(total[i])
        variables.gamma.gradient[i] = Float(total[c + i])
      }
      ctx.reduce?(UnsafeMutableBufferPointer(start: total, count: 2 * c))
    }
    guard dx != nil || producer != nil else { return }
    let gamma = variables.gamma.value
    for i in 0..<c {
      a1[i] = Float(sums[i] / count)
      a2[i] = Float(sums[c + i] / count)
      sc[i] = gamma[i] * invStd[i]
    }
    let gradient = sertrain_norm_gradient(
      output: y.row(0, 0), output_gradient: dy.row(0, 0), output_stride: y.layout.stride * c,
      output_gradient_stride: dy.layout.stride * c, scale: s, shift: h, mean: m, inv_std: inv, a1: a1, a2: a2,
      gamma_inv_std: sc)
    let (dxBase, dxStride) = (dx?.row(0, 0), (dx?.layout.stride ?? 0) * c)
    let taps = kernels.isStem ? producer!.k : 0
    withUnsafeTemporaryAllocation(of: Double.self, capacity: (taps + 1) * c) { out in
      let o = out.baseAddress!
      partSums(batch: batch, width: (taps + 1) * c, into: o) { _, samples, part in
        withUnsafePointer(to: gradient) { kernels.backward(samples, $0, dx: dxBase, dxStride: dxStride, part) }
      }
      guard let producer else { return }
      for i in 0..<(taps * c) { producer.dWeight[i] = Float(o[i]) }
      for i in 0..<c { producer.dBias[i] = Float(o[taps * c + i]) }
    }
  }
}

/// The C kernels of a BatchNorm's sweeps and the pool after it, over samples `b0 ..< b1` (see CConvKernels.h):
/// batchnorm.c's over a stored input (read through a Conv1D's bias and ReLU when given), or stem.c's, which
/// recompute a first Conv1D's output from the network's input wherever they read it.
enum NormKernels {
  case stem(sertrain_stem)
  case norm(sertrain_norm)

  /// The input `x` `[B, L, C]`, read through `bias` and, with it, a ReLU when `relu`.
  static func norm(_ x: Tensor, pool: PoolWindow, bias: UnsafePointer<Float>? = nil, relu: Bool = false) -> Self {
    .norm(
      sertrain_norm(
        input: x.row(0, 0), input_stride: x.layout.stride * x.channels, length: x.length,
        channels: Int32(x.channels), bias: bias, relu: relu ? 1 : 0, pool: Int32(pool.size),
        pool_stride: Int32(pool.stride), pool_pad_left: Int32(pool.padLeft), out_length: pool.outputLength))
  }

  var isStem: Bool {
    if case .stem = self { return true }
    return false
  }

  func sums(_ samples: Range<Int>, center: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Double>) {
    let (lo, hi) = (Int32(samples.lowerBound), Int32(samples.upperBound))
    switch self {
    case .stem(let k): withUnsafePointer(to: k) { sertrain_stem_sums($0, lo, hi, center, out) }
    case .norm(let k): withUnsafePointer(to: k) { sertrain_norm_sums($0, lo, hi, center, out) }
    }
  }

  func pool(
    _ samples: Range<Int>, scale: UnsafePointer<Float>, shift: UnsafePointer<Float>,
    _ output: UnsafeMutablePointer<Float>, stride: Int, winners: UnsafePointer<sertrain_pool_winners>?
  ) {
    let (lo, hi) = (Int32(samples.lowerBound), Int32(samples.upperBound))
    switch self {
    case .stem(let k):
      withUnsafePointer(to: k) { sertrain_stem_pool($0, lo, hi, scale, shift, output, stride, winners) }
    case .norm(let k):
      withUnsafePointer(to: k) { sertrain_norm_pool($0, lo, hi, scale, shift, output, stride, winners) }
    }
  }

  /// The backward sweep; batchnorm.c's writes `dx` (and a producer's bias gradient), stem.c's the producer's kernel
  /// and bias gradients.
  func backward(
    _ samples: Range<Int>, _ gradient: UnsafePointer<sertrain_norm_gradient>, dx: UnsafeMutablePointer<Float>?,
    dxStride: Int, _ out: UnsafeMutablePointer<Double>
  ) {
    let (lo, hi) = (Int32(samples.lowerBound), Int32(samples.upperBound))
    switch self {
    case .stem(let k): withUnsafePointer(to: k) { sertrain_stem_backward($0, lo, hi, gradient, out) }
    case .norm(let k):
      withUnsafePointer(to: k) { sertrain_norm_backward($0, lo, hi, gradient, dx, dxStride, out) }
    }
  }
}
