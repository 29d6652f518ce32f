import FeatureStore
import Foundation
import XCTest
import _TestSupport

final class ConvertCommandTests: XCTestCase {
  func makeCSV(_ path: String, rows: Int, width: Int) {
    var rng = TestRNG(seed: 9)
    var text = (0..<width).map(String.init).joined(separator: ",") + ",labels\n"
    let names = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    for r in 0..<rows {
      text += (0..<width).map { _ in "\(rng.normal())" }.joined(separator: ",") + "," + names[r % 7] + "\n"
    }
    _ = FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
  }

  func testConvertThenInspect() throws {
    let dir = temporaryDirectory(self)
    makeCSV(dir + "/features.csv", rows: 28, width: 2376)
    let r = try runCommand(
      ["convert", "features.csv", "-o", "features.h5", "--rows-per-recording", "4"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("converted 28 rows x 2376 features, 7 classes, 7 recordings"), r.stdout)
    let i = try runCommand(["inspect", "features.h5"], directory: dir)
    XCTAssertEqual(i.status, 0, i.stderr)
    for s in ["28 x 2376", "recordings    7 (4 rows each)", "surprise", "original 7", "pitch+noise 7"] {
      XCTAssertTrue(i.stdout.contains(s), "inspect lacks '\(s)':\n\(i.stdout)")
    }
    // Again without --force: refused, exit 1, the file intact.
    let again = try runCommand(["convert", "features.csv", "-o", "features.h5"], directory: dir)
    XCTAssertEqual(again.status, 1)
    XCTAssertTrue(again.stderr.contains("already exists"), again.stderr)
    XCTAssertEqual(try FeatureFile(path: dir + "/features.h5").rowCount, 28)
  }

  /// A NUL in a label is an error naming the line (it cut the label to a new class), and one in a number is shown
  /// escaped (it cut the message).
  func testControlCharactersInCellsAreErrors() throws {
    let dir = temporaryDirectory(self)
    let header = "0,1,labels\n"
    for (name, row, expected) in [
      ("label.csv", "0.5,0.25,hap\u{0}py\n", "control character"),
      ("number.csv", "0.5,0.2\u{0}5,happy\n", "0.2\\u{0}5"),
    ] {
      let text = header + "0.1,0.2,sad\n" + row + "0.3,0.4,sad\n"
      XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/" + name, contents: Data(text.utf8)))
      let r = try runCommand(["convert", name, "-o", name + ".h5"], directory: dir)
      XCTAssertEqual(r.status, 1, r.stdout)
      XCTAssertTrue(r.stderr.contains("\(name):3:") && r.stderr.contains(expected), r.stderr)
      XCTAssertTrue(r.stderr.hasSuffix("\n"), "the message is whole: \(r.stderr)")
      XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/" + name + ".h5"))
    }
  }

  func testUsageErrorsExitWithTwo() throws {
    let r = try runCommand(["convert"])
    XCTAssertEqual(r.status, 2, r.stderr)
    let bad = try runCommand(["convert", "x.csv", "--rows-per-recording", "0"])
    XCTAssertEqual(bad.status, 2, bad.stderr)
  }

  /// A disk that fills: the file-size limit makes write(2) fail with EFBIG as ENOSPC would.
  func testAFullDiskGivesAClearErrorAndNoHalfFile() throws {
    let dir = temporaryDirectory(self)
    makeCSV(dir + "/big.csv", rows: 300, width: 2376)
    let r = try bash(
      "trap '' XFSZ; ulimit -f 512; exec '\(sertrainBinary)' convert big.csv -o out.h5", directory: dir)
    XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
    XCTAssertTrue(r.stderr.contains("out.h5: not written") && r.stderr.contains("failed"), r.stderr)
    XCTAssertFalse(r.stderr.contains(".tmp-"), "the message names the file asked for: \(r.stderr)")
    // One line that says it, not HDF5's diagnostic stack (printed from the writer thread).
    XCTAssertFalse(r.stderr.contains("HDF5-DIAG"), r.stderr)
    XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
    let left = try FileManager.default.contentsOfDirectory(atPath: dir)
    XCTAssertEqual(left, ["big.csv"], "no output and no temporary file is left")
  }

  func testInspectRejectsOtherFiles() throws {
    let dir = temporaryDirectory(self)
    _ = FileManager.default.createFile(atPath: dir + "/x.txt", contents: Data("hi".utf8))
    let r = try runCommand(["inspect", dir + "/x.txt"])
    XCTAssertEqual(r.status, 1)
    XCTAssertTrue(r.stderr.contains("not an HDF5 file"), r.stderr)
  }
}
