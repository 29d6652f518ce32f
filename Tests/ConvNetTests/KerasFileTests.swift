import ConvNet
import HDF5
import ModelFiles
import XCTest
import _TestSupport

/// Keras weight files: the shared reference files import to Keras's own inference numbers, export then import
/// round-trips bit for bit, and files of another architecture or damaged files fail clearly.
final class KerasFileTests: XCTestCase {
  var small: (x: [Float], probs: [Float]) {
    get throws {
      let f = try H5File(path: try requireShared("reference/keras-golden.h5"))
      return (try f.read("small/x"), try f.read("small/probs_infer_initial"))
    }
  }

  let smallSpec = ModelSpec.blocks(
    name: "small", inputLength: 37, filters: [6, 5, 4, 3, 2], kernels: [5, 5, 5, 3, 3], pools: [5, 5, 5, 5, 3],
    dense: 9)

  func infer(_ network: Network, _ x: [Float]) -> [Float] {
    x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: 5, training: false)) }
  }

  func testLegacyFileImportsWithItsModelConfig() throws {
    let path = try requireShared("reference/keras-small-legacy.h5")
    let weights = try KerasWeights.read(path)
    XCTAssertEqual(weights.format, .legacy)
    let spec = try XCTUnwrap(weights.spec, "the architecture comes from model_config")
    XCTAssertEqual(spec.inputLength, 37)
    let network = try Network(spec: spec, classes: 3)
    XCTAssertEqual(network.plans.map(\.name), try Network(spec: smallSpec, classes: 3).plans.map(\.name))
    try weights.apply(to: network, path: path)
    let (x, probs) = try small
    assertClose(infer(network, x), probs, rtol: 1e-5, atol: 1e-6, "legacy import")
  }

  func testKeras3WeightsImportWithAGivenSpec() throws {
    let path = try requireShared("reference/keras-small.weights.h5")
    let weights = try KerasWeights.read(path)
    XCTAssertEqual(weights.format, .keras3)
    XCTAssertNil(weights.spec)
    let network = try Network(spec: smallSpec, classes: 3)
    try weights.apply(to: network, path: path)
    let (x, probs) = try small
    assertClose(infer(network, x), probs, rtol: 1e-5, atol: 1e-6, "Keras 3 import")
  }

  func testExportThenImportRoundTripsBitForBit() throws {
    let dir = temporaryDirectory(self)
    let network = try Network(spec: smallSpec, classes: 3, seed: 9)
    for i in 0..<network.state.count { network.state.pointer[i] = Float(i) * 0.37 + 0.5 }
    for name in ["model.weights.h5", "model.h5"] {
      let path = dir + "/" + name
      try KerasWeights.write(network, to: path, overwrite: false)
      let weights = try KerasWeights.read(path)
      let back = try Network(spec: weights.spec ?? smallSpec, classes: 3, seed: 1)
      try weights.apply(to: back, path: path)
      XCTAssertEqual(back.parameters.array, network.parameters.array, name)
      XCTAssertEqual(back.state.array, network.state.array, name)
      XCTAssertThrowsError(try KerasWeights.write(network, to: path, overwrite: false), "refuses to overwrite")
    }
  }

  func testAnotherArchitectureIsRejectedByName() throws {
    let path = try requireShared("reference/keras-small.weights.h5")
    let network = try Network(spec: .seed(), classes: 3)
    XCTAssertThrowsError(try KerasWeights.read(path).apply(to: network, path: path)) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains("conv1"), message)
      XCTAssertTrue(message.contains("[5, 1, 6]") && message.contains("[5, 1, 512]"), message)
    }
    // Fewer layers in the model than in the file.
    let shorter = ModelSpec(
      name: "short", inputLength: 37,
      layers: [.conv1D(6, kernel: 5), .batchNormalization(), .flatten(), .dense(nil, activation: .softmax)])
    XCTAssertThrowsError(try KerasWeights.read(path).apply(to: try Network(spec: shorter, classes: 3), path: path)) {
      XCTAssertTrue("\($0)".contains("shape") || "\($0)".contains("lacks"), "\($0)")
    }
  }

  func testDamagedFilesFailClearly() throws {
    let dir = temporaryDirectory(self)
    let source = try requireShared("reference/keras-small-legacy.h5")
    let bytes = try XCTUnwrap(FileManager.default.contents(atPath: source))
    let truncated = dir + "/truncated.h5"
    XCTAssertTrue(FileManager.default.createFile(atPath: truncated, contents: bytes.prefix(bytes.count / 2)))
    XCTAssertThrowsError(try KerasWeights.read(truncated)) { XCTAssertTrue("\($0)".contains(truncated), "\($0)") }
    let text = dir + "/notes.h5"
    XCTAssertTrue(FileManager.default.createFile(atPath: text, contents: Data("not hdf5".utf8)))
    XCTAssertThrowsError(try KerasWeights.read(text)) {
      XCTAssertTrue("\($0)".contains("not a readable HDF5 file"), "\($0)")
    }
    let other = dir + "/other.h5"
    let f = try H5File(creating: other)
    _ = try f.write("something", [Float(1)])
    try f.close()
    XCTAssertThrowsError(try KerasWeights.read(other)) { XCTAssertTrue("\($0)".contains("neither"), "\($0)") }
  }
}

