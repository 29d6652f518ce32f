import AudioFeatures
import Collective
// Extraction on whatever communicator runs the tests: the rows of a file do not depend on the rank count.
import Extraction
import FeatureStore
import Training
import XCTest
import _TestSupport

final class ExtractTests: XCTestCase {
  let comm = try! makeCommunicator()

  func testRowsDoNotDependOnTheNumberOfRanks() throws {
    let root = try requireShared("datasets/ser-mini")
    var dir = comm.rank == 0 ? temporaryDirectory(self) : ""
    comm.broadcast(&dir)
    if comm.rank == 0 {
      let picks = [
        "Ravdess/audio_speech_actors_01-24/Actor_01/03-01-05-01-01-01-01.wav,angry,ravdess-01",
        "Savee/DC_a01.flac,angry,savee-DC", "Savee/JE_h03.flac,happy,savee-JE",
        "Tess/OAF_Fear/OAF_food_fear.wav,fear,tess-OAF", "Tess/YAF_angry/YAF_germ_angry.wav,angry,tess-YAF",
        // Two files to skip, on whichever ranks they fall: their notes travel to rank 0 with the rows.
        "Savee/no_such_file.flac,sad,savee-DC", "\(dir)/outside.wav,sad,outside",
      ]
      XCTAssertTrue(FileManager.default.createFile(atPath: dir + "/outside.wav", contents: Data("not audio".utf8)))
      XCTAssertTrue(
        FileManager.default.createFile(
          atPath: dir + "/manifest.csv", contents: Data(("path,emotion,speaker\n" + picks.joined(separator: "\n")).utf8)
        ))
    }
    comm.barrier()
    var o = ExtractOptions(root: root, output: dir + "/ranks.h5")
    o.manifest = dir + "/manifest.csv"
    o.quiet = true
    o.seed = 4
    let report = try extractCorpus(o, comm: comm)
    if comm.rank == 0 {
      XCTAssertEqual(report.recordings, 5)
      XCTAssertEqual(report.skipped.map(\.path), ["Savee/no_such_file.flac", dir + "/outside.wav"].sorted())
      XCTAssertTrue(report.skipped.allSatisfy { !$0.reason.isEmpty }, "\(report.skipped)")
      o.output = dir + "/one.h5"
      let alone = try extractCorpus(o, comm: SingleProcessCommunicator())
      XCTAssertEqual(alone.skipped, report.skipped, "the notes on \(comm.size) ranks and on one")
      let a = try FeatureFile(path: dir + "/ranks.h5")
      let b = try FeatureFile(path: dir + "/one.h5")
      XCTAssertEqual(a.rowCount, 20)
      XCTAssertEqual(try a.readRows(0..<20), try b.readRows(0..<20), "\(comm.size) ranks against 1, bit for bit")
      XCTAssertEqual(a.augmentation, [0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3])
      XCTAssertEqual(a.source, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4])
      XCTAssertEqual(try a.recordings().map(\.speaker), ["ravdess-01", "savee-DC", "savee-JE", "tess-OAF", "tess-YAF"])
    }
    comm.barrier()
  }
}
