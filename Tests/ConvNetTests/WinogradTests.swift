import ConvNet
import XCTest
import _TestSupport

/// Each Conv1D of 2 to 5 taps over at least 8 input channels runs its inference forward, its input gradient (F(4, k))
/// and its kernel gradient (F(k, 4)) by Winograd's minimal filtering (winograd.c): against the naive double-precision reference and against the direct
/// convolution, on lengths with every remainder mod 4 (the last tile of each sample partly past its end), shorter
/// than one tile, over several chunks of samples, and with neighbours whose rows the last tiles must not read.
extension FastVersusNaiveTests {
  func testWinogradAgainstNaiveAndDirect() throws {
    let cases: [(name: String, length: Int, inputs: Int, batch: Int, layers: [LayerSpec])] = [
      (
        "k5, L = 4q+1", 37, 16, 3,
        [.conv1D(24, kernel: 5), .batchNormalization(), .maxPooling1D(3), .conv1D(16, kernel: 3)]
      ),
      ("k4 then k2, L = 4q+2", 30, 9, 2, [.conv1D(32, kernel: 4, activation: .linear), .conv1D(20, kernel: 2)]),
      (
        "k3 then k5, L = 4q+3, several chunks", 403, 12, 17,
        [.conv1D(48, kernel: 3), .batchNormalization(), .maxPooling1D(5, strides: 2), .conv1D(16, kernel: 5)]
      ),
      ("one tile, L = 4", 4, 8, 2, [.conv1D(8, kernel: 5)]),
      ("less than a tile, L = 3", 3, 8, 2, [.conv1D(8, kernel: 5)]),
    ]
    var differs = 0
    for (n, c) in cases.enumerated() {
      let spec = ModelSpec(
        name: "winograd", inputLength: c.length, inputChannels: c.inputs,
        layers: c.layers + [.flatten(), .dense(nil, activation: .softmax)])
      // The same weights and statistics with Winograd's passes and without.
      let (network, plain) = (
        try Network(spec: spec, classes: 4, seed: 40 + UInt64(n)),
        try Network(spec: spec, classes: 4, seed: 40 + UInt64(n), policy: KernelPolicy(winograd: false))
      )
      var rng = TestRNG(seed: 50 + UInt64(n))
      for view in network.stateLayout.views where view.variable == "moving_variance" {
        for i in 0..<view.count {
          network.stateVariable(view.name)![i] = 0.5 + rng.normal().magnitude
          plain.stateVariable(view.name)![i] = network.stateVariable(view.name)![i]
        }
      }
      let x = (0..<(c.batch * network.inputWidth)).map { _ in rng.normal() }
      func infer(_ network: Network) -> [Float] {
        x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: c.batch, training: false)) }
      }
      let (fast, direct) = (infer(network), infer(plain))
      let reference = Reference.network(
        network.plans, variables: variables(of: network), x: x.map(Double.init), batch: c.batch,
        labels: Array(repeating: 0, count: c.batch), training: false)
      assertClose(fast, reference.probs.map(Float.init), rtol: 1e-4, atol: 1e-6, "naive, \(c.name)")
      assertClose(fast, direct, rtol: 1e-5, atol: 1e-7, "direct, \(c.name)")
      if fast != direct { differs += 1 }

      // Training: the kernel and input gradients by Winograd, every gradient against float64 and the direct
      // convolution's.
      let labels = (0..<c.batch).map { Int32($0 % 4) }
      func gradients(_ network: Network) -> [Float] {
        _ = x.withUnsafeBufferPointer { network.forward($0.baseAddress!, batch: c.batch, training: true) }
        labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(c.batch)) }
        return network.parameterLayout.views.flatMap { Array(network.gradient($0.name)!) }
      }
      let exact = Reference.network(
        network.plans, variables: variables(of: network), x: x.map(Double.init), batch: c.batch,
        labels: labels.map(Int.init), training: true
      ).gradients
      let (fastGradients, directGradients) = (gradients(network), gradients(plain))
      let exactGradients = network.parameterLayout.views.flatMap { exact[$0.name]! }
      let largest = Float(exactGradients.map(abs).max()!)
      assertClose(fastGradients, exactGradients.map(Float.init), atol: 1e-4 * largest, "gradients, naive, \(c.name)")
      assertClose(fastGradients, directGradients, atol: 1e-5 * largest, "gradients, direct, \(c.name)")
      if fastGradients != directGradients { differs += 1 }
    }
    // Another order of sums: some values differ in their last bits unless the Winograd path never ran (5 inferences,
    // 5 backward passes).
    XCTAssertGreaterThan(differs, 8, "the Winograd and direct runs agree bit for bit: one path ran twice")
  }

  /// The seed's widths with the moving statistics of a trained model (a training forward with momentum 0 sets them
  /// to the batch's): BatchNorm then subtracts means far larger than the spread, which magnifies the convolution's
  /// rounding. On the full seed (length 2376, 8 rows) the probabilities were within 8.0e-6 of float64 (the direct
  /// convolution: 7.5e-6); here a shorter input keeps the float64 reference quick.
  func testWinogradWithTrainedStatisticsOnTheSeedWidths() throws {
    var spec = ModelSpec.seed(inputLength: 150)
    for i in spec.layers.indices where spec.layers[i].type == .batchNormalization { spec.layers[i].momentum = 0 }
    let network = try Network(spec: spec, classes: 7, seed: 3)
    var rng = TestRNG(seed: 4)
    let batch = 3
    let x = (0..<(batch * network.inputWidth)).map { _ in rng.normal() }
    _ = x.withUnsafeBufferPointer { network.forward($0.baseAddress!, batch: batch, training: true) }
    let inferred = x.withUnsafeBufferPointer {
      Array(network.forward($0.baseAddress!, batch: batch, training: false))
    }
    let reference = Reference.network(
      network.plans, variables: variables(of: network), x: x.map(Double.init), batch: batch,
      labels: Array(repeating: 0, count: batch), training: false)
    assertClose(inferred, reference.probs.map(Float.init), rtol: 1e-4, atol: 2e-5, "trained statistics")
  }

  /// A sample's last tile reads past its data: those rows are zeros, never the next sample's, so a neighbour of NaNs
  /// leaves the others as they are alone.
  func testWinogradTilesDoNotReadTheNextSample() throws {
    let spec = ModelSpec(
      name: "neighbours", inputLength: 37, inputChannels: 8,
      layers: [.conv1D(16, kernel: 5), .conv1D(16, kernel: 3), .flatten(), .dense(nil, activation: .softmax)])
    let network = try Network(spec: spec, classes: 3, seed: 7)
    var rng = TestRNG(seed: 8)
    let width = network.inputWidth
    let sample = (0..<width).map { _ in rng.normal() }
    let alone = sample.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 1, training: false)) }
    let batch = sample + Array(repeating: Float.nan, count: width) + sample
    let together = batch.withUnsafeBufferPointer {
      Array(network.forward($0.baseAddress!, batch: 3, training: false))
    }
    assertClose(Array(together[0..<3]), alone, rtol: 1e-6, atol: 1e-8, "before the NaN sample")
    assertClose(Array(together[6..<9]), alone, rtol: 1e-6, atol: 1e-8, "after the NaN sample")
    XCTAssertTrue(together[3..<6].allSatisfy(\.isNaN))
  }
}
