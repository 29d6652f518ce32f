import Base
import FeatureStore
import HDF5
import ModelFiles

/// A human-readable description of a feature file: schema, rows, classes, recipe.
public func describeFeatureFile(_ f: FeatureFile) throws -> String {
  var out: [String] = []
  let r = f.recipe
  out.append("\(f.path): sertrain feature file v\(f.version)")
  out.append("  rows          \(f.rowCount) x \(f.width) float32 (chunks of \(FeatureFormat.chunkRows) rows)")
  let recordings = try f.recordings()
  let speakers = Set(recordings.map(\.speaker).filter { !$0.isEmpty })
  var line = "  recordings    \(recordings.count)"
  if let rpr = f.rowsPerRecording { line += " (\(rpr) rows each)" }
  if !speakers.isEmpty { line += ", \(speakers.count) speakers" }
  out.append(line)
  let corpora = Dictionary(grouping: recordings.map(\.corpus).filter { !$0.isEmpty }, by: { $0 })
  if !corpora.isEmpty {
    out.append(
      "  corpora       " + corpora.keys.sorted().map { "\($0) \(corpora[$0]!.count)" }.joined(separator: ", "))
  }
  var aug = [Int8: Int]()
  for a in f.augmentation { aug[a, default: 0] += 1 }
  let augText = aug.keys.sorted().map { k -> String in
    let name =
      k >= 0 && Int(k) < FeatureFormat.augmentationNames.count ? FeatureFormat.augmentationNames[Int(k)] : "unknown"
    return "\(name) \(aug[k]!)"
  }
  out.append("  augmentation  " + augText.joined(separator: ", "))
  out.append("  classes       \(f.classes.count)")
  let counts = f.classCounts()
  let nameWidth = f.classes.map(\.count).max() ?? 0
  for (i, c) in f.classes.enumerated() {
    let pct = f.rowCount > 0 ? fixed(100 * Double(counts[i]) / Double(f.rowCount), 1) : "0"
    out.append("    \(i)  \(c.padding(nameWidth))  \(String(counts[i]).leftPadding(7))  \(pct)%")
  }
  out.append(
    "  recipe        \(r.origin == "convert" ? "converted from CSV (assumed seed recipe): " : "")sr \(r.sampleRate) Hz, offset \(r.offset) s, duration \(r.duration) s, frame \(r.frameLength), hop \(r.hopLength), \(r.nMFCC) MFCC over \(r.nMels) mels, resampler \(r.resampler)"
  )
  out.append("  layout        \(r.layout.rawValue)")
  let short = try shortRows(f)
  if !short.isEmpty {
    let byCorpus = Dictionary(
      grouping: short.map { recordings.isEmpty ? "" : recordings[Int(f.source[$0.row])].corpus }
    ) {
      $0
    }
    let missing = short.map(\.missing).sorted()
    out.append(
      "  short rows    \(short.count) of \(f.rowCount) from clips of fewer than \(r.framesPerRow) frames "
        + "(missing frames: median \(missing[missing.count / 2]), max \(missing.last!))"
        + (byCorpus.keys.allSatisfy(\.isEmpty)
          ? "" : "; by corpus " + byCorpus.keys.sorted().map { "\($0) \(byCorpus[$0]!.count)" }.joined(separator: ", "))
        + (r.layout == .seed
          ? "; in the seed layout their RMS and MFCC columns are shifted (extract --layout frames)" : ""))
  }
  if let src = try? f.file.stringAttribute("converted_from") { out.append("  converted     from \(src)") }
  out.append("  datasets      " + (try f.file.children()).joined(separator: ", "))
  return out.joined(separator: "\n")
}

