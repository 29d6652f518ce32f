import AudioFeatures
import ConvNet
import FeatureStore
import HDF5
import ModelFiles
import Training
import XCTest
import _TestSupport

/// Nothing lost, nothing silently wrong: the run directory, requeues, metadata checksums and hostile checkpoints.
/// Each test says which case of the integrity issue (30) it holds; every one failed on the code before it.
extension TrainCommandTests {
  /// The training state's `weightsEpoch` in a checkpoint.
  func weightsEpoch(_ path: String) throws -> Int? {
    let text = try XCTUnwrap(try Checkpoint.read(path).training)
    return text.firstMatch(of: #/"weightsEpoch":(-?[0-9]+)/#).map { Int($0.1)! }
  }

  /// Case 1: a new run in a directory that holds a finished one is refused (naming that run) unless `--force`,
  /// which replaces it; nothing of the old run changes on the refusal.
  func testANewRunRefusesADirectoryThatHoldsOne() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let first = ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--run-dir", "r", "-q"]
    XCTAssertEqual(try runCommand(first, directory: dir).status, 0)
    let files = ["history.csv", "checkpoint-last.h5", "checkpoint-best.h5", "config.json", "report.html"]
    let before = try files.map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/r/\($0)")) }
    let second = ["train", "--data", "f.h5", "--model", "small", "--epochs", "1", "--run-dir", "r", "-q"]
    let refused = try runCommand(second, directory: dir)
    XCTAssertEqual(refused.status, 1, refused.stderr)
    XCTAssertTrue(
      refused.stderr.contains("r holds a run of model tiny") && refused.stderr.contains("epoch 2 of 2, finished")
        && refused.stderr.contains("--force"), refused.stderr)
    XCTAssertEqual(try files.map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/r/\($0)")) }, before)
    let replaced = try runCommand(second + ["--force"], directory: dir)
    XCTAssertEqual(replaced.status, 0, replaced.stderr)
    for file in ["checkpoint-last.h5", "checkpoint-best.h5"] {
      XCTAssertEqual(try Checkpoint.read("\(dir)/r/\(file)").spec.name, "small", file)
    }
  }

  /// Case 2: a finished run is not trained further by the command that made it (a requeued job repeats its
  /// `--epochs`): "already finished", exit 0, the checkpoints unchanged; only more epochs than its own continue it.
  func testAFinishedRunIsNotTrainedAgainByTheSameCommand() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    // Early stopping on a noisy validation loss, so that the run ends before its budget (as in the report).
    let args = [
      "train", "--data", "f.h5", "--model", "tiny", "--epochs", "12", "--patience", "0", "--monitor", "val_loss",
      "--learning-rate", "0.3", "--run-dir", "r", "--resume", "auto",
    ]
    XCTAssertEqual(try runCommand(args + ["-q"], directory: dir).status, 0)
    let epochs = try String(contentsOfFile: dir + "/r/history.csv", encoding: .utf8).split(separator: "\n").count - 1
    XCTAssertLessThan(epochs, 12, "the run should stop early")
    let checkpoints = ["checkpoint-last.h5", "checkpoint-best.h5", "history.csv"]
    let before = try checkpoints.map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/r/\($0)")) }
    for budget in ["12", "5"] {
      let again = try runCommand(args.map { $0 == "12" ? budget : $0 }, directory: dir)
      XCTAssertEqual(again.status, 0, again.stderr)
      XCTAssertTrue(again.stdout.contains("already finished"), again.stdout)
      XCTAssertFalse(again.stdout.contains("Epoch "), again.stdout)
      XCTAssertEqual(try checkpoints.map { try Data(contentsOf: URL(fileURLWithPath: "\(dir)/r/\($0)")) }, before)
    }
    let more = try runCommand(args.map { $0 == "12" ? "13" : $0 }, directory: dir)
    XCTAssertEqual(more.status, 0, more.stderr)
    XCTAssertTrue(more.stdout.contains("continuing the finished run from epoch \(epochs) to 13"), more.stdout)
  }

