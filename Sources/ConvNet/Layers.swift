import Base
import COpenBLAS
import CSupport

#if canImport(Glibc)
  import Glibc
#endif

/// What a forward or backward pass needs besides tensors.
struct StepContext {
  var training: Bool
  /// Seeds the dropout masks of this step (derived from the run's seed, epoch, step and rank).
  var dropoutSeed: UInt64 = 0
  /// Sums per-channel statistics across ranks in place (synchronised BatchNorm); nil on one process.
  var reduce: ((UnsafeMutableBufferPointer<Double>) -> Void)?
}

/// One layer: a forward/backward pair over NLC tensors. Backward overwrites this layer's parameter gradients
/// and, when `dx` is given, writes the gradient of its input.
protocol Layer: AnyObject {
  var plan: LayerPlan { get }
  /// Allocates scratch for batches up to `batch`.
  func reserve(batch: Int)
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext)
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext)
}

/// Pointers into the parameter, gradient and state buffers for one layer's variables.
struct Variables {
  var values: [String: UnsafeMutablePointer<Float>] = [:]
  var gradients: [String: UnsafeMutablePointer<Float>] = [:]
}

// MARK: - Conv1D

/// Conv1D, padding `same`, stride 1, bias, optional fused ReLU. Kernel `[k, cin, cout]` as in Keras.
///
/// The batch is `k` GEMMs with `K = k*cin`, with no im2col copy. Each sample sits in a zero-padded NLC buffer of
/// `S` rows, `S` the smallest multiple of `k` that holds its `L+k-1` padded rows, so output row `i` (over the
/// whole batch, `B*S` rows) is `X[i..<i+k] · W`: the `k` input rows that start at `i`, laid end to end, times the
/// kernel as a `k*cin × cout` matrix. BLAS forbids one GEMM over such overlapping rows (`lda < K`), but the rows
/// `i = k*s + r` of one phase `r` do not overlap: they start `k*cin` floats apart, so phase `r` is one ordinary
/// GEMM with `lda = k*cin` on the buffer offset by `r` rows, writing every `k`-th output row (`ldc = k*cout`).
/// Rows past a sample's length (at most `2k-2` of every `S`) are computed and ignored. Backward is the same
/// decomposition: `dW = Σ_r Xᵣᵀ · dYᵣ`, and `dX` is the flipped, transposed kernel run over the padded output
/// gradient. Cost: `2·B·L·k·cin·cout` flops per pass, plus under 1% for the ignored rows. With `K = k*cin` the
/// GEMMs run near the square sgemm's speed, where one GEMM per tap (`K = cin`, the output read and written `k`
/// times) reached about 83% of it (BENCHMARKS.md).
///
/// On CPUs with AVX-512 (AVX2) each pass whose output width is a multiple of 32 (16) channels runs instead as
/// direct convolution (conv.c) over the same buffers and layouts: the phase GEMMs make OpenBLAS pack every input row once
/// per phase (`k` times per pass), which held conv2 and conv3 of the seed model at 80-90% of the square sgemm's
/// speed; the direct kernels pack each input row once and run at 95-100% of it (`bench model --profile`). They
/// leave the rows past each sample's length unwritten (the phase GEMMs write them with values nobody reads).
final class Conv1DLayer: Layer {
  let plan: LayerPlan
  let k: Int, cin: Int, cout: Int, length: Int, padLeft: Int, padRight: Int, relu: Bool
  let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
  let dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
  private var outScratch: FloatBuffer?
  private var dyScratch: FloatBuffer?
  private var dxScratch: FloatBuffer?
  /// The kernel flipped and transposed for the input gradient: tap `k-1-j` of `W`, `cout × cin`, at block `j`.
  private let flipped: FloatBuffer
  /// Set by the network when a BatchNorm reads this layer's output: it applies the bias and ReLU as it reads
  /// (`outputMap`), so the output holds the raw GEMM result and this layer makes no pass over it, and in backward
  /// it applies the ReLU mask and writes the bias gradient (one sweep over the rows instead of two).
  var readByNorm = false
  /// Set by the network when this is the first layer, over a one-channel input, and a BatchNorm and a MaxPool
  /// follow: the BatchNorm computes this layer's output wherever it reads it and writes this layer's gradients
  /// (`BatchNormLayer`, stem.c), and the network skips this layer and never stores its output.
  var computedByNorm = false
  /// The kernel laid out for the direct convolution (conv.c), for the output and for the input gradient.
  private var packed: FloatBuffer?
  private var packedFlipped: FloatBuffer?
  /// Whether the direct convolution computes a pass with this kernel size and output width here.
  private func runsDirect(_ outChannels: Int) -> Bool {
    Network.directConvolutionRuns(kernel: k, outChannels: outChannels)
  }
  /// The bias and ReLU that turn the GEMM result into this layer's output.
  var outputMap: InputMap { InputMap(bias: bias, relu: relu) }

