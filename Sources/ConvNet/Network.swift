import Base
import CConvKernels

#if canImport(Glibc)
  import Glibc
#endif

/// A compiled model: its layers, one flat buffer of parameters, one of gradients with the same layout, one of
/// BatchNorm moving statistics, and the activation buffers for a batch size.
public final class Network {
  public let spec: ModelSpec
  public let classes: Int
  /// How the kernels compute (`KernelPolicy`: the precision, Winograd, the fused stem, the direct convolution's
  /// instruction sets), fixed when the network is built.
  public let policy: KernelPolicy
  public var precision: Precision { policy.precision }
  public let plans: [LayerPlan]
  /// Trainable variables, in layer order (Keras's `trainable_weights` order).
  public let parameterLayout: ParameterLayout
  /// Non-trainable variables (BatchNorm moving mean and variance), in layer order.
  public let stateLayout: ParameterLayout
  public let parameters: FloatBuffer
  /// Gradients in the parameters' layout, then `reductionTail` floats of the caller's that ride in the same
  /// allreduce (a training step's sums: `StepSums` in Training).
  public let gradients: FloatBuffer
  public let reductionTail: Int
  public let state: FloatBuffer
  /// Sums per-channel BatchNorm statistics across ranks in place (synchronised BatchNorm). Nil: local batch.
  public var statisticsReducer: ((UnsafeMutableBufferPointer<Double>) -> Void)?
  /// When set, seconds spent in each layer's forward and backward accumulate here (`conv2 forward`, ...).
  public var profile: [String: Double]?

  let layers: [any Layer]
  private var capacity = 0
  private var forwardLayouts: [Layout] = []
  private var gradientLayouts: [Layout] = []
  private var activations: [FloatBuffer] = []
  private var gradientBuffers: [FloatBuffer] = []
  private var scratch = FloatBuffer(count: 0)
  private var lastBatch = 0
  private var lastTraining = false

  public var inputLength: Int { spec.inputLength }
  public var inputChannels: Int { spec.inputChannels }
  public var inputWidth: Int { spec.inputLength * spec.inputChannels }
  public var trainableCount: Int { parameterLayout.count }
  public var nonTrainableCount: Int { stateLayout.count }

  /// Builds the network with glorot-uniform kernels drawn from `seed`, zero biases, BatchNorm gamma 1, beta 0,
  /// moving mean 0 and moving variance 1. `bf16` is refused where the CPU has no bfloat16 units.
  public init(
    spec: ModelSpec, classes: Int, seed: UInt64 = 0, policy: KernelPolicy = KernelPolicy(), reductionTail: Int = 0
  ) throws {
    try policy.precision.check()
    self.spec = spec
    self.classes = classes
    self.policy = policy
    plans = try spec.plan(classes: classes)
    let (layout, stateLayout) = Network.layouts(plans)
    parameterLayout = layout
    self.stateLayout = stateLayout
    parameters = FloatBuffer(count: layout.count)
    self.reductionTail = reductionTail
    gradients = FloatBuffer(count: layout.count + reductionTail)
    state = FloatBuffer(count: stateLayout.count)
    layers = Network.makeLayers(
      plans, parameters: layout, state: stateLayout, parameters, gradients, state, policy: policy)
    initialize(seed: seed)
    planLayouts()
  }

  /// Where each variable of these layers sits: the trainable ones in the parameters, the moving statistics in the
  /// state, layer by layer in Keras's order.
  public static func layouts(_ plans: [LayerPlan]) -> (parameters: ParameterLayout, state: ParameterLayout) {
    var (layout, stateLayout) = (ParameterLayout(), ParameterLayout())
    for plan in plans {
      for (v, shape) in plan.trainable { layout.append("\(plan.name)/\(v)", shape: shape) }
      for (v, shape) in plan.nonTrainable { stateLayout.append("\(plan.name)/\(v)", shape: shape) }
    }
    return (layout, stateLayout)
  }

