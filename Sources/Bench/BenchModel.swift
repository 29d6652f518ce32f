import Base
import Collective
import ConvNet
import FoundationEssentials
import ProcessSetup
import Training

#if canImport(Glibc)
  import Glibc
#endif

/// Floating-point operations of one layer's forward pass for one sample (multiply-adds count 2): convolutions and
/// dense layers; 0 for the rest. The backward pass of layer `index` takes twice as many (weight and input
/// gradients), once for the first layer, which computes no input gradient.
func flopsPerSample(_ plan: LayerPlan, backwardOf index: Int? = nil) -> Double {
  let passes = index.map { $0 == 0 ? 1.0 : 2.0 } ?? 1
  switch plan.spec.type {
  case .conv1D:
    return passes * 2 * Double(plan.inputLength * plan.spec.kernelSize! * plan.inputChannels * plan.outputChannels)
  case .dense: return passes * 2 * Double(plan.inputChannels * plan.outputChannels)
  default: return 0
  }
}

/// Floating-point operations of one sample's forward and backward pass.
public func trainingFlopsPerSample(_ network: Network) -> Double {
  network.plans.enumerated().reduce(0.0) { $0 + flopsPerSample($1.1) + flopsPerSample($1.1, backwardOf: $1.0) }
}

/// The best of `repeats` square sgemm runs of `size`, in GFLOP/s: this machine's attainable peak with this
/// OpenBLAS and thread count.
public func measureSGEMMPeak(size: Int = 4096, repeats: Int = 3) -> Double {
  let a = FloatBuffer(count: size * size)
  let b = FloatBuffer(count: size * size)
  let c = FloatBuffer(count: size * size)
  for i in 0..<(size * size) {
    a.pointer[i] = Float(i % 7) * 0.1
    b.pointer[i] = Float(i % 5) * 0.1
  }
  var best = Double.infinity
  for _ in 0..<repeats {
    let t0 = monotonicSeconds()
    matrixMultiply(a.pointer, b.pointer, c.pointer, m: size, n: size, k: size)
    best = min(best, monotonicSeconds() - t0)
  }
  return 2 * Double(size) * Double(size) * Double(size) / best / 1e9
}

/// One process's measurements of the model benchmark (ours or the peer's), as a JSON line.
public struct ModelBenchSample: JSONLine, Sendable {
  public var stepSeconds: [Double]
  public var predictSamplesPerSecond: Double
  /// sertrain only: inference with the direct convolution (the policy's `winograd` off), and the largest
  /// difference between its probabilities and those of the default (Winograd) inference.
  public var directPredictSamplesPerSecond: Double?
  public var predictDifference: Double?
  public var peakMegabytes: Double
  /// The OpenBLAS kernels and their sgemm peak in this process (sertrain only).
  public var blasCore: String?
  /// The mean of the measurements before and after the steps.
  public var sgemmPeak: Double?
  /// The sgemm peak around each timed step: the mean of the measurements right before and right after it (the
  /// machine's speed drifts within a run on shared hosts, so each step is held to its own neighbourhood).
  public var stepSGEMMPeaks: [Double]?

  /// Each step's rate against the peak measured around it, for `flops` per step (nil without those peaks).
  public func stepPeakShares(flopsPerStep flops: Double) -> [Double]? {
    guard let peaks = stepSGEMMPeaks, peaks.count == stepSeconds.count, !peaks.isEmpty else { return nil }
    return zip(stepSeconds, peaks).map { flops / $0 / 1e9 / $1 }
  }

  enum CodingKeys: String, CodingKey {
    case stepSeconds = "step_seconds"
    case predictSamplesPerSecond = "predict_samples_per_second"
    case directPredictSamplesPerSecond = "direct_predict_samples_per_second"
    case predictDifference = "predict_max_difference"
    case peakMegabytes = "peak_mb"
    case blasCore = "blas_core"
    case sgemmPeak = "sgemm_peak_gflops"
    case stepSGEMMPeaks = "step_sgemm_peaks_gflops"
  }
}

