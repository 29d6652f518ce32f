import ConvNet
import XCTest
import _TestSupport

/// bfloat16 precision (bf16.c, `Precision.bf16`): the rounding rule everywhere; on CPUs with AVX512-BF16, the
/// network's forward and gradients against the float64 oracle with each bfloat16 pass's operands rounded the same way
/// (the kernels' arithmetic exactly: only float summation differs) and against the plain float64 oracle (what
/// bfloat16 costs), with the direct kernels and with Winograd's transforms before the bfloat16 GEMMs.
final class BFloat16Tests: XCTestCase {
  override func setUp() { Parallel.threads = 3 }
  override func tearDown() { Parallel.threads = 1 }

  /// Round to nearest, ties to even, subnormals to signed zero, NaN quiet, overflow to infinity: the rule of
  /// `vcvtneps2bf16` (Intel SDM, "CONVERT_FP32_TO_BF16"), which the kernels apply to every operand.
  func testRoundingFollowsTheHardwareRule() {
    let ulp = Float(1) / 128  // bfloat16's spacing in [1, 2)
    let subnormal = Float.leastNormalMagnitude / 1024
    let cases: [(Float, Float)] = [
      (1, 1), (1 + ulp / 2, 1), (1 + 3 * ulp / 2, 1 + 2 * ulp), (1 + ulp / 2 + ulp / 64, 1 + ulp),
      (-(1 + 3 * ulp / 2), -(1 + 2 * ulp)), (3.140625, 3.140625), (Float.pi, 3.140625),
      (subnormal, 0), (.leastNormalMagnitude, .leastNormalMagnitude), (.infinity, .infinity),
      (-.infinity, -.infinity), (.greatestFiniteMagnitude, .infinity),
    ]
    for (x, expected) in cases { XCTAssertEqual(Precision.round(x), expected, "round(\(x))") }
    XCTAssertEqual(Precision.round(-subnormal).sign, .minus, "a negative subnormal keeps its sign")
    XCTAssertTrue(Precision.round(.nan).isNaN)
    var rng = TestRNG(seed: 5)
    for _ in 0..<10_000 {
      let x = rng.normal() * 1000
      let r = Precision.round(x)
      XCTAssertEqual(r.bitPattern & 0xffff, 0, "\(x) rounds to a bfloat16 value")
      XCTAssertLessThanOrEqual(abs(r - x), abs(x) / 256, "\(x) within half a bfloat16 ulp")
    }
  }

  /// `bf16` builds where the CPU has the units and is refused with the reason elsewhere.
  func testBF16NeedsTheUnits() throws {
    let spec = ModelSpec(
      name: "tiny", inputLength: 8, layers: [.conv1D(32, kernel: 3), .flatten(), .dense(nil, activation: .softmax)])
    if Precision.bf16Runs {
      XCTAssertEqual(try Network(spec: spec, classes: 2, policy: KernelPolicy(precision: .bf16)).precision, .bf16)
      XCTAssertEqual(Precision.preferred, .bf16)
    } else {
      XCTAssertThrowsError(try Network(spec: spec, classes: 2, policy: KernelPolicy(precision: .bf16))) {
        XCTAssertTrue("\($0)".contains("AVX512-BF16"), "\($0)")
      }
      XCTAssertEqual(Precision.preferred, .fp32)
    }
  }

  /// Shapes for the bfloat16 passes: an odd count of input channels (a zero partner), kernels 1 to 5, lengths over
  /// several 192-position blocks and 256-position chunks with odd remainders, widths of one and several column
  /// panels, and passes that stay float (40 channels; an input gradient into 40 channels).
  static let specs: [ModelSpec] = [
    ModelSpec(
      name: "tails", inputLength: 29, inputChannels: 37,
      layers: [
        .conv1D(64, kernel: 5), .batchNormalization(), .maxPooling1D(3), .conv1D(32, kernel: 3), .flatten(),
        .dense(nil, activation: .softmax),
      ]),
    ModelSpec(
      name: "long", inputLength: 517, inputChannels: 9,
      layers: [
        .conv1D(32, kernel: 1), .conv1D(96, kernel: 4, activation: .linear), .batchNormalization(),
        .maxPooling1D(3, strides: 2), .conv1D(32, kernel: 2), .flatten(), .dense(nil, activation: .softmax),
      ]),
    ModelSpec(
      name: "mixed", inputLength: 23, inputChannels: 32,
      layers: [
        .conv1D(40, kernel: 3), .batchNormalization(), .conv1D(64, kernel: 5), .maxPooling1D(2),
        .globalMaxPooling1D(), .dense(nil, activation: .softmax),
      ]),
  ]

