#if canImport(Glibc)
  import Glibc
#endif

/// What a forward or backward pass needs besides tensors.
struct StepContext {
  var training: Bool
  /// Seeds the dropout masks of this step (derived from the run's seed, epoch and step).
  var dropoutSeed: UInt64 = 0
  /// Each sample's key into the step's masks (the trainer gives its row of the data, so that a sample's mask does
  /// not depend on the rank that holds it or its place there); nil: its place in the batch.
  var dropoutKeys: [UInt64]?
  /// Sums per-channel statistics across ranks in place (synchronised BatchNorm); nil on one process.
  var reduce: ((UnsafeMutableBufferPointer<Double>) -> Void)?
  /// Scratch that one layer at a time may use during a pass (`Layer.reserve` says how much).
  var scratch: UnsafeMutablePointer<Float>?
  /// In backward: says that the layer's parameter gradients are complete, so that their reduction may start while
  /// it computes its input gradient (a Conv1D calls it between the two; otherwise it runs after the layer).
  var parametersDone: () -> Void = {}
}

/// One step of the network: a model layer, or a fused block of several (`ConvBlockLayer`), as a forward/backward
/// pair over NLC tensors. Backward overwrites its parameter gradients and, when `dx` is given, writes the gradient
/// of its input.
protocol Layer: AnyObject {
  /// The model layers it runs, in order.
  var plans: [LayerPlan] { get }
  /// Where the rows of its input, its input's gradient, its output and its output's gradient must sit (nil: any
  /// layout, the compact one unless a neighbour needs another; see `Network.planLayouts`).
  var inputLayout: Layout? { get }
  var inputGradientLayout: Layout? { get }
  var outputLayout: Layout? { get }
  var outputGradientLayout: Layout? { get }
  /// Allocates its own buffers for batches up to `batch`; returns the floats of `StepContext.scratch` it needs.
  func reserve(batch: Int) -> Int
  /// Floats it holds for the batch size reserved (beyond the network's activation buffers).
  var ownedFloats: Int { get }
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext)
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext)
}

extension Layer {
  var name: String { plans.map(\.name).joined(separator: "+") }
  var inputLayout: Layout? { nil }
  var inputGradientLayout: Layout? { nil }
  var outputLayout: Layout? { nil }
  var outputGradientLayout: Layout? { nil }
  func reserve(batch: Int) -> Int { 0 }
  var ownedFloats: Int { 0 }
}

/// A trainable variable: its values and, at the same offset of the gradient buffer, its gradient.
struct Variable {
  var value: UnsafeMutablePointer<Float>
  var gradient: UnsafeMutablePointer<Float>
}

/// A Conv1D's or Dense layer's variables.
struct KernelAndBias {
  var kernel: Variable
  var bias: Variable
}

/// A BatchNormalization's variables: trainable gamma and beta, and the moving statistics (not trainable).
struct NormVariables {
  var gamma: Variable
  var beta: Variable
  var movingMean: UnsafeMutablePointer<Float>
  var movingVariance: UnsafeMutablePointer<Float>
}
