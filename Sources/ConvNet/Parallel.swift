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

/// Per-channel sums over every position of a batch, split across the cores: `row(part, b, t, acc)` handles
/// position `t` of sample `b` (positions come in order within each part) and adds its `width` values into `acc`.
/// Sums are float over blocks of 16 positions and double across blocks (ill-conditioned channels need the
/// precision); parts are combined in order (`partSums`), so the result does not depend on scheduling. Writes the
/// `width` sums to `out`.
func sweepSums(
  batch: Int, length: Int, width: Int, into out: UnsafeMutablePointer<Double>,
  _ row: (_ part: Int, _ b: Int, _ t: Int, _ acc: UnsafeMutablePointer<Float>) -> Void
) {
  withPartScratch(Parallel.parts(batch), width, Float.self) { partials in
    partSums(batch: batch, width: width, into: out) { part, samples, total in
      let acc = partials + part * width
      for b in samples {
        for t in 0..<length {
          row(part, b, t, acc)
          if t & 15 == 15 || t == length - 1 { addPartial(acc, into: total, width) }
        }
      }
    }
  }
}

/// Per-channel sums taken part by part: `body(part, samples, out)` writes (or adds to the zeros in) `out`, the
/// `width` sums of its part's samples; parts are combined in order, so the result does not depend on
/// scheduling. Writes the `width` sums to `out`.
func partSums(
  batch: Int, width: Int, into out: UnsafeMutablePointer<Double>,
  _ body: (_ part: Int, _ samples: Range<Int>, _ out: UnsafeMutablePointer<Double>) -> Void
) {
  let parts = Parallel.parts(batch)
  withPartScratch(parts, width, Double.self) { totals in
    Parallel.forEach(batch) { part, samples in body(part, samples, totals + part * width) }
    for i in 0..<width {
      var sum = 0.0
      for part in 0..<parts { sum += totals[part * width + i] }
      out[i] = sum
    }
  }
}
