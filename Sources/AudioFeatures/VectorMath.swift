import CSupport

/// Vectorised float32 `hypot`, `atan2`, `sin` and `cos` for the phase vocoder, evaluated in double precision and
/// rounded to float once. The double evaluation is accurate to about 1e-13 relative, so the float result is the
/// correctly rounded one except when the exact value lies within that distance of a rounding boundary; glibc's
/// float functions, which this replaces, are correctly rounded in the same cases (they are within an ulp), so the
/// vocoder's float32 phase accumulator sees the same values bar a rare ulp. Four lanes of double at a time, so the
/// compiler uses two-lane SSE2 on any x86-64 (and NEON on arm64) without CPU-specific builds.
typealias D4 = SIMD4<Double>
typealias F4 = SIMD4<Float>
typealias F8 = SIMD8<Float>

/// Four floats at `p` (any alignment), and four stored there.
@inline(__always) func loadF4(_ p: UnsafePointer<Float>) -> F4 {
  UnsafeRawPointer(p).loadUnaligned(as: F4.self)
}

@inline(__always) func storeF4(_ v: F4, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: v, as: F4.self)
}

/// Lane-wise square roots in packed instructions (Swift's `squareRoot()` on a SIMD vector calls `sqrt` per lane).
@inline(__always) func squareRoot(_ v: D4) -> D4 { sertrain_sqrt_double4(v) }
@inline(__always) func squareRoot(_ v: F8) -> F8 { sertrain_sqrt_float8(v) }

/// Float lanes to double (exact), and double lanes rounded to float.
@inline(__always) func widen(_ v: F4) -> D4 { D4(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3])) }
@inline(__always) func narrow(_ v: D4) -> F4 { F4(Float(v[0]), Float(v[1]), Float(v[2]), Float(v[3])) }

/// `2^52 + 2^51`: adding and subtracting it rounds a double below 2^51 in magnitude to the nearest integer (ties to
/// even), and leaves that integer in the low bits of the sum's bit pattern.
private let roundingMagic = 0x1.8p52

/// `|v|` (the sign bits cleared).
@inline(__always) private func magnitude(_ v: D4) -> D4 {
  unsafeBitCast(unsafeBitCast(v, to: SIMD4<UInt64>.self) & 0x7fff_ffff_ffff_ffff, to: D4.self)
}

/// Lanes whose sign bit is set (negative values and -0.0). Built from a double comparison: SSE2, which every
/// x86-64 has, has no 64-bit integer comparison, and Swift would do that one lane at a time.
@inline(__always) private func isNegative(_ v: D4) -> SIMDMask<SIMD4<Int64>> {
  let one = unsafeBitCast(
    unsafeBitCast(D4(repeating: 1), to: SIMD4<UInt64>.self) | (unsafeBitCast(v, to: SIMD4<UInt64>.self) & signMask),
    to: D4.self)
  return one .< D4()
}

/// `|v|` with the sign of `s`.
@inline(__always) private func withSign(_ v: D4, of s: D4) -> D4 {
  unsafeBitCast(
    (unsafeBitCast(v, to: SIMD4<UInt64>.self) & ~signMask) | (unsafeBitCast(s, to: SIMD4<UInt64>.self) & signMask),
    to: D4.self)
}

private let signMask = SIMD4<UInt64>(repeating: 0x8000_0000_0000_0000)

