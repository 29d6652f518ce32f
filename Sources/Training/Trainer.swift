import Base
import CSystem
import Collective
import ConvNet
import FeatureStore
import FoundationEssentials
import HDF5
import ModelFiles

#if canImport(Glibc)
  import Glibc
#endif

/// How a trainer reports and reduces: the command line's choices of presentation and transport, which do not change
/// what is computed (and are not part of the run's configuration).
public struct TrainerOptions: Sendable {
  /// Printing on rank 0 only; warnings from any rank go to standard error with the rank.
  public var quiet = false
  /// Seconds between plain progress lines on standard output when standard error is not a terminal (a log file);
  /// 0 for none. On a terminal a progress bar is drawn instead.
  public var progressEvery = 30.0
  /// TensorBoard's running loss every this many steps (0: the epochs' scalars only); rank 0 writes the event files.
  public var tensorBoardEvery = 10
  /// Gradient buckets reduced while backward runs (`trainStep`); 0: one blocking allreduce after backward.
  public var bucketBytes = Trainer.defaultBucketBytes
  /// Put before every line the trainer prints (cross-validation's `fold 2/4: `).
  public var linePrefix = ""
  /// Bytes of the feature rows each rank keeps in memory once read (nil: `Trainer.rowCacheBytes(ranks:)`; 0: every
  /// batch from the file). Without it each batch's rows cost a chunk's read and checksum apiece (32 rows in a
  /// chunk): a third of the frames model's epoch (BENCHMARKS.md).
  public var rowCacheBytes: Int?
  public init(quiet: Bool = false) { self.quiet = quiet }
}

/// Data-parallel training: every rank takes a strided share of each global batch of the epoch's permutation,
/// runs forward and backward with synchronised BatchNorm, and the flat gradients (with the step's loss, correct
/// count and flags) are summed in one allreduce; rank 0 decides the callbacks and writes the run directory.
public final class Trainer {
  public static let exitStopped: Int32 = 75
  /// No overlap by default: on the cluster in a box, overlap paid at 1 Gbit/s and below and cost 6% at 10
  /// (BENCHMARKS.md).
  public static let defaultBucketBytes = 0

  /// The default row cache of each of `ranks` ranks: together a quarter of the memory this process may use (a
  /// node's, or its job's), whatever the ranks' spread over nodes.
  public static func rowCacheBytes(ranks: Int) -> Int { memoryLimit() / 4 / max(1, ranks) }

  /// The feature file at `path` opened for training on `ranks` ranks: with `options`' row cache, or the default.
  public static func openData(_ path: String, options: TrainerOptions, ranks: Int) throws -> FeatureFile {
    try FeatureFile(path: path, rowCacheBytes: options.rowCacheBytes ?? rowCacheBytes(ranks: ranks))
  }

  let comm: Communicator
  var config: TrainConfig
  let runDir: String
  let file: FeatureFile
  let network: Network
  let adam: Adam
  var state: TrainingState
  let split: DataSplit
  var scaler: Scaler
  /// Under `--standardize speaker`, the train rows' statistics per feature, for `predict` given too few of a
  /// speaker's recordings (nil for a run an older sertrain began).
  var speakerFallback: Scaler?
  /// How the run's rows are standardised: by the scaler, or each speaker's by its own statistics
  /// (`--standardize speaker`; the scaler is then the identity). Set once the scaler is known.
  var standardiser = RowStandardiser.columns(.identity(width: 0))
  let trainRows: [Int]
  let validationRows: [Int]
  /// The keys of the train and validation rows' recordings, which the checkpoints record (rank 0's).
  var seenRecordings: [UInt64]?
  var bestWeights: (parameters: [Float], state: [Float])?
  var earlyStopping: EarlyStopping
  var reduceLR: ReduceLROnPlateau
  let options: TrainerOptions
  var quiet: Bool { options.quiet }
  /// Called on every rank after each step with (epoch, steps done in it); tests raise signals from here.
  public var onStep: ((Int, Int) -> Void)?

  /// Rank 0's lock on the run directory, held until the trainer goes.
  var lock: RunLock?
  private var board: TensorBoardWriter?

  public static let lastName = "checkpoint-last.h5"
  var isRoot: Bool { comm.rank == 0 }
  var lastPath: String { runDir + "/" + Trainer.lastName }
  var bestPath: String { runDir + "/checkpoint-best.h5" }

