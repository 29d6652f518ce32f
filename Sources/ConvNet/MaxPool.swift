#if canImport(Glibc)
  import Glibc
#endif

// MARK: - MaxPooling1D

/// MaxPooling1D with padding `same` by TensorFlow's rule: `L_out = ceil(L/s)`, total padding
/// `max((L_out-1)*s + p - L, 0)`, `total/2` of it on the left; padded cells never win. Forward keeps only the
/// maxima; backward routes each output gradient to the first input of its window equal to the maximum (the
/// input and output are kept for backward anyway), so no index tensor is stored. After a Conv1D and a BatchNorm
/// it runs inside their block instead (`ConvBlockLayer`), on the normalised values as they are computed.
final class MaxPoolLayer: Layer {
  let plan: LayerPlan
  let pool: PoolWindow
  var plans: [LayerPlan] { [plan] }

  init(plan: LayerPlan) {
    self.plan = plan
    pool = PoolWindow(plan)
  }

  @inline(__always) private func window(_ to: Int) -> (lo: Int, hi: Int) { pool.window(to) }

  /// x `[B, L, C]` -> y `[B, ceil(L/s), C]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let c = plan.inputChannels
    let c8 = c & ~7
    Parallel.forEach(x.batch) { _, samples in
      for b in samples {
        for to in 0..<plan.outputLength {
          let (lo, hi) = window(to)
          let out = y.row(b, to)
          for t in lo..<hi {
            let r = x.row(b, t)
            var i = 0
            while i < c8 {
              let v = load8(r + i)
              store8(t == lo ? v : load8(out + i).replacing(with: v, where: v .> load8(out + i)), out + i)
              i &+= 8
            }
            while i < c {
              out[i] = t == lo ? r[i] : max(out[i], r[i])
              i &+= 1
            }
          }
        }
      }
    }
  }

  /// Routes each window's output gradient to the first of its inputs equal to its output; positions no window
  /// reaches (strides longer than the pool) get zero. dy `[B, ceil(L/s), C]` -> dx `[B, L, C]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let c = plan.inputChannels
    let c8 = c & ~7
    let zero = F8(repeating: 0)
    Parallel.forEach(dx.batch) { _, samples in
      withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { rb in
        let rem = rb.baseAddress!
        for b in samples {
          memset(dx.row(b, 0), 0, plan.inputLength * c * 4)
          for to in 0..<plan.outputLength {
            let (lo, hi) = window(to)
            let out = y.row(b, to)
            rem.update(from: dy.row(b, to), count: c)
            for t in lo..<hi {
              let xr = x.row(b, t)
              let o = dx.row(b, t)
              var i = 0
              while i < c8 {
                let hit = load8(xr + i) .== load8(out + i)
                let r = load8(rem + i)
                store8(load8(o + i) + r.replacing(with: zero, where: .!hit), o + i)
                store8(r.replacing(with: zero, where: hit), rem + i)
                i &+= 8
              }
              while i < c {
                if xr[i] == out[i] {
                  o[i] += rem[i]
                  rem[i] = 0
                }
                i &+= 1
              }
            }
          }
        }
      }
    }
  }
}

/// A MaxPooling1D's windows, padding `same` by TensorFlow's rule: `L_out = ceil(L/s)`, total padding
/// `max((L_out-1)*s + p - L, 0)`, `total/2` of it on the left, windows clipped to the input.
struct PoolWindow {
  var size: Int, stride: Int, padLeft: Int, inputLength: Int, outputLength: Int

  init(_ plan: LayerPlan) {
    (size, stride, inputLength, outputLength) =
      (plan.spec.poolSize!, plan.spec.strides!, plan.inputLength, plan.outputLength)
    padLeft = max((outputLength - 1) * stride + size - inputLength, 0) / 2
  }

  /// Windows of one position: no pooling (a BatchNorm alone).
  init(identity length: Int) { (size, stride, padLeft, inputLength, outputLength) = (1, 1, 0, length, length) }

  @inline(__always) func window(_ p: Int) -> (lo: Int, hi: Int) {
    let start = p * stride - padLeft
    return (max(start, 0), min(start + size, inputLength))
  }
}
