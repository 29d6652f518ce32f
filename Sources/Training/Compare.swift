import Base
import FoundationEssentials
import Schema

#if canImport(Glibc)
  import Glibc
#endif

// `sertrain compare`: two models' cross-validations on the same folds, paired by fold, with the test for k-fold
// cross-validation that counts the overlap of the folds' training sets.

/// A cross-validation's `cv.csv`: per fold, its held-out groups, test rows, metrics and training rows.
public struct CrossValidationTable: Sendable {
  public struct Fold: Sendable {
    public var fold: Int
    public var groups: String
    public var rows: Int
    /// The rows the fold's model trained on; where an older cv.csv does not say, every row not held out
    /// (validation included).
    public var trainRows: Int
    /// The metrics of `CrossValidationSummary.metrics` the file gives as numbers, by name (an older cv.csv has
    /// no original_ columns; a converted CSV's rows have no original rows: NaN).
    public var metrics: [String: Double]
  }
  /// The metrics every cv.csv gives.
  static let required = ["accuracy", "macro_f1", "uar"]
  public var path: String
  /// `speakers` or `recordings`: what the folds hold out.
  public var kind: String
  public var folds: [Fold]
  /// Every fold's test rows together: the data's rows.
  public var totalRows: Int

  /// Reads `DIR/cv.csv` (or the file itself), as `cv` writes it (its columns by name: those of older versions too).
  public init(_ directory: String) throws {
    path = directory.hasSuffix(".csv") ? directory : directory + "/cv.csv"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
      throw Failure(path, "cannot be read: give a directory `sertrain cv` wrote (its cv.csv)")
    }
    let lines = text.split(separator: "\n").map(String.init)
    let header = lines.first?.split(separator: ",").map(String.init) ?? []
    let column = Dictionary(header.enumerated().map { ($1, $0) }) { first, _ in first }
    guard header.count >= 6, header[0] == "fold", header[2] == "rows", Self.required.allSatisfy({ column[$0] != nil })
    else {
      throw Failure(
        path, "line 1 is not the header of a cv.csv (fold,speakers,rows,accuracy,macro_f1,uar,...,train_rows)")
    }
    kind = header[1]
    (folds, totalRows) = ([], 0)
    for (n, line) in lines.enumerated().dropFirst() {
      // fold, groups (quoted when a name holds a comma), rows, the metrics, loss and (not in older files) train rows
      let cells = csvCells(line, separator: ",")
      guard cells.count == header.count else {
        throw Failure(path, "line \(n + 1): expected \(header.count) cells, got \(cells.count)")
      }
      if cells[0] == "mean" {
        totalRows = Int(cells[2]) ?? 0
        continue
      }
      if cells[0] == "sd" { continue }
      guard let fold = Int(cells[0]), let rows = Int(cells[2]) else {
        throw Failure(path, "line \(n + 1): expected a fold number and its rows")
      }
      var metrics: [String: Double] = [:]
      for (name, _, _) in CrossValidationSummary.metrics {
        if let at = column[name], let v = Double(cells[at]), v.isFinite { metrics[name] = v }
      }
      guard Self.required.allSatisfy({ metrics[$0] != nil }) else {
        throw Failure(path, "line \(n + 1): the accuracy, macro F1 and UAR are not numbers")
      }
      var trainRows = 0  // an older cv.csv's: every row not held out, once the total is known
      if let at = column["train_rows"] {
        guard let t = Int(cells[at]), t >= 0 else { throw Failure(path, "line \(n + 1): train_rows is not a count") }
        trainRows = t
      }
      folds.append(Fold(fold: fold, groups: cells[1], rows: rows, trainRows: trainRows, metrics: metrics))
    }
    guard folds.count >= 2 else { throw Failure(path, "holds \(folds.count) fold(s): nothing to pair") }
    if totalRows == 0 { totalRows = folds.reduce(0) { $0 + $1.rows } }
    if column["train_rows"] == nil { for i in folds.indices { folds[i].trainRows = totalRows - folds[i].rows } }
  }
}

/// One metric compared: the candidate minus the base, fold by fold.
public struct PairedDifference: Codable, Sendable {
  public var metric: String
  public var base: Double
  public var candidate: Double
  /// Mean, sample deviation and standard error (deviation / √n) of the n paired differences.
  public var mean: Double
  public var sd: Double
  public var standardError: Double
  /// Bouckaert and Frank's corrected repeated k-fold cross-validation t (n - 1 degrees of freedom) and its
  /// two-sided p.
  public var t: Double
  public var p: Double
  public var better: Int
  public var worse: Int
}

