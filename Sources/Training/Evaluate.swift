import AudioFeatures
import Base
import Collective
import ConvNet
import FeatureStore
import FoundationEssentials
import ModelFiles

#if canImport(Glibc)
  import Glibc
#endif

/// Loss, accuracy, confusion matrix and per-class precision, recall and F1 of a checkpoint on some rows.
public struct Evaluation: Codable, Sendable {
  public struct ClassScore: Codable, Sendable {
    public var name: String
    public var precision: Double
    public var recall: Double
    public var f1: Double
    public var support: Int
  }
  public var split: String
  public var rows: Int
  public var loss: Double
  public var accuracy: Double
  public var classes: [String]
  /// `confusion[true][predicted]`.
  public var confusion: [[Int]]
  public var perClass: [ClassScore]
  public var macro: ClassScore
  public var weighted: ClassScore
  /// Correct and total rows per corpus and per speaker, where the feature file knows them (shown where more than
  /// one).
  public var byCorpus: [String: [Int]]?
  public var bySpeaker: [String: [Int]]?
  /// Correct and total rows per augmentation (original, noise, pitch, ...), where the file knows them.
  public var byAugmentation: [String: [Int]]?
  /// The original rows alone, without the noise and pitch copies extraction adds: a clean test set, as a new
  /// recording meets `predict`. Nil when no row evaluated is known to be an original (a converted CSV's rows).
  public var original: Subset?
  public struct Subset: Codable, Sendable {
    public var rows: Int
    public var accuracy: Double
    public var unweightedAverageRecall: Double
    public var confusion: [[Int]]
    init?(_ e: Evaluation) {
      guard e.rows > 0 else { return nil }
      (rows, accuracy, confusion) = (e.rows, e.accuracy, e.confusion)
      unweightedAverageRecall = e.unweightedAverageRecall
    }
  }
  /// How many recordings the rows are of (rank 0's), and how many of them the model's training saw (its train and
  /// validation rows; nil when the checkpoint does not record them: imported, or written before sertrain 0.11).
  public var recordings: Int?
  public var seenRecordings: Int?
  /// Across corpora: the classes of the data the model lacks (their rows left out) and the model's classes the data
  /// lacks (never predicted: the most probable of the shared classes is the prediction). Nil when they agree.
  public var leftOut: LeftOut?
  public struct LeftOut: Codable, Sendable {
    public var dataClasses: [String: Int]
    public var modelClasses: [String]
  }

  /// - Parameters:
  ///   - loss: the summed loss over the rows (divided by their count here).
  ///   - confusion: `confusion[true][predicted]` counts.
  public init(split: String, loss: Double, classes: [String], confusion: [[Int]]) {
    self.split = split
    self.classes = classes
    self.confusion = confusion
    let k = classes.count
    let total = confusion.reduce(0) { $0 + $1.reduce(0, +) }
    rows = total
    self.loss = total > 0 ? loss / Double(total) : .nan
    accuracy = total > 0 ? Double((0..<k).reduce(0) { $0 + confusion[$1][$1] }) / Double(total) : .nan
    // scikit-learn's rule: a ratio with a zero denominator is 0.
    func ratio(_ a: Int, _ b: Int) -> Double { b > 0 ? Double(a) / Double(b) : 0 }
    // As scikit-learn without `labels`: the classes that occur in the truth or the predictions.
    let present = (0..<k).filter { c in confusion[c].reduce(0, +) > 0 || (0..<k).contains { confusion[$0][c] > 0 } }
    let scores = present.map { c in
      let tp = confusion[c][c]
      let predicted = (0..<k).reduce(0) { $0 + confusion[$1][c] }
      let support = confusion[c].reduce(0, +)
      let p = ratio(tp, predicted)
      let r = ratio(tp, support)
      return ClassScore(
        name: classes[c], precision: p, recall: r, f1: p + r > 0 ? 2 * p * r / (p + r) : 0, support: support)
    }
    func average(_ weights: [Double], _ name: String) -> ClassScore {
      let w = weights.reduce(0, +)
      func avg(_ f: (ClassScore) -> Double) -> Double {
        w > 0 ? zip(scores, weights).reduce(0) { $0 + f($1.0) * $1.1 } / w : 0
      }
      return ClassScore(name: name, precision: avg(\.precision), recall: avg(\.recall), f1: avg(\.f1), support: total)
    }
    perClass = scores
    macro = average([Double](repeating: 1, count: scores.count), "macro avg")
    weighted = average(scores.map { Double($0.support) }, "weighted avg")
  }

