#if canImport(Glibc)
  import Glibc
#endif

/// What a forward or backward pass needs besides tensors.
struct StepContext {
  var training: Bool
  /// Seeds the dropout masks of this step (derived from the run's seed, epoch, step and rank).
  var dropoutSeed: UInt64 = 0
  /// Sums per-channel statistics across ranks in place (synchronised BatchNorm); nil on one process.
  var reduce: ((UnsafeMutableBufferPointer<Double>) -> Void)?
}

/// One layer: a forward/backward pair over NLC tensors. Backward overwrites this layer's parameter gradients
/// and, when `dx` is given, writes the gradient of its input.
protocol Layer: AnyObject {
  var plan: LayerPlan { get }
  /// Allocates scratch for batches up to `batch`.
  func reserve(batch: Int)
  func forward(_ x: Tensor, _ y: Tensor, _ ctx: StepContext)
  func backward(x: Tensor, y: Tensor, dy: Tensor, dx: Tensor?, _ ctx: StepContext)
}

/// Pointers into the parameter, gradient and state buffers for one layer's variables.
struct Variables {
  var values: [String: UnsafeMutablePointer<Float>] = [:]
  var gradients: [String: UnsafeMutablePointer<Float>] = [:]
}
