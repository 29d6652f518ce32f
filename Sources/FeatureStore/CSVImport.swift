// `sertrain convert`: streams a seed-style features.csv (numeric feature columns and one label column) into the
// feature file. Memory is bounded by one block of text and its rows, not by the file.
import CSupport
import Dispatch
import HDF5

#if canImport(Glibc)
  import Glibc
#endif

public struct CSVImportOptions: Sendable {
  /// The label column's name; nil looks for `labels`, then `Emotions` (any case).
  public var labelColumn: String?
  /// Rows that come from one recording, in the seed's order (original, noise, pitch, pitch+noise for 4).
  public var rowsPerRecording: Int?
  /// Skip rows with the wrong column count, text, or infinities (and report them) instead of failing.
  public var skipBadRows = false
  public var overwrite = false
  /// Text read per block; rows are parsed in parallel within a block.
  public var blockBytes = 4 << 20
  public var threads = availableCores()
  public init() {}
}

/// A row that was skipped (`--skip-bad-rows`).
public struct SkippedRow: Sendable, CustomStringConvertible {
  public let line: Int
  public let reason: String
  public var description: String { "line \(line): \(reason)" }
}

public struct CSVImportReport: Sendable {
  public var rows = 0
  public var width = 0
  public var classes: [String] = []
  public var classCounts: [Int] = []
  public var emptyCells = 0
  public var nanCells = 0
  public var skipped: [SkippedRow] = []
  public var recordings = 0
  public var bytes = 0
}

/// A CSV that cannot be converted; the message names the file and line (and column where it applies).
public struct CSVImportError: Error, CustomStringConvertible, Sendable {
  public let path: String
  public let line: Int?
  public let message: String
  public var description: String {
    line.map { "\(path):\($0): \(message)" } ?? "\(path): \(message)"
  }
}

/// Progress: bytes read, total bytes, rows written.
public typealias ImportProgress = (Int, Int, Int) -> Void

