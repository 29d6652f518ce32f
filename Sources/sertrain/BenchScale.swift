import ArgumentParser
import Base
import Bench
import Collective
import ConvNet
import FoundationEssentials
import ProcessSetup

#if canImport(Glibc)
  import Glibc
#endif

struct BenchScaleCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "scale",
    abstract:
      "Data-parallel steps on 1 and 2 nodes of the cluster in a box (root), blocking against overlapped "
      + "allreduce at several link rates; then a model of the cluster a user may book.")

  @Option(help: "Models: presets, JSON specs, or mid (the seed's blocks, narrower, pools of 2: 1.3M parameters).")
  var models = "mid,seed"

  @Option(help: "Link rates (tc tbf), comma-separated.")
  var rates = "1gbit,10gbit,25gbit"

  @Option(help: "Bucket sizes in MiB, comma-separated; 0 is the blocking allreduce.")
  var buckets = "0,4"

  @Option(help: "Repetitions of every configuration, interleaved; medians are reported.")
  var repeats = 3

  @Option(help: "Timed train steps per run (after one untimed).")
  var steps = 3

  @Option(help: "Global batch size.")
  var batchSize = 64

  @Option(help: "Read the runs from this file (JSON lines) instead of measuring; measured runs are written to it.")
  var results = "scale-runs.jsonl"

  @Flag(help: "Analyse --results only.")
  var analyseOnly = false

  @Option(help: "Where to draw the predicted scaling curves.")
  var svg = "scale.svg"

  @Flag(help: .private)
  var child = false

  @Option(help: .private)
  var bucketMb = 0.0

  static func spec(_ name: String) throws -> ModelSpec {
    if name == "mid" {
      return .blocks(
        name: "mid", inputLength: 2376, filters: [64, 64, 32, 32, 32], kernels: [5, 5, 5, 3, 3],
        pools: [2, 2, 2, 2, 2],
        dense: 512)
    }
    var s = try ModelSpec.load(name)
    s.inputLength = 2376
    return s
  }

  func run() throws {
    try runReportingErrors {
      if child {
        let comm = try makeCommunicator(environment())
        configureThreads(environment: environment())
        let s = try benchmarkDataParallelSteps(
          spec: Self.spec(models), comm: comm, globalBatch: batchSize, steps: steps, warmup: 1,
          bucketBytes: Int(bucketMb * Double(1 << 20)), bareSizes: [1 << 8, 1 << 14, 1 << 18, 1 << 20, 1 << 22])
        if comm.rank == 0 { print(s.json()) }
        return
      }
      if !analyseOnly { try measure() }
      try analyse()
    }
  }

  func measure() throws {
    guard getuid() == 0 else {
      throw Failure("bench scale builds network namespaces: run it as root (or --analyse-only)")
    }
    unlink(results)
    let list = { (s: String) in s.split(separator: ",").joined(separator: " ") }
    let env = [
      "SERTRAIN": currentExecutable(), "OUT": results, "MODELS": list(models), "RATES": list(rates),
      "BUCKETS": list(buckets), "REPEATS": "\(repeats)", "CHILD": "--steps \(steps) --batch-size \(batchSize)",
    ]
    print("machine: \(machineDescription()); 2 nodes x 1 rank x 1 thread, global batch \(batchSize)")
    let m = try runMeasured(
      ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", "--mount", "bash", try peerScript("scale.sh")],
      environment: env)
    guard m.status == 0 else { throw Failure("Benchmarks/scale.sh exited \(m.status)") }
  }

  func analyse() throws {
    guard let f = fopen(results, "r") else { throw Failure(results, "no runs: measure first (as root)") }
    var records: [ScaleRecord] = []
    var line: UnsafeMutablePointer<CChar>?
    var cap = 0
    while getline(&line, &cap, f) > 0 { records.append(try decodeJSON(ScaleRecord.self, from: String(cString: line!))) }
    free(line)
    fclose(f)
    var curves: [(String, String, String, [(p: Int, e: Double)])] = []
    for model in Array(Set(records.map(\.labels.model))).sorted() {
      let runs = records.filter { $0.labels.model == model }
      let alone = runs.filter { $0.labels.nodes == 1 }.map(\.sample)
      guard !alone.isEmpty else { continue }
      var profile = ComputeProfile(alone)
      let step1 = median(alone.flatMap(\.stepSeconds))
      let batch = alone[0].globalBatch
      let rates = Array(Set(runs.map(\.labels.rate))).filter { !$0.isEmpty }.sorted(by: rateOrder)
      var links: [String: LinkFit] = [:]
      for rate in rates {
        let here = runs.filter { $0.labels.rate == rate }.map(\.sample)
        links[rate] = LinkFit(
          here.flatMap { s in zip(s.bareFloats, s.bareSeconds).map { (Double($0 * 4), $1) } }
            + here.map { (Double($0.gradientFloats * 4), median($0.bareAllreduceSeconds)) })
      }
      // The CPU that communication takes from compute: how much longer backward ran overlapped than blocking.
      profile.fitCommunicationCPU(
        batch: batch,
        rates.compactMap { rate in
          func backward(_ overlapped: Bool) -> Double? {
            let s = runs.filter { $0.labels.rate == rate && ($0.labels.bucket_mb > 0) == overlapped }
            return s.isEmpty ? nil : median(s.flatMap(\.sample.backwardSeconds))
          }
          guard let o = backward(true), let b = backward(false) else { return nil }
          return (links[rate]!, o - b)
        })
      print(
        "\n\(model): \(grouped(alone[0].gradientFloats)) gradient floats; 1 rank: \(fixed(Double(batch) / step1, 2)) "
          + "samples/s (forward \(fixed(1000 * profile.forward, 1)) ms, backward \(fixed(1000 * profile.backward, 1)) "
          + "ms per sample; overlap's communication takes \(fixed(1e9 * profile.cpuPerByte, 2)) ns of CPU per byte "
          + "and \(fixed(100 * profile.cpuInFlight, 0))% of a core while in flight)")
      print("  rate     bucket  samples/s  efficiency  allreduce not hidden  model  error")
      for rate in rates {
        let link = links[rate]!
        var lost: [Double: Double] = [:]
        for bucket in Array(Set(runs.map(\.labels.bucket_mb))).sorted() {
          let s = runs.filter { $0.labels.rate == rate && $0.labels.bucket_mb == bucket }.map(\.sample)
          guard !s.isEmpty else { continue }
          let step = median(s.flatMap(\.stepSeconds))
          let exposed = median(s.flatMap(\.allreduceSeconds))
          let efficiency = step1 / (2 * step)
          let predicted = step1 / (2 * profile.step(batch: batch, ranks: 2, link: link, overlap: bucket > 0))
          lost[bucket] = 1 - efficiency
          print(
            "  \(rate.padding(8)) \((bucket == 0 ? "block" : "\(bucket) MiB").padding(7)) "
              + "\(fixed(Double(batch) / step, 2).leftPadding(9))  \(fixed(100 * efficiency, 1).leftPadding(9))%  "
              + "\(fixed(1000 * exposed, 1).leftPadding(8)) ms = \(fixed(100 * exposed / step, 1).leftPadding(4))%"
              + "    \(fixed(100 * predicted, 1).leftPadding(5))%  \(fixed(100 * (predicted / efficiency - 1), 1))%")
        }
        if let blocking = lost[0], let best = lost.filter({ $0.key > 0 }).values.min(), blocking > 0 {
          print(
            "  \(rate): alpha \(fixed(1e6 * link.alpha, 0)) us, \(fixed(8 / link.beta / 1e9, 2)) Gbit/s; overlap "
              + "recovers \(fixed(100 * (blocking - best) / blocking, 0))% of the \(fixed(100 * blocking, 1)) points "
              + "blocking loses")
        }
      }
      // The cluster a user may book: the fastest measured link's protocol efficiency at nominal rates.
      guard let (rate, fit) = links.max(by: { rateOrder($0.key, $1.key) }) else { continue }
      let efficiency = (8 / (rateBits(rate) ?? 1e9)) / fit.beta
      print(
        "  predicted efficiency, overlapped (alpha \(fixed(1e6 * fit.alpha, 0)) us; compute split ideally over cores):")
      let ps = [2, 4, 8, 16, 32, 64]
      print("    link      cores  " + ps.map { "p=\($0)".leftPadding(6) }.joined(separator: " "))
      let colors = ["#1f77b4", "#ff7f0e", "#2ca02c"]
      for (i, gbit) in [10.0, 25.0, 100.0].enumerated() {
        let link = LinkFit(alpha: fit.alpha, beta: 8 / (gbit * 1e9) / efficiency)
        for (j, cores) in [1, 2, 4, 8, 16, 32].enumerated() {
          let e: [Double] = ps.map { (p: Int) -> Double in
            let step: Double = profile.step(batch: batch, ranks: p, cores: cores, link: link, overlap: true)
            return step1 / Double(cores) / (Double(p) * step)
          }
          print(
            "    \(fixed(gbit, 0)) Gbit/s".padding(14) + "\(cores)".leftPadding(5) + "  "
              + e.map { (fixed(100 * $0, 0) + "%").leftPadding(6) }.joined(separator: " "))
          if [0, 3, 5].contains(j) {
            curves.append(
              (
                "\(model), \(fixed(gbit, 0)) Gbit/s, \(cores) core(s)", colors[i], ["", "6,3", "2,3"][j / 2],
                [(1, 1.0)] + zip(ps, e).map { ($0, $1) }
              ))
          }
        }
      }
    }
    try writeTextAtomically(scalingSVG(curves.filter { $0.0.hasPrefix("seed") || curves.count <= 9 }), to: svg)
    print("\nwrote \(svg)")
  }
}

/// Bits per second of a tc rate (10gbit, 500mbit).
func rateBits(_ rate: String) -> Double? {
  let n = Double(rate.prefix { $0.isNumber || $0 == "." })
  return rate.hasSuffix("gbit") ? n.map { $0 * 1e9 } : rate.hasSuffix("mbit") ? n.map { $0 * 1e6 } : nil
}

func rateOrder(_ a: String, _ b: String) -> Bool { (rateBits(a) ?? 0) < (rateBits(b) ?? 0) }
