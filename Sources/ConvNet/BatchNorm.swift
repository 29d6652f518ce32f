import CSupport

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - BatchNormalization

/// BatchNormalization over the batch and length axes, per channel, as Keras computes it: training uses the batch
/// mean and biased variance (summed in double precision, two passes) and updates the moving statistics with
/// `m = m*momentum + stat*(1-momentum)`; inference uses the moving statistics. `y = x*s + (beta - mean*s)`
/// with `s = gamma / sqrt(var + epsilon)`.
///
/// The network fuses its neighbours into it where the model allows (the seed's blocks are all
/// Conv1D → BatchNorm → MaxPool), to save sweeps over the largest tensors, which are memory-bound:
/// - `pool`: the MaxPooling1D that follows. Forward pools `x*s + h` straight from the input, so the normalised
///   tensor is never stored, and in training keeps the `x̂` of each window's winner (the first position equal to
///   its maximum), a tensor of the pooled size. Every pooled gradient goes to its window's winner, so backward's
///   sums `Σdz = Σdy` and `Σdz·x̂ = Σdy·x̂_winner` come from the pooled rows (`sertrain_pooled_sums`), and a single
///   sweep over the input routes the pooled gradient and writes `dx`. (Those sums add the same terms as over the
///   input positions, in another order.)
/// - `producer`: the Conv1D that wrote the input. It leaves its output raw (`Conv1DLayer.readByNorm`) and every
///   read here adds its bias and applies its ReLU on the fly (`InputMap`), which saves a read and a write of the
///   largest tensors; backward's sweep also applies its ReLU mask and sums its bias gradient. Every value is
///   computed by the same operations in the same order as unfused, so those results are bit-identical.
/// - `stem`: the producer is the first layer and reads one channel (`Conv1DLayer.computedByNorm`). Its output,
///   the largest tensor of a typical model, is not stored at all: the kernels in stem.c recompute it from the
///   input in every sweep (k multiplies per value), do this layer's and the pool's work on it as above, and write
///   the producer's kernel and bias gradients in backward's sweep. Sums keep the same blocking; the kernel
///   gradient is summed like them instead of by a GEMM.
final class BatchNormLayer: Layer {
  let plan: LayerPlan
  let channels: Int
  let momentum: Float, epsilon: Float
  let gamma: UnsafeMutablePointer<Float>, beta: UnsafeMutablePointer<Float>
  let dGamma: UnsafeMutablePointer<Float>, dBeta: UnsafeMutablePointer<Float>
  let movingMean: UnsafeMutablePointer<Float>, movingVariance: UnsafeMutablePointer<Float>
  /// The fused MaxPooling1D and Conv1D (see the type's comment); set by the network.
  var pool: MaxPoolLayer?
  var producer: Conv1DLayer?
  /// How the input is read: with the producing Conv1D's bias and ReLU applied on the fly.
  private var inputMap: InputMap { producer?.outputMap ?? .identity }
  /// The producer's output is computed here from its input (see the type's comment); `x` is then that input.
  private var isStem: Bool { producer?.computedByNorm == true }

  /// The C kernels that run this layer's sweeps over its input `x`: stem.c's when the producer is computed here,
  /// else batchnorm.c's, reading `x` through `inputMap`, with the fused pool if any.
  private func kernels(_ x: Tensor) -> Kernels {
    if isStem { return .stem(producer!.stem(input: x, pool: pool!)) }
    let map = inputMap
    return .norm(
      sertrain_norm(
        input: x.row(0, 0), input_stride: x.layout.stride * channels, length: x.length, channels: Int32(channels),
        bias: map.bias.map { UnsafePointer($0) }, relu: map.relu ? 1 : 0, pool: Int32(pool?.pool ?? 1),
        pool_stride: Int32(pool?.stride ?? 1), pool_pad_left: Int32(pool?.padLeft ?? 0),
        out_length: pool?.plan.outputLength ?? x.length))
  }

  /// One of the two kernel sets, called on a range of samples (see CSupport.h).
  private enum Kernels {
    case stem(sertrain_stem)
    case norm(sertrain_norm)

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

    /// The backward sweep; batchnorm.c's writes `dx`, stem.c's the producer's kernel and bias gradients.
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
  /// The last training forward's batch statistics, for backward.
  private var mean: [Float], invStd: [Float]
  /// With a fused pool, the last training forward's `x̂` of each window's winner (`sertrain_pool_winners`), from
  /// which backward takes its sums without a sweep over the input; pooled rows of `channels`, compact per sample.
  private var winners: FloatBuffer?
  private var winnersValid = false
  /// The last forward's affine map `y = x*scale + shift`.
  private var scale: [Float], shift: [Float]
  private var count = 0.0
  private var sums: [Double]