/// Converts `csvPath` into a feature file at `outputPath` (written under a temporary name, renamed at the end).
public func importCSV(
  from csvPath: String, to outputPath: String, options: CSVImportOptions = CSVImportOptions(),
  progress: ImportProgress? = nil
) throws -> CSVImportReport {
  let reader = try BlockReader(path: csvPath, blockBytes: options.blockBytes)
  guard reader.totalBytes > 0 else {
    throw CSVImportError(path: csvPath, line: nil, message: "empty file; expected a header row and data rows")
  }
  // The header.
  guard let headerBytes = try reader.firstLine() else {
    throw CSVImportError(path: csvPath, line: 1, message: "no complete header line")
  }
  if headerBytes.contains(0) {
    throw CSVImportError(path: csvPath, line: nil, message: "not a CSV file (binary data in the first line)")
  }
  let header = splitHeader(headerBytes)
  guard header.count >= 2 else {
    throw CSVImportError(
      path: csvPath, line: 1,
      message:
        "not a CSV file: the first line has \(header.count) column(s); expected feature columns and a label column")
  }
  let wanted = options.labelColumn.map { [$0.lowercased()] } ?? ["labels", "emotions"]
  guard let labelIndex = wanted.lazy.compactMap({ w in header.firstIndex { $0.lowercased() == w } }).first
  else {
    let shown = header.count > 6 ? header.prefix(3) + ["…"] + header.suffix(2) : header[...]
    throw CSVImportError(
      path: csvPath, line: 1,
      message:
        "no label column named \(wanted.map { "'\($0)'" }.joined(separator: " or ")) in the header (\(shown.joined(separator: ","))); pass --label-column NAME"
    )
  }
  let columns = header.count
  let width = columns - 1
  if let rpr = options.rowsPerRecording, rpr < 1 {
    throw CSVImportError(path: csvPath, line: nil, message: "--rows-per-recording must be at least 1, got \(rpr)")
  }

  var report = CSVImportReport()
  report.width = width
  report.bytes = reader.totalBytes
  let writer = try FeatureFileWriter(path: outputPath, width: width, overwrite: options.overwrite)
  var recipe = FeatureRecipe()
  recipe.width = width
  recipe.origin = "convert"

  var lineNumber = 1  // lines consumed so far (the header is line 1)
  var dataIndex = 0  // data lines seen, skipped ones included: recording ids follow the file's layout
  var rows = [Float]()
  var results = [LineResult]()
  var maxSource = -1
  while let block = try reader.nextBlock() {
    let lines = splitLines(block)
    if lines.isEmpty { continue }
    let n = lines.count
    rows.removeAll(keepingCapacity: true)
    rows.append(contentsOf: repeatElement(0, count: n * width))
    results = [LineResult](repeating: LineResult(), count: n)
    // Parse the block's lines in parallel: each line writes only its own row and result.
    let parts = min(options.threads, max(1, n / 8))
    block.withUnsafeBufferPointer { text in
      rows.withUnsafeMutableBufferPointer { out in
        results.withUnsafeMutableBufferPointer { res in
          let text = text
          let out = out
          let res = res
          DispatchQueue.concurrentPerform(iterations: parts) { part in
            let lo = n * part / parts
            let hi = n * (part + 1) / parts
            for k in lo..<hi {
              res[k] = parseLine(
                text, lines[k], columns: columns, labelIndex: labelIndex,
                into: out.baseAddress! + k * width)
            }
          }
        }
      }
    }
    // Serially, in line order: errors, skips, labels.
    var labels: [String] = []
    var sources: [Int32] = []
    var augmentations: [Int8] = []
    var kept = 0
    for k in 0..<n {
      let line = lineNumber + 1 + lines[k].number
      let r = results[k]
      if r.blank { continue }
      defer { dataIndex += 1 }
      if let problem = r.problem(header: header, labelIndex: labelIndex, columns: columns) {
        if options.skipBadRows {
          report.skipped.append(SkippedRow(line: line, reason: problem))
          continue
        }
        throw CSVImportError(path: csvPath, line: line, message: problem + " (--skip-bad-rows skips such rows)")
      }
      report.emptyCells += Int(r.empty)
      report.nanCells += Int(r.nan)
      if kept != k {
        rows.withUnsafeMutableBufferPointer { b in
          let base = b.baseAddress!
          (base + kept * width).update(from: base + k * width, count: width)
        }
      }
      kept += 1
      labels.append(unquote(String(decoding: block[r.labelStart..<r.labelEnd], as: UTF8.self)))
      let source = options.rowsPerRecording.map { dataIndex / $0 } ?? dataIndex
      maxSource = max(maxSource, source)
      sources.append(Int32(source))
      augmentations.append(options.rowsPerRecording == 4 ? Int8(dataIndex % 4) : -1)
    }
    lineNumber += lines.last!.number + 1
    try rows.withUnsafeBufferPointer { b in
      try writer.append(
        rows: UnsafeBufferPointer(rebasing: b[0..<(kept * width)]), labels: labels, sources: sources,
        augmentations: augmentations)
    }
    progress?(reader.bytesRead, reader.totalBytes, writer.rowCount)
  }
  guard writer.rowCount > 0 else {
    writer.discard()
    let why =
      report.skipped.isEmpty ? "a header but no data rows" : "no valid data rows (\(report.skipped.count) skipped)"
    throw CSVImportError(path: csvPath, line: nil, message: why)
  }
  if let rpr = options.rowsPerRecording, dataIndex % rpr != 0 {
    writer.discard()
    throw CSVImportError(
      path: csvPath, line: nil,
      message: "\(dataIndex) data rows is not a multiple of --rows-per-recording \(rpr)")
  }
  report.rows = writer.rowCount
  report.recordings = maxSource + 1
  let recordings = [RecordingInfo](
    repeating: RecordingInfo(path: "", speaker: "", corpus: ""), count: report.recordings)
  var attributes = ["converted_from": csvPath]
  attributes["label_column"] = header[labelIndex]
  try writer.finish(
    recipe: recipe, recordings: recordings, attributes: attributes, rowsPerRecording: options.rowsPerRecording)
  let stored = try FeatureFile(path: outputPath)
  report.classes = stored.classes
  report.classCounts = stored.classCounts()
  return report
}

