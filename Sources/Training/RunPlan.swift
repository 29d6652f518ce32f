import Base
import ConvNet
import FeatureStore
import ModelFiles
import Schema

#if canImport(Glibc)
  import Glibc
#endif

/// A training run resolved before anything is built, from what the user gave, the checkpoint it resumes (if any)
/// and the data (pure: no files, no ranks): the configuration it runs under, the model, and where it starts.
/// `Trainer.open` reads the files, resolves the plan and builds the trainer from it. Every rank resolves the same
/// plan from the same inputs, so a refusal is every rank's.
public struct RunPlan {
  /// The configuration the run runs under: the model chosen (`auto` resolved), the build recorded for a new run.
  public var config: TrainConfig
  /// The network to build: the checkpoint's, or the preset (or spec file) sized for the data.
  public var spec: ModelSpec
  /// The run being continued (nil: a new one), as `resolveResume` made it.
  public var resumed: Resumption?
  /// Each row's side of the split: the resumed run's, or the one given for a new run (nil: drawn from `config`).
  public var split: DataSplit?
  /// The checkpoint at `config.initFrom` a new run starts from (nil: the weights drawn from the seed), and what the
  /// user is told of it beyond what it gives (a warning when its run trained on these rows, a note when it
  /// standardised otherwise).
  public var initial: Checkpoint?
  public var initialNotes: [String] = []

  /// A checkpoint and the state it continues, with what the user is told about the continuation.
  public struct Resumption {
    public var path: String
    public var checkpoint: Checkpoint
    public var state: TrainingState
    public var notes: [String]
  }

  /// - Parameters:
  ///   - config: what the run runs under (for a resume, `resolveResume`'s state's configuration is used instead).
  ///   - data: the identity of the file at `config.data`, and its `recipe`.
  ///   - split: the rows' sides for a new run, as cross-validation's folds give them.
  ///   - initial: the checkpoint at `config.initFrom` (read by the caller), for a new run.
  public init(
    config: TrainConfig, resumed: Resumption?, data: DataIdentity, recipe: FeatureRecipe, ranks: Int,
    split: DataSplit? = nil, initial: Checkpoint? = nil, build: String = buildIdentity
  ) throws {
    var config = resumed?.state.config ?? config
    if ranks > config.batchSize {
      throw Failure(
        "\(ranks) ranks but a global batch of \(config.batchSize) rows: every rank needs a row of each step. Pass "
          + "--batch-size \(ranks) or more (with --lr-scaling linear --warmup-epochs 2 to keep the learning rate in "
          + "step with it), or run fewer ranks")
    }
    guard data.rows > 0, data.classes.count >= 2 else {
      throw Failure("\(config.data): needs rows of at least 2 classes, has \(data.rows) rows of \(data.classes.count)")
    }
    // The run that made --init-from's checkpoint, as it recorded itself.
    let initialRun = resumed == nil ? initial?.training.flatMap { try? TrainingState.parse($0) } : nil
    var notes: [String] = []
    if resumed == nil, let path = config.initFrom, let initial {
      guard config.model == TrainConfig.automaticModel else {
        throw Failure("--init-from \(path) trains its model, '\(initial.spec.name)': leave out --model \(config.model)")
      }
      if let made = initial.recipe, !made.sameFeatures(as: recipe) {
        throw Failure(
          path,
          "was trained on other features than \(config.data)'s (\(made.layout.rawValue) layout, "
            + "\(made.sampleRate) Hz, offset \(made.offset) s against \(recipe.layout.rawValue), \(recipe.sampleRate) "
            + "Hz, \(recipe.offset) s): extract the data as that model's was")
      }
      config.model = initial.spec.name
      // A checkpoint that records the recordings it saw gets the trainer's count of them instead.
      if initial.seenRecordings == nil && initialRun?.data == data {
        notes.append(
          "warning: \(path) was trained on these rows: those it trained on may be among this run's validation and "
            + "test rows (in cv, its held-out speakers), whose accuracy then overstates what it does on new ones")
      }
      if initial.standardization != config.standardizationMode {
        notes.append(
          "note: \(path) was trained on rows standardised by \(initial.standardization.rawValue), this run "
            + "standardises by \(config.standardizationMode.rawValue) (--standardize)")
      }
    }
    if config.model == TrainConfig.automaticModel { config.model = TrainConfig.defaultModel(for: recipe) }
    (self.resumed, self.initial, initialNotes) = (resumed, resumed == nil ? initial : nil, notes)
    guard let resumed else {
      (config.builtBy, config.classWeights) = (build, nil)
      var spec: ModelSpec
      if let initial {
        spec = RunPlan.unsized(initial, madeBy: initialRun?.config)
      } else {
        spec =
          ModelSpec.presets.contains(config.model)
          ? try TrainConfig.preset(config.model, recipe: recipe, width: data.width, path: config.data)
          : try ModelSpec.load(config.model)
      }
      try RunPlan.check(spec, reads: data.width, of: config.data)
      spec = config.scalingMomentum(spec)
      if let split, split.membership.count != data.rows {
        throw Failure("the given split covers \(split.membership.count) rows, \(config.data) has \(data.rows)")
      }
      (self.config, self.spec, self.split) = (config, spec, split)
      return
    }
    let (path, c) = (resumed.path, resumed.checkpoint)
    if let recorded = resumed.state.data, let difference = recorded.difference(from: data) {
      throw Failure(
        "--data \(config.data) is not the data the run in \(path) trained on: \(difference); resume with that "
          + "file, or start a new run")
    }
    try RunPlan.check(c.spec, reads: data.width, of: config.data)
    guard c.classNames == data.classes else {
      throw Failure("\(path): its classes \(c.classNames) are not \(config.data)'s \(data.classes)")
    }
    guard let membership = c.split, membership.count == data.rows else {
      throw Failure("\(path): its split does not cover \(config.data)'s \(data.rows) rows")
    }
    if let weights = config.classWeights,
      weights.count != data.classes.count || !weights.allSatisfy({ $0 >= 0 && $0.isFinite })
    {
      throw Failure(
        path, "its class weights \(weights) do not give one finite, non-negative weight per class of \(data.classes)")
    }
    let split = DataSplit(membership: membership)
    // A stop after an epoch's last step saves step == steps (the epoch's end runs on resume); beyond is wrong.
    let steps = config.steps(trainRows: split.train.count)
    guard resumed.state.step <= steps else {
      throw Failure(
        path, "its training state is not valid: step \(resumed.state.step) of an epoch of \(steps) steps")
    }
    (self.config, self.spec, self.split) = (config, c.spec, split)
  }

