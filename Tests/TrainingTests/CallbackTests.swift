import ConvNet
import Training
import XCTest

/// Keras 3's EarlyStopping and ReduceLROnPlateau against vectors worked by hand from Keras's source.
final class CallbackTests: XCTestCase {
  func run(_ es: inout EarlyStopping, _ values: [Double]) -> (stoppedAt: Int?, captures: [Int]) {
    var captures: [Int] = []
    for (epoch, v) in values.enumerated() {
      let d = es.onEpochEnd(epoch: epoch, value: v)
      if d.captureWeights { captures.append(epoch) }
      if d.stop { return (epoch, captures) }
    }
    return (nil, captures)
  }

  /// patience 3, min_delta 0.01 on val_loss 1.00, .90, .85, .86, .87, .849: .849 is not .01 better than .85,
  /// so epoch 5 (0-based) stops and epoch 2's weights are the ones restored.
  func testEarlyStoppingStopsAtEpochFiveAndRestoresEpochTwo() {
    var es = EarlyStopping()
    (es.monitor, es.patience, es.minDelta) = ("val_loss", 3, 0.01)
    let r = run(&es, [1.00, 0.90, 0.85, 0.86, 0.87, 0.849])
    XCTAssertEqual(r.stoppedAt, 5)
    XCTAssertEqual(es.bestEpoch, 2)
    XCTAssertEqual(es.best, 0.85)
    XCTAssertEqual(r.captures.last, 2, "the last weights kept are epoch 2's")
  }

  func testEarlyStoppingOnAccuracyMaximises() {
    var es = EarlyStopping()
    es.patience = 2
    let r = run(&es, [0.5, 0.6, 0.6, 0.59, 0.7])
    XCTAssertEqual(r.stoppedAt, 3, "0.6 then 0.59: two epochs without improvement")
    XCTAssertEqual(es.bestEpoch, 1)
  }

  /// Patience 0 never stops at epoch 0; a baseline that is not beaten keeps `wait` counting although `best`
  /// improves; `start_from_epoch` ignores the first epochs entirely.
  func testPatienceZeroBaselineAndStartFromEpoch() {
    var zero = EarlyStopping()
    (zero.monitor, zero.patience) = ("val_loss", 0)
    XCTAssertEqual(run(&zero, [1.0, 1.1]).stoppedAt, 1)

    var baseline = EarlyStopping()
    (baseline.monitor, baseline.patience, baseline.baseline) = ("val_loss", 2, 0.5)
    let b = run(&baseline, [1.0, 0.9, 0.8, 0.7])
    XCTAssertEqual(b.stoppedAt, nil, "improving on best: no stop on the improving epochs themselves")
    XCTAssertEqual(baseline.wait, 4, "wait was never reset: the baseline 0.5 was never beaten")
    XCTAssertTrue(baseline.onEpochEnd(epoch: 4, value: 0.75).stop, "the next non-improving epoch stops")

    var late = EarlyStopping()
    (late.monitor, late.patience, late.startFromEpoch) = ("val_loss", 1, 2)
    let l = run(&late, [0.1, 0.1, 1.0, 1.1])
    XCTAssertEqual(l.stoppedAt, 3)
    XCTAssertEqual(late.bestEpoch, 2, "epochs before start_from_epoch are ignored")
  }

  func lrs(cooldown: Int, values: [Double], minLR: Double = 1e-5) -> [Float] {
    var r = ReduceLROnPlateau()
    (r.monitor, r.patience, r.factor, r.cooldown, r.minLR) = ("val_loss", 2, 0.5, cooldown, minLR)
    var lr: Float = 1
    return values.map { v in
      if let new = r.onEpochEnd(value: v, learningRate: lr) { lr = new }
      return lr
    }
  }