  /// The layers that run: one per model layer, but for each `Conv1D -> BatchNormalization -> MaxPooling1D` chain
  /// (or `BatchNormalization -> MaxPooling1D`), which runs as one `ConvBlockLayer` (a stem when it comes first over
  /// one input channel and the policy `fusesStem`).
  private static func makeLayers(
    _ plans: [LayerPlan], parameters layout: ParameterLayout, state stateLayout: ParameterLayout,
    _ parameters: FloatBuffer, _ gradients: FloatBuffer, _ state: FloatBuffer, policy: KernelPolicy
  ) -> [any Layer] {
    func variable(_ plan: LayerPlan, _ name: String) -> Variable {
      let offset = layout["\(plan.name)/\(name)"]!.offset
      return Variable(value: parameters.pointer + offset, gradient: gradients.pointer + offset)
    }
    func kernelAndBias(_ plan: LayerPlan) -> KernelAndBias {
      KernelAndBias(kernel: variable(plan, "kernel"), bias: variable(plan, "bias"))
    }
    func layer(_ index: Int) -> any Layer {
      let plan = plans[index]
      switch plan.spec.type {
      case .conv1D: return Conv1DLayer(plan: plan, variables: kernelAndBias(plan), policy: policy)
      case .batchNormalization:
        func moving(_ name: String) -> UnsafeMutablePointer<Float> {
          state.pointer + stateLayout["\(plan.name)/\(name)"]!.offset
        }
        return BatchNormLayer(
          plan: plan,
          variables: NormVariables(
            gamma: variable(plan, "gamma"), beta: variable(plan, "beta"), movingMean: moving("moving_mean"),
            movingVariance: moving("moving_variance")))
      case .maxPooling1D: return MaxPoolLayer(plan: plan)
      case .dropout: return DropoutLayer(plan: plan, index: index)
      case .flatten, .reshape: return ReshapeLayer(plan: plan)
      case .globalAveragePooling1D, .globalMaxPooling1D: return GlobalPoolLayer(plan: plan)
      case .dense: return DenseLayer(plan: plan, variables: kernelAndBias(plan))
      }
    }
    func type(_ i: Int) -> LayerSpec.Kind? { i < plans.count ? plans[i].spec.type : nil }
    var layers: [any Layer] = []
    var i = 0
    while i < plans.count {
      let n = type(i) == .conv1D ? 1 : 0  // a Conv1D that starts a block
      guard type(i + n) == .batchNormalization, type(i + n + 1) == .maxPooling1D else {
        layers.append(layer(i))
        i += 1
        continue
      }
      let conv = n == 1 ? layer(i) as? Conv1DLayer : nil
      let stem = policy.fusesStem && i == 0 && conv.map { $0.cin == 1 && $0.k <= Int(SERTRAIN_STEM_MAX_KERNEL) } == true
      let (norm, pool) = (layer(i + n) as! BatchNormLayer, layer(i + n + 1) as! MaxPoolLayer)
      layers.append(ConvBlockLayer(conv: conv, norm: norm, pool: pool, stem: stem))
      i += n + 2
    }
    return layers
  }

  /// Glorot-uniform kernels (limit `sqrt(6/(fan_in+fan_out))`, fans include the kernel width), zero biases,
  /// gamma 1, beta 0, moving mean 0, moving variance 1.
  public func initialize(seed: UInt64) {
    var rng = RandomStream(seed: seed, stream: [0x1417])
    for view in parameterLayout.views {
      let p = parameters.pointer + view.offset
      switch view.variable {
      case "kernel":
        let receptive = view.shape.dropLast(2).reduce(1, *)
        let fanIn = Double(receptive * view.shape[view.shape.count - 2])
        let fanOut = Double(receptive * view.shape[view.shape.count - 1])
        let limit = (6 / (fanIn + fanOut)).squareRoot()
        for i in 0..<view.count { p[i] = Float((2 * rng.uniform() - 1) * limit) }
      case "gamma": for i in 0..<view.count { p[i] = 1 }
      default: for i in 0..<view.count { p[i] = 0 }
      }
    }
    for view in stateLayout.views {
      let value: Float = view.variable == "moving_variance" ? 1 : 0
      for i in 0..<view.count { state.pointer[view.offset + i] = value }
    }
  }

