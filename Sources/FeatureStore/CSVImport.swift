// `sertrain convert`: streams a seed-style features.csv (numeric feature columns and one label column) into the
// feature file. Memory is bounded by one block of text and its rows, not by the file.

import Base
import CTextKernels
import Dispatch
import HDF5
import Schema

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

/// Progress: bytes read, total bytes, rows written.
public typealias ImportProgress = (Int, Int, Int) -> Void

/// Converts `csvPath` into a feature file at `outputPath` (written under a temporary name, renamed at the end).
public func importCSV(
  from csvPath: String, to outputPath: String, options: CSVImportOptions = CSVImportOptions(),
  progress: ImportProgress? = nil
) throws -> CSVImportReport {
  let reader = try BlockReader(path: csvPath, blockBytes: options.blockBytes)
  let (header, labelIndex) = try readHeader(reader, csvPath: csvPath, labelColumn: options.labelColumn)
  let (columns, width) = (header.count, header.count - 1)
  precondition((options.rowsPerRecording ?? 1) >= 1, "importCSV: rows per recording below 1 (the CLI refuses them)")

  var report = CSVImportReport()
  report.width = width
  report.bytes = reader.totalBytes
  let writer = try FeatureFileWriter(path: outputPath, width: width, overwrite: options.overwrite)
  let pipeline = WritePipeline(writer: writer, width: width)
  var recordsOf = RecordKeeper(rowsPerRecording: options.rowsPerRecording)
  var lineNumber = 1  // lines consumed so far (the header is line 1)
  var results = [LineResult]()
  while let block = reader.nextBlock() {
    let lines = findLines(block, threads: options.threads)
    if lines.isEmpty { continue }
    let n = lines.count
    let buffer = try pipeline.nextBuffer(rows: n)
    if results.count < n { results = [LineResult](repeating: LineResult(), count: n) }
    parse(block, lines, columns: columns, labelIndex: labelIndex, threads: options.threads, into: buffer, &results)
    // Serially, in line order: errors, skips, labels; kept rows move up over the skipped ones.
    var rows = BlockRows()
    for k in 0..<n {
      let line = lineNumber + 1 + k
      let r = results[k]
      if r.blank { continue }
      let label = block[r.labelStart..<r.labelEnd]
      let control = label.contains { $0 < 0x20 && $0 != 0x09 }
      if let problem = r.problem(header: header, labelIndex: labelIndex, columns: columns)
        ?? (control ? "the label in column '\(header[labelIndex])' holds a control character (NUL or another)" : nil)
      {
        recordsOf.skip()
        if options.skipBadRows {
          report.skipped.append(SkippedRow(line: line, reason: problem))
          continue
        }
        try pipeline.abandon(buffer)
        throw Failure(csvPath, line: line, problem + " (--skip-bad-rows skips such rows)")
      }
      report.emptyCells += Int(r.empty)
      report.nanCells += Int(r.nan)
      buffer.move(row: k, to: rows.count, width: width)
      let (source, augmentation) = recordsOf.next()
      rows.append(
        label: unquote(String(decoding: UnsafeBufferPointer(rebasing: label), as: UTF8.self)), source: source,
        augmentation: augmentation)
    }
    lineNumber += n
    let (bytesRead, totalBytes) = (reader.bytesRead, reader.totalBytes)
    pipeline.write(buffer, rows) { progress?(bytesRead, totalBytes, writer.rowCount) }
  }
  try pipeline.drain()
  guard writer.rowCount > 0 else {
    writer.discard()
    let why =
      report.skipped.isEmpty ? "a header but no data rows" : "no valid data rows (\(report.skipped.count) skipped)"
    throw Failure(csvPath, why)
  }
  if let rpr = options.rowsPerRecording, recordsOf.dataLines % rpr != 0 {
    writer.discard()
    throw Failure(csvPath, "\(recordsOf.dataLines) data rows is not a multiple of --rows-per-recording \(rpr)")
  }
  report.rows = writer.rowCount
  report.recordings = recordsOf.recordings
  var recipe = FeatureRecipe()
  recipe.width = width
  recipe.origin = "convert"
  try writer.finish(
    recipe: recipe,
    recordings: [RecordingInfo](repeating: RecordingInfo(path: "", speaker: "", corpus: ""), count: report.recordings),
    attributes: ["converted_from": csvPath, "label_column": header[labelIndex]],
    rowsPerRecording: options.rowsPerRecording)
  let stored = try FeatureFile(path: outputPath)
  report.classes = stored.classes
  report.classCounts = stored.classCounts()
  return report
}

