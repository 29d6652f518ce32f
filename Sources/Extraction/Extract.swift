import AudioFeatures
import Base
import Collective
import Dispatch
import FeatureStore

#if canImport(Glibc)
  import Glibc
#endif

/// What `sertrain extract` is told.
public struct ExtractOptions: Sendable {
  public var root: String
  public var output: String
  public var manifest: String?
  /// The corpus of a manifest's recordings that do not name one (default: the root directory's name).
  public var corpus: String?
  public var augmentations: [Augmentation] = Augmentation.seedRows
  /// How each row is computed; the file records it.
  public var recipe = FeatureRecipe()
  public var strict = false
  /// Lets manifest paths (and symlinks) lead outside the corpus root.
  public var allowOutsideRoot = false
  public var seed: UInt64 = 0
  public var force = false
  public var quiet = false
  /// Threads for this rank's files (default: the cores this process may use).
  public var threads: Int?
  public init(root: String, output: String) {
    self.root = root
    self.output = output
  }
}

/// What an extraction did.
public struct ExtractReport: Sendable {
  public var recordings = 0
  public var rows = 0
  public var skipped: [SkippedFile] = []
  /// Kept, but worth a look (an empty read gives rows of zeros; a silent file).
  public var flagged: [SkippedFile] = []
  /// Said once for the whole corpus (labels outside the seed's seven emotions).
  public var warnings: [String] = []
  public var seconds = 0.0
}

/// The rows of one recording, in the order of `augmentations`. Each recording's noise comes from its own stream
/// (seed, file index), so its rows do not depend on how many ranks extract the corpus.
public func featureRows(
  _ path: String, index: Int, augmentations: [Augmentation], seed: UInt64, extractor: FeatureExtractor
) throws -> (rows: [Float], flag: String?) {
  let clip = try loadClip(path, recipe: extractor.recipe)
  let y = clip.samples
  var rng = RandomStream(seed: seed, stream: [UInt64(index), 0xA0D1])
  var pitched: [Float]?
  // The clip's STFT, computed with its own row and kept for the vocoder when one follows.
  var spectrum: Spectrum?
  let vocoderFollows = augmentations.contains { [.pitch, .pitchNoise, .stretch].contains($0) }
  var rows: [Float] = []
  for a in augmentations {
    switch a {
    case .original:
      let parts = extractor.parts(y, keepSpectrum: vocoderFollows && spectrum == nil && !y.isEmpty)
      rows += parts.row
      spectrum = spectrum ?? parts.spectrum
    case .noise: rows += extractor.row(addNoise(y, rng: &rng))
    case .pitch, .pitchNoise:
      if pitched == nil {
        pitched = try pitchShift(y, sampleRate: extractor.recipe.sampleRate, steps: 0.7, spectrum: spectrum)
      }
      rows += extractor.row(a == .pitch ? pitched! : addNoise(pitched!, rng: &rng))
    case .stretch: rows += extractor.row(y.isEmpty ? y : timeStretch(y, rate: 0.8, spectrum: spectrum))
    case .shift: rows += extractor.row(rollShift(y, rng: &rng))
    }
  }
  return (rows, clip.flag(offset: extractor.recipe.offset))
}