  // MARK: Buffers

  /// Chooses the layout of every activation `a_i` (the input of layer i) and of its gradient: padded where a
  /// convolution reads it, a convolution's own GEMM layout where one writes it, compact otherwise.
  private func planLayouts() {
    let n = layers.count
    forwardLayouts = (0...n).map { i in
      (i < n ? layers[i].inputLayout : nil) ?? (i > 0 ? layers[i - 1].outputLayout : nil)
        ?? .compact(length: shape(i).length)
    }
    gradientLayouts = (0...n).map { i in
      (i > 0 ? layers[i - 1].outputGradientLayout : nil) ?? (i < n ? layers[i].inputGradientLayout : nil)
        ?? .compact(length: shape(i).length)
    }
  }

  /// (length, channels) of activation `a_i`: the input of layer `i`, or the network's output.
  private func shape(_ i: Int) -> (length: Int, channels: Int) {
    let plan = i < layers.count ? layers[i].plans.first! : layers[i - 1].plans.last!
    return i < layers.count ? (plan.inputLength, plan.inputChannels) : (plan.outputLength, plan.outputChannels)
  }

  /// Allocates activations and gradients for batches up to `batch`.
  public func reserve(batch: Int) {
    guard batch > capacity else { return }
    capacity = batch
    activations = (0...layers.count).map {
      FloatBuffer(count: forwardLayouts[$0].rows(batch: batch) * shape($0).channels)
    }
    let largestGradient = (1...layers.count).map { gradientLayouts[$0].rows(batch: batch) * shape($0).channels }.max()!
    // Two, used in turn: a layer reads its output's gradient while it writes its input's.
    gradientBuffers = (0..<2).map { _ in FloatBuffer(count: largestGradient) }
    scratch = FloatBuffer(count: layers.map { $0.reserve(batch: batch) }.max() ?? 0)
  }

  /// Bytes held by parameters, gradients, state, the activation buffers and the layers' own.
  public var allocatedBytes: Int {
    4
      * (parameters.count + gradients.count + state.count + activations.reduce(0) { $0 + $1.count }
        + gradientBuffers.reduce(0) { $0 + $1.count } + scratch.count + layers.reduce(0) { $0 + $1.ownedFloats })
  }

  private func activation(_ i: Int, batch: Int) -> Tensor {
    let (length, channels) = shape(i)
    return Tensor(
      base: activations[i].pointer, batch: batch, length: length, channels: channels, layout: forwardLayouts[i])
  }

  private func gradient(_ i: Int, batch: Int) -> Tensor {
    let (length, channels) = shape(i)
    return Tensor(
      base: gradientBuffers[i % 2].pointer, batch: batch, length: length, channels: channels,
      layout: gradientLayouts[i])
  }

  // MARK: Passes

  /// Runs the network on `batch` rows of `inputWidth` floats (NLC, compact) and returns the class
  /// probabilities, `[batch, classes]`, valid until the next pass.
  /// - Parameters:
  ///   - training: BatchNorm uses (and updates its moving averages from) batch statistics; dropout is on.
  ///   - dropoutSeed: seeds this step's dropout masks.
  ///   - dropoutKeys: each row's key into them (a data-parallel trainer gives the rows' indices in the data, so that
  ///     a row's mask does not depend on the number of ranks); nil: the row's place in the batch.
  @discardableResult
  public func forward(
    _ input: UnsafePointer<Float>, batch: Int, training: Bool, dropoutSeed: UInt64 = 0, dropoutKeys: [UInt64]? = nil
  ) -> UnsafeBufferPointer<Float> {
    precondition(batch > 0, "empty batch")
    precondition(dropoutKeys.map { $0.count >= batch } ?? true, "a dropout key for each row")
    reserve(batch: batch)
    let x0 = activation(0, batch: batch)
    let width = inputWidth
    for b in 0..<batch { x0.row(b, 0).update(from: input + b * width, count: width) }
    let ctx = StepContext(
      training: training, dropoutSeed: dropoutSeed, dropoutKeys: dropoutKeys,
      reduce: training ? statisticsReducer : nil, scratch: scratch.pointer)
    for (i, layer) in layers.enumerated() {
      let t0 = profile == nil ? 0 : monotonicSeconds()
      layer.forward(activation(i, batch: batch), activation(i + 1, batch: batch), ctx)
      if profile != nil { profile![layer.name + " forward", default: 0] += monotonicSeconds() - t0 }
    }
    lastBatch = batch
    lastTraining = training
    return UnsafeBufferPointer(start: activations[layers.count].pointer, count: batch * classes)
  }

