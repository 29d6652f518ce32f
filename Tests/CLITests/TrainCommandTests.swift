import HDF5
import XCTest
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

/// `sertrain train` as a user runs it: learning, the run directory, stop and resume, a killed run.
final class TrainCommandTests: XCTestCase {
  /// 240 rows of 3 classes (noisy tones of different frequencies), 4 rows per recording, converted from a CSV.
  func makeFeatures(_ dir: String, recordings: Int = 60, width: Int = 96) throws {
    var rng = TestRNG(seed: 2)
    var csv = (0..<width).map(String.init).joined(separator: ",") + ",labels\n"
    for r in 0..<recordings {
      let c = r % 3
      for _ in 0..<4 {
        let row = (0..<width).map { t in
          String(format: "%.5f", sin(0.15 * Double((c + 1) * t)) + 0.6 * Double(rng.normal()))
        }
        csv += row.joined(separator: ",") + "," + ["angry", "calm", "sad"][c] + "\n"
      }
    }
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/f.csv", contents: Data(csv.utf8)))
    let r = try runCommand(["convert", "f.csv", "-o", "f.h5", "--rows-per-recording", "4"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
  }

  func parameters(_ path: String) throws -> [Float] { try H5File(path: path).read("parameters") }

  func testTinyModelLearnsAndWritesTheRunDirectory() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir)
    let r = try runCommand(
      [
        "train", "--data", "f.h5", "--model", "tiny", "--epochs", "10", "--batch-size", "16", "--run-dir", "run",
        "--val-fraction", "0.2", "--test-fraction", "0.1", "--learning-rate", "0.01",
      ], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("Epoch 1/10: loss"), r.stdout)
    for f in ["checkpoint-last.h5", "checkpoint-best.h5", "history.csv", "config.json"] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/run/\(f)"), f)
    }
    let (best, history) = try bestValidationAccuracy(dir + "/run")
    XCTAssertEqual(history.first, "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,end_time")
    XCTAssertGreaterThan(best, 0.7, "validation accuracy well above chance (1/3): \(history)")
    let inspect = try runCommand(["inspect", "run/checkpoint-last.h5"], directory: dir)
    XCTAssertTrue(inspect.stdout.contains("angry, calm, sad") && inspect.stdout.contains("standardise"), inspect.stdout)
  }

  /// SIGKILL at any moment leaves the last checkpoint readable; resuming redoes the epoch from its start and
  /// ends bit for bit where an uninterrupted run ends. SIGUSR1 stops at a step boundary with exit 75.
  func testKilledAndSignalledRunsResumeBitForBit() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir)
    let args = [
      "train", "--data", "f.h5", "--model", "tiny", "--epochs", "40", "--patience", "100", "--batch-size", "8", "-q",
    ]
    XCTAssertEqual(try runCommand(args + ["--run-dir", "straight"], directory: dir).status, 0)
    let expected = try parameters(dir + "/straight/checkpoint-last.h5")

    for (signal, run) in [(SIGKILL, "killed"), (SIGUSR1, "signalled")] {
      let script = """
        '\(sertrainBinary)' \(args.joined(separator: " ")) --run-dir \(run) & pid=$!
        while [ ! -f \(run)/checkpoint-last.h5 ]; do sleep 0.02; done
        sleep 0.2; kill -\(signal) $pid; wait $pid; echo "exit $?"
        """
      let r = try bash(script, directory: dir)
      XCTAssertTrue(r.stdout.contains(signal == SIGKILL ? "exit 137" : "exit 75"), "\(run): \(r.stdout) \(r.stderr)")
      let inspect = try runCommand(["inspect", "\(run)/checkpoint-last.h5"], directory: dir)
      XCTAssertEqual(inspect.status, 0, "the last checkpoint opens after \(run): \(inspect.stderr)")
      let resumed = try runCommand(args + ["--run-dir", run, "--resume", "auto"], directory: dir)
      XCTAssertEqual(resumed.status, 0, resumed.stderr)
      XCTAssertEqual(try parameters("\(dir)/\(run)/checkpoint-last.h5"), expected, "\(run) then resumed")
    }
  }

  func testBadSettingsAreClearErrors() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let monitor = try runCommand(
      ["train", "--data", "f.h5", "--model", "tiny", "--monitor", "val_acc", "--run-dir", "r"], directory: dir)
    XCTAssertEqual(monitor.status, 1)
    XCTAssertTrue(monitor.stderr.contains("'val_acc'") && monitor.stderr.contains("val_accuracy"), monitor.stderr)
    let speaker = try runCommand(
      ["train", "--data", "f.h5", "--model", "tiny", "--split", "speaker", "--run-dir", "r"], directory: dir)
    XCTAssertEqual(speaker.status, 1)
    XCTAssertTrue(speaker.stderr.contains("no speaker"), speaker.stderr)
    let missing = try runCommand(["train", "--data", "nope.h5", "--run-dir", "r"], directory: dir)
    XCTAssertEqual(missing.status, 1)
    XCTAssertTrue(missing.stderr.contains("nope.h5"), missing.stderr)
    let usage = try runCommand(["train", "--epochs", "0"], directory: dir)
    XCTAssertEqual(usage.status, 2)
  }
}
