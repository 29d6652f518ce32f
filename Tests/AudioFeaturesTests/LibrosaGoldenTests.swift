import AudioFeatures
import HDF5
import XCTest
import _TestSupport

/// `../shared/reference/librosa-golden.h5`: 8 real recordings with librosa's every intermediate.
final class LibrosaGoldenTests: XCTestCase {
  struct Case {
    let key: String
    let path: String
  }

  func cases() throws -> (H5File, [Case]) {
    let f = try H5File(path: try requireShared("reference/librosa-golden.h5"))
    var out: [Case] = []
    func walk(_ group: String) throws {
      for child in try (group.isEmpty ? f.children() : f.openGroup(group).children()) {
        let path = group.isEmpty ? child : group + "/" + child
        if f.exists(path + "/y") {
          out.append(Case(key: path, path: sharedPath("datasets/ser-mini/" + path)))
        } else if f.isGroup(path) {
          try walk(path)
        }
      }
    }
    try walk("")
    return (f, out)
  }

  func testLoadedAudioIsBitExact() throws {
    let (f, all) = try cases()
    XCTAssertEqual(all.count, 8)
    for c in all {
      let clip = try loadClip(c.path)
      let y: [Float] = try f.read(c.key + "/y")
      XCTAssertEqual(clip.samples.count, y.count, c.key)
      let differing = zip(clip.samples, y).filter { $0 != $1 }.count
      XCTAssertEqual(differing, 0, "\(c.key): \(differing) samples differ from librosa")
    }
  }

  func testFeaturesMatchLibrosa() throws {
    let (f, all) = try cases()
    let fx = FeatureExtractor()
    for c in all {
      let y: [Float] = try f.read(c.key + "/y")
      let p = fx.parts(y)
      let zcr: [Double] = try f.read(c.key + "/zcr")
      XCTAssertEqual(p.zcr, zcr, "\(c.key) zcr exact")
      assertClose(p.rms, try f.read(c.key + "/rms"), rtol: 1e-6, atol: 1e-9, "\(c.key) rms")
      assertClose(p.logMel, try f.read(c.key + "/logmel"), atol: 1e-3, "\(c.key) logmel")
      assertClose(p.mfcc, try f.read(c.key + "/mfcc"), atol: 1e-3, "\(c.key) mfcc")
      let row: [Double] = try f.read(c.key + "/row")
      assertClose(p.row, row.map(Float.init), atol: 1e-3, "\(c.key) row")
      print("row \(c.key): max |diff| \(zip(p.row, row).map { abs(Double($0) - $1) }.max()!)")
      let noisy: [Float] = try f.read(c.key + "/noise/y")
      let noiseRow: [Double] = try f.read(c.key + "/noise/row")
      assertClose(fx.row(noisy), noiseRow.map(Float.init), atol: 1e-3, "\(c.key) noise row")
    }
  }

  /// librosa's pitch shift by 0.7 semitones, against two references.
  ///
  /// The golden file's pitch rows carry numpy's float32 `arctan2` (inside `np.angle`) as Intel SVML's
  /// low-accuracy AVX-512 kernel computes it: about 38% of its values are an ulp or more off the correctly
  /// rounded ones. librosa's vocoder accumulates phase in float32 (values reach 1.8e5 rad, an ulp of 0.016), so
  /// such an ulp now and then flips a phase rounding, and the pitch row's MFCCs move by up to 5e-3. librosa
  /// itself moves that much: with `np.angle` through glibc's `atan2f` (numpy's choice on CPUs without
  /// AVX-512) its pitch MFCCs differ from the golden file's by up to 3.4e-3 on these recordings, and with
  /// `np.angle` correctly rounded by up to 5.1e-3 (`Tests/Oracles/make_pitch_rows.py` measures both).
  ///
  /// So: (1) the README's 1e-3, on the whole row, against librosa run with `np.angle` correctly rounded, as the
  /// vocoder computes it (`Tests/Oracles/librosa-pitch-rows.h5`, made by that script): this isolates our own
  /// error; (2) against the golden file, ZCR and RMS within 1e-3 and MFCCs within 6e-3, librosa's own spread
  /// across numpy's `arctan2` kernels with a margin.
  func testPitchShiftMatchesLibrosa() throws {
    let (f, all) = try cases()
    let oracle = try H5File(path: packageRoot + "/Tests/Oracles/librosa-pitch-rows.h5")
    let fx = FeatureExtractor()
    for c in all {
      let y: [Float] = try f.read(c.key + "/y")
      let shifted = try pitchShift(y, sampleRate: 22050, steps: 0.7)
      let reference: [Float] = try f.read(c.key + "/pitch/y")
      XCTAssertEqual(shifted.count, reference.count)
      XCTAssertLessThan(relativeToMax(shifted, reference), 3e-4, "\(c.key) pitch waveform")
      let row: [Double] = try f.read(c.key + "/pitch/row")
      let ours = fx.row(shifted)
      let frames = fx.frameCount(y.count)
      let mfccPart = (2 * frames)..<min(22 * frames, 2376)
      let worst = zip(ours[mfccPart], row[mfccPart]).map { abs(Double($0) - $1) }.max() ?? 0
      let exact: [Float] = try oracle.read(c.key + "/pitch/row")
      let worstExact = zip(ours, exact).map { abs($0 - $1) }.max() ?? 0
      print(
        "pitch row \(c.key): max |diff| \(worstExact) against librosa with exact angles, \(worst) on MFCC against the golden file"
      )
      assertClose(ours, exact, atol: 1e-3, "\(c.key) pitch row (librosa with correctly rounded angles)")
      assertClose(Array(ours[mfccPart]), row[mfccPart].map(Float.init), atol: 6e-3, "\(c.key) pitch MFCC")
      assertClose(Array(ours[0..<(2 * frames)]), row[0..<(2 * frames)].map(Float.init), atol: 1e-3, "\(c.key) ZCR, RMS")
    }
  }
}
