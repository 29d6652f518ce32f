import Base
import Collective
import FeatureStore
import FoundationEssentials
import HDF5
import ModelFiles
import Schema

#if canImport(Glibc)
  import Glibc
#endif

/// What a fold of `sertrain cv` holds out whole (a random split of rows would leak augmented copies into the test
/// rows): speakers, recordings, or corpora (leave-one-corpus-out with as many folds as corpora, in a merged file).
public enum FoldGroups: String, Sendable, CaseIterable {
  case speaker, recording, corpus
  /// How `cv.csv`, `folds.csv` and the tables name them.
  public var plural: String { self == .corpus ? "corpora" : rawValue + "s" }
}

/// What `sertrain cv` is told.
public struct CrossValidationOptions: Sendable {
  /// How many folds; nil: one for each group (leave-one-speaker-out, leave-one-corpus-out).
  public var folds: Int? = 5
  /// Whole speakers, recordings or corpora per fold.
  public var by = FoldGroups.speaker
  /// Each fold's training; its split carves the validation part from the other folds' rows.
  public var config = TrainConfig()
  public var directory = "cv"
  /// How each fold's trainer reports and reduces (its line prefix is the fold's).
  public var trainer = TrainerOptions()
  public init() {}
}

/// One fold's held-out groups, the rows its model trained on (the others less validation), and its test metrics.
public struct FoldResult: Sendable {
  public var fold: Int
  public var groups: [String]
  public var trainRows: Int
  public var evaluation: Evaluation
}

/// Every fold's result, their mean and spread, and the pooled confusion matrix.
public struct CrossValidationSummary: Sendable {
  public var folds: [FoldResult]
  public var pooled: Evaluation

  /// The metrics a cross-validation reports for each fold, by the names `cv.csv`, `repeats.csv` and `compare` give
  /// them, with the label a printed table gives them. The original rows' (without extraction's noise and pitch
  /// copies) are NaN where no row is known to be one (a converted CSV's).
  public static let metrics: [(name: String, label: String, value: @Sendable (Evaluation) -> Double)] = [
    ("accuracy", "accuracy", { $0.accuracy }), ("macro_f1", "macro F1", { $0.macro.f1 }),
    ("uar", "UAR", { $0.unweightedAverageRecall }),
    ("original_accuracy", "original accuracy", { $0.original?.accuracy ?? .nan }),
    ("original_uar", "original UAR", { $0.original?.unweightedAverageRecall ?? .nan }),
  ]

  /// Mean and sample standard deviation over the folds of `metric`.
  public func spread(_ metric: (Evaluation) -> Double) -> (mean: Double, sd: Double) {
    meanAndSD(folds.map { metric($0.evaluation) })
  }
}

extension CrossValidationSummary {
  /// A row per fold, then mean ± sd, of the metrics (the original rows' where the folds hold their copies too).
  public func table(by: FoldGroups) -> String {
    let width = max(12, folds.map { $0.groups.joined(separator: ",").count }.max() ?? 0) + 2
    // The original rows' columns where some fold's rows are more than its original rows.
    let metrics = Self.metrics.filter { m in
      !m.name.hasPrefix("original_") || folds.contains { $0.evaluation.originalAlone != nil }
    }
    let widths = metrics.map { max(10, $0.label.count + 2) }
    func line(_ fold: String, _ groups: String, _ rows: String, _ cells: [String]) -> String {
      let text = pad(fold, 6) + pad(groups, width) + pad(rows, 7) + zip(cells, widths).map { pad($0, $1) }.joined()
      return String(text.reversed().drop { $0 == " " }.reversed())
    }
    var lines = [line("fold", by.plural, "rows", metrics.map(\.label))]
    for f in folds {
      let e = f.evaluation
      lines.append(
        line("\(f.fold)", f.groups.joined(separator: ","), "\(e.rows)", metrics.map { fixed($0.value(e), 4) }))
    }
    lines.append(
      pad("mean ± sd", 6 + width + 7)
        + metrics.map { spread($0.value) }.map { "\(fixed($0.mean, 4)) ± \(fixed($0.sd, 4))" }.joined(separator: ", "))
    return lines.joined(separator: "\n")
  }
}