  /// Evaluations of disjoint rows with the same classes (a cross-validation's folds) as one: their counts summed.
  public static func pooled(_ parts: [Evaluation], split: String) -> Evaluation {
    let classes = parts[0].classes
    func sum(_ matrices: [[[Int]]]) -> [[Int]] {
      classes.indices.map { t in classes.indices.map { p in matrices.reduce(0) { $0 + $1[t][p] } } }
    }
    var e = Evaluation(
      split: split, loss: parts.reduce(0) { $0 + $1.loss * Double($1.rows) }, classes: classes,
      confusion: sum(parts.map(\.confusion)))
    let originals = parts.compactMap(\.original?.confusion)
    if originals.count == parts.count {
      e.original = Subset(Evaluation(split: split, loss: 0, classes: classes, confusion: sum(originals)))
    }
    func merged(_ tables: [[String: [Int]]?]) -> [String: [Int]]? {
      let present = tables.compactMap { $0 }
      guard present.count == tables.count else { return nil }  // a part that does not say (an older one)
      return present.reduce(into: [:]) { all, table in
        for (key, counts) in table { all[key] = zip(all[key] ?? [0, 0], counts).map { $0 + $1 } }
      }
    }
    (e.byAugmentation, e.byCorpus, e.bySpeaker) = (
      merged(parts.map(\.byAugmentation)), merged(parts.map(\.byCorpus)), merged(parts.map(\.bySpeaker))
    )
    return e
  }

  /// The mean recall over the classes that have rows (unweighted average recall, the usual measure in speech
  /// emotion recognition: chance is 1/classes whatever the class balance).
  public var unweightedAverageRecall: Double {
    let present = perClass.filter { $0.support > 0 }
    return present.isEmpty ? .nan : present.reduce(0) { $0 + $1.recall } / Double(present.count)
  }

  /// Said when rows other than the model's own train or validation split are of recordings it trained on (all rows,
  /// another file's, the test rows of a split at random), or nil.
  public var seenWarning: String? {
    guard let seen = seenRecordings, seen > 0, !["train", "val"].contains(split) else { return nil }
    return
      "the model trained on \(seen) of the \(recordings ?? 0) recordings evaluated (its train and validation rows): "
      + "these figures overstate its accuracy on new recordings"
  }

  /// The original rows' figures where they differ from all rows' (the rows hold extraction's copies too), else nil:
  /// what evaluate, train, the report and cv show beside the headline.
  public var originalAlone: Subset? { original.flatMap { $0.rows < rows ? $0 : nil } }

  /// The original rows' accuracy and UAR and each augmentation's accuracy, when the rows are more than their
  /// originals (extraction's noise and pitch copies), else nil.
  public var originalSummary: String? {
    guard let o = originalAlone else { return nil }
    let kinds = FeatureFormat.augmentationNames.compactMap { name in
      byAugmentation?[name].map { "\(name) \(fixed(Double($0[0]) / Double($0[1]), 4))" }
    }
    return "original rows alone (without the noise and pitch copies, as new recordings are): \(o.rows) rows, "
      + "accuracy \(fixed(o.accuracy, 4)), UAR \(fixed(o.unweightedAverageRecall, 4))"
      + (kinds.isEmpty ? "" : "\naccuracy by augmentation: " + kinds.joined(separator: ", "))
  }

