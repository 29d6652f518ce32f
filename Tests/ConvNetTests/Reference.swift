import Base
import ConvNet

/// Naive reference kernels in double precision, one per layer, written for clarity: the oracle that the fast
/// kernels and finite differences are checked against. Tensors are compact NLC `[batch][length][channels]`.
enum Reference {
  /// `y[b,t,o] = act(bias[o] + Σ_j Σ_i x[b, t+j-padLeft, i] · w[j,i,o])`, zero outside `0..<length`.
  static func conv1DForward(
    _ x: [Double], batch: Int, length: Int, inputs: Int, kernel w: [Double], width k: Int, outputs: Int,
    bias: [Double], relu: Bool
  ) -> [Double] {
    let padLeft = (k - 1) / 2
    var y = [Double](repeating: 0, count: batch * length * outputs)
    for b in 0..<batch {
      for t in 0..<length {
        for o in 0..<outputs {
          var s = bias[o]
          for j in 0..<k {
            let u = t + j - padLeft
            if u < 0 || u >= length { continue }
            for i in 0..<inputs { s += x[(b * length + u) * inputs + i] * w[(j * inputs + i) * outputs + o] }
          }
          y[(b * length + t) * outputs + o] = relu ? max(s, 0) : s
        }
      }
    }
    return y
  }

  /// Gradients of `conv1DForward` given the output `y` and its gradient `dy`.
  /// `roundKernelGradient`, `roundInputGradient`: the operands of those passes' multiplies (`x` and the masked `dy`,
  /// `w` and the masked `dy`) rounded as given (bfloat16 passes); the bias gradient sums the masked `dy` as it is.
  static func conv1DBackward(
    _ x: [Double], y: [Double], dy: [Double], batch: Int, length: Int, inputs: Int, kernel w: [Double],
    width k: Int, outputs: Int, relu: Bool, roundKernelGradient: (Double) -> Double = { $0 },
    roundInputGradient: (Double) -> Double = { $0 }
  ) -> (dx: [Double], dKernel: [Double], dBias: [Double]) {
    let (xk, wi) = (x.map(roundKernelGradient), w.map(roundInputGradient))
    let padLeft = (k - 1) / 2
    var dx = [Double](repeating: 0, count: x.count)
    var dw = [Double](repeating: 0, count: w.count)
    var db = [Double](repeating: 0, count: outputs)
    for b in 0..<batch {
      for t in 0..<length {
        for o in 0..<outputs {
          let n = (b * length + t) * outputs + o
          let g = relu && y[n] <= 0 ? 0 : dy[n]
          let (gk, gi) = (roundKernelGradient(g), roundInputGradient(g))
          db[o] += g
          for j in 0..<k {
            let u = t + j - padLeft
            if u < 0 || u >= length { continue }
            for i in 0..<inputs {
              dw[(j * inputs + i) * outputs + o] += xk[(b * length + u) * inputs + i] * gk
              dx[(b * length + u) * inputs + i] += wi[(j * inputs + i) * outputs + o] * gi
            }
          }
        }
      }
    }
    return (dx, dw, db)
  }

  /// BatchNormalization over `rows` rows of `channels`. Training uses the batch mean and biased variance;
  /// otherwise `mean`/`variance` are the moving statistics. Returns the output and the statistics used.
  static func batchNormForward(
    _ x: [Double], rows: Int, channels: Int, gamma: [Double], beta: [Double], epsilon: Double, training: Bool,
    movingMean: [Double], movingVariance: [Double]
  ) -> (y: [Double], mean: [Double], variance: [Double]) {
    var mean = movingMean
    var variance = movingVariance
    if training {
      for c in 0..<channels {
        var s = 0.0
        for r in 0..<rows { s += x[r * channels + c] }
        mean[c] = s / Double(rows)
        var v = 0.0
        for r in 0..<rows { v += (x[r * channels + c] - mean[c]) * (x[r * channels + c] - mean[c]) }
        variance[c] = v / Double(rows)
      }
    }
    var y = x
    for r in 0..<rows {
      for c in 0..<channels {
        y[r * channels + c] =
          (x[r * channels + c] - mean[c]) / (variance[c] + epsilon).squareRoot() * gamma[c] + beta[c]
      }
    }
    return (y, mean, variance)
  }