/// `|z|` and `arg z` of `count` complex numbers given as real and imaginary parts (numpy's `abs` and `angle` of
/// complex64).
func magnitudeAndAngle(
  re: UnsafePointer<Float>, im: UnsafePointer<Float>, magnitude: UnsafeMutablePointer<Float>,
  angle: UnsafeMutablePointer<Float>, count: Int
) {
  var i = 0
  while i + 4 <= count {
    let (x, y) = (widen(loadF4(re + i)), widen(loadF4(im + i)))
    storeF4(narrow(squareRoot(x * x + y * y)), magnitude + i)
    storeF4(narrow(atan2(y, x)), angle + i)
    i += 4
  }
  if i < count {
    var (x, y) = (D4(), D4())
    for j in 0..<(count - i) { (x[j], y[j]) = (Double(re[i + j]), Double(im[i + j])) }
    let (m, a) = (squareRoot(x * x + y * y), atan2(y, x))
    for j in 0..<(count - i) { (magnitude[i + j], angle[i + j]) = (Float(m[j]), Float(a[j])) }
  }
}

/// `cos` and `sin` of `count` float angles of magnitude below 1.6e6 (2^20 quarter turns; the vocoder's reach 2e5).
func cosSin(
  _ angles: UnsafePointer<Float>, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>, count: Int
) {
  var i = 0
  while i + 4 <= count {
    let (c, s) = cosSin(widen(loadF4(angles + i)))
    storeF4(narrow(c), cos + i)
    storeF4(narrow(s), sin + i)
    i += 4
  }
  if i < count {
    var x = D4()
    for j in 0..<(count - i) { x[j] = Double(angles[i + j]) }
    let (c, s) = cosSin(x)
    for j in 0..<(count - i) { (cos[i + j], sin[i + j]) = (Float(c[j]), Float(s[j])) }
  }
}

/// `atan2(y, x)` with IEEE signed zeros (`atan2(±0, -0) = ±π`), for finite inputs.
@inline(__always) func atan2(_ y: D4, _ x: D4) -> D4 {
  let (ax, ay) = (magnitude(x), magnitude(y))
  let swap = ay .> ax
  let num = ax.replacing(with: ay, where: .!swap)
  let den = ay.replacing(with: ax, where: .!swap)
  // t = min/max in [0, 1]; above tan(π/8) the argument is u = (t-1)/(t+1) = (num-den)/(num+den) instead, so
  // |u| <= tan(π/8) with one division either way. Both zero: u = 0.
  let big = num .> den * 0.41421356237309503
  let u = (num - den.replacing(with: 0, where: .!big)) / (num.replacing(with: 0, where: .!big) + den)
  let zero = den .== D4()
  let z = u * u
  // atan(u) = u - u³/3 + u⁵/5 - ...: with |u| <= 0.4142 the 15 terms to u²⁹ leave under 3e-13.
  var p = D4(repeating: 1.0 / 29)
  p = p * z - D4(repeating: 1.0 / 27)
  p = p * z + D4(repeating: 1.0 / 25)
  p = p * z - D4(repeating: 1.0 / 23)
  p = p * z + D4(repeating: 1.0 / 21)
  p = p * z - D4(repeating: 1.0 / 19)
  p = p * z + D4(repeating: 1.0 / 17)
  p = p * z - D4(repeating: 1.0 / 15)
  p = p * z + D4(repeating: 1.0 / 13)
  p = p * z - D4(repeating: 1.0 / 11)
  p = p * z + D4(repeating: 1.0 / 9)
  p = p * z - D4(repeating: 1.0 / 7)
  p = p * z + D4(repeating: 1.0 / 5)
  p = p * z - D4(repeating: 1.0 / 3)
  var r = (u + u * z * p).replacing(with: 0, where: zero)
  r = r.replacing(with: r + D4(repeating: .pi / 4), where: big)
  r = r.replacing(with: D4(repeating: .pi / 2) - r, where: swap)
  r = r.replacing(with: D4(repeating: .pi) - r, where: isNegative(x))
  return withSign(r, of: y)  // r >= 0 here
}

