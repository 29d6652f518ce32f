import HDF5
import XCTest
import _TestSupport

/// summary, import-keras, export-keras and inspect on checkpoints, as a user runs them.
final class ModelCommandTests: XCTestCase {
  func testSummaryPrintsKerasTotals() throws {
    let r = try runCommand(["summary"])
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("Total params: 7,193,223"), r.stdout)
    XCTAssertTrue(r.stdout.contains("Trainable params: 7,188,871"), r.stdout)
    XCTAssertTrue(r.stdout.contains("Non-trainable params: 4,352"), r.stdout)
    let tiny = try runCommand(["summary", "--model", "tiny", "--classes", "4"])
    XCTAssertEqual(tiny.status, 0, tiny.stderr)
    XCTAssertTrue(tiny.stdout.contains("dense2 (Dense)") && tiny.stdout.contains("(None, 4)"), tiny.stdout)
    let missing = try runCommand(["summary", "--model", "nope.json"])
    XCTAssertEqual(missing.status, 1)
    XCTAssertTrue(missing.stderr.contains("nope.json"), missing.stderr)
  }

  func testImportExportAndInspect() throws {
    let dir = temporaryDirectory(self)
    let legacy = try requireShared("reference/keras-small-legacy.h5")
    let imported = try runCommand(
      ["import-keras", legacy, "-o", "small.h5", "--classes", "calm,happy,sad"], directory: dir)
    XCTAssertEqual(imported.status, 0, imported.stderr)
    XCTAssertTrue(
      imported.stderr.contains("no input standardisation") && imported.stderr.contains("--scaler"), imported.stderr)
    let inspect = try runCommand(["inspect", "small.h5"], directory: dir)
    XCTAssertEqual(inspect.status, 0, inspect.stderr)
    XCTAssertTrue(inspect.stdout.contains("sertrain checkpoint") && inspect.stdout.contains("calm, happy, sad"))
    XCTAssertTrue(inspect.stdout.contains("545 parameters"), inspect.stdout)

    // Keras 3 weights carry no architecture: import them with the small model's spec as JSON.
    let spec = """
      {"name": "small", "input_length": 37, "layers": [
        {"type": "Conv1D", "filters": 6, "kernel_size": 5, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 5, "strides": 2},
        {"type": "Conv1D", "filters": 5, "kernel_size": 5, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 5, "strides": 2},
        {"type": "Conv1D", "filters": 4, "kernel_size": 5, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 5, "strides": 2},
        {"type": "Conv1D", "filters": 3, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 5, "strides": 2},
        {"type": "Conv1D", "filters": 2, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "MaxPooling1D", "pool_size": 3, "strides": 2},
        {"type": "Flatten"}, {"type": "Dense", "units": 9, "activation": "relu"}, {"type": "BatchNormalization"},
        {"type": "Dense", "activation": "softmax"}]}
      """
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/small.json", contents: Data(spec.utf8)))
    for out in ["back.weights.h5", "back.h5"] {
      let exported = try runCommand(["export-keras", "small.h5", "-o", out], directory: dir)
      XCTAssertEqual(exported.status, 0, exported.stderr)
    }
    let viaKeras3 = try runCommand(
      ["import-keras", "back.weights.h5", "-o", "again3.h5", "--classes", "calm,happy,sad", "--model", "small.json"],
      directory: dir)
    XCTAssertEqual(viaKeras3.status, 0, viaKeras3.stderr)
    // The legacy export carries model_config, so it imports without --model, bit for bit.
    let viaLegacy = try runCommand(
      ["import-keras", "back.h5", "-o", "again.h5", "--classes", "calm,happy,sad"], directory: dir)
    XCTAssertEqual(viaLegacy.status, 0, viaLegacy.stderr)
    let a = try H5File(path: dir + "/small.h5")
    let b = try H5File(path: dir + "/again.h5")
    XCTAssertEqual(try a.read("parameters", as: Float.self), try b.read("parameters", as: Float.self))
    XCTAssertEqual(try a.read("state", as: Float.self), try b.read("state", as: Float.self))
    let c = try H5File(path: dir + "/again3.h5")
    XCTAssertEqual(try a.read("parameters", as: Float.self), try c.read("parameters", as: Float.self))
    XCTAssertEqual(try a.read("state", as: Float.self), try c.read("state", as: Float.self))

    let refused = try runCommand(["export-keras", "small.h5", "-o", "back.h5"], directory: dir)
    XCTAssertEqual(refused.status, 1, "an existing output is refused without --force")
    let other = try runCommand(["export-keras", "small.h5", "-o", "m.pt"], directory: dir)
    XCTAssertEqual(other.status, 1)
    XCTAssertTrue(other.stderr.contains("m.pt") && other.stderr.contains(".keras"), other.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/m.pt"))
    // Keras 3's native archive carries the architecture and the class names: it imports bit for bit on its own
    // (Tests/Shell/keras.sh checks it in Keras 3 itself).
    XCTAssertEqual(try runCommand(["export-keras", "small.h5", "-o", "m.keras"], directory: dir).status, 0)
    let viaNative = try runCommand(["import-keras", "m.keras", "-o", "again-native.h5"], directory: dir)
    XCTAssertEqual(viaNative.status, 0, viaNative.stderr)
    let n = try H5File(path: dir + "/again-native.h5")
    XCTAssertEqual(try a.read("parameters", as: Float.self), try n.read("parameters", as: Float.self))
    XCTAssertEqual(try a.read("state", as: Float.self), try n.read("state", as: Float.self))
    XCTAssertEqual(try a.readStrings("class_names"), try n.readStrings("class_names"))
    let wrongCount = try runCommand(["import-keras", legacy, "-o", "x.h5", "--classes", "a,b"], directory: dir)
    XCTAssertNotEqual(wrongCount.status, 0)
    XCTAssertTrue(wrongCount.stderr.contains("3 units"), wrongCount.stderr)
    let wrongModel = try runCommand(["import-keras", legacy, "-o", "x.h5", "--model", "seed"], directory: dir)
    XCTAssertEqual(wrongModel.status, 1)
    XCTAssertTrue(wrongModel.stderr.contains("not the architecture of model 'seed'"), wrongModel.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/x.h5"), "nothing written on error")

    // --scaler fits the input standardisation on a feature file (and takes its classes).
    var csv = (0..<37).map(String.init).joined(separator: ",") + ",labels\n"
    for r in 0..<6 {
      csv += (0..<37).map { "\(r * 37 + $0)" }.joined(separator: ",") + ",\(["calm", "happy", "sad"][r % 3])\n"
    }
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/small.csv", contents: Data(csv.utf8)))
    XCTAssertEqual(try runCommand(["convert", "small.csv", "-o", "small-features.h5"], directory: dir).status, 0)
    let scaled = try runCommand(
      ["import-keras", legacy, "-o", "scaled.h5", "--scaler", "small-features.h5"], directory: dir)
    XCTAssertEqual(scaled.status, 0, scaled.stderr)
    let s = try H5File(path: dir + "/scaled.h5")
    let mean: [Float] = try s.read("scaler/mean")
    let scale: [Float] = try s.read("scaler/scale")
    XCTAssertEqual(mean[0], 92.5, accuracy: 1e-4, "column 0 holds 0, 37, ..., 185")
    let deviations: [Double] = (0..<6).map { Double($0 * 37) - 92.5 }
    let variance = deviations.map { $0 * $0 }.reduce(0, +) / 6
    XCTAssertEqual(Double(scale[0]), variance.squareRoot(), accuracy: 1e-3)
    XCTAssertEqual(try s.readStrings("class_names"), ["calm", "happy", "sad"])
  }
}
