import CTextKernels

/// What a numeric CSV cell held.
public enum CellStatus: UInt8, Sendable {
  case number, empty, nan, infinite, text, outOfRange
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
/// Returns the value (correctly rounded, as `strtof`), the bytes used (0 when no digits start there) and
/// `.number` or `.outOfRange` (`CTextKernels/decimal.c`).
@inline(__always)
public func parseDecimalPrefix(_ p: UnsafePointer<UInt8>, _ limit: Int) -> (Float, Int, CellStatus) {
  var value: Float = 0
  var used = 0
  let status = sertrain_parse_decimal(p, limit, &value, &used)  // CellStatus's raw values
  return (value, used, CellStatus(rawValue: UInt8(status))!)
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