/// Pairs each base cross-validation with its candidate, fold by fold (the same fold must hold out the same speakers
/// or recordings), and compares the metrics over all the pairs' folds.
///
/// A plain paired t-test over folds is too confident: each fold's model trained on most of the others' rows, so
/// the differences are correlated. Bouckaert and Frank's correction (2004, for r repetitions of k folds) scales
/// the variance of the mean difference by `1/n + n_test/n_train` instead of `1/n` (n = k·r differences); with
/// n_test/n_train the mean over folds of the fold's test rows against the rows its model trained on. The correction
/// is made for repetitions that partition the data anew; `partitions` counts the different partitions into folds
/// among the `pairs` compared (seeds that draw the same folds, as a few large groups do, repeat one).
public func compareCrossValidations(_ pairs: [(base: String, candidate: String)]) throws -> (
  folds: Int, kind: String, differences: [PairedDifference], partitions: Int, pairs: Int
) {
  var (base, candidate): ([[String: Double]], [[String: Double]]) = ([], [])
  var ratios: [Double] = []
  var kind = ""
  var partitions: Set<[String]> = []
  let pairs = try pairs.flatMap(pairRepeats)
  for (b, c) in pairs {
    let (x, y) = (try CrossValidationTable(b), try CrossValidationTable(c))
    guard x.kind == y.kind, x.folds.count == y.folds.count else {
      throw Failure(
        y.path,
        "holds \(y.folds.count) folds of \(y.kind), \(x.path) \(x.folds.count) of \(x.kind): not the same folds")
    }
    if kind.isEmpty { kind = x.kind }
    partitions.insert(x.folds.map(\.groups).sorted())
    guard x.kind == kind else { throw Failure(x.path, "holds out \(x.kind), the first pair \(kind)") }
    for (f, g) in zip(x.folds, y.folds) {
      guard f.fold == g.fold, f.groups == g.groups, f.rows == g.rows else {
        throw Failure(
          y.path,
          "fold \(g.fold) holds out \(g.groups) (\(g.rows) rows), \(x.path)'s fold \(f.fold) \(f.groups) (\(f.rows) "
            + "rows): not the same folds (run both with the same data, --folds, --by and --seed)")
      }
      base.append(f.metrics)
      candidate.append(g.metrics)
      ratios.append(Double(f.rows) / Double(max(1, f.trainRows)))
    }
  }
  let n = Double(base.count)
  let ratio = ratios.reduce(0, +) / n
  // The metrics every fold of both sides gives (the original rows' only where every cv.csv has them).
  let names = CrossValidationSummary.metrics.map(\.name).filter { m in (base + candidate).allSatisfy { $0[m] != nil } }
  let differences = names.map { m -> PairedDifference in
    let (x, y) = (base.map { $0[m]! }, candidate.map { $0[m]! })
    let d = zip(x, y).map { $1 - $0 }
    let (mean, sd) = meanAndSD(d)
    let t = sd > 0 ? mean / (sd * (1 / n + ratio).squareRoot()) : (mean == 0 ? 0 : mean > 0 ? .infinity : -.infinity)
    return PairedDifference(
      metric: m, base: x.reduce(0, +) / n,
      candidate: y.reduce(0, +) / n, mean: mean, sd: sd, standardError: sd / n.squareRoot(),
      t: t, p: studentTwoSidedP(t: t, degreesOfFreedom: n - 1), better: d.filter { $0 > 0 }.count,
      worse: d.filter { $0 < 0 }.count)
  }
  return (base.count, kind, differences, partitions.count, pairs.count)
}

/// A pair of cross-validations as pairs of single ones: two directories of `cv --repeats` (`repeat-1`, ...; no
/// `cv.csv` of their own) pair repeat by repeat, and must hold as many; anything else is one pair.
func pairRepeats(_ pair: (base: String, candidate: String)) throws -> [(base: String, candidate: String)] {
  func repeats(_ path: String) -> [String] {
    guard !path.hasSuffix(".csv"), access(path + "/cv.csv", F_OK) != 0 else { return [] }
    return (1...).lazy.map { "\(path)/repeat-\($0)" }.prefix { access($0 + "/cv.csv", F_OK) == 0 }.map { $0 }
  }
  let (b, c) = (repeats(pair.base), repeats(pair.candidate))
  if b.isEmpty && c.isEmpty { return [pair] }
  guard b.count == c.count else {
    throw Failure(
      pair.candidate,
      "holds \(c.count) repeated cross-validation(s) (repeat-i/cv.csv), \(pair.base) \(b.count): pair runs of as "
        + "many --repeats")
  }
  return Array(zip(b, c)).map { (base: $0.0, candidate: $0.1) }
}

/// The two-sided p of Student's t with `degreesOfFreedom`: `I_{ν/(ν+t²)}(ν/2, 1/2)`.
public func studentTwoSidedP(t: Double, degreesOfFreedom v: Double) -> Double {
  guard t.isFinite else { return t.isNaN ? .nan : 0 }
  return regularizedIncompleteBeta(v / (v + t * t), a: v / 2, b: 0.5)
}

/// The regularized incomplete beta function `I_x(a, b)`, from its continued fraction (evaluated by the modified
/// Lentz method) where it converges fast, `x < (a + 1) / (a + b + 2)`, and `1 - I_{1-x}(b, a)` elsewhere.
func regularizedIncompleteBeta(_ x: Double, a: Double, b: Double) -> Double {
  if x <= 0 { return 0 }
  if x >= 1 { return 1 }
  if x >= (a + 1) / (a + b + 2) { return 1 - regularizedIncompleteBeta(1 - x, a: b, b: a) }
  let logBeta: Double = lgamma(a) + lgamma(b) - lgamma(a + b)
  let front = exp(a * log(x) + b * log(1 - x) - logBeta) / a
  let tiny = 1e-300
  func nonzero(_ v: Double) -> Double { abs(v) < tiny ? tiny : v }
  // The fraction 1 / (1 + d1 / (1 + d2 / (1 + ...))): d(2m+1) = -(a+m)(a+b+m)x / ((a+2m)(a+2m+1)),
  // d(2m) = m(b-m)x / ((a+2m-1)(a+2m)).
  var c = 1.0
  var d = 1 / nonzero(1 - (a + b) * x / (a + 1))
  var value = d
  for m in 1...500 {
    let m = Double(m)
    let odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
    let even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
    for numerator in [even, odd] {
      d = 1 / nonzero(1 + numerator * d)
      c = nonzero(1 + numerator / c)
      value *= d * c
    }
    if abs(d * c - 1) < 1e-15 { break }
  }
  return front * value
}
