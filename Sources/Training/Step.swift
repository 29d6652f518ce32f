import Base
import Collective
import ConvNet

/// What a training step sums over the ranks. It rides in the same allreduce as the gradients, in the floats a
/// training network keeps after them (`Network(reductionTail: StepSums.reductionFloats)`), one `Slot` each.
public struct StepSums: Sendable {
  /// Where each sum sits after the gradients.
  enum Slot: Int, CaseIterable { case loss, correct, rows, nonFinite, stop }
  /// Floats `trainStep` needs after a network's gradients.
  public static let reductionFloats = Slot.allCases.count

  /// The slots after `network`'s gradients.
  struct Tail {
    let base: UnsafeMutablePointer<Float>
    subscript(_ slot: Slot) -> Float {
      get { base[slot.rawValue] }
      nonmutating set { base[slot.rawValue] = newValue }
    }
  }

  /// Cross-entropy summed over the step's rows, rows classified right, rows.
  public var loss = 0.0
  public var correct = 0.0
  public var rows = 0.0
  /// Some rank's loss was NaN or infinite.
  public var nonFinite = false
  /// Some rank was asked to stop (SIGUSR1, SIGTERM) before the step's reduction.
  public var stop = false
  /// Seconds this rank waited for the gradients' reduction after its backward (with overlap: the part not hidden).
  public var allreduceSeconds = 0.0
  /// Seconds of forward and loss, and of backward; with overlap, each bucket's start (seconds after backward
  /// began) and floats: what `bench scale` models communication and overlap from.
  public var forwardSeconds = 0.0
  public var backwardSeconds = 0.0
  public var bucketStarts: [(seconds: Double, floats: Int)] = []
}

/// One data-parallel training step, as `Trainer` takes it and the benchmarks time it: forward in training mode on
/// this rank's `labels.count` rows of `x` (`[rows, inputWidth]`; no rows: the step's collectives are joined with
/// zeros; `dropoutKeys`: the rows' keys into the step's dropout masks), the loss, backward scaled by
/// `1/globalRows`, and the sum over ranks of the gradients and the step's sums. With `bucketBytes` 0 that sum is one
/// blocking allreduce after backward; otherwise the gradients go in buckets of at least that many bytes
/// (`Network.gradientBuckets`), each handed to the communicator's nonblocking reductions as soon as backward has
/// finished its layers (a thread of the communicator drives them while backward goes on), all complete before this
/// returns. The caller applies the optimizer (unless the sums are not finite).
public func trainStep(
  _ network: Network, comm: Communicator, x: UnsafePointer<Float>, labels: UnsafeBufferPointer<Int32>,
  globalRows: Int, dropoutSeed: UInt64 = 0, dropoutKeys: [UInt64]? = nil, stop: Bool = false, bucketBytes: Int = 0,
  classWeights: [Float]? = nil
) -> StepSums {
  precondition(
    network.reductionTail >= StepSums.reductionFloats,
    "trainStep: the network needs reductionTail: StepSums.reductionFloats for the step's sums")
  let tail = StepSums.Tail(base: network.gradients.pointer + network.trainableCount)
  let overlap = bucketBytes > 0 && comm.size > 1
  // On one rank buckets are only timed (when each would start), for `bench scale`'s model.
  let buckets = bucketBytes > 0 ? network.gradientBuckets(bytes: bucketBytes) : []
  var next = 0
  var sums = StepSums()
  var backwardStart = monotonicSeconds()
  // Starts the buckets that layer k completes.
  func afterLayer(_ k: Int) {
    while next < buckets.count && buckets[next].afterLayer == k {
      let r = buckets[next].range
      sums.bucketStarts.append((monotonicSeconds() - backwardStart, r.count))
      if overlap {
        comm.startAllreduceSum(
          UnsafeMutableBufferPointer(start: network.gradients.pointer + r.lowerBound, count: r.count))
      }
      next += 1
    }
    comm.progressReductions()
  }
  if labels.isEmpty {
    network.emptyTrainingStep()
    tail[.stop] = stop ? 1 : 0
    if overlap { for k in stride(from: network.layerCount - 1, through: 0, by: -1) { afterLayer(k) } }
  } else {
    let forwardStart = monotonicSeconds()
    _ = network.forward(x, batch: labels.count, training: true, dropoutSeed: dropoutSeed, dropoutKeys: dropoutKeys)
    let (loss, correct) = network.loss(labels: labels, classWeights: classWeights)
    // The tail first: it rides in the first bucket, which leaves before backward is over.
    (tail[.loss], tail[.correct], tail[.rows]) = (Float(loss), Float(correct), Float(labels.count))
    (tail[.nonFinite], tail[.stop]) = (loss.isFinite ? 0 : 1, stop ? 1 : 0)
    backwardStart = monotonicSeconds()
    sums.forwardSeconds = backwardStart - forwardStart
    network.backward(
      labels: labels, scale: 1 / Float(globalRows), classWeights: classWeights,
      afterLayer: buckets.isEmpty ? nil : afterLayer)
  }
  let t0 = monotonicSeconds()
  sums.backwardSeconds = t0 - backwardStart
  if overlap {
    comm.finishReductions()
  } else {
    comm.allreduceSum(
      UnsafeMutableBufferPointer(start: network.gradients.pointer, count: network.gradients.count))
  }
  sums.allreduceSeconds = monotonicSeconds() - t0
  (sums.loss, sums.correct, sums.rows) = (Double(tail[.loss]), Double(tail[.correct]), Double(tail[.rows]))
  (sums.nonFinite, sums.stop) = (tail[.nonFinite] > 0, tail[.stop] > 0)
  return sums
}
