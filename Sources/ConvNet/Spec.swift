import Base
import FoundationEssentials

#if canImport(Glibc)
  import Glibc
#endif

/// An activation fused into a `Conv1D` or `Dense` layer.
public enum Activation: String, Codable, Sendable {
  case linear, relu, softmax
}

/// One layer of a model spec, in Keras's vocabulary (`type` is the Keras class name).
public struct LayerSpec: Codable, Equatable, Sendable {
  public enum Kind: String, Codable, Sendable, CaseIterable {
    case conv1D = "Conv1D"
    case batchNormalization = "BatchNormalization"
    case maxPooling1D = "MaxPooling1D"
    case dropout = "Dropout"
    case flatten = "Flatten"
    case dense = "Dense"
    case reshape = "Reshape"
    case globalAveragePooling1D = "GlobalAveragePooling1D"
    case globalMaxPooling1D = "GlobalMaxPooling1D"
  }

  public var type: Kind
  public var name: String?
  public var filters: Int?
  public var kernelSize: Int?
  public var poolSize: Int?
  public var strides: Int?
  public var padding: String?
  public var units: Int?
  public var activation: Activation?
  public var rate: Double?
  public var momentum: Double?
  public var epsilon: Double?
  /// Reshape's output shape per sample: `[length, channels]`, or `[n]` for a flat one; one entry may be -1.
  public var targetShape: [Int]?

  enum CodingKeys: String, CodingKey, CaseIterable {
    case type, name, filters, activation, padding, strides, units, rate, momentum, epsilon
    case kernelSize = "kernel_size"
    case poolSize = "pool_size"
    case targetShape = "target_shape"
  }

  public init(_ type: Kind, name: String? = nil) { self.type = type }

