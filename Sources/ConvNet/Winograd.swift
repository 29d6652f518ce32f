import CConvKernels

// MARK: - Winograd's minimal filtering: F(4, k) and F(k, 4)

/// The transforms of Winograd's minimal filtering F(4, k) for a `k`-tap correlation `y_t = Σ_j d_{t+j}·g_j`
/// (winograd.c): `y = ATᵀ[(G·g) ⊙ (BT·d)]` over `n = k+3` points, from the Toom-Cook product of a degree-`k-1` and
/// a degree-3 polynomial evaluated at 0, ±1, ±2, ±1/2 and infinity, transposed (Lavin and Gray 2016). For
/// `V(c)` the `n × c` evaluation matrix (row `p` the powers of point `p`, the last row picking the leading
/// coefficient), `G = V(k)`, `AT = V(4)ᵀ` and `BT = V(n)⁻¹ᵀ`. Computed in double, stored as float.
///
/// Error: these points keep the transforms' entries small (powers of 2 and simple fractions). When they were chosen,
/// a conv2-shaped sum (512 input channels, unit-variance input) differed from float64 by at most 7e-7 of its largest
/// value, against 1e-7 for the direct convolution; `WinogradTests` hold the network's outputs and gradients to
/// float64 and to the direct convolution.
struct WinogradTransform {
  static let tile = 4
  static let points: [Double] = [0, 1, -1, 2, -2, 0.5, -0.5]
  let kernel: Int
  let count: Int
  /// `[count][count]`, `[count][kernel]`, `[4][count]`, row-major.
  let bt: [Float], g: [Float], at: [Float]
  /// The kernel gradient's F(k, 4) (the output gradient's four rows as the filter, the k taps as the outputs): `atᵀ`
  /// `[count][4]` and `gᵀ` `[kernel][count]`, with the same `bt`.
  let g4: [Float], atk: [Float]

  /// Kernels of 2 to 5 taps (up to `SERTRAIN_WINOGRAD_MAX_POINTS` points).
  static func supports(kernel: Int) -> Bool {
    kernel >= 2 && kernel + tile - 1 <= min(Int(SERTRAIN_WINOGRAD_MAX_POINTS), points.count + 1)
  }

  init(kernel: Int) {
    precondition(Self.supports(kernel: kernel), "Winograd F(4, \(kernel))")
    let n = kernel + Self.tile - 1
    (self.kernel, count) = (kernel, n)
    /// `n × columns`: row `p < n-1` the powers of point `p`, row `n-1` the last column's unit vector.
    func evaluation(_ columns: Int) -> [[Double]] {
      (0..<n).map { p in
        (0..<columns).map { j in p < n - 1 ? Self.pow(Self.points[p], j) : (j == columns - 1 ? 1 : 0) }
      }
    }
    let (inverse, taps, product) = (Self.inverse(evaluation(n)), evaluation(kernel), evaluation(Self.tile))
    bt = (0..<n).flatMap { p in (0..<n).map { q in Float(inverse[q][p]) } }
    g = taps.flatMap { $0.map(Float.init) }
    at = (0..<Self.tile).flatMap { i in (0..<n).map { p in Float(product[p][i]) } }
    g4 = product.flatMap { $0.map(Float.init) }
    atk = (0..<kernel).flatMap { j in taps.map { Float($0[j]) } }
  }

  private static func pow(_ x: Double, _ j: Int) -> Double { (0..<j).reduce(1) { r, _ in r * x } }

  /// Gauss-Jordan elimination with partial pivoting (the evaluation matrix at distinct points is invertible).
  private static func inverse(_ a: [[Double]]) -> [[Double]] {
    let n = a.count
    var m = a.enumerated().map { i, row in row + (0..<n).map { $0 == i ? 1.0 : 0.0 } }
    for col in 0..<n {
      let pivot = (col..<n).max { abs(m[$0][col]) < abs(m[$1][col]) }!
      m.swapAt(col, pivot)
      let scale = m[col][col]
      m[col] = m[col].map { $0 / scale }
      for r in 0..<n where r != col && m[r][col] != 0 {
        let f = m[r][col]
        m[r] = zip(m[r], m[col]).map { $0 - f * $1 }
      }
    }
    return m.map { Array($0[n...]) }
  }
}

