import Base
import ConvNet
import HDF5
import Schema

#if canImport(Glibc)
  import Glibc
#endif

/// Weights read from a Keras file: the layers that have variables, in model order, with their variables in
/// Keras's order (kernel, bias; gamma, beta, moving_mean, moving_variance).
public struct KerasWeights {
  public enum Format: String, Sendable {
    /// Keras 3 `model.save_weights("x.weights.h5")`: `layers/<class_name[_i]>/vars/<i>`.
    case keras3 = "Keras 3 weights (.weights.h5)"
    /// tf.keras 2 `model.save("x.h5")` (with `model_config`) or `save_weights("x.h5")`: `layer_names`,
    /// `weight_names`.
    case legacy = "legacy HDF5 (tf.keras 2)"
    /// Keras 3 `model.save("x.keras")`: a zip of `config.json`, `model.weights.h5` (the `keras3` layout) and
    /// `metadata.json`.
    case native = "Keras 3 model (.keras)"
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
  /// A leading `Normalization` layer's mean and variance per input column, when the model has one.
  public var normalization: (mean: [Float], variance: [Float])?
  /// The class names in output order, when the file records them (sertrain's `.keras` exports do, in metadata.json).
  public var classNames: [String]?
}

/// A file under /tmp holding `bytes` while `body` runs, removed afterwards: a `.keras` archive's weights are an HDF5
/// file inside a zip, and HDF5 reads and writes paths, not memory.
func withTemporaryFile<T>(holding bytes: [UInt8] = [], _ body: (String) throws -> T) throws -> T {
  var template = Array("/tmp/sertrain-keras-XXXXXX".utf8CString)
  let fd = mkstemp(&template)
  guard fd >= 0 else { throw Failure("/tmp", "cannot create a temporary file: \(String(cString: strerror(errno)))") }
  let path = String(cString: template)
  defer { unlink(path) }
  let written = bytes.isEmpty ? 0 : Glibc.write(fd, bytes, bytes.count)
  let closed = close(fd)
  guard written == bytes.count, closed == 0 else {
    throw Failure(path, "write failed: \(String(cString: strerror(errno)))")
  }
  return try body(path)
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
  case .reshape: return "reshape"
  case .globalAveragePooling1D: return "global_average_pooling1d"
  case .globalMaxPooling1D: return "global_max_pooling1d"
  }
}

