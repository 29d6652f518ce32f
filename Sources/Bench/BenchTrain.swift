import Base
import Collective
import ConvNet
import FoundationEssentials
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
}

/// Data-parallel train steps exactly as `Trainer` takes them (`trainStep`: a strided share of a global batch per
/// rank, synchronised BatchNorm, one in-place allreduce of the gradients and the step's sums; then Adam), on random
/// data; then a bare `MPI_Allreduce` of the same buffer, for comparison.
public func benchmarkDataParallelSteps(
  spec: ModelSpec, comm: Communicator, globalBatch: Int, steps: Int, warmup: Int
) throws -> TrainBenchSample {
  let network = try Network(spec: spec, classes: 7, seed: 1)
  network.statisticsReducer = comm.size > 1 ? { [comm] in comm.allreduceSum($0) } : nil
  let adam = Adam(count: network.trainableCount)
  let local = comm.share(0..<globalBatch)
  var rng = RandomStream(seed: 3, stream: [UInt64(comm.rank)])
  let x = (0..<(local.count * network.inputWidth)).map { _ in Float(rng.normal()) }
  let labels = local.map { Int32($0 % 7) }
  let reduced = UnsafeMutableBufferPointer(
    start: network.gradients.pointer, count: network.trainableCount + Network.gradientTail)
  var stepTimes: [Double] = []
  var reduceTimes: [Double] = []
  for step in 0..<(warmup + steps) {
    comm.barrier()
    let t0 = monotonicSeconds()
    let sums = x.withUnsafeBufferPointer { x in
      labels.withUnsafeBufferPointer {
        trainStep(network, comm: comm, x: x.baseAddress!, labels: $0, globalRows: globalBatch)
      }
    }
    adam.update(network.parameters, network.gradients)
    if step >= warmup {
      stepTimes.append(monotonicSeconds() - t0)
      reduceTimes.append(sums.allreduceSeconds)
    }
  }
  var bare: [Double] = []
  for _ in 0..<5 {
    comm.barrier()
    let t0 = monotonicSeconds()
    comm.allreduceSum(reduced)
    bare.append(monotonicSeconds() - t0)
  }
  return TrainBenchSample(
    ranks: comm.size, threads: blasThreads, stepSeconds: stepTimes, allreduceSeconds: reduceTimes,
    bareAllreduceSeconds: bare)
}
