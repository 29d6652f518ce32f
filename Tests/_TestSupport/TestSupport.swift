// Helpers shared by the test targets: paths, temporary directories, running the sertrain binary,
// and approximate comparisons.
import Foundation
import XCTest

/// The package root (the directory holding Package.swift).
public let packageRoot: String = {
  var url = URL(fileURLWithPath: #filePath)
  while url.path != "/" {
    url.deleteLastPathComponent()
    if FileManager.default.fileExists(atPath: url.appendingPathComponent("Package.swift").path) {
      return url.path
    }
  }
  fatalError("Package.swift not found above \(#filePath)")
}()

/// `../shared` seen from the package root: datasets and reference files.
public let sharedDir: String = {
  if let s = ProcessInfo.processInfo.environment["SERTRAIN_SHARED"] { return s }
  return URL(fileURLWithPath: packageRoot).deletingLastPathComponent().appendingPathComponent("shared").path
}()

public func sharedPath(_ relative: String) -> String { sharedDir + "/" + relative }

/// Skips the test when a file from ../shared is missing (a checkout without it).
public func requireShared(_ relative: String) throws -> String {
  let p = sharedPath(relative)
  guard FileManager.default.fileExists(atPath: p) else { throw XCTSkip("\(p) is not present") }
  return p
}

/// A fresh temporary directory, removed when the test ends.
public func temporaryDirectory(_ test: XCTestCase) -> String {
  let dir = NSTemporaryDirectory() + "sertrain-test-\(getpid())-\(UUID().uuidString.prefix(8))"
  try! FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  test.addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
  return dir
}

/// The sertrain executable built beside this test bundle.
public let sertrainBinary: String = {
  let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
  var dir = exe.deletingLastPathComponent()
  // The XCTest bundle sits in the build directory; on some layouts one level deeper.
  for _ in 0..<3 {
    let candidate = dir.appendingPathComponent("sertrain").path
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
    dir.deleteLastPathComponent()
  }
  return packageRoot + "/.build/debug/sertrain"
}()

public struct RunResult {
  public let status: Int32
  public let stdout: String
  public let stderr: String
}

/// Runs a program (by default the sertrain binary) and collects its output.
@discardableResult
public func runCommand(
  _ arguments: [String], executable: String = sertrainBinary, environment: [String: String] = [:],
  directory: String? = nil
) throws -> RunResult {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: executable)
  p.arguments = arguments
  var env = ProcessInfo.processInfo.environment
  for (k, v) in environment { env[k] = v }
  p.environment = env
  if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
  let out = Pipe()
  let err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  // Read both pipes concurrently so neither fills and blocks the child.
  final class Box: @unchecked Sendable { var data = Data() }
  let errBox = Box()
  let group = DispatchGroup()
  group.enter()
  DispatchQueue.global().async {
    errBox.data = err.fileHandleForReading.readDataToEndOfFile()
    group.leave()
  }
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  group.wait()
  let errData = errBox.data
  p.waitUntilExit()
  return RunResult(
    status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
    stderr: String(decoding: errData, as: UTF8.self))
}

/// Runs a bash script.
@discardableResult
/// The lines of `predict`'s table without the warnings under a prediction (a recording the model trained on, say).
public func predictionLines(_ table: String) -> [Substring] {
  table.split(separator: "\n").filter { !$0.drop { $0 == " " }.hasPrefix("warning: ") }
}

public func bash(_ script: String, environment: [String: String] = [:], directory: String? = nil) throws
  -> RunResult
{
  try runCommand(["-c", script], executable: "/bin/bash", environment: environment, directory: directory)
}