  /// This layer over the input `x` (in `inputLayout`) and the `pool` after its BatchNorm, for stem.c.
  func stem(input x: Tensor, pool: MaxPoolLayer) -> sertrain_stem {
    precondition(cin == 1 && k <= Int(SERTRAIN_STEM_MAX_KERNEL) && x.layout == inputLayout, "\(plan.name): stem")
    return sertrain_stem(
      input: x.base, input_stride: x.layout.stride, length: length, kernel: Int32(k), channels: Int32(cout),
      weight: weight, bias: bias, relu: relu ? 1 : 0, pool: Int32(pool.pool), pool_stride: Int32(pool.stride),
      pool_pad_left: Int32(pool.padLeft), out_length: pool.plan.outputLength)
  }

  init(plan: LayerPlan, variables: Variables) {
    self.plan = plan
    k = plan.spec.kernelSize!
    cin = plan.inputChannels
    cout = plan.outputChannels
    length = plan.inputLength
    padLeft = (k - 1) / 2
    padRight = k - 1 - padLeft
    relu = plan.spec.activation == .relu
    weight = variables.values["kernel"]!
    bias = variables.values["bias"]!
    dWeight = variables.gradients["kernel"]!
    dBias = variables.gradients["bias"]!
    flipped = FloatBuffer(count: k * cin * cout)
  }

  /// Rows per sample: the padded length `L+k-1` rounded up to a multiple of `k`.
  var sampleRows: Int { (length + 2 * (k - 1)) / k * k }
  /// The input: each sample's rows surrounded by zero rows, `k-1` more at the end for the last phase's reads.
  var inputLayout: Layout { Layout(stride: sampleRows, offset: padLeft, extra: k - 1) }
  /// The GEMM's output (and the input gradient's): row `b*S + t`.
  var rawLayout: Layout { Layout(stride: sampleRows, offset: 0, extra: 0) }
  /// The output gradient as backward reads it: zero rows around each sample, `k-1` extra at the end.
  var gradientLayout: Layout { Layout(stride: sampleRows, offset: padRight, extra: k - 1) }

  func reserve(batch: Int) {}

  private func scratch(_ buffer: inout FloatBuffer?, _ count: Int) -> UnsafeMutablePointer<Float> {
    if buffer == nil || buffer!.count < count { buffer = FloatBuffer(count: count) }
    return buffer!.pointer
  }

  /// A padded buffer of `channels` per row (this layer's input, or its output gradient) as conv.c reads it.
  private func convInput(_ base: UnsafePointer<Float>, _ channels: Int) -> sertrain_conv_input {
    sertrain_conv_input(data: base, channels: channels, rows_per_sample: sampleRows, length: length, kernel: Int32(k))
  }

