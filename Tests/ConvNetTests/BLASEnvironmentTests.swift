import ConvNet
import XCTest

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
}
