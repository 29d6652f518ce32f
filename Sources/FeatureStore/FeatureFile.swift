import Base
import HDF5
// The feature file (README.md, "Feature file"): HDF5 with `format = "sertrain-features"`, `version = 2` (1: before
// the attributes were sealed; still read).
//
//   features      float32 [N, width]  chunked by rows
//   labels        int32 [N]           index into `classes`
//   classes       strings [K]         sorted, as a one-hot encoder orders them
//   source        int32 [N]           recording index; all augmented rows of one recording share it
//   augmentation  int8 [N]            0 original, 1 noise, 2 pitch, 3 pitch+noise, -1 unknown (converted CSV)
//   sources/path, sources/speaker, sources/corpus   strings, one per recording
//   attributes    the feature recipe (its `layout`: seed when missing), sealed by `metadata_sha256` (version 2)
import Schema

public enum FeatureFormat {
  public static let name = "sertrain-features"
  public static let version = 2
  /// The seed study's row width: ZCR, RMS and 20 MFCCs over 108 frames.
  public static let seedWidth = FeatureRecipe.seedWidth
  /// Rows per chunk of `features`: a rank's shard read touches only the chunks it needs.
  public static let chunkRows = 32
  public static let augmentationNames = ["original", "noise", "pitch", "pitch+noise", "stretch", "shift"]
}

/// The recipe as a feature file's attributes; `predict` checks a checkpoint against it.
extension FeatureRecipe {
  func write(to f: H5Object) throws {
    try f.setAttribute("sample_rate", sampleRate)
    try f.setAttribute("offset", offset)
    try f.setAttribute("duration", duration)
    try f.setAttribute("frame_length", frameLength)
    try f.setAttribute("hop_length", hopLength)
    try f.setAttribute("n_mfcc", nMFCC)
    try f.setAttribute("n_mels", nMels)
    try f.setAttribute("resampler", resampler)
    try f.setAttribute("width", width)
    try f.setAttribute("origin", origin)
    try f.setAttribute("layout", layout.rawValue)
  }

  static func read(from f: H5Object) throws -> FeatureRecipe {
    var r = FeatureRecipe()
    r.sampleRate = try f.intAttribute("sample_rate")
    r.offset = try f.doubleAttribute("offset")
    r.duration = try f.doubleAttribute("duration")
    r.frameLength = try f.intAttribute("frame_length")
    r.hopLength = try f.intAttribute("hop_length")
    r.nMFCC = try f.intAttribute("n_mfcc")
    r.nMels = try f.intAttribute("n_mels")
    r.resampler = try f.stringAttribute("resampler")
    r.width = try f.intAttribute("width")
    r.origin = try f.stringAttribute("origin")
    if f.hasAttribute("layout") {  // files written before layouts are the seed's
      let name = try f.stringAttribute("layout")
      guard let layout = Layout(rawValue: name) else {
        throw Failure(
          f.filePath,
          "unknown row layout '\(name)' (this sertrain knows \(Layout.allCases.map(\.rawValue).joined(separator: ", ")))"
        )
      }
      r.layout = layout
    }
    return r
  }

}

/// One recording behind a group of rows.
public struct RecordingInfo: Equatable, Sendable {
  public var path: String
  public var speaker: String
  public var corpus: String
  public init(path: String, speaker: String, corpus: String) {
    self.path = path
    self.speaker = speaker
    self.corpus = corpus
  }
}

/// Speakers are told apart by name, so one name in two corpora (a manifest's speaker `01` in each) would be taken as
/// one voice: put on one side of a speaker split, standardised by the two's pooled statistics. Such names are
/// qualified with their corpus, `corpus/01`; returns the names that were (sorted).
public func qualifySharedSpeakers(_ recordings: inout [RecordingInfo]) -> [String] {
  var corpora: [String: Set<String>] = [:]
  for r in recordings where !r.speaker.isEmpty { corpora[r.speaker, default: []].insert(r.corpus) }
  let shared = Set(corpora.filter { $0.value.count > 1 }.keys)
  for i in recordings.indices where shared.contains(recordings[i].speaker) {
    recordings[i].speaker = recordings[i].corpus + "/" + recordings[i].speaker
  }
  return shared.sorted()
}

