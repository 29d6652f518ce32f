import ConvNet
import HDF5
import XCTest
import _TestSupport

/// The Keras reference numbers of `../shared/reference/keras-golden.h5` (made by `make_keras_golden.py`).
final class KerasGoldenTests: XCTestCase {
  struct Golden {
    let file: H5File
    let group: String
    let network: Network
    let x: [Float]
    let labels: [Int32]
    let batch: Int

    /// A group of `../shared/reference/keras-golden.h5` (the seed's layer types, their sizes in its `config`), or
    /// of the project's own `Tests/Oracles/keras-frames-golden.h5` (`frames`: the frames model's layers, its sertrain
    /// spec in `spec`).
    init(_ group: String, frames: Bool = false) throws {
      file = try H5File(
        path: frames
          ? packageRoot + "/Tests/Oracles/keras-frames-golden.h5" : try requireShared("reference/keras-golden.h5"))
      self.group = group
      let g = try file.openGroup(group)
      if frames {
        let spec = try ModelSpec.decode(Array(try g.stringAttribute("spec").utf8))
        network = try Network(spec: spec, classes: 3)
        x = try file.read("\(group)/x")
        labels = try file.read("\(group)/labels", as: Int64.self).map { Int32($0) }
        batch = labels.count
        try load("initial")
        return
      }
      let config = try g.stringAttribute("config")
      func ints(_ key: String) -> [Int] {
        let start = config.firstRange(of: "\"\(key)\": [")!.upperBound
        let end = config[start...].firstIndex(of: "]")!
        return config[start..<end].split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
      }
      func int(_ key: String) -> Int {
        let start = config.firstRange(of: "\"\(key)\": ")!.upperBound
        return Int(config[start...].prefix { $0.isNumber })!
      }
      let spec = ModelSpec.blocks(
        name: group, inputLength: int("length"), filters: ints("filters"), kernels: ints("kernels"),
        pools: ints("pools"), dense: int("dense"))
      network = try Network(spec: spec, classes: int("classes"))
      x = try file.read("\(group)/x")
      labels = try file.read("\(group)/labels", as: Int64.self).map { Int32($0) }
      batch = labels.count
      try load("initial")
    }

    /// Sets every variable from `<group>/<prefix>/<layer>/<variable>`.
    func load(_ prefix: String) throws {
      for (_, name, _) in network.variablesInLayerOrder {
        let values: [Float] = try file.read("\(group)/\(prefix)/\(name)")
        let dst = network.variable(name)!
        XCTAssertEqual(values.count, dst.count, name)
        for i in 0..<dst.count { dst[i] = values[i] }
      }
    }

    func read(_ path: String) throws -> [Float] { try file.read("\(group)/\(path)") }

