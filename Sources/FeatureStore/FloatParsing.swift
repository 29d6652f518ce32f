#if canImport(Glibc)
  import Glibc
#endif

/// What a numeric CSV cell held.
public enum CellStatus: UInt8, Sendable {
  case number, empty, nan, infinite, text, outOfRange
}

/// 10^e for e in 0...22, the powers of ten a Double holds exactly. A switch compiles to a constant table; a global
/// array cost a `swift_once` check and a bounds check per cell (5.6% of convert's time).
@inline(__always)
private func exactPowerOfTen(_ e: Int) -> Double {
  switch e {
  case 0: 1e0
  case 1: 1e1
  case 2: 1e2
  case 3: 1e3
  case 4: 1e4
  case 5: 1e5
  case 6: 1e6
  case 7: 1e7
  case 8: 1e8
  case 9: 1e9
  case 10: 1e10
  case 11: 1e11
  case 12: 1e12
  case 13: 1e13
  case 14: 1e14
  case 15: 1e15
  case 16: 1e16
  case 17: 1e17
  case 18: 1e18
  case 19: 1e19
  case 20: 1e20
  case 21: 1e21
  default: 1e22
  }
}

/// Parses one decimal cell `p[0..<n]` to the correctly rounded Float (as `strtof` would).
@inline(__always)
public func parseFloatCell(_ p: UnsafePointer<UInt8>, _ n: Int) -> (Float, CellStatus) {
  var i = 0
  var end = n
  while i < end && (p[i] == 0x20 || p[i] == 0x09) { i &+= 1 }
  while end > i && (p[end &- 1] == 0x20 || p[end &- 1] == 0x09) { end &-= 1 }
  if i == end { return (0, .empty) }
  let (v, used, status) = parseDecimalPrefix(p + i, end &- i)
  if used == 0 { return parseSpecial(p + i, end &- i) }
  if used != end &- i { return (0, .text) }
  return (v, status)
}

/// Parses the longest decimal number at the start of `p[0..<limit]`: `[+-]digits[.digits][(e|E)[+-]digits]`.
/// Returns the value, the bytes used (0 when no digits start there) and `.number` or `.outOfRange`.
///
/// Fast path (Clinger): a mantissa of at most 2^53 and a decimal exponent within ±22 give a correctly rounded
/// Double in one multiplication or division. Rounding that Double to Float is then correct too, unless the
/// Double sits exactly on a Float rounding midpoint (or in Float's subnormal range); those cases, and mantissas
/// of more than 19 digits, go to `strtof`. Cost: one pass over the bytes.
@inline(__always)
public func parseDecimalPrefix(_ p: UnsafePointer<UInt8>, _ limit: Int) -> (Float, Int, CellStatus) {
  var i = 0
  var negative = false
  if i < limit && (p[i] == UInt8(ascii: "-") || p[i] == UInt8(ascii: "+")) {
    negative = p[i] == UInt8(ascii: "-")
    i &+= 1
  }
  var mantissa: UInt64 = 0
  var digits = 0
  var exp10 = 0
  var overflowDigits = false
  scanDigits(p, &i, limit, &mantissa, &digits, &exp10, &overflowDigits, fraction: false)
  if i < limit && p[i] == UInt8(ascii: ".") {
    i &+= 1
    scanDigits(p, &i, limit, &mantissa, &digits, &exp10, &overflowDigits, fraction: true)
  }
  if digits == 0 { return (0, 0, .text) }
  if i < limit && (p[i] | 0x20) == UInt8(ascii: "e") {
    var k = i &+ 1
    var eNeg = false
    if k < limit && (p[k] == UInt8(ascii: "-") || p[k] == UInt8(ascii: "+")) {
      eNeg = p[k] == UInt8(ascii: "-")
      k &+= 1
    }
    var e = 0
    var eDigits = 0
    while k < limit, p[k] &- 0x30 < 10 {
      if e < 100_000 { e = e &* 10 &+ Int(p[k] &- 0x30) }
      eDigits &+= 1
      k &+= 1
    }
    if eDigits > 0 {  // otherwise the 'e' is not part of the number
      exp10 &+= eNeg ? -e : e
      i = k
    }
  }
  if mantissa == 0 { return (negative ? -0.0 : 0.0, i, .number) }
  if !overflowDigits && mantissa <= (1 << 53) && exp10 >= -22 && exp10 <= 22 {
    var d = Double(mantissa)
    d = exp10 < 0 ? d / exactPowerOfTen(-exp10) : d * exactPowerOfTen(exp10)
    let belowFloat = d.bitPattern & ((1 << 29) - 1)
    if belowFloat != (1 << 28) && d >= Double(Float.leastNormalMagnitude) {
      let f = Float(d)
      if f.isInfinite { return (0, i, .outOfRange) }
      return (negative ? -f : f, i, .number)
    }
  }
  let (f, status) = strtofCell(p, i)
  return (f, i, status)
}

