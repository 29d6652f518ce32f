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

struct BenchModelCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "model",
    abstract: "Train steps and inference of a model on random data; peer: Keras 3 on TensorFlow CPU (seed, frames).")

  @OptionGroup var steps: StepOptions

  @Option(help: "Batches of inference per process.")
  var predictBatches = 4

  @Flag(help: "Print the seconds each layer's forward and backward take (on standard error).")
  var profile = false

  /// Which kernels run the convolutions.
  enum Convolution: String, ExpressibleByArgument, CaseIterable {
    case auto, avx2, blas
    /// `KernelPolicy.directConvolutionLevel` for this choice.
    var level: Int { self == .auto ? 2 : self == .avx2 ? 1 : 0 }
  }

  @Option(
    help: """
      Convolution kernels: auto (the direct convolution for this CPU: AVX-512 or AVX2), avx2 (the AVX2 kernels \
      even where AVX-512 runs), blas (OpenBLAS GEMMs).
      """)
  var convolution = Convolution.auto

  @Option(
    help: """
      Arithmetic of sertrain's convolutions: fp32, bf16 (bfloat16 multiplies, float sums; measured beside fp32 in \
      the same run), auto (bf16 where the CPU has AVX512-BF16).
      """)
  var precision = PrecisionOption.fp32

  @Option(
    help: """
      The Keras peer's policy: fp32, or bf16 (keras.mixed_precision "mixed_bfloat16", as a Keras user turns \
      bfloat16 on).
      """)
  var peerPrecision = Precision.fp32

  @Flag(help: .private)
  var child = false

  @OptionGroup var options: BenchOptions

  func run() throws {
    try runReportingErrors {
      configureThreads(environment: environment())
      let policy = KernelPolicy(precision: try precision.resolved(), directConvolutionLevel: convolution.level)
      let spec = try ModelSpec.load(steps.model)
      if child {
        let sample = try benchmarkTraining(
          spec: spec, batch: steps.batchSize, steps: steps.steps, warmup: steps.warmup, predictBatches: predictBatches,
          profile: profile, policy: policy)
        print(sample.json())
        return
      }
      let network = try Network(spec: spec, classes: 7, policy: policy)
      let flops = trainingFlopsPerSample(network)
      let level = policy.directConvolutionInUse
      let direct =
        level == 0 ? "convolutions as OpenBLAS GEMMs" : "direct convolution (\(level == 2 ? "AVX-512" : "AVX2"))"
      let winograd =
        "; Winograd for the gradients (F(4, k), F(k, 4))"
        + (policy.precision == .fp32 ? " and inference" : " (bf16 GEMMs); direct bf16 forwards")
      print(
        "machine: \(machineDescription()), OpenBLAS \(blasThreads) threads, kernels \(blasCoreName); \(direct)\(winograd)"
      )
      print(
        "model \(spec.name): \(network.trainableCount + network.nonTrainableCount) parameters, "
          + "\(fixed(flops / 1e9, 2)) GFLOP per sample (forward + backward), batch \(steps.batchSize)"
          + " (the direct convolution's count: Winograd's gradients do fewer, so a share of the sgemm peak "
          + "can pass 100%)")
      // sertrain as configured, and also with the kernels it would pick on this CPU when the environment pins
      // older ones (OPENBLAS_CORETYPE): each process measures its own sgemm peak first.
      let precision = try self.precision.resolved()
      var configurations: [(String, [String: String], Precision)] = [("sertrain", [:], precision)]
      if precision == .bf16 { configurations = [("sertrain bf16", [:], .bf16), ("sertrain fp32", [:], .fp32)] }
      if let better = preferredBLASCoreType(environment: [:]), environment()["OPENBLAS_CORETYPE"] != nil {
        configurations.append(("sertrain/\(better)", ["OPENBLAS_CORETYPE": better], precision))
        print(
          "note: the environment sets OPENBLAS_CORETYPE=\(environment()["OPENBLAS_CORETYPE"]!); this CPU runs "
            + "\(better) kernels, which sertrain uses when the variable is unset: both are measured")
      }
      let python =
        options.noPeer || !["seed", "frames"].contains(steps.model)
        ? nil : try benchmarkVenv(options.venv, packages: ["tensorflow-cpu", "h5py"])
      let script = python == nil ? "" : try peerScript("peer_model.py")
      let args = [
        "\(steps.batchSize)", "\(steps.steps)", "\(steps.warmup)", "\(predictBatches)", steps.model,
        peerPrecision == .bf16 ? "mixed_bfloat16" : "float32",
      ]
      let counts = configurations.map { _ in options.repeats } + [python == nil ? 0 : options.peerRepeats]
      let runs = try interleaved(counts) { c, i in
        guard c < configurations.count else {
          var (m, s) = try runChild([python!, script] + args, as: ModelBenchSample.self)
          s.peakMegabytes = m.maxRSSMegabytes
          report("keras", i, s, flops: flops)
          return s
        }
        // The child reports its training's own peak RSS (see `benchmarkTraining`).
        let (_, s) = try runChild(
          [currentExecutable(), "bench", "model", "--child"] + steps.arguments + [
            "--predict-batches", args[3], "--convolution", convolution.rawValue, "--precision",
            configurations[c].2.rawValue,
          ] + (profile ? ["--profile"] : []), environment: configurations[c].1, as: ModelBenchSample.self)
        report(configurations[c].0, i, s, flops: flops)
        return s
      }
      let (ours, peer) = (runs.dropLast(), runs.last!)
      let peerRate = peer.isEmpty ? nil : Double(steps.batchSize) / median(peer.flatMap(\.stepSeconds))
      let peerPredict = peer.isEmpty ? nil : median(peer.map(\.predictSamplesPerSecond))
      for (c, (label, _, _)) in configurations.enumerated() {
        let step = median(ours[c].flatMap(\.stepSeconds))
        let rate = Double(steps.batchSize) / step
        let peak = median(ours[c].compactMap(\.sgemmPeak))
        let predict = median(ours[c].map(\.predictSamplesPerSecond))
        let direct = median(ours[c].compactMap(\.directPredictSamplesPerSecond))
        let difference = ours[c].compactMap(\.predictDifference).max() ?? 0
        let shares = ours[c].compactMap { $0.stepPeakShares(flopsPerStep: flops * Double(steps.batchSize)) }
        // Each step against the sgemm measured right before and after it (none with --profile).
        let share = shares.isEmpty ? "" : " = \(fixed(100 * median(shares.flatMap { $0 }), 1))% of the sgemm peak"
        var line =
          "\(label) (\(ours[c].first?.blasCore ?? "?") kernels): median step \(fixed(step, 3)) s = "
          + "\(fixed(rate, 2)) samples/s = \(fixed(rate * flops / 1e9, 1)) GFLOP/s\(share) (sgemm \(fixed(peak, 1))); predict "
          + (configurations[c].2 == .bf16
            ? "\(fixed(predict, 1)) samples/s (direct bf16, as every bf16 forward)"
            : "\(fixed(predict, 1)) samples/s (Winograd; direct convolution \(fixed(direct, 1)), probabilities within "
              + "\(Float(difference)))")
          + "; peak RSS \(fixed(ours[c].map(\.peakMegabytes).max()!, 0)) MB"
        if c > 0, configurations[0].2 != configurations[c].2 {
          let first = Double(steps.batchSize) / median(ours[0].flatMap(\.stepSeconds))
          line +=
            "; \(configurations[0].0) against it: training \(fixed(first / rate, 2))x, predict "
            + "\(fixed(median(ours[0].map(\.predictSamplesPerSecond)) / predict, 2))x"
        }
        if let peerRate, let peerPredict {
          line +=
            "; vs keras \(peerPrecision): training \(fixed(rate / peerRate, 2))x, predict \(fixed(predict / peerPredict, 2))x"
        }
        print(line)
      }
      if let peerRate, let peerPredict {
        print(
          "keras \(peerPrecision) (TensorFlow CPU): median step \(fixed(Double(steps.batchSize) / peerRate, 3)) s = \(fixed(peerRate, 2)) "
            + "samples/s = \(fixed(peerRate * flops / 1e9, 1)) GFLOP/s; predict \(fixed(peerPredict, 1)) samples/s; "
            + "peak RSS \(fixed(peer.map(\.peakMegabytes).max()!, 0)) MB")
      }
    }
  }

  private func report(_ who: String, _ i: Int, _ s: ModelBenchSample, flops: Double) {
    let rate = Double(steps.batchSize) / median(s.stepSeconds)
    let share = s.stepPeakShares(flopsPerStep: flops * Double(steps.batchSize)).map {
      " (\(fixed(100 * median($0), 1))% of the sgemm peak around each step: \(s.stepSGEMMPeaks!.map { fixed($0, 0) }.joined(separator: ", ")) GFLOP/s)"
    }
    print(
      "  \(who) run \(i + 1): steps \(s.stepSeconds.map { fixed($0, 2) }.joined(separator: ", ")) s -> "
        + "\(fixed(rate, 2)) samples/s\(share ?? ""), predict \(fixed(s.predictSamplesPerSecond, 1))"
        + (s.directPredictSamplesPerSecond.map { " (direct \(fixed($0, 1)))" } ?? "") + " samples/s, "
        + "peak \(fixed(s.peakMegabytes, 0)) MB")
    fflush(stdout)
  }
}
