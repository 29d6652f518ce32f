import Base
import Collective
import FeatureStore
import ModelFiles

// Standardising a feature file's rows: by a scaler fitted on some of them, or each speaker's by that speaker's own
// statistics (`Standardization`); what the trainer and the predictor both use.

/// Per-column mean and population deviation (scikit-learn's StandardScaler; a zero deviation becomes 1) of the rows
/// `rows` of `file` (all by default), summed in double from the first of them as the shift; with `features`, one
/// mean and deviation per feature over its columns (`--standardize feature`). With `comm`, each rank sums its strided
/// share of the rows and the sums are reduced, so every rank gets the same scaler.
public func fitScaler(
  _ file: FeatureFile, rows: [Int]? = nil, features: [Int]? = nil, comm: Communicator = SingleProcessCommunicator()
) throws -> Scaler {
  let rows = rows ?? Array(0..<file.rowCount)
  guard let first = rows.first else { return .identity(width: file.width) }
  var sums = ScalerSums(shift: try file.readRows(first..<(first + 1)))
  try file.forEachPart(of: comm.share(rows), size: 256) { part, x in sums.add(UnsafeBufferPointer(x), rows: part.count)
  }
  comm.allreduceSum(&sums.values)
  return sums.finish(features: features)
}

/// Per-speaker standardisation: each speaker's mean and deviation per feature (as columns), and which speaker each
/// row of a feature file is.
public struct SpeakerStatistics: Sendable {
  public var speakers: [String]
  /// The speaker of each row of the file (an index into `speakers`).
  public var speakerOfRow: [Int32]
  /// Each speaker's mean and deviation per column.
  public var scalers: [Scaler]

  /// The statistics of the speakers that `mine` selects (by index into the sorted speaker names); the others are
  /// left zero, so that sums over ranks that each took a share give all of them exactly.
  public init(_ file: FeatureFile, mine: (Int) -> Bool = { _ in true }) throws {
    guard let features = file.recipe.columnFeatures, file.width == file.recipe.width else {
      throw Failure(
        file.path,
        "--standardize speaker needs rows of whole frames (\(file.recipe.featuresPerFrame) features each); this "
          + "file's are \(file.width) wide")
    }
    let recordings = try file.recordings()
    let names = file.source.map { recordings.indices.contains(Int($0)) ? recordings[Int($0)].speaker : "" }
    if let row = names.firstIndex(where: \.isEmpty) {
      throw Failure(
        file.path,
        "row \(row) has no speaker, which --standardize speaker needs (a converted CSV has none: extract the corpus, "
          + "with a manifest naming speakers if the file names do not)")
    }
    speakers = Array(Set(names)).sorted()
    let index = Dictionary(uniqueKeysWithValues: speakers.enumerated().map { ($1, Int32($0)) })
    speakerOfRow = names.map { index[$0]! }
    var rowsOf = [[Int]](repeating: [], count: speakers.count)
    for (r, s) in speakerOfRow.enumerated() { rowsOf[Int(s)].append(r) }
    let empty = Scaler(mean: [Float](repeating: 0, count: file.width), scale: [Float](repeating: 0, count: file.width))
    scalers = [Scaler](repeating: empty, count: speakers.count)
    for s in speakers.indices where mine(s) {
      // In an order of the recordings' own (path, augmentation), so that the file's order changes no bit.
      let rows = rowsOf[s].sorted {
        let (a, b) = (recordings[Int(file.source[$0])].path, recordings[Int(file.source[$1])].path)
        return a != b
          ? a < b
          : file.augmentation[$0] != file.augmentation[$1]
            ? file.augmentation[$0] < file.augmentation[$1] : $0 < $1
      }
      var x = [Float](repeating: 0, count: rows.count * file.width)
      try x.withUnsafeMutableBufferPointer { try file.readRows(at: rows, into: $0) }
      scalers[s] = featureStatistics(x, width: file.width, features: features)
    }
  }

  /// Every speaker's means, then every speaker's deviations, as one list of doubles, and back (for a sum over ranks).
  public var values: [Double] { (scalers.map(\.mean) + scalers.map(\.scale)).flatMap { $0.map(Double.init) } }
  public mutating func set(_ values: [Double]) {
    let w = scalers.first?.width ?? 0
    for s in speakers.indices {
      scalers[s] = Scaler(
        mean: (0..<w).map { Float(values[s * w + $0]) },
        scale: (0..<w).map { Float(values[(speakers.count + s) * w + $0]) })
    }
  }

  /// Standardises `x`, row i of which is row `rows[i]` of the file.
  public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: [Int]) {
    let w = scalers.first?.width ?? 0
    for (i, r) in rows.enumerated() {
      scalers[Int(speakerOfRow[r])].standardise(
        UnsafeMutableBufferPointer(rebasing: x[(i * w)..<((i + 1) * w)]), rows: 1)
    }
  }
}

/// How a model's rows are standardised: by the scaler's mean and scale per column (`column`, `feature`, `none`:
/// the identity), or each row by its speaker's statistics (`speaker`). Training and prediction both go through it.
public enum RowStandardiser {
  case columns(Scaler)
  case speakers(SpeakerStatistics)

  /// Standardises `x`, row i of which is row `rows[i]` of the feature file (the speakers' statistics are that
  /// file's).
  public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: [Int]) {
    switch self {
    case .columns(let scaler): scaler.standardise(x, rows: rows.count)
    case .speakers(let statistics): statistics.standardise(x, rows: rows)
    }
  }
}