  /// `out[i] = in[i..<i+k] · w` for the `B*S` rows `i` (`w` as `[k][inChannels][outChannels]`): the direct
  /// convolution where it runs (rows past each sample's length left as they are), else one GEMM per phase (see the
  /// type's comment). `pack` holds the kernel's packed copy.
  private func convolve(
    batch: Int, _ input: UnsafePointer<Float>, _ inChannels: Int, _ w: UnsafePointer<Float>,
    _ out: UnsafeMutablePointer<Float>, _ outChannels: Int, pack: inout FloatBuffer?
  ) {
    if runsDirect(outChannels) {
      let p = scratch(&pack, sertrain_conv_packed_count(Int32(k), inChannels, outChannels))
      sertrain_conv_pack(w, Int32(k), inChannels, outChannels, p)
      var conv = sertrain_conv(
        input: convInput(input, inChannels), packed: p, out_channels: outChannels, output: out)
      Parallel.forEach(sertrain_conv_blocks(&conv, batch)) { _, blocks in
        sertrain_conv_run(&conv, blocks.lowerBound, blocks.upperBound)
      }
      return
    }
    let rows = batch * sampleRows / k
    for r in 0..<k {
      sgemm(
        rows, outChannels, k * inChannels, input + r * inChannels, k * inChannels, w, outChannels, beta: 0,
        out + r * outChannels, k * outChannels)
    }
  }

  /// `dW = Σ_r Xᵣᵀ · dYᵣ` as one GEMM per phase, `aligned` row `i` the gradient of output row `i`.
  private func weightGradientGEMMs(batch: Int, _ input: UnsafePointer<Float>, _ aligned: UnsafePointer<Float>) {
    let rows = batch * sampleRows / k
    for r in 0..<k {
      sgemm(
        transA: true, k * cin, cout, rows, input + r * cin, k * cin, aligned + r * cout, k * cout,
        beta: r == 0 ? 0 : 1, dWeight, cout)
    }
  }

  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    precondition(x.layout == inputLayout, "\(plan.name): input layout")
    let batch = x.batch
    x.zeroPadding()
    let direct = y.layout == rawLayout
    let out = direct ? y.base : scratch(&outScratch, rawLayout.rows(batch: batch) * cout)
    convolve(batch: batch, x.base, cin, weight, out, cout, pack: &packed)
    let raw = Tensor(base: out, batch: batch, length: length, channels: cout, layout: rawLayout)
    if readByNorm {
      if !direct { raw.copy(to: y) }
      return
    }
    let (c, length, map) = (cout, length, outputMap)
    let c8 = c & ~7
    Parallel.forEach(batch) { _, samples in
      for b in samples {
        for t in 0..<length {
          let src = raw.row(b, t)
          let dst = y.row(b, t)
          var i = 0
          while i < c8 {
            store8(map.apply8(load8(src + i), i), dst + i)
            i &+= 8
          }
          while i < c {
            dst[i] = map.apply(src[i], i)
            i &+= 1
          }
        }
      }
    }
  }

  /// Masks the output gradient `d` by the ReLU (in place) and writes the bias gradient.
  private func maskAndSumBias(_ d: Tensor, _ y: Tensor) {
    let (c, relu) = (cout, relu)
    withUnsafeTemporaryAllocation(of: Double.self, capacity: c) { sums in
      sweepSums(batch: d.batch, length: length, width: c, into: sums.baseAddress!) { _, b, t, acc in
        maskRow(d.row(b, t), y.row(b, t), acc, c, relu: relu)
      }
      for i in 0..<c { dBias[i] = Float(sums[i]) }
    }
  }

  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    let batch = x.batch
    // The output gradient in the padded layout, masked by the ReLU, with zero padding rows.
    let d: Tensor
    if dy.layout == gradientLayout {
      d = dy
    } else {
      let base = scratch(&dyScratch, gradientLayout.rows(batch: batch) * cout)
      d = Tensor(base: base, batch: batch, length: length, channels: cout, layout: gradientLayout)
      dy.copy(to: d)
    }
    d.zeroPadding()
    if !readByNorm { maskAndSumBias(d, y) }
    let aligned = d.base + padRight * cout  // row i holds the gradient of output row i
    if runsDirect(cout) {
      var g = sertrain_conv_gradient(
        input: convInput(x.base, cin), batch: batch, gradient: aligned, out_channels: cout, weight_gradient: dWeight)
      Parallel.forEach(sertrain_conv_gradient_parts(&g)) { _, panels in
        sertrain_conv_weight_gradient(&g, panels.lowerBound, panels.upperBound)
      }
    } else {
      weightGradientGEMMs(batch: batch, x.base, aligned)
    }
    guard let dx else { return }
    for j in 0..<k {
      cblas_somatcopy(
        CblasRowMajor, CblasTrans, Int32(cin), Int32(cout), 1, weight + (k - 1 - j) * cin * cout, Int32(cout),
        flipped.pointer + j * cout * cin, Int32(cin))
    }
    let direct = dx.layout == rawLayout
    let out = direct ? dx.base : scratch(&dxScratch, rawLayout.rows(batch: batch) * cin)
    convolve(batch: batch, d.base, cout, flipped.pointer, out, cin, pack: &packedFlipped)
    if !direct {
      Tensor(base: out, batch: batch, length: length, channels: cin, layout: rawLayout).copy(to: dx)
    }
  }
}

