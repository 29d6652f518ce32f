import CAudioKernels

/// Vector arithmetic for the audio front end. The phase vocoder's float32 `hypot`, `atan2`, `sin` and `cos` are
/// evaluated in double precision and rounded to float once (`magnitudeAndAngle`, `cosSin`). The double evaluation is
/// accurate to about 1e-13 relative, so the float result is the correctly rounded one except when the exact value
/// lies within that distance of a rounding boundary; glibc's float functions, which this replaces, are correctly
/// rounded in the same cases (they are within an ulp), so the vocoder's float32 phase accumulator sees the same
/// values bar a rare ulp. Those, the vocoder step built on them, the STFT's window, the power spectrum and its
/// decibels (`sertrain_power_db`, with the double logarithm) and the inverse STFT's overlap-add run in C
/// (`CAudioKernels/vectormath.c`), where one binary can carry AVX-512, AVX2 and baseline versions; the rest is Swift
/// SIMD on four lanes of double or eight of float (SSE2 on any x86-64).
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
@inline(__always) func squareRoot(_ v: F8) -> F8 { sertrain_sqrt_float8(v) }

/// Float lanes to double (exact), and double lanes rounded to float.
@inline(__always) func widen(_ v: F4) -> D4 { D4(Double(v[0]), Double(v[1]), Double(v[2]), Double(v[3])) }
@inline(__always) func narrow(_ v: D4) -> F4 { F4(Float(v[0]), Float(v[1]), Float(v[2]), Float(v[3])) }

/// `|z|` and `arg z` of `count` complex numbers given as real and imaginary parts (numpy's `abs` and `angle` of
/// complex64). In C (`vectormath.c`): compiled for AVX-512, AVX2 and baseline x86-64, picked at load time, with the
/// same bits from each.
func magnitudeAndAngle(
  re: UnsafePointer<Float>, im: UnsafePointer<Float>, magnitude: UnsafeMutablePointer<Float>,
  angle: UnsafeMutablePointer<Float>, count: Int
) {
  sertrain_magnitude_angle(re, im, magnitude, angle, count)
}

/// `cos` and `sin` of `count` float angles of magnitude below 1.6e6 (2^20 quarter turns; the vocoder's reach 2e5).
/// In C, as `magnitudeAndAngle`; the vocoder step inlines the same code, and this entry point is what the tests hold
/// to the C library.
func cosSin(
  _ angles: UnsafePointer<Float>, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>, count: Int
) {
  sertrain_cos_sin(angles, cos, sin, count)
}

/// One step of librosa's phase vocoder (`phase_vocoder`'s loop body) over `bins` bins, with its float32 phase
/// accumulator: the output column `phasor(phase, mag=(1 - alpha)|a| + alpha|b|)` as interleaved complex64 (the
/// cosines and sines rounded to float32 first, as numpy's), then `phase += advance + dphase` with `dphase` the
/// difference of the angles of `b` and `a` minus `advance`, wrapped by `np.round` to (-π, π]. In C, as
/// `magnitudeAndAngle`.
func vocoderStep(
  magnitudeA: UnsafePointer<Float>, magnitudeB: UnsafePointer<Float>, angleA: UnsafePointer<Float>,
  angleB: UnsafePointer<Float>, advance: UnsafePointer<Double>, alpha: Double, phase: UnsafeMutablePointer<Float>,
  column: UnsafeMutablePointer<Float>, bins: Int
) {
  sertrain_vocoder_step(magnitudeA, magnitudeB, angleA, angleB, advance, alpha, phase, column, bins)
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