/// |a - b| <= atol + rtol * |b|, elementwise; reports the worst element.
public func assertClose(
  _ a: [Float], _ b: [Float], rtol: Float = 0, atol: Float = 0, _ message: String = "",
  file: StaticString = #filePath, line: UInt = #line
) {
  XCTAssertEqual(a.count, b.count, "count \(message)", file: file, line: line)
  var worst = 0
  var worstExcess: Float = -.infinity
  for i in 0..<min(a.count, b.count) {
    let excess = abs(a[i] - b[i]) - (atol + rtol * abs(b[i]))
    if excess > worstExcess || excess.isNaN {
      worstExcess = excess.isNaN ? .infinity : excess
      worst = i
    }
  }
  if worstExcess > 0 {
    XCTFail(
      "\(message): element \(worst): \(a[worst]) vs \(b[worst]) (|diff| \(abs(a[worst] - b[worst])), rtol \(rtol), atol \(atol))",
      file: file, line: line)
  }
}

/// Largest |a - b| relative to max |b| (the reference's scale), as the Keras tolerances are stated.
public func relativeToMax(_ a: [Float], _ b: [Float]) -> Float {
  let scale = b.map(abs).max() ?? 0
  var worst: Float = 0
  for i in 0..<min(a.count, b.count) { worst = max(worst, abs(a[i] - b[i])) }
  return scale > 0 ? worst / scale : worst
}

/// A deterministic pseudo-random generator for tests (SplitMix64).
public struct TestRNG: RandomNumberGenerator {
  var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
  public mutating func normal() -> Float {
    let u1 = max(Double.random(in: 0..<1, using: &self), 1e-300)
    let u2 = Double.random(in: 0..<1, using: &self)
    return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
  }
}

/// A 16-bit PCM mono WAV file's bytes.
public func wavBytes(_ samples: [Int16], rate: Int = 22050) -> Data {
  var d = wavHeader(format: 1, bytesPerSample: 2, count: samples.count, rate: rate)
  for s in samples { withUnsafeBytes(of: s.littleEndian) { d.append(contentsOf: $0) } }
  return d
}

/// A 32-bit IEEE float mono WAV file's bytes (NaN and infinity allowed).
public func floatWavBytes(_ samples: [Float], rate: Int = 22050) -> Data {
  var d = wavHeader(format: 3, bytesPerSample: 4, count: samples.count, rate: rate)
  for v in samples { withUnsafeBytes(of: v.bitPattern.littleEndian) { d.append(contentsOf: $0) } }
  return d
}

private func wavHeader(format: Int, bytesPerSample: Int, count: Int, rate: Int) -> Data {
  var d = Data()
  func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
  func u16(_ v: Int) { withUnsafeBytes(of: UInt16(v).littleEndian) { d.append(contentsOf: $0) } }
  d.append(contentsOf: Array("RIFF".utf8))
  u32(36 + bytesPerSample * count)
  d.append(contentsOf: Array("WAVEfmt ".utf8))
  u32(16)
  u16(format)
  u16(1)
  u32(rate)
  u32(rate * bytesPerSample)
  u16(bytesPerSample)
  u16(8 * bytesPerSample)
  d.append(contentsOf: Array("data".utf8))
  u32(bytesPerSample * count)
  return d
}

/// A run directory's `history.csv` lines and the best `val_accuracy` in them (0 when none).
public func bestValidationAccuracy(_ runDir: String) throws -> (best: Double, history: [Substring]) {
  let history = try String(contentsOfFile: runDir + "/history.csv", encoding: .utf8).split(separator: "\n")
  let best = history.dropFirst().compactMap { Double($0.split(separator: ",")[4]) }.max() ?? 0
  return (best, history)
}

/// The OpenBLAS kernel families a test of training's outcome runs under: the one sertrain picks for this CPU, and on
/// an AVX-512 CPU also the AVX2 one (`Haswell`), which rounds differently. A test whose outcome holds on one only
/// fails on machines of the other kind.
public var blasKernelEnvironments: [[String: String]] {
  let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
  return flags.contains(" avx512f") ? [[:], ["OPENBLAS_CORETYPE": "Haswell"]] : [[:]]
}