// MARK: - A Conv1D's bias and ReLU, applied by the Conv1D or on the fly by the BatchNorm that reads it

/// A Conv1D's output from its raw GEMM result: `relu(raw + bias)` (or without the ReLU); the Conv1D's own pass
/// applies it, or the BatchNorm that reads the output applies it on the fly (`Conv1DLayer.readByNorm`). One
/// definition for both, so the values are bit-identical. `identity` reads stored values as they are.
struct InputMap {
  var bias: UnsafeMutablePointer<Float>?
  var relu = false

  static let identity = InputMap()

  @inline(__always) func apply8(_ v: F8, _ i: Int) -> F8 {
    guard let bias else { return v }
    let u = v + load8(bias + i)
    return relu ? u.replacing(with: F8(repeating: 0), where: u .< F8(repeating: 0)) : u
  }

  @inline(__always) func apply(_ v: Float, _ i: Int) -> Float {
    guard let bias else { return v }
    let u = v + bias[i]
    return relu ? max(u, 0) : u
  }
}

/// One row of a Conv1D's output gradient: zeroed in place where the layer's output `out` is not positive (when
/// `relu`), then added to `acc` (the bias gradient's partial sums).
@inline(__always) func maskRow(
  _ g: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acc: UnsafeMutablePointer<Float>,
  _ c: Int, relu: Bool, map: InputMap = .identity
) {
  let c8 = c & ~7
  let zero = F8(repeating: 0)
  var i = 0
  while i < c8 {
    var v = load8(g + i)
    if relu {
      v = v.replacing(with: zero, where: map.apply8(load8(out + i), i) .<= zero)
      store8(v, g + i)
    }
    store8(load8(acc + i) + v, acc + i)
    i &+= 8
  }
  while i < c {
    let v = relu && !(map.apply(out[i], i) > 0) ? 0 : g[i]
    g[i] = v
    acc[i] += v
    i &+= 1
  }
}

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

  /// With a fused pool, `y` is the pool's output.
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

// MARK: - MaxPooling1D

/// MaxPooling1D with padding `same` by TensorFlow's rule: `L_out = ceil(L/s)`, total padding
/// `max((L_out-1)*s + p - L, 0)`, `total/2` of it on the left; padded cells never win. Forward keeps only the
/// maxima; backward routes each output gradient to the first input of its window equal to the maximum (the
/// input and output are kept for backward anyway), so no index tensor is stored. A BatchNorm before it does its
/// work on the normalised values as it computes them (`BatchNormLayer.pool`), so that tensor is never stored.
final class MaxPoolLayer: Layer {
  let plan: LayerPlan
  let pool: Int, stride: Int, padLeft: Int