/// `(cos x, sin x)`: `x = k·π/2 + r` with `|r| <= π/4` (Cody–Waite with fdlibm's 33-bit `π/2`, exact for
/// `|k| < 2^20`), Taylor series to `r¹⁴` and `r¹⁵` (error under 1e-15), and the quadrant `k mod 4`.
@inline(__always) func cosSin(_ x: D4) -> (D4, D4) {
  let magic = D4(repeating: roundingMagic)
  let k = (x * (2 / Double.pi) + magic) - magic
  let r = (x - k * 1.57079632673412561417e+00) - k * 6.07710050650619224932e-11
  // The quadrant k mod 4, in double (0...3): k - 4*round((k - 1.5)/4).
  let q = k - 4 * (((k - 1.5) * 0.25 + magic) - magic)
  let z = r * r
  // sin r = r(1 - z/3! + z²/5! - ... - z⁷/15!), cos r = 1 - z/2! + ... - z⁷/14!.
  var s = D4(repeating: -1.0 / 1_307_674_368_000)
  s = s * z + D4(repeating: 1.0 / 6_227_020_800)
  s = s * z - D4(repeating: 1.0 / 39_916_800)
  s = s * z + D4(repeating: 1.0 / 362_880)
  s = s * z - D4(repeating: 1.0 / 5_040)
  s = s * z + D4(repeating: 1.0 / 120)
  s = s * z - D4(repeating: 1.0 / 6)
  s = (s * z + D4(repeating: 1)) * r
  var c = D4(repeating: -1.0 / 87_178_291_200)
  c = c * z + D4(repeating: 1.0 / 479_001_600)
  c = c * z - D4(repeating: 1.0 / 3_628_800)
  c = c * z + D4(repeating: 1.0 / 40_320)
  c = c * z - D4(repeating: 1.0 / 720)
  c = c * z + D4(repeating: 1.0 / 24)
  c = c * z - D4(repeating: 1.0 / 2)
  c = c * z + D4(repeating: 1)
  // Quadrants 1 and 3 swap sine and cosine; the signs follow the quadrant.
  let odd = (q .== 1) .| (q .== 3)
  let sinAbs = s.replacing(with: c, where: odd)
  let cosAbs = c.replacing(with: s, where: odd)
  let sinNegative = q .>= 2
  let cosNegative = (q .== 1) .| (q .== 2)
  return (cosAbs.replacing(with: -cosAbs, where: cosNegative), sinAbs.replacing(with: -sinAbs, where: sinNegative))
}

