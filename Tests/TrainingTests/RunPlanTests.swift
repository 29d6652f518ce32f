import Base
import ConvNet
import ModelFiles
import Schema
import Training
import XCTest
import _TestSupport

/// The run's resolution (`RunPlan`): what a new run and a resume run under, and what they refuse, with no files
/// and no ranks.
final class RunPlanTests: XCTestCase {
  let classes = ["angry", "happy", "sad"]

  /// The identity of a file of `rows` rows `width` wide of `classes`, its content named by `hash`.
  func data(rows: Int = 40, width: Int = 2376, classes: [String]? = nil, hash: String = "a") -> DataIdentity {
    DataIdentity(rows: rows, width: width, classes: classes ?? self.classes, labelsHash: hash, rowsHash: hash)
  }

  func recipe(_ layout: FeatureRecipe.Layout) -> FeatureRecipe {
    var r = FeatureRecipe()
    r.layout = layout
    return r
  }

  /// A run recorded at epoch 3 of 5 (or finished there), with early stopping part-way through its patience, on
  /// `data()` split 30 train, 5 validation, 5 test rows.
  func recorded(finished: Bool = false, change: (inout TrainingState) -> Void = { _ in }) throws -> Checkpoint {
    var config = TrainConfig()
    (config.epochs, config.batchSize, config.data, config.precision, config.model) = (5, 8, "old.h5", .bf16, "small")
    var s = TrainingState(config: config)
    (s.epoch, s.finished, s.weightsEpoch, s.dataPath, s.data) = (3, finished, 2, "/recorded/features.h5", data())
    var stopping = EarlyStopping()
    (stopping.wait, stopping.best) = (2, 0.7)
    s.savedEarlyStopping = stopping
    change(&s)
    var c = Checkpoint(network: try Network(spec: .small(), classes: classes.count), classNames: classes)
    c.training = jsonText(s)
    c.split = [Int8](repeating: 0, count: 30) + [Int8](repeating: 1, count: 5) + [Int8](repeating: 2, count: 5)
    return c
  }

  func resume(
    _ c: Checkpoint, _ given: Set<TrainConfig.Setting>, readable: Bool = true, _ change: (inout TrainConfig) -> Void
  ) throws -> RunPlan.Resumption {
    var config = TrainConfig()
    change(&config)
    return try RunPlan.resolveResume(c, path: "c.h5", config: config, given: given) { _ in readable }
  }

  func message(_ body: @autoclosure () throws -> Any) -> String {
    do {
      _ = try body()
      return "(no error)"
    } catch { return "\(error)" }
  }

  // MARK: The resume

  func testGivenSettingsThatDifferContradictTheRun() throws {
    XCTAssertEqual(
      message(try resume(try recorded(), [.batchSize, .seed]) { ($0.batchSize, $0.seed) = (32, 0) }),
      "--batch-size 32 contradicts the run being resumed (c.h5: 8): drop it to resume, or start a new run with "
        + "another --run-dir")
    // Not given, or given alike: no contradiction; what may change never contradicts.
    XCTAssertNoThrow(try resume(try recorded(), []) { $0.batchSize = 32 })
    XCTAssertNoThrow(try resume(try recorded(), [.batchSize]) { $0.batchSize = 8 })
    XCTAssertNoThrow(
      try resume(try recorded(), [.epochs, .precision, .data]) { ($0.epochs, $0.precision, $0.data) = (9, .fp32, "x") })
  }

  func testTheEpochBudget() throws {
    // An unfinished run takes the new budget, fewer epochs too.
    XCTAssertEqual(try resume(try recorded(), [.epochs]) { $0.epochs = 4 }.state.config.epochs, 4)
    // A finished run continues only for more epochs than it had, its callbacks afresh.
    let more = try resume(try recorded(finished: true), [.epochs]) { $0.epochs = 8 }
    XCTAssertFalse(more.state.finished)
    XCTAssertEqual(more.state.config.epochs, 8)
    XCTAssertNil(more.state.weightsEpoch)
    XCTAssertEqual(more.state.savedEarlyStopping?.wait, 0)
    XCTAssertNil(more.state.savedEarlyStopping?.best)
    XCTAssertEqual(more.notes, ["continuing the finished run from epoch 3 to 8"])
    for budget in [5, 3] {
      let again = try resume(try recorded(finished: true), [.epochs]) { $0.epochs = budget }
      XCTAssertTrue(again.state.finished, "--epochs \(budget) on a finished 5-epoch run")
      XCTAssertEqual(again.state.config.epochs, 5)
      XCTAssertEqual(again.state.weightsEpoch, 2)
      XCTAssertEqual(again.notes, [])
    }
    // Not given: the run's own budget.
    XCTAssertEqual(try resume(try recorded(), []) { $0.epochs = 50 }.state.config.epochs, 5)
  }

