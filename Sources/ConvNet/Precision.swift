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
