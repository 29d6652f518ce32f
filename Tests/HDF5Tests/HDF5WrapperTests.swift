import Base
import Foundation
import HDF5
import XCTest
import _TestSupport

final class HDF5WrapperTests: XCTestCase {
  func testDatasetsAttributesAndStringsRoundTrip() throws {
    let path = temporaryDirectory(self) + "/a.h5"
    do {
      let f = try H5File(creating: path)
      try f.write("ints", [Int32(1), -2, 3])
      try f.write("matrix", [Float](stride(from: 0, to: 12, by: 1)), shape: [3, 4])
      try f.write("group/names", strings: ["angry", "sad", "ünïcode"])
      try f.setAttribute("format", "test")
      try f.setAttribute("version", 7)
      try f.setAttribute("rate", 0.25)
      try f.openGroup("group").setAttribute("list", [Float(1), 2, 3])
      try f.close()
    }
    let f = try H5File(path: path)
    XCTAssertEqual(try f.read("ints", as: Int32.self), [1, -2, 3])
    XCTAssertEqual(try f.openDataset("matrix").shape, [3, 4])
    XCTAssertEqual(try f.openDataset("matrix").readRows(1..<3, as: Float.self), (4..<12).map(Float.init))
    XCTAssertEqual(try f.readStrings("group/names"), ["angry", "sad", "ünïcode"])
    XCTAssertEqual(try f.stringAttribute("format"), "test")
    XCTAssertEqual(try f.intAttribute("version"), 7)
    XCTAssertEqual(try f.doubleAttribute("rate"), 0.25)
    XCTAssertEqual(try f.openGroup("group").attribute("list", as: Float.self), [1, 2, 3])
    XCTAssertEqual(try f.children(), ["group", "ints", "matrix"])
    XCTAssertTrue(f.isGroup("group"))
    XCTAssertFalse(f.isGroup("ints"))
    XCTAssertFalse(f.exists("missing/deeper"))
  }

  func testAppendingRowsToAnUnlimitedChunkedDataset() throws {
    let path = temporaryDirectory(self) + "/rows.h5"
    let f = try H5File(creating: path)
    let d = try f.createDataset("x", of: Float.self, dims: [0, 3], maxDims: [-1, 3], chunk: [2, 3])
    for block in 0..<4 {
      let rows = (0..<(3 * (block + 1))).map { Float(block * 100 + $0) }
      try rows.withUnsafeBufferPointer { try d.writeRows(at: d.shape[0], $0) }
    }
    XCTAssertEqual(d.shape, [10, 3])
    XCTAssertEqual(try d.readRows(1..<3, as: Float.self), [100, 101, 102, 103, 104, 105])
  }

  func testErrorsNameTheFileAndObject() throws {
    let dir = temporaryDirectory(self)
    let path = dir + "/e.h5"
    try H5File(creating: path).close()
    let f = try H5File(path: path)
    XCTAssertThrowsError(try f.openDataset("nope")) { e in
      XCTAssertTrue("\(e)".contains(path) && "\(e)".contains("/nope"), "\(e)")
    }
    XCTAssertThrowsError(try f.stringAttribute("format")) { e in
      XCTAssertTrue("\(e)".contains("format"), "\(e)")
    }
    let text = dir + "/not.h5"
    try "hello".write(toFile: text, atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try H5File(path: text)) { e in
      XCTAssertTrue("\(e)".contains("not an HDF5 file") && "\(e)".contains(text), "\(e)")
    }
    XCTAssertThrowsError(try H5File(path: dir + "/missing.h5")) { e in
      XCTAssertTrue("\(e)".contains("no such file"), "\(e)")
    }
    XCTAssertThrowsError(try f.openDataset("nope").readRows(0..<1, as: Float.self))
  }

  func testRowRangeOutsideTheDatasetIsAnError() throws {
    let path = temporaryDirectory(self) + "/r.h5"
    let f = try H5File(creating: path)
    let d = try f.write("x", [Float](repeating: 1, count: 6), shape: [3, 2])
    XCTAssertThrowsError(try d.readRows(2..<4, as: Float.self)) { e in
      XCTAssertTrue("\(e)".contains("dataset has 3 rows"), "\(e)")
    }
  }

