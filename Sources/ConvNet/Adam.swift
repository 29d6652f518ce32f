#if canImport(Glibc)
  import Glibc
#endif

/// Adam as Keras 3 computes it, in float32: with `t` the step count after this step,
/// `alpha = lr * sqrt(1 - beta2^t) / (1 - beta1^t)`, `m += (g - m)(1 - beta1)`, `v += (g² - v)(1 - beta2)`,
/// `w -= m*alpha / (sqrt(v) + epsilon)`. One loop over the flat parameter buffer.
public final class Adam {
  public var learningRate: Float
  public let beta1: Float, beta2: Float, epsilon: Float
  public let m: FloatBuffer, v: FloatBuffer
  /// Steps taken (Keras's `iterations`).
  public var iterations: Int = 0
  private let oneMinusBeta1: Float, oneMinusBeta2: Float

  public init(
    count: Int, learningRate: Float = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999, epsilon: Double = 1e-7
  ) {
    self.learningRate = learningRate
    self.beta1 = Float(beta1)
    self.beta2 = Float(beta2)
    self.epsilon = Float(epsilon)
    oneMinusBeta1 = Float(1 - beta1)
    oneMinusBeta2 = Float(1 - beta2)
    m = FloatBuffer(count: count)
    v = FloatBuffer(count: count)
  }

  /// One step on `parameters` with `gradients` (same layout; any floats past the parameters are ignored).
  public func update(_ parameters: FloatBuffer, _ gradients: FloatBuffer) {
    precondition(parameters.count == m.count && gradients.count >= m.count)
    iterations += 1
    let t = Float(iterations)
    let alpha = learningRate * (1 - powf(beta2, t)).squareRoot() / (1 - powf(beta1, t))
    let (w, g, m, v) = (parameters.pointer, gradients.pointer, self.m.pointer, self.v.pointer)
    let (a1, a2, eps) = (oneMinusBeta1, oneMinusBeta2, epsilon)
    for i in 0..<parameters.count {
      let gi = g[i]
      m[i] += (gi - m[i]) * a1
      v[i] += (gi * gi - v[i]) * a2
      w[i] -= (m[i] * alpha) / (v[i].squareRoot() + eps)
    }
  }
}
