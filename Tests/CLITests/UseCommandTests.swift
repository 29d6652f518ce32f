import AudioFeatures
import FeatureStore
import HDF5
import Training
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

/// `predict --windows`: every window of a long recording is read as a recording that starts there would be.
final class PredictWindowsTests: XCTestCase {
  func testWindowsFollowEachOtherFromTheOffsetAndALastOneNeedsHalfAWindow() {
    let recipe = FeatureRecipe()
    XCTAssertEqual(windowStarts(seconds: 0.2, recipe: recipe), [0.6])  // shorter than the offset: as without
    XCTAssertEqual(windowStarts(seconds: 4.3, recipe: recipe), [0.6])
    XCTAssertEqual(windowStarts(seconds: 4.4, recipe: recipe), [0.6, 3.1])
    XCTAssertEqual(windowStarts(seconds: 9.5, recipe: recipe), [0.6, 0.6 + 2.5, 0.6 + 5.0, 0.6 + 7.5])
  }

  func testEachWindowIsPredictedAsTheRecordingThatStartsThereAndTheRecordingByTheirMean() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "3"], directory: dir).status, 0)
    XCTAssertEqual(
      try runCommand(["extract", "corpus", "-o", "f.h5", "--augment", "original", "-q"], directory: dir).status, 0)
    let train = try runCommand(
      ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--batch-size", "8", "--run-dir", "run", "-q"],
      directory: dir)
    XCTAssertEqual(train.status, 0, train.stderr)
    // 9.5 s of a voice-like sound whose pitch and loudness change: windows at 0.6, 3.1, 5.6 and 8.1 s (the last
    // holds 1.4 s, more than half a window).
    let rate = 22050
    var noise = TestRNG(seed: 7)
    let samples = (0..<(rate * 19 / 2)).map { i -> Float in
      let t = Double(i) / Double(rate)
      let f = 140 + 60 * sin(0.7 * t)
      return Float(0.3 * (0.6 + 0.4 * sin(1.3 * t)) * sin(2 * .pi * f * t)) + 0.01 * noise.normal()
    }
    XCTAssertTrue(
      FileManager.default.createFile(atPath: dir + "/long.wav", contents: floatWavBytes(samples, rate: rate)))
    let starts = [0.6, 3.1, 5.6, 8.1]
    // The recording that starts where window k does, less the offset, so that its own window is window k.
    for (k, start) in starts.enumerated() {
      let first = Int(start * Double(rate)) - Int(0.6 * Double(rate))
      XCTAssertTrue(
        FileManager.default.createFile(
          atPath: dir + "/from\(k).wav", contents: floatWavBytes(Array(samples[first...]), rate: rate)))
    }
    let checkpoint = ["predict", "--checkpoint", "run/checkpoint-last.h5", "--json"]
    let windowed = try runCommand(checkpoint + ["--windows", "long.wav"], directory: dir)
    XCTAssertEqual(windowed.status, 0, windowed.stderr)
    let recording = (try JSONSerialization.jsonObject(with: Data(windowed.stdout.utf8)) as! [[String: Any]])[0]
    let windows = recording["windows"] as! [[String: Any]]
    XCTAssertEqual(windows.map { $0["start"] as! Double }, starts)
    XCTAssertEqual(windows.map { $0["end"] as! Double }, [3.1, 5.6, 8.1, 9.5])
    XCTAssertEqual(recording["seconds"] as! Double, 9.5)
    let separately = try runCommand(checkpoint + (0..<4).map { "from\($0).wav" }, directory: dir)
    XCTAssertEqual(separately.status, 0, separately.stderr)
    let alone = try JSONSerialization.jsonObject(with: Data(separately.stdout.utf8)) as! [[String: Any]]
    let classes = (recording["probabilities"] as! [String: Double]).keys.sorted()
    for (k, window) in windows.enumerated() {
      XCTAssertEqual(
        window["probabilities"] as! [String: Double], alone[k]["probabilities"] as! [String: Double], "window \(k)")
      XCTAssertEqual(window["emotion"] as! String, alone[k]["emotion"] as! String)
    }
    let mean = classes.map { c in windows.map { ($0["probabilities"] as! [String: Double])[c]! }.reduce(0, +) / 4 }
    for (c, m) in zip(classes, mean) {  // within the JSON's decimal rounding
      XCTAssertEqual((recording["probabilities"] as! [String: Double])[c]!, m, accuracy: 1e-15)
    }
    let best = classes[mean.indices.max { mean[$0] < mean[$1] }!]
    XCTAssertEqual(recording["emotion"] as! String, best)

    // Without --windows: the first window alone, and a note that the rest was not read; a short recording has one
    // window either way; --windows is for audio.
    let plain = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5", "long.wav"], directory: dir)
    XCTAssertEqual(plain.status, 0, plain.stderr)
    XCTAssertTrue(plain.stderr.contains("long.wav is longer than the window the model reads"), plain.stderr)
    XCTAssertTrue(plain.stdout.split(separator: "\n")[1].hasPrefix("long.wav "), plain.stdout)
    let short = "corpus/Synth/S1_00_angry.wav"
    let text = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--windows", short], directory: dir)
    let lines = text.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 3, text.stdout)
    XCTAssertTrue(lines[1].hasSuffix("(one window)") && lines[2].hasPrefix("  0.60-"), text.stdout)
    let csv = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--windows", "--csv", "long.wav"], directory: dir)
    XCTAssertEqual(csv.stdout.split(separator: "\n").count, 6, csv.stdout)
    XCTAssertTrue(csv.stdout.hasPrefix("path_or_row,start,end,emotion,"), csv.stdout)
    XCTAssertTrue(csv.stdout.contains("\nlong.wav,8.100,9.500,"), csv.stdout)
    let usage = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--windows", "--features", "f.h5"], directory: dir)
    XCTAssertEqual(usage.status, 2)
  }
}