// MARK: - Writing

/// Streams rows into a new feature file. Rows are appended in order; labels are given as class names and
/// encoded against the sorted class list at `finish`. Nothing appears under the final path until `finish`
/// succeeds (the file is written under a temporary name and renamed).
public final class FeatureFileWriter {
  public var path: String { pending.path }
  public let width: Int
  private let pending: PendingFile
  private var file: H5File?
  private var features: H5Dataset?
  public private(set) var rowCount = 0
  private var labelNames: [String] = []
  private var sources: [Int32] = []
  private var augmentations: [Int8] = []
  /// Rows appended but not written: the start of a chunk (fewer than `FeatureFormat.chunkRows`).
  private var unwritten: [Float] = []

  /// Creates the temporary file. Refuses an existing `path` unless `overwrite`.
  public init(path: String, width: Int, overwrite: Bool) throws {
    precondition(width > 0)
    pending = try PendingFile(path: path, overwrite: overwrite)
    self.width = width
    do {
      let f = try H5File(creating: pending.tempPath)
      file = f
      features = try f.createDataset(
        "features", of: Float.self, dims: [0, width], maxDims: [-1, width],
        chunk: [FeatureFormat.chunkRows, width])
    } catch { throw pending.failure(error) }
  }

  /// Appends `buffer.count / width` rows with their labels, recording ids and augmentation codes.
  public func append(
    rows buffer: UnsafeBufferPointer<Float>, labels: [String], sources: [Int32], augmentations: [Int8]
  ) throws {
    let n = buffer.count / width
    precondition(buffer.count == n * width && labels.count == n && sources.count == n && augmentations.count == n)
    guard let features else { preconditionFailure("append after finish") }
    // Whole chunks go straight to the file; the rows of a chunk not yet complete wait for the next append.
    let chunk = FeatureFormat.chunkRows * width
    var rest = buffer[...]
    if !unwritten.isEmpty {
      let take = min(chunk - unwritten.count, rest.count)
      unwritten += rest.prefix(take)
      rest = rest.dropFirst(take)
    }
    do {
      if unwritten.count == chunk {
        try unwritten.withUnsafeBufferPointer {
          try features.writeRowsByChunk(at: rowCount - rowCount % FeatureFormat.chunkRows, $0)
        }
        unwritten.removeAll(keepingCapacity: true)
      }
      if unwritten.isEmpty {
        let whole = rest.count / chunk * chunk
        let at = (rowCount + n) - rest.count / width
        try features.writeRowsByChunk(at: at, UnsafeBufferPointer(rebasing: rest.prefix(whole)))
        unwritten += rest.dropFirst(whole)
      }
    } catch { throw pending.failure(error) }
    pending.startWriteback()
    rowCount += n
    labelNames += labels
    self.sources += sources
    self.augmentations += augmentations
  }

  /// Writes labels, classes, recordings and the recipe, closes the file and renames it into place.
  /// `classes` fixes the class list (and its order) when given; otherwise the sorted distinct labels.
  public func finish(
    recipe: FeatureRecipe, recordings: [RecordingInfo], classes: [String]? = nil,
    attributes: [String: String] = [:], rowsPerRecording: Int? = nil
  ) throws {
    guard let f = file else { return }
    defer { cleanUp() }
    do {
      try finish(
        f, recipe: recipe, recordings: recordings, classes: classes, attributes: attributes,
        rowsPerRecording: rowsPerRecording)
    } catch { throw pending.failure(error) }
  }