  init(plan: LayerPlan, variables: Variables, state: Variables) {
    self.plan = plan
    channels = plan.inputChannels
    let m = plan.spec.momentum ?? 0.99
    momentum = Float(m)
    oneMinusMomentum = Float(1.0 - m)
    epsilon = Float(plan.spec.epsilon ?? 1e-3)
    gamma = variables.values["gamma"]!
    beta = variables.values["beta"]!
    dGamma = variables.gradients["gamma"]!
    dBeta = variables.gradients["beta"]!
    movingMean = state.values["moving_mean"]!
    movingVariance = state.values["moving_variance"]!
    mean = Array(repeating: 0, count: channels)
    invStd = Array(repeating: 1, count: channels)
    scale = Array(repeating: 1, count: channels)
    shift = Array(repeating: 0, count: channels)
    sums = Array(repeating: 0, count: 2 * channels)  // [sums, count] then [variance sums]; backward [Σdy, Σdy·x̂]
  }

  private let oneMinusMomentum: Float

  func reserve(batch: Int) {}

  /// The reductions a rank with no rows joins, in forward and backward order (synchronised BatchNorm).
  func reductionSizes() -> (forward: [Int], backward: [Int]) { ([channels + 1, channels], [2 * channels]) }

  /// Per-channel sums of `x` (or of `(x - center)²`) over every position of every sample.
  private func channelSums(_ x: Tensor, _ out: UnsafeMutablePointer<Double>, center: UnsafePointer<Float>?) {
    let kernels = kernels(x)
    partSums(batch: x.batch, width: channels, into: out) { _, samples, part in
      kernels.sums(samples, center: center, part)
    }
  }