  /// Opens the run in `runDir`: rank 0 locks the directory, the checkpoint `resume` names (if any) and the data are
  /// read, the run is resolved (`RunPlan`) and the trainer built from it.
  /// - Parameters:
  ///   - given: the command-line settings given explicitly: on resume each one must agree with the checkpoint's
  ///     run, and `--epochs` beyond a finished run's count continues it.
  ///   - split: the rows' sides for a new run (default: drawn from the configuration), as cross-validation's folds
  ///     give them.
  ///   - replace: a new run (no `resume`) in a directory that holds one removes that run's files (`--force`);
  ///     without it such a directory is refused, saying which run is there.
  ///   - file: the data, already open (cross-validation's, whose row cache serves every fold), if it is the run's.
  public static func open(
    config: TrainConfig, runDir: String, resume: String?, comm: Communicator, options: TrainerOptions = .init(),
    given: Set<TrainConfig.Setting> = [], split: DataSplit? = nil, replace: Bool = false, file open: FeatureFile? = nil
  ) throws -> Trainer {
    let isRoot = comm.rank == 0
    // Rank 0 owns the directory: it locks it before anything is read or written there.
    var lock: RunLock?
    try comm.decidedByRoot {
      try makeDirectories(runDir)
      lock = try RunLock(runDir: runDir)
      PendingFile.removeStale(in: runDir)  // the lock is held: no live writer of this run owns one
      if resume == nil, let existing = existingRun(in: runDir) {
        guard replace else {
          throw Failure(
            "\(runDir) holds \(existing): continue it with --resume auto, replace it with --force, or choose "
              + "another --run-dir")
        }
        for file in runFiles { try? FileManager.default.removeItem(atPath: runDir + "/" + file) }
      }
    }

    var resumed: RunPlan.Resumption?
    if let resume {
      let path = resume == "auto" ? runDir + "/" + Trainer.lastName : resume
      if access(path, R_OK) == 0 {
        let checkpoint = try Checkpoint.read(path)
        do {
          resumed = try RunPlan.resolveResume(checkpoint, path: path, config: config, given: given)
        } catch { throw AgreedFailure(isRoot ? "\(error)" : nil) }
      } else if resume != "auto" {
        throw Failure("--resume \(resume): no readable checkpoint there")
      }
    }
    let data = resumed?.state.config.data ?? config.data
    if access(data, F_OK) != 0 {
      if resume == "auto" && resumed == nil && !given.contains(.data) {
        throw Failure(
          "--resume auto: \(runDir) has no checkpoint yet (its run stopped before writing one), so it does not say "
            + "which data to train on, and \(data) is not here: start it again with --data FILE")
      }
      throw Failure(
        given.contains(.data) || resumed != nil
          ? "\(data): no such feature file"
          : "no feature file: \(data) is not here. Make one with 'sertrain extract CORPUS_DIR' (audio: RAVDESS, "
            + "CREMA-D, TESS, SAVEE or a manifest), 'sertrain convert features.csv' (the seed's CSV) or 'sertrain "
            + "synth -o demo && sertrain extract demo' (a small synthetic corpus), then train with --data FILE; "
            + "'sertrain --help' lists every command")
    }
    let file = try open.flatMap { $0.path == data ? $0 : nil } ?? openData(data, options: options, ranks: comm.size)
    let identity = try DataIdentity(file)
    let initial = try (resumed == nil ? config.initFrom : nil).map { try Checkpoint.read($0) }
    let plan: RunPlan
    do {
      plan = try RunPlan(
        config: config, resumed: resumed, data: identity, recipe: file.recipe, ranks: comm.size, split: split,
        initial: initial)
    } catch { throw AgreedFailure(isRoot ? "\(error)" : nil) }
    return try Trainer(
      plan: plan, file: file, identity: identity, runDir: runDir, comm: comm, options: options, lock: lock)
  }

