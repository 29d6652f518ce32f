import Base
import ConvNet
import FeatureStore

/// How rows are divided into train, validation and test.
public enum SplitKind: String, Codable, Sendable, CaseIterable {
  /// Rows shuffled after augmentation, as the seed did: augmented copies of one recording land on both sides
  /// (leakage); for comparison with the seed only.
  case random
  /// Every augmented row of a recording on the same side (the default).
  case recording
  /// Every recording of a speaker on the same side.
  case speaker
}

/// Row membership: 0 train, 1 validation, 2 test.
public struct DataSplit: Equatable, Sendable {
  public var membership: [Int8]
  public var train: [Int] { rows(0) }
  public var validation: [Int] { rows(1) }
  public var test: [Int] { rows(2) }
  public func rows(_ part: Int8) -> [Int] { membership.indices.filter { membership[$0] == part } }
  public static let names = ["train", "val", "test"]
}

extension DataSplit {
  /// Assigns groups of rows (recordings, speakers, or single rows) to test, validation and train in a shuffled
  /// order drawn from `seed`, until each side holds its fraction of the rows.
  public static func make(
    _ file: FeatureFile, kind: SplitKind, validation: Double, test: Double, seed: UInt64
  ) throws -> DataSplit {
    let n = file.rowCount
    var groupOf = [Int](repeating: 0, count: n)
    switch kind {
    case .random:
      groupOf = Array(0..<n)
    case .recording:
      groupOf = file.source.map(Int.init)
    case .speaker:
      let recordings = try file.recordings()
      let speakers = recordings.map(\.speaker)
      guard !speakers.isEmpty, speakers.allSatisfy({ !$0.isEmpty }) else {
        throw Failure(
          file.path, "has no speaker for its recordings (a converted CSV): use --split recording or random")
      }
      var ids: [String: Int] = [:]
      for (row, s) in file.source.enumerated() {
        let speaker = speakers[Int(s)]
        groupOf[row] =
          ids[speaker]
          ?? {
            ids[speaker] = ids.count; return ids.count - 1
          }()
      }
    }
    var members: [Int: [Int]] = [:]
    for (row, g) in groupOf.enumerated() { members[g, default: []].append(row) }
    var rng = RandomStream(seed: seed, stream: [0x5_9117])
    let groups = members.keys.sorted()
    let order = rng.permutation(groups.count).map { groups[$0] }
    var membership = [Int8](repeating: 0, count: n)
    let testTarget = Int((Double(n) * test).rounded())
    let validationTarget = Int((Double(n) * validation).rounded())
    var (inTest, inValidation) = (0, 0)
    for g in order {
      let rows = members[g]!
      let part: Int8
      if inTest < testTarget {
        part = 2
        inTest += rows.count
      } else if inValidation < validationTarget {
        part = 1
        inValidation += rows.count
      } else {
        part = 0
      }
      for r in rows { membership[r] = part }
    }
    return DataSplit(membership: membership)
  }
}
