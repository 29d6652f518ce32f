import Base

/// A spec layer with its name, its resolved settings and its input and output shapes.
public struct LayerPlan: Equatable, Sendable {
  public var spec: LayerSpec
  public var name: String
  /// (length, channels) in and out.
  public var inputLength: Int
  public var inputChannels: Int
  public var outputLength: Int
  public var outputChannels: Int
  /// Trainable variables (Keras's order and shapes) and non-trainable ones (BatchNorm's moving statistics).
  public var trainable: [(String, [Int])]
  public var nonTrainable: [(String, [Int])]

  public var parameterCount: Int {
    (trainable + nonTrainable).reduce(0) { $0 + $1.1.reduce(1, *) }
  }

  public static func == (a: LayerPlan, b: LayerPlan) -> Bool {
    a.spec == b.spec && a.name == b.name && a.inputLength == b.inputLength && a.inputChannels == b.inputChannels
      && a.outputLength == b.outputLength && a.outputChannels == b.outputChannels
      && a.trainable.map(\.0) == b.trainable.map(\.0) && a.trainable.map(\.1) == b.trainable.map(\.1)
  }
}

extension ModelSpec {
  /// The largest layer sertrain builds: 2^30 parameters (4 GiB of float32) and 2^26 outputs per sample (the
  /// seed's largest is 1.2 million); and the largest model: 2^28 parameters (training keeps five copies: 5 GiB) and
  /// 2^26 outputs per sample over all layers (256 MiB per sample, the seed's 4.6 million).
  public static let maxLayerParameters = 1 << 30
  public static let maxLayerOutputs = 1 << 26
  public static let maxModelParameters = 1 << 28
  public static let maxModelOutputs = 1 << 26