  /// The trainer of `plan` on `file` (whose identity is `identity`): the network built on every rank (and checked
  /// alike across them), restored from the resumed checkpoint or initialised from rank 0's, the split drawn, the
  /// class weights and the scaler fitted; rank 0 writes the configuration and the status.
  init(
    plan: RunPlan, file: FeatureFile, identity: DataIdentity, runDir: String, comm: Communicator,
    options: TrainerOptions, lock: RunLock?
  ) throws {
    (self.comm, self.runDir, self.file, self.options, self.lock) = (comm, runDir, file, options, lock)
    let isRoot = comm.rank == 0
    let resumed = plan.resumed
    var took: String?  // what --init-from's checkpoint gave
    config = plan.config
    network = try Network(
      spec: plan.spec, classes: file.classes.count, seed: config.seed,
      policy: KernelPolicy(precision: config.precision ?? .fp32), reductionTail: StepSums.reductionFloats)
    adam = Adam(count: network.trainableCount, learningRate: Float(config.scaledLearningRate))

    // Every rank must run the same model.
    var specText =
      plan.spec.encoded() + "#\(network.trainableCount)+\(network.nonTrainableCount)#\(network.precision)"
    let mine = specText
    comm.broadcast(&specText, root: 0)
    let mismatch = comm.sum(mine == specText ? 0 : 1)
    if mine != specText {
      throw Failure(
        "rank \(comm.rank): the model spec, parameter count or precision (\(network.precision)) differs from rank 0's")
    }
    if mismatch > 0 { throw Failure("rank \(comm.rank): another rank has a different model spec") }

    if let c = resumed?.checkpoint {
      network.parameters.copy(from: c.parameters.withUnsafeBufferPointer { $0 })
      network.state.copy(from: c.state.withUnsafeBufferPointer { $0 })
      if let m = c.adamM, let v = c.adamV {
        adam.m.copy(from: m.withUnsafeBufferPointer { $0 })
        adam.v.copy(from: v.withUnsafeBufferPointer { $0 })
      }
      adam.iterations = c.adamIterations
      adam.learningRate = Float(c.learningRate)
      (scaler, speakerFallback) = (c.scaler, c.speakerFallback)
      state = resumed!.state
    } else {
      scaler = .identity(width: file.width)
      state = TrainingState(config: config)
      if let c = plan.initial { took = RunPlan.initialise(network, from: c, classes: file.classes) }
    }
    split =
      try plan.split
      ?? DataSplit.make(
        file, kind: config.split, validation: config.validationFraction, test: config.testFraction, seed: config.seed,
        limitRows: config.limitRows)
    state.data = identity
    trainRows = split.train
    validationRows = split.validation
    earlyStopping = state.savedEarlyStopping ?? config.earlyStopping
    reduceLR = state.savedReduceLR ?? config.reduceLR
    state.ranks = comm.size
    if let resolved = realpath(config.data, nil) {
      state.dataPath = String(cString: resolved)
      free(resolved)
    }
    guard !trainRows.isEmpty else { throw Failure("the split left no train rows") }
    if resumed == nil, let asked = config.classWeight {
      // Rank 0 reads a weights file and says why it fails; every rank then has the same weights, or the same error.
      let weights = try comm.decidedByRoot {
        try resolveClassWeights(asked, classes: file.classes, labels: trainRows.map { file.labels[$0] })
      }
      (config.classWeights, state.config.classWeights) = (weights, weights)
    }
    try checkMonitors()
    var initialSaw: [String] = []  // this run's test and validation recordings that --init-from's model saw
    if isRoot {
      // One read of the recordings' keys: the ones this run sees, and the test ones when a checkpoint may have.
      let keys = try file.recordingKeys(of: trainRows + validationRows + (plan.initial == nil ? [] : split.test))
      seenRecordings = Set((trainRows + validationRows).map { keys[file.source[$0]]! }).sorted()
      for (name, rows) in [("test", split.test), ("validation", validationRows)] {
        let part = Set(rows.map { file.source[$0] })
        if let c = plan.initial, let seen = recordingsSeen(by: c, keys: keys.filter { part.contains($0.key) }),
          !seen.isEmpty
        {
          initialSaw.append("\(seen.count) of the \(part.count) \(name)")
        }
      }
    }
    if resumed == nil {
      try fitTrainRowsScaler()
      broadcastInitialParameters()
    }
    if config.standardizationMode == .speaker {
      // Computed again on resume: a function of the file alone, whose content the resume checked.
      var statistics = try SpeakerStatistics(file) { [comm] in $0 % comm.size == comm.rank }
      var values = statistics.values
      comm.allreduceSum(&values)
      statistics.set(values)
      standardiser = .speakers(statistics)
    } else {
      standardiser = .columns(scaler)
    }
    // The best weights travel in checkpoint-last.h5 itself; checkpoint-best.h5 is a copy for the user (older
    // checkpoints kept them only there).
    if let c = resumed?.checkpoint, earlyStopping.restoreBestWeights, earlyStopping.hasBestWeights, isRoot {
      if let p = c.bestParameters, let s = c.bestState {
        bestWeights = (p, s)
        // A crash between the two writes leaves checkpoint-best.h5 an epoch behind: write it again, its state
        // naming the epoch of the weights it holds.
        if (try? Checkpoint.read(bestPath).parameters) != p {
          var best = c
          (best.parameters, best.state, best.bestParameters, best.bestState) = (p, s, nil, nil)
          var saved = state
          saved.weightsEpoch = earlyStopping.bestEpoch + 1
          best.training = jsonText(saved)
          try best.write(to: bestPath, overwrite: true)
        }
      } else if access(bestPath, R_OK) == 0 {
        let best = try Checkpoint.read(bestPath)
        bestWeights = (best.parameters, best.state)
      }
    }
    network.statisticsReducer = comm.size > 1 ? { [comm] in comm.allreduceSum($0) } : nil
    if isRoot {
      // A resume may have changed what may change (epochs, the data's path, the precision).
      if resumed == nil || !state.finished { try writeConfig() }
      if !state.finished { try RunStatus.running.write(runDir: runDir) }
    }
    if let resumed, isRoot, !quiet {
      say("resuming from \(resumed.path): epoch \(state.epoch + 1), step \(state.step), \(comm.size) rank(s)")
      for note in resumed.notes { say(note) }
    }
    if isRoot && !quiet {
      for line in startLines() { say(line) }
      if let took, let path = config.initFrom {
        say("  starting from \(path): \(took)")
        for note in plan.initialNotes { say("  " + note) }
        if !initialSaw.isEmpty {
          say(
            "  warning: \(path) trained on \(initialSaw.joined(separator: " and ")) recordings of this run: their "
              + "accuracy overstates what the model does on new recordings")
        }
      }
    }
  }

