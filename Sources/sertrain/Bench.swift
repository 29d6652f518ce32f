import ArgumentParser
import Base
import Bench
import CSystem
import CTextKernels
import FeatureStore
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct Bench: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Benchmarks (build with -c release); each measures a peer in the same run.",
    subcommands: [
      BenchConvert.self, BenchModelCommand.self, BenchTrainCommand.self, BenchExtractCommand.self,
      BenchScaleCommand.self,
    ])
}

struct BenchOptions: ParsableArguments {
  @Option(help: "Timed repetitions of sertrain; the median is reported.")
  var repeats = 3

  @Option(help: "Timed repetitions of the peer.")
  var peerRepeats = 1

  @Flag(help: "Skip the Python peer.")
  var noPeer = false

  @Option(help: "Working directory for generated files (kept); default a temporary directory, removed.")
  var workDir: String?

  @Option(help: "Where the benchmark's Python virtual environment lives.")
  var venv = ".build/bench-venv"
}

/// The model and steps of `bench model` and `bench train`, passed on to their child processes.
struct StepOptions: ParsableArguments {
  @Option(help: "Model preset or spec (the Keras peer runs the seed and frames models).")
  var model = "seed"

  @Option(help: "Batch size (global, across ranks).")
  var batchSize = 64

  @Option(help: "Timed train steps per process.")
  var steps = 5

  @Option(help: "Untimed train steps first.")
  var warmup = 1

  var arguments: [String] {
    ["--model", model, "--batch-size", "\(batchSize)", "--steps", "\(steps)", "--warmup", "\(warmup)"]
  }
}

/// A work directory: the given one (kept) or a fresh temporary one (removed at the end).
func withWorkDirectory(_ given: String?, _ body: (String) throws -> Void) throws {
  if let given {
    mkdir(given, 0o755)
    try body(given)
    return
  }
  var template = Array("/tmp/sertrain-bench-XXXXXX".utf8CString)
  guard let p = mkdtemp(&template) else { throw Failure("mkdtemp failed") }
  let dir = String(cString: p)
  defer { _ = try? runMeasured(["rm", "-rf", dir]) }
  try body(dir)
}

struct BenchConvert: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "convert", abstract: "Convert a generated seed-shaped CSV; peer: pandas.read_csv + h5py.")

  @Option(help: "Rows of the generated CSV (the seed's features.csv has 48,648).")
  var rows = 48_648

  @Flag(help: "Write the values as float64 (float32 values in up to 17 digits, as pandas wrote the seed's array).")
  var float64 = false

  @OptionGroup var options: BenchOptions

  func run() throws {
    try runReportingErrors {
      try withWorkDirectory(options.workDir) { dir in
        let csv = dir + "/features.csv"
        let out = dir + "/features.h5"
        var st = stat()
        let t0 = monotonicSeconds()
        try writeSeedShapedCSV(path: csv, rows: rows, float64: float64)
        stat(csv, &st)
        sync()  // the generated file's writeback must not land inside the timed runs
        let megabytes = Double(st.st_size) / 1e6
        print("generated \(csv): \(rows) x 2377, \(fixed(megabytes, 0)) MB in \(fixed(monotonicSeconds() - t0, 1)) s")
        print("machine: \(machineDescription()); CSV numbers \(String(cString: sertrain_number_cells_level()))")

        let python = options.noPeer ? nil : try benchmarkVenv(options.venv, packages: ["pandas", "h5py"])
        let script = try peerScript("peer_convert.py")
        // Every run starts as a first conversion does: no output file yet (replacing one frees its 464 MB inside
        // the timed run: 0.2 s in our rename, in the peer's truncation) and no dirty pages (the peer does not sync
        // its output, whose writeback otherwise lands in the next run).
        let runs = try interleaved([options.repeats, python == nil ? 0 : options.peerRepeats]) { c, i in
          let (label, output) = c == 0 ? ("sertrain convert", out) : ("pandas+h5py", dir + "/pandas.h5")
          unlink(output)
          sync()
          let m = try runMeasured(
            c == 0
              ? [currentExecutable(), "convert", csv, "-o", out, "--rows-per-recording", "4", "--force"]
              : [python!, script, csv, output])
          guard m.status == 0 else { throw Failure("\(label) exited \(m.status)") }
          print("  \(label.padding(17)) run \(i + 1): \(fixed(m.seconds, 2)) s, peak \(fixed(m.maxRSSMegabytes, 0)) MB")
          return m
        }
        let (ours, peer) = (runs[0], runs[1])
        let f = try FeatureFile(path: out)
        guard f.rowCount == rows && f.width == FeatureFormat.seedWidth else {
          throw Failure("converted file has \(f.rowCount) x \(f.width)")
        }
        let oursMedian = median(ours.map(\.seconds))
        let oursPeak = ours.map(\.maxRSSMegabytes).max()!
        print(
          "sertrain convert: median \(fixed(oursMedian, 2)) s = \(fixed(megabytes / oursMedian, 0)) MB/s = \(Int(Double(rows) / oursMedian)) rows/s, peak RSS \(fixed(oursPeak, 0)) MB (includes fsync of the output)"
        )
        guard !peer.isEmpty else { return }
        let peerMedian = median(peer.map(\.seconds))
        print(
          "pandas+h5py: median \(fixed(peerMedian, 2)) s, peak RSS \(fixed(peer.map(\.maxRSSMegabytes).max()!, 0)) MB"
        )
        print(
          "speed-up: \(fixed(peerMedian / oursMedian, 1))x (goal >= 5x); sertrain peak \(fixed(oursPeak, 0)) MB (goal < 200 MB)"
        )
      }
    }
  }
}

/// CPU model (with its family and model numbers), core count and the kernel variant it runs, for benchmark records.
func machineDescription() -> String {
  // The first processor's "model name", "cpu family" and "model".
  let first = String(decoding: (try? readFileBytes("/proc/cpuinfo")) ?? [], as: UTF8.self).split(separator: "\n\n")
    .first
  var fields: [String: String] = [:]
  for line in first?.split(separator: "\n") ?? [] {
    let parts = line.split(separator: ":", maxSplits: 1).map { String($0).trimmingCharacters() }
    if parts.count == 2 { fields[parts[0]] = parts[1] }
  }
  let model = fields["model name"] ?? "unknown CPU"
  let family = fields["cpu family"].map { " (family \($0), model \(fields["model"] ?? "?"))" } ?? ""
  return "\(model)\(family), \(availableCores()) cores, vector kernels \(String(cString: sertrain_clone_level()))"
}
