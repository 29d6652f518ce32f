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
    let t = try runCommand(
      [
        "train", "--data", "f.h5", "--model", "tiny", "--epochs", "10", "--batch-size", "16", "--learning-rate", "0.01",
        "--val-fraction", "0.2", "--test-fraction", "0", "--run-dir", "run", "--patience", "100",
      ], directory: dir)
    XCTAssertEqual(t.status, 0, t.stderr)
    let (best, history) = try bestValidationAccuracy(dir + "/run")
    XCTAssertGreaterThan(best, 2.0 / 7, "well above chance (1/7): \(history)")
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
    XCTAssertTrue(lines[1 + 5].hasSuffix("the stored row holds NaN or infinity"), String(lines[1 + 5]))
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
    try fm.createSymbolicLink(atPath: dir + "/corpus/link.wav", withDestinationPath: dir + "/outside.wav")
    var lines = ["path,emotion,speaker"]
    for f in try fm.contentsOfDirectory(atPath: dir + "/corpus/Synth").sorted() where f.hasSuffix(".wav") {
      lines.append("Synth/\(f),\(f.split(separator: "_")[2].dropLast(4)),\(f.prefix(2))")
    }
    lines += [
      "../outside.wav,angry,S9", "\(dir)/outside.wav,sad,S9", "link.wav,fear,S9", "\"b,c.wav\",happy,S8",
      "Synth/S1_00_angry.wav,jubilant,S1",
    ]
    XCTAssertTrue(fm.createFile(atPath: dir + "/m.csv", contents: Data((lines.joined(separator: "\n") + "\n").utf8)))
    let r = try runCommand(["extract", "corpus", "--manifest", "m.csv", "-o", "f.h5", "-q"], directory: dir)
    XCTAssertEqual(r.status, 0, r.stderr)
    for name in ["../outside.wav", "\(dir)/outside.wav", "link.wav"] {
      XCTAssertTrue(r.stdout.contains("\(name): outside the corpus root"), "\(name): \(r.stdout)")
    }
    XCTAssertFalse(r.stdout.contains("b,c.wav:"), r.stdout)
    XCTAssertTrue(r.stdout.contains("warning: labels outside the seven emotions") && r.stdout.contains("'jubilant' 1"))
    let recordings = try FeatureFile(path: dir + "/f.h5").recordings().map(\.path)
    XCTAssertTrue(recordings.contains("b,c.wav") && !recordings.contains("link.wav"), "\(recordings)")
    let strict = try runCommand(
      ["extract", "corpus", "--manifest", "m.csv", "-o", "g.h5", "-q", "--strict"], directory: dir)
    XCTAssertEqual(strict.status, 1)
    XCTAssertTrue(strict.stderr.contains("jubilant"), strict.stderr)
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
