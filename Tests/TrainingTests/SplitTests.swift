import AudioFeatures
import FeatureStore
import Training
import XCTest
import _TestSupport

/// Splits by recording (or row) are stratified by class; whole recordings stay on one side.
final class SplitTests: XCTestCase {
  func testRecordingSplitsAreStratifiedByClass() throws {
    let path = temporaryDirectory(self) + "/f.h5"
    let classes = ["angry", "calm", "fear", "sad"]
    let writer = try FeatureFileWriter(path: path, width: 4, overwrite: true)
    var labels: [String] = []
    var sources: [Int32] = []
    for (c, name) in classes.enumerated() {
      for _ in 0..<(10 * (c + 1)) {  // 10, 20, 30, 40 recordings of 4 rows
        labels += [String](repeating: name, count: 4)
        sources += [Int32](repeating: Int32(sources.count / 4), count: 4)
      }
    }
    let x = [Float](repeating: 0, count: labels.count * 4)
    try x.withUnsafeBufferPointer {
      try writer.append(
        rows: $0, labels: labels, sources: sources, augmentations: [Int8](repeating: 0, count: labels.count))
    }
    var recipe = FeatureRecipe()
    recipe.width = 4
    try writer.finish(
      recipe: recipe,
      recordings: (0..<(labels.count / 4)).map { RecordingInfo(path: "r\($0)", speaker: "", corpus: "") })
    let file = try FeatureFile(path: path)
    for kind in [SplitKind.recording, .random] {
      let split = try DataSplit.make(file, kind: kind, validation: 0.1, test: 0.2, seed: 3)
      for (c, name) in classes.enumerated() {
        let rows = (0..<file.rowCount).filter { file.labels[$0] == Int32(file.classes.firstIndex(of: name)!) }
        let test = rows.filter { split.membership[$0] == 2 }.count
        let validation = rows.filter { split.membership[$0] == 1 }.count
        let step = kind == .recording ? 4 : 1
        XCTAssertEqual(Double(test), 0.2 * Double(rows.count), accuracy: Double(step), "\(kind) \(name) test")
        XCTAssertEqual(Double(validation), 0.1 * Double(rows.count), accuracy: Double(step), "\(kind) \(name) val")
        XCTAssertEqual(rows.count, 40 * (c + 1))
      }
      // However large the fractions, every class keeps rows to train on.
      let greedy = try DataSplit.make(file, kind: kind, validation: 0.45, test: 0.45, seed: 3)
      for c in 0..<Int32(classes.count) {
        XCTAssertTrue(
          (0..<file.rowCount).contains { file.labels[$0] == c && greedy.membership[$0] == 0 }, "\(kind) class \(c)")
      }
      if kind == .recording {
        for r in stride(from: 0, to: file.rowCount, by: 4) {
          XCTAssertEqual(Set(split.membership[r..<(r + 4)]).count, 1, "recording \(r / 4) split")
        }
      }
    }
    // Without speakers or corpora (as a converted CSV), groups of them are an error that says what to use instead.
    func refuses(_ call: @autoclosure () throws -> Any, _ message: String) {
      XCTAssertThrowsError(try call()) { XCTAssertEqual("\($0)", path + ": has no " + message) }
    }
    let csv = "for its recordings (a converted CSV):"
    refuses(
      try DataSplit.make(file, kind: .speaker, validation: 0.1, test: 0.2, seed: 3),
      "speaker \(csv) use --split recording or random")
    refuses(try crossValidationFolds(file, folds: 2, by: .speaker, seed: 0), "speaker \(csv) use --by recording")
    refuses(
      try crossValidationFolds(file, folds: 2, by: .corpus, seed: 0), "corpus \(csv) --by corpus needs extracted files")
    XCTAssertEqual(try crossValidationFolds(file, folds: 4, by: .recording, seed: 0).rows.count, 4)
    // --folds all: a fold for each recording, its rows.
    let each = try crossValidationFolds(file, folds: nil, by: .recording, seed: 0)
    XCTAssertEqual(each.rows.count, file.rowCount / 4)
    XCTAssertTrue(each.rows.allSatisfy { Set($0.map { file.source[$0] }).count == 1 && $0.count == 4 })
  }
}