/// The folds: whole groups (speakers, recordings or corpora), each fold's rows. The groups go in an order drawn from
/// `seed`, each to the fold with the fewest rows so far: folds of similar size where the groups are (EmoDB's
/// speakers; a corpus of a few large speakers gives uneven folds), and another partition for another seed (repeated
/// cross-validation needs one; largest first, as scikit-learn's GroupKFold without shuffle does, would give nearly
/// the same folds for every seed).
public func crossValidationFolds(_ file: FeatureFile, folds: Int?, by: FoldGroups, seed: UInt64) throws -> (
  rows: [[Int]], groups: [[String]]
) {
  let recordings = try file.recordings()
  let groupOf: [Int]
  switch by {
  case .speaker: groupOf = try DataSplit.groups(file, by: \.speaker, "speaker", unless: "use --by recording")
  case .recording: groupOf = try DataSplit.groups(file, .recording)
  case .corpus:
    groupOf = try DataSplit.groups(file, by: \.corpus, "corpus", unless: "--by corpus needs extracted files")
  }
  var members: [Int: [Int]] = [:]
  for (row, g) in groupOf.enumerated() { members[g, default: []].append(row) }
  let k = folds ?? members.count
  guard members.count >= max(k, 2) else {
    throw Failure(
      file.path,
      "has \(members.count) \(by.plural), fewer than "
        + (folds.map { "--folds \($0)" } ?? "2 folds")
        + (members.count >= 2 ? ": --folds all (\(members.count)) leaves each \(by.rawValue) out in turn" : ""))
  }
  func name(_ g: Int) -> String {
    let recording = recordings[Int(file.source[members[g]![0]])]
    switch by {
    case .speaker: return recording.speaker
    case .recording: return recording.path
    case .corpus: return recording.corpus
    }
  }
  var rng = RandomStream(seed: seed, stream: [0xF01D])
  let keys = members.keys.sorted()
  let order = rng.permutation(keys.count).map { keys[$0] }
  var rows = [[Int]](repeating: [], count: k)
  var groups = [[String]](repeating: [], count: k)
  for g in order {
    let f = rows.indices.min { (rows[$0].count, $0) < (rows[$1].count, $1) }!
    rows[f] += members[g]!
    groups[f].append(name(g))
  }
  return (rows.map { $0.sorted() }, groups.map { $0.sorted() })
}

