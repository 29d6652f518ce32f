import FeatureStore
import HDF5
import XCTest
import _TestSupport

/// `sertrain extract` on real recordings plus the odd files a corpus has, then training on what it wrote.
final class ExtractCommandTests: XCTestCase {
  func testExtractReportsOddFilesAndASmallModelLearnsSerMini() throws {
    let root = try requireShared("datasets/ser-mini")
    let dir = temporaryDirectory(self)
    // 60 recordings of each class, by speaker-mixed order; the manifest's paths are under ser-mini. (With 20, the
    // tiny model's best validation accuracy over seeds ranged from 0.24 to 0.40: too few to tell learning from
    // luck; with 60, from 0.35 to 0.46.)
    let manifest = try String(contentsOfFile: root + "/MANIFEST.tsv", encoding: .utf8)
    var perClass: [String: [String]] = [:]
    for line in manifest.split(separator: "\n").dropFirst() {
      let c = line.split(separator: "\t").map(String.init)
      perClass[c[3], default: []].append("\(c[0]),\(c[3]),\(c[2])")
    }
    var lines = ["path,emotion,speaker"]
    for (_, files) in perClass.sorted(by: { $0.key < $1.key }) {
      lines += Swift.stride(from: 0, to: files.count, by: max(1, files.count / 60)).prefix(60).map { files[$0] }
    }
    // Odd files, by absolute path outside the corpus root (a manifest path that starts with / is taken as is, and
    // --allow-outside-root lets it lead outside the root).
    let odd = dir + "/odd"
    try FileManager.default.createDirectory(atPath: odd, withIntermediateDirectories: true)
    XCTAssertTrue(FileManager.default.createFile(atPath: odd + "/notes.wav", contents: Data("not audio\n".utf8)))
    XCTAssertTrue(FileManager.default.createFile(atPath: odd + "/empty.wav", contents: Data()))
    XCTAssertTrue(
      FileManager.default.createFile(
        atPath: odd + "/short.wav", contents: wavBytes([Int16](repeating: 500, count: 4000))))
    lines += ["\(odd)/notes.wav,sad,x", "\(odd)/empty.wav,sad,x", "\(odd)/short.wav,sad,x"]
    XCTAssertTrue(
      FileManager.default.createFile(atPath: dir + "/m.csv", contents: Data(lines.joined(separator: "\n").utf8)))

    let r = try runCommand(
      [
        "extract", root, "-o", "f.h5", "--manifest", "m.csv", "--augment", "original,noise", "--allow-outside-root",
        "-q",
      ],
      directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    XCTAssertTrue(r.stdout.contains("skipped 2 files"), r.stdout)
    XCTAssertTrue(r.stdout.contains("notes.wav: cannot decode"), r.stdout)
    XCTAssertTrue(r.stdout.contains("empty.wav: cannot decode"), r.stdout)
    XCTAssertTrue(r.stdout.contains("flagged \(odd)/short.wav: shorter than the 0.6 s offset"), r.stdout)
    let inspect = try runCommand(["inspect", "f.h5"], directory: dir)
    XCTAssertTrue(inspect.stdout.contains("rows          842 x 2376"), inspect.stdout)

    let strict = try runCommand(
      [
        "extract", root, "-o", "g.h5", "--manifest", "m.csv", "--augment", "original", "--strict",
        "--allow-outside-root",
        "-q",
      ], directory: dir)
    XCTAssertEqual(strict.status, 1)
    XCTAssertTrue(strict.stderr.contains("--strict"), strict.stderr)
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/g.h5"))

    let train = try runCommand(
      [
        "train", "--data", "f.h5", "--model", "tiny", "--epochs", "12", "--batch-size", "16", "--learning-rate", "0.01",
        "--val-fraction", "0.25", "--test-fraction", "0", "--run-dir", "run", "--patience", "100",
      ], directory: dir)
    XCTAssertEqual(train.status, 0, train.stderr)
    let (best, history) = try bestValidationAccuracy(dir + "/run")
    XCTAssertGreaterThan(best, 2.0 / 7, "validation accuracy on unseen recordings at least twice chance: \(history)")
  }
}

/// `sertrain synth`: the built-in corpus, read by the scanner, learnable across speakers.
final class SynthCommandTests: XCTestCase {
  func testSyntheticCorpusExtractsAndIsLearnable() throws {
    let dir = temporaryDirectory(self)
    let s = try runCommand(["synth", "-o", "corpus", "--speakers", "3", "--per-class", "5"], directory: dir)
    XCTAssertEqual(s.status, 0, s.stderr)
    XCTAssertTrue(s.stdout.contains("wrote 105 files"), s.stdout)
    let e = try runCommand(["extract", "corpus", "-o", "f.h5", "--augment", "original,noise", "-q"], directory: dir)
    XCTAssertEqual(e.status, 0, e.stderr)
    XCTAssertTrue(e.stdout.contains("extracted 105 recordings -> 210 rows"), e.stdout)
    let inspect = try runCommand(["inspect", "f.h5"], directory: dir)
    XCTAssertTrue(inspect.stdout.contains("3 speakers") && inspect.stdout.contains("synth 105"), inspect.stdout)
    // The default model for the frames rows extract writes (frames): its best validation accuracy was 0.71-0.90
    // over seeds 0-2 and both OpenBLAS kernel families here (the tiny model's on the seed's rows, 0.33-0.71).
    for (i, environment) in blasKernelEnvironments.enumerated() {
      let t = try runCommand(
        [
          "train", "--data", "f.h5", "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.01",
          "--val-fraction", "0.2", "--test-fraction", "0", "--run-dir", "run\(i)", "--patience", "100",
        ], environment: environment, directory: dir)
      XCTAssertEqual(t.status, 0, t.stderr)
      XCTAssertTrue(t.stdout.contains("model frames"), t.stdout)
      let (best, history) = try bestValidationAccuracy(dir + "/run\(i)")
      XCTAssertGreaterThan(best, 0.5, "well above chance (1/7), \(environment): \(history)")
    }
  }

