import Base
import CSystem
import FeatureStore
import FoundationEssentials
import HDF5
import ModelFiles

#if canImport(Glibc)
  import Glibc
#endif

/// The exclusive lock of a run directory (`RUN_DIR/.lock`, `flock`), held by rank 0 for the life of the process:
/// a second `train` on the same directory refuses instead of interleaving its checkpoints with the first's. The
/// file holds the holder's PID and host; the kernel drops the lock when the process ends, however it ends.
public final class RunLock {
  public static let fileName = ".lock"
  let fd: Int32

  public init(runDir: String) throws {
    let path = runDir + "/" + RunLock.fileName
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw Failure("\(path): cannot open the lock: \(String(cString: strerror(errno)))") }
    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
      let holder = RunLock.holder(fd: fd)
      close(fd)
      throw Failure(
        "\(runDir) is in use by \(holder) (lock \(path)): wait for that run to end, stop it (kill -USR1 writes a "
          + "checkpoint), or choose another --run-dir")
    }
    let text = Array("pid \(getpid()) on host \(hostName()), since \(formatTime(unixTime()))\n".utf8)
    _ = ftruncate(fd, 0)
    _ = pwrite(fd, text, text.count, 0)
  }

  deinit { close(fd) }

  private static func holder(fd: Int32) -> String {
    var buffer = [UInt8](repeating: 0, count: 256)
    let n = pread(fd, &buffer, buffer.count, 0)
    let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
    let line = text.split(separator: "\n").first.map(String.init) ?? ""
    return line.isEmpty ? "another process" : line
  }
}

/// The files a training run writes in its directory (`train --force` removes them before a new run there).
public let runFiles = [
  "checkpoint-last.h5", "checkpoint-best.h5", "history.csv", "config.json", "report.html", "status", "evaluation.json",
  "tensorboard",
]

/// What run `runDir` holds, in words (model, epoch, state), or nil when it holds none: a new run there would mix
/// its files with that run's.
public func existingRun(in runDir: String) -> String? {
  let last = runDir + "/checkpoint-last.h5"
  if access(last, F_OK) == 0 {
    guard let c = try? Checkpoint.read(last), let text = c.training, let t = try? TrainingState.parse(text) else {
      return "a run whose \(last) cannot be read"
    }
    return "a run of model \(c.spec.name) on \(t.dataPath ?? t.config.data), epoch \(t.epoch) of \(t.config.epochs)"
      + (t.finished ? ", finished" : RunStatus.read(runDir: runDir).map { ", \($0.rawValue)" } ?? "")
  }
  for file in ["config.json", "history.csv"] where access(runDir + "/" + file, F_OK) == 0 {
    return "a run that wrote no checkpoint yet (\(file) is there)"
  }
  return nil
}

/// `RUN_DIR/status`: one word for scripts and people, `running`, `stopped` (by a signal, after a checkpoint:
/// resume it) or `finished`. The Launch scripts read it when `mpirun` ends with its own code instead of the ranks'.
public enum RunStatus: String, Sendable {
  /// `failed`: a fatal error ended the run; the file's second line says which.
  case running, stopped, finished, failed

  public static let fileName = "status"

  /// Writes the word, and `reason` on a second line when given.
  public func write(runDir: String, reason: String? = nil) throws {
    let text = rawValue + "\n" + (reason.map { $0.replacing("\n", with: " ") + "\n" } ?? "")
    try writeTextAtomically(text, to: runDir + "/" + RunStatus.fileName)
  }

