#if canImport(Glibc)
  import Glibc
#endif

/// Where the rows of a batch sit in a buffer: sample `b`, position `t` is row `offset + b*stride + t`; the
/// buffer has `batch*stride + extra` rows. Rows that are not a sample's positions are padding.
struct Layout: Equatable {
  var stride: Int
  var offset: Int
  var extra: Int

  static func compact(length: Int) -> Layout { Layout(stride: length, offset: 0, extra: 0) }

  func rows(batch: Int) -> Int { batch * stride + extra }
}

/// A batch of sequences, float32 NLC, inside a larger buffer (see `Layout`).
struct Tensor {
  var base: UnsafeMutablePointer<Float>
  var batch: Int
  var length: Int
  var channels: Int
  var layout: Layout

  /// The first channel of position `t` of sample `b`.
  @inline(__always)
  func row(_ b: Int, _ t: Int) -> UnsafeMutablePointer<Float> {
    base + (layout.offset &+ b &* layout.stride &+ t) &* channels
  }

  var rowCount: Int { layout.rows(batch: batch) }

  /// Writes zeros to every row that is not a sample position (the padding that convolutions read).
  func zeroPadding() {
    let rows = rowCount
    var start = 0
    for b in 0...batch {
      let end = b < batch ? layout.offset + b * layout.stride : rows
      if end > start { memset(base + start * channels, 0, (end - start) * channels * 4) }
      start = end + length
    }
  }

  /// Copies the sample positions of `self` into `other` (same shape, any layout).
  func copy(to other: Tensor) {
    let n = length * channels
    if layout.stride == length && other.layout.stride == length {
      (other.row(0, 0)).update(from: row(0, 0), count: batch * n)
      return
    }
    for b in 0..<batch { other.row(b, 0).update(from: row(b, 0), count: n) }
  }
}
