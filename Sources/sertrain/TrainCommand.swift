import ArgumentParser
import Base
import Collective
import ConvNet
import ModelFiles
import ProcessSetup
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train the model on a feature file, on one process or data-parallel under mpirun/srun.",
    discussion: """
      Every rank takes a strided share of each global batch; gradients are summed in one allreduce per step and \
      BatchNorm statistics are synchronised, so the number of ranks changes only the order of summation.
      SIGUSR1, SIGTERM or Ctrl-C (SIGINT; a second one ends it at once) writes a checkpoint at the next step and \
      exits with 75; --resume auto continues. A run directory that holds a run is refused unless --resume or --force.
      """)

  @OptionGroup(title: "Training") var training: TrainingOptions

  @Option(help: "The run directory (default runs/<date-time>, or with --resume auto the newest unfinished run).")
  var runDir: String?

  @Option(help: "Continue a run: 'auto' (the run directory's last checkpoint, if any) or a checkpoint path.")
  var resume: String?

  @Flag(help: "Start a new run in a run directory that holds one, removing that run's checkpoints, history and report.")
  var force = false

  @OptionGroup var output: OutputOptions

  func run() throws {
    try runOnRanks { comm in
      configureThreads(environment: environment())
      let (config, given) = training.configuration()
      // One directory for every rank, whatever their clocks or views of runs/ say: rank 0 chooses.
      var dir = ""
      var note: String?
      if comm.rank == 0 { (dir, note) = resolveRunDirectory(given: runDir, resume: resume) }
      comm.broadcast(&dir, root: 0)
      if let note, !output.quiet { print(note) }
      let trainer = try Trainer.open(
        config: config, runDir: dir, resume: resume, comm: comm, options: output.trainer(training), given: given,
        replace: force)
      let code = try trainer.run()
      if code != 0 { throw ExitCode(code) }
      // The final weights on the held-out rows, and the report.
      if let (path, evaluation) = try makeReport(runDir: dir, data: nil, split: nil, comm: comm), !output.quiet {
        if let e = evaluation {
          print(
            "\n\(e.split) split, \(e.rows) rows: loss \(fixed(e.loss, 4)), accuracy \(fixed(e.accuracy, 4))"
              + (e.originalSummary.map { "\n\($0)" } ?? "") + (e.seenWarning.map { "\nwarning: \($0)" } ?? "")
              + "\n\n\(e.report)")
        }
        print("report: \(path)")
      }
    }
  }
}

/// What a training run is told (`TrainConfig`): for `train` and for each fold of `cv`.
struct TrainingOptions: ParsableArguments {
  @Option(
    help:
      "The feature file (default features.h5; on resume the run's own, unless given; its content must be the run's).")
  var data: String?

  @Option(
    help: """
      The model: frames (a convolution over frames, the default for rows in the frames layout), seed (the seed's \
      network, the default for other layouts), small, tiny, a JSON spec, or auto (the default: chosen by the data).
      """)
  var model: String?

  @Option(help: "Epochs (the seed's 50). On resume, more than a finished run's count continues it.")
  var epochs: Int?

  @Option(help: "The global batch size, split across ranks (default 64).")
  var batchSize: Int?

  @Option(help: "Adam's learning rate (default 0.001).")
  var learningRate: Double?

  @Option(help: "How rows are split: recording (default), speaker, or random (the seed's, which leaks).")
  var split: SplitKind?

  @Option(help: "Fraction of rows for validation (early stopping and learning-rate decisions; default 0.1).")
  var valFraction: Double?

  @Option(help: "Fraction of rows held out for testing (sertrain evaluate --split test; default 0.1; cv: unused).")
  var testFraction: Double?

  @Option(help: "The seed of every random choice (initial weights, split, batch order; default 0).")
  var seed: UInt64?

  @Option(help: "The metric both callbacks monitor (Keras's name; default val_accuracy).")
  var monitor: String?

  @Option(help: "EarlyStopping patience in epochs (the seed's 5).")
  var patience: Int?

  @Option(help: "ReduceLROnPlateau patience in epochs (the seed's 3).")
  var lrPatience: Int?

  @Option(help: "ReduceLROnPlateau factor (the seed's 0.5).")
  var lrFactor: Double?

