import AudioFeatures
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

/// Everything a training run is told; saved in `config.json` and in every checkpoint.
public struct TrainConfig: Codable, Equatable, Sendable {
  /// What a user sets, one per command-line flag (`flag`: `--` and the name in kebab case, as swift-argument-parser
  /// names an option after its property): the CLI records which were given, a resume compares them with the run's,
  /// and messages name them by `flag`. One table, so a misspelt flag cannot silently disable a resume check
  /// (`testEverySettingIsAFlag`).
  public enum Setting: String, CaseIterable, Sendable {
    case data, model, epochs, batchSize, learningRate, split, valFraction, testFraction, seed, monitor, patience
    case lrPatience, lrFactor, minLR, cooldown, noRestoreBestWeights, noStandardize, standardize, classWeight
    case limitRows, stepsPerEpoch, lrScaling, baseBatch, warmupEpochs, precision

    public var flag: String {
      var out = "--"
      var previous: Character = "-"
      for c in rawValue {
        if c.isUppercase && previous.isLowercase { out.append("-") }
        out.append(Character(c.lowercased()))
        previous = c
      }
      return out
    }

    /// The setting in `c` as a resume compares and shows it; nil for what may change on resume: the epoch budget,
    /// where the data lives (its content is checked apart) and the precision (the weights are float either way).
    func shown(_ c: TrainConfig) -> String? {
      switch self {
      case .data, .epochs, .precision: return nil
      case .model: return c.model
      case .batchSize: return "\(c.batchSize)"
      case .learningRate: return "\(c.learningRate)"
      case .split: return c.split.rawValue
      case .valFraction: return "\(c.validationFraction)"
      case .testFraction: return "\(c.testFraction)"
      case .seed: return "\(c.seed)"
      case .monitor: return c.earlyStopping.monitor
      case .patience: return "\(c.earlyStopping.patience)"
      case .lrPatience: return "\(c.reduceLR.patience)"
      case .lrFactor: return "\(c.reduceLR.factor)"
      case .minLR: return "\(c.reduceLR.minLR)"
      case .cooldown: return "\(c.reduceLR.cooldown)"
      case .noRestoreBestWeights: return c.earlyStopping.restoreBestWeights ? "off" : "on"
      case .noStandardize: return c.standardize ? "off" : "on"
      case .standardize: return c.standardizationMode.rawValue
      case .classWeight: return c.classWeight ?? "none"
      case .limitRows: return c.limitRows.map(String.init) ?? "all"
      case .stepsPerEpoch: return c.stepsPerEpoch.map(String.init) ?? "all"
      case .lrScaling: return (c.lrScaling ?? .none).rawValue
      case .baseBatch: return "\(c.baseBatch ?? 64)"
      case .warmupEpochs: return "\(c.warmupEpochs ?? 0)"
      }
    }
  }

  public var data = "features.h5"
  /// A preset (`seed`, `small`, `tiny`, `frames`), a spec file, or `auto`: the data's layout decides.
  public var model = TrainConfig.automaticModel
  public var epochs = 50
  public var batchSize = 64
  public var learningRate = 1e-3
  public var split = SplitKind.recording
  public var validationFraction = 0.1
  public var testFraction = 0.1
  public var seed: UInt64 = 0
  /// Standardise the features (the seed's StandardScaler), fitted on the train rows.
  public var standardize = true
  /// How (`--standardize`); nil in runs from before it existed: `column`, or `none` without `standardize`.
  public var standardization: Standardization?
  public var standardizationMode: Standardization { standardization ?? (standardize ? .column : .none) }
  public var earlyStopping = EarlyStopping()
  public var reduceLR = ReduceLROnPlateau()
  /// For trying things out: at most this many rows (whole recordings, drawn from the seed), and at most this many
  /// steps per epoch (Keras's `steps_per_epoch`). Nil: all.
  public var limitRows: Int?
  public var stepsPerEpoch: Int?
  /// Large global batches (Goyal et al. 2017): the learning rate scaled by `batchSize / baseBatch` (linear) or its
  /// square root, reached by a linear warmup from `learningRate` over `warmupEpochs`, step by step. Nil in runs
  /// from before these existed: none, 64, 0.
  public var lrScaling: LRScaling?
  public var baseBatch: Int?
  public var warmupEpochs: Int?
  /// The build that started the run (`buildIdentity`); nil in runs from before it was recorded.
  public var builtBy: String?
  /// `--class-weight` as given (`balanced` or a file of `class,weight` lines), and the weights it resolved to for
  /// the run's classes (in class order), which the loss uses as Keras's `class_weight` does.
  public var classWeight: String?
  public var classWeights: [Double]?
  /// The arithmetic of the convolutions (`--precision`; nil, in runs from before it existed: fp32). May change on
  /// resume: the weights are float either way.
  public var precision: Precision?
  public init() {}