  func testPrecisionAndDataPath() throws {
    XCTAssertEqual(try resume(try recorded(), []) { $0.precision = .fp32 }.state.config.precision, .bf16)
    XCTAssertEqual(try resume(try recorded(), [.precision]) { $0.precision = .fp32 }.state.config.precision, .fp32)
    // The recorded path when it is readable and --data was not given; else the given (or default) one.
    XCTAssertEqual(try resume(try recorded(), []) { $0.data = "d.h5" }.state.config.data, "/recorded/features.h5")
    XCTAssertEqual(try resume(try recorded(), [.data]) { $0.data = "d.h5" }.state.config.data, "d.h5")
    XCTAssertEqual(try resume(try recorded(), [], readable: false) { $0.data = "d.h5" }.state.config.data, "d.h5")
  }

  func testAnInvalidStateOrNoneIsAnError() throws {
    let invalid = message(try resume(try recorded { $0.epoch = -3 }, []) { _ in })
    XCTAssertTrue(invalid.contains("c.h5") && invalid.contains("not valid"), invalid)
    var imported = try recorded()
    imported.training = nil
    XCTAssertTrue(message(try resume(imported, []) { _ in }).contains("has no training state"))
  }

  // MARK: The plan

  func plan(
    _ config: TrainConfig = TrainConfig(), resumed: RunPlan.Resumption? = nil, data: DataIdentity? = nil,
    layout: FeatureRecipe.Layout = .seed, ranks: Int = 1, split: DataSplit? = nil, initial: Checkpoint? = nil
  ) throws -> RunPlan {
    try RunPlan(
      config: config, resumed: resumed, data: data ?? self.data(), recipe: recipe(layout), ranks: ranks, split: split,
      initial: initial, build: "test-build")
  }

  func testANewRunChoosesAndSizesItsModel() throws {
    // --model auto: the data's layout chooses.
    XCTAssertEqual(try plan(layout: .frames).spec.name, "frames")
    XCTAssertEqual(try plan(layout: .seed).config.model, "seed")
    // A flat preset reads the row as one channel of its width.
    var config = TrainConfig()
    config.model = "tiny"
    let tiny = try plan(config, data: data(width: 300))
    XCTAssertEqual([tiny.spec.inputLength, tiny.spec.inputChannels], [300, 1])
    // The frames model needs frames rows, and says which file has other ones.
    config.model = "frames"
    config.data = "flat.h5"
    let refusal = message(try plan(config, layout: .aligned))
    XCTAssertTrue(refusal.contains("flat.h5") && refusal.contains("aligned layout"), refusal)
    // The build is recorded and class weights are resolved afresh (from --class-weight) for a new run.
    config = TrainConfig()
    config.classWeights = [1, 2, 3]
    let fresh = try plan(config)
    XCTAssertEqual(fresh.config.builtBy, "test-build")
    XCTAssertNil(fresh.config.classWeights)
    XCTAssertNil(fresh.resumed)
  }

  func testANewRunRefuses() throws {
    var config = TrainConfig()
    config.batchSize = 4
    XCTAssertTrue(message(try plan(config, ranks: 8)).contains("Pass --batch-size 8 or more"))
    XCTAssertNoThrow(try plan(config, ranks: 4))
    XCTAssertTrue(message(try plan(data: data(classes: ["sad"]))).contains("at least 2 classes"))
    XCTAssertTrue(message(try plan(data: data(rows: 0))).contains("at least 2 classes"))
    let short = DataSplit(membership: [0, 0, 1])
    XCTAssertTrue(message(try plan(split: short)).contains("the given split covers 3 rows"))
    XCTAssertEqual(try plan(split: DataSplit(membership: [Int8](repeating: 0, count: 40))).split?.train.count, 40)
  }

