import CSystem
import Dispatch

#if canImport(Glibc)
  import Glibc
#endif

/// An error of sertrain's own, in one line that says what is wrong, beginning with the file (and line) it is about
/// when there is one.
public struct Failure: Error, CustomStringConvertible, Sendable {
  public let message: String
  public init(_ message: String) { self.message = message }
  public init(_ path: String, line: Int? = nil, _ message: String) {
    self.message = "\(path):\(line.map { "\($0):" } ?? "") \(message)"
  }
  public var description: String { message }
}

/// A failure every rank reached together (the same check on the same inputs, or rank 0's verdict broadcast): the
/// ranks exit with 1 without aborting the job; rank 0 carries the message.
public struct AgreedFailure: Error, CustomStringConvertible {
  public let message: String?
  public init(_ message: String?) { self.message = message }
  public var description: String { message ?? "failed on another rank" }
}

/// A file being written under a temporary name beside its final path. `commit()` fsyncs it and renames it into
/// place; `discard()` (or an uncommitted deinit) removes it. A crash or a full disk therefore never leaves a
/// half-written file under the final name, and a file already there stays intact until the rename.
public final class PendingFile {
  public let path: String
  public let tempPath: String
  private var done = false

  /// Refuses an existing `path` unless `overwrite`.
  public init(path: String, overwrite: Bool) throws {
    if let refusal = PendingFile.refusal(path, overwrite: overwrite) { throw Failure(refusal) }
    self.path = path
    let slash = path.lastIndex(of: "/")
    let dir = slash.map { String(path[...$0]) } ?? ""
    let base = slash.map { String(path[path.index(after: $0)...]) } ?? path
    tempPath = "\(dir).\(base)\(PendingFile.suffix)\(getpid())"
    unlink(tempPath)
  }

  /// Why `path` may not be written (it exists and `overwrite` is off), or nil: what `init` refuses with, for commands
  /// that check their output before any work.
  public static func refusal(_ path: String, overwrite: Bool) -> String? {
    !overwrite && access(path, F_OK) == 0 ? "\(path): already exists (pass --force to replace it)" : nil
  }

  /// Temporary names end in this and the writer's PID.
  private static let suffix = ".tmp-"

  /// Removes the temporary files in `directory` whose writing process is gone (a crash or kill left them).
  public static func removeStale(in directory: String) {
    for name in directoryEntries(directory) ?? [] where name.hasPrefix(".") {
      guard let at = name.ranges(of: suffix).last, let pid = Int32(name[at.upperBound...]) else { continue }
      if pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
    }
  }

  private var writebackDescriptor: Int32 = -1
  private var syncedBytes = 0
  private let syncs = DispatchGroup()

  /// Starts the disk writes of what has been written to the temporary file so far, without waiting for them, and
  /// every 64 MiB an fdatasync on a thread of its own, so that `commit()`'s fsync finds little left to do: a large
  /// file's writes, and the device's flushes of its cache (0.3 s for 464 MB here), overlap the work that produces
  /// it. Failures are ignored here: the fsync in `commit()` reports them.
  public func startWriteback() {
    if writebackDescriptor < 0 { writebackDescriptor = open(tempPath, O_RDONLY | O_CLOEXEC) }
    let fd = writebackDescriptor
    guard fd >= 0 else { return }
    _ = sertrain_start_writeback(fd)
    var st = stat()
    if fstat(fd, &st) == 0, Int(st.st_size) - syncedBytes >= 64 << 20, syncs.wait(timeout: .now()) == .success {
      syncedBytes = Int(st.st_size)
      DispatchQueue.global().async(group: syncs) { _ = fdatasync(fd) }
    }
  }

  /// fsyncs the temporary file, renames it to `path` and fsyncs the directory.
  public func commit() throws {
    precondition(!done)
    closeWriteback()
    try syncFile(tempPath)
    guard rename(tempPath, path) == 0 else {
      throw Failure(path, "cannot rename \(tempPath) into place: \(String(cString: strerror(errno)))")
    }
    done = true
    let slash = path.lastIndex(of: "/")
    let dir = slash.map { String(path[..<$0]) } ?? "."
    let dfd = open(dir.isEmpty ? "/" : dir, O_RDONLY)
    if dfd >= 0 {
      fsync(dfd)
      close(dfd)
    }
  }