  @Option(help: "ReduceLROnPlateau minimum learning rate (the seed's 1e-5).")
  var minLR: Double?

  @Option(help: "ReduceLROnPlateau cooldown in epochs (default 0).")
  var cooldown: Int?

  @Option(
    help: ArgumentHelp(
      "Scale the learning rate with the global batch: linear (x batch/base), sqrt, or none (the default).",
      valueName: "linear|sqrt|none"))
  var lrScaling: TrainConfig.LRScaling?

  @Option(help: "The batch size --learning-rate is meant for (the seed's 64).")
  var baseBatch: Int?

  @Option(help: "Epochs of linear warmup from --learning-rate to the scaled rate (Goyal et al. 2017).")
  var warmupEpochs: Int?

  @Option(
    help: ArgumentHelp(
      "Across ranks: reduce the gradients in buckets of this many MiB while backward runs (4 pays on links of "
        + "1 Gbit/s or less; 0, the default: one blocking allreduce after it). Changes speed, not results (beyond "
        + "the order of sums on more than 2 ranks).",
      valueName: "MiB"))
  var bucketMB = Double(Trainer.defaultBucketBytes) / Double(1 << 20)
  var bucketBytes: Int { Int(bucketMB * Double(1 << 20)) }

  @Option(
    help: ArgumentHelp(
      "The feature rows each rank keeps in memory once read, in MiB (default: the ranks together a quarter of the "
        + "memory this machine or job grants; 0: every batch read from the file). Changes speed, not results.",
      valueName: "MiB"))
  var rowCacheMB: Double?

  @Option(
    help: """
      For trying things out: use at most N rows (whole recordings, drawn from --seed; under cv, of those a fold \
      trains and validates on: its test rows are all its own).
      """)
  var limitRows: Int?

  @Option(
    help: """
      Weights of the classes in the training loss, as Keras's class_weight: balanced (scikit-learn's: rarer classes \
      weigh more) or a file of class,weight lines. Recorded in the checkpoint and the report.
      """)
  var classWeight: String?

  @Option(
    help: """
      Arithmetic of the convolutions: fp32 (the default), bf16 (bfloat16 multiplies with float sums, weights, \
      BatchNorm and loss, as Keras's mixed_bfloat16; needs AVX512-BF16), or auto (bf16 where the CPU has it).
      """)
  var precision: PrecisionOption?

  @Option(help: "For trying things out: at most N steps per epoch (Keras's steps_per_epoch).")
  var stepsPerEpoch: Int?

  @Flag(help: "Keep the last weights instead of restoring the best epoch's at the end.")
  var noRestoreBestWeights = false

  @Flag(help: "Do not standardise the features (--standardize none).")
  var noStandardize = false

  @Option(
    help: """
      How rows are standardised: column (each column by the train rows' mean and deviation, the seed's \
      StandardScaler; the default), feature (one mean and deviation per feature over all its frames), speaker (each \
      speaker's rows by that speaker's own statistics: predict then needs 10 or more recordings of one speaker), \
      or none.
      """)
  var standardize: Standardization?

  @Option(
    help: """
      Start from this checkpoint's weights (fine-tuning on other data): its model, every layer's weights and \
      BatchNorm statistics, and the output layer's for the classes both have (by name); the rest drawn from --seed.
      """)
  var initFrom: String?