  /// What is about to run, said before the first step: the run directory, model, data, split and ranks.
  private func startLines() -> [String] {
    let parameters = grouped(network.trainableCount + network.nonTrainableCount)
    let sizes = split.sizes
    var lines = [
      "run \(runDir): model \(network.spec.name) (\(parameters) parameters), \(config.data): \(file.rowCount) rows x "
        + "\(file.width), split by \(config.split.rawValue): train \(sizes[0]), val \(sizes[1]), test \(sizes[2]); "
        + "\(comm.size) rank(s), batch \(config.batchSize), up to \(config.epochs) epochs of \(stepsPerEpoch) steps"
        + (network.precision == .fp32 ? "" : "; \(network.precision) convolutions")
    ]
    if sizes[3] > 0 { lines.append("  --limit-rows: \(sizes[3]) rows left out (for trying things out)") }
    let (rowBytes, cacheBytes) = (file.rowCount * file.width * MemoryLayout<Float>.size, file.features.chunkCacheBytes)
    if options.rowCacheBytes != 0 && cacheBytes < rowBytes {
      lines.append(
        "  note: the rows (\(rowBytes >> 20) MiB) exceed the row cache (\(cacheBytes >> 20) MiB a rank): batches not "
          + "in it are read from the file (--row-cache-mb sets it)")
    }
    if file.leaksAcrossSplits && config.split != .random {
      lines.append(
        "  warning: \(config.data) does not group its rows by recording (converted without --rows-per-recording): "
          + "augmented copies of one recording can land on both sides of the split; convert again with "
          + "--rows-per-recording 4 for the seed's features.csv")
    }
    return lines
  }

  /// A monitor no metric produces is an error (the seed's `val_acc` silently disabled both callbacks in Keras).
  private func checkMonitors() throws {
    var available = ["loss", "accuracy"]
    if !validationRows.isEmpty { available += ["val_loss", "val_accuracy"] }
    for (name, monitor) in [("early stopping", earlyStopping.monitor), ("learning-rate reduction", reduceLR.monitor)]
    where !available.contains(monitor) {
      // The same verdict on every rank (the same split): no abort, rank 0 says why.
      if monitor.hasPrefix("val_") && validationRows.isEmpty {
        throw AgreedFailure(
          comm.rank == 0
            ? "the split has no validation rows (--val-fraction \(config.validationFraction) of \(file.rowCount) rows), "
              + "so \(name) cannot monitor '\(monitor)': raise --val-fraction, or --monitor loss" : nil)
      }
      throw AgreedFailure(
        comm.rank == 0
          ? "\(name) monitors '\(monitor)', which no metric produces (available: \(available.joined(separator: ", ")))"
          : nil)
    }
    if EarlyStopping.increasing(earlyStopping.monitor, earlyStopping.mode) == nil {
      throw Failure("early stopping cannot tell which way '\(earlyStopping.monitor)' improves: give a mode")
    }
  }

