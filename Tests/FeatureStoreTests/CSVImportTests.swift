import FeatureStore
import Foundation
import XCTest
import _TestSupport

final class CSVImportTests: XCTestCase {
  var dir = ""
  override func setUp() { dir = temporaryDirectory(self) }

  func write(_ text: String, _ name: String = "in.csv") -> String {
    let p = dir + "/" + name
    _ = FileManager.default.createFile(atPath: p, contents: Data(text.utf8))
    return p
  }

  /// A seed-style CSV: header `0,...,w-1,labels`, random values as pandas writes float32.
  func seedStyle(rows: Int, width: Int, seed: UInt64 = 1, crlf: Bool = false) -> (String, [[Float]], [String]) {
    var rng = TestRNG(seed: seed)
    let classes = ["sad", "angry", "neutral", "fear"]
    var text = (0..<width).map(String.init).joined(separator: ",") + ",labels" + (crlf ? "\r\n" : "\n")
    var values: [[Float]] = []
    var labels: [String] = []
    for _ in 0..<rows {
      let row = (0..<width).map { _ in rng.normal() * 300 }
      let label = classes[Int(rng.next() % 4)]
      values.append(row)
      labels.append(label)
      text += row.map { "\($0)" }.joined(separator: ",") + "," + label + (crlf ? "\r\n" : "\n")
    }
    return (text, values, labels)
  }

  func convert(_ csv: String, _ options: CSVImportOptions = CSVImportOptions()) throws -> (CSVImportReport, FeatureFile)
  {
    let out = dir + "/out.h5"
    var o = options
    o.overwrite = true
    let report = try importCSV(from: csv, to: out, options: o)
    return (report, try FeatureFile(path: out))
  }

  func testValuesLabelsAndClassesMatchTheCSV() throws {
    let (text, values, labels) = seedStyle(rows: 203, width: 37)
    var options = CSVImportOptions()
    options.blockBytes = 4096  // many blocks, rows crossing block boundaries
    let (report, f) = try convert(write(text), options)
    XCTAssertEqual(report.rows, 203)
    XCTAssertEqual(f.rowCount, 203)
    XCTAssertEqual(f.width, 37)
    XCTAssertEqual(f.classes, ["angry", "fear", "neutral", "sad"])
    XCTAssertEqual(try f.readRows(0..<203), values.flatMap { $0 })
    XCTAssertEqual(f.labels.map { f.classes[Int($0)] }, labels)
    XCTAssertEqual(f.source, (0..<203).map(Int32.init))
    XCTAssertEqual(f.augmentation, [Int8](repeating: -1, count: 203))
    XCTAssertEqual(f.recipe.origin, "convert")
    XCTAssertEqual(f.classCounts().reduce(0, +), 203)
    // A shard: any row range without the rest, and scattered rows.
    XCTAssertEqual(try f.readRows(100..<103), values[100..<103].flatMap { $0 })
    var picked = [Float](repeating: 0, count: 4 * 37)
    try picked.withUnsafeMutableBufferPointer { try f.readRows(at: [150, 3, 4, 77], into: $0) }
    XCTAssertEqual(picked, [150, 3, 4, 77].flatMap { values[$0] })
  }

  func testCellsOfEveryNumberFormatAgreeWithStrtof() throws {
    // The line kernel's SSE4.1 path and its general one, cell by cell against strtof: number widths that change
    // from cell to cell, exponents, signs, midpoints of float32 roundings, long mantissas (float32 values written
    // as float64, as the seed's notebook wrote them: 17 digits), and the label column in the middle of the line.
    var rng = TestRNG(seed: 3)
    let formats: [(Double) -> String] = [
      { "\(Float($0))" }, { "\($0)" }, { "\(Double(Float($0)))" }, { String(format: "%.9g", $0) },
      { String(format: "%.3f", $0) },
      { String(format: "%.6e", $0) }, { String(format: "%+.15f", $0) }, { String(format: "%.0f", $0) },
      { String(format: "%.20g", $0) }, { String(format: "%.12e", (Double(Float($0)) + Double(Float($0).nextUp)) / 2) },
      { "\((Double(Float($0)) + Double(Float($0).nextUp)) / 2)" },
      { String(format: "%.9f", (Double(Float($0)) + Double(Float($0).nextUp)) / 2 + Double(Float($0)).ulp) },
    ]
    let width = 300
    var text = (0..<width).map(String.init).joined(separator: ",") + ",labels," + "x\n"
    var expected: [Float] = []
    for _ in 0..<60 {
      var cells: [String] = []
      for _ in 0..<width {
        let d = Double(rng.normal()) * pow(10, Double(Float.random(in: -9...9, using: &rng)))
        cells.append(formats[Int(rng.next() % UInt64(formats.count))](d))
      }
      cells[17] = ["-0.0", "+.5", "5.", "0", "00012.50", "-1234567.8"][Int(rng.next() % 6)]
      expected += cells.map { strtof($0, nil) }
      text += cells.joined(separator: ",") + ",happy," + cells[0] + "\n"
    }
    // The label is column 300 of 302, so the last column ('x') is a feature too.
    var options = CSVImportOptions()
    options.labelColumn = "labels"
    let (report, f) = try convert(write(text), options)
    XCTAssertEqual(report.rows, 60)
    XCTAssertEqual(f.width, width + 1)
    let rows = try f.readRows(0..<60)
    for r in 0..<60 {
      for c in 0..<width {
        let got = rows[r * (width + 1) + c]
        let want = expected[r * width + c]
        XCTAssertEqual(got.bitPattern, want.bitPattern, "row \(r) column \(c): \(got) vs strtof \(want)")
      }
      XCTAssertEqual(rows[r * (width + 1) + width].bitPattern, expected[r * width].bitPattern)
    }
  }