  /// The configuration these options describe (defaults where not given), and the flags given explicitly.
  func configuration() -> (TrainConfig, Set<TrainConfig.Setting>) {
    var c = TrainConfig()
    var given = Set<TrainConfig.Setting>()
    func take<T>(_ value: T?, _ setting: TrainConfig.Setting, _ apply: (inout TrainConfig, T) -> Void) {
      guard let value else { return }
      apply(&c, value)
      given.insert(setting)
    }
    take(data, .data) { $0.data = $1 }
    take(model == TrainConfig.automaticModel ? nil : model, .model) { $0.model = $1 }  // auto: as if not given
    take(epochs, .epochs) { $0.epochs = $1 }
    take(batchSize, .batchSize) { $0.batchSize = $1 }
    take(learningRate, .learningRate) { $0.learningRate = $1 }
    take(split, .split) { $0.split = $1 }
    take(valFraction, .valFraction) { $0.validationFraction = $1 }
    take(testFraction, .testFraction) { $0.testFraction = $1 }
    take(seed, .seed) { $0.seed = $1 }
    take(monitor, .monitor) {
      $0.earlyStopping.monitor = $1
      $0.reduceLR.monitor = $1
    }
    take(patience, .patience) { $0.earlyStopping.patience = $1 }
    take(lrPatience, .lrPatience) { $0.reduceLR.patience = $1 }
    take(lrFactor, .lrFactor) { $0.reduceLR.factor = $1 }
    take(minLR, .minLR) { $0.reduceLR.minLR = $1 }
    take(cooldown, .cooldown) { $0.reduceLR.cooldown = $1 }
    take(noRestoreBestWeights ? true : nil, .noRestoreBestWeights) { c, _ in
      c.earlyStopping.restoreBestWeights = false
    }
    take(noStandardize ? true : nil, .noStandardize) { c, _ in c.standardize = false }
    take(standardize, .standardize) {
      $0.standardization = $1
      $0.standardize = $1 != .none
    }
    take(classWeight, .classWeight) { $0.classWeight = $1 }
    take(precision, .precision) { $0.precision = $1.meaning }
    take(limitRows, .limitRows) { $0.limitRows = $1 }
    take(stepsPerEpoch, .stepsPerEpoch) { $0.stepsPerEpoch = $1 }
    take(lrScaling, .lrScaling) { $0.lrScaling = $1 }
    take(baseBatch, .baseBatch) { $0.baseBatch = $1 }
    take(warmupEpochs, .warmupEpochs) { $0.warmupEpochs = $1 }
    take(initFrom, .initFrom) { $0.initFrom = $1 }
    return (c, given)
  }

  func validate() throws {
    let (c, _) = configuration()
    if noStandardize, let standardize, standardize != .none {
      throw ValidationError("--no-standardize contradicts --standardize \(standardize.rawValue)")
    }
    if let problem = c.problems.first { throw ValidationError(problem) }
    if let precision { _ = try precision.resolved() }
    if !(bucketMB >= 0) { throw ValidationError("--bucket-mb must be 0 or more") }
    if let m = rowCacheMB, !(m >= 0) { throw ValidationError("--row-cache-mb must be 0 or more") }
  }

}

/// How much a run prints, and how often when the output is a file.
struct OutputOptions: ParsableArguments {
  @Option(help: "Seconds between progress lines when the output is a file, not a terminal (0: none).")
  var progressEvery = 30.0

  @Flag(name: .shortAndLong, help: "Print only errors.")
  var quiet = false

  @Option(
    help: """
      TensorBoard (RUN_DIR/tensorboard, Keras's layout and tags): the running loss every N steps besides the \
      epochs' scalars (0: the epochs' only).
      """)
  var tensorboardEvery = 10

  /// The trainer's options: these, and how `training` reduces the gradients.
  func trainer(_ training: TrainingOptions) -> TrainerOptions {
    var o = TrainerOptions(quiet: quiet)
    (o.progressEvery, o.tensorBoardEvery, o.bucketBytes) = (progressEvery, tensorboardEvery, training.bucketBytes)
    o.rowCacheBytes = training.rowCacheMB.map { Int($0 * Double(1 << 20)) }
    return o
  }

  func validate() throws {
    if !(progressEvery >= 0) { throw ValidationError("--progress-every must be 0 or more seconds") }
    if tensorboardEvery < 0 { throw ValidationError("--tensorboard-every must be 0 or more steps") }
  }
}