  /// Per-column mean and population deviation of the train rows (each rank sums a strided share; the sums are
  /// reduced), as scikit-learn's StandardScaler computes them; a zero deviation becomes 1.
  /// With `--standardize feature`, one mean and deviation per feature over its columns. `none` and `speaker` leave
  /// the identity; `speaker` keeps the feature statistics as its fallback.
  private func fitTrainRowsScaler() throws {
    let mode = config.standardizationMode
    if mode == .speaker, let features = file.recipe.columnFeatures, file.width == file.recipe.width {
      speakerFallback = try fitScaler(file, rows: trainRows, features: features, comm: comm)
    }
    guard mode == .column || mode == .feature else { return }
    let features = mode == .feature ? file.recipe.columnFeatures : nil
    if mode == .feature && (features == nil || file.width != file.recipe.width) {
      throw Failure(
        config.data,
        "--standardize feature needs rows of whole frames (\(file.recipe.featuresPerFrame) features each); this "
          + "file's are \(file.width) wide: use --standardize column")
    }
    scaler = try fitScaler(file, rows: trainRows, features: features, comm: comm)
  }

  /// Rank 0's initial parameters go to every rank, which checks them by checksum.
  private func broadcastInitialParameters() {
    guard comm.size > 1 else { return }
    comm.broadcast(
      UnsafeMutableRawBufferPointer(start: network.parameters.pointer, count: network.trainableCount * 4), root: 0)
    comm.broadcast(
      UnsafeMutableRawBufferPointer(start: network.state.pointer, count: network.nonTrainableCount * 4), root: 0)
    var h = FNV1a()
    for i in 0..<network.trainableCount { h.add(network.parameters.pointer[i].bitPattern) }
    let sum = h.value
    var root = sum
    comm.broadcast(&root, root: 0)
    let bad = comm.sum(sum == root ? 0 : 1)
    if bad > 0 {
      printError("rank \(comm.rank): parameter checksum \(sum) vs rank 0's \(root) after the broadcast")
      comm.abort(code: 1)
    }
  }

  private func say(_ line: String) { Output.shared.line(options.linePrefix + line) }

  // MARK: Data

  /// Reads `rows` (any order) standardised into `x`.
  private func load(_ rows: [Int], into x: UnsafeMutableBufferPointer<Float>) throws {
    try file.readRows(at: rows, into: x)
    standardiser.standardise(x, rows: rows)
  }

  /// The epoch's order of the train rows: a permutation drawn from (seed, epoch) alone, whatever the ranks.
  func permutation(epoch: Int) -> [Int] {
    var rng = RandomStream(seed: config.seed, stream: [UInt64(epoch), 0xE90C])
    return rng.permutation(trainRows.count).map { trainRows[$0] }
  }

  var stepsPerEpoch: Int { config.steps(trainRows: trainRows.count) }

  // MARK: The loop

  /// Trains to the end (0), or until a stop signal (checkpoint written, `exitStopped`); then releases the run
  /// directory's lock.
  public func run() throws -> Int32 {
    defer {
      // Every line out (or given up on, if nothing reads them), and the run directory free again.
      Output.shared.flush(timeout: 5)
      lock = nil
    }
    sertrain_install_stop_handlers()
    if state.finished {
      if isRoot && !quiet {
        say(
          "the run in \(runDir) already finished (epoch \(state.epoch) of \(config.epochs)): nothing to do; --epochs N "
            + "with N > \(config.epochs) continues it")
      }
      // Only the status, for `supervise` (a requeued job whose run had finished ends as finished).
      if isRoot { try RunStatus.finished.write(runDir: runDir) }
      return 0
    }
    do {
      return try train()
    } catch {
      // Scripts that read the status must not think a dead run alive.
      if isRoot { try? RunStatus.failed.write(runDir: runDir, reason: "\(error)") }
      throw error
    }
  }

  /// The name of the signal that asked this rank to stop, for messages.
  private var stopSignal: String {
    switch sertrain_stop_requested() {
    case SIGINT: return "SIGINT (Ctrl-C)"
    case SIGTERM: return "SIGTERM"
    case SIGUSR1: return "SIGUSR1"
    default: return "a signal"
    }
  }