  /// `--init-from`: the checkpoint's model, its output layer sized for the data's classes; a `--model` beside it,
  /// or data of other features than the checkpoint's, is refused; a resume runs its own weights, not the file's.
  func testANewRunFromACheckpoint() throws {
    var c = Checkpoint(network: try Network(spec: .frames(), classes: 7), classNames: emotions)
    c.recipe = recipe(.frames)
    var config = TrainConfig()
    config.initFrom = "pre.h5"
    let p = try plan(config, layout: .frames, initial: c)
    XCTAssertEqual(p.config.model, "frames")
    XCTAssertNotNil(p.initial)
    XCTAssertEqual(try Network(spec: p.spec, classes: 3).plans.last?.outputChannels, 3)
    XCTAssertEqual(p.spec.layers.dropLast(), c.spec.layers.dropLast())
    XCTAssertEqual(p.initialNotes, [])
    // A checkpoint whose run trained on these rows is warned of; one standardised otherwise is noted.
    var same = c
    var made = TrainingState(config: TrainConfig())
    made.data = data()
    (same.training, same.standardization) = (jsonText(made), .speaker)
    let notes = try plan(config, layout: .frames, initial: same).initialNotes
    XCTAssertEqual(notes.count, 2, "\(notes)")
    XCTAssertTrue(notes[0].hasPrefix("warning: pre.h5 was trained on these rows"), notes[0])
    XCTAssertTrue(notes[1].contains("standardised by speaker, this run standardises by column"), notes[1])
    config.model = "small"
    XCTAssertTrue(message(try plan(config, layout: .frames, initial: c)).contains("leave out --model small"))
    config.model = TrainConfig.automaticModel
    let other = message(try plan(config, layout: .aligned, initial: c))
    XCTAssertTrue(other.contains("pre.h5") && other.contains("frames layout") && other.contains("aligned"), other)
    XCTAssertNil(try plan(config, resumed: try resume(try recorded(), []) { _ in }, initial: c).initial)
    // BatchNorm's momentum as the checkpoint's run was given it, scaled for this run's batch, not on top of C's.
    var scaled = TrainConfig()
    (scaled.lrScaling, scaled.batchSize) = (.linear, 256)
    var large = c
    large.spec = scaled.scalingMomentum(c.spec)
    large.training = jsonText(TrainingState(config: scaled))
    func momenta(_ p: RunPlan) -> [Double] {
      let m = p.spec.layers.filter { $0.type == .batchNormalization }.map { $0.momentum ?? 0.99 }
      XCTAssertEqual(m.count, 3, "the frames model's BatchNorm layers")
      return m
    }
    XCTAssertEqual(large.spec.layers.compactMap(\.momentum).first ?? 0, pow(0.99, 4), accuracy: 1e-12)
    for m in momenta(try plan(config, layout: .frames, initial: large)) { XCTAssertEqual(m, 0.99, accuracy: 1e-12) }
    (config.lrScaling, config.batchSize) = (.linear, 128)
    for m in momenta(try plan(config, layout: .frames, initial: large)) {
      XCTAssertEqual(m, 0.99 * 0.99, accuracy: 1e-12)
    }
  }

  /// What `--init-from` takes: every variable of the checkpoint's but the output layer's, of which the columns of
  /// the classes both have, by name; a class the checkpoint lacks keeps the column drawn from the seed.
  func testInitialisingFromACheckpointMapsTheClassesByName() throws {
    let old = try Network(spec: .frames(frames: 8, features: 4), classes: 3, seed: 1)
    var rng = TestRNG(seed: 2)
    for i in 0..<old.state.count { old.state.pointer[i] = rng.normal() }
    let c = Checkpoint(network: old, classNames: ["angry", "happy", "sad"])
    var spec = c.spec
    spec.layers[spec.layers.count - 1].units = nil
    let network = try Network(spec: spec, classes: 3, seed: 7)
    let drawn = network.parameters.array
    let said = RunPlan.initialise(network, from: c, classes: ["happy", "sad", "surprise"])
    XCTAssertTrue(said.contains("those of happy, sad") && said.contains("new, drawn from the seed: surprise"), said)
    XCTAssertTrue(said.contains("left out, not in the data: angry"), said)
    XCTAssertEqual(network.state.array, c.state)
    let output = network.plans.last!.name
    for view in network.parameterLayout.views {
      let mine = Array(network.parameters.array[view.offset..<(view.offset + view.count)])
      let theirs = Array(c.parameters[c.parameterLayout[view.name]!.offset...].prefix(view.count))
      guard view.layer == output else {
        XCTAssertEqual(mine, theirs, view.name)
        continue
      }
      // kernel [inputs, classes] or bias [classes]: happy and sad from the checkpoint's columns 1 and 2.
      for r in 0..<(view.count / 3) {
        XCTAssertEqual(mine[r * 3], theirs[r * 3 + 1], "\(view.name) row \(r): happy")
        XCTAssertEqual(mine[r * 3 + 1], theirs[r * 3 + 2], "\(view.name) row \(r): sad")
        XCTAssertEqual(mine[r * 3 + 2], drawn[view.offset + r * 3 + 2], "\(view.name) row \(r): surprise")
      }
    }
    // Fewer classes, in another order: the output's bias takes sad's entry; neutral keeps its own.
    let two = try Network(spec: spec, classes: 2, seed: 7)
    let bias = two.parameterLayout["\(output)/bias"]!
    let fresh = two.parameters.array[bias.offset + 1]
    _ = RunPlan.initialise(two, from: c, classes: ["sad", "neutral"])
    XCTAssertEqual(two.parameters.array[bias.offset], c.parameters[c.parameterLayout["\(output)/bias"]!.offset + 2])
    XCTAssertEqual(two.parameters.array[bias.offset + 1], fresh)
    // The same classes: every value.
    let same = try Network(spec: c.spec, classes: 3, seed: 9)
    XCTAssertEqual(
      RunPlan.initialise(same, from: c, classes: c.classNames), "every layer's weights and BatchNorm statistics")
    XCTAssertEqual(same.parameters.array, c.parameters)
  }