  /// x `[B, L, C]` (with a stem: the producer's input `[B, L, 1]`) -> y `[B, L, C]`, or with a fused pool the pool's
  /// output `[B, L_out, C]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let c = channels
    if isStem { x.zeroPadding() }
    if ctx.training {
      sums.withUnsafeMutableBufferPointer { s in
        let p = s.baseAddress!
        // Pass 1: the mean. The reduction carries [sums, count] so that ranks with fewer rows weigh less.
        channelSums(x, p, center: nil)
        p[c] = Double(x.batch * x.length)
        ctx.reduce?(UnsafeMutableBufferPointer(start: p, count: c + 1))
        count = p[c]
        for i in 0..<c { mean[i] = Float(p[i] / count) }
        // Pass 2: the biased variance around the float32 mean.
        mean.withUnsafeBufferPointer { channelSums(x, p + c, center: $0.baseAddress!) }
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
    let c8 = c & ~7
    scale.withUnsafeBufferPointer { sb in
      shift.withUnsafeBufferPointer { hb in
        let (s, h) = (sb.baseAddress!, hb.baseAddress!)
        let map = inputMap
        if let pool {
          let kernels = kernels(x)
          let stride = y.layout.stride * c
          let rows = pool.plan.outputLength
          winnersValid = ctx.training
          guard ctx.training else {
            Parallel.forEach(x.batch) { _, samples in
              kernels.pool(samples, scale: s, shift: h, y.row(0, 0), stride: stride, winners: nil)
            }
            return
          }
          if winners == nil || winners!.count < x.batch * rows * c { winners = FloatBuffer(count: x.batch * rows * c) }
          let xhat = winners!.pointer
          mean.withUnsafeBufferPointer { mb in
            invStd.withUnsafeBufferPointer { ib in
              var w = sertrain_pool_winners(
                mean: mb.baseAddress!, inv_std: ib.baseAddress!, xhat: xhat, xhat_stride: rows * c)
              Parallel.forEach(x.batch) { _, samples in
                kernels.pool(samples, scale: s, shift: h, y.row(0, 0), stride: stride, winners: &w)
              }
            }
          }
          return
        }
        Parallel.forEach(x.batch) { _, samples in
          for b in samples {
            for t in 0..<x.length {
              let src = x.row(b, t)
              let dst = y.row(b, t)
              var i = 0
              while i < c8 {
                store8(map.apply8(load8(src + i), i) * load8(s + i) + load8(h + i), dst + i)
                i &+= 8
              }
              while i < c {
                dst[i] = map.apply(src[i], i) * s[i] + h[i]
                i &+= 1
              }
            }
          }
        }
      }
    }
  }

  /// `dx = gamma/σ · (dy - Σdy/N - x̂·Σ(dy·x̂)/N)`, `dgamma = Σ dy·x̂`, `dbeta = Σ dy`. With a fused pool, `y` and
  /// `dy` are the pool's output and its gradient, and the C kernels (stem.c, batchnorm.c) route that gradient
  /// to the first position of each window equal to its maximum in both sweeps.
  /// dy `[B, L, C]` (or `[B, L_out, C]`) -> dgamma, dbeta `[C]`, dx `[B, L, C]` (with a stem: the producer's dW
  /// `[k, 1, C]` and db `[C]` instead), and the producer's db `[C]` when there is one.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    let map = inputMap
    let c = channels
    let c8 = c & ~7
    precondition(pool == nil || dx != nil || isStem, "\(plan.name): a fused pool needs the input gradient")
    let m = UnsafeMutablePointer<Float>.allocate(capacity: 7 * c)
    defer { m.deallocate() }
    let inv = m + c
    let (a1, a2, sc, s, h) = (m + 2 * c, m + 3 * c, m + 4 * c, m + 5 * c, m + 6 * c)
    for i in 0..<c { (m[i], inv[i], s[i], h[i]) = (mean[i], invStd[i], scale[i], shift[i]) }
    sums.withUnsafeMutableBufferPointer { sb in
      let total = sb.baseAddress!
      if let pool {
        // [Σdz, Σdz·x̂] from the pooled rows: every pooled gradient goes to its window's winner.
        precondition(winnersValid, "\(plan.name): backward needs a training forward first")
        let rows = pool.plan.outputLength
        let (g, gStride, xhat) = (dy.row(0, 0), dy.layout.stride * c, winners!.pointer)
        partSums(batch: x.batch, width: 2 * c, into: total) { _, samples, part in
          sertrain_pooled_sums(
            g, gStride, xhat, rows * c, rows, Int32(c), Int32(samples.lowerBound), Int32(samples.upperBound), part)
        }
      } else {
        sweepSums(batch: x.batch, length: x.length, width: 2 * c, into: total) { _, b, t, acc in
          let g = dy.row(b, t)
          let xr = x.row(b, t)
          let (s1, s2) = (acc, acc + c)
          var i = 0
          while i < c8 {
            let gv = load8(g + i)
            store8(load8(s1 + i) + gv, s1 + i)
            store8(load8(s2 + i) + gv * ((map.apply8(load8(xr + i), i) - load8(m + i)) * load8(inv + i)), s2 + i)
            i &+= 8
          }
          while i < c {
            s1[i] += g[i]
            s2[i] += g[i] * ((map.apply(xr[i], i) - m[i]) * inv[i])
            i &+= 1
          }
        }
      }
      // This rank's share of dgamma and dbeta (the gradient allreduce sums the shares); the input gradient
      // needs the sums over every rank's rows.
      for i in 0..<c {
        dBeta[i] = Float(total[i])
        dGamma[i] = Float(total[c + i])
      }
      ctx.reduce?(UnsafeMutableBufferPointer(start: total, count: 2 * c))
    }
    for i in 0..<c {
      a1[i] = Float(sums[i] / count)
      a2[i] = Float(sums[c + i] / count)
      sc[i] = gamma[i] * invStd[i]
    }
    if pool != nil {
      // One sweep in C: the input gradient (batchnorm.c) or the stem's kernel gradient, tap by tap (stem.c), then
      // the producer's bias gradient.
      let kernels = kernels(x)
      let gradient = sertrain_norm_gradient(
        output: y.row(0, 0), output_gradient: dy.row(0, 0), output_stride: y.layout.stride * c,
        output_gradient_stride: dy.layout.stride * c, scale: s, shift: h, mean: m, inv_std: inv, a1: a1, a2: a2,
        gamma_inv_std: sc)
      let (dxBase, dxStride) = (dx?.row(0, 0), (dx?.layout.stride ?? 0) * c)
      let taps = isStem ? producer!.k : 0
      withUnsafeTemporaryAllocation(of: Double.self, capacity: (taps + 1) * c) { out in
        let o = out.baseAddress!
        partSums(batch: x.batch, width: (taps + 1) * c, into: o) { _, samples, part in
          withUnsafePointer(to: gradient) { kernels.backward(samples, $0, dx: dxBase, dxStride: dxStride, part) }
        }
        guard let producer else { return }
        for i in 0..<(taps * c) { producer.dWeight[i] = Float(o[i]) }
        for i in 0..<c { producer.dBias[i] = Float(o[taps * c + i]) }
      }
      return
    }
    guard let dx else { return }
    @inline(__always) func normalise(_ b: Int, _ t: Int) {
      let xr = x.row(b, t)
      let g = dy.row(b, t)
      let o = dx.row(b, t)
      var i = 0
      while i < c8 {
        let xhat = (map.apply8(load8(xr + i), i) - load8(m + i)) * load8(inv + i)
        store8(load8(sc + i) * (load8(g + i) - load8(a1 + i) - xhat * load8(a2 + i)), o + i)
        i &+= 8
      }
      while i < c {
        let xhat = (map.apply(xr[i], i) - m[i]) * inv[i]
        o[i] = sc[i] * (g[i] - a1[i] - xhat * a2[i])
        i &+= 1
      }
    }
    if let producer {
      let relu = producer.relu
      withUnsafeTemporaryAllocation(of: Double.self, capacity: c) { bias in
        sweepSums(batch: x.batch, length: x.length, width: c, into: bias.baseAddress!) { _, b, t, acc in
          normalise(b, t)
          maskRow(dx.row(b, t), x.row(b, t), acc, c, relu: relu, map: map)
        }
        for i in 0..<c { producer.dBias[i] = Float(bias[i]) }
      }
    } else {
      Parallel.forEach(x.batch) { _, samples in
        for b in samples {
          for t in 0..<x.length { normalise(b, t) }
        }
      }
    }
  }
}
