// Run by Launch/test.sh under `mpirun -n 2` and `mpirun -n 4 --oversubscribe`; under plain `swift test` the
// same checks run on one process.
import Base
import Collective
import XCTest

final class AllreduceTests: XCTestCase {
  let comm = try! makeCommunicator()

  func testAllreduceSumsEveryRanksContribution() {
    let n = 1000
    var x = (0..<n).map { Float($0) * Float(comm.rank + 1) }
    x.withUnsafeMutableBufferPointer { comm.allreduceSum($0) }
    let p = Float(comm.size)
    let factor = p * (p + 1) / 2  // 1 + 2 + ... + P
    XCTAssertEqual(x, (0..<n).map { Float($0) * factor }, "rank \(comm.rank) of \(comm.size)")
    var d = [Double(comm.rank), 1]
    comm.allreduceSum(&d)
    XCTAssertEqual(d, [Double(comm.size * (comm.size - 1) / 2), Double(comm.size)])
  }

  func testBroadcastFromRootAndFromTheLastRank() {
    var value = comm.rank == 0 ? 42.5 : -1.0
    comm.broadcast(&value)
    XCTAssertEqual(value, 42.5)
    var text = comm.rank == comm.size - 1 ? "from the last rank" : ""
    comm.broadcast(&text, root: comm.size - 1)
    XCTAssertEqual(text, "from the last rank")
    comm.barrier()
  }

  func testWhatRankZeroDecidesEveryRankGets() throws {
    // Rank 0's value (the others' closures never run), or rank 0's error as every rank's AgreedFailure.
    let value = try comm.decidedByRoot { () -> [String] in
      XCTAssertEqual(comm.rank, 0)
      return ["decided by", "rank \(comm.rank)"]
    }
    XCTAssertEqual(value, ["decided by", "rank 0"])
    XCTAssertThrowsError(try comm.decidedByRoot { () -> Int in throw Failure("a.h5", "no, on rank \(comm.rank)") }) {
      let failure = $0 as? AgreedFailure
      XCTAssertNotNil(failure, "\($0)")
      XCTAssertEqual(failure?.message, comm.rank == 0 ? "a.h5: no, on rank 0" : nil)
    }
    // A verdict without a value: every rank returns, or every rank throws.
    var ran = false
    XCTAssertNoThrow(try comm.decidedByRoot { ran = true })
    XCTAssertEqual(ran, comm.rank == 0)
    XCTAssertThrowsError(try comm.decidedByRoot { throw Failure("refused") }) {
      XCTAssertEqual(($0 as? AgreedFailure)?.message, comm.rank == 0 ? "refused" : nil)
    }
    comm.barrier()
  }

  func testSchedulerMismatchIsCaught() {
    XCTAssertThrowsError(try makeCommunicator(["SLURM_NTASKS": "8"])) { e in
      XCTAssertTrue("\(e)".contains("srun --mpi=pmix"), "\(e)")
    }
    XCTAssertNoThrow(try makeCommunicator(["SLURM_NTASKS": "1"]))
  }
}