    func forward(training: Bool) -> [Float] {
      x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: batch, training: training)) }
    }

    func trainStep(_ adam: Adam) -> Double {
      _ = forward(training: true)
      let loss = labels.withUnsafeBufferPointer { network.loss(labels: $0).sum } / Double(batch)
      labels.withUnsafeBufferPointer { network.backward(labels: $0, scale: 1 / Float(batch)) }
      adam.update(network.parameters, network.gradients)
      return loss
    }
  }

  /// Training-mode probabilities, loss and every gradient against Keras, with `gradientTolerance` relative to
  /// each tensor's largest value.
  @discardableResult
  func checkForwardAndGradients(
    _ golden: Golden, probabilityTolerance: Float, gradientTolerance: Float
  ) throws -> (probs: [Float], loss: Double) {
    let probs = golden.forward(training: true)
    assertClose(
      probs, try golden.read("probs_train"), rtol: probabilityTolerance, atol: 1e-6, "\(golden.group) probs_train")
    let loss = golden.labels.withUnsafeBufferPointer { golden.network.loss(labels: $0).sum } / Double(golden.batch)
    let kerasLoss: [Double] = try golden.file.read("\(golden.group)/loss")
    XCTAssertEqual(
      loss, kerasLoss[0], accuracy: Double(probabilityTolerance) * abs(kerasLoss[0]), "\(golden.group) loss")
    golden.labels.withUnsafeBufferPointer { golden.network.backward(labels: $0, scale: 1 / Float(golden.batch)) }
    for view in golden.network.parameterLayout.views {
      let ours = Array(golden.network.gradient(view.name)!)
      let keras = try golden.read("grads/\(view.name)")
      let error = relativeToMax(ours, keras)
      XCTAssertLessThan(
        error, gradientTolerance, "\(golden.group) gradient \(view.name): error \(error) of its largest value")
    }
    return (probs, loss)
  }

  func testSmallForwardLossAndGradients() throws {
    try checkForwardAndGradients(try Golden("small"), probabilityTolerance: 1e-5, gradientTolerance: 1e-4)
  }

  func testSmallInferenceWithInitialWeights() throws {
    let golden = try Golden("small")
    assertClose(
      golden.forward(training: false), try golden.read("probs_infer_initial"), rtol: 1e-5, atol: 1e-6,
      "probs_infer_initial")
  }

  /// Reshape, GlobalAveragePooling1D and GlobalMaxPooling1D in models of the frames preset's shape: forward,
  /// gradients, three Adam steps and inference against Keras, within the seed layers' tolerances.
  func testFramesLayersMatchKeras() throws {
    for group in ["avg", "max"] {
      try checkForwardAndGradients(try Golden(group, frames: true), probabilityTolerance: 1e-5, gradientTolerance: 1e-4)
      let golden = try Golden(group, frames: true)
      assertClose(
        golden.forward(training: false), try golden.read("probs_infer_initial"), rtol: 1e-5, atol: 1e-6,
        "\(group) probs_infer_initial")
      try adamStepsMatchKeras(golden)
    }
  }

  func testSmallAdamStepsMatchKeras() throws { try adamStepsMatchKeras(try Golden("small")) }

  func adamStepsMatchKeras(_ golden: Golden) throws {
    let adam = Adam(count: golden.network.parameters.count)
    let kerasLosses: [Double] = try golden.file.read("\(golden.group)/losses")
    for step in 1...3 {
      let loss = golden.trainStep(adam)
      XCTAssertEqual(
        loss, kerasLosses[step - 1], accuracy: 1e-5 * kerasLosses[step - 1], "\(golden.group) loss at step \(step)")
      guard step == 1 || step == 3 else { continue }
      for (_, name, _) in golden.network.variablesInLayerOrder {
        let ours = Array(golden.network.variable(name)!)
        let keras = try golden.read("step\(step)/\(name)")
        assertClose(ours, keras, rtol: 1e-4, atol: 1e-6, "\(golden.group) step \(step) \(name)")
      }
    }
    assertClose(
      golden.forward(training: false), try golden.read("probs_infer"), rtol: 1e-4, atol: 1e-6,
      "\(golden.group) probs_infer")
  }

  /// The seed model in training mode at batch 4 is ill-conditioned (BatchNorm over channels with variance down to
  /// 6e-6, a Dense unit dead on every row): TensorFlow's own float32 gradients differ from exact (float64) ones by
  /// up to 3.2% of a tensor's largest value, and its probabilities by 7e-5 (`Tests/Oracles/make_seed_float64.py`
  /// measured both). So against the float32 golden file the tolerances are those measured distances, and the
  /// implementation's own error is held to the README's 1e-4 against the float64 oracle that script writes.
  func testSeedForwardLossAndGradients() throws {
    let golden = try Golden("seed")
    let (probs, loss) = try checkForwardAndGradients(golden, probabilityTolerance: 1.5e-4, gradientTolerance: 4e-2)
    let oracle = try H5File(path: packageRoot + "/Tests/Oracles/seed-float64.h5")
    let exactProbs: [Double] = try oracle.read("probs_train")
    assertClose(probs, exactProbs.map { Float($0) }, rtol: 3e-5, atol: 1e-6, "seed probs_train vs float64")
    let exactLoss: [Double] = try oracle.read("loss")
    XCTAssertEqual(loss, exactLoss[0], accuracy: 1e-5 * exactLoss[0], "seed loss vs float64")
    for view in golden.network.parameterLayout.views {
      let index: [Int64] = try oracle.read("grads/\(view.name)/index")
      let value: [Double] = try oracle.read("grads/\(view.name)/value")
      let maxAbs: [Double] = try oracle.read("grads/\(view.name)/max_abs")
      let ours = golden.network.gradient(view.name)!
      var worst = 0.0
      for (i, v) in zip(index, value) { worst = max(worst, abs(Double(ours[Int(i)]) - v)) }
      XCTAssertLessThan(worst / maxAbs[0], 1e-4, "seed gradient \(view.name) vs float64")
    }
    let adam = Adam(count: golden.network.parameters.count)
    adam.update(golden.network.parameters, golden.network.gradients)
    let after = golden.forward(training: false)
    let exactAfter: [Double] = try oracle.read("probs_infer")
    assertClose(after, exactAfter.map { Float($0) }, rtol: 1e-4, atol: 1e-6, "seed probs_infer vs float64")
    assertClose(after, try golden.read("probs_infer"), rtol: 2e-3, atol: 1e-6, "seed probs_infer vs Keras")
  }

  func testSeedInference() throws {
    let golden = try Golden("seed")
    assertClose(
      golden.forward(training: false), try golden.read("probs_infer_initial"), rtol: 1e-5, atol: 1e-6,
      "seed probs_infer_initial")
  }
}
