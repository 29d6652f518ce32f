/// Which way a monitored metric improves.
public enum MonitorMode: String, Codable, Sendable {
  case auto, min, max
}

/// Keras 3's `EarlyStopping`, state machine for state machine: `wait` counts every epoch and resets on an
/// improvement that also beats the baseline; training stops when `wait >= patience` after epoch 0; with
/// `restoreBestWeights` the weights of the best epoch (or of the first monitored epoch, if none improved) are
/// restored when training ends, stopped or not.
public struct EarlyStopping: Codable, Equatable, Sendable {
  public var monitor = "val_accuracy"
  public var minDelta = 0.0
  public var patience = 5
  public var mode = MonitorMode.auto
  public var baseline: Double?
  public var restoreBestWeights = true
  public var startFromEpoch = 0

  public var wait = 0
  public var stoppedEpoch = 0
  /// Keras starts from ±infinity; nil stands for it (JSON has no infinities).
  public var best: Double?
  public var bestEpoch = 0
  public var hasBestWeights = false

  public init() {}

  /// True when the monitored value should grow. Keras's `auto` reads the metric: loss goes down, accuracy up.
  public static func increasing(_ monitor: String, _ mode: MonitorMode) -> Bool? {
    switch mode {
    case .min: return false
    case .max: return true
    case .auto:
      let name = monitor.hasPrefix("val_") ? String(monitor.dropFirst(4)) : monitor
      if name == "loss" { return false }
      if name == "accuracy" { return true }
      return nil
    }
  }

  func improves(_ value: Double, over reference: Double?, increasing: Bool) -> Bool {
    guard let reference else { return true }
    let delta = abs(minDelta)
    return increasing ? value - delta > reference : value + delta < reference
  }

  /// Keras's `on_train_begin`: a new `fit` (here, a finished run continued with more epochs) starts afresh.
  public mutating func beginTraining() {
    wait = 0
    stoppedEpoch = 0
    best = nil
    bestEpoch = 0
    hasBestWeights = false
  }

  /// What to do at the end of `epoch` (0-based): stop, and whether to keep the current weights as the best.
  public mutating func onEpochEnd(epoch: Int, value: Double?) -> (stop: Bool, captureWeights: Bool) {
    guard let value, epoch >= startFromEpoch, let up = EarlyStopping.increasing(monitor, mode) else {
      return (false, false)
    }
    var capture = false
    if restoreBestWeights && !hasBestWeights {
      hasBestWeights = true
      bestEpoch = epoch
      capture = true
    }
    wait += 1
    if improves(value, over: best, increasing: up) {
      best = value
      bestEpoch = epoch
      if restoreBestWeights { capture = true }
      if baseline == nil || improves(value, over: baseline, increasing: up) { wait = 0 }
      return (false, capture)
    }
    if wait >= patience && epoch > 0 {
      stoppedEpoch = epoch
      return (true, capture)
    }
    return (false, capture)
  }
}

/// Keras 3's `ReduceLROnPlateau`: in cooldown the counter is decremented (and `wait` reset) before the
/// improvement test; an improvement (by more than `minDelta`) resets `wait`; otherwise, out of cooldown,
/// `wait` grows and at `patience` the rate becomes `max(lr * factor, minLR)` (if above `minLR`) and cooldown
/// starts. `best` is not reset after a reduction. `auto` maximises when the monitor's name contains "acc".
public struct ReduceLROnPlateau: Codable, Equatable, Sendable {
  public var monitor = "val_accuracy"
  public var factor = 0.5
  public var patience = 3
  public var mode = MonitorMode.auto
  public var minDelta = 1e-4
  public var cooldown = 0
  public var minLR = 1e-5

  public var cooldownCounter = 0
  public var wait = 0
  /// nil stands for Keras's initial ±infinity.
  public var best: Double?

  public init() {}

  var increasing: Bool { mode == .max || (mode == .auto && monitor.contains("acc")) }

  /// Keras's `on_train_begin` (its `_reset`).
  public mutating func beginTraining() {
    cooldownCounter = 0
    wait = 0
    best = nil
  }

  /// Returns the new learning rate when this epoch reduces it. The rate is float32, as in Keras's optimizer.
  public mutating func onEpochEnd(value: Double?, learningRate: Float) -> Float? {
    guard let value else { return nil }
    if cooldownCounter > 0 {
      cooldownCounter -= 1
      wait = 0
    }
    let better: Bool
    if let best {
      better = increasing ? value > best + minDelta : value < best - minDelta
    } else {
      better = true
    }
    if better {
      best = value
      wait = 0
    } else if cooldownCounter <= 0 {
      wait += 1
      if wait >= patience {
        let old = Double(learningRate)
        if old > Double(Float(minLR)) {
          let new = Float(max(old * factor, minLR))
          cooldownCounter = cooldown
          wait = 0
          return new
        }
      }
    }
    return nil
  }
}
