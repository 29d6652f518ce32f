import Dispatch

/// Splits the element-wise kernels' batch loops over this process's cores (the GEMMs are OpenBLAS's own
/// threads). Parts are fixed ranges of samples, so sums combined part by part do not depend on scheduling.
public enum Parallel {
  /// Threads for element-wise work; set with the BLAS thread count.
  nonisolated(unsafe) public static var threads = 1

  /// Runs `body(part, samples)` over `parts(batch)` contiguous ranges of `0..<batch`, concurrently.
  static func forEach(_ batch: Int, _ body: (Int, Range<Int>) -> Void) {
    let n = parts(batch)
    if n <= 1 {
      body(0, 0..<batch)
      return
    }
    DispatchQueue.concurrentPerform(iterations: n) { p in body(p, (p * batch / n)..<((p + 1) * batch / n)) }
  }

  static func parts(_ batch: Int) -> Int { max(1, min(threads, batch)) }
}

/// Zeroed scratch of `parts × count` values, one slice per part, freed at the end of `body`.
@inline(__always)
func withPartScratch<T: Numeric, R>(
  _ parts: Int, _ count: Int, _ type: T.Type, _ body: (UnsafeMutablePointer<T>) -> R
) -> R {
  let p = UnsafeMutablePointer<T>.allocate(capacity: max(1, parts * count))
  p.initialize(repeating: 0, count: max(1, parts * count))
  defer { p.deallocate() }
  return body(p)
}
