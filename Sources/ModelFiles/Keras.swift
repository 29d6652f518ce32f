import AudioFeatures
import Base
import ConvNet
import HDF5

/// Weights read from a Keras file: the layers that have variables, in model order, with their variables in
/// Keras's order (kernel, bias; gamma, beta, moving_mean, moving_variance).
public struct KerasWeights {
  public enum Format: String, Sendable {
    /// Keras 3 `model.save_weights("x.weights.h5")`: `layers/<class_name[_i]>/vars/<i>`.
    case keras3 = "Keras 3 weights (.weights.h5)"
    /// tf.keras 2 `model.save("x.h5")` (with `model_config`) or `save_weights("x.h5")`: `layer_names`,
    /// `weight_names`.
    case legacy = "legacy HDF5 (tf.keras 2)"
  }

  public struct Layer {
    public var name: String
    /// `conv1d`, `batch_normalization` or `dense`, or another class's name when the file has one we lack.
    public var kind: String
    /// Its place among the file's layers of the same kind (0, 1, ...), which is the model's order.
    public var index: Int
    public var variables: [(name: String, shape: [Int], values: [Float])]
  }

  public var format: Format
  public var layers: [Layer]
  /// The architecture, when the file carries a `model_config` made only of layer types sertrain has.
  public var spec: ModelSpec?
}

/// The Keras class-name key of each layer type (Keras 3 names the groups of a weights file by them).
func kerasKey(_ kind: LayerSpec.Kind) -> String {
  switch kind {
  case .conv1D: return "conv1d"
  case .batchNormalization: return "batch_normalization"
  case .maxPooling1D: return "max_pooling1d"
  case .dropout: return "dropout"
  case .flatten: return "flatten"
  case .dense: return "dense"
  }
}

extension KerasWeights {
  /// Reads either format, telling them apart by their layout.
  public static func read(_ path: String) throws -> KerasWeights {
    let file: H5File
    do {
      file = try H5File(path: path)
    } catch {
      throw Failure(path, "not a readable HDF5 file (a Keras weights file is HDF5): \(error)")
    }
    if file.isGroup("layers") && !file.hasAttribute("layer_names") && !file.exists("model_weights") {
      return try readKeras3(file, path)
    }
    if file.exists("model_weights") || file.hasAttribute("layer_names") {
      return try readLegacy(file, path)
    }
    throw Failure(
      path,
      "neither Keras 3 weights (a 'layers' group) nor a legacy Keras HDF5 file ('model_weights' or "
        + "'layer_names'); for a .keras archive, unzip it and import its model.weights.h5")
  }

  static func readKeras3(_ file: H5File, _ path: String) throws -> KerasWeights {
    var layers: [Layer] = []
    for key in try file.openGroup("layers").children() {
      let base = "layers/\(key)/vars"
      guard file.isGroup(base) else { continue }
      let vars = try file.openGroup(base)
      let names = try vars.children().sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }
      if names.isEmpty { continue }
      // The key is the class name with a counter in model order: conv1d, conv1d_1, batch_normalization_5.
      var kind = key
      var index = 0
      if let us = key.lastIndex(of: "_"), let n = Int(key[key.index(after: us)...]) {
        kind = String(key[..<us])
        index = n
      }
      var variables: [(String, [Int], [Float])] = []
      for n in names {
        let ds = try file.openDataset("\(base)/\(n)")
        variables.append((n, ds.shape, try ds.readAll(as: Float.self)))
      }
      let display = (try? vars.stringAttribute("name")) ?? key
      layers.append(Layer(name: display, kind: kind, index: index, variables: variables))
    }
    layers.sort { ($0.kind, $0.index) < ($1.kind, $1.index) }
    return KerasWeights(format: .keras3, layers: layers, spec: nil)
  }

  static func readLegacy(_ file: H5File, _ path: String) throws -> KerasWeights {
    let root: H5Object = file.exists("model_weights") ? try file.openGroup("model_weights") : file
    let layerNames = try root.stringArrayAttribute("layer_names")
    var layers: [Layer] = []
    for name in layerNames {
      let group = try root.openGroup(name)
      let weightNames = group.hasAttribute("weight_names") ? try group.stringArrayAttribute("weight_names") : []
      if weightNames.isEmpty { continue }
      var variables: [(String, [Int], [Float])] = []
      for w in weightNames {
        let ds = try group.openDataset(w)
        let short = String(w.split(separator: "/").last ?? Substring(w)).replacing(":0", with: "")
        variables.append((short, ds.shape, try ds.readAll(as: Float.self)))
      }
      let names = variables.map(\.0)
      let kind: String
      if names.contains("gamma") || names.contains("moving_mean") {
        kind = "batch_normalization"
      } else if names.first == "kernel" && variables[0].1.count == 3 {
        kind = "conv1d"
      } else if names.first == "kernel" && variables[0].1.count == 2 {
        kind = "dense"
      } else {
        kind = "unknown (\(names.joined(separator: ", ")))"
      }
      let index = layers.filter { $0.kind == kind }.count
      layers.append(Layer(name: name, kind: kind, index: index, variables: variables))
    }
    var spec: ModelSpec?
    if file.hasAttribute("model_config") {
      spec = try? specFromKerasConfig(try file.stringAttribute("model_config"))
    }
    return KerasWeights(format: .legacy, layers: layers, spec: spec)
  }
}

