import Base
import FeatureStore

/// scikit-learn's StandardScaler, fitted in one streaming pass: per-column sums of `x - shift` and of its square
/// in double, with a reference row as the shift so that the one-pass variance does not cancel. The sums can be
/// added across ranks (`values`) before `finish`.
public struct ScalerSums {
  let shift: [Double]
  /// `[Σ(x-shift) per column, Σ(x-shift)² per column, rows]`.
  public var values: [Double]

  public init(shift: [Float]) {
    self.shift = shift.map(Double.init)
    values = [Double](repeating: 0, count: 2 * shift.count + 1)
  }

  var width: Int { shift.count }

  /// Adds `rows` rows of `width` floats.
  public mutating func add(_ x: UnsafeBufferPointer<Float>, rows: Int) {
    let w = width
    for r in 0..<rows {
      for c in 0..<w {
        let v = Double(x[r * w + c]) - shift[c]
        values[c] += v
        values[w + c] += v * v
      }
    }
    values[2 * w] += Double(rows)
  }

  /// The mean and the population deviation per column (a zero deviation becomes 1, as scikit-learn does); with
  /// `features` (each column's feature), one mean and deviation per feature over all its columns, given to each of
  /// them (`--standardize feature`).
  public func finish(features: [Int]? = nil) -> (mean: [Float], scale: [Float]) {
    if let features { return pooled(features) }
    let w = width
    let n = max(values[2 * w], 1)
    var mean = [Float](repeating: 0, count: w)
    var scale = [Float](repeating: 1, count: w)
    for c in 0..<w {
      let m = values[c] / n
      let variance = max(values[w + c] / n - m * m, 0)
      mean[c] = Float(m + shift[c])
      scale[c] = variance > 0 ? Float(variance.squareRoot()) : 1
    }
    return (mean, scale)
  }
}

extension ScalerSums {
  /// Per feature: the columns' means averaged, and the squared deviations from the columns' means plus each column's
  /// rows times its mean's squared distance from the feature's (Chan et al.'s combination), over all its values.
  fileprivate func pooled(_ features: [Int]) -> (mean: [Float], scale: [Float]) {
    let (w, n) = (width, max(values[2 * width], 1))
    let count = (features.max() ?? -1) + 1
    var (columns, sum) = ([Double](repeating: 0, count: count), [Double](repeating: 0, count: count))
    let columnMean = (0..<w).map { values[$0] / n + shift[$0] }
    for c in 0..<w {
      columns[features[c]] += 1
      sum[features[c]] += columnMean[c]
    }
    let mean = (0..<count).map { sum[$0] / max(columns[$0], 1) }
    var squares = [Double](repeating: 0, count: count)
    for c in 0..<w {
      let (f, m) = (features[c], values[c] / n)
      let d = columnMean[c] - mean[f]
      squares[f] += max(values[w + c] - n * m * m, 0) + n * d * d
    }
    return perColumn(features, mean: mean, squares: squares, values: columns.map { n * $0 })
  }
}

/// Each feature's mean, and the population deviation from its squared deviations over `values` values (a zero
/// deviation becomes 1, as scikit-learn's does), given to every column of that feature.
private func perColumn(_ features: [Int], mean: [Double], squares: [Double], values: [Double]) -> (
  mean: [Float], scale: [Float]
) {
  let scale = squares.indices.map { f -> Float in
    let variance = squares[f] / max(values[f], 1)
    return variance > 0 ? Float(variance.squareRoot()) : 1
  }
  return (features.map { Float(mean[$0]) }, features.map { scale[$0] })
}

/// How rows are standardised before the network reads them (`--standardize`).
public enum Standardization: String, Codable, Sendable, CaseIterable {
  /// The rows as stored.
  case none
  /// scikit-learn's StandardScaler, the seed's: each column by its mean and deviation over the train rows.
  case column
  /// Each feature (ZCR, RMS, MFCC c) by one mean and deviation over all its frames of the train rows.
  case feature
  /// Each speaker's rows by that speaker's own mean and deviation per feature, over all of the speaker's rows
  /// (labels are never read): what differs between voices is taken out. A model trained so needs a speaker's
  /// recordings together to predict.
  case speaker
}