/// A convolution of `cin` channels into `cout` by Winograd's minimal filtering (winograd.c), in chunks of whole
/// samples: `run` (F(4, k): a Conv1D's inference forward, or its input gradient with the flipped kernel), each chunk
/// transformed, multiplied by `count` OpenBLAS GEMMs (`tiles × cin` by `cin × cout`) and transformed back into the
/// output rows, the kernel's transform recomputed every pass (the weights change between passes; it costs
/// `count·k·cin·cout` multiplies); and `weightGradient` (F(k, 4)). Its buffers are the network's scratch
/// (`Layer.reserve`), which one layer at a time uses.
struct WinogradConvolution {
  /// Tiles per chunk: GEMMs this tall run near the square sgemm's speed, and a chunk's buffers stay a few MB.
  static let chunkTiles = 1536
  let transform: WinogradTransform
  let cin: Int, cout: Int, length: Int

  init(kernel: Int, cin: Int, cout: Int, length: Int) {
    transform = WinogradTransform(kernel: kernel)
    (self.cin, self.cout, self.length) = (cin, cout, length)
  }

  private var tilesPerSample: Int { (length + 3) / 4 }

  /// `c[rows × n] = a[rows × inner] · b[inner × n]` (all row-major, dense), or `c += aᵀ · b` for `a[rows × inner]`
  /// (`transposedA`; `c` is `inner × n`, added to unless `overwrite`), in bfloat16 when `bf16` and bf16.c takes `n`
  /// columns (the direct kernels with one tap are GEMMs; `packed`: `b` as `sertrain_conv_bf16_pack` lays it out),
  /// else by OpenBLAS.
  private func gemm(
    rows: Int, inner: Int, n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
    _ c: UnsafeMutablePointer<Float>, transposedA: Bool = false, overwrite: Bool = true, bf16: Bool,
    packed: UnsafePointer<UInt16>? = nil
  ) {
    guard bf16, Self.runsBF16(columns: n) else {
      if transposedA {
        sgemm(transA: true, inner, n, rows, a, inner, b, n, beta: overwrite ? 0 : 1, c, n)
      } else {
        sgemm(rows, n, inner, a, inner, b, n, beta: 0, c, n)
      }
      return
    }
    let input = sertrain_conv_input(data: a, channels: inner, rows_per_sample: rows, length: rows, kernel: 1)
    if transposedA {
      var g = sertrain_conv_gradient(
        input: input, batch: 1, gradient: b, out_channels: n, weight_gradient: c, accumulate: overwrite ? 0 : 1,
        limit: 0)
      Parallel.forEach(sertrain_conv_bf16_gradient_parts(&g)) { _, panels in
        sertrain_conv_bf16_weight_gradient(&g, panels.lowerBound, panels.upperBound)
      }
    } else {
      var conv = sertrain_conv_bf16(input: input, packed: packed!, out_channels: n, output: c)
      Parallel.forEach(sertrain_conv_bf16_blocks(&conv, 1)) { _, blocks in
        sertrain_conv_bf16_run(&conv, blocks.lowerBound, blocks.upperBound)
      }
    }
  }

  /// Whether the GEMMs with `columns` output columns run in bfloat16 when asked.
  private static func runsBF16(columns: Int) -> Bool { sertrain_conv_bf16_available(1, columns) != 0 }

  /// Runs `body` with the `count` transformed kernels `[count][cin][cout]` at `kernels` packed for bf16.c when `bf16`
  /// (nil otherwise): once per pass, not per chunk.
  private func withPacked(
    _ bf16: Bool, _ kernels: UnsafePointer<Float>, _ body: (UnsafePointer<UInt16>?) -> Void
  ) {
    guard bf16, Self.runsBF16(columns: cout) else { return body(nil) }
    let each = sertrain_conv_bf16_packed_count(1, cin, cout)
    let packed = AlignedBuffer<UInt16>(count: transform.count * each)
    Parallel.forEach(transform.count) { _, points in
      for p in points { sertrain_conv_bf16_pack(kernels + p * cin * cout, 1, cin, cout, packed.pointer + p * each) }
    }
    withExtendedLifetime(packed) { body(packed.pointer) }
  }
  private func samplesPerChunk(batch: Int) -> Int { max(1, min(batch, Self.chunkTiles / tilesPerSample)) }

  /// Floats of scratch a pass over `batch` samples needs: `[count][cin][cout]` (the kernel's transform, or the kernel
  /// gradient's products), then a chunk's transformed input `[count][tiles][cin]` and `[count][tiles][cout]` (the
  /// products, or the transformed output gradient).
  func scratchFloats(batch: Int) -> Int {
    transform.count * (cin * cout + samplesPerChunk(batch: batch) * tilesPerSample * (cin + cout))
  }