  /// A float WAV holding NaN (or infinity) is skipped and reported by extract, and gets an error line from predict:
  /// no command writes or prints a non-finite feature or probability.
  func testNonFiniteSamplesAreRefused() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "3", "--per-class", "1"], directory: dir).status, 0)
    var samples = (0..<44100).map { Float(sin(Double($0) * 0.05)) * 0.3 }
    samples[30000] = .nan
    let bad = dir + "/corpus/Synth/S1_99_angry.wav"
    XCTAssertTrue(FileManager.default.createFile(atPath: bad, contents: floatWavBytes(samples)))
    let x = try runCommand(["extract", "corpus", "-o", "f.h5", "-q"], directory: dir)
    XCTAssertEqual(x.status, 0, x.stderr)
    XCTAssertTrue(x.stdout.contains("skipped 1 files") && x.stdout.contains("S1_99_angry.wav"), x.stdout)
    XCTAssertTrue(x.stdout.contains("NaN or infinity"), x.stdout)
    let strict = try runCommand(["extract", "corpus", "-o", "g.h5", "-q", "--strict"], directory: dir)
    XCTAssertEqual(strict.status, 1, strict.stdout)
    let train = try runCommand(
      ["train", "--data", "f.h5", "--model", "tiny", "--epochs", "1", "--run-dir", "run", "-q"], directory: dir)
    XCTAssertEqual(train.status, 0, train.stderr)
    let p = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "corpus/Synth/S1_99_angry.wav"], directory: dir)
    XCTAssertEqual(p.status, 1)
    XCTAssertTrue(p.stdout.contains("error: ") && p.stdout.contains("NaN"), p.stdout)
    XCTAssertFalse(p.stdout.lowercased().contains("nan ") && !p.stdout.contains("NaN or infinity"), p.stdout)
    // Files that end before the offset (no samples, one sample) are answered with the flag extract gives them.
    for (name, count) in [("empty", 0), ("one", 1)] {
      XCTAssertTrue(
        FileManager.default.createFile(
          atPath: "\(dir)/\(name).wav", contents: wavBytes([Int16](repeating: 7, count: count))))
    }
    let short = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "empty.wav", "one.wav"], directory: dir)
    XCTAssertEqual(short.status, 0, short.stderr)
    XCTAssertEqual(
      short.stdout.components(separatedBy: "warning: shorter than the 0.6 s offset").count, 3, short.stdout)
    let csv = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--csv", "empty.wav", "one.wav"], directory: dir)
    XCTAssertTrue(csv.stderr.contains("warning: one.wav: shorter than the 0.6 s offset (1 frames"), csv.stderr)
    // A directory stands for every audio file below it, sorted by path; one without audio files is an error.
    let folder = dir + "/new"
    try FileManager.default.createDirectory(atPath: folder + "/inner", withIntermediateDirectories: true)
    try FileManager.default.copyItem(atPath: dir + "/one.wav", toPath: folder + "/inner/a.wav")
    try FileManager.default.copyItem(atPath: dir + "/empty.wav", toPath: folder + "/b.WAV")
    XCTAssertTrue(FileManager.default.createFile(atPath: folder + "/notes.txt", contents: Data("x".utf8)))
    let all = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5", "--csv", "new/"], directory: dir)
    XCTAssertEqual(all.status, 0, all.stderr)
    XCTAssertEqual(
      all.stdout.split(separator: "\n").dropFirst().map { String($0.prefix { $0 != "," }) },
      ["new/b.WAV", "new/inner/a.wav"],
      all.stdout)
    let none = try runCommand(["predict", "--checkpoint", "run/checkpoint-last.h5", "run"], directory: dir)
    XCTAssertEqual(none.status, 1, none.stdout)
    XCTAssertTrue(none.stderr.contains("run: a directory without audio files"), none.stderr)
    // Extracting a folder of unlabelled names says what it found and what to give.
    let unlabelled = try runCommand(["extract", "new", "-o", "new.h5"], directory: dir)
    XCTAssertEqual(unlabelled.status, 1, unlabelled.stdout)
    XCTAssertTrue(
      unlabelled.stderr.contains("new: none of its 2 audio file(s) is labelled: b.WAV has no emotion in its name")
        && unlabelled.stderr.contains("use --manifest"), unlabelled.stderr)
    // A stored row holding NaN gets an error line too, never `nan` probabilities.
    let f = try FeatureFile(path: dir + "/f.h5")
    var rows = try f.readRows(0..<f.rowCount)
    rows[5 * f.width + 100] = .nan  // row 5
    let w = try FeatureFileWriter(path: dir + "/nan.h5", width: f.width, overwrite: true)
    try rows.withUnsafeBufferPointer {
      try w.append(
        rows: $0, labels: f.labels.map { f.classes[Int($0)] }, sources: f.source, augmentations: f.augmentation)
    }
    try w.finish(recipe: f.recipe, recordings: try f.recordings())
    let stored = try runCommand(
      ["predict", "--checkpoint", "run/checkpoint-last.h5", "--features", "nan.h5", "--csv"], directory: dir)
    XCTAssertEqual(stored.status, 1, stored.stdout)
    let lines = stored.stdout.split(separator: "\n")
    XCTAssertEqual(lines.count, 1 + f.rowCount)
    XCTAssertTrue(lines[1 + 5].hasSuffix(",the stored row holds NaN or infinity,"), String(lines[1 + 5]))
    XCTAssertFalse(stored.stdout.contains("nan,"), stored.stdout)
  }

  /// Manifests: paths (and symlinks) must stay inside the corpus root, RFC 4180 quoting holds a comma in a name,
  /// labels outside the seven emotions are a warning (an error with --strict), and nothing usable writes nothing.
  func testManifestsAreConfinedAndQuoted() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "2"], directory: dir).status, 0)
    let fm = FileManager.default
    let wav = dir + "/corpus/Synth/S1_00_angry.wav"
    try fm.copyItem(atPath: wav, toPath: dir + "/outside.wav")
    try fm.copyItem(atPath: wav, toPath: dir + "/corpus/b,c.wav")
    try fm.copyItem(atPath: wav, toPath: dir + "/corpus/j.wav")
    try fm.createSymbolicLink(atPath: dir + "/corpus/link.wav", withDestinationPath: dir + "/outside.wav")
    var lines = ["path,emotion,speaker"]
    for f in try fm.contentsOfDirectory(atPath: dir + "/corpus/Synth").sorted() where f.hasSuffix(".wav") {
      lines.append("Synth/\(f),\(f.split(separator: "_")[2].dropLast(4)),\(f.prefix(2))")
    }
    lines += [
      "../outside.wav,angry,S9", "\(dir)/outside.wav,sad,S9", "link.wav,fear,S9", "\"b,c.wav\",happy,S8",
      "j.wav,jubilant,S1", "./Synth/S1_00_angry.wav,sad,S1", "Synth/../Synth//S1_00_angry.wav,angry,S1",
    ]
    XCTAssertTrue(fm.createFile(atPath: dir + "/m.csv", contents: Data((lines.joined(separator: "\n") + "\n").utf8)))
    let r = try runCommand(["extract", "corpus", "--manifest", "m.csv", "-o", "f.h5", "-q"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    for name in ["../outside.wav", "\(dir)/outside.wav"] {
      XCTAssertTrue(r.stdout.contains("\(name): outside the corpus root"), "\(name): \(r.stdout)")
    }
    // A symlink in the root is said to be one, with where it leads.
    XCTAssertTrue(
      r.stdout.contains("link.wav: a symlink to /") && r.stdout.contains("/outside.wav, outside the corpus root"),
      r.stdout)
    XCTAssertFalse(r.stdout.contains("b,c.wav:"), r.stdout)
    // One file listed three times: the first listing counts, the others are reported (another label too).
    XCTAssertTrue(
      r.stdout.contains("./Synth/S1_00_angry.wav: the same file as entry 1 (Synth/S1_00_angry.wav)")
        && r.stdout.contains("with another label ('sad', not 'angry')")
        && r.stdout.contains("Synth/../Synth//S1_00_angry.wav: the same file as entry 1"), r.stdout)
    XCTAssertTrue(r.stdout.contains("warning: labels outside the seven emotions") && r.stdout.contains("'jubilant' 1"))
    let recordings = try FeatureFile(path: dir + "/f.h5").recordings().map(\.path)
    XCTAssertTrue(recordings.contains("b,c.wav") && !recordings.contains("link.wav"), "\(recordings)")
    let strict = try runCommand(
      ["extract", "corpus", "--manifest", "m.csv", "-o", "g.h5", "-q", "--strict"], directory: dir)
    XCTAssertEqual(strict.status, 1)
    XCTAssertTrue(strict.stderr.contains("jubilant"), strict.stderr)
    // A duplicate alone is an error with --strict too; a byte order mark before the header is not a row.
    let bom = "\u{FEFF}path,emotion\nSynth/S1_00_angry.wav,angry\nSynth/./S1_00_angry.wav,fear\n"
    XCTAssertTrue(fm.createFile(atPath: dir + "/twice.csv", contents: Data(bom.utf8)))
    let twice = try runCommand(
      ["extract", "corpus", "--manifest", "twice.csv", "-o", "t.h5", "-q", "--strict"], directory: dir)
    XCTAssertEqual(twice.status, 1)
    XCTAssertTrue(twice.stderr.contains("the same file as entry 1"), twice.stderr)
    let once = try runCommand(["extract", "corpus", "--manifest", "twice.csv", "-o", "t.h5", "-q"], directory: dir)
    XCTAssertEqual(once.status, 0, once.stderr)
    XCTAssertFalse(once.stdout.contains("path:"), once.stdout)
    XCTAssertEqual(try FeatureFile(path: dir + "/t.h5").recordings().count, 1)
    // A label of a megabyte is a broken line, not a class.
    let long = "Synth/S1_00_angry.wav," + String(repeating: "x", count: 1 << 20) + "\n"
    XCTAssertTrue(fm.createFile(atPath: dir + "/long.csv", contents: Data(long.utf8)))
    let huge = try runCommand(["extract", "corpus", "--manifest", "long.csv", "-o", "l.h5", "-q"], directory: dir)
    XCTAssertEqual(huge.status, 1)
    XCTAssertTrue(huge.stderr.contains("a label of 1048576 bytes"), huge.stderr)
    let allowed = try runCommand(
      ["extract", "corpus", "--manifest", "m.csv", "-o", "h.h5", "-q", "--allow-outside-root"], directory: dir)
    XCTAssertEqual(allowed.status, 0, allowed.stderr)
    XCTAssertFalse(allowed.stdout.contains("outside the corpus root"), allowed.stdout)
    // Nothing usable: an error, and no file.
    XCTAssertTrue(fm.createFile(atPath: dir + "/bad.csv", contents: Data("../outside.wav,angry\n".utf8)))
    let none = try runCommand(["extract", "corpus", "--manifest", "bad.csv", "-o", "none.h5", "-q"], directory: dir)
    XCTAssertEqual(none.status, 1)
    XCTAssertTrue(none.stderr.contains("no file could be used"), none.stderr)
    XCTAssertFalse(fm.fileExists(atPath: dir + "/none.h5"))
  }
}

