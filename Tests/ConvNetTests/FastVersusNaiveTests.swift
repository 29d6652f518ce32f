import ConvNet
import XCTest
import _TestSupport

/// Every variable of `network` by Keras name, in double.
func variables(of network: Network) -> [String: [Double]] {
  var out: [String: [Double]] = [:]
  for (_, name, _) in network.variablesInLayerOrder { out[name] = network.variable(name)!.map(Double.init) }
  return out
}

/// A spec with every layer type on odd sizes.
func oddSpec(
  length: Int, channels: [Int], kernels: [Int], pools: [Int], dense: Int, dropout: Double? = nil,
  inputChannels: Int = 1
) -> ModelSpec {
  var layers: [LayerSpec] = []
  for i in channels.indices {
    layers += [.conv1D(channels[i], kernel: kernels[i]), .batchNormalization(), .maxPooling1D(pools[i])]
    if let dropout, i == 0 { layers.append(.dropout(dropout)) }
  }
  layers += [.flatten(), .dense(dense, activation: .relu), .batchNormalization(), .dense(nil, activation: .softmax)]
  return ModelSpec(name: "odd", inputLength: length, inputChannels: inputChannels, layers: layers)
}

/// A model over frames on odd sizes: Reshape of 24 values to 6 frames of 4, Conv1D/BatchNorm/MaxPool, Conv1D/BatchNorm,
/// `pooling` over time, Dropout, Dense relu, Dense softmax (the frames preset's layer types).
func framesSpec(pooling: LayerSpec, frames: Int = 6, features: Int = 4, dropout: Double = 0.2) -> ModelSpec {
  ModelSpec(
    name: "frames-\(pooling.type.rawValue)", inputLength: frames * features,
    layers: [
      .reshape([frames, -1]), .conv1D(5, kernel: 3), .batchNormalization(), .maxPooling1D(2, strides: 2),
      .conv1D(3, kernel: 3), .batchNormalization(), pooling, .dropout(dropout), .dense(4, activation: .relu),
      .dense(nil, activation: .softmax),
    ])
}

/// The fast float32 kernels (GEMM convolutions over padded NLC buffers) against the naive double-precision
/// reference on a sweep of shapes: lengths odd and even, pools 3 and 5, kernels 1 to 5, channels 1 to 9.
final class FastVersusNaiveTests: XCTestCase {
  /// Three element-wise parts (more than this machine's cores, and uneven splits of odd batches).
  override func setUp() { Parallel.threads = 3 }
  override func tearDown() { Parallel.threads = 1 }