/// The header's cells and the label column's index: `labelColumn`, else `labels` or `emotions` (any case).
private func readHeader(_ reader: BlockReader, csvPath: String, labelColumn: String?) throws -> ([String], Int) {
  guard reader.totalBytes > 0 else {
    throw Failure(csvPath, "empty file; expected a header row and data rows")
  }
  guard let headerBytes = reader.firstLine() else {
    throw Failure(csvPath, line: 1, "no complete header line")
  }
  if headerBytes.contains(0) {
    throw Failure(csvPath, "not a CSV file (binary data in the first line)")
  }
  let header = splitHeader(headerBytes)
  guard header.count >= 2 else {
    throw Failure(
      csvPath, line: 1,
      "not a CSV file: the first line has \(header.count) column(s); expected feature columns and a label column")
  }
  let wanted = labelColumn.map { [$0.lowercased()] } ?? ["labels", "emotions"]
  guard let labelIndex = wanted.lazy.compactMap({ w in header.firstIndex { $0.lowercased() == w } }).first
  else {
    let shown = header.count > 6 ? header.prefix(3) + ["…"] + header.suffix(2) : header[...]
    throw Failure(
      csvPath, line: 1,
      "no label column named \(wanted.map { "'\($0)'" }.joined(separator: " or ")) in the header (\(shown.joined(separator: ","))); pass --label-column NAME"
    )
  }
  return (header, labelIndex)
}

/// The block's lines, found in parallel: each part of the block by one thread (the first touch of the mapped text
/// is there).
private func findLines(_ block: UnsafeBufferPointer<UInt8>, threads: Int) -> [LineSpan] {
  let splitParts = min(threads, max(1, block.count >> 16))
  var partLines = [[LineSpan]](repeating: [], count: splitParts)
  partLines.withUnsafeMutableBufferPointer { partLines in
    let partLines = partLines
    DispatchQueue.concurrentPerform(iterations: splitParts) { part in
      partLines[part] = splitLines(
        block, from: lineStart(block, block.count * part / splitParts),
        to: lineStart(block, block.count * (part + 1) / splitParts))
    }
  }
  return splitParts == 1 ? partLines[0] : partLines.flatMap { $0 }
}

/// Parses the block's lines in parallel into row `k` of `buffer` and `results[k]` each. Four parts per thread,
/// taken as threads come free: the HDF5 writer's thread takes turns on the same cores (faster than one part each:
/// BENCHMARKS.md, convert).
private func parse(
  _ text: UnsafeBufferPointer<UInt8>, _ lines: [LineSpan], columns: Int, labelIndex: Int, threads: Int,
  into buffer: RowBuffer, _ results: inout [LineResult]
) {
  let (n, width) = (lines.count, columns - 1)
  let parts = min(threads * 4, max(1, n / 8))
  buffer.rows.withUnsafeMutableBufferPointer { out in
    results.withUnsafeMutableBufferPointer { res in
      let (out, res) = (out, res)
      DispatchQueue.concurrentPerform(iterations: parts) { part in
        for k in (n * part / parts)..<(n * (part + 1) / parts) {
          res[k] = parseLine(
            text, lines[k], columns: columns, labelIndex: labelIndex, into: out.baseAddress! + k * width)
        }
      }
    }
  }
}

/// Which recording each data line is and its augmentation: with `rowsPerRecording` r, line i of the data (skipped
/// ones included, so the ids follow the file's layout) is recording i / r, and with 4 its augmentation i % 4 (the
/// seed's order); without, each line is its own recording.
private struct RecordKeeper {
  let rowsPerRecording: Int?
  private(set) var dataLines = 0
  private var maxSource = -1

  init(rowsPerRecording: Int?) { self.rowsPerRecording = rowsPerRecording }

  var recordings: Int { maxSource + 1 }

  /// A skipped data line.
  mutating func skip() { dataLines += 1 }

  /// A kept data line's recording and augmentation.
  mutating func next() -> (source: Int32, augmentation: Int8) {
    defer { dataLines += 1 }
    let source = rowsPerRecording.map { dataLines / $0 } ?? dataLines
    maxSource = max(maxSource, source)
    return (Int32(source), rowsPerRecording == 4 ? Int8(dataLines % 4) : -1)
  }
}

/// A block's kept rows: labels, recordings and augmentations, in order.
private struct BlockRows {
  var labels: [String] = []
  var sources: [Int32] = []
  var augmentations: [Int8] = []
  var count: Int { labels.count }

  mutating func append(label: String, source: Int32, augmentation: Int8) {
    labels.append(label)
    sources.append(source)
    augmentations.append(augmentation)
  }
}