  func testCRLFAndQuotedCellsAndEmotionsColumn() throws {
    let text = "\"a\",\"b\",Emotions\r\n1.5,\"2\",\"happy\"\r\n-3,4e2,sad\r\n"
    let (_, f) = try convert(write(text))
    XCTAssertEqual(try f.readRows(0..<2), [1.5, 2, -3, 400])
    XCTAssertEqual(f.classes, ["happy", "sad"])
  }

  func testAQuotedHeaderNameMayHoldACommaAsADataCellMay() throws {
    let text = "\"pitch, mean\", \"say \"\"hi\"\"\" ,labels\n1,\"2.5\",sad\n"
    let (report, f) = try convert(write(text))
    XCTAssertEqual(report.width, 2)
    XCTAssertEqual(try f.readRows(0..<1), [1, 2.5])
    XCTAssertEqual(f.classes, ["sad"])
    // The names as the header quotes them: an error about a cell quotes its column's name.
    XCTAssertThrowsError(try convert(write(text + "3,x,sad\n"))) {
      XCTAssertTrue("\($0)".contains("column 2 ('say \"hi\"'): 'x' is not a number"), "\($0)")
    }
  }

  func testLabelColumnByNameAnywhere() throws {
    let text = "emo,x,y\nangry,1,2\ncalm,3,4\n"
    var o = CSVImportOptions()
    o.labelColumn = "emo"
    let (_, f) = try convert(write(text), o)
    XCTAssertEqual(try f.readRows(0..<2), [1, 2, 3, 4])
    XCTAssertEqual(f.classes, ["angry", "calm"])
  }

  func testEmptyAndNaNCellsBecomeZeroAndAreCounted() throws {
    let text = "0,1,2,labels\n1,,3,sad\nNaN,2,nan,sad\n"
    let (report, f) = try convert(write(text))
    XCTAssertEqual(try f.readRows(0..<2), [1, 0, 3, 0, 2, 0])
    XCTAssertEqual(report.emptyCells, 1)
    XCTAssertEqual(report.nanCells, 2)
  }