  public static func conv1D(_ filters: Int, kernel: Int, activation: Activation = .relu) -> LayerSpec {
    var l = LayerSpec(.conv1D)
    (l.filters, l.kernelSize, l.activation) = (filters, kernel, activation)
    return l
  }
  public static func batchNormalization() -> LayerSpec { LayerSpec(.batchNormalization) }
  public static func maxPooling1D(_ pool: Int, strides: Int = 2) -> LayerSpec {
    var l = LayerSpec(.maxPooling1D)
    (l.poolSize, l.strides) = (pool, strides)
    return l
  }
  public static func dropout(_ rate: Double) -> LayerSpec {
    var l = LayerSpec(.dropout)
    l.rate = rate
    return l
  }
  public static func flatten() -> LayerSpec { LayerSpec(.flatten) }
  public static func reshape(_ shape: [Int]) -> LayerSpec {
    var l = LayerSpec(.reshape)
    l.targetShape = shape
    return l
  }
  public static func globalAveragePooling1D() -> LayerSpec { LayerSpec(.globalAveragePooling1D) }
  public static func globalMaxPooling1D() -> LayerSpec { LayerSpec(.globalMaxPooling1D) }
  /// `units: nil` means "the number of classes" (for the output layer).
  public static func dense(_ units: Int?, activation: Activation) -> LayerSpec {
    var l = LayerSpec(.dense)
    (l.units, l.activation) = (units, activation)
    return l
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    try rejectUnknownKeys(decoder, known: CodingKeys.self, in: "a layer")
    let raw = try c.decode(String.self, forKey: .type)
    let folded = raw.lowercased().replacing("_", with: "")
    guard let kind = Kind.allCases.first(where: { $0.rawValue.lowercased() == folded }) else {
      throw Failure(
        "unknown layer type '\(raw)' (expected one of \(Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    type = kind
    name = try c.decodeIfPresent(String.self, forKey: .name)
    filters = try c.decodeIfPresent(Int.self, forKey: .filters)
    kernelSize = try c.decodeIfPresent(Int.self, forKey: .kernelSize)
    poolSize = try c.decodeIfPresent(Int.self, forKey: .poolSize)
    strides = try c.decodeIfPresent(Int.self, forKey: .strides)
    padding = try c.decodeIfPresent(String.self, forKey: .padding)
    units = try c.decodeIfPresent(Int.self, forKey: .units)
    activation = try c.decodeIfPresent(Activation.self, forKey: .activation)
    rate = try c.decodeIfPresent(Double.self, forKey: .rate)
    momentum = try c.decodeIfPresent(Double.self, forKey: .momentum)
    epsilon = try c.decodeIfPresent(Double.self, forKey: .epsilon)
    targetShape = try c.decodeIfPresent([Int].self, forKey: .targetShape)
  }
}

/// A model as data: the input shape and the layers in order. The last layer must be `Dense` with softmax.
public struct ModelSpec: Codable, Equatable, Sendable {
  public var name: String
  public var inputLength: Int
  public var inputChannels: Int
  public var layers: [LayerSpec]

  enum CodingKeys: String, CodingKey, CaseIterable {
    case name, layers
    case inputLength = "input_length"
    case inputChannels = "input_channels"
  }

  public init(name: String, inputLength: Int, inputChannels: Int = 1, layers: [LayerSpec]) {
    self.name = name
    self.inputLength = inputLength
    self.inputChannels = inputChannels
    self.layers = layers
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    try rejectUnknownKeys(decoder, known: CodingKeys.self, in: "the spec")
    name = try c.decodeIfPresent(String.self, forKey: .name) ?? "custom"
    inputLength = try c.decodeIfPresent(Int.self, forKey: .inputLength) ?? 2376
    inputChannels = try c.decodeIfPresent(Int.self, forKey: .inputChannels) ?? 1
    layers = try c.decode([LayerSpec].self, forKey: .layers)
  }

  /// The seed's network: five Conv1D(relu)/BatchNorm/MaxPool(stride 2) blocks with filters 512, 512, 256, 256,
  /// 128, kernels 5, 5, 5, 3, 3 and pools 5, then Flatten, Dense 512 relu, BatchNorm, Dense softmax.
  /// With 7 classes and 2376 inputs it has 7,193,223 parameters.
  public static func seed(inputLength: Int = 2376) -> ModelSpec {
    blocks(
      name: "seed", inputLength: inputLength, filters: [512, 512, 256, 256, 128], kernels: [5, 5, 5, 3, 3],
      pools: [5, 5, 5, 5, 5], dense: 512)
  }

  /// The seed's layer types at a few thousand parameters (3,651 with 7 classes): for tests and the demo.
  public static func tiny(inputLength: Int = 2376) -> ModelSpec {
    blocks(
      name: "tiny", inputLength: inputLength, filters: [8, 8, 8, 8, 4], kernels: [5, 5, 5, 3, 3],
      pools: [5, 5, 5, 5, 5], dense: 8)
  }

  /// The seed's layer types at a small size (93,303 parameters with 7 classes): fast experiments such as
  /// cross-validation on a laptop.
  public static func small(inputLength: Int = 2376) -> ModelSpec {
    blocks(
      name: "small", inputLength: inputLength, filters: [32, 32, 32, 32, 16], kernels: [5, 5, 5, 3, 3],
      pools: [5, 5, 5, 5, 5], dense: 64)
  }

  /// Conv1D/BatchNorm/MaxPool blocks, then Flatten, Dense relu, BatchNorm, Dense softmax (the seed's shape).
  public static func blocks(
    name: String, inputLength: Int, filters: [Int], kernels: [Int], pools: [Int], dense: Int, dropout: Double? = nil
  ) -> ModelSpec {
    var layers: [LayerSpec] = []
    for i in filters.indices {
      layers += [.conv1D(filters[i], kernel: kernels[i]), .batchNormalization(), .maxPooling1D(pools[i])]
      if let dropout { layers.append(.dropout(dropout)) }
    }
    layers += [.flatten(), .dense(dense, activation: .relu), .batchNormalization(), .dense(nil, activation: .softmax)]
    return ModelSpec(name: name, inputLength: inputLength, layers: layers)
  }

  /// A convolution over time for rows of `frames` frames of `features` values each (`extract --layout frames`):
  /// Reshape to `[frames, features]`, Conv1D 64 (5 taps) -> BatchNorm -> MaxPool 2, Conv1D 128 (5) -> BatchNorm ->
  /// MaxPool 2, Conv1D 128 (3) -> BatchNorm, the maximum over time, Dropout 0.3, Dense 64 relu, Dense softmax:
  /// 107,463 parameters and about 9 MFLOP per sample forward for the seed's 108 x 22 and 7 classes. Chosen on the
  /// validation accuracy of EmoDB's speaker folds over the average over time, a higher dropout and half the filters
  /// (README, "Experiment"; `Benchmarks/frames-experiment.sh`).
  public static func frames(frames: Int = 108, features: Int = 22) -> ModelSpec {
    ModelSpec(
      name: "frames", inputLength: frames * features,
      layers: [
        .reshape([frames, features]),
        .conv1D(64, kernel: 5), .batchNormalization(), .maxPooling1D(2, strides: 2),
        .conv1D(128, kernel: 5), .batchNormalization(), .maxPooling1D(2, strides: 2),
        .conv1D(128, kernel: 3), .batchNormalization(),
        .globalMaxPooling1D(), .dropout(0.3), .dense(64, activation: .relu), .dense(nil, activation: .softmax),
      ])
  }

  public static let presets = ["seed", "small", "tiny", "frames"]

  /// A preset name (`seed`, `tiny`, `small`, `frames`) or the path of a JSON spec.
  public static func load(_ nameOrPath: String) throws -> ModelSpec {
    switch nameOrPath {
    case "seed": return .seed()
    case "tiny": return .tiny()
    case "small": return .small()
    case "frames": return .frames()
    default:
      guard let bytes = readWholeFile(nameOrPath) else {
        throw Failure(
          "cannot read model spec '\(nameOrPath)': not a preset (\(presets.joined(separator: ", "))) "
            + "and no such readable file")
      }
      return try decode(bytes, source: nameOrPath)
    }
  }

  public static func decode(_ bytes: [UInt8], source: String = "spec") throws -> ModelSpec {
    do {
      return try JSONDecoder().decode(ModelSpec.self, from: Data(bytes))
    } catch let e as Failure {
      throw Failure("\(source): \(e.message)")
    } catch {
      throw Failure("\(source): not a valid model spec: \(describeDecodingError(error))")
    }
  }

  public func encoded() -> String { jsonText(self) }
}

/// Any key of a JSON object, to list them all.
private struct AnyKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}

/// A key the type does not know is an error, as an unknown layer type is: a misspelt `"activaton"` must not
/// silently leave the default in place.
private func rejectUnknownKeys<K: CodingKey & CaseIterable>(_ decoder: Decoder, known: K.Type, in what: String) throws {
  let keys = try decoder.container(keyedBy: AnyKey.self).allKeys.map(\.stringValue)
  let names = Set(K.allCases.map(\.stringValue))
  if let unknown = keys.first(where: { !names.contains($0) }) {
    throw Failure(
      "unknown key '\(unknown)' in \(what) (known: \(K.allCases.map(\.stringValue).sorted().joined(separator: ", ")))")
  }
}

func describeDecodingError(_ error: Error) -> String {
  guard let e = error as? DecodingError else { return "\(error)" }
  func path(_ keys: [CodingKey]) -> String {
    keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
  }
  switch e {
  case .keyNotFound(let key, let ctx): return "missing '\(key.stringValue)' at \(path(ctx.codingPath))"
  case .typeMismatch(_, let ctx), .valueNotFound(_, let ctx):
    return "wrong type at \(path(ctx.codingPath)): \(ctx.debugDescription)"
  case .dataCorrupted(let ctx): return "\(ctx.debugDescription) at \(path(ctx.codingPath))"
  @unknown default: return "\(e)"
  }
}

func readWholeFile(_ path: String) -> [UInt8]? {
  guard let f = fopen(path, "rb") else { return nil }
  defer { fclose(f) }
  var bytes: [UInt8] = []
  var chunk = [UInt8](repeating: 0, count: 65536)
  while true {
    let n = fread(&chunk, 1, chunk.count, f)
    if n > 0 { bytes += chunk[0..<n] }
    if n < chunk.count { break }
  }
  return ferror(f) == 0 ? bytes : nil
}