/// One block's rows of floats (grown when a block has more lines than any before; every cell of a kept row is
/// overwritten).
private final class RowBuffer: @unchecked Sendable {
  var rows: [Float] = []
  /// Moves row `from` to row `to` (kept rows close up over skipped ones).
  func move(row from: Int, to: Int, width: Int) {
    guard from != to else { return }
    rows.withUnsafeMutableBufferPointer { b in
      (b.baseAddress! + to * width).update(from: b.baseAddress! + from * width, count: width)
    }
  }
}

/// Two row buffers: HDF5 writes one block on a serial queue while the next block is parsed into the other. The
/// first write error stops the writes and is thrown at the next buffer or at `drain`.
private final class WritePipeline: @unchecked Sendable {
  let writer: FeatureFileWriter
  let width: Int
  private let buffers = [RowBuffer(), RowBuffer()]
  private let free = [DispatchSemaphore(value: 1), DispatchSemaphore(value: 1)]
  private let queue = DispatchQueue(label: "sertrain.convert.write")
  private var error: Error?
  private var next = 0

  init(writer: FeatureFileWriter, width: Int) { (self.writer, self.width) = (writer, width) }

  /// The buffer for the next block of `rows` lines, once its previous write has finished.
  func nextBuffer(rows: Int) throws -> RowBuffer {
    let slot = next & 1
    next += 1
    free[slot].wait()
    if error != nil {
      free[slot].signal()
      try drain()  // throws the writer's error once nothing is queued
    }
    let buffer = buffers[slot]
    if buffer.rows.count < rows * width { buffer.rows = [Float](repeating: 0, count: rows * width) }
    return buffer
  }

  /// Gives `buffer` back unwritten and waits for the writes queued before it.
  func abandon(_ buffer: RowBuffer) throws {
    free[buffers[0] === buffer ? 0 : 1].signal()
    try drain()
  }

  /// Queues the first `rows.count` rows of `buffer` for the writer; `then` runs after they are written.
  func write(_ buffer: RowBuffer, _ rows: BlockRows, then: @escaping @Sendable () -> Void) {
    let done = free[buffers[0] === buffer ? 0 : 1]
    queue.async { [self] in
      defer { done.signal() }
      guard error == nil else { return }
      do {
        try buffer.rows.withUnsafeBufferPointer { b in
          try writer.append(
            rows: UnsafeBufferPointer(rebasing: b[0..<(rows.count * width)]), labels: rows.labels,
            sources: rows.sources, augmentations: rows.augmentations)
        }
        then()
      } catch {
        self.error = error
      }
    }
  }

  /// Waits for every queued write; throws the first write error.
  func drain() throws {
    queue.sync {}
    if let error { throw error }
  }
}

struct LineSpan {
  var start: Int
  var end: Int  // exclusive, without the line break
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
    // Shown as text: control characters (a NUL would end the message where C prints it) as escapes.
    let badText = String(
      badText.unicodeScalars.flatMap {
        $0.value < 0x20 ? Array("\\u{\(String($0.value, radix: 16))}".unicodeScalars) : [$0]
      }
      .map(Character.init))
    switch badStatus {
    case .infinite: return "\(what): '\(badText)' is not a finite number"
    case .outOfRange: return "\(what): '\(badText)' is outside float32's range"
    default: return "\(what): '\(badText)' is not a number"
    }
  }
}

/// The start of the first line that begins at or after `offset` in a block of whole lines (`b.count` if none).
func lineStart(_ b: UnsafeBufferPointer<UInt8>, _ offset: Int) -> Int {
  guard offset > 0 && offset < b.count else { return min(max(offset, 0), b.count) }
  guard let nl = memchr(b.baseAddress! + offset - 1, 0x0A, b.count - offset + 1) else { return b.count }
  return b.baseAddress!.distance(to: nl.assumingMemoryBound(to: UInt8.self)) + 1
}

