import ArgumentParser
import AudioFeatures
import Base
import Collective
import FeatureStore
import FoundationEssentials
import ModelFiles
import ProcessSetup
import Schema
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct Evaluate: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Loss, accuracy, per-class report and confusion matrix of a checkpoint (across ranks under mpirun).")

  @Option(help: "The checkpoint.")
  var checkpoint: String

  @Option(help: "The feature file (default: the one the checkpoint was trained on).")
  var data: String?

  @Option(
    help: """
      Rows: test, val, train (the checkpoint's split), all, or unseen: those of recordings the model did not train \
      on, in any file (default: test of the data the checkpoint was trained on, or val when it held out no test \
      rows; unseen of other data, such as another corpus or a merged file, evaluated on the classes both have).
      """)
  var split: String?

  @OptionGroup var inference: InferenceOptions

  @Flag(help: "Print JSON.")
  var json = false

  func run() throws {
    try runOnRanks { comm in
      configureThreads(environment: environment())
      let c = try Checkpoint.read(checkpoint)
      let file = try FeatureFile(path: defaultData(c, data))
      let split = self.split ?? defaultSplit(c, data: file, own: data == nil)
      let e = try evaluate(
        c, path: checkpoint, data: file, split: split, comm: comm, precision: try inference.precision.resolved())
      guard comm.rank == 0 else { return }
      if json {
        print(e.json())
      } else {
        print(
          "\(checkpoint) on \(e.rows) \(split) rows: loss \(fixed(e.loss, 4)), accuracy \(fixed(e.accuracy, 4)), UAR "
            + fixed(e.unweightedAverageRecall, 4))
        if let original = e.originalSummary { print(original) }
        if split == "unseen" {
          print("unseen: the rows of recordings the model did not train on (--split all evaluates every row)")
        } else if let warning = e.seenWarning {
          print("warning: \(warning); --split unseen leaves them out")
        }
        if let left = e.leftOut {
          print(
            "across corpora: evaluated on the \(e.classes.count) classes both have (\(e.classes.joined(separator: ", ")))"
              + (left.dataClasses.isEmpty
                ? ""
                : "; left out the data's "
                  + left.dataClasses.keys.sorted().map { "\($0) (\(left.dataClasses[$0]!) rows)" }.joined(
                    separator: ", "))
              + (left.modelClasses.isEmpty
                ? "" : "; the model's \(left.modelClasses.joined(separator: ", ")) never predicted"))
        }
        print("")
        print(e.report + "\n")
        print(e.confusionTable)
      }
    }
  }
}

