import ArgumentParser
import AudioFeatures
import Base
import Collective
import Extraction
import ProcessSetup
import Training

struct Extract: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Scan a corpus and extract the seed's 2376 features, four rows per recording, across all ranks.")

  @Argument(
    help:
      "The corpus root (the Kaggle layout: Crema, Ravdess, Savee, Tess), or the root the manifest's paths are relative to."
  )
  var directory: String

  @Option(name: .shortAndLong, help: "The feature file to write.")
  var output = "features.h5"

  @Option(help: "A CSV of path,emotion[,speaker[,corpus]] for any other corpus.")
  var manifest: String?

  @Option(
    help: """
      The corpus of the manifest's recordings that do not name one (default: the directory's name), by which \
      merge, the report and speaker names tell corpora apart.
      """)
  var corpus: String?

  @Option(help: "Rows per recording, in order: original, noise, pitch, pitch+noise (the seed's), stretch, shift.")
  var augment = "original,noise,pitch,pitch+noise"

  @Option(
    help: """
      Row layout: frames (frame t's ZCR, RMS and 20 MFCCs at columns 22t to 22t+21, short clips padded with zero \
      frames at the end; the frames model reads it as 108 frames x 22 features), seed (the seed study's \
      features.csv: a short clip's RMS and MFCC blocks start early) or aligned (the seed's blocks, each padded to \
      a full clip's frames).
      """)
  var layout = FeatureRecipe.Layout.frames

  @Flag(help: "Fail when a file cannot be used or a label is not one of the seven emotions, instead of reporting it.")
  var strict = false

  @Flag(help: "Read manifest paths (and symlinks) that lead outside the corpus root.")
  var allowOutsideRoot = false

  @Option(help: "Seed of the noise (per recording, so results do not depend on the rank count).")
  var seed: UInt64 = 0

  @Flag(help: "Replace an existing output file.")
  var force = false

  @Option(help: "Threads per rank (default: the cores this rank may use).")
  var threads: Int?

  @Flag(name: .shortAndLong, help: "Print only the summary.")
  var quiet = false

  func validate() throws {
    if let t = threads, t < 1 { throw ValidationError("--threads must be at least 1") }
    if corpus != nil && manifest == nil {
      throw ValidationError("--corpus names a manifest's corpus (the Kaggle layout's come from its folders)")
    }
    if let c = corpus, c.isEmpty || c.utf8.count > maxNameBytes {
      throw ValidationError("--corpus: a name of 1 to \(maxNameBytes) bytes")
    }
    for a in augment.split(separator: ",") where Augmentation(rawValue: String(a)) == nil {
      throw ValidationError(
        "--augment: unknown '\(a)' (choose from \(Augmentation.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
  }

  func run() throws {
    try runOnRanks { comm in
      configureThreads(environment: ["OPENBLAS_NUM_THREADS": "1"])
      var o = ExtractOptions(root: directory, output: output)
      o.manifest = manifest
      o.corpus = corpus
      o.augmentations = augment.split(separator: ",").map { Augmentation(rawValue: String($0))! }
      o.recipe.layout = layout
      o.strict = strict
      o.allowOutsideRoot = allowOutsideRoot
      o.seed = seed
      o.force = force
      o.quiet = quiet
      o.threads = threads
      let report = try extractCorpus(o, comm: comm)
      guard comm.rank == 0 else { return }
      print(
        "extracted \(report.recordings) recordings -> \(report.rows) rows x 2376 into \(output) in "
          + "\(fixed(report.seconds, 1)) s (\(fixed(Double(report.recordings) / max(report.seconds, 1e-9), 1)) files/s, \(comm.size) rank(s))"
      )
      for w in report.warnings { print("warning: \(w)") }
      for f in report.flagged { print("  flagged \(f.path): \(f.reason)") }
      if !report.skipped.isEmpty {
        print("skipped \(report.skipped.count) files:")
        for f in report.skipped { print("  \(f.path): \(f.reason)") }
      }
    }
  }
}

extension FeatureRecipe.Layout: ExpressibleByArgument {}

struct Synth: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write a small labelled corpus of speech-like sounds (7 emotions) that extract reads.")

  @Option(name: .shortAndLong, help: "The directory to write (files go to DIR/Synth).")
  var output: String

  @Option(help: "Speakers.")
  var speakers = 4

  @Option(help: "Utterances per speaker and emotion.")
  var perClass = 10

  @Option(help: "Seed.")
  var seed: UInt64 = 1

  func validate() throws {
    if speakers < 1 || perClass < 1 { throw ValidationError("--speakers and --per-class must be at least 1") }
  }

  func run() throws {
    try runReportingErrors {
      let files = try writeSyntheticCorpus(to: output, speakers: speakers, perClass: perClass, seed: seed)
      print("wrote \(files.count) files (\(speakers) speakers x 7 emotions x \(perClass)) to \(output)/Synth")
    }
  }
}
