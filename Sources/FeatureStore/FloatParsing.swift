#if canImport(Glibc)
  import Glibc
#endif

/// What a numeric CSV cell held.
public enum CellStatus: UInt8, Sendable {
  case number, empty, nan, infinite, text, outOfRange
}

/// Powers of ten exactly representable in a Double (10^0 ... 10^22).
private let exactPowersOfTen: [Double] = (0...22).map { e in
  var p = 1.0
  for _ in 0..<e { p *= 10 }
  return p
}

/// Parses one decimal cell `p[0..<n]` to the correctly rounded Float (as `strtof` would).
///
/// Fast path (Clinger): a mantissa of at most 2^53 and a decimal exponent within ±22 give a correctly rounded
/// Double in one multiplication or division. Rounding that Double to Float is then correct too, unless the
/// Double sits exactly on a Float rounding midpoint (or in Float's subnormal range); those cases, and long
/// mantissas, go to `strtof`. Cost: about one pass over the bytes.
@inline(__always)
public func parseFloatCell(_ p: UnsafePointer<UInt8>, _ n: Int) -> (Float, CellStatus) {
  var i = 0
  var end = n
  while i < end && (p[i] == 0x20 || p[i] == 0x09) { i &+= 1 }
  while end > i && (p[end &- 1] == 0x20 || p[end &- 1] == 0x09) { end &-= 1 }
  if i == end { return (0, .empty) }
  let start = i
  var negative = false
  if p[i] == UInt8(ascii: "-") {
    negative = true
    i &+= 1
  } else if p[i] == UInt8(ascii: "+") {
    i &+= 1
  }
  var mantissa: UInt64 = 0
  var digits = 0
  var significant = 0
  var exp10 = 0
  var overflowDigits = false
  while i < end, p[i] &- 0x30 < 10 {
    let d = UInt64(p[i] &- 0x30)
    if significant < 19 {
      mantissa = mantissa &* 10 &+ d
      if mantissa != 0 { significant &+= 1 }
    } else {
      exp10 &+= 1
      if d != 0 { overflowDigits = true }
    }
    digits &+= 1
    i &+= 1
  }
  if i < end && p[i] == UInt8(ascii: ".") {
    i &+= 1
    while i < end, p[i] &- 0x30 < 10 {
      let d = UInt64(p[i] &- 0x30)
      if significant < 19 {
        mantissa = mantissa &* 10 &+ d
        if mantissa != 0 { significant &+= 1 }
        exp10 &-= 1
      } else if d != 0 {
        overflowDigits = true
      }
      digits &+= 1
      i &+= 1
    }
  }
  if digits == 0 { return parseSpecial(p + start, end &- start) }
  if i < end && (p[i] | 0x20) == UInt8(ascii: "e") {
    i &+= 1
    var eNeg = false
    if i < end && (p[i] == UInt8(ascii: "-") || p[i] == UInt8(ascii: "+")) {
      eNeg = p[i] == UInt8(ascii: "-")
      i &+= 1
    }
    var e = 0
    var eDigits = 0
    while i < end, p[i] &- 0x30 < 10 {
      if e < 100_000 { e = e &* 10 &+ Int(p[i] &- 0x30) }
      eDigits &+= 1
      i &+= 1
    }
    if eDigits == 0 { return (0, .text) }
    exp10 &+= eNeg ? -e : e
  }
  if i != end { return (0, .text) }
  if mantissa == 0 { return (negative ? -0.0 : 0.0, .number) }
  if !overflowDigits && mantissa <= (1 << 53) && exp10 >= -22 && exp10 <= 22 {
    var d = Double(mantissa)
    d = exp10 < 0 ? d / exactPowersOfTen[-exp10] : d * exactPowersOfTen[exp10]
    let bits = d.bitPattern
    let belowFloat = bits & ((1 << 29) - 1)
    if belowFloat != (1 << 28) && d >= Double(Float.leastNormalMagnitude) {
      let f = Float(d)
      if f.isInfinite { return (0, .outOfRange) }
      return (negative ? -f : f, .number)
    }
  }
  return strtofCell(p + start, end &- start)
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