/// Per-speaker standardisation: each speaker's mean and deviation per feature (as columns), and which speaker each
/// row of a feature file is.
public struct SpeakerStatistics: Sendable {
  public var speakers: [String]
  /// The speaker of each row of the file (an index into `speakers`).
  public var speakerOfRow: [Int32]
  public var mean: [[Float]]
  public var scale: [[Float]]

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
    let empty = [Float](repeating: 0, count: file.width)
    (mean, scale) = (
      [[Float]](repeating: empty, count: speakers.count), [[Float]](repeating: empty, count: speakers.count)
    )
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
      (mean[s], scale[s]) = featureStatistics(x, width: file.width, features: features)
    }
  }

  /// Both tables as one list of doubles, and back (for a sum over ranks).
  public var values: [Double] { (mean + scale).flatMap { $0.map(Double.init) } }
  public mutating func set(_ values: [Double]) {
    let w = mean.first?.count ?? 0
    for s in speakers.indices {
      mean[s] = (0..<w).map { Float(values[s * w + $0]) }
      scale[s] = (0..<w).map { Float(values[(speakers.count + s) * w + $0]) }
    }
  }

  /// Standardises `x`, row i of which is row `rows[i]` of the file.
  public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: [Int]) {
    let w = mean.first?.count ?? 0
    for (i, r) in rows.enumerated() {
      let s = Int(speakerOfRow[r])
      ModelFiles.standardise(
        UnsafeMutableBufferPointer(rebasing: x[(i * w)..<((i + 1) * w)]), rows: 1, mean: mean[s], scale: scale[s])
    }
  }
}

/// How a model's rows are standardised: by the scaler's mean and scale per column (`column`, `feature`, `none`:
/// the identity), or each row by its speaker's statistics (`speaker`). Training and prediction both go through it.
public enum RowStandardiser {
  case columns(mean: [Float], scale: [Float])
  case speakers(SpeakerStatistics)

  /// Standardises `x`, row i of which is row `rows[i]` of the feature file (the speakers' statistics are that
  /// file's).
  public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: [Int]) {
    switch self {
    case .columns(let mean, let scale): ModelFiles.standardise(x, rows: rows.count, mean: mean, scale: scale)
    case .speakers(let statistics): statistics.standardise(x, rows: rows)
    }
  }
}

/// One mean and population deviation per feature over every value of that feature in `x` (rows of `width`, each
/// column's feature in `features`), in two passes in double, in row order; given to each column of the feature. A
/// zero deviation becomes 1.
public func featureStatistics(_ x: [Float], width: Int, features: [Int]) -> (mean: [Float], scale: [Float]) {
  let count = (features.max() ?? -1) + 1
  var (n, sum) = ([Double](repeating: 0, count: count), [Double](repeating: 0, count: count))
  for i in x.indices {
    let f = features[i % width]
    n[f] += 1
    sum[f] += Double(x[i])
  }
  let mean = (0..<count).map { sum[$0] / max(n[$0], 1) }
  var squares = [Double](repeating: 0, count: count)
  for i in x.indices {
    let f = features[i % width]
    let d = Double(x[i]) - mean[f]
    squares[f] += d * d
  }
  return perColumn(features, mean: mean, squares: squares, values: n)
}

/// `x = (x - mean) / scale` for every row of `x` (rows of `mean.count` floats).
public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: Int, mean: [Float], scale: [Float]) {
  let w = mean.count
  mean.withUnsafeBufferPointer { m in
    scale.withUnsafeBufferPointer { s in
      for r in 0..<rows {
        let row = x.baseAddress! + r * w
        for c in 0..<w { row[c] = (row[c] - m[c]) / s[c] }
      }
    }
  }
}
