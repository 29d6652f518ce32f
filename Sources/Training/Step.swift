import Base
import Collective
import ConvNet

/// What a training step sums over the ranks. It rides in the same allreduce as the gradients, in the floats
/// `Network` keeps after them (`Network.gradientTail`).
public struct StepSums: Sendable {
  /// Cross-entropy summed over the step's rows, rows classified right, rows.
  public var loss = 0.0
  public var correct = 0.0
  public var rows = 0.0
  /// Some rank's loss was NaN or infinite.
  public var nonFinite = false
  /// Some rank was asked to stop (SIGUSR1, SIGTERM) before the step's reduction.
  public var stop = false
  /// Seconds this rank spent in the allreduce.
  public var allreduceSeconds = 0.0
}

/// One data-parallel training step, as `Trainer` takes it and the benchmarks time it: forward in training mode on
/// this rank's `labels.count` rows of `x` (`[rows, inputWidth]`; no rows: the step's collectives are joined with
/// zeros), the loss, backward scaled by `1/globalRows`, then one in-place allreduce of the gradients and the
/// step's sums. The caller applies the optimizer (unless the sums are not finite).
public func trainStep(
  _ network: Network, comm: Communicator, x: UnsafePointer<Float>, labels: UnsafeBufferPointer<Int32>,
  globalRows: Int, dropoutSeed: UInt64 = 0, stop: Bool = false
) -> StepSums {
  let tail = network.gradients.pointer + network.trainableCount
  if labels.isEmpty {
    network.emptyTrainingStep()
  } else {
    _ = network.forward(x, batch: labels.count, training: true, dropoutSeed: dropoutSeed)
    let (loss, correct) = network.loss(labels: labels)
    network.backward(labels: labels, scale: 1 / Float(globalRows))
    tail[0] = Float(loss)
    tail[1] = Float(correct)
    tail[2] = Float(labels.count)
    tail[3] = loss.isFinite ? 0 : 1
  }
  tail[4] = stop ? 1 : 0
  let t0 = monotonicSeconds()
  comm.allreduceSum(
    UnsafeMutableBufferPointer(start: network.gradients.pointer, count: network.trainableCount + Network.gradientTail))
  var sums = StepSums()
  sums.allreduceSeconds = monotonicSeconds() - t0
  (sums.loss, sums.correct, sums.rows) = (Double(tail[0]), Double(tail[1]), Double(tail[2]))
  sums.nonFinite = tail[3] > 0
  sums.stop = tail[4] > 0
  return sums
}