/// `ln x` for positive normal `x` (Box–Muller's uniforms): `x = 2^e·m` with `m` in `[√½, √2)`, and
/// `ln m = 2 atanh s = 2(s + s³/3 + ... + s²¹/21)` with `s = (m-1)/(m+1)`, `|s| <= 0.172` (error under 1e-17).
@inline(__always) func naturalLog(_ x: D4) -> D4 {
  let bits = unsafeBitCast(x, to: SIMD4<UInt64>.self)
  // The biased exponent as a double (2^52 + E, minus 2^52), and the mantissa scaled to [1, 2).
  let exponentBits = (bits &>> 52) & 0x7ff
  var e =
    unsafeBitCast(exponentBits | 0x4330_0000_0000_0000, to: D4.self) - D4(repeating: 0x1p52) - D4(repeating: 1023)
  var m = unsafeBitCast((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000, to: D4.self)
  let high = m .> D4(repeating: 1.4142135623730951)
  m = m.replacing(with: m * 0.5, where: high)
  e = e.replacing(with: e + 1, where: high)
  let s = (m - 1) / (m + 1)
  let z = s * s
  var p = D4(repeating: 1.0 / 21)
  p = p * z + D4(repeating: 1.0 / 19)
  p = p * z + D4(repeating: 1.0 / 17)
  p = p * z + D4(repeating: 1.0 / 15)
  p = p * z + D4(repeating: 1.0 / 13)
  p = p * z + D4(repeating: 1.0 / 11)
  p = p * z + D4(repeating: 1.0 / 9)
  p = p * z + D4(repeating: 1.0 / 7)
  p = p * z + D4(repeating: 1.0 / 5)
  p = p * z + D4(repeating: 1.0 / 3)
  let lnM = 2 * s + 2 * s * z * p
  // ln 2 split so that e·ln2hi is exact.
  return e * 6.93147180369123816490e-01 + (e * 1.90821492927058770002e-10 + lnM)
}

/// `ln x` in float32 for positive normal `x` (Box–Muller's `u₁`): `x = 2^e·m` with `m` in `[√½, √2)` (the
/// exponent split by integer arithmetic on the bits, as musl's `logf` does) and `ln m = 2(s + s³/3 + ... + s⁹/9)`,
/// `s = (m-1)/(m+1)` (series error under 1e-9; the result within a few ulps). No lane masks: they would be
/// evaluated lane by lane.
@inline(__always) func naturalLog(_ x: F8) -> F8 {
  // Offset so that mantissas from √½ (0x3f3504f3) upwards count to the next exponent.
  let shifted = unsafeBitCast(x, to: SIMD8<UInt32>.self) &+ (0x3f80_0000 - 0x3f35_04f3)
  // The exponent as a float (2^23 + biased exponent, minus 2^23 and the bias).
  let e = unsafeBitCast((shifted &>> 23) | 0x4b00_0000, to: F8.self) - F8(repeating: 0x1p23 + 127)
  let m = unsafeBitCast((shifted & 0x007f_ffff) &+ 0x3f35_04f3, to: F8.self)
  let s = (m - 1) / (m + 1)
  let z = s * s
  var p = F8(repeating: 1.0 / 9)
  p = p * z + F8(repeating: 1.0 / 7)
  p = p * z + F8(repeating: 1.0 / 5)
  p = p * z + F8(repeating: 1.0 / 3)
  return e * 0.693147182 + (2 * s + 2 * s * z * p)
}

/// `(cos 2πu, sin 2πu)` in float32 for `u` in `[0, 1)` given with 23 bits or fewer (Box–Muller's `u₂`): the
/// quadrant `q = round(4u)` and `r = (4u - q)·π/2` are exact in turns, then Taylor series in `r`, `|r| <= π/4`
/// (error under 3e-8); the quadrant swaps and signs by bit arithmetic, not lane masks.
@inline(__always) func cosSinOfTurns(_ u: F8) -> (F8, F8) {
  let quarters = 4 * u
  let magic = F8(repeating: 0x1.8p23)
  let rounded = quarters + magic  // q in the low bits (ties to even)
  let q = unsafeBitCast(rounded, to: SIMD8<UInt32>.self)
  let r = (quarters - (rounded - magic)) * (Float.pi / 2)
  let z = r * r
  var s = F8(repeating: 1.0 / 362_880)
  s = s * z - F8(repeating: 1.0 / 5_040)
  s = s * z + F8(repeating: 1.0 / 120)
  s = s * z - F8(repeating: 1.0 / 6)
  s = (s * z + 1) * r
  var c = F8(repeating: 1.0 / 40_320)
  c = c * z - F8(repeating: 1.0 / 720)
  c = c * z + F8(repeating: 1.0 / 24)
  c = c * z - F8(repeating: 1.0 / 2)
  c = c * z + 1
  // θ = q·π/2 + r: odd quadrants swap sine and cosine; sine is negated in quadrants 2 and 3, cosine in 1 and 2.
  let (sBits, cBits) = (unsafeBitCast(s, to: SIMD8<UInt32>.self), unsafeBitCast(c, to: SIMD8<UInt32>.self))
  let swap = 0 &- (q & 1)
  let sinBits = (sBits & ~swap) | (cBits & swap)
  let cosBits = (cBits & ~swap) | (sBits & swap)
  let sinSign = (q & 2) &<< 30
  let cosSign = ((q &+ 1) & 2) &<< 30
  return (unsafeBitCast(cosBits ^ cosSign, to: F8.self), unsafeBitCast(sinBits ^ sinSign, to: F8.self))
}