/// Scans the corpus, spreads the recordings over the ranks (strided), and writes the feature file on rank 0.
public func extractCorpus(_ o: ExtractOptions, comm: Communicator) throws -> ExtractReport {
  let t0 = monotonicSeconds()
  // The output is checked before any work: rank 0's verdict, so that every rank stops together.
  try comm.decidedByRoot {
    if let refusal = PendingFile.refusal(o.output, overwrite: o.force) { throw Failure(refusal) }
  }
  var report = ExtractReport()
  var recordings: [LabelledRecording]
  let resolvedRoot = resolvedPath(o.root)
  if let manifest = o.manifest {
    let name = (resolvedRoot ?? o.root).split(separator: "/").last.map(String.init) ?? "corpus"
    recordings = try readManifest(manifest, corpus: o.corpus ?? name)
  } else {
    let scan = try scanCorpus(o.root)
    recordings = scan.recordings
    report.skipped = scan.skipped
  }
  guard !recordings.isEmpty else {
    if let first = report.skipped.first {
      let count = report.skipped.count
      throw Failure(o.root, "none of its \(count) audio file(s) is labelled: \(first.path) has \(first.reason)")
    }
    throw Failure(o.root, o.manifest == nil ? "no audio files found" : "the manifest lists no recordings")
  }
  // Labels other than the seven emotions: errors with --strict, else one warning with their counts.
  let unknown = Dictionary(grouping: recordings.map(\.emotion).filter { !emotions.contains($0) }) { $0 }
  if !unknown.isEmpty {
    let counts = unknown.keys.sorted().map { "'\($0)' \(unknown[$0]!.count)" }.joined(separator: ", ")
    let message = "labels outside the seven emotions (\(emotions.joined(separator: ", "))): \(counts)"
    if o.strict { throw AgreedFailure(comm.rank == 0 ? "\(o.manifest ?? o.root): \(message) (--strict)" : nil) }
    report.warnings.append(message + "; each becomes a class of its own")
  }
  // Every file must resolve (symlinks too) inside the corpus root, unless allowed.
  let root = o.allowOutsideRoot ? nil : resolvedRoot
  // One file listed twice (a.wav, ./a.wav, sub/../a.wav) is one recording: the first listing counts, the others are
  // reported (errors with --strict). Files outside the root are reported as such below.
  var listed: [String: Int] = [:]
  var duplicates: [SkippedFile] = []
  recordings = recordings.enumerated().filter { i, r in
    let path = r.path.hasPrefix("/") ? r.path : o.root + "/" + r.path
    let key = resolvedPath(path) ?? lexicallyNormal(path)
    if let root, !key.hasPrefix(root + "/") { return true }
    guard let first = listed[key] else {
      listed[key] = i
      return true
    }
    let earlier = recordings[first]
    duplicates.append(
      SkippedFile(
        path: r.path,
        reason: "the same file as entry \(first + 1) (\(earlier.path)), listed again as entry \(i + 1)"
          + (earlier.emotion == r.emotion ? "" : " with another label ('\(r.emotion)', not '\(earlier.emotion)')")))
    return false
  }.map(\.element)
  if o.strict, let d = duplicates.first {
    throw AgreedFailure(comm.rank == 0 ? "\(o.manifest ?? o.root): \(d.path): \(d.reason) (--strict)" : nil)
  }
  report.skipped += duplicates
  let width = o.recipe.width
  let perFile = o.augmentations.count * width
  let mine = comm.share(recordings.indices)
  let bar = comm.rank == 0 && !o.quiet ? ProgressBar(label: "extract", unit: "files") : nil
  // The rank's files over its cores (one extractor each); results land in per-file slots, so the output does
  // not depend on the thread count either.
  let threads = max(1, min(o.threads ?? availableCores(), mine.count))
  let results = UnsafeMutableBufferPointer<FileResult>.allocate(capacity: max(1, mine.count))
  results.initialize(repeating: FileResult())
  defer { results.deallocate() }
  DispatchQueue.concurrentPerform(iterations: threads) { worker in
    let extractor = FeatureExtractor(recipe: o.recipe)
    for k in Swift.stride(from: worker, to: mine.count, by: threads) {
      let i = mine[k]
      let r = recordings[i]
      let path = r.path.hasPrefix("/") ? r.path : o.root + "/" + r.path
      if let root, let p = resolvedPath(path), !p.hasPrefix(root + "/") {
        // A symlink inside the root that leads out is said to be one: its own path is in the root.
        var link = stat()
        let symlink = lstat(path, &link) == 0 && (link.st_mode & S_IFMT) == S_IFLNK
        let reason =
          (symlink ? "a symlink to \(p), " : "") + "outside the corpus root \(o.root) (--allow-outside-root reads it)"
        results[k] = FileResult(rows: nil, note: FileNote(index: i, flagged: false, reason: reason))
        continue
      }
      do {
        let (x, flag) = try featureRows(
          path, index: i, augmentations: o.augmentations, seed: o.seed, extractor: extractor)
        results[k] = FileResult(rows: x, note: flag.map { FileNote(index: i, flagged: true, reason: $0) })
      } catch let e as AudioError {
        results[k] = FileResult(rows: nil, note: FileNote(index: i, flagged: false, reason: e.message))
      } catch {
        results[k] = FileResult(rows: nil, note: FileNote(index: i, flagged: false, reason: "\(error)"))
      }
      if worker == 0 { bar?.update(fraction: Double(k + 1) / Double(mine.count), count: (k + 1) * comm.size) }
    }
  }
  bar?.finish()
  // Everything to rank 0 (indices, rows, notes): its own files are here already.
  var byIndex: [Int: ArraySlice<Float>] = [:]
  var notes: [FileNote] = []
  if comm.rank == 0 {
    for (k, i) in mine.enumerated() {
      if let x = results[k].rows { byIndex[i] = x[...] }
      if let n = results[k].note { notes.append(n) }
    }
  }
  if comm.size > 1 {
    let parts = comm.gather(comm.rank == 0 ? [] : encode(mine, results), root: 0)
    guard comm.rank == 0 else {
      comm.barrier()
      return report
    }
    for part in parts.dropFirst() {
      let (idx, r, theirs) = try decode(part, rowFloats: perFile)
      for (k, i) in idx.enumerated() { byIndex[Int(i)] = r[(k * perFile)..<((k + 1) * perFile)] }
      notes += theirs
    }
  }
  for note in notes {
    let f = SkippedFile(path: recordings[note.index].path, reason: note.reason)
    if note.flagged { report.flagged.append(f) } else { report.skipped.append(f) }
  }
  report.skipped.sort { $0.path < $1.path }
  report.flagged.sort { $0.path < $1.path }
  if o.strict && !report.skipped.isEmpty {
    comm.barrier()
    throw Failure(
      o.root,
      "\(report.skipped.count) files could not be used (--strict): "
        + report.skipped.prefix(5).map { "\($0.path): \($0.reason)" }.joined(separator: "; "))
  }
  guard !byIndex.isEmpty else {
    comm.barrier()
    throw Failure(
      o.root,
      "no file could be used (\(report.skipped.count) skipped, first: "
        + report.skipped.prefix(3).map { "\($0.path): \($0.reason)" }.joined(separator: "; ") + "); nothing written")
  }
  let writer = try FeatureFileWriter(path: o.output, width: width, overwrite: o.force)
  do {
    // The kept recordings' rows in corpus order, written at once.
    var infos: [RecordingInfo] = []
    var rows: [Float] = []
    rows.reserveCapacity(byIndex.count * perFile)
    var labels: [String] = []
    var sources: [Int32] = []
    for i in 0..<recordings.count {
      guard let r = byIndex[i] else { continue }
      let source = Int32(infos.count)
      let rec = recordings[i]
      infos.append(RecordingInfo(path: rec.path, speaker: rec.speaker, corpus: rec.corpus))
      rows += r
      labels += [String](repeating: rec.emotion, count: o.augmentations.count)
      sources += [Int32](repeating: source, count: o.augmentations.count)
    }
    // One audio twice under two names would be two recordings to a split, on both sides of it: said.
    let original = (o.augmentations.firstIndex(of: .original) ?? 0) * width
    var first: [UInt64: Int] = [:]
    var twice: [(Int, Int)] = []
    for i in infos.indices {
      let key = recordingKey(rows[(i * perFile + original)..<(i * perFile + original + width)])
      if let j = first[key] { twice.append((j, i)) } else { first[key] = i }
    }
    if let (j, i) = twice.first {
      report.warnings.append(
        "\(twice.count) recording(s) have the features of another (the same audio, or silence; \(infos[i].path) "
          + "those of \(infos[j].path)): a split may put the two on both sides")
    }
    let shared = qualifySharedSpeakers(&infos)
    if !shared.isEmpty {
      report.warnings.append(
        "speakers named alike in different corpora are different people: \(shared.count) named with their corpus "
          + "(\(shared.prefix(3).map { "'\($0)'" }.joined(separator: ", ")) as corpus/name)")
    }
    try rows.withUnsafeBufferPointer {
      try writer.append(
        rows: $0, labels: labels, sources: sources,
        augmentations: [[Int8]](repeating: o.augmentations.map(\.code), count: infos.count).flatMap { $0 })
    }
    var recipe = o.recipe
    recipe.origin = "extract"
    try writer.finish(
      recipe: recipe, recordings: infos,
      attributes: ["augmentations": o.augmentations.map(\.rawValue).joined(separator: ","), "corpus_root": o.root],
      rowsPerRecording: o.augmentations.count)
    report.recordings = infos.count
    report.rows = infos.count * o.augmentations.count
  } catch {
    writer.discard()
    comm.barrier()
    throw error
  }
  report.seconds = monotonicSeconds() - t0
  comm.barrier()
  return report
}

