import ArgumentParser
import Collective
import ConvNet
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct BenchModelCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "model",
    abstract: "Train steps and inference of a model on random data; peer: Keras 3 on TensorFlow CPU.")

  @Option(help: "Model preset or spec (the peer always runs the seed model).")
  var model = "seed"

  @Option(help: "Batch size.")
  var batchSize = 64

  @Option(help: "Timed train steps per process.")
  var steps = 5

  @Option(help: "Untimed train steps first.")
  var warmup = 1

  @Option(help: "Batches of inference per process.")
  var predictBatches = 4

  @Flag(help: "Print the seconds each layer's forward and backward take (on standard error).")
  var profile = false

  @Flag(help: .private)
  var child = false

  @OptionGroup var options: BenchOptions

  func run() throws {
    try runReportingErrors {
      configureBLASThreads(environment: environment())
      let spec = try ModelSpec.load(model)
      if child {
        let sample = try benchmarkTraining(
          spec: spec, batch: batchSize, steps: steps, warmup: warmup, predictBatches: predictBatches,
          profile: profile)
        print(sample.json())
        return
      }
      let network = try Network(spec: spec, classes: 7)
      let flops = trainingFlopsPerSample(network)
      print("machine: \(machineDescription()), OpenBLAS \(blasThreads) threads")
      print(
        "model \(spec.name): \(network.trainableCount + network.nonTrainableCount) parameters, "
          + "\(fixed(flops / 1e9, 2)) GFLOP per sample (forward + backward), batch \(batchSize)")
      let peak = measureSGEMMPeak()
      print("sgemm peak (4096^3, best of 3): \(fixed(peak, 1)) GFLOP/s")
      let python =
        options.noPeer || model != "seed"
        ? nil : try benchmarkVenv(options.venv, packages: ["tensorflow-cpu", "h5py"])
      var script = ""
      if python != nil {
        script = "/tmp/sertrain-keras-peer-\(getpid()).py"
        let fp = fopen(script, "w")!
        fputs(kerasModelPeerScript, fp)
        fclose(fp)
      }
      defer { if !script.isEmpty { unlink(script) } }
      let args = ["\(batchSize)", "\(steps)", "\(warmup)", "\(predictBatches)"]
      var ours: [ModelBenchSample] = []
      var peer: [ModelBenchSample] = []
      for i in 0..<max(options.repeats, python == nil ? 0 : options.peerRepeats) {
        if i < options.repeats {
          let (m, out) = try runCapturing(
            [
              currentExecutable(), "bench", "model", "--child", "--model", model, "--batch-size", args[0],
              "--steps", args[1], "--warmup", args[2], "--predict-batches", args[3],
            ] + (profile ? ["--profile"] : []))
          guard m.status == 0, let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw ChildError(message: "sertrain bench child exited \(m.status)")
          }
          var s = try ModelBenchSample.parse(String(line))
          s.peakMegabytes = m.maxRSSMegabytes
          report("sertrain", i, s, flops: flops, peak: peak)
          ours.append(s)
        }
        if let python, i < options.peerRepeats {
          let (m, out) = try runCapturing([python, script] + args)
          guard m.status == 0, let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
            throw ChildError(message: "the Keras peer exited \(m.status)")
          }
          var s = try ModelBenchSample.parse(String(line))
          s.peakMegabytes = m.maxRSSMegabytes
          report("keras ", i, s, flops: flops, peak: peak)
          peer.append(s)
        }
      }
      let oursStep = median(ours.flatMap(\.stepSeconds))
      let oursRate = Double(batchSize) / oursStep
      let oursPredict = median(ours.map(\.predictSamplesPerSecond))
      print(
        "sertrain: median step \(fixed(oursStep, 3)) s = \(fixed(oursRate, 2)) samples/s = "
          + "\(fixed(oursRate * flops / 1e9, 1)) GFLOP/s = \(fixed(100 * oursRate * flops / 1e9 / peak, 1))% of sgemm "
          + "peak; predict \(fixed(oursPredict, 1)) samples/s; peak RSS \(fixed(ours.map(\.peakMegabytes).max()!, 0)) MB"
      )
      guard !peer.isEmpty else { return }
      let peerStep = median(peer.flatMap(\.stepSeconds))
      let peerRate = Double(batchSize) / peerStep
      let peerPredict = median(peer.map(\.predictSamplesPerSecond))
      print(
        "keras:    median step \(fixed(peerStep, 3)) s = \(fixed(peerRate, 2)) samples/s = "
          + "\(fixed(peerRate * flops / 1e9, 1)) GFLOP/s; predict \(fixed(peerPredict, 1)) samples/s; "
          + "peak RSS \(fixed(peer.map(\.peakMegabytes).max()!, 0)) MB")
      print(
        "ratio (sertrain / keras): training \(fixed(oursRate / peerRate, 2))x, predict "
          + "\(fixed(oursPredict / peerPredict, 2))x")
    }
  }

  private func report(_ who: String, _ i: Int, _ s: ModelBenchSample, flops: Double, peak: Double) {
    let rate = Double(batchSize) / median(s.stepSeconds)
    print(
      "  \(who) run \(i + 1): steps \(s.stepSeconds.map { fixed($0, 2) }.joined(separator: ", ")) s -> "
        + "\(fixed(rate, 2)) samples/s (\(fixed(100 * rate * flops / 1e9 / peak, 1))% of peak), predict "
        + "\(fixed(s.predictSamplesPerSecond, 1)) samples/s, peak \(fixed(s.peakMegabytes, 0)) MB")
  }
}