  /// How far the network's training forward, gradients and inference are from the oracle's: the probabilities' worst
  /// difference; the gradients' worst difference relative to each tensor's largest value (floored at 1% of the
  /// largest gradient anywhere, as `FastVersusNaiveTests`) and their relative L2 error over all tensors at once
  /// (tensors that are zero in exact arithmetic, a bias before a BatchNorm, are all noise in the first).
  struct Errors {
    var probabilities = 0.0, gradients = 0.0, gradientNorm = 0.0, inference = 0.0
  }

  /// `rounded`: the oracle rounds each bfloat16 pass's operands as the kernels do.
  func errors(_ spec: ModelSpec, seed: UInt64, rounded: Bool, winograd: Bool = true) throws -> Errors {
    let batch = 3
    let network = try Network(
      spec: spec, classes: 3, seed: seed, policy: KernelPolicy(precision: .bf16, winograd: winograd))
    var rng = TestRNG(seed: seed)
    let x = (0..<(batch * network.inputWidth)).map { _ in rng.normal() }
    let labels: [Int32] = [2, 0, 1]
    let before = variables(of: network)
    let inferred = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: batch, training: false)) }
    let probs = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: batch, training: true)) }
    labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(batch)) }
    func oracle(training: Bool) -> (probs: [Double], loss: Double, gradients: [String: [Double]]) {
      Reference.network(
        network.plans, variables: before, x: x.map(Double.init), batch: batch, labels: labels.map(Int.init),
        training: training
      ) { plan, outputs in
        let bf16 = rounded && network.policy.bf16Runs(kernel: plan.spec.kernelSize!, outChannels: outputs)
        return bf16 ? { Double(Precision.round(Float($0))) } : { $0 }
      }
    }
    let (ref, refInferred) = (oracle(training: true), oracle(training: false))
    var e = Errors()
    e.probabilities = zip(probs, ref.probs).map { abs(Double($0) - $1) }.max()!
    e.inference = zip(inferred, refInferred.probs).map { abs(Double($0) - $1) }.max()!
    let globalMax = ref.gradients.values.map { $0.map(abs).max() ?? 0 }.max() ?? 0
    var (squares, refSquares) = (0.0, 0.0)
    for view in network.parameterLayout.views {
      let (ours, theirs) = (network.gradient(view.name)!, ref.gradients[view.name]!)
      let scale = max(theirs.map(abs).max() ?? 0, 1e-2 * globalMax)
      e.gradients = max(e.gradients, zip(ours, theirs).map { abs(Double($0) - $1) }.max()! / scale)
      squares += zip(ours, theirs).map { (Double($0) - $1) * (Double($0) - $1) }.reduce(0, +)
      refSquares += theirs.map { $0 * $0 }.reduce(0, +)
    }
    e.gradientNorm = (squares / refSquares).squareRoot()
    return e
  }

  /// The direct kernels compute exactly the rounded operands' products, summed in float: within float summation's
  /// error of the rounded oracle (measured at most 1.3e-5 for probabilities, 6.9e-4 of a tensor's largest
  /// gradient, over these shapes and three seeds), far inside bfloat16's own error, which a float kernel would show
  /// (the plain oracle differs by 0.1-0.3 of a tensor's largest gradient here). Against the plain oracle: bfloat16's
  /// error, measured up to 3.8e-3 for probabilities and 7.1e-2 relative L2 over the gradients (BatchNorm over three
  /// samples magnifies it).
  func testDirectKernelsAgainstTheOracle() throws {
    try XCTSkipUnless(Precision.bf16Runs, "this CPU has no AVX512-BF16")
    for (n, spec) in Self.specs.enumerated() {
      for seed in 0..<3 {
        let exact = try errors(spec, seed: UInt64(30 + 10 * n + seed), rounded: true, winograd: false)
        let plain = try errors(spec, seed: UInt64(30 + 10 * n + seed), rounded: false, winograd: false)
        let context = "\(spec.name), seed \(seed): rounded oracle \(exact), plain \(plain)"
        XCTAssertLessThan(exact.probabilities, 1e-4, context)
        XCTAssertLessThan(exact.inference, 1e-4, context)
        XCTAssertLessThan(exact.gradients, 2e-3, context)
        XCTAssertLessThan(plain.probabilities, 1e-2, context)
        XCTAssertLessThan(plain.inference, 1e-2, context)
        XCTAssertLessThan(plain.gradientNorm, 0.15, context)
      }
    }
  }

  /// Winograd's passes of training (the kernel and input gradients) transform in float and multiply in bfloat16: the
  /// rounding falls on transformed values, so only the plain oracle applies. Their gradients stay within about twice
  /// the direct kernels' error (measured 1.0-2.4x relative L2). Inference in bf16 stays direct (as a Winograd forward
  /// it moved probabilities 10x more than the direct kernels: 5.4e-3 here, 0.023 on the frames model).
  func testWinogradKernelsAgainstTheOracle() throws {
    try XCTSkipUnless(Precision.bf16Runs, "this CPU has no AVX512-BF16")
    for (n, spec) in Self.specs.enumerated() {
      for seed in 0..<3 {
        let direct = try errors(spec, seed: UInt64(30 + 10 * n + seed), rounded: false, winograd: false)
        let winograd = try errors(spec, seed: UInt64(30 + 10 * n + seed), rounded: false)
        let context = "\(spec.name), seed \(seed): Winograd \(winograd), direct \(direct)"
        XCTAssertLessThan(winograd.gradientNorm, 3 * direct.gradientNorm + 2e-3, context)
        XCTAssertEqual(winograd.probabilities, direct.probabilities, context)  // forwards are direct in bf16
        // (a pass bf16 does not take, 40 channels, keeps Winograd's float inference: float rounding apart)
        XCTAssertEqual(winograd.inference, direct.inference, accuracy: 1e-5, context)
      }
    }
  }

  /// The bf16 kernels' sums do not depend on the thread split (each output from one tile, each kernel-gradient value
  /// over its positions in order), so a bf16 run resumes bit for bit as a float one does: outputs and gradients with
  /// 1, 2 and 3 parts agree exactly, with Winograd's passes and without (a model without BatchNorm, whose sums are
  /// split by parts, as `testDirectConvolutionDoesNotDependOnTheThreadCount`).
  func testResultsDoNotDependOnTheThreadCount() throws {
    try XCTSkipUnless(Precision.bf16Runs, "this CPU has no AVX512-BF16")
    let spec = ModelSpec(
      name: "threads", inputLength: 450, inputChannels: 32,
      layers: [
        .conv1D(64, kernel: 5), .conv1D(32, kernel: 3), .maxPooling1D(5), .flatten(),
        .dense(nil, activation: .softmax),
      ])
    for winograd in [true, false] {
      var runs: [[Float]] = []
      for threads in [1, 2, 3] {
        Parallel.threads = threads
        let network = try Network(
          spec: spec, classes: 3, seed: 4, policy: KernelPolicy(precision: .bf16, winograd: winograd))
        var rng = TestRNG(seed: 5)
        let x = (0..<(4 * network.inputWidth)).map { _ in rng.normal() }
        let labels: [Int32] = [1, 0, 2, 1]
        var out = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 4, training: true)) }
        labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 0.25) }
        out += network.parameterLayout.views.flatMap { Array(network.gradient($0.name)!) }
        out += x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 4, training: false)) }
        runs.append(out)
      }
      for r in runs.dropFirst() { XCTAssertEqual(r, runs[0], "winograd \(winograd)") }
    }
  }
}