  public enum LRScaling: String, Codable, Sendable, CaseIterable {
    case none, linear, sqrt
  }

  /// The global batch over the batch `learningRate` is meant for.
  private var batchRatio: Double { Double(batchSize) / Double(baseBatch ?? 64) }

  /// The learning rate after warmup (before ReduceLROnPlateau's reductions).
  public var scaledLearningRate: Double {
    let ratio = batchRatio
    switch lrScaling ?? .none {
    case .none: return learningRate
    case .linear: return learningRate * ratio
    case .sqrt: return learningRate * ratio.squareRoot()
    }
  }

  /// With `lrScaling`, BatchNorm's moving averages keep their horizon in samples: a batch k times `baseBatch` takes
  /// k times fewer steps, so each step's momentum becomes momentum^k (0.99 at 64 rows is 0.9606 at 256). Without it
  /// the moving statistics of a large-batch run lag far behind the batches' after a few epochs, and validation,
  /// which uses them, sees another network. The checkpoint's spec records the momentum used.
  public func scalingMomentum(_ spec: ModelSpec) -> ModelSpec {
    guard (lrScaling ?? .none) != .none else { return spec }
    var s = spec
    for i in s.layers.indices where s.layers[i].type == .batchNormalization {
      s.layers[i].momentum = pow(s.layers[i].momentum ?? 0.99, batchRatio)
    }
    return s
  }

  /// The learning rate of global step `step` (0-based, counted over epochs of `stepsPerEpoch`) when `target` is
  /// the rate after warmup: from `learningRate` up to `target` in equal increments, reaching it at the last step
  /// of the warmup epochs; `target` after them.
  public func learningRate(step: Int, stepsPerEpoch: Int, target: Double) -> Double {
    let warmup = (warmupEpochs ?? 0) * stepsPerEpoch
    guard step < warmup else { return target }
    return learningRate + (target - learningRate) * Double(step + 1) / Double(warmup)
  }
}

extension TrainConfig {
  /// What makes this configuration impossible, one sentence each in the command line's words (empty: none). The
  /// command line checks what it is given; a checkpoint's saved configuration is checked the same way on resume.
  public var problems: [String] {
    var out: [String] = []
    func check(_ ok: Bool, _ problem: String) { if !ok { out.append(problem) } }
    check(epochs >= 1 && epochs <= 1_000_000, "--epochs must be from 1 to 1000000")
    check(batchSize >= 1 && batchSize <= 1 << 24, "--batch-size must be from 1 to 16777216")
    check(learningRate > 0 && learningRate.isFinite, "--learning-rate must be positive and finite")
    check(
      validationFraction >= 0 && testFraction >= 0 && validationFraction + testFraction < 1,
      "--val-fraction and --test-fraction must be >= 0 and leave rows for training")
    check(reduceLR.factor > 0 && reduceLR.factor < 1, "--lr-factor must be in (0, 1)")
    check(reduceLR.minLR >= 0 && reduceLR.minLR.isFinite, "--min-lr must be 0 or more and finite")
    check(
      earlyStopping.patience >= 0 && reduceLR.patience >= 0 && reduceLR.cooldown >= 0,
      "--patience, --lr-patience and --cooldown must be 0 or more")
    check(earlyStopping.minDelta.isFinite && reduceLR.minDelta.isFinite, "min_delta must be finite")
    check((limitRows ?? 1) >= 1 && (stepsPerEpoch ?? 1) >= 1, "--limit-rows and --steps-per-epoch must be at least 1")
    check(
      (baseBatch ?? 1) >= 1 && (warmupEpochs ?? 0) >= 0,
      "--base-batch must be at least 1 and --warmup-epochs at least 0")
    if (warmupEpochs ?? 0) >= epochs && epochs >= 1 {
      out.append(
        "--warmup-epochs \(warmupEpochs!) leaves no epoch at the scaled learning rate of --epochs \(epochs)")
    }
    return out
  }

