import Base
import Schema

/// Several feature files as one (`sertrain merge`): their rows in order, the classes the union of theirs by name
/// (sorted), the recordings of each after the previous files', so that speakers and corpora stay as they were (a
/// recording without a corpus, from a converted CSV, takes its file's name as one). A speaker is a corpus's: one
/// name in two corpora is two people, named `corpus/name` (`qualifySharedSpeakers`); one name of one corpus in two
/// files is one, and said to be (`notes`). The recipes must be the same features (sample rate, offset, layout,
/// ...). Written as every feature file is: nothing under `output` until it is whole. Returns the rows and
/// recordings written.
public func mergeFeatureFiles(_ inputs: [String], into output: String, overwrite: Bool) throws -> (
  rows: Int, recordings: Int, classes: [String], notes: [String]
) {
  guard inputs.count >= 2 else { throw Failure("merge needs two or more feature files, got \(inputs.count)") }
  let files = try inputs.map { try FeatureFile(path: $0) }
  let first = files[0]
  for f in files.dropFirst() {
    guard f.recipe.sameFeatures(as: first.recipe), f.width == first.width else {
      throw Failure(
        f.path,
        "its features are not \(first.path)'s (\(f.recipe.layout.rawValue) layout, \(f.width) wide, "
          + "\(f.recipe.sampleRate) Hz, offset \(f.recipe.offset) s against \(first.recipe.layout.rawValue), "
          + "\(first.width), \(first.recipe.sampleRate) Hz, \(first.recipe.offset) s): extract them alike")
    }
  }
  let classes = Array(Set(files.flatMap(\.classes))).sorted()
  var recordings: [RecordingInfo] = []
  var offsets: [Int32] = []
  // Which inputs hold each corpus's speaker.
  var holders: [String: [String: Set<Int>]] = [:]
  for (k, (f, path)) in zip(files, inputs).enumerated() {
    let own = try f.recordings()
    let name = String(path.split(separator: "/").last ?? Substring(path)).replacing(".h5", with: "")
    offsets.append(Int32(recordings.count))
    // A converted CSV has no recordings list: each row's source is its own index into nothing.
    let count = own.isEmpty ? Int(f.source.max() ?? -1) + 1 : own.count
    recordings += (0..<count).map { i in
      var r = i < own.count ? own[i] : RecordingInfo(path: "", speaker: "", corpus: "")
      if r.corpus.isEmpty { r.corpus = name }
      if !r.speaker.isEmpty { holders[r.corpus, default: [:]][r.speaker, default: []].insert(k) }
      return r
    }
  }
  // One recording in two files would be two recordings to a split, on both sides of it.
  var seen: [String: Int] = [:]
  for (k, r) in recordings.enumerated() where !r.path.isEmpty {
    let key = r.corpus + "\u{0}" + r.path
    if let first = seen[key] {
      let file = { (i: Int) in inputs[offsets.lastIndex { $0 <= Int32(i) }!] }
      let (a, b) = (file(first), file(k))
      throw Failure(
        b,
        a == b
          ? "given twice" : "holds recording \(r.path) of corpus '\(r.corpus)', which \(a) holds too: merge each once")
    }
    seen[key] = k
  }
  // Nor under another path or corpus name: the same rows (`recordingKeys`) in two files are one recording.
  var holder: [UInt64: (file: Int, recording: Int32)] = [:]
  for (k, f) in files.enumerated() {
    for (recording, key) in try f.recordingKeys(of: Array(0..<f.rowCount)).sorted(by: { $0.key < $1.key }) {
      if let (j, other) = holder[key], j != k {
        func name(_ i: Int, _ r: Int32) -> String {
          let path = recordings[Int(offsets[i] + r)].path
          return "recording " + (path.isEmpty ? "\(r)" : path)
        }
        throw Failure(
          inputs[k],
          "its \(name(k, recording)) has the rows of \(inputs[j])'s \(name(j, other)) (the same audio under another "
            + "path or corpus name): merge each corpus once")
      }
      holder[key] = holder[key] ?? (k, recording)
    }
  }
  var notes: [String] = []
  for corpus in holders.keys.sorted() {
    let inMany = holders[corpus]!.filter { $0.value.count > 1 }
    guard let example = inMany.keys.sorted().first else { continue }
    let inFiles = holders[corpus]![example]!.sorted().map { inputs[$0] }.joined(separator: " and ")
    notes.append(
      "\(inMany.count) speaker(s) of corpus '\(corpus)' are in more than one file ('\(example)' in \(inFiles)): "
        + "each taken as one speaker (if they are not, extract the files with --corpus names of their own)")
  }
  let shared = qualifySharedSpeakers(&recordings)
  if !shared.isEmpty {
    notes.append(
      "\(shared.count) speaker name(s) are in more than one corpus (\(shared.prefix(3).map { "'\($0)'" }.joined(separator: ", "))): "
        + "different people, named corpus/name")
  }
  let writer = try FeatureFileWriter(path: output, width: first.width, overwrite: overwrite)
  var rows = 0
  do {
    for (f, offset) in zip(files, offsets) {
      for start in stride(from: 0, to: f.rowCount, by: 4096) {
        let range = start..<min(start + 4096, f.rowCount)
        try f.readRows(range).withUnsafeBufferPointer {
          try writer.append(
            rows: $0, labels: range.map { f.classes[Int(f.labels[$0])] }, sources: range.map { f.source[$0] + offset },
            augmentations: range.map { f.augmentation[$0] })
        }
      }
      rows += f.rowCount
    }
    let perRecording = Set(files.map(\.rowsPerRecording))
    try writer.finish(
      recipe: first.recipe, recordings: recordings, classes: classes,
      attributes: ["merged_from": inputs.joined(separator: "\n")],
      rowsPerRecording: perRecording.count == 1 ? perRecording.first! : nil)
  } catch {
    writer.discard()
    throw error
  }
  return (rows, recordings.count, classes, notes)
}