  init(plan: LayerPlan) {
    self.plan = plan
    pool = plan.spec.poolSize!
    stride = plan.spec.strides!
    let total = max((plan.outputLength - 1) * stride + pool - plan.inputLength, 0)
    padLeft = total / 2
  }

  func reserve(batch: Int) {}

  @inline(__always) private func window(_ to: Int) -> (lo: Int, hi: Int) {
    let start = to * stride - padLeft
    return (max(start, 0), min(start + pool, plan.inputLength))
  }

  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let c = plan.inputChannels
    let c8 = c & ~7
    Parallel.forEach(x.batch) { _, samples in
      for b in samples {
        for to in 0..<plan.outputLength {
          let (lo, hi) = window(to)
          let out = y.row(b, to)
          for t in lo..<hi {
            let r = x.row(b, t)
            var i = 0
            while i < c8 {
              let v = load8(r + i)
              store8(t == lo ? v : load8(out + i).replacing(with: v, where: v .> load8(out + i)), out + i)
              i &+= 8
            }
            while i < c {
              out[i] = t == lo ? r[i] : max(out[i], r[i])
              i &+= 1
            }
          }
        }
      }
    }
  }

  /// Routes each window's output gradient to the first of its inputs equal to its output; positions no window
  /// reaches (strides longer than the pool) get zero.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let c = plan.inputChannels
    let c8 = c & ~7
    let zero = F8(repeating: 0)
    Parallel.forEach(dx.batch) { _, samples in
      withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { rb in
        let rem = rb.baseAddress!
        for b in samples {
          memset(dx.row(b, 0), 0, plan.inputLength * c * 4)
          for to in 0..<plan.outputLength {
            let (lo, hi) = window(to)
            let out = y.row(b, to)
            rem.update(from: dy.row(b, to), count: c)
            for t in lo..<hi {
              let xr = x.row(b, t)
              let o = dx.row(b, t)
              var i = 0
              while i < c8 {
                let hit = load8(xr + i) .== load8(out + i)
                let r = load8(rem + i)
                store8(load8(o + i) + r.replacing(with: zero, where: .!hit), o + i)
                store8(r.replacing(with: zero, where: hit), rem + i)
                i &+= 8
              }
              while i < c {
                if xr[i] == out[i] {
                  o[i] += rem[i]
                  rem[i] = 0
                }
                i &+= 1
              }
            }
          }
        }
      }
    }
  }
}

// MARK: - Dropout

/// Inverted dropout: in training each value is kept with probability `1-rate` and scaled by `1/(1-rate)`, with
/// a mask drawn from the step's dropout seed; identity in inference.
final class DropoutLayer: Layer {
  let plan: LayerPlan
  let rate: Float
  let index: UInt64
  private var mask: [Float] = []

  init(plan: LayerPlan, index: Int) {
    self.plan = plan
    rate = Float(plan.spec.rate!)
    self.index = UInt64(index)
  }

  func reserve(batch: Int) {
    let n = batch * plan.inputLength * plan.inputChannels
    if mask.count < n { mask = [Float](repeating: 0, count: n) }
  }

  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let n = plan.inputLength * plan.inputChannels
    guard ctx.training && rate > 0 else {
      x.copy(to: y)
      return
    }
    var rng = RandomStream(seed: ctx.dropoutSeed, stream: [index])
    let keep = 1 / (1 - rate)
    mask.withUnsafeMutableBufferPointer { m in
      for b in 0..<x.batch {
        let src = x.row(b, 0)
        let dst = y.row(b, 0)
        let mk = m.baseAddress! + b * n
        for i in 0..<n {
          mk[i] = rng.uniformFloat() >= rate ? keep : 0
          dst[i] = src[i] * mk[i]
        }
      }
    }
  }

  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let n = plan.inputLength * plan.inputChannels
    guard ctx.training && rate > 0 else {
      dy.copy(to: dx)
      return
    }
    mask.withUnsafeBufferPointer { m in
      for b in 0..<dy.batch {
        let g = dy.row(b, 0)
        let o = dx.row(b, 0)
        let mk = m.baseAddress! + b * n
        for i in 0..<n { o[i] = g[i] * mk[i] }
      }
    }
  }
}

