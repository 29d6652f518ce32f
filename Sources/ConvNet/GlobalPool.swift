#if canImport(Glibc)
  import Glibc
#endif

/// GlobalAveragePooling1D and GlobalMaxPooling1D: `[B, L, C] -> [B, C]`, the mean or the maximum of each channel
/// over the sequence (Keras's `keepdims=False`; the output is flat, so a Dense may follow).
final class GlobalPoolLayer: Layer {
  let plan: LayerPlan
  let average: Bool
  var plans: [LayerPlan] { [plan] }

  init(plan: LayerPlan) {
    self.plan = plan
    average = plan.spec.type == .globalAveragePooling1D
  }

  /// x `[B, L, C]` -> y `[B, 1, C]`: `Σ_t x[b, t, c] / L` (summed in double) or `max_t x[b, t, c]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let (length, c, average) = (plan.inputLength, plan.inputChannels, average)
    Parallel.forEach(x.batch) { _, samples in
      withUnsafeTemporaryAllocation(of: Double.self, capacity: c) { sums in
        for b in samples {
          let out = y.row(b, 0)
          if average {
            for i in 0..<c { sums[i] = 0 }
            for t in 0..<length {
              let r = x.row(b, t)
              for i in 0..<c { sums[i] += Double(r[i]) }
            }
            for i in 0..<c { out[i] = Float(sums[i] / Double(length)) }
          } else {
            out.update(from: x.row(b, 0), count: c)
            for t in 1..<max(length, 1) {
              let r = x.row(b, t)
              for i in 0..<c where r[i] > out[i] { out[i] = r[i] }
            }
          }
        }
      }
    }
  }

  /// dy `[B, 1, C]` -> dx `[B, L, C]`: `dy / L` at every position, or, for the maximum, `dy` shared equally by the
  /// positions that hold it (as TensorFlow's and JAX's gradients of a maximum share it among ties).
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let (length, c, average) = (plan.inputLength, plan.inputChannels, average)
    Parallel.forEach(x.batch) { _, samples in
      withUnsafeTemporaryAllocation(of: Float.self, capacity: c) { share in
        for b in samples {
          let (g, top) = (dy.row(b, 0), y.row(b, 0))
          if average {
            let scale = 1 / Float(length)
            for i in 0..<c { share[i] = g[i] * scale }
            for t in 0..<length { dx.row(b, t).update(from: share.baseAddress!, count: c) }
            continue
          }
          for i in 0..<c { share[i] = 0 }
          for t in 0..<length {
            let r = x.row(b, t)
            for i in 0..<c where r[i] == top[i] { share[i] += 1 }
          }
          for i in 0..<c { share[i] = g[i] / share[i] }
          for t in 0..<length {
            let (r, d) = (x.row(b, t), dx.row(b, t))
            for i in 0..<c { d[i] = r[i] == top[i] ? share[i] : 0 }
          }
        }
      }
    }
  }
}