/// Trains `steps` steps (after `warmup`) of `spec` at `batch` on random data with Adam, then runs inference on
/// `predictBatches` batches; returns per-step seconds, inference throughput and this process's peak RSS.
public func benchmarkTraining(
  spec: ModelSpec, classes: Int = 7, batch: Int, steps: Int, warmup: Int, predictBatches: Int, profile: Bool = false,
  policy: KernelPolicy = KernelPolicy()
) throws -> ModelBenchSample {
  let peak = measureSGEMMPeak()
  var stepPeaks: [Double]?
  var trainingRSS: Double?
  // The model lives in this closure, so that it is freed before the last sgemm measurement.
  let (times, predicted) = try { () throws -> ([Double], (Double, Double, Double)) in
    let network = try Network(
      spec: spec, classes: classes, seed: 1, policy: policy, reductionTail: StepSums.reductionFloats)
    let adam = Adam(count: network.parameters.count)
    let oneProcess = SingleProcessCommunicator()
    var rng = RandomStream(seed: 3)
    let x = (0..<(batch * network.inputWidth)).map { _ in Float(rng.normal()) }
    let labels = (0..<batch).map { _ in Int32(rng.next() % UInt64(classes)) }
    var times: [Double] = []
    // The rate of a square sgemm after every timed step (and after the warmup, for the first one), for models whose
    // steps are long beside it (a small model's step of milliseconds is not compute-bound: no share of a peak).
    var peaks: [Double] = []
    let comparesPeaks = !profile && trainingFlopsPerSample(network) * Double(batch) > 1e10
    for step in 0..<(warmup + steps) {
      let t0 = monotonicSeconds()
      _ = x.withUnsafeBufferPointer { x in
        labels.withUnsafeBufferPointer {
          trainStep(network, comm: oneProcess, x: x.baseAddress!, labels: $0, globalRows: batch)
        }
      }
      adam.update(network.parameters, network.gradients)
      if step >= warmup { times.append(monotonicSeconds() - t0) }
      if step + 1 == warmup { trainingRSS = peakResidentMegabytes() }
      if step + 1 >= warmup && comparesPeaks { peaks.append(measureSGEMMPeak(repeats: 2)) }
      if profile && step + 1 == warmup { network.profile = [:] }
    }
    if peaks.count == steps + 1 {
      stepPeaks = (0..<steps).map { (peaks[$0] + peaks[$0 + 1]) / 2 }
    }
    if let p = network.profile {
      // The convolutions' and dense layers' rate against this process's sgemm peak: how close their kernels (the
      // direct convolution, or OpenBLAS) get on each layer's shapes.
      // A fused block's name joins its layers' (`conv2+bn2+pool2`).
      var flops: [String: Double] = [:]
      for (i, plan) in network.plans.enumerated() where flopsPerSample(plan) > 0 {
        let name = p.keys.first { $0.split(separator: " ")[0].split(separator: "+").contains { $0 == plan.name } }
        guard let name = name?.split(separator: " ").first else { continue }
        flops[name + " forward"] = flopsPerSample(plan) * Double(batch)
        flops[name + " backward"] = flopsPerSample(plan, backwardOf: i) * Double(batch)
      }
      let total = p.values.reduce(0, +)
      for (name, seconds) in p.sorted(by: { $0.value > $1.value }) where seconds > 0.01 * total {
        let perStep = seconds / Double(steps)
        var line = "  \(name): \(fixed(perStep, 3)) s per step"
        if let f = flops[name] {
          let rate = f / perStep / 1e9
          line += ", \(fixed(rate, 0)) GFLOP/s (\(fixed(100 * rate / peak, 0))% of peak)"
        }
        printError(line)
      }
      printError("  (sgemm peak \(fixed(peak, 0)) GFLOP/s)")
      network.profile = nil
    }
    // Inference as predict runs it (Winograd's F(4, k)), then with the direct convolution of training, each after
    // one untimed batch whose probabilities the two compare.
    func predict(_ network: Network) -> (rate: Double, probabilities: [Float]) {
      let first = x.withUnsafeBufferPointer { Array(network.forward($0.baseAddress!, batch: batch, training: false)) }
      let t0 = monotonicSeconds()
      for _ in 0..<predictBatches {
        x.withUnsafeBufferPointer { _ = network.forward($0.baseAddress!, batch: batch, training: false) }
      }
      return (Double(predictBatches * batch) / (monotonicSeconds() - t0), first)
    }
    let fast = predict(network)
    // In bf16 every forward is the direct bf16 kernel already: nothing else to time.
    var withoutWinograd = policy
    withoutWinograd.winograd = false
    let direct =
      try policy.precision == .bf16
      ? fast
      : {
        let plain = try Network(spec: spec, classes: classes, seed: 1, policy: withoutWinograd)
        plain.parameters.copy(from: UnsafeBufferPointer(network.parameters.buffer))
        plain.state.copy(from: UnsafeBufferPointer(network.state.buffer))
        return predict(plain)
      }()
    let difference = zip(fast.probabilities, direct.probabilities).map { Double(abs($0 - $1)) }.max() ?? 0
    return (times, (fast.rate, direct.rate, difference))
  }()
  // The machine's rate again after the steps (shared machines drift); the share of the peak uses the mean.
  let peakAfter = measureSGEMMPeak()
  // The peak RSS of the training itself when known: the sgemm measurements between the steps hold three
  // 64 MB matrices beside the model.
  return ModelBenchSample(
    stepSeconds: times, predictSamplesPerSecond: predicted.0, directPredictSamplesPerSecond: predicted.1,
    predictDifference: predicted.2, peakMegabytes: trainingRSS ?? peakResidentMegabytes(),
    blasCore: blasCoreName, sgemmPeak: (peak + peakAfter) / 2, stepSGEMMPeaks: stepPeaks)
}

/// This process's peak resident set so far, in MB.
func peakResidentMegabytes() -> Double {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  return Double(usage.ru_maxrss) / 1024
}