  private func train() throws -> Int32 {
    if isRoot { board = try TensorBoardWriter(runDir: runDir, everySteps: options.tensorBoardEvery) }
    defer { board?.flush() }
    // A stop that came while the data and model were loading: nothing new to save.
    if comm.sum(sertrain_stop_requested() != 0 ? 1 : 0) > 0 {
      if isRoot {
        try RunStatus.stopped.write(runDir: runDir)
        if !quiet {
          let saved = access(lastPath, R_OK) == 0 ? "\(lastPath) is unchanged" : "no checkpoint was needed"
          say("stopped by \(stopSignal) before training started: \(saved); resume with --resume auto (exit 75)")
        }
      }
      return Trainer.exitStopped
    }
    let b = config.batchSize
    let w = file.width
    let restoredEpoch = state.epoch
    let lossWeights = config.classWeights?.map(Float.init)
    var x = [Float](repeating: 0, count: b * w)
    var labels = [Int32](repeating: 0, count: b)
    while state.epoch < config.epochs {
      let epoch = state.epoch
      let order = permutation(epoch: epoch)
      let bar =
        isRoot && !quiet
        ? ProgressBar(label: "\(options.linePrefix)epoch \(epoch + 1)/\(config.epochs)", unit: "samples") : nil
      let lines = isRoot && !quiet && !(bar?.enabled ?? true) && options.progressEvery > 0
      var lastLine = monotonicSeconds()
      var t0 = monotonicSeconds()
      while state.step < stepsPerEpoch {
        let step = state.step
        let global = Array(order[(step * b)..<min((step + 1) * b, order.count)])
        let local = comm.share(global)
        if !local.isEmpty {
          try x.withUnsafeMutableBufferPointer { try load(local, into: $0) }
          for (i, r) in local.enumerated() { labels[i] = file.labels[r] }
        }
        // Dropout: one seed per step, each row's mask keyed by its index in the data, whatever rank holds it.
        var stream = RandomStream(seed: config.seed, stream: [UInt64(epoch), UInt64(step)])
        let sums = x.withUnsafeBufferPointer { x in
          labels.withUnsafeBufferPointer {
            trainStep(
              network, comm: comm, x: x.baseAddress!, labels: UnsafeBufferPointer(rebasing: $0[0..<local.count]),
              globalRows: global.count, dropoutSeed: stream.next(), dropoutKeys: local.map { UInt64($0) },
              stop: sertrain_stop_requested() != 0,
              bucketBytes: options.bucketBytes, classWeights: lossWeights)
          }
        }
        if sums.nonFinite {
          let saved =
            access(lastPath, R_OK) == 0 ? "the last checkpoint, \(lastPath), is intact" : "no checkpoint was written"
          throw Failure(
            "the loss is not finite at epoch \(epoch + 1), step \(step + 1) (NaN or infinity in the data or a diverging "
              + "model: try a lower --learning-rate); \(saved)")
        }
        // During warmup the step's rate comes from the schedule; Adam keeps the target (ReduceLROnPlateau's).
        let target = adam.learningRate
        adam.learningRate = Float(
          config.learningRate(step: epoch * stepsPerEpoch + step, stepsPerEpoch: stepsPerEpoch, target: Double(target)))
        adam.update(network.parameters, network.gradients)
        adam.learningRate = target
        state.epochLoss += sums.loss
        state.epochCorrect += sums.correct
        state.epochSamples += sums.rows
        state.step += 1
        let now = monotonicSeconds()
        state.epochSeconds += now - t0
        t0 = now
        // The running loss and accuracy, as Keras's bar shows them (formatted only where something shows them).
        func running() -> String {
          "loss \(fixed(state.epochLoss / max(state.epochSamples, 1), 4)) - accuracy "
            + fixed(state.epochCorrect / max(state.epochSamples, 1), 4)
        }
        if let bar, bar.enabled {
          bar.update(
            fraction: Double(state.step) / Double(stepsPerEpoch), count: Int(state.epochSamples), detail: running())
        }
        // A log file gets a line after the first step (the run is alive and how fast), then every progressEvery.
        let first = state.step == 1 && epoch == restoredEpoch
        if lines && (first || now - lastLine >= options.progressEvery) && state.step < stepsPerEpoch {
          lastLine = now
          say(
            "  epoch \(epoch + 1)/\(config.epochs), step \(state.step)/\(stepsPerEpoch): "
              + "\(fixed(state.epochSamples / max(state.epochSeconds, 1e-9), 1)) samples/s, \(running())")
        }
        board?.step(epoch * stepsPerEpoch + state.step, loss: state.epochLoss / max(state.epochSamples, 1))
        onStep?(epoch, state.step)
        if sums.stop {
          bar?.finish()
          try checkpoint(best: false, status: .stopped)
          if isRoot && !quiet {
            say(
              "stopped by \(stopSignal) at epoch \(epoch + 1), step \(state.step): \(lastPath) written; resume with "
                + "--resume auto (exit 75"
                + (comm.size > 1
                  ? "; the launcher's message that the job was aborted with exit code 75 follows: the stop was clean)"
                  : ")"))
          }
          return Trainer.exitStopped
        }
      }
      bar?.finish()
      try endEpoch(epoch)
      if state.finished { break }
    }
    if !state.finished {
      state.finished = true
      try finish()
    }
    return 0
  }