  /// Gradients of training-mode `batchNormForward`.
  static func batchNormBackward(
    _ x: [Double], dy: [Double], rows: Int, channels: Int, gamma: [Double], mean: [Double], variance: [Double],
    epsilon: Double
  ) -> (dx: [Double], dGamma: [Double], dBeta: [Double]) {
    var dx = x
    var dGamma = [Double](repeating: 0, count: channels)
    var dBeta = [Double](repeating: 0, count: channels)
    let n = Double(rows)
    for c in 0..<channels {
      let inv = 1 / (variance[c] + epsilon).squareRoot()
      var s1 = 0.0
      var s2 = 0.0
      for r in 0..<rows {
        let xhat = (x[r * channels + c] - mean[c]) * inv
        s1 += dy[r * channels + c]
        s2 += dy[r * channels + c] * xhat
      }
      dBeta[c] = s1
      dGamma[c] = s2
      for r in 0..<rows {
        let xhat = (x[r * channels + c] - mean[c]) * inv
        dx[r * channels + c] = gamma[c] * inv * (dy[r * channels + c] - s1 / n - xhat * s2 / n)
      }
    }
    return (dx, dGamma, dBeta)
  }

  /// The window `[start, start+pool)` of output `t` under TensorFlow's `same` padding.
  static func poolWindow(_ t: Int, length: Int, pool: Int, stride: Int) -> Range<Int> {
    let outLength = (length + stride - 1) / stride
    let padLeft = max((outLength - 1) * stride + pool - length, 0) / 2
    let start = t * stride - padLeft
    return max(start, 0)..<min(start + pool, length)
  }

  /// MaxPooling1D (`same`): the maximum of each window, and the position of its first maximum.
  static func maxPoolForward(
    _ x: [Double], batch: Int, length: Int, channels: Int, pool: Int, stride: Int
  ) -> (y: [Double], argmax: [Int]) {
    let outLength = (length + stride - 1) / stride
    var y = [Double](repeating: 0, count: batch * outLength * channels)
    var arg = [Int](repeating: 0, count: y.count)
    for b in 0..<batch {
      for t in 0..<outLength {
        for c in 0..<channels {
          var best = -Double.infinity
          var at = -1
          for u in poolWindow(t, length: length, pool: pool, stride: stride)
          where x[(b * length + u) * channels + c] > best {
            best = x[(b * length + u) * channels + c]
            at = u
          }
          y[(b * outLength + t) * channels + c] = best
          arg[(b * outLength + t) * channels + c] = (b * length + at) * channels + c
        }
      }
    }
    return (y, arg)
  }

  /// Routes each output gradient to its window's first maximum.
  static func maxPoolBackward(_ dy: [Double], argmax: [Int], inputCount: Int) -> [Double] {
    var dx = [Double](repeating: 0, count: inputCount)
    for (i, a) in argmax.enumerated() { dx[a] += dy[i] }
    return dx
  }

  /// `y = x·W + b` with `W [inputs, outputs]`, optional ReLU.
  static func denseForward(
    _ x: [Double], batch: Int, inputs: Int, kernel w: [Double], outputs: Int, bias: [Double], relu: Bool
  ) -> [Double] {
    var y = [Double](repeating: 0, count: batch * outputs)
    for b in 0..<batch {
      for o in 0..<outputs {
        var s = bias[o]
        for i in 0..<inputs { s += x[b * inputs + i] * w[i * outputs + o] }
        y[b * outputs + o] = relu ? max(s, 0) : s
      }
    }
    return y
  }

  static func denseBackward(
    _ x: [Double], y: [Double], dy: [Double], batch: Int, inputs: Int, kernel w: [Double], outputs: Int,
    relu: Bool
  ) -> (dx: [Double], dKernel: [Double], dBias: [Double]) {
    var dx = [Double](repeating: 0, count: x.count)
    var dw = [Double](repeating: 0, count: w.count)
    var db = [Double](repeating: 0, count: outputs)
    for b in 0..<batch {
      for o in 0..<outputs {
        let g = relu && y[b * outputs + o] <= 0 ? 0 : dy[b * outputs + o]
        db[o] += g
        for i in 0..<inputs {
          dw[i * outputs + o] += x[b * inputs + i] * g
          dx[b * inputs + i] += w[i * outputs + o] * g
        }
      }
    }
    return (dx, dw, db)
  }

