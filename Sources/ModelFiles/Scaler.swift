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

  /// The mean and the population deviation per column (a zero deviation becomes 1, as scikit-learn does).
  public func finish() -> (mean: [Float], scale: [Float]) {
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