  /// Categorical cross-entropy of the last forward's probabilities against `labels`, summed over the batch
  /// (`logsumexp(z) - z_y` from the logits, as Keras computes it for a softmax output), and the number of rows
  /// whose most probable class is the label. With `classWeights`, each row's loss counts its class's weight (Keras's
  /// `class_weight`: the weighted sum, still divided by the rows); the count is not weighted.
  public func loss(labels: UnsafeBufferPointer<Int32>, classWeights: [Float]? = nil) -> (sum: Double, correct: Int) {
    let batch = lastBatch
    precondition(labels.count >= batch)
    let probs = activations[layers.count].pointer
    var total = 0.0
    var correct = 0
    // The pointer stays inside the closure (the logits array's storage is not pinned outside it).
    (layers.last as! DenseLayer).logits.withUnsafeBufferPointer { logits in
      for b in 0..<batch {
        let z = logits.baseAddress! + b * classes
        var m = -Float.infinity
        for i in 0..<classes { m = max(m, z[i]) }
        var s = 0.0
        for i in 0..<classes { s += Double(expf(z[i] - m)) }
        let y = Int(labels[b])
        total += (Double(m) + log(s) - Double(z[y])) * Double(classWeights?[y] ?? 1)
        if argmax(UnsafeBufferPointer(start: probs + b * classes, count: classes)) == y { correct += 1 }
      }
    }
    return (total, correct)
  }

  /// The gradient buffer in buckets for reductions that overlap backward: runs of whole layers, from the last layer
  /// down, each closed once it holds at least `bytes` (or at the first layer), with the step's tail in the first.
  /// `afterLayer` is the layer whose backward completes the bucket. Buckets cover the buffer, in layer order reversed.
  public func gradientBuckets(bytes: Int) -> [(afterLayer: Int, range: Range<Int>)] {
    let starts = layers.map { layer in
      layer.plans.flatMap { plan in plan.trainable.map { parameterLayout["\(plan.name)/\($0.0)"]!.offset } }.min()
    }
    var buckets: [(afterLayer: Int, range: Range<Int>)] = []
    var end = gradients.count
    for k in stride(from: layers.count - 1, through: 0, by: -1) {
      let start = k == 0 ? 0 : starts[k] ?? end
      if start < end && ((end - start) * MemoryLayout<Float>.size >= bytes || k == 0) {
        buckets.append((k, start..<end))
        end = start
      }
    }
    return buckets
  }

  /// Layers as backward runs them (a fused block is one).
  public var layerCount: Int { layers.count }

