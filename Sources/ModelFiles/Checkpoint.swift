import Base
import ConvNet
import FoundationEssentials
import HDF5
import Schema

/// A training checkpoint (HDF5, `format = "sertrain-checkpoint"`, `version = 2`): the model spec, the flat
/// parameters with their layout, the BatchNorm moving statistics, the scaler, the class names, and, when it
/// comes from training, the Adam moments and the training state. The weights (parameters, state, best/, scaler)
/// carry a SHA-256 of their values (attribute `sha256`), checked when read; every dataset, the moments too, has
/// HDF5's Fletcher-32 per chunk. Version 2 also seals the root attributes (spec, training state, recipe, the
/// `contents` list of datasets) with a SHA-256 (`metadata_sha256`) and gives the moments their own; version 1
/// files, which have neither, are still read.
public struct Checkpoint {
  public static let format = "sertrain-checkpoint"
  public static let version = 2

  public var spec: ModelSpec
  public var classNames: [String]
  public var parameterLayout: ParameterLayout
  public var parameters: [Float]
  public var stateLayout: ParameterLayout
  public var state: [Float]
  /// Standardisation of the input features: `(x - mean) / scale` per column.
  public var scaler: Scaler
  /// How the rows were standardised in training (attribute `standardization`; `column` when missing): `speaker`
  /// leaves the scaler the identity and standardises each speaker's rows by their own statistics, at prediction
  /// time too (`SpeakerStatistics`).
  public var standardization = Standardization.column
  /// Under `speaker`, the train rows' statistics per feature (`speaker_fallback/mean`, `/scale`): what `predict`
  /// standardises with when it is given too few of a speaker's recordings for their own (from sertrain 0.12).
  public var speakerFallback: Scaler?
  public var adamM: [Float]?
  public var adamV: [Float]?
  public var adamIterations = 0
  public var learningRate = 1e-3
  /// The training loop's own state (epoch, callbacks, configuration) as JSON, when it comes from training.
  public var training: String?
  /// Each row's side of the split (0 train, 1 validation, 2 test), when it comes from training.
  public var split: [Int8]?
  /// The keys (`FeatureFile.recordingKeys`, sorted) of the recordings its training saw, in its train and validation
  /// rows, when it comes from training (`seen_recordings`): which recordings of any file are new to it.
  public var seenRecordings: [UInt64]?
  /// The feature recipe of the data it was trained on (JSON attribute `recipe`), when known.
  public var recipe: FeatureRecipe?
  /// The weights early stopping would restore (`best/parameters`, `best/state`), kept in the same file as the run's
  /// state so that the two cannot disagree after a crash.
  public var bestParameters: [Float]?
  public var bestState: [Float]?

  /// A checkpoint of `network`'s current variables, with an identity scaler unless one is given.
  public init(network: Network, classNames: [String], scaler: Scaler? = nil) {
    self.init(
      spec: network.spec, classNames: classNames, parameterLayout: network.parameterLayout,
      parameters: network.parameters.array, stateLayout: network.stateLayout, state: network.state.array,
      scaler: scaler ?? .identity(width: network.inputWidth))
  }

  private init(
    spec: ModelSpec, classNames: [String], parameterLayout: ParameterLayout, parameters: [Float],
    stateLayout: ParameterLayout, state: [Float], scaler: Scaler
  ) {
    self.spec = spec
    self.classNames = classNames
    self.parameterLayout = parameterLayout
    self.parameters = parameters
    self.stateLayout = stateLayout
    self.state = state
    self.scaler = scaler
  }

  /// Builds the network (in `precision`) and loads the variables, checking that the stored layout is the spec's.
  public func makeNetwork(path: String = "checkpoint", precision: Precision = .fp32) throws -> Network {
    let network = try Network(spec: spec, classes: classNames.count, policy: KernelPolicy(precision: precision))
    guard network.parameterLayout == parameterLayout, network.stateLayout == stateLayout else {
      throw Failure(path, "the stored parameter layout does not match its model spec")
    }
    network.parameters.copy(from: parameters.withUnsafeBufferPointer { $0 })
    network.state.copy(from: state.withUnsafeBufferPointer { $0 })
    return network
  }