extension KerasWeights {
  /// Reads either format, telling them apart by their layout.
  public static func read(_ path: String) throws -> KerasWeights {
    if let f = fopen(path, "r") {
      var magic = [UInt8](repeating: 0, count: 4)
      let n = fread(&magic, 1, 4, f)
      fclose(f)
      if n == 4 && magic == [0x50, 0x4B, 0x03, 0x04] { return try readNative(path) }
    }
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
        + "'layer_names'), and not a .keras archive")
  }

  /// A `.keras` archive: its weights (read from a temporary copy, as HDF5 reads files), its architecture, and the
  /// scaler in a leading `Normalization` layer's config (or its variables, when Keras adapted it).
  static func readNative(_ path: String) throws -> KerasWeights {
    let entries = try unzipStored(try readFileBytes(path), path: path)
    guard let config = entries["config.json"], let weights = entries["model.weights.h5"] else {
      throw Failure(path, "a .keras archive must hold config.json and model.weights.h5")
    }
    var w = try withTemporaryFile(holding: weights) { temp in
      do { return try readKeras3(try H5File(path: temp), temp) } catch {
        throw Failure(path, "model.weights.h5: \(String(describing: error).replacing(temp + ": ", with: ""))")
      }
    }
    w.format = .native
    if let metadata = entries["metadata.json"],
      let json = try? JSONValue.parse(String(decoding: metadata, as: UTF8.self))
    {
      w.classNames = json["class_names"]?.array?.compactMap(\.string)
    }
    do {
      let (spec, normalization) = try specFromKerasConfig(String(decoding: config, as: UTF8.self))
      w.spec = spec
      w.normalization = normalization ?? w.normalization
    } catch {
      throw Failure(path, "config.json: \(error)")
    }
    return w
  }

  static func readKeras3(_ file: H5File, _ path: String) throws -> KerasWeights {
    var layers: [Layer] = []
    var normalization: (mean: [Float], variance: [Float])?
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
      if kind == "normalization" && variables.count >= 2 {
        normalization = (variables[0].2, variables[1].2)  // an adapted Normalization: mean, variance, count
        continue
      }
      layers.append(Layer(name: display, kind: kind, index: index, variables: variables))
    }
    layers.sort { ($0.kind, $0.index) < ($1.kind, $1.index) }
    return KerasWeights(format: .keras3, layers: layers, spec: nil, normalization: normalization)
  }

  static func readLegacy(_ file: H5File, _ path: String) throws -> KerasWeights {
    let root: H5Group = file.exists("model_weights") ? try file.openGroup("model_weights") : file
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
      spec = try? specFromKerasConfig(try file.stringAttribute("model_config")).spec
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

  /// Writes `network`'s variables as a Keras file, by the name's ending: `.keras` (Keras 3's native archive, the
  /// scaler as a leading `Normalization` layer), `.weights.h5` (Keras 3 weights), or `.h5` (the legacy HDF5 model
  /// format with a `model_config`; neither `.h5` form carries the scaler). Atomic.
  /// A `.keras` is compiled as the run trained (Adam at `learningRate`, categorical cross-entropy, accuracy), and
  /// holds `adam`'s state (the step count and the moments, laid out as `network.parameters`) as Keras saves a
  /// trained model's, so that `fit` continues the run's optimizer rather than starting its moments from zero.
  public static func write(
    _ network: Network, to path: String, overwrite: Bool, scaler: Scaler? = nil,
    classNames: [String] = [], learningRate: Double = 1e-3, adam: (iterations: Int, m: [Float], v: [Float])? = nil
  ) throws {
    if path.hasSuffix(".keras") {
      let variance = scaler.map { s in s.scale.map { $0 * $0 } }
      let normalization = scaler.map { ($0.mean, variance!) }
      let weights = try withTemporaryFile { temp in
        let file = try H5File(creating: temp)
        try writeKeras3(network, file, normalization: normalization != nil)
        if let adam { try writeAdam(adam, learningRate: learningRate, of: network, to: file) }
        try file.close()
        return try readFileBytes(temp)
      }
      let metadata =
        #"{"keras_version": "3.15.1", "date_saved": "sertrain", "class_names": \#(jsonText(classNames))}"#
      let config = kerasConfig(network, normalization: normalization, native: true, learningRate: learningRate)
      let archive = zipStored([
        ("metadata.json", Array(metadata.utf8)), ("config.json", Array(config.utf8)),
        ("model.weights.h5", weights),
      ])
      return try writeBytesAtomically(archive, to: path, overwrite: overwrite)
    }
    guard path.hasSuffix(".h5") else {
      throw Failure(
        path,
        "sertrain writes Keras models as NAME.keras (Keras 3: keras.models.load_model), NAME.weights.h5 (Keras 3: "
          + "model.load_weights) or NAME.h5 (legacy HDF5 with model_config)")
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

  static func writeKeras3(_ network: Network, _ file: H5File, normalization: Bool = false) throws {
    var counters: [String: Int] = [:]
    _ = try file.createGroup("layers")
    if normalization { try file.createGroup("layers/normalization/vars").setAttribute("name", "normalization") }
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

  /// Keras 3's `optimizer/vars` of an Adam: the iteration count (int64) and the learning rate, then, for each
  /// trainable variable in the model's order, its first moment and its second.
  static func writeAdam(
    _ adam: (iterations: Int, m: [Float], v: [Float]), learningRate: Double, of network: Network, to file: H5File
  ) throws {
    let vars = try file.createGroup("optimizer/vars")
    try vars.setAttribute("name", "adam")
    try vars.write("0", [Int64(adam.iterations)], shape: [])
    try vars.write("1", [Float(learningRate)], shape: [])
    var index = 2
    for plan in network.plans {
      for (name, shape) in plan.trainable {
        let view = network.parameterLayout["\(plan.name)/\(name)"]!
        for moments in [adam.m, adam.v] {
          try vars.write("\(index)", Array(moments[view.offset..<(view.offset + view.count)]), shape: shape)
          index += 1
        }
      }
    }
  }

  static func writeLegacy(_ network: Network, _ file: H5File) throws {
    try file.setAttribute("backend", "tensorflow")
    try file.setAttribute("keras_version", "3.15.1")
    try file.setAttribute("model_config", kerasConfig(network, normalization: nil, native: false))
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

/// A Keras 3 `Sequential` configuration (JSON) of the network, named after its spec: as `model.save("x.h5")` writes
/// it, or, `native`, as `.keras` archives hold it (each layer with its module and build shape, and compiled with Adam
/// at `learningRate`, categorical cross-entropy and accuracy); `normalization` (mean, variance per input column)
/// becomes a leading `Normalization` layer.
public func kerasConfig(
  _ network: Network, normalization: (mean: [Float], variance: [Float])?, native: Bool, learningRate: Double = 1e-3
) -> String {
  func q(_ s: String) -> String { "\"\(s)\"" }
  let dtype =
    #"{"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": null}"#
  func initializer(_ name: String) -> String {
    #"{"module": "keras.initializers", "class_name": ""# + name + #"", "config": {}, "registered_name": null}"#
  }
  let (length, channels) = (network.inputLength, network.inputChannels)
  /// A layer's entry: its class and config, and in a native config its module and the shape it is built for.
  func entry(_ cls: String, _ config: String, input: [Int]) -> String {
    let shape = "[null, " + input.map(String.init).joined(separator: ", ") + "]"
    let extra =
      native ? #", "module": "keras.layers", "registered_name": null, "build_config": {"input_shape": \#(shape)}"# : ""
    return #"{"class_name": \#(q(cls)), "config": {\#(config)}\#(extra)}"#
  }
  var layers = [
    #"{"class_name": "InputLayer", "config": {"batch_shape": [null, \#(length), \#(channels)], "dtype": "float32", "sparse": false, "ragged": false, "name": "input_layer", "optional": false}\#(native ? #", "module": "keras.layers", "registered_name": null"# : "")}"#
  ]
  if let (mean, variance) = normalization {
    // One mean and variance per input position (and channel): axis 1, or axes 1 and 2 as [length][channels].
    func flat(_ v: ArraySlice<Float>) -> String { "[" + v.map { "\($0)" }.joined(separator: ", ") + "]" }
    func list(_ v: [Float]) -> String {
      channels == 1
        ? flat(v[...])
        : "[" + (0..<length).map { i in flat(v[(i * channels)..<((i + 1) * channels)]) }.joined(separator: ", ") + "]"
    }
    let axis = channels == 1 ? "[1]" : "[1, 2]"
    let config =
      #""name": "normalization", "trainable": true, "dtype": \#(dtype), "axis": \#(axis), "invert": false, "mean": \#(list(mean)), "variance": \#(list(variance))"#
    layers.append(entry("Normalization", config, input: [length, channels]))
  }
  var flat = false  // (batch, features) after a Flatten, (batch, length, channels) before
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
    case .reshape:
      c += [#""target_shape": [\#(s.targetShape!.map(String.init).joined(separator: ", "))]"#]
    case .globalAveragePooling1D, .globalMaxPooling1D:
      c += [#""data_format": "channels_last""#, #""keepdims": false"#]
    case .dense:
      c += [
        #""units": \#(s.units!)"#, #""activation": \#(q(s.activation!.rawValue))"#, #""use_bias": true"#,
        #""kernel_initializer": {"module": "keras.initializers", "class_name": "GlorotUniform", "config": {"seed": null}, "registered_name": null}"#,
        #""bias_initializer": \#(initializer("Zeros"))"#, #""kernel_regularizer": null"#, #""bias_regularizer": null"#,
        #""activity_regularizer": null"#, #""kernel_constraint": null"#, #""bias_constraint": null"#,
      ]
    }
    layers.append(
      entry(
        s.type.rawValue, c.joined(separator: ", "),
        input: flat ? [plan.inputChannels] : [plan.inputLength, plan.inputChannels]))
    switch s.type {
    case .flatten, .globalAveragePooling1D, .globalMaxPooling1D: flat = true
    case .reshape: flat = s.targetShape!.count == 1
    default: break
    }
  }
  // Keras names are identifiers: the spec's name with anything else as '_'.
  let name = String(network.spec.name.map { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "-" ? $0 : "_" })
  let model =
    #""class_name": "Sequential", "config": {"name": \#(q(name.isEmpty ? "sequential" : name)), "trainable": true, "dtype": \#(dtype), "layers": [\#(layers.joined(separator: ", "))], "build_input_shape": [null, \#(length), \#(channels)]}"#
  let optimizer =
    #"{"module": "keras.optimizers", "class_name": "Adam", "config": {"name": "adam", "learning_rate": \#(learningRate), "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": false}, "registered_name": null}"#
  let compile =
    #"{"optimizer": \#(optimizer), "loss": "categorical_crossentropy", "loss_weights": null, "metrics": ["accuracy"], "weighted_metrics": null, "run_eagerly": false, "steps_per_execution": 1, "jit_compile": false}"#
  return native
    ? #"{"module": "keras", \#(model), "registered_name": null, "build_config": {"input_shape": [null, \#(length), \#(channels)]}, "compile_config": \#(compile)}"#
    : "{\(model)}"
}

/// The architecture of a Keras `model_config` (Sequential of InputLayer, Conv1D, BatchNormalization,
/// MaxPooling1D, Dropout, Flatten, Reshape, GlobalAveragePooling1D, GlobalMaxPooling1D, Dense); throws naming
/// anything else.
public func specFromKerasConfig(_ json: String) throws -> (
  spec: ModelSpec, normalization: (mean: [Float], variance: [Float])?
) {
  let root = try JSONValue.parse(json)
  guard let layers = root["config"]?["layers"]?.array else { throw Failure("model_config has no layer list") }
  var length = 0
  var channels = 1
  var specs: [LayerSpec] = []
  var normalization: (mean: [Float], variance: [Float])?
  func numbers(_ v: JSONValue?) -> [Float] {
    if let a = v?.array { return a.flatMap { numbers($0) } }
    return v?.number.map { [Float($0)] } ?? []
  }
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
    case "Normalization":
      // The scaler, when it leads the model (a Normalization elsewhere is not a layer sertrain has).
      guard specs.isEmpty, c["invert"] != .bool(true) else { throw Failure("Normalization is supported only first") }
      let (mean, variance) = (numbers(c["mean"]), numbers(c["variance"]))
      if !mean.isEmpty {
        guard mean.count == length * channels, variance.count == mean.count else {
          throw Failure("the Normalization layer holds \(mean.count) means for \(length * channels) inputs")
        }
        normalization = (mean, variance)
      }
      continue
    case "InputLayer":
      let shape = (c["batch_shape"] ?? c["batch_input_shape"])?.array ?? []
      // (length, channels), or (n): n values in one channel (a Reshape usually follows).
      guard shape.count == 3 || shape.count == 2, let l = shape[1].int, let ch = shape.count == 3 ? shape[2].int : 1
      else {
        throw Failure("the input shape must be (length, channels) or (length)")
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
    case "Reshape": s = .reshape(c["target_shape"]?.array?.compactMap(\.int) ?? [])
    case "GlobalAveragePooling1D", "GlobalMaxPooling1D":
      guard c["keepdims"] != .bool(true) else { throw Failure("\(cls) with keepdims is not supported") }
      s = cls == "GlobalMaxPooling1D" ? .globalMaxPooling1D() : .globalAveragePooling1D()
    default: throw Failure("layer type \(cls) is not supported")
    }
    s.name = c["name"]?.string
    specs.append(s)
  }
  guard length > 0 else { throw Failure("model_config has no input shape") }
  let spec = ModelSpec(
    name: root["config"]?["name"]?.string ?? "keras", inputLength: length, inputChannels: channels, layers: specs)
  return (spec, normalization)
}

/// A checkpoint from the Keras weights in `path`, and what it holds in words.
/// - Parameters:
///   - model: a preset or JSON spec; default the file's `model_config` when it has one, else the seed.
///   - classes: class names in the output order, comma-separated; default the scaler's data's classes, else the
///     seed's emotions (when the output layer has 7 units).
///   - fitted: the input standardisation fitted on a feature file (`fitScaler` in Training), that file's classes
///     and its path; default the file's own Normalization layer, else none (identity).
public func importKeras(
  _ path: String, model: String?, classes: String?, fitted: (scaler: Scaler, classes: [String], path: String)?
) throws -> (checkpoint: Checkpoint, description: String, standardised: Bool) {
  let weights = try KerasWeights.read(path)
  let spec = try model.map(ModelSpec.load) ?? weights.spec ?? .seed()
  let outputs = weights.layers.last { $0.kind == "dense" }?.variables.last?.shape.first ?? 7
  let names =
    classes?.split(separator: ",").map { String($0).trimmingCharacters() } ?? fitted?.classes ?? weights.classNames
    ?? (outputs == emotions.count ? emotions : (0..<outputs).map { "class\($0)" })
  guard names.count == outputs else {
    throw Failure(path, "\(names.count) class names given; the output layer has \(outputs) units")
  }
  let network = try Network(spec: spec, classes: names.count)
  try weights.apply(to: network, path: path)
  if let fitted, fitted.scaler.width != network.inputWidth {
    throw Failure(fitted.path, "\(fitted.scaler.width) feature columns, but the model reads \(network.inputWidth)")
  }
  // The file's Normalization as the scaler, dividing as Keras does: by max(sqrt(variance), 1e-7).
  let stored = try weights.normalization.map { n in
    guard n.mean.count == network.inputWidth, n.variance.count == network.inputWidth else {
      throw Failure(
        path, "the Normalization layer has \(n.mean.count) columns, but the model reads \(network.inputWidth)")
    }
    return Scaler(mean: n.mean, scale: n.variance.map { max($0.squareRoot(), 1e-7) })
  }
  let checkpoint = Checkpoint(network: network, classNames: names, scaler: fitted?.scaler ?? stored)
  let source =
    fitted != nil
    ? ", scaler fitted on \(fitted!.path)"
    : stored != nil ? ", scaler from its Normalization layer" : ", identity scaler"
  return (
    checkpoint,
    "\(weights.format.rawValue), \(weights.layers.count) layers with weights: model \(spec.name), "
      + "\(network.trainableCount + network.nonTrainableCount) parameters, classes \(names.joined(separator: ", "))"
      + source,
    fitted != nil || stored != nil
  )
}