  /// Validation, callbacks (decided on rank 0, broadcast), checkpoints and history.
  private func endEpoch(_ epoch: Int) throws {
    averageMovingStatistics()
    let (valLoss, valAccuracy) = try validate()
    let row = HistoryRow(
      epoch: epoch + 1, loss: state.epochLoss / max(state.epochSamples, 1),
      accuracy: state.epochCorrect / max(state.epochSamples, 1), valLoss: valLoss, valAccuracy: valAccuracy,
      learningRate: config.learningRate(  // the rate of the epoch's last step (warmup's, or Adam's)
        step: (epoch + 1) * stepsPerEpoch - 1, stepsPerEpoch: stepsPerEpoch, target: Double(adam.learningRate)),
      seconds: state.epochSeconds, end: unixTime())
    // Rank 0 decides: [stop, new learning rate (or -1), keep as best weights, new best checkpoint].
    var decision: (Double, Double, Double, Double) = (0, -1, 0, 0)
    if isRoot {
      let logs = row.metrics
      let es = earlyStopping.onEpochEnd(epoch: epoch, value: logs[earlyStopping.monitor])
      let newLR = reduceLR.onEpochEnd(value: logs[reduceLR.monitor], learningRate: adam.learningRate)
      var improved = false
      if let v = logs[earlyStopping.monitor],
        let up = EarlyStopping.increasing(earlyStopping.monitor, earlyStopping.mode)
      {
        improved = state.bestValue.map { up ? v > $0 : v < $0 } ?? true
        if improved {
          state.bestValue = v
          state.bestEpoch = epoch + 1
        }
      }
      // checkpoint-best holds the weights EarlyStopping would restore (its min_delta and baseline rules), or
      // with restoring off, the best monitored value so far.
      let best = earlyStopping.restoreBestWeights ? es.captureWeights : improved
      decision = (es.stop ? 1 : 0, newLR.map(Double.init) ?? -1, es.captureWeights ? 1 : 0, best ? 1 : 0)
    }
    comm.broadcast(&decision, root: 0)
    state.history.append(row)
    board?.epoch(row)
    if isRoot && !quiet { say(epochLine(row, samples: state.epochSamples)) }
    if decision.1 >= 0 {
      adam.learningRate = Float(decision.1)
      if isRoot && !quiet { say("  reducing the learning rate to \(adam.learningRate)") }
    }
    if decision.2 > 0 && isRoot { bestWeights = (network.parameters.array, network.state.array) }
    state.epoch = epoch + 1
    state.step = 0
    state.weightsEpoch = nil  // the weights are this epoch's (until early stopping restores the best)
    (state.epochLoss, state.epochCorrect, state.epochSamples, state.epochSeconds) = (0, 0, 0, 0)
    if decision.0 > 0 {
      if isRoot && !quiet { say("early stopping at epoch \(epoch + 1)") }
      state.finished = true
      try finish()
      return
    }
    try checkpoint(best: decision.3 > 0)
  }

  /// End of training: restore the best weights (Keras's EarlyStopping does at train end) and write the final
  /// checkpoint.
  private func finish() throws {
    state.finished = true
    if earlyStopping.restoreBestWeights, let best = bestWeights, isRoot {
      network.parameters.copy(from: best.parameters.withUnsafeBufferPointer { $0 })
      network.state.copy(from: best.state.withUnsafeBufferPointer { $0 })
      if !quiet { say("restored the weights of the best epoch, \(earlyStopping.bestEpoch + 1)") }
      state.weightsEpoch = earlyStopping.bestEpoch + 1
    }
    try checkpoint(best: false, status: .finished)
  }

  /// Synchronised BatchNorm keeps the moving statistics equal on every rank; averaging guards against drift.
  private func averageMovingStatistics() {
    guard comm.size > 1 else { return }
    let s = network.state
    comm.allreduceSum(UnsafeMutableBufferPointer(start: s.pointer, count: network.nonTrainableCount))
    let inv = 1 / Float(comm.size)
    for i in 0..<network.nonTrainableCount { s.pointer[i] *= inv }
  }