/// A speaker is a corpus's: a manifest's recordings are of the corpus its directory (or `--corpus`, or a fourth
/// column) names; one speaker name in two corpora is two people, in `extract` and in `merge`; one recording in two
/// merged files is refused.
extension ExtractCommandTests {
  func testSpeakersOfDifferentCorporaStayApart() throws {
    let dir = temporaryDirectory(self)
    XCTAssertEqual(
      try runCommand(["synth", "-o", "corpus", "--speakers", "2", "--per-class", "2"], directory: dir).status, 0)
    let fm = FileManager.default
    let files = try fm.contentsOfDirectory(atPath: dir + "/corpus/Synth").filter { $0.hasSuffix(".wav") }.sorted()
    // Recordings 00 of both synth speakers as speakers A and B; recordings 01 likewise, in another manifest.
    func manifest(_ name: String, take: String, corpusColumn: (String) -> String? = { _ in nil }) {
      let lines = files.filter { $0.contains("_\(take)_") }.map { f in
        let speaker = f.hasPrefix("S1") ? "A" : "B"
        return "Synth/\(f),\(f.split(separator: "_")[2].dropLast(4)),\(speaker)"
          + (corpusColumn(f).map { ",\($0)" } ?? "")
      }
      XCTAssertTrue(fm.createFile(atPath: dir + "/" + name, contents: Data(lines.joined(separator: "\n").utf8)))
    }
    manifest("a.csv", take: "00")
    manifest("b.csv", take: "01")
    let extract = { (args: [String]) in try runCommand(["extract", "corpus", "-q"] + args, directory: dir) }
    for (out, args) in [("a.h5", ["--manifest", "a.csv"]), ("b.h5", ["--manifest", "b.csv", "--corpus", "other"])] {
      let r = try extract(["-o", out] + args)
      XCTAssertEqual(r.status, 0, r.stderr)
    }
    XCTAssertEqual(Set(try FeatureFile(path: dir + "/a.h5").recordings().map(\.corpus)), ["corpus"])
    let merged = try runCommand(["merge", "a.h5", "b.h5", "-o", "ab.h5"], directory: dir)
    XCTAssertEqual(merged.status, 0, merged.stderr)
    XCTAssertTrue(
      merged.stdout.contains("note: 2 speaker name(s) are in more than one corpus ('A', 'B')"), merged.stdout)
    XCTAssertEqual(
      Set(try FeatureFile(path: dir + "/ab.h5").recordings().map(\.speaker)),
      ["corpus/A", "corpus/B", "other/A", "other/B"])
    // The same corpus in two files: the same speakers, said.
    XCTAssertEqual(try extract(["-o", "b2.h5", "--manifest", "b.csv"]).status, 0)
    let same = try runCommand(["merge", "a.h5", "b2.h5", "-o", "ab2.h5"], directory: dir)
    XCTAssertEqual(same.status, 0, same.stderr)
    XCTAssertTrue(
      same.stdout.contains("2 speaker(s) of corpus 'corpus' are in more than one file ('A' in a.h5 and b2.h5)"),
      same.stdout)
    XCTAssertEqual(Set(try FeatureFile(path: dir + "/ab2.h5").recordings().map(\.speaker)), ["A", "B"])
    // One recording twice: refused, nothing written.
    let twice = try runCommand(["merge", "a.h5", "ab2.h5", "-o", "x.h5"], directory: dir)
    XCTAssertEqual(twice.status, 1)
    XCTAssertTrue(twice.stderr.contains("ab2.h5: holds recording Synth/S1_00_angry.wav of corpus 'corpus', which a.h5"))
    let given = try runCommand(["merge", "a.h5", "b.h5", "a.h5", "-o", "x.h5"], directory: dir)
    XCTAssertTrue(given.status == 1 && given.stderr.contains("a.h5: given twice"), given.stderr)
    XCTAssertEqual(try fm.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("x.h5") }, [], "not even a temporary")
    // A fourth column names each recording's corpus; one extraction of two corpora keeps their speakers apart too.
    manifest("c.csv", take: "00") { $0.contains("angry") || $0.contains("sad") ? "x" : nil }
    let c = try extract(["-o", "c.h5", "--manifest", "c.csv"])
    XCTAssertEqual(c.status, 0, c.stderr)
    XCTAssertTrue(c.stdout.contains("speakers named alike in different corpora are different people: 2"), c.stdout)
    let recordings = try FeatureFile(path: dir + "/c.h5").recordings()
    XCTAssertEqual(
      Set(recordings.map { "\($0.corpus) \($0.speaker)" }), ["corpus corpus/A", "corpus corpus/B", "x x/A", "x x/B"])
    XCTAssertEqual(try extract(["-o", "d.h5", "--corpus", "y"]).status, 2)

