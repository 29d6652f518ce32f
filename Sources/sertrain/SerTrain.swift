import ArgumentParser
import Base
import CEntry
import CSystem
import Collective
import FeatureStore
import HDF5
import ModelFiles
import ProcessSetup
import Training

#if canImport(Glibc)
  import Glibc
#endif

@main
struct SerTrain: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sertrain",
    abstract: "A data-parallel trainer for speech emotion recognition.",
    version: buildIdentity,
    subcommands: [
      Train.self, CrossValidate.self, Compare.self, Extract.self, Convert.self, Merge.self, Evaluate.self, Predict.self,
      Report.self,
      Inspect.self, Synth.self,
      Summary.self, ImportKeras.self,
      ExportKeras.self, Supervise.self,
      Bench.self,
    ],
    defaultSubcommand: Train.self)

  /// Exit codes (README.md, "Commands"): 0 done, 1 error, 2 usage, 75 stopped on a signal after a checkpoint.
  ///
  /// Errors leave through `_exit` after flushing standard output and error: HDF5 1.10's exit handler crashes
  /// on a file whose close failed (a full disk), and nothing we write depends on exit handlers (every file is
  /// closed, fsynced and renamed explicitly before success).
  static func main() {
    // CEntry's constructor has installed the stop handlers before main: from there on a stop signal (SIGUSR1,
    // SIGTERM) is recorded, never fatal, even across the exec below.
    precondition(sertrain_entry_linked() == 1)
    // Lines reach a log file (Slurm's output, `> log`) as they are printed, not when a block fills.
    setvbuf(stdout, nil, _IOLBF, 0)
    useFasterBLASKernels()
    keepFreedMemory()
    do {
      var command = try parseAsRoot()
      // Only training stops cleanly (checkpoint, exit 75), and supervise passes stops on to it; every other
      // command ends by the signal as usual.
      if !(command is Train || command is CrossValidate || command is Supervise) { sertrain_default_stop_signals() }
      try command.run()
    } catch {
      let code = exitCode(for: error)
      if code == .success {
        print(fullMessage(for: error))
        Glibc.exit(0)
      }
      let message = fullMessage(for: error)
      if !message.isEmpty { fputs(message + "\n", stderr) }
      fflush(nil)
      _exit(code == .validationFailure ? 2 : code.rawValue)
    }
  }
}

/// glibc's malloc serves blocks above a threshold (128 KiB, raised dynamically up to 32 MiB) with fresh mmaps and
/// gives freed memory at the top of the heap back to the kernel, so a loop that allocates and frees the same
/// megabyte-sized buffers (the audio front end, per recording) takes page faults on every pass (their system time:
/// BENCHMARKS.md, extract). Every command's working set is bounded and reused, so keep it: large blocks
/// come from the heap (up to 32 MiB) and the heap is trimmed only above 256 MiB free.
func keepFreedMemory() { sertrain_keep_freed_memory(32 << 20, 256 << 20) }

/// Re-executes this process with OpenBLAS's environment completed (`preferredBLASEnvironment`: the kernels for
/// what the CPU runs, idle workers that sleep at once); OpenBLAS reads it only when it loads, hence the exec, which
/// keeps the PID, the arguments and the environment (mpirun's included). Nothing has started yet: MPI is
/// initialised later. The exec'd process finds the environment complete and carries on.
func useFasterBLASKernels() {
  let changes = preferredBLASEnvironment(environment: environment())
  guard !changes.isEmpty else { return }
  for (name, value) in changes { setenv(name, value, 1) }
  // The resolved path, not /proc/self/exe itself: the process keeps its name ("sertrain", not "exe") for ps,
  // pkill and the batch scripts.
  var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
  let length = readlink("/proc/self/exe", &path, Int(PATH_MAX))
  sertrain_hold_stop_signals_across_exec()
  execv(length > 0 ? String(cString: path) : "/proc/self/exe", CommandLine.unsafeArgv)
  sertrain_install_stop_handlers()
  for name in changes.keys { unsetenv(name) }  // exec failed: carry on as OpenBLAS loaded
}

/// Runs `body` with this job's communicator (MPI under a launcher, else one process). An error is printed with
/// the rank and, under MPI, ends every rank, so that no rank waits forever in a collective.
func runOnRanks(_ body: (Communicator) throws -> Void) throws {
  var comm: Communicator?
  do {
    comm = try makeCommunicator(environment())
    try body(comm!)
  } catch let e as ExitCode {
    throw e
  } catch let e as ValidationError {
    throw e
  } catch let e as AgreedFailure {
    // Every rank reached this failure together: no abort, rank 0 says why.
    if let message = e.message { printError("sertrain: error: \(message)") }
    throw ExitCode(1)
  } catch {
    let rank = comm.map { $0.size > 1 ? "rank \($0.rank): " : "" } ?? ""
    printError("sertrain: error: \(rank)\(error)")
    if let comm, comm.size > 1 { comm.abort(code: 1) }
    throw ExitCode(1)
  }
}

