import CSystem

#if canImport(Glibc)
  import Glibc
#endif

/// `7193223` as "7,193,223".
public func grouped(_ n: Int) -> String {
  var s = String(n.magnitude)
  var i = s.count - 3
  while i > 0 {
    s.insert(",", at: s.index(s.startIndex, offsetBy: i))
    i -= 3
  }
  return (n < 0 ? "-" : "") + s
}

/// Cores this process may run on (its CPU affinity, what mpirun's binding left it), at least 1.
public func availableCores() -> Int { Int(sertrain_available_cores()) }

/// The memory this process may use: the machine's, or less where a control group it runs in (a Slurm job's, a
/// container's) sets a limit.
public func memoryLimit() -> Int {
  let physical = sysconf(Int32(_SC_PHYS_PAGES)) * sysconf(Int32(_SC_PAGESIZE))
  func text(_ path: String) -> String? { (try? readFileBytes(path)).map { String(decoding: $0, as: UTF8.self) } }
  return min(physical, cgroupMemoryLimit(text("/proc/self/cgroup") ?? "", read: text) ?? .max)
}

/// The smallest memory limit of the control groups that `/proc/self/cgroup`'s text names and of their ancestors,
/// read with `read`: cgroup v2's `memory.max` (the `0::` line) and v1's `memory.limit_in_bytes` (the `memory`
/// controller's line); nil when none sets one.
public func cgroupMemoryLimit(_ cgroups: String, read: (String) -> String?) -> Int? {
  var limit: Int?
  for line in cgroups.split(separator: "\n") {
    let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
    guard fields.count == 3 else { continue }
    let (root, file) =
      fields[1].isEmpty
      ? ("/sys/fs/cgroup", "memory.max")
      : fields[1].split(separator: ",").contains("memory")
        ? ("/sys/fs/cgroup/memory", "memory.limit_in_bytes") : ("", "")
    guard !root.isEmpty else { continue }
    var path = String(fields[2])
    while true {
      if let v = read(root + (path == "/" ? "" : path) + "/" + file).flatMap({ Int($0.trimmingCharacters()) }) {
        limit = min(limit ?? v, v)
      }
      guard let slash = path.lastIndex(of: "/"), path != "/" else { break }
      path = slash == path.startIndex ? "/" : String(path[..<slash])
    }
  }
  return limit
}

/// sertrain's version, and the build's (`sertrain --version`, config.json, checkpoints, the report).
public let sertrainVersion = "0.12.0"
public var buildIdentity: String { "sertrain \(sertrainVersion) (commit \(String(cString: sertrain_build_commit())))" }

/// The process environment as a dictionary (no Foundation).
public func environment() -> [String: String] {
  var out: [String: String] = [:]
  var p = environ
  while let entry = p.pointee {
    let s = String(cString: entry)
    if let eq = s.firstIndex(of: "=") {
      out[String(s[..<eq])] = String(s[s.index(after: eq)...])
    }
    p += 1
  }
  return out
}

/// A child's end as a shell reports it, from its wait status: its exit code, or 128 + the signal that killed it.
public func shellExitCode(waitStatus status: Int32) -> Int32 {
  status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Writes a line to standard error.
public func printError(_ s: String) {
  fputs(s + "\n", stderr)
}

/// Seconds on the monotonic clock.
public func monotonicSeconds() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Seconds since 1970 (UTC).
public func unixTime() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_REALTIME, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// `2026-12-02 16:27:31` in local time.
public func formatTime(_ t: Double, format: String = "%Y-%m-%d %H:%M:%S") -> String {
  var seconds = time_t(t)
  var parts = tm()
  localtime_r(&seconds, &parts)
  var buffer = [CChar](repeating: 0, count: 64)
  strftime(&buffer, buffer.count, format, &parts)
  return String(cString: buffer)
}

/// "1h02m", "3m05s", "12.3s".
public func formatDuration(_ s: Double) -> String {
  guard s.isFinite && s >= 0 else { return "?" }
  if s < 60 { return String(format1(s)) + "s" }
  let t = Int(s.rounded())
  if t < 3600 { return "\(t / 60)m\(pad2(t % 60))s" }
  return "\(t / 3600)h\(pad2((t % 3600) / 60))m"
}

func pad2(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
func format1(_ x: Double) -> String {
  let r = (x * 10).rounded() / 10
  let whole = Int(r)
  let tenth = Int(((abs(r) - Double(abs(whole))) * 10).rounded())
  return "\(r < 0 && whole == 0 ? "-" : "")\(whole).\(tenth)"
}

/// `s` filled with spaces to `width` characters: on the right (a left-aligned column), or with `right` on the left.
public func pad(_ s: String, _ width: Int, right: Bool = false) -> String {
  let fill = String(repeating: " ", count: max(0, width - s.count))
  return right ? fill + s : s + fill
}

/// Formats `x` with `digits` decimals (no Foundation).
public func fixed(_ x: Double, _ digits: Int) -> String {
  guard x.isFinite else { return "\(x)" }
  var scale = 1.0
  for _ in 0..<digits { scale *= 10 }
  let r = (abs(x) * scale).rounded(.toNearestOrEven)  // exact ties to even, as printf and Python do
  let whole = Int(r / scale)
  var frac = String(Int(r - Double(whole) * scale))
  while frac.count < digits { frac = "0" + frac }
  let sign = x < 0 && r != 0 ? "-" : ""
  return digits == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(frac)"
}

/// A one-line progress bar on standard error, drawn only when standard error is a terminal and at most
/// ten times a second: `label [#####.....] 45% 1234 rows/s ETA 12s`.
public final class ProgressBar {
  let label: String
  let unit: String
  public let enabled: Bool
  let start = monotonicSeconds()
  var lastDraw = 0.0

  public init(label: String, unit: String, enabled: Bool = isatty(2) != 0) {
    self.label = label
    self.unit = unit
    self.enabled = enabled
  }

  /// `fraction` of the work is done; `count` items so far; `detail` (a running loss, say) is shown after the rate.
  public func update(fraction: Double, count: Int, force: Bool = false, detail: String = "") {
    guard enabled else { return }
    let now = monotonicSeconds()
    if !force && now - lastDraw < 0.1 { return }
    lastDraw = now
    let elapsed = now - start
    let f = min(max(fraction, 0), 1)
    let width = 30
    let filled = Int(Double(width) * f)
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let rate = elapsed > 0 ? Double(count) / elapsed : 0
    let eta = f > 0 ? elapsed * (1 - f) / f : .infinity
    let more = detail.isEmpty ? "" : " - " + detail
    fputs(
      "\r\(label) [\(bar)] \(Int(f * 100))% \(Int(rate)) \(unit)/s\(more) ETA \(formatDuration(eta))\u{1B}[K", stderr)
  }

  /// Clears the bar's line.
  public func finish() {
    guard enabled else { return }
    fputs("\r\u{1B}[K", stderr)
  }
}

extension String {
  /// Padded with spaces to `n` characters, on the right or (`leftPadding`) on the left.
  public func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
  public func leftPadding(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }

  /// The string without white space at either end.
  public func trimmingCharacters() -> String {
    var s = Substring(self)
    while let c = s.first, c.isWhitespace { s = s.dropFirst() }
    while let c = s.last, c.isWhitespace { s = s.dropLast() }
    return String(s)
  }
}