  public func write(to path: String, overwrite: Bool = true) throws {
    try writeAtomically(to: path, overwrite: overwrite) { temp in
      let f = try H5File(creating: temp)
      var contents = ["class_names", "parameters", "state", "scaler/mean", "scaler/scale"]
      if split != nil { contents.append("split") }
      if seenRecordings != nil { contents.append("seen_recordings") }
      if speakerFallback != nil { contents += ["speaker_fallback/mean", "speaker_fallback/scale"] }
      if adamM != nil && adamV != nil { contents += ["optimizer/m", "optimizer/v"] }
      if bestParameters != nil && bestState != nil { contents += ["best/parameters", "best/state"] }
      try f.setAttribute("format", Checkpoint.format)
      try f.setAttribute("version", Checkpoint.version)
      try f.setAttribute("contents", strings: contents)
      try f.setAttribute("spec", spec.encoded())
      try f.setAttribute("learning_rate", learningRate)
      try f.setAttribute("optimizer_iterations", adamIterations)
      if let training { try f.setAttribute("training", training) }
      try f.setAttribute("standardization", standardization.rawValue)
      _ = try f.write("class_names", strings: classNames)
      _ = try f.write("parameters", parameters, digest: true)
      try writeLayout(parameterLayout, f, "layout")
      _ = try f.write("state", state, digest: true)
      try writeLayout(stateLayout, f, "state_layout")
      _ = try f.write("scaler/mean", scaler.mean, digest: true)
      _ = try f.write("scaler/scale", scaler.scale, digest: true)
      if let speakerFallback {
        _ = try f.write("speaker_fallback/mean", speakerFallback.mean, digest: true)
        _ = try f.write("speaker_fallback/scale", speakerFallback.scale, digest: true)
      }
      if let split { _ = try f.write("split", split) }
      if let seenRecordings { _ = try f.write("seen_recordings", seenRecordings.map { Int64(bitPattern: $0) }) }
      if let recipe { try f.setAttribute("recipe", String(decoding: try JSONEncoder().encode(recipe), as: UTF8.self)) }
      if let adamM, let adamV {
        _ = try f.write("optimizer/m", adamM, digest: true)
        _ = try f.write("optimizer/v", adamV, digest: true)
      }
      if let bestParameters, let bestState {
        _ = try f.write("best/parameters", bestParameters, digest: true)
        _ = try f.write("best/state", bestState, digest: true)
      }
      try f.sealAttributes()
      try f.close()
    }
  }

  private func writeLayout(_ layout: ParameterLayout, _ f: H5File, _ group: String) throws {
    _ = try f.write("\(group)/name", strings: layout.views.map(\.name))
    _ = try f.write("\(group)/offset", layout.views.map { Int64($0.offset) })
    _ = try f.write("\(group)/rank", layout.views.map { Int32($0.shape.count) })
    _ = try f.write("\(group)/dims", layout.views.flatMap { $0.shape.map { Int64($0) } })
  }

  private static func readLayout(_ f: H5File, _ group: String, _ path: String) throws -> ParameterLayout {
    let names = try f.readStrings("\(group)/name")
    let offsets: [Int64] = try f.read("\(group)/offset")
    let ranks: [Int32] = try f.read("\(group)/rank")
    let dims: [Int64] = try f.read("\(group)/dims")
    var layout = ParameterLayout()
    var d = 0
    for (i, name) in names.enumerated() {
      guard i < ranks.count, i < offsets.count, d + Int(ranks[i]) <= dims.count else {
        throw Failure(path, "'\(group)' is inconsistent")
      }
      let shape = dims[d..<(d + Int(ranks[i]))].map { Int($0) }
      d += Int(ranks[i])
      guard layout.append(name, shape: shape) == Int(offsets[i]) else {
        throw Failure(path, "'\(group)' offsets are not packed")
      }
    }
    return layout
  }

