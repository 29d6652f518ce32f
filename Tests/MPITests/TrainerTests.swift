import AudioFeatures
import Base
import CSystem
import Collective
import ConvNet
import FeatureStore
// Data-parallel training on whatever communicator runs the tests: one process under `swift test`, 2 and 4
// ranks under Launch/test.sh's mpirun.
import ModelFiles
import Training
import XCTest
import _TestSupport

#if canImport(Glibc)
  import Glibc
#endif

final class TrainerTests: XCTestCase {
  let comm = try! makeCommunicator()

  /// A directory every rank sees (rank 0 makes it), removed at the end.
  func sharedDirectory() -> String {
    var dir = comm.rank == 0 ? temporaryDirectory(self) : ""
    comm.broadcast(&dir)
    return dir
  }

  /// `rows` rows of `width` features in 3 classes, each class a noisy tone of its own frequency.
  func writeFeatures(_ path: String, rows: Int, width: Int = 64) throws {
    if comm.rank == 0 {
      var rng = TestRNG(seed: 5)
      let w = try FeatureFileWriter(path: path, width: width, overwrite: true)
      var x = [Float](repeating: 0, count: rows * width)
      var labels: [String] = []
      for r in 0..<rows {
        let c = r % 3
        for t in 0..<width { x[r * width + t] = Float(sin(0.2 * Double((c + 1) * t))) + 0.7 * rng.normal() }
        labels.append(["angry", "calm", "sad"][c])
      }
      try x.withUnsafeBufferPointer {
        try w.append(
          rows: $0, labels: labels, sources: (0..<rows).map { Int32($0 / 2) },
          augmentations: [Int8](repeating: 0, count: rows))
      }
      var recipe = FeatureRecipe()
      recipe.width = width
      recipe.origin = "test"
      try w.finish(
        recipe: recipe,
        recordings: (0..<((rows + 1) / 2)).map {
          RecordingInfo(path: "r\($0).wav", speaker: "s\($0 % 5)", corpus: "test")
        })
    }
    comm.barrier()
  }

  /// One step on the same global batch: the ranks' summed gradients equal one process's, up to summation order;
  /// with dropout too (the frames preset's structure), each row's mask keyed by its place in the global batch.
  func testOneStepGradientsMatchASingleProcess() throws {
    try XCTSkipIf(comm.size == 1, "one rank would compare itself with itself: runs under mpirun (Launch/test.sh mpi)")
    for spec in [ModelSpec.tiny(inputLength: 64), .frames(frames: 8, features: 8)] {
      let batch = 12
      var rng = TestRNG(seed: 3)
      let x = (0..<(batch * 64)).map { _ in rng.normal() }
      let labels = (0..<batch).map { Int32($0 % 3) }
      let whole = try Network(spec: spec, classes: 3, seed: 7)
      x.withUnsafeBufferPointer {
        _ = whole.forward(
          $0.baseAddress!, batch: batch, training: true, dropoutSeed: 9, dropoutKeys: (0..<batch).map(UInt64.init))
      }
      labels.withUnsafeBufferPointer { whole.backward(labels: $0, scale: 1 / Float(batch)) }

      let part = try Network(spec: spec, classes: 3, seed: 7)
      part.statisticsReducer = comm.size > 1 ? { [comm] in comm.allreduceSum($0) } : nil
      let mine = Array(Swift.stride(from: comm.rank, to: batch, by: comm.size))
      let xs = mine.flatMap { x[($0 * 64)..<(($0 + 1) * 64)] }
      let ys = mine.map { labels[$0] }
      xs.withUnsafeBufferPointer {
        _ = part.forward(
          $0.baseAddress!, batch: mine.count, training: true, dropoutSeed: 9, dropoutKeys: mine.map(UInt64.init))
      }
      ys.withUnsafeBufferPointer { part.backward(labels: $0, scale: 1 / Float(batch)) }
      comm.allreduceSum(UnsafeMutableBufferPointer(start: part.gradients.pointer, count: part.trainableCount))
      for view in whole.parameterLayout.views {
        let error = relativeToMax(Array(part.gradient(view.name)!), Array(whole.gradient(view.name)!))
        XCTAssertLessThan(error, 1e-4, "\(spec.name): \(view.name) on \(comm.size) ranks")
      }
      assertClose(
        part.state.array, whole.state.array, rtol: 1e-5, atol: 1e-7,
        "\(spec.name): moving statistics, synchronised BatchNorm")
    }
  }