/// Specs: the presets' sizes, and clear errors for inconsistent ones.
final class ModelSpecTests: XCTestCase {
  func testSeedHasKerasParameterCounts() throws {
    let network = try Network(spec: .seed(), classes: 7)
    XCTAssertEqual(network.trainableCount + network.nonTrainableCount, 7_193_223)
    XCTAssertEqual(network.trainableCount, 7_188_871)
    XCTAssertEqual(network.nonTrainableCount, 4_352)
    let text = summary(network)
    XCTAssertTrue(text.contains("Total params: 7,193,223"), text)
    XCTAssertTrue(text.contains("Trainable params: 7,188,871"), text)
    XCTAssertTrue(text.contains("Non-trainable params: 4,352"), text)
    XCTAssertTrue(text.contains("(None, 75, 128)") && text.contains("(None, 9600)"), text)
    let tiny = try Network(spec: .tiny(), classes: 7)
    XCTAssertLessThan(tiny.trainableCount + tiny.nonTrainableCount, 10_000)
  }

  func testJSONRoundTripAndKerasVocabulary() throws {
    let json = """
      {"name": "mine", "input_length": 40, "layers": [
        {"type": "Conv1D", "filters": 4, "kernel_size": 3, "activation": "relu"},
        {"type": "batch_normalization"}, {"type": "MaxPooling1D", "pool_size": 3, "strides": 2},
        {"type": "Dropout", "rate": 0.1}, {"type": "Flatten"}, {"type": "Dense", "activation": "softmax"}]}
      """
    let spec = try ModelSpec.decode(Array(json.utf8))
    XCTAssertEqual(spec.layers.count, 6)
    let plans = try spec.plan(classes: 5)
    XCTAssertEqual(plans.last!.outputChannels, 5)
    XCTAssertEqual(plans[2].outputLength, 20)
    XCTAssertEqual(try ModelSpec.decode(Array(spec.encoded().utf8)), spec)
  }