  /// A checkpoint's model with its output layer sized anew (by the data's classes), and BatchNorm's momentum as the
  /// run that made it (`madeBy`) was given it, before its `--lr-scaling` raised it (the new run scales it for its
  /// own batch).
  static func unsized(_ c: Checkpoint, madeBy run: TrainConfig?) -> ModelSpec {
    var spec = c.spec
    if let last = spec.layers.lastIndex(where: { $0.type == .dense }) { spec.layers[last].units = nil }
    return run?.scalingMomentum(spec, undo: true) ?? spec
  }

  /// Sets `network`'s weights and BatchNorm statistics from `c` (of the same model, but for `classes`, perhaps
  /// other than its own): every variable of the same name and shape, and of the output layer the kernel's columns
  /// and the bias's entries of the classes both have, by name; the rest keeps the values drawn from the seed. Says
  /// what it took.
  public static func initialise(_ network: Network, from c: Checkpoint, classes: [String]) -> String {
    // The output layer maps its classes by name (unless they are the checkpoint's), whatever their number.
    let output = classes == c.classNames ? nil : network.plans.last { $0.spec.type == .dense }?.name
    let shared = classes.indices.compactMap { j in c.classNames.firstIndex(of: classes[j]).map { (j, $0) } }
    for (layout, theirs, values, into) in [
      (network.parameterLayout, c.parameterLayout, c.parameters, network.parameters),
      (network.stateLayout, c.stateLayout, c.state, network.state),
    ] {
      for view in layout.views {
        guard let from = theirs[view.name] else { continue }
        if from.shape == view.shape && view.layer != output {
          for i in 0..<view.count { into.pointer[view.offset + i] = values[from.offset + i] }
        } else if view.layer == output, view.shape.dropLast() == from.shape.dropLast() {
          // The output layer's kernel [inputs, classes] or bias [classes]: the shared classes' columns.
          let (rows, mine, old) = (view.count / view.shape.last!, view.shape.last!, from.shape.last!)
          for r in 0..<rows {
            for (j, k) in shared { into.pointer[view.offset + r * mine + j] = values[from.offset + r * old + k] }
          }
        }
      }
    }
    if classes == c.classNames { return "every layer's weights and BatchNorm statistics" }
    let new = classes.filter { !c.classNames.contains($0) }
    let dropped = c.classNames.filter { !classes.contains($0) }
    return "every layer's weights and BatchNorm statistics but the output layer's, which takes "
      + (shared.isEmpty ? "none of its classes'" : "those of \(shared.map { classes[$0.0] }.joined(separator: ", "))")
      + (new.isEmpty ? "" : " (new, drawn from the seed: \(new.joined(separator: ", ")))")
      + (dropped.isEmpty ? "" : " (left out, not in the data: \(dropped.joined(separator: ", ")))")
  }

  private static func check(_ spec: ModelSpec, reads width: Int, of data: String) throws {
    guard spec.inputLength * spec.inputChannels == width else {
      throw Failure(
        "model '\(spec.name)' reads \(spec.inputLength) x \(spec.inputChannels) inputs but \(data) has \(width) "
          + "features per row")
    }
  }

  /// What a resume makes of a run's recorded state and of what is given now (pure: no files, no ranks): the
  /// state to continue, with the configuration it runs under, and notes for the user; the given settings that
  /// contradict the run are refused, one line each. What may change: the epoch budget (a finished run continues
  /// only for more epochs than it was given, as Keras's `fit(initial_epoch=...)`, its callbacks afresh; a requeued
  /// job repeats its own `--epochs`), the precision, and where the data lives (its content is checked apart): the
  /// recorded path when it is readable (`readable`) and `--data` was not given.
  public static func resolveResume(
    _ checkpoint: Checkpoint, path: String, config: TrainConfig, given: Set<TrainConfig.Setting>,
    readable: (String) -> Bool = { access($0, R_OK) == 0 }
  ) throws -> Resumption {
    guard let text = checkpoint.training else {
      throw Failure("\(path): has no training state (an imported model?); train without --resume")
    }
    var s = try TrainingState.parse(text, source: path)
    if let problem = s.problems.first { throw Failure(path, "its training state is not valid: \(problem)") }
    let contradictions = RunPlan.contradictions(given: given, config: config, run: s.config, checkpoint: path)
    guard contradictions.isEmpty else { throw Failure(contradictions.joined(separator: "\n")) }
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
    return Resumption(path: path, checkpoint: checkpoint, state: s, notes: notes)
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
}
