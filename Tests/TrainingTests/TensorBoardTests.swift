import XCTest

@testable import Training

/// TFRecord's checksum, against the published CRC-32C check value and a TensorBoard event file's first record.
final class TensorBoardTests: XCTestCase {
  func testCRC32CKnownValues() {
    XCTAssertEqual(crc32c(Array("123456789".utf8)), 0xe306_9283)  // the CRC catalogue's check value
    XCTAssertEqual(crc32c([]), 0)
    XCTAssertEqual(crc32c([UInt8](repeating: 0, count: 32)), 0x8a91_36aa)  // RFC 3720, B.4: 32 bytes of zeros
    XCTAssertEqual(crc32c([UInt8](repeating: 0xff, count: 32)), 0x62a8_ab43)  // and of ones
  }
}