  /// `model` when `--model` is not given: the data's layout chooses (`defaultModel`).
  public static let automaticModel = "auto"

  /// The model for rows of this recipe: `frames` for the frames layout, the seed's network for the others.
  public static func defaultModel(for recipe: FeatureRecipe) -> String { recipe.layout == .frames ? "frames" : "seed" }

  /// A preset sized for the rows of `file`: the flat presets read the whole row as one channel; `frames` reads it
  /// as frames of features and needs the frames layout.
  public static func preset(_ name: String, for file: FeatureFile) throws -> ModelSpec {
    let recipe = file.recipe
    guard name == "frames" else {
      var spec = try ModelSpec.load(name)
      (spec.inputLength, spec.inputChannels) = (file.width, 1)
      return spec
    }
    guard recipe.layout == .frames, recipe.columnFeatures != nil, recipe.width == file.width else {
      throw Failure(
        file.path,
        "the frames model reads rows in the frames layout (\(recipe.framesPerRow) frames x "
          + "\(recipe.featuresPerFrame) features side by side); this file's rows are in the \(recipe.layout.rawValue) "
          + "layout, \(file.width) wide. Extract the corpus again (frames is extract's default layout), or choose "
          + "another --model (seed, small, tiny)")
    }
    return .frames(frames: recipe.framesPerRow, features: recipe.featuresPerFrame)
  }
}

/// Keras's `class_weight` from `--class-weight`, one weight per class in class order: `balanced` is scikit-learn's
/// (the train rows over the classes times the class's train rows; a class with none gets 1), a file holds
/// `class,weight` lines (every class once, weights finite and not negative; `#` starts a comment). The ranks compute
/// the same weights from the same split, so they do not depend on the rank count.
func resolveClassWeights(_ asked: String, classes: [String], labels: [Int32]) throws -> [Double] {
  if asked == "balanced" {
    var counts = [Double](repeating: 0, count: classes.count)
    for l in labels { counts[Int(l)] += 1 }
    return counts.map { $0 > 0 ? Double(labels.count) / (Double(classes.count) * $0) : 1 }
  }
  guard let bytes = try? readFileBytes(asked) else {
    throw Failure("--class-weight \(asked): neither 'balanced' nor a readable file of class,weight lines")
  }
  var weights: [String: Double] = [:]
  for (n, raw) in String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
    .enumerated()
  {
    let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
    let cells = line.split(whereSeparator: { $0 == "," || $0 == "\t" || $0 == " " }).map(String.init)
    if cells.isEmpty || (n == 0 && cells.first == "class") { continue }
    guard cells.count == 2, let w = Double(cells[1]), w.isFinite, w >= 0 else {
      throw Failure(asked, "line \(n + 1): expected class,weight with a finite weight >= 0, got '\(line)'")
    }
    guard classes.contains(cells[0]) else {
      throw Failure(
        asked, "line \(n + 1): '\(cells[0])' is not a class of the data (\(classes.joined(separator: ", ")))")
    }
    guard weights.updateValue(w, forKey: cells[0]) == nil else {
      throw Failure(asked, "line \(n + 1): '\(cells[0])' is given twice")
    }
  }
  let missing = classes.filter { weights[$0] == nil }
  guard missing.isEmpty else { throw Failure(asked, "no weight for \(missing.joined(separator: ", "))") }
  return classes.map { weights[$0]! }
}

/// One epoch's metrics, as Keras's History records them.
public struct HistoryRow: Codable, Equatable, Sendable {
  public var epoch: Int
  public var loss: Double
  public var accuracy: Double
  public var valLoss: Double?
  public var valAccuracy: Double?
  public var learningRate: Double
  public var seconds: Double
  /// When the epoch ended (seconds since 1970), in runs since this field exists.
  public var end: Double?