  /// Softmax probabilities, the mean categorical cross-entropy and its gradient with respect to the logits.
  static func softmaxCrossEntropy(
    _ logits: [Double], labels: [Int], classes: Int
  ) -> (probs: [Double], loss: Double, dLogits: [Double]) {
    let batch = labels.count
    var probs = logits
    var loss = 0.0
    for b in 0..<batch {
      let row = logits[(b * classes)..<((b + 1) * classes)]
      let m = row.max()!
      let s = row.reduce(0) { $0 + _exp($1 - m) }
      for k in 0..<classes { probs[b * classes + k] = _exp(logits[b * classes + k] - m) / s }
      loss += m + _log(s) - logits[b * classes + labels[b]]
    }
    var d = probs
    for b in 0..<batch { d[b * classes + labels[b]] -= 1 }
    return (probs, loss / Double(batch), d.map { $0 / Double(batch) })
  }
}

@inline(__always) func _exp(_ x: Double) -> Double { Glibc.exp(x) }

#if canImport(Glibc)
  import Glibc
#endif

extension Reference {
  /// A whole network in double precision with the naive kernels: the probabilities and mean loss of `x`
  /// (compact `[batch, inputWidth]`), and, in training mode, every trainable variable's gradient by Keras name.
  /// `variables` holds every variable (trainable and moving statistics) by Keras name.
  /// `rounding(plan, outputs)`: how the operands of a convolution pass of `plan` with `outputs` output channels (the
  /// layer's for the output and the kernel gradient, its input's for the input gradient) are rounded; none by default.
  static func network(
    _ plans: [LayerPlan], variables: [String: [Double]], x: [Double], batch: Int, labels: [Int], training: Bool,
    dropoutSeed: UInt64 = 0, dropoutKeys: [UInt64]? = nil,
    rounding: (_ plan: LayerPlan, _ outputs: Int) -> (Double) -> Double = { _, _ in { $0 } }
  ) -> (probs: [Double], loss: Double, gradients: [String: [Double]]) {
    var acts = [x]
    var caches: [Any] = []
    var logits: [Double] = []
    for (index, p) in plans.enumerated() {
      let input = acts.last!
      let v = { (name: String) in variables["\(p.name)/\(name)"]! }
      switch p.spec.type {
      case .conv1D:
        let r = rounding(p, p.outputChannels)
        acts.append(
          conv1DForward(
            input.map(r), batch: batch, length: p.inputLength, inputs: p.inputChannels, kernel: v("kernel").map(r),
            width: p.spec.kernelSize!, outputs: p.outputChannels, bias: v("bias"), relu: p.spec.activation == .relu))
        caches.append(0)
      case .batchNormalization:
        let r = batchNormForward(
          input, rows: batch * p.inputLength, channels: p.inputChannels, gamma: v("gamma"), beta: v("beta"),
          epsilon: p.spec.epsilon ?? 1e-3, training: training, movingMean: v("moving_mean"),
          movingVariance: v("moving_variance"))
        acts.append(r.y)
        caches.append((r.mean, r.variance))
      case .maxPooling1D:
        let r = maxPoolForward(
          input, batch: batch, length: p.inputLength, channels: p.inputChannels, pool: p.spec.poolSize!,
          stride: p.spec.strides!)
        acts.append(r.y)
        caches.append(r.argmax)
      case .dropout:
        var mask = [Double](repeating: 1, count: input.count)
        if training {
          let rate = Float(p.spec.rate!)
          let keep = 1 / (1 - rate)
          let n = mask.count / batch
          for b in 0..<batch {
            var rng = RandomStream(seed: dropoutSeed, stream: [UInt64(index), dropoutKeys?[b] ?? UInt64(b)])
            for i in (b * n)..<((b + 1) * n) { mask[i] = Double(rng.uniformFloat() >= rate ? keep : 0) }
          }
        }
        acts.append(zip(input, mask).map { $0 * $1 })
        caches.append(mask)
      case .flatten, .reshape:
        acts.append(input)
        caches.append(0)
      case .globalAveragePooling1D, .globalMaxPooling1D:
        let (length, c) = (p.inputLength, p.inputChannels)
        var y = [Double](repeating: p.spec.type == .globalMaxPooling1D ? -.infinity : 0, count: batch * c)
        for b in 0..<batch {
          for t in 0..<length {
            for i in 0..<c {
              let v = input[(b * length + t) * c + i]
              y[b * c + i] =
                p.spec.type == .globalMaxPooling1D ? max(y[b * c + i], v) : y[b * c + i] + v / Double(length)
            }
          }
        }
        acts.append(y)
        caches.append(0)
      case .dense:
        let softmax = p.spec.activation == .softmax
        let y = denseForward(
          input, batch: batch, inputs: p.inputChannels, kernel: v("kernel"), outputs: p.outputChannels,
          bias: v("bias"), relu: p.spec.activation == .relu)
        if softmax { logits = y }
        acts.append(y)
        caches.append(0)
      }
    }
    let classes = plans.last!.outputChannels
    let (probs, loss, dLogits) = softmaxCrossEntropy(logits, labels: labels, classes: classes)
    guard training else { return (probs, loss, [:]) }
    var grads: [String: [Double]] = [:]
    var d = dLogits
    for (i, p) in plans.enumerated().reversed() {
      let v = { (name: String) in variables["\(p.name)/\(name)"]! }
      let (x, y) = (acts[i], acts[i + 1])
      switch p.spec.type {
      case .conv1D:
        let r = conv1DBackward(
          x, y: y, dy: d, batch: batch, length: p.inputLength, inputs: p.inputChannels, kernel: v("kernel"),
          width: p.spec.kernelSize!, outputs: p.outputChannels, relu: p.spec.activation == .relu,
          roundKernelGradient: rounding(p, p.outputChannels), roundInputGradient: rounding(p, p.inputChannels))
        (grads["\(p.name)/kernel"], grads["\(p.name)/bias"], d) = (r.dKernel, r.dBias, r.dx)
      case .batchNormalization:
        let (mean, variance) = caches[i] as! ([Double], [Double])
        let r = batchNormBackward(
          x, dy: d, rows: batch * p.inputLength, channels: p.inputChannels, gamma: v("gamma"), mean: mean,
          variance: variance, epsilon: p.spec.epsilon ?? 1e-3)
        (grads["\(p.name)/gamma"], grads["\(p.name)/beta"], d) = (r.dGamma, r.dBeta, r.dx)
      case .maxPooling1D:
        d = maxPoolBackward(d, argmax: caches[i] as! [Int], inputCount: x.count)
      case .dropout:
        d = zip(d, caches[i] as! [Double]).map { $0 * $1 }
      case .flatten, .reshape:
        break
      case .globalAveragePooling1D, .globalMaxPooling1D:
        // The mean's gradient is shared by every position; the maximum's by the positions that hold it, equally.
        let (length, c) = (p.inputLength, p.inputChannels)
        var dx = [Double](repeating: 0, count: x.count)
        for b in 0..<batch {
          for i in 0..<c {
            let at = (0..<length).map { (b * length + $0) * c + i }
            let holders = p.spec.type == .globalMaxPooling1D ? at.filter { x[$0] == y[b * c + i] } : at
            for j in holders { dx[j] = d[b * c + i] / Double(holders.count) }
          }
        }
        d = dx
      case .dense:
        let r = denseBackward(
          x, y: y, dy: d, batch: batch, inputs: p.inputChannels, kernel: v("kernel"), outputs: p.outputChannels,
          relu: p.spec.activation == .relu)
        (grads["\(p.name)/kernel"], grads["\(p.name)/bias"], d) = (r.dKernel, r.dBias, r.dx)
      }
    }
    return (probs, loss, grads)
  }
}
