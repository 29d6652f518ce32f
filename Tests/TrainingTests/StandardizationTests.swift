import AudioFeatures
import FeatureStore
import ModelFiles
import Training
import XCTest
import _TestSupport

/// `--standardize feature` and `speaker`: what they compute, against plain sums in double over the same values.
final class StandardizationTests: XCTestCase {
  /// A frames-layout file of `speakers` x `recordings` x 2 rows (original, noise) of 3 frames x 4 features (nMFCC 2),
  /// each speaker with its own offset and spread; recordings written in `order`, labels from `label`.
  func writeFile(
    _ path: String, speakers: Int, recordings: Int, order: [Int], label: (Int) -> String
  ) throws -> [RecordingInfo] {
    var recipe = FeatureRecipe()
    (recipe.nMFCC, recipe.width, recipe.layout) = (2, 12, .frames)
    let writer = try FeatureFileWriter(path: path, width: 12, overwrite: true)
    var infos: [RecordingInfo] = []
    for (i, id) in order.enumerated() {
      let (s, r) = (id / recordings, id % recordings)
      var rng = TestRNG(seed: UInt64(id))
      // Each recording's values depend on the recording alone, whatever the order it is written in.
      let rows = (0..<24).map { j in Float(s * 3 + 1) * Float(rng.normal()) + Float(10 * s + j % 4) }
      try rows.withUnsafeBufferPointer {
        try writer.append(
          rows: $0, labels: [label(id), label(id)], sources: [Int32(i), Int32(i)], augmentations: [0, 1])
      }
      infos.append(RecordingInfo(path: "s\(s)/r\(r).wav", speaker: "spk\(s)", corpus: "c"))
    }
    try writer.finish(recipe: recipe, recordings: infos, classes: ["angry", "sad"])
    return infos
  }

  /// Speaker statistics read no label and give every row the same bits for any order of the recordings.
  func testSpeakerStatisticsIgnoreLabelsAndOrder() throws {
    let dir = temporaryDirectory(self)
    let n = 3 * 5
    let shuffled = (0..<n).map { ($0 * 7 + 3) % n }  // 7 is prime to 15: a permutation
    XCTAssertEqual(Set(shuffled).count, n)
    _ = try writeFile(dir + "/a.h5", speakers: 3, recordings: 5, order: Array(0..<n)) { $0 % 2 == 0 ? "angry" : "sad" }
    _ = try writeFile(dir + "/b.h5", speakers: 3, recordings: 5, order: shuffled) { $0 % 3 == 0 ? "angry" : "sad" }
    let (a, b) = (try FeatureFile(path: dir + "/a.h5"), try FeatureFile(path: dir + "/b.h5"))
    XCTAssertNotEqual(a.labels, b.labels)
    func standardised(_ f: FeatureFile) throws -> [String: [Float]] {
      let stats = try SpeakerStatistics(f)
      let recordings = try f.recordings()
      var x = try f.readRows(0..<f.rowCount)
      x.withUnsafeMutableBufferPointer { stats.standardise($0, rows: Array(0..<f.rowCount)) }
      return Dictionary(
        uniqueKeysWithValues: (0..<f.rowCount).map {
          ("\(recordings[Int(f.source[$0])].path)#\(f.augmentation[$0])", Array(x[($0 * 12)..<(($0 + 1) * 12)]))
        })
    }
    let (rowsA, rowsB) = (try standardised(a), try standardised(b))
    XCTAssertEqual(rowsA.count, 2 * n)
    for (key, row) in rowsA { XCTAssertEqual(row, rowsB[key], key) }

    // Each speaker's rows, feature by feature over all its frames, have mean 0 and deviation 1.
    let stats = try SpeakerStatistics(a)
    XCTAssertEqual(stats.speakers, ["spk0", "spk1", "spk2"])
    for s in 0..<3 {
      let rows = (0..<a.rowCount).filter { stats.speakerOfRow[$0] == Int32(s) }
      var x = [Float](repeating: 0, count: rows.count * 12)
      try x.withUnsafeMutableBufferPointer { try a.readRows(at: rows, into: $0) }
      x.withUnsafeMutableBufferPointer { stats.standardise($0, rows: rows) }
      for feature in 0..<4 {
        let values = x.indices.filter { $0 % 4 == feature }.map { Double(x[$0]) }
        let mean = values.reduce(0, +) / Double(values.count)
        let sd = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
        XCTAssertEqual(mean, 0, accuracy: 1e-6, "speaker \(s) feature \(feature)")
        XCTAssertEqual(sd, 1, accuracy: 1e-6, "speaker \(s) feature \(feature)")
      }
    }
  }

  /// `feature`'s pooled sums equal one mean and deviation per feature computed directly in double.
  func testFeatureScalerPoolsEachFeatureOverItsColumns() throws {
    var recipe = FeatureRecipe()
    (recipe.nMFCC, recipe.width) = (2, 12)
    for layout in FeatureRecipe.Layout.allCases {
      recipe.layout = layout
      let features = try XCTUnwrap(recipe.columnFeatures)
      XCTAssertEqual(features.count, 12)
      XCTAssertEqual((0..<4).map { f in features.filter { $0 == f }.count }, [3, 3, 3, 3], "\(layout)")
      var rng = TestRNG(seed: 9)
      let rows = 40
      let x = (0..<(rows * 12)).map { (i: Int) -> Float in
        let level: Int = 100 + 5 * features[i % 12] + i % 12
        return Float(level) + Float(rng.normal())
      }
      var sums = ScalerSums(shift: Array(x[0..<12]))
      x.withUnsafeBufferPointer { sums.add($0, rows: rows) }
      let (pooled, exact) = (sums.finish(features: features), featureStatistics(x, width: 12, features: features))
      let (mean, scale, exactMean, exactScale) = (pooled.mean, pooled.scale, exact.mean, exact.scale)
      for c in 0..<12 {
        XCTAssertEqual(mean[c], exactMean[c], accuracy: 1e-4, "\(layout) column \(c) mean")
        XCTAssertEqual(scale[c], exactScale[c], accuracy: 1e-4 * exactScale[c], "\(layout) column \(c) scale")
      }
    }
    recipe.width = 13
    XCTAssertNil(recipe.columnFeatures, "a row that is not whole frames has no features per column")
  }
}
