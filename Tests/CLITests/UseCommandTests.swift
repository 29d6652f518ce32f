import AudioFeatures
import FeatureStore
import HDF5
import ModelFiles
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
    var byKind: [String: [Int]] = [:]  // correct and total rows per augmentation
    var byClass: [String: [Int]] = [:]  // correct and total rows per true class
    for line in lines.dropFirst() {
      let cells = line.split(separator: ",")
      let row = Int(cells[0])!
      let truth = file.classes[Int(file.labels[row])]
      let hit = String(cells[1]) == truth ? 1 : 0
      correct += hit
      byClass[truth, default: [0, 0]][0] += hit
      byClass[truth, default: [0, 0]][1] += 1
      byKind[String(cells[11]), default: [0, 0]][0] += hit
      byKind[String(cells[11]), default: [0, 0]][1] += 1
    }
    XCTAssertEqual(evaluation["rows"] as? Int, lines.count - 1)
    XCTAssertEqual(evaluation["accuracy"] as! Double, Double(correct) / Double(lines.count - 1), accuracy: 1e-12)
    let recall = byClass.values.map { Double($0[0]) / Double($0[1]) }.reduce(0, +) / Double(byClass.count)
    XCTAssertEqual(evaluation["unweightedAverageRecall"] as! Double, recall, accuracy: 1e-12)
    // The original rows alone (no noise copies), and each augmentation's accuracy, as the rows' predictions say.
    XCTAssertEqual(evaluation["byAugmentation"] as? [String: [Int]], byKind)
    let original = evaluation["original"] as! [String: Any]
    XCTAssertEqual(original["rows"] as? Int, byKind["original"]![1])
    XCTAssertEqual(
      original["accuracy"] as! Double, Double(byKind["original"]![0]) / Double(byKind["original"]![1]), accuracy: 1e-12)
    let text = try runCommand(["evaluate", "--checkpoint", "run/checkpoint-last.h5"], directory: dir)
    XCTAssertTrue(
      text.stdout.contains(
        "original rows alone (without the noise and pitch copies, as new recordings are): "
          + "\(byKind["original"]![1]) rows, accuracy"), text.stdout)
    XCTAssertTrue(text.stdout.contains("accuracy by augmentation: original "), text.stdout)
    XCTAssertTrue(train.stdout.contains("original rows alone"), train.stdout)
    XCTAssertTrue(html.contains("<th>augmentation</th><th>accuracy</th>"), "report.html has the augmentation table")

    // Audio files: a table, JSON; an unreadable file is a clear error.
    let audio = ["corpus/Synth/S1_00_angry.wav", "corpus/Synth/S2_01_sad.wav", "corpus/Synth/S1_02_fear.wav"]
    let table = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5"] + audio, directory: dir)
    XCTAssertEqual(table.status, 0, table.stderr)
    XCTAssertEqual(predictionLines(table.stdout).count, 4, table.stdout)
    XCTAssertTrue(table.stdout.contains("warning: the model trained on this recording"), table.stdout)
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
    let badLines = predictionLines(bad.stdout)
    XCTAssertEqual(badLines.count, 4, bad.stdout)
    XCTAssertTrue(badLines[2].hasPrefix("notes.wav") && badLines[2].contains("error: "), bad.stdout)
    XCTAssertTrue(badLines[1].hasPrefix(audio[0]) && badLines[3].hasPrefix(audio[1]), bad.stdout)
    XCTAssertEqual(badLines[1], predictionLines(table.stdout)[1])
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
    let lines = predictionLines(text.stdout)
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

