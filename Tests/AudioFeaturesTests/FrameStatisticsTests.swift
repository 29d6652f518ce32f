import XCTest
import _TestSupport

@testable import AudioFeatures

/// ZCR and RMS from blocks of hop samples (the fast path) against frame by frame (the plain one).
final class FrameStatisticsTests: XCTestCase {
  func testBlocksMatchFrames() {
    let fx = FeatureExtractor()
    var rng = TestRNG(seed: 5)
    for n in [1, 3, 4, 511, 512, 513, 1023, 2047, 2048, 2049, 5000, 55_125] {
      // Noise around zero with stretches inside the ±1e-10 dead band, exact zeros and -0.0.
      var y = (0..<n).map { _ in Float(Double(rng.next() >> 11) * 0x1p-53 - 0.5) }
      for i in Swift.stride(from: 0, to: n, by: 7) { y[i] = i % 2 == 0 ? 5e-11 : -5e-11 }
      for i in Swift.stride(from: 3, to: n, by: 11) { y[i] = i % 2 == 0 ? 0 : -0.0 }
      for i in Swift.stride(from: 5, to: n, by: 13) { y[i] = -2e-10 }
      let frames = fx.frameCount(n)
      var (zcrA, rmsA) = ([Double](repeating: 0, count: frames), [Float](repeating: 0, count: frames))
      var (zcrB, rmsB) = (zcrA, rmsA)
      y.withUnsafeBufferPointer {
        fx.zcrAndRMSByFrames($0, zcr: &zcrA, rms: &rmsA)
        fx.zcrAndRMSByBlocks($0, zcr: &zcrB, rms: &rmsB)
      }
      XCTAssertEqual(zcrB, zcrA, "n \(n): zcr")
      for t in 0..<frames {
        XCTAssertLessThanOrEqual(abs(rmsB[t] - rmsA[t]), rmsA[t].ulp, "n \(n) frame \(t): rms")
      }
      XCTAssertTrue(zcrA.contains { $0 > 0 } || n < 2, "n \(n): the signal has sign changes")
    }
  }
}

/// The recipe's JSON (in checkpoints) round-trips, and a recipe written before layouts existed reads as the seed's.
final class RecipeTests: XCTestCase {
  func testRecipeJSONRoundTripsAndOldRecipesReadAsSeed() throws {
    var r = FeatureRecipe()
    r.layout = .aligned
    r.origin = "extract"
    let text = String(decoding: try JSONEncoder().encode(r), as: UTF8.self)
    XCTAssertTrue(text.contains("\"layout\":\"aligned\""), text)
    XCTAssertEqual(try JSONDecoder().decode(FeatureRecipe.self, from: Data(text.utf8)), r)
    let old = text.replacing(",\"layout\":\"aligned\"", with: "").replacing("\"layout\":\"aligned\",", with: "")
    XCTAssertFalse(old.contains("layout"), old)
    let read = try JSONDecoder().decode(FeatureRecipe.self, from: Data(old.utf8))
    XCTAssertEqual(read.layout, .seed)
    XCTAssertTrue(read.sameFeatures(as: FeatureRecipe()))
    XCTAssertEqual(FeatureRecipe().framesPerRow, 108)
  }
}