extension KerasWeights {
  /// Sets every variable of `network` from these weights, matching layers by type and order and checking every
  /// shape; throws naming the first mismatch (another architecture, a missing or extra layer).
  public func apply(to network: Network, path: String) throws {
    var counters: [String: Int] = [:]
    var used = Set<String>()
    func describe(_ l: Layer) -> String {
      "\(l.name) (\(l.kind), \(l.variables.map { "\($0.shape)" }.joined(separator: " ")))"
    }
    for plan in network.plans where !plan.trainable.isEmpty {
      let kind = kerasKey(plan.spec.type)
      let index = counters[kind, default: 0]
      counters[kind] = index + 1
      guard let layer = layers.first(where: { $0.kind == kind && $0.index == index }) else {
        throw Failure(
          path,
          "the model's layer \(plan.name) (\(plan.spec.type.rawValue) #\(index + 1)) has no counterpart: the "
            + "file has \(layers.filter { $0.kind == kind }.count) \(kind) layers with weights; this is not the "
            + "architecture of model '\(network.spec.name)' (pass --model)")
      }
      used.insert("\(kind)#\(index)")
      let expected = plan.trainable + plan.nonTrainable
      guard layer.variables.count == expected.count else {
        throw Failure(
          path,
          "layer \(describe(layer)) has \(layer.variables.count) variables; the model's \(plan.name) has "
            + "\(expected.count) (\(expected.map(\.0).joined(separator: ", ")))")
      }
      for ((name, shape), v) in zip(expected, layer.variables) {
        guard v.shape == shape else {
          throw Failure(
            path,
            "layer \(layer.name) variable \(v.name) has shape \(v.shape); the model's \(plan.name)/\(name) "
              + "is \(shape): this is not the architecture of model '\(network.spec.name)' (pass --model)")
        }
        guard v.values.allSatisfy({ $0.isFinite }) else {
          throw Failure(path, "layer \(layer.name) variable \(v.name) holds NaN or infinite values")
        }
        let dst = network.variable("\(plan.name)/\(name)")!
        _ = dst.update(from: v.values)
      }
    }
    if let extra = layers.first(where: { !used.contains("\($0.kind)#\($0.index)") }) {
      throw Failure(
        path,
        "the file has a layer the model lacks: \(describe(extra)); this is not the architecture of model "
          + "'\(network.spec.name)' (pass --model)")
    }
  }

  /// Writes `network`'s variables as a Keras file: Keras 3 weights when `path` ends in `.weights.h5`, else the
  /// legacy HDF5 model format with a `model_config` that Keras can rebuild the model from. Atomic.
  public static func write(_ network: Network, to path: String, overwrite: Bool) throws {
    guard path.hasSuffix(".h5") else {
      throw Failure(
        path,
        "sertrain writes Keras weights as NAME.weights.h5 (Keras 3: model.load_weights) or NAME.h5 (legacy HDF5 "
          + "with model_config: keras.models.load_model); Keras 3's native .keras zip is not written yet")
    }
    try writeAtomically(to: path, overwrite: overwrite) { temp in
      let file = try H5File(creating: temp)
      if path.hasSuffix(".weights.h5") {
        try writeKeras3(network, file)
      } else {
        try writeLegacy(network, file)
      }
      try file.close()
    }
  }

  static func writeKeras3(_ network: Network, _ file: H5File) throws {
    var counters: [String: Int] = [:]
    _ = try file.createGroup("layers")
    for plan in network.plans {
      let kind = kerasKey(plan.spec.type)
      let index = counters[kind, default: 0]
      counters[kind] = index + 1
      let key = index == 0 ? kind : "\(kind)_\(index)"
      let vars = try file.createGroup("layers/\(key)/vars")
      try vars.setAttribute("name", plan.name)
      for (i, (name, shape)) in (plan.trainable + plan.nonTrainable).enumerated() {
        _ = try vars.write("\(i)", Array(network.variable("\(plan.name)/\(name)")!), shape: shape)
      }
    }
    try file.createGroup("vars").setAttribute("name", "sequential")
  }

