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
  var env = [String]()
  var p = environ
  while let e = p.pointee {
    let s = String(cString: e)
    let key = String(s.prefix { $0 != "=" })
    if extra[key] == nil { env.append(s) }
    p += 1
  }
  for (k, v) in extra { env.append("\(k)=\(v)") }
  let cArgs = argv.map { strdup($0) } + [nil]
  let cEnv = env.map { strdup($0) } + [nil]
  defer {
    cArgs.forEach { free($0) }
    cEnv.forEach { free($0) }
  }
  var pid: pid_t = 0
  fflush(nil)  // the child inherits our stdout: keep the lines in order
  let t0 = monotonicSeconds()
  let rc = posix_spawnp(&pid, argv[0], nil, nil, cArgs, cEnv)
  guard rc == 0 else {
    throw ChildError(message: "cannot start \(argv[0]): \(String(cString: strerror(rc)))")
  }
  var status: Int32 = 0
  var usage = rusage()
  while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
  let dt = monotonicSeconds() - t0
  let exitCode: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  return ChildMeasurement(status: exitCode, seconds: dt, maxRSSMegabytes: Double(usage.ru_maxrss) / 1024)
}

public struct ChildError: Error, CustomStringConvertible {
  public let message: String
  public init(message: String) { self.message = message }
  public var description: String { message }
}

/// The path of the running executable.
public func currentExecutable() -> String {
  var buf = [CChar](repeating: 0, count: 4096)
  let n = readlink("/proc/self/exe", &buf, buf.count - 1)
  return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
}

/// Median of a non-empty list.
public func median(_ xs: [Double]) -> Double {
  let s = xs.sorted()
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
