import AudioFeatures
import FeatureStore
import ModelFiles
import XCTest
import _TestSupport

/// `extract --layout aligned` and `frames`, predict with the checkpoint's layout, and `sertrain cv` on a synthetic
/// corpus.
final class LayoutAndCVTests: XCTestCase {
  func testAlignedLayoutPredictAndSpeakerFolds() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "4", "--per-class", "2"], directory: dir).status, 0)
    // Short clips: 3 frames after the 0.6 s offset (fewer than a kernel's 5 taps), 20, 60 and 107 frames; and a
    // full one.
    var rng = TestRNG(seed: 3)
    for (i, seconds) in [0.67, 1.06, 1.99, 3.08, 3.6].enumerated() {
      let samples = (0..<Int(seconds * 22050)).map { t in
        Int16(8000 * sin(Double(t) * (0.03 + 0.01 * Double(i))) + 300 * Double(rng.normal()))
      }
      let name = dir + "/corpus/Synth/S\(i + 1)_90_\(["angry", "sad", "fear", "happy", "neutral"][i]).wav"
      XCTAssertTrue(FileManager.default.createFile(atPath: name, contents: wavBytes(samples)))
    }
    for layout in ["seed", "aligned"] {
      let x = try runCommand(["extract", "corpus", "-o", "\(layout).h5", "--layout", layout, "-q"], directory: dir)
      XCTAssertEqual(x.status, 0, x.stderr)
    }
    let x = try runCommand(["extract", "corpus", "-o", "frames.h5", "-q"], directory: dir)  // the default layout
    XCTAssertEqual(x.status, 0, x.stderr)
    let seed = try FeatureFile(path: dir + "/seed.h5")
    let aligned = try FeatureFile(path: dir + "/aligned.h5")
    XCTAssertEqual(seed.recipe.layout, .seed)
    XCTAssertEqual(aligned.recipe.layout, .aligned)
    XCTAssertFalse(seed.recipe.sameFeatures(as: aligned.recipe))
    let inspect = try runCommand(["inspect", "seed.h5"], directory: dir)
    XCTAssertTrue(inspect.stdout.contains("layout        seed"), inspect.stdout)

    // The synthetic clips are short: aligned rows are the seed rows' blocks at their frame positions.
    let (s, a) = (try seed.readRows(0..<seed.rowCount), try aligned.readRows(0..<aligned.rowCount))
    let (w, full, k) = (seed.width, seed.recipe.framesPerRow, seed.recipe.nMFCC)
    var shortRows = 0
    for r in 0..<seed.rowCount {
      let sr = Array(s[(r * w)..<((r + 1) * w)])
      let ar = Array(a[(r * w)..<((r + 1) * w)])
      let frames = (0..<full).last { t in (0..<k).contains { ar[2 * full + t * k + $0] != 0 } }.map { $0 + 1 } ?? 0
      if frames < full { shortRows += 1 }
      var moved = [Float](repeating: 0, count: w)
      for t in 0..<frames {
        moved[t] = sr[t]
        moved[full + t] = sr[frames + t]
        for c in 0..<k { moved[2 * full + t * k + c] = sr[2 * frames + t * k + c] }
      }
      XCTAssertEqual(moved, ar, "row \(r) (\(frames) frames)")
    }
    XCTAssertGreaterThan(shortRows, 0, "the synthetic clips should include short ones")
    XCTAssertLessThan(shortRows, seed.rowCount, "and a full one")

    // Frame t of a frames row is ZCR, RMS and MFCCs of frame t of the aligned row, for clips of every length.
    let frames = try FeatureFile(path: dir + "/frames.h5")
    XCTAssertEqual(frames.recipe.layout, .frames)
    let f = try frames.readRows(0..<frames.rowCount)
    XCTAssertEqual(f.count, a.count)
    for r in 0..<frames.rowCount {
      var moved = [Float](repeating: 0, count: w)
      for t in 0..<full {
        moved[22 * t] = a[r * w + t]
        moved[22 * t + 1] = a[r * w + full + t]
        for c in 0..<k { moved[22 * t + 2 + c] = a[r * w + 2 * full + t * k + c] }
      }
      XCTAssertEqual(moved, Array(f[(r * w)..<((r + 1) * w)]), "frames row \(r)")
    }
    let inspectFrames = try runCommand(["inspect", "frames.h5"], directory: dir)
    XCTAssertTrue(inspectFrames.stdout.contains("short rows    \(shortRows) of \(seed.rowCount)"), inspectFrames.stdout)
    XCTAssertTrue(inspect.stdout.contains("short rows    \(shortRows) of \(seed.rowCount)"), inspect.stdout)

    // A model trained on aligned rows predicts audio with the aligned layout: the same probabilities as for its
    // stored original rows.
    let train = try runCommand(
      ["train", "--data", "aligned.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "run", "-q"], directory: dir)
    XCTAssertEqual(train.status, 0, train.stderr)
    let recordings = try aligned.recordings()
    let originals = (0..<aligned.rowCount).filter {
      aligned.augmentation[$0] == 0 && recordings[Int(aligned.source[$0])].path.contains("_90_")
    }
    let paths = originals.map { "corpus/" + recordings[Int(aligned.source[$0])].path }
    let audio = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5", "--csv"] + paths, directory: dir)
    let rows = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--features", "aligned.h5", "--csv"], directory: dir)
    XCTAssertEqual(audio.status, 0, audio.stderr)
    let byRow = Dictionary(
      uniqueKeysWithValues: rows.stdout.split(separator: "\n").dropFirst().map {
        (Int($0.split(separator: ",")[0])!, $0.split(separator: ",").dropFirst())
      })
    for (line, row) in zip(audio.stdout.split(separator: "\n").dropFirst(), originals) {
      let fromAudio = line.split(separator: ",").dropFirst(2).prefix(7).map { Double($0)! }
      let fromRow = byRow[row]!.dropFirst().prefix(7).map { Double($0)! }
      XCTAssertEqual(fromAudio.count, 7)
      for (x, y) in zip(fromAudio, fromRow) { XCTAssertEqual(x, y, accuracy: 2e-6, "recording of row \(row)") }
    }

    // cv: speaker folds, disjoint and covering every speaker once; resumable (a second run trains nothing).
    let cv = try runCommand(
      [
        "cv", "--data", "seed.h5", "--model", "tiny", "--folds", "2", "--by", "speaker", "--epochs", "1", "--dir",
        "cv", "--progress-every", "0",
      ], directory: dir)
    XCTAssertEqual(cv.status, 0, cv.stderr)
    XCTAssertTrue(cv.stdout.contains("mean ± sd") && cv.stdout.contains("pooled confusion matrix"), cv.stdout)
    let cvHTML = try String(contentsOfFile: dir + "/cv/cv.html", encoding: .utf8)
    XCTAssertTrue(
      cvHTML.contains("Validation accuracy by fold") && cvHTML.contains("Training loss by fold")
        && cvHTML.contains("<th>model</th><td>tiny</td>"), "cv.html has each fold's curves and names the model")
    let folds = try String(contentsOfFile: dir + "/cv/folds.csv", encoding: .utf8).split(separator: "\n").dropFirst()
    let speakers = folds.flatMap { $0.split(separator: ",")[2].split(separator: " ").map(String.init) }
    XCTAssertEqual(speakers.sorted(), Set(recordings.map(\.speaker)).sorted())
    let csv = try String(contentsOfFile: dir + "/cv/cv.csv", encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(csv.count, 1 + 2 + 2, csv.joined(separator: "\n"))
    XCTAssertEqual(
      csv.dropFirst().prefix(2).map { Int($0.split(separator: ",")[2])! }.reduce(0, +), seed.rowCount)
    // Each fold's train_rows: the rows its checkpoint's split trained on.
    for fold in 1...2 {
      let c = try runCommand(
        ["evaluate", "--checkpoint", "cv/fold-\(fold)/checkpoint-last.h5", "--split", "train", "--json"], directory: dir
      )
      XCTAssertEqual(c.status, 0, c.stderr)
      let trained = (try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as! [String: Any])["rows"] as? Int
      let column = csv[0].split(separator: ",").firstIndex(of: "train_rows")!
      XCTAssertEqual(
        trained, Int(csv[fold].split(separator: ",", omittingEmptySubsequences: false)[column]), "fold \(fold)")
    }
    let again = try runCommand(
      ["cv", "--data", "seed.h5", "--model", "tiny", "--folds", "2", "--epochs", "1", "--dir", "cv"], directory: dir)
    XCTAssertEqual(again.status, 0, again.stderr)
    XCTAssertFalse(again.stdout.contains("Epoch 1/1"), again.stdout)
    XCTAssertEqual(
      try String(contentsOfFile: dir + "/cv/cv.csv", encoding: .utf8).split(separator: "\n"), csv)
    // A fold's evaluation.json as sertrain 0.11 wrote it (no per-augmentation counts): the finished run is evaluated
    // again, not trained, and cv.csv is what a fresh cv writes.
    let done = dir + "/cv/fold-2/evaluation.json"
    var older = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: done))) as! [String: Any]
    (older["byAugmentation"], older["original"]) = (nil, nil)
    try JSONSerialization.data(withJSONObject: older).write(to: URL(fileURLWithPath: done))
    let weights = try checkpointParameters(dir + "/cv/fold-2/checkpoint-last.h5")
    let upgraded = try runCommand(
      ["cv", "--data", "seed.h5", "--model", "tiny", "--folds", "2", "--epochs", "1", "--dir", "cv"], directory: dir)
    XCTAssertEqual(upgraded.status, 0, upgraded.stderr)
    XCTAssertTrue(
      upgraded.stdout.contains("fold 2/2: cv/fold-2/evaluation.json is an older sertrain's"), upgraded.stdout)
    XCTAssertFalse(upgraded.stdout.contains("Epoch 1/1"), upgraded.stdout)
    XCTAssertEqual(
      try String(contentsOfFile: dir + "/cv/cv.csv", encoding: .utf8).split(separator: "\n"), csv)
    XCTAssertEqual(try checkpointParameters(dir + "/cv/fold-2/checkpoint-last.h5"), weights)
    // One damaged (a copy cut short, an edit by hand) is written again the same way.
    try "{\"split\": \"te".write(toFile: done, atomically: true, encoding: .utf8)
    let mended = try runCommand(
      ["cv", "--data", "seed.h5", "--model", "tiny", "--folds", "2", "--epochs", "1", "--dir", "cv"], directory: dir)
    XCTAssertTrue(mended.stdout.contains("fold 2/2: cv/fold-2/evaluation.json cannot be read"), mended.stdout)
    XCTAssertEqual(
      try String(contentsOfFile: dir + "/cv/cv.csv", encoding: .utf8).split(separator: "\n"), csv)
    let report = try runCommand(["report", "cv"], directory: dir)
    XCTAssertEqual(report.status, 1, report.stdout)
    XCTAssertTrue(report.stderr.contains("cv: is a cross-validation directory: its report is cv.html"), report.stderr)

    // A stop (SIGUSR1) in a fold: checkpoint, exit 75; the same command continues, and every fold ends bit for bit
    // where an uninterrupted cv ends.
    let args = [
      "cv", "--data", "seed.h5", "--model", "tiny", "--folds", "2", "--epochs", "12", "--patience", "100",
      "--batch-size", "16", "-q",
    ]
    XCTAssertEqual(try runCommand(args + ["--dir", "straight"], directory: dir).status, 0)
    let script = """
      '\(sertrainBinary)' \(args.joined(separator: " ")) --dir stopped & pid=$!
      while [ ! -f stopped/fold-1/checkpoint-last.h5 ]; do sleep 0.02; done
      sleep 0.2; kill -USR1 $pid; wait $pid; echo "exit $?"
      """
    let stopped = try bash(script, directory: dir)
    XCTAssertTrue(stopped.stdout.contains("exit 75"), stopped.stdout + stopped.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/stopped/cv.csv"))
    let resumed = try runCommand(args + ["--dir", "stopped"], directory: dir)
    XCTAssertEqual(resumed.status, 0, resumed.stderr)
    for fold in 1...2 {
      let (a, b) = try (
        checkpointParameters(dir + "/straight/fold-\(fold)/checkpoint-last.h5"),
        checkpointParameters(dir + "/stopped/fold-\(fold)/checkpoint-last.h5")
      )
      XCTAssertEqual(a, b, "fold \(fold) after a stop and a second cv")
    }
  }
}