/// Why the file at `index` (of the corpus list) was skipped, or flagged with its rows kept.
struct FileNote: Codable {
  var index: Int
  var flagged: Bool
  var reason: String
}

/// One file's rows (nil when skipped) and its skip or flag note.
struct FileResult {
  var rows: [Float]?
  var note: FileNote?
}

/// A rank's kept files for rank 0: their count, indices, rows and the notes of all its files (as JSON).
private func encode(_ mine: [Int], _ results: UnsafeMutableBufferPointer<FileResult>) -> [UInt8] {
  let kept = mine.indices.filter { results[$0].rows != nil }
  var out: [UInt8] = []
  let notes = Array(jsonText(mine.indices.compactMap { results[$0].note }).utf8)
  out.reserveCapacity(8 + 4 * kept.count + kept.reduce(0) { $0 + 4 * results[$1].rows!.count } + notes.count)
  withUnsafeBytes(of: Int64(kept.count)) { out += $0 }
  for k in kept { withUnsafeBytes(of: Int32(mine[k])) { out += $0 } }
  for k in kept { results[k].rows!.withUnsafeBytes { out += $0 } }
  out += notes
  return out
}

private func decode(_ bytes: [UInt8], rowFloats: Int) throws -> ([Int32], [Float], [FileNote]) {
  let n = bytes.withUnsafeBytes { Int($0.loadUnaligned(as: Int64.self)) }
  var off = 8
  let indices = (0..<n).map { k in
    bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: off + 4 * k, as: Int32.self) }
  }
  off += 4 * n
  var rows = [Float](repeating: 0, count: n * rowFloats)
  rows.withUnsafeMutableBytes { dst in
    bytes.withUnsafeBytes { src in
      dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[off..<(off + n * rowFloats * 4)]))
    }
  }
  off += n * rowFloats * 4
  return (indices, rows, try decodeJSON([FileNote].self, from: String(decoding: bytes[off...], as: UTF8.self)))
}

/// The path with `.`, `..` and repeated slashes taken out as text (for a path that does not exist).
func lexicallyNormal(_ path: String) -> String {
  var parts: [Substring] = []
  for part in path.split(separator: "/", omittingEmptySubsequences: true) {
    if part == "." { continue }
    if part == "..", let last = parts.last, last != ".." {
      parts.removeLast()
      continue
    }
    parts.append(part)
  }
  return (path.hasPrefix("/") ? "/" : "") + parts.joined(separator: "/")
}

/// The path with symlinks, `.` and `..` resolved, or nil when it does not exist.
func resolvedPath(_ path: String) -> String? {
  guard let r = realpath(path, nil) else { return nil }
  defer { free(r) }
  return String(cString: r)
}