  /// The per-class table laid out as scikit-learn's `classification_report`.
  public var report: String {
    let width = max(12, (classes.map(\.count) + ["weighted avg".count]).max()!)
    func cell(_ s: String, _ n: Int) -> String { pad(s, n, right: true) }
    func line(_ name: String, _ p: Double?, _ r: Double?, _ f: Double, _ s: Int) -> String {
      cell(name, width) + cell(p.map { fixed($0, 2) } ?? "", 11) + cell(r.map { fixed($0, 2) } ?? "", 10)
        + cell(fixed(f, 2), 10) + cell("\(s)", 10)
    }
    var out = [
      cell("", width) + cell("precision", 11) + cell("recall", 10) + cell("f1-score", 10) + cell("support", 10), "",
    ]
    for c in perClass { out.append(line(c.name, c.precision, c.recall, c.f1, c.support)) }
    out.append("")
    out.append(line("accuracy", nil, nil, accuracy, rows))
    out.append(line(macro.name, macro.precision, macro.recall, macro.f1, macro.support))
    out.append(line(weighted.name, weighted.precision, weighted.recall, weighted.f1, weighted.support))
    return out.joined(separator: "\n")
  }

  /// The confusion matrix with class names (rows: true class, columns: predicted).
  public var confusionTable: String {
    let w = max(8, classes.map(\.count).max() ?? 0) + 1
    func cell(_ s: String) -> String { pad(s, w, right: true) }
    var out = [cell("true \\ pred") + classes.map { cell(String($0.prefix(w - 1))) }.joined()]
    for (i, row) in confusion.enumerated() { out.append(cell(classes[i]) + row.map { cell("\($0)") }.joined()) }
    return out.joined(separator: "\n")
  }

  /// Its fields and the unweighted average recall (computed, so not a field of its own).
  public func json() -> String {
    struct WithRecall: Encodable {
      var evaluation: Evaluation
      enum Key: CodingKey { case unweightedAverageRecall }
      func encode(to encoder: Encoder) throws {
        try evaluation.encode(to: encoder)
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(evaluation.unweightedAverageRecall, forKey: .unweightedAverageRecall)
      }
    }
    return jsonText(WithRecall(evaluation: self), pretty: true)
  }
}

/// Rows of a feature file standardised with a checkpoint's scaler, and the network's probabilities for them.
final class Predictor {
  let checkpoint: Checkpoint
  let network: Network
  let batch: Int

  init(_ checkpoint: Checkpoint, path: String, batch: Int = 64, precision: Precision = .fp32) throws {
    self.checkpoint = checkpoint
    network = try checkpoint.makeNetwork(path: path, precision: precision)
    self.batch = batch
  }

  /// Probabilities `[rows.count][classes]` of already standardised rows.
  func probabilities(_ x: UnsafeBufferPointer<Float>, count: Int) -> [Float] {
    var out: [Float] = []
    out.reserveCapacity(count * network.classes)
    for start in stride(from: 0, to: count, by: batch) {
      out += network.forward(
        x.baseAddress! + start * network.inputWidth, batch: min(batch, count - start), training: false)
    }
    return out
  }
  func probabilities(_ x: [Float], count: Int) -> [Float] {
    x.withUnsafeBufferPointer { probabilities($0, count: count) }
  }

  /// The checkpoint's scaler, or under `--standardize speaker` the speakers of the feature file given to `use`.
  lazy var standardiser = RowStandardiser.columns(checkpoint.scaler)

  /// Reads each speaker's statistics from `file` when the checkpoint standardises by speaker.
  func use(_ file: FeatureFile) throws {
    if checkpoint.standardization == .speaker { standardiser = .speakers(try SpeakerStatistics(file)) }
  }

  /// Standardises `x`, row i of which is row `rows[i]` of the file given to `use`.
  func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: [Int]) { standardiser.standardise(x, rows: rows) }
  func standardise(_ x: inout [Float], rows: [Int]) { x.withUnsafeMutableBufferPointer { standardise($0, rows: rows) } }
}

/// The fewest recordings `predict` standardises as one speaker's (`--standardize speaker`): fewer give statistics
/// too noisy to stand for the voice.
public let minimumSpeakerRecordings = 10