/// The rows whose clip had fewer frames than a full one, and how many it lacked: the row ends in zeros where those
/// frames' values would be (a whole frame, 2 + nMFCC values, in the seed and frames layouts; nMFCC in the aligned
/// one's last block). A value that is exactly zero at the end of a full row is rare enough not to matter.
public func shortRows(_ f: FeatureFile) throws -> [(row: Int, missing: Int)] {
  let r = f.recipe
  let perFrame = r.layout == .aligned ? r.nMFCC : r.featuresPerFrame
  var out: [(row: Int, missing: Int)] = []
  var start = 0
  while start < f.rowCount {
    let end = min(start + 1024, f.rowCount)
    let rows = try f.readRows(start..<end)
    for i in 0..<(end - start) {
      let row = rows[(i * f.width)..<((i + 1) * f.width)]
      let zeros = row.count - 1 - (row.lastIndex { $0 != 0 } ?? (row.startIndex - 1)) + row.startIndex
      if zeros / perFrame > 0 { out.append((start + i, min(zeros / perFrame, r.framesPerRow))) }
    }
    start = end
  }
  return out
}

/// A human-readable description of a checkpoint: model, classes, scaler, optimizer and training state.
public func describeCheckpoint(_ path: String) throws -> String {
  let c = try Checkpoint.read(path)
  let network = try c.makeNetwork(path: path)
  var out = ["\(path): sertrain checkpoint v\(Checkpoint.version)"]
  out.append(
    "  model         \(c.spec.name): \(network.plans.count) layers, \(network.trainableCount + network.nonTrainableCount) parameters (\(network.trainableCount) trainable), input \(c.spec.inputLength) x \(c.spec.inputChannels)"
  )
  out.append("  classes       \(c.classNames.count): \(c.classNames.joined(separator: ", "))")
  let identity = c.scaler.isIdentity
  out.append(
    "  scaler        "
      + (c.standardization == .speaker
        ? "per speaker (each speaker's rows by that speaker's own statistics per feature"
          + (c.speakerFallback == nil ? ")" : "; fewer than 10 recordings by the train rows' statistics per feature)")
        : identity
          ? "identity (no standardisation)"
          : "standardise \(c.scaler.width) columns" + (c.standardization == .feature ? " (by feature)" : "")))
  out.append(
    "  optimizer     Adam, learning rate \(Float(c.learningRate)), \(c.adamIterations) steps\(c.adamM == nil ? ", no moments" : "")"
  )
  if let text = c.training, let t = try? TrainingState.parse(text) {
    var line =
      "  training      \(t.finished ? "finished" : "in progress"): \(t.epoch) of \(t.config.epochs) epochs done"
    if t.step > 0 { line += " and \(t.step) steps of epoch \(t.epoch + 1)" }
    line += ", \(t.ranks) rank(s), batch \(t.config.batchSize), split \(t.config.split.rawValue)"
    if let from = t.config.initFrom { line += ", started from \(from)" }
    out.append(line)
    if let best = t.bestValue, let epoch = t.bestEpoch {
      out.append("  best          \(t.config.earlyStopping.monitor) \(fixed(best, 4)) at epoch \(epoch)")
    }
    func describe(_ r: HistoryRow) -> String {
      "loss \(fixed(r.loss, 4)), accuracy \(fixed(r.accuracy, 4))"
        + (r.valAccuracy.map { ", val_loss \(fixed(r.valLoss ?? .nan, 4)), val_accuracy \(fixed($0, 4))" } ?? "")
    }
    if let last = t.history.last { out.append("  last epoch    \(last.epoch): \(describe(last))") }
    if let w = t.weightsEpoch, w != t.history.last?.epoch, let row = t.history.first(where: { $0.epoch == w }) {
      out.append("  weights       of epoch \(w), restored as the best by early stopping: \(describe(row))")
    }
  }
  if let split = c.split {
    let counts = DataSplit(membership: split).sizes
    out.append(
      "  split         train \(counts[0]), val \(counts[1]), test \(counts[2]) rows"
        + (counts[3] > 0 ? ", \(counts[3]) left out (--limit-rows)" : "")
        + (c.seenRecordings.map { "; saw \($0.count) recordings (evaluate --split unseen leaves them out)" } ?? ""))
  }
  out.append("  digest        \(weightsDigest(c)) (parameters and moving statistics, bit for bit)")
  return out.joined(separator: "\n")
}

/// FNV-1a over the bits of the parameters and the moving statistics: equal digests, equal weights.
public func weightsDigest(_ c: Checkpoint) -> String {
  var h = FNV1a()
  for v in c.parameters { h.add(v.bitPattern) }
  for v in c.state { h.add(v.bitPattern) }
  return h.hex
}