  func testInconsistentSpecsNameTheLayer() {
    func message(_ layers: [LayerSpec], classes: Int = 3) -> String {
      do {
        _ = try ModelSpec(name: "bad", inputLength: 20, layers: layers).plan(classes: classes)
        return "no error"
      } catch { return "\(error)" }
    }
    let noFlatten = message([.conv1D(4, kernel: 3), .dense(nil, activation: .softmax)])
    XCTAssertTrue(noFlatten.contains("layer 2 (dense1, Dense)") && noFlatten.contains("Flatten"), noFlatten)
    let wrongClasses = message([.flatten(), .dense(5, activation: .softmax)])
    XCTAssertTrue(wrongClasses.contains("5 units") && wrongClasses.contains("3 classes"), wrongClasses)
    let noSoftmax = message([.flatten(), .dense(3, activation: .relu)])
    XCTAssertTrue(noSoftmax.contains("last layer must be Dense with softmax"), noSoftmax)
    let badPool = message([.maxPooling1D(0), .flatten(), .dense(nil, activation: .softmax)])
    XCTAssertTrue(badPool.contains("pool_size"), badPool)
    // Sizes no machine holds are errors before any allocation (they trapped in FloatBuffer), even past Int's range.
    let huge = message([.conv1D(100_000_000, kernel: 5), .flatten(), .dense(nil, activation: .softmax)])
    XCTAssertTrue(huge.contains("layer 1 (conv1, Conv1D)") && huge.contains("at most"), huge)
    let enormous = message([
      .conv1D(1 << 40, kernel: 1 << 30), .conv1D(1 << 40, kernel: 3), .flatten(), .dense(nil, activation: .softmax),
    ])
    XCTAssertTrue(enormous.contains("layer 1") && enormous.contains("at most"), enormous)
    XCTAssertThrowsError(try ModelSpec.decode(Array(#"{"layers": [{"type": "LSTM"}]}"#.utf8))) {
      XCTAssertTrue("\($0)".contains("unknown layer type 'LSTM'"), "\($0)")
    }
    XCTAssertThrowsError(try ModelSpec.load("/no/such/spec.json")) {
      XCTAssertTrue("\($0)".contains("/no/such/spec.json"), "\($0)")
    }
  }

  /// Specs with numbers a damaged file or a careless hand may give (zero, negative, huge, past Int's range):
  /// each is an error that names the problem, or a network that builds and runs forward; never a trap.
  /// `SERTRAIN_FUZZ` sets the cases (default 400).
  func testMutatedSpecsFailOrBuild() throws {
    let cases = Int(ProcessInfo.processInfo.environment["SERTRAIN_FUZZ"] ?? "") ?? 400
    var rng = TestRNG(seed: 17)
    let text = ModelSpec.tiny(inputLength: 40).encoded()
    let numbers = text.matches(of: try Regex("-?[0-9]+(\\.[0-9]+)?(e-?[0-9]+)?")).map(\.range)
    let values = ["0", "-1", "1", "2", "7", "1000", "100000000", "2147483648", "9223372036854775807", "1e300", "0.5"]
    var (built, refused) = (0, 0)
    for _ in 0..<cases {
      var mutated = text
      for _ in 0...(rng.next() % 3) {
        let r = numbers[Int(rng.next() % UInt64(numbers.count))]
        let value = values[Int(rng.next() % UInt64(values.count))]
        mutated = String(text[..<r.lowerBound]) + value + String(text[r.upperBound...])
      }
      do {
        let spec = try ModelSpec.decode(Array(mutated.utf8))
        _ = try spec.plan(classes: 3)
        let network = try Network(spec: spec, classes: 3)
        let x = [Float](repeating: 0.5, count: 2 * network.inputWidth)
        x.withUnsafeBufferPointer { _ = network.forward($0.baseAddress!, batch: 2, training: true) }
        built += 1
      } catch {
        refused += 1
        XCTAssertFalse("\(error)".isEmpty)
      }
    }
    print("fuzz specs: \(cases) cases, \(built) built and ran, \(refused) clear errors")
  }

  /// NaN in the input reaches the loss (the training loop stops on a non-finite loss).
  func testNaNInputGivesANonFiniteLoss() throws {
    let network = try Network(spec: .tiny(inputLength: 50), classes: 3)
    var x = [Float](repeating: 0.5, count: 2 * 50)
    x[7] = .nan
    x.withUnsafeBufferPointer { _ = network.forward($0.baseAddress!, batch: 2, training: true) }
    let loss = [Int32(0), 1].withUnsafeBufferPointer { network.loss(labels: $0).sum }
    XCTAssertFalse(loss.isFinite)
  }
}
