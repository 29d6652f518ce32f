import XCTest

@testable import ProcessSetup

/// What sertrain sets for OpenBLAS before it loads.
final class BLASEnvironmentTests: XCTestCase {
  func testThreadTimeoutAndCoreTypeUnlessSet() {
    let fresh = preferredBLASEnvironment(environment: [:])
    XCTAssertEqual(fresh["OPENBLAS_THREAD_TIMEOUT"], blasThreadTimeout)
    XCTAssertEqual(fresh["OPENBLAS_CORETYPE"], preferredBLASCoreType(environment: [:]))
    // What the user set wins, and nothing is left to change.
    let set = ["OPENBLAS_THREAD_TIMEOUT": "28", "OPENBLAS_CORETYPE": "Haswell"]
    XCTAssertEqual(preferredBLASEnvironment(environment: set), [:])
    XCTAssertEqual(
      preferredBLASEnvironment(environment: ["OPENBLAS_THREAD_TIMEOUT": "28"]).keys.sorted(),
      fresh["OPENBLAS_CORETYPE"] == nil ? [] : ["OPENBLAS_CORETYPE"])
  }

  /// The kernel family chosen from what the CPU runs and what OpenBLAS detected (Debian's 0.3.21 takes AMD Zen 4 for
  /// Haswell or Zen and Intel Emerald Rapids for Prescott), never a weaker one, never for a name it does not know.
  func testTheFamilyFollowsTheCPUNotTheName() {
    let cases: [(Int, String, String?)] = [
      (3, "Prescott", "SkylakeX"), (3, "Haswell", "SkylakeX"), (3, "Zen", "SkylakeX"), (3, "SkylakeX", nil),
      (3, "Cooperlake", nil), (3, "SapphireRapids", nil), (2, "Prescott", "Haswell"), (2, "Sandybridge", "Haswell"),
      (2, "Haswell", nil), (2, "SkylakeX", nil), (0, "Prescott", nil), (3, "SomeFutureCore", nil),
    ]
    for (cpu, detected, expected) in cases {
      XCTAssertEqual(
        preferredBLASCoreType(cpuLevel: cpu, detected: detected), expected, "CPU level \(cpu), \(detected)")
    }
    XCTAssertEqual(blasKernelLevel("skylakex"), 3)
    XCTAssertEqual(blasKernelLevel("ZEN"), 2)
    XCTAssertEqual(blasKernelLevel("Piledriver"), 1)
    XCTAssertEqual(blasKernelLevel("Nehalem"), 0)
    XCTAssertNil(blasKernelLevel("Neoverse"))
    XCTAssertNil(preferredBLASCoreType(environment: ["SERTRAIN_KEEP_BLAS_CORE": "1"]))
  }
}