  /// A handle opened with a chunk cache keeps the chunks it read: read again, they come from memory (here, after the
  /// file changed underneath), while a handle with HDF5's default cache (1 MiB, three of these chunks) reads them
  /// from the file again, and its checksum catches the change.
  func testTheChunkCacheServesRowsReadAgainFromMemory() throws {
    let path = temporaryDirectory(self) + "/cached.h5"
    let (rows, width, chunk) = (256, 2048, 32)
    let values = (0..<(rows * width)).map(Float.init)
    do {
      let f = try H5File(creating: path)
      let d = try f.createDataset("x", of: Float.self, dims: [0, width], maxDims: [-1, width], chunk: [chunk, width])
      try values.withUnsafeBufferPointer { try d.writeRows(at: 0, $0) }
    }
    let chunkBytes = chunk * width * 4
    // Where the first chunk's values start on disk: the bytes of 0, 1, 2, 3.
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    let marker = Data([Float(0), 1, 2, 3].flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) })
    let first = try XCTUnwrap(bytes.range(of: marker)).lowerBound
    do {
      let f = try H5File(path: path)
      let d = try f.openDataset("x", chunkCacheBytes: 1 << 30)
      XCTAssertEqual(d.chunkCacheBytes, rows / chunk * chunkBytes, "the cache is sized to the dataset's chunks")
      XCTAssertEqual(try d.readRows(0..<rows, as: Float.self), values)
      // A bit flipped in place (the file HDF5 has open).
      let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
      try handle.seek(toOffset: UInt64(first + 400))
      try handle.write(contentsOf: [bytes[first + 400] ^ 0x10])
      try handle.close()
      XCTAssertEqual(try d.readRows(0..<chunk, as: Float.self), Array(values[0..<(chunk * width)]))
    }
    let f = try H5File(path: path)
    let d = try f.openDataset("x")
    XCTAssertEqual(d.chunkCacheBytes, 1 << 20)
    XCTAssertNoThrow(try d.readRows(chunk..<rows, as: Float.self))
    XCTAssertThrowsError(try d.readRows(0..<chunk, as: Float.self))
    XCTAssertEqual(try f.openDataset("x", chunkCacheBytes: 3 * chunkBytes - 1).chunkCacheBytes, 1 << 20, "shared")
  }

  func testFileLockingCanBeTurnedOff() throws {
    let path = temporaryDirectory(self) + "/l.h5"
    try H5File(creating: path, locking: false).close()
    let a = try H5File(path: path, locking: false)
    let b = try H5File(path: path, mode: .readOnly, locking: false)
    XCTAssertEqual(try a.children(), try b.children())
  }

  func testAtomicWriteLeavesNothingOnFailureAndKeepsTheOldFile() throws {
    let dir = temporaryDirectory(self)
    let path = dir + "/out.bin"
    try "old".write(toFile: path, atomically: false, encoding: .utf8)
    struct Boom: Error {}
    XCTAssertThrowsError(
      try writeAtomically(to: path, overwrite: true) { temp in
        try "partial".write(toFile: temp, atomically: false, encoding: .utf8)
        throw Boom()
      })
    XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "old")
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["out.bin"])
    XCTAssertThrowsError(try writeAtomically(to: path, overwrite: false) { _ in }) { e in
      XCTAssertTrue("\(e)".contains("already exists"), "\(e)")
    }
    try writeAtomically(to: path, overwrite: true) { temp in
      try "new".write(toFile: temp, atomically: false, encoding: .utf8)
    }
    XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "new")
  }
}