struct Predict: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "The emotion and class probabilities of recordings (or of stored feature rows).")

  @Option(help: "The checkpoint.")
  var checkpoint: String

  @Argument(help: "Audio files (any format libsndfile reads), or directories: every audio file below one, by path.")
  var files: [String] = []

  @Option(help: "Predict the rows of this feature file instead.")
  var features: String?

  @Option(
    help: "With --features: test, val, train (the checkpoint's split), all, or unseen (recordings it did not train on)."
  )
  var split = "all"

  @Flag(help: "Print JSON.")
  var json = false

  @Flag(help: "Print CSV: path_or_row,emotion,<one column per class>[,path,truth,augmentation],error.")
  var csv = false

  @Flag(
    help: ArgumentHelp(
      "Audio: predict every window of the training duration in each recording, one after another from the offset "
        + "(a last window needs half a window of audio), and each recording by their mean."))
  var windows = false

  @Option(
    name: .customLong("speaker-reference"),
    help: ArgumentHelp(
      "For a --standardize speaker checkpoint: more recordings of the same speaker (files or directories; repeat the "
        + "option), whose rows join the speaker's statistics but are not predicted: one new recording can then be "
        + "predicted with ten or more of its speaker's.",
      valueName: "path"))
  var speakerReference: [String] = []

  @OptionGroup var inference: InferenceOptions

  func validate() throws {
    if files.isEmpty == (features == nil) { throw ValidationError("give audio files or --features, not both") }
    if !speakerReference.isEmpty && features != nil {
      throw ValidationError("--speaker-reference is for audio files, not --features")
    }
    if json && csv { throw ValidationError("--json or --csv, not both") }
    if windows && features != nil { throw ValidationError("--windows is for audio files, not --features") }
  }

  func run() throws {
    try runReportingErrors {
      configureThreads(environment: environment())
      let c = try Checkpoint.read(checkpoint)
      let recordings = try audioFiles(files)
      let reference = try audioFiles(speakerReference)
      if c.standardization == .speaker, let features {
        printError(
          "note: \(checkpoint) standardises each speaker by that speaker's own statistics: they are computed for "
            + "each speaker of \(features)")
      }
      let predictions =
        features == nil
        ? try predictFiles(
          recordings, checkpoint: c, path: checkpoint, precision: try inference.precision.resolved(), windows: windows,
          reference: reference, note: { printError("note: " + $0) })
        : try predictRows(
          featuresPath: features!, split: split, checkpoint: c, path: checkpoint,
          precision: try inference.precision.resolved())
      let classes = c.classNames
      let rows = features != nil
      // With --windows, each recording's line is followed by its windows' (CSV: with their start and end).
      let lines = predictions.flatMap { [$0] + ($0.windows ?? []) }
      if json {
        print(jsonText(predictions, pretty: true))
      } else if csv {
        let extra = (rows ? ["path", "truth", "augmentation"] : []) + ["error", "warning"]
        print(
          (["path_or_row"] + (windows ? ["start", "end"] : []) + ["emotion"] + classes + extra).joined(separator: ","))
        for p in lines {
          let probabilities = classes.map { p.error == nil ? fixed(p.probabilities[$0] ?? 0, 6) : "" }
          let span = windows ? [p.start.map { fixed($0, 3) } ?? "", p.end.map { fixed($0, 3) } ?? ""] : []
          let more =
            (rows ? [p.path ?? "", p.truth ?? "", p.augmentation ?? ""] : []) + [p.error ?? "", p.warning ?? ""]
          print(([p.source] + span + [p.emotion] + probabilities + more).map(csvCell).joined(separator: ","))
        }
      } else {
        func name(_ p: Prediction) -> String {
          guard let start = p.start, let end = p.end else { return p.source }
          return "  \(fixed(start, 2))-\(fixed(end, 2)) s"
        }
        let w = max(rows ? 6 : 12, lines.map { name($0).count }.max() ?? 0)
        let more = rows ? pad("truth", 9) + pad("augmented", 12) : ""
        print(
          pad(rows ? "row" : "file", w) + "  " + more + pad("emotion", 9)
            + classes.map { pad(String($0.prefix(8)), 9) }.joined() + (rows ? "recording" : ""))
        for p in lines {
          if let error = p.error {
            print(pad(name(p), w) + "  error: " + error)
            continue
          }
          print(
            pad(name(p), w) + "  " + (rows ? pad(p.truth ?? "", 9) + pad(p.augmentation ?? "", 12) : "")
              + pad(p.emotion, 9) + classes.map { pad(fixed(p.probabilities[$0] ?? 0, 3), 9) }.joined()
              + (rows ? p.path ?? "" : "")
              + (p.windows.map { $0.count == 1 ? "(one window)" : "(the mean of \($0.count) windows)" } ?? ""))
          if let warning = p.warning { print(pad("", w) + "  warning: " + warning) }
        }
      }
      // Audio is read as in training (predictFiles refuses another recipe): say so when that leaves much unread.
      let recipe = FeatureRecipe()
      let long = predictions.filter { p in
        !windows && p.seconds.map { windowStarts(seconds: $0, recipe: recipe).count > 1 } == true
      }
      if let first = long.first {
        printError(
          "note: \(long.count == 1 ? first.source + " is" : "\(long.count) recordings are") longer than the window "
            + "the model reads: only \(long.count == 1 ? "its" : "their") \(recipe.offset)-"
            + "\(recipe.offset + recipe.duration) s was predicted (--windows predicts every \(recipe.duration) s)")
      }
      for p in predictions where p.warning != nil && (json || csv) {
        printError("sertrain: warning: \(p.source): \(p.warning!)")
      }
      let failed = predictions.filter { $0.error != nil }.count
      if failed > 0 {
        let names = predictions.filter { $0.error != nil }.map(\.source).joined(separator: ", ")
        printError("sertrain: error: \(failed) of \(predictions.count) file(s) could not be predicted: \(names)")
        throw ExitCode(1)
      }
    }
  }
}