  func testRowsPerRecordingGivesRecordingIdsAndAugmentations() throws {
    let (text, _, _) = seedStyle(rows: 12, width: 5)
    var o = CSVImportOptions()
    o.rowsPerRecording = 4
    let (report, f) = try convert(write(text), o)
    XCTAssertEqual(report.recordings, 3)
    XCTAssertEqual(f.source, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    XCTAssertEqual(f.augmentation, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
    XCTAssertEqual(f.rowsPerRecording, 4)
    XCTAssertEqual(try f.recordings().count, 3)
    let (odd, _, _) = seedStyle(rows: 10, width: 5)
    XCTAssertThrowsError(try convert(write(odd, "odd.csv"), o)) { e in
      XCTAssertTrue("\(e)".contains("not a multiple of --rows-per-recording 4"), "\(e)")
    }
  }

  // MARK: Bad input

  func assertFails(
    _ text: String, _ expected: [String], options: CSVImportOptions = CSVImportOptions(),
    file: StaticString = #filePath, line: UInt = #line
  ) {
    let csv = write(text, "bad.csv")
    let out = dir + "/bad.h5"
    var o = options
    o.overwrite = true
    XCTAssertThrowsError(try importCSV(from: csv, to: out, options: o), file: file, line: line) { e in
      for s in expected { XCTAssertTrue("\(e)".contains(s), "'\(e)' lacks '\(s)'", file: file, line: line) }
    }
    // Nothing is left behind: no output, no temporary file.
    let left = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
    XCTAssertFalse(
      left.contains { $0.hasPrefix("bad.h5") || $0.hasPrefix(".bad.h5") }, "\(left)", file: file, line: line)
  }

  func testWrongColumnCountNamesTheLine() {
    assertFails("0,1,labels\n1,2,sad\n1,2,3,sad\n", ["bad.csv:3", "4 columns, expected 3"])
    assertFails("0,1,labels\n1,2,sad\n1,sad\n", ["bad.csv:3", "2 columns, expected 3"])
  }

  func testSkipBadRowsSkipsAndReports() throws {
    let text = "0,1,labels\n1,2,sad\n1,2,3,sad\n5,x,happy\n7,8,happy\n9,inf,sad\n"
    var o = CSVImportOptions()
    o.skipBadRows = true
    let (report, f) = try convert(write(text), o)
    XCTAssertEqual(try f.readRows(0..<2), [1, 2, 7, 8])
    XCTAssertEqual(report.skipped.map(\.line), [3, 4, 6])
    XCTAssertTrue(report.skipped[1].reason.contains("'x' is not a number"))
    XCTAssertEqual(f.source, [0, 3], "recording ids follow the file's rows, skipped ones included")
  }

  func testTextInANumericCell() {
    assertFails("0,1,labels\n1,2,sad\n1,abc,sad\n", ["bad.csv:3", "column 2 ('1')", "'abc' is not a number"])
  }

  func testInfinityIsRejected() {
    assertFails("0,1,labels\n1,inf,sad\n", ["bad.csv:2", "'inf' is not a finite number"])
    assertFails("0,1,labels\n1,1e39,sad\n", ["bad.csv:2", "outside float32's range"])
  }

  func testEmptyFileHeaderOnlyAndNoLabelColumn() {
    assertFails("", ["empty file"])
    assertFails("0,1,labels\n", ["a header but no data rows"])
    assertFails("0,1,labels\n\n\n", ["a header but no data rows"])
    assertFails("0,1,2\n1,2,3\n", ["no label column named 'labels' or 'emotions'", "--label-column"])
    var o = CSVImportOptions()
    o.labelColumn = "mood"
    assertFails("0,1,labels\n1,2,sad\n", ["no label column named 'mood'"], options: o)
    assertFails("0,1,labels\n1,2,\n", ["bad.csv:2", "empty label"])
  }

  func testNotACSVFile() throws {
    var bytes: [UInt8] = [0x89, 0x48, 0x44, 0x46, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0]
    bytes += [UInt8](repeating: 7, count: 100)
    _ = FileManager.default.createFile(atPath: dir + "/bin.csv", contents: Data(bytes))
    XCTAssertThrowsError(try importCSV(from: dir + "/bin.csv", to: dir + "/bin.h5")) { e in
      XCTAssertTrue("\(e)".contains("not a CSV file"), "\(e)")
    }
    assertFails("just some prose\nwithout commas\n", ["not a CSV file"])
  }

  func testExistingOutputIsRefusedAndKept() throws {
    let (text, _, _) = seedStyle(rows: 3, width: 4)
    let csv = write(text)
    let out = dir + "/exists.h5"
    _ = FileManager.default.createFile(atPath: out, contents: Data("precious".utf8))
    XCTAssertThrowsError(try importCSV(from: csv, to: out)) { e in
      XCTAssertTrue("\(e)".contains("already exists") && "\(e)".contains("--force"), "\(e)")
    }
    XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "precious")
    // A failed conversion with --force leaves the old file intact too.
    var o = CSVImportOptions()
    o.overwrite = true
    XCTAssertThrowsError(try importCSV(from: write("0,labels\nx,sad\n", "b.csv"), to: out, options: o))
    XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8), "precious")
    _ = try importCSV(from: csv, to: out, options: o)
    XCTAssertEqual(try FeatureFile(path: out).rowCount, 3)
  }

  func testMissingInputFile() {
    XCTAssertThrowsError(try importCSV(from: dir + "/none.csv", to: dir + "/x.h5")) { e in
      XCTAssertTrue("\(e)".contains("none.csv") && "\(e)".contains("No such file"), "\(e)")
    }
  }

  func testReaderRejectsOtherHDF5Files() throws {
    let p = dir + "/other.h5"
    _ = FileManager.default.createFile(atPath: p, contents: nil)
    XCTAssertThrowsError(try FeatureFile(path: p)) { e in XCTAssertTrue("\(e)".contains(p), "\(e)") }
  }
}
