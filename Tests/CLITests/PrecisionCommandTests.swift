import ConvNet
import Foundation
import ModelFiles
import XCTest
import _TestSupport

/// `--precision` from the command line: bf16 trains, resumes (in either precision), evaluates and predicts with float
/// checkpoints where the CPU has the units; elsewhere it is refused with the reason and `auto` means fp32.
extension TrainCommandTests {
  /// A model whose convolutions the bfloat16 kernels take (32 and 64 filters).
  static let bf16Spec = """
    {"name": "wide", "input_length": 96, "layers": [
      {"type": "Conv1D", "filters": 32, "kernel_size": 5, "activation": "relu"}, {"type": "BatchNormalization"},
      {"type": "MaxPooling1D", "pool_size": 2, "strides": 2},
      {"type": "Conv1D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
      {"type": "MaxPooling1D", "pool_size": 2, "strides": 2}, {"type": "Flatten"}, {"type": "Dense", "activation": "softmax"}]}
    """

  func recordedPrecision(_ dir: String) throws -> String? {
    let text = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
    return text.firstMatch(of: #/"precision" : "([a-z0-9]+)"/#).map { String($0.1) }
  }

  func testPrecisionFromTheCommandLine() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 30, noise: 0.3)
    try Self.bf16Spec.write(toFile: dir + "/wide.json", atomically: true, encoding: .utf8)
    let train = ["train", "--data", "f.h5", "--model", "wide.json", "--epochs", "2", "-q"]
    guard Precision.bf16Runs else {
      let refused = try runCommand(train + ["--run-dir", "b", "--precision", "bf16"], directory: dir)
      XCTAssertNotEqual(refused.status, 0)
      XCTAssertTrue(refused.stderr.contains("AVX512-BF16"), refused.stderr)
      XCTAssertEqual(try runCommand(train + ["--run-dir", "a", "--precision", "auto"], directory: dir).status, 0)
      XCTAssertEqual(try recordedPrecision(dir + "/a"), "fp32")
      throw XCTSkip("this CPU has no AVX512-BF16: bf16 refused and auto is fp32, as they should be")
    }
    for (run, precision) in [("b", "bf16"), ("f", "fp32")] {
      let r = try runCommand(train + ["--run-dir", run, "--precision", precision], directory: dir)
      XCTAssertEqual(r.status, 0, r.stderr)
      XCTAssertEqual(try recordedPrecision(dir + "/" + run), precision)
    }
    let (b, f) = (
      try Checkpoint.read(dir + "/b/checkpoint-last.h5"), try Checkpoint.read(dir + "/f/checkpoint-last.h5")
    )
    XCTAssertNotEqual(b.parameters, f.parameters, "bf16 changes the arithmetic")
    XCTAssertTrue(b.parameters.allSatisfy(\.isFinite))
    // Close to fp32 after the same steps: bfloat16 rounding, not another run.
    let relative =
      zip(b.parameters, f.parameters).map { Double(($0 - $1) * ($0 - $1)) }.reduce(0, +).squareRoot()
      / f.parameters.map { Double($0 * $0) }.reduce(0, +).squareRoot()
    XCTAssertLessThan(relative, 0.05)
    // The first line says it; a resume keeps bf16 unless told, and switches when told.
    let verbose = try runCommand(
      ["train", "--data", "f.h5", "--run-dir", "b", "--resume", "auto", "--epochs", "3"], directory: dir)
    XCTAssertEqual(verbose.status, 0, verbose.stderr)
    XCTAssertTrue(verbose.stdout.contains("bf16 convolutions"), verbose.stdout)
    XCTAssertEqual(try recordedPrecision(dir + "/b"), "bf16")
    let switched = try runCommand(
      ["train", "--data", "f.h5", "--run-dir", "b", "--resume", "auto", "--epochs", "4", "--precision", "fp32", "-q"],
      directory: dir)
    XCTAssertEqual(switched.status, 0, switched.stderr)
    XCTAssertEqual(try recordedPrecision(dir + "/b"), "fp32")
    // evaluate and predict in either precision on the same float checkpoint.
    func evaluation(_ precision: String) throws -> (accuracy: Double, loss: Double) {
      let r = try runCommand(
        ["evaluate", "--checkpoint", "b/checkpoint-last.h5", "--precision", precision, "--json"], directory: dir)
      XCTAssertEqual(r.status, 0, r.stderr)
      let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
      return (try XCTUnwrap(json["accuracy"] as? Double), try XCTUnwrap(json["loss"] as? Double))
    }
    let (e16, e32) = (try evaluation("bf16"), try evaluation("fp32"))
    XCTAssertEqual(e16.loss, e32.loss, accuracy: 0.02 * e32.loss)
    XCTAssertEqual(e16.accuracy, e32.accuracy, accuracy: 0.05)
    let predicted = try runCommand(
      ["predict", "--checkpoint", "b/checkpoint-last.h5", "--features", "f.h5", "--precision", "bf16", "--csv"],
      directory: dir)
    XCTAssertEqual(predicted.status, 0, predicted.stderr)
    XCTAssertEqual(predicted.stdout.split(separator: "\n").count, 1 + 120)
    let exported = try runCommand(["export-keras", "b/checkpoint-last.h5", "-o", "b.weights.h5"], directory: dir)
    XCTAssertEqual(exported.status, 0, exported.stderr)
  }
}