/// Splits the lines (LF or CRLF) that start in `b[from..<to]` into spans.
func splitLines(_ b: UnsafeBufferPointer<UInt8>, from: Int = 0, to: Int? = nil) -> [LineSpan] {
  let n = to ?? b.count
  var spans: [LineSpan] = []
  spans.reserveCapacity(256)
  var start = from
  while start < n {
    var end = b.count
    if let nl = memchr(b.baseAddress! + start, 0x0A, b.count - start) {
      end = b.baseAddress!.distance(to: nl.assumingMemoryBound(to: UInt8.self))
    }
    var stop = end
    if stop > start && b[stop - 1] == 0x0D { stop -= 1 }
    spans.append(LineSpan(start: start, end: stop))
    start = end + 1
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
    // Fast path: the run of plain numbers (each followed by a comma or the line's end) up to the label column.
    if column != labelIndex && feature < columns - 1 && pos < span.end {
      let upToLabel = labelIndex > column ? labelIndex - column : Int.max
      let parsed = sertrain_parse_number_cells(
        base, &pos, span.end, out + feature, min(upToLabel, columns - 1 - feature))
      feature += parsed
      column += parsed
      if pos > span.end { break }
      if parsed > 0 { continue }
    }
    // General path. Find the end of this cell (quotes allowed around a cell, with "" escapes, no line breaks
    // inside).
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

/// Header cells as RFC 4180 quotes them (`csvCells`: a quoted name may hold a comma, as a data line's cell may),
/// without the spaces around them or a UTF-8 byte-order mark.
func splitHeader(_ bytes: UnsafeBufferPointer<UInt8>) -> [String] {
  var b = Array(bytes)[...]
  if b.starts(with: [0xEF, 0xBB, 0xBF]) { b = b.dropFirst(3) }
  if b.last == 0x0D { b = b.dropLast() }
  return csvCells(String(decoding: b, as: UTF8.self), separator: ",").map { $0.trimmingCharacters() }
}

func unquote(_ s: String) -> String {
  guard s.count >= 2, s.first == "\"", s.last == "\"" else { return s }
  return String(s.dropFirst().dropLast()).replacing("\"\"", with: "\"")
}

// MARK: - Reading blocks of whole lines

/// Maps a file and hands it out in blocks that end at a line break. Pages already handed out are released as it
/// goes (`MADV_DONTNEED`), so resident memory stays at about one block however large the file.
final class BlockReader {
  let path: String
  let totalBytes: Int
  let blockBytes: Int
  private let fd: Int32
  private let base: UnsafeMutableRawPointer?
  private(set) var bytesRead = 0
  private var released = 0
  private let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

  init(path: String, blockBytes: Int) throws {
    self.path = path
    self.blockBytes = max(blockBytes, 4096)
    var st = stat()
    guard stat(path, &st) == 0 else {
      throw Failure(path, "cannot open: \(String(cString: strerror(errno)))")
    }
    guard (st.st_mode & S_IFMT) == S_IFREG else {
      throw Failure(path, "not a regular file")
    }
    fd = open(path, O_RDONLY)
    guard fd >= 0 else {
      throw Failure(path, "cannot open: \(String(cString: strerror(errno)))")
    }
    totalBytes = Int(st.st_size)
    if totalBytes > 0 {
      let p = mmap(nil, totalBytes, PROT_READ, MAP_PRIVATE, fd, 0)
      guard let p, p != MAP_FAILED else {
        close(fd)
        throw Failure(path, "cannot map: \(String(cString: strerror(errno)))")
      }
      madvise(p, totalBytes, MADV_SEQUENTIAL)
      base = p
    } else {
      base = nil
    }
  }

  deinit {
    if let base { munmap(base, totalBytes) }
    close(fd)
  }

  private var bytes: UnsafePointer<UInt8> { UnsafePointer(base!.assumingMemoryBound(to: UInt8.self)) }

  /// The first line (the header), without its line break; nil for an empty file.
  func firstLine() -> UnsafeBufferPointer<UInt8>? {
    guard totalBytes > 0 else { return nil }
    let end = memchr(bytes, 0x0A, totalBytes).map { bytes.distance(to: $0.assumingMemoryBound(to: UInt8.self)) }
    bytesRead = end.map { $0 + 1 } ?? totalBytes
    return UnsafeBufferPointer(start: bytes, count: end ?? totalBytes)
  }

  /// The next block of whole lines (the last may lack its line break), or nil at the end of the file.
  func nextBlock() -> UnsafeBufferPointer<UInt8>? {
    releaseBehind(bytesRead)
    let start = bytesRead
    guard start < totalBytes else { return nil }
    var end = min(start + blockBytes, totalBytes)
    if end < totalBytes {
      var k = end
      while k > start && bytes[k - 1] != 0x0A { k -= 1 }
      if k > start {
        end = k
      } else if let nl = memchr(bytes + end, 0x0A, totalBytes - end) {  // a line longer than a block
        end = bytes.distance(to: nl.assumingMemoryBound(to: UInt8.self)) + 1
      } else {
        end = totalBytes
      }
    }
    bytesRead = end
    return UnsafeBufferPointer(start: bytes + start, count: end - start)
  }

  private func releaseBehind(_ offset: Int) {
    let upTo = offset / pageSize * pageSize
    if upTo > released, let base {
      madvise(base + released, upTo - released, MADV_DONTNEED)
      released = upTo
    }
  }
}
