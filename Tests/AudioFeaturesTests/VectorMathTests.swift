import CAudioKernels
import Foundation
import XCTest
import _TestSupport

@testable import AudioFeatures

/// The vocoder's vectorised float functions against the same functions evaluated in double by the C library and
/// rounded once to float (the correctly rounded float, bar double rounding): they must agree on all but a rare
/// value, and never by more than one ulp.
final class VectorMathTests: XCTestCase {
  /// Values as the vocoder meets them: STFT bins over many magnitudes, signed zeros, and phases up to 2e5 rad.
  func samples(_ count: Int, seed: UInt64) -> [Float] {
    var state = seed
    return (0..<count).map { i in
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      let u = Double(state >> 11) * 0x1p-53
      switch i % 7 {
      case 0: return 0
      case 1: return -0.0
      default: return Float((u * 2 - 1) * pow(10, Double(i % 9) - 4))
      }
    }
  }

  func ulps(_ a: Float, _ b: Float) -> Int {
    if a == b { return 0 }
    if a.sign != b.sign { return Int.max / 2 }
    return abs(Int(a.bitPattern) - Int(b.bitPattern))
  }

  func testMagnitudeAndAngleAreCorrectlyRounded() {
    let re = samples(100_003, seed: 1)
    let im = samples(100_003, seed: 2)
    var magnitude = [Float](repeating: 0, count: re.count)
    var angle = [Float](repeating: 0, count: re.count)
    magnitudeAndAngle(re: re, im: im, magnitude: &magnitude, angle: &angle, count: re.count)
    var (off, worst) = (0, 0)
    for i in re.indices {
      let expectedAngle = Float(Foundation.atan2(Double(im[i]), Double(re[i])))
      let expectedMagnitude = Float(Foundation.hypot(Double(re[i]), Double(im[i])))
      let d = max(ulps(angle[i], expectedAngle), ulps(magnitude[i], expectedMagnitude))
      if d > 0 { off += 1 }
      worst = max(worst, d)
      if angle[i].sign != expectedAngle.sign {
        XCTFail("atan2(\(im[i]), \(re[i])): sign of \(angle[i]) vs \(expectedAngle)")
        return
      }
    }
    print("atan2/hypot: \(off) of \(re.count) off, worst \(worst) ulps")
    XCTAssertLessThanOrEqual(worst, 1, "atan2/hypot: worst ulps")
    XCTAssertLessThan(off, re.count / 10_000, "atan2/hypot: values off by an ulp")
  }

  func testCosSinAreCorrectlyRounded() {
    let phases = samples(100_003, seed: 3).enumerated().map { $1 * ($0 % 3 == 0 ? 100 : 1) }  // up to 1e6
    var c = [Float](repeating: 0, count: phases.count)
    var s = [Float](repeating: 0, count: phases.count)
    cosSin(phases, cos: &c, sin: &s, count: phases.count)
    var (off, worst) = (0, 0)
    for i in phases.indices {
      let d = max(
        ulps(c[i], Float(Foundation.cos(Double(phases[i])))), ulps(s[i], Float(Foundation.sin(Double(phases[i])))))
      if d > 0 { off += 1 }
      worst = max(worst, d)
    }
    print("cos/sin: \(off) of \(phases.count) off, worst \(worst) ulps")
    XCTAssertLessThanOrEqual(worst, 1, "cos/sin: worst ulps")
    XCTAssertLessThan(off, phases.count / 10_000, "cos/sin: values off by an ulp")
  }

  func testNaturalLogIsCorrectlyRoundedEnough() {
    var state: UInt64 = 7
    var worst = 0.0
    for i in 0..<100_000 {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      let u = i < 4 ? [1.0, 0x1p-53, 0.5, 0.7071067811865476][i] : 1 - Double(state >> 11) * 0x1p-53
      var ours = 0.0
      withUnsafePointer(to: u) { sertrain_natural_log($0, &ours, 1) }
      let expected = Foundation.log(u)
      worst = max(worst, abs(ours - expected) / max(abs(expected), 1e-300))
      if u == 1 { XCTAssertEqual(ours, 0) }
    }
    XCTAssertLessThan(worst, 4e-16, "ln: worst relative error")
  }