  static func writeLegacy(_ network: Network, _ file: H5File) throws {
    try file.setAttribute("backend", "tensorflow")
    try file.setAttribute("keras_version", "3.15.1")
    try file.setAttribute("model_config", kerasConfig(network))
    let root = try file.createGroup("model_weights")
    try root.setAttribute("backend", "tensorflow")
    try root.setAttribute("keras_version", "3.15.1")
    try root.setAttribute("layer_names", strings: network.plans.map(\.name))
    for plan in network.plans {
      let group = try root.createGroup(plan.name)
      let vars = plan.trainable + plan.nonTrainable
      try group.setAttribute("weight_names", strings: vars.map { "sequential/\(plan.name)/\($0.0)" })
      for (name, shape) in vars {
        _ = try group.write(
          "sequential/\(plan.name)/\(name)", Array(network.variable("\(plan.name)/\(name)")!), shape: shape)
      }
    }
  }
}

/// A Keras 3 `Sequential` configuration (JSON) of the network, as `model.save("x.h5")` writes it.
public func kerasConfig(_ network: Network) -> String {
  func q(_ s: String) -> String { "\"\(s)\"" }
  let dtype =
    #"{"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}"#
  func initializer(_ name: String) -> String {
    #"{"module": "keras.initializers", "class_name": ""# + name + #"", "config": {}, "registered_name": null}"#
  }
  var layers = [
    #"{"class_name": "InputLayer", "config": {"batch_shape": [null, \#(network.inputLength), \#(network.inputChannels)], "dtype": "float32", "sparse": false, "ragged": false, "name": "input_layer", "optional": false}}"#
  ]
  for plan in network.plans {
    let s = plan.spec
    var c = [#""name": \#(q(plan.name))"#, #""trainable": true"#, #""dtype": \#(dtype)"#]
    switch s.type {
    case .conv1D:
      c += [
        #""filters": \#(s.filters!)"#, #""kernel_size": [\#(s.kernelSize!)]"#, #""strides": [1]"#,
        #""padding": "same""#,
        #""data_format": "channels_last""#, #""dilation_rate": [1]"#, #""groups": 1"#,
        #""activation": \#(q(s.activation!.rawValue))"#, #""use_bias": true"#,
        #""kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null}"#,
        #""bias_initializer": \#(initializer("Zeros"))"#, #""kernel_regularizer": null"#, #""bias_regularizer": null"#,
        #""activity_regularizer": null"#, #""kernel_constraint": null"#, #""bias_constraint": null"#,
      ]
    case .batchNormalization:
      c += [
        #""axis": -1"#, #""momentum": \#(s.momentum ?? 0.99)"#, #""epsilon": \#(s.epsilon ?? 1e-3)"#,
        #""center": true"#,
        #""scale": true"#, #""beta_initializer": \#(initializer("Zeros"))"#,
        #""gamma_initializer": \#(initializer("Ones"))"#, #""moving_mean_initializer": \#(initializer("Zeros"))"#,
        #""moving_variance_initializer": \#(initializer("Ones"))"#, #""beta_regularizer": null"#,
        #""gamma_regularizer": null"#, #""beta_constraint": null"#, #""gamma_constraint": null"#,
        #""synchronized": false"#,
      ]
    case .maxPooling1D:
      c += [
        #""pool_size": [\#(s.poolSize!)]"#, #""padding": "same""#, #""strides": [\#(s.strides!)]"#,
        #""data_format": "channels_last""#,
      ]
    case .dropout:
      c += [#""rate": \#(s.rate!)"#, #""seed": null"#, #""noise_shape": null"#]
    case .flatten:
      c += [#""data_format": "channels_last""#]
    case .dense:
      c += [
        #""units": \#(s.units!)"#, #""activation": \#(q(s.activation!.rawValue))"#, #""use_bias": true"#,
        #""kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null}"#,
        #""bias_initializer": \#(initializer("Zeros"))"#, #""kernel_regularizer": null"#, #""bias_regularizer": null"#,
        #""activity_regularizer": null"#, #""kernel_constraint": null"#, #""bias_constraint": null"#,
      ]
    }
    layers.append(#"{"class_name": \#(q(s.type.rawValue)), "config": {\#(c.joined(separator: ", "))}}"#)
  }
  return
    #"{"class_name": "Sequential", "config": {"name": "sequential", "trainable": true, "dtype": \#(dtype), "layers": [\#(layers.joined(separator: ", "))], "build_input_shape": [null, \#(network.inputLength), \#(network.inputChannels)]}}"#
}

/// The architecture of a Keras `model_config` (Sequential of InputLayer, Conv1D, BatchNormalization,
/// MaxPooling1D, Dropout, Flatten, Dense); throws naming anything else.
public func specFromKerasConfig(_ json: String) throws -> ModelSpec {
  let root = try JSONValue.parse(json)
  guard let layers = root["config"]?["layers"]?.array else { throw Failure("model_config has no layer list") }
  var length = 0
  var channels = 1
  var specs: [LayerSpec] = []
  for layer in layers {
    let cls = layer["class_name"]?.string ?? "?"
    let c = layer["config"] ?? .null
    func activation() throws -> Activation {
      let a = c["activation"]?.string ?? "linear"
      guard let act = Activation(rawValue: a) else { throw Failure("activation '\(a)' is not supported") }
      return act
    }
    var s: LayerSpec
    switch cls {
    case "InputLayer":
      let shape = (c["batch_shape"] ?? c["batch_input_shape"])?.array ?? []
      guard shape.count == 3, let l = shape[1].int, let ch = shape[2].int else {
        throw Failure("the input shape must be (length, channels)")
      }
      (length, channels) = (l, ch)
      continue
    case "Conv1D":
      s = .conv1D(c["filters"]?.int ?? 0, kernel: c["kernel_size"]?.int ?? 0, activation: try activation())
      s.strides = c["strides"]?.int
      s.padding = c["padding"]?.string
    case "BatchNormalization":
      s = .batchNormalization()
      s.momentum = c["momentum"]?.number
      s.epsilon = c["epsilon"]?.number
    case "MaxPooling1D":
      s = .maxPooling1D(c["pool_size"]?.int ?? 0, strides: c["strides"]?.int ?? c["pool_size"]?.int ?? 0)
      s.padding = c["padding"]?.string
    case "Dropout": s = .dropout(c["rate"]?.number ?? 0)
    case "Flatten": s = .flatten()
    case "Dense": s = .dense(c["units"]?.int, activation: try activation())
    default: throw Failure("layer type \(cls) is not supported")
    }
    s.name = c["name"]?.string
    specs.append(s)
  }
  guard length > 0 else { throw Failure("model_config has no input shape") }
  return ModelSpec(
    name: root["config"]?["name"]?.string ?? "keras", inputLength: length, inputChannels: channels, layers: specs)
}

/// A checkpoint from the Keras weights in `path`, and what it holds in words.
/// - Parameters:
///   - model: a preset or JSON spec; default the file's `model_config` when it has one, else the seed.
///   - classes: class names in the output order, comma-separated; default the scaler's data's classes, else the
///     seed's emotions (when the output layer has 7 units).
///   - scaler: a feature file to fit the input standardisation on; default none (identity).
public func importKeras(_ path: String, model: String?, classes: String?, scaler: String?) throws -> (
  Checkpoint, String
) {
  let weights = try KerasWeights.read(path)
  let spec = try model.map(ModelSpec.load) ?? weights.spec ?? .seed()
  let fit = try scaler.map(fitScaler)
  let outputs = weights.layers.last { $0.kind == "dense" }?.variables.last?.shape.first ?? 7
  let names =
    classes?.split(separator: ",").map { String($0).trimmingCharacters() } ?? fit?.classes
    ?? (outputs == emotions.count ? emotions : (0..<outputs).map { "class\($0)" })
  guard names.count == outputs else {
    throw Failure(path, "\(names.count) class names given; the output layer has \(outputs) units")
  }
  let network = try Network(spec: spec, classes: names.count)
  try weights.apply(to: network, path: path)
  if let fit, fit.mean.count != network.inputWidth {
    throw Failure(scaler!, "\(fit.mean.count) feature columns, but the model reads \(network.inputWidth)")
  }
  let checkpoint = Checkpoint(network: network, classNames: names, scalerMean: fit?.mean, scalerScale: fit?.scale)
  return (
    checkpoint,
    "\(weights.format.rawValue), \(weights.layers.count) layers with weights: model \(spec.name), "
      + "\(network.trainableCount + network.nonTrainableCount) parameters, classes \(names.joined(separator: ", "))"
      + (fit == nil ? ", identity scaler" : ", scaler fitted on \(scaler!)")
  )
}
