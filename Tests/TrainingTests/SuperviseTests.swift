import Base
import Foundation
import Training
import XCTest
import _TestSupport

/// `sertrain supervise`'s exit code: the run's status file when rank 0 wrote it during the launch, else the
/// launcher's own code (1 for a 0 that no finished run backs). Its signals are the shell tests' (Tests/Shell).
final class SuperviseTests: XCTestCase {
  /// The launcher as `sh -c script`, run in `dir` (the status file's writes wait past the launch mark's timestamp).
  func supervise(_ script: String, _ dir: String, grace: Double = 30) throws -> Int32 {
    try superviseLauncher(["sh", "-c", "cd '\(dir)' && sleep 0.05 && {\n" + script + "\n}"], runDir: dir, grace: grace)
  }

  /// A launcher that outlives its ranks (a rank here is `sleep` under the name sertrain), as OpenMPI 4.1's mpirun
  /// hung in its finalize after a killed rank, is killed `grace` seconds after the last one ended, and the run ends as
  /// its status says; a launcher whose rank still runs is left alone, and with a grace of 0 any launcher is.
  func testALauncherThatOutlivesItsRanksIsKilled() throws {
    let root = temporaryDirectory(self)
    func hung(_ status: String, _ dir: String) -> String {
      try? FileManager.default.createDirectory(atPath: root + "/" + dir, withIntermediateDirectories: true)
      try? FileManager.default.copyItem(atPath: "/bin/sleep", toPath: root + "/" + dir + "/sertrain")
      return "(./sertrain 0.3; ./sertrain 0.2) & ./sertrain 0.6; \(status) sleep 100"
    }
    let start = monotonicSeconds()
    XCTAssertEqual(try supervise(hung("echo finished >status;", "a"), root + "/a", grace: 1), 0)
    XCTAssertEqual(try supervise(hung("echo stopped >status;", "b"), root + "/b", grace: 1), 75)
    XCTAssertEqual(try supervise(hung("", "c"), root + "/c", grace: 1), 128 + 9, "no status: the kill's code")
    XCTAssertLessThan(monotonicSeconds() - start, 20, "each killed about a second after its ranks")
    XCTAssertEqual(try supervise(hung("", "d").replacing("sleep 100", with: "exit 4"), root + "/d", grace: 0.5), 4)
    XCTAssertEqual(
      try supervise(hung("", "f").replacing("sleep 100", with: "sleep 2"), root + "/f", grace: 0), 1,
      "not killed (137): its 0, no status")
    XCTAssertEqual(try supervise("sleep 1.5; exit 5", root + "/e", grace: 0.5), 5, "no rank ever: not watched")
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
