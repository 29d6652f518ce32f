#if canImport(Glibc)
  import Glibc
#endif

/// A reproducible random stream: xoshiro256** seeded through SplitMix64 from a seed and stream identifiers,
/// so that (seed, epoch, rank) or (seed, file index) always give the same numbers on every machine.
public struct RandomStream: RandomNumberGenerator, Sendable {
  @usableFromInline var s: (UInt64, UInt64, UInt64, UInt64)

  /// - Parameters:
  ///   - seed: the run's seed.
  ///   - stream: identifiers that select an independent stream (e.g. `[epoch, rank]`).
  public init(seed: UInt64, stream: [UInt64] = []) {
    var x = seed
    for id in stream { x = RandomStream.splitMix(&x) ^ (id &* 0x9E37_79B9_7F4A_7C15) }
    var state = x
    s = (
      RandomStream.splitMix(&state), RandomStream.splitMix(&state), RandomStream.splitMix(&state),
      RandomStream.splitMix(&state)
    )
  }

  private static func splitMix(_ x: inout UInt64) -> UInt64 {
    x &+= 0x9E37_79B9_7F4A_7C15
    var z = x
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  @inlinable public mutating func next() -> UInt64 {
    let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
    let t = s.1 << 17
    s.2 ^= s.0
    s.3 ^= s.1
    s.1 ^= s.2
    s.0 ^= s.3
    s.2 ^= t
    s.3 = s.3 << 45 | s.3 >> 19
    return result
  }

  /// Uniform in [0, 1) with 24 random bits.
  @inlinable public mutating func uniformFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

  /// Uniform in [0, 1) with 53 random bits.
  @inlinable public mutating func uniform() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

  /// Standard normal (Box–Muller).
  public mutating func normal() -> Double {
    let u1 = 1.0 - uniform()
    let u2 = uniform()
    return (-2.0 * _log(u1)).squareRoot() * _cos(2.0 * Double.pi * u2)
  }

  /// A uniformly random permutation of `0..<n` (Fisher–Yates).
  public mutating func permutation(_ n: Int) -> [Int] {
    var p = Array(0..<n)
    if n < 2 { return p }
    for i in stride(from: n - 1, to: 0, by: -1) {
      let j = Int(next() % UInt64(i + 1))
      p.swapAt(i, j)
    }
    return p
  }
}

@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }

/// 64-bit FNV-1a over 32-bit words: a quick fingerprint of values (not a defence against a forger).
public struct FNV1a: Sendable {
  public var value: UInt64 = 0xcbf2_9ce4_8422_2325
  public init() {}
  public mutating func add(_ word: UInt32) { value = (value ^ UInt64(word)) &* 0x100_0000_01b3 }
  public var hex: String {
    let s = String(value, radix: 16)
    return String(repeating: "0", count: 16 - s.count) + s
  }
}
