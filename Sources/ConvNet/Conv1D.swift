import CConvKernels
import COpenBLAS

#if canImport(Glibc)
  import Glibc
#endif

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
/// GEMMs run nearer the square sgemm's speed than one GEMM per tap (`K = cin`, the output read and written `k`
/// times) did (BENCHMARKS.md).
///
/// On CPUs with AVX-512 (AVX2) each pass whose output width is a multiple of 32 (16) channels runs instead as
/// direct convolution (conv.c) over the same buffers and layouts: the phase GEMMs make OpenBLAS pack every input row
/// once per phase (`k` times per pass), the direct kernels once, which brings the seed's widest blocks from short of
/// the square sgemm's speed to about it (`bench model --profile`; BENCHMARKS.md). They leave the rows past each
/// sample's length unwritten (the phase GEMMs write them with values nobody reads).
///
/// The kernel and input gradients, and the forward of inference, run by Winograd's minimal filtering where
/// the policy's `winograd` allows (`WinogradConvolution`): fewer multiplies, in GEMMs over transformed tiles.
///
/// In `bf16` precision every pass the bfloat16 kernels take (bf16.c: 1 to 5 taps, a multiple of 32 output channels)
/// multiplies in bfloat16: the output (training and inference) by the direct bf16 kernels, the kernel and input
/// gradients by Winograd's transforms and bf16 GEMMs where the policy's `winograd` allows (else direct). Other passes
/// stay float.
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
  /// The kernel laid out for the direct convolution (conv.c), for the output and for the input gradient.
  private var packed: FloatBuffer?
  private var packedFlipped: FloatBuffer?
  /// How the passes compute (the network's).
  let policy: KernelPolicy
  /// The kernel and the flipped kernel rounded to bfloat16 and packed for bf16.c, repacked on every pass.
  private var packedBF16: AlignedBuffer<UInt16>?
  private var packedFlippedBF16: AlignedBuffer<UInt16>?
  /// The passes by Winograd's minimal filtering where they run (the policy's `winograd`): `winograd` (cin -> cout) the
  /// inference forward and the kernel gradient, `winogradGradient` (cout -> cin) the input gradient (the flipped
  /// kernel over the output gradient).
  private let winograd: WinogradConvolution?
  private let winogradGradient: WinogradConvolution?
  /// Whether the direct convolution computes a pass with this kernel size and output width here.
  private func runsDirect(_ outChannels: Int) -> Bool {
    policy.directConvolutionRuns(kernel: k, outChannels: outChannels)
  }
  /// Whether a pass with this output width runs in bfloat16.
  private func runsBF16(_ outChannels: Int) -> Bool { policy.bf16Runs(kernel: k, outChannels: outChannels) }

  var plans: [LayerPlan] { [plan] }
  var inputLayout: Layout? { paddedInputLayout }
  var inputGradientLayout: Layout? { rawLayout }
  var outputLayout: Layout? { rawLayout }
  var outputGradientLayout: Layout? { paddedGradientLayout }

  init(plan: LayerPlan, variables: KernelAndBias, policy: KernelPolicy) {
    self.plan = plan
    self.policy = policy
    k = plan.spec.kernelSize!
    cin = plan.inputChannels
    cout = plan.outputChannels
    length = plan.inputLength
    padLeft = (k - 1) / 2
    padRight = k - 1 - padLeft
    relu = plan.spec.activation == .relu
    (weight, dWeight) = (variables.kernel.value, variables.kernel.gradient)
    (bias, dBias) = (variables.bias.value, variables.bias.gradient)
    flipped = FloatBuffer(count: k * cin * cout)
    // Kernels of 2 to 5 taps over at least 8 input channels (fewer leave the GEMMs too small to gain).
    let (k, cin, cout, length) = (k, cin, cout, length)
    func pass(_ inChannels: Int, _ outChannels: Int) -> WinogradConvolution? {
      WinogradTransform.supports(kernel: k) && inChannels >= 8
        ? WinogradConvolution(kernel: k, cin: inChannels, cout: outChannels, length: length) : nil
    }
    (winograd, winogradGradient) = (pass(cin, cout), pass(cout, cin))
  }

  /// The scratch (`StepContext.scratch`) of an inference forward over `batch` samples, and of backward's kernel and
  /// input gradients, one after the other (`backwardMasked`).
  func winogradScratch(batch: Int) -> (forward: Int, backward: Int) {
    let forward = winograd?.scratchFloats(batch: batch) ?? 0  // the kernel gradient's too
    return (forward, max(forward, winogradGradient?.scratchFloats(batch: batch) ?? 0))
  }

  /// Backward's Winograd scratch, which holds the forward's too.
  func reserve(batch: Int) -> Int { winogradScratch(batch: batch).backward }

  /// Rows per sample: the padded length `L+k-1` rounded up to a multiple of `k`.
  var sampleRows: Int { (length + 2 * (k - 1)) / k * k }
  /// The input: each sample's rows surrounded by zero rows, `k-1` more at the end for the last phase's reads.
  var paddedInputLayout: Layout { Layout(stride: sampleRows, offset: padLeft, extra: k - 1) }
  /// The GEMM's output (and the input gradient's): row `b*S + t`.
  var rawLayout: Layout { Layout(stride: sampleRows, offset: 0, extra: 0) }
  /// The output gradient as backward reads it: zero rows around each sample, `k-1` extra at the end.
  var paddedGradientLayout: Layout { Layout(stride: sampleRows, offset: padRight, extra: k - 1) }

  /// This layer over the input `x` (in `paddedInputLayout`) and the `pool` after its BatchNorm, for stem.c.
  func stem(input x: Tensor, pool: PoolWindow) -> sertrain_stem {
    precondition(cin == 1 && k <= Int(SERTRAIN_STEM_MAX_KERNEL) && x.layout == paddedInputLayout, "\(plan.name): stem")
    return sertrain_stem(
      input: x.base, input_stride: x.layout.stride, length: length, kernel: Int32(k), channels: Int32(cout),
      weight: weight, bias: bias, relu: relu ? 1 : 0, pool: Int32(pool.size), pool_stride: Int32(pool.stride),
      pool_pad_left: Int32(pool.padLeft), out_length: pool.outputLength)
  }

  /// At least `count` values in `buffer`, kept for the next pass.
  private func scratch<T>(_ buffer: inout AlignedBuffer<T>?, _ count: Int) -> UnsafeMutablePointer<T> {
    if buffer == nil || buffer!.count < count { buffer = AlignedBuffer(count: count) }
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
    _ out: UnsafeMutablePointer<Float>, _ outChannels: Int, pack: inout FloatBuffer?,
    packBF16: inout AlignedBuffer<UInt16>?
  ) {
    if runsBF16(outChannels) {
      let p = scratch(&packBF16, sertrain_conv_bf16_packed_count(Int32(k), inChannels, outChannels))
      sertrain_conv_bf16_pack(w, Int32(k), inChannels, outChannels, p)
      var conv = sertrain_conv_bf16(
        input: convInput(input, inChannels), packed: p, out_channels: outChannels, output: out)
      Parallel.forEach(sertrain_conv_bf16_blocks(&conv, batch)) { _, blocks in
        sertrain_conv_bf16_run(&conv, blocks.lowerBound, blocks.upperBound)
      }
      return
    }
    if runsDirect(outChannels) {
      let p = scratch(&pack, sertrain_conv_packed_count(Int32(k), inChannels, outChannels))
      let limit = Int32(policy.directConvolutionLevel)
      sertrain_conv_pack(w, Int32(k), inChannels, outChannels, limit, p)
      var conv = sertrain_conv(
        input: convInput(input, inChannels), packed: p, out_channels: outChannels, output: out, limit: limit)
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

  /// x `[B, L, cin]` (`paddedInputLayout`: zero rows around each sample) -> raw `[B, L, cout]`: the convolution
  /// without bias or ReLU (`ConvBlockLayer`'s BatchNorm applies them as it reads); by Winograd's F(4, k) when
  /// `inference` and the policy's `winograd`, in `workspace` (`winogradScratch(batch:).forward` floats).
  func forwardRaw(_ x: Tensor, _ raw: Tensor, inference: Bool, workspace: UnsafeMutablePointer<Float>?) {
    precondition(x.layout == paddedInputLayout, "\(plan.name): input layout")
    x.zeroPadding()
    let direct = raw.layout == rawLayout
    let out = direct ? raw.base : scratch(&outScratch, rawLayout.rows(batch: x.batch) * cout)
    // In bf16 inference is direct too: Winograd's transforms magnify bfloat16's rounding of the transformed tiles
    // (the frames model's probabilities moved by up to 0.023), where the gradients only gain noise.
    if inference && policy.winograd && !runsBF16(cout), let winograd, let workspace {
      winograd.run(
        batch: x.batch, input: convInput(x.base, cin), validRows: padLeft + length, weight: weight, output: out,
        scratch: workspace)
    } else {
      convolve(batch: x.batch, x.base, cin, weight, out, cout, pack: &packed, packBF16: &packedBF16)
    }
    if !direct { Tensor(base: out, batch: x.batch, length: length, channels: cout, layout: rawLayout).copy(to: raw) }
  }

  /// x `[B, L, cin]` -> y `[B, L, cout]` = `relu(conv(x) + bias)` (or without the ReLU).
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    forwardRaw(x, y, inference: !ctx.training, workspace: ctx.scratch)
    let (c, length, bias, relu) = (cout, length, bias, relu)
    let c8 = c & ~7
    let zero = F8(repeating: 0)
    Parallel.forEach(x.batch) { _, samples in
      for b in samples {
        for t in 0..<length {
          let r = y.row(b, t)
          var i = 0
          while i < c8 {
            let u = load8(r + i) + load8(bias + i)
            store8(relu ? u.replacing(with: zero, where: u .< zero) : u, r + i)
            i &+= 8
          }
          while i < c {
            let u = r[i] + bias[i]
            r[i] = relu ? max(u, 0) : u
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

  /// dy `[B, L, cout]` -> dW `[k, cin, cout]`, db `[cout]`, dx `[B, L, cin]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    // The output gradient in the padded layout, masked by the ReLU, with zero padding rows.
    let d: Tensor
    if dy.layout == paddedGradientLayout {
      d = dy
    } else {
      let base = scratch(&dyScratch, paddedGradientLayout.rows(batch: x.batch) * cout)
      d = Tensor(base: base, batch: x.batch, length: length, channels: cout, layout: paddedGradientLayout)
      dy.copy(to: d)
    }
    maskAndSumBias(d, y)
    backwardMasked(x: x, d: d, dx: dx, workspace: ctx.scratch, parametersDone: ctx.parametersDone)
  }

  /// The gradient `d` of the output before the bias and ReLU (`paddedGradientLayout`) -> dW `[k, cin, cout]`,
  /// dx `[B, L, cin]`, by Winograd's F(k, 4) and F(4, k) where the policy's `winograd` (in `workspace`,
  /// `winogradScratch(batch:).backward` floats). Overwrites the padding rows of `d` with zeros. Calls
  /// `parametersDone` between the kernel gradient and the input gradient (the bias gradient is written before).
  func backwardMasked(
    x: Tensor, d: Tensor, dx: Tensor?, workspace: UnsafeMutablePointer<Float>?, parametersDone: () -> Void = {}
  ) {
    precondition(d.layout == paddedGradientLayout, "\(plan.name): gradient layout")
    let batch = x.batch
    d.zeroPadding()
    let aligned = d.base + padRight * cout  // row i holds the gradient of output row i
    if policy.winograd, let winograd, let workspace {
      winograd.weightGradient(
        batch: batch, input: convInput(x.base, cin), validRows: padLeft + length, gradient: aligned,
        weightGradient: dWeight, scratch: workspace, bf16: policy.precision == .bf16)
    } else if runsBF16(cout) || runsDirect(cout) {
      var g = sertrain_conv_gradient(
        input: convInput(x.base, cin), batch: batch, gradient: aligned, out_channels: cout, weight_gradient: dWeight,
        accumulate: 0, limit: Int32(policy.directConvolutionLevel))
      let bf16 = runsBF16(cout)
      Parallel.forEach(bf16 ? sertrain_conv_bf16_gradient_parts(&g) : sertrain_conv_gradient_parts(&g)) { _, panels in
        if bf16 {
          sertrain_conv_bf16_weight_gradient(&g, panels.lowerBound, panels.upperBound)
        } else {
          sertrain_conv_weight_gradient(&g, panels.lowerBound, panels.upperBound)
        }
      }
    } else {
      weightGradientGEMMs(batch: batch, x.base, aligned)
    }
    parametersDone()
    guard let dx else { return }
    for j in 0..<k {
      cblas_somatcopy(
        CblasRowMajor, CblasTrans, Int32(cin), Int32(cout), 1, weight + (k - 1 - j) * cin * cout, Int32(cout),
        flipped.pointer + j * cout * cin, Int32(cin))
    }
    let direct = dx.layout == rawLayout
    let out = direct ? dx.base : scratch(&dxScratch, rawLayout.rows(batch: batch) * cin)
    if policy.winograd, let winogradGradient, let workspace {
      winogradGradient.run(
        batch: batch, input: convInput(d.base, cout), validRows: padRight + length, weight: flipped.pointer,
        output: out, scratch: workspace, bf16: policy.precision == .bf16)
    } else {
      convolve(
        batch: batch, d.base, cout, flipped.pointer, out, cin, pack: &packedFlipped, packBF16: &packedFlippedBF16)
    }
    if !direct {
      Tensor(base: out, batch: batch, length: length, channels: cin, layout: rawLayout).copy(to: dx)
    }
  }
}

/// One row of a Conv1D's output gradient: zeroed in place where the layer's output `out` is not positive (when
/// `relu`), then added to `acc` (the bias gradient's partial sums).
@inline(__always) func maskRow(
  _ g: UnsafeMutablePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ acc: UnsafeMutablePointer<Float>,
  _ c: Int, relu: Bool
) {
  let c8 = c & ~7
  let zero = F8(repeating: 0)
  var i = 0
  while i < c8 {
    var v = load8(g + i)
    if relu {
      v = v.replacing(with: zero, where: load8(out + i) .<= zero)
      store8(v, g + i)
    }
    store8(load8(acc + i) + v, acc + i)
    i &+= 8
  }
  while i < c {
    let v = relu && !(out[i] > 0) ? 0 : g[i]
    g[i] = v
    acc[i] += v
    i &+= 1
  }
}
