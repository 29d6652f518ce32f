import ArgumentParser
import AudioFeatures
import Base
import Bench
import FeatureStore
import Training

#if canImport(Glibc)
  import Glibc
#endif

struct BenchExtractCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "extract",
    abstract: "Extract a corpus (four rows per file) on 1 and on N ranks; peer: librosa on one process.")

  @Option(help: "The corpus (default: ../shared/datasets/ser-mini beside the project).")
  var corpus = "../shared/datasets/ser-mini"

  @Option(help: "Ranks of the MPI run.")
  var ranks = 2

  @Option(help: "Files for the librosa peer (0: all; it is slow).")
  var peerFiles = 0

  @OptionGroup var options: BenchOptions

  func run() throws {
    try runReportingErrors {
      let (found, _) = try scanCorpus(corpus)
      print("machine: \(machineDescription()); corpus \(corpus): \(found.count) files")
      try withWorkDirectory(options.workDir) { dir in
        let args = [currentExecutable(), "extract", corpus, "-o", dir + "/f.h5", "--force", "-q"]
        let cores = availableCores()
        let configurations: [(String, [String])] = [
          ("1 rank x 1 thread", args + ["--threads", "1"]),
          ("1 rank x \(cores) threads", args),
          (
            "\(ranks) ranks x 1 thread",
            ["mpirun", "-n", "\(ranks)", "--bind-to", "core", "--oversubscribe"] + args + ["--threads", "1"]
          ),
        ]
        // On one machine OpenMPI's ob1 is what carries the messages anyway; choosing it skips 0.2 s of probing the
        // other PMLs' transports in MPI_Init (0.32 -> 0.12 s for two ranks here), a fixed cost, not extraction's.
        let pml = getenv("OMPI_MCA_pml").map { String(cString: $0) } ?? "ob1"  // a user's choice stays
        let environment = mpirunEnvironment.merging(["OMPI_MCA_pml": pml]) { $1 }
        print("mpirun: OMPI_MCA_pml=\(pml)")
        // The peer's files and its virtual environment first, so that its runs can take turns with ours: each
        // round runs every configuration once, and a machine whose load drifts weighs on both sides alike.
        var peerArgv: [String] = []
        let take = peerFiles > 0 ? Array(found.prefix(peerFiles)) : found
        if !options.noPeer {
          let python = try benchmarkVenv(options.venv, packages: ["librosa", "soundfile"])
          let list = dir + "/files.txt"
          try writeTextAtomically(take.map { corpus + "/" + $0.path + "\n" }.joined(), to: list)
          peerArgv = [python, try peerScript("peer_extract.py"), list]
        }
        let counts = configurations.map { _ in options.repeats } + (options.noPeer ? [] : [options.peerRepeats])
        let runs = try interleaved(counts) { c, i -> Double in
          guard c < configurations.count else {
            // One thread, for a per-core figure: numpy's BLAS otherwise spins a second core for nothing (measured:
            // the same files/s with 1.6 cores busy).
            let m = try runMeasured(
              peerArgv, environment: ["OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"])
            guard m.status == 0 else { throw Failure("the librosa peer exited \(m.status)") }
            print("  run \(i + 1): librosa (process included): \(fixed(Double(take.count) / m.seconds, 2)) files/s")
            return Double(take.count) / m.seconds
          }
          let (label, argv) = configurations[c]
          let m = try runMeasured(argv, environment: environment)
          guard m.status == 0 else { throw Failure("\(argv.joined(separator: " ")) exited \(m.status)") }
          print(
            "  run \(i + 1): sertrain extract, \(label): \(fixed(m.seconds, 2)) s = "
              + "\(fixed(Double(found.count) / m.seconds, 1)) files/s")
          return Double(found.count) / m.seconds
        }
        let rates = configurations.indices.map { median(runs[$0]) }
        for (c, (label, _)) in configurations.enumerated() {
          print(
            "sertrain extract, \(label): \(fixed(rates[c], 1)) files/s (\(fixed(rates[c] / rates[0], 2))x of 1 thread)")
        }
        guard !options.noPeer else { return }
        let p = median(runs[configurations.count])
        print(
          "ratio to librosa on one core: 1 rank x 1 thread \(fixed(rates[0] / p, 1))x, 1 rank (all cores) "
            + "\(fixed(rates[1] / p, 1))x, \(ranks) ranks \(fixed(rates[2] / p, 1))x")
      }
    }
  }
}
