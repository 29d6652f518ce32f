import Training
import XCTest

/// The resume's resolution (`Trainer.resolveResume`): what may change on resume and what may not, with no files.
final class ResumeTests: XCTestCase {
  /// A run recorded at epoch 3 of 5 (or finished there), with early stopping part-way through its patience.
  func recorded(finished: Bool = false) -> TrainingState {
    var config = TrainConfig()
    (config.epochs, config.batchSize, config.data, config.precision) = (5, 64, "old.h5", .bf16)
    var s = TrainingState(config: config)
    (s.epoch, s.finished, s.weightsEpoch, s.dataPath) = (3, finished, 2, "/recorded/features.h5")
    var stopping = EarlyStopping()
    (stopping.wait, stopping.best) = (2, 0.7)
    s.savedEarlyStopping = stopping
    return s
  }

  func resolve(
    _ s: TrainingState, _ given: Set<TrainConfig.Setting>, readable: Bool = true, _ change: (inout TrainConfig) -> Void
  ) throws -> (state: TrainingState, notes: [String], contradictions: [String]) {
    var config = TrainConfig()
    change(&config)
    return try Trainer.resolveResume(of: s, checkpoint: "c.h5", config: config, given: given) { _ in readable }
  }

  func testGivenSettingsThatDifferContradictTheRun() throws {
    let r = try resolve(recorded(), [.batchSize, .seed]) { ($0.batchSize, $0.seed) = (32, 0) }
    XCTAssertEqual(
      r.contradictions,
      [
        "--batch-size 32 contradicts the run being resumed (c.h5: 64): drop it to resume, or start a new run with "
          + "another --run-dir"
      ])
    // Not given, or given alike: no contradiction; what may change never contradicts.
    XCTAssertEqual(try resolve(recorded(), []) { $0.batchSize = 32 }.contradictions, [])
    XCTAssertEqual(try resolve(recorded(), [.batchSize]) { $0.batchSize = 64 }.contradictions, [])
    XCTAssertEqual(
      try resolve(recorded(), [.epochs, .precision, .data]) {
        ($0.epochs, $0.precision, $0.data) = (9, .fp32, "x.h5")
      }.contradictions, [])
  }

  func testTheEpochBudget() throws {
    // An unfinished run takes the new budget, fewer epochs too.
    XCTAssertEqual(try resolve(recorded(), [.epochs]) { $0.epochs = 4 }.state.config.epochs, 4)
    // A finished run continues only for more epochs than it had, its callbacks afresh.
    let more = try resolve(recorded(finished: true), [.epochs]) { $0.epochs = 8 }
    XCTAssertFalse(more.state.finished)
    XCTAssertEqual(more.state.config.epochs, 8)
    XCTAssertNil(more.state.weightsEpoch)
    XCTAssertEqual(more.state.savedEarlyStopping?.wait, 0)
    XCTAssertNil(more.state.savedEarlyStopping?.best)
    XCTAssertEqual(more.notes, ["continuing the finished run from epoch 3 to 8"])
    for budget in [5, 3] {
      let again = try resolve(recorded(finished: true), [.epochs]) { $0.epochs = budget }
      XCTAssertTrue(again.state.finished, "--epochs \(budget) on a finished 5-epoch run")
      XCTAssertEqual(again.state.config.epochs, 5)
      XCTAssertEqual(again.state.weightsEpoch, 2)
      XCTAssertEqual(again.notes, [])
    }
    // Not given: the run's own budget.
    XCTAssertEqual(try resolve(recorded(), []) { $0.epochs = 50 }.state.config.epochs, 5)
  }

  func testPrecisionAndDataPath() throws {
    XCTAssertEqual(try resolve(recorded(), []) { $0.precision = .fp32 }.state.config.precision, .bf16)
    XCTAssertEqual(try resolve(recorded(), [.precision]) { $0.precision = .fp32 }.state.config.precision, .fp32)
    // The recorded path when it is readable and --data was not given; else the given (or default) one.
    XCTAssertEqual(try resolve(recorded(), []) { $0.data = "d.h5" }.state.config.data, "/recorded/features.h5")
    XCTAssertEqual(try resolve(recorded(), [.data]) { $0.data = "d.h5" }.state.config.data, "d.h5")
    XCTAssertEqual(try resolve(recorded(), [], readable: false) { $0.data = "d.h5" }.state.config.data, "d.h5")
  }

  func testAnInvalidStateIsAnError() throws {
    var s = recorded()
    s.epoch = -3
    XCTAssertThrowsError(try resolve(s, []) { _ in }) {
      XCTAssertTrue("\($0)".contains("c.h5") && "\($0)".contains("not valid"), "\($0)")
    }
  }
}
