import FoundationEssentials

/// `value` as JSON with sorted keys (for files and output a person may read: `pretty`), non-finite numbers as
/// the strings "inf", "-inf" and "nan", and slashes as they are.
public func jsonText<T: Encodable>(_ value: T, pretty: Bool = false) -> String {
  let e = JSONEncoder()
  e.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
  e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  return String(decoding: (try? e.encode(value)) ?? Data(), as: UTF8.self).replacing("\\/", with: "/")
}

/// A value from JSON that `jsonText` (or another tool) wrote.
public func decodeJSON<T: Decodable>(_ type: T.Type, from text: String) throws -> T {
  let d = JSONDecoder()
  d.nonConformingFloatDecodingStrategy = .convertFromString(
    positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
  do {
    return try d.decode(type, from: Data(text.utf8))
  } catch let error as DecodingError {
    func at(_ c: DecodingError.Context) -> String {
      let path = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
      return path.isEmpty ? "" : "at '\(path)': "
    }
    switch error {
    case .keyNotFound(let key, let c): throw Failure(at(c) + "'\(key.stringValue)' is missing")
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c):
      throw Failure(at(c) + c.debugDescription)
    @unknown default: throw error
    }
  }
}