/// Appends a run of decimal digits to `mantissa`, keeping at most 19 significant digits (digits past that are
/// counted in `exp10` for the integer part, dropped for the fraction, and flagged when non-zero). Runs of up to
/// eight digits are read in one step with SWAR arithmetic when eight bytes are available.
@inline(__always)
private func scanDigits(
  _ p: UnsafePointer<UInt8>, _ i: inout Int, _ limit: Int, _ mantissa: inout UInt64, _ digits: inout Int,
  _ exp10: inout Int, _ overflowDigits: inout Bool, fraction: Bool
) {
  while i &+ 8 <= limit && mantissa < 10_000_000_000 {
    let v = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)  // little-endian: byte 0 is p[i]
    let classes = (v & 0xF0F0_F0F0_F0F0_F0F0) | (((v &+ 0x0606_0606_0606_0606) & 0xF0F0_F0F0_F0F0_F0F0) >> 4)
    let nonDigit = classes ^ 0x3333_3333_3333_3333
    let run = nonDigit == 0 ? 8 : nonDigit.trailingZeroBitCount >> 3
    if run == 0 { return }
    // Move the run to the high bytes and pad the low bytes with '0', then convert eight digits at once.
    let shift = UInt64(8 &* (8 &- run))
    let padded = run == 8 ? v : (v << shift) | (0x3030_3030_3030_3030 >> UInt64(8 &* run))
    var x = padded &- 0x3030_3030_3030_3030
    x = (x &* 10) &+ (x >> 8)
    x =
      (((x & 0x0000_00FF_0000_00FF) &* (100 &+ (1_000_000 << 32)))
        &+ (((x >> 16) & 0x0000_00FF_0000_00FF) &* (1 &+ (10_000 << 32)))) >> 32
    let scale: UInt64
    switch run {
    case 1: scale = 10
    case 2: scale = 100
    case 3: scale = 1000
    case 4: scale = 10_000
    case 5: scale = 100_000
    case 6: scale = 1_000_000
    case 7: scale = 10_000_000
    default: scale = 100_000_000
    }
    mantissa = mantissa &* scale &+ x
    if fraction { exp10 &-= run }
    digits &+= run
    i &+= run
    if run < 8 { return }
  }
  while i < limit, p[i] &- 0x30 < 10 {
    let d = UInt64(p[i] &- 0x30)
    if mantissa < 1_000_000_000_000_000_000 {
      mantissa = mantissa &* 10 &+ d
      if fraction { exp10 &-= 1 }
    } else {
      if !fraction { exp10 &+= 1 }
      if d != 0 { overflowDigits = true }
    }
    digits &+= 1
    i &+= 1
  }
}

/// The exact fallback: glibc's strtof on a NUL-terminated copy.
private func strtofCell(_ p: UnsafePointer<UInt8>, _ n: Int) -> (Float, CellStatus) {
  withUnsafeTemporaryAllocation(of: CChar.self, capacity: n + 1) { buf in
    for k in 0..<n { buf[k] = CChar(bitPattern: p[k]) }
    buf[n] = 0
    var endp: UnsafeMutablePointer<CChar>? = nil
    errno = 0
    let f = strtof(buf.baseAddress!, &endp)
    if endp != buf.baseAddress! + n { return (0, .text) }
    if f.isInfinite { return (0, .outOfRange) }
    return (f, .number)
  }
}

/// nan, inf, infinity (any case, optional sign), as pandas writes and reads them.
private func parseSpecial(_ p: UnsafePointer<UInt8>, _ n: Int) -> (Float, CellStatus) {
  var word = ""
  for k in 0..<min(n, 12) { word.append(Character(Unicode.Scalar(p[k] | 0x20))) }
  if n > 12 { return (0, .text) }
  switch word {
  case "nan", "-nan", "+nan": return (0, .nan)
  case "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity": return (0, .infinite)
  default: return (0, .text)
  }
}