// MARK: - Lines and cells

struct LineSpan {
  var start: Int
  var end: Int  // exclusive, without the line break
  var number: Int  // 0-based line number within the block
}

struct LineResult {
  var blank = false
  var columns = 0
  var empty: Int32 = 0
  var nan: Int32 = 0
  var badColumn = -1
  var badStatus = CellStatus.number
  var badText = ""
  var labelStart = 0
  var labelEnd = 0

  func problem(header: [String], labelIndex: Int, columns expected: Int) -> String? {
    if columns != expected { return "\(columns) columns, expected \(expected) as in the header" }
    if labelEnd <= labelStart { return "empty label in column '\(header[labelIndex])'" }
    guard badColumn >= 0 else { return nil }
    let what = "column \(badColumn + 1) ('\(header[badColumn])')"
    switch badStatus {
    case .infinite: return "\(what): '\(badText)' is not a finite number"
    case .outOfRange: return "\(what): '\(badText)' is outside float32's range"
    default: return "\(what): '\(badText)' is not a number"
    }
  }
}

/// Splits a block of complete lines (LF or CRLF) into spans.
func splitLines(_ block: [UInt8]) -> [LineSpan] {
  var spans: [LineSpan] = []
  spans.reserveCapacity(256)
  block.withUnsafeBufferPointer { b in
    var start = 0
    var number = 0
    let n = b.count
    while start < n {
      var end = start
      if let nl = memchr(b.baseAddress! + start, 0x0A, n - start) {
        end = b.baseAddress!.distance(to: nl.assumingMemoryBound(to: UInt8.self))
      } else {
        end = n
      }
      var stop = end
      if stop > start && b[stop - 1] == 0x0D { stop -= 1 }
      spans.append(LineSpan(start: start, end: stop, number: number))
      number += 1
      start = end + 1
    }
  }
  return spans
}

/// Parses one line: feature cells into `out`, the label's byte range, and the first problem.
func parseLine(
  _ text: UnsafeBufferPointer<UInt8>, _ span: LineSpan, columns: Int, labelIndex: Int,
  into out: UnsafeMutablePointer<Float>
) -> LineResult {
  var r = LineResult()
  if span.end == span.start { r.blank = true; return r }
  let base = text.baseAddress!
  var pos = span.start
  var column = 0
  var feature = 0
  while true {
    // Find the end of this cell (quotes allowed around a cell, with "" escapes, no line breaks inside).
    var cellEnd = pos
    if pos < span.end && base[pos] == UInt8(ascii: "\"") {
      cellEnd += 1
      while cellEnd < span.end {
        if base[cellEnd] == UInt8(ascii: "\"") {
          if cellEnd + 1 < span.end && base[cellEnd + 1] == UInt8(ascii: "\"") { cellEnd += 2; continue }
          cellEnd += 1
          break
        }
        cellEnd += 1
      }
      while cellEnd < span.end && base[cellEnd] != UInt8(ascii: ",") { cellEnd += 1 }
    } else if let c = memchr(base + pos, Int32(UInt8(ascii: ",")), span.end - pos) {
      cellEnd = base.distance(to: c.assumingMemoryBound(to: UInt8.self))
    } else {
      cellEnd = span.end
    }
    if column == labelIndex {
      r.labelStart = pos
      r.labelEnd = cellEnd
      while r.labelStart < r.labelEnd && base[r.labelStart] == 0x20 { r.labelStart += 1 }
      while r.labelEnd > r.labelStart && base[r.labelEnd - 1] == 0x20 { r.labelEnd -= 1 }
    } else if feature < columns - 1 {
      var cs = pos
      var ce = cellEnd
      if ce - cs >= 2 && base[cs] == UInt8(ascii: "\"") && base[ce - 1] == UInt8(ascii: "\"") {
        cs += 1
        ce -= 1
      }
      let (v, status) = parseFloatCell(base + cs, ce - cs)
      switch status {
      case .number: out[feature] = v
      case .empty: out[feature] = 0; r.empty += 1
      case .nan: out[feature] = 0; r.nan += 1
      default:
        out[feature] = 0
        if r.badColumn < 0 {
          r.badColumn = column
          r.badStatus = status
          r.badText = String(decoding: UnsafeBufferPointer(start: base + cs, count: min(ce - cs, 40)), as: UTF8.self)
        }
      }
      feature += 1
    }
    column += 1
    if cellEnd >= span.end { break }
    pos = cellEnd + 1
  }
  r.columns = column
  return r
}

