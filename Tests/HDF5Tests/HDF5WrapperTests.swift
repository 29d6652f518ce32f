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