  private func finish(
    _ f: H5File, recipe: FeatureRecipe, recordings: [RecordingInfo], classes: [String]?, attributes: [String: String],
    rowsPerRecording: Int?
  ) throws {
    if !unwritten.isEmpty {
      try unwritten.withUnsafeBufferPointer { try features!.writeRows(at: rowCount - $0.count / width, $0) }
    }
    features = nil  // every object must be closed before the file is, or HDF5 keeps it open
    let names = classes ?? Array(Set(labelNames)).sorted()
    var index = [String: Int32]()
    for (i, c) in names.enumerated() { index[c] = Int32(i) }
    let labels = try labelNames.enumerated().map { (row, name) -> Int32 in
      guard let i = index[name] else {
        throw Failure(path, "row \(row): label '\(name)' is not one of \(names)")
      }
      return i
    }
    try f.write("labels", labels)
    try f.write("classes", strings: names)
    try f.write("source", sources)
    try f.write("augmentation", augmentations)
    try f.write("sources/path", strings: recordings.map(\.path))
    try f.write("sources/speaker", strings: recordings.map(\.speaker))
    try f.write("sources/corpus", strings: recordings.map(\.corpus))
    try recipe.write(to: f)
    if let rowsPerRecording { try f.setAttribute("rows_per_recording", rowsPerRecording) }
    for (k, v) in attributes.sorted(by: { $0.key < $1.key }) { try f.setAttribute(k, v) }
    try f.setAttribute("format", FeatureFormat.name)
    try f.setAttribute("version", FeatureFormat.version)
    try f.sealAttributes()
    try f.flush()
    try f.close()
    file = nil
    try pending.commit()
  }

  /// Abandons the file: nothing is left under the final or the temporary name.
  public func discard() { cleanUp() }

  private func cleanUp() {
    features = nil
    if let f = file { try? f.close() }
    file = nil
    pending.discard()
  }

  deinit { cleanUp() }
}

/// A recording's key from its original row, unstandardised (`FeatureFile.recordingKeys`): FNV-1a over the bits.
public func recordingKey(_ row: some Collection<Float>) -> UInt64 {
  var h = FNV1a()
  for v in row { h.add(v.bitPattern) }
  return h.value
}

// MARK: - Reading

/// An open feature file. Small per-row metadata is read at open; feature rows are read on demand by range.
public final class FeatureFile {
  public let path: String
  public let file: H5File
  public let features: H5Dataset
  public let rowCount: Int
  public let width: Int
  public let classes: [String]
  public let labels: [Int32]
  public let source: [Int32]
  public let augmentation: [Int8]
  public let recipe: FeatureRecipe
  /// The format version the file was written in (1: attributes not sealed).
  public let version: Int

