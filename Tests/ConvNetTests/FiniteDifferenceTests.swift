import ConvNet
import XCTest
import _TestSupport

/// Gradients against central finite differences of the loss, for every layer type on small odd shapes.
final class FiniteDifferenceTests: XCTestCase {
  let specs = [
    oddSpec(length: 11, channels: [3, 4], kernels: [3, 2], pools: [3, 5], dense: 5, dropout: 0.25),
    framesSpec(pooling: .globalAveragePooling1D()), framesSpec(pooling: .globalMaxPooling1D()),
  ]
  let batch = 3

  func data(_ network: Network) -> ([Double], [Int]) {
    var rng = TestRNG(seed: 21)
    let x = (0..<(batch * network.inputWidth)).map { _ in Double(rng.normal()) }
    return (x, [2, 0, 1])
  }

  /// The naive double-precision backward (the oracle of the fast kernels) against differences with h = 1e-6.
  func testReferenceBackwardMatchesFiniteDifferences() throws {
    for spec in specs { try referenceBackwardMatchesFiniteDifferences(spec) }
  }

  func referenceBackwardMatchesFiniteDifferences(_ spec: ModelSpec) throws {
    let network = try Network(spec: spec, classes: 3, seed: 4)
    var vars = variables(of: network)
    var rng = TestRNG(seed: 8)
    for view in network.parameterLayout.views where view.variable == "beta" {
      vars[view.name] = vars[view.name]!.map { _ in Double(rng.normal()) * 0.5 }
    }
    let (x, labels) = data(network)
    func loss(_ v: [String: [Double]]) -> Double {
      Reference.network(network.plans, variables: v, x: x, batch: batch, labels: labels, training: true, dropoutSeed: 5)
        .loss
    }
    let analytic = Reference.network(
      network.plans, variables: vars, x: x, batch: batch, labels: labels, training: true, dropoutSeed: 5
    ).gradients
    let h = 1e-6
    for view in network.parameterLayout.views {
      var worst = 0.0
      for i in 0..<view.count {
        var plus = vars
        var minus = vars
        plus[view.name]![i] += h
        minus[view.name]![i] -= h
        let numeric = (loss(plus) - loss(minus)) / (2 * h)
        // Relative, floored at 1e-3: some gradients are zero in exact arithmetic (a bias before BatchNorm).
        worst = max(worst, abs(numeric - analytic[view.name]![i]) / max(1e-3, abs(numeric)))
      }
      XCTAssertLessThan(worst, 1e-4, "\(spec.name) \(view.name): worst relative error \(worst)")
    }
  }

  /// The fast float32 network against float differences (h = 1e-3) on a sample of each variable's elements, away
  /// from kinks.
  func testFastBackwardMatchesFiniteDifferences() throws {
    for spec in specs { try fastBackwardMatchesFiniteDifferences(spec) }
  }

  /// Class weights (Keras's `class_weight`): backward is the gradient of the loss with each row's class weight; and
  /// weights of 2 double the loss and every gradient exactly.
  func testClassWeightedBackwardMatchesFiniteDifferences() throws {
    try fastBackwardMatchesFiniteDifferences(specs[0], classWeights: [0.5, 3, 1.25])
    let network = try Network(spec: specs[0], classes: 3, seed: 4)
    let (xd, labels) = data(network)
    let (x, y) = (xd.map { Float($0) }, labels.map { Int32($0) })
    func step(_ w: [Float]?) -> (Double, [Float]) {
      x.withUnsafeBufferPointer { _ = network.forward($0.baseAddress!, batch: batch, training: true, dropoutSeed: 5) }
      let loss = y.withUnsafeBufferPointer { network.loss(labels: $0, classWeights: w).sum }
      y.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(batch), classWeights: w) }
      return (loss, network.gradients.array)
    }
    let (plain, doubled) = (step(nil), step([2, 2, 2]))
    XCTAssertEqual(doubled.0, 2 * plain.0, accuracy: 1e-12)
    XCTAssertEqual(doubled.1, plain.1.map { 2 * $0 })
  }

  func fastBackwardMatchesFiniteDifferences(_ spec: ModelSpec, classWeights: [Float]? = nil) throws {
    let network = try Network(spec: spec, classes: 3, seed: 4)
    let (xd, labels) = data(network)
    let x = xd.map { Float($0) }
    let y = labels.map { Int32($0) }
    func loss() -> Double {
      x.withUnsafeBufferPointer { _ = network.forward($0.baseAddress!, batch: batch, training: true, dropoutSeed: 5) }
      return y.withUnsafeBufferPointer { network.loss(labels: $0, classWeights: classWeights).sum } / Double(batch)
    }
    let saved = network.state.array
    var rng = TestRNG(seed: 3)
    // Biases and BatchNorm offsets start at zero, where a row whose dropout zeroed all of a Dense layer's inputs
    // sits exactly on its ReLU's kink; drawn at random, no point is on one.
    for view in network.parameterLayout.views where ["bias", "beta"].contains(view.variable) {
      let p = network.parameter(view.name)!
      for i in 0..<view.count { p[i] = 0.5 * Float(rng.normal()) }
    }
    _ = loss()
    y.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(batch), classWeights: classWeights) }
    let analytic = network.gradients.array
    var (checked, kinks) = (0, 0)
    for view in network.parameterLayout.views {
      let p = network.parameter(view.name)!
      var (viewChecked, draws) = (0, 0)
      while viewChecked < min(4, view.count) && draws < 12 {
        draws += 1
        let i = Int.random(in: 0..<view.count, using: &rng)
        let original = p[i]
        func difference(_ h: Float) -> Double {
          p[i] = original + h
          let up = loss()
          p[i] = original - h
          let down = loss()
          p[i] = original
          return (up - down) / Double(2 * h)
        }
        let h: Float = 1e-3 * max(1, abs(original))
        let (numeric, half) = (difference(h), difference(h / 2))
        let tolerance = 2e-3 + 2e-2 * abs(numeric)
        // Smooth, the two differences agree to O(h²); where they do not, a ReLU or a maximum switches within h of
        // the point, and the difference says nothing of the gradient there: another element is drawn instead.
        if abs(numeric - half) > tolerance / 2 {
          kinks += 1
          continue
        }
        let g = Double(analytic[view.offset + i])
        XCTAssertEqual(g, numeric, accuracy: tolerance, "\(spec.name) \(view.name)[\(i)]")
        viewChecked += 1
      }
      XCTAssertGreaterThan(viewChecked, 0, "\(spec.name) \(view.name): every element drawn is at a kink")
      checked += viewChecked
    }
    XCTAssertLessThan(kinks * 8, checked, "\(spec.name): \(kinks) kinks against \(checked) elements checked")
    saved.withUnsafeBufferPointer { network.state.copy(from: $0) }
  }
}