  public static func read(_ path: String) throws -> Checkpoint {
    let f = try H5File(path: path)
    guard f.hasAttribute("format"), (try? f.stringAttribute("format")) == format else {
      throw Failure(path, "not a sertrain checkpoint (no format = \"\(format)\" attribute)")
    }
    let v = try f.intAttribute("version")
    guard v == 1 || v == version else {
      throw Failure(path, "checkpoint version \(v); this sertrain reads versions 1 and \(version)")
    }
    // Version 2: the metadata is sealed, and the datasets it lists must all be there and whole.
    let sealed = v >= 2
    if sealed { try f.verifyAttributes() }
    let contents = sealed ? Set(try f.stringArrayAttribute("contents")) : nil
    func has(_ dataset: String) -> Bool { contents.map { $0.contains(dataset) } ?? f.exists(dataset) }
    func floats(_ dataset: String) throws -> [Float] {
      try f.readExactly(dataset, as: Float.self, digest: sealed || dataset != "optimizer/m" && dataset != "optimizer/v")
    }
    for required in ["class_names", "parameters", "state", "scaler/mean", "scaler/scale"] where !has(required) {
      throw Failure(path, "the checkpoint lists no '\(required)'")
    }
    let spec = try ModelSpec.decode(Array(try f.stringAttribute("spec").utf8), source: "\(path): spec")
    let names = try f.readStrings("class_names")
    guard names.count >= 2, Set(names).count == names.count, names.allSatisfy({ !$0.isEmpty }) else {
      throw Failure(path, "class_names must be 2 or more distinct names, not \(names)")
    }
    // A spec that cannot be built is an error here, not later; so is a layout that is not the spec's.
    let plans = try spec.plan(classes: names.count)
    let width = spec.inputLength * spec.inputChannels
    func scaler(_ group: String) throws -> Scaler {
      let (mean, scale) = (try floats(group + "/mean"), try floats(group + "/scale"))
      guard mean.count == width, scale.count == width else {
        throw Failure(
          path, "\(group) has \(mean.count) means and \(scale.count) scales, the model reads \(width) columns")
      }
      guard mean.allSatisfy(\.isFinite), scale.allSatisfy({ $0.isFinite && $0 > 0 }) else {
        throw Failure(path, "\(group) holds a mean that is not finite or a scale that is not positive and finite")
      }
      return Scaler(mean: mean, scale: scale)
    }
    var c = Checkpoint(
      spec: spec, classNames: names, parameterLayout: try readLayout(f, "layout", path),
      parameters: try floats("parameters"), stateLayout: try readLayout(f, "state_layout", path),
      state: try floats("state"), scaler: try scaler("scaler"))
    if has("speaker_fallback/mean") { c.speakerFallback = try scaler("speaker_fallback") }
    let expected = Network.layouts(plans)
    guard c.parameterLayout == expected.parameters, c.stateLayout == expected.state else {
      throw Failure(path, "the stored parameter layout is not the one its model spec gives")
    }
    guard c.parameters.count == c.parameterLayout.count, c.state.count == c.stateLayout.count else {
      throw Failure(
        path,
        "parameters and state hold \(c.parameters.count) and \(c.state.count) values, their layouts need "
          + "\(c.parameterLayout.count) and \(c.stateLayout.count)")
    }
    c.learningRate = try f.doubleAttribute("learning_rate")
    c.adamIterations = try f.intAttribute("optimizer_iterations")
    guard c.learningRate.isFinite, c.learningRate > 0, c.adamIterations >= 0 else {
      throw Failure(path, "learning rate \(c.learningRate) and \(c.adamIterations) optimizer steps are not valid")
    }
    if has("optimizer/m") {
      c.adamM = try floats("optimizer/m")
      c.adamV = try floats("optimizer/v")
      guard c.adamM!.count == c.parameters.count, c.adamV!.count == c.parameters.count else {
        throw Failure(
          path,
          "the optimizer moments hold \(c.adamM!.count) and \(c.adamV!.count) values, the parameters "
            + "\(c.parameters.count)")
      }
      guard c.adamM!.allSatisfy(\.isFinite), c.adamV!.allSatisfy({ $0.isFinite && $0 >= 0 }) else {
        throw Failure(path, "the optimizer moments hold values that are not finite (or a negative second moment)")
      }
    }
    if has("best/parameters") {
      c.bestParameters = try floats("best/parameters")
      c.bestState = try floats("best/state")
      guard c.bestParameters!.count == c.parameters.count, c.bestState!.count == c.state.count else {
        throw Failure(path, "the best weights (best/) do not have the parameters' and state's sizes")
      }
    }
    if f.hasAttribute("training") { c.training = try f.stringAttribute("training") }
    if f.hasAttribute("standardization") {
      let name = try f.stringAttribute("standardization")
      guard let mode = Standardization(rawValue: name) else {
        throw Failure(
          path,
          "unknown standardization '\(name)' (this sertrain knows "
            + Standardization.allCases.map(\.rawValue).joined(separator: ", ") + ")")
      }
      c.standardization = mode
    }
    if has("split") {
      c.split = try f.readExactly("split", as: Int8.self, digest: false)
      if let bad = c.split!.firstIndex(where: { !(0...3).contains($0) }) {
        throw Failure(path, "split: row \(bad) is on side \(c.split![bad]); sides are 0 to 3")
      }
    }
    if has("seen_recordings") {
      let keys = try f.readExactly("seen_recordings", as: Int64.self, digest: false).map { UInt64(bitPattern: $0) }
      guard zip(keys, keys.dropFirst()).allSatisfy({ $0 < $1 }) else {
        throw Failure(path, "seen_recordings: the keys are not sorted and distinct")
      }
      c.seenRecordings = keys
    }
    if f.hasAttribute("recipe") {
      c.recipe = try? JSONDecoder().decode(FeatureRecipe.self, from: Data(try f.stringAttribute("recipe").utf8))
    }
    for (what, values) in [("parameters", c.parameters), ("best parameters", c.bestParameters ?? [])]
    where !values.allSatisfy(\.isFinite) {
      throw Failure(path, "\(what) hold NaN or infinity")
    }
    for (what, values) in [("state", c.state), ("best state", c.bestState)] {
      if let values { try checkMovingStatistics(values, layout: c.stateLayout, path: path, what: what) }
    }
    return c
  }

  /// BatchNorm's moving statistics: finite, and variances not negative (a negative one makes every probability
  /// NaN).
  private static func checkMovingStatistics(_ values: [Float], layout: ParameterLayout, path: String, what: String)
    throws
  {
    for view in layout.views {
      let part = values[view.offset..<(view.offset + view.count)]
      guard part.allSatisfy(\.isFinite), view.variable != "moving_variance" || part.allSatisfy({ $0 >= 0 }) else {
        throw Failure(path, "\(what): \(view.name) holds NaN, infinity or a negative variance")
      }
    }
  }
}
