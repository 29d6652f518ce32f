import Base
import CConvKernels

/// The arithmetic of a network's convolutions: `fp32` throughout, or `bf16`, Keras's `mixed_bfloat16`: the operands
/// of the convolutions' multiply-adds rounded to bfloat16 (8 significant bits), the products summed in float; weights,
/// Adam, BatchNorm, pooling, Dense layers and the loss stay float (bf16.c). A network's precision is fixed when it is
/// built; checkpoints hold float weights whatever the precision that trained them.
public enum Precision: String, CaseIterable, Codable, Sendable, CustomStringConvertible {
  case fp32, bf16

  public var description: String { rawValue }

  /// Whether this CPU runs the bfloat16 kernels (AVX512-BF16 with AVX512-BW and -VL: AMD Zen 4 and 5, Intel Cooper
  /// Lake, Sapphire Rapids and later).
  public static var bf16Runs: Bool { sertrain_bf16_level() > 0 }

  /// What `auto` means on this CPU: `bf16` where it runs, else `fp32`.
  public static var preferred: Precision { bf16Runs ? .bf16 : .fp32 }

  /// Refuses `bf16` on a CPU without bfloat16 units (there is no slow emulation: a user asking for bf16 wants speed).
  public func check() throws {
    guard self == .bf16, !Precision.bf16Runs else { return }
    throw Failure(
      "bfloat16 precision needs a CPU with AVX512-BF16 (AMD Zen 4 or later, Intel Cooper Lake, Sapphire Rapids or "
        + "later); this CPU has none (fp32 runs everywhere)")
  }

  /// `x` as the bfloat16 kernels round each operand (to nearest even, subnormals to zero), back in a float.
  public static func round(_ x: Float) -> Float { sertrain_bf16_round(x) }
}

/// How a network's kernels compute: given to `Network` when it is built and stored on it (and on its layers), so that
/// two networks in one process may differ (tests compare paths side by side; `bench model` runs inference both ways).
/// The defaults are what sertrain runs; only `precision` is a user's choice (`--precision`), the rest are for tests
/// and benchmarks that hold the paths together.
public struct KernelPolicy: Equatable, Sendable {
  /// The arithmetic of the convolutions.
  public var precision: Precision
  /// Winograd's minimal filtering (`WinogradConvolution`) for each Conv1D of 2 to 5 taps over at least 8 input
  /// channels: in training the input gradient (F(4, k)) and the kernel gradient (F(k, 4)), and the forward of float
  /// inference (evaluate, predict, validation), with 2-2.5x fewer multiplies. Against float64 on the seed the
  /// gradients stay as close as with the direct convolution (`KerasGoldenTests`), and inference with a trained model's
  /// statistics gives probabilities within 8e-6 (direct: 7.5e-6). The training forward stays direct: there
  /// BatchNorm's batch statistics magnified Winograd's rounding past the tolerances against float64 (ARCHITECTURE.md,
  /// "Numerics").
  public var winograd: Bool
  /// The first block of a model over one input channel runs without storing its convolution's output (stem.c).
  public var fusesStem: Bool
  /// The instruction sets each Conv1D's direct convolution (conv.c) may use: 2 for AVX-512, 1 for AVX2 with FMA, 0
  /// for none (every float pass as OpenBLAS GEMMs).
  public var directConvolutionLevel: Int

  public init(
    precision: Precision = .fp32, winograd: Bool = true, fusesStem: Bool = true, directConvolutionLevel: Int = 2
  ) {
    (self.precision, self.winograd, self.fusesStem) = (precision, winograd, fusesStem)
    self.directConvolutionLevel = directConvolutionLevel
  }

  /// The instruction set the direct convolution uses on this CPU within `directConvolutionLevel`: 2 for AVX-512,
  /// 1 for AVX2, 0 for none.
  public var directConvolutionInUse: Int { Int(sertrain_conv_level(Int32(directConvolutionLevel))) }

  /// Whether the float direct convolution computes a pass with this kernel size and output width on this CPU: kernels
  /// of 1 to 5 taps, a multiple of 32 output channels on AVX-512 or of 16 on AVX2 (the input gradient's output is
  /// the layer's input channels), within `directConvolutionLevel`; OpenBLAS GEMMs run the rest.
  public func directConvolutionRuns(kernel: Int, outChannels: Int) -> Bool {
    sertrain_conv_available(Int32(kernel), outChannels, Int32(directConvolutionLevel)) != 0
  }

  /// Whether a pass with this kernel size and output width multiplies in bfloat16 (bf16.c).
  public func bf16Runs(kernel: Int, outChannels: Int) -> Bool {
    precision == .bf16 && sertrain_conv_bf16_available(Int32(kernel), outChannels) != 0
  }
}