/// The recordings (`source`) of `keys` (a file's, `FeatureFile.recordingKeys`) that `checkpoint`'s training saw, in
/// its train and validation rows, whatever file it trained on; nil when the checkpoint does not record them (the
/// keys are then not read).
public func recordingsSeen(by checkpoint: Checkpoint, keys: @autoclosure () throws -> [Int32: UInt64]) rethrows
  -> Set<Int32>?
{
  guard let seen = checkpoint.seenRecordings.map(Set.init) else { return nil }
  return Set(try keys().filter { seen.contains($0.value) }.keys)
}

/// Which rows a split name selects: from the checkpoint's saved split (train, val, test), all rows, or those of the
/// recordings its training did not see (unseen).
public func rowsOf(split: String, checkpoint: Checkpoint, file: FeatureFile, checkpointPath: String) throws -> [Int] {
  if split == "all" { return Array(0..<file.rowCount) }
  if split == "unseen" {
    let all = Array(0..<file.rowCount)
    guard let seen = try recordingsSeen(by: checkpoint, keys: file.recordingKeys(of: all)) else {
      throw Failure(
        "\(checkpointPath) does not record the recordings it trained on (imported, or written before sertrain "
          + "0.11): use --split all")
    }
    return all.filter { !seen.contains(file.source[$0]) }
  }
  guard let part = DataSplit.names.firstIndex(of: split) else {
    throw Failure("--split \(split): expected train, val, test, all or unseen")
  }
  guard let membership = checkpoint.split else {
    throw Failure("\(checkpointPath) has no saved split (an imported model): use --split all")
  }
  guard membership.count == file.rowCount else {
    throw Failure(
      "\(checkpointPath)'s split covers \(membership.count) rows but \(file.path) has \(file.rowCount): it was "
        + "trained on another file; use --split all or unseen")
  }
  if let trained = checkpoint.training.flatMap({ try? TrainingState.parse($0) })?.data,
    let difference = trained.difference(from: try DataIdentity(file))
  {
    throw Failure(
      "\(checkpointPath) was trained on other data than \(file.path) (\(difference)), so its split does not name "
        + "these rows: use --split all or unseen")
  }
  return membership.indices.filter { membership[$0] == Int8(part) }
}

