import Base
import Schema

/// Several feature files as one (`sertrain merge`): their rows in order, the classes the union of theirs by name
/// (sorted), the recordings of each after the previous files', so that speakers and corpora stay as they were (a
/// recording without a corpus, from a converted CSV, takes its file's name as one). The recipes must be the same
/// features (sample rate, offset, layout, ...). Written as every feature file is: nothing under `output` until it is
/// whole. Returns the rows and recordings written.
public func mergeFeatureFiles(_ inputs: [String], into output: String, overwrite: Bool) throws -> (
  rows: Int, recordings: Int, classes: [String]
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
  let writer = try FeatureFileWriter(path: output, width: first.width, overwrite: overwrite)
  var recordings: [RecordingInfo] = []
  var rows = 0
  do {
    for (f, path) in zip(files, inputs) {
      let own = try f.recordings()
      let name = String(path.split(separator: "/").last ?? Substring(path)).replacing(".h5", with: "")
      let offset = Int32(recordings.count)
      // A converted CSV has no recordings list: each row's source is its own index into nothing.
      let count = own.isEmpty ? Int(f.source.max() ?? -1) + 1 : own.count
      recordings += (0..<count).map { i in
        var r = i < own.count ? own[i] : RecordingInfo(path: "", speaker: "", corpus: "")
        if r.corpus.isEmpty { r.corpus = name }
        return r
      }
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
  return (rows, recordings.count, classes)
}