  /// Case 3: after a resume the checkpoints name the epoch of the weights they hold: the last epoch's without
  /// restoring, the best epoch's in checkpoint-best.h5 and (restored) in checkpoint-last.h5.
  func testResumedRunsNameTheEpochOfTheirWeights() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let base = ["train", "--data", "f.h5", "--model", "tiny", "--batch-size", "16", "-q"]
    XCTAssertEqual(
      try runCommand(base + ["--epochs", "2", "--run-dir", "plain", "--no-restore-best-weights"], directory: dir)
        .status, 0)
    XCTAssertEqual(
      try runCommand(base + ["--epochs", "4", "--run-dir", "plain", "--resume", "auto"], directory: dir).status, 0)
    XCTAssertEqual(try weightsEpoch(dir + "/plain/checkpoint-last.h5"), 4)

    XCTAssertEqual(try runCommand(base + ["--epochs", "2", "--run-dir", "best"], directory: dir).status, 0)
    XCTAssertEqual(
      try runCommand(base + ["--epochs", "5", "--run-dir", "best", "--resume", "auto"], directory: dir).status, 0)
    let (last, best) = (dir + "/best/checkpoint-last.h5", dir + "/best/checkpoint-best.h5")
    let epoch = try XCTUnwrap(try weightsEpoch(last))
    XCTAssertTrue((3...5).contains(epoch), "the best of the resumed epochs, not \(epoch)")
    XCTAssertEqual(try weightsEpoch(best), epoch)
    XCTAssertEqual(try checkpointParameters(best), try checkpointParameters(last))
  }

  /// Case 4 (with SIGINT in `testKilledAndSignalledRunsResumeBitForBit`): `--resume auto` on a run that wrote no
  /// checkpoint yet says so, rather than that the default feature file is missing.
  func testResumingARunWithoutACheckpointSaysSo() throws {
    let dir = temporaryDirectory(self)
    try FileManager.default.createDirectory(atPath: dir + "/r", withIntermediateDirectories: true)
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/r/config.json", contents: Data("{}".utf8)))
    let r = try runCommand(["train", "--run-dir", "r", "--resume", "auto"], directory: dir)
    XCTAssertEqual(r.status, 1)
    XCTAssertTrue(r.stderr.contains("r has no checkpoint yet") && r.stderr.contains("--data"), r.stderr)
  }

  /// Case 5: a fatal error during training (here a non-finite loss) leaves `status` saying `failed` and why.
  func testAFatalErrorLeavesTheStatusFailed() throws {
    let dir = temporaryDirectory(self)
    let writer = try FeatureFileWriter(path: dir + "/nan.h5", width: 40, overwrite: false)
    var rng = TestRNG(seed: 4)
    var rows = (0..<(48 * 40)).map { _ in Float(rng.normal()) }
    rows[7 * 40 + 3] = .nan
    try rows.withUnsafeBufferPointer {
      try writer.append(
        rows: $0, labels: (0..<48).map { ["angry", "sad"][$0 % 2] }, sources: (0..<48).map { Int32($0) },
        augmentations: [Int8](repeating: 0, count: 48))
    }
    var recipe = FeatureRecipe()
    recipe.width = 40
    try writer.finish(
      recipe: recipe, recordings: (0..<48).map { RecordingInfo(path: "r\($0).wav", speaker: "s\($0 % 4)", corpus: "c") }
    )
    let r = try runCommand(
      [
        "train", "--data", "nan.h5", "--model", "tiny", "--no-standardize", "--epochs", "1", "--run-dir", "r",
        "--val-fraction", "0", "--test-fraction", "0", "--monitor", "loss", "-q",
      ], directory: dir)
    XCTAssertEqual(r.status, 1, r.stderr)
    let status = try String(contentsOfFile: dir + "/r/status", encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(status.first, "failed")
    XCTAssertTrue(status.count == 2 && status[1].contains("not finite"), "\(status)")
  }

  /// Case 6: one flipped bit in the metadata (the spec's "activation" becomes "abtivation"; the feature file's
  /// resampler "soxr_hq" becomes "soxr_hp") is an error for every command that reads the file; and a spec with a
  /// key sertrain does not know is an error, as an unknown layer type is.
  func testFlipsInTheMetadataAreErrors() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let train = ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "r", "-q"]
    XCTAssertEqual(try runCommand(train, directory: dir).status, 0)
    func flip(_ path: String, _ text: String, at offset: Int, bit: UInt8) throws {
      var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
      let at = try XCTUnwrap(bytes.range(of: Data(text.utf8)), "\(text) in \(path)").lowerBound + offset
      bytes[at] ^= bit
      try bytes.write(to: URL(fileURLWithPath: path))
    }
    try flip(dir + "/r/checkpoint-last.h5", "activation", at: 1, bit: 0x01)  // c -> b
    for command in [
      ["inspect", "--verify", "r/checkpoint-last.h5"], ["evaluate", "--checkpoint", "r/checkpoint-last.h5"],
      ["predict", "--checkpoint", "r/checkpoint-last.h5", "--features", "f.h5"],
      train + ["--resume", "auto", "--epochs", "2"],
    ] {
      let r = try runCommand(command, directory: dir)
      XCTAssertEqual(r.status, 1, "\(command): \(r.stdout)")
      XCTAssertTrue(r.stderr.contains("metadata"), "\(command): \(r.stderr)")
    }
    try flip(dir + "/f.h5", "soxr_hq", at: 6, bit: 0x01)  // q -> p
    let inspect = try runCommand(["inspect", "f.h5"], directory: dir)
    XCTAssertEqual(inspect.status, 1)
    XCTAssertTrue(inspect.stderr.contains("f.h5") && inspect.stderr.contains("metadata"), inspect.stderr)

    let spec = #"{"input_length": 96, "layers": [{"type": "Flatten"}, {"type": "Dense", "activaton": "softmax"}]}"#
    XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/spec.json", contents: Data(spec.utf8)))
    let unknown = try runCommand(["summary", "--model", "spec.json"], directory: dir)
    XCTAssertEqual(unknown.status, 1)
    XCTAssertTrue(unknown.stderr.contains("unknown key 'activaton'"), unknown.stderr)
  }

  /// Case 7: a checkpoint whose `best` group cannot be read (its link gone, as when its header is corrupt) is an
  /// error on resume, not a run that quietly forgets its best weights.
  func testAnUnreadableBestGroupIsAnErrorOnResume() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let train = ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--run-dir", "r", "-q"]
    XCTAssertEqual(try runCommand(train, directory: dir).status, 0)
    do {
      let f = try H5File(path: dir + "/r/checkpoint-last.h5", mode: .readWrite)
      try f.remove("best")
      try f.close()
    }
    for command in [train + ["--resume", "auto", "--epochs", "3"], ["inspect", "r/checkpoint-last.h5"]] {
      let r = try runCommand(command, directory: dir)
      XCTAssertEqual(r.status, 1, "\(command): \(r.stdout)")
      XCTAssertTrue(r.stderr.contains("best/parameters"), "\(command): \(r.stderr)")
    }
  }

  /// Cases 8 and 9: specs and checkpoints with valid checksums and bad contents, each written as sertrain writes
  /// (or with one dataset replaced), are errors for evaluate and for a resume: never a crash, never NaN, never a
  /// run cut short. Prints the count of cases and of crashes.
  func testCraftedSpecsAndCheckpointsAreErrors() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    let train = ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--run-dir", "r", "-q"]
    XCTAssertEqual(try runCommand(train, directory: dir).status, 0)
    let path = dir + "/r/checkpoint-last.h5"
    let original = try Data(contentsOf: URL(fileURLWithPath: path))
    let good = try Checkpoint.read(path)
    let variance = try XCTUnwrap(good.stateLayout.views.first { $0.variable == "moving_variance" })

    /// Rewrites the checkpoint with `edit` applied (valid checksums), or replaces one dataset in place.
    func crafted(_ edit: (inout Checkpoint) -> Void) throws {
      var c = good
      edit(&c)
      try c.write(to: path, overwrite: true)
    }
    func replaced<T: H5Scalar>(_ dataset: String, _ values: [T], shape: [Int]? = nil, digest: Bool = true) throws {
      try original.write(to: URL(fileURLWithPath: path))
      let f = try H5File(path: path, mode: .readWrite)
      try f.remove(dataset)
      try f.write(dataset, values, shape: shape, digest: digest)
      try f.close()
    }
    func training(_ replace: @escaping (String) -> String) -> (inout Checkpoint) -> Void {
      { $0.training = replace($0.training!) }
    }
    let count = good.parameters.count
    // (name, how to make it, what the error says); a damaged training state matters to a resume alone.
    let cases: [(String, () throws -> Void, String)] = [
      ("more filters than the parameters hold", { try crafted { $0.spec.layers[0].filters! += 1 } }, "layout"),
      ("epoch -3", { try crafted(training { $0.replacing(#/"epoch":[0-9]+/#, with: "\"epoch\":-3") }) }, "epoch -3"),
      (
        "step 10^15", { try crafted(training { $0.replacing(#/"step":[0-9]+/#, with: "\"step\":1000000000000000") }) },
        "step"
      ),
      ("scaler scale 0", { try crafted { $0.scaler.scale[5] = 0 } }, "scaler"),
      ("scaler scale NaN", { try crafted { $0.scaler.scale[5] = .nan } }, "scaler"),
      ("negative moving variance", { try crafted { $0.state[variance.offset] = -1 } }, "negative variance"),
      ("split side 9", { try crafted { $0.split![0] = 9 } }, "side 9"),
      ("float64 parameters", { try replaced("parameters", good.parameters.map(Double.init)) }, "another type"),
      ("int32 parameters", { try replaced("parameters", good.parameters.map { Int32($0 * 100) }) }, "another type"),
      ("2-D parameters", { try replaced("parameters", good.parameters, shape: [count, 1]) }, "one dimension"),
      ("float64 Adam moments", { try replaced("optimizer/m", good.adamM!.map(Double.init)) }, "another type"),
      ("no sha256", { try replaced("parameters", good.parameters, digest: false) }, "no SHA-256"),
    ]
    var crashes = 0
    var runs = 0
    for (name, make, expected) in cases {
      try make()
      let resume = train + ["--resume", "auto", "--epochs", "3"]
      let evaluate = ["evaluate", "--checkpoint", "r/checkpoint-last.h5", "--data", "f.h5"]
      for command in name.hasPrefix("epoch") || name.hasPrefix("step") ? [resume] : [evaluate, resume] {
        runs += 1
        let r = try runCommand(command, directory: dir)
        if r.status != 1 { crashes += 1 }
        XCTAssertEqual(r.status, 1, "\(name): \(command): \(r.stdout) \(r.stderr)")
        XCTAssertTrue(r.stderr.contains(expected), "\(name): \(command): \(r.stderr)")
        XCTAssertFalse(r.stdout.contains("nan"), "\(name): \(r.stdout)")
      }
    }
    let specs = [
      #"{"input_length": 96, "layers": [{"type": "Conv1D", "filters": 4, "kernel_size": 3}, {"type": "Flatten"}, {"type": "Conv1D", "filters": 4, "kernel_size": 3}, {"type": "Flatten"}, {"type": "Dense", "activation": "softmax"}]}"#,
      #"{"input_length": 96, "layers": [{"type": "Conv1D", "filters": 4, "kernel_size": 3}, {"type": "Dense", "activation": "softmax"}]}"#,
    ]
    for (i, spec) in specs.enumerated() {
      XCTAssertTrue(FileManager.default.createFile(atPath: "\(dir)/s\(i).json", contents: Data(spec.utf8)))
      for command in [
        ["summary", "--model", "s\(i).json"], train.dropLast(3) + ["--model", "s\(i).json", "--run-dir", "s\(i)"],
      ] {
        let r = try runCommand(Array(command), directory: dir)
        runs += 1
        if r.status != 1 { crashes += 1 }
        XCTAssertEqual(r.status, 1, "spec \(i): \(command): \(r.stderr)")
        XCTAssertTrue(r.stderr.contains("needs a sequence") || r.stderr.contains("needs a flat input"), r.stderr)
      }
    }
    let nan = try runCommand(train + ["--min-lr", "nan", "--run-dir", "m"], directory: dir)
    XCTAssertNotEqual(nan.status, 0)
    XCTAssertTrue(nan.stderr.contains("--min-lr"), nan.stderr)
    print("crafted specs and checkpoints: \(cases.count + specs.count) cases in \(runs) runs, \(crashes) crashes")
  }
}

/// Logs that tell the truth (issue 31, item 5): a short epoch's rate counts the rows it trained on; a log file hears
/// from the run after its first step, not only after --progress-every seconds.
extension TrainCommandTests {
  func testEpochLinesCountTheirOwnRowsAndALogHearsAfterTheFirstStep() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 30, width: 960)
    let r = try runCommand(
      [
        "train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--batch-size", "8", "--steps-per-epoch", "3",
        "--run-dir", "r", "--progress-every", "1000",
      ], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("  epoch 1/2, step 1/3: "), r.stdout)
    let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("Epoch 1/2") }, r.stdout)
    let rate = try XCTUnwrap(line.firstMatch(of: #/\(([0-9]+) samples/s\)/#).map { Double($0.1)! }, String(line))
    let history = try String(contentsOfFile: dir + "/r/history.csv", encoding: .utf8).split(separator: "\n")
    let seconds = try XCTUnwrap(Double(history[1].split(separator: ",")[6]))
    // 3 steps of 8 rows, not the 96 rows of the train split: within the rounding of history.csv's milliseconds and of
    // the whole samples/s shown.
    XCTAssertEqual(rate * seconds, 24, accuracy: rate * 0.0005 + seconds + 0.5, "\(line); \(history[1])")
  }
}

/// Identity (issue 31, item 6): `--version` names the version and the commit built from, and a run records it.
extension TrainCommandTests {
  func testVersionNamesTheBuildAndRunsRecordIt() throws {
    let dir = temporaryDirectory(self)
    let version = try runCommand(["--version"])
    XCTAssertEqual(version.status, 0)
    let line = version.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    XCTAssertNotNil(
      line.wholeMatch(of: #/sertrain [0-9]+\.[0-9]+\.[0-9]+ \(commit ([0-9a-f]+(-dirty)?|unknown)\)/#), line)
    try makeFeatures(dir, recordings: 12)
    let r = try runCommand(
      ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "r", "-q"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    let config = try String(contentsOfFile: dir + "/r/config.json", encoding: .utf8)
    XCTAssertTrue(config.contains("\"builtBy\" : \"\(line)\""), config)
    let report = try String(contentsOfFile: dir + "/r/report.html", encoding: .utf8)
    XCTAssertTrue(report.contains(line), "the report names the build")
  }
}

/// Class weights (issue 31, item 4): `balanced` as scikit-learn computes it over the train rows, recorded in the
/// checkpoint's configuration and shown in the report; a file names every class; a resume keeps the run's.
extension TrainCommandTests {
  func testClassWeightsAreBalancedRecordedAndKept() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 30)
    let args = [
      "train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--run-dir", "r", "--test-fraction", "0",
      "--val-fraction", "0.2", "-q",
    ]
    let r = try runCommand(args + ["--class-weight", "balanced"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    let c = try Checkpoint.read(dir + "/r/checkpoint-last.h5")
    let text = try XCTUnwrap(c.training)
    let weights = try XCTUnwrap(text.firstMatch(of: #/"classWeights":\[([^\]]*)\]/#)).1.split(separator: ",")
      .map { Double($0)! }
    let train = (0..<c.split!.count).filter { c.split![$0] == 0 }
    let file = try FeatureFile(path: dir + "/f.h5")
    for k in 0..<3 {
      let n = Double(train.filter { file.labels[$0] == Int32(k) }.count)
      XCTAssertEqual(weights[k], Double(train.count) / (3 * n), accuracy: 1e-12, "class \(k)")
    }
    let report = try String(contentsOfFile: dir + "/r/report.html", encoding: .utf8)
    XCTAssertTrue(report.contains("class weights (balanced): angry "), "the report shows the weights")
    let other = try runCommand(
      args + ["--class-weight", "balanced", "--resume", "auto", "--epochs", "3"], directory: dir)
    XCTAssertEqual(other.status, 0, other.stderr)
    let none = try runCommand(args + ["--resume", "auto", "--epochs", "4"], directory: dir)
    XCTAssertEqual(none.status, 0, "not given on resume: the run's weights stay: \(none.stderr)")
    XCTAssertTrue(
      try XCTUnwrap(try Checkpoint.read(dir + "/r/checkpoint-last.h5").training).contains("\"classWeights\":["))

    XCTAssertTrue(
      FileManager.default.createFile(atPath: dir + "/w.csv", contents: Data("class,weight\nangry,2\nsad,1\n".utf8)))
    let missing = try runCommand(args + ["--class-weight", "w.csv", "--run-dir", "w"], directory: dir)
    XCTAssertEqual(missing.status, 1)
    XCTAssertTrue(missing.stderr.contains("w.csv: no weight for calm"), missing.stderr)
    let changed = try runCommand(args + ["--class-weight", "w.csv", "--resume", "auto"], directory: dir)
    XCTAssertEqual(changed.status, 1)
    XCTAssertTrue(changed.stderr.contains("--class-weight w.csv contradicts"), changed.stderr)
  }
}

extension TrainCommandTests {
  /// `g.h5`: rows like `f.h5`'s (`makeFeatures`), other recordings, with the class calm called happy, as another
  /// corpus might label it.
  func makeOtherCorpus(_ dir: String, recordings: Int) throws {
    try makeFeatures(dir, recordings: recordings, name: "g", seed: 3, classes: ["angry", "happy", "sad"])
  }
}

/// Cross-corpus evaluation (issue 31, item 2): on another corpus's feature file, evaluate matches classes by name,
/// leaves out the rows of classes the model lacks, predicts among the classes both have, and says so.
extension TrainCommandTests {
  func testEvaluationAcrossCorporaUsesTheSharedClasses() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 24)
    let train = ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "2", "--run-dir", "r", "-q"]
    XCTAssertEqual(try runCommand(train, directory: dir).status, 0)
    try makeOtherCorpus(dir, recordings: 24)
    // None of its recordings is the model's: by default (unseen) every row, as with --split all.
    let r = try runCommand(["evaluate", "--checkpoint", "r/checkpoint-last.h5", "--data", "g.h5"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(
      r.stdout.contains("on 64 unseen rows") && !r.stdout.contains("warning")
        && r.stdout.contains("evaluated on the 2 classes both have (angry, sad)")
        && r.stdout.contains("left out the data's happy (32 rows)")
        && r.stdout.contains("the model's calm never predicted"), r.stdout)
    let json = try runCommand(
      ["evaluate", "--checkpoint", "r/checkpoint-last.h5", "--data", "g.h5", "--json", "--split", "all"],
      directory: dir)
    let e = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
    XCTAssertEqual(e["classes"] as? [String], ["angry", "sad"])
    XCTAssertEqual((e["confusion"] as? [[Int]])?.flatMap { $0 }.reduce(0, +), 64)
  }
}

/// Several corpora in one model (issue 31, item 1): `merge` puts feature files together, classes by name, each
/// recording's corpus kept (a converted CSV's is its file's name), and refuses files extracted differently.
extension TrainCommandTests {
  func testMergeKeepsClassesSpeakersAndCorpora() throws {
    let dir = temporaryDirectory(self)
    try makeFeatures(dir, recordings: 12)
    try makeOtherCorpus(dir, recordings: 12)
    let r = try runCommand(["merge", "f.h5", "g.h5", "-o", "all.h5"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("96 rows of 24 recordings, classes angry, calm, happy, sad"), r.stdout)
    let (f, g, all) = try (
      FeatureFile(path: dir + "/f.h5"), FeatureFile(path: dir + "/g.h5"), FeatureFile(path: dir + "/all.h5")
    )
    XCTAssertEqual(try all.readRows(0..<all.rowCount), try f.readRows(0..<f.rowCount) + g.readRows(0..<g.rowCount))
    XCTAssertEqual(
      (0..<all.rowCount).map { all.classes[Int(all.labels[$0])] },
      (0..<f.rowCount).map { f.classes[Int(f.labels[$0])] } + (0..<g.rowCount).map { g.classes[Int(g.labels[$0])] })
    let recordings = try all.recordings()
    XCTAssertEqual(Set(recordings.map(\.corpus)), ["f", "g"])
    XCTAssertEqual(Set((0..<all.rowCount).filter { recordings[Int(all.source[$0])].corpus == "g" }), Set(48..<96))
    let t = try runCommand(
      ["train", "--data", "all.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "r", "-q"], directory: dir)
    XCTAssertEqual(t.status, 0, t.stderr)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "1"], directory: dir).status, 0)
    XCTAssertEqual(try runCommand(["extract", "corpus", "-o", "x.h5", "-q"], directory: dir).status, 0)
    let refused = try runCommand(["merge", "f.h5", "x.h5", "-o", "bad.h5"], directory: dir)
    XCTAssertEqual(refused.status, 1)
    XCTAssertTrue(refused.stderr.contains("x.h5: its features are not f.h5's"), refused.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad.h5"))
  }
}

/// Help that says the defaults (issue 31, item 6), and cv's own words where they differ from train's.
extension TrainCommandTests {
  func testHelpSaysTheDefaults() throws {
    let train = try runCommand(["train", "--help"]).stdout.replacing("\n", with: " ").replacing(#/ +/#, with: " ")
    for text in [
      "default features.h5", "(default 64)", "(default 0.001)", "default 0.1)", "default 0)", "or auto (the default",
      "default val_accuracy",
    ] {
      XCTAssertTrue(train.contains(text), "train --help lacks '\(text)'")
    }
    let cv = try runCommand(["cv", "--help"]).stdout.replacing("\n", with: " ").replacing(#/ +/#, with: " ")
    XCTAssertTrue(cv.contains("values: speaker, recording, corpus;"), cv)
    XCTAssertTrue(cv.contains("cv: unused"), "cv --help says --test-fraction is not cv's")
  }
}

extension TrainCommandTests {
  /// Each setting of `TrainConfig.Setting` is an option of `train` and `cv` under its `flag` (a misspelt one would
  /// never be recorded as given, and its resume check would never run), and a contradiction names it by that flag.
  func testEverySettingIsAFlag() throws {
    for command in ["train", "cv"] {
      let help = try runCommand([command, "--help"])
      XCTAssertEqual(help.status, 0, help.stderr)
      for setting in TrainConfig.Setting.allCases {
        XCTAssertNotNil(
          help.stdout.firstMatch(of: try Regex("(^|\\s)\(setting.flag)(\\s|$)")), "\(command): \(setting.flag)")
      }
    }
    XCTAssertEqual(TrainConfig.Setting.minLR.flag, "--min-lr")
    XCTAssertEqual(TrainConfig.Setting.noRestoreBestWeights.flag, "--no-restore-best-weights")
  }
}
