import Schema
import XCTest
import _TestSupport

@testable import Training

/// `sertrain compare`: cross-validations paired by fold, and the corrected t-test's p against SciPy's.
final class CompareTests: XCTestCase {
  /// SciPy 1.17.1: `2 * scipy.stats.t.sf(abs(t), df)` and `scipy.special.betainc(a, b, x)`.
  func testStudentPAndTheIncompleteBetaMatchSciPy() {
    let p: [(t: Double, df: Double, p: Double)] = [
      (0.315, 14, 0.7574076563242632), (2.0, 9, 0.07655282377070101), (-2.1871019255786517, 3, 0.11657035940329354),
      (4.9, 9, 0.0008476473090144006), (0.5, 1, 0.7048327646991335), (10.0, 29, 6.599862576433525e-11),
      (1e-3, 4, 0.99925000015625), (30.0, 2, 0.001109262681959659),
    ]
    for (t, df, expected) in p {
      let got = studentTwoSidedP(t: t, degreesOfFreedom: df)
      XCTAssertEqual(got, expected, accuracy: expected * 1e-10, "t \(t), df \(df)")
    }
    XCTAssertEqual(studentTwoSidedP(t: .infinity, degreesOfFreedom: 3), 0)
    XCTAssertEqual(studentTwoSidedP(t: 0, degreesOfFreedom: 3), 1)
    let beta: [(x: Double, a: Double, b: Double, value: Double)] = [
      (0.3, 2, 3, 0.34829999999999994), (0.9, 0.5, 0.5, 0.7951672353008665), (0.01, 5, 0.5, 2.4712578086395438e-11),
      (0.999, 7.5, 0.5, 0.9041013827549699),
    ]
    for (x, a, b, expected) in beta {
      XCTAssertEqual(
        regularizedIncompleteBeta(x, a: a, b: b), expected, accuracy: expected * 1e-10, "I_\(x)(\(a), \(b))")
    }
  }

  /// A cv.csv as `cv` writes it: per fold (speakers, rows, accuracy, macro F1, UAR, given `original` the original
  /// rows' accuracy (the accuracy plus it, or NaN) and UAR, loss and, given `trainRows`, the rows its model trained
  /// on), then mean and sd; without `original` and `trainRows` as older versions wrote it.
  func write(_ dir: String, _ folds: [(String, Int, Double)], trainRows: Int? = nil, original: Double? = nil) throws {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let last = trainRows.map { ",\($0)" } ?? ""
    var csv =
      "fold,speakers,rows,accuracy,macro_f1,uar" + (original == nil ? "" : ",original_accuracy,original_uar") + ",loss"
      + (trainRows == nil ? "" : ",train_rows") + "\n"
    for (i, (speakers, rows, accuracy)) in folds.enumerated() {
      let originals = original.map { ",\(accuracy + $0),\(accuracy + $0 - 0.05)" } ?? ""
      csv +=
        "\(i + 1),\(csvCell(speakers)),\(rows),\(accuracy),\(accuracy - 0.1),\(accuracy - 0.05)\(originals),1.5\(last)\n"
    }
    let empty = (trainRows == nil ? "" : ",") + (original == nil ? "" : ",0,0")
    csv += "mean,,\(folds.reduce(0) { $0 + $1.1 }),0,0,0,0\(empty)\nsd,,,0,0,0,0\(empty)\n"
    try csv.write(toFile: dir + "/cv.csv", atomically: true, encoding: .utf8)
  }