  /// Loss and accuracy over the validation rows: each rank its strided share, sums and counts reduced.
  func validate() throws -> (Double?, Double?) {
    guard !validationRows.isEmpty else { return (nil, nil) }
    var sums = [0.0, 0.0, 0.0]
    try file.forEachPart(of: comm.share(validationRows), size: config.batchSize) { rows, x in
      standardiser.standardise(x, rows: rows)
      _ = network.forward(x.baseAddress!, batch: rows.count, training: false)
      let (loss, correct) = rows.map { file.labels[$0] }.withUnsafeBufferPointer { network.loss(labels: $0) }
      sums[0] += loss
      sums[1] += Double(correct)
      sums[2] += Double(rows.count)
    }
    comm.allreduceSum(&sums)
    return (sums[0] / sums[2], sums[1] / sums[2])
  }

  /// checkpoint-last (and checkpoint-best) by rank 0, atomically; history.csv beside them, and the run's status
  /// when it changes, all before the ranks leave the barrier (a rank that exits first may get the others killed).
  private func checkpoint(best: Bool, status: RunStatus? = nil) throws {
    guard isRoot else {
      comm.barrier()
      return
    }
    defer { comm.barrier() }
    var saved = state
    saved.weightsEpoch = saved.weightsEpoch ?? saved.epoch
    saved.callbacks = (earlyStopping, reduceLR)
    saved.savedAt = unixTime()
    var c = Checkpoint(network: network, classNames: file.classes, scaler: scaler)
    c.adamM = adam.m.array
    c.adamV = adam.v.array
    c.adamIterations = adam.iterations
    c.learningRate = Double(adam.learningRate)
    c.training = jsonText(saved)
    c.split = split.membership
    c.seenRecordings = seenRecordings
    c.recipe = file.recipe
    c.standardization = config.standardizationMode
    c.speakerFallback = speakerFallback
    if earlyStopping.restoreBestWeights, let bestWeights { (c.bestParameters, c.bestState) = bestWeights }
    try c.write(to: lastPath, overwrite: true)
    if best {
      faultPoint("between-checkpoints")
      // checkpoint-best.h5: the best epoch's weights as a checkpoint of their own (written after last, which holds
      // them too, so a crash between the two writes loses nothing).
      c.bestParameters = nil
      c.bestState = nil
      try c.write(to: bestPath, overwrite: true)
    }
    if status == .finished { faultPoint("final-checkpoint") }  // the run's weights final, its status not yet
    try writeHistory()
    try status?.write(runDir: runDir)
  }

  private func writeHistory() throws {
    var text = "epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds,end_time\n"
    func f(_ v: Double?) -> String { v.map { "\($0)" } ?? "" }
    for r in state.history {
      text +=
        "\(r.epoch),\(r.loss),\(r.accuracy),\(f(r.valLoss)),\(f(r.valAccuracy)),\(Float(r.learningRate)),"
        + "\(fixed(r.seconds, 3)),\(r.end.map { fixed($0, 3) } ?? "")\n"
    }
    try writeTextAtomically(text, to: runDir + "/history.csv")
  }

  private func writeConfig() throws {
    try writeTextAtomically(jsonText(config, pretty: true) + "\n", to: runDir + "/config.json")
  }

  /// `samples`: the rows the epoch trained on (fewer than the train split's with --steps-per-epoch).
  func epochLine(_ r: HistoryRow, samples: Double) -> String {
    var s = "Epoch \(r.epoch)/\(config.epochs): loss \(fixed(r.loss, 4)) - accuracy \(fixed(r.accuracy, 4))"
    if let v = r.valLoss, let a = r.valAccuracy { s += " - val_loss \(fixed(v, 4)) - val_accuracy \(fixed(a, 4))" }
    s += " - learning_rate \(Float(r.learningRate)) - \(fixed(r.seconds, 1)) s"
    if r.seconds > 0 { s += " (\(Int(samples / r.seconds)) samples/s)" }
    return s
  }
}

extension TrainingState {
  /// The callbacks' own state, saved beside the configuration.
  var callbacks: (EarlyStopping, ReduceLROnPlateau)? {
    get { savedEarlyStopping.flatMap { e in savedReduceLR.map { (e, $0) } } }
    set {
      savedEarlyStopping = newValue?.0
      savedReduceLR = newValue?.1
    }
  }
}

/// Fault injection for tests: `SERTRAIN_FAULT=NAME:N` kills the process (SIGKILL) the Nth time it reaches the
/// point NAME. Unset, nothing happens.
func faultPoint(_ name: String) {
  guard let spec = environment()["SERTRAIN_FAULT"], spec.hasPrefix(name + ":"),
    let n = Int(spec.dropFirst(name.count + 1))
  else { return }
  faultCounts[name, default: 0] += 1
  if faultCounts[name] == n { raise(SIGKILL) }
}

nonisolated(unsafe) private var faultCounts: [String: Int] = [:]
