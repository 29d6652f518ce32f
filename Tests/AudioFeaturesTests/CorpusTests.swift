import AudioFeatures
import XCTest
import _TestSupport

final class CorpusTests: XCTestCase {
  /// Scanning ser-mini finds every file of its MANIFEST.tsv with exactly its labels and speakers.
  func testScanningSerMiniMatchesItsManifest() throws {
    let root = try requireShared("datasets/ser-mini")
    let manifest = try String(contentsOfFile: root + "/MANIFEST.tsv", encoding: .utf8)
    var expected: [String: (String, String)] = [:]
    for line in manifest.split(separator: "\n").dropFirst() {
      let c = line.split(separator: "\t").map(String.init)
      expected[c[0]] = (c[2], c[3])
    }
    let (found, skipped) = try scanCorpus(root)
    XCTAssertEqual(found.count, 1426)
    XCTAssertEqual(skipped, [])
    XCTAssertEqual(found.count, expected.count)
    for r in found {
      guard let (speaker, emotion) = expected[r.path] else {
        XCTFail("\(r.path) is not in the manifest")
        continue
      }
      XCTAssertEqual(r.emotion, emotion, r.path)
      XCTAssertEqual(r.speaker, speaker, r.path)
    }
  }

  func testNamePatterns() {
    XCTAssertEqual(labelFromName("Ravdess/x/Actor_07/03-01-02-01-01-01-07.wav")?.emotion, "neutral", "calm")
    XCTAssertEqual(labelFromName("Crema/1001_DFA_ANG_XX.wav")?.emotion, "angry")
    XCTAssertEqual(labelFromName("Crema/1001_DFA_ANG_XX.wav")?.speaker, "crema-1001")
    XCTAssertEqual(labelFromName("Savee/JK_sa03.wav")?.emotion, "sad")
    XCTAssertEqual(labelFromName("Savee/JK_su03.wav")?.emotion, "surprise")
    XCTAssertEqual(labelFromName("Tess/YAF_pleasant_surprised/YAF_back_ps.wav")?.emotion, "surprise")
    XCTAssertNil(labelFromName("misc/recording.wav"))
  }
}