  public var metrics: [String: Double] {
    var m = ["loss": loss, "accuracy": accuracy]
    if let valLoss { m["val_loss"] = valLoss }
    if let valAccuracy { m["val_accuracy"] = valAccuracy }
    return m
  }
}

/// The loop's position and memory, saved in checkpoints so that a run resumes where it stopped.
public struct TrainingState: Codable, Sendable {
  public var config: TrainConfig
  /// The epoch in progress (0-based) and the steps of it already taken.
  public var epoch = 0
  public var step = 0
  /// The epoch's running sums so far (a resumed epoch reports the same metrics).
  public var epochLoss = 0.0
  public var epochCorrect = 0.0
  public var epochSamples = 0.0
  public var epochSeconds = 0.0
  public var finished = false
  public var history: [HistoryRow] = []
  public var ranks = 1
  /// The best monitored value so far and its epoch (checkpoint-best).
  public var bestValue: Double?
  public var bestEpoch: Int?
  public var savedEarlyStopping: EarlyStopping?
  public var savedReduceLR: ReduceLROnPlateau?
  /// The data file's absolute path when training started (reports and evaluate find it from anywhere).
  public var dataPath: String?
  /// The data file's content identity (resume refuses other data).
  public var data: DataIdentity?
  /// When this state was saved in a checkpoint (seconds since 1970): `--resume auto` takes the newest.
  public var savedAt: Double?
  /// The epoch whose weights the checkpoint holds (the best one once early stopping restored it).
  public var weightsEpoch: Int?

  public init(config: TrainConfig) { self.config = config }

  /// What a valid state cannot hold (a crafted or damaged checkpoint may say anything): its configuration's
  /// problems, and an epoch, step or best epoch out of range. The step is checked against the epoch's length
  /// once the split is known (`Trainer.init`).
  public var problems: [String] {
    var out = config.problems
    if !(0...config.epochs).contains(epoch) { out.append("epoch \(epoch) is not within 0...\(config.epochs)") }
    if step < 0 || (finished && step != 0) { out.append("step \(step) is not a step of the epoch") }
    if let e = bestEpoch, !(1...max(epoch, 1)).contains(e) { out.append("best epoch \(e) is not one of 1...\(epoch)") }
    if let e = weightsEpoch, !(0...max(epoch, 1)).contains(e) { out.append("weights epoch \(e) is out of range") }
    if ranks < 1 { out.append("\(ranks) ranks") }
    for (name, v) in [
      ("loss", epochLoss), ("correct", epochCorrect), ("samples", epochSamples), ("seconds", epochSeconds),
    ]
    where !(v.isFinite && v >= 0) {
      out.append("the epoch's running \(name) is \(v)")
    }
    return out
  }

  public static func parse(_ text: String, source: String = "checkpoint") throws -> TrainingState {
    do {
      return try decodeJSON(TrainingState.self, from: text)
    } catch {
      throw Failure("\(source): its training state (attribute 'training') cannot be read: \(error)")
    }
  }
}

/// Data-parallel training: every rank takes a strided share of each global batch of the epoch's permutation,
/// runs forward and backward with synchronised BatchNorm, and the flat gradients (with the step's loss, correct
/// count and flags) are summed in one allreduce; rank 0 decides the callbacks and writes the run directory.
public final class Trainer {
  public static let exitStopped: Int32 = 75

  let comm: Communicator
  var config: TrainConfig
  let runDir: String
  let file: FeatureFile
  let network: Network
  let adam: Adam
  var state: TrainingState
  let split: DataSplit
  var scaler: Scaler
  /// How the run's rows are standardised: by the scaler, or each speaker's by its own statistics
  /// (`--standardize speaker`; the scaler is then the identity). Set once the scaler is known.
  var standardiser = RowStandardiser.columns(.identity(width: 0))
  let trainRows: [Int]
  let validationRows: [Int]
  var bestWeights: (parameters: [Float], state: [Float])?
  var earlyStopping: EarlyStopping
  var reduceLR: ReduceLROnPlateau
  /// Printing on rank 0 only; warnings from any rank go to standard error with the rank.
  let quiet: Bool
  /// Called on every rank after each step with (epoch, steps done in it); tests raise signals from here.
  public var onStep: ((Int, Int) -> Void)?