/// K-fold cross-validation: each fold trained on the others (a run directory `DIR/fold-i` of its own, resumed
/// where it stopped) and evaluated on its held-out groups. The ranks split into `min(ranks, K)` groups, each
/// training its folds data-parallel, in turn. Returns the summary on rank 0 (nil elsewhere), or nil with
/// `stopped` when a signal stopped a fold (its checkpoint written: run again to continue).
public func crossValidate(_ o: CrossValidationOptions, comm: Communicator) throws -> (
  summary: CrossValidationSummary?, stopped: Bool
) {
  // Open once, with the row cache, for every fold's trainer and evaluation.
  let file = try Trainer.openData(o.config.data, options: o.trainer, ranks: comm.size)
  let (foldRows, foldGroups) = try crossValidationFolds(file, folds: o.folds, by: o.by, seed: o.config.seed)
  let k = foldRows.count
  let groups = min(comm.size, k)
  let color = comm.rank * groups / comm.size
  let team = comm.split(color: color)
  // The folds, with a digest of each fold's rows. A directory that holds other folds (other data, --folds, --by or
  // --seed, or an older sertrain's assignment) is refused: its finished folds would be reported under these.
  let lines = foldGroups.enumerated().map {
    "\($0.offset + 1),\(foldRows[$0.offset].count),\(csvCell($0.element.joined(separator: " "))),"
      + sha256Hex(foldRows[$0.offset].map(Int64.init)).prefix(16)
  }
  let folds = "fold,rows,\(o.by.plural),rows_sha256\n" + lines.joined(separator: "\n") + "\n"
  try comm.decidedByRoot {
    let path = o.directory + "/folds.csv"
    if let old = try? String(contentsOfFile: path, encoding: .utf8), old != folds {
      let (was, now) = (old.split(separator: "\n").map(String.init), folds.split(separator: "\n").map(String.init))
      let k = Array(zip(was, now)).firstIndex { $0 != $1 } ?? min(was.count, now.count)
      throw Failure(
        path,
        "holds other folds than this command makes (line \(k + 1): '\(k < was.count ? was[k] : "")' there, "
          + "'\(k < now.count ? now[k] : "")' now): a cross-validation of other data, --folds, --by or --seed, or of an "
          + "earlier sertrain; give another --dir")
    }
    try makeDirectories(o.directory)
    try writeTextAtomically(folds, to: path)
  }
  var config = o.config
  config.testFraction = 0
  func split(_ fold: Int) throws -> DataSplit {
    try DataSplit.make(
      file, kind: config.split, validation: config.validationFraction, test: 0, seed: config.seed,
      testRows: foldRows[fold])
  }
  var stopped = 0.0
  for fold in stride(from: color, to: k, by: groups) {
    let dir = o.directory + "/fold-\(fold + 1)"
    let done = dir + "/evaluation.json"
    // Done, unless an older sertrain's evaluation lacks the per-augmentation counts (the finished run is then
    // evaluated again, not trained).
    if let text = try? String(contentsOfFile: done, encoding: .utf8) {
      let e = try? decodeJSON(Evaluation.self, from: text)
      if let e, e.byAugmentation != nil || e.original != nil { continue }
      if team.rank == 0 && !o.trainer.quiet {
        Output.shared.line(
          o.trainer.linePrefix + "fold \(fold + 1)/\(k): \(done) "
            + (e == nil ? "cannot be read" : "is an older sertrain's") + ": its run is evaluated again")
      }
    }
    let split = try split(fold)
    var options = o.trainer
    options.linePrefix = groups > 1 || !o.trainer.quiet ? o.trainer.linePrefix + "fold \(fold + 1)/\(k): " : ""
    let trainer = try Trainer.open(
      config: config, runDir: dir, resume: "auto", comm: team, options: options, split: split, file: file)
    if try trainer.run() != 0 {
      stopped = 1
      break
    }
    let path = dir + "/" + Trainer.lastName
    let evaluation = try evaluate(
      try Checkpoint.read(path), path: path, data: file, split: "test", comm: team,
      precision: o.config.precision ?? .fp32)
    if team.rank == 0 {
      try writeTextAtomically(jsonText(evaluation, pretty: true) + "\n", to: done)
      if !o.trainer.quiet {
        Output.shared.line(
          o.trainer.linePrefix
            + "fold \(fold + 1)/\(k) (\(foldGroups[fold].joined(separator: ", "))): \(evaluation.rows) rows, accuracy "
            + "\(fixed(evaluation.accuracy, 4)), macro F1 \(fixed(evaluation.macro.f1, 4)), UAR "
            + "\(fixed(evaluation.unweightedAverageRecall, 4))"
            + (evaluation.originalAlone.map { "; original rows \(fixed($0.accuracy, 4))" } ?? ""))
      }
    }
  }
  Output.shared.flush(timeout: 5)
  if comm.sum(stopped) > 0 { return (nil, true) }
  guard comm.rank == 0 else { return (nil, false) }
  var results: [FoldResult] = []
  for fold in 0..<k {
    let path = o.directory + "/fold-\(fold + 1)/evaluation.json"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure(path, "missing") }
    results.append(
      FoldResult(
        fold: fold + 1, groups: foldGroups[fold], trainRows: try split(fold).train.count,
        evaluation: try decodeJSON(Evaluation.self, from: text)))
  }
  let summary = CrossValidationSummary(
    folds: results, pooled: Evaluation.pooled(results.map(\.evaluation), split: "pooled test"))
  try writeCrossValidation(summary, o)
  return (summary, false)
}

