import Training
import XCTest
import _TestSupport

/// `sertrain supervise`'s exit code: the run's status file when rank 0 wrote it during the launch, else the
/// launcher's own code (1 for a 0 that no finished run backs). Its signals are the shell tests' (Tests/Shell).
final class SuperviseTests: XCTestCase {
  /// The launcher as `sh -c script`, run in `dir` (the status file's writes wait past the launch mark's timestamp).
  func supervise(_ script: String, _ dir: String) throws -> Int32 {
    try superviseLauncher(["sh", "-c", "cd '\(dir)' && sleep 0.05 && " + script], runDir: dir)
  }

  func testTheRunsStatusDecidesWhenItWasWrittenDuringTheLaunch() throws {
    let root = temporaryDirectory(self)
    XCTAssertEqual(try supervise("echo stopped >status; exit 1", root + "/a"), 75, "mpirun signalled: 1")
    XCTAssertEqual(try supervise("echo stopped >status; exit 0", root + "/b"), 75)
    XCTAssertEqual(try supervise("echo finished >status", root + "/c"), 0)
    XCTAssertEqual(try supervise("echo running >status", root + "/d"), 1, "a rank died: mpirun said 0")
    XCTAssertEqual(try supervise("exit 0", root + "/e"), 1, "no status at all")
    XCTAssertEqual(try supervise("exit 7", root + "/f"), 7)
    XCTAssertEqual(try supervise("kill -9 $$", root + "/g"), 128 + 9)
    // A status left by an earlier launch does not speak for this one.
    XCTAssertEqual(try supervise("echo stopped >status", root + "/h"), 75)
    XCTAssertEqual(try supervise("exit 0", root + "/h"), 1)
    XCTAssertThrowsError(try superviseLauncher(["/nonexistent/mpirun"], runDir: root + "/i")) {
      XCTAssertTrue("\($0)".contains("/nonexistent/mpirun: cannot run it"), "\($0)")
    }
  }
}