  /// Rank 0's lock on the run directory, held until the trainer goes.
  var lock: RunLock?
  /// Seconds between plain progress lines on standard output when standard error is not a terminal (a log
  /// file); 0 for none. On a terminal a progress bar is drawn instead.
  public var progressEvery = 30.0
  /// Gradient buckets reduced while backward runs (`trainStep`); 0: one blocking allreduce after backward, the
  /// default: on the cluster in a box, overlap paid at 1 Gbit/s and below and cost 6% at 10 (BENCHMARKS.md).
  public var bucketBytes = Trainer.defaultBucketBytes
  public static let defaultBucketBytes = 0
  /// Put before every line this trainer prints (cross-validation's `fold 2/4: `).
  public var linePrefix = ""
  /// TensorBoard's running loss every this many steps (0: the epochs' scalars only); rank 0 writes the event files.
  public var tensorBoardEvery = 10
  private var board: TensorBoardWriter?

  public static let lastName = "checkpoint-last.h5"
  var isRoot: Bool { comm.rank == 0 }
  var lastPath: String { runDir + "/" + Trainer.lastName }
  var bestPath: String { runDir + "/checkpoint-best.h5" }

  /// - Parameters:
  ///   - given: the command-line flags given explicitly (`--batch-size`, ...): on resume each one must agree with
  ///     the checkpoint's run, and `--epochs` beyond a finished run's count continues it.
  ///   - split: the rows' sides for a new run (default: drawn from the configuration), as cross-validation's folds
  ///     give them.
  ///   - replace: a new run (no `resume`) in a directory that holds one removes that run's files (`--force`);
  ///     without it such a directory is refused, saying which run is there.
  public init(
    config: TrainConfig, runDir: String, resume: String?, comm: Communicator, quiet: Bool = false,
    given: Set<TrainConfig.Setting> = [], split: DataSplit? = nil, replace: Bool = false
  ) throws {
    self.comm = comm
    self.runDir = runDir
    self.quiet = quiet
    let isRoot = comm.rank == 0
    // Rank 0 owns the directory: it locks it before anything is read or written there.
    var failure = ""
    if isRoot {
      do {
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
      } catch { failure = "\(error)" }
    }
    comm.broadcast(&failure, root: 0)
    if !failure.isEmpty { throw AgreedFailure(isRoot ? failure : nil) }

    var config = config
    var resumeFrom: Checkpoint?
    var resumePath: String?
    if let resume {
      let path = resume == "auto" ? runDir + "/" + Trainer.lastName : resume
      if access(path, R_OK) == 0 {
        resumeFrom = try Checkpoint.read(path)
        resumePath = path
      } else if resume != "auto" {
        throw Failure("--resume \(resume): no readable checkpoint there")
      }
    }
    var restoredState: TrainingState?
    var notes: [String] = []
    if let c = resumeFrom, let resumePath {
      guard let t = c.training else {
        throw Failure("\(resumePath): has no training state (an imported model?); train without --resume")
      }
      let r = try Trainer.resolveResume(
        of: try TrainingState.parse(t, source: resumePath), checkpoint: resumePath, config: config, given: given)
      if !r.contradictions.isEmpty { throw AgreedFailure(isRoot ? r.contradictions.joined(separator: "\n") : nil) }
      notes += r.notes
      config = r.state.config
      restoredState = r.state
    }
    self.config = config
    if comm.size > config.batchSize {
      throw AgreedFailure(
        isRoot
          ? "\(comm.size) ranks but a global batch of \(config.batchSize) rows: every rank needs a row of each step. "
            + "Pass --batch-size \(comm.size) or more (with --lr-scaling linear --warmup-epochs 2 to keep the "
            + "learning rate in step with it), or run fewer ranks" : nil)
    }
    if access(config.data, F_OK) != 0 && resume == "auto" && resumeFrom == nil && !given.contains(.data) {
      throw Failure(
        "--resume auto: \(runDir) has no checkpoint yet (its run stopped before writing one), so it does not say "
          + "which data to train on, and \(config.data) is not here: start it again with --data FILE")
    }
    if access(config.data, F_OK) != 0 {
      throw Failure(
        given.contains(.data) || resumeFrom != nil
          ? "\(config.data): no such feature file"
          : "no feature file: \(config.data) is not here. Make one with 'sertrain extract CORPUS_DIR' (audio: "
            + "RAVDESS, CREMA-D, TESS, SAVEE or a manifest), 'sertrain convert features.csv' (the seed's CSV) or "
            + "'sertrain synth -o demo && sertrain extract demo' (a small synthetic corpus), then train with "
            + "--data FILE; 'sertrain --help' lists every command")
    }
    file = try FeatureFile(path: config.data)
    guard file.rowCount > 0, file.classes.count >= 2 else {
      throw Failure(
        "\(config.data): needs rows of at least 2 classes, has \(file.rowCount) rows of \(file.classes.count)")
    }
    let identity = try DataIdentity(file)
    if let resumePath, let recorded = restoredState?.data, let difference = recorded.difference(from: identity) {
      throw AgreedFailure(
        isRoot
          ? "--data \(config.data) is not the data the run in \(resumePath) trained on: \(difference); resume "
            + "with that file, or start a new run" : nil)
    }
    if config.model == TrainConfig.automaticModel { config.model = TrainConfig.defaultModel(for: file.recipe) }
    if resumeFrom == nil {
      config.builtBy = buildIdentity
      config.classWeights = nil
    }
    (self.config.model, self.config.builtBy, self.config.classWeights) =
      (config.model, config.builtBy, config.classWeights)
    var spec = try resumeFrom?.spec ?? ModelSpec.load(config.model)
    if ModelSpec.presets.contains(config.model) && resumeFrom == nil {
      spec = try TrainConfig.preset(config.model, for: file)
    }
    guard spec.inputLength * spec.inputChannels == file.width else {
      throw Failure(
        "model '\(spec.name)' reads \(spec.inputLength) x \(spec.inputChannels) inputs but \(config.data) has "
          + "\(file.width) features per row")
    }
    if resumeFrom == nil { spec = config.scalingMomentum(spec) }
    network = try Network(
      spec: spec, classes: file.classes.count, seed: config.seed,
      policy: KernelPolicy(precision: config.precision ?? .fp32), reductionTail: StepSums.reductionFloats)
    adam = Adam(count: network.trainableCount, learningRate: Float(config.scaledLearningRate))

    // Every rank must run the same model.
    var specText =
      spec.encoded() + "#\(network.trainableCount)+\(network.nonTrainableCount)#\(network.precision)"
    let mine = specText
    comm.broadcast(&specText, root: 0)
    let mismatch = comm.sum(mine == specText ? 0 : 1)
    if mine != specText {
      throw Failure(
        "rank \(comm.rank): the model spec, parameter count or precision (\(network.precision)) differs from rank 0's")
    }
    if mismatch > 0 { throw Failure("rank \(comm.rank): another rank has a different model spec") }

    if let c = resumeFrom {
      guard c.classNames == file.classes else {
        throw Failure("\(resumePath!): its classes \(c.classNames) are not \(config.data)'s \(file.classes)")
      }
      network.parameters.copy(from: c.parameters.withUnsafeBufferPointer { $0 })
      network.state.copy(from: c.state.withUnsafeBufferPointer { $0 })
      if let m = c.adamM, let v = c.adamV {
        adam.m.copy(from: m.withUnsafeBufferPointer { $0 })
        adam.v.copy(from: v.withUnsafeBufferPointer { $0 })
      }
      adam.iterations = c.adamIterations
      adam.learningRate = Float(c.learningRate)
      guard let membership = c.split, membership.count == file.rowCount else {
        throw Failure("\(resumePath!): its split does not cover \(config.data)'s \(file.rowCount) rows")
      }
      self.split = DataSplit(membership: membership)
      scaler = c.scaler
      state = restoredState!
    } else {
      if let split, split.membership.count != file.rowCount {
        throw Failure("the given split covers \(split.membership.count) rows, \(config.data) has \(file.rowCount)")
      }
      self.split =
        try split
        ?? DataSplit.make(
          file, kind: config.split, validation: config.validationFraction, test: config.testFraction, seed: config.seed,
          limitRows: config.limitRows)
      scaler = .identity(width: file.width)
      state = TrainingState(config: config)
    }
    state.data = identity
    trainRows = self.split.train
    validationRows = self.split.validation
    earlyStopping = state.savedEarlyStopping ?? config.earlyStopping
    reduceLR = state.savedReduceLR ?? config.reduceLR
    state.ranks = comm.size
    if let resolved = realpath(config.data, nil) {
      state.dataPath = String(cString: resolved)
      free(resolved)
    }
    guard !trainRows.isEmpty else { throw Failure("the split left no train rows") }
    if resumeFrom == nil, let asked = self.config.classWeight {
      // Rank 0 reads a weights file and says why it fails; every rank then has the same weights, or the same error.
      var text = ""
      if isRoot {
        do {
          text = jsonText(
            try resolveClassWeights(asked, classes: file.classes, labels: trainRows.map { file.labels[$0] }))
        } catch { text = "error: \(error)" }
      }
      comm.broadcast(&text, root: 0)
      guard !text.hasPrefix("error: "), let weights = try? decodeJSON([Double].self, from: text) else {
        throw AgreedFailure(isRoot ? String(text.dropFirst("error: ".count)) : nil)
      }
      (self.config.classWeights, state.config.classWeights) = (weights, weights)
    }
    if let weights = self.config.classWeights,
      weights.count != file.classes.count || !weights.allSatisfy({ $0 >= 0 && $0.isFinite })
    {
      throw Failure("class weights \(weights) do not give one finite, non-negative weight per class of \(file.classes)")
    }
    // A stop after an epoch's last step saves step == stepsPerEpoch (the epoch's end runs on resume); beyond is wrong.
    if let resumePath, state.step > stepsPerEpoch {
      throw Failure(
        resumePath, "its training state is not valid: step \(state.step) of an epoch of \(stepsPerEpoch) steps")
    }
    try checkMonitors()
    if resumeFrom == nil {
      try fitScaler()
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
    if let c = resumeFrom, earlyStopping.restoreBestWeights, earlyStopping.hasBestWeights, isRoot {
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
      if resumeFrom == nil || !state.finished { try writeConfig() }
      if !state.finished { try RunStatus.running.write(runDir: runDir) }
    }
    if let resumePath, isRoot, !quiet {
      say(
        "resuming from \(resumePath): epoch \(state.epoch + 1), step \(state.step), \(comm.size) rank(s)")
      for note in notes { say(note) }
    }
    if isRoot && !quiet { for line in startLines() { say(line) } }
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
    if file.leaksAcrossSplits && config.split != .random {
      lines.append(
        "  warning: \(config.data) does not group its rows by recording (converted without --rows-per-recording): "
          + "augmented copies of one recording can land on both sides of the split; convert again with "
          + "--rows-per-recording 4 for the seed's features.csv")
    }
    return lines
  }

  /// What a resume makes of a run's recorded state and of what is given now (pure: no files, no ranks): the
  /// state to continue, with the configuration it runs under, notes for the user, or the given settings that
  /// contradict the run. What may change: the epoch budget (a finished run continues only for more epochs than it was
  /// given, as Keras's `fit(initial_epoch=...)`, its callbacks afresh; a requeued job repeats its own `--epochs`),
  /// the precision, and where the data lives (its content is checked apart): the recorded path when it is readable
  /// (`readable`) and `--data` was not given.
  public static func resolveResume(
    of recorded: TrainingState, checkpoint: String, config: TrainConfig, given: Set<TrainConfig.Setting>,
    readable: (String) -> Bool = { access($0, R_OK) == 0 }
  ) throws -> (state: TrainingState, notes: [String], contradictions: [String]) {
    var s = recorded
    if let problem = s.problems.first { throw Failure(checkpoint, "its training state is not valid: \(problem)") }
    let contradictions = Trainer.contradictions(given: given, config: config, run: s.config, checkpoint: checkpoint)
    var notes: [String] = []
    if given.contains(.epochs) {
      if s.finished && config.epochs > s.config.epochs {
        s.finished = false
        s.weightsEpoch = nil
        s.savedEarlyStopping?.beginTraining()
        s.savedReduceLR?.beginTraining()
        notes.append("continuing the finished run from epoch \(s.epoch) to \(config.epochs)")
      }
      if !s.finished { s.config.epochs = config.epochs }
    }
    if given.contains(.precision) { s.config.precision = config.precision }
    if !given.contains(.data), let path = s.dataPath, readable(path) {
      s.config.data = path
    } else {
      s.config.data = config.data
    }
    return (s, notes, contradictions)
  }

  /// The settings given on a resume that contradict the run's configuration, one line each.
  static func contradictions(
    given: Set<TrainConfig.Setting>, config: TrainConfig, run: TrainConfig, checkpoint: String
  ) -> [String] {
    TrainConfig.Setting.allCases.compactMap { setting in
      guard given.contains(setting), let ours = setting.shown(config), let theirs = setting.shown(run), ours != theirs
      else { return nil }
      let shown = setting.flag.hasPrefix("--no-") ? setting.flag : "\(setting.flag) \(ours)"
      return "\(shown) contradicts the run being resumed (\(checkpoint): \(theirs)): drop it to resume, or "
        + "start a new run with another --run-dir"
    }
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
  /// the identity.
  private func fitScaler() throws {
    let mode = config.standardizationMode
    guard mode == .column || mode == .feature else { return }
    let features = mode == .feature ? file.recipe.columnFeatures : nil
    if mode == .feature && (features == nil || file.width != file.recipe.width) {
      throw Failure(
        config.data,
        "--standardize feature needs rows of whole frames (\(file.recipe.featuresPerFrame) features each); this "
          + "file's are \(file.width) wide: use --standardize column")
    }
    scaler = try Training.fitScaler(file, rows: trainRows, features: features, comm: comm)
  }

  /// Rank 0's initial parameters go to every rank, which checks them by checksum.
  private func broadcastInitialParameters() {
    guard comm.size > 1 else { return }
    comm.broadcast(
      UnsafeMutableRawBufferPointer(start: network.parameters.pointer, count: network.trainableCount * 4), root: 0)
    comm.broadcast(
      UnsafeMutableRawBufferPointer(start: network.state.pointer, count: network.nonTrainableCount * 4), root: 0)
    let sum = checksum(network.parameters.pointer, network.trainableCount)
    var root = sum
    comm.broadcast(&root, root: 0)
    let bad = comm.sum(sum == root ? 0 : 1)
    if bad > 0 {
      printError("rank \(comm.rank): parameter checksum \(sum) vs rank 0's \(root) after the broadcast")
      comm.abort(code: 1)
    }
  }

  private func checksum(_ p: UnsafePointer<Float>, _ n: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for i in 0..<n { h = (h ^ UInt64(p[i].bitPattern)) &* 0x100_0000_01b3 }
    return h
  }

  private func say(_ line: String) { Output.shared.line(linePrefix + line) }

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

  var stepsPerEpoch: Int {
    min((trainRows.count + config.batchSize - 1) / config.batchSize, config.stepsPerEpoch ?? .max)
  }

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
    if isRoot { board = try TensorBoardWriter(runDir: runDir, everySteps: tensorBoardEvery) }
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
        isRoot && !quiet ? ProgressBar(label: "\(linePrefix)epoch \(epoch + 1)/\(config.epochs)", unit: "samples") : nil
      let lines = isRoot && !quiet && !(bar?.enabled ?? true) && progressEvery > 0
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
        var stream = RandomStream(seed: config.seed, stream: [UInt64(epoch), UInt64(step), UInt64(comm.rank)])
        let sums = x.withUnsafeBufferPointer { x in
          labels.withUnsafeBufferPointer {
            trainStep(
              network, comm: comm, x: x.baseAddress!, labels: UnsafeBufferPointer(rebasing: $0[0..<local.count]),
              globalRows: global.count, dropoutSeed: stream.next(), stop: sertrain_stop_requested() != 0,
              bucketBytes: bucketBytes, classWeights: lossWeights)
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
        if lines && (first || now - lastLine >= progressEvery) && state.step < stepsPerEpoch {
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
    c.recipe = file.recipe
    c.standardization = config.standardizationMode
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