  func testAResumeRunsTheRecordedRun() throws {
    let r = try resume(try recorded(), []) { _ in }
    var given = TrainConfig()
    (given.model, given.epochs) = ("seed", 50)
    let p = try plan(given, resumed: r)
    // The run's configuration, model (the checkpoint's, not a preset) and split, whatever the defaults say.
    XCTAssertEqual(p.config.model, "small")
    XCTAssertEqual(p.config.epochs, 5)
    XCTAssertNil(p.config.builtBy)
    XCTAssertEqual(p.spec, try recorded().spec)
    XCTAssertEqual(p.split?.sizes, [30, 5, 5, 0])
    XCTAssertEqual(p.resumed?.path, "c.h5")
  }

  func testAResumeRefusesWhatDoesNotFit() throws {
    let r = try resume(try recorded(), []) { _ in }
    let other = message(try plan(resumed: r, data: data(hash: "b")))
    XCTAssertTrue(other.contains("is not the data the run in c.h5 trained on"), other)
    XCTAssertTrue(message(try plan(resumed: r, data: data(rows: 41))).contains("41 rows x 2376"))
    XCTAssertTrue(message(try plan(resumed: r, data: data(classes: ["a", "b", "c"]))).contains("classes [\"a\""))
    // A checkpoint that does not record its data's identity (older ones): its model and classes are checked.
    let unrecorded = try resume(try recorded { $0.data = nil }, []) { _ in }
    XCTAssertTrue(message(try plan(resumed: unrecorded, data: data(width: 100))).contains("100 features per row"))
    XCTAssertTrue(message(try plan(resumed: unrecorded, data: data(classes: ["a", "b", "c"]))).contains("its classes"))
    // 30 train rows in batches of 8 are 4 steps: a state at step 4 (stopped after the last) resumes, 5 does not.
    let atEnd = try resume(try recorded { $0.step = 4 }, []) { _ in }
    XCTAssertNoThrow(try plan(resumed: atEnd))
    let beyond = message(try plan(resumed: try resume(try recorded { $0.step = 5 }, []) { _ in }))
    XCTAssertTrue(beyond.contains("step 5 of an epoch of 4 steps"), beyond)
    let weights = message(
      try plan(resumed: try resume(try recorded { $0.config.classWeights = [1, -1, 1] }, []) { _ in }))
    XCTAssertTrue(weights.contains("class weights"), weights)
    var uncovered = try recorded()
    uncovered.split = [0, 1]
    XCTAssertTrue(message(try plan(resumed: try resume(uncovered, []) { _ in })).contains("split does not cover"))
  }

  /// The row cache's default: the ranks together a quarter of the memory limit, which a control group (v2's
  /// `memory.max` or v1's `memory.limit_in_bytes`, on the group or an ancestor) can lower.
  func testTheRowCacheFollowsTheMemoryLimit() {
    XCTAssertGreaterThan(memoryLimit(), 1 << 26)
    XCTAssertEqual(Trainer.rowCacheBytes(ranks: 4), memoryLimit() / 16)
    let files: [String: String] = [
      "/sys/fs/cgroup/job_7/step_0/memory.max": "max\n", "/sys/fs/cgroup/job_7/memory.max": "4294967296\n",
      "/sys/fs/cgroup/memory/slurm/job_8/memory.limit_in_bytes": "2147483648\n",
      "/sys/fs/cgroup/memory/slurm/job_8/step_0/memory.limit_in_bytes": "9223372036854771712\n",
    ]
    func read(_ path: String) -> String? { files[path] }
    XCTAssertEqual(cgroupMemoryLimit("0::/job_7/step_0\n", read: read), 4 << 30)
    XCTAssertEqual(cgroupMemoryLimit("5:cpuset:/x\n4:memory,other:/slurm/job_8/step_0\n", read: read), 2 << 30)
    XCTAssertNil(cgroupMemoryLimit("0::/\n", read: read), "the root group sets none")
    XCTAssertNil(cgroupMemoryLimit("", read: read))
  }
}
