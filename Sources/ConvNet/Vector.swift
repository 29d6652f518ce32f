/// Eight-wide float helpers for the element-wise kernels: explicit SIMD, so vectorisation does not depend on
/// the compiler proving that raw pointers do not alias.
typealias F8 = SIMD8<Float>

@inline(__always) func load8(_ p: UnsafePointer<Float>) -> F8 {
  UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func load8(_ p: UnsafeMutablePointer<Float>) -> F8 {
  UnsafeRawPointer(p).loadUnaligned(as: F8.self)
}

@inline(__always) func store8(_ v: F8, _ p: UnsafeMutablePointer<Float>) {
  UnsafeMutableRawPointer(p).storeBytes(of: v, as: F8.self)
}

/// Per-channel float partial sums (one sample's rows) added into double totals: pairwise-enough accuracy at
/// vector speed.
@inline(__always) func addPartial(
  _ partial: UnsafeMutablePointer<Float>, into total: UnsafeMutablePointer<Double>, _ n: Int
) {
  for i in 0..<n {
    total[i] += Double(partial[i])
    partial[i] = 0
  }
}

/// The position of the largest value among those `allowed` (the first on ties, as Keras's and numpy's argmax); -1
/// when none is allowed. Comparisons with NaN are false: a NaN wins only in first place.
public func argmax<C: RandomAccessCollection>(_ values: C, allowed: (Int) -> Bool = { _ in true }) -> Int
where C.Element: BinaryFloatingPoint {
  var (best, bestValue) = (-1, -C.Element.infinity)
  for (i, v) in values.enumerated() where allowed(i) && (best < 0 || v > bestValue) { (best, bestValue) = (i, v) }
  return best
}