    // cv --by corpus on the merged file: each corpus held out in turn, all of it and nothing else.
    let cv = ["cv", "--data", "ab.h5", "--model", "tiny", "--epochs", "1", "--by", "corpus", "--dir", "loco", "-q"]
    let three = try runCommand(cv + ["--folds", "3"], directory: dir)
    XCTAssertEqual(three.status, 1)
    XCTAssertTrue(
      three.stderr.contains("has 2 corpora, fewer than --folds 3: --folds all (2) leaves each corpus out"), three.stderr
    )
    let loco = try runCommand(cv + ["--folds", "all"], directory: dir)
    XCTAssertEqual(loco.status, 0, loco.stderr)
    let table = try String(contentsOfFile: dir + "/loco/cv.csv", encoding: .utf8).split(separator: "\n")
    XCTAssertTrue(table[0].hasPrefix("fold,corpora,rows,"), String(table[0]))
    let ab = try FeatureFile(path: dir + "/ab.h5")
    let corpusOfRow = try ab.source.map { try ab.recordings()[Int($0)].corpus }
    var heldOut: [String] = []
    for fold in 1...2 {
      let split: [Int8] = try H5File(path: dir + "/loco/fold-\(fold)/checkpoint-last.h5").read("split")
      let test = Set(split.indices.filter { split[$0] == 2 }.map { corpusOfRow[$0] })
      let rest = Set(split.indices.filter { split[$0] != 2 }.map { corpusOfRow[$0] })
      XCTAssertEqual(test.count, 1, "fold \(fold) holds out \(test)")
      XCTAssertFalse(rest.contains(test.first ?? ""), "fold \(fold) trains on the corpus it holds out")
      XCTAssertEqual(String(table[fold].split(separator: ",")[1]), test.first, "cv.csv names fold \(fold)'s corpus")
      heldOut += test
    }
    XCTAssertEqual(heldOut.sorted(), ["corpus", "other"])
    // Repeated, leave-one-corpus-out draws the same folds for every seed: said.
    let repeated = try runCommand(
      Array(cv.dropLast(3)) + ["--folds", "2", "--repeats", "2", "--dir", "loco2"], directory: dir)
    XCTAssertEqual(repeated.status, 0, repeated.stderr)
    XCTAssertTrue(
      repeated.stdout.contains("note: repeat 2 holds out the same corpora in its folds as repeat 1"), repeated.stdout)
  }
}