struct CrossValidate: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "cv",
    abstract:
      "K-fold cross-validation by speaker (or recording, or corpus), the folds trained in turn or at once across ranks.",
    discussion: """
      Each fold holds out whole speakers (or recordings, or corpora) as its test rows and trains on the others, with a \
      validation part carved from them for the callbacks (--split, --val-fraction). The folds come from --seed: the \
      speakers in an order drawn from it, each to the fold with the fewest rows so far. Under mpirun -n P the ranks \
      split into min(P, K) groups, each training its folds data-parallel. DIR/fold-i is each fold's run directory; \
      run the same command again to continue after a stop. Prints per-fold and mean ± sd accuracy, macro F1 and \
      unweighted average recall; writes DIR/cv.csv, DIR/cv.html and DIR/folds.csv. With --repeats R, R such \
      cross-validations with seeds --seed, --seed + 1, ... (other folds each time) in DIR/repeat-1 ... \
      DIR/repeat-R, and DIR/repeats.csv; compare pairs two such directories repeat by repeat.
      """)

  @OptionGroup(title: "Training") var training: TrainingOptions

  @Option(
    help: "Folds: a number (2 or more), or all: one for each speaker (recording, corpus), leave-one-out.")
  var folds = FoldCount(5)

  @Option(
    help: """
      What a fold holds out: whole speakers, whole recordings, or whole corpora (with --folds all, \
      leave-one-corpus-out on a merged file).
      """)
  var by = FoldGroups.speaker

  @Option(name: .customLong("dir"), help: "The cross-validation directory.")
  var directory = "cv"

  @Option(help: "Cross-validations, each with the next seed (repeated k-fold: the folds drawn again each time).")
  var repeats = 1

  @OptionGroup var output: OutputOptions

  func validate() throws {
    if repeats < 1 { throw ValidationError("--repeats must be at least 1") }
  }

  func run() throws {
    try runOnRanks { comm in
      configureThreads(environment: environment())
      var o = CrossValidationOptions()
      (o.folds, o.by, o.directory) = (folds.value, by, directory)
      (o.config, o.trainer) = (training.configuration().0, output.trainer(training))
      if repeats > 1 {
        let (summaries, stopped) = try crossValidateRepeatedly(o, repeats: repeats, comm: comm)
        if stopped { throw ExitCode(Trainer.exitStopped) }
        guard let summaries, !output.quiet else { return }
        print("")
        print(
          "\(repeats) repeats of \(summaries[0].folds.count)-fold cross-validation: mean ± sd over each repeat's "
            + "folds, then over all")
        for (_, label, metric) in CrossValidationSummary.metrics {
          let spreads =
            summaries.map { $0.spread(metric) } + [
              meanAndSD(summaries.flatMap { $0.folds.map { metric($0.evaluation) } })
            ]
          guard spreads.allSatisfy({ $0.mean.isFinite }) else { continue }  // no original rows
          print(pad(label, 19) + spreads.map { "\(fixed($0.mean, 4)) ± \(fixed($0.sd, 4))" }.joined(separator: "  "))
        }
        print("\nwrote \(directory)/repeat-1 ... repeat-\(repeats) (cv.csv, cv.html), \(directory)/repeats.csv")
        return
      }
      let (summary, stopped) = try crossValidate(o, comm: comm)
      if stopped { throw ExitCode(Trainer.exitStopped) }
      guard let summary, !output.quiet else { return }
      print("\n" + summary.table(by: by))
      print("\npooled confusion matrix (\(summary.pooled.rows) test rows):\n" + summary.pooled.confusionTable)
      print("\nwrote \(directory)/cv.csv, \(directory)/cv.html")
    }
  }
}

extension SplitKind: ExpressibleByArgument {}
extension FoldGroups: ExpressibleByArgument {}
extension Standardization: ExpressibleByArgument {}
extension TrainConfig.LRScaling: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--precision`: a `Precision`, or `auto`, which is bf16 where the CPU has bfloat16 units.
enum PrecisionOption: String, ExpressibleByArgument, CaseIterable {
  case fp32, bf16, auto

  /// The precision this means here (`auto` resolved for this CPU).
  var meaning: Precision { self == .auto ? Precision.preferred : Precision(rawValue: rawValue)! }

  /// `meaning`, or an error for `bf16` on a CPU without bfloat16 units.
  func resolved() throws -> Precision {
    try meaning.check()
    return meaning
  }
}

/// `--folds`: how many, or `all` (nil): one fold for each group.
struct FoldCount: ExpressibleByArgument {
  var value: Int?
  init(_ folds: Int) { value = folds }
  init?(argument: String) {
    if argument == "all" {
      value = nil
    } else if let folds = Int(argument), folds >= 2 {
      value = folds
    } else {
      return nil
    }
  }
  var defaultValueDescription: String { value.map(String.init) ?? "all" }
}