  func testFoldsArePairedAndTheCorrectedTCountsTheSharedTrainingRows() throws {
    let dir = temporaryDirectory(self)
    // Differences 0.1, 0.05, 0.1: mean 1/12, sd 1/sqrt(1200); each fold tests 10 of 30 rows, so the variance of
    // the mean is sd² (1/3 + 10/20) and t = sqrt(10), 2 degrees of freedom.
    try write(dir + "/a", [("s1 s2", 10, 0.5), ("s3", 10, 0.6), ("s4,x", 10, 0.7)])
    try write(dir + "/b", [("s1 s2", 10, 0.6), ("s3", 10, 0.65), ("s4,x", 10, 0.8)])
    let (folds, kind, d, _, _) = try compareCrossValidations([(dir + "/a", dir + "/b")])
    XCTAssertEqual(folds, 3)
    XCTAssertEqual(kind, "speakers")
    XCTAssertEqual(d.map(\.metric), ["accuracy", "macro_f1", "uar"])
    let accuracy = d[0]
    XCTAssertEqual(accuracy.base, 0.6, accuracy: 1e-15)
    XCTAssertEqual(accuracy.candidate, 0.6833333333333333, accuracy: 1e-15)
    XCTAssertEqual(accuracy.mean, 1.0 / 12, accuracy: 1e-15)
    XCTAssertEqual(accuracy.sd, 1 / 1200.0.squareRoot(), accuracy: 1e-15)
    XCTAssertEqual(accuracy.standardError, accuracy.sd / 3.0.squareRoot(), accuracy: 1e-15)
    XCTAssertEqual(accuracy.t, 10.0.squareRoot(), accuracy: 1e-12)
    XCTAssertEqual(accuracy.p, 0.08712907082472313, accuracy: 1e-12)  // SciPy, t = sqrt(10), 2 degrees of freedom
    XCTAssertEqual([accuracy.better, accuracy.worse], [3, 0])
    // A cv.csv that says the rows each fold trained on (16 of the other 20; 4 were validation): n_test/n_train is
    // 10/16, not 10/20.
    try write(dir + "/a16", [("s1 s2", 10, 0.5), ("s3", 10, 0.6), ("s4,x", 10, 0.7)], trainRows: 16)
    try write(dir + "/b16", [("s1 s2", 10, 0.6), ("s3", 10, 0.65), ("s4,x", 10, 0.8)], trainRows: 16)
    let counted = try compareCrossValidations([(dir + "/a16", dir + "/b16")]).differences[0]
    XCTAssertEqual(counted.t, 1200.0.squareRoot() / 12 / (1.0 / 3 + 10.0 / 16).squareRoot(), accuracy: 1e-12)
    XCTAssertEqual(counted.mean, accuracy.mean, accuracy: 1e-15)
    // Two pairs pool their folds; a candidate no different gives t = 0 and p = 1.
    let pooled = try compareCrossValidations([(dir + "/a", dir + "/b"), (dir + "/a", dir + "/a")])
    XCTAssertEqual(pooled.folds, 6)
    XCTAssertEqual(pooled.differences[0].mean, 1.0 / 24, accuracy: 1e-15)
    // Both pairs hold out one partition into folds (compare says so); folds numbered otherwise are still that one,
    // other groups together another.
    XCTAssertEqual([pooled.partitions, pooled.pairs], [1, 2])
    try write(dir + "/renumbered", [("s3", 10, 0.6), ("s4,x", 10, 0.7), ("s1 s2", 10, 0.5)])
    try write(dir + "/regrouped", [("s1", 10, 0.6), ("s2 s3", 10, 0.7), ("s4,x", 10, 0.5)])
    let renumbered = try compareCrossValidations([(dir + "/a", dir + "/b"), (dir + "/renumbered", dir + "/renumbered")])
    XCTAssertEqual(renumbered.partitions, 1)
    let regrouped = try compareCrossValidations([(dir + "/a", dir + "/b"), (dir + "/regrouped", dir + "/regrouped")])
    XCTAssertEqual([regrouped.partitions, regrouped.pairs], [2, 2])
    let same = try compareCrossValidations([(dir + "/a", dir + "/a/cv.csv")])
    XCTAssertEqual([same.differences[0].t, same.differences[0].p], [0, 1])
    // The original rows' metrics are compared where every cv.csv has them (not an older one's, nor NaN: no rows
    // known to be originals).
    try write(dir + "/ao", [("s1 s2", 10, 0.5), ("s3", 10, 0.6), ("s4,x", 10, 0.7)], original: 0.02)
    try write(dir + "/bo", [("s1 s2", 10, 0.6), ("s3", 10, 0.65), ("s4,x", 10, 0.8)], original: 0.05)
    try write(dir + "/bn", [("s1 s2", 10, 0.6), ("s3", 10, 0.65), ("s4,x", 10, 0.8)], original: .nan)
    let originals = try compareCrossValidations([(dir + "/ao", dir + "/bo")]).differences
    XCTAssertEqual(originals.map(\.metric), ["accuracy", "macro_f1", "uar", "original_accuracy", "original_uar"])
    XCTAssertEqual(originals[0].mean, accuracy.mean, accuracy: 1e-15)
    XCTAssertEqual(originals[3].mean, 1.0 / 12 + 0.03, accuracy: 1e-15)
    XCTAssertEqual(originals[3].base, 0.62, accuracy: 1e-15)
    for other in ["b", "bn"] {
      let d = try compareCrossValidations([(dir + "/ao", dir + "/" + other)]).differences
      XCTAssertEqual(d.map(\.metric), ["accuracy", "macro_f1", "uar"], other)
    }

    // Other folds are refused, naming the file and the fold.
    try write(dir + "/c", [("s1 s2", 10, 0.6), ("s5", 10, 0.65), ("s4,x", 10, 0.8)])
    XCTAssertThrowsError(try compareCrossValidations([(dir + "/a", dir + "/c")])) { error in
      let message = "\(error)"
      XCTAssertTrue(message.contains("c/cv.csv") && message.contains("fold 2 holds out s5"), message)
    }
    try write(dir + "/d", [("s1 s2", 10, 0.6), ("s3", 10, 0.65)])
    XCTAssertThrowsError(try compareCrossValidations([(dir + "/a", dir + "/d")])) { error in
      XCTAssertTrue("\(error)".contains("holds 2 folds"), "\(error)")
    }
    try "fold,speakers\n1,s1\n".write(toFile: dir + "/e.csv", atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try compareCrossValidations([(dir + "/a", dir + "/e.csv")])) { error in
      XCTAssertTrue("\(error)".contains("e.csv") && "\(error)".contains("line 1"), "\(error)")
    }
    XCTAssertThrowsError(try compareCrossValidations([(dir + "/a", dir + "/none")])) { error in
      XCTAssertTrue("\(error)".contains("none/cv.csv") && "\(error)".contains("cannot be read"), "\(error)")
    }

    // The command: a table, JSON; runs not in pairs are a usage error.
    let table = try runCommand(["compare", "a", "b"], directory: dir)
    XCTAssertEqual(table.status, 0, table.stderr)
    XCTAssertTrue(table.stdout.hasPrefix("b against a: 3 folds of held-out speakers"), table.stdout)
    XCTAssertTrue(table.stdout.contains("\naccuracy  0.6000   0.6833     +0.0833 "), table.stdout)
    let json = try runCommand(["compare", "--json", "a", "b"], directory: dir)
    let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as! [String: Any]
    XCTAssertEqual(object["folds"] as? Int, 3)
    XCTAssertEqual(try runCommand(["compare", "a", "b", "a"], directory: dir).status, 2)
  }
}
