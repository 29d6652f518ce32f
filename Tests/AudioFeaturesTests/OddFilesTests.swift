import AudioFeatures
import XCTest
import _TestSupport

/// The odd files a real corpus has: each is either a clear skip reason or a flagged row of zeros.
final class OddFilesTests: XCTestCase {
  func testOddFilesGiveClearReasons() throws {
    let dir = temporaryDirectory(self)
    let fx = FeatureExtractor()
    func make(_ name: String, _ data: Data) -> String {
      let p = dir + "/" + name
      XCTAssertTrue(FileManager.default.createFile(atPath: p, contents: data))
      return p
    }
    // Shorter than the 0.6 s offset: an empty read, a row of zeros.
    let short = try loadClip(make("short.wav", wavBytes([Int16](repeating: 1000, count: 5000))))
    XCTAssertEqual(short.samples.count, 0)
    let zeros = fx.row(short.samples)
    XCTAssertEqual(zeros.count, 2376)
    XCTAssertTrue(zeros.allSatisfy { $0 == 0 }, "an empty read gives a row of zeros")
    // Silent: features exist (ZCR 0, RMS 0, MFCC of the -100 dB floor).
    let silent = try loadClip(make("silent.wav", wavBytes([Int16](repeating: 0, count: 22050 * 4))))
    XCTAssertEqual(silent.samples.count, 55125)
    XCTAssertTrue(fx.row(silent.samples).allSatisfy { $0.isFinite })
    // Truncated: the header promises more than the file holds; libsndfile reads what is there.
    var truncated = wavBytes((0..<(22050 * 3)).map { Int16(truncatingIfNeeded: $0 * 37) })
    truncated = truncated.prefix(truncated.count / 2)
    let t = try loadClip(make("truncated.wav", truncated))
    XCTAssertGreaterThan(t.samples.count, 0)
    for (name, data, expected) in [
      ("empty.wav", Data(), "cannot decode"),
      ("notes.wav", Data("these are my notes, not audio\n".utf8), "cannot decode"),
      ("noise.flac", Data((0..<4000).map { UInt8(truncatingIfNeeded: $0 * 7) }), "cannot decode"),
      // libsndfile's words for an MPEG stream it gives up on are "File does not exist or is not a regular file".
      (
        "broken.mp3", Data([0xFF, 0xFB, 0x90, 0x00] + (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 131) }), "corrupt"
      ),
    ] {
      XCTAssertThrowsError(try loadClip(make(name, data))) { error in
        let message = "\(error)"
        XCTAssertTrue(message.contains(name) && message.contains(expected), message)
        XCTAssertFalse(message.contains("does not exist"), message)
      }
    }
    // Finite but far beyond full scale: power spectra would overflow float32 into infinite features.
    var loud = (0..<30000).map { sin(Float($0) * 0.05) }
    loud[20000] = 3e20
    XCTAssertThrowsError(try loadClip(make("loud.wav", floatWavBytes(loud)))) { error in
      XCTAssertTrue("\(error)".contains("beyond ±1e6"), "\(error)")
    }
    XCTAssertThrowsError(try loadClip(dir + "/missing.wav")) {
      XCTAssertTrue("\($0)".contains("No such file"), "\($0)")
    }
    XCTAssertThrowsError(try loadClip(dir)) { XCTAssertTrue("\($0)".contains("not a regular file"), "\($0)") }
  }
}