  func config(_ data: String, epochs: Int) -> TrainConfig {
    var c = TrainConfig()
    c.data = data
    c.model = "tiny"
    c.epochs = epochs
    c.batchSize = 8
    c.split = .random
    c.validationFraction = 0.2
    c.testFraction = 0
    c.seed = 11
    c.earlyStopping.patience = 100
    return c
  }

  func finalParameters(_ dir: String) throws -> [Float] {
    try Checkpoint.read(dir + "/checkpoint-last.h5").parameters
  }

  /// `sertrain cv` with the ranks in two groups (each training its fold data-parallel) gives each fold the result
  /// of the folds trained in turn by one process: bit for bit with one rank per group, and within summation-order
  /// rounding at a learning rate of 1e-5 with two.
  func testCrossValidationGroupsMatchFoldsInTurn() throws {
    let dir = sharedDirectory()
    try writeFeatures(dir + "/f.h5", rows: 60)
    var o = CrossValidationOptions()
    (o.folds, o.by, o.trainer.quiet) = (2, .speaker, true)
    o.config = config(dir + "/f.h5", epochs: 2)
    o.config.split = .recording
    if comm.size > 2 { o.config.learningRate = 1e-5 }
    o.directory = dir + "/together"
    let together = try crossValidate(o, comm: comm)
    XCTAssertFalse(together.stopped)
    if comm.rank == 0 {
      o.directory = dir + "/in-turn"
      let inTurn = try crossValidate(o, comm: SingleProcessCommunicator())
      let (a, b) = (together.summary!, inTurn.summary!)
      XCTAssertEqual(a.folds.map(\.groups), b.folds.map(\.groups))
      XCTAssertEqual(Set(a.folds.flatMap(\.groups)).count, 5, "every speaker in one fold")
      for fold in 1...2 {
        let (p, q) = try (
          finalParameters(dir + "/together/fold-\(fold)"), finalParameters(dir + "/in-turn/fold-\(fold)")
        )
        if comm.size <= 2 {
          XCTAssertEqual(p, q, "fold \(fold) on \(comm.size) ranks")
          XCTAssertEqual(a.folds[fold - 1].evaluation.confusion, b.folds[fold - 1].evaluation.confusion)
        } else {
          assertClose(p, q, rtol: 1e-4, atol: 1e-6, "fold \(fold), 2 ranks per group")
        }
        XCTAssertEqual(a.folds[fold - 1].evaluation.loss, b.folds[fold - 1].evaluation.loss, accuracy: 1e-4)
      }
    }
    comm.barrier()
  }

  /// The communicators `split` makes (`cv`'s groups, one set per repeat of `cv --repeats`) are freed when dropped:
  /// each new one takes the table slots the last one left.
  func testSplitCommunicatorsAreFreed() throws {
    guard let world = comm as? MPICommunicator else {
      throw XCTSkip("one process has no MPI communicators: runs under mpirun (Launch/test.sh mpi)")
    }
    var indices: [Int] = []
    for _ in 0..<4 {
      let part = try XCTUnwrap(world.split(color: world.rank % 2) as? MPICommunicator)
      part.barrier()
      indices.append(part.handleIndex)
    }
    XCTAssertEqual(Set(indices).count, 1, "table slots \(indices): the parts are not freed")
  }