/// Evaluates a checkpoint on a split of a feature file; under MPI each rank takes a strided share and the counts
/// are summed (never means of means).
public func evaluate(
  _ checkpoint: Checkpoint, path checkpointPath: String, data file: FeatureFile, split: String, comm: Communicator,
  progress: Bool = false, precision: Precision = .fp32
) throws -> Evaluation {
  let dataPath = file.path
  // Across corpora the classes are matched by name: rows of classes the model lacks are left out, and the model
  // chooses among the classes the data has (the standard cross-corpus protocol).
  let shared = checkpoint.classNames.filter { file.classes.contains($0) }
  guard shared.count >= 2 else {
    throw Failure(
      "\(dataPath)'s classes \(file.classes) and the checkpoint's \(checkpoint.classNames) share fewer than 2: nothing to "
        + "evaluate")
  }
  // The data's label -> the shared class index (nil: left out); the model's output -> the shared index.
  let dataToShared = file.classes.map { shared.firstIndex(of: $0) }
  let modelToShared = checkpoint.classNames.map { shared.firstIndex(of: $0) }
  let dataToModel = file.classes.map { checkpoint.classNames.firstIndex(of: $0) }
  let predictor = try Predictor(checkpoint, path: checkpointPath, precision: precision)
  guard predictor.network.inputWidth == file.width else {
    throw Failure("the model reads \(predictor.network.inputWidth) features, \(dataPath) has \(file.width)")
  }
  let rows = try rowsOf(split: split, checkpoint: checkpoint, file: file, checkpointPath: checkpointPath)
    .filter { dataToShared[Int(file.labels[$0])] != nil }
  try predictor.use(file)
  let (k, outputs) = (shared.count, checkpoint.classNames.count)
  let recordings = try file.recordings()
  let corpora = Array(Set(recordings.map(\.corpus).filter { !$0.isEmpty })).sorted()
  let speakers = Array(Set(recordings.map(\.speaker).filter { !$0.isEmpty })).sorted()
  let (corpusIndex, speakerIndex) = (
    Dictionary(uniqueKeysWithValues: corpora.enumerated().map { ($1, $0) }),
    Dictionary(uniqueKeysWithValues: speakers.enumerated().map { ($1, $0) })
  )
  // [confusion k*k, loss, the original rows' confusion k*k, then correct and total per augmentation, per corpus and
  // per speaker]
  let kinds = FeatureFormat.augmentationNames
  let originalAt = k * k + 1
  let augmentationAt = originalAt + k * k
  let corpusAt = augmentationAt + 2 * kinds.count
  let speakerAt = corpusAt + 2 * corpora.count
  var counts = [Double](repeating: 0, count: speakerAt + 2 * speakers.count)
  let mine = comm.share(rows)
  let bar = progress && comm.rank == 0 ? ProgressBar(label: "evaluate \(split)", unit: "rows") : nil
  var done = 0
  try file.forEachPart(of: mine, size: 256) { chunk, x in
    predictor.standardise(x, rows: chunk)
    let p = predictor.probabilities(UnsafeBufferPointer(x), count: chunk.count)
    if let bad = p.firstIndex(where: { !$0.isFinite }) {
      throw Failure(
        dataPath, "row \(chunk[bad / outputs]): the model's probabilities are not finite (NaN or infinity in the row?)")
    }
    for (i, r) in chunk.enumerated() {
      let label = Int(file.labels[r])
      let truth = dataToShared[label]!
      let model = dataToModel[label]!
      // The most probable of the shared classes.
      let best = argmax(p[(i * outputs)..<((i + 1) * outputs)]) { modelToShared[$0] != nil }
      let predicted = modelToShared[best]!
      counts[truth * k + predicted] += 1
      counts[k * k] -= Double(log(max(p[i * outputs + model], 1e-7)))
      let kind = Int(file.augmentation[r])
      if kind == 0 { counts[originalAt + truth * k + predicted] += 1 }
      let recording = recordings.isEmpty ? nil : recordings[Int(file.source[r])]
      let slots = [
        kinds.indices.contains(kind) ? augmentationAt + 2 * kind : nil,
        recording.flatMap { corpusIndex[$0.corpus] }.map { corpusAt + 2 * $0 },
        recording.flatMap { speakerIndex[$0.speaker] }.map { speakerAt + 2 * $0 },
      ]
      for at in slots.compactMap({ $0 }) {
        counts[at] += predicted == truth ? 1 : 0
        counts[at + 1] += 1
      }
    }
    done += chunk.count
    bar?.update(fraction: Double(done) / Double(max(mine.count, 1)), count: done * comm.size)
  }
  bar?.finish()
  comm.allreduceSum(&counts)
  let confusion = (0..<k).map { t in (0..<k).map { Int(counts[t * k + $0]) } }
  var e = Evaluation(split: split, loss: counts[k * k], classes: shared, confusion: confusion)
  if shared.count != file.classes.count || shared.count != checkpoint.classNames.count {
    var dropped: [String: Int] = [:]
    for l in file.labels where dataToShared[Int(l)] == nil { dropped[file.classes[Int(l)], default: 0] += 1 }
    e.leftOut = Evaluation.LeftOut(
      dataClasses: dropped, modelClasses: checkpoint.classNames.filter { !file.classes.contains($0) })
  }
  func scores(_ names: [String], from at: Int) -> [String: [Int]]? {
    let pairs = names.enumerated().map { ($1, [Int(counts[at + 2 * $0]), Int(counts[at + 2 * $0 + 1])]) }
    let present = pairs.filter { $0.1[1] > 0 }
    return present.isEmpty ? nil : Dictionary(uniqueKeysWithValues: present)
  }
  (e.byCorpus, e.bySpeaker) = (scores(corpora, from: corpusAt), scores(speakers, from: speakerAt))
  e.byAugmentation = scores(kinds, from: augmentationAt)
  e.original = Evaluation.Subset(
    Evaluation(
      split: split, loss: 0, classes: shared,
      confusion: (0..<k).map { t in (0..<k).map { Int(counts[originalAt + t * k + $0]) } }))
  if comm.rank == 0 {
    e.recordings = Set(rows.map { file.source[$0] }).count
    e.seenRecordings =
      split == "unseen" ? 0 : try recordingsSeen(by: checkpoint, keys: file.recordingKeys(of: rows))?.count
  }
  return e
}