  /// Power in decibels as librosa's `power_to_db` before its floor: 10·log10(max(1e-10, v)), within an ulp of the
  /// float of the exact value, NaN, zero, negatives and values under 1e-10 at -100 dB, and the peak the largest.
  func testPowerToDecibels() {
    var values: [Float] = [.nan, 0, -3, 1e-12, 1e-10, 1, 10, .greatestFiniteMagnitude, .leastNormalMagnitude]
    var state: UInt64 = 11
    for _ in 0..<10_000 {
      state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
      values.append(Float(bitPattern: UInt32(truncatingIfNeeded: state >> 33) & 0x7f7f_ffff))
    }
    let given = values
    let peak = values.withUnsafeMutableBufferPointer { sertrain_power_db($0.baseAddress!, $0.count) }
    XCTAssertEqual(Array(values.prefix(5)), [-100, -100, -100, -100, -100])
    for (v, db) in zip(given, values) where v >= 1e-10 {
      let exact = Float(10 * Foundation.log10(Double(v)))
      XCTAssertLessThanOrEqual(abs(db - exact), exact.ulp, "\(v)")
    }
    XCTAssertEqual(peak, values.max())
  }

  struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
      state &+= 0x9E37_79B9_7F4A_7C15
      var z = state
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
  }

  /// The float32 noise against Box–Muller written out in double with the C library's log, cos and sin, on the same
  /// draws and the same pairing (per block of 16 samples, words i and 8 + i feed samples i and 8 + i): lengths odd and even,
  /// shorter than a block and not whole blocks.
  func testNoiseMatchesScalarBoxMuller() {
    for n in [1, 2, 7, 8, 9, 16, 17, 1001] {
      let x = (0..<n).map { Float(sin(Double($0) * 0.37)) * 0.5 }
      var rng = SplitMix(state: UInt64(n))
      let noisy = addNoise(x, rng: &rng)
      var replay = SplitMix(state: UInt64(n))
      let amplitude = 0.035 * Double(replay.next() >> 11) * 0x1p-53 * Double(x.max()!)
      var expected = x.map(Double.init)
      for block in 0..<((n + 15) / 16) {
        // Eight draws as 16 little-endian 32-bit words: u₁ from the first eight, u₂ from the last eight.
        let words = (0..<8).map { _ in replay.next() }.flatMap {
          [UInt32(truncatingIfNeeded: $0), UInt32(truncatingIfNeeded: $0 >> 32)]
        }
        for i in 0..<8 {
          let u1 = 1 - Double(words[i] >> 9) * 0x1p-23
          let u2 = Double(words[8 + i] >> 9) * 0x1p-23
          let r = (-2 * Foundation.log(u1)).squareRoot() * amplitude
          let (j, k) = (16 * block + i, 16 * block + 8 + i)
          if j < n { expected[j] += r * Foundation.cos(2 * Double.pi * u2) }
          if k < n { expected[k] += r * Foundation.sin(2 * Double.pi * u2) }
        }
      }
      XCTAssertEqual(noisy.count, n)
      for j in 0..<n {
        // float32 arithmetic: a few ulps of the noise (|z| <= 5.7) and of the sum.
        XCTAssertEqual(
          Double(noisy[j]), expected[j], accuracy: 4e-6 * amplitude + 2 * Double(x[j].magnitude.ulp),
          "n \(n) sample \(j)")
      }
      XCTAssertEqual(replay.next(), rng.next(), "n \(n): the same number of draws")
    }
  }

  /// The noise of a silent signal with one peak is `amplitude · N(0, 1)`: its moments and tails over 400,000
  /// samples, and the float32 ln and quarter-turn cos/sin behind it against the C library.
  func testNoiseIsStandardNormal() {
    var x = [Float](repeating: 0, count: 400_001)
    x[0] = 1
    var rng = SplitMix(state: 11)
    let noisy = addNoise(x, rng: &rng)
    var replay = SplitMix(state: 11)
    let amplitude = Float(0.035 * Double(replay.next() >> 11) * 0x1p-53)
    let z = noisy[1...].map { Double($0 / amplitude) }
    let mean = z.reduce(0, +) / Double(z.count)
    let variance = z.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(z.count)
    let kurtosis = z.map { pow($0 - mean, 4) }.reduce(0, +) / Double(z.count) / (variance * variance)
    let beyond = Double(z.filter { abs($0) > 1.959964 }.count) / Double(z.count)
    print("noise: mean \(mean) variance \(variance) kurtosis \(kurtosis) beyond 1.96: \(beyond)")
    XCTAssertEqual(mean, 0, accuracy: 0.006)
    XCTAssertEqual(variance, 1, accuracy: 0.01)
    XCTAssertEqual(kurtosis, 3, accuracy: 0.05)
    XCTAssertEqual(beyond, 0.05, accuracy: 0.002)
    var worstLog: Float = 0
    var worstTrig: Float = 0
    for k in stride(from: 1, to: 1 << 23, by: 997) {
      let u = F8(repeating: Float(k) * 0x1p-23)
      let expectedLog = Float(Foundation.log(Double(u[0])))
      worstLog = max(worstLog, abs(naturalLog(u)[0] - expectedLog) / abs(expectedLog).ulp)
      let (c, s) = cosSinOfTurns(u)
      let angle = 2 * Double.pi * Double(u[0])
      worstTrig = max(
        worstTrig, abs(c[0] - Float(Foundation.cos(angle))), abs(s[0] - Float(Foundation.sin(angle))))
    }
    print("float ln: worst \(worstLog) ulps; cos/sin of turns: worst \(worstTrig)")
    XCTAssertLessThanOrEqual(worstLog, 4)
    XCTAssertLessThan(worstTrig, 2e-7)
  }
}

