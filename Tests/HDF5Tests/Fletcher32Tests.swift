import CSystem
import XCTest
import _TestSupport

/// HDF5's own checksum routine (exported by libhdf5, not declared in its public headers).
@_silgen_name("H5_checksum_fletcher32")
func hdf5Fletcher32(_ bytes: UnsafeRawPointer?, _ count: Int) -> UInt32

/// sertrain's vectorised Fletcher-32 (which the feature writer appends to the chunks it writes directly) against
/// HDF5's one-word-at-a-time loop, the naive reference: every length from 0 to 2,000 bytes (odd ones, partial
/// blocks of 360 words) and random lengths to 2 MiB, of random bytes, all 0xFF (the sums' largest values) and runs.
final class Fletcher32Tests: XCTestCase {
  func testAgreesWithHDF5sChecksum() {
    var rng = TestRNG(seed: 11)
    let size = 1 << 21
    let buffers: [[UInt8]] = [
      (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, [UInt8](repeating: 0xFF, count: size),
      (0..<size).map { ($0 / 7) % 2 == 0 ? 0xFF : 0 },
    ]
    var checked = 0
    for t in 0..<2_100 {
      let count = t <= 2_000 ? t : Int(rng.next() % UInt64(size))
      buffers[t % 3].withUnsafeBytes { b in
        XCTAssertEqual(
          sertrain_fletcher32(b.baseAddress, UInt(count)), hdf5Fletcher32(b.baseAddress, count), "\(count) bytes")
      }
      checked += 1
    }
    XCTAssertEqual(checked, 2_100)
  }
}
