import ArgumentParser
import Collective
import ConvNet
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct Train: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Train the model on a feature file, on one process or data-parallel under mpirun/srun.",
    discussion: """
      Every rank takes a strided share of each global batch; gradients are summed in one allreduce per step and
      BatchNorm statistics are synchronised, so the number of ranks changes only the order of summation.
      SIGUSR1 or SIGTERM writes a checkpoint at the next step and exits with 75; --resume auto continues.
      """)

  @Option(help: "The feature file.")
  var data = "features.h5"

  @Option(help: "The model: seed, tiny, or a JSON spec.")
  var model = "seed"

  @Option(help: "Epochs (the seed's 50).")
  var epochs = 50

  @Option(help: "The global batch size, split across ranks.")
  var batchSize = 64

  @Option(help: "Adam's learning rate.")
  var learningRate = 1e-3

  @Option(help: "How rows are split: recording (default), speaker, or random (the seed's, which leaks).")
  var split = SplitKind.recording

  @Option(help: "Fraction of rows for validation (early stopping and learning-rate decisions).")
  var valFraction = 0.1

  @Option(help: "Fraction of rows held out for testing (sertrain evaluate --split test).")
  var testFraction = 0.1

  @Option(help: "The run directory (default runs/<date-time>).")
  var runDir: String?

  @Option(help: "Continue a run: 'auto' (the run directory's last checkpoint, if any) or a checkpoint path.")
  var resume: String?

  @Option(help: "The seed of every random choice (initial weights, split, batch order).")
  var seed: UInt64 = 0

  @Option(help: "The metric both callbacks monitor (Keras's name).")
  var monitor = "val_accuracy"

  @Option(help: "EarlyStopping patience in epochs (the seed's 5).")
  var patience = 5

  @Option(help: "ReduceLROnPlateau patience in epochs (the seed's 3).")
  var lrPatience = 3

  @Option(help: "ReduceLROnPlateau factor (the seed's 0.5).")
  var lrFactor = 0.5

  @Option(help: "ReduceLROnPlateau minimum learning rate (the seed's 1e-5).")
  var minLR = 1e-5

  @Option(help: "ReduceLROnPlateau cooldown in epochs.")
  var cooldown = 0

  @Flag(help: "Keep the last weights instead of restoring the best epoch's at the end.")
  var noRestoreBestWeights = false

  @Flag(help: "Do not standardise the features.")
  var noStandardize = false

  @Flag(name: .shortAndLong, help: "Print only errors.")
  var quiet = false

  func validate() throws {
    if epochs < 1 { throw ValidationError("--epochs must be at least 1") }
    if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
    if !(learningRate > 0) { throw ValidationError("--learning-rate must be positive") }
    if valFraction < 0 || testFraction < 0 || valFraction + testFraction >= 1 {
      throw ValidationError("--val-fraction and --test-fraction must be >= 0 and leave rows for training")
    }
    if !(lrFactor > 0 && lrFactor < 1) { throw ValidationError("--lr-factor must be in (0, 1)") }
  }

  func run() throws {
    try runOnRanks { comm in
      let env = environment()
      configureBLASThreads(environment: env)
      var config = TrainConfig()
      config.data = data
      config.model = model
      config.epochs = epochs
      config.batchSize = batchSize
      config.learningRate = learningRate
      config.split = split
      config.validationFraction = valFraction
      config.testFraction = testFraction
      config.seed = seed
      config.standardize = !noStandardize
      config.earlyStopping.monitor = monitor
      config.earlyStopping.patience = patience
      config.earlyStopping.restoreBestWeights = !noRestoreBestWeights
      config.reduceLR.monitor = monitor
      config.reduceLR.patience = lrPatience
      config.reduceLR.factor = lrFactor
      config.reduceLR.minLR = minLR
      config.reduceLR.cooldown = cooldown
      var dir = runDir ?? defaultRunDirectory(resume: resume)
      comm.broadcast(&dir, root: 0)  // one directory for every rank, whatever their clocks say
      let trainer = try Trainer(config: config, runDir: dir, resume: resume, comm: comm, quiet: quiet)
      let code = try trainer.run()
      if code != 0 { throw ExitCode(code) }
      // The final weights on the held-out rows, and the report.
      if let (path, evaluation) = try makeReport(runDir: dir, data: nil, split: nil, comm: comm), !quiet {
        if let e = evaluation {
          print(
            "\n\(e.split) split, \(e.rows) rows: loss \(fixed(e.loss, 4)), accuracy \(fixed(e.accuracy, 4))\n\n\(e.report)"
          )
        }
        print("report: \(path)")
      }
    }
  }
}

/// `runs/<date-time>`, or with `--resume auto` the newest run that has a last checkpoint.
func defaultRunDirectory(resume: String?) -> String {
  if resume == "auto", let d = opendir("runs") {
    defer { closedir(d) }
    var newest: String?
    while let e = readdir(d) {
      let name = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
      if name.hasPrefix(".") || access("runs/\(name)/checkpoint-last.h5", R_OK) != 0 { continue }
      if newest == nil || name > newest! { newest = name }
    }
    if let newest { return "runs/\(newest)" }
  }
  var t = time(nil)
  var tm = tm()
  localtime_r(&t, &tm)
  var buf = [CChar](repeating: 0, count: 32)
  strftime(&buf, buf.count, "%Y%m%d-%H%M%S", &tm)
  return "runs/" + String(cString: buf)
}

extension SplitKind: ExpressibleByArgument {}