  /// A flat val_loss, patience 2, factor 0.5. Cooldown 1 behaves like cooldown 0 because the counter is
  /// decremented before it is checked; cooldown 2 delays the next reduction by one epoch.
  func testReduceLROnPlateauCooldownZeroOneTwo() {
    let flat = [Double](repeating: 1.0, count: 7)
    XCTAssertEqual(lrs(cooldown: 0, values: flat), [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])
    XCTAssertEqual(lrs(cooldown: 1, values: flat), [1, 1, 0.5, 0.5, 0.25, 0.25, 0.125])
    XCTAssertEqual(lrs(cooldown: 2, values: flat), [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
  }

  /// The rate stops at min_lr; an improvement smaller than min_delta is none; best is not reset by a reduction.
  func testReduceLROnPlateauFloorDeltaAndBest() {
    let flat = [Double](repeating: 1.0, count: 12)
    XCTAssertEqual(lrs(cooldown: 0, values: flat, minLR: 0.1).last, Float(0.1))
    XCTAssertEqual(lrs(cooldown: 0, values: [1.0, 0.99995, 0.99991]), [1, 1, 0.5], "1e-4 is the default min_delta")
    var r = ReduceLROnPlateau()
    (r.monitor, r.patience) = ("val_loss", 1)
    _ = r.onEpochEnd(value: 1.0, learningRate: 1)
    XCTAssertEqual(r.onEpochEnd(value: 2.0, learningRate: 1), 0.5)
    XCTAssertEqual(r.best, 1.0, "best survives the reduction")
  }

  func testAutoModeFollowsKerasNames() {
    XCTAssertEqual(EarlyStopping.increasing("val_accuracy", .auto), true)
    XCTAssertEqual(EarlyStopping.increasing("loss", .auto), false)
    XCTAssertNil(EarlyStopping.increasing("val_f1", .auto), "Keras cannot tell: an error at startup")
  }

  /// Goyal et al.'s rule: the rate scaled with the batch, reached by equal steps over the warmup epochs.
  func testLearningRateScalingAndWarmup() {
    var c = TrainConfig()
    (c.learningRate, c.batchSize) = (1e-3, 256)
    XCTAssertEqual(c.scaledLearningRate, 1e-3, "no scaling by default")
    c.lrScaling = .linear
    XCTAssertEqual(c.scaledLearningRate, 4e-3, accuracy: 1e-15)
    c.lrScaling = .sqrt
    XCTAssertEqual(c.scaledLearningRate, 2e-3, accuracy: 1e-15)
    (c.lrScaling, c.baseBatch) = (.linear, 128)
    XCTAssertEqual(c.scaledLearningRate, 2e-3, accuracy: 1e-15)
    c.warmupEpochs = 2
    // 2 epochs of 4 steps: 1e-3 + 1e-3 * (k + 1) / 8 for steps 0 ... 7, then the target.
    let rates = (0..<10).map { c.learningRate(step: $0, stepsPerEpoch: 4, target: 2e-3) }
    var expected: [Double] = (0..<8).map { k in 1e-3 + 1e-3 * Double(k + 1) / 8 }
    expected += [2e-3, 2e-3]
    for (r, e) in zip(rates, expected) { XCTAssertEqual(r, e, accuracy: 1e-15) }
    c.warmupEpochs = nil
    XCTAssertEqual(c.learningRate(step: 0, stepsPerEpoch: 4, target: 2e-3), 2e-3, "no warmup: the target at once")
    // BatchNorm's moving averages keep their horizon in samples: momentum^(batch/base).
    (c.batchSize, c.baseBatch) = (256, 64)
    var spec = ModelSpec.tiny(inputLength: 40)
    spec.layers[1].momentum = 0.9
    let scaled = c.scalingMomentum(spec).layers.filter { $0.type == .batchNormalization }.map { $0.momentum ?? -1 }
    XCTAssertEqual(scaled[0], 0.9 * 0.9 * 0.9 * 0.9, accuracy: 1e-12)
    XCTAssertTrue(scaled.dropFirst().allSatisfy { abs($0 - 0.960596) < 1e-6 }, "\(scaled)")
    c.lrScaling = TrainConfig.LRScaling.none
    XCTAssertEqual(c.scalingMomentum(spec), spec, "no scaling, no change")
  }
}
