import FeatureStore
import HDF5
import XCTest
import _TestSupport

/// evaluate, predict and report on a trained run: they agree with each other, and bad input is a clear error.
final class UseCommandTests: XCTestCase {
  func testEvaluateAndPredictAgreeAndReportRenders() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "5"], directory: dir).status, 0)
    XCTAssertEqual(
      try runCommand(["extract", "corpus", "-o", "f.h5", "--augment", "original,noise", "-q"], directory: dir).status, 0
    )
    let train = try runCommand(
      [
        "train", "--data", "f.h5", "--model", "tiny", "--epochs", "4", "--batch-size", "16", "--learning-rate", "0.01",
        "--val-fraction", "0.2", "--test-fraction", "0.2", "--run-dir", "run",
      ], directory: dir)
    XCTAssertEqual(train.status, 0, train.stderr)
    XCTAssertTrue(train.stdout.contains("test split") && train.stdout.contains("weighted avg"), train.stdout)
    XCTAssertTrue(train.stdout.contains("report: run/report.html"), train.stdout)
    let html = try String(contentsOfFile: dir + "/run/report.html", encoding: .utf8)
    XCTAssertTrue(html.contains("<svg") && html.contains("Confusion matrix") && html.contains("Learning rate"))
    for fact in [
      "tiny: 3,651 parameters", "Adam, learning rate 0.01, batch 16", "split</th><td>by recording: train",
      "evaluated</th><td>the run's final weights, ", "<th>speaker</th><th>accuracy</th>", "% of the row",
    ] {
      XCTAssertTrue(html.contains(fact), "report.html lacks \(fact)")
    }

    // evaluate --json against predict --csv on the same test rows.
    let e = try runCommand(["evaluate", "--checkpoint", "run/checkpoint-last.h5", "--json"], directory: dir)
    XCTAssertEqual(e.status, 0, e.stderr)
    let evaluation = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as! [String: Any]
    let p = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--features", "f.h5", "--split", "test", "--csv"],
      directory: dir)
    XCTAssertEqual(p.status, 0, p.stderr)
    let lines = p.stdout.split(separator: "\n")
    XCTAssertEqual(
      lines.first,
      "path_or_row,emotion,angry,disgust,fear,happy,neutral,sad,surprise,path,truth,augmentation,error,warning")
    let file = try FeatureFile(path: dir + "/f.h5")
    var correct = 0
    for line in lines.dropFirst() {
      let cells = line.split(separator: ",")
      let row = Int(cells[0])!
      if String(cells[1]) == file.classes[Int(file.labels[row])] { correct += 1 }
    }
    XCTAssertEqual(evaluation["rows"] as? Int, lines.count - 1)
    XCTAssertEqual(evaluation["accuracy"] as! Double, Double(correct) / Double(lines.count - 1), accuracy: 1e-12)

    // Audio files: a table, JSON; an unreadable file is a clear error.
    let audio = ["corpus/Synth/S1_00_angry.wav", "corpus/Synth/S2_01_sad.wav", "corpus/Synth/S1_02_fear.wav"]
    let table = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5"] + audio, directory: dir)
    XCTAssertEqual(table.status, 0, table.stderr)
    XCTAssertEqual(table.stdout.split(separator: "\n").count, 4, table.stdout)
    let json = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5", "--json"] + audio, directory: dir)
    let predictions = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [[String: Any]]
    XCTAssertEqual(predictions.count, 3)
    let probabilities = predictions[0]["probabilities"] as! [String: Double]
    XCTAssertEqual(probabilities.values.reduce(0, +), 1, accuracy: 1e-5)
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/notes.wav", contents: Data("text".utf8)))
    // A bad file among good ones: every file gets its line, the good ones their prediction; exit 1.
    let bad = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", audio[0], "notes.wav", audio[1]], directory: dir)
    XCTAssertEqual(bad.status, 1)
    let badLines = bad.stdout.split(separator: "\n")
    XCTAssertEqual(badLines.count, 4, bad.stdout)
    XCTAssertTrue(badLines[2].hasPrefix("notes.wav") && badLines[2].contains("error: "), bad.stdout)
    XCTAssertTrue(badLines[1].hasPrefix(audio[0]) && badLines[3].hasPrefix(audio[1]), bad.stdout)
    XCTAssertEqual(badLines[1], table.stdout.split(separator: "\n")[1])
    XCTAssertTrue(bad.stderr.contains("1 of 3") && bad.stderr.contains("notes.wav"), bad.stderr)
    // Stored rows show their recording, true class and augmentation.
    let stored = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--features", "f.h5", "--split", "test"], directory: dir)
    XCTAssertEqual(stored.status, 0, stored.stderr)
    let first = stored.stdout.split(separator: "\n")[1].split(separator: " ", omittingEmptySubsequences: true)
    let row = Int(first[0])!
    XCTAssertEqual(String(first[1]), file.classes[Int(file.labels[row])], stored.stdout)
    XCTAssertEqual(String(first[2]), ["original", "noise"][Int(file.augmentation[row])], stored.stdout)
    XCTAssertTrue(first.last!.hasPrefix("Synth/"), stored.stdout)
    let other = try runCommand(["report", "run", "--split", "val"], directory: dir)
    XCTAssertEqual(other.status, 0, other.stderr)
    XCTAssertTrue(other.stdout.contains("wrote run/report-val.html"), other.stdout)
    XCTAssertEqual(try String(contentsOfFile: dir + "/run/report.html", encoding: .utf8), html, "report.html kept")
    let named = try runCommand(["report", "run", "-o", "page.html"], directory: dir)
    XCTAssertTrue(named.status == 0 && FileManager.default.fileExists(atPath: dir + "/page.html"), named.stderr)
    let report = try runCommand(["report", "run"], directory: dir)
    XCTAssertEqual(report.status, 0, report.stderr)
    let usage = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5"], directory: dir)
    XCTAssertEqual(usage.status, 2)
  }
}