/// `cv --repeats`: each repeat a cross-validation with the next seed (the first the same as a plain `cv` at the
/// seed), `repeats.csv` their means; `compare` pairs two such directories repeat by repeat.
extension TrainCommandTests {
  func testRepeatedCrossValidationAndItsComparison() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 24)
    let cv = [
      "cv", "--data", "f.h5", "--model", "tiny", "--folds", "3", "--by", "recording", "--epochs", "1", "--batch-size",
      "16", "--seed", "4", "-q",
    ]
    for (name, extra) in [
      ("a", ["--repeats", "2"]), ("plain", []), ("b", ["--repeats", "2", "--learning-rate", "0.01"]),
    ] {
      let r = try runCommand(cv + extra + ["--dir", name], directory: dir)
      XCTAssertEqual(r.status, 0, r.stderr)
    }
    let read = { (path: String) in try String(contentsOfFile: dir + "/" + path, encoding: .utf8) }
    XCTAssertEqual(try read("a/repeat-1/cv.csv"), try read("plain/cv.csv"), "the first repeat is cv at --seed")
    let held = { (r: Int) in try Checkpoint.read(dir + "/a/repeat-\(r)/fold-1/checkpoint-last.h5").split! }
    XCTAssertNotEqual(try held(1), try held(2), "the second repeat's folds are others")
    let repeats = try read("a/repeats.csv").split(separator: "\n").map {
      $0.split(separator: ",", omittingEmptySubsequences: false)
    }
    XCTAssertEqual(repeats.map { $0[0] }, ["repeat", "1", "2", "mean", "sd"])
    XCTAssertEqual(repeats[0][2...].joined(separator: ","), "accuracy,macro_f1,uar,original_accuracy,original_uar")
    for r in 1...2 {
      let mean = try read("a/repeat-\(r)/cv.csv").split(separator: "\n").first { $0.hasPrefix("mean,") }!
        .split(separator: ",", omittingEmptySubsequences: false)
      XCTAssertEqual(Array(repeats[r][2...6]), Array(mean[3...7]), "repeat \(r)'s means")
      XCTAssertEqual(repeats[r][1], "\(3 + r)", "repeat \(r)'s seed")
    }
    let c = try runCommand(["compare", "a", "b", "--json"], directory: dir)
    XCTAssertEqual(c.status, 0, c.stderr)
    XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(c.stdout.utf8)) as? [String: Any])?["folds"] as? Int, 6)
    let pooled = try runCommand(
      ["compare", "a/repeat-1", "b/repeat-1", "a/repeat-2", "b/repeat-2", "--json"], directory: dir)
    XCTAssertEqual(pooled.stdout, c.stdout, "the same as the repeats given in pairs")
    // The same directory with another seed: other folds, refused (its finished folds are another partition's).
    let other = try runCommand(
      cv.map { $0 == "4" ? "5" : $0 } + ["--dir", "plain"], directory: dir)
    XCTAssertEqual(other.status, 1, other.stdout)
    XCTAssertTrue(other.stderr.contains("plain/folds.csv: holds other folds than this command makes"), other.stderr)
    XCTAssertEqual(try read("a/repeat-1/cv.csv"), try read("plain/cv.csv"), "and left as it was")
    let mixed = try runCommand(["compare", "plain", "b"], directory: dir)
    XCTAssertEqual(mixed.status, 1)
    XCTAssertTrue(mixed.stderr.contains("b: holds 2 repeated cross-validation(s)"), mixed.stderr)
  }
}
