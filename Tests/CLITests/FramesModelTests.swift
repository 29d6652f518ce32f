import AudioFeatures
import FeatureStore
import ModelFiles
import Training
import XCTest
import _TestSupport

/// The frames model and the standardisations it was chosen with, through the command line.
final class FramesModelTests: XCTestCase {
  func testFramesModelIsTheDefaultForFramesRowsAndSpeakerStandardisationPredicts() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "3", "--per-class", "2"], directory: dir).status, 0)
    for (name, extra) in [("frames", [String]()), ("seed", ["--layout", "seed"])] {
      let x = try runCommand(["extract", "corpus", "-o", "\(name).h5", "-q"] + extra, directory: dir)
      XCTAssertEqual(x.status, 0, x.stderr)
    }
    // No --model: the frames layout trains the frames model, the seed layout the seed's (said on the first line).
    let base = ["--epochs", "2", "--batch-size", "16", "--progress-every", "0"]
    let trained = try runCommand(["train", "--data", "frames.h5", "--run-dir", "column"] + base, directory: dir)
    XCTAssertEqual(trained.status, 0, trained.stderr)
    XCTAssertTrue(trained.stdout.hasPrefix("run column: model frames (107,463 parameters)"), trained.stdout)
    let wrong = try runCommand(
      ["train", "--data", "seed.h5", "--model", "frames", "--run-dir", "wrong"] + base, directory: dir)
    XCTAssertEqual(wrong.status, 1)
    XCTAssertTrue(wrong.stderr.contains("the frames model reads rows in the frames layout"), wrong.stderr)
    let flat = try runCommand(
      ["train", "--data", "frames.h5", "--model", "tiny", "--standardize", "feature", "--run-dir", "flat"] + base,
      directory: dir)
    XCTAssertEqual(flat.status, 0, flat.stderr)
    let inspectFlat = try runCommand(["inspect", "flat/checkpoint-last.h5"], directory: dir)
    XCTAssertTrue(inspectFlat.stdout.contains("standardise 2376 columns (by feature)"), inspectFlat.stdout)

    // --standardize speaker: the checkpoint says so; predict standardises the recordings it is given as one
    // speaker's, and needs ten of them.
    let speaker = try runCommand(
      ["train", "--data", "frames.h5", "--standardize", "speaker", "--run-dir", "speaker"] + base, directory: dir)
    XCTAssertEqual(speaker.status, 0, speaker.stderr)
    let inspect = try runCommand(["inspect", "speaker/checkpoint-last.h5"], directory: dir)
    XCTAssertTrue(inspect.stdout.contains("per speaker"), inspect.stdout)
    let evaluated = try runCommand(
      ["evaluate", "--checkpoint", "speaker/checkpoint-last.h5", "--json"], directory: dir)
    XCTAssertEqual(evaluated.status, 0, evaluated.stderr)
    let frames = try FeatureFile(path: dir + "/frames.h5")
    let recordings = try frames.recordings()
    let first = recordings.filter { $0.speaker == recordings[0].speaker }.map { "corpus/" + $0.path }
    XCTAssertGreaterThanOrEqual(first.count, 10)
    // Fewer than ten: standardised by the train rows' statistics per feature, which the checkpoint keeps; each
    // recording's line then does not depend on the others given.
    let c = try Checkpoint.read(dir + "/speaker/checkpoint-last.h5")
    let trainRows = c.split!.indices.filter { c.split![$0] == 0 }
    let fallback = try fitScaler(frames, rows: trainRows, features: frames.recipe.columnFeatures!)
    XCTAssertEqual(c.speakerFallback?.mean, fallback.mean)
    XCTAssertEqual(c.speakerFallback?.scale, fallback.scale)
    let few = try runCommand(
      ["predict", "--checkpoint", "speaker/checkpoint-last.h5", "--csv"] + Array(first.prefix(9)), directory: dir)
    XCTAssertEqual(few.status, 0, few.stderr)
    XCTAssertTrue(few.stderr.contains("9 recording(s) are too few for a speaker's own statistics"), few.stderr)
    let alone = try runCommand(
      ["predict", "--checkpoint", "speaker/checkpoint-last.h5", "--csv", first[4]], directory: dir)
    XCTAssertEqual(
      alone.stdout.split(separator: "\n").last, few.stdout.split(separator: "\n").first { $0.hasPrefix(first[4]) })
    // A checkpoint without them (sertrain before 0.12) needs ten.
    var older = c
    older.speakerFallback = nil
    try older.write(to: dir + "/older.h5")
    let refused = try runCommand(["predict", "--checkpoint", "older.h5"] + Array(first.prefix(9)), directory: dir)
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("at least 10 readable recordings of one speaker"), refused.stderr)
    let forward = try runCommand(
      ["predict", "--checkpoint", "speaker/checkpoint-last.h5", "--csv"] + first, directory: dir)
    let backward = try runCommand(
      ["predict", "--checkpoint", "speaker/checkpoint-last.h5", "--csv"] + first.reversed(), directory: dir)
    XCTAssertEqual(forward.status, 0, forward.stderr)
    XCTAssertTrue(forward.stderr.contains("as one speaker's"), forward.stderr)
    // The same probabilities whatever the order the recordings are given in.
    let lines = { (r: RunResult) in Set(r.stdout.split(separator: "\n").dropFirst().map(String.init)) }
    XCTAssertEqual(lines(forward), lines(backward))
    XCTAssertEqual(lines(forward).count, first.count)
    // One recording with --speaker-reference (the speaker's others, not predicted): its line as when all are given.
    try FileManager.default.createDirectory(atPath: dir + "/reference", withIntermediateDirectories: true)
    for path in first.dropFirst() {
      try FileManager.default.copyItem(
        atPath: dir + "/" + path, toPath: dir + "/reference/" + String(path.split(separator: "/").last!))
    }
    let one = ["predict", "--checkpoint", "speaker/checkpoint-last.h5", "--csv", first[0]]
    let referenced = try runCommand(one + ["--speaker-reference", "reference"], directory: dir)
    XCTAssertEqual(referenced.status, 0, referenced.stderr)
    XCTAssertTrue(referenced.stderr.contains("the \(first.count - 1) of --speaker-reference"), referenced.stderr)
    let together = try runCommand(one + ["reference"], directory: dir)
    let line = { (r: RunResult) in r.stdout.split(separator: "\n").first { $0.hasPrefix(first[0] + ",") } }
    XCTAssertEqual(referenced.stdout.split(separator: "\n").count, 2, referenced.stdout)
    XCTAssertNotNil(line(referenced))
    XCTAssertEqual(line(referenced), line(together))
    let unreadable = try runCommand(
      one + ["--speaker-reference", "reference", "--speaker-reference", "speaker/status"], directory: dir)
    XCTAssertEqual(unreadable.status, 1)
    XCTAssertTrue(unreadable.stderr.contains("speaker/status: --speaker-reference: "), unreadable.stderr)
    let column = try runCommand(
      ["predict", "--checkpoint", "column/checkpoint-last.h5", first[0], "--speaker-reference", "reference"],
      directory: dir)
    XCTAssertEqual(column.status, 1)
    XCTAssertTrue(column.stderr.contains("does not standardise by speaker"), column.stderr)
  }
}