/// One prediction: what was predicted from, the most probable class, every class's probability; or why a file
/// could not be predicted. A stored row also names its recording, true class and augmentation.
public struct Prediction: Codable, Sendable {
  public var source: String
  public var emotion: String
  public var probabilities: [String: Double]
  public var error: String?
  /// Why the answer says little (a file that ends before the offset, a silent window), as `extract` flags it.
  public var warning: String?
  public var path: String?
  public var truth: String?
  public var augmentation: String?
  /// A recording's length in seconds (audio only).
  public var seconds: Double?
  /// With `--windows`: where in the recording a window lies, in seconds (a window's own prediction)...
  public var start: Double?
  public var end: Double?
  /// ... and a recording's windows, whose probabilities its own are the mean of.
  public var windows: [Prediction]?
}

/// Where `predict --windows` reads a recording of `seconds` seconds: windows of the recipe's duration one after
/// another from its offset, the first always (as without `--windows`), each later one only when it holds at least
/// half a window of audio.
public func windowStarts(seconds: Double, recipe: FeatureRecipe) -> [Double] {
  var starts = [recipe.offset]
  while seconds - (recipe.offset + Double(starts.count) * recipe.duration) >= recipe.duration / 2 {
    starts.append(recipe.offset + Double(starts.count) * recipe.duration)
  }
  return starts
}

