import Base
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// What a child process took: exit status, wall seconds, peak resident memory.
public struct ChildMeasurement: Sendable {
  public var status: Int32
  public var seconds: Double
  public var maxRSSMegabytes: Double
}

/// Runs `argv` (searched on PATH), inheriting stdio, and measures it with wait4.
public func runMeasured(_ argv: [String], environment extra: [String: String] = [:]) throws -> ChildMeasurement {
  let (pid, t0) = try spawn(argv, extra, actions: nil)
  return waitMeasured(pid, since: t0)
}

/// Starts `argv` with this environment plus `extra`; returns the pid and the start time.
private func spawn(
  _ argv: [String], _ extra: [String: String], actions: UnsafePointer<posix_spawn_file_actions_t>?
) throws -> (pid_t, Double) {
  let cArgs = argv.map { strdup($0) } + [nil]
  let cEnv = childEnvironment(extra).map { strdup($0) } + [nil]
  defer {
    cArgs.forEach { free($0) }
    cEnv.forEach { free($0) }
  }
  var pid: pid_t = 0
  fflush(nil)  // the child inherits our stdout: keep the lines in order
  let t0 = monotonicSeconds()
  let rc = posix_spawnp(&pid, argv[0], actions, nil, cArgs, cEnv)
  guard rc == 0 else {
    throw Failure("cannot start \(argv[0]): \(String(cString: strerror(rc)))")
  }
  return (pid, t0)
}

/// Waits for `pid`: its exit code (128 + signal when killed), wall seconds since `t0`, peak RSS.
private func waitMeasured(_ pid: pid_t, since t0: Double) -> ChildMeasurement {
  var status: Int32 = 0
  var usage = rusage()
  while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
  let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  return ChildMeasurement(
    status: exitCode, seconds: monotonicSeconds() - t0, maxRSSMegabytes: Double(usage.ru_maxrss) / 1024)
}

/// The path of a Python peer in the checkout's `Benchmarks/` folder: the first found walking up from the executable
/// (`.build/<triple>/release/sertrain`) and then from the working directory.
public func peerScript(_ name: String) throws -> String {
  for start in [currentExecutable(), currentDirectory()] {
    var dir = start
    while let slash = dir.lastIndex(of: "/"), !dir.isEmpty {
      dir = String(dir[..<slash])
      let candidate = (dir.isEmpty ? "" : dir) + "/Benchmarks/" + name
      if access(candidate, R_OK) == 0 { return candidate }
    }
  }
  throw Failure("Benchmarks/\(name) not found above \(currentExecutable()) or here: run the benchmarks from a checkout")
}

func currentDirectory() -> String {
  var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
  return getcwd(&buffer, buffer.count) != nil ? String(cString: buffer) : "."
}

public func currentExecutable() -> String {
  var buf = [CChar](repeating: 0, count: 4096)
  let n = readlink("/proc/self/exe", &buf, buf.count - 1)
  return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

/// A measurement a child process prints as its last JSON line.
public protocol JSONLine: Codable {}

extension JSONLine {
  public func json() -> String { String(decoding: (try? JSONEncoder().encode(self)) ?? Data(), as: UTF8.self) }
}

/// Runs `argv` (standard output captured) and decodes the last line of its output that starts with `{`.
public func runChild<T: JSONLine>(
  _ argv: [String], environment: [String: String] = [:], as: T.Type = T.self
) throws -> (ChildMeasurement, T) {
  let (m, out) = try runCapturing(argv, environment: environment)
  guard m.status == 0, let line = out.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
    throw Failure("\(argv.prefix(3).joined(separator: " ")) exited \(m.status)")
  }
  return (m, try JSONDecoder().decode(T.self, from: Data(line.utf8)))
}

/// What mpirun needs in the environment to run as root (nothing for other users).
public var mpirunEnvironment: [String: String] {
  getuid() == 0 ? ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"] : [:]
}

/// Median of a non-empty list.
public func median(_ xs: [Double]) -> Double {
  let s = xs.sorted()
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// Runs `argv` like `runMeasured`, but captures its standard output (standard error stays inherited).
public func runCapturing(
  _ argv: [String], environment extra: [String: String] = [:]
) throws -> (ChildMeasurement, String) {
  var fds: [Int32] = [0, 0]
  guard pipe(&fds) == 0 else { throw Failure("pipe failed") }
  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  defer { posix_spawn_file_actions_destroy(&actions) }
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
  posix_spawn_file_actions_addclose(&actions, fds[0])
  let started: (pid_t, Double)
  do {
    started = try spawn(argv, extra, actions: &actions)
  } catch {
    close(fds[1])
    close(fds[0])
    throw error
  }
  close(fds[1])
  var output: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = read(fds[0], &chunk, chunk.count)
    if n > 0 {
      output += chunk[0..<n]
    } else if n == 0 || errno != EINTR {
      break
    }
  }
  close(fds[0])
  let m = waitMeasured(started.0, since: started.1)
  return (m, String(decoding: output, as: UTF8.self))
}

/// This process's environment as `KEY=value` strings, with `extra` replacing or adding entries.
func childEnvironment(_ extra: [String: String]) -> [String] {
  var env = [String]()
  var p = environ
  while let e = p.pointee {
    let s = String(cString: e)
    if extra[String(s.prefix { $0 != "=" })] == nil { env.append(s) }
    p += 1
  }
  for (k, v) in extra { env.append("\(k)=\(v)") }
  return env
}