// MARK: - Flatten

/// `[B, L, C] → [B, L*C]` with index `t*C + c` (Keras channels-last).
final class FlattenLayer: Layer {
  let plan: LayerPlan
  init(plan: LayerPlan) { self.plan = plan }
  func reserve(batch: Int) {}

  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let n = plan.inputLength * plan.inputChannels
    for b in 0..<x.batch { y.row(b, 0).update(from: x.row(b, 0), count: n) }
  }

  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let n = plan.inputLength * plan.inputChannels
    for b in 0..<dy.batch { dx.row(b, 0).update(from: dy.row(b, 0), count: n) }
  }
}

// MARK: - Dense

/// Dense: `y = act(x·W + b)` with `W [in, out]` as in Keras. With softmax, `y` holds the probabilities and
/// backward expects `dy` to be the gradient of the logits already (the loss computes `p - onehot`).
final class DenseLayer: Layer {
  let plan: LayerPlan
  let inputs: Int, units: Int
  let activation: Activation
  let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
  let dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
  private var scratch: [Float] = []
  /// The last forward's logits (softmax only), `[batch, units]`.
  private(set) var logits: [Float] = []

  init(plan: LayerPlan, variables: Variables) {
    self.plan = plan
    inputs = plan.inputChannels
    units = plan.outputChannels
    activation = plan.spec.activation ?? .linear
    weight = variables.values["kernel"]!
    bias = variables.values["bias"]!
    dWeight = variables.gradients["kernel"]!
    dBias = variables.gradients["bias"]!
  }

  func reserve(batch: Int) {
    if scratch.count < batch * units { scratch = [Float](repeating: 0, count: batch * units) }
    if activation == .softmax && logits.count < batch * units {
      logits = [Float](repeating: 0, count: batch * units)
    }
  }

  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let batch = x.batch
    let n = units
    precondition(y.layout.stride == 1 && y.layout.offset == 0, "\(plan.name): output layout")
    sgemm(batch, n, inputs, x.row(0, 0), x.layout.stride * inputs, weight, n, beta: 0, y.base, n)
    for b in 0..<batch {
      let r = y.base + b * n
      for i in 0..<n { r[i] += bias[i] }
      switch activation {
      case .linear: break
      case .relu: for i in 0..<n { r[i] = max(r[i], 0) }
      case .softmax:
        logits.withUnsafeMutableBufferPointer { l in
          (l.baseAddress! + b * n).update(from: r, count: n)
        }
        var m = -Float.infinity
        for i in 0..<n { m = max(m, r[i]) }
        var sum: Float = 0
        for i in 0..<n {
          r[i] = expf(r[i] - m)
          sum += r[i]
        }
        for i in 0..<n { r[i] /= sum }
      }
    }
  }

  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    let batch = x.batch
    let n = units
    scratch.withUnsafeMutableBufferPointer { s in
      let g = s.baseAddress!
      for b in 0..<batch {
        let src = dy.row(b, 0)
        let out = y.row(b, 0)
        let dst = g + b * n
        for i in 0..<n { dst[i] = activation == .relu && !(out[i] > 0) ? 0 : src[i] }
      }
      for i in 0..<n { dBias[i] = 0 }
      for b in 0..<batch {
        for i in 0..<n { dBias[i] += g[b * n + i] }
      }
      let lda = x.layout.stride * inputs
      sgemm(transA: true, inputs, n, batch, x.row(0, 0), lda, g, n, beta: 0, dWeight, n)
      if let dx {
        precondition(dx.layout.stride == 1, "\(plan.name): input gradient layout")
        sgemm(transB: true, batch, inputs, n, g, n, weight, n, beta: 0, dx.row(0, 0), inputs)
      }
    }
  }
}
