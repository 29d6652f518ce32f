import ArgumentParser
import Base
import Bench
import Collective
import ConvNet
import ProcessSetup
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct BenchTrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Data-parallel train steps: 1 rank x N threads against N ranks x 1 thread under mpirun.")

  @OptionGroup var steps: StepOptions

  @Option(help: "Ranks of the MPI configuration (each with one BLAS thread).")
  var ranks = 2

  @Option(help: "Repetitions of each configuration, interleaved.")
  var repeats = 2

  @Flag(help: .private)
  var child = false

  func run() throws {
    try runReportingErrors {
      let env = environment()
      var spec = try ModelSpec.load(steps.model)
      spec.inputLength = 2376
      if child {
        let comm = try makeCommunicator(env)
        configureThreads(environment: env)
        let s = try benchmarkDataParallelSteps(
          spec: spec, comm: comm, globalBatch: steps.batchSize, steps: steps.steps, warmup: steps.warmup)
        if comm.rank == 0 { print(s.json()) }
        return
      }
      configureThreads(environment: env)
      let threads = blasThreads
      let network = try Network(spec: spec, classes: 7)
      let flops = trainingFlopsPerSample(network)
      print("machine: \(machineDescription()); model \(spec.name), batch \(steps.batchSize), kernels \(blasCoreName)")
      let args = [currentExecutable(), "bench", "train", "--child"] + steps.arguments
      let mpirun = ["mpirun", "-n", "\(ranks)", "--bind-to", "core", "--oversubscribe", "-x", "OPENBLAS_NUM_THREADS=1"]
      let configurations = [
        (args, ["OPENBLAS_NUM_THREADS": "\(threads)"]),
        (mpirun + args, mpirunEnvironment.merging(["OPENBLAS_NUM_THREADS": "1"]) { $1 }),
      ]
      let results = try interleaved([repeats, repeats]) { c, i in
        let (_, s) = try runChild(configurations[c].0, environment: configurations[c].1, as: TrainBenchSample.self)
        let rate = Double(steps.batchSize) / median(s.stepSeconds)
        print(
          "  run \(i + 1): \(s.ranks) rank(s) x \(s.threads) thread(s): \(fixed(rate, 2)) samples/s "
            + "(steps \(s.stepSeconds.map { fixed($0, 2) }.joined(separator: ", ")) s), allreduce "
            + "\(fixed(1000 * median(s.allreduceSeconds), 1)) ms per step, bare allreduce "
            + "\(fixed(1000 * median(s.bareAllreduceSeconds), 1)) ms")
        fflush(stdout)
        return s
      }
      let megabytes = Double(network.trainableCount * 4) / 1e6
      var rates: [Double] = []
      for r in results {
        let step = median(r.flatMap(\.stepSeconds))
        let reduce = median(r.flatMap(\.allreduceSeconds))
        let bare = median(r.flatMap(\.bareAllreduceSeconds))
        rates.append(Double(steps.batchSize) / step)
        print(
          "\(r[0].ranks) rank(s) x \(r[0].threads) thread(s): median step \(fixed(step, 3)) s = "
            + "\(fixed(Double(steps.batchSize) / step, 2)) samples/s = \(fixed(Double(steps.batchSize) / step * flops / 1e9, 1)) "
            + "GFLOP/s; gradient allreduce (\(fixed(megabytes, 1)) MB) \(fixed(1000 * reduce, 1)) ms = "
            + "\(fixed(100 * reduce / step, 1))% of a step; bare MPI_Allreduce \(fixed(1000 * bare, 1)) ms")
      }
      print("\(ranks) ranks vs 1 rank x \(threads) threads: \(fixed(rates[1] / rates[0], 3))x")
    }
  }
}