struct Report: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Write RUN_DIR/report.html: curves per epoch, confusion matrix, per-class table.")

  @Argument(help: "The run directory.")
  var runDir: String

  @Option(help: "The feature file (default: the one the run trained on).")
  var data: String?

  @Option(help: "Rows to evaluate (default: test if the run held some out, else val).")
  var split: String?

  @Option(name: .shortAndLong, help: "The page to write (default RUN_DIR/report.html, or RUN_DIR/report-SPLIT.html).")
  var output: String?

  func run() throws {
    try runReportingErrors {
      configureThreads(environment: environment())
      let page = output ?? split.map { "\(runDir)/report-\($0).html" }
      if let (path, _) = try makeReport(
        runDir: runDir, data: data, split: split, comm: SingleProcessCommunicator(), output: page, progress: true)
      {
        print("wrote \(path)")
      }
    }
  }
}

/// How `evaluate` and `predict` run a checkpoint's network.
struct InferenceOptions: ParsableArguments {
  @Option(
    help: """
      Arithmetic of the convolutions: fp32, bf16 (bfloat16 multiplies with float sums; needs AVX512-BF16) or auto \
      (bf16 where the CPU has it). The checkpoint's weights are float either way.
      """)
  var precision = PrecisionOption.fp32
}

struct Compare: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Two models' cross-validations on the same folds, paired by fold: is the candidate better?",
    discussion: """
      Give cross-validation directories in pairs, BASE CANDIDATE, each pair run on the same data with the same \
      --folds, --by and --seed (the same fold holds out the same speakers); several pairs (other seeds) pool their \
      folds. For accuracy, macro F1 and UAR: both means, the mean difference (candidate minus base) with its sd and \
      standard error over folds, folds better and worse, and Bouckaert and Frank's corrected t-test for k-fold \
      cross-validation (a plain paired t-test over folds is too confident: the folds' models share most of their \
      training rows).
      """)

  @Argument(help: "Cross-validation directories (or cv.csv files) in pairs: BASE CANDIDATE [BASE CANDIDATE ...].")
  var runs: [String]

  @Flag(help: "Print JSON.")
  var json = false

  func validate() throws {
    if runs.count < 2 || runs.count % 2 != 0 {
      throw ValidationError("give cross-validations in pairs, BASE CANDIDATE; got \(runs.count)")
    }
  }

  func run() throws {
    try runReportingErrors {
      let pairs = stride(from: 0, to: runs.count, by: 2).map { (base: runs[$0], candidate: runs[$0 + 1]) }
      let (folds, kind, differences, partitions, compared) = try compareCrossValidations(pairs)
      if json {
        struct Output: Encodable {
          var folds: Int
          var by: String
          var partitions: Int
          var metrics: [PairedDifference]
        }
        print(jsonText(Output(folds: folds, by: kind, partitions: partitions, metrics: differences), pretty: true))
        return
      }
      func signed(_ v: Double) -> String { (v >= 0 ? "+" : "") + fixed(v, 4) }
      let more = pairs.count > 1 ? " (and \(pairs.count - 1) more pair\(pairs.count > 2 ? "s" : ""))" : ""
      print("\(pairs[0].candidate) against \(pairs[0].base)\(more): \(folds) folds of held-out \(kind), paired by fold")
      print("")
      let labels = differences.map { d in
        CrossValidationSummary.metrics.first { $0.name == d.metric }?.label ?? d.metric
      }
      let width = labels.map(\.count).max()! + 2
      print(
        pad("metric", width) + pad("base", 9) + pad("candidate", 11) + pad("difference", 12) + pad("sd", 8)
          + pad("se", 8) + pad("t", 8) + pad("p", 8) + "better/worse")
      for (d, label) in zip(differences, labels) {
        print(
          pad(label, width) + pad(fixed(d.base, 4), 9) + pad(fixed(d.candidate, 4), 11)
            + pad(signed(d.mean), 12) + pad(fixed(d.sd, 4), 8) + pad(fixed(d.standardError, 4), 8)
            + pad(fixed(d.t, 2), 8) + pad(d.p < 0.001 ? "<0.001" : fixed(d.p, 3), 8) + "\(d.better)/\(d.worse)")
      }
      print("")
      print(
        "difference: candidate minus base over the \(folds) folds; se: sd / sqrt(\(folds)); t: the corrected "
          + "repeated k-fold cross-validation test (Bouckaert and Frank), \(folds - 1) degrees of freedom; p "
          + "two-sided")
      if partitions < compared {
        print(
          "note: the \(compared) pairs hold out \(partitions) partition(s) into folds: seeds that draw the same folds "
            + "differ only in initialisation, order and dropout, and the corrected test, made for repetitions that "
            + "partition anew, is then somewhat too confident")
      }
    }
  }
}
