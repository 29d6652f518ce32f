import Base

/// A per-column standardisation `x -> (x - mean) / scale`: a fitted StandardScaler (a checkpoint's), one speaker's
/// statistics, or the identity. Every path that standardises rows goes through `standardise`.
public struct Scaler: Equatable, Sendable {
  public var mean: [Float]
  public var scale: [Float]

  public init(mean: [Float], scale: [Float]) {
    precondition(mean.count == scale.count, "Scaler: mean and scale of different widths")
    (self.mean, self.scale) = (mean, scale)
  }

  /// Mean 0 and scale 1 for `width` columns.
  public static func identity(width: Int) -> Scaler {
    Scaler(mean: [Float](repeating: 0, count: width), scale: [Float](repeating: 1, count: width))
  }

  public var width: Int { mean.count }
  public var isIdentity: Bool { mean.allSatisfy { $0 == 0 } && scale.allSatisfy { $0 == 1 } }

  /// `x = (x - mean) / scale` for every one of `rows` rows of `x`.
  public func standardise(_ x: UnsafeMutableBufferPointer<Float>, rows: Int) {
    let w = width
    mean.withUnsafeBufferPointer { m in
      scale.withUnsafeBufferPointer { s in
        for r in 0..<rows {
          let row = x.baseAddress! + r * w
          for c in 0..<w { row[c] = (row[c] - m[c]) / s[c] }
        }
      }
    }
  }
}

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
  public func finish(features: [Int]? = nil) -> Scaler {
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
    return Scaler(mean: mean, scale: scale)
  }
}

extension ScalerSums {
  /// Per feature: the columns' means averaged, and the squared deviations from the columns' means plus each column's
  /// rows times its mean's squared distance from the feature's (Chan et al.'s combination), over all its values.
  fileprivate func pooled(_ features: [Int]) -> Scaler {
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
private func perColumn(_ features: [Int], mean: [Double], squares: [Double], values: [Double]) -> Scaler {
  let scale = squares.indices.map { f -> Float in
    let variance = squares[f] / max(values[f], 1)
    return variance > 0 ? Float(variance.squareRoot()) : 1
  }
  return Scaler(mean: features.map { Float(mean[$0]) }, scale: features.map { scale[$0] })
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

/// One mean and population deviation per feature over every value of that feature in `x` (rows of `width`, each
/// column's feature in `features`), in two passes in double, in row order; given to each column of the feature. A
/// zero deviation becomes 1.
public func featureStatistics(_ x: [Float], width: Int, features: [Int]) -> Scaler {
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