  /// Resolves names, the output layer's width and every shape, or throws a `Failure` naming the layer.
  /// - Parameter classes: the number of classes (the width of a final `Dense` that leaves `units` out).
  public func plan(classes: Int) throws -> [LayerPlan] {
    guard inputLength > 0, inputChannels > 0 else {
      throw Failure("the input shape must be positive, got \(inputLength)×\(inputChannels)")
    }
    guard Double(inputLength) * Double(inputChannels) <= Double(ModelSpec.maxLayerOutputs) else {
      throw Failure(
        "the input shape \(inputLength)×\(inputChannels) is larger than \(ModelSpec.maxLayerOutputs) values")
    }
    guard !layers.isEmpty else { throw Failure("the spec has no layers") }
    var plans: [LayerPlan] = []
    var (length, channels) = (inputLength, inputChannels)
    // Whether the tensor between layers is flat, `[B, features]`, as Keras has it after a Flatten, a global pooling,
    // a Dense or a Reshape to one dimension; a sequence, `[B, L, C]`, otherwise.
    var flat = false
    var (totalValues, totalOutputs) = (0.0, 0.0)
    var counters: [LayerSpec.Kind: Int] = [:]
    var names = Set<String>()
    for (index, original) in layers.enumerated() {
      var spec = original
      counters[spec.type, default: 0] += 1
      let number = counters[spec.type]!
      let defaultName: String
      switch spec.type {
      case .conv1D: defaultName = "conv\(number)"
      case .batchNormalization: defaultName = "bn\(number)"
      case .maxPooling1D: defaultName = "pool\(number)"
      case .dropout: defaultName = "dropout\(number)"
      case .flatten: defaultName = number == 1 ? "flatten" : "flatten\(number)"
      case .dense: defaultName = "dense\(number)"
      case .reshape: defaultName = "reshape\(number)"
      case .globalAveragePooling1D: defaultName = "global_avg\(number)"
      case .globalMaxPooling1D: defaultName = "global_max\(number)"
      }
      let name = spec.name ?? defaultName
      spec.name = name
      func count(_ v: Double) -> String { v < 1e18 ? "\(Int(v))" : "\(v)" }
      func fail(_ message: String) -> Failure {
        Failure("layer \(index + 1) (\(name), \(spec.type.rawValue)): \(message)")
      }
      guard !name.isEmpty, !name.contains("/"), names.insert(name).inserted else {
        throw fail("the name must be unique, non-empty and without '/'")
      }
      let isLast = index == layers.count - 1
      var plan = LayerPlan(
        spec: spec, name: name, inputLength: length, inputChannels: channels, outputLength: length,
        outputChannels: channels, trainable: [], nonTrainable: [])
      let sequenceLayers: Set<LayerSpec.Kind> = [.conv1D, .maxPooling1D, .globalAveragePooling1D, .globalMaxPooling1D]
      if flat && sequenceLayers.contains(spec.type) {
        throw fail(
          "needs a sequence (length × channels), but its input is flat (\(length * channels) values after a Flatten, "
            + "a global pooling, a Dense or a one-dimensional Reshape); Reshape it to [length, channels] first")
      }
      switch spec.type {
      case .conv1D:
        guard let filters = spec.filters, filters > 0 else { throw fail("needs 'filters' > 0") }
        guard let k = spec.kernelSize, k > 0 else { throw fail("needs 'kernel_size' > 0") }
        guard (spec.strides ?? 1) == 1 else { throw fail("only strides 1 is supported") }
        guard (spec.padding ?? "same") == "same" else { throw fail("only padding 'same' is supported") }
        let activation = spec.activation ?? .linear
        guard activation != .softmax else { throw fail("softmax is only for the last Dense layer") }
        spec.activation = activation
        plan.outputChannels = filters
        plan.trainable = [("kernel", [k, channels, filters]), ("bias", [filters])]
      case .batchNormalization:
        if let m = spec.momentum, !(m >= 0 && m < 1) { throw fail("momentum must be in [0, 1)") }
        if let e = spec.epsilon, !(e > 0) { throw fail("epsilon must be positive") }
        plan.trainable = [("gamma", [channels]), ("beta", [channels])]
        plan.nonTrainable = [("moving_mean", [channels]), ("moving_variance", [channels])]
      case .maxPooling1D:
        guard let p = spec.poolSize, p > 0, p < 256 else { throw fail("needs 'pool_size' in 1...255") }
        let s = spec.strides ?? p
        guard s > 0, s < 256 else { throw fail("needs 'strides' in 1...255") }
        guard (spec.padding ?? "same") == "same" else { throw fail("only padding 'same' is supported") }
        spec.strides = s
        plan.outputLength = (length + s - 1) / s
      case .dropout:
        guard let r = spec.rate, r >= 0, r < 1 else { throw fail("needs 'rate' in [0, 1)") }
      case .flatten:
        plan.outputLength = 1
        plan.outputChannels = length * channels
      case .reshape:
        guard var shape = spec.targetShape, shape.count == 1 || shape.count == 2,
          shape.allSatisfy({ $0 > 0 || $0 == -1 }), shape.filter({ $0 == -1 }).count <= 1
        else {
          throw fail("needs 'target_shape' [length, channels] or [n], positive, one of them may be -1")
        }
        let known = shape.reduce(1) { $1 == -1 ? $0 : $0 * $1 }
        if let free = shape.firstIndex(of: -1), known > 0, (length * channels) % known == 0 {
          shape[free] = length * channels / known
        }
        guard shape.reduce(1, *) == length * channels else {
          throw fail("cannot reshape \(length)×\(channels) = \(length * channels) values to \(shape)")
        }
        spec.targetShape = shape
        (plan.outputLength, plan.outputChannels) = shape.count == 2 ? (shape[0], shape[1]) : (1, shape[0])
      case .globalAveragePooling1D, .globalMaxPooling1D:
        plan.outputLength = 1
      case .dense:
        guard flat, length == 1 else {
          throw fail("needs a flat input, got \(length)×\(channels); put a Flatten before it")
        }
        let units = spec.units ?? (isLast ? classes : 0)
        guard units > 0 else { throw fail("needs 'units' > 0") }
        let activation = spec.activation ?? .linear
        if isLast {
          guard activation == .softmax else { throw fail("the last layer must be Dense with softmax") }
          guard units == classes else {
            throw fail("has \(units) units but the data has \(classes) classes")
          }
        } else if activation == .softmax {
          throw fail("softmax is only for the last Dense layer")
        }
        spec.units = units
        spec.activation = activation
        plan.outputChannels = units
        plan.trainable = [("kernel", [channels, units]), ("bias", [units])]
      }
      if isLast && !(spec.type == .dense && spec.activation == .softmax) {
        throw fail("the last layer must be Dense with softmax")
      }
      // Sizes a machine can hold, checked before anything is allocated (a spec or checkpoint may say anything),
      // in floating point so that no product overflows.
      let values = (plan.trainable + plan.nonTrainable).reduce(0.0) { $0 + $1.1.reduce(1.0) { $0 * Double($1) } }
      let outputs = Double(plan.outputLength) * Double(plan.outputChannels)
      guard values <= Double(ModelSpec.maxLayerParameters), outputs <= Double(ModelSpec.maxLayerOutputs) else {
        throw fail(
          "declares \(count(values)) parameters and \(count(outputs)) outputs per sample; sertrain takes at most "
            + "\(ModelSpec.maxLayerParameters) and \(ModelSpec.maxLayerOutputs)")
      }
      (totalValues, totalOutputs) = (totalValues + values, totalOutputs + outputs)
      guard totalValues <= Double(ModelSpec.maxModelParameters), totalOutputs <= Double(ModelSpec.maxModelOutputs)
      else {
        throw fail(
          "brings the model to \(count(totalValues)) parameters and \(count(totalOutputs)) outputs per sample; "
            + "sertrain takes at most \(ModelSpec.maxModelParameters) and \(ModelSpec.maxModelOutputs) in all")
      }
      switch spec.type {
      case .flatten, .globalAveragePooling1D, .globalMaxPooling1D, .dense: flat = true
      case .reshape: flat = spec.targetShape!.count == 1
      default: break
      }
      plan.spec = spec
      plans.append(plan)
      (length, channels) = (plan.outputLength, plan.outputChannels)
    }
    return plans
  }
}