  /// The status in `runDir` (its first line), if there is one.
  public static func read(runDir: String) -> RunStatus? {
    (try? readFileBytes(runDir + "/" + fileName)).flatMap {
      RunStatus(rawValue: String(decoding: $0, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? "")
    }
  }
}

/// Runs a training run's launcher (`mpirun ...`, `srun ...`) as a batch script needs it run (`sertrain supervise`,
/// which the Launch scripts `exec`): a stop signal to this process (SIGUSR1, SIGTERM, SIGINT: Slurm's
/// `--signal=B:`, `scancel --batch`, qdel, a terminal) goes on to the launcher as SIGUSR1, which mpirun and srun pass
/// to every rank, so that rank 0 writes a checkpoint; and the exit code comes from the run's status file when rank 0
/// wrote it during this launch, since the launcher's cannot say: mpirun signalled itself exits 1 though the ranks
/// stopped cleanly, and with `orte_abort_on_non_zero_status` off it exits 0 whatever theirs. Returns 75 (stopped:
/// resume it), the launcher's code when the run finished, else that code or 1 if it was 0.
///
/// A launcher that outlives the last rank below it by `grace` seconds (0: not watched) is killed, with a line that
/// says so: Debian 12's OpenMPI 4.1.4 can hang in its finalize (PMIx) after a rank died, every rank gone, which would
/// hold a batch job to its time limit and keep it from being requeued. A run that finished or stopped then ends as it
/// would have. (Ranks that srun or a remote orted starts are not below the launcher on this node: they are not
/// watched.)
public func superviseLauncher(_ command: [String], runDir: String, grace: Double = 30) throws -> Int32 {
  try makeDirectories(runDir)
  // The status file must be newer than this to speak for this launch (mtimes of one file system, not clocks).
  let marker = runDir + "/.launched"
  let fd = open(marker, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
  guard fd >= 0, futimens(fd, nil) == 0, close(fd) == 0 else {
    throw Failure(marker, "cannot mark the launch: \(String(cString: strerror(errno)))")
  }
  if sertrain_stop_requested() != 0 {
    printError("sertrain supervise: a stop signal came before \(command[0]) started; nothing ran (exit 75)")
    return Trainer.exitStopped
  }
  var (code, outlived) = try runForwardingStops(command, ranksNamed: grace > 0 ? "sertrain" : nil, grace: grace)
  if outlived {
    printError(
      "sertrain supervise: \(command[0]) was still running \(fixed(grace, 0)) s after the last rank below it ended "
        + "(OpenMPI's mpirun can hang in its finalize after a rank dies): killed it")
  }
  let status = runDir + "/" + RunStatus.fileName
  var state: RunStatus?
  if modificationTime(status) > modificationTime(marker) { state = RunStatus.read(runDir: runDir) }
  switch state {
  case .stopped: code = Trainer.exitStopped
  case .finished: if outlived { code = 0 }
  default: if code == 0 { code = 1 }
  }
  return code
}

/// Runs `argv` (searched in PATH, inheriting standard input, output and error) to its end, passing each stop signal
/// this process gets meanwhile on as SIGUSR1; its exit code, or 128 + the signal that killed it, as a shell says.
/// With `ranksNamed`, a launcher that outlives the last process of that name below it by `grace` seconds is killed
/// (`outlived`).
public func runForwardingStops(_ argv: [String], ranksNamed name: String? = nil, grace: Double = 0) throws -> (
  code: Int32, outlived: Bool
) {
  var pointers: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
  defer { for p in pointers { free(p) } }
  fflush(nil)  // the child writes to the same files: our lines first
  var (status, outlived): (Int32, Int32) = (0, 0)
  guard sertrain_supervise(&pointers, name, grace, &status, &outlived) == 0 else {
    throw Failure("\(argv[0]): cannot run it: \(String(cString: strerror(errno)))")
  }
  return (shellExitCode(waitStatus: status), outlived != 0)
}

/// What identifies a feature file by content rather than by name: its shape, classes, a hash of every label and a
/// hash of the bits of up to 64 rows spread over the file. Resume checks it, so that `--data` of another extract
/// (even with the same row count) is refused.
public struct DataIdentity: Codable, Equatable, Sendable {
  public var rows: Int
  public var width: Int
  public var classes: [String]
  public var labelsHash: String
  public var rowsHash: String

  public init(rows: Int, width: Int, classes: [String], labelsHash: String, rowsHash: String) {
    (self.rows, self.width, self.classes, self.labelsHash, self.rowsHash) = (rows, width, classes, labelsHash, rowsHash)
  }

  public init(_ file: FeatureFile) throws {
    rows = file.rowCount
    width = file.width
    classes = file.classes
    var h = FNV1a()
    for l in file.labels { h.add(UInt32(bitPattern: l)) }
    labelsHash = h.hex
    var r = FNV1a()
    let samples = min(64, file.rowCount)
    for i in 0..<samples {
      let row = i * file.rowCount / max(samples, 1)
      for v in try file.readRows(row..<(row + 1)) { r.add(v.bitPattern) }
    }
    rowsHash = r.hex
  }

  /// How `other` (the file given now) differs from this one (the run's), or nil when it is the same data.
  public func difference(from other: DataIdentity) -> String? {
    if rows != other.rows || width != other.width {
      return "\(other.rows) rows x \(other.width) features, the run's data has \(rows) x \(width)"
    }
    if classes != other.classes { return "classes \(other.classes), the run's data has \(classes)" }
    if labelsHash != other.labelsHash { return "its labels differ from the run's data (same shape)" }
    if rowsHash != other.rowsHash { return "its feature values differ from the run's data (same shape and labels)" }
    return nil
  }
}

/// Where a `train` runs: the directory given, or under `runs/` a new `runs/<date-time>`, or with `--resume auto`
/// the newest unfinished run there (by the time its last checkpoint was saved, which the checkpoint records).
/// `note` says which was chosen and why, for rank 0 to print.
public func resolveRunDirectory(given: String?, resume: String?, parent: String = "runs") -> (
  dir: String, note: String?
) {
  if let given { return (given, nil) }
  let fresh = parent + "/" + timestampName()
  guard resume == "auto" else { return (fresh, nil) }
  var unfinished: [(dir: String, saved: Double, state: TrainingState?)] = []
  var finished = 0
  for name in (directoryEntries(parent) ?? []).sorted() where !name.hasPrefix(".") {
    let dir = parent + "/" + name
    let last = dir + "/" + Trainer.lastName
    guard access(last, R_OK) == 0 else { continue }
    let state = try? Checkpoint.readTrainingState(last)
    if state?.finished == true {
      finished += 1
      continue
    }
    unfinished.append((dir, state?.savedAt ?? modificationTime(last), state))
  }
  let skipped = finished > 0 ? "; \(finished) finished run(s) left alone" : ""
  guard let newest = unfinished.max(by: { $0.saved < $1.saved }) else {
    return (fresh, "--resume auto: no unfinished run under \(parent)/\(skipped): starting \(fresh)")
  }
  var position = ""
  if let s = newest.state { position = ", epoch \(s.epoch + 1) step \(s.step)" }
  return (
    newest.dir,
    "--resume auto: \(newest.dir) is the newest unfinished run under \(parent)/ (last checkpoint saved "
      + "\(formatTime(newest.saved))\(position); \(unfinished.count) unfinished\(skipped))"
  )
}

/// `20261202-162731`: a new run directory's name.
func timestampName() -> String { formatTime(unixTime(), format: "%Y%m%d-%H%M%S") }

public func hostName() -> String {
  var buffer = [CChar](repeating: 0, count: 256)
  gethostname(&buffer, buffer.count - 1)
  return String(cString: buffer)
}

extension Checkpoint {
  /// Only the training state of a checkpoint (nil for one that does not come from training): what `--resume auto`
  /// compares across runs without reading their parameters.
  public static func readTrainingState(_ path: String) throws -> TrainingState? {
    let f = try H5File(path: path)
    guard f.hasAttribute("training") else { return nil }
    return try TrainingState.parse(try f.stringAttribute("training"), source: path)
  }
}