/// The C variants of the vocoder's vector math, one per instruction set, give the same bits.
final class VectorMathVariantsTests: XCTestCase {
  func testEveryInstructionSetGivesTheSameBits() throws {
    let sources = packageRoot + "/Sources"
    let harness = packageRoot + "/Tests/Oracles/vectormath_variants.c"
    let dir = temporaryDirectory(self)
    var hashes: [String: String] = [:]
    for (name, flags) in [
      ("baseline", ["-march=x86-64"]), ("avx2", ["-march=x86-64", "-mavx2"]),
      ("avx512", ["-march=x86-64", "-mavx512f"]), ("native with FMA", ["-march=native"]),
      ("as built (clones)", []),
    ] {
      let exe = dir + "/variants-\(hashes.count)"
      let clones = name.hasPrefix("as built") ? [] : ["-DSERTRAIN_NO_TARGET_CLONES"]
      let build = try runCommand(
        ["clang", "-O2"] + flags + clones + [
          "-I", sources + "/CAudioKernels/include", "-I", sources + "/CConvKernels/include", "-I",
          sources + "/CSystem/include", harness,
          sources + "/CAudioKernels/vectormath.c", sources + "/CConvKernels/stem.c",
          sources + "/CConvKernels/batchnorm.c", sources + "/CConvKernels/winograd.c", "-o", exe,
        ],
        executable: "/usr/bin/env")
      XCTAssertEqual(build.status, 0, "clang \(name): \(build.stderr)")
      let cpu = try String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)
      if name == "avx512" && !cpu.contains("avx512f") { continue }  // cannot run here
      if name == "avx2" && !cpu.contains("avx2") { continue }
      let run = try runCommand([], executable: exe)
      XCTAssertEqual(run.status, 0, run.stderr)
      hashes[name] = run.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
    print("vector math variants: \(hashes)")
    XCTAssertGreaterThanOrEqual(hashes.count, 3)
    XCTAssertEqual(Set(hashes.values).count, 1, "variants disagree: \(hashes)")
  }
}