  /// A model with dropout (the frames preset's structure, dropout 0.5) trained on every rank ends where one process
  /// ends, within summation-order rounding at a learning rate of 1e-5: each row's dropout mask is keyed by the row,
  /// not by the rank that holds it or its place there. So does such a run stopped on the ranks and resumed by one.
  func testDropoutRunOnRanksMatchesOneProcess() throws {
    try XCTSkipIf(comm.size == 1, "one rank would compare itself with itself: runs under mpirun (Launch/test.sh mpi)")
    let dir = sharedDirectory()
    try writeFeatures(dir + "/f.h5", rows: 60)
    let spec = """
      {"name": "dropout", "input_length": 64, "layers": [{"type": "Reshape", "target_shape": [8, 8]},
      {"type": "Conv1D", "filters": 8, "kernel_size": 3, "activation": "relu"}, {"type": "BatchNormalization"},
      {"type": "GlobalMaxPooling1D"}, {"type": "Dropout", "rate": 0.5}, {"type": "Dense", "units": 16,
      "activation": "relu"}, {"type": "Dropout", "rate": 0.5}, {"type": "Dense", "activation": "softmax"}]}
      """
    if comm.rank == 0 { try spec.write(toFile: dir + "/spec.json", atomically: true, encoding: .utf8) }
    comm.barrier()
    var c = config(dir + "/f.h5", epochs: 2)
    (c.model, c.learningRate) = (dir + "/spec.json", 1e-5)
    let ranks = try Trainer.open(
      config: c, runDir: dir + "/ranks", resume: nil, comm: comm, options: .init(quiet: true))
    XCTAssertEqual(try ranks.run(), 0)
    // Stopped on the ranks mid-epoch (SIGUSR1) and resumed by one process, as a requeued job on fewer nodes.
    sertrain_clear_stop_request()
    let moved = try Trainer.open(
      config: c, runDir: dir + "/moved", resume: nil, comm: comm, options: .init(quiet: true))
    moved.onStep = { [comm] epoch, step in
      if epoch == 1 && step == 2 && comm.rank == comm.size - 1 { raise(SIGUSR1) }
    }
    XCTAssertEqual(try moved.run(), Trainer.exitStopped)
    sertrain_clear_stop_request()
    if comm.rank == 0 {
      let state = try XCTUnwrap(try Checkpoint.read(dir + "/moved/checkpoint-last.h5").training)
      XCTAssertEqual(state.firstMatch(of: #/"step"\s*:\s*([0-9]+)/#).map { Int($0.1)! }, 3, "stopped mid-epoch")
      let one = try Trainer.open(
        config: c, runDir: dir + "/one", resume: nil, comm: SingleProcessCommunicator(), options: .init(quiet: true))
      XCTAssertEqual(try one.run(), 0)
      let resumed = try Trainer.open(
        config: c, runDir: dir + "/moved", resume: "auto", comm: SingleProcessCommunicator(),
        options: .init(quiet: true))
      XCTAssertEqual(try resumed.run(), 0)
      let q = try finalParameters(dir + "/one")
      assertClose(try finalParameters(dir + "/ranks"), q, rtol: 1e-4, atol: 1e-6, "\(comm.size) ranks against one")
      assertClose(try finalParameters(dir + "/moved"), q, rtol: 1e-4, atol: 1e-6, "resumed by one process")
    }
    comm.barrier()
  }

  /// 49 train rows in batches of 8 leave a last batch of 1: with several ranks some have no rows in it and
  /// must still join the step. A run stopped by SIGUSR1 mid-epoch, or after an epoch's last step (its checkpoint
  /// then holds step 7 of 7, and the epoch's end runs on resume), and resumed ends bit for bit where an uninterrupted
  /// run ends.
  func testUnevenShardsAndSignalResumeBitForBit() throws {
    let dir = sharedDirectory()
    let data = dir + "/features.h5"
    try writeFeatures(data, rows: 61)
    let straight = try Trainer.open(
      config: config(data, epochs: 3), runDir: dir + "/straight", resume: nil, comm: comm, options: .init(quiet: true))
    XCTAssertEqual(try straight.run(), 0)
    // Every batch read from the file (no row cache): the same run.
    var uncached = TrainerOptions(quiet: true)
    uncached.rowCacheBytes = 0
    XCTAssertEqual(
      try Trainer.open(
        config: config(data, epochs: 3), runDir: dir + "/uncached", resume: nil, comm: comm, options: uncached
      ).run(), 0)
    if comm.rank == 0 { XCTAssertEqual(try finalParameters(dir + "/straight"), try finalParameters(dir + "/uncached")) }

    // The signal raised after step r is seen in step r+1's reduction, which the stop follows: (3, 4) mid-epoch, and
    // (6, 7) after the epoch's last step.
    for (raiseAt, stopAt) in [(3, 4), (6, 7)] {
      let run = dir + "/resumed-\(stopAt)"
      sertrain_clear_stop_request()
      let interrupted = try Trainer.open(
        config: config(data, epochs: 3), runDir: run, resume: nil, comm: comm, options: .init(quiet: true))
      interrupted.onStep = { [comm] epoch, step in
        if epoch == 1 && step == raiseAt && comm.rank == comm.size - 1 { raise(SIGUSR1) }
      }
      XCTAssertEqual(try interrupted.run(), Trainer.exitStopped)
      sertrain_clear_stop_request()
      let state = try XCTUnwrap(try Checkpoint.read(run + "/checkpoint-last.h5").training)
      let step = state.firstMatch(of: #/"step"\s*:\s*([0-9]+)/#).map { Int($0.1)! }
      XCTAssertEqual(step, stopAt, "the checkpoint's step")
      let resumed = try Trainer.open(
        config: config(data, epochs: 3), runDir: run, resume: "auto", comm: comm, options: .init(quiet: true))
      XCTAssertEqual(try resumed.run(), 0)
      if comm.rank == 0 {
        XCTAssertEqual(try finalParameters(dir + "/straight"), try finalParameters(run), "stopped after step \(stopAt)")
        let history = try String(contentsOfFile: run + "/history.csv", encoding: .utf8)
        XCTAssertEqual(history.split(separator: "\n").count, 4, history)
      }
    }
    comm.barrier()
  }

  /// NaN in the data makes the first step's loss non-finite on some rank; every rank stops with a clear error
  /// and no checkpoint is written from NaN weights.
  func testNaNInTheDataStopsWithAClearError() throws {
    let dir = sharedDirectory()
    let data = dir + "/features.h5"
    if comm.rank == 0 {
      let w = try FeatureFileWriter(path: data, width: 64, overwrite: true)
      var x = [Float](repeating: 0.25, count: 40 * 64)
      for i in x.indices { x[i] = Float(i % 7) * 0.1 }
      x[5 * 64 + 3] = .nan
      try x.withUnsafeBufferPointer {
        try w.append(
          rows: $0, labels: (0..<40).map { ["a", "b"][$0 % 2] }, sources: (0..<40).map { Int32($0) },
          augmentations: [Int8](repeating: 0, count: 40))
      }
      var recipe = FeatureRecipe()
      recipe.width = 64
      try w.finish(recipe: recipe, recordings: (0..<40).map { RecordingInfo(path: "\($0)", speaker: "", corpus: "") })
    }
    comm.barrier()
    var c = config(data, epochs: 2)
    c.standardize = false
    let trainer = try Trainer.open(
      config: c, runDir: dir + "/nan", resume: nil, comm: comm, options: .init(quiet: true))
    XCTAssertThrowsError(try trainer.run()) { XCTAssertTrue("\($0)".contains("not finite"), "\($0)") }
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/nan/checkpoint-last.h5"))
    comm.barrier()
  }

  /// The seed monitored `val_acc`, which Keras 3 never produces: here that is an error on every rank.
  func testUnknownMonitorIsAnErrorAtStartup() throws {
    let dir = sharedDirectory()
    let data = dir + "/features.h5"
    try writeFeatures(data, rows: 30)
    var c = config(data, epochs: 1)
    c.earlyStopping.monitor = "val_acc"
    XCTAssertThrowsError(
      try Trainer.open(config: c, runDir: dir + "/run", resume: nil, comm: comm, options: .init(quiet: true))
    ) {
      // Every rank fails together (no abort); rank 0 carries the message.
      XCTAssertTrue($0 is AgreedFailure, "\($0)")
      if comm.rank == 0 { XCTAssertTrue("\($0)".contains("val_acc") && "\($0)".contains("val_accuracy"), "\($0)") }
    }
    // No validation rows: the message says so, not that no metric produces val_accuracy.
    c.earlyStopping.monitor = "val_accuracy"
    c.validationFraction = 0
    XCTAssertThrowsError(
      try Trainer.open(config: c, runDir: dir + "/run2", resume: nil, comm: comm, options: .init(quiet: true))
    ) {
      if comm.rank == 0 { XCTAssertTrue("\($0)".contains("no validation rows"), "\($0)") }
    }
    comm.barrier()
  }

  /// The gradients reduced in buckets while backward runs equal the blocking allreduce's: within 1e-6 per tensor
  /// for buckets of any size (256 bytes here: many), bit for bit with one bucket holding everything; the same bucket
  /// size twice gives the same bits; the step's sums ride along.
  func testOverlappedReductionsEqualTheBlockingOne() throws {
    try XCTSkipIf(comm.size == 1, "overlap is off on one rank: runs under mpirun (Launch/test.sh mpi)")
    let spec = ModelSpec.tiny(inputLength: 64)
    let batch = 12
    var rng = TestRNG(seed: 4)
    let x = (0..<(batch * 64)).map { _ in rng.normal() }
    let labels = (0..<batch).map { Int32($0 % 3) }
    let mine = Array(Swift.stride(from: comm.rank, to: batch, by: comm.size))
    let xs = mine.flatMap { x[($0 * 64)..<(($0 + 1) * 64)] }
    let ys = mine.map { labels[$0] }
    func step(_ bucketBytes: Int) throws -> (Network, StepSums) {
      let network = try Network(spec: spec, classes: 3, seed: 7, reductionTail: StepSums.reductionFloats)
      network.statisticsReducer = comm.size > 1 ? { [comm] in comm.allreduceSum($0) } : nil
      let sums = xs.withUnsafeBufferPointer { x in
        ys.withUnsafeBufferPointer {
          trainStep(network, comm: comm, x: x.baseAddress!, labels: $0, globalRows: batch, bucketBytes: bucketBytes)
        }
      }
      return (network, sums)
    }
    let (blocking, blockingSums) = try step(0)
    let (overlapped, overlappedSums) = try step(256)
    let (again, _) = try step(256)
    let (whole, _) = try step(1 << 30)
    XCTAssertGreaterThan(overlapped.gradientBuckets(bytes: 256).count, 3, "the tiny model in several buckets")
    for view in blocking.parameterLayout.views {
      let error = relativeToMax(Array(overlapped.gradient(view.name)!), Array(blocking.gradient(view.name)!))
      XCTAssertLessThanOrEqual(error, 1e-6, "\(view.name), \(comm.size) ranks")
    }
    XCTAssertEqual(again.gradients.array, overlapped.gradients.array, "the same buckets twice")
    XCTAssertEqual(whole.gradients.array, blocking.gradients.array, "one bucket is the blocking allreduce")
    XCTAssertEqual(overlappedSums.rows, Double(batch))
    XCTAssertEqual(overlappedSums.loss, blockingSums.loss, accuracy: 1e-5 * abs(blockingSums.loss))
    XCTAssertEqual(overlappedSums.correct, blockingSums.correct)
  }

  /// More ranks than rows in a global batch: an error on every rank that says what to pass.
  func testMoreRanksThanTheBatchIsAnError() throws {
    guard comm.size > 1 else { throw XCTSkip("needs 2 ranks or more") }
    let dir = sharedDirectory()
    let data = dir + "/features.h5"
    try writeFeatures(data, rows: 30)
    var c = config(data, epochs: 1)
    c.batchSize = comm.size - 1
    XCTAssertThrowsError(
      try Trainer.open(config: c, runDir: dir + "/run", resume: nil, comm: comm, options: .init(quiet: true))
    ) {
      XCTAssertTrue($0 is AgreedFailure, "\($0)")
      if comm.rank == 0 { XCTAssertTrue("\($0)".contains("--batch-size \(comm.size) or more"), "\($0)") }
    }
    comm.barrier()
  }
}
