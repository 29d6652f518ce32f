import ArgumentParser
import AudioFeatures
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
        var ours: [[Double]] = [[], []]
        var root: [String: String] = [:]
        if getuid() == 0 { root = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"] }
        let args = [currentExecutable(), "extract", corpus, "-o", dir + "/f.h5", "--force", "-q"]
        for i in 0..<options.repeats {
          for (c, argv) in [args, ["mpirun", "-n", "\(ranks)", "--bind-to", "core", "--oversubscribe"] + args]
            .enumerated()
          {
            let m = try runMeasured(argv, environment: root)
            guard m.status == 0 else { throw ChildError(message: "\(argv.joined(separator: " ")) exited \(m.status)") }
            ours[c].append(m.seconds)
            print(
              "  run \(i + 1): sertrain extract on \(c == 0 ? 1 : ranks) rank(s): \(fixed(m.seconds, 2)) s = "
                + "\(fixed(Double(found.count) / m.seconds, 1)) files/s")
          }
        }
        let one = Double(found.count) / median(ours[0])
        let many = Double(found.count) / median(ours[1])
        print(
          "sertrain extract: 1 rank \(fixed(one, 1)) files/s, \(ranks) ranks \(fixed(many, 1)) files/s "
            + "(\(fixed(many / one, 2))x; medians of \(options.repeats), process start and the HDF5 write included)")
        guard !options.noPeer else { return }
        let python = try benchmarkVenv(options.venv, packages: ["librosa", "soundfile"])
        let list = dir + "/files.txt"
        let take = peerFiles > 0 ? Array(found.prefix(peerFiles)) : found
        let fp = fopen(list, "w")!
        for r in take { fputs(corpus + "/" + r.path + "\n", fp) }
        fclose(fp)
        let script = dir + "/peer.py"
        let sp = fopen(script, "w")!
        fputs(librosaPeerScript, sp)
        fclose(sp)
        var peer: [Double] = []
        for i in 0..<options.peerRepeats {
          let m = try runMeasured([python, script, list])
          guard m.status == 0 else { throw ChildError(message: "the librosa peer exited \(m.status)") }
          peer.append(Double(take.count) / m.seconds)
          print("  run \(i + 1): librosa (process included): \(fixed(peer.last!, 2)) files/s")
        }
        let p = median(peer)
        print(
          "ratio: sertrain 1 rank / librosa = \(fixed(one / p, 1))x; \(ranks) ranks / librosa = \(fixed(many / p, 1))x")
      }
    }
  }
}
