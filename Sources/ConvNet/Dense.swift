#if canImport(Glibc)
  import Glibc
#endif

// MARK: - Dense

/// Dense: `y = act(x·W + b)` with `W [in, out]` as in Keras. With softmax, `y` holds the probabilities and
/// backward expects `dy` to be the gradient of the logits already (the loss computes `p - onehot`).
final class DenseLayer: Layer {
  let plan: LayerPlan
  let inputs: Int, units: Int
  let activation: Activation
  let weight: UnsafeMutablePointer<Float>, bias: UnsafeMutablePointer<Float>
  let dWeight: UnsafeMutablePointer<Float>, dBias: UnsafeMutablePointer<Float>
  private var scratch: [Float] = []
  /// The last forward's logits (softmax only), `[batch, units]`.
  private(set) var logits: [Float] = []

  var plans: [LayerPlan] { [plan] }

  init(plan: LayerPlan, variables: KernelAndBias) {
    self.plan = plan
    inputs = plan.inputChannels
    units = plan.outputChannels
    activation = plan.spec.activation ?? .linear
    (weight, dWeight) = (variables.kernel.value, variables.kernel.gradient)
    (bias, dBias) = (variables.bias.value, variables.bias.gradient)
  }

  func reserve(batch: Int) -> Int {
    if scratch.count < batch * units { scratch = [Float](repeating: 0, count: batch * units) }
    if activation == .softmax && logits.count < batch * units {
      logits = [Float](repeating: 0, count: batch * units)
    }
    return 0
  }

  /// x `[B, in]` -> y `[B, units]`.
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext) {
    let batch = x.batch
    let n = units
    precondition(y.layout.stride == 1 && y.layout.offset == 0, "\(plan.name): output layout")
    sgemm(batch, n, inputs, x.row(0, 0), x.layout.stride * inputs, weight, n, beta: 0, y.base, n)
    for b in 0..<batch {
      let r = y.base + b * n
      for i in 0..<n { r[i] += bias[i] }
      switch activation {
      case .linear: break
      case .relu: for i in 0..<n { r[i] = max(r[i], 0) }
      case .softmax:
        logits.withUnsafeMutableBufferPointer { l in
          (l.baseAddress! + b * n).update(from: r, count: n)
        }
        var m = -Float.infinity
        for i in 0..<n { m = max(m, r[i]) }
        var sum: Float = 0
        for i in 0..<n {
          r[i] = expf(r[i] - m)
          sum += r[i]
        }
        for i in 0..<n { r[i] /= sum }
      }
    }
  }

  /// dy `[B, units]` -> dW `[in, units]`, db `[units]`, dx `[B, in]`.
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext) {
    let batch = x.batch
    let n = units
    scratch.withUnsafeMutableBufferPointer { s in
      let g = s.baseAddress!
      for b in 0..<batch {
        let src = dy.row(b, 0)
        let out = y.row(b, 0)
        let dst = g + b * n
        for i in 0..<n { dst[i] = activation == .relu && !(out[i] > 0) ? 0 : src[i] }
      }
      for i in 0..<n { dBias[i] = 0 }
      for b in 0..<batch {
        for i in 0..<n { dBias[i] += g[b * n + i] }
      }
      let lda = x.layout.stride * inputs
      sgemm(transA: true, inputs, n, batch, x.row(0, 0), lda, g, n, beta: 0, dWeight, n)
      if let dx {
        precondition(dx.layout.stride == 1, "\(plan.name): input gradient layout")
        sgemm(transB: true, batch, inputs, n, g, n, weight, n, beta: 0, dx.row(0, 0), inputs)
      }
    }
  }
}
