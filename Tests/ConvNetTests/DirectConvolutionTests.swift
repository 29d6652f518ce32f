import ConvNet
import XCTest
import _TestSupport

/// The direct convolution kernels (conv.c: forward and input gradient by register tiles over packed panels, 12 × 32
/// on AVX-512 and 6 × 16 on AVX2, kernel gradient over chunks of 256 positions) against the naive double-precision
/// reference and against the same network on OpenBLAS GEMMs, on shapes that reach every edge: input channels that
/// are not multiples of the 16-lane panels or the 12- and 6-channel tiles, kernels 1 to 5 (even ones pad
/// asymmetrically), lengths over several blocks and 256-position chunks with partial last tiles, output widths of
/// one and several column panels, and layers with some passes direct and others on OpenBLAS (widths 48 and 40).
/// The AVX2 kernels run here by lowering the level on an AVX-512 machine.
extension FastVersusNaiveTests {
  func testDirectConvolutionAVX512AgainstNaiveAndBLAS() throws {
    try directAgainstNaiveAndBLAS(level: 2)
  }

  func testDirectConvolutionAVX2AgainstNaiveAndBLAS() throws {
    try directAgainstNaiveAndBLAS(level: 1)
  }

  func directAgainstNaiveAndBLAS(level: Int, file: StaticString = #filePath, line: UInt = #line) throws {
    try XCTSkipUnless(
      KernelPolicy(directConvolutionLevel: level).directConvolutionRuns(kernel: 5, outChannels: 32),
      "no direct convolution at level \(level) here")
    let cases: [(name: String, length: Int, inputs: Int, layers: [LayerSpec])] = [
      ("tails", 29, 37, [.conv1D(64, kernel: 5), .batchNormalization(), .maxPooling1D(3), .conv1D(32, kernel: 3)]),
      (
        "long", 400, 7,
        [
          .conv1D(32, kernel: 1), .conv1D(96, kernel: 4, activation: .linear), .batchNormalization(),
          .maxPooling1D(3, strides: 2), .conv1D(32, kernel: 2),
        ]
      ),
      (
        "mixed", 23, 32,
        [.conv1D(48, kernel: 3), .batchNormalization(), .conv1D(40, kernel: 2), .conv1D(32, kernel: 5)]
      ),
    ]
    for (n, c) in cases.enumerated() {
      let spec = ModelSpec(
        name: c.name, inputLength: c.length, inputChannels: c.inputs,
        layers: c.layers + [.flatten(), .dense(nil, activation: .softmax)])
      try check(
        spec, classes: 3, batch: 3, seed: 120 + UInt64(n), policy: KernelPolicy(directConvolutionLevel: level),
        file: file, line: line)

      var runs: [(probs: [Float], inferred: [Float], gradients: [Float])] = []
      for runLevel in [level, 0] {
        let network = try Network(
          spec: spec, classes: 3, seed: 9, policy: KernelPolicy(directConvolutionLevel: runLevel))
        var rng = TestRNG(seed: 10 + UInt64(n))
        let x = (0..<(3 * network.inputWidth)).map { _ in rng.normal() }
        let labels: [Int32] = [2, 0, 1]
        let probs = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 3, training: true)) }
        labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / 3) }
        let inferred = x.withUnsafeBufferPointer {
          Array(network.forward($0.baseAddress!, batch: 3, training: false))
        }
        runs.append((probs, inferred, network.parameterLayout.views.flatMap { Array(network.gradient($0.name)!) }))
      }
      let (direct, blas) = (runs[0], runs[1])
      let context = "\(c.name), level \(level)"
      assertClose(direct.probs, blas.probs, rtol: 1e-5, atol: 1e-7, "training \(context)", file: file, line: line)
      assertClose(
        direct.inferred, blas.inferred, rtol: 1e-5, atol: 1e-7, "inference \(context)", file: file, line: line)
      let largest = blas.gradients.map(abs).max()!
      assertClose(
        direct.gradients, blas.gradients, atol: 1e-5 * largest, "gradients \(context)", file: file, line: line)
      // Different kernels: the sums run in another order, so some values differ in their last bits.
      XCTAssertNotEqual(
        direct.gradients, blas.gradients, "\(context): both runs took the same path", file: file, line: line)
    }
  }
}

extension FastVersusNaiveTests {
  /// Each output of the direct convolution comes from one tile and each kernel-gradient value sums its positions in
  /// order, so the split across threads changes no bit: outputs and kernel gradients with 1, 2 and 3 parts agree
  /// exactly (a model without BatchNorm, whose sums are split by parts).
  func testDirectConvolutionDoesNotDependOnTheThreadCount() throws {
    for level in [2, 1] {
      guard KernelPolicy(directConvolutionLevel: level).directConvolutionRuns(kernel: 5, outChannels: 32) else {
        continue
      }
      try threadCountIndependence(level: level)
    }
  }

  func threadCountIndependence(level: Int) throws {
    let spec = ModelSpec(
      name: "threads", inputLength: 450, inputChannels: 32,
      layers: [
        .conv1D(64, kernel: 5), .conv1D(32, kernel: 3), .maxPooling1D(5), .flatten(),
        .dense(nil, activation: .softmax),
      ])
    var runs: [(probs: [Float], kernels: [Float])] = []
    for threads in [1, 2, 3] {
      Parallel.threads = threads
      let network = try Network(
        spec: spec, classes: 3, seed: 4, policy: KernelPolicy(directConvolutionLevel: level))
      var rng = TestRNG(seed: 5)
      let x = (0..<(4 * network.inputWidth)).map { _ in rng.normal() }
      let labels: [Int32] = [1, 0, 2, 1]
      let probs = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 4, training: true)) }
      labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 0.25) }
      let kernels = ["conv1/kernel", "conv2/kernel"].flatMap { Array(network.gradient($0)!) }
      runs.append((probs, kernels))
    }
    for r in runs.dropFirst() {
      XCTAssertEqual(r.probs, runs[0].probs, "level \(level)")
      XCTAssertEqual(r.kernels, runs[0].kernels, "level \(level)")
    }
  }
}
