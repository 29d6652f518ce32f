import Base

#if canImport(Glibc)
  import Glibc
#endif

/// One labelled recording found in a corpus.
public struct LabelledRecording: Equatable, Sendable {
  /// Relative to the corpus root.
  public var path: String
  public var corpus: String
  public var speaker: String
  public var emotion: String
}

/// A file the scanner or the extractor could not use, and why.
public struct SkippedFile: Equatable, Sendable {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
}

/// Extensions taken as audio (libsndfile decides what it can read; a text file named `.wav` is reported later).
let audioExtensions: Set<String> = [
  "wav", "wave", "flac", "aif", "aiff", "aifc", "ogg", "oga", "opus", "au", "snd", "w64", "caf", "mp3", "rf64",
]

/// Labels from the Kaggle layout's file names (`../shared/datasets/README.md`):
/// RAVDESS `03-01-EE-II-SS-RR-AA` (02 calm counts as neutral), SAVEE `SS_cNN`, TESS `SPK_word_emotion` (`ps` is
/// surprise), CREMA-D `AAAA_SSS_EMO_LL`, and `sertrain synth`'s `Synth/SPK_nn_emotion`. The corpus comes from the folder (`Ravdess`, `Savee`, `Tess`, `Crema`,
/// any case) or else from the name's pattern.
public func labelFromName(_ relativePath: String) -> (corpus: String, speaker: String, emotion: String)? {
  let parts = relativePath.split(separator: "/").map(String.init)
  guard let file = parts.last else { return nil }
  let stem = file.contains(".") ? String(file[..<file.lastIndex(of: ".")!]) : file
  let folders = parts.dropLast().map { $0.lowercased() }
  func corpus(_ names: [String]) -> Bool { folders.contains { f in names.contains { f.hasPrefix($0) } } }
  let fields = stem.split(separator: "-").map(String.init)
  let under = stem.split(separator: "_").map(String.init)
  if corpus(["ravdess"]) || (fields.count == 7 && fields.allSatisfy { $0.count == 2 && Int($0) != nil }) {
    guard fields.count == 7, let code = Int(fields[2]) else { return nil }
    let map = [1: "neutral", 2: "neutral", 3: "happy", 4: "sad", 5: "angry", 6: "fear", 7: "disgust", 8: "surprise"]
    guard let e = map[code] else { return nil }
    return ("ravdess", "ravdess-\(fields[6])", e)
  }
  if corpus(["crema"]) || (under.count == 4 && Int(under[0]) != nil) {
    guard under.count >= 3 else { return nil }
    let map = ["ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"]
    guard let e = map[under[2].uppercased()] else { return nil }
    return ("crema", "crema-\(under[0])", e)
  }
  if corpus(["savee"]) || (under.count == 2 && under[0].count == 2 && under[0] == under[0].uppercased()) {
    guard under.count == 2 else { return nil }
    let code = under[1].lowercased().prefix { $0.isLetter }
    let map = ["sa": "sad", "su": "surprise", "a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral"]
    guard let e = map[String(code)] else { return nil }
    return ("savee", "savee-\(under[0])", e)
  }
  if corpus(["synth"]) {
    guard under.count == 3, emotions.contains(under[2]) else { return nil }
    return ("synth", "synth-\(under[0])", under[2])
  }
  if corpus(["tess"]) || under.count == 3 {
    guard under.count >= 3 else { return nil }
    let suffix = under.last!.lowercased()
    let map = [
      "angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral", "sad": "sad",
      "ps": "surprise", "surprise": "surprise", "surprised": "surprise",
    ]
    guard let e = map[suffix] else { return nil }
    return ("tess", "tess-\(under[0].uppercased())", e)
  }
  return nil
}