/// Predicts recordings (their original row, extracted as in training) with a checkpoint; with `windows`, every
/// window of each (`windowStarts`), each read as `extract` reads a recording at that offset, and the recording by the
/// mean of its windows' probabilities. Under `--standardize speaker` the recordings given are one speaker's, whose
/// statistics are over their rows and those of `reference` (more recordings of that speaker, not predicted).
public func predictFiles(
  _ given: [String], checkpoint: Checkpoint, path checkpointPath: String, precision: Precision = .fp32,
  windows: Bool = false, reference: [String] = [], note: (String) -> Void = { _ in }
) throws -> [Prediction] {
  guard reference.isEmpty || checkpoint.standardization == .speaker else {
    throw Failure(
      "--speaker-reference: \(checkpointPath) does not standardise by speaker (--standardize speaker), so it needs "
        + "no other recordings")
  }
  // The recordings read: those to predict, then the reference's (one given twice is read once).
  let toPredict = Set(given)
  let paths = given + reference.filter { !toPredict.contains($0) }
  let predictor = try Predictor(checkpoint, path: checkpointPath, precision: precision)
  var recipe = FeatureRecipe()
  recipe.layout = checkpoint.recipe?.layout ?? .seed  // rows as the model was trained on
  let extractor = FeatureExtractor(recipe: recipe)
  guard predictor.network.inputWidth == extractor.recipe.width else {
    throw Failure(
      "\(checkpointPath) reads \(predictor.network.inputWidth) features per row; audio gives the seed's "
        + "\(extractor.recipe.width): predict with --features instead")
  }
  if let recipe = checkpoint.recipe, !recipe.sameFeatures(as: extractor.recipe) {
    throw Failure(
      "\(checkpointPath) was trained on features of another recipe (\(recipe.sampleRate) Hz, offset \(recipe.offset) s, "
        + "duration \(recipe.duration) s, \(recipe.nMFCC) MFCC, \(recipe.layout) layout) than sertrain extracts: "
        + "predict with --features")
  }
  // Every file gets its line: a file that cannot be read says why, and the others are still predicted. A row per
  // recording, or per window of each.
  var x: [Float] = []
  var rows: [(recording: Int, start: Double, seconds: Double, warning: String?)] = []
  var errors: [Int: String] = [:]
  let seen = checkpoint.seenRecordings.map(Set.init) ?? []
  for (i, p) in paths.enumerated() {
    do {
      let clip = try loadClip(p, recipe: extractor.recipe)
      let seconds = Double(clip.nativeFrames) / Double(clip.nativeRate)
      var values = extractor.row(clip.samples)
      // Its original row, as extract made it on this machine: the key of a recording the model trained on.
      let trained = seen.contains(recordingKey(values)) ? "the model trained on this recording" : nil
      let flags = [clip.flag(offset: extractor.recipe.offset), trained].compactMap { $0 }
      var mine = [(i, extractor.recipe.offset, seconds, flags.isEmpty ? nil : flags.joined(separator: "; "))]
      for start in windows ? windowStarts(seconds: seconds, recipe: extractor.recipe).dropFirst() : [] {
        var at = extractor.recipe
        at.offset = start
        let window = try loadClip(p, recipe: at)
        values += extractor.row(window.samples)
        mine.append((i, start, seconds, window.flag(offset: start)))
      }
      x += values
      rows += mine
    } catch let e as AudioError {
      if i >= given.count { throw Failure(p, "--speaker-reference: \(e.message)") }
      errors[i] = e.message
    }
  }
  let w = extractor.recipe.width
  let good = Set(rows.map { paths[$0.recording] }).count
  if checkpoint.standardization != .speaker {
    predictor.standardise(&x, rows: Array(rows.indices))
  } else if good >= minimumSpeakerRecordings {
    // One speaker's statistics over the rows of the recordings given, in the order of their paths and windows (any
    // order of the arguments gives the same rows).
    let referenced = paths.count - given.count
    note(
      "\(checkpointPath) standardises each speaker by that speaker's own statistics: they are computed over the "
        + "\(given.count) recording(s) given" + (referenced == 0 ? "" : " and the \(referenced) of --speaker-reference")
        + ", as one speaker's")
    let key = { (r: Int) in (paths[rows[r].recording], rows[r].start) }
    let sorted = rows.indices.sorted { key($0) < key($1) }.flatMap { x[($0 * w)..<(($0 + 1) * w)] }
    let speaker = featureStatistics(sorted, width: w, features: extractor.recipe.columnFeatures!)
    x.withUnsafeMutableBufferPointer { speaker.standardise($0, rows: rows.count) }
  } else if let fallback = checkpoint.speakerFallback {
    // Too few for the speaker's own statistics: the training speakers' together.
    if good > 0 {
      note(
        "\(good) recording(s) are too few for a speaker's own statistics (\(minimumSpeakerRecordings) or more): "
          + "standardised by the training speakers' together instead, which costs accuracy (about down to a column-"
          + "standardised model's; EXPERIMENTS.md); --speaker-reference PATH adds more of the speaker's recordings")
    }
    x.withUnsafeMutableBufferPointer { fallback.standardise($0, rows: rows.count) }
  } else {
    throw Failure(
      "\(checkpointPath) standardises each speaker's rows by that speaker's own statistics (--standardize "
        + "speaker): predict needs at least \(minimumSpeakerRecordings) readable recordings of one speaker at "
        + "once, got \(good): --speaker-reference PATH adds more of the speaker's, which are not predicted (a "
        + "checkpoint of sertrain 0.12 or later falls back to its training speakers' statistics)")
  }
  // The reference's rows served the statistics only.
  let kept = rows.indices.filter { rows[$0].recording < given.count }
  (x, rows) = (kept.flatMap { x[($0 * w)..<(($0 + 1) * w)] }, kept.map { rows[$0] })
  let predicted = label(
    predictor.probabilities(x, count: rows.count), sources: rows.map { paths[$0.recording] },
    classes: checkpoint.classNames)
  var parts = [[Prediction]](repeating: [], count: given.count)
  for (row, p) in zip(rows, predicted) {
    var p = p
    (p.warning, p.seconds) = (row.warning, row.seconds)
    if windows { (p.start, p.end) = (row.start, min(row.start + extractor.recipe.duration, row.seconds)) }
    parts[row.recording].append(p)
  }
  return given.indices.map { i in
    guard let error = errors[i] else {
      return windows ? meanOfWindows(parts[i], classes: checkpoint.classNames) : parts[i][0]
    }
    return Prediction(source: paths[i], emotion: "", probabilities: [:], error: error)
  }
}

