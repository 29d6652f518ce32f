import Base
import Collective
import ConvNet
import FoundationEssentials
import ProcessSetup
import Training

#if canImport(Glibc)
  import Glibc
#endif

/// One configuration's measurements in `bench train` (printed by rank 0 as a JSON line).
public struct TrainBenchSample: JSONLine, Sendable {
  public var ranks: Int
  public var threads: Int
  public var stepSeconds: [Double]
  public var allreduceSeconds: [Double]
  public var bareAllreduceSeconds: [Double]
  /// Per timed step (rank 0's): forward, backward, Adam; with overlap, the buckets' starts (seconds after backward
  /// began) and floats, of the median step.
  public var forwardSeconds: [Double] = []
  public var backwardSeconds: [Double] = []
  public var adamSeconds: [Double] = []
  public var bucketStartSeconds: [Double] = []
  public var bucketFloats: [Int] = []
  /// Bare allreduces of `bareFloats` floats, median seconds each (the alpha-beta fit of `bench scale`).
  public var bareFloats: [Int] = []
  public var bareSeconds: [Double] = []
  public var bucketBytes = 0
  public var globalBatch = 0
  public var gradientFloats = 0
}

/// Data-parallel train steps exactly as `Trainer` takes them (`trainStep`: a strided share of a global batch per
/// rank, synchronised BatchNorm, one in-place allreduce of the gradients and the step's sums; then Adam), on random
/// data; then a bare `MPI_Allreduce` of the same buffer, for comparison.
public func benchmarkDataParallelSteps(
  spec: ModelSpec, comm: Communicator, globalBatch: Int, steps: Int, warmup: Int, bucketBytes: Int = 0,
  bareSizes: [Int] = []
) throws -> TrainBenchSample {
  let network = try Network(spec: spec, classes: 7, seed: 1, reductionTail: StepSums.reductionFloats)
  network.statisticsReducer = comm.size > 1 ? { [comm] in comm.allreduceSum($0) } : nil
  let adam = Adam(count: network.trainableCount)
  let local = comm.share(0..<globalBatch)
  var rng = RandomStream(seed: 3, stream: [UInt64(comm.rank)])
  let x = (0..<(local.count * network.inputWidth)).map { _ in Float(rng.normal()) }
  let labels = local.map { Int32($0 % 7) }
  let reduced = UnsafeMutableBufferPointer(start: network.gradients.pointer, count: network.gradients.count)
  var stepTimes: [Double] = []
  var reduceTimes: [Double] = []
  var (forward, backward, update, starts) = ([Double](), [Double](), [Double](), [[(seconds: Double, floats: Int)]]())
  for step in 0..<(warmup + steps) {
    comm.barrier()
    let t0 = monotonicSeconds()
    let sums = x.withUnsafeBufferPointer { x in
      labels.withUnsafeBufferPointer {
        trainStep(network, comm: comm, x: x.baseAddress!, labels: $0, globalRows: globalBatch, bucketBytes: bucketBytes)
      }
    }
    let t1 = monotonicSeconds()
    adam.update(network.parameters, network.gradients)
    if step >= warmup {
      stepTimes.append(monotonicSeconds() - t0)
      reduceTimes.append(sums.allreduceSeconds)
      (forward, backward, update) = (
        forward + [sums.forwardSeconds], backward + [sums.backwardSeconds], update + [monotonicSeconds() - t1]
      )
      starts.append(sums.bucketStarts)
    }
  }
  func bare(_ floats: Int) -> Double {
    let buffer = UnsafeMutableBufferPointer(start: reduced.baseAddress!, count: min(floats, reduced.count))
    return median(
      (0..<5).map { _ in
        usleep(100_000)  // a pause, as a step's compute gives: back to back, tc's queue made them slower
        comm.barrier()
        let t0 = monotonicSeconds()
        comm.allreduceSum(buffer)
        return monotonicSeconds() - t0
      })
  }
  var sample = TrainBenchSample(
    ranks: comm.size, threads: blasThreads, stepSeconds: stepTimes, allreduceSeconds: reduceTimes,
    bareAllreduceSeconds: [bare(reduced.count)])
  (sample.forwardSeconds, sample.backwardSeconds, sample.adamSeconds) = (forward, backward, update)
  let middle = stepTimes.indices.sorted { stepTimes[$0] < stepTimes[$1] }[stepTimes.count / 2]
  (sample.bucketStartSeconds, sample.bucketFloats) = (starts[middle].map(\.seconds), starts[middle].map(\.floats))
  sample.bareFloats = bareSizes.map { min($0, reduced.count) }
  sample.bareSeconds = sample.bareFloats.map(bare)
  (sample.bucketBytes, sample.globalBatch, sample.gradientFloats) = (bucketBytes, globalBatch, reduced.count)
  return sample
}