/// A checkpoint records the recordings its training saw (by the bits of their original rows): in another file that
/// holds some of them, under other paths, `evaluate` leaves them out by default (`unseen`) or warns, `predict` warns
/// on such a file, a run from it (`--init-from`) counts them among its validation and test recordings; `merge`
/// refuses one recording in two files by the same key.
final class SeenRecordingsTests: XCTestCase {
  func testAModelKnowsTheRecordingsItTrainedOnInAnyFile() throws {
    let dir = temporaryDirectory(self)
    let run = { (args: [String]) in try runCommand(args, directory: dir) }
    XCTAssertEqual(try run(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "3"]).status, 0)
    XCTAssertEqual(try run(["extract", "corpus", "-o", "all.h5", "-q"]).status, 0)
    // Two thirds of the recordings, extracted from the corpus's subfolder: paths without the `Synth/` prefix.
    let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/corpus/Synth").filter {
      $0.hasSuffix(".wav") && !$0.contains("_02_")
    }
    let manifest = names.map { "\($0),\($0.split(separator: "_")[2].dropLast(4)),\($0.prefix(2))" }
    try manifest.joined(separator: "\n").write(toFile: dir + "/part.csv", atomically: false, encoding: .utf8)
    let part = try run(["extract", "corpus/Synth", "--manifest", "part.csv", "-o", "part.h5", "-q"])
    XCTAssertEqual(part.status, 0, part.stderr)
    let train = try run(["train", "--data", "part.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "run", "-q"])
    XCTAssertEqual(train.status, 0, train.stderr)

    // The recordings of part.h5's train and validation rows, by path, and all.h5's rows of the others.
    let (partFile, allFile) = (try FeatureFile(path: dir + "/part.h5"), try FeatureFile(path: dir + "/all.h5"))
    let checkpoint = try Checkpoint.read(dir + "/run/checkpoint-last.h5")
    let partPaths = try partFile.recordings().map(\.path)
    let split = checkpoint.split!
    let seen = Set(split.indices.filter { split[$0] < 2 }.map { partPaths[Int(partFile.source[$0])] })
    XCTAssertEqual(checkpoint.seenRecordings?.count, seen.count)
    XCTAssertTrue(seen.count > 10 && seen.count < names.count, "\(seen.count)")
    let allPaths = try allFile.recordings().map(\.path)
    let unseenRows = (0..<allFile.rowCount).filter {
      !seen.contains(String(allPaths[Int(allFile.source[$0])].dropFirst(6)))
    }
    XCTAssertEqual(unseenRows.count, (42 - seen.count) * 4)

    func evaluate(_ args: [String]) throws -> [String: Any] {
      let r = try run(["evaluate", "--checkpoint", "run/checkpoint-last.h5", "--json"] + args)
      XCTAssertEqual(r.status, 0, r.stderr)
      return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] ?? [:]
    }
    let unseen = try evaluate(["--data", "all.h5"])
    XCTAssertEqual(unseen["split"] as? String, "unseen")
    XCTAssertEqual(unseen["rows"] as? Int, unseenRows.count)
    XCTAssertEqual(unseen["recordings"] as? Int, 42 - seen.count)
    let all = try evaluate(["--data", "all.h5", "--split", "all"])
    XCTAssertEqual(all["seenRecordings"] as? Int, seen.count)
    let own = try evaluate([])
    XCTAssertEqual(own["split"] as? String, "test")
    // A run that held out no test rows: its validation rows.
    let noTest = ["train", "--data", "part.h5", "--model", "tiny", "--epochs", "1", "--test-fraction", "0", "-q"]
    XCTAssertEqual(try run(noTest + ["--run-dir", "no-test"]).status, 0)
    let val = try run(["evaluate", "--checkpoint", "no-test/checkpoint-last.h5", "--json"])
    XCTAssertEqual(
      (try JSONSerialization.jsonObject(with: Data(val.stdout.utf8)) as? [String: Any])?["split"] as? String, "val")
    XCTAssertEqual(own["seenRecordings"] as? Int, 0, "a split by recording keeps the test recordings unseen")
    let warned = try run(["evaluate", "--checkpoint", "run/checkpoint-last.h5", "--data", "all.h5", "--split", "all"])
    XCTAssertTrue(
      warned.stdout.contains("warning: the model trained on \(seen.count) of the 42 recordings evaluated"),
      warned.stdout)
    // The saved split names part.h5's rows, not those of another file, even one of as many rows (its noise differs).
    let wrong = try run(["evaluate", "--checkpoint", "run/checkpoint-last.h5", "--data", "all.h5", "--split", "test"])
    XCTAssertTrue(wrong.status == 1 && wrong.stderr.contains("trained on another file"), wrong.stderr)
    XCTAssertEqual(
      try run(["extract", "corpus/Synth", "--manifest", "part.csv", "-o", "noise.h5", "--seed", "7", "-q"]).status, 0)
    let other = try run(["evaluate", "--checkpoint", "run/checkpoint-last.h5", "--data", "noise.h5", "--split", "test"])
    XCTAssertEqual(other.status, 1)
    XCTAssertTrue(
      other.stderr.contains("was trained on other data than noise.h5 (its feature values differ"), other.stderr)
    XCTAssertEqual(try evaluate(["--data", "noise.h5"])["recordings"] as? Int, names.count - seen.count)
    // merge refuses one recording twice, whatever its path: part.h5's recordings are all.h5's.
    let twice = try run(["merge", "all.h5", "part.h5", "-o", "both.h5"])
    XCTAssertEqual(twice.status, 1)
    XCTAssertTrue(
      twice.stderr.contains("part.h5: its recording S") && twice.stderr.contains("has the rows of all.h5's recording "),
      twice.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/both.h5"))
    // extract says so of one audio under two names in a corpus.
    try FileManager.default.copyItem(
      atPath: dir + "/corpus/Synth/S1_00_angry.wav", toPath: dir + "/corpus/Synth/S2_09_angry.wav")
    let doubled = try run(["extract", "corpus", "-o", "doubled.h5"])
    XCTAssertTrue(
      doubled.stdout.contains(
        "warning: 1 recording(s) have the features of another (the same audio, or silence; Synth/S2_09_angry.wav "
          + "those of Synth/S1_00_angry.wav)"), doubled.stdout)
    // A split at random puts a recording's rows on both sides: the report says its test rows are not new to it.
    let random = try run(
      ["train", "--data", "part.h5", "--model", "tiny", "--epochs", "1", "--split", "random", "--run-dir", "random"])
    XCTAssertEqual(random.status, 0, random.stderr)
    XCTAssertTrue(random.stdout.contains("warning: the model trained on "), random.stdout)
    XCTAssertTrue(
      try String(contentsOfFile: dir + "/random/report.html", encoding: .utf8).contains(
        "new recordings (split by random: a recording's rows are on both sides)"))
    XCTAssertFalse(
      try String(contentsOfFile: dir + "/run/report.html", encoding: .utf8).contains("recordings evaluated here"))
    let inspect = try run(["inspect", "run/checkpoint-last.h5"])
    XCTAssertTrue(inspect.stdout.contains("saw \(seen.count) recordings"), inspect.stdout)
    // predict extracts a recording's original row as extract did: one it trained on is said to be one.
    let (trainedOn, new) = ("corpus/Synth/" + seen.sorted()[0], "corpus/Synth/S1_02_angry.wav")
    let predicted = try run(["predict", "--checkpoint", "run/checkpoint-last.h5", "--csv", trainedOn, new])
    XCTAssertEqual(predicted.status, 0, predicted.stderr)
    let warnings = predicted.stdout.split(separator: "\n").dropFirst().map {
      $0.split(separator: ",", omittingEmptySubsequences: false).last ?? ""
    }
    XCTAssertEqual(warnings, ["the model trained on this recording", ""], predicted.stdout)

    // A run from it on all.h5: its test and validation recordings that the checkpoint saw are counted.
    let from = try run([
      "train", "--data", "all.h5", "--init-from", "run/checkpoint-last.h5", "--epochs", "1",
      "--run-dir", "from",
    ])
    XCTAssertEqual(from.status, 0, from.stderr)
    let fromSplit = try Checkpoint.read(dir + "/from/checkpoint-last.h5").split!
    func count(_ side: Int8) -> (Int, Int) {
      let paths = Set(fromSplit.indices.filter { fromSplit[$0] == side }.map { allPaths[Int(allFile.source[$0])] })
      return (paths.filter { seen.contains(String($0.dropFirst(6))) }.count, paths.count)
    }
    let ((t, tn), (v, vn)) = (count(2), count(1))
    let said = [(t, tn, "test"), (v, vn, "validation")].filter { $0.0 > 0 }.map { "\($0.0) of the \($0.1) \($0.2)" }
    XCTAssertFalse(said.isEmpty)
    XCTAssertTrue(
      from.stdout.contains("trained on \(said.joined(separator: " and ")) recordings of this run"), from.stdout)

    // A checkpoint that does not record them (imported, or older): unseen is an error that says what to use.
    var older = checkpoint
    older.seenRecordings = nil
    try older.write(to: dir + "/older.h5")
    let refused = try run(["evaluate", "--checkpoint", "older.h5", "--data", "all.h5", "--split", "unseen"])
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("older.h5 does not record the recordings it trained on"), refused.stderr)
    let olderAll = try run(["evaluate", "--checkpoint", "older.h5", "--data", "all.h5", "--json"])
    XCTAssertEqual(
      (try JSONSerialization.jsonObject(with: Data(olderAll.stdout.utf8)) as? [String: Any])?["split"] as? String, "all"
    )
  }
}