/// Runs `body`, turning any error into one clear line on standard error and exit code 1.
func runReportingErrors(_ body: () throws -> Void) throws {
  do {
    try body()
  } catch let e as ValidationError {
    throw e
  } catch let e as ExitCode {
    throw e
  } catch {
    printError("sertrain: error: \(error)")
    throw ExitCode(1)
  }
}

struct Merge: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract:
      "Several feature files (corpora) as one: rows in order, classes the union by name, speakers and corpora kept.")

  @Argument(help: "The feature files, extracted alike (the same recipe and layout).")
  var inputs: [String]

  @Option(name: .shortAndLong, help: "The feature file to write.")
  var output: String = "merged.h5"

  @Flag(help: "Replace an existing output file.")
  var force = false

  func run() throws {
    try runReportingErrors {
      let (rows, recordings, classes, notes) = try mergeFeatureFiles(inputs, into: output, overwrite: force)
      print(
        "merged \(inputs.count) files -> \(output): \(rows) rows of \(recordings) recordings, classes "
          + classes.joined(separator: ", "))
      for note in notes { print("note: \(note)") }
    }
  }
}

struct Convert: ParsableCommand {
  static let configuration = CommandConfiguration(
    abstract: "Stream a seed-style features.csv into a feature file.")

  @Argument(help: "The CSV: numeric feature columns and a label column, with a header row.")
  var csv: String

  @Option(name: .shortAndLong, help: "The feature file to write.")
  var output: String = "features.h5"

  @Option(help: "The label column's name (default: 'labels', else 'Emotions').")
  var labelColumn: String?

  @Option(help: "Rows per recording in file order (the seed wrote 4: original, noise, pitch, pitch+noise).")
  var rowsPerRecording: Int?

  @Flag(help: "Skip rows with a wrong column count, text or infinities, and report them.")
  var skipBadRows = false

  @Flag(help: "Replace an existing output file.")
  var force = false

  func validate() throws {
    if let r = rowsPerRecording, r < 1 { throw ValidationError("--rows-per-recording must be at least 1") }
  }

  func run() throws {
    try runReportingErrors {
      var options = CSVImportOptions()
      options.labelColumn = labelColumn
      options.rowsPerRecording = rowsPerRecording
      options.skipBadRows = skipBadRows
      options.overwrite = force
      let bar = ProgressBar(label: "convert", unit: "rows")
      let t0 = monotonicSeconds()
      let report = try importCSV(from: csv, to: output, options: options) { done, total, rows in
        bar.update(fraction: total > 0 ? Double(done) / Double(total) : 1, count: rows)
      }
      bar.finish()
      let dt = monotonicSeconds() - t0
      print(
        "converted \(report.rows) rows x \(report.width) features, \(report.classes.count) classes, \(report.recordings) recordings in \(fixed(dt, 1)) s (\(Int(Double(report.rows) / max(dt, 1e-9))) rows/s) -> \(output)"
      )
      if report.emptyCells + report.nanCells > 0 {
        print("filled with 0: \(report.emptyCells) empty cells, \(report.nanCells) NaN cells (as the seed did)")
      }
      if rowsPerRecording == nil {
        print(
          "warning: without --rows-per-recording every row counts as its own recording, so a split by recording "
            + "puts augmented copies of one recording on both sides (the seed's leak); for the seed's features.csv "
            + "(original, noise, pitch, pitch+noise per recording) convert with --rows-per-recording 4")
      }
      if !report.skipped.isEmpty {
        print("skipped \(report.skipped.count) bad rows:")
        for s in report.skipped.prefix(20) { print("  \(s)") }
        if report.skipped.count > 20 { print("  … and \(report.skipped.count - 20) more") }
      }
    }
  }
}

struct Inspect: ParsableCommand {
  static let configuration = CommandConfiguration(abstract: "Describe a feature file or a checkpoint.")

  @Argument(help: "A feature file (.h5) or a checkpoint.")
  var file: String

  @Flag(help: "Also read every dataset in full, checking every checksum (after a copy, before a long run).")
  var verify = false

  func run() throws {
    try runReportingErrors {
      let h5 = try H5File(path: file)
      if verify {
        let v = try h5.verifyContents()
        print("\(file): verified \(v.datasets) datasets, \(grouped(v.bytes)) bytes: every checksum matches")
        print("  contents sha256 \(v.digest)")
      }
      let format = (try? h5.stringAttribute("format")) ?? ""
      switch format {
      case FeatureFormat.name:
        print(try describeFeatureFile(FeatureFile(path: file)))
      case Checkpoint.format:
        print(try describeCheckpoint(file))
      default:
        throw Failure(file, "unknown format '\(format)': expected a sertrain feature file or checkpoint")
      }
    }
  }
}