  /// `zeroGammas`: that many channels of every BatchNorm get `gamma = 0`, so that every window of a pool after it
  /// ties (all values equal `beta`) and its gradient must go to the window's first position.
  func check(
    _ spec: ModelSpec, classes: Int, batch: Int, seed: UInt64, zeroGammas: Int = 0,
    policy: KernelPolicy = KernelPolicy(), file: StaticString = #filePath, line: UInt = #line
  )
    throws
  {
    let network = try Network(spec: spec, classes: classes, seed: seed, policy: policy)
    var rng = TestRNG(seed: seed)
    // Non-trivial BatchNorm parameters and moving statistics.
    for view in network.parameterLayout.views where view.variable == "gamma" || view.variable == "beta" {
      for i in 0..<view.count {
        network.parameter(view.name)![i] =
          view.variable == "gamma" ? (i < zeroGammas ? 0 : 0.5 + rng.normal().magnitude) : rng.normal()
      }
    }
    for view in network.stateLayout.views {
      for i in 0..<view.count {
        network.stateVariable(view.name)![i] =
          view.variable == "moving_mean" ? 0.1 * rng.normal() : 0.5 + rng.normal().magnitude
      }
    }
    let x = (0..<(batch * network.inputWidth)).map { _ in rng.normal() }
    let labels = (0..<batch).map { _ in Int32.random(in: 0..<Int32(classes), using: &rng) }
    let before = variables(of: network)
    let context =
      "\(spec.layers.map { "\($0.type.rawValue)\($0.filters ?? $0.poolSize ?? $0.units ?? 0)" }) L\(spec.inputLength)"

    // Inference.
    let inferred = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: batch, training: false)) }
    let refInfer = Reference.network(
      network.plans, variables: before, x: x.map(Double.init), batch: batch, labels: labels.map(Int.init),
      training: false)
    assertClose(
      inferred, refInfer.probs.map(Float.init), rtol: 1e-4, atol: 1e-6, "inference \(context)", file: file, line: line)

    // Training: probabilities, loss, gradients, moving statistics.
    let probs = x.withUnsafeBufferPointer {
      Array(network.forward($0.baseAddress!, batch: batch, training: true, dropoutSeed: 99))
    }
    let loss = labels.withUnsafeBufferPointer { network.loss(labels: $0).sum } / Double(batch)
    labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(batch)) }
    let ref = Reference.network(
      network.plans, variables: before, x: x.map(Double.init), batch: batch, labels: labels.map(Int.init),
      training: true, dropoutSeed: 99)
    assertClose(probs, ref.probs.map(Float.init), rtol: 1e-4, atol: 1e-6, "training \(context)", file: file, line: line)
    XCTAssertEqual(loss, ref.loss, accuracy: 1e-4 * max(1, ref.loss), "loss \(context)", file: file, line: line)
    // Relative to the tensor's largest value, floored at 1% of the largest gradient anywhere: some gradients are
    // zero in exact arithmetic (a bias before BatchNorm, the sum of a BatchNorm's input gradients), and float
    // rounding leaves them at noise level.
    let globalMax = ref.gradients.values.map { $0.map(abs).max() ?? 0 }.max() ?? 0
    for view in network.parameterLayout.views {
      let ours = Array(network.gradient(view.name)!)
      let theirs = ref.gradients[view.name]!
      let scale = max(theirs.map(abs).max() ?? 0, 1e-2 * globalMax)
      let worst = zip(ours, theirs).map { abs(Double($0) - $1) }.max() ?? 0
      XCTAssertLessThan(worst / scale, 2e-4, "gradient \(view.name) \(context)", file: file, line: line)
    }
    for view in network.stateLayout.views where view.variable == "moving_mean" {
      XCTAssertFalse(
        network.stateVariable(view.name)!.elementsEqual(before[view.name]!.map(Float.init)),
        "moving mean of \(view.layer) updated", file: file, line: line)
    }
  }

  func testSweepOfShapes() throws {
    var rng = TestRNG(seed: 11)
    let lengths = [7, 8, 13, 16, 21]
    for (n, length) in lengths.enumerated() {
      for pool in [3, 5] {
        let k1 = [1, 2, 3, 5][(n + pool) % 4]
        let k2 = [5, 3, 2, 4][(n * 3 + pool) % 4]
        let c1 = Int.random(in: 1...9, using: &rng)
        let c2 = Int.random(in: 1...9, using: &rng)
        let spec = oddSpec(length: length, channels: [c1, c2], kernels: [k1, k2], pools: [pool, 8 - pool], dense: 5)
        try check(spec, classes: 3, batch: 3, seed: UInt64(n * 10 + pool))
      }
    }
  }

  /// Channel counts that are and are not multiples of the 8-wide vector loops, several input channels,
  /// dropout, and two convolutions in a row (the layout copies between them).
  func testWideChannelsDropoutAndConvAfterConv() throws {
    try check(
      oddSpec(
        length: 19, channels: [9, 17], kernels: [5, 3], pools: [5, 3], dense: 7, dropout: 0.3, inputChannels: 2),
      classes: 4, batch: 5, seed: 5)
    let spec = ModelSpec(
      name: "convs", inputLength: 15, inputChannels: 3,
      layers: [
        .conv1D(6, kernel: 3), .conv1D(5, kernel: 5, activation: .linear), .batchNormalization(),
        .maxPooling1D(3, strides: 2), .flatten(), .dense(nil, activation: .softmax),
      ])
    try check(spec, classes: 2, batch: 4, seed: 6)
  }

  /// Reshape, the global poolings (the maximum's ties included: a channel with gamma 0 is constant over time) and
  /// Dropout after them; and the frames preset's shapes, whose convolutions run the direct and Winograd kernels.
  func testFramesModels() throws {
    for pooling in [LayerSpec.globalAveragePooling1D(), .globalMaxPooling1D()] {
      try check(framesSpec(pooling: pooling), classes: 3, batch: 5, seed: 71)
      try check(framesSpec(pooling: pooling), classes: 3, batch: 4, seed: 72, zeroGammas: 1)
      try check(framesSpec(pooling: pooling, frames: 27, features: 22), classes: 7, batch: 3, seed: 73)
    }
    try check(.frames(frames: 20, features: 22), classes: 7, batch: 3, seed: 74)
  }

  /// The fusions the network makes (BatchNorm with the MaxPool after it and the Conv1D before it) and the places
  /// it must not: a BatchNorm first, a BatchNorm after a Conv1D without a pool, a pool without a BatchNorm, and
  /// pools with strides longer than their windows (rows no window reaches, fused and not).
  func testFusedAndUnfusedNeighbours() throws {
    let spec = ModelSpec(
      name: "fusions", inputLength: 23, inputChannels: 2,
      layers: [
        .batchNormalization(), .conv1D(4, kernel: 3), .batchNormalization(), .conv1D(3, kernel: 2),
        .maxPooling1D(2, strides: 3), .conv1D(9, kernel: 3), .batchNormalization(), .maxPooling1D(2, strides: 3),
        .conv1D(5, kernel: 1, activation: .linear), .batchNormalization(), .maxPooling1D(3),
        .flatten(), .dense(nil, activation: .softmax),
      ])
    for batch in [1, 4] { try check(spec, classes: 3, batch: batch, seed: 40 + UInt64(batch)) }
  }

  /// The first block over one input channel runs without storing its convolution's output (stem.c): against the
  /// same network with the layers unfused (GEMM convolution, stored output) on channel counts across the
  /// 16-lane blocks, ReLU and linear convolutions, kernels 1 to 7, pools whose strides are longer than their
  /// windows (positions no window reaches), and lengths over several of the kernels' tiles; and against the naive
  /// reference.
  func testStemAgainstUnfusedLayers() throws {
    let cases: [(channels: Int, kernel: Int, activation: Activation, pool: Int, strides: Int, length: Int)] = [
      (37, 7, .relu, 5, 2, 29), (16, 1, .linear, 3, 2, 12), (5, 4, .relu, 2, 3, 17), (33, 5, .linear, 5, 2, 40),
      // Several tiles of 64 positions (stem.c), with windows across their edges.
      (20, 5, .relu, 5, 2, 203), (17, 3, .relu, 2, 3, 150),
    ]
    for (n, c) in cases.enumerated() {
      let spec = ModelSpec(
        name: "stem", inputLength: c.length, inputChannels: 1,
        layers: [
          .conv1D(c.channels, kernel: c.kernel, activation: c.activation), .batchNormalization(),
          .maxPooling1D(c.pool, strides: c.strides), .conv1D(3, kernel: 3), .flatten(),
          .dense(nil, activation: .softmax),
        ])
      let context = "stem \(c)"
      try check(spec, classes: 3, batch: 5, seed: 70 + UInt64(n))
      var runs: [(probs: [Float], inferred: [Float], gradients: [Float], state: [Float], bytes: Int)] = []
      for fused in [true, false] {
        let network = try Network(spec: spec, classes: 3, seed: 7, policy: KernelPolicy(fusesStem: fused))
        var rng = TestRNG(seed: 8)
        for i in 0..<c.channels { network.parameter("conv1/bias")![i] = 0.3 * rng.normal() }
        let x = (0..<(5 * network.inputWidth)).map { _ in rng.normal() }
        let labels: [Int32] = [0, 2, 1, 1, 0]
        let probs = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 5, training: true)) }
        labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 0.2) }
        let inferred = x.withUnsafeBufferPointer {
          Array(network.forward($0.baseAddress!, batch: 5, training: false))
        }
        let gradients = network.parameterLayout.views.flatMap { Array(network.gradient($0.name)!) }
        let state = network.stateLayout.views.flatMap { Array(network.stateVariable($0.name)!) }
        runs.append((probs, inferred, gradients, state, network.allocatedBytes))
      }
      let (fused, unfused) = (runs[0], runs[1])
      assertClose(fused.probs, unfused.probs, rtol: 1e-5, atol: 1e-7, "training \(context)")
      assertClose(fused.inferred, unfused.inferred, rtol: 1e-5, atol: 1e-7, "inference \(context)")
      assertClose(fused.state, unfused.state, rtol: 1e-5, atol: 1e-7, "moving statistics \(context)")
      let largest = unfused.gradients.map(abs).max()!
      assertClose(fused.gradients, unfused.gradients, atol: 1e-5 * largest, "gradients \(context)")
      // The convolution's output is not allocated (nor its gradient, unless the shared scratch, which may hold it,
      // is as large for another layer's use, such as the next convolution's Winograd buffers).
      XCTAssertLessThanOrEqual(fused.bytes, unfused.bytes - 4 * 5 * c.length * c.channels, context)
    }
  }

  /// The BatchNorm/pool kernels (batchnorm.c) over several of their 64-position tiles, with windows across the
  /// tiles' edges, channels across the 16-lane blocks, and a BatchNorm whose input no Conv1D wrote.
  func testLongSequencesOverSeveralTiles() throws {
    let spec = ModelSpec(
      name: "long", inputLength: 203, inputChannels: 2,
      layers: [
        .conv1D(20, kernel: 5), .batchNormalization(), .maxPooling1D(5), .conv1D(17, kernel: 3, activation: .linear),
        .batchNormalization(), .maxPooling1D(2, strides: 3), .batchNormalization(), .maxPooling1D(3), .flatten(),
        .dense(nil, activation: .softmax),
      ])
    try check(spec, classes: 3, batch: 3, seed: 90)
  }

  /// A BatchNorm with `gamma = 0` in some channels makes every window of the pool after it a tie: the gradient
  /// goes to the first position, and the gamma gradient `Σ dz·x̂` takes that position's `x̂` (which the forward pool
  /// keeps for backward's sums). The first block over one input channel (stem.c) and a later one (batchnorm.c).
  func testTiedWindowsRouteToTheFirstPosition() throws {
    let spec = ModelSpec(
      name: "ties", inputLength: 31, inputChannels: 1,
      layers: [
        .conv1D(18, kernel: 5), .batchNormalization(), .maxPooling1D(5, strides: 2), .conv1D(20, kernel: 3),
        .batchNormalization(), .maxPooling1D(3), .flatten(), .dense(nil, activation: .softmax),
      ])
    try check(spec, classes: 3, batch: 4, seed: 130, zeroGammas: 3)
  }

  func testBatchSizesChangeBetweenCalls() throws {
    let spec = oddSpec(length: 13, channels: [4, 3], kernels: [3, 3], pools: [3, 3], dense: 4)
    for batch in [4, 1, 6, 2] { try check(spec, classes: 3, batch: batch, seed: UInt64(batch)) }
  }

  /// Buckets cover the gradients and the caller's tail (Training's step sums), contiguous, from the top layer down,
  /// each at least the size asked unless it ends at the first layer, and closed by the layer whose backward
  /// completes it.
  func testGradientBucketsCoverTheBufferFromTheTop() throws {
    let network = try Network(spec: .seed(inputLength: 2376), classes: 7, reductionTail: 5)
    XCTAssertEqual(network.gradients.count, network.trainableCount + 5)
    for bytes in [1, 1 << 20, 4 << 20, 1 << 30] {
      let buckets = network.gradientBuckets(bytes: bytes)
      XCTAssertEqual(buckets.first?.range.upperBound, network.gradients.count, "the tail rides in the first")
      XCTAssertEqual(buckets.last?.range.lowerBound, 0)
      for (a, b) in zip(buckets, buckets.dropFirst()) {
        XCTAssertEqual(a.range.lowerBound, b.range.upperBound)
        XCTAssertGreaterThan(a.afterLayer, b.afterLayer)
      }
      for bucket in buckets.dropLast() { XCTAssertGreaterThanOrEqual(bucket.range.count * 4, bytes) }
    }
    XCTAssertEqual(network.gradientBuckets(bytes: 1 << 30).count, 1)
    XCTAssertEqual(network.gradientBuckets(bytes: 1).count, 8, "one per layer with weights: 5 blocks, 3 in the head")
  }

  /// `afterLayer(k)` comes once per layer, top down, when layer k's parameter gradients are final and those below it
  /// not yet written: the gradients seen there, filled with NaN before backward, against those after it. (A Conv1D
  /// calls it before computing its input gradient, so that its bucket's reduction overlaps that: `bench scale`'s
  /// bucket start times show when.)
  func testAfterLayerSeesTheLayersGradientsFinalAndNoneBelow() throws {
    let spec = oddSpec(length: 23, channels: [8, 12, 9], kernels: [5, 3, 4], pools: [3, 2, 2], dense: 6)
    let network = try Network(spec: spec, classes: 3, seed: 7)
    var rng = TestRNG(seed: 7)
    let batch = 3
    let x = (0..<(batch * network.inputWidth)).map { _ in rng.normal() }
    let labels: [Int32] = [0, 2, 1]
    func backward(_ afterLayer: ((Int) -> Void)?) -> [Float] {
      for i in 0..<network.gradients.count { network.gradients.pointer[i] = .nan }
      _ = network.forward(x, batch: batch, training: true)
      labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1, afterLayer: afterLayer) }
      return Array(network.gradients.array[0..<network.trainableCount])
    }
    let final = backward(nil)
    XCTAssertFalse(final.contains { $0.isNaN })
    let buckets = network.gradientBuckets(bytes: 1).map { ($0.afterLayer, $0.range.clamped(to: 0..<final.count)) }
    XCTAssertEqual(buckets.count, 6, "one per layer with weights: 3 blocks, 3 in the head")
    var calls: [Int] = []
    _ = backward { k in
      calls.append(k)
      let seen = network.gradients.array
      for (layer, range) in buckets {
        if layer >= k {
          let differ = zip(seen[range], final[range]).filter { $0 != $1 }.count
          XCTAssertEqual(differ, 0, "layer \(layer)'s gradients not final at afterLayer(\(k))")
        } else {
          XCTAssertTrue(seen[range].allSatisfy(\.isNaN), "layer \(layer)'s gradients written before afterLayer(\(k))")
        }
      }
    }
    XCTAssertEqual(calls, Array((0..<network.layerCount).reversed()))
  }
}
