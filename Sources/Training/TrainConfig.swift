import Base
import ConvNet
import FeatureStore
import FoundationEssentials
import ModelFiles
import Schema

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
    case limitRows, stepsPerEpoch, lrScaling, baseBatch, warmupEpochs, precision, initFrom

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
      case .initFrom: return c.initFrom ?? "none"
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
  /// The checkpoint a new run starts from (`--init-from`, fine-tuning): its model, its weights and BatchNorm
  /// statistics, and the output layer's for the classes both have (`RunPlan.initialise`); nil: drawn from the seed.
  public var initFrom: String?
  public init() {}

  public enum LRScaling: String, Codable, Sendable, CaseIterable {
    case none, linear, sqrt
  }

  /// The steps of an epoch over `trainRows` rows: its batches, at most `stepsPerEpoch`.
  func steps(trainRows: Int) -> Int { min((trainRows + batchSize - 1) / batchSize, stepsPerEpoch ?? .max) }

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
  /// which uses them, sees another network. The checkpoint's spec records the momentum used; `undo` takes it back
  /// to the one given (for a run that starts from such a checkpoint, `--init-from`, and scales it for itself).
  public func scalingMomentum(_ spec: ModelSpec, undo: Bool = false) -> ModelSpec {
    guard (lrScaling ?? .none) != .none else { return spec }
    var s = spec
    for i in s.layers.indices where s.layers[i].type == .batchNormalization {
      s.layers[i].momentum = pow(s.layers[i].momentum ?? 0.99, undo ? 1 / batchRatio : batchRatio)
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

  /// A preset sized for rows `width` wide of `recipe` (the file at `path`): the flat presets read the whole row as
  /// one channel; `frames` reads it as frames of features and needs the frames layout.
  public static func preset(_ name: String, recipe: FeatureRecipe, width: Int, path: String) throws -> ModelSpec {
    guard name == "frames" else {
      var spec = try ModelSpec.load(name)
      (spec.inputLength, spec.inputChannels) = (width, 1)
      return spec
    }
    guard recipe.layout == .frames, recipe.columnFeatures != nil, recipe.width == width else {
      throw Failure(
        path,
        "the frames model reads rows in the frames layout (\(recipe.framesPerRow) frames x "
          + "\(recipe.featuresPerFrame) features side by side); this file's rows are in the \(recipe.layout.rawValue) "
          + "layout, \(width) wide. Extract the corpus again (frames is extract's default layout), or choose "
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
  /// once the split is known (`RunPlan`).
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
