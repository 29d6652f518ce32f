import FeatureStore
import Foundation
import XCTest
import _TestSupport

/// The fast cell parser against glibc's correctly rounded strtof (the naive reference).
final class FloatParsingTests: XCTestCase {
  func parse(_ s: String) -> (Float, CellStatus) {
    Array(s.utf8).withUnsafeBufferPointer { parseFloatCell($0.baseAddress!, $0.count) }
  }

  func reference(_ s: String) -> Float { strtof(s, nil) }

  func testAgreesWithStrtofBitForBitOnManyFormats() {
    var rng = TestRNG(seed: 42)
    var checked = 0
    for _ in 0..<20_000 {
      let magnitude = Double(Float.random(in: -12...8, using: &rng))
      let d = Double(rng.normal()) * pow(10, magnitude)
      let f = Float(d)
      let texts = [
        "\(f)",  // shortest round-trip float32 (as pandas writes float32 columns)
        "\(d)",  // shortest float64 (17 significant digits at most)
        String(format: "%.9g", d), String(format: "%.6e", d), String(format: "%.3f", d),
        String(format: "%.20f", d), String(format: "%.25g", d),
      ]
      for t in texts {
        let (v, status) = parse(t)
        XCTAssertEqual(status, .number, t)
        XCTAssertEqual(v.bitPattern, reference(t).bitPattern, "'\(t)': \(v) vs strtof \(reference(t))")
        checked += 1
      }
    }
    XCTAssertEqual(checked, 140_000)
  }

  func testHardRoundingCases() {
    // Decimal values on and next to float32 rounding midpoints, subnormals, and near the overflow threshold.
    let cases = [
      "16777217", "16777217.000000001", "16777216.999999999", "1.00000005960464477539062",
      "1.0000000596046447753906250001", "0.000000000000000000000000000000000000000001", "1e-45", "7e-46",
      "1.17549435e-38", "3.4028234e38", "3.40282356e38", "-0", "0e10", "00001.5000", "+.5", "5.", "1E3",
      "123456789012345678901234567890", "0.1", "0.2", "0.3",
    ]
    for t in cases {
      let (v, status) = parse(t)
      if reference(t).isInfinite {
        XCTAssertEqual(status, .outOfRange, t)
      } else {
        XCTAssertEqual(status, .number, t)
        XCTAssertEqual(v.bitPattern, reference(t).bitPattern, "'\(t)': \(v) vs \(reference(t))")
      }
    }
  }

  func testDecimalsNextToFloatMidpointsAgreeWithStrtof() {
    // The fast path multiplies by an inexact 10^-k and checks its distance from a Float midpoint: decimals of 9 to
    // 17 significant digits on, just below and just above midpoints (the values whose rounding that check guards).
    var rng = TestRNG(seed: 7)
    var checked = 0
    for _ in 0..<20_000 {
      let f = Float(Double(rng.normal()) * pow(10, Double(Float.random(in: -8...6, using: &rng))))
      guard f.isNormal else { continue }
      let midpoint = (Double(f) + Double(f.nextUp)) / 2
      for digits in [9, 12, 15, 16, 17] {
        for nudge in [-1.0, 0, 1] {
          let t = String(format: "%.\(digits - 1)e", midpoint + nudge * midpoint.ulp)
          let (v, status) = parse(t)
          XCTAssertEqual(status, .number, t)
          XCTAssertEqual(v.bitPattern, reference(t).bitPattern, "'\(t)': \(v) vs strtof \(reference(t))")
          let plain = String(format: "%.\(max(0, digits - 1 - Int(log10(abs(midpoint)).rounded(.down))))f", midpoint)
          if plain.count <= 24 {
            XCTAssertEqual(parse(plain).0.bitPattern, reference(plain).bitPattern, plain)
          }
          checked += 1
        }
      }
    }
    XCTAssertGreaterThan(checked, 250_000)
  }

  func testSpecialCells() {
    XCTAssertEqual(parse("").1, .empty)
    XCTAssertEqual(parse("  ").1, .empty)
    XCTAssertEqual(parse("NaN").1, .nan)
    XCTAssertEqual(parse("nan").1, .nan)
    XCTAssertEqual(parse("inf").1, .infinite)
    XCTAssertEqual(parse("-Infinity").1, .infinite)
    XCTAssertEqual(parse("1e40").1, .outOfRange)
    for t in ["abc", "1.2.3", "1e", "--1", "1,5", "0x10", "e5", "."] {
      XCTAssertEqual(parse(t).1, .text, t)
    }
    XCTAssertEqual(parse(" 2.5 ").0, 2.5)
  }
}