/// A recording's prediction from its windows': the mean of their probabilities (in double), its most probable
/// class; an error when a window's probabilities are not finite.
private func meanOfWindows(_ windows: [Prediction], classes: [String]) -> Prediction {
  var whole = windows[0]
  (whole.start, whole.end, whole.windows) = (nil, nil, windows)
  for i in windows.indices { whole.windows![i].seconds = nil }  // the recording's, said once
  if let failed = windows.first(where: { $0.error != nil }) {
    (whole.emotion, whole.probabilities, whole.error) = ("", [:], failed.error)
    return whole
  }
  let mean = classes.map { c in windows.reduce(0) { $0 + $1.probabilities[c]! } / Double(windows.count) }
  whole.probabilities = Dictionary(uniqueKeysWithValues: zip(classes, mean))
  whole.emotion = classes[argmax(mean)]
  return whole
}

/// Predicts stored rows (all, or a split) of a feature file.
public func predictRows(
  featuresPath: String, split: String, checkpoint: Checkpoint, path checkpointPath: String,
  precision: Precision = .fp32
) throws -> [Prediction] {
  let file = try FeatureFile(path: featuresPath)
  let predictor = try Predictor(checkpoint, path: checkpointPath, precision: precision)
  guard predictor.network.inputWidth == file.width else {
    throw Failure(
      "\(checkpointPath) reads \(predictor.network.inputWidth) features, \(featuresPath) has \(file.width)")
  }
  if let recipe = checkpoint.recipe, !recipe.sameFeatures(as: file.recipe) {
    throw Failure("\(featuresPath)'s feature recipe differs from the one \(checkpointPath) was trained on")
  }
  let rows = try rowsOf(split: split, checkpoint: checkpoint, file: file, checkpointPath: checkpointPath)
  var x = [Float](repeating: 0, count: rows.count * file.width)
  try x.withUnsafeMutableBufferPointer { try file.readRows(at: rows, into: $0) }
  // A stored row holding NaN or infinity gets an error, never non-finite probabilities.
  let w = file.width
  let bad = Set(rows.indices.filter { i in x[(i * w)..<((i + 1) * w)].contains { !$0.isFinite } })
  try predictor.use(file)
  predictor.standardise(&x, rows: rows)
  let recordings = try file.recordings()
  let predictions = label(
    predictor.probabilities(x, count: rows.count), sources: rows.map(String.init), classes: checkpoint.classNames)
  return zip(rows, predictions).enumerated().map { i, pair in
    var (row, p) = pair
    if bad.contains(i) { (p.emotion, p.probabilities, p.error) = ("", [:], "the stored row holds NaN or infinity") }
    p.truth = file.classes[Int(file.labels[row])]
    let (a, names) = (Int(file.augmentation[row]), FeatureFormat.augmentationNames)
    p.augmentation = names.indices.contains(a) ? names[a] : "unknown"
    let path = recordings.isEmpty ? "" : recordings[Int(file.source[row])].path
    p.path = path.isEmpty ? nil : path
    return p
  }
}

private func label(_ p: [Float], sources: [String], classes: [String]) -> [Prediction] {
  let k = classes.count
  return sources.enumerated().map { i, s in
    // Never a NaN as an answer: the model's output for this input is not a distribution.
    guard p[(i * k)..<((i + 1) * k)].allSatisfy(\.isFinite) else {
      return Prediction(
        source: s, emotion: "", probabilities: [:], error: "the model's probabilities for it are not finite")
    }
    let best = argmax(p[(i * k)..<((i + 1) * k)])
    var probs: [String: Double] = [:]
    for c in 0..<k { probs[classes[c]] = Double(p[i * k + c]) }
    return Prediction(source: s, emotion: classes[best], probabilities: probs)
  }
}