/// Header cells, with surrounding quotes and spaces removed (a UTF-8 byte-order mark too).
func splitHeader(_ bytes: [UInt8]) -> [String] {
  var b = bytes[...]
  if b.starts(with: [0xEF, 0xBB, 0xBF]) { b = b.dropFirst(3) }
  if b.last == 0x0D { b = b.dropLast() }
  return b.split(separator: UInt8(ascii: ","), omittingEmptySubsequences: false).map {
    unquote(String(decoding: $0, as: UTF8.self).trimmingSpaces())
  }
}

func unquote(_ s: String) -> String {
  guard s.count >= 2, s.first == "\"", s.last == "\"" else { return s }
  return String(s.dropFirst().dropLast()).replacing("\"\"", with: "\"")
}

extension String {
  func trimmingSpaces() -> String {
    var s = Substring(self)
    while s.first == " " || s.first == "\t" { s = s.dropFirst() }
    while s.last == " " || s.last == "\t" { s = s.dropLast() }
    return String(s)
  }
}

// MARK: - Reading blocks of whole lines

/// Reads a file in blocks that end at a line break; the partial last line carries into the next block.
final class BlockReader {
  let path: String
  let fd: Int32
  let totalBytes: Int
  let blockBytes: Int
  private(set) var bytesRead = 0
  private var carry: [UInt8] = []
  private var eof = false

  init(path: String, blockBytes: Int) throws {
    self.path = path
    self.blockBytes = max(blockBytes, 4096)
    var st = stat()
    guard stat(path, &st) == 0 else {
      throw CSVImportError(path: path, line: nil, message: "cannot open: \(String(cString: strerror(errno)))")
    }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
      throw CSVImportError(path: path, line: nil, message: "not a regular file")
    }
    fd = open(path, O_RDONLY)
    guard fd >= 0 else {
      throw CSVImportError(path: path, line: nil, message: "cannot open: \(String(cString: strerror(errno)))")
    }
    totalBytes = Int(st.st_size)
  }
  deinit { close(fd) }

  private func readMore(_ count: Int) throws -> [UInt8] {
    var buf = [UInt8](repeating: 0, count: count)
    var got = 0
    while got < count {
      let r = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, count - got) }
      if r < 0 {
        if errno == EINTR { continue }
        throw CSVImportError(path: path, line: nil, message: "read failed: \(String(cString: strerror(errno)))")
      }
      if r == 0 { eof = true; break }
      got += r
    }
    bytesRead += got
    buf.removeLast(count - got)
    return buf
  }

  /// The first line (the header), without its line break; the rest stays for `nextBlock`.
  func firstLine() throws -> [UInt8]? {
    while true {
      if let nl = carry.firstIndex(of: 0x0A) {
        let line = Array(carry[..<nl])
        carry.removeFirst(nl + 1)
        return line
      }
      if eof {
        return carry.isEmpty
          ? nil
          : {
            let l = carry; carry = []; return l
          }()
      }
      // A header longer than a block grows the read; a file with no line break ends at EOF.
      carry += try readMore(blockBytes)
      if carry.count > 64 << 20 { return nil }
    }
  }

  /// The next block of whole lines, or nil at the end of the file.
  func nextBlock() throws -> [UInt8]? {
    while true {
      if eof {
        if carry.isEmpty { return nil }
        let block = carry
        carry = []
        return block
      }
      let fresh = try readMore(blockBytes)
      var block = carry
      block += fresh
      if let nl = block.lastIndex(of: 0x0A) {
        carry = Array(block[(nl + 1)...])
        block.removeLast(block.count - nl - 1)
        return block
      }
      carry = block
    }
  }
}

/// Cores this process may run on (its CPU affinity), at least 1.
public func availableCores() -> Int { Int(sertrain_available_cores()) }
