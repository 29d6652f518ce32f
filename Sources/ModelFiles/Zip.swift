// The zip archive of Keras 3's native `.keras` files: entries stored uncompressed, as `model.save` writes them
// (PKWARE APPNOTE 6.3: local headers, the central directory, its end record; no zip64, so up to 4 GiB).
import Base

/// CRC-32 (IEEE 802.3, reflected, as zip uses it).
func crc32(_ bytes: [UInt8]) -> UInt32 {
  let table: [UInt32] = (0..<256).map { n in
    (0..<8).reduce(UInt32(n)) { c, _ in c & 1 == 1 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
  }
  return ~bytes.reduce(~UInt32(0)) { c, b in table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
}

/// The bytes of a zip archive holding `entries` (name, contents) uncompressed, in order.
func zipStored(_ entries: [(name: String, bytes: [UInt8])]) -> [UInt8] {
  var out: [UInt8] = []
  var central: [UInt8] = []
  func put16(_ v: Int, _ to: inout [UInt8]) { to += [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
  func put32(_ v: UInt32, _ to: inout [UInt8]) { to += (0..<4).map { UInt8(v >> (8 * $0) & 0xFF) } }
  for (name, bytes) in entries {
    let (offset, crc, size, nameBytes) = (UInt32(out.count), crc32(bytes), UInt32(bytes.count), Array(name.utf8))
    // Version 2.0, no flags, stored, a fixed DOS time (1980-01-01 00:00), then crc and sizes.
    let common: (inout [UInt8]) -> Void = { h in
      for v in [20, 0, 0, 0, 33] { put16(v, &h) }
      for v in [crc, size, size] { put32(v, &h) }
      put16(nameBytes.count, &h)
      put16(0, &h)
    }
    put32(0x0403_4B50, &out)
    common(&out)
    out += nameBytes + bytes
    put32(0x0201_4B50, &central)
    put16(20, &central)
    common(&central)
    for _ in 0..<3 { put16(0, &central) }  // comment length, disk, internal attributes
    put32(0, &central)
    put32(offset, &central)
    central += nameBytes
  }
  let directoryOffset = UInt32(out.count)
  out += central
  put32(0x0605_4B50, &out)
  for v in [0, 0, entries.count, entries.count] { put16(v, &out) }
  put32(UInt32(central.count), &out)
  put32(directoryOffset, &out)
  put16(0, &out)
  return out
}

/// The entries of a zip archive, by name; entries must be stored (Keras writes them so) and their CRCs match.
func unzipStored(_ data: [UInt8], path: String) throws -> [String: [UInt8]] {
  func u16(_ i: Int) -> Int { Int(data[i]) | Int(data[i + 1]) << 8 }
  func u32(_ i: Int) -> Int { u16(i) | u16(i + 2) << 16 }
  // The end record: the last "PK\5\6" (a comment of up to 64 KiB may follow it).
  guard data.count >= 22,
    let end = stride(from: data.count - 22, through: max(0, data.count - 22 - 65_535), by: -1).first(where: {
      u32($0) == 0x0605_4B50
    })
  else { throw Failure(path, "not a zip archive (a .keras file is one): no end-of-directory record") }
  var entries: [String: [UInt8]] = [:]
  var at = u32(end + 16)
  for _ in 0..<u16(end + 10) {
    guard at + 46 <= data.count, u32(at) == 0x0201_4B50 else { throw Failure(path, "a damaged zip directory") }
    let (method, crc, size, nameLength) = (u16(at + 10), u32(at + 16), u32(at + 20), u16(at + 28))
    let (extra, comment, local) = (u16(at + 30), u16(at + 32), u32(at + 42))
    guard at + 46 + nameLength <= data.count else { throw Failure(path, "a damaged zip directory") }
    let name = String(decoding: data[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
    at += 46 + nameLength + extra + comment
    guard method == 0 else {
      throw Failure(
        path, "\(name) is compressed (zip method \(method)); sertrain reads .keras files as Keras writes them, stored")
    }
    guard local + 30 <= data.count, u32(local) == 0x0403_4B50 else {
      throw Failure(path, "\(name): a damaged zip entry")
    }
    let start = local + 30 + u16(local + 26) + u16(local + 28)
    guard start + size <= data.count else { throw Failure(path, "\(name): truncated") }
    let bytes = Array(data[start..<(start + size)])
    guard crc32(bytes) == UInt32(crc) else {
      throw Failure(path, "\(name): its CRC-32 does not match (a damaged archive)")
    }
    entries[name] = bytes
  }
  return entries
}