  /// `body` for each chunk of whole samples, in order, with its `sertrain_winograd` (the input's rows, `at` and
  /// `output` as given, the transformed input and `[count][tiles][cout]` in the scratch after its first
  /// `[count][cin][cout]`, which `body` also gets).
  private func chunks(
    batch: Int, input: sertrain_conv_input, validRows: Int, at: UnsafePointer<Float>?,
    output: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>,
    _ body: (_ w: inout sertrain_winograd, _ planes: UnsafeMutablePointer<Float>) -> Void
  ) {
    let samples = samplesPerChunk(batch: batch)
    let inputs = scratch + transform.count * cin * cout
    let outputs = inputs + transform.count * samples * tilesPerSample * cin
    transform.bt.withUnsafeBufferPointer { bt in
      for first in stride(from: 0, to: batch, by: samples) {
        var w = sertrain_winograd(
          input: input, valid_rows: validRows, first_sample: first, tiles: min(samples, batch - first) * tilesPerSample,
          points: Int32(transform.count), bt: bt.baseAddress!, at: at, v: inputs, m: outputs, out_channels: cout,
          output: output)
        body(&w, scratch)
      }
    }
  }

  /// The kernel gradient `dW[j][ci][co] = Σ_b Σ_{t<length}` input row `t+j` `[ci] ·` gradient row `t` `[co]` by
  /// F(k, 4): per chunk the input's tiles (as the forward transforms them) and the gradient's, one GEMM per point
  /// summing over the chunk's tiles into the products (chunk after chunk, in order), then `dW_j = Σ_p atk[j][p]·M_p`.
  /// The gradient's row `t` of sample `b` at `gradient + (b*input.rows_per_sample + t)*cout`. The GEMMs multiply in
  /// bfloat16 when `bf16`.
  func weightGradient(
    batch: Int, input: sertrain_conv_input, validRows: Int, gradient: UnsafePointer<Float>,
    weightGradient: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, bf16: Bool = false
  ) {
    let (n, k, cin, cout) = (transform.count, transform.kernel, cin, cout)
    transform.g4.withUnsafeBufferPointer { g4 in
      chunks(batch: batch, input: input, validRows: validRows, at: nil, output: nil, scratch: scratch) {
        w, products in
        // The chunk's transformed input `[count][tiles][cin]` and output gradient `[count][tiles][cout]`.
        let (first, tiles, inputs, gradients) = (w.first_sample, w.tiles, w.v!, w.m!)
        Parallel.forEach(tiles) { _, part in
          sertrain_winograd_input(&w, part.lowerBound, part.upperBound)
          sertrain_winograd_gradient(&w, gradient, g4.baseAddress!, part.lowerBound, part.upperBound)
        }
        for p in 0..<n {
          gemm(
            rows: tiles, inner: cin, n: cout, inputs + p * tiles * cin, gradients + p * tiles * cout,
            products + p * cin * cout, transposedA: true, overwrite: first == 0, bf16: bf16)
        }
      }
    }
    transform.atk.withUnsafeBufferPointer {
      sertrain_winograd_kernel(scratch, Int32(n), cin, cout, $0.baseAddress!, Int32(k), weightGradient)
    }
  }

  /// `output` row `t` of sample `b` (`input.rows_per_sample` rows per sample) `= Σ_j` input row `t+j` `· W_j` for
  /// the `t < length`, the input's rows from `validRows` on read as zeros; `scratch` holds `scratchFloats(batch:)`.
  /// The GEMMs multiply in bfloat16 when `bf16`.
  func run(
    batch: Int, input: sertrain_conv_input, validRows: Int, weight: UnsafePointer<Float>,
    output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, bf16: Bool = false
  ) {
    let (n, k, cin, cout) = (transform.count, transform.kernel, cin, cout)
    precondition(input.channels == cin && input.length == length, "Winograd: input shape")
    transform.g.withUnsafeBufferPointer {
      sertrain_winograd_kernel(weight, Int32(k), cin, cout, $0.baseAddress!, Int32(n), scratch)
    }
    withPacked(bf16, scratch) { packed in
      transform.at.withUnsafeBufferPointer { at in
        chunks(batch: batch, input: input, validRows: validRows, at: at.baseAddress!, output: output, scratch: scratch)
        {
          w, up in
          let (tiles, vp, mp) = (w.tiles, w.v!, w.m!)
          Parallel.forEach(tiles) { _, part in sertrain_winograd_input(&w, part.lowerBound, part.upperBound) }
          for p in 0..<n {
            gemm(
              rows: tiles, inner: cin, n: cout, vp + p * tiles * cin, up + p * cin * cout, mp + p * tiles * cout,
              bf16: bf16, packed: packed.map { $0 + p * sertrain_conv_bf16_packed_count(1, cin, cout) })
          }
          Parallel.forEach(tiles) { _, part in sertrain_winograd_output(&w, part.lowerBound, part.upperBound) }
        }
      }
    }
  }
}