  /// Opens the file at `path`. `rowCacheBytes`: up to that many bytes of the rows stay in memory once read (HDF5's
  /// chunk cache), for a reader that comes back to them, as training does every epoch.
  public init(path: String, rowCacheBytes: Int = 0) throws {
    self.path = path
    file = try H5File(path: path)
    let format = (try? file.stringAttribute("format")) ?? ""
    guard format == FeatureFormat.name else {
      throw Failure(
        path, "not a sertrain feature file (format attribute is '\(format)', expected '\(FeatureFormat.name)')")
    }
    version = try file.intAttribute("version")
    guard version == 1 || version == FeatureFormat.version else {
      throw Failure(
        path, "feature file version \(version); this sertrain reads versions 1 and \(FeatureFormat.version)")
    }
    if version >= 2 { try file.verifyAttributes() }
    features = try file.openDataset("features", chunkCacheBytes: rowCacheBytes)
    let shape = features.shape
    guard shape.count == 2 else { throw Failure(path, "features has shape \(shape), expected [rows, width]") }
    rowCount = shape[0]
    width = shape[1]
    classes = try file.readStrings("classes")
    labels = try file.read("labels")
    source = try file.read("source")
    augmentation = try file.read("augmentation")
    recipe = try FeatureRecipe.read(from: file)
    for (name, n) in [("labels", labels.count), ("source", source.count), ("augmentation", augmentation.count)]
    where n != rowCount {
      throw Failure(path, "\(name) has \(n) entries for \(rowCount) feature rows")
    }
    if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes.count }) {
      throw Failure(path, "row \(bad): label \(labels[bad]) is outside the \(classes.count) classes")
    }
  }

  /// The recordings behind the rows (paths are empty for a converted CSV).
  public func recordings() throws -> [RecordingInfo] {
    let p = try file.readStrings("sources/path")
    let s = try file.readStrings("sources/speaker")
    let c = try file.readStrings("sources/corpus")
    return (0..<p.count).map { RecordingInfo(path: p[$0], speaker: s[$0], corpus: c[$0]) }
  }

  /// Rows per recording if the file declares one (a converted CSV with `--rows-per-recording`).
  public var rowsPerRecording: Int? { try? file.intAttribute("rows_per_recording") }
  /// A converted CSV whose rows could not be grouped by recording (no `--rows-per-recording`): every row is its own
  /// recording, so a split by recording can put augmented copies of one recording on both sides.
  public var leaksAcrossSplits: Bool { recipe.origin == "convert" && rowsPerRecording == nil }

  /// Reads rows `range` into `buffer` (range.count * width floats); only their chunks are read from disk.
  public func readRows(_ range: Range<Int>, into buffer: UnsafeMutableBufferPointer<Float>) throws {
    try features.readRows(range, into: buffer)
  }

  public func readRows(_ range: Range<Int>) throws -> [Float] {
    try features.readRows(range, as: Float.self)
  }

  /// Reads the rows at `indices` (any order) into `buffer`, row i of the buffer being row indices[i] of the
  /// file. Consecutive runs of indices become one hyperslab read each.
  public func readRows(at indices: [Int], into buffer: UnsafeMutableBufferPointer<Float>) throws {
    precondition(buffer.count >= indices.count * width)
    let order = indices.indices.sorted { indices[$0] < indices[$1] }
    var i = 0
    var scratch = [Float]()
    while i < order.count {
      var j = i + 1
      while j < order.count && indices[order[j]] == indices[order[j - 1]] + 1 { j += 1 }
      let start = indices[order[i]]
      let n = j - i
      scratch.removeAll(keepingCapacity: true)
      scratch.append(contentsOf: repeatElement(0, count: n * width))
      try scratch.withUnsafeMutableBufferPointer { try readRows(start..<(start + n), into: $0) }
      for k in 0..<n {
        let dst = order[i + k] * width
        for c in 0..<width { buffer[dst + c] = scratch[k * width + c] }
      }
      i = j
    }
  }

  /// Reads `indices` `size` rows at a time into one buffer and gives `body` each part's indices and rows.
  public func forEachPart(
    of indices: [Int], size: Int, _ body: ([Int], UnsafeMutableBufferPointer<Float>) throws -> Void
  ) throws {
    var buffer = [Float](repeating: 0, count: min(size, indices.count) * width)
    for start in stride(from: 0, to: indices.count, by: size) {
      let part = Array(indices[start..<min(start + size, indices.count)])
      try buffer.withUnsafeMutableBufferPointer {
        let rows = UnsafeMutableBufferPointer(rebasing: $0[0..<(part.count * width)])
        try readRows(at: part, into: rows)
        try body(part, rows)
      }
    }
  }

  /// The keys of the recordings of `rows`, by recording (`source`): FNV-1a over the bits of a recording's original
  /// row (augmentation 0, else its first row). Rows are copied bit for bit by `merge`, and extraction gives the same
  /// bits for the same audio and recipe on a machine, so a recording has one key in every file that holds it, under
  /// any path. Rows differ in their last bits between machines whose FFT kernels differ: the same audio extracted
  /// on two such machines has two keys.
  public func recordingKeys(of rows: [Int]) throws -> [Int32: UInt64] {
    var first: [Int32: Int] = [:]
    for row in rows { first[source[row]] = -1 }
    for (row, s) in source.enumerated().reversed() {
      guard let kept = first[s] else { continue }
      if kept < 0 || augmentation[row] == 0 || augmentation[kept] != 0 { first[s] = row }
    }
    var keys: [Int32: UInt64] = [:]
    try forEachPart(of: Array(first.values), size: 1024) { part, x in
      for (k, row) in part.enumerated() { keys[source[row]] = recordingKey(x[(k * width)..<((k + 1) * width)]) }
    }
    return keys
  }

  /// Rows per class, in class order.
  public func classCounts() -> [Int] {
    var counts = [Int](repeating: 0, count: classes.count)
    for l in labels { counts[Int(l)] += 1 }
    return counts
  }
}

#if canImport(Glibc)
  import Glibc
#endif