  /// `error` (which names the temporary file) as a failure to write `path`: what the user asked for.
  public func failure(_ error: Error) -> Failure {
    var text = String(describing: error)
    for name in [tempPath, path] where text.hasPrefix(name + ": ") { text.removeFirst(name.count + 2) }
    return Failure(path, "not written (a file already there is untouched): \(text)")
  }

  public func discard() {
    closeWriteback()
    if !done { unlink(tempPath) }
    done = true
  }

  private func closeWriteback() {
    syncs.wait()
    if writebackDescriptor >= 0 { close(writebackDescriptor) }
    writebackDescriptor = -1
  }

  deinit { discard() }
}

/// Writes a file through a `PendingFile`: `body` receives the temporary path and must close what it opened there.
public func writeAtomically(to path: String, overwrite: Bool, _ body: (String) throws -> Void) throws {
  let pending = try PendingFile(path: path, overwrite: overwrite)
  do {
    try body(pending.tempPath)
    try pending.commit()
  } catch {
    pending.discard()
    throw pending.failure(error)
  }
}

/// fsyncs a file by path; a failure (EIO, ENOSPC on some filesystems) is an error.
public func syncFile(_ path: String) throws {
  let fd = open(path, O_RDONLY)
  guard fd >= 0 else {
    throw Failure(path, "cannot open for fsync: \(String(cString: strerror(errno)))")
  }
  defer { close(fd) }
  guard fsync(fd) == 0 else {
    throw Failure(path, "fsync failed: \(String(cString: strerror(errno)))")
  }
}

/// Writes `text` to `path` through a temporary file, fsync, rename and an fsync of the directory.
public func writeTextAtomically(_ text: String, to path: String) throws {
  try writeBytesAtomically(Array(text.utf8), to: path, overwrite: true)
}

/// Writes `bytes` to `path` as `writeTextAtomically` does; refuses an existing `path` unless `overwrite`.
public func writeBytesAtomically(_ bytes: [UInt8], to path: String, overwrite: Bool) throws {
  try writeAtomically(to: path, overwrite: overwrite) { temp in
    guard let f = fopen(temp, "w") else {
      throw Failure(temp, "cannot create: \(String(cString: strerror(errno)))")
    }
    let ok = fwrite(bytes, 1, bytes.count, f) == bytes.count
    guard fclose(f) == 0, ok else {
      throw Failure(path, "write failed: \(String(cString: strerror(errno)))")
    }
  }
}

/// A whole file's bytes.
public func readFileBytes(_ path: String) throws -> [UInt8] {
  guard let f = fopen(path, "r") else { throw Failure(path, "cannot open: \(String(cString: strerror(errno)))") }
  defer { fclose(f) }
  var bytes: [UInt8] = []
  var block = [UInt8](repeating: 0, count: 1 << 20)
  while true {
    let n = fread(&block, 1, block.count, f)
    bytes += block[0..<n]
    if n < block.count { break }
  }
  guard ferror(f) == 0 else { throw Failure(path, "read failed: \(String(cString: strerror(errno)))") }
  return bytes
}

/// `mkdir -p`.
public func makeDirectories(_ path: String) throws {
  var current = path.hasPrefix("/") ? "" : "."
  for part in path.split(separator: "/") {
    current += "/" + part
    if mkdir(current, 0o755) != 0 && errno != EEXIST {
      throw Failure(current, "cannot create the directory: \(String(cString: strerror(errno)))")
    }
  }
}

/// The names in a directory (`.` and `..` included, unsorted), or nil when it cannot be read (errno says why).
public func directoryEntries(_ path: String) -> [String]? {
  guard let d = opendir(path) else { return nil }
  defer { closedir(d) }
  var names: [String] = []
  while let e = readdir(d) {
    names.append(withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) })
  }
  return names
}

/// The file's modification time in seconds since 1970, 0 when it cannot be read.
public func modificationTime(_ path: String) -> Double {
  var st = stat()
  guard stat(path, &st) == 0 else { return 0 }
  return Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) * 1e-9
}
