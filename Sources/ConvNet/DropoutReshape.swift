import Base

#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Dropout

/// Inverted dropout: in training each value is kept with probability `1-rate` and scaled by `1/(1-rate)`, with
/// each sample's mask drawn from the step's dropout seed, the layer and the sample's key; identity in inference.
final class DropoutLayer: Layer {
  let plan: LayerPlan
  let rate: Float
  let index: UInt64
  private var mask: [Float] = []

  init(plan: LayerPlan, index: Int) {
    self.plan = plan
    rate = Float(plan.spec.rate!)
    self.index = UInt64(index)
  }

  var plans: [LayerPlan] { [plan] }

  func reserve(batch: Int) -> Int {
    let n = batch * plan.inputLength * plan.inputChannels
    if mask.count < n { mask = [Float](repeating: 0, count: n) }
    return 0
  }

  /// x `[B, L, C]` -> y `[B, L, C]`: in training each value zeroed with probability `rate`, the rest scaled by
  /// `1/(1-rate)`; in inference a copy.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let n = plan.inputLength * plan.inputChannels
    guard ctx.training && rate > 0 else {
      x.copy(to: y)
      return
    }
    let keep = 1 / (1 - rate)
    mask.withUnsafeMutableBufferPointer { m in
      for b in 0..<x.batch {
        var rng = RandomStream(seed: ctx.dropoutSeed, stream: [index, ctx.dropoutKeys?[b] ?? UInt64(b)])
        let src = x.row(b, 0)
        let dst = y.row(b, 0)
        let mk = m.baseAddress! + b * n
        for i in 0..<n {
          mk[i] = rng.uniformFloat() >= rate ? keep : 0
          dst[i] = src[i] * mk[i]
        }
      }
    }
  }

  /// dy `[B, L, C]` -> dx `[B, L, C]` through the same mask.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let n = plan.inputLength * plan.inputChannels
    guard ctx.training && rate > 0 else {
      dy.copy(to: dx)
      return
    }
    mask.withUnsafeBufferPointer { m in
      for b in 0..<dy.batch {
        let g = dy.row(b, 0)
        let o = dx.row(b, 0)
        let mk = m.baseAddress! + b * n
        for i in 0..<n { o[i] = g[i] * mk[i] }
      }
    }
  }
}

// MARK: - Flatten and Reshape

/// Flatten `[B, L, C] → [B, L*C]` (index `t*C + c`, Keras channels-last) and Reshape `[B, L, C] → [B, L', C']`
/// (`L*C = L'*C'`, the same values in the same order, as Keras reshapes channels-last tensors): a sample's values
/// are contiguous in both, so either is a copy of each sample.
final class ReshapeLayer: Layer {
  let plan: LayerPlan
  var plans: [LayerPlan] { [plan] }
  init(plan: LayerPlan) { self.plan = plan }

  /// x `[B, L, C]` -> y `[B, L', C']`, the sample's values in order.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let n = plan.inputLength * plan.inputChannels
    for b in 0..<x.batch { y.row(b, 0).update(from: x.row(b, 0), count: n) }
  }

  /// dy `[B, L', C']` -> dx `[B, L, C]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    guard let dx else { return }
    let n = plan.inputLength * plan.inputChannels
    for b in 0..<dy.batch { dx.row(b, 0).update(from: dy.row(b, 0), count: n) }
  }
}
