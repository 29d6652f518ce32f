import Base
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// What a child process took: exit status (128 + signal when killed), wall seconds, peak resident memory; and what
/// it wrote to standard output, when captured.
public struct ChildMeasurement: Sendable {
  public var status: Int32
  public var seconds: Double
  public var maxRSSMegabytes: Double
  public var output = ""
}

/// Runs `argv` (searched on PATH) with this environment plus `extra`, inheriting stdio (standard output captured
/// with `capture`), and measures it with wait4.
public func runMeasured(_ argv: [String], environment extra: [String: String] = [:], capture: Bool = false) throws
  -> ChildMeasurement
{
  var fds: [Int32] = [-1, -1]
  var actions = posix_spawn_file_actions_t()
  posix_spawn_file_actions_init(&actions)
  defer { posix_spawn_file_actions_destroy(&actions) }
  if capture {
    guard pipe(&fds) == 0 else { throw Failure("pipe failed") }
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
  }
  defer { fds.filter { $0 >= 0 }.forEach { close($0) } }
  let cArgs = argv.map { strdup($0) } + [nil]
  let cEnv = environment().merging(extra) { $1 }.map { strdup("\($0)=\($1)") } + [nil]
  defer { (cArgs + cEnv).forEach { free($0) } }
  var pid: pid_t = 0
  fflush(nil)  // the child inherits our stdout: keep the lines in order
  let t0 = monotonicSeconds()
  let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, cEnv)
  guard rc == 0 else { throw Failure("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
  var output: [UInt8] = []
  if capture {
    close(fds[1])
    fds[1] = -1
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = read(fds[0], &chunk, chunk.count)
      if n > 0 {
        output += chunk[0..<n]
      } else if n == 0 || errno != EINTR {
        break
      }
    }
  }
  var status: Int32 = 0
  var usage = rusage()
  while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
  return ChildMeasurement(
    status: shellExitCode(waitStatus: status), seconds: monotonicSeconds() - t0,
    maxRSSMegabytes: Double(usage.ru_maxrss) / 1024, output: String(decoding: output, as: UTF8.self))
}

/// A measurement a child process prints as its last JSON line.
public protocol JSONLine: Codable {}

extension JSONLine {
  public func json() -> String { jsonText(self) }
}

/// Runs `argv` (standard output captured) and decodes the last line of its output that starts with `{`.
public func runChild<T: JSONLine>(
  _ argv: [String], environment: [String: String] = [:], as: T.Type = T.self
) throws -> (ChildMeasurement, T) {
  let m = try runMeasured(argv, environment: environment, capture: true)
  guard m.status == 0, let line = m.output.split(separator: "\n").last(where: { $0.hasPrefix("{") }) else {
    throw Failure("\(argv.prefix(3).joined(separator: " ")) exited \(m.status)")
  }
  return (m, try decodeJSON(T.self, from: String(line)))
}

/// The path of a Python peer in the checkout's `Benchmarks/` folder: the first found walking up from the executable
/// (`.build/<triple>/release/sertrain`) and then from the working directory.
public func peerScript(_ name: String) throws -> String {
  var cwd = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
  for start in [currentExecutable(), getcwd(&cwd, cwd.count) != nil ? String(cString: cwd) : "."] {
    var dir = start
    while let slash = dir.lastIndex(of: "/"), !dir.isEmpty {
      dir = String(dir[..<slash])
      let candidate = dir + "/Benchmarks/" + name
      if access(candidate, R_OK) == 0 { return candidate }
    }
  }
  throw Failure("Benchmarks/\(name) not found above \(currentExecutable()) or here: run the benchmarks from a checkout")
}

public func currentExecutable() -> String {
  var buf = [CChar](repeating: 0, count: 4096)
  let n = readlink("/proc/self/exe", &buf, buf.count - 1)
  return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
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

/// Runs configuration c `counts[c]` times, in rounds that run each configuration once (so that all of them see the
/// same machine state, which drifts on shared hosts): `body(c, round)`'s results, per configuration.
public func interleaved<T>(_ counts: [Int], _ body: (_ configuration: Int, _ round: Int) throws -> T) rethrows -> [[T]]
{
  var results = counts.map { _ in [T]() }
  for round in 0..<(counts.max() ?? 0) {
    for (c, n) in counts.enumerated() where round < n { results[c].append(try body(c, round)) }
  }
  return results
}
