import AudioFeatures
import FeatureStore
import Foundation
import XCTest
import _TestSupport

/// Mutated inputs (issue 16): seeded byte flips, insertions of the bytes parsers trip on, deletions, repeats and
/// truncations of a valid CSV, manifest, and WAV. Each case must end in a clear error that names the file, or in a
/// result that holds only finite values; a failed convert leaves no file behind. `SERTRAIN_FUZZ` sets the cases
/// per input kind (default 400, so 1,200 in all), `SERTRAIN_FUZZ_SEED` the seed.
final class FuzzTests: XCTestCase {
  let cases = Int(ProcessInfo.processInfo.environment["SERTRAIN_FUZZ"] ?? "") ?? 400
  let seed = UInt64(ProcessInfo.processInfo.environment["SERTRAIN_FUZZ_SEED"] ?? "") ?? 16

  /// One to four mutations of `data`.
  func mutate(_ data: Data, _ rng: inout TestRNG) -> Data {
    let tokens: [[UInt8]] = [
      [0], [0x22], [0x2C], [0x0A], [0x0D], [0xFF], [0xC3], Array("nan".utf8), Array("-inf".utf8),
      Array("1e999".utf8), Array("\"\"".utf8), Array("../".utf8), Array(",,,".utf8), [0x09],
    ]
    var bytes = [UInt8](data)
    for _ in 0...Int(rng.next() % 4) {
      let at = bytes.isEmpty ? 0 : Int(rng.next() % UInt64(bytes.count))
      switch rng.next() % 6 {
      case 0 where !bytes.isEmpty: bytes[at] ^= UInt8(1 << (rng.next() % 8))
      case 1 where !bytes.isEmpty: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
      case 2: bytes.insert(contentsOf: tokens[Int(rng.next() % UInt64(tokens.count))], at: at)
      case 3: bytes.removeSubrange(at..<min(bytes.count, at + 1 + Int(rng.next() % 40)))
      case 4: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + Int(rng.next() % 80))], at: at)
      default: bytes.removeSubrange(at..<bytes.count)
      }
    }
    return Data(bytes)
  }

  func testMutatedCSVsConvertOrFailCleanly() throws {
    let dir = temporaryDirectory(self)
    var rng = TestRNG(seed: seed)
    var csv = (0..<8).map(String.init).joined(separator: ",") + ",labels\n"
    for r in 0..<16 {
      csv += (0..<8).map { _ in String(format: "%.4f", rng.normal()) }.joined(separator: ",")
      csv += "," + ["angry", "calm", "\"sad, very\""][r % 3] + "\n"
    }
    let (input, output) = (dir + "/in.csv", dir + "/out.h5")
    var (converted, failed, partial) = (0, 0, 0)
    for k in 0..<cases {
      try mutate(Data(csv.utf8), &rng).write(to: URL(fileURLWithPath: input))
      var options = CSVImportOptions()
      options.blockBytes = k % 2 == 0 ? 64 : 1 << 20  // rows across block boundaries, and one block
      options.rowsPerRecording = k % 3 == 0 ? 4 : nil
      options.skipBadRows = k % 5 == 0
      options.overwrite = true
      do {
        let report = try importCSV(from: input, to: output, options: options)
        let file = try FeatureFile(path: output)
        XCTAssertEqual(file.rowCount, report.rows, "case \(k)")
        XCTAssertTrue(try file.readRows(0..<file.rowCount).allSatisfy(\.isFinite), "case \(k): a non-finite value")
        converted += 1
        unlink(output)
      } catch {
        failed += 1
        XCTAssertTrue("\(error)".contains(input), "case \(k): the error does not name the file: \(error)")
        let left = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != "in.csv" }
        if !left.isEmpty { partial += 1 }
        XCTAssertEqual(left, [], "case \(k): a failed convert left files behind")
      }
    }
    print("fuzz convert: \(cases) cases, \(converted) converted, \(failed) clear errors, \(partial) partial outputs")
  }

  func testMutatedManifestsReadOrFailCleanly() throws {
    let dir = temporaryDirectory(self)
    var rng = TestRNG(seed: seed + 1)
    let manifest = """
      path,emotion,speaker
      Actor_01/03-01-05-01-01-01-01.wav,angry,01
      "Actor_02/with, comma.wav",Sad,02
      Actor_03/c.flac,neutral,
      TESS/OAF_back_fear.wav\tfear\tOAF

      """
    let path = dir + "/manifest.csv"
    var (read, failed) = (0, 0)
    for k in 0..<cases {
      try mutate(Data(manifest.utf8), &rng).write(to: URL(fileURLWithPath: path))
      do {
        for r in try readManifest(path, corpus: "c") {
          XCTAssertFalse(r.path.isEmpty || r.emotion.isEmpty, "case \(k): an empty path or emotion: \(r)")
        }
        read += 1
      } catch {
        failed += 1
        XCTAssertTrue("\(error)".contains(path), "case \(k): the error does not name the manifest: \(error)")
      }
    }
    print("fuzz manifest: \(cases) cases, \(read) read, \(failed) clear errors")
  }

  func testMutatedAudioDecodesOrFailsCleanly() throws {
    let dir = temporaryDirectory(self)
    var rng = TestRNG(seed: seed + 2)
    let tone = (0..<(22050 * 3 / 2)).map { sin(Float($0) * 0.05) * 0.5 }
    let sources = [wavBytes(tone.map { Int16($0 * 30000) }, rate: 16000), floatWavBytes(tone, rate: 44100)]
    let extractor = FeatureExtractor()
    var (decoded, failed) = (0, 0)
    for k in 0..<cases {
      let path = dir + "/case.wav"
      var data = sources[k % 2]
      // Most mutations where the parser looks: the 44-byte header.
      if k % 3 != 0 { data = mutate(data.prefix(44), &rng) + data.dropFirst(44) } else { data = mutate(data, &rng) }
      try data.write(to: URL(fileURLWithPath: path))
      do {
        let clip = try loadClip(path)
        XCTAssertTrue(clip.samples.allSatisfy(\.isFinite), "case \(k): non-finite samples passed")
        XCTAssertTrue(extractor.row(clip.samples).allSatisfy(\.isFinite), "case \(k): a non-finite feature")
        decoded += 1
      } catch {
        failed += 1
        XCTAssertTrue("\(error)".contains(path), "case \(k): the error does not name the file: \(error)")
      }
    }
    print("fuzz audio: \(cases) cases, \(decoded) decoded, \(failed) clear errors")
  }
}