/// Every audio file under `root` (sorted by path), labelled from its name, and the files that have no label.
public func scanCorpus(_ root: String) throws -> (recordings: [LabelledRecording], skipped: [SkippedFile]) {
  var files: [String] = []
  try walk(root, "", &files)
  files.sort()
  var recordings: [LabelledRecording] = []
  var skipped: [SkippedFile] = []
  for f in files {
    if let l = labelFromName(f) {
      recordings.append(LabelledRecording(path: f, corpus: l.corpus, speaker: l.speaker, emotion: l.emotion))
    } else {
      skipped.append(
        SkippedFile(
          path: f, reason: "no emotion in its name (not the RAVDESS, CREMA-D, SAVEE or TESS pattern): use --manifest"))
    }
  }
  return (recordings, skipped)
}

/// The audio files `arguments` name: a file as given, a directory as every audio file below it (by extension,
/// sorted by path, hidden entries left out), in the order given. A directory without audio files is an error.
public func audioFiles(_ arguments: [String]) throws -> [String] {
  try arguments.flatMap { argument -> [String] in
    var st = stat()
    guard stat(argument, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else { return [argument] }
    var found: [String] = []
    try walk(argument, "", &found)
    guard !found.isEmpty else {
      throw AudioError(
        argument, "a directory without audio files (\(audioExtensions.sorted().joined(separator: ", ")))")
    }
    let root = argument.hasSuffix("/") ? String(argument.dropLast()) : argument
    return found.sorted().map { root + "/" + $0 }
  }
}

private func walk(_ root: String, _ relative: String, _ out: inout [String]) throws {
  let dir = relative.isEmpty ? root : root + "/" + relative
  guard let names = directoryEntries(dir) else {
    throw AudioError(dir, "cannot read the directory: \(String(cString: strerror(errno)))")
  }
  for name in names {
    if name.hasPrefix(".") { continue }
    let rel = relative.isEmpty ? name : relative + "/" + name
    var st = stat()
    guard stat(root + "/" + rel, &st) == 0 else { continue }
    if (st.st_mode & S_IFMT) == S_IFDIR {
      try walk(root, rel, &out)
    } else if let dot = name.lastIndex(of: "."), audioExtensions.contains(name[name.index(after: dot)...].lowercased())
    {
      out.append(rel)
    }
  }
}

/// The longest label or speaker name a manifest may give.
public let maxNameBytes = 100

/// A manifest CSV `path,emotion[,speaker[,corpus]]` (a header row is recognised by its first cell `path`); paths
/// relative to the manifest's corpus root; a recording without a corpus cell is of `corpus`.
public func readManifest(_ path: String, corpus: String) throws -> [LabelledRecording] {
  guard let f = fopen(path, "r") else { throw AudioError(path, "cannot open the manifest") }
  defer { fclose(f) }
  var out: [LabelledRecording] = []
  var line: UnsafeMutablePointer<CChar>?
  var cap = 0
  var number = 0
  defer { free(line) }
  while getline(&line, &cap, f) > 0 {
    number += 1
    var text = String(cString: line!)
    if number == 1 && text.hasPrefix("\u{FEFF}") { text.removeFirst() }  // a UTF-8 byte order mark (Excel writes one)
    while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
    if text.isEmpty { continue }
    let cells = csvCells(text, separator: text.contains("\t") ? "\t" : ",").map { $0.trimmingCharacters() }
    if number == 1 && cells.first?.lowercased() == "path" { continue }
    guard cells.count >= 2, !cells[0].isEmpty, !cells[1].isEmpty else {
      throw AudioError(path, "line \(number): expected path,emotion[,speaker[,corpus]], got '\(text.prefix(200))'")
    }
    func cell(_ i: Int) -> String { i < cells.count ? cells[i] : "" }
    // A name is not a document: a long one is a broken line (a missing quote, a wrong column).
    for (what, i) in [("label", 1), ("speaker", 2), ("corpus", 3)] where cell(i).utf8.count > maxNameBytes {
      throw AudioError(
        path, "line \(number): a \(what) of \(cell(i).utf8.count) bytes; names are at most \(maxNameBytes) bytes")
    }
    out.append(
      LabelledRecording(
        path: cells[0], corpus: cell(3).isEmpty ? corpus : cell(3), speaker: cell(2), emotion: cells[1].lowercased()))
  }
  return out
}