/// Repeated k-fold cross-validation: `repeats` cross-validations in `DIR/repeat-1`, `DIR/repeat-2`, ..., the i-th
/// with seed + i - 1 (its own folds, validation part, initialisation and order), one after another; `DIR/repeats.csv`
/// holds each repeat's means and their mean and sd. The corrected test of `compare` is made for such runs (r
/// repetitions of k folds). Returns the repeats' summaries on rank 0 (nil elsewhere), or nil with `stopped` when a
/// signal stopped a fold (run again to continue).
public func crossValidateRepeatedly(_ o: CrossValidationOptions, repeats: Int, comm: Communicator) throws -> (
  summaries: [CrossValidationSummary]?, stopped: Bool
) {
  var summaries: [CrossValidationSummary] = []
  for r in 0..<repeats {
    var one = o
    one.config.seed = o.config.seed &+ UInt64(r)
    one.directory = o.directory + "/repeat-\(r + 1)"
    one.trainer.linePrefix = o.trainer.linePrefix + "repeat \(r + 1)/\(repeats), "
    let (summary, stopped) = try crossValidate(one, comm: comm)
    if stopped { return (nil, true) }
    if let summary {
      summaries.append(summary)
      if !o.trainer.quiet {
        let (mean, sd) = summary.spread(\.accuracy)
        Output.shared.line(
          "repeat \(r + 1)/\(repeats) (seed \(one.config.seed)): accuracy \(fixed(mean, 4)) ± \(fixed(sd, 4)) over "
            + "\(summary.folds.count) folds")
        let partition = { (s: CrossValidationSummary) in Set(s.folds.map { Set($0.groups) }) }
        if r == 1 && partition(summary) == partition(summaries[0]) {
          Output.shared.line(
            "note: repeat 2 holds out the same \(o.by.plural) in its folds as repeat 1 (each fold one of "
              + "\(summary.folds.count)): the repeats differ in their initialisation, validation rows and order "
              + "only, and compare counts them as one partition")
        }
      }
    }
  }
  guard comm.rank == 0 else { return (nil, false) }
  let metrics = CrossValidationSummary.metrics
  let means = summaries.map { s in metrics.map { s.spread($0.value).mean } }
  var csv = "repeat,seed," + metrics.map(\.name).joined(separator: ",") + "\n"
  for (r, m) in means.enumerated() {
    csv += "\(r + 1),\(o.config.seed &+ UInt64(r)),\(m.map { "\($0)" }.joined(separator: ","))\n"
  }
  let spreads = metrics.indices.map { j in meanAndSD(means.map { $0[j] }) }
  csv += "mean,,\(spreads.map { "\($0.mean)" }.joined(separator: ","))\n"
  csv += "sd,,\(spreads.map { "\($0.sd)" }.joined(separator: ","))\n"
  try writeTextAtomically(csv, to: o.directory + "/repeats.csv")
  return (summaries, false)
}

/// The mean and sample standard deviation (0 for one value).
public func meanAndSD(_ v: [Double]) -> (mean: Double, sd: Double) {
  let mean = v.reduce(0, +) / Double(v.count)
  let sd = v.count > 1 ? (v.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(v.count - 1)).squareRoot() : 0
  return (mean, sd)
}

/// `DIR/cv.csv` (a row per fold, then mean and sd) and `DIR/cv.html`.
func writeCrossValidation(_ s: CrossValidationSummary, _ o: CrossValidationOptions) throws {
  let metrics = CrossValidationSummary.metrics.map { ($0.name, $0.value) } + [("loss", { $0.loss })]
  var csv = "fold,\(o.by.plural),rows," + metrics.map(\.0).joined(separator: ",") + ",train_rows\n"
  for f in s.folds {
    csv +=
      "\(f.fold),\(csvCell(f.groups.joined(separator: " "))),\(f.evaluation.rows),"
      + metrics.map { "\($0.1(f.evaluation))" }.joined(separator: ",") + ",\(f.trainRows)\n"
  }
  csv += "mean,,\(s.pooled.rows)," + metrics.map { "\(s.spread($0.1).mean)" }.joined(separator: ",") + ",\n"
  csv += "sd,,," + metrics.map { "\(s.spread($0.1).sd)" }.joined(separator: ",") + ",\n"
  try writeTextAtomically(csv, to: o.directory + "/cv.csv")
  // Each fold's epochs (and the model as the runs resolved it), from its run's last checkpoint.
  var model = o.config.model
  let histories: [(fold: Int, history: [HistoryRow])] = s.folds.compactMap { f in
    guard let c = try? Checkpoint.read("\(o.directory)/fold-\(f.fold)/\(Trainer.lastName)"), let text = c.training,
      let state = try? TrainingState.parse(text)
    else { return nil }
    model = c.spec.name
    return (f.fold, state.history)
  }
  var facts: [(String, String)] = [
    ("data", o.config.data), ("model", model),
    ("folds", "\(s.folds.count) by \(o.by.rawValue), \(s.pooled.rows) test rows in all"),
    ("training", "up to \(o.config.epochs) epochs, batch \(o.config.batchSize), seed \(o.config.seed)"),
  ]
  for (_, label, metric) in CrossValidationSummary.metrics where s.folds.allSatisfy({ metric($0.evaluation).isFinite })
  {
    let (mean, sd) = s.spread(metric)
    facts.append((label, "\(fixed(mean, 4)) ± \(fixed(sd, 4)) (mean ± sd over folds)"))
  }
  for f in s.folds {
    facts.append(
      (
        "fold \(f.fold)",
        "\(f.groups.joined(separator: ", ")): \(f.evaluation.rows) rows, accuracy \(fixed(f.evaluation.accuracy, 4))"
      ))
  }
  let html = reportHTML(
    title: "sertrain cross-validation", facts: facts, history: [], evaluation: s.pooled, foldHistories: histories)
  try writeTextAtomically(html, to: o.directory + "/cv.html")
}