/// The checkpoints' SHA-256 against FIPS 180-4's examples (one and two final blocks, a million bytes).
final class SHA256Tests: XCTestCase {
  func testKnownDigests() {
    XCTAssertEqual(sha256Hex([UInt8]()), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    XCTAssertEqual(sha256Hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    XCTAssertEqual(
      sha256Hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    XCTAssertEqual(
      sha256Hex([UInt8](repeating: 0x61, count: 1_000_000)),
      "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
  }
}

/// Single flipped bits (issue 16, item 5): every flip inside a dataset's stored values fails a full read, and a
/// flip anywhere in the file either fails it or leaves every value as it was. `SERTRAIN_BITFLIPS` sets how many
/// flips of each kind (default 150).
final class BitFlipTests: XCTestCase {
  func testEveryFlipInTheValuesIsDetectedAndNoneElsewhereChangesThem() throws {
    let dir = temporaryDirectory(self)
    let path = dir + "/original.h5"
    var rng = TestRNG(seed: 16)
    let rows = (0..<300 * 24).map { _ in rng.normal() }
    let parameters = (0..<5000).map { _ in rng.normal() }
    let labels = (0..<300).map { Int32($0 % 7) }
    let names = (0..<300).map { "Actor_\($0 % 24)/03-01-0\($0 % 7 + 1)-01-01-01-\($0).wav" }
    do {
      let f = try H5File(creating: path)
      let d = try f.createDataset("features", of: Float.self, dims: [0, 24], maxDims: [-1, 24], chunk: [64, 24])
      for start in stride(from: 0, to: 300, by: 100) {
        try rows[(start * 24)..<((start + 100) * 24)].withUnsafeBufferPointer { try d.writeRows(at: start, $0) }
      }
      try f.write("labels", labels)
      try f.write("sources/path", strings: names)
      try f.write("parameters", parameters, digest: true)
      try f.setAttribute("format", "test")
      try f.close()
    }
    let original = try Data(contentsOf: URL(fileURLWithPath: path))
    let expected = try H5File(path: path).verifyContents().digest
    // Where each dataset's values lie in the file (chunks hold them in order, unfiltered but for the checksum).
    var valueRanges: [Range<Int>] = []
    func locate(_ bytes: Data, chunk: Int) {
      for start in stride(from: 0, to: bytes.count, by: chunk) {
        let piece = bytes[start..<min(start + chunk, bytes.count)]
        guard let r = original.range(of: piece) else { return XCTFail("chunk at \(start) not found") }
        valueRanges.append(r)
      }
    }
    locate(rows.withUnsafeBytes { Data($0) }, chunk: 64 * 24 * 4)
    locate(parameters.withUnsafeBytes { Data($0) }, chunk: 5000 * 4)
    locate(labels.withUnsafeBytes { Data($0) }, chunk: 300 * 4)
    let width = names.map(\.utf8.count).max()!
    locate(Data(names.flatMap { Array($0.utf8) + [UInt8](repeating: 0, count: width - $0.utf8.count) }), chunk: 1 << 20)

    let trials = Int(ProcessInfo.processInfo.environment["SERTRAIN_BITFLIPS"] ?? "") ?? 150
    var (detected, harmless, undetected) = (0, 0, [String]())
    let flipped = dir + "/flipped.h5"
    for trial in 0..<(2 * trials) {
      let inValues = trial < trials
      var bit: Int
      if inValues {
        let r = valueRanges[Int(rng.next() % UInt64(valueRanges.count))]
        bit = (r.lowerBound + Int(rng.next() % UInt64(r.count))) * 8 + Int(rng.next() % 8)
      } else {
        bit = Int(rng.next() % UInt64(original.count * 8))
      }
      var bytes = original
      bytes[bit / 8] ^= UInt8(1 << (bit % 8))
      try bytes.write(to: URL(fileURLWithPath: flipped))
      let digest: String? = try? H5File(path: flipped).verifyContents().digest
      if digest == nil {
        detected += 1
      } else if digest == expected && !inValues {
        harmless += 1
      } else {
        undetected.append("byte \(bit / 8) bit \(bit % 8)\(inValues ? " (in the values)" : "")")
      }
    }
    print("bit flips: \(2 * trials) cases, \(detected) detected, \(harmless) harmless, \(undetected.count) undetected")
    XCTAssertEqual(undetected, [], "flips that changed values without an error")
  }
}

/// Flipped bits in the metadata (issue 30, case 6): every flip inside a sealed attribute's value, text or number, is
/// caught when the attributes are checked (or when the file opens). `SERTRAIN_BITFLIPS` sets how many (default 150).
final class AttributeFlipTests: XCTestCase {
  func testEveryFlipInASealedAttributeIsDetected() throws {
    let dir = temporaryDirectory(self)
    let path = dir + "/sealed.h5"
    let spec = #"{"layers":[{"activation":"relu","filters":8,"kernel_size":5,"type":"Conv1D"}],"name":"tiny"}"#
    do {
      let f = try H5File(creating: path)
      try f.write("parameters", [Float](repeating: 0.5, count: 64), digest: true)
      try f.setAttribute("spec", spec)
      try f.setAttribute("layout", "frames")
      try f.setAttribute("optimizer_iterations", 123_456_789)
      try f.setAttribute("learning_rate", 0.000_731)
      try f.setAttribute("contents", strings: ["parameters", "best/parameters"])
      try f.sealAttributes()
      try f.close()
    }
    try H5File(path: path).verifyAttributes()
    let original = try Data(contentsOf: URL(fileURLWithPath: path))
    let values: [Data] = [
      Data(spec.utf8), Data("frames".utf8), Data("best/parameters".utf8),
      withUnsafeBytes(of: Int64(123_456_789).littleEndian) { Data($0) },
      withUnsafeBytes(of: (0.000_731).bitPattern.littleEndian) { Data($0) },
    ]
    let ranges = try values.map { try XCTUnwrap(original.range(of: $0), "\($0) in the file") }
    let trials = Int(ProcessInfo.processInfo.environment["SERTRAIN_BITFLIPS"] ?? "") ?? 150
    var rng = TestRNG(seed: 30)
    var undetected: [String] = []
    let flipped = dir + "/flipped.h5"
    for _ in 0..<trials {
      let r = ranges[Int(rng.next() % UInt64(ranges.count))]
      let bit = (r.lowerBound + Int(rng.next() % UInt64(r.count))) * 8 + Int(rng.next() % 8)
      var bytes = original
      bytes[bit / 8] ^= UInt8(1 << (bit % 8))
      try bytes.write(to: URL(fileURLWithPath: flipped))
      if (try? H5File(path: flipped).verifyAttributes()) != nil { undetected.append("byte \(bit / 8) bit \(bit % 8)") }
    }
    print("attribute flips: \(trials) cases, \(trials - undetected.count) detected")
    XCTAssertEqual(undetected, [], "flips in the metadata that passed its check")
  }
}