  /// Back-propagates the cross-entropy of the last training forward, writing every parameter gradient:
  /// `d logits = (p - onehot(label)) * scale` (times the label's class weight, with `classWeights`). With
  /// `scale = 1/B` the gradients are those of the batch mean;
  /// data-parallel ranks pass `1/global batch` so that summing the ranks' gradients gives the global mean.
  /// `afterLayer(k)` runs as soon as layer k's parameter gradients are complete (layers from the top down; a Conv1D's
  /// before it computes its input gradient).
  public func backward(
    labels: UnsafeBufferPointer<Int32>, scale: Float, classWeights: [Float]? = nil, afterLayer: ((Int) -> Void)? = nil
  ) {
    let batch = lastBatch
    precondition(lastTraining, "backward needs a training forward")
    let n = layers.count
    let top = gradient(n, batch: batch)
    let probs = activations[n].pointer
    for b in 0..<batch {
      let y = Int(labels[b])
      precondition(y >= 0 && y < classes, "label \(y) out of range 0..<\(classes)")
      let g = top.row(b, 0)
      let rowScale = scale * (classWeights?[y] ?? 1)
      for i in 0..<classes { g[i] = (probs[b * classes + i] - (i == y ? 1 : 0)) * rowScale }
    }
    var ctx = StepContext(
      training: true, reduce: statisticsReducer, scratch: scratch.pointer)
    // Layer `current` is in backward; `afterLayer` has run for the layers from `reported` up (once each).
    var (current, reported) = (n, n)
    ctx.parametersDone = {
      guard reported > current else { return }
      reported = current
      afterLayer?(current)
    }
    // Below the first layer with parameters no gradient is needed (a Reshape that leads the model).
    let lowest = layers.firstIndex { $0.plans.contains { !$0.trainable.isEmpty } } ?? 0
    for i in stride(from: n - 1, through: lowest, by: -1) {
      let t0 = profile == nil ? 0 : monotonicSeconds()
      current = i
      layers[i].backward(
        x: activation(i, batch: batch), y: activation(i + 1, batch: batch), dy: gradient(i + 1, batch: batch),
        dx: i > lowest ? gradient(i, batch: batch) : nil, ctx)
      if profile != nil { profile![layers[i].name + " backward", default: 0] += monotonicSeconds() - t0 }
      ctx.parametersDone()
    }
    // The layers below hold no parameters: the buckets that end with layer 0 are complete.
    current = 0
    ctx.parametersDone()
  }

  /// Joins the collective reductions of a training step with no rows of its own (a rank whose share of a
  /// short last batch is empty), so that the other ranks' synchronised BatchNorm does not wait forever.
  public func emptyTrainingStep() {
    guard let reduce = statisticsReducer else { return }
    let norms = layers.compactMap { ($0 as? BatchNormLayer) ?? ($0 as? ConvBlockLayer)?.norm }
    for layer in norms {
      for n in layer.reductionSizes.forward {
        var zeros = [Double](repeating: 0, count: n)
        zeros.withUnsafeMutableBufferPointer { reduce($0) }
      }
    }
    for layer in norms.reversed() {
      for n in layer.reductionSizes.backward {
        var zeros = [Double](repeating: 0, count: n)
        zeros.withUnsafeMutableBufferPointer { reduce($0) }
      }
    }
    gradients.zero()
  }

  // MARK: Access by name

  public func parameter(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
    guard let v = parameterLayout[name] else { return nil }
    return UnsafeMutableBufferPointer(start: parameters.pointer + v.offset, count: v.count)
  }

  public func gradient(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
    guard let v = parameterLayout[name] else { return nil }
    return UnsafeMutableBufferPointer(start: gradients.pointer + v.offset, count: v.count)
  }

  public func stateVariable(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
    guard let v = stateLayout[name] else { return nil }
    return UnsafeMutableBufferPointer(start: state.pointer + v.offset, count: v.count)
  }

  /// A variable by its Keras name, trainable or not.
  public func variable(_ name: String) -> UnsafeMutableBufferPointer<Float>? {
    parameter(name) ?? stateVariable(name)
  }

  /// Every variable in Keras's per-layer order (kernel, bias; gamma, beta, moving_mean, moving_variance).
  public var variablesInLayerOrder: [(layer: LayerPlan, name: String, shape: [Int])] {
    plans.flatMap { plan in
      (plan.trainable + plan.nonTrainable).map { (plan, "\(plan.name)/\($0.0)", $0.1) }
    }
  }
}
